//! `amqpwire encode`: JSON lines (the trace format, or the hand-written form) to bytes.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use amqpwire::script::encode::encode_lines;

/// Arguments of `amqpwire encode`.
#[derive(clap::Args, Debug)]
pub(crate) struct EncodeArgs {
    /// The JSON lines: `decode --json` output, a trace, or hand-written frames (see
    /// docs/trace-format.md); `-` or nothing reads standard input.
    file: Option<PathBuf>,
    /// Print the bytes as hex text instead of writing them raw.
    #[arg(long)]
    hex: bool,
}

pub(crate) fn run(args: &EncodeArgs) -> Result<ExitCode, String> {
    let text = match &args.file {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            s
        }
    };
    let bytes = encode_lines(&text)?;
    let mut out = std::io::stdout().lock();
    let written = if args.hex {
        writeln!(out, "{}", amqpwire::inspect::hex(&bytes))
    } else {
        out.write_all(&bytes)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`| head`) is not an error worth a line.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("cannot write the bytes: {e}")),
    }
}

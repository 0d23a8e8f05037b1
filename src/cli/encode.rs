//! `amqpwire encode`: JSON lines (the trace format, or the hand-written form) to bytes.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use amqpwire::script::encode::{encode_lines, one_stream};

/// Arguments of `amqpwire encode`.
#[derive(clap::Args, Debug)]
pub(crate) struct EncodeArgs {
    /// The JSON lines: `decode --json` output, a trace, or hand-written frames (see
    /// docs/trace-format.md); `-` or nothing reads standard input.
    file: Option<PathBuf>,
    /// Print the bytes as hex text instead of writing them raw.
    #[arg(long)]
    hex: bool,
    /// Of lines that name their direction (a trace's `in`/`out`, a capture's
    /// `c2s`/`s2c`), write only this one's: one stream's bytes. Needed when the lines hold
    /// more than one stream.
    #[arg(long, value_name = "DIRECTION", value_parser = ["in", "out", "c2s", "s2c"])]
    direction: Option<String>,
    /// Of lines that name their connection (a capture's, a server's trace), write only
    /// this one's.
    #[arg(long, value_name = "N")]
    connection: Option<u64>,
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
    let text = one_stream(&text, args.direction.as_deref(), args.connection)?;
    let bytes = encode_lines(&text)?;
    // `decode` masks credentials unless told not to, in the exact forms as well: say so,
    // since the bytes written then differ from the ones decoded.
    let masked = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|j| j["redacted"] == true)
        })
        .map(|(i, _)| (i + 1).to_string())
        .collect::<Vec<_>>();
    if !masked.is_empty() {
        eprintln!(
            "amqpwire: line {}: credentials masked by decode are written as the stars they are \
             now (decode with --show-secrets to write them back)",
            masked.join(", ")
        );
    }
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

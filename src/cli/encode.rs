//! `amqpwire encode`: JSON lines (the trace format, or the hand-written form) to bytes.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use amqpwire::script::encode::StreamEncoder;

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
    // Read a line at a time: only the bytes to write are held, not the lines.
    let (input, name): (Box<dyn BufRead>, String) = match &args.file {
        Some(p) if p.as_os_str() != "-" => {
            let f =
                std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            (Box::new(std::io::BufReader::new(f)), p.display().to_string())
        }
        _ => (Box::new(std::io::stdin().lock()), "standard input".to_owned()),
    };
    let mut enc = StreamEncoder::new(args.direction.as_deref(), args.connection);
    read_lines(input, |line| enc.line(line)).map_err(|e| format!("cannot read {name}: {e}"))?;
    let masked = enc.masked_lines().iter().map(usize::to_string).collect::<Vec<_>>();
    let bytes = enc.finish()?;
    // `decode` masks credentials unless told not to, in the exact forms as well: say so,
    // since the bytes written then differ from the ones decoded.
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

/// Gives `each` every line of `input` (its line ending included), reusing one buffer.
fn read_lines(mut input: impl BufRead, mut each: impl FnMut(&str)) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        each(&line);
    }
}

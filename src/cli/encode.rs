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

/// `text` with the lines of other streams than the one chosen blanked (so that errors
/// still name the lines as numbered in the input); an error when the lines hold more than
/// one stream and none was chosen: written into one, two streams' bytes would interleave.
fn one_stream(text: &str, args: &EncodeArgs) -> Result<String, String> {
    let mut streams: Vec<(Option<u64>, String)> = Vec::new();
    let mut all: Vec<(Option<u64>, String)> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let j = serde_json::from_str::<serde_json::Value>(line).ok();
        let direction = j.as_ref().and_then(|j| j["direction"].as_str()).map(str::to_owned);
        let connection = j.as_ref().and_then(|j| j["connection"].as_u64());
        if let Some(d) = &direction {
            if !all.contains(&(connection, d.clone())) {
                all.push((connection, d.clone()));
            }
        }
        let kept = args
            .direction
            .as_ref()
            .is_none_or(|d| direction.is_none() || direction.as_ref() == Some(d))
            && args.connection.is_none_or(|c| connection.is_none() || connection == Some(c));
        if kept {
            if let Some(d) = direction {
                if !streams.contains(&(connection, d.clone())) {
                    streams.push((connection, d));
                }
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    let name_all = |streams: &[(Option<u64>, String)]| -> Vec<String> {
        streams
            .iter()
            .map(|(c, d)| match c {
                Some(c) => format!("connection {c} {d}"),
                None => d.clone(),
            })
            .collect()
    };
    if let Some(c) = args.connection {
        if !all.is_empty() && all.iter().all(|(n, _)| n.is_none()) {
            return Err(format!("--connection {c}: the lines name no connection (one connection's lines: choose with --direction only)"));
        }
    }
    let filtered = args.direction.is_some() || args.connection.is_some();
    if filtered && streams.is_empty() && !all.is_empty() {
        return Err(format!(
            "no line is of the stream asked for (the lines hold: {})",
            name_all(&all).join(", ")
        ));
    }
    if streams.len() > 1 {
        let named = name_all(&streams);
        return Err(format!(
            "the lines hold {} streams ({}): choose one with --direction{}",
            streams.len(),
            named.join(", "),
            if streams.iter().any(|(c, _)| c.is_some()) { " and --connection" } else { "" }
        ));
    }
    Ok(out)
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
    let text = one_stream(&text, args)?;
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

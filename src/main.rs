//! `amqpwire`: the command-line tool.
//!
//! Exit status: 0 on success, 1 when the input had errors (reported on stdout in the
//! requested format), 2 for a usage or I/O error (one line on stderr).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// amqpwire: an AMQP 1.0 protocol engine and the tools to see every byte.
#[derive(Parser, Debug)]
#[command(name = "amqpwire", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode an AMQP 1.0 byte stream (hex or binary): every header, frame, field and
    /// message, with offsets and raw bytes.
    Decode(cli::decode::DecodeArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Decode(a) => cli::decode::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("amqpwire: {e}");
            ExitCode::from(2)
        }
    }
}

//! `amqpwire`: the command-line tool.
//!
//! Exit status: 0 on success, 1 when the input had errors (reported on stdout in the
//! requested format), 2 for a usage or I/O error (one line on stderr).

// `print!`, `println!`, `eprint!` and `eprintln!` that never panic, for every module
// below: std's panic when their stream is closed (`amqpwire … | head`, `2>&1 | head -5`).
// What cannot be written is dropped: output whose loss must stop a command (decoded
// records, received messages) is written with its error handled, not with these. `print!`
// goes to standard error while standard output carries a JSON trace (`--trace-json -`).
macro_rules! print {
    ($($arg:tt)*) => { $crate::write_to(&mut $crate::cli::words(), format_args!($($arg)*)) };
}
macro_rules! println {
    () => { print!("\n") };
    ($($arg:tt)*) => { print!("{}\n", format_args!($($arg)*)) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::write_to(&mut ::std::io::stderr(), format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { eprint!("\n") };
    ($($arg:tt)*) => { eprint!("{}\n", format_args!($($arg)*)) };
}

/// Writes `args` to `out`, dropping them if it is closed (see the macros above).
fn write_to(out: &mut (impl std::io::Write + ?Sized), args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// amqpwire: an AMQP 1.0 protocol engine and the tools to see every byte.
#[derive(Parser, Debug)]
#[command(name = "amqpwire", version, about, long_about = None)]
struct Args {
    /// Worker threads of the async runtime (networked commands): by default one per core
    /// of the machine, and one for `send` and `receive`, which drive a single connection.
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Log what the library does on standard error: -v connections, SASL and errors
    /// (INFO), -vv sessions, links and transactions too (DEBUG), -vvv every frame (TRACE,
    /// credentials never shown). RUST_LOG, when set, takes precedence (`amqpwire=debug`).
    #[arg(short = 'v', long = "log-verbose", global = true, action = clap::ArgAction::Count)]
    log_verbose: u8,
    /// The log's format: human-readable lines, or one JSON object per event.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per event.
    Json,
}

/// Installs the subscriber of the library's `tracing` events: nothing is logged unless
/// `-v` or RUST_LOG asks.
fn install_logging(verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(match verbose {
            0 => "off",
            1 => "amqpwire=info",
            2 => "amqpwire=debug",
            _ => "amqpwire=trace",
        }),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (a closed standard error) is dropped: the
        // default tells of it with std's `eprintln!`, which panics there.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode an AMQP 1.0 byte stream (hex or binary): every header, frame, field and
    /// message, with offsets and raw bytes.
    Decode(cli::decode::DecodeArgs),
    /// Write bytes from JSON lines: `decode --json` output (byte for byte), or frames
    /// written by hand, malformations included.
    Encode(cli::encode::EncodeArgs),
    /// Send messages to an address: body from `--body`, a file, or standard input with
    /// `--body-file -` (otherwise "message N"); a summary of outcomes at the end.
    Send(cli::client::SendArgs),
    /// Receive messages from an address and print them (text or JSON lines), accepting
    /// each.
    Receive(cli::client::ReceiveArgs),
    /// Run the embedded broker: queues created on first use, on one or more listeners
    /// (prints `listening on URL` for each). A local peer for tests and investigation.
    Serve(cli::serve::ServeArgs),
    /// Start the embedded broker on loopback and run a whole exchange against it (TCP and
    /// WebSocket, SASL, send, receive, settle, close), showing every frame.
    Demo(cli::serve::DemoArgs),
    /// Make an Azure SAS token (IoT Hub, Event Hubs) from a connection string or a key
    /// and print it, or check one with --verify.
    SasToken(cli::sas::SasTokenArgs),
    /// Azure IoT Hub: the emulator, the service, device and monitor clients, and the demo.
    Iothub(cli::iothub::IothubArgs),
    /// Relay clients to a server, byte for byte, on any pair of transports (amqp, amqps,
    /// ws, wss), decoding both directions as they pass.
    Proxy(cli::proxy::ProxyArgs),
    /// Play a scripted peer (JSON lines: send, expect, expect-close, …) against a server
    /// (--connect) or a client (--listen); exit 1 at the first step that does not hold.
    Script(cli::script::ScriptArgs),
    /// Fuzz another AMQP implementation: structure-aware cases against a server
    /// (--connect) or clients (--listen); crashes, hangs, memory growth and malformed
    /// answers saved as minimised, replayable scripts.
    FuzzPeer(cli::fuzz_peer::FuzzPeerArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::client::set_threads(args.threads.map(usize::from));
    install_logging(args.log_verbose, args.log_format);
    let result = match args.command {
        Command::Decode(a) => cli::decode::run(&a),
        Command::Encode(a) => cli::encode::run(&a),
        Command::Send(a) => cli::client::run_send(&a),
        Command::Receive(a) => cli::client::run_receive(&a),
        Command::Serve(a) => cli::serve::run_serve(&a),
        Command::Demo(a) => cli::serve::run_demo(&a),
        Command::SasToken(a) => cli::sas::run(&a),
        Command::Iothub(a) => cli::iothub::run(&a),
        Command::Proxy(a) => cli::proxy::run(&a),
        Command::Script(a) => cli::script::run(&a),
        Command::FuzzPeer(a) => cli::fuzz_peer::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("amqpwire: {e}");
            ExitCode::from(2)
        }
    }
}

//! `amqpwire script`: play a scripted peer against a real one, as client or server.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amqpwire::connection::Direction;
use amqpwire::runtime::script::play_watched;
use amqpwire::runtime::transport::{self, AcceptConfig, Endpoint, TlsServerConfig, Transport};
use amqpwire::script::player::{parse, Player};

use super::client::runtime;
use super::trace::{TraceArgs, Tracer};

/// Arguments of `amqpwire script`.
#[derive(clap::Args, Debug)]
#[group(id = "side", required = true, args = ["connect", "listen"])]
pub(crate) struct ScriptArgs {
    /// The script: JSON lines, one step each (send, expect, expect-close, expect-silence,
    /// wait, close, half-close; see docs/scripts.md).
    file: PathBuf,
    /// Play the client: connect to this URL (amqp, amqps, ws, wss).
    #[arg(long, value_name = "URL", conflicts_with = "listen")]
    connect: Option<String>,
    /// Play the server: listen on this URL and play the script against the first client.
    #[arg(long, value_name = "URL")]
    listen: Option<String>,
    /// The time limit of an expectation that gives none, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    within: u64,
    /// Trust the CAs in this PEM file (--connect to amqps:// or wss://).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The server certificate (PEM) for --listen on amqps:// or wss://.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    // Traces: what the script sends is `out`, what the peer sends `in`.
    #[command(flatten)]
    trace: TraceArgs,
}

pub(crate) fn run(args: &ScriptArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let steps = parse(&text, Duration::from_millis(args.within))
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let tracer = Tracer::new(&args.trace, false)?;
    runtime()?.block_on(async {
        // Where, as it prints (a password masked): for the capture's comment.
        let (io, place) = match (&args.connect, &args.listen) {
            (Some(url), _) => {
                let endpoint: Endpoint = url.parse().map_err(|e| format!("{url}: {e}"))?;
                let mut tls = transport::ClientTlsConfig::new();
                if let Some(ca) = &args.ca {
                    tls = tls.with_ca_file(ca).map_err(|e| e.to_string())?;
                }
                let io = transport::connect_within(&endpoint, &tls, handshake_limit(args))
                    .await
                    .map_err(|e| e.to_string())?;
                (io, endpoint.to_string())
            }
            (None, Some(url)) => accept_one(url, args).await?,
            (None, None) => return Err("give --connect URL or --listen URL".to_owned()),
        };
        let mut player = Player::new(steps);
        // The script plays the client when it connects, the server when it listens.
        let client = args.connect.is_some();
        let mut watch = |ours: bool, data: &[u8]| {
            if let Some(t) = &tracer {
                let direction = if ours { Direction::Out } else { Direction::In };
                t.bytes(1, Some(&place), direction, ours == client, data);
            }
        };
        play_watched(&mut player, io, &mut watch).await;
        if let Some(t) = &tracer {
            t.end_connection(1);
            t.finish();
        }
        for (step, name) in player.sent_unbound() {
            eprintln!(
                "note: step {step} sent {name:?} as text: no expect before it bound {name} \
                 (a misspelt name is sent so too)"
            );
        }
        match player.verdict() {
            Some(Ok(())) => {
                eprintln!("every step held");
                Ok(ExitCode::SUCCESS)
            }
            Some(Err(f)) => {
                println!("{f}");
                let _ = std::io::stdout().flush();
                eprintln!("amqpwire: the script failed at step {}", f.step);
                Ok(ExitCode::from(1))
            }
            None => Err("the script did not finish".to_owned()),
        }
    })
}

/// Listens on `url`, prints where, and sets up the first client's transport; where it
/// listened.
async fn accept_one(url: &str, args: &ScriptArgs) -> Result<(Transport, String), String> {
    let mut endpoint = Endpoint::parse_listen(url).map_err(|e| format!("{url}: {e}"))?;
    let tls = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            Some(TlsServerConfig::from_pem_files(c, k).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    AcceptConfig::check(&endpoint, tls.as_ref()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpListener::bind((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot listen on {endpoint}: {e}"))?;
    if let Ok(a) = tcp.local_addr() {
        endpoint.port = a.port();
    }
    println!("listening on {endpoint}");
    let _ = std::io::stdout().flush();
    let (stream, _) = tcp.accept().await.map_err(|e| e.to_string())?;
    let config = AcceptConfig::for_endpoint(&endpoint, tls);
    let io = transport::accept_within(stream, &endpoint, &config, handshake_limit(args))
        .await
        .map_err(|e| e.to_string())?;
    Ok((io, endpoint.to_string()))
}

/// How long the connection and its TLS and WebSocket handshakes may take: `--within`, and
/// at least five seconds.
fn handshake_limit(args: &ScriptArgs) -> Duration {
    Duration::from_millis(args.within).max(Duration::from_secs(5))
}

//! `amqpwire serve` (the embedded broker on one or more listeners) and `amqpwire demo`
//! (the broker in-process on loopback and a whole exchange against it, traced).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use amqpwire::broker::{listen_options, Broker};
use amqpwire::message::Message;
use amqpwire::runtime::transport::TlsServerConfig;
use amqpwire::runtime::Listener;

use super::client::{connect, runtime, TlsArgs};
use super::trace::{say, DemoTraceArgs, TraceArgs, Tracer};

/// Arguments of `amqpwire serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Listen on this URL (repeatable): amqp://, amqps://, ws://, wss:// with a host and
    /// port (port 0: any free port). Default: amqp://127.0.0.1:5672.
    #[arg(long = "listen", value_name = "URL")]
    listen: Vec<String>,
    /// The server certificate chain (PEM), for amqps:// and wss://.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Ask TLS clients for a certificate signed by a CA in this PEM file, and offer SASL
    /// EXTERNAL to authenticate them as its subject common name (clients without one may
    /// still use the other mechanisms).
    #[arg(long, value_name = "PEM", requires = "cert")]
    client_ca: Option<PathBuf>,
    /// Require SASL PLAIN or SCRAM-SHA-256 as this user (repeatable). Without it, SASL
    /// ANONYMOUS and clients that skip SASL are accepted.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// Check put-tokens on `$cbs` against this key (repeatable; KEY in base64, as Azure
    /// shows keys): a token's `skn` names its key, and its signature, expiry and audience
    /// must hold. Without it any well-formed SAS token is accepted. Tokens are never kept.
    #[arg(long = "cbs-key", value_name = "NAME=KEY")]
    cbs_keys: Vec<String>,
    /// The largest frame the broker accepts (its open's max-frame-size; at least 512).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(512..))]
    max_frame_size: Option<u32>,
    /// The highest channel the broker accepts (its open's channel-max).
    #[arg(long, value_name = "N")]
    channel_max: Option<u16>,
    /// The idle time-out the broker announces (its open's idle-time-out): clients must send
    /// something at least this often, and the broker closes on twice this long of silence
    /// once they have opened (a client must open within 10 s, counted after its TLS and
    /// WebSocket handshakes, which have 10 s too).
    #[arg(long, value_name = "SECS", value_parser = super::client::parse_secs)]
    idle_timeout: Option<std::time::Duration>,
    #[command(flatten)]
    trace: TraceArgs,
}

/// Arguments of `amqpwire demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    trace: DemoTraceArgs,
}

fn users(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|u| {
            u.split_once(':')
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, p)| (n.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("--user {u:?}: write NAME:PASSWORD"))
        })
        .collect()
}

fn cbs_keys(args: &[String]) -> Result<Vec<(String, amqpwire::azure::SasKey)>, String> {
    args.iter()
        .map(|k| {
            let (name, key) = k
                .split_once('=')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| format!("--cbs-key {k:?}: write NAME=KEY (KEY in base64)"))?;
            let key = amqpwire::azure::SasKey::from_base64(key)
                .map_err(|e| format!("--cbs-key {name}: {e}"))?;
            Ok((name.to_owned(), key))
        })
        .collect()
}

pub(crate) fn run_serve(args: &ServeArgs) -> Result<ExitCode, String> {
    runtime()?.block_on(async {
        let tracer = Tracer::for_server(&args.trace)?;
        let tls = match (&args.cert, &args.key) {
            (Some(c), Some(k)) => {
                let tls = TlsServerConfig::from_pem_files(c, k).map_err(|e| e.to_string())?;
                match &args.client_ca {
                    Some(ca) => {
                        Some(tls.with_client_ca_file(ca, false).map_err(|e| e.to_string())?)
                    }
                    None => Some(tls),
                }
            }
            _ => None,
        };
        let mut options = listen_options(&users(&args.users)?, tls, None);
        options.idle_time_out = args.idle_timeout;
        let (frame, channels) = (args.max_frame_size, args.channel_max);
        if frame.is_some() || channels.is_some() {
            let earlier = options.configure.take();
            options.configure = Some(std::sync::Arc::new(move |cfg| {
                if let Some(f) = &earlier {
                    f(cfg);
                }
                if let Some(n) = frame {
                    cfg.max_frame_size = n;
                }
                if let Some(n) = channels {
                    cfg.channel_max = n;
                }
            }));
        }
        let urls = if args.listen.is_empty() {
            vec!["amqp://127.0.0.1:5672".to_owned()]
        } else {
            args.listen.clone()
        };
        // Signals are handled from before the command says where it listens.
        let stop = super::client::stop_signal();
        let broker = Broker::with_cbs_keys(cbs_keys(&args.cbs_keys)?);
        let mut tasks = Vec::new();
        for url in &urls {
            // Each listener's connections are traced with its URL (the capture's comments).
            let place = super::trace::Place::default();
            let mut options = options.clone();
            options.trace = tracer.as_ref().map(|t| t.shared(std::sync::Arc::clone(&place)));
            options.started = tracer.as_ref().map(|t| t.started(std::sync::Arc::clone(&place)));
            options.ended = tracer.as_ref().map(super::trace::Tracer::ended);
            let listener = Listener::bind(url, options).await.map_err(|e| e.to_string())?;
            let _ = place.set(listener.endpoint().to_string());
            println!("listening on {}", listener.endpoint());
            let broker = broker.clone();
            tasks.push(tokio::spawn(async move { broker.serve(listener).await }));
        }
        let _ = std::io::stdout().flush();
        let served = async {
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(e) => return Err(format!("a listener stopped: {e}")),
                }
            }
            Ok(ExitCode::SUCCESS)
        };
        super::trace::Tracer::serve_until_stopped(served, stop, tracer.as_ref()).await
    })
}

/// The demo user; the password is masked in the trace unless `--show-secrets`.
const DEMO_USER: (&str, &str) = ("demo", "demo-password");

pub(crate) fn run_demo(args: &DemoArgs) -> Result<ExitCode, String> {
    runtime()?.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> Result<ExitCode, String> {
    let tracer = args.trace.tracer()?;
    let broker = Broker::new();
    let users = vec![(DEMO_USER.0.to_owned(), DEMO_USER.1.to_owned())];
    // Only the clients' side is traced (connections 1 and 2): the broker's mirrors it.
    let options = listen_options(&users, None, None);
    let tcp =
        Listener::bind("amqp://127.0.0.1:0", options.clone()).await.map_err(|e| e.to_string())?;
    let ws = Listener::bind("ws://127.0.0.1:0/amqp", options).await.map_err(|e| e.to_string())?;
    let (tcp_port, ws_port) = (tcp.endpoint().port, ws.endpoint().port);
    say(&format!(
        "amqpwire demo: an embedded broker on {} and {} (user {:?}); every frame each client sends and receives is shown below",
        tcp.endpoint(),
        ws.endpoint(),
        DEMO_USER.0
    ));
    for l in [tcp, ws] {
        let b = broker.clone();
        tokio::spawn(async move { b.serve(l).await });
    }
    let (user, password) = DEMO_USER;

    say("1. client 1 connects over TCP, authenticates with SASL PLAIN, and sends 3 messages to queue \"demo\" (unsettled)");
    let url = format!("amqp://{user}:{password}@127.0.0.1:{tcp_port}");
    let c1 = connect(&url, &TlsArgs::default(), Some(&tracer), 1).await?;
    let session = c1.begin_session().await.map_err(|e| e.to_string())?;
    let sender = session.sender("demo-sender", "demo").await.map_err(|e| e.to_string())?;
    for i in 1..=3 {
        let m = Message::with_data(format!("hello {i} from amqpwire").into_bytes());
        let outcome = sender.send(&m).await.map_err(|e| e.to_string())?;
        say(&format!("message {i}: the broker answered {}", outcome.name()));
    }
    say("2. client 1 closes");
    c1.close(None).await.map_err(|e| e.to_string())?;

    say("3. client 2 connects over WebSocket (subprotocol AMQPWSB10), authenticates with SCRAM-SHA-256, and receives them");
    let url =
        format!("ws://{user}:{password}@127.0.0.1:{ws_port}/amqp?sasl-mechanism=SCRAM-SHA-256");
    let c2 = connect(&url, &TlsArgs::default(), Some(&tracer), 2).await?;
    let session = c2.begin_session().await.map_err(|e| e.to_string())?;
    let rx = session.receiver("demo-receiver", "demo", 10).await.map_err(|e| e.to_string())?;
    for _ in 0..3 {
        let d = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .map_err(|_| "the demo messages did not arrive".to_owned())?
            .map_err(|e| e.to_string())?;
        let m = d.message().map_err(|e| e.to_string())?;
        let text =
            m.body.as_data().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        rx.accept(&d).map_err(|e| e.to_string())?;
        say(&format!("received {text:?} and accepted it"));
    }
    say("4. client 2 closes");
    c2.close(None).await.map_err(|e| e.to_string())?;
    tracer.finish();
    say("done: 3 messages sent over TCP and received over WebSocket, each settled once");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbs_keys_are_named_base64_keys() {
        let keys = cbs_keys(&["owner=c2VjcmV0".to_owned()]).expect("a key");
        assert_eq!(keys[0].0, "owner");
        assert_eq!(keys[0].1.as_bytes(), b"secret");
        assert!(cbs_keys(&["c2VjcmV0".to_owned()]).expect_err("no name").contains("NAME=KEY"));
        assert!(cbs_keys(&["=c2VjcmV0".to_owned()]).is_err());
        assert!(cbs_keys(&["owner=***".to_owned()]).expect_err("bad").contains("owner"));
    }
}

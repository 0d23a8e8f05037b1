//! `amqpwire proxy`: a byte-exact relay between a client and a server, decoding both
//! directions beside it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use amqpwire::codec::DecodeOptions;
use amqpwire::inspect::{Inspector, Record};
use amqpwire::proxy::{Flow, Proxy, ProxyEvent, ProxyOptions, Side, Tap};
use amqpwire::runtime::transport::{ClientTlsConfig, Endpoint, TlsServerConfig};

use super::certs;
use super::client::runtime;
use super::trace::{TraceArgs, Tracer};

/// Arguments of `amqpwire proxy`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProxyArgs {
    /// Accept clients on this URL: amqp://, amqps://, ws:// or wss:// with a host and port
    /// (port 0: any free port) and, for WebSocket, the path clients use.
    #[arg(long, value_name = "URL")]
    listen: String,
    /// Relay each client to this upstream URL (any of the four schemes; the host names
    /// the server for TLS and the WebSocket Host header, the path is the upgrade's).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Open the upstream's TCP connection to this address (HOST[:PORT]) instead of the
    /// host of --to, which still names the server for TLS and WebSocket: clients can keep
    /// using the real server's name (a hosts-file entry pointing it at the proxy) without
    /// the proxy looping back to itself.
    #[arg(long, value_name = "ADDRESS")]
    connect_to: Option<String>,
    /// The certificate chain (PEM) the proxy shows to amqps:// and wss:// clients. Without
    /// it, a CA and a certificate for the --name names are made (see --cert-dir).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// A name the generated certificate covers (repeatable): the name clients connect to,
    /// such as myhub.azure-devices.net. Default: the host of --to, then localhost and
    /// 127.0.0.1.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Where the generated CA and certificate are kept (ca.pem, server.pem,
    /// server-key.pem); clients trust DIR/ca.pem. Default: a folder per set of names under
    /// ~/.cache/amqpwire.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Trust the CAs in this PEM file for an amqps:// or wss:// upstream (beside the
    /// system's roots).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Close both sides of a connection at the first byte either sends that does not
    /// decode (by default decoding errors are reported and the bytes relayed anyway).
    #[arg(long)]
    strict_stop: bool,
    #[command(flatten)]
    trace: TraceArgs,
}

pub(crate) fn run(args: &ProxyArgs) -> Result<ExitCode, String> {
    runtime()?.block_on(async {
        let listen = Endpoint::parse_listen(&args.listen)
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let upstream: Endpoint = args.to.parse().map_err(|e| format!("--to {}: {e}", args.to))?;
        if upstream.user.is_some() || upstream.password.is_some() {
            // The relay passes the client's SASL exchange through and has none of its own.
            return Err(format!(
                "--to {upstream}: a user or password in the upstream's URL would not be used \
                 (the relay passes the client's SASL through): give them to the client"
            ));
        }
        let tls = server_tls(args, &listen, &upstream)?;
        let upstream_shown = upstream.to_string();
        let mut options = ProxyOptions::new(&listen, upstream, tls);
        options.connect_to = args.connect_to.clone();
        if let Some(ca) = &args.ca {
            options.tls = ClientTlsConfig::new()
                .with_ca_file(ca)
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        }
        let tracer = Tracer::for_relay(&args.trace)?;
        let place = super::trace::Place::default();
        let tap = Arc::new(CliTap {
            upstream: options.upstream.to_string(),
            tracer: tracer.clone(),
            place: Arc::clone(&place),
            strict_stop: args.strict_stop,
            inspectors: Mutex::new(HashMap::new()),
            unrelayed: Mutex::new(HashMap::new()),
            before_stop: Mutex::new(HashMap::new()),
            open: Mutex::new(std::collections::BTreeSet::new()),
        });
        // Signals are handled from before the command says where it listens.
        let stop = super::client::stop_signal();
        let proxy = Proxy::bind(&args.listen, options, Arc::clone(&tap) as Arc<dyn Tap>)
            .await
            .map_err(|e| e.to_string())?;
        let _ = place.set(proxy.endpoint().to_string());
        println!("listening on {}", proxy.endpoint());
        eprintln!("relaying to {upstream_shown}");
        let _ = std::io::stdout().flush();
        let served =
            async { proxy.run().await.map_err(|e| e.to_string()).map(|()| ExitCode::SUCCESS) };
        // Stopped by a signal: each connection still open says so on standard error, as
        // its trace does.
        let stopped = async {
            let code = stop.await;
            tap.stopped();
            code
        };
        Tracer::serve_until_stopped(served, stopped, tracer.as_ref()).await
    })
}

/// The listener's TLS: the given certificate, or one made for the names asked for.
fn server_tls(
    args: &ProxyArgs,
    listen: &Endpoint,
    upstream: &Endpoint,
) -> Result<Option<TlsServerConfig>, String> {
    if let (Some(c), Some(k)) = (&args.cert, &args.key) {
        return TlsServerConfig::from_pem_files(c, k).map(Some).map_err(|e| e.to_string());
    }
    if !listen.scheme.is_tls() {
        return Ok(None);
    }
    let mut names = args.names.clone();
    if names.is_empty() {
        names.push(upstream.host.clone());
    }
    let dir = args
        .cert_dir
        .clone()
        .unwrap_or_else(|| certs::default_dir(&format!("proxy-{}", names.join("+"))));
    let files = certs::in_dir(&dir, &names)?;
    eprintln!(
        "clients must trust {} (the proxy's CA; its certificate covers {})",
        files.ca.display(),
        certs::covered(&names).join(", ")
    );
    TlsServerConfig::from_pem_files(&files.cert, &files.key).map(Some).map_err(|e| e.to_string())
}

/// One direction's bytes held back by `--strict-stop`, and how many it has seen in all.
type Unrelayed = (Vec<u8>, u64);

/// The most of one frame `--strict-stop` holds back before it has decoded whole.
const MAX_HELD_BACK: usize = 64 << 20;

/// Decodes both directions of every relayed connection; traces them; stops a connection
/// at the first error with --strict-stop.
struct CliTap {
    /// The upstream's URL (its password masked), for the capture's comments.
    upstream: String,
    tracer: Option<Arc<Tracer>>,
    /// The URL listened on, for the capture's comments.
    place: super::trace::Place,
    strict_stop: bool,
    /// Per connection, when there is no tracer to hold them: the inspectors that judge
    /// --strict-stop.
    inspectors: Mutex<HashMap<u64, [Inspector; 2]>>,
    /// With --strict-stop, per connection and direction: the bytes of a frame not whole
    /// yet, held back from the relay, and so from the capture and the recording.
    /// (With the count of bytes seen in that direction, to place a fault's offset.)
    unrelayed: Mutex<HashMap<(u64, usize), Unrelayed>>,
    /// With --strict-stop, at a fault: how many of the bytes not yet written the relay
    /// writes before it stops (the whole frames before the one at fault).
    before_stop: Mutex<HashMap<(u64, usize), usize>>,
    /// The connections accepted and not finished, for what a signal's stop says of them.
    open: Mutex<std::collections::BTreeSet<u64>>,
}

impl CliTap {
    /// The command was stopped by a signal: each connection still open is said to have
    /// ended so on standard error (the trace, when there is one, says it itself).
    fn stopped(&self) {
        if self.tracer.as_ref().is_some_and(|t| t.has_text()) {
            return;
        }
        let open = self.open.lock().map(|o| o.clone()).unwrap_or_default();
        for connection in open {
            eprintln!("c{connection}: ended: the command was stopped (a signal) with it open");
        }
    }

    /// Where the item at fault among `records` starts (its stream offset).
    fn first_fault_offset(records: &[Record]) -> Option<u64> {
        records.iter().find_map(|r| match r {
            Record::Error { error, .. } => Some(error.offset),
            Record::Truncated { offset, .. } => Some(*offset),
            Record::Frame(f) if f.frame.is_err() || f.layer_error.is_some() => Some(f.offset),
            _ => None,
        })
    }

    /// The first error among `records`, in words.
    fn first_error(records: &[Record]) -> Option<String> {
        records.iter().find_map(|r| match r {
            Record::Error { error, .. } => Some(error.to_string()),
            Record::Truncated { offset, rest, .. } => {
                Some(format!("at offset {offset}: {} bytes left inside an item", rest.len()))
            }
            Record::Frame(f) => match (&f.frame, f.layer_error) {
                (Err(e), _) => Some(format!("at offset {}: {}", e.offset, e.kind)),
                (Ok(_), Some(e)) => Some(format!("at offset {}: {e}", f.offset)),
                _ => None,
            },
            _ => None,
        })
    }
}

/// The direction a side sends in: its inspector's index, its name and its arrow in traces.
fn lane(sender: Side) -> (usize, &'static str, &'static str) {
    match sender {
        Side::Client => (0, "c2s", "->"),
        Side::Server => (1, "s2c", "<-"),
    }
}

impl Tap for CliTap {
    fn bytes(&self, connection: u64, flow: Flow, data: &[u8]) -> Result<(), String> {
        let (index, dir, arrow) = lane(flow.sender());
        let records = match &self.tracer {
            Some(t) if t.prints() => {
                let records = t.inspect(connection, index, data);
                t.write(connection, dir, arrow, &records);
                records
            }
            _ if self.strict_stop => {
                let mut all = self.inspectors.lock().unwrap_or_else(PoisonError::into_inner);
                let pair = all.entry(connection).or_insert_with(|| {
                    [Inspector::new(DecodeOptions::LENIENT), Inspector::new(DecodeOptions::LENIENT)]
                });
                let i = &mut pair[index];
                i.push(data);
                std::iter::from_fn(|| i.next_record()).collect()
            }
            _ => Vec::new(),
        };
        let error = Self::first_error(&records).filter(|_| self.strict_stop);
        let held;
        let mut stop = None;
        let data = if self.strict_stop {
            // What the relay writes now: the bytes before the frame not whole yet, or, at
            // a fault, the whole frames before the one at fault.
            let hold = self.hold_back(connection, flow);
            let mut all = self.unrelayed.lock().unwrap_or_else(PoisonError::into_inner);
            let (pending, seen) = all.entry((connection, index)).or_default();
            let pending_from = *seen - pending.len() as u64;
            *seen += data.len() as u64;
            pending.extend_from_slice(data);
            let ready = match &error {
                // Bytes that do not decode are not relayed: they go into neither the
                // capture nor the recording (the trace shows them, and why the connection
                // stopped).
                Some(e) => {
                    let bad = Self::first_fault_offset(&records).unwrap_or(*seen);
                    let good = bad.saturating_sub(pending_from).min(pending.len() as u64);
                    stop = Some(format!("{} sent bytes that do not decode ({e})", flow.sender()));
                    good as usize
                }
                // A frame header may claim 4 GiB: what is held back is bounded.
                None if hold > MAX_HELD_BACK => {
                    stop = Some(format!(
                        "{} sent more than {} MiB of one frame: --strict-stop holds a frame \
                         back until it has decoded whole, and holds no more than that",
                        flow.sender(),
                        MAX_HELD_BACK >> 20
                    ));
                    0
                }
                None => pending.len().saturating_sub(hold),
            };
            held = if ready == 0 {
                // (Nothing split off while all is held: a long frame is not copied at each
                // read.)
                Vec::new()
            } else {
                let rest = pending.split_off(ready);
                std::mem::replace(pending, rest)
            };
            if stop.is_some() {
                all.remove(&(connection, index));
                // What the relay may still write before it stops.
                if let Ok(mut before) = self.before_stop.lock() {
                    before.insert((connection, index), held.len());
                }
            }
            &held[..]
        } else {
            data
        };
        if let Some(t) = self.tracer.as_ref().filter(|_| !data.is_empty()) {
            let from_client = flow == Flow::ClientToServer;
            t.record_bytes(connection, from_client, data);
            t.capture_bytes(connection, self.place.get().map(String::as_str), from_client, data);
        }
        match stop {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn event(&self, connection: u64, event: &ProxyEvent) {
        // A stream that ended inside a frame: what there is of it, before the event.
        let ended: &[Side] = match event {
            ProxyEvent::Closed { by } => &[*by][..],
            ProxyEvent::Failed { side, .. } => &[*side],
            ProxyEvent::Finished => &[Side::Client, Side::Server],
            _ => &[],
        };
        if let Some(t) = self.tracer.as_ref().filter(|t| t.prints()) {
            for side in ended {
                let (index, dir, arrow) = lane(*side);
                t.write(connection, dir, arrow, &t.end_stream(connection, index));
            }
        }
        if let Some(t) = &self.tracer {
            match event {
                ProxyEvent::Accepted { peer } => {
                    // Its SYN when it is accepted, so that a capture numbers connections
                    // in the order the trace does (accepted, not relayed: a client whose
                    // upstream fails, or is slower to reach, keeps its place), with the
                    // client's hop (transport, URL and addresses) and where it is relayed.
                    t.set_address(connection, true, *peer);
                    t.capture_open_noting(
                        connection,
                        self.place.get().map(String::as_str),
                        Some(format!("relayed to {}", self.upstream)),
                    );
                }
                // The side that closed first sends the first FIN; the other may go on.
                ProxyEvent::Closed { by } => t.capture_half_close(connection, *by == Side::Client),
                // The proxy closed the client's connection.
                ProxyEvent::ClientHandshakeFailed(_) | ProxyEvent::UpstreamFailed(_) => {
                    t.capture_end(connection, false, false);
                }
                _ => {}
            }
        }
        if let Ok(mut open) = self.open.lock() {
            match event {
                ProxyEvent::Accepted { .. } => {
                    open.insert(connection);
                }
                ProxyEvent::Finished => {
                    open.remove(&connection);
                }
                _ => {}
            }
        }
        let line = match event {
            ProxyEvent::Accepted { peer } => match peer {
                Some(p) => format!("accepted a client from {p}"),
                None => "accepted a client".to_owned(),
            },
            ProxyEvent::Relaying { upstream, upstream_addr } => match upstream_addr {
                Some(a) => format!("relaying to {upstream} ({a})"),
                None => format!("relaying to {upstream}"),
            },
            ProxyEvent::ClientHandshakeFailed(e) => format!("the client's handshake failed: {e}"),
            ProxyEvent::UpstreamFailed(e) => format!("cannot reach the upstream: {e}"),
            ProxyEvent::Closed { by } => format!("{by} closed its side"),
            ProxyEvent::Failed { side, error, reset } => {
                if let (Some(t), true) = (&self.tracer, reset) {
                    t.capture_end(connection, *side == Side::Client, true);
                }
                format!("{side}'s side failed: {error}")
            }
            ProxyEvent::Stopped { reason } => {
                // The relay cut both sides: in the capture, where it stands for the
                // server, a reset from the server's side.
                if let Some(t) = &self.tracer {
                    t.capture_end(connection, false, true);
                }
                format!("stopped: {reason}")
            }
            ProxyEvent::Finished => {
                if let Some(t) = &self.tracer {
                    t.forget(connection);
                }
                if let Ok(mut all) = self.inspectors.lock() {
                    all.remove(&connection);
                }
                if let Ok(mut all) = self.unrelayed.lock() {
                    all.remove(&(connection, 0));
                    all.remove(&(connection, 1));
                }
                "finished".to_owned()
            }
        };
        // The text trace, when there is one, has the events among the frames (on
        // standard error too): said once.
        if !self.tracer.as_ref().is_some_and(|t| t.has_text()) {
            eprintln!("c{connection}: {line}");
        }
        if let Some(t) = &self.tracer {
            t.note(connection, &line);
        }
    }

    fn relay_before_stop(&self, connection: u64, flow: Flow) -> usize {
        let (index, _, _) = lane(flow.sender());
        let mut before = self.before_stop.lock().unwrap_or_else(PoisonError::into_inner);
        before.remove(&(connection, index)).unwrap_or(0)
    }

    fn hold_back(&self, connection: u64, flow: Flow) -> usize {
        // With --strict-stop, a frame is relayed only once it has decoded whole.
        if !self.strict_stop {
            return 0;
        }
        let (index, _, _) = lane(flow.sender());
        match &self.tracer {
            Some(t) if t.prints() => t.buffered(connection, index),
            _ => {
                let all = self.inspectors.lock().unwrap_or_else(PoisonError::into_inner);
                all.get(&connection).and_then(|p| p.get(index)).map_or(0, Inspector::buffered)
            }
        }
    }

    fn listener(&self, note: &str) {
        eprintln!("amqpwire proxy: {note}");
    }
}

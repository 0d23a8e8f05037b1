//! A byte-exact AMQP relay: accepts clients on one transport and relays each connection
//! to an upstream on another, so that a third party can watch two programs that were
//! not written to be watched.
//!
//! ```text
//!   client ──amqp│amqps│ws│wss──▶ Proxy ──amqp│amqps│ws│wss──▶ upstream
//!                                  │
//!                                  └─ Tap: every byte of each direction, as it passes
//! ```
//!
//! The relay forwards what each side sends, unchanged and unparsed: malformed bytes, SASL
//! (relayed, not terminated), anything. What it sees goes to a [`Tap`] as it passes,
//! before it is written on; the tap decodes, records or captures it beside the relay, and
//! may stop a connection (the CLI's `--strict-stop`). Transports change only how bytes
//! travel: a WebSocket's message boundaries are not kept, the AMQP byte stream is.
//!
//! Each accepted connection gets a number (from 1). When one side closes, the other's
//! write half is shut down and what it still sends is relayed for a grace period (so that
//! a close frame's answer gets through); when one side fails, both are closed. The tap
//! learns which side did what.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::runtime::transport::{
    self, AcceptConfig, ClientTlsConfig, Endpoint, Reserved, Transport, TransportError,
};

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// From the client to the upstream server.
    ClientToServer,
    /// From the upstream server to the client.
    ServerToClient,
}

impl Flow {
    /// The side that sends in this direction.
    pub fn sender(self) -> Side {
        match self {
            Self::ClientToServer => Side::Client,
            Self::ServerToClient => Side::Server,
        }
    }
}

/// One end of a relayed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client that connected to the proxy.
    Client,
    /// The upstream server.
    Server,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Client => "the client",
            Self::Server => "the server",
        })
    }
}

/// What happened to a relayed connection, for the tap.
#[derive(Debug)]
pub enum ProxyEvent {
    /// A client connected (TCP), before any handshake.
    Accepted {
        /// The client's address.
        peer: Option<std::net::SocketAddr>,
    },
    /// The client's transport (TLS, WebSocket) is set up and the upstream is connected:
    /// bytes flow from now on.
    Relaying {
        /// The upstream endpoint, as `scheme://host:port/path`.
        upstream: String,
        /// The address the upstream connection went to.
        upstream_addr: Option<std::net::SocketAddr>,
    },
    /// The client's TLS or WebSocket handshake failed; nothing was relayed.
    ClientHandshakeFailed(TransportError),
    /// The upstream could not be reached (or its handshakes failed); the client is let go.
    UpstreamFailed(TransportError),
    /// One side ended its stream cleanly (its last bytes were relayed).
    Closed {
        /// Who closed.
        by: Side,
    },
    /// One side's transport failed; both were closed.
    Failed {
        /// Whose transport.
        side: Side,
        /// What went wrong.
        error: String,
        /// Whether that side aborted its connection (a TCP reset) rather than failing
        /// otherwise (a TLS or WebSocket error): a capture shows a reset as one.
        reset: bool,
    },
    /// The tap stopped the connection (both sides closed).
    Stopped {
        /// Why.
        reason: String,
    },
    /// The connection is over; no more bytes or events for it.
    Finished,
}

/// What sees the relayed bytes and events. Called on the connection's task, in order;
/// `bytes` is called before the bytes are written on. An error from it stops the
/// connection (both sides closed) with that reason.
pub trait Tap: Send + Sync {
    /// Bytes that passed in one direction.
    fn bytes(&self, connection: u64, flow: Flow, data: &[u8]) -> Result<(), String>;
    /// Something that happened to a connection.
    fn event(&self, connection: u64, event: &ProxyEvent);
    /// How many of the last bytes shown to [`Tap::bytes`] in `flow` are to be held back
    /// for now (an item not yet whole, which the tap will judge once the rest comes): they
    /// are written with the bytes that complete them, and never if the stream ends first.
    /// None unless implemented.
    fn hold_back(&self, connection: u64, flow: Flow) -> usize {
        let _ = (connection, flow);
        0
    }
    /// After [`Tap::bytes`] refused bytes in `flow` (an `Err`): how many of the bytes not
    /// written yet (those held back, then the refused ones) are still written before the
    /// connection stops, such as the whole frames before the one at fault. None unless
    /// implemented.
    fn relay_before_stop(&self, connection: u64, flow: Flow) -> usize {
        let _ = (connection, flow);
        0
    }
    /// Something that happened to the listener (it cannot accept clients for now, or can
    /// again). Ignored unless implemented.
    fn listener(&self, note: &str) {
        let _ = note;
    }
}

/// How to reach the upstream, and how to accept clients.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// The upstream: its scheme, host (TLS server name, WebSocket `Host`), port and path.
    pub upstream: Endpoint,
    /// Where to open the upstream's TCP connection instead of its host name (`HOST:PORT`
    /// or `HOST`, the upstream's port then), so that a hosts-file entry can point clients
    /// at the proxy under the upstream's own name without looping back.
    pub connect_to: Option<String>,
    /// Roots and client certificate for an `amqps` or `wss` upstream.
    pub tls: ClientTlsConfig,
    /// Certificate (for `amqps` and `wss` listeners) and WebSocket path and subprotocol.
    pub accept: AcceptConfig,
    /// The longest the client's and the upstream's handshakes may take.
    pub handshake_timeout: Duration,
    /// How long the other side may go on sending after one side closed.
    pub close_grace: Duration,
}

impl ProxyOptions {
    /// Options for relaying clients of `listen` to `upstream`, with the system's roots and
    /// `tls` as the listener's certificate.
    pub fn new(
        listen: &Endpoint,
        upstream: Endpoint,
        tls: Option<transport::TlsServerConfig>,
    ) -> Self {
        Self {
            upstream,
            connect_to: None,
            tls: ClientTlsConfig::new(),
            accept: AcceptConfig::for_endpoint(listen, tls),
            handshake_timeout: Duration::from_secs(30),
            close_grace: Duration::from_secs(5),
        }
    }
}

/// A listening relay.
pub struct Proxy {
    tcp: TcpListener,
    listen: Endpoint,
    options: Arc<ProxyOptions>,
    tap: Arc<dyn Tap>,
    count: AtomicU64,
    /// The upstream's addresses when the proxy was bound: tried when the name cannot be
    /// resolved and none has answered yet.
    resolved: Arc<[std::net::SocketAddr]>,
    /// The upstream's address that answered last (forgotten when reaching the upstream
    /// fails).
    answered: Arc<Mutex<Option<std::net::SocketAddr>>>,
}

/// What one client's task has for reaching the upstream: the socket opened for it before
/// the client was accepted, and where to note the address that answers.
struct Upstream<'a> {
    reserved: Option<Reserved>,
    answered: &'a Mutex<Option<std::net::SocketAddr>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.listen.to_string())
            .field("upstream", &self.options.upstream.to_string())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Listens on `listen` (port 0 picks a free port; see [`Proxy::endpoint`]).
    pub async fn bind(
        listen: &str,
        options: ProxyOptions,
        tap: Arc<dyn Tap>,
    ) -> Result<Self, TransportError> {
        let mut endpoint =
            Endpoint::parse_listen(listen).map_err(|e| TransportError::Config(e.to_string()))?;
        AcceptConfig::check(&endpoint, options.accept.tls.as_ref())?;
        let tcp = TcpListener::bind((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| TransportError::Bind { endpoint: endpoint.to_string(), source })?;
        if let Ok(addr) = tcp.local_addr() {
            endpoint.port = addr.port();
        }
        // Where the upstream's TCP connections go: checked now, not for each client.
        let (host, port) = match &options.connect_to {
            Some(a) => transport::split_address(a, options.upstream.port)?,
            None => (options.upstream.host.clone(), options.upstream.port),
        };
        let targets: Vec<_> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(targets) => targets.collect(),
            Err(_) => Vec::new(),
        };
        let resolved: Arc<[std::net::SocketAddr]> = targets.iter().copied().collect();
        if let Ok(local) = tcp.local_addr() {
            let ours = |t: std::net::SocketAddr| {
                t == local
                    || t.port() == local.port()
                        && local.ip().is_unspecified()
                        && (t.ip().is_loopback() || t.ip().is_unspecified())
            };
            if targets.into_iter().any(ours) {
                return Err(TransportError::Config(format!(
                    "the upstream {host}:{port} is this proxy's own listener ({endpoint}): \
                     every client would be relayed to the proxy again, without end"
                )));
            }
        }
        Ok(Self {
            tcp,
            listen: endpoint,
            options: Arc::new(options),
            tap,
            count: 0.into(),
            resolved,
            answered: Arc::default(),
        })
    }

    /// The endpoint listened on, with the port actually bound.
    pub fn endpoint(&self) -> &Endpoint {
        &self.listen
    }

    /// Accepts clients, relaying each on a task of its own. The socket for a client's
    /// upstream is opened before the client is accepted (of the family of the address
    /// that answered last, which is tried first; the addresses known from before are
    /// tried when the name cannot be resolved, as when descriptors run out), so that a
    /// client is not accepted only to be dropped for want of a descriptor to reach its
    /// upstream with. A failure to open it or to accept
    /// for want of resources (no file descriptors left, say) leaves the clients over the
    /// limit waiting in the listener's queue, not the others: it is told to the tap once
    /// per spell, and accepting is tried again every 50 ms until it can go on (said too).
    /// Any other failure of the listener ends it.
    pub async fn run(&self) -> Result<(), TransportError> {
        let mut failing = false;
        let exhausted = |failing: &mut bool, e: &std::io::Error| {
            if !std::mem::replace(failing, true) {
                self.tap.listener(&format!(
                    "cannot accept clients ({e}); the connections relayed go on, and \
                     accepting is tried again every 50 ms"
                ));
            }
        };
        loop {
            let answered = self.answered.lock().ok().and_then(|a| *a);
            // A failure other than for want of resources is the upstream's connect's to
            // tell, when it opens a socket of its own.
            let reserved = match Reserved::open(answered, Arc::clone(&self.resolved)) {
                Ok(reserved) => Some(reserved),
                Err(e) if transport::resource_exhausted(&e) => {
                    exhausted(&mut failing, &e);
                    tokio::time::sleep(RESOURCE_RETRY).await;
                    continue;
                }
                Err(_) => None,
            };
            // After a spell of failures: able to go on once a socket could be opened and
            // accepting fails no more, whether or not a client waits.
            let accepted = if failing {
                let now = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(match self.tcp.poll_accept(cx) {
                        std::task::Poll::Ready(r) => Some(r),
                        std::task::Poll::Pending => None,
                    })
                })
                .await;
                match now {
                    Some(r) => r,
                    None => {
                        failing = false;
                        self.tap.listener("accepting clients again");
                        self.tcp.accept().await
                    }
                }
            } else {
                self.tcp.accept().await
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                // A client that went before it was accepted: nothing to say or wait for.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(e) if transport::resource_exhausted(&e) => {
                    drop(reserved);
                    exhausted(&mut failing, &e);
                    tokio::time::sleep(RESOURCE_RETRY).await;
                    continue;
                }
                Err(e) => return Err(TransportError::Io(e)),
            };
            if std::mem::take(&mut failing) {
                self.tap.listener("accepting clients again");
            }
            let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
            let (listen, options, tap, answered) = (
                self.listen.clone(),
                Arc::clone(&self.options),
                Arc::clone(&self.tap),
                Arc::clone(&self.answered),
            );
            tap.event(n, &ProxyEvent::Accepted { peer: Some(peer) });
            tokio::spawn(async move {
                let upstream = Upstream { reserved, answered: &answered };
                serve_one(n, tcp, upstream, &listen, &options, tap.as_ref()).await;
                tap.event(n, &ProxyEvent::Finished);
            });
        }
    }
}

/// Sets up one client's transport and its upstream, then relays.
async fn serve_one(
    n: u64,
    tcp: tokio::net::TcpStream,
    upstream: Upstream<'_>,
    listen: &Endpoint,
    options: &ProxyOptions,
    tap: &dyn Tap,
) {
    let limit = options.handshake_timeout;
    let timed_out = |what: &str| {
        TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} took longer than {limit:?}"),
        ))
    };
    let client =
        match tokio::time::timeout(limit, transport::accept(tcp, listen, &options.accept)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return tap.event(n, &ProxyEvent::ClientHandshakeFailed(e)),
            Err(_) => {
                return tap.event(n, &ProxyEvent::ClientHandshakeFailed(timed_out("the handshake")))
            }
        };
    let upstream = match tokio::time::timeout(
        limit,
        transport::connect_reserved(
            &options.upstream,
            &options.tls,
            options.connect_to.as_deref(),
            upstream.reserved,
        ),
    )
    .await
    {
        Ok(Ok(t)) => {
            if let (Some(addr), Ok(mut answered)) = (t.peer_addr(), upstream.answered.lock()) {
                *answered = Some(addr);
            }
            t
        }
        Ok(Err(e)) => {
            forget(upstream.answered);
            return tap.event(n, &ProxyEvent::UpstreamFailed(e));
        }
        Err(_) => {
            forget(upstream.answered);
            return tap.event(n, &ProxyEvent::UpstreamFailed(timed_out("reaching the upstream")));
        }
    };
    tap.event(
        n,
        &ProxyEvent::Relaying {
            upstream: options.upstream.to_string(),
            upstream_addr: upstream.peer_addr(),
        },
    );
    relay(n, client, upstream, options.close_grace, tap).await;
}

/// How one direction ended.
enum End {
    /// Its sender closed its stream.
    Eof,
    /// Reading from its sender failed.
    ReadFailed(std::io::Error),
    /// Writing to the other side failed.
    WriteFailed(std::io::Error),
    /// The tap stopped it.
    Stopped(String),
}

/// Relays both directions until both have ended (or one failed).
async fn relay(n: u64, client: Transport, upstream: Transport, grace: Duration, tap: &dyn Tap) {
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut server_rd, mut server_wr) = tokio::io::split(upstream);
    let up = pump(n, Flow::ClientToServer, &mut client_rd, &mut server_wr, tap);
    let down = pump(n, Flow::ServerToClient, &mut server_rd, &mut client_wr, tap);
    tokio::pin!(up, down);
    // The first direction to end decides what happens to the other.
    let (first, flow) = tokio::select! {
        e = &mut up => (e, Flow::ClientToServer),
        e = &mut down => (e, Flow::ServerToClient),
    };
    let rest = match first {
        End::Eof => {
            tap.event(n, &ProxyEvent::Closed { by: flow.sender() });
            // The other side learns of the close (its write half shut down by the pump) and
            // may still answer: relay that for a while.
            let other = async {
                match flow {
                    Flow::ClientToServer => (&mut down).await,
                    Flow::ServerToClient => (&mut up).await,
                }
            };
            match tokio::time::timeout(grace, other).await {
                Ok(e) => Some((e, other_flow(flow))),
                Err(_) => None,
            }
        }
        e => Some((e, flow)),
    };
    if let Some((end, flow)) = rest {
        match end {
            End::Eof => tap.event(n, &ProxyEvent::Closed { by: flow.sender() }),
            End::ReadFailed(e) => {
                let (error, reset) = (e.to_string(), is_reset(&e));
                tap.event(n, &ProxyEvent::Failed { side: flow.sender(), error, reset });
            }
            End::WriteFailed(e) => {
                let side = other_flow(flow).sender();
                let (error, reset) = (e.to_string(), is_reset(&e));
                tap.event(n, &ProxyEvent::Failed { side, error, reset });
            }
            End::Stopped(reason) => tap.event(n, &ProxyEvent::Stopped { reason }),
        }
    }
    // Whatever is left is closed when the halves drop.
}

/// Whether an I/O error says the peer aborted the connection.
fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe)
}

/// Forgets the address that answered last (it may be the one that failed): the
/// resolver's order rules the next client's tries.
fn forget(answered: &Mutex<Option<std::net::SocketAddr>>) {
    if let Ok(mut a) = answered.lock() {
        *a = None;
    }
}

/// How often accepting is tried again while descriptors or memory are short.
const RESOURCE_RETRY: Duration = Duration::from_millis(50);

fn other_flow(flow: Flow) -> Flow {
    match flow {
        Flow::ClientToServer => Flow::ServerToClient,
        Flow::ServerToClient => Flow::ClientToServer,
    }
}

/// Copies one direction: read, show the tap, write on and flush (a WebSocket sends what
/// was written as a message on flush). At the end of the stream, shuts the writer down
/// so that the other side sees the close.
async fn pump<R, W>(n: u64, flow: Flow, from: &mut R, to: &mut W, tap: &dyn Tap) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes the tap holds back (an item not whole yet), before this read's.
    let mut held: Vec<u8> = Vec::new();
    loop {
        let got = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Ok(got) => got,
            Err(e) => return End::ReadFailed(e),
        };
        let data = buf.get(..got).unwrap_or_default();
        if let Err(reason) = tap.bytes(n, flow, data) {
            // What the tap lets go before it stops: bytes held back before, then this
            // read's.
            let before = tap.relay_before_stop(n, flow);
            if before > 0 {
                held.extend_from_slice(data);
                let _ = to.write_all(&held[..before.min(held.len())]).await;
                let _ = to.flush().await;
            }
            let _ = to.shutdown().await;
            return End::Stopped(reason);
        }
        let hold = tap.hold_back(n, flow);
        let data = if held.is_empty() && hold == 0 {
            data
        } else {
            held.extend_from_slice(data);
            // (Nothing split off while all is held: a long frame is not copied at each read.)
            let ready = held.len().saturating_sub(hold);
            if ready > 0 {
                let rest = held.split_off(ready);
                let out = std::mem::replace(&mut held, rest);
                if let Err(e) = to.write_all(&out).await {
                    return End::WriteFailed(e);
                }
            }
            &[][..]
        };
        if let Err(e) = to.write_all(data).await {
            return End::WriteFailed(e);
        }
        if let Err(e) = to.flush().await {
            return End::WriteFailed(e);
        }
    }
}

//! The server side: a [`Listener`] accepts TCP connections on an `amqp://`, `amqps://`,
//! `ws://` or `wss://` endpoint, sets up the transport, runs a server-role engine on each,
//! and hands the application the links its peers attach, to accept or refuse.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use bytes::Bytes;

use crate::connection::{self as engine, LinkId, LinkOptions, TraceRecord, TxnEndCause};
use crate::sasl::Authenticator;
use crate::types::{Attach, AttachSource, AttachTarget, Error as AmqpError, Role};

use super::driver::{RecvQueue, Request, TransportEnd};
use super::handles::{container_id, Connection, Receiver, Sender};
use super::transport::{self, AcceptConfig, Endpoint, TlsServerConfig, Transport};
use super::Error;

/// Makes the SASL authenticator of each accepted connection (`None`: no SASL layer).
pub type AuthenticatorFactory =
    Arc<dyn Fn() -> Option<Box<dyn Authenticator + Send>> + Send + Sync>;

/// A trace callback shared by every connection of a listener: the connection's number
/// (in the order connections are set up, see [`ListenOptions::numbers`]) and the record.
pub type SharedTrace = Arc<dyn Fn(u64, &TraceRecord<'_>) + Send + Sync>;

/// Told that a listener's connection has ended: its number (as for [`SharedTrace`]) and
/// how its transport ended, once the driver has stopped (every byte it had to write is
/// written, or can no longer be).
pub type EndedFn = Arc<dyn Fn(u64, TransportEnd) + Send + Sync>;

/// Told that a listener has set up a connection (its TLS and WebSocket handshakes done):
/// its number (as for [`SharedTrace`]), the client's address and ours.
pub type StartedFn =
    Arc<dyn Fn(u64, Option<std::net::SocketAddr>, Option<std::net::SocketAddr>) + Send + Sync>;

/// How a listener sets up the connections it accepts.
#[derive(Clone)]
pub struct ListenOptions {
    /// Certificate and key for `amqps://` and `wss://`.
    pub tls: Option<TlsServerConfig>,
    /// SASL for each connection.
    pub authenticator: Option<AuthenticatorFactory>,
    /// Refuse clients that skip SASL (with an authenticator set).
    pub require_sasl: bool,
    /// Our container-id.
    pub container_id: String,
    /// The idle time-out to announce.
    pub idle_time_out: Option<Duration>,
    /// How long a client may take for the TLS and WebSocket handshakes, and then again
    /// for the AMQP handshake: its protocol headers, SASL and open
    /// ([`Config::open_timeout`](engine::Config::open_timeout); a client silent longer is
    /// let go).
    pub handshake_timeout: Duration,
    /// Sees every frame of every connection.
    pub trace: Option<SharedTrace>,
    /// Numbers the connections for [`ListenOptions::trace`], in the order they are set up
    /// (after their TLS and WebSocket handshakes). Clones of these options share it, so
    /// that listeners made from one set of options (a broker on TCP and WebSocket, say)
    /// never give two connections the same number in one trace or capture.
    pub numbers: ConnectionNumbers,
    /// Told when each connection is set up, before its first frame (for a trace or
    /// capture to name the client).
    pub started: Option<StartedFn>,
    /// Told when each connection has ended (for a trace or capture to end it too).
    pub ended: Option<EndedFn>,
    /// Adjusts each connection's engine configuration last, for what the fields above do
    /// not cover (max-frame-size, channel-max, session windows, the frame layout…).
    pub configure: Option<ConfigureFn>,
}

/// Adjusts the engine configuration of each accepted connection.
pub type ConfigureFn = Arc<dyn Fn(&mut engine::Config) + Send + Sync>;

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            tls: None,
            authenticator: None,
            require_sasl: false,
            container_id: container_id("amqpwire-listener"),
            idle_time_out: None,
            handshake_timeout: Duration::from_secs(10),
            trace: None,
            numbers: ConnectionNumbers::default(),
            started: None,
            ended: None,
            configure: None,
        }
    }
}

/// The next number for a connection, shared by the clones of one [`ListenOptions`].
#[derive(Clone, Debug, Default)]
pub struct ConnectionNumbers(Arc<std::sync::atomic::AtomicU64>);

impl ConnectionNumbers {
    /// Takes the next number (0 first).
    pub fn take(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

impl ListenOptions {
    /// Runs the server-role engine, set up as these options say, on a transport accepted
    /// elsewhere (see [`Transport::from_accepted`]), numbered by
    /// [`ListenOptions::numbers`] like the connections of listeners made from them.
    pub fn start(&self, io: Transport) -> ServerConnection {
        let n = self.numbers.take();
        if let Some(started) = &self.started {
            started(n, io.peer_addr(), io.local_addr());
        }
        let on_end = self.ended.clone().map(|f| {
            let f: Box<dyn FnOnce(TransportEnd) + Send> = Box::new(move |end| f(n, end));
            f
        });
        ServerConnection::start_with(server_config(self, &io, n), io, on_end)
    }
}

impl std::fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenOptions")
            .field("tls", &self.tls.is_some())
            .field("authenticator", &self.authenticator.is_some())
            .field("require_sasl", &self.require_sasl)
            .field("container_id", &self.container_id)
            .finish_non_exhaustive()
    }
}

/// Accepts AMQP connections on one endpoint.
pub struct Listener {
    tcp: TcpListener,
    endpoint: Endpoint,
    setup: Arc<Setup>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("endpoint", &self.endpoint.to_string()).finish()
    }
}

struct Setup {
    endpoint: Endpoint,
    accept: AcceptConfig,
    options: ListenOptions,
}

impl Listener {
    /// Listens on `url` (port 0 picks a free port; see [`Listener::endpoint`]).
    pub async fn bind(url: &str, options: ListenOptions) -> Result<Self, Error> {
        let endpoint = Endpoint::parse_listen(url)?;
        let tcp =
            TcpListener::bind((endpoint.host.as_str(), endpoint.port)).await.map_err(|source| {
                transport::TransportError::Bind { endpoint: endpoint.to_string(), source }
            })?;
        let mut endpoint = endpoint;
        if let Ok(addr) = tcp.local_addr() {
            endpoint.port = addr.port();
        }
        AcceptConfig::check(&endpoint, options.tls.as_ref()).map_err(Error::Transport)?;
        let accept = AcceptConfig::for_endpoint(&endpoint, options.tls.clone());
        let setup = Arc::new(Setup { endpoint: endpoint.clone(), accept, options });
        Ok(Self { tcp, endpoint, setup })
    }

    /// The endpoint listened on, with the port actually bound.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Waits for the next TCP connection. Set it up with [`Incoming::establish`], on a task
    /// of its own so that a slow handshake does not hold up the next accept.
    pub async fn accept(&self) -> Result<Incoming, Error> {
        let (tcp, _) = self
            .tcp
            .accept()
            .await
            .map_err(|e| Error::Transport(transport::TransportError::Io(e)))?;
        Ok(Incoming { tcp, setup: Arc::clone(&self.setup) })
    }
}

/// A TCP connection accepted by a [`Listener`], not yet set up.
pub struct Incoming {
    tcp: TcpStream,
    setup: Arc<Setup>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").field("peer", &self.tcp.peer_addr().ok()).finish()
    }
}

impl Incoming {
    /// Runs the TLS and WebSocket handshakes the endpoint asks for, then the server-role
    /// engine on a task of its own.
    pub async fn establish(self) -> Result<ServerConnection, Error> {
        let setup = self.setup;
        let io = tokio::time::timeout(
            setup.options.handshake_timeout,
            transport::accept(self.tcp, &setup.endpoint, &setup.accept),
        )
        .await
        .map_err(|_| Error::Timeout("the client's handshake"))??;
        Ok(setup.options.start(io))
    }
}

fn server_config(o: &ListenOptions, io: &Transport, n: u64) -> engine::Config {
    let mut cfg = engine::Config::new(o.container_id.clone());
    cfg.idle_time_out = o.idle_time_out;
    cfg.open_timeout = Some(o.handshake_timeout);
    // Names the peer for test suites and investigators, as other brokers do.
    let mut properties = crate::types::Fields::new();
    properties.insert("product", "amqpwire");
    properties.insert("version", env!("CARGO_PKG_VERSION"));
    cfg.properties = Some(properties);
    cfg.authenticator = o.authenticator.as_ref().and_then(|f| f());
    cfg.require_sasl = o.require_sasl && cfg.authenticator.is_some();
    // Only a certificate the TLS layer checked against the client CAs names anyone; one a
    // listener took unchecked (`with_any_client_certificate`) is the application's to judge.
    if o.tls.as_ref().is_some_and(TlsServerConfig::checks_client_certificates) {
        cfg.external_identity = io.peer_identity().and_then(|p| p.subject_cn);
    }
    cfg.accept_links = false;
    if let Some(trace) = &o.trace {
        let trace = Arc::clone(trace);
        cfg.trace = Some(Box::new(move |r| trace(n, r)));
    }
    if let Some(configure) = &o.configure {
        configure(&mut cfg);
    }
    cfg
}

/// A connection a listener accepted: the connection, and the links its peer attaches.
#[derive(Debug)]
pub struct ServerConnection {
    /// The connection (sessions the peer begins are answered at once).
    pub connection: Connection,
    pub(crate) requests: Requests,
}

/// What the engine hands the application, in order. Whatever is still queued when the
/// application drops its [`ServerConnection`] is answered as a dropped [`LinkRequest`] or
/// [`TxnEnd`] is (refused), and what comes later is refused by the connection itself.
#[derive(Debug)]
pub(crate) struct Requests {
    pub(crate) rx: mpsc::UnboundedReceiver<Request>,
    conn: Connection,
}

impl Requests {
    /// What the application gets for `request`.
    fn event(&self, request: Request) -> ServerEvent {
        let conn = self.conn.clone();
        match request {
            Request::Link { link, remote } => {
                let answer = Unanswered { conn, pending: Some(Pending::Attach(link)) };
                ServerEvent::Link(LinkRequest { answer, link, remote })
            }
            Request::TxnEnded { txn_id, commit, cause, work } => {
                let pending = cause.awaits_answer().then(|| Pending::Discharge(txn_id.clone()));
                let answer = Unanswered { conn, pending };
                ServerEvent::TxnEnded(TxnEnd { answer, txn_id, commit, cause, work })
            }
        }
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(request) = self.rx.try_recv() {
            drop(self.event(request));
        }
    }
}

impl ServerConnection {
    /// Runs a server-role `engine` over `io` (for transports set up elsewhere, such as
    /// an in-memory pipe).
    pub fn start(config: engine::Config, io: Transport) -> Self {
        Self::start_with(config, io, None)
    }

    /// [`ServerConnection::start`], calling `on_end` once the transport has ended.
    fn start_with(
        config: engine::Config,
        io: Transport,
        on_end: Option<Box<dyn FnOnce(TransportEnd) + Send>>,
    ) -> Self {
        let (tx, requests) = mpsc::unbounded_channel();
        let mut config = config;
        config.accept_links = false;
        let connection =
            Connection::start(engine::Connection::server(config), io, Some(tx), on_end);
        let requests = Requests { rx: requests, conn: connection.clone() };
        Self { connection, requests }
    }

    /// The next link the peer attaches; `None` once the connection has ended. For a
    /// connection whose engine runs a transaction coordinator, use [`ServerConnection::next`]
    /// instead: here a transaction that ends is rolled back with nothing applied, and its
    /// discharge refused.
    pub async fn next_link(&mut self) -> Option<LinkRequest> {
        loop {
            match self.next().await? {
                ServerEvent::Link(r) => return Some(r),
                ServerEvent::TxnEnded(t) => {
                    let e = AmqpError::new(
                        crate::types::condition::NOT_IMPLEMENTED,
                        "this server applies no transactions",
                    );
                    let _ = t.complete(Err(e));
                }
            }
        }
    }

    /// The next thing the application must answer: a link the peer attached, or the end of
    /// a transaction on the engine's coordinator (with
    /// [`Config::coordinator`](crate::connection::Config::coordinator)); `None` once the
    /// connection has ended and everything before was taken. Ends of transactions come in
    /// the order the engine decided them, and those that the connection's end rolls back
    /// come before `None`.
    pub async fn next(&mut self) -> Option<ServerEvent> {
        let request = self.requests.rx.recv().await?;
        Some(self.requests.event(request))
    }
}

/// What a [`ServerConnection`] hands its application.
#[derive(Debug)]
pub enum ServerEvent {
    /// A link the peer attached.
    Link(LinkRequest),
    /// A transaction ended.
    TxnEnded(TxnEnd),
}

/// What the peer waits for until the application answers it; answered with a refusal
/// (`amqp:not-implemented`) when dropped unanswered, so that the peer is never left
/// waiting for ever.
#[derive(Debug)]
struct Unanswered {
    conn: Connection,
    pending: Option<Pending>,
}

/// What an [`Unanswered`] answers.
#[derive(Debug)]
enum Pending {
    /// The peer's attach.
    Attach(LinkId),
    /// A discharge, by its transaction.
    Discharge(Bytes),
}

impl Unanswered {
    /// The connection to answer on; dropping no longer refuses (an answer that fails is
    /// the caller's error to report, not a reason to refuse something half answered).
    fn answered(mut self) -> Connection {
        self.pending = None;
        self.conn.clone()
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else { return };
        let e = |what| AmqpError::new(crate::types::condition::NOT_IMPLEMENTED, what);
        // A connection that has ended needs no answer: the error is not news.
        let _ = self.conn.command(|s| match pending {
            Pending::Attach(link) => {
                let e = e("the application dropped the link request unanswered");
                Ok(s.conn.refuse_attach(link, e)?)
            }
            Pending::Discharge(txn_id) => {
                let e = e("the application dropped the transaction's end unanswered: its work was not applied");
                Ok(s.conn.complete_discharge(&txn_id, Err(e))?)
            }
        });
    }
}

/// A transaction on the engine's coordinator ended (part 4): commit or roll back its work,
/// then [`TxnEnd::complete`] so that the controller hears the outcome of its discharge.
/// Dropped without [`TxnEnd::complete`], a discharge that waits for an answer is refused
/// (`amqp:not-implemented`): the controller hears that its work was not applied.
#[derive(Debug)]
pub struct TxnEnd {
    answer: Unanswered,
    /// The transaction.
    pub txn_id: Bytes,
    /// Apply its work; `false`: undo it.
    pub commit: bool,
    /// Why it ended.
    pub cause: TxnEndCause,
    /// How many transactional deliveries and dispositions naming it the connection handed
    /// to its receivers and senders before it ended: the work to have taken in before
    /// committing or rolling back, when links are served by tasks of their own.
    pub work: u32,
}

impl TxnEnd {
    /// Answers the discharge, when the cause waits for an answer: `Ok` accepts it, `Err`
    /// refuses it with the error (a commit that could not be applied). Nothing to answer
    /// for a time-out or a control link that went.
    pub fn complete(self, result: Result<(), AmqpError>) -> Result<(), Error> {
        let conn = self.answer.answered();
        if !self.cause.awaits_answer() {
            return Ok(());
        }
        let id = self.txn_id;
        conn.command(|s| Ok(s.conn.complete_discharge(&id, result)?))
    }
}

/// A link the peer attached, waiting for the application to accept or refuse it. Dropped
/// unanswered, it is refused (`amqp:not-implemented`), so the peer's attach never waits
/// for ever.
#[derive(Debug)]
pub struct LinkRequest {
    answer: Unanswered,
    link: LinkId,
    /// The peer's attach.
    pub remote: Box<Attach>,
}

impl LinkRequest {
    /// The link, as this side names it.
    pub fn link(&self) -> LinkId {
        self.link
    }

    /// The peer's role: [`Role::SENDER`] when it wants to send to us.
    pub fn role(&self) -> Role {
        self.remote.role
    }

    /// The address the peer names: the target's for a peer that sends, the source's for
    /// one that receives.
    pub fn address(&self) -> Option<&str> {
        if self.remote.role == Role::SENDER {
            match &self.remote.target {
                Some(AttachTarget::Target(t)) => t.address.as_deref(),
                _ => None,
            }
        } else {
            match &self.remote.source {
                Some(AttachSource::Source(s)) => s.address.as_deref(),
                _ => None,
            }
        }
    }

    /// Accepts a link on which the peer sends: we receive, keeping `credit` granted (fewer
    /// for large messages, as [`Session::receiver`](super::Session::receiver) says).
    pub fn accept_receiver(
        self,
        options: Option<LinkOptions>,
        credit: u32,
    ) -> Result<Receiver, Error> {
        let initial = RecvQueue::initial_credit(credit);
        self.accept_receiver_granting(options, credit, initial)
    }

    /// [`LinkRequest::accept_receiver`], granting `initial` credits at once instead of the
    /// cautious first grant (a broker that knows its messages are small, say): the window
    /// is then kept as usual.
    pub fn accept_receiver_granting(
        self,
        options: Option<LinkOptions>,
        credit: u32,
        initial: u32,
    ) -> Result<Receiver, Error> {
        let link = self.link;
        let conn = self.answer.answered();
        let notify = conn.command(|s| {
            s.conn.accept_attach(link, options)?;
            s.new_link(link);
            let q = RecvQueue::new(credit);
            let notify = Arc::clone(&q.notify);
            s.receivers.insert(link, q);
            Ok(notify)
        })?;
        // Made before the first grant, so that a failure drops it (closing the link).
        let receiver = Receiver::new(conn, link, notify, self.remote);
        if initial > 0 {
            receiver.set_credit(initial)?;
        }
        Ok(receiver)
    }

    /// Accepts a link on which the peer receives: we send.
    pub fn accept_sender(self, options: Option<LinkOptions>) -> Result<Sender, Error> {
        let link = self.link;
        let conn = self.answer.answered();
        conn.command(|s| {
            s.conn.accept_attach(link, options)?;
            s.new_link(link);
            Ok(())
        })?;
        Ok(Sender::attached(conn, link, self.remote, None))
    }

    /// Refuses the link with `error` (2.6.3).
    pub fn refuse(self, error: AmqpError) -> Result<(), Error> {
        let link = self.link;
        self.answer.answered().command(|s| Ok(s.conn.refuse_attach(link, error)?))
    }
}

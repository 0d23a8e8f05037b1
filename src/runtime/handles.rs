//! The async handles: [`Connection`], [`Session`], [`Sender`] and [`Receiver`]. Each is a
//! thin view of the engine behind the driver task: commands run at once under a lock, and
//! what the peer answers is awaited.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use crate::connection::{self as engine, LinkId, LinkOptions, SessionId, UsageError};
use crate::message::{Message, Payload};
use crate::sasl::SaslClient;
use crate::types::{
    Accepted, Attach, DeliveryState, Error as AmqpError, Modified, Rejected, Released,
};

use super::driver::{drive, Delivery, Inner, PendingAttach, RecvQueue};
use super::transport::{self, ClientTlsConfig, Endpoint, SaslMechanism, Transport};
use super::txn::{Controller, Transaction};
use super::Error;

/// A last change to a client's engine configuration, after the URL's options.
pub type Configure = Box<dyn FnOnce(&mut engine::Config) + Send>;

/// How a client connects, beyond what its URL says.
pub struct ConnectOptions {
    /// Roots, extra CA and client certificate for `amqps://` and `wss://`.
    pub tls: ClientTlsConfig,
    /// The container-id when the URL gives none.
    pub container_id: Option<String>,
    /// How long the transport set-up and the open exchange may take.
    pub timeout: Duration,
    /// A callback that sees every header and frame in and out.
    pub trace: Option<engine::TraceFn>,
    /// Changes to the engine configuration made from the URL, applied last.
    pub configure: Option<Configure>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            tls: ClientTlsConfig::new(),
            container_id: None,
            timeout: Duration::from_secs(30),
            trace: None,
            configure: None,
        }
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("container_id", &self.container_id)
            .field("timeout", &self.timeout)
            .field("trace", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

/// A unique-enough container-id: process id, start time and a counter.
pub(crate) fn container_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{prefix}-{}-{t:x}-{n}", std::process::id())
}

/// The engine configuration for a client of `endpoint`.
fn client_config(
    endpoint: &Endpoint,
    options: &mut ConnectOptions,
) -> Result<engine::Config, Error> {
    let id = endpoint
        .container_id
        .clone()
        .or_else(|| options.container_id.clone())
        .unwrap_or_else(|| container_id("amqpwire"));
    let mut cfg = engine::Config::new(id);
    cfg.hostname = Some(endpoint.amqp_hostname().to_owned());
    cfg.idle_time_out = endpoint.idle_timeout;
    if let Some(m) = endpoint.max_frame_size {
        cfg.max_frame_size = m;
    }
    let user = endpoint.user.as_deref().unwrap_or("");
    let password = endpoint.password.as_deref().unwrap_or("");
    let sasl = match endpoint.effective_sasl_mechanism() {
        SaslMechanism::Anonymous => SaslClient::anonymous(user),
        SaslMechanism::Plain => SaslClient::plain(user, password),
        SaslMechanism::External => SaslClient::external(user),
        SaslMechanism::Mssbcbs => SaslClient::mssbcbs(),
        SaslMechanism::ScramSha256 => {
            SaslClient::scram_sha256(user, password, &super::random::nonce())
                .map_err(|e| Error::Connection(engine::ConnectionError::Sasl(e)))?
        }
    };
    cfg.sasl_client = Some(sasl.with_hostname(endpoint.amqp_hostname()));
    // The peer's open is awaited within ConnectOptions::timeout, which says so as a
    // time-out of the connect; the engine does not time it as well.
    cfg.open_timeout = None;
    cfg.trace = options.trace.take();
    if let Some(f) = options.configure.take() {
        f(&mut cfg);
    }
    Ok(cfg)
}

/// An AMQP connection, client or server side, driven by its own task. Cloning gives
/// another handle to the same connection.
///
/// Once every handle is dropped (each clone, and every [`Session`], [`Sender`],
/// [`Receiver`] and [`PendingOutcome`] on it, or on a server the
/// [`ServerConnection`](super::ServerConnection)), the connection is closed cleanly, as
/// [`Connection::close`] with no error would close it, and its task ends with the close
/// exchange.
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<Inner>,
    /// Shared by every handle: the last one dropped closes the connection.
    _owner: Arc<Owner>,
}

/// Closes its connection when dropped (see [`Connection`]).
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.lock().start_close(None);
        self.inner.wake_driver.notify_one();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("state", &self.inner.lock().conn.state()).finish()
    }
}

impl Connection {
    /// Connects to `url` (`amqp://`, `amqps://`, `ws://`, `wss://`) and waits for the
    /// peer's open.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(&Endpoint::parse(url)?, ConnectOptions::default()).await
    }

    /// Connects to `endpoint` with `options`, and waits for the peer's open.
    pub async fn connect_with(endpoint: &Endpoint, options: ConnectOptions) -> Result<Self, Error> {
        let io = tokio::time::timeout(options.timeout, transport::connect(endpoint, &options.tls))
            .await
            .map_err(|_| Error::Timeout("the transport to be set up"))??;
        Self::connect_over(io, endpoint, options).await
    }

    /// Runs a client over a transport the caller set up (a Unix socket, a tunnel, an
    /// in-memory pipe: [`Transport::from_io`]) and waits for the peer's open. `endpoint`
    /// gives what a URL gives a connection (the open's hostname, SASL credentials in its
    /// user info); nothing is connected to it.
    pub async fn connect_over(
        io: Transport,
        endpoint: &Endpoint,
        mut options: ConnectOptions,
    ) -> Result<Self, Error> {
        let cfg = client_config(endpoint, &mut options)?;
        let conn = Self::start(engine::Connection::client(cfg), io, None, None);
        match tokio::time::timeout(options.timeout, conn.opened()).await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout("the peer's open")),
        }
    }

    /// Runs `engine` over `io` on a new task.
    pub(crate) fn start(
        engine: engine::Connection,
        io: Transport,
        requests: Option<tokio::sync::mpsc::UnboundedSender<super::driver::Request>>,
        on_end: Option<Box<dyn FnOnce(super::driver::TransportEnd) + Send>>,
    ) -> Self {
        let mut engine = engine;
        let span = super::driver::connection_span(&engine, &io);
        if !engine.has_trace() {
            // Frames at TRACE, when someone listens (cheap to check, costly to render).
            let _entered = span.enter();
            if tracing::enabled!(target: "amqpwire::frame", tracing::Level::TRACE) {
                engine.set_trace(super::driver::frame_events(span.clone()));
            }
        }
        let inner = Arc::new(Inner::new(engine));
        {
            let mut s = inner.lock();
            s.requests = requests;
            s.peer_certificate = io.peer_identity();
        }
        let driven = Arc::clone(&inner);
        let run = async move {
            let end = drive(driven, io).await;
            if let Some(f) = on_end {
                f(end);
            }
        };
        tokio::spawn(tracing::Instrument::instrument(run, span));
        Self { _owner: Arc::new(Owner { inner: Arc::clone(&inner) }), inner }
    }

    /// Runs `f` on the engine, then wakes the driver to write what it queued.
    pub(crate) fn command<T>(
        &self,
        f: impl FnOnce(&mut super::driver::Shared) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let r = {
            let mut s = self.inner.lock();
            if let Some(e) = s.end_error() {
                return Err(e);
            }
            f(&mut s)
        };
        self.inner.wake_driver.notify_one();
        r
    }

    /// Begins a session and waits for the peer's answer.
    pub async fn begin_session(&self) -> Result<Session, Error> {
        let id = self.command(|s| {
            let id = s.conn.begin()?;
            s.begun.insert(id, None);
            Ok(id)
        })?;
        let guard = Arc::new(SessionGuard { conn: self.clone(), id });
        // Dropped unanswered, the guard ends the session the peer is about to begin.
        self.inner.wait_until(|s| s.take_session_news(id)).await?;
        Ok(Session { conn: self.clone(), id, guard })
    }

    /// Whether work may go into transaction `txn_id` of this connection's coordinator now
    /// (a server applying transactional transfers and dispositions): `Err` with the error
    /// to refuse the work with (`amqp:transaction:unknown-id`, `…:timeout`, `…:rollback`).
    pub fn check_transaction(&self, txn_id: &[u8]) -> Result<(), AmqpError> {
        self.inner.lock().conn.check_transaction(txn_id)
    }

    /// Marks transaction `txn_id` as failed (work it could not take): it can only roll
    /// back, and a discharge asking to commit it is refused with
    /// `amqp:transaction:rollback`.
    pub fn fail_transaction(&self, txn_id: &[u8], error: AmqpError) -> Result<(), Error> {
        self.command(|s| Ok(s.conn.fail_transaction(txn_id, error)?))
    }

    /// The peer's open, once received.
    pub fn remote_open(&self) -> Option<crate::types::Open> {
        self.inner.lock().conn.remote_open().cloned()
    }

    /// Waits for the peer's open (or the end of a connection that never opened). On the
    /// server side SASL is over by then, so [`identity`](Self::identity) is known.
    pub async fn opened(&self) -> Result<(), Error> {
        self.inner
            .wait_until(|s| {
                s.opened.as_ref().map(|r| r.as_ref().map_err(Error::duplicate).copied())
            })
            .await
    }

    /// The identity SASL authenticated (server side), if any.
    pub fn identity(&self) -> Option<String> {
        self.inner.lock().identity.clone()
    }

    /// The certificate chain the peer presented to the TLS layer (on a server, the
    /// client's certificate, when the listener asked for one and the client sent it),
    /// whether or not it names anyone the application trusts.
    pub fn peer_certificate(&self) -> Option<super::transport::PeerIdentity> {
        self.inner.lock().peer_certificate.clone()
    }

    /// The identity the transport authenticated (server side): the subject common name of
    /// the client's TLS certificate, when it presented one the listener trusts.
    pub fn tls_identity(&self) -> Option<String> {
        self.inner.lock().conn.external_identity().map(str::to_owned)
    }

    /// Closes the connection (with an error, or cleanly) and waits for the peer's close.
    pub async fn close(&self, error: Option<AmqpError>) -> Result<(), Error> {
        self.inner.lock().start_close(error);
        self.inner.wake_driver.notify_one();
        self.closed().await
    }

    /// Waits until the connection has ended: `Ok` for a clean close.
    pub async fn closed(&self) -> Result<(), Error> {
        self.inner
            .wait_until(|s| s.ended.as_ref().map(|e| e.as_ref().map_err(Error::duplicate).copied()))
            .await
    }

    /// How long the peer has to answer a close, a detach or an end.
    pub(crate) fn close_timeout(&self) -> Duration {
        self.inner.lock().conn.close_timeout()
    }

    /// `answer`, unless the close time-out passes first: then [`Error::Timeout`] for
    /// `what` (the state the answer would have changed stays as it is).
    pub(crate) async fn within_close_timeout<T>(
        &self,
        what: &'static str,
        answer: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.close_timeout(), answer)
            .await
            .unwrap_or(Err(Error::Timeout(what)))
    }
}

/// A session on a connection.
///
/// The session ends (an `end` without error, as [`Session::end`] sends) once its last
/// clone is dropped and so is every `Sender`, `Receiver` and [`PendingOutcome`] made on
/// it: a connection that begins sessions and drops them does not run out of channels.
#[derive(Clone, Debug)]
pub struct Session {
    conn: Connection,
    id: SessionId,
    guard: Arc<SessionGuard>,
}

/// A link being attached: dropped armed (the attach refused, failed or given up), it is
/// handed to [`Shared::handle_dropped`](super::driver::Shared::handle_dropped) as a link
/// whose handle went, so that nothing is kept of it and, if the peer attaches it after
/// all, it is closed.
struct Attaching<'a> {
    conn: &'a Connection,
    link: LinkId,
    armed: bool,
}

impl Drop for Attaching<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        {
            let mut s = self.conn.inner.lock();
            s.attaching.remove(&self.link);
            s.handle_dropped(self.link);
        }
        self.conn.inner.wake_driver.notify_one();
    }
}

/// Held by a [`Session`] and by what is made on it: the last one dropped ends the session.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    conn: Connection,
    id: SessionId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut s = self.conn.inner.lock();
        // Nobody waits on its news any more (a begin or an end given up).
        s.begun.remove(&self.id);
        if s.ended.is_some() {
            return;
        }
        // An ended (or ending) session, or one whose channel a later session holds, is
        // refused by the engine: nothing to do then.
        if s.conn.end_session(self.id, None).is_ok() {
            drop(s);
            self.conn.inner.wake_driver.notify_one();
        }
    }
}

impl Session {
    /// The session's id (our channel).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Attaches a sender to `address`, named `name`, and waits for the peer's answer.
    pub async fn sender(&self, name: &str, address: &str) -> Result<Sender, Error> {
        self.attach_sender(LinkOptions::sender(name, address)).await
    }

    /// Attaches a sender with `options` and waits for the peer's answer.
    pub async fn attach_sender(&self, options: LinkOptions) -> Result<Sender, Error> {
        let (link, remote) = self.attach(options, None).await?;
        Ok(Sender::attached(self.conn.clone(), link, remote, Some(Arc::clone(&self.guard))))
    }

    /// Attaches a receiver from `address`, keeping `credit` messages granted (refilled as
    /// the application takes them; 0 to grant credit itself), and waits for the answer.
    /// Large messages get fewer credits than that: what is queued and granted is kept
    /// within [`RECV_BUDGET`](super::RECV_BUDGET) bytes at the sizes seen so far, and
    /// until a first message has been taken at most
    /// [`INITIAL_CREDIT`](super::INITIAL_CREDIT) are granted.
    pub async fn receiver(
        &self,
        name: &str,
        address: &str,
        credit: u32,
    ) -> Result<Receiver, Error> {
        self.attach_receiver(LinkOptions::receiver(name, address), credit).await
    }

    /// Attaches a receiver with `options` and a credit window (see [`Session::receiver`]).
    pub async fn attach_receiver(
        &self,
        options: LinkOptions,
        credit: u32,
    ) -> Result<Receiver, Error> {
        let (link, remote) = self.attach(options, Some(credit)).await?;
        let notify = self.conn.inner.lock().receivers.get(&link).map(|r| Arc::clone(&r.notify));
        let notify = notify.unwrap_or_default();
        let session = Some(Arc::clone(&self.guard));
        // Made first, so that a failure below drops it (which closes the link).
        let receiver =
            Receiver { conn: self.conn.clone(), link, notify, remote, _session: session };
        let initial = RecvQueue::initial_credit(credit);
        if initial > 0 {
            if let Err(e) = self.conn.command(|s| Ok(s.conn.flow(link, initial, false)?)) {
                // The peer may have detached right after its attach (a redirect, say):
                // the receiver's recv says why.
                if !self.conn.inner.lock().detached.contains_key(&link) {
                    return Err(e);
                }
            }
        }
        Ok(receiver)
    }

    async fn attach(
        &self,
        options: LinkOptions,
        window: Option<u32>,
    ) -> Result<(LinkId, Box<Attach>), Error> {
        let id = self.id;
        let link = self.conn.command(|s| {
            let link = s.conn.attach(id, options)?;
            s.attaching.insert(link, PendingAttach { answer: None, refused: false });
            s.new_link(link);
            if let Some(window) = window {
                s.receivers.insert(link, RecvQueue::new(window));
            }
            Ok(link)
        })?;
        // Refused, failed or given up (this future dropped, by a time-out around it say):
        // no handle is made, so the link is treated as one whose handle was dropped.
        let mut attaching = Attaching { conn: &self.conn, link, armed: true };
        let answered = move |s: &mut super::driver::Shared| {
            let done = s.attaching.get(&link).is_some_and(|p| p.answer.is_some());
            if done {
                s.attaching.remove(&link).and_then(|p| p.answer)
            } else {
                s.end_error().map(Err)
            }
        };
        let refused = move |s: &mut super::driver::Shared| {
            s.attaching.get(&link).is_some_and(|p| p.refused && p.answer.is_none())
        };
        let first = self.conn.inner.wait_until(|s| {
            if refused(s) {
                return Some(None);
            }
            answered(s).map(Some)
        });
        let answer = match first.await {
            Some(answer) => answer?,
            // 2.6.3: a refusal's detach, with the reason, follows its attach; a peer that
            // sends none within the close time-out leaves the refusal without a reason
            // (and the guard above closes the link).
            None => {
                let detach = self.conn.inner.wait_until(answered);
                match tokio::time::timeout(self.conn.close_timeout(), detach).await {
                    Ok(answer) => answer?,
                    Err(_) => return Err(Error::LinkRefused(None)),
                }
            }
        };
        attaching.armed = false;
        Ok((link, answer))
    }

    /// Attaches a transaction controller to the peer's coordinator (4.5.1), asking for
    /// local transactions, and waits for the answer: a refusal comes back as
    /// [`Error::LinkRefused`] with the peer's reason.
    pub async fn coordinator(&self) -> Result<Controller, Error> {
        let name = format!("txn-controller-{:016x}", super::random::random_u64());
        let caps = vec![crate::connection::txn::LOCAL_TRANSACTIONS.into()];
        let sender = self.attach_sender(LinkOptions::coordinator(&name, caps)).await?;
        Ok(Controller::new(sender))
    }

    /// Ends the session and waits for the peer's end: [`Error::Timeout`] when none comes
    /// within the connection's close time-out ([`crate::connection::Config::close_timeout`]).
    pub async fn end(&self) -> Result<(), Error> {
        let id = self.id;
        self.conn.command(|s| {
            s.conn.end_session(id, None)?;
            s.begun.insert(id, None);
            Ok(())
        })?;
        let answer = self.conn.inner.wait_until(|s| s.take_session_news(id));
        match self.conn.within_close_timeout("the peer's end", answer).await {
            Err(Error::SessionEnded(None)) => Ok(()),
            other => other,
        }
    }
}

/// The outcome of a delivery, once the peer settles it.
pub struct PendingOutcome {
    rx: oneshot::Receiver<Result<DeliveryState, Error>>,
    /// Keeps the session while the outcome is awaited.
    _session: Option<Arc<SessionGuard>>,
    /// The connection's state (not a handle that keeps it open): told when this is
    /// dropped, for a dropped sender's link that waits on its outcomes.
    inner: Arc<Inner>,
    /// The link the delivery went on.
    link: LinkId,
}

impl std::fmt::Debug for PendingOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOutcome").field("rx", &self.rx).finish_non_exhaustive()
    }
}

impl Drop for PendingOutcome {
    fn drop(&mut self) {
        // An outcome that arrived (the usual case, on every send) left the driver's map
        // already: nothing to tell, and no lock to take.
        if self.rx.is_terminated() {
            return;
        }
        // No one awaits this outcome any more: say so before the driver counts.
        self.rx.close();
        let mut s = self.inner.lock();
        if s.outcome_given_up(self.link) {
            drop(s);
            // A detach may be waiting to be written.
            self.inner.wake_driver.notify_one();
        }
    }
}

impl Future for PendingOutcome {
    type Output = Result<DeliveryState, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// The sending end of a link.
///
/// Dropping it closes the link (a detach with `closed` set, as [`Sender::close`] sends)
/// once the outcomes its deliveries still await have arrived; [`Sender::close`] does the
/// same and waits for the peer's answer.
#[derive(Debug)]
pub struct Sender {
    conn: Connection,
    link: LinkId,
    remote: Box<Attach>,
    next_tag: AtomicU64,
    /// The session it was made on, kept while the sender is (dropped after the link's
    /// detach is queued, so the session's end follows it).
    session: Option<Arc<SessionGuard>>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.conn.inner.lock().handle_dropped(self.link);
        // A detach may be waiting to be written.
        self.conn.inner.wake_driver.notify_one();
    }
}

impl Sender {
    pub(crate) fn attached(
        conn: Connection,
        link: LinkId,
        remote: Box<Attach>,
        session: Option<Arc<SessionGuard>>,
    ) -> Self {
        // Deliveries carried over from a suspended link of this name keep their tags (a
        // tag names one delivery among those either end holds unsettled, 2.8.7): ours
        // start after the largest of them.
        let first = conn
            .inner
            .lock()
            .conn
            .resumable(link)
            .iter()
            .filter(|r| r.tag.len() <= 8)
            .map(|r| r.tag.iter().fold(0u64, |n, b| n << 8 | u64::from(*b)))
            .max()
            .map_or(0, |n| n.saturating_add(1));
        Self { conn, link, remote, next_tag: AtomicU64::new(first), session }
    }

    /// An outcome to await, keeping the session.
    fn pending(&self, rx: oneshot::Receiver<Result<DeliveryState, Error>>) -> PendingOutcome {
        PendingOutcome {
            rx,
            _session: self.session.clone(),
            inner: Arc::clone(&self.conn.inner),
            link: self.link,
        }
    }

    /// The link.
    pub fn link(&self) -> LinkId {
        self.link
    }

    /// The peer's attach.
    pub fn remote(&self) -> &Attach {
        &self.remote
    }

    /// Sends `message` unsettled and waits for the peer's outcome (accepted, rejected,
    /// released or modified). A peer that settles without saying an outcome is taken to
    /// have accepted it.
    pub async fn send(&self, message: &Message) -> Result<DeliveryState, Error> {
        self.send_pipelined(message).await?.await
    }

    /// Sends `message` unsettled once there is credit, and returns at once with a future
    /// for its outcome: many can be in flight.
    pub async fn send_pipelined(&self, message: &Message) -> Result<PendingOutcome, Error> {
        let rx = self.transfer(&encode(message), false, None).await?;
        // An unsettled transfer always registers for its outcome.
        rx.map(|rx| self.pending(rx)).ok_or(Error::Closed)
    }

    /// Sends `message` pre-settled (at most once: there is no outcome).
    pub async fn send_settled(&self, message: &Message) -> Result<(), Error> {
        self.transfer(&encode(message), true, None).await.map(|_| ())
    }

    /// Sends an already encoded message (a relay's stored bytes, say) once there is
    /// credit: pre-settled when `settled` (no outcome, `None`), else unsettled with a future
    /// for its outcome.
    pub async fn send_encoded(
        &self,
        payload: &Payload,
        settled: bool,
    ) -> Result<Option<PendingOutcome>, Error> {
        let rx = self.transfer(payload, settled, None).await?;
        Ok(rx.map(|rx| self.pending(rx)))
    }

    /// Sends `message` with a delivery-tag of the caller's choosing (a server that hands
    /// out lock tokens as tags, say) once there is credit: pre-settled when `settled` (no
    /// outcome, `None`), else unsettled with a future for its outcome. The tag must be 1 to
    /// 32 bytes (2.8.7) and unique among this link's unsettled deliveries.
    pub async fn send_tagged(
        &self,
        message: &Message,
        tag: Bytes,
        settled: bool,
    ) -> Result<Option<PendingOutcome>, Error> {
        // The engine refuses tags over 32 bytes; an empty one is legal but breaks peers
        // such as Qpid Proton's Python binding.
        if tag.is_empty() {
            return Err(Error::Usage(UsageError::InvalidDeliveryTag { len: 0 }));
        }
        let rx = self.transfer(&encode(message), settled, Some(tag)).await?;
        Ok(rx.map(|rx| self.pending(rx)))
    }

    /// Sends `message` unsettled as work of transaction `txn` (4.4.1) and waits for the
    /// peer's answer: usually `transactional-state` with the outcome that takes effect
    /// when the transaction commits.
    pub async fn send_in(
        &self,
        txn: &Transaction,
        message: &Message,
    ) -> Result<DeliveryState, Error> {
        let rx = self.transfer_in(&encode(message), false, None, Some(txn.id())).await?;
        let rx = rx.ok_or(Error::Closed)?;
        self.pending(rx).await
    }

    /// The connection the link belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The credit the peer has granted and we have not used, and whether it asked to
    /// drain it (2.6.7); an error once the link has ended.
    pub fn credit(&self) -> Result<(u32, bool), Error> {
        let s = self.conn.inner.lock();
        self.flow_state(&s)
    }

    /// Waits until the peer grants credit (returns it with the drain flag); an error once
    /// the link has ended.
    pub async fn wait_credit(&self) -> Result<(u32, bool), Error> {
        self.conn
            .inner
            .wait_until(|s| match self.flow_state(s) {
                Ok((0, _)) => None,
                r => Some(r),
            })
            .await
    }

    /// Waits until the credit or drain flag differs from `seen` (a [`Sender::credit`]
    /// answer), and returns them; an error once the link has ended.
    pub async fn wait_flow_change(&self, seen: (u32, bool)) -> Result<(u32, bool), Error> {
        self.conn
            .inner
            .wait_until(|s| match self.flow_state(s) {
                Ok(now) if now == seen => None,
                r => Some(r),
            })
            .await
    }

    /// Answers a drain request when there is nothing to send: the credit is used up by
    /// advancing the delivery-count (2.6.7).
    pub fn drained(&self) -> Result<(), Error> {
        let link = self.link;
        self.conn.command(|s| Ok(s.conn.drained(link)?))
    }

    /// Credit and drain flag while the link is attached; why it ended otherwise.
    fn flow_state(&self, s: &super::driver::Shared) -> Result<(u32, bool), Error> {
        let link = self.link;
        if let Some(e) = s.link_ended(link) {
            return Err(e);
        }
        let credit = s.conn.link_credit(link).unwrap_or(0);
        Ok((credit, s.conn.link_drain(link).unwrap_or(false)))
    }

    /// Waits until the link has ended (detached by either side, or gone with its session
    /// or connection) and returns why: a task that serves a link can end with it rather
    /// than wait for work that will never come.
    pub async fn ended(&self) -> Error {
        let link = self.link;
        self.conn.inner.wait_until(|s| s.link_ended(link)).await
    }

    /// [`Sender::close_with_error`] for a sender others share (an `Arc`): the link is
    /// closed with `error`, and the handles left fail from then on.
    pub(crate) async fn close_shared(&self, error: AmqpError) -> Result<(), Error> {
        end_link(&self.conn, self.link, true, Some(error)).await
    }

    /// Sends an already encoded message (`settled`: pre-settled); returns the outcome's
    /// receiver when unsettled.
    async fn transfer(
        &self,
        payload: &Payload,
        settled: bool,
        tag: Option<Bytes>,
    ) -> Result<Option<oneshot::Receiver<Result<DeliveryState, Error>>>, Error> {
        self.transfer_in(payload, settled, tag, None).await
    }

    /// [`Sender::transfer`], as work of transaction `txn` when given.
    async fn transfer_in(
        &self,
        payload: &Payload,
        settled: bool,
        tag: Option<Bytes>,
        txn: Option<&Bytes>,
    ) -> Result<Option<oneshot::Receiver<Result<DeliveryState, Error>>>, Error> {
        let tag = tag.unwrap_or_else(|| self.new_tag());
        let link = self.link;
        self.conn
            .inner
            .wait_until(|s| {
                if let Some(e) = s.detached.get(&link) {
                    return Some(Err(e.duplicate()));
                }
                if let Some(e) = s.end_error() {
                    return Some(Err(e));
                }
                let sent = match txn {
                    None => s.conn.send_payload(link, tag.clone(), payload, settled),
                    Some(txn) => {
                        s.conn.send_transactional(link, tag.clone(), payload, settled, txn.clone())
                    }
                };
                match sent {
                    Ok(id) => {
                        self.conn.inner.wake_driver.notify_one();
                        if settled {
                            return Some(Ok(None));
                        }
                        let (tx, rx) = oneshot::channel();
                        s.outcomes.insert((link, id.0), tx);
                        Some(Ok(Some(rx)))
                    }
                    // Wait for credit, or room in the peer's session window.
                    Err(UsageError::NoCredit | UsageError::SessionWindowFull) => None,
                    Err(e) => Some(Err(e.into())),
                }
            })
            .await
    }

    /// The next delivery-tag of ours.
    fn new_tag(&self) -> Bytes {
        let n = self.next_tag.fetch_add(1, Ordering::Relaxed);
        // The shortest big-endian form, but never empty: Qpid Proton's Python binding
        // fails on a zero-length delivery-tag (the first delivery's, were zero written
        // as none).
        let skip = (n.leading_zeros() as usize / 8).min(7);
        Bytes::copy_from_slice(&n.to_be_bytes()[skip..])
    }

    /// Queues `message` unsettled without waiting, for what must be sent from a `Drop`:
    /// at once, or as soon as the peer's credit and session window allow (its outcome is
    /// settled when it comes, and heard by no one); nothing once the link or the
    /// connection has ended.
    pub(crate) fn send_unawaited(&self, message: &Message) {
        let payload = encode(message);
        let tag = self.new_tag();
        self.conn.inner.lock().send_or_keep(self.link, tag, payload);
        self.conn.inner.wake_driver.notify_one();
    }

    /// Detaches the link, closing it, and waits for the peer's detach ([`Error::Timeout`]
    /// when none comes within the connection's close time-out).
    pub async fn close(self) -> Result<(), Error> {
        end_link(&self.conn, self.link, true, None).await
    }

    /// Detaches the link, closing it with `error` (the peer learns why), and waits for the
    /// peer's detach (as [`Self::close`] does).
    pub async fn close_with_error(self, error: AmqpError) -> Result<(), Error> {
        self.close_shared(error).await
    }

    /// Detaches the link without closing it, and waits for the peer's detach (for the
    /// connection's close time-out at most: [`Error::Timeout`]): the link is
    /// suspended (2.6.6), not destroyed, so its terminus lives on at the peer (a durable
    /// subscription, say). Outcomes still awaited fail with [`Error::LinkDetached`]; the
    /// deliveries stay unsettled, and a later sender of the same name on this connection
    /// names them in its attach's `unsettled` map (2.6.13), for the peer to resume. (They
    /// are kept under the name when the peer's detach comes: after a time-out, only once
    /// it does.)
    pub async fn detach(self) -> Result<(), Error> {
        end_link(&self.conn, self.link, false, None).await
    }
}

/// A message encoded for sending, its data sections referenced rather than copied.
fn encode(message: &Message) -> Payload {
    let mut payload = Payload::default();
    message.encode_payload(&mut payload);
    payload
}

/// Detaches `link` (closing it when `closed`) and waits for the peer's detach, for the
/// connection's close time-out at most ([`Error::Timeout`]); nothing when the link has
/// ended already (the peer detached it, and a later link may hold its handle).
async fn end_link(
    conn: &Connection,
    link: LinkId,
    closed: bool,
    error: Option<AmqpError>,
) -> Result<(), Error> {
    {
        let s = conn.inner.lock();
        if s.conn.link_state(link).is_none() {
            return Ok(());
        }
    }
    conn.command(|s| Ok(s.conn.detach(link, closed, error)?))?;
    let answer = conn.inner.wait_until(|s| match s.detached.get(&link) {
        Some(Error::LinkDetached(None)) => Some(Ok(())),
        Some(e) => Some(Err(e.duplicate())),
        None => s.end_error().map(Err),
    });
    let r = conn.within_close_timeout("the peer's detach", answer).await;
    let mut s = conn.inner.lock();
    s.receivers.remove(&link);
    s.detached.remove(&link);
    r
}

/// The receiving end of a link.
///
/// Dropping it closes the link at once (a detach with `closed` set, as
/// [`Receiver::close`] sends); deliveries not settled by then are the peer's to release.
/// A link whose terminus must outlive it (a durable subscription) is suspended with
/// [`Receiver::detach`] instead.
#[derive(Debug)]
pub struct Receiver {
    conn: Connection,
    link: LinkId,
    notify: Arc<Notify>,
    remote: Box<Attach>,
    /// The session it was made on, kept while the receiver is.
    _session: Option<Arc<SessionGuard>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.conn.inner.lock().handle_dropped(self.link);
        // A detach may be waiting to be written.
        self.conn.inner.wake_driver.notify_one();
    }
}

impl Receiver {
    pub(crate) fn new(
        conn: Connection,
        link: LinkId,
        notify: Arc<Notify>,
        remote: Box<Attach>,
    ) -> Self {
        Self { conn, link, notify, remote, _session: None }
    }

    /// The link.
    pub fn link(&self) -> LinkId {
        self.link
    }

    /// The peer's attach.
    pub fn remote(&self) -> &Attach {
        &self.remote
    }

    /// The next delivery; an error once the link, session or connection has ended and
    /// every delivery before that was taken. Credit is refilled as deliveries are taken,
    /// never waiting for them to be settled.
    pub async fn recv(&self) -> Result<Delivery, Error> {
        // What is queued already is taken without registering a waiter (a busy link
        // always has something queued); the waiter is registered, and the queue looked at
        // again, only when it was empty.
        if let Some(r) = self.try_recv() {
            return r;
        }
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.try_recv() {
                return r;
            }
            notified.await;
        }
    }

    /// The next delivery queued, or why there will be none; `None` while the link waits.
    fn try_recv(&self) -> Option<Result<Delivery, Error>> {
        let mut s = self.conn.inner.lock();
        let link = self.link;
        let granted = s.conn.link_credit(link).unwrap_or(0);
        let Some(r) = s.receivers.get_mut(&link) else { return Some(Err(Error::Closed)) };
        if let Some((d, refill)) = r.pop(granted) {
            if let Some(credit) = refill {
                let _ = s.conn.flow(link, credit, false);
                drop(s);
                self.conn.inner.wake_driver.notify_one();
            }
            return Some(Ok(d));
        }
        r.end.as_ref().map(|e| Err(e.duplicate()))
    }

    /// The credit this receiver has granted and the sender has not used yet, as the engine
    /// knows it now (2.6.7: `link-credit`). A receiver with a credit window refills it as
    /// deliveries are taken, so right after [`recv`](Self::recv) returns this already
    /// counts that refill.
    pub fn credit(&self) -> Result<u32, Error> {
        let s = self.conn.inner.lock();
        s.conn
            .link_credit(self.link)
            .ok_or_else(|| s.detached.get(&self.link).map_or(Error::Closed, Error::duplicate))
    }

    /// Waits until the link has ended (detached by either side, or gone with its session
    /// or connection) and returns why, whatever deliveries are still queued.
    pub async fn ended(&self) -> Error {
        let link = self.link;
        self.conn.inner.wait_until(|s| s.link_ended(link)).await
    }

    /// [`Receiver::close_with_error`] for a receiver others share (an `Arc`).
    pub(crate) async fn close_shared(&self, error: AmqpError) -> Result<(), Error> {
        end_link(&self.conn, self.link, true, Some(error)).await
    }

    /// Grants `credit` (replacing what was granted); for receivers made with a window of 0.
    pub fn set_credit(&self, credit: u32) -> Result<(), Error> {
        let link = self.link;
        self.conn.command(|s| Ok(s.conn.flow(link, credit, false)?))
    }

    /// The link's delivery-count as this end knows it (2.6.7): the sender's count at
    /// attach, advanced by each delivery that has arrived, taken by
    /// [`recv`](Self::recv) or still queued.
    pub fn delivery_count(&self) -> Result<crate::types::SequenceNo, Error> {
        let s = self.conn.inner.lock();
        s.conn
            .link_delivery_count(self.link)
            .ok_or_else(|| s.detached.get(&self.link).map_or(Error::Closed, Error::duplicate))
    }

    /// For a receiver made with a window of 0 that wants `total` deliveries in all: grants
    /// credit for those that have not come, at most `most`, once what is granted has
    /// fallen to half of that (or is more than it). Those that came are the ones taken by
    /// [`recv`](Self::recv), those queued, and one whose transfers are under way, counted
    /// at the grant itself: a delivery that arrives while the caller decides is never
    /// granted again, and one that never reaches `recv` (aborted, refused) is. Returns
    /// the credit granted now, or `None` when none was.
    pub fn set_credit_for(&self, total: u64, most: u32) -> Result<Option<u32>, Error> {
        let link = self.link;
        let (granted, dispatched) = {
            let mut s = self.conn.inner.lock();
            if let Some(e) = s.end_error() {
                return Err(e);
            }
            // What the engine received and has not handed over yet is queued first.
            let dispatched = s.dispatch();
            let Some(have) = s.conn.link_credit(link) else {
                return Err(s.detached.get(&link).map_or(Error::Closed, Error::duplicate));
            };
            let under_way = s.conn.link_delivery_in_progress(link).unwrap_or(false);
            let Some(r) = s.receivers.get(&link) else { return Err(Error::Closed) };
            let came = r.taken + r.queue.len() as u64 + u64::from(under_way);
            let want = total.saturating_sub(came).min(u64::from(most)) as u32;
            let grant = have > want || (have != want && u64::from(have) * 2 <= u64::from(want));
            if grant {
                s.conn.flow(link, want, false)?;
            }
            (grant.then_some(want), dispatched)
        };
        if dispatched {
            self.conn.inner.changed.notify_waiters();
        }
        self.conn.inner.wake_driver.notify_one();
        Ok(granted)
    }

    /// Asks the sender to use the credit or give it up (drain), and waits until it has.
    pub async fn drain(&self) -> Result<(), Error> {
        let link = self.link;
        self.conn.command(|s| {
            let credit = s.conn.link_credit(link).unwrap_or(0);
            Ok(s.conn.flow(link, credit, true)?)
        })?;
        self.conn
            .inner
            .wait_until(|s| match s.conn.link_credit(link) {
                Some(0) => Some(Ok(())),
                Some(_) => s.end_error().map(Err),
                None => Some(Err(s.detached.get(&link).map_or(Error::Closed, Error::duplicate))),
            })
            .await
    }

    /// Settles `delivery` with `state` (does nothing for a pre-settled one). On a link in
    /// rcv-settle-mode second the outcome is sent unsettled, and the delivery is settled
    /// when the sender settles it.
    pub fn settle(&self, delivery: &Delivery, state: DeliveryState) -> Result<(), Error> {
        // Its delivery-id means nothing on another link (it would settle another delivery,
        // or none).
        if delivery.link != self.link {
            return Err(Error::Usage(UsageError::OtherLink));
        }
        if delivery.settled {
            return Ok(());
        }
        let (link, id) = (self.link, delivery.delivery_id);
        self.conn.command(|s| Self::settle_on(s, link, id, state))
    }

    /// [`Receiver::settle`] on the engine.
    fn settle_on(
        s: &mut super::driver::Shared,
        link: LinkId,
        id: crate::types::SequenceNo,
        state: DeliveryState,
    ) -> Result<(), Error> {
        match s.conn.disposition(link, id, None, true, Some(state.clone())) {
            // rcv-settle-mode second: the outcome goes unsettled; the sender settles, and
            // its settlement settles the delivery here too.
            Err(UsageError::SettleOrder) => {
                Ok(s.conn.disposition(link, id, None, false, Some(state))?)
            }
            // The link has gone (the engine detached it for a violation, or the peer has
            // answered that detach since): why it went says more than the engine's refusal.
            Err(e @ (UsageError::DetachSent | UsageError::UnknownLink)) => {
                Err(s.link_ended(link).unwrap_or(Error::Usage(e)))
            }
            r => Ok(r?),
        }
    }

    /// Settles `delivery` as work of transaction `txn` (4.4.2): `outcome` takes effect
    /// when the transaction commits; on a rollback the sender gets the message back.
    pub fn settle_in(
        &self,
        txn: &Transaction,
        delivery: &Delivery,
        outcome: DeliveryState,
    ) -> Result<(), Error> {
        let state = crate::connection::txn::transactional(txn.id().clone(), Some(outcome));
        self.settle(delivery, state)
    }

    /// Accepts `delivery` in transaction `txn` (4.4.2): it is consumed when the
    /// transaction commits.
    pub fn accept_in(&self, txn: &Transaction, delivery: &Delivery) -> Result<(), Error> {
        self.settle_in(txn, delivery, DeliveryState::Accepted(Accepted {}))
    }

    /// The connection the link belongs to.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Accepts `delivery` (3.4.2).
    pub fn accept(&self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, DeliveryState::Accepted(Accepted {}))
    }

    /// Rejects `delivery` with an error (3.4.3): it will not be processed.
    pub fn reject(&self, delivery: &Delivery, error: Option<AmqpError>) -> Result<(), Error> {
        self.settle(delivery, DeliveryState::Rejected(Rejected { error }))
    }

    /// Releases `delivery` (3.4.4): not processed, may go to someone else.
    pub fn release(&self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, DeliveryState::Released(Released {}))
    }

    /// Modifies `delivery` (3.4.5): not processed; `delivery_failed` counts an attempt,
    /// `undeliverable_here` keeps it away from this receiver.
    pub fn modify(
        &self,
        delivery: &Delivery,
        delivery_failed: bool,
        undeliverable_here: bool,
    ) -> Result<(), Error> {
        let m = Modified {
            delivery_failed: Some(delivery_failed),
            undeliverable_here: Some(undeliverable_here),
            message_annotations: None,
        };
        self.settle(delivery, DeliveryState::Modified(m))
    }

    /// Detaches the link, closing it, and waits for the peer's detach ([`Error::Timeout`]
    /// when none comes within the connection's close time-out).
    pub async fn close(self) -> Result<(), Error> {
        end_link(&self.conn, self.link, true, None).await
    }

    /// Detaches the link, closing it with `error` (the peer learns why), and waits for the
    /// peer's detach (as [`Self::close`] does).
    pub async fn close_with_error(self, error: AmqpError) -> Result<(), Error> {
        self.close_shared(error).await
    }

    /// Detaches the link without closing it, and waits for the peer's detach (for the
    /// connection's close time-out at most: [`Error::Timeout`]): the link is
    /// suspended (2.6.6), not destroyed, so its terminus lives on at the peer (a durable
    /// subscription, say, which [`Receiver::close`] would end). Deliveries not settled by
    /// then stay unsettled, and a later receiver of the same name on this connection names
    /// them in its attach's `unsettled` map (2.6.13), for the peer to resume. (They are
    /// kept under the name when the peer's detach comes: after a time-out, only once it
    /// does.)
    pub async fn detach(self) -> Result<(), Error> {
        end_link(&self.conn, self.link, false, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ListenOptions, Listener};
    use crate::types::Role;

    /// Fails a test that hangs instead of letting it run forever.
    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(20), f)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    /// A listener that takes anonymous SASL, and its URL.
    async fn anonymous_listener() -> (Listener, String) {
        let credentials = crate::sasl::Credentials::new(|| "nonce".into()).anonymous(true);
        let options = ListenOptions {
            authenticator: Some(std::sync::Arc::new(move || {
                Some(Box::new(credentials.clone()) as _)
            })),
            ..ListenOptions::default()
        };
        let listener = Listener::bind("amqp://127.0.0.1:0", options).await.expect("bind");
        let url = listener.endpoint().to_string();
        (listener, url)
    }

    /// The listener's next connection, established.
    async fn first_connection(listener: &Listener) -> crate::runtime::ServerConnection {
        let incoming = listener.accept().await.expect("accept");
        incoming.establish().await.expect("establish")
    }

    /// Waits until the client keeps nothing of any link, then says so.
    async fn forgets_every_link(conn: &Connection) {
        let empty = |s: &mut crate::runtime::driver::Shared| {
            let kept = s.detached.len()
                + s.receivers.len()
                + s.live.len()
                + s.outcomes.len()
                + s.dropped.len();
            (kept == 0).then_some(())
        };
        within("the client forgets its links", conn.inner.wait_until(empty)).await;
    }

    /// On the listener's first connection, hands the first link the client attaches to
    /// `serve`, then keeps the connection until the client ends it.
    fn serve_first_link<F>(
        listener: Listener,
        serve: impl FnOnce(crate::runtime::LinkRequest, Connection) -> F + Send + 'static,
    ) where
        F: std::future::Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            let req = conn.next_link().await.expect("a link");
            serve(req, conn.connection.clone()).await;
            let _ = conn.connection.closed().await;
        });
    }

    /// The peer's error that refused or detached a link; fails on anything else.
    fn peer_error<T: std::fmt::Debug>(r: Result<T, Error>) -> AmqpError {
        match r {
            Err(Error::LinkRefused(Some(e)) | Error::LinkDetached(Some(e))) => e,
            other => panic!("a refusal or detach with the peer's error: {other:?}"),
        }
    }

    /// A client connection to `url` and a session on it.
    async fn client_session(url: &str) -> (Connection, Session) {
        let conn = within("connect", Connection::connect(url)).await.expect("connect");
        let session = within("session", conn.begin_session()).await.expect("session");
        (conn, session)
    }

    #[tokio::test]
    async fn a_dropped_sender_detaches_its_link_once_the_outcomes_it_awaits_arrived() {
        let (listener, url) = anonymous_listener().await;
        let (told, heard) = oneshot::channel();
        serve_first_link(listener, |req, _| async move {
            let r = req.accept_receiver(None, 10).expect("accept");
            let d = r.recv().await.expect("the delivery");
            // Settled after the client dropped its sender: had the link been closed at
            // the drop, this outcome would never reach the client.
            r.accept(&d).expect("accept the delivery");
            let _ = told.send(r.recv().await.map(|_| ()));
        });
        let (conn, session) = client_session(&url).await;
        let s = within("sender", session.sender("s", "q")).await.expect("sender");
        let outcome = s.send_pipelined(&Message::with_data(&b"m"[..])).await.expect("send");
        drop(s);
        let outcome = within("the outcome", outcome).await;
        assert!(matches!(outcome, Ok(DeliveryState::Accepted(_))), "{outcome:?}");
        let end = within("the server hears the detach", heard).await.expect("told");
        assert!(matches!(end, Err(Error::LinkDetached(None))), "closed without error: {end:?}");
        forgets_every_link(&conn).await;
    }

    #[tokio::test]
    async fn a_dropped_sender_whose_outcomes_no_one_awaits_detaches_at_once() {
        // The peer never settles: the link may close only because no one waits.
        for outcome_first in [true, false] {
            let (listener, url) = anonymous_listener().await;
            let (told, heard) = oneshot::channel();
            serve_first_link(listener, |req, _| async move {
                let r = req.accept_receiver(None, 10).expect("accept");
                let _kept_unsettled = r.recv().await.expect("the delivery");
                let _ = told.send(r.recv().await.map(|_| ()));
            });
            let (_conn, session) = client_session(&url).await;
            let s = within("sender", session.sender("s", "q")).await.expect("sender");
            let outcome = s.send_pipelined(&Message::with_data(&b"m"[..])).await.expect("send");
            if outcome_first {
                drop(outcome);
                drop(s);
            } else {
                drop(s);
                drop(outcome);
            }
            let end = within("the server hears the detach", heard).await.expect("told");
            assert!(matches!(end, Err(Error::LinkDetached(None))), "{outcome_first}: {end:?}");
        }
    }

    /// The delivery-tags an attach names in its `unsettled` map.
    fn unsettled_tags(a: &Attach) -> Vec<Bytes> {
        match &a.unsettled {
            Some(crate::codec::Value::Map(entries, _)) => entries
                .iter()
                .filter_map(|(k, _)| match k {
                    crate::codec::Value::Binary(b, _) => Some(b.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Serves a peer that takes two links named alike, one after the other, settling
    /// nothing: what each attach of the client's names as unsettled goes to `told`.
    async fn suspend_and_resume(
        suspend: bool,
    ) -> (Vec<Bytes>, Vec<Bytes>, Result<DeliveryState, Error>, Bytes) {
        let (listener, url) = anonymous_listener().await;
        let (told, heard) = oneshot::channel();
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            let first = conn.next_link().await.expect("the first attach");
            let before = unsettled_tags(&first.remote);
            let r = first.accept_receiver(None, 10).expect("accept");
            let d = r.recv().await.expect("the delivery");
            // Left unsettled; the client's detach ends the link.
            assert!(matches!(r.recv().await, Err(Error::LinkDetached(None))));
            let again = conn.next_link().await.expect("the second attach");
            let after = unsettled_tags(&again.remote);
            let r = again.accept_receiver(None, 10).expect("accept again");
            // The new link's first delivery: its tag must not be one still unsettled.
            let next = r.recv().await.expect("a delivery on the new link");
            assert!(!after.contains(&next.tag), "tag {:?} reused: {after:?}", next.tag);
            let _ = told.send((before, after, d.tag));
            let _ = conn.connection.closed().await;
        });
        let (_conn, session) = client_session(&url).await;
        let s = within("sender", session.sender("durable", "q")).await.expect("sender");
        let outcome = s.send_pipelined(&Message::with_data(&b"m"[..])).await.expect("send");
        let ended = within("the detach", async {
            if suspend {
                s.detach().await
            } else {
                s.close().await
            }
        });
        ended.await.expect("detached");
        let outcome = within("the outcome", outcome).await;
        let again = within("sender again", session.sender("durable", "q")).await.expect("again");
        let _next = again.send_pipelined(&Message::with_data(&b"n"[..])).await.expect("send");
        let (before, after, tag) = within("the server", heard).await.expect("told");
        // The peer kept its end too, and says so in its answer.
        let answered = unsettled_tags(again.remote());
        assert_eq!(answered, after, "both ends name the same deliveries");
        (before, after, outcome, tag)
    }

    #[tokio::test]
    async fn a_suspended_sender_names_its_unsettled_delivery_when_attached_again() {
        let (before, after, outcome, tag) = suspend_and_resume(true).await;
        assert!(before.is_empty(), "a new link names nothing: {before:?}");
        assert_eq!(after, vec![tag], "the suspended link's delivery is named");
        assert!(matches!(outcome, Err(Error::LinkDetached(None))), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_closed_sender_leaves_nothing_to_resume() {
        let (before, after, outcome, _) = suspend_and_resume(false).await;
        assert!(before.is_empty() && after.is_empty(), "{before:?} {after:?}");
        assert!(matches!(outcome, Err(Error::LinkDetached(None))), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_suspended_receiver_names_its_unsettled_delivery_when_attached_again() {
        let (listener, url) = anonymous_listener().await;
        let (told, heard) = oneshot::channel();
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            let first = conn.next_link().await.expect("the first attach");
            let s = first.accept_sender(None).expect("accept");
            s.wait_credit().await.expect("credit");
            let outcome = s.send_pipelined(&Message::with_data(&b"m"[..])).await.expect("send");
            let outcome = outcome.await;
            let again = conn.next_link().await.expect("the second attach");
            let _ = told.send((outcome, unsettled_tags(&again.remote)));
            let _s = again.accept_sender(None).expect("accept again");
            let _ = conn.connection.closed().await;
        });
        let (_conn, session) = client_session(&url).await;
        let r = within("receiver", session.receiver("durable", "q", 1)).await.expect("receiver");
        let d = within("the delivery", r.recv()).await.expect("one");
        within("the detach", r.detach()).await.expect("detached");
        let again = within("again", session.receiver("durable", "q", 1)).await.expect("again");
        let (outcome, named) = within("the server", heard).await.expect("told");
        assert!(matches!(outcome, Err(Error::LinkDetached(None))), "{outcome:?}");
        assert_eq!(named, vec![d.tag.clone()], "the suspended link's delivery is named");
        assert_eq!(unsettled_tags(again.remote()), named, "both ends name it");
    }

    #[tokio::test]
    async fn a_dropped_receiver_closes_its_link_and_keeps_nothing() {
        let (listener, url) = anonymous_listener().await;
        let (told, heard) = oneshot::channel();
        serve_first_link(listener, |req, _| async move {
            let s = req.accept_sender(None).expect("accept");
            s.wait_credit().await.expect("credit");
            s.send_settled(&Message::with_data(&b"one"[..])).await.expect("send");
            // Waits for credit that never comes: the receiver is dropped, its link closed.
            let _ = s.send_settled(&Message::with_data(&b"two"[..])).await;
            let _ = told.send(s.wait_credit().await);
        });
        let (conn, session) = client_session(&url).await;
        let r = within("receiver", session.receiver("r", "q", 0)).await.expect("receiver");
        r.set_credit(1).expect("credit");
        let d = within("the delivery", r.recv()).await.expect("one");
        assert_eq!(d.payload.as_ref(), &Message::with_data(&b"one"[..]).to_vec()[..]);
        drop(r);
        let end = within("the server hears the detach", heard).await.expect("told");
        assert!(matches!(end, Err(Error::LinkDetached(None))), "closed without error: {end:?}");
        forgets_every_link(&conn).await;
    }

    #[tokio::test]
    async fn a_dropped_session_ends_once_nothing_made_on_it_is_left() {
        let (listener, url) = anonymous_listener().await;
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            while let Some(req) = conn.next_link().await {
                if req.role() == Role::SENDER {
                    let r = req.accept_receiver(None, 10).expect("accept");
                    tokio::spawn(async move {
                        while let Ok(d) = r.recv().await {
                            r.accept(&d).expect("accept the delivery");
                        }
                    });
                } else {
                    let no = AmqpError::new(crate::types::condition::NOT_FOUND, "no such node");
                    req.refuse(no).expect("refuse");
                }
            }
        });
        let conn = within("connect", Connection::connect(&url)).await.expect("connect");
        let session = conn.begin_session().await.expect("session");
        let channel = session.id().0;
        // A refused link leaves nothing behind either.
        let refused = within("refused", session.receiver("r", "nowhere", 5)).await;
        assert!(matches!(refused, Err(Error::LinkRefused(Some(_)))), "{refused:?}");
        let s = within("sender", session.sender("s", "q")).await.expect("sender");
        drop(session);
        // The sender keeps the session, and an outcome awaited keeps it after the sender.
        let first = within("first", s.send(&Message::with_data(&b"1"[..]))).await;
        assert!(matches!(first, Ok(DeliveryState::Accepted(_))), "{first:?}");
        let pending = s.send_pipelined(&Message::with_data(&b"2"[..])).await.expect("send");
        drop(s);
        let second = within("second", pending).await;
        assert!(matches!(second, Ok(DeliveryState::Accepted(_))), "{second:?}");
        let gone = |s: &mut crate::runtime::driver::Shared| {
            s.conn.session_on(channel).is_none().then_some(())
        };
        within("the session ends", conn.inner.wait_until(gone)).await;
        forgets_every_link(&conn).await;
        assert!(conn.inner.lock().begun.is_empty(), "nothing kept of the session");
        let again = conn.begin_session().await.expect("a new session");
        assert_eq!(again.id().0, channel, "the channel is free again");
    }

    #[tokio::test]
    async fn a_connection_whose_last_handle_is_dropped_closes_cleanly() {
        let (listener, url) = anonymous_listener().await;
        let (told, heard) = oneshot::channel();
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            while let Some(refused) = conn.next_link().await {
                drop(refused);
            }
            let _ = told.send(conn.connection.closed().await);
        });
        let (conn, session) = client_session(&url).await;
        let s = within("sender", session.sender("s", "q")).await;
        // Refused (the server drops every link request); only the connection and the
        // session remain.
        assert!(s.is_err(), "{s:?}");
        let still = conn.clone();
        drop(conn);
        drop(session);
        // A clone is a handle: the connection stays open while it lives.
        within("opened", still.opened()).await.expect("open");
        assert!(still.inner.lock().ended.is_none(), "open while a handle lives");
        let inner = Arc::clone(&still.inner);
        drop(still);
        let closed = within("the server sees the close", heard).await.expect("told");
        assert!(closed.is_ok(), "a clean close: {closed:?}");
        let ended = |s: &mut crate::runtime::driver::Shared| s.ended.as_ref().map(Result::is_ok);
        let ended = within("the client's end", Inner::wait_until(&inner, ended)).await;
        assert!(ended, "the client's side ended cleanly");
    }

    #[tokio::test]
    async fn links_closed_by_the_application_leave_nothing_behind() {
        let (listener, url) = anonymous_listener().await;
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            let mut held = Vec::new();
            while let Some(req) = conn.next_link().await {
                if req.role() == Role::SENDER {
                    held.push(Ok(req.accept_receiver(None, 10).expect("accept")));
                } else {
                    held.push(Err(req.accept_sender(None).expect("accept")));
                }
            }
        });
        let (conn, session) = client_session(&url).await;
        for i in 0..3 {
            let s = within("sender", session.sender(&format!("s{i}"), "q")).await.expect("s");
            within("close the sender", s.close()).await.expect("closed");
            let r = within("receiver", session.receiver(&format!("r{i}"), "q", 5)).await;
            within("close the receiver", r.expect("r").close()).await.expect("closed");
        }
        forgets_every_link(&conn).await;
    }

    #[tokio::test]
    async fn an_attach_given_up_before_its_answer_closes_the_link_when_it_comes() {
        let (listener, url) = anonymous_listener().await;
        let (asked, request_in) = oneshot::channel();
        let (answer, answer_now) = oneshot::channel::<()>();
        let (told, heard) = oneshot::channel();
        serve_first_link(listener, |req, _| async move {
            let _ = asked.send(());
            // Answered only once the client has given up waiting: its detach may have come
            // in already (the link is gone), or comes after the answer.
            let _ = answer_now.await;
            let end = match req.accept_receiver(None, 10) {
                Ok(r) => r.recv().await.map(|_| ()),
                Err(e) => Err(e),
            };
            let _ = told.send(end);
        });
        let (conn, session) = client_session(&url).await;
        let on = session.clone();
        let attach = tokio::spawn(async move { on.sender("s", "q").await.map(|_| ()) });
        within("the server has the attach", request_in).await.expect("asked");
        attach.abort();
        assert!(attach.await.is_err_and(|e| e.is_cancelled()), "given up before its answer");
        let _ = answer.send(());
        let end = within("the server hears the detach", heard).await.expect("told");
        let closed =
            matches!(end, Err(Error::LinkDetached(None) | Error::Usage(UsageError::UnknownLink)));
        assert!(closed, "closed without error, before or after the answer: {end:?}");
        forgets_every_link(&conn).await;
        let s = conn.inner.lock();
        assert!(s.attaching.is_empty() && s.begun.is_empty(), "no waiter is kept");
        drop(s);
        drop(session);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_that_make_and_drop_sessions_and_links_at_once_leave_nothing_behind() {
        let (listener, url) = coordinator_listener().await;
        let broker = crate::broker::Broker::new();
        tokio::spawn(async move { broker.serve(listener).await });
        let conn = within("connect", Connection::connect(&url)).await.expect("connect");
        let message = || Message::with_data(&b"m"[..]);
        let mut tasks = Vec::new();
        for i in 0..30u32 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                let session = conn.begin_session().await.expect("session");
                let (name, queue) = (format!("link-{i}"), format!("q{}", i % 3));
                match i % 6 {
                    // An outcome that outlives its sender and its session.
                    0 => {
                        let s = session.sender(&name, &queue).await.expect("sender");
                        let outcome = s.send_pipelined(&message()).await.expect("send");
                        drop((s, session));
                        let outcome = outcome.await;
                        assert!(matches!(outcome, Ok(DeliveryState::Accepted(_))), "{outcome:?}");
                    }
                    // A receiver that outlives its session, dropped with credit granted.
                    1 => {
                        let r = session.receiver(&name, &queue, 5).await.expect("receiver");
                        drop(session);
                        drop(r);
                    }
                    // An attach given up at any point.
                    2 => {
                        let on = session.clone();
                        let attach =
                            tokio::spawn(async move { on.sender(&name, &queue).await.map(|_| ()) });
                        attach.abort();
                        let _ = attach.await;
                    }
                    // Everything closed and ended by the application.
                    3 => {
                        let s = session.sender(&name, &queue).await.expect("sender");
                        s.send_settled(&message()).await.expect("send");
                        s.close().await.expect("close");
                        session.end().await.expect("end");
                    }
                    // A session with nothing on it.
                    4 => drop(session),
                    // A transaction dropped undischarged, its work on a dropped sender.
                    _ => {
                        let s = session.sender(&name, &queue).await.expect("sender");
                        let controller = session.coordinator().await.expect("coordinator");
                        let txn = controller.declare().await.expect("declare");
                        s.send_in(&txn, &message()).await.expect("send");
                    }
                }
            }));
        }
        for t in tasks {
            within("a task", t).await.expect("the task");
        }
        forgets_every_link(&conn).await;
        let no_session = |s: &mut crate::runtime::driver::Shared| {
            let none = (0..=u16::MAX).all(|ch| s.conn.session_on(ch).is_none());
            (none && s.begun.is_empty() && s.attaching.is_empty()).then_some(())
        };
        within("every session ends", conn.inner.wait_until(no_session)).await;
        // The connection is still good for more.
        let session = within("a new session", conn.begin_session()).await.expect("session");
        let s = within("sender", session.sender("after", "q0")).await.expect("sender");
        let outcome = within("send", s.send(&message())).await;
        assert!(matches!(outcome, Ok(DeliveryState::Accepted(_))), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_link_request_dropped_unanswered_is_refused() {
        let (listener, url) = anonymous_listener().await;
        serve_first_link(listener, |req, _| async move { drop(req) });
        let (_conn, session) = client_session(&url).await;
        let refused = peer_error(within("the answer", session.sender("s", "q")).await);
        assert_eq!(refused.condition, crate::types::condition::NOT_IMPLEMENTED);
    }

    #[tokio::test]
    async fn links_queued_for_a_dropped_server_connection_are_refused() {
        let (listener, url) = anonymous_listener().await;
        tokio::spawn(async move {
            let server = first_connection(&listener).await;
            // The application keeps the connection but not the ServerConnection, once
            // the client's attach waits in its queue.
            let keep = server.connection.clone();
            let queued = |_: &mut crate::runtime::driver::Shared| {
                (!server.requests.rx.is_empty()).then_some(())
            };
            keep.inner.wait_until(queued).await;
            drop(server);
            let _ = keep.closed().await;
        });
        let (_conn, session) = client_session(&url).await;
        let refused = peer_error(within("the answer", session.sender("s", "q")).await);
        assert_eq!(refused.condition, crate::types::condition::NOT_IMPLEMENTED);
    }

    /// A listener that takes anonymous SASL and whose engine runs a transaction
    /// coordinator, and its URL.
    async fn coordinator_listener() -> (Listener, String) {
        let credentials = crate::sasl::Credentials::new(|| "nonce".into()).anonymous(true);
        let options = ListenOptions {
            authenticator: Some(Arc::new(move || Some(Box::new(credentials.clone()) as _))),
            configure: Some(Arc::new(|cfg: &mut engine::Config| {
                cfg.coordinator = Some(engine::txn::CoordinatorConfig::default());
            })),
            ..ListenOptions::default()
        };
        let listener = Listener::bind("amqp://127.0.0.1:0", options).await.expect("bind");
        let url = listener.endpoint().to_string();
        (listener, url)
    }

    #[tokio::test]
    async fn a_transaction_dropped_undischarged_is_rolled_back_at_once() {
        let (listener, url) = coordinator_listener().await;
        let (ends, mut ended) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            while let Some(event) = conn.next().await {
                if let crate::runtime::ServerEvent::TxnEnded(end) = event {
                    let _ = ends.send((end.commit, end.cause));
                    end.complete(Ok(())).expect("answer the discharge");
                }
            }
        });
        let (_conn, session) = client_session(&url).await;
        let controller = within("coordinator", session.coordinator()).await.expect("attach");
        let txn = within("declare", controller.declare()).await.expect("declared");
        drop(txn);
        // The controller lives on: only the dropped transaction's own discharge ends it.
        let first = within("the first end", ended.recv()).await;
        assert_eq!(first, Some((false, engine::TxnEndCause::Discharge)), "rolled back");
        let txn = within("declare", controller.declare()).await.expect("declared");
        // A handle rebuilt from the id does not own the transaction: dropping it does not
        // roll it back.
        drop(controller.transaction(txn.id().clone()));
        within("commit", txn.commit()).await.expect("committed");
        let second = within("the second end", ended.recv()).await;
        assert_eq!(second, Some((true, engine::TxnEndCause::Discharge)), "committed");
    }

    #[tokio::test]
    async fn a_rollback_without_credit_goes_once_the_coordinator_grants_some() {
        // The coordinator is played by hand: one credit, spent on the declare.
        let (listener, url) = anonymous_listener().await;
        let (told, heard) = oneshot::channel();
        let (dropped, txn_gone) = oneshot::channel::<()>();
        serve_first_link(listener, |req, _| async move {
            let r = req.accept_receiver_granting(None, 0, 1).expect("accept");
            let declare = r.recv().await.expect("the declare");
            let declared = crate::types::Declared { txn_id: Bytes::from_static(b"t1") };
            r.settle(&declare, DeliveryState::Declared(declared)).expect("declared");
            // Credit only once the client has dropped its transaction with none.
            let _ = txn_gone.await;
            r.set_credit(1).expect("credit");
            let discharge = r.recv().await.expect("the discharge");
            let _ = told.send(Message::decode(&discharge.payload).expect("a message"));
        });
        let (_conn, session) = client_session(&url).await;
        let controller = within("coordinator", session.coordinator()).await.expect("attach");
        let txn = within("declare", controller.declare()).await.expect("declared");
        let no_credit = controller.sender.credit().expect("attached");
        assert_eq!(no_credit.0, 0, "the declare spent the only credit");
        drop(txn);
        assert_eq!(controller.sender.conn.inner.lock().unsent.len(), 1, "kept for later");
        let _ = dropped.send(());
        let sent = within("the rollback", heard).await.expect("told");
        let expected = crate::connection::txn::discharge_message(Bytes::from_static(b"t1"), true);
        assert_eq!(sent.to_vec(), expected.to_vec(), "a discharge with fail");
        assert!(controller.sender.conn.inner.lock().unsent.is_empty(), "nothing left queued");
    }

    #[tokio::test]
    async fn a_transaction_end_dropped_unanswered_refuses_the_discharge() {
        let (listener, url) = coordinator_listener().await;
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            while let Some(event) = conn.next().await {
                if let crate::runtime::ServerEvent::TxnEnded(end) = event {
                    assert!(end.commit, "the client commits");
                    drop(end);
                }
            }
        });
        let (_conn, session) = client_session(&url).await;
        let controller = within("coordinator", session.coordinator()).await.expect("attach");
        let txn = within("declare", controller.declare()).await.expect("declared");
        match within("commit", txn.commit()).await {
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("not-implemented"), "{text}");
                assert!(text.contains("dropped the transaction's end unanswered"), "{text}");
            }
            Ok(()) => panic!("a commit nobody applied was accepted"),
        }
    }

    #[tokio::test]
    async fn why_a_link_ended_stays_when_its_connection_ends_later() {
        let (listener, url) = anonymous_listener().await;
        serve_first_link(listener, |req, conn| async move {
            let s = req.accept_sender(None).expect("accept");
            let forced = AmqpError::new(crate::types::condition::DETACH_FORCED, "gone");
            s.close_with_error(forced).await.expect("detach");
            conn.close(None).await.expect("close");
        });
        let (conn, session) = client_session(&url).await;
        let r = within("receiver", session.receiver("r", "q", 5)).await.expect("receiver");
        let ended = within("the detach", r.recv()).await;
        assert!(matches!(ended, Err(Error::LinkDetached(Some(_)))), "{ended:?}");
        let closed = within("the close", conn.closed()).await;
        assert!(closed.is_ok(), "{closed:?}");
        // The link ended first, with the peer's error; the close came after.
        let why = peer_error(r.credit());
        assert_eq!(why.condition, crate::types::condition::DETACH_FORCED, "not the close");
    }

    #[tokio::test]
    async fn a_connection_that_makes_and_drops_links_keeps_nothing_of_the_ended_ones() {
        // Link ids are never reused, so whatever is kept per id must go with the link:
        // 200 links, each detached by the peer with an error and its handle dropped.
        let (listener, url) = anonymous_listener().await;
        tokio::spawn(async move {
            let mut conn = first_connection(&listener).await;
            while let Some(req) = conn.next_link().await {
                let forced = AmqpError::new(crate::types::condition::DETACH_FORCED, "gone");
                if req.role() == Role::SENDER {
                    let r = req.accept_receiver(None, 10).expect("accept");
                    r.close_with_error(forced).await.expect("detach");
                } else {
                    let s = req.accept_sender(None).expect("accept");
                    s.close_with_error(forced).await.expect("detach");
                }
            }
        });
        let conn = within("connect", Connection::connect(&url)).await.expect("connect");
        let session = conn.begin_session().await.expect("session");
        for i in 0..100 {
            let s = within("sender", session.sender(&format!("s{i}"), "q")).await.expect("s");
            let ended = within("sender ends", s.wait_credit()).await;
            assert!(matches!(ended, Err(Error::LinkDetached(Some(_)))), "{ended:?}");
            drop(s);
            let r =
                within("receiver", session.receiver(&format!("r{i}"), "q", 5)).await.expect("r");
            let ended = within("receiver ends", r.recv()).await;
            assert!(matches!(ended, Err(Error::LinkDetached(Some(_)))), "{ended:?}");
            drop(r);
        }
        let s = conn.inner.lock();
        assert_eq!(
            (s.detached.len(), s.receivers.len(), s.live.len(), s.outcomes.len()),
            (0, 0, 0, 0),
            "nothing kept of 200 ended links"
        );
    }
}

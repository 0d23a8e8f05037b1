//! The task that drives one engine [`Connection`](crate::connection::Connection) over a
//! transport, and the state it shares with the async handles.
//!
//! The loop is the quinn one: read → `handle_input`; write what `poll_transmit` gives;
//! sleep until `poll_timeout`; hand events to whoever waits for them; go round while
//! anything happens. Handles issue engine commands under the same lock and wake the task so
//! that what they queued is written. Reading stops while the engine holds more than
//! [`HIGH_WATER`] bytes the transport has not taken (a peer that does not read).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use std::io::IoSlice;

use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};

use crate::connection::{self as engine, Event, LinkId, SessionId, UsageError};
use crate::message::Payload;
use crate::types::{Attach, DeliveryState, SequenceNo};

use super::transport::Transport;
use super::Error;

/// The span of one connection: its role, container-id, peer address and scheme.
pub(crate) fn connection_span(
    engine: &engine::Connection,
    io: &super::transport::Transport,
) -> tracing::Span {
    let role = if engine.is_client() { "client" } else { "server" };
    let peer = io.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let scheme = io.scheme().map(|s| format!("{s:?}").to_lowercase()).unwrap_or_default();
    tracing::info_span!(
        "amqp_connection",
        role,
        container_id = engine.container_id(),
        peer = %peer,
        scheme = %scheme,
    )
}

/// A trace callback that turns each header and frame into a TRACE event (target
/// `amqpwire::frame`): direction, channel, performative and size, and for transfers their
/// delivery-id; never a field that can hold a secret (SASL responses, message bodies).
pub(crate) fn frame_events(span: tracing::Span) -> engine::TraceFn {
    Box::new(move |r| {
        let _entered = span.enter();
        let direction = match r.direction {
            engine::Direction::In => "in",
            engine::Direction::Out => "out",
        };
        let size = r.raw.len();
        match &r.item {
            engine::TraceItem::Header(h) => {
                tracing::trace!(target: "amqpwire::frame", direction, size, "protocol header {h:?}");
            }
            engine::TraceItem::Undecodable(e) => {
                tracing::trace!(target: "amqpwire::frame", direction, size, "undecodable frame: {e}");
            }
            engine::TraceItem::Unframed(e) => {
                tracing::trace!(target: "amqpwire::frame", direction, size, "bytes after a framing error ({e})");
            }
            engine::TraceItem::Frame(f) => {
                let channel = f.channel;
                match &f.body {
                    crate::frame::FrameBody::Empty => {
                        tracing::trace!(target: "amqpwire::frame", direction, channel, size, "heartbeat");
                    }
                    crate::frame::FrameBody::Amqp { performative, .. } => {
                        let delivery_id = match performative {
                            crate::types::Performative::Transfer(t) => t.delivery_id.map(|d| d.0),
                            _ => None,
                        };
                        tracing::trace!(
                            target: "amqpwire::frame",
                            direction,
                            channel,
                            size,
                            delivery_id,
                            "{}",
                            performative.name()
                        );
                    }
                    crate::frame::FrameBody::Sasl(s) => {
                        tracing::trace!(target: "amqpwire::frame", direction, size, "{}", s.name());
                    }
                }
            }
        }
    })
}

/// The events an application may want to hear of, at their level: state changes at DEBUG
/// and INFO, errors (with their AMQP condition) at WARN.
fn log_event(e: &Event) {
    match e {
        Event::Opened { remote } => {
            tracing::info!(peer_container_id = %remote.container_id, "open exchanged");
        }
        Event::SaslDone { mechanism, identity } => {
            tracing::info!(%mechanism, identity = identity.as_deref().unwrap_or(""), "SASL succeeded");
        }
        Event::SessionBegun { session, by_peer, .. } => {
            tracing::debug!(session = session.0, by_peer, "session begun");
        }
        Event::SessionEnded { session, error, by_peer } => match error {
            Some(e) => {
                tracing::warn!(session = session.0, by_peer, condition = %e.condition, "session ended: {e}")
            }
            None => tracing::debug!(session = session.0, by_peer, "session ended"),
        },
        Event::SessionError { session, violation } => {
            tracing::warn!(
                session = session.0,
                condition = violation.condition(),
                "session ended by a protocol violation: {violation}"
            );
        }
        Event::LinkAttached { link, by_peer, remote } => {
            let (role, address) = link_words(remote);
            tracing::debug!(session = link.session.0, handle = link.handle.0, name = %remote.name, role, address, by_peer, "link attached");
        }
        Event::LinkDetached { link, closed, error, by_peer } => match error {
            Some(e) => {
                tracing::warn!(session = link.session.0, handle = link.handle.0, closed, by_peer, condition = %e.condition, "link detached: {e}")
            }
            None => tracing::debug!(
                session = link.session.0,
                handle = link.handle.0,
                closed,
                by_peer,
                "link detached"
            ),
        },
        Event::LinkError { link, violation } => {
            tracing::warn!(
                session = link.session.0,
                handle = link.handle.0,
                condition = violation.condition(),
                "link detached by a protocol violation: {violation}"
            );
        }
        Event::ConnectionError { violation } => {
            tracing::warn!(
                condition = violation.condition(),
                "closing the connection for a protocol violation: {violation}"
            );
        }
        Event::RemoteClose { error: Some(e) } => {
            tracing::warn!(condition = %e.condition, "the peer closed the connection: {e}");
        }
        Event::Ended { error: Some(e) } => {
            let condition = match e {
                engine::ConnectionError::Remote(r) => Some(r.condition.to_string()),
                engine::ConnectionError::Violation(v) => Some(v.condition().to_owned()),
                _ => None,
            };
            tracing::warn!(condition = condition.as_deref(), "connection ended: {e}");
        }
        Event::Ended { error: None } => tracing::info!("connection closed"),
        Event::TxnDeclared { txn_id, .. } => {
            tracing::debug!(txn_id = %crate::inspect::hex(txn_id), "transaction declared");
        }
        Event::TxnEnded { txn_id, commit, cause, work } => {
            tracing::debug!(txn_id = %crate::inspect::hex(txn_id), commit, ?cause, work, "transaction ended");
        }
        Event::TxnWorkRefused { error, .. } => {
            tracing::warn!(condition = %error.condition, "transactional work refused: {error}");
        }
        _ => {}
    }
}

/// A link's role and address, as its attach names them.
fn link_words(a: &Attach) -> (&'static str, String) {
    use crate::types::{AttachSource, AttachTarget, Role};
    let role = if a.role == Role::SENDER { "sender" } else { "receiver" };
    let address = if a.role == Role::SENDER {
        match &a.target {
            Some(AttachTarget::Target(t)) => t.address.as_deref().unwrap_or("").to_owned(),
            Some(AttachTarget::Coordinator(_)) => "(coordinator)".to_owned(),
            _ => String::new(),
        }
    } else {
        match &a.source {
            Some(AttachSource::Source(s)) => s.address.as_deref().unwrap_or("").to_owned(),
            _ => String::new(),
        }
    };
    (role, address)
}

/// Output the engine may hold for a transport that does not take it before reading stops.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;

/// How much is read from the transport at a time.
const READ_CHUNK: usize = 256 * 1024;

/// A delivery received on a link.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The link it arrived on.
    pub link: LinkId,
    /// Its delivery-id.
    pub delivery_id: SequenceNo,
    /// Its delivery-tag.
    pub tag: Bytes,
    /// The encoded message (joined when it came in several frames; not copied otherwise).
    pub payload: Bytes,
    /// Whether the sender settled it (pre-settled: nothing to answer).
    pub settled: bool,
    /// The transfer's delivery state: `transactional-state` for work of a transaction
    /// (see [`Delivery::transaction`]), a resumed delivery's last state, or none.
    pub state: Option<DeliveryState>,
}

impl Delivery {
    /// The transaction this delivery is work of (4.4.1), if it is transactional.
    pub fn transaction(&self) -> Option<&Bytes> {
        crate::connection::txn::transaction_of(self.state.as_ref()).map(|(id, _)| id)
    }

    /// Decodes the message.
    pub fn message(&self) -> Result<crate::message::Message, Error> {
        crate::message::Message::decode(&self.payload).map_err(Error::Decode)
    }
}

/// A link attach waiting for the peer's answer.
pub(crate) struct PendingAttach {
    /// The peer's attach, once it came.
    pub(crate) answer: Option<Result<Box<Attach>, Error>>,
    /// The peer answered without a terminus: a refusal, whose detach carries the error.
    pub(crate) refused: bool,
}

/// Bytes of deliveries a receiver with a credit window keeps queued and granted at most,
/// as far as the sizes it has seen tell: large messages get fewer than the window's count
/// of credits, so a window of 1,000 does not become 1,000 buffered messages of a megabyte.
pub const RECV_BUDGET: usize = 2 * 1024 * 1024;

/// Credits a receiver with a credit window grants first, before it has seen how large the
/// link's messages are.
pub const INITIAL_CREDIT: u32 = 16;

/// What a receiving link holds for its handle.
pub(crate) struct RecvQueue {
    pub(crate) queue: VecDeque<Delivery>,
    pub(crate) notify: Arc<Notify>,
    /// The credit window kept open (0: the application grants credit itself).
    pub(crate) window: u32,
    pub(crate) end: Option<Error>,
    /// Payload bytes in `queue`.
    pub(crate) queued_bytes: usize,
    /// A running average of payload sizes on the link (0: none seen yet).
    pub(crate) typical: usize,
    /// Deliveries taken from `queue` so far.
    pub(crate) taken: u64,
}

impl RecvQueue {
    pub(crate) fn new(window: u32) -> Self {
        Self {
            queue: VecDeque::new(),
            notify: Arc::new(Notify::new()),
            window,
            end: None,
            queued_bytes: 0,
            typical: 0,
            taken: 0,
        }
    }

    /// Credits granted when the link is attached, before any size is known: the window,
    /// but no more than [`INITIAL_CREDIT`], so that a first burst of large messages stays
    /// small; the first delivery taken refills to what the sizes allow.
    pub(crate) fn initial_credit(window: u32) -> u32 {
        window.min(INITIAL_CREDIT)
    }

    /// The credit worth having granted now: the window less what is queued, and no more
    /// than [`RECV_BUDGET`] leaves room for at the typical size; at least one while the
    /// queue is empty, so that a message larger than the budget still comes.
    pub(crate) fn wanted_credit(&self) -> u32 {
        let queued = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        let mut credit = self.window.saturating_sub(queued);
        if let Some(room) = RECV_BUDGET.saturating_sub(self.queued_bytes).checked_div(self.typical)
        {
            credit = credit.min(u32::try_from(room).unwrap_or(u32::MAX));
        }
        if self.queue.is_empty() && self.window > 0 {
            credit = credit.max(1);
        }
        credit
    }

    fn push(&mut self, d: Delivery) {
        let n = d.payload.len();
        self.queued_bytes += n;
        self.typical = if self.typical == 0 { n.max(1) } else { (self.typical * 7 + n) / 8 };
        self.queue.push_back(d);
        self.notify.notify_one();
    }

    /// The next delivery for the application, and the credit to grant now if the window
    /// wants refilling (when what is granted has fallen to half of what is wanted).
    pub(crate) fn pop(&mut self, granted: u32) -> Option<(Delivery, Option<u32>)> {
        let d = self.queue.pop_front()?;
        self.queued_bytes -= d.payload.len();
        self.taken += 1;
        let wanted = self.wanted_credit();
        let refill =
            (self.window > 0 && granted < wanted && granted <= wanted / 2).then_some(wanted);
        Some((d, refill))
    }
}

/// What a server connection hands its application.
pub(crate) enum Request {
    /// A link the peer attached, to accept or refuse.
    Link { link: LinkId, remote: Box<Attach> },
    /// A transaction on the engine's coordinator ended: its work is to be applied or
    /// undone (and the discharge answered, for the causes that wait for it).
    TxnEnded { txn_id: Bytes, commit: bool, cause: engine::TxnEndCause, work: u32 },
}

/// Everything behind the lock.
pub(crate) struct Shared {
    pub(crate) conn: engine::Connection,
    pub(crate) opened: Option<Result<(), Error>>,
    /// Sessions a handle waits on (to begin or to end), with the answer once it came.
    /// Nothing is kept for sessions nobody waits on.
    pub(crate) begun: HashMap<SessionId, Option<Result<(), Error>>>,
    pub(crate) attaching: HashMap<LinkId, PendingAttach>,
    pub(crate) outcomes: HashMap<(LinkId, u32), oneshot::Sender<Result<DeliveryState, Error>>>,
    pub(crate) receivers: HashMap<LinkId, RecvQueue>,
    /// Links that ended, with why: later commands on them fail with it.
    pub(crate) detached: HashMap<LinkId, Error>,
    /// Every link a handle was made for and that has not ended: when its session or the
    /// connection ends, each is told, idle ones included.
    pub(crate) live: std::collections::HashSet<LinkId>,
    /// Links whose handle was dropped while they were attached: each is detached (closed)
    /// once no outcome of its deliveries is awaited by a [`PendingOutcome`] still held
    /// (`true` once the detach is sent), and nothing is kept of it when it ends.
    ///
    /// [`PendingOutcome`]: super::PendingOutcome
    pub(crate) dropped: HashMap<LinkId, bool>,
    /// Transfers queued from a `Drop` (a dropped transaction's rollback) that found no
    /// credit or no room in the session window: tried again whenever events come in,
    /// forgotten when their link ends.
    pub(crate) unsent: Vec<(LinkId, Bytes, Payload)>,
    /// Server connections: links the peer attached, for the application.
    pub(crate) requests: Option<tokio::sync::mpsc::UnboundedSender<Request>>,
    /// The identity SASL authenticated (server side).
    pub(crate) identity: Option<String>,
    /// The certificate chain the peer presented to the TLS layer.
    pub(crate) peer_certificate: Option<super::transport::PeerIdentity>,
    /// How the connection ended (`Ok`: a clean close).
    pub(crate) ended: Option<Result<(), Error>>,
}

/// The shared state, and the two wake-ups: the driver's (output to write) and the
/// handles' (something changed).
pub(crate) struct Inner {
    state: Mutex<Shared>,
    pub(crate) wake_driver: Notify,
    pub(crate) changed: Notify,
}

impl Inner {
    pub(crate) fn new(conn: engine::Connection) -> Self {
        Self {
            state: Mutex::new(Shared {
                conn,
                opened: None,
                begun: HashMap::new(),
                attaching: HashMap::new(),
                outcomes: HashMap::new(),
                receivers: HashMap::new(),
                detached: HashMap::new(),
                live: std::collections::HashSet::new(),
                dropped: HashMap::new(),
                unsent: Vec::new(),
                requests: None,
                identity: None,
                peer_certificate: None,
                ended: None,
            }),
            wake_driver: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// The shared state. A handle that panicked while holding the lock leaves nothing the
    /// engine cannot continue from, so a poisoned lock is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` under the lock each time something changes, until it returns a value.
    pub(crate) async fn wait_until<T>(&self, mut f: impl FnMut(&mut Shared) -> Option<T>) -> T {
        // Most calls are answered at once (a send with credit): those register no waiter,
        // which takes and releases the waiters' lock; the others register, then ask again.
        if let Some(v) = f(&mut self.lock()) {
            return v;
        }
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&mut self.lock()) {
                return v;
            }
            notified.await;
        }
    }
}

impl Shared {
    /// A handle is made for `link`. (The engine's ids are never reused, even where a
    /// later link gets an ended one's AMQP handle: the id names this link alone.)
    pub(crate) fn new_link(&mut self, link: LinkId) {
        self.live.insert(link);
    }

    /// A handle for `link` is gone: what is kept about the link once it has ended (why
    /// it ended, its queue of deliveries) goes with it, so a connection that makes and
    /// drops links for its whole life keeps no more than its live ones.
    ///
    /// A link still attached is closed, as [`Sender::close`](super::Sender::close) would
    /// close it, but without waiting: at once, or once the outcomes its sender's deliveries
    /// still await have arrived (a [`PendingOutcome`](super::PendingOutcome) may outlive
    /// its `Sender`). Deliveries that arrive for a dropped receiver meanwhile are left
    /// unsettled, for the peer to release when the link ends.
    pub(crate) fn handle_dropped(&mut self, link: LinkId) {
        self.receivers.remove(&link);
        if self.detached.remove(&link).is_some() || self.ended.is_some() {
            self.live.remove(&link);
            return;
        }
        self.dropped.insert(link, false);
        self.detach_dropped(link);
    }

    /// An outcome awaited on `link` arrived: a dropped link may be detached now.
    fn outcome_arrived(&mut self, link: LinkId) {
        if self.dropped.is_empty() {
            return; // the usual case, on every outcome: no hashing
        }
        self.detach_dropped(link);
    }

    /// A [`PendingOutcome`](super::PendingOutcome) of a delivery on `link` was dropped:
    /// if the link's sender was dropped and waited on it alone, it is detached now.
    /// Whether a detach was queued (for the driver to be woken).
    pub(crate) fn outcome_given_up(&mut self, link: LinkId) -> bool {
        if self.dropped.get(&link) != Some(&false) {
            return false;
        }
        self.detach_dropped(link);
        self.dropped.get(&link) != Some(&false)
    }

    /// Detaches a dropped link once none of its outcomes is awaited (an outcome whose
    /// `PendingOutcome` was dropped is awaited by no one); forgets it if the engine no
    /// longer knows it (no event will come for it).
    fn detach_dropped(&mut self, link: LinkId) {
        if self.dropped.get(&link) != Some(&false) {
            return;
        }
        let awaited = self.outcomes.iter().any(|((l, _), tx)| *l == link && !tx.is_closed());
        if awaited {
            return;
        }
        let sent = self.conn.detach(link, true, None).is_ok();
        if sent || self.conn.link_state(link).is_some() {
            // Sent, or the link is ending already: its end comes as an event.
            self.dropped.insert(link, true);
        } else {
            self.dropped.remove(&link);
            self.live.remove(&link);
        }
    }

    /// Why `link` can no longer be used, once it has ended: detached (by either side),
    /// gone with its session, or its connection ended; `None` while it is attached.
    pub(crate) fn link_ended(&self, link: LinkId) -> Option<Error> {
        if let Some(e) = self.detached.get(&link) {
            return Some(e.duplicate());
        }
        if let Some(e) = self.end_error() {
            return Some(e);
        }
        // Gone with its session, or reused by a later link not yet accepted.
        (self.conn.link_state(link) != Some(engine::LinkState::Attached))
            .then_some(Error::LinkDetached(None))
    }

    /// The error for a command on a connection that has ended.
    pub(crate) fn end_error(&self) -> Option<Error> {
        self.ended.as_ref().map(|e| match e {
            Ok(()) => Error::Closed,
            Err(e) => e.duplicate(),
        })
    }

    /// Hands every engine event to whoever waits for it; `true` if there was any.
    pub(crate) fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.conn.poll_event() {
            any = true;
            self.on_event(e);
        }
        // A session window may open without an event: tried on every turn while held.
        if !self.unsent.is_empty() {
            self.retry_unsent();
        }
        any
    }

    /// Queues `payload` on `link` unsettled now, or as soon as credit and the session
    /// window allow (see [`Shared::unsent`]); dropped if it can never go (the link or the
    /// connection has ended).
    pub(crate) fn send_or_keep(&mut self, link: LinkId, tag: Bytes, payload: Payload) {
        self.unsent.push((link, tag, payload));
        self.retry_unsent();
    }

    /// Starts closing the connection (a clean close with no `error`), unless it has ended
    /// or is closing already.
    pub(crate) fn start_close(&mut self, error: Option<crate::types::Error>) {
        if self.ended.is_none() {
            // The close time-out runs from the time the engine last heard: after a quiet
            // spell that is long past, so tell it the time first.
            self.conn.handle_timeout(Instant::now());
            // A connection closing already is fine: its end comes either way.
            let _ = self.conn.close(error);
        }
    }

    /// Sends what [`Shared::unsent`] holds that can go now, in order per link.
    fn retry_unsent(&mut self) {
        let waiting = std::mem::take(&mut self.unsent);
        let mut blocked: Vec<LinkId> = Vec::new();
        for (link, tag, payload) in waiting {
            if blocked.contains(&link) {
                self.unsent.push((link, tag, payload));
                continue;
            }
            match self.conn.send_payload(link, tag.clone(), &payload, false) {
                Ok(_) => {}
                Err(UsageError::NoCredit | UsageError::SessionWindowFull) => {
                    blocked.push(link);
                    self.unsent.push((link, tag, payload));
                }
                // The link is gone or ended: nothing more to send on it.
                Err(_) => {}
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        log_event(&e);
        match e {
            Event::Opened { .. } => self.opened = Some(Ok(())),
            Event::SaslDone { identity, .. } => self.identity = identity,
            Event::SessionBegun { session, by_peer: false, .. } => {
                self.session_news(session, Ok(()))
            }
            Event::SessionEnded { session, error, .. } => self.session_ended(session, error),
            Event::SessionError { session, violation } => {
                self.session_ended(session, Some(violation.to_error()));
            }
            Event::LinkAttached { link, by_peer: false, remote } => {
                if let Some(p) = self.attaching.get_mut(&link) {
                    // 2.6.3: an answer without the terminus we asked for is a refusal;
                    // the detach with the reason follows.
                    let we_send = remote.role == crate::types::Role::RECEIVER;
                    p.refused =
                        if we_send { remote.target.is_none() } else { remote.source.is_none() };
                    if !p.refused {
                        p.answer = Some(Ok(remote));
                    }
                }
            }
            Event::AttachRequested { link, remote } => match &self.requests {
                Some(tx) if tx.send(Request::Link { link, remote }).is_ok() => {}
                _ => {
                    let e = crate::types::Error::new(
                        crate::types::condition::NOT_IMPLEMENTED,
                        "this endpoint does not accept links",
                    );
                    let _ = self.conn.refuse_attach(link, e);
                }
            },
            Event::LinkDetached { link, error, .. } => {
                let refused = self.attaching.get(&link).is_some_and(|p| p.refused);
                let why = if refused {
                    Error::LinkRefused(error.clone())
                } else {
                    Error::LinkDetached(error.clone())
                };
                self.fail_link(link, why);
            }
            Event::LinkError { link, violation } => {
                self.fail_link(link, Error::LinkDetached(Some(violation.to_error())));
            }
            Event::Delivery { link, delivery_id, tag, payload, settled, state }
            | Event::Resumed { link, delivery_id, tag, payload, settled, state } => {
                if let Some(r) = self.receivers.get_mut(&link) {
                    r.push(Delivery { link, delivery_id, tag, payload, settled, state });
                    // What is granted could bring more than the budget at this size:
                    // lower it (2.6.7 lets a receiver do so at any time).
                    if r.window > 0 {
                        let granted = self.conn.link_credit(link).unwrap_or(0) as usize;
                        if granted * r.typical > RECV_BUDGET {
                            let _ = self.conn.flow(link, r.wanted_credit(), false);
                        }
                    }
                }
            }
            Event::Disposition { link, delivery_id, settled, state } => {
                let terminal = state.as_ref().is_some_and(DeliveryState::is_outcome);
                if !settled && terminal {
                    // The receiver settles second (rcv-settle-mode second): settle now.
                    let _ = self.conn.disposition(link, delivery_id, None, true, state.clone());
                }
                // A transactional outcome (4.4.2) is final for the transaction's work even
                // while unsettled: the controller may settle only after the discharge.
                let txn_outcome = crate::connection::txn::transaction_of(state.as_ref())
                    .is_some_and(|(_, outcome)| outcome.is_some());
                if settled || terminal || txn_outcome {
                    if let Some(tx) = self.outcomes.remove(&(link, delivery_id.0)) {
                        let outcome =
                            state.unwrap_or(DeliveryState::Accepted(crate::types::Accepted {}));
                        let _ = tx.send(Ok(outcome));
                        self.outcome_arrived(link);
                    }
                }
            }
            Event::Ended { error } => {
                let end = match error {
                    None => Ok(()),
                    Some(e) => Err(Error::Connection(e)),
                };
                let why = match &end {
                    Ok(()) => Error::Closed,
                    Err(e) => e.duplicate(),
                };
                if self.opened.is_none() {
                    self.opened = Some(Err(why.duplicate()));
                }
                self.ended = Some(end);
                let links: Vec<_> = self.links().collect();
                for link in links {
                    self.fail_link(link, why.duplicate());
                }
                self.requests = None;
            }
            Event::TxnEnded { txn_id, commit, cause, work } => {
                let news = Request::TxnEnded { txn_id: txn_id.clone(), commit, cause, work };
                let heard = self.requests.as_ref().is_some_and(|tx| tx.send(news).is_ok());
                if !heard && cause.awaits_answer() {
                    let e = crate::types::Error::new(
                        crate::types::condition::NOT_IMPLEMENTED,
                        "nothing applies this connection's transactions: the work was dropped",
                    );
                    let _ = self.conn.complete_discharge(&txn_id, Err(e));
                }
            }
            Event::TxnWorkRefused { link, .. } => {
                // The refused delivery used a credit that no taken delivery will refill.
                if let Some(r) = self.receivers.get(&link).filter(|r| r.window > 0) {
                    let wanted = r.wanted_credit();
                    if self.conn.link_credit(link).is_some_and(|granted| granted < wanted) {
                        let _ = self.conn.flow(link, wanted, false);
                    }
                }
            }
            Event::SessionBegun { by_peer: true, .. }
            | Event::TxnDeclared { .. }
            | Event::LinkAttached { by_peer: true, .. }
            | Event::BeginRequested { .. }
            | Event::Credit { .. }
            // Senders waiting for room in the window are woken as for any event.
            | Event::SessionWindow { .. }
            | Event::Aborted { .. }
            | Event::RemoteClose { .. }
            | Event::ConnectionError { .. } => {}
        }
    }

    /// Hands `news` of a session to the handle waiting on it, if one is.
    fn session_news(&mut self, session: SessionId, news: Result<(), Error>) {
        if let Some(slot) = self.begun.get_mut(&session) {
            *slot = Some(news);
        }
    }

    /// A session ended: its waiter and every link on it hear why.
    fn session_ended(&mut self, session: SessionId, error: Option<crate::types::Error>) {
        self.session_news(session, Err(Error::SessionEnded(error.clone())));
        let links: Vec<_> = self.links().filter(|l| l.session == session).collect();
        for link in links {
            self.fail_link(link, Error::SessionEnded(error.clone()));
        }
    }

    /// Takes the answer for a session a handle waits on: the news, or the connection's
    /// end; `None` while there is neither.
    pub(crate) fn take_session_news(&mut self, session: SessionId) -> Option<Result<(), Error>> {
        let news = self.begun.get_mut(&session).and_then(Option::take);
        let answer = news.or_else(|| self.end_error().map(Err));
        if answer.is_some() {
            self.begun.remove(&session);
        }
        answer
    }

    /// Every link some handle knows of.
    fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        let waiting = self.outcomes.keys().map(|(l, _)| *l);
        let known = self.attaching.keys().chain(self.receivers.keys()).chain(self.live.iter());
        known.copied().chain(waiting)
    }

    /// A link ended: whoever waits on it hears why.
    pub(crate) fn fail_link(&mut self, link: LinkId, why: Error) {
        if let Some(p) = self.attaching.get_mut(&link) {
            if p.answer.is_none() {
                p.answer = Some(Err(why.duplicate()));
            }
        }
        let ids: Vec<_> = self.outcomes.keys().filter(|(l, _)| *l == link).copied().collect();
        for id in ids {
            if let Some(tx) = self.outcomes.remove(&id) {
                let _ = tx.send(Err(why.duplicate()));
            }
        }
        if let Some(r) = self.receivers.get_mut(&link) {
            if r.end.is_none() {
                r.end = Some(why.duplicate());
            }
            r.notify.notify_one();
        }
        if !self.unsent.is_empty() {
            self.unsent.retain(|(l, ..)| *l != link);
        }
        let held = self.live.remove(&link)
            || self.attaching.contains_key(&link)
            || self.receivers.contains_key(&link);
        if self.dropped.remove(&link).is_some() || !held {
            // No handle is left to ask why (one dropped, or a link that ended before and
            // whose handle has gone since: the peer's answer to our detach after an error).
            self.receivers.remove(&link);
            return;
        }
        // The first reason stands: a link the peer detached with an error has not ended
        // again when its session or the connection ends later.
        self.detached.entry(link).or_insert(why);
    }
}

/// How a connection's transport ended, as its driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportEnd {
    /// The connection ended (its close exchange, or an error it closed with) and the
    /// driver shut the transport down: our side ended it.
    Closed,
    /// The peer ended its side of the transport first (end of stream).
    PeerClosed,
    /// Reading or writing failed (a reset, a broken pipe, a TLS or WebSocket error).
    Failed,
}

/// Drives the connection until it has ended and its last bytes are written; says how the
/// transport ended.
pub(crate) async fn drive(inner: Arc<Inner>, io: Transport) -> TransportEnd {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut input = ReadBuffers::default();
    let mut out = Payload::default();
    let mut written = 0usize;
    let mut eof = false;
    let mut end = TransportEnd::Closed;
    // The engine's clock starts with the transport: the peer's open is timed from here.
    inner.lock().conn.handle_timeout(Instant::now());
    loop {
        let (deadline, ended, can_read) = {
            let mut s = inner.lock();
            if s.dispatch() {
                inner.changed.notify_waiters();
            }
            if written == out.len() {
                out.clear();
                written = 0;
                s.conn.poll_transmit_payload(&mut out);
            }
            let ended = s.conn.is_ended();
            let backlog = s.conn.pending_transmit() + (out.len() - written);
            (s.conn.poll_timeout(), ended, !eof && !ended && backlog < HIGH_WATER)
        };
        if ended && written == out.len() {
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            break;
        }
        let sleep = tokio::time::sleep_until(
            deadline.map_or_else(far_future, tokio::time::Instant::from_std),
        );
        tokio::select! {
            r = write_some(&mut wr, &out, written), if written < out.len() => match r {
                Ok(n) if n > 0 => {
                    written += n;
                    // Over WebSocket a flush sends what was written as one message.
                    if written == out.len() && wr.flush().await.is_err() {
                        end = first_end(end, TransportEnd::Failed);
                        transport_gone(&inner, &mut out, &mut written);
                    }
                }
                _ => {
                    end = first_end(end, TransportEnd::Failed);
                    transport_gone(&inner, &mut out, &mut written);
                }
            },
            r = input.read(&mut rd), if can_read => match r {
                Ok(0) | Err(_) => {
                    // A TLS peer that closes without close_notify ends its stream too.
                    let clean = match &r {
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::UnexpectedEof,
                    };
                    end = first_end(
                        end,
                        if clean { TransportEnd::PeerClosed } else { TransportEnd::Failed },
                    );
                    eof = true;
                    inner.lock().conn.handle_eof(Instant::now());
                }
                Ok(n) => {
                    let (wanted, frame) = {
                        let mut s = inner.lock();
                        s.conn.handle_input_buf(&mut input.current, Instant::now());
                        (s.conn.input_wanted(), s.conn.input_frame_size())
                    };
                    input.after_read(n, wanted, frame);
                }
            },
            () = inner.wake_driver.notified() => {}
            () = sleep, if deadline.is_some() => inner.lock().conn.handle_timeout(Instant::now()),
        }
    }
    let mut s = inner.lock();
    if s.dispatch() || s.ended.is_some() {
        inner.changed.notify_waiters();
    }
    end
}

/// How the transport ended: the first thing seen to end it (a write that fails after the
/// peer closed its side is still the peer's closing).
fn first_end(so_far: TransportEnd, seen: TransportEnd) -> TransportEnd {
    if so_far == TransportEnd::Closed {
        seen
    } else {
        so_far
    }
}

/// The transport failed while writing: nothing more can be sent or received.
fn transport_gone(inner: &Inner, out: &mut Payload, written: &mut usize) {
    out.clear();
    *written = 0;
    inner.lock().conn.handle_eof(Instant::now());
}

/// Writes what of `out` lies past its first `skip` bytes, as one vectored write where the
/// transport takes those (message bodies are referenced by `out`, not copied into it).
async fn write_some(
    wr: &mut tokio::io::WriteHalf<Transport>,
    out: &Payload,
    skip: usize,
) -> std::io::Result<usize> {
    /// More slices than this per write gain nothing (and IOV_MAX is 1024).
    const MAX_SLICES: usize = 64;
    let mut slices: SmallVec<[IoSlice<'_>; 8]> = SmallVec::new();
    let mut at = 0usize;
    for chunk in out.chunks() {
        let end = at + chunk.len();
        if end > skip {
            slices.push(IoSlice::new(&chunk[skip.saturating_sub(at)..]));
            if slices.len() == MAX_SLICES {
                break;
            }
        }
        at = end;
    }
    wr.write_vectored(&slices).await
}

/// The buffers the transport is read into. The engine takes complete frames off the front
/// of [`ReadBuffers::current`] without copying them (delivered payloads are slices of it)
/// and leaves the start of an incomplete frame in it for the next read to complete.
///
/// When `current` fills up it is exchanged for a buffer whose earlier contents the
/// application has since dropped, so a steady stream reuses the same few buffers (memory
/// already mapped and warm) instead of asking the allocator for fresh memory each time;
/// only the start of a frame that straddles the exchange is copied. When traffic turns
/// light the retired buffers are let go.
#[derive(Default)]
struct ReadBuffers {
    current: BytesMut,
    /// Retired buffers, still referenced by payloads the application holds, or free again.
    retired: Vec<BytesMut>,
    /// Room the frame being received wants beyond what a read usually takes.
    wanted: usize,
    /// The size of the last frame received (see [`ReadBuffers::chunk`]).
    frame: usize,
    /// `current` has memory of its own (it starts with none).
    allocated: bool,
}

impl ReadBuffers {
    /// Retired buffers kept for reuse: with `current`, at most this + 1 buffers of about
    /// [`READ_CHUNK`] are held for a busy connection.
    const KEEP: usize = 3;

    async fn read(&mut self, rd: &mut tokio::io::ReadHalf<Transport>) -> std::io::Result<usize> {
        self.make_room();
        rd.read_buf(&mut self.current).await
    }

    /// Makes room in `current` for a read: a quarter of [`READ_CHUNK`], or what the frame
    /// being received wants if that is more.
    fn make_room(&mut self) {
        let room = self.wanted.max(READ_CHUNK / 4);
        let len = self.current.len();
        if self.current.capacity() - len >= room {
            return;
        }
        let additional = room.max(self.chunk().saturating_sub(len));
        // Every payload taken from it dropped: it is rewound in place.
        if self.current.try_reclaim(additional) {
            return;
        }
        let free = self.retired.iter_mut().position(|b| b.try_reclaim(len + additional));
        let mut next = match free {
            Some(i) => self.retired.swap_remove(i),
            None => BytesMut::with_capacity(len + additional),
        };
        // Only the start of a frame that straddles the exchange is copied.
        next.extend_from_slice(&self.current);
        let mut old = std::mem::replace(&mut self.current, next);
        if std::mem::replace(&mut self.allocated, true) && self.retired.len() < Self::KEEP {
            old.clear();
            self.retired.push(old);
        }
    }

    /// The size of a new buffer: [`READ_CHUNK`], or when the peer's frames are large (a
    /// sixteenth of it or more) as many whole frames of the last size as fit in it. A
    /// stream of alike frames then ends each buffer at a frame's end: no frame straddles
    /// two buffers, none is copied to complete it, and a buffer the application keeps
    /// slices of (a broker's queue) holds no bytes that belong to no message.
    fn chunk(&self) -> usize {
        match self.frame {
            f if (READ_CHUNK / 16..=READ_CHUNK).contains(&f) => READ_CHUNK / f * f,
            _ => READ_CHUNK,
        }
    }

    /// After a read of `n` bytes has been handed to the engine, which now wants `wanted`
    /// more for the frame it is receiving, the last it received being `frame` bytes. A
    /// short read that left nothing pending means light traffic, which keeps no spare
    /// buffers.
    fn after_read(&mut self, n: usize, wanted: usize, frame: usize) {
        self.wanted = wanted;
        self.frame = frame;
        if n < READ_CHUNK / 64 && self.current.is_empty() {
            self.retired.clear();
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `current` as reads would, and takes what it holds off as the engine takes
    /// complete frames (slices the application may keep).
    fn fill_and_take(b: &mut ReadBuffers, n: usize) -> Bytes {
        b.make_room();
        b.current.resize(b.current.len() + n, 7);
        b.current.split().freeze()
    }

    #[test]
    fn a_full_buffer_is_rewound_when_the_application_dropped_its_payloads() {
        let mut b = ReadBuffers::default();
        let first = fill_and_take(&mut b, READ_CHUNK - 1000);
        let start = first.as_ptr();
        drop(first);
        let again = fill_and_take(&mut b, 100);
        assert_eq!(again.as_ptr(), start, "the same memory, read into again");
        assert!(b.retired.is_empty());
    }

    #[test]
    fn held_payloads_retire_their_buffer_until_they_are_dropped() {
        let mut b = ReadBuffers::default();
        let held = fill_and_take(&mut b, READ_CHUNK - 1000);
        let second = fill_and_take(&mut b, READ_CHUNK - 1000);
        assert_ne!(second.as_ptr(), held.as_ptr());
        assert_eq!(b.retired.len(), 1, "the first buffer waits for its payload");
        // The first is free again once its payload is dropped, and is reused before any
        // new memory is asked for; the second is still held, so it retires in turn.
        let start = held.as_ptr();
        drop(held);
        let third = fill_and_take(&mut b, 100);
        assert_eq!(third.as_ptr(), start);
        assert_eq!(b.retired.len(), 1);
        drop((second, third));
    }

    #[test]
    fn the_start_of_a_frame_moves_with_the_exchange_and_gets_the_room_it_wants() {
        let mut b = ReadBuffers::default();
        let held = fill_and_take(&mut b, READ_CHUNK - 1000);
        // 500 bytes of a 200 KiB frame are left in the buffer; the engine wants the rest.
        b.make_room();
        b.current.resize(b.current.len() + 500, 9);
        b.after_read(500, 200 * 1024 - 500, 0);
        b.make_room();
        assert_eq!(&b.current[..], &[9u8; 500][..], "the partial frame came along");
        assert!(b.current.capacity() - b.current.len() >= 200 * 1024 - 500);
        drop(held);
    }

    #[test]
    fn light_traffic_lets_the_spare_buffers_go() {
        let mut b = ReadBuffers::default();
        let held = fill_and_take(&mut b, READ_CHUNK - 1000);
        let _second = fill_and_take(&mut b, READ_CHUNK - 1000);
        assert_eq!(b.retired.len(), 1);
        drop(held);
        b.after_read(100, 0, 0);
        assert!(b.retired.is_empty());
    }

    #[test]
    fn buffers_hold_whole_frames_once_the_frames_are_large() {
        let mut b = ReadBuffers::default();
        assert_eq!(b.chunk(), READ_CHUNK, "nothing received yet");
        // 64 KiB messages, one frame each: three fit a buffer, and each buffer is made for
        // exactly three, so a kept buffer holds nothing but frames.
        let frame = 65_536 + 30;
        let held = fill_and_take(&mut b, READ_CHUNK - 1000);
        b.after_read(READ_CHUNK - 1000, 0, frame);
        assert_eq!(b.chunk(), 3 * frame);
        let second = fill_and_take(&mut b, 3 * frame);
        assert_eq!(second.len(), 3 * frame);
        assert_eq!(b.current.capacity() - b.current.len(), 0, "no room left over");
        // Small frames, or frames larger than a read: the usual size.
        b.after_read(100, 0, 2_000);
        assert_eq!(b.chunk(), READ_CHUNK);
        b.after_read(100, 0, 2 * READ_CHUNK);
        assert_eq!(b.chunk(), READ_CHUNK);
        drop((held, second));
    }
}

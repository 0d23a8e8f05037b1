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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};

use crate::connection::{self as engine, Event, LinkId, SessionId};
use crate::types::{Attach, DeliveryState, SequenceNo};

use super::transport::Transport;
use super::Error;

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
}

impl Delivery {
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

/// What a receiving link holds for its handle.
pub(crate) struct RecvQueue {
    pub(crate) queue: VecDeque<Delivery>,
    pub(crate) notify: Arc<Notify>,
    /// The credit window kept open (0: the application grants credit itself).
    pub(crate) window: u32,
    pub(crate) end: Option<Error>,
}

/// A link the peer attached, for the application to accept or refuse.
pub(crate) struct Request {
    pub(crate) link: LinkId,
    pub(crate) remote: Box<Attach>,
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
    /// Server connections: links the peer attached, for the application.
    pub(crate) requests: Option<tokio::sync::mpsc::UnboundedSender<Request>>,
    /// The identity SASL authenticated (server side).
    pub(crate) identity: Option<String>,
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
                requests: None,
                identity: None,
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
    /// The error for a command on a connection that has ended.
    pub(crate) fn end_error(&self) -> Option<Error> {
        self.ended.as_ref().map(|e| match e {
            Ok(()) => Error::Closed,
            Err(e) => e.duplicate(),
        })
    }

    /// Hands every engine event to whoever waits for it; `true` if there was any.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.conn.poll_event() {
            any = true;
            self.on_event(e);
        }
        any
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Opened { .. } => self.opened = Some(Ok(())),
            Event::SaslDone { identity, .. } => self.identity = identity,
            Event::SessionBegun { session, by_peer: false } => self.session_news(session, Ok(())),
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
                Some(tx) if tx.send(Request { link, remote }).is_ok() => {}
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
            Event::Delivery { link, delivery_id, tag, payload, settled }
            | Event::Resumed { link, delivery_id, tag, payload, settled, .. } => {
                if let Some(r) = self.receivers.get_mut(&link) {
                    r.queue.push_back(Delivery { link, delivery_id, tag, payload, settled });
                    r.notify.notify_one();
                }
            }
            Event::Disposition { link, delivery_id, settled, state } => {
                let terminal = state.as_ref().is_some_and(DeliveryState::is_outcome);
                if !settled && terminal {
                    // The receiver settles second (rcv-settle-mode second): settle now.
                    let _ = self.conn.disposition(link, delivery_id, None, true, state.clone());
                }
                if settled || terminal {
                    if let Some(tx) = self.outcomes.remove(&(link, delivery_id.0)) {
                        let outcome =
                            state.unwrap_or(DeliveryState::Accepted(crate::types::Accepted {}));
                        let _ = tx.send(Ok(outcome));
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
            Event::SessionBegun { by_peer: true, .. }
            | Event::LinkAttached { by_peer: true, .. }
            | Event::BeginRequested { .. }
            | Event::Credit { .. }
            | Event::Aborted { .. }
            | Event::RemoteClose { .. } => {}
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
        self.live.remove(&link);
        self.detached.insert(link, why);
    }
}

/// Drives the connection until it has ended and its last bytes are written.
pub(crate) async fn drive(inner: Arc<Inner>, io: Transport) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();
    let mut written = 0usize;
    let mut eof = false;
    loop {
        let (deadline, ended, can_read) = {
            let mut s = inner.lock();
            if s.dispatch() {
                inner.changed.notify_waiters();
            }
            if written == out.len() {
                out.clear();
                written = 0;
                s.conn.poll_transmit(&mut out);
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
            r = wr.write(&out[written..]), if written < out.len() => match r {
                Ok(n) if n > 0 => {
                    written += n;
                    // Over WebSocket a flush sends what was written as one message.
                    if written == out.len() && wr.flush().await.is_err() {
                        transport_gone(&inner, &mut out, &mut written);
                    }
                }
                _ => transport_gone(&inner, &mut out, &mut written),
            },
            r = read_more(&mut rd, &mut rbuf), if can_read => match r {
                Ok(0) | Err(_) => {
                    eof = true;
                    inner.lock().conn.handle_eof(Instant::now());
                }
                Ok(_) => {
                    let data = rbuf.split().freeze();
                    inner.lock().conn.handle_input_bytes(data, Instant::now());
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
}

/// The transport failed while writing: nothing more can be sent or received.
fn transport_gone(inner: &Inner, out: &mut Vec<u8>, written: &mut usize) {
    out.clear();
    *written = 0;
    inner.lock().conn.handle_eof(Instant::now());
}

async fn read_more(
    rd: &mut tokio::io::ReadHalf<Transport>,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    rd.read_buf(buf).await
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

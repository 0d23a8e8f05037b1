//! An embedded broker: a local AMQP 1.0 peer for tests, demos and investigation, built on
//! the same engine and [`Listener`] as everything else in the crate. It is not a
//! production broker: everything is in memory and nothing survives a restart. See
//! `docs/broker.md`.
//!
//! ```text
//!   Broker::serve(listener) ─► accept ─► (own task) establish ─► next_link
//!       peer sender   ─► accept_receiver (credit window) ─► store in the queue, settle
//!       peer receiver ─► accept_sender ─► consumer task: credit + a message ─► send,
//!                                          outcome ─► remove / re-queue / dead-letter
//! ```
//!
//! - Queues are named by address and made on first use, by a sender or a receiver.
//!   Consumers on one queue compete: each message goes to one of them.
//! - A dynamic terminus (`dynamic: true`, no address) gets a new queue at an address under
//!   [`DYNAMIC_PREFIX`], deleted when the link that asked for it goes.
//! - Outcomes: `accepted` removes the message, `released` puts it back at the front,
//!   `modified` too (counting `delivery-failed` in the header's `delivery-count`, and
//!   keeping it from that link with `undeliverable-here`), `rejected` moves it to the
//!   address's dead-letter queue ([`dead_letter_address`]). Deliveries a consumer leaves
//!   unsettled when its link or connection goes are put back.
//! - Settle modes: a receiver that asks for `snd-settle-mode` settled gets pre-settled
//!   messages (gone once sent); others get unsettled ones. `rcv-settle-mode` second is
//!   honoured both ways.
//! - Transactions (part 4): the engine's coordinator answers controllers; messages sent in
//!   a transaction reach their queue on commit, and outcomes given in one take effect on
//!   commit (on rollback the message is available again, its delivery-count raised).
//!   Transactional acquisition (4.4.3) is not offered: the coordinator does not announce
//!   it, and a link whose flow asks for it (a `txn-id` property) is detached with
//!   `amqp:not-implemented`.
//!
//! ```no_run
//! # async fn run() -> Result<(), amqpwire::runtime::Error> {
//! use amqpwire::broker::{listen_options, Broker};
//! use amqpwire::runtime::Listener;
//!
//! let broker = Broker::new();
//! let listener = Listener::bind("amqp://127.0.0.1:5672", listen_options(&[], None, None)).await?;
//! broker.serve(listener).await
//! # }
//! ```

mod auth;
mod cbs;
mod link;
mod queue;
mod txn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::connection::{LinkId, LinkOptions};
use crate::runtime::transport::TransportError;
use crate::runtime::{Error, LinkRequest, Listener, ServerConnection, ServerEvent};
use crate::types::{condition, AttachSource, AttachTarget, Error as AmqpError, Role};

pub use auth::listen_options;
use queue::Queue;
use txn::Txns;

/// Dynamic nodes get addresses under this prefix (`$dynamic/7-3f09c2a1`). Attaching to an
/// address under it that no dynamic node has (or has any longer) is refused with
/// `amqp:not-found`.
pub const DYNAMIC_PREFIX: &str = "$dynamic/";

/// The suffix of a dead-letter queue's address: messages rejected from `orders` go to
/// `orders/$deadletter`.
pub const DEAD_LETTER_SUFFIX: &str = "/$deadletter";

/// The credit each link on which a client sends is kept at (refilled as messages are
/// stored, never waiting for them to be consumed). A window of 100 held an unsettled sender
/// to about 50 messages per round trip, less than half the rate 1,000 allows; the bytes
/// taken but not yet stored stay bounded by the runtime's receive budget whatever the
/// window.
const CREDIT_WINDOW: u32 = 1000;

/// The address of `address`'s dead-letter queue.
pub fn dead_letter_address(address: &str) -> String {
    format!("{address}{DEAD_LETTER_SUFFIX}")
}

/// The embedded broker. Cloning gives another handle to the same broker (queues and
/// counters are shared), so one broker can serve several listeners.
#[derive(Clone, Debug, Default)]
pub struct Broker {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// Keys that `$cbs` put-tokens are checked against (none: any SAS token).
    cbs_keys: Vec<(String, crate::azure::SasKey)>,
    /// Consumer link ids and dynamic node numbers.
    next_id: AtomicU64,
    connections: AtomicU64,
    open_connections: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    dead_lettered: AtomicU64,
    discarded: AtomicU64,
}

/// The broker's counters since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections established (transport handshakes and SASL done).
    pub connections: u64,
    /// Connections established and not yet ended.
    pub open_connections: u64,
    /// Messages stored.
    pub messages_in: u64,
    /// Messages delivered for good: accepted, or sent pre-settled.
    pub messages_out: u64,
    /// Messages rejected by a consumer and moved to a dead-letter queue.
    pub dead_lettered: u64,
    /// Messages rejected from a dead-letter queue, which are dropped.
    pub discarded: u64,
}

/// What a queue holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// Messages waiting for a consumer.
    pub depth: usize,
    /// Messages sent to a consumer and not yet settled.
    pub in_flight: usize,
    /// Consumer links attached.
    pub consumers: usize,
    /// Whether it is a dynamic node.
    pub dynamic: bool,
}

/// A message on a dead-letter queue, and why its consumer rejected it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The encoded message, with the annotations of [`DeadLetter::message`].
    pub payload: Bytes,
    /// The error of the `rejected` outcome, if it had one.
    pub error: Option<AmqpError>,
}

impl DeadLetter {
    /// Decodes the message. Its message annotations carry the rejection too:
    /// `x-opt-dead-letter-condition` (a symbol) and `x-opt-dead-letter-description` (a
    /// string), when the error had them.
    pub fn message(&self) -> Result<crate::message::Message, Error> {
        crate::message::Message::decode(&self.payload).map_err(Error::Decode)
    }
}

impl Broker {
    /// A broker with no queues.
    pub fn new() -> Self {
        Self::default()
    }

    /// A broker whose `$cbs` node checks put-tokens against these named keys (a token's
    /// `skn` names its key): signature, expiry and audience. Without keys any well-formed
    /// SAS token is accepted. Tokens are never stored or passed on either way.
    pub fn with_cbs_keys(keys: Vec<(String, crate::azure::SasKey)>) -> Self {
        Self { inner: Arc::new(Shared { cbs_keys: keys, ..Shared::default() }) }
    }

    /// Accepts connections on `listener` until the task running it is dropped. Each
    /// connection is set up (TLS, WebSocket, SASL) on a task of its own, so a slow
    /// handshake holds up no one, and its links are answered by the broker. Failures to
    /// accept (a connection reset before it was taken, no file descriptors left) are
    /// retried after a short pause; another kind of error ends the loop.
    pub async fn serve(&self, listener: Listener) -> Result<(), Error> {
        // Said once per spell of failures (no file descriptors left, say), not per retry.
        let mut failing = false;
        loop {
            match listener.accept().await {
                Ok(incoming) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(endpoint = %listener.endpoint(), "accepting connections again");
                    }
                    let broker = self.clone();
                    tokio::spawn(async move {
                        if let Ok(conn) = incoming.establish().await {
                            broker.serve_connection(conn).await;
                        }
                    });
                }
                Err(Error::Transport(TransportError::Io(e))) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(
                            endpoint = %listener.endpoint(),
                            "cannot accept connections ({e}); retrying every 50 ms"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Answers the links of one established connection until it ends (for connections
    /// set up elsewhere, such as over an in-memory transport).
    pub async fn serve_connection(&self, mut conn: ServerConnection) {
        let s = &self.inner;
        s.connections.fetch_add(1, Ordering::Relaxed);
        s.open_connections.fetch_add(1, Ordering::Relaxed);
        let mut links: HashMap<LinkId, tokio::task::JoinHandle<()>> = HashMap::new();
        let txns = Arc::new(Txns::default());
        // This connection's `$cbs` answers go here, and only here.
        let cbs_reply = Arc::new(crate::azure::cbs::ReplyLink::default());
        while let Some(event) = conn.next().await {
            let request = match event {
                ServerEvent::Link(request) => request,
                ServerEvent::TxnEnded(end) => {
                    // On a task of its own: the link tasks may still have to take in the
                    // transaction's last work, and links go on being answered meanwhile.
                    let (broker, txns) = (self.clone(), Arc::clone(&txns));
                    tokio::spawn(async move {
                        let work = txns.take(&end.txn_id, end.work).await;
                        broker.end_transaction(work, end.commit);
                        let _ = end.complete(Ok(()));
                    });
                    continue;
                }
            };
            links.retain(|_, task| !task.is_finished());
            // The engine gives an ended link's channel and handle to a later link (with an
            // id of its own): the task of the earlier one has seen it end (or is about
            // to); let it put its messages back first.
            let id = request.link();
            let earlier: Vec<LinkId> = links
                .keys()
                .copied()
                .filter(|l| (l.session.0, l.handle) == (id.session.0, id.handle))
                .collect();
            for l in earlier {
                if let Some(task) = links.remove(&l) {
                    let _ = task.await;
                }
            }
            if let Some(task) = self.answer(request, &txns, &cbs_reply) {
                links.insert(id, task);
            }
        }
        s.open_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// The number of messages waiting on `address` (0 for no such queue).
    pub fn queue_depth(&self, address: &str) -> usize {
        self.queue_info(address).map_or(0, |q| q.depth)
    }

    /// What the queue at `address` holds; `None` if there is no such queue.
    pub fn queue_info(&self, address: &str) -> Option<QueueInfo> {
        let q = self.lock().get(address).cloned()?;
        let (depth, in_flight, consumers) = q.counts();
        Some(QueueInfo { depth, in_flight, consumers, dynamic: q.dynamic })
    }

    /// The addresses of every queue, sorted.
    pub fn queues(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// The messages waiting on `address`'s dead-letter queue
    /// ([`dead_letter_address`]), oldest first, with the errors they were rejected with.
    pub fn dead_letters(&self, address: &str) -> Vec<DeadLetter> {
        let q = self.lock().get(&dead_letter_address(address)).cloned();
        q.map(|q| q.snapshot())
            .unwrap_or_default()
            .into_iter()
            .map(|(payload, error)| DeadLetter { payload, error })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let s = &self.inner;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections: n(&s.connections),
            open_connections: n(&s.open_connections),
            messages_in: n(&s.messages_in),
            messages_out: n(&s.messages_out),
            dead_lettered: n(&s.dead_lettered),
            discarded: n(&s.discarded),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Queue>>> {
        self.inner.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The queue at `address`, made if need be (but never under [`DYNAMIC_PREFIX`]).
    fn queue(&self, address: &str) -> Result<Arc<Queue>, AmqpError> {
        let mut queues = self.lock();
        if let Some(q) = queues.get(address) {
            return Ok(Arc::clone(q));
        }
        if address.starts_with(DYNAMIC_PREFIX) {
            return Err(AmqpError::new(
                condition::NOT_FOUND,
                format!("no dynamic node {address:?} (it may have been deleted)"),
            ));
        }
        let q = Arc::new(Queue::new(address.to_owned(), false));
        queues.insert(address.to_owned(), Arc::clone(&q));
        Ok(q)
    }

    /// A new dynamic node.
    fn dynamic_queue(&self) -> Arc<Queue> {
        let address = format!(
            "{DYNAMIC_PREFIX}{}-{:08x}",
            self.next_id(),
            crate::runtime::random::random_u64() as u32
        );
        let q = Arc::new(Queue::new(address.clone(), true));
        self.lock().insert(address, Arc::clone(&q));
        q
    }

    /// Deletes a dynamic node.
    fn delete(&self, q: &Queue) {
        self.lock().remove(&q.address);
        q.delete();
    }

    /// Answers a link the peer attached: a queue to store into or consume from, or a
    /// refusal. Returns the link's task.
    fn answer(
        &self,
        request: LinkRequest,
        txns: &Arc<Txns>,
        cbs_reply: &Arc<crate::azure::cbs::ReplyLink>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let r = &request.remote;
        // The terminus on our side of the link: the target when the peer sends.
        let (address, dynamic) = if r.role == Role::SENDER {
            match &r.target {
                Some(AttachTarget::Target(t)) => {
                    (t.address.as_deref().filter(|a| !a.is_empty()), t.dynamic)
                }
                Some(AttachTarget::Coordinator(_)) => {
                    return refuse(
                        request,
                        condition::NOT_IMPLEMENTED,
                        "this connection has no transaction coordinator (the listener's \
                         engine configuration has no coordinator)",
                    );
                }
                Some(AttachTarget::Other(_)) => {
                    return refuse(request, condition::NOT_IMPLEMENTED, "unknown target type");
                }
                None => {
                    return refuse(request, condition::INVALID_FIELD, "the attach has no target")
                }
            }
        } else {
            match &r.source {
                Some(AttachSource::Source(s)) => {
                    (s.address.as_deref().filter(|a| !a.is_empty()), s.dynamic)
                }
                Some(AttachSource::Other(_)) => {
                    return refuse(request, condition::NOT_IMPLEMENTED, "unknown source type");
                }
                None => {
                    return refuse(request, condition::INVALID_FIELD, "the attach has no source")
                }
            }
        };
        // `$` addresses name service nodes, never queues: only `$cbs` is served (and the
        // dynamic nodes' own prefix).
        if let Some(a) = address.filter(|a| a.starts_with('$') && !a.starts_with(DYNAMIC_PREFIX)) {
            if a == crate::azure::cbs::CBS_NODE {
                let options = answer_options(r, a);
                let (broker, reply) = (self.clone(), Arc::clone(cbs_reply));
                return Some(tokio::spawn(async move {
                    let keys = &broker.inner.cbs_keys;
                    let judge = |put: &_| cbs::judge(keys, put, std::time::SystemTime::now());
                    crate::azure::cbs::serve_node(request, options, &reply, judge).await;
                }));
            }
            let why = format!(
                "{a:?} is a reserved address (`$` names service nodes, not queues); this broker \
                 has $cbs and {DYNAMIC_PREFIX}… nodes only"
            );
            return refuse(request, condition::NOT_FOUND, &why);
        }
        let queue = match (dynamic, address) {
            (true, _) => self.dynamic_queue(),
            (false, Some(a)) => match self.queue(a) {
                Ok(q) => q,
                Err(e) => {
                    let why = e.description.clone().unwrap_or_default();
                    return refuse(request, e.condition.as_str(), &why);
                }
            },
            (false, None) => {
                let which = if r.role == Role::SENDER { "target" } else { "source" };
                let why = format!("the {which} has neither an address nor dynamic: true");
                return refuse(request, condition::INVALID_FIELD, &why);
            }
        };
        let options = answer_options(r, &queue.address);
        let owned = dynamic.then(|| Arc::clone(&queue));
        let task = if r.role == Role::SENDER {
            // The whole window up front: clients that send only on their first grant must
            // not stall at the runtime's cautious first grant.
            let granted =
                request.accept_receiver_granting(Some(options), CREDIT_WINDOW, CREDIT_WINDOW);
            granted.ok().map(|rx| {
                let txns = Arc::clone(txns);
                tokio::spawn(link::store(self.clone(), Arc::clone(&queue), rx, owned.clone(), txns))
            })
        } else {
            request.accept_sender(Some(options)).ok().map(|tx| {
                let id = self.next_id();
                let txns = Arc::clone(txns);
                tokio::spawn(link::consume(
                    self.clone(),
                    Arc::clone(&queue),
                    tx,
                    id,
                    owned.clone(),
                    txns,
                ))
            })
        };
        if task.is_none() {
            if let Some(q) = owned {
                self.delete(&q);
            }
        }
        task
    }
}

/// Refuses a link (2.6.3); no task.
fn refuse(
    request: LinkRequest,
    condition: &str,
    description: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    tracing::info!(name = %request.remote.name, condition, "link refused: {description}");
    let _ = request.refuse(AmqpError::new(condition, description));
    None
}

/// Our attach for the peer's `remote`: the other role, the peer's settle modes, its
/// termini echoed with our terminus naming the queue (and no filter, which the broker
/// does not apply; moving, not copying).
fn answer_options(remote: &crate::types::Attach, address: &str) -> LinkOptions {
    let mut source = remote.source.clone();
    let mut target = remote.target.clone();
    let role = if remote.role == Role::SENDER {
        if let Some(AttachTarget::Target(t)) = &mut target {
            t.address = Some(address.into());
        }
        Role::RECEIVER
    } else {
        if let Some(AttachSource::Source(s)) = &mut source {
            s.address = Some(address.into());
            s.filter = None;
            s.distribution_mode = None;
        }
        Role::SENDER
    };
    let mut o = LinkOptions::receiver(&remote.name, address);
    o.role = role;
    o.source = source;
    o.target = target;
    o.snd_settle_mode = remote.snd_settle_mode;
    o.rcv_settle_mode = remote.rcv_settle_mode;
    o
}

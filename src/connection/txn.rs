//! Transactions (part 4): the coordinator a peer's controller attaches to, and what a
//! controller sends and reads.
//!
//! ```text
//!  controller (client)                              coordinator (this engine, server side)
//!  attach  target: coordinator{local-transactions} ─►  answered by the engine, credit granted
//!  transfer  amqp-value: declare                    ─►  txn-id allocated
//!            ◄─ disposition  settled, declared{txn-id}       Event::TxnDeclared
//!  transfer  state: transactional-state{txn-id}     ─►  Event::Delivery { state, .. }:
//!  (on any link: the work)                                the application enlists the work
//!  disposition state: transactional-state{txn-id,accepted} ─► (retirement, on its senders)
//!  transfer  amqp-value: discharge{txn-id, fail}    ─►  Event::TxnEnded { commit, .. }:
//!                                                         the application commits or rolls back,
//!            ◄─ disposition  settled, accepted | rejected{error} ─ then Connection::complete_discharge
//! ```
//!
//! With [`Config::coordinator`](super::Config::coordinator) set, the engine answers
//! links whose target is a `coordinator` itself (they never reach the application as
//! [`Event::AttachRequested`]), reads `declare` and
//! `discharge`, and keeps the rules of 4.2 to 4.4:
//!
//! - a discharge or work naming a transaction it does not know is refused with
//!   `amqp:transaction:unknown-id`; one that timed out, with `amqp:transaction:timeout`;
//! - a transaction the application marked as failed ([`Connection::fail_transaction`])
//!   cannot commit: its discharge rolls back and is refused with
//!   `amqp:transaction:rollback`;
//! - a transaction not discharged within [`CoordinatorConfig::timeout`] rolls back;
//! - transactions still open when their control link goes (detached, its session ended,
//!   the connection ended) roll back.
//!
//! Each end of a transaction is one [`Event::TxnEnded`], and it
//! comes before the event of what caused it (a link's detach, a session's end, the
//! connection's end), so an application that acts on events in order never sees work
//! outlive its transaction.

use std::collections::VecDeque;

use super::vec_map::VecMap;
use std::time::Duration;

use bytes::Bytes;

use super::{Connection, Event, LinkId, UsageError};
use crate::codec::{DecodeOptions, Symbol, Value};
use crate::inspect::hex;
use crate::message::{Body, Message, Payload};
use crate::time::Instant;
use crate::types::{
    condition, Accepted, AttachTarget, Composite, Coordinator as CoordinatorTarget, Declare,
    Declared, DeliveryState, Discharge, Error, Rejected, SequenceNo, TransactionalState,
};

/// The capability of a coordinator with local transactions (4.5.7).
pub const LOCAL_TRANSACTIONS: &str = "amqp:local-transactions";
/// The capability of a coordinator with distributed transactions (4.5.7).
pub const DISTRIBUTED_TRANSACTIONS: &str = "amqp:distributed-transactions";
/// The capability of a coordinator that can promote local transactions (4.5.7).
pub const PROMOTABLE_TRANSACTIONS: &str = "amqp:promotable-transactions";
/// Several transactions may be open on one session at once (4.5.7).
pub const MULTI_TXNS_PER_SSN: &str = "amqp:multi-txns-per-ssn";
/// One transaction may take work from several sessions (4.5.7).
pub const MULTI_SSNS_PER_TXN: &str = "amqp:multi-ssns-per-txn";

/// How many timed-out transaction ids are remembered, so that a late discharge or late
/// work hears `amqp:transaction:timeout` rather than `unknown-id`.
const EXPIRED_KEPT: usize = 256;

/// How the engine's transaction coordinator behaves. Made with
/// [`CoordinatorConfig::default`], then changed field by field (it has a private field).
#[derive(Clone, Debug, PartialEq)]
pub struct CoordinatorConfig {
    /// The capabilities announced in the coordinator target of our attach: local
    /// transactions, several per session, several sessions per transaction (the engine's
    /// transactions belong to the connection, so work may come on any of its sessions).
    pub capabilities: Vec<Symbol>,
    /// A transaction not discharged this long after it was declared rolls back
    /// (`amqp:transaction:timeout`); `None`: no limit.
    pub timeout: Option<Duration>,
    /// How many transactions may be open at once on the connection; a declare beyond it is
    /// refused with `amqp:resource-limit-exceeded`.
    pub max_open: usize,
    /// The credit kept granted on each control link.
    pub credit: u32,
    /// The coordinator's code, reached through the configuration (see [`Hooks`]).
    hooks: HooksRef,
}

/// What the engine reaches for of its coordinator on paths every connection runs (a
/// whole delivery on a control link, transactional work, its timers, links going). It is
/// reached through this trait object, which only [`CoordinatorConfig::default`] makes, so
/// that a program that never makes a coordinator links none of it: the control messages'
/// decoder and the transactions' bookkeeping (the browser client's module is about 16 KB
/// smaller for it).
trait Hooks: Sync {
    fn on_control(
        &self,
        c: &mut Connection,
        link: LinkId,
        delivery_id: SequenceNo,
        settled: bool,
        payload: &Bytes,
    );
    fn enlist(&self, t: &mut TxnState, id: &[u8]) -> Result<(), (&'static str, String)>;
    fn next_deadline(&self, t: &TxnState) -> Option<Instant>;
    fn timeouts(&self, c: &mut Connection, now: Instant);
    fn sweep(&self, c: &mut Connection, ended: bool) -> Vec<Event>;
}

/// The engine's coordinator, behind [`Hooks`].
struct Coordinator;

impl Hooks for Coordinator {
    fn on_control(
        &self,
        c: &mut Connection,
        link: LinkId,
        delivery_id: SequenceNo,
        settled: bool,
        payload: &Bytes,
    ) {
        c.control_delivery(link, delivery_id, settled, payload);
    }
    fn enlist(&self, t: &mut TxnState, id: &[u8]) -> Result<(), (&'static str, String)> {
        t.enlist(id)
    }
    fn next_deadline(&self, t: &TxnState) -> Option<Instant> {
        t.next_deadline()
    }
    fn timeouts(&self, c: &mut Connection, now: Instant) {
        c.expire_transactions(now);
    }
    fn sweep(&self, c: &mut Connection, ended: bool) -> Vec<Event> {
        c.sweep_transactions(ended)
    }
}

/// The [`Hooks`] a configuration holds.
#[derive(Clone, Copy)]
struct HooksRef(&'static dyn Hooks);

impl std::fmt::Debug for HooksRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Coordinator")
    }
}

impl PartialEq for HooksRef {
    /// Every configuration holds the same hooks.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            capabilities: vec![
                LOCAL_TRANSACTIONS.into(),
                MULTI_TXNS_PER_SSN.into(),
                MULTI_SSNS_PER_TXN.into(),
            ],
            timeout: None,
            max_open: 1024,
            credit: 100,
            hooks: HooksRef(&Coordinator),
        }
    }
}

/// Why a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnEndCause {
    /// The controller discharged it; the engine answers the discharge once the application
    /// calls [`Connection::complete_discharge`].
    Discharge,
    /// The controller asked to commit a transaction the application had marked as failed:
    /// it rolls back, and the discharge is refused with `amqp:transaction:rollback` once
    /// the application calls [`Connection::complete_discharge`].
    RollbackOnly,
    /// It was not discharged within [`CoordinatorConfig::timeout`].
    Timeout,
    /// Its control link went (detached, its session ended, or the connection ended)
    /// before it was discharged.
    ControlLinkGone,
}

impl TxnEndCause {
    /// Whether the engine waits for [`Connection::complete_discharge`] to answer the
    /// controller.
    pub fn awaits_answer(self) -> bool {
        matches!(self, Self::Discharge | Self::RollbackOnly)
    }
}

/// An open transaction.
#[derive(Debug)]
struct Txn {
    /// The control link it was declared on (an id names one link only, never a later one
    /// on its handle).
    link: LinkId,
    deadline: Option<Instant>,
    /// Marked as failed by the application: it can only roll back.
    failed: Option<Error>,
    /// Pieces of work handed to the application so far (transactional deliveries and
    /// dispositions), for [`Event::TxnEnded`]'s `work`.
    work: u32,
}

/// A discharge waiting for the application's answer.
#[derive(Debug)]
struct Pending {
    /// The control link the discharge came on.
    link: LinkId,
    delivery_id: SequenceNo,
    settled: bool,
    /// The refusal due whatever the application answers (a rollback-only transaction).
    forced: Option<Error>,
}

/// The coordinator's state.
#[derive(Debug)]
pub(crate) struct TxnState {
    cfg: CoordinatorConfig,
    next_txn: u64,
    open: VecMap<Bytes, Txn>,
    pending: VecMap<Bytes, Pending>,
    expired: VecDeque<Bytes>,
}

impl TxnState {
    pub(crate) fn new(cfg: CoordinatorConfig) -> Self {
        Self {
            cfg,
            next_txn: 1,
            open: VecMap::new(),
            pending: VecMap::new(),
            expired: VecDeque::new(),
        }
    }

    /// The earliest time-out of an open transaction.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.open.values().filter_map(|t| t.deadline).min()
    }

    fn expire(&mut self, id: Bytes) {
        if self.expired.len() == EXPIRED_KEPT {
            self.expired.pop_front();
        }
        self.expired.push_back(id);
    }

    /// Why work or a discharge naming `id` cannot go on, if it cannot.
    fn refusal(&self, id: &[u8]) -> Option<Error> {
        self.refusal_parts(id).map(|(c, why)| Error::new(c, why))
    }

    fn refusal_parts(&self, id: &[u8]) -> Option<(&'static str, String)> {
        match self.open.get(id) {
            Some(t) => t.failed.as_ref().map(|why| {
                (condition::TRANSACTION_ROLLBACK, rollback_words(why.description.as_deref()))
            }),
            None if self.expired.iter().any(|e| e == id) => Some((
                condition::TRANSACTION_TIMEOUT,
                format!("transaction {} timed out and was rolled back", hex(id)),
            )),
            None => Some((
                condition::TRANSACTION_UNKNOWN_ID,
                format!("no transaction {} is open on this connection", hex(id)),
            )),
        }
    }

    /// Counts a piece of work into transaction `id`, or says why it cannot take it.
    fn enlist(&mut self, id: &[u8]) -> Result<(), (&'static str, String)> {
        if let Some(refused) = self.refusal_parts(id) {
            return Err(refused);
        }
        if let Some(t) = self.open.get_mut(id) {
            t.work = t.work.saturating_add(1);
        }
        Ok(())
    }
}

fn unknown_id(id: &[u8]) -> Error {
    Error::new(
        condition::TRANSACTION_UNKNOWN_ID,
        format!("no transaction {} is open on this connection", hex(id)),
    )
}

fn rollback_words(why: Option<&str>) -> String {
    match why {
        Some(why) => format!("the transaction was rolled back: {why}"),
        None => "the transaction was rolled back".to_owned(),
    }
}

fn rollback_error(why: Option<&str>) -> Error {
    Error::new(condition::TRANSACTION_ROLLBACK, rollback_words(why))
}

/// Whether an attach's target is a transaction coordinator.
pub(crate) fn is_coordinator(target: Option<&AttachTarget>) -> bool {
    matches!(target, Some(AttachTarget::Coordinator(_)))
}

/// What a control message asks.
enum Control {
    Declare(Declare),
    Discharge(Discharge),
}

/// Reads a control message: an amqp-value body holding a declare or a discharge (4.2, 4.3).
fn read_control(payload: &Bytes) -> Result<Control, Error> {
    let bad = |why: String| Error::new(condition::DECODE_ERROR, why);
    let m = Message::decode(payload).map_err(|e| bad(format!("the control message: {e}")))?;
    let Body::Value(v) = &m.body else {
        return Err(bad(
            "a control message's body is one amqp-value: a declare or a discharge".into()
        ));
    };
    let bytes = v.to_vec();
    let (code, symbol) = match v {
        Value::Described(d) => match &d.descriptor {
            Value::Ulong(c, _) => (Some(*c), None),
            Value::Symbol(s, _) => (None, Some(s.as_str())),
            _ => (None, None),
        },
        _ => (None, None),
    };
    if code == Some(Declare::CODE) || symbol == Some(Declare::SYMBOL) {
        return Declare::decode(&bytes, DecodeOptions::STRICT)
            .map(Control::Declare)
            .map_err(|e| bad(format!("the declare: {e}")));
    }
    if code == Some(Discharge::CODE) || symbol == Some(Discharge::SYMBOL) {
        return Discharge::decode(&bytes, DecodeOptions::STRICT)
            .map(Control::Discharge)
            .map_err(|e| bad(format!("the discharge: {e}")));
    }
    Err(Error::new(
        condition::NOT_IMPLEMENTED,
        format!("a control message carries a declare or a discharge, not a {}", v.type_name()),
    ))
}

impl Connection {
    // ----- the coordinator: commands -----

    /// Answers a discharge the application was told of by [`Event::TxnEnded`] (with a
    /// cause that [awaits an answer](TxnEndCause::awaits_answer)), once it has committed
    /// or rolled back the transaction's work: `Ok` accepts the discharge; `Err` refuses it
    /// with that error (`amqp:transaction:rollback`, say, for a commit that failed). A
    /// rollback-only transaction's discharge is refused with `amqp:transaction:rollback`
    /// whatever the answer. If the control link has gone meanwhile, nothing is sent.
    pub fn complete_discharge(
        &mut self,
        txn_id: &[u8],
        result: Result<(), Error>,
    ) -> Result<(), UsageError> {
        let t = self.txn.as_mut().ok_or(UsageError::UnknownTransaction)?;
        let p = t.pending.remove(txn_id).ok_or(UsageError::UnknownTransaction)?;
        let (link, id) = (p.link, p.delivery_id);
        let state = match (p.forced, result) {
            (Some(e), _) | (None, Err(e)) => {
                // Cut to fit the peer's max-frame-size, as a close's error is: a refusal
                // that cannot be sent would leave the controller waiting for ever.
                let e = self.fitted_error_in(e, |e| {
                    crate::types::Performative::Disposition(crate::types::Disposition {
                        role: crate::types::Role::RECEIVER,
                        first: id,
                        last: None,
                        settled: true,
                        state: Some(DeliveryState::Rejected(Rejected { error: Some(e) })),
                        batchable: false,
                    })
                });
                DeliveryState::Rejected(Rejected { error: Some(e) })
            }
            (None, Ok(())) => DeliveryState::Accepted(Accepted {}),
        };
        if !p.settled && self.is_control_link(link) {
            // Sending can only fail on a link that has gone, which was checked, or after
            // our close (the connection is going).
            let _ = self.disposition(link, id, None, true, Some(state));
        }
        Ok(())
    }

    /// Marks an open transaction as failed (work the application could not take into it,
    /// say): it can only roll back, and a discharge asking to commit it is refused with
    /// `amqp:transaction:rollback` carrying `error`'s description.
    pub fn fail_transaction(&mut self, txn_id: &[u8], error: Error) -> Result<(), UsageError> {
        let t = self.txn.as_mut().ok_or(UsageError::UnknownTransaction)?;
        let txn = t.open.get_mut(txn_id).ok_or(UsageError::UnknownTransaction)?;
        txn.failed.get_or_insert(error);
        Ok(())
    }

    /// Whether work may be enlisted in transaction `txn_id` now (a transactional transfer
    /// or disposition that named it): `Err` with the error to refuse the work with
    /// (`amqp:transaction:unknown-id`, `…:timeout`, or `…:rollback` for one marked as
    /// failed). Without a coordinator every id is unknown.
    pub fn check_transaction(&self, txn_id: &[u8]) -> Result<(), Error> {
        match &self.txn {
            None => Err(unknown_id(txn_id)),
            Some(t) => t.refusal(txn_id).map_or(Ok(()), Err),
        }
    }

    /// The ids of the transactions open on this connection's coordinator.
    pub fn open_transactions(&self) -> Vec<Bytes> {
        self.txn.as_ref().map(|t| t.open.keys().cloned().collect()).unwrap_or_default()
    }

    // ----- the controller -----

    /// Sender: sends one delivery like [`Connection::send_payload`], as work of
    /// transaction `txn_id` (4.4.1: the transfer's state is `transactional-state`).
    pub fn send_transactional(
        &mut self,
        link: LinkId,
        tag: Bytes,
        payload: &Payload,
        settled: bool,
        txn_id: Bytes,
    ) -> Result<SequenceNo, UsageError> {
        let state = transactional(txn_id, None);
        self.send_with(link, tag, payload.len(), settled, false, Some(state), |enc, ch, t, out| {
            enc.encode_payload_transfer(ch, t, payload, out)
        })
    }

    // ----- the coordinator: hooks -----

    /// Whether `link` is a control link still attached (an id names one link only, never
    /// a later one on its handle).
    fn is_control_link(&self, link: LinkId) -> bool {
        self.link_ref(link).is_some_and(|l| l.state == super::LinkState::Attached && l.control)
    }

    /// Answers a peer's attach to our coordinator: the coordinator target with our
    /// capabilities, and credit for control messages. `false` unless the attach asks
    /// for one and this connection has a coordinator.
    pub(super) fn coordinator_answer(&mut self, options: &mut super::LinkOptions) -> bool {
        let Some(t) = self.txn.as_mut() else { return false };
        if options.role != crate::types::Role::RECEIVER || !is_coordinator(options.target.as_ref())
        {
            return false;
        }
        options.target = Some(AttachTarget::Coordinator(CoordinatorTarget {
            capabilities: t.cfg.capabilities.clone(),
        }));
        true
    }

    /// Grants the control link its credit (after our attach, and as control messages use
    /// it up).
    pub(super) fn control_credit(&mut self, link: LinkId) {
        let Some(credit) = self.txn.as_ref().map(|t| t.cfg.credit.max(1)) else { return };
        let Some(l) = self.link_ref(link) else { return };
        if l.link_credit > credit / 2 {
            return;
        }
        // Only fails for a link not attached.
        let _ = self.flow(link, credit, false);
    }

    /// The coordinator's hooks, when there is a coordinator.
    fn hooks(&self) -> Option<&'static dyn Hooks> {
        self.txn.as_ref().map(|t| t.cfg.hooks.0)
    }

    /// A whole delivery on a control link: a declare or a discharge (to the coordinator's
    /// [`Hooks`]).
    pub(super) fn on_control(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        settled: bool,
        payload: &Bytes,
    ) {
        if let Some(h) = self.hooks() {
            h.on_control(self, link, delivery_id, settled, payload);
        }
    }

    /// The earliest time-out of an open transaction.
    pub(super) fn txn_deadline(&self) -> Option<Instant> {
        self.txn.as_ref().and_then(|t| t.cfg.hooks.0.next_deadline(t))
    }

    /// Rolls back transactions that timed out by `now` (through the [`Hooks`]).
    pub(super) fn txn_timeouts(&mut self, now: Instant) {
        if let Some(h) = self.hooks() {
            h.timeouts(self, now);
        }
    }

    /// A whole delivery on a control link: a declare or a discharge.
    fn control_delivery(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        settled: bool,
        payload: &Bytes,
    ) {
        self.control_credit(link);
        if !self.is_control_link(link) {
            return;
        }
        let now = self.now;
        let Some(t) = self.txn.as_mut() else { return };
        let answer = match read_control(payload) {
            Err(e) => Some(DeliveryState::Rejected(Rejected { error: Some(e) })),
            Ok(Control::Declare(d)) => {
                if d.global_id.is_some() {
                    let e = Error::new(
                        condition::NOT_IMPLEMENTED,
                        "distributed transactions (a declare with a global-id) are not supported",
                    );
                    Some(DeliveryState::Rejected(Rejected { error: Some(e) }))
                } else if t.open.len() + t.pending.len() >= t.cfg.max_open {
                    // Discharges the application has not answered yet count too: a peer
                    // cannot grow the coordinator's state past the limit.
                    let e = Error::new(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!(
                            "{} transactions are open or being discharged already",
                            t.open.len() + t.pending.len()
                        ),
                    );
                    Some(DeliveryState::Rejected(Rejected { error: Some(e) }))
                } else {
                    let id = Bytes::copy_from_slice(&t.next_txn.to_be_bytes());
                    t.next_txn += 1;
                    let deadline = t.cfg.timeout.zip(now).and_then(|(d, now)| super::later(now, d));
                    t.open.insert(id.clone(), Txn { link, deadline, failed: None, work: 0 });
                    self.events.push_back(Event::TxnDeclared { link, txn_id: id.clone() });
                    Some(DeliveryState::Declared(Declared { txn_id: id }))
                }
            }
            Ok(Control::Discharge(d)) => match t.open.remove(&d.txn_id) {
                None => {
                    let e = t.refusal(&d.txn_id);
                    Some(DeliveryState::Rejected(Rejected { error: e }))
                }
                Some(txn) => {
                    // 4.3: with fail set, the work is rolled back.
                    let fail = d.fail == Some(true);
                    let rollback_only = !fail && txn.failed.is_some();
                    let forced = rollback_only.then(|| {
                        rollback_error(txn.failed.as_ref().and_then(|e| e.description.as_deref()))
                    });
                    let cause = if rollback_only {
                        TxnEndCause::RollbackOnly
                    } else {
                        TxnEndCause::Discharge
                    };
                    let pending = Pending { link, delivery_id, settled, forced };
                    t.pending.insert(d.txn_id.clone(), pending);
                    self.events.push_back(Event::TxnEnded {
                        txn_id: d.txn_id,
                        commit: !fail && !rollback_only,
                        cause,
                        work: txn.work,
                    });
                    None
                }
            },
        };
        if let Some(state) = answer.filter(|_| !settled) {
            let _ = self.disposition(link, delivery_id, None, true, Some(state));
        }
    }

    /// A whole transactional delivery arrived on one of our receiving links (4.4.1):
    /// `true` to hand it to the application, counted as work of its transaction; `false`
    /// when the transaction cannot take it, and the engine has refused it (rejected with
    /// the transaction error) and said so with [`Event::TxnWorkRefused`].
    pub(super) fn txn_transfer(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        settled: bool,
        state: Option<&DeliveryState>,
    ) -> bool {
        let Some((id, _)) = transaction_of(state) else { return true };
        let verdict = match self.txn.as_mut() {
            Some(t) => t.cfg.hooks.0.enlist(t, id),
            None => Err((
                condition::TRANSACTION_UNKNOWN_ID,
                "no transaction coordinator on this connection".to_owned(),
            )),
        };
        let Err((c, why)) = verdict else { return true };
        let error = Error::new(c, why);
        if !settled {
            let refused = DeliveryState::Rejected(Rejected { error: Some(error.clone()) });
            let _ = self.disposition(link, delivery_id, None, true, Some(refused));
        }
        self.events.push_back(Event::TxnWorkRefused { link, delivery_id, error });
        false
    }

    /// The peer's disposition puts one of our deliveries into a transaction with an outcome
    /// (4.4.2: transactional retirement): counted as work, or the violation that detaches
    /// the link. `prior` is the delivery's state before: repeating the same transactional
    /// state (settling after the discharge, say) is not new work.
    pub(super) fn txn_disposition(
        &mut self,
        prior: Option<&DeliveryState>,
        state: Option<&DeliveryState>,
    ) -> Result<(), super::Violation> {
        let Some((id, Some(_))) = transaction_of(state) else { return Ok(()) };
        if transaction_of(prior).is_some_and(|(before, _)| before == id) {
            return Ok(());
        }
        let verdict = match self.txn.as_mut() {
            Some(t) => t.cfg.hooks.0.enlist(t, id),
            None => Err((
                condition::TRANSACTION_UNKNOWN_ID,
                "no transaction coordinator on this connection".to_owned(),
            )),
        };
        verdict.map_err(|(condition, why)| super::Violation::TransactionWork { condition, why })
    }

    /// Rolls back transactions that timed out by `now`.
    fn expire_transactions(&mut self, now: Instant) {
        let Some(t) = self.txn.as_mut() else { return };
        let due: Vec<Bytes> = t
            .open
            .iter()
            .filter(|(_, txn)| txn.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let work = t.open.remove(&id).map_or(0, |x| x.work);
            t.expire(id.clone());
            self.events.push_back(Event::TxnEnded {
                txn_id: id,
                commit: false,
                cause: TxnEndCause::Timeout,
                work,
            });
        }
    }

    /// Queues an event that may say control links went (a detach, a link error, a
    /// session's or the connection's end), after the events rolling back the transactions
    /// whose control link is gone by now: those come after all the work handed out for
    /// them, and before the event that explains them.
    pub(super) fn push_ending(&mut self, e: Event) {
        let rollbacks = match self.hooks() {
            Some(h) => h.sweep(self, matches!(e, Event::Ended { .. })),
            None => Vec::new(),
        };
        self.events.extend(rollbacks);
        self.events.push_back(e);
    }

    /// The events rolling back the transactions whose control link is gone (all of them
    /// once the connection has `ended`).
    fn sweep_transactions(&mut self, ended: bool) -> Vec<Event> {
        let Some(t) = self.txn.as_ref() else { return Vec::new() };
        if t.open.is_empty() && (!ended || t.pending.is_empty()) {
            return Vec::new();
        }
        // Each open transaction's control link looked up by its id (the open ones are
        // few, within the coordinator's limit; the links may be many).
        let gone: Vec<Bytes> = t
            .open
            .iter()
            .filter(|(_, x)| ended || !self.is_control_link(x.link))
            .map(|(id, _)| id.clone())
            .collect();
        let Some(t) = self.txn.as_mut() else { return Vec::new() };
        if ended {
            // Nothing can be answered any more.
            t.pending.clear();
        }
        gone.into_iter()
            .map(|id| {
                let work = t.open.remove(&id).map_or(0, |x| x.work);
                let cause = TxnEndCause::ControlLinkGone;
                Event::TxnEnded { txn_id: id, commit: false, cause, work }
            })
            .collect()
    }
}

// ----- the controller's messages -----

/// The control message that asks a coordinator for a new transaction (4.2).
pub fn declare_message() -> Message {
    Message::with_value(described(&Declare::default().to_vec()))
}

/// The control message that ends transaction `txn_id` (4.3): commit, or roll back when
/// `fail`.
pub fn discharge_message(txn_id: Bytes, fail: bool) -> Message {
    Message::with_value(described(&Discharge { txn_id, fail: Some(fail) }.to_vec()))
}

/// Our own encoding of a composite, as a value.
fn described(bytes: &[u8]) -> Value {
    // Our own encoding always reads back.
    Value::decode(bytes).unwrap_or(Value::Null)
}

/// The state that makes a transfer or a disposition work of transaction `txn_id`, with
/// the outcome to take effect on commit (4.4).
pub fn transactional(txn_id: Bytes, outcome: Option<DeliveryState>) -> DeliveryState {
    DeliveryState::TransactionalState(TransactionalState { txn_id, outcome: outcome.map(Box::new) })
}

/// What the coordinator answered a declare with: the transaction's id, or why not
/// (4.2: a `rejected` outcome carrying a transaction error).
pub fn read_declared(state: Option<&DeliveryState>) -> Result<Bytes, Error> {
    match state {
        Some(DeliveryState::Declared(d)) => Ok(d.txn_id.clone()),
        other => Err(refusal_of("declare", other)),
    }
}

/// What the coordinator answered a discharge with: `Ok` when it was accepted (4.3).
pub fn read_discharged(state: Option<&DeliveryState>) -> Result<(), Error> {
    match state {
        Some(DeliveryState::Accepted(_)) => Ok(()),
        other => Err(refusal_of("discharge", other)),
    }
}

fn refusal_of(what: &str, state: Option<&DeliveryState>) -> Error {
    match state {
        Some(DeliveryState::Rejected(Rejected { error: Some(e) })) => e.clone(),
        Some(DeliveryState::Rejected(Rejected { error: None })) => Error::new(
            condition::TRANSACTION_ROLLBACK,
            format!("the coordinator rejected the {what} without saying why"),
        ),
        Some(s) => Error::new(
            condition::ILLEGAL_STATE,
            format!("the coordinator answered the {what} with {}", s.name()),
        ),
        None => Error::new(
            condition::ILLEGAL_STATE,
            format!("the coordinator settled the {what} without an outcome"),
        ),
    }
}

/// The transaction a transfer's or disposition's state names, and the outcome it carries.
pub fn transaction_of(state: Option<&DeliveryState>) -> Option<(&Bytes, Option<&DeliveryState>)> {
    match state {
        Some(DeliveryState::TransactionalState(t)) => Some((&t.txn_id, t.outcome.as_deref())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_read_back() {
        let m = declare_message();
        let bytes = Bytes::from(m.to_vec());
        assert!(matches!(read_control(&bytes), Ok(Control::Declare(d)) if d.global_id.is_none()));
        let m = discharge_message(Bytes::from_static(b"\x01\x02"), true);
        let bytes = Bytes::from(m.to_vec());
        match read_control(&bytes) {
            Ok(Control::Discharge(d)) => {
                assert_eq!(&d.txn_id[..], b"\x01\x02");
                assert_eq!(d.fail, Some(true));
            }
            _ => panic!("a discharge"),
        }
    }

    #[test]
    fn other_bodies_are_refused_with_a_reason() {
        let bytes = Bytes::from(Message::with_value(Value::from("declare")).to_vec());
        let e = read_control(&bytes).err().expect("refused");
        assert_eq!(e.condition.as_str(), condition::NOT_IMPLEMENTED);
        let bytes = Bytes::from(Message::with_data(&b"x"[..]).to_vec());
        let e = read_control(&bytes).err().expect("refused");
        assert_eq!(e.condition.as_str(), condition::DECODE_ERROR);
        // A discharge without its mandatory txn-id.
        let bad = described(&[0x00, 0x53, 0x32, 0x45]);
        let bytes = Bytes::from(Message::with_value(bad).to_vec());
        let e = read_control(&bytes).err().expect("refused");
        assert_eq!(e.condition.as_str(), condition::DECODE_ERROR);
        assert!(e.description.unwrap_or_default().contains("discharge"));
    }

    #[test]
    fn outcomes_read_as_the_controller_needs_them() {
        let id = Bytes::from_static(b"t1");
        let declared = DeliveryState::Declared(Declared { txn_id: id.clone() });
        assert_eq!(read_declared(Some(&declared)), Ok(id.clone()));
        let e = Error::new(condition::TRANSACTION_UNKNOWN_ID, "no");
        let rejected = DeliveryState::Rejected(Rejected { error: Some(e.clone()) });
        assert_eq!(read_discharged(Some(&rejected)), Err(e));
        assert!(read_discharged(Some(&DeliveryState::Accepted(Accepted {}))).is_ok());
        let e = read_declared(None).expect_err("no outcome");
        assert_eq!(e.condition.as_str(), condition::ILLEGAL_STATE);
        let s = transactional(id.clone(), Some(DeliveryState::Accepted(Accepted {})));
        let (txn, outcome) = transaction_of(Some(&s)).expect("transactional");
        assert_eq!(txn, &id);
        assert!(matches!(outcome, Some(DeliveryState::Accepted(_))));
    }
}

//! The task of each link: storing what a client sends, or delivering a queue's messages to
//! a client that receives and acting on its outcomes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

use super::queue::{Entry, Queue};
use super::txn::{Retired, Txns};
use super::{dead_letter_address, Broker, DEAD_LETTER_SUFFIX};
use crate::codec::{DecodeOptions, Fmt, Value};
use crate::connection::txn::transactional;
use crate::connection::UsageError;
use crate::message::{AnnotationMap, Message, Payload};
use crate::runtime::{Error, Receiver, Sender};
use crate::types::{
    condition, Accepted, DeliveryState, Error as AmqpError, Header, Modified, SenderSettleMode,
};

/// Deliveries at most this long are copied out of the read buffer they arrived in, so a
/// stored message does not keep a whole read chunk alive.
const COPY_BELOW: usize = 16 * 1024;

/// How long a consumer link being closed by the broker waits for the peer's detach.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A client sends on `rx`: store each message, then settle it `accepted` (nothing to
/// answer for pre-settled ones); a message sent in a transaction is held by `txns` until
/// it ends, and settled with `transactional-state` (4.4.1). `owned`: the dynamic node this
/// link made, deleted when the link goes.
pub(super) async fn store(
    broker: Broker,
    queue: Arc<Queue>,
    rx: Receiver,
    owned: Option<Arc<Queue>>,
    txns: Arc<Txns>,
) {
    while let Ok(d) = rx.recv().await {
        let payload = if d.payload.len() <= COPY_BELOW {
            Bytes::copy_from_slice(&d.payload)
        } else {
            d.payload.clone()
        };
        // The engine's coordinator has checked the transaction already.
        if let Some(txn) = d.transaction().cloned() {
            txns.post(&txn, Arc::clone(&queue), Entry::new(payload));
            let state = transactional(txn, Some(DeliveryState::Accepted(Accepted {})));
            let _ = rx.settle(&d, state);
            continue;
        }
        if queue.push_back(Entry::new(payload)) {
            broker.inner.messages_in.fetch_add(1, Ordering::Relaxed);
            let _ = rx.accept(&d);
        } else {
            let why = AmqpError::new(
                condition::RESOURCE_DELETED,
                format!("the dynamic node {:?} has been deleted", queue.address),
            );
            let _ = rx.reject(&d, Some(why));
        }
    }
    if let Some(q) = owned {
        broker.delete(&q);
    }
}

/// What a consumer does next.
enum Step {
    /// The delivery sent `n`th was settled (or its link ended: `Err`).
    Outcome(u64, Result<DeliveryState, Error>),
    /// A message to send, with credit for it.
    Send(Entry),
    /// The link has ended, or the queue was deleted.
    End,
}

/// A client receives on `tx`: deliver the queue's messages as credit allows, and act on
/// the outcomes. `id` tells this consumer link from others (for `undeliverable-here`).
pub(super) async fn consume(
    broker: Broker,
    queue: Arc<Queue>,
    tx: Sender,
    id: u64,
    owned: Option<Arc<Queue>>,
    txns: Arc<Txns>,
) {
    let presettled = tx.remote().snd_settle_mode == SenderSettleMode::SETTLED;
    queue.consumer(true);
    // Deliveries sent unsettled, numbered in the order sent: their messages, and their
    // outcomes to come. Only the outcomes that were woken are polled: polling all of
    // them at every step cost a consumer with 1,000 in flight most of its time.
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    // Deliveries to put back once the link has ended, numbered.
    let mut returning: Vec<(u64, Entry)> = Vec::new();
    loop {
        let step = tokio::select! {
            biased;
            Some((n, r)) = in_flight.next(), if !in_flight.is_empty() => Step::Outcome(n, r),
            e = next_message(&tx, &queue, id) => e.map_or(Step::End, Step::Send),
        };
        match step {
            Step::Outcome(n, Err(_)) => {
                // The link has ended: this one and the others go back together, in order.
                if let Some(entry) = entries.remove(&n) {
                    returning.push((n, entry));
                }
                break;
            }
            Step::Outcome(n, outcome) => {
                if let Some(entry) = entries.remove(&n) {
                    outcome_of(&broker, &queue, entry, outcome, id, &txns);
                }
            }
            Step::Send(entry) => {
                let payload = payload_of(&entry.payload);
                match tx.send_encoded(&payload, presettled).await {
                    Ok(Some(outcome)) => {
                        let n = sent;
                        in_flight.push(outcome.map(move |r| (n, r)));
                        entries.insert(n, entry);
                        sent += 1;
                    }
                    Ok(None) => {
                        queue.done();
                        broker.inner.messages_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::Usage(
                        UsageError::MessageTooLarge { .. } | UsageError::TooLarge,
                    )) => {
                        // Too large for this receiver: leave it to the others.
                        let mut entry = entry;
                        entry.avoid.push(id);
                        queue.requeue(entry);
                    }
                    Err(_) => {
                        returning.push((sent, entry));
                        break;
                    }
                }
            }
            Step::End => break,
        }
    }
    // The link may still be up (the queue was deleted, or a send failed): close it, so
    // that every outcome still awaited is final.
    if tx.credit().is_ok() {
        let _ = tokio::time::timeout(CLOSE_WAIT, tx.close()).await;
    }
    // Outcomes that arrived before the end count; the rest go back, in the order sent.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    while let Poll::Ready(Some((n, r))) = in_flight.poll_next_unpin(&mut cx) {
        if let Ok(state) = r {
            if let Some(entry) = entries.remove(&n) {
                outcome_of(&broker, &queue, entry, Ok(state), id, &txns);
            }
        }
    }
    returning.extend(entries);
    for (_, entry) in returning {
        queue.requeue(entry);
    }
    queue.consumer(false);
    if let Some(q) = owned {
        broker.delete(&q);
    }
}

/// Waits for credit and a message this consumer may have, answering drain requests while
/// there is none; `None` once the link has ended or the queue was deleted. Nothing is
/// taken from the queue if the future is dropped.
async fn next_message(tx: &Sender, queue: &Queue, id: u64) -> Option<Entry> {
    loop {
        let flow = tx.wait_credit().await.ok()?;
        if flow.1 {
            // 2.6.7: asked to drain: send what there is, or give the credit back now.
            match queue.try_next_for(id) {
                Ok(Some(e)) => return Some(e),
                Ok(None) => {
                    tx.drained().ok()?;
                    continue;
                }
                Err(()) => return None,
            }
        }
        tokio::select! {
            biased;
            e = queue.next_for(id) => return e,
            r = tx.wait_flow_change(flow) => { r.ok()?; }
        }
    }
}

/// A stored message as a payload to send (referenced, not copied).
fn payload_of(bytes: &Bytes) -> Payload {
    let mut p = Payload::default();
    p.inserts.push((0, bytes.clone()));
    p
}

/// Acts on the outcome of a delivery to consumer `id`, or holds it in its transaction
/// (4.4.2) when it came in one.
fn outcome_of(
    broker: &Broker,
    queue: &Arc<Queue>,
    entry: Entry,
    outcome: Result<DeliveryState, Error>,
    id: u64,
    txns: &Txns,
) {
    match outcome {
        Ok(DeliveryState::TransactionalState(t)) if t.outcome.is_some() => {
            let outcome = t.outcome.map_or(DeliveryState::Accepted(Accepted {}), |o| *o);
            let retired = Retired { queue: Arc::clone(queue), entry, outcome, consumer: id };
            txns.retire(&t.txn_id, retired);
        }
        other => settle(broker, queue, entry, other, id),
    }
}

/// Acts on the outcome of a delivery to consumer `id`: `Err` (the link ended first) and
/// anything but the four outcomes count as released.
pub(super) fn settle(
    broker: &Broker,
    queue: &Queue,
    mut entry: Entry,
    outcome: Result<DeliveryState, Error>,
    id: u64,
) {
    match outcome {
        Ok(DeliveryState::Accepted(_)) => {
            queue.done();
            broker.inner.messages_out.fetch_add(1, Ordering::Relaxed);
        }
        Ok(DeliveryState::Rejected(r)) => {
            queue.done();
            dead_letter(broker, queue, entry, r.error);
        }
        Ok(DeliveryState::Modified(m)) => {
            modify(&mut entry, &m, id);
            queue.requeue(entry);
        }
        Ok(_) | Err(_) => queue.requeue(entry),
    }
}

/// 3.4.5: `delivery-failed` counts an attempt in the header's delivery-count,
/// `undeliverable-here` keeps the message from this consumer, and annotations are merged
/// into the message's.
pub(super) fn modify(entry: &mut Entry, m: &Modified, id: u64) {
    if m.undeliverable_here == Some(true) {
        entry.avoid.push(id);
    }
    let failed = m.delivery_failed == Some(true);
    let annotations = m.message_annotations.as_ref().filter(|f| !f.0.is_empty());
    if !failed && annotations.is_none() {
        return;
    }
    let Ok((mut message, _)) = Message::decode_with(&entry.payload, DecodeOptions::LENIENT) else {
        // Not a message we can rewrite: it goes back as it came.
        return;
    };
    if failed {
        let h = message.header.get_or_insert_with(Header::default);
        h.delivery_count = h.delivery_count.saturating_add(1);
    }
    if let Some(fields) = annotations {
        annotate(&mut message, fields.0.iter().map(|(k, v)| (k.as_str(), v.clone())));
    }
    entry.payload = Bytes::from(message.to_vec());
}

/// Sets message annotations (symbol keys), replacing those of the same name.
fn annotate<'a>(message: &mut Message, set: impl Iterator<Item = (&'a str, Value)>) {
    let mut pairs =
        message.message_annotations.as_ref().map(AnnotationMap::to_pairs).unwrap_or_default();
    for (key, value) in set {
        let k = Value::Symbol(key.into(), Fmt::Auto);
        match pairs.iter_mut().find(|(old, _)| key_is(old, key)) {
            Some(pair) => pair.1 = value,
            None => pairs.push((k, value)),
        }
    }
    message.message_annotations = Some(AnnotationMap::from_pairs(pairs));
}

fn key_is(v: &Value, key: &str) -> bool {
    match v {
        Value::Symbol(s, _) => s.as_str() == key,
        Value::String(s, _) => &**s == key,
        _ => false,
    }
}

/// Moves a rejected message to the dead-letter queue of `queue`, noting the error in the
/// message's annotations; a message rejected from a dead-letter queue is dropped.
fn dead_letter(broker: &Broker, queue: &Queue, mut entry: Entry, error: Option<AmqpError>) {
    if queue.address.ends_with(DEAD_LETTER_SUFFIX) {
        broker.inner.discarded.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Some(e) = &error {
        if let Ok((mut message, _)) = Message::decode_with(&entry.payload, DecodeOptions::LENIENT) {
            let mut set = vec![(
                "x-opt-dead-letter-condition",
                Value::Symbol(e.condition.clone(), Fmt::Auto),
            )];
            if let Some(d) = &e.description {
                set.push(("x-opt-dead-letter-description", Value::String(d.clone(), Fmt::Auto)));
            }
            annotate(&mut message, set.into_iter());
            entry.payload = Bytes::from(message.to_vec());
        }
    }
    entry.avoid.clear();
    entry.error = error;
    let Ok(dlq) = broker.queue(&dead_letter_address(&queue.address)) else {
        broker.inner.discarded.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if dlq.push_back(entry) {
        broker.inner.dead_lettered.fetch_add(1, Ordering::Relaxed);
    } else {
        broker.inner.discarded.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Fields;

    #[test]
    fn modified_counts_a_failed_delivery_and_merges_annotations() {
        let m = Message::with_data(&b"x"[..]);
        let mut entry = Entry::new(Bytes::from(m.to_vec()));
        let fields = Fields(vec![("x-opt-why".into(), Value::from("retry"))]);
        let modified = Modified {
            delivery_failed: Some(true),
            undeliverable_here: Some(true),
            message_annotations: Some(fields),
        };
        modify(&mut entry, &modified, 7);
        modify(&mut entry, &Modified { delivery_failed: Some(true), ..Modified::default() }, 8);
        let back = Message::decode(&entry.payload).expect("a message");
        assert_eq!(back.header.expect("a header").delivery_count, 2);
        let a = back.message_annotations.expect("annotations");
        assert_eq!(a.len(), 1);
        assert!(a.get("x-opt-why").is_some());
        assert_eq!(entry.avoid, [7]);
        assert_eq!(back.body, m.body);
    }

    #[test]
    fn released_style_outcomes_leave_the_bytes_alone() {
        let m = Message::with_data(&b"x"[..]);
        let bytes = Bytes::from(m.to_vec());
        let mut entry = Entry::new(bytes.clone());
        modify(&mut entry, &Modified::default(), 1);
        assert_eq!(entry.payload, bytes);
        assert!(entry.avoid.is_empty());
    }
}

//! Transactions (part 4) of one connection: the work each transaction holds until the
//! controller discharges it. The engine's coordinator answers declares and discharges and
//! checks every piece of work; the broker keeps the work and applies or undoes it.
//!
//! - Posting (4.4.1): a message sent in a transaction is kept here, not in its queue, and
//!   goes to the back of the queue on commit; on rollback it is dropped.
//! - Retirement (4.4.2): a consumer's outcome in a transaction leaves the message taken
//!   (in flight); on commit the outcome takes effect as it would have at once; on rollback
//!   the message goes back to the front of its queue with its delivery-count raised.
//!
//! Links are served by tasks of their own, so the end of a transaction can be heard before
//! the task of a link has taken in the transaction's last work: [`Txns::take`] waits until
//! as much work as the engine handed out for it has been taken in.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::link::{modify, settle};
use super::queue::{Entry, Queue};
use super::Broker;
use crate::types::{DeliveryState, Modified};

/// How long the end of a transaction waits for link tasks to take in work the engine
/// handed them (they do so at once unless the broker is overloaded; a link task that died
/// with work in hand would otherwise hold the discharge forever).
const TAKE_WAIT: Duration = Duration::from_secs(30);

/// A consumer's outcome held until its transaction ends.
#[derive(Debug)]
pub(super) struct Retired {
    pub(super) queue: Arc<Queue>,
    pub(super) entry: Entry,
    pub(super) outcome: DeliveryState,
    /// The consumer link (for `undeliverable-here`).
    pub(super) consumer: u64,
}

/// What one transaction holds.
#[derive(Debug, Default)]
pub(super) struct Work {
    /// Pieces of work taken in (posted, retired, or refused by the broker).
    taken: u32,
    posted: Vec<(Arc<Queue>, Entry)>,
    retired: Vec<Retired>,
}

/// The transactions of one connection.
#[derive(Debug, Default)]
pub(super) struct Txns {
    work: Mutex<HashMap<Bytes, Work>>,
    changed: Notify,
}

impl Txns {
    fn lock(&self) -> MutexGuard<'_, HashMap<Bytes, Work>> {
        self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with(&self, txn: &Bytes, f: impl FnOnce(&mut Work)) {
        let mut all = self.lock();
        let w = all.entry(txn.clone()).or_default();
        w.taken = w.taken.saturating_add(1);
        f(w);
        drop(all);
        self.changed.notify_waiters();
    }

    /// A message sent in `txn`, to store on commit.
    pub(super) fn post(&self, txn: &Bytes, queue: Arc<Queue>, entry: Entry) {
        self.with(txn, |w| w.posted.push((queue, entry)));
    }

    /// A consumer's outcome in `txn`, to apply on commit.
    pub(super) fn retire(&self, txn: &Bytes, r: Retired) {
        self.with(txn, |w| w.retired.push(r));
    }

    /// Takes the work of a transaction that ended, once `expected` pieces were taken in
    /// (or after [`TAKE_WAIT`]).
    pub(super) async fn take(&self, txn: &Bytes, expected: u32) -> Work {
        let ready = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.lock().get(txn).map_or(0, |w| w.taken) >= expected {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(TAKE_WAIT, ready).await;
        self.lock().remove(txn).unwrap_or_default()
    }
}

impl Broker {
    /// Applies a transaction's work (`commit`) or undoes it.
    pub(super) fn end_transaction(&self, work: Work, commit: bool) {
        for (queue, entry) in work.posted {
            if commit && queue.push_back(entry) {
                self.inner.messages_in.fetch_add(1, Ordering::Relaxed);
            } else if commit {
                // The dynamic node it was sent to has been deleted since.
                self.inner.discarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        for r in work.retired {
            let Retired { queue, mut entry, outcome, consumer } = r;
            if commit {
                settle(self, &queue, entry, Ok(outcome), consumer);
            } else {
                // 4.4.2: the outcome is undone; the delivery attempt still counts.
                let failed = Modified { delivery_failed: Some(true), ..Modified::default() };
                modify(&mut entry, &failed, consumer);
                queue.requeue(entry);
            }
        }
    }
}

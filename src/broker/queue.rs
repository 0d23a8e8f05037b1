//! A queue: messages in arrival order, handed to one consumer each, with a count of those
//! out for delivery and not yet settled.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::types::Error as AmqpError;

/// A stored message.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The encoded message, as it arrived (or as re-encoded after `modified`).
    pub(crate) payload: Bytes,
    /// Consumer links that answered `modified` with `undeliverable-here`.
    pub(crate) avoid: Vec<u64>,
    /// Why it was rejected (messages on a dead-letter queue).
    pub(crate) error: Option<AmqpError>,
    /// Its place in its queue's order, given as it is stored: a message put back goes
    /// back to its place, whatever order messages are put back in.
    seq: u64,
}

impl Entry {
    pub(crate) fn new(payload: Bytes) -> Self {
        Self { payload, avoid: Vec::new(), error: None, seq: 0 }
    }
}

#[derive(Debug, Default)]
struct State {
    /// In order of [`Entry::seq`].
    messages: VecDeque<Entry>,
    /// The next message's [`Entry::seq`].
    next_seq: u64,
    /// Taken by a consumer and not yet settled.
    in_flight: usize,
    consumers: usize,
    deleted: bool,
}

/// A named queue.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) address: String,
    /// Made for a dynamic terminus, deleted when the link that made it goes.
    pub(crate) dynamic: bool,
    state: Mutex<State>,
    /// Woken when a message is added or the queue is deleted.
    arrived: Notify,
}

impl Queue {
    pub(crate) fn new(address: String, dynamic: bool) -> Self {
        Self { address, dynamic, state: Mutex::default(), arrived: Notify::new() }
    }

    /// The state. Nothing done under the lock can leave it half-changed, so a poisoned
    /// lock is taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a message at the back; `false` (and nothing stored) once the queue is deleted.
    pub(crate) fn push_back(&self, mut entry: Entry) -> bool {
        let mut s = self.lock();
        if s.deleted {
            return false;
        }
        entry.seq = s.next_seq;
        s.next_seq += 1;
        s.messages.push_back(entry);
        // Only consumers wait for arrivals, and one that joins later looks at the queue
        // before it waits: with none, nobody needs waking (which takes the waiters' lock).
        let waiting = s.consumers > 0;
        drop(s);
        if waiting {
            self.arrived.notify_waiters();
        }
        true
    }

    /// Puts back a message taken earlier (released, modified, left unsettled by a
    /// consumer that went away, or taken in a transaction rolled back) where it was in
    /// the queue's order: before the messages stored after it, so that messages put back
    /// in any order are in the order they were stored.
    pub(crate) fn requeue(&self, entry: Entry) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if !s.deleted {
            let at = s.messages.partition_point(|e| e.seq < entry.seq);
            s.messages.insert(at, entry);
        }
        drop(s);
        self.arrived.notify_waiters();
    }

    /// A message taken earlier is done with (accepted, rejected, or sent pre-settled).
    pub(crate) fn done(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// Takes the first message `consumer` may have, if any (counted in flight until
    /// [`Queue::done`] or [`Queue::requeue`]); `Err` once the queue is deleted.
    pub(crate) fn try_next_for(&self, consumer: u64) -> Result<Option<Entry>, ()> {
        let mut s = self.lock();
        if s.deleted {
            return Err(());
        }
        let at = s.messages.iter().position(|e| !e.avoid.contains(&consumer));
        let entry = at.and_then(|i| s.messages.remove(i));
        if entry.is_some() {
            s.in_flight += 1;
        }
        Ok(entry)
    }

    /// Waits for a message `consumer` may have and takes it, as
    /// [`Queue::try_next_for`]; `None` once the queue is deleted. Nothing is taken if the
    /// future is dropped before it completes.
    pub(crate) async fn next_for(&self, consumer: u64) -> Option<Entry> {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            match self.try_next_for(consumer) {
                Err(()) => return None,
                Ok(Some(e)) => return Some(e),
                Ok(None) => {}
            }
            arrived.await;
        }
    }

    /// Deletes the queue: its messages are dropped, consumers waiting on it hear of it.
    pub(crate) fn delete(&self) {
        let mut s = self.lock();
        s.deleted = true;
        s.messages.clear();
        drop(s);
        self.arrived.notify_waiters();
    }

    /// Counts a consumer link in (`true`) or out.
    pub(crate) fn consumer(&self, joins: bool) {
        let mut s = self.lock();
        if joins {
            s.consumers += 1;
        } else {
            s.consumers = s.consumers.saturating_sub(1);
        }
    }

    /// (messages waiting, in flight, consumers).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let s = self.lock();
        (s.messages.len(), s.in_flight, s.consumers)
    }

    /// Copies of the waiting messages and their rejection errors.
    pub(crate) fn snapshot(&self) -> Vec<(Bytes, Option<AmqpError>)> {
        self.lock().messages.iter().map(|e| (e.payload.clone(), e.error.clone())).collect()
    }
}

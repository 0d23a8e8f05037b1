//! The hub's state: per-device cloud-to-device queues, the feedback waiting for the
//! service, and the partitioned event log of device-to-cloud messages.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::codec::{Timestamp, Value};
use crate::message::{AnnotationMap, Message};
use crate::types::MessageId;

use crate::azure::hub::{message_id_text, Ack, FeedbackRecord, FeedbackStatus, StartPosition};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A cloud-to-device message waiting for its device.
#[derive(Clone, Debug)]
pub(super) struct C2d {
    pub(super) message: Message,
    pub(super) message_id: Option<MessageId>,
    pub(super) ack: Ack,
    pub(super) expires_ms: i64,
    pub(super) delivery_count: u32,
    pub(super) sequence: i64,
    /// The generation id of the device it was sent to, which its feedback names.
    pub(super) generation: String,
}

#[derive(Debug, Default)]
pub(super) struct DeviceQueue {
    pub(super) waiting: VecDeque<C2d>,
    /// Messages sent to the device and not yet settled (for the queue limit).
    pub(super) locked: usize,
}

/// How a device settles a cloud-to-device message it holds (AMQP: accepted, rejected,
/// released or modified; HTTPS: DELETE, DELETE `?reject`, POST `…/abandon`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settle {
    Complete,
    Reject,
    Abandon,
}

/// The per-device queues and the feedback.
#[derive(Debug, Default)]
pub(super) struct Queues {
    pub(super) devices: Mutex<HashMap<String, DeviceQueue>>,
    pub(super) changed: Notify,
    pub(super) feedback: Mutex<VecDeque<FeedbackRecord>>,
    pub(super) feedback_changed: Notify,
    pub(super) next_sequence: std::sync::atomic::AtomicI64,
    /// Messages devices received over HTTPS and hold, by lock token: the device and the
    /// message.
    pub(super) http_locks: Mutex<HashMap<String, (String, C2d)>>,
}

/// At most this many feedback records wait for a service to read them.
const FEEDBACK_KEPT: usize = 10_000;

impl Queues {
    /// Records feedback if the message asked for it.
    pub(super) fn feedback(&self, device: &str, m: &C2d, status: FeedbackStatus) {
        if !m.ack.wants(status) {
            return;
        }
        let Some(id) = &m.message_id else { return };
        let mut f = lock(&self.feedback);
        if f.len() >= FEEDBACK_KEPT {
            f.pop_front();
        }
        f.push_back(FeedbackRecord {
            original_message_id: message_id_text(id),
            device_id: device.to_owned(),
            status,
            description: status.description().to_owned(),
            enqueued_time_utc: Timestamp(now_ms()).to_string(),
            device_generation_id: m.generation.clone(),
        });
        drop(f);
        self.feedback_changed.notify_waiters();
    }

    /// Messages waiting past their time to live leave their queues, with `Expired`
    /// feedback for those that asked for it: IoT Hub does not wait for the device to come
    /// back to say so. Returns when the next waiting message expires, if any does.
    pub(super) fn expire(&self, now: i64) -> Option<i64> {
        let mut expired = Vec::new();
        let mut next: Option<i64> = None;
        for (device, q) in lock(&self.devices).iter_mut() {
            if q.waiting.iter().all(|m| m.expires_ms > now) {
                next = q.waiting.iter().map(|m| m.expires_ms).chain(next).min();
                continue;
            }
            for m in std::mem::take(&mut q.waiting) {
                if m.expires_ms <= now {
                    expired.push((device.clone(), m));
                } else {
                    next = Some(next.map_or(m.expires_ms, |n| n.min(m.expires_ms)));
                    q.waiting.push_back(m);
                }
            }
        }
        for (device, m) in &expired {
            self.feedback(device, m, FeedbackStatus::Expired);
        }
        next
    }

    /// Empties `device`'s queue of the messages waiting (those it holds stay locked to
    /// it), with `Purged` feedback for those that asked for it; how many went.
    pub(super) fn purge(&self, device: &str) -> usize {
        let purged: Vec<C2d> = lock(&self.devices)
            .get_mut(device)
            .map(|q| q.waiting.drain(..).collect())
            .unwrap_or_default();
        for m in &purged {
            self.feedback(device, m, FeedbackStatus::Purged);
        }
        purged.len()
    }

    /// Puts a message back at the front of its device's queue.
    pub(super) fn requeue(&self, device: &str, m: C2d) {
        let mut d = lock(&self.devices);
        let q = d.entry(device.to_owned()).or_default();
        q.locked = q.locked.saturating_sub(1);
        q.waiting.push_front(m);
        drop(d);
        self.changed.notify_waiters();
    }

    /// The next message waiting for `device`, now locked to it.
    pub(super) fn take(&self, device: &str) -> Option<C2d> {
        let mut devices = lock(&self.devices);
        let dq = devices.entry(device.to_owned()).or_default();
        let m = dq.waiting.pop_front();
        if m.is_some() {
            dq.locked += 1;
        }
        m
    }

    /// A device settled a message it held: completed or rejected, it leaves with its
    /// feedback; abandoned, it goes back to the front of the queue with its delivery count
    /// raised, unless that reaches `max_deliveries` (dead: `DeliveryCountExceeded`).
    pub(super) fn settle(&self, device: &str, mut m: C2d, how: Settle, max_deliveries: u32) {
        match how {
            Settle::Complete => self.feedback(device, &m, FeedbackStatus::Success),
            Settle::Reject => self.feedback(device, &m, FeedbackStatus::Rejected),
            Settle::Abandon => {
                m.delivery_count += 1;
                if m.delivery_count < max_deliveries {
                    return self.requeue(device, m);
                }
                self.feedback(device, &m, FeedbackStatus::DeliveryCountExceeded);
            }
        }
        self.unlock(device);
    }

    /// A message left its lock for good (completed, rejected, dead).
    pub(super) fn unlock(&self, device: &str) {
        let mut d = lock(&self.devices);
        if let Some(q) = d.get_mut(device) {
            q.locked = q.locked.saturating_sub(1);
        }
    }
}

/// One device-to-cloud event as the Event Hub-compatible endpoint serves it.
#[derive(Clone, Debug)]
pub struct Event {
    /// `x-opt-sequence-number`: 0, 1, 2… in its partition.
    pub sequence_number: i64,
    /// `x-opt-offset`: where it starts in its partition's byte stream.
    pub offset: u64,
    /// `x-opt-enqueued-time`.
    pub enqueued: Timestamp,
    /// The device that sent it.
    pub device_id: String,
    /// The message with the hub's annotations, encoded.
    pub payload: Bytes,
}

impl Event {
    /// Decodes the message.
    pub fn message(&self) -> Result<Message, crate::codec::DecodeError> {
        Message::decode(&self.payload)
    }
}

/// One partition: its newest events (at most the retention), and where the next goes.
#[derive(Debug, Default)]
pub(super) struct Partition {
    pub(super) events: VecDeque<Event>,
    next_sequence: i64,
    next_offset: u64,
}

impl Partition {
    /// The event with sequence number `seq`, or the oldest kept after it (older events
    /// were dropped for the retention); `None` when nothing that new has arrived.
    pub(super) fn at_or_after(&self, seq: i64) -> Option<&Event> {
        let first = self.events.front()?.sequence_number;
        self.events.get(usize::try_from(seq.saturating_sub(first)).unwrap_or(0))
    }
}

/// The partitioned log of device-to-cloud events.
#[derive(Debug)]
pub(super) struct EventLog {
    pub(super) partitions: Vec<Mutex<Partition>>,
    /// Events kept per partition; the oldest go first.
    retained: usize,
    pub(super) appended: Notify,
}

impl EventLog {
    pub(super) fn new(n: u32, retained: usize) -> Self {
        let n = n.max(1) as usize;
        Self {
            partitions: (0..n).map(|_| Mutex::default()).collect(),
            retained: retained.max(1),
            appended: Notify::new(),
        }
    }

    /// The partition of a device: a stable hash of its id (FNV-1a), modulo the count.
    pub(super) fn partition_of(&self, device: &str) -> usize {
        let mut h: u32 = 0x811c_9dc5;
        for b in device.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h as usize % self.partitions.len()
    }

    /// Stamps `message` with the hub's annotations and appends it to its device's
    /// partition; returns the partition and the event.
    #[cfg(test)]
    pub(super) fn append(&self, device: &str, message: Message) -> (usize, Event) {
        self.append_from(device, None, "0", message)
    }

    /// Stamps `message` with the hub's annotations (the sender's `generation` id among
    /// them; a message from a device's module carries `iothub-connection-module-id` too)
    /// and appends it to its device's partition; returns the partition and the event.
    pub(super) fn append_from(
        &self,
        device: &str,
        module: Option<&str>,
        generation: &str,
        mut message: Message,
    ) -> (usize, Event) {
        let p = self.partition_of(device);
        let mut log = lock(&self.partitions[p]);
        let (sequence_number, offset) = (log.next_sequence, log.next_offset);
        let enqueued = Timestamp(now_ms());
        let mut pairs =
            message.message_annotations.as_ref().map(|a| a.to_pairs()).unwrap_or_default();
        let sym = |s: &str| Value::Symbol(s.into(), Default::default());
        let auth =
            r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#;
        pairs.extend([
            (sym("iothub-connection-device-id"), Value::from(device)),
            (sym("iothub-connection-auth-method"), Value::from(auth)),
            (sym("iothub-connection-auth-generation-id"), Value::from(generation)),
            (sym("iothub-enqueuedtime"), Value::from(enqueued)),
            (sym("iothub-message-source"), Value::from("Telemetry")),
            (sym("x-opt-sequence-number"), Value::from(sequence_number)),
            (sym("x-opt-offset"), Value::from(offset.to_string())),
            (sym("x-opt-enqueued-time"), Value::from(enqueued)),
        ]);
        if let Some(m) = module {
            pairs.push((sym("iothub-connection-module-id"), Value::from(m)));
        }
        message.message_annotations = Some(AnnotationMap::from_pairs(pairs));
        let payload = Bytes::from(message.to_vec());
        log.next_sequence += 1;
        log.next_offset += payload.len() as u64;
        let event =
            Event { sequence_number, offset, enqueued, device_id: device.to_owned(), payload };
        if log.events.len() >= self.retained {
            log.events.pop_front();
        }
        log.events.push_back(event.clone());
        drop(log);
        self.appended.notify_waiters();
        (p, event)
    }
}

impl StartPosition {
    /// The sequence number of the first event of `log` to deliver.
    pub(super) fn first_sequence(self, log: &Partition) -> i64 {
        let after = |e: &Event| match self {
            Self::Offset { offset, inclusive } => {
                let o = e.offset as i64;
                if inclusive {
                    o >= offset
                } else {
                    o > offset
                }
            }
            Self::Sequence { sequence, inclusive } => {
                if inclusive {
                    e.sequence_number >= sequence
                } else {
                    e.sequence_number > sequence
                }
            }
            Self::EnqueuedTime { ms, inclusive } => {
                if inclusive {
                    e.enqueued.0 >= ms
                } else {
                    e.enqueued.0 > ms
                }
            }
            Self::Latest => false,
        };
        log.events.iter().find(|e| after(e)).map_or(log.next_sequence, |e| e.sequence_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> StartPosition {
        StartPosition::parse(s).unwrap()
    }

    #[test]
    fn selectors_parse_and_pick_the_first_event() {
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '-1'"),
            StartPosition::Offset { offset: -1, inclusive: false }
        );
        assert_eq!(p("amqp.annotation.x-opt-offset > '@latest'"), StartPosition::Latest);
        // No spaces around the operator.
        assert_eq!(
            p("amqp.annotation.x-opt-offset>'5'"),
            StartPosition::Offset { offset: 5, inclusive: false }
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number>='7'"),
            StartPosition::Sequence { sequence: 7, inclusive: true }
        );
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number >= '3'"),
            StartPosition::Sequence { sequence: 3, inclusive: true }
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time > '1700000000000'"),
            StartPosition::EnqueuedTime { ms: 1_700_000_000_000, inclusive: false }
        );
        assert!(StartPosition::parse("amqp.annotation.x-opt-offset < '1'")
            .unwrap_err()
            .contains("expected >"));
        assert!(StartPosition::parse("x > '1'").unwrap_err().contains("unknown field"));
        assert!(StartPosition::parse("amqp.annotation.x-opt-offset > 'abc'")
            .unwrap_err()
            .contains("not a number"));

        let log = EventLog::new(1, 100);
        for i in 0..4 {
            log.append("d", Message::with_data(vec![i as u8; 10]));
        }
        let part = lock(&log.partitions[0]);
        let first = |sel: &str| p(sel).first_sequence(&part);
        assert_eq!(first("amqp.annotation.x-opt-offset > '-1'"), 0);
        assert_eq!(first("amqp.annotation.x-opt-sequence-number > '1'"), 2);
        assert_eq!(first("amqp.annotation.x-opt-sequence-number >= '1'"), 1);
        let second = part.events[1].offset;
        assert_eq!(first(&format!("amqp.annotation.x-opt-offset >= '{second}'")), 1);
        assert_eq!(first("amqp.annotation.x-opt-offset > '@latest'"), 4);
        // Offsets grow by the encoded size, and the annotations are on each message.
        let events: Vec<&Event> = part.events.iter().collect();
        assert!(events.windows(2).all(|w| w[1].offset == w[0].offset + w[0].payload.len() as u64));
        let m = events[3].message().unwrap();
        let a = m.message_annotations.unwrap();
        assert_eq!(a.get("iothub-connection-device-id").and_then(|v| v.as_str()), Some("d"));
        assert_eq!(a.get("x-opt-sequence-number"), Some(crate::codec::ValueRef::Long(3)));
    }

    #[test]
    fn the_log_keeps_its_retention_and_readers_skip_what_went() {
        let log = EventLog::new(1, 3);
        for i in 0..5u8 {
            log.append("d", Message::with_data(vec![i; 4]));
        }
        let part = lock(&log.partitions[0]);
        let kept: Vec<i64> = part.events.iter().map(|e| e.sequence_number).collect();
        assert_eq!(kept, [2, 3, 4], "the oldest went; numbering goes on");
        // A reader that wanted event 0 gets the oldest kept one; 4 is there; 5 is not yet.
        assert_eq!(part.at_or_after(0).map(|e| e.sequence_number), Some(2));
        assert_eq!(part.at_or_after(4).map(|e| e.sequence_number), Some(4));
        assert!(part.at_or_after(5).is_none());
        assert_eq!(p("amqp.annotation.x-opt-offset > '-1'").first_sequence(&part), 2);
        assert_eq!(p("amqp.annotation.x-opt-offset > '@latest'").first_sequence(&part), 5);
    }

    #[test]
    fn ack_modes_choose_the_feedback() {
        let q = Queues::default();
        let m = |ack| C2d {
            message: Message::default(),
            message_id: Some(MessageId::String("m".into())),
            ack,
            expires_ms: 0,
            delivery_count: 0,
            sequence: 0,
            generation: String::new(),
        };
        q.feedback("d", &m(Ack::Positive), FeedbackStatus::Rejected);
        q.feedback("d", &m(Ack::None), FeedbackStatus::Success);
        q.feedback("d", &m(Ack::Negative), FeedbackStatus::Success);
        assert!(lock(&q.feedback).is_empty());
        q.feedback("d", &m(Ack::Positive), FeedbackStatus::Success);
        q.feedback("d", &m(Ack::Full), FeedbackStatus::Expired);
        q.feedback("d", &m(Ack::Negative), FeedbackStatus::DeliveryCountExceeded);
        let got: Vec<&str> = lock(&q.feedback).iter().map(|r| r.status.name()).collect();
        assert_eq!(got, ["Success", "Expired", "DeliveryCountExceeded"]);
        let json = lock(&q.feedback)[0].to_json();
        assert_eq!(json["originalMessageId"], "m");
        assert_eq!(json["deviceId"], "d");
        assert!(json["enqueuedTimeUtc"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Ack::parse("FULL"), Some(Ack::Full));
        assert_eq!(Ack::parse("sometimes"), None);
        let u = crate::codec::Uuid([0xab; 16]);
        assert_eq!(message_id_text(&MessageId::Uuid(u)), "abababab-abab-abab-abab-abababababab");
    }
}

//! Links (2.6): attach and detach, link flow control (credit, delivery-count, drain),
//! and the state of deliveries in flight on a link.

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeOptions, Fmt, Reader, Symbol, Value};
use crate::types::{
    Attach, AttachSource, AttachTarget, Codec, Coordinator, DeliveryState, Fields, Handle,
    ReceiverSettleMode, Role, SenderSettleMode, SequenceNo, Source, Target,
};

use super::SessionId;

/// A link, named by its session and our handle, and told apart from every other link the
/// connection had on that handle: a handle an ended link freed goes to the next link
/// attached on the session, and a command given the ended link's id then fails with
/// [`UsageError::UnknownLink`](super::UsageError::UnknownLink) rather than acting on the
/// new link. Ids come from [`Connection::attach`](super::Connection::attach) and from
/// events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    /// The session.
    pub session: SessionId,
    /// Our handle.
    pub handle: Handle,
    /// Which link on that handle (the connection numbers its links from 1; 32 bits, so an
    /// id held across four billion later links could name one of them).
    serial: u32,
}

impl LinkId {
    pub(crate) fn new(session: SessionId, handle: u32, serial: u32) -> Self {
        Self { session, handle: Handle(handle), serial }
    }

    pub(crate) fn serial(self) -> u32 {
        self.serial
    }
}

/// Link states (2.6.1: attached or detached, with the attach/detach exchange in between).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Our attach sent, the peer's not yet received.
    AttachSent,
    /// The peer's attach received; waiting for the application to accept or refuse it.
    AttachRcvd,
    /// Both attaches exchanged.
    Attached,
    /// Our detach sent, the peer's not yet received.
    DetachSent,
}

/// A delivery left unsettled by an earlier attachment of a link, known by its tag: what
/// the `unsettled` map of an attach carries (2.6.13).
#[derive(Clone, Debug, PartialEq)]
pub struct UnsettledDelivery {
    /// The delivery-tag.
    pub tag: Bytes,
    /// Its state as this side last knew it (`None`: no state yet).
    pub state: Option<DeliveryState>,
}

/// What the peer's attach said of a delivery we carried over (2.6.13).
#[derive(Clone, Debug, PartialEq)]
pub enum PeerUnsettled {
    /// The peer's map is complete and lacks the tag: the peer has no record of it (never
    /// received, or settled and forgotten). A sender may send it again as a new delivery
    /// or forget it; a resumed transfer would be ignored.
    Unknown,
    /// The peer's map was incomplete and lacks the tag: nothing can be concluded yet.
    NotListed,
    /// The peer holds the delivery unsettled, in this state. A terminal outcome means the
    /// sender only needs to settle it; otherwise it resumes the transfer.
    Known(Option<DeliveryState>),
}

/// A delivery that may be resumed on a re-attached link: our side's record and the
/// peer's.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumable {
    /// The delivery-tag.
    pub tag: Bytes,
    /// Its state on our side.
    pub local: Option<DeliveryState>,
    /// What the peer's attach said of it (`None` until the peer's attach arrives).
    pub remote: Option<PeerUnsettled>,
}

impl Resumable {
    /// Carried over from `u`, the peer not heard yet.
    pub(crate) fn carried(u: &UnsettledDelivery) -> Self {
        Self { tag: u.tag.clone(), local: u.state.clone(), remote: None }
    }

    /// Our record of it, for an `unsettled` map.
    pub(crate) fn record(&self) -> UnsettledDelivery {
        UnsettledDelivery { tag: self.tag.clone(), state: self.local.clone() }
    }
}

/// What to attach.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkOptions {
    /// The link name (unique per direction between two containers).
    pub name: String,
    /// Our role.
    pub role: Role,
    /// The source (for a receiver: where messages come from).
    pub source: Option<AttachSource>,
    /// The target (for a sender: where messages go), or a transaction coordinator (4.5.1).
    pub target: Option<AttachTarget>,
    /// Sender settle mode.
    pub snd_settle_mode: SenderSettleMode,
    /// Receiver settle mode.
    pub rcv_settle_mode: ReceiverSettleMode,
    /// The largest message we accept (receivers).
    pub max_message_size: Option<u64>,
    /// Link properties.
    pub properties: Option<Fields>,
    /// Extension capabilities we offer.
    pub offered_capabilities: Vec<Symbol>,
    /// Extension capabilities we would like the peer to have.
    pub desired_capabilities: Vec<Symbol>,
    /// Deliveries left unsettled by an earlier attachment of this link (on another
    /// connection, say), to announce in the attach's `unsettled` map and resume. Empty: the
    /// connection's own record of the link, if it detached earlier without closing.
    pub unsettled: Vec<UnsettledDelivery>,
}

impl LinkOptions {
    /// A sender to `address`. Its source is present and empty (what the sender knows of
    /// where its messages come from): a null source reads as a refused attach to some
    /// peers, and others echo it back and fail on it.
    pub fn sender(name: &str, address: &str) -> Self {
        let target = AttachTarget::Target(Target::with_address(address));
        let source = AttachSource::Source(Source::default());
        Self::new(name, Role::SENDER, Some(source), Some(target))
    }

    /// A receiver from `address`. Its target is present and empty, as every other client
    /// sends it.
    pub fn receiver(name: &str, address: &str) -> Self {
        let source = AttachSource::Source(Source::with_address(address));
        let target = AttachTarget::Target(Target::default());
        Self::new(name, Role::RECEIVER, Some(source), Some(target))
    }

    /// A transaction controller: a sender whose target is the peer's coordinator (4.5.1),
    /// asking for `capabilities` (`amqp:local-transactions`, say). Declare and discharge
    /// messages travel on it like any others, and the outcomes come back as dispositions.
    pub fn coordinator(name: &str, capabilities: Vec<Symbol>) -> Self {
        let target = AttachTarget::Coordinator(Coordinator { capabilities });
        let source = AttachSource::Source(Source::default());
        let mut o = Self::new(name, Role::SENDER, Some(source), Some(target));
        o.snd_settle_mode = SenderSettleMode::UNSETTLED;
        o
    }

    fn new(
        name: &str,
        role: Role,
        source: Option<AttachSource>,
        target: Option<AttachTarget>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            role,
            source,
            target,
            snd_settle_mode: SenderSettleMode::MIXED,
            rcv_settle_mode: ReceiverSettleMode::FIRST,
            max_message_size: None,
            properties: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            unsettled: Vec::new(),
        }
    }
}

/// A delivery being received in several transfer frames.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) delivery_id: SequenceNo,
    pub(crate) tag: Bytes,
    pub(crate) settled: bool,
    /// The first part of the payload, as it came (a slice of its frame).
    pub(crate) first: Bytes,
    /// The payload once a second part came: the parts joined.
    pub(crate) joined: BytesMut,
    /// A resumed delivery (2.6.13) carried over from an earlier attachment.
    pub(crate) resumed: bool,
    /// A resumed delivery we hold no record of: 2.7.5 has the receiver ignore it.
    pub(crate) ignored: bool,
    /// The delivery state its first transfer carried (transactional work, 4.4.1).
    pub(crate) state: Option<DeliveryState>,
    /// Its part of what the connection's partial deliveries hold (none for a delivery
    /// whose first frame was its last).
    pub(crate) held: Option<HeldPart>,
}

/// The bytes that the connection's partial deliveries hold, all links together.
#[derive(Clone, Debug, Default)]
pub(crate) struct Held(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Held {
    /// The bytes held now.
    pub(crate) fn total(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A part of it, empty for now.
    pub(crate) fn part(&self) -> HeldPart {
        HeldPart { total: self.clone(), mine: 0 }
    }
}

/// One partial delivery's bytes in [`Held`]: added as they come, given back when its
/// payload is taken or when it is dropped, whichever way its link, session or connection
/// went.
#[derive(Debug)]
pub(crate) struct HeldPart {
    total: Held,
    mine: u64,
}

impl HeldPart {
    fn add(&mut self, n: usize) {
        self.mine += n as u64;
        self.total.0.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn clear(&mut self) {
        self.total.0.fetch_sub(self.mine, std::sync::atomic::Ordering::Relaxed);
        self.mine = 0;
    }

    /// What the connection's partial deliveries hold now.
    pub(crate) fn total(&self) -> u64 {
        self.total.total()
    }
}

impl Drop for HeldPart {
    fn drop(&mut self) {
        self.clear();
    }
}

impl Incoming {
    /// Adds one transfer's part of the payload (`more`: others follow). A delivery in one
    /// frame keeps the frame's storage; the parts of a delivery in several are copied into
    /// a buffer of its own from the first on, so that a partial delivery never keeps a
    /// receive buffer alive (what [`Held`] counts is what it holds), and each byte is
    /// copied once.
    pub(crate) fn add(&mut self, part: Bytes, more: bool) {
        if let Some(held) = self.held.as_mut() {
            held.add(part.len());
        }
        if self.first.is_empty() && self.joined.is_empty() {
            if more {
                self.joined.reserve(part.len() * 2);
                self.joined.extend_from_slice(&part);
            } else {
                self.first = part;
            }
            return;
        }
        if !self.first.is_empty() {
            let both = self.first.len() + part.len();
            self.joined.reserve(if more { both * 2 } else { both });
            self.joined.extend_from_slice(&self.first);
            self.first = Bytes::new();
        }
        self.joined.extend_from_slice(&part);
    }

    /// Bytes of payload so far.
    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.joined.len()
    }

    /// The whole payload.
    pub(crate) fn take_payload(&mut self) -> Bytes {
        if let Some(held) = self.held.as_mut() {
            held.clear();
        }
        if self.joined.is_empty() {
            std::mem::take(&mut self.first)
        } else {
            std::mem::take(&mut self.joined).freeze()
        }
    }
}

/// An unsettled delivery (either side).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Unsettled {
    pub(crate) tag: Bytes,
    pub(crate) state: Option<DeliveryState>,
}

/// One link's state.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) state: LinkState,
    pub(crate) remote_handle: Option<Handle>,
    pub(crate) options: LinkOptions,
    pub(crate) remote: Option<Attach>,
    /// Sender: deliveries sent; receiver: deliveries the sender has sent, as far as known.
    pub(crate) delivery_count: SequenceNo,
    /// Sender: what the receiver allows; receiver: what we allow.
    pub(crate) link_credit: u32,
    /// Receiver: the highest delivery-count any of our grants allowed (delivery-count at
    /// the grant plus the credit). Transfers below it were sent in good faith even if we
    /// have since lowered the credit; beyond it they exceed anything we granted.
    pub(crate) credit_limit: SequenceNo,
    pub(crate) available: u32,
    pub(crate) drain: bool,
    pub(crate) incoming: Option<Incoming>,
    /// Unsettled deliveries by delivery-id.
    pub(crate) unsettled: super::deliveries::DeliveryMap,
    /// Deliveries carried over from an earlier attachment, not yet resumed or forgotten.
    pub(crate) resumable: Vec<Resumable>,
    /// The peer's unsettled map was incomplete: a sender sends only resumed deliveries
    /// on this attachment (2.7.3).
    pub(crate) remote_incomplete: bool,
    /// Ours was: a receiver accepts only resumed deliveries on this attachment (2.7.3).
    pub(crate) local_incomplete: bool,
    /// A control link to our transaction coordinator (part 4).
    pub(crate) control: bool,
    /// Refused when the peer attached it: it never carried anything, and its going
    /// changes nothing kept for its name.
    pub(crate) refused: bool,
    /// The link's own number in its connection (see [`LinkId`]).
    pub(crate) serial: u32,
}

impl Link {
    pub(crate) fn new(options: LinkOptions, state: LinkState) -> Self {
        Self {
            name: options.name.clone(),
            role: options.role,
            state,
            remote_handle: None,
            remote: None,
            delivery_count: SequenceNo(0),
            link_credit: 0,
            credit_limit: SequenceNo(0),
            available: 0,
            drain: false,
            incoming: None,
            unsettled: Default::default(),
            resumable: options.unsettled.iter().map(Resumable::carried).collect(),
            remote_incomplete: false,
            local_incomplete: false,
            control: false,
            refused: false,
            serial: 0,
            options,
        }
    }

    /// What this link leaves unsettled: its unsettled deliveries and the carried-over
    /// ones not yet resumed, by tag.
    pub(crate) fn unsettled_deliveries(&self) -> Vec<UnsettledDelivery> {
        let current = self
            .unsettled
            .values()
            .map(|u| UnsettledDelivery { tag: u.tag.clone(), state: u.state.clone() });
        let carried = self.resumable.iter().map(Resumable::record);
        current.chain(carried).collect()
    }

    /// Takes the `unsettled` map of the peer's attach: each carried-over delivery learns
    /// what the peer knows of it.
    pub(crate) fn on_remote_unsettled(&mut self, map: &[UnsettledDelivery], incomplete: bool) {
        self.remote_incomplete = incomplete;
        // By tag, sorted (stably: of a tag listed twice, which a lenient decoder keeps, the
        // last entry counts, as the peer's map read in order would have it).
        let mut by_tag: Vec<(&[u8], &Option<DeliveryState>)> =
            map.iter().map(|u| (&u.tag[..], &u.state)).collect();
        by_tag.sort_by(|a, b| a.0.cmp(b.0));
        for r in &mut self.resumable {
            let after = by_tag.partition_point(|(tag, _)| *tag <= &r.tag[..]);
            let found =
                after.checked_sub(1).map(|i| by_tag[i]).filter(|(tag, _)| *tag == &r.tag[..]);
            r.remote = Some(match found {
                Some((_, state)) => PeerUnsettled::Known(state.clone()),
                None if incomplete => PeerUnsettled::NotListed,
                None => PeerUnsettled::Unknown,
            });
        }
    }

    /// Our attach.
    pub(crate) fn attach(&self, handle: Handle) -> Attach {
        let o = &self.options;
        Attach {
            name: o.name.clone().into(),
            handle,
            role: o.role,
            snd_settle_mode: o.snd_settle_mode,
            rcv_settle_mode: o.rcv_settle_mode,
            source: o.source.clone(),
            target: o.target.clone(),
            unsettled: (!self.resumable.is_empty())
                .then(|| unsettled_map(self.resumable.iter().map(Resumable::record))),
            incomplete_unsettled: false,
            // 2.7.3: the sender MUST set initial-delivery-count.
            initial_delivery_count: (o.role == Role::SENDER).then_some(self.delivery_count),
            max_message_size: o.max_message_size,
            offered_capabilities: o.offered_capabilities.clone(),
            desired_capabilities: o.desired_capabilities.clone(),
            properties: o.properties.clone(),
        }
    }

    /// The receiver settle mode in force: the receiver's own choice (2.7.3: the
    /// receiver's attach is authoritative for it).
    pub(crate) fn rcv_settle_mode(&self) -> ReceiverSettleMode {
        match (self.role, &self.remote) {
            (Role::RECEIVER, _) | (_, None) => self.options.rcv_settle_mode,
            (_, Some(remote)) => remote.rcv_settle_mode,
        }
    }

    /// The options of the link that answers the peer's attach: the mirrored role, the
    /// peer's source and target echoed.
    pub(crate) fn answering(remote: &Attach) -> LinkOptions {
        LinkOptions {
            name: remote.name.to_string(),
            role: Role(!remote.role.0),
            source: remote.source.clone(),
            target: remote.target.clone(),
            snd_settle_mode: remote.snd_settle_mode,
            rcv_settle_mode: remote.rcv_settle_mode,
            max_message_size: None,
            properties: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            unsettled: Vec::new(),
        }
    }
}

/// The `unsettled` field of an attach: a map from delivery-tag (binary) to delivery-state
/// (null when there is none yet).
pub(crate) fn unsettled_map(entries: impl Iterator<Item = UnsettledDelivery>) -> Value {
    let pairs = entries
        .map(|u| {
            let state = match &u.state {
                None => Value::Null,
                Some(s) => {
                    let mut buf = Vec::new();
                    s.encode(&mut buf);
                    // Our own encoding always reads back.
                    Value::decode(&buf).unwrap_or(Value::Null)
                }
            };
            (Value::Binary(u.tag, Fmt::Auto), state)
        })
        .collect();
    Value::Map(pairs, Fmt::Auto)
}

/// Reads the `unsettled` field of a peer's attach; `Err` names what is wrong with it.
pub(crate) fn read_unsettled_map(v: &Value) -> Result<Vec<UnsettledDelivery>, String> {
    let Value::Map(pairs, _) = v else {
        return Err(format!("unsettled is a {}, not a map", v.type_name()));
    };
    pairs
        .iter()
        .map(|(k, v)| {
            let Value::Binary(tag, _) = k else {
                return Err(format!(
                    "an unsettled map key is a {}, not a delivery-tag",
                    k.type_name()
                ));
            };
            let bytes = v.to_vec();
            let mut r = Reader::new(&bytes, DecodeOptions::STRICT);
            let state = DeliveryState::read_opt(&mut r)
                .map_err(|e| format!("the state of an unsettled delivery: {e}"))?;
            Ok(UnsettledDelivery { tag: tag.clone(), state })
        })
        .collect()
}

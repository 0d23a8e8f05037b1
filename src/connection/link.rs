//! Links (2.6): attach and detach, link flow control (credit, delivery-count, drain),
//! and the state of deliveries in flight on a link.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::types::{
    Attach, AttachSource, AttachTarget, DeliveryState, Fields, Handle, ReceiverSettleMode, Role,
    SenderSettleMode, SequenceNo, Source, Target,
};

use super::SessionId;

/// A link, named by its session and our handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    /// The session.
    pub session: SessionId,
    /// Our handle.
    pub handle: Handle,
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

/// What to attach.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkOptions {
    /// The link name (unique per direction between two containers).
    pub name: String,
    /// Our role.
    pub role: Role,
    /// The source (for a receiver: where messages come from).
    pub source: Option<Source>,
    /// The target (for a sender: where messages go).
    pub target: Option<Target>,
    /// Sender settle mode.
    pub snd_settle_mode: SenderSettleMode,
    /// Receiver settle mode.
    pub rcv_settle_mode: ReceiverSettleMode,
    /// The largest message we accept (receivers).
    pub max_message_size: Option<u64>,
    /// Link properties.
    pub properties: Option<Fields>,
}

impl LinkOptions {
    /// A sender to `address`.
    pub fn sender(name: &str, address: &str) -> Self {
        Self::new(name, Role::SENDER, None, Some(Target::with_address(address)))
    }

    /// A receiver from `address`.
    pub fn receiver(name: &str, address: &str) -> Self {
        Self::new(name, Role::RECEIVER, Some(Source::with_address(address)), None)
    }

    fn new(name: &str, role: Role, source: Option<Source>, target: Option<Target>) -> Self {
        Self {
            name: name.to_owned(),
            role,
            source,
            target,
            snd_settle_mode: SenderSettleMode::MIXED,
            rcv_settle_mode: ReceiverSettleMode::FIRST,
            max_message_size: None,
            properties: None,
        }
    }
}

/// A delivery being received in several transfer frames.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) delivery_id: SequenceNo,
    pub(crate) tag: Bytes,
    pub(crate) settled: bool,
    pub(crate) payload: BytesMut,
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
    pub(crate) unsettled: BTreeMap<u32, Unsettled>,
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
            unsettled: BTreeMap::new(),
            options,
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
            source: o.source.clone().map(AttachSource::Source),
            target: o.target.clone().map(AttachTarget::Target),
            unsettled: None,
            incomplete_unsettled: false,
            // 2.7.3: the sender MUST set initial-delivery-count.
            initial_delivery_count: (o.role == Role::SENDER).then_some(self.delivery_count),
            max_message_size: o.max_message_size,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
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
            source: match &remote.source {
                Some(AttachSource::Source(s)) => Some(s.clone()),
                _ => None,
            },
            target: match &remote.target {
                Some(AttachTarget::Target(t)) => Some(t.clone()),
                _ => None,
            },
            snd_settle_mode: remote.snd_settle_mode,
            rcv_settle_mode: remote.rcv_settle_mode,
            max_message_size: None,
            properties: None,
        }
    }
}

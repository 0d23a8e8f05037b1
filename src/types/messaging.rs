//! Definitions of part 3 (messaging): termini, delivery states, and the list-shaped
//! message sections (header and properties).

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::format as fc;
use crate::codec::{DecodeError, Described, ErrorKind, Reader, Symbol, Timestamp, Uuid};

use super::{
    read_descriptor, read_unknown_described, Codec, Composite, Coordinator, Declared, Error,
    Fields, SequenceNo, TerminusDurability, TerminusExpiryPolicy, TransactionalState,
};

composite! {
    /// The source of a link (3.5.3). Its `Default` is the spec's defaults: no address,
    /// durability none, expiry at session end, no time-out, not dynamic.
    #[derive(Default)]
    pub struct Source : "source", "amqp:source:list", 0x28 {
        /// The address of the source.
        address: ByteString => "address", optional;
        /// What state of the terminus is retained durably.
        durable: TerminusDurability => "durable", default(TerminusDurability::NONE);
        /// When the expiry timer starts.
        expiry_policy: TerminusExpiryPolicy => "expiry-policy", default(TerminusExpiryPolicy::SESSION_END);
        /// Seconds the terminus lives after expiry starts.
        timeout: u32 => "timeout", default(0);
        /// Ask the peer to create the node.
        dynamic: bool => "dynamic", default(false);
        /// Properties of the dynamically created node.
        dynamic_node_properties: Fields => "dynamic-node-properties", optional;
        /// `move` or `copy`.
        distribution_mode: Symbol => "distribution-mode", optional;
        /// Predicates filtering the messages admitted onto the link.
        filter: Fields => "filter", optional;
        /// Outcome applied to unsettled deliveries when the link ends.
        default_outcome: DeliveryState => "default-outcome", optional;
        /// Outcomes the source supports.
        outcomes: Vec<Symbol> => "outcomes", default(Vec::<Symbol>::new());
        /// Extension capabilities.
        capabilities: Vec<Symbol> => "capabilities", default(Vec::<Symbol>::new());
    }
}

composite! {
    /// The target of a link (3.5.4). Its `Default` is the spec's defaults.
    #[derive(Default)]
    pub struct Target : "target", "amqp:target:list", 0x29 {
        /// The address of the target.
        address: ByteString => "address", optional;
        /// What state of the terminus is retained durably.
        durable: TerminusDurability => "durable", default(TerminusDurability::NONE);
        /// When the expiry timer starts.
        expiry_policy: TerminusExpiryPolicy => "expiry-policy", default(TerminusExpiryPolicy::SESSION_END);
        /// Seconds the terminus lives after expiry starts.
        timeout: u32 => "timeout", default(0);
        /// Ask the peer to create the node.
        dynamic: bool => "dynamic", default(false);
        /// Properties of the dynamically created node.
        dynamic_node_properties: Fields => "dynamic-node-properties", optional;
        /// Extension capabilities.
        capabilities: Vec<Symbol> => "capabilities", default(Vec::<Symbol>::new());
    }
}

impl Source {
    /// A source with only an address.
    pub fn with_address(address: impl Into<ByteString>) -> Self {
        Self { address: Some(address.into()), ..Self::default() }
    }
}

impl Target {
    /// A target with only an address.
    pub fn with_address(address: impl Into<ByteString>) -> Self {
        Self { address: Some(address.into()), ..Self::default() }
    }
}

composite! {
    /// Partial progress of a delivery (3.4.1).
    pub struct Received : "received", "amqp:received:list", 0x23 {
        /// The section up to which the message is received.
        section_number: u32 => "section-number", mandatory;
        /// The offset into that section.
        section_offset: u64 => "section-offset", mandatory;
    }
}

composite! {
    /// The terminal outcome: the message was processed (3.4.2).
    #[derive(Default)]
    pub struct Accepted : "accepted", "amqp:accepted:list", 0x24 {}
}

composite! {
    /// The terminal outcome: the message is invalid and will not be processed (3.4.3).
    #[derive(Default)]
    pub struct Rejected : "rejected", "amqp:rejected:list", 0x25 {
        /// Why.
        error: Error => "error", optional;
    }
}

composite! {
    /// The terminal outcome: the message was not (and will not be) processed (3.4.4).
    #[derive(Default)]
    pub struct Released : "released", "amqp:released:list", 0x26 {}
}

composite! {
    /// The terminal outcome: the message was modified but not processed (3.4.5).
    #[derive(Default)]
    pub struct Modified : "modified", "amqp:modified:list", 0x27 {
        /// Count the transfer as an unsuccessful delivery attempt.
        delivery_failed: bool => "delivery-failed", optional;
        /// Do not redeliver to this link's receiver.
        undeliverable_here: bool => "undeliverable-here", optional;
        /// Annotations to merge into the message.
        message_annotations: Fields => "message-annotations", optional;
    }
}

composite! {
    /// Lifetime policy: delete the node when the link that created it closes (3.5.10).
    #[derive(Default)]
    pub struct DeleteOnClose : "delete-on-close", "amqp:delete-on-close:list", 0x2b {}
}

composite! {
    /// Lifetime policy: delete when no links are attached (3.5.11).
    #[derive(Default)]
    pub struct DeleteOnNoLinks : "delete-on-no-links", "amqp:delete-on-no-links:list", 0x2c {}
}

composite! {
    /// Lifetime policy: delete when it holds no messages (3.5.12).
    #[derive(Default)]
    pub struct DeleteOnNoMessages : "delete-on-no-messages", "amqp:delete-on-no-messages:list", 0x2d {}
}

composite! {
    /// Lifetime policy: delete when it has no links and no messages (3.5.13).
    #[derive(Default)]
    pub struct DeleteOnNoLinksOrMessages : "delete-on-no-links-or-messages", "amqp:delete-on-no-links-or-messages:list", 0x2e {}
}

/// The state of a delivery: one of the outcomes of part 3, `received`, or one of the
/// transaction states of part 4. A state with a descriptor this crate does not know is
/// kept whole in [`DeliveryState::Other`].
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryState {
    /// received (3.4.1).
    Received(Received),
    /// accepted (3.4.2).
    Accepted(Accepted),
    /// rejected (3.4.3).
    Rejected(Rejected),
    /// released (3.4.4).
    Released(Released),
    /// modified (3.4.5).
    Modified(Modified),
    /// declared (4.5.3).
    Declared(Declared),
    /// transactional-state (4.5.5).
    TransactionalState(TransactionalState),
    /// A delivery state this crate does not know.
    Other(Box<Described>),
}

impl DeliveryState {
    /// The spec's name of the state, or `"unknown"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Received(_) => Received::NAME,
            Self::Accepted(_) => Accepted::NAME,
            Self::Rejected(_) => Rejected::NAME,
            Self::Released(_) => Released::NAME,
            Self::Modified(_) => Modified::NAME,
            Self::Declared(_) => Declared::NAME,
            Self::TransactionalState(_) => TransactionalState::NAME,
            Self::Other(_) => "unknown",
        }
    }

    /// Whether this is a terminal outcome (accepted, rejected, released, modified).
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            Self::Accepted(_) | Self::Rejected(_) | Self::Released(_) | Self::Modified(_)
        )
    }
}

/// Declares a union of described types that dispatches on the descriptor and keeps
/// unknown descriptors whole.
macro_rules! described_union {
    ($name:ident : $label:literal { $($variant:ident($ty:ty)),* $(,)? }) => {
        impl Codec for $name {
            const TYPE: &'static str = $label;
            fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
                if r.peek_u8()? == fc::NULL {
                    r.read_u8()?;
                    return Ok(None);
                }
                let d = read_descriptor(r)?;
                $(
                    if d.is::<$ty>() {
                        return Ok(Some(Self::$variant(<$ty>::read_list(r)?)));
                    }
                )*
                Ok(Some(Self::Other(Box::new(read_unknown_described(r, d)?))))
            }
            fn encoded_len(&self) -> usize {
                match self {
                    $( Self::$variant(v) => Codec::encoded_len(v), )*
                    Self::Other(d) => 1 + d.descriptor.encoded_len() + d.value.encoded_len(),
                }
            }
            fn encode(&self, out: &mut Vec<u8>) {
                match self {
                    $( Self::$variant(v) => Codec::encode(v, out), )*
                    // As `Value::Described` encodes, without a copy of it.
                    Self::Other(d) => {
                        out.push(fc::DESCRIBED);
                        d.descriptor.encode(out);
                        d.value.encode(out);
                    }
                }
            }
        }
    };
}

described_union!(DeliveryState: "delivery-state" {
    Received(Received),
    Accepted(Accepted),
    Rejected(Rejected),
    Released(Released),
    Modified(Modified),
    Declared(Declared),
    TransactionalState(TransactionalState),
});

/// The source field of an attach.
// A source is the usual case: boxing it would allocate on every attach for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum AttachSource {
    /// A source (3.5.3).
    Source(Source),
    /// A source type this crate does not know.
    Other(Box<Described>),
}

described_union!(AttachSource: "source" { Source(Source) });

/// The target field of an attach.
#[derive(Clone, Debug, PartialEq)]
pub enum AttachTarget {
    /// A target (3.5.4).
    Target(Target),
    /// A transaction coordinator (4.5.1).
    Coordinator(Coordinator),
    /// A target type this crate does not know.
    Other(Box<Described>),
}

described_union!(AttachTarget: "target" { Target(Target), Coordinator(Coordinator) });

composite! {
    /// Transport headers for a message (3.2.1).
    pub struct Header : "header", "amqp:header:list", 0x70 {
        /// Durability requirements.
        durable: bool => "durable", default(false);
        /// Relative message priority.
        priority: u8 => "priority", default(4);
        /// Time to live in milliseconds.
        ttl: u32 => "ttl", optional;
        /// Whether the message has not been acquired before.
        first_acquirer: bool => "first-acquirer", default(false);
        /// Number of prior unsuccessful delivery attempts.
        delivery_count: u32 => "delivery-count", default(0);
    }
}

impl Default for Header {
    fn default() -> Self {
        Self { durable: false, priority: 4, ttl: None, first_acquirer: false, delivery_count: 0 }
    }
}

/// A message-id or correlation-id (3.2.11 to 3.2.14): ulong, uuid, binary or string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// message-id-ulong.
    Ulong(u64),
    /// message-id-uuid.
    Uuid(Uuid),
    /// message-id-binary.
    Binary(Bytes),
    /// message-id-string.
    String(ByteString),
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ulong(v) => write!(f, "{v}"),
            Self::Uuid(u) => write!(f, "{u}"),
            Self::Binary(b) => {
                for x in b.iter() {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
            Self::String(s) => f.write_str(s),
        }
    }
}

impl From<&str> for MessageId {
    fn from(s: &str) -> Self {
        Self::String(s.into())
    }
}

impl From<u64> for MessageId {
    fn from(v: u64) -> Self {
        Self::Ulong(v)
    }
}

impl Codec for MessageId {
    const TYPE: &'static str = "message-id";
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let pos = r.position();
        Ok(Some(match r.peek_u8()? {
            fc::NULL => {
                r.read_u8()?;
                return Ok(None);
            }
            fc::ULONG0 | fc::SMALLULONG | fc::ULONG => {
                Self::Ulong(<u64 as Codec>::read_opt(r)?.unwrap_or(0))
            }
            fc::UUID => {
                r.read_u8()?;
                Self::Uuid(Uuid(r.read_array()?))
            }
            fc::VBIN8 | fc::VBIN32 => {
                Self::Binary(<Bytes as Codec>::read_opt(r)?.unwrap_or_default())
            }
            fc::STR8 | fc::STR32 => {
                Self::String(<ByteString as Codec>::read_opt(r)?.unwrap_or_default())
            }
            other => {
                return Err(r.error_at(
                    pos,
                    ErrorKind::UnexpectedType {
                        expected: "message-id (ulong, uuid, binary or string)",
                        found: other,
                    },
                ))
            }
        }))
    }
    fn encoded_len(&self) -> usize {
        match self {
            Self::Ulong(v) => Codec::encoded_len(v),
            Self::Uuid(_) => 17,
            Self::Binary(b) => Codec::encoded_len(b),
            Self::String(s) => Codec::encoded_len(s),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ulong(v) => Codec::encode(v, out),
            Self::Uuid(u) => {
                out.push(fc::UUID);
                out.extend_from_slice(&u.0);
            }
            Self::Binary(b) => Codec::encode(b, out),
            Self::String(s) => Codec::encode(s, out),
        }
    }
}

composite! {
    /// Immutable properties of a message (3.2.4).
    #[derive(Default)]
    pub struct Properties : "properties", "amqp:properties:list", 0x73 {
        /// Application message identifier.
        message_id: MessageId => "message-id", optional;
        /// Identity of the user responsible for producing the message.
        user_id: Bytes => "user-id", optional;
        /// The address of the node the message is destined for.
        to: ByteString => "to", optional;
        /// The subject of the message.
        subject: ByteString => "subject", optional;
        /// The node to send replies to.
        reply_to: ByteString => "reply-to", optional;
        /// Application correlation identifier.
        correlation_id: MessageId => "correlation-id", optional;
        /// MIME content type of the body.
        content_type: Symbol => "content-type", optional;
        /// MIME content encoding of the body.
        content_encoding: Symbol => "content-encoding", optional;
        /// When the message is considered expired.
        absolute_expiry_time: Timestamp => "absolute-expiry-time", optional;
        /// When the message was created.
        creation_time: Timestamp => "creation-time", optional;
        /// The group the message belongs to.
        group_id: ByteString => "group-id", optional;
        /// The relative position of this message within its group.
        group_sequence: SequenceNo => "group-sequence", optional;
        /// The group the reply message belongs to.
        reply_to_group_id: ByteString => "reply-to-group-id", optional;
    }
}

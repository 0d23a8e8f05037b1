//! Protocol violations at the connection level, each mapped in one place to the AMQP
//! condition that reports it and the scope it closes, and misuse of the API.

use std::fmt;

use crate::codec::DecodeError;
use crate::frame::FrameError;
use crate::types::{condition, Error};

/// Which endpoint a violation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The link: detach with the error.
    Link,
    /// The session: end with the error.
    Session,
    /// The connection: close with the error.
    Connection,
}

/// Something the peer did that the spec forbids, or that this endpoint cannot accept.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The byte stream cannot be split into frames.
    Framing(FrameError),
    /// A frame body could not be decoded.
    Decode(DecodeError),
    /// A frame other than open came first.
    FirstFrameNotOpen(&'static str),
    /// A second open.
    DuplicateOpen,
    /// The peer's max-frame-size is below 512.
    MaxFrameSizeTooSmall(u32),
    /// A SASL frame outside the SASL exchange, or an AMQP frame inside it.
    UnexpectedFrameType(&'static str),
    /// A SASL frame the exchange did not expect at this point.
    UnexpectedSasl(&'static str),
    /// A frame on a channel above the negotiated channel-max.
    ChannelMax {
        /// The channel used.
        channel: u16,
        /// The limit.
        max: u16,
    },
    /// The peer said nothing for longer than our idle time-out.
    IdleTimeout,
    /// The peer's open asks for an idle-time-out shorter than we keep
    /// ([`Config::shortest_peer_idle_time_out`](super::Config)).
    IdleTimeOutTooShort {
        /// What it asked for, in milliseconds.
        asked: u32,
        /// The shortest we keep, in milliseconds.
        shortest: u32,
    },
    /// A frame on a channel no session is mapped to.
    UnknownChannel {
        /// The channel.
        channel: u16,
        /// The performative that used it.
        performative: &'static str,
    },
    /// A begin on a channel that already has a session.
    ChannelInUse(u16),
    /// An attach on a handle already in use (session scope).
    HandleInUse(u32),
    /// An attach on a handle above the handle-max we announced (session scope).
    HandleMaxExceeded {
        /// The handle.
        handle: u32,
        /// Our handle-max.
        max: u32,
    },
    /// A frame for a handle no link uses (session scope).
    UnattachedHandle {
        /// The handle.
        handle: u32,
        /// The performative.
        performative: &'static str,
    },
    /// A transfer beyond our incoming-window (session scope).
    WindowViolation,
    /// A transfer beyond the credit we granted (link scope).
    TransferLimitExceeded,
    /// The first transfer of a delivery without a delivery-id (link scope).
    MissingDeliveryId,
    /// A continuation transfer whose delivery-id differs from the first's (link scope).
    DeliveryIdChanged {
        /// The delivery's id.
        expected: u32,
        /// The id on the continuation.
        found: u32,
    },
    /// A message larger than our max-message-size (link scope).
    MessageSizeExceeded {
        /// The size so far.
        size: usize,
        /// The limit.
        max: u64,
    },
    /// The deliveries being received in several frames on the whole connection hold
    /// more than [`Config::max_incoming_held`](super::Config::max_incoming_held) (link
    /// scope: the link whose transfer went over is detached, and its partial delivery
    /// dropped).
    IncomingHeldExceeded {
        /// The bytes held, this transfer's included.
        held: u64,
        /// The limit.
        max: u64,
    },
    /// A transfer on a link on which we send (link scope).
    TransferToSender,
    /// A performative that needs an open connection arrived before the open exchange.
    NotOpen(&'static str),
    /// The `unsettled` map of an attach is not a map of delivery-tags to delivery states
    /// (link scope).
    BadUnsettledMap(String),
    /// A new (not resumed) delivery after we sent an incomplete unsettled map (link scope).
    NewDeliveryDuringResume,
    /// The peer began more sessions than wait for the application's answer, or sent more
    /// frames on one than we hold before it is answered (session scope).
    PendingBeginOverflow,
    /// A disposition put a delivery into a transaction that cannot take work: unknown,
    /// timed out, or rolled back (link scope; part 4).
    TransactionWork {
        /// The transaction error's condition (`amqp:transaction:unknown-id`, …).
        condition: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl Violation {
    /// The AMQP error condition that reports it.
    pub fn condition(&self) -> &'static str {
        match self {
            Self::Framing(_) | Self::UnexpectedFrameType(_) | Self::MaxFrameSizeTooSmall(_) => {
                condition::FRAMING_ERROR
            }
            Self::Decode(_) => condition::DECODE_ERROR,
            Self::FirstFrameNotOpen(_)
            | Self::DuplicateOpen
            | Self::UnexpectedSasl(_)
            | Self::NotOpen(_) => condition::ILLEGAL_STATE,
            Self::ChannelMax { .. } | Self::ChannelInUse(_) => condition::NOT_ALLOWED,
            Self::UnknownChannel { .. } => condition::NOT_FOUND,
            Self::HandleInUse(_) => condition::HANDLE_IN_USE,
            Self::HandleMaxExceeded { .. } => condition::NOT_ALLOWED,
            Self::UnattachedHandle { .. } => condition::UNATTACHED_HANDLE,
            Self::WindowViolation => condition::WINDOW_VIOLATION,
            Self::TransferLimitExceeded => condition::TRANSFER_LIMIT_EXCEEDED,
            Self::MissingDeliveryId | Self::DeliveryIdChanged { .. } => condition::INVALID_FIELD,
            Self::MessageSizeExceeded { .. } => condition::MESSAGE_SIZE_EXCEEDED,
            Self::IncomingHeldExceeded { .. } => condition::RESOURCE_LIMIT_EXCEEDED,
            Self::TransferToSender => condition::NOT_ALLOWED,
            Self::BadUnsettledMap(_) => condition::INVALID_FIELD,
            Self::NewDeliveryDuringResume => condition::ILLEGAL_STATE,
            Self::PendingBeginOverflow => condition::RESOURCE_LIMIT_EXCEEDED,
            Self::IdleTimeout => condition::RESOURCE_LIMIT_EXCEEDED,
            Self::IdleTimeOutTooShort { .. } => condition::NOT_ALLOWED,
            Self::TransactionWork { condition, .. } => condition,
        }
    }

    /// Which endpoint it ends: the connection (closed with the error), a session (ended
    /// with it) or a link (detached with it).
    pub fn scope(&self) -> Scope {
        match self {
            Self::HandleInUse(_)
            | Self::HandleMaxExceeded { .. }
            | Self::UnattachedHandle { .. }
            | Self::WindowViolation
            | Self::PendingBeginOverflow => Scope::Session,
            Self::TransferLimitExceeded
            | Self::MissingDeliveryId
            | Self::DeliveryIdChanged { .. }
            | Self::MessageSizeExceeded { .. }
            | Self::IncomingHeldExceeded { .. }
            | Self::TransferToSender
            | Self::BadUnsettledMap(_)
            | Self::NewDeliveryDuringResume
            | Self::TransactionWork { .. } => Scope::Link,
            _ => Scope::Connection,
        }
    }

    /// The error to send in the close (or end, or detach).
    pub fn to_error(&self) -> Error {
        Error::new(self.condition(), self.to_string())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Framing(e) => write!(f, "2.3.1 frame: {e}"),
            Self::Decode(e) => write!(f, "2.3.2 frame body: {e}"),
            Self::FirstFrameNotOpen(p) => {
                write!(f, "2.4.1 opening a connection: the first frame must be open, not {p}")
            }
            Self::DuplicateOpen => f.write_str("2.4.1 opening a connection: a second open"),
            Self::MaxFrameSizeTooSmall(s) => {
                write!(f, "2.7.1 open: max-frame-size {s} is below MIN-MAX-FRAME-SIZE (512)")
            }
            Self::UnexpectedFrameType(t) => {
                write!(f, "5.3.2 SASL negotiation: unexpected {t} frame")
            }
            Self::UnexpectedSasl(p) => write!(f, "5.3.2 SASL negotiation: unexpected {p}"),
            Self::ChannelMax { channel, max } => {
                write!(f, "2.7.1 open: channel {channel} exceeds channel-max {max}")
            }
            Self::IdleTimeout => {
                f.write_str("2.4.5 idle time-out: the peer sent nothing within our idle-time-out")
            }
            Self::IdleTimeOutTooShort { asked, shortest } => write!(
                f,
                "2.4.5 idle time-out: the peer's idle-time-out of {asked} ms is shorter than the \
                 {shortest} ms kept here"
            ),
            Self::NotOpen(p) => write!(f, "2.4.1 opening a connection: {p} before open"),
            Self::UnknownChannel { channel, performative } => {
                write!(
                    f,
                    "2.5.1 sessions: {performative} on channel {channel}, which no session uses"
                )
            }
            Self::ChannelInUse(c) => {
                write!(f, "2.5.1 sessions: begin on channel {c}, already in use")
            }
            Self::HandleInUse(h) => write!(f, "2.7.3 attach: handle {h} is already in use"),
            Self::HandleMaxExceeded { handle, max } => {
                write!(f, "2.7.2 begin: attach on handle {handle}, above handle-max {max}")
            }
            Self::UnattachedHandle { handle, performative } => {
                write!(
                    f,
                    "2.6.2 link handle: {performative} on handle {handle}, which no link uses"
                )
            }
            Self::WindowViolation => {
                f.write_str("2.5.6 session flow control: a transfer beyond the incoming-window")
            }
            Self::TransferLimitExceeded => {
                f.write_str("2.6.7 flow control: a transfer beyond the link-credit granted")
            }
            Self::MissingDeliveryId => {
                f.write_str("2.7.5 transfer: delivery-id missing on first frame")
            }
            Self::DeliveryIdChanged { expected, found } => write!(
                f,
                "2.7.5 transfer: continuation has delivery-id {found}, the delivery is {expected}"
            ),
            Self::MessageSizeExceeded { size, max } => {
                write!(f, "2.7.3 attach: a {size}-byte message exceeds max-message-size {max}")
            }
            Self::IncomingHeldExceeded { held, max } => write!(
                f,
                "deliveries being received hold {held} bytes on this connection, over its limit of {max}"
            ),
            Self::TransferToSender => {
                f.write_str("2.6.1 links: a transfer on a link whose receiver is the peer")
            }
            Self::BadUnsettledMap(why) => write!(f, "2.7.3 attach: {why}"),
            Self::NewDeliveryDuringResume => f.write_str(
                "2.7.3 attach: a new delivery after our incomplete unsettled map (only resumed ones may follow)",
            ),
            Self::PendingBeginOverflow => f.write_str(
                "2.5.1 sessions: more unanswered begins, or frames on one, than we hold",
            ),
            Self::TransactionWork { why, .. } => write!(f, "4.4 transactional work: {why}"),
        }
    }
}

/// Why a connection ended without a close exchange, or with an error.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke the protocol; we closed (or are closing) with the error.
    Violation(Violation),
    /// The peer speaks another protocol or version, or skipped a required layer.
    ProtocolMismatch(String),
    /// SASL failed.
    Sasl(crate::sasl::SaslError),
    /// The peer closed with an error.
    Remote(Error),
    /// The transport ended without a close exchange: after the peer's protocol header
    /// (before its close, or before it answered ours), or before the peer sent anything.
    TransportClosed,
    /// Our close went unanswered for the close time-out.
    CloseTimeout,
    /// The peer did not open within [`Config::open_timeout`](super::Config::open_timeout)
    /// (its protocol header, SASL and open): the time allowed.
    OpenTimeout(std::time::Duration),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Violation(v) => write!(f, "protocol violation ({}): {v}", v.condition()),
            Self::ProtocolMismatch(m) => write!(f, "protocol mismatch: {m}"),
            Self::Sasl(e) => write!(f, "SASL: {e}"),
            Self::Remote(e) => write!(f, "the peer closed the connection: {e}"),
            Self::TransportClosed => {
                f.write_str("the transport closed without a close exchange (the peer's close never came, or the peer sent nothing at all)")
            }
            Self::CloseTimeout => f.write_str("the peer did not answer our close in time"),
            // In whole milliseconds: no float formatting in the browser's module.
            Self::OpenTimeout(d) => write!(
                f,
                "the peer did not open within {} ms (its protocol header, SASL and open)",
                d.as_secs().saturating_mul(1000).saturating_add(u64::from(d.subsec_millis()))
            ),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Violation(v) => Some(v),
            Self::Sasl(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for Violation {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Framing(e) => Some(e),
            Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

/// A command that the connection's state does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The connection is closing or closed.
    Closed,
    /// The command needs an open connection.
    NotOpen,
    /// No session has that id.
    UnknownSession,
    /// Every channel up to channel-max is in use.
    ChannelsExhausted,
    /// Every handle up to handle-max is in use.
    HandlesExhausted,
    /// No link has that id.
    UnknownLink,
    /// The link is not attached (yet, or any more).
    NotAttached,
    /// The session is ending (our end is sent, or the peer's awaits our answer): nothing
    /// more goes out on it, and its links end with it.
    SessionEnding,
    /// The link has sent its detach already.
    DetachSent,
    /// The peer began the session and it waits for
    /// [`Connection::accept_begin`](super::Connection::accept_begin): nothing goes out on
    /// it before.
    SessionNotAccepted,
    /// The command is for the other role (credit is granted by receivers, messages sent by
    /// senders).
    WrongRole,
    /// The receiver has granted no credit.
    NoCredit,
    /// The peer's session incoming-window is full, or the frames of a delivery sent
    /// before wait for it to open; wait for [`Event::SessionWindow`](super::Event).
    SessionWindowFull,
    /// A frame would exceed the peer's max-frame-size.
    TooLarge,
    /// The settlement breaks the link's settle modes: a settled delivery on an unsettled
    /// sender (or the reverse), or a receiver in mode second settling before the sender.
    SettleOrder,
    /// The peer's unsettled map was incomplete: only resumed deliveries may be sent on this
    /// attachment (2.7.3).
    ResumeOnly,
    /// The link carries no delivery with that tag over from an earlier attachment.
    NotResumable,
    /// The session is not waiting for the application's answer to the peer's begin.
    NotRequested,
    /// A delivery-tag longer than 32 bytes (2.8.7: "up to 32 octets"), or an empty one
    /// where the runtime's API asks for a tag (some peers cannot handle those).
    InvalidDeliveryTag {
        /// The tag's length.
        len: usize,
    },
    /// The message exceeds the max-message-size the peer set on the link.
    MessageTooLarge {
        /// The message's size.
        size: usize,
        /// The peer's limit.
        max: u64,
    },
    /// The coordinator has no transaction with that id waiting for this command (never
    /// declared, already discharged, or rolled back).
    UnknownTransaction,
    /// A delivery settled through a link it did not come on (the runtime's receivers).
    OtherLink,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection is closing or closed"),
            Self::NotOpen => f.write_str("the connection is not open yet"),
            Self::UnknownSession => f.write_str("no such session"),
            Self::ChannelsExhausted => f.write_str("every channel up to channel-max is in use"),
            Self::HandlesExhausted => f.write_str("every handle up to handle-max is in use"),
            Self::UnknownLink => f.write_str("no such link"),
            Self::NotAttached => f.write_str("the link is not attached"),
            Self::SessionEnding => f.write_str("the session is ending"),
            Self::DetachSent => f.write_str("the link has sent its detach already"),
            Self::SessionNotAccepted => {
                f.write_str("the peer's begin waits for accept_begin or refuse_begin")
            }
            Self::WrongRole => f.write_str("the link has the other role for this command"),
            Self::NoCredit => f.write_str("the receiver has granted no credit"),
            Self::SessionWindowFull => f.write_str("the peer's session incoming-window is full"),
            Self::TooLarge => f.write_str("a frame would exceed the peer's max-frame-size"),
            Self::InvalidDeliveryTag { len } => {
                write!(f, "a delivery-tag is at most 32 bytes long, not {len}")
            }
            Self::MessageTooLarge { size, max } => {
                write!(f, "a {size}-byte message exceeds the peer's max-message-size {max}")
            }
            Self::SettleOrder => f.write_str("the settlement breaks the link's settle modes"),
            Self::ResumeOnly => f.write_str(
                "the peer's unsettled map was incomplete: only resumed deliveries may be sent",
            ),
            Self::NotResumable => {
                f.write_str("the link carries no delivery with that tag from an earlier attach")
            }
            Self::NotRequested => f.write_str("the session does not wait for an answer"),
            Self::UnknownTransaction => {
                f.write_str("the coordinator has no such transaction waiting for this")
            }
            Self::OtherLink => f.write_str("the delivery came on another link"),
        }
    }
}

impl std::error::Error for UsageError {}

//! Shared definitions of part 2, section 2.8: roles, settle modes, handles, sequence
//! numbers, errors and their conditions.

use crate::codec::Symbol;

use super::Fields;

restricted! {
    /// The role of a link endpoint (2.8.1): sender (`false`) or receiver (`true`).
    #[derive(Copy, Default)]
    pub struct Role(bool) : "role" {
        /// The endpoint sends messages.
        SENDER = false => "sender",
        /// The endpoint receives messages.
        RECEIVER = true => "receiver",
    }
}

restricted! {
    /// Settlement policy for a sender (2.8.2).
    #[derive(Copy)]
    pub struct SenderSettleMode(u8) : "sender-settle-mode", closed {
        /// The sender sends every delivery unsettled.
        UNSETTLED = 0 => "unsettled",
        /// The sender sends every delivery settled.
        SETTLED = 1 => "settled",
        /// The sender may send either.
        MIXED = 2 => "mixed",
    }
}

restricted! {
    /// Settlement policy for a receiver (2.8.3).
    #[derive(Copy)]
    pub struct ReceiverSettleMode(u8) : "receiver-settle-mode", closed {
        /// The receiver settles spontaneously.
        FIRST = 0 => "first",
        /// The receiver settles only after the sender has settled.
        SECOND = 1 => "second",
    }
}

restricted! {
    /// The handle of a link on a session (2.8.4).
    #[derive(Copy, Default)]
    pub struct Handle(u32) : "handle" {}
}

restricted! {
    /// A 32-bit RFC 1982 serial number (2.8.9): delivery-id, delivery-count,
    /// transfer-number. Compare with [`SequenceNo::precedes`], never with `<`.
    #[derive(Copy, Default)]
    pub struct SequenceNo(u32) : "sequence-no" {}
}

impl SequenceNo {
    /// The next number, wrapping at 2^32.
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }

    /// `self + n`, wrapping.
    pub fn wrapping_add(self, n: u32) -> Self {
        Self(self.0.wrapping_add(n))
    }

    /// How far `later` is ahead of `self` (wrapping difference).
    pub fn distance_to(self, later: Self) -> u32 {
        later.0.wrapping_sub(self.0)
    }

    /// RFC 1982 "less than": `self` comes before `other` when `other` is ahead by fewer
    /// than 2^31.
    pub fn precedes(self, other: Self) -> bool {
        let d = other.0.wrapping_sub(self.0);
        d != 0 && d < 0x8000_0000
    }
}

restricted! {
    /// Durability of a terminus (3.5.5).
    #[derive(Copy, Default)]
    pub struct TerminusDurability(u32) : "terminus-durability", closed {
        /// No terminus state is retained durably.
        NONE = 0 => "none",
        /// Only the existence and configuration of the terminus is retained.
        CONFIGURATION = 1 => "configuration",
        /// Unsettled state is retained too.
        UNSETTLED_STATE = 2 => "unsettled-state",
    }
}

restricted! {
    /// When the expiry timer of a terminus starts (3.5.6).
    pub struct TerminusExpiryPolicy(Symbol) : "terminus-expiry-policy", closed {
        /// When the link detaches.
        LINK_DETACH = Symbol::from_static("link-detach") => "link-detach",
        /// When the session ends.
        SESSION_END = Symbol::from_static("session-end") => "session-end",
        /// When the connection closes.
        CONNECTION_CLOSE = Symbol::from_static("connection-close") => "connection-close",
        /// Never.
        NEVER = Symbol::from_static("never") => "never",
    }
}

impl Default for TerminusExpiryPolicy {
    fn default() -> Self {
        Self::SESSION_END
    }
}

restricted! {
    /// The outcome of a SASL exchange (5.3.3.6).
    #[derive(Copy)]
    pub struct SaslCode(u8) : "sasl-code", closed {
        /// Authentication succeeded.
        OK = 0 => "ok",
        /// Failed: bad credentials.
        AUTH = 1 => "auth",
        /// Failed: a system error.
        SYS = 2 => "sys",
        /// Failed: a permanent system error.
        SYS_PERM = 3 => "sys-perm",
        /// Failed: a transient system error.
        SYS_TEMP = 4 => "sys-temp",
    }
}

/// The error conditions the spec defines (2.8.15 to 2.8.18, and 4.5.8 for transactions).
pub mod condition {
    /// An internal error occurred.
    pub const INTERNAL_ERROR: &str = "amqp:internal-error";
    /// A peer attempted to work with a remote entity that does not exist.
    pub const NOT_FOUND: &str = "amqp:not-found";
    /// A peer attempted to work with a remote entity to which it has no access.
    pub const UNAUTHORIZED_ACCESS: &str = "amqp:unauthorized-access";
    /// Data could not be decoded.
    pub const DECODE_ERROR: &str = "amqp:decode-error";
    /// A peer exceeded its resource allocation.
    pub const RESOURCE_LIMIT_EXCEEDED: &str = "amqp:resource-limit-exceeded";
    /// The peer tried to use a frame in a manner inconsistent with the semantics.
    pub const NOT_ALLOWED: &str = "amqp:not-allowed";
    /// An invalid field was passed in a frame body.
    pub const INVALID_FIELD: &str = "amqp:invalid-field";
    /// The peer tried to use functionality that is not implemented.
    pub const NOT_IMPLEMENTED: &str = "amqp:not-implemented";
    /// The client attempted to work with a locked entity.
    pub const RESOURCE_LOCKED: &str = "amqp:resource-locked";
    /// The peer made a request that was not allowed because a precondition failed.
    pub const PRECONDITION_FAILED: &str = "amqp:precondition-failed";
    /// A server entity the client is working with has been deleted.
    pub const RESOURCE_DELETED: &str = "amqp:resource-deleted";
    /// The peer sent a frame that is not permitted in the current state.
    pub const ILLEGAL_STATE: &str = "amqp:illegal-state";
    /// The peer cannot send a frame because the smallest encoding exceeds max-frame-size.
    pub const FRAME_SIZE_TOO_SMALL: &str = "amqp:frame-size-too-small";
    /// An operator intervened to close the connection.
    pub const CONNECTION_FORCED: &str = "amqp:connection:forced";
    /// A valid frame header cannot be formed from the incoming byte stream.
    pub const FRAMING_ERROR: &str = "amqp:connection:framing-error";
    /// The container is no longer available on the current connection.
    pub const CONNECTION_REDIRECT: &str = "amqp:connection:redirect";
    /// The peer violated incoming window for the session.
    pub const WINDOW_VIOLATION: &str = "amqp:session:window-violation";
    /// Input was received for a link that was detached with an error.
    pub const ERRANT_LINK: &str = "amqp:session:errant-link";
    /// An attach was received using a handle that is already in use.
    pub const HANDLE_IN_USE: &str = "amqp:session:handle-in-use";
    /// A frame (other than attach) was received referencing a handle not in use.
    pub const UNATTACHED_HANDLE: &str = "amqp:session:unattached-handle";
    /// An operator intervened to detach for some reason.
    pub const DETACH_FORCED: &str = "amqp:link:detach-forced";
    /// The peer sent more message transfers than currently allowed on the link.
    pub const TRANSFER_LIMIT_EXCEEDED: &str = "amqp:link:transfer-limit-exceeded";
    /// The peer sent a larger message than is supported on the link.
    pub const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";
    /// The address provided cannot be resolved to a terminus at the current container.
    pub const LINK_REDIRECT: &str = "amqp:link:redirect";
    /// The link has been attached elsewhere, causing the existing attachment to be forcibly closed.
    pub const STOLEN: &str = "amqp:link:stolen";
    /// The specified txn-id does not exist.
    pub const TRANSACTION_UNKNOWN_ID: &str = "amqp:transaction:unknown-id";
    /// The transaction was rolled back for a reason other than a discharge.
    pub const TRANSACTION_ROLLBACK: &str = "amqp:transaction:rollback";
    /// The transaction timed out.
    pub const TRANSACTION_TIMEOUT: &str = "amqp:transaction:timeout";
}

composite! {
    /// Details of an error (2.8.14).
    pub struct Error : "error", "amqp:error:list", 0x1d {
        /// A symbolic condition, one of [`condition`] or a vendor's.
        condition: Symbol => "condition", mandatory;
        /// A description for people.
        description: bytestring::ByteString => "description", optional;
        /// Information about the condition.
        info: Fields => "info", optional;
    }
}

impl Error {
    /// An error with a condition and a description.
    pub fn new(condition: &str, description: impl Into<String>) -> Self {
        Self {
            condition: Symbol::from(condition),
            description: Some(description.into().into()),
            info: None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.as_str())?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

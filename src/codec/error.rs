//! Decoding errors and lenient-mode warnings.
//!
//! A [`DecodeError`] carries the byte offset (from the start of the buffer handed to the
//! decoder) where the problem was found and an [`ErrorKind`] that says what was expected.
//! [`ErrorKind::Truncated`] means the bytes ended inside a value; every other kind means
//! the bytes present are malformed.

use std::fmt;

/// A value could not be decoded.
///
/// One pointer wide, so that every `Result` on the decoding paths stays small and is
/// returned in registers; the details live behind it, reachable as fields
/// (`err.offset`, `err.kind`) through `Deref`.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodeError(Box<ErrorDetail>);

/// Where and why decoding failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Offset of the offending byte from the start of the decoded buffer.
    pub offset: usize,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl std::ops::Deref for DecodeError {
    type Target = ErrorDetail;
    fn deref(&self) -> &ErrorDetail {
        &self.0
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("offset", &self.0.offset)
            .field("kind", &self.0.kind)
            .finish()
    }
}

/// What was wrong with the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes ended inside a value: `needed` more were required, `available` were left.
    Truncated {
        /// Bytes the value needs from this offset.
        needed: usize,
        /// Bytes actually left.
        available: usize,
    },
    /// A constructor the spec does not define.
    UnknownFormatCode(u8),
    /// A boolean (0x56) whose octet is neither 0x00 nor 0x01.
    InvalidBoolean(u8),
    /// A string that is not valid UTF-8.
    InvalidUtf8,
    /// A symbol with a byte outside 7-bit ASCII.
    InvalidSymbol,
    /// A char that is not a Unicode scalar value.
    InvalidChar(u32),
    /// A map whose element count is odd (keys and values must pair up).
    OddMapCount(u32),
    /// A compound's size field is too small to hold its own count field.
    SizeTooSmall {
        /// The declared size.
        size: u32,
        /// The least size that holds the count field.
        minimum: u32,
    },
    /// A compound declares more elements than its size can hold.
    CountExceedsSize {
        /// Declared element count.
        count: u32,
        /// Bytes available for the elements.
        bytes: usize,
    },
    /// Bytes left inside a compound after its declared elements.
    TrailingBytes {
        /// What the compound is (`"list8"`, `"open"`, …).
        within: &'static str,
        /// How many bytes were left.
        left: usize,
    },
    /// Nesting deeper than the configured limit.
    DepthLimit(u32),
    /// An array whose elements take no bytes (such as null or uint0) with a count above the
    /// decoder's limit, refused so that a few bytes cannot demand a huge allocation.
    ArrayTooLong {
        /// Declared element count.
        count: u32,
        /// The limit applied.
        limit: usize,
    },
    /// An array whose element constructor is itself not allowed there (a described
    /// descriptor that is not followed by a primitive or compound constructor).
    InvalidArrayConstructor(u8),
    /// A value of another type than the one the context requires.
    UnexpectedType {
        /// What was required.
        expected: &'static str,
        /// The format code found.
        found: u8,
    },
    /// A described type with a descriptor that is not the one required here.
    UnexpectedDescriptor {
        /// What was required.
        expected: &'static str,
        /// The descriptor found, rendered for people (`0x0000000000000010`, `amqp:open:list`).
        found: String,
    },
    /// A mandatory field of a composite type is absent or null.
    MissingField {
        /// The composite type (`"open"`).
        composite: &'static str,
        /// The field (`"container-id"`).
        field: &'static str,
    },
    /// A composite type's list has more fields than the spec defines.
    TooManyFields {
        /// The composite type.
        composite: &'static str,
        /// Fields present.
        count: u32,
        /// Fields defined.
        defined: usize,
    },
    /// A value that the spec restricts (a choice or range) has a value it does not allow.
    InvalidValue {
        /// The field or type.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A map with two equal keys (part 1, 1.6.23: such a map is invalid).
    DuplicateKey(String),
    /// Message sections out of the order the spec fixes (part 3, 3.2), or a section twice.
    SectionOrder {
        /// The section found.
        found: &'static str,
        /// The section it may not follow.
        after: &'static str,
    },
}

impl DecodeError {
    /// A new error at `offset`.
    #[cold]
    pub fn new(offset: usize, kind: ErrorKind) -> Self {
        Self(Box::new(ErrorDetail { offset, kind }))
    }

    /// Shifts the offset by `base`, for errors found inside an embedded buffer.
    pub fn at_base(mut self, base: usize) -> Self {
        self.0.offset += base;
        self
    }

    /// Takes the detail out.
    pub fn into_detail(self) -> ErrorDetail {
        *self.0
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for DecodeError {}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: expected {needed} more bytes, {available} left")
            }
            Self::UnknownFormatCode(c) => write!(f, "unknown format code 0x{c:02x}"),
            Self::InvalidBoolean(b) => {
                write!(f, "boolean octet 0x{b:02x} is neither 0x00 nor 0x01")
            }
            Self::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Self::InvalidSymbol => f.write_str("symbol has a byte outside 7-bit ASCII"),
            Self::InvalidChar(c) => write!(f, "char 0x{c:08x} is not a Unicode scalar value"),
            Self::OddMapCount(n) => write!(f, "map count {n} is odd: keys and values must pair"),
            Self::SizeTooSmall { size, minimum } => {
                write!(f, "compound size {size} is below the {minimum} its count field needs")
            }
            Self::CountExceedsSize { count, bytes } => {
                write!(f, "count {count} cannot fit in the {bytes} bytes declared")
            }
            Self::TrailingBytes { within, left } => {
                write!(f, "{left} bytes left inside {within} after its last element")
            }
            Self::DepthLimit(d) => write!(f, "nesting deeper than the limit of {d}"),
            Self::ArrayTooLong { count, limit } => write!(
                f,
                "array of {count} zero-width elements exceeds the decoder's limit of {limit}"
            ),
            Self::InvalidArrayConstructor(c) => {
                write!(f, "format code 0x{c:02x} cannot be an array element constructor")
            }
            Self::UnexpectedType { expected, found } => match crate::codec::format::name(*found) {
                Some(name) => write!(f, "expected {expected}, found {name} (0x{found:02x})"),
                None => write!(f, "expected {expected}, found format code 0x{found:02x}"),
            },
            Self::UnexpectedDescriptor { expected, found } => {
                write!(f, "expected descriptor of {expected}, found {found}")
            }
            Self::MissingField { composite, field } => {
                write!(f, "{composite}: mandatory field {field} is absent or null")
            }
            Self::TooManyFields { composite, count, defined } => {
                write!(f, "{composite}: list has {count} fields, the spec defines {defined}")
            }
            Self::InvalidValue { what, reason } => write!(f, "{what}: {reason}"),
            Self::DuplicateKey(k) => write!(f, "map has the key {k} twice"),
            Self::SectionOrder { found, after } => {
                write!(f, "message section {found} may not follow {after}")
            }
        }
    }
}

/// Something a lenient decode accepted that a strict decode refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Offset of the deviation.
    pub offset: usize,
    /// The error a strict decode reports here.
    pub kind: ErrorKind,
    /// What the lenient decoder did instead.
    pub action: &'static str,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {} ({})", self.offset, self.kind, self.action)
    }
}

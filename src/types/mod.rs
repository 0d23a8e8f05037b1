//! The definitions of parts 2 to 5 of the spec: performatives, SASL frames, errors,
//! termini, delivery states, transactions and message sections, each declared once with
//! the `composite!` macro (`src/types/macros.rs`).

#[macro_use]
mod macros;
mod definitions;
mod field;
mod messaging;
mod performatives;
mod sasl;
mod transactions;

pub use definitions::*;
pub use field::{Codec, Fields, Layout};
pub use messaging::*;
pub use performatives::*;
pub use sasl::*;
pub use transactions::*;

pub(crate) use field::list_len;

use crate::codec::format as fc;
use crate::codec::{DecodeError, ErrorKind, Reader, Value};

/// A composite type: a described list of named fields (part 1, 1.4).
pub trait Composite: Sized {
    /// The spec's name (`"open"`).
    const NAME: &'static str;
    /// The symbolic descriptor (`"amqp:open:list"`).
    const SYMBOL: &'static str;
    /// The numeric descriptor (`0x0000_0000_0000_0010`).
    const CODE: u64;
    /// The spec's field names, in order.
    const FIELDS: &'static [&'static str];
    /// Each field's type on the wire ([`Codec::WIRE`]), in the order of
    /// [`Composite::FIELDS`].
    const FIELD_TYPES: &'static [&'static str];

    /// Reads the `count` list elements that follow the list header.
    fn read_fields(r: &mut Reader<'_>, count: u32) -> Result<Self, DecodeError>;

    /// Writes the fields in `layout` (the compact one leaves out trailing nulls) and
    /// returns how many it wrote.
    fn write_fields(&self, layout: Layout, out: &mut Vec<u8>) -> usize;

    /// Reads the list that follows this type's descriptor.
    #[inline]
    fn read_list(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (count, c) = open_list(r)?;
        let v = Self::read_fields(r, count)?;
        close_list(r, c, Self::NAME)?;
        Ok(v)
    }

    /// Bytes taken by the whole described list in `layout` (encoded to find out: the
    /// encoders that need a size write first and measure).
    fn encoded_len_with(&self, layout: Layout) -> usize {
        let mut v = Vec::new();
        self.encode_with(layout, &mut v);
        v.len()
    }

    /// Writes the descriptor and the list in `layout`, in one pass: the list header is
    /// filled in once the fields are written (list0, list8 or list32, the smallest that
    /// holds them).
    fn encode_with(&self, layout: Layout, out: &mut Vec<u8>) {
        out.extend_from_slice(&[fc::DESCRIBED, fc::SMALLULONG, Self::CODE as u8]);
        let header = field::ListHeader::reserve(out);
        let count = self.write_fields(layout, out);
        header.finish(count, out);
    }

    /// Decodes one value of this type from `buf`.
    fn decode(buf: &[u8], opts: crate::codec::DecodeOptions) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, opts);
        let v = read_composite::<Self>(&mut r)?.ok_or_else(|| {
            DecodeError::new(
                0,
                ErrorKind::MissingField { composite: Self::NAME, field: "(the value itself)" },
            )
        })?;
        if !r.is_empty() {
            return Err(
                r.error(ErrorKind::TrailingBytes { within: Self::NAME, left: r.remaining() })
            );
        }
        Ok(v)
    }

    /// The encoding as a vector, compact layout.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_with(Layout::Compact, &mut v);
        v
    }
}

/// A descriptor read from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DescriptorId {
    /// A numeric descriptor.
    Code(u64),
    /// A symbolic descriptor.
    Symbol(String),
}

impl DescriptorId {
    /// Whether this names the composite `T`.
    pub fn is<T: Composite>(&self) -> bool {
        match self {
            Self::Code(c) => *c == T::CODE,
            Self::Symbol(s) => s == T::SYMBOL,
        }
    }

    /// The numeric code, mapping known symbolic names to their codes.
    pub fn code(&self) -> Option<u64> {
        match self {
            Self::Code(c) => Some(*c),
            Self::Symbol(s) => code_for_symbol(s),
        }
    }
}

impl std::fmt::Display for DescriptorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "0x{:08x}:0x{:08x}", c >> 32, c & 0xffff_ffff),
            Self::Symbol(s) => crate::codec::write_shown(f, s),
        }
    }
}

/// Reads the `0x00` and the descriptor that follows it. A descriptor that is neither a
/// ulong nor a symbol is refused (strict) or, for a string, accepted with a warning.
#[inline]
pub fn read_descriptor(r: &mut Reader<'_>) -> Result<DescriptorId, DecodeError> {
    // Every standard descriptor is usually written 0x00 0x53 <code>: take that at once.
    if let [fc::DESCRIBED, fc::SMALLULONG, code, ..] = *r.rest() {
        r.advance(3);
        return Ok(DescriptorId::Code(u64::from(code)));
    }
    let pos = r.position();
    let code = r.read_u8()?;
    if code != fc::DESCRIBED {
        return Err(
            r.error_at(pos, ErrorKind::UnexpectedType { expected: "described type", found: code })
        );
    }
    let dpos = r.position();
    match r.peek_u8()? {
        fc::ULONG0 | fc::SMALLULONG | fc::ULONG => {
            Ok(DescriptorId::Code(<u64 as Codec>::read_opt(r)?.unwrap_or(0)))
        }
        fc::SYM8 | fc::SYM32 | fc::STR8 | fc::STR32 => {
            let s = <crate::codec::Symbol as Codec>::read_opt(r)?.unwrap_or_default();
            Ok(DescriptorId::Symbol(s.as_str().to_owned()))
        }
        other => Err(r.error_at(
            dpos,
            ErrorKind::UnexpectedType { expected: "ulong or symbol descriptor", found: other },
        )),
    }
}

/// Reads a described composite `T`, or `None` for null.
#[inline]
pub fn read_composite<T: Composite>(r: &mut Reader<'_>) -> Result<Option<T>, DecodeError> {
    if r.peek_u8()? == fc::NULL {
        r.read_u8()?;
        return Ok(None);
    }
    let pos = r.position();
    let d = read_descriptor(r)?;
    if !d.is::<T>() {
        return Err(r.error_at(
            pos,
            ErrorKind::UnexpectedDescriptor { expected: T::SYMBOL, found: d.to_string() },
        ));
    }
    T::read_list(r).map(Some)
}

/// Opens the list of a composite's fields (its descriptor read): the field count, and
/// what [`close_list`] needs. One function for every composite, not a copy in each.
#[inline(never)]
fn open_list(r: &mut Reader<'_>) -> Result<(u32, crate::codec::Compound), DecodeError> {
    let pos = r.position();
    let code = r.read_u8()?;
    if !matches!(code, fc::LIST0 | fc::LIST8 | fc::LIST32) {
        return Err(r.error_at(pos, ErrorKind::UnexpectedType { expected: "list", found: code }));
    }
    // The described value and its list each take a nesting level, as they do for the
    // generic decoder: a composite read as itself or as a value nests equally deep.
    r.enter()?;
    r.enter()?;
    r.open_compound(code)
}

/// Closes what [`open_list`] opened, once the fields are read.
#[inline(never)]
fn close_list(
    r: &mut Reader<'_>,
    c: crate::codec::Compound,
    name: &'static str,
) -> Result<(), DecodeError> {
    r.close_compound(c, name)?;
    r.leave();
    r.leave();
    Ok(())
}

/// What a mandatory field of a composite holds while the composite is read, until the
/// field itself is (the `composite!` macro's decoders read into the value).
pub(crate) trait Placeholder {
    /// Any value: it is always overwritten, or the read fails.
    fn placeholder() -> Self;
}

macro_rules! placeholder_by_default {
    ($($t:ty),*) => {
        $(impl Placeholder for $t {
            fn placeholder() -> Self {
                Self::default()
            }
        })*
    };
}

placeholder_by_default!(
    bool,
    u8,
    u16,
    u32,
    u64,
    bytes::Bytes,
    bytestring::ByteString,
    crate::codec::Symbol,
    Vec<crate::codec::Symbol>
);

/// A composite's mandatory field was absent or null.
#[cold]
#[inline(never)]
pub(crate) fn missing_field(
    r: &Reader<'_>,
    start: usize,
    composite: &'static str,
    field: &'static str,
) -> DecodeError {
    r.error_at(start, ErrorKind::MissingField { composite, field })
}

/// After the defined fields: more list elements are refused in strict mode and skipped
/// with a warning in lenient mode.
pub(crate) fn skip_extra_fields(
    r: &mut Reader<'_>,
    composite: &'static str,
    count: u32,
    defined: usize,
) -> Result<(), DecodeError> {
    if (count as usize) > defined {
        let pos = r.position();
        r.deviation(
            pos,
            ErrorKind::TooManyFields { composite, count, defined },
            "ignored the extra fields",
        )?;
        // Ignored, but checked as any value is: a performative read leniently must still
        // be a value every decoder accepts. Read (and dropped) by the owned decoder, which
        // reads the fields' values too: the allocation-free validator, which accepts the
        // same values (the fuzzing differential checks that), would bring itself and the
        // borrowed decoder into every program that reads frames (14 KB of the browser
        // client), for a case only lenient decoding reaches.
        for _ in defined..count as usize {
            Value::read(r)?;
        }
    }
    Ok(())
}

/// Reads the rest of a described value whose descriptor was not recognised, keeping it.
pub(crate) fn read_unknown_described(
    r: &mut Reader<'_>,
    d: DescriptorId,
) -> Result<crate::codec::Described, DecodeError> {
    let descriptor = match d {
        DescriptorId::Code(c) => Value::from(c),
        DescriptorId::Symbol(s) => Value::Symbol(s.as_str().into(), crate::codec::Fmt::Auto),
    };
    r.enter()?;
    let value = Value::read(r)?;
    r.leave();
    Ok(crate::codec::Described { descriptor, value })
}

/// Every composite the spec defines: (symbolic name, code, spec name).
pub const KNOWN_DESCRIPTORS: &[(&str, u64, &str)] = &[
    ("amqp:open:list", 0x10, "open"),
    ("amqp:begin:list", 0x11, "begin"),
    ("amqp:attach:list", 0x12, "attach"),
    ("amqp:flow:list", 0x13, "flow"),
    ("amqp:transfer:list", 0x14, "transfer"),
    ("amqp:disposition:list", 0x15, "disposition"),
    ("amqp:detach:list", 0x16, "detach"),
    ("amqp:end:list", 0x17, "end"),
    ("amqp:close:list", 0x18, "close"),
    ("amqp:error:list", 0x1d, "error"),
    ("amqp:received:list", 0x23, "received"),
    ("amqp:accepted:list", 0x24, "accepted"),
    ("amqp:rejected:list", 0x25, "rejected"),
    ("amqp:released:list", 0x26, "released"),
    ("amqp:modified:list", 0x27, "modified"),
    ("amqp:source:list", 0x28, "source"),
    ("amqp:target:list", 0x29, "target"),
    ("amqp:delete-on-close:list", 0x2b, "delete-on-close"),
    ("amqp:delete-on-no-links:list", 0x2c, "delete-on-no-links"),
    ("amqp:delete-on-no-messages:list", 0x2d, "delete-on-no-messages"),
    ("amqp:delete-on-no-links-or-messages:list", 0x2e, "delete-on-no-links-or-messages"),
    ("amqp:coordinator:list", 0x30, "coordinator"),
    ("amqp:declare:list", 0x31, "declare"),
    ("amqp:discharge:list", 0x32, "discharge"),
    ("amqp:declared:list", 0x33, "declared"),
    ("amqp:transactional-state:list", 0x34, "transactional-state"),
    ("amqp:sasl-mechanisms:list", 0x40, "sasl-mechanisms"),
    ("amqp:sasl-init:list", 0x41, "sasl-init"),
    ("amqp:sasl-challenge:list", 0x42, "sasl-challenge"),
    ("amqp:sasl-response:list", 0x43, "sasl-response"),
    ("amqp:sasl-outcome:list", 0x44, "sasl-outcome"),
    ("amqp:header:list", 0x70, "header"),
    ("amqp:delivery-annotations:map", 0x71, "delivery-annotations"),
    ("amqp:message-annotations:map", 0x72, "message-annotations"),
    ("amqp:properties:list", 0x73, "properties"),
    ("amqp:application-properties:map", 0x74, "application-properties"),
    ("amqp:data:binary", 0x75, "data"),
    ("amqp:amqp-sequence:list", 0x76, "amqp-sequence"),
    ("amqp:amqp-value:*", 0x77, "amqp-value"),
    ("amqp:footer:map", 0x78, "footer"),
];

/// The code of a known symbolic descriptor.
pub fn code_for_symbol(s: &str) -> Option<u64> {
    KNOWN_DESCRIPTORS.iter().find(|(n, _, _)| *n == s).map(|(_, c, _)| *c)
}

/// The spec name of a known descriptor code.
pub fn name_for_code(code: u64) -> Option<&'static str> {
    KNOWN_DESCRIPTORS.iter().find(|(_, c, _)| *c == code).map(|(_, _, n)| *n)
}

/// Pairs the spec's field names with the values of an encoded composite, for rendering.
pub(crate) fn field_values(
    encoded: &[u8],
    names: &[&'static str],
) -> Vec<(&'static str, Option<Value>)> {
    let fields = match Value::decode(encoded) {
        Ok(Value::Described(d)) => match d.value {
            Value::List(items, _) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut it = fields.into_iter();
    names
        .iter()
        .map(|n| {
            let v = match it.next() {
                Some(Value::Null) | None => None,
                Some(v) => Some(v),
            };
            (*n, v)
        })
        .collect()
}

/// The field names of the list-shaped composite with descriptor `code`, for annotating
/// encoded values.
pub fn fields_for_code(code: u64) -> Option<&'static [&'static str]> {
    composite_table(code).map(|(names, _)| names)
}

/// The field names and wire types ([`Codec::WIRE`]) of the list-shaped composite with
/// descriptor `code`, for writing hand-written frames.
pub fn field_types_for_code(
    code: u64,
) -> Option<(&'static [&'static str], &'static [&'static str])> {
    composite_table(code)
}

fn composite_table(code: u64) -> Option<(&'static [&'static str], &'static [&'static str])> {
    macro_rules! table {
        ($($t:ty),*) => {
            $( if code == <$t>::CODE { return Some((<$t>::FIELDS, <$t>::FIELD_TYPES)); } )*
        };
    }
    table!(
        Open,
        Begin,
        Attach,
        Flow,
        Transfer,
        Disposition,
        Detach,
        End,
        Close,
        Error,
        Received,
        Accepted,
        Rejected,
        Released,
        Modified,
        Source,
        Target,
        DeleteOnClose,
        DeleteOnNoLinks,
        DeleteOnNoMessages,
        DeleteOnNoLinksOrMessages,
        Coordinator,
        Declare,
        Discharge,
        Declared,
        TransactionalState,
        SaslMechanisms,
        SaslInit,
        SaslChallenge,
        SaslResponse,
        SaslOutcome,
        Header,
        Properties
    );
    None
}

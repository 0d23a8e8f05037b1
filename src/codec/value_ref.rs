//! The borrowed, zero-copy view of encoded values.
//!
//! [`ValueRef`] reads one value without allocating: strings and binaries borrow the input,
//! and lists, maps and arrays are decoded lazily as you iterate them. Their declared size
//! and count are checked against the bytes present when the value is read; each element is
//! checked when the iterator reaches it. The borrowed view is always strict; decode with
//! [`Value`](super::Value) in lenient mode to accept and report deviations.

use super::error::{DecodeError, ErrorKind};
use super::format as fc;
use super::primitive::{Timestamp, Uuid};
use super::reader::{DecodeOptions, Reader};
use super::value::{check_array_count, read_char, read_sized, Value};

/// One encoded value, borrowed from the input.
///
/// Equality compares meaning, with floats compared by their bits (so a NaN equals itself),
/// as [`Value`]'s does.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Debug))]
pub enum ValueRef<'a> {
    /// null.
    Null,
    /// boolean.
    Boolean(bool),
    /// ubyte.
    Ubyte(u8),
    /// ushort.
    Ushort(u16),
    /// uint.
    Uint(u32),
    /// ulong.
    Ulong(u64),
    /// byte.
    Byte(i8),
    /// short.
    Short(i16),
    /// int.
    Int(i32),
    /// long.
    Long(i64),
    /// float.
    Float(f32),
    /// double.
    Double(f64),
    /// decimal32 bits.
    Decimal32([u8; 4]),
    /// decimal64 bits.
    Decimal64([u8; 8]),
    /// decimal128 bits.
    Decimal128([u8; 16]),
    /// char.
    Char(char),
    /// timestamp.
    Timestamp(Timestamp),
    /// uuid.
    Uuid(Uuid),
    /// binary.
    Binary(&'a [u8]),
    /// string (valid UTF-8).
    String(&'a str),
    /// symbol (ASCII).
    Symbol(&'a str),
    /// list, decoded lazily.
    List(ListRef<'a>),
    /// map, decoded lazily.
    Map(MapRef<'a>),
    /// array, decoded lazily.
    Array(ArrayRef<'a>),
    /// described value.
    Described(DescribedRef<'a>),
}

/// In WebAssembly, as [`Value`]'s: the text people read, not the derived form.
#[cfg(target_arch = "wasm32")]
impl std::fmt::Debug for ValueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_owned_value() {
            Ok(v) => std::fmt::Debug::fmt(&v, f),
            Err(e) => write!(f, "(undecodable: {e})"),
        }
    }
}

impl PartialEq for ValueRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        use ValueRef as V;
        match (self, other) {
            (V::Float(a), V::Float(b)) => a.to_bits() == b.to_bits(),
            (V::Double(a), V::Double(b)) => a.to_bits() == b.to_bits(),
            (V::Null, V::Null) => true,
            (V::Boolean(a), V::Boolean(b)) => a == b,
            (V::Ubyte(a), V::Ubyte(b)) => a == b,
            (V::Ushort(a), V::Ushort(b)) => a == b,
            (V::Uint(a), V::Uint(b)) => a == b,
            (V::Ulong(a), V::Ulong(b)) => a == b,
            (V::Byte(a), V::Byte(b)) => a == b,
            (V::Short(a), V::Short(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            (V::Long(a), V::Long(b)) => a == b,
            (V::Decimal32(a), V::Decimal32(b)) => a == b,
            (V::Decimal64(a), V::Decimal64(b)) => a == b,
            (V::Decimal128(a), V::Decimal128(b)) => a == b,
            (V::Char(a), V::Char(b)) => a == b,
            (V::Timestamp(a), V::Timestamp(b)) => a == b,
            (V::Uuid(a), V::Uuid(b)) => a == b,
            (V::Binary(a), V::Binary(b)) => a == b,
            (V::String(a), V::String(b)) => a == b,
            (V::Symbol(a), V::Symbol(b)) => a == b,
            (V::List(a), V::List(b)) => a == b,
            (V::Map(a), V::Map(b)) => a == b,
            (V::Array(a), V::Array(b)) => a == b,
            (V::Described(a), V::Described(b)) => a == b,
            _ => false,
        }
    }
}

/// The elements of a list, decoded one by one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ListRef<'a> {
    count: u32,
    body: &'a [u8],
    offset: usize,
}

/// The entries of a map, decoded one pair at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapRef<'a> {
    list: ListRef<'a>,
}

/// The elements of an array, sharing one constructor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayRef<'a> {
    count: u32,
    elem: u8,
    descriptor: Option<&'a [u8]>,
    body: &'a [u8],
    offset: usize,
}

/// A described value: its descriptor, and the described value still encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DescribedRef<'a> {
    /// The descriptor.
    pub descriptor: Descriptor<'a>,
    value: &'a [u8],
    offset: usize,
}

/// A descriptor as found on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor<'a> {
    /// A numeric descriptor: `(domain-id << 32) | descriptor-id`.
    Code(u64),
    /// A symbolic descriptor such as `amqp:open:list`.
    Symbol(&'a str),
    /// Any other descriptor value, still encoded.
    Other(&'a [u8]),
}

impl std::fmt::Display for Descriptor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "0x{:08x}:0x{:08x}", c >> 32, c & 0xffff_ffff),
            Self::Symbol(s) => super::write_shown(f, s),
            Self::Other(raw) => {
                f.write_str("value ")?;
                for b in raw.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl<'a> ValueRef<'a> {
    /// Reads the value at the start of `buf`; returns it and the bytes it took.
    pub fn decode(buf: &'a [u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(buf, DecodeOptions::STRICT);
        let v = Self::read(&mut r)?;
        Ok((v, r.position()))
    }

    /// Reads one value at the reader's position.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let pos = r.position();
        let code = r.read_u8()?;
        if code == fc::DESCRIBED {
            r.enter()?;
            let dpos = r.position();
            let descriptor = match Self::read(r)? {
                Self::Ulong(c) => Descriptor::Code(c),
                Self::Symbol(s) => Descriptor::Symbol(s),
                _ => Descriptor::Other(&r.buffer()[dpos..r.position()]),
            };
            let vpos = r.offset();
            let value = r.skip_value()?;
            r.leave();
            return Ok(Self::Described(DescribedRef { descriptor, value, offset: vpos }));
        }
        Self::read_body(r, code, pos)
    }

    /// Reads what follows constructor `code`, read at `pos`.
    pub(crate) fn read_body(r: &mut Reader<'a>, code: u8, pos: usize) -> Result<Self, DecodeError> {
        Ok(match code {
            fc::NULL => Self::Null,
            fc::TRUE => Self::Boolean(true),
            fc::FALSE => Self::Boolean(false),
            fc::BOOLEAN => match r.read_u8()? {
                0 => Self::Boolean(false),
                1 => Self::Boolean(true),
                b => return Err(r.error_at(pos + 1, ErrorKind::InvalidBoolean(b))),
            },
            fc::UBYTE => Self::Ubyte(r.read_u8()?),
            fc::USHORT => Self::Ushort(r.read_u16()?),
            fc::UINT0 => Self::Uint(0),
            fc::SMALLUINT => Self::Uint(u32::from(r.read_u8()?)),
            fc::UINT => Self::Uint(r.read_u32()?),
            fc::ULONG0 => Self::Ulong(0),
            fc::SMALLULONG => Self::Ulong(u64::from(r.read_u8()?)),
            fc::ULONG => Self::Ulong(r.read_u64()?),
            fc::BYTE => Self::Byte(r.read_u8()? as i8),
            fc::SHORT => Self::Short(r.read_u16()? as i16),
            fc::SMALLINT => Self::Int(i32::from(r.read_u8()? as i8)),
            fc::INT => Self::Int(r.read_u32()? as i32),
            fc::SMALLLONG => Self::Long(i64::from(r.read_u8()? as i8)),
            fc::LONG => Self::Long(r.read_u64()? as i64),
            fc::FLOAT => Self::Float(f32::from_bits(r.read_u32()?)),
            fc::DOUBLE => Self::Double(f64::from_bits(r.read_u64()?)),
            fc::DECIMAL32 => Self::Decimal32(r.read_array()?),
            fc::DECIMAL64 => Self::Decimal64(r.read_array()?),
            fc::DECIMAL128 => Self::Decimal128(r.read_array()?),
            fc::CHAR => Self::Char(read_char(r, pos)?),
            fc::TIMESTAMP => Self::Timestamp(Timestamp(r.read_u64()? as i64)),
            fc::UUID => Self::Uuid(Uuid(r.read_array()?)),
            fc::VBIN8 | fc::VBIN32 => Self::Binary(read_sized(r, code)?),
            fc::STR8 | fc::STR32 => {
                let s = read_sized(r, code)?;
                Self::String(
                    std::str::from_utf8(s).map_err(|_| r.error_at(pos, ErrorKind::InvalidUtf8))?,
                )
            }
            fc::SYM8 | fc::SYM32 => {
                let s = read_sized(r, code)?;
                if !s.is_ascii() {
                    return Err(r.error_at(pos, ErrorKind::InvalidSymbol));
                }
                // ASCII is valid UTF-8, so this cannot fail.
                Self::Symbol(
                    std::str::from_utf8(s)
                        .map_err(|_| r.error_at(pos, ErrorKind::InvalidSymbol))?,
                )
            }
            fc::LIST0 | fc::LIST8 | fc::LIST32 | fc::MAP8 | fc::MAP32 => {
                let (count, c) = r.open_compound(code)?;
                let offset = r.offset();
                let body = r.read_slice(r.remaining())?;
                r.close_compound(c, "list")?;
                let list = ListRef { count, body, offset };
                if matches!(code, fc::MAP8 | fc::MAP32) {
                    Self::Map(MapRef { list })
                } else {
                    Self::List(list)
                }
            }
            fc::ARRAY8 | fc::ARRAY32 => {
                let (count, c) = r.open_compound(code)?;
                let mut elem = r.read_u8()?;
                let mut descriptor = None;
                if elem == fc::DESCRIBED {
                    descriptor = Some(r.skip_value()?);
                    elem = r.read_u8()?;
                }
                check_array_count(r, &c, elem, count)?;
                let offset = r.offset();
                let body = r.read_slice(r.remaining())?;
                r.close_compound(c, "array")?;
                Self::Array(ArrayRef { count, elem, descriptor, body, offset })
            }
            other => return Err(r.error_at(pos, ErrorKind::UnknownFormatCode(other))),
        })
    }

    /// Reads a simple value (not a compound or described value) at the start of `b` in
    /// its common encodings, or `None`, for the general reader to take over.
    #[inline]
    pub(crate) fn read_simple(b: &'a [u8]) -> Option<Self> {
        let mut f = super::Fast::new(b);
        Some(match f.u8()? {
            fc::NULL => Self::Null,
            fc::TRUE => Self::Boolean(true),
            fc::FALSE => Self::Boolean(false),
            fc::UINT0 => Self::Uint(0),
            fc::SMALLUINT => Self::Uint(u32::from(f.u8()?)),
            fc::UINT => Self::Uint(f.u32()?),
            fc::ULONG0 => Self::Ulong(0),
            fc::SMALLULONG => Self::Ulong(u64::from(f.u8()?)),
            fc::ULONG => Self::Ulong(f.u64()?),
            fc::SMALLINT => Self::Int(i32::from(f.u8()? as i8)),
            fc::INT => Self::Int(f.u32()? as i32),
            fc::SMALLLONG => Self::Long(i64::from(f.u8()? as i8)),
            fc::LONG => Self::Long(f.u64()? as i64),
            fc::DOUBLE => Self::Double(f64::from_bits(f.u64()?)),
            fc::TIMESTAMP => Self::Timestamp(Timestamp(f.u64()? as i64)),
            code @ (fc::STR8 | fc::STR32) => {
                Self::String(std::str::from_utf8(f.sized(code)?).ok()?)
            }
            code @ (fc::VBIN8 | fc::VBIN32) => Self::Binary(f.sized(code)?),
            _ => return None,
        })
    }

    /// An owned copy, decoding compounds in full (strictly).
    pub fn to_owned_value(&self) -> Result<Value, DecodeError> {
        Ok(match *self {
            Self::Null => Value::Null,
            Self::Boolean(b) => Value::from(b),
            Self::Ubyte(v) => Value::from(v),
            Self::Ushort(v) => Value::from(v),
            Self::Uint(v) => Value::from(v),
            Self::Ulong(v) => Value::from(v),
            Self::Byte(v) => Value::from(v),
            Self::Short(v) => Value::from(v),
            Self::Int(v) => Value::from(v),
            Self::Long(v) => Value::from(v),
            Self::Float(v) => Value::from(v),
            Self::Double(v) => Value::from(v),
            Self::Decimal32(v) => Value::Decimal32(v),
            Self::Decimal64(v) => Value::Decimal64(v),
            Self::Decimal128(v) => Value::Decimal128(v),
            Self::Char(v) => Value::Char(v),
            Self::Timestamp(v) => Value::Timestamp(v),
            Self::Uuid(v) => Value::Uuid(v),
            Self::Binary(b) => Value::from(bytes::Bytes::copy_from_slice(b)),
            Self::String(s) => Value::from(s),
            Self::Symbol(s) => Value::Symbol(s.into(), super::Fmt::Auto),
            Self::List(l) => Value::List(
                l.iter().map(|v| v.and_then(|v| v.to_owned_value())).collect::<Result<_, _>>()?,
                super::Fmt::Auto,
            ),
            Self::Map(m) => {
                let mut pairs = Vec::with_capacity(m.len());
                for kv in m.iter() {
                    let (k, v) = kv?;
                    pairs.push((k.to_owned_value()?, v.to_owned_value()?));
                }
                Value::Map(pairs, super::Fmt::Auto)
            }
            Self::Array(a) => {
                let items =
                    a.iter()
                        .map(|v| v.and_then(|v| v.to_owned_value()))
                        .collect::<Result<Vec<_>, _>>()?;
                // An empty array keeps its element type, described or not.
                let array = match a.descriptor()? {
                    Some(d) if items.is_empty() => {
                        Ok(super::value::Array::empty(a.elem).with_descriptor(d.to_owned_value()?))
                    }
                    Some(d) => super::value::Array::described(d.to_owned_value()?, items),
                    None if items.is_empty() => Ok(super::value::Array::empty(a.elem)),
                    None => super::value::Array::new(items),
                };
                Value::Array(array.map_err(|_| {
                    DecodeError::new(a.offset, ErrorKind::InvalidArrayConstructor(a.elem))
                })?)
            }
            Self::Described(d) => Value::Described(Box::new(super::value::Described {
                descriptor: match d.descriptor {
                    Descriptor::Code(c) => Value::from(c),
                    Descriptor::Symbol(s) => Value::Symbol(s.into(), super::Fmt::Auto),
                    Descriptor::Other(raw) => Value::decode(raw)?,
                },
                value: d.value()?.to_owned_value()?,
            })),
        })
    }

    /// Checks every byte of the value, recursing into compounds up to `max_depth` levels.
    pub fn validate(&self, max_depth: u32) -> Result<(), DecodeError> {
        if max_depth == 0
            && matches!(self, Self::List(_) | Self::Map(_) | Self::Array(_) | Self::Described(_))
        {
            return Err(DecodeError::new(0, ErrorKind::DepthLimit(0)));
        }
        match self {
            Self::List(l) => l.iter().try_for_each(|v| v?.validate(max_depth - 1)),
            Self::Map(m) => {
                let mut keys: smallvec::SmallVec<[ValueRef<'a>; 16]> = smallvec::SmallVec::new();
                for kv in m.iter() {
                    let (k, v) = kv?;
                    k.validate(max_depth - 1)?;
                    v.validate(max_depth - 1)?;
                    keys.push(k);
                }
                // Part 1, 1.6.23: a map's keys are distinct.
                match super::value::duplicate_key(&keys) {
                    Some(k) => Err(DecodeError::new(m.list.offset, ErrorKind::DuplicateKey(k))),
                    None => Ok(()),
                }
            }
            Self::Array(a) => {
                if let Some(d) = a.descriptor()? {
                    d.validate(max_depth - 1)?;
                }
                a.iter().try_for_each(|v| v?.validate(max_depth - 1))
            }
            Self::Described(d) => {
                if let Descriptor::Other(raw) = d.descriptor {
                    ValueRef::decode(raw)?.0.validate(max_depth - 1)?;
                }
                d.value()?.validate(max_depth - 1)
            }
            _ => Ok(()),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any unsigned integer widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::Ubyte(v) => Some(u64::from(v)),
            Self::Ushort(v) => Some(u64::from(v)),
            Self::Uint(v) => Some(u64::from(v)),
            Self::Ulong(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a> ListRef<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The elements in order; each item is an error if that element is malformed, and the
    /// iteration ends after the first error.
    pub fn iter(&self) -> Iter<'a> {
        Iter {
            reader: Reader::new(self.body, DecodeOptions::STRICT).with_base(self.offset),
            left: self.count,
            elem: None,
            failed: false,
        }
    }
}

impl<'a> MapRef<'a> {
    /// A map view over `body` (the bytes after the count field) holding `count` keys and
    /// values; `offset` is where `body` starts in the stream, for errors.
    pub(crate) fn from_parts(count: u32, body: &'a [u8], offset: usize) -> Self {
        Self { list: ListRef { count, body, offset } }
    }

    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        self.list.len() / 2
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The pairs in wire order.
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = Result<(ValueRef<'a>, ValueRef<'a>), DecodeError>> + 'a {
        let mut it = self.list.iter();
        let (offset, count) = (self.list.offset, self.list.count);
        std::iter::from_fn(move || {
            let k = it.next()?;
            let v = it.next();
            Some(match (k, v) {
                (Ok(k), Some(Ok(v))) => Ok((k, v)),
                (Err(e), _) | (_, Some(Err(e))) => Err(e),
                (Ok(_), None) => Err(DecodeError::new(offset, ErrorKind::OddMapCount(count))),
            })
        })
    }

    /// The value of the first entry whose key is the string or symbol `key`.
    ///
    /// Keys are compared as bytes and the entries passed over are skipped by their sizes,
    /// so a lookup checks only the entry it returns (a map taken from a validated message
    /// section was checked whole when it was decoded).
    pub fn get(&self, key: &str) -> Result<Option<ValueRef<'a>>, DecodeError> {
        let mut r = Reader::new(self.list.body, DecodeOptions::STRICT).with_base(self.list.offset);
        for _ in 0..self.list.count / 2 {
            let code = r.peek_u8()?;
            let hit = if matches!(code, fc::STR8 | fc::SYM8 | fc::STR32 | fc::SYM32) {
                r.read_u8()?;
                read_sized(&mut r, code)? == key.as_bytes()
            } else {
                r.skip_value()?;
                false
            };
            if hit {
                return ValueRef::read(&mut r).map(Some);
            }
            r.skip_value()?;
        }
        Ok(None)
    }
}

impl<'a> ListRef<'a> {
    /// The element at `index`: the elements before it are skipped by their sizes, not
    /// checked.
    pub fn get(&self, index: usize) -> Result<Option<ValueRef<'a>>, DecodeError> {
        if index >= self.count as usize {
            return Ok(None);
        }
        let mut r = Reader::new(self.body, DecodeOptions::STRICT).with_base(self.offset);
        for _ in 0..index {
            r.skip_value()?;
        }
        ValueRef::read(&mut r).map(Some)
    }
}

impl<'a> ArrayRef<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The element constructor.
    pub fn element_code(&self) -> u8 {
        self.elem
    }

    /// The shared descriptor of an array of described values.
    pub fn descriptor(&self) -> Result<Option<ValueRef<'a>>, DecodeError> {
        match self.descriptor {
            Some(raw) => Ok(Some(ValueRef::decode(raw)?.0)),
            None => Ok(None),
        }
    }

    /// The elements (undescribed, for an array of described values).
    pub fn iter(&self) -> Iter<'a> {
        Iter {
            reader: Reader::new(self.body, DecodeOptions::STRICT).with_base(self.offset),
            left: self.count,
            elem: Some(self.elem),
            failed: false,
        }
    }
}

impl<'a> DescribedRef<'a> {
    /// Decodes the described value.
    pub fn value(&self) -> Result<ValueRef<'a>, DecodeError> {
        let mut r = Reader::new(self.value, DecodeOptions::STRICT).with_base(self.offset);
        ValueRef::read(&mut r)
    }

    /// The described value's encoded bytes.
    pub fn raw_value(&self) -> &'a [u8] {
        self.value
    }
}

/// Iterator over list or array elements.
#[derive(Debug)]
pub struct Iter<'a> {
    reader: Reader<'a>,
    left: u32,
    elem: Option<u8>,
    failed: bool,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<ValueRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            // Strict: bytes after the last element are an error (part 1, 1.6.22).
            if !self.reader.is_empty() {
                self.failed = true;
                let left = self.reader.remaining();
                return Some(Err(self
                    .reader
                    .error(ErrorKind::TrailingBytes { within: "compound", left })));
            }
            return None;
        }
        self.left -= 1;
        let r = match self.elem {
            Some(code) => {
                let pos = self.reader.position();
                ValueRef::read_body(&mut self.reader, code, pos)
            }
            None => ValueRef::read(&mut self.reader),
        };
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize + 1))
    }
}

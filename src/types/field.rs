//! How each type that can be a field of a composite is read and written.

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::format as fc;
use crate::codec::{
    repeated_key, DecodeError, ErrorKind, Fmt, KeyId, Reader, Symbol, Timestamp, Value,
};

/// A type that can appear as a field of a composite type (or as a section of a message).
///
/// Reading returns `None` for an encoded null; encoding writes one complete value
/// (constructor included). Encoding never fails.
pub trait Codec: Sized {
    /// The spec's name of the type, for error messages.
    const TYPE: &'static str;
    /// The AMQP type on the wire: [`Codec::TYPE`] for primitives, the underlying type for
    /// restricted types (`handle` is a `uint`), the type's own name for composites and
    /// unions. Writers of hand-written frames use it to type a field's JSON value.
    const WIRE: &'static str = Self::TYPE;

    /// Reads one encoded value; `None` if it is null.
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError>;

    /// How many bytes [`Codec::encode`] writes.
    fn encoded_len(&self) -> usize;

    /// Appends the encoding.
    fn encode(&self, out: &mut Vec<u8>);
}

/// Whether a composite is written compactly or with every field present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Fields equal to their default are written as null, and trailing nulls are left
    /// out (part 1, 1.4: "trailing nulls may be omitted").
    #[default]
    Compact,
    /// Every field the spec defines is present: values equal to a default are written
    /// explicitly and absent fields as null. Some peers index fields by position and need
    /// this.
    AllFields,
}

/// Reads a constructor, returning `None` (and consuming it) for null.
#[inline]
fn ctor(r: &mut Reader<'_>) -> Result<Option<(u8, usize)>, DecodeError> {
    let pos = r.position();
    let code = r.read_u8()?;
    Ok(if code == fc::NULL { None } else { Some((code, pos)) })
}

fn unexpected<T>(
    r: &Reader<'_>,
    pos: usize,
    expected: &'static str,
    found: u8,
) -> Result<T, DecodeError> {
    Err(r.error_at(pos, ErrorKind::UnexpectedType { expected, found }))
}

impl Codec for bool {
    const TYPE: &'static str = "boolean";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let Some((code, pos)) = ctor(r)? else {
            return Ok(None);
        };
        Ok(Some(match code {
            fc::TRUE => true,
            fc::FALSE => false,
            fc::BOOLEAN => match r.read_u8()? {
                0 => false,
                1 => true,
                b => {
                    r.deviation(pos + 1, ErrorKind::InvalidBoolean(b), "read as true")?;
                    true
                }
            },
            c => return unexpected(r, pos, Self::TYPE, c),
        }))
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        1
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(if *self { fc::TRUE } else { fc::FALSE });
    }
}

impl Codec for u8 {
    const TYPE: &'static str = "ubyte";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let Some((code, pos)) = ctor(r)? else {
            return Ok(None);
        };
        match code {
            fc::UBYTE => Ok(Some(r.read_u8()?)),
            c => unexpected(r, pos, Self::TYPE, c),
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        2
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[fc::UBYTE, *self]);
    }
}

impl Codec for u16 {
    const TYPE: &'static str = "ushort";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let Some((code, pos)) = ctor(r)? else {
            return Ok(None);
        };
        match code {
            fc::USHORT => Ok(Some(r.read_u16()?)),
            c => unexpected(r, pos, Self::TYPE, c),
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        3
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(fc::USHORT);
        out.extend_from_slice(&self.to_be_bytes());
    }
}

/// uint and ulong share their shape: a zero-width code for 0, a one-octet code for
/// 1..=255, and the full width otherwise.
macro_rules! unsigned_codec {
    ($t:ty, $name:literal, $zero:ident, $small:ident, $full:ident, $read:ident) => {
        impl Codec for $t {
            const TYPE: &'static str = $name;
            #[inline]
            fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
                let Some((code, pos)) = ctor(r)? else {
                    return Ok(None);
                };
                match code {
                    fc::$zero => Ok(Some(0)),
                    fc::$small => Ok(Some(<$t>::from(r.read_u8()?))),
                    fc::$full => Ok(Some(r.$read()?)),
                    c => unexpected(r, pos, Self::TYPE, c),
                }
            }
            #[inline]
            fn encoded_len(&self) -> usize {
                match *self {
                    0 => 1,
                    1..=255 => 2,
                    _ => 1 + std::mem::size_of::<$t>(),
                }
            }
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) {
                match *self {
                    0 => out.push(fc::$zero),
                    v @ 1..=255 => out.extend_from_slice(&[fc::$small, v as u8]),
                    v => {
                        out.push(fc::$full);
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                }
            }
        }
    };
}

unsigned_codec!(u32, "uint", UINT0, SMALLUINT, UINT, read_u32);
unsigned_codec!(u64, "ulong", ULONG0, SMALLULONG, ULONG, read_u64);

impl Codec for Timestamp {
    const TYPE: &'static str = "timestamp";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let Some((code, pos)) = ctor(r)? else {
            return Ok(None);
        };
        match code {
            fc::TIMESTAMP => Ok(Some(Self(r.read_u64()? as i64))),
            c => unexpected(r, pos, Self::TYPE, c),
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        9
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(fc::TIMESTAMP);
        out.extend_from_slice(&self.0.to_be_bytes());
    }
}

/// Writes a one- or four-octet size and the bytes, with the given pair of constructors.
fn encode_sized(small: u8, large: u8, b: &[u8], out: &mut Vec<u8>) {
    if b.len() <= 255 {
        out.push(small);
        out.push(b.len() as u8);
    } else {
        out.push(large);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn sized_len(n: usize) -> usize {
    if n <= 255 {
        2 + n
    } else {
        5 + n
    }
}

#[inline]
fn read_sized<'a>(
    r: &mut Reader<'a>,
    small: u8,
    large: u8,
    expected: &'static str,
) -> Result<Option<(&'a [u8], usize)>, DecodeError> {
    let Some((code, pos)) = ctor(r)? else {
        return Ok(None);
    };
    let n = if code == small {
        usize::from(r.read_u8()?)
    } else if code == large {
        r.read_u32()? as usize
    } else {
        return unexpected(r, pos, expected, code);
    };
    Ok(Some((r.read_slice(n)?, pos)))
}

impl Codec for Bytes {
    const TYPE: &'static str = "binary";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(read_sized(r, fc::VBIN8, fc::VBIN32, Self::TYPE)?.map(|(s, _)| r.to_bytes(s)))
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        sized_len(self.len())
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        encode_sized(fc::VBIN8, fc::VBIN32, self, out);
    }
}

impl Codec for ByteString {
    const TYPE: &'static str = "string";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let pos = r.position();
        match r.peek_u8()? {
            // Some peers send a symbol where the spec wants a string (addresses, names);
            // accept it in lenient mode.
            fc::SYM8 | fc::SYM32 => {
                r.deviation(
                    pos,
                    ErrorKind::UnexpectedType { expected: Self::TYPE, found: r.peek_u8()? },
                    "read the symbol as a string",
                )?;
                Ok(Symbol::read_opt(r)?.map(|s| s.0))
            }
            _ => match read_sized(r, fc::STR8, fc::STR32, Self::TYPE)? {
                Some((s, pos)) => Ok(Some(r.make_string(pos, s)?)),
                None => Ok(None),
            },
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        sized_len(self.len())
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        encode_sized(fc::STR8, fc::STR32, self.as_bytes(), out);
    }
}

impl Codec for Symbol {
    const TYPE: &'static str = "symbol";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let pos = r.position();
        match r.peek_u8()? {
            // A string where a symbol is required (corda, some .NET peers): lenient only.
            fc::STR8 | fc::STR32 => {
                r.deviation(
                    pos,
                    ErrorKind::UnexpectedType { expected: Self::TYPE, found: r.peek_u8()? },
                    "read the string as a symbol",
                )?;
                Ok(ByteString::read_opt(r)?.map(Symbol))
            }
            _ => match read_sized(r, fc::SYM8, fc::SYM32, Self::TYPE)? {
                Some((s, pos)) => Ok(Some(Self(r.make_symbol(pos, s)?))),
                None => Ok(None),
            },
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        sized_len(self.as_bytes().len())
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        encode_sized(fc::SYM8, fc::SYM32, self.as_bytes(), out);
    }
}

impl Codec for Value {
    const TYPE: &'static str = "any";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        match Self::read(r)? {
            Self::Null => Ok(None),
            v => Ok(Some(v)),
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        Self::encoded_len(self)
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        Self::encode(self, out);
    }
}

/// A `multiple` field (part 1, 1.3): one value or an array of them. Reading accepts both;
/// writing uses an array, which every peer accepts. An empty list is written as null, and
/// an empty array reads as null: both mean zero values (1.3), so a mandatory field given
/// an empty array is as absent as one given null, whichever side wrote it.
impl Codec for Vec<Symbol> {
    const TYPE: &'static str = "symbol (multiple)";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let code = r.peek_u8()?;
        match code {
            fc::NULL => {
                r.read_u8()?;
                Ok(None)
            }
            fc::ARRAY8 | fc::ARRAY32 => {
                r.read_u8()?;
                r.enter()?;
                let (count, c) = r.open_compound(code)?;
                let epos = r.position();
                let elem = r.read_u8()?;
                if !matches!(elem, fc::SYM8 | fc::SYM32) {
                    return unexpected(r, epos, "array of symbol", elem);
                }
                crate::codec::check_array_count(r, &c, elem, count)?;
                let mut v = Self::with_capacity(count as usize);
                for _ in 0..count {
                    let spos = r.position();
                    let n = if elem == fc::SYM8 {
                        usize::from(r.read_u8()?)
                    } else {
                        r.read_u32()? as usize
                    };
                    let s = r.read_slice(n)?;
                    v.push(Symbol(r.make_symbol(spos, s)?));
                }
                r.close_compound(c, "array")?;
                r.leave();
                Ok((!v.is_empty()).then_some(v))
            }
            _ => Ok(Symbol::read_opt(r)?.map(|s| vec![s])),
        }
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        if self.is_empty() {
            return 1;
        }
        let wide = self.iter().any(|s| s.as_bytes().len() > 255);
        let per = if wide { 4 } else { 1 };
        let body: usize = 1 + self.iter().map(|s| per + s.as_bytes().len()).sum::<usize>();
        if body < 255 && self.len() <= 255 {
            3 + body
        } else {
            9 + body
        }
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        if self.is_empty() {
            out.push(fc::NULL);
            return;
        }
        let wide = self.iter().any(|s| s.as_bytes().len() > 255);
        let per = if wide { 4 } else { 1 };
        let body: usize = 1 + self.iter().map(|s| per + s.as_bytes().len()).sum::<usize>();
        if body < 255 && self.len() <= 255 {
            out.extend_from_slice(&[fc::ARRAY8, (body + 1) as u8, self.len() as u8]);
        } else {
            out.push(fc::ARRAY32);
            out.extend_from_slice(&((body + 4) as u32).to_be_bytes());
            out.extend_from_slice(&(self.len() as u32).to_be_bytes());
        }
        out.push(if wide { fc::SYM32 } else { fc::SYM8 });
        for s in self {
            if wide {
                out.extend_from_slice(&(s.as_bytes().len() as u32).to_be_bytes());
            } else {
                out.push(s.as_bytes().len() as u8);
            }
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// A map with symbol keys (the spec's `fields` type, part 2, 2.8.14), in wire order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(pub Vec<(Symbol, Value)>);

impl Fields {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<Symbol>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Symbol, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    fn body_len(&self) -> usize {
        self.0.iter().map(|(k, v)| Codec::encoded_len(k) + v.encoded_len()).sum()
    }
}

impl Codec for Fields {
    const TYPE: &'static str = "fields";
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        let Some((code, pos)) = ctor(r)? else {
            return Ok(None);
        };
        if !matches!(code, fc::MAP8 | fc::MAP32) {
            return unexpected(r, pos, "map", code);
        }
        r.enter()?;
        let (count, c) = r.open_compound(code)?;
        let mut pairs = Vec::with_capacity(count as usize / 2);
        for _ in 0..count / 2 {
            let kpos = r.position();
            let key = match Value::read(r)? {
                Value::Symbol(s, _) => s,
                Value::String(s, _) => {
                    r.deviation(
                        kpos,
                        ErrorKind::UnexpectedType { expected: "symbol key", found: fc::STR8 },
                        "read the string key as a symbol",
                    )?;
                    Symbol(s)
                }
                other => {
                    return Err(r.error_at(
                        kpos,
                        ErrorKind::InvalidValue {
                            what: "fields",
                            reason: format!("keys must be symbols, found {}", other.type_name()),
                        },
                    ))
                }
            };
            pairs.push((key, Value::read(r)?));
        }
        // Part 1, 1.6.23: a map with two identical keys is invalid.
        let repeated = {
            let keys: Vec<KeyId<'_>> =
                pairs.iter().map(|(k, _)| KeyId::Sym(k.as_str().as_bytes())).collect();
            match repeated_key(&keys) {
                Some(KeyId::Sym(k)) => Some(format!("{:?}", String::from_utf8_lossy(k))),
                _ => None,
            }
        };
        if let Some(key) = repeated {
            r.deviation(pos, ErrorKind::DuplicateKey(key), "kept both entries")?;
        }
        r.close_compound(c, "map")?;
        r.leave();
        Ok(Some(Self(pairs)))
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        let body = self.body_len();
        if body < 255 && self.0.len() * 2 <= 255 {
            3 + body
        } else {
            9 + body
        }
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        let body = self.body_len();
        if body < 255 && self.0.len() * 2 <= 255 {
            out.extend_from_slice(&[fc::MAP8, (body + 1) as u8, (self.0.len() * 2) as u8]);
        } else {
            out.push(fc::MAP32);
            out.extend_from_slice(&((body + 4) as u32).to_be_bytes());
            out.extend_from_slice(&((self.0.len() * 2) as u32).to_be_bytes());
        }
        for (k, v) in &self.0 {
            Codec::encode(k, out);
            v.encode(out);
        }
    }
}

impl From<Fields> for Value {
    fn from(f: Fields) -> Self {
        Self::Map(
            f.0.into_iter().map(|(k, v)| (Self::Symbol(k, Fmt::Auto), v)).collect(),
            Fmt::Auto,
        )
    }
}

/// Size of a composite's list encoding given its fields' bytes and count.
pub(crate) fn list_len(count: usize, body: usize) -> usize {
    if count == 0 {
        1
    } else if body < 255 && count <= 255 {
        3 + body
    } else {
        9 + body
    }
}

/// A list header written before its elements are, when their size and count are not
/// known yet: a list8 header is reserved, then filled in, narrowed to a list0 or widened
/// to a list32 (moving the elements) once they are written: the smallest header, as
/// [`list_len`] counts it.
pub(crate) struct ListHeader(usize);

impl ListHeader {
    pub(crate) fn reserve(out: &mut Vec<u8>) -> Self {
        let at = out.len();
        out.extend_from_slice(&[fc::LIST8, 0, 0]);
        Self(at)
    }

    /// `count` elements were written after the header.
    pub(crate) fn finish(self, count: usize, out: &mut Vec<u8>) {
        let at = self.0;
        let body = out.len() - at - 3;
        // The header [`list_len`] counts: 1 byte (list0), 3 (list8) or 9 (list32).
        let header = list_len(count, body) - body;
        if header == 1 {
            out.truncate(at);
            out.push(fc::LIST0);
        } else if header == 3 {
            out[at + 1] = (body + 1) as u8;
            out[at + 2] = count as u8;
        } else {
            let end = out.len();
            out.resize(end + 6, 0);
            out.copy_within(at + 3..end, at + 9);
            out[at] = fc::LIST32;
            out[at + 1..at + 5].copy_from_slice(&((body + 4) as u32).to_be_bytes());
            out[at + 5..at + 9].copy_from_slice(&(count as u32).to_be_bytes());
        }
    }
}

impl<T: Codec> Codec for Box<T> {
    const TYPE: &'static str = T::TYPE;
    #[inline]
    fn read_opt(r: &mut Reader<'_>) -> Result<Option<Self>, DecodeError> {
        Ok(T::read_opt(r)?.map(Self::new))
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        T::encoded_len(self)
    }
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) {
        T::encode(self, out)
    }
}

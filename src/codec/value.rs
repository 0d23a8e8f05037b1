//! The owned, lossless AMQP value.

use bytes::Bytes;
use bytestring::ByteString;

use super::error::{DecodeError, ErrorKind};
use super::format::{self as fc, Fmt};
use super::primitive::{Symbol, Timestamp, Uuid};
use super::reader::{DecodeOptions, Reader};

/// Any AMQP value, owned, remembering the encoding it was decoded from.
///
/// Decoded with [`Value::decode`], every variant that has more than one encoding keeps the
/// peer's choice in its [`Fmt`], so [`Value::encode`] gives back the input byte for byte.
/// Built by code (with [`Fmt::Auto`], or the `From` conversions), it encodes canonically.
/// Strings and binaries share the storage of the [`Bytes`] they were decoded from.
///
/// Equality compares meaning, not encoding: `Uint(5, Fmt::Code(0x70))` equals
/// `Uint(5, Fmt::Auto)`, and floats compare by their bits (so a NaN equals itself).
#[derive(Clone)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Debug))]
pub enum Value {
    /// null.
    Null,
    /// boolean.
    Boolean(bool, Fmt),
    /// ubyte.
    Ubyte(u8),
    /// ushort.
    Ushort(u16),
    /// uint.
    Uint(u32, Fmt),
    /// ulong.
    Ulong(u64, Fmt),
    /// byte.
    Byte(i8),
    /// short.
    Short(i16),
    /// int.
    Int(i32, Fmt),
    /// long.
    Long(i64, Fmt),
    /// float.
    Float(f32),
    /// double.
    Double(f64),
    /// decimal32, as its IEEE 754 bits.
    Decimal32([u8; 4]),
    /// decimal64, as its IEEE 754 bits.
    Decimal64([u8; 8]),
    /// decimal128, as its IEEE 754 bits.
    Decimal128([u8; 16]),
    /// char.
    Char(char),
    /// timestamp.
    Timestamp(Timestamp),
    /// uuid.
    Uuid(Uuid),
    /// binary.
    Binary(Bytes, Fmt),
    /// string.
    String(ByteString, Fmt),
    /// symbol.
    Symbol(Symbol, Fmt),
    /// list.
    List(Vec<Self>, Fmt),
    /// map, in wire order.
    Map(Vec<(Self, Self)>, Fmt),
    /// array.
    Array(Array),
    /// A described value: a descriptor and the value it describes.
    Described(Box<Described>),
}

/// In WebAssembly, a value's `Debug` is the text people read ([`crate::inspect::render`]):
/// the derived form would bring core's float formatting (about 13 KB) into the browser
/// module for the sake of error texts.
#[cfg(target_arch = "wasm32")]
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::inspect::render(self))
    }
}

/// A descriptor and the value it describes (part 1, 1.5).
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    /// The descriptor: a ulong code or a symbol name, in practice.
    pub descriptor: Value,
    /// The described value.
    pub value: Value,
}

/// An array: values of one type sharing one constructor (part 1, 1.6.24).
///
/// The fields are private so that the elements are always of one type, which is what lets
/// encoding never fail. Arrays of described types keep the shared descriptor here and the
/// undescribed element values in [`Array::items`].
#[derive(Clone, Debug)]
pub struct Array {
    fmt: Fmt,
    descriptor: Option<Box<Value>>,
    elem: u8,
    exact: bool,
    items: Vec<Value>,
}

/// Building an array from values of more than one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixedArray {
    /// Index of the first element whose type differs from the first one's.
    pub index: usize,
}

impl std::fmt::Display for MixedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "array element {} differs in type from element 0", self.index)
    }
}

impl std::error::Error for MixedArray {}

impl Array {
    /// An array of `items`, which must all be of one type; empty arrays need a type, so
    /// use [`Array::empty`] for them.
    pub fn new(items: Vec<Value>) -> Result<Self, MixedArray> {
        let Some(first) = items.first() else {
            return Ok(Self::empty(fc::NULL));
        };
        let elem = family_code(first).ok_or(MixedArray { index: 0 })?;
        for (i, v) in items.iter().enumerate() {
            if family_code(v) != Some(elem) {
                return Err(MixedArray { index: i });
            }
        }
        Ok(Self { fmt: Fmt::Auto, descriptor: None, elem, exact: false, items })
    }

    /// An empty array whose elements would have the type of format code `code`.
    pub fn empty(code: u8) -> Self {
        Self { fmt: Fmt::Auto, descriptor: None, elem: code, exact: true, items: Vec::new() }
    }

    /// An array of described values sharing `descriptor`; `items` are the undescribed
    /// values and must be of one type.
    pub fn described(descriptor: Value, items: Vec<Value>) -> Result<Self, MixedArray> {
        let mut a = Self::new(items)?;
        a.descriptor = Some(Box::new(descriptor));
        Ok(a)
    }

    /// The same array with its elements described by `descriptor`.
    pub fn with_descriptor(mut self, descriptor: Value) -> Self {
        self.descriptor = Some(Box::new(descriptor));
        self
    }

    /// An array of symbols, the type of every `multiple` symbol field in the spec.
    pub fn symbols<I: IntoIterator<Item = Symbol>>(items: I) -> Self {
        Self {
            fmt: Fmt::Auto,
            descriptor: None,
            elem: fc::SYM8,
            exact: false,
            items: items.into_iter().map(|s| Value::Symbol(s, Fmt::Auto)).collect(),
        }
    }

    /// The elements (undescribed, for an array of described values).
    pub fn items(&self) -> &[Value] {
        &self.items
    }

    /// Takes the elements.
    pub fn into_items(self) -> Vec<Value> {
        self.items
    }

    /// The shared descriptor of an array of described values.
    pub fn descriptor(&self) -> Option<&Value> {
        self.descriptor.as_deref()
    }

    /// The same array encoded with `code` (`array8` or `array32`, `None` for the smallest
    /// that holds it) and element constructor `element`, where the elements fit it: the
    /// choices a peer made, for a lossless re-encoding.
    pub fn with_codes(mut self, code: Option<u8>, element: u8) -> Self {
        self.fmt = code.map_or(Fmt::Auto, Fmt::Code);
        self.elem = element;
        self.exact = true;
        self
    }

    /// The array's own format code (`array8` or `array32`) that encoding will use.
    pub fn format_code(&self) -> u8 {
        self.code(self.body_len())
    }

    /// The smallest array format code that holds it.
    pub fn canonical_code(&self) -> u8 {
        self.canonical_code_for(self.body_len())
    }

    /// The smallest array format code that holds it, given its body's length.
    fn canonical_code_for(&self, body: usize) -> u8 {
        if body < 255 && self.items.len() <= 255 {
            fc::ARRAY8
        } else {
            fc::ARRAY32
        }
    }

    /// The element constructor's format code that encoding will use.
    pub fn element_code(&self) -> u8 {
        self.element_code_for(&self.contents())
    }

    /// The [content length](Value::content_len) of each element: walked once, both the
    /// element constructor and the elements' lengths follow from it.
    fn contents(&self) -> Vec<usize> {
        self.items.iter().map(Value::content_len).collect()
    }

    /// The element constructor, given the elements' [`Array::contents`].
    fn element_code_for(&self, contents: &[usize]) -> u8 {
        let items = || self.items.iter().zip(contents.iter().copied());
        if self.exact && items().all(|(v, content)| v.fits(self.elem, content)) {
            return self.elem;
        }
        // The widest of the smallest codes each element needs, never zero-width: a
        // zero-width array element type (uint0, list0, true…) is legal but surprises peers.
        let mut best = self.elem;
        let mut best_rank = 0;
        for (v, content) in items() {
            let c = v.array_code(content);
            let r = width_rank(c);
            if r > best_rank {
                best = c;
                best_rank = r;
            }
        }
        if self.items.is_empty() {
            return self.elem;
        }
        best
    }

    /// The bytes after the size and count: element constructor (with the descriptor of
    /// described elements) and elements.
    fn body_len(&self) -> usize {
        self.layout().1
    }

    /// The element constructor, [`Array::body_len`] and the elements' content lengths,
    /// from one walk of the elements.
    fn layout(&self) -> (u8, usize, Vec<usize>) {
        let contents = self.contents();
        let elem = self.element_code_for(&contents);
        let ctor = 1 + self.descriptor.as_ref().map_or(0, |d| 1 + d.encoded_len());
        let items = self.items.iter().zip(contents.iter().copied());
        let body = ctor + items.map(|(v, content)| v.body_len(elem, content)).sum::<usize>();
        (elem, body, contents)
    }

    /// The array's format code, given its body's length.
    fn code(&self, body: usize) -> u8 {
        let small = body < 255 && self.items.len() <= 255;
        match self.fmt {
            Fmt::Code(fc::ARRAY32) => fc::ARRAY32,
            _ if small => fc::ARRAY8,
            _ => fc::ARRAY32,
        }
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        self.descriptor == other.descriptor
            && self.items == other.items
            && (!self.items.is_empty() || same_family(self.elem, other.elem))
    }
}

impl Value {
    /// Decodes exactly one value from `buf`, strictly; bytes after it are an error.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(buf, DecodeOptions::STRICT)
    }

    /// Decodes exactly one value from `buf` with `opts`.
    pub fn decode_with(buf: &[u8], opts: DecodeOptions) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, opts);
        let v = Self::read(&mut r)?;
        if !r.is_empty() {
            return Err(
                r.error(ErrorKind::TrailingBytes { within: "the buffer", left: r.remaining() })
            );
        }
        Ok(v)
    }

    /// Decodes one value at the reader's position.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let pos = r.position();
        let code = r.read_u8()?;
        if code == fc::DESCRIBED {
            r.enter()?;
            let descriptor = Self::read(r)?;
            let value = Self::read(r)?;
            r.leave();
            return Ok(Self::Described(Box::new(Described { descriptor, value })));
        }
        Self::read_body(r, code, pos)
    }

    /// Decodes the bytes that follow constructor `code`, which was read at `pos`.
    pub(crate) fn read_body(r: &mut Reader<'_>, code: u8, pos: usize) -> Result<Self, DecodeError> {
        let f = Fmt::Code(code);
        Ok(match code {
            fc::NULL => Self::Null,
            fc::TRUE => Self::Boolean(true, f),
            fc::FALSE => Self::Boolean(false, f),
            fc::BOOLEAN => {
                let b = r.read_u8()?;
                match b {
                    0 => Self::Boolean(false, f),
                    1 => Self::Boolean(true, f),
                    other => {
                        r.deviation(pos + 1, ErrorKind::InvalidBoolean(other), "read as true")?;
                        Self::Boolean(true, f)
                    }
                }
            }
            fc::UBYTE => Self::Ubyte(r.read_u8()?),
            fc::USHORT => Self::Ushort(r.read_u16()?),
            fc::UINT0 => Self::Uint(0, f),
            fc::SMALLUINT => Self::Uint(u32::from(r.read_u8()?), f),
            fc::UINT => Self::Uint(r.read_u32()?, f),
            fc::ULONG0 => Self::Ulong(0, f),
            fc::SMALLULONG => Self::Ulong(u64::from(r.read_u8()?), f),
            fc::ULONG => Self::Ulong(r.read_u64()?, f),
            fc::BYTE => Self::Byte(r.read_u8()? as i8),
            fc::SHORT => Self::Short(r.read_u16()? as i16),
            fc::SMALLINT => Self::Int(i32::from(r.read_u8()? as i8), f),
            fc::INT => Self::Int(r.read_u32()? as i32, f),
            fc::SMALLLONG => Self::Long(i64::from(r.read_u8()? as i8), f),
            fc::LONG => Self::Long(r.read_u64()? as i64, f),
            fc::FLOAT => Self::Float(f32::from_bits(r.read_u32()?)),
            fc::DOUBLE => Self::Double(f64::from_bits(r.read_u64()?)),
            fc::DECIMAL32 => Self::Decimal32(r.read_array()?),
            fc::DECIMAL64 => Self::Decimal64(r.read_array()?),
            fc::DECIMAL128 => Self::Decimal128(r.read_array()?),
            fc::CHAR => Self::Char(read_char(r, pos)?),
            fc::TIMESTAMP => Self::Timestamp(Timestamp(r.read_u64()? as i64)),
            fc::UUID => Self::Uuid(Uuid(r.read_array()?)),
            fc::VBIN8 | fc::VBIN32 => {
                let s = read_sized(r, code)?;
                Self::Binary(r.to_bytes(s), f)
            }
            fc::STR8 | fc::STR32 => {
                let s = read_sized(r, code)?;
                Self::String(r.make_string(pos, s)?, f)
            }
            fc::SYM8 | fc::SYM32 => {
                let s = read_sized(r, code)?;
                Self::Symbol(Symbol(r.make_symbol(pos, s)?), f)
            }
            fc::LIST0 | fc::LIST8 | fc::LIST32 => {
                r.enter()?;
                let (count, c) = r.open_compound(code)?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(Self::read(r)?);
                }
                r.close_compound(c, fc::name(code).unwrap_or("list"))?;
                r.leave();
                Self::List(items, f)
            }
            fc::MAP8 | fc::MAP32 => {
                r.enter()?;
                let (count, c) = r.open_compound(code)?;
                let mut pairs = Vec::with_capacity(count as usize / 2);
                for _ in 0..count / 2 {
                    let k = Self::read(r)?;
                    let v = Self::read(r)?;
                    pairs.push((k, v));
                }
                r.close_compound(c, fc::name(code).unwrap_or("map"))?;
                r.leave();
                if let Some(k) = first_duplicate_key(&pairs) {
                    let key = crate::inspect::render(k);
                    r.deviation(c.start, ErrorKind::DuplicateKey(key), "kept both entries")?;
                }
                Self::Map(pairs, f)
            }
            fc::ARRAY8 | fc::ARRAY32 => {
                r.enter()?;
                let a = read_array(r, code)?;
                r.leave();
                Self::Array(a)
            }
            other => return Err(r.error_at(pos, ErrorKind::UnknownFormatCode(other))),
        })
    }

    /// The format code the smallest encoding of this value starts with (0x00 for a
    /// described value): where it differs from [`Value::format_code`], the value keeps a
    /// peer's non-canonical choice.
    pub fn canonical_format_code(&self) -> u8 {
        match self {
            Self::Described(_) => fc::DESCRIBED,
            Self::Array(a) => a.canonical_code(),
            _ => self.canonical_code(self.content_len()),
        }
    }

    /// [`Value::format_code`] and [`Value::canonical_format_code`] together, sizing a
    /// compound once for both (each alone walks its elements).
    pub fn format_codes(&self) -> (u8, u8) {
        match self {
            Self::Described(_) => (fc::DESCRIBED, fc::DESCRIBED),
            Self::Array(a) => {
                let body = a.body_len();
                (a.code(body), a.canonical_code_for(body))
            }
            _ => {
                let content = self.content_len();
                (self.code(content), self.canonical_code(content))
            }
        }
    }

    /// The format code [`Value::encode`] writes first (0x00 for a described value).
    pub fn format_code(&self) -> u8 {
        match self {
            Self::Described(_) => fc::DESCRIBED,
            _ => self.code(self.content_len()),
        }
    }

    /// How many bytes [`Value::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Described(d) => 1 + d.descriptor.encoded_len() + d.value.encoded_len(),
            _ => {
                let content = self.content_len();
                1 + self.body_len(self.code(content), content)
            }
        }
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Described(d) => {
                out.push(fc::DESCRIBED);
                d.descriptor.encode(out);
                d.value.encode(out);
            }
            _ => {
                let content = self.content_len();
                let code = self.code(content);
                out.push(code);
                self.write_body(code, content, out);
            }
        }
    }

    /// The encoding as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }

    /// What an (undescribed) value holds, in bytes, whatever its constructor: a binary's,
    /// string's or symbol's bytes, the encodings of a list's or map's elements, an
    /// array's body; 0 for the rest.
    ///
    /// The constructor and the length of the body both follow from it, so that a
    /// compound's elements are walked once for both: walking them for each, at every
    /// level of nesting, took time exponential in the depth.
    fn content_len(&self) -> usize {
        match self {
            Self::Binary(b, _) => b.len(),
            Self::String(s, _) => s.len(),
            Self::Symbol(s, _) => s.as_bytes().len(),
            Self::List(items, _) => items.iter().map(Self::encoded_len).sum(),
            Self::Map(pairs, _) => {
                pairs.iter().map(|(k, v)| k.encoded_len() + v.encoded_len()).sum()
            }
            Self::Array(a) => a.body_len(),
            // An element of a described array, which encodes its own value.
            Self::Described(d) => d.value.content_len(),
            _ => 0,
        }
    }

    /// The constructor this (undescribed) value encodes with, given its
    /// [content length](Value::content_len): the remembered one when it holds the value,
    /// else the smallest.
    fn code(&self, content: usize) -> u8 {
        let fmt = match self {
            Self::Boolean(_, f)
            | Self::Uint(_, f)
            | Self::Ulong(_, f)
            | Self::Int(_, f)
            | Self::Long(_, f)
            | Self::Binary(_, f)
            | Self::String(_, f)
            | Self::Symbol(_, f)
            | Self::List(_, f)
            | Self::Map(_, f) => *f,
            Self::Array(a) => return a.code(content),
            _ => Fmt::Auto,
        };
        if let Fmt::Code(c) = fmt {
            if self.fits(c, content) {
                return c;
            }
        }
        self.canonical_code(content)
    }

    /// The smallest constructor that holds this (undescribed) value, given its
    /// [content length](Value::content_len).
    fn canonical_code(&self, content: usize) -> u8 {
        match self {
            Self::Null => fc::NULL,
            Self::Boolean(true, _) => fc::TRUE,
            Self::Boolean(false, _) => fc::FALSE,
            Self::Ubyte(_) => fc::UBYTE,
            Self::Ushort(_) => fc::USHORT,
            Self::Uint(0, _) => fc::UINT0,
            Self::Uint(v, _) if *v <= 255 => fc::SMALLUINT,
            Self::Uint(..) => fc::UINT,
            Self::Ulong(0, _) => fc::ULONG0,
            Self::Ulong(v, _) if *v <= 255 => fc::SMALLULONG,
            Self::Ulong(..) => fc::ULONG,
            Self::Byte(_) => fc::BYTE,
            Self::Short(_) => fc::SHORT,
            Self::Int(v, _) if i8::try_from(*v).is_ok() => fc::SMALLINT,
            Self::Int(..) => fc::INT,
            Self::Long(v, _) if i8::try_from(*v).is_ok() => fc::SMALLLONG,
            Self::Long(..) => fc::LONG,
            Self::Float(_) => fc::FLOAT,
            Self::Double(_) => fc::DOUBLE,
            Self::Decimal32(_) => fc::DECIMAL32,
            Self::Decimal64(_) => fc::DECIMAL64,
            Self::Decimal128(_) => fc::DECIMAL128,
            Self::Char(_) => fc::CHAR,
            Self::Timestamp(_) => fc::TIMESTAMP,
            Self::Uuid(_) => fc::UUID,
            Self::Binary(..) => small_or(content, fc::VBIN8, fc::VBIN32),
            Self::String(..) => small_or(content, fc::STR8, fc::STR32),
            Self::Symbol(..) => small_or(content, fc::SYM8, fc::SYM32),
            Self::List(items, _) if items.is_empty() => fc::LIST0,
            Self::List(items, _) => {
                if content < 255 && items.len() <= 255 {
                    fc::LIST8
                } else {
                    fc::LIST32
                }
            }
            Self::Map(pairs, _) => {
                if content < 255 && pairs.len() * 2 <= 255 {
                    fc::MAP8
                } else {
                    fc::MAP32
                }
            }
            Self::Array(a) => a.code(content),
            Self::Described(_) => fc::DESCRIBED,
        }
    }

    /// The smallest non-zero-width constructor for this value as an array element, given
    /// its [content length](Value::content_len).
    fn array_code(&self, content: usize) -> u8 {
        match self.canonical_code(content) {
            fc::TRUE | fc::FALSE => fc::BOOLEAN,
            fc::UINT0 => fc::SMALLUINT,
            fc::ULONG0 => fc::SMALLULONG,
            fc::LIST0 => fc::LIST8,
            c => c,
        }
    }

    /// Whether constructor `code` can hold this (undescribed) value, given its
    /// [content length](Value::content_len).
    fn fits(&self, code: u8, content: usize) -> bool {
        match (self, code) {
            (Self::Null, fc::NULL) => true,
            (Self::Boolean(_, _), fc::BOOLEAN) => true,
            (Self::Boolean(v, _), fc::TRUE) => *v,
            (Self::Boolean(v, _), fc::FALSE) => !*v,
            (Self::Ubyte(_), fc::UBYTE) | (Self::Ushort(_), fc::USHORT) => true,
            (Self::Uint(v, _), fc::UINT0) => *v == 0,
            (Self::Uint(v, _), fc::SMALLUINT) => *v <= 255,
            (Self::Uint(_, _), fc::UINT) => true,
            (Self::Ulong(v, _), fc::ULONG0) => *v == 0,
            (Self::Ulong(v, _), fc::SMALLULONG) => *v <= 255,
            (Self::Ulong(_, _), fc::ULONG) => true,
            (Self::Byte(_), fc::BYTE) | (Self::Short(_), fc::SHORT) => true,
            (Self::Int(v, _), fc::SMALLINT) => i8::try_from(*v).is_ok(),
            (Self::Int(_, _), fc::INT) => true,
            (Self::Long(v, _), fc::SMALLLONG) => i8::try_from(*v).is_ok(),
            (Self::Long(_, _), fc::LONG) => true,
            (Self::Float(_), fc::FLOAT)
            | (Self::Double(_), fc::DOUBLE)
            | (Self::Decimal32(_), fc::DECIMAL32)
            | (Self::Decimal64(_), fc::DECIMAL64)
            | (Self::Decimal128(_), fc::DECIMAL128)
            | (Self::Char(_), fc::CHAR)
            | (Self::Timestamp(_), fc::TIMESTAMP)
            | (Self::Uuid(_), fc::UUID) => true,
            (Self::Binary(..), fc::VBIN8)
            | (Self::String(..), fc::STR8)
            | (Self::Symbol(..), fc::SYM8) => content <= 255,
            (Self::Binary(..), fc::VBIN32)
            | (Self::String(..), fc::STR32)
            | (Self::Symbol(..), fc::SYM32) => true,
            (Self::List(items, _), fc::LIST0) => items.is_empty(),
            (Self::List(items, _), fc::LIST8) => items.len() <= 255 && content < 255,
            (Self::List(_, _), fc::LIST32) => true,
            (Self::Map(pairs, _), fc::MAP8) => pairs.len() * 2 <= 255 && content < 255,
            (Self::Map(_, _), fc::MAP32) => true,
            (Self::Array(a), fc::ARRAY8) => a.items.len() <= 255 && content < 255,
            (Self::Array(_), fc::ARRAY32) => true,
            _ => false,
        }
    }

    /// Bytes that follow constructor `code`, given the value's
    /// [content length](Value::content_len).
    fn body_len(&self, code: u8, content: usize) -> usize {
        match self {
            // Only reached for array elements of described arrays, whose items are stored
            // undescribed; a described item here encodes its own value.
            Self::Described(d) => d.value.body_len(code, content),
            Self::Binary(..) | Self::String(..) | Self::Symbol(..) => sized_len(code, content),
            Self::List(..) => match code {
                fc::LIST0 => 0,
                fc::LIST8 => 2 + content,
                _ => 8 + content,
            },
            Self::Map(..) if code == fc::MAP8 => 2 + content,
            Self::Array(_) if code == fc::ARRAY8 => 2 + content,
            Self::Map(..) | Self::Array(_) => 8 + content,
            _ => fc::fixed_width(code).unwrap_or(0),
        }
    }

    /// Writes the bytes that follow constructor `code`, given the value's
    /// [content length](Value::content_len).
    fn write_body(&self, code: u8, content: usize, out: &mut Vec<u8>) {
        match self {
            Self::Null => {}
            Self::Boolean(v, _) => {
                if code == fc::BOOLEAN {
                    out.push(u8::from(*v));
                }
            }
            Self::Ubyte(v) => out.push(*v),
            Self::Ushort(v) => out.extend_from_slice(&v.to_be_bytes()),
            Self::Uint(v, _) => match code {
                fc::UINT0 => {}
                fc::SMALLUINT => out.push(*v as u8),
                _ => out.extend_from_slice(&v.to_be_bytes()),
            },
            Self::Ulong(v, _) => match code {
                fc::ULONG0 => {}
                fc::SMALLULONG => out.push(*v as u8),
                _ => out.extend_from_slice(&v.to_be_bytes()),
            },
            Self::Byte(v) => out.push(*v as u8),
            Self::Short(v) => out.extend_from_slice(&v.to_be_bytes()),
            Self::Int(v, _) => match code {
                fc::SMALLINT => out.push(*v as i8 as u8),
                _ => out.extend_from_slice(&v.to_be_bytes()),
            },
            Self::Long(v, _) => match code {
                fc::SMALLLONG => out.push(*v as i8 as u8),
                _ => out.extend_from_slice(&v.to_be_bytes()),
            },
            Self::Float(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            Self::Double(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            Self::Decimal32(b) => out.extend_from_slice(b),
            Self::Decimal64(b) => out.extend_from_slice(b),
            Self::Decimal128(b) => out.extend_from_slice(b),
            Self::Char(c) => out.extend_from_slice(&u32::from(*c).to_be_bytes()),
            Self::Timestamp(t) => out.extend_from_slice(&t.0.to_be_bytes()),
            Self::Uuid(u) => out.extend_from_slice(&u.0),
            Self::Binary(b, _) => write_sized(code, b, out),
            Self::String(s, _) => write_sized(code, s.as_bytes(), out),
            Self::Symbol(s, _) => write_sized(code, s.as_bytes(), out),
            Self::List(items, _) => {
                if code != fc::LIST0 {
                    write_size_count(code == fc::LIST8, content, items.len(), out);
                    for v in items {
                        v.encode(out);
                    }
                }
            }
            Self::Map(pairs, _) => {
                write_size_count(code == fc::MAP8, content, pairs.len() * 2, out);
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Self::Array(a) => {
                let (elem, body, contents) = a.layout();
                // `body` already counts the constructor; size/count below add the count.
                if code == fc::ARRAY8 {
                    out.push((body + 1) as u8);
                    out.push(a.items.len() as u8);
                } else {
                    out.extend_from_slice(&((body + 4) as u32).to_be_bytes());
                    out.extend_from_slice(&(a.items.len() as u32).to_be_bytes());
                }
                if let Some(d) = &a.descriptor {
                    out.push(fc::DESCRIBED);
                    d.encode(out);
                }
                out.push(elem);
                for (v, content) in a.items.iter().zip(contents) {
                    v.write_body(elem, content, out);
                }
            }
            Self::Described(d) => d.value.write_body(code, content, out),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s, _) => Some(s),
            _ => None,
        }
    }

    /// The symbol, if this is a symbol.
    pub fn as_symbol(&self) -> Option<&Symbol> {
        match self {
            Self::Symbol(s, _) => Some(s),
            _ => None,
        }
    }

    /// Any unsigned integer type widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Ubyte(v) => Some(u64::from(*v)),
            Self::Ushort(v) => Some(u64::from(*v)),
            Self::Uint(v, _) => Some(u64::from(*v)),
            Self::Ulong(v, _) => Some(*v),
            _ => None,
        }
    }

    /// Any signed integer type widened to i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Byte(v) => Some(i64::from(*v)),
            Self::Short(v) => Some(i64::from(*v)),
            Self::Int(v, _) => Some(i64::from(*v)),
            Self::Long(v, _) => Some(*v),
            _ => None,
        }
    }

    /// The spec's name of this value's type (`"uint"`, `"list"`, `"described"`…).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean(..) => "boolean",
            Self::Ubyte(_) => "ubyte",
            Self::Ushort(_) => "ushort",
            Self::Uint(..) => "uint",
            Self::Ulong(..) => "ulong",
            Self::Byte(_) => "byte",
            Self::Short(_) => "short",
            Self::Int(..) => "int",
            Self::Long(..) => "long",
            Self::Float(_) => "float",
            Self::Double(_) => "double",
            Self::Decimal32(_) => "decimal32",
            Self::Decimal64(_) => "decimal64",
            Self::Decimal128(_) => "decimal128",
            Self::Char(_) => "char",
            Self::Timestamp(_) => "timestamp",
            Self::Uuid(_) => "uuid",
            Self::Binary(..) => "binary",
            Self::String(..) => "string",
            Self::Symbol(..) => "symbol",
            Self::List(..) => "list",
            Self::Map(..) => "map",
            Self::Array(_) => "array",
            Self::Described(_) => "described",
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Boolean(a, _), Self::Boolean(b, _)) => a == b,
            (Self::Ubyte(a), Self::Ubyte(b)) => a == b,
            (Self::Ushort(a), Self::Ushort(b)) => a == b,
            (Self::Uint(a, _), Self::Uint(b, _)) => a == b,
            (Self::Ulong(a, _), Self::Ulong(b, _)) => a == b,
            (Self::Byte(a), Self::Byte(b)) => a == b,
            (Self::Short(a), Self::Short(b)) => a == b,
            (Self::Int(a, _), Self::Int(b, _)) => a == b,
            (Self::Long(a, _), Self::Long(b, _)) => a == b,
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Double(a), Self::Double(b)) => a.to_bits() == b.to_bits(),
            (Self::Decimal32(a), Self::Decimal32(b)) => a == b,
            (Self::Decimal64(a), Self::Decimal64(b)) => a == b,
            (Self::Decimal128(a), Self::Decimal128(b)) => a == b,
            (Self::Char(a), Self::Char(b)) => a == b,
            (Self::Timestamp(a), Self::Timestamp(b)) => a == b,
            (Self::Uuid(a), Self::Uuid(b)) => a == b,
            (Self::Binary(a, _), Self::Binary(b, _)) => a == b,
            (Self::String(a, _), Self::String(b, _)) => a == b,
            (Self::Symbol(a, _), Self::Symbol(b, _)) => a == b,
            (Self::List(a, _), Self::List(b, _)) => a == b,
            (Self::Map(a, _), Self::Map(b, _)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Described(a), Self::Described(b)) => a == b,
            _ => false,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Self {
                $v(x)
            }
        }
    )*};
}

value_from! {
    bool => |x| Value::Boolean(x, Fmt::Auto),
    u8 => Value::Ubyte,
    u16 => Value::Ushort,
    u32 => |x| Value::Uint(x, Fmt::Auto),
    u64 => |x| Value::Ulong(x, Fmt::Auto),
    i8 => Value::Byte,
    i16 => Value::Short,
    i32 => |x| Value::Int(x, Fmt::Auto),
    i64 => |x| Value::Long(x, Fmt::Auto),
    f32 => Value::Float,
    f64 => Value::Double,
    char => Value::Char,
    Timestamp => Value::Timestamp,
    Uuid => Value::Uuid,
    Bytes => |x| Value::Binary(x, Fmt::Auto),
    Symbol => |x| Value::Symbol(x, Fmt::Auto),
    ByteString => |x| Value::String(x, Fmt::Auto),
    String => |x: String| Value::String(ByteString::from(x), Fmt::Auto),
    Vec<Value> => |x| Value::List(x, Fmt::Auto),
    Array => Value::Array,
}

impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Self::String(ByteString::from(x), Fmt::Auto)
    }
}

/// A ulong that fits in one byte is `smallulong`, else `ulong`; helper for code paths that
/// write descriptors directly.
fn small_or(len: usize, small: u8, large: u8) -> u8 {
    if len <= 255 {
        small
    } else {
        large
    }
}

fn sized_len(code: u8, len: usize) -> usize {
    if matches!(code, fc::VBIN8 | fc::STR8 | fc::SYM8) {
        1 + len
    } else {
        4 + len
    }
}

fn write_sized(code: u8, bytes: &[u8], out: &mut Vec<u8>) {
    if matches!(code, fc::VBIN8 | fc::STR8 | fc::SYM8) {
        out.push(bytes.len() as u8);
    } else {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// Writes a compound's size and count; `body` is the elements' bytes.
fn write_size_count(small: bool, body: usize, count: usize, out: &mut Vec<u8>) {
    if small {
        out.push((body + 1) as u8);
        out.push(count as u8);
    } else {
        out.extend_from_slice(&((body + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(count as u32).to_be_bytes());
    }
}

/// Reads the size of a variable-width value and its bytes.
pub(crate) fn read_sized<'a>(r: &mut Reader<'a>, code: u8) -> Result<&'a [u8], DecodeError> {
    let n = if matches!(code, fc::VBIN8 | fc::STR8 | fc::SYM8) {
        usize::from(r.read_u8()?)
    } else {
        r.read_u32()? as usize
    };
    r.read_slice(n)
}

/// Reads a UTF-32 char, which must be a Unicode scalar value (part 1, 1.6.16).
pub(crate) fn read_char(r: &mut Reader<'_>, pos: usize) -> Result<char, DecodeError> {
    let c = r.read_u32()?;
    match char::from_u32(c) {
        Some(ch) => Ok(ch),
        None => {
            r.deviation(pos, ErrorKind::InvalidChar(c), "replaced with U+FFFD")?;
            Ok(char::REPLACEMENT_CHARACTER)
        }
    }
}

/// The least bytes one array element takes after constructor `code`, or `None` for a code
/// that cannot be an element constructor.
pub(crate) fn element_min_width(code: u8) -> Option<usize> {
    match code {
        fc::VBIN8 | fc::STR8 | fc::SYM8 => Some(1),
        fc::VBIN32 | fc::STR32 | fc::SYM32 => Some(4),
        fc::LIST8 | fc::MAP8 => Some(2),
        fc::LIST32 | fc::MAP32 => Some(8),
        fc::ARRAY8 => Some(3),
        fc::ARRAY32 => Some(9),
        fc::DESCRIBED => None,
        c => fc::fixed_width(c),
    }
}

/// Zero-width array elements allowed beyond one per byte of the array's header.
///
/// An element whose constructor takes no bytes (null, true, false, uint0, ulong0, list0)
/// costs nothing on the wire, so a few bytes could claim billions of them. The limit is
/// counted from what the array's own constructor, size, count and descriptor take, never
/// from the size it claims: bytes a lenient decode skips inside the array must not raise
/// it, or a value accepted once would be refused after re-encoding (which drops them).
pub const ZERO_WIDTH_SLACK: usize = 8;

/// Checks an array's count against its bytes before anything is allocated. `c` is the
/// array's compound, opened by [`Reader::open_compound`]; the element constructor (and any
/// descriptor) has just been read. Every decoder of arrays calls this, so that they all
/// accept and refuse the same arrays.
pub(crate) fn check_array_count(
    r: &Reader<'_>,
    c: &super::reader::Compound,
    elem: u8,
    count: u32,
) -> Result<(), DecodeError> {
    let start = c.start;
    let width = element_min_width(elem)
        .ok_or_else(|| r.error_at(start, ErrorKind::InvalidArrayConstructor(elem)))?;
    let left = r.remaining();
    if width == 0 {
        // The header: size, count, element constructor and descriptor, plus the constructor
        // byte before `start`, without what a lenient read skipped inside the descriptor
        // (re-encoding drops those bytes, and must not make the array too long).
        let limit = c.kept_since_constructor(r) + ZERO_WIDTH_SLACK;
        if count as usize > limit {
            return Err(r.error_at(start, ErrorKind::ArrayTooLong { count, limit }));
        }
    } else if (count as usize).saturating_mul(width) > left {
        return Err(r.error_at(start, ErrorKind::CountExceedsSize { count, bytes: left }));
    }
    Ok(())
}

fn read_array(r: &mut Reader<'_>, code: u8) -> Result<Array, DecodeError> {
    let (count, c) = r.open_compound(code)?;
    let ctor_pos = r.position();
    let mut elem = r.read_u8()?;
    // The descriptor sits one level inside the array, as every other decoder counts it
    // (the array itself has already entered a level).
    let descriptor = if elem == fc::DESCRIBED {
        let d = Value::read(r)?;
        elem = r.read_u8()?;
        Some(Box::new(d))
    } else {
        None
    };
    check_array_count(r, &c, elem, count)?;
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        items.push(Value::read_body(r, elem, ctor_pos)?);
    }
    r.close_compound(c, fc::name(code).unwrap_or("array"))?;
    Ok(Array { fmt: Fmt::Code(code), descriptor, elem, exact: true, items })
}

/// A representative format code for a value's type, used to check that array elements
/// share a type; `None` for described values (use [`Array::described`]).
fn family_code(v: &Value) -> Option<u8> {
    Some(match v {
        Value::Described(_) => return None,
        Value::Boolean(..) => fc::BOOLEAN,
        Value::Uint(..) => fc::UINT,
        Value::Ulong(..) => fc::ULONG,
        Value::Int(..) => fc::INT,
        Value::Long(..) => fc::LONG,
        Value::Binary(..) => fc::VBIN32,
        Value::String(..) => fc::STR32,
        Value::Symbol(..) => fc::SYM32,
        Value::List(..) => fc::LIST32,
        Value::Map(..) => fc::MAP32,
        Value::Array(_) => fc::ARRAY32,
        other => other.canonical_code(other.content_len()),
    })
}

/// Whether two constructors encode the same type.
fn same_family(a: u8, b: u8) -> bool {
    fn fam(c: u8) -> u8 {
        match c {
            fc::TRUE | fc::FALSE | fc::BOOLEAN => fc::BOOLEAN,
            fc::UINT0 | fc::SMALLUINT | fc::UINT => fc::UINT,
            fc::ULONG0 | fc::SMALLULONG | fc::ULONG => fc::ULONG,
            fc::SMALLINT | fc::INT => fc::INT,
            fc::SMALLLONG | fc::LONG => fc::LONG,
            fc::VBIN8 | fc::VBIN32 => fc::VBIN32,
            fc::STR8 | fc::STR32 => fc::STR32,
            fc::SYM8 | fc::SYM32 => fc::SYM32,
            fc::LIST0 | fc::LIST8 | fc::LIST32 => fc::LIST32,
            fc::MAP8 | fc::MAP32 => fc::MAP32,
            fc::ARRAY8 | fc::ARRAY32 => fc::ARRAY32,
            c => c,
        }
    }
    fam(a) == fam(b)
}

/// Orders constructors of one family by width, so the widest needed code wins.
fn width_rank(code: u8) -> u8 {
    match code {
        fc::VBIN32 | fc::STR32 | fc::SYM32 | fc::LIST32 | fc::MAP32 | fc::ARRAY32 => 4,
        fc::UINT | fc::ULONG | fc::INT | fc::LONG => 3,
        fc::VBIN8 | fc::STR8 | fc::SYM8 | fc::LIST8 | fc::MAP8 | fc::ARRAY8 => 2,
        fc::SMALLUINT | fc::SMALLULONG | fc::SMALLINT | fc::SMALLLONG | fc::BOOLEAN => 2,
        _ => 1,
    }
}

/// The first key of `pairs` equal to an earlier one. Small maps are compared pairwise; large
/// ones by sorting their canonical encodings, so a hostile map cannot cost quadratic time.
pub(crate) fn first_duplicate_key(pairs: &[(Value, Value)]) -> Option<&Value> {
    if pairs.len() <= 32 {
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(e, _)| e == k) {
                return Some(k);
            }
        }
        return None;
    }
    // Sorted by encoding, then by place: in each run of equal keys, the second is the first
    // that repeats an earlier one; the earliest such over all runs is the answer.
    let mut keyed: Vec<_> =
        pairs.iter().enumerate().map(|(i, (k, _))| (canonical_bytes(k), i)).collect();
    keyed.sort_unstable();
    keyed.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| w[1].1).min().map(|i| &pairs[i].0)
}

/// A map key as its type and content, for finding repeated keys without decoding them.
#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy, Debug)]
pub(crate) enum KeyId<'a> {
    /// A string key's UTF-8.
    Str(&'a [u8]),
    /// A symbol key's ASCII.
    Sym(&'a [u8]),
    /// A ulong key.
    Ulong(u64),
}

/// Part 1, 1.6.23: a map's keys are distinct. A key of `keys` equal to an earlier one:
/// pairwise for the usual handful of keys, sorted for large maps, so the cost stays
/// n log n. (One sort of one type for every map decoder that keeps such keys.)
pub(crate) fn repeated_key<'a>(keys: &[KeyId<'a>]) -> Option<KeyId<'a>> {
    if keys.len() <= 32 {
        return keys.iter().enumerate().find(|(i, k)| keys[..*i].contains(k)).map(|(_, k)| *k);
    }
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// The first of `keys` equal to an earlier one, shown as the owned decoder shows it: the one
/// test of "the same key" for borrowed decoders, matching [`first_duplicate_key`]. Simple
/// keys of a small map compare as borrowed values, with no allocation; compound and
/// described keys, and large maps, are compared as owned values.
pub(crate) fn duplicate_key(keys: &[super::ValueRef<'_>]) -> Option<String> {
    use super::ValueRef;
    let compound = |k: &ValueRef<'_>| {
        matches!(
            k,
            ValueRef::List(_) | ValueRef::Map(_) | ValueRef::Array(_) | ValueRef::Described(_)
        )
    };
    if keys.len() <= 32 && !keys.iter().any(compound) {
        let i = (0..keys.len()).find(|&i| keys[..i].contains(&keys[i]))?;
        return keys[i].to_owned_value().ok().map(|v| crate::inspect::render(&v));
    }
    let pairs: Vec<(Value, Value)> =
        keys.iter().filter_map(|k| k.to_owned_value().ok()).map(|k| (k, Value::Null)).collect();
    first_duplicate_key(&pairs).map(crate::inspect::render)
}

/// The canonical encoding of a value (every remembered `Fmt` dropped), so that two equal
/// values give equal bytes. Floats compare by bits, as `Value`'s equality does.
fn canonical_bytes(v: &Value) -> Vec<u8> {
    fn auto(v: &Value) -> Value {
        match v {
            Value::Boolean(b, _) => Value::Boolean(*b, Fmt::Auto),
            Value::Uint(x, _) => Value::Uint(*x, Fmt::Auto),
            Value::Ulong(x, _) => Value::Ulong(*x, Fmt::Auto),
            Value::Int(x, _) => Value::Int(*x, Fmt::Auto),
            Value::Long(x, _) => Value::Long(*x, Fmt::Auto),
            Value::Binary(b, _) => Value::Binary(b.clone(), Fmt::Auto),
            Value::String(s, _) => Value::String(s.clone(), Fmt::Auto),
            Value::Symbol(s, _) => Value::Symbol(s.clone(), Fmt::Auto),
            Value::List(items, _) => Value::List(items.iter().map(auto).collect(), Fmt::Auto),
            Value::Map(pairs, _) => {
                Value::Map(pairs.iter().map(|(k, v)| (auto(k), auto(v))).collect(), Fmt::Auto)
            }
            // An empty array encodes the same whatever built it.
            Value::Array(a) if a.items().is_empty() => Value::Array(a.clone()),
            Value::Array(a) => {
                let items = a.items().iter().map(auto).collect();
                let built = match a.descriptor() {
                    Some(d) => Array::described(auto(d), items),
                    None => Array::new(items),
                };
                built.map_or_else(|_| Value::Array(a.clone()), Value::Array)
            }
            Value::Described(d) => Value::Described(Box::new(Described {
                descriptor: auto(&d.descriptor),
                value: auto(&d.value),
            })),
            other => other.clone(),
        }
    }
    auto(v).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Large maps (sorted) find the same repeated key as the pairwise comparison small
        /// ones use: the first key equal to an earlier one.
        #[test]
        fn a_large_map_s_first_repeated_key_is_the_pairwise_one(
            keys in proptest::collection::vec(0u8..60, 33..120),
            as_symbols in proptest::bool::ANY,
        ) {
            let key = |k: u8| if as_symbols && k % 2 == 0 {
                Value::from(Symbol::from(format!("k{k}").as_str()))
            } else {
                Value::from(u64::from(k))
            };
            let pairs: Vec<(Value, Value)> = keys.iter().map(|&k| (key(k), Value::Null)).collect();
            let pairwise = pairs
                .iter()
                .enumerate()
                .find(|(i, (k, _))| pairs[..*i].iter().any(|(e, _)| e == k))
                .map(|(_, (k, _))| k);
            proptest::prop_assert_eq!(first_duplicate_key(&pairs), pairwise);
        }
    }

    /// Encodes `v`, checks the length and format code it announces, and decodes it back.
    fn round_trip(v: &Value) {
        let b = v.to_vec();
        assert_eq!(b.len(), v.encoded_len());
        assert_eq!(b[0], v.format_code());
        let back = Value::decode(&b).expect("our own encoding must decode");
        assert_eq!(&back, v);
        assert_eq!(back.to_vec(), b, "lossless");
    }

    /// Sizing a compound walks its elements once: walking them once for the constructor
    /// and again for the length, at every level, took time exponential in the depth (a
    /// 60-deep list would not finish).
    #[test]
    fn deep_nesting_encodes_in_linear_time() {
        let mut list = Value::Null;
        let mut map = Value::Null;
        for _ in 0..60 {
            list = Value::List(vec![list, Value::Uint(7, Fmt::Auto)], Fmt::Auto);
            map = Value::Map(vec![(Value::from("k"), map)], Fmt::Auto);
        }
        round_trip(&list);
        round_trip(&map);
        // Arrays of arrays of lists: the element constructor also depends on the size.
        let mut array = Value::List(vec![Value::Null], Fmt::Auto);
        for _ in 0..60 {
            array = Value::Array(Array::new(vec![array]).expect("one type"));
        }
        round_trip(&array);
    }
}

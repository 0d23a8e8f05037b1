//! A message decoded in place: every section located and checked as strictly as
//! [`Message::decode`](super::Message::decode) checks it, nothing copied, nothing allocated,
//! no reference count touched. Fields are read from the input when asked for.
//!
//! This is the receive hot path: a consumer that reads a few properties and the body of
//! each message pays for exactly that.

use crate::codec::format as fc;
use crate::codec::{
    DecodeError, DecodeOptions, ErrorKind, ListRef, MapRef, Reader, Timestamp, Uuid, ValueRef,
};
use crate::types::{Composite, Header, SequenceNo};

use super::validate_application_properties;

/// A borrowed, validated view of an encoded message.
#[derive(Clone, Debug, Default)]
pub struct MessageView<'a> {
    /// Transport headers (decoded eagerly: they are a handful of scalars).
    pub header: Option<Header>,
    /// delivery-annotations.
    pub delivery_annotations: Option<MapRef<'a>>,
    /// message-annotations.
    pub message_annotations: Option<MapRef<'a>>,
    /// properties.
    pub properties: Option<PropertiesView<'a>>,
    /// application-properties.
    pub application_properties: Option<MapRef<'a>>,
    /// The body.
    pub body: BodyView<'a>,
    /// footer.
    pub footer: Option<MapRef<'a>>,
    /// Where each application property's key and value sit, when the fast path indexed
    /// them (up to eight entries): lookups then skip the walk.
    index: AppIndex<'a>,
}

/// How many application properties the fast path indexes.
const INDEXED: usize = 8;

#[derive(Clone, Copy, Debug, Default)]
struct AppIndex<'a> {
    buf: &'a [u8],
    /// (key start, key end, value start) in `buf`.
    entries: [(u32, u32, u32); INDEXED],
    len: u8,
}

impl PartialEq for MessageView<'_> {
    /// Compares what the view shows, not how it was found.
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.delivery_annotations == other.delivery_annotations
            && self.message_annotations == other.message_annotations
            && self.properties == other.properties
            && self.application_properties == other.application_properties
            && self.body == other.body
            && self.footer == other.footer
    }
}

/// The body of a [`MessageView`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum BodyView<'a> {
    /// No body section.
    #[default]
    Empty,
    /// Data sections: the first one's bytes, and how many there are (read the others with
    /// [`MessageView::data_sections`]).
    Data {
        /// The bytes of the first data section.
        first: &'a [u8],
        /// Number of data sections.
        count: u32,
    },
    /// amqp-sequence sections, each a list.
    Sequence {
        /// The first section's list.
        first: ListRef<'a>,
        /// Number of amqp-sequence sections.
        count: u32,
    },
    /// An amqp-value section.
    Value(ValueRef<'a>),
}

/// The properties section, its fields borrowed from the input (checked once, when the
/// view was made).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PropertiesView<'a> {
    message_id: Option<MessageIdRef<'a>>,
    user_id: Option<&'a [u8]>,
    to: Option<&'a str>,
    subject: Option<&'a str>,
    reply_to: Option<&'a str>,
    correlation_id: Option<MessageIdRef<'a>>,
    content_type: Option<&'a str>,
    content_encoding: Option<&'a str>,
    absolute_expiry_time: Option<Timestamp>,
    creation_time: Option<Timestamp>,
    group_id: Option<&'a str>,
    group_sequence: Option<SequenceNo>,
    reply_to_group_id: Option<&'a str>,
}

/// A message-id or correlation-id, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageIdRef<'a> {
    /// message-id-ulong.
    Ulong(u64),
    /// message-id-uuid.
    Uuid(Uuid),
    /// message-id-binary.
    Binary(&'a [u8]),
    /// message-id-string.
    String(&'a str),
}

/// The format codes each properties field may have (null aside), in field order (3.2.4).
const PROPERTY_CODES: [&[u8]; 13] = [
    &[fc::ULONG0, fc::SMALLULONG, fc::ULONG, fc::UUID, fc::VBIN8, fc::VBIN32, fc::STR8, fc::STR32],
    &[fc::VBIN8, fc::VBIN32],
    &[fc::STR8, fc::STR32],
    &[fc::STR8, fc::STR32],
    &[fc::STR8, fc::STR32],
    &[fc::ULONG0, fc::SMALLULONG, fc::ULONG, fc::UUID, fc::VBIN8, fc::VBIN32, fc::STR8, fc::STR32],
    &[fc::SYM8, fc::SYM32],
    &[fc::SYM8, fc::SYM32],
    &[fc::TIMESTAMP],
    &[fc::TIMESTAMP],
    &[fc::STR8, fc::STR32],
    &[fc::UINT0, fc::SMALLUINT, fc::UINT],
    &[fc::STR8, fc::STR32],
];

/// The spec's names of the properties fields, for errors.
const PROPERTY_NAMES: [&str; 13] = [
    "message-id",
    "user-id",
    "to",
    "subject",
    "reply-to",
    "correlation-id",
    "content-type",
    "content-encoding",
    "absolute-expiry-time",
    "creation-time",
    "group-id",
    "group-sequence",
    "reply-to-group-id",
];

impl<'a> MessageView<'a> {
    /// Locates and checks every section of the message that fills `buf`, strictly.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if let Some(m) = fast::message(buf) {
            return Ok(m);
        }
        Self::decode_general(buf)
    }

    /// The value of an application property (string key), if present.
    pub fn application_property(&self, key: &str) -> Option<ValueRef<'a>> {
        let idx = &self.index;
        if idx.len > 0 {
            for &(ks, ke, vs) in &idx.entries[..usize::from(idx.len)] {
                if idx.buf.get(ks as usize..ke as usize) == Some(key.as_bytes()) {
                    let at = idx.buf.get(vs as usize..)?;
                    return ValueRef::read_simple(at).or_else(|| {
                        ValueRef::read(&mut Reader::new(at, DecodeOptions::STRICT)).ok()
                    });
                }
            }
            return None;
        }
        self.application_properties?.get(key).ok().flatten()
    }

    /// The general decoder: every encoding, and errors with their offsets.
    pub(crate) fn decode_general(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, DecodeOptions::STRICT);
        let mut m = Self::default();
        let mut last = 0u8;
        while !r.is_empty() {
            let pos = r.position();
            let code = section_code(&mut r)?;
            // 3.2: sections in order, each at most once; data and amqp-sequence repeat.
            let repeat = code == last && (code == 0x75 || code == 0x76);
            if last != 0 && (rank(code) < rank(last) || (rank(code) == rank(last) && !repeat)) {
                return Err(r.error_at(
                    pos,
                    ErrorKind::SectionOrder {
                        found: super::section_name(u64::from(code)),
                        after: super::section_name(u64::from(last)),
                    },
                ));
            }
            last = code;
            match code {
                0x70 => m.header = Some(Header::read_list(&mut r)?),
                0x71 => m.delivery_annotations = Some(map(&mut r, false)?),
                0x72 => m.message_annotations = Some(map(&mut r, false)?),
                0x73 => m.properties = Some(properties(&mut r)?),
                0x74 => m.application_properties = Some(map(&mut r, true)?),
                0x75 => {
                    let p = r.position();
                    let b = match r.read_u8()? {
                        fc::VBIN8 => {
                            let n = usize::from(r.read_u8()?);
                            r.read_slice(n)?
                        }
                        fc::VBIN32 => {
                            let n = r.read_u32()? as usize;
                            r.read_slice(n)?
                        }
                        c => {
                            return Err(r.error_at(
                                p,
                                ErrorKind::UnexpectedType { expected: "binary", found: c },
                            ))
                        }
                    };
                    m.body = match m.body {
                        BodyView::Data { first, count } => {
                            BodyView::Data { first, count: count + 1 }
                        }
                        _ => BodyView::Data { first: b, count: 1 },
                    };
                }
                0x76 => {
                    let p = r.position();
                    let v = checked(&mut r)?;
                    let ValueRef::List(l) = v else {
                        return Err(r.error_at(
                            p,
                            ErrorKind::UnexpectedType { expected: "list", found: buf[p] },
                        ));
                    };
                    m.body = match m.body {
                        BodyView::Sequence { first, count } => {
                            BodyView::Sequence { first, count: count + 1 }
                        }
                        _ => BodyView::Sequence { first: l, count: 1 },
                    };
                }
                0x77 => m.body = BodyView::Value(checked(&mut r)?),
                _ => m.footer = Some(map(&mut r, false)?),
            }
        }
        Ok(m)
    }

    /// Every data section's bytes, in order (re-reads the input; empty for other bodies).
    pub fn data_sections(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut r = Reader::new(buf, DecodeOptions::STRICT);
        std::iter::from_fn(move || loop {
            if r.is_empty() {
                return None;
            }
            let code = section_code(&mut r).ok()?;
            if code == 0x75 {
                let n = match r.read_u8().ok()? {
                    fc::VBIN8 => usize::from(r.read_u8().ok()?),
                    _ => r.read_u32().ok()? as usize,
                };
                return r.read_slice(n).ok();
            }
            r.skip_value().ok()?;
        })
    }
}

impl<'a> PropertiesView<'a> {
    /// message-id.
    pub fn message_id(&self) -> Option<MessageIdRef<'a>> {
        self.message_id
    }
    /// user-id.
    pub fn user_id(&self) -> Option<&'a [u8]> {
        self.user_id
    }
    /// to.
    pub fn to(&self) -> Option<&'a str> {
        self.to
    }
    /// subject.
    pub fn subject(&self) -> Option<&'a str> {
        self.subject
    }
    /// reply-to.
    pub fn reply_to(&self) -> Option<&'a str> {
        self.reply_to
    }
    /// correlation-id.
    pub fn correlation_id(&self) -> Option<MessageIdRef<'a>> {
        self.correlation_id
    }
    /// content-type.
    pub fn content_type(&self) -> Option<&'a str> {
        self.content_type
    }
    /// content-encoding.
    pub fn content_encoding(&self) -> Option<&'a str> {
        self.content_encoding
    }
    /// absolute-expiry-time.
    pub fn absolute_expiry_time(&self) -> Option<Timestamp> {
        self.absolute_expiry_time
    }
    /// creation-time.
    pub fn creation_time(&self) -> Option<Timestamp> {
        self.creation_time
    }
    /// group-id.
    pub fn group_id(&self) -> Option<&'a str> {
        self.group_id
    }
    /// group-sequence.
    pub fn group_sequence(&self) -> Option<SequenceNo> {
        self.group_sequence
    }
    /// reply-to-group-id.
    pub fn reply_to_group_id(&self) -> Option<&'a str> {
        self.reply_to_group_id
    }
}

/// Reads `0x00`, a descriptor and checks it names a message section; returns its code.
fn section_code(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let pos = r.position();
    // The usual encoding, 0x00 0x53 code, takes the fast path.
    let code = match crate::types::read_descriptor(r)?.code() {
        Some(c @ 0x70..=0x78) => c as u8,
        _ => {
            return Err(r.error_at(
                pos,
                ErrorKind::UnexpectedDescriptor {
                    expected: "a message section",
                    found: "another descriptor".into(),
                },
            ))
        }
    };
    Ok(code)
}

/// Reads a value and checks every byte of it.
fn checked<'a>(r: &mut Reader<'a>) -> Result<ValueRef<'a>, DecodeError> {
    let start = r.position();
    let depth = r.options().max_depth;
    r.validate_value()?;
    let mut again = Reader::new(
        &r.buffer()[start..r.position()],
        DecodeOptions { max_depth: depth, ..DecodeOptions::STRICT },
    )
    .with_base(r.offset() - (r.position() - start));
    ValueRef::read(&mut again)
}

fn map<'a>(r: &mut Reader<'a>, application_properties: bool) -> Result<MapRef<'a>, DecodeError> {
    if application_properties {
        validate_application_properties(r)
    } else {
        super::validate_annotations(r)
    }
}

fn properties<'a>(r: &mut Reader<'a>) -> Result<PropertiesView<'a>, DecodeError> {
    let start = r.position();
    let code = r.read_u8()?;
    if !matches!(code, fc::LIST0 | fc::LIST8 | fc::LIST32) {
        return Err(r.error_at(start, ErrorKind::UnexpectedType { expected: "list", found: code }));
    }
    let (count, c) = r.open_compound(code)?;
    if count as usize > PROPERTY_CODES.len() {
        return Err(r.error_at(
            start,
            ErrorKind::TooManyFields {
                composite: "properties",
                count,
                defined: PROPERTY_CODES.len(),
            },
        ));
    }
    let mut p = PropertiesView::default();
    for (i, allowed) in PROPERTY_CODES.iter().take(count as usize).enumerate() {
        let pos = r.position();
        let code = r.read_u8()?;
        if code == fc::NULL {
            continue;
        }
        if !allowed.contains(&code) {
            return Err(r.error_at(
                pos,
                ErrorKind::UnexpectedType { expected: PROPERTY_NAMES[i], found: code },
            ));
        }
        // One read both checks the field and yields it; the codes were checked above, so
        // each field gets the variant it expects.
        let v = ValueRef::read_body(r, code, pos)?;
        let id = |v: ValueRef<'a>| match v {
            ValueRef::Ulong(x) => Some(MessageIdRef::Ulong(x)),
            ValueRef::Uuid(u) => Some(MessageIdRef::Uuid(u)),
            ValueRef::Binary(b) => Some(MessageIdRef::Binary(b)),
            ValueRef::String(s) => Some(MessageIdRef::String(s)),
            _ => None,
        };
        let text = |v: ValueRef<'a>| match v {
            ValueRef::String(s) | ValueRef::Symbol(s) => Some(s),
            _ => None,
        };
        let time = |v: ValueRef<'a>| match v {
            ValueRef::Timestamp(t) => Some(t),
            _ => None,
        };
        match i {
            0 => p.message_id = id(v),
            1 => p.user_id = if let ValueRef::Binary(b) = v { Some(b) } else { None },
            2 => p.to = text(v),
            3 => p.subject = text(v),
            4 => p.reply_to = text(v),
            5 => p.correlation_id = id(v),
            6 => p.content_type = text(v),
            7 => p.content_encoding = text(v),
            8 => p.absolute_expiry_time = time(v),
            9 => p.creation_time = time(v),
            10 => p.group_id = text(v),
            11 => {
                p.group_sequence =
                    if let ValueRef::Uint(x) = v { Some(SequenceNo(x)) } else { None }
            }
            _ => p.reply_to_group_id = text(v),
        }
    }
    r.close_compound(c, "properties")?;
    Ok(p)
}

fn rank(code: u8) -> u8 {
    match code {
        0x70..=0x74 => code - 0x70,
        0x75..=0x77 => 5,
        _ => 6,
    }
}

/// The fast path of [`MessageView::decode`]: the common encodings only, `None` for anything
/// else (the general decoder then takes over, so results never depend on the path). It
/// checks exactly what the general decoder checks for the encodings it accepts.
mod fast {
    use super::{AppIndex, BodyView, MessageIdRef, MessageView, PropertiesView, INDEXED};
    use crate::codec::format as fc;
    use crate::codec::{Fast, MapRef, Timestamp, Uuid};
    use crate::types::{Header, SequenceNo};

    pub(super) fn message(buf: &[u8]) -> Option<MessageView<'_>> {
        let mut f = Fast::new(buf);
        let mut m = MessageView::default();
        let mut last = 0u8;
        while f.i < buf.len() {
            let code = f.small_descriptor()?;
            if !(0x70..=0x78).contains(&code) || code == 0x76 || code == 0x77 {
                return None;
            }
            let repeat = code == last && code == 0x75;
            if last != 0
                && (super::rank(code) < super::rank(last)
                    || (super::rank(code) == super::rank(last) && !repeat))
            {
                return None;
            }
            last = code;
            match code {
                0x70 => m.header = Some(header(&mut f)?),
                0x71 => m.delivery_annotations = Some(map(&mut f, false, None)?),
                0x72 => m.message_annotations = Some(map(&mut f, false, None)?),
                0x73 => m.properties = Some(properties(&mut f)?),
                0x74 => {
                    let mut index = AppIndex { buf, ..AppIndex::default() };
                    m.application_properties = Some(map(&mut f, true, Some(&mut index))?);
                    m.index = index;
                }
                0x75 => {
                    let b = f.opt_binary()??;
                    m.body = match m.body {
                        BodyView::Data { first, count } => {
                            BodyView::Data { first, count: count + 1 }
                        }
                        _ => BodyView::Data { first: b, count: 1 },
                    };
                }
                _ => m.footer = Some(map(&mut f, false, None)?),
            }
        }
        Some(m)
    }

    fn header(f: &mut Fast<'_>) -> Option<Header> {
        let (count, end) = f.list()?;
        if count > 5 {
            return None;
        }
        let mut h = Header::default();
        for i in 0..count {
            match i {
                0 => h.durable = f.opt_bool()?.unwrap_or(false),
                1 => h.priority = f.opt_ubyte()?.unwrap_or(4),
                2 => h.ttl = f.opt_uint()?,
                3 => h.first_acquirer = f.opt_bool()?.unwrap_or(false),
                _ => h.delivery_count = f.opt_uint()?.unwrap_or(0),
            }
        }
        (f.i == end).then_some(h)
    }

    /// A UTF-8 string after its constructor.
    fn text<'a>(f: &mut Fast<'a>, code: u8) -> Option<&'a str> {
        std::str::from_utf8(f.sized(code)?).ok()
    }

    /// Checks UTF-8 without making a `&str` (ASCII, the usual case, is the cheap check).
    fn valid_text(b: &[u8]) -> Option<&[u8]> {
        (b.is_ascii() || std::str::from_utf8(b).is_ok()).then_some(b)
    }

    /// An ASCII symbol after its constructor.
    fn symbol<'a>(f: &mut Fast<'a>, code: u8) -> Option<&'a str> {
        let b = f.sized(code)?;
        if !b.is_ascii() {
            return None;
        }
        std::str::from_utf8(b).ok()
    }

    fn id<'a>(f: &mut Fast<'a>, code: u8) -> Option<MessageIdRef<'a>> {
        Some(match code {
            fc::ULONG0 => MessageIdRef::Ulong(0),
            fc::SMALLULONG => MessageIdRef::Ulong(u64::from(f.u8()?)),
            fc::ULONG => MessageIdRef::Ulong(f.u64()?),
            fc::UUID => MessageIdRef::Uuid(Uuid(f.take(16)?.try_into().ok()?)),
            fc::VBIN8 | fc::VBIN32 => MessageIdRef::Binary(f.sized(code)?),
            fc::STR8 | fc::STR32 => MessageIdRef::String(text(f, code)?),
            _ => return None,
        })
    }

    fn properties<'a>(f: &mut Fast<'a>) -> Option<PropertiesView<'a>> {
        let (count, end) = f.list()?;
        if count > 13 {
            return None;
        }
        let mut p = PropertiesView::default();
        for i in 0..count {
            let code = f.u8()?;
            if code == fc::NULL {
                continue;
            }
            let string = matches!(code, fc::STR8 | fc::STR32);
            let sym = matches!(code, fc::SYM8 | fc::SYM32);
            match i {
                0 => p.message_id = Some(id(f, code)?),
                1 if matches!(code, fc::VBIN8 | fc::VBIN32) => p.user_id = Some(f.sized(code)?),
                2 if string => p.to = Some(text(f, code)?),
                3 if string => p.subject = Some(text(f, code)?),
                4 if string => p.reply_to = Some(text(f, code)?),
                5 => p.correlation_id = Some(id(f, code)?),
                6 if sym => p.content_type = Some(symbol(f, code)?),
                7 if sym => p.content_encoding = Some(symbol(f, code)?),
                8 if code == fc::TIMESTAMP => {
                    p.absolute_expiry_time = Some(Timestamp(f.u64()? as i64))
                }
                9 if code == fc::TIMESTAMP => p.creation_time = Some(Timestamp(f.u64()? as i64)),
                10 if string => p.group_id = Some(text(f, code)?),
                11 => {
                    let v = match code {
                        fc::UINT0 => 0,
                        fc::SMALLUINT => u32::from(f.u8()?),
                        fc::UINT => f.u32()?,
                        _ => return None,
                    };
                    p.group_sequence = Some(SequenceNo(v));
                }
                12 if string => p.reply_to_group_id = Some(text(f, code)?),
                _ => return None,
            }
        }
        (f.i == end).then_some(p)
    }

    /// A simple (non-compound, undescribed) value, checked as the general validator checks
    /// it.
    fn scalar(f: &mut Fast<'_>) -> Option<()> {
        let code = f.u8()?;
        match code {
            fc::NULL | fc::TRUE | fc::FALSE | fc::UINT0 | fc::ULONG0 => {}
            fc::BOOLEAN => {
                if f.u8()? > 1 {
                    return None;
                }
            }
            fc::CHAR => {
                char::from_u32(f.u32()?)?;
            }
            fc::STR8 | fc::STR32 => {
                valid_text(f.sized(code)?)?;
            }
            fc::SYM8 | fc::SYM32 => {
                if !f.sized(code)?.is_ascii() {
                    return None;
                }
            }
            fc::VBIN8 | fc::VBIN32 => {
                f.sized(code)?;
            }
            // list0 is fixed-width but a compound: not a simple value.
            fc::LIST0 => return None,
            _ => {
                f.take(fc::fixed_width(code)?)?;
            }
        }
        Some(())
    }

    /// An application-properties map (string keys) or an annotations map (symbol keys),
    /// each key once, simple values; records the entries in `index` when given.
    fn map<'a>(
        f: &mut Fast<'a>,
        app: bool,
        mut index: Option<&mut AppIndex<'a>>,
    ) -> Option<MapRef<'a>> {
        let (count, end) = f.map()?;
        // The body starts after the count field, where `map()` left the cursor.
        let body_start = f.i;
        let pairs = count as usize / 2;
        if pairs > INDEXED {
            return None;
        }
        let mut keys: [&[u8]; INDEXED] = [&[]; INDEXED];
        for k in 0..pairs {
            let code = f.u8()?;
            let key_start = f.i;
            let key = match code {
                fc::STR8 | fc::STR32 if app => valid_text(f.sized(code)?)?,
                fc::SYM8 | fc::SYM32 if !app => {
                    let k = f.sized(code)?;
                    k.is_ascii().then_some(k)?
                }
                _ => return None,
            };
            if keys[..k].contains(&key) {
                return None;
            }
            keys[k] = key;
            let value_start = f.i;
            scalar(f)?;
            if let Some(idx) = index.as_deref_mut() {
                let size_len = if matches!(code, fc::STR8 | fc::SYM8) { 1 } else { 4 };
                let ks = key_start + size_len;
                idx.entries[k] = (ks as u32, (ks + key.len()) as u32, value_start as u32);
                idx.len = (k + 1) as u8;
            }
        }
        if f.i != end {
            return None;
        }
        Some(MapRef::from_parts(count, &f.b[body_start..end], body_start))
    }
}

//! The AMQP message (part 3, 3.2): its sections in spec order, decoded without copying the
//! body and encoded without copying it either.
//!
//! ```text
//!  bare message ─────────────────────────────────────────────┐
//!  header │ delivery-ann. │ message-ann. │ properties │ app-properties │ body… │ footer
//!  0x70      0x71            0x72           0x73         0x74             0x75/76/77  0x78
//! ```

mod view;

pub use view::{BodyView, MessageIdRef, MessageView, PropertiesView};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::format as fc;
use crate::codec::{
    repeated_key, DecodeError, DecodeOptions, Described, ErrorKind, Fmt, KeyId, MapRef, Mode,
    Reader, Value, ValueRef, Warning,
};
use crate::types::{read_descriptor, read_unknown_described, Codec, Composite, Header, Properties};

/// Data sections at least this long are referenced, not copied, by [`Message::encode_payload`].
pub const ZERO_COPY_MIN: usize = 512;

/// An AMQP message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// Transport headers.
    pub header: Option<Header>,
    /// Annotations for the next hop only.
    pub delivery_annotations: Option<AnnotationMap>,
    /// Annotations for the whole path.
    pub message_annotations: Option<AnnotationMap>,
    /// Immutable standard properties.
    pub properties: Option<Properties>,
    /// Application properties: string keys, simple values.
    pub application_properties: Option<AnnotationMap>,
    /// The body.
    pub body: Body,
    /// Annotations computed over the bare message.
    pub footer: Option<AnnotationMap>,
    /// Sections with descriptors this crate does not know (lenient decoding only).
    pub unknown_sections: Vec<Described>,
}

/// The body of a message: data sections, amqp-sequence sections, one amqp-value, or none.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Body {
    /// No body section.
    #[default]
    Empty,
    /// One or more data sections (opaque binary), sharing the input's storage.
    Data(SmallVec<[Bytes; 1]>),
    /// One or more amqp-sequence sections, each a list of values.
    Sequence(Vec<Vec<Value>>),
    /// One amqp-value section.
    Value(Value),
}

impl Body {
    /// A body of one data section.
    pub fn data(bytes: impl Into<Bytes>) -> Self {
        let mut v = SmallVec::new();
        v.push(bytes.into());
        Self::Data(v)
    }

    /// The bytes of a single data section.
    pub fn as_data(&self) -> Option<&Bytes> {
        match self {
            Self::Data(d) if d.len() == 1 => d.first(),
            _ => None,
        }
    }

    /// The body's bytes as text-bearing applications see them: every data section joined
    /// (without a copy when there is one), or the UTF-8 of an amqp-value string; `None`
    /// for other bodies.
    pub fn bytes(&self) -> Option<Bytes> {
        match self {
            Self::Data(d) if d.len() == 1 => d.first().cloned(),
            Self::Data(d) => Some(d.iter().flat_map(|p| p.iter().copied()).collect()),
            Self::Value(Value::String(s, _)) => Some(s.as_bytes().clone()),
            _ => None,
        }
    }

    /// [`bytes`](Self::bytes) as text, when it is UTF-8.
    pub fn text(&self) -> Option<String> {
        self.bytes().and_then(|b| String::from_utf8(b.to_vec()).ok())
    }
}

/// A map section (annotations, application properties, footer), kept encoded and read
/// lazily: decoding it validates it once and allocates nothing; lookups walk the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationMap {
    raw: Bytes,
    count: u32,
    body_start: usize,
}

impl AnnotationMap {
    /// A map from key/value pairs, encoded now.
    pub fn from_pairs<K: Into<Value>, V: Into<Value>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let v =
            Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), Fmt::Auto);
        Self::from_encoded(Bytes::from(v.to_vec()))
    }

    /// An empty map.
    pub fn empty() -> Self {
        Self::from_encoded(Bytes::from_static(&[fc::MAP8, 1, 0]))
    }

    /// Wraps the encoding of a valid map (map8 or map32, constructor included).
    fn from_encoded(raw: Bytes) -> Self {
        let (count, body_start) = match raw.first() {
            Some(&fc::MAP8) if raw.len() >= 3 => (u32::from(raw[2]), 3),
            Some(&fc::MAP32) if raw.len() >= 9 => {
                (u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]), 9)
            }
            _ => (0, raw.len()),
        };
        Self { raw, count, body_start }
    }

    /// The map's encoding (constructor included).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// A lazy view of the entries.
    pub fn view(&self) -> MapRef<'_> {
        MapRef::from_parts(self.count, &self.raw[self.body_start..], 0)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value under a string or symbol key.
    pub fn get(&self, key: &str) -> Option<ValueRef<'_>> {
        self.view().get(key).ok().flatten()
    }

    /// The entries as owned values.
    pub fn to_pairs(&self) -> Vec<(Value, Value)> {
        match Value::decode(&self.raw) {
            Ok(Value::Map(pairs, _)) => pairs,
            _ => Vec::new(),
        }
    }

    /// Reads a map at the reader's position, validating every byte.
    fn read(r: &mut Reader<'_>, section: &'static str) -> Result<Self, DecodeError> {
        let start = r.position();
        let code = r.peek_u8()?;
        if !matches!(code, fc::MAP8 | fc::MAP32) {
            return Err(
                r.error_at(start, ErrorKind::UnexpectedType { expected: "map", found: code })
            );
        }
        let raw = r.skip_value()?;
        let base = r.offset() - raw.len();
        let strict = DecodeOptions { mode: Mode::Strict, ..r.options() };
        let mut v = Reader::new(raw, strict).with_base(base);
        let checked = if section == "application-properties" {
            validate_application_properties(&mut v)
        } else {
            validate_annotations(&mut v)
        };
        match checked {
            Ok(_) => Ok(Self::from_encoded(r.to_bytes(raw))),
            Err(e) if r.options().mode == Mode::Lenient => {
                // Repair: decode leniently (recording what was off) and keep a canonical
                // re-encoding so that later lookups read valid bytes.
                let mut sub = Reader::new(raw, r.options()).with_base(base);
                let v = Value::read(&mut sub)?;
                let warnings = sub.take_warnings();
                if warnings.is_empty() {
                    // Only a semantic rule failed (application-properties keys or values).
                    r.push_warning(Warning {
                        offset: e.offset,
                        kind: e.kind.clone(),
                        action: "kept the entry",
                    });
                }
                for w in warnings {
                    r.push_warning(w);
                }
                Ok(Self::from_encoded(Bytes::from(v.to_vec())))
            }
            Err(e) => Err(e),
        }
    }
}

/// Checks an application-properties map (3.2.5): string keys, each once, and values of
/// simple types ("not map, list, or array"), every byte valid.
pub(crate) fn validate_application_properties<'a>(
    r: &mut Reader<'a>,
) -> Result<MapRef<'a>, DecodeError> {
    validate_map_section(r, true)
}

/// Checks an annotations map (delivery-annotations, message-annotations, footer; 3.2.10):
/// symbol or ulong keys, each once, every byte valid.
pub(crate) fn validate_annotations<'a>(r: &mut Reader<'a>) -> Result<MapRef<'a>, DecodeError> {
    validate_map_section(r, false)
}

/// Returns a view of the checked map.
fn validate_map_section<'a>(r: &mut Reader<'a>, app: bool) -> Result<MapRef<'a>, DecodeError> {
    let start = r.position();
    let code = r.read_u8()?;
    if !matches!(code, fc::MAP8 | fc::MAP32) {
        return Err(r.error_at(start, ErrorKind::UnexpectedType { expected: "map", found: code }));
    }
    let what = if app { "application-properties" } else { "annotations" };
    let (count, c) = r.open_compound(code)?;
    let (body_start, body_offset) = (r.position(), r.offset());
    let mut keys: SmallVec<[KeyId<'_>; 16]> = SmallVec::new();
    for _ in 0..count / 2 {
        let kpos = r.position();
        let kcode = r.peek_u8()?;
        let key = match kcode {
            fc::STR8 | fc::STR32 if app => {
                r.validate_value()?;
                KeyId::Str(key_bytes(r.buffer(), kpos))
            }
            fc::SYM8 | fc::SYM32 if !app => {
                r.validate_value()?;
                KeyId::Sym(key_bytes(r.buffer(), kpos))
            }
            fc::ULONG0 | fc::SMALLULONG | fc::ULONG if !app => {
                KeyId::Ulong(<u64 as Codec>::read_opt(r)?.unwrap_or(0))
            }
            _ => {
                let reason =
                    if app { "keys must be strings" } else { "keys must be symbols or ulongs" };
                return Err(
                    r.error_at(kpos, ErrorKind::InvalidValue { what, reason: reason.into() })
                );
            }
        };
        keys.push(key);
        let vpos = r.position();
        if app
            && matches!(
                r.peek_u8()?,
                fc::LIST0
                    | fc::LIST8
                    | fc::LIST32
                    | fc::MAP8
                    | fc::MAP32
                    | fc::ARRAY8
                    | fc::ARRAY32
            )
        {
            return Err(r.error_at(
                vpos,
                ErrorKind::InvalidValue {
                    what,
                    reason: "values must be simple types, not list, map or array".into(),
                },
            ));
        }
        r.validate_value()?;
    }
    let body = &r.buffer()[body_start..r.position()];
    r.close_compound(c, what)?;
    // Part 1, 1.6.23: a map with two identical keys is invalid.
    if let Some(k) = repeated_key(&keys) {
        let shown = match k {
            KeyId::Str(b) | KeyId::Sym(b) => format!("{:?}", String::from_utf8_lossy(b)),
            KeyId::Ulong(v) => v.to_string(),
        };
        r.deviation(start, ErrorKind::DuplicateKey(shown), "kept both entries")?;
    }
    Ok(MapRef::from_parts(count, body, body_offset))
}

/// The content bytes of the string or symbol whose constructor is at `pos`.
fn key_bytes(buf: &[u8], pos: usize) -> &[u8] {
    let (len, at) = match buf.get(pos) {
        Some(&fc::STR8) | Some(&fc::SYM8) => {
            (buf.get(pos + 1).map_or(0, |n| usize::from(*n)), pos + 2)
        }
        _ => (
            buf.get(pos + 1..pos + 5)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
            pos + 5,
        ),
    };
    buf.get(at..at + len).unwrap_or(&[])
}

pub(crate) fn section_name(code: u64) -> &'static str {
    match code {
        0x70 => "header",
        0x71 => "delivery-annotations",
        0x72 => "message-annotations",
        0x73 => "properties",
        0x74 => "application-properties",
        0x75 => "data",
        0x76 => "amqp-sequence",
        0x77 => "amqp-value",
        _ => "footer",
    }
}

/// The position of each section kind in the order the spec fixes.
fn rank(code: u64) -> u8 {
    match code {
        0x70 => 0,
        0x71 => 1,
        0x72 => 2,
        0x73 => 3,
        0x74 => 4,
        0x75..=0x77 => 5,
        _ => 6,
    }
}

impl Message {
    /// A message whose body is one data section.
    pub fn with_data(body: impl Into<Bytes>) -> Self {
        Self { body: Body::data(body), ..Self::default() }
    }

    /// A message whose body is one amqp-value section.
    pub fn with_value(v: impl Into<Value>) -> Self {
        Self { body: Body::Value(v.into()), ..Self::default() }
    }

    /// Decodes a message that fills `bytes`, strictly. Strings, binaries and data sections
    /// share `bytes`' storage.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::from_bytes(bytes, DecodeOptions::STRICT))
    }

    /// Decodes a message with `opts`; returns it and the warnings of a lenient decode.
    pub fn decode_with(
        bytes: &Bytes,
        opts: DecodeOptions,
    ) -> Result<(Self, Vec<crate::codec::Warning>), DecodeError> {
        let mut r = Reader::from_bytes(bytes, opts);
        let m = Self::read(&mut r)?;
        Ok((m, r.take_warnings()))
    }

    /// Reads sections until the reader is empty. Over a reader made with
    /// [`Reader::from_bytes`], strings and data sections share that storage.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        let mut last: Option<u64> = None;
        while !r.is_empty() {
            let pos = r.position();
            let d = read_descriptor(r)?;
            let Some(code) = d.code().filter(|c| (0x70..=0x78).contains(c)) else {
                r.deviation(
                    pos,
                    ErrorKind::UnexpectedDescriptor {
                        expected: "a message section",
                        found: d.to_string(),
                    },
                    "kept the unknown section",
                )?;
                m.unknown_sections.push(read_unknown_described(r, d)?);
                continue;
            };
            let name = section_name(code);
            if let Some(prev) = last {
                // 3.2: sections appear in order, each at most once; data and amqp-sequence
                // may repeat, but only after their own kind.
                let repeat_ok = prev == code && (code == 0x75 || code == 0x76);
                if rank(code) < rank(prev) || (rank(code) == rank(prev) && !repeat_ok) {
                    return Err(r.error_at(
                        pos,
                        ErrorKind::SectionOrder { found: name, after: section_name(prev) },
                    ));
                }
            }
            last = Some(code);
            match code {
                0x70 => m.header = Some(Header::read_list(r)?),
                0x71 => m.delivery_annotations = Some(AnnotationMap::read(r, name)?),
                0x72 => m.message_annotations = Some(AnnotationMap::read(r, name)?),
                0x73 => m.properties = Some(Properties::read_list(r)?),
                0x74 => m.application_properties = Some(AnnotationMap::read(r, name)?),
                0x75 => {
                    let b = <Bytes as Codec>::read_opt(r)?.ok_or_else(|| {
                        r.error_at(
                            pos,
                            ErrorKind::MissingField { composite: "data", field: "binary" },
                        )
                    })?;
                    match &mut m.body {
                        Body::Data(v) => v.push(b),
                        _ => m.body = Body::data(b),
                    }
                }
                0x76 => {
                    let vpos = r.position();
                    let items = match Value::read(r)? {
                        Value::List(items, _) => items,
                        _ => {
                            return Err(r.error_at(
                                vpos,
                                ErrorKind::UnexpectedType {
                                    expected: "list",
                                    found: r.buffer().get(vpos).copied().unwrap_or(0),
                                },
                            ))
                        }
                    };
                    match &mut m.body {
                        Body::Sequence(v) => v.push(items),
                        _ => m.body = Body::Sequence(vec![items]),
                    }
                }
                0x77 => m.body = Body::Value(Value::read(r)?),
                _ => m.footer = Some(AnnotationMap::read(r, name)?),
            }
        }
        Ok(m)
    }

    /// Bytes [`Message::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let mut n = 0;
        if let Some(h) = &self.header {
            n += Codec::encoded_len(h);
        }
        for m in [&self.delivery_annotations, &self.message_annotations].into_iter().flatten() {
            n += 3 + m.raw.len();
        }
        if let Some(p) = &self.properties {
            n += Codec::encoded_len(p);
        }
        if let Some(m) = &self.application_properties {
            n += 3 + m.raw.len();
        }
        n += match &self.body {
            Body::Empty => 0,
            Body::Data(d) => d.iter().map(|b| 3 + Codec::encoded_len(b)).sum(),
            Body::Sequence(s) => s.iter().map(|l| 3 + list_value_len(l)).sum(),
            Body::Value(v) => 3 + v.encoded_len(),
        };
        if let Some(m) = &self.footer {
            n += 3 + m.raw.len();
        }
        n
    }

    /// Appends the encoding, copying the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut p = Payload::default();
        std::mem::swap(&mut p.head, out);
        self.encode_inner(&mut p, usize::MAX);
        std::mem::swap(&mut p.head, out);
    }

    /// Encodes into `payload` (cleared first), referencing data sections of at least
    /// [`ZERO_COPY_MIN`] bytes instead of copying them.
    pub fn encode_payload(&self, payload: &mut Payload) {
        payload.clear();
        self.encode_inner(payload, ZERO_COPY_MIN);
    }

    /// Appends the encoding to `payload`, referencing large data sections as
    /// [`Message::encode_payload`] does.
    pub fn append_to_payload(&self, payload: &mut Payload) {
        self.encode_inner(payload, ZERO_COPY_MIN);
    }

    fn encode_inner(&self, p: &mut Payload, zero_copy_min: usize) {
        let out = &mut p.head;
        if let Some(h) = &self.header {
            Codec::encode(h, out);
        }
        if let Some(m) = &self.delivery_annotations {
            section_header(0x71, out);
            out.extend_from_slice(&m.raw);
        }
        if let Some(m) = &self.message_annotations {
            section_header(0x72, out);
            out.extend_from_slice(&m.raw);
        }
        if let Some(pr) = &self.properties {
            Codec::encode(pr, out);
        }
        if let Some(m) = &self.application_properties {
            section_header(0x74, out);
            out.extend_from_slice(&m.raw);
        }
        match &self.body {
            Body::Empty => {}
            Body::Data(d) => {
                for b in d {
                    section_header(0x75, &mut p.head);
                    if b.len() >= zero_copy_min {
                        p.head.push(fc::VBIN32);
                        p.head.extend_from_slice(&(b.len() as u32).to_be_bytes());
                        p.inserts.push((p.head.len(), b.clone()));
                    } else {
                        Codec::encode(b, &mut p.head);
                    }
                }
            }
            Body::Sequence(s) => {
                for l in s {
                    section_header(0x76, &mut p.head);
                    Value::List(l.clone(), Fmt::Auto).encode(&mut p.head);
                }
            }
            Body::Value(v) => {
                section_header(0x77, &mut p.head);
                v.encode(&mut p.head);
            }
        }
        if let Some(m) = &self.footer {
            section_header(0x78, &mut p.head);
            p.head.extend_from_slice(&m.raw);
        }
    }

    /// The encoding as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

fn list_value_len(items: &[Value]) -> usize {
    let body: usize = items.iter().map(Value::encoded_len).sum();
    crate::types::list_len(items.len(), body)
}

fn section_header(code: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[fc::DESCRIBED, fc::SMALLULONG, code]);
}

/// An encoded message as a head buffer with large data sections referenced by position,
/// so a 64 KiB body goes to the transport without being copied.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// Everything but the referenced sections.
    pub head: Vec<u8>,
    /// `(offset in head, bytes)`: the bytes belong at that offset, in order.
    pub inserts: Vec<(usize, Bytes)>,
}

impl Payload {
    /// Empties it, keeping the head's capacity.
    pub fn clear(&mut self) {
        self.head.clear();
        self.inserts.clear();
    }

    /// Total encoded length.
    pub fn len(&self) -> usize {
        self.head.len() + self.inserts.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Whether nothing is encoded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoding as slices in order, for vectored writes.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        // Each insert is preceded by the head up to its offset, and the head's rest
        // follows the last.
        let last = self.inserts.last().map_or(0, |(pos, _)| *pos);
        let mut at = 0;
        self.inserts
            .iter()
            .flat_map(move |(pos, b)| {
                let before = &self.head[at..*pos];
                at = *pos;
                [before, b.as_ref()]
            })
            .chain(std::iter::once(&self.head[last..]))
            .filter(|c| !c.is_empty())
    }

    /// The encoding copied into one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for c in self.chunks() {
            v.extend_from_slice(c);
        }
        v
    }

    /// Where the frames written from head position `h` and insert `k` on end after `frames`
    /// of them: the head position and insert index there. Each frame's header is in the
    /// head and each insert inside one frame, as [`crate::frame::FrameEncoder`] writes
    /// them; `None` when the encoding is shorter or not so laid out.
    pub(crate) fn after_frames(
        &self,
        mut h: usize,
        mut k: usize,
        frames: usize,
    ) -> Option<(usize, usize)> {
        for _ in 0..frames {
            let size = self.head.get(h..h.checked_add(4)?)?;
            let mut left = u32::from_be_bytes(size.try_into().ok()?) as usize;
            // The inserts that come before the frame's last head byte are in it.
            while let Some((pos, b)) = self.inserts.get(k) {
                let before = pos.checked_sub(h)?;
                if before >= left {
                    break;
                }
                left = left.checked_sub(before + b.len())?;
                (h, k) = (*pos, k + 1);
            }
            h = h.checked_add(left).filter(|end| *end <= self.head.len())?;
        }
        Some((h, k))
    }

    /// Splits off the encoding from head position `h` and insert `k` on (an
    /// [`Payload::after_frames`] answer): it is returned, and this keeps what came before.
    pub(crate) fn split_off(&mut self, h: usize, k: usize) -> Self {
        let head = self.head.split_off(h);
        let inserts = self.inserts.drain(k..).map(|(pos, b)| (pos.saturating_sub(h), b)).collect();
        Self { head, inserts }
    }

    /// Appends `other`'s whole encoding.
    pub(crate) fn append(&mut self, mut other: Self) {
        let base = self.head.len();
        self.inserts.extend(other.inserts.drain(..).map(|(pos, b)| (pos + base, b)));
        self.head.append(&mut other.head);
    }

    /// Appends `n` bytes of `src` starting at byte `from` (of its whole encoding): bytes of
    /// its head are copied, bytes of its referenced sections are referenced again.
    pub fn append_range(&mut self, src: &Self, from: usize, n: usize) {
        let end = from + n;
        // Walk the segments of `src` in order: head slices between inserts, and inserts.
        let mut at = 0usize; // position in the whole encoding
        let mut head_at = 0usize; // position in src.head
        let take = |seg_start: usize, seg: Segment<'_>, this: &mut Self| {
            let seg_len = seg.len();
            let lo = from.max(seg_start);
            let hi = end.min(seg_start + seg_len);
            if lo < hi {
                match seg {
                    Segment::Head(h) => {
                        this.head.extend_from_slice(&h[lo - seg_start..hi - seg_start])
                    }
                    Segment::Insert(b) => {
                        let pos = this.head.len();
                        this.inserts.push((pos, b.slice(lo - seg_start..hi - seg_start)));
                    }
                }
            }
        };
        for (pos, b) in &src.inserts {
            let h = &src.head[head_at..*pos];
            take(at, Segment::Head(h), self);
            at += h.len();
            head_at = *pos;
            take(at, Segment::Insert(b), self);
            at += b.len();
        }
        take(at, Segment::Head(&src.head[head_at..]), self);
    }
}

enum Segment<'a> {
    Head(&'a [u8]),
    Insert(&'a Bytes),
}

impl Segment<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Head(h) => h.len(),
            Self::Insert(b) => b.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks are the head with each referenced section at its offset, in order,
    /// empty pieces left out: a section at the start, two at one offset, one at the end.
    #[test]
    fn chunks_put_each_section_at_its_offset() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let p = Payload {
            head: b"abcdef".to_vec(),
            inserts: [(0, b("1")), (3, b("2")), (3, b("3")), (6, b("4"))].into_iter().collect(),
        };
        let chunks: Vec<&[u8]> = p.chunks().collect();
        let want: [&[u8]; 6] = [b"1", b"abc", b"2", b"3", b"def", b"4"];
        assert_eq!(chunks, want);
        assert_eq!(p.to_vec(), b"1abc23def4");
        let plain = Payload { head: b"xy".to_vec(), inserts: Vec::new() };
        assert_eq!(plain.chunks().collect::<Vec<_>>(), [b"xy"]);
        assert_eq!(Payload::default().chunks().count(), 0);
    }
}

//! The JSON rendering of inspected records: one object per line, in the schema of
//! `docs/trace-format.md`. Field names are the spec's (`container-id`, `max-frame-size`…).
//!
//! Each rendering is written once, against a sink of JSON tokens, and comes in two forms:
//! text streamed straight into a string ([`write_record_json`], [`write_trace_lines`]),
//! which is what `amqpwire decode --json` and the live trace print, and `serde_json`
//! values (`record_json`, `trace_lines`, `payload_json`, `value_json`, with feature `json`)
//! for callers that edit or embed them. The text is, byte for byte, what `serde_json` prints for the
//! values: keys in the same order, strings escaped as it escapes them (RFC 8259), numbers
//! written as it writes them.

use std::fmt::{self, Write as _};

#[cfg(feature = "json")]
use serde_json::{Map, Value as Json};

use super::{push_decimal, DeliveryRecord, FrameRecord, Record, HEX_DIGITS};
use crate::codec::{DecodeOptions, Reader, Value, Warning};
use crate::frame::{Frame, FrameBody};
use crate::types::{fields_for_code, name_for_code};

/// Appends the JSON lines of `record` to `out`, each ended by a newline: the text of
/// `record_json`'s values (feature `json`) as `serde_json` prints them, without building
/// them.
pub fn write_record_json(record: &Record, out: &mut String) {
    record_lines(&mut Writer::new(out), record, None);
}

/// Appends the lines of a live trace for one record to `out`, each ended by a newline:
/// the text of `trace_lines`'s values (feature `json`), without building them.
pub fn write_trace_lines(
    record: &Record,
    direction: &str,
    time: f64,
    connection: u64,
    out: &mut String,
) {
    trace_values(&mut Writer::new(out), record, direction, time, connection);
}

/// The lines of a live trace for one record, as values of an open array or object of `s`
/// (the browser binding's `Tracer` writes them into one array).
pub(crate) fn trace_values<S: Sink>(
    s: &mut S,
    record: &Record,
    direction: &str,
    time: f64,
    connection: u64,
) {
    record_lines(s, record, Some(&Trace { direction, time, connection }));
}

#[cfg(feature = "json")]
/// The lines of a live trace (`--trace-json`) for one record: [`record_json`]'s, each with
/// the `direction` it went (`in`, `out`), the `time` in seconds since the trace began
/// (rounded to the microsecond) and the `connection` number.
pub fn trace_lines(record: &Record, direction: &str, time: f64, connection: u64) -> Vec<Json> {
    let mut b = Builder::default();
    record_lines(&mut b, record, Some(&Trace { direction, time, connection }));
    b.done
}

#[cfg(feature = "json")]
/// The JSON lines for one record: usually one, two when a frame's body is malformed (the
/// frame, then an `error` line).
pub fn record_json(record: &Record) -> Vec<Json> {
    let mut b = Builder::default();
    record_lines(&mut b, record, None);
    b.done
}

#[cfg(feature = "json")]
/// An encoded message as the `message` object of a transfer line (see
/// `docs/trace-format.md`): its size, the number of frames it came in (when known), its
/// sections by name and its body.
pub fn payload_json(payload: &[u8], frames: Option<usize>) -> Json {
    let mut b = Builder::default();
    write_payload(&mut b, payload, frames);
    b.value()
}

#[cfg(feature = "json")]
/// An AMQP value as JSON: null, booleans, numbers and strings map to themselves (symbols
/// too); binaries become `{"binary": hex}`, timestamps `{"timestamp": ms, "utc": …}`, uuids
/// `{"uuid": …}`; lists and arrays become arrays; maps become objects when every key is a
/// string or symbol, else `{"map": [[k, v], …]}`; a known composite becomes `{name: {field:
/// value, …}}` with the fields present on the wire; any other described value becomes
/// `{"described": {"descriptor": …, "value": …}}`.
pub fn value_json(v: &Value) -> Json {
    let mut b = Builder::default();
    write_value(&mut b, v);
    b.value()
}

/// Where a rendering goes, one JSON token at a time: the text ([`Writer`]) or `serde_json`
/// values ([`Builder`]). A value that completes at the top level is a line.
pub(crate) trait Sink {
    /// `null`.
    fn null(&mut self);
    /// `true` or `false`.
    fn bool(&mut self, b: bool);
    /// A number.
    fn u64(&mut self, x: u64);
    /// A number.
    fn i64(&mut self, x: i64);
    /// A number when finite; `null` otherwise (as `serde_json` makes a value of a float).
    fn f64(&mut self, x: f64);
    /// A string.
    fn str(&mut self, s: &str);
    /// A string: what `d` displays.
    fn display(&mut self, d: impl fmt::Display);
    /// A string: the lower-case hex of `b`.
    fn hex(&mut self, b: &[u8]);
    /// Opens an object.
    fn begin_object(&mut self);
    /// The key of the next value of the open object.
    fn key(&mut self, k: &str);
    /// The key `[i]`.
    fn index_key(&mut self, i: usize);
    /// Closes the open object.
    fn end_object(&mut self);
    /// Opens an array.
    fn begin_array(&mut self);
    /// Closes the open array.
    fn end_array(&mut self);
}

/// JSON text, written into a string as `serde_json`'s compact serialiser writes the same
/// value; a newline ends each value written at the top level.
pub(crate) struct Writer<'a> {
    out: &'a mut String,
    /// The next value or key goes after another one, so a comma comes first.
    comma: bool,
    /// How many objects and arrays are open.
    depth: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        Self { out, comma: false, depth: 0 }
    }

    fn before(&mut self) {
        if self.comma {
            self.out.push(',');
        }
    }

    fn after(&mut self) {
        if self.depth == 0 {
            self.out.push('\n');
            self.comma = false;
        } else {
            self.comma = true;
        }
    }
}

impl Sink for Writer<'_> {
    fn null(&mut self) {
        self.before();
        self.out.push_str("null");
        self.after();
    }

    fn bool(&mut self, b: bool) {
        self.before();
        self.out.push_str(if b { "true" } else { "false" });
        self.after();
    }

    fn u64(&mut self, x: u64) {
        self.before();
        push_decimal(self.out, x);
        self.after();
    }

    fn i64(&mut self, x: i64) {
        self.before();
        if x < 0 {
            self.out.push('-');
        }
        push_decimal(self.out, x.unsigned_abs());
        self.after();
    }

    fn f64(&mut self, x: f64) {
        self.before();
        push_f64(self.out, x);
        self.after();
    }

    fn str(&mut self, s: &str) {
        self.before();
        self.out.push('"');
        push_escaped(self.out, s);
        self.out.push('"');
        self.after();
    }

    fn display(&mut self, d: impl fmt::Display) {
        self.before();
        self.out.push('"');
        let _ = write!(Escaped(self.out), "{d}");
        self.out.push('"');
        self.after();
    }

    fn hex(&mut self, b: &[u8]) {
        self.before();
        self.out.push('"');
        push_hex(self.out, b);
        self.out.push('"');
        self.after();
    }

    fn begin_object(&mut self) {
        self.before();
        self.out.push('{');
        self.depth += 1;
        self.comma = false;
    }

    fn key(&mut self, k: &str) {
        self.before();
        self.out.push('"');
        push_escaped(self.out, k);
        self.out.push_str("\":");
        self.comma = false;
    }

    fn index_key(&mut self, i: usize) {
        self.before();
        self.out.push_str("\"[");
        push_decimal(self.out, i as u64);
        self.out.push_str("]\":");
        self.comma = false;
    }

    fn end_object(&mut self) {
        self.out.push('}');
        self.depth = self.depth.saturating_sub(1);
        self.after();
    }

    fn begin_array(&mut self) {
        self.before();
        self.out.push('[');
        self.depth += 1;
        self.comma = false;
    }

    fn end_array(&mut self) {
        self.out.push(']');
        self.depth = self.depth.saturating_sub(1);
        self.after();
    }
}

/// Appends a float as `serde_json` writes it: the shortest digits that read back as `x`
/// (its own formatter, `zmij`), or `null` when `x` is not finite.
pub(crate) fn push_f64(out: &mut String, x: f64) {
    if x.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(x));
    } else {
        out.push_str("null");
    }
}

/// Appends the lower-case hex of `b`.
fn push_hex(out: &mut String, b: &[u8]) {
    // A chunk at a time, through a buffer on the stack: a frame's bytes are most of a
    // line, and pushing them a character at a time checks the capacity each time.
    const CHUNK: usize = 64;
    out.reserve(2 * b.len());
    let mut digits = [0u8; 2 * CHUNK];
    for chunk in b.chunks(CHUNK) {
        for (pair, x) in digits.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX_DIGITS[usize::from(x >> 4)];
            pair[1] = HEX_DIGITS[usize::from(x & 0xf)];
        }
        out.push_str(std::str::from_utf8(&digits[..2 * chunk.len()]).unwrap_or_default());
    }
}

/// How each byte appears in a JSON string: `0` as it is, `u` as `\u00xx`, else the letter
/// of its short escape (`n` for `\n`…).
const ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` escaped for a JSON string (RFC 8259, section 7), as `serde_json` escapes
/// it: the quote, the backslash and the control characters below U+0020, by their short
/// escapes where JSON has one (`\n`…) and as `\u00xx` otherwise; everything else as it is.
pub(crate) fn push_escaped(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPES[usize::from(b)];
        if escape == 0 {
            continue;
        }
        // An escaped byte is ASCII, a character of its own: the slices fall on boundaries.
        out.push_str(&s[plain..i]);
        if escape == b'u' {
            out.push_str("\\u00");
            out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
        } else {
            out.push('\\');
            out.push(char::from(escape));
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

/// Escapes what is displayed into it, into the string.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// `serde_json` values; each value completed at the top level is kept, in order.
#[cfg(feature = "json")]
#[derive(Default)]
pub(crate) struct Builder {
    /// The open objects and arrays, innermost last, each object with the key of its next
    /// value.
    open: Vec<(Json, Option<String>)>,
    /// The values completed at the top level.
    done: Vec<Json>,
}

#[cfg(feature = "json")]
impl Builder {
    /// The last value completed (`null` when none was).
    pub(crate) fn value(mut self) -> Json {
        self.done.pop().unwrap_or(Json::Null)
    }

    fn put(&mut self, v: Json) {
        match self.open.last_mut() {
            Some((Json::Array(a), _)) => a.push(v),
            // A key given twice keeps its first place and its last value, as in a map.
            Some((Json::Object(m), key)) => {
                m.insert(key.take().unwrap_or_default(), v);
            }
            _ => self.done.push(v),
        }
    }

    fn close(&mut self) {
        if let Some((v, _)) = self.open.pop() {
            self.put(v);
        }
    }
}

#[cfg(feature = "json")]
impl Sink for Builder {
    fn null(&mut self) {
        self.put(Json::Null);
    }

    fn bool(&mut self, b: bool) {
        self.put(b.into());
    }

    fn u64(&mut self, x: u64) {
        self.put(x.into());
    }

    fn i64(&mut self, x: i64) {
        self.put(x.into());
    }

    fn f64(&mut self, x: f64) {
        self.put(x.into());
    }

    fn str(&mut self, s: &str) {
        self.put(s.into());
    }

    fn display(&mut self, d: impl fmt::Display) {
        self.put(d.to_string().into());
    }

    fn hex(&mut self, b: &[u8]) {
        self.put(super::hex(b).into());
    }

    fn begin_object(&mut self) {
        self.open.push((Json::Object(Map::new()), None));
    }

    fn key(&mut self, k: &str) {
        if let Some((_, key)) = self.open.last_mut() {
            *key = Some(k.to_owned());
        }
    }

    fn index_key(&mut self, i: usize) {
        if let Some((_, key)) = self.open.last_mut() {
            *key = Some(format!("[{i}]"));
        }
    }

    fn end_object(&mut self) {
        self.close();
    }

    fn begin_array(&mut self) {
        self.open.push((Json::Array(Vec::new()), None));
    }

    fn end_array(&mut self) {
        self.close();
    }
}

/// What a live trace adds to each line.
struct Trace<'a> {
    direction: &'a str,
    time: f64,
    connection: u64,
}

/// Ends a line's object, after the trace's entries when there are any.
fn end_line<S: Sink>(s: &mut S, trace: Option<&Trace<'_>>) {
    if let Some(t) = trace {
        s.key("direction");
        s.str(t.direction);
        s.key("time");
        s.f64((t.time * 1e6).round() / 1e6);
        s.key("connection");
        s.u64(t.connection);
    }
    s.end_object();
}

fn record_lines<S: Sink>(s: &mut S, record: &Record, trace: Option<&Trace<'_>>) {
    match record {
        Record::Header { offset, header } => {
            s.begin_object();
            s.key("offset");
            s.u64(*offset);
            s.key("kind");
            s.str("header");
            s.key("protocol_id");
            s.u64(header.id.0.into());
            s.key("protocol");
            match header.id.name() {
                Some(n) => s.str(n),
                None => s.null(),
            }
            s.key("version");
            s.display(format_args!("{}.{}.{}", header.major, header.minor, header.revision));
            s.key("raw");
            s.hex(&header.to_bytes());
            end_line(s, trace);
        }
        Record::Frame(f) => frame_lines(s, f, trace),
        Record::Error { error, rest, redacted } => {
            fatal_line(s, error.offset, &error.kind, rest, *redacted, trace);
        }
        Record::Truncated { offset, rest, redacted } => {
            let e = format_args!("the stream ends inside an item: {} bytes left over", rest.len());
            fatal_line(s, *offset, e, rest, *redacted, trace);
        }
        Record::Undecoded { offset, len, bytes } => {
            s.begin_object();
            s.key("offset");
            s.u64(*offset);
            s.key("kind");
            s.str("undecoded");
            s.key("bytes");
            s.u64(*len);
            match bytes {
                Some(b) => {
                    s.key("raw");
                    s.hex(b);
                }
                None => {
                    s.key("redacted");
                    s.bool(true);
                }
            }
            end_line(s, trace);
        }
    }
}

/// A line of kind `error` that stops the decoding, with the bytes left undecoded as its
/// `raw` (which `encode` writes back).
fn fatal_line<S: Sink>(
    s: &mut S,
    offset: u64,
    e: impl fmt::Display,
    rest: &[u8],
    redacted: bool,
    trace: Option<&Trace<'_>>,
) {
    s.begin_object();
    s.key("offset");
    s.u64(offset);
    s.key("kind");
    s.str("error");
    s.key("fatal");
    s.bool(true);
    s.key("error");
    s.display(e);
    if !rest.is_empty() {
        s.key("raw");
        s.hex(rest);
    }
    if redacted {
        s.key("redacted");
        s.bool(true);
    }
    end_line(s, trace);
}

fn frame_lines<S: Sink>(s: &mut S, f: &FrameRecord, trace: Option<&Trace<'_>>) {
    let h = &f.header;
    s.begin_object();
    s.key("offset");
    s.u64(f.offset);
    s.key("kind");
    s.str("frame");
    s.key("type");
    // Another type byte is written as its number, which `encode` takes back.
    match h.frame_type.name() {
        Some(name) => s.str(name),
        None => s.u64(h.frame_type.0.into()),
    }
    s.key("channel");
    s.u64(h.channel.into());
    s.key("size");
    s.u64(h.size.into());
    s.key("doff");
    s.u64(h.doff.into());
    s.key("performative");
    match f.performative() {
        Some(p) => s.str(p),
        None => s.null(),
    }
    // The frame decoder checked that the header's doff lies within the frame.
    let doff = (usize::from(h.doff) * 4).min(f.raw.len());
    if doff > 8 {
        s.key("extended_header");
        s.hex(&f.raw[8..doff]);
    }
    // The body's first value, read once for its fields and for its typed form, over the
    // frame's storage (strings and binaries are shared, not copied).
    let body = f.raw.slice(doff..);
    let mut r = Reader::from_bytes(&body, DecodeOptions::LENIENT);
    let first = if body.is_empty() { None } else { Value::read(&mut r).ok() };
    // A lenient read that met no deviation reads what a strict read does: strict mode
    // refuses exactly what lenient mode accepts with a warning.
    let strict = first.as_ref().filter(|_| r.warnings().is_empty());
    let used = r.position();
    // The fields of a performative or SASL body, by spec name, as far as they were
    // encoded; of another value, its rendering (none for a null: optional keys are never
    // null).
    match &first {
        None | Some(Value::Null) => {}
        Some(v) => {
            s.key("fields");
            match composite(v) {
                Some((fields, items)) => write_fields(s, fields, items),
                None => write_value(s, v),
            }
        }
    }
    // The bytes after the performative: a transfer's share of its message, or bytes a
    // lenient decode ignored; also where the frame is in error (a strict decode refused
    // them, a SASL frame's), as `payload` below gives them.
    let after = match &f.frame {
        Ok(Frame { body: FrameBody::Amqp { payload, .. }, .. }) => payload.len(),
        _ if first.is_some() => body.len() - used,
        _ => 0,
    };
    if after > 0 {
        s.key("payload_size");
        s.u64(after as u64);
    }
    if let Some(n) = f.continuation {
        s.key("continuation");
        s.u64(n as u64);
    }
    if f.aborted {
        s.key("aborted");
        s.bool(true);
    }
    if f.redacted {
        s.key("redacted");
        s.bool(true);
    }
    if let Some(d) = &f.delivery {
        s.key("message");
        write_payload(s, &d.payload, Some(d.frames));
    }
    let message_warnings = f.delivery.as_ref().map_or(&[][..], |d| &d.warnings[..]);
    if !f.warnings.is_empty() || !message_warnings.is_empty() {
        s.key("warnings");
        s.begin_array();
        for w in &f.warnings {
            write_warning(s, w, false);
        }
        for w in message_warnings {
            write_warning(s, w, true);
        }
        s.end_array();
    }
    // The lossless form, for `amqpwire encode`: the body's first value typed, the bytes
    // after it in hex; or the body in hex when it is not a value that re-encodes to itself.
    if !body.is_empty() {
        match strict {
            Some(v) if reencodes(v, &body[..used]) => {
                s.key("typed");
                super::typed::write_typed(s, v, false);
                if used < body.len() {
                    s.key("payload");
                    s.hex(&body[used..]);
                }
            }
            _ => {
                s.key("body");
                s.hex(&body);
            }
        }
    }
    s.key("raw");
    s.hex(&f.raw);
    end_line(s, trace);
    if let Some(e) = f.layer_error {
        error_line(s, f, f.offset + 5, None, e, trace);
    }
    if let Err(e) = &f.frame {
        error_line(s, f, e.offset as u64, None, &e.kind, trace);
    }
    if let Some(DeliveryRecord { message: Err(e), reassembled, .. }) = f.delivery.as_deref() {
        error_line(s, f, e.offset as u64, Some(*reassembled), &e.kind, trace);
    }
}

/// Whether `v` encodes to `bytes`: `v.to_vec() == bytes`, without sizing `v` first (the
/// bytes give the size to expect).
fn reencodes(v: &Value, bytes: &[u8]) -> bool {
    let mut out = Vec::with_capacity(bytes.len());
    v.encode(&mut out);
    out == bytes
}

/// A warning of the frame, or of its message (`in_message`).
fn write_warning<S: Sink>(s: &mut S, w: &Warning, in_message: bool) {
    s.begin_object();
    s.key("offset");
    s.u64(w.offset as u64);
    s.key("warning");
    s.display(&w.kind);
    s.key("action");
    s.str(w.action);
    if in_message {
        s.key("in");
        s.str("message");
    }
    s.end_object();
}

/// A line of kind `error` about the frame `f`, after which decoding goes on; about its
/// message when `in_message` says whether the offset counts from the message's start.
fn error_line<S: Sink>(
    s: &mut S,
    f: &FrameRecord,
    offset: u64,
    in_message: Option<bool>,
    e: impl fmt::Display,
    trace: Option<&Trace<'_>>,
) {
    s.begin_object();
    s.key("offset");
    s.u64(offset);
    s.key("kind");
    s.str("error");
    s.key("fatal");
    s.bool(false);
    s.key("frame_offset");
    s.u64(f.offset);
    if let Some(reassembled) = in_message {
        s.key("in");
        s.str("message");
        s.key("offset_in_message");
        s.bool(reassembled);
    }
    s.key("error");
    s.display(e);
    end_line(s, trace);
}

/// The numeric code of a descriptor: a ulong, or a symbol the spec names.
fn descriptor_code(d: &Value) -> Option<u64> {
    match d {
        Value::Ulong(c, _) => Some(*c),
        Value::Symbol(s, _) => crate::types::code_for_symbol(s),
        _ => None,
    }
}

/// The field names and the encoded fields of a known list-shaped composite; `None` for
/// anything else.
fn composite(v: &Value) -> Option<(&'static [&'static str], &[Value])> {
    let Value::Described(d) = v else { return None };
    composite_parts(&d.descriptor, &d.value)
}

/// [`composite`], of a described value's parts.
fn composite_parts<'v>(
    descriptor: &Value,
    value: &'v Value,
) -> Option<(&'static [&'static str], &'v [Value])> {
    let fields = fields_for_code(descriptor_code(descriptor)?)?;
    let Value::List(items, _) = value else { return None };
    Some((fields, items))
}

/// A composite's fields, by spec name (`[i]` past the names), as far as they were encoded.
fn write_fields<S: Sink>(s: &mut S, fields: &[&str], items: &[Value]) {
    s.begin_object();
    for (i, item) in items.iter().enumerate() {
        match fields.get(i) {
            Some(f) => s.key(f),
            None => s.index_key(i),
        }
        write_value(s, item);
    }
    s.end_object();
}

/// A section of a message, as its entry in the `message` object.
#[derive(Clone, Copy)]
enum Section<'v> {
    /// A known section (header, properties, the annotation maps, footer) or an unknown
    /// code: its fields, or its value.
    Known(&'v Value, &'v Value),
    /// A section whose descriptor is no known code: the described value whole.
    Whole(&'v Value),
}

/// An element of a message's body.
enum BodyPart<'v> {
    Data(&'v [u8]),
    Value(&'v Value),
}

/// [`payload_json`], into a sink.
///
/// Returns why the sections stop before the payload's end, if they do (what cannot be read
/// there, or a value that is not a described section), with the offset in the payload: the
/// object shows the sections before it. (A decode's error line says it for a stream; the
/// browser's deliveries carry it beside the message.)
pub(crate) fn write_payload<S: Sink>(
    s: &mut S,
    payload: &[u8],
    frames: Option<usize>,
) -> Option<String> {
    let mut r = Reader::new(payload, DecodeOptions::LENIENT);
    let mut values = Vec::new();
    let mut stopped = None;
    while !r.is_empty() {
        let at = r.position();
        match Value::read(&mut r) {
            Ok(v @ Value::Described(_)) => values.push(v),
            Ok(_) => {
                stopped = Some(format!("at offset {at}: a value that is not a described section"));
                break;
            }
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        }
    }
    // The sections by name, in the order of their first occurrence; a name met again
    // keeps that place and takes the later section (as a JSON object's entry does).
    let mut sections: Vec<(&str, Section<'_>)> = Vec::new();
    let mut body_kind = None;
    let mut body = Vec::new();
    for v in &values {
        let Value::Described(desc) = v else { break };
        let code = descriptor_code(&desc.descriptor);
        let (name, section) = match code {
            Some(0x75) => {
                body_kind = Some("data");
                if let Value::Binary(b, _) = &desc.value {
                    body.push(BodyPart::Data(b));
                }
                continue;
            }
            Some(0x76) => {
                body_kind = Some("amqp-sequence");
                body.push(BodyPart::Value(&desc.value));
                continue;
            }
            Some(0x77) => {
                body_kind = Some("amqp-value");
                body.push(BodyPart::Value(&desc.value));
                continue;
            }
            // Header and properties become their fields; the map sections their entries;
            // an unknown section stays whole.
            Some(c) => (
                name_for_code(c).unwrap_or("unknown-section"),
                Section::Known(&desc.descriptor, &desc.value),
            ),
            None => ("unknown-section", Section::Whole(v)),
        };
        match sections.iter_mut().find(|(n, _)| *n == name) {
            Some((_, earlier)) => *earlier = section,
            None => sections.push((name, section)),
        }
    }
    s.begin_object();
    s.key("size");
    s.u64(payload.len() as u64);
    if let Some(frames) = frames {
        s.key("frames");
        s.u64(frames as u64);
    }
    for (name, section) in &sections {
        s.key(name);
        match *section {
            Section::Known(descriptor, value) => match composite_parts(descriptor, value) {
                Some((fields, items)) => write_fields(s, fields, items),
                None => write_value(s, value),
            },
            Section::Whole(v) => write_value(s, v),
        }
    }
    if let Some(kind) = body_kind {
        s.key("body");
        s.begin_object();
        s.key("kind");
        s.str(kind);
        s.key("content");
        let part = |s: &mut S, p: &BodyPart<'_>| match p {
            BodyPart::Data(b) => {
                s.begin_object();
                s.key("size");
                s.u64(b.len() as u64);
                s.key("hex");
                s.hex(b);
                if let Ok(t) = std::str::from_utf8(b) {
                    s.key("text");
                    s.str(t);
                }
                s.end_object();
            }
            BodyPart::Value(v) => write_value(s, v),
        };
        if kind == "amqp-value" {
            match body.last() {
                Some(p) => part(s, p),
                None => s.null(),
            }
        } else {
            s.begin_array();
            for p in &body {
                part(s, p);
            }
            s.end_array();
        }
        s.end_object();
    }
    s.end_object();
    stopped
}

/// [`value_json`], into a sink.
pub(crate) fn write_value<S: Sink>(s: &mut S, v: &Value) {
    let single_hex = |s: &mut S, key: &str, b: &[u8]| {
        s.begin_object();
        s.key(key);
        s.hex(b);
        s.end_object();
    };
    match v {
        Value::Null => s.null(),
        Value::Boolean(b, _) => s.bool(*b),
        Value::Ubyte(x) => s.u64((*x).into()),
        Value::Ushort(x) => s.u64((*x).into()),
        Value::Uint(x, _) => s.u64((*x).into()),
        Value::Ulong(x, _) => s.u64(*x),
        Value::Byte(x) => s.i64((*x).into()),
        Value::Short(x) => s.i64((*x).into()),
        Value::Int(x, _) => s.i64((*x).into()),
        Value::Long(x, _) => s.i64(*x),
        Value::Float(x) => float(s, f64::from(*x)),
        Value::Double(x) => float(s, *x),
        Value::Decimal32(b) => single_hex(s, "decimal32", b),
        Value::Decimal64(b) => single_hex(s, "decimal64", b),
        Value::Decimal128(b) => single_hex(s, "decimal128", b),
        Value::Char(c) => s.str(c.encode_utf8(&mut [0; 4])),
        Value::Timestamp(t) => {
            s.begin_object();
            s.key("timestamp");
            s.i64(t.0);
            s.key("utc");
            s.display(t);
            s.end_object();
        }
        Value::Uuid(u) => {
            s.begin_object();
            s.key("uuid");
            s.display(u);
            s.end_object();
        }
        Value::Binary(b, _) => single_hex(s, "binary", b),
        Value::String(x, _) => s.str(x),
        Value::Symbol(x, _) => s.str(x.as_str()),
        Value::List(items, _) => {
            s.begin_array();
            for i in items {
                write_value(s, i);
            }
            s.end_array();
        }
        // Elements of an array of described values are each that described value.
        Value::Array(a) => {
            s.begin_array();
            match a.descriptor() {
                None => a.items().iter().for_each(|i| write_value(s, i)),
                Some(d) => a.items().iter().for_each(|i| write_described(s, d, i)),
            }
            s.end_array();
        }
        Value::Map(pairs, _) => {
            if has_object_keys(pairs) {
                s.begin_object();
                for (k, val) in pairs {
                    s.key(object_key(k).unwrap_or_default());
                    write_value(s, val);
                }
                s.end_object();
            } else {
                s.begin_object();
                s.key("map");
                s.begin_array();
                for (k, val) in pairs {
                    s.begin_array();
                    write_value(s, k);
                    write_value(s, val);
                    s.end_array();
                }
                s.end_array();
                s.end_object();
            }
        }
        Value::Described(d) => write_described(s, &d.descriptor, &d.value),
    }
}

/// A described value: `{name: fields}` or `{name: value}` for a known descriptor, else
/// `{"described": {"descriptor": …, "value": …}}`.
fn write_described<S: Sink>(s: &mut S, descriptor: &Value, value: &Value) {
    s.begin_object();
    match descriptor_code(descriptor).and_then(name_for_code) {
        Some(n) => {
            s.key(n);
            match composite_parts(descriptor, value) {
                Some((fields, items)) => write_fields(s, fields, items),
                None => write_value(s, value),
            }
        }
        None => {
            s.key("described");
            s.begin_object();
            s.key("descriptor");
            write_value(s, descriptor);
            s.key("value");
            write_value(s, value);
            s.end_object();
        }
    }
    s.end_object();
}

/// A float: a number when finite, else its name as a string (`NaN`, `inf`, `-inf`).
fn float<S: Sink>(s: &mut S, x: f64) {
    if x.is_finite() {
        s.f64(x);
    } else {
        s.str(&super::float_text(x, ""));
    }
}

/// The key a map key makes in a JSON object: a string's or a symbol's text.
fn object_key(k: &Value) -> Option<&str> {
    match k {
        Value::String(s, _) => Some(&**s),
        Value::Symbol(s, _) => Some(s.as_str()),
        _ => None,
    }
}

/// Whether a map becomes a JSON object: every key is a string or symbol, no two alike.
fn has_object_keys(pairs: &[(Value, Value)]) -> bool {
    // Small maps (the usual application properties) are compared pairwise; larger ones
    // sorted, so that a map of many keys costs n log n.
    const PAIRWISE: usize = 16;
    if pairs.len() <= PAIRWISE {
        for (i, (k, _)) in pairs.iter().enumerate() {
            let Some(k) = object_key(k) else { return false };
            if pairs[..i].iter().any(|(p, _)| object_key(p) == Some(k)) {
                return false;
            }
        }
        true
    } else {
        let Some(mut keys) = pairs.iter().map(|(k, _)| object_key(k)).collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    }
}

#[cfg(all(test, feature = "json"))]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Large maps (sorted) become objects exactly when small ones (compared pairwise)
        /// would: string or symbol keys, no two alike.
        #[test]
        fn a_large_map_is_an_object_as_the_pairwise_check_says(
            keys in proptest::collection::vec((0u16..400, 0u8..3), 17..60),
        ) {
            let pairs: Vec<(Value, Value)> = keys
                .iter()
                .map(|&(k, kind)| {
                    let key = match kind {
                        0 => Value::from(format!("k{k}").as_str()),
                        1 => Value::from(crate::codec::Symbol::from(format!("k{k}").as_str())),
                        _ => Value::from(u64::from(k)),
                    };
                    (key, Value::Null)
                })
                .collect();
            let pairwise = pairs.iter().enumerate().all(|(i, (k, _))| {
                object_key(k).is_some_and(|k| !pairs[..i].iter().any(|(p, _)| object_key(p) == Some(k)))
            });
            proptest::prop_assert_eq!(has_object_keys(&pairs), pairwise);
        }
    }

    /// The text the writer gives for one value.
    fn written(f: impl FnOnce(&mut Writer<'_>)) -> String {
        let mut out = String::new();
        f(&mut Writer::new(&mut out));
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        all.push_str("é€😀\u{2028}\u{7f}\"\\/");
        for s in [all.as_str(), "", "plain", "\"", "a\u{0}b", "\u{1f}x\u{1b}"] {
            let want = serde_json::to_string(s).expect("a string serialises") + "\n";
            assert_eq!(written(|w| w.str(s)), want, "{s:?}");
            assert_eq!(written(|w| w.display(s)), want, "{s:?} displayed");
        }
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        for x in [0, 1, 9, 10, 99, 100, 12345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(written(|w| w.u64(x)), format!("{}\n", Json::from(x)));
        }
        for x in [0, -1, 7, i64::MIN, i64::MAX, -1234567] {
            assert_eq!(written(|w| w.i64(x)), format!("{}\n", Json::from(x)));
        }
        for x in [0.0, -0.0, 1.0, 1.5, 0.1, 1e16, 1e-7, 123456789.125, f64::MAX, f64::MIN_POSITIVE]
        {
            assert_eq!(written(|w| w.f64(x)), format!("{}\n", Json::from(x)), "{x}");
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(written(|w| w.f64(x)), "null\n");
        }
    }

    #[test]
    fn nesting_puts_commas_and_ends_top_level_values_with_newlines() {
        let out = written(|w| {
            w.begin_object();
            w.key("a");
            w.begin_array();
            w.u64(1);
            w.begin_object();
            w.end_object();
            w.begin_array();
            w.end_array();
            w.null();
            w.end_array();
            w.index_key(3);
            w.bool(false);
            w.end_object();
            w.str("next");
        });
        assert_eq!(out, "{\"a\":[1,{},[],null],\"[3]\":false}\n\"next\"\n");
    }
}

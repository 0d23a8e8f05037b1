//! The JSON renderings as they were built before they were streamed: `serde_json` values,
//! one map per object. Kept for the tests only, as the oracle that the streamed text and
//! the values built from it must equal, byte for byte.

use serde_json::{json, Map, Value as Json};

use super::{hex, DeliveryRecord, FrameRecord, Record};
use crate::codec::{DecodeOptions, Reader, Value};
use crate::types::{fields_for_code, name_for_code};

/// The lines of a live trace (`--trace-json`) for one record: [`record_json`]'s, each with
/// the `direction` it went (`in`, `out`), the `time` in seconds since the trace began
/// (rounded to the microsecond) and the `connection` number.
pub(super) fn trace_lines(
    record: &Record,
    direction: &str,
    time: f64,
    connection: u64,
) -> Vec<Json> {
    let mut lines = record_json(record);
    for line in &mut lines {
        if let Some(o) = line.as_object_mut() {
            o.insert("direction".into(), direction.into());
            o.insert("time".into(), json!((time * 1e6).round() / 1e6));
            o.insert("connection".into(), connection.into());
        }
    }
    lines
}

/// The JSON lines for one record: usually one, two when a frame's body is malformed (the
/// frame, then an `error` line).
pub(super) fn record_json(record: &Record) -> Vec<Json> {
    match record {
        Record::Header { offset, header } => vec![json!({
            "offset": offset,
            "kind": "header",
            "protocol_id": header.id.0,
            "protocol": header.id.name(),
            "version": format!("{}.{}.{}", header.major, header.minor, header.revision),
            "raw": hex(&header.to_bytes()),
        })],
        Record::Frame(f) => frame_json(f),
        Record::Error { error, rest, redacted } => {
            vec![fatal(error.offset, error.kind.to_string(), rest, *redacted)]
        }
        Record::Truncated { offset, rest, redacted } => vec![fatal(
            *offset,
            format!("the stream ends inside an item: {} bytes left over", rest.len()),
            rest,
            *redacted,
        )],
        Record::Undecoded { offset, len, bytes } => {
            let mut line = json!({"offset": offset, "kind": "undecoded", "bytes": len});
            match bytes {
                Some(b) => line["raw"] = Json::from(hex(b)),
                None => line["redacted"] = Json::Bool(true),
            }
            vec![line]
        }
    }
}

fn fatal(offset: u64, error: String, rest: &[u8], redacted: bool) -> Json {
    let mut line = json!({"offset": offset, "kind": "error", "fatal": true, "error": error});
    if !rest.is_empty() {
        line["raw"] = Json::from(hex(rest));
    }
    if redacted {
        line["redacted"] = Json::from(true);
    }
    line
}

fn frame_json(f: &FrameRecord) -> Vec<Json> {
    // Built with the map and `From` directly: `json!` copies every value it is given
    // through serde's serializer, and a frame's line is built for every frame.
    let h = &f.header;
    // Room for every key a frame line can have: growing the map rehashes it.
    let mut o = Map::with_capacity(16);
    o.insert("offset".into(), f.offset.into());
    o.insert("kind".into(), "frame".into());
    let ty = h.frame_type.name().map_or_else(|| Json::from(h.frame_type.0), Json::from);
    o.insert("type".into(), ty);
    o.insert("channel".into(), h.channel.into());
    o.insert("size".into(), h.size.into());
    o.insert("doff".into(), h.doff.into());
    o.insert("performative".into(), f.performative().into());
    let doff = usize::from(h.doff) * 4;
    if doff > 8 {
        o.insert("extended_header".into(), hex(&f.raw[8..doff]).into());
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
    if let Some(v) = first.as_ref().filter(|v| !matches!(v, Value::Null)) {
        // The fields of a performative or SASL body, by spec name, as far as they were
        // encoded (none for a null body).
        o.insert("fields".into(), composite_fields(v).unwrap_or_else(|| value_json(v)));
    }
    let after = match &f.frame {
        Ok(crate::frame::Frame { body: crate::frame::FrameBody::Amqp { payload, .. }, .. }) => {
            payload.len()
        }
        _ if first.is_some() => body.len() - used,
        _ => 0,
    };
    if after > 0 {
        o.insert("payload_size".into(), after.into());
    }
    if let Some(n) = f.continuation {
        o.insert("continuation".into(), n.into());
    }
    if f.aborted {
        o.insert("aborted".into(), true.into());
    }
    if f.redacted {
        o.insert("redacted".into(), true.into());
    }
    if let Some(d) = &f.delivery {
        o.insert("message".into(), message_json(d));
    }
    let warning = |w: &crate::codec::Warning| {
        [
            ("offset", w.offset.into()),
            ("warning", w.kind.to_string().into()),
            ("action", w.action.into()),
        ]
    };
    let mut warnings: Vec<Json> = f.warnings.iter().map(|w| object(warning(w))).collect();
    if let Some(d) = &f.delivery {
        warnings.extend(d.warnings.iter().map(|w| {
            let [a, b, c] = warning(w);
            object([a, b, c, ("in", "message".into())])
        }));
    }
    if !warnings.is_empty() {
        o.insert("warnings".into(), Json::Array(warnings));
    }
    // The lossless form, for `amqpwire encode`: the body's first value typed, the bytes
    // after it in hex; or the body in hex when it is not a value that re-encodes to itself.
    if !body.is_empty() {
        match strict {
            Some(v) if v.to_vec() == body[..used] => {
                o.insert("typed".into(), to_typed(v));
                if used < body.len() {
                    o.insert("payload".into(), hex(&body[used..]).into());
                }
            }
            _ => {
                o.insert("body".into(), hex(&body).into());
            }
        }
    }
    o.insert("raw".into(), hex(&f.raw).into());
    let mut lines = vec![Json::Object(o)];
    let error = |offset: Json, e: String| {
        [
            ("offset", offset),
            ("kind", "error".into()),
            ("fatal", false.into()),
            ("frame_offset", f.offset.into()),
            ("error", e.into()),
        ]
    };
    if let Some(e) = f.layer_error {
        lines.push(object(error((f.offset + 5).into(), e.into())));
    }
    if let Err(e) = &f.frame {
        lines.push(object(error(e.offset.into(), e.kind.to_string())));
    }
    if let Some(DeliveryRecord { message: Err(e), reassembled, .. }) = f.delivery.as_deref() {
        let [offset, kind, fatal, frame_offset, error] = error(e.offset.into(), e.kind.to_string());
        lines.push(object([
            offset,
            kind,
            fatal,
            frame_offset,
            ("in", "message".into()),
            ("offset_in_message", (*reassembled).into()),
            error,
        ]));
    }
    lines
}

/// An object with these entries, in this order.
fn object<const N: usize>(entries: [(&str, Json); N]) -> Json {
    let mut m = Map::with_capacity(N);
    for (k, v) in entries {
        m.insert(k.to_owned(), v);
    }
    Json::Object(m)
}

/// The numeric code of a descriptor: a ulong, or a symbol the spec names.
fn descriptor_code(d: &Value) -> Option<u64> {
    match d {
        Value::Ulong(c, _) => Some(*c),
        Value::Symbol(s, _) => crate::types::code_for_symbol(s),
        _ => None,
    }
}

/// The fields of a known list-shaped composite, by spec name, as far as they were
/// encoded; `None` for anything else.
fn composite_fields(v: &Value) -> Option<Json> {
    let Value::Described(d) = v else { return None };
    let fields = fields_for_code(descriptor_code(&d.descriptor)?)?;
    let Value::List(items, _) = &d.value else { return None };
    let mut m = Map::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = fields.get(i).map_or_else(|| format!("[{i}]"), |f| (*f).to_owned());
        m.insert(key, value_json(item));
    }
    Some(Json::Object(m))
}

fn message_json(d: &DeliveryRecord) -> Json {
    payload_json(&d.payload, Some(d.frames))
}

/// An encoded message as the `message` object of a transfer line (see
/// `docs/trace-format.md`): its size, the number of frames it came in (when known), its
/// sections by name and its body.
pub(super) fn payload_json(payload: &[u8], frames: Option<usize>) -> Json {
    let mut o = Map::new();
    o.insert("size".into(), json!(payload.len()));
    if let Some(frames) = frames {
        o.insert("frames".into(), json!(frames));
    }
    let mut r = Reader::new(payload, DecodeOptions::LENIENT);
    let mut body_kind = None;
    let mut body = Vec::new();
    while !r.is_empty() {
        let Ok(v) = Value::read(&mut r) else { break };
        let Value::Described(desc) = &v else { break };
        let code = descriptor_code(&desc.descriptor);
        let name = code.and_then(name_for_code).unwrap_or("unknown-section");
        match code {
            Some(0x75) => {
                body_kind = Some("data");
                if let Value::Binary(b, _) = &desc.value {
                    let mut s = Map::new();
                    s.insert("size".into(), json!(b.len()));
                    s.insert("hex".into(), json!(hex(b)));
                    if let Ok(t) = std::str::from_utf8(b) {
                        s.insert("text".into(), json!(t));
                    }
                    body.push(Json::Object(s));
                }
            }
            Some(0x76) => {
                body_kind = Some("amqp-sequence");
                body.push(value_json(&desc.value));
            }
            Some(0x77) => {
                body_kind = Some("amqp-value");
                body.push(value_json(&desc.value));
            }
            // Header and properties become their fields; the map sections their entries;
            // an unknown section stays whole.
            Some(_) => {
                let j = composite_fields(&v).unwrap_or_else(|| value_json(&desc.value));
                o.insert(name.into(), j);
            }
            None => {
                o.insert(name.into(), value_json(&v));
            }
        }
    }
    if let Some(kind) = body_kind {
        let content =
            if kind == "amqp-value" { body.pop().unwrap_or(Json::Null) } else { Json::Array(body) };
        o.insert("body".into(), json!({"kind": kind, "content": content}));
    }
    Json::Object(o)
}

/// An AMQP value as JSON: null, booleans, numbers and strings map to themselves (symbols
/// too); binaries become `{"binary": hex}`, timestamps `{"timestamp": ms, "utc": …}`, uuids
/// `{"uuid": …}`; lists and arrays become arrays; maps become objects when every key is a
/// string or symbol, else `{"map": [[k, v], …]}`; a known composite becomes `{name: {field:
/// value, …}}` with the fields present on the wire; any other described value becomes
/// `{"described": {"descriptor": …, "value": …}}`.
pub(super) fn value_json(v: &Value) -> Json {
    // Built with `From` and maps directly: `json!` copies what it is given.
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b, _) => (*b).into(),
        Value::Ubyte(x) => (*x).into(),
        Value::Ushort(x) => (*x).into(),
        Value::Uint(x, _) => (*x).into(),
        Value::Ulong(x, _) => (*x).into(),
        Value::Byte(x) => (*x).into(),
        Value::Short(x) => (*x).into(),
        Value::Int(x, _) => (*x).into(),
        Value::Long(x, _) => (*x).into(),
        Value::Float(x) => float(f64::from(*x)),
        Value::Double(x) => float(*x),
        Value::Decimal32(b) => object([("decimal32", hex(b).into())]),
        Value::Decimal64(b) => object([("decimal64", hex(b).into())]),
        Value::Decimal128(b) => object([("decimal128", hex(b).into())]),
        Value::Char(c) => c.to_string().into(),
        Value::Timestamp(t) => object([("timestamp", t.0.into()), ("utc", t.to_string().into())]),
        Value::Uuid(u) => object([("uuid", u.to_string().into())]),
        Value::Binary(b, _) => object([("binary", hex(b).into())]),
        Value::String(s, _) => (&**s).into(),
        Value::Symbol(s, _) => s.as_str().into(),
        Value::List(items, _) => Json::Array(items.iter().map(value_json).collect()),
        // Elements of an array of described values are each that described value.
        Value::Array(a) => match a.descriptor() {
            None => Json::Array(a.items().iter().map(value_json).collect()),
            Some(d) => Json::Array(
                a.items()
                    .iter()
                    .map(|item| {
                        value_json(&Value::Described(Box::new(crate::codec::Described {
                            descriptor: d.clone(),
                            value: item.clone(),
                        })))
                    })
                    .collect(),
            ),
        },
        Value::Map(pairs, _) => {
            let pairs_json = || {
                let pairs =
                    pairs.iter().map(|(k, v)| Json::Array(vec![value_json(k), value_json(v)]));
                object([("map", Json::Array(pairs.collect()))])
            };
            let mut m = Map::with_capacity(pairs.len());
            for (k, val) in pairs {
                let key = match k {
                    Value::String(s, _) => s.to_string(),
                    Value::Symbol(s, _) => s.as_str().to_owned(),
                    _ => return pairs_json(),
                };
                if m.insert(key, value_json(val)).is_some() {
                    return pairs_json();
                }
            }
            Json::Object(m)
        }
        Value::Described(d) => {
            let name = descriptor_code(&d.descriptor).and_then(name_for_code);
            match (name, composite_fields(v)) {
                (Some(n), Some(fields)) => object([(n, fields)]),
                (Some(n), None) => object([(n, value_json(&d.value))]),
                _ => object([(
                    "described",
                    object([
                        ("descriptor", value_json(&d.descriptor)),
                        ("value", value_json(&d.value)),
                    ]),
                )]),
            }
        }
    }
}

fn float(x: f64) -> Json {
    if x.is_finite() {
        x.into()
    } else {
        x.to_string().into()
    }
}

/// The typed JSON of `v`.
pub(super) fn to_typed(v: &Value) -> Json {
    typed(v, false)
}

fn typed(v: &Value, in_array: bool) -> Json {
    // Built with maps and `From` directly: `json!` copies each value it is given through
    // serde's serializer, which for a nested value is its whole subtree, at every level.
    let (code, canonical) = v.format_codes();
    // `{key: value}`, and the format code where the value was not written in its smallest
    // form (never inside an array, whose element constructor decides).
    let with_code = |key: &str, value: Json| {
        let mut o = Map::with_capacity(2);
        o.insert(key.into(), value);
        if code != canonical && !in_array {
            o.insert("code".into(), super::typed::hex_code(code).into());
        }
        Json::Object(o)
    };
    let single = |key: &str, value: Json| {
        let mut o = Map::with_capacity(1);
        o.insert(key.into(), value);
        Json::Object(o)
    };
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b, _) if code == canonical || in_array => (*b).into(),
        Value::Boolean(b, _) => with_code("boolean", (*b).into()),
        Value::Ubyte(x) => single("ubyte", (*x).into()),
        Value::Ushort(x) => single("ushort", (*x).into()),
        Value::Uint(x, _) => with_code("uint", (*x).into()),
        Value::Ulong(x, _) => with_code("ulong", (*x).into()),
        Value::Byte(x) => single("byte", (*x).into()),
        Value::Short(x) => single("short", (*x).into()),
        Value::Int(x, _) => with_code("int", (*x).into()),
        Value::Long(x, _) => with_code("long", (*x).into()),
        Value::Float(x) if x.is_finite() => single("float", (*x).into()),
        Value::Float(x) => single("float-bits", format!("{:08x}", x.to_bits()).into()),
        Value::Double(x) if x.is_finite() => single("double", (*x).into()),
        Value::Double(x) => single("double-bits", format!("{:016x}", x.to_bits()).into()),
        Value::Decimal32(b) => single("decimal32", super::hex(b).into()),
        Value::Decimal64(b) => single("decimal64", super::hex(b).into()),
        Value::Decimal128(b) => single("decimal128", super::hex(b).into()),
        Value::Char(c) => single("char", c.to_string().into()),
        Value::Timestamp(t) => single("timestamp", t.0.into()),
        Value::Uuid(u) => single("uuid", u.to_string().into()),
        Value::Binary(b, _) => with_code("binary", super::hex(b).into()),
        Value::String(s, _) if code == canonical || in_array => (&**s).into(),
        Value::String(s, _) => with_code("string", (&**s).into()),
        Value::Symbol(s, _) => with_code("symbol", s.as_str().into()),
        Value::List(items, _) => {
            let items = Json::Array(items.iter().map(to_typed).collect());
            if code == canonical || in_array {
                items
            } else {
                with_code("list", items)
            }
        }
        Value::Map(pairs, _) => {
            let pairs =
                pairs.iter().map(|(k, v)| Json::Array(vec![to_typed(k), to_typed(v)])).collect();
            with_code("map", Json::Array(pairs))
        }
        Value::Array(a) => {
            let mut o = Map::with_capacity(4);
            o.insert("array".into(), a.items().iter().map(|i| typed(i, true)).collect());
            o.insert("element".into(), super::typed::hex_code(a.element_code()).into());
            if let Some(d) = a.descriptor() {
                o.insert("descriptor".into(), to_typed(d));
            }
            if a.format_code() != a.canonical_code() && !in_array {
                o.insert("code".into(), super::typed::hex_code(a.format_code()).into());
            }
            Json::Object(o)
        }
        Value::Described(d) => {
            single("described", Json::Array(vec![to_typed(&d.descriptor), to_typed(&d.value)]))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arbitrary::Unstructured;

    use super::super::json;
    use super::super::typed;
    use super::super::Inspector;
    use super::*;

    /// The text of values as `amqpwire decode --json` printed them: each through
    /// `serde_json`'s `Display`, then a newline.
    fn text(lines: &[Json]) -> String {
        lines.iter().map(|j| j.to_string() + "\n").collect()
    }

    /// Every file of a folder (relative to the crate root), sorted by name.
    fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut paths: Vec<_> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".md"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| (p.display().to_string(), std::fs::read(&p).expect("file")))
            .collect()
    }

    /// Renders every record of `stream` in the old way and in the new, in both modes (and
    /// with credentials shown), and asserts the same text and values; returns how many
    /// lines it compared.
    fn same_records(name: &str, stream: &[u8]) -> usize {
        let mut lines = 0;
        for (opts, redact) in [
            (DecodeOptions::STRICT, true),
            (DecodeOptions::LENIENT, true),
            (DecodeOptions::LENIENT, false),
        ] {
            let mut inspector = Inspector::new(opts).redact_secrets(redact);
            inspector.push(stream);
            let mut records: Vec<_> = std::iter::from_fn(|| inspector.next_record()).collect();
            records.extend(inspector.finish());
            for r in &records {
                let at = format!("{name} ({opts:?}, redact {redact})");
                let old = record_json(r);
                let want = text(&old);
                let mut got = String::new();
                json::write_record_json(r, &mut got);
                assert_eq!(got, want, "{at}: streamed text");
                let built = json::record_json(r);
                assert_eq!(built, old, "{at}: values");
                assert_eq!(text(&built), want, "{at}: values, printed");
                for (time, connection) in [(0.0, 0), (12.345_678_9, 7), (f64::NAN, u64::MAX)] {
                    let old = text(&trace_lines(r, "in", time, connection));
                    let mut got = String::new();
                    json::write_trace_lines(r, "in", time, connection, &mut got);
                    assert_eq!(got, old, "{at}: trace at {time}");
                    let built = text(&json::trace_lines(r, "in", time, connection));
                    assert_eq!(built, old, "{at}: trace values at {time}");
                }
                if let Record::Frame(f) = r {
                    if let Some(d) = &f.delivery {
                        let old = payload_json(&d.payload, None).to_string();
                        assert_eq!(json::payload_json(&d.payload, None).to_string(), old, "{at}");
                    }
                }
                lines += old.len();
            }
        }
        lines
    }

    #[test]
    fn streamed_json_of_every_seed_and_fixture_is_the_old_text() {
        let mut lines = 0;
        for dir in [
            "fuzz/corpus/inspect",
            "fuzz/corpus/frames",
            "fuzz/corpus/connection",
            "tests/fixtures/iothub",
            "tests/fixtures/wire",
        ] {
            for (name, stream) in files(dir) {
                lines += same_records(&name, &stream);
            }
        }
        // The corpora hold thousands of frames; a folder read as empty would prove nothing.
        assert!(lines > 1000, "only {lines} lines compared");
    }

    /// The old and the new rendering of one value, as JSON and in typed form.
    fn same_value(at: &str, v: &Value) {
        let want = value_json(v).to_string();
        assert_eq!(json::value_json(v).to_string(), want, "{at}: value");
        let mut got = String::new();
        json::write_value(&mut json::Writer::new(&mut got), v);
        assert_eq!(got, want + "\n", "{at}: value, streamed");
        assert_eq!(typed::to_typed(v).to_string(), to_typed(v).to_string(), "{at}: typed");
        let mut got = String::new();
        typed::write_typed(&mut json::Writer::new(&mut got), v, false);
        assert_eq!(got, to_typed(v).to_string() + "\n", "{at}: typed, streamed");
    }

    /// Bytes that look random, the same on every run.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn values_and_messages_render_as_they_did() {
        // Every encoding choice of generated values, the value seeds, and edge cases: floats
        // that are not finite, strings that need escapes, maps that cannot be objects
        // (a repeated key, a key that is no string), arrays of described values.
        let mut inputs: Vec<Vec<u8>> =
            files("fuzz/corpus/value").into_iter().map(|f| f.1).collect();
        for h in [
            "727fc00000",
            "72ff800000",
            "827ff0000000000000",
            "82fff0000000000000",
            "823fb999999999999a",
            "a1092201225c0a1f7f2f",
            "b10000000300e282ac",
            "c1090ca101610a a1016114",
            "c10d04a1016141a3016141a1016142",
            "c1050252014101",
            "e00b02 00 53 24 c0 00 45 c0 01 00",
            "e00b02 00 a3 01 78 c0 00 45 c0 01 00",
            "00a30178c10402a10161 41",
            "0080000000000000007041",
            "0053994141",
            "73000000410000000062",
            "830000018bcfe56800",
            "98000102030405060708090a0b0c0d0e0f",
        ] {
            inputs.push(crate::inspect::parse_hex(h.as_bytes()).expect("hex"));
        }
        for seed in 0..3000 {
            let bytes = noise(seed, 64 + (seed as usize % 512));
            let mut out = Vec::new();
            crate::fuzzing::generate::value(&mut Unstructured::new(&bytes), &mut out);
            inputs.push(out);
        }
        let mut values = 0;
        for (i, b) in inputs.iter().enumerate() {
            if let Ok(v) = Value::decode_with(b, DecodeOptions::LENIENT) {
                same_value(&format!("input {i} ({})", hex(b)), &v);
                values += 1;
            }
        }
        assert!(values > 3000, "only {values} values decoded");

        // Messages: the message seeds, generated ones, and sections repeated (the later
        // one takes the earlier one's place) or unknown.
        let mut messages: Vec<Vec<u8>> =
            files("fuzz/corpus/message").into_iter().map(|f| f.1).collect();
        for h in [
            "005370c00201410053 70c0020142 005375a0026869 005377a1017a",
            "005377a10178 005375a00101 005375a0020a00",
            "005375a0020a00 005377a10178",
            "0053 99 45 00a1017845 005372c10402a3016151 005372c10402a3016152",
            "005376c00100 005376c00101 00537845",
        ] {
            messages.push(crate::inspect::parse_hex(h.as_bytes()).expect("hex"));
        }
        for seed in 0..500 {
            let bytes = noise(seed + 10_000, 256 + (seed as usize % 1024));
            let mut out = Vec::new();
            crate::fuzzing::generate::message(&mut Unstructured::new(&bytes), &mut out);
            messages.push(out);
        }
        for (i, m) in messages.iter().enumerate() {
            for frames in [None, Some(3)] {
                let want = payload_json(m, frames).to_string();
                let at = format!("message {i}: {}", hex(m));
                assert_eq!(json::payload_json(m, frames).to_string(), want, "{at}");
                let mut got = String::new();
                json::write_payload(&mut json::Writer::new(&mut got), m, frames);
                assert_eq!(got, want + "\n", "{at}: streamed");
            }
        }
    }
}

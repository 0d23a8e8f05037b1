//! The JSON rendering of inspected records: one object per line, in the schema of
//! `docs/trace-format.md`. Field names are the spec's (`container-id`, `max-frame-size`…).

use serde_json::{json, Map, Value as Json};

use super::{hex, DeliveryRecord, FrameRecord, Record};
use crate::codec::{DecodeOptions, Reader, Value};
use crate::types::{fields_for_code, name_for_code};

/// The lines of a live trace (`--trace-json`) for one record: [`record_json`]'s, each with
/// the `direction` it went (`in`, `out`), the `time` in seconds since the trace began
/// (rounded to the microsecond) and the `connection` number.
pub fn trace_lines(record: &Record, direction: &str, time: f64, connection: u64) -> Vec<Json> {
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
pub fn record_json(record: &Record) -> Vec<Json> {
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
        Record::Error(e) => vec![json!({
            "offset": e.offset,
            "kind": "error",
            "fatal": true,
            "error": e.kind.to_string(),
        })],
        Record::Truncated { offset, left } => vec![json!({
            "offset": offset,
            "kind": "error",
            "fatal": true,
            "error": format!("the stream ends inside an item: {left} bytes left over"),
        })],
    }
}

fn frame_json(f: &FrameRecord) -> Vec<Json> {
    // Built with the map and `From` directly: `json!` copies every value it is given
    // through serde's serializer, and a frame's line is built for every frame.
    let h = &f.header;
    // Room for every key a frame line can have: growing the map rehashes it.
    let mut o = Map::with_capacity(16);
    o.insert("offset".into(), f.offset.into());
    o.insert("kind".into(), "frame".into());
    o.insert("type".into(), h.frame_type.name().unwrap_or("unknown").into());
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
    if let Some(v) = &first {
        // The fields of a performative or SASL body, by spec name, as far as they were
        // encoded.
        o.insert("fields".into(), composite_fields(v).unwrap_or_else(|| value_json(v)));
    }
    if let Ok(crate::frame::Frame { body: crate::frame::FrameBody::Amqp { payload, .. }, .. }) =
        &f.frame
    {
        if !payload.is_empty() {
            o.insert("payload_size".into(), payload.len().into());
        }
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
                o.insert("typed".into(), super::typed::to_typed(v));
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
    if let Some(DeliveryRecord { message: Err(e), reassembled, .. }) = &f.delivery {
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
pub fn payload_json(payload: &[u8], frames: Option<usize>) -> Json {
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
pub fn value_json(v: &Value) -> Json {
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

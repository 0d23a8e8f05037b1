//! The JSON rendering of inspected records: one object per line, in the schema of
//! `docs/trace-format.md`. Field names are the spec's (`container-id`, `max-frame-size`…).

use serde_json::{json, Map, Value as Json};

use super::{hex, DeliveryRecord, FrameRecord, Record};
use crate::codec::{DecodeOptions, Reader, Value};
use crate::types::{fields_for_code, name_for_code};

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
    let h = &f.header;
    let mut o = Map::new();
    o.insert("offset".into(), json!(f.offset));
    o.insert("kind".into(), json!("frame"));
    o.insert("type".into(), json!(h.frame_type.name().unwrap_or("unknown")));
    o.insert("channel".into(), json!(h.channel));
    o.insert("size".into(), json!(h.size));
    o.insert("doff".into(), json!(h.doff));
    o.insert("performative".into(), json!(f.performative()));
    let doff = usize::from(h.doff) * 4;
    if doff > 8 {
        o.insert("extended_header".into(), json!(hex(&f.raw[8..doff])));
    }
    if let Some(fields) = body_fields(&f.raw[doff..]) {
        o.insert("fields".into(), fields);
    }
    if let Ok(crate::frame::Frame { body: crate::frame::FrameBody::Amqp { payload, .. }, .. }) =
        &f.frame
    {
        if !payload.is_empty() {
            o.insert("payload_size".into(), json!(payload.len()));
        }
    }
    if let Some(n) = f.continuation {
        o.insert("continuation".into(), json!(n));
    }
    if f.aborted {
        o.insert("aborted".into(), json!(true));
    }
    if f.redacted {
        o.insert("redacted".into(), json!(true));
    }
    if let Some(d) = &f.delivery {
        o.insert("message".into(), message_json(d));
    }
    let mut warnings: Vec<Json> = f
        .warnings
        .iter()
        .map(|w| json!({"offset": w.offset, "warning": w.kind.to_string(), "action": w.action}))
        .collect();
    if let Some(d) = &f.delivery {
        warnings.extend(d.warnings.iter().map(|w| json!({"offset": w.offset, "warning": w.kind.to_string(), "action": w.action, "in": "message"})));
    }
    if !warnings.is_empty() {
        o.insert("warnings".into(), Json::Array(warnings));
    }
    // The lossless form, for `amqpwire encode`: the body's first value typed, the bytes
    // after it in hex; or the body in hex when it is not a value that re-encodes to itself.
    let body = f.raw.get(doff..).unwrap_or_default();
    if !body.is_empty() {
        let mut r = crate::codec::Reader::new(body, crate::codec::DecodeOptions::STRICT);
        match crate::codec::Value::read(&mut r) {
            Ok(v) if v.to_vec() == body[..r.position()] => {
                o.insert("typed".into(), super::typed::to_typed(&v));
                if r.position() < body.len() {
                    o.insert("payload".into(), json!(hex(&body[r.position()..])));
                }
            }
            _ => {
                o.insert("body".into(), json!(hex(body)));
            }
        }
    }
    o.insert("raw".into(), json!(hex(&f.raw)));
    let mut lines = vec![Json::Object(o)];
    if let Some(e) = f.layer_error {
        lines.push(json!({"offset": f.offset + 5, "kind": "error", "fatal": false, "frame_offset": f.offset, "error": e}));
    }
    if let Err(e) = &f.frame {
        lines.push(json!({"offset": e.offset, "kind": "error", "fatal": false, "frame_offset": f.offset, "error": e.kind.to_string()}));
    }
    if let Some(DeliveryRecord { message: Err(e), reassembled, .. }) = &f.delivery {
        lines.push(json!({"offset": e.offset, "kind": "error", "fatal": false, "frame_offset": f.offset, "in": "message", "offset_in_message": reassembled, "error": e.kind.to_string()}));
    }
    lines
}

/// The fields of a performative or SASL body, by spec name, as far as they were encoded.
fn body_fields(body: &[u8]) -> Option<Json> {
    if body.is_empty() {
        return None;
    }
    let mut r = Reader::new(body, DecodeOptions::LENIENT);
    let v = Value::read(&mut r).ok()?;
    Some(composite_fields(&v).unwrap_or_else(|| value_json(&v)))
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
    let mut m = Map::new();
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
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b, _) => json!(b),
        Value::Ubyte(x) => json!(x),
        Value::Ushort(x) => json!(x),
        Value::Uint(x, _) => json!(x),
        Value::Ulong(x, _) => json!(x),
        Value::Byte(x) => json!(x),
        Value::Short(x) => json!(x),
        Value::Int(x, _) => json!(x),
        Value::Long(x, _) => json!(x),
        Value::Float(x) => float(f64::from(*x)),
        Value::Double(x) => float(*x),
        Value::Decimal32(b) => json!({"decimal32": hex(b)}),
        Value::Decimal64(b) => json!({"decimal64": hex(b)}),
        Value::Decimal128(b) => json!({"decimal128": hex(b)}),
        Value::Char(c) => json!(c.to_string()),
        Value::Timestamp(t) => json!({"timestamp": t.0, "utc": t.to_string()}),
        Value::Uuid(u) => json!({"uuid": u.to_string()}),
        Value::Binary(b, _) => json!({"binary": hex(b)}),
        Value::String(s, _) => json!(&**s),
        Value::Symbol(s, _) => json!(s.as_str()),
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
            let mut m = Map::new();
            for (k, val) in pairs {
                let key = match k {
                    Value::String(s, _) => s.to_string(),
                    Value::Symbol(s, _) => s.as_str().to_owned(),
                    _ => {
                        return json!({"map": pairs.iter().map(|(k, v)| json!([value_json(k), value_json(v)])).collect::<Vec<_>>()})
                    }
                };
                if m.insert(key, value_json(val)).is_some() {
                    return json!({"map": pairs.iter().map(|(k, v)| json!([value_json(k), value_json(v)])).collect::<Vec<_>>()});
                }
            }
            Json::Object(m)
        }
        Value::Described(d) => {
            let name = descriptor_code(&d.descriptor).and_then(name_for_code);
            match (name, composite_fields(v)) {
                (Some(n), Some(fields)) => json!({ n: fields }),
                (Some(n), None) => json!({ n: value_json(&d.value) }),
                _ => {
                    json!({"described": {"descriptor": value_json(&d.descriptor), "value": value_json(&d.value)}})
                }
            }
        }
    }
}

fn float(x: f64) -> Json {
    if x.is_finite() {
        json!(x)
    } else {
        json!(x.to_string())
    }
}

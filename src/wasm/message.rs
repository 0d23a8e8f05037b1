//! Messages and maps given as JSON by JavaScript, and the JSON text handed back.

use bytes::Bytes;
use wasm_bindgen::JsError;

use super::err;
use crate::codec::{Symbol, Uuid, Value};
use crate::inspect::json::{Sink, Writer};
use crate::inspect::parse_hex;
use crate::json::Json;
use crate::message::{AnnotationMap, Body, Message};
use crate::types::{MessageId, Properties};

/// A message from JSON:
///
/// - `body`: a string (one data section of its UTF-8 bytes), or `{"hex": "…"}` (one data
///   section of those bytes), or `{"value": …}` (an amqp-value of a string, number or
///   boolean); none: no body;
/// - `properties`: `messageId` and `correlationId` (a uuid in its 8-4-4-4-12 form is sent
///   as a uuid, any other string as a string, a whole number as a ulong), `to`, `subject`,
///   `replyTo`, `contentType`, `contentEncoding`, `groupId` (strings);
/// - `applicationProperties` and `messageAnnotations`: objects of strings, numbers (whole
///   numbers are longs, others doubles), booleans.
pub fn message_from_json(j: &Json) -> Result<Message, JsError> {
    let o = j.as_object().ok_or_else(|| err(format!("message: {j} is not an object")))?;
    for (key, _) in o {
        if !["body", "properties", "applicationProperties", "messageAnnotations"]
            .contains(&key.as_str())
        {
            return Err(err(format!(
                "message: unknown field {key:?} (body, properties, applicationProperties, \
                 messageAnnotations)"
            )));
        }
    }
    let body = match j.get("body") {
        None | Some(Json::Null) => Body::Empty,
        Some(Json::String(s)) => Body::data(Bytes::from(s.clone().into_bytes())),
        Some(b @ Json::Object(_)) if b.get("hex").is_some() => {
            let Some(Json::String(hex)) = b.get("hex") else {
                let other = b.get("hex").unwrap_or(&Json::Null);
                return Err(err(format!("message: body hex {other} is not a string of hex")));
            };
            Body::data(Bytes::from(parse_hex(hex.as_bytes()).map_err(err)?))
        }
        Some(b @ Json::Object(_)) if b.get("value").is_some() => {
            Body::Value(simple_value("body value", b.get("value").unwrap_or(&Json::Null))?)
        }
        Some(other) => {
            return Err(err(format!(
                "message: body {other} is not a string, {{\"hex\": …}} or {{\"value\": …}}"
            )))
        }
    };
    let mut m = Message { body, ..Message::default() };
    if let Some(p) = j.get("properties").filter(|p| !p.is_null()) {
        m.properties = Some(properties_from_json(p)?);
    }
    if let Some(a) = j.get("applicationProperties").filter(|a| !a.is_null()) {
        m.application_properties = Some(map_from_json("applicationProperties", a)?);
    }
    if let Some(a) = j.get("messageAnnotations").filter(|a| !a.is_null()) {
        m.message_annotations = Some(map_from_json("messageAnnotations", a)?);
    }
    Ok(m)
}

fn properties_from_json(p: &Json) -> Result<Properties, JsError> {
    let o =
        p.as_object().ok_or_else(|| err(format!("message: properties {p} is not an object")))?;
    let mut props = Properties::default();
    for (key, v) in o {
        let text = || {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| err(format!("message: property {key} is {v}, not a string")))
        };
        match key.as_str() {
            "messageId" => props.message_id = Some(id_from_json(key, v)?),
            "correlationId" => props.correlation_id = Some(id_from_json(key, v)?),
            "to" => props.to = Some(text()?.into()),
            "subject" => props.subject = Some(text()?.into()),
            "replyTo" => props.reply_to = Some(text()?.into()),
            "contentType" => props.content_type = Some(Symbol::from(text()?)),
            "contentEncoding" => props.content_encoding = Some(Symbol::from(text()?)),
            "groupId" => props.group_id = Some(text()?.into()),
            other => {
                return Err(err(format!(
                    "message: unknown property {other:?} (messageId, correlationId, to, \
                     subject, replyTo, contentType, contentEncoding, groupId)"
                )))
            }
        }
    }
    Ok(props)
}

/// A message-id from text: a uuid when it has the 8-4-4-4-12 form, else a string.
pub(super) fn message_id(s: &str) -> MessageId {
    match Uuid::parse(s) {
        Some(u) => MessageId::Uuid(u),
        None => MessageId::String(s.into()),
    }
}

fn id_from_json(key: &str, v: &Json) -> Result<MessageId, JsError> {
    match v {
        Json::String(s) => Ok(message_id(s)),
        Json::Number(_) => v.as_u64().map(MessageId::Ulong).ok_or_else(|| {
            err(format!("message: {key} {v} is not a whole number from 0 to 18446744073709551615"))
        }),
        other => Err(err(format!("message: {key} is {other}, not a string or a number"))),
    }
}

/// A string, number or boolean as an AMQP value.
fn simple_value(what: &str, v: &Json) -> Result<Value, JsError> {
    match v {
        Json::String(s) => Ok(Value::from(s.as_str())),
        Json::Bool(b) => Ok(Value::from(*b)),
        Json::Number(_) => match (v.as_i64(), v.as_f64()) {
            (Some(i), _) => Ok(Value::from(i)),
            (None, Some(f)) => Ok(Value::from(f)),
            _ => Err(err(format!("{what}: {v} does not fit a long or a double"))),
        },
        other => Err(err(format!("{what}: {other} is not a string, number or boolean"))),
    }
}

fn pairs_from_json(what: &str, j: &Json) -> Result<Vec<(String, Value)>, JsError> {
    let o = j.as_object().ok_or_else(|| err(format!("{what}: {j} is not an object")))?;
    o.iter().map(|(k, v)| Ok((k.clone(), simple_value(&format!("{what}.{k}"), v)?))).collect()
}

fn map_from_json(what: &str, j: &Json) -> Result<AnnotationMap, JsError> {
    let pairs = pairs_from_json(&format!("message: {what}"), j)?;
    if what == "messageAnnotations" {
        // Message annotation keys are symbols.
        return Ok(AnnotationMap::from_pairs(
            pairs.into_iter().map(|(k, v)| (Value::from(Symbol::from(k)), v)),
        ));
    }
    Ok(AnnotationMap::from_pairs(pairs))
}

/// Connection properties (symbol keys) from a JSON object.
#[cfg(feature = "wasm")]
pub(super) fn fields_from_json(what: &str, j: &Json) -> Result<crate::types::Fields, JsError> {
    let pairs = pairs_from_json(what, j)?;
    Ok(crate::types::Fields(pairs.into_iter().map(|(k, v)| (Symbol::from(k), v)).collect()))
}

/// Reads a JSON argument.
pub(super) fn parse_json(what: &str, text: &str) -> Result<Json, JsError> {
    Json::parse(text.as_bytes()).map_err(|e| err(format!("{what}: not JSON ({e})")))
}

pub(super) fn member_str(w: &mut Writer<'_>, key: &str, v: &str) {
    w.key(key);
    w.str(v);
}

pub(super) fn member_bool(w: &mut Writer<'_>, key: &str, v: bool) {
    w.key(key);
    w.bool(v);
}

/// `key`: a string, or `null`.
pub(super) fn member_opt_str(w: &mut Writer<'_>, key: &str, v: Option<&str>) {
    w.key(key);
    match v {
        Some(v) => w.str(v),
        None => w.null(),
    }
}

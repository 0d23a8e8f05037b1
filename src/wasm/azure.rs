//! The Azure module (feature `wasm-azure`): the Azure IoT Hub and Event Hubs pieces that
//! need no socket (SAS tokens, CBS put-token messages, cloud-to-device messages and their
//! feedback), for a page to use beside an `Engine`. A module of its own, so that a page that
//! talks to no Azure service loads no SHA-256, base64 or connection strings.

use bytes::Bytes;
use wasm_bindgen::prelude::*;

use crate::azure::cbs::{CbsStatus, PutToken, IOTHUB_SAS_TOKEN_TYPE};
use crate::azure::hub::{prepare_c2d, sasl_plain_user, Ack, FeedbackRecord};
use crate::azure::{ConnectionString, IotHubConnectionString, SasKey, SasToken};
use crate::inspect::json::{Sink, Writer};
use crate::json::Json;
use crate::message::Message;

use super::message::{member_bool, member_opt_str, member_str, parse_json};
use super::{err, message, message_from_json};

/// A SAS token from an IoT Hub or Event Hubs connection string, valid until `expiry`
/// (seconds since 1970).
#[wasm_bindgen(js_name = sasTokenFromConnectionString)]
pub fn sas_token_from_connection_string(
    connection_string: &str,
    expiry: f64,
) -> Result<String, JsError> {
    let cs: ConnectionString = connection_string.parse().map_err(err)?;
    Ok(cs.sas_token(expiry_secs(expiry)?).map_err(err)?.to_string())
}

/// A SAS token for `resource` (not encoded: `myhub.azure-devices.net`), signed with `key`
/// (base64, IoT Hub's form), naming the policy `key_name` if any.
#[wasm_bindgen(js_name = sasToken)]
pub fn sas_token(
    resource: &str,
    key: &str,
    key_name: Option<String>,
    expiry: f64,
) -> Result<String, JsError> {
    let key = SasKey::from_base64(key).map_err(err)?;
    let token = SasToken::new(resource, &key, key_name.as_deref(), expiry_secs(expiry)?);
    Ok(token.map_err(err)?.to_string())
}

fn expiry_secs(expiry: f64) -> Result<u64, JsError> {
    // Up to 10^11 seconds (the year 5138): a larger expiry is almost surely milliseconds,
    // Date.now() given as it is.
    if (0.0..1e11).contains(&expiry) {
        // Whole seconds; a fraction from Date.now()/1000 is dropped.
        return Ok(expiry as u64);
    }
    let shown = crate::inspect::f64_text(expiry);
    let hint = if (1e11..1e15).contains(&expiry) {
        ", and this is the year 5138 or later (milliseconds? Date.now() / 1000 is seconds)"
    } else {
        ""
    };
    Err(err(format!("expiry {shown}: seconds since 1970 expected{hint}")))
}

/// What SASL PLAIN takes for an IoT Hub connection string (device or policy): a JSON object
/// with `username` (`{policy}@sas.root.{hub}`, `{device}@sas.{hub}`), `password` (a SAS
/// token valid until `expiry`), `hostname` and `resource`.
#[wasm_bindgen(js_name = iothubPlainCredentials)]
pub fn iothub_plain_credentials(connection_string: &str, expiry: f64) -> Result<String, JsError> {
    let cs: IotHubConnectionString = connection_string.parse().map_err(err)?;
    let user = sasl_plain_user(cs.host_name(), cs.device_id(), cs.shared_access_key_name())
        .ok_or_else(|| err("the connection string names neither a device nor a policy"))?;
    let token = cs.sas_token(expiry_secs(expiry)?).map_err(err)?;
    Ok(object_text(|w| {
        member_str(w, "username", &user);
        member_str(w, "password", &token.to_string());
        member_str(w, "hostname", cs.host_name());
        member_str(w, "resource", &cs.resource_uri());
    }))
}

/// A CBS put-token request (to send on a sender to `$cbs`), encoded: `audience` as the
/// `name`, `token` as the body, type `azure-devices.net:sastoken` unless `token_type` says
/// otherwise, and `message_id` (a string) to match its answer.
#[wasm_bindgen(js_name = putTokenMessage)]
pub fn put_token_message(
    audience: &str,
    token: &str,
    token_type: Option<String>,
    message_id: &str,
) -> Vec<u8> {
    PutToken {
        message_id: Some(crate::types::MessageId::String(message_id.into())),
        token_type: token_type.unwrap_or_else(|| IOTHUB_SAS_TOKEN_TYPE.to_owned()),
        name: audience.to_owned(),
        token: token.to_owned(),
        expiration: None,
    }
    .to_message()
    .to_vec()
}

/// Reads a CBS answer (an encoded message): JSON `{"statusCode", "description",
/// "success"}`.
#[wasm_bindgen(js_name = readCbsStatus)]
pub fn read_cbs_status(payload: &[u8]) -> Result<String, JsError> {
    let m = decode_message(payload)?;
    let s = CbsStatus::from_message(&m).map_err(|e| err(format!("CBS answer: {e}")))?;
    Ok(object_text(|w| {
        w.key("statusCode");
        w.i64(s.code.into());
        member_opt_str(w, "description", s.description.as_deref());
        member_bool(w, "success", s.is_success());
    }))
}

/// A cloud-to-device message for `device_id` (the message as JSON, see
/// [`message_from_json`]), encoded: `to` set, `message_id` (a uuid or any string) unless
/// the message has one, and `iothub-ack` for `ack` (`none`, `positive`, `negative`,
/// `full`). Send it on a sender to `/messages/devicebound`.
#[wasm_bindgen(js_name = c2dMessage)]
pub fn c2d_message(
    device_id: &str,
    message: &str,
    ack: &str,
    message_id: &str,
) -> Result<Vec<u8>, JsError> {
    crate::azure::hub::check_device_id("device id", device_id).map_err(err)?;
    if message_id.is_empty() {
        return Err(err("message id is empty: feedback records name the message by it"));
    }
    let mut m = message_from_json(&parse_json("message", message)?)?;
    let ack = Ack::parse(ack)
        .ok_or_else(|| err(format!("ack {ack:?}: none, positive, negative or full")))?;
    prepare_c2d(&mut m, device_id, ack, || message::message_id(message_id));
    Ok(m.to_vec())
}

/// IoT Hub's node addresses and names, as JSON: `c2dSend`
/// (`/messages/devicebound`), `feedback` (`/messages/serviceBound/feedback`), `cbs`
/// (`$cbs`), `ackProperty` (`iothub-ack`), and `c2d` and `telemetry` for `device_id`.
#[wasm_bindgen(js_name = iothubAddresses)]
pub fn iothub_addresses(device_id: &str) -> Result<String, JsError> {
    use crate::azure::hub;
    hub::check_device_id("device id", device_id).map_err(err)?;
    Ok(object_text(|w| {
        member_str(w, "c2dSend", hub::C2D_SEND_ADDRESS);
        member_str(w, "feedback", hub::FEEDBACK_ADDRESS);
        member_str(w, "cbs", crate::azure::cbs::CBS_NODE);
        member_str(w, "ackProperty", hub::ACK_PROPERTY);
        member_str(w, "c2d", &hub::c2d_address(device_id));
        member_str(w, "telemetry", &hub::telemetry_address(device_id, None));
    }))
}

/// Reads a feedback message (encoded, as received on `/messages/serviceBound/feedback`):
/// a JSON array of records with the hub's own field names (`originalMessageId`,
/// `statusCode`, `deviceId`, …).
#[wasm_bindgen(js_name = parseFeedback)]
pub fn parse_feedback(payload: &[u8]) -> Result<String, JsError> {
    let m = decode_message(payload)?;
    let body = m.body.bytes().ok_or_else(|| err("feedback message: no data body"))?;
    let records = FeedbackRecord::parse_batch(&body).map_err(err)?;
    Ok(Json::Array(records.iter().map(FeedbackRecord::json).collect()).to_string())
}

fn decode_message(payload: &[u8]) -> Result<Message, JsError> {
    Message::decode(&Bytes::copy_from_slice(payload)).map_err(|e| err(format!("message: {e}")))
}

/// A JSON object's text, from its members written by `f`.
fn object_text(f: impl FnOnce(&mut Writer<'_>)) -> String {
    let mut out = String::new();
    let mut w = Writer::new(&mut out);
    w.begin_object();
    f(&mut w);
    w.end_object();
    // One value, not a line of them.
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

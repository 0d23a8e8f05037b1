//! The words IoT Hub's messages use, shared by its clients and the emulator: the
//! addresses of its nodes, `iothub-ack` modes, feedback records, and the start positions of
//! Event Hub partition readers.

use crate::codec::{Described, Symbol, Value};
use crate::json::Json;
use crate::message::{AnnotationMap, Message};
use crate::types::{MessageId, Properties};

/// Where the service sends cloud-to-device messages.
pub const C2D_SEND_ADDRESS: &str = "/messages/devicebound";
/// Where the service reads feedback on cloud-to-device messages.
pub const FEEDBACK_ADDRESS: &str = "/messages/serviceBound/feedback";
/// The `content-type` of feedback messages.
pub const FEEDBACK_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.feedback.json";
/// The application property that asks for feedback.
pub const ACK_PROPERTY: &str = "iothub-ack";
/// The source filter key of partition readers' start positions.
pub const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";
/// The descriptor code of the selector filter's value.
pub const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;
/// The default consumer group.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

/// Checks a device or module id as IoT Hub's registry takes it: 1 to 128 characters, ASCII
/// letters and digits and `- : . + % _ # * ? ! ( ) , = @ ; $ '`. The error says why not;
/// an id that fails would make an address the hub does not route (`/devices//messages/…`
/// for an empty one, another path for one with `/`).
pub fn check_device_id(what: &str, id: &str) -> Result<(), String> {
    const SPECIAL: &str = "-:.+%_#*?!(),=@;$'";
    if id.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_alphanumeric() && !SPECIAL.contains(*c)) {
        return Err(format!(
            "{what} {id:?} holds {c:?}: IoT Hub takes ASCII letters, digits and {SPECIAL}"
        ));
    }
    // ASCII by now: its length in bytes is its length in characters.
    if id.len() > 128 {
        return Err(format!("{what} is {} characters long, over IoT Hub's 128", id.len()));
    }
    Ok(())
}

/// The path a device (or a module of it) sends telemetry to.
pub fn telemetry_address(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("/devices/{device_id}/modules/{m}/messages/events"),
        None => format!("/devices/{device_id}/messages/events"),
    }
}

/// The path a device receives cloud-to-device messages from (also the `to` of those
/// messages).
pub fn c2d_address(device_id: &str) -> String {
    format!("/devices/{device_id}/messages/devicebound")
}

/// Makes `message` a cloud-to-device message for `device_id` asking for `ack` feedback:
/// sets `to`, a message-id from `new_id` when it has none (feedback records name it), and
/// `iothub-ack` (unless [`Ack::None`]), replacing any `iothub-ack` it had. Returns its
/// message-id.
pub fn prepare_c2d(
    message: &mut Message,
    device_id: &str,
    ack: Ack,
    new_id: impl FnOnce() -> MessageId,
) -> MessageId {
    let properties = message.properties.get_or_insert_with(Properties::default);
    properties.to = Some(c2d_address(device_id).into());
    let id = properties.message_id.get_or_insert_with(new_id).clone();
    if ack != Ack::None {
        let mut pairs = message
            .application_properties
            .as_ref()
            .map(AnnotationMap::to_pairs)
            .unwrap_or_default();
        pairs.retain(|(k, _)| k.as_str() != Some(ACK_PROPERTY));
        pairs.push((Value::from(ACK_PROPERTY), Value::from(ack.as_str())));
        message.application_properties = Some(AnnotationMap::from_pairs(pairs));
    }
    id
}

/// The SASL PLAIN user name IoT Hub expects, with a SAS token as the password:
/// `{device}@sas.{hub}` for a token signed with a device's own key,
/// `{policy}@sas.root.{hub}` for one signed with a policy's (a device's connection string
/// that names a policy with DeviceConnect too), where `hub` is the first label of the host
/// name (`myhub` of `myhub.azure-devices.net`).
pub fn sasl_plain_user(
    host: &str,
    device_id: Option<&str>,
    policy: Option<&str>,
) -> Option<String> {
    let hub = host.split('.').next().unwrap_or(host);
    match (device_id, policy) {
        (_, Some(p)) => Some(format!("{p}@sas.root.{hub}")),
        (Some(d), None) => Some(format!("{d}@sas.{hub}")),
        (None, None) => None,
    }
}

/// Which outcomes of a cloud-to-device message the service wants feedback on
/// (`iothub-ack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// No feedback (the default).
    None,
    /// Feedback when the device completes the message.
    Positive,
    /// Feedback when it is rejected, expires or is abandoned too often.
    Negative,
    /// Both.
    Full,
}

impl Ack {
    /// Reads `iothub-ack` (any case); `None` for a value it does not know.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "positive" => Some(Self::Positive),
            "negative" => Some(Self::Negative),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    /// The value of `iothub-ack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Positive => "positive",
            Self::Negative => "negative",
            Self::Full => "full",
        }
    }

    /// Whether a record with `status` is wanted.
    pub fn wants(self, status: FeedbackStatus) -> bool {
        match status {
            FeedbackStatus::Success => matches!(self, Self::Positive | Self::Full),
            _ => matches!(self, Self::Negative | Self::Full),
        }
    }
}

/// The statuses a feedback record carries (`statusCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedbackStatus {
    /// The device completed (accepted) the message.
    Success,
    /// Its time to live ran out before the device completed it.
    Expired,
    /// The device abandoned it more often than the hub allows.
    DeliveryCountExceeded,
    /// The device rejected it.
    Rejected,
    /// The device's queue was purged before it was delivered.
    Purged,
}

impl FeedbackStatus {
    /// The name in the JSON record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Expired => "Expired",
            Self::DeliveryCountExceeded => "DeliveryCountExceeded",
            Self::Rejected => "Rejected",
            Self::Purged => "Purged",
        }
    }

    /// Reads a `statusCode` (any case).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Success, Self::Expired, Self::DeliveryCountExceeded, Self::Rejected, Self::Purged]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The hub's description of the status.
    pub fn description(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Expired => "Message expired",
            Self::DeliveryCountExceeded => "Message delivery count exceeded",
            Self::Rejected => "Message rejected",
            Self::Purged => "Message purged",
        }
    }
}

/// One feedback record, as the service receives it in a JSON array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackRecord {
    /// The cloud-to-device message's message-id, as text (a uuid is written lower-case
    /// 8-4-4-4-12).
    pub original_message_id: String,
    /// The device it was for.
    pub device_id: String,
    /// What happened to it.
    pub status: FeedbackStatus,
    /// The hub's words for the status.
    pub description: String,
    /// When the record was made, as the hub wrote it (ISO 8601, UTC).
    pub enqueued_time_utc: String,
    /// The device's generation id (empty when the hub does not say).
    pub device_generation_id: String,
}

impl FeedbackRecord {
    /// The record as a JSON object, with the hub's field names.
    pub fn json(&self) -> Json {
        let text = |s: &str| Json::from(s);
        Json::Object(vec![
            ("originalMessageId".into(), text(&self.original_message_id)),
            ("enqueuedTimeUtc".into(), text(&self.enqueued_time_utc)),
            ("statusCode".into(), text(self.status.name())),
            ("description".into(), text(&self.description)),
            ("deviceId".into(), text(&self.device_id)),
            ("deviceGenerationId".into(), text(&self.device_generation_id)),
        ])
    }

    /// The record as a `serde_json` object ([`FeedbackRecord::json`]'s).
    #[cfg(feature = "json")]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.json().to_string()).unwrap_or_default()
    }

    /// Reads one record of a feedback message.
    pub fn from_json(v: &Json) -> Result<Self, String> {
        let text = |key: &str| -> Result<String, String> {
            match v.get(key) {
                Some(Json::String(s)) => Ok(s.clone()),
                Some(Json::Null) | None => Ok(String::new()),
                Some(other) => Err(format!("feedback record: {key} is {other}, not a string")),
            }
        };
        if v.as_object().is_none() {
            return Err(format!("feedback record: {v} is not an object"));
        }
        let code = text("statusCode")?;
        let status = FeedbackStatus::parse(&code)
            .ok_or_else(|| format!("feedback record: unknown statusCode {code:?}"))?;
        let original_message_id = text("originalMessageId")?;
        if original_message_id.is_empty() {
            return Err("feedback record: no originalMessageId".into());
        }
        Ok(Self {
            original_message_id,
            device_id: text("deviceId")?,
            status,
            description: text("description")?,
            enqueued_time_utc: text("enqueuedTimeUtc")?,
            device_generation_id: text("deviceGenerationId")?,
        })
    }

    /// Reads a feedback message's body: a JSON array of records.
    pub fn parse_batch(body: &[u8]) -> Result<Vec<Self>, String> {
        let v = Json::parse(body).map_err(|e| format!("feedback message: not JSON ({e})"))?;
        let Json::Array(items) = v else {
            return Err("feedback message: not a JSON array".into());
        };
        items.iter().map(Self::from_json).collect()
    }
}

/// The text form of a message-id in feedback records.
pub fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.to_string(),
        MessageId::Uuid(u) => u.to_string(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// Where a partition reader starts: the selector filter of its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    /// The first event whose offset is greater (or, inclusive, not less) than this.
    Offset {
        /// The offset.
        offset: i64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// The first event whose sequence number is greater (or not less) than this.
    Sequence {
        /// The sequence number.
        sequence: i64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// The first event enqueued after (or at) this time, in ms since the epoch.
    EnqueuedTime {
        /// The time.
        ms: i64,
        /// `>=` rather than `>`.
        inclusive: bool,
    },
    /// Only events that arrive from now on (`@latest`).
    Latest,
}

impl StartPosition {
    /// Reads a selector such as `amqp.annotation.x-opt-offset > '-1'`.
    pub fn parse(selector: &str) -> Result<Self, String> {
        let s = selector.trim();
        // The field ends where the operator (or a space) begins; the operator stays.
        let end = s
            .find(|c: char| c.is_whitespace() || c == '>' || c == '=')
            .ok_or_else(|| format!("selector {selector:?}: expected FIELD > 'VALUE'"))?;
        let (field, rest) = (&s[..end], s[end..].trim_start());
        let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (false, r)
        } else {
            return Err(format!("selector {selector:?}: expected > or >="));
        };
        let value = rest.trim().trim_matches('\'');
        let number = |what: &str| {
            value
                .parse::<i64>()
                .map_err(|_| format!("selector {selector:?}: {what} {value:?} is not a number"))
        };
        match field.to_ascii_lowercase().as_str() {
            "amqp.annotation.x-opt-offset" if value == "@latest" => Ok(Self::Latest),
            "amqp.annotation.x-opt-offset" => {
                Ok(Self::Offset { offset: number("offset")?, inclusive })
            }
            "amqp.annotation.x-opt-sequence-number" => {
                Ok(Self::Sequence { sequence: number("sequence number")?, inclusive })
            }
            "amqp.annotation.x-opt-enqueued-time" => {
                Ok(Self::EnqueuedTime { ms: number("enqueued time")?, inclusive })
            }
            other => Err(format!("selector {selector:?}: unknown field {other:?}")),
        }
    }

    /// The selector text, as [`parse`](Self::parse) reads it and Event Hubs expects it.
    pub fn selector(self) -> String {
        let op = |inclusive: bool| if inclusive { ">=" } else { ">" };
        match self {
            Self::Offset { offset, inclusive } => {
                format!("amqp.annotation.x-opt-offset {} '{offset}'", op(inclusive))
            }
            Self::Sequence { sequence, inclusive } => {
                format!("amqp.annotation.x-opt-sequence-number {} '{sequence}'", op(inclusive))
            }
            Self::EnqueuedTime { ms, inclusive } => {
                format!("amqp.annotation.x-opt-enqueued-time {} '{ms}'", op(inclusive))
            }
            Self::Latest => "amqp.annotation.x-opt-offset > '@latest'".into(),
        }
    }

    /// The start of the stream (`x-opt-offset > '-1'`).
    pub const START: Self = Self::Offset { offset: -1, inclusive: false };

    /// The source filter map entry that asks for this position: the key
    /// [`SELECTOR_FILTER`] and the described string.
    pub fn filter(self) -> (Symbol, Value) {
        let selector = Described {
            descriptor: Value::Ulong(SELECTOR_FILTER_CODE, Default::default()),
            value: Value::from(self.selector()),
        };
        (Symbol::from(SELECTOR_FILTER), Value::Described(Box::new(selector)))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn device_ids_are_checked_as_the_registry_takes_them() {
        assert_eq!(check_device_id("device", "dev-1:a.b+c%d_e#f*g?h!(i),j=k@l;m$n'o"), Ok(()));
        assert_eq!(check_device_id("device", &"d".repeat(128)), Ok(()));
        let long = check_device_id("device", &"d".repeat(129)).unwrap_err();
        assert!(long.contains("129 characters"), "{long}");
        assert_eq!(check_device_id("device", ""), Err("device is empty".to_owned()));
        let slash = check_device_id("device", "a/b").unwrap_err();
        assert!(slash.contains("'/'"), "{slash}");
        assert!(check_device_id("device", "d\u{e9}v").unwrap_err().contains("'\u{e9}'"));
        assert!(check_device_id("device", "a b").is_err());
    }
    use super::*;

    #[test]
    fn start_positions_print_as_event_hubs_reads_them() {
        let (key, value) = StartPosition::START.filter();
        assert_eq!(key.as_str(), "apache.org:selector-filter:string");
        let Value::Described(d) = value else { panic!("{value:?}") };
        assert_eq!(d.descriptor, Value::Ulong(0x0000_468C_0000_0004, Default::default()));
        assert_eq!(d.value.as_str(), Some("amqp.annotation.x-opt-offset > '-1'"));
        let all = [
            StartPosition::Latest,
            StartPosition::Offset { offset: 120, inclusive: true },
            StartPosition::Sequence { sequence: 7, inclusive: false },
            StartPosition::EnqueuedTime { ms: 1_700_000_000_000, inclusive: false },
        ];
        let texts: Vec<String> = all.iter().map(|p| p.selector()).collect();
        assert_eq!(
            texts,
            [
                "amqp.annotation.x-opt-offset > '@latest'",
                "amqp.annotation.x-opt-offset >= '120'",
                "amqp.annotation.x-opt-sequence-number > '7'",
                "amqp.annotation.x-opt-enqueued-time > '1700000000000'",
            ]
        );
        for p in all {
            assert_eq!(StartPosition::parse(&p.selector()), Ok(p));
        }
    }

    #[test]
    fn feedback_records_read_what_the_hub_writes() {
        let body = br#"[{"originalMessageId":"m1","enqueuedTimeUtc":"2026-01-01T00:00:00.000Z",
            "statusCode":"DeliveryCountExceeded","description":"x","deviceId":"d1",
            "deviceGenerationId":null}]"#;
        let r = FeedbackRecord::parse_batch(body).unwrap();
        assert_eq!(r[0].status, FeedbackStatus::DeliveryCountExceeded);
        assert_eq!((r[0].device_id.as_str(), r[0].device_generation_id.as_str()), ("d1", ""));
        assert!(FeedbackRecord::parse_batch(br#"[{"statusCode":"Success"}]"#)
            .unwrap_err()
            .contains("originalMessageId"));
        assert!(FeedbackRecord::parse_batch(br#"[{"originalMessageId":"m","statusCode":"Lost"}]"#)
            .unwrap_err()
            .contains("Lost"));
        assert!(FeedbackRecord::parse_batch(b"{}").unwrap_err().contains("array"));
    }
}

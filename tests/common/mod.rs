//! Shared test data.

use amqpwire::codec::Symbol;
use amqpwire::message::{AnnotationMap, Message};
use amqpwire::types::{Handle, Header, MessageId, Properties, SequenceNo, Transfer};
use bytes::Bytes;

/// The typical device telemetry transfer of the benchmarks: header, properties with
/// message-id, to and content-type, three application properties and a data body.
#[allow(dead_code)]
pub(crate) fn telemetry(body_len: usize) -> (Transfer, Message) {
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(42));
    t.delivery_tag = Some(Bytes::from_static(&[0, 0, 0, 42]));
    t.message_format = Some(0);
    t.settled = Some(false);
    let m = Message {
        header: Some(Header { durable: true, ..Header::default() }),
        properties: Some(Properties {
            message_id: Some(MessageId::from("msg-000042")),
            to: Some("/devices/sensor-7/messages/events".into()),
            content_type: Some(Symbol::from("application/json")),
            ..Properties::default()
        }),
        application_properties: Some(AnnotationMap::from_pairs([
            ("temperatureAlert", amqpwire::codec::Value::from("false")),
            ("sequence", amqpwire::codec::Value::from(42i64)),
            ("site", amqpwire::codec::Value::from("north-3")),
        ])),
        ..Message::with_data(Bytes::from(vec![b'7'; body_len]))
    };
    (t, m)
}

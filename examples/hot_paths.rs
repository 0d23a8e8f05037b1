//! Runs one hot path N times, for instruction counting under
//! `valgrind --tool=callgrind` (repeatable on a busy machine, unlike wall time):
//!
//! ```text
//! cargo build --release --example hot_paths
//! valgrind --tool=callgrind target/release/examples/hot_paths decode 100 10000
//! ```
//!
//! Arguments: the path (`decode`, `decode-view`, `decode-transfer`, `decode-message`,
//! `decode-message-view`, `encode`), the body size in bytes, and the number of iterations.

use amqpwire::codec::{DecodeOptions, Symbol, Value};
use amqpwire::frame::{FrameBody, FrameEncoder, FrameHeader, RawFrame};
use amqpwire::message::{AnnotationMap, BodyView, Message, MessageIdRef, MessageView, Payload};
use amqpwire::types::{Handle, Header, MessageId, Performative, Properties, SequenceNo, Transfer};
use bytes::Bytes;
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("decode", String::as_str);
    let body: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let (t, m) = telemetry(body);
    let enc = FrameEncoder::new(u32::MAX);
    let mut out = Payload::default();
    enc.encode_message(0, &t, &m, &mut out).expect("encode");
    let frame = bytes::BytesMut::from(&out.to_vec()[..]).freeze();
    let payload = frame.slice(frame.len() - m.encoded_len()..);
    let perf = frame.slice(8..frame.len() - m.encoded_len());
    let mut sink = 0usize;
    for _ in 0..n {
        sink += match path {
            "decode" => decode(black_box(&frame)),
            "decode-transfer" => {
                let mut r =
                    amqpwire::codec::Reader::from_bytes(black_box(&perf), DecodeOptions::STRICT);
                usize::from(matches!(Performative::read(&mut r), Ok(Performative::Transfer(_))))
            }
            "decode-view" => decode_view(black_box(&frame)),
            "decode-message-view" => view(black_box(&payload)),
            "decode-message" => Message::decode(black_box(&payload)).map_or(0, |m| m.encoded_len()),
            "encode" => {
                out.clear();
                enc.encode_message(0, black_box(&t), black_box(&m), &mut out).expect("encode");
                out.len()
            }
            other => panic!("unknown path {other}"),
        };
    }
    println!("{sink}");
}

fn decode(frame: &Bytes) -> usize {
    let mut h = [0u8; 8];
    h.copy_from_slice(&frame[..8]);
    let header = FrameHeader::parse(&h).expect("header");
    let raw = RawFrame { offset: 0, header, bytes: frame.clone() };
    let f = raw.decode(DecodeOptions::STRICT).expect("frame");
    let FrameBody::Amqp { performative: Performative::Transfer(t), payload } = f.body else {
        panic!("not a transfer")
    };
    let m = Message::decode(&payload).expect("message");
    usize::from(t.more) + m.body.as_data().map_or(0, Bytes::len)
}

/// The borrowed receive path: the transfer, then a view of the message from which every
/// property and application property the telemetry carries is read.
fn decode_view(frame: &Bytes) -> usize {
    let mut h = [0u8; 8];
    h.copy_from_slice(&frame[..8]);
    let header = FrameHeader::parse(&h).expect("header");
    let body = &frame[usize::from(header.doff) * 4..];
    let mut r = amqpwire::codec::Reader::new(body, DecodeOptions::STRICT);
    let Ok(Performative::Transfer(t)) = Performative::read(&mut r) else {
        panic!("not a transfer")
    };
    usize::from(t.more) + view(&body[r.position()..])
}

fn view(payload: &[u8]) -> usize {
    let m = MessageView::decode(payload).expect("message");
    let p = m.properties.expect("properties");
    let ap = m.application_properties.expect("application-properties");
    let mut n = p.to().map_or(0, str::len) + p.content_type().map_or(0, str::len);
    n += usize::from(matches!(p.message_id(), Some(MessageIdRef::String(_))));
    for key in ["temperatureAlert", "sequence", "site"] {
        n += usize::from(ap.get(key).ok().flatten().is_some());
    }
    n + match m.body {
        BodyView::Data { first, .. } => first.len(),
        _ => 0,
    }
}

fn telemetry(body_len: usize) -> (Transfer, Message) {
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
            ("temperatureAlert", Value::from("false")),
            ("sequence", Value::from(42i64)),
            ("site", Value::from("north-3")),
        ])),
        ..Message::with_data(Bytes::from(vec![b'7'; body_len]))
    };
    (t, m)
}

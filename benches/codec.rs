#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Decode and encode of a typical telemetry transfer: frame + transfer + message (header,
//! properties with message-id / to / content-type, three application properties, a data
//! body), with a 100-byte and a 64 KiB body. Figures go in docs/performance.md.

use amqpwire::codec::{DecodeOptions, Symbol, Value};
use amqpwire::frame::{FrameBody, FrameEncoder, FrameHeader, RawFrame};
use amqpwire::message::{AnnotationMap, BodyView, Message, MessageIdRef, MessageView, Payload};
use amqpwire::types::{Handle, Header, MessageId, Performative, Properties, SequenceNo, Transfer};
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

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

fn frame_bytes(t: &Transfer, m: &Message) -> Bytes {
    let mut out = Payload::default();
    FrameEncoder::new(u32::MAX).encode_message(0, t, m, &mut out).expect("encode");
    bytes::BytesMut::from(&out.to_vec()[..]).freeze()
}

/// The borrowed decode path: frame header, transfer performative, message sections.
fn decode(frame: &Bytes) -> (Transfer, Message) {
    let mut h = [0u8; 8];
    h.copy_from_slice(&frame[..8]);
    let header = FrameHeader::parse(&h).expect("header");
    let raw = RawFrame { offset: 0, header, bytes: frame.clone() };
    let f = raw.decode(DecodeOptions::STRICT).expect("frame");
    let FrameBody::Amqp { performative: Performative::Transfer(t), payload } = f.body else {
        panic!("not a transfer")
    };
    (t, Message::decode(&payload).expect("message"))
}

/// The borrowed receive path: the transfer, then a validated view of the message from
/// which every property and application property the telemetry carries is read.
fn decode_view(frame: &[u8]) -> usize {
    let mut h = [0u8; 8];
    h.copy_from_slice(&frame[..8]);
    let header = FrameHeader::parse(&h).expect("header");
    let body = &frame[usize::from(header.doff) * 4..];
    let mut r = amqpwire::codec::Reader::new(body, DecodeOptions::STRICT);
    let Ok(Performative::Transfer(t)) = Performative::read(&mut r) else { panic!("transfer") };
    let m = MessageView::decode(&body[r.position()..]).expect("message");
    let p = m.properties.expect("properties");
    let ap = m.application_properties.expect("application-properties");
    let mut n =
        usize::from(t.more) + p.to().map_or(0, str::len) + p.content_type().map_or(0, str::len);
    n += usize::from(matches!(p.message_id(), Some(MessageIdRef::String(_))));
    for key in ["temperatureAlert", "sequence", "site"] {
        n += usize::from(ap.get(key).ok().flatten().is_some());
    }
    n + match m.body {
        BodyView::Data { first, .. } => first.len(),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    for (name, body) in [("100B", 100usize), ("64KiB", 64 * 1024)] {
        let (t, m) = telemetry(body);
        let frame = frame_bytes(&t, &m);
        let mut g = c.benchmark_group(format!("telemetry_{name}"));
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function("decode", |b| b.iter(|| decode(black_box(&frame))));
        let enc = FrameEncoder::new(u32::MAX);
        let mut out = Payload::default();
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                enc.encode_message(0, black_box(&t), black_box(&m), &mut out).expect("encode");
                black_box(out.len())
            })
        });
        let payload = frame.slice(frame.len() - m.encoded_len()..);
        let perf = frame.slice(8..frame.len() - m.encoded_len());
        g.bench_function("decode_view", |b| b.iter(|| decode_view(black_box(&frame))));
        g.bench_function("decode_transfer_only", |b| {
            b.iter(|| Performative::decode(black_box(&perf), DecodeOptions::STRICT).expect("t"))
        });
        g.bench_function("decode_message_only", |b| {
            b.iter(|| Message::decode(black_box(&payload)).expect("m"))
        });
        g.bench_function("decode_lossless_value", |b| {
            b.iter(|| {
                let body = &black_box(&frame)[8..];
                let mut r = amqpwire::codec::Reader::new(body, DecodeOptions::STRICT);
                let mut n = 0;
                while !r.is_empty() {
                    n += Value::read(&mut r).expect("value").encoded_len();
                }
                n
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

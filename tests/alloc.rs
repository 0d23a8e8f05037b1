//! The hot paths allocate nothing: decoding a typical telemetry transfer on the borrowed
//! path, and encoding it into a reused buffer.

mod common;

use amqpwire::codec::DecodeOptions;
use amqpwire::frame::{FrameBody, FrameEncoder, FrameHeader, RawFrame};
use amqpwire::message::{Message, Payload};
use amqpwire::types::Performative;
use bytes::Bytes;

fn frame_bytes(body: usize) -> Bytes {
    let (t, m) = common::telemetry(body);
    let mut out = Payload::default();
    FrameEncoder::new(u32::MAX).encode_message(0, &t, &m, &mut out).expect("encode");
    // Through BytesMut, as a connection's read buffer hands frames over: slices of it are
    // reference-counted without allocating.
    bytes::BytesMut::from(&out.to_vec()[..]).freeze()
}

fn decode(frame: &Bytes) -> usize {
    let mut h = [0u8; 8];
    h.copy_from_slice(&frame[..8]);
    let header = FrameHeader::parse(&h).expect("header");
    let raw = RawFrame { offset: 0, header, bytes: frame.clone() };
    let f = raw.decode(DecodeOptions::STRICT).expect("frame");
    let FrameBody::Amqp { performative: Performative::Transfer(t), payload } = f.body else {
        panic!()
    };
    let m = Message::decode(&payload).expect("message");
    usize::from(t.more) + m.body.as_data().map_or(0, Bytes::len)
}

#[test]
fn the_counter_sees_allocations() {
    let info = allocation_counter::measure(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(16));
    });
    assert_eq!(info.count_total, 1);
}

#[test]
fn decoding_a_telemetry_transfer_does_not_allocate() {
    for body in [100, 64 * 1024] {
        let frame = frame_bytes(body);
        assert_eq!(decode(&frame), body);
        let info = allocation_counter::measure(|| {
            std::hint::black_box(decode(std::hint::black_box(&frame)));
        });
        assert_eq!(info.count_total, 0, "{body}-byte body: {info:?}");
    }
}

#[test]
fn encoding_into_a_reused_buffer_does_not_allocate() {
    let enc = FrameEncoder::new(u32::MAX);
    for body in [100, 64 * 1024] {
        let (t, m) = common::telemetry(body);
        let mut out = Payload::default();
        enc.encode_message(0, &t, &m, &mut out).expect("warm-up");
        let len = out.len();
        let info = allocation_counter::measure(|| {
            out.clear();
            enc.encode_message(0, &t, &m, &mut out).expect("encode");
        });
        assert_eq!(out.len(), len);
        assert_eq!(info.count_total, 0, "{body}-byte body: {info:?}");
        if body > 1024 {
            // The body is referenced, not copied.
            assert!(out.head.len() < 512);
        }
    }
}

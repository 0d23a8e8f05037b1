//! A typical device-telemetry transfer and the two receive paths that decode it, shared by
//! the benchmarks (`benches/codec.rs`), the instruction-count example
//! (`examples/hot_paths.rs`) and the allocation tests, so that all of them measure the
//! same code.

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeOptions, Reader, Symbol, Value};
use crate::frame::{FrameBody, FrameEncoder, FrameHeader, RawFrame};
use crate::message::{AnnotationMap, BodyView, Message, MessageIdRef, MessageView, Payload};
use crate::types::{Handle, Header, MessageId, Performative, Properties, SequenceNo, Transfer};

/// A telemetry transfer: handle 0, delivery-id 42, a 4-byte tag, unsettled; a message with
/// a durable header, properties (message-id, to, content-type), three application
/// properties (a string, a long, a string) and a data body of `body_len` bytes.
pub fn telemetry(body_len: usize) -> (Transfer, Message) {
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

/// The telemetry transfer as one frame, in shared storage as a connection's read buffer
/// hands frames over (slicing it counts references without allocating).
pub fn telemetry_frame(body_len: usize) -> Bytes {
    let (t, m) = telemetry(body_len);
    let mut out = Payload::default();
    // A frame of any size fits under a u32::MAX limit; an error here would be a bug.
    let _ = FrameEncoder::new(u32::MAX).encode_message(0, &t, &m, &mut out);
    BytesMut::from(&out.to_vec()[..]).freeze()
}

/// The owned receive path: frame header, transfer, and [`Message::decode`], whose strings
/// and body share the frame's storage. Returns a checksum of what it read (0 when the
/// frame is not a transfer carrying a valid message).
pub fn decode_owned(frame: &Bytes) -> usize {
    let Some(header) = frame.get(..8).and_then(|h| <[u8; 8]>::try_from(h).ok()) else {
        return 0;
    };
    let Ok(header) = FrameHeader::parse(&header) else { return 0 };
    let raw = RawFrame { offset: 0, header, bytes: frame.clone() };
    let Ok(f) = raw.decode(DecodeOptions::STRICT) else { return 0 };
    let FrameBody::Amqp { performative: Performative::Transfer(t), payload } = f.body else {
        return 0;
    };
    let Ok(m) = Message::decode(&payload) else { return 0 };
    usize::from(t.more)
        + m.properties.as_ref().and_then(|p| p.to.as_ref()).map_or(0, |s| s.len())
        + m.application_properties.as_ref().map_or(0, AnnotationMap::len)
        + m.body.as_data().map_or(0, Bytes::len)
}

/// The borrowed receive path: frame header, transfer, then [`MessageView::decode`] (every
/// section checked as strictly as [`Message::decode`] checks it) and reading message-id,
/// to, content-type, the three application properties and the body. Returns a checksum.
pub fn decode_view(frame: &Bytes) -> usize {
    let mut r = Reader::from_bytes(frame, DecodeOptions::STRICT);
    let Ok(header) = r.read_array::<8>() else { return 0 };
    let Ok(header) = FrameHeader::parse(&header) else { return 0 };
    if r.read_slice(usize::from(header.doff) * 4 - 8).is_err() {
        return 0;
    }
    let Ok(t) = Transfer::read(&mut r) else { return 0 };
    let Ok(m) = MessageView::decode(&frame[r.position()..]) else { return 0 };
    let mut n = usize::from(t.more);
    if let Some(p) = m.properties {
        n += p.to().map_or(0, str::len) + p.content_type().map_or(0, str::len);
        n += usize::from(matches!(p.message_id(), Some(MessageIdRef::String(_))));
    }
    for key in ["temperatureAlert", "sequence", "site"] {
        n += usize::from(m.application_property(key).is_some());
    }
    n + match m.body {
        BodyView::Data { first, .. } => first.len(),
        _ => 0,
    }
}

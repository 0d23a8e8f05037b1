//! Real wire bytes from independently written implementations: each frame decodes to the
//! expected fields, and the lossless decoder re-encodes it to the same bytes.

use std::path::Path;

use amqpwire::codec::{DecodeOptions, Reader, Value, ValueRef};
use amqpwire::frame::{FrameBody, FrameDecoder, StreamItem};
use amqpwire::message::{Body, Message};
use amqpwire::types::{
    Composite, DeliveryState, Handle, Layout, MessageId, Performative, Role, SequenceNo,
};
use bytes::Bytes;

fn fixture(path: &str) -> Bytes {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// Decodes a single frame file.
fn one_frame(path: &str) -> (amqpwire::frame::RawFrame, amqpwire::frame::Frame) {
    let bytes = fixture(path);
    let mut d = FrameDecoder::new(u32::MAX).frames_first();
    d.push(&bytes);
    let Some(StreamItem::Frame(raw)) = d.next_item().expect("framing") else {
        panic!("no frame in {path}")
    };
    assert_eq!(raw.bytes.len(), bytes.len(), "{path} is exactly one frame");
    assert_eq!(raw.header.size as usize, bytes.len());
    let frame = raw.decode(DecodeOptions::STRICT).unwrap_or_else(|e| panic!("{path}: {e}"));
    (raw, frame)
}

/// Every value in `buf`, decoded losslessly, re-encodes to `buf`.
fn assert_lossless(buf: &[u8]) {
    let mut r = Reader::new(buf, DecodeOptions::STRICT);
    let mut out = Vec::new();
    while !r.is_empty() {
        Value::read(&mut r).expect("lossless decode").encode(&mut out);
    }
    assert_eq!(out, buf);
}

#[test]
fn iothub_client_open_from_node_sdk() {
    let (raw, frame) = one_frame("iothub/client-open.bin");
    let FrameBody::Amqp { performative: Performative::Open(open), payload } = frame.body else {
        panic!()
    };
    assert!(payload.is_empty());
    assert_eq!(&*open.container_id, "78059d0a-c01b-fa4a-bb42-f202739f56be");
    assert_eq!(open.hostname.as_deref(), Some("win-3u7uddj5jgo"));
    // Absent fields take the spec's defaults.
    assert_eq!(open.max_frame_size, u32::MAX);
    assert_eq!(open.channel_max, u16::MAX);
    assert_eq!(open.idle_time_out, None);
    // rhea wrote a list32 for two fields; the lossless form keeps it.
    assert_eq!(raw.body()[3], 0xd0);
    assert_lossless(&raw.body());
}

#[test]
fn iothub_hub_open_reencodes_exactly_with_every_field_present() {
    let (raw, frame) = one_frame("iothub/hub-open.bin");
    let FrameBody::Amqp { performative: Performative::Open(open), .. } = frame.body else {
        panic!()
    };
    assert_eq!(&*open.container_id, "DeviceGateway_7dab0f42c56241c3be5b932835fc2174");
    assert_eq!(open.hostname.as_deref(), Some("localhost"));
    assert_eq!(open.max_frame_size, 65536);
    assert_eq!(open.channel_max, 8191);
    assert_eq!(open.idle_time_out, Some(240_000));
    assert_lossless(&raw.body());
    // The hub writes all ten fields with explicit nulls: the typed encoder's AllFields
    // layout produces the same bytes.
    let mut out = Vec::new();
    open.encode_with(Layout::AllFields, &mut out);
    assert_eq!(out, raw.body());
}

#[test]
fn iothub_disposition() {
    let (raw, frame) = one_frame("iothub/hub-disposition.bin");
    let FrameBody::Amqp { performative: Performative::Disposition(d), .. } = frame.body else {
        panic!()
    };
    assert_eq!(d.role, Role::RECEIVER);
    assert_eq!(d.first, SequenceNo(2045));
    assert_eq!(d.last, None);
    assert!(d.settled);
    assert!(matches!(d.state, Some(DeliveryState::Accepted(_))));
    assert!(!d.batchable);
    assert_lossless(&raw.body());
}

#[test]
fn iothub_d2c_transfer_and_its_message() {
    let (raw, frame) = one_frame("iothub/d2c-transfer.bin");
    let FrameBody::Amqp { performative: Performative::Transfer(t), payload } = frame.body else {
        panic!()
    };
    assert_eq!(t.handle, Handle(3));
    assert_eq!(t.delivery_id, Some(SequenceNo(2045)));
    assert_eq!(t.delivery_tag.as_deref(), Some(&b"2044"[..]));
    assert_eq!(t.message_format, Some(0));
    assert_eq!(t.settled, Some(false));
    assert!(!t.more);
    let m = Message::decode(&payload).expect("message");
    assert_eq!(m.header.as_ref().map(|h| (h.durable, h.priority)), Some((false, 4)));
    let p = m.properties.as_ref().expect("properties");
    assert_eq!(p.message_id, None::<MessageId>);
    assert_eq!(p.to.as_deref(), Some("/devices/device/messages/events"));
    let ap = m.application_properties.as_ref().expect("application-properties");
    assert_eq!(ap.get("temperatureAlert"), Some(ValueRef::String("false")));
    let Body::Data(d) = &m.body else { panic!("{:?}", m.body) };
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].len(), 143);
    assert!(d[0].starts_with(b"{\"deviceId\":\"myFirstDownstreamDevice\""));
    // The body shares the frame's storage: nothing was copied.
    assert!(std::ptr::eq(d[0].as_ptr(), raw.bytes[raw.bytes.len() - 143..].as_ptr()));
    assert_lossless(&raw.body());
    // Re-encoding the typed message keeps every field (canonically: list8 where rhea used
    // list32), and decodes back to the same message.
    let again = Message::decode(&Bytes::from(m.to_vec())).expect("re-decode");
    assert_eq!(again, m);
}

#[test]
fn typed_performatives_round_trip_through_both_layouts() {
    for path in [
        "iothub/client-open.bin",
        "iothub/hub-open.bin",
        "iothub/hub-disposition.bin",
        "iothub/d2c-transfer.bin",
    ] {
        let (_, frame) = one_frame(path);
        let FrameBody::Amqp { performative, .. } = frame.body else { panic!() };
        for layout in [Layout::Compact, Layout::AllFields] {
            let mut b = Vec::new();
            performative.encode_with(layout, &mut b);
            assert_eq!(b.len(), performative.encoded_len_with(layout));
            let (p, n) = Performative::decode(&b, DecodeOptions::STRICT).expect("typed round trip");
            assert_eq!(n, b.len());
            assert_eq!(p, performative, "{path} {layout:?}");
        }
    }
    let _ = amqpwire::types::Open::NAME;
}

//! Property tests: value → encode → decode = value for every type; lossless decode →
//! encode = the same bytes; typed performatives round-trip; the frame decoder yields the
//! same items however the input is chunked.

use amqpwire::codec::format as fc;
use amqpwire::codec::{Array, Described, Fmt, Symbol, Timestamp, Uuid, Value, ValueRef};
use amqpwire::frame::{FrameDecoder, FrameEncoder, ProtocolHeader, StreamItem};
use amqpwire::types::{Flow, Handle, Layout, Open, Performative, SequenceNo, Transfer};
use bytes::Bytes;
use proptest::prelude::*;

fn fmt(codes: &'static [u8]) -> impl Strategy<Value = Fmt> {
    prop_oneof![Just(Fmt::Auto), proptest::sample::select(codes).prop_map(Fmt::Code)]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (any::<bool>(), fmt(&[fc::TRUE, fc::FALSE, fc::BOOLEAN]))
            .prop_map(|(b, f)| Value::Boolean(b, f)),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        (
            prop_oneof![Just(0u32), 0u32..300, any::<u32>()],
            fmt(&[fc::UINT0, fc::SMALLUINT, fc::UINT])
        )
            .prop_map(|(v, f)| Value::Uint(v, f)),
        (
            prop_oneof![Just(0u64), 0u64..300, any::<u64>()],
            fmt(&[fc::ULONG0, fc::SMALLULONG, fc::ULONG])
        )
            .prop_map(|(v, f)| Value::Ulong(v, f)),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        (prop_oneof![-200i32..200, any::<i32>()], fmt(&[fc::SMALLINT, fc::INT]))
            .prop_map(|(v, f)| Value::Int(v, f)),
        (prop_oneof![-200i64..200, any::<i64>()], fmt(&[fc::SMALLLONG, fc::LONG]))
            .prop_map(|(v, f)| Value::Long(v, f)),
        any::<u32>().prop_map(|b| Value::Float(f32::from_bits(b))),
        any::<u64>().prop_map(|b| Value::Double(f64::from_bits(b))),
        any::<[u8; 4]>().prop_map(Value::Decimal32),
        any::<[u8; 8]>().prop_map(Value::Decimal64),
        any::<[u8; 16]>().prop_map(Value::Decimal128),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(|t| Value::Timestamp(Timestamp(t))),
        any::<[u8; 16]>().prop_map(|u| Value::Uuid(Uuid(u))),
        (proptest::collection::vec(any::<u8>(), 0..300), fmt(&[fc::VBIN8, fc::VBIN32]))
            .prop_map(|(b, f)| Value::Binary(Bytes::from(b), f)),
        (".{0,80}", fmt(&[fc::STR8, fc::STR32])).prop_map(|(s, f)| Value::String(s.into(), f)),
        ("[ -~]{0,300}", fmt(&[fc::SYM8, fc::SYM32]))
            .prop_map(|(s, f)| Value::Symbol(Symbol::from(s), f)),
    ]
}

/// Arrays of one element type, including arrays of lists, of arrays and of described values.
fn array(inner: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::collection::vec(any::<u32>().prop_map(Value::from), 0..20)
            .prop_map(|v| Array::new(v).expect("uints")),
        proptest::collection::vec("[a-z]{0,300}".prop_map(|s| Value::from(s.as_str())), 1..5)
            .prop_map(|v| Array::new(v).expect("strings")),
        proptest::collection::vec(any::<bool>().prop_map(Value::from), 1..10)
            .prop_map(|v| Array::new(v).expect("bools")),
        proptest::collection::vec(
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|l| Value::List(l, Fmt::Auto)),
            1..4
        )
        .prop_map(|v| Array::new(v).expect("lists")),
        proptest::collection::vec(any::<i64>().prop_map(Value::from), 1..5)
            .prop_map(|v| Array::described(Value::from(0x77u64), v).expect("described")),
        proptest::collection::vec(
            proptest::collection::vec(any::<u8>().prop_map(Value::Ubyte), 0..4)
                .prop_map(|v| Value::Array(Array::new(v).expect("ubytes"))),
            1..4
        )
        .prop_map(|v| Array::new(v).expect("arrays")),
    ]
    .prop_map(Value::Array)
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(inner.clone(), 0..8),
                fmt(&[fc::LIST0, fc::LIST8, fc::LIST32])
            )
                .prop_map(|(v, f)| Value::List(v, f)),
            (
                proptest::collection::vec((inner.clone(), inner.clone()), 0..5),
                fmt(&[fc::MAP8, fc::MAP32])
            )
                .prop_map(|(v, f)| Value::Map(unique_keys(v), f)),
            array(inner.clone().boxed()),
            (
                prop_oneof![
                    any::<u64>().prop_map(Value::from),
                    "[a-z:]{1,20}".prop_map(|s| Value::Symbol(Symbol::from(s), Fmt::Auto))
                ],
                inner
            )
                .prop_map(|(d, v)| Value::Described(Box::new(Described {
                    descriptor: d,
                    value: v
                }))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn value_encode_decode_is_identity(v in value()) {
        let bytes = v.to_vec();
        prop_assert_eq!(bytes.len(), v.encoded_len());
        let back = Value::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &v);
        let (r, n) = ValueRef::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n, bytes.len());
        r.validate(64).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r.to_owned_value().map_err(|e| TestCaseError::fail(e.to_string()))?, v);
    }

    #[test]
    fn lossless_decode_encode_gives_the_same_bytes(v in value()) {
        // `v` carries random (often non-canonical) encodings; whatever bytes it produced,
        // decoding and re-encoding must reproduce them exactly.
        let bytes = v.to_vec();
        let back = Value::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.to_vec(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Value::decode(&bytes);
        if let Ok((v, _)) = ValueRef::decode(&bytes) {
            let _ = v.validate(64);
            let _ = v.to_owned_value();
        }
    }

    #[test]
    fn typed_transfer_and_flow_round_trip(
        handle in any::<u32>(), id in proptest::option::of(any::<u32>()), tag in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
        settled in proptest::option::of(any::<bool>()), more in any::<bool>(), credit in proptest::option::of(any::<u32>()), drain in any::<bool>(),
        all_fields in any::<bool>(),
    ) {
        let layout = if all_fields { Layout::AllFields } else { Layout::Compact };
        let mut t = Transfer::new(Handle(handle));
        t.delivery_id = id.map(SequenceNo);
        t.delivery_tag = tag.map(Bytes::from);
        t.settled = settled;
        t.more = more;
        let f = Flow {
            next_incoming_id: id.map(SequenceNo), incoming_window: handle, next_outgoing_id: SequenceNo(7), outgoing_window: 0,
            handle: Some(Handle(handle)), delivery_count: None, link_credit: credit, available: None, drain, echo: !drain, properties: None,
        };
        for p in [Performative::Transfer(t), Performative::Flow(f)] {
            let mut b = Vec::new();
            p.encode_with(layout, &mut b);
            prop_assert_eq!(b.len(), p.encoded_len_with(layout));
            let (back, n) = Performative::decode(&b, amqpwire::codec::DecodeOptions::STRICT).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(back, p);
        }
    }

    #[test]
    fn frame_decoder_is_independent_of_chunking(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        max_frame in 600u32..4096,
    ) {
        let enc = FrameEncoder::new(max_frame);
        let mut stream = ProtocolHeader::AMQP.to_bytes().to_vec();
        enc.encode_amqp(0, &Performative::Open(Open::new("c")), &[], &mut stream).expect("open fits");
        for (i, p) in payloads.iter().enumerate() {
            let mut t = Transfer::new(Handle(1));
            t.delivery_id = Some(SequenceNo(i as u32));
            t.delivery_tag = Some(Bytes::from(vec![i as u8]));
            t.message_format = Some(0);
            enc.encode_transfer(1, &t, p, &mut stream).expect("split");
            enc.encode_empty(&mut stream);
        }
        let whole = items(&stream, &[]);
        let split = items(&stream, &cuts);
        prop_assert_eq!(&whole, &split);
        // No frame exceeds the limit and the payloads reassemble.
        let mut joined = Vec::new();
        let mut current = Vec::new();
        for it in &whole {
            if let StreamItem::Frame(f) = it {
                prop_assert!(f.header.size <= max_frame);
                if let Ok(amqpwire::frame::Frame { body: amqpwire::frame::FrameBody::Amqp { performative: Performative::Transfer(t), payload }, .. }) = f.decode(Default::default()) {
                    current.extend_from_slice(&payload);
                    if !t.more {
                        joined.push(std::mem::take(&mut current));
                    } else {
                        prop_assert!(t.delivery_id.is_none() || current.len() == payload.len());
                    }
                }
            }
        }
        prop_assert_eq!(joined, payloads);
    }
}

/// Keeps the first entry for each key: a map with a key twice is invalid (part 1, 1.6.23).
fn unique_keys(pairs: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if !out.iter().any(|(e, _)| *e == k) {
            out.push((k, v));
        }
    }
    out
}

/// Feeds `stream` to a decoder cut at `cuts` (taken modulo the length) and collects items.
fn items(stream: &[u8], cuts: &[usize]) -> Vec<StreamItem> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut d = FrameDecoder::new(u32::MAX);
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        // Alternate the copying and the owned (no-copy) input paths.
        if out.len() % 2 == 0 {
            d.push(&stream[at..p]);
        } else {
            d.push_bytes(bytes::Bytes::copy_from_slice(&stream[at..p]));
        }
        at = p;
        while let Some(item) = d.next_item().expect("valid stream") {
            out.push(item);
        }
    }
    assert_eq!(d.buffered(), 0);
    out
}

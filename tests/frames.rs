//! Protocol headers, frame headers and their errors, and frame encoding.

use amqpwire::codec::DecodeOptions;
use amqpwire::frame::{
    FrameBody, FrameDecoder, FrameEncoder, FrameErrorKind, FrameHeader, HeaderError,
    ProtocolHeader, StreamItem,
};
use amqpwire::message::{Message, Payload};
use amqpwire::types::{Handle, Performative, SaslFrameBody, SaslInit, SequenceNo, Transfer};
use bytes::{Bytes, BytesMut};

fn first_error(bytes: &[u8], max: u32) -> FrameErrorKind {
    let mut d = FrameDecoder::new(max);
    d.push(bytes);
    loop {
        match d.next_item() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {bytes:02x?}"),
            Err(e) => return e.kind,
        }
    }
}

#[test]
fn reads_the_three_protocol_headers() {
    for (h, id) in [(ProtocolHeader::AMQP, 0), (ProtocolHeader::TLS, 2), (ProtocolHeader::SASL, 3)]
    {
        let b = h.to_bytes();
        assert_eq!(b, [b'A', b'M', b'Q', b'P', id, 1, 0, 0]);
        assert_eq!(ProtocolHeader::parse(&b), Ok(h));
    }
}

#[test]
fn names_what_arrived_instead_of_a_header() {
    let http = first_error(b"GET /$iothub/websocket HTTP/1.1\r\n", 1 << 20);
    assert!(matches!(http, FrameErrorKind::Header(HeaderError::NotAmqp(_))));
    assert!(http.to_string().contains("HTTP"), "{http}");
    let tls = first_error(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc], 1 << 20);
    assert!(tls.to_string().contains("TLS ClientHello"), "{tls}");
    let old = first_error(b"AMQP\x00\x00\x09\x01", 1 << 20);
    assert!(matches!(old, FrameErrorKind::Header(HeaderError::Version(_))));
    assert!(old.to_string().contains("0-9-1"), "{old}");
    let id = first_error(b"AMQP\x01\x01\x00\x00", 1 << 20);
    assert_eq!(id, FrameErrorKind::Header(HeaderError::UnknownProtocolId(1)));
}

#[test]
fn rejects_bad_frame_headers() {
    let mut s = ProtocolHeader::AMQP.to_bytes().to_vec();
    for size in 0u32..8 {
        let mut b = s.clone();
        b.extend_from_slice(&size.to_be_bytes());
        b.extend_from_slice(&[2, 0, 0, 0]);
        // Sizes 0 to 7 are a framing error, never a panic (fe2o3 panicked on 4 to 7).
        assert_eq!(first_error(&b, 1 << 20), FrameErrorKind::SizeTooSmall(size));
    }
    s.extend_from_slice(&[0, 0, 0, 8, 1, 0, 0, 0]);
    assert_eq!(first_error(&s, 1 << 20), FrameErrorKind::DoffTooSmall(1));
    let b = [b'A', b'M', b'Q', b'P', 0, 1, 0, 0, 0, 0, 0, 8, 3, 0, 0, 0];
    assert_eq!(first_error(&b, 1 << 20), FrameErrorKind::DoffBeyondSize { doff: 3, size: 8 });
    let b = [b'A', b'M', b'Q', b'P', 0, 1, 0, 0, 0, 0, 2, 1, 2, 0, 0, 0];
    assert_eq!(first_error(&b, 512), FrameErrorKind::TooLarge { size: 513, max: 512 });
}

#[test]
fn refuses_an_oversized_frame_before_buffering_it() {
    let mut d = FrameDecoder::new(1024).frames_first();
    d.push(&[0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0]);
    assert!(matches!(d.next_item(), Err(e) if matches!(e.kind, FrameErrorKind::TooLarge { .. })));
    // A decoder that failed stays failed, with the same error.
    let again = d.next_item().expect_err("still failed");
    assert!(matches!(again.kind, FrameErrorKind::TooLarge { size: 0x7fff_ffff, max: 1024 }));
}

#[test]
fn does_not_allocate_on_the_word_of_a_frame_header() {
    // A frame claiming 3 GB, with no size limit (as when decoding a capture): the decoder
    // waits for the bytes without reserving room for them (a fuzzer found this).
    let mut d = FrameDecoder::new(u32::MAX).frames_first();
    d.push(&[0xba, 0xba, 0xba, 0xba, 2, 0, 0, 0, 1, 2, 3]);
    assert_eq!(d.next_item().expect("incomplete, not an error"), None);
    let info = allocation_counter::measure(|| {
        let mut d = FrameDecoder::new(u32::MAX).frames_first();
        d.push(&[0xba, 0xba, 0xba, 0xba, 2, 0, 0, 0, 1, 2, 3]);
        let _ = d.next_item();
    });
    assert!(info.bytes_max < 1 << 20, "{info:?}");
}

/// An empty frame (a heartbeat) of `size` bytes: doff 2 and padding would not parse, so
/// the extra bytes are an extended header (doff grows with it).
fn frame_of(size: usize) -> Vec<u8> {
    assert!(size % 4 == 0 && size <= 1020);
    let mut f = (size as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&[(size / 4) as u8, 0, 0, 0]);
    f.resize(size, 0xab);
    f
}

/// The items a decoder returns from the bytes a caller read into its own buffer.
fn drain_into(d: &mut FrameDecoder, buf: &mut BytesMut) -> Vec<Bytes> {
    let mut frames = Vec::new();
    d.swap_buffer(buf);
    while let Some(item) = d.next_item().expect("valid") {
        if let StreamItem::Frame(f) = item {
            frames.push(f.bytes);
        }
    }
    d.swap_buffer(buf);
    frames
}

fn inside(b: &Bytes, range: std::ops::Range<usize>) -> bool {
    let p = b.as_ptr() as usize;
    range.contains(&p) && p + b.len() <= range.end
}

#[test]
fn frames_read_into_a_callers_buffer_are_not_copied_even_across_reads() {
    let mut d = FrameDecoder::new(1024).frames_first();
    let (a, b) = (frame_of(40), frame_of(100));
    let mut buf = BytesMut::with_capacity(4096);
    let start = buf.as_ptr() as usize;
    let mem = start..start + 4096;
    // A whole frame and the first 30 bytes of the next, as one read.
    buf.extend_from_slice(&a);
    buf.extend_from_slice(&b[..30]);
    let got = drain_into(&mut d, &mut buf);
    assert_eq!(got, vec![Bytes::from(a.clone())]);
    assert!(inside(&got[0], mem.clone()), "the whole frame is a slice of the read buffer");
    assert_eq!(&buf[..], &b[..30], "the start of the next stays with the caller");
    assert_eq!(d.buffered(), 0);
    assert_eq!(d.wanted(), 70, "the frame header said 100 bytes; 30 came");
    // The next read completes it in place: the straddling frame is not copied either.
    buf.extend_from_slice(&b[30..]);
    let got = drain_into(&mut d, &mut buf);
    assert_eq!(got, vec![Bytes::from(b)]);
    assert!(inside(&got[0], mem), "the frame that straddled two reads is still in place");
    assert!(buf.is_empty());
    assert_eq!(d.wanted(), 0);
}

#[test]
fn bytes_pushed_before_come_ahead_of_a_callers_buffer() {
    let mut d = FrameDecoder::new(1024).frames_first();
    let f = frame_of(64);
    d.push(&f[..10]);
    let mut buf = BytesMut::from(&f[10..]);
    let got = drain_into(&mut d, &mut buf);
    assert_eq!(got, vec![Bytes::from(f)]);
    assert!(buf.is_empty() && d.buffered() == 0);
}

#[test]
fn what_a_callers_buffer_wants_is_bounded_by_what_came() {
    // A header claiming 3 GB with no size limit: the caller is asked for at most 64 KiB
    // more, not 3 GB.
    let mut d = FrameDecoder::new(u32::MAX).frames_first();
    let mut buf = BytesMut::from(&[0xba, 0xba, 0xba, 0xba, 2, 0, 0, 0, 1, 2, 3][..]);
    assert!(drain_into(&mut d, &mut buf).is_empty());
    assert_eq!(d.wanted(), 64 * 1024);
    assert_eq!(buf.len(), 11, "the partial frame stays with the caller");
    // Once 1 MiB of it has come, up to as much again is worth making room for.
    buf.resize(1 << 20, 0);
    assert!(drain_into(&mut d, &mut buf).is_empty());
    assert_eq!(d.wanted(), 1 << 20);
}

#[test]
fn keeps_the_extended_header_and_finds_the_body() {
    // doff 3: four bytes of extended header, then an empty body: a heartbeat.
    let mut d = FrameDecoder::new(1024).frames_first();
    d.push(&[0, 0, 0, 12, 3, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef]);
    let Some(StreamItem::Frame(f)) = d.next_item().expect("frame") else { panic!() };
    assert_eq!(f.extended_header(), &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(f.header.channel, 5);
    assert_eq!(f.decode(DecodeOptions::STRICT).expect("empty").body, FrameBody::Empty);
}

#[test]
fn header_round_trips() {
    let h = FrameHeader::parse(&[0, 0, 1, 0, 2, 1, 0, 7]).expect("valid");
    assert_eq!(h.size, 256);
    assert_eq!(h.channel, 7);
    assert_eq!(h.to_bytes(), [0, 0, 1, 0, 2, 1, 0, 7]);
}

#[test]
fn sasl_frames_allow_large_tokens() {
    // A SASL PLAIN response with a long SAS token (pitfall: 512-byte limits before open).
    let token = vec![b'x'; 4000];
    let init = SaslFrameBody::Init(SaslInit {
        mechanism: "PLAIN".into(),
        initial_response: Some(Bytes::from(token)),
        hostname: None,
    });
    let mut out = Vec::new();
    FrameEncoder::new(8192).encode_sasl(&init, &mut out).expect("fits");
    assert!(FrameEncoder::new(512).encode_sasl(&init, &mut Vec::new()).is_err());
    let mut d = FrameDecoder::new(8192).frames_first();
    d.push(&out);
    let Some(StreamItem::Frame(f)) = d.next_item().expect("frame") else { panic!() };
    assert_eq!(f.decode(DecodeOptions::STRICT).expect("sasl").body, FrameBody::Sasl(init));
}

fn telemetry(body_len: usize) -> (Transfer, Message) {
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(42));
    t.delivery_tag = Some(Bytes::from_static(b"\x00\x00\x00\x2a"));
    t.message_format = Some(0);
    let mut m = Message::with_data(Bytes::from(vec![0x5a; body_len]));
    m.properties = Some(amqpwire::types::Properties {
        to: Some("/devices/d/messages/events".into()),
        ..Default::default()
    });
    (t, m)
}

fn reassemble(stream: &[u8]) -> (usize, Vec<u8>, Vec<Transfer>) {
    let mut d = FrameDecoder::new(u32::MAX).frames_first();
    d.push(stream);
    let mut payload = Vec::new();
    let mut frames = Vec::new();
    while let Some(StreamItem::Frame(f)) = d.next_item().expect("frame") {
        let FrameBody::Amqp { performative: Performative::Transfer(t), payload: p } =
            f.decode(DecodeOptions::STRICT).expect("transfer").body
        else {
            panic!()
        };
        payload.extend_from_slice(&p);
        frames.push(t);
    }
    (frames.len(), payload, frames)
}

#[test]
fn encodes_a_message_transfer_in_one_frame_without_a_temporary() {
    let (t, m) = telemetry(100);
    let mut out = Payload::default();
    let n = FrameEncoder::new(65536).encode_message(1, &t, &m, &mut out).expect("fits");
    assert_eq!(n, 1);
    let (frames, payload, ts) = reassemble(&out.to_vec());
    assert_eq!(frames, 1);
    assert_eq!(ts[0], t);
    assert_eq!(Message::decode(&Bytes::from(payload)).expect("message"), m);
}

#[test]
fn splits_a_large_message_at_max_frame_size_and_references_its_body() {
    let (t, m) = telemetry(64 * 1024);
    let body = m.body.as_data().expect("data").clone();
    let mut out = Payload::default();
    let max = 16 * 1024;
    let n = FrameEncoder::new(max).encode_message(3, &t, &m, &mut out).expect("split");
    assert!(n >= 5, "{n} frames");
    // The body was referenced, not copied: the head holds only headers and performatives.
    assert!(out.head.len() < 1024, "head {} bytes", out.head.len());
    assert!(out
        .inserts
        .iter()
        .all(|(_, b)| b.as_ptr() >= body.as_ptr()
            && b.as_ptr() < body.as_ptr().wrapping_add(body.len())));
    let stream = out.to_vec();
    let (frames, payload, ts) = reassemble(&stream);
    assert_eq!(frames, n);
    // 2.7.5: continuation frames omit delivery-id, tag and format; only the last has more=false.
    assert_eq!(ts[0].delivery_id, Some(SequenceNo(42)));
    for (i, tr) in ts.iter().enumerate() {
        assert_eq!(tr.more, i + 1 < n, "more on frame {i}");
        if i > 0 {
            assert_eq!(
                (tr.delivery_id, tr.delivery_tag.is_none(), tr.message_format),
                (None, true, None)
            );
        }
    }
    // No frame exceeds the limit.
    let mut d = FrameDecoder::new(max).frames_first();
    d.push(&stream);
    while d.next_item().expect("every frame within max-frame-size").is_some() {}
    assert_eq!(Message::decode(&Bytes::from(payload)).expect("reassembled"), m);
}

#[test]
fn a_performative_that_cannot_fit_is_refused() {
    let mut t = Transfer::new(Handle(0));
    t.delivery_tag = Some(Bytes::from(vec![1u8; 600]));
    let e = FrameEncoder::new(512)
        .encode_transfer(0, &t, b"x", &mut Vec::new())
        .expect_err("too large");
    assert_eq!(e.max, 512);
}

#[test]
fn a_protocol_header_where_a_frame_is_due_is_named_as_one() {
    // A SASL exchange and the AMQP header after it, read by a decoder not told that a
    // second header comes: it says what it found, not "data offset 0".
    let mut s = ProtocolHeader::SASL.to_bytes().to_vec();
    let init = SaslInit { mechanism: "ANONYMOUS".into(), initial_response: None, hostname: None };
    FrameEncoder::new(512).encode_sasl(&SaslFrameBody::Init(init), &mut s).expect("init");
    let at = s.len() as u64;
    s.extend_from_slice(&ProtocolHeader::AMQP.to_bytes());
    let mut d = FrameDecoder::new(u32::MAX);
    d.push(&s);
    let e = loop {
        match d.next_item() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.offset, at);
    assert_eq!(e.kind, FrameErrorKind::UnexpectedHeader(ProtocolHeader::AMQP));
    assert!(e.to_string().contains("protocol header (AMQP"), "{e}");
    // Told to look for headers, the same stream reads through.
    let mut d = FrameDecoder::new(u32::MAX).sniff_headers(true);
    d.push(&s);
    let mut items = 0;
    while d.next_item().expect("reads").is_some() {
        items += 1;
    }
    assert_eq!(items, 3);
    // A SASL frame header whose size bytes spell "AMQP" is still a frame where it fits the
    // limit, and too large (not a header) where it does not look like one.
    let sasl_shaped = b"AMQP\x02\x01\x00\x00";
    let mut d = FrameDecoder::new(u32::MAX);
    d.push(&ProtocolHeader::AMQP.to_bytes());
    d.push(sasl_shaped);
    assert!(matches!(d.next_item(), Ok(Some(StreamItem::Header { .. }))));
    assert_eq!(d.next_item(), Ok(None), "waits for the rest of a 1 GiB frame");
    assert_eq!(
        first_error(
            &[&ProtocolHeader::AMQP.to_bytes()[..], b"AMQP\x02\x01\x00\x07"].concat(),
            1 << 20
        ),
        FrameErrorKind::TooLarge { size: 0x414d_5150, max: 1 << 20 }
    );
}

#[test]
fn bytes_after_a_tls_header_are_named_tls_not_read_as_frames() {
    // A ClientHello's record header after `AMQP 2 1.0.0` read as a frame header claims
    // about 369 MB; it is TLS, and the error says so.
    let mut s = ProtocolHeader::TLS.to_bytes().to_vec();
    s.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00]);
    let mut d = FrameDecoder::new(u32::MAX);
    d.push(&s);
    assert!(matches!(d.next_item(), Ok(Some(StreamItem::Header { offset: 0, .. }))));
    let e = d.next_item().expect_err("TLS records");
    assert_eq!((e.offset, &e.kind), (8, &FrameErrorKind::TlsFollows));
    assert!(e.to_string().contains("TLS records follow"), "{e}");
    // The header alone is no error: nothing has followed it yet.
    let mut d = FrameDecoder::new(u32::MAX);
    d.push(&ProtocolHeader::TLS.to_bytes());
    assert!(matches!(d.next_item(), Ok(Some(StreamItem::Header { .. }))));
    assert_eq!(d.next_item(), Ok(None));
}

/// A message too large for one frame, written after others already in the buffer (with
/// referenced sections of their own): the one-frame attempt is taken back off and the
/// message split, encoded once, behind what was there.
#[test]
fn a_large_message_after_others_in_the_buffer_splits_behind_them() {
    let (t, small) = telemetry(100);
    let (_, big) = telemetry(64 * 1024);
    let (_, middle) = telemetry(20 * 1024);
    let enc = FrameEncoder::new(16 * 1024);
    let mut out = Payload::default();
    assert_eq!(enc.encode_message(0, &t, &small, &mut out).expect("small"), 1);
    let n = enc.encode_message(0, &t, &middle, &mut out).expect("middle");
    let m = enc.encode_message(0, &t, &big, &mut out).expect("big");
    assert!(n >= 2 && m >= 5, "{n} and {m} frames");
    let (frames, payload, _) = reassemble(&out.to_vec());
    assert_eq!(frames, 1 + n + m);
    let mut want = small.to_vec();
    want.extend_from_slice(&middle.to_vec());
    want.extend_from_slice(&big.to_vec());
    assert_eq!(payload, want);
}

//! Real AMQP 1.0 byte streams that Qpid Proton 0.40.0 (python) and rhea 3.0.5 (node) sent
//! each other over loopback (`tests/fixtures/wire`, described in its README.md; the peers
//! are `tests/peers/proton_peer.py` and `tests/peers/rhea_peer.js`).
//!
//! What is checked, for every capture file:
//! - the Inspector decodes it strictly, with no framing error, truncation, decode error or
//!   warning, covering every byte, and in the frame order the README lists (which an
//!   independent Python tool produced); the streaming `FrameDecoder` fed in small chunks
//!   with the negotiated limits finds the same frames;
//! - the SASL exchange (or its absence) comes in the order the spec fixes;
//! - the lossless decoder re-encodes every frame body (performative, and message sections)
//!   byte for byte;
//! - every typed performative, SASL body and message re-encodes in both layouts and
//!   decodes back to an equal value.
//!
//! And per scenario, that the decoded values are exactly what the peers were told to send:
//! `messages` (every property, header field, annotation, application property type and
//! body kind), `large` (a 320 KiB delivery over 21 frames within max-frame-size 16384),
//! `dispositions` (accepted, rejected with its error, released, pre-settled, and ranges),
//! `heartbeat` (empty frames, idle-time-out 2000) and `filter-dynamic` (a described
//! selector filter kept whole, a dynamic node named by the broker).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use amqpwire::codec::{DecodeOptions, Fmt, Reader, Symbol, Timestamp, Uuid, Value, ValueRef};
use amqpwire::frame::{Frame, FrameBody, FrameDecoder, FrameType, ProtocolId, StreamItem};
use amqpwire::inspect::{DeliveryRecord, FrameRecord, Inspector, Record};
use amqpwire::message::{Body, Message};
use amqpwire::types::{
    AttachSource, AttachTarget, DeliveryState, Header, Layout, MessageId, Open, Performative,
    Properties, Role, SaslCode, SaslFrameBody, SenderSettleMode, SequenceNo, Source, Target,
};
use bytes::Bytes;

// ------------------------------------------------------------------------------ loading

const WIRE_DIR: &str = "tests/fixtures/wire";

/// The client/server pairings that ran every scenario.
const PAIRINGS: [&str; 2] = ["proton-to-rhea", "rhea-to-proton"];

/// 2026-11-22T12:00:00Z, the fixed creation time of the `messages` scenario.
const CREATION_TIME_MS: i64 = 1_795_348_800_000;
const EXPIRY_TIME_MS: i64 = CREATION_TIME_MS + 3_600_000;
const UUID_A: &str = "9c2c3f6e-8d4e-4f43-9d0b-6c1e2a7b5f10";
const UUID_B: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
const LARGE_SIZE: usize = 320 * 1024;
/// `apache.org:selector-filter:string` as a numeric descriptor (0x0000468C:0x00000004).
const SELECTOR_CODE: u64 = 0x0000_468C_0000_0004;
const SELECTOR_SYMBOL: &str = "apache.org:selector-filter:string";

fn wire_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(WIRE_DIR)
}

/// The bytes of one capture file, e.g. `fixture("rhea-to-proton-large.c2s.bin")`.
fn fixture(name: &str) -> Bytes {
    let p = wire_dir().join(name);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// Every capture file name, sorted.
fn capture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(wire_dir())
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no captures in {WIRE_DIR}");
    names
}

/// Every record of a capture, decoded strictly, credentials left as they are (the
/// Inspector masks the SASL PLAIN password by default; see
/// `inspect_all_masks_only_the_sasl_plain_password`).
fn inspect(name: &str) -> Vec<Record> {
    let mut i = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
    i.push(&fixture(name));
    let mut out = Vec::new();
    while let Some(r) = i.next_record() {
        out.push(r);
    }
    out.extend(i.finish());
    out
}

/// The parts of a capture name: `<client>-to-<server>-<scenario>.<c2s|s2c>.bin`.
struct CaptureName<'a> {
    client: &'a str,
    server: &'a str,
    scenario: &'a str,
    c2s: bool,
}

impl<'a> CaptureName<'a> {
    fn parse(name: &'a str) -> Self {
        let (stem, c2s) = if let Some(s) = name.strip_suffix(".c2s.bin") {
            (s, true)
        } else if let Some(s) = name.strip_suffix(".s2c.bin") {
            (s, false)
        } else {
            panic!("{name}: not <pairing>-<scenario>.<c2s|s2c>.bin")
        };
        let (client, rest) = stem.split_once("-to-").unwrap_or_else(|| panic!("{name}: no -to-"));
        let (server, scenario) = rest.split_once('-').unwrap_or_else(|| panic!("{name}"));
        for lib in [client, server] {
            assert!(
                matches!(lib, "proton" | "rhea" | "amqpwire" | "rabbitmq"),
                "{name}: unknown library {lib}"
            );
        }
        Self { client, server, scenario, c2s }
    }

    /// The library that encoded every frame of this file.
    fn sender(&self) -> &'a str {
        if self.c2s {
            self.client
        } else {
            self.server
        }
    }
}

// ------------------------------------------------------------------------------ helpers

fn frame_records(records: &[Record]) -> impl Iterator<Item = &FrameRecord> {
    records.iter().filter_map(|r| match r {
        Record::Frame(f) => Some(&**f),
        _ => None,
    })
}

fn decoded(f: &FrameRecord) -> &Frame {
    f.frame.as_ref().unwrap_or_else(|e| panic!("frame at {}: {e}", f.offset))
}

/// The performatives of a capture in order, with their frame records.
fn performatives(records: &[Record]) -> Vec<(&FrameRecord, &Performative)> {
    frame_records(records)
        .filter_map(|f| match &decoded(f).body {
            FrameBody::Amqp { performative, .. } => Some((f, performative)),
            _ => None,
        })
        .collect()
}

fn body_of(f: &FrameRecord) -> Bytes {
    f.raw.slice(usize::from(f.header.doff) * 4..)
}

fn the_open(records: &[Record]) -> &Open {
    let opens: Vec<&Open> = performatives(records)
        .into_iter()
        .filter_map(|(_, p)| match p {
            Performative::Open(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(opens.len(), 1, "one open per connection");
    opens[0]
}

fn attach_named<'r>(records: &'r [Record], name: &str) -> &'r amqpwire::types::Attach {
    performatives(records)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Attach(a) if &*a.name == name => Some(a),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no attach named {name}"))
}

fn source_of(a: &amqpwire::types::Attach) -> &Source {
    match &a.source {
        Some(AttachSource::Source(s)) => s,
        other => panic!("attach {}: source {other:?}", a.name),
    }
}

fn target_of(a: &amqpwire::types::Attach) -> &Target {
    match &a.target {
        Some(AttachTarget::Target(t)) => t,
        other => panic!("attach {}: target {other:?}", a.name),
    }
}

/// One complete delivery: the fields of its first transfer and the decoded message.
struct Delivery<'r> {
    handle: u32,
    id: u32,
    tag: Bytes,
    settled: bool,
    /// The transfer frames, first to last.
    frames: Vec<&'r FrameRecord>,
    record: &'r DeliveryRecord,
}

impl Delivery<'_> {
    fn message(&self) -> &Message {
        self.record.message.as_ref().expect("message decodes")
    }

    fn message_id(&self) -> String {
        match self.message().properties.as_ref().and_then(|p| p.message_id.as_ref()) {
            Some(id) => id.to_string(),
            None => panic!("delivery {} has no message-id", self.id),
        }
    }
}

/// Every complete delivery of a capture, in the order they completed.
fn deliveries(records: &[Record]) -> Vec<Delivery<'_>> {
    let mut open: HashMap<(u16, u32), Vec<&FrameRecord>> = HashMap::new();
    let mut out = Vec::new();
    for f in frame_records(records) {
        let Frame {
            channel,
            body: FrameBody::Amqp { performative: Performative::Transfer(t), .. },
        } = decoded(f)
        else {
            continue;
        };
        let frames = open.entry((*channel, t.handle.0)).or_default();
        frames.push(f);
        if t.more {
            continue;
        }
        let frames = open.remove(&(*channel, t.handle.0)).expect("entry just used");
        let Performative::Transfer(first) = first_performative(frames[0]) else { unreachable!() };
        out.push(Delivery {
            handle: first.handle.0,
            id: first.delivery_id.expect("first transfer has a delivery-id").0,
            tag: first.delivery_tag.clone().expect("first transfer has a delivery-tag"),
            settled: first.settled.unwrap_or(false),
            frames,
            record: f.delivery.as_ref().expect("last transfer carries the delivery"),
        });
    }
    assert!(open.is_empty(), "deliveries left incomplete: {:?}", open.keys());
    out
}

fn first_performative(f: &FrameRecord) -> &Performative {
    match &decoded(f).body {
        FrameBody::Amqp { performative, .. } => performative,
        other => panic!("not a performative: {other:?}"),
    }
}

/// Reads every value in `buf` with the lossless decoder; returns them and the bytes they
/// re-encode to.
fn lossless(buf: &[u8]) -> (Vec<Value>, Vec<u8>) {
    let mut r = Reader::new(buf, DecodeOptions::STRICT);
    let mut values = Vec::new();
    let mut out = Vec::with_capacity(buf.len());
    while !r.is_empty() {
        let v = Value::read(&mut r).unwrap_or_else(|e| panic!("lossless decode: {e}"));
        v.encode(&mut out);
        values.push(v);
    }
    (values, out)
}

fn sym(s: &str) -> Value {
    Value::Symbol(Symbol::from(s), Fmt::Auto)
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse(s).expect("uuid literal")
}

/// The frame as the README's frame lists (from `tests/peers/amqp_frames.py`) name it.
fn describe(r: &Record) -> String {
    match r {
        Record::Header { header, .. } => format!(
            "protocol-header {} {}.{}.{}",
            header.id.name().expect("known protocol id"),
            header.major,
            header.minor,
            header.revision
        ),
        Record::Frame(f) => match &decoded(f).body {
            FrameBody::Empty => "empty-frame (heartbeat)".to_owned(),
            FrameBody::Sasl(s) => s.name().to_owned(),
            FrameBody::Amqp { performative: Performative::Disposition(d), .. } => match &d.state {
                Some(s) => format!("disposition {}", s.name()),
                None => "disposition".to_owned(),
            },
            FrameBody::Amqp { performative, .. } => performative.name().to_owned(),
        },
        other => panic!("unexpected record {other:?}"),
    }
}

/// `(file name, size, expanded frame list)` for each file the README lists.
fn readme_listing() -> Vec<(String, usize, Vec<String>)> {
    let text = std::fs::read_to_string(wire_dir().join("README.md")).expect("README.md");
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("- `") else { continue };
        let Some((name, rest)) = rest.split_once("` (") else { continue };
        let (size, rest) = rest.split_once(" bytes)").expect("size in bytes");
        let (_, frames) = rest.split_once("frames: ").expect("frame list");
        let frames = frames.strip_suffix('.').expect("list ends with a full stop");
        let mut expanded = Vec::new();
        for item in frames.split(", ") {
            match item.rsplit_once(" x") {
                Some((label, n)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                    let n: usize = n.parse().expect("count");
                    expanded.extend(std::iter::repeat_n(label.to_owned(), n));
                }
                _ => expanded.push(item.to_owned()),
            }
        }
        out.push((name.to_owned(), size.parse().expect("size"), expanded));
    }
    out
}

// ------------------------------------------------------------- 1. clean, complete decoding

#[test]
fn every_capture_decodes_strictly_without_errors_or_warnings() {
    for name in capture_names() {
        let bytes = fixture(&name);
        let records = inspect(&name);
        assert!(
            matches!(records.first(), Some(Record::Header { offset: 0, .. })),
            "{name}: does not start with a protocol header"
        );
        assert_eq!(&bytes[..4], b"AMQP", "{name}");
        // The records tile the file: no byte skipped, none left over.
        let mut at = 0u64;
        for r in &records {
            match r {
                Record::Header { offset, .. } => {
                    assert_eq!(*offset, at, "{name}: header");
                    at += 8;
                }
                Record::Frame(f) => {
                    assert_eq!(f.offset, at, "{name}: frame");
                    assert_eq!(f.raw.len(), f.header.size as usize, "{name}@{}", f.offset);
                    assert_eq!(&f.raw[..8], &f.header.to_bytes(), "{name}@{}", f.offset);
                    assert_eq!(f.header.doff, 2, "{name}@{}: extended header", f.offset);
                    let frame =
                        f.frame.as_ref().unwrap_or_else(|e| panic!("{name}@{}: {e}", f.offset));
                    assert!(f.warnings.is_empty(), "{name}@{}: {:?}", f.offset, f.warnings);
                    assert!(!f.aborted, "{name}@{}: aborted transfer", f.offset);
                    if frame.body != FrameBody::Empty {
                        assert!(f.tree.is_some(), "{name}@{}: no annotated tree", f.offset);
                    }
                    if let Some(d) = &f.delivery {
                        let m = d.message.as_ref();
                        assert!(m.is_ok(), "{name}@{}: message: {:?}", f.offset, m.err());
                        assert!(d.warnings.is_empty(), "{name}@{}: {:?}", f.offset, d.warnings);
                        let m = m.expect("checked");
                        assert!(m.unknown_sections.is_empty(), "{name}@{}", f.offset);
                        assert!(!d.sections.is_empty(), "{name}@{}: no sections", f.offset);
                    }
                    assert!(!f.redacted, "{name}@{}", f.offset);
                    let at_usize = at as usize;
                    assert!(
                        f.raw == bytes[at_usize..at_usize + f.raw.len()],
                        "{name}@{}: raw bytes differ from the file",
                        f.offset
                    );
                    at += f.raw.len() as u64;
                }
                Record::Error { error, .. } => panic!("{name}: framing error {error:?}"),
                Record::Truncated { offset, rest, .. } => {
                    panic!("{name}: truncated at {offset} with {} bytes left", rest.len())
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(at, bytes.len() as u64, "{name}: records do not cover the file");
        // Every transfer that said more=true was completed.
        deliveries(&records);
    }
}

#[test]
fn readme_frame_lists_match_the_decoded_frames() {
    let listing = readme_listing();
    let listed: Vec<&str> = listing.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(listed.len(), 40, "the README lists 40 captures");
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, capture_names(), "README and directory list different files");
    for (name, size, frames) in &listing {
        assert_eq!(fixture(name).len(), *size, "{name}: size");
        let decoded: Vec<String> = inspect(name).iter().map(describe).collect();
        assert_eq!(&decoded, frames, "{name}: frame sequence");
    }
}

#[test]
fn streaming_decoder_with_negotiated_limits_finds_the_same_frames() {
    // The connection's view: a header first, another after the SASL exchange, frames no
    // larger than this side advertised, bytes arriving in odd-sized chunks.
    for name in capture_names() {
        let cap = CaptureName::parse(&name);
        let bytes = fixture(&name);
        let records = inspect(&name);
        let peer = format!(
            "{}-to-{}-{}.{}.bin",
            cap.client,
            cap.server,
            cap.scenario,
            if cap.c2s { "s2c" } else { "c2s" }
        );
        // Frames in this file are limited by what the receiving peer put in its open.
        let limit = the_open(&inspect(&peer)).max_frame_size;
        // The AMQP header follows this side's last SASL frame (one sasl-init, or the last
        // sasl-response of a SCRAM exchange; the server's outcome).
        let last_sasl = frame_records(&records)
            .filter(|f| f.header.frame_type == FrameType::SASL)
            .map(|f| f.offset)
            .last();
        let mut d = FrameDecoder::new(512);
        let mut items = Vec::new();
        for chunk in bytes.chunks(7) {
            d.push(chunk);
            while let Some(item) = d.next_item().unwrap_or_else(|e| panic!("{name}: {e:?}")) {
                if let StreamItem::Frame(raw) = &item {
                    let frame = raw.decode(DecodeOptions::STRICT).expect("frame decodes");
                    match &frame.body {
                        FrameBody::Sasl(_) if Some(raw.offset) == last_sasl => d.expect_header(),
                        FrameBody::Amqp { performative: Performative::Open(_), .. } => {
                            d.set_max_frame_size(limit)
                        }
                        _ => {}
                    }
                    items.push((raw.offset, Some(frame)));
                } else if let StreamItem::Header { offset, .. } = item {
                    items.push((offset, None));
                }
            }
        }
        assert_eq!(d.buffered(), 0, "{name}: bytes left in the decoder");
        let expected: Vec<(u64, Option<Frame>)> = records
            .iter()
            .map(|r| match r {
                Record::Header { offset, .. } => (*offset, None),
                Record::Frame(f) => (f.offset, Some(decoded(f).clone())),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        assert_eq!(items, expected, "{name}");
    }
}

#[test]
fn sasl_exchanges_come_in_order_before_the_amqp_header() {
    for name in capture_names() {
        let cap = CaptureName::parse(&name);
        let records = inspect(&name);
        let first_header = |i: usize| match &records[i] {
            Record::Header { header, .. } => header.id,
            other => panic!("{name}: record {i} is {other:?}, not a protocol header"),
        };
        let sasl = |i: usize| match &records[i] {
            Record::Frame(f) => {
                assert_eq!(f.header.frame_type, FrameType::SASL, "{name}: record {i}");
                assert_eq!(f.header.channel, 0, "{name}: record {i}");
                match &decoded(f).body {
                    FrameBody::Sasl(s) => s.clone(),
                    other => panic!("{name}: record {i} is {other:?}"),
                }
            }
            other => panic!("{name}: record {i} is {other:?}"),
        };
        let amqp_from = if cap.scenario == "no-sasl" {
            assert_eq!(first_header(0), ProtocolId::AMQP, "{name}");
            1
        } else {
            assert_eq!(first_header(0), ProtocolId::SASL, "{name}");
            let (mech, plain, rounds) = match (cap.scenario, cap.server) {
                ("sasl-plain", _) => ("PLAIN", Some(&b"\0alice\0secret"[..]), 0),
                (_, "rabbitmq") => ("PLAIN", Some(&b"\0guest\0guest"[..]), 0),
                // SCRAM: two challenges and two responses (the second response empty).
                ("sasl-scram", _) => ("SCRAM-SHA-256", None, 2),
                _ => ("ANONYMOUS", None, 0),
            };
            if cap.c2s {
                let SaslFrameBody::Init(init) = sasl(1) else { panic!("{name}: no sasl-init") };
                assert_eq!(init.mechanism.as_str(), mech, "{name}");
                if let Some(plain) = plain {
                    assert_eq!(init.initial_response.as_deref(), Some(plain), "{name}");
                }
                for i in 2..2 + rounds {
                    assert!(matches!(sasl(i), SaslFrameBody::Response(_)), "{name}: record {i}");
                }
                assert_eq!(first_header(2 + rounds), ProtocolId::AMQP, "{name}");
                3 + rounds
            } else {
                let SaslFrameBody::Mechanisms(m) = sasl(1) else {
                    panic!("{name}: no sasl-mechanisms")
                };
                let offered: Vec<&str> =
                    m.sasl_server_mechanisms.iter().map(Symbol::as_str).collect();
                assert!(offered.contains(&mech), "{name}: {mech} not in {offered:?}");
                for i in 2..2 + rounds {
                    assert!(matches!(sasl(i), SaslFrameBody::Challenge(_)), "{name}: record {i}");
                }
                let SaslFrameBody::Outcome(o) = sasl(2 + rounds) else {
                    panic!("{name}: no outcome")
                };
                assert_eq!(o.code, SaslCode::OK, "{name}");
                assert_eq!(first_header(3 + rounds), ProtocolId::AMQP, "{name}");
                4 + rounds
            }
        };
        // After the AMQP header: open first, then AMQP frames only, no more headers.
        for (i, r) in records.iter().enumerate().skip(amqp_from) {
            let Record::Frame(f) = r else { panic!("{name}: record {i} is {r:?}") };
            assert_eq!(f.header.frame_type, FrameType::AMQP, "{name}: record {i}");
            if i == amqp_from {
                assert!(
                    matches!(
                        decoded(f).body,
                        FrameBody::Amqp { performative: Performative::Open(_), .. }
                    ),
                    "{name}: first AMQP frame is not open"
                );
            }
        }
    }
}

// --------------------------------------------------------------------- 2. lossless bytes

#[test]
fn decode_json_lines_encode_back_to_every_capture_byte_for_byte() {
    for name in capture_names() {
        let mut text = String::new();
        for r in &inspect(&name) {
            amqpwire::inspect::json::write_record_json(r, &mut text);
        }
        let back =
            amqpwire::script::encode::encode_lines(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(back == fixture(&name), "{name}: the bytes differ");
    }
}

/// `decode --json` then `encode` of `bytes`, through the library.
fn json_round_trip(bytes: &[u8]) -> (Vec<Record>, Vec<u8>) {
    let mut i = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
    i.push(bytes);
    let mut records: Vec<Record> = std::iter::from_fn(|| i.next_record()).collect();
    records.extend(i.finish());
    let mut text = String::new();
    for r in &records {
        amqpwire::inspect::json::write_record_json(r, &mut text);
    }
    let back = amqpwire::script::encode::encode_lines(&text).unwrap_or_else(|e| panic!("{e}"));
    (records, back)
}

#[test]
fn streams_that_break_off_or_cannot_be_split_encode_back_byte_for_byte() {
    for name in capture_names() {
        let whole = fixture(&name);
        // Cut anywhere: the last item is left unfinished (or, at a boundary, nothing is).
        for cut in [whole.len() / 3, whole.len() / 2, whole.len() - 1] {
            let (records, back) = json_round_trip(&whole[..cut]);
            assert!(back == whole[..cut], "{name} cut at {cut}: the bytes differ");
            assert!(
                matches!(records.last(), Some(Record::Truncated { rest, .. }) if !rest.is_empty())
                    || matches!(records.last(), Some(Record::Frame(_) | Record::Header { .. })),
                "{name} cut at {cut}"
            );
        }
        // A frame header too small for a frame, at a frame boundary in the middle: what
        // follows cannot be split, and is kept as it is.
        let middle = inspect(&name)
            .iter()
            .filter_map(|r| match r {
                Record::Frame(f) => Some(f.offset as usize),
                _ => None,
            })
            .min_by_key(|o| o.abs_diff(whole.len() / 2))
            .expect("a frame");
        let mut broken = whole[..middle].to_vec();
        broken.extend_from_slice(&[0, 0, 0, 4, 2, 0, 0, 0]);
        broken.extend_from_slice(&whole[middle..]);
        let (records, back) = json_round_trip(&broken);
        assert!(back == broken, "{name} broken at {middle}: the bytes differ");
        match records.last() {
            Some(Record::Error { error, rest, redacted: false }) => {
                assert_eq!(error.offset, middle as u64, "{name}");
                assert_eq!(rest.len(), broken.len() - middle, "{name}");
            }
            other => panic!("{name} broken at {middle}: {other:?}"),
        }
    }
}

#[test]
fn lossless_decoder_reencodes_every_frame_body_byte_for_byte() {
    for name in capture_names() {
        let records = inspect(&name);
        for f in frame_records(&records) {
            let at = f.offset;
            let body = body_of(f);
            match &decoded(f).body {
                FrameBody::Empty => assert!(body.is_empty()),
                FrameBody::Sasl(_) => {
                    let (values, out) = lossless(&body);
                    assert_eq!(values.len(), 1, "{name}@{at}");
                    assert_eq!(out, body, "{name}@{at}");
                }
                FrameBody::Amqp { performative, payload } => {
                    // The performative alone.
                    let (_, used) = Performative::decode(&body, DecodeOptions::STRICT)
                        .unwrap_or_else(|e| panic!("{name}@{at}: {e}"));
                    assert_eq!(&body[used..], &payload[..], "{name}@{at}: payload split");
                    let (values, out) = lossless(&body[..used]);
                    assert_eq!(values.len(), 1, "{name}@{at}");
                    assert_eq!(out, &body[..used], "{name}@{at}: {}", performative.name());
                    if !matches!(performative, Performative::Transfer(_)) {
                        assert!(payload.is_empty(), "{name}@{at}");
                        continue;
                    }
                    // A whole delivery in one frame: the body, value by value.
                    if let Some(d) = f.delivery.as_ref().filter(|d| d.frames == 1) {
                        let (values, out) = lossless(&body);
                        assert_eq!(values.len(), 1 + d.sections.len(), "{name}@{at}");
                        assert_eq!(out, body, "{name}@{at}: transfer and message");
                    }
                }
            }
        }
        // Split deliveries: the reassembled message, section by section.
        for d in deliveries(&records).iter().filter(|d| d.frames.len() > 1) {
            let (values, out) = lossless(&d.record.payload);
            assert_eq!(values.len(), d.record.sections.len(), "{name}: delivery {}", d.id);
            assert!(out == d.record.payload, "{name}: delivery {} re-encodes differently", d.id);
        }
    }
}

// ---------------------------------------------------------------- 3. typed round trips

#[test]
fn typed_performatives_sasl_bodies_and_messages_round_trip_in_both_layouts() {
    let mut seen = BTreeMap::<&str, usize>::new();
    for name in capture_names() {
        let records = inspect(&name);
        for f in frame_records(&records) {
            let at = f.offset;
            match &decoded(f).body {
                FrameBody::Empty => {}
                FrameBody::Amqp { performative, .. } => {
                    *seen.entry(performative.name()).or_default() += 1;
                    for layout in [Layout::Compact, Layout::AllFields] {
                        let mut buf = Vec::new();
                        performative.encode_with(layout, &mut buf);
                        assert_eq!(buf.len(), performative.encoded_len_with(layout));
                        let (back, used) = Performative::decode(&buf, DecodeOptions::STRICT)
                            .unwrap_or_else(|e| panic!("{name}@{at} {layout:?}: {e}"));
                        assert_eq!(used, buf.len(), "{name}@{at} {layout:?}");
                        assert_eq!(&back, performative, "{name}@{at} {layout:?}");
                    }
                }
                FrameBody::Sasl(s) => {
                    *seen.entry(s.name()).or_default() += 1;
                    for layout in [Layout::Compact, Layout::AllFields] {
                        let mut buf = Vec::new();
                        s.encode_with(layout, &mut buf);
                        assert_eq!(buf.len(), s.encoded_len_with(layout));
                        let mut r = Reader::new(&buf, DecodeOptions::STRICT);
                        let back = SaslFrameBody::read(&mut r)
                            .unwrap_or_else(|e| panic!("{name}@{at} {layout:?}: {e}"));
                        assert!(r.is_empty(), "{name}@{at} {layout:?}: trailing bytes");
                        assert_eq!(&back, s, "{name}@{at} {layout:?}");
                    }
                }
            }
            if let Some(d) = &f.delivery {
                let m = d.message.as_ref().expect("message decodes");
                let bytes = Bytes::from(m.to_vec());
                assert_eq!(bytes.len(), m.encoded_len(), "{name}@{at}");
                let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}@{at}: {e}"));
                assert_eq!(&back, m, "{name}@{at}: message");
            }
        }
    }
    // Every performative and every SASL body the captures can hold was exercised.
    for p in [
        "open",
        "begin",
        "attach",
        "flow",
        "transfer",
        "disposition",
        "detach",
        "end",
        "close",
        "sasl-mechanisms",
        "sasl-init",
        "sasl-outcome",
    ] {
        assert!(seen.get(p).copied().unwrap_or(0) > 0, "no {p} in the captures");
    }
}

// ------------------------------------------------------------------- 4. messages scenario

/// Properties common to the first three messages (`commonProperties` / `common`).
fn common_properties(n: u32, subject: &str, content_type: &str) -> Properties {
    Properties {
        to: Some("q.messages".into()),
        subject: Some(subject.into()),
        reply_to: Some("q.replies".into()),
        content_type: Some(Symbol::from(content_type)),
        content_encoding: Some(Symbol::from("identity")),
        creation_time: Some(Timestamp(CREATION_TIME_MS)),
        absolute_expiry_time: Some(Timestamp(EXPIRY_TIME_MS)),
        group_id: Some("group-a".into()),
        group_sequence: Some(SequenceNo(n)),
        ..Properties::default()
    }
}

fn check_rich_messages(name: &str, ds: &[Delivery<'_>]) {
    assert_eq!(ds.len(), 5, "{name}: five messages");
    let m: Vec<&Message> = ds.iter().map(Delivery::message).collect();
    let ctx = |i: usize| format!("{name}: message {}", i + 1);

    // 1: data body, string ids, every application-property type.
    assert_eq!(
        m[0].header,
        Some(Header {
            durable: true,
            priority: 7,
            ttl: Some(60_000),
            first_acquirer: false,
            delivery_count: 0
        }),
        "{}",
        ctx(0)
    );
    assert_eq!(
        m[0].properties,
        Some(Properties {
            message_id: Some(MessageId::String("msg-1".into())),
            correlation_id: Some(MessageId::String("corr-1".into())),
            ..common_properties(1, "data-body", "application/octet-stream")
        }),
        "{}",
        ctx(0)
    );
    let ann = m[0].message_annotations.as_ref().expect("message annotations");
    assert_eq!(
        ann.to_pairs(),
        vec![(sym("x-opt-foo"), Value::from("bar")), (sym("x-opt-count"), Value::from(42i32))],
        "{}",
        ctx(0)
    );
    let ap = m[0].application_properties.as_ref().expect("application properties");
    assert_eq!(ap.len(), 10, "{}", ctx(0));
    let uuid_a = uuid(UUID_A);
    let expected: [(&str, ValueRef<'_>); 10] = [
        ("a-string", ValueRef::String("text")),
        ("an-int", ValueRef::Int(-7)),
        ("a-long", ValueRef::Long(1_234_567_890_123)),
        ("a-double", ValueRef::Double(3.25)),
        ("a-boolean", ValueRef::Boolean(true)),
        ("a-null", ValueRef::Null),
        ("a-timestamp", ValueRef::Timestamp(Timestamp(CREATION_TIME_MS))),
        ("a-uuid", ValueRef::Uuid(uuid_a)),
        ("a-binary", ValueRef::Binary(&[1, 2, 3, 4])),
        ("a-symbol", ValueRef::Symbol("sym")),
    ];
    for (key, want) in expected {
        assert_eq!(ap.get(key), Some(want), "{}: application property {key}", ctx(0));
    }
    // In that order, with string keys.
    let keys: Vec<Value> = ap.to_pairs().into_iter().map(|(k, _)| k).collect();
    let want_keys: Vec<Value> = expected.iter().map(|(k, _)| Value::from(*k)).collect();
    assert_eq!(keys, want_keys, "{}", ctx(0));
    assert!(keys.iter().all(|k| matches!(k, Value::String(..))), "{}", ctx(0));
    let data: Vec<u8> = (0..16).collect();
    assert_eq!(m[0].body.as_data().map(|b| &b[..]), Some(&data[..]), "{}", ctx(0));

    // 2: amqp-value string, ulong message-id, uuid correlation-id.
    assert_eq!(
        m[1].header,
        Some(Header { durable: false, priority: 4, ttl: Some(30_000), ..Header::default() }),
        "{}",
        ctx(1)
    );
    assert_eq!(
        m[1].properties,
        Some(Properties {
            message_id: Some(MessageId::Ulong(2)),
            correlation_id: Some(MessageId::Uuid(uuid(UUID_B))),
            ..common_properties(2, "string-body", "text/plain")
        }),
        "{}",
        ctx(1)
    );
    let ann = m[1].message_annotations.as_ref().expect("message annotations");
    assert_eq!(ann.to_pairs(), vec![(sym("x-opt-foo"), Value::from("baz"))], "{}", ctx(1));
    let ap = m[1].application_properties.as_ref().expect("application properties");
    assert_eq!(ap.len(), 2, "{}", ctx(1));
    assert_eq!(ap.get("seq"), Some(ValueRef::Int(2)), "{}", ctx(1));
    assert_eq!(ap.get("flag"), Some(ValueRef::Boolean(false)), "{}", ctx(1));
    assert_eq!(m[1].body, Body::Value(Value::from("hello, amqpwire")), "{}", ctx(1));

    // 3: amqp-value map, uuid message-id, binary correlation-id.
    assert_eq!(
        m[2].header,
        Some(Header { durable: true, priority: 1, ttl: Some(10_000), ..Header::default() }),
        "{}",
        ctx(2)
    );
    assert_eq!(
        m[2].properties,
        Some(Properties {
            message_id: Some(MessageId::Uuid(uuid_a)),
            correlation_id: Some(MessageId::Binary(Bytes::from_static(b"corr-3"))),
            ..common_properties(3, "map-body", "application/x-amqp-map")
        }),
        "{}",
        ctx(2)
    );
    let ann = m[2].message_annotations.as_ref().expect("message annotations");
    assert_eq!(
        ann.to_pairs(),
        vec![
            (sym("x-opt-foo"), Value::from("qux")),
            (sym("x-opt-when"), Value::Timestamp(Timestamp(CREATION_TIME_MS)))
        ],
        "{}",
        ctx(2)
    );
    let ap = m[2].application_properties.as_ref().expect("application properties");
    assert_eq!(ap.len(), 2, "{}", ctx(2));
    assert_eq!(ap.get("seq"), Some(ValueRef::Int(3)), "{}", ctx(2));
    assert_eq!(ap.get("ratio"), Some(ValueRef::Double(-0.5)), "{}", ctx(2));
    let nested = Value::Map(
        vec![(Value::from("list"), Value::from(vec![Value::from(1i32), 2i32.into(), 3i32.into()]))],
        Fmt::Auto,
    );
    let map = Value::Map(
        vec![
            (Value::from("key"), Value::from("value")),
            (Value::from("n"), Value::from(3i32)),
            (Value::from("nested"), nested),
        ],
        Fmt::Auto,
    );
    assert_eq!(m[2].body, Body::Value(map), "{}", ctx(2));

    // 4 and 5: only an id, a to, a subject and one application property; an empty header.
    for (i, subject) in [(3, "list-body"), (4, "sequence-body")] {
        assert_eq!(m[i].header, Some(Header::default()), "{}", ctx(i));
        assert_eq!(m[i].message_annotations, None, "{}", ctx(i));
        assert_eq!(
            m[i].properties,
            Some(Properties {
                message_id: Some(MessageId::String(format!("msg-{}", i + 1).into())),
                to: Some("q.messages".into()),
                subject: Some(subject.into()),
                ..Properties::default()
            }),
            "{}",
            ctx(i)
        );
        let ap = m[i].application_properties.as_ref().expect("application properties");
        assert_eq!(ap.len(), 1, "{}", ctx(i));
        assert_eq!(ap.get("seq"), Some(ValueRef::Int(i as i32 + 1)), "{}", ctx(i));
    }
    let list = vec![Value::from("one"), 2i32.into(), 3.5f64.into(), true.into(), Value::Null];
    assert_eq!(m[3].body, Body::Value(Value::from(list)), "{}", ctx(3));
    let seq = vec![Value::from(1i32), Value::from("two"), Value::from(3i32)];
    assert_eq!(m[4].body, Body::Sequence(vec![seq]), "{}", ctx(4));

    for m in &m {
        assert_eq!(m.delivery_annotations, None, "{name}");
        assert_eq!(m.footer, None, "{name}");
    }
}

#[test]
fn messages_scenario_decodes_to_exactly_the_values_sent() {
    assert_eq!(Timestamp(CREATION_TIME_MS).to_string(), "2026-11-22T12:00:00.000Z");
    for pairing in PAIRINGS {
        let c2s_name = format!("{pairing}-messages.c2s.bin");
        let s2c_name = format!("{pairing}-messages.s2c.bin");
        let (c2s, s2c) = (inspect(&c2s_name), inspect(&s2c_name));
        let sent = deliveries(&c2s);
        let received = deliveries(&s2c);
        // The client sent them; the broker forwarded the same bytes back.
        check_rich_messages(&c2s_name, &sent);
        check_rich_messages(&s2c_name, &received);
        for (a, b) in sent.iter().zip(&received) {
            assert_eq!(a.record.payload, b.record.payload, "{pairing}: forwarded bytes differ");
        }
    }
}

// ---------------------------------------------------------------------- 5. large scenario

#[test]
fn large_delivery_is_reassembled_from_many_frames_within_max_frame_size() {
    let body: Vec<u8> = (0..LARGE_SIZE).map(|i| (i * 31 + 7) as u8).collect();
    for pairing in PAIRINGS {
        let c2s = inspect(&format!("{pairing}-large.c2s.bin"));
        let s2c = inspect(&format!("{pairing}-large.s2c.bin"));
        let mut payloads = Vec::new();
        for (name, records, receiver) in [("c2s", &c2s, &s2c), ("s2c", &s2c, &c2s)] {
            let ctx = format!("{pairing}-large.{name}");
            let limit = the_open(receiver).max_frame_size;
            assert_eq!(limit, 16384, "{ctx}: the receiver's max-frame-size");
            assert_eq!(the_open(records).max_frame_size, 16384, "{ctx}: own max-frame-size");
            for f in frame_records(records) {
                assert!(f.raw.len() <= limit as usize, "{ctx}@{}: {} bytes", f.offset, f.raw.len());
            }

            let ds = deliveries(records);
            assert_eq!(ds.len(), 1, "{ctx}: one delivery");
            let d = &ds[0];
            assert!(d.frames.len() >= 20, "{ctx}: {} frames", d.frames.len());
            assert_eq!(d.frames.len(), 21, "{ctx}: frames (README)");
            assert_eq!(d.record.frames, d.frames.len(), "{ctx}");
            assert!(d.record.reassembled, "{ctx}");
            let mut joined = 0;
            for (i, f) in d.frames.iter().enumerate() {
                let Frame {
                    body: FrameBody::Amqp { performative: Performative::Transfer(t), payload },
                    ..
                } = decoded(f)
                else {
                    unreachable!()
                };
                let last = i + 1 == d.frames.len();
                assert_eq!(t.more, !last, "{ctx}: frame {i}");
                assert_eq!(f.continuation, if last { None } else { Some(i + 1) }, "{ctx}: {i}");
                assert_eq!(f.delivery.is_some(), last, "{ctx}: frame {i}");
                assert!(!t.aborted && !t.resume, "{ctx}: frame {i}");
                if i == 0 {
                    assert_eq!(t.delivery_id, Some(SequenceNo(d.id)), "{ctx}");
                    assert_eq!(t.message_format, Some(0), "{ctx}");
                } else {
                    // 2.7.5: continuation transfers MAY omit delivery-id (and tag); when
                    // present they MUST match the first transfer's. Both libraries repeat
                    // them on every frame.
                    assert!(
                        t.delivery_id.is_none_or(|id| id.0 == d.id),
                        "{ctx}: frame {i} delivery-id {:?}",
                        t.delivery_id
                    );
                    assert!(
                        t.delivery_tag.as_ref().is_none_or(|tag| *tag == d.tag),
                        "{ctx}: frame {i} delivery-tag {:?}",
                        t.delivery_tag
                    );
                }
                joined += payload.len();
            }
            assert_eq!(joined, d.record.payload.len(), "{ctx}: payload lengths");

            let m = d.message();
            let data = m.body.as_data().unwrap_or_else(|| panic!("{ctx}: body {:?}", m.body));
            assert_eq!(data.len(), LARGE_SIZE, "{ctx}: body size");
            let first_diff = data.iter().zip(&body).position(|(a, b)| a != b);
            assert_eq!(first_diff, None, "{ctx}: body differs from (31*i+7) mod 256");
            let p = m.properties.as_ref().expect("properties");
            assert_eq!(p.message_id, Some(MessageId::String("large-1".into())), "{ctx}");
            assert_eq!(p.content_type, Some(Symbol::from("application/octet-stream")), "{ctx}");
            payloads.push(d.record.payload.clone());
        }
        assert!(payloads[0] == payloads[1], "{pairing}: the broker changed the message");
    }
}

// ----------------------------------------------------------------- 6. dispositions scenario

/// Every (delivery-id, disposition) of one role, expanding first..=last ranges.
fn outcomes(records: &[Record], role: Role) -> Vec<(u32, bool, DeliveryState)> {
    let mut out = Vec::new();
    for (f, p) in performatives(records) {
        let Performative::Disposition(d) = p else { continue };
        assert_eq!(d.role, role, "disposition at {}", f.offset);
        let state =
            d.state.clone().unwrap_or_else(|| panic!("disposition at {}: no state", f.offset));
        let last = d.last.unwrap_or(d.first);
        assert!(!last.precedes(d.first), "disposition at {}: last before first", f.offset);
        let mut id = d.first;
        loop {
            out.push((id.0, d.settled, state.clone()));
            if id == last {
                break;
            }
            id = id.next();
        }
    }
    out
}

#[test]
fn dispositions_carry_accepted_rejected_released_and_presettled_outcomes() {
    let mut ranges = 0;
    for pairing in PAIRINGS {
        let client = pairing.split('-').next().expect("pairing");
        let c2s = inspect(&format!("{pairing}-dispositions.c2s.bin"));
        let s2c = inspect(&format!("{pairing}-dispositions.s2c.bin"));
        let is_range = |p: &Performative| match p {
            Performative::Disposition(d) => d.last.is_some_and(|l| l != d.first),
            _ => false,
        };
        ranges +=
            [&c2s, &s2c].iter().flat_map(|r| performatives(r)).filter(|(_, p)| is_range(p)).count();

        // The client's two senders: one unsettled, one pre-settled.
        let snd = attach_named(&c2s, &format!("{client}-disp-sender"));
        let pre = attach_named(&c2s, &format!("{client}-disp-presettled-sender"));
        assert_eq!(pre.snd_settle_mode, SenderSettleMode::SETTLED, "{pairing}");
        assert_ne!(snd.snd_settle_mode, SenderSettleMode::SETTLED, "{pairing}");
        let pre_reply = attach_named(&s2c, &format!("{client}-disp-presettled-sender"));
        assert_eq!(pre_reply.snd_settle_mode, SenderSettleMode::SETTLED, "{pairing}");

        let sent = deliveries(&c2s);
        let ids: Vec<(String, u32, bool)> =
            sent.iter().map(|d| (d.message_id(), d.handle, d.settled)).collect();
        assert_eq!(
            ids,
            vec![
                ("disp-accept".to_owned(), snd.handle.0, false),
                ("disp-reject".to_owned(), snd.handle.0, false),
                ("disp-release".to_owned(), snd.handle.0, false),
                ("disp-presettled".to_owned(), pre.handle.0, true),
            ],
            "{pairing}: client transfers"
        );
        // The broker accepts and settles the three unsettled ones, never the pre-settled.
        let mut broker: Vec<(u32, bool, DeliveryState)> = outcomes(&s2c, Role::RECEIVER);
        broker.sort_by_key(|(id, _, _)| *id);
        let unsettled: Vec<u32> = sent.iter().filter(|d| !d.settled).map(|d| d.id).collect();
        assert_eq!(broker.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(), unsettled, "{pairing}");
        for (id, settled, state) in &broker {
            assert!(settled, "{pairing}: broker disposition {id} unsettled");
            assert!(matches!(state, DeliveryState::Accepted(_)), "{pairing}: {id} {state:?}");
        }

        // The broker's deliveries to the client's receiver, and the client's outcomes.
        let rcv_name = format!("{client}-disp-receiver");
        let rcv_handle = attach_named(&s2c, &rcv_name).handle.0;
        let forwarded = deliveries(&s2c);
        assert!(forwarded.iter().all(|d| d.handle == rcv_handle), "{pairing}");
        let by_id: HashMap<u32, String> =
            forwarded.iter().map(|d| (d.id, d.message_id())).collect();
        let client_outcomes = outcomes(&c2s, Role::RECEIVER);
        let mut settled_ids: Vec<u32> = client_outcomes.iter().map(|(id, _, _)| *id).collect();
        settled_ids.sort_unstable();
        let mut delivered_ids: Vec<u32> = by_id.keys().copied().collect();
        delivered_ids.sort_unstable();
        assert_eq!(settled_ids, delivered_ids, "{pairing}: one outcome per delivery");

        let mut release_outcomes = Vec::new();
        for (id, settled, state) in &client_outcomes {
            assert!(settled, "{pairing}: client disposition {id} unsettled");
            match (by_id[id].as_str(), state) {
                ("disp-accept" | "disp-presettled", DeliveryState::Accepted(_)) => {}
                ("disp-reject", DeliveryState::Rejected(r)) => {
                    let e = r.error.as_ref().expect("rejected carries an error");
                    assert_eq!(e.condition.as_str(), "amqp:precondition-failed", "{pairing}");
                    assert_eq!(e.description.as_deref(), Some("rejected by amqpwire test peer"));
                    assert_eq!(e.info, None, "{pairing}");
                }
                ("disp-release", s) => release_outcomes.push((*id, s.name())),
                (mid, s) => panic!("{pairing}: {mid} (delivery {id}) got {s:?}"),
            }
        }
        // Released first, then the broker's redelivery accepted.
        release_outcomes.sort_unstable();
        let names: Vec<&str> = release_outcomes.iter().map(|(_, n)| *n).collect();
        assert_eq!(names, ["released", "accepted"], "{pairing}: disp-release outcomes");
        let copies: Vec<&Delivery<'_>> =
            forwarded.iter().filter(|d| d.message_id() == "disp-release").collect();
        assert_eq!(copies.len(), 2, "{pairing}");
        assert_eq!(copies[0].record.payload, copies[1].record.payload, "{pairing}");
        assert_ne!(copies[0].tag, copies[1].tag, "{pairing}: redelivery reuses a tag");
    }
    assert!(ranges > 0, "no disposition covers a range: range expansion is untested");
}

// -------------------------------------------------------------------- 7. heartbeat scenario

#[test]
fn heartbeat_captures_hold_empty_frames_and_idle_time_out_2000() {
    for name in capture_names() {
        let cap = CaptureName::parse(&name);
        let records = inspect(&name);
        let order: Vec<&str> = frame_records(&records)
            .map(|f| match &decoded(f).body {
                FrameBody::Empty => {
                    assert_eq!(&f.raw[..], &[0, 0, 0, 8, 2, 0, 0, 0], "{name}@{}", f.offset);
                    "empty"
                }
                FrameBody::Amqp { performative, .. } => performative.name(),
                FrameBody::Sasl(s) => s.name(),
            })
            .collect();
        let empties = order.iter().filter(|n| **n == "empty").count();
        let idle = the_open(&records).idle_time_out;
        if cap.scenario != "heartbeat" {
            // RabbitMQ always asks for heartbeats (60 s); the captures are shorter.
            let asked = if cap.sender() == "rabbitmq" { Some(60_000) } else { None };
            assert_eq!((empties, idle), (0, asked), "{name}");
            continue;
        }
        assert_eq!(idle, Some(2000), "{name}: idle-time-out");
        assert!(empties >= 1, "{name}: no heartbeats");
        // Heartbeats only flow on an open connection: after begin, before end.
        let begin = order.iter().position(|n| *n == "begin").expect("begin");
        let end = order.iter().position(|n| *n == "end").expect("end");
        let first = order.iter().position(|n| *n == "empty").expect("empty");
        let last = order.iter().rposition(|n| *n == "empty").expect("empty");
        assert!(begin < first && last < end, "{name}: {order:?}");
        assert_eq!(
            order[first..=last].iter().filter(|n| **n != "empty").count(),
            0,
            "{name}: {order:?}"
        );
    }
}

// --------------------------------------------------------------- 8. filter-dynamic scenario

/// Checks the selector filter of the attach `link` in `records`, encoded by library `lib`.
fn check_selector(ctx: &str, records: &[Record], link: &str, lib: &str, key: &str) {
    let (frame, attach) = performatives(records)
        .into_iter()
        .find_map(|(f, p)| match p {
            Performative::Attach(a) if &*a.name == link => Some((f, a)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{ctx}: no attach named {link}"));
    let src = source_of(attach);
    assert_eq!(src.address.as_deref(), Some("q.filter"), "{ctx}");
    let filter = src.filter.as_ref().unwrap_or_else(|| panic!("{ctx}: no filter"));
    assert_eq!(filter.0.len(), 1, "{ctx}: {filter:?}");
    let (k, v) = &filter.0[0];
    assert_eq!(k.as_str(), key, "{ctx}: filter key");
    let Value::Described(d) = v else { panic!("{ctx}: filter value {v:?} is not described") };
    // Proton writes the symbolic descriptor, rhea the numeric one.
    let descriptor = match lib {
        "proton" => sym(SELECTOR_SYMBOL),
        _ => Value::from(SELECTOR_CODE),
    };
    assert_eq!(d.descriptor, descriptor, "{ctx}: descriptor");
    assert_eq!(d.value, Value::from("color = 'red'"), "{ctx}: selector");
    // Kept whole: the typed filter value re-encodes to the very bytes of the frame. (The
    // `fields` map around it is re-encoded canonically, map8 where the peer wrote map32.)
    let encoded = v.to_vec();
    assert!(frame.raw.windows(encoded.len()).any(|w| w == encoded), "{ctx}: {encoded:02x?}");
}

#[test]
fn filter_and_dynamic_attaches_keep_the_filter_and_get_an_address() {
    for pairing in PAIRINGS {
        let c2s_name = format!("{pairing}-filter-dynamic.c2s.bin");
        let s2c_name = format!("{pairing}-filter-dynamic.s2c.bin");
        let cap = CaptureName::parse(&c2s_name);
        let (c2s, s2c) = (inspect(&c2s_name), inspect(&s2c_name));
        let client = cap.client;
        let key = if client == "proton" { "selector" } else { SELECTOR_SYMBOL };

        // The filtered receiver, and the broker's answer echoing the filter.
        let filter_link = format!("{client}-filter-receiver");
        assert_eq!(attach_named(&c2s, &filter_link).role, Role::RECEIVER, "{pairing}");
        check_selector(&c2s_name, &c2s, &filter_link, client, key);
        assert_eq!(attach_named(&s2c, &filter_link).role, Role::SENDER, "{pairing}");
        check_selector(&s2c_name, &s2c, &filter_link, cap.server, key);

        // The dynamic receiver: no address asked for, one given.
        let dyn_link = format!("{client}-dynamic-receiver");
        let asked = source_of(attach_named(&c2s, &dyn_link));
        assert!(asked.dynamic, "{pairing}: dynamic not set");
        assert_eq!(asked.address, None, "{pairing}");
        let given = source_of(attach_named(&s2c, &dyn_link));
        assert!(given.dynamic, "{pairing}: answer not dynamic");
        let address = given.address.as_deref().expect("the broker names the node");
        assert_eq!(address, "dynamic-1", "{pairing}");
        let dsnd = attach_named(&c2s, &format!("{client}-dynamic-sender"));
        assert_eq!(target_of(dsnd).address.as_deref(), Some(address), "{pairing}");

        // Blue and red were sent; only red came through the filter.
        let sent: Vec<String> = deliveries(&c2s).iter().map(Delivery::message_id).collect();
        assert_eq!(sent, ["filter-blue", "filter-red", "dynamic-1"], "{pairing}");
        let filter_handle = attach_named(&s2c, &filter_link).handle.0;
        let dyn_handle = attach_named(&s2c, &dyn_link).handle.0;
        let got = deliveries(&s2c);
        let filtered: Vec<&Delivery<'_>> =
            got.iter().filter(|d| d.handle == filter_handle).collect();
        assert_eq!(filtered.len(), 1, "{pairing}");
        assert_eq!(filtered[0].message_id(), "filter-red", "{pairing}");
        let ap = filtered[0].message().application_properties.as_ref().expect("properties");
        assert_eq!(ap.get("color"), Some(ValueRef::String("red")), "{pairing}");
        let dynamic: Vec<&Delivery<'_>> = got.iter().filter(|d| d.handle == dyn_handle).collect();
        assert_eq!(dynamic.len(), 1, "{pairing}");
        let m = dynamic[0].message();
        assert_eq!(m.body, Body::Value(Value::from("to the dynamic node")), "{pairing}");
        let to = m.properties.as_ref().and_then(|p| p.to.as_deref());
        assert_eq!(to, Some(address), "{pairing}");
        assert_eq!(got.len(), 2, "{pairing}: blue stays queued");
    }
}

#[test]
fn inspect_all_masks_only_the_sasl_plain_password() {
    // The default Inspector hides the PLAIN password, in the raw bytes too, without moving
    // anything; every other frame is exactly what the faithful decode gives.
    let mut masked_files = Vec::new();
    for name in capture_names() {
        let plain = inspect(&name);
        let masked = Inspector::inspect_all(&fixture(&name), DecodeOptions::STRICT);
        assert_eq!(plain.len(), masked.len(), "{name}");
        for (p, m) in plain.iter().zip(&masked) {
            let (Record::Frame(p), Record::Frame(m)) = (p, m) else {
                assert_eq!(format!("{p:?}"), format!("{m:?}"), "{name}");
                continue;
            };
            assert_eq!((p.offset, p.header), (m.offset, m.header), "{name}");
            if !m.redacted {
                assert_eq!(p.raw, m.raw, "{name}@{}", p.offset);
                assert_eq!(p.frame, m.frame, "{name}@{}", p.offset);
                continue;
            }
            masked_files.push(name.clone());
            let Ok(Frame { body: FrameBody::Sasl(SaslFrameBody::Init(init)), .. }) = &m.frame
            else {
                panic!("{name}@{}: redacted {:?}", m.offset, m.frame)
            };
            assert_eq!(init.mechanism.as_str(), "PLAIN", "{name}");
            let (masked, password) = if CaptureName::parse(&name).server == "rabbitmq" {
                (&b"\0guest\0*****"[..], &b"guest"[..])
            } else {
                (&b"\0alice\0******"[..], &b"secret"[..])
            };
            assert_eq!(init.initial_response.as_deref(), Some(masked), "{name}");
            assert_eq!(p.raw.len(), m.raw.len(), "{name}");
            let changed: Vec<u8> =
                p.raw.iter().zip(&m.raw[..]).filter(|(a, b)| a != b).map(|(a, _)| *a).collect();
            assert_eq!(changed, password, "{name}: only the password is masked");
        }
    }
    assert_eq!(
        masked_files,
        [
            "amqpwire-to-rabbitmq-receive.c2s.bin",
            "amqpwire-to-rabbitmq-send.c2s.bin",
            "proton-to-rhea-sasl-plain.c2s.bin",
            "rhea-to-rhea-sasl-plain.c2s.bin"
        ],
        "masked frames"
    );
}

// ------------------------------------------------------------------------ the peers' opens

#[test]
fn opens_carry_the_peers_container_ids() {
    for name in capture_names() {
        let cap = CaptureName::parse(&name);
        let records = inspect(&name);
        let open = the_open(&records);
        let role = if cap.c2s { "client" } else { "broker" };
        let want = format!("amqpwire-{}-{role}", cap.sender());
        if cap.sender() == "amqpwire" {
            // The CLI's generated id: amqpwire-<pid>-<time>-<n>.
            assert!(open.container_id.starts_with("amqpwire-"), "{name}: {open:?}");
            assert_eq!(open.hostname.as_deref(), Some("127.0.0.1"), "{name}");
            continue;
        } else if cap.sender() == "rabbitmq" {
            // RabbitMQ names itself after its node: rabbit@host in general, here
            // amqpwire-<port>@<host> as tests/peers/rabbitmq.sh names its nodes.
            assert!(open.container_id.starts_with("amqpwire-25700@"), "{name}: {open:?}");
            continue;
        } else if cap.sender() == "proton" && !cap.c2s {
            // Unlike the README's claim, the proton broker's open carries an empty
            // container-id (`a1 00`): proton_peer.py's on_start assignment does not reach
            // the connections its acceptor makes. The client's (set the same way) does.
            assert_eq!(&*open.container_id, "", "{name}");
        } else {
            assert_eq!(&*open.container_id, want, "{name}");
        }
        if cap.c2s {
            assert_eq!(open.hostname.as_deref(), Some("localhost"), "{name}");
        }
    }
}

#[test]
fn no_frame_carries_a_composite_the_spec_does_not_define() {
    // Every described value in every performative and message is one the crate knows, or
    // (only) the selector filter: nothing was kept as an unknown delivery state, source or
    // target.
    for name in capture_names() {
        for (f, p) in performatives(&inspect(&name)) {
            match p {
                Performative::Attach(a) => {
                    assert!(
                        matches!(a.source, None | Some(AttachSource::Source(_))),
                        "{name}@{}",
                        f.offset
                    );
                    assert!(
                        matches!(a.target, None | Some(AttachTarget::Target(_))),
                        "{name}@{}",
                        f.offset
                    );
                }
                Performative::Disposition(d) => {
                    let s = d.state.as_ref();
                    assert!(s.is_some_and(DeliveryState::is_outcome), "{name}@{}: {s:?}", f.offset);
                }
                Performative::Transfer(t) => assert_eq!(t.state, None, "{name}@{}", f.offset),
                _ => {}
            }
        }
    }
}

// ------------------------------------------------------- RabbitMQ and Cyrus SASL (servers)

/// How many fields a frame's performative list carries on the wire (trailing nulls
/// included).
fn performative_field_count(f: &FrameRecord) -> usize {
    let (values, _) = lossless(&body_of(f));
    match values.first() {
        Some(Value::Described(d)) => match &d.value {
            Value::List(items, _) => items.len(),
            other => panic!("frame at {}: performative is {other:?}", f.offset),
        },
        other => panic!("frame at {}: {other:?}", f.offset),
    }
}

#[test]
fn rabbitmq_writes_every_field_and_adds_subject_and_first_acquirer() {
    let sent = inspect("amqpwire-to-rabbitmq-send.c2s.bin");
    let got = inspect("amqpwire-to-rabbitmq-receive.s2c.bin");
    // RabbitMQ writes every field of its performatives, trailing nulls included.
    for (f, p) in performatives(&got) {
        let all = match p {
            Performative::Open(_) => 10,
            Performative::Begin(_) => 8,
            Performative::Attach(_) => 14,
            Performative::Flow(_) | Performative::Transfer(_) => 11,
            Performative::Close(_) => 1,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(performative_field_count(f), all, "{} at {}", p.name(), f.offset);
    }
    let open = the_open(&got);
    let product = open
        .properties
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| k.as_str() == "product").map(|(_, v)| v.clone()));
    assert_eq!(product, Some(Value::String("RabbitMQ".into(), Fmt::Auto)));
    // What was sent: a data body and one application property, no header, no properties.
    let (sent, got) = (deliveries(&sent), deliveries(&got));
    assert_eq!((sent.len(), got.len()), (2, 2));
    for (s, g) in sent.iter().zip(&got) {
        let (s, g) = (s.message(), g.message());
        assert_eq!(s.body, Body::Data([Bytes::from_static(b"hello-rabbit")].into()));
        assert_eq!((s.header.as_ref(), s.properties.as_ref()), (None, None));
        assert_eq!(g.body, s.body, "the body comes back unchanged");
        assert_eq!(g.application_properties, s.application_properties);
        // RabbitMQ adds a header with first-acquirer and a subject naming the queue.
        let header = g.header.as_ref().expect("RabbitMQ adds a header");
        assert!(header.first_acquirer && !header.durable, "{header:?}");
        let subject = g.properties.as_ref().and_then(|p| p.subject.as_deref());
        assert_eq!(subject, Some("capture"));
    }
    // After its close it still writes a flow: a frame after close, which a peer must ignore.
    let names: Vec<&str> = performatives(&inspect("amqpwire-to-rabbitmq-receive.s2c.bin"))
        .iter()
        .map(|(_, p)| p.name())
        .collect();
    assert_eq!(names[names.len() - 2..], ["close", "flow"]);
}

#[test]
fn cyrus_scram_sha_256_exchange_has_the_server_final_message_in_a_challenge() {
    let records = inspect("amqpwire-to-proton-sasl-scram.s2c.bin");
    let sasl: Vec<SaslFrameBody> = frame_records(&records)
        .filter_map(|f| match &decoded(f).body {
            FrameBody::Sasl(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let [SaslFrameBody::Mechanisms(m), SaslFrameBody::Challenge(first), SaslFrameBody::Challenge(last), SaslFrameBody::Outcome(o)] =
        &sasl[..]
    else {
        panic!("{sasl:?}")
    };
    let offered: Vec<&str> = m.sasl_server_mechanisms.iter().map(Symbol::as_str).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"]);
    // server-first: r=<client nonce + server nonce>,s=<salt>,i=<iterations>
    let first = std::str::from_utf8(&first.challenge).expect("text");
    let parts: Vec<&str> = first.split(',').collect();
    assert!(parts.len() == 3 && parts[0].starts_with("r=") && parts[1].starts_with("s="));
    assert_eq!(parts[2], "i=4096");
    // server-final: v=<base64 server signature (32 bytes)>, then an outcome without data.
    let last = std::str::from_utf8(&last.challenge).expect("text");
    assert!(last.starts_with("v=") && last.len() == 2 + 44, "{last}");
    assert_eq!((o.code, o.additional_data.as_ref()), (SaslCode::OK, None));
    // The client's nonce is the prefix of the combined one.
    let c2s = inspect("amqpwire-to-proton-sasl-scram.c2s.bin");
    let init = frame_records(&c2s)
        .find_map(|f| match &decoded(f).body {
            FrameBody::Sasl(SaslFrameBody::Init(i)) => Some(i.clone()),
            _ => None,
        })
        .expect("sasl-init");
    let client_first = init.initial_response.expect("client-first message");
    let client_first = std::str::from_utf8(&client_first).expect("text");
    let nonce = client_first.split(",r=").nth(1).expect("client nonce");
    assert!(parts[0][2..].starts_with(nonce) && parts[0].len() > 2 + nonce.len());
}

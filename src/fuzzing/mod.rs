//! The logic of every fuzz target, kept in the crate so that `cargo test` replays the
//! checked-in corpus (`fuzz/corpus/<target>/`) and the libFuzzer targets in `fuzz/` stay
//! one-line wrappers.
//!
//! Each function must never panic on any input except through the invariant assertions
//! it makes, each of which names the property that failed.

pub mod engine;
pub mod generate;

use bytes::Bytes;

use crate::codec::{DecodeOptions, Reader, Value, ValueRef};
use crate::frame::{FrameBody, FrameDecoder, StreamItem};
use crate::inspect::{render_text, Inspector};
use crate::message::{Message, MessageView};
use crate::types::{Layout, Performative};

/// A fuzz target: any bytes in, no panic out (but for a failed invariant).
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus
/// folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("value", value),
    ("frames", frames),
    ("message", message),
    ("inspect", inspect),
    ("connection", connection),
    ("azure", azure),
    ("differential", differential),
    ("structured", structured),
    ("engine", engine),
    ("capture", capture),
];

/// Decodes one value every way; checks that a strict decode re-encodes to the same bytes
/// and that the borrowed view agrees with the owned value.
pub fn value(data: &[u8]) {
    let _ = Value::decode_with(data, DecodeOptions::LENIENT);
    let mut r = Reader::new(data, DecodeOptions::STRICT);
    if let Ok(v) = Value::read(&mut r) {
        let used = &data[..r.position()];
        assert_eq!(v.to_vec(), used, "lossless: decode then encode must give the same bytes");
        assert_eq!(v.encoded_len(), used.len(), "encoded_len must match the encoding");
        let (view, n) = ValueRef::decode(data)
            .expect("the borrowed view must accept what the owned decoder accepts");
        assert_eq!(n, used.len());
        if let Ok(owned) = view.to_owned_value() {
            assert_eq!(owned, v, "borrowed and owned decoders must agree");
        }
    }
    if let Ok((view, _)) = ValueRef::decode(data) {
        let _ = view.validate(DecodeOptions::DEFAULT_MAX_DEPTH);
    }
}

/// Splits the input into frames (cut in two at a point the first byte chooses), decodes
/// each, and checks that every decoded performative re-encodes to something that decodes
/// to the same performative, in both layouts. A second decoder, fed through a buffer of
/// the caller's ([`FrameDecoder::swap_buffer`], as the runtime reads), must return the same
/// items and the same error.
pub fn frames(data: &[u8]) {
    let cut = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let new = || FrameDecoder::new(64 * 1024).frames_first().sniff_headers(true);
    let mut d = new();
    let mut seen = 0usize;
    let mut items = Vec::new();
    for (i, part) in [&data[..cut], &data[cut..]].into_iter().enumerate() {
        // The second part goes in as an owned chunk: the no-copy path must agree too.
        if i == 0 {
            d.push(part);
        } else {
            d.push_bytes(Bytes::copy_from_slice(part));
        }
        loop {
            let item = d.next_item();
            items.push(item.clone());
            match item {
                Ok(Some(StreamItem::Frame(raw))) => {
                    seen += raw.bytes.len();
                    for opts in [DecodeOptions::STRICT, DecodeOptions::LENIENT] {
                        if let Ok(f) = raw.decode(opts) {
                            if let FrameBody::Amqp { performative, .. } = &f.body {
                                round_trip(performative, opts);
                            }
                        }
                    }
                }
                Ok(Some(StreamItem::Header { .. })) => seen += 8,
                Ok(None) | Err(_) => break,
            }
        }
    }
    assert!(seen + d.buffered() <= data.len(), "the decoder must not invent bytes");

    let mut e = new();
    let mut buf = bytes::BytesMut::new();
    let mut again = Vec::new();
    for part in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(part);
        e.swap_buffer(&mut buf);
        loop {
            let item = e.next_item();
            again.push(item.clone());
            if !matches!(item, Ok(Some(_))) {
                break;
            }
        }
        e.swap_buffer(&mut buf);
        // What is wanted is bounded by what came, never by a header's claim alone.
        assert!(e.wanted() <= buf.len().max(64 * 1024), "wanted {} of {}", e.wanted(), buf.len());
    }
    assert_eq!(items, again, "a caller's buffer must decode as pushed bytes do");
}

/// A performative decoded with `opts` re-encodes to bytes that decode, with the same
/// options, to the same performative (a lenient decode may have kept a deviation, such as
/// a non-ASCII symbol, which only a lenient decode accepts again).
fn round_trip(p: &Performative, opts: DecodeOptions) {
    for layout in [Layout::Compact, Layout::AllFields] {
        let mut b = Vec::new();
        p.encode_with(layout, &mut b);
        assert_eq!(b.len(), p.encoded_len_with(layout), "encoded_len must match the encoding");
        let (back, _) = Performative::decode(&b, opts).expect("our own encoding must decode");
        assert_eq!(&back, p, "performative round trip");
    }
}

/// Decodes a message strictly and leniently; a strictly decoded message re-encodes to
/// bytes that decode to the same message.
pub fn message(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let _ = Message::decode_with(&bytes, DecodeOptions::LENIENT);
    let owned = Message::decode(&bytes);
    let view = MessageView::decode(data);
    // The fast path and the general decoder agree on every input.
    let general = MessageView::decode_general(data);
    assert_eq!(view.is_ok(), general.is_ok(), "fast and general view decoders must agree");
    if let (Ok(a), Ok(b)) = (&view, &general) {
        assert_eq!(a, b, "fast and general views must show the same message");
        if let Some(ap) = b.application_properties {
            for kv in ap.iter() {
                let Ok((crate::codec::ValueRef::String(k), v)) = kv else { continue };
                assert_eq!(a.application_property(k), Some(v), "indexed lookup of {k:?}");
            }
        }
    }
    assert_eq!(
        owned.is_ok(),
        view.is_ok(),
        "the view and the owned decoder must accept the same messages"
    );
    if let (Ok(m), Ok(v)) = (&owned, &view) {
        assert_eq!(&m.header, &v.header, "header");
        let (mp, vp) = (m.properties.as_ref(), v.properties.as_ref());
        assert_eq!(mp.and_then(|p| p.to.as_deref()), vp.and_then(|p| p.to()), "properties.to");
        assert_eq!(
            mp.and_then(|p| p.content_type.as_ref().map(|c| c.as_str())),
            vp.and_then(|p| p.content_type()),
            "properties.content-type"
        );
        assert_eq!(
            m.application_properties.as_ref().map(|a| a.len()),
            v.application_properties.as_ref().map(|a| a.len()),
            "application-properties"
        );
        let first = match v.body {
            crate::message::BodyView::Data { first, .. } => Some(first),
            _ => None,
        };
        let owned_first = match &m.body {
            crate::message::Body::Data(d) => d.first().map(|b| &b[..]),
            _ => None,
        };
        assert_eq!(owned_first, first, "first data section");
    }
    if let Ok(m) = owned {
        let again = Bytes::from(m.to_vec());
        assert_eq!(again.len(), m.encoded_len(), "encoded_len must match the encoding");
        let back = Message::decode(&again).expect("our own encoding must decode");
        assert_eq!(back, m, "message round trip");
        let mut p = crate::message::Payload::default();
        m.encode_payload(&mut p);
        assert_eq!(p.to_vec(), again.to_vec(), "zero-copy encoding must equal the copying one");
    }
}

/// Runs the inspector in both modes and both renderings over the input as a whole
/// stream.
///
/// The two modes share what does not depend on the mode ([`Inspector::inspect_both`]).
/// A rendering is a function of its record alone: a strict record equal to the lenient
/// one (the usual case, where nothing deviates) would render to the same text, so it is
/// rendered once. The JSON lines are streamed into a string
/// (`inspect::json::write_record_json`): the bytes that `amqpwire decode --json` prints.
pub fn inspect(data: &[u8]) {
    let [strict, lenient] = Inspector::inspect_both(data);
    let mut text = String::new();
    #[cfg(feature = "json")]
    let mut json = String::new();
    // Each record's renderings go into the same two buffers, emptied first: nothing reads
    // them, and small buffers stay in the cache.
    let mut render = |r: &crate::inspect::Record| {
        text.clear();
        render_text(r, &mut text);
        #[cfg(feature = "json")]
        json.clear();
        #[cfg(feature = "json")]
        crate::inspect::json::write_record_json(r, &mut json);
    };
    lenient.iter().for_each(&mut render);
    strict.iter().zip(&lenient).filter(|(s, l)| s != l).for_each(|(s, _)| render(s));
    // The properties read the stream as --show-secrets shows it, decoded once for all.
    #[cfg(feature = "json")]
    {
        let shown = Shown::new(data);
        masking_keeps_the_stream_s_shape(&shown.records, &lenient);
        plain_passwords_never_show(&shown, &lenient);
        encode_gives_back(&shown);
        fields_written_by_hand(&shown);
        decoded_lines_expect_themselves(&shown);
    }
    #[cfg(not(feature = "json"))]
    masking_keeps_the_stream_s_shape(&unmasked_records(data), &lenient);
}

/// The lenient records of `data` with nothing masked (what `--show-secrets` shows),
/// with what [`Inspector::finish`] adds.
pub fn unmasked_records(data: &[u8]) -> Vec<crate::inspect::Record> {
    let mut i = Inspector::new(DecodeOptions::LENIENT).redact_secrets(false);
    i.push(data);
    let mut records: Vec<_> = std::iter::from_fn(|| i.next_record()).collect();
    records.extend(i.finish());
    records
}

/// A stream as `amqpwire decode --json --show-secrets` shows it, decoded once for the
/// properties that read it: [`unmasked_records`] and their JSON lines.
#[cfg(feature = "json")]
pub struct Shown<'a> {
    /// The stream.
    pub data: &'a [u8],
    /// Its records, as [`unmasked_records`] gives them.
    pub records: Vec<crate::inspect::Record>,
    /// The records' JSON lines, in order.
    pub lines: Vec<serde_json::Value>,
}

#[cfg(feature = "json")]
impl<'a> Shown<'a> {
    /// Decodes `data`.
    pub fn new(data: &'a [u8]) -> Self {
        let records = unmasked_records(data);
        let lines = records.iter().flat_map(crate::inspect::json::record_json).collect();
        Shown { data, records, lines }
    }
}

/// Each header and frame line of `decode --json`, taken whole as an `expect` pattern (the
/// keys a pattern may name), matches what it was decoded from: a script made by copying
/// a trace's lines holds against the same bytes. Up to the first fatal error.
#[cfg(feature = "json")]
pub fn decoded_lines_expect_themselves(shown: &Shown<'_>) {
    use crate::script::player::{parse, Player};
    let mut steps = String::new();
    for line in &shown.lines {
        match line["kind"].as_str() {
            Some("header" | "frame") => {}
            Some("error") if line["fatal"] == true => break,
            _ => continue,
        }
        let pattern: serde_json::Map<_, _> = line
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| crate::script::encode::DECODED_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        steps.push_str(&serde_json::json!({ "expect": pattern }).to_string());
        steps.push('\n');
    }
    let script = parse(&steps, std::time::Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("decode's own lines are no script: {e}\n{steps}"));
    let mut player = Player::new(script);
    let now = std::time::Instant::now(); // the player's clock (never run in WebAssembly)
    player.start(now);
    player.handle_input(shown.data, now);
    player.handle_eof(now);
    match player.verdict() {
        Some(Ok(())) => {}
        Some(Err(f)) => panic!("decode's own lines do not match what they show: {f}\n{steps}"),
        None => panic!("the script of decode's own lines did not end\n{steps}"),
    }
}

/// What an investigator copies from a trace and edits comes out as shown: each frame's
/// `performative` and `fields` as `decode --json` shows them, written by hand (without
/// `typed`, so typed by the spec's field tables), encode to a frame that `decode` shows
/// with the same performative and fields. A value shown as a bare number where the field
/// tables give no type (inside a map) is refused, as the trace format says: it names no
/// AMQP type; so is a composite of the spec shown by name there. Frames read with
/// warnings (lenient decoding) are left out.
#[cfg(feature = "json")]
pub fn fields_written_by_hand(shown: &Shown<'_>) {
    for line in &shown.lines {
        // A frame read only leniently (warnings) may show what no frame written to the
        // spec's tables is: a symbol's bytes that are not ASCII, a performative where a
        // terminus belongs.
        if line["kind"] != "frame"
            || line["performative"].is_null()
            || line.get("error").is_some()
            || line.get("warnings").is_some()
        {
            continue;
        }
        let mut hand = serde_json::Map::new();
        for k in ["type", "channel", "performative", "fields", "payload"] {
            if let Some(v) = line.get(k) {
                hand.insert(k.into(), v.clone());
            }
        }
        let hand = serde_json::Value::Object(hand).to_string();
        let bytes = match crate::script::encode::encode_lines(&hand) {
            Ok(b) => b,
            // As the trace format says: a bare number inside a map has no AMQP type, and a
            // composite inside one is written typed.
            Err(e) if e.contains("a bare number has no AMQP type") => continue,
            Err(e) if e.contains("is a composite of the spec, written by name only") => continue,
            Err(e) => panic!("encode refused a frame's fields as decode shows them: {e}\n{hand}"),
        };
        let again = unmasked_records(&bytes)
            .first()
            .and_then(|r| crate::inspect::json::record_json(r).into_iter().next())
            .unwrap_or_default();
        assert!(
            again["performative"] == line["performative"] && again["fields"] == line["fields"],
            "written by hand, the fields come back otherwise:\n{hand}\n{again}"
        );
    }
}

/// Masking credentials changes bytes to `*` and nothing else: `masked` (the lenient
/// records of `data` with credentials masked) and the records shown unmasked are the same
/// records, at the same offsets, with raw bytes of the same lengths that differ only where
/// the masked one has a `*`; frames decode alike (performative, warnings, deliveries and
/// whether their messages decode).
pub fn masking_keeps_the_stream_s_shape(
    shown: &[crate::inspect::Record],
    masked: &[crate::inspect::Record],
) {
    use crate::inspect::Record;
    assert_eq!(masked.len(), shown.len(), "masking changed the number of records");
    let same_but_stars = |m: &[u8], s: &[u8], at: u64| {
        assert_eq!(m.len(), s.len(), "masking changed a length at offset {at}");
        let differs = m.iter().zip(s).position(|(m, s)| m != s && *m != b'*');
        assert!(differs.is_none(), "masking changed a byte to other than '*' at offset {at}");
    };
    for (m, s) in masked.iter().zip(shown) {
        match (m, s) {
            (Record::Header { offset: a, header: h }, Record::Header { offset: b, header: k }) => {
                assert_eq!((a, h), (b, k), "masking changed a header");
            }
            (Record::Frame(m), Record::Frame(s)) => {
                assert_eq!(m.offset, s.offset, "masking moved a frame");
                same_but_stars(&m.raw, &s.raw, m.offset);
                assert_eq!(
                    (m.performative(), m.frame.is_ok(), m.warnings.len(), m.layer_error),
                    (s.performative(), s.frame.is_ok(), s.warnings.len(), s.layer_error),
                    "masking changed how the frame at offset {} decodes",
                    m.offset
                );
                match (&m.delivery, &s.delivery) {
                    (Some(md), Some(sd)) => {
                        same_but_stars(&md.payload, &sd.payload, m.offset);
                        assert_eq!(md.message.is_ok(), sd.message.is_ok(), "at {}", m.offset);
                    }
                    (None, None) => {}
                    _ => {
                        panic!("masking changed whether the frame at {} ends a delivery", m.offset)
                    }
                }
            }
            (Record::Error { error: e, rest: a, .. }, Record::Error { error: f, rest: b, .. }) => {
                assert_eq!(e, f, "masking changed a framing error");
                same_but_stars(a, b, e.offset);
            }
            (Record::Truncated { offset: o, rest: a, .. }, Record::Truncated { rest: b, .. }) => {
                same_but_stars(a, b, *o);
            }
            (m, s) => panic!("masking changed a record: {m:?}\nunmasked: {s:?}"),
        }
    }
}

/// A SASL PLAIN password never shows where credentials are masked, however the
/// sasl-init carrying it is written (a response as a string, a sasl-init in an AMQP
/// frame, a list32): for each frame whose fields, decoded unmasked, show the mechanism
/// `PLAIN` and a response with a password (after its second NUL), the masked frame's JSON
/// line holds the password neither as hex nor as text. (Passwords under six bytes, or
/// found elsewhere in the frame, are left out: they may show by coincidence; so are
/// responses written as text that is not UTF-8, whose JSON shows replacement characters.)
#[cfg(feature = "json")]
pub fn plain_passwords_never_show(shown: &Shown<'_>, masked: &[crate::inspect::Record]) {
    use crate::inspect::json::record_json;
    let masked = masked.iter().flat_map(record_json).filter(|l| l["kind"] == "frame");
    for (s, m) in shown.lines.iter().filter(|l| l["kind"] == "frame").zip(masked) {
        let f = &s["fields"];
        if f["mechanism"] != "PLAIN" {
            continue;
        }
        let response = match &f["initial-response"] {
            // Text that is not UTF-8 shows replacement characters, not its bytes: what
            // follows its second NUL need not be the password (it may stand for other
            // bytes, shown as the same characters elsewhere in the frame).
            serde_json::Value::String(t) if t.contains('\u{fffd}') => continue,
            serde_json::Value::String(t) => t.as_bytes().to_vec(),
            r => match r["binary"]
                .as_str()
                .and_then(|h| crate::inspect::parse_hex(h.as_bytes()).ok())
            {
                Some(b) => b,
                None => continue,
            },
        };
        let Some(second_nul) = response.iter().enumerate().filter(|(_, b)| **b == 0).nth(1) else {
            continue;
        };
        let password = &response[second_nul.0 + 1..];
        let raw = s["raw"].as_str().and_then(|h| crate::inspect::parse_hex(h.as_bytes()).ok());
        let once = raw.is_some_and(|r| {
            r.windows(password.len().max(1)).filter(|w| *w == password).count() == 1
        });
        if password.len() < 6 || !once {
            continue;
        }
        let line = m.to_string();
        let hex = crate::inspect::hex(password);
        let text =
            serde_json::Value::String(String::from_utf8_lossy(password).into_owned()).to_string();
        assert!(
            !line.contains(&hex) && !line.contains(text.trim_matches('"')),
            "a PLAIN password shows where credentials are masked:\n{line}"
        );
    }
}

/// The trace format read backwards: whatever the stream, `amqpwire decode --json
/// --show-secrets` lines written back by `amqpwire encode` are the stream, byte for byte
/// (frames from their typed values, never from `raw`; a stream that breaks off from its
/// fatal error's `raw`).
#[cfg(feature = "json")]
pub fn encode_gives_back(shown: &Shown<'_>) {
    let mut lines = String::new();
    for r in &shown.records {
        crate::inspect::json::write_record_json(r, &mut lines);
    }
    match crate::script::encode::encode_lines(&lines) {
        Ok(back) => {
            assert!(back == shown.data, "encode(decode --json) differs from the stream:\n{lines}")
        }
        Err(e) => panic!("encode refused decode --json's own lines: {e}\n{lines}"),
    }
}

/// Feeds arbitrary bytes to connections of both roles after a valid prefix (a protocol
/// header and open, or the SASL exchange), so that the input reaches their deep states;
/// then lets time run. The engine must not panic, and what it sends stays bounded.
pub fn connection(data: &[u8]) {
    use crate::codec::Symbol;
    use crate::connection::{Config, Connection, Event, LinkOptions, UnsettledDelivery};
    use crate::frame::{FrameEncoder, ProtocolHeader};
    use crate::sasl::{Credentials, SaslClient};
    use crate::types::{Open, Performative, SaslFrameBody, SaslMechanisms};
    use std::time::Duration;

    use crate::time::Instant;

    let open = |id: &str| {
        let mut b = ProtocolHeader::AMQP.to_bytes().to_vec();
        let mut o = Open::new(id);
        o.idle_time_out = Some(1000);
        // A 4-byte open cannot fail to fit.
        let _ = FrameEncoder::new(u32::MAX).encode_amqp(0, &Performative::Open(o), &[], &mut b);
        b
    };
    let now = Instant::now();
    let run = |mut c: Connection, prefix: &[u8]| {
        c.handle_input(prefix, now);
        // Split where the first byte says, to vary the chunking.
        let cut = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
        c.handle_input(&data[..cut], now);
        // Answer what waits for the application, so the rest lands in accepted sessions
        // and on links that carry deliveries over from an earlier attachment.
        while let Some(e) = c.poll_event() {
            match e {
                Event::BeginRequested { session, .. } => {
                    let _ = c.accept_begin(session);
                }
                Event::AttachRequested { link, remote } => {
                    let mut opts = LinkOptions::receiver(&remote.name, "q");
                    opts.role = crate::types::Role(!remote.role.0);
                    opts.unsettled = [&b"\0"[..], b"\x01"]
                        .iter()
                        .map(|t| UnsettledDelivery { tag: Bytes::from_static(t), state: None })
                        .collect();
                    let _ = c.accept_attach(link, Some(opts));
                }
                _ => {}
            }
        }
        // The rest as a runtime gives it: in its own read buffer, after what the decoder
        // already holds.
        let mut rest = bytes::BytesMut::from(&data[cut..]);
        c.handle_input_buf(&mut rest, now + Duration::from_millis(10));
        for step in 1..5u64 {
            let t = now + Duration::from_secs(step * 3);
            c.handle_timeout(t);
        }
        c.handle_eof(now + Duration::from_secs(20));
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        while c.poll_event().is_some() {}
        assert!(out.len() < 64 * 1024 + 16 * data.len(), "output must stay bounded");
    };
    run(Connection::server(Config::new("server")), &open("peer"));
    // Deeper: a session and a sending link already attached, so the input lands among
    // transfers, flows and dispositions.
    let mut deep = open("peer");
    let mut begin = crate::types::Begin::new(crate::types::SequenceNo(0), 100, 100);
    begin.handle_max = crate::types::Handle(7);
    let mut attach =
        crate::types::Attach::new("fuzz", crate::types::Handle(0), crate::types::Role::SENDER);
    attach.target =
        Some(crate::types::AttachTarget::Target(crate::types::Target::with_address("q")));
    attach.initial_delivery_count = Some(crate::types::SequenceNo(0));
    let enc = FrameEncoder::new(u32::MAX);
    let _ = enc.encode_amqp(0, &Performative::Begin(begin), &[], &mut deep);
    let _ = enc.encode_amqp(0, &Performative::Attach(attach), &[], &mut deep);
    run(Connection::server(Config::new("server")), &deep);
    // The same, with the application answering sessions and links itself.
    let mut asks = Config::new("server");
    asks.accept_sessions = false;
    asks.accept_links = false;
    run(Connection::server(asks), &deep);
    run(Connection::client(Config::new("client")), &open("peer"));
    let mut sasl = Config::new("server");
    sasl.authenticator = Some(Box::new(Credentials::new(|| "n".into()).anonymous(true)));
    run(Connection::server(sasl), &ProtocolHeader::SASL.to_bytes());
    // SASL with users: the input as a client's sasl-init and responses to a server that
    // knows a PLAIN and SCRAM user and a SCRAM-only one, then as a hostile server's frames
    // to a PLAIN client and to a SCRAM client (its challenge and server-final parsing),
    // the SCRAM client right after the mechanisms, where a server-first is due.
    let mut sasl = Config::new("server");
    sasl.authenticator = Some(Box::new(sasl_users().clone()));
    sasl.require_sasl = true;
    run(Connection::server(sasl), &ProtocolHeader::SASL.to_bytes());
    let mut plain = Config::new("client");
    plain.sasl_client = Some(SaslClient::plain("u", "p"));
    run(Connection::client(plain), &ProtocolHeader::SASL.to_bytes());
    if let Ok(scram) = SaslClient::scram_sha256("s", "q", FUZZ_CLIENT_NONCE) {
        let mut config = Config::new("client");
        // Iterations cost time per input; the parsing around them is what is fuzzed.
        config.sasl_client = Some(scram.with_max_scram_iterations(16));
        let mut prefix = ProtocolHeader::SASL.to_bytes().to_vec();
        let mechanisms = SaslMechanisms {
            sasl_server_mechanisms: vec![Symbol::from("SCRAM-SHA-256"), Symbol::from("PLAIN")],
        };
        let _ = FrameEncoder::new(u32::MAX)
            .encode_sasl(&SaslFrameBody::Mechanisms(mechanisms), &mut prefix);
        run(Connection::client(config), &prefix);
    }
}

/// The SCRAM client nonce of [`connection`]'s SCRAM client: a seed's server-first extends
/// it, so that the fuzzer starts from a challenge the client accepts.
pub const FUZZ_CLIENT_NONCE: &str = "fuzzclientnonce";

/// The users of [`connection`]'s SASL server, made once: deriving SCRAM keys takes 4,096
/// PBKDF2 iterations, far too slow to repeat for every input.
fn sasl_users() -> &'static crate::sasl::Credentials {
    use crate::sasl::{Credentials, ScramStored};
    static USERS: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();
    USERS.get_or_init(|| {
        Credentials::new(|| "fuzzservernonce".into())
            .with_user("u", "p", b"salt")
            .with_scram_user("s", ScramStored::derive("q", b"salt", 16))
    })
}

/// Every decoder that must agree, on the same bytes: the owned [`Value`], the borrowed
/// [`ValueRef`] with its validation, the reader's allocation-free validator and the
/// inspector's annotation must accept and refuse the same values, consume the same bytes
/// and read the same value; a typed performative is a valid value; [`Message`] and both
/// [`MessageView`] decoders must accept the same messages; in each mode a lenient decode
/// accepts everything a strict one does.
pub fn differential(data: &[u8]) {
    use crate::inspect::annotate;
    for opts in [DecodeOptions::STRICT, DecodeOptions::LENIENT] {
        let mut r = Reader::new(data, opts);
        let owned = Value::read(&mut r).map(|v| (v, r.position()));
        let mut r = Reader::new(data, opts);
        let valid = r.validate_value().map(|()| r.position());
        let mut r = Reader::new(data, opts);
        let tree = annotate(&mut r, String::new(), None).map(|n| (n, r.position()));
        assert_eq!(
            owned.as_ref().map(|o| o.1).ok(),
            valid.as_ref().ok().copied(),
            "{opts:?}: the owned decoder and the validator must agree ({:?} / {:?})",
            owned.as_ref().err(),
            valid.as_ref().err()
        );
        assert_eq!(
            owned.as_ref().map(|o| o.1).ok(),
            tree.as_ref().map(|t| t.1).ok(),
            "{opts:?}: the owned decoder and the inspector must agree ({:?} / {:?})",
            owned.as_ref().err(),
            tree.as_ref().err()
        );
        if let Ok((n, used)) = &tree {
            assert_eq!(n.len, *used, "the inspector's node spans what it read");
        }
        if opts.mode == crate::codec::Mode::Strict {
            let borrowed = ValueRef::decode(data).and_then(|(v, n)| {
                v.validate(DecodeOptions::DEFAULT_MAX_DEPTH)?;
                Ok((v, n))
            });
            assert_eq!(
                owned.as_ref().map(|o| o.1).ok(),
                borrowed.as_ref().map(|b| b.1).ok(),
                "the owned and the borrowed decoders must agree ({:?} / {:?})",
                owned.as_ref().err(),
                borrowed.as_ref().err()
            );
            if let (Ok((v, _)), Ok((b, _))) = (&owned, &borrowed) {
                assert_eq!(b.to_owned_value().as_ref(), Ok(v), "both read the same value");
            }
            // What a strict decode accepts, a lenient one accepts the same way.
            if let Ok((v, used)) = &owned {
                let lenient = Value::decode_with(&data[..*used], DecodeOptions::LENIENT);
                assert_eq!(lenient.as_ref(), Ok(v), "lenient accepts what strict accepts");
            }
        }
        // A typed performative is a valid value, consuming the same bytes.
        if let Ok((_, used)) = Performative::decode(data, opts) {
            let v = owned.as_ref().map(|o| o.1);
            assert_eq!(v.as_ref().ok(), Some(&used), "{opts:?}: a performative is a value");
        }
    }
    let bytes = Bytes::copy_from_slice(data);
    let owned = Message::decode(&bytes);
    let view = MessageView::decode(data);
    let general = MessageView::decode_general(data);
    assert_eq!(owned.is_ok(), view.is_ok(), "Message and MessageView ({:?})", owned.err());
    assert_eq!(view.is_ok(), general.is_ok(), "fast and general views");
}

/// Structure-aware: the input drives the generators of [`generate`], which write values,
/// performatives and SASL bodies, and messages valid by construction, with every encoding
/// choice the spec allows.
///
/// - A value ([`generate::value`]) must decode strictly, re-encode to the same bytes (the
///   lossless property, for non-canonical forms too), and every decoder must agree on it
///   ([`differential`]), alone and as the amqp-value body of a message.
/// - A performative or SASL body ([`generate::frame_body`], from the bytes the value left)
///   must be a lossless value, decode strictly as its type, keep the meaning of every
///   primitive field it was given, and round-trip through both layouts.
/// - A message ([`generate::message`], from the bytes left after that) must be lossless
///   section by section, decode strictly with the body it was given, round-trip, and the
///   decoders must agree on it.
pub fn structured(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let mut bytes = Vec::new();
    generate::value(&mut u, &mut bytes);
    let v = Value::decode(&bytes).unwrap_or_else(|e| {
        panic!("a generated value must decode strictly: {e} in {}", crate::inspect::hex(&bytes))
    });
    assert_eq!(v.to_vec(), bytes, "lossless: a generated value must re-encode to its bytes");
    assert_eq!(v.encoded_len(), bytes.len(), "encoded_len must match the encoding");
    differential(&bytes);
    let mut message = vec![0x00, 0x53, 0x77];
    message.extend_from_slice(&bytes);
    let m = Message::decode(&Bytes::from(message.clone()))
        .unwrap_or_else(|e| panic!("an amqp-value body of a generated value must decode: {e}"));
    assert_eq!(m.to_vec(), message, "the message re-encodes to its bytes");
    differential(&message);

    let mut body = Vec::new();
    let sasl = generate::frame_body(&mut u, &mut body);
    structured_frame_body(&body, sasl);
    let mut message = Vec::new();
    let parts = generate::message(&mut u, &mut message);
    structured_message(&message, &parts);
}

/// Reads `bytes` as a sequence of values, strictly; each must re-encode to its own bytes.
fn lossless_values(bytes: &[u8], what: &str) -> Vec<Value> {
    let mut r = Reader::new(bytes, DecodeOptions::STRICT);
    let mut values = Vec::new();
    while !r.is_empty() {
        let start = r.position();
        let v = Value::read(&mut r).unwrap_or_else(|e| {
            panic!("a generated {what} must be valid values: {e} in {}", crate::inspect::hex(bytes))
        });
        assert_eq!(v.to_vec(), &bytes[start..r.position()], "lossless: a generated {what}");
        values.push(v);
    }
    values
}

/// The checks of [`structured`] on a generated performative or SASL body.
fn structured_frame_body(bytes: &[u8], sasl: bool) {
    use crate::types::SaslFrameBody;
    let given = lossless_values(bytes, "frame body");
    let hex = || crate::inspect::hex(bytes);
    let mut again = Vec::new();
    if sasl {
        let mut r = Reader::new(bytes, DecodeOptions::STRICT);
        let b = SaslFrameBody::read(&mut r)
            .unwrap_or_else(|e| panic!("a generated SASL body must decode: {e} in {}", hex()));
        assert!(r.is_empty(), "a SASL body is one value");
        for layout in [Layout::Compact, Layout::AllFields] {
            let mut out = Vec::new();
            b.encode_with(layout, &mut out);
            assert_eq!(out.len(), b.encoded_len_with(layout), "encoded_len must match");
            let mut r = Reader::new(&out, DecodeOptions::STRICT);
            let back = SaslFrameBody::read(&mut r).expect("our own SASL encoding must decode");
            assert_eq!(back, b, "SASL body round trip");
            again = out;
        }
    } else {
        let (p, used) = Performative::decode(bytes, DecodeOptions::STRICT)
            .unwrap_or_else(|e| panic!("a generated performative must decode: {e} in {}", hex()));
        assert_eq!(used, bytes.len(), "a performative is one value");
        round_trip(&p, DecodeOptions::STRICT);
        p.encode_with(Layout::AllFields, &mut again);
    }
    // Meaning: every primitive field given keeps its value in our own encoding (a
    // `multiple` field given as one value comes back as an array of it).
    let again = Value::decode(&again).expect("our own encoding is a value");
    let fields = |v: &Value| match v {
        Value::Described(d) => match &d.value {
            Value::List(items, _) => items.clone(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let (given, ours) = (fields(&given[0]), fields(&again));
    for (i, g) in given.iter().enumerate() {
        if matches!(g, Value::Null | Value::List(..) | Value::Map(..) | Value::Described(_)) {
            continue;
        }
        match (g, ours.get(i)) {
            (Value::Symbol(..), Some(Value::Array(a))) => {
                assert_eq!(a.items(), std::slice::from_ref(g), "field {i} of {}", hex())
            }
            (Value::Array(_), _) => {}
            (g, o) => assert_eq!(Some(g), o, "field {i} keeps its meaning in {}", hex()),
        }
    }
    differential(bytes);
}

/// The checks of [`structured`] on a generated message.
fn structured_message(bytes: &[u8], parts: &generate::MessageParts) {
    use crate::message::Body;
    lossless_values(bytes, "message");
    let hex = || crate::inspect::hex(bytes);
    let m = Message::decode(&Bytes::copy_from_slice(bytes))
        .unwrap_or_else(|e| panic!("a generated message must decode: {e} in {}", hex()));
    let value = |b: &[u8]| Value::decode(b).expect("a generated value");
    match &m.body {
        Body::Data(d) => {
            assert_eq!(d.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), parts.data, "data")
        }
        Body::Sequence(seqs) => {
            assert_eq!(seqs.len(), parts.values.len(), "amqp-sequence sections in {}", hex());
            for (s, given) in seqs.iter().zip(&parts.values) {
                let Value::List(items, _) = value(given) else { panic!("a sequence is a list") };
                assert_eq!(s, &items, "amqp-sequence in {}", hex());
            }
        }
        Body::Value(v) => {
            assert!(parts.amqp_value, "an amqp-value body only where one was written");
            assert_eq!(v, &value(&parts.values[0]), "amqp-value in {}", hex());
        }
        other => panic!("a generated message has the body it was given, not {other:?}"),
    }
    let again = m.to_vec();
    assert_eq!(again.len(), m.encoded_len(), "encoded_len must match the encoding");
    let back = Message::decode(&Bytes::from(again)).expect("our own encoding must decode");
    assert_eq!(back, m, "message round trip");
    differential(bytes);
}

/// Stateful: a client and a server engine driven by fuzzer-chosen commands, chunk sizes,
/// time steps and hostile bytes, with invariants checked after every step
/// ([`engine::run`]).
pub fn engine(data: &[u8]) {
    engine::run(data);
}

/// Azure's decoders of peer and user input: SAS tokens, connection strings, start-position
/// selectors, percent-encoding, CBS requests and answers, feedback JSON. What parses must
/// print as text that parses back to the same thing.
pub fn azure(data: &[u8]) {
    use crate::azure::cbs::{CbsStatus, PutToken};
    use crate::azure::hub::StartPosition;
    use crate::azure::{percent_decode, percent_encode, ConnectionString, SasToken};

    let text = String::from_utf8_lossy(data);
    if let Ok(t) = text.parse::<SasToken>() {
        let again: SasToken = t.to_string().parse().expect("a token's own text must parse again");
        assert_eq!(again, t, "token: parse(print(t)) must be t");
    }
    if let Ok(cs) = text.parse::<ConnectionString>() {
        let again: ConnectionString =
            cs.to_string().parse().expect("a connection string's own text must parse again");
        assert_eq!(again, cs, "connection string: parse(print(cs)) must be cs");
        let _ = cs.sas_token(1_700_000_000);
    }
    if let Ok(p) = StartPosition::parse(&text) {
        assert_eq!(StartPosition::parse(&p.selector()), Ok(p), "selector: parse(print(p))");
    }
    if let Ok(decoded) = percent_decode(&text) {
        assert_eq!(
            percent_decode(&percent_encode(&decoded)).as_deref(),
            Ok(decoded.as_str()),
            "percent-decoding undoes percent-encoding"
        );
    }
    // The JSON reader of feedback bodies and of the browser binding's arguments reads what
    // serde_json reads, the same way.
    #[cfg(feature = "json")]
    crate::json::differential::check(data);
    if let Ok(records) = crate::azure::hub::FeedbackRecord::parse_batch(data) {
        for r in records {
            let back = crate::azure::hub::FeedbackRecord::from_json(&r.json());
            assert_eq!(back.as_ref(), Ok(&r), "feedback: from_json(json(r)) must be r");
        }
    }
    if let Ok(m) = Message::decode(&Bytes::copy_from_slice(data)) {
        if let Ok(put) = PutToken::from_message(&m) {
            let back =
                Message::decode(&Bytes::from(put.to_message().to_vec())).expect("our own encoding");
            assert_eq!(PutToken::from_message(&back), Ok(put), "put-token round trip");
        }
        if let Ok(status) = CbsStatus::from_message(&m) {
            let back = Message::decode(&Bytes::from(status.to_message().to_vec()))
                .expect("our own encoding");
            assert_eq!(CbsStatus::from_message(&back), Ok(status), "CBS status round trip");
        }
    }
}

/// Decodes the input as a pcap or pcapng capture, whole: the reader, TCP reassembly,
/// WebSocket unframing, the inspectors and both renderings. Input that is not a capture is
/// first written as one (the two halves of the input as the two directions of a
/// connection, in packets of a size the first byte chooses) by the pcapng writer. Nothing
/// is asserted but the absence of panics; libFuzzer's limits catch runaway memory.
pub fn capture(data: &[u8]) {
    use crate::capture::{CaptureDecoder, Direction, PcapWriter, WriterOptions};
    let written;
    let file = if crate::capture::is_capture(data) {
        data
    } else {
        // The first byte chooses the segment size and, with its high bit, AMQP over
        // WebSocket: each half then goes in binary messages of up to that size after an
        // upgrade to the AMQPWSB10 subprotocol, the client's masked (RFC 6455, 5.3).
        let first = data.first().copied().unwrap_or(0);
        let (mss, websocket) = (usize::from(first & 0x7f) + 1, first & 0x80 != 0);
        let opts = WriterOptions { mss, ..WriterOptions::default() };
        let Ok(mut w) = PcapWriter::new(Vec::new(), opts) else { return };
        let (c2s, s2c) = data.split_at(data.len() / 2);
        let t = std::time::UNIX_EPOCH;
        if websocket {
            let mask = [first, 0x5a, first ^ 0xa5, 0x0f];
            let _ = w.write(1, Direction::ClientToServer, &ws_upgrade(c2s, true, mss * 3, mask), t);
            let _ =
                w.write(1, Direction::ServerToClient, &ws_upgrade(s2c, false, mss * 3, mask), t);
        } else {
            let _ = w.write(1, Direction::ClientToServer, c2s, t);
            let _ = w.write(1, Direction::ServerToClient, s2c, t);
        }
        let _ = w.close(1, Direction::ClientToServer, t);
        written = w.into_inner();
        #[cfg(feature = "json")]
        encode_gives_back_each_direction(&written, [c2s, s2c], websocket);
        &written
    };
    stream_reads_as_whole(file);
    let mut out = String::new();
    for ev in CaptureDecoder::decode_all(file, DecodeOptions::LENIENT, true) {
        crate::capture::event_text(&ev, std::time::Duration::ZERO, &mut out);
        #[cfg(feature = "json")]
        for j in crate::capture::event_json(&ev, std::time::Duration::ZERO) {
            out.push_str(&j.to_string());
        }
        out.clear();
    }
}

/// A capture read a block at a time ([`CaptureStream`](crate::capture::CaptureStream))
/// from a source that gives it in pieces of a few bytes to many kilobytes is read as
/// the whole file in memory is ([`CaptureReader`](crate::capture::CaptureReader)): the
/// same blocks and errors, in the same order, at the same offsets.
pub fn stream_reads_as_whole(file: &[u8]) {
    use crate::capture::{CaptureReader, CaptureStream};
    /// Gives `data` in pieces whose sizes follow `sizes`, over and over.
    struct Pieces<'a> {
        data: &'a [u8],
        sizes: &'static [usize],
        turn: usize,
    }
    impl std::io::Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.sizes[self.turn % self.sizes.len()].min(buf.len()).min(self.data.len());
            self.turn += 1;
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }
    let whole: Vec<_> = match CaptureReader::new(file) {
        Ok(r) => r.map(|b| b.map(|b| format!("{b:?}"))).collect(),
        Err(e) => vec![Err(e)],
    };
    for sizes in [&[1, 7, 300, 2, 70_000][..], &[65_536], &[3]] {
        let source = Pieces { data: file, sizes, turn: 0 };
        let mut streamed = Vec::new();
        match CaptureStream::new(source) {
            Ok(mut s) => {
                while let Some(b) = s.next_block() {
                    streamed.push(b.map(|b| format!("{b:?}")));
                }
            }
            Err(e) => streamed.push(Err(e)),
        }
        if streamed != whole {
            let at = streamed.iter().zip(&whole).take_while(|(s, w)| s == w).count();
            panic!(
                "read in pieces of {sizes:?}, the capture reads otherwise from item {at}: {:?}\nwhole: {:?}",
                streamed.get(at),
                whole.get(at)
            );
        }
    }
}

/// One side of an AMQP-over-WebSocket connection: its half of the upgrade to the
/// `AMQPWSB10` subprotocol, then `amqp` in binary messages of up to `size` bytes, masked
/// with `mask` when the client sends them (RFC 6455, 5.2 and 5.3).
pub fn ws_upgrade(amqp: &[u8], client: bool, size: usize, mask: [u8; 4]) -> Vec<u8> {
    let mut out: Vec<u8> = if client {
        b"GET /$iothub/websocket HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n"
            .to_vec()
    } else {
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
          Sec-WebSocket-Protocol: AMQPWSB10\r\n\r\n"
            .to_vec()
    };
    for message in amqp.chunks(size.max(1)) {
        out.push(0x82); // FIN, binary
        let masked = if client { 0x80 } else { 0 };
        match message.len() {
            n @ 0..=125 => out.push(masked | n as u8),
            n @ 126..=0xffff => {
                out.push(masked | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(masked | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if client {
            out.extend_from_slice(&mask);
            out.extend(message.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        } else {
            out.extend_from_slice(message);
        }
    }
    out
}

/// The capture's JSON lines (`amqpwire decode --json --show-secrets`), one direction's
/// chosen as `amqpwire encode --connection 1 --direction D` chooses them, written back:
/// what that side sent, byte for byte, after a framing error too. `capture` holds one
/// connection, the two directions `sent` (the AMQP bytes inside the WebSocket messages
/// when `websocket`); a direction the decoder did not take for AMQP (no protocol header,
/// or, over plain TCP, the start of a WebSocket handshake) has no lines to write, and one
/// that starts with the TLS protocol header goes on in TLS, which is not decoded.
#[cfg(feature = "json")]
pub fn encode_gives_back_each_direction(capture: &[u8], sent: [&[u8]; 2], websocket: bool) {
    use crate::capture::CaptureDecoder;
    use crate::script::encode::{encode_lines, one_stream, StreamEncoder};
    let mut lines = String::new();
    for ev in CaptureDecoder::decode_all(capture, DecodeOptions::LENIENT, false) {
        for j in crate::capture::event_json(&ev, std::time::Duration::ZERO) {
            lines.push_str(&j.to_string());
            lines.push('\n');
        }
    }
    if !websocket && lines.contains(r#""kind":"websocket""#) {
        return;
    }
    for (direction, sent) in ["c2s", "s2c"].into_iter().zip(sent) {
        // A TLS protocol header (5.2): TLS records follow, which a capture decodes only
        // with a key log, and shows otherwise as not decoded.
        if sent.starts_with(b"AMQP\x02") {
            continue;
        }
        // As `amqpwire encode` reads them, a line at a time: the same as choosing the
        // stream's lines first and encoding them after.
        let mut enc = StreamEncoder::new(Some(direction), Some(1));
        lines.lines().for_each(|l| enc.line(l));
        let streamed = enc.finish();
        let Ok(one) = one_stream(&lines, Some(direction), Some(1)) else {
            assert!(
                !lines.contains(&format!(r#""direction":"{direction}""#)),
                "{direction}: one_stream refused lines that name it:\n{lines}"
            );
            assert!(streamed.is_err(), "{direction}: streamed, a stream one_stream refused");
            continue;
        };
        let two_passes = encode_lines(&one);
        assert!(streamed == two_passes, "{direction}: {streamed:?}\n{two_passes:?}\n{lines}");
        match streamed {
            Ok(back) => assert!(back == sent, "{direction}: encode gives other bytes:\n{lines}"),
            // Said, not written short: the WebSocket framing broke off.
            Err(e)
                if e.contains("the websocket breaks off here")
                    && lines.contains(r#""in":"websocket","fatal":true"#) => {}
            Err(e) => panic!("{direction}: encode refused the capture's lines: {e}\n{lines}"),
        }
    }
}

/// Seeds for [`connection`]'s SASL stages, made by real exchanges between the engine's
/// client and server (both deterministic: fixed nonces, no clock): `(file name in
/// fuzz/corpus/connection/, bytes)`. Each starts where its stage's prefix ends, so the
/// fuzzer begins from an exchange that succeeds and varies it:
///
/// - `sasl-plain-user-then-open`: a client's sasl-init for PLAIN `u`, then its AMQP header
///   and open (for the server that knows the users);
/// - `sasl-scram-user-then-open`: the same with SCRAM-SHA-256 as `s`: sasl-init with the
///   client-first message, the sasl-response with the client proof, header and open;
/// - `sasl-scram-server-answers`: what that server says to a SCRAM client with
///   [`FUZZ_CLIENT_NONCE`] after its mechanisms: the challenge with the server-first
///   message, the outcome carrying the server signature, its AMQP header and open.
pub fn sasl_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::connection::{Config, Connection};
    use crate::sasl::SaslClient;

    /// Runs a client and a server until neither has more to say; what each sent.
    fn converse(mut client: Connection, mut server: Connection) -> (Vec<u8>, Vec<u8>) {
        let now = crate::time::Instant::now();
        let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
        for _ in 0..16 {
            let (mut c, mut s) = (Vec::new(), Vec::new());
            client.poll_transmit(&mut c);
            server.poll_transmit(&mut s);
            if c.is_empty() && s.is_empty() {
                break;
            }
            server.handle_input(&c, now);
            client.handle_input(&s, now);
            from_client.extend_from_slice(&c);
            from_server.extend_from_slice(&s);
        }
        (from_client, from_server)
    }
    let server = || {
        let mut c = Config::new("server");
        c.authenticator = Some(Box::new(sasl_users().clone()));
        c.require_sasl = true;
        Connection::server(c)
    };
    let client = |sasl: SaslClient| {
        let mut c = Config::new("client");
        c.sasl_client = Some(sasl);
        Connection::client(c)
    };
    // The client's bytes after its SASL protocol header (the stage's prefix).
    let after_header = |b: Vec<u8>| b.get(8..).unwrap_or_default().to_vec();
    let mut seeds = Vec::new();
    let (plain, _) = converse(client(SaslClient::plain("u", "p")), server());
    seeds.push(("sasl-plain-user-then-open", after_header(plain)));
    if let Ok(scram) = SaslClient::scram_sha256("s", "q", "seednonce") {
        let (scram, _) = converse(client(scram), server());
        seeds.push(("sasl-scram-user-then-open", after_header(scram)));
    }
    if let Ok(scram) = SaslClient::scram_sha256("s", "q", FUZZ_CLIENT_NONCE) {
        let (_, answers) = converse(client(scram), server());
        // The server's header, then its sasl-mechanisms frame (the prefix has its own).
        let first = answers
            .get(8..12)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map_or(0, |s| u32::from_be_bytes(s) as usize);
        seeds.push((
            "sasl-scram-server-answers",
            answers.get(8 + first..).unwrap_or_default().to_vec(),
        ));
    }
    seeds
}

#[cfg(test)]
mod sasl_seed_tests {
    use super::*;
    use crate::connection::{Config, Connection, Event};
    use crate::frame::ProtocolHeader;

    /// Feeds `prefix` then `seed` to `c` as the connection target does; the SASL verdict.
    fn sasl_done(
        mut c: Connection,
        prefix: &[u8],
        seed: &[u8],
    ) -> Option<(String, Option<String>)> {
        let now = crate::time::Instant::now();
        c.handle_input(prefix, now);
        c.handle_input(seed, now);
        let mut done = None;
        while let Some(e) = c.poll_event() {
            if let Event::SaslDone { mechanism, identity } = e {
                done = Some((mechanism.to_string(), identity));
            }
        }
        done
    }

    /// The seeds in fuzz/corpus/connection/ are what [`sasl_seeds`] makes (set
    /// AMQPWIRE_WRITE_SEEDS=1 to write them), and each takes its stage through a
    /// successful exchange: the fuzzer starts past the SASL gate, not at it.
    #[test]
    fn sasl_seeds_are_checked_in_and_reach_past_authentication() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection");
        let seeds = sasl_seeds();
        assert_eq!(seeds.len(), 3);
        for (name, bytes) in &seeds {
            let path = dir.join(name);
            if std::env::var_os("AMQPWIRE_WRITE_SEEDS").is_some() {
                std::fs::write(&path, bytes).expect("write the seed");
            }
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                &on_disk == bytes,
                "{name} differs from sasl_seeds() (AMQPWIRE_WRITE_SEEDS=1 rewrites it)"
            );
        }
        let server = || {
            let mut c = Config::new("server");
            c.authenticator = Some(Box::new(sasl_users().clone()));
            c.require_sasl = true;
            Connection::server(c)
        };
        let header = ProtocolHeader::SASL.to_bytes();
        assert_eq!(
            sasl_done(server(), &header, &seeds[0].1),
            Some(("PLAIN".into(), Some("u".into())))
        );
        assert_eq!(
            sasl_done(server(), &header, &seeds[1].1),
            Some(("SCRAM-SHA-256".into(), Some("s".into())))
        );
        // The SCRAM client, after the mechanisms the target's prefix offers: it checks the
        // server's signature before it counts the exchange done.
        let mut config = Config::new("client");
        config.sasl_client = Some(
            crate::sasl::SaslClient::scram_sha256("s", "q", FUZZ_CLIENT_NONCE)
                .expect("nonce")
                .with_max_scram_iterations(16),
        );
        let mut prefix = header.to_vec();
        let mechanisms = crate::types::SaslMechanisms {
            sasl_server_mechanisms: vec!["SCRAM-SHA-256".into(), "PLAIN".into()],
        };
        crate::frame::FrameEncoder::new(u32::MAX)
            .encode_sasl(&crate::types::SaslFrameBody::Mechanisms(mechanisms), &mut prefix)
            .expect("fits");
        let done = sasl_done(Connection::client(config), &prefix, &seeds[2].1);
        assert_eq!(done.map(|d| d.0), Some("SCRAM-SHA-256".into()));
        // A byte changed in the server signature fails the client's check.
        let mut forged = seeds[2].1.clone();
        let at = forged.windows(2).position(|w| w == b"v=").expect("server-final") + 2;
        forged[at] ^= 1;
        let mut config = Config::new("client");
        config.sasl_client = Some(
            crate::sasl::SaslClient::scram_sha256("s", "q", FUZZ_CLIENT_NONCE).expect("nonce"),
        );
        assert_eq!(sasl_done(Connection::client(config), &prefix, &forged), None);
    }
}

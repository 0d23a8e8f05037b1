//! `encode`: the trace format read backwards. Every fixture of real peers comes back byte
//! for byte from its `decode --json` lines with their `raw` taken away (so the bytes come
//! from the typed values, not copied), and malformations at every level are written as
//! asked and refused by the decoder as they should be.

use amqpwire::codec::DecodeOptions;
use amqpwire::frame::FrameErrorKind;
use amqpwire::inspect::json::record_json;
use amqpwire::inspect::{Inspector, Record};
use amqpwire::script::encode::encode_lines;

fn fixtures() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut all = Vec::new();
    for dir in ["wire", "iothub"] {
        for e in std::fs::read_dir(root.join(dir)).expect("fixtures") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "bin") {
                all.push(p);
            }
        }
    }
    all.sort();
    all
}

/// `decode --json --show-secrets` of `bytes`, one line per record, without `raw`.
fn json_without_raw(bytes: &[u8]) -> String {
    let mut inspector = Inspector::new(DecodeOptions::LENIENT).redact_secrets(false);
    inspector.push(bytes);
    let mut records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
    records.extend(inspector.finish());
    let mut out = String::new();
    for r in records {
        for mut line in record_json(&r) {
            if let Some(o) = line.as_object_mut() {
                o.remove("raw");
            }
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_fixture_comes_back_byte_for_byte_from_its_json_lines() {
    let all = fixtures();
    assert!(all.len() >= 60, "{} fixtures", all.len());
    for path in all {
        let bytes = std::fs::read(&path).expect("fixture");
        let lines = json_without_raw(&bytes);
        let back = encode_lines(&lines).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(back == bytes, "{}: the encoding differs", path.display());
    }
}

/// The first framing error of a stream, if any.
fn framing_error(bytes: &[u8]) -> Option<FrameErrorKind> {
    Inspector::inspect_all(bytes, DecodeOptions::STRICT).into_iter().find_map(|r| match r {
        Record::Error { error, .. } => Some(error.kind),
        _ => None,
    })
}

/// The decode errors of the frames of a stream, in words.
fn frame_errors(bytes: &[u8]) -> Vec<String> {
    Inspector::inspect_all(bytes, DecodeOptions::STRICT)
        .into_iter()
        .filter_map(|r| match r {
            Record::Frame(f) => f.frame.as_ref().err().map(|e| e.kind.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn malformations_at_every_level_are_written_as_asked() {
    let header = r#"{"kind": "header", "protocol_id": 0}"#;
    let with = |line: &str| encode_lines(&format!("{header}\n{line}")).expect("encodes");
    // Frame level: a size below 8, a doff below 2, a doff past the size.
    assert_eq!(
        framing_error(&with(r#"{"performative": "open", "size": 7}"#)),
        Some(FrameErrorKind::SizeTooSmall(7))
    );
    assert_eq!(
        framing_error(&with(r#"{"performative": "open", "doff": 1}"#)),
        Some(FrameErrorKind::DoffTooSmall(1))
    );
    assert!(matches!(
        framing_error(&with(r#"{"kind": "frame", "size": 8, "doff": 9, "body": ""}"#)),
        Some(FrameErrorKind::DoffBeyondSize { doff: 9, size: 8 })
    ));
    // A wrong protocol header version.
    let b = encode_lines(r#"{"kind": "header", "protocol_id": 0, "version": "0.9.1"}"#).unwrap();
    assert_eq!(b, b"AMQP\x00\x00\x09\x01");
    // Value level: a compound whose count disagrees with its contents, invalid UTF-8
    // spliced in, a wrong descriptor, a value's format code.
    let errs = frame_errors(&with(
        r#"{"typed": {"described": [{"ulong": 16}, {"list": ["c"], "count": 3}]}}"#,
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    let errs =
        frame_errors(&with(r#"{"typed": {"described": [{"ulong": 16}, [{"raw": "a102c328"}]]}}"#));
    assert!(errs.iter().any(|e| e.contains("UTF-8")), "{errs:?}");
    let errs = frame_errors(&with(r#"{"typed": {"described": [{"ulong": 4660}, ["c"]]}}"#));
    assert_eq!(errs.len(), 1, "{errs:?}");
    let errs = frame_errors(&with(
        r#"{"performative": "attach", "fields": {"handle": {"raw": "a10130"}}}"#,
    ));
    assert!(errs.iter().any(|e| e.contains("handle") || e.contains("uint")), "{errs:?}");
    // Truncation at any byte of a frame: the stream ends inside it.
    let whole = with(r#"{"performative": "open", "fields": {"container-id": "x"}}"#);
    for n in 0..whole.len() - 8 {
        let cut = with(&format!(
            r#"{{"performative": "open", "fields": {{"container-id": "x"}}, "truncate": {n}}}"#
        ));
        assert_eq!(cut, whole[..8 + n], "truncated at {n}");
        let last = Inspector::inspect_all(&cut, DecodeOptions::STRICT).pop();
        if n > 0 {
            assert!(matches!(last, Some(Record::Truncated { .. })), "truncated at {n}: {last:?}");
        }
    }
    // Raw bytes anywhere, and a 4 GiB size claim.
    let b = with(r#"{"kind": "raw", "hex": "ffffffff02000000"}"#);
    assert_eq!(&b[8..], &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]);
    let last = Inspector::inspect_all(&b, DecodeOptions::STRICT).pop();
    assert!(
        matches!(&last, Some(Record::Truncated { offset: 8, rest, .. }) if rest.len() == 8),
        "{last:?}"
    );
}

#[test]
fn bad_lines_are_refused_with_the_line_and_the_reason() {
    for (input, words) in [
        ("{\"kind\": \"frame\"}\nnot json", "line 2: not JSON"),
        (r#"{"performative": "opn"}"#, "unknown performative"),
        (r#"{"performative": "open", "fields": {"container": "x"}}"#, "no field \"container\""),
        (r#"{"performative": "attach", "fields": {"handle": -1}}"#, "fields.handle"),
        (r#"{"typed": {"uint": 1, "code": "zz"}}"#, "format code"),
        (r#"{"kind": "header"}"#, "protocol_id"),
        // A misspelt key would leave out what it names: an empty frame, without a word.
        (
            r#"{"perfomative": "open", "fields": {"container-id": "x"}}"#,
            "unknown key \"perfomative\"",
        ),
        (r#"{"performative": "open", "channle": 1}"#, "unknown key \"channle\""),
        (
            r#"{"kind": "header", "protocol": "AMQP", "versoin": "1.0.0"}"#,
            "unknown key \"versoin\"",
        ),
        (r#"{"fields": {"container-id": "x"}}"#, "without a \"performative\""),
        (r#"{"kind": "header", "protocol": "SASL", "protocol_id": 0}"#, "protocol_id 3, not 0"),
    ] {
        let e = encode_lines(input).expect_err(input);
        assert!(e.contains(words), "{input}: {e}");
    }
}

/// A SASL body is written in a SASL frame (type 1) unless the line names another type.
#[test]
fn sasl_bodies_go_in_sasl_frames_unless_told_otherwise() {
    let init = r#"{"performative": "sasl-init", "fields": {"mechanism": "ANONYMOUS"}}"#;
    let bytes = encode_lines(init).expect("encode");
    assert_eq!(bytes[5], 1, "the frame type");
    let bytes =
        encode_lines(&init.replace("{\"performative\"", "{\"type\": \"amqp\", \"performative\""))
            .expect("encode");
    assert_eq!(bytes[5], 0, "the type asked for");
    let mut stream = b"AMQP\x03\x01\x00\x00".to_vec();
    stream.extend(encode_lines(init).expect("encode"));
    let mut inspector = Inspector::new(DecodeOptions::STRICT);
    inspector.push(&stream);
    let records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
    let lines: Vec<_> = records.iter().flat_map(record_json).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["performative"], "sasl-init", "{lines:?}");
    assert_eq!(lines[1]["type"], "sasl", "{lines:?}");
    // Any other frame is an AMQP frame, as before.
    let open = encode_lines(r#"{"performative": "open", "fields": {"container-id": "x"}}"#);
    assert_eq!(open.expect("encode")[5], 0);
}

/// Composites in fields may be written as `decode` shows them (`{"source": {"address":
/// "q"}}`, `{"accepted": {}}`, `{"error": {"condition": …}}`): each field typed by the
/// spec's table, and decoded back as written.
#[test]
fn composites_are_written_as_decode_shows_them() {
    let shown = |line: &str| -> serde_json::Value {
        let bytes = encode_lines(line).expect(line);
        let mut inspector = Inspector::new(DecodeOptions::STRICT);
        inspector.push(&bytes);
        let records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
        let line = records.iter().flat_map(record_json).next().expect("a frame");
        assert!(line.get("error").is_none(), "{line}");
        line["fields"].clone()
    };
    let f = shown(
        r#"{"performative": "attach", "fields": {"name": "l", "handle": 0, "role": "receiver", "source": {"source": {"address": "q", "durable": "unsettled-state", "outcomes": ["amqp:accepted:list"]}}, "target": {"target": {"address": "t"}}}}"#,
    );
    assert_eq!(f["source"]["source"]["address"], "q");
    assert_eq!(f["source"]["source"]["durable"], 2);
    assert_eq!(f["source"]["source"]["outcomes"], serde_json::json!(["amqp:accepted:list"]));
    assert_eq!(f["target"], serde_json::json!({"target": {"address": "t"}}));
    let f = shown(
        r#"{"performative": "disposition", "fields": {"role": "receiver", "first": 3, "settled": true, "state": {"rejected": {"error": {"error": {"condition": "amqp:decode-error"}}}}}}"#,
    );
    assert_eq!(f["state"]["rejected"]["error"]["error"]["condition"], "amqp:decode-error");
    let f = shown(
        r#"{"performative": "detach", "fields": {"handle": 1, "closed": true, "error": {"error": {"condition": "amqp:not-found", "description": "gone"}}}}"#,
    );
    assert_eq!(
        f["error"],
        serde_json::json!({"error": {"condition": "amqp:not-found", "description": "gone"}})
    );
    for (line, words) in [
        (
            r#"{"performative": "detach", "fields": {"error": {"error": {"conditon": "x"}}}}"#,
            r#"fields.error: error has no field "conditon""#,
        ),
        (
            r#"{"performative": "attach", "fields": {"source": {"source": {"durable": "forever"}}}}"#,
            "fields.source.source.durable",
        ),
    ] {
        let e = encode_lines(line).expect_err(line);
        assert!(e.contains(words), "{line}: {e}");
    }
}

/// `split: N` writes a transfer's message as N transfer frames, `more` set on all but the
/// last, continuations carrying the handle only; the decoder reassembles the message.
#[test]
fn a_transfer_is_split_into_frames_as_asked() {
    let line = r#"{"performative": "transfer", "channel": 1, "fields": {"handle": 2, "delivery-id": 7, "delivery-tag": "07"}, "data": "hello world", "split": 3}"#;
    let bytes = encode_lines(line).expect("encode");
    let mut inspector = Inspector::new(DecodeOptions::STRICT);
    inspector.push(&bytes);
    let records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
    let lines: Vec<_> = records.iter().flat_map(record_json).collect();
    let frames: Vec<_> = lines.iter().filter(|l| l["kind"] == "frame").collect();
    assert_eq!(frames.len(), 3, "{lines:?}");
    let more: Vec<_> = frames.iter().map(|f| f["fields"]["more"].clone()).collect();
    assert_eq!(more, [true, true, false].map(serde_json::Value::Bool));
    assert!(frames.iter().all(|f| f["channel"] == 1 && f["fields"]["handle"] == 2));
    assert_eq!(frames[0]["fields"]["delivery-id"], 7);
    assert!(frames[1]["fields"].get("delivery-id").is_none_or(serde_json::Value::is_null));
    let message = lines.iter().find_map(|l| l.get("message")).expect("the message");
    assert_eq!((message["frames"].clone(), message["size"].clone()), (3.into(), 16.into()));
    assert_eq!(message["body"]["content"][0]["text"], "hello world", "{message}");
    for (bad, words) in [
        (r#"{"performative": "open", "split": 2}"#, "split is for a transfer"),
        (r#"{"performative": "transfer", "data": "x", "split": 9}"#, "at least 9 bytes"),
        (r#"{"performative": "transfer", "data": "x", "split": 0}"#, "at least 1"),
        (r#"{"performative": "transfer", "data": "xyz", "split": 2, "size": 9}"#, "not \"size\""),
    ] {
        let e = encode_lines(bad).expect_err(bad);
        assert!(e.contains(words), "{bad}: {e}");
    }
}

/// A `double` is written with the bits its text stands for, to the last one: shortest
/// texts that a fast float reader gets one unit in the last place wrong (as serde_json's
/// did by default) included. The float of the first came from a fuzzed frame body.
#[test]
fn doubles_and_floats_are_written_with_the_bits_their_text_stands_for() {
    // A frame whose body is the one value: its bytes after the 8-byte frame header.
    let body = |typed: String| {
        let line =
            format!(r#"{{"kind": "frame", "type": "amqp", "channel": 0, "typed": {typed}}}"#);
        encode_lines(&line).unwrap_or_else(|e| panic!("{line}: {e}"))[8..].to_vec()
    };
    let f = f32::from_bits(0x2828_2828);
    for bits in
        [f64::from(f).to_bits(), 0x0010_0000_0000_0001, 1.1f64.to_bits(), 0x3ff0_0000_0000_0001]
    {
        let mut want = vec![0x82];
        want.extend_from_slice(&bits.to_be_bytes());
        assert_eq!(body(format!(r#"{{"double": {:?}}}"#, f64::from_bits(bits))), want, "{bits:#x}");
    }
    assert_eq!(body(format!(r#"{{"float": {:?}}}"#, f64::from(f))), [0x72, 0x28, 0x28, 0x28, 0x28]);
}

/// A stream that breaks off and goes on arriving in pieces (a capture's segments, a
/// relay's reads): each piece after the framing error is a line of its own, and the lines
/// written back are the stream. Masked, the pieces are counted, not shown, and `encode`
/// says it cannot write the stream whole.
#[test]
fn a_stream_that_breaks_off_and_goes_on_in_pieces_comes_back_whole() {
    // A header, an empty frame, then a frame header with doff 0, and more after it.
    let mut stream = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x08\x02\x00\x00\x00".to_vec();
    stream.extend_from_slice(b"\x00\x00\x00\x10\x00\x00\x00\x00more bytes, in three pieces");
    for shown in [true, false] {
        let mut inspector = Inspector::new(DecodeOptions::LENIENT).redact_secrets(!shown);
        let mut lines = String::new();
        for piece in [&stream[..20], &stream[20..30], &stream[30..40], &stream[40..]] {
            inspector.push(piece);
            while let Some(r) = inspector.next_record() {
                for line in record_json(&r) {
                    lines.push_str(&line.to_string());
                    lines.push('\n');
                }
            }
        }
        let undecoded: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .filter(|l: &serde_json::Value| l["kind"] == "undecoded")
            .collect();
        let at: Vec<_> =
            undecoded.iter().map(|l| (l["offset"].clone(), l["bytes"].clone())).collect();
        assert_eq!(at, [(30.into(), 10.into()), (40.into(), (stream.len() - 40).into())]);
        if shown {
            assert_eq!(encode_lines(&lines).expect("the lines"), stream);
        } else {
            assert!(undecoded.iter().all(|l| l["redacted"] == true && l.get("raw").is_none()));
            let e = encode_lines(&lines).expect_err("masked pieces");
            assert!(e.contains("--show-secrets") && e.contains("line 4"), "{e}");
        }
    }
}

/// Fields copied from `decode --json` are written as decode showed them: a trailing
/// `null` a peer wrote is kept (`decode` shows it apart from a field left out), and a
/// described value inside a field (a filter) is taken in the form decode shows it,
/// `{"described": {"descriptor": …, "value": …}}`, a number descriptor a ulong and a text
/// one a symbol.
#[test]
fn fields_copied_from_decode_are_written_as_shown() {
    let body =
        |line: &str| encode_lines(line).unwrap_or_else(|e| panic!("{line}: {e}"))[8..].to_vec();
    // detach: handle 1, closed absent, error null: a list of three (0x40 last).
    assert_eq!(
        body(r#"{"performative": "detach", "fields": {"handle": 1, "error": null}}"#),
        [0x00, 0x53, 0x16, 0xc0, 0x05, 0x03, 0x52, 0x01, 0x40, 0x40]
    );
    assert_eq!(
        body(r#"{"performative": "detach", "fields": {"handle": 1}}"#),
        [0x00, 0x53, 0x16, 0xc0, 0x03, 0x01, 0x52, 0x01]
    );
    let attach = r#"{"performative": "attach", "fields": {"name": "r", "handle": 0, "role": "receiver", "source": {"source": {"address": "q", "filter": {"f": {"described": {"descriptor": 77567109365764, "value": "x"}}, "g": {"described": {"descriptor": "apache.org:selector-filter:string", "value": "y"}}}}}}}"#;
    let bytes = encode_lines(attach).expect("an attach with filters");
    let mut inspector = Inspector::new(DecodeOptions::STRICT);
    inspector.push(&bytes);
    let line = record_json(&inspector.next_record().expect("the frame")).remove(0);
    assert_eq!(
        line["fields"]["source"]["source"]["filter"],
        serde_json::json!({
            "f": {"described": {"descriptor": 77567109365764u64, "value": "x"}},
            "g": {"described": {"descriptor": "apache.org:selector-filter:string", "value": "y"}},
        })
    );
    let typed = line["typed"].to_string();
    assert!(
        typed.contains(r#"{"ulong":77567109365764}"#)
            && typed.contains(r#"{"symbol":"apache.org:selector-filter:string"}"#),
        "{typed}"
    );
}

/// A capture's stream that is not all in its lines is refused rather than written short:
/// one that goes on in TLS after its protocol header, one whose WebSocket framing or file
/// breaks off. The same TLS header written by hand (no capture keys) is written.
#[test]
fn a_capture_s_stream_that_its_lines_do_not_hold_whole_is_refused() {
    let at = r#""packet":4,"time":0.0,"connection":1,"direction":"c2s""#;
    for (line, words) in [
        (
            format!(
                r#"{{"offset":0,"kind":"header","protocol_id":2,"protocol":"TLS","version":"1.0.0",{at}}}"#
            ),
            "goes on in TLS",
        ),
        (
            format!(
                r#"{{"offset":9,"kind":"error","in":"websocket","fatal":true,"error":"a reserved opcode",{at}}}"#
            ),
            "the websocket breaks off here (a reserved opcode)",
        ),
        (
            format!(
                r#"{{"offset":9,"kind":"error","in":"capture","fatal":true,"error":"a damaged block",{at}}}"#
            ),
            "the capture breaks off here",
        ),
    ] {
        let e = encode_lines(&line).expect_err(&line);
        assert!(e.contains(words) && e.contains("cannot be written whole"), "{e}");
    }
    let hand = r#"{"kind":"header","protocol_id":2,"version":"1.0.0"}"#;
    assert_eq!(encode_lines(hand).expect("a TLS header by hand"), b"AMQP\x02\x01\x00\x00");
    // A non-fatal WebSocket error (a text message) writes nothing, as before.
    let text = format!(
        r#"{{"offset":9,"kind":"error","in":"websocket","fatal":false,"error":"text",{at}}}"#
    );
    assert_eq!(encode_lines(&text).expect("a note"), b"");
}

/// Described values with descriptors of other types (an int, a double), which decode
/// shows as plain numbers, come back through fields written by hand; a composite of the
/// spec inside a map is refused with the way to write it.
#[test]
fn described_values_shown_in_fields_come_back_whatever_their_descriptor() {
    let attach = |filter: &str| {
        format!(
            r#"{{"performative": "attach", "fields": {{"name": "r", "handle": 0, "role": "receiver", "source": {{"source": {{"address": "q", "filter": {filter}}}}}}}}}"#
        )
    };
    for filter in [
        r#"{"map": [[{"symbol": "f"}, {"described": [{"int": -1}, "x"]}]]}"#,
        r#"{"map": [[{"symbol": "f"}, {"described": [{"double": 1.5}, "x"]}]]}"#,
    ] {
        let bytes = encode_lines(&attach(filter)).expect("typed");
        amqpwire::fuzzing::fields_written_by_hand(&amqpwire::fuzzing::Shown::new(&bytes));
    }
    let hand = attach(r#"{"f": {"accepted": {}}}"#);
    let e = encode_lines(&hand).expect_err("a composite in a map");
    assert!(e.contains("\"accepted\" is a composite of the spec") && e.contains("typed"), "{e}");
}

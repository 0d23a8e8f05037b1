//! Runs the `amqpwire` binary and checks what it prints and how it exits.

#[path = "support/cli.rs"]
mod cli;

use std::process::Output;

fn amqpwire(args: &[&str], stdin: Option<&[u8]>) -> Output {
    cli::run_with_input(args, stdin.unwrap_or_default())
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect()
}

#[test]
fn decode_html_takes_a_json_trace_however_much_white_space_comes_first() {
    let dir = std::env::temp_dir().join(format!("amqpwire-cli-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let line = r#"{"offset":0,"kind":"frame","type":"amqp","channel":0,"performative":"open","fields":{"container-id":"c"},"direction":"c2s","connection":1,"time":0.5}"#;
    for blank in [0, 10, 100, 5000] {
        let trace = format!("{}{line}\n", "\n".repeat(blank));
        let page = dir.join(format!("page-{blank}.html"));
        let o =
            amqpwire(&["decode", "--html", page.to_str().expect("path")], Some(trace.as_bytes()));
        assert!(o.status.success(), "{blank}: {}", String::from_utf8_lossy(&o.stderr));
        let html = std::fs::read_to_string(&page).expect("page");
        assert!(html.contains(r#""container-id":"c""#), "{blank}: the trace's line is drawn");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn decode_annotates_a_real_capture() {
    let o = amqpwire(&["decode", "tests/fixtures/wire/rhea-to-proton-messages.c2s.bin"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("protocol header AMQP 3 1.0.0 (SASL)"), "{out}");
    assert!(out.contains("mechanism: :ANONYMOUS  [sym8]"));
    assert!(out.contains("container-id: \"amqpwire-rhea-client\"  [str8-utf8]"));
    assert!(out.contains("role: false (sender)"));
    assert!(out.contains("message, "), "transfers carry their decoded message");
    assert!(out.lines().next().expect("a line").starts_with("       0  41 4d 51 50 03 01 00 00"));
}

#[test]
fn decode_json_follows_the_documented_schema() {
    let o = amqpwire(&["decode", "--json", "tests/fixtures/iothub/d2c-transfer.bin"], None);
    assert!(o.status.success());
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    let f = &lines[0];
    assert_eq!(f["kind"], "frame");
    assert_eq!(f["offset"], 0);
    assert_eq!(f["type"], "amqp");
    assert_eq!(f["channel"], 0);
    assert_eq!(f["performative"], "transfer");
    assert_eq!(f["fields"]["delivery-id"], 2045);
    assert_eq!(f["fields"]["delivery-tag"]["binary"], "32303434");
    assert_eq!(f["message"]["properties"]["to"], "/devices/device/messages/events");
    assert_eq!(f["message"]["application-properties"]["temperatureAlert"], "false");
    assert_eq!(f["message"]["body"]["kind"], "data");
    assert_eq!(f["message"]["body"]["content"][0]["size"], 143);
    assert_eq!(f["raw"].as_str().expect("raw hex").len(), 272 * 2);
    // Fields appear in the spec's order.
    let keys: Vec<_> = f["fields"].as_object().expect("fields").keys().cloned().collect();
    assert_eq!(
        keys,
        ["handle", "delivery-id", "delivery-tag", "message-format", "settled", "more"]
    );
}

#[test]
fn decode_reads_hex_from_a_flag_a_file_or_stdin() {
    let hex = "0000001b02000000005315c00e064170000007fd40410053244540";
    for o in [
        amqpwire(&["decode", "--json", "--hex", hex], None),
        amqpwire(
            &["decode", "--json"],
            Some(format!("{}\n{}\n", &hex[..20], &hex[20..]).as_bytes()),
        ),
        amqpwire(
            &["decode", "--json", "-"],
            Some(&std::fs::read("tests/fixtures/iothub/hub-disposition.bin").expect("fixture")),
        ),
    ] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let l = json_lines(&o);
        assert_eq!(l[0]["performative"], "disposition");
        assert_eq!(l[0]["fields"]["first"], 2045);
        assert_eq!(l[0]["fields"]["state"], serde_json::json!({"accepted": {}}));
    }
}

#[test]
fn decode_reads_white_space_alone_as_hex_text_of_no_bytes() {
    // Only hex digits and white space make hex text, white space alone included: an
    // empty stream, not five bytes of a header cut short.
    for input in [&b"\n\n  \n"[..], b"\t", b""] {
        let o = amqpwire(&["decode"], Some(input));
        assert!(o.status.success(), "{input:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{input:?}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "", "{input:?}");
    }
}

#[test]
fn decode_says_how_many_bytes_follow_a_performative_a_strict_decode_refused() {
    // A disposition with two bytes after it: strict decoding refuses the frame, and its
    // JSON still says how many bytes follow, as `payload` gives them.
    let hex = "0000001d02000000005315c00e064170000007fd404100532445406162";
    let o = amqpwire(&["decode", "--json", "--strict", "--hex", hex], None);
    let l = json_lines(&o);
    assert_eq!((&l[0]["payload_size"], &l[0]["payload"]), (&2.into(), &"6162".into()), "{l:?}");
    assert_eq!(l[1]["kind"], "error", "{l:?}");
}

#[test]
fn decode_reports_malformed_input_at_its_offset_and_goes_on() {
    // A header, a disposition whose state has an unknown format code at stream offset 30,
    // then a valid heartbeat: the error is reported and the next frame still decodes.
    let hex =
        "414d515000010000 0000001b02000000005315c00e064170000007fd4041ee53244540 0000000802000000";
    let o = amqpwire(&["decode", "--json", "--hex", hex], None);
    assert_eq!(o.status.code(), Some(1));
    let l = json_lines(&o);
    let kinds: Vec<_> = l.iter().map(|x| x["kind"].as_str().expect("kind").to_owned()).collect();
    assert_eq!(kinds, ["header", "frame", "error", "frame"]);
    assert_eq!(l[2]["offset"], 30);
    assert_eq!(l[2]["fatal"], false);
    assert!(l[2]["error"].as_str().expect("text").contains("0xee"), "{}", l[2]);
    assert_eq!(l[3]["performative"], "empty");
    let text = amqpwire(&["decode", "--hex", hex], None);
    assert!(stdout(&text).contains("! error"));
    assert!(String::from_utf8_lossy(&text.stderr).contains("1 errors"));
}

#[test]
fn decode_names_a_foreign_protocol() {
    let o = amqpwire(&["decode"], Some(b"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("HTTP request"), "{}", stdout(&o));
}

#[test]
fn decode_masks_credentials_unless_asked() {
    let path = "tests/fixtures/wire/rhea-to-rhea-sasl-plain.c2s.bin";
    let masked = stdout(&amqpwire(&["decode", "--json", path], None));
    assert!(!masked.contains(&hex_of(b"secret")), "the PLAIN password leaked");
    assert!(masked.contains("\"redacted\":true"));
    let shown = stdout(&amqpwire(&["decode", "--json", "--show-secrets", path], None));
    assert!(shown.contains(&hex_of(b"secret")));
}

#[test]
fn strict_refuses_what_lenient_accepts_with_a_warning() {
    // An open whose container-id is a symbol instead of a string.
    let hex = "0000001102000000005310c00401a30163";
    let lenient = amqpwire(&["decode", "--json", "--hex", hex], None);
    assert!(lenient.status.success());
    let l = json_lines(&lenient);
    assert_eq!(l[0]["performative"], "open");
    assert!(l[0]["warnings"][0]["warning"].as_str().expect("warning").contains("expected string"));
    let strict = amqpwire(&["decode", "--json", "--strict", "--hex", hex], None);
    assert_eq!(strict.status.code(), Some(1));
    assert_eq!(json_lines(&strict)[1]["kind"], "error");
}

#[test]
fn usage_and_io_errors_exit_2_with_one_line() {
    let o = amqpwire(&["decode", "no/such/file.bin"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("amqpwire: cannot read no/such/file.bin"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let o = amqpwire(&["decode", "--hex", "abc"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("odd number"));
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn decode_survives_an_empty_plain_response_and_names_tls() {
    // sasl-init PLAIN with an empty initial-response: nothing to mask, no panic.
    let o =
        amqpwire(&["decode", "--hex", "00000017 02010000 005341c00a02a305504c41494ea000"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("initial-response: 0x  [vbin8]"));
    // A TLS ClientHello whose sixth byte (0x01) could pass for a SASL frame type.
    let o = amqpwire(&["decode", "--hex", "16030100a5010000a10303"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("TLS ClientHello"), "{}", stdout(&o));
}

/// Part 5, 5.3.2: after the SASL protocol header only SASL frames may come. An AMQP frame
/// there is reported, in strict and lenient mode alike, and so is a SASL frame after the
/// AMQP header; the same frames after the right header decode cleanly.
#[test]
fn decode_reports_a_frame_on_the_wrong_layer_in_every_mode() {
    let sasl = "414d515003010000";
    let amqp = "414d515000010000";
    let disposition = "0000001b02000000005315c00e064170000007fd40410053244540";
    let sasl_outcome = "0000001002010000005344c003015000";
    for (header, frame, what) in [(sasl, disposition, "SASL layer"), (amqp, sasl_outcome, "AMQP")] {
        for mode in ["--strict", "--lenient"] {
            let input = format!("{header}{frame}");
            let o = amqpwire(&["decode", mode, "--hex", &input], None);
            assert_eq!(o.status.code(), Some(1), "{what} {mode}: {}", stdout(&o));
            assert!(stdout(&o).contains("! error: a"), "{what} {mode}: {}", stdout(&o));
            let o = amqpwire(&["decode", mode, "--json", "--hex", &input], None);
            let errors: Vec<_> =
                json_lines(&o).into_iter().filter(|l| l["kind"] == "error").collect();
            assert_eq!(errors.len(), 1, "{what} {mode}");
            assert_eq!(errors[0]["offset"], 13, "the frame type byte");
        }
    }
    for (header, frame) in [(amqp, disposition), (sasl, sasl_outcome)] {
        let o = amqpwire(&["decode", "--hex", &format!("{header}{frame}")], None);
        assert!(o.status.success(), "{}", stdout(&o));
    }
}

#[test]
fn encode_writes_hand_written_frames_and_round_trips_decode() {
    let lines = "{\"kind\":\"header\",\"protocol_id\":0}\n{\"performative\":\"open\",\"fields\":{\"container-id\":\"x\"}}\n";
    let o = amqpwire(&["encode", "--hex"], Some(lines.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hex = stdout(&o).trim().to_owned();
    assert_eq!(hex, "414d5150000100000000001102000000005310c00401a10178");
    // Back through decode: the same bytes from its JSON.
    let json = stdout(&amqpwire(&["decode", "--json", "--hex", &hex], None));
    let o = amqpwire(&["encode", "--hex"], Some(json.as_bytes()));
    assert_eq!(stdout(&o).trim(), hex);
    // A bad line: one line on stderr naming it, status 2.
    let o = amqpwire(&["encode"], Some(b"{\"performative\":\"opne\"}\n"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 1") && err.contains("opne"), "{err}");
}

#[test]
fn encode_says_when_it_writes_credentials_decode_masked() {
    let fixture =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wire/rhea-to-rhea-sasl-plain.c2s.bin");
    let original = std::fs::read(fixture).expect("fixture");
    for (flags, same) in [(&["--json"][..], false), (&["--json", "--show-secrets"][..], true)] {
        let mut args = vec!["decode"];
        args.extend(flags);
        args.push(fixture);
        let json = stdout(&amqpwire(&args, None));
        let o = amqpwire(&["encode"], Some(json.as_bytes()));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout == original, same, "{flags:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.contains("credentials masked by decode"), !same, "{flags:?}: {err}");
    }
}

#[test]
fn a_key_log_given_for_a_byte_stream_is_said_not_to_apply() {
    let o = amqpwire(&["decode", "--hex", "0000000802000000", "--keylog", "keys.log"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--keylog keys.log applies to pcap and pcapng captures"), "{err}");
}

#[test]
fn a_stream_that_starts_with_a_frame_too_small_is_named_as_one() {
    let o = amqpwire(&["decode", "--hex", "0000000402000000"], None);
    assert!(
        stdout(&o).contains("framing error: frame size 4 is below the minimum of 8"),
        "{}",
        stdout(&o)
    );
    // Bytes that are no frame header at all stay unrecognised.
    let o = amqpwire(&["decode", "--hex", "0000000409000000"], None);
    assert!(stdout(&o).contains("no recognised protocol"), "{}", stdout(&o));
}

/// A trace or a capture holds several streams: `encode` writes one, chosen by
/// `--direction` (and `--connection`), and refuses to interleave them.
#[test]
fn encode_writes_one_stream_of_a_trace_and_refuses_to_mix_them() {
    let lines = concat!(
        r#"{"kind":"header","protocol_id":0,"version":"1.0.0","direction":"out","connection":1}"#,
        "\n",
        r#"{"kind":"header","protocol_id":3,"version":"1.0.0","direction":"in","connection":1}"#,
        "\n",
        r#"{"kind":"event","connection":1,"event":"ended: the client closed its side"}"#,
        "\n",
        r#"{"kind":"header","protocol_id":2,"version":"1.0.0","direction":"out","connection":2}"#,
        "\n",
    );
    let o = amqpwire(&["encode", "--hex"], Some(lines.as_bytes()));
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("3 streams (connection 1 out, connection 1 in, connection 2 out)")
            && err.contains("--direction and --connection"),
        "{err}"
    );
    let hex = |args: &[&str]| {
        let o = amqpwire(&[&["encode", "--hex"][..], args].concat(), Some(lines.as_bytes()));
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).trim().replace(' ', "")
    };
    assert_eq!(hex(&["--direction", "in"]), "414d515003010000");
    assert_eq!(hex(&["--direction", "out", "--connection", "2"]), "414d515002010000");
    let o = amqpwire(&["encode", "--direction", "out"], Some(lines.as_bytes()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 streams"), "{o:?}");
    // A stream the lines do not hold: said, not written as nothing.
    let o = amqpwire(&["encode", "--direction", "c2s"], Some(lines.as_bytes()));
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no line is of the stream"), "{o:?}");
    // Lines that name no direction (a capture with no AMQP stream decoded in it, lines
    // written by hand): a choice is refused too, rather than writing nothing or everything.
    let capture = concat!(
        r#"{"offset":0,"kind":"capture","format":"pcapng","big_endian":false}"#,
        "\n",
        r#"{"offset":0,"kind":"info","info":"192.0.2.1:49152 -> 192.0.2.2:5672: no AMQP protocol header; not decoded","packet":1,"time":0.0}"#,
        "\n",
    );
    let o = amqpwire(&["encode", "--direction", "c2s"], Some(capture.as_bytes()));
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no line names its direction"), "{o:?}");
    let o = amqpwire(&["encode", "--direction", "in"], Some(&br#"{"kind":"header"}"#[..]));
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// A pipe whose reader is gone: every write to it fails (`| head` after it ended).
fn closed_pipe() -> std::process::ChildStdin {
    cli::closed_pipe()
}

#[test]
fn a_closed_output_stops_a_command_quietly_and_never_loses_the_page() {
    use std::process::Stdio;
    let run = |args: &[&str], stdout: Stdio, stderr: Stdio| {
        cli::bin()
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .output()
            .expect("amqpwire")
    };
    // Errors to tell on a closed standard error: the status says them, nothing panics
    // (before: "failed printing to stderr", status 101).
    let bad = "414d515000010000 0000001b02000000005315c00e064170000007fd4041ee53244540";
    let o = run(&["decode", "--hex", bad], Stdio::null(), closed_pipe().into());
    assert_eq!(o.status.code(), Some(1));
    // The log (-v) written to a closed standard error: dropped, not a panic.
    let o = run(&["demo", "-v"], Stdio::null(), closed_pipe().into());
    assert_eq!(o.status.code(), Some(0));
    // A case printed to a closed standard output.
    let args = ["fuzz-peer", "--connect", "amqp://127.0.0.1:1", "--seed", "5", "--print-case"];
    let o = run(&args, closed_pipe().into(), Stdio::piped());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // With --html, the page is drawn whole though no one reads the records (before: no
    // page), from a byte stream and from a capture.
    let dir = std::env::temp_dir().join(format!("amqpwire-cli-closed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let capture = dir.join("demo.pcapng");
    let capture = capture.to_str().expect("path");
    let o = run(&["demo", "--pcap", capture], Stdio::null(), Stdio::piped());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, input) in
        [("stream", "tests/fixtures/wire/rhea-to-proton-messages.c2s.bin"), ("capture", capture)]
    {
        let page = dir.join(format!("{name}.html"));
        let args = ["decode", input, "--html", page.to_str().expect("path")];
        let o = run(&args, closed_pipe().into(), Stdio::piped());
        assert_eq!(o.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let html = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(html.contains("\"performative\":\"close\""), "{name}: the last frame is drawn");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn decode_json_writes_no_optional_key_as_null() {
    // Of every fixture and of malformed bodies (a null body, an unknown descriptor, a
    // composite's descriptor on another value): top-level keys are null only where the
    // schema says (`performative`; `typed` of a null body).
    let mut inputs: Vec<Vec<u8>> =
        ["0000000a020000004040", "0000000c020000000053ff45", "0000000e0200000000531000537545"]
            .iter()
            .map(|h| {
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                    .collect()
            })
            .collect();
    for dir in ["tests/fixtures/wire", "tests/fixtures/iothub"] {
        for e in std::fs::read_dir(dir).expect("fixtures") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "bin") {
                inputs.push(std::fs::read(&p).expect("fixture"));
            }
        }
    }
    assert!(inputs.len() > 50);
    for input in &inputs {
        let o = amqpwire(&["decode", "--json", "-"], Some(input));
        for line in json_lines(&o) {
            for (k, v) in line.as_object().expect("an object") {
                let allowed = k == "performative" || k == "typed";
                assert!(!v.is_null() || allowed, "{k} is null: {line}");
            }
        }
    }
}

#[test]
fn hex_text_with_a_stray_character_is_said_to_be_read_as_bytes() {
    let o = amqpwire(&["decode", "-"], Some(b"414d5150 00010000 0000000802000000 zz\n"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("read as bytes, not as hex text: hex input: 'z' at character 35"),
        "{err}"
    );
    // The stray character after the first 64 bytes: said too.
    let late = format!("{}zz\n", "414d5150 00010000 ".repeat(5));
    let o = amqpwire(&["decode", "-"], Some(late.as_bytes()));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("read as bytes, not as hex text: hex input: 'z' at character 90"),
        "{err}"
    );
    // A character that is not ASCII is named as itself, counted in characters.
    let o = amqpwire(&["decode", "--hex", "00\u{e9}1"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("hex input: '\u{e9}' at character 2 is not a hex digit"), "{err}");
    // Bytes that are not text at all are not said to be hex.
    let o = amqpwire(&["decode", "tests/fixtures/wire/rhea-to-proton-messages.c2s.bin"], None);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("hex"), "{o:?}");
}

#[test]
fn a_script_without_a_side_is_told_both_it_may_take() {
    let o = amqpwire(&["script", "x.jsonl"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("<--connect <URL>|--listen <URL>>"), "{err}");
}

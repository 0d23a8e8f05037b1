//! Replays the checked-in fuzz corpus through the same functions the libFuzzer targets
//! call, so every past crash stays fixed and every seed keeps passing.

use std::path::Path;

#[test]
fn replays_every_corpus_file_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for (name, target) in amqpwire::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "no seeds for target {name}");
        for path in entries {
            let data = std::fs::read(&path).expect("seed");
            target(&data);
            replayed += 1;
        }
    }
    assert!(replayed >= 40, "only {replayed} corpus files");
}

#[test]
fn every_fuzz_target_has_a_libfuzzer_wrapper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for (name, _) in amqpwire::fuzzing::TARGETS {
        let p = root.join(format!("{name}.rs"));
        let src = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            src.contains(&format!("amqpwire::fuzzing::{name}(")),
            "{} does not call its target",
            p.display()
        );
    }
}

/// The differential target over every target's corpus, not only its own: whatever bytes
/// any target has collected, every decoder must agree on them.
#[test]
fn every_decoder_agrees_on_every_corpus_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut checked = 0;
    for (name, _) in amqpwire::fuzzing::TARGETS {
        for entry in std::fs::read_dir(root.join(name)).expect("corpus folder") {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("seed");
            amqpwire::fuzzing::differential(&data);
            // Frames carry values after their 8-byte header.
            if data.len() > 8 {
                amqpwire::fuzzing::differential(&data[8..]);
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} files");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// The structure-aware target on random inputs: every generated value decodes
    /// strictly, re-encodes to its bytes, and every decoder agrees on it.
    #[test]
    fn generated_values_decode_re_encode_and_agree(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        amqpwire::fuzzing::structured(&data);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// The stateful engine target on random command sequences.
    #[test]
    fn random_command_sequences_keep_the_engine_invariants(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1500)) {
        amqpwire::fuzzing::engine(&data);
    }
}

/// `decode --json --show-secrets` written back by `encode` is the stream, byte for byte,
/// for every file of every corpus (broken streams and malformed frames most of them) and
/// every fixture of real peers; every frame's fields, written by hand as decode shows
/// them, come back as shown; each decoded line, as an `expect`, matches its bytes; and
/// masking credentials changes bytes to `*` and nothing else.
#[test]
fn every_corpus_file_comes_back_through_decode_json_and_encode() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<_> = amqpwire::fuzzing::TARGETS
        .iter()
        .map(|(name, _)| root.join("fuzz/corpus").join(name))
        .collect();
    dirs.extend(["tests/fixtures/wire", "tests/fixtures/iothub"].map(|d| root.join(d)));
    let mut checked = 0;
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).expect("corpus folder") {
            let path = entry.expect("dir entry").path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("seed");
                let shown = amqpwire::fuzzing::Shown::new(&data);
                amqpwire::fuzzing::encode_gives_back(&shown);
                amqpwire::fuzzing::fields_written_by_hand(&shown);
                amqpwire::fuzzing::decoded_lines_expect_themselves(&shown);
                let masked = amqpwire::inspect::Inspector::inspect_all(
                    &data,
                    amqpwire::codec::DecodeOptions::LENIENT,
                );
                amqpwire::fuzzing::masking_keeps_the_stream_s_shape(&shown.records, &masked);
                amqpwire::fuzzing::plain_passwords_never_show(&shown, &masked);
                checked += 1;
            }
        }
    }
    assert!(checked >= 300, "only {checked} files");
}

/// Every pair of fixtures (both directions of a real exchange), written as a capture over
/// TCP in segments of two sizes and over WebSocket: each direction comes back through
/// `decode --json --show-secrets` and `encode --connection 1 --direction D`.
#[test]
fn every_fixture_exchange_comes_back_from_a_capture_of_it() {
    use amqpwire::capture::{Direction, PcapWriter, WriterOptions};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut pairs = 0;
    for dir in ["wire", "iothub"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("fixtures") {
            let c2s_path = entry.expect("entry").path();
            let name = c2s_path.to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".c2s.bin") else { continue };
            let Ok(s2c) = std::fs::read(format!("{stem}.s2c.bin")) else { continue };
            let c2s = std::fs::read(&c2s_path).expect("fixture");
            for (mss, websocket) in [(1460, false), (7, false), (1460, true)] {
                let opts = WriterOptions { mss, ..WriterOptions::default() };
                let mut w = PcapWriter::new(Vec::new(), opts).expect("writer");
                let t = std::time::UNIX_EPOCH;
                let [a, b] = if websocket {
                    let mask = [1, 2, 3, 4];
                    [
                        amqpwire::fuzzing::ws_upgrade(&c2s, true, 1000, mask),
                        amqpwire::fuzzing::ws_upgrade(&s2c, false, 1000, mask),
                    ]
                } else {
                    [c2s.clone(), s2c.clone()]
                };
                w.write(1, Direction::ClientToServer, &a, t).expect("write");
                w.write(1, Direction::ServerToClient, &b, t).expect("write");
                w.close(1, Direction::ClientToServer, t).expect("close");
                let capture = w.into_inner();
                amqpwire::fuzzing::encode_gives_back_each_direction(
                    &capture,
                    [&c2s, &s2c],
                    websocket,
                );
            }
            pairs += 1;
        }
    }
    assert!(pairs >= 20, "only {pairs} fixture pairs");
}

/// `fuzz/campaign`'s usage errors exit 2 (docs/fuzzing.md), a missing value included,
/// before anything is built.
#[test]
fn the_campaign_script_says_usage_errors_with_status_2() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/campaign");
    for (args, said) in [
        (&["--targets"][..], "--targets needs a list"),
        (&["--out"][..], "--out needs a folder"),
        (&["--store"][..], "--store needs a folder"),
        (&["--cores", "0"][..], "--cores needs a positive whole number"),
        (&["--no-such-option"][..], "unknown argument"),
    ] {
        let out = std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
    }
}

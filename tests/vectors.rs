//! The conformance vectors of `tests/vectors/` (see its README): every committed vector is
//! decoded here with amqpwire, in strict and lenient mode, and must give the verdict, the
//! error kind, the lenient warnings and the value it records; the files must be exactly
//! what the generator (`tests/support/vectors_gen.rs`) writes now; and the differential
//! table of `docs/conformance.md` must be what the harness prints against rhea and Qpid
//! Proton now.
//!
//! `AMQPWIRE_UPDATE_VECTORS=1 cargo test --test vectors` rewrites the vector files (and,
//! with the peers installed, the table in `docs/conformance.md`) instead of comparing.
#![cfg(feature = "json")]

#[path = "support/peers.rs"]
mod peers;
#[path = "support/vectors_decode.rs"]
mod vectors_decode;
#[path = "support/vectors_gen.rs"]
mod vectors_gen;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use amqpwire::codec::DecodeOptions;
use serde_json::Value as Json;

use vectors_decode::{decode, Input, Outcome};
use vectors_gen::{GROUPS, KNOWN_FAILURES};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn updating() -> bool {
    std::env::var_os("AMQPWIRE_UPDATE_VECTORS").is_some_and(|v| v == "1")
}

/// Every vector of every `*.json` file in `tests/vectors/`.
fn committed() -> Vec<Json> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/vectors exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vector files in {}", dir().display());
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        let doc: Json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", f.display()));
        assert_eq!(doc["format"], "amqpwire-conformance-vectors/1", "{}", f.display());
        let vectors =
            doc["vectors"].as_array().unwrap_or_else(|| panic!("{}: no vectors", f.display()));
        out.extend(vectors.iter().cloned());
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn the_files_are_what_the_generator_writes() {
    let vectors = vectors_gen::all();
    let mut stale = Vec::new();
    for group in GROUPS {
        let want = vectors_gen::render(group, &vectors);
        let path = dir().join(format!("{group}.json"));
        if updating() {
            std::fs::create_dir_all(dir()).expect("mkdir");
            std::fs::write(&path, &want).expect("write");
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale vector files (run AMQPWIRE_UPDATE_VECTORS=1 cargo test --test vectors): {stale:?}"
    );
    // No file in the directory that the generator does not write.
    for e in std::fs::read_dir(dir()).expect("dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            assert!(GROUPS.contains(&stem.as_str()), "{} is not a generated group", p.display());
        }
    }
}

#[test]
fn ids_are_unique_and_every_vector_is_complete() {
    let vectors = committed();
    let mut ids = BTreeSet::new();
    for v in &vectors {
        let id = v["id"].as_str().expect("id");
        assert!(ids.insert(id.to_owned()), "{id} twice");
        for key in ["group", "input", "description", "section"] {
            assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{id}: no {key}");
        }
        // The hex may be empty: no bytes at all is a vector too.
        assert!(v["hex"].is_string(), "{id}: no hex");
        assert!(id.starts_with(&format!("{}.", v["group"].as_str().unwrap_or_default())), "{id}");
        for mode in ["strict", "lenient"] {
            match v[mode]["verdict"].as_str() {
                Some("accept") => {}
                Some("reject") => {
                    assert!(v[mode]["error"].is_string(), "{id}: {mode} reject without error")
                }
                other => panic!("{id}: {mode} verdict {other:?}"),
            }
        }
        // Lenient accepts all that strict accepts.
        if v["strict"]["verdict"] == "accept" {
            assert_eq!(v["lenient"]["verdict"], "accept", "{id}");
        }
        let accepted = v["strict"]["verdict"] == "accept" || v["lenient"]["verdict"] == "accept";
        let known = KNOWN_FAILURES.iter().any(|(k, _)| *k == id);
        if !accepted {
            assert!(v.get("value").is_none(), "{id}: a value for a rejected vector");
        } else if !known {
            assert!(v.get("value").is_some(), "{id}: an accepted vector without its value");
        }
    }
    // Every format code of part 1 has vectors, valid and invalid.
    for c in 0x40u8..=0xff {
        if let Some(name) = amqpwire::codec::format::name(c) {
            let hex = format!("{c:02x}");
            let ok = vectors.iter().any(|v| {
                v["input"] == "value" && v["hex"].as_str().is_some_and(|h| h.starts_with(&hex))
            });
            assert!(ok, "no vector for {name} (0x{hex})");
        }
    }
}

/// What a committed vector records for one mode, and whether amqpwire's decode agrees.
fn check_mode(v: &Json, mode: &str, got: &Outcome) -> Result<(), String> {
    let rec = &v[mode];
    match (rec["verdict"].as_str(), got) {
        (Some("accept"), Outcome::Accept { warnings, value }) => {
            let want: Vec<&str> = rec["warnings"]
                .as_array()
                .map(|w| w.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default();
            if mode == "lenient" && want != *warnings {
                return Err(format!("{mode}: warnings {warnings:?}, recorded {want:?}"));
            }
            if mode == "strict" && !warnings.is_empty() {
                return Err(format!("strict decode warned {warnings:?}"));
            }
            // Compared as the file holds it: the JSON text read back (a float's shortest
            // text need not read back to the same double in every JSON reader).
            let value: Json = serde_json::from_str(&value.to_string()).expect("JSON");
            if v.get("value") != Some(&value) {
                return Err(format!("{mode}: value {value}, recorded {:?}", v.get("value")));
            }
            Ok(())
        }
        (Some("reject"), Outcome::Reject { error, offset }) => {
            if rec["error"] != *error {
                return Err(format!("{mode}: error {error}, recorded {}", rec["error"]));
            }
            if rec.get("offset").is_some_and(|o| o != offset) {
                return Err(format!("{mode}: offset {offset}, recorded {}", rec["offset"]));
            }
            Ok(())
        }
        (want, got) => Err(format!("{mode}: recorded {want:?}, amqpwire {got:?}")),
    }
}

#[test]
fn amqpwire_decodes_every_vector_as_recorded() {
    let mut failing = BTreeSet::new();
    let mut report = Vec::new();
    for v in committed() {
        let id = v["id"].as_str().expect("id").to_owned();
        let input = Input::parse(v["input"].as_str().expect("input")).expect("known input");
        let bytes = unhex(v["hex"].as_str().expect("hex"));
        for (mode, opts) in [("strict", DecodeOptions::STRICT), ("lenient", DecodeOptions::LENIENT)]
        {
            if let Err(e) = check_mode(&v, mode, &decode(input, &bytes, opts)) {
                failing.insert(id.clone());
                report.push(format!("{id}: {e}"));
            }
        }
    }
    let known: BTreeSet<String> = KNOWN_FAILURES.iter().map(|(id, _)| (*id).to_owned()).collect();
    assert_eq!(
        failing,
        known,
        "vectors amqpwire decodes otherwise than recorded:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_generator_states_the_spec_and_amqpwire_follows_it() {
    // Where amqpwire's verdict is not the spec's, the vector must be a known failure.
    let vectors = vectors_gen::all();
    let found: BTreeSet<String> =
        vectors_gen::disagreements(&vectors).into_iter().map(|(id, _)| id).collect();
    let known: BTreeSet<String> = KNOWN_FAILURES.iter().map(|(id, _)| (*id).to_owned()).collect();
    assert_eq!(found, known, "{:#?}", vectors_gen::disagreements(&vectors));
    assert!(vectors.len() > 300, "only {} vectors", vectors.len());
}

// ------------------------------------------------------------------ the differential

/// The harness's table, between these markers in `docs/conformance.md`.
const BEGIN: &str = "<!-- BEGIN vectors_table.py -->";
const END: &str = "<!-- END vectors_table.py -->";

/// Runs `tests/peers/vectors_table.py`, which runs every vector through rhea's and Qpid
/// Proton's decoders, and checks that `docs/conformance.md` holds the table it prints.
/// Fails (never skips) when node, rhea or the Proton venv is missing.
#[test]
fn the_published_differential_is_current() {
    peers::node_modules(&["rhea"]);
    let python = peers::venv_python("AMQPWIRE_PROTON_PYTHON", "proton", "Qpid Proton");
    let out = Command::new(&python)
        .arg(Path::new(peers::PEERS).join("vectors_table.py"))
        .env("PROTON_PYTHON", &python)
        .output()
        .expect("run vectors_table.py");
    assert!(
        out.status.success(),
        "vectors_table.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(table.contains("| group |"), "no table in:\n{table}");
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/conformance.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/conformance.md");
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/conformance.md lacks the {BEGIN} … {END} markers")
    };
    let have = doc[b + BEGIN.len()..e].trim();
    if updating() {
        let new = format!("{}{BEGIN}\n{}\n{}", &doc[..b], table.trim(), &doc[e..]);
        std::fs::write(&doc_path, new).expect("write docs/conformance.md");
        return;
    }
    assert_eq!(
        have,
        table.trim(),
        "docs/conformance.md is stale: run AMQPWIRE_UPDATE_VECTORS=1 cargo test --test vectors"
    );
}

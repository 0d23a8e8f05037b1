//! Fuzzing other implementations: cases built from scenarios and mutated by structure, and
//! the verdicts on what the target did. Sans-IO; the campaign that plays cases over real
//! connections and watches the target's process is [`runtime::fuzzpeer`](crate::runtime::fuzzpeer)
//! and the `amqpwire fuzz-peer` command.
//!
//! ```text
//!  scenario (script) --mutate(seed, n)--> case (script) --play--> target
//!                                                          |
//!        finding <-- judge: died? hung? grew? answered with bytes the strict decoder flags?
//!           |
//!        minimise (remove steps while the finding holds) --> finding-NNN.jsonl (replayable)
//! ```
//!
//! A case is an ordinary script ([`crate::script::player`]) that starts with
//! `{"lenient": true}`: its expectations only pace it and bind what the target chose, so a
//! mutation that changes the target's answers never stops the case.

pub mod mutate;
pub mod scenarios;

use crate::codec::DecodeOptions;
use crate::inspect::{Inspector, Record};

/// A fault in what the target sent: what is wrong, in words with its offset, and the bytes
/// of the frame that holds it (hex; empty when the stream cannot be split into frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What the strict decoder says.
    pub what: String,
    /// The whole frame, in hex.
    pub frame: String,
}

/// What the strict decoder finds wrong in bytes the target sent: the first fault of its
/// framing or of a performative or SASL body; `None` when all is well-formed. Message
/// contents are not judged (a broker passes on what it was given), nor a frame cut off by
/// the end of the stream (the connection may have been closed while it was being written).
pub fn strict_fault(received: &[u8]) -> Option<Fault> {
    let mut inspector = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
    inspector.push(received);
    while let Some(r) = inspector.next_record() {
        match r {
            Record::Error(e) => {
                return Some(Fault { what: format!("framing: {e}"), frame: String::new() })
            }
            Record::Frame(f) => {
                let what = match (&f.layer_error, &f.frame) {
                    (Some(why), _) => format!("frame at offset {}: {why}", f.offset),
                    (None, Err(e)) => format!("frame at offset {}: {e}", f.offset),
                    (None, Ok(_)) => continue,
                };
                return Some(Fault { what, frame: crate::inspect::hex(&f.raw) });
            }
            Record::Header { .. } | Record::Truncated { .. } => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_answers_pass_and_malformed_ones_are_named() {
        let good = crate::script::encode::encode_lines(
            r#"{"kind": "header", "protocol_id": 0}
               {"performative": "open", "fields": {"container-id": "x"}}
               {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 0, "delivery-tag": "01"}, "payload": "ffff"}"#,
        )
        .expect("encodes");
        // The message is garbage, but the framing and performatives are sound.
        assert_eq!(strict_fault(&good), None);
        // Cut anywhere: still no fault.
        for n in 0..good.len() {
            assert_eq!(strict_fault(&good[..n]), None, "cut at {n}");
        }
        let bad = crate::script::encode::encode_lines(
            r#"{"kind": "header", "protocol_id": 0}
               {"performative": "open", "fields": {"container-id": {"raw": "a103ffc0c1"}}}"#,
        )
        .expect("encodes");
        let fault = strict_fault(&bad).expect("bad UTF-8 in the open");
        assert!(fault.what.contains("offset 8"), "{fault:?}");
        assert_eq!(fault.frame, crate::inspect::hex(&bad[8..]));
        let tiny = crate::script::encode::encode_lines(
            r#"{"kind": "header", "protocol_id": 0}
               {"kind": "frame", "size": 4, "body": ""}"#,
        )
        .expect("encodes");
        assert!(strict_fault(&tiny).expect("size 4").what.starts_with("framing"));
    }
}

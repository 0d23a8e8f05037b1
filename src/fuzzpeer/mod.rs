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

/// What the strict decoder finds wrong in bytes the target sent: the first fault of its
/// framing or of a performative or SASL body, in words with its offset; `None` when all
/// is well-formed. Message contents are not judged (a broker passes on what it was given),
/// nor a frame cut off by the end of the stream (the connection may have been closed while
/// it was being written).
pub fn strict_fault(received: &[u8]) -> Option<String> {
    let mut inspector = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
    inspector.push(received);
    while let Some(r) = inspector.next_record() {
        match r {
            Record::Error(e) => return Some(format!("framing: {e}")),
            Record::Frame(f) => {
                if let Some(why) = f.layer_error {
                    return Some(format!("frame at offset {}: {why}", f.offset));
                }
                if let Err(e) = &f.frame {
                    return Some(format!("frame at offset {}: {e}", f.offset));
                }
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
        assert!(fault.contains("offset 8"), "{fault}");
        let tiny = crate::script::encode::encode_lines(
            r#"{"kind": "header", "protocol_id": 0}
               {"kind": "frame", "size": 4, "body": ""}"#,
        )
        .expect("encodes");
        assert!(strict_fault(&tiny).expect("size 4").starts_with("framing"));
    }
}

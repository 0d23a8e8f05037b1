//! Fuzzing other implementations: cases built from scenarios and mutated by structure, and
//! the verdicts on what the target did. Sans-IO; the campaign that plays cases over real
//! connections and watches the target's process is `runtime::fuzzpeer` (feature `tokio`)
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

/// Whether a case asks the target to speak something other than AMQP 1.0: it sends raw
/// bytes or a protocol header of another version or protocol. The target may then answer in
/// the protocol it was asked for (an AMQP 0-9-1 broker starts 0-9-1 on its own header), so
/// its bytes are not judged as AMQP 1.0.
pub fn leaves_amqp10(steps: &[serde_json::Value]) -> bool {
    steps.iter().filter_map(|s| s.get("send")).any(|send| {
        match send.get("kind").and_then(serde_json::Value::as_str) {
            Some("raw") => true,
            Some("header") => {
                send.get("version").is_some_and(|v| v != "1.0.0")
                    || send
                        .get("protocol_id")
                        .and_then(serde_json::Value::as_u64)
                        .is_some_and(|p| !matches!(p, 0 | 3))
            }
            _ => send.is_string(),
        }
    })
}

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
    // A protocol header other than AMQP 1.0 (with or without SASL) is the target's answer to
    // a header it does not support: it names the version it speaks and closes (2.2), and
    // what follows is not AMQP 1.0 to judge.
    if let Some(h) = received.get(..8) {
        let amqp10 = h.starts_with(b"AMQP") && matches!(h[4], 0 | 2 | 3) && h[5..] == [1, 0, 0];
        if h.starts_with(b"AMQP") && !amqp10 {
            return None;
        }
    }
    let mut inspector = Inspector::new(DecodeOptions::STRICT).redact_secrets(false);
    inspector.push(received);
    while let Some(r) = inspector.next_record() {
        match r {
            Record::Error { error, .. } => {
                return Some(Fault { what: format!("framing: {error}"), frame: String::new() })
            }
            Record::Frame(f) => {
                let what = match (&f.layer_error, &f.frame) {
                    (Some(why), _) => format!("frame at offset {}: {why}", f.offset),
                    (None, Err(e)) => format!("frame at offset {}: {e}", f.offset),
                    (None, Ok(_)) => continue,
                };
                return Some(Fault { what, frame: crate::inspect::hex(&f.raw) });
            }
            Record::Header { .. } | Record::Truncated { .. } | Record::Undecoded { .. } => {}
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
        // Version negotiation (2.2): another protocol's header, then its own bytes.
        assert_eq!(strict_fault(b"AMQP\x00\x00\x09\x01\x01\x00\x00\x00"), None);
        assert_eq!(strict_fault(b"AMQP\x00\x01\x01\x00"), None);
        assert!(strict_fault(b"AMQP\x00\x01\x00\x00\x00\x00\x00\x04\x02\x00\x00\x00").is_some());
    }
}

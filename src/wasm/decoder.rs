//! The stream decoder of `amqpwire decode` for the inspector page (feature
//! `wasm-inspector`): raw AMQP streams, hex text and pcap/pcapng captures. A module of its
//! own, so that the client module (feature `wasm`) carries no capture reader.

use std::time::Duration;

use serde_json::json;
use wasm_bindgen::prelude::*;

use super::err;
use crate::capture::{
    event_json, event_text, is_capture, CaptureDecoder, CaptureReader, EventKind,
};
use crate::codec::DecodeOptions;
use crate::inspect::json::record_json;
use crate::inspect::{looks_like_hex, parse_hex, render_text, Inspector, Record};

/// Decodes what `amqpwire decode` decodes: a raw AMQP stream (bytes, or hex text), or a
/// pcap or pcapng capture. Returns JSON: `text` (the annotated tree the command prints),
/// `records` (its `--json` lines), `frames` and `errors` (counts).
#[wasm_bindgen]
pub fn decode(input: &[u8], show_secrets: bool) -> Result<String, JsError> {
    if looks_like_hex(input) {
        return decode_bytes(&parse_hex(input).map_err(err)?, show_secrets);
    }
    decode_bytes(input, show_secrets)
}

/// Decodes hex text (white space allowed) as [`decode`] decodes bytes; anything but hex
/// digits is an error.
#[wasm_bindgen(js_name = decodeHex)]
pub fn decode_hex(hex: &str, show_secrets: bool) -> Result<String, JsError> {
    decode_bytes(&parse_hex(hex.as_bytes()).map_err(err)?, show_secrets)
}

fn decode_bytes(input: &[u8], show_secrets: bool) -> Result<String, JsError> {
    let opts = DecodeOptions::LENIENT;
    let (mut text, mut records, mut frames, mut errors) = (String::new(), Vec::new(), 0, 0);
    if is_capture(input) {
        let start = CaptureReader::new(input)
            .ok()
            .and_then(|r| r.packets().find_map(Result::ok))
            .map_or(Duration::ZERO, |p| p.time);
        let mut decoder = CaptureDecoder::new(opts).redact_secrets(!show_secrets);
        let mut drain = |decoder: &mut CaptureDecoder| {
            while let Some(ev) = decoder.next_event() {
                errors += ev.errors();
                frames += usize::from(matches!(ev.kind, EventKind::Record(Record::Frame(_))));
                records.extend(event_json(&ev, start));
                event_text(&ev, start, &mut text);
            }
        };
        match CaptureReader::new(input) {
            Ok(reader) => {
                for block in reader {
                    decoder.push_block(block);
                    drain(&mut decoder);
                }
            }
            Err(e) => decoder.push_block(Err(e)),
        }
        decoder.finish();
        drain(&mut decoder);
    } else {
        let mut inspector = Inspector::new(opts).redact_secrets(!show_secrets);
        inspector.push(input);
        let mut all: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
        all.extend(inspector.finish());
        for rec in &all {
            errors += rec.errors();
            frames += usize::from(matches!(rec, Record::Frame(_)));
            records.extend(record_json(rec));
            render_text(rec, &mut text);
        }
    }
    Ok(json!({"text": text, "records": records, "frames": frames, "errors": errors}).to_string())
}

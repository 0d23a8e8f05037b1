//! The trace module (feature `wasm-trace`): [`Tracer`], which turns the headers and frames
//! an `Engine` kept (`pollTraceFrames`) into the JSON records of `--trace-json`. A module of
//! its own, so that a page that shows no frames loads no decoder of them.

use wasm_bindgen::prelude::*;

use super::{err, unpack_trace_frames};
use crate::codec::DecodeOptions;
use crate::connection::Direction;
use crate::inspect::json::{trace_values, Sink, Writer};
use crate::inspect::Inspector;

/// The trace of one connection: a decoder for each direction, fed every header and frame
/// from the first byte on (each direction is decoded as the stream it is).
#[wasm_bindgen]
pub struct Tracer {
    /// What came in, what went out.
    inspectors: [Inspector; 2],
}

#[wasm_bindgen]
impl Tracer {
    /// A trace that masks passwords, tokens and signatures in its records, unless
    /// `show_secrets`.
    #[wasm_bindgen(constructor)]
    pub fn new(show_secrets: bool) -> Self {
        let new = || Inspector::new(DecodeOptions::LENIENT).redact_secrets(!show_secrets);
        Self { inspectors: [new(), new()] }
    }

    /// The records of `frames` (what `Engine.pollTraceFrames` gave, in the order it gave
    /// them): a JSON array of `--trace-json` records (docs/trace-format.md), each with
    /// `direction` (`in` or `out`), `time` (`time`: seconds, `Engine.elapsed()`) and
    /// `connection` (0, as for the one connection of `send` and `receive`). Bytes that are
    /// not such frames are refused whole, and the trace goes on as before them.
    pub fn records(&mut self, frames: &[u8], time: f64) -> Result<String, JsError> {
        let frames = unpack_trace_frames(frames).map_err(|e| {
            err(format!("trace frames: {e} (not what Engine.pollTraceFrames gives)"))
        })?;
        let mut out = String::new();
        let mut w = Writer::new(&mut out);
        w.begin_array();
        for (direction, raw) in frames {
            let (index, dir) = match direction {
                Direction::In => (0, "in"),
                Direction::Out => (1, "out"),
            };
            let inspector = &mut self.inspectors[index];
            inspector.push(raw);
            while let Some(rec) = inspector.next_record() {
                trace_values(&mut w, &rec, dir, time, 0);
            }
        }
        w.end_array();
        Ok(out)
    }
}

//! The browser binding (`wasm32-unknown-unknown`), exported to JavaScript with
//! `wasm-bindgen` as four modules, each its own build of the crate, so that a page loads
//! only what it uses:
//!
//! ```text
//!   feature wasm            amqpwire.js            Engine (one client connection)
//!   feature wasm-azure      amqpwire-azure.js      the Azure pieces that need no socket:
//!                                                  SAS tokens, CBS, C2D and feedback
//!   feature wasm-trace      amqpwire-trace.js      Tracer: the --trace-json records of
//!                                                  the frames an Engine saw
//!   feature wasm-inspector  amqpwire-inspector.js  decode, decodeHex: `amqpwire decode`
//!                                                  of streams, hex and pcap/pcapng
//!
//!   WebSocket ── bytes ──▶ Engine.handleInput ──▶ pollTransmit ──▶ WebSocket
//!                               │  pollEvents (JSON)      ▲ handleTimeout (setTimeout)
//!                               └─ pollTraceFrames ──▶ Tracer.records ──▶ JSON records
//! ```
//!
//! Nothing here does I/O. `Engine` is one client [`Connection`](crate::connection::Connection)
//! that JavaScript drives the way the tokio runtime's driver does: bytes from the WebSocket
//! go to `Engine::handle_input`; after every input or command it writes what
//! `Engine::poll_transmit` returns, reads `Engine::poll_events`, and sets a timer for
//! `Engine::poll_timeout` that calls `Engine::handle_timeout`. The clock is the browser's
//! (`performance.now()`, through [`crate::time::Instant`]). An engine made with option
//! `trace` keeps every header and frame in and out, packed by [`pack_trace_frame`], for
//! `Engine::poll_trace_frames`; a `Tracer`, from the trace module, which the page loads
//! only when it shows frames, turns them into the JSON records of `--trace-json`.
//! `examples/browser/amqpwire-browser.js` is that loop over the browser's `WebSocket`,
//! with promises; see docs/browser.md.
//!
//! Values cross as JSON text (options, messages, events, trace records) and as byte arrays
//! (`Uint8Array`). Every failure is a thrown `Error` with a message; nothing panics on bad
//! input.

#[cfg(feature = "wasm-azure")]
mod azure;
#[cfg(feature = "wasm")]
mod client;
#[cfg(feature = "wasm-inspector")]
mod decoder;
#[cfg(any(feature = "wasm", feature = "wasm-azure"))]
mod message;
#[cfg(feature = "wasm-trace")]
mod trace;

#[cfg(feature = "wasm-azure")]
pub use azure::*;
#[cfg(feature = "wasm")]
pub use client::*;
#[cfg(feature = "wasm-inspector")]
pub use decoder::{decode, decode_hex};
#[cfg(any(feature = "wasm", feature = "wasm-azure"))]
pub use message::message_from_json;
#[cfg(feature = "wasm-trace")]
pub use trace::Tracer;

use crate::connection::Direction;

/// A JavaScript `Error` with `msg`.
#[cfg(any(
    feature = "wasm",
    feature = "wasm-azure",
    feature = "wasm-trace",
    feature = "wasm-inspector"
))]
fn err(msg: impl std::fmt::Display) -> wasm_bindgen::JsError {
    wasm_bindgen::JsError::new(&msg.to_string())
}

/// Appends one header or frame seen going `direction` to `out`, as the engine hands its
/// trace to the trace module: a byte for the direction (0 in, 1 out), the length as four
/// bytes little-endian, then the bytes.
pub fn pack_trace_frame(out: &mut Vec<u8>, direction: Direction, raw: &[u8]) {
    out.push(match direction {
        Direction::In => 0,
        Direction::Out => 1,
    });
    // A frame's size is a uint (2.3.1), so its length fits; a header is 8 bytes.
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(raw);
}

/// The headers and frames [`pack_trace_frame`] packed into `packed`, in order; an error
/// saying where, and nothing, when `packed` is not such a sequence.
pub fn unpack_trace_frames(packed: &[u8]) -> Result<Vec<(Direction, &[u8])>, String> {
    let mut out = Vec::new();
    let mut rest = packed;
    while let Some((&d, after)) = rest.split_first() {
        let at = packed.len() - rest.len();
        let direction = match d {
            0 => Direction::In,
            1 => Direction::Out,
            other => return Err(format!("byte {at}: direction {other}, not 0 (in) or 1 (out)")),
        };
        let Some((len, after)) = after.split_first_chunk::<4>() else {
            return Err(format!("byte {at}: a length cut short"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err(format!("byte {at}: {len} bytes announced, {} left", after.len()));
        }
        let (raw, after) = after.split_at(len);
        out.push((direction, raw));
        rest = after;
    }
    Ok(out)
}

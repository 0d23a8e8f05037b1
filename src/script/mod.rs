//! Writing any exchange: frames from JSON, malformations included.
//!
//! Sans-IO, above [`inspect`](crate::inspect): [`encode`] turns the JSON lines of the trace
//! format (with the lossless [`typed`](crate::inspect::typed) values `decode --json` adds)
//! and a shorter hand-written form back into bytes.

/// JSON lines to bytes.
pub mod encode;
/// Scripted peers.
pub mod player;
/// Recording a session as a script.
pub mod record;

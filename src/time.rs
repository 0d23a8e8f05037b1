//! The clock the sans-IO engine is given: [`Instant`].
//!
//! It is `std::time::Instant` everywhere except in the browser build (feature `wasm` on
//! `wasm32-unknown-unknown`), where std's clock panics and `web_time::Instant` reads
//! `performance.now()` instead. On other targets `web_time::Instant` *is* std's, so code
//! written against `std::time::Instant` keeps working unchanged.

#[cfg(not(feature = "wasm"))]
pub use std::time::Instant;
#[cfg(feature = "wasm")]
pub use web_time::Instant;

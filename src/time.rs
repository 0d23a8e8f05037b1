//! The clock the sans-IO engine is given: [`Instant`].
//!
//! It is `std::time::Instant` everywhere except in the browser build (features `wasm`,
//! `wasm-azure`, `wasm-trace`, `wasm-inspector`, through `wasm-base`, on `wasm32-unknown-unknown`), where std's clock panics and `web_time::Instant` reads
//! `performance.now()` instead. On other targets `web_time::Instant` *is* std's, so code
//! written against `std::time::Instant` keeps working unchanged.
//!
//! Code that hands instants to the engine (everything under `connection`, the fuzzing
//! engine) must name this one: `std::time::Instant` there breaks the browser build, which
//! `.ci/run` checks (`cargo clippy --no-default-features --features wasm --target
//! wasm32-unknown-unknown`).

#[cfg(not(feature = "wasm-base"))]
pub use std::time::Instant;
#[cfg(feature = "wasm-base")]
pub use web_time::Instant;

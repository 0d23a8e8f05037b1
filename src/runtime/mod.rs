//! The tokio runtime: the engine of [`crate::connection`] on real sockets.
//!
//! So far this holds the [`transport`] layer: URLs (`amqp://`, `amqps://`, `ws://`,
//! `wss://`), TCP, TLS with rustls and the AMQP WebSocket binding, for clients and
//! listeners. A transport is a plain byte stream; the task that drives the sans-IO engine
//! over it sits on top.
//!
//! Built with the `tokio` feature (on by default). Without it the crate has no async, TLS
//! or WebSocket dependency.

pub mod transport;

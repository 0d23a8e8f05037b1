#![forbid(unsafe_code)]
//! amqpwire: an AMQP 1.0 protocol engine.

pub mod codec;
pub mod types;

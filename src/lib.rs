#![forbid(unsafe_code)]
//! amqpwire: an AMQP 1.0 protocol engine.

pub mod codec;
#[macro_use]
pub mod types;
pub mod message;
pub mod frame;
pub mod inspect;
pub mod fuzzing;

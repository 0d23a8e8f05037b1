#![forbid(unsafe_code)]
//! amqpwire: an AMQP 1.0 protocol engine.

pub mod codec;
#[macro_use]
pub mod types;
pub mod frame;
pub mod fuzzing;
pub mod inspect;
pub mod message;

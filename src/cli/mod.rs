//! The subcommands.

pub(crate) mod certs;
pub(crate) mod client;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod fuzz_peer;
pub(crate) mod iothub;
pub(crate) mod proxy;
pub(crate) mod sas;
pub(crate) mod script;
pub(crate) mod serve;
pub(crate) mod trace;

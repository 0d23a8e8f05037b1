//! The subcommands.

pub(crate) mod client;
pub(crate) mod decode;
pub(crate) mod sas;
pub(crate) mod serve;
pub(crate) mod trace;

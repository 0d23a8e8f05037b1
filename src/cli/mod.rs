//! The subcommands.

pub(crate) mod decode;

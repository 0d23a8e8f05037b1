//! The AMQP 1.0 type system (part 1): every primitive type with every encoding, described
//! types, lists, maps and arrays.
//!
//! Two ways to read:
//! - [`ValueRef`], borrowed and lazy, for hot paths: nothing is allocated and strings and
//!   binaries point into the input;
//! - [`Value`], owned and lossless: it remembers the encoding the peer chose, so
//!   `decode → encode` reproduces the input byte for byte.
//!
//! Both refuse malformed input with a [`DecodeError`] at the exact offset; neither allocates
//! for a size or count before checking it against the bytes present.

mod error;
mod fast;
pub mod format;
mod primitive;
mod reader;
mod value;
mod value_ref;

pub use error::{DecodeError, ErrorDetail, ErrorKind, Warning};
pub(crate) use fast::Fast;
pub use format::Fmt;
pub use primitive::{write_shown, Shown, Symbol, Timestamp, Uuid};
pub(crate) use reader::{offset_within, Compound};
pub use reader::{DecodeOptions, Mode, Reader};
pub(crate) use value::{check_array_count, repeated_key, KeyId};
pub use value::{Array, Described, MixedArray, Value, ZERO_WIDTH_SLACK};
pub use value_ref::{ArrayRef, DescribedRef, Descriptor, Iter, ListRef, MapRef, ValueRef};

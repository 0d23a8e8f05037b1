//! Format codes of the AMQP 1.0 type system (part 1, section 1.6).
//!
//! Each constant is the one-octet constructor that precedes an encoded value. The
//! subcategory (high nibble) fixes how many width bytes follow: `0x4_` none, `0x5_` one,
//! `0x6_` two, `0x7_` four, `0x8_` eight, `0x9_` sixteen, `0xa_`/`0xb_` variable with a one-
//! or four-octet size, `0xc_`/`0xd_` compound, `0xe_`/`0xf_` array.

/// 0x00: a described type follows (descriptor, then value).
pub const DESCRIBED: u8 = 0x00;
/// null.
pub const NULL: u8 = 0x40;
/// boolean true, no value octet.
pub const TRUE: u8 = 0x41;
/// boolean false, no value octet.
pub const FALSE: u8 = 0x42;
/// boolean, one value octet (0x00 false, 0x01 true).
pub const BOOLEAN: u8 = 0x56;
/// uint 0, no value octet.
pub const UINT0: u8 = 0x43;
/// ulong 0, no value octet.
pub const ULONG0: u8 = 0x44;
/// list of zero elements.
pub const LIST0: u8 = 0x45;
/// ubyte.
pub const UBYTE: u8 = 0x50;
/// byte.
pub const BYTE: u8 = 0x51;
/// uint in one octet (0..=255).
pub const SMALLUINT: u8 = 0x52;
/// ulong in one octet (0..=255).
pub const SMALLULONG: u8 = 0x53;
/// int in one octet (-128..=127).
pub const SMALLINT: u8 = 0x54;
/// long in one octet (-128..=127).
pub const SMALLLONG: u8 = 0x55;
/// ushort.
pub const USHORT: u8 = 0x60;
/// short.
pub const SHORT: u8 = 0x61;
/// uint in four octets.
pub const UINT: u8 = 0x70;
/// int in four octets.
pub const INT: u8 = 0x71;
/// float (IEEE 754 binary32).
pub const FLOAT: u8 = 0x72;
/// char (UTF-32BE).
pub const CHAR: u8 = 0x73;
/// decimal32 (IEEE 754 decimal32, kept as bits).
pub const DECIMAL32: u8 = 0x74;
/// ulong in eight octets.
pub const ULONG: u8 = 0x80;
/// long in eight octets.
pub const LONG: u8 = 0x81;
/// double (IEEE 754 binary64).
pub const DOUBLE: u8 = 0x82;
/// timestamp (milliseconds since the Unix epoch, signed 64-bit).
pub const TIMESTAMP: u8 = 0x83;
/// decimal64 (kept as bits).
pub const DECIMAL64: u8 = 0x84;
/// decimal128 (kept as bits).
pub const DECIMAL128: u8 = 0x94;
/// uuid (RFC 4122 octets).
pub const UUID: u8 = 0x98;
/// binary with a one-octet size.
pub const VBIN8: u8 = 0xa0;
/// string (UTF-8) with a one-octet size.
pub const STR8: u8 = 0xa1;
/// symbol (ASCII) with a one-octet size.
pub const SYM8: u8 = 0xa3;
/// binary with a four-octet size.
pub const VBIN32: u8 = 0xb0;
/// string with a four-octet size.
pub const STR32: u8 = 0xb1;
/// symbol with a four-octet size.
pub const SYM32: u8 = 0xb3;
/// list with one-octet size and count.
pub const LIST8: u8 = 0xc0;
/// map with one-octet size and count.
pub const MAP8: u8 = 0xc1;
/// list with four-octet size and count.
pub const LIST32: u8 = 0xd0;
/// map with four-octet size and count.
pub const MAP32: u8 = 0xd1;
/// array with one-octet size and count.
pub const ARRAY8: u8 = 0xe0;
/// array with four-octet size and count.
pub const ARRAY32: u8 = 0xf0;

/// How many bytes follow a constructor before the next value, for fixed-width codes, or
/// `None` for variable-width, compound and array codes (and unknown codes).
pub const fn fixed_width(code: u8) -> Option<usize> {
    match code {
        NULL | TRUE | FALSE | UINT0 | ULONG0 | LIST0 => Some(0),
        UBYTE | BYTE | SMALLUINT | SMALLULONG | SMALLINT | SMALLLONG | BOOLEAN => Some(1),
        USHORT | SHORT => Some(2),
        UINT | INT | FLOAT | CHAR | DECIMAL32 => Some(4),
        ULONG | LONG | DOUBLE | TIMESTAMP | DECIMAL64 => Some(8),
        DECIMAL128 | UUID => Some(16),
        _ => None,
    }
}

/// The spec's name for the encoding a format code selects (`"uint"`, `"smalluint"`, `"list8"`, …),
/// or `None` for a code the spec does not define.
pub const fn name(code: u8) -> Option<&'static str> {
    Some(match code {
        DESCRIBED => "described",
        NULL => "null",
        TRUE => "true",
        FALSE => "false",
        BOOLEAN => "boolean",
        UINT0 => "uint0",
        ULONG0 => "ulong0",
        LIST0 => "list0",
        UBYTE => "ubyte",
        BYTE => "byte",
        SMALLUINT => "smalluint",
        SMALLULONG => "smallulong",
        SMALLINT => "smallint",
        SMALLLONG => "smalllong",
        USHORT => "ushort",
        SHORT => "short",
        UINT => "uint",
        INT => "int",
        FLOAT => "float",
        CHAR => "char",
        DECIMAL32 => "decimal32",
        ULONG => "ulong",
        LONG => "long",
        DOUBLE => "double",
        TIMESTAMP => "timestamp",
        DECIMAL64 => "decimal64",
        DECIMAL128 => "decimal128",
        UUID => "uuid",
        VBIN8 => "vbin8",
        STR8 => "str8-utf8",
        SYM8 => "sym8",
        VBIN32 => "vbin32",
        STR32 => "str32-utf8",
        SYM32 => "sym32",
        LIST8 => "list8",
        MAP8 => "map8",
        LIST32 => "list32",
        MAP32 => "map32",
        ARRAY8 => "array8",
        ARRAY32 => "array32",
        _ => return None,
    })
}

/// The encoding a value should use when it is encoded.
///
/// Values decoded by the lossless decoder carry [`Fmt::Code`] with the constructor the peer
/// chose, so that re-encoding reproduces the input. Values built by code carry [`Fmt::Auto`]
/// and encode canonically (the smallest encoding that holds them). A [`Fmt::Code`] that cannot
/// hold the value (for example `smalluint` for 300) falls back to the canonical choice, so
/// encoding never fails and never truncates.
///
/// `Fmt` never takes part in equality: two values are equal when their meaning is.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
pub enum Fmt {
    /// The smallest encoding that holds the value.
    #[default]
    Auto,
    /// This exact format code, when it can hold the value.
    Code(u8),
}

//! The generator of the conformance vectors in `tests/vectors/`: every vector's bytes are
//! built here with amqpwire's encoder (then cut or patched for the malformed ones), and
//! every vector states the verdict the OASIS AMQP 1.0 specification gives it, with the
//! section that decides. amqpwire's own decode of each vector (error kind and offset,
//! lenient warnings, decoded value) is recorded beside it; where amqpwire disagrees with
//! the spec, the vector must be listed in [`KNOWN_FAILURES`].

use amqpwire::codec::format as fc;
use amqpwire::codec::{Array, DecodeOptions, Described, Fmt, Symbol, Timestamp, Uuid, Value};
use serde_json::{Map, Value as Json};

use super::vectors_decode::{decode, Input, Outcome};

/// Vectors on which amqpwire knowingly disagrees with the spec's verdict, with why. The
/// test asserts this list exactly, so a fix or a regression shows.
pub(crate) const KNOWN_FAILURES: &[(&str, &str)] = &[];

/// The groups, one file each.
pub(crate) const GROUPS: &[&str] = &["types", "performatives", "messages", "framing"];

/// The spec's verdict in one mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exp {
    Accept,
    /// Refused, with the error kind amqpwire reports for it.
    Reject(&'static str),
}

pub(crate) struct Vector {
    pub(crate) id: String,
    pub(crate) group: &'static str,
    pub(crate) input: Input,
    pub(crate) description: String,
    pub(crate) section: &'static str,
    pub(crate) bytes: Vec<u8>,
    pub(crate) strict: Exp,
    pub(crate) lenient: Exp,
    /// The verdict follows from a resource limit the spec leaves to implementations.
    pub(crate) limit: Option<&'static str>,
}

struct B {
    group: &'static str,
    input: Input,
    out: Vec<Vector>,
}

impl B {
    fn new(group: &'static str, input: Input) -> Self {
        Self { group, input, out: Vec::new() }
    }

    fn push(
        &mut self,
        id: &str,
        section: &'static str,
        desc: &str,
        bytes: Vec<u8>,
        s: Exp,
        l: Exp,
    ) {
        let id = format!("{}.{id}", self.group);
        assert!(!self.out.iter().any(|v| v.id == id), "duplicate vector id {id}");
        self.out.push(Vector {
            id,
            group: self.group,
            input: self.input,
            description: desc.to_owned(),
            section,
            bytes,
            strict: s,
            lenient: l,
            limit: None,
        });
    }

    /// Valid in both modes.
    fn ok(&mut self, id: &str, section: &'static str, desc: &str, bytes: Vec<u8>) {
        self.push(id, section, desc, bytes, Exp::Accept, Exp::Accept);
    }

    /// Invalid in both modes.
    fn bad(
        &mut self,
        id: &str,
        section: &'static str,
        desc: &str,
        bytes: Vec<u8>,
        kind: &'static str,
    ) {
        self.push(id, section, desc, bytes, Exp::Reject(kind), Exp::Reject(kind));
    }

    /// Invalid (strict), but accepted with a warning by a lenient decoder.
    fn dev(
        &mut self,
        id: &str,
        section: &'static str,
        desc: &str,
        bytes: Vec<u8>,
        kind: &'static str,
    ) {
        self.push(id, section, desc, bytes, Exp::Reject(kind), Exp::Accept);
    }

    /// Refused because of an implementation limit the spec allows.
    fn limit(
        &mut self,
        id: &str,
        section: &'static str,
        desc: &str,
        bytes: Vec<u8>,
        kind: &'static str,
        limit: &'static str,
    ) {
        self.bad(id, section, desc, bytes, kind);
        self.out.last_mut().expect("pushed").limit = Some(limit);
    }

    /// Every cut of `bytes` at the lengths `at` (each shorter than `bytes`): truncated.
    fn cuts(&mut self, id: &str, section: &'static str, what: &str, bytes: &[u8], at: &[usize]) {
        for &n in at {
            assert!(n < bytes.len(), "{id}: cut at {n} of {}", bytes.len());
            let desc = format!("{what}, cut after {n} of its {} bytes", bytes.len());
            self.bad(&format!("{id}-cut-{n}"), section, &desc, bytes[..n].to_vec(), "truncated");
        }
    }
}

// ------------------------------------------------------------------ building values

fn enc(v: &Value) -> Vec<u8> {
    v.to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn code(c: u8) -> Fmt {
    Fmt::Code(c)
}

fn str_(s: &str) -> Value {
    Value::String(s.into(), Fmt::Auto)
}

fn sym(s: &str) -> Value {
    Value::Symbol(Symbol::from(s), Fmt::Auto)
}

fn uint(n: u32) -> Value {
    Value::Uint(n, Fmt::Auto)
}

fn ulong(n: u64) -> Value {
    Value::Ulong(n, Fmt::Auto)
}

fn bin(b: &[u8]) -> Value {
    Value::Binary(b.to_vec().into(), Fmt::Auto)
}

fn list(items: Vec<Value>) -> Value {
    Value::List(items, Fmt::Auto)
}

fn map(pairs: Vec<(Value, Value)>) -> Value {
    Value::Map(pairs, Fmt::Auto)
}

fn described(descriptor: Value, value: Value) -> Value {
    Value::Described(Box::new(Described { descriptor, value }))
}

/// A composite with a numeric descriptor and its fields as a list.
fn composite(code: u64, fields: Vec<Value>) -> Value {
    described(ulong(code), list(fields))
}

/// `list8` holding `n` nested lists, innermost empty (`list0`): `n + 1` levels.
fn nested_lists(n: usize) -> Value {
    let mut v = list(vec![]);
    for _ in 0..n {
        v = list(vec![v]);
    }
    v
}

/// A string's encoding with the UTF-8 bytes replaced by `raw` (same length or not).
fn str8_raw(raw: &[u8]) -> Vec<u8> {
    cat(&[&[fc::STR8, raw.len() as u8], raw])
}

fn str32_raw(raw: &[u8]) -> Vec<u8> {
    cat(&[&[fc::STR32], &(raw.len() as u32).to_be_bytes(), raw])
}

fn sym8_raw(raw: &[u8]) -> Vec<u8> {
    cat(&[&[fc::SYM8, raw.len() as u8], raw])
}

fn sym32_raw(raw: &[u8]) -> Vec<u8> {
    cat(&[&[fc::SYM32], &(raw.len() as u32).to_be_bytes(), raw])
}

// ------------------------------------------------------------------ types (part 1)

const S_NULL: &str = "1.6.1 null";
const S_BOOL: &str = "1.6.2 boolean";
const S_UBYTE: &str = "1.6.3 ubyte";
const S_USHORT: &str = "1.6.4 ushort";
const S_UINT: &str = "1.6.5 uint";
const S_ULONG: &str = "1.6.6 ulong";
const S_BYTE: &str = "1.6.7 byte";
const S_SHORT: &str = "1.6.8 short";
const S_INT: &str = "1.6.9 int";
const S_LONG: &str = "1.6.10 long";
const S_FLOAT: &str = "1.6.11 float";
const S_DOUBLE: &str = "1.6.12 double";
const S_DEC32: &str = "1.6.13 decimal32";
const S_DEC64: &str = "1.6.14 decimal64";
const S_DEC128: &str = "1.6.15 decimal128";
const S_CHAR: &str = "1.6.16 char";
const S_TS: &str = "1.6.17 timestamp";
const S_UUID: &str = "1.6.18 uuid";
const S_BIN: &str = "1.6.19 binary";
const S_STR: &str = "1.6.20 string";
const S_SYM: &str = "1.6.21 symbol";
const S_LIST: &str = "1.6.22 list";
const S_MAP: &str = "1.6.23 map";
const S_ARRAY: &str = "1.6.24 array";
const S_DESC: &str = "1.2 type encodings (described format code)";
const S_CODES: &str = "1.2 type encodings (format code table)";
const S_COMPOUND: &str = "1.3 compound encodings (size and count)";
const S_EXACT: &str = "1.2 type encodings (one value; the bytes after it are not part of it)";

fn types() -> Vec<Vector> {
    let mut b = B::new("types", Input::Value);
    let t = &mut b;

    // null and booleans.
    t.ok("null", S_NULL, "null", vec![fc::NULL]);
    t.cuts("null", S_NULL, "nothing at all", &[fc::NULL], &[0]);
    t.ok("true", S_BOOL, "boolean true, zero-width 0x41", enc(&Value::Boolean(true, Fmt::Auto)));
    t.ok("false", S_BOOL, "boolean false, zero-width 0x42", enc(&Value::Boolean(false, Fmt::Auto)));
    let b1 = enc(&Value::Boolean(true, code(fc::BOOLEAN)));
    t.ok("boolean-true", S_BOOL, "boolean true in the one-octet form 0x56 01", b1.clone());
    t.ok(
        "boolean-false",
        S_BOOL,
        "boolean false in the one-octet form 0x56 00",
        enc(&Value::Boolean(false, code(fc::BOOLEAN))),
    );
    t.dev(
        "boolean-octet-02",
        S_BOOL,
        "boolean 0x56 with octet 0x02: only 0x00 (false) and 0x01 (true) are defined",
        vec![fc::BOOLEAN, 2],
        "invalid-boolean",
    );
    t.dev(
        "boolean-octet-ff",
        S_BOOL,
        "boolean 0x56 with octet 0xff",
        vec![fc::BOOLEAN, 0xff],
        "invalid-boolean",
    );
    t.cuts("boolean", S_BOOL, "boolean 0x56 01", &b1, &[1]);

    // Unsigned integers: every width, canonical and not, boundaries.
    t.ok("ubyte-0", S_UBYTE, "ubyte 0", enc(&Value::Ubyte(0)));
    t.ok("ubyte-max", S_UBYTE, "ubyte 255", enc(&Value::Ubyte(255)));
    t.cuts("ubyte", S_UBYTE, "ubyte 255", &enc(&Value::Ubyte(255)), &[1]);
    t.ok("ushort-0", S_USHORT, "ushort 0", enc(&Value::Ushort(0)));
    t.ok("ushort-max", S_USHORT, "ushort 65535", enc(&Value::Ushort(u16::MAX)));
    t.cuts("ushort", S_USHORT, "ushort 65535", &enc(&Value::Ushort(u16::MAX)), &[1, 2]);

    t.ok("uint-0-uint0", S_UINT, "uint 0 as uint0 0x43 (canonical)", enc(&uint(0)));
    t.ok(
        "uint-0-smalluint",
        S_UINT,
        "uint 0 as smalluint 0x52 00 (non-canonical, valid)",
        enc(&Value::Uint(0, code(fc::SMALLUINT))),
    );
    t.ok(
        "uint-0-uint",
        S_UINT,
        "uint 0 as uint 0x70 00000000 (non-canonical, valid)",
        enc(&Value::Uint(0, code(fc::UINT))),
    );
    t.ok("uint-255-smalluint", S_UINT, "uint 255, the largest smalluint", enc(&uint(255)));
    t.ok(
        "uint-255-uint",
        S_UINT,
        "uint 255 as uint 0x70 (non-canonical)",
        enc(&Value::Uint(255, code(fc::UINT))),
    );
    t.ok("uint-256", S_UINT, "uint 256, the smallest that needs 0x70", enc(&uint(256)));
    t.ok("uint-max", S_UINT, "uint 4294967295", enc(&uint(u32::MAX)));
    t.cuts("smalluint", S_UINT, "smalluint 255", &enc(&uint(255)), &[1]);
    t.cuts("uint", S_UINT, "uint 4294967295", &enc(&uint(u32::MAX)), &[1, 2, 4]);

    t.ok("ulong-0-ulong0", S_ULONG, "ulong 0 as ulong0 0x44 (canonical)", enc(&ulong(0)));
    t.ok(
        "ulong-0-smallulong",
        S_ULONG,
        "ulong 0 as smallulong 0x53 00 (non-canonical)",
        enc(&Value::Ulong(0, code(fc::SMALLULONG))),
    );
    t.ok(
        "ulong-0-ulong",
        S_ULONG,
        "ulong 0 as ulong 0x80 and eight zero octets (non-canonical)",
        enc(&Value::Ulong(0, code(fc::ULONG))),
    );
    t.ok("ulong-255-smallulong", S_ULONG, "ulong 255, the largest smallulong", enc(&ulong(255)));
    t.ok("ulong-256", S_ULONG, "ulong 256", enc(&ulong(256)));
    t.ok(
        "ulong-max",
        S_ULONG,
        "ulong 18446744073709551615 (above 2^53: exact integers needed)",
        enc(&ulong(u64::MAX)),
    );
    t.cuts("smallulong", S_ULONG, "smallulong 255", &enc(&ulong(255)), &[1]);
    t.cuts("ulong", S_ULONG, "ulong max", &enc(&ulong(u64::MAX)), &[1, 5, 8]);

    // Signed integers.
    t.ok("byte-min", S_BYTE, "byte -128", enc(&Value::Byte(i8::MIN)));
    t.ok("byte-max", S_BYTE, "byte 127", enc(&Value::Byte(i8::MAX)));
    t.cuts("byte", S_BYTE, "byte -128", &enc(&Value::Byte(i8::MIN)), &[1]);
    t.ok("short-min", S_SHORT, "short -32768", enc(&Value::Short(i16::MIN)));
    t.ok("short-max", S_SHORT, "short 32767", enc(&Value::Short(i16::MAX)));
    t.cuts("short", S_SHORT, "short -32768", &enc(&Value::Short(i16::MIN)), &[1, 2]);
    t.ok(
        "int-smallint-min",
        S_INT,
        "int -128 as smallint 0x54 80",
        enc(&Value::Int(-128, Fmt::Auto)),
    );
    t.ok(
        "int-smallint-max",
        S_INT,
        "int 127 as smallint 0x54 7f",
        enc(&Value::Int(127, Fmt::Auto)),
    );
    t.ok(
        "int-128",
        S_INT,
        "int 128, the smallest positive that needs 0x71",
        enc(&Value::Int(128, Fmt::Auto)),
    );
    t.ok("int-min", S_INT, "int -2147483648", enc(&Value::Int(i32::MIN, Fmt::Auto)));
    t.ok("int-max", S_INT, "int 2147483647", enc(&Value::Int(i32::MAX, Fmt::Auto)));
    t.ok(
        "int-minus-1-int",
        S_INT,
        "int -1 as int 0x71 ffffffff (non-canonical)",
        enc(&Value::Int(-1, code(fc::INT))),
    );
    t.cuts("smallint", S_INT, "smallint -128", &enc(&Value::Int(-128, Fmt::Auto)), &[1]);
    t.cuts("int", S_INT, "int min", &enc(&Value::Int(i32::MIN, Fmt::Auto)), &[1, 3]);
    t.ok(
        "long-smalllong-min",
        S_LONG,
        "long -128 as smalllong 0x55 80",
        enc(&Value::Long(-128, Fmt::Auto)),
    );
    t.ok(
        "long-smalllong-max",
        S_LONG,
        "long 127 as smalllong 0x55 7f",
        enc(&Value::Long(127, Fmt::Auto)),
    );
    t.ok("long-min", S_LONG, "long -9223372036854775808", enc(&Value::Long(i64::MIN, Fmt::Auto)));
    t.ok("long-max", S_LONG, "long 9223372036854775807", enc(&Value::Long(i64::MAX, Fmt::Auto)));
    t.ok(
        "long-minus-1-long",
        S_LONG,
        "long -1 as long 0x81 (non-canonical)",
        enc(&Value::Long(-1, code(fc::LONG))),
    );
    t.cuts("smalllong", S_LONG, "smalllong -128", &enc(&Value::Long(-128, Fmt::Auto)), &[1]);
    t.cuts("long", S_LONG, "long min", &enc(&Value::Long(i64::MIN, Fmt::Auto)), &[1, 8]);

    // Floating point: IEEE 754 binary32 / binary64, every special value.
    for (id, desc, v) in [
        ("float-1.5", "float 1.5", 1.5f32),
        ("float-neg-zero", "float -0.0", -0.0),
        ("float-min-subnormal", "float, the smallest subnormal", f32::from_bits(1)),
        ("float-max", "float, the largest finite", f32::MAX),
        ("float-inf", "float +infinity", f32::INFINITY),
        ("float-neg-inf", "float -infinity", f32::NEG_INFINITY),
        ("float-nan", "float quiet NaN 7fc00000", f32::NAN),
    ] {
        t.ok(id, S_FLOAT, desc, enc(&Value::Float(v)));
    }
    t.cuts("float", S_FLOAT, "float 1.5", &enc(&Value::Float(1.5)), &[1, 3]);
    for (id, desc, v) in [
        ("double-1.5", "double 1.5", 1.5f64),
        ("double-neg-zero", "double -0.0", -0.0),
        ("double-max", "double, the largest finite", f64::MAX),
        ("double-inf", "double +infinity", f64::INFINITY),
        ("double-nan", "double quiet NaN 7ff8000000000000", f64::NAN),
    ] {
        t.ok(id, S_DOUBLE, desc, enc(&Value::Double(v)));
    }
    t.cuts("double", S_DOUBLE, "double 1.5", &enc(&Value::Double(1.5)), &[1, 7]);

    // Decimals: the IEEE 754 decimal bits, carried as they are.
    t.ok(
        "decimal32",
        S_DEC32,
        "decimal32 bits 22500001 (1, exponent 0)",
        enc(&Value::Decimal32([0x22, 0x50, 0, 1])),
    );
    t.cuts("decimal32", S_DEC32, "decimal32", &enc(&Value::Decimal32([0x22, 0x50, 0, 1])), &[1, 4]);
    let d64 = [0x22, 0x38, 0, 0, 0, 0, 0, 1];
    t.ok("decimal64", S_DEC64, "decimal64 bits 2238000000000001", enc(&Value::Decimal64(d64)));
    t.cuts("decimal64", S_DEC64, "decimal64", &enc(&Value::Decimal64(d64)), &[1, 8]);
    let mut d128 = [0u8; 16];
    d128[0] = 0x22;
    d128[1] = 0x08;
    d128[15] = 1;
    t.ok("decimal128", S_DEC128, "decimal128 bits 2208…01", enc(&Value::Decimal128(d128)));
    t.cuts("decimal128", S_DEC128, "decimal128", &enc(&Value::Decimal128(d128)), &[1, 16]);

    // char: a UTF-32BE Unicode scalar value.
    t.ok("char-a", S_CHAR, "char 'A'", enc(&Value::Char('A')));
    t.ok("char-nul", S_CHAR, "char U+0000", enc(&Value::Char('\0')));
    t.ok("char-emoji", S_CHAR, "char U+1F600, outside the BMP", enc(&Value::Char('\u{1f600}')));
    t.ok("char-max", S_CHAR, "char U+10FFFF, the last code point", enc(&Value::Char('\u{10ffff}')));
    t.dev(
        "char-surrogate",
        S_CHAR,
        "char 0x0000d800: a UTF-16 surrogate is not a Unicode character",
        cat(&[&[fc::CHAR], &0xd800u32.to_be_bytes()]),
        "invalid-char",
    );
    t.dev(
        "char-beyond-unicode",
        S_CHAR,
        "char 0x00110000: past U+10FFFF",
        cat(&[&[fc::CHAR], &0x11_0000u32.to_be_bytes()]),
        "invalid-char",
    );
    t.cuts("char", S_CHAR, "char 'A'", &enc(&Value::Char('A')), &[1, 4]);

    // timestamp and uuid.
    t.ok(
        "timestamp-epoch",
        S_TS,
        "timestamp 0 (1970-01-01T00:00:00Z)",
        enc(&Value::Timestamp(Timestamp(0))),
    );
    t.ok(
        "timestamp-negative",
        S_TS,
        "timestamp -1 ms (before the epoch: the type is signed)",
        enc(&Value::Timestamp(Timestamp(-1))),
    );
    t.ok(
        "timestamp-2023",
        S_TS,
        "timestamp 1700000000000",
        enc(&Value::Timestamp(Timestamp(1_700_000_000_000))),
    );
    t.ok("timestamp-max", S_TS, "timestamp i64::MAX", enc(&Value::Timestamp(Timestamp(i64::MAX))));
    t.cuts("timestamp", S_TS, "timestamp", &enc(&Value::Timestamp(Timestamp(0))), &[1, 8]);
    let mut u = [0u8; 16];
    for (i, x) in u.iter_mut().enumerate() {
        *x = i as u8;
    }
    t.ok("uuid", S_UUID, "uuid 00010203-0405-0607-0809-0a0b0c0d0e0f", enc(&Value::Uuid(Uuid(u))));
    t.cuts("uuid", S_UUID, "uuid", &enc(&Value::Uuid(Uuid(u))), &[1, 9, 16]);

    // binary.
    t.ok("vbin8-empty", S_BIN, "binary of zero octets, vbin8", enc(&bin(b"")));
    t.ok("vbin8", S_BIN, "binary 010203, vbin8", enc(&bin(&[1, 2, 3])));
    t.ok("vbin8-255", S_BIN, "binary of 255 octets, the largest vbin8", enc(&bin(&[0xab; 255])));
    t.ok("vbin32-256", S_BIN, "binary of 256 octets, vbin32", enc(&bin(&[0xcd; 256])));
    t.ok(
        "vbin32-small",
        S_BIN,
        "binary 010203 as vbin32 (non-canonical)",
        enc(&Value::Binary(vec![1, 2, 3].into(), code(fc::VBIN32))),
    );
    t.ok(
        "vbin32-empty",
        S_BIN,
        "binary of zero octets as vbin32",
        enc(&Value::Binary(Vec::new().into(), code(fc::VBIN32))),
    );
    t.cuts("vbin8", S_BIN, "vbin8 of 3 octets", &enc(&bin(&[1, 2, 3])), &[1, 2, 4]);
    t.cuts(
        "vbin32",
        S_BIN,
        "vbin32 of 3 octets",
        &enc(&Value::Binary(vec![1, 2, 3].into(), code(fc::VBIN32))),
        &[1, 3, 5, 7],
    );
    t.bad(
        "vbin8-size-past-end",
        S_BIN,
        "vbin8 whose size (200) is larger than the 2 octets that follow",
        vec![fc::VBIN8, 200, 1, 2],
        "truncated",
    );
    t.bad(
        "vbin32-size-4g",
        S_BIN,
        "vbin32 claiming 4294967295 octets with 2 present (must not allocate)",
        cat(&[&[fc::VBIN32], &u32::MAX.to_be_bytes(), &[1, 2]]),
        "truncated",
    );

    // string: UTF-8.
    t.ok("str8-empty", S_STR, "the empty string, str8", enc(&str_("")));
    t.ok("str8-hello", S_STR, "\"hello\", str8", enc(&str_("hello")));
    t.ok(
        "str8-multibyte",
        S_STR,
        "\"é€😀\": two-, three- and four-octet UTF-8 sequences",
        enc(&str_("é€😀")),
    );
    t.ok("str8-nul", S_STR, "a string holding U+0000", enc(&str_("a\0b")));
    t.ok(
        "str8-255",
        S_STR,
        "a string of 255 octets, the largest str8",
        enc(&str_(&"x".repeat(255))),
    );
    t.ok("str32-256", S_STR, "a string of 256 octets, str32", enc(&str_(&"y".repeat(256))));
    t.ok(
        "str32-small",
        S_STR,
        "\"hello\" as str32 (non-canonical)",
        enc(&Value::String("hello".into(), code(fc::STR32))),
    );
    t.ok(
        "str8-bom",
        S_STR,
        "a string starting with U+FEFF (kept, not a byte-order mark)",
        enc(&str_("\u{feff}x")),
    );
    for (id, desc, raw) in [
        ("ff", "octet 0xff, never valid in UTF-8", &b"\xff"[..]),
        ("lone-continuation", "a lone continuation octet 0x80", b"a\x80b"),
        ("bad-continuation", "0xc3 followed by 0x28, not a continuation octet", b"\xc3\x28"),
        ("overlong-nul", "0xc0 0x80, an overlong encoding of U+0000", b"\xc0\x80"),
        ("overlong-slash", "0xe0 0x80 0xaf, an overlong '/'", b"\xe0\x80\xaf"),
        (
            "surrogate",
            "0xed 0xa0 0x80, a UTF-16 surrogate encoded in UTF-8 (CESU-8)",
            b"\xed\xa0\x80",
        ),
        ("beyond-unicode", "0xf4 0x90 0x80 0x80, past U+10FFFF", b"\xf4\x90\x80\x80"),
        ("cut-sequence", "0xe2 0x82, a three-octet sequence cut short by the size", b"\xe2\x82"),
    ] {
        t.dev(
            &format!("str8-utf8-{id}"),
            S_STR,
            &format!("str8 with {desc}"),
            str8_raw(raw),
            "invalid-utf8",
        );
    }
    t.dev("str32-utf8-ff", S_STR, "str32 with octet 0xff", str32_raw(b"ab\xff"), "invalid-utf8");
    t.cuts("str8", S_STR, "str8 \"hello\"", &enc(&str_("hello")), &[1, 2, 6]);
    t.cuts(
        "str32",
        S_STR,
        "str32 \"hello\"",
        &enc(&Value::String("hello".into(), code(fc::STR32))),
        &[1, 4, 5, 9],
    );
    t.bad(
        "str8-size-past-end",
        S_STR,
        "str8 whose size (10) is larger than the 5 octets that follow",
        cat(&[&[fc::STR8, 10], b"hello"]),
        "truncated",
    );
    t.bad(
        "str32-size-4g",
        S_STR,
        "str32 claiming 4294967295 octets with 5 present",
        cat(&[&[fc::STR32], &u32::MAX.to_be_bytes(), b"hello"]),
        "truncated",
    );

    // symbol: ASCII.
    t.ok("sym8-empty", S_SYM, "the empty symbol, sym8", enc(&sym("")));
    t.ok("sym8", S_SYM, "symbol amqp:accepted:list, sym8", enc(&sym("amqp:accepted:list")));
    t.ok(
        "sym8-255",
        S_SYM,
        "a symbol of 255 octets, the largest sym8",
        enc(&sym(&"s".repeat(255))),
    );
    t.ok("sym32-256", S_SYM, "a symbol of 256 octets, sym32", enc(&sym(&"t".repeat(256))));
    t.ok(
        "sym32-small",
        S_SYM,
        "symbol PLAIN as sym32 (non-canonical)",
        enc(&Value::Symbol(Symbol::from("PLAIN"), code(fc::SYM32))),
    );
    t.ok(
        "sym8-control",
        S_SYM,
        "a symbol holding ASCII control characters (0x01, 0x7f): still ASCII",
        sym8_raw(b"a\x01\x7f"),
    );
    t.dev(
        "sym8-utf8",
        S_SYM,
        "sym8 \"é\": valid UTF-8 but not ASCII",
        sym8_raw("é".as_bytes()),
        "invalid-symbol",
    );
    t.dev(
        "sym8-high-octet",
        S_SYM,
        "sym8 with octet 0xff: neither ASCII nor UTF-8",
        sym8_raw(b"x\xff"),
        "invalid-symbol",
    );
    t.dev("sym32-utf8", S_SYM, "sym32 \"é\"", sym32_raw("é".as_bytes()), "invalid-symbol");
    t.cuts("sym8", S_SYM, "sym8 PLAIN", &enc(&sym("PLAIN")), &[1, 2, 6]);
    t.cuts(
        "sym32",
        S_SYM,
        "sym32 PLAIN",
        &enc(&Value::Symbol(Symbol::from("PLAIN"), code(fc::SYM32))),
        &[1, 5, 9],
    );
    t.bad(
        "sym8-size-past-end",
        S_SYM,
        "sym8 whose size (9) is larger than the octets that follow",
        cat(&[&[fc::SYM8, 9], b"PLAIN"]),
        "truncated",
    );

    // list.
    t.ok("list0", S_LIST, "the empty list, list0 0x45", enc(&list(vec![])));
    t.ok(
        "list8-empty",
        S_LIST,
        "the empty list as list8 (size 1, count 0)",
        enc(&Value::List(vec![], code(fc::LIST8))),
    );
    t.ok(
        "list32-empty",
        S_LIST,
        "the empty list as list32 (size 4, count 0)",
        enc(&Value::List(vec![], code(fc::LIST32))),
    );
    let l3 = list(vec![uint(1), str_("a"), Value::Null]);
    t.ok("list8", S_LIST, "a list8 of uint 1, \"a\", null", enc(&l3));
    t.ok(
        "list32-small",
        S_LIST,
        "the same list as list32 (non-canonical)",
        enc(&Value::List(vec![uint(1), str_("a"), Value::Null], code(fc::LIST32))),
    );
    t.ok(
        "list8-254-nulls",
        S_LIST,
        "a list8 of 254 nulls: size 255, the largest list8",
        enc(&list(vec![Value::Null; 254])),
    );
    t.ok(
        "list32-255-nulls",
        S_LIST,
        "a list of 255 nulls, which needs list32",
        enc(&list(vec![Value::Null; 255])),
    );
    t.ok(
        "list-mixed-nested",
        S_LIST,
        "a list holding a list, a map and an array",
        enc(&list(vec![
            list(vec![Value::Boolean(true, Fmt::Auto)]),
            map(vec![(sym("k"), uint(1))]),
            Value::Array(Array::new(vec![uint(1), uint(2)]).expect("one type")),
        ])),
    );
    let l3b = enc(&l3);
    t.cuts("list8", S_LIST, "list8 of 3 elements", &l3b, &[1, 2, 3, 5]);
    let l32b = enc(&Value::List(vec![uint(1), str_("a"), Value::Null], code(fc::LIST32)));
    t.cuts("list32", S_LIST, "list32 of 3 elements", &l32b, &[1, 3, 5, 7, 9, 12]);
    t.bad(
        "list8-size-0",
        S_COMPOUND,
        "list8 with size 0: too small to hold its own count octet",
        vec![fc::LIST8, 0],
        "size-too-small",
    );
    t.bad(
        "list32-size-3",
        S_COMPOUND,
        "list32 with size 3: too small to hold its four-octet count",
        cat(&[&[fc::LIST32], &3u32.to_be_bytes(), &[0, 0, 0]]),
        "size-too-small",
    );
    t.bad(
        "list8-size-past-end",
        S_COMPOUND,
        "list8 whose size (20) is larger than the bytes present",
        vec![fc::LIST8, 20, 1, fc::NULL],
        "truncated",
    );
    t.bad(
        "list8-count-exceeds-size",
        S_COMPOUND,
        "list8 of size 2 claiming 5 elements: each element takes at least one octet",
        vec![fc::LIST8, 2, 5, fc::NULL],
        "count-exceeds-size",
    );
    t.bad(
        "list32-count-4g",
        S_COMPOUND,
        "list32 claiming 4294967295 elements in 4 octets (must not allocate)",
        cat(&[&[fc::LIST32], &8u32.to_be_bytes(), &u32::MAX.to_be_bytes(), &[fc::NULL; 4]]),
        "count-exceeds-size",
    );
    t.bad(
        "list8-element-past-size",
        S_COMPOUND,
        "list8 of size 3, count 2, whose second element (smalluint) needs an octet past the size",
        vec![fc::LIST8, 3, 2, fc::NULL, fc::SMALLUINT, 7],
        "truncated",
    );
    t.dev(
        "list8-bytes-after-elements",
        S_COMPOUND,
        "list8 of size 3 and count 1 holding one null: a byte is left inside it",
        vec![fc::LIST8, 3, 1, fc::NULL, fc::NULL],
        "trailing-bytes",
    );
    t.ok(
        "depth-64",
        S_LIST,
        "63 nested lists around an empty one: 64 levels of nesting",
        enc(&nested_lists(63)),
    );
    t.limit("depth-65", S_LIST, "64 nested lists around an empty one: 65 levels, past amqpwire's limit of 64 (the spec sets none)", enc(&nested_lists(64)), "depth-limit", "nesting depth: amqpwire refuses more than 64 levels");
    t.limit(
        "depth-10000",
        S_LIST,
        "10000 nested list32s around an empty list: a stack-exhaustion probe",
        {
            const N: usize = 10_000;
            let mut v = Vec::with_capacity(9 * N + 1);
            for level in 0..N {
                // A list32 of one element: the lists inside it (9 octets each) and the list0.
                let inner = 9 * (N - level - 1) + 1;
                v.push(fc::LIST32);
                v.extend_from_slice(&(4 + inner as u32).to_be_bytes());
                v.extend_from_slice(&1u32.to_be_bytes());
            }
            v.push(fc::LIST0);
            v
        },
        "depth-limit",
        "nesting depth: amqpwire refuses more than 64 levels",
    );

    // map.
    t.ok("map8-empty", S_MAP, "the empty map, map8 (size 1, count 0)", enc(&map(vec![])));
    t.ok(
        "map32-empty",
        S_MAP,
        "the empty map as map32 (non-canonical)",
        enc(&Value::Map(vec![], code(fc::MAP32))),
    );
    t.ok(
        "map8",
        S_MAP,
        "map8 {symbol k: uint 1, string s: null}",
        enc(&map(vec![(sym("k"), uint(1)), (str_("s"), Value::Null)])),
    );
    t.ok(
        "map-any-keys",
        S_MAP,
        "a map keyed by a ulong, a list and null: any type may be a key",
        enc(&map(vec![(ulong(7), uint(1)), (list(vec![]), uint(2)), (Value::Null, uint(3))])),
    );
    t.ok(
        "map32-small",
        S_MAP,
        "map {k: 1} as map32 (non-canonical)",
        enc(&Value::Map(vec![(sym("k"), uint(1))], code(fc::MAP32))),
    );
    t.ok(
        "map-string-and-symbol-key",
        S_MAP,
        "keys \"k\" (string) and k (symbol) are distinct: different types",
        enc(&map(vec![(str_("k"), uint(1)), (sym("k"), uint(2))])),
    );
    t.bad(
        "map8-odd-count",
        S_MAP,
        "map8 with count 1: keys and values must pair",
        vec![fc::MAP8, 2, 1, fc::NULL],
        "odd-map-count",
    );
    t.bad(
        "map32-odd-count",
        S_MAP,
        "map32 with count 3",
        cat(&[&[fc::MAP32], &7u32.to_be_bytes(), &3u32.to_be_bytes(), &[fc::NULL; 3]]),
        "odd-map-count",
    );
    t.dev(
        "map-duplicate-key",
        S_MAP,
        "map {k: 1, k: 2}: a key twice",
        enc(&map(vec![(sym("k"), uint(1)), (sym("k"), uint(2))])),
        "duplicate-key",
    );
    t.dev(
        "map-duplicate-key-encodings",
        S_MAP,
        "map {uint 1 (smalluint): a, uint 1 (uint): b}: equal keys in different encodings",
        enc(&map(vec![(uint(1), str_("a")), (Value::Uint(1, code(fc::UINT)), str_("b"))])),
        "duplicate-key",
    );
    t.bad(
        "map8-count-exceeds-size",
        S_COMPOUND,
        "map8 of size 3 claiming 4 elements",
        vec![fc::MAP8, 3, 4, fc::NULL, fc::NULL],
        "count-exceeds-size",
    );
    t.bad(
        "map8-size-past-end",
        S_COMPOUND,
        "map8 whose size is larger than the bytes present",
        vec![fc::MAP8, 9, 2, fc::NULL, fc::NULL],
        "truncated",
    );
    let m = enc(&map(vec![(sym("k"), uint(1))]));
    t.cuts("map8", S_MAP, "map8 {k: 1}", &m, &[1, 2, 3, 5]);

    // array.
    let a3 = Value::Array(Array::new(vec![uint(1), uint(2), uint(3)]).expect("one type"));
    t.ok(
        "array8-smalluint",
        S_ARRAY,
        "array8 of three uints sharing the smalluint constructor 0x52",
        enc(&a3),
    );
    t.ok(
        "array8-uint",
        S_ARRAY,
        "array8 of uints with the constructor 0x70",
        enc(&Value::Array(
            Array::new(vec![uint(1), uint(2)]).expect("one type").with_codes(None, fc::UINT),
        )),
    );
    t.ok(
        "array8-empty",
        S_ARRAY,
        "an empty array8 of symbols (a constructor, no elements)",
        enc(&Value::Array(Array::empty(fc::SYM8))),
    );
    t.ok(
        "array32-small",
        S_ARRAY,
        "three uints as array32 (non-canonical)",
        enc(&Value::Array(
            Array::new(vec![uint(1), uint(2), uint(3)])
                .expect("one type")
                .with_codes(Some(fc::ARRAY32), fc::SMALLUINT),
        )),
    );
    t.ok(
        "array8-sym8",
        S_ARRAY,
        "array8 of symbols PLAIN, ANONYMOUS (as in sasl-mechanisms)",
        enc(&Value::Array(Array::symbols([Symbol::from("PLAIN"), Symbol::from("ANONYMOUS")]))),
    );
    t.ok(
        "array8-str8",
        S_ARRAY,
        "array8 of strings",
        enc(&Value::Array(Array::new(vec![str_("a"), str_("bc")]).expect("one type"))),
    );
    t.ok(
        "array8-boolean",
        S_ARRAY,
        "array8 of booleans with the one-octet constructor 0x56",
        enc(&Value::Array(
            Array::new(vec![Value::Boolean(true, Fmt::Auto), Value::Boolean(false, Fmt::Auto)])
                .expect("one type"),
        )),
    );
    t.ok("array8-true-zero-width", S_ARRAY, "array8 of two trues with the zero-width constructor 0x41: legal, every element takes no octet", vec![fc::ARRAY8, 2, 2, fc::TRUE]);
    t.ok(
        "array8-list",
        S_ARRAY,
        "array8 of lists (list8 constructor)",
        enc(&Value::Array(Array::new(vec![list(vec![uint(1)]), list(vec![])]).expect("one type"))),
    );
    t.ok(
        "array8-array",
        S_ARRAY,
        "array8 of arrays of uint",
        enc(&Value::Array(Array::new(vec![a3.clone(), a3.clone()]).expect("one type"))),
    );
    t.ok("array8-described", S_ARRAY, "array8 of described values sharing the descriptor 0x24 and constructor list0 (accepted outcomes)", vec![fc::ARRAY8, 5, 3, fc::DESCRIBED, fc::SMALLULONG, 0x24, fc::LIST0]);
    t.ok(
        "array8-described-symbolic",
        S_ARRAY,
        "array8 of two uints described by the symbol x:y",
        enc(&Value::Array(Array::described(sym("x:y"), vec![uint(1), uint(2)]).expect("one type"))),
    );
    t.ok(
        "array32-256",
        S_ARRAY,
        "an array of 256 ubytes, which needs array32",
        enc(&Value::Array(Array::new(vec![Value::Ubyte(1); 256]).expect("one type"))),
    );
    let a3b = enc(&a3);
    t.cuts("array8", S_ARRAY, "array8 of three smalluints", &a3b, &[1, 2, 3, 4, 6]);
    t.bad(
        "array8-no-constructor",
        S_ARRAY,
        "array8 of size 1 and count 0: the element constructor is missing",
        vec![fc::ARRAY8, 1, 0],
        "truncated",
    );
    t.bad(
        "array8-count-exceeds-size",
        S_ARRAY,
        "array8 of smalluint claiming 5 elements with room for 2",
        vec![fc::ARRAY8, 4, 5, fc::SMALLUINT, 1, 2],
        "count-exceeds-size",
    );
    t.bad(
        "array32-count-4g",
        S_ARRAY,
        "array32 of smalluint claiming 4294967295 elements (must not allocate)",
        cat(&[
            &[fc::ARRAY32],
            &7u32.to_be_bytes(),
            &u32::MAX.to_be_bytes(),
            &[fc::SMALLUINT, 1, 2],
        ]),
        "count-exceeds-size",
    );
    t.bad(
        "array8-unknown-constructor",
        S_ARRAY,
        "array8 whose element constructor 0x57 is no format code",
        vec![fc::ARRAY8, 3, 1, 0x57, 0],
        "invalid-array-constructor",
    );
    t.bad("array8-nested-described-constructor", S_ARRAY, "array8 whose described element constructor is followed by a second 0x00 instead of a primitive constructor", vec![fc::ARRAY8, 6, 1, fc::DESCRIBED, fc::SMALLULONG, 1, fc::DESCRIBED, fc::NULL], "invalid-array-constructor");
    t.dev(
        "array8-element-bad-utf8",
        S_ARRAY,
        "array8 of str8 whose second element is not UTF-8",
        vec![fc::ARRAY8, 6, 2, fc::STR8, 1, b'a', 1, 0xff],
        "invalid-utf8",
    );
    t.dev(
        "array8-element-bad-boolean",
        S_ARRAY,
        "array8 of booleans with octet 0x07",
        vec![fc::ARRAY8, 3, 1, fc::BOOLEAN, 7],
        "invalid-boolean",
    );
    t.dev(
        "array8-bytes-after-elements",
        S_ARRAY,
        "array8 of one smalluint with a byte left inside it",
        vec![fc::ARRAY8, 4, 1, fc::SMALLUINT, 1, 2],
        "trailing-bytes",
    );
    t.bad(
        "array8-element-past-size",
        S_ARRAY,
        "array8 of str8 whose element's size runs past the array",
        vec![fc::ARRAY8, 4, 1, fc::STR8, 5, b'a', b'b', b'c'],
        "truncated",
    );
    t.limit(
        "array8-255-nulls",
        S_ARRAY,
        "array8 of 255 nulls in 3 octets: a few bytes that ask for 255 values",
        vec![fc::ARRAY8, 2, 255, fc::NULL],
        "array-too-long",
        "zero-width array elements: amqpwire refuses more than the array's header length plus 8",
    );
    t.limit(
        "array32-4g-nulls",
        S_ARRAY,
        "array32 of 4294967295 nulls in 10 octets (must not allocate)",
        cat(&[&[fc::ARRAY32], &5u32.to_be_bytes(), &u32::MAX.to_be_bytes(), &[fc::NULL]]),
        "array-too-long",
        "zero-width array elements: amqpwire refuses more than the array's header length plus 8",
    );

    // described values.
    t.ok(
        "described-ulong",
        S_DESC,
        "a value described by the ulong 0x24 (the accepted outcome)",
        enc(&composite(0x24, vec![])),
    );
    t.ok(
        "described-symbol",
        S_DESC,
        "a value described by the symbol amqp:accepted:list",
        enc(&described(sym("amqp:accepted:list"), list(vec![]))),
    );
    t.ok(
        "described-unknown",
        S_DESC,
        "a value with a descriptor no spec defines: valid at the type level",
        enc(&described(ulong(0x1234_5678), str_("x"))),
    );
    t.ok(
        "described-described-value",
        S_DESC,
        "a described value whose value is itself described",
        enc(&described(ulong(1), described(ulong(2), Value::Null))),
    );
    t.cuts(
        "described",
        S_DESC,
        "a described empty list",
        &enc(&composite(0x24, vec![])),
        &[1, 2, 3],
    );

    // Format codes the spec does not define.
    for c in
        [0x01u8, 0x46, 0x57, 0x62, 0x75, 0x85, 0x90, 0x99, 0xa2, 0xb2, 0xc2, 0xd2, 0xe1, 0xf1, 0xff]
    {
        let mut bytes = vec![c];
        bytes.extend(std::iter::repeat_n(0u8, 4));
        t.bad(
            &format!("unknown-code-{c:02x}"),
            S_CODES,
            &format!("format code 0x{c:02x}, which the spec does not define, followed by zeros"),
            bytes,
            "unknown-format-code",
        );
    }
    t.bad(
        "two-values",
        S_EXACT,
        "two nulls where one value is expected",
        vec![fc::NULL, fc::NULL],
        "trailing-bytes",
    );
    b.out
}

pub(crate) fn all() -> Vec<Vector> {
    let mut v = types();
    v.extend(performatives());
    v.extend(messages());
    v.extend(framing());
    v
}

// ------------------------------------------------------------------ frames

/// A frame of `ftype` on `channel` with DOFF 2 around `body`.
fn frame(ftype: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    frame_doff(ftype, channel, 2, &[], body)
}

fn frame_doff(ftype: u8, channel: u16, doff: u8, ext: &[u8], body: &[u8]) -> Vec<u8> {
    let size = (8 + ext.len() + body.len()) as u32;
    cat(&[&size.to_be_bytes(), &[doff, ftype], &channel.to_be_bytes(), ext, body])
}

fn amqp(body: &Value) -> Vec<u8> {
    frame(0, 0, &enc(body))
}

fn sasl(body: &Value) -> Vec<u8> {
    frame(1, 0, &enc(body))
}

fn performatives() -> Vec<Vector> {
    let mut b = B::new("performatives", Input::Frame);
    let t = &mut b;
    let n = Value::Null;
    let role_sender = Value::Boolean(false, Fmt::Auto);

    const OPEN: &str = "2.7.1 open";
    t.ok(
        "open-minimal",
        OPEN,
        "open with only its mandatory container-id",
        amqp(&composite(0x10, vec![str_("c1")])),
    );
    t.ok(
        "open-full",
        OPEN,
        "open with every field",
        amqp(&composite(
            0x10,
            vec![
                str_("c1"),
                str_("example.com"),
                uint(65536),
                Value::Ushort(255),
                uint(30000),
                Value::Array(Array::symbols([Symbol::from("en-US")])),
                sym("en-US"),
                Value::Array(Array::symbols([Symbol::from("ANONYMOUS-RELAY")])),
                sym("DELAYED_DELIVERY"),
                map(vec![(sym("product"), str_("amqpwire"))]),
            ],
        )),
    );
    t.ok(
        "open-symbolic-descriptor",
        OPEN,
        "open with the symbolic descriptor amqp:open:list",
        amqp(&described(sym("amqp:open:list"), list(vec![str_("c1")]))),
    );
    t.ok(
        "open-trailing-nulls",
        OPEN,
        "open whose optional fields are all encoded as null",
        amqp(&composite(
            0x10,
            vec![
                str_("c1"),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
            ],
        )),
    );
    t.ok(
        "open-max-frame-size-512",
        OPEN,
        "open with max-frame-size 512, the least allowed (MIN-MAX-FRAME-SIZE)",
        amqp(&composite(0x10, vec![str_("c1"), n.clone(), uint(512)])),
    );
    t.bad(
        "open-empty-list",
        OPEN,
        "open with no fields: container-id is mandatory",
        amqp(&composite(0x10, vec![])),
        "missing-field",
    );
    t.bad(
        "open-null-container-id",
        OPEN,
        "open whose container-id is null",
        amqp(&composite(0x10, vec![n.clone(), str_("h")])),
        "missing-field",
    );
    t.dev(
        "open-container-id-symbol",
        OPEN,
        "open whose container-id is a symbol, not a string",
        amqp(&composite(0x10, vec![sym("c1")])),
        "unexpected-type",
    );
    t.bad(
        "open-max-frame-size-string",
        OPEN,
        "open whose max-frame-size is a string",
        amqp(&composite(0x10, vec![str_("c1"), n.clone(), str_("512")])),
        "unexpected-type",
    );
    t.dev(
        "open-eleven-fields",
        "1.4 composite types",
        "open with an eleventh field, which open does not define",
        amqp(&composite(
            0x10,
            vec![
                str_("c1"),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                n.clone(),
                uint(1),
            ],
        )),
        "too-many-fields",
    );
    t.bad(
        "open-not-a-list",
        "1.4 composite types",
        "the open descriptor around a map instead of a list",
        amqp(&described(ulong(0x10), map(vec![]))),
        "unexpected-type",
    );
    t.dev(
        "open-bytes-after",
        "2.3.2 AMQP frames",
        "open followed by 3 bytes of payload: only a transfer carries a payload",
        frame(0, 0, &cat(&[&enc(&composite(0x10, vec![str_("c1")])), &[1, 2, 3]])),
        "trailing-bytes",
    );
    let open = amqp(&composite(0x10, vec![str_("c1"), str_("host")]));
    t.cuts(
        "open",
        OPEN,
        "an open frame (the frame size says more than the bytes)",
        &open,
        &[4, 8, 12, 16],
    );
    t.bad(
        "open-body-cut",
        OPEN,
        "an open frame whose size covers only part of the body",
        {
            let body = enc(&composite(0x10, vec![str_("c1"), str_("host")]));
            frame(0, 0, &body[..body.len() - 3])
        },
        "truncated",
    );

    const BEGIN: &str = "2.7.2 begin";
    t.ok(
        "begin-minimal",
        BEGIN,
        "begin with its mandatory next-outgoing-id, incoming-window, outgoing-window",
        amqp(&composite(0x11, vec![n.clone(), uint(0), uint(2048), uint(2048)])),
    );
    t.ok(
        "begin-reply",
        BEGIN,
        "begin answering channel 0 (remote-channel set), with handle-max",
        amqp(&composite(0x11, vec![Value::Ushort(0), uint(1), uint(100), uint(100), uint(7)])),
    );
    t.bad(
        "begin-missing-windows",
        BEGIN,
        "begin with only next-outgoing-id: the windows are mandatory",
        amqp(&composite(0x11, vec![n.clone(), uint(0)])),
        "missing-field",
    );
    t.bad(
        "begin-null-next-outgoing-id",
        BEGIN,
        "begin whose next-outgoing-id is null",
        amqp(&composite(0x11, vec![n.clone(), n.clone(), uint(1), uint(1)])),
        "missing-field",
    );

    const ATTACH: &str = "2.7.3 attach";
    let source = composite(0x28, vec![str_("queue")]);
    let target = composite(0x29, vec![str_("queue")]);
    t.ok(
        "attach-minimal",
        ATTACH,
        "attach with its mandatory name, handle and role",
        amqp(&composite(0x12, vec![str_("link"), uint(0), role_sender.clone()])),
    );
    t.ok(
        "attach-sender",
        ATTACH,
        "a sender's attach with settle modes, source, target and initial-delivery-count",
        amqp(&composite(
            0x12,
            vec![
                str_("link"),
                uint(0),
                role_sender.clone(),
                Value::Ubyte(2),
                Value::Ubyte(0),
                source.clone(),
                target.clone(),
                n.clone(),
                n.clone(),
                uint(0),
            ],
        )),
    );
    t.ok(
        "attach-receiver-settled",
        ATTACH,
        "a receiver's attach with snd-settle-mode settled (1) and rcv-settle-mode second (1)",
        amqp(&composite(
            0x12,
            vec![
                str_("link"),
                uint(1),
                Value::Boolean(true, Fmt::Auto),
                Value::Ubyte(1),
                Value::Ubyte(1),
                source,
                target,
            ],
        )),
    );
    t.bad(
        "attach-missing-role",
        ATTACH,
        "attach with name and handle but no role",
        amqp(&composite(0x12, vec![str_("link"), uint(0)])),
        "missing-field",
    );
    t.bad(
        "attach-null-name",
        ATTACH,
        "attach whose name is null",
        amqp(&composite(0x12, vec![n.clone(), uint(0), role_sender.clone()])),
        "missing-field",
    );
    t.dev(
        "attach-snd-settle-mode-3",
        "2.8.2 sender-settle-mode",
        "attach with snd-settle-mode 3: only 0 (unsettled), 1 (settled), 2 (mixed) are defined",
        amqp(&composite(0x12, vec![str_("link"), uint(0), role_sender.clone(), Value::Ubyte(3)])),
        "invalid-value",
    );
    t.dev(
        "attach-rcv-settle-mode-2",
        "2.8.3 receiver-settle-mode",
        "attach with rcv-settle-mode 2: only 0 (first) and 1 (second) are defined",
        amqp(&composite(
            0x12,
            vec![str_("link"), uint(0), role_sender.clone(), n.clone(), Value::Ubyte(2)],
        )),
        "invalid-value",
    );
    t.bad(
        "attach-role-uint",
        "2.8.1 role",
        "attach whose role is the uint 0 rather than a boolean",
        amqp(&composite(0x12, vec![str_("link"), uint(0), uint(0)])),
        "unexpected-type",
    );

    const FLOW: &str = "2.7.4 flow";
    t.ok(
        "flow-session",
        FLOW,
        "a session-level flow: incoming-window, next-outgoing-id, outgoing-window",
        amqp(&composite(0x13, vec![uint(0), uint(2048), uint(0), uint(2048)])),
    );
    t.ok(
        "flow-link",
        FLOW,
        "a link flow granting 10 credits on handle 0, with drain and echo",
        amqp(&composite(
            0x13,
            vec![
                uint(0),
                uint(2048),
                uint(0),
                uint(2048),
                uint(0),
                uint(0),
                uint(10),
                n.clone(),
                Value::Boolean(true, Fmt::Auto),
                Value::Boolean(true, Fmt::Auto),
            ],
        )),
    );
    t.bad(
        "flow-missing-outgoing-window",
        FLOW,
        "flow without its mandatory outgoing-window",
        amqp(&composite(0x13, vec![uint(0), uint(2048), uint(0)])),
        "missing-field",
    );
    t.bad(
        "flow-empty",
        FLOW,
        "flow with no fields",
        amqp(&composite(0x13, vec![])),
        "missing-field",
    );

    const TRANSFER: &str = "2.7.5 transfer";
    let msg = enc(&described(ulong(0x77), str_("hi")));
    let tr = enc(&composite(
        0x14,
        vec![uint(0), uint(0), bin(b"\x00"), uint(0), Value::Boolean(false, Fmt::Auto)],
    ));
    t.ok(
        "transfer",
        TRANSFER,
        "a transfer with a message (one amqp-value section) as payload",
        frame(0, 1, &cat(&[&tr, &msg])),
    );
    t.ok(
        "transfer-no-payload",
        TRANSFER,
        "a transfer with only its handle and no payload (a continuation or abort frame)",
        amqp(&composite(0x14, vec![uint(0)])),
    );
    t.ok(
        "transfer-more",
        TRANSFER,
        "a transfer with more=true carrying half a message",
        frame(
            0,
            1,
            &cat(&[
                &enc(&composite(
                    0x14,
                    vec![
                        uint(0),
                        uint(1),
                        bin(b"\x01"),
                        uint(0),
                        n.clone(),
                        Value::Boolean(true, Fmt::Auto),
                    ],
                )),
                &msg[..3],
            ]),
        ),
    );
    t.ok(
        "transfer-state",
        TRANSFER,
        "a transfer carrying a delivery state (accepted) and resume",
        amqp(&composite(
            0x14,
            vec![
                uint(0),
                uint(0),
                bin(b"t"),
                uint(0),
                n.clone(),
                n.clone(),
                n.clone(),
                composite(0x24, vec![]),
                Value::Boolean(true, Fmt::Auto),
            ],
        )),
    );
    t.bad(
        "transfer-empty",
        TRANSFER,
        "transfer with no fields: handle is mandatory",
        amqp(&composite(0x14, vec![])),
        "missing-field",
    );
    t.bad(
        "transfer-tag-string",
        TRANSFER,
        "transfer whose delivery-tag is a string, not binary",
        amqp(&composite(0x14, vec![uint(0), uint(0), str_("tag")])),
        "unexpected-type",
    );

    const DISP: &str = "2.7.6 disposition";
    t.ok(
        "disposition",
        DISP,
        "a receiver settling deliveries 0 to 9 as accepted",
        amqp(&composite(
            0x15,
            vec![
                Value::Boolean(true, Fmt::Auto),
                uint(0),
                uint(9),
                Value::Boolean(true, Fmt::Auto),
                composite(0x24, vec![]),
            ],
        )),
    );
    t.ok(
        "disposition-rejected",
        DISP,
        "a disposition with the rejected outcome and an error",
        amqp(&composite(
            0x15,
            vec![
                Value::Boolean(true, Fmt::Auto),
                uint(3),
                n.clone(),
                Value::Boolean(true, Fmt::Auto),
                composite(
                    0x25,
                    vec![composite(0x1d, vec![sym("amqp:internal-error"), str_("boom")])],
                ),
            ],
        )),
    );
    t.bad(
        "disposition-missing-first",
        DISP,
        "disposition with a role but no first",
        amqp(&composite(0x15, vec![Value::Boolean(true, Fmt::Auto)])),
        "missing-field",
    );

    const DETACH: &str = "2.7.7 detach";
    t.ok(
        "detach",
        DETACH,
        "detach of handle 0, closing the link",
        amqp(&composite(0x16, vec![uint(0), Value::Boolean(true, Fmt::Auto)])),
    );
    t.ok(
        "detach-error",
        DETACH,
        "detach with an error condition and description",
        amqp(&composite(
            0x16,
            vec![
                uint(0),
                Value::Boolean(true, Fmt::Auto),
                composite(0x1d, vec![sym("amqp:link:detach-forced"), str_("bye")]),
            ],
        )),
    );
    t.bad(
        "detach-empty",
        DETACH,
        "detach with no fields: handle is mandatory",
        amqp(&composite(0x16, vec![])),
        "missing-field",
    );
    t.bad(
        "detach-error-missing-condition",
        "2.8.14 error",
        "detach whose error has no condition (mandatory in error)",
        amqp(&composite(
            0x16,
            vec![uint(0), Value::Boolean(true, Fmt::Auto), composite(0x1d, vec![])],
        )),
        "missing-field",
    );

    const END: &str = "2.7.8 end";
    t.ok("end", END, "end with no fields", amqp(&composite(0x17, vec![])));
    t.ok(
        "end-error",
        END,
        "end with an error",
        amqp(&composite(0x17, vec![composite(0x1d, vec![sym("amqp:session:window-violation")])])),
    );
    const CLOSE: &str = "2.7.9 close";
    t.ok("close", CLOSE, "close with no fields", amqp(&composite(0x18, vec![])));
    t.ok(
        "close-list8-empty",
        CLOSE,
        "close whose empty list is list8 rather than list0",
        amqp(&described(ulong(0x18), Value::List(vec![], code(fc::LIST8)))),
    );
    t.ok(
        "close-error-info",
        CLOSE,
        "close with an error carrying info",
        amqp(&composite(
            0x18,
            vec![composite(
                0x1d,
                vec![
                    sym("amqp:connection:forced"),
                    str_("maintenance"),
                    map(vec![(sym("retry-after"), uint(30))]),
                ],
            )],
        )),
    );
    t.bad(
        "close-error-not-error",
        CLOSE,
        "close whose error field holds an accepted outcome instead of an error",
        amqp(&composite(0x18, vec![composite(0x24, vec![])])),
        "unexpected-descriptor",
    );

    const PERF: &str = "2.7 performatives";
    t.bad(
        "unknown-descriptor",
        PERF,
        "an AMQP frame whose body has the descriptor 0x19, no performative",
        amqp(&composite(0x19, vec![])),
        "unexpected-descriptor",
    );
    t.bad(
        "not-described",
        PERF,
        "an AMQP frame whose body is a bare list",
        frame(0, 0, &enc(&list(vec![str_("c1")]))),
        "unexpected-type",
    );
    t.bad(
        "sasl-body-in-amqp-frame",
        PERF,
        "an AMQP frame carrying sasl-init",
        amqp(&composite(0x41, vec![sym("PLAIN")])),
        "unexpected-descriptor",
    );

    // SASL (part 5).
    const MECHS: &str = "5.3.3.1 sasl-mechanisms";
    t.ok(
        "sasl-mechanisms",
        MECHS,
        "sasl-mechanisms offering PLAIN and ANONYMOUS",
        sasl(&composite(
            0x40,
            vec![Value::Array(Array::symbols([Symbol::from("PLAIN"), Symbol::from("ANONYMOUS")]))],
        )),
    );
    t.ok(
        "sasl-mechanisms-single-symbol",
        "1.4 composite types (multiple: a single value may stand for an array of one)",
        "sasl-mechanisms whose multiple field is one symbol, not an array",
        sasl(&composite(0x40, vec![sym("ANONYMOUS")])),
    );
    t.bad(
        "sasl-mechanisms-empty",
        MECHS,
        "sasl-mechanisms with no fields: sasl-server-mechanisms is mandatory",
        sasl(&composite(0x40, vec![])),
        "missing-field",
    );
    const INIT: &str = "5.3.3.2 sasl-init";
    t.ok(
        "sasl-init-plain",
        INIT,
        "sasl-init PLAIN with an initial response and hostname",
        sasl(&composite(0x41, vec![sym("PLAIN"), bin(b"\0user\0pass"), str_("example.com")])),
    );
    t.ok(
        "sasl-init-anonymous",
        INIT,
        "sasl-init ANONYMOUS with no initial response",
        sasl(&composite(0x41, vec![sym("ANONYMOUS")])),
    );
    t.bad(
        "sasl-init-empty",
        INIT,
        "sasl-init with no mechanism",
        sasl(&composite(0x41, vec![])),
        "missing-field",
    );
    t.dev(
        "sasl-init-mechanism-string",
        INIT,
        "sasl-init whose mechanism is a string, not a symbol",
        sasl(&composite(0x41, vec![str_("PLAIN")])),
        "unexpected-type",
    );
    t.ok(
        "sasl-challenge",
        "5.3.3.3 sasl-challenge",
        "sasl-challenge with 4 octets",
        sasl(&composite(0x42, vec![bin(b"abcd")])),
    );
    t.bad(
        "sasl-challenge-empty",
        "5.3.3.3 sasl-challenge",
        "sasl-challenge without its challenge",
        sasl(&composite(0x42, vec![])),
        "missing-field",
    );
    t.ok(
        "sasl-response",
        "5.3.3.4 sasl-response",
        "sasl-response with 4 octets",
        sasl(&composite(0x43, vec![bin(b"wxyz")])),
    );
    t.bad(
        "sasl-response-empty",
        "5.3.3.4 sasl-response",
        "sasl-response without its response",
        sasl(&composite(0x43, vec![])),
        "missing-field",
    );
    const OUTCOME: &str = "5.3.3.5 sasl-outcome";
    t.ok(
        "sasl-outcome-ok",
        OUTCOME,
        "sasl-outcome ok (0)",
        sasl(&composite(0x44, vec![Value::Ubyte(0)])),
    );
    t.ok(
        "sasl-outcome-auth-data",
        OUTCOME,
        "sasl-outcome auth (1) with additional-data",
        sasl(&composite(0x44, vec![Value::Ubyte(1), bin(b"x")])),
    );
    t.bad(
        "sasl-outcome-empty",
        OUTCOME,
        "sasl-outcome without its code",
        sasl(&composite(0x44, vec![])),
        "missing-field",
    );
    t.dev(
        "sasl-outcome-code-5",
        "5.3.3.6 sasl-code",
        "sasl-outcome with code 5: only 0 to 4 are defined",
        sasl(&composite(0x44, vec![Value::Ubyte(5)])),
        "invalid-value",
    );
    t.bad(
        "amqp-body-in-sasl-frame",
        "5.3.1 SASL frames",
        "a SASL frame carrying an open",
        sasl(&composite(0x10, vec![str_("c1")])),
        "unexpected-descriptor",
    );
    b.out
}

fn framing() -> Vec<Vector> {
    let mut b = B::new("framing", Input::Frame);
    let t = &mut b;
    const LAYOUT: &str = "2.3.1 frame layout";
    let close = enc(&composite(0x18, vec![]));
    t.ok(
        "heartbeat",
        "2.4.5 idle timeout of a connection (empty frame)",
        "an empty AMQP frame (size 8): a heartbeat",
        frame(0, 0, &[]),
    );
    t.ok(
        "heartbeat-channel-7",
        "2.4.5 idle timeout of a connection (empty frame)",
        "an empty AMQP frame on channel 7",
        frame(0, 7, &[]),
    );
    t.ok("channel-max", LAYOUT, "a close frame on channel 65535", frame(0, 0xffff, &close));
    t.ok(
        "extended-header",
        LAYOUT,
        "a close frame with DOFF 3: 4 octets of extended header, ignored",
        frame_doff(0, 0, 3, &[0xde, 0xad, 0xbe, 0xef], &close),
    );
    t.ok(
        "doff-255",
        LAYOUT,
        "an empty frame with DOFF 255: 1012 octets of extended header",
        frame_doff(0, 0, 255, &[0; 1012], &[]),
    );
    t.ok(
        "sasl-channel-9",
        "5.3.1 SASL frames (bytes 6 and 7 are ignored)",
        "a sasl-outcome frame whose channel bytes are 9",
        frame(1, 9, &enc(&composite(0x44, vec![Value::Ubyte(0)]))),
    );
    t.ok(
        "sasl-extended-header",
        "5.3.1 SASL frames (the extended header is ignored)",
        "a sasl-outcome frame with DOFF 3",
        frame_doff(1, 0, 3, &[1, 2, 3, 4], &enc(&composite(0x44, vec![Value::Ubyte(0)]))),
    );
    t.bad(
        "sasl-empty",
        "5.3.1 SASL frames",
        "a SASL frame with no body: every SASL frame carries one SASL body",
        frame(1, 0, &[]),
        "truncated",
    );
    for size in [0u32, 1, 7] {
        t.bad(
            &format!("size-{size}"),
            LAYOUT,
            &format!("a frame header with SIZE {size}: below the minimum of 8"),
            cat(&[&size.to_be_bytes(), &[2, 0, 0, 0]]),
            "frame-size-too-small",
        );
    }
    for doff in [0u8, 1] {
        t.bad(
            &format!("doff-{doff}"),
            LAYOUT,
            &format!("a frame with DOFF {doff}: below the minimum of 2"),
            frame_doff(0, 0, doff, &[], &close),
            "doff-too-small",
        );
    }
    t.bad(
        "doff-past-size",
        LAYOUT,
        "an 8-octet frame with DOFF 3: the body would start past the frame's end",
        frame_doff(0, 0, 3, &[], &[]),
        "doff-beyond-size",
    );
    t.bad(
        "doff-past-size-255",
        LAYOUT,
        "a 12-octet frame with DOFF 255",
        frame_doff(0, 0, 255, &[0; 4], &[]),
        "doff-beyond-size",
    );
    for ty in [2u8, 0x10, 0xff] {
        t.bad(
            &format!("type-{ty:02x}"),
            LAYOUT,
            &format!("a frame of type 0x{ty:02x}: only 0x00 (AMQP) and 0x01 (SASL) are defined"),
            frame(ty, 0, &close),
            "unknown-frame-type",
        );
    }
    t.bad(
        "header-cut",
        LAYOUT,
        "five octets of a frame header",
        frame(0, 0, &close)[..5].to_vec(),
        "truncated",
    );
    t.bad(
        "size-past-end",
        LAYOUT,
        "a frame header claiming 4294967295 octets with 1 present (must not allocate)",
        cat(&[&u32::MAX.to_be_bytes(), &[2, 0, 0, 0, fc::NULL]]),
        "truncated",
    );
    t.bad(
        "extra-bytes",
        LAYOUT,
        "a close frame followed by 3 octets that begin another frame",
        cat(&[&frame(0, 0, &close), &[0, 0, 0]]),
        "truncated",
    );
    b.out
}

// ------------------------------------------------------------------ messages (part 3)

fn messages() -> Vec<Vector> {
    let mut b = B::new("messages", Input::Message);
    let t = &mut b;
    const FORMAT: &str = "3.2 message format";
    let header = enc(&composite(
        0x70,
        vec![
            Value::Boolean(true, Fmt::Auto),
            Value::Ubyte(4),
            uint(60000),
            Value::Boolean(false, Fmt::Auto),
            uint(0),
        ],
    ));
    let da = enc(&described(ulong(0x71), map(vec![(sym("x-opt-trace"), str_("t1"))])));
    let ma = enc(&described(
        ulong(0x72),
        map(vec![(sym("x-opt-partition-key"), str_("p")), (ulong(5), uint(1))]),
    ));
    let props = enc(&composite(
        0x73,
        vec![
            str_("id-1"),
            bin(b"user"),
            str_("/queue"),
            str_("subject"),
            str_("/reply"),
            ulong(7),
            sym("text/plain"),
            sym("gzip"),
            Value::Timestamp(Timestamp(1_700_000_000_000)),
            Value::Timestamp(Timestamp(1_700_000_000_000)),
            str_("group"),
            uint(1),
            str_("reply-group"),
        ],
    ));
    let ap = enc(&described(
        ulong(0x74),
        map(vec![
            (str_("temperature"), Value::Double(21.5)),
            (str_("alert"), Value::Boolean(false, Fmt::Auto)),
        ]),
    ));
    let data = |b: &[u8]| enc(&described(ulong(0x75), bin(b)));
    let seq = |items: Vec<Value>| enc(&described(ulong(0x76), list(items)));
    let value = |v: Value| enc(&described(ulong(0x77), v));
    let footer = enc(&described(ulong(0x78), map(vec![(sym("x-opt-hmac"), bin(b"\x01\x02"))])));

    t.ok(
        "header",
        "3.2.1 header",
        "a header section with every field",
        cat(&[&header, &value(Value::Null)]),
    );
    t.ok(
        "header-empty",
        "3.2.1 header",
        "an empty header section (every field at its default)",
        cat(&[&enc(&composite(0x70, vec![])), &data(b"x")]),
    );
    t.ok(
        "delivery-annotations",
        "3.2.2 delivery-annotations",
        "delivery-annotations with a symbol key",
        cat(&[&da, &data(b"x")]),
    );
    t.ok(
        "message-annotations",
        "3.2.3 message-annotations",
        "message-annotations with a symbol key and a ulong key (both allowed)",
        cat(&[&ma, &data(b"x")]),
    );
    t.ok(
        "properties",
        "3.2.4 properties",
        "a properties section with every field",
        cat(&[&props, &data(b"x")]),
    );
    for (id, desc, mid) in [
        ("ulong", "a ulong", ulong(42)),
        ("uuid", "a uuid", Value::Uuid(Uuid([7; 16]))),
        ("binary", "a binary", bin(b"\x01\x02")),
        ("string", "a string", str_("m")),
    ] {
        t.ok(
            &format!("message-id-{id}"),
            "3.2.11 message-id-ulong … message-id-string",
            &format!("properties whose message-id is {desc}"),
            cat(&[&enc(&composite(0x73, vec![mid])), &data(b"x")]),
        );
    }
    t.bad(
        "message-id-symbol",
        "3.2.4 properties (message-id is a message-id-* type)",
        "properties whose message-id is a symbol",
        cat(&[&enc(&composite(0x73, vec![sym("m")])), &data(b"x")]),
        "unexpected-type",
    );
    t.ok(
        "application-properties",
        "3.2.5 application-properties",
        "application-properties with string keys and simple values",
        cat(&[&ap, &data(b"x")]),
    );
    t.dev(
        "application-properties-symbol-key",
        "3.2.5 application-properties (keys are strings)",
        "application-properties with a symbol key",
        cat(&[&enc(&described(ulong(0x74), map(vec![(sym("k"), uint(1))]))), &data(b"x")]),
        "invalid-value",
    );
    t.dev(
        "application-properties-list-value",
        "3.2.5 application-properties (values are simple types)",
        "application-properties with a list value",
        cat(&[
            &enc(&described(ulong(0x74), map(vec![(str_("k"), list(vec![uint(1)]))]))),
            &data(b"x"),
        ]),
        "invalid-value",
    );
    t.ok("data", "3.2.6 data", "one data section", data(b"hello"));
    t.ok("data-empty", "3.2.6 data", "one data section of zero octets", data(b""));
    t.ok(
        "data-twice",
        "3.2 message format (one or more data sections)",
        "two data sections",
        cat(&[&data(b"a"), &data(b"b")]),
    );
    t.bad(
        "data-string",
        "3.2.6 data (binary)",
        "a data section holding a string",
        enc(&described(ulong(0x75), str_("hello"))),
        "unexpected-type",
    );
    t.ok(
        "amqp-sequence",
        "3.2.7 amqp-sequence",
        "one amqp-sequence section",
        seq(vec![uint(1), str_("two")]),
    );
    t.ok(
        "amqp-sequence-twice",
        "3.2 message format (one or more amqp-sequence sections)",
        "two amqp-sequence sections",
        cat(&[&seq(vec![uint(1)]), &seq(vec![])]),
    );
    t.bad(
        "amqp-sequence-not-list",
        "3.2.7 amqp-sequence (list)",
        "an amqp-sequence section holding a map",
        enc(&described(ulong(0x76), map(vec![]))),
        "unexpected-type",
    );
    t.ok(
        "amqp-value",
        "3.2.8 amqp-value",
        "one amqp-value section holding a map",
        value(map(vec![(str_("k"), Value::Long(-1, Fmt::Auto))])),
    );
    t.ok(
        "amqp-value-null",
        "3.2.8 amqp-value",
        "an amqp-value section holding null",
        value(Value::Null),
    );
    t.ok("footer", "3.2.9 footer", "a data section then a footer", cat(&[&data(b"x"), &footer]));
    t.ok("all-sections", FORMAT, "every section once, in order: header, delivery-annotations, message-annotations, properties, application-properties, amqp-value, footer", cat(&[&header, &da, &ma, &props, &ap, &value(str_("body")), &footer]));
    t.ok(
        "symbolic-descriptors",
        FORMAT,
        "a header and a data section with symbolic descriptors",
        cat(&[
            &enc(&described(sym("amqp:header:list"), list(vec![]))),
            &enc(&described(sym("amqp:data:binary"), bin(b"x"))),
        ]),
    );
    t.bad(
        "properties-before-header",
        FORMAT,
        "properties, then header",
        cat(&[&props, &header, &data(b"x")]),
        "section-order",
    );
    t.bad(
        "header-twice",
        FORMAT,
        "two header sections",
        cat(&[&header, &header, &data(b"x")]),
        "section-order",
    );
    t.bad(
        "data-then-amqp-value",
        FORMAT,
        "a data section then an amqp-value section: the body is one kind",
        cat(&[&data(b"x"), &value(Value::Null)]),
        "section-order",
    );
    t.bad(
        "amqp-value-twice",
        FORMAT,
        "two amqp-value sections: the body holds a single amqp-value",
        cat(&[&value(uint(1)), &value(uint(2))]),
        "section-order",
    );
    t.bad(
        "data-then-sequence",
        FORMAT,
        "a data section then an amqp-sequence section",
        cat(&[&data(b"x"), &seq(vec![])]),
        "section-order",
    );
    t.bad(
        "footer-then-data",
        FORMAT,
        "a footer before the body",
        cat(&[&footer, &data(b"x")]),
        "section-order",
    );
    t.bad(
        "application-properties-after-body",
        FORMAT,
        "application-properties after the body",
        cat(&[&data(b"x"), &ap]),
        "section-order",
    );
    t.dev(
        "unknown-section",
        FORMAT,
        "a section with descriptor 0x79, which part 3 does not define, after the body",
        cat(&[&data(b"x"), &enc(&described(ulong(0x79), Value::Null))]),
        "unexpected-descriptor",
    );
    t.bad(
        "not-described",
        FORMAT,
        "a message that starts with a bare string",
        cat(&[&enc(&str_("x")), &data(b"x")]),
        "unexpected-type",
    );
    t.bad(
        "header-durable-uint",
        "3.2.1 header (durable is a boolean)",
        "a header whose durable field is a uint",
        cat(&[&enc(&composite(0x70, vec![uint(1)])), &data(b"x")]),
        "unexpected-type",
    );
    t.dev(
        "header-six-fields",
        "1.4 composite types",
        "a header with a sixth field, which header does not define",
        cat(&[
            &enc(&composite(
                0x70,
                vec![Value::Null, Value::Null, Value::Null, Value::Null, Value::Null, uint(1)],
            )),
            &data(b"x"),
        ]),
        "too-many-fields",
    );
    t.dev(
        "annotations-string-key",
        "3.2.10 annotations (keys are symbols or ulongs)",
        "message-annotations keyed by a string",
        cat(&[&enc(&described(ulong(0x72), map(vec![(str_("k"), uint(1))]))), &data(b"x")]),
        "invalid-value",
    );
    let whole = cat(&[&header, &data(b"hello")]);
    t.cuts(
        "header-data",
        FORMAT,
        "a header and a data section",
        &whole,
        &[1, 3, header.len() + 3, whole.len() - 1],
    );
    b.out
}

// ------------------------------------------------------------------ rendering

fn verdict_json(exp: Exp, got: &Outcome, lenient: bool) -> Json {
    let mut o = Map::new();
    match exp {
        Exp::Accept => {
            o.insert("verdict".into(), "accept".into());
            if lenient {
                if let Outcome::Accept { warnings, .. } = got {
                    if !warnings.is_empty() {
                        o.insert(
                            "warnings".into(),
                            warnings.iter().map(|w| Json::from(*w)).collect(),
                        );
                    }
                }
            }
        }
        Exp::Reject(kind) => {
            o.insert("verdict".into(), "reject".into());
            o.insert("error".into(), kind.into());
            if let Outcome::Reject { offset, error } = got {
                if *error == kind {
                    o.insert("offset".into(), (*offset).into());
                }
            }
        }
    }
    Json::Object(o)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether amqpwire's outcome agrees with the expected verdict.
pub(crate) fn agrees(exp: Exp, got: &Outcome) -> bool {
    match exp {
        Exp::Accept => got.accepted(),
        Exp::Reject(kind) => got.error() == Some(kind),
    }
}

/// One vector as a JSON object, with amqpwire's decode of it.
fn vector_json(v: &Vector) -> Json {
    let strict = decode(v.input, &v.bytes, DecodeOptions::STRICT);
    let lenient = decode(v.input, &v.bytes, DecodeOptions::LENIENT);
    let mut o = Map::new();
    o.insert("id".into(), v.id.clone().into());
    o.insert("group".into(), v.group.into());
    o.insert("input".into(), v.input.name().into());
    o.insert("description".into(), v.description.clone().into());
    o.insert("section".into(), v.section.into());
    o.insert("hex".into(), hex(&v.bytes).into());
    o.insert("strict".into(), verdict_json(v.strict, &strict, false));
    o.insert("lenient".into(), verdict_json(v.lenient, &lenient, true));
    if let Some(l) = v.limit {
        o.insert("limit".into(), l.into());
    }
    let value =
        [(v.strict, &strict), (v.lenient, &lenient)].into_iter().find_map(|(e, got)| {
            match (e, got) {
                (Exp::Accept, Outcome::Accept { value, .. }) => Some(value.clone()),
                _ => None,
            }
        });
    if let Some(value) = value {
        o.insert("value".into(), value);
    }
    Json::Object(o)
}

/// The vectors that amqpwire decodes otherwise than they say, with what it said.
pub(crate) fn disagreements(vectors: &[Vector]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in vectors {
        for (mode, exp, opts) in [
            ("strict", v.strict, DecodeOptions::STRICT),
            ("lenient", v.lenient, DecodeOptions::LENIENT),
        ] {
            let got = decode(v.input, &v.bytes, opts);
            if !agrees(exp, &got) {
                out.push((v.id.clone(), format!("{mode}: expected {exp:?}, amqpwire: {got:?}")));
            }
        }
    }
    out
}

/// The text of `tests/vectors/{group}.json`: a header and one vector per line.
pub(crate) fn render(group: &str, vectors: &[Vector]) -> String {
    let mut s = String::new();
    s.push_str("{\n");
    s.push_str("  \"format\": \"amqpwire-conformance-vectors/1\",\n");
    s.push_str(&format!("  \"group\": {},\n", Json::from(group)));
    s.push_str("  \"spec\": \"OASIS Advanced Message Queuing Protocol (AMQP) Version 1.0, OASIS Standard, 29 October 2012\",\n");
    s.push_str("  \"generated_by\": \"tests/support/vectors_gen.rs (AMQPWIRE_UPDATE_VECTORS=1 cargo test --test vectors)\",\n");
    s.push_str("  \"vectors\": [\n");
    let lines: Vec<String> = vectors
        .iter()
        .filter(|v| v.group == group)
        .map(|v| format!("    {}", vector_json(v)))
        .collect();
    s.push_str(&lines.join(",\n"));
    s.push_str("\n  ]\n}\n");
    s
}

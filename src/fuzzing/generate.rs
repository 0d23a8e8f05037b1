//! A structure-aware generator of encoded AMQP values, for the `structured` fuzz target.
//!
//! Random bytes rarely get past the first constructor of a list; this writes values that
//! are valid by construction from the fuzzer's bytes, taking every encoding choice part 1
//! allows: each format code of a type (`uint` as `uint0`, `smalluint` or `uint`, so also the
//! non-canonical forms), 8- and 32-bit sizes, empty and non-empty compounds, described
//! values, and arrays with any element constructor, zero-width ones included, and with
//! descriptors. It is an encoder of its own, written from the spec's tables rather than
//! through [`Value`](crate::codec::Value), so that the decoders are checked against an
//! independent writer.
//!
//! What it writes is always valid: strings are UTF-8, symbols ASCII, chars Unicode scalar
//! values, booleans 0 or 1, map keys distinct, compound sizes exact, zero-width arrays
//! within [`ZERO_WIDTH_SLACK`](crate::codec::ZERO_WIDTH_SLACK), nesting shallow.
//!
//! It also writes typed values from the spec's field tables: every performative of part 2
//! and SASL body of part 5 ([`frame_body`]), and messages of part 3 ([`message`]), with
//! their composites (source, target, coordinator, error, delivery states, header,
//! properties) and restricted values. Each composite takes every encoding choice: its
//! descriptor as `smallulong`, `ulong` or symbol, its list as `list0`, `list8` or
//! `list32`, trailing fields left out or written as null, each field in any encoding of
//! its type (a `multiple` field as one value or an array).

use arbitrary::Unstructured;

use crate::codec::format as fc;

/// How deep compounds and described values nest at most.
const MAX_DEPTH: u32 = 6;

/// Largest body an 8-bit compound gets (its size byte also counts the count byte).
const SMALL_BODY: usize = 250;

/// Writes one value, constructor first, from the fuzzer's bytes. When the bytes run out
/// the choices fall to their first option (null), so any input gives a value.
pub fn value(u: &mut Unstructured<'_>, out: &mut Vec<u8>) {
    write_value(u, 0, out);
}

fn write_value(u: &mut Unstructured<'_>, depth: u32, out: &mut Vec<u8>) {
    let codes = constructors(depth);
    // Near the top, compounds half the time, so that most inputs build a tree.
    let code =
        if depth < 2 && flag(u) { pick(u, &codes[codes.len() - 8..]) } else { pick(u, codes) };
    if code == fc::DESCRIBED {
        out.push(fc::DESCRIBED);
        descriptor(u, out);
        write_value(u, depth + 1, out);
        return;
    }
    out.push(code);
    body(u, code, depth, out);
}

/// The constructors a value may start with at `depth` (compounds only while shallow).
fn constructors(depth: u32) -> &'static [u8] {
    const ALL: &[u8] = &[
        fc::NULL,
        fc::TRUE,
        fc::FALSE,
        fc::BOOLEAN,
        fc::UBYTE,
        fc::USHORT,
        fc::UINT0,
        fc::SMALLUINT,
        fc::UINT,
        fc::ULONG0,
        fc::SMALLULONG,
        fc::ULONG,
        fc::BYTE,
        fc::SHORT,
        fc::SMALLINT,
        fc::INT,
        fc::SMALLLONG,
        fc::LONG,
        fc::FLOAT,
        fc::DOUBLE,
        fc::DECIMAL32,
        fc::DECIMAL64,
        fc::DECIMAL128,
        fc::CHAR,
        fc::TIMESTAMP,
        fc::UUID,
        fc::VBIN8,
        fc::VBIN32,
        fc::STR8,
        fc::STR32,
        fc::SYM8,
        fc::SYM32,
        fc::LIST0,
        fc::LIST8,
        fc::LIST32,
        fc::MAP8,
        fc::MAP32,
        fc::ARRAY8,
        fc::ARRAY32,
        fc::DESCRIBED,
    ];
    // The primitives come first in ALL: shallow values may use everything, deep ones only
    // what ends the recursion.
    if depth < MAX_DEPTH {
        ALL
    } else {
        &ALL[..ALL.len() - 8]
    }
}

/// Writes what follows constructor `code`.
fn body(u: &mut Unstructured<'_>, code: u8, depth: u32, out: &mut Vec<u8>) {
    match code {
        fc::BOOLEAN => out.push(u8::from(flag(u))),
        fc::UBYTE | fc::BYTE | fc::SMALLUINT | fc::SMALLULONG | fc::SMALLINT | fc::SMALLLONG => {
            out.push(byte(u));
        }
        fc::USHORT | fc::SHORT => bytes(u, 2, out),
        fc::UINT | fc::INT | fc::FLOAT | fc::DECIMAL32 => bytes(u, 4, out),
        fc::ULONG | fc::LONG | fc::DOUBLE | fc::DECIMAL64 | fc::TIMESTAMP => bytes(u, 8, out),
        fc::DECIMAL128 | fc::UUID => bytes(u, 16, out),
        fc::CHAR => {
            let c = u.arbitrary::<char>().unwrap_or('a');
            out.extend_from_slice(&u32::from(c).to_be_bytes());
        }
        fc::VBIN8 | fc::VBIN32 => {
            let n = usize::from(byte(u));
            let b: Vec<u8> = (0..n).map(|_| byte(u)).collect();
            sized(code == fc::VBIN8, &b, out);
        }
        fc::STR8 | fc::STR32 => {
            let n = usize::from(byte(u) % 64);
            let s: String = (0..n).map(|_| u.arbitrary::<char>().unwrap_or('x')).collect();
            sized(code == fc::STR8, s.as_bytes(), out);
        }
        fc::SYM8 | fc::SYM32 => {
            let s = symbol(u);
            sized(code == fc::SYM8, &s, out);
        }
        fc::LIST8 | fc::LIST32 => {
            let small = code == fc::LIST8;
            let n = usize::from(byte(u) % 8);
            let mut items = Vec::new();
            let mut count = 0u32;
            for _ in 0..n {
                let before = items.len();
                write_value(u, depth + 1, &mut items);
                if small && items.len() > SMALL_BODY {
                    items.truncate(before);
                    break;
                }
                count += 1;
            }
            compound(small, count, &items, out);
        }
        fc::MAP8 | fc::MAP32 => {
            let small = code == fc::MAP8;
            let n = usize::from(byte(u) % 6);
            let mut items = Vec::new();
            let mut count = 0u32;
            for i in 0..n {
                let before = items.len();
                key(u, i, &mut items);
                write_value(u, depth + 1, &mut items);
                if small && items.len() > SMALL_BODY {
                    items.truncate(before);
                    break;
                }
                count += 2;
            }
            compound(small, count, &items, out);
        }
        fc::ARRAY8 | fc::ARRAY32 => array(u, code == fc::ARRAY8, depth, out),
        // null, true, false, uint0, ulong0, list0: nothing follows.
        _ => {}
    }
}

/// An array: an optional descriptor, one element constructor, then each element's body.
fn array(u: &mut Unstructured<'_>, small: bool, depth: u32, out: &mut Vec<u8>) {
    // Every constructor but `described` may be an element constructor; compounds only
    // while shallow.
    let codes = constructors(depth + 1);
    let elem = loop {
        let c = pick(u, codes);
        if c != fc::DESCRIBED {
            break c;
        }
        if u.is_empty() {
            break fc::NULL;
        }
    };
    let mut head = Vec::new();
    if flag(u) {
        head.push(fc::DESCRIBED);
        descriptor(u, &mut head);
    }
    head.push(elem);
    let zero_width =
        matches!(elem, fc::NULL | fc::TRUE | fc::FALSE | fc::UINT0 | fc::ULONG0 | fc::LIST0);
    let wanted = if zero_width {
        // One per byte of the header and the slack: constructor, size, count, and
        // what `head` holds.
        let header = 1 + if small { 2 } else { 8 } + head.len();
        usize::from(byte(u)) % (header + crate::codec::ZERO_WIDTH_SLACK + 1)
    } else {
        usize::from(byte(u) % 8)
    };
    let mut items = head;
    let mut count = 0u32;
    for _ in 0..wanted {
        let before = items.len();
        body(u, elem, depth + 1, &mut items);
        if small && items.len() > SMALL_BODY {
            items.truncate(before);
            break;
        }
        count += 1;
    }
    compound(small, count, &items, out);
}

/// A descriptor: a numeric code (as `smallulong` or `ulong`), or a symbol.
fn descriptor(u: &mut Unstructured<'_>, out: &mut Vec<u8>) {
    match byte(u) % 4 {
        0 => {
            out.push(fc::SMALLULONG);
            out.push(byte(u));
        }
        1 => {
            out.push(fc::ULONG);
            bytes(u, 8, out);
        }
        2 => {
            out.push(fc::ULONG0);
        }
        _ => {
            let s = symbol(u);
            out.push(fc::SYM8);
            sized(true, &s, out);
        }
    }
}

/// The `i`th key of a map: distinct from every other key of it by construction (a string
/// or symbol holding `i`, or the ulong `i`, in any of their encodings).
fn key(u: &mut Unstructured<'_>, i: usize, out: &mut Vec<u8>) {
    let text = format!("k{i}");
    match byte(u) % 6 {
        0 => {
            out.push(fc::STR8);
            sized(true, text.as_bytes(), out);
        }
        1 => {
            out.push(fc::STR32);
            sized(false, text.as_bytes(), out);
        }
        2 => {
            out.push(fc::SYM8);
            sized(true, text.as_bytes(), out);
        }
        3 if i == 0 => out.push(fc::ULONG0),
        3 | 4 => {
            out.push(fc::SMALLULONG);
            out.push(i as u8);
        }
        _ => {
            out.push(fc::ULONG);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    }
}

/// Writes a map of `n` entries (`items` holds their keys and values): `map8` when it fits
/// and the input wants, else `map32`.
fn map(u: &mut Unstructured<'_>, n: usize, items: &[u8], out: &mut Vec<u8>) {
    let small = items.len() <= SMALL_BODY && flag(u);
    out.push(if small { fc::MAP8 } else { fc::MAP32 });
    compound(small, 2 * n as u32, items, out);
}

/// Writes a list, map or array body after its constructor: size, count, then `items`.
fn compound(small: bool, count: u32, items: &[u8], out: &mut Vec<u8>) {
    if small {
        // SMALL_BODY keeps both within a byte.
        out.push((items.len() + 1) as u8);
        out.push(count as u8);
    } else {
        out.extend_from_slice(&((items.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(items);
}

/// Writes a length (one byte or four) and the bytes.
fn sized(small: bool, b: &[u8], out: &mut Vec<u8>) {
    if small {
        // Callers keep small bodies under 256 bytes.
        out.push(b.len() as u8);
    } else {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// An ASCII symbol of up to 31 bytes, often one the spec names.
fn symbol(u: &mut Unstructured<'_>) -> Vec<u8> {
    const NAMED: &[&str] =
        &["amqp:accepted:list", "x-opt-partition-key", "PLAIN", "$cbs", "amqp:link:redirect"];
    if flag(u) {
        return pick(u, NAMED).as_bytes().to_vec();
    }
    let n = usize::from(byte(u) % 32);
    (0..n).map(|_| byte(u) & 0x7f).collect()
}

fn pick<T: Copy>(u: &mut Unstructured<'_>, from: &[T]) -> T {
    // `from` is never empty.
    from[usize::from(byte(u)) % from.len()]
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary::<u8>().unwrap_or(0)
}

fn flag(u: &mut Unstructured<'_>) -> bool {
    byte(u) & 1 == 1
}

fn bytes(u: &mut Unstructured<'_>, n: usize, out: &mut Vec<u8>) {
    out.extend((0..n).map(|_| byte(u)));
}

/// The type of a field, as the spec's tables give it, with its restrictions.
#[derive(Clone, Copy)]
enum Field {
    Bool,
    /// A ubyte of at most this value.
    Ubyte(u8),
    /// terminus-durability: a uint, 0 to 2.
    Durability,
    Ushort,
    Uint,
    Ulong,
    Timestamp,
    Str,
    /// A symbol: one of these, or any when empty.
    Sym(&'static [&'static str]),
    /// `multiple symbol`: a symbol or an array of them (an empty array means none).
    Multi,
    /// A mandatory `multiple symbol`: one or more.
    Multi1,
    /// Binary of at most this many bytes.
    Bin(u8),
    /// `fields`: a map with symbol keys.
    Fields,
    /// A message-id: ulong, uuid, binary or string.
    MessageId,
    /// A delivery state (outcomes, received, the transactional ones).
    State,
    /// An outcome (for default-outcome).
    Outcome,
    Error,
    Source,
    /// A target or a coordinator.
    Target,
    /// An attach's unsettled map: delivery-tags to delivery states.
    Unsettled,
    /// A source's filter set: symbol keys, described values or null.
    Filter,
}

/// A composite: its descriptor code and its fields (type, and whether mandatory).
type Composite = (u64, &'static [(Field, bool)]);

use Field::*;

const EXPIRY: &[&str] = &["link-detach", "session-end", "connection-close", "never"];
const CONDITIONS: &[&str] = &[
    "amqp:internal-error",
    "amqp:not-found",
    "amqp:decode-error",
    "amqp:link:detach-forced",
    "amqp:connection:forced",
    "com.example:custom",
];

const OPEN: Composite = (
    0x10,
    &[
        (Str, true),
        (Str, false),
        (Uint, false),
        (Ushort, false),
        (Uint, false),
        (Multi, false),
        (Multi, false),
        (Multi, false),
        (Multi, false),
        (Fields, false),
    ],
);
const BEGIN: Composite = (
    0x11,
    &[
        (Ushort, false),
        (Uint, true),
        (Uint, true),
        (Uint, true),
        (Uint, false),
        (Multi, false),
        (Multi, false),
        (Fields, false),
    ],
);
const ATTACH: Composite = (
    0x12,
    &[
        (Str, true),
        (Uint, true),
        (Bool, true),
        (Ubyte(2), false),
        (Ubyte(1), false),
        (Source, false),
        (Target, false),
        (Unsettled, false),
        (Bool, false),
        (Uint, false),
        (Ulong, false),
        (Multi, false),
        (Multi, false),
        (Fields, false),
    ],
);
const FLOW: Composite = (
    0x13,
    &[
        (Uint, false),
        (Uint, true),
        (Uint, true),
        (Uint, true),
        (Uint, false),
        (Uint, false),
        (Uint, false),
        (Uint, false),
        (Bool, false),
        (Bool, false),
        (Fields, false),
    ],
);
const TRANSFER: Composite = (
    0x14,
    &[
        (Uint, true),
        (Uint, false),
        (Bin(32), false),
        (Uint, false),
        (Bool, false),
        (Bool, false),
        (Ubyte(1), false),
        (State, false),
        (Bool, false),
        (Bool, false),
        (Bool, false),
    ],
);
const DISPOSITION: Composite = (
    0x15,
    &[(Bool, true), (Uint, true), (Uint, false), (Bool, false), (State, false), (Bool, false)],
);
const DETACH: Composite = (0x16, &[(Uint, true), (Bool, false), (Error, false)]);
const END: Composite = (0x17, &[(Error, false)]);
const CLOSE: Composite = (0x18, &[(Error, false)]);
const SASL_MECHANISMS: Composite = (0x40, &[(Multi1, true)]);
const SASL_INIT: Composite = (0x41, &[(Sym(&[]), true), (Bin(64), false), (Str, false)]);
const SASL_CHALLENGE: Composite = (0x42, &[(Bin(64), true)]);
const SASL_RESPONSE: Composite = (0x43, &[(Bin(64), true)]);
const SASL_OUTCOME: Composite = (0x44, &[(Ubyte(4), true), (Bin(64), false)]);

const ERROR: Composite = (0x1d, &[(Sym(CONDITIONS), true), (Str, false), (Fields, false)]);
const RECEIVED: Composite = (0x23, &[(Uint, true), (Ulong, true)]);
const ACCEPTED: Composite = (0x24, &[]);
const REJECTED: Composite = (0x25, &[(Error, false)]);
const RELEASED: Composite = (0x26, &[]);
const MODIFIED: Composite = (0x27, &[(Bool, false), (Bool, false), (Fields, false)]);
const DECLARED: Composite = (0x33, &[(Bin(16), true)]);
const TRANSACTIONAL_STATE: Composite = (0x34, &[(Bin(16), true), (Outcome, false)]);
const SOURCE: Composite = (
    0x28,
    &[
        (Str, false),
        (Durability, false),
        (Sym(EXPIRY), false),
        (Uint, false),
        (Bool, false),
        (Fields, false),
        (Sym(&["move", "copy"]), false),
        (Filter, false),
        (Outcome, false),
        (Multi, false),
        (Multi, false),
    ],
);
const TARGET: Composite = (
    0x29,
    &[
        (Str, false),
        (Durability, false),
        (Sym(EXPIRY), false),
        (Uint, false),
        (Bool, false),
        (Fields, false),
        (Multi, false),
    ],
);
const COORDINATOR: Composite = (0x30, &[(Multi, false)]);

const HEADER: Composite =
    (0x70, &[(Bool, false), (Ubyte(255), false), (Uint, false), (Bool, false), (Uint, false)]);
const PROPERTIES: Composite = (
    0x73,
    &[
        (MessageId, false),
        (Bin(32), false),
        (Str, false),
        (Str, false),
        (Str, false),
        (MessageId, false),
        (Sym(&[]), false),
        (Sym(&[]), false),
        (Timestamp, false),
        (Timestamp, false),
        (Str, false),
        (Uint, false),
        (Str, false),
    ],
);

/// Writes a performative or a SASL frame body, valid by construction, with every encoding
/// choice of its descriptor, its list and each field; returns whether it is a SASL body.
pub fn frame_body(u: &mut Unstructured<'_>, out: &mut Vec<u8>) -> bool {
    const ALL: &[Composite] = &[
        OPEN,
        BEGIN,
        ATTACH,
        FLOW,
        TRANSFER,
        DISPOSITION,
        DETACH,
        END,
        CLOSE,
        SASL_MECHANISMS,
        SASL_INIT,
        SASL_CHALLENGE,
        SASL_RESPONSE,
        SASL_OUTCOME,
    ];
    let c = pick(u, ALL);
    composite(u, c, 0, out);
    c.0 >= 0x40
}

/// What [`message`] wrote: the bytes of each body section's content, for the meaning
/// check.
#[derive(Debug, Default)]
pub struct MessageParts {
    /// Each data section's bytes.
    pub data: Vec<Vec<u8>>,
    /// The encoding of each amqp-sequence section's list, or of the amqp-value's value.
    pub values: Vec<Vec<u8>>,
    /// Whether the body is an amqp-value (else data or amqp-sequence sections).
    pub amqp_value: bool,
}

/// Writes a message of part 3, valid by construction: each optional section or not, in
/// the spec's order, each with every encoding choice, and a body of one or more data
/// sections, one or more amqp-sequence sections, or one amqp-value.
pub fn message(u: &mut Unstructured<'_>, out: &mut Vec<u8>) -> MessageParts {
    if flag(u) {
        composite(u, HEADER, 0, out);
    }
    for code in [0x71, 0x72] {
        if flag(u) {
            annotations(u, code, out);
        }
    }
    if flag(u) {
        composite(u, PROPERTIES, 0, out);
    }
    if flag(u) {
        section_descriptor(u, 0x74, out);
        // String keys, simple values (no compounds).
        let n = usize::from(byte(u) % 6);
        let mut items = Vec::new();
        for i in 0..n {
            let k = format!("p{i}");
            items.push(fc::STR8);
            sized(true, k.as_bytes(), &mut items);
            let codes = constructors(MAX_DEPTH);
            let code = pick(u, &codes[..codes.len() - 8]);
            items.push(code);
            body(u, code, MAX_DEPTH, &mut items);
        }
        map(u, n, &items, out);
    }
    let mut parts = MessageParts::default();
    match byte(u) % 3 {
        0 => {
            for _ in 0..=byte(u) % 3 {
                section_descriptor(u, 0x75, out);
                let n = usize::from(byte(u));
                let b: Vec<u8> = (0..n).map(|_| byte(u)).collect();
                let small = flag(u);
                out.push(if small { fc::VBIN8 } else { fc::VBIN32 });
                sized(small, &b, out);
                parts.data.push(b);
            }
        }
        1 => {
            for _ in 0..=byte(u) % 3 {
                section_descriptor(u, 0x76, out);
                let mut list = Vec::new();
                let code = pick(u, &[fc::LIST0, fc::LIST8, fc::LIST32]);
                list.push(code);
                body(u, code, 1, &mut list);
                out.extend_from_slice(&list);
                parts.values.push(list);
            }
        }
        _ => {
            section_descriptor(u, 0x77, out);
            let mut v = Vec::new();
            write_value(u, 1, &mut v);
            out.extend_from_slice(&v);
            parts.values.push(v);
            parts.amqp_value = true;
        }
    }
    if flag(u) {
        annotations(u, 0x78, out);
    }
    parts
}

/// An annotations section (delivery-, message-annotations, footer): symbol or ulong keys.
fn annotations(u: &mut Unstructured<'_>, code: u64, out: &mut Vec<u8>) {
    section_descriptor(u, code, out);
    let n = usize::from(byte(u) % 5);
    let mut items = Vec::new();
    for i in 0..n {
        if flag(u) {
            let k = format!("x-opt-{i}");
            items.push(fc::SYM8);
            sized(true, k.as_bytes(), &mut items);
        } else {
            items.push(fc::SMALLULONG);
            items.push(i as u8);
        }
        write_value(u, 2, &mut items);
    }
    map(u, n, &items, out);
}

/// `0x00` and a known descriptor, as `smallulong`, `ulong`, `sym8` or `sym32`.
fn section_descriptor(u: &mut Unstructured<'_>, code: u64, out: &mut Vec<u8>) {
    out.push(fc::DESCRIBED);
    // Its symbolic form (`amqp:open:list` …).
    let name = crate::types::KNOWN_DESCRIPTORS
        .iter()
        .find(|(_, c, _)| *c == code)
        .map_or("", |(symbol, _, _)| *symbol);
    match byte(u) % 4 {
        0 => out.extend_from_slice(&[fc::SMALLULONG, code as u8]),
        1 => {
            out.push(fc::ULONG);
            out.extend_from_slice(&code.to_be_bytes());
        }
        2 => {
            out.push(fc::SYM8);
            sized(true, name.as_bytes(), out);
        }
        _ => {
            out.push(fc::SYM32);
            sized(false, name.as_bytes(), out);
        }
    }
}

/// A described list of `fields`: the fields up to the last mandatory one always, then as
/// many as the input wants, each optional one present or null.
fn composite(u: &mut Unstructured<'_>, (code, fields): Composite, depth: u32, out: &mut Vec<u8>) {
    section_descriptor(u, code, out);
    let required = fields.iter().rposition(|f| f.1).map_or(0, |i| i + 1);
    let n = required + usize::from(byte(u)) % (fields.len() - required + 1);
    let mut items = Vec::new();
    for &(f, mandatory) in &fields[..n] {
        // Nested composites stop being written once deep: null is always valid there.
        if !mandatory && (flag(u) || depth > 3) {
            items.push(fc::NULL);
        } else {
            field(u, f, depth, &mut items);
        }
    }
    let code = if n == 0 && flag(u) {
        fc::LIST0
    } else if items.len() <= SMALL_BODY && flag(u) {
        fc::LIST8
    } else {
        fc::LIST32
    };
    out.push(code);
    if code != fc::LIST0 {
        compound(code == fc::LIST8, n as u32, &items, out);
    }
}

/// A value of field type `f`, in any encoding the type allows.
fn field(u: &mut Unstructured<'_>, f: Field, depth: u32, out: &mut Vec<u8>) {
    match f {
        Bool => {
            let code = pick(u, &[fc::TRUE, fc::FALSE, fc::BOOLEAN]);
            out.push(code);
            body(u, code, depth, out);
        }
        Ubyte(max) => {
            let v = if max == u8::MAX { byte(u) } else { byte(u) % (max + 1) };
            out.extend_from_slice(&[fc::UBYTE, v]);
        }
        Durability => {
            let v = u32::from(byte(u) % 3);
            uint_of(u, v, out);
        }
        Ushort => {
            out.push(fc::USHORT);
            bytes(u, 2, out);
        }
        Uint => uint(u, out),
        Ulong => {
            let v = match byte(u) % 3 {
                0 => 0,
                1 => u64::from(byte(u)),
                _ => u64::from_be_bytes([byte(u), byte(u), byte(u), byte(u), 0, 0, byte(u), 1]),
            };
            let mut codes = vec![fc::ULONG];
            if v <= 255 {
                codes.push(fc::SMALLULONG);
            }
            if v == 0 {
                codes.push(fc::ULONG0);
            }
            let code = pick(u, &codes);
            out.push(code);
            match code {
                fc::ULONG => out.extend_from_slice(&v.to_be_bytes()),
                fc::SMALLULONG => out.push(v as u8),
                _ => {}
            }
        }
        Timestamp => {
            out.push(fc::TIMESTAMP);
            bytes(u, 8, out);
        }
        Str => {
            let code = pick(u, &[fc::STR8, fc::STR32]);
            out.push(code);
            body(u, code, depth, out);
        }
        Sym(choices) => {
            let s =
                if choices.is_empty() { symbol(u) } else { pick(u, choices).as_bytes().to_vec() };
            let small = flag(u);
            out.push(if small { fc::SYM8 } else { fc::SYM32 });
            sized(small, &s, out);
        }
        Multi | Multi1 => {
            if flag(u) {
                field(u, Sym(&[]), depth, out);
            } else {
                // An array of symbols, sym8 or sym32 elements.
                let small = flag(u);
                let elem = pick(u, &[fc::SYM8, fc::SYM32]);
                let mut items = vec![elem];
                let mut count = 0;
                for _ in 0..byte(u) % 4 + u8::from(matches!(f, Multi1)) {
                    let s = symbol(u);
                    sized(elem == fc::SYM8, &s, &mut items);
                    count += 1;
                }
                let small = small && items.len() <= SMALL_BODY;
                out.push(if small { fc::ARRAY8 } else { fc::ARRAY32 });
                compound(small, count, &items, out);
            }
        }
        Bin(max) => {
            let code = pick(u, &[fc::VBIN8, fc::VBIN32]);
            let n = usize::from(byte(u) % (max + 1));
            let b: Vec<u8> = (0..n).map(|_| byte(u)).collect();
            out.push(code);
            sized(code == fc::VBIN8, &b, out);
        }
        Fields => {
            let n = usize::from(byte(u) % 4);
            let mut items = Vec::new();
            for i in 0..n {
                let k = format!("f{i}");
                items.push(fc::SYM8);
                sized(true, k.as_bytes(), &mut items);
                write_value(u, 3, &mut items);
            }
            map(u, n, &items, out);
        }
        MessageId => match byte(u) % 4 {
            0 => field(u, Ulong, depth, out),
            1 => {
                out.push(fc::UUID);
                bytes(u, 16, out);
            }
            2 => field(u, Bin(32), depth, out),
            _ => field(u, Str, depth, out),
        },
        State => {
            const STATES: &[Composite] =
                &[RECEIVED, ACCEPTED, REJECTED, RELEASED, MODIFIED, DECLARED, TRANSACTIONAL_STATE];
            let c = pick(u, STATES);
            composite(u, c, depth + 1, out);
        }
        Outcome => {
            let c = pick(u, &[ACCEPTED, REJECTED, RELEASED, MODIFIED]);
            composite(u, c, depth + 1, out);
        }
        Error => composite(u, ERROR, depth + 1, out),
        Source => composite(u, SOURCE, depth + 1, out),
        Target => {
            let c = pick(u, &[TARGET, COORDINATOR]);
            composite(u, c, depth + 1, out);
        }
        Unsettled => {
            let n = usize::from(byte(u) % 4);
            let mut items = Vec::new();
            for i in 0..n {
                items.push(fc::VBIN8);
                sized(true, &[i as u8], &mut items);
                if flag(u) {
                    items.push(fc::NULL);
                } else {
                    field(u, State, depth, &mut items);
                }
            }
            map(u, n, &items, out);
        }
        Filter => {
            let n = usize::from(byte(u) % 3);
            let mut items = Vec::new();
            for i in 0..n {
                let k = format!("filter-{i}");
                items.push(fc::SYM8);
                sized(true, k.as_bytes(), &mut items);
                if flag(u) {
                    items.push(fc::NULL);
                } else {
                    // A described filter: a selector string under a symbol descriptor.
                    items.extend_from_slice(&[fc::DESCRIBED, fc::SYM8]);
                    sized(true, b"apache.org:selector-filter:string", &mut items);
                    field(u, Str, depth, &mut items);
                }
            }
            map(u, n, &items, out);
        }
    }
}

/// A uint, often 0 or small, in any encoding that holds it.
fn uint(u: &mut Unstructured<'_>, out: &mut Vec<u8>) {
    let v = match byte(u) % 3 {
        0 => 0,
        1 => u32::from(byte(u)),
        _ => u32::from_be_bytes([byte(u), byte(u), byte(u), byte(u)]),
    };
    uint_of(u, v, out);
}

/// `v` as `uint`, `smalluint` or `uint0`, whichever of them holds it.
fn uint_of(u: &mut Unstructured<'_>, v: u32, out: &mut Vec<u8>) {
    let mut codes = vec![fc::UINT];
    if v <= 255 {
        codes.push(fc::SMALLUINT);
    }
    if v == 0 {
        codes.push(fc::UINT0);
    }
    let code = pick(u, &codes);
    out.push(code);
    match code {
        fc::UINT => out.extend_from_slice(&v.to_be_bytes()),
        fc::SMALLUINT => out.push(v as u8),
        _ => {}
    }
}

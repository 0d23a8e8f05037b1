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

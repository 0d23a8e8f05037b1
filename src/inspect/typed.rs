//! The typed JSON form of AMQP values: lossless, so that a value read from the wire and
//! written back from its typed form gives the same bytes, format codes included.
//!
//! | AMQP | typed JSON |
//! | --- | --- |
//! | null | `null` |
//! | boolean | `true`, `false`; `{"boolean": true, "code": "0x56"}` for the one-byte form |
//! | ubyte … long | `{"uint": 5}`, `{"ulong": 7, "code": "0x80"}` (every integer type by name) |
//! | float, double | `{"double": 1.5}`; `{"double-bits": "7ff8000000000000"}` for NaN and infinities |
//! | decimal32/64/128 | `{"decimal64": "hex of the 8 bytes"}` |
//! | char, timestamp, uuid | `{"char": "x"}`, `{"timestamp": 1700000000000}`, `{"uuid": "…"}` |
//! | binary | `{"binary": "hex"}` |
//! | string | `"text"`; `{"string": "text", "code": "0xb1"}` |
//! | symbol | `{"symbol": "amqp:accepted:list"}` |
//! | list | `[…]`; `{"list": […], "code": "0xd0"}` |
//! | map | `{"map": [[key, value], …]}` (pairs: keys of any type, order kept) |
//! | array | `{"array": […], "element": "0x52"}`, optionally `"descriptor"` and `"code"` |
//! | described | `{"described": [descriptor, value]}` |
//!
//! `code` is present only where the value was not written in its smallest form; when it
//! is absent the smallest form is used. Array elements carry no `code`: the array's
//! `element` constructor decides.

#[cfg(feature = "json")]
use serde_json::{Map, Value as Json};

#[cfg(feature = "json")]
use super::json::Builder;
use super::json::Sink;
use super::HEX_DIGITS;
use crate::codec::Value;
#[cfg(feature = "json")]
use crate::codec::{Array, Described, Fmt, Symbol, Timestamp, Uuid};

#[cfg(feature = "json")]
/// The typed JSON of `v`.
pub fn to_typed(v: &Value) -> Json {
    let mut b = Builder::default();
    write_typed(&mut b, v, false);
    b.value()
}

/// [`to_typed`], into a sink; `in_array` for an element of an array, whose element
/// constructor decides its format code.
pub(crate) fn write_typed<S: Sink>(s: &mut S, v: &Value, in_array: bool) {
    // The format code, when the value was not written in its smallest form (never inside
    // an array). Sizing a compound walks it: only the values that can show a code ask.
    let shown_code = || {
        let (code, canonical) = v.format_codes();
        (code != canonical && !in_array).then_some(code)
    };
    match v {
        Value::Null => s.null(),
        Value::Boolean(b, _) => match shown_code() {
            None => s.bool(*b),
            Some(c) => {
                open(s, "boolean");
                s.bool(*b);
                close(s, Some(c));
            }
        },
        Value::Ubyte(x) => single(s, "ubyte", |s| s.u64((*x).into())),
        Value::Ushort(x) => single(s, "ushort", |s| s.u64((*x).into())),
        Value::Uint(x, _) => with_code(s, "uint", shown_code(), |s| s.u64((*x).into())),
        Value::Ulong(x, _) => with_code(s, "ulong", shown_code(), |s| s.u64(*x)),
        Value::Byte(x) => single(s, "byte", |s| s.i64((*x).into())),
        Value::Short(x) => single(s, "short", |s| s.i64((*x).into())),
        Value::Int(x, _) => with_code(s, "int", shown_code(), |s| s.i64((*x).into())),
        Value::Long(x, _) => with_code(s, "long", shown_code(), |s| s.i64(*x)),
        Value::Float(x) if x.is_finite() => single(s, "float", |s| s.f64(f64::from(*x))),
        Value::Float(x) => single(s, "float-bits", |s| s.hex(&x.to_bits().to_be_bytes())),
        Value::Double(x) if x.is_finite() => single(s, "double", |s| s.f64(*x)),
        Value::Double(x) => single(s, "double-bits", |s| s.hex(&x.to_bits().to_be_bytes())),
        Value::Decimal32(b) => single(s, "decimal32", |s| s.hex(b)),
        Value::Decimal64(b) => single(s, "decimal64", |s| s.hex(b)),
        Value::Decimal128(b) => single(s, "decimal128", |s| s.hex(b)),
        Value::Char(c) => single(s, "char", |s| s.str(c.encode_utf8(&mut [0; 4]))),
        Value::Timestamp(t) => single(s, "timestamp", |s| s.i64(t.0)),
        Value::Uuid(u) => single(s, "uuid", |s| s.display(u)),
        Value::Binary(b, _) => with_code(s, "binary", shown_code(), |s| s.hex(b)),
        Value::String(x, _) => match shown_code() {
            None => s.str(x),
            c => with_code(s, "string", c, |s| s.str(x)),
        },
        Value::Symbol(x, _) => with_code(s, "symbol", shown_code(), |s| s.str(x.as_str())),
        Value::List(items, _) => {
            let list = |s: &mut S| {
                s.begin_array();
                for i in items {
                    write_typed(s, i, false);
                }
                s.end_array();
            };
            match shown_code() {
                None => list(s),
                c => with_code(s, "list", c, list),
            }
        }
        Value::Map(pairs, _) => with_code(s, "map", shown_code(), |s| {
            s.begin_array();
            for (k, v) in pairs {
                s.begin_array();
                write_typed(s, k, false);
                write_typed(s, v, false);
                s.end_array();
            }
            s.end_array();
        }),
        Value::Array(a) => {
            open(s, "array");
            s.begin_array();
            for i in a.items() {
                write_typed(s, i, true);
            }
            s.end_array();
            s.key("element");
            write_code(s, a.element_code());
            if let Some(d) = a.descriptor() {
                s.key("descriptor");
                write_typed(s, d, false);
            }
            let shown = a.format_code() != a.canonical_code() && !in_array;
            close(s, shown.then(|| a.format_code()));
        }
        Value::Described(d) => single(s, "described", |s| {
            s.begin_array();
            write_typed(s, &d.descriptor, false);
            write_typed(s, &d.value, false);
            s.end_array();
        }),
    }
}

/// Opens `{key: `.
fn open<S: Sink>(s: &mut S, key: &str) {
    s.begin_object();
    s.key(key);
}

/// Closes an object opened by [`open`], after the format code when there is one.
fn close<S: Sink>(s: &mut S, code: Option<u8>) {
    if let Some(c) = code {
        s.key("code");
        write_code(s, c);
    }
    s.end_object();
}

/// `{key: value}`.
fn single<S: Sink>(s: &mut S, key: &str, value: impl FnOnce(&mut S)) {
    with_code(s, key, None, value);
}

/// `{key: value}`, with the format code when there is one.
fn with_code<S: Sink>(s: &mut S, key: &str, code: Option<u8>, value: impl FnOnce(&mut S)) {
    open(s, key);
    value(s);
    close(s, code);
}

/// The string `0x52`, without allocating.
fn write_code<S: Sink>(s: &mut S, c: u8) {
    let text = [b'0', b'x', HEX_DIGITS[usize::from(c >> 4)], HEX_DIGITS[usize::from(c & 0xf)]];
    s.str(std::str::from_utf8(&text).unwrap_or_default());
}

#[cfg(feature = "json")]
/// A value from its typed JSON; an error names what is wrong and where (`at` is a path
/// such as `fields.handle`).
pub fn from_typed(j: &Json, at: &str) -> Result<Value, String> {
    value(j, at, None)
}

/// The keys beside a typed value's type key.
#[cfg(feature = "json")]
const MODIFIERS: [&str; 5] = ["code", "element", "descriptor", "size", "count"];

/// A typed object's keys checked: one type key, and modifiers beside it (a misspelt
/// `"cod"`, or a second value, would otherwise be dropped without a word).
#[cfg(feature = "json")]
fn check_keys(o: &Map<String, Json>, at: &str) -> Result<(), String> {
    let mut kinds = o.keys().filter(|k| !MODIFIERS.contains(&k.as_str()));
    if let (Some(a), Some(b)) = (kinds.next(), kinds.next()) {
        return Err(format!(
            "{at}: a typed value has one type key and modifiers ({}): {a:?} and {b:?} are two",
            MODIFIERS.join(", ")
        ));
    }
    Ok(())
}

/// A value given a format `code` (outside an array, whose elements the array checks) is
/// written with exactly that constructor: one that cannot write it (`0x52`, smalluint,
/// for 500; `0xa3`, sym8, for a string) is refused, not replaced by another.
#[cfg(feature = "json")]
fn check_code(v: &Value, o: &Map<String, Json>, at: &str) -> Result<(), String> {
    let Some(c) = o.get("code") else { return Ok(()) };
    let code = parse_code(c, at)?;
    let mut b = Vec::new();
    v.encode(&mut b);
    if b.first() != Some(&code) {
        let used = b.first().map_or_else(|| "none".to_owned(), |c| hex_code(*c));
        return Err(format!(
            "{at}: the constructor {} cannot write this value (it is written {used})",
            hex_code(code)
        ));
    }
    Ok(())
}

#[cfg(feature = "json")]
/// Reads `j`; `element` is the constructor of the array it is an element of.
fn value(j: &Json, at: &str, element: Option<u8>) -> Result<Value, String> {
    let fmt = |o: &Map<String, Json>| -> Result<Fmt, String> {
        match (element, o.get("code")) {
            (Some(e), _) => Ok(Fmt::Code(e)),
            (None, Some(c)) => Ok(Fmt::Code(parse_code(c, at)?)),
            (None, None) => Ok(Fmt::Auto),
        }
    };
    let elem_fmt = element.map_or(Fmt::Auto, Fmt::Code);
    match j {
        Json::Null => Ok(Value::Null),
        Json::Bool(b) => Ok(Value::Boolean(*b, elem_fmt)),
        Json::String(s) => Ok(Value::String(s.as_str().into(), elem_fmt)),
        Json::Array(items) => {
            let items = items
                .iter()
                .enumerate()
                .map(|(i, v)| value(v, &format!("{at}[{i}]"), None))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::List(items, elem_fmt))
        }
        Json::Number(_) => Err(format!(
            "{at}: a bare number has no AMQP type: write {{\"uint\": n}}, {{\"long\": n}}, …"
        )),
        Json::Object(o) => {
            check_keys(o, at)?;
            let (kind, inner) = o
                .iter()
                .find(|(k, _)| !MODIFIERS.contains(&k.as_str()))
                .ok_or_else(|| format!("{at}: an object with no type key"))?;
            let num = |what: &str| -> Result<i128, String> {
                inner
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| inner.as_u64().map(i128::from))
                    .ok_or_else(|| format!("{at}: {what} wants an integer, not {inner}"))
            };
            let ranged = |what: &str, lo: i128, hi: i128| -> Result<i128, String> {
                let n = num(what)?;
                if n < lo || n > hi {
                    return Err(format!("{at}: {n} is out of range for {what}"));
                }
                Ok(n)
            };
            let text = |what: &str| -> Result<&str, String> {
                inner.as_str().ok_or_else(|| format!("{at}: {what} wants a string, not {inner}"))
            };
            let bits = |what: &str, n: usize| -> Result<Vec<u8>, String> {
                let b = unhex(text(what)?).ok_or_else(|| format!("{at}: {what}: bad hex"))?;
                if b.len() != n {
                    return Err(format!("{at}: {what} wants {n} bytes, got {}", b.len()));
                }
                Ok(b)
            };
            let v = match kind.as_str() {
                "boolean" => Value::Boolean(
                    inner.as_bool().ok_or_else(|| format!("{at}: boolean wants true or false"))?,
                    fmt(o)?,
                ),
                "ubyte" => Value::Ubyte(ranged("ubyte", 0, 255)? as u8),
                "ushort" => Value::Ushort(ranged("ushort", 0, 65535)? as u16),
                "uint" => Value::Uint(ranged("uint", 0, u32::MAX.into())? as u32, fmt(o)?),
                "ulong" => Value::Ulong(ranged("ulong", 0, u64::MAX.into())? as u64, fmt(o)?),
                "byte" => Value::Byte(ranged("byte", -128, 127)? as i8),
                "short" => Value::Short(ranged("short", i16::MIN.into(), i16::MAX.into())? as i16),
                "int" => {
                    Value::Int(ranged("int", i32::MIN.into(), i32::MAX.into())? as i32, fmt(o)?)
                }
                "long" => {
                    Value::Long(ranged("long", i64::MIN.into(), i64::MAX.into())? as i64, fmt(o)?)
                }
                "float" => {
                    let f = inner.as_f64().ok_or_else(|| format!("{at}: float wants a number"))?;
                    // JSON numbers are finite: one past a float's range would be written as
                    // an infinity no one asked for.
                    if (f as f32).is_infinite() {
                        return Err(format!(
                            "{at}: {f} is out of range for float (an infinity is written \
                             {{\"float-bits\": \"7f800000\"}})"
                        ));
                    }
                    Value::Float(f as f32)
                }
                "double" => Value::Double(
                    inner.as_f64().ok_or_else(|| format!("{at}: double wants a number"))?,
                ),
                "float-bits" => {
                    let b = bits("float-bits", 4)?;
                    Value::Float(f32::from_bits(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
                }
                "double-bits" => {
                    let b = bits("double-bits", 8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b);
                    Value::Double(f64::from_bits(u64::from_be_bytes(a)))
                }
                "decimal32" => {
                    let b = bits("decimal32", 4)?;
                    Value::Decimal32([b[0], b[1], b[2], b[3]])
                }
                "decimal64" => {
                    let b = bits("decimal64", 8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b);
                    Value::Decimal64(a)
                }
                "decimal128" => {
                    let b = bits("decimal128", 16)?;
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&b);
                    Value::Decimal128(a)
                }
                "char" => {
                    let t = text("char")?;
                    let mut cs = t.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => Value::Char(c),
                        _ => return Err(format!("{at}: char wants one character, not {t:?}")),
                    }
                }
                "timestamp" => Value::Timestamp(Timestamp(ranged(
                    "timestamp",
                    i64::MIN.into(),
                    i64::MAX.into(),
                )? as i64)),
                "uuid" => {
                    let t = text("uuid")?;
                    let b = unhex(&t.replace('-', ""))
                        .filter(|b| b.len() == 16)
                        .ok_or_else(|| format!("{at}: {t:?} is not a UUID"))?;
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&b);
                    Value::Uuid(Uuid(a))
                }
                "binary" => Value::Binary(
                    unhex(text("binary")?).ok_or_else(|| format!("{at}: binary: bad hex"))?.into(),
                    fmt(o)?,
                ),
                "string" => Value::String(text("string")?.into(), fmt(o)?),
                "symbol" => {
                    let t = text("symbol")?;
                    if !t.is_ascii() {
                        return Err(format!("{at}: a symbol is ASCII: {t:?}"));
                    }
                    Value::Symbol(Symbol::from(t), fmt(o)?)
                }
                "list" => {
                    let items = inner
                        .as_array()
                        .ok_or_else(|| format!("{at}: list wants an array"))?
                        .iter()
                        .enumerate()
                        .map(|(i, v)| value(v, &format!("{at}.list[{i}]"), None))
                        .collect::<Result<Vec<_>, _>>()?;
                    Value::List(items, fmt(o)?)
                }
                "map" => {
                    let pairs = inner
                        .as_array()
                        .ok_or_else(|| format!("{at}: map wants an array of [key, value] pairs"))?
                        .iter()
                        .enumerate()
                        .map(|(i, p)| match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((
                                value(k, &format!("{at}.map[{i}][0]"), None)?,
                                value(v, &format!("{at}.map[{i}][1]"), None)?,
                            )),
                            _ => Err(format!("{at}.map[{i}]: a pair is [key, value]")),
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    Value::Map(pairs, fmt(o)?)
                }
                "array" => array(o, inner, at)?,
                "described" => match inner.as_array().map(Vec::as_slice) {
                    Some([d, v]) => Value::Described(Box::new(Described {
                        descriptor: value(d, &format!("{at}.descriptor"), None)?,
                        value: value(v, &format!("{at}.value"), None)?,
                    })),
                    // As `decode` shows one in `fields`: `{"descriptor": 0x…, "value": …}`, a
                    // number descriptor being a ulong and a text one a symbol (1.5: the two
                    // forms a descriptor takes), the value typed.
                    _ => match inner.as_object() {
                        Some(d) if d.len() == 2 && d.contains_key("descriptor") => {
                            let (descriptor, v) = (&d["descriptor"], d.get("value"));
                            let v = v.ok_or_else(|| format!("{at}: described wants a value"))?;
                            // (A descriptor of another type, which decode shows as a
                            // plain number too, is written as the widest of its kind.)
                            let descriptor = match descriptor {
                                Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                                    (Some(u), _, _) => Value::Ulong(u, Fmt::Auto),
                                    (_, Some(i), _) => Value::Long(i, Fmt::Auto),
                                    (_, _, Some(f)) => Value::Double(f),
                                    _ => return Err(format!("{at}.descriptor: {n}")),
                                },
                                Json::String(s) if s.is_ascii() => {
                                    Value::Symbol(Symbol::from(s.as_str()), Fmt::Auto)
                                }
                                other => value(other, &format!("{at}.descriptor"), None)?,
                            };
                            Value::Described(Box::new(Described {
                                descriptor,
                                value: value(v, &format!("{at}.value"), None)?,
                            }))
                        }
                        _ => {
                            return Err(format!(
                                "{at}: described wants [descriptor, value] (or, as decode shows \
                                 it, {{\"descriptor\": …, \"value\": …}})"
                            ))
                        }
                    },
                },
                other if crate::types::code_for_symbol(&format!("amqp:{other}:list")).is_some() => {
                    return Err(format!(
                        "{at}: {other:?} is a composite of the spec, written by name only where \
                         a field's type is known; in a map, list or array, write it typed \
                         ({{\"described\": [{{\"ulong\": …}}, [fields…]]}}, as \"typed\" shows it)"
                    ))
                }
                other => return Err(format!("{at}: unknown type {other:?}")),
            };
            // An array checks its own codes and its elements'.
            if element.is_none() && kind != "array" {
                check_code(&v, o, at)?;
            }
            Ok(v)
        }
    }
}

#[cfg(feature = "json")]
fn array(o: &Map<String, Json>, inner: &Json, at: &str) -> Result<Value, String> {
    let element = match o.get("element") {
        Some(c) => parse_code(c, at)?,
        None => return Err(format!("{at}: an array needs its \"element\" constructor")),
    };
    let items = inner
        .as_array()
        .ok_or_else(|| format!("{at}: array wants an array"))?
        .iter()
        .enumerate()
        .map(|(i, v)| value(v, &format!("{at}.array[{i}]"), Some(element)))
        .collect::<Result<Vec<_>, _>>()?;
    if o.get("descriptor").is_none() && items.iter().any(|v| matches!(v, Value::Described(_))) {
        return Err(format!(
            "{at}: an array of described values gives the descriptor once, beside \
             \"element\" (\"descriptor\": …), and each element's value alone"
        ));
    }
    let code = o.get("code").map(|c| parse_code(c, at)).transpose()?;
    let built = if items.is_empty() {
        Ok(Array::empty(element))
    } else {
        Array::new(items).map_err(|e| format!("{at}: {e}"))
    }?;
    let mut built = built.with_codes(code, element);
    if let Some(d) = o.get("descriptor") {
        built = built.with_descriptor(value(d, &format!("{at}.descriptor"), None)?);
    }
    if built.element_code() != element {
        return Err(format!(
            "{at}: an element does not fit the element constructor {}",
            hex_code(element)
        ));
    }
    Ok(Value::Array(built))
}

#[cfg(feature = "json")]
/// `"0x52"` or `"52"` or the number 82.
pub(crate) fn parse_code(c: &Json, at: &str) -> Result<u8, String> {
    match c {
        Json::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Json::String(s) => u8::from_str_radix(s.trim_start_matches("0x"), 16).ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{at}: {c} is not a format code (write \"0x52\")"))
}

/// `0x52`.
#[cfg(feature = "json")]
pub(crate) fn hex_code(c: u8) -> String {
    format!("0x{c:02x}")
}

/// Bytes from hex (whitespace allowed between byte pairs).
#[cfg(any(feature = "json", feature = "keylog"))]
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|p| std::str::from_utf8(p).ok().and_then(|t| u8::from_str_radix(t, 16).ok()))
        .collect()
}

#[cfg(all(test, feature = "json"))]
mod tests {
    use super::*;

    fn round(h: &str) {
        let b = unhex(h).expect("hex");
        let v = Value::decode(&b).unwrap_or_else(|e| panic!("{h}: {e}"));
        let j = to_typed(&v);
        let back = from_typed(&j, "v").unwrap_or_else(|e| panic!("{h}: {e} in {j}"));
        assert_eq!(back.to_vec(), b, "{h} via {j}");
    }

    #[test]
    fn every_encoding_choice_survives_the_typed_form() {
        for h in [
            "40",
            "41",
            "42",
            "5601",
            "5600",
            "50ff",
            "600102",
            "43",
            "5205",
            "7000000005",
            "44",
            "5307",
            "800000000000000007",
            "51fe",
            "61fffe",
            "5405",
            "71fffffff0",
            "5505",
            "81ffffffffffffff00",
            "723fc00000",
            "727fc00000",
            "823ff8000000000000",
            "827ff8000000000000",
            "7400000001",
            "840000000000000001",
            "9400000000000000000000000000000001",
            "7300000041",
            "830000018bcfe56800",
            "98000102030405060708090a0b0c0d0e0f",
            "a003010203",
            "b000000002abcd",
            "a10568656c6c6f",
            "b10000000161",
            "a30178",
            "b30000000178",
            "45",
            "c0020141",
            "d0000000050000000141",
            "c105025101a100",
            "c1050241a1016b",
            "e005 03 52 010203",
            "f0000000070000000252 0102",
            "e00503 005324 45",
            "005310c00401a10141",
            "e0020241",
        ] {
            round(&h.replace(' ', ""));
        }
    }

    #[test]
    fn hand_written_forms_read_as_their_types() {
        let j: Json = serde_json::from_str(
            r#"[{"uint": 5}, {"symbol": "x"}, "text", {"map": [[{"symbol": "k"}, {"long": -1}]]},
                {"array": [{"uint": 1}, {"uint": 2}], "element": "0x70"}, {"described": [{"ulong": 36}, []]}]"#,
        )
        .expect("JSON");
        let v = from_typed(&j, "v").expect("typed");
        // list8 of: smalluint 5, sym8 "x", str8 "text", a map8 {sym8 "k": smalllong -1},
        // an array8 of two uints (element 0x70 as asked), an accepted outcome.
        let want = "c024065205a30178a10474657874c10602a3016b55ffe00a02700000000100000002\
                    00532445";
        assert_eq!(crate::inspect::hex(&v.to_vec()), want);
        for bad in
            [r#"5"#, r#"{"uint": -1}"#, r#"{"symbol": "é"}"#, r#"{"nope": 1}"#, r#"{"array": []}"#]
        {
            let j: Json = serde_json::from_str(bad).expect("JSON");
            assert!(from_typed(&j, "v").is_err(), "{bad}");
        }
    }
}

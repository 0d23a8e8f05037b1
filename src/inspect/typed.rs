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

use serde_json::{Map, Value as Json};

use crate::codec::{Array, Described, Fmt, Symbol, Timestamp, Uuid, Value};

/// The typed JSON of `v`.
pub fn to_typed(v: &Value) -> Json {
    typed(v, false)
}

fn typed(v: &Value, in_array: bool) -> Json {
    // Built with maps and `From` directly: `json!` copies each value it is given through
    // serde's serializer, which for a nested value is its whole subtree, at every level.
    let (code, canonical) = v.format_codes();
    // `{key: value}`, and the format code where the value was not written in its smallest
    // form (never inside an array, whose element constructor decides).
    let with_code = |key: &str, value: Json| {
        let mut o = Map::with_capacity(2);
        o.insert(key.into(), value);
        if code != canonical && !in_array {
            o.insert("code".into(), hex_code(code).into());
        }
        Json::Object(o)
    };
    let single = |key: &str, value: Json| {
        let mut o = Map::with_capacity(1);
        o.insert(key.into(), value);
        Json::Object(o)
    };
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b, _) if code == canonical || in_array => (*b).into(),
        Value::Boolean(b, _) => with_code("boolean", (*b).into()),
        Value::Ubyte(x) => single("ubyte", (*x).into()),
        Value::Ushort(x) => single("ushort", (*x).into()),
        Value::Uint(x, _) => with_code("uint", (*x).into()),
        Value::Ulong(x, _) => with_code("ulong", (*x).into()),
        Value::Byte(x) => single("byte", (*x).into()),
        Value::Short(x) => single("short", (*x).into()),
        Value::Int(x, _) => with_code("int", (*x).into()),
        Value::Long(x, _) => with_code("long", (*x).into()),
        Value::Float(x) if x.is_finite() => single("float", (*x).into()),
        Value::Float(x) => single("float-bits", format!("{:08x}", x.to_bits()).into()),
        Value::Double(x) if x.is_finite() => single("double", (*x).into()),
        Value::Double(x) => single("double-bits", format!("{:016x}", x.to_bits()).into()),
        Value::Decimal32(b) => single("decimal32", hex(b).into()),
        Value::Decimal64(b) => single("decimal64", hex(b).into()),
        Value::Decimal128(b) => single("decimal128", hex(b).into()),
        Value::Char(c) => single("char", c.to_string().into()),
        Value::Timestamp(t) => single("timestamp", t.0.into()),
        Value::Uuid(u) => single("uuid", u.to_string().into()),
        Value::Binary(b, _) => with_code("binary", hex(b).into()),
        Value::String(s, _) if code == canonical || in_array => (&**s).into(),
        Value::String(s, _) => with_code("string", (&**s).into()),
        Value::Symbol(s, _) => with_code("symbol", s.as_str().into()),
        Value::List(items, _) => {
            let items = Json::Array(items.iter().map(to_typed).collect());
            if code == canonical || in_array {
                items
            } else {
                with_code("list", items)
            }
        }
        Value::Map(pairs, _) => {
            let pairs =
                pairs.iter().map(|(k, v)| Json::Array(vec![to_typed(k), to_typed(v)])).collect();
            with_code("map", Json::Array(pairs))
        }
        Value::Array(a) => {
            let mut o = Map::with_capacity(4);
            o.insert("array".into(), a.items().iter().map(|i| typed(i, true)).collect());
            o.insert("element".into(), hex_code(a.element_code()).into());
            if let Some(d) = a.descriptor() {
                o.insert("descriptor".into(), to_typed(d));
            }
            if a.format_code() != a.canonical_code() && !in_array {
                o.insert("code".into(), hex_code(a.format_code()).into());
            }
            Json::Object(o)
        }
        Value::Described(d) => {
            single("described", Json::Array(vec![to_typed(&d.descriptor), to_typed(&d.value)]))
        }
    }
}

/// A value from its typed JSON; an error names what is wrong and where (`at` is a path
/// such as `fields.handle`).
pub fn from_typed(j: &Json, at: &str) -> Result<Value, String> {
    value(j, at, None)
}

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
            let (kind, inner) = o
                .iter()
                .find(|(k, _)| !matches!(k.as_str(), "code" | "element" | "descriptor"))
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
            Ok(match kind.as_str() {
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
                "float" => Value::Float(
                    inner.as_f64().ok_or_else(|| format!("{at}: float wants a number"))? as f32,
                ),
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
                    _ => return Err(format!("{at}: described wants [descriptor, value]")),
                },
                other => return Err(format!("{at}: unknown type {other:?}")),
            })
        }
    }
}

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
pub(crate) fn hex_code(c: u8) -> String {
    format!("0x{c:02x}")
}

/// Lower-case hex.
pub(crate) fn hex(b: &[u8]) -> String {
    super::hex(b)
}

/// Bytes from hex (whitespace allowed between byte pairs).
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|p| std::str::from_utf8(p).ok().and_then(|t| u8::from_str_radix(t, 16).ok()))
        .collect()
}

#[cfg(test)]
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

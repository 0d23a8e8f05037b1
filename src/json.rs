//! A small JSON reader and value (RFC 8259) for the places that read JSON without the
//! `json` feature: the browser binding's arguments (connection options, messages) and IoT
//! Hub's feedback bodies, which arrive from the network.
//!
//! It reads what `serde_json` reads, the same way, so that the two builds of the crate
//! agree: the same texts are refused (a differential check in the `azure` fuzz target
//! holds it to that), whole numbers are kept exactly (`u64`, or `i64` when negative) and
//! others read as `f64`, a key given twice keeps its first place and its last value, and
//! nesting stops at 127 levels. Printing ([`Json`]'s `Display`) writes the compact text
//! `serde_json` writes for the same value.
//!
//! Hostile input gets an error, never a panic: nesting is bounded, an object's repeated
//! keys are found by one sort of its members rather than a scan of the object per key, and
//! nothing is allocated ahead of the bytes that fill it.

use std::fmt;

/// Nesting deeper than this is refused (`serde_json`'s limit: 128 levels counted from one,
/// the last refused).
const MAX_DEPTH: usize = 127;

/// A JSON value. An object keeps its members in the order they were first given.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Self>),
    /// An object: its members, each key once.
    Object(Vec<(String, Self)>),
}

/// A JSON number as it was read: a whole number exactly, anything else as a double.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// A whole number of at least 0 that fits a `u64`.
    PosInt(u64),
    /// A negative whole number that fits an `i64`.
    NegInt(i64),
    /// Any other number (a fraction, an exponent, `-0`, or a whole number too large), as
    /// the nearest double.
    Float(f64),
}

/// Why a text is not JSON, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// The byte offset where reading stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for JsonError {}

impl Json {
    /// Reads one JSON text (a value, with white space around it and nothing else).
    pub fn parse(text: &[u8]) -> Result<Self, JsonError> {
        // Outside strings, every byte JSON allows is ASCII; inside them, `serde_json` refuses
        // what is not UTF-8. Checking the whole text first refuses the same texts.
        let text = std::str::from_utf8(text)
            .map_err(|e| JsonError { offset: e.valid_up_to(), reason: "not UTF-8" })?;
        let mut p = Parser { text, pos: 0 };
        p.skip_space();
        let v = p.value(0)?;
        p.skip_space();
        if p.pos < p.text.len() {
            return Err(p.error("trailing characters"));
        }
        Ok(v)
    }

    /// The value of `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Self> {
        self.as_object()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The members, if this is an object.
    pub fn as_object(&self) -> Option<&[(String, Self)]> {
        match self {
            Self::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value, if this is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if this is a whole number of at least 0 that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Number(Number::PosInt(n)) => Some(*n),
            _ => None,
        }
    }

    /// The number, if this is a whole number that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(Number::PosInt(n)) => i64::try_from(*n).ok(),
            Self::Number(Number::NegInt(n)) => Some(*n),
            _ => None,
        }
    }

    /// The number as a double, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(Number::PosInt(n)) => Some(*n as f64),
            Self::Number(Number::NegInt(n)) => Some(*n as f64),
            Self::Number(Number::Float(x)) => Some(*x),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }
}

impl fmt::Display for Json {
    /// The compact text, as `serde_json` prints the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Number(n) => n.write(out),
            Self::String(s) => push_string(out, s),
            Self::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Self::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_string(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl Number {
    fn write(&self, out: &mut String) {
        match *self {
            Self::PosInt(n) => crate::inspect::push_decimal(out, n),
            Self::NegInt(n) => {
                out.push('-');
                crate::inspect::push_decimal(out, n.unsigned_abs());
            }
            Self::Float(x) => crate::inspect::json::push_f64(out, x),
        }
    }
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    crate::inspect::json::push_escaped(out, s);
    out.push('"');
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError { offset: self.pos, reason }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `word` (a literal's rest) or fails.
    fn literal(&mut self, word: &[u8], v: Json) -> Result<Json, JsonError> {
        for &b in word {
            if self.peek() != Some(b) {
                return Err(self.error(if self.pos >= self.text.len() {
                    "EOF while parsing a value"
                } else {
                    "expected ident"
                }));
            }
            self.pos += 1;
        }
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Json::Number),
            Some(b'[') => {
                let depth = self.enter(depth)?;
                let mut items = Vec::new();
                self.pos += 1;
                self.skip_space();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth)?);
                    self.skip_space();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.skip_space();
                        }
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        None => return Err(self.error("EOF while parsing a list")),
                        Some(_) => return Err(self.error("expected `,` or `]`")),
                    }
                }
            }
            Some(b'{') => {
                let depth = self.enter(depth)?;
                let mut members: Vec<(String, Json)> = Vec::new();
                self.pos += 1;
                self.skip_space();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    match self.peek() {
                        Some(b'"') => {}
                        None => return Err(self.error("EOF while parsing an object")),
                        Some(_) => return Err(self.error("key must be a string")),
                    }
                    let key = self.string()?;
                    self.skip_space();
                    match self.peek() {
                        Some(b':') => self.pos += 1,
                        None => return Err(self.error("EOF while parsing an object")),
                        Some(_) => return Err(self.error("expected `:`")),
                    }
                    self.skip_space();
                    let v = self.value(depth)?;
                    members.push((key, v));
                    self.skip_space();
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.skip_space();
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            merge_repeated_keys(&mut members);
                            return Ok(Json::Object(members));
                        }
                        None => return Err(self.error("EOF while parsing an object")),
                        Some(_) => return Err(self.error("expected `,` or `}`")),
                    }
                }
            }
            Some(_) => Err(self.error("expected value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        Ok(depth + 1)
    }

    /// A string, from its opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        let mut plain = self.pos;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            match b {
                b'"' => {
                    out.push_str(&self.text[plain..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[plain..self.pos]);
                    self.pos += 1;
                    self.escape(&mut out)?;
                    plain = self.pos;
                }
                // RFC 8259, 7: "All Unicode characters may be placed within the quotation
                // marks, except for ... the control characters (U+0000 through U+001F)".
                0x00..=0x1f => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                _ => self.pos += 1,
            }
        }
    }

    /// One escape, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let Some(b) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                match hi {
                    0xd800..=0xdbff => {
                        // A surrogate pair: "\uD834\uDD1E" is one character (RFC 8259, 7).
                        if self.text.as_bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error("lone leading surrogate in hex escape"));
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&lo) {
                            return Err(self.error("lone leading surrogate in hex escape"));
                        }
                        let c =
                            0x10000 + ((u32::from(hi) - 0xd800) << 10) + (u32::from(lo) - 0xdc00);
                        char::from_u32(c).ok_or_else(|| self.error("invalid unicode code point"))?
                    }
                    0xdc00..=0xdfff => {
                        return Err(self.error("lone leading surrogate in hex escape"))
                    }
                    _ => char::from_u32(u32::from(hi))
                        .ok_or_else(|| self.error("invalid unicode code point"))?,
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape"));
            }
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut n: u16 = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b) => (b as char).to_digit(16),
            };
            let Some(d) = d else {
                return Err(self.error("invalid escape"));
            };
            n = (n << 4) | d as u16;
            self.pos += 1;
        }
        Ok(n)
    }

    /// A number, in the grammar of RFC 8259, 6.
    fn number(&mut self) -> Result<Number, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            None => return Err(self.error("EOF while parsing a value")),
            Some(_) => return Err(self.error("invalid number")),
        }
        let whole_end = self.pos;
        let mut whole = true;
        if self.peek() == Some(b'.') {
            whole = false;
            self.pos += 1;
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                None => return Err(self.error("EOF while parsing a value")),
                Some(_) => return Err(self.error("invalid number")),
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            whole = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                None => return Err(self.error("EOF while parsing a value")),
                Some(_) => return Err(self.error("invalid number")),
            }
        }
        let text = &self.text[start..self.pos];
        if whole {
            let magnitude = &self.text[start + usize::from(negative)..whole_end];
            if let Ok(n) = magnitude.parse::<u64>() {
                if !negative {
                    return Ok(Number::PosInt(n));
                }
                // `-0`, and negatives beyond an i64, read as doubles (as `serde_json` does).
                if n != 0 && n <= 1 << 63 {
                    return Ok(Number::NegInt((n as i64).wrapping_neg()));
                }
            }
        }
        match nearest_f64(text) {
            Some(x) if x.is_finite() => Ok(Number::Float(x)),
            _ => Err(JsonError { offset: start, reason: "number out of range" }),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

/// The double nearest to a number's text (one that matched the grammar of RFC 8259, 6).
#[cfg(not(all(feature = "wasm-base", target_arch = "wasm32")))]
fn nearest_f64(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// The double nearest to a number's text, read by the browser's own `Number` (ECMAScript's
/// StringToNumber, which rounds to nearest: every JSON number is a literal it reads). Core's
/// reader would add about 18 KB of tables and code to the browser module.
#[cfg(all(feature = "wasm-base", target_arch = "wasm32"))]
fn nearest_f64(text: &str) -> Option<f64> {
    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_name = Number)]
        fn js_number(text: &str) -> f64;
    }
    Some(js_number(text))
}

/// An object's members with each repeated key once, at its first place, holding its last
/// value (as serde_json's order-keeping map reads them). Sorting the places by key finds
/// the repeats in n log n, whatever the object's size.
fn merge_repeated_keys(members: &mut Vec<(String, Json)>) {
    if members.len() < 2 {
        return;
    }
    // By key, and by place within a key.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_unstable_by(|&a, &b| members[a].0.cmp(&members[b].0).then(a.cmp(&b)));
    let mut repeated = vec![false; members.len()];
    let mut any = false;
    let mut start = 0;
    while start < order.len() {
        let key = &members[order[start]].0;
        let end = start + order[start..].iter().take_while(|&&i| members[i].0 == *key).count();
        if end - start > 1 {
            let (first, last) = (order[start], order[end - 1]);
            members[first].1 = std::mem::replace(&mut members[last].1, Json::Null);
            for &i in &order[start + 1..end] {
                repeated[i] = true;
            }
            any = true;
        }
        start = end;
    }
    if any {
        let mut place = 0;
        members.retain(|_| {
            place += 1;
            !repeated[place - 1]
        });
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<u64> for Json {
    fn from(n: u64) -> Self {
        Self::Number(Number::PosInt(n))
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl<T: Into<Self>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Differential checks against `serde_json`, which every build with the `json` feature
/// has: the same texts accepted, the same values read, the same text printed.
#[cfg(feature = "json")]
pub mod differential {
    use super::{Json, Number};

    /// Whether our value is the one `serde_json` read.
    pub fn same(ours: &Json, theirs: &serde_json::Value) -> bool {
        use serde_json::Value as S;
        match (ours, theirs) {
            (Json::Null, S::Null) => true,
            (Json::Bool(a), S::Bool(b)) => a == b,
            (Json::Number(n), S::Number(m)) => match *n {
                Number::PosInt(a) => m.as_u64() == Some(a),
                Number::NegInt(a) => m.as_i64() == Some(a) && !m.is_u64(),
                // serde_json's own float reader (without its `float_roundtrip` feature)
                // may land one unit in the last place away from the nearest double.
                Number::Float(a) => m.is_f64() && m.as_f64().is_some_and(|b| close(a, b)),
            },
            (Json::String(a), S::String(b)) => a == b,
            (Json::Array(a), S::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Json::Object(a), S::Object(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((k, x), (l, y))| k == l && same(x, y))
            }
            _ => false,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON
    }

    /// Reads `text` both ways and panics, naming the property, where they differ: one
    /// refuses what the other accepts, the values differ, or (for values without floats,
    /// whose digits the two readers may round apart) the printed texts differ.
    pub fn check(text: &[u8]) {
        let ours = Json::parse(text);
        let theirs = serde_json::from_slice::<serde_json::Value>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert!(same(a, b), "json: both read the text, to different values");
                if !has_float(a) {
                    assert_eq!(a.to_string(), b.to_string(), "json: printed alike");
                }
                let again = Json::parse(a.to_string().as_bytes())
                    .expect("json: our printed text must read back");
                assert_eq!(&again, a, "json: parse(print(v)) must be v");
            }
            (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) => panic!("json: serde_json refuses ({e}) what we accept"),
            (Err(e), Ok(_)) => panic!("json: we refuse ({e}) what serde_json accepts"),
        }
    }

    fn has_float(v: &Json) -> bool {
        match v {
            Json::Number(Number::Float(_)) => true,
            Json::Array(a) => a.iter().any(has_float),
            Json::Object(o) => o.iter().any(|(_, v)| has_float(v)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Json, JsonError> {
        Json::parse(s.as_bytes())
    }

    #[test]
    fn values_read_as_their_kinds() {
        let v = parse(r#" {"a": [1, -2, 2.5, true, null, "x\n\u00e9\ud834\udd1e"], "b": {}} "#)
            .expect("JSON");
        let a = v.get("a").and_then(|a| match a {
            Json::Array(items) => Some(items.clone()),
            _ => None,
        });
        let a = a.expect("an array");
        assert_eq!(a[0].as_u64(), Some(1));
        assert_eq!(a[1].as_i64(), Some(-2));
        assert_eq!(a[1].as_u64(), None);
        assert_eq!(a[2].as_f64(), Some(2.5));
        assert_eq!(a[2].as_i64(), None);
        assert_eq!(a[3].as_bool(), Some(true));
        assert!(a[4].is_null());
        assert_eq!(a[5].as_str(), Some("x\n\u{e9}\u{1d11e}"));
        assert_eq!(v.get("b"), Some(&Json::Object(Vec::new())));
        assert_eq!(v.get("c"), None);
    }

    #[test]
    fn whole_numbers_are_kept_exactly_and_the_rest_read_as_doubles() {
        assert_eq!(parse("18446744073709551615"), Ok(Json::Number(Number::PosInt(u64::MAX))));
        assert_eq!(parse("-9223372036854775808"), Ok(Json::Number(Number::NegInt(i64::MIN))));
        assert_eq!(
            parse("18446744073709551616"),
            Ok(Json::Number(Number::Float(18446744073709551616.0)))
        );
        assert_eq!(
            parse("-9223372036854775809"),
            Ok(Json::Number(Number::Float(-9223372036854775809.0)))
        );
        assert_eq!(parse("-0").map(|v| v.as_f64().map(f64::is_sign_negative)), Ok(Some(true)));
        assert_eq!(parse("1e2"), Ok(Json::Number(Number::Float(100.0))));
        assert_eq!(parse("1e400").map_err(|e| e.reason), Err("number out of range"));
    }

    proptest::proptest! {
        /// Any object: each key once, at its first place, with its last value, as a scan
        /// of the members in order gives.
        #[test]
        fn repeated_keys_keep_their_first_place_and_last_value(
            keys in proptest::collection::vec(0u8..12, 0..40),
        ) {
            let text = format!(
                "{{{}}}",
                keys.iter().enumerate().map(|(i, k)| format!("\"k{k}\":{i}")).collect::<Vec<_>>().join(",")
            );
            let mut want: Vec<(String, u64)> = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                let key = format!("k{k}");
                match want.iter_mut().find(|(w, _)| *w == key) {
                    Some(m) => m.1 = i as u64,
                    None => want.push((key, i as u64)),
                }
            }
            let v = parse(&text).expect("JSON");
            let got: Vec<(String, u64)> = v
                .as_object()
                .expect("an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().expect("a number")))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_its_last_value() {
        let v = parse(r#"{"a": 1, "b": 2, "a": 3}"#).expect("JSON");
        assert_eq!(v.to_string(), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn what_json_does_not_allow_is_refused_where_it_is() {
        for (text, offset) in [
            ("", 0),
            ("[1,]", 3),
            ("{\"a\" 1}", 5),
            ("{a: 1}", 1),
            ("01", 1),
            ("1.", 2),
            ("-", 1),
            ("+1", 0),
            ("\"\\x\"", 2),
            ("\"\\ud800\"", 7),
            ("\"\\udc00\"", 7),
            ("\"a\u{1}\"", 2),
            ("nul", 3),
            ("[1] 2", 4),
            ("\"abc", 4),
            ("{\"a\":1,}", 7),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.offset, offset, "{text:?}: {e}");
        }
        assert_eq!(Json::parse(b"\"\xff\"").map_err(|e| e.offset), Err(1));
    }

    #[test]
    fn nesting_stops_at_127_levels() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(parse(&deep(127)).is_ok());
        assert_eq!(parse(&deep(128)).map_err(|e| e.reason), Err("recursion limit exceeded"));
        // Far deeper input is refused at the limit, not by the stack.
        assert!(parse(&deep(1_000_000)).is_err());
    }

    #[test]
    fn an_object_of_many_repeated_keys_is_read_without_a_scan_per_key() {
        // 200,000 members, 2,000 keys: a scan of the object for each key would make this
        // 200,000 × 2,000 comparisons; one sort of the members' places makes it n log n.
        let mut text = String::from("{");
        for i in 0..200_000 {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"k{}\":{i}", i % 2_000));
        }
        text.push('}');
        let v = parse(&text).expect("JSON");
        let members = v.as_object().expect("an object");
        assert_eq!(members.len(), 2_000);
        assert_eq!(v.get("k0").and_then(Json::as_u64), Some(198_000));
    }

    #[cfg(feature = "json")]
    #[test]
    fn the_reader_agrees_with_serde_json_on_texts_near_the_edges() {
        for text in [
            "null",
            " true ",
            "[]",
            "{}",
            "0",
            "-0",
            "-0.0",
            "1.5e-7",
            "123456789012345678901234567890",
            "-1e-400",
            "[1e308, -1e308, 5e-324]",
            "\"\\u0000\\u001f\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
            "\"\\uD83D\\uDE00\"",
            "{\"a\":{\"b\":[1,{\"c\":null}]},\"a\":2}",
            "[\"\u{7f}\u{80}\u{10ffff}\"]",
            "1 2",
            "[",
            "{\"a\":}",
            "tru",
            "nan",
            "\"\\u12\"",
            "\u{feff}1",
            "1\u{0}",
        ] {
            differential::check(text.as_bytes());
        }
        let deep = |n: usize| "{\"a\":".repeat(n) + "1" + &"}".repeat(n);
        differential::check(deep(127).as_bytes());
        differential::check(deep(128).as_bytes());
    }

    #[cfg(feature = "json")]
    mod props {
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<u64>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(serde_json::Value::from),
                any::<String>().prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                    prop::collection::vec(("[a-c]{0,2}", inner), 0..6).prop_map(|pairs| {
                        serde_json::Value::Object(pairs.into_iter().collect())
                    }),
                ]
            })
        }

        proptest! {
            #[test]
            fn the_reader_agrees_with_serde_json_on_its_own_texts(v in json_value(), pretty in any::<bool>()) {
                let text = if pretty {
                    serde_json::to_string_pretty(&v).expect("prints")
                } else {
                    serde_json::to_string(&v).expect("prints")
                };
                super::differential::check(text.as_bytes());
            }

            #[test]
            fn the_reader_agrees_with_serde_json_on_damaged_texts(
                v in json_value(),
                cut in any::<prop::sample::Index>(),
                byte in prop::sample::select(b"{}[]\",:\\ 0-.eE+tfnu\x01\xff".to_vec()),
            ) {
                let mut text = serde_json::to_string(&v).expect("prints").into_bytes();
                let at = cut.index(text.len() + 1);
                text.insert(at, byte);
                super::differential::check(&text);
                text.truncate(at);
                super::differential::check(&text);
            }
        }
    }
}

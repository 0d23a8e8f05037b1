//! Small primitive types the codec needs beyond Rust's own: timestamps, UUIDs, symbols.

use std::fmt;

use bytestring::ByteString;

/// An absolute point in time: milliseconds since the Unix epoch (part 1, 1.6.19), signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days` algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A universally unique identifier as its 16 octets (RFC 4122 byte order).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses the 8-4-4-4-12 hex form (either case).
    pub fn parse(s: &str) -> Option<Self> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return None;
        }
        for pos in [8usize, 13, 18, 23] {
            if s.as_bytes().get(pos) != Some(&b'-') {
                return None;
            }
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Uuid {
    /// Lower-case 8-4-4-4-12 hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// A symbolic value from a constrained domain (part 1, 1.6.21): 7-bit ASCII text.
///
/// Decoded symbols share the storage of the buffer they came from. A symbol built from a
/// `&str` with bytes outside ASCII is still encoded as given (lenient peers accept it); the
/// strict decoder refuses such a symbol when it reads one.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(pub ByteString);

impl Symbol {
    /// A symbol from a static string.
    pub const fn from_static(s: &'static str) -> Self {
        Self(ByteString::from_static(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{:?}", self.as_str())
    }
}

impl fmt::Display for Symbol {
    /// The symbol as it is when every byte is printable ASCII; else quoted, with escapes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_shown(f, self.as_str())
    }
}

/// A peer's text, displayed as [`write_shown`] writes it.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_shown(f, self.0)
    }
}

/// Writes a peer's text (a symbol, a capture's comment) as it is shown to a person: as
/// it is when it holds no control character (nor a bidirectional override), else quoted
/// with Rust's escapes (`"a\u{1b}[2K"`), so that a peer's control bytes (a terminal's
/// escape sequences, a newline that forges a line of output) never reach a terminal as
/// they are.
pub fn write_shown(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let plain = |c: char| {
        !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if s.chars().all(plain) {
        out.write_str(s)
    } else {
        write!(out, "{s:?}")
    }
}

impl From<&str> for Symbol {
    fn from(s: &str) -> Self {
        Self(ByteString::from(s))
    }
}

impl From<String> for Symbol {
    fn from(s: String) -> Self {
        Self(ByteString::from(s))
    }
}

impl PartialEq<str> for Symbol {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Symbol {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::ops::Deref for Symbol {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_renders_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(1_700_000_000_123).to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn uuid_parses_and_renders() {
        let s = "78059d0a-c01b-fa4a-bb42-f202739f56be";
        let u = Uuid::parse(s).expect("valid uuid");
        assert_eq!(u.to_string(), s);
        assert_eq!(Uuid::parse(&s.to_uppercase()), Some(u));
        assert_eq!(Uuid::parse("78059d0a-c01b-fa4a-bb42-f202739f56b"), None);
        assert_eq!(Uuid::parse("78059d0ac01b-fa4a-bb42-f202739f56be0"), None);
        assert_eq!(Uuid::parse("78059d0a-c01b-fa4a-bb42-f202739f56bg"), None);
    }
}

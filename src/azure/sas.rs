//! Shared access signature tokens: generate, parse, print, verify.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The word a token starts with, before one space and the fields.
pub const SAS_PREFIX: &str = "SharedAccessSignature";

/// How far past its expiry a token is still accepted, for clocks that disagree: five
/// minutes, as the hub's own validator allows.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A shared access key: the bytes HMAC-SHA256 is keyed with.
///
/// Keys travel as base64 (in connection strings, the portal, the CLI). IoT Hub keys the
/// signature with the *decoded* bytes: [`SasKey::from_base64`] decodes strictly (standard
/// alphabet, padding required, no stray bits). Event Hubs and Service Bus key it with the
/// key's text: [`SasKey::from_text`], or [`SasKey::event_hubs_key`] for an IoT Hub key used
/// at its Event Hub-compatible endpoint. [`SasKey::from_bytes`] takes the bytes of a key
/// made some other way. `Debug` never shows the key.
#[derive(Clone)]
pub struct SasKey {
    bytes: Vec<u8>,
}

impl SasKey {
    /// Decodes a base64 key (standard alphabet, with padding).
    ///
    /// # Errors
    ///
    /// [`SasError::KeyNotBase64`] names the problem; [`SasError::EmptyKey`] for `""`.
    pub fn from_base64(key: &str) -> Result<Self, SasError> {
        if key.is_empty() {
            return Err(SasError::EmptyKey);
        }
        B64.decode(key)
            .map(|bytes| Self { bytes })
            .map_err(|e| SasError::KeyNotBase64(describe_base64_error(&e)))
    }

    /// A key from its raw bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self { bytes: bytes.into() }
    }

    /// An Event Hubs (or Service Bus) key. Those services key the HMAC with the key's
    /// text, its UTF-8 bytes as the connection string carries them, where IoT Hub keys it
    /// with the base64-decoded bytes.
    ///
    /// # Errors
    ///
    /// [`SasError::EmptyKey`] for `""`.
    pub fn from_text(key: &str) -> Result<Self, SasError> {
        if key.is_empty() {
            return Err(SasError::EmptyKey);
        }
        Ok(Self::from_bytes(key.as_bytes()))
    }

    /// The key an IoT Hub policy key is at the hub's Event Hub-compatible endpoint: the
    /// same key, keyed as Event Hubs keys are (by its base64 text).
    ///
    /// ```
    /// use amqpwire::azure::SasKey;
    ///
    /// let hub = SasKey::from_base64("cGFzc3dvcmQ=")?;
    /// assert_eq!(hub.as_bytes(), b"password");
    /// assert_eq!(hub.event_hubs_key().as_bytes(), b"cGFzc3dvcmQ=");
    /// # Ok::<(), amqpwire::azure::SasError>(())
    /// ```
    pub fn event_hubs_key(&self) -> Self {
        Self::from_bytes(self.to_base64().into_bytes())
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as base64 (standard alphabet, padded), as connection strings carry it.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.bytes)
    }

    /// base64(HMAC-SHA256(key, `string_to_sign`)): the signature before URL-encoding.
    ///
    /// ```
    /// use amqpwire::azure::SasKey;
    ///
    /// let key = SasKey::from_base64("cGFzc3dvcmQ=")?;
    /// assert_eq!(key.sign("string-to-sign"), "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4=");
    /// # Ok::<(), amqpwire::azure::SasError>(())
    /// ```
    pub fn sign(&self, string_to_sign: &str) -> String {
        B64.encode(self.hmac(string_to_sign))
    }

    fn hmac(&self, data: &str) -> [u8; 32] {
        // HMAC takes keys of any length, so this never fails; the fallback keeps it
        // panic-free.
        let mut mac = HmacSha256::new_from_slice(&self.bytes)
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl FromStr for SasKey {
    type Err = SasError;

    /// Same as [`SasKey::from_base64`].
    fn from_str(s: &str) -> Result<Self, SasError> {
        Self::from_base64(s)
    }
}

impl PartialEq for SasKey {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.bytes, &other.bytes)
    }
}

impl Eq for SasKey {}

impl fmt::Debug for SasKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SasKey(<{} bytes>)", self.bytes.len())
    }
}

/// A shared access signature token, as Azure IoT Hub, Event Hubs and Service Bus take
/// them (over CBS, SASL PLAIN or an HTTP `Authorization` header):
///
/// ```text
/// SharedAccessSignature sr=<resource URI, URL-encoded>&sig=<signature>&se=<expiry>[&skn=<policy>]
/// ```
///
/// - `sr`: the resource URI the token grants access to (its *audience*), URL-encoded;
/// - `sig`: base64(HMAC-SHA256(key, `sr` + `"\n"` + `se`)), URL-encoded;
/// - `se`: the expiry, in seconds since the Unix epoch;
/// - `skn`: the name of the shared access policy whose key signed, absent for a device
///   key.
///
/// **Parsing** ([`FromStr`]) takes the fields in any order (clients differ: the Azure docs
/// write `sr, sig, se, skn`, the Node SDK `sr, sig, skn, se`) and treats an empty `skn`
/// as absent (older C SDK builds send `&skn=`). `sr` is kept exactly as received, because
/// the signature covers those bytes, not the decoded URI.
///
/// **Printing** (`Display`) writes the fields in the documented order `sr, sig, se, skn`,
/// `sr` and `se` byte for byte as parsed or generated, `sig` and `skn` URL-encoded.
///
/// `Debug` masks the signature: a token is a bearer credential.
///
/// ```
/// use amqpwire::azure::{device_resource_uri, SasKey, SasToken};
///
/// let key = SasKey::from_bytes([0x91, 0xEC]);
/// let token = SasToken::new(&device_resource_uri("host", "device", None), &key, None, 12345)?;
/// assert_eq!(
///     token.to_string(),
///     "SharedAccessSignature sr=host%2Fdevices%2Fdevice\
///      &sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345"
/// );
///
/// let parsed: SasToken = token.to_string().parse()?;
/// assert!(parsed.signature_matches(&key));
/// assert!(parsed.authorizes("host/devices/device/messages/events"));
/// # Ok::<(), amqpwire::azure::SasError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as in the token (what is signed).
    sr: String,
    /// `sr` URL-decoded: the resource URI.
    audience: String,
    /// The signature in base64 (`sig` URL-decoded).
    signature: String,
    /// The signature's bytes (`signature` base64-decoded).
    signature_bytes: Vec<u8>,
    /// `se` exactly as in the token (what is signed).
    se: String,
    /// `se` as a number.
    expiry: u64,
    /// `skn` URL-decoded; `None` when absent or empty.
    key_name: Option<String>,
}

impl SasToken {
    /// Signs a token for `resource_uri` (not encoded: `myhub.azure-devices.net/devices/d1`).
    ///
    /// `sr` becomes [`percent_encode`]`(resource_uri)`, as the Node SDK sends it, and that
    /// is what gets signed. `key_name` is the policy name (`skn`) for a policy key, `None`
    /// for a device key; `Some("")` counts as `None`. `expiry` is `se`, in seconds since
    /// the Unix epoch.
    ///
    /// # Errors
    ///
    /// [`SasError::EmptyField`] when `resource_uri` is empty.
    pub fn new(
        resource_uri: &str,
        key: &SasKey,
        key_name: Option<&str>,
        expiry: u64,
    ) -> Result<Self, SasError> {
        if resource_uri.is_empty() {
            return Err(SasError::EmptyField("sr"));
        }
        Ok(Self::sign(percent_encode(resource_uri), resource_uri.to_owned(), key, key_name, expiry))
    }

    /// Signs a token whose `sr` is `sr` exactly as given, already URL-encoded in whatever
    /// way the caller needs. The Azure C SDK, for one, puts the resource URI into `sr`
    /// unencoded (`myhub.azure-devices.net/devices/d1`) and signs that.
    ///
    /// # Errors
    ///
    /// `sr` must survive being put into a token and parsed back:
    /// [`SasError::EmptyField`], [`SasError::InvalidSr`] (a `&` or whitespace in it) and
    /// [`SasError::PercentEncoding`].
    pub fn with_encoded_sr(
        sr: &str,
        key: &SasKey,
        key_name: Option<&str>,
        expiry: u64,
    ) -> Result<Self, SasError> {
        let audience = decode_sr(sr)?;
        Ok(Self::sign(sr.to_owned(), audience, key, key_name, expiry))
    }

    /// Signs with `sr` already encoded and `audience` its decoding; `sr` is not checked.
    pub(crate) fn sign(
        sr: String,
        audience: String,
        key: &SasKey,
        key_name: Option<&str>,
        expiry: u64,
    ) -> Self {
        let se = expiry.to_string();
        let signature_bytes = key.hmac(&string_to_sign(&sr, &se)).to_vec();
        Self {
            signature: B64.encode(&signature_bytes),
            signature_bytes,
            sr,
            audience,
            se,
            expiry,
            key_name: key_name.filter(|n| !n.is_empty()).map(str::to_owned),
        }
    }

    /// `sr` exactly as it appears in the token.
    pub fn sr(&self) -> &str {
        &self.sr
    }

    /// The resource URI the token grants access to: `sr` URL-decoded.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The signature in base64 (`sig` URL-decoded).
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// `se`: the expiry in seconds since the Unix epoch.
    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    /// `se` as a point in time; `None` if it lies beyond what [`SystemTime`] can hold
    /// (`se` may be any 64-bit number).
    pub fn expires_at(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.expiry))
    }

    /// `skn`: the policy name, `None` for a token signed with a device key.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// The string the signature covers: `sr` as in the token, a line feed, `se`.
    pub fn string_to_sign(&self) -> String {
        string_to_sign(&self.sr, &self.se)
    }

    /// Whether `key` made the signature, comparing in constant time.
    pub fn signature_matches(&self, key: &SasKey) -> bool {
        constant_time_eq(&key.hmac(&self.string_to_sign()), &self.signature_bytes)
    }

    /// Whether the token has expired at `now`, allowing `clock_skew` past `se` (see
    /// [`DEFAULT_CLOCK_SKEW`]). A token is still good at exactly `se` + `clock_skew`.
    pub fn is_expired(&self, now: SystemTime, clock_skew: Duration) -> bool {
        unix_seconds(now) > self.expiry.saturating_add(clock_skew.as_secs())
    }

    /// Whether the token's audience covers `resource` (not encoded, such as
    /// `myhub.azure-devices.net/devices/d1/messages/events`).
    ///
    /// The audience must be a prefix of the resource **by path segment** (`host/a/b`
    /// covers `host/a/b` and `host/a/b/c`, not `host/a/bc`), compared case-insensitively. A
    /// leading `scheme://` on either side and trailing slashes are ignored: what is
    /// compared is the host and the path, as the hub does. Nothing is normalized beyond
    /// that (no `.` or `..` segments resolved, no `//` merged): pass the canonical path.
    pub fn authorizes(&self, resource: &str) -> bool {
        let mut wanted = segments(resource);
        segments(&self.audience).all(|a| wanted.next().is_some_and(|r| eq_ignore_case(a, r)))
    }

    /// [`SasToken::authorizes`], with a port on the audience's host ignored: a client
    /// that reaches a hub or Event Hub on a port of its own (`sb://localhost:15671/eh`)
    /// signs for that address, and the hub is still the same by its name.
    pub fn authorizes_any_port(&self, resource: &str) -> bool {
        let mut wanted = segments(resource);
        let mut audience = segments(&self.audience);
        let host_matches = match (audience.next(), wanted.next()) {
            (Some(a), Some(r)) => eq_ignore_case(a.split(':').next().unwrap_or(a), r),
            _ => false,
        };
        host_matches && audience.all(|a| wanted.next().is_some_and(|r| eq_ignore_case(a, r)))
    }

    /// Checks the signature with `key`, then the expiry at `now` with `clock_skew`.
    ///
    /// # Errors
    ///
    /// [`SasError::SignatureMismatch`] or [`SasError::Expired`].
    pub fn verify(
        &self,
        key: &SasKey,
        now: SystemTime,
        clock_skew: Duration,
    ) -> Result<(), SasError> {
        if !self.signature_matches(key) {
            return Err(SasError::SignatureMismatch);
        }
        if self.is_expired(now, clock_skew) {
            return Err(SasError::Expired { expiry: self.expiry, now: unix_seconds(now) });
        }
        Ok(())
    }
}

impl FromStr for SasToken {
    type Err = SasError;

    /// Parses `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`, fields in any order.
    fn from_str(s: &str) -> Result<Self, SasError> {
        let s = s.trim();
        let fields = match s.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((SAS_PREFIX, rest)) => rest.trim_start(),
            _ => return Err(SasError::MissingPrefix),
        };
        // `s` is trimmed, so `fields` is not empty.
        if fields.contains(|c: char| c.is_whitespace()) {
            return Err(SasError::Whitespace);
        }
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in fields.split('&') {
            if pair.is_empty() {
                return Err(SasError::EmptyPair);
            }
            // Split on the first `=` only: an unencoded base64 `sig` ends in `=`.
            let Some((name, value)) = pair.split_once('=') else {
                return Err(SasError::MissingEquals(pair.to_owned()));
            };
            let (slot, name) = match name {
                "sr" => (&mut sr, "sr"),
                "sig" => (&mut sig, "sig"),
                "se" => (&mut se, "se"),
                "skn" => (&mut skn, "skn"),
                other => return Err(SasError::UnknownField(other.to_owned())),
            };
            if slot.replace(value).is_some() {
                return Err(SasError::DuplicateField(name));
            }
        }
        let sr = sr.ok_or(SasError::MissingField("sr"))?;
        let sig = sig.ok_or(SasError::MissingField("sig"))?;
        let se = se.ok_or(SasError::MissingField("se"))?;

        let audience = decode_sr(sr)?;
        if sig.is_empty() {
            return Err(SasError::EmptyField("sig"));
        }
        let signature = percent_decode(sig)
            .map_err(|error| SasError::PercentEncoding { field: "sig", error })?;
        let signature_bytes = B64.decode(&signature).map_err(|_| SasError::SignatureNotBase64)?;
        let expiry = parse_se(se)?;
        let key_name = match skn {
            None | Some("") => None,
            Some(v) => Some(
                percent_decode(v)
                    .map_err(|error| SasError::PercentEncoding { field: "skn", error })?,
            ),
        };
        Ok(Self {
            sr: sr.to_owned(),
            audience,
            signature,
            signature_bytes,
            se: se.to_owned(),
            expiry,
            key_name,
        })
    }
}

impl fmt::Display for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SAS_PREFIX} sr={}&sig={}&se={}",
            self.sr,
            percent_encode(&self.signature),
            self.se
        )?;
        if let Some(skn) = &self.key_name {
            write!(f, "&skn={}", percent_encode(skn))?;
        }
        Ok(())
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("sr", &self.sr)
            .field("sig", &"<masked>")
            .field("se", &self.se)
            .field("skn", &self.key_name)
            .finish()
    }
}

/// What is wrong with a token or a key, or why a token does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SasError {
    // Malformed tokens.
    /// The token does not start with `SharedAccessSignature` and a space.
    MissingPrefix,
    /// Whitespace inside the fields.
    Whitespace,
    /// Two `&` in a row, or a leading or trailing `&`.
    EmptyPair,
    /// A field without `=`.
    MissingEquals(String),
    /// A field other than `sr`, `sig`, `se` and `skn`.
    UnknownField(String),
    /// A field given twice.
    DuplicateField(&'static str),
    /// A required field (`sr`, `sig` or `se`) is missing.
    MissingField(&'static str),
    /// A required field is present but empty.
    EmptyField(&'static str),
    /// `sr` holds a character that cannot stand unencoded in a token (`&`, whitespace).
    InvalidSr(char),
    /// A field's URL-encoding is broken.
    PercentEncoding {
        /// The field.
        field: &'static str,
        /// What is wrong.
        error: PercentDecodeError,
    },
    /// `sig`, once URL-decoded, is not base64.
    SignatureNotBase64,
    /// `se` is not a decimal number of seconds (or does not fit in 64 bits).
    InvalidExpiry(String),

    // Bad keys.
    /// The key is not valid base64; the text says where.
    KeyNotBase64(String),
    /// The key is empty.
    EmptyKey,
    /// There is no key: the connection string is an X.509 device's (`x509=true`).
    NoKey,

    // Verification.
    /// The signature was not made with the key, over this `sr` and `se`.
    SignatureMismatch,
    /// The token expired, even allowing for clock skew.
    Expired {
        /// `se`.
        expiry: u64,
        /// The time of the check, in seconds since the Unix epoch.
        now: u64,
    },
}

impl fmt::Display for SasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPrefix => write!(f, "a SAS token starts with `{SAS_PREFIX} `"),
            Self::Whitespace => f.write_str("whitespace inside the token's fields"),
            Self::EmptyPair => f.write_str("empty field in the token (`&&`, or `&` at an end)"),
            Self::MissingEquals(p) => write!(f, "token field `{p}` has no `=`"),
            Self::UnknownField(n) => {
                write!(f, "unknown token field `{n}` (expected sr, sig, se, skn)")
            }
            Self::DuplicateField(n) => write!(f, "token field `{n}` appears twice"),
            Self::MissingField(n) => write!(f, "token has no `{n}` field"),
            Self::EmptyField(n) => write!(f, "token field `{n}` is empty"),
            Self::InvalidSr(c) => write!(f, "sr may not hold {c:?} unencoded"),
            Self::PercentEncoding { field, error } => write!(f, "token field `{field}`: {error}"),
            Self::SignatureNotBase64 => f.write_str("token field `sig` is not base64"),
            Self::InvalidExpiry(v) => {
                write!(f, "token field `se` is {v:?}, not a decimal number of seconds")
            }
            Self::KeyNotBase64(e) => write!(f, "key is not valid base64: {e}"),
            Self::EmptyKey => f.write_str("key is empty"),
            Self::NoKey => f.write_str(
                "there is no key to sign a token with: the connection string is an X.509 \
                 device's (x509=true), which authenticates with its TLS client certificate",
            ),
            Self::SignatureMismatch => f.write_str("signature does not match"),
            Self::Expired { expiry, now } => {
                let ago = now.saturating_sub(*expiry);
                write!(f, "token expired at {expiry}, {ago}s before now ({now})")
            }
        }
    }
}

impl std::error::Error for SasError {}

/// Broken URL-encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PercentDecodeError {
    /// A `%` not followed by two hex digits, at this byte offset.
    BadEscape {
        /// The offset of the `%`.
        offset: usize,
    },
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PercentDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadEscape { offset } => {
                write!(f, "`%` at offset {offset} is not followed by two hex digits")
            }
            Self::NotUtf8 => f.write_str("URL-decodes to bytes that are not UTF-8"),
        }
    }
}

impl std::error::Error for PercentDecodeError {}

/// The resource URI of a device (`{host}/devices/{device_id}`) or of a module
/// (`{host}/devices/{device_id}/modules/{module_id}`), not encoded.
pub fn device_resource_uri(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{host}/devices/{device_id}/modules/{m}"),
        None => format!("{host}/devices/{device_id}"),
    }
}

/// URL-encodes as JavaScript's `encodeURIComponent` does, and also escapes `!'()*`: every
/// byte of the UTF-8 form but the unreserved `A-Z a-z 0-9 - _ . ~` becomes `%XX`, in
/// upper-case hex. This is the Node SDK's `encodeUriComponentStrict`, so `sr` comes out
/// byte for byte as Node sends it.
///
/// ```
/// assert_eq!(amqpwire::azure::percent_encode("hub/devices/d 1!"), "hub%2Fdevices%2Fd%201%21");
/// ```
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        // Both indexes into HEX are nibbles, below 16.
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// URL-decodes: each `%XX` (either case of hex) becomes its byte; everything else, `+`
/// included, stays as it is (as JavaScript's `decodeURIComponent`).
///
/// # Errors
///
/// A `%` without two hex digits after it, or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Result<String, PercentDecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|&h| char::from(h).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                // Two hex digits make at most 0xFF, so the cast is exact.
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(PercentDecodeError::BadEscape { offset: i }),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PercentDecodeError::NotUtf8)
}

/// Seconds since the Unix epoch; times before it count as 0.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Says what is wrong with a base64 string in words, pointing at the character.
fn describe_base64_error(e: &base64::DecodeError) -> String {
    use base64::DecodeError as D;
    let shown = |b: u8| match char::from(b) {
        c if c.is_ascii_graphic() => format!("`{c}`"),
        _ => format!("byte 0x{b:02X}"),
    };
    match *e {
        D::InvalidByte(offset, b'=') => {
            format!("padding `=` at offset {offset} before the end")
        }
        D::InvalidByte(offset, b) => {
            format!("{} at offset {offset} is not a base64 character", shown(b))
        }
        D::InvalidLength(len) => format!("{len} characters cannot be whole base64"),
        D::InvalidLastSymbol(offset, b) => format!(
            "the last character, {} at offset {offset}, has bits set past the end of the data",
            shown(b)
        ),
        D::InvalidPadding => "the `=` padding is missing or wrong".to_owned(),
    }
}

fn string_to_sign(sr: &str, se: &str) -> String {
    format!("{sr}\n{se}")
}

/// Checks an `sr` as it would stand in a token and returns its decoding (the audience).
fn decode_sr(sr: &str) -> Result<String, SasError> {
    if sr.is_empty() {
        return Err(SasError::EmptyField("sr"));
    }
    if let Some(c) = sr.chars().find(|&c| c == '&' || c.is_whitespace()) {
        return Err(SasError::InvalidSr(c));
    }
    percent_decode(sr).map_err(|error| SasError::PercentEncoding { field: "sr", error })
}

fn parse_se(se: &str) -> Result<u64, SasError> {
    let invalid = || SasError::InvalidExpiry(se.to_owned());
    // `u64::from_str` would also take a leading `+`.
    if se.is_empty() || !se.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    se.parse().map_err(|_| invalid())
}

/// The path segments of a resource URI, without a leading `scheme://` or trailing `/`.
fn segments(uri: &str) -> std::str::Split<'_, char> {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    rest.trim_end_matches('/').split('/')
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// Compares without an early exit, so the time taken says nothing about where two
/// signatures of the same length differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// Node decodes the string `key` leniently to these two bytes; a strict decoder
    /// refuses it.
    const NODE_KEY: [u8; 2] = [0x91, 0xEC];
    /// The bytes 0 to 31.
    const KEY_0_31: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const HUB: &str = "myhub.azure-devices.net";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn key_0_31() -> SasKey {
        SasKey::from_base64(KEY_0_31).expect("valid key")
    }

    fn parse(s: &str) -> Result<SasToken, SasError> {
        s.parse()
    }

    #[test]
    fn signs_the_node_authorization_vector() {
        let key = SasKey::from_base64("cGFzc3dvcmQ=").expect("valid key");
        assert_eq!(key.as_bytes(), b"password");
        assert_eq!(key.sign("string-to-sign"), "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4=");
    }

    #[test]
    fn signs_the_node_common_token_vector() {
        let key = SasKey::from_base64("cGFzc3dvcmQ=").expect("valid key");
        let token = SasToken::new("uri", &key, None, 12345).expect("token");
        assert_eq!(token.sr(), "uri");
        assert_eq!(
            token.to_string(),
            "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345"
        );
    }

    #[test]
    fn signs_the_node_device_vector() {
        let key = SasKey::from_bytes(NODE_KEY);
        let token = SasToken::new(&device_resource_uri("host", "device", None), &key, None, 12345)
            .expect("token");
        assert_eq!(
            token.to_string(),
            "SharedAccessSignature sr=host%2Fdevices%2Fdevice\
             &sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345"
        );
        assert_eq!(token.string_to_sign(), "host%2Fdevices%2Fdevice\n12345");
        assert_eq!(token.key_name(), None);
    }

    #[test]
    fn signs_the_node_service_vector_and_reads_nodes_field_order() {
        let key = SasKey::from_bytes(NODE_KEY);
        let token = SasToken::new("host", &key, Some("policy"), 12345).expect("token");
        let node = "SharedAccessSignature sr=host\
                    &sig=88JmrIsVYOGmRSjCO1x1LLbv0K001Gikh1rjfJqbQXA%3D&skn=policy&se=12345";
        assert_eq!(parse(node), Ok(token.clone()));
        // Our own order is the documented one: sr, sig, se, skn.
        assert_eq!(
            token.to_string(),
            "SharedAccessSignature sr=host\
             &sig=88JmrIsVYOGmRSjCO1x1LLbv0K001Gikh1rjfJqbQXA%3D&se=12345&skn=policy"
        );
    }

    #[test]
    fn refuses_nodes_lenient_key_strictly() {
        for k in ["key", "key="] {
            let e = SasKey::from_base64(k).expect_err("not strict base64");
            assert!(matches!(e, SasError::KeyNotBase64(_)), "{e:?}");
            assert!(e.to_string().starts_with("key is not valid base64: "), "{e}");
        }
        let msg = |k: &str| SasKey::from_base64(k).expect_err("not base64").to_string();
        assert_eq!(msg("key"), "key is not valid base64: the `=` padding is missing or wrong");
        assert_eq!(
            msg("key="),
            "key is not valid base64: the last character, `y` at offset 2, \
             has bits set past the end of the data"
        );
        assert_eq!(
            msg("ab$d"),
            "key is not valid base64: `$` at offset 2 is not a base64 character"
        );
        assert_eq!(msg("a=bc"), "key is not valid base64: padding `=` at offset 1 before the end");
        assert_eq!(msg("abcde"), "key is not valid base64: 5 characters cannot be whole base64");
        assert_eq!(msg(""), "key is empty");
        assert_eq!(SasKey::from_base64(""), Err(SasError::EmptyKey));
        assert_eq!(
            "cGFzc3dvcmQ=".parse::<SasKey>().map(|k| k.to_base64()),
            Ok("cGFzc3dvcmQ=".into())
        );
    }

    #[test]
    fn signs_the_computed_device_vector() {
        let token = SasToken::new(
            &device_resource_uri(HUB, "device1", None),
            &key_0_31(),
            None,
            1_700_000_000,
        )
        .expect("token");
        assert_eq!(
            token.to_string(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1\
             &sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000"
        );
    }

    #[test]
    fn signs_an_unencoded_sr_as_the_c_sdk_does() {
        let sr = "myhub.azure-devices.net/devices/device1";
        let token = SasToken::with_encoded_sr(sr, &key_0_31(), None, 1_700_000_000).expect("token");
        assert_eq!(token.sr(), sr);
        assert_eq!(token.audience(), sr);
        assert_eq!(token.signature(), "NlrxHOPrp0Ykah29gS5LOHFu7Y/i4fWSpV//MjSnuQ8=");
        let wire = "SharedAccessSignature sr=myhub.azure-devices.net/devices/device1\
                    &sig=NlrxHOPrp0Ykah29gS5LOHFu7Y%2Fi4fWSpV%2F%2FMjSnuQ8%3D&se=1700000000";
        assert_eq!(token.to_string(), wire);
        let parsed = parse(wire).expect("parses");
        assert!(parsed.signature_matches(&key_0_31()));
        assert!(parsed.authorizes("myhub.azure-devices.net/devices/device1/messages/events"));
    }

    #[test]
    fn signs_the_computed_service_vector() {
        let token = SasToken::new(HUB, &key_0_31(), Some("service"), 1_700_000_000).expect("token");
        assert_eq!(
            token.to_string(),
            "SharedAccessSignature sr=myhub.azure-devices.net\
             &sig=iIzEw6hi6GK79RY5jNXO6QeQkSL%2FAx4zTmy44X2G1VY%3D&se=1700000000&skn=service"
        );
    }

    #[test]
    fn parses_fields_in_any_order() {
        let (sr, sig, se, skn) = (
            "sr=myhub.azure-devices.net",
            "sig=iIzEw6hi6GK79RY5jNXO6QeQkSL%2FAx4zTmy44X2G1VY%3D",
            "se=1700000000",
            "skn=service",
        );
        let expected =
            SasToken::new(HUB, &key_0_31(), Some("service"), 1_700_000_000).expect("token");
        for order in
            [[sr, sig, se, skn], [sr, sig, skn, se], [sig, se, skn, sr], [skn, se, sig, sr]]
        {
            let token = parse(&format!("SharedAccessSignature {}", order.join("&")))
                .expect("parses in any order");
            assert_eq!(token, expected);
            assert!(token.signature_matches(&key_0_31()));
        }
    }

    #[test]
    fn treats_an_empty_skn_as_absent() {
        let token = parse(
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1\
             &sig=gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D&se=1700000000&skn=",
        )
        .expect("parses");
        assert_eq!(token.key_name(), None);
        assert!(token.signature_matches(&key_0_31()));
        assert!(!token.to_string().contains("skn"));
        assert_eq!(SasToken::new("x", &key_0_31(), Some(""), 1).expect("token").key_name(), None);
    }

    #[test]
    fn reads_every_field() {
        let token = parse(
            "SharedAccessSignature sr=sb%3A%2F%2Fns.servicebus.windows.net%2Fhub\
             &sig=YWJj&se=42&skn=my%20policy",
        )
        .expect("parses");
        assert_eq!(token.sr(), "sb%3A%2F%2Fns.servicebus.windows.net%2Fhub");
        assert_eq!(token.audience(), "sb://ns.servicebus.windows.net/hub");
        assert_eq!(token.signature(), "YWJj");
        assert_eq!(token.expiry(), 42);
        assert_eq!(token.expires_at(), Some(at(42)));
        assert_eq!(token.key_name(), Some("my policy"));
        assert_eq!(token.string_to_sign(), "sb%3A%2F%2Fns.servicebus.windows.net%2Fhub\n42");
    }

    #[test]
    fn names_each_problem_in_a_malformed_token() {
        let sig = "sig=YWJj";
        let cases: &[(&str, SasError)] = &[
            ("", SasError::MissingPrefix),
            ("sr=a&sig=YWJj&se=1", SasError::MissingPrefix),
            ("SharedAccessSignaturesr=a&sig=YWJj&se=1", SasError::MissingPrefix),
            ("sharedaccesssignature sr=a&sig=YWJj&se=1", SasError::MissingPrefix),
            ("SharedAccessSignature", SasError::MissingPrefix),
            ("SharedAccessSignature ", SasError::MissingPrefix),
            ("SharedAccessSignature  \t", SasError::MissingPrefix),
            ("SharedAccessSignature sr=a &sig=YWJj&se=1", SasError::Whitespace),
            ("SharedAccessSignature sr=a&&sig=YWJj&se=1", SasError::EmptyPair),
            ("SharedAccessSignature sr=a&sig=YWJj&se=1&", SasError::EmptyPair),
            ("SharedAccessSignature sr=a&sig=YWJj&se", SasError::MissingEquals("se".into())),
            ("SharedAccessSignature sr=a&sig=YWJj&se=1&x=2", SasError::UnknownField("x".into())),
            ("SharedAccessSignature SR=a&sig=YWJj&se=1", SasError::UnknownField("SR".into())),
            ("SharedAccessSignature sr=a&sig=YWJj&se=1&sr=b", SasError::DuplicateField("sr")),
            ("SharedAccessSignature sr=a&sig=YWJj&se=1&skn=&skn=", SasError::DuplicateField("skn")),
            ("SharedAccessSignature sig=YWJj&se=1", SasError::MissingField("sr")),
            ("SharedAccessSignature sr=a&se=1", SasError::MissingField("sig")),
            ("SharedAccessSignature sr=a&sig=YWJj", SasError::MissingField("se")),
            ("SharedAccessSignature sr=&sig=YWJj&se=1", SasError::EmptyField("sr")),
            ("SharedAccessSignature sr=a&sig=&se=1", SasError::EmptyField("sig")),
            ("SharedAccessSignature sr=a&sig=YWJj&se=", SasError::InvalidExpiry("".into())),
            ("SharedAccessSignature sr=a&sig=YWJj&se=+1", SasError::InvalidExpiry("+1".into())),
            ("SharedAccessSignature sr=a&sig=YWJj&se=1.5", SasError::InvalidExpiry("1.5".into())),
            ("SharedAccessSignature sr=a&sig=YWJj&se=-1", SasError::InvalidExpiry("-1".into())),
            (
                "SharedAccessSignature sr=a&sig=YWJj&se=18446744073709551616",
                SasError::InvalidExpiry("18446744073709551616".into()),
            ),
            ("SharedAccessSignature sr=a&sig=Y!Jj&se=1", SasError::SignatureNotBase64),
            (
                "SharedAccessSignature sr=a%2&sig=YWJj&se=1",
                SasError::PercentEncoding {
                    field: "sr",
                    error: PercentDecodeError::BadEscape { offset: 1 },
                },
            ),
            (
                "SharedAccessSignature sr=%FF&sig=YWJj&se=1",
                SasError::PercentEncoding { field: "sr", error: PercentDecodeError::NotUtf8 },
            ),
            (
                "SharedAccessSignature sr=a&sig=YWJj%3&se=1",
                SasError::PercentEncoding {
                    field: "sig",
                    error: PercentDecodeError::BadEscape { offset: 4 },
                },
            ),
            (
                "SharedAccessSignature sr=a&sig=YWJj&se=1&skn=%zz",
                SasError::PercentEncoding {
                    field: "skn",
                    error: PercentDecodeError::BadEscape { offset: 0 },
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).as_ref(), Err(expected), "{input:?}");
        }
        assert!(parse(&format!("SharedAccessSignature sr=a&{sig}&se=18446744073709551615")).is_ok());
    }

    #[test]
    fn error_messages_name_the_problem() {
        let msg = |s: &str| parse(s).expect_err("malformed").to_string();
        assert_eq!(
            msg("SharedAccessSignature sr=a&sig=YWJj&se=1&x=2"),
            "unknown token field `x` (expected sr, sig, se, skn)"
        );
        assert_eq!(msg("SharedAccessSignature sr=a&se=1"), "token has no `sig` field");
        assert_eq!(
            msg("SharedAccessSignature sr=a&sig=YWJj&se=1&sr=b"),
            "token field `sr` appears twice"
        );
        assert_eq!(
            msg("SharedAccessSignature sr=a&sig=YWJj&se=soon"),
            "token field `se` is \"soon\", not a decimal number of seconds"
        );
        assert_eq!(
            msg("SharedAccessSignature sr=a%4&sig=YWJj&se=1"),
            "token field `sr`: `%` at offset 1 is not followed by two hex digits"
        );
        assert_eq!(msg("Bearer abc"), "a SAS token starts with `SharedAccessSignature `");
    }

    #[test]
    fn accepts_surrounding_whitespace_and_an_unencoded_sig() {
        let token = parse(
            "  SharedAccessSignature sr=myhub.azure-devices.net\
             &sig=iIzEw6hi6GK79RY5jNXO6QeQkSL/Ax4zTmy44X2G1VY=&se=1700000000&skn=service\n",
        )
        .expect("parses");
        assert!(token.signature_matches(&key_0_31()));
    }

    #[test]
    fn keeps_sr_exactly_as_received() {
        // Lower-case hex, as the Azure docs write it: a different string to sign.
        let lower = SasToken::with_encoded_sr(
            "myhub.azure-devices.net%2fdevices%2fdevice1",
            &key_0_31(),
            None,
            1_700_000_000,
        )
        .expect("token");
        let parsed = parse(&lower.to_string()).expect("parses");
        assert_eq!(parsed.sr(), "myhub.azure-devices.net%2fdevices%2fdevice1");
        assert_eq!(parsed.audience(), "myhub.azure-devices.net/devices/device1");
        assert!(parsed.signature_matches(&key_0_31()));
        assert_ne!(parsed.signature(), "gFSfLGMXDOvf906/iaX3KwzLLNFHgaFZyCbsGjxtd1Y=");
    }

    #[test]
    fn refuses_an_sr_that_cannot_stand_in_a_token() {
        let k = key_0_31();
        assert_eq!(SasToken::with_encoded_sr("a&b", &k, None, 1), Err(SasError::InvalidSr('&')));
        assert_eq!(SasToken::with_encoded_sr("a b", &k, None, 1), Err(SasError::InvalidSr(' ')));
        assert_eq!(SasToken::with_encoded_sr("", &k, None, 1), Err(SasError::EmptyField("sr")));
        assert_eq!(SasToken::new("", &k, None, 1), Err(SasError::EmptyField("sr")));
        // Encoded, the same characters are fine.
        let t = SasToken::new("a&b c", &k, None, 1).expect("token");
        assert_eq!(t.sr(), "a%26b%20c");
        assert_eq!(parse(&t.to_string()), Ok(t));
    }

    #[test]
    fn detects_a_wrong_key_or_a_tampered_field() {
        let token = SasToken::new(HUB, &key_0_31(), Some("service"), 1_700_000_000).expect("token");
        assert!(token.signature_matches(&key_0_31()));
        assert!(!token.signature_matches(&SasKey::from_bytes(NODE_KEY)));
        let wire = token.to_string();
        for tampered in [
            wire.replace("se=1700000000", "se=1700000001"),
            wire.replace("sr=myhub", "sr=yourhub"),
            wire.replace("sr=myhub.azure-devices.net", "sr=myhub.azure-devices.net%2Fdevices%2Fd"),
        ] {
            let t = parse(&tampered).expect("parses");
            assert!(!t.signature_matches(&key_0_31()), "{tampered}");
            assert_eq!(
                t.verify(&key_0_31(), at(0), DEFAULT_CLOCK_SKEW),
                Err(SasError::SignatureMismatch)
            );
        }
        // A truncated signature never matches.
        let short =
            parse("SharedAccessSignature sr=myhub.azure-devices.net&sig=iIzE&se=1700000000")
                .expect("parses");
        assert!(!short.signature_matches(&key_0_31()));
    }

    #[test]
    fn checks_expiry_with_clock_skew() {
        let token = SasToken::new(HUB, &key_0_31(), Some("service"), 1000).expect("token");
        let skew = DEFAULT_CLOCK_SKEW;
        assert_eq!(skew, Duration::from_secs(300));
        assert!(!token.is_expired(at(0), skew));
        assert!(!token.is_expired(at(1000), Duration::ZERO));
        assert!(token.is_expired(at(1001), Duration::ZERO));
        assert!(!token.is_expired(at(1300), skew), "still good at se + skew");
        assert!(token.is_expired(at(1301), skew));
        assert!(!token.is_expired(at(1301), Duration::from_secs(600)));
        assert!(!token.is_expired(UNIX_EPOCH - Duration::from_secs(5), skew));
        assert_eq!(token.verify(&key_0_31(), at(1300), skew), Ok(()));
        let e = token.verify(&key_0_31(), at(1301), skew).expect_err("expired");
        assert_eq!(e, SasError::Expired { expiry: 1000, now: 1301 });
        assert_eq!(e.to_string(), "token expired at 1000, 301s before now (1301)");
        // Expiry near the end of time does not overflow.
        let late = SasToken::new(HUB, &key_0_31(), None, u64::MAX).expect("token");
        assert!(!late.is_expired(at(u64::MAX / 4), Duration::from_secs(u64::MAX)));
        assert_eq!(late.expires_at(), None);
    }

    #[test]
    fn authorizes_by_path_segment() {
        let t = |aud: &str| SasToken::new(aud, &key_0_31(), None, 1).expect("token");
        let device = t("myhub.azure-devices.net/devices/d1");
        assert!(device.authorizes("myhub.azure-devices.net/devices/d1"));
        assert!(device.authorizes("myhub.azure-devices.net/devices/d1/"));
        assert!(device.authorizes("myhub.azure-devices.net/devices/d1/messages/events"));
        assert!(!device.authorizes("myhub.azure-devices.net/devices/d10"));
        assert!(!device.authorizes("myhub.azure-devices.net/devices/d"));
        assert!(!device.authorizes("myhub.azure-devices.net/devices"));
        assert!(!device.authorizes("myhub.azure-devices.net"));
        assert!(!device.authorizes("otherhub.azure-devices.net/devices/d1"));

        let ab = t("host/a/b");
        assert!(ab.authorizes("host/a/b/c"));
        assert!(!ab.authorizes("host/a/bc"));

        let hub = t("myhub.azure-devices.net");
        assert!(hub.authorizes("myhub.azure-devices.net/messages/devicebound"));
        assert!(hub.authorizes("myhub.azure-devices.net/devices/d1/messages/events"));
        assert!(!hub.authorizes("myhub.azure-devices.net.evil.example/x"));
    }

    #[test]
    fn authorizes_case_insensitively_and_ignores_the_scheme() {
        let t = |aud: &str| SasToken::new(aud, &key_0_31(), None, 1).expect("token");
        let device = t("MyHub.Azure-Devices.net/Devices/D1");
        assert!(device.authorizes("myhub.azure-devices.net/devices/d1/messages/events"));
        assert!(device.authorizes("amqps://MYHUB.azure-devices.net/devices/d1"));
        assert!(!device.authorizes("myhub.azure-devices.net/devices/d1x"));
        let eh = t("sb://ns.servicebus.windows.net/hub");
        assert!(eh.authorizes("ns.servicebus.windows.net/hub/ConsumerGroups/$Default/Partitions/0"));
        assert!(eh.authorizes("sb://ns.servicebus.windows.net/hub"));
        assert!(!eh.authorizes("sb://ns.servicebus.windows.net/hub2"));
        // The decoded audience is what counts, whatever the encoding of sr.
        let encoded =
            parse("SharedAccessSignature sr=MYHUB.azure-devices.net%2fdevices%2FD1&sig=YWJj&se=1")
                .expect("parses");
        assert!(encoded.authorizes("myhub.azure-devices.net/devices/d1/messages/devicebound"));
    }

    #[test]
    fn percent_encodes_like_encode_uri_component_strict() {
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(percent_encode("!'()*"), "%21%27%28%29%2A");
        assert_eq!(percent_encode("a/b:c?d#e&f=g+h i%"), "a%2Fb%3Ac%3Fd%23e%26f%3Dg%2Bh%20i%25");
        assert_eq!(percent_encode("é€"), "%C3%A9%E2%82%AC");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn percent_decodes_either_case_and_keeps_plus() {
        assert_eq!(percent_decode("a%2fb%2Fc"), Ok("a/b/c".into()));
        assert_eq!(percent_decode("a+b"), Ok("a+b".into()));
        assert_eq!(percent_decode("%C3%A9"), Ok("é".into()));
        assert_eq!(percent_decode("%"), Err(PercentDecodeError::BadEscape { offset: 0 }));
        assert_eq!(percent_decode("ab%4"), Err(PercentDecodeError::BadEscape { offset: 2 }));
        assert_eq!(percent_decode("%g0"), Err(PercentDecodeError::BadEscape { offset: 0 }));
        assert_eq!(percent_decode("%C3"), Err(PercentDecodeError::NotUtf8));
    }

    #[test]
    fn debug_hides_secrets() {
        let key = key_0_31();
        let token = SasToken::new(HUB, &key, Some("service"), 1_700_000_000).expect("token");
        assert_eq!(format!("{key:?}"), "SasKey(<32 bytes>)");
        let dbg = format!("{token:?}");
        assert!(!dbg.contains(token.signature()), "{dbg}");
        assert!(dbg.contains("<masked>"), "{dbg}");
    }

    proptest! {
        #[test]
        fn percent_encoding_round_trips(s in any::<String>()) {
            let encoded = percent_encode(&s);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
            prop_assert_eq!(percent_decode(&encoded), Ok(s));
        }

        #[test]
        fn generated_tokens_parse_and_verify(
            resource in ".{1,80}",
            key in proptest::collection::vec(any::<u8>(), 1..80),
            key_name in proptest::option::of(".{0,20}"),
            expiry in any::<u64>(),
        ) {
            let key = SasKey::from_bytes(key);
            let token = SasToken::new(&resource, &key, key_name.as_deref(), expiry).expect("non-empty");
            let parsed: SasToken = token.to_string().parse().expect("own output parses");
            prop_assert_eq!(&parsed, &token);
            prop_assert_eq!(parsed.audience(), resource.as_str());
            prop_assert!(parsed.authorizes(&resource));
            prop_assert_eq!(parsed.verify(&key, at(0), Duration::ZERO), Ok(()));
            prop_assert_eq!(
                SasKey::from_base64(&key.to_base64()).map(|k| parsed.signature_matches(&k)),
                Ok(true)
            );
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = s.parse::<SasToken>();
            let _ = format!("SharedAccessSignature {s}").parse::<SasToken>();
            let _ = percent_decode(&s);
            let _ = SasKey::from_base64(&s);
        }

        #[test]
        fn parse_never_panics_on_token_like_input(
            s in "SharedAccessSignature ((sr|sig|se|skn|x)=[a-zA-Z0-9%/+=]{0,12}&?){0,6}"
        ) {
            if let Ok(t) = s.parse::<SasToken>() {
                // Whatever parses prints as something that parses back the same.
                prop_assert_eq!(t.to_string().parse::<SasToken>(), Ok(t));
            }
        }
    }
}

//! Endpoints: `amqp://`, `amqps://`, `ws://` and `wss://` URLs, parsed by hand.
//!
//! ```text
//! scheme://[user[:password]@]host[:port][/path][?option=value[&option=value]...]
//! ```
//!
//! See `docs/transports.md` for the options table. Parsing is strict: an unknown scheme or
//! option, a bad port, an empty host or a bad percent escape is an [`EndpointError`] naming
//! the problem.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::Duration;

use crate::sasl;

/// How the bytes travel: the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `amqp://`: plain TCP.
    Amqp,
    /// `amqps://`: TLS over TCP.
    Amqps,
    /// `ws://`: WebSocket over TCP.
    Ws,
    /// `wss://`: WebSocket over TLS over TCP.
    Wss,
}

impl Scheme {
    /// The scheme as written in a URL (`amqp`, `amqps`, `ws`, `wss`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amqp => "amqp",
            Self::Amqps => "amqps",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// The port used when the URL names none: 5672, 5671, 80 and 443.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Amqp => 5672,
            Self::Amqps => 5671,
            Self::Ws => 80,
            Self::Wss => 443,
        }
    }

    /// Whether the stream is TLS (`amqps`, `wss`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Amqps | Self::Wss)
    }

    /// Whether the stream is WebSocket (`ws`, `wss`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SASL mechanism named by the `sasl-mechanism` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `ANONYMOUS`.
    Anonymous,
    /// `PLAIN`: the URL's user and password.
    Plain,
    /// `EXTERNAL`: the identity of the TLS client certificate.
    External,
    /// `SCRAM-SHA-256`: the URL's user and password.
    ScramSha256,
    /// `MSSBCBS`: Azure's "authentication follows over CBS".
    Mssbcbs,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anonymous => sasl::ANONYMOUS,
            Self::Plain => sasl::PLAIN,
            Self::External => sasl::EXTERNAL,
            Self::ScramSha256 => sasl::SCRAM_SHA_256,
            Self::Mssbcbs => sasl::MSSBCBS,
        }
    }

    /// Parses a mechanism name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Anonymous, Self::Plain, Self::External, Self::ScramSha256, Self::Mssbcbs]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The smallest max-frame-size AMQP allows (part 2, 2.7.1: 512).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// The WebSocket subprotocol of the AMQP WebSocket binding.
pub const AMQP_WS_SUBPROTOCOL: &str = "AMQPWSB10";

/// The WebSocket subprotocol name some servers (ActiveMQ 5) use for AMQP instead:
/// offered after [`AMQP_WS_SUBPROTOCOL`] and accepted by listeners.
pub const AMQP_WS_SUBPROTOCOL_ALT: &str = "amqp";

/// A parsed `amqp://`, `amqps://`, `ws://` or `wss://` URL: where to connect or listen, and
/// the connection options it carries.
///
/// ```
/// use amqpwire::runtime::transport::{Endpoint, Scheme};
///
/// let e: Endpoint = "wss://device1:s%40cret@hub.example.net/$iothub/websocket?idle-timeout=30000"
///     .parse()?;
/// assert_eq!(e.scheme, Scheme::Wss);
/// assert_eq!((e.host.as_str(), e.port), ("hub.example.net", 443));
/// assert_eq!(e.path, "/$iothub/websocket");
/// assert_eq!(e.password.as_deref(), Some("s@cret"));
/// assert_eq!(e.to_string(),
///     "wss://device1:***@hub.example.net:443/$iothub/websocket?idle-timeout=30000");
/// # Ok::<(), amqpwire::runtime::transport::EndpointError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The scheme.
    pub scheme: Scheme,
    /// The host: a DNS name, an IPv4 address, or an IPv6 address without its brackets.
    /// TLS server name indication and certificate checks use it.
    pub host: String,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
    /// The HTTP path of the WebSocket upgrade request (`/` unless the URL has one; kept as
    /// written, escapes included). Always `/` for `amqp` and `amqps`.
    pub path: String,
    /// The user, percent-decoded.
    pub user: Option<String>,
    /// The password, percent-decoded. Never printed.
    pub password: Option<String>,
    /// `sasl-mechanism=`: the SASL mechanism to use.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `container-id=`: the container id of the open frame.
    pub container_id: Option<String>,
    /// `hostname=`: the hostname of the open and sasl-init frames, when it differs from
    /// [`host`](Self::host) (a virtual host, or an address behind a gateway).
    pub hostname: Option<String>,
    /// `idle-timeout=` (milliseconds): the idle time-out to announce in the open frame.
    pub idle_timeout: Option<Duration>,
    /// `max-frame-size=` (bytes, at least 512): the max-frame-size of the open frame.
    pub max_frame_size: Option<u32>,
    /// `subprotocol=` (`ws` and `wss` only): the WebSocket subprotocol to request, when not
    /// [`AMQP_WS_SUBPROTOCOL`].
    pub subprotocol: Option<String>,
}

impl Endpoint {
    /// Parses a URL (the same as `str::parse`).
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        url.parse()
    }

    /// An endpoint with no options: `scheme://host:port/`.
    pub fn new(scheme: Scheme, host: impl Into<String>, port: u16) -> Self {
        Self {
            scheme,
            host: host.into(),
            port,
            path: "/".into(),
            user: None,
            password: None,
            sasl_mechanism: None,
            container_id: None,
            hostname: None,
            idle_timeout: None,
            max_frame_size: None,
            subprotocol: None,
        }
    }

    /// The SASL mechanism to use: the `sasl-mechanism` option when given, else `PLAIN`
    /// when the URL has a user, else `ANONYMOUS`.
    pub fn effective_sasl_mechanism(&self) -> SaslMechanism {
        match (self.sasl_mechanism, &self.user) {
            (Some(m), _) => m,
            (None, Some(_)) => SaslMechanism::Plain,
            (None, None) => SaslMechanism::Anonymous,
        }
    }

    /// The hostname for the open and sasl-init frames: the `hostname` option when given,
    /// else the URL's host.
    pub fn amqp_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.host)
    }

    /// The WebSocket subprotocol to request: the `subprotocol` option or `AMQPWSB10`.
    pub fn ws_subprotocol(&self) -> &str {
        self.subprotocol.as_deref().unwrap_or(AMQP_WS_SUBPROTOCOL)
    }

    /// The WebSocket subprotocols a client offers and a listener accepts, in order of
    /// preference: the one `subprotocol=` names, or else [`AMQP_WS_SUBPROTOCOL`] and then
    /// `amqp` (which ActiveMQ 5 and some other servers know it by).
    pub fn ws_subprotocols(&self) -> Vec<&str> {
        match &self.subprotocol {
            Some(p) => vec![p.as_str()],
            None => vec![AMQP_WS_SUBPROTOCOL, AMQP_WS_SUBPROTOCOL_ALT],
        }
    }

    /// `host:port` for connecting or binding, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL form, which hides the password.
        write!(f, "Endpoint({self})")
    }
}

/// A URL that is not a valid endpoint; the message names the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointError {
    message: String,
}

impl EndpointError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad endpoint URL: {}", self.message)
    }
}

impl std::error::Error for EndpointError {}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(url: &str) -> Result<Self, EndpointError> {
        Self::parse_with(url, false)
    }
}

impl Endpoint {
    /// Parses a URL to listen on: the same grammar, where port 0 (any free port) is also
    /// allowed.
    pub fn parse_listen(url: &str) -> Result<Self, EndpointError> {
        Self::parse_with(url, true)
    }

    fn parse_with(url: &str, listen: bool) -> Result<Self, EndpointError> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EndpointError::new("the URL contains white space or control characters"));
        }
        let (scheme_str, rest) = url.split_once("://").ok_or_else(|| {
            EndpointError::new(format!(
                "{url:?} has no scheme: write amqp://, amqps://, ws:// or wss://"
            ))
        })?;
        let scheme = match scheme_str.to_ascii_lowercase().as_str() {
            "amqp" => Scheme::Amqp,
            "amqps" => Scheme::Amqps,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => {
                return Err(EndpointError::new(format!(
                    "unknown scheme {scheme_str:?}: expected amqp, amqps, ws or wss"
                )))
            }
        };
        if rest.contains('#') {
            return Err(EndpointError::new("a fragment (#...) has no meaning in an endpoint URL"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i..]),
            None => (before_query, ""),
        };

        let mut e = Self::new(scheme, String::new(), scheme.default_port());

        // user[:password]@ — the last '@' ends it, so an unescaped '@' in a password works.
        let host_port = match authority.rsplit_once('@') {
            // A listener checks the credentials clients give; it has none of its own.
            Some(_) if listen => {
                return Err(EndpointError::new(
                    "a URL to listen on takes no user or password (the clients give theirs; a \
                     server's accounts are set apart, as `serve --user NAME:PASSWORD`)",
                ))
            }
            Some((userinfo, host_port)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                let user = percent_decode(user, "user")?;
                if user.is_empty() {
                    return Err(EndpointError::new("the user before '@' is empty"));
                }
                e.user = Some(user);
                e.password = password.map(|p| percent_decode(p, "password")).transpose()?;
                host_port
            }
            None => authority,
        };

        let (host, port) = host_and_port(host_port, listen).map_err(|e| match e {
            None => EndpointError::new(format!(
                "{url_shown} has an empty host",
                url_shown = Redacted(url)
            )),
            Some(e) => e,
        })?;
        e.host = host;
        if let Some(p) = port {
            e.port = p;
        }

        // Path: WebSocket only; kept verbatim.
        if scheme.is_websocket() {
            if !path.is_empty() {
                e.path = path.to_string();
            }
        } else if !path.is_empty() && path != "/" {
            return Err(EndpointError::new(format!(
                "{scheme}:// URLs take no path, found {path:?} (paths are for ws:// and wss://)"
            )));
        }

        if let Some(query) = query {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, raw) = pair.split_once('=').ok_or_else(|| {
                    EndpointError::new(format!("option {pair:?} has no value (write name=value)"))
                })?;
                let value = percent_decode(raw, key)?;
                e.set_option(key, value)?;
            }
        }
        Ok(e)
    }
}

impl Endpoint {
    fn set_option(&mut self, key: &str, value: String) -> Result<(), EndpointError> {
        let empty = || EndpointError::new(format!("option {key} has an empty value"));
        if value.is_empty() {
            return Err(empty());
        }
        match key {
            "sasl-mechanism" => {
                self.sasl_mechanism = Some(SaslMechanism::from_name(&value).ok_or_else(|| {
                    EndpointError::new(format!(
                        "unknown SASL mechanism {value:?}: expected ANONYMOUS, PLAIN, EXTERNAL, \
                         SCRAM-SHA-256 or MSSBCBS"
                    ))
                })?)
            }
            "container-id" => self.container_id = Some(value),
            "hostname" => self.hostname = Some(value),
            "idle-timeout" => {
                let ms: u32 = value.parse().map_err(|_| {
                    EndpointError::new(format!(
                        "idle-timeout {value:?} is not a whole number of milliseconds \
                         (0 to 4294967295)"
                    ))
                })?;
                self.idle_timeout = Some(Duration::from_millis(ms.into()));
            }
            "max-frame-size" => {
                let n: u32 = value.parse().map_err(|_| {
                    EndpointError::new(format!(
                        "max-frame-size {value:?} is not a whole number of bytes \
                         (512 to 4294967295)"
                    ))
                })?;
                if n < MIN_MAX_FRAME_SIZE {
                    return Err(EndpointError::new(format!(
                        "max-frame-size {n} is below AMQP's minimum of {MIN_MAX_FRAME_SIZE}"
                    )));
                }
                self.max_frame_size = Some(n);
            }
            "subprotocol" => {
                if !self.scheme.is_websocket() {
                    return Err(EndpointError::new(format!(
                        "option subprotocol applies to ws:// and wss:// only, not {}://",
                        self.scheme
                    )));
                }
                if !value.bytes().all(is_token_byte) {
                    return Err(EndpointError::new(format!(
                        "subprotocol {value:?} is not an HTTP token"
                    )));
                }
                self.subprotocol = Some(value)
            }
            _ => {
                return Err(EndpointError::new(format!(
                    "unknown option {key:?}: known are sasl-mechanism, container-id, hostname, \
                     idle-timeout, max-frame-size, subprotocol"
                )))
            }
        }
        Ok(())
    }
}

/// `host[:port]` of a URL's authority, or of an address such as `proxy --connect-to`'s:
/// the host a DNS name, an IPv4 address, or an IPv6 address in brackets; the port, if
/// given, 1 to 65535 (0 too when `listen`). `Err(None)` when the host is empty.
pub(crate) fn host_and_port(
    host_port: &str,
    listen: bool,
) -> Result<(String, Option<u16>), Option<EndpointError>> {
    let (host, port) = if let Some(after) = host_port.strip_prefix('[') {
        let (v6, tail) = after.split_once(']').ok_or_else(|| {
            EndpointError::new(format!("IPv6 address {host_port:?} lacks its closing ']'"))
        })?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(Some(EndpointError::new(format!("{v6:?} is not an IPv6 address"))));
        }
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or_else(|| {
                EndpointError::new(format!("unexpected {t:?} after the IPv6 address"))
            })?),
        };
        (v6.to_string(), port)
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (host_port.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(None);
    }
    if !host.contains(':') {
        if let Some(c) =
            host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(Some(EndpointError::new(format!(
                "host {host:?} contains {c:?}: a host is a DNS name or an IP address \
                 (IPv6 in brackets)"
            ))));
        }
    }
    let port = port.map(|p| parse_port(p, listen)).transpose()?;
    Ok((host, port))
}

/// An HTTP token character (RFC 9110, 5.6.2).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_port(p: &str, listen: bool) -> Result<u16, EndpointError> {
    if p.is_empty() {
        return Err(EndpointError::new("the port after ':' is empty"));
    }
    match p.parse::<u16>() {
        Ok(0) if !listen => Err(EndpointError::new("port 0 is not a port to connect to")),
        Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ if listen => Err(EndpointError::new(format!(
            "port {p:?} is not a number from 0 (any free port) to 65535"
        ))),
        _ => Err(EndpointError::new(format!("port {p:?} is not a number from 1 to 65535"))),
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8. `what` names the part for errors.
fn percent_decode(s: &str, what: &str) -> Result<String, EndpointError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |k: usize| b.get(k).and_then(|c| (*c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits make at most 255.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                    i += 3;
                }
                _ => {
                    return Err(EndpointError::new(format!(
                        "bad percent escape in the {what}: '%' must be followed by two hex digits"
                    )))
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| EndpointError::new(format!("the {what} is not UTF-8 once percent-decoded")))
}

/// Escapes everything but unreserved characters, for user names and option values.
fn percent_encode(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// A URL string shown in an error with its password hidden (best effort).
struct Redacted<'a>(&'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let start = s.find("://").map_or(0, |i| i + 3);
        let end = s[start..].find(['/', '?']).map_or(s.len(), |i| start + i);
        match s[start..end].rfind('@').map(|at| start + at) {
            Some(at) => match s[start..at].find(':') {
                Some(colon) => {
                    write!(f, "{:?}", format!("{}:***{}", &s[..start + colon], &s[at..]))
                }
                None => write!(f, "{s:?}"),
            },
            None => write!(f, "{s:?}"),
        }
    }
}

impl fmt::Display for Endpoint {
    /// The URL with the password replaced by `***`, the port always written, and the
    /// options in a fixed order. It parses back to the same endpoint, bar the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(user) = &self.user {
            percent_encode(user, f)?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.authority())?;
        if self.scheme.is_websocket() {
            f.write_str(&self.path)?;
        }
        let mut sep = '?';
        let mut opt = |f: &mut fmt::Formatter<'_>, key: &str, value: &str| -> fmt::Result {
            write!(f, "{sep}{key}=")?;
            sep = '&';
            percent_encode(value, f)
        };
        if let Some(m) = self.sasl_mechanism {
            opt(f, "sasl-mechanism", m.name())?;
        }
        if let Some(c) = &self.container_id {
            opt(f, "container-id", c)?;
        }
        if let Some(h) = &self.hostname {
            opt(f, "hostname", h)?;
        }
        if let Some(t) = self.idle_timeout {
            opt(f, "idle-timeout", &t.as_millis().to_string())?;
        }
        if let Some(n) = self.max_frame_size {
            opt(f, "max-frame-size", &n.to_string())?;
        }
        if let Some(s) = &self.subprotocol {
            opt(f, "subprotocol", s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        match Endpoint::parse(url) {
            Ok(e) => panic!("{url} parsed as {e}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_per_scheme() {
        for (url, scheme, port) in [
            ("amqp://h", Scheme::Amqp, 5672),
            ("amqps://h", Scheme::Amqps, 5671),
            ("ws://h", Scheme::Ws, 80),
            ("wss://h", Scheme::Wss, 443),
            ("AMQPS://h/", Scheme::Amqps, 5671),
        ] {
            let e = Endpoint::parse(url).unwrap();
            assert_eq!((e.scheme, e.port, e.path.as_str()), (scheme, port, "/"), "{url}");
            assert_eq!(e.effective_sasl_mechanism(), SaslMechanism::Anonymous);
            assert_eq!(e.amqp_hostname(), "h");
            assert_eq!(e.ws_subprotocol(), "AMQPWSB10");
        }
    }

    #[test]
    fn user_password_percent_decoded_and_plain() {
        let e = Endpoint::parse("amqp://us%65r:p%3Ass%40w:rd@broker:1234").unwrap();
        assert_eq!(e.user.as_deref(), Some("user"));
        // An unescaped '@' and ':' in the password survive too.
        assert_eq!(e.password.as_deref(), Some("p:ss@w:rd"));
        assert_eq!((e.host.as_str(), e.port), ("broker", 1234));
        assert_eq!(e.effective_sasl_mechanism(), SaslMechanism::Plain);
        let e = Endpoint::parse("amqp://a:b@c@host").unwrap();
        assert_eq!((e.user.as_deref(), e.password.as_deref()), (Some("a"), Some("b@c")));
        let e = Endpoint::parse("amqp://%C3%A9t%C3%A9@host").unwrap();
        assert_eq!((e.user.as_deref(), e.password), (Some("été"), None));
    }

    #[test]
    fn ipv6_hosts() {
        let e = Endpoint::parse("amqp://[::1]").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 5672));
        assert_eq!(e.authority(), "[::1]:5672");
        let e = Endpoint::parse("wss://u:p@[fe80::1:2]:8443/x?subprotocol=amqp").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("fe80::1:2", 8443, "/x"));
        assert_eq!(e.ws_subprotocol(), "amqp");
        assert!(err("amqp://[::1").contains("closing ']'"));
        assert!(err("amqp://[::g]").contains("not an IPv6 address"));
        assert!(err("amqp://[::1]x").contains("after the IPv6 address"));
    }

    #[test]
    fn websocket_path_is_verbatim() {
        let e = Endpoint::parse("wss://hub.azure-devices.net/$iothub/websocket").unwrap();
        assert_eq!(e.path, "/$iothub/websocket");
        let e = Endpoint::parse("ws://h:8080/a%20b/c?container-id=x").unwrap();
        assert_eq!(e.path, "/a%20b/c");
        assert_eq!(e.container_id.as_deref(), Some("x"));
        assert!(err("amqp://h/queue").contains("take no path"));
    }

    #[test]
    fn options() {
        let e = Endpoint::parse(
            "amqps://h?sasl-mechanism=external&container-id=c%2F1&hostname=vhost\
             &idle-timeout=30000&max-frame-size=65536",
        )
        .unwrap();
        assert_eq!(e.sasl_mechanism, Some(SaslMechanism::External));
        assert_eq!(e.container_id.as_deref(), Some("c/1"));
        assert_eq!(e.amqp_hostname(), "vhost");
        assert_eq!(e.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(e.max_frame_size, Some(65536));
        for m in ["ANONYMOUS", "PLAIN", "EXTERNAL", "SCRAM-SHA-256", "MSSBCBS"] {
            let e = Endpoint::parse(&format!("amqp://u@h?sasl-mechanism={m}")).unwrap();
            assert_eq!(e.effective_sasl_mechanism().name(), m);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(err("http://h").contains("unknown scheme \"http\""));
        assert!(err("localhost:5672").contains("no scheme"));
        assert!(err("amqp://").contains("empty host"));
        assert!(err("amqp://u:secret@:5672").contains("empty host"));
        assert!(!err("amqp://u:secret@:5672").contains("secret"));
        assert!(err("amqp://h:").contains("port after ':' is empty"));
        assert!(err("amqp://h:0").contains("port 0"));
        // ... but a listener may ask for any free port.
        let listen = Endpoint::parse_listen("ws://127.0.0.1:0/amqp").expect("port 0 to listen on");
        assert_eq!((listen.port, listen.path.as_str()), (0, "/amqp"));
        assert!(Endpoint::parse_listen("amqp://h:x").is_err());
        // A listener has no credentials of its own; its port may be 0.
        let e = Endpoint::parse_listen("amqp://user:pw@127.0.0.1:0").expect_err("user");
        assert!(e.to_string().contains("takes no user or password"), "{e}");
        let e = Endpoint::parse_listen("amqp://127.0.0.1:99999").expect_err("port");
        assert!(e.to_string().contains("from 0 (any free port) to 65535"), "{e}");
        let e = "amqp://127.0.0.1:99999".parse::<Endpoint>().expect_err("port");
        assert!(e.to_string().contains("from 1 to 65535"), "{e}");
        assert!(err("amqp://h:65536").contains("1 to 65535"));
        assert!(err("amqp://h:+80").contains("1 to 65535"));
        assert!(err("amqp://h:http").contains("1 to 65535"));
        assert!(err("amqp://h?frobnicate=1").contains("unknown option \"frobnicate\""));
        assert!(err("amqp://h?idle-timeout").contains("has no value"));
        assert!(err("amqp://h?idle-timeout=-1").contains("idle-timeout"));
        assert!(err("amqp://h?idle-timeout=99999999999").contains("idle-timeout"));
        assert!(err("amqp://h?max-frame-size=511").contains("minimum of 512"));
        assert!(err("amqp://h?sasl-mechanism=GSSAPI").contains("unknown SASL mechanism"));
        assert!(err("amqp://h?subprotocol=amqp").contains("ws:// and wss:// only"));
        assert!(err("ws://h?subprotocol=a%20b").contains("not an HTTP token"));
        assert!(err("amqp://h?container-id=").contains("empty value"));
        assert!(err("amqp://u:%zz@h").contains("percent escape in the password"));
        assert!(err("amqp://u:%4@h").contains("percent escape"));
        assert!(err("amqp://%ff@h").contains("not UTF-8"));
        assert!(err("amqp://:pw@h").contains("user before '@' is empty"));
        assert!(err("amqp://h o st").contains("white space"));
        assert!(err("amqp://h/#x").contains("fragment"));
        assert!(err("amqp://ho%st").contains("host \"ho%st\" contains '%'"));
        assert!(err("amqp://a:1:2").contains("1 to 65535"));
    }

    #[test]
    fn display_hides_the_password_and_round_trips() {
        for url in [
            "amqp://h:5672",
            "amqps://user:***@h:5671?sasl-mechanism=PLAIN&container-id=a%20b",
            "wss://d%40x:***@[::1]:443/$iothub/websocket?idle-timeout=1500&max-frame-size=1024&subprotocol=amqp",
            "ws://h:80/?hostname=other",
        ] {
            let e = Endpoint::parse(url).unwrap();
            assert_eq!(e.to_string(), url);
            assert_eq!(format!("{e:?}"), format!("Endpoint({url})"));
        }
        let e = Endpoint::parse("amqp://u:hunter2@h").unwrap();
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
        assert_eq!(e.password.as_deref(), Some("hunter2"));
    }
}

//! Transports: the byte streams the engine runs over. TCP (`amqp://`), TLS (`amqps://`),
//! WebSocket (`ws://`) and WebSocket over TLS (`wss://`), for clients and servers.
//!
//! ```text
//!   Endpoint ("amqps://user:pw@host/?…") ──► connect ──► Transport (AsyncRead + AsyncWrite)
//!   TcpStream from a listener + Endpoint  ──► accept  ──► Transport (+ peer_identity)
//!
//!   amqp   TcpStream
//!   amqps  TcpStream ─► TLS (tokio-rustls, ring)
//!   ws     TcpStream ─► WebSocket (tokio-tungstenite) ─► WsStream (bytes ⇄ binary messages)
//!   wss    TcpStream ─► TLS ─► WebSocket ─► WsStream
//! ```
//!
//! A [`Transport`] carries bytes only: the AMQP and SASL protocol headers and frames are the
//! engine's business. Handshakes have no time limit of their own; a listener should wrap
//! [`accept`] (and a client [`connect`]) in `tokio::time::timeout`. See
//! `docs/transports.md` for URLs, TLS rules and the WebSocket binding.

mod tls;
mod url;
mod ws;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

pub use tls::{check_server_certificate, ClientTlsConfig, PeerIdentity, TlsServerConfig};
pub use url::{
    Endpoint, EndpointError, SaslMechanism, Scheme, AMQP_WS_SUBPROTOCOL, AMQP_WS_SUBPROTOCOL_ALT,
    MIN_MAX_FRAME_SIZE,
};
pub use ws::{accept_ws, connect_ws, WsServerConfig, WsStream, WS_MAX_INCOMING, WS_MESSAGE_SIZE};

use tls::Sniffed;

/// A byte stream that can stand in as a transport (an in-memory pipe in tests, say).
pub trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncIo for T {}

type TlsTcp = TlsStream<Sniffed<TcpStream>>;

enum Inner {
    Tcp(TcpStream),
    Tls(Box<TlsTcp>),
    Ws(Box<WsStream<TcpStream>>),
    Wss(Box<WsStream<TlsTcp>>),
    Other(Box<dyn AsyncIo>),
}

/// An established connection's byte stream: TCP, TLS, WebSocket or WebSocket over TLS,
/// ready for the engine's protocol header. Reads and writes go straight through; over
/// WebSocket a flush sends the bytes written so far as one binary message.
pub struct Transport {
    inner: Inner,
    /// What [`Transport::from_accepted`] was told about a stream set up elsewhere.
    accepted: Option<Accepted>,
}

/// The scheme, peer certificate and address of a stream accepted outside a [`Listener`]
/// (a WebSocket upgraded by an HTTP server, say).
///
/// [`Listener`]: crate::runtime::Listener
struct Accepted {
    scheme: Scheme,
    identity: Option<PeerIdentity>,
    addr: Option<SocketAddr>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.scheme().map_or("other", Scheme::as_str);
        f.debug_struct("Transport").field("scheme", &kind).field("peer", &self.peer_addr()).finish()
    }
}

impl Transport {
    /// Wraps any byte stream (an in-memory pipe, a stream set up elsewhere).
    pub fn from_io(io: impl AsyncIo + 'static) -> Self {
        Self { inner: Inner::Other(Box::new(io)), accepted: None }
    }

    /// Wraps a byte stream a server set up itself, saying what it is: the scheme it
    /// serves, the client certificate its TLS layer saw, and the client's address. An HTTP
    /// server that upgrades some of its requests to AMQP over WebSocket hands the upgraded
    /// [`WsStream`] over this way, so the engine gets the same SASL EXTERNAL identity as
    /// behind a `wss://` [`Listener`](crate::runtime::Listener).
    pub fn from_accepted(
        io: impl AsyncIo + 'static,
        scheme: Scheme,
        identity: Option<PeerIdentity>,
        addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            inner: Inner::Other(Box::new(io)),
            accepted: Some(Accepted { scheme, identity, addr }),
        }
    }

    /// The scheme this transport was made for, `None` for [`from_io`](Self::from_io).
    pub fn scheme(&self) -> Option<Scheme> {
        match &self.inner {
            Inner::Tcp(_) => Some(Scheme::Amqp),
            Inner::Tls(_) => Some(Scheme::Amqps),
            Inner::Ws(_) => Some(Scheme::Ws),
            Inner::Wss(_) => Some(Scheme::Wss),
            Inner::Other(_) => self.accepted.as_ref().map(|a| a.scheme),
        }
    }

    /// The peer's TLS certificate identity: on a server, the client certificate (the SASL
    /// EXTERNAL identity) when the listener asked for one and the client sent it; on a
    /// client, the server's certificate. `None` without TLS.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        match &self.inner {
            Inner::Tls(tls) => tls::peer_identity(tls),
            Inner::Wss(ws) => tls::peer_identity(ws.get_ref()),
            Inner::Other(_) => self.accepted.as_ref().and_then(|a| a.identity.clone()),
            _ => None,
        }
    }

    /// The peer's address, when the transport is a TCP connection.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self.tcp() {
            Some(tcp) => tcp.peer_addr().ok(),
            None => self.accepted.as_ref().and_then(|a| a.addr),
        }
    }

    /// Our own address, when the transport is a TCP connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp().and_then(|tcp| tcp.local_addr().ok())
    }

    /// The TCP connection under the transport's layers, if it is one.
    fn tcp(&self) -> Option<&TcpStream> {
        Some(match &self.inner {
            Inner::Tcp(s) => s,
            Inner::Tls(s) => s.get_ref().0.get_ref(),
            Inner::Ws(s) => s.get_ref(),
            Inner::Wss(s) => s.get_ref().get_ref().0.get_ref(),
            Inner::Other(_) => return None,
        })
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().inner {
            Inner::Tcp($s) => $e,
            Inner::Tls($s) => $e,
            Inner::Ws($s) => $e,
            Inner::Wss($s) => $e,
            Inner::Other($s) => $e,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
            Inner::Ws(_) | Inner::Wss(_) => false,
            Inner::Other(s) => s.is_write_vectored(),
        }
    }
}

/// Opens a transport to `endpoint`: TCP (with `TCP_NODELAY`), then TLS for `amqps` and
/// `wss` (server name and certificate checks against the URL's host, `tls` for roots and
/// the client certificate), then the WebSocket handshake for `ws` and `wss`.
pub async fn connect(
    endpoint: &Endpoint,
    tls: &ClientTlsConfig,
) -> Result<Transport, TransportError> {
    connect_via(endpoint, tls, None).await
}

/// [`connect`], with the TCP connection opened to `address` (`HOST:PORT`, or `HOST` for
/// the endpoint's port) instead of the endpoint's host, which still names the server for
/// TLS (SNI and certificate checks) and for the WebSocket `Host` header. A relay uses it to
/// reach a server under its own name while clients resolve that name to the relay.
pub async fn connect_via(
    endpoint: &Endpoint,
    tls: &ClientTlsConfig,
    address: Option<&str>,
) -> Result<Transport, TransportError> {
    connect_reserved(endpoint, tls, address, None).await
}

/// A socket opened before it is needed, for [`connect_reserved`]: a relay opens its
/// upstream's socket before it accepts the client, so that a client it accepts does not
/// lack a descriptor to reach its upstream with.
#[derive(Debug)]
pub(crate) struct Reserved {
    /// The socket, unbound and unconnected.
    pub(crate) socket: tokio::net::TcpSocket,
    /// Whether it is IPv6.
    pub(crate) v6: bool,
    /// The address that answered last time, tried first while the name still resolves to
    /// it.
    pub(crate) answered: Option<SocketAddr>,
    /// The addresses the name resolved to before (when the relay started): with
    /// `answered` first, what is tried when the name cannot be resolved now (with no
    /// descriptor left, resolving fails: the C library cannot open the hosts file, and
    /// says the name is unknown or that too many files are open).
    pub(crate) resolved: std::sync::Arc<[SocketAddr]>,
}

impl Reserved {
    /// A socket of the family of `answered`, else of the first of `resolved`, else IPv4.
    pub(crate) fn open(
        answered: Option<SocketAddr>,
        resolved: std::sync::Arc<[SocketAddr]>,
    ) -> io::Result<Self> {
        let v6 = answered.or(resolved.first().copied()).is_some_and(|a| a.is_ipv6());
        let socket =
            if v6 { tokio::net::TcpSocket::new_v6() } else { tokio::net::TcpSocket::new_v4() }?;
        Ok(Self { socket, v6, answered, resolved })
    }

    /// What to try when the name cannot be resolved: `answered`, then the addresses
    /// resolved before.
    fn known(&self) -> Vec<SocketAddr> {
        let mut known: Vec<SocketAddr> = self.answered.into_iter().collect();
        known.extend(self.resolved.iter().filter(|a| Some(**a) != self.answered));
        known
    }
}

/// Whether an I/O error says descriptors, buffers or memory ran out (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM on Linux): a state that passes as connections end.
pub(crate) fn resource_exhausted(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::OutOfMemory)
        || matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// [`connect_via`], with the TCP connection made on `reserved` (see [`Reserved`]).
pub(crate) async fn connect_reserved(
    endpoint: &Endpoint,
    tls: &ClientTlsConfig,
    address: Option<&str>,
    reserved: Option<Reserved>,
) -> Result<Transport, TransportError> {
    let target = match address {
        None => (endpoint.host.clone(), endpoint.port),
        Some(a) => split_address(a, endpoint.port)?,
    };
    let tcp = match reserved {
        None => TcpStream::connect((target.0.as_str(), target.1)).await,
        Some(reserved) => connect_on(reserved, (target.0.as_str(), target.1)).await,
    };
    let tcp = tcp.map_err(|source| TransportError::Connect {
        endpoint: match address {
            None => endpoint.to_string(),
            Some(a) => format!("{endpoint} (at {a})"),
        },
        source,
    })?;
    tcp.set_nodelay(true).map_err(TransportError::Io)?;
    let inner = match endpoint.scheme {
        Scheme::Amqp => Inner::Tcp(tcp),
        Scheme::Amqps => {
            Inner::Tls(Box::new(tls::client_handshake(tcp, &endpoint.host, tls, "amqp").await?))
        }
        Scheme::Ws => Inner::Ws(Box::new(ws::connect_ws(tcp, endpoint).await?)),
        Scheme::Wss => {
            let stream = tls::client_handshake(tcp, &endpoint.host, tls, "ws").await?;
            Inner::Wss(Box::new(ws::connect_ws(stream, endpoint).await?))
        }
    };
    Ok(Transport { inner, accepted: None })
}

/// Connects to the first of `target`'s addresses that answers, as
/// [`TcpStream::connect`] does (a socket that cannot be opened for one address moves on
/// to the next), with three differences: the address that answered last time is tried
/// first, the first address of the reserved socket's family is tried on it, and a name
/// that cannot be resolved is tried at the addresses known from before (the resolver's
/// error is the one returned if none answers).
async fn connect_on(reserved: Reserved, target: (&str, u16)) -> io::Result<TcpStream> {
    let (mut addrs, mut last): (Vec<SocketAddr>, _) = match tokio::net::lookup_host(target).await {
        Ok(addrs) => (addrs.collect(), None),
        // Resolving opens files (the hosts file, a socket to the resolver).
        Err(e) => match reserved.known() {
            known if known.is_empty() => return Err(e),
            known => (known, Some(e)),
        },
    };
    let Reserved { socket, v6, answered, .. } = reserved;
    let unresolved = last.is_some();
    answered_first(&mut addrs, answered);
    let mut reserved = Some(socket);
    for addr in addrs {
        let socket = match reserved.take_if(|_| addr.is_ipv6() == v6) {
            Some(s) => Ok(s),
            None if addr.is_ipv6() => tokio::net::TcpSocket::new_v6(),
            None => tokio::net::TcpSocket::new_v4(),
        };
        match socket {
            Ok(socket) => match socket.connect(addr).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) if !unresolved => last = Some(e),
                Err(_) => {}
            },
            Err(e) if !unresolved => last = Some(e),
            Err(_) => {}
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any address")
    }))
}

/// Moves `answered` to the front of `addrs` when it is among them, the others keeping
/// their order.
fn answered_first(addrs: &mut [SocketAddr], answered: Option<SocketAddr>) {
    if let Some(i) = answered.and_then(|a| addrs.iter().position(|x| *x == a)) {
        addrs[..=i].rotate_right(1);
    }
}

/// [`connect`] within `limit`, TCP connection and handshakes together: a server that
/// accepts and never answers its TLS or WebSocket handshake is a
/// [`TransportError::Timeout`], not a wait without end.
pub async fn connect_within(
    endpoint: &Endpoint,
    tls: &ClientTlsConfig,
    limit: std::time::Duration,
) -> Result<Transport, TransportError> {
    tokio::time::timeout(limit, connect(endpoint, tls)).await.unwrap_or_else(|_| {
        Err(TransportError::Timeout { what: format!("the connection to {endpoint}"), limit })
    })
}

/// [`accept`] within `limit`: a client that connects and never finishes its TLS or
/// WebSocket handshake is a [`TransportError::Timeout`].
pub async fn accept_within(
    tcp: TcpStream,
    endpoint: &Endpoint,
    config: &AcceptConfig,
    limit: std::time::Duration,
) -> Result<Transport, TransportError> {
    tokio::time::timeout(limit, accept(tcp, endpoint, config)).await.unwrap_or_else(|_| {
        Err(TransportError::Timeout {
            what: format!("the client's {} handshake", endpoint.scheme),
            limit,
        })
    })
}

/// `HOST:PORT`, `[V6]:PORT`, `HOST`, `[V6]` or a bare `V6` (the port then
/// `default_port`): the host and port as a URL's are (a DNS name or an IP address; a port
/// from 1 to 65535).
pub(crate) fn split_address(a: &str, default_port: u16) -> Result<(String, u16), TransportError> {
    let bad = |why: String| {
        TransportError::Config(format!("bad address {a:?}: expected HOST[:PORT] ({why})"))
    };
    // More than one colon with no brackets: an IPv6 address alone, or nothing.
    if a.matches(':').count() > 1 && !a.starts_with('[') {
        return match a.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok((a.to_owned(), default_port)),
            Err(_) => Err(bad("an IPv6 address with a port goes in brackets: [V6]:PORT".into())),
        };
    }
    match url::host_and_port(a, false) {
        Ok((host, port)) => Ok((host, port.unwrap_or(default_port))),
        Err(None) => Err(bad("the host is empty".into())),
        Err(Some(e)) => Err(bad(e.to_string())),
    }
}

/// What a listener needs to turn accepted TCP streams into transports.
#[derive(Clone, Debug, Default)]
pub struct AcceptConfig {
    /// The certificate (and client checks) of `amqps` and `wss` listeners.
    pub tls: Option<TlsServerConfig>,
    /// The path and subprotocols of `ws` and `wss` listeners.
    pub ws: WsServerConfig,
}

impl AcceptConfig {
    /// The configuration for a listening endpoint: its WebSocket path and subprotocol, and
    /// `tls` (needed for `amqps` and `wss`).
    pub fn for_endpoint(endpoint: &Endpoint, tls: Option<TlsServerConfig>) -> Self {
        Self { tls, ws: WsServerConfig::for_endpoint(endpoint) }
    }

    /// Whether a listener for `endpoint` can accept with this: `amqps` and `wss` need a
    /// certificate, said before anyone connects rather than at each client's handshake.
    pub fn check(endpoint: &Endpoint, tls: Option<&TlsServerConfig>) -> Result<(), TransportError> {
        if endpoint.scheme.is_tls() && tls.is_none() {
            return Err(TransportError::Config(format!(
                "a {}:// listener needs a certificate and key",
                endpoint.scheme
            )));
        }
        Ok(())
    }
}

/// Turns one TCP stream accepted on a listener for `endpoint` into a transport: nothing
/// more for `amqp`, the TLS handshake for `amqps`, the WebSocket handshake for `ws`, both
/// for `wss`. Only the endpoint's scheme is used here; the WebSocket path and
/// subprotocols come from `config.ws`.
pub async fn accept(
    tcp: TcpStream,
    endpoint: &Endpoint,
    config: &AcceptConfig,
) -> Result<Transport, TransportError> {
    tcp.set_nodelay(true).map_err(TransportError::Io)?;
    let tls_config = || {
        config.tls.as_ref().ok_or_else(|| {
            TransportError::Config(format!(
                "a {}:// listener needs a TLS certificate and key",
                endpoint.scheme
            ))
        })
    };
    let inner = match endpoint.scheme {
        Scheme::Amqp => Inner::Tcp(tcp),
        Scheme::Amqps => {
            Inner::Tls(Box::new(tls::server_handshake(tcp, tls_config()?, "amqps").await?))
        }
        Scheme::Ws => {
            // A WebSocket client speaks first; a TLS record (0x16) here is a wss:// client,
            // and an AMQP protocol header a plain amqp:// one.
            let mut first = [0u8; 4];
            let n = tcp.peek(&mut first).await.map_err(TransportError::Io)?;
            if n >= 1 && first[0] == 0x16 {
                return Err(TransportError::ClientSentTls { use_scheme: "wss" });
            }
            if n == 4 && &first == b"AMQP" {
                return Err(TransportError::ClientNotWebSocket {
                    sent: "an AMQP protocol header",
                    use_scheme: "amqp",
                });
            }
            Inner::Ws(Box::new(ws::accept_ws(tcp, &config.ws).await?))
        }
        Scheme::Wss => {
            let stream = tls::server_handshake(tcp, tls_config()?, "wss").await?;
            Inner::Wss(Box::new(ws::accept_ws(stream, &config.ws).await?))
        }
    };
    Ok(Transport { inner, accepted: None })
}

/// Why a transport could not be set up. The messages say what happened and, for the
/// usual mix-ups (TLS against a plain port, a wrong name, a wrong subprotocol), what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// The TCP connection could not be opened.
    Connect {
        /// The endpoint, password hidden.
        endpoint: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A listener could not bind its address.
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// An I/O error during a handshake.
    Io(io::Error),
    /// A TLS or listener configuration problem: unreadable PEM, no trusted roots, a TLS
    /// listener without a certificate.
    Config(String),
    /// A TLS handshake failed; the message gives rustls's reason.
    Tls(String),
    /// The server's certificate does not name the host the client connected to.
    CertificateNameMismatch {
        /// The host of the URL.
        host: String,
        /// The names the certificate holds, when rustls reports them.
        presented: Vec<String>,
    },
    /// A TLS client got a non-TLS answer (`amqps://` to a plain AMQP port).
    ServerNotTls {
        /// What the server answered in: `plain AMQP` or `HTTP`.
        answered: &'static str,
        /// The scheme to use instead.
        use_scheme: &'static str,
    },
    /// A TLS listener got non-TLS bytes (`amqp://` to an `amqps` port).
    ClientNotTls {
        /// What the client sent.
        sent: &'static str,
        /// The scheme the client should use.
        use_scheme: &'static str,
    },
    /// A plain WebSocket listener got a TLS ClientHello (`wss://` to a `ws` port). (A plain
    /// AMQP listener leaves this to the engine, whose frame decoder names a ClientHello.)
    ClientSentTls {
        /// The scheme the listener would need.
        use_scheme: &'static str,
    },
    /// A WebSocket listener got something else than an HTTP upgrade request (`amqp://` to
    /// a `ws` port).
    ClientNotWebSocket {
        /// What the client sent.
        sent: &'static str,
        /// The scheme the client's bytes call for.
        use_scheme: &'static str,
    },
    /// A WebSocket handshake failed for another reason.
    WebSocket(String),
    /// The server refused the client's WebSocket upgrade with an HTTP status.
    WsRefused {
        /// The HTTP status (404 wrong path, 400 no common subprotocol, …).
        status: u16,
        /// The path requested.
        path: String,
        /// The subprotocol requested.
        subprotocol: String,
        /// The response body, which an amqpwire server fills with its reason.
        body: String,
    },
    /// A WebSocket client asked for a path this listener does not serve (answered 404).
    WsPath {
        /// The path the client asked for.
        requested: String,
        /// The path served.
        served: String,
    },
    /// A WebSocket client offered none of this listener's subprotocols (answered 400).
    SubprotocolRefused {
        /// What the client offered.
        offered: Vec<String>,
        /// What this listener speaks.
        supported: Vec<String>,
    },
    /// The server accepted the WebSocket upgrade without agreeing to the subprotocol.
    SubprotocolNotAgreed {
        /// What the client asked for.
        requested: String,
        /// What the server answered: `none` or `one that was not asked for`.
        answered: &'static str,
    },
    /// The connection or its TLS and WebSocket handshakes did not finish in time
    /// ([`connect_within`], [`accept_within`]): the peer accepted or connected and then
    /// stayed silent.
    Timeout {
        /// What did not finish: `the connection to amqps://…` or `the client's handshake`.
        what: String,
        /// The time allowed.
        limit: std::time::Duration,
    },
}

impl TransportError {
    /// A copy for a second waiter: the same variant; an operating system error keeps its
    /// kind and message.
    pub(crate) fn duplicate(&self) -> Self {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            Self::Connect { endpoint, source } => {
                Self::Connect { endpoint: endpoint.clone(), source: io(source) }
            }
            Self::Bind { endpoint, source } => {
                Self::Bind { endpoint: endpoint.clone(), source: io(source) }
            }
            Self::Io(e) => Self::Io(io(e)),
            Self::Config(m) => Self::Config(m.clone()),
            Self::Tls(m) => Self::Tls(m.clone()),
            Self::CertificateNameMismatch { host, presented } => {
                Self::CertificateNameMismatch { host: host.clone(), presented: presented.clone() }
            }
            Self::ServerNotTls { answered, use_scheme } => {
                Self::ServerNotTls { answered, use_scheme }
            }
            Self::ClientNotTls { sent, use_scheme } => Self::ClientNotTls { sent, use_scheme },
            Self::ClientSentTls { use_scheme } => Self::ClientSentTls { use_scheme },
            Self::ClientNotWebSocket { sent, use_scheme } => {
                Self::ClientNotWebSocket { sent, use_scheme }
            }
            Self::WebSocket(m) => Self::WebSocket(m.clone()),
            Self::WsRefused { status, path, subprotocol, body } => Self::WsRefused {
                status: *status,
                path: path.clone(),
                subprotocol: subprotocol.clone(),
                body: body.clone(),
            },
            Self::WsPath { requested, served } => {
                Self::WsPath { requested: requested.clone(), served: served.clone() }
            }
            Self::SubprotocolRefused { offered, supported } => {
                Self::SubprotocolRefused { offered: offered.clone(), supported: supported.clone() }
            }
            Self::SubprotocolNotAgreed { requested, answered } => {
                Self::SubprotocolNotAgreed { requested: requested.clone(), answered }
            }
            Self::Timeout { what, limit } => Self::Timeout { what: what.clone(), limit: *limit },
        }
    }
}

/// The peer closed or reset the connection.
fn hung_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { endpoint, source } => {
                write!(f, "could not connect to {endpoint}: {source}")
            }
            Self::Bind { endpoint, source } => write!(f, "cannot listen on {endpoint}: {source}"),
            Self::Io(e) => write!(f, "transport I/O error: {e}"),
            Self::Config(m) => write!(f, "transport configuration: {m}"),
            Self::Tls(m) => write!(f, "TLS: {m}"),
            Self::CertificateNameMismatch { host, presented } => {
                write!(
                    f,
                    "TLS: certificate name mismatch: the server's certificate is not valid for \
                     {host:?}"
                )?;
                if !presented.is_empty() {
                    write!(f, " (it names {})", presented.join(", "))?;
                }
                Ok(())
            }
            Self::ServerNotTls { answered, use_scheme } => {
                write!(f, "the server answered in {answered}, not TLS: use {use_scheme}://")
            }
            Self::ClientNotTls { sent, use_scheme } => {
                write!(f, "the client sent {sent} to a TLS port: use {use_scheme}://")
            }
            Self::ClientSentTls { use_scheme } => write!(
                f,
                "the client sent a TLS ClientHello to a plain port: it expects {use_scheme}://"
            ),
            Self::ClientNotWebSocket { sent, use_scheme } => write!(
                f,
                "the client sent {sent} to a WebSocket port, not an HTTP upgrade: it expects \
                 {use_scheme}://"
            ),
            Self::WebSocket(m) => write!(f, "WebSocket: {m}"),
            Self::WsRefused { status, path, subprotocol, body } => {
                write!(
                    f,
                    "WebSocket: the server refused the upgrade of path {path:?} with subprotocol \
                     {subprotocol} (HTTP {status})"
                )?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            Self::WsPath { requested, served } => write!(
                f,
                "WebSocket: the client asked for path {requested:?}, this listener serves \
                 {served:?}"
            ),
            Self::SubprotocolRefused { offered, supported } => write!(
                f,
                "WebSocket: no common subprotocol: the client offered {}, this server speaks {}",
                list(offered),
                list(supported)
            ),
            Self::SubprotocolNotAgreed { requested, answered } => write!(
                f,
                "WebSocket: the client asked for subprotocol {requested}, the server answered \
                 with {answered}"
            ),
            Self::Timeout { what, limit } => write!(
                f,
                "{what} did not finish within {:.1} s (the peer stayed silent in the TCP, TLS \
                 or WebSocket handshake)",
                limit.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { source, .. } | Self::Bind { source, .. } => Some(source),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_hosts_and_ports_as_urls_have_them() {
        let ok = |a: &str| split_address(a, 7).map_err(|e| e.to_string());
        assert_eq!(ok("broker"), Ok(("broker".into(), 7)));
        assert_eq!(ok("broker.example:5671"), Ok(("broker.example".into(), 5671)));
        assert_eq!(ok("10.0.0.1:1"), Ok(("10.0.0.1".into(), 1)));
        assert_eq!(ok("[::1]:9"), Ok(("::1".into(), 9)));
        assert_eq!(ok("[::1]"), Ok(("::1".into(), 7)));
        assert_eq!(ok("fe80::1"), Ok(("fe80::1".into(), 7)));
        for (bad, why) in [
            ("", "the host is empty"),
            (":", "the host is empty"),
            (":5", "the host is empty"),
            ("a:b:c", "in brackets"),
            ("h o s t", "contains ' '"),
            ("x/y", "contains '/'"),
            ("h:0", "port 0 is not a port to connect to"),
            ("h:", "the port after ':' is empty"),
            ("h:x", "is not a number from 1 to 65535"),
            ("[::1", "lacks its closing ']'"),
            ("[nope]:1", "is not an IPv6 address"),
            ("[::1]x", "unexpected \"x\""),
        ] {
            let e = ok(bad).expect_err(bad);
            assert!(e.contains("expected HOST[:PORT]") && e.contains(why), "{bad:?}: {e}");
        }
    }

    /// A listener on 127.0.0.1 and its endpoint.
    async fn listener() -> (tokio::net::TcpListener, Endpoint) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("address").port();
        let endpoint = Endpoint::parse(&format!("amqp://127.0.0.1:{port}")).expect("endpoint");
        (l, endpoint)
    }

    /// An address that refuses connections and stays so: a socket bound to it that does
    /// not listen (kept while the test runs, so that no one else is given the port).
    fn refusing() -> (tokio::net::TcpSocket, SocketAddr) {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let at = s.local_addr().expect("address");
        (s, at)
    }

    fn none() -> std::sync::Arc<[SocketAddr]> {
        std::sync::Arc::from([])
    }

    #[tokio::test]
    async fn a_reserved_socket_carries_the_connection_and_one_of_the_other_family_gives_way() {
        let (l, endpoint) = listener().await;
        let tls = ClientTlsConfig::default();
        // Of the address's family: the connection is made on it (its bound address is the
        // one the listener sees).
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let bound = socket.local_addr().expect("bound");
        let reserved = Reserved { socket, v6: false, answered: None, resolved: none() };
        let t = connect_reserved(&endpoint, &tls, None, Some(reserved)).await.expect("connect");
        let (_, from) = l.accept().await.expect("accept");
        assert_eq!(from, bound);
        drop(t);
        // Of the other family (that of the address resolved before): a socket of the
        // address's family is opened for it.
        let v6: SocketAddr = "[::1]:1".parse().expect("address");
        let reserved = Reserved::open(None, std::sync::Arc::from([v6])).expect("socket");
        assert!(reserved.v6);
        connect_reserved(&endpoint, &tls, None, Some(reserved)).await.expect("connect");
        let (_, from) = l.accept().await.expect("accept");
        assert!(from.is_ipv4(), "{from}");
    }

    #[test]
    fn the_address_that_answered_last_goes_first_and_the_others_keep_their_order() {
        let a: Vec<SocketAddr> = ["[::1]:1", "127.0.0.1:1", "10.0.0.1:1", "10.0.0.2:1"]
            .iter()
            .map(|s| s.parse().expect("address"))
            .collect();
        for (answered, want) in [
            (Some(a[2]), vec![a[2], a[0], a[1], a[3]]),
            (Some(a[0]), a.clone()),
            (Some(a[3]), vec![a[3], a[0], a[1], a[2]]),
            (Some("10.9.9.9:1".parse().expect("address")), a.clone()),
            (None, a.clone()),
        ] {
            let mut got = a.clone();
            answered_first(&mut got, answered);
            assert_eq!(got, want, "{answered:?}");
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_tried_at_the_addresses_known_from_before() {
        // (.invalid never resolves, RFC 6761.)
        let (l, at) = listener().await;
        let addr = l.local_addr().expect("address");
        let (_refusing, refuses) = refusing();
        let name = format!("amqpwire-test.invalid:{}", at.port);
        let endpoint = Endpoint::parse(&format!("amqp://{name}")).expect("url");
        let tls = ClientTlsConfig::default();
        let Err(resolver) = tokio::net::lookup_host(name.as_str()).await else {
            panic!("{name} resolved")
        };
        let known = |a: &[SocketAddr]| std::sync::Arc::from(a);
        // The one that answered last, or those resolved before (one refusing first).
        for (answered, resolved) in [(Some(addr), none()), (None, known(&[refuses, addr]))] {
            let reserved = Reserved::open(answered, resolved).expect("socket");
            connect_reserved(&endpoint, &tls, None, Some(reserved)).await.expect("connect");
            l.accept().await.expect("accept");
        }
        // None known, or none that answers: the resolver's error.
        for (answered, resolved) in [(None, none()), (Some(refuses), known(&[refuses]))] {
            let reserved = Reserved::open(answered, resolved).expect("socket");
            match connect_reserved(&endpoint, &tls, None, Some(reserved)).await {
                Err(TransportError::Connect { source, .. }) => {
                    assert_eq!(source.to_string(), resolver.to_string());
                }
                other => panic!("{answered:?}: {:?}", other.map(|_| "a transport")),
            }
        }
    }

    #[tokio::test]
    async fn a_reserved_socket_refused_says_so_as_a_connect_does() {
        let (_refusing, refuses) = refusing();
        let endpoint = Endpoint::parse(&format!("amqp://{refuses}")).expect("url");
        let reserved = Reserved::open(None, none()).expect("socket");
        let tls = ClientTlsConfig::default();
        match connect_reserved(&endpoint, &tls, None, Some(reserved)).await {
            Err(TransportError::Connect { endpoint: e, source }) => {
                assert_eq!(e, endpoint.to_string());
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused, "{source}");
            }
            other => panic!("{:?}", other.map(|_| "a transport")),
        }
    }
}

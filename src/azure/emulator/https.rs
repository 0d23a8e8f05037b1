//! The emulator's HTTPS listener, IoT Hub's port 443: the device REST API, the service
//! REST API, and AMQP over WebSocket, on one port, as the SDKs assume. HTTP/1.1 is hyper's;
//! what each request means is here and in `rest.rs`.
//!
//! ```text
//!   GET /$iothub/websocket  (Upgrade: websocket, Sec-WebSocket-Protocol: AMQPWSB10)
//!        ─► 101, then AMQP over WebSocket: the same nodes as the amqps listener
//!   device API (a device's token, or a policy with DeviceConnect)
//!     POST   /devices/{id}/messages/events                 telemetry (one, or a batch)
//!     GET    /devices/{id}/messages/devicebound            C2D: 200 + ETag lock │ 204 none
//!     DELETE /devices/{id}/messages/devicebound/{etag}     complete (`&reject`: reject)
//!     POST   /devices/{id}/messages/devicebound/{etag}/abandon
//!   service API (a policy token; see rest.rs)
//!     /devices[/{id}[/modules[/{mid}]]]   registry: list, get, put, delete
//!     /twins/{id}[/modules/{mid}]         GET, PATCH (merge), PUT (replace)
//!     /twins/{id}[/modules/{mid}]/methods POST: invoke a direct method
//!   every request: ?api-version=…, Authorization: SharedAccessSignature …
//!   errors: {"Message": "ErrorCode:{code};{what}", "ExceptionMessage": "{what}"}
//! ```
//!
//! What a client can make the server hold is bounded: at most [`HTTPS_MAX_CONNECTIONS`]
//! connections at once (an upgraded WebSocket leaves the count), a request head of 16 KiB
//! (431 beyond), which must arrive within [`HTTPS_IDLE`] of the connection's last answer
//! (the connection closes otherwise), and a body within [`HTTPS_TRANSFER`] (408) of at most
//! the device-to-cloud limit or 256 KiB, whichever is larger (413, refused from its
//! `Content-Length` before it is read).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::rest;
use super::state::{lock, now_ms, Settle};
use super::{device_segment, IotHub, Need, RestError};
use crate::azure::client::IOTHUB_WS_PATH;
use crate::azure::hub::{message_id_text, FeedbackStatus};
use crate::codec::{Timestamp, Value};
use crate::message::{AnnotationMap, Message};
use crate::runtime::transport::{
    PeerIdentity, Scheme, TlsServerConfig, Transport, WsStream, AMQP_WS_SUBPROTOCOL,
};
use crate::runtime::ListenOptions;
use crate::types::{MessageId, Properties};

/// The most header bytes a request may have.
const MAX_HEAD: usize = 16 * 1024;
/// The smallest body limit (service requests: twins, identities, method payloads).
const MIN_BODY_LIMIT: usize = 256 * 1024;
/// How long a connection may take to send a request's head, counted from the answer before
/// (or from the TLS handshake); idle connections close after this.
pub const HTTPS_IDLE: Duration = Duration::from_secs(60);
/// How long a request's body, and the TLS handshake, may take.
pub const HTTPS_TRANSFER: Duration = Duration::from_secs(30);
/// Connections served at once; more wait to be accepted.
pub const HTTPS_MAX_CONNECTIONS: usize = 256;
/// The content type of a batch.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, body: Bytes, json: bool) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if json {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    r
}

fn json_reply(status: u16, v: &serde_json::Value) -> Reply {
    reply(status, Bytes::from(v.to_string()), true)
}

fn no_content() -> Reply {
    reply(204, Bytes::new(), false)
}

/// An error as IoT Hub writes it: the SDKs read the code from `Message`
/// (`ErrorCode:{code};{what}`) to choose their error type.
fn error(e: &RestError) -> Reply {
    let body = serde_json::json!({
        "Message": format!("ErrorCode:{};{}", e.code, e.message),
        "ExceptionMessage": e.message,
    });
    json_reply(e.status, &body)
}

fn err(status: u16, code: &'static str, why: impl Into<String>) -> Reply {
    error(&RestError::new(status, code, why))
}

/// The answer, and the connection closed after it (the rest of its request unread).
fn closing(mut r: Reply) -> Reply {
    r.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sees the plaintext bytes of HTTPS connections as they pass: the connection's number (in
/// accept order), the direction (`In`: from the client) and the bytes. The HTTP requests
/// and answers, and after an upgrade the WebSocket frames.
pub type HttpsRecorder = Arc<dyn Fn(u64, crate::connection::Direction, &[u8]) + Send + Sync>;

/// Where a hub keeps its recorder, if any.
#[derive(Default)]
pub(super) struct RecorderSlot(std::sync::Mutex<Option<HttpsRecorder>>);

impl std::fmt::Debug for RecorderSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if lock(&self.0).is_some() { "recording" } else { "not recording" })
    }
}

/// A stream whose bytes, both ways, go to a recorder.
struct Recorded<S> {
    inner: S,
    n: u64,
    recorder: HttpsRecorder,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        let r = std::pin::Pin::new(&mut me.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                (me.recorder)(me.n, crate::connection::Direction::In, new);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = &mut *self;
        let r = std::pin::Pin::new(&mut me.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(k)) = r {
            if k > 0 {
                (me.recorder)(me.n, crate::connection::Direction::Out, &data[..k]);
            }
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the TLS layer learned about a connection's client.
#[derive(Clone, Debug, Default)]
struct Peer {
    identity: Option<PeerIdentity>,
    addr: Option<SocketAddr>,
}

/// How upgraded WebSocket connections are set up: the AMQP listener's options (which
/// number them for its trace, with the other listeners' connections).
struct Front {
    options: ListenOptions,
    /// Numbers the connections a recorder sees.
    recorded: AtomicU64,
}

/// Who a request must come from.
enum Access {
    /// The device (or module `DEVICE/MODULE`) itself, or a policy with DeviceConnect.
    Device(String),
    /// RegistryRead.
    RegistryRead,
    /// RegistryReadWrite.
    RegistryWrite,
    /// ServiceConnect or RegistryRead (reading twins).
    ServiceRead,
    /// ServiceConnect.
    Service,
}

impl IotHub {
    /// Hands the plaintext bytes of every HTTPS connection accepted from now on to
    /// `recorder` (tests keep the SDKs' REST exchanges this way, as fixtures).
    pub fn record_https(&self, recorder: HttpsRecorder) {
        *lock(&self.inner.https_recorder.0) = Some(recorder);
    }

    /// Serves IoT Hub's port 443 on `listener` with certificate `tls`, forever: the REST
    /// APIs, and AMQP over WebSocket at `/$iothub/websocket` with the listener options of
    /// [`IotHub::listen_options`] (no trace).
    pub async fn serve_https(&self, listener: TcpListener, tls: TlsServerConfig) {
        self.serve_https_with(listener, self.listen_options(Some(tls), None)).await;
    }

    /// [`IotHub::serve_https`] with these listener options for the WebSocket connections
    /// (their certificate, client certificates, trace); nothing is served without a
    /// certificate in `options.tls`.
    pub async fn serve_https_with(&self, listener: TcpListener, options: ListenOptions) {
        let Some(tls) = options.tls.clone() else {
            tracing::error!("the HTTPS listener needs a certificate (ListenOptions::tls)");
            return;
        };
        let front = Arc::new(Front { options, recorded: 0.into() });
        let slots = Arc::new(Semaphore::new(HTTPS_MAX_CONNECTIONS));
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
            let Ok((tcp, addr)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (hub, acceptor, front) = (self.clone(), tls.acceptor().clone(), Arc::clone(&front));
            tokio::spawn(async move {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(HTTPS_TRANSFER, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let identity =
                    stream.get_ref().1.peer_certificates().and_then(PeerIdentity::from_chain);
                let peer = Peer { identity, addr: Some(addr) };
                let recorder = lock(&hub.inner.https_recorder.0).clone();
                match recorder {
                    Some(recorder) => {
                        let n = front.recorded.fetch_add(1, Ordering::Relaxed);
                        let stream = Recorded { inner: stream, n, recorder };
                        hub.http_connection(stream, front, peer).await;
                    }
                    None => hub.http_connection(stream, front, peer).await,
                }
                // An upgraded WebSocket runs on a task of its own: the slot is free now.
                drop(permit);
            });
        }
    }

    /// Answers the requests of one connection until the client closes it, idles, or
    /// upgrades it to a WebSocket.
    async fn http_connection<S>(&self, io: S, front: Arc<Front>, peer: Peer)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (hub, peer) = (self.clone(), Arc::new(peer));
        let service = hyper::service::service_fn(move |req| {
            let (hub, front, peer) = (hub.clone(), Arc::clone(&front), Arc::clone(&peer));
            async move { Ok::<_, Infallible>(hub.handle(req, &front, &peer).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HTTPS_IDLE)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
    }

    async fn handle(&self, req: Request<Incoming>, front: &Arc<Front>, peer: &Arc<Peer>) -> Reply {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let reply = self.answer_request(req, front, peer).await;
        // One event per request, as the AMQP side logs its links (`-v` shows them).
        tracing::info!(
            target: "amqpwire::emulator::https",
            %method,
            path,
            status = reply.status().as_u16(),
            peer = ?peer.addr,
            "request"
        );
        reply
    }

    async fn answer_request(
        &self,
        mut req: Request<Incoming>,
        front: &Arc<Front>,
        peer: &Arc<Peer>,
    ) -> Reply {
        if req.uri().path() == IOTHUB_WS_PATH {
            return self.upgrade(&mut req, front, peer);
        }
        if req.headers().contains_key(hyper::header::UPGRADE) {
            let why = format!(
                "no WebSocket at {:?}: AMQP over WebSocket is at {IOTHUB_WS_PATH}",
                req.uri().path()
            );
            return closing(err(404, "NotFound", why));
        }
        let limit = self.config().d2c_max_size.max(MIN_BODY_LIMIT);
        let length = header(req.headers(), "content-length").map(|v| v.trim().parse::<usize>());
        match length {
            Some(Ok(n)) if n > limit => {
                let why = format!("the body is {n} bytes; at most {limit} are allowed");
                return closing(err(413, "MessageTooLarge", why));
            }
            Some(Err(_)) => return closing(err(400, "ArgumentInvalid", "a bad Content-Length")),
            _ => {}
        }
        let (parts, body) = req.into_parts();
        let body =
            match tokio::time::timeout(HTTPS_TRANSFER, Limited::new(body, limit).collect()).await {
                Err(_) => return closing(err(408, "RequestTimeout", "the body came too slowly")),
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    let why = format!("the body is larger than {limit} bytes");
                    return closing(err(413, "MessageTooLarge", why));
                }
                Ok(Err(e)) => {
                    return closing(err(
                        400,
                        "ArgumentInvalid",
                        format!("the body could not be read: {e}"),
                    ))
                }
                Ok(Ok(b)) => b.to_bytes(),
            };
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        match self.route(&parts.method, path, query, &parts.headers, body).await {
            Ok(r) => r,
            Err(r) => *r,
        }
    }

    /// The WebSocket upgrade at `/$iothub/websocket`: checked as RFC 6455 asks, answered 101
    /// with subprotocol `AMQPWSB10`, and the upgraded stream served as an AMQP connection.
    fn upgrade(&self, req: &mut Request<Incoming>, front: &Arc<Front>, peer: &Arc<Peer>) -> Reply {
        let headers = req.headers();
        let has_token = |name: HeaderName, token: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if req.method() != Method::GET
            || !has_token(hyper::header::UPGRADE, "websocket")
            || !has_token(hyper::header::CONNECTION, "upgrade")
        {
            let why = format!(
                "{IOTHUB_WS_PATH} takes a WebSocket upgrade (GET with Upgrade: websocket) only"
            );
            return closing(err(400, "ArgumentInvalid", why));
        }
        if header(headers, "sec-websocket-version") != Some("13") {
            let mut r = closing(err(426, "ArgumentInvalid", "WebSocket version 13 only"));
            r.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
            return r;
        }
        let Some(key) = header(headers, "sec-websocket-key").map(str::to_owned) else {
            return closing(err(400, "ArgumentInvalid", "no Sec-WebSocket-Key"));
        };
        let offered: Vec<String> = headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if !offered.iter().any(|p| p == AMQP_WS_SUBPROTOCOL) {
            let why = format!(
                "the client offered subprotocols {offered:?}; this endpoint speaks {AMQP_WS_SUBPROTOCOL}"
            );
            return closing(err(400, "ArgumentInvalid", why));
        }
        let upgraded = hyper::upgrade::on(req);
        let (hub, front, peer) = (self.clone(), Arc::clone(front), Arc::clone(peer));
        tokio::spawn(async move {
            let Ok(upgraded) = upgraded.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let io = Transport::from_accepted(
                WsStream::new(ws),
                Scheme::Wss,
                peer.identity.clone(),
                peer.addr,
            );
            let conn = front.options.start(io);
            hub.serve_connection(conn, false).await;
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut r = reply(101, Bytes::new(), false);
        let h = r.headers_mut();
        h.insert(hyper::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(hyper::header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        h.insert("sec-websocket-protocol", HeaderValue::from_static(AMQP_WS_SUBPROTOCOL));
        r
    }

    /// Checks the request's token for `access`.
    fn authorize(&self, headers: &HeaderMap, access: &Access) -> Result<(), RestError> {
        let unauthorized = |why: String| RestError::new(401, "IotHubUnauthorizedAccess", why);
        let config = self.config();
        let Some(token) = header(headers, "authorization") else {
            return Err(unauthorized("no Authorization header".into()));
        };
        let claim = self.validate(token, &config.hostname, false).map_err(unauthorized)?;
        let host = &config.hostname;
        let (resource, allowed) = match access {
            Access::Device(id) => {
                let (device, module) = match id.split_once('/') {
                    None => (id.as_str(), None),
                    Some((d, m)) => (d, Some(m)),
                };
                let resource = match module {
                    None => format!("{host}/devices/{device}"),
                    Some(m) => format!("{host}/devices/{device}/modules/{m}"),
                };
                let ok = claim.grants(&resource, &Need::Device(device.to_owned()));
                (resource, ok)
            }
            service => {
                let r = &claim.rights;
                let ok = claim.device().is_none()
                    && match service {
                        Access::RegistryRead => r.registry || r.registry_write,
                        Access::RegistryWrite => r.registry_write,
                        Access::ServiceRead => r.service || r.registry || r.registry_write,
                        _ => r.service,
                    };
                let resource = format!("{host}/devices");
                (resource.clone(), ok && claim.token.authorizes_any_port(&resource))
            }
        };
        if allowed {
            return Ok(());
        }
        let need = match access {
            Access::Device(_) => "the device or DeviceConnect",
            Access::RegistryRead => "RegistryRead",
            Access::RegistryWrite => "RegistryReadWrite",
            Access::ServiceRead => "ServiceConnect or RegistryRead",
            Access::Service => "ServiceConnect",
        };
        Err(unauthorized(format!("the token does not grant {need} for {resource}")))
    }

    /// Finds what a request asks for, checks its api-version and token, and answers it.
    async fn route(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Reply, Box<Reply>> {
        let raw: Vec<&str> = path.trim_matches('/').split('/').collect();
        let lower: Vec<String> = raw.iter().map(|s| s.to_ascii_lowercase()).collect();
        let w: Vec<&str> = lower.iter().map(String::as_str).collect();
        // An id that decodes to something with a `/` would read as DEVICE/MODULE.
        let slashed = std::sync::atomic::AtomicBool::new(false);
        let id = |i: usize| {
            let d = device_segment(raw[i]);
            if d.contains('/') {
                slashed.store(true, Ordering::Relaxed);
            }
            d
        };
        let module = |d: usize, m: usize| format!("{}/{}", id(d), id(m));
        let not_allowed = |allowed: &str| {
            let why = format!("{method} is not allowed on {path}; {allowed}");
            Err(Box::new(err(405, "MethodNotAllowed", why)))
        };
        use rest::Call;
        let call = match (w.as_slice(), method) {
            (["devices", _, "messages", "events"], &Method::POST) => Call::Telemetry(id(1)),
            (["devices", _, "messages", "events"], _) => return not_allowed("POST telemetry"),
            (["devices", _, "messages", "devicebound"], &Method::GET) => Call::Receive(id(1)),
            (["devices", _, "messages", "devicebound"], _) => return not_allowed("GET a message"),
            (["devices", _, "messages", "devicebound", _], &Method::DELETE) => {
                let reject = query.split('&').any(|kv| {
                    kv.eq_ignore_ascii_case("reject")
                        || kv.to_ascii_lowercase().starts_with("reject=")
                });
                let how = if reject { Settle::Reject } else { Settle::Complete };
                Call::Settle(id(1), raw[4].to_owned(), how)
            }
            (["devices", _, "messages", "devicebound", _], _) => {
                return not_allowed("DELETE completes or (&reject) rejects")
            }
            (["devices", _, "messages", "devicebound", _, "abandon"], &Method::POST) => {
                Call::Settle(id(1), raw[4].to_owned(), Settle::Abandon)
            }
            (["devices"], &Method::GET) => Call::ListDevices,
            (["devices"], _) => return not_allowed("GET lists the devices"),
            // IoT Hub's query language (`SELECT * FROM devices WHERE …`) is not emulated:
            // said so, rather than taking `query` for a device id.
            (["devices", "query"], &Method::POST) => {
                let why = "queries of device twins (POST /devices/query, IoT Hub's query \
                           language) are not emulated: read twins with GET /twins/{id}";
                return Err(Box::new(err(501, "NotImplemented", why)));
            }
            (["devices", _, "commands"], &Method::DELETE) => Call::Purge(id(1)),
            (["devices", _, "commands"], _) => {
                return not_allowed("DELETE purges the device's cloud-to-device queue")
            }
            (["devices", _], m) => Call::Identity(id(1), m.clone()),
            (["devices", _, "modules"], &Method::GET) => Call::ListModules(id(1)),
            (["devices", _, "modules"], _) => return not_allowed("GET lists the modules"),
            (["devices", _, "modules", _], m) => Call::Identity(module(1, 3), m.clone()),
            (["twins", _], m) => Call::Twin(id(1), m.clone()),
            (["twins", _, "modules", _], m) => Call::Twin(module(1, 3), m.clone()),
            (["twins", _, "methods"], &Method::POST) => Call::Method(id(1)),
            (["twins", _, "modules", _, "methods"], &Method::POST) => Call::Method(module(1, 3)),
            (["twins", _, "methods"] | ["twins", _, "modules", _, "methods"], _) => {
                return not_allowed("POST invokes a method")
            }
            _ => return Err(Box::new(err(404, "NotFound", format!("no resource {path:?}")))),
        };
        if slashed.load(Ordering::Relaxed) {
            let why = format!("{path:?} names an id with a '/', which no device or module id has");
            return Err(Box::new(err(400, "ArgumentInvalid", why)));
        }
        if !query.split('&').any(|kv| kv.starts_with("api-version=")) {
            return Err(Box::new(err(
                400,
                "ArgumentInvalid",
                "the api-version query parameter is missing",
            )));
        }
        let access = match &call {
            Call::Telemetry(d) | Call::Receive(d) | Call::Settle(d, _, _) => {
                Access::Device(d.clone())
            }
            Call::ListDevices | Call::ListModules(_) => Access::RegistryRead,
            Call::Identity(_, m) if m == Method::GET => Access::RegistryRead,
            Call::Identity(..) => Access::RegistryWrite,
            Call::Purge(_) => Access::Service,
            Call::Twin(_, m) if m == Method::GET => Access::ServiceRead,
            Call::Twin(..) | Call::Method(_) => Access::Service,
        };
        // The token first, as IoT Hub does: who is registered is no one else's business.
        self.authorize(headers, &access).map_err(|e| Box::new(error(&e)))?;
        let if_match = header(headers, "if-match");
        Ok(match call {
            Call::Telemetry(device) => self.telemetry(&device, headers, body),
            Call::Receive(device) => self.receive(&device),
            Call::Settle(device, token, how) => self.settle(&device, &token, how),
            service => match self.service_call(service, if_match, &body).await {
                Ok((status, Some(v))) => json_reply(status, &v),
                Ok((_, None)) => no_content(),
                Err(e) => error(&e),
            },
        })
    }

    /// `POST /devices/{id}/messages/events`: one message, or a batch, into the event log.
    fn telemetry(&self, device: &str, headers: &HeaderMap, body: Bytes) -> Reply {
        let config = self.config();
        if !self.knows(device) || device.contains('/') {
            // A policy token may name a device that does not exist.
            return err(404, "DeviceNotFound", format!("no device {device:?} in the registry"));
        }
        if body.len() > config.d2c_max_size {
            let why = format!(
                "the message is {} bytes; at most {} are allowed",
                body.len(),
                config.d2c_max_size
            );
            return err(413, "MessageTooLarge", why);
        }
        let batch = header(headers, "content-type").is_some_and(|t| {
            t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(BATCH_CONTENT_TYPE)
        });
        let messages = if batch {
            match batch_messages(&body) {
                Ok(m) => m,
                Err(why) => return err(400, "ArgumentInvalid", why),
            }
        } else {
            let pairs = headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
            vec![message(body, pairs)]
        };
        if self.throttled(device) {
            let why = format!("device {device:?} is throttled (fault injection)");
            return err(429, "ThrottlingException", why);
        }
        let generation = self.generation_id(device).unwrap_or_default();
        for m in messages {
            self.inner.log.append_from(device, None, &generation, m);
        }
        no_content()
    }

    /// `GET /devices/{id}/messages/devicebound`: the next cloud-to-device message, locked
    /// for the hub's lock time-out under the lock token its `ETag` carries; 204 when none
    /// waits.
    fn receive(&self, device: &str) -> Reply {
        if !self.knows(device) || device.contains('/') {
            return err(404, "DeviceNotFound", format!("no device {device:?} in the registry"));
        }
        let q = &self.inner.queues;
        loop {
            let Some(m) = q.take(device) else { return no_content() };
            if m.expires_ms <= now_ms() {
                q.feedback(device, &m, FeedbackStatus::Expired);
                q.unlock(device);
                continue;
            }
            // A version 4 GUID, as IoT Hub's lock tokens are.
            let token = super::methods::uuid_text(&crate::azure::client::random_uuid());
            let r = c2d_reply(device, &m, &token);
            lock(&q.http_locks).insert(token.clone(), (device.to_owned(), m));
            // The lock runs out: back in the queue, not counted as a delivery.
            let (hub, lock_timeout) = (self.clone(), self.config().lock_timeout);
            tokio::spawn(async move {
                tokio::time::sleep(lock_timeout).await;
                let q = &hub.inner.queues;
                let held = lock(&q.http_locks).remove(&token);
                if let Some((device, m)) = held {
                    q.requeue(&device, m);
                }
            });
            return r;
        }
    }

    /// Settles a message received over HTTPS by its lock token.
    fn settle(&self, device: &str, token: &str, how: Settle) -> Reply {
        let q = &self.inner.queues;
        let token = super::registry::if_match_value(token).to_ascii_lowercase();
        let held = {
            let mut locks = lock(&q.http_locks);
            match locks.get(&token) {
                Some((d, _)) if d == device => locks.remove(&token),
                _ => None,
            }
        };
        let Some((_, m)) = held else {
            let why = format!(
                "no message of device {device:?} is locked with {token:?} (settled, expired, or never given)"
            );
            return err(412, "DeviceMessageLockLost", why);
        };
        q.settle(device, m, how, self.config().max_delivery_count);
        no_content()
    }
}

/// A cloud-to-device message as the HTTPS device API gives it: the body as it is, its
/// properties as `iothub-…` headers, application properties as `iothub-app-{name}`, and the
/// lock token as the `ETag`.
fn c2d_reply(device: &str, m: &super::state::C2d, token: &str) -> Reply {
    let message = &m.message;
    let mut r = reply(200, message.body.bytes().unwrap_or_default(), false);
    let h = r.headers_mut();
    let mut put = |name: &str, value: String| {
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
        {
            h.append(n, v);
        }
    };
    put("etag", format!("\"{token}\""));
    put(
        "iothub-to",
        format!("/devices/{}/messages/devicebound", crate::azure::percent_encode(device)),
    );
    put("iothub-sequencenumber", m.sequence.to_string());
    put("iothub-deliverycount", m.delivery_count.to_string());
    put("iothub-expiry", Timestamp(m.expires_ms).to_string());
    put("iothub-ack", m.ack.as_str().to_owned());
    if let Some(p) = &message.properties {
        if let Some(id) = &p.message_id {
            put("iothub-messageid", message_id_text(id));
        }
        if let Some(id) = &p.correlation_id {
            put("iothub-correlationid", message_id_text(id));
        }
        if let Some(u) = p.user_id.as_ref().and_then(|u| std::str::from_utf8(u).ok()) {
            put("iothub-userid", u.to_owned());
        }
        if let Some(t) = &p.content_type {
            put("iothub-contenttype", t.as_str().to_owned());
        }
        if let Some(e) = &p.content_encoding {
            put("iothub-contentencoding", e.as_str().to_owned());
        }
    }
    for (k, v) in message.application_properties.as_ref().map(|a| a.to_pairs()).unwrap_or_default()
    {
        let Some(k) = k.as_str() else { continue };
        if k.eq_ignore_ascii_case("iothub-ack") {
            continue;
        }
        let text = match &v {
            Value::String(s, _) => s.to_string(),
            Value::Symbol(s, _) => s.as_str().to_owned(),
            Value::Boolean(b, _) => b.to_string(),
            other => match (other.as_i64(), other.as_u64()) {
                (Some(n), _) => n.to_string(),
                (_, Some(n)) => n.to_string(),
                _ => continue,
            },
        };
        put(&format!("iothub-app-{k}"), text);
    }
    r
}

/// A telemetry message from a body and its `iothub-…` headers (or batch properties).
fn message<'a>(body: Bytes, headers: impl Iterator<Item = (&'a str, &'a str)>) -> Message {
    let mut m = Message::with_data(body);
    let mut properties = Properties::default();
    let mut app = Vec::new();
    for (k, v) in headers {
        let lower = k.to_ascii_lowercase();
        if let Some(name) = lower.strip_prefix("iothub-app-") {
            // The name as the client wrote it, after the prefix.
            app.push((Value::from(&k[k.len() - name.len()..]), Value::from(v)));
            continue;
        }
        match lower.as_str() {
            "dt-subject" => app.push((Value::from("dt-subject"), Value::from(v))),
            "iothub-messageid" => properties.message_id = Some(MessageId::String(v.into())),
            "iothub-correlationid" => {
                properties.correlation_id = Some(MessageId::String(v.into()));
            }
            "iothub-contenttype" => properties.content_type = Some(v.into()),
            "iothub-contentencoding" => properties.content_encoding = Some(v.into()),
            _ => {}
        }
    }
    if properties != Properties::default() {
        m.properties = Some(properties);
    }
    if !app.is_empty() {
        m.application_properties = Some(AnnotationMap::from_pairs(app));
    }
    m
}

/// The messages of a batch: `[{"body": base64, "properties": {name: text, …}}, …]`.
fn batch_messages(body: &[u8]) -> Result<Vec<Message>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the batch is not JSON: {e}"))?;
    let items = v.as_array().ok_or("the batch is not a JSON array")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = item
                .get("body")
                .and_then(|b| b.as_str())
                .ok_or_else(|| format!("batch item {i}: no \"body\" string"))?;
            // The SDKs send `"base64Encoded": true`; with false the body is the text itself.
            let encoded = match item.get("base64Encoded") {
                None | Some(serde_json::Value::Null) => true,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!("batch item {i}: base64Encoded is {other}, not a boolean"))
                }
            };
            let bytes = if encoded {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("batch item {i}: the body is not base64: {e}"))?
            } else {
                text.as_bytes().to_vec()
            };
            let props: Vec<(&str, &str)> = match item.get("properties") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Object(o)) => o
                    .iter()
                    .map(|(k, v)| {
                        v.as_str()
                            .map(|v| (k.as_str(), v))
                            .ok_or_else(|| format!("batch item {i}: property {k} is not a string"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("batch item {i}: \"properties\" is not an object")),
            };
            Ok(message(Bytes::from(bytes), props.into_iter()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A hub with device `d1`, and a token for it.
    fn hub() -> (IotHub, String) {
        let key = crate::azure::SasKey::from_bytes(vec![7; 32]);
        let mut config = super::super::HubConfig::new("localhost");
        config.devices.push(("d1".into(), key.clone()));
        let expiry = super::super::unix_seconds() + 3600;
        let token = crate::azure::SasToken::new("localhost/devices/d1", &key, None, expiry);
        (IotHub::new(config), token.unwrap().to_string())
    }

    /// Serves one in-memory connection.
    fn serve(hub: &IotHub, server: tokio::io::DuplexStream) {
        let front = Arc::new(Front { options: hub.listen_options(None, None), recorded: 0.into() });
        let hub = hub.clone();
        tokio::spawn(async move { hub.http_connection(server, front, Peer::default()).await });
    }

    #[tokio::test]
    async fn heads_in_single_bytes_and_pipelined_requests_are_answered_in_order() {
        let (hub, token) = hub();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        serve(&hub, server);
        let one = format!(
            "POST /devices/d1/messages/events?api-version=1 HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: 2\r\n\r\nhi"
        );
        // The first request a byte at a time, then two more in one write.
        for b in one.as_bytes() {
            client.write_all(&[*b]).await.unwrap();
        }
        let two = format!("{one}GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
        client.write_all(two.as_bytes()).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        let statuses: Vec<&str> = answer.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect();
        assert_eq!(
            statuses,
            ["HTTP/1.1 204 No Content", "HTTP/1.1 204 No Content", "HTTP/1.1 404 Not Found"],
            "{answer}"
        );
        assert_eq!(hub.events(hub.partition_of("d1")).len(), 2);
    }

    #[tokio::test]
    async fn a_head_that_never_ends_is_refused_at_16_kib() {
        let (hub, _) = hub();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        serve(&hub, server);
        let endless = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20_000));
        client.write_all(endless.as_bytes()).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    /// A JSON value of bounded depth, of every kind.
    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "[a-zA-Z0-9 $/:=*-]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("deviceId".to_owned()),
                        Just("moduleId".to_owned()),
                        Just("status".to_owned()),
                        Just("authentication".to_owned()),
                        Just("type".to_owned()),
                        Just("symmetricKey".to_owned()),
                        Just("primaryKey".to_owned()),
                        Just("x509Thumbprint".to_owned()),
                        Just("primaryThumbprint".to_owned()),
                        Just("tags".to_owned()),
                        Just("properties".to_owned()),
                        Just("desired".to_owned()),
                        Just("reported".to_owned()),
                        Just("methodName".to_owned()),
                        Just("payload".to_owned()),
                        // (A connect time-out would make a call wait for an offline
                        // device to come: its range is checked in tests/iothub.rs.)
                        Just("responseTimeoutInSeconds".to_owned()),
                        "[a-z$]{1,6}",
                    ],
                    inner,
                    0..5,
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        /// Whatever JSON a service sends to whichever resource, with whichever verb and
        /// etag, the hub answers it with a status (no panic, no dropped connection), and
        /// a 2xx answer to an identity or twin write leaves a registry that still reads.
        #[test]
        fn any_service_request_gets_an_answer(
            verb in proptest::sample::select(vec!["GET", "PUT", "PATCH", "POST", "DELETE"]),
            path in proptest::sample::select(vec![
                "/devices", "/devices/d1", "/devices/d2", "/devices/d1/modules",
                "/devices/d1/modules/m1", "/twins/d1", "/twins/d2", "/twins/d1/modules/m1",
                "/twins/d1/methods", "/devices/d1/messages/devicebound",
                "/devices/d1/messages/devicebound/x", "/devices/%2F/modules/m",
            ]),
            if_match in proptest::option::of(proptest::sample::select(vec!["*", "\"*\"", "\"MQ==\"", "bogus"])),
            body in any_json(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut config = crate::azure::emulator::HubConfig::new("localhost");
                config.devices.push(("d1".into(), crate::azure::SasKey::from_bytes(vec![7; 32])));
                let key = crate::azure::SasKey::from_bytes(vec![9; 32]);
                config.policies.push(("owner".into(), key.clone(), super::super::Permissions::of_policy("iothubowner")));
                let hub = IotHub::new(config);
                let expiry = super::super::unix_seconds() + 3600;
                let token = crate::azure::SasToken::new("localhost", &key, Some("owner"), expiry).unwrap();
                let (mut client, server) = tokio::io::duplex(256 * 1024);
                serve(&hub, server);
                let body = body.to_string();
                let mut req = format!(
                    "{verb} {path}?api-version=1 HTTP/1.1\r\nAuthorization: {token}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                if let Some(m) = if_match {
                    req.push_str(&format!("If-Match: {m}\r\n"));
                }
                req.push_str("\r\n");
                req.push_str(&body);
                client.write_all(req.as_bytes()).await.unwrap();
                let mut answer = String::new();
                let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_string(&mut answer)).await;
                assert!(read.is_ok(), "no answer to {verb} {path} {body}");
                let status: u16 = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                assert!((200..600).contains(&status), "{verb} {path} {body}: {answer}");
                // The registry still reads, whatever was written.
                let _ = hub.list_devices();
                let _ = hub.service_twin("d1");
            });
        }
    }

    #[test]
    fn headers_become_properties() {
        let m = message(
            Bytes::from_static(b"{}"),
            [
                ("IoTHub-MessageId", "m1"),
                ("iothub-app-Alert", "yes"),
                ("iothub-contenttype", "application/json"),
                ("User-Agent", "esp32"),
            ]
            .into_iter(),
        );
        let p = m.properties.unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("m1".into())));
        assert_eq!(p.content_type.as_ref().map(|s| s.as_str()), Some("application/json"));
        let app = m.application_properties.unwrap();
        assert_eq!(app.get("Alert").and_then(|v| v.as_str()), Some("yes"));
        assert_eq!(app.len(), 1);
    }

    #[test]
    fn batches_are_checked_item_by_item() {
        let ok = br#"[{"body":"aGk=","properties":{"iothub-app-k":"v"}},{"body":""},
            {"body":"abcd","base64Encoded":false},{"body":"YQ==","base64Encoded":true}]"#;
        let ms = batch_messages(ok).unwrap();
        assert_eq!(ms.len(), 4);
        assert_eq!(ms[0].body.as_data().map(|b| &b[..]), Some(&b"hi"[..]));
        assert_eq!(ms[2].body.as_data().map(|b| &b[..]), Some(&b"abcd"[..]));
        assert_eq!(ms[3].body.as_data().map(|b| &b[..]), Some(&b"a"[..]));
        let flag = br#"[{"body":"","base64Encoded":"yes"}]"#;
        assert!(batch_messages(flag).unwrap_err().contains("not a boolean"));
        assert!(batch_messages(b"{}").unwrap_err().contains("not a JSON array"));
        assert!(batch_messages(br#"[{"body":"***"}]"#).unwrap_err().contains("not base64"));
        assert!(batch_messages(br#"[{"nobody":1}]"#).unwrap_err().contains("item 0"));
        let bad = br#"[{"body":"","properties":{"k":1}}]"#;
        assert!(batch_messages(bad).unwrap_err().contains("not a string"));
    }
}

//! The AMQP WebSocket binding: the client and server handshakes (path, subprotocol
//! `AMQPWSB10`) and [`WsStream`], which turns a WebSocket into a byte stream.
//!
//! AMQP bytes travel in binary messages. Message boundaries mean nothing: one frame may
//! span several messages and one message may carry several frames, so the reader buffers
//! across messages and the writer gathers writes until a flush.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{
    self,
    client::IntoClientRequest,
    error::{ProtocolError, SubProtocolError},
    handshake::server::{ErrorResponse, Request, Response},
    http::{header, HeaderValue, StatusCode},
    Message,
};
use tokio_tungstenite::WebSocketStream;

use super::url::{Endpoint, AMQP_WS_SUBPROTOCOL};
use super::{hung_up, TransportError};

/// Writes are gathered up to this many bytes before a message is sent without a flush.
pub const WS_MESSAGE_SIZE: usize = 64 * 1024;

/// A WebSocket as a byte stream: [`AsyncRead`] and [`AsyncWrite`] over a tokio-tungstenite
/// [`WebSocketStream`].
///
/// - Reading yields the bytes of binary messages in order, whatever their boundaries.
///   Pings are answered (the pong goes out with the next read or write), pongs are
///   ignored, a close frame or the end of the stream reads as end of file, and a text
///   message is an [`io::ErrorKind::InvalidData`] error.
/// - Writing gathers bytes; [`flush`](tokio::io::AsyncWriteExt::flush) sends them as one
///   binary message (and so does gathering [`WS_MESSAGE_SIZE`] bytes).
/// - Shutdown sends what was gathered, then a close frame.
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// Received bytes not yet read.
    incoming: Bytes,
    /// Written bytes not yet sent.
    outgoing: BytesMut,
    /// A close frame or the end of the stream was seen.
    eof: bool,
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Wraps a WebSocket whose handshake is done.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self { ws, incoming: Bytes::new(), outgoing: BytesMut::new(), eof: false }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }

    /// Sends the gathered bytes as one binary message (into tungstenite's write buffer).
    fn poll_send_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.outgoing.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        let message = Message::Binary(self.outgoing.split().freeze());
        Pin::new(&mut self.ws).start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.incoming.is_empty() {
                let n = this.incoming.len().min(buf.remaining());
                buf.put_slice(&this.incoming[..n]);
                this.incoming.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.incoming = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the peer sent a WebSocket text message; AMQP travels in binary \
                         messages",
                    )))
                }
                // A close frame is the end: push out tungstenite's close reply if the socket
                // takes it now (shutdown sends it otherwise), but do not wait for the peer
                // to drop the connection.
                Some(Ok(Message::Close(_))) => {
                    let _ = Pin::new(&mut this.ws).poll_flush(cx);
                    this.eof = true;
                }
                None => this.eof = true,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outgoing.len() >= WS_MESSAGE_SIZE {
            ready!(this.poll_send_outgoing(cx))?;
        }
        let n = buf.len().min(WS_MESSAGE_SIZE.saturating_sub(this.outgoing.len()).max(1));
        this.outgoing.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_outgoing(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_outgoing(cx))?;
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

/// What a WebSocket listener accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsServerConfig {
    /// The request path to accept (others get 404), compared without the query string.
    pub path: String,
    /// The subprotocols spoken, in order of preference; a client that offers none of them
    /// gets 400.
    pub subprotocols: Vec<String>,
    /// The largest WebSocket message (and frame) taken from a client
    /// ([`WS_MAX_INCOMING`] by default): a larger one ends the connection as soon as its
    /// header claims it, rather than being held whole before the client has even
    /// authenticated. Raise it with the engine's max-frame-size if a client writes larger
    /// AMQP frames as single messages.
    pub max_message_size: usize,
}

/// The default [`WsServerConfig::max_message_size`]: 4 MiB, four times the engine's
/// default max-frame-size (a client may write several AMQP frames in one message), where
/// tungstenite's own default (64 MiB) would let each connection hold that much unasked.
pub const WS_MAX_INCOMING: usize = 4 << 20;

impl Default for WsServerConfig {
    /// Path `/`, subprotocol `AMQPWSB10`, messages up to [`WS_MAX_INCOMING`].
    fn default() -> Self {
        Self {
            path: "/".into(),
            subprotocols: vec![AMQP_WS_SUBPROTOCOL.into()],
            max_message_size: WS_MAX_INCOMING,
        }
    }
}

impl WsServerConfig {
    /// The path and subprotocol of a listening endpoint (`ws://` or `wss://`).
    pub fn for_endpoint(endpoint: &Endpoint) -> Self {
        let subprotocols = endpoint.ws_subprotocols().into_iter().map(str::to_owned).collect();
        Self { path: endpoint.path.clone(), subprotocols, ..Self::default() }
    }
}

/// The subprotocols of a request's `Sec-WebSocket-Protocol` headers.
fn offered_subprotocols(request: &Request) -> Vec<String> {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn refusal(status: StatusCode, text: String) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(text.clone()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    r
}

/// Runs the server side of a WebSocket handshake: checks the path and picks a subprotocol.
///
/// A request for another path is answered 404 and gives [`TransportError::WsPath`]; a
/// request that offers none of `config.subprotocols` is answered 400 and gives
/// [`TransportError::SubprotocolRefused`].
// tungstenite's callback type returns its (large) error response unboxed.
#[allow(clippy::result_large_err)]
pub async fn accept_ws<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: &WsServerConfig,
) -> Result<WsStream<S>, TransportError> {
    let mut refused: Option<TransportError> = None;
    let callback = |request: &Request, mut response: Response| {
        let path = request.uri().path();
        if path != config.path {
            let e =
                TransportError::WsPath { requested: path.to_string(), served: config.path.clone() };
            let text = e.to_string();
            refused = Some(e);
            return Err(refusal(StatusCode::NOT_FOUND, text));
        }
        let offered = offered_subprotocols(request);
        let chosen = config.subprotocols.iter().find(|p| offered.contains(p));
        match chosen.and_then(|p| HeaderValue::from_str(p).ok()) {
            Some(value) => {
                response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
                Ok(response)
            }
            None => {
                let e = TransportError::SubprotocolRefused {
                    offered,
                    supported: config.subprotocols.clone(),
                };
                let text = e.to_string();
                refused = Some(e);
                Err(refusal(StatusCode::BAD_REQUEST, text))
            }
        }
    };
    let limits = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let result =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(limits)).await;
    match result {
        Ok(ws) => Ok(WsStream::new(ws)),
        Err(e) => Err(refused.unwrap_or_else(|| ws_error(e, "the client's WebSocket upgrade"))),
    }
}

/// Runs the client side of a WebSocket handshake over `stream` for a `ws://` or `wss://`
/// endpoint: requests its path with its subprotocols (`AMQPWSB10`, then `amqp`, unless the
/// URL names one) and insists that the server agrees to one of them.
pub async fn connect_ws<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    endpoint: &Endpoint,
) -> Result<WsStream<S>, TransportError> {
    let scheme = if endpoint.scheme.is_tls() { "wss" } else { "ws" };
    let url = format!("{scheme}://{}{}", endpoint.authority(), endpoint.path);
    let mut request = url.as_str().into_client_request().map_err(|e| {
        TransportError::WebSocket(format!("cannot build a WebSocket request for {url}: {e}"))
    })?;
    let offered = endpoint.ws_subprotocols();
    let wanted = offered.join(" or ");
    let value = HeaderValue::from_str(&offered.join(", ")).map_err(|_| {
        TransportError::WebSocket(format!("subprotocol {wanted:?} is not a valid header value"))
    })?;
    request.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _response)) => Ok(WsStream::new(ws)),
        Err(tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(e))) => {
            Err(TransportError::SubprotocolNotAgreed {
                requested: wanted,
                answered: match e {
                    SubProtocolError::NoSubProtocol => "none",
                    _ => "one that was not asked for",
                },
            })
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .unwrap_or_default();
            Err(TransportError::WsRefused {
                status: response.status().as_u16(),
                path: endpoint.path.clone(),
                subprotocol: wanted,
                body,
            })
        }
        Err(e) => Err(ws_error(e, "the WebSocket handshake")),
    }
}

fn ws_error(e: tungstenite::Error, what: &str) -> TransportError {
    match e {
        tungstenite::Error::Io(e) if hung_up(&e) => {
            TransportError::WebSocket(format!("the peer closed the connection during {what}"))
        }
        tungstenite::Error::Io(e) => TransportError::Io(e),
        other => TransportError::WebSocket(format!("{what} failed: {other}")),
    }
}

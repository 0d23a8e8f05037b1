//! Loopback tests of the transports: TCP, TLS, WebSocket and WebSocket over TLS, client and
//! server, with certificates made at test time. Every listener is 127.0.0.1 on port 0.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::time::Duration;

use amqpwire::frame::{FrameDecoder, ProtocolHeader};
use amqpwire::runtime::transport::{
    accept, connect, AcceptConfig, ClientTlsConfig, Endpoint, Scheme, TlsServerConfig, Transport,
    TransportError, WsServerConfig,
};
#[path = "support/pki.rs"]
mod pki;

use futures_util::{SinkExt, StreamExt};
use pki::{pki, pki_named, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A hang guard: every test finishes well within this.
async fn guard<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("test hung")
}

async fn listen() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// A listener for `scheme` that accepts one connection as a transport, in a task; and the
/// client endpoint `url` with `{port}` filled in.
async fn serve(
    url: &str,
    scheme: Scheme,
    config: &AcceptConfig,
) -> (Endpoint, JoinHandle<Result<Transport, TransportError>>) {
    let (listener, port) = listen().await;
    let endpoint: Endpoint = url.replace("{port}", &port.to_string()).parse().unwrap();
    let config = config.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, &Endpoint::new(scheme, "127.0.0.1", port), &config).await
    });
    (endpoint, server)
}

/// Connects a client over `url` to a server of the same scheme.
async fn pair(
    url: &str,
    tls: &ClientTlsConfig,
    config: &AcceptConfig,
) -> (Result<Transport, TransportError>, Result<Transport, TransportError>) {
    let scheme = Endpoint::parse(&url.replace("{port}", "1")).unwrap().scheme;
    let (endpoint, server) = serve(url, scheme, config).await;
    let client = connect(&endpoint, tls).await;
    (client, server.await.unwrap())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

/// Writes `data` in chunks of varying size, flushing every few chunks, then flushes.
async fn send(w: &mut (impl AsyncWriteExt + Unpin), data: &[u8]) {
    let sizes = [1usize, 7, 300, 4096, 65_535, 70_000, 13];
    let mut at = 0;
    let mut k = 0;
    while at < data.len() {
        let n = sizes[k % sizes.len()].min(data.len() - at);
        w.write_all(&data[at..at + n]).await.unwrap();
        at += n;
        k += 1;
        if k % 3 == 0 {
            w.flush().await.unwrap();
        }
    }
    w.flush().await.unwrap();
}

/// Both sides send `len` bytes at once and each must receive the other's exactly; then the
/// client shuts down and the server reads end of file.
async fn exchange(client: Transport, server: Transport, len: usize) {
    let to_server = pattern(len, 1);
    let to_client = pattern(len, 2);
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let mut at_server = vec![0u8; len];
    let mut at_client = vec![0u8; len];
    let (_, _, r1, r2) = tokio::join!(
        send(&mut cw, &to_server),
        send(&mut sw, &to_client),
        sr.read_exact(&mut at_server),
        cr.read_exact(&mut at_client),
    );
    r1.unwrap();
    r2.unwrap();
    assert!(at_server == to_server, "the server received other bytes than were sent");
    assert!(at_client == to_client, "the client received other bytes than were sent");

    let mut client = cr.unsplit(cw);
    let mut server = sr.unsplit(sw);
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "bytes after the end: {}", rest.len());
}

fn tls_config(pki: &Pki) -> AcceptConfig {
    AcceptConfig { tls: Some(pki.server()), ws: WsServerConfig::default() }
}

#[tokio::test]
async fn tcp_round_trip() {
    guard(async {
        let (c, s) =
            pair("amqp://127.0.0.1:{port}", &ClientTlsConfig::new(), &AcceptConfig::default())
                .await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!((c.scheme(), s.scheme()), (Some(Scheme::Amqp), Some(Scheme::Amqp)));
        assert!(c.peer_identity().is_none());
        assert_eq!(c.peer_addr().unwrap().ip().to_string(), "127.0.0.1");
        exchange(c, s, 100_000).await;
    })
    .await
}

#[tokio::test]
async fn tls_round_trip_checks_the_server_name() {
    guard(async {
        let pki = pki();
        let (c, s) = pair("amqps://localhost:{port}", &pki.client(), &tls_config(&pki)).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!((c.scheme(), s.scheme()), (Some(Scheme::Amqps), Some(Scheme::Amqps)));
        // The client sees the server's certificate; the server asked for none.
        assert_eq!(c.peer_identity().unwrap().subject_cn.as_deref(), Some("localhost"));
        assert!(s.peer_identity().is_none());
        exchange(c, s, 100_000).await;
    })
    .await
}

#[tokio::test]
async fn tls_wrong_name_is_a_certificate_name_mismatch() {
    guard(async {
        let pki = pki();
        // The certificate names localhost, not 127.0.0.1.
        let (c, s) = pair("amqps://127.0.0.1:{port}", &pki.client(), &tls_config(&pki)).await;
        let e = c.unwrap_err();
        assert!(matches!(e, TransportError::CertificateNameMismatch { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("certificate name mismatch") && text.contains("127.0.0.1"), "{text}");
        assert!(text.contains("localhost"), "the names the certificate holds: {text}");
        let e = s.unwrap_err();
        assert!(e.to_string().contains("alert"), "server side: {e}");
    })
    .await
}

#[tokio::test]
async fn tls_untrusted_ca_is_refused() {
    guard(async {
        let pki = pki();
        let other = pki_named("another CA");
        let (c, _s) = pair("amqps://localhost:{port}", &other.client(), &tls_config(&pki)).await;
        let e = c.unwrap_err().to_string();
        assert!(e.contains("unknown issuer"), "{e}");
    })
    .await
}

#[tokio::test]
async fn tls_client_certificate_is_the_peer_identity() {
    guard(async {
        let pki = pki();
        let server = pki.server().with_client_ca_pem(pki.ca.as_bytes(), true).unwrap();
        let config = AcceptConfig { tls: Some(server), ws: WsServerConfig::default() };
        let client = pki
            .client()
            .with_client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
            .unwrap();
        let (c, s) = pair("amqps://localhost:{port}", &client, &config).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        let id = s.peer_identity().expect("the server sees the client certificate");
        assert_eq!(id.subject_cn.as_deref(), Some("device-1"));
        assert!(pki.client_cert.len() > id.certificate.len(), "DER is shorter than its PEM");
        exchange(c, s, 1000).await;

        // Required, and not presented: the server refuses.
        let config = AcceptConfig {
            tls: Some(pki.server().with_client_ca_pem(pki.ca.as_bytes(), true).unwrap()),
            ws: WsServerConfig::default(),
        };
        let (_c, s) = pair("amqps://localhost:{port}", &pki.client(), &config).await;
        let e = s.unwrap_err().to_string();
        assert!(e.contains("presented no certificate"), "{e}");

        // Optional, and not presented: in, with no identity.
        let config = AcceptConfig {
            tls: Some(pki.server().with_client_ca_pem(pki.ca.as_bytes(), false).unwrap()),
            ws: WsServerConfig::default(),
        };
        let (c, s) = pair("amqps://localhost:{port}", &pki.client(), &config).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert!(s.peer_identity().is_none());
        exchange(c, s, 1000).await;
    })
    .await
}

#[tokio::test]
async fn tls_client_to_a_plain_amqp_server_is_told_to_use_amqp() {
    guard(async {
        let (listener, port) = listen().await;
        // A plain AMQP server: the engine's decoder names the ClientHello, and the server
        // answers with its own header, as part 2, 2.2 asks, then closes.
        let server = async {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut decoder = FrameDecoder::new(65536);
            let mut buf = [0u8; 512];
            let error = loop {
                let n = tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed before sending 8 bytes");
                decoder.push(&buf[..n]);
                match decoder.next_item() {
                    Ok(None) => continue,
                    Ok(Some(item)) => panic!("a ClientHello decoded as {item:?}"),
                    Err(e) => break e.to_string(),
                }
            };
            tcp.write_all(&ProtocolHeader::AMQP.to_bytes()).await.unwrap();
            tcp.shutdown().await.unwrap();
            error
        };
        let endpoint: Endpoint = format!("amqps://localhost:{port}").parse().unwrap();
        let tls = pki().client();
        let (client, server_saw) = tokio::join!(connect(&endpoint, &tls), server);
        assert!(server_saw.contains("TLS ClientHello"), "{server_saw}");
        let e = client.unwrap_err();
        assert_eq!(e.to_string(), "the server answered in plain AMQP, not TLS: use amqp://");
    })
    .await
}

#[tokio::test]
async fn plain_client_to_a_tls_server_is_told_to_use_amqps() {
    guard(async {
        let pki = pki();
        let plain = ClientTlsConfig::new();
        for (header, expected) in [
            (
                ProtocolHeader::AMQP,
                "the client sent a plain AMQP header to a TLS port: use amqps://",
            ),
            (
                ProtocolHeader::SASL,
                "the client sent a plain AMQP header to a TLS port: use amqps://",
            ),
            // The in-band upgrade of part 5, 5.2 gets its own words.
            (
                ProtocolHeader::TLS,
                "the client sent the AMQP TLS header (AMQP 2 1 0 0, which starts TLS after the \
                 header) to a TLS port: use amqps://",
            ),
        ] {
            let (endpoint, server) =
                serve("amqp://127.0.0.1:{port}", Scheme::Amqps, &tls_config(&pki)).await;
            // The client's transport is plain TCP: it connects, then sends its header.
            let mut c = connect(&endpoint, &plain).await.unwrap();
            c.write_all(&header.to_bytes()).await.unwrap();
            let e = server.await.unwrap().unwrap_err();
            assert!(matches!(e, TransportError::ClientNotTls { .. }), "{e:?}");
            assert_eq!(e.to_string(), expected);
            // rustls answered with a fatal decode_error alert (a 7-byte record) and hung up.
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got).await;
            assert_eq!(got, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50], "a TLS alert record");
        }

        // A ws:// client at a wss:// port.
        let (endpoint, server) =
            serve("ws://127.0.0.1:{port}", Scheme::Wss, &tls_config(&pki)).await;
        let client = connect(&endpoint, &plain).await;
        let e = server.await.unwrap().unwrap_err().to_string();
        assert_eq!(e, "the client sent an HTTP request to a TLS port: use wss://");
        let e = client.unwrap_err().to_string();
        assert!(e.contains("WebSocket"), "{e}");
    })
    .await
}

#[tokio::test]
async fn wss_client_to_a_plain_ws_server_is_told_to_use_ws() {
    guard(async {
        // The WebSocket listener cannot parse a ClientHello as HTTP and hangs up.
        let config = AcceptConfig::default();
        let (endpoint, server) = serve("wss://localhost:{port}", Scheme::Ws, &config).await;
        let e = connect(&endpoint, &pki().client()).await.unwrap_err().to_string();
        assert!(
            e.contains("closed the connection during the TLS handshake") && e.contains("use ws://"),
            "{e}"
        );
        let e = server.await.unwrap().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the client sent a TLS ClientHello to a plain port: it expects wss://"
        );
    })
    .await
}

#[tokio::test]
async fn amqp_client_to_a_ws_server_is_told_what_it_sent() {
    guard(async {
        // A plain AMQP client's protocol header where an HTTP upgrade belongs.
        let (endpoint, server) =
            serve("amqp://127.0.0.1:{port}", Scheme::Ws, &AcceptConfig::default()).await;
        let mut c = connect(&endpoint, &ClientTlsConfig::new()).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut c, b"AMQP\x00\x01\x00\x00").await.unwrap();
        let e = server.await.unwrap().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the client sent an AMQP protocol header to a WebSocket port, not an HTTP upgrade: \
             it expects amqp://"
        );
    })
    .await
}

#[tokio::test]
async fn amqps_listener_without_a_certificate_is_a_configuration_error() {
    guard(async {
        let (endpoint, server) =
            serve("amqp://127.0.0.1:{port}", Scheme::Amqps, &AcceptConfig::default()).await;
        let _c = connect(&endpoint, &ClientTlsConfig::new()).await.unwrap();
        let e = server.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("amqps:// listener needs a TLS certificate"), "{e}");
    })
    .await
}

#[tokio::test]
async fn connection_refused_names_the_endpoint_without_the_password() {
    guard(async {
        let (listener, port) = listen().await;
        drop(listener);
        let endpoint: Endpoint = format!("amqp://user:hunter2@127.0.0.1:{port}").parse().unwrap();
        let e = connect(&endpoint, &ClientTlsConfig::new()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with(&format!("could not connect to amqp://user:***@127.0.0.1:{port}")));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(std::error::Error::source(&e).is_some());
    })
    .await
}

#[test]
fn bad_pem_is_a_clear_configuration_error() {
    let e = ClientTlsConfig::new().with_ca_pem(b"not a certificate").unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE block"), "{e}");
    let e = TlsServerConfig::from_pem(b"", b"").unwrap_err().to_string();
    assert!(e.contains("server certificate"), "{e}");
    let pki = pki();
    let e = TlsServerConfig::from_pem(pki.server_cert.as_bytes(), pki.client_cert.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("server key"), "{e}");
    let e = TlsServerConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("server certificate file /nonexistent/cert.pem"), "{e}");
    // No roots at all: said when the client first needs them.
    let e = ClientTlsConfig::new().without_native_roots().rustls_config().unwrap_err().to_string();
    assert!(e.contains("no trusted root certificates"), "{e}");
}

fn ws_config(path: &str, subprotocols: &[&str], tls: Option<TlsServerConfig>) -> AcceptConfig {
    AcceptConfig {
        tls,
        ws: WsServerConfig {
            path: path.into(),
            subprotocols: subprotocols.iter().map(|s| s.to_string()).collect(),
            ..WsServerConfig::default()
        },
    }
}

#[tokio::test]
async fn ws_round_trip_on_the_iot_hub_path() {
    guard(async {
        let config = ws_config("/$iothub/websocket", &["AMQPWSB10"], None);
        let (c, s) =
            pair("ws://127.0.0.1:{port}/$iothub/websocket", &ClientTlsConfig::new(), &config).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!((c.scheme(), s.scheme()), (Some(Scheme::Ws), Some(Scheme::Ws)));
        exchange(c, s, 300_000).await;
    })
    .await
}

#[tokio::test]
async fn wss_round_trip_with_a_client_certificate() {
    guard(async {
        let pki = pki();
        let server = pki.server().with_client_ca_pem(pki.ca.as_bytes(), true).unwrap();
        let config = ws_config("/", &["AMQPWSB10"], Some(server));
        let client = pki
            .client()
            .with_client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
            .unwrap();
        let (c, s) = pair("wss://localhost:{port}", &client, &config).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!((c.scheme(), s.scheme()), (Some(Scheme::Wss), Some(Scheme::Wss)));
        assert_eq!(s.peer_identity().unwrap().subject_cn.as_deref(), Some("device-1"));
        assert_eq!(c.peer_identity().unwrap().subject_cn.as_deref(), Some("localhost"));
        exchange(c, s, 300_000).await;
    })
    .await
}

#[tokio::test]
async fn configurable_subprotocols_agree() {
    guard(async {
        let tls = ClientTlsConfig::new();
        // A server speaking only `amqp`, a client asking for it.
        let config = ws_config("/", &["amqp"], None);
        let (c, s) = pair("ws://127.0.0.1:{port}/?subprotocol=amqp", &tls, &config).await;
        exchange(c.unwrap(), s.unwrap(), 10).await;
        // A server speaking both, a client asking for the default.
        let config = ws_config("/", &["amqp", "AMQPWSB10"], None);
        let (c, s) = pair("ws://127.0.0.1:{port}", &tls, &config).await;
        exchange(c.unwrap(), s.unwrap(), 10).await;
    })
    .await
}

#[tokio::test]
async fn amqp_is_offered_after_amqpwsb10_and_accepted_by_listeners() {
    guard(async {
        let tls = ClientTlsConfig::new();
        // ActiveMQ 5 knows the AMQP subprotocol only as `amqp`: a default client agrees.
        let config = ws_config("/", &["amqp"], None);
        let (c, s) = pair("ws://127.0.0.1:{port}", &tls, &config).await;
        exchange(c.unwrap(), s.unwrap(), 10).await;
        // A listener's default accepts a client that offers only `amqp`, and prefers
        // AMQPWSB10 when both are offered.
        let endpoint = Endpoint::parse_listen("ws://127.0.0.1:0/").unwrap();
        let ws = WsServerConfig::for_endpoint(&endpoint);
        assert_eq!(ws.subprotocols, ["AMQPWSB10", "amqp"]);
        let config = AcceptConfig { tls: None, ws };
        let (c, s) = pair("ws://127.0.0.1:{port}/?subprotocol=amqp", &tls, &config).await;
        exchange(c.unwrap(), s.unwrap(), 10).await;
    })
    .await
}

#[tokio::test]
async fn wrong_subprotocol_is_refused_on_both_sides() {
    guard(async {
        let config = ws_config("/", &["AMQPWSB10"], None);
        let (c, s) =
            pair("ws://127.0.0.1:{port}/?subprotocol=amqp", &ClientTlsConfig::new(), &config).await;
        let e = s.unwrap_err();
        assert!(matches!(e, TransportError::SubprotocolRefused { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "WebSocket: no common subprotocol: the client offered amqp, this server speaks AMQPWSB10"
        );
        let e = c.unwrap_err();
        assert!(matches!(e, TransportError::WsRefused { status: 400, .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("subprotocol amqp (HTTP 400)"), "{text}");
        assert!(text.contains("this server speaks AMQPWSB10"), "the server's reason: {text}");
    })
    .await
}

#[tokio::test]
async fn a_server_that_ignores_the_subprotocol_is_refused_by_the_client() {
    guard(async {
        let (listener, port) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // A WebSocket server that knows no subprotocol and agrees to none.
            tokio_tungstenite::accept_async(tcp).await
        });
        let endpoint: Endpoint = format!("ws://127.0.0.1:{port}").parse().unwrap();
        let e = connect(&endpoint, &ClientTlsConfig::new()).await.unwrap_err();
        assert!(matches!(e, TransportError::SubprotocolNotAgreed { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "WebSocket: the client asked for subprotocol AMQPWSB10 or amqp, the server answered with none"
        );
        let _ = server.await;
    })
    .await
}

#[tokio::test]
async fn wrong_path_is_refused_with_404() {
    guard(async {
        let config = ws_config("/$iothub/websocket", &["AMQPWSB10"], None);
        let (c, s) = pair("ws://127.0.0.1:{port}/other", &ClientTlsConfig::new(), &config).await;
        let e = s.unwrap_err();
        assert_eq!(
            e.to_string(),
            "WebSocket: the client asked for path \"/other\", this listener serves \
             \"/$iothub/websocket\""
        );
        let e = c.unwrap_err();
        assert!(matches!(e, TransportError::WsRefused { status: 404, .. }), "{e:?}");
        assert!(e.to_string().contains("path \"/other\""), "{e}");
    })
    .await
}

/// A raw WebSocket server (tungstenite alone) that agrees to AMQPWSB10, to see messages.
// tungstenite's callback type returns its (large) error response unboxed.
#[allow(clippy::result_large_err)]
async fn raw_ws<S>(stream: S) -> WebSocketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let agree = |request: &Request, mut response: Response| {
        let asked = request.headers().get("Sec-WebSocket-Protocol").cloned();
        assert_eq!(asked, Some(HeaderValue::from_static("AMQPWSB10, amqp")));
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("AMQPWSB10"));
        Ok(response)
    };
    tokio_tungstenite::accept_hdr_async(stream, agree).await.unwrap()
}

async fn next_message<S>(raw: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    raw.next().await.expect("the WebSocket ended").unwrap()
}

/// Message boundaries are not frame boundaries, both ways.
async fn check_message_boundaries<S>(mut raw: WebSocketStream<S>, mut client: Transport)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use amqpwire::runtime::transport::WS_MESSAGE_SIZE;

    // Several writes, one flush: one binary message.
    client.write_all(b"AMQP").await.unwrap();
    client.write_all(&[0, 1, 0, 0]).await.unwrap();
    client.write_all(b"frame").await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(next_message(&mut raw).await, Message::binary(&b"AMQP\x00\x01\x00\x00frame"[..]));

    // A large write is cut into messages of at most WS_MESSAGE_SIZE.
    let big = pattern(200_000, 7);
    client.write_all(&big).await.unwrap();
    client.flush().await.unwrap();
    let mut got = Vec::new();
    let mut messages = 0;
    while got.len() < big.len() {
        let Message::Binary(b) = next_message(&mut raw).await else { panic!("not binary") };
        assert!(b.len() <= WS_MESSAGE_SIZE);
        got.extend_from_slice(&b);
        messages += 1;
    }
    assert!(got == big && messages >= 4, "{messages} messages");

    // The server side: a header a byte per message, an empty message, a ping, then two
    // frames in one message.
    let header = ProtocolHeader::AMQP.to_bytes();
    for b in header {
        raw.send(Message::binary(vec![b])).await.unwrap();
    }
    raw.send(Message::binary(Vec::new())).await.unwrap();
    raw.send(Message::Ping(b"p"[..].into())).await.unwrap();
    let two_frames = [&[0, 0, 0, 8, 2, 0, 0, 0][..], &[0, 0, 0, 8, 2, 0, 0, 1]].concat();
    raw.send(Message::binary(two_frames.clone())).await.unwrap();
    let mut read = vec![0u8; 8 + 16];
    client.read_exact(&mut read).await.unwrap();
    assert_eq!(&read[..8], &header);
    assert_eq!(&read[8..], &two_frames[..]);

    // The ping was answered (with the next write at the latest).
    client.write_all(b"after").await.unwrap();
    client.flush().await.unwrap();
    let (mut pong, mut after) = (false, false);
    while !(pong && after) {
        match next_message(&mut raw).await {
            Message::Pong(p) => pong = &p[..] == b"p",
            Message::Binary(b) => after = &b[..] == b"after",
            other => panic!("unexpected {other:?}"),
        }
    }

    // A text message is an error; a close frame is the end of the stream.
    raw.send(Message::text("hello")).await.unwrap();
    let e = client.read(&mut read).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("text message"), "{e}");
    raw.close(None).await.unwrap();
    assert_eq!(client.read(&mut read).await.unwrap(), 0);
    assert_eq!(client.read(&mut read).await.unwrap(), 0, "still the end");
    // The client answered the close frame without waiting for its own shutdown.
    assert!(matches!(raw.next().await, Some(Ok(Message::Close(_)))), "no close reply");
}

#[tokio::test]
async fn ws_message_boundaries_are_not_frame_boundaries() {
    guard(async {
        let (listener, port) = listen().await;
        let endpoint: Endpoint = format!("ws://127.0.0.1:{port}").parse().unwrap();
        let tls = ClientTlsConfig::new();
        let (client, raw) = tokio::join!(connect(&endpoint, &tls), async {
            raw_ws(listener.accept().await.unwrap().0).await
        });
        check_message_boundaries(raw, client.unwrap()).await;
    })
    .await
}

#[tokio::test]
async fn wss_message_boundaries_are_not_frame_boundaries() {
    guard(async {
        let pki = pki();
        let server = pki.server();
        let (listener, port) = listen().await;
        let endpoint: Endpoint = format!("wss://localhost:{port}").parse().unwrap();
        let tls = pki.client();
        let (client, raw) = tokio::join!(connect(&endpoint, &tls), async {
            let tcp: TcpStream = listener.accept().await.unwrap().0;
            raw_ws(server.acceptor().accept(tcp).await.unwrap()).await
        });
        check_message_boundaries(raw, client.unwrap()).await;
    })
    .await
}

#[tokio::test]
async fn a_ws_message_larger_than_the_listener_takes_ends_the_connection_at_its_header() {
    // A client that claims a 5 MiB message (past the default 4 MiB) is refused as soon as
    // the frame's header says so: the server does not wait for, or hold, its payload.
    guard(async {
        let (listener, port) = listen().await;
        let config = ws_config("/", &["AMQPWSB10"], None);
        let endpoint = Endpoint::new(Scheme::Ws, "127.0.0.1", port);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut t = accept(tcp, &endpoint, &config).await.expect("handshake");
            let mut buf = [0u8; 64];
            t.read(&mut buf).await
        });
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "the upgrade's answer");
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        // A binary frame, masked, with a 64-bit length of 5 MiB, and none of its payload.
        let mut frame = vec![0x82, 0xff];
        frame.extend_from_slice(&(5u64 << 20).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        tcp.write_all(&frame).await.unwrap();
        let read = server.await.unwrap();
        let e = read.expect_err("refused");
        assert!(e.to_string().to_lowercase().contains("too"), "{e}");
        // The default listens for 4 MiB, and a listener can be given more.
        assert_eq!(WsServerConfig::default().max_message_size, 4 << 20);
    })
    .await
}

#[tokio::test]
async fn four_mib_through_every_transport() {
    guard(async {
        let pki = pki();
        let config = ws_config("/", &["AMQPWSB10"], Some(pki.server()));
        for url in [
            "amqp://localhost:{port}",
            "amqps://localhost:{port}",
            "ws://localhost:{port}",
            "wss://localhost:{port}",
        ] {
            let (c, s) = pair(url, &pki.client(), &config).await;
            exchange(c.unwrap(), s.unwrap(), 4 << 20).await;
        }
    })
    .await
}

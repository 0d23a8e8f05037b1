//! The relay: every pair of transports, byte-exact in both directions (what the client
//! wrote is what the server read, and what the tap saw), malformed bytes relayed as they
//! are, closes passed on and reported, and the upstream reached at an address given apart
//! from its name.

#[path = "support/pki.rs"]
mod pki;
#[path = "support/tap.rs"]
mod tap;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqpwire::broker::{listen_options, Broker};
use amqpwire::connection::{Direction, TraceRecord};
use amqpwire::message::Message;
use amqpwire::proxy::{Proxy, ProxyOptions, Tap};
use amqpwire::runtime::transport::{Endpoint, Scheme};
use amqpwire::runtime::{ConnectOptions, Connection, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The bytes of each direction an engine traced.
#[derive(Clone, Default)]
struct Wire {
    incoming: Arc<Mutex<Vec<u8>>>,
    outgoing: Arc<Mutex<Vec<u8>>>,
}

impl Wire {
    fn record(&self, r: &TraceRecord<'_>) {
        let buf = match r.direction {
            Direction::In => &self.incoming,
            Direction::Out => &self.outgoing,
        };
        buf.lock().unwrap().extend_from_slice(r.raw);
    }
}

fn url(scheme: Scheme, port: u16) -> String {
    match scheme {
        Scheme::Amqp => format!("amqp://localhost:{port}"),
        Scheme::Amqps => format!("amqps://localhost:{port}"),
        Scheme::Ws => format!("ws://localhost:{port}/ws-path"),
        Scheme::Wss => format!("wss://localhost:{port}/wss-path"),
    }
}

const SCHEMES: [Scheme; 4] = [Scheme::Amqp, Scheme::Amqps, Scheme::Ws, Scheme::Wss];

/// A broker listening on `scheme`, tracing what it reads and writes.
async fn broker(scheme: Scheme, pki: &pki::Pki) -> (String, Wire) {
    let wire = Wire::default();
    let w = wire.clone();
    let trace: amqpwire::runtime::SharedTrace = Arc::new(move |_, r| w.record(r));
    let options = listen_options(&[], scheme.is_tls().then(|| pki.server()), Some(trace));
    let listener = Listener::bind(&url(scheme, 0).replace("localhost", "127.0.0.1"), options)
        .await
        .expect("broker listens");
    let port = listener.endpoint().port;
    tokio::spawn(async move { Broker::new().serve(listener).await });
    (url(scheme, port), wire)
}

/// A proxy from `listen` to `upstream`, with `tap`.
async fn proxy(
    listen: Scheme,
    upstream: &str,
    pki: &pki::Pki,
    tap: Arc<dyn Tap>,
    connect_to: Option<String>,
) -> String {
    let listen_url = url(listen, 0).replace("localhost", "127.0.0.1");
    let endpoint = Endpoint::parse_listen(&listen_url).expect("listen URL");
    let mut options = ProxyOptions::new(
        &endpoint,
        upstream.parse().expect("upstream URL"),
        listen.is_tls().then(|| pki.server()),
    );
    options.tls = pki.client();
    options.connect_to = connect_to;
    let proxy = Proxy::bind(&listen_url, options, tap).await.expect("proxy listens");
    let port = proxy.endpoint().port;
    tokio::spawn(async move { proxy.run().await });
    url(listen, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_pair_relays_byte_for_byte() {
    let pki = pki::pki();
    for upstream_scheme in SCHEMES {
        let (upstream, server_wire) = broker(upstream_scheme, &pki).await;
        for listen in SCHEMES {
            let what = format!("{listen} to {upstream_scheme}");
            let tap = Arc::new(tap::Recorder::default());
            let front = proxy(listen, &upstream, &pki, tap.clone(), None).await;
            server_wire.incoming.lock().unwrap().clear();
            server_wire.outgoing.lock().unwrap().clear();
            let client_wire = Wire::default();
            let w = client_wire.clone();
            let options = ConnectOptions {
                tls: pki.client(),
                trace: Some(Box::new(move |r| w.record(r))),
                ..ConnectOptions::default()
            };
            let endpoint: Endpoint = front.parse().expect("front URL");
            let conn =
                within(&what, Connection::connect_with(&endpoint, options)).await.expect(&what);
            let session = conn.begin_session().await.expect("session");
            let sender = session.sender("s", "relayed").await.expect("sender");
            let big = Message::with_data(vec![7u8; 200_000]);
            within(&what, sender.send(&big)).await.expect("sent");
            let rx = session.receiver("r", "relayed", 10).await.expect("receiver");
            let d = within(&what, rx.recv()).await.expect("delivery");
            assert_eq!(d.message().expect("message"), big, "{what}");
            rx.accept(&d).expect("accept");
            within(&what, conn.close(None)).await.expect("close");
            within(&what, tap.finished.notified()).await;
            // What the client wrote is what the server read, and what the tap saw.
            let sent = client_wire.outgoing.lock().unwrap().clone();
            let got = server_wire.incoming.lock().unwrap().clone();
            assert!(sent.len() > 200_000, "{what}");
            assert_eq!(got, sent, "{what}: client to server");
            assert_eq!(*tap.c2s.lock().unwrap(), sent, "{what}: the tap, client to server");
            let answered = server_wire.outgoing.lock().unwrap().clone();
            assert_eq!(*client_wire.incoming.lock().unwrap(), answered, "{what}: server to client");
            assert_eq!(*tap.s2c.lock().unwrap(), answered, "{what}: the tap, server to client");
            let events = tap.events.lock().unwrap().clone();
            assert!(events.iter().any(|e| e.contains("Relaying")), "{what}: {events:?}");
            assert_eq!(events.last().map(String::as_str), Some("c1 finished"), "{what}");
        }
    }
}

/// A raw TCP server that records what it reads and answers with `reply`, then closes.
async fn raw_server(reply: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the client has sent its 60 bytes, then answer and close.
        while got.len() < 60 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        s.write_all(reply).await.expect("reply");
        s.shutdown().await.expect("shutdown");
        got
    });
    (port, task)
}

#[tokio::test]
async fn malformed_bytes_are_relayed_unchanged_and_a_close_is_passed_on() {
    let pki = pki::pki();
    // A protocol header, then a frame claiming 4 GiB and garbage: no parser may touch it.
    let mut hostile = b"AMQP\x00\x01\x00\x00\xff\xff\xff\xff\x02\x00\x00\x00".to_vec();
    hostile.extend((0..44u8).map(|i| i.wrapping_mul(37)));
    let (port, server) = raw_server(b"AMQP\x03\x01\x00\x00\x00\x00\x00\x05not a frame").await;
    let tap = Arc::new(tap::Recorder::default());
    let front =
        proxy(Scheme::Amqp, &format!("amqp://127.0.0.1:{port}"), &pki, tap.clone(), None).await;
    let port = front.rsplit(':').next().expect("port").parse::<u16>().expect("port");
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    client.write_all(&hostile).await.expect("write");
    let mut answer = Vec::new();
    within("answer", client.read_to_end(&mut answer)).await.expect("read");
    assert_eq!(within("server", server).await.expect("server"), hostile);
    assert_eq!(answer, b"AMQP\x03\x01\x00\x00\x00\x00\x00\x05not a frame");
    within("finished", tap.finished.notified()).await;
    let events = tap.events.lock().unwrap().clone();
    assert!(events.contains(&"c1 closed by server".to_owned()), "{events:?}");
}

#[tokio::test]
async fn a_tap_that_stops_a_connection_closes_both_sides() {
    let pki = pki::pki();
    let (port, server) = raw_server(b"never sent").await;
    let tap = Arc::new(tap::Recorder { stop_after: Some(8), ..tap::Recorder::default() });
    let front =
        proxy(Scheme::Amqp, &format!("amqp://127.0.0.1:{port}"), &pki, tap.clone(), None).await;
    let port = front.rsplit(':').next().expect("port").parse::<u16>().expect("port");
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    client.write_all(b"AMQP\x00\x01\x00\x00 and more").await.expect("write");
    let mut answer = Vec::new();
    let _ = within("closed", client.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "nothing relayed back: {answer:?}");
    // The server saw nothing of the stopped bytes and its connection was closed.
    assert_eq!(within("server", server).await.expect("server"), b"");
    within("finished", tap.finished.notified()).await;
    let events = tap.events.lock().unwrap().clone();
    assert!(events.iter().any(|e| e.contains("Stopped") && e.contains("enough")), "{events:?}");
}

#[tokio::test]
async fn the_upstream_is_reached_at_an_address_given_apart_from_its_name() {
    let pki = pki::pki();
    let (upstream, _) = broker(Scheme::Amqps, &pki).await;
    let port = upstream.rsplit(':').next().expect("port").to_owned();
    // The name (localhost, which the certificate covers) is kept for TLS; the TCP connection
    // goes to the address. Port 1 in the URL would fail if it were used.
    let tap = Arc::new(tap::Recorder::default());
    let front = proxy(
        Scheme::Amqp,
        "amqps://localhost:1",
        &pki,
        tap.clone(),
        Some(format!("127.0.0.1:{port}")),
    )
    .await;
    let conn = within("connect", Connection::connect(&front)).await.expect("connect");
    within("close", conn.close(None)).await.expect("close");
    // Without the address, the upstream is unreachable and the client is let go.
    let tap = Arc::new(tap::Recorder::default());
    let front = proxy(Scheme::Amqp, "amqps://localhost:1", &pki, tap.clone(), None).await;
    let err = within("refused", Connection::connect(&front)).await.expect_err("no upstream");
    assert!(!err.to_string().is_empty());
    within("finished", tap.finished.notified()).await;
    let events = tap.events.lock().unwrap().clone();
    assert!(events.iter().any(|e| e.contains("UpstreamFailed")), "{events:?}");
}

//! TLS captures decrypted with a key log: a real amqpwire client and broker talk AMQP over
//! TLS and over WebSocket in TLS through a relay that records every byte it passes as a
//! pcapng capture, with the client writing its secrets to `SSLKEYLOGFILE`; `amqpwire decode
//! --keylog` then shows the AMQP inside, and without the key log says what it needs.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use amqpwire::capture::{ConnectionInfo, Direction, PcapWriter, WriterOptions};

type Capture = Arc<Mutex<PcapWriter<Vec<u8>>>>;

/// Relays one connection from a listener to `upstream`, writing every chunk to each
/// capture in the order the relay passes it; returns the listener's port and the thread.
fn relay(upstream: u16, captures: Vec<Capture>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        let (client, _) = listener.accept().expect("accept");
        let server = TcpStream::connect(("127.0.0.1", upstream)).expect("connect");
        for capture in &captures {
            let mut w = capture.lock().expect("capture");
            w.open(1, &ConnectionInfo::default(), SystemTime::now()).expect("open");
        }
        let pump = |mut from: TcpStream, mut to: TcpStream, dir: Direction, caps: Vec<Capture>| {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // Recorded before it is passed on: the capture's order is the wire's.
                    for cap in &caps {
                        let mut w = cap.lock().expect("capture");
                        w.write(1, dir, &buf[..n], SystemTime::now()).expect("write");
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let a = pump(
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
            Direction::ClientToServer,
            captures.clone(),
        );
        let b = pump(server, client, Direction::ServerToClient, captures.clone());
        let _ = a.join();
        let _ = b.join();
        for capture in &captures {
            capture.lock().expect("capture").close_all(SystemTime::now()).expect("close");
        }
    });
    (port, t)
}

#[test]
fn amqp_and_websocket_in_tls_decrypt_with_the_client_key_log() {
    let scratch = peers::Scratch::new("capture-tls", "keylog");
    if let Some(keep) = std::env::var_os("KEEP_CAPTURE_TLS") {
        let _ = std::fs::create_dir_all(&keep);
    }
    let pki = pki::pki();
    let (ca, cert, key) =
        (scratch.path("ca.pem"), scratch.path("cert.pem"), scratch.path("key.pem"));
    std::fs::write(&ca, &pki.ca).expect("ca");
    std::fs::write(&cert, &pki.server_cert).expect("cert");
    std::fs::write(&key, &pki.server_key).expect("key");
    for (scheme, inside) in [("amqps", "AMQP"), ("wss", "WebSocket")] {
        let mut serve = cli::bin();
        serve.args(["serve", "--listen", &format!("{scheme}://127.0.0.1:0")]);
        serve.arg("--cert").arg(&cert).arg("--key").arg(&key);
        let broker =
            cli::Running::start(serve, |l| l.iter().any(|l| l.starts_with("listening on")));
        let port: u16 = broker.lines[0]
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .expect("port");
        let capture: Capture = Arc::new(Mutex::new(
            PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer"),
        ));
        // The same bytes as a server on a port of its own, which only the key log says is
        // worth decrypting.
        let options = WriterOptions { server_port: 15671, ..WriterOptions::default() };
        let odd: Capture =
            Arc::new(Mutex::new(PcapWriter::new(Vec::new(), options).expect("writer")));
        let (relay_port, relay_thread) = relay(port, vec![capture.clone(), odd.clone()]);
        let keys = scratch.path(&format!("{scheme}-keys.log"));
        let out = cli::bin()
            .args(["send", &format!("{scheme}://localhost:{relay_port}/"), "--to", "q"])
            .args(["--body", "sealed in TLS", "--count", "2"])
            .arg("--ca")
            .arg(&ca)
            .env("SSLKEYLOGFILE", &keys)
            .output()
            .expect("send");
        assert!(out.status.success(), "{scheme}: {}", cli::text(&out.stderr));
        relay_thread.join().expect("relay");
        let bytes = capture.lock().expect("capture").get_ref().clone();
        let pcap = scratch.path(&format!("{scheme}.pcapng"));
        std::fs::write(&pcap, &bytes).expect("pcap");
        if let Some(keep) = std::env::var_os("KEEP_CAPTURE_TLS") {
            let keep = std::path::Path::new(&keep);
            std::fs::write(keep.join(format!("{scheme}.pcapng")), &bytes).expect("keep");
            std::fs::copy(&keys, keep.join(format!("{scheme}-keys.log"))).expect("keep");
        }
        let log = std::fs::read_to_string(&keys).expect("the client wrote its secrets");
        assert!(log.contains("CLIENT_TRAFFIC_SECRET_0"), "{log}");

        // With the key log: every frame, both ways, and the messages.
        let out = cli::bin()
            .arg("decode")
            .arg(&pcap)
            .arg("--keylog")
            .arg(&keys)
            .arg("--json")
            .output()
            .expect("decode");
        let text = cli::text(&out.stdout);
        assert!(out.status.success(), "{scheme}: {text}\n{}", cli::text(&out.stderr));
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        let count = |p: &str| lines.iter().filter(|l| l["performative"] == p).count();
        assert_eq!(count("open"), 2, "{scheme}: {text}");
        assert_eq!(count("transfer"), 2, "{scheme}: {text}");
        assert_eq!(count("close"), 2, "{scheme}: {text}");
        assert!(text.contains(&format!("TLS decrypted: {inside} inside")), "{text}");
        assert!(text.contains("TLS 1.3, cipher suite 0x13"), "{text}");
        assert!(!lines.iter().any(|l| l["kind"] == "error"), "{scheme}: {text}");
        let bodies = text.matches(&crate_hex(b"sealed in TLS")).count()
            + text.matches("sealed in TLS").count();
        assert!(bodies >= 2, "{scheme}: the bodies: {text}");

        // Wireshark, decrypting with the same key log, sees the same performatives in the
        // same order (for AMQP in TLS: its dissector has no AMQP-over-WebSocket).
        if scheme == "amqps" {
            let ours: Vec<u64> = lines
                .iter()
                .filter_map(|l| l["performative"].as_str())
                .filter_map(|p| {
                    [
                        "open",
                        "begin",
                        "attach",
                        "flow",
                        "transfer",
                        "disposition",
                        "detach",
                        "end",
                        "close",
                    ]
                    .iter()
                    .position(|n| *n == p)
                    .map(|i| 0x10 + i as u64)
                })
                .collect();
            assert_eq!(tshark_performatives(&pcap, &keys), ours, "{text}");
        }

        // On another port: decrypted the same, since the key log holds the session.
        let odd_pcap = scratch.path(&format!("{scheme}-15671.pcapng"));
        std::fs::write(&odd_pcap, odd.lock().expect("capture").get_ref()).expect("pcap");
        let out = cli::bin()
            .arg("decode")
            .arg(&odd_pcap)
            .arg("--keylog")
            .arg(&keys)
            .output()
            .expect("decode");
        let odd_text = cli::text(&out.stdout);
        assert!(odd_text.contains(&format!("TLS decrypted: {inside} inside")), "{odd_text}");
        assert_eq!(odd_text.matches(": open").count(), 2, "{scheme} on 15671: {odd_text}");

        // Without it: the connection is named, and what is needed said.
        let out = cli::bin().arg("decode").arg(&pcap).output().expect("decode");
        let text = cli::text(&out.stdout);
        assert!(text.contains("give --keylog FILE"), "{scheme}: {text}");
        assert!(!text.contains("transfer"), "{scheme}: {text}");
    }
}

/// The AMQP performatives tshark decodes in a TLS capture on port 5672, in order.
fn tshark_performatives(pcap: &std::path::Path, keys: &std::path::Path) -> Vec<u64> {
    let out = std::process::Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keys.display()))
        .args(["-d", "tcp.port==5672,tls", "-d", "tls.port==5672,amqp", "-Y", "amqp"])
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
            "-e",
            "amqp.performative",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark could not be run ({e}): install it with tests/peers/install.sh")
        });
    assert!(out.status.success(), "tshark: {}", cli::text(&out.stderr));
    cli::text(&out.stdout)
        .lines()
        .flat_map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

fn crate_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A rustls client and server in memory, with a key log both write; the certificate is
/// made up for the test.
fn tls_pair() -> (
    tokio_rustls::rustls::ClientConnection,
    tokio_rustls::rustls::ServerConnection,
    Arc<Mutex<String>>,
) {
    use tokio_rustls::rustls::{self, pki_types};
    #[derive(Debug)]
    struct Keys(Arc<Mutex<String>>);
    impl rustls::KeyLog for Keys {
        fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
            let line = format!("{label} {} {}\n", crate_hex(client_random), crate_hex(secret));
            self.0.lock().expect("key log").push_str(&line);
        }
        fn will_log(&self, _: &str) -> bool {
            true
        }
    }
    let log = Arc::new(Mutex::new(String::new()));
    let keys = Arc::new(Keys(log.clone()));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let der = pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    sc.key_log = keys.clone();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.key_log = keys;
    let name = pki_types::ServerName::try_from("localhost").expect("name");
    let client = rustls::ClientConnection::new(Arc::new(cc), name).expect("client");
    let server = rustls::ServerConnection::new(Arc::new(sc)).expect("server");
    (client, server, log)
}

#[test]
fn tls_after_the_amqp_tls_header_decrypts_with_the_key_log() {
    // AMQP's own way into TLS (part 5, 5.2.1): each side sends the TLS protocol header,
    // AMQP 2 1 0 0, and TLS starts after it; the AMQP exchange runs inside. amqpwire's
    // runtime does not speak it, so the exchange is made here: two engines, their bytes
    // through rustls in memory, recorded as they would cross the wire.
    use amqpwire::connection::{Config, Connection};
    let scratch = peers::Scratch::new("capture-tls", "amqp-tls-header");
    let (mut tls_client, mut tls_server, log) = tls_pair();
    let mut client = Connection::client(Config::new("inside-client"));
    let mut server = Connection::server(Config::new("inside-server"));
    let now = std::time::Instant::now();
    let at = SystemTime::now();
    let mut capture = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    capture.open(1, &ConnectionInfo::default(), at).expect("open");
    let header = b"AMQP\x02\x01\x00\x00";
    capture.write(1, Direction::ClientToServer, header, at).expect("write");
    capture.write(1, Direction::ServerToClient, header, at).expect("write");
    client.begin().expect("begin");
    let mut closed = false;
    for _ in 0..50 {
        let mut plain = Vec::new();
        client.poll_transmit(&mut plain);
        tls_client.writer().write_all(&plain).expect("client writes");
        let mut wire = Vec::new();
        while tls_client.wants_write() {
            tls_client.write_tls(&mut wire).expect("client TLS");
        }
        if !wire.is_empty() {
            capture.write(1, Direction::ClientToServer, &wire, at).expect("write");
            tls_server.read_tls(&mut &wire[..]).expect("server reads");
            tls_server.process_new_packets().expect("server TLS");
        }
        let mut got = Vec::new();
        let _ = tls_server.reader().read_to_end(&mut got);
        server.handle_input(&got, now);
        while server.poll_event().is_some() {}
        let mut plain = Vec::new();
        server.poll_transmit(&mut plain);
        tls_server.writer().write_all(&plain).expect("server writes");
        let mut wire = Vec::new();
        while tls_server.wants_write() {
            tls_server.write_tls(&mut wire).expect("server TLS");
        }
        if !wire.is_empty() {
            capture.write(1, Direction::ServerToClient, &wire, at).expect("write");
            tls_client.read_tls(&mut &wire[..]).expect("client reads");
            tls_client.process_new_packets().expect("client TLS");
        }
        let mut got = Vec::new();
        let _ = tls_client.reader().read_to_end(&mut got);
        client.handle_input(&got, now);
        while let Some(e) = client.poll_event() {
            if matches!(e, amqpwire::connection::Event::SessionBegun { .. }) && !closed {
                closed = true;
                client.close(None).expect("close");
            }
        }
        if client.is_ended() && server.is_ended() {
            break;
        }
    }
    assert!(client.is_ended() && server.is_ended(), "the exchange ran to its close");
    let pcap = scratch.path("amqp-tls-header.pcapng");
    std::fs::write(&pcap, capture.get_ref()).expect("pcap");
    let keys = scratch.path("amqp-tls-header-keys.log");
    std::fs::write(&keys, log.lock().expect("key log").as_bytes()).expect("keys");

    let out = cli::bin().arg("decode").arg(&pcap).arg("--keylog").arg(&keys).arg("--json").output();
    let out = out.expect("decode");
    let text = cli::text(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", cli::text(&out.stderr));
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let count = |p: &str| lines.iter().filter(|l| l["performative"] == p).count();
    assert_eq!((count("open"), count("begin"), count("close")), (2, 2, 2), "{text}");
    let tls_headers = lines.iter().filter(|l| l["protocol_id"] == 2).count();
    assert_eq!(tls_headers, 2, "the TLS headers, both ways: {text}");
    assert!(text.contains("TLS decrypted: AMQP inside"), "{text}");
    assert!(text.contains("inside-server"), "the server's open, decrypted: {text}");
    assert!(!lines.iter().any(|l| l["kind"] == "error"), "{text}");

    // Without the key log: the headers, and what is needed to go further.
    let out = cli::bin().arg("decode").arg(&pcap).output().expect("decode");
    let text = cli::text(&out.stdout);
    assert!(text.contains("give --keylog FILE"), "{text}");
    assert!(!text.contains("inside-server"), "{text}");
}

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

/// Relays one connection from a listener to `upstream`, writing every chunk to the
/// capture in the order the relay passes it; returns the listener's port and the thread.
fn relay(upstream: u16, capture: Capture) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        let (client, _) = listener.accept().expect("accept");
        let server = TcpStream::connect(("127.0.0.1", upstream)).expect("connect");
        capture
            .lock()
            .expect("capture")
            .open(1, &ConnectionInfo::default(), SystemTime::now())
            .expect("open");
        let pump = |mut from: TcpStream, mut to: TcpStream, dir: Direction, cap: Capture| {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // Recorded before it is passed on: the capture's order is the wire's.
                    cap.lock()
                        .expect("capture")
                        .write(1, dir, &buf[..n], SystemTime::now())
                        .expect("write");
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
            capture.clone(),
        );
        let b = pump(server, client, Direction::ServerToClient, capture.clone());
        let _ = a.join();
        let _ = b.join();
        capture.lock().expect("capture").close_all(SystemTime::now()).expect("close");
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
        let (relay_port, relay_thread) = relay(port, capture.clone());
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

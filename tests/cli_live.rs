//! The networked commands of the `amqpwire` binary: `serve` started as a process, `send`
//! and `receive` against it over TCP and WebSocket, `--trace` and `--trace-json`, a
//! refused password, and `demo`.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;

use cli::{bin, run, text, Running};

/// `amqpwire serve` on free loopback ports; killed when dropped.
/// How long a test waits for an event that comes in milliseconds (a frame, a close, a
/// trace line) before it fails instead of hanging: a guard against a hang when something
/// is broken, never a verdict, so far beyond any delay a loaded machine adds.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(300);

struct Server {
    _running: Running,
    urls: Vec<String>,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut args =
            vec!["serve", "--listen", "amqp://127.0.0.1:0", "--listen", "ws://127.0.0.1:0/"];
        args.extend_from_slice(extra);
        Self::with_args(&args, 2)
    }

    /// `amqpwire` with `args`, once it has printed `listening on` `listeners` times.
    fn with_args(args: &[&str], listeners: usize) -> Self {
        let mut cmd = bin();
        cmd.args(args);
        let running = Running::start(cmd, |lines| lines.len() == listeners);
        let urls = running
            .lines
            .iter()
            .map(|l| l.strip_prefix("listening on ").expect("`listening on URL`").to_owned())
            .collect();
        Self { _running: running, urls }
    }
}

#[test]
fn send_and_receive_through_the_broker_over_tcp_and_websocket() {
    let server = Server::start(&[]);
    let (tcp, ws) = (&server.urls[0], &server.urls[1]);
    assert!(
        tcp.starts_with("amqp://127.0.0.1:") && ws.starts_with("ws://127.0.0.1:"),
        "{tcp} {ws}"
    );
    let o =
        run(&["send", tcp, "--to", "orders", "--body", "hi", "--count", "3", "--property", "k=v"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("sent 3 messages") && err.contains("accepted 3"), "{err}");
    assert!(o.stdout.is_empty(), "send prints nothing on stdout");

    let o = run(&["receive", ws, "--from", "orders", "--count", "3", "--json", "--timeout", "10"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<serde_json::Value> =
        text(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["message"]["body"]["content"][0]["text"], "hi", "{l}");
        assert_eq!(l["message"]["application-properties"]["k"], "v", "{l}");
        // The receiver does not know how many frames a message came in, so says nothing.
        assert!(l["message"].get("frames").is_none(), "{l}");
    }
    assert!(text(&o.stderr).contains("received 3 messages"));

    // The queue is empty now: a receive for one more times out with status 1.
    let o = run(&["receive", tcp, "--from", "orders", "--count", "1", "--timeout", "0.5"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("timed out after 0 of 1"), "{}", text(&o.stderr));
}

#[test]
fn serve_announces_itself_and_the_frame_size_channels_and_idle_time_out_asked_for() {
    let server = Server::with_args(
        &[
            "serve",
            "--listen",
            "amqp://127.0.0.1:0",
            "--max-frame-size",
            "4096",
            "--channel-max",
            "7",
            "--idle-timeout",
            "2",
        ],
        1,
    );
    let o = run(&["send", &server.urls[0], "--to", "q", "--body", "x", "--trace"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The broker's open: the second open in the trace, the one that came in.
    let records: Vec<&str> = err.split("\n[").collect();
    let theirs = records
        .iter()
        .find(|r| r.lines().next().is_some_and(|l| l.ends_with("<- in")) && r.contains(": open\n"))
        .expect("the broker's open");
    for want in [
        "max-frame-size: 4096",
        "channel-max: 7",
        "idle-time-out: 2000",
        ":product: \"amqpwire\"",
        ":version: \"",
    ] {
        assert!(theirs.contains(want), "{want} in\n{theirs}");
    }
    let o = run(&["serve", "--listen", "amqp://127.0.0.1:0", "--max-frame-size", "100"]);
    assert!(!o.status.success(), "a max-frame-size below 512 is refused");
}

/// From a `--trace` of one receiving link: the delivery-count and link-credit of each
/// flow sent, how many transfers came in, and whether a delivery was released.
fn receiving_flows(trace: &str) -> (Vec<(u32, u32)>, usize, bool) {
    let field = |r: &str, name: &str| {
        r.lines()
            .find_map(|l| l.split(&format!("{name}: ")).nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or("").parse::<u32>().expect("a number"))
    };
    let records: Vec<&str> = trace.split("\n[").collect();
    let sent = |r: &&str| r.lines().next().is_some_and(|l| l.ends_with("-> out"));
    let flows = records
        .iter()
        .filter(|r| sent(r) && r.contains(": flow\n"))
        .map(|r| (field(r, "delivery-count").unwrap_or(0), field(r, "link-credit").unwrap_or(0)))
        .collect();
    let transfers = records.iter().filter(|r| !sent(r) && r.contains(": transfer\n")).count();
    let released = records.iter().any(|r| sent(r) && r.contains("state: released"));
    (flows, transfers, released)
}

#[test]
fn receive_count_grants_no_more_credit_than_messages_still_wanted() {
    // Credit is granted against the deliveries that arrived, not those written out: the
    // broker has many more messages than wanted, and sends them as fast as credit allows.
    let server = Server::start(&[]);
    let url = &server.urls[0];
    let o = run(&["send", url, "--to", "few", "--body", "m", "--count", "40"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for (count, credit, lines) in
        [("2", "100", "m\nm\n"), ("3", "2", "m\nm\nm\n"), ("5", "100", "")]
    {
        let o = run(&[
            "receive", url, "--from", "few", "--count", count, "--credit", credit, "--trace",
        ]);
        let err = text(&o.stderr);
        assert!(o.status.success(), "{err}");
        if !lines.is_empty() {
            assert_eq!(text(&o.stdout), lines, "a window smaller than the count is topped up");
        }
        let count: u32 = count.parse().expect("count");
        // The broker starts each link's delivery-count at 0, so a flow's delivery-count
        // and link-credit add up to how many deliveries it allows in all.
        assert!(err.contains("initial-delivery-count: 0"), "{err}");
        let (flows, transfers, released) = receiving_flows(&err);
        assert!(!flows.is_empty(), "no flow in\n{err}");
        assert!(
            flows.iter().all(|(dc, c)| dc + c <= count),
            "count {count}: flows (delivery-count, link-credit) allow more: {flows:?}"
        );
        assert_eq!(transfers, count as usize, "{flows:?}");
        assert!(!released, "a delivery beyond the count came and was released");
    }
}

#[test]
fn receive_count_grants_again_for_a_delivery_the_sender_aborted() {
    // A scripted sender: of the two deliveries granted, the first is aborted. It took a
    // credit and moved the delivery-count on, but never reaches the application, so the
    // client grants one more (delivery-count 2, link-credit 1) and gets its second message
    // (before, it counted the aborted one as come, and waited out --timeout for nothing).
    let script = scratch("aborting-sender.jsonl");
    std::fs::write(
        &script,
        r#"{"sasl-server": {"anonymous": true}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"send": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "open"}}
{"send": {"performative": "open", "fields": {"container-id": "aborting-server"}}}
{"expect": {"performative": "begin"}}
{"send": {"performative": "begin", "fields": {"remote-channel": 0, "next-outgoing-id": 0, "incoming-window": 100, "outgoing-window": 100}}}
{"expect": {"performative": "attach", "fields": {"name": "$name", "handle": "$h"}}}
{"send": {"performative": "attach", "fields": {"name": "$name", "handle": 0, "role": "sender", "source": {"described": [{"ulong": 40}, ["q"]]}, "initial-delivery-count": 0}}}
{"expect": {"performative": "flow", "fields": {"link-credit": 2}}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 0, "delivery-tag": "00", "message-format": 0, "more": true}, "data": "cut"}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "aborted": true}}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 1, "delivery-tag": "01", "message-format": 0, "settled": true}, "data": "one"}}
{"expect": {"performative": "flow", "fields": {"delivery-count": 2, "link-credit": 1}}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 2, "delivery-tag": "02", "message-format": 0, "settled": true}, "data": "two"}}
{"expect": {"performative": "detach"}}
{"send": {"performative": "detach", "fields": {"handle": 0, "closed": true}}}
{"expect": {"performative": "end"}}
{"send": {"performative": "end"}}
{"expect": {"performative": "close"}}
{"send": {"performative": "close"}}
"#,
    )
    .expect("script");
    let args = ["script", "--listen", "amqp://127.0.0.1:0", script.to_str().expect("path")];
    let (child, url) = listening(&args);
    // (--timeout only guards a hang: the second message comes as soon as it is granted.)
    let o = run(&["receive", &url, "--from", "q", "--count", "2", "--timeout", "300"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "one\ntwo\n");
    let played = cli::wait_within(child, HANG_GUARD).expect("the script ended");
    assert!(played.status.success(), "{}", text(&played.stderr));
    let _ = std::fs::remove_file(&script);
}

#[test]
fn send_and_receive_in_a_transaction_commit_or_roll_back() {
    let server = Server::start(&[]);
    let url = &server.urls[0];
    let send = |body: &str, end: &str| {
        let o =
            run(&["send", url, "--to", "tx", "--body", body, "--count", "2", "--transaction", end]);
        let err = text(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("declared") && err.contains("accepted 2"), "{err}");
        err
    };
    assert!(send("dropped", "rollback").contains("rolled back"));
    assert!(send("kept", "commit").contains("committed"));
    // Received and rolled back: still there for the next receiver.
    let receive = |end: &str| {
        let o = run(&["receive", url, "--from", "tx", "--count", "2", "--transaction", end]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    assert_eq!(receive("rollback"), "kept\nkept\n");
    assert_eq!(receive("commit"), "kept\nkept\n");
    // Nothing came back: a marker sent now is the first message there.
    assert!(run(&["send", url, "--to", "tx", "--body", "marker"]).status.success());
    let o = run(&["receive", url, "--from", "tx", "--count", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "marker\n", "committed receipts consumed the messages");
    let o =
        run(&["send", url, "--to", "tx", "--body", "x", "--settled", "--transaction", "commit"]);
    assert!(!o.status.success(), "--settled and --transaction conflict");
}

#[test]
fn trace_shows_every_frame_and_trace_json_follows_the_schema() {
    let server = Server::start(&[]);
    let tcp = &server.urls[0];
    let o = run(&["send", tcp, "--to", "t", "--body", "traced", "--trace"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    for expected in [
        "-> out",
        "<- in",
        "sasl-init",
        ": open",
        ": attach",
        ": transfer",
        ": disposition",
        ": close",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in the trace:\n{err}");
    }
    let o = run(&["send", tcp, "--to", "t", "--body", "traced", "--trace-json", "-"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines: Vec<serde_json::Value> =
        text(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let perf = |dir: &str, p: &str| {
        lines
            .iter()
            .any(|l| l["direction"] == dir && l["performative"] == p && l["connection"] == 1)
    };
    assert!(perf("out", "open") && perf("in", "open"), "opens both ways");
    assert!(perf("out", "transfer") && perf("in", "disposition"));
    let transfer = lines.iter().find(|l| l["performative"] == "transfer").expect("transfer");
    assert_eq!(transfer["message"]["body"]["content"][0]["text"], "traced");
    assert!(lines.iter().all(|l| l["time"].is_number() && l["offset"].is_number()));
}

#[test]
fn a_broker_with_users_refuses_a_wrong_password_promptly() {
    let server = Server::start(&["--user", "alice:s3cret"]);
    let port = server.urls[0].rsplit(':').next().expect("port").trim_end_matches('/').to_owned();
    let bad = format!("amqp://alice:wrong@127.0.0.1:{port}");
    let o = run(&["send", &bad, "--to", "q", "--body", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("SASL"), "{err}");
    // Promptly: the line names SASL, so the refusal came from the outcome, not a time-out.
    let good = format!("amqp://alice:s3cret@127.0.0.1:{port}");
    let o = run(&["send", &good, "--to", "q", "--body", "x", "--trace"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("s3cret"), "the password is masked in the trace");
}

#[test]
fn demo_runs_a_whole_exchange_and_shows_it() {
    let capture = scratch("demo.pcapng");
    let o = run(&["demo", "--pcap", capture.to_str().expect("path")]);
    // The capture decodes as the demo's two connections, both directions.
    let decoded = text(&run(&["decode", "--json", capture.to_str().expect("path")]).stdout);
    let closes = decoded.lines().filter(|l| l.contains("\"performative\":\"close\"")).count();
    assert_eq!(closes, 4, "two connections, each closed both ways");
    // Each connection's SYN names where it went, its password masked (the WebSocket one
    // authenticates with SCRAM: the password is on no wire, and in no comment either).
    let comments: Vec<&str> =
        decoded.lines().filter(|l| l.contains("\"kind\":\"connection\"")).collect();
    assert_eq!(comments.len(), 2, "{decoded}");
    assert!(comments.iter().all(|l| l.contains("url ") && l.contains("demo:***@")), "{comments:?}");
    assert!(!comments.iter().any(|l| l.contains("demo-password")), "{comments:?}");
    let _ = std::fs::remove_file(&capture);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}\n{out}", text(&o.stderr));
    for expected in [
        "sasl-mechanisms",
        "sasl-init",
        ": open",
        ": begin",
        ": attach",
        ": flow",
        ": transfer",
        ": disposition",
        ": close",
        "received \"hello 3 from amqpwire\" and accepted it",
        "done: 3 messages",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
    assert!(!out.contains("demo-password"), "the password is masked");
}

#[test]
fn serve_over_tls_and_websocket_over_tls_with_a_certificate() {
    let pki = pki::pki();
    let dir = std::env::temp_dir().join(format!("amqpwire-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write PEM");
        p.to_string_lossy().into_owned()
    };
    let cert = write("server.pem", &pki.server_cert);
    let key = write("server.key", &pki.server_key);
    let ca = write("ca.pem", &pki.ca);
    let args = [
        "serve",
        "--listen",
        "amqps://localhost:0",
        "--listen",
        "wss://localhost:0/",
        "--cert",
        &cert,
        "--key",
        &key,
    ];
    let server = Server::with_args(&args, 2);
    for url in &server.urls {
        let o = run(&["send", url, "--to", "secure", "--body", "over TLS", "--ca", &ca]);
        assert!(o.status.success(), "{url}: {}", text(&o.stderr));
        // Without the CA the server's certificate is not trusted: one clear line, status 2.
        let o = run(&["send", url, "--to", "secure", "--body", "x"]);
        assert_eq!(o.status.code(), Some(2), "{url}");
        assert_eq!(text(&o.stderr).lines().count(), 1, "{}", text(&o.stderr));
    }
    let o = run(&["receive", &server.urls[1], "--from", "secure", "--count", "2", "--ca", &ca]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "over TLS\nover TLS\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every JSON line of a trace file.
fn trace_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the trace file");
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// A scratch file path of this test process.
fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("amqpwire-cli-live-{}-{name}", std::process::id()))
}

#[test]
fn the_proxy_relays_a_client_and_traces_both_directions() {
    let server = Server::start(&[]);
    let trace = scratch("proxy.jsonl");
    let proxy = Server::with_args(
        &[
            "proxy",
            "--listen",
            "ws://127.0.0.1:0/through",
            "--to",
            &server.urls[0],
            "--trace-json",
            trace.to_str().expect("path"),
        ],
        1,
    );
    let front = &proxy.urls[0];
    assert!(front.starts_with("ws://127.0.0.1:") && front.ends_with("/through"), "{front}");
    let o = run(&["send", front, "--to", "relayed", "--body", "over the proxy"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&["receive", &server.urls[1], "--from", "relayed", "--count", "1"]);
    assert_eq!(text(&o.stdout).trim(), "over the proxy");
    drop(proxy);
    let lines = trace_lines(&trace);
    let frames = |dir: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["kind"] == "frame" && l["direction"] == dir)
            .map(|l| l["performative"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let c2s = frames("c2s");
    let s2c = frames("s2c");
    for p in ["open", "begin", "attach", "transfer", "close"] {
        assert!(c2s.iter().any(|f| f == p), "the client's {p}: {c2s:?}");
    }
    for p in ["open", "begin", "attach", "flow", "disposition", "close"] {
        assert!(s2c.iter().any(|f| f == p), "the server's {p}: {s2c:?}");
    }
    assert!(lines.iter().all(|l| l["connection"] == 1), "one connection, numbered 1");
    let events: Vec<&str> =
        lines.iter().filter(|l| l["kind"] == "event").filter_map(|l| l["event"].as_str()).collect();
    assert!(events.iter().any(|e| e.starts_with("relaying to amqp://")), "{events:?}");
    assert!(events.iter().any(|e| e.ends_with("closed its side")), "{events:?}");
    let _ = std::fs::remove_file(&trace);
}

/// A proxy to `server` (with `extra` flags), and a raw TCP client connected to it (reads
/// time out after 20 s, so a test fails rather than hangs).
fn raw_client_through_proxy(upstream: &str, extra: &[&str]) -> (Server, std::net::TcpStream) {
    let mut args = vec!["proxy", "--listen", "amqp://127.0.0.1:0", "--to", upstream];
    args.extend_from_slice(extra);
    let proxy = Server::with_args(&args, 1);
    let port = proxy.urls[0].rsplit(':').next().expect("port").trim_end_matches('/');
    let s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
    s.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    (proxy, s)
}

/// What a raw client gets back through a proxy (with `extra` flags) after sending the AMQP
/// header and an open frame whose list claims more bytes than the frame holds.
fn through_proxy_with_a_bad_open(server: &Server, extra: &[&str]) -> Vec<u8> {
    use std::io::{Read, Write};
    let (_proxy, mut s) = raw_client_through_proxy(&server.urls[0], extra);
    let mut bad = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x10\x02\x00\x00\x00".to_vec();
    bad.extend_from_slice(b"\x00\x53\x10\xc0\x30\x01\x40\x40");
    s.write_all(&bad).expect("write");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn the_proxy_stops_a_connection_at_bytes_that_do_not_decode_with_strict_stop() {
    let server = Server::start(&[]);
    // The close performative's descriptor: the broker's answer to the bad open.
    let has_close = |b: &[u8]| b.windows(3).any(|w| w == [0x00, 0x53, 0x18]);
    // Relayed: the broker reads the bad open and closes with an error.
    let relayed = through_proxy_with_a_bad_open(&server, &[]);
    assert!(has_close(&relayed), "the broker answered the bad open: {relayed:?}");
    // Stopped: the bad open never reaches the broker, so it never answers it; the proxy
    // closes the client's connection (read_to_end returned).
    let pcap = scratch("strict-stop.pcapng");
    let pcap_arg = pcap.to_str().expect("path");
    let stopped = through_proxy_with_a_bad_open(&server, &["--strict-stop", "--pcap", pcap_arg]);
    assert!(!has_close(&stopped), "the broker never saw the bad open: {stopped:?}");
    // The capture shows what was relayed: the connection made (its handshake), the
    // protocol header (whole, before the frame at fault, which came in the same read),
    // none of the bad frame, and the relay (where the server stands) cutting it with a
    // reset.
    let packets: Vec<String> = packets_of(&pcap).iter().map(Packet::summary).collect();
    assert_eq!(packets, ["client syn 0", "server syn 0", "client  0", "client  8", "server rst 0"]);
    let _ = std::fs::remove_file(&pcap);
}

/// A proxy with `--strict-stop` (and `extra`) to a raw listener: the proxy, a raw client
/// connected through it, and the proxy's connection as the listener accepted it (reads
/// time out after the hang guard).
fn strict_stop_relay(extra: &[&str]) -> (Server, std::net::TcpStream, std::net::TcpStream) {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = format!("amqp://{}", upstream.local_addr().expect("address"));
    let mut args = vec!["--strict-stop"];
    args.extend_from_slice(extra);
    let (proxy, client) = raw_client_through_proxy(&to, &args);
    let (relayed, _) = upstream.accept().expect("the proxy connects");
    relayed.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    (proxy, client, relayed)
}

#[test]
fn strict_stop_holds_a_frame_back_until_it_has_decoded_whole() {
    // A malformed open that comes in two parts: its first 11 bytes (which decode so far)
    // used to be relayed, leaving the server with a frame cut short; now a frame is held
    // back until it is whole, and this one never reaches the server. (The upstream is a
    // raw listener that keeps what it is sent.)
    use std::io::{Read, Write};
    for trace in [&[][..], &["--trace"][..]] {
        let (proxy, mut client, mut relayed) = strict_stop_relay(trace);
        client
            .write_all(b"AMQP\x00\x01\x00\x00\x00\x00\x00\x0f\x02\x00\x00\x00\x00\x53\x10")
            .expect("write");
        // The header is whole: it is relayed at once.
        let mut got = [0u8; 8];
        relayed.read_exact(&mut got).expect("the header");
        assert_eq!(&got, b"AMQP\x00\x01\x00\x00");
        // The rest of the open: a string expected, 0xff found. The proxy stops the
        // connection, and the server got nothing of the frame.
        client.write_all(b"\xc0\x02\x01\xff").expect("write");
        let mut rest = Vec::new();
        let _ = relayed.read_to_end(&mut rest);
        assert_eq!(rest, b"", "{trace:?}: the server got part of the bad frame");
        let _ = client.read_to_end(&mut Vec::new());
        drop(proxy);
    }
}

#[test]
fn strict_stop_relays_the_whole_frames_before_the_one_at_fault() {
    // An open held back (its first part came alone), then the rest of it and a malformed
    // frame in one read: the open is whole and goes on; the malformed frame does not (the
    // open was dropped with it).
    use std::io::{Read, Write};
    let (proxy, mut client, mut relayed) = strict_stop_relay(&[]);
    let open = b"\x00\x00\x00\x11\x02\x00\x00\x00\x00\x53\x10\xc0\x04\x01\xa1\x01x";
    let bad = b"\x00\x00\x00\x0f\x02\x00\x00\x00\x00\x53\x10\xc0\x02\x01\xff";
    let mut first = b"AMQP\x00\x01\x00\x00".to_vec();
    first.extend_from_slice(&open[..10]);
    client.write_all(&first).expect("write");
    let mut header = [0u8; 8];
    relayed.read_exact(&mut header).expect("the header");
    let mut rest = open[10..].to_vec();
    rest.extend_from_slice(bad);
    client.write_all(&rest).expect("write");
    let mut got = Vec::new();
    let _ = relayed.read_to_end(&mut got);
    assert_eq!(got, open, "the open, whole, and nothing of the bad frame");
    let _ = client.read_to_end(&mut Vec::new());
    drop(proxy);
}

#[test]
fn strict_stop_holds_no_more_than_64_mib_of_one_frame() {
    // A frame header that claims 256 MiB, then its bytes: held back until whole, they would
    // have grown without bound (three times over, in the relay, the decoder and the tap)
    // while the server, which never saw the header, could not refuse it. Past 64 MiB the
    // connection is stopped, and the server got the protocol header alone. The client
    // writes 200 MiB: what the proxy does not read can never all fit in the two sockets'
    // buffers (Linux lets a receive buffer grow to tcp_rmem's maximum, 32 MiB on some
    // hosts), so the writer must see the connection stopped.
    use std::io::{Read, Write};
    let (proxy, mut client, mut relayed) = strict_stop_relay(&[]);
    let mut writer = client.try_clone().expect("clone");
    let sent = std::thread::spawn(move || {
        writer.write_all(b"AMQP\x00\x01\x00\x00\x10\x00\x00\x00\x02\x00\x00\x00")?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..200 {
            writer.write_all(&chunk)?;
        }
        Ok::<(), std::io::Error>(())
    });
    let mut got = Vec::new();
    let _ = relayed.read_to_end(&mut got);
    assert_eq!(got, b"AMQP\x00\x01\x00\x00", "the server got the header alone");
    let _ = client.read_to_end(&mut Vec::new());
    assert!(sent.join().expect("writer").is_err(), "the proxy stopped reading the client");
    drop(proxy);
}

#[test]
fn a_client_that_stops_inside_a_frame_is_shown_so_in_the_proxy_trace() {
    use std::io::{Read, Write};
    let server = Server::start(&[]);
    let trace = scratch("proxy-cut.jsonl");
    let (proxy, mut s) =
        raw_client_through_proxy(&server.urls[0], &["--trace-json", trace.to_str().expect("path")]);
    // The header, an open, then 10 bytes of a frame that says it has 100.
    let mut bytes = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x11\x02\x00\x00\x00".to_vec();
    bytes.extend_from_slice(b"\x00\x53\x10\xc0\x04\x01\xa1\x01x");
    bytes.extend_from_slice(b"\x00\x00\x00\x64\x02\x00\x00\x00\x00\x53");
    s.write_all(&bytes).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // The proxy traced the client's close before it passed it on, and the broker's answer
    // to that close came back after it.
    let _ = s.read_to_end(&mut Vec::new());
    drop(proxy);
    let lines = trace_lines(&trace);
    let cut = lines
        .iter()
        .find(|l| l["kind"] == "error" && l["direction"] == "c2s")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(cut["offset"], 25, "{cut}");
    assert_eq!(cut["fatal"], true, "{cut}");
    assert_eq!(cut["raw"], "00000064020000000053", "{cut}");
    assert!(cut["error"].as_str().is_some_and(|e| e.contains("10 bytes left over")), "{cut}");
    let _ = std::fs::remove_file(&trace);
}

#[test]
fn a_client_that_resets_its_connection_is_captured_with_a_reset() {
    use std::io::{Read, Write};
    // The upstream is the test's own: it sees the proxy close its side, which the proxy
    // does only after it has written the client's reset into the capture.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("amqp://{}", upstream.local_addr().expect("address"));
    let server = std::thread::spawn(move || {
        let (mut c, _) = upstream.accept().expect("the proxy connects");
        c.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
        c.read_exact(&mut [0u8; 8]).expect("the client's header");
        c.write_all(b"AMQP\x00\x01\x00\x00 and more").expect("answer");
        c.read_to_end(&mut Vec::new())
    });
    let pcap = scratch("proxy-reset.pcapng");
    let (proxy, mut s) = raw_client_through_proxy(&url, &["--pcap", pcap.to_str().expect("path")]);
    s.write_all(b"AMQP\x00\x01\x00\x00").expect("write");
    // The header, then more bytes waiting unread: closing a socket with bytes unread makes
    // the kernel abort the connection with a reset.
    s.read_exact(&mut [0u8; 8]).expect("the header");
    let _ = s.peek(&mut [0u8; 1]).expect("more");
    drop(s);
    let closed = server.join().expect("the upstream's thread");
    assert!(closed.is_ok(), "the proxy closed the upstream after the reset: {closed:?}");
    let o = run(&["decode", "--json", pcap.to_str().expect("path")]);
    let lines: Vec<String> = text(&o.stdout).lines().map(str::to_owned).collect();
    let end: Vec<&String> = lines.iter().filter(|l| l.contains(r#""kind":"tcp""#)).collect();
    assert_eq!(end.len(), 1, "{lines:#?}");
    assert!(
        end[0].contains(r#""event":"rst""#) && end[0].contains(r#""direction":"c2s""#),
        "{end:?}"
    );
    // The SYN's comment names the client's hop (its real address, and the proxy's where
    // it connected) and where the connection was relayed.
    let comment = lines.iter().find(|l| l.contains(r#""kind":"connection""#)).expect("SYN");
    let front = proxy_front(&proxy);
    assert!(
        comment.contains("; transport tcp; url amqp://127.0.0.1:")
            && comment.contains("; client 127.0.0.1:")
            && comment.contains(&format!("; server {front}"))
            && comment.contains(&format!("; relayed to {url}")),
        "{comment}"
    );
    let _ = std::fs::remove_file(&pcap);
}

/// `127.0.0.1:PORT` of a proxy's listener.
fn proxy_front(proxy: &Server) -> String {
    proxy.urls[0].trim_start_matches("amqp://").trim_end_matches('/').to_owned()
}

#[test]
fn a_proxy_capture_numbers_connections_as_its_trace_and_keeps_who_closed_first() {
    use std::io::{Read, Write};
    // Nothing listens upstream for the first client (its upstream fails); the second is
    // relayed to a server that answers, then closes its side first, while the client
    // still sends. The capture numbers them as the trace does (accepted 1 and 2), and its
    // FINs come in the order the sides closed, the client's bytes after the server's FIN.
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], peers::free_port()));
    let url = format!("amqp://{at}");
    let (pcap, trace) = (scratch("proxy-order.pcapng"), scratch("proxy-order.jsonl"));
    let (pcap_arg, trace_arg) = (pcap.to_str().expect("path"), trace.to_str().expect("path"));
    let proxy = Server::with_args(
        &[
            "proxy",
            "--listen",
            "amqp://127.0.0.1:0",
            "--to",
            &url,
            "--pcap",
            pcap_arg,
            "--trace-json",
            trace_arg,
        ],
        1,
    );
    let front = proxy_front(&proxy);
    let mut first = std::net::TcpStream::connect(&front).expect("connect");
    first.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    let _ = first.read_to_end(&mut Vec::new());
    let upstream = std::net::TcpListener::bind(at).expect("bind the upstream now");
    let server = std::thread::spawn(move || {
        let (mut c, _) = upstream.accept().expect("the proxy connects");
        c.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
        c.read_exact(&mut [0u8; 8]).expect("the client's header");
        c.write_all(b"AMQP\x00\x01\x00\x00").expect("answer");
        c.shutdown(std::net::Shutdown::Write).expect("close our side first");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).map(|_| rest)
    });
    let mut second = std::net::TcpStream::connect(&front).expect("connect");
    second.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    second.write_all(b"AMQP\x00\x01\x00\x00").expect("write");
    let mut answer = Vec::new();
    second.read_to_end(&mut answer).expect("the server's side ends");
    assert_eq!(answer, b"AMQP\x00\x01\x00\x00");
    second.write_all(b"late").expect("the client goes on");
    second.shutdown(std::net::Shutdown::Write).expect("close");
    let rest = server.join().expect("the upstream's thread").expect("read");
    assert_eq!(rest, b"late");
    // The upstream saw the client's end before the proxy has written it down: the trace's
    // `finished` comes after the capture ended the connection.
    let finished = |l: &serde_json::Value| l["connection"] == 2 && l["event"] == "finished";
    let until = std::time::Instant::now() + HANG_GUARD;
    while !std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .any(|l| serde_json::from_str(l).is_ok_and(|l| finished(&l)))
    {
        assert!(std::time::Instant::now() < until, "the proxy never finished connection 2");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(proxy);
    let o = run(&["decode", "--json", pcap_arg]);
    let lines: Vec<serde_json::Value> =
        text(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let comments: Vec<(u64, String)> = lines
        .iter()
        .filter(|l| l["kind"] == "connection")
        .map(|l| (l["connection"].as_u64().unwrap_or(0), l["comments"].to_string()))
        .collect();
    assert_eq!(comments.len(), 2, "{comments:?}");
    for (n, comment) in &comments {
        assert!(comment.contains(&format!("amqpwire connection {n};")), "{comments:?}");
    }
    let ends: Vec<String> = lines
        .iter()
        .filter(|l| l["connection"] == 2 && (l["kind"] == "tcp" || l["kind"] == "header"))
        .map(|l| {
            format!(
                "{} {}",
                l["kind"].as_str().unwrap_or("?"),
                l["direction"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(ends, ["header c2s", "header s2c", "tcp s2c", "tcp c2s"], "{lines:#?}");
    // The trace numbers them the same way: the first failed, the second was relayed.
    let events: Vec<(u64, String)> = trace_lines(&trace)
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| {
            (l["connection"].as_u64().unwrap_or(0), l["event"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert!(
        events.iter().any(|(n, e)| *n == 1 && e.starts_with("cannot reach the upstream")),
        "{events:?}"
    );
    assert!(events.iter().any(|(n, e)| *n == 2 && e.starts_with("relaying to")), "{events:?}");
    let _ = (std::fs::remove_file(&pcap), std::fs::remove_file(&trace));
}

#[test]
fn a_proxy_refuses_credentials_in_the_upstream_url() {
    // Bounded, so that a proxy that took them (and listened) fails the test, not hangs it.
    let o = std::process::Command::new("timeout")
        .args(["300", env!("CARGO_BIN_EXE_amqpwire"), "proxy", "--listen", "amqp://127.0.0.1:0"])
        .args(["--to", "amqp://alice:secret@127.0.0.1:1"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("would not be used") && !err.contains("secret"), "{err}");
}

#[test]
fn a_json_trace_keeps_every_frame_when_the_server_is_killed() {
    let trace = scratch("serve.jsonl");
    let server = Server::with_args(
        &["serve", "--listen", "amqp://127.0.0.1:0", "--trace-json", trace.to_str().expect("path")],
        1,
    );
    let o = run(&["send", &server.urls[0], "--to", "q", "--body", "x"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Killed without a chance to flush anything (SIGKILL): what was written is there.
    drop(server);
    let lines = trace_lines(&trace);
    let closes: Vec<_> =
        lines.iter().filter(|l| l["performative"] == "close").map(|l| &l["direction"]).collect();
    assert_eq!(closes.len(), 2, "the client's close and the broker's answer: {closes:?}");
    let _ = std::fs::remove_file(&trace);
}

#[test]
fn a_listening_port_in_use_is_said_as_such_and_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("amqp://127.0.0.1:{}", taken.local_addr().expect("addr").port());
    let script =
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/scripts/transfer-on-detached-link.jsonl");
    for args in [
        vec!["proxy", "--listen", &url, "--to", "amqp://127.0.0.1:1"],
        vec!["script", script, "--listen", &url],
        vec!["serve", "--listen", &url],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains(&format!("cannot listen on {url}")), "{args:?}: {err}");
    }
}

#[test]
fn the_text_trace_and_the_json_trace_can_be_asked_for_together() {
    let server = Server::with_args(&["serve", "--listen", "amqp://127.0.0.1:0"], 1);
    let json = scratch("both.jsonl");
    let file = json.to_str().expect("path");
    let o = run(&[
        "send",
        &server.urls[0],
        "--to",
        "q",
        "--body",
        "x",
        "--trace",
        "--trace-json",
        file,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines = trace_lines(&json);
    let opens = |dir: &str| {
        lines.iter().filter(|l| l["performative"] == "open" && l["direction"] == dir).count()
    };
    assert_eq!((opens("out"), opens("in")), (1, 1), "{lines:?}");
    let err = text(&o.stderr);
    assert!(err.contains(" c1 -> out\n") && err.contains("open"), "{err}");
    let _ = std::fs::remove_file(&json);
}

#[test]
fn connections_on_two_listeners_have_numbers_of_their_own_in_one_trace_and_capture() {
    let trace = scratch("two-listeners.jsonl");
    let capture = scratch("two-listeners.pcapng");
    let client_capture = scratch("client.pcapng");
    let server = Server::with_args(
        &[
            "serve",
            "--listen",
            "amqp://127.0.0.1:0",
            "--listen",
            "ws://127.0.0.1:0",
            "--trace-json",
            trace.to_str().expect("path"),
            "--pcap",
            capture.to_str().expect("path"),
        ],
        2,
    );
    for url in &server.urls {
        let cap = client_capture.to_str().expect("path");
        let o = run(&["send", url, "--to", "q", "--body", "x", "--pcap", cap]);
        assert!(o.status.success(), "{url}: {}", text(&o.stderr));
    }
    let urls = server.urls.clone();
    drop(server);
    // Each connection of the capture is a stream of its own, its SYN commented with the
    // listener's transport and URL; the client's capture (the last send, over WebSocket)
    // names where it went and ends with both FINs.
    let o = run(&["decode", "--json", capture.to_str().expect("path")]);
    let decoded = text(&o.stdout);
    let comments: Vec<String> = decoded
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["kind"] == "connection")
        .map(|l| l["comments"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    // … then the client's real address and the server's.
    let server_at = |url: &str| {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
        rest.split('/').next().unwrap_or_default().to_owned()
    };
    assert_eq!(comments.len(), 2, "{decoded}");
    for (i, (comment, (transport, url))) in
        comments.iter().zip([("tcp", &urls[0]), ("ws", &urls[1])]).enumerate()
    {
        let start = format!("amqpwire connection {}; transport {transport}; url {url}", i + 1);
        let (head, addresses) = comment.split_at(start.len().min(comment.len()));
        assert_eq!(head, start, "{decoded}");
        let (client, server) = addresses
            .strip_prefix("; client ")
            .and_then(|a| a.split_once("; server "))
            .unwrap_or_else(|| panic!("the addresses in {comment:?}"));
        assert!(client.starts_with("127.0.0.1:"), "{comment}");
        assert_eq!(server, server_at(url), "{comment}");
    }
    // The server, still running, ended each connection once the close exchange had passed
    // (the client's close first): a FIN each way.
    let fins = |dir: &str| {
        let lines =
            decoded.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        lines.filter(|l| l["event"] == "fin" && l["direction"] == dir).count()
    };
    assert_eq!((fins("c2s"), fins("s2c")), (2, 2), "{decoded}");
    let o = run(&["decode", client_capture.to_str().expect("path")]);
    let decoded = text(&o.stdout);
    assert_eq!(decoded.matches(" FIN after ").count(), 2, "{decoded}");
    // The client's capture names the server its URL points at.
    let o = run(&["decode", "--json", client_capture.to_str().expect("path")]);
    let to = format!("; server {}\"", server_at(&urls[1]));
    assert!(text(&o.stdout).contains(&to), "{to} in {}", text(&o.stdout));
    // … under the number its trace gives it (1; its SYN's comment said 0, decode 1).
    assert!(
        text(&o.stdout).contains("\"amqpwire connection 1; transport ws;"),
        "{}",
        text(&o.stdout)
    );
    let numbers: std::collections::BTreeSet<_> = text(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["connection"].as_u64())
        .collect();
    assert_eq!(numbers, [1].into());
    for f in [&capture, &client_capture] {
        let _ = std::fs::remove_file(f);
    }
    let lines = trace_lines(&trace);
    // Each client's open, under a number of its own: before, each listener counted from 0.
    let opens: std::collections::BTreeSet<_> = lines
        .iter()
        .filter(|l| l["performative"] == "open" && l["direction"] == "in")
        .map(|l| l["connection"].as_u64().expect("a connection number"))
        .collect();
    // (counted from 1, as proxy and decode count them)
    assert_eq!(opens, [1, 2].into(), "{lines:?}");
    let _ = std::fs::remove_file(&trace);
}

/// With SSLKEYLOGFILE set, a TLS client and a TLS server both write their session secrets
/// in the NSS key log format (what Wireshark needs to decrypt a capture).
#[test]
fn tls_session_secrets_go_to_sslkeylogfile() {
    let pki = pki::pki();
    let dir = scratch("keylog");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let (cert, key, ca) = (
        write("server.pem", &pki.server_cert),
        write("server.key", &pki.server_key),
        write("ca.pem", &pki.ca),
    );
    let server_log = dir.join("server.keys");
    let client_log = dir.join("client.keys");
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "amqps://localhost:0", "--cert", &cert, "--key", &key]);
    cmd.env("SSLKEYLOGFILE", &server_log);
    let running = Running::start(cmd, |lines| !lines.is_empty());
    let url = running.lines[0].strip_prefix("listening on ").expect("a URL").to_owned();
    let o = bin()
        .args(["send", &url, "--to", "q", "--body", "secret", "--ca", &ca])
        .env("SSLKEYLOGFILE", &client_log)
        .output()
        .expect("send");
    assert!(o.status.success(), "{}", text(&o.stderr));
    drop(running);
    for (who, path) in [("client", &client_log), ("server", &server_log)] {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        // TLS 1.3 secrets, each with the 32-byte client random in hex.
        let secrets: Vec<&str> = log.lines().filter(|l| l.contains("TRAFFIC_SECRET_0")).collect();
        assert_eq!(secrets.len(), 2, "{who}: {log}");
        assert!(secrets.iter().all(|l| l.split(' ').nth(1).is_some_and(|r| r.len() == 64)));
    }
    // The same client randoms on both sides: the same session.
    let randoms = |p: &std::path::Path| -> std::collections::BTreeSet<String> {
        let log = std::fs::read_to_string(p).unwrap_or_default();
        log.lines().filter_map(|l| l.split(' ').nth(1).map(str::to_owned)).collect()
    };
    assert_eq!(randoms(&client_log), randoms(&server_log));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn script_plays_a_client_against_serve_and_reports_the_step_that_failed() {
    let server = Server::start(&[]);
    let trace = scratch("script-trace.jsonl");
    let pcap = scratch("script.pcapng");
    let (trace_s, pcap_s) = (trace.to_str().expect("path"), pcap.to_str().expect("path"));
    let o = run(&[
        &["script", "examples/scripts/pipelined-open.jsonl", "--connect", &server.urls[0]][..],
        &["--trace-json", trace_s, "--pcap", pcap_s],
    ]
    .concat());
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    // What the script sent and what the broker answered, both ways, in the trace and in
    // the capture (the script connected: it is the client).
    let lines = trace_lines(&trace);
    let said = |dir: &str| -> Vec<String> {
        let frames = lines.iter().filter(|l| l["direction"] == dir && l["kind"] == "frame");
        frames.map(|l| l["performative"].as_str().unwrap_or("?").to_owned()).collect()
    };
    assert_eq!(said("out").first().map(String::as_str), Some("open"), "{lines:#?}");
    assert_eq!(said("in").first().map(String::as_str), Some("open"), "{lines:#?}");
    let o = run(&["decode", "--json", pcap_s]);
    let captured: Vec<serde_json::Value> =
        text(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let opens: Vec<&serde_json::Value> =
        captured.iter().filter(|l| l["performative"] == "open").map(|l| &l["direction"]).collect();
    assert_eq!(opens, ["c2s", "s2c"], "{captured:#?}");
    let _ = (std::fs::remove_file(&trace), std::fs::remove_file(&pcap));
    // A step that does not hold: status 1, the step and what came on stdout.
    let bad = scratch("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"send\": {\"kind\": \"header\", \"protocol_id\": 0}}\n{\"expect\": {\"kind\": \"header\", \"protocol_id\": 3}}\n",
    )
    .expect("write");
    let o = run(&["script", bad.to_str().expect("path"), "--connect", &server.urls[0]]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(out.starts_with("step 2: expected") && out.contains("protocol header AMQP 0"), "{out}");
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn record_writes_a_script_that_replays_against_a_fresh_broker() {
    let recorded = scratch("served.jsonl");
    let client_side = scratch("sent.jsonl");
    let server = Server::with_args(
        &["serve", "--listen", "amqp://127.0.0.1:0", "--record", recorded.to_str().expect("path")],
        1,
    );
    let o = run(&[
        "send",
        &server.urls[0],
        "--to",
        "recorded",
        "--body",
        "again",
        "--record",
        client_side.to_str().expect("path"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The broker is killed: the script it grew as the connection went is all there.
    drop(server);
    let fresh = Server::start(&[]);
    for script in [&recorded, &client_side] {
        let text_of = std::fs::read_to_string(script).expect("a recording");
        assert!(text_of.contains("\"expect\"") && text_of.contains("\"send\""), "{text_of}");
        let o = run(&["script", script.to_str().expect("path"), "--connect", &fresh.urls[0]]);
        assert!(o.status.success(), "{}: {}{}", script.display(), text(&o.stdout), text(&o.stderr));
        let _ = std::fs::remove_file(script);
    }
}

/// `--pcap` on a server whose real transport is WebSocket: the capture holds the
/// plaintext AMQP as synthetic TCP, written as it went (the server is killed), and tshark's
/// AMQP dissector reads the same performatives as amqpwire's own decode of it.
#[test]
fn pcap_captures_a_websocket_connection_that_tshark_decodes() {
    let capture = scratch("serve.pcapng");
    let server = Server::with_args(
        &["serve", "--listen", "ws://127.0.0.1:0/", "--pcap", capture.to_str().expect("path")],
        1,
    );
    let o = run(&["send", &server.urls[0], "--to", "q", "--body", "captured"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    drop(server);
    let ours: Vec<String> =
        text(&run(&["decode", "--json", capture.to_str().expect("path")]).stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["kind"] == "frame" && l["type"] == "amqp")
            .map(|l| l["performative"].as_str().unwrap_or("?").to_owned())
            .collect();
    for p in ["open", "begin", "attach", "transfer", "disposition", "close"] {
        assert!(ours.iter().any(|o| o == p), "{p} in {ours:?}");
    }
    let names =
        ["open", "begin", "attach", "flow", "transfer", "disposition", "detach", "end", "close"];
    let tshark = std::process::Command::new("tshark")
        .args([
            "-r",
            capture.to_str().expect("path"),
            "-Y",
            "amqp",
            "-T",
            "fields",
            "-e",
            "amqp.performative",
        ])
        .output()
        .expect("tshark (installed by tests/peers/install.sh)");
    let theirs: Vec<String> = text(&tshark.stdout)
        .split_whitespace()
        .flat_map(|l| l.split(','))
        .filter_map(|c| c.parse::<usize>().ok())
        .filter_map(|c| names.get(c.checked_sub(16)?).map(|s| (*s).to_owned()))
        .collect();
    assert_eq!(theirs, ours, "tshark and amqpwire read the same frames");
    let _ = std::fs::remove_file(&capture);
}

/// `amqpwire` with `args`, once it has said where it listens (its first line, `listening
/// on URL`): the process (its standard error piped, the rest of its output let go) and
/// the URL.
fn listening(args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = bin()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("amqpwire");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a line").expect("a line");
    let url = line.strip_prefix("listening on ").expect("`listening on URL`").to_owned();
    // The rest is read and dropped, so that the process never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    (child, url)
}

#[test]
fn a_tls_proxy_names_every_name_its_certificate_covers() {
    use std::io::Read;
    let dir = scratch("proxy-certs");
    let _ = std::fs::remove_dir_all(&dir);
    let args = ["proxy", "--listen", "amqps://127.0.0.1:0", "--to", "amqp://127.0.0.1:1"];
    let dir_s = dir.to_str().expect("path");
    let (mut child, url) = listening(&[&args[..], &["--cert-dir", dir_s]].concat());
    assert!(url.starts_with("amqps://127.0.0.1:"), "{url}");
    let _ = child.kill();
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    let _ = child.wait();
    // The host of --to, and localhost and 127.0.0.1, which every certificate made covers.
    assert!(err.contains("its certificate covers 127.0.0.1, localhost)"), "the names said: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that goes away without a close exchange: a server's trace says how each
/// connection ended, and its capture ends each then (not when the server stops), as the
/// client ended it: a FIN exchange for one that closed its side, a reset for one that
/// reset.
#[test]
fn a_server_s_capture_ends_a_connection_its_client_dropped_as_the_client_did() {
    use std::io::{BufRead, BufReader, Read, Write};
    let capture = scratch("dropped.pcapng");
    let mut child = bin()
        .args(["serve", "--listen", "amqp://127.0.0.1:0", "--trace-json", "-", "--pcap"])
        .arg(&capture)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    // Read on threads of their own, so that an event that never comes fails the test
    // (after `HANG_GUARD`) rather than hanging it. Standard output is the JSON trace
    // alone: `listening on URL` goes to standard error.
    let lines = |from: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let rx = lines(Box::new(child.stdout.take().expect("stdout")));
    let said = lines(Box::new(child.stderr.take().expect("stderr")));
    let next = || rx.recv_timeout(HANG_GUARD).expect("serve's next line");
    let url = said.recv_timeout(HANG_GUARD).expect("serve's first word");
    let url = url.strip_prefix("listening on ").expect("`listening on URL`").to_owned();
    let addr = url.strip_prefix("amqp://").expect("amqp URL").to_owned();
    // An open with container-id "x", after the header.
    let open = [
        0x00, 0x00, 0x00, 0x11, 0x02, 0x00, 0x00, 0x00, 0x00, 0x53, 0x10, 0xc0, 0x04, 0x01, 0xa1,
        0x01, 0x78,
    ];
    let ended = |n: u64| loop {
        let line: serde_json::Value = serde_json::from_str(&next()).expect("a JSON line");
        if line["kind"] == "event" && line["connection"] == n {
            return line["event"].as_str().unwrap_or_default().to_owned();
        }
    };
    // Connection 1 sends the header and closes its side.
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.write_all(b"AMQP\0\x01\0\0").expect("header");
    s.read_exact(&mut [0u8; 8]).expect("the server's header");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(ended(1), "ended: the client closed its side");
    drop(s);
    // Connection 2 opens, then closes with the server's open unread: the kernel resets it.
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.write_all(b"AMQP\0\x01\0\0").expect("header");
    s.write_all(&open).expect("open");
    s.read_exact(&mut [0u8; 8]).expect("the server's header");
    let _ = s.peek(&mut [0u8; 1]).expect("its open");
    drop(s);
    assert_eq!(ended(2), "ended: the transport failed (a reset or an error)");
    // Connection 3 sends nothing at all: it is in the capture all the same, from its
    // accept (SYN) to its end.
    let s = std::net::TcpStream::connect(&addr).expect("connect");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(ended(3), "ended: the client closed its side");
    drop(s);
    let _ = child.kill();
    let _ = child.wait();
    let syns = packets_of(&capture).iter().filter(|p| p.from_client && p.flags == ["syn"]).count();
    assert_eq!(syns, 3, "a SYN for each connection, the silent one too");
    let o = run(&["decode", "--json", capture.to_str().expect("path")]);
    let ends: Vec<(u64, String, String)> = text(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["kind"] == "tcp")
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (l["connection"].as_u64().unwrap_or(99), s("event"), s("direction"))
        })
        .collect();
    let want = |n: u64, e: &str, d: &str| (n, e.to_owned(), d.to_owned());
    assert_eq!(
        ends,
        // (the capture's streams count from 1, as the trace's; the silent connection is
        // connection 3 of both)
        [
            want(1, "fin", "c2s"),
            want(1, "fin", "s2c"),
            want(2, "rst", "c2s"),
            want(3, "fin", "c2s"),
            want(3, "fin", "s2c")
        ],
        "{}",
        text(&o.stdout)
    );
    let _ = std::fs::remove_file(&capture);
}

/// A server stopped by SIGINT (Ctrl-C) or SIGTERM first ends the connections still open
/// in its capture, and exits as a shell says a process so stopped does (130, 143).
#[cfg(unix)]
#[test]
fn a_server_stopped_by_a_signal_ends_the_connections_still_open_in_its_capture() {
    use std::io::{Read, Write};
    for (signal, status) in [("INT", 130), ("TERM", 143)] {
        let capture = scratch(&format!("stopped-{signal}.pcapng"));
        let cap = capture.to_str().expect("path");
        let trace = scratch(&format!("stopped-{signal}.jsonl"));
        let (mut child, url) = listening(&[
            "serve",
            "--listen",
            "amqp://127.0.0.1:0",
            "--pcap",
            cap,
            "--trace-json",
            trace.to_str().expect("path"),
        ]);
        let addr = url.strip_prefix("amqp://").expect("amqp URL").to_owned();
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.write_all(b"AMQP\0\x01\0\0").expect("header");
        // An open with container-id "x": the connection is open when the server stops.
        s.write_all(&[
            0x00, 0x00, 0x00, 0x11, 0x02, 0x00, 0x00, 0x00, 0x00, 0x53, 0x10, 0xc0, 0x04, 0x01,
            0xa1, 0x01, 0x78,
        ])
        .expect("open");
        // The server's header has been captured before it was sent.
        s.read_exact(&mut [0u8; 8]).expect("the server's header");
        let killed = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let exit = child.wait().expect("serve's exit");
        assert_eq!(exit.code(), Some(status), "{signal}");
        drop(s);
        let o = run(&["decode", "--json", capture.to_str().expect("path")]);
        let fins: Vec<String> = text(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["kind"] == "tcp")
            .map(|l| format!("{} {}", l["event"], l["direction"]))
            .collect();
        // The server, which went away, ends the connection; what it sent while it exited
        // is not made into a connection of its own.
        assert_eq!(fins, ["\"fin\" \"s2c\"", "\"fin\" \"c2s\""], "{signal}: {}", text(&o.stdout));
        let connections = text(&o.stdout).matches(r#""kind":"connection""#).count();
        assert_eq!(connections, 1, "{signal}: {}", text(&o.stdout));
        // The trace says so too.
        let said = std::fs::read_to_string(&trace).expect("the trace");
        assert!(
            said.contains(r#""event":"ended: the command was stopped (a signal) with it open""#),
            "{said}"
        );
        let _ = std::fs::remove_file(&capture);
        let _ = std::fs::remove_file(&trace);
    }
}

/// A proxy stopped by a signal says on standard error which connections it ended so, as
/// its trace would (docs/proxy.md: events go to standard error).
#[cfg(unix)]
#[test]
fn a_proxy_stopped_by_a_signal_says_which_connections_it_ended() {
    use std::io::Read;
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = format!("amqp://{}", upstream.local_addr().expect("address"));
    let (mut child, url) = listening(&["proxy", "--listen", "amqp://127.0.0.1:0", "--to", &to]);
    let client = std::net::TcpStream::connect(url.trim_start_matches("amqp://")).expect("connect");
    // Relayed: the proxy reached the upstream.
    let (_relayed, _) = upstream.accept().expect("the proxy connects");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(child.wait().expect("exit").code(), Some(130));
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read");
    assert!(err.contains("c1: ended: the command was stopped (a signal) with it open"), "{err}");
    drop(client);
}

/// A proxy that runs out of file descriptors leaves the clients over the limit waiting,
/// and goes on relaying the others: it said "Too many open files" and exited with status
/// 2, dropping every connection, when one accept failed; and then it accepted clients it
/// had no descriptor left to reach the upstream for, and dropped them ("cannot reach the
/// upstream"), one in two of those it accepted as it ran out, and every one for an
/// upstream named by a host name (resolving it opens the hosts file), also when the
/// clients came before any had been relayed (`relayed_first` false).
#[cfg(unix)]
#[test]
fn a_proxy_out_of_file_descriptors_keeps_relaying_and_accepts_again() {
    let server = Server::start(&[]);
    let at = server.urls[0].trim_start_matches("amqp://").trim_end_matches('/');
    let port = at.rsplit_once(':').expect("host:port").1;
    let named = format!("amqp://localhost:{port}");
    for (upstream, relayed_first) in
        [(format!("amqp://{at}"), true), (named.clone(), true), (named, false)]
    {
        proxy_out_of_descriptors(&upstream, relayed_first);
    }
}

#[cfg(unix)]
fn proxy_out_of_descriptors(upstream: &str, relayed_first: bool) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" proxy --listen amqp://127.0.0.1:0 --to \"$1\"")
        .arg(env!("CARGO_BIN_EXE_amqpwire"))
        .arg(upstream)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("proxy");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = out.next().expect("a line").expect("a line");
    let url = line.strip_prefix("listening on ").expect("`listening on URL`").to_owned();
    let rx = stderr_lines(&mut child);
    let mut said = Vec::new();
    let mut wait_for = |what: &str| loop {
        match rx.recv_timeout(HANG_GUARD) {
            Ok(l) => {
                let found = l.contains(what);
                said.push(l);
                if found {
                    return;
                }
            }
            Err(e) => panic!("{upstream}: no line with {what:?} from the proxy ({e}): {said:#?}"),
        }
    };
    // A client relayed first (the server's header comes back through the proxy), then
    // sixty that only connect: the proxy takes a client's descriptor and the upstream's
    // for each, and runs out.
    let addr = url.trim_start_matches("amqp://").to_owned();
    let mut first = relayed_first.then(|| {
        let mut first = std::net::TcpStream::connect(&addr).expect("connect");
        first.write_all(b"AMQP\0\x01\0\0").expect("header");
        let mut header = [0u8; 8];
        first.read_exact(&mut header).expect("the server's header");
        assert_eq!(&header, b"AMQP\0\x01\0\0");
        first
    });
    let held: Vec<_> =
        (0..60).map(|_| std::net::TcpStream::connect(&addr).expect("connect")).collect();
    wait_for("cannot accept clients (Too many open files");
    assert_eq!(child.try_wait().expect("status"), None, "the proxy went on");
    // The first client is still relayed: an open (container-id "x") gets the server's.
    if let Some(first) = first.as_mut() {
        first
            .write_all(&[
                0x00, 0x00, 0x00, 0x11, 0x02, 0x00, 0x00, 0x00, 0x00, 0x53, 0x10, 0xc0, 0x04, 0x01,
                0xa1, 0x01, 0x78,
            ])
            .expect("open");
        let mut open = [0u8; 8];
        first.read_exact(&mut open).expect("the server's open");
        assert_eq!(open[4..6], [0x02, 0x00], "an AMQP frame: {open:?}");
    }
    drop(held);
    // Once they are gone, clients are accepted and relayed again.
    let o = run(&["send", &url, "--to", "after", "--count", "1"]);
    assert!(o.status.success(), "{upstream}: {}", text(&o.stderr));
    wait_for("accepting clients again");
    drop(first);
    let _ = child.kill();
    let _ = child.wait();
    said.extend(rx.iter());
    // No client was accepted only to be dropped for want of a descriptor for its upstream.
    let dropped: Vec<_> = said.iter().filter(|l| l.contains("cannot reach the upstream")).collect();
    assert!(dropped.is_empty(), "{upstream}: {dropped:#?}");
}

#[test]
fn output_files_that_cannot_be_written_are_refused_at_the_start() {
    // `--html` and `--record` into a folder that does not exist: found at the start, not
    // at the first frame (--html wrote nothing and said nothing; --record said so at every
    // frame and lost every recording).
    let server = Server::start(&[]);
    let url = server.urls[0].as_str();
    for (option, said) in
        [("--html", "cannot write the page to"), ("--record", "cannot write the recording")]
    {
        let file = "/nonexistent-amqpwire-folder/out";
        for args in [
            vec!["send", url, "--to", "q", "--count", "1", option, file],
            vec!["proxy", "--listen", "amqp://127.0.0.1:0", "--to", url, option, file],
            vec!["serve", "--listen", "amqp://127.0.0.1:0", option, file],
        ] {
            let child = bin()
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("amqpwire");
            let o = cli::wait_within(child, HANG_GUARD).expect("ended at once");
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
            assert!(text(&o.stderr).contains(said), "{args:?}: {}", text(&o.stderr));
        }
    }
}

#[test]
fn a_proxy_s_recordings_are_numbered_as_its_connections() {
    // c1 connects first and sends its header only after c2 (a whole send) is over: c1's
    // recording is rec.jsonl and c2's rec-2.jsonl, as the trace numbers them (they were
    // numbered in the order they first sent something).
    use std::io::Write;
    let server = Server::start(&[]);
    let rec = scratch("numbered.jsonl");
    let rec2 = rec.with_file_name(format!(
        "{}-2.jsonl",
        rec.file_stem().and_then(|s| s.to_str()).expect("name")
    ));
    let (mut proxy, url) = listening(&[
        "proxy",
        "--listen",
        "amqp://127.0.0.1:0",
        "--to",
        &server.urls[0],
        "--record",
        rec.to_str().expect("path"),
    ]);
    let rx = stderr_lines(&mut proxy);
    let mut c1 = std::net::TcpStream::connect(url.trim_start_matches("amqp://")).expect("c1");
    // (Accepted first: it is c1.)
    while !rx.recv_timeout(HANG_GUARD).expect("the proxy's events").starts_with("c1: accepted") {}
    let o = run(&["send", &url, "--to", "q", "--count", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    c1.write_all(b"AMQP\x00\x01\x00\x00").expect("write");
    c1.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let _ = std::io::Read::read_to_end(&mut c1, &mut Vec::new());
    // Both connections finished (their recordings written out), then the proxy goes.
    let mut finished = 0;
    while finished < 2 {
        let l = rx.recv_timeout(HANG_GUARD).expect("the proxy's events");
        finished += usize::from(l.ends_with(": finished"));
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let first = std::fs::read_to_string(&rec).expect("rec.jsonl");
    let second = std::fs::read_to_string(&rec2).expect("rec-2.jsonl");
    assert!(first.contains(r#"{"send":{"kind":"header","protocol_id":0}}"#), "c1: {first}");
    // (Frames are recorded typed: a transfer's descriptor is 0x14.)
    let transfer = r#"{"described":[{"ulong":20},"#;
    assert!(!first.contains(transfer), "c1 sent only its header: {first}");
    assert!(second.contains(transfer), "c2 was the send: {second}");
    let _ = std::fs::remove_file(&rec);
    let _ = std::fs::remove_file(&rec2);
}

#[test]
fn a_proxy_whose_upstream_is_itself_or_unreachable_by_form_is_refused_at_once() {
    // `--to` naming its own listener relayed every client to itself again, ten thousand
    // times, until the descriptors ran out; `--connect-to` of the wrong form was found
    // for each client.
    let port = peers::free_port();
    let url = format!("amqp://127.0.0.1:{port}");
    for (to, extra, said) in [
        (url.clone(), None, "is this proxy's own listener"),
        (format!("amqp://localhost:{port}"), None, "is this proxy's own listener"),
        ("amqp://127.0.0.1:1".to_owned(), Some("not a host:xx"), "bad address \"not a host:xx\""),
        ("amqp://127.0.0.1:1".to_owned(), Some("127.0.0.1:99999"), "expected HOST[:PORT]"),
        // Each of these was taken at the start and failed at each client's connect.
        ("amqp://127.0.0.1:1".to_owned(), Some(":"), "the host is empty"),
        ("amqp://127.0.0.1:1".to_owned(), Some("a:b:c"), "in brackets"),
        ("amqp://127.0.0.1:1".to_owned(), Some("h o s t"), "contains ' '"),
        ("amqp://127.0.0.1:1".to_owned(), Some("x/y"), "contains '/'"),
        ("amqp://127.0.0.1:1".to_owned(), Some("127.0.0.1:0"), "port 0 is not a port"),
    ] {
        let mut args = vec!["proxy", "--listen", &url, "--to", &to];
        if let Some(c) = extra {
            args.extend(["--connect-to", c]);
        }
        let o = cli::wait_within(
            bin()
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("proxy"),
            HANG_GUARD,
        )
        .expect("the proxy ended at once");
        assert_eq!(o.status.code(), Some(2), "{to} {extra:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(said), "{}", text(&o.stderr));
    }
}

/// `--record-side server` records the server's side: a scripted server that a client can
/// be run against again, without the server.
#[test]
fn a_recording_of_the_server_side_plays_the_server_to_the_client_again() {
    let server = Server::with_args(&["serve", "--listen", "amqp://127.0.0.1:0"], 1);
    let rec = scratch("server-side.jsonl");
    let rec_s = rec.to_str().expect("path");
    let send = |url: &str, extra: &[&str]| {
        let o = run(&[&["send", url, "--to", "q", "--body", "again"][..], extra].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    send(&server.urls[0], &["--record", rec_s, "--record-side", "server"]);
    drop(server);
    let script = std::fs::read_to_string(&rec).expect("the recording");
    let first = |verb: &str| {
        script
            .lines()
            .position(|l| l.starts_with(verb))
            .unwrap_or_else(|| panic!("{verb} in {script}"))
    };
    // The client's header is expected first; the server's is sent.
    assert!(first(r#"{"expect""#) < first(r#"{"send""#), "{script}");
    let (child, url) = listening(&["script", rec_s, "--listen", "amqp://127.0.0.1:0"]);
    send(&url, &[]);
    let o = child.wait_with_output().expect("the script's end");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("every step held"), "{}", text(&o.stderr));
    let _ = std::fs::remove_file(&rec);
}

/// One TCP packet of a capture written by a command's `--pcap` (server port 5672).
struct Packet {
    from_client: bool,
    flags: Vec<&'static str>,
    len: usize,
}

impl Packet {
    /// `client syn 0`, `server rst 0`, `client  8`: who sent it, its SYN/RST/FIN flags,
    /// its payload's length.
    fn summary(&self) -> String {
        let from = if self.from_client { "client" } else { "server" };
        format!("{from} {} {}", self.flags.join("+"), self.len)
    }
}

/// The TCP packets of a capture, in order.
fn packets_of(capture: &std::path::Path) -> Vec<Packet> {
    let file = std::fs::read(capture).expect("the capture");
    amqpwire::capture::CaptureReader::new(&file)
        .expect("a capture")
        .packets()
        .filter_map(|p| {
            let p = p.expect("a packet");
            let seg = amqpwire::capture::net::parse_tcp(p.link_type, p.data).ok()??;
            let flags = [(seg.syn, "syn"), (seg.rst, "rst"), (seg.fin, "fin")]
                .into_iter()
                .filter_map(|(on, f)| on.then_some(f))
                .collect();
            let from_client = seg.dst.port() == 5672;
            Some(Packet { from_client, flags, len: seg.payload.len() })
        })
        .collect()
}

#[test]
fn a_scripts_capture_shows_its_paced_writes_as_they_were_made() {
    let server = Server::start(&[]);
    let capture = scratch("paced.pcapng");
    let script = scratch("paced.jsonl");
    std::fs::write(
        &script,
        [
            r#"{"write": {"chunk": 3, "delay": 1}}"#,
            r#"{"send": {"kind": "header", "protocol": "AMQP"}}"#,
            r#"{"expect": {"kind": "header"}}"#,
        ]
        .join("\n"),
    )
    .expect("script");
    let cap = capture.to_str().expect("path");
    let o = run(&[
        "script",
        script.to_str().expect("path"),
        "--connect",
        &server.urls[0],
        "--pcap",
        cap,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The header went out in three writes of 3, 3 and 2 bytes, and the capture has them
    // so, each when it was written.
    let writes: Vec<usize> =
        packets_of(&capture).iter().filter(|p| p.from_client && p.len > 0).map(|p| p.len).collect();
    assert_eq!(writes, [3, 3, 2]);
    let _ = std::fs::remove_file(&capture);
    let _ = std::fs::remove_file(&script);
}

#[test]
fn send_and_receive_count_the_same_bytes() {
    let server = Server::start(&[]);
    let url = &server.urls[0];
    let summary = |o: &std::process::Output| {
        let err = text(&o.stderr);
        let line = err.lines().rev().find(|l| l.contains(" messages, ")).unwrap_or_default();
        // "sent 3 messages, 3015 bytes in …" → ("3", "3015")
        let words: Vec<&str> = line.split_whitespace().collect();
        (words.get(1).map(|w| w.to_string()), words.get(3).map(|w| w.to_string()))
    };
    let sent = run(&["send", url, "--to", "counted", "--size", "1005", "--count", "3"]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let got = run(&["receive", url, "--from", "counted", "--count", "3"]);
    assert!(got.status.success(), "{}", text(&got.stderr));
    // Both count the messages' bodies: 3 × 1005.
    assert_eq!(summary(&sent), (Some("3".into()), Some("3015".into())), "{}", text(&sent.stderr));
    assert_eq!(summary(&got), summary(&sent), "{}", text(&got.stderr));
}

#[test]
fn messages_whose_lines_no_one_reads_are_released_not_accepted() {
    // `receive … | head -1` where the reader is gone before the first line: every write
    // fails, so no message may be accepted (before, a batch of them was accepted, and
    // lost, before the first write); the command ends quietly, not "timed out".
    let server = Server::start(&[]);
    let url = &server.urls[0];
    let o = run(&["send", url, "--to", "unread", "--size", "1000", "--count", "100"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // (It stops at its first write, which fails: the time-out only guards a hang.)
    let receive = ["receive", url, "--from", "unread", "--count", "100", "--timeout", "300"];
    let o = cli::run_writing_to(&receive, cli::closed_pipe());
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("timed out"), "{err}");
    assert!(err.contains("received 0 messages"), "{err}");
    // A write that fails otherwise (a full disk) is an error, and releases the messages.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let o = cli::run_writing_to(&receive, full);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot write the messages: No space left on device"), "{err}");
    // All hundred are still there.
    let o = run(&["receive", url, "--from", "unread", "--count", "100", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 100);
}

#[test]
fn receive_counts_the_bytes_of_the_messages_it_took_not_of_those_it_released() {
    // `receive … | head -c 300`: the first line (a body of 200,000 bytes, more than a
    // pipe holds) is cut off by the reader going, so its message is released, and the
    // summary counts neither it nor its bytes (it said "0 messages, 200000 bytes").
    use std::io::Read;
    let server = Server::start(&[]);
    let url = &server.urls[0];
    let o = run(&["send", url, "--to", "cut", "--size", "200000", "--count", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut child = bin()
        .args(["receive", url, "--from", "cut", "--count", "1", "--timeout", "3600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("receive");
    let mut head = [0u8; 300];
    child.stdout.take().expect("stdout").read_exact(&mut head).expect("300 bytes");
    let o = cli::wait_within(child, HANG_GUARD).expect("receive ended");
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("received 0 messages, 0 bytes"), "{err}");
    // Released, so still there for the next receiver.
    let o = run(&["receive", url, "--from", "cut", "--count", "1", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn receive_ends_when_its_reader_goes_while_it_waits() {
    // `receive … | head -1`: the line is read, the reader goes, and no more messages come.
    // The command ends then, not after its hour of --timeout: the pipe's closing is
    // watched while it waits.
    use std::io::BufRead;
    let server = Server::start(&[]);
    let url = &server.urls[0];
    let o = run(&["send", url, "--to", "one", "--count", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut child = bin()
        .args(["receive", url, "--from", "one", "--timeout", "3600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("receive");
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line");
    assert_eq!(line, "message 0\n");
    drop(reader);
    // (The bound only guards a hang: the command ends as soon as the pipe closes.)
    let o = cli::wait_within(child, std::time::Duration::from_secs(120))
        .expect("receive still waiting after its reader went");
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("received 1 messages"), "{err}");
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn a_json_trace_on_standard_output_is_all_that_is_there() {
    // `--trace-json -`: the demo's steps go to standard error, so its standard output is
    // JSON lines that `encode` takes (before: "line 2: not JSON").
    let o = run(&["demo", "--trace-json", "-"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.lines().count() > 20, "{out}");
    for l in out.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert!(text(&o.stderr).contains("=== "), "the steps are said on standard error");
    let o = cli::run_with_input(&["encode", "--connection", "1", "--direction", "out"], &o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout.starts_with(b"AMQP"), "the client's bytes");
    // A command whose standard output carries its data refuses to mix the trace in.
    let server = Server::start(&[]);
    for args in [
        &["receive", &server.urls[0], "--from", "q", "--trace-json", "-"][..],
        &[
            "iothub",
            "feedback",
            "--connection-string",
            "HostName=h;SharedAccessKeyName=p;SharedAccessKey=a2V5",
            "--trace-json",
            "-",
        ],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains("--trace-json -: standard output carries the"), "{err}");
    }
}

#[test]
fn decode_from_standard_input_prints_each_record_as_its_bytes_arrive() {
    // A client that sent its SASL header and a sasl-init (under the 64 bytes looked at to
    // tell what the input is) and waits: both are printed while the pipe stays open.
    use std::io::{BufRead, Write};
    let mut child = bin()
        .args(["decode", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("decode");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"AMQP\x03\x01\x00\x00\x00\x00\x00\x15\x02\x01\x00\x00\
              \x00\x53\x41\xc0\x08\x01\xa3\x05PLAIN",
        )
        .expect("write");
    stdin.flush().expect("flush");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let header = rx.recv_timeout(HANG_GUARD).expect("the header's record, stdin still open");
    assert!(header.contains("\"kind\":\"header\""), "{header}");
    let init = rx.recv_timeout(HANG_GUARD).expect("the sasl-init's record, stdin still open");
    assert!(init.contains("\"performative\":\"sasl-init\""), "{init}");
    drop(stdin);
    child.wait().expect("decode ends at the end of its input");
}

/// The lines `child` writes to standard error, each sent on as it comes (its stderr must
/// be piped).
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            // (Read to the end even once no one listens: the child never blocks on a
            // full pipe.)
            let _ = tx.send(l);
        }
    });
    rx
}

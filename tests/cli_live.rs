//! The networked commands of the `amqpwire` binary: `serve` started as a process, `send`
//! and `receive` against it over TCP and WebSocket, `--trace` and `--trace-json`, a
//! refused password, and `demo`.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/pki.rs"]
mod pki;

use cli::{bin, run, text, Running};

/// `amqpwire serve` on free loopback ports; killed when dropped.
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
            .any(|l| l["direction"] == dir && l["performative"] == p && l["connection"] == 0)
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
    let o = run(&["demo"]);
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

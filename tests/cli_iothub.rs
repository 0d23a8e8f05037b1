//! `amqpwire iothub …` as a user runs it: the emulator started as a process, then the
//! service, device and monitor commands against it over TLS and WebSocket; the demo; and
//! the one-line errors for bad input and refused tokens.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/hub.rs"]
mod hub;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;

use std::path::PathBuf;

use cli::{bin, run, text, Running};
use hub::{DEVICE_KEY, OWNER_KEY};

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}\n{}", text(&out.stderr), text(&out.stdout));
    text(&out.stdout)
}

/// `amqpwire iothub emulate` on free loopback ports, with a certificate directory of its
/// own; killed when dropped.
struct Emulator {
    running: Running,
    dir: PathBuf,
}

impl Emulator {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Emulator::start`] with more arguments (fault injection, say).
    fn start_with(extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "amqpwire-cli-iothub-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = bin();
        cmd.args(["iothub", "emulate", "--hostname", "localhost"])
            .args(["--device", &format!("dev1:{DEVICE_KEY}"), "--device", "dev2"])
            .args(["--module", &format!("dev1/m1:{MODULE_KEY}")])
            .args(["--policy", &format!("iothubowner:{OWNER_KEY}")])
            .args(["--amqps", "127.0.0.1:0", "--wss", "127.0.0.1:0"])
            .args(["--eventhub", "127.0.0.1:0", "--eventhub-wss", "127.0.0.1:0"])
            .args(extra)
            .arg("--cert-dir")
            .arg(&dir);
        // The CA's line is the last before it serves.
        let ready =
            |lines: &[String]| lines.last().is_some_and(|l| l.starts_with("ca certificate:"));
        Self { running: Running::start(cmd, ready), dir }
    }

    /// Every line it printed before serving.
    fn lines(&self) -> &[String] {
        &self.running.lines
    }

    fn port_of(&self, prefix: &str, nth: usize) -> String {
        let url = self
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .nth(nth)
            .unwrap_or_else(|| panic!("no {prefix:?} line {nth} in {:?}", self.lines()));
        let after_host = url.rsplit_once(':').expect("a port").1;
        after_host.split('/').next().unwrap().to_owned()
    }

    fn ca(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The key of module `m1` of `dev1` (base64 of 32 bytes).
const MODULE_KEY: &str = "bW9kdWxlLWtleS1vZi1kZXYxLW0xLWZvci10ZXN0cyE=";

fn service_cs() -> String {
    format!("HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}")
}

fn device_cs() -> String {
    format!("HostName=localhost;DeviceId=dev1;SharedAccessKey={DEVICE_KEY}")
}

#[test]
fn the_emulator_prints_its_listeners_and_connection_strings() {
    let e = Emulator::start();
    let listening: Vec<&String> =
        e.lines().iter().filter(|l| l.starts_with("listening on ")).collect();
    assert_eq!(listening.len(), 5, "{:?}", e.lines());
    assert!(listening[4].starts_with("listening on https://127.0.0.1:"), "{:?}", e.lines());
    // Port 443 as IoT Hub has it: the REST APIs and AMQP over WebSocket on one port.
    assert_eq!(e.port_of("listening on https://", 0), e.port_of("listening on wss://", 0));
    assert!(listening[1].ends_with("/$iothub/websocket"), "{:?}", e.lines());
    assert!(listening[3].ends_with("/$servicebus/websocket"), "{:?}", e.lines());
    assert!(e.lines().contains(&format!("device dev1: {}", device_cs())), "{:?}", e.lines());
    assert!(
        e.lines().contains(&format!("policy iothubowner: {}", service_cs())),
        "{:?}",
        e.lines()
    );
    // dev2 got a key made up on the spot, usable as printed.
    let dev2 = e.lines().iter().find_map(|l| l.strip_prefix("device dev2: ")).expect("dev2");
    assert!(dev2.contains(";DeviceId=dev2;SharedAccessKey="), "{dev2}");
    let ca = std::fs::read_to_string(e.ca()).expect("ca.pem written");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let out = ok(&[
        "iothub",
        "device-send",
        "--connection-string",
        dev2,
        "--ca",
        &e.ca(),
        "--port",
        &e.port_of("listening on ", 0),
    ]);
    assert!(out.is_empty(), "{out}");
    // Its capture's SYN names the transport and the URL it went to, as other commands'.
    let capture = e.dir.join("device-send.pcapng");
    let capture_s = capture.to_str().expect("path");
    let port = e.port_of("listening on ", 1);
    let ws = ["--transport", "ws", "--port", &port, "--pcap", capture_s];
    let send = ["iothub", "device-send", "--connection-string", dev2, "--ca", &e.ca()];
    ok(&[&send[..], &ws[..]].concat());
    let decoded = ok(&["decode", "--json", capture_s]);
    let comment = format!(
        "\"amqpwire connection 1; transport wss; url wss://localhost:{port}/$iothub/websocket"
    );
    assert!(decoded.contains(&comment), "{comment} in {decoded}");
}

#[test]
fn the_event_hub_connection_string_it_prints_is_all_the_event_hubs_quickstart_needs() {
    let e = Emulator::start();
    let eh = e
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("event hub-compatible iothubowner: "))
        .unwrap_or_else(|| panic!("no Event Hub connection string in {:?}", e.lines()))
        .to_owned();
    let eh_port = e.port_of("listening on ", 2);
    assert_eq!(
        eh,
        format!(
            "Endpoint=sb://localhost:{eh_port}/;SharedAccessKeyName=iothubowner;\
             SharedAccessKey={OWNER_KEY};EntityPath=localhost"
        )
    );
    let port = e.port_of("listening on ", 0);
    let send = ["--connection-string", &device_cs(), "--ca", &e.ca(), "--port", &port];
    ok(&[&["iothub", "device-send", "--body", "to-the-quickstart"][..], &send[..]].concat());
    // @azure/event-hubs's quickstart: a consumer client from that string alone, subscribe()
    // to every partition from the earliest event (the token it puts covers `$management`
    // on a port of its own).
    peers::node_modules(&["@azure/event-hubs"]);
    let out = std::process::Command::new("node")
        .arg(std::path::Path::new(peers::PEERS).join("eventhubs_quickstart.js"))
        .args([eh.as_str(), "1"])
        .env("NODE_EXTRA_CA_CERTS", e.ca())
        .output()
        .expect("node");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let event: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("an event")).expect("JSON");
    assert_eq!(event["body"], "to-the-quickstart", "{event}");
    assert_eq!(event["device"], "dev1", "{event}");
}

#[test]
fn modules_are_registry_identities_and_their_events_say_so() {
    let e = Emulator::start();
    let module =
        format!("HostName=localhost;DeviceId=dev1;ModuleId=m1;SharedAccessKey={MODULE_KEY}");
    assert!(e.lines().contains(&format!("module dev1/m1: {module}")), "{:?}", e.lines());
    let port = e.port_of("listening on ", 0);
    let node = |cs: &str, extra: &[&str]| {
        peers::node_modules(&["azure-iot-device", "azure-iot-device-amqp"]);
        std::process::Command::new("node")
            .arg(std::path::Path::new(peers::PEERS).join("iothub_sdk.js"))
            .args(["device-send", "--connection-string", cs, "--port", &port, "--ca", &e.ca()])
            .args(extra)
            .env("PEER_QUIET", "1")
            .output()
            .expect("node")
    };
    // The Node SDK's ModuleClient sends as m1 ...
    let out = node(&module, &["--body", "from-m1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ... and an invented module, even signed with its device's key, is refused.
    let ghost =
        format!("HostName=localhost;DeviceId=dev1;ModuleId=ghost;SharedAccessKey={DEVICE_KEY}");
    let out = node(&ghost, &["--body", "x", "--expect-error", "UnauthorizedError"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The event carries the module's id beside the device's.
    let (cs, ca) = (service_cs(), e.ca());
    let monitor = |extra: &[&str]| {
        let args = ["iothub", "monitor", "--connection-string", &cs, "--ca", &ca, "--port", &port];
        ok(&[&args[..], &["--from-start", "--count", "1", "--timeout", "20"], extra].concat())
    };
    let events = monitor(&["--json"]);
    let event: serde_json::Value =
        serde_json::from_str(events.lines().next().expect("an event")).expect("JSON");
    let text = event.to_string();
    assert!(text.contains("\"iothub-connection-module-id\":\"m1\""), "{text}");
    assert!(text.contains("\"iothub-connection-device-id\":\"dev1\""), "{text}");
    // Its text line names the module after its device.
    let line = monitor(&[]);
    assert!(line.contains(" dev1/m1 partition ") && line.contains(": from-m1"), "{line}");
}

/// `iothub emulate --x509-ca PEM`: a device whose TLS client certificate that CA signed
/// (subject CN = its id) connects with `x509=true`, no SASL and no token, as the Node SDK
/// does it; a certificate from another CA is refused, and without the flag the same
/// certificate is refused too.
#[test]
fn an_x509_ca_given_to_the_emulator_admits_the_devices_it_signed() {
    let dir = std::env::temp_dir().join(format!("amqpwire-cli-x509-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("write");
        p.display().to_string()
    };
    // The test CA's client certificate names device-1; the stranger's too.
    let (ours, stranger) = (pki::pki(), pki::pki_named("a stranger's CA"));
    let ca = write("x509-ca.pem", &ours.ca);
    let (cert, key) = (write("cert.pem", &ours.client_cert), write("key.pem", &ours.client_key));
    let (other, other_key) =
        (write("other.pem", &stranger.client_cert), write("other-key.pem", &stranger.client_key));
    let send = |e: &Emulator, cert: &str, key: &str, extra: &[&str]| {
        peers::node_modules(&["azure-iot-device", "azure-iot-device-amqp"]);
        let port = e.port_of("listening on ", 0);
        std::process::Command::new("node")
            .arg(std::path::Path::new(peers::PEERS).join("iothub_sdk.js"))
            .args(["device-send", "--connection-string"])
            .arg("HostName=localhost;DeviceId=device-1;x509=true")
            .args(["--port", &port, "--ca", &e.ca(), "--cert", cert, "--key", key])
            .args(["--body", "signed", "--timeout", "20"])
            .args(extra)
            .env("PEER_QUIET", "1")
            .output()
            .expect("node")
    };
    let e = Emulator::start_with(&["--x509-ca", &ca, "--x509-device", "device-1"]);
    // Its connection string names no key: it has none.
    let line = "device device-1: HostName=localhost;DeviceId=device-1;x509=true";
    assert!(e.lines().iter().any(|l| l == line), "{:?}", e.lines());
    let out = send(&e, &cert, &key, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sent: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().expect("a line")).expect("JSON");
    assert_eq!(sent["result"], "MessageEnqueued");
    // amqpwire's own device client, with the same string, certificate and key.
    let x509_cs = "HostName=localhost;DeviceId=device-1;x509=true";
    let port = e.port_of("listening on ", 0);
    let ours = ["iothub", "device-send", "--connection-string", x509_cs, "--ca", &e.ca()];
    ok(&[&ours[..], &["--port", &port, "--cert", &cert, "--key", &key, "--body", "ours"]].concat());
    // Without the certificate it says what it needs, before it connects.
    let o = run(&[&ours[..], &["--port", &port, "--body", "x"]].concat());
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("connects with its certificate and key"),
        "{}",
        text(&o.stderr)
    );
    // Refused as IoT Hub refuses a device it cannot authenticate: its links are detached
    // with amqp:unauthorized-access, which the SDK names UnauthorizedError.
    let refused = &["--expect-error", "UnauthorizedError"];
    let out = send(&e, &other, &other_key, refused);
    assert!(out.status.success(), "a stranger's certificate: {}", text(&out.stderr));
    drop(e);
    // A device registered with keys is not let in by a certificate, even one the CA
    // signed (IoT Hub authenticates a device as it is registered).
    let e = Emulator::start_with(&["--x509-ca", &ca, "--device", "device-1"]);
    let out = send(&e, &cert, &key, refused);
    assert!(out.status.success(), "a device registered with keys: {}", text(&out.stderr));
    drop(e);
    let e = Emulator::start_with(&["--device", "device-1"]);
    let out = send(&e, &cert, &key, refused);
    assert!(out.status.success(), "without --x509-ca: {}", text(&out.stderr));
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn injected_faults_reach_the_client_as_iot_hub_would_send_them() {
    // Each fault on an emulator of its own; the device sends until it hits it.
    let cases: [(&[&str], &str, &str); 8] = [
        (
            &["--fault-throttle-after", "2", "--fault-throttle-for", "60"],
            "3",
            "com.microsoft:device-container-throttled",
        ),
        (&["--fault-detach-after", "1"], "3", "amqp:link:detach-forced"),
        (&["--fault-redirect-after", "1"], "3", "amqp:link:redirect"),
        // At a time: a device that keeps sending (a hundred messages, each answered 50 ms
        // later) meets the fault one second in.
        (&["--fault-detach-at", "1", "--fault-slow", "50"], "100", "amqp:link:detach-forced"),
        (&["--fault-close-at", "1", "--fault-slow", "50"], "100", "amqp:connection:forced"),
        (&["--fault-close-after", "1"], "3", "amqp:connection:forced"),
        (&["--fault-expire-after", "1"], "3", "amqp:unauthorized-access"),
        (&["--fault-slow", "50"], "2", ""),
    ];
    for (flags, count, want) in cases {
        let e = Emulator::start_with(flags);
        let port = e.port_of("listening on ", 0);
        let ca = e.ca();
        let cs = device_cs();
        let args =
            ["iothub", "device-send", "--connection-string", &cs, "--ca", &ca, "--port", &port];
        let out = run(&[&args[..], &["--body", "x", "--count", count]].concat());
        let err = text(&out.stderr);
        if want.is_empty() {
            // A slow hub is still a working one.
            assert!(out.status.success(), "{flags:?}: {err}");
        } else {
            assert!(!out.status.success(), "{flags:?}: the fault never came: {err}");
            assert!(err.contains(want), "{flags:?}: {err}");
        }
    }
    // Tokens cut short: a device waiting for cloud-to-device messages is detached once its
    // one-second token has run out (its own expiry is an hour away).
    let e = Emulator::start_with(&["--fault-token-lifetime", "1"]);
    let out = run(&[
        "iothub",
        "device-receive",
        "--connection-string",
        &device_cs(),
        "--ca",
        &e.ca(),
        "--port",
        &e.port_of("listening on ", 0),
        "--count",
        "1",
        "--timeout",
        "30",
    ]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("amqp:unauthorized-access"), "{err}");
}

/// The seed scenario through the commands, over `transport`.
fn scenario(transport: &str, security: &str) {
    let e = Emulator::start();
    let ca = e.ca();
    let (port, eh_ws) = match transport {
        "ws" => (e.port_of("listening on ", 1), e.port_of("listening on ", 3)),
        _ => (e.port_of("listening on ", 0), e.port_of("listening on ", 3)),
    };
    let common = |cs: String| -> Vec<String> {
        [
            "--connection-string",
            &cs,
            "--ca",
            &ca,
            "--port",
            &port,
            "--transport",
            transport,
            "--security",
            security,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = |head: &[&str], cs: String| -> Vec<String> {
        let mut v: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        v.extend(common(cs));
        v
    };
    let call = |v: Vec<String>| ok(&v.iter().map(String::as_str).collect::<Vec<_>>());

    let id = call(args(
        &[
            "iothub",
            "send-c2d",
            "--device",
            "dev1",
            "--body",
            "switch on",
            "--ack",
            "full",
            "--property",
            "room=kitchen",
        ],
        service_cs(),
    ));
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 36, "a uuid message-id: {id:?}");

    let got = call(args(&["iothub", "device-receive", "--count", "1", "--json"], device_cs()));
    let m: serde_json::Value = serde_json::from_str(got.trim()).expect("one JSON line");
    assert_eq!(m["message"]["body"]["content"][0]["text"], "switch on", "{m}");
    assert_eq!(m["message"]["application-properties"]["room"], "kitchen", "{m}");
    assert_eq!(m["message"]["properties"]["message-id"]["uuid"], id.as_str(), "{m}");

    let fb = call(args(
        &["iothub", "feedback", "--count", "1", "--json", "--timeout", "20"],
        service_cs(),
    ));
    let r: serde_json::Value = serde_json::from_str(fb.trim()).expect("one JSON line");
    assert_eq!(r["originalMessageId"], id.as_str(), "{r}");
    assert_eq!(r["statusCode"], "Success", "{r}");
    assert_eq!(r["deviceId"], "dev1", "{r}");

    call(args(
        &["iothub", "device-send", "--body", "{\"temp\":21.5}", "--property", "alert=no"],
        device_cs(),
    ));
    let mut monitor = args(
        &["iothub", "monitor", "--from-start", "--count", "1", "--json", "--timeout", "20"],
        service_cs(),
    );
    monitor.extend(["--eventhub-ws-port".to_owned(), eh_ws.clone()]);
    let ev = call(monitor);
    let ev: serde_json::Value = serde_json::from_str(ev.trim()).expect("one JSON line");
    assert_eq!(ev["device_id"], "dev1", "{ev}");
    assert_eq!(ev["body"], "{\"temp\":21.5}", "{ev}");
    assert_eq!(ev["message"]["application-properties"]["alert"], "no", "{ev}");
    assert!(ev["enqueued_time"].as_str().is_some_and(|t| t.ends_with('Z')), "{ev}");
}

#[test]
fn the_commands_over_tls_with_mssbcbs() {
    scenario("amqps", "mssbcbs");
}

#[test]
fn the_commands_over_websocket_with_plain() {
    scenario("ws", "plain");
}

#[test]
fn bad_input_and_refusals_end_with_one_line() {
    // A connection string without a key: exit 2, one line, no network.
    let out = run(&["iothub", "send-c2d", "--device", "d", "--connection-string", "HostName=h"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--connection-string"), "{err}");
    // A wrong key: the put-token is refused, promptly, and said so.
    let e = Emulator::start();
    let wrong = format!("HostName=localhost;DeviceId=dev1;SharedAccessKey={OWNER_KEY}");
    let out = run(&[
        "iothub",
        "device-send",
        "--connection-string",
        &wrong,
        "--ca",
        &e.ca(),
        "--port",
        &e.port_of("listening on ", 0),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("put-token refused") && err.contains("401"), "{err}");
    // A bad start position is a usage error.
    let out = run(&["iothub", "monitor", "--connection-string", &service_cs(), "--start", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("offset:N"), "{}", text(&out.stderr));
}

#[test]
fn the_demo_runs_the_scenario_with_its_trace() {
    let dir = std::env::temp_dir().join(format!("amqpwire-iothub-demo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let json = dir.join("trace.jsonl");
    let out = ok(&["iothub", "demo", "--trace-json", json.to_str().unwrap()]);
    for step in [
        "1. tokens",
        "2. the service",
        "3. the device",
        "4. the service reads",
        "5. the device sends",
        "6. the monitor",
        "7. everyone closes",
        "done:",
    ] {
        assert!(out.contains(step), "{step:?} missing from:\n{out}");
    }
    assert!(out.contains("feedback: message") && out.contains("Success"), "{out}");
    assert!(out.contains("event: ") && out.contains("demo-device"), "{out}");
    assert!(out.contains("&sig=***&"), "the token is masked: {out}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let redirect = lines
        .iter()
        .any(|l| l["performative"] == "detach" && l.to_string().contains("amqp:link:redirect"));
    assert!(redirect, "the trace shows the redirect");
    let put_token = lines.iter().any(|l| l.to_string().contains("put-token"));
    assert!(put_token, "the trace shows the put-token");
    // Secrets are masked in the trace too.
    assert!(!lines.iter().any(|l| l.to_string().contains(DEVICE_KEY)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cloud_to_device_message_no_one_reads_is_abandoned_and_comes_again() {
    // `device-receive … | head -c0`: the reader is gone before the line is written. The
    // message is not completed (it was not shown): abandoned, the hub delivers it again;
    // and the command ends quietly, not "timed out".
    let e = Emulator::start();
    let (ca, port) = (e.ca(), e.port_of("listening on ", 0));
    let common = ["--ca", &ca, "--port", &port];
    let service = ["--connection-string", &service_cs()];
    ok(&[&["iothub", "send-c2d", "--device", "dev1", "--body", "unread"][..], &service, &common]
        .concat());
    let device = device_cs();
    let receive = [
        &["iothub", "device-receive", "--connection-string", &device, "--count", "1"][..],
        &common,
    ]
    .concat();
    let out = cli::run_writing_to(&receive, cli::closed_pipe());
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("timed out"), "{err}");
    assert_eq!(ok(&receive), "unread\n", "delivered again");
}

#[test]
fn a_registry_file_with_a_misspelt_section_is_refused() {
    let dir = std::env::temp_dir().join(format!("amqpwire-cli-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("registry.json");
    std::fs::write(&file, r#"{"devices": {"d1": null}, "policy": {"p": null}}"#).expect("write");
    let out = run(&["iothub", "emulate", "--registry", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"no section "policy" (a registry has "devices" and "policies")"#),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_name_given_twice_to_the_emulator_is_refused() {
    // The hub keeps one key per name: the connection string printed for a second key
    // was refused ("signature does not match").
    for (args, said) in [
        (
            &["--device", "dev1:AAAA", "--device", "dev1:BBBB"][..],
            r#"device "dev1" is given twice"#,
        ),
        (&["--policy", "p:AAAA", "--policy", "p"][..], r#"policy "p" is given twice"#),
        (
            &["--device", "d", "--module", "d/m", "--module", "d/m"][..],
            r#"module "d/m" is given twice"#,
        ),
    ] {
        let out = run(&[&["iothub", "emulate"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(said), "{args:?}: {}", text(&out.stderr));
    }
}

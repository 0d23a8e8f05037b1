//! Interoperability with AMQP 1.0 peers nobody here wrote: Qpid Proton (the reference C
//! implementation, through its Python binding) and rhea (node), in both directions: their
//! clients against amqpwire's broker, and amqpwire's client against their brokers, over
//! every transport each has (Proton: TCP and TLS; rhea: TCP, TLS, WebSocket and WebSocket
//! over TLS); and amqpwire's client against RabbitMQ's AMQP 1.0 plugin, a real broker
//! started and stopped here.
//!
//! The peers live in `tests/peers/` and are installed by `tests/peers/install.sh`, which
//! `.ci/run` calls. A peer that is not installed fails its tests with what to run: nothing
//! is skipped. Every case of a test runs even when an earlier one failed, and the test
//! lists all that failed, each with the tail of the peer's log.

#[path = "support/peers.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/tap.rs"]
mod tap;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amqpwire::broker::{listen_options, Broker};
use amqpwire::codec::{Fmt, Symbol, Timestamp, Uuid, Value};
use amqpwire::connection::LinkOptions;
use amqpwire::message::{AnnotationMap, Body, Message};
use amqpwire::runtime::transport::{ClientTlsConfig, Endpoint, TlsServerConfig};
use amqpwire::runtime::{ConnectOptions, Connection, Listener};
use amqpwire::types::{
    condition, Accepted, AttachSource, DeliveryState, Error as AmqpError, Header, MessageId,
    Properties, SequenceNo, Source,
};
use bytes::Bytes;

// ------------------------------------------------------------------ the peers

use peers::{free_port, tail, Scratch, INSTALL, PEERS};

/// The Python with python-qpid-proton (`AMQPWIRE_PROTON_PYTHON`, else the peers' venv).
fn proton_python() -> std::path::PathBuf {
    peers::venv_python("AMQPWIRE_PROTON_PYTHON", "proton", "Qpid Proton")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Rhea,
    Proton,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Self::Rhea => "rhea",
            Self::Proton => "proton",
        }
    }

    /// The peer's script, ready for its arguments.
    fn command(self) -> Command {
        match self {
            Self::Rhea => {
                peers::node_modules(&["rhea"]);
                let mut c = Command::new("node");
                c.arg(Path::new(PEERS).join("rhea_peer.js"));
                c
            }
            Self::Proton => {
                let mut c = Command::new(proton_python());
                c.arg(Path::new(PEERS).join("proton_peer.py"));
                c
            }
        }
    }

    /// The transports the peer has.
    fn transports(self) -> &'static [Transport] {
        match self {
            Self::Rhea => &[Transport::Tcp, Transport::Tls, Transport::Ws, Transport::Wss],
            Self::Proton => &[Transport::Tcp, Transport::Tls],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Self::Tcp => "amqp",
            Self::Tls => "amqps",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    fn secure(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// The host to name: the test certificate is for `localhost`.
    fn host(self) -> &'static str {
        if self.secure() {
            "localhost"
        } else {
            "127.0.0.1"
        }
    }
}

/// Test certificates, also as files for the peers: the CA, the server's (`localhost`) and
/// a client's (`device-1`).
struct Certs {
    pki: pki::Pki,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Certs {
    fn write(scratch: &Scratch) -> Self {
        let pki = pki::pki();
        let (ca, cert, key) =
            (scratch.path("ca.pem"), scratch.path("server.pem"), scratch.path("server.key"));
        std::fs::write(&ca, &pki.ca).expect("write");
        std::fs::write(&cert, &pki.server_cert).expect("write");
        std::fs::write(&key, &pki.server_key).expect("write");
        let (client_cert, client_key) = (scratch.path("client.pem"), scratch.path("client.key"));
        std::fs::write(&client_cert, &pki.client_cert).expect("write");
        std::fs::write(&client_key, &pki.client_key).expect("write");
        Self { pki, ca, cert, key, client_cert, client_key }
    }

    fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().with_ca_pem(self.pki.ca.as_bytes()).expect("the test CA")
    }

    /// [`client_tls`](Self::client_tls) presenting the client certificate.
    fn client_tls_with_cert(&self) -> ClientTlsConfig {
        self.client_tls()
            .with_client_cert_pem(self.pki.client_cert.as_bytes(), self.pki.client_key.as_bytes())
            .expect("the test client certificate")
    }

    fn server_tls(&self) -> TlsServerConfig {
        TlsServerConfig::from_pem(self.pki.server_cert.as_bytes(), self.pki.server_key.as_bytes())
            .expect("the test certificate")
    }

    /// The peer arguments that present the client certificate.
    fn client_cert_args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.client_cert.display().to_string(),
            "--key".into(),
            self.client_key.display().to_string(),
        ]
    }
}

/// The runtime the in-process brokers and relays run on while a peer's client runs.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A peer's broker, stopped when dropped.
struct PeerServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PeerServer {
    /// Starts the peer's broker; `extra` are more arguments for it.
    fn start(
        peer: Peer,
        transport: Transport,
        certs: &Certs,
        scratch: &Scratch,
        extra: &[String],
    ) -> Self {
        let port = free_port();
        let ready = scratch.path(&format!("ready-{port}"));
        let log = scratch.path(&format!("{}-server-{}-{port}.log", peer.name(), transport.name()));
        let mut cmd = peer.command();
        cmd.arg("server").args(["--port", &port.to_string()]).arg("--ready-file").arg(&ready);
        // The broker's own idle time-out: amqpwire must keep it alive with heartbeats.
        cmd.args(["--idle-timeout", "4000"]);
        if transport.secure() {
            cmd.arg("--tls-cert").arg(&certs.cert).arg("--tls-key").arg(&certs.key);
        }
        if matches!(transport, Transport::Ws | Transport::Wss) {
            cmd.arg("--ws");
        }
        cmd.args(extra);
        let child = spawn_ready(cmd, peer.name(), &ready, &log);
        Self { child, port, log }
    }

    fn url(&self, transport: Transport, user: &str) -> String {
        format!("{}://{user}{}:{}", transport.scheme(), transport.host(), self.port)
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a peer's server and waits until it has written its ready file.
fn spawn_ready(mut cmd: Command, name: &str, ready: &Path, log: &Path) -> Child {
    cmd.stdout(Stdio::null()).stderr(File::create(log).expect("log"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name} server: {e}: {INSTALL}"));
    let start = Instant::now();
    while !ready.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the {name} server exited ({status}):\n{}", tail(log));
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the {name} server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Runs a peer's client scenario to its end; `Err` with its log when it failed.
fn run_client(peer: Peer, args: &[String], scratch: &Scratch) -> Result<(), String> {
    let mut cmd = peer.command();
    cmd.arg("client").args(args);
    run_to_end(cmd, peer.name(), scratch)
}

/// Runs a peer's client to its end; `Err` with its log when it failed.
fn run_to_end(mut cmd: Command, name: &str, scratch: &Scratch) -> Result<(), String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let log = scratch.path(&format!("{name}-client-{}.log", N.fetch_add(1, Ordering::Relaxed)));
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("log"))
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("exited with {status}:\n{}", tail(&log))),
            Ok(None) if start.elapsed() > Duration::from_secs(60) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after 60 s:\n{}", tail(&log)));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The cases of one test: each runs, and the test fails at the end listing those that did.
#[derive(Default)]
struct Cases {
    failed: Vec<String>,
    passed: usize,
}

impl Cases {
    fn record(&mut self, what: &str, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.passed += 1;
                eprintln!("ok   {what}");
            }
            Err(e) => {
                eprintln!("FAIL {what}: {e}");
                self.failed.push(format!("{what}: {e}"));
            }
        }
    }

    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} cases failed:\n\n{}",
            self.failed.len(),
            self.failed.len() + self.passed,
            self.failed.join("\n\n")
        );
    }
}

// ------------------------------------------- the peers' clients against amqpwire

/// The ports of an amqpwire broker listening on every transport.
struct BrokerPorts {
    tcp: u16,
    tls: u16,
    ws: u16,
    wss: u16,
}

impl BrokerPorts {
    fn port(&self, t: Transport) -> u16 {
        match t {
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
            Transport::Ws => self.ws,
            Transport::Wss => self.wss,
        }
    }
}

/// An amqpwire broker on every transport; with `users`, SASL with passwords is required;
/// with `client_ca`, TLS clients are asked for a certificate and EXTERNAL is offered.
async fn start_broker(users: &[(String, String)], certs: &Certs, client_ca: bool) -> BrokerPorts {
    let broker = Broker::new();
    let mut ports = Vec::new();
    for t in [Transport::Tcp, Transport::Tls, Transport::Ws, Transport::Wss] {
        let tls = t.secure().then(|| {
            let tls = certs.server_tls();
            if client_ca {
                tls.with_client_ca_pem(certs.pki.ca.as_bytes(), false).expect("client CA")
            } else {
                tls
            }
        });
        let url = format!("{}://127.0.0.1:0", t.scheme());
        let listener = Listener::bind(&url, listen_options(users, tls, None)).await.expect("bind");
        ports.push(listener.endpoint().port);
        let b = broker.clone();
        tokio::spawn(async move { b.serve(listener).await });
    }
    BrokerPorts { tcp: ports[0], tls: ports[1], ws: ports[2], wss: ports[3] }
}

/// A peer client's arguments for a scenario against `port` over `transport`.
fn client_args(
    scenario: &str,
    port: u16,
    transport: Transport,
    certs: &Certs,
    sasl: &[&str],
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--port",
        &port.to_string(),
        "--scenario",
        scenario,
        "--transport",
        transport.name(),
        "--host",
        transport.host(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if transport.secure() {
        a.push("--ca".into());
        a.push(certs.ca.display().to_string());
    }
    a.extend(sasl.iter().map(|s| s.to_string()));
    a
}

/// What a peer's client runs against amqpwire's broker, over TCP (the transports each get
/// `basic` and `messages`).
const CLIENT_SCENARIOS: &[&str] = &[
    "large4m",
    "dispositions",
    "drain",
    "many-links",
    "reuse-name",
    "detach-error",
    "heartbeat-peer",
];

fn peer_clients_against_amqpwire(peer: Peer) {
    let scratch = Scratch::new("interop", &format!("{}-clients", peer.name()));
    let certs = Certs::write(&scratch);
    let rt = runtime();
    let open = rt.block_on(start_broker(&[], &certs, false));
    let secure = rt.block_on(start_broker(&[("alice".into(), "secret".into())], &certs, true));
    let mut cases = Cases::default();
    let anonymous: &[&str] = &["--sasl", "anonymous"];
    for &t in peer.transports() {
        for scenario in ["basic", "messages"] {
            let args = client_args(scenario, open.port(t), t, &certs, anonymous);
            cases.record(
                &format!("{} client, {}, {scenario}", peer.name(), t.name()),
                run_client(peer, &args, &scratch),
            );
        }
    }
    for scenario in CLIENT_SCENARIOS {
        let args = client_args(scenario, open.tcp, Transport::Tcp, &certs, anonymous);
        cases.record(
            &format!("{} client, tcp, {scenario}", peer.name()),
            run_client(peer, &args, &scratch),
        );
    }
    // SASL: none at all, PLAIN against a broker with users, and a wrong password refused.
    let args = client_args("basic", open.tcp, Transport::Tcp, &certs, &["--sasl", "none"]);
    cases.record(&format!("{} client, no SASL", peer.name()), run_client(peer, &args, &scratch));
    let plain: &[&str] = &["--sasl", "plain", "--user", "alice", "--password", "secret"];
    for t in [Transport::Tcp, Transport::Tls] {
        let args = client_args("basic", secure.port(t), t, &certs, plain);
        cases.record(
            &format!("{} client, {}, PLAIN", peer.name(), t.name()),
            run_client(peer, &args, &scratch),
        );
    }
    if peer == Peer::Proton {
        // Proton's SCRAM comes from Cyrus SASL (rhea has none).
        let scram: &[&str] = &["--sasl", "scram", "--user", "alice", "--password", "secret"];
        let args = client_args("basic", secure.tcp, Transport::Tcp, &certs, scram);
        cases.record(
            &format!("{} client, tcp, SCRAM-SHA-256", peer.name()),
            run_client(peer, &args, &scratch),
        );
    }
    // EXTERNAL: the TLS client certificate is the identity.
    let mut args =
        client_args("basic", secure.tls, Transport::Tls, &certs, &["--sasl", "external"]);
    args.extend(certs.client_cert_args());
    cases.record(
        &format!("{} client, tls, EXTERNAL with a client certificate", peer.name()),
        run_client(peer, &args, &scratch),
    );
    // An open whose container-id is the empty string.
    let mut args = client_args("basic", open.tcp, Transport::Tcp, &certs, anonymous);
    args.extend(["--container-id".to_string(), String::new()]);
    cases.record(
        &format!("{} client, empty container-id", peer.name()),
        run_client(peer, &args, &scratch),
    );
    if peer == Peer::Rhea {
        // Written with rhea's own frame encoder; Proton's API cannot send it.
        let args =
            client_args("transfer-before-attach", open.tcp, Transport::Tcp, &certs, anonymous);
        cases.record(
            &format!("{} client, a transfer before its attach ends the session", peer.name()),
            run_client(peer, &args, &scratch),
        );
    }
    let wrong: &[&str] = &["--sasl", "plain", "--user", "alice", "--password", "WRONG"];
    let args = client_args("wrong-password", secure.tcp, Transport::Tcp, &certs, wrong);
    cases.record(
        &format!("{} client, wrong password refused", peer.name()),
        run_client(peer, &args, &scratch),
    );
    let args = client_args("basic", secure.tcp, Transport::Tcp, &certs, anonymous);
    let r = match run_client(peer, &args, &scratch) {
        Ok(()) => Err("a broker with users let ANONYMOUS in".to_string()),
        // Refused by SASL, not failed some other way.
        Err(e) if e.contains("amqp:unauthorized-access") => Ok(()),
        Err(e) => Err(format!("failed, but not with amqp:unauthorized-access: {e}")),
    };
    cases.record(&format!("{} client, ANONYMOUS refused where users are required", peer.name()), r);
    cases.finish();
}

#[test]
fn rhea_clients_against_the_amqpwire_broker() {
    peer_clients_against_amqpwire(Peer::Rhea);
}

#[test]
fn proton_clients_against_the_amqpwire_broker() {
    peer_clients_against_amqpwire(Peer::Proton);
}

// --------------------------------------------- amqpwire's client against the peers

type Outcome = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Turns any error into the case's failure text.
fn why<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

async fn within<T, E: std::fmt::Display>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(20), f).await {
        Ok(r) => r.map_err(why(what)),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

/// Messages with every body kind and every field of the header and properties, with typed
/// annotations and application properties; `user` is the user-id (RabbitMQ checks it
/// against the authenticated user).
fn rich_messages(user: &'static str) -> Vec<Message> {
    let props = |n: u64| Properties {
        message_id: Some(match n % 4 {
            0 => MessageId::String(format!("id-{n}").into()),
            1 => MessageId::Ulong(n),
            2 => MessageId::Uuid(Uuid([n as u8; 16])),
            _ => MessageId::Binary(Bytes::from(vec![n as u8; 3])),
        }),
        user_id: Some(Bytes::from_static(user.as_bytes())),
        to: Some("q.rich".into()),
        subject: Some(format!("subject {n}").into()),
        reply_to: Some("replies".into()),
        correlation_id: Some(MessageId::String("corr".into())),
        content_type: Some(Symbol::from("application/octet-stream")),
        content_encoding: Some(Symbol::from("identity")),
        absolute_expiry_time: Some(Timestamp(1_900_000_000_000)),
        creation_time: Some(Timestamp(1_700_000_000_123)),
        group_id: Some("group".into()),
        group_sequence: Some(SequenceNo(n as u32)),
        reply_to_group_id: Some("reply-group".into()),
    };
    let app = AnnotationMap::from_pairs([
        ("int", Value::from(-7i32)),
        ("long", Value::from(1i64 << 40)),
        ("double", Value::Double(2.5)),
        ("string", Value::from("text")),
        ("bool", Value::from(true)),
        ("timestamp", Value::Timestamp(Timestamp(1_700_000_000_000))),
        ("uuid", Value::Uuid(Uuid([7; 16]))),
        ("binary", Value::Binary(Bytes::from_static(b"\x00\x01"), Fmt::Auto)),
    ]);
    let annotations = AnnotationMap::from_pairs([
        (Value::Symbol(Symbol::from("x-opt-partition-key"), Fmt::Auto), Value::from("pk")),
        (
            Value::Symbol(Symbol::from("x-opt-symbol"), Fmt::Auto),
            Value::Symbol(Symbol::from("sym"), Fmt::Auto),
        ),
        (Value::Symbol(Symbol::from("x-opt-seq"), Fmt::Auto), Value::from(42i64)),
    ]);
    let bodies = vec![
        Body::Data([Bytes::from_static(b"data body")].into_iter().collect()),
        Body::Data(
            [Bytes::from_static(b"part 1"), Bytes::from_static(b"part 2")].into_iter().collect(),
        ),
        Body::Value(Value::from("a string value")),
        Body::Value(Value::Map(
            vec![
                (Value::from("k"), Value::from(1i64)),
                (Value::from("nested"), Value::List(vec![Value::Null], Fmt::Auto)),
            ],
            Fmt::Auto,
        )),
        Body::Value(Value::List(
            vec![Value::from(1i32), Value::Double(0.5), Value::Null],
            Fmt::Auto,
        )),
        Body::Value(Value::Binary(Bytes::from_static(b"\xff\x00"), Fmt::Auto)),
        Body::Value(Value::Symbol(Symbol::from("a-symbol"), Fmt::Auto)),
        Body::Value(Value::Timestamp(Timestamp(1_600_000_000_000))),
        Body::Value(Value::Uuid(Uuid([9; 16]))),
        Body::Value(Value::from(false)),
        Body::Value(Value::Null),
        Body::Sequence(vec![vec![Value::from("a"), Value::from(2i64)], vec![Value::from(true)]]),
        Body::Empty,
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(n, body)| Message {
            header: Some(Header {
                durable: n % 2 == 0,
                priority: (n % 10) as u8,
                ttl: Some(60_000),
                first_acquirer: n % 3 == 0,
                delivery_count: 0,
            }),
            message_annotations: Some(annotations.clone()),
            properties: Some(props(n as u64)),
            application_properties: Some(app.clone()),
            body,
            ..Message::default()
        })
        .collect()
}

/// How amqpwire reaches a peer's broker.
struct Target<'a> {
    url: String,
    certs: &'a Certs,
}

impl Target<'_> {
    async fn connect(&self) -> Result<Connection, String> {
        self.connect_to(&self.url).await
    }

    async fn connect_to(&self, url: &str) -> Result<Connection, String> {
        let options = ConnectOptions { tls: self.certs.client_tls(), ..ConnectOptions::default() };
        let endpoint = Endpoint::parse(url).map_err(why("URL"))?;
        within("connect", Connection::connect_with(&endpoint, options)).await
    }
}

/// Connects, sends one message and closes: enough to show the way in worked.
async fn one_message(conn: Connection, address: &str) -> Outcome {
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("sasl-sender", address)).await?;
    within("send", sender.send(&Message::with_data(&b"authenticated"[..]))).await?;
    within("close", conn.close(None)).await
}

/// A wrong password must be refused by the SASL outcome, not fail some other way.
fn refused_by_sasl(r: Result<Connection, String>) -> Outcome {
    match r {
        Ok(_) => Err("a wrong password was let in".into()),
        Err(e) if e.contains("sasl-outcome 1 (auth)") => Ok(()),
        Err(e) => Err(format!("failed, but not with the SASL outcome auth: {e}")),
    }
}

/// amqpwire's client against a peer broker that checks passwords (Proton: Cyrus SASL) and
/// takes TLS client certificates (both): PLAIN, SCRAM-SHA-256, wrong passwords, ANONYMOUS
/// where it is not offered, EXTERNAL, and an open with an empty container-id.
fn secured_against(peer: Peer, certs: &Certs, scratch: &Scratch, cases: &mut Cases) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let name = |what: &str| format!("amqpwire client → {} broker, {what}", peer.name());
    let mut tls_args = vec!["--client-ca".to_string(), certs.ca.display().to_string()];
    if peer == Peer::Proton {
        let users = ["--users".to_string(), "alice:secret".to_string()];
        tls_args.extend(users.clone());
        let tcp = PeerServer::start(peer, Transport::Tcp, certs, scratch, &users);
        let t = Target { url: tcp.url(Transport::Tcp, ""), certs };
        let with_log = |r: Outcome| {
            r.map_err(|e| format!("{e}\n{} broker log:\n{}", peer.name(), tail(&tcp.log)))
        };
        let scram = "?sasl-mechanism=SCRAM-SHA-256";
        let r = rt.block_on(async {
            one_message(plain(&t, "alice:secret").await?, "q.plain").await?;
            let url = format!("{}{scram}", tcp.url(Transport::Tcp, "alice:secret@"));
            one_message(t.connect_to(&url).await?, "q.scram").await
        });
        cases.record(&name("tcp, Cyrus SASL, PLAIN and SCRAM-SHA-256"), with_log(r));
        let r = rt.block_on(async {
            refused_by_sasl(plain(&t, "alice:WRONG").await)?;
            let url = format!("{}{scram}", tcp.url(Transport::Tcp, "alice:WRONG@"));
            refused_by_sasl(t.connect_to(&url).await)
        });
        cases.record(&name("tcp, Cyrus SASL, wrong passwords refused (PLAIN, SCRAM)"), r);
        let r = match rt.block_on(t.connect()) {
            Ok(_) => Err("ANONYMOUS was let in".to_string()),
            Err(e) if e.contains("does not offer ANONYMOUS") => Ok(()),
            Err(e) => Err(format!("failed some other way: {e}")),
        };
        cases.record(&name("tcp, Cyrus SASL, no ANONYMOUS where it is not offered"), r);
    }
    let tls = PeerServer::start(peer, Transport::Tls, certs, scratch, &tls_args);
    let with_log =
        |r: Outcome| r.map_err(|e| format!("{e}\n{} broker log:\n{}", peer.name(), tail(&tls.log)));
    let url = format!("{}?sasl-mechanism=EXTERNAL", tls.url(Transport::Tls, ""));
    let r = rt.block_on(async {
        let options =
            ConnectOptions { tls: certs.client_tls_with_cert(), ..ConnectOptions::default() };
        let endpoint = Endpoint::parse(&url).map_err(why("URL"))?;
        let conn = within("connect", Connection::connect_with(&endpoint, options)).await?;
        one_message(conn, "q.external").await
    });
    cases.record(&name("tls, EXTERNAL with a client certificate"), with_log(r));
    let r = rt.block_on(async {
        let options = ConnectOptions {
            tls: certs.client_tls_with_cert(),
            configure: Some(Box::new(|c: &mut amqpwire::connection::Config| {
                c.container_id = String::new();
            })),
            ..ConnectOptions::default()
        };
        let endpoint = Endpoint::parse(&url).map_err(why("URL"))?;
        let conn = within("connect", Connection::connect_with(&endpoint, options)).await?;
        one_message(conn, "q.empty-container-id").await
    });
    cases.record(&name("tls, an open with an empty container-id"), with_log(r));
}

/// Every rich message sent unsettled and accepted, then received back unchanged.
async fn rich_round_trip(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("rich-sender", "q.rich")).await?;
    let sent = rich_messages("anonymous");
    for m in &sent {
        let outcome = within("send", sender.send(m)).await?;
        ensure!(outcome == DeliveryState::Accepted(Accepted {}), "outcome {outcome:?}");
    }
    let rx = within("attach receiver", session.receiver("rich-receiver", "q.rich", 20)).await?;
    for (i, m) in sent.iter().enumerate() {
        let d = within("recv", rx.recv()).await?;
        let got = d.message().map_err(why("decode"))?;
        ensure!(&got == m, "message {i} came back different:\nsent {m:?}\ngot  {got:?}");
        rx.accept(&d).map_err(why("accept"))?;
    }
    within("detach", sender.close()).await?;
    within("detach", rx.close()).await?;
    within("close", conn.close(None)).await
}

/// Accepted, released (redelivered), rejected and pre-settled.
async fn outcomes(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("outcome-sender", "q.outcomes")).await?;
    for body in ["accept me", "release me", "reject me"] {
        within("send", sender.send(&Message::with_data(body.as_bytes().to_vec()))).await?;
    }
    within("send settled", sender.send_settled(&Message::with_data(&b"settled"[..]))).await?;
    let rx =
        within("attach receiver", session.receiver("outcome-receiver", "q.outcomes", 10)).await?;
    let body = |d: &amqpwire::runtime::Delivery| -> Result<Vec<u8>, String> {
        let m = d.message().map_err(why("decode"))?;
        Ok(m.body.as_data().map(|b| b.to_vec()).unwrap_or_default())
    };
    let mut released_again = false;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let d = within("recv", rx.recv()).await?;
        let b = body(&d)?;
        match &b[..] {
            b"accept me" | b"settled" => rx.accept(&d).map_err(why("accept"))?,
            b"release me" if !released_again => {
                released_again = true;
                rx.release(&d).map_err(why("release"))?;
                continue;
            }
            b"release me" => rx.accept(&d).map_err(why("accept"))?,
            b"reject me" => {
                let e = AmqpError::new(condition::INTERNAL_ERROR, "rejected on purpose");
                rx.reject(&d, Some(e)).map_err(why("reject"))?;
            }
            other => {
                return Err(format!("unexpected message {:?}", String::from_utf8_lossy(other)))
            }
        }
        seen.push(b);
    }
    ensure!(released_again, "the released message did not come again");
    let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    ensure!(extra.is_err(), "more came than was sent: {extra:?}");
    within("close", conn.close(None)).await
}

/// A 4 MiB message, in many frames, there and back.
async fn large(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let m = Message::with_data(body);
    let sender = within("attach sender", session.sender("large-sender", "q.large")).await?;
    let outcome = within("send", sender.send(&m)).await?;
    ensure!(outcome == DeliveryState::Accepted(Accepted {}), "outcome {outcome:?}");
    let rx = within("attach receiver", session.receiver("large-receiver", "q.large", 2)).await?;
    let d = within("recv", rx.recv()).await?;
    ensure!(d.message().map_err(why("decode"))? == m, "the 4 MiB message came back different");
    rx.accept(&d).map_err(why("accept"))?;
    within("close", conn.close(None)).await
}

/// Credit the application grants: exactly that many arrive; a drain brings the rest of
/// the credit's worth and ends with none left.
async fn drain(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("drain-sender", "q.drain")).await?;
    for i in 0..3u8 {
        within("send", sender.send(&Message::with_data(vec![i]))).await?;
    }
    let rx = within("attach receiver", session.receiver("drain-receiver", "q.drain", 0)).await?;
    rx.set_credit(2).map_err(why("credit"))?;
    for _ in 0..2 {
        let d = within("recv", rx.recv()).await?;
        rx.accept(&d).map_err(why("accept"))?;
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    ensure!(extra.is_err(), "a third message came on a credit of two");
    rx.set_credit(5).map_err(why("credit"))?;
    within("drain", rx.drain()).await?;
    let d = within("recv", rx.recv()).await?;
    ensure!(
        d.message().map_err(why("decode"))?.body.as_data().map(|b| b.to_vec()) == Some(vec![2]),
        "the third"
    );
    rx.accept(&d).map_err(why("accept"))?;
    within("close", conn.close(None)).await
}

/// A dynamic node: the peer names it, and a message sent there arrives.
async fn dynamic(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let mut o = LinkOptions::receiver("dynamic-receiver", "");
    o.source = Some(AttachSource::Source(Source { dynamic: true, ..Source::default() }));
    let rx = within("attach dynamic", session.attach_receiver(o, 5)).await?;
    let address = match &rx.remote().source {
        Some(AttachSource::Source(s)) => s.address.clone(),
        other => return Err(format!("no source in the answer: {other:?}")),
    };
    let Some(address) = address else { return Err("the peer named no dynamic address".into()) };
    let sender =
        within("attach sender", session.sender("dynamic-sender", address.as_ref())).await?;
    within("send", sender.send(&Message::with_data(&b"to the dynamic node"[..]))).await?;
    let d = within("recv", rx.recv()).await?;
    let body = d.message().map_err(why("decode"))?.body.as_data().map(|b| b.to_vec());
    ensure!(body == Some(b"to the dynamic node".to_vec()), "got {body:?}");
    rx.accept(&d).map_err(why("accept"))?;
    within("close", conn.close(None)).await
}

/// Three sessions, each with two senders and two receivers.
async fn many_links(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let mut links = Vec::new();
    let mut sessions = Vec::new();
    for s in 0..3 {
        let session = within("begin", conn.begin_session()).await?;
        for n in 0..2 {
            let address = format!("q.many.{s}.{n}");
            let snd =
                within("attach sender", session.sender(&format!("s-{s}-{n}"), &address)).await?;
            let rx =
                within("attach receiver", session.receiver(&format!("r-{s}-{n}"), &address, 5))
                    .await?;
            links.push((address, snd, rx));
        }
        sessions.push(session);
    }
    for (address, snd, _) in &links {
        for i in 0..2 {
            within("send", snd.send(&Message::with_data(format!("{address}/{i}").into_bytes())))
                .await?;
        }
    }
    for (address, _, rx) in &links {
        for i in 0..2 {
            let d = within("recv", rx.recv()).await?;
            let body = d.message().map_err(why("decode"))?.body.as_data().map(|b| b.to_vec());
            ensure!(body == Some(format!("{address}/{i}").into_bytes()), "{address}: got {body:?}");
            rx.accept(&d).map_err(why("accept"))?;
        }
    }
    within("close", conn.close(None)).await
}

/// Both sides' idle time-outs honoured: ours (2 s, asked in the URL) and the broker's (4 s):
/// after 4.5 s of silence from the application the connection still works. Each side
/// heartbeats at half the other's time-out, so a stall of under 2 s cannot fail it.
async fn heartbeats(t: &Target<'_>) -> Outcome {
    let conn = t.connect_to(&format!("{}?idle-timeout=2000", t.url)).await?;
    let remote = conn.remote_open().map(|o| o.idle_time_out);
    ensure!(remote == Some(Some(4000)), "the broker's open said idle-time-out {remote:?}");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let session = within("begin after idling", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("idle-sender", "q.idle")).await?;
    within("send", sender.send(&Message::with_data(&b"still here"[..]))).await?;
    within("close", conn.close(None)).await
}

/// A link closed with an error, then the connection closed with one: the peer answers both.
async fn errors(t: &Target<'_>) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("error-sender", "q.errors")).await?;
    let e = AmqpError::new(condition::INTERNAL_ERROR, "detached on purpose");
    within("detach with an error", sender.close_with_error(e)).await?;
    let e = AmqpError::new(condition::CONNECTION_FORCED, "closing on purpose");
    within("close with an error", conn.close(Some(e))).await
}

async fn plain(t: &Target<'_>, user: &str) -> Result<Connection, String> {
    let url = t.url.replacen("://", &format!("://{user}@"), 1);
    t.connect_to(&url).await
}

/// The SASL cases: PLAIN (where the peer's broker checks passwords), a wrong password
/// refused with a SASL outcome, and no SASL layer at all.
async fn sasl(peer: Peer, t: &Target<'_>) -> Outcome {
    if peer == Peer::Rhea {
        let conn = plain(t, "alice:secret").await?;
        within("close", conn.close(None)).await?;
        match plain(t, "alice:WRONG").await {
            Ok(_) => return Err("a wrong password was let in".into()),
            Err(e) => ensure!(e.contains("auth"), "a wrong password failed some other way: {e}"),
        }
    }
    let options = ConnectOptions {
        tls: t.certs.client_tls(),
        configure: Some(Box::new(|c: &mut amqpwire::connection::Config| c.sasl_client = None)),
        ..ConnectOptions::default()
    };
    let endpoint = Endpoint::parse(&t.url).map_err(why("URL"))?;
    let conn = within("connect without SASL", Connection::connect_with(&endpoint, options)).await?;
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("nosasl-sender", "q.nosasl")).await?;
    within("send", sender.send(&Message::with_data(&b"no sasl"[..]))).await?;
    within("close", conn.close(None)).await
}

fn amqpwire_against(peer: Peer) {
    let scratch = Scratch::new("interop", &format!("{}-server", peer.name()));
    let certs = Certs::write(&scratch);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut cases = Cases::default();
    for &transport in peer.transports() {
        let server = PeerServer::start(peer, transport, &certs, &scratch, &[]);
        let t = Target { url: server.url(transport, ""), certs: &certs };
        let name = |what: &str| {
            format!("amqpwire client → {} broker, {}, {what}", peer.name(), transport.name())
        };
        let with_log = |r: Outcome| {
            r.map_err(|e| format!("{e}\n{} broker log:\n{}", peer.name(), tail(&server.log)))
        };
        cases
            .record(&name("every body kind and field"), with_log(rt.block_on(rich_round_trip(&t))));
        cases.record(&name("outcomes"), with_log(rt.block_on(outcomes(&t))));
        cases.record(&name("4 MiB message"), with_log(rt.block_on(large(&t))));
        cases.record(&name("credit and drain"), with_log(rt.block_on(drain(&t))));
        cases.record(&name("dynamic node"), with_log(rt.block_on(dynamic(&t))));
        cases.record(&name("many sessions and links"), with_log(rt.block_on(many_links(&t))));
        cases.record(&name("detach and close with errors"), with_log(rt.block_on(errors(&t))));
        cases.record(&name("SASL"), with_log(rt.block_on(sasl(peer, &t))));
        if !transport.secure() {
            cases.record(&name("heartbeats both ways"), with_log(rt.block_on(heartbeats(&t))));
        }
    }
    secured_against(peer, &certs, &scratch, &mut cases);
    cases.finish();
}

#[test]
fn amqpwire_client_against_rhea() {
    amqpwire_against(Peer::Rhea);
}

#[test]
fn amqpwire_client_against_proton() {
    amqpwire_against(Peer::Proton);
}

// ------------------------------------------------------------------ RabbitMQ

/// A throwaway RabbitMQ node (`tests/peers/rabbitmq.sh`) listening on TCP and TLS (with
/// a CA of its own at `tls/ca.pem`), stopped when dropped.
struct Rabbit {
    scratch: Scratch,
    port: u16,
    tls_port: u16,
}

impl Rabbit {
    fn start() -> Self {
        let script = Path::new(PEERS).join("rabbitmq.sh");
        let found = Command::new("sh").args(["-c", "command -v rabbitmq-server"]).output();
        assert!(found.is_ok_and(|o| o.status.success()), "RabbitMQ is not installed: {INSTALL}");
        // The script derives two more ports from the first (+10000 for its epmd, +20000
        // for Erlang distribution) and wants it below 45536. Those two are not reserved:
        // an outgoing connection of another test may take one as its local port before the
        // node binds it, and the node then fails to start. A start that fails so is tried
        // again on other ports; any other failure fails at once.
        let mut tries = 0;
        loop {
            tries += 1;
            let below = || loop {
                let p = free_port();
                if p < 45_536 {
                    break p;
                }
            };
            let port = below();
            let tls_port = loop {
                let p = free_port();
                if p != port && p != port + 10_000 && p != port + 20_000 {
                    break p;
                }
            };
            let scratch = Scratch::new("interop", "rabbitmq");
            let out = Command::new(&script)
                .arg("start")
                .arg(scratch.dir())
                .arg(port.to_string())
                .arg(tls_port.to_string())
                .output()
                .expect("rabbitmq.sh");
            if out.status.success() {
                return Self { scratch, port, tls_port };
            }
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let taken = ["epmd did not start", "already in use", "eaddrinuse"]
                .iter()
                .any(|t| said.to_ascii_lowercase().contains(t));
            assert!(taken && tries < 4, "RabbitMQ did not start (try {tries}):\n{said}");
        }
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(PEERS).join("rabbitmq.sh"))
            .arg("stop")
            .arg(self.scratch.dir())
            .output();
    }
}

/// RabbitMQ 3.10 keeps what it does not know of a message but may add to the header and
/// annotations: compare what a broker must not change.
fn same_content(a: &Message, b: &Message) -> bool {
    a.properties == b.properties
        && a.application_properties == b.application_properties
        && a.body == b.body
}

async fn rabbit_round_trip(t: &Target<'_>, address: &str) -> Outcome {
    let mut failed = Vec::new();
    // RabbitMQ 3.10's AMQP 1.0 plugin (it converts to AMQP 0-9-1 inside) cannot carry
    // these, whoever sends them (docs/interop.md): two data sections come back as one, an
    // amqp-value holding a list crashes its session process and resets the connection, an
    // amqp-sequence and an empty body come back as something else.
    let unsupported = |m: &Message| match &m.body {
        Body::Data(parts) => parts.len() > 1,
        Body::Value(Value::List(..)) | Body::Sequence(_) | Body::Empty => true,
        _ => false,
    };
    for (i, m) in rich_messages("guest").into_iter().enumerate() {
        if unsupported(&m) {
            continue;
        }
        if let Err(e) = rabbit_one(t, &format!("{address}-{i}"), &m).await {
            failed.push(format!("message {i} ({:?}): {e}", m.body));
        }
    }
    ensure!(failed.is_empty(), "{}", failed.join("\n"));
    Ok(())
}

async fn rabbit_one(t: &Target<'_>, address: &str, m: &Message) -> Outcome {
    let conn = t.connect().await?;
    let session = within("begin", conn.begin_session()).await?;
    let sender = within("attach sender", session.sender("rabbit-sender", address)).await?;
    let outcome = within("send", sender.send(m)).await?;
    ensure!(outcome == DeliveryState::Accepted(Accepted {}), "outcome {outcome:?}");
    let rx = within("attach receiver", session.receiver("rabbit-receiver", address, 20)).await?;
    let d = within("recv", rx.recv()).await?;
    let got = d.message().map_err(why("decode"))?;
    ensure!(same_content(&got, m), "came back different:\nsent {m:?}\ngot  {got:?}");
    rx.accept(&d).map_err(why("accept"))?;
    within("close", conn.close(None)).await
}

async fn rabbit_large(t: &Target<'_>, address: &str) -> Outcome {
    let conn = t.connect().await?;
    let open = conn.remote_open().map(|o| o.max_frame_size);
    let session = within("begin", conn.begin_session()).await?;
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let m = Message::with_data(body);
    let sender = within("attach sender", session.sender("rabbit-large-sender", address)).await?;
    let outcome = within("send", sender.send(&m)).await?;
    ensure!(
        outcome == DeliveryState::Accepted(Accepted {}),
        "outcome {outcome:?} (max-frame-size {open:?})"
    );
    let rx =
        within("attach receiver", session.receiver("rabbit-large-receiver", address, 2)).await?;
    let d = within("recv", rx.recv()).await?;
    let got = d.message().map_err(why("decode"))?;
    ensure!(got.body == m.body, "the 4 MiB message came back different");
    rx.accept(&d).map_err(why("accept"))?;
    within("close", conn.close(None)).await
}

#[test]
fn amqpwire_client_against_rabbitmq() {
    let rabbit = Rabbit::start();
    let scratch = Scratch::new("interop", "rabbitmq-client");
    let certs = Certs::write(&scratch);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut cases = Cases::default();
    let port = rabbit.port;
    let plain = Target { url: format!("amqp://guest:guest@127.0.0.1:{port}"), certs: &certs };
    let anonymous = Target { url: format!("amqp://127.0.0.1:{port}"), certs: &certs };
    let log = |r: Outcome| {
        r.map_err(|e| {
            let log = rabbit.scratch.path(&format!("log/amqpwire-{port}@localhost.log"));
            format!("{e}\nRabbitMQ log:\n{}", tail(&log))
        })
    };
    cases.record(
        "amqpwire client → RabbitMQ, PLAIN, every body kind it carries, every field (/queue/ address)",
        log(rt.block_on(rabbit_round_trip(&plain, "/queue/amqpwire-rich"))),
    );
    cases.record(
        "amqpwire client → RabbitMQ, ANONYMOUS, bare queue name",
        log(rt.block_on(rabbit_round_trip(&anonymous, "amqpwire-bare"))),
    );
    cases.record(
        "amqpwire client → RabbitMQ, 4 MiB message in 32 KiB frames",
        log(rt.block_on(rabbit_large(&plain, "/queue/amqpwire-large"))),
    );
    let wrong = Target { url: format!("amqp://guest:WRONG@127.0.0.1:{port}"), certs: &certs };
    let r = match rt.block_on(wrong.connect()) {
        Ok(_) => Err("a wrong password was let in".to_string()),
        Err(e) if e.contains("auth") => Ok(()),
        Err(e) => Err(format!("a wrong password failed some other way: {e}")),
    };
    cases.record("amqpwire client → RabbitMQ, wrong password refused", r);
    // TLS, against the node's own CA.
    let ca = std::fs::read(rabbit.scratch.path("tls/ca.pem")).expect("RabbitMQ's CA");
    let tls = ClientTlsConfig::new().with_ca_pem(&ca).expect("RabbitMQ's CA");
    let url = format!("amqps://guest:guest@localhost:{}", rabbit.tls_port);
    let r = rt.block_on(async {
        let options = ConnectOptions { tls, ..ConnectOptions::default() };
        let endpoint = Endpoint::parse(&url).map_err(why("URL"))?;
        let conn = within("connect", Connection::connect_with(&endpoint, options)).await?;
        let session = within("begin", conn.begin_session()).await?;
        let address = "/queue/amqpwire-tls";
        let m = &rich_messages("guest")[0];
        let sender = within("attach sender", session.sender("rabbit-tls-sender", address)).await?;
        let outcome = within("send", sender.send(m)).await?;
        ensure!(outcome == DeliveryState::Accepted(Accepted {}), "outcome {outcome:?}");
        let rx = within("attach receiver", session.receiver("rabbit-tls-rx", address, 5)).await?;
        let d = within("recv", rx.recv()).await?;
        let got = d.message().map_err(why("decode"))?;
        ensure!(same_content(&got, m), "came back different:\nsent {m:?}\ngot  {got:?}");
        rx.accept(&d).map_err(why("accept"))?;
        within("close", conn.close(None)).await
    });
    cases.record("amqpwire client → RabbitMQ, TLS, PLAIN, a rich message round trip", log(r));
    cases.finish();
}

// ------------------------------------------------- peers through amqpwire's relay

/// A relay from `listen` to `upstream` with `tap`; its port.
async fn start_proxy(
    listen: Transport,
    upstream: &str,
    certs: &Certs,
    tap: std::sync::Arc<tap::Recorder>,
) -> u16 {
    use amqpwire::proxy::{Proxy, ProxyOptions};
    let path = if matches!(listen, Transport::Ws | Transport::Wss) { "/" } else { "" };
    let url = format!("{}://127.0.0.1:0{path}", listen.scheme());
    let endpoint = Endpoint::parse_listen(&url).expect("listen URL");
    let mut options = ProxyOptions::new(
        &endpoint,
        upstream.parse().expect("upstream URL"),
        listen.secure().then(|| certs.server_tls()),
    );
    options.tls = certs.client_tls();
    let proxy = Proxy::bind(&url, options, tap).await.expect("the proxy listens");
    let port = proxy.endpoint().port;
    tokio::spawn(async move { proxy.run().await });
    port
}

/// rhea and Qpid Proton talk to each other through two relays in a row, on every pair of
/// transports each has: client → relay A (the client's transport) → relay B (WebSocket over
/// TLS) → server (the server's transport). The client's scenario passes, and the bytes
/// seen on both sides of the hop between the relays are the same, both ways.
#[test]
fn rhea_and_proton_talk_through_the_relay_byte_for_byte() {
    let scratch = Scratch::new("interop", "relay");
    let certs = Certs::write(&scratch);
    let rt = runtime();
    let mut cases = Cases::default();
    let anonymous: &[&str] = &["--sasl", "anonymous"];
    for (client, server) in [(Peer::Rhea, Peer::Proton), (Peer::Proton, Peer::Rhea)] {
        for &st in server.transports() {
            let srv = PeerServer::start(server, st, &certs, &scratch, &[]);
            for &ct in client.transports() {
                let what = format!(
                    "{} client ({}) → relay → relay → {} server ({})",
                    client.name(),
                    ct.name(),
                    server.name(),
                    st.name()
                );
                let (a, b) = (
                    std::sync::Arc::new(tap::Recorder::default()),
                    std::sync::Arc::new(tap::Recorder::default()),
                );
                let b_port = rt.block_on(start_proxy(
                    Transport::Wss,
                    &format!("{}/", srv.url(st, "")),
                    &certs,
                    b.clone(),
                ));
                let a_port = rt.block_on(start_proxy(
                    ct,
                    &format!("wss://localhost:{b_port}/"),
                    &certs,
                    a.clone(),
                ));
                let args = client_args("messages", a_port, ct, &certs, anonymous);
                let r = run_client(client, &args, &scratch).and_then(|()| {
                    rt.block_on(async {
                        let wait = Duration::from_secs(20);
                        for t in [&a, &b] {
                            tokio::time::timeout(wait, t.finished.notified())
                                .await
                                .map_err(|_| "a relay did not finish".to_owned())?;
                        }
                        Ok::<(), String>(())
                    })?;
                    let (ac, bc) = (a.c2s.lock().unwrap().clone(), b.c2s.lock().unwrap().clone());
                    let (asc, bsc) = (a.s2c.lock().unwrap().clone(), b.s2c.lock().unwrap().clone());
                    ensure!(ac.len() > 100 && asc.len() > 100, "too little relayed");
                    ensure!(
                        ac == bc,
                        "client to server: {} bytes at A, {} at B",
                        ac.len(),
                        bc.len()
                    );
                    ensure!(asc == bsc, "server to client: {} at A, {} at B", asc.len(), bsc.len());
                    Ok(())
                });
                cases.record(&what, r);
            }
            drop(srv);
        }
    }
    cases.finish();
}

// ---------------------------------------------------------------- transactions

/// Qpid Proton's transaction script (tests/peers/proton_txn.py), ready for its arguments.
fn proton_txn() -> Command {
    let mut c = Command::new(proton_python());
    c.arg(Path::new(PEERS).join("proton_txn.py"));
    c
}

#[test]
fn proton_transactions_against_the_amqpwire_broker() {
    let scratch = Scratch::new("interop", "proton-transactions");
    let certs = Certs::write(&scratch);
    let rt = runtime();
    let open = rt.block_on(start_broker(&[], &certs, false));
    let mut cases = Cases::default();
    for scenario in ["send-commit", "send-rollback", "receive-commit", "receive-rollback"] {
        let mut cmd = proton_txn();
        cmd.args(["client", "--port", &open.tcp.to_string(), "--scenario", scenario]);
        cases.record(
            &format!("proton transactional client, {scenario}"),
            run_to_end(cmd, "proton-txn", &scratch),
        );
    }
    cases.finish();
}

#[test]
fn amqpwire_transactions_against_a_proton_coordinator() {
    let scratch = Scratch::new("interop", "proton-coordinator");
    let port = free_port();
    let ready = scratch.path("coordinator-ready");
    let log = scratch.path("proton-coordinator.log");
    let mut cmd = proton_txn();
    cmd.args(["coordinator", "--port", &port.to_string()]).arg("--ready-file").arg(&ready);
    let child = spawn_ready(cmd, "proton coordinator", &ready, &log);
    let server = PeerServer { child, port, log };
    let rt = runtime();
    let r = rt.block_on(against_a_coordinator(server.port));
    if let Err(e) = r {
        panic!("{e}\nthe coordinator's log:\n{}", tail(&server.log));
    }
}

/// The body of a data message, as text.
fn text(d: &amqpwire::runtime::Delivery) -> Result<String, String> {
    let m = d.message().map_err(why("decode"))?;
    let b = m.body.as_data().ok_or("not a data body")?;
    String::from_utf8(b.to_vec()).map_err(why("UTF-8"))
}

async fn against_a_coordinator(port: u16) -> Outcome {
    let conn = within("connect", Connection::connect(&format!("amqp://127.0.0.1:{port}"))).await?;
    let session = within("begin", conn.begin_session()).await?;
    let ctl = within("coordinator", session.coordinator()).await?;
    let tx = within("sender", session.sender("in", "q")).await?;
    let rx = within("receiver", session.receiver("out", "q", 0)).await?;
    let data = |b: &str| Message::with_data(b.as_bytes().to_vec());
    // Posting: two in a commit, one in a rollback, then a plain marker.
    let txn = within("declare", ctl.declare()).await?;
    for b in ["a", "b"] {
        let state = within("send in txn", tx.send_in(&txn, &data(b))).await?;
        ensure!(
            matches!(&state, DeliveryState::TransactionalState(t) if t.txn_id == txn.id()),
            "the coordinator answered a transactional transfer with {state:?}"
        );
    }
    within("commit", txn.commit()).await?;
    let txn = within("declare", ctl.declare()).await?;
    within("send in txn", tx.send_in(&txn, &data("rolled-back"))).await?;
    within("rollback", txn.rollback()).await?;
    within("marker", tx.send(&data("marker"))).await?;
    rx.set_credit(3).map_err(why("credit"))?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = within("receive", rx.recv()).await?;
        got.push(text(&d)?);
        rx.accept(&d).map_err(why("accept"))?;
    }
    ensure!(got == ["a", "b", "marker"], "received {got:?} after a commit and a rollback");
    // Retirement: an accept in a rolled-back transaction gives the message back; one in a
    // committed transaction consumes it.
    within("send", tx.send(&data("retire"))).await?;
    rx.set_credit(1).map_err(why("credit"))?;
    let d = within("receive", rx.recv()).await?;
    let txn = within("declare", ctl.declare()).await?;
    rx.accept_in(&txn, &d).map_err(why("accept in txn"))?;
    within("rollback", txn.rollback()).await?;
    rx.set_credit(1).map_err(why("credit"))?;
    let d = within("receive again", rx.recv()).await?;
    ensure!(text(&d)? == "retire", "the rolled-back retirement did not come back");
    let txn = within("declare", ctl.declare()).await?;
    rx.accept_in(&txn, &d).map_err(why("accept in txn"))?;
    within("commit", txn.commit()).await?;
    within("marker", tx.send(&data("marker-2"))).await?;
    rx.set_credit(1).map_err(why("credit"))?;
    let d = within("receive", rx.recv()).await?;
    ensure!(text(&d)? == "marker-2", "a committed retirement came back: {:?}", text(&d));
    rx.accept(&d).map_err(why("accept"))?;
    // An id the coordinator never gave out.
    match ctl.transaction(Bytes::from_static(b"bogus")).commit().await {
        Err(amqpwire::runtime::Error::Transaction(e))
            if e.condition.as_str() == "amqp:transaction:unknown-id" => {}
        other => return Err(format!("discharging an unknown id: {other:?}")),
    }
    within("close", conn.close(None)).await
}

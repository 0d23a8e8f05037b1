//! Scripted peers: the example scripts of `examples/scripts/` played against the embedded
//! broker (each holds, step by step), a failing expectation reported with its step and
//! what came, and a script playing the server against amqpwire's own client.

use std::time::Duration;

use amqpwire::broker::{listen_options, Broker};
use amqpwire::message::Message;
use amqpwire::runtime::script::play;
use amqpwire::runtime::transport::{self, ClientTlsConfig, Endpoint};
use amqpwire::runtime::{Connection, Listener};
use amqpwire::script::player::{parse, Player};

fn script(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scripts").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn broker() -> String {
    let listener =
        Listener::bind("amqp://127.0.0.1:0", listen_options(&[], None, None)).await.expect("bind");
    let url = listener.endpoint().to_string();
    tokio::spawn(async move { Broker::new().serve(listener).await });
    url
}

/// Plays `text` as a client of `url`; the verdict.
async fn play_against(url: &str, text: &str) -> Result<(), String> {
    let steps = parse(text, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut player = Player::new(steps);
    let endpoint: Endpoint = url.parse().expect("URL");
    let io = transport::connect(&endpoint, &ClientTlsConfig::new()).await.expect("connect");
    tokio::time::timeout(Duration::from_secs(60), play(&mut player, io))
        .await
        .expect("the script ends");
    player.verdict().cloned().expect("a verdict").map_err(|f| f.to_string())
}

#[tokio::test]
async fn the_example_scripts_hold_against_the_embedded_broker() {
    let url = broker().await;
    for name in [
        "transfer-on-detached-link.jsonl",
        "size-claim-4gib.jsonl",
        "pipelined-open.jsonl",
        "abrupt-close.jsonl",
        "credit-violation.jsonl",
    ] {
        play_against(&url, &script(name)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // After all of it, the broker still serves.
    let conn = Connection::connect(&url).await.expect("connect");
    let session = conn.begin_session().await.expect("session");
    let sender = session.sender("after", "after").await.expect("sender");
    sender.send(&Message::with_data(&b"still here"[..])).await.expect("sent");
    conn.close(None).await.expect("close");
}

#[tokio::test]
async fn a_step_that_does_not_hold_is_reported_with_what_came() {
    let url = broker().await;
    let text = r#"{"send": {"kind": "header", "protocol_id": 0}}
{"send": {"performative": "open", "fields": {"container-id": "c"}}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "open", "fields": {"container-id": "someone-else"}}}"#;
    let e = play_against(&url, text).await.expect_err("the broker has its own id");
    assert!(e.starts_with("step 4: expected"), "{e}");
    assert!(e.contains("container-id"), "what came is shown decoded: {e}");
    // A time limit on every expectation: the broker answers nothing to silence.
    let text = r#"{"send": {"kind": "header", "protocol_id": 0}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "begin"}, "within": 300}"#;
    let e = play_against(&url, text).await.expect_err("no begin without an open");
    assert!(e.contains("step 3"), "{e}");
}

#[tokio::test]
async fn a_scripted_server_refuses_amqpwires_client_with_its_reason() {
    let (port, server) = scripted_server(&script("server-refuses-open.jsonl")).await;
    // The script speaks no SASL: the client skips it.
    let endpoint: Endpoint = format!("amqp://127.0.0.1:{port}").parse().expect("URL");
    let options = amqpwire::runtime::ConnectOptions {
        configure: Some(Box::new(|c| c.sasl_client = None)),
        ..amqpwire::runtime::ConnectOptions::default()
    };
    // The open comes back, then the close: the refusal ends the connection with its reason.
    let err = match Connection::connect_with(&endpoint, options).await {
        Ok(conn) => tokio::time::timeout(Duration::from_secs(20), conn.closed())
            .await
            .expect("closed")
            .expect_err("refused"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("scripted refusal"), "{err}");
    let verdict = tokio::time::timeout(Duration::from_secs(20), server).await.expect("ends");
    assert_eq!(verdict.expect("task"), Some(Ok(())));
}

/// Serves one connection with `text` played as the server; the port and the verdict to come.
async fn scripted_server(
    text: &str,
) -> (u16, tokio::task::JoinHandle<Option<Result<(), amqpwire::script::player::Failure>>>) {
    let steps = parse(text, Duration::from_secs(10)).expect("script");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let endpoint = Endpoint::new(transport::Scheme::Amqp, "127.0.0.1", port);
        let io = transport::accept(tcp, &endpoint, &transport::AcceptConfig::default())
            .await
            .expect("transport");
        let mut player = Player::new(steps);
        play(&mut player, io).await;
        player.verdict().cloned()
    });
    (port, server)
}

#[tokio::test]
async fn a_scripted_server_authenticates_clients_with_scram_and_plain_and_refuses_a_wrong_password()
{
    // The SASL layer computed, then the AMQP layer as written.
    let text = r#"{"sasl-server": {"users": {"alice": "secret"}}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "open"}}
{"send": {"kind": "header", "protocol_id": 0}}
{"send": {"performative": "open", "fields": {"container-id": "scripted"}}}
{"expect": {"performative": "close"}}
{"send": {"performative": "close"}}"#;
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let (port, server) = scripted_server(text).await;
        let url = format!("amqp://alice:secret@127.0.0.1:{port}/?sasl-mechanism={mechanism}");
        let conn = tokio::time::timeout(Duration::from_secs(20), Connection::connect(&url))
            .await
            .expect("in time")
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        conn.close(None).await.unwrap_or_else(|e| panic!("{mechanism}: close: {e}"));
        let verdict = tokio::time::timeout(Duration::from_secs(20), server).await.expect("ends");
        assert_eq!(verdict.expect("task"), Some(Ok(())), "{mechanism}");
    }
    // A wrong password: the outcome refuses, the client hears it, and the script (whose
    // step is done once the outcome is sent) sees the client go.
    let text = r#"{"sasl-server": {"users": {"alice": "secret"}}}
{"expect-close": true}"#;
    let (port, server) = scripted_server(text).await;
    let url = format!("amqp://alice:guess@127.0.0.1:{port}/?sasl-mechanism=SCRAM-SHA-256");
    let err = tokio::time::timeout(Duration::from_secs(20), Connection::connect(&url))
        .await
        .expect("in time")
        .expect_err("refused");
    assert!(err.to_string().contains("SASL"), "{err}");
    let verdict = tokio::time::timeout(Duration::from_secs(20), server).await.expect("ends");
    assert_eq!(verdict.expect("task"), Some(Ok(())));
}

/// `fuzz-peer` reaches the deep states docs/fuzz-peer.md names (a link answered, credit
/// granted, a transfer settled) only if every expectation of its scenarios holds: a
/// lenient case skips one that does not, and a name it should have bound (the client's
/// link name, its delivery-id) is then sent as written. Played strictly, each client
/// scenario holds against the embedded broker, and each server scenario against
/// amqpwire's own client: opening (the scripted server closes), sending and receiving.
#[tokio::test]
async fn every_fuzz_peer_scenario_holds_step_by_step_against_amqpwire() {
    use amqpwire::fuzzpeer::scenarios::{names, scenario, Role, Sasl};
    let text = |name: &str| {
        let steps = scenario(name, &Sasl::Anonymous, "fuzz").expect("a scenario");
        steps.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n")
    };
    for name in names(Role::Client) {
        // A broker of its own: what one scenario leaves queued, the next would receive.
        let url = broker().await;
        play_against(&url, &text(name)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(names(Role::Server), ["serve-open", "serve-sender", "serve-receiver"]);
    for name in names(Role::Server) {
        let (port, server) = scripted_server(&text(name)).await;
        let client = async {
            let conn = Connection::connect(&format!("amqp://127.0.0.1:{port}")).await?;
            if *name == "serve-open" {
                return conn.closed().await;
            }
            let session = conn.begin_session().await?;
            if *name == "serve-sender" {
                let sender = session.sender("s", "fuzz").await?;
                let outcome = sender.send(&Message::with_data(&b"to the fuzz peer"[..])).await?;
                assert!(outcome.is_outcome(), "{outcome:?}");
                sender.close().await?;
            } else {
                let receiver = session.receiver("r", "fuzz", 1).await?;
                let delivery = receiver.recv().await?;
                receiver.accept(&delivery)?;
                receiver.close().await?;
            }
            session.end().await?;
            conn.close(None).await
        };
        let client = tokio::time::timeout(Duration::from_secs(20), client).await.expect("in time");
        let verdict = tokio::time::timeout(Duration::from_secs(20), server).await.expect("ends");
        assert_eq!(verdict.expect("task"), Some(Ok(())), "{name}");
        client.unwrap_or_else(|e| panic!("{name}: the client: {e}"));
    }
}

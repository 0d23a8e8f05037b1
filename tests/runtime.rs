//! The tokio runtime on loopback sockets: an amqpwire client against an amqpwire listener
//! whose application (in the test) accepts, refuses and answers links.

use std::sync::Arc;
use std::time::Duration;

#[path = "support/pki.rs"]
mod pki;

use amqpwire::connection::UsageError;
use amqpwire::message::Message;
use amqpwire::runtime::transport::Endpoint;
use amqpwire::runtime::ConnectOptions;
use amqpwire::runtime::{Connection, Error, ListenOptions, Listener, ServerConnection};
use amqpwire::sasl::Credentials;
use amqpwire::types::{condition, Accepted, DeliveryState, Error as AmqpError, Role};
use bytes::Bytes;
use tokio::sync::mpsc;

/// Fails a test that hangs instead of letting it run forever.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn options() -> ListenOptions {
    let credentials = Credentials::new(|| "servernonce".into())
        .with_user("alice", "secret", b"0123456789abcdef")
        .anonymous(true);
    ListenOptions {
        authenticator: Some(Arc::new(move || Some(Box::new(credentials.clone()) as _))),
        ..ListenOptions::default()
    }
}

/// What the test's server saw: each message received on an address.
type Seen = mpsc::UnboundedReceiver<(String, Bytes)>;

/// A server whose application takes every link: messages sent to it are accepted and
/// reported (or rejected when the body is "reject"); a receiver attached to it gets
/// `count` messages "m0".."m{count-1}" (pre-settled); the address "forbidden" is refused.
async fn serve(url: &str, options: ListenOptions, count: usize) -> (String, Seen) {
    let listener = Listener::bind(url, options).await.expect("bind");
    let url = listener.endpoint().to_string();
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.establish().await else { return };
                answer_links(conn, tx, count).await;
            });
        }
    });
    (url, seen)
}

async fn answer_links(
    mut conn: ServerConnection,
    tx: mpsc::UnboundedSender<(String, Bytes)>,
    count: usize,
) {
    while let Some(req) = conn.next_link().await {
        let address = req.address().unwrap_or_default().to_owned();
        if address == "forbidden" {
            let _ = req.refuse(AmqpError::new(condition::UNAUTHORIZED_ACCESS, "not for you"));
            continue;
        }
        if req.role() == Role::SENDER {
            let Ok(rx) = req.accept_receiver(None, 50) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Ok(d) = rx.recv().await {
                    let body = d
                        .message()
                        .ok()
                        .and_then(|m| m.body.as_data().cloned())
                        .unwrap_or_default();
                    if &body[..] == b"reject" {
                        let _ = rx
                            .reject(&d, Some(AmqpError::new(condition::DECODE_ERROR, "no thanks")));
                    } else {
                        let _ = rx.accept(&d);
                    }
                    let _ = tx.send((address.clone(), body));
                }
            });
        } else {
            let Ok(tx) = req.accept_sender(None) else { continue };
            tokio::spawn(async move {
                for i in 0..count {
                    let m = Message::with_data(format!("m{i}").into_bytes());
                    if tx.send_settled(&m).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

#[tokio::test]
async fn a_client_sends_and_gets_outcomes_over_tcp() {
    let (url, mut seen) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let conn = within("connect", Connection::connect(&url)).await.expect("connect");
    let session = within("begin", conn.begin_session()).await.expect("session");
    let sender = within("attach", session.sender("s1", "queue-a")).await.expect("sender");
    for body in ["one", "two", "reject"] {
        let outcome =
            within("send", sender.send(&Message::with_data(body.as_bytes().to_vec()))).await;
        match (body, outcome.expect("an outcome")) {
            ("reject", DeliveryState::Rejected(r)) => {
                assert_eq!(r.error.expect("why").condition.as_str(), condition::DECODE_ERROR);
            }
            ("reject", other) => panic!("expected rejected, got {other:?}"),
            (_, state) => assert_eq!(state, DeliveryState::Accepted(Accepted {})),
        }
    }
    for body in ["one", "two", "reject"] {
        let (address, got) = within("seen", seen.recv()).await.expect("seen");
        assert_eq!((address.as_str(), &got[..]), ("queue-a", body.as_bytes()));
    }
    within("close", conn.close(None)).await.expect("clean close");
}

#[tokio::test]
async fn a_client_receives_presettled_messages_with_credit_refilled() {
    // 300 messages through a window of 10: credit must be refilled as they are taken.
    let (url, _) = serve("amqp://127.0.0.1:0", options(), 300).await;
    let conn = within("connect", Connection::connect(&url)).await.expect("connect");
    let session = conn.begin_session().await.expect("session");
    let rx = within("attach", session.receiver("r1", "queue-b", 10)).await.expect("receiver");
    for i in 0..300 {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert!(d.settled);
        let body = d.message().expect("message").body.as_data().cloned().expect("data");
        assert_eq!(&body[..], format!("m{i}").as_bytes());
    }
    // A delivery settles only through the receiver it came on: through another, its
    // delivery-id would name another delivery, or none.
    let other = within("attach", session.receiver("r2", "queue-c", 1)).await.expect("receiver");
    let d = within("recv", other.recv()).await.expect("a delivery");
    let refused = rx.accept(&d);
    assert!(matches!(refused, Err(Error::Usage(UsageError::OtherLink))), "{refused:?}");
    assert_eq!(other.accept(&d).map_err(|e| e.to_string()), Ok(()));
    rx.close().await.expect("detach");
    conn.close(None).await.expect("close");
}

#[tokio::test]
async fn a_credit_window_grants_few_credits_for_large_messages_and_many_for_small() {
    use amqpwire::runtime::{INITIAL_CREDIT, RECV_BUDGET};
    let listener = Listener::bind("amqp://127.0.0.1:0", options()).await.expect("bind");
    let url = listener.endpoint().to_string();
    let (tx, mut receivers) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let incoming = listener.accept().await.expect("accept");
        let mut conn = incoming.establish().await.expect("establish");
        while let Some(req) = conn.next_link().await {
            let _ = tx.send(req.accept_receiver(None, 1000).expect("accept"));
        }
    });
    let conn = within("connect", Connection::connect(&url)).await.expect("connect");
    let session = conn.begin_session().await.expect("session");
    const COUNT: usize = 24;
    for (name, size) in [("large", 256 * 1024), ("small", 100)] {
        let snd = within("attach", session.sender(name, name)).await.expect("sender");
        let rx = receivers.recv().await.expect("the server's receiver");
        // Nothing is known of the sizes yet: a window of 1000 starts with a few credits.
        let first = within("credit", snd.wait_credit()).await.expect("credit");
        assert_eq!(first, (INITIAL_CREDIT, false), "{name}");
        let m = Message::with_data(vec![1u8; size]);
        let mut wire = Vec::new();
        m.encode(&mut wire);
        let per_budget = u32::try_from(RECV_BUDGET / wire.len()).expect("fits");
        // The sender sends as credit comes while the receiver takes: the receiver may lower
        // its credit at any time, so sending everything first could wait for credit forever.
        let send_all = async {
            for _ in 0..COUNT {
                within("send", snd.send_settled(&m)).await.expect("sent");
            }
        };
        // What the receiver guarantees after each delivery taken, whatever the order in
        // which deliveries arrive and are taken (read on the receiver's side, where the
        // refill is already counted when `recv` returns): what it has granted never brings
        // more than the budget at the size seen, and while nothing is queued it grants at
        // least one.
        let take_all = async {
            let mut granted = Vec::new();
            for _ in 0..COUNT {
                let d = within("recv", rx.recv()).await.expect("delivery");
                // Never an empty delivery-tag, the first one's included (Proton fails on one).
                assert!(!d.tag.is_empty());
                let credit = rx.credit().expect("credit");
                assert!(
                    credit as usize * wire.len() <= RECV_BUDGET.max(wire.len()),
                    "{name}: {credit} credits of {} bytes exceed the budget",
                    wire.len()
                );
                granted.push(credit);
            }
            granted
        };
        let ((), granted) = tokio::join!(send_all, take_all);
        let last = *granted.last().expect("deliveries");
        // Every delivery sent was taken: the queue is empty, so credit is open.
        assert!(last >= 1, "{name}: no credit left with an empty queue");
        if size > 1000 {
            // Few credits for large messages: at most what the budget holds (7 here).
            assert!(granted.iter().all(|&c| c <= per_budget), "{name}: {granted:?}");
            assert!(per_budget < INITIAL_CREDIT, "the test needs the budget to bind");
        } else {
            // Many for small ones: the window bounds them, not the budget (which would allow
            // thousands). The first delivery taken refills the window, and what arrives
            // after that uses up at most what this test sends.
            assert!(per_budget > 1000);
            let window = 1000 - 2 * COUNT as u32;
            assert!(granted.iter().all(|&c| c >= window), "{name}: {granted:?}");
        }
    }
    conn.close(None).await.expect("close");
}

#[tokio::test]
async fn a_refused_link_reports_the_peers_condition() {
    let (url, _) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let conn = Connection::connect(&url).await.expect("connect");
    let session = conn.begin_session().await.expect("session");
    let err = within("attach", session.sender("s", "forbidden")).await.expect_err("refused");
    assert!(
        matches!(&err, Error::LinkRefused(Some(e)) if e.condition.as_str() == condition::UNAUTHORIZED_ACCESS),
        "{err}"
    );
    assert!(err.to_string().contains("not for you"), "{err}");
    // The session and connection carry on.
    let ok = session.sender("s2", "fine").await.expect("another link");
    ok.send(&Message::with_data(&b"x"[..])).await.expect("sent");
}

#[tokio::test]
async fn sasl_plain_and_scram_authenticate_and_a_wrong_password_is_refused() {
    let (url, _) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let port = url.rsplit(':').next().expect("port").trim_end_matches('/').to_owned();
    let good = format!("amqp://alice:secret@127.0.0.1:{port}");
    let conn = within("plain", Connection::connect(&good)).await.expect("PLAIN");
    conn.close(None).await.expect("close");
    let scram = format!("amqp://alice:secret@127.0.0.1:{port}/?sasl-mechanism=SCRAM-SHA-256");
    let conn = within("scram", Connection::connect(&scram)).await.expect("SCRAM");
    conn.close(None).await.expect("close");
    let bad = format!("amqp://alice:wrong@127.0.0.1:{port}");
    let err = within("wrong", Connection::connect(&bad)).await.expect_err("refused");
    assert!(
        matches!(err, Error::Connection(amqpwire::connection::ConnectionError::Sasl(_))),
        "{err}"
    );
    assert!(err.to_string().contains("SASL"), "{err}");
}

#[tokio::test]
async fn websocket_carries_the_same_exchange_including_a_large_message() {
    let (url, mut seen) = serve("ws://127.0.0.1:0/$iothub/websocket", options(), 0).await;
    assert!(url.starts_with("ws://") && url.contains("/$iothub/websocket"), "{url}");
    let conn = within("connect", Connection::connect(&url)).await.expect("connect over ws");
    let session = conn.begin_session().await.expect("session");
    let sender = session.sender("big", "queue-c").await.expect("sender");
    let big: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let outcome = within("10 MiB", sender.send(&Message::with_data(big.clone()))).await;
    assert_eq!(outcome.expect("outcome"), DeliveryState::Accepted(Accepted {}));
    let (_, got) = within("seen", seen.recv()).await.expect("seen");
    assert!(got[..] == big[..], "the 10 MiB body arrived intact");
    conn.close(None).await.expect("close");
}

/// A TCP relay to `upstream` that can be cut: both sockets dropped at once, as when a
/// peer's machine vanishes.
async fn relay(upstream: String) -> (String, tokio::sync::oneshot::Sender<()>) {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = front.local_addr().expect("addr").port();
    let (cut, cutting) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut a, _) = front.accept().await.expect("accept");
        let mut b = tokio::net::TcpStream::connect(upstream).await.expect("upstream");
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
            _ = cutting => {}
        }
    });
    (format!("amqp://127.0.0.1:{port}"), cut)
}

#[tokio::test]
async fn a_peer_that_vanishes_fails_what_was_not_settled() {
    let listener = Listener::bind("amqp://127.0.0.1:0", options()).await.expect("bind");
    let upstream = format!("127.0.0.1:{}", listener.endpoint().port);
    let (held, mut hold) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut conn = listener.accept().await.expect("accept").establish().await.expect("up");
        let req = conn.next_link().await.expect("a link");
        // One message of credit, and the message is never settled.
        let rx = req.accept_receiver(None, 1).expect("accepted");
        let d = rx.recv().await.expect("the first message arrives");
        let _ = held.send(d.payload.len());
        std::future::pending::<()>().await;
        drop((conn, rx));
    });
    let (url, cut) = relay(upstream).await;
    let conn = Connection::connect(&url).await.expect("connect");
    let session = conn.begin_session().await.expect("session");
    let sender = session.sender("s", "q").await.expect("sender");
    let first = sender.send_pipelined(&Message::with_data(&b"first"[..])).await.expect("sent");
    within("the server holds it", hold.recv()).await.expect("held");
    // The second waits for credit that never comes.
    let second_message = Message::with_data(&b"second"[..]);
    let second = sender.send(&second_message);
    // join! polls the send first, so it is waiting when the peer vanishes; in any order
    // both end with the transport's close.
    let vanish = async {
        let _ = cut.send(());
    };
    let (second, ()) = within("failure", async { tokio::join!(second, vanish) }).await;
    let first = within("first", first).await;
    // Neither is reported as delivered: both fail with the connection's end.
    for r in [first, second] {
        let err = r.expect_err("not delivered");
        assert!(
            matches!(
                err,
                Error::Connection(amqpwire::connection::ConnectionError::TransportClosed)
            ),
            "{err}"
        );
    }
    assert!(conn.closed().await.is_err());
}

#[tokio::test]
async fn tls_and_websocket_over_tls_carry_the_exchange_and_a_wrong_name_is_refused() {
    let pki = pki::pki();
    for scheme in ["amqps", "wss"] {
        let opts = ListenOptions { tls: Some(pki.server()), ..options() };
        let (url, mut seen) = serve(&format!("{scheme}://localhost:0/"), opts, 0).await;
        let endpoint = Endpoint::parse(&url).expect("url");
        let connect = ConnectOptions { tls: pki.client(), ..ConnectOptions::default() };
        let conn = within("connect", Connection::connect_with(&endpoint, connect))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let sender = conn
            .begin_session()
            .await
            .expect("session")
            .sender("s", "tls-q")
            .await
            .expect("sender");
        let outcome = within("send", sender.send(&Message::with_data(&b"secret"[..]))).await;
        assert_eq!(outcome.expect("outcome"), DeliveryState::Accepted(Accepted {}));
        assert_eq!(&within("seen", seen.recv()).await.expect("seen").1[..], b"secret");
        conn.close(None).await.expect("close");

        // The certificate names localhost; 127.0.0.1 is not that name.
        let mut wrong = endpoint.clone();
        wrong.host = "127.0.0.1".into();
        let connect = ConnectOptions { tls: pki.client(), ..ConnectOptions::default() };
        let err = within("wrong name", Connection::connect_with(&wrong, connect))
            .await
            .expect_err("a wrong name is refused");
        assert!(matches!(err, Error::Transport(_)), "{scheme}: {err}");
        assert!(err.to_string().to_lowercase().contains("name"), "{scheme}: {err}");
    }
}

#[tokio::test]
async fn idle_time_out_detects_a_peer_that_stops_answering() {
    // The client asks the server for heartbeats every 2 s (idle time-out 4 s; it allows 8 s
    // of silence); a relay that goes on accepting bytes but stops passing them on looks
    // like a hung peer. The relay counts the heartbeats it passes, so the test waits for
    // events, not for a duration: the verdict holds unless the machine stalls for 6 s.
    let (url, _) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let upstream = url.trim_start_matches("amqp://").trim_end_matches('/').to_owned();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = front.local_addr().expect("addr").port();
    let (stall, mut stalled) = tokio::sync::oneshot::channel::<()>();
    let (beat, mut beats) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut br, mut aw) = one_way_relay(front, upstream).await;
        // Server to client, counting empty frames (heartbeats) as they pass.
        const HEARTBEAT: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                n = br.read(&mut buf) => {
                    let Ok(n @ 1..) = n else { break };
                    if aw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(at) = seen.windows(8).position(|w| w == HEARTBEAT) {
                        let _ = beat.send(());
                        seen.drain(..at + 8);
                    }
                    let keep = seen.len().saturating_sub(7);
                    seen.drain(..keep);
                }
                _ = &mut stalled => break,
            }
        }
        // Keep the sockets open, silent.
        std::future::pending::<()>().await;
    });
    let endpoint =
        Endpoint::parse(&format!("amqp://127.0.0.1:{port}/?idle-timeout=4000")).expect("url");
    let quick_close = ConnectOptions {
        configure: Some(Box::new(|c| c.close_timeout = Duration::from_millis(300))),
        ..ConnectOptions::default()
    };
    let conn =
        within("connect", Connection::connect_with(&endpoint, quick_close)).await.expect("connect");
    // Heartbeats keep it alive past the silence it allows: five of them have crossed
    // (10 s) ...
    for _ in 0..5 {
        within("heartbeat", beats.recv()).await.expect("a heartbeat");
    }
    assert!(conn.begin_session().await.is_ok(), "alive while heartbeats flow");
    // ... and once the peer goes quiet, the client gives up.
    let _ = stall.send(());
    let err = within("idle", conn.closed()).await.expect_err("idle time-out");
    assert!(
        err.to_string().contains("resource-limit-exceeded") || err.to_string().contains("idle"),
        "{err}"
    );
}

#[tokio::test]
async fn many_sessions_and_links_at_once_and_an_ended_session_fails_its_idle_senders() {
    let (url, mut seen) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let conn = Connection::connect(&url).await.expect("connect");
    let mut tasks = Vec::new();
    for s in 0..5 {
        let session = conn.begin_session().await.expect("session");
        for l in 0..8 {
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                let address = format!("q-{s}-{l}");
                let sender =
                    session.sender(&format!("link-{s}-{l}"), &address).await.expect("sender");
                for i in 0..20 {
                    let m = Message::with_data(format!("{address}/{i}").into_bytes());
                    assert_eq!(
                        sender.send(&m).await.expect("outcome"),
                        DeliveryState::Accepted(Accepted {})
                    );
                }
            }));
        }
    }
    for t in tasks {
        within("all links", t).await.expect("a link's task");
    }
    let mut per_address = std::collections::HashMap::<String, Vec<String>>::new();
    for _ in 0..5 * 8 * 20 {
        let (address, body) = within("seen", seen.recv()).await.expect("seen");
        per_address.entry(address).or_default().push(String::from_utf8_lossy(&body).into_owned());
    }
    assert_eq!(per_address.len(), 40);
    for (address, bodies) in &per_address {
        // In order on each link, none lost or doubled.
        let expected: Vec<_> = (0..20).map(|i| format!("{address}/{i}")).collect();
        assert_eq!(bodies, &expected);
    }
    // Ending a session tells its idle senders at once.
    let session = conn.begin_session().await.expect("session");
    let idle = session.sender("idle", "q-idle").await.expect("sender");
    session.end().await.expect("end");
    let err = within("fails fast", idle.send(&Message::with_data(&b"late"[..])))
        .await
        .expect_err("ended");
    assert!(matches!(err, Error::SessionEnded(_)), "{err}");
    conn.close(None).await.expect("close");
}

/// The close time-out runs from when `close` is called, not from the last frame: a client
/// quiet for longer than its close time-out (no idle time-out, so no timer ran meanwhile)
/// still closes cleanly. It used to fail at once with "the peer did not answer our close in
/// time", the engine having last heard the time before the quiet spell.
#[tokio::test]
async fn a_connection_quiet_for_longer_than_its_close_timeout_still_closes_cleanly() {
    let (url, _seen) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let endpoint = Endpoint::parse(&url).expect("url");
    let short = ConnectOptions {
        configure: Some(Box::new(|c| c.close_timeout = Duration::from_secs(5))),
        ..ConnectOptions::default()
    };
    let conn =
        within("connect", Connection::connect_with(&endpoint, short)).await.expect("connect");
    within("open", conn.opened()).await.expect("opened");
    // Quiet for longer than the close time-out (the engine-level rule is tested without
    // waiting in tests/connection.rs). The peer answers a close in milliseconds and is
    // given 5 s here, so only a time-out counted from the last frame fails this.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    within("close", conn.close(None)).await.expect("a clean close");
}

/// A sender or receiver whose link the peer detached is stale: the engine gives its handle
/// to the next link, and the stale one must never act on that link (send to another
/// address, take its deliveries, detach it), only say that its own link ended.
#[tokio::test]
async fn a_stale_link_never_acts_on_a_later_link_with_its_handle() {
    let listener = Listener::bind("amqp://127.0.0.1:0", options()).await.expect("bind");
    let url = listener.endpoint().to_string();
    let (tx, mut links) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let incoming = listener.accept().await.expect("accept");
        let mut conn = incoming.establish().await.expect("establish");
        while let Some(req) = conn.next_link().await {
            // The client's senders are our receivers, and the other way round.
            let end = if req.role() == Role::SENDER {
                Ok(req.accept_receiver(None, 10).expect("accept"))
            } else {
                Err(req.accept_sender(None).expect("accept"))
            };
            let _ = tx.send(end);
        }
    });
    let conn = within("connect", Connection::connect(&url)).await.expect("connect");
    let session = conn.begin_session().await.expect("session");
    let forced = || AmqpError::new(condition::DETACH_FORCED, "gone");
    let body = |m: &amqpwire::runtime::Delivery| m.message().expect("message").body.text();

    // Sender A to "a", detached by the server; then sender B to "b" takes its handle.
    let a = within("attach a", session.sender("a", "a")).await.expect("a");
    let Ok(ra) = links.recv().await.expect("a's link") else { panic!("a is a sender") };
    ra.close_with_error(forced()).await.expect("detach a");
    let ended = within("a ends", a.wait_credit()).await;
    assert!(matches!(ended, Err(Error::LinkDetached(Some(_)))), "{ended:?}");
    let b = within("attach b", session.sender("b", "b")).await.expect("b");
    let Ok(rb) = links.recv().await.expect("b's link") else { panic!("b is a sender") };
    let (old, new) = (a.link(), b.link());
    assert_eq!(
        (old.session, old.handle),
        (new.session, new.handle),
        "the test needs the handle reused"
    );
    assert_ne!(old, new, "the engine's ids tell the two apart");
    // A says its link ended; nothing of it reaches B's link.
    let stale = a.send_settled(&Message::with_value("from a")).await;
    assert!(matches!(stale, Err(Error::LinkDetached(_))), "{stale:?}");
    assert!(a.credit().is_err() && a.drained().is_err());
    a.close().await.expect("closing a stale sender does nothing");
    within("send b", b.send_settled(&Message::with_value("from b"))).await.expect("b sends");
    let first = within("b's first", rb.recv()).await.expect("a delivery");
    assert_eq!(body(&first).as_deref(), Some("from b"));

    // Receiver C from "c", detached by the server; then receiver D from "d" takes its
    // handle, and the server sends two messages on D.
    let c = within("attach c", session.receiver("c", "c", 10)).await.expect("c");
    let Err(sc) = links.recv().await.expect("c's link") else { panic!("c is a receiver") };
    sc.close_with_error(forced()).await.expect("detach c");
    let ended = within("c ends", c.recv()).await;
    assert!(matches!(ended, Err(Error::LinkDetached(Some(_)))), "{ended:?}");
    let d = within("attach d", session.receiver("d", "d", 10)).await.expect("d");
    let Err(sd) = links.recv().await.expect("d's link") else { panic!("d is a receiver") };
    let (old, new) = (c.link(), d.link());
    assert_eq!(
        (old.session, old.handle),
        (new.session, new.handle),
        "the test needs the handle reused"
    );
    assert_ne!(old, new, "the engine's ids tell the two apart");
    for text in ["d1", "d2"] {
        within("send d", sd.send_settled(&Message::with_value(text))).await.expect("sent");
    }
    // C takes nothing of D's, grants nothing on D's link, and does not detach it.
    let stale = within("c stays ended", c.recv()).await;
    assert!(matches!(stale, Err(Error::LinkDetached(_))), "{stale:?}");
    assert!(c.credit().is_err() && c.set_credit(5).is_err());
    c.close().await.expect("closing a stale receiver does nothing");
    for text in ["d1", "d2"] {
        let m = within("d receives", d.recv()).await.expect("d's delivery");
        assert_eq!(body(&m).as_deref(), Some(text));
    }
    within("b still sends", b.send_settled(&Message::with_value("b again"))).await.expect("b");
    let again = within("b's second", rb.recv()).await.expect("a delivery");
    assert_eq!(body(&again).as_deref(), Some("b again"));
    conn.close(None).await.expect("close");
}

#[tokio::test]
async fn a_listener_lets_go_of_clients_that_never_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // With SASL offered, so that a client can stop in any phase of the handshake.
    let options = ListenOptions { handshake_timeout: Duration::from_millis(300), ..options() };
    let (url, _seen) = serve("amqp://127.0.0.1:0", options, 0).await;
    let addr = url.trim_start_matches("amqp://").to_owned();
    // Silent; the AMQP header and no open; the SASL header and no sasl-init.
    for (first, answer) in [
        (&b""[..], &b""[..]),
        (b"AMQP\x00\x01\x00\x00", b"AMQP\x00\x01\x00\x00"),
        (b"AMQP\x03\x01\x00\x00", b"AMQP\x03\x01\x00\x00"),
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        s.write_all(first).await.expect("write");
        // The server lets the client go: the stream ends. (What it answered first, its
        // header and mechanisms or open, depends on whether it read the client's bytes
        // before its time ran out: only their form is checked. The engine's tests time
        // each phase in virtual time.)
        let mut got = Vec::new();
        within("the listener letting a silent client go", s.read_to_end(&mut got))
            .await
            .expect("read");
        assert!(got.is_empty() || got.starts_with(answer), "{first:02x?}: {got:02x?}");
    }
}

#[tokio::test]
async fn a_client_runs_over_a_transport_the_application_made() {
    use amqpwire::runtime::transport::Transport;
    // An in-memory pipe: the server's end to a listener's options, the client's to
    // connect_over (the endpoint names the host and the credentials, and nothing is
    // connected to it).
    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (tx, mut seen) = mpsc::unbounded_channel();
    let server = options().start(Transport::from_io(server_end));
    tokio::spawn(answer_links(server, tx, 0));
    let endpoint: Endpoint = "amqp://alice:secret@pipe.example".parse().expect("endpoint");
    let conn = within(
        "the open over the pipe",
        Connection::connect_over(
            Transport::from_io(client_end),
            &endpoint,
            ConnectOptions::default(),
        ),
    )
    .await
    .expect("connected over the pipe");
    assert!(conn.remote_open().is_some());
    let session = conn.begin_session().await.expect("session");
    let sender = session.sender("s", "piped").await.expect("sender");
    let outcome = within("the outcome", sender.send(&Message::with_data(&b"through"[..]))).await;
    assert!(matches!(outcome, Ok(DeliveryState::Accepted(_))), "{outcome:?}");
    let (address, body) = within("the server's delivery", seen.recv()).await.expect("seen");
    assert_eq!((address.as_str(), &body[..]), ("piped", &b"through"[..]));
}

/// Accepts one client on `front` and connects it to `upstream`, copying the client's bytes
/// on; returns the server's reading half and the client's writing half, for the caller to
/// pass on (or not) what the server sends.
async fn one_way_relay(
    front: tokio::net::TcpListener,
    upstream: String,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf) {
    let (a, _) = front.accept().await.expect("accept");
    let b = tokio::net::TcpStream::connect(upstream).await.expect("upstream");
    let (mut ar, aw) = a.into_split();
    let (br, mut bw) = b.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut ar, &mut bw).await });
    (br, aw)
}

/// A TCP relay to `upstream` that passes every byte from the client, and every header and
/// frame from the server but the AMQP frames whose performative's descriptor code `drops`
/// picks: a peer that never sends those.
async fn dropping_relay(upstream: String, drops: fn(u8) -> bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = front.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut br, mut aw) = one_way_relay(front, upstream).await;
        let mut held = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Ok(n @ 1..) = br.read(&mut buf).await {
            held.extend_from_slice(&buf[..n]);
            // Whole headers and frames only; a part waits for the rest.
            loop {
                let len = if held.starts_with(b"AMQP") {
                    8
                } else if held.len() >= 8 {
                    u32::from_be_bytes(held[..4].try_into().expect("4 bytes")) as usize
                } else {
                    break;
                };
                if held.len() < len.max(8) {
                    break;
                }
                let item: Vec<u8> = held.drain(..len.max(8)).collect();
                // An AMQP frame (type 0) whose body is a described performative 0x00 0x53 code.
                let body = usize::from(item[4]) * 4;
                let dropped = !item.starts_with(b"AMQP")
                    && item[5] == 0
                    && item.get(body..body + 2) == Some(&[0x00, 0x53][..])
                    && item.get(body + 2).is_some_and(|c| drops(*c));
                if !dropped && aw.write_all(&item).await.is_err() {
                    return;
                }
            }
        }
        // Keep the client's socket open, silent.
        std::future::pending::<()>().await;
    });
    format!("amqp://127.0.0.1:{port}")
}

/// A connection through `relay`'s URL with a close time-out of 300 ms.
async fn quick_closing(url: &str) -> Connection {
    let endpoint = Endpoint::parse(url).expect("url");
    let options = ConnectOptions {
        configure: Some(Box::new(|c| c.close_timeout = Duration::from_millis(300))),
        ..ConnectOptions::default()
    };
    within("connect", Connection::connect_with(&endpoint, options)).await.expect("connect")
}

#[tokio::test]
async fn a_detach_or_an_end_the_peer_never_answers_fails_after_the_close_time_out() {
    const DETACH: u8 = 0x16;
    const END: u8 = 0x17;
    let (url, _) = serve("amqp://127.0.0.1:0", options(), 1).await;
    let upstream = url.trim_start_matches("amqp://").trim_end_matches('/').to_owned();
    let relay = dropping_relay(upstream, |code| code == DETACH || code == END).await;
    let conn = quick_closing(&relay).await;
    // Each on a session of its own: what the peer sent and the relay lost leaves that
    // session's handles (or channel) in use on our side alone, and the peer may reuse them.
    let session = conn.begin_session().await.expect("session");
    let sender = session.sender("s", "q").await.expect("sender");
    sender.send(&Message::with_data(&b"x"[..])).await.expect("sent and accepted");
    // Each waited for ever before.
    let err = within("detach", sender.detach()).await.expect_err("no detach came back");
    assert!(matches!(err, Error::Timeout("the peer's detach")), "{err}");
    let session = conn.begin_session().await.expect("session");
    let receiver = session.receiver("r", "out", 1).await.expect("receiver");
    let err = within("close", receiver.close()).await.expect_err("no detach came back");
    assert!(matches!(err, Error::Timeout("the peer's detach")), "{err}");
    let ending = conn.begin_session().await.expect("session");
    let going_on = conn.begin_session().await.expect("another session");
    let err = within("end", ending.end()).await.expect_err("no end came back");
    assert!(matches!(err, Error::Timeout("the peer's end")), "{err}");
    // The connection itself goes on.
    let sender = going_on.sender("s2", "q").await.expect("another sender");
    sender.send(&Message::with_data(&b"y"[..])).await.expect("sent and accepted");
}

#[tokio::test]
async fn a_refusal_the_peer_sends_no_detach_after_fails_after_the_close_time_out() {
    let (url, _) = serve("amqp://127.0.0.1:0", options(), 0).await;
    let upstream = url.trim_start_matches("amqp://").trim_end_matches('/').to_owned();
    let relay = dropping_relay(upstream, |code| code == 0x16).await;
    let conn = quick_closing(&relay).await;
    let session = conn.begin_session().await.expect("session");
    // The server answers with a null target, then detaches with why: the detach is lost.
    let err = within("attach", session.sender("s", "forbidden")).await.expect_err("refused");
    assert!(matches!(err, Error::LinkRefused(None)), "{err}");
    // (On another session: the peer may give its next link the handle whose detach was
    // lost.)
    let session = conn.begin_session().await.expect("another session");
    let ok = session.sender("s2", "fine").await.expect("another link");
    ok.send(&Message::with_data(&b"x"[..])).await.expect("sent");
}

/// A scripted server (`amqpwire script`) that sends an unsettled delivery and then breaks
/// the link's rules (a continuation that changes the delivery-id): the engine detaches the
/// link with the violation, and a settle of the delivery taken before says why the link
/// went, not the engine's "the link has sent its detach already". The script never answers
/// the detach: the link stays detaching until the test closes the connection.
#[tokio::test]
async fn a_settle_on_a_link_detached_for_a_violation_says_why_it_went() {
    use std::io::BufRead;
    let script = std::env::temp_dir().join(format!("amqpwire-settle-{}.jsonl", std::process::id()));
    std::fs::write(
        &script,
        r#"{"sasl-server": {"anonymous": true}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"send": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "open"}}
{"send": {"performative": "open", "fields": {"container-id": "scripted"}}}
{"expect": {"performative": "begin"}}
{"send": {"performative": "begin", "fields": {"remote-channel": 0, "next-outgoing-id": 0, "incoming-window": 100, "outgoing-window": 100}}}
{"expect": {"performative": "attach", "fields": {"name": "r", "handle": "$h", "role": "receiver"}}}
{"send": {"performative": "attach", "fields": {"name": "r", "handle": 0, "role": "sender", "initial-delivery-count": 0, "source": {"described": [{"ulong": 40}, ["q"]]}, "target": {"described": [{"ulong": 41}, []]}}}}
{"expect": {"performative": "flow", "fields": {"handle": "$h"}}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 0, "delivery-tag": "01"}, "data": "kept"}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 1, "delivery-tag": "02", "more": true}, "data": "part"}}
{"send": {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 5}, "data": "rest"}}
{"expect": {"performative": "detach", "fields": {"handle": "$h"}}}
{"ignore": ["flow", "end"]}
{"expect": {"performative": "close"}, "within": 60000}
{"send": {"performative": "close"}}
"#,
    )
    .expect("write the script");
    let mut peer = std::process::Command::new(env!("CARGO_BIN_EXE_amqpwire"))
        .args(["script", "--listen", "amqp://127.0.0.1:0"])
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the scripted peer");
    let mut stdout = std::io::BufReader::new(peer.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a line");
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        rest
    });
    let url = first.trim().strip_prefix("listening on ").expect("`listening on URL`").to_owned();
    let conn = within("connect", Connection::connect(&url)).await.expect("connected");
    let session = within("begin", conn.begin_session()).await.expect("session");
    let receiver = within("attach", session.receiver("r", "q", 10)).await.expect("receiver");
    let kept = within("the first delivery", receiver.recv()).await.expect("a delivery");
    // The broken continuation detaches the link: the next receive says so, with the
    // violation's condition.
    let gone = within("the link's end", receiver.recv()).await.expect_err("the link went");
    let Error::LinkDetached(Some(why)) = &gone else { panic!("{gone:?}") };
    let settled = receiver.accept(&kept);
    match &settled {
        Err(Error::LinkDetached(Some(e))) => assert_eq!(e.condition, why.condition),
        other => panic!("accept after the link went: {other:?}"),
    }
    drop((receiver, session));
    let closed = within("the close", conn.close(None)).await;
    let out =
        within("the peer's end", tokio::task::spawn_blocking(move || peer.wait_with_output()))
            .await
            .expect("join")
            .expect("the peer ends");
    let _ = std::fs::remove_file(&script);
    let said = rest.join().expect("the peer's output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the scripted peer: {stderr}\n{said}");
    assert!(closed.is_ok(), "{closed:?}");
}

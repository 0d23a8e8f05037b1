//! The embedded broker on loopback: amqpwire clients send to and receive from its queues,
//! settle in every way, and authenticate (or fail to).

#[path = "support/pki.rs"]
mod pki;

use std::collections::HashSet;
use std::time::Duration;

use amqpwire::broker::{dead_letter_address, listen_options, Broker, DYNAMIC_PREFIX};
use amqpwire::codec::{Symbol, Value};
use amqpwire::connection::{ConnectionError, LinkOptions};
use amqpwire::message::{AnnotationMap, Body, Message};
use amqpwire::runtime::{ConnectOptions, Connection, Error, Listener, Receiver, Session};
use amqpwire::types::{
    condition, Accepted, AttachSource, AttachTarget, DeliveryState, Error as AmqpError, Header,
    MessageId, Properties, ReceiverSettleMode, Rejected, SenderSettleMode, Source, Target,
};
use bytes::Bytes;

/// Fails a test that hangs instead of letting it run forever.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Waits (with a hang guard) until `f` holds: for broker state that changes after the
/// client's call returns, such as a message pre-settled or a link the peer closed.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A broker serving one TCP listener on a free port; its port.
async fn start(users: &[(&str, &str)]) -> (Broker, u16) {
    let users: Vec<(String, String)> =
        users.iter().map(|(u, p)| ((*u).to_owned(), (*p).to_owned())).collect();
    let listener = Listener::bind("amqp://127.0.0.1:0", listen_options(&users, None, None))
        .await
        .expect("bind");
    let port = listener.endpoint().port;
    let broker = Broker::new();
    let b = broker.clone();
    tokio::spawn(async move { b.serve(listener).await });
    (broker, port)
}

async fn session(port: u16) -> (Connection, Session) {
    let conn = within("connect", Connection::connect(&format!("amqp://127.0.0.1:{port}")))
        .await
        .expect("connect");
    let session = within("begin", conn.begin_session()).await.expect("session");
    (conn, session)
}

/// Sends `bodies` as data messages to `address`, each accepted.
async fn fill(session: &Session, address: &str, bodies: &[&str]) {
    let sender = within("attach", session.sender(&format!("fill-{address}"), address))
        .await
        .expect("sender");
    for b in bodies {
        let outcome = within("send", sender.send(&Message::with_data(b.as_bytes().to_vec()))).await;
        assert_eq!(outcome.expect("an outcome"), DeliveryState::Accepted(Accepted {}));
    }
    within("detach", sender.close()).await.expect("detach");
}

/// A receiver that grants credit only when told to.
async fn manual_receiver(session: &Session, name: &str, address: &str) -> Receiver {
    within("attach", session.receiver(name, address, 0)).await.expect("receiver")
}

fn body(d: &amqpwire::runtime::Delivery) -> String {
    let m = d.message().expect("a message");
    String::from_utf8(m.body.as_data().expect("data").to_vec()).expect("UTF-8")
}

/// Asserts that nothing more arrives on `rx`: a drain is the barrier (the broker answers
/// it after every transfer it was going to send on the link, 2.6.7), then nothing may be
/// queued. No quiet window: the verdict does not depend on how fast anything runs.
async fn nothing_more(rx: &Receiver) {
    within("drain", rx.drain()).await.expect("drained");
    // A zero time-out polls `recv` once: what is queued comes out at once.
    let r = tokio::time::timeout(Duration::ZERO, rx.recv()).await;
    assert!(r.is_err(), "nothing more should arrive, got {:?}", r.map(|d| d.map(|d| body(&d))));
}

#[tokio::test]
async fn every_body_kind_goes_through_a_named_queue_unchanged() {
    let (broker, port) = start(&[]).await;
    let (conn, session) = session(port).await;
    let mut data = Message::with_data(&b"hello"[..]);
    data.properties = Some(Properties {
        message_id: Some(MessageId::String("m-1".into())),
        subject: Some("greeting".into()),
        content_type: Some(Symbol::from("text/plain")),
        reply_to: Some("replies".into()),
        ..Properties::default()
    });
    data.application_properties = Some(AnnotationMap::from_pairs([
        ("colour", Value::from("blue")),
        ("n", Value::from(7i32)),
    ]));
    data.header = Some(Header { durable: true, priority: 6, ..Header::default() });
    let two_sections = Message {
        body: Body::Data(
            [Bytes::from_static(b"part 1"), Bytes::from_static(b"part 2")].into_iter().collect(),
        ),
        ..Message::default()
    };
    let value = Message::with_value(Value::Map(
        vec![(Value::from("k"), Value::from(1u64))],
        amqpwire::codec::Fmt::Auto,
    ));
    let sequence = Message {
        body: Body::Sequence(vec![
            vec![Value::from("a"), Value::from(2i64)],
            vec![Value::from(true)],
        ]),
        message_annotations: Some(AnnotationMap::from_pairs([(
            Value::Symbol(Symbol::from("x-opt-k"), amqpwire::codec::Fmt::Auto),
            Value::from("v"),
        )])),
        ..Message::default()
    };
    let empty = Message::default();
    let sent = [data, two_sections, value, sequence, empty];

    let sender = within("attach", session.sender("s", "kinds")).await.expect("sender");
    for m in &sent {
        let outcome = within("send", sender.send(m)).await.expect("an outcome");
        assert_eq!(outcome, DeliveryState::Accepted(Accepted {}));
    }
    assert_eq!(broker.queue_depth("kinds"), sent.len());
    assert_eq!(broker.stats().messages_in, sent.len() as u64);

    let rx = within("attach", session.receiver("r", "kinds", 10)).await.expect("receiver");
    for m in &sent {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert!(!d.settled, "a receiver in mixed mode gets unsettled deliveries");
        assert_eq!(&d.message().expect("decodes"), m);
        rx.accept(&d).expect("accept");
    }
    // The counter is updated after the queue, so it is part of the condition waited on.
    eventually("all accepted", || {
        broker.queue_info("kinds").is_some_and(|q| q.depth == 0 && q.in_flight == 0)
            && broker.stats().messages_out == sent.len() as u64
    })
    .await;
    nothing_more(&rx).await;
    within("close", conn.close(None)).await.expect("clean close");
}

#[tokio::test]
async fn a_queue_made_by_a_receiver_is_filled_later() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    assert!(broker.queues().is_empty());
    let rx = within("attach", session.receiver("early", "later", 10)).await.expect("receiver");
    assert_eq!(broker.queues(), ["later"]);
    // The consumer registers when the link's task first runs, after the attach answer.
    eventually("a consumer", || broker.queue_info("later").is_some_and(|q| q.consumers == 1)).await;
    let (_conn2, session2) = self::session(port).await;
    fill(&session2, "later", &["1", "2", "3"]).await;
    for want in ["1", "2", "3"] {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert_eq!(body(&d), want);
        rx.accept(&d).expect("accept");
    }
}

#[tokio::test]
async fn competing_consumers_share_a_queue_without_duplicates() {
    let (broker, port) = start(&[]).await;
    let (_c1, s1) = session(port).await;
    let (_c2, s2) = session(port).await;
    // Windows of 5: neither can hold more than 5 before taking any.
    let a = within("attach", s1.receiver("a", "work", 5)).await.expect("a");
    let b = within("attach", s2.receiver("b", "work", 5)).await.expect("b");
    let bodies: Vec<String> = (0..10).map(|i| format!("job {i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let (_c3, s3) = session(port).await;
    fill(&s3, "work", &refs).await;
    // Take from whichever has a delivery: how the ten are shared depends on when each
    // window refills, and only their sum is fixed.
    let mut seen = HashSet::new();
    while seen.len() < 10 {
        let (d, rx) = within("recv", async {
            tokio::select! {
                d = a.recv() => (d, &a),
                d = b.recv() => (d, &b),
            }
        })
        .await;
        let d = d.expect("a delivery");
        assert!(seen.insert(body(&d)), "a message delivered twice");
        rx.accept(&d).expect("accept");
    }
    assert_eq!(seen, bodies.into_iter().collect::<HashSet<_>>());
    eventually("all settled", || broker.queue_info("work").is_some_and(|q| q.in_flight == 0)).await;
    assert_eq!(broker.queue_depth("work"), 0);
    nothing_more(&a).await;
    nothing_more(&b).await;
}

#[tokio::test]
async fn a_consumer_gets_no_more_than_its_credit() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "credit", &["1", "2", "3", "4", "5"]).await;
    let rx = manual_receiver(&session, "r", "credit").await;
    nothing_more(&rx).await;
    rx.set_credit(2).expect("credit");
    let first: Vec<_> = [within("recv", rx.recv()).await, within("recv", rx.recv()).await]
        .into_iter()
        .map(|d| d.expect("a delivery"))
        .collect();
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["1", "2"]);
    nothing_more(&rx).await;
    let info = broker.queue_info("credit").expect("queue");
    assert_eq!((info.depth, info.in_flight), (3, 2));
    for d in &first {
        rx.accept(d).expect("accept");
    }
    rx.set_credit(3).expect("credit");
    for want in ["3", "4", "5"] {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert_eq!(body(&d), want);
        rx.accept(&d).expect("accept");
    }
    // A drain with nothing left is answered at once: the credit is given back.
    rx.set_credit(4).expect("credit");
    within("drain", rx.drain()).await.expect("drained");
    eventually("settled", || broker.queue_info("credit").is_some_and(|q| q.in_flight == 0)).await;
}

#[tokio::test]
async fn credit_granted_for_a_total_counts_what_came_taken_or_not() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "total", &["1", "2", "3", "4", "5"]).await;
    let rx = manual_receiver(&session, "r", "total").await;
    let start = rx.delivery_count().expect("delivery-count");
    // Three wanted in all, at most two at a time.
    assert_eq!(rx.set_credit_for(3, 2).expect("credit"), Some(2));
    // Both come, and wait in the queue, not taken.
    eventually("two arrived", || rx.delivery_count().is_ok_and(|c| c == start.wrapping_add(2)))
        .await;
    // Counted though not taken: one more is all that is left (granting by what was
    // taken would have asked for two more, five in all).
    assert_eq!(rx.set_credit_for(3, 2).expect("credit"), Some(1));
    for want in ["1", "2", "3"] {
        assert_eq!(body(&within("recv", rx.recv()).await.expect("a delivery")), want);
    }
    assert_eq!(rx.set_credit_for(3, 2).expect("credit"), None);
    nothing_more(&rx).await;
    let info = broker.queue_info("total").expect("queue");
    assert_eq!((info.depth, info.in_flight), (2, 3));
    // Two more wanted (five in all): granted, taken, and nothing more is asked for.
    assert_eq!(rx.set_credit_for(5, 2).expect("credit"), Some(2));
    for want in ["4", "5"] {
        assert_eq!(body(&within("recv", rx.recv()).await.expect("a delivery")), want);
    }
    assert_eq!(rx.set_credit_for(5, 2).expect("credit"), None);
}

#[tokio::test]
async fn a_drain_gets_what_there_is_and_gives_back_the_rest() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "drain", &["1", "2"]).await;
    let rx = manual_receiver(&session, "r", "drain").await;
    rx.set_credit(5).expect("credit");
    within("drain", rx.drain()).await.expect("drained");
    for want in ["1", "2"] {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert_eq!(body(&d), want);
        rx.accept(&d).expect("accept");
    }
    // The credit left was used up: a message sent now waits for more.
    fill(&session, "drain", &["3"]).await;
    nothing_more(&rx).await;
    assert_eq!(broker.queue_depth("drain"), 1);
    rx.set_credit(1).expect("credit");
    assert_eq!(body(&within("recv", rx.recv()).await.expect("a delivery")), "3");
}

#[tokio::test]
async fn presettled_both_ways() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let mut o = LinkOptions::sender("settled-sender", "fast");
    o.snd_settle_mode = SenderSettleMode::SETTLED;
    let tx = within("attach", session.attach_sender(o)).await.expect("sender");
    assert_eq!(tx.remote().snd_settle_mode, SenderSettleMode::SETTLED);
    for i in 0..3 {
        tx.send_settled(&Message::with_data(format!("{i}").into_bytes())).await.expect("sent");
    }
    eventually("stored", || broker.queue_depth("fast") == 3).await;

    let mut o = LinkOptions::receiver("settled-receiver", "fast");
    o.snd_settle_mode = SenderSettleMode::SETTLED;
    let rx = within("attach", session.attach_receiver(o, 10)).await.expect("receiver");
    for want in ["0", "1", "2"] {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert!(d.settled, "sent pre-settled");
        assert_eq!(body(&d), want);
    }
    // Gone once sent: nothing waits for an outcome.
    eventually("delivered", || {
        broker.queue_info("fast").is_some_and(|q| q.depth == 0 && q.in_flight == 0)
            && broker.stats().messages_out == 3
    })
    .await;
}

#[tokio::test]
async fn receiver_settle_mode_second_both_ways() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let mut o = LinkOptions::sender("second-sender", "second");
    o.rcv_settle_mode = ReceiverSettleMode::SECOND;
    let tx = within("attach", session.attach_sender(o)).await.expect("sender");
    assert_eq!(tx.remote().rcv_settle_mode, ReceiverSettleMode::SECOND);
    let outcome = within("send", tx.send(&Message::with_data(&b"x"[..]))).await;
    assert_eq!(outcome.expect("an outcome"), DeliveryState::Accepted(Accepted {}));
    assert_eq!(broker.queue_depth("second"), 1);

    let mut o = LinkOptions::receiver("second-receiver", "second");
    o.rcv_settle_mode = ReceiverSettleMode::SECOND;
    let rx = within("attach", session.attach_receiver(o, 10)).await.expect("receiver");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert!(!d.settled);
    rx.accept(&d).expect("the outcome goes unsettled, the broker settles first");
    eventually("accepted", || {
        broker.queue_info("second").is_some_and(|q| q.depth == 0 && q.in_flight == 0)
            && broker.stats().messages_out == 1
    })
    .await;
}

#[tokio::test]
async fn released_goes_back_to_the_front_uncounted() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "rel", &["a", "b"]).await;
    let rx = manual_receiver(&session, "r", "rel").await;
    rx.set_credit(1).expect("credit");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "a");
    rx.release(&d).expect("release");
    eventually("re-queued", || broker.queue_depth("rel") == 2).await;
    rx.set_credit(1).expect("credit");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "a", "a released message goes back to the front");
    assert_eq!(d.message().expect("message").header.map_or(0, |h| h.delivery_count), 0);
    // Two taken and released one after the other: back in the order they were stored.
    rx.set_credit(1).expect("credit");
    let b = within("recv", rx.recv()).await.expect("b");
    assert_eq!(body(&b), "b");
    rx.release(&d).expect("release a");
    rx.release(&b).expect("release b");
    eventually("re-queued", || broker.queue_depth("rel") == 2).await;
    rx.set_credit(2).expect("credit");
    let first = within("recv", rx.recv()).await.expect("first");
    let second = within("recv", rx.recv()).await.expect("second");
    assert_eq!([body(&first), body(&second)], ["a", "b"]);
    rx.accept(&first).expect("accept");
    rx.accept(&second).expect("accept");
}

#[tokio::test]
async fn modified_counts_failed_deliveries_and_keeps_away_from_the_link() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "mod", &["m"]).await;
    let rx = manual_receiver(&session, "r", "mod").await;
    for expected_count in 0..2 {
        rx.set_credit(1).expect("credit");
        let d = within("recv", rx.recv()).await.expect("a delivery");
        let m = d.message().expect("message");
        assert_eq!(m.header.map_or(0, |h| h.delivery_count), expected_count);
        rx.modify(&d, true, false).expect("modify");
    }
    // Undeliverable here: it stays away from this link, and goes to another.
    rx.set_credit(1).expect("credit");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(d.message().expect("message").header.expect("header").delivery_count, 2);
    rx.modify(&d, false, true).expect("modify");
    eventually("re-queued", || broker.queue_depth("mod") == 1).await;
    rx.set_credit(1).expect("credit");
    nothing_more(&rx).await;
    assert_eq!(broker.queue_depth("mod"), 1);
    let other = within("attach", session.receiver("other", "mod", 5)).await.expect("receiver");
    let d = within("recv", other.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "m");
    assert_eq!(d.message().expect("message").header.expect("header").delivery_count, 2);
    other.accept(&d).expect("accept");
}

#[tokio::test]
async fn rejected_goes_to_the_dead_letter_queue_with_its_error() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "orders", &["good", "bad"]).await;
    let rx = within("attach", session.receiver("r", "orders", 10)).await.expect("receiver");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    rx.accept(&d).expect("accept");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "bad");
    let why = AmqpError::new(condition::PRECONDITION_FAILED, "no such product");
    rx.reject(&d, Some(why.clone())).expect("reject");
    eventually("dead-lettered", || {
        broker.dead_letters("orders").len() == 1 && broker.stats().dead_lettered == 1
    })
    .await;
    assert_eq!(broker.queue_depth("orders"), 0);
    assert_eq!(dead_letter_address("orders"), "orders/$deadletter");
    assert_eq!(broker.queue_depth("orders/$deadletter"), 1);
    let dead = &broker.dead_letters("orders")[0];
    assert_eq!(dead.error.as_ref(), Some(&why));
    assert_eq!(broker.stats().dead_lettered, 1);

    // The dead-letter queue is a queue like any other, the error in the annotations.
    let dlq =
        within("attach", session.receiver("dlq", "orders/$deadletter", 10)).await.expect("dlq");
    let d = within("recv", dlq.recv()).await.expect("a dead letter");
    let m = d.message().expect("message");
    assert_eq!(m.body.as_data().map(|b| &b[..]), Some(&b"bad"[..]));
    let a = m.message_annotations.expect("annotations");
    let condition = a.get("x-opt-dead-letter-condition").expect("condition");
    let condition = condition.to_owned_value().expect("a value");
    assert!(
        matches!(&condition, Value::Symbol(s, _) if s.as_str() == condition::PRECONDITION_FAILED),
        "{condition:?}"
    );
    let description = a.get("x-opt-dead-letter-description").expect("description");
    assert_eq!(description.as_str(), Some("no such product"));
    dlq.accept(&d).expect("accept");
    eventually("taken", || broker.dead_letters("orders").is_empty()).await;
}

#[tokio::test]
async fn unsettled_deliveries_come_back_when_their_link_or_connection_goes() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "back", &["1", "2", "3"]).await;

    // A link that closes holding two.
    let rx = within("attach", session.receiver("first", "back", 2)).await.expect("receiver");
    for want in ["1", "2"] {
        assert_eq!(body(&within("recv", rx.recv()).await.expect("a delivery")), want);
    }
    assert_eq!(broker.queue_info("back").expect("queue").in_flight, 2);
    within("detach", rx.close()).await.expect("detach");
    eventually("given back", || {
        broker.queue_info("back").is_some_and(|q| q.depth == 3 && q.in_flight == 0)
    })
    .await;

    // A connection that closes holding three.
    let (conn2, session2) = self::session(port).await;
    let rx = within("attach", session2.receiver("second", "back", 5)).await.expect("receiver");
    for want in ["1", "2", "3"] {
        assert_eq!(body(&within("recv", rx.recv()).await.expect("a delivery")), want);
    }
    within("close", conn2.close(None)).await.expect("close");
    eventually("given back", || {
        broker.queue_info("back").is_some_and(|q| q.depth == 3 && q.in_flight == 0)
    })
    .await;

    // In their order, to the next consumer.
    let rx = within("attach", session.receiver("third", "back", 5)).await.expect("receiver");
    for want in ["1", "2", "3"] {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert_eq!(body(&d), want);
        rx.accept(&d).expect("accept");
    }
    eventually("stats", || broker.stats().open_connections == 1).await;
}

#[tokio::test]
async fn a_consumer_detached_and_attached_again_gets_its_unsettled_message_once() {
    // The broker puts back what a link leaves unsettled when it detaches without closing:
    // its attach to the link's return says nothing is unsettled (it said the delivery
    // was, then sent it again as a new one: twice, to a client that resumed it).
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "again", &["1"]).await;
    let rx = within("attach", session.receiver("rr", "again", 1)).await.expect("receiver");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "1");
    within("detach", rx.detach()).await.expect("detach, not closed");
    eventually("given back", || broker.queue_info("again").is_some_and(|q| q.depth == 1)).await;
    let mut options = LinkOptions::receiver("rr", "again");
    options.unsettled =
        vec![amqpwire::connection::UnsettledDelivery { tag: d.tag.clone(), state: None }];
    let rx = within("re-attach", session.attach_receiver(options, 5)).await.expect("receiver");
    let empty = match &rx.remote().unsettled {
        None => true,
        Some(Value::Map(m, _)) => m.is_empty(),
        Some(_) => false,
    };
    assert!(empty, "{:?}", rx.remote().unsettled);
    let d = within("recv", rx.recv()).await.expect("sent afresh");
    assert_eq!(body(&d), "1");
    rx.accept(&d).expect("accept");
    nothing_more(&rx).await;
}

fn dynamic_receiver(name: &str) -> LinkOptions {
    let mut o = LinkOptions::receiver(name, "");
    o.source = Some(AttachSource::Source(Source { dynamic: true, ..Source::default() }));
    o
}

fn source_address(rx: &Receiver) -> String {
    match &rx.remote().source {
        Some(AttachSource::Source(s)) => {
            assert!(s.dynamic);
            s.address.as_deref().expect("an address").to_owned()
        }
        other => panic!("expected a source, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dynamic_node_gets_a_unique_address_and_vanishes_when_its_link_closes() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let rx = within("attach", session.attach_receiver(dynamic_receiver("d1"), 10))
        .await
        .expect("receiver");
    let other = within("attach", session.attach_receiver(dynamic_receiver("d2"), 10))
        .await
        .expect("receiver");
    let (address, other_address) = (source_address(&rx), source_address(&other));
    assert!(address.starts_with(DYNAMIC_PREFIX), "{address}");
    assert_ne!(address, other_address);
    assert!(broker.queue_info(&address).expect("made").dynamic);

    // Replies reach it by its address.
    let tx = within("attach", session.sender("replier", &address)).await.expect("sender");
    let outcome = within("send", tx.send(&Message::with_data(&b"reply"[..]))).await;
    assert_eq!(outcome.expect("outcome"), DeliveryState::Accepted(Accepted {}));
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "reply");
    rx.accept(&d).expect("accept");

    within("detach", rx.close()).await.expect("detach");
    eventually("deleted", || broker.queue_info(&address).is_none()).await;
    assert!(broker.queue_info(&other_address).is_some(), "only that node goes");
    // A sender still attached to it has its messages rejected; new links are refused.
    let outcome = within("send", tx.send(&Message::with_data(&b"late"[..]))).await;
    match outcome.expect("an outcome") {
        DeliveryState::Rejected(Rejected { error: Some(e) }) => {
            assert_eq!(e.condition.as_str(), condition::RESOURCE_DELETED);
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    let err = within("attach", session.sender("late", &address)).await.expect_err("refused");
    assert!(
        matches!(&err, Error::LinkRefused(Some(e)) if e.condition.as_str() == condition::NOT_FOUND),
        "{err}"
    );

    // A dynamic target works the same way.
    let mut o = LinkOptions::sender("dyn-sender", "");
    o.target = Some(AttachTarget::Target(Target { dynamic: true, ..Target::default() }));
    let tx = within("attach", session.attach_sender(o)).await.expect("sender");
    let Some(AttachTarget::Target(t)) = &tx.remote().target else { panic!("a target") };
    let target = t.address.as_deref().expect("an address").to_owned();
    assert!(target.starts_with(DYNAMIC_PREFIX) && target != address && target != other_address);
    within("send", tx.send(&Message::with_data(&b"x"[..]))).await.expect("sent");
    assert_eq!(broker.queue_depth(&target), 1);
    within("detach", tx.close()).await.expect("detach");
    eventually("deleted", || broker.queue_info(&target).is_none()).await;
}

#[tokio::test]
async fn addressless_links_are_refused_and_coordinators_answered() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let ctl = within("attach", session.coordinator()).await.expect("a coordinator");
    let Some(AttachTarget::Coordinator(c)) = &ctl.remote().target else { panic!("no coordinator") };
    assert!(c.capabilities.iter().any(|s| s.as_str() == "amqp:local-transactions"));

    let mut o = LinkOptions::receiver("nowhere", "");
    o.source = Some(AttachSource::Source(Source::default()));
    let err = within("attach", session.attach_receiver(o, 1)).await.expect_err("refused");
    assert!(
        matches!(&err, Error::LinkRefused(Some(e)) if e.condition.as_str() == condition::INVALID_FIELD),
        "{err}"
    );
    let mut o = LinkOptions::sender("nowhere", "");
    o.target = Some(AttachTarget::Target(Target::default()));
    let err = within("attach", session.attach_sender(o)).await.expect_err("refused");
    assert!(
        matches!(&err, Error::LinkRefused(Some(e)) if e.condition.as_str() == condition::INVALID_FIELD),
        "{err}"
    );
    assert!(broker.queues().is_empty());
    // The session carries on.
    fill(&session, "fine", &["x"]).await;
}

#[tokio::test]
async fn with_users_sasl_is_required_and_checked() {
    let (broker, port) = start(&[("alice", "secret"), ("bob", "hunter2")]).await;
    let plain = format!("amqp://alice:secret@127.0.0.1:{port}");
    let conn = within("PLAIN", Connection::connect(&plain)).await.expect("PLAIN");
    assert!(conn.remote_open().is_some());
    let session = conn.begin_session().await.expect("session");
    fill(&session, "private", &["x"]).await;
    conn.close(None).await.expect("close");
    let scram = format!("amqp://bob:hunter2@127.0.0.1:{port}/?sasl-mechanism=SCRAM-SHA-256");
    let conn = within("SCRAM", Connection::connect(&scram)).await.expect("SCRAM");
    conn.close(None).await.expect("close");

    // Refusals come as SASL outcomes, not a hang until some time-out: the error's kind
    // says so, whatever the machine's load (the bound only turns a hang into a failure).
    let quick = Duration::from_secs(20);
    for url in [
        format!("amqp://alice:wrong@127.0.0.1:{port}"),
        format!("amqp://alice:wrong@127.0.0.1:{port}/?sasl-mechanism=SCRAM-SHA-256"),
        format!("amqp://mallory:secret@127.0.0.1:{port}"),
    ] {
        let r = tokio::time::timeout(quick, Connection::connect(&url)).await;
        let err = r.expect("refused promptly").expect_err("refused");
        assert!(matches!(err, Error::Connection(ConnectionError::Sasl(_))), "{url}: {err}");
    }
    let anonymous = format!("amqp://127.0.0.1:{port}");
    let r = tokio::time::timeout(quick, Connection::connect(&anonymous)).await;
    let err = r.expect("refused promptly").expect_err("ANONYMOUS is not offered");
    assert!(matches!(err, Error::Connection(ConnectionError::Sasl(_))), "{err}");

    // A client that skips SASL gets the SASL header back and is let go.
    let endpoint = amqpwire::runtime::transport::Endpoint::parse(&anonymous).expect("url");
    let options = ConnectOptions {
        configure: Some(Box::new(|cfg| cfg.sasl_client = None)),
        timeout: quick,
        ..ConnectOptions::default()
    };
    let r = tokio::time::timeout(quick, Connection::connect_with(&endpoint, options)).await;
    let err = r.expect("refused promptly").expect_err("SASL is required");
    assert!(matches!(err, Error::Connection(_)), "{err}");
    assert!(!matches!(err, Error::Timeout(_)), "{err}");
    // Every one was set up; SASL came after.
    eventually("counted", || broker.stats().connections == 7).await;
    assert_eq!(broker.queue_depth("private"), 1);
}

#[tokio::test]
async fn without_users_anonymous_and_no_sasl_are_welcome() {
    let (broker, port) = start(&[]).await;
    let url = format!("amqp://127.0.0.1:{port}");
    let conn = within("ANONYMOUS", Connection::connect(&url)).await.expect("ANONYMOUS");
    let session = conn.begin_session().await.expect("session");
    fill(&session, "open", &["1"]).await;
    let endpoint = amqpwire::runtime::transport::Endpoint::parse(&url).expect("url");
    let options = ConnectOptions {
        configure: Some(Box::new(|cfg| cfg.sasl_client = None)),
        ..ConnectOptions::default()
    };
    let bare = within("no SASL", Connection::connect_with(&endpoint, options)).await.expect("bare");
    let session = bare.begin_session().await.expect("session");
    fill(&session, "open", &["2"]).await;
    assert_eq!(broker.queue_depth("open"), 2);
    assert_eq!(broker.stats().open_connections, 2);
    bare.close(None).await.expect("close");
    conn.close(None).await.expect("close");
    eventually("closed", || broker.stats().open_connections == 0).await;
}

#[tokio::test]
async fn one_broker_serves_tcp_and_websocket_listeners_at_once() {
    let broker = Broker::new();
    let mut ports = Vec::new();
    for url in ["amqp://127.0.0.1:0", "ws://127.0.0.1:0/amqp"] {
        let listener = Listener::bind(url, listen_options(&[], None, None)).await.expect("bind");
        ports.push(listener.endpoint().port);
        let b = broker.clone();
        tokio::spawn(async move { b.serve(listener).await });
    }
    let (_tcp, session) = session(ports[0]).await;
    fill(&session, "shared", &["over tcp"]).await;
    let ws = within("ws", Connection::connect(&format!("ws://127.0.0.1:{}/amqp", ports[1])))
        .await
        .expect("ws");
    let session = ws.begin_session().await.expect("session");
    let rx = within("attach", session.receiver("r", "shared", 5)).await.expect("receiver");
    let d = within("recv", rx.recv()).await.expect("a delivery");
    assert_eq!(body(&d), "over tcp");
    rx.accept(&d).expect("accept");
}

#[tokio::test]
async fn a_link_handle_reused_after_a_detach_starts_afresh() {
    // The engine gives a new link the lowest free handle: a consumer that closes and a
    // sender attached next share a handle; neither may see the other's state.
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    for round in 0..5 {
        let rx = within("attach", session.receiver("r", "reuse", 5)).await.expect("receiver");
        within("detach", rx.close()).await.expect("detach");
        let tx = within("attach", session.sender("s", "reuse")).await.expect("sender");
        let text = format!("{round}");
        let outcome = within("send", tx.send(&Message::with_data(text.into_bytes()))).await;
        assert_eq!(outcome.expect("outcome"), DeliveryState::Accepted(Accepted {}));
        within("detach", tx.close()).await.expect("detach");
    }
    assert_eq!(broker.queue_depth("reuse"), 5);
    let rx = within("attach", session.receiver("last", "reuse", 5)).await.expect("receiver");
    for want in 0..5 {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert_eq!(body(&d), want.to_string());
        rx.accept(&d).expect("accept");
    }
}

/// EXTERNAL is offered exactly when TLS asks clients for certificates, and a client that
/// presents one is authenticated as its subject's common name; one without is refused.
#[tokio::test]
async fn external_with_a_client_certificate() {
    let pki = pki::pki();
    let names = |tls| {
        let options = listen_options(&[("alice".into(), "secret".into())], tls, None);
        let auth = options.authenticator.expect("an authenticator")().expect("SASL");
        auth.mechanisms().iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(Some(pki.server())), ["SCRAM-SHA-256", "PLAIN"]);
    let asking = || pki.server().with_client_ca_pem(pki.ca.as_bytes(), false).expect("CA");
    assert_eq!(names(Some(asking())), ["SCRAM-SHA-256", "PLAIN", "EXTERNAL"]);

    let options = listen_options(&[("alice".into(), "secret".into())], Some(asking()), None);
    let listener = Listener::bind("amqps://127.0.0.1:0", options).await.expect("bind");
    let port = listener.endpoint().port;
    let broker = Broker::new();
    tokio::spawn({
        let b = broker.clone();
        async move { b.serve(listener).await }
    });
    let url = format!("amqps://localhost:{port}?sasl-mechanism=EXTERNAL");
    let endpoint = amqpwire::runtime::transport::Endpoint::parse(&url).expect("URL");
    let with_cert = pki
        .client()
        .with_client_cert_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
        .expect("client certificate");
    let options = ConnectOptions { tls: with_cert, ..ConnectOptions::default() };
    let conn = within("connect", Connection::connect_with(&endpoint, options)).await.expect("in");
    within("close", conn.close(None)).await.expect("close");
    let options = ConnectOptions { tls: pki.client(), ..ConnectOptions::default() };
    let err = within("connect", Connection::connect_with(&endpoint, options))
        .await
        .expect_err("EXTERNAL without a certificate");
    assert!(err.to_string().contains("sasl-outcome 1 (auth)"), "{err}");
}

/// `send_tagged`: a tag over 32 bytes (2.8.7) is refused by the engine and an empty one by
/// the runtime, sending nothing; a good one is sent. (The emulator's tests see such tags
/// arrive: its lock tokens.)
#[tokio::test]
async fn send_tagged_refuses_tags_the_spec_or_peers_cannot_take() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let tx = within("attach", session.sender("tagged", "q.tagged")).await.expect("sender");
    let m = Message::with_data(&b"tagged"[..]);
    for (len, tag) in [(33, Bytes::from(vec![7u8; 33])), (0, Bytes::new())] {
        match tx.send_tagged(&m, tag, false).await {
            Err(Error::Usage(amqpwire::connection::UsageError::InvalidDeliveryTag { len: l })) => {
                assert_eq!(l, len)
            }
            other => panic!("a {len}-byte tag: {other:?}"),
        }
    }
    let tag = Bytes::from(vec![0xab; 16]);
    let pending = tx.send_tagged(&m, tag.clone(), false).await.expect("send").expect("unsettled");
    assert!(matches!(within("outcome", pending).await, Ok(DeliveryState::Accepted(_))));
    assert_eq!(broker.queue_depth("q.tagged"), 1, "only the good one was sent");
}

// ------------------------------------------------------------------ transactions

#[tokio::test]
async fn messages_sent_in_a_transaction_appear_on_commit_and_vanish_on_rollback() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let ctl = within("attach", session.coordinator()).await.expect("coordinator");
    let tx = within("attach", session.sender("in", "txq")).await.expect("sender");
    let txn = within("declare", ctl.declare()).await.expect("declared");
    for b in ["a", "b"] {
        let state = within("send", tx.send_in(&txn, &Message::with_data(b.as_bytes().to_vec())))
            .await
            .expect("an outcome");
        let DeliveryState::TransactionalState(t) = state else { panic!("{state:?}") };
        assert_eq!(&t.txn_id, txn.id());
        assert!(matches!(t.outcome.as_deref(), Some(DeliveryState::Accepted(_))));
    }
    assert_eq!(broker.queue_depth("txq"), 0, "nothing is visible before the commit");
    within("commit", txn.commit()).await.expect("committed");
    // The answer to the commit comes once the work is applied.
    assert_eq!(broker.queue_depth("txq"), 2);

    let txn = within("declare", ctl.declare()).await.expect("declared");
    within("send", tx.send_in(&txn, &Message::with_data(&b"c"[..]))).await.expect("outcome");
    within("rollback", txn.rollback()).await.expect("rolled back");
    assert_eq!(broker.queue_depth("txq"), 2);
    let rx = manual_receiver(&session, "out", "txq").await;
    rx.set_credit(3).expect("credit");
    for want in ["a", "b"] {
        let d = within("recv", rx.recv()).await.expect("a delivery");
        assert_eq!(body(&d), want);
        rx.accept(&d).expect("accept");
    }
    nothing_more(&rx).await;
    assert_eq!(broker.stats().messages_in, 2);
}

#[tokio::test]
async fn outcomes_given_in_a_transaction_take_effect_on_commit_only() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    fill(&session, "retire", &["a", "b", "c"]).await;
    let ctl = within("attach", session.coordinator()).await.expect("coordinator");
    let rx = manual_receiver(&session, "r", "retire").await;
    rx.set_credit(2).expect("credit");
    let txn = within("declare", ctl.declare()).await.expect("declared");
    let a = within("recv", rx.recv()).await.expect("a");
    let b = within("recv", rx.recv()).await.expect("b");
    rx.accept_in(&txn, &a).expect("accept in txn");
    rx.accept_in(&txn, &b).expect("accept in txn");
    within("rollback", txn.rollback()).await.expect("rolled back");
    // Rolled back: both are available again, in their places before "c", their
    // delivery-count raised; and again after outcomes given in the other order.
    assert_eq!(broker.queue_depth("retire"), 3);
    for (round, last) in [(1, false), (2, true)] {
        rx.set_credit(3).expect("credit");
        let txn = within("declare", ctl.declare()).await.expect("declared");
        let mut again = Vec::new();
        for count in [round, round, round - 1] {
            let d = within("recv", rx.recv()).await.expect("again");
            assert_eq!(d.message().expect("message").header.map_or(0, |h| h.delivery_count), count);
            again.push(d);
        }
        assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["a", "b", "c"], "round {round}");
        for d in again.iter().rev() {
            rx.accept_in(&txn, d).expect("accept in txn");
        }
        let q = broker.queue_info("retire").expect("queue");
        assert_eq!(q.in_flight, 3, "held until the end");
        if last {
            within("commit", txn.commit()).await.expect("committed");
        } else {
            within("rollback", txn.rollback()).await.expect("rolled back");
        }
    }
    let q = broker.queue_info("retire").expect("queue");
    assert_eq!((q.depth, q.in_flight), (0, 0));
    assert_eq!(broker.stats().messages_out, 3);
}

#[tokio::test]
async fn the_coordinator_refuses_what_it_does_not_know_and_rolls_back_when_the_controller_goes() {
    let (broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let ctl = within("attach", session.coordinator()).await.expect("coordinator");
    let tx = within("attach", session.sender("in", "gone")).await.expect("sender");
    let txn = within("declare", ctl.declare()).await.expect("declared");
    within("send", tx.send_in(&txn, &Message::with_data(&b"x"[..]))).await.expect("outcome");
    let id = txn.id().clone();
    within("commit", txn.commit()).await.expect("committed");
    assert_eq!(broker.queue_depth("gone"), 1);
    // The same id again: discharged already, so unknown to work and to a discharge.
    let stale = ctl.transaction(id);
    let state = within("send", tx.send_in(&stale, &Message::with_data(&b"y"[..])))
        .await
        .expect("an outcome");
    let DeliveryState::Rejected(Rejected { error: Some(e) }) = state else { panic!("{state:?}") };
    assert_eq!(e.condition.as_str(), condition::TRANSACTION_UNKNOWN_ID);
    let err = within("commit", stale.commit()).await.expect_err("unknown");
    assert!(
        matches!(&err, Error::Transaction(e) if e.condition.as_str() == condition::TRANSACTION_UNKNOWN_ID),
        "{err}"
    );
    assert_eq!(broker.queue_depth("gone"), 1);

    // Work left open when the control link closes is rolled back.
    let txn = within("declare", ctl.declare()).await.expect("declared");
    within("send", tx.send_in(&txn, &Message::with_data(&b"z"[..]))).await.expect("outcome");
    drop(txn);
    within("close", ctl.close()).await.expect("closed");
    let ctl = within("attach", session.coordinator()).await.expect("coordinator");
    let txn = within("declare", ctl.declare()).await.expect("declared");
    within("commit", txn.commit()).await.expect("committed");
    assert_eq!(broker.queue_depth("gone"), 1, "the rolled-back message never arrives");
}

// ------------------------------------------------------------------ $cbs

#[tokio::test]
async fn cbs_answers_each_connection_alone_and_never_passes_a_token_on() {
    use amqpwire::azure::cbs::{CbsClient, CbsStatus, PutToken, SAS_TOKEN_TYPE};
    let (broker, port) = start(&[]).await;
    let token = |who: &str| {
        format!("SharedAccessSignature sr=sb%3A%2F%2Fb%2F{who}&sig=c2ln&se=4102444800&skn=k")
    };
    // A first client puts its token.
    let (_a, a) = session(port).await;
    let cbs = within("attach $cbs", CbsClient::attach(&a)).await.expect("links");
    let status = within("put", cbs.put_token("sb://b/a", &token("a"), SAS_TOKEN_TYPE)).await;
    assert_eq!(status.expect("accepted").code, 200);
    // A second client's first message on its $cbs receiver is the answer to its own
    // request: the first client's token is nowhere to be had.
    let (_b, b) = session(port).await;
    let rx = within("attach", b.receiver("$cbs-receiver", "$cbs", 10)).await.expect("receiver");
    let tx = within("attach", b.sender("$cbs-sender", "$cbs")).await.expect("sender");
    let put = PutToken {
        message_id: Some(MessageId::String("b-1".into())),
        token_type: SAS_TOKEN_TYPE.into(),
        name: "sb://b/b".into(),
        token: token("b"),
        expiration: None,
    };
    within("send", tx.send(&put.to_message())).await.expect("sent");
    let d = within("answer", rx.recv()).await.expect("an answer");
    let m = d.message().expect("message");
    assert!(PutToken::from_message(&m).is_err(), "another client's token was delivered");
    let status = CbsStatus::from_message(&m).expect("a status");
    assert_eq!(status.correlation_id, put.message_id);
    assert_eq!(status.code, 200);
    assert!(broker.queues().is_empty(), "no queue was made: {:?}", broker.queues());
}

#[tokio::test]
async fn reserved_addresses_are_not_queues_and_cbs_checks_keys_when_given() {
    use amqpwire::azure::cbs::{CbsClient, CbsError, SAS_TOKEN_TYPE};
    use amqpwire::azure::{SasKey, SasToken};
    let key = SasKey::from_bytes(b"broker key".to_vec());
    let listener =
        Listener::bind("amqp://127.0.0.1:0", listen_options(&[], None, None)).await.expect("bind");
    let port = listener.endpoint().port;
    let broker = Broker::with_cbs_keys(vec![("owner".into(), key.clone())]);
    let b = broker.clone();
    tokio::spawn(async move { b.serve(listener).await });
    let (_conn, session) = session(port).await;
    for address in ["$management", "$foo/bar"] {
        let err = within("attach", session.sender("s", address)).await.expect_err("refused");
        assert!(
            matches!(&err, Error::LinkRefused(Some(e)) if e.condition.as_str() == condition::NOT_FOUND),
            "{address}: {err}"
        );
    }
    let cbs = within("attach $cbs", CbsClient::attach(&session)).await.expect("links");
    let expiry = 4_102_444_800;
    let good = SasToken::new("sb://broker/orders", &key, Some("owner"), expiry).expect("token");
    let status =
        within("put", cbs.put_token("sb://broker/orders", &good.to_string(), SAS_TOKEN_TYPE))
            .await
            .expect("accepted");
    assert_eq!(status.code, 200);
    let forged = SasToken::new(
        "sb://broker/orders",
        &SasKey::from_bytes(b"guess".to_vec()),
        Some("owner"),
        expiry,
    )
    .expect("token");
    match within("put", cbs.put_token("sb://broker/orders", &forged.to_string(), SAS_TOKEN_TYPE))
        .await
    {
        Err(CbsError::Refused(s)) => assert_eq!(s.code, 401),
        other => panic!("a forged token: {other:?}"),
    }
    assert!(broker.queues().is_empty(), "{:?}", broker.queues());
}

#[tokio::test]
async fn a_sender_gets_the_whole_credit_window_in_the_first_flow() {
    let (_broker, port) = start(&[]).await;
    let (_conn, session) = session(port).await;
    let tx = within("attach", session.sender("s", "window")).await.expect("sender");
    // The first flow: nothing else has happened on the link yet.
    let (credit, drain) = within("credit", tx.wait_credit()).await.expect("credit");
    assert_eq!((credit, drain), (1000, false), "docs/broker.md promises 1,000");
}

#[tokio::test]
async fn a_consumer_with_a_one_frame_session_window_gets_every_message() {
    // The consumer's session takes one transfer at a time and reopens its window with a
    // session flow after each: the broker's sender, waiting for room, hears of it (it
    // waited for ever after the first message when only a link's credit woke it).
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    consume_through_a_one_frame_window("narrow", &bodies, None).await;
}

#[tokio::test]
async fn messages_of_many_frames_pass_a_one_frame_session_window() {
    // Each message takes seven frames of 512 bytes and the consumer's window one: the
    // broker sends each frame as the window reopens (a delivery larger than the peer's
    // whole window was never sent).
    let bodies: Vec<String> = (0..4).map(|i| format!("{i}{}", "w".repeat(3000))).collect();
    consume_through_a_one_frame_window("narrow-large", &bodies, Some(512)).await;
}

/// Fills `queue` with `bodies`, then takes them all on a session whose incoming-window is
/// one frame (with frames of at most `max_frame_size`), settling only at the end.
async fn consume_through_a_one_frame_window(
    queue: &str,
    bodies: &[String],
    max_frame_size: Option<u32>,
) {
    let (_broker, port) = start(&[]).await;
    let (_c, s) = session(port).await;
    fill(&s, queue, &bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let endpoint =
        amqpwire::runtime::transport::Endpoint::parse(&format!("amqp://127.0.0.1:{port}"))
            .expect("url");
    let options = ConnectOptions {
        configure: Some(Box::new(move |cfg| {
            cfg.session.incoming_window = 1;
            if let Some(max) = max_frame_size {
                cfg.max_frame_size = max;
            }
        })),
        ..ConnectOptions::default()
    };
    let conn = within("connect", Connection::connect_with(&endpoint, options)).await.expect("up");
    let narrow = within("begin", conn.begin_session()).await.expect("session");
    let rx = within("attach", narrow.receiver("narrow-rx", queue, 20)).await.expect("rx");
    // Settled only once all have come: no disposition wakes the broker's sender.
    let mut got = Vec::new();
    for want in bodies {
        let d = within("a delivery through the narrow window", rx.recv()).await.expect("one");
        assert_eq!(&body(&d), want);
        got.push(d);
    }
    for d in &got {
        rx.accept(d).expect("accept");
    }
}

//! Transactions (part 4) on the engine's two-peer harness: the coordinator the engine
//! runs for a server (declare, discharge, transactional posting and retirement) and the
//! rules of 4.2 to 4.4 (unknown ids, rollback-only, time-outs, control links that go,
//! acquisition refused).

mod support;

use std::time::Duration;

use bytes::Bytes;

use support::{events, frame, sent, Pair};

use amqpwire::connection::txn::{
    declare_message, discharge_message, read_declared, read_discharged, transactional,
    LOCAL_TRANSACTIONS,
};
use amqpwire::connection::{
    Config, CoordinatorConfig, Event, LinkId, LinkOptions, TxnEndCause, Violation,
};
use amqpwire::message::{Message, Payload};
use amqpwire::types::{
    condition, Accepted, AttachTarget, Declare, DeliveryState, Error, Fields, Flow, Handle,
    Performative, Rejected, SequenceNo,
};

fn tag(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A client and a server whose engine runs a coordinator (`timeout` for its transactions).
fn pair(seed: u64, timeout: Option<Duration>) -> Pair {
    let mut server = Config::new("server");
    let mut coordinator = CoordinatorConfig::default();
    coordinator.timeout = timeout;
    server.coordinator = Some(coordinator);
    Pair::new(Config::new("client"), server, seed)
}

/// The client's controller link, answered by the server's engine.
fn controller(p: &mut Pair) -> (LinkId, LinkId) {
    p.attach(LinkOptions::coordinator("txn-ctl", vec![LOCAL_TRANSACTIONS.into()]))
}

/// The outcome the client's delivery `id` on `link` got, from the client's events.
fn outcome(evs: &[Event], link: LinkId, id: SequenceNo) -> Option<(bool, Option<DeliveryState>)> {
    evs.iter().find_map(|e| match e {
        Event::Disposition { link: l, delivery_id, settled, state }
            if *l == link && *delivery_id == id =>
        {
            Some((*settled, state.clone()))
        }
        _ => None,
    })
}

fn send_control(p: &mut Pair, ctl: LinkId, n: &mut u32, m: &Message) -> SequenceNo {
    *n += 1;
    let id = p.client.send(ctl, tag(&format!("c{n}")), &m.to_vec(), false).expect("send");
    p.drive();
    id
}

/// Declares a transaction; returns its id and the server's events.
fn declare(p: &mut Pair, ctl: LinkId, n: &mut u32) -> (Bytes, Vec<Event>) {
    let id = send_control(p, ctl, n, &declare_message());
    let (settled, state) = outcome(&events(&mut p.client), ctl, id).expect("declare answered");
    assert!(settled, "the coordinator settles its answer");
    (read_declared(state.as_ref()).expect("declared"), events(&mut p.server))
}

/// Discharges; returns the delivery-id of the discharge and the server's events.
fn discharge(
    p: &mut Pair,
    ctl: LinkId,
    n: &mut u32,
    txn: &Bytes,
    fail: bool,
) -> (SequenceNo, Vec<Event>) {
    let id = send_control(p, ctl, n, &discharge_message(txn.clone(), fail));
    (id, events(&mut p.server))
}

fn ended(evs: &[Event]) -> Vec<(Bytes, bool, TxnEndCause, u32)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::TxnEnded { txn_id, commit, cause, work } => {
                Some((txn_id.clone(), *commit, *cause, *work))
            }
            _ => None,
        })
        .collect()
}

fn error_of(state: Option<DeliveryState>) -> Error {
    match state {
        Some(DeliveryState::Rejected(Rejected { error: Some(e) })) => e,
        other => panic!("not rejected with an error: {other:?}"),
    }
}

/// A sender from the client to the server with credit.
fn producer(p: &mut Pair) -> (LinkId, LinkId) {
    let (snd, rcv) = p.attach(LinkOptions::sender("in", "orders"));
    p.server.flow(rcv, 100, false).expect("credit");
    p.drive();
    events(&mut p.client);
    (snd, rcv)
}

fn payload(body: &str) -> Payload {
    let mut out = Payload::default();
    Message::with_data(Bytes::copy_from_slice(body.as_bytes())).encode_payload(&mut out);
    out
}

#[test]
fn the_engine_answers_a_controller_and_declares_transactions() {
    let mut p = pair(1, None);
    let (ctl, coordinator) = controller(&mut p);
    // Our attach names the coordinator with its capabilities, and credit comes unasked.
    let ours = sent(&p.s2c)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Attach(a) => Some(a),
            _ => None,
        })
        .expect("the server's attach");
    let Some(AttachTarget::Coordinator(c)) = ours.target else { panic!("not a coordinator") };
    assert!(c.capabilities.iter().any(|s| s.as_str() == LOCAL_TRANSACTIONS));
    assert_eq!(p.client.link_credit(ctl), Some(100));
    let mut n = 0;
    let (a, evs) = declare(&mut p, ctl, &mut n);
    assert!(evs.iter().any(
        |e| matches!(e, Event::TxnDeclared { link, txn_id } if *link == coordinator && *txn_id == a)
    ));
    // Control messages are the engine's: the application never sees them as deliveries.
    assert!(!evs.iter().any(|e| matches!(e, Event::Delivery { .. })), "{evs:?}");
    let (b, _) = declare(&mut p, ctl, &mut n);
    assert_ne!(a, b, "each declare gets its own id");
    assert_eq!(p.server.open_transactions().len(), 2);
}

#[test]
fn posted_work_carries_its_transaction_and_a_commit_waits_for_the_application() {
    let mut p = pair(2, None);
    let (ctl, _) = controller(&mut p);
    let (snd, rcv) = producer(&mut p);
    let mut n = 0;
    let (txn, _) = declare(&mut p, ctl, &mut n);
    for body in ["a", "b"] {
        p.client
            .send_transactional(snd, tag(body), &payload(body), false, txn.clone())
            .expect("send");
    }
    p.drive();
    let evs = events(&mut p.server);
    let states: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Delivery { link, state, .. } if *link == rcv => Some(state.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(states.len(), 2);
    for s in &states {
        assert_eq!(s, &Some(transactional(txn.clone(), None)));
    }
    let (id, evs) = discharge(&mut p, ctl, &mut n, &txn, false);
    assert_eq!(ended(&evs), [(txn.clone(), true, TxnEndCause::Discharge, 2)]);
    // No answer until the application has applied the work.
    assert_eq!(outcome(&events(&mut p.client), ctl, id), None);
    p.server.complete_discharge(&txn, Ok(())).expect("complete");
    p.drive();
    let (settled, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert!(settled);
    assert_eq!(read_discharged(state.as_ref()), Ok(()));
    // The transaction is gone: a second discharge does not know it.
    let (id, evs) = discharge(&mut p, ctl, &mut n, &txn, false);
    assert!(ended(&evs).is_empty());
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(error_of(state).condition.as_str(), condition::TRANSACTION_UNKNOWN_ID);
    assert!(p.server.complete_discharge(&txn, Ok(())).is_err(), "nothing waits for an answer");
}

#[test]
fn a_rollback_is_discharge_with_fail_and_a_failed_commit_is_refused_with_the_application_error() {
    let mut p = pair(3, None);
    let (ctl, _) = controller(&mut p);
    let mut n = 0;
    let (t1, _) = declare(&mut p, ctl, &mut n);
    let (id, evs) = discharge(&mut p, ctl, &mut n, &t1, true);
    assert_eq!(ended(&evs), [(t1.clone(), false, TxnEndCause::Discharge, 0)]);
    p.server.complete_discharge(&t1, Ok(())).expect("complete");
    p.drive();
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(read_discharged(state.as_ref()), Ok(()));
    // The application could not apply a commit: the controller hears its error.
    let (t2, _) = declare(&mut p, ctl, &mut n);
    let (id, _) = discharge(&mut p, ctl, &mut n, &t2, false);
    let why = Error::new(condition::TRANSACTION_ROLLBACK, "the store is full");
    p.server.complete_discharge(&t2, Err(why.clone())).expect("complete");
    p.drive();
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(read_discharged(state.as_ref()), Err(why));
}

#[test]
fn work_naming_an_unknown_transaction_is_refused_before_the_application_sees_it() {
    let mut p = pair(4, None);
    let (_ctl, _) = controller(&mut p);
    let (snd, rcv) = producer(&mut p);
    let credit = p.server.link_credit(rcv).expect("credit");
    let bogus = Bytes::from_static(b"nope");
    let id = p.client.send_transactional(snd, tag("x"), &payload("x"), false, bogus).expect("send");
    p.drive();
    let evs = events(&mut p.server);
    assert!(!evs.iter().any(|e| matches!(e, Event::Delivery { .. })), "{evs:?}");
    let refused = evs.iter().find_map(|e| match e {
        Event::TxnWorkRefused { link, delivery_id, error }
            if *link == rcv && *delivery_id == id =>
        {
            Some(error.clone())
        }
        _ => None,
    });
    assert_eq!(refused.expect("refused").condition.as_str(), condition::TRANSACTION_UNKNOWN_ID);
    let (settled, state) = outcome(&events(&mut p.client), snd, id).expect("answered");
    assert!(settled);
    assert_eq!(error_of(state).condition.as_str(), condition::TRANSACTION_UNKNOWN_ID);
    assert_eq!(p.server.link_credit(rcv), Some(credit - 1));
}

#[test]
fn a_transaction_marked_failed_only_rolls_back() {
    let mut p = pair(5, None);
    let (ctl, _) = controller(&mut p);
    let (snd, _) = producer(&mut p);
    let mut n = 0;
    let (txn, _) = declare(&mut p, ctl, &mut n);
    let why = Error::new(condition::RESOURCE_DELETED, "the queue went");
    p.server.fail_transaction(&txn, why).expect("fail");
    assert_eq!(
        p.server.check_transaction(&txn).expect_err("rollback only").condition.as_str(),
        condition::TRANSACTION_ROLLBACK
    );
    // More work is refused with the rollback error ...
    let id = p
        .client
        .send_transactional(snd, tag("x"), &payload("x"), false, txn.clone())
        .expect("send");
    p.drive();
    let (_, state) = outcome(&events(&mut p.client), snd, id).expect("answered");
    assert_eq!(error_of(state).condition.as_str(), condition::TRANSACTION_ROLLBACK);
    // ... and a commit becomes a rollback, refused whatever the application answers.
    let (id, evs) = discharge(&mut p, ctl, &mut n, &txn, false);
    assert_eq!(ended(&evs), [(txn.clone(), false, TxnEndCause::RollbackOnly, 0)]);
    p.server.complete_discharge(&txn, Ok(())).expect("complete");
    p.drive();
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    let e = error_of(state);
    assert_eq!(e.condition.as_str(), condition::TRANSACTION_ROLLBACK);
    assert!(e.description.unwrap_or_default().contains("the queue went"));
}

#[test]
fn a_transaction_not_discharged_in_time_rolls_back_and_says_so_later() {
    let mut p = pair(6, Some(Duration::from_secs(5)));
    let (ctl, _) = controller(&mut p);
    let mut n = 0;
    let (txn, _) = declare(&mut p, ctl, &mut n);
    p.advance(Duration::from_secs(4));
    assert!(ended(&events(&mut p.server)).is_empty(), "not yet");
    p.advance(Duration::from_secs(2));
    assert_eq!(ended(&events(&mut p.server)), [(txn.clone(), false, TxnEndCause::Timeout, 0)]);
    let (id, _) = discharge(&mut p, ctl, &mut n, &txn, false);
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(error_of(state).condition.as_str(), condition::TRANSACTION_TIMEOUT);
}

#[test]
fn transactions_roll_back_before_their_control_link_is_reported_gone() {
    let mut p = pair(7, None);
    let (ctl, coordinator) = controller(&mut p);
    let mut n = 0;
    let (t1, _) = declare(&mut p, ctl, &mut n);
    let (t2, _) = declare(&mut p, ctl, &mut n);
    p.client.detach(ctl, true, None).expect("detach");
    p.drive();
    let evs = events(&mut p.server);
    let gone = evs
        .iter()
        .position(|e| matches!(e, Event::LinkDetached { link, .. } if *link == coordinator))
        .expect("detached");
    let mut rolled: Vec<_> = ended(&evs[..gone])
        .into_iter()
        .map(|(id, commit, cause, _)| {
            assert!(!commit);
            assert_eq!(cause, TxnEndCause::ControlLinkGone);
            id
        })
        .collect();
    rolled.sort();
    let mut want = vec![t1, t2];
    want.sort();
    assert_eq!(rolled, want);
    assert!(p.server.open_transactions().is_empty());
}

#[test]
fn only_the_transactions_of_the_control_link_that_went_roll_back() {
    let mut p = pair(9, None);
    let (ctl1, coordinator1) = controller(&mut p);
    let (ctl2, _) =
        p.attach(LinkOptions::coordinator("txn-ctl-2", vec![LOCAL_TRANSACTIONS.into()]));
    let (snd, _) = producer(&mut p);
    let mut n = 0;
    let (t1, _) = declare(&mut p, ctl1, &mut n);
    let (t2, _) = declare(&mut p, ctl2, &mut n);
    // Another link going ends no transaction.
    p.client.detach(snd, true, None).expect("detach");
    p.drive();
    assert_eq!(ended(&events(&mut p.server)), []);
    // The first control link going ends its transaction alone.
    p.client.detach(ctl1, true, None).expect("detach");
    p.drive();
    assert_eq!(ended(&events(&mut p.server)), [(t1, false, TxnEndCause::ControlLinkGone, 0)]);
    // A new control link, on the handle the first one had, takes nothing of it over and
    // the second one's transaction stays open.
    let (_, coordinator3) = controller(&mut p);
    assert_eq!(coordinator3.handle, coordinator1.handle);
    assert_ne!(coordinator3, coordinator1);
    assert_eq!(ended(&events(&mut p.server)), []);
    assert_eq!(p.server.open_transactions(), std::slice::from_ref(&t2));
    p.client.detach(ctl2, true, None).expect("detach");
    p.drive();
    assert_eq!(ended(&events(&mut p.server)), [(t2, false, TxnEndCause::ControlLinkGone, 0)]);
    assert!(p.server.open_transactions().is_empty());
}

#[test]
fn the_connection_ending_rolls_back_what_is_open_before_it_says_so() {
    let mut p = pair(8, None);
    let (ctl, _) = controller(&mut p);
    let mut n = 0;
    let (txn, _) = declare(&mut p, ctl, &mut n);
    p.client.close(None).expect("close");
    p.drive();
    let evs = events(&mut p.server);
    let end = evs.iter().position(|e| matches!(e, Event::Ended { .. })).expect("ended");
    assert_eq!(ended(&evs[..end]), [(txn, false, TxnEndCause::ControlLinkGone, 0)]);
}

#[test]
fn retirement_counts_as_work_and_a_second_settlement_is_not_new_work() {
    let mut p = pair(9, None);
    let (ctl, _) = controller(&mut p);
    // The server sends; the client receives and accepts in the transaction.
    let (rcv, snd) = p.attach(LinkOptions::receiver("out", "orders"));
    p.client.flow(rcv, 10, false).expect("credit");
    p.drive();
    let d =
        p.server.send(snd, tag("m"), &Message::with_data(&b"m"[..]).to_vec(), false).expect("send");
    p.drive();
    events(&mut p.client);
    let mut n = 0;
    let (txn, _) = declare(&mut p, ctl, &mut n);
    let accepted = DeliveryState::Accepted(Accepted {});
    let state = transactional(txn.clone(), Some(accepted));
    p.client.disposition(rcv, d, None, false, Some(state.clone())).expect("retire");
    p.drive();
    let evs = events(&mut p.server);
    assert_eq!(outcome(&evs, snd, d), Some((false, Some(state.clone()))));
    let (id, evs) = discharge(&mut p, ctl, &mut n, &txn, false);
    assert_eq!(ended(&evs), [(txn.clone(), true, TxnEndCause::Discharge, 1)]);
    p.server.complete_discharge(&txn, Ok(())).expect("complete");
    p.drive();
    assert!(outcome(&events(&mut p.client), ctl, id).is_some());
    // Settling afterwards with the same state (as Proton does) is no violation.
    p.client.disposition(rcv, d, None, true, Some(state)).expect("settle");
    p.drive();
    let evs = events(&mut p.server);
    assert!(!evs.iter().any(|e| matches!(e, Event::LinkError { .. })), "{evs:?}");
    assert_eq!(outcome(&evs, snd, d).map(|(settled, _)| settled), Some(true));
}

#[test]
fn retirement_into_an_unknown_transaction_detaches_the_link() {
    let mut p = pair(10, None);
    let (rcv, snd) = p.attach(LinkOptions::receiver("out", "orders"));
    p.client.flow(rcv, 10, false).expect("credit");
    p.drive();
    let d =
        p.server.send(snd, tag("m"), &Message::with_data(&b"m"[..]).to_vec(), false).expect("send");
    p.drive();
    let state =
        transactional(Bytes::from_static(b"??"), Some(DeliveryState::Accepted(Accepted {})));
    p.client.disposition(rcv, d, None, true, Some(state)).expect("retire");
    p.drive();
    let evs = events(&mut p.server);
    let v = evs.iter().find_map(|e| match e {
        Event::LinkError { link, violation } if *link == snd => Some(violation.clone()),
        _ => None,
    });
    let Some(Violation::TransactionWork { condition: c, .. }) = v else { panic!("{evs:?}") };
    assert_eq!(c, condition::TRANSACTION_UNKNOWN_ID);
    assert!(!evs.iter().any(|e| matches!(e, Event::Disposition { .. })));
}

#[test]
fn transactional_acquisition_is_refused_clearly() {
    let mut p = pair(11, None);
    let (rcv, snd) = p.attach(LinkOptions::receiver("out", "orders"));
    let mut props = Fields::new();
    props.insert("txn-id", Bytes::from_static(b"t"));
    let f = Flow {
        next_incoming_id: Some(SequenceNo(0)),
        incoming_window: 100,
        next_outgoing_id: SequenceNo(0),
        outgoing_window: 100,
        handle: Some(Handle(rcv.handle.0)),
        delivery_count: Some(SequenceNo(0)),
        link_credit: Some(5),
        available: None,
        drain: false,
        echo: false,
        properties: Some(props),
    };
    p.deliver(&frame(rcv.session.0, Performative::Flow(f)), true);
    p.drive();
    let evs = events(&mut p.server);
    let v = evs.iter().find_map(|e| match e {
        Event::LinkError { link, violation } if *link == snd => Some(violation.clone()),
        _ => None,
    });
    let Some(Violation::TransactionWork { condition: c, why }) = v else { panic!("{evs:?}") };
    assert_eq!(c, condition::NOT_IMPLEMENTED);
    assert!(why.contains("acquisition"));
}

#[test]
fn control_messages_that_are_not_declare_or_discharge_are_rejected_with_a_reason() {
    let mut p = pair(12, None);
    let (ctl, _) = controller(&mut p);
    let mut n = 0;
    let id = send_control(&mut p, ctl, &mut n, &Message::with_data(&b"hello"[..]));
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(error_of(state).condition.as_str(), condition::DECODE_ERROR);
    // A global-id asks for a distributed transaction, which is not offered.
    let mut bytes = Vec::new();
    amqpwire::types::Codec::encode(
        &Declare { global_id: Some(amqpwire::codec::Value::from("xa-1")) },
        &mut bytes,
    );
    let global = Message::with_value(amqpwire::codec::Value::decode(&bytes).expect("value"));
    let id = send_control(&mut p, ctl, &mut n, &global);
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(error_of(state).condition.as_str(), condition::NOT_IMPLEMENTED);
    assert!(p.server.open_transactions().is_empty());
}

#[test]
fn declares_beyond_the_limit_are_refused() {
    let mut server = Config::new("server");
    let mut coordinator = CoordinatorConfig::default();
    coordinator.max_open = 2;
    server.coordinator = Some(coordinator);
    let mut p = Pair::new(Config::new("client"), server, 13);
    let (ctl, _) = controller(&mut p);
    let mut n = 0;
    declare(&mut p, ctl, &mut n);
    declare(&mut p, ctl, &mut n);
    let id = send_control(&mut p, ctl, &mut n, &declare_message());
    let (_, state) = outcome(&events(&mut p.client), ctl, id).expect("answered");
    assert_eq!(error_of(state).condition.as_str(), condition::RESOURCE_LIMIT_EXCEEDED);
}

#[test]
fn without_a_coordinator_a_controller_is_the_application_s_to_answer() {
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(Config::new("client"), server, 14);
    let session = p.client.begin().expect("begin");
    p.client
        .attach(session, LinkOptions::coordinator("txn-ctl", vec![LOCAL_TRANSACTIONS.into()]))
        .expect("attach");
    p.drive();
    let evs = events(&mut p.server);
    assert!(evs.iter().any(|e| matches!(e, Event::AttachRequested { .. })), "{evs:?}");
    assert_eq!(
        p.server.check_transaction(b"t").expect_err("no coordinator").condition.as_str(),
        condition::TRANSACTION_UNKNOWN_ID
    );
}

#[test]
fn a_discharge_waits_for_work_the_peer_s_window_still_holds() {
    // The work is pre-settled and larger than the server's window of one frame; the
    // controller is on another session. The discharge is refused with SessionWindowFull
    // until the work's last frame has gone (it would otherwise commit without the work,
    // whose last frame the coordinator then refuses as of an unknown transaction).
    let mut server = Config::new("server");
    server.coordinator = Some(CoordinatorConfig::default());
    server.max_frame_size = 512;
    server.session.incoming_window = 1;
    let mut p = Pair::new(Config::new("client"), server, 61);
    let (ctl, _) = controller(&mut p);
    let (snd, rcv) = producer(&mut p);
    let mut n = 0;
    let (txn, _) = declare(&mut p, ctl, &mut n);
    let big = payload(&"w".repeat(3000));
    // Work outside any transaction held back does not hold a declare up.
    p.client.send_payload(snd, tag("plain"), &big, true).expect("send");
    let declare_body = declare_message().to_vec();
    p.client.send(ctl, tag("d0"), &declare_body, false).expect("a declare goes at once");
    p.drive();
    let _ = events(&mut p.client);
    p.client.send_transactional(snd, tag("w"), &big, true, txn.clone()).expect("send");
    let discharge_body = discharge_message(txn.clone(), false).to_vec();
    assert_eq!(
        p.client.send(ctl, tag("d"), &discharge_body, false),
        Err(amqpwire::connection::UsageError::SessionWindowFull)
    );
    p.drive();
    // The work's frames went; the session that held them says so.
    let ev = events(&mut p.client);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::SessionWindow { session, .. } if *session == snd.session)),
        "{ev:?}"
    );
    p.client.send(ctl, tag("d"), &discharge_body, false).expect("discharge");
    p.drive();
    let evs = events(&mut p.server);
    assert!(evs.iter().any(|e| matches!(e, Event::Delivery { link, .. } if *link == rcv)));
    assert_eq!(ended(&evs), [(txn, true, TxnEndCause::Discharge, 1)]);
}

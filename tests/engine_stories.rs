//! More stories of the connection engine on the two-peer harness: links that detach
//! without closing and resume their unsettled deliveries (2.6.13), sessions the application
//! accepts or refuses, a transaction coordinator link, and the error paths left over from
//! `tests/connection.rs`.

mod support;

use bytes::Bytes;

use support::{attached_by_peer, events, frame, raw_receiver, requested, sent, Pair};

use amqpwire::codec::{Described, Symbol, Value};
use amqpwire::connection::{
    Config, Event, LinkId, LinkOptions, LinkState, PeerUnsettled, SessionId, SessionState,
    UnsettledDelivery, UsageError, Violation, PENDING_FRAMES,
};
use amqpwire::message::{Body, Message};
use amqpwire::types::{
    condition, Accepted, Attach, AttachSource, AttachTarget, Codec, Declare, Declared,
    DeliveryState, Error, Fields, Flow, Handle, Performative, Role, SequenceNo, Source, Transfer,
};

fn accepted() -> Option<DeliveryState> {
    Some(DeliveryState::Accepted(Accepted {}))
}

fn tag(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// An attach's `unsettled` map as (tag, state name) pairs, and its incomplete flag.
type MapSeen = (Vec<(Vec<u8>, &'static str)>, bool);

/// The `unsettled` maps of the attaches in a byte stream.
fn unsettled_maps(stream: &[u8]) -> Vec<MapSeen> {
    sent(stream)
        .into_iter()
        .filter_map(|(_, p)| match p {
            Performative::Attach(a) => Some(a),
            _ => None,
        })
        .map(|a| {
            let pairs = match a.unsettled {
                Some(Value::Map(pairs, _)) => pairs,
                None => Vec::new(),
                Some(other) => panic!("unsettled is not a map: {other:?}"),
            };
            let entries = pairs
                .into_iter()
                .map(|(k, v)| {
                    let Value::Binary(t, _) = k else { panic!("a key that is not binary: {k:?}") };
                    let state = match v {
                        Value::Null => "none",
                        Value::Described(d) if d.descriptor.as_u64() == Some(0x24) => "accepted",
                        other => panic!("unexpected state {other:?}"),
                    };
                    (t.to_vec(), state)
                })
                .collect();
            (entries, a.incomplete_unsettled)
        })
        .collect()
}

/// Sends `tags` unsettled from `snd`, the receiver having granted enough credit.
fn send_all(p: &mut Pair, snd: LinkId, rcv: LinkId, tags: &[&str]) -> Vec<SequenceNo> {
    p.server.flow(rcv, 10, false).expect("credit");
    p.drive();
    let ids = tags
        .iter()
        .map(|t| p.client.send(snd, tag(t), format!("body {t}").as_bytes(), false).expect("send"))
        .collect();
    p.drive();
    ids
}

fn resumed(events: &[Event]) -> Vec<(Bytes, Bytes, bool, Option<DeliveryState>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Resumed { tag, payload, settled, state, .. } => {
                Some((tag.clone(), payload.clone(), *settled, state.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_link_detached_without_closing_resumes_its_unsettled_deliveries() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 101);
    let (snd, rcv) = p.attach(LinkOptions::sender("durable", "q"));
    let ids = send_all(&mut p, snd, rcv, &["a", "b"]);
    // The receiver states an outcome for "a" without settling it; "b" has none yet.
    p.server.disposition(rcv, ids[0], None, false, accepted()).expect("outcome");
    p.drive();
    let _ = (events(&mut p.client), events(&mut p.server));

    // Detached, not closed: both ends keep what is unsettled.
    p.client.detach(snd, false, None).expect("detach");
    p.drive();
    assert_eq!(p.client.link_state(snd), None);
    let kept = p.client.retained_unsettled("durable", Role::SENDER);
    assert_eq!(kept.iter().map(|u| u.tag.clone()).collect::<Vec<_>>(), [tag("a"), tag("b")]);
    assert_eq!(kept[0].state, accepted(), "the sender saw the receiver's state for a");
    assert_eq!(p.server.retained_unsettled("durable", Role::RECEIVER).len(), 2);

    // Attached again under the same name: each attach carries its side's unsettled map.
    let c2s_before = p.c2s.len();
    let s2c_before = p.s2c.len();
    let again = p.client.attach(snd.session, LinkOptions::sender("durable", "q")).expect("attach");
    p.drive();
    let attached = attached_by_peer(&mut p.server).expect("attached again");
    let client_map = unsettled_maps(&p.c2s[c2s_before..]);
    let server_map = unsettled_maps(&p.s2c[s2c_before..]);
    assert_eq!(client_map, [(vec![(b"a".to_vec(), "accepted"), (b"b".to_vec(), "none")], false)]);
    assert_eq!(server_map, [(vec![(b"a".to_vec(), "accepted"), (b"b".to_vec(), "none")], false)]);

    // The sender weighs both records: "a" has its outcome and only needs settling, "b" is
    // resumed whole.
    let plan = p.client.resumable(again);
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].remote, Some(PeerUnsettled::Known(accepted())));
    assert_eq!(plan[1].remote, Some(PeerUnsettled::Known(None)));
    p.server.flow(attached, 5, false).expect("credit");
    p.drive();
    p.client.resume(again, tag("a"), b"", true, accepted()).expect("settle a");
    let b_id = p.client.resume(again, tag("b"), b"body b", false, None).expect("resume b");
    // A tag that was not carried over cannot be resumed (2.7.5).
    assert_eq!(p.client.resume(again, tag("zzz"), b"", true, None), Err(UsageError::NotResumable));
    p.drive();
    let got = resumed(&events(&mut p.server));
    assert_eq!(
        got,
        [
            (tag("a"), Bytes::new(), true, accepted()),
            (tag("b"), Bytes::from_static(b"body b"), false, None),
        ]
    );
    // The transfers on the wire carry `resume`.
    let resumes = sent(&p.c2s[c2s_before..])
        .into_iter()
        .filter(|(_, p)| matches!(p, Performative::Transfer(t) if t.resume))
        .count();
    assert_eq!(resumes, 2);
    // "b" is an ordinary unsettled delivery again, under its new id, and settles as usual.
    assert!(p.client.resumable(again).is_empty() && p.server.resumable(attached).is_empty());
    assert_eq!(p.server.unsettled(attached), [b_id]);
    p.server.disposition(attached, b_id, None, true, accepted()).expect("settle b");
    p.drive();
    assert!(p.client.unsettled(again).is_empty());
    // Closing forgets the link.
    p.client.detach(again, true, None).expect("close");
    p.drive();
    assert!(p.client.retained_unsettled("durable", Role::SENDER).is_empty());
}

#[test]
fn only_so_many_link_names_are_remembered_after_detaching() {
    let mut server = Config::new("server");
    server.retained_links = 2;
    let mut p = Pair::new(Config::new("client"), server, 133);
    for name in ["a", "b", "c"] {
        let (snd, rcv) = p.attach(LinkOptions::sender(name, "q"));
        send_all(&mut p, snd, rcv, &["t"]);
        p.client.detach(snd, false, None).expect("detach");
        p.drive();
    }
    let kept = |p: &Pair, name: &str| p.server.retained_unsettled(name, Role::RECEIVER).len();
    assert_eq!((kept(&p, "a"), kept(&p, "b"), kept(&p, "c")), (1, 1, 0));
    // A name already remembered is updated, not refused.
    let (snd, rcv) = p.attach(LinkOptions::sender("a", "q"));
    send_all(&mut p, snd, rcv, &["u"]);
    p.client.detach(snd, false, None).expect("detach");
    p.drive();
    assert_eq!(kept(&p, "a"), 2);
}

#[test]
fn a_new_connection_resumes_what_the_old_one_left_unsettled() {
    // A connection that dies with deliveries in flight: "a" arrived, "b" never did.
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 103);
    let (snd, rcv) = p.attach(LinkOptions::sender("durable", "q"));
    send_all(&mut p, snd, rcv, &["a"]);
    p.cut_c2s = true;
    p.client.send(snd, tag("b"), b"body b", false).expect("send b");
    p.drive();
    let now = p.now;
    p.client.handle_eof(now);
    p.server.handle_eof(now);
    let client_kept = p.client.retained_unsettled("durable", Role::SENDER);
    let server_kept = p.server.retained_unsettled("durable", Role::RECEIVER);
    assert_eq!(client_kept.len(), 2);
    assert_eq!(server_kept, [UnsettledDelivery { tag: tag("a"), state: None }]);

    // The next connection's applications hand the records over.
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut q = Pair::new(Config::new("client"), server, 105);
    let s = q.client.begin().expect("begin");
    let mut opts = LinkOptions::sender("durable", "q");
    opts.unsettled = client_kept;
    let snd = q.client.attach(s, opts).expect("attach");
    q.drive();
    let asked = requested(&mut q);
    let mut answer = LinkOptions::receiver("durable", "q");
    answer.unsettled = server_kept;
    q.server.accept_attach(asked, Some(answer)).expect("accept");
    q.server.flow(asked, 5, false).expect("credit");
    q.drive();
    let plan = q.client.resumable(snd);
    assert_eq!(plan[0].remote, Some(PeerUnsettled::Known(None)));
    // The receiver never heard of "b": a resumed transfer would be ignored, so the sender
    // forgets the old delivery and sends the message again as a new one.
    assert_eq!(plan[1].remote, Some(PeerUnsettled::Unknown));
    q.client.resume(snd, tag("a"), b"body a", false, None).expect("resume a");
    q.client.forget(snd, b"b").expect("forget b");
    assert_eq!(q.client.forget(snd, b"b"), Err(UsageError::NotResumable));
    q.client.send(snd, tag("b"), b"body b", false).expect("send b again");
    q.drive();
    let ev = events(&mut q.server);
    assert_eq!(resumed(&ev).len(), 1);
    assert!(ev.iter().any(|e| matches!(e, Event::Delivery { tag, .. } if tag == &b"b"[..])));
}

#[test]
fn a_receiver_ignores_a_resumed_delivery_it_has_no_record_of() {
    let (mut p, link) = raw_receiver(107, 5, LinkOptions::receiver("raw", "q"));
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(tag("stranger"));
    t.resume = true;
    p.server.handle_input(&transfer_frame(&t, b"who?"), p.now);
    p.drive();
    let ev = events(&mut p.server);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Delivery { .. } | Event::Resumed { .. })),
        "{ev:?}"
    );
    // It still used a unit of credit, as the sender counts it.
    assert_eq!(p.server.link_credit(link), Some(4));
    assert_eq!(p.server.link_state(link), Some(LinkState::Attached));
}

#[test]
fn an_incomplete_unsettled_map_allows_only_resumed_deliveries() {
    // The receiver (server) carries 200 deliveries over; the client takes only 512-byte
    // frames, so the map in the server's attach is cut down and marked incomplete.
    let many: Vec<_> = (0..200u32)
        .map(|i| UnsettledDelivery { tag: Bytes::from(format!("tag-{i:04}")), state: None })
        .collect();
    let mut client = Config::new("client");
    client.max_frame_size = 512;
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(client, server, 109);
    let s = p.client.begin().expect("begin");
    let snd = p.client.attach(s, LinkOptions::sender("big", "q")).expect("attach");
    p.drive();
    let link = requested(&mut p);
    let mut answer = LinkOptions::receiver("big", "q");
    answer.unsettled = many;
    p.server.accept_attach(link, Some(answer)).expect("accept");
    p.server.flow(link, 5, false).expect("credit");
    p.drive();
    let maps = unsettled_maps(&p.s2c);
    let (entries, incomplete) = maps.last().expect("the server's attach");
    assert!(incomplete, "the map was marked incomplete");
    assert!(!entries.is_empty() && entries.len() < 200, "{} entries", entries.len());
    // 2.7.3: the sender may not start new deliveries on this attachment ...
    assert_eq!(p.client.send(snd, tag("new"), b"x", false), Err(UsageError::ResumeOnly));
    // ... and a receiver that gets one anyway detaches with an error.
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(tag("new"));
    p.server.handle_input(&transfer_frame(&t, b"x"), p.now);
    let violation = events(&mut p.server).into_iter().find_map(|e| match e {
        Event::LinkError { violation, .. } => Some(violation),
        _ => None,
    });
    assert_eq!(violation, Some(Violation::NewDeliveryDuringResume));
    assert_eq!(violation.map(|v| v.condition()), Some(condition::ILLEGAL_STATE));
}

#[test]
fn an_unsettled_map_that_is_not_a_map_of_tags_detaches_the_link() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 111);
    p.client.begin().expect("begin");
    p.drive();
    let mut a = attach_from_client("odd");
    a.unsettled = Some(Value::from(7u32));
    p.server.handle_input(&frame(0, Performative::Attach(a)), p.now);
    let mut out = Vec::new();
    p.server.poll_transmit(&mut out);
    let violation = events(&mut p.server).into_iter().find_map(|e| match e {
        Event::LinkError { violation, .. } => Some(violation),
        _ => None,
    });
    assert!(
        matches!(&violation, Some(Violation::BadUnsettledMap(why)) if why.contains("not a map"))
    );
    let detach = sent(&out)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Detach(d) => d.error,
            _ => None,
        })
        .expect("a detach with an error");
    assert_eq!(detach.condition.as_str(), condition::INVALID_FIELD);
    assert!(detach.description.expect("why").contains("2.7.3"));
}

#[test]
fn the_application_can_accept_or_refuse_a_peer_begin() {
    let mut server = Config::new("server");
    server.accept_sessions = false;
    let mut p = Pair::new(Config::new("client"), server, 113);
    let first = p.client.begin().expect("begin");
    // Pipelined: the attach goes out before the server has answered the begin.
    let snd = p.client.attach(first, LinkOptions::sender("early", "q")).expect("attach");
    // 2.4.1: until the server's open, channel-max is 0: a second session waits for it.
    assert_eq!(p.client.begin(), Err(UsageError::NotOpen));
    p.drive();
    let second = p.client.begin().expect("begin");
    p.drive();
    assert_eq!(p.client.session_state(first), Some(SessionState::BeginSent));
    let asked: Vec<_> = events(&mut p.server)
        .into_iter()
        .filter_map(|e| match e {
            Event::BeginRequested { session, .. } => Some(session),
            Event::LinkAttached { .. } | Event::AttachRequested { .. } => {
                panic!("a link on a session nobody accepted yet")
            }
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 2);
    assert_eq!(
        p.server.attach(asked[0], LinkOptions::sender("x", "q")),
        Err(UsageError::SessionNotAccepted)
    );
    p.server.accept_begin(asked[0]).expect("accept");
    p.server
        .refuse_begin(asked[1], Error::new(condition::UNAUTHORIZED_ACCESS, "not you"))
        .expect("refuse");
    assert_eq!(p.server.accept_begin(asked[1]), Err(UsageError::NotRequested));
    p.drive();
    // The held attach was handled once the session was accepted.
    let sev = events(&mut p.server);
    assert!(sev.iter().any(|e| matches!(e, Event::SessionBegun { session, by_peer: true, remote }
        if *session == asked[0] && remote.remote_channel.is_none())));
    assert!(sev.iter().any(|e| matches!(e, Event::LinkAttached { by_peer: true, .. })));
    assert_eq!(p.client.link_state(snd), Some(LinkState::Attached));
    let cev = events(&mut p.client);
    let refused = cev
        .iter()
        .find_map(|e| match e {
            Event::SessionEnded { session, error: Some(e), by_peer: true }
                if *session == second =>
            {
                Some(e.condition.to_string())
            }
            _ => None,
        })
        .expect("the refused session ended with the error");
    assert_eq!(refused, condition::UNAUTHORIZED_ACCESS);
    // On the wire, each of the server's begins comes before anything else on its channel.
    let server_frames = sent(&p.s2c);
    for channel in [asked[0].0, asked[1].0] {
        let first_on_channel = server_frames.iter().find(|(c, p)| {
            *c == channel && !matches!(p, Performative::Open(_) | Performative::Close(_))
        });
        assert!(matches!(first_on_channel, Some((_, Performative::Begin(_)))));
    }
    assert_eq!(p.server.session_state(asked[1]), None);
}

#[test]
fn a_peer_that_floods_an_unanswered_session_is_ended_and_one_that_gives_up_is_answered() {
    let mut server = Config::new("server");
    server.accept_sessions = false;
    let mut p = Pair::new(Config::new("client"), server, 115);
    let gives_up = p.client.begin().expect("begin");
    p.drive();
    p.client.end_session(gives_up, None).expect("end");
    p.drive();
    let ended = events(&mut p.client).into_iter().any(
        |e| matches!(e, Event::SessionEnded { session, error: None, .. } if session == gives_up),
    );
    assert!(ended, "the client's end was answered");
    // The server asked about that session before its end came; that request is spent (its
    // id names no later session on the channel).
    let spent = requested_session(&mut p);
    assert_eq!(p.server.accept_begin(spent), Err(UsageError::UnknownSession));

    // Two unanswered sessions share one allowance of held frames: half of it on the first
    // is held, the rest and one more on the second ends the second.
    let first = p.client.begin().expect("begin");
    p.drive();
    let first_held = requested_session(&mut p);
    let flooded = p.client.begin().expect("begin");
    p.drive();
    let held = requested_session(&mut p);
    let flow = Flow {
        next_incoming_id: None,
        incoming_window: 10,
        next_outgoing_id: SequenceNo(0),
        outgoing_window: 10,
        handle: None,
        delivery_count: None,
        link_credit: None,
        available: None,
        drain: false,
        echo: false,
        properties: None,
    };
    let flows = |channel: u16, n: usize| {
        let mut bytes = Vec::new();
        for _ in 0..n {
            bytes.extend(frame(channel, Performative::Flow(flow.clone())));
        }
        bytes
    };
    p.server.handle_input(&flows(first.0, PENDING_FRAMES / 2), p.now);
    assert!(events(&mut p.server).is_empty(), "held, within the allowance");
    p.server.handle_input(&flows(flooded.0, PENDING_FRAMES / 2 + 1), p.now);
    let violations: Vec<_> = events(&mut p.server)
        .into_iter()
        .filter_map(|e| match e {
            Event::SessionError { session, violation } => Some((session, violation)),
            _ => None,
        })
        .collect();
    assert_eq!(violations, [(held, Violation::PendingBeginOverflow)]);
    p.drive();
    let cev = events(&mut p.client);
    assert!(cev.iter().any(|e| matches!(e,
        Event::SessionEnded { session, error: Some(e), .. }
            if *session == flooded && e.condition.as_str() == condition::RESOURCE_LIMIT_EXCEEDED)));
    // The first is still waiting, and its held frames are handled once it is accepted.
    p.server.accept_begin(first_held).expect("accept");
    p.drive();
    assert_eq!(p.client.session_state(first), Some(SessionState::Mapped));

    // A transfer cannot come on a session nobody answered: no link on it is attached.
    let early = p.client.begin().expect("begin");
    p.drive();
    let waiting = requested_session(&mut p);
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(tag("early"));
    let mut bytes = Vec::new();
    amqpwire::frame::FrameEncoder::new(u32::MAX)
        .encode_transfer(early.0, &t, &[0u8; 1000], &mut bytes)
        .expect("frame");
    p.server.handle_input(&bytes, p.now);
    let violation = events(&mut p.server).into_iter().find_map(|e| match e {
        Event::SessionError { session, violation } if session == waiting => Some(violation),
        _ => None,
    });
    assert_eq!(
        violation,
        Some(Violation::UnattachedHandle { handle: 0, performative: "transfer" })
    );
}

#[test]
fn a_coordinator_link_carries_a_declare_and_its_declared_outcome() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 117);
    let caps = vec![Symbol::from("amqp:local-transactions")];
    let (ctl, coordinator) = p.attach(LinkOptions::coordinator("txn-ctl", caps.clone()));
    // The server's application sees what the link is for ...
    let remote = sent(&p.c2s)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Attach(a) => Some(a),
            _ => None,
        })
        .expect("attach");
    assert!(matches!(&remote.target, Some(AttachTarget::Coordinator(c)) if c.capabilities == caps));
    // ... and the declare travels as an ordinary unsettled delivery.
    p.server.flow(coordinator, 1, false).expect("credit");
    p.drive();
    let mut declare = Vec::new();
    Declare::default().encode(&mut declare);
    let message = Message::with_value(Value::decode(&declare).expect("declare as a value"));
    let id = p.client.send(ctl, tag("d0"), &message.to_vec(), false).expect("send");
    p.drive();
    let payload = events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::Delivery { payload, .. } => Some(payload),
            _ => None,
        })
        .expect("the declare");
    let got = Message::decode(&payload).expect("a message");
    assert!(
        matches!(got.body, Body::Value(Value::Described(d)) if d.descriptor.as_u64() == Some(0x31))
    );
    // The coordinator answers with declared (4.5.3), and the controller sees the txn-id.
    let declared = Some(DeliveryState::Declared(Declared { txn_id: tag("txn-1") }));
    p.server.disposition(coordinator, id, None, true, declared.clone()).expect("declared");
    p.drive();
    assert!(events(&mut p.client).contains(&Event::Disposition {
        link: ctl,
        delivery_id: id,
        settled: true,
        state: declared
    }));
}

#[test]
fn a_transfer_on_a_link_where_we_send_detaches_it() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 119);
    // The client receives, so the server's end of the link sends.
    let (_, server_sender) = p.attach(LinkOptions::receiver("wrong-way", "q"));
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(tag("t"));
    p.server.handle_input(&transfer_frame(&t, b"x"), p.now);
    let ev = events(&mut p.server);
    assert!(ev.contains(&Event::LinkError {
        link: server_sender,
        violation: Violation::TransferToSender
    }));
    assert_eq!(p.server.link_state(server_sender), Some(LinkState::DetachSent));
}

#[test]
fn a_second_attach_on_a_used_handle_ends_the_session_with_handle_in_use() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 121);
    let (_, server_end) = p.attach(LinkOptions::sender("first", "q"));
    let session = server_end.session;
    let mut out = Vec::new();
    p.server.poll_transmit(&mut out);
    let mut again = attach_from_client("second");
    again.handle = Handle(0);
    p.server.handle_input(&frame(0, Performative::Attach(again)), p.now);
    let ev = events(&mut p.server);
    assert!(ev.contains(&Event::SessionError { session, violation: Violation::HandleInUse(0) }));
    out.clear();
    p.server.poll_transmit(&mut out);
    let end = sent(&out)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::End(e) => e.error,
            _ => None,
        })
        .expect("an end with an error");
    assert_eq!(end.condition.as_str(), condition::HANDLE_IN_USE);
    // Frames for the session are discarded until the peer's end; other frames still flow.
    assert_eq!(p.server.session_state(session), Some(SessionState::Discarding));
}

#[test]
fn a_disposition_for_deliveries_nobody_sent_changes_nothing() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 123);
    let (snd, rcv) = p.attach(LinkOptions::sender("d", "q"));
    let ids = send_all(&mut p, snd, rcv, &["only"]);
    let _ = events(&mut p.client);
    // The receiver settles a range far from anything sent: no event, nothing settled.
    p.server
        .disposition(rcv, SequenceNo(1000), Some(SequenceNo(2000)), true, accepted())
        .expect("disposition");
    p.drive();
    let cev = events(&mut p.client);
    assert!(!cev.iter().any(|e| matches!(e, Event::Disposition { .. })), "{cev:?}");
    assert_eq!(p.client.unsettled(snd), ids);
    assert_eq!(p.client.state(), amqpwire::connection::ConnectionState::Opened);
}

#[test]
fn a_dynamic_source_gets_its_address_from_the_peer_and_filters_travel_whole() {
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(Config::new("client"), server, 125);
    let s = p.client.begin().expect("begin");
    let mut filter = Fields::new();
    let selector = Value::Described(Box::new(Described {
        descriptor: Value::from(Symbol::from("apache.org:selector-filter:string")),
        value: Value::from("colour = 'red'"),
    }));
    filter.insert("selector", selector.clone());
    let mut opts = LinkOptions::receiver("replies", "");
    opts.source = Some(AttachSource::Source(Source {
        dynamic: true,
        filter: Some(filter.clone()),
        ..Source::default()
    }));
    let rcv = p.client.attach(s, opts).expect("attach");
    p.drive();
    let (link, remote) = events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, remote } => Some((link, remote)),
            _ => None,
        })
        .expect("asked");
    let Some(AttachSource::Source(asked)) = &remote.source else { panic!("no source") };
    assert!(asked.dynamic && asked.address.is_none());
    assert_eq!(asked.filter.as_ref().and_then(|f| f.get("selector")), Some(&selector));
    // The node is created by the server's application, which names it in its answer.
    let mut answer = LinkOptions::sender("replies", "");
    answer.source = Some(AttachSource::Source(Source {
        address: Some("tmp.replies.1".into()),
        dynamic: true,
        filter: Some(filter),
        ..Source::default()
    }));
    p.server.accept_attach(link, Some(answer)).expect("accept");
    p.drive();
    let named = events(&mut p.client)
        .into_iter()
        .find_map(|e| match e {
            Event::LinkAttached { link, remote, .. } if link == rcv => Some(remote),
            _ => None,
        })
        .expect("attached");
    let Some(AttachSource::Source(src)) = &named.source else { panic!("no source") };
    assert_eq!(src.address.as_deref(), Some("tmp.replies.1"));
    assert_eq!(src.filter.as_ref().and_then(|f| f.get("selector")), Some(&selector));
}

#[test]
fn echo_asks_the_peer_for_its_flow_state_and_available_reaches_the_receiver() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 127);
    let (snd, rcv) = p.attach(LinkOptions::sender("e", "q"));
    p.server.flow(rcv, 3, false).expect("credit");
    p.drive();
    let _ = events(&mut p.client);
    p.client.set_available(snd, 42).expect("available");
    assert_eq!(p.server.set_available(rcv, 1), Err(UsageError::WrongRole));
    p.drive();
    assert_eq!(p.server.link_available(rcv), Some(42));
    // The receiver asks; the sender answers with its state, unchanged.
    let flows_before = count_flows(&p.c2s);
    p.server.request_flow(rcv).expect("echo");
    p.drive();
    assert_eq!(count_flows(&p.c2s), flows_before + 1, "the sender answered the echo");
    let credit = events(&mut p.server).into_iter().find_map(|e| match e {
        Event::Credit { link, credit, .. } if link == rcv => Some(credit),
        _ => None,
    });
    assert_eq!(credit, Some(3));
    assert_eq!(p.client.link_credit(snd), Some(3));
}

fn count_flows(stream: &[u8]) -> usize {
    sent(stream)
        .iter()
        .filter(|(_, p)| matches!(p, Performative::Flow(f) if f.handle.is_some()))
        .count()
}

#[test]
fn endless_continuations_stop_at_the_connections_message_size_guard() {
    let mut server = Config::new("server");
    server.max_message_size = 1000;
    let mut p = Pair::new(Config::new("client"), server, 129);
    // The link sets no max-message-size of its own, so none is announced ...
    let (_, rcv) = p.attach(LinkOptions::sender("big", "q"));
    p.server.flow(rcv, 1, false).expect("credit");
    p.drive();
    let announced = sent(&p.s2c).into_iter().find_map(|(_, p)| match p {
        Performative::Attach(a) => Some(a.max_message_size),
        _ => None,
    });
    assert_eq!(announced, Some(None));
    // ... but a delivery that keeps growing is cut off at the guard.
    let mut t = Transfer::new(Handle(0));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(tag("endless"));
    t.more = true;
    let part = vec![0x55; 600];
    let mut frame1 = Vec::new();
    let enc = amqpwire::frame::FrameEncoder::new(u32::MAX);
    enc.encode_amqp(0, &Performative::Transfer(t.clone()), &part, &mut frame1).expect("frame");
    p.server.handle_input(&frame1, p.now);
    assert!(events(&mut p.server).is_empty(), "600 bytes are within the guard");
    p.server.handle_input(&frame1, p.now);
    let ev = events(&mut p.server);
    assert!(
        ev.contains(&Event::LinkError {
            link: rcv,
            violation: Violation::MessageSizeExceeded { size: 1200, max: 1000 }
        }),
        "{ev:?}"
    );
    // The engine's output waits for the transport; the runtime can see how much.
    assert!(p.server.pending_transmit() > 0);
    let mut out = Vec::new();
    p.server.poll_transmit(&mut out);
    assert_eq!(p.server.pending_transmit(), 0);
}

#[test]
fn every_outcome_and_the_received_state_reach_the_sender_exactly() {
    use amqpwire::types::{Modified, Received, Rejected, Released};
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 131);
    let (snd, rcv) = p.attach(LinkOptions::sender("outcomes", "q"));
    let ids = send_all(&mut p, snd, rcv, &["a", "r", "l", "m"]);
    let _ = events(&mut p.client);
    let mut annotations = Fields::new();
    annotations.insert("x-opt-reason", "retry later");
    let states = [
        DeliveryState::Accepted(Accepted {}),
        DeliveryState::Rejected(Rejected {
            error: Some(Error::new(condition::DECODE_ERROR, "not JSON")),
        }),
        DeliveryState::Released(Released {}),
        DeliveryState::Modified(Modified {
            delivery_failed: Some(true),
            undeliverable_here: Some(true),
            message_annotations: Some(annotations),
        }),
    ];
    // First a non-terminal state: how far the message got (3.4.1), unsettled.
    let progress = DeliveryState::Received(Received { section_number: 2, section_offset: 17 });
    p.server.disposition(rcv, ids[0], None, false, Some(progress.clone())).expect("received");
    for (id, state) in ids.iter().zip(&states) {
        p.server.disposition(rcv, *id, None, true, Some(state.clone())).expect("outcome");
    }
    p.drive();
    let seen: Vec<_> = events(&mut p.client)
        .into_iter()
        .filter_map(|e| match e {
            Event::Disposition { delivery_id, settled, state, .. } => {
                Some((delivery_id, settled, state))
            }
            _ => None,
        })
        .collect();
    let mut expected = vec![(ids[0], false, Some(progress))];
    expected.extend(ids.iter().zip(states).map(|(id, s)| (*id, true, Some(s))));
    assert_eq!(seen, expected);
    // Each settled exactly once: nothing is left, and settling again finds nothing.
    assert!(p.client.unsettled(snd).is_empty() && p.server.unsettled(rcv).is_empty());
}

// ----- helpers -----

/// A client attach as a hand-driven peer would send it: a sender on handle 7.
fn attach_from_client(name: &str) -> Attach {
    let opts = LinkOptions::sender(name, "q");
    Attach {
        name: name.into(),
        handle: Handle(7),
        role: opts.role,
        snd_settle_mode: opts.snd_settle_mode,
        rcv_settle_mode: opts.rcv_settle_mode,
        source: None,
        target: opts.target,
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(SequenceNo(0)),
        max_message_size: None,
        offered_capabilities: Vec::new(),
        desired_capabilities: Vec::new(),
        properties: None,
    }
}

fn transfer_frame(t: &Transfer, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    amqpwire::frame::FrameEncoder::new(u32::MAX)
        .encode_transfer(0, t, payload, &mut b)
        .expect("frame");
    b
}

fn requested_session(p: &mut Pair) -> SessionId {
    events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::BeginRequested { session, .. } => Some(session),
            _ => None,
        })
        .expect("a begin request")
}

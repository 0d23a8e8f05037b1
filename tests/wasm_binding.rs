//! The browser binding (features `wasm`, `wasm-azure`, `wasm-trace`, `wasm-inspector`) exercised
//! natively, without a browser: the same `Engine` the pages drive, joined in memory to a
//! server engine; its events, and its trace records as a `Tracer` writes them; and the
//! Azure and decoder exports. Run with
//! `cargo test --features wasm,wasm-azure,wasm-trace,wasm-inspector --test wasm_binding` (.ci/run
//! does).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value as Json;

use amqpwire::azure::cbs::PutToken;
use amqpwire::azure::{SasKey, SasToken, DEFAULT_CLOCK_SKEW};
use amqpwire::codec::DecodeOptions;
use amqpwire::codec::Value;
use amqpwire::connection::Direction;
use amqpwire::connection::{Config, Connection, Event};
use amqpwire::inspect::{Inspector, Record};
use amqpwire::message::{Body, Message};
use amqpwire::sasl::Credentials;
use amqpwire::time::Instant;
use amqpwire::types::{Accepted, DeliveryState, MessageId, SequenceNo};
use amqpwire::wasm::{self, Engine, Tracer};

const KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// Moves bytes both ways until both sides are quiet; returns the engine's events (parsed)
/// and the server's.
fn pump(engine: &mut Engine, server: &mut Connection) -> (Vec<Json>, Vec<Event>) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    loop {
        let a = engine.poll_transmit();
        let mut b = Vec::new();
        server.poll_transmit(&mut b);
        let before = (ours.len(), theirs.len());
        server.handle_input(&a, Instant::now());
        engine.handle_input(&b);
        let events: Json = serde_json::from_str(&engine.poll_events()).expect("events JSON");
        ours.extend(events.as_array().expect("an array").iter().cloned());
        theirs.extend(std::iter::from_fn(|| server.poll_event()));
        if a.is_empty() && b.is_empty() && before == (ours.len(), theirs.len()) {
            return (ours, theirs);
        }
    }
}

fn of_type<'a>(events: &'a [Json], t: &str) -> Vec<&'a Json> {
    events.iter().filter(|e| e["type"] == t).collect()
}

/// The records of what the engine kept since the last call, as the page's `Tracer` makes
/// them.
fn trace(engine: &mut Engine, tracer: &mut Tracer) -> Vec<Json> {
    let frames = engine.poll_trace_frames();
    let t = tracer.records(&frames, engine.elapsed()).expect("frames the engine packed");
    let t: Json = serde_json::from_str(&t).expect("trace JSON");
    t.as_array().expect("an array").clone()
}

#[test]
fn a_page_connection_opens_sends_receives_and_closes_with_its_trace() {
    let mut server_cfg = Config::new("broker");
    server_cfg.authenticator = Some(Box::new(Credentials::new(|| "nonce".into()).with_user(
        "alice",
        "secret",
        b"0123456789abcdef",
    )));
    let mut server = Connection::server(server_cfg);
    let mut engine = Engine::new(
        r#"{"containerId": "page", "hostname": "hub", "maxFrameSize": 65536, "channelMax": 7,
            "idleTimeOut": 120000, "locales": ["en-US"], "properties": {"scenario": "seed000"},
            "sasl": {"mechanism": "PLAIN", "username": "alice", "password": "secret"},
            "trace": true}"#,
    )
    .expect("options accepted");
    let mut tracer = Tracer::new(false);

    let (events, _) = pump(&mut engine, &mut server);
    assert_eq!(of_type(&events, "saslDone")[0]["mechanism"], "PLAIN", "{events:?}");
    assert_eq!(of_type(&events, "opened")[0]["containerId"], "broker", "{events:?}");
    let remote = server.remote_open().expect("the server has our open");
    assert_eq!(&*remote.container_id, "page");
    assert_eq!(remote.max_frame_size, 65536);
    assert_eq!(remote.channel_max, 7);
    assert_eq!(remote.idle_time_out, Some(120_000));
    assert_eq!(remote.outgoing_locales.len(), 1);
    assert_eq!(remote.incoming_locales.len(), 1);
    // The trace: what --trace-json writes, both directions, the password masked.
    let records = trace(&mut engine, &mut tracer);
    let sasl_init = records.iter().find(|r| r["performative"] == "sasl-init").expect("sasl-init");
    assert_eq!(sasl_init["direction"], "out");
    assert_eq!(sasl_init["connection"], 0);
    assert!(!sasl_init.to_string().contains("secret"), "{sasl_init}");
    let open_in = records.iter().find(|r| r["performative"] == "open" && r["direction"] == "in");
    assert!(open_in.is_some(), "{records:?}");
    let open_out = records
        .iter()
        .find(|r| r["performative"] == "open" && r["direction"] == "out")
        .expect("our open traced");
    assert_eq!(open_out["fields"]["max-frame-size"], 65536, "{open_out}");
    assert!(records.iter().all(|r| r["time"].is_number()));

    let session = engine.begin().expect("begin");
    let sender = engine.attach_sender(session as f64, "s", "q").expect("attach");
    let receiver = engine.attach_receiver(session as f64, "r", "out", 5.0).expect("attach");
    let (events, theirs) = pump(&mut engine, &mut server);
    assert_eq!(of_type(&events, "sessionBegun").len(), 1, "{events:?}");
    assert_eq!(of_type(&events, "linkAttached").len(), 2, "{events:?}");
    // The tracer goes on from where the last frames left each direction's stream.
    let records = trace(&mut engine, &mut tracer);
    let shown: Vec<_> = records
        .iter()
        .map(|r| format!("{} {}", r["direction"].as_str().unwrap(), r["performative"]))
        .collect();
    for want in [r#"out "begin""#, r#"in "begin""#, r#"out "attach""#, r#"in "attach""#] {
        assert!(shown.iter().any(|s| s == want), "no {want} in {shown:?}");
    }
    // Whole frames, each decoded cleanly: no stream was cut between the two calls.
    let clean = |r: &Json| r["kind"] == "frame" && r.get("warnings").is_none();
    assert!(records.iter().all(clean), "{records:?}");
    // Our receiver granted its credit once attached; give our sender some.
    let mut server_rcv = None;
    let mut server_snd = None;
    for e in &theirs {
        match e {
            Event::LinkAttached { link, remote, .. } if &*remote.name == "s" => {
                server_rcv = Some(*link)
            }
            Event::LinkAttached { link, .. } => server_snd = Some(*link),
            _ => {}
        }
    }
    let (server_rcv, server_snd) = (server_rcv.unwrap(), server_snd.unwrap());
    assert!(
        theirs
            .iter()
            .any(|e| matches!(e, Event::Credit { link, credit: 5, .. } if *link == server_snd)),
        "{theirs:?}"
    );
    server.flow(server_rcv, 10, false).expect("credit");
    let (events, _) = pump(&mut engine, &mut server);
    assert_eq!(of_type(&events, "credit")[0]["credit"], 10, "{events:?}");

    let id = engine
        .send(
            sender as f64,
            r#"{"body": "switch on", "properties": {"messageId": "m1", "to": "q"},
                "applicationProperties": {"room": "kitchen", "n": 2, "ok": true}}"#,
        )
        .expect("send");
    let (_, theirs) = pump(&mut engine, &mut server);
    let Some(Event::Delivery { payload, delivery_id, .. }) =
        theirs.iter().find(|e| matches!(e, Event::Delivery { .. }))
    else {
        panic!("no delivery: {theirs:?}")
    };
    let m = Message::decode(payload).expect("a message");
    assert_eq!(m.body.bytes().as_deref(), Some(&b"switch on"[..]));
    let props = m.properties.as_ref().expect("properties");
    assert_eq!(props.message_id, Some(MessageId::String("m1".into())));
    let app = m.application_properties.as_ref().expect("application properties");
    assert_eq!(
        app.get("room").and_then(|v| v.as_str().map(str::to_owned)).as_deref(),
        Some("kitchen")
    );
    server
        .disposition(
            server_rcv,
            *delivery_id,
            None,
            true,
            Some(DeliveryState::Accepted(Accepted {})),
        )
        .expect("settle");
    let (events, _) = pump(&mut engine, &mut server);
    let d = of_type(&events, "disposition");
    assert_eq!(d[0]["deliveryId"], id, "{events:?}");
    assert_eq!(d[0]["state"]["outcome"], "accepted", "{events:?}");

    let out = Message::with_data(&b"to the page"[..]).to_vec();
    server.send(server_snd, Bytes::from_static(b"t1"), &out, false).expect("send");
    let (events, _) = pump(&mut engine, &mut server);
    let d = of_type(&events, "delivery");
    assert_eq!(d[0]["link"], receiver, "{events:?}");
    assert_eq!(d[0]["payload"], amqpwire::inspect::hex(&out));
    assert!(d[0]["message"].to_string().contains("to the page"), "{}", d[0]);
    let delivery_id = u32::try_from(d[0]["deliveryId"].as_u64().unwrap()).unwrap();
    engine.settle(receiver as f64, f64::from(delivery_id), "accepted", None).expect("settle");
    let (_, theirs) = pump(&mut engine, &mut server);
    assert!(
        theirs.iter().any(|e| matches!(
            e,
            Event::Disposition { delivery_id: SequenceNo(0), settled: true, .. }
        )),
        "{theirs:?}"
    );

    engine.close().expect("close");
    let (events, _) = pump(&mut engine, &mut server);
    assert_eq!(of_type(&events, "ended")[0]["error"], Json::Null, "{events:?}");
    assert!(engine.is_ended());
    assert_eq!(engine.poll_timeout(), -1.0);
}

#[test]
fn the_azure_exports_make_what_the_hub_reads() {
    let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3600;
    let cs = format!(
        "HostName=myhub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={KEY}"
    );
    let creds: Json =
        serde_json::from_str(&wasm::iothub_plain_credentials(&cs, expiry as f64).unwrap()).unwrap();
    assert_eq!(creds["username"], "service@sas.root.myhub");
    let token: SasToken = creds["password"].as_str().unwrap().parse().expect("a SAS token");
    token
        .verify(&SasKey::from_base64(KEY).unwrap(), SystemTime::now(), DEFAULT_CLOCK_SKEW)
        .expect("signed with the key");
    assert!(token.authorizes("myhub.azure-devices.net"));
    assert_eq!(token.key_name(), Some("service"));
    assert_eq!(
        wasm::sas_token_from_connection_string(&cs, expiry as f64).unwrap(),
        wasm::sas_token("myhub.azure-devices.net", KEY, Some("service".into()), expiry as f64)
            .unwrap()
    );

    let id = "0b7f1c2e-1111-4222-8333-444455556666";
    let c2d = wasm::c2d_message(
        "dev1",
        r#"{"body": "on", "applicationProperties": {"iothub-ack": "none"}}"#,
        "full",
        id,
    )
    .unwrap();
    let m = Message::decode(&Bytes::from(c2d)).unwrap();
    let p = m.properties.as_ref().unwrap();
    assert_eq!(p.to.as_deref(), Some("/devices/dev1/messages/devicebound"));
    assert_eq!(p.message_id.as_ref().map(ToString::to_string).as_deref(), Some(id));
    let app = m.application_properties.as_ref().unwrap().to_pairs();
    let acks: Vec<_> = app.iter().filter(|(k, _)| k.as_str() == Some("iothub-ack")).collect();
    assert_eq!(acks.len(), 1, "one iothub-ack, the one asked for: {app:?}");
    assert_eq!(acks[0].1.as_str(), Some("full"));

    let put = wasm::put_token_message(
        "myhub.azure-devices.net",
        "SharedAccessSignature sr=x",
        None,
        "p1",
    );
    let put = PutToken::from_message(&Message::decode(&Bytes::from(put)).unwrap()).unwrap();
    assert_eq!(put.token_type, "azure-devices.net:sastoken");
    assert_eq!(put.name, "myhub.azure-devices.net");
    assert_eq!(put.message_id, Some(MessageId::String("p1".into())));

    let body = format!(
        r#"[{{"originalMessageId":"{id}","deviceId":"dev1","statusCode":"Success","description":"Success","enqueuedTimeUtc":"2026-12-04T00:00:00Z"}}]"#
    );
    let fb = Message::with_data(body.into_bytes()).to_vec();
    let records: Json = serde_json::from_str(&wasm::parse_feedback(&fb).unwrap()).unwrap();
    assert_eq!(records[0]["originalMessageId"], id);
    assert_eq!(records[0]["statusCode"], "Success");
}

#[test]
fn message_json_keeps_every_number_and_escape_as_javascript_wrote_it() {
    // What JSON.stringify writes for values a page may give: the shortest digits of a
    // double (17 of them here), whole numbers beyond 2^53 (kept exactly as longs), a
    // negative zero, escapes, a pair of surrogates, and a key given twice (the last wins).
    let json = r#"{"applicationProperties": {"sum": 0.30000000000000004, "tiny": 5e-324,
        "big": 9007199254740993, "neg": -9223372036854775808, "zero": -0,
        "text": "caf\u00e9 \ud83d\ude00 \"q\" \\ \n", "twice": 1, "twice": 2},
        "properties": {"messageId": 18446744073709551615, "contentType": "text/plain"},
        "body": {"value": 1.5}}"#;
    let m =
        Message::decode(&Bytes::from(wasm::c2d_message("d", json, "none", "x").unwrap())).unwrap();
    let app = m.application_properties.as_ref().unwrap().to_pairs();
    let get = |k: &str| {
        let found: Vec<_> = app.iter().filter(|(key, _)| key.as_str() == Some(k)).collect();
        assert_eq!(found.len(), 1, "{k} once: {app:?}");
        found[0].1.clone()
    };
    assert_eq!(get("sum"), Value::from(0.1 + 0.2));
    assert_eq!(get("tiny"), Value::from(f64::from_bits(1)));
    assert_eq!(get("big"), Value::from(9_007_199_254_740_993_i64));
    assert_eq!(get("neg"), Value::from(i64::MIN));
    assert!(matches!(get("zero"), Value::Double(z) if z == 0.0 && z.is_sign_negative()));
    assert_eq!(get("text"), Value::from("caf\u{e9} \u{1f600} \"q\" \\ \n"));
    assert_eq!(get("twice"), Value::from(2_i64));
    let p = m.properties.as_ref().unwrap();
    assert_eq!(p.message_id, Some(MessageId::Ulong(u64::MAX)));
    assert_eq!(p.content_type.as_ref().map(|s| s.as_str()), Some("text/plain"));
    assert_eq!(m.body, Body::Value(Value::from(1.5)));
}

#[test]
fn decode_counts_what_the_inspector_counts() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wire/proton-to-rhea-heartbeat.s2c.bin"
    ))
    .unwrap();
    let frames = Inspector::inspect_all(&bytes, DecodeOptions::LENIENT)
        .iter()
        .filter(|r| matches!(r, Record::Frame(_)))
        .count();
    let r: Json = serde_json::from_str(&wasm::decode(&bytes, false).unwrap()).unwrap();
    assert_eq!(r["frames"], frames);
    assert_eq!(r["errors"], 0);
    let hex = amqpwire::inspect::hex(&bytes);
    let h: Json = serde_json::from_str(&wasm::decode_hex(&hex, false).unwrap()).unwrap();
    assert_eq!(h["text"], r["text"]);
    // The same text through the bytes path when given as hex text.
    let t: Json = serde_json::from_str(&wasm::decode(hex.as_bytes(), false).unwrap()).unwrap();
    assert_eq!(t["records"], r["records"]);
    assert!(r["text"].as_str().unwrap().contains("open (0x10)"));
}

/// The server's end of the link it saw attached first.
fn attached(events: &[Event]) -> amqpwire::connection::LinkId {
    events
        .iter()
        .find_map(|e| match e {
            Event::LinkAttached { link, .. } => Some(*link),
            _ => None,
        })
        .expect("the server's end")
}

/// A link number stays with its link: once the peer detached link 0, a new link that the
/// engine gives the same handle gets a number of its own, and its events carry that
/// number, never the ended one's.
#[test]
fn an_ended_links_number_never_names_a_later_link_with_its_handle() {
    let mut server = Connection::server(Config::new("broker"));
    let mut engine = Engine::new(r#"{"containerId": "page"}"#).expect("options accepted");
    pump(&mut engine, &mut server);
    // Without the trace option, nothing is kept for a tracer.
    assert_eq!(engine.poll_trace_frames(), Vec::<u8>::new());
    let session = engine.begin().expect("begin");
    let first = engine.attach_sender(session as f64, "s1", "q1").expect("attach");
    let (_, theirs) = pump(&mut engine, &mut server);
    let server_end = attached(&theirs);
    let gone = amqpwire::types::Error::new(amqpwire::types::condition::DETACH_FORCED, "gone");
    server.detach(server_end, true, Some(gone)).expect("detach");
    let (events, _) = pump(&mut engine, &mut server);
    let detached = of_type(&events, "linkDetached");
    assert_eq!(detached.len(), 1, "{events:?}");
    assert_eq!(detached[0]["link"], first as u64, "{events:?}");
    // The next link: a number of its own, and every event about it carries that number.
    let second = engine.attach_sender(session as f64, "s2", "q2").expect("attach");
    assert_ne!(first, second);
    let (events, theirs) = pump(&mut engine, &mut server);
    assert_eq!(of_type(&events, "linkAttached")[0]["link"], second as u64, "{events:?}");
    let server_end = attached(&theirs);
    server.flow(server_end, 3, false).expect("credit");
    let (events, _) = pump(&mut engine, &mut server);
    assert_eq!(of_type(&events, "credit")[0]["link"], second as u64, "{events:?}");
    // The new link's number sends on it. (Commands on the ended number throw a JS
    // `Error` ("link 0 has ended"), which cannot be made off wasm32: not checked here.)
    engine.send(second as f64, r#"{"body": "fresh"}"#).expect("send on the new link");
    let (events, theirs) = pump(&mut engine, &mut server);
    let deliveries = theirs.iter().filter(|e| matches!(e, Event::Delivery { .. })).count();
    assert_eq!(deliveries, 1, "{theirs:?}");
    assert!(events.iter().all(|e| e["link"] != first as u64), "{events:?}");
}

/// A message the peer's session window cannot take now is not an error: `send` says -1,
/// and once the peer's flow makes room a `sessionWindow` event says so and it goes.
#[test]
fn a_send_the_session_window_cannot_take_waits_for_a_session_window_event() {
    let mut cfg = Config::new("broker");
    cfg.session.incoming_window = 1;
    let mut server = Connection::server(cfg);
    let mut engine = Engine::new(r#"{"containerId": "page"}"#).expect("options accepted");
    pump(&mut engine, &mut server);
    let session = engine.begin().expect("begin");
    let link = engine.attach_sender(session as f64, "s", "q").expect("attach");
    let (_, theirs) = pump(&mut engine, &mut server);
    server.flow(attached(&theirs), 10, false).expect("credit");
    pump(&mut engine, &mut server);
    assert_eq!(engine.send(link as f64, r#"{"body": "one"}"#).expect("sent"), 0.0);
    assert_eq!(engine.send(link as f64, r#"{"body": "two"}"#).expect("held"), -1.0);
    let (events, _) = pump(&mut engine, &mut server);
    let opened = of_type(&events, "sessionWindow");
    assert_eq!(opened.len(), 1, "{events:?}");
    assert_eq!(opened[0]["session"], session as u64);
    assert_eq!(opened[0]["remoteIncomingWindow"], 1);
    assert_eq!(engine.send(link as f64, r#"{"body": "two"}"#).expect("sent"), 1.0);
}

/// A peer that asks our sender to drain is answered once the page says it has nothing to
/// send (`drained`, as the driver calls it): the credit is used up by advancing the
/// delivery-count, and the peer's receiver sees it (2.6.7).
#[test]
fn a_sender_asked_to_drain_uses_its_credit_up_with_drained() {
    let mut server = Connection::server(Config::new("broker"));
    let mut engine = Engine::new(r#"{"containerId": "page"}"#).expect("options accepted");
    pump(&mut engine, &mut server);
    let session = engine.begin().expect("begin");
    let link = engine.attach_sender(session as f64, "s", "q").expect("attach");
    let (_, theirs) = pump(&mut engine, &mut server);
    let server_end = attached(&theirs);
    server.flow(server_end, 3, true).expect("credit, drain");
    let (events, _) = pump(&mut engine, &mut server);
    let credit = of_type(&events, "credit");
    assert_eq!((credit[0]["credit"].as_u64(), credit[0]["drain"].as_bool()), (Some(3), Some(true)));
    assert_eq!(engine.send(link as f64, r#"{"body": "one"}"#).expect("sent"), 0.0);
    engine.drained(link as f64).expect("drained");
    pump(&mut engine, &mut server);
    assert_eq!(server.link_credit(server_end), Some(0));
    assert_eq!(server.link_delivery_count(server_end), Some(SequenceNo(3)));
}

/// A session the page ends: the peer answers, `sessionEnded` says it was ours, and the
/// session's number names no session after.
#[test]
fn a_session_the_page_ends_is_answered_and_ended() {
    let mut server = Connection::server(Config::new("broker"));
    let mut engine = Engine::new(r#"{"containerId": "page"}"#).expect("options accepted");
    pump(&mut engine, &mut server);
    let session = engine.begin().expect("begin");
    engine.attach_sender(session as f64, "s", "q").expect("attach");
    pump(&mut engine, &mut server);
    engine.end(session as f64).expect("end");
    let (events, theirs) = pump(&mut engine, &mut server);
    let ended = of_type(&events, "sessionEnded");
    assert_eq!(ended.len(), 1, "{events:?}");
    assert_eq!(
        (ended[0]["session"].as_u64(), ended[0]["byPeer"].as_bool()),
        (Some(0), Some(false))
    );
    assert!(theirs.iter().any(|e| matches!(e, Event::SessionEnded { by_peer: true, .. })));
}

/// A delivery whose payload stops short of a whole message: `message` shows the sections
/// before, `messageError` why the rest could not be read; a whole one has no such key.
#[test]
fn a_delivery_that_does_not_decode_says_why_beside_its_message() {
    let mut server = Connection::server(Config::new("broker"));
    let mut engine = Engine::new(r#"{"containerId": "page"}"#).expect("options accepted");
    pump(&mut engine, &mut server);
    let session = engine.begin().expect("begin");
    engine.attach_receiver(session as f64, "r", "q", 5.0).expect("attach");
    let (_, theirs) = pump(&mut engine, &mut server);
    let server_end = attached(&theirs);
    let whole = Message::with_data(&b"fine"[..]).to_vec();
    let mut cut = whole.clone();
    cut.extend_from_slice(&[0x00, 0x53]);
    server.send(server_end, Bytes::from_static(b"1"), &whole, true).expect("send");
    server.send(server_end, Bytes::from_static(b"2"), &cut, true).expect("send");
    let (events, _) = pump(&mut engine, &mut server);
    let d = of_type(&events, "delivery");
    assert_eq!(d.len(), 2, "{events:?}");
    assert!(d[0].get("messageError").is_none(), "{}", d[0]);
    assert!(d[1]["message"].to_string().contains("fine"), "{}", d[1]);
    let why = d[1]["messageError"].as_str().unwrap_or_default();
    // Where the reading stopped: the cut section's end, past the whole message's bytes.
    assert_eq!(why, format!("at offset {}: truncated: expected 1 more bytes, 0 left", cut.len()));
}

/// The engine's packed frames come back as they went, in order; anything else is refused
/// with where, and nothing of it is taken.
#[test]
fn trace_frames_unpack_as_packed_and_bad_packing_is_refused() {
    let mut packed = Vec::new();
    wasm::pack_trace_frame(&mut packed, Direction::Out, b"AMQP\x00\x01\x00\x00");
    wasm::pack_trace_frame(&mut packed, Direction::In, b"");
    wasm::pack_trace_frame(&mut packed, Direction::In, &[0x00, 0x53, 0x10]);
    let frames = wasm::unpack_trace_frames(&packed).expect("packed by pack_trace_frame");
    assert_eq!(
        frames,
        vec![
            (Direction::Out, &b"AMQP\x00\x01\x00\x00"[..]),
            (Direction::In, &b""[..]),
            (Direction::In, &[0x00, 0x53, 0x10][..]),
        ]
    );
    assert_eq!(wasm::unpack_trace_frames(&[]), Ok(vec![]));
    let cases: [(&[u8], &str); 3] = [
        (&[2, 0, 0, 0, 0], "byte 0: direction 2, not 0 (in) or 1 (out)"),
        (&[0, 1, 0, 0, 0, 7, 1, 0, 0], "byte 6: a length cut short"),
        (&[1, 5, 0, 0, 0, 1, 2], "byte 0: 5 bytes announced, 2 left"),
    ];
    for (bad, why) in cases {
        assert_eq!(wasm::unpack_trace_frames(bad), Err(why.to_owned()), "{bad:?}");
    }
}

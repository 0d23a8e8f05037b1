//! The connection engine, two peers joined in memory: virtual time that jumps to the next
//! timer, and byte streams cut at random points. Each test reads as a story.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{attached_by_peer, ended, events, frame, requested, sent, Pair};

use amqpwire::codec::DecodeOptions;
use amqpwire::connection::{
    Config, Connection, ConnectionError, ConnectionState, Direction, Event, TraceItem, Violation,
};
use amqpwire::frame::{FrameBody, FrameEncoder, ProtocolHeader};
use amqpwire::inspect::{Inspector, Record};
use amqpwire::sasl::{Credentials, SaslClient, SaslError};
use amqpwire::types::{condition, Begin, Open, Performative, SaslCode, SequenceNo};

fn credentials() -> Credentials {
    Credentials::new(|| "servernonce".into())
        .with_user("alice", "secret", b"0123456789abcdef")
        .anonymous(true)
}

fn sasl_server() -> Config {
    let mut c = Config::new("broker");
    c.authenticator = Some(Box::new(credentials()));
    c
}

/// The performatives a byte stream carries, in order.
fn performatives(stream: &[u8]) -> Vec<String> {
    Inspector::inspect_all(stream, DecodeOptions::STRICT)
        .iter()
        .filter_map(|r| match r {
            Record::Header { header, .. } => Some(format!("header {}", header.id.0)),
            Record::Frame(f) => f.performative().map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[test]
fn a_client_opens_and_closes_without_sasl() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 1);
    p.drive();
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert_eq!(p.server.state(), ConnectionState::Opened);
    let ce = events(&mut p.client);
    assert!(matches!(&ce[0], Event::Opened { remote } if &*remote.container_id == "server"));
    p.client.close(None).expect("close");
    p.drive();
    assert!(p.client.is_ended() && p.server.is_ended());
    let ce = events(&mut p.client);
    assert_eq!(ended(&ce), Some(&None), "{ce:?}");
    let se = events(&mut p.server);
    assert!(se.contains(&Event::RemoteClose { error: None }));
    assert_eq!(ended(&se), Some(&None));
    assert_eq!(performatives(&p.c2s), ["header 0", "open", "close"]);
    assert_eq!(performatives(&p.s2c), ["header 0", "open", "close"]);
    assert_eq!(p.client.close(None), Err(amqpwire::connection::UsageError::Closed));
}

#[test]
fn the_client_pipelines_header_and_open_before_hearing_from_the_server() {
    let mut c = Connection::client(Config::new("eager"));
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(performatives(&out), ["header 0", "open"]);
    assert_eq!(c.state(), ConnectionState::OpenPipe);
    // Closing before the server's header: OC_PIPE, then CLOSE_PIPE when the header comes.
    c.close(None).expect("close");
    assert_eq!(c.state(), ConnectionState::OcPipe);
    c.handle_input(&ProtocolHeader::AMQP.to_bytes(), Instant::now());
    assert_eq!(c.state(), ConnectionState::ClosePipe);
}

#[test]
fn sasl_plain_scram_and_anonymous_authenticate_before_open() {
    for (client, who) in [
        (SaslClient::plain("alice", "secret"), Some("alice")),
        (SaslClient::scram_sha256("alice", "secret", "clientnonce").expect("scram"), Some("alice")),
        (SaslClient::anonymous(""), Some("anonymous")),
    ] {
        let mechanism = client.mechanism();
        let mut cfg = Config::new("client");
        cfg.sasl_client = Some(client);
        let mut p = Pair::new(cfg, sasl_server(), 7);
        p.drive();
        assert_eq!(p.client.state(), ConnectionState::Opened, "{mechanism}");
        let se = events(&mut p.server);
        // Both sides name the mechanism, SCRAM's too, whose exchange ends on a response.
        assert!(
            matches!(&se[0], Event::SaslDone { identity, mechanism: m }
                if identity.as_deref() == who && m == mechanism),
            "{mechanism}: {se:?}"
        );
        assert!(
            matches!(&events(&mut p.client)[0], Event::SaslDone { mechanism: m, .. } if m == mechanism)
        );
        let c2s = performatives(&p.c2s);
        assert_eq!(&c2s[..2], ["header 3", "sasl-init"], "{mechanism}");
        assert_eq!(c2s[c2s.len() - 2..], ["header 0", "open"]);
        let s2c = performatives(&p.s2c);
        assert_eq!(s2c[..2], ["header 3", "sasl-mechanisms"]);
        assert!(s2c.contains(&"sasl-outcome".to_owned()));
    }
}

#[test]
fn a_wrong_password_ends_both_sides_with_a_sasl_outcome() {
    let mut cfg = Config::new("client");
    cfg.sasl_client = Some(SaslClient::plain("alice", "nope"));
    let mut p = Pair::new(cfg, sasl_server(), 3);
    p.drive();
    assert!(p.client.is_ended() && p.server.is_ended());
    assert_eq!(
        ended(&events(&mut p.client)),
        Some(&Some(ConnectionError::Sasl(SaslError::Failed { code: SaslCode::AUTH })))
    );
    // The server's own ending says why it refused, which the client is never told.
    let refused =
        SaslError::Refused { code: SaslCode::AUTH, reason: "wrong password for \"alice\"".into() };
    assert_eq!(ended(&events(&mut p.server)), Some(&Some(ConnectionError::Sasl(refused))));
    assert_eq!(performatives(&p.s2c).last().map(String::as_str), Some("sasl-outcome"));
}

#[test]
fn a_server_that_requires_sasl_tells_a_client_that_skipped_it() {
    let mut server = sasl_server();
    server.require_sasl = true;
    let mut p = Pair::new(Config::new("client"), server, 5);
    p.drive();
    let se = events(&mut p.server);
    assert!(
        matches!(ended(&se), Some(Some(ConnectionError::ProtocolMismatch(m))) if m.contains("skipped SASL"))
    );
    // The server answered with the SASL header: the client names the problem.
    let ce = events(&mut p.client);
    assert!(
        matches!(ended(&ce), Some(Some(ConnectionError::ProtocolMismatch(m))) if m.contains("the server requires SASL")),
        "{ce:?}"
    );
    assert_eq!(performatives(&p.s2c), ["header 3"]);
}

#[test]
fn heartbeats_keep_an_idle_connection_open() {
    let mut c = Config::new("client");
    c.idle_time_out = Some(Duration::from_millis(1000));
    let mut s = Config::new("server");
    s.idle_time_out = Some(Duration::from_millis(2000));
    let mut p = Pair::new(c, s, 9);
    p.drive();
    let before = (p.c2s.len(), p.s2c.len());
    p.advance(Duration::from_secs(60));
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert_eq!(p.server.state(), ConnectionState::Opened);
    // Each side sent empty frames at half the other's idle time-out.
    let client_beats = performatives(&p.c2s[before.0..]).iter().filter(|p| *p == "empty").count();
    let server_beats = performatives(&p.s2c[before.1..]).iter().filter(|p| *p == "empty").count();
    assert!((55..=61).contains(&client_beats), "client sent {client_beats} heartbeats");
    assert!((115..=121).contains(&server_beats), "server sent {server_beats} heartbeats");
}

#[test]
fn a_peer_idle_time_out_too_short_to_keep_closes_with_not_allowed() {
    // 2.4.5: heartbeats would go out every 2 ms; the connection is refused with a reason.
    let (c, out, _) =
        client_facing(&server_open(Open { idle_time_out: Some(4), ..Open::new("x") }));
    assert_eq!(c.state(), ConnectionState::Discarding);
    let (cond, text) = close_error(&out);
    assert_eq!(cond, condition::NOT_ALLOWED);
    assert!(text.contains("idle-time-out of 4 ms is shorter than the 100 ms kept here"), "{text}");
    // At the floor, it opens; a connection told to keep shorter ones does.
    let (c, _, _) =
        client_facing(&server_open(Open { idle_time_out: Some(100), ..Open::new("x") }));
    assert_eq!(c.state(), ConnectionState::Opened);
    let mut cfg = Config::new("client");
    cfg.shortest_peer_idle_time_out = Duration::ZERO;
    let mut c = Connection::client(cfg);
    c.poll_transmit(&mut Vec::new());
    c.handle_input(&server_open(Open { idle_time_out: Some(4), ..Open::new("x") }), Instant::now());
    assert_eq!(c.state(), ConnectionState::Opened);
}

#[test]
fn a_silent_peer_is_closed_with_resource_limit_exceeded() {
    let mut c = Config::new("client");
    c.idle_time_out = Some(Duration::from_millis(1000));
    c.close_timeout = Duration::from_secs(5);
    let mut p = Pair::new(c, Config::new("server"), 11);
    p.drive();
    p.cut_s2c = true; // the server's bytes no longer arrive
                      // 2.4.5: the advertised idle-time-out is half the real threshold, so a peer silent for
                      // a little under twice it (one heartbeat per advertised period, late) is kept.
    p.advance(Duration::from_millis(1900));
    assert_eq!(p.client.state(), ConnectionState::Opened);
    p.advance(Duration::from_millis(200));
    let close = sent(&p.c2s)
        .into_iter()
        .rev()
        .find_map(|(_, p)| match p {
            Performative::Close(c) => Some(c),
            _ => None,
        })
        .expect("a close");
    assert_eq!(
        close.error.expect("with an error").condition.as_str(),
        condition::RESOURCE_LIMIT_EXCEEDED
    );
    assert_eq!(p.client.state(), ConnectionState::Discarding);
    // Nobody answers the close: after the close time-out the connection is over.
    p.advance(Duration::from_secs(6));
    assert_eq!(
        ended(&events(&mut p.client)),
        Some(&Some(ConnectionError::Violation(Violation::IdleTimeout)))
    );
}

#[test]
fn an_unanswered_close_times_out() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 13);
    p.drive();
    p.cut_s2c = true;
    p.client.close(None).expect("close");
    p.advance(Duration::from_secs(11));
    assert_eq!(ended(&events(&mut p.client)), Some(&Some(ConnectionError::CloseTimeout)));
}

#[test]
fn a_close_counts_its_time_out_from_the_last_time_the_engine_was_given() {
    // What the runtime and the browser binding rely on: after a quiet minute, a close
    // given the time first waits its whole time-out; one not given it is already late.
    for told in [true, false] {
        let mut p = Pair::new(Config::new("client"), Config::new("server"), 17);
        p.drive();
        let later = p.now + Duration::from_secs(60);
        if told {
            p.client.handle_timeout(later);
        }
        p.client.close(None).expect("close");
        let deadline = p.client.poll_timeout().expect("the close time-out");
        if told {
            assert_eq!(deadline, later + Config::new("c").close_timeout);
        } else {
            assert!(deadline < later, "counted from before the quiet minute");
        }
    }
}

/// A hand-driven peer: feeds the client the bytes given, returns what the client answers.
fn client_facing(bytes: &[u8]) -> (Connection, Vec<u8>, Vec<Event>) {
    let mut c = Connection::client(Config::new("client"));
    let now = Instant::now();
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    out.clear();
    c.handle_input(bytes, now);
    c.poll_transmit(&mut out);
    let ev = events(&mut c);
    (c, out, ev)
}

/// The condition and description of the close in a byte stream (the test fails if there
/// is no close with an error).
fn close_error(stream: &[u8]) -> (String, String) {
    sent(stream)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Close(c) => c.error,
            _ => None,
        })
        .map(|e| {
            (e.condition.to_string(), e.description.map(|d| d.to_string()).unwrap_or_default())
        })
        .expect("a close with an error")
}

fn server_open(mut open: Open) -> Vec<u8> {
    let mut b = ProtocolHeader::AMQP.to_bytes().to_vec();
    open.container_id = "hand".into();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Open(open), &[], &mut b)
        .expect("open");
    b
}

#[test]
fn a_server_asked_for_a_version_it_lacks_answers_with_one_it_has_then_ends() {
    // 2.2: "the server MUST send a protocol header with a supported protocol version and
    // then close the socket": AMQP 1.1, AMQP 0-9-1 and an unknown protocol id alike.
    for (sasl, ours) in [(false, ProtocolHeader::AMQP), (true, ProtocolHeader::SASL)] {
        for theirs in
            [&b"AMQP\x00\x01\x01\x00"[..], b"AMQP\x00\x00\x09\x01", b"AMQP\x05\x01\x00\x00"]
        {
            let mut s =
                Connection::server(if sasl { sasl_server() } else { Config::new("server") });
            s.handle_input(theirs, Instant::now());
            let mut out = Vec::new();
            s.poll_transmit(&mut out);
            assert_eq!(out, ours.to_bytes(), "{theirs:?}");
            assert!(s.is_ended(), "{theirs:?}");
            let ended = events(&mut s).into_iter().find_map(|e| match e {
                Event::Ended { error } => Some(error),
                _ => None,
            });
            assert!(matches!(ended, Some(Some(ConnectionError::Violation(_)))), "{ended:?}");
        }
    }
}

#[test]
fn a_max_frame_size_below_512_is_a_framing_error() {
    let mut open = Open::new("x");
    open.max_frame_size = 256;
    let (c, out, _) = client_facing(&server_open(open));
    assert_eq!(c.state(), ConnectionState::Discarding);
    let text = format!("{:?}", performatives(&out));
    assert!(text.contains("close"), "{text}");
    let (cond, text) = close_error(&out);
    assert_eq!(cond, condition::FRAMING_ERROR);
    assert!(text.contains("2.7.1"), "{text}");
}

#[test]
fn frames_beyond_channel_max_or_before_open_are_refused() {
    // begin on channel 300, above our channel-max of 255.
    let mut b = server_open(Open::new("x"));
    let begin = Begin {
        remote_channel: Some(0),
        next_outgoing_id: SequenceNo(0),
        incoming_window: 10,
        outgoing_window: 10,
        handle_max: amqpwire::types::Handle(u32::MAX),
        offered_capabilities: vec![],
        desired_capabilities: vec![],
        properties: None,
    };
    FrameEncoder::new(u32::MAX)
        .encode_amqp(300, &Performative::Begin(begin.clone()), &[], &mut b)
        .expect("begin");
    let (c, _, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    // begin before open.
    let mut b = ProtocolHeader::AMQP.to_bytes().to_vec();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Begin(begin), &[], &mut b)
        .expect("begin");
    let (c, out, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    assert!(performatives(&out).contains(&"close".to_owned()));
}

#[test]
fn a_server_closed_before_it_said_anything_sends_no_bare_close() {
    // 2.4.1: a close comes after a header and an open. Closed before any header, a
    // server just ends; closed after the headers, its open goes before its close.
    let mut s = Connection::server(Config::new("server"));
    s.close(None).expect("close");
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert!(out.is_empty(), "{out:?}");
    assert!(s.is_ended());
    let mut s = Connection::server(Config::new("server"));
    s.handle_input(&ProtocolHeader::AMQP.to_bytes(), Instant::now());
    s.close(None).expect("close");
    s.poll_transmit(&mut out);
    assert_eq!(performatives(&out), ["header 0", "open", "close"]);
}

#[test]
fn an_open_on_a_channel_other_than_0_is_refused() {
    // 2.4.1: before the open, channel-max is 0.
    let mut open = Open::new("x");
    open.container_id = "hand".into();
    let mut b = ProtocolHeader::AMQP.to_bytes().to_vec();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(3, &Performative::Open(open), &[], &mut b)
        .expect("open");
    let (c, out, ev) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding, "{ev:?}");
    let (cond, text) = close_error(&out);
    assert_eq!(cond, condition::NOT_ALLOWED, "{text}");
    assert!(text.contains("channel 3 exceeds channel-max 0"), "{text}");
    // On channel 0 it opens.
    let (c, _, _) = client_facing(&server_open(Open::new("x")));
    assert_eq!(c.state(), ConnectionState::Opened);
}

#[test]
fn garbage_after_open_closes_with_a_decode_error_and_is_then_ignored() {
    let mut b = server_open(Open::new("x"));
    // A frame whose body has an unknown format code.
    b.extend_from_slice(&[0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x13, 0xee]);
    let (mut c, out, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    assert!(performatives(&out).contains(&"close".to_owned()));
    // Anything but close is discarded; the peer's close ends it.
    let mut more = Vec::new();
    FrameEncoder::new(u32::MAX).encode_empty(&mut more);
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Close(Default::default()), &[], &mut more)
        .expect("close");
    c.handle_input(&more, Instant::now());
    assert!(c.is_ended());
    let ev = events(&mut c);
    assert!(matches!(ended(&ev), Some(Some(ConnectionError::Violation(Violation::Decode(_))))));
}

#[test]
fn the_transport_closing_early_is_reported() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 17);
    p.client.handle_eof(p.now);
    assert_eq!(ended(&events(&mut p.client)), Some(&Some(ConnectionError::TransportClosed)));
}

/// What the trace callback saw: direction, offset, length, and what it was.
type TraceLog = Arc<Mutex<Vec<(Direction, u64, usize, String)>>>;

#[test]
fn the_trace_sees_every_header_and_frame_in_both_directions() {
    let seen: TraceLog = Arc::default();
    let log = seen.clone();
    let mut cfg = Config::new("client");
    cfg.sasl_client = Some(SaslClient::plain("alice", "secret"));
    cfg.trace = Some(Box::new(move |r| {
        let what = match &r.item {
            TraceItem::Header(h) => format!("header {}", h.id.0),
            TraceItem::Frame(f) => match &f.body {
                FrameBody::Empty => "empty".into(),
                FrameBody::Sasl(s) => s.name().into(),
                FrameBody::Amqp { performative, .. } => performative.name().into(),
            },
            TraceItem::Undecodable(e) => format!("error {e}"),
            TraceItem::Unframed(e) => format!("unframed {e}"),
        };
        log.lock().expect("trace log").push((r.direction, r.offset, r.raw.len(), what));
    }));
    let mut p = Pair::new(cfg, sasl_server(), 19);
    p.drive();
    p.client.close(None).expect("close");
    p.drive();
    let seen = seen.lock().expect("trace log").clone();
    for (dir, stream) in [(Direction::Out, &p.c2s), (Direction::In, &p.s2c)] {
        let items: Vec<_> = seen.iter().filter(|s| s.0 == dir).collect();
        // Offsets are contiguous and cover the whole stream.
        let mut at = 0u64;
        for (_, offset, len, _) in &items {
            assert_eq!(*offset, at);
            at += *len as u64;
        }
        assert_eq!(at as usize, stream.len());
        let names: Vec<&str> = items.iter().map(|s| s.3.as_str()).collect();
        assert_eq!(names, performatives(stream));
    }
}

/// The peer's bytes that cannot be split into frames reach the trace too: those held when
/// the framing error came, at their offset, so that a trace shows what the peer sent. The
/// connection ends there: later input is not read, nor traced.
#[test]
fn the_bytes_of_a_framing_error_are_traced_as_unframed_at_their_offset() {
    let seen: TraceLog = Arc::default();
    let log = seen.clone();
    let mut cfg = Config::new("client");
    cfg.trace = Some(Box::new(move |r| {
        if let (Direction::In, TraceItem::Unframed(e)) = (r.direction, &r.item) {
            let what = format!("{} {}", amqpwire::inspect::hex(r.raw), e);
            log.lock().expect("trace log").push((r.direction, r.offset, r.raw.len(), what));
        }
    }));
    let mut c = Connection::client(cfg);
    let now = Instant::now();
    let open = server_open(Open::new("x"));
    let mut first = open.clone();
    // A frame header whose size is below 8, and two bytes after it in the same input.
    first.extend_from_slice(&[0, 0, 0, 1, 2, 0, 0, 0, 0xaa, 0xbb]);
    c.handle_input(&first, now);
    c.handle_input(b"more", now);
    c.handle_input(b"!", now);
    let seen = seen.lock().expect("trace log").clone();
    let at = open.len() as u64;
    let why = format!("at offset {at}: frame size 1 is below the minimum of 8");
    assert_eq!(seen, [(Direction::In, at, 10, format!("0000000102000000aabb {why}"))]);
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(close_error(&out).0, "amqp:connection:framing-error");
}

#[test]
fn chunking_does_not_change_the_outcome() {
    let run = |seed: u64| {
        let mut cfg = Config::new("client");
        cfg.sasl_client =
            Some(SaslClient::scram_sha256("alice", "secret", "fixednonce").expect("scram"));
        let mut p = Pair::new(cfg, sasl_server(), seed);
        p.drive();
        p.client.close(None).expect("close");
        p.drive();
        (events(&mut p.client), events(&mut p.server), p.c2s, p.s2c)
    };
    let first = run(1);
    for seed in [2, 99, 12345, 0xdead_beef] {
        assert_eq!(run(seed), first, "seed {seed}");
    }
}

#[test]
fn a_session_begins_and_ends_from_either_side() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 21);
    // Pipelined: begin before the server's open has arrived.
    let s = p.client.begin().expect("begin");
    assert_eq!(s.0, 0, "the first channel");
    p.drive();
    assert_eq!(p.client.session_state(s), Some(amqpwire::connection::SessionState::Mapped));
    let ce = events(&mut p.client);
    assert!(
        ce.iter().any(|e| matches!(e, Event::SessionBegun { session, by_peer: false, remote }
            if *session == s && remote.remote_channel == Some(s.0))),
        "{ce:?}"
    );
    assert_eq!(p.client.remote_begin(s).map(|b| b.remote_channel), Some(Some(s.0)));
    let se = events(&mut p.server);
    let server_side = se
        .iter()
        .find_map(|e| match e {
            Event::SessionBegun { session, by_peer: true, .. } => Some(*session),
            _ => None,
        })
        .expect("the server saw the session begin");
    // The server ends it, with an error; the client answers.
    let err = amqpwire::types::Error::new(condition::RESOURCE_LIMIT_EXCEEDED, "too many sessions");
    p.server.end_session(server_side, Some(err.clone())).expect("end");
    p.drive();
    let ce = events(&mut p.client);
    assert!(
        ce.contains(&Event::SessionEnded { session: s, error: Some(err), by_peer: true }),
        "{ce:?}"
    );
    assert!(events(&mut p.server)
        .iter()
        .any(|e| matches!(e, Event::SessionEnded { by_peer: false, .. })));
    assert_eq!(p.client.session_state(s), None);
    assert_eq!(performatives(&p.c2s), ["header 0", "open", "begin", "end"]);
    assert_eq!(performatives(&p.s2c), ["header 0", "open", "begin", "end"]);
}

#[test]
fn sessions_take_free_channels_within_both_channel_maxes() {
    let mut server = Config::new("server");
    server.channel_max = 1;
    let mut p = Pair::new(Config::new("client"), server, 23);
    p.drive();
    let a = p.client.begin().expect("channel 0");
    let b = p.client.begin().expect("channel 1");
    assert_eq!((a.0, b.0), (0, 1));
    assert_eq!(p.client.begin(), Err(amqpwire::connection::UsageError::ChannelsExhausted));
    p.drive();
    p.client.end_session(a, None).expect("end");
    p.drive();
    // Channel 0 is free again once both ends are exchanged.
    assert_eq!(p.client.begin().expect("reuse").0, 0);
}

#[test]
fn a_frame_on_a_channel_no_session_uses_closes_with_not_found() {
    let mut b = server_open(Open::new("x"));
    FrameEncoder::new(u32::MAX)
        .encode_amqp(5, &Performative::End(Default::default()), &[], &mut b)
        .expect("end");
    let (c, out, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    assert_eq!(close_error(&out).0, condition::NOT_FOUND);
}

use amqpwire::connection::{LinkId, LinkOptions, LinkState, UsageError};
use amqpwire::types::{Accepted, DeliveryState, Role};
use bytes::Bytes;

/// An open pair with one session and a sender (client) → receiver (server) link.
fn link_pair(client: Config, server: Config, seed: u64) -> (Pair, LinkId, LinkId) {
    let mut p = Pair::new(client, server, seed);
    let (snd, rcv) = p.attach(LinkOptions::sender("telemetry", "q1"));
    (p, snd, rcv)
}

/// A linked pair whose server takes frames of at most 512 bytes and has granted `credit`.
fn small_frame_pair(credit: u32, seed: u64) -> (Pair, LinkId, LinkId) {
    let mut server = Config::new("server");
    server.max_frame_size = 512;
    let (mut p, snd, rcv) = link_pair(Config::new("client"), server, seed);
    p.server.flow(rcv, credit, false).expect("credit");
    p.drive();
    (p, snd, rcv)
}

fn deliveries(events: &[Event]) -> Vec<(u32, Bytes, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivery { delivery_id, payload, settled, .. } => {
                Some((delivery_id.0, payload.clone(), *settled))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_sender_sends_on_credit_and_the_receiver_settles_with_outcomes() {
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 31);
    assert_eq!(
        p.client.send(snd, Bytes::from_static(b"t0"), b"x", false),
        Err(UsageError::NoCredit)
    );
    p.server.flow(rcv, 10, false).expect("credit");
    p.drive();
    assert!(events(&mut p.client).contains(&Event::Credit { link: snd, credit: 10, drain: false }));
    for i in 0..3u8 {
        let id = p.client.send(snd, Bytes::from(vec![i]), &[b'm', i], false).expect("send");
        assert_eq!(id.0, u32::from(i));
    }
    assert_eq!(p.client.link_credit(snd), Some(7));
    p.drive();
    let got = deliveries(&events(&mut p.server));
    assert_eq!(
        got.iter().map(|d| (d.0, d.1.to_vec(), d.2)).collect::<Vec<_>>(),
        [(0, b"m\0".to_vec(), false), (1, b"m\x01".to_vec(), false), (2, b"m\x02".to_vec(), false),]
    );
    assert_eq!(p.server.unsettled(rcv).len(), 3);
    // One disposition settles all three as accepted.
    let accepted = Some(DeliveryState::Accepted(Accepted {}));
    p.server
        .disposition(rcv, SequenceNo(0), Some(SequenceNo(2)), true, accepted.clone())
        .expect("settle");
    p.drive();
    let outcomes: Vec<_> = events(&mut p.client)
        .into_iter()
        .filter_map(|e| match e {
            Event::Disposition { delivery_id, settled: true, state, .. } => {
                Some((delivery_id.0, state))
            }
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [(0, accepted.clone()), (1, accepted.clone()), (2, accepted)]);
    assert!(p.client.unsettled(snd).is_empty() && p.server.unsettled(rcv).is_empty());
}

#[test]
fn a_grant_of_two_to_the_thirty_one_or_more_is_credit_not_none() {
    // link-credit is a plain uint (2.6.7): only delivery-counts are serial numbers. A
    // receiver granting u32::MAX (or 2^31) lets the sender send, and takes what it sends.
    for grant in [u32::MAX, 1 << 31, (1 << 31) - 1] {
        let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 37);
        p.server.flow(rcv, grant, false).expect("credit");
        p.drive();
        assert_eq!(p.client.link_credit(snd), Some(grant));
        for i in 0..3u8 {
            p.client.send(snd, Bytes::from(vec![i]), &[b'm', i], true).expect("send");
        }
        p.drive();
        let ev = events(&mut p.server);
        assert_eq!(deliveries(&ev).len(), 3, "{grant}: {ev:?}");
        assert_eq!(p.server.link_state(rcv), Some(LinkState::Attached), "{grant}");
        assert_eq!(p.server.link_credit(rcv), Some(grant - 3));
        // A grant that crosses transfers in flight: the sender counts them off it.
        p.client.send(snd, Bytes::from_static(b"x"), b"in flight", true).expect("send");
        p.server.flow(rcv, grant, false).expect("credit");
        p.drive();
        assert_eq!(p.client.link_credit(snd), Some(grant - 1), "{grant}");
    }
}

#[test]
fn a_session_window_shrunk_below_the_transfers_in_flight_is_no_window() {
    // Ten transfers are in flight when the peer's flow says it expects transfer 0 next
    // with a window of 5: it can take none of ours until it says more (2.5.6), not four
    // billion.
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 39);
    p.server.flow(rcv, 100, false).expect("credit");
    p.drive();
    for i in 0..10u8 {
        p.client.send(snd, Bytes::from(vec![i]), &[i], true).expect("send");
    }
    let session = p.client.session_windows(snd.session).expect("session");
    let shrunk = amqpwire::types::Flow { incoming_window: 5, echo: false, ..echo_flow(None) };
    let channel = session.remote_channel.expect("mapped");
    p.deliver(&frame(channel, Performative::Flow(shrunk.clone())), false);
    let w = p.client.session_windows(snd.session).expect("session");
    assert_eq!(w.remote_incoming_window, 0);
    assert_eq!(
        p.client.send(snd, Bytes::from_static(b"x"), b"more", true),
        Err(UsageError::SessionWindowFull)
    );
    // Having taken three of them, with a window of 20: 13 more.
    let mut more = shrunk;
    more.next_incoming_id = Some(SequenceNo(3));
    more.incoming_window = 20;
    let _ = events(&mut p.client);
    p.deliver(&frame(channel, Performative::Flow(more)), false);
    let w = p.client.session_windows(snd.session).expect("session");
    assert_eq!(w.remote_incoming_window, 13);
    // The window's growth is an event: senders waiting for room hear of it.
    let grown = |ev: Vec<Event>| {
        ev.into_iter().find_map(|e| match e {
            Event::SessionWindow { session, remote_incoming_window } => {
                Some((session, remote_incoming_window))
            }
            _ => None,
        })
    };
    assert_eq!(grown(events(&mut p.client)), Some((snd.session, 13)));
}

#[test]
fn a_link_s_flow_updates_the_session_window_too() {
    // 2.7.4: every flow carries the session's state. A peer that reopens its window in
    // the flow that gives a link credit (as Qpid Proton does) is heard: before, only a
    // flow with no handle was, and a sender whose window had filled waited for ever.
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 40);
    p.server.flow(rcv, 100, false).expect("credit");
    p.drive();
    let session = p.client.session_windows(snd.session).expect("session");
    let channel = session.remote_channel.expect("mapped");
    // The flow names the server's handle for the link.
    let handle = rcv.handle.0;
    let closed = amqpwire::types::Flow { incoming_window: 0, echo: false, ..echo_flow(None) };
    p.deliver(&frame(channel, Performative::Flow(closed)), false);
    assert_eq!(
        p.client.send(snd, Bytes::from_static(b"t"), b"m", true),
        Err(UsageError::SessionWindowFull)
    );
    let _ = events(&mut p.client);
    let mut reopened = echo_flow(Some(handle));
    (reopened.incoming_window, reopened.link_credit, reopened.echo) = (2, Some(100), false);
    p.deliver(&frame(channel, Performative::Flow(reopened)), false);
    let w = p.client.session_windows(snd.session).expect("session");
    assert_eq!(w.remote_incoming_window, 2);
    let ev = events(&mut p.client);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::SessionWindow { remote_incoming_window: 2, session } if *session == snd.session
        )),
        "{ev:?}"
    );
    p.client.send(snd, Bytes::from_static(b"t"), b"m", true).expect("the window reopened");
}

#[test]
fn a_delivery_larger_than_the_peer_s_whole_session_window_goes_out_as_the_window_opens() {
    // The server takes frames of 512 bytes and one transfer frame at a time (it re-advertises
    // its window of 1 after each). A 5 KB message needs 11 frames: it used to be refused
    // with SessionWindowFull for ever. Its frames go out as the flows open the window, the
    // message arrives whole, and the client's transfer-ids count only the frames sent.
    let (mut p, snd, _) = narrow_window_pair(512, 1, 52);
    let _ = events(&mut p.client);
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let id = p.client.send(snd, Bytes::from_static(b"big"), &body, true).expect("send");
    assert_eq!(id, SequenceNo(0));
    let w = p.client.session_windows(snd.session).expect("session");
    assert_eq!(
        (w.next_outgoing_id, w.remote_incoming_window),
        (SequenceNo(1), 0),
        "one frame sent"
    );
    // A second delivery waits for the first's frames, whatever the window says.
    assert_eq!(
        p.client.send(snd, Bytes::from_static(b"next"), b"small", true),
        Err(UsageError::SessionWindowFull)
    );
    p.drive();
    let got = deliveries(&events(&mut p.server));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].1[..], &body[..]);
    let transfers = transfers(&p.c2s);
    assert_eq!(transfers.len(), 11);
    assert!(transfers[..10].iter().all(|t| t.more) && !transfers[10].more);
    let w = p.client.session_windows(snd.session).expect("session");
    assert_eq!(w.next_outgoing_id, SequenceNo(11));
    // The last frame's release is news for waiting senders, and the next delivery goes.
    let ev = events(&mut p.client);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::SessionWindow { session, .. } if *session == snd.session)),
        "{ev:?}"
    );
    p.client.send(snd, Bytes::from_static(b"next"), b"small", true).expect("send");
    p.drive();
    let got = deliveries(&events(&mut p.server));
    assert_eq!(got.iter().map(|d| &d.1[..]).collect::<Vec<_>>(), [&b"small"[..]]);
    assert_eq!(p.server.state(), ConnectionState::Opened);
}

#[test]
fn held_frames_of_a_referenced_body_keep_their_bytes_and_order() {
    // The same with a body the sender references (a data section kept out of the head):
    // the held frames are cut at frame boundaries between and inside the references.
    let (mut p, snd, _) = narrow_window_pair(600, 3, 53);
    let body = Bytes::from((0..20_000u32).map(|i| (i * 7 % 256) as u8).collect::<Vec<u8>>());
    let message = amqpwire::message::Message::with_data(body.clone());
    let mut payload = amqpwire::message::Payload::default();
    message.encode_payload(&mut payload);
    assert!(!payload.inserts.is_empty(), "the body is referenced");
    p.client.send_payload(snd, Bytes::from_static(b"ref"), &payload, true).expect("send");
    p.drive();
    let got = deliveries(&events(&mut p.server));
    assert_eq!(got.len(), 1);
    let decoded = amqpwire::message::Message::decode(&got[0].1).expect("message");
    assert_eq!(decoded, message);
    assert_eq!(p.server.state(), ConnectionState::Opened);
}

/// A linked pair whose server takes frames of `max_frame_size` bytes and `window` transfer
/// frames before its next flow, its receiver granted 10.
fn narrow_window_pair(max_frame_size: u32, window: u32, seed: u64) -> (Pair, LinkId, LinkId) {
    let mut server = Config::new("server");
    server.max_frame_size = max_frame_size;
    server.session.incoming_window = window;
    let (mut p, snd, rcv) = link_pair(Config::new("client"), server, seed);
    p.server.flow(rcv, 10, false).expect("credit");
    p.drive();
    (p, snd, rcv)
}

/// A pair whose server takes frames of 512 bytes and one transfer frame at a time, its
/// receiver granted 10; the client has sent a 3,000-byte delivery (seven frames), of which
/// the window took one.
fn one_frame_window_pair(settled: bool, seed: u64) -> (Pair, LinkId, LinkId) {
    let (mut p, snd, rcv) = narrow_window_pair(512, 1, seed);
    p.client.send(snd, Bytes::from_static(b"big"), &[7u8; 3000], settled).expect("send");
    (p, snd, rcv)
}

/// The client's transfers and the given other performatives, by name, in the order sent.
fn sent_names(p: &Pair, others: &[&str]) -> Vec<String> {
    sent(&p.c2s)
        .into_iter()
        .map(|(_, p)| p.name().to_owned())
        .filter(|n| n == "transfer" || others.contains(&n.as_str()))
        .collect()
}

#[test]
fn a_detach_after_a_held_delivery_goes_after_its_frames() {
    // 2.6.5: nothing goes out on a link after our detach, so the detach waits behind the
    // frames the window held back: the peer gets the whole delivery, then the detach.
    let (mut p, snd, _) = one_frame_window_pair(false, 54);
    p.client.detach(snd, true, None).expect("detach");
    p.drive();
    let mut want = vec!["transfer"; 7];
    want.push("detach");
    assert_eq!(sent_names(&p, &["detach"]), want);
    let got = deliveries(&events(&mut p.server));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1.len(), 3000);
    assert_eq!(p.client.link_state(snd), None, "detached");
    assert_eq!(p.server.state(), ConnectionState::Opened);
    // The session goes on: another link sends on it at once.
    let other = p.client.attach(snd.session, LinkOptions::sender("other", "q2")).expect("attach");
    p.drive();
    let rcv2 = attached_by_peer(&mut p.server).expect("attached");
    p.server.flow(rcv2, 1, false).expect("credit");
    p.drive();
    p.client.send(other, Bytes::from_static(b"o"), b"after", true).expect("send");
    p.drive();
    let got = deliveries(&events(&mut p.server));
    assert_eq!(got.iter().map(|d| &d.1[..]).collect::<Vec<_>>(), [&b"after"[..]]);
}

#[test]
fn a_settlement_of_a_held_delivery_reaches_the_receiver_after_the_delivery() {
    // The sender settles at once; its disposition must not overtake the delivery's
    // later frames (the receiver would not know the delivery yet, drop the settlement,
    // and keep the delivery unsettled for ever).
    let (mut p, snd, rcv) = one_frame_window_pair(false, 55);
    p.client.disposition(snd, SequenceNo(0), None, true, None).expect("settle");
    p.drive();
    let mut want = vec!["transfer"; 7];
    want.push("disposition");
    assert_eq!(sent_names(&p, &["disposition"]), want);
    assert_eq!(deliveries(&events(&mut p.server)).len(), 1);
    assert!(p.server.unsettled(rcv).is_empty(), "{:?}", p.server.unsettled(rcv));
}

#[test]
fn our_end_held_behind_a_delivery_is_sent_when_the_peer_s_end_crosses_it() {
    // Our end waits behind the delivery's held frames; the peer ends its side before it
    // opens its window. Our end must still answer (2.5.4): it was dropped with the held
    // frames, and the peer's session stayed half ended.
    let (mut p, snd, rcv) = one_frame_window_pair(true, 58);
    p.client.end_session(snd.session, None).expect("end");
    p.server.end_session(rcv.session, None).expect("end");
    p.drive();
    assert!(sent_names(&p, &["end"]).contains(&"end".to_owned()), "{:?}", sent_names(&p, &["end"]));
    let ended = |ev: Vec<Event>| ev.iter().any(|e| matches!(e, Event::SessionEnded { .. }));
    assert!(ended(events(&mut p.server)), "the server's session ended");
    assert!(ended(events(&mut p.client)), "the client's session ended");
    assert_eq!(p.server.state(), ConnectionState::Opened);
}

#[test]
fn a_link_s_flow_waits_behind_its_attach_held_behind_a_delivery() {
    // The server sends a delivery larger than the client's window (one frame of 512
    // bytes) and, meanwhile, answers the client's second attach and grants it credit. Its
    // attach is held behind the delivery's frames: the flow must not go before it (Qpid
    // Proton closed the connection: "no such handle"), and goes written with the session's
    // state as it is when it goes.
    let mut client = Config::new("client");
    client.max_frame_size = 512;
    client.session.incoming_window = 1;
    let mut p = Pair::new(client, Config::new("server"), 59);
    let (rcv, snd) = p.attach(LinkOptions::receiver("out", "q"));
    p.client.flow(rcv, 10, false).expect("credit");
    p.drive();
    p.server.send(snd, Bytes::from_static(b"big"), &[5u8; 3000], true).expect("send");
    let second = p.client.attach(rcv.session, LinkOptions::sender("in", "q2")).expect("attach");
    // Only the client's attach reaches the server before it grants credit.
    let mut attach = Vec::new();
    p.client.poll_transmit(&mut attach);
    p.server.handle_input(&attach, p.now);
    let theirs = attached_by_peer(&mut p.server).expect("the server attached");
    p.server.flow(theirs, 10, false).expect("credit");
    p.drive();
    assert_eq!(deliveries(&events(&mut p.client)).len(), 1);
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert_eq!(p.client.link_state(second), Some(LinkState::Attached));
    assert_eq!(p.client.link_credit(second), Some(10));
    // In the server's stream, its attach for the handle comes before its flow for it, and
    // that flow's next-outgoing-id counts every transfer frame before it.
    let frames = sent(&p.s2c);
    let handle = theirs.handle;
    let attach_at = frames
        .iter()
        .position(|(_, f)| matches!(f, Performative::Attach(a) if a.handle == handle && a.role == amqpwire::types::Role::RECEIVER))
        .expect("attach");
    let flow_at = frames
        .iter()
        .position(|(_, f)| matches!(f, Performative::Flow(fl) if fl.handle == Some(handle)))
        .expect("flow");
    assert!(attach_at < flow_at, "{attach_at} {flow_at}");
    let before =
        frames[..flow_at].iter().filter(|(_, f)| matches!(f, Performative::Transfer(_))).count();
    let Performative::Flow(flow) = &frames[flow_at].1 else { unreachable!() };
    assert_eq!(flow.next_outgoing_id.0 as usize, before);
}

#[test]
fn held_frames_are_dropped_when_the_peer_detaches_or_the_connection_closes() {
    // The peer detaches the link: the rest of the delivery would be for a handle it no
    // longer knows; it is dropped, and the session's window is free for other links.
    // (The server's detach crosses the first frame: it reaches the client before the
    // flow that reopens the window.)
    let (mut p, snd, rcv) = one_frame_window_pair(true, 56);
    let _ = events(&mut p.client);
    p.server.detach(rcv, true, None).expect("detach");
    p.drive();
    assert_eq!(sent_names(&p, &["detach"]), ["transfer", "detach"], "the answer, nothing held");
    assert_eq!(p.server.state(), ConnectionState::Opened);
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert!(events(&mut p.client)
        .iter()
        .any(|e| matches!(e, Event::LinkDetached { link, by_peer: true, .. } if *link == snd)));
    // Our close: nothing held goes after it.
    let (mut p, _, _) = one_frame_window_pair(true, 57);
    p.client.close(None).expect("close");
    p.drive();
    assert_eq!(sent_names(&p, &["close"]), ["transfer", "close"]);
    assert!(p.client.is_ended() && p.server.is_ended());
}

/// The transfers in a stream of frames (after its protocol headers).
fn transfers(stream: &[u8]) -> Vec<amqpwire::types::Transfer> {
    sent(stream)
        .into_iter()
        .filter_map(|(_, p)| match p {
            Performative::Transfer(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// An echoing flow for `handle` (or the session's, with none).
fn echo_flow(handle: Option<u32>) -> amqpwire::types::Flow {
    amqpwire::types::Flow {
        next_incoming_id: Some(SequenceNo(0)),
        incoming_window: 100,
        next_outgoing_id: SequenceNo(0),
        outgoing_window: 100,
        handle: handle.map(amqpwire::types::Handle),
        delivery_count: handle.map(|_| SequenceNo(0)),
        link_credit: handle.map(|_| 5),
        available: None,
        drain: false,
        echo: true,
        properties: None,
    }
}

#[test]
fn after_our_close_nothing_more_is_written_and_commands_are_refused() {
    // 2.4.6: our close is the last frame. The peer's frames still in flight (a begin, an
    // echoing flow, a detach) get no answer, heartbeats stop, and commands say closed.
    let mut server = Config::new("server");
    server.idle_time_out = Some(Duration::from_millis(1000));
    let (mut p, snd, rcv) = link_pair(Config::new("client"), server, 41);
    p.server.flow(rcv, 10, false).expect("credit");
    p.drive();
    p.client.close(None).expect("close");
    let mut out = Vec::new();
    p.client.poll_transmit(&mut out);
    assert_eq!(performatives(&out), ["close"]);
    let s = snd.session;
    assert_eq!(p.client.begin(), Err(UsageError::Closed));
    assert_eq!(p.client.attach(s, LinkOptions::sender("late", "q")), Err(UsageError::Closed));
    assert_eq!(p.client.send(snd, Bytes::from_static(b"t"), b"m", true), Err(UsageError::Closed));
    assert_eq!(p.client.detach(snd, true, None), Err(UsageError::Closed));
    assert_eq!(p.client.disposition(snd, SequenceNo(0), None, true, None), Err(UsageError::Closed));
    assert_eq!(p.client.end_session(s, None), Err(UsageError::Closed));
    let channel = rcv.session.0;
    let mut b = frame(7, Performative::Begin(Begin::new(SequenceNo(0), 10, 10)));
    b.extend(frame(channel, Performative::Flow(echo_flow(Some(rcv.handle.0)))));
    b.extend(frame(channel, Performative::Flow(echo_flow(None))));
    b.extend(frame(
        channel,
        Performative::Detach(amqpwire::types::Detach {
            handle: rcv.handle,
            closed: true,
            error: None,
        }),
    ));
    p.deliver(&b, false);
    p.client.handle_timeout(p.now + Duration::from_millis(900));
    out.clear();
    p.client.poll_transmit(&mut out);
    assert_eq!(performatives(&out), Vec::<String>::new());
    // A connection closing for a violation sends no heartbeats either.
    let mut b = server_open(Open { idle_time_out: Some(1000), ..Open::new("x") });
    b.extend_from_slice(&[0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x13, 0xee]);
    let (mut c, out, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    assert!(performatives(&out).contains(&"close".to_owned()));
    let t = Instant::now() + Duration::from_millis(900);
    c.handle_timeout(t);
    let mut more = Vec::new();
    c.poll_transmit(&mut more);
    assert_eq!(performatives(&more), Vec::<String>::new());
}

#[test]
fn after_our_end_nothing_more_is_written_on_the_session() {
    // 2.5.5: our end is the session's last frame. An echoing flow, a detach and a transfer
    // on a handle that is not attached, in flight from the peer, get no answer (and no
    // second end); the peer's end then ends the session, unanswered.
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 43);
    p.drive();
    p.client.end_session(snd.session, None).expect("end");
    let mut out = Vec::new();
    p.client.poll_transmit(&mut out);
    assert_eq!(performatives(&out), ["end"]);
    let channel = rcv.session.0;
    let mut b = frame(channel, Performative::Flow(echo_flow(Some(rcv.handle.0))));
    b.extend(frame(channel, Performative::Flow(echo_flow(None))));
    b.extend(frame(
        channel,
        Performative::Detach(amqpwire::types::Detach {
            handle: rcv.handle,
            closed: true,
            error: None,
        }),
    ));
    b.extend(transfer_on(channel, 99));
    b.extend(frame(channel, Performative::End(amqpwire::types::End { error: None })));
    p.deliver(&b, false);
    out.clear();
    p.client.poll_transmit(&mut out);
    assert_eq!(performatives(&out), Vec::<String>::new());
    let ev = events(&mut p.client);
    assert!(ev.iter().any(|e| matches!(e, Event::SessionEnded { by_peer: false, .. })), "{ev:?}");
    assert_eq!(p.client.state(), ConnectionState::Opened);
}

#[test]
fn a_command_whose_frame_would_not_fit_is_refused_and_changes_nothing() {
    // The server takes frames of 512 bytes. A disposition, detach, end, attach or close
    // carrying more is refused with TooLarge before anything changes; the connection
    // goes on (it ended at once, unseen by the command, which returned Ok).
    let (mut p, snd, _) = small_frame_pair(10, 47);
    p.client.send(snd, Bytes::from_static(b"t0"), b"m", false).expect("send");
    p.drive();
    let long = amqpwire::types::Error::new(condition::INTERNAL_ERROR, "x".repeat(600));
    let rejected = DeliveryState::Rejected(amqpwire::types::Rejected { error: Some(long.clone()) });
    assert_eq!(
        p.client.disposition(snd, SequenceNo(0), None, true, Some(rejected)),
        Err(UsageError::TooLarge)
    );
    assert_eq!(p.client.unsettled(snd).len(), 1, "still unsettled");
    assert_eq!(p.client.detach(snd, true, Some(long.clone())), Err(UsageError::TooLarge));
    assert_eq!(p.client.link_state(snd), Some(LinkState::Attached));
    assert_eq!(p.client.end_session(snd.session, Some(long.clone())), Err(UsageError::TooLarge));
    let mut big = LinkOptions::sender("big", "q2");
    let mut props = amqpwire::types::Fields::new();
    props.insert("blob", "y".repeat(600).as_str());
    big.properties = Some(props);
    assert_eq!(p.client.attach(snd.session, big), Err(UsageError::TooLarge));
    let huge_condition = amqpwire::types::Error::new(&"c".repeat(600), "why");
    assert_eq!(p.client.close(Some(huge_condition)), Err(UsageError::TooLarge));
    p.drive();
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert_eq!(p.server.state(), ConnectionState::Opened);
    // The same commands within the limit go through; a long close description is cut.
    p.client.disposition(snd, SequenceNo(0), None, true, None).expect("settle");
    p.client.send(snd, Bytes::from_static(b"t1"), b"m", true).expect("send");
    p.drive();
    assert_eq!(deliveries(&events(&mut p.server)).len(), 2);
    p.client.close(Some(long)).expect("close");
    p.drive();
    assert_eq!(p.server.state(), ConnectionState::End);
}

#[test]
fn a_link_closed_before_the_application_answered_forgets_what_its_name_left_unsettled() {
    // The client's sender "keep" leaves a delivery unsettled and detaches without closing:
    // the server keeps it for the name. Attached again and closed by the client before the
    // server's application answered, the link is closed: nothing is kept (2.6.13).
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(Config::new("client"), server, 59);
    let s = p.client.begin().expect("begin");
    let snd = p.client.attach(s, LinkOptions::sender("keep", "q")).expect("attach");
    p.drive();
    let rcv = requested(&mut p);
    p.server.accept_attach(rcv, None).expect("accept");
    p.server.flow(rcv, 5, false).expect("credit");
    p.drive();
    p.client.send(snd, Bytes::from_static(b"t0"), b"m", false).expect("send");
    p.drive();
    p.client.detach(snd, false, None).expect("detach");
    p.drive();
    let kept = || p.server.retained_unsettled("keep", amqpwire::types::Role::RECEIVER).len();
    assert_eq!(kept(), 1, "kept for the name");
    let again = p.client.attach(s, LinkOptions::sender("keep", "q")).expect("attach");
    p.drive();
    let _ = requested(&mut p);
    p.client.detach(again, true, None).expect("close it");
    p.drive();
    assert_eq!(
        p.server.retained_unsettled("keep", amqpwire::types::Role::RECEIVER).len(),
        0,
        "closed: forgotten"
    );
}

#[test]
fn a_refusal_whose_attach_would_not_fit_is_refused_and_changes_nothing() {
    // The client takes frames of 512 bytes and attaches with a 600-byte source address,
    // which the server's refusal would echo: refusing (or detaching) it is TooLarge, the link
    // still waits for an answer, and an answer that fits goes through.
    let mut client = Config::new("client");
    client.max_frame_size = 512;
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(client, server, 53);
    p.drive();
    let s = p.client.begin().expect("begin");
    // A sender's source, which the refusal echoes (it nulls the target).
    let mut opts = LinkOptions::sender("big", "q");
    opts.source = Some(amqpwire::types::AttachSource::Source(amqpwire::types::Source {
        address: Some("q".repeat(600).into()),
        ..Default::default()
    }));
    p.client.attach(s, opts).expect("attach");
    p.drive();
    let asked = requested(&mut p);
    let e = amqpwire::types::Error::new(condition::UNAUTHORIZED_ACCESS, "no");
    assert_eq!(p.server.refuse_attach(asked, e.clone()), Err(UsageError::TooLarge));
    assert_eq!(p.server.detach(asked, true, None), Err(UsageError::TooLarge));
    assert_eq!(p.server.link_state(asked), Some(LinkState::AttachRcvd));
    p.drive();
    assert_eq!(p.server.state(), ConnectionState::Opened);
    assert_eq!(p.client.state(), ConnectionState::Opened);
}

/// A transfer of a one-byte message on `handle`.
fn transfer_on(channel: u16, handle: u32) -> Vec<u8> {
    let mut t = amqpwire::types::Transfer::new(amqpwire::types::Handle(handle));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(Bytes::from_static(b"t"));
    let mut b = Vec::new();
    FrameEncoder::new(u32::MAX).encode_transfer(channel, &t, &[0x40], &mut b).expect("transfer");
    b
}

#[test]
fn a_grant_of_two_to_the_thirty_one_or_more_can_be_lowered_and_drained() {
    // Lowered to 0 while transfers sent under it are in flight: they are taken. Drained:
    // the sender's answer (delivery-count moved by the whole grant, past what serial
    // numbers compare) leaves the receiver no credit.
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 61);
    p.server.flow(rcv, (1 << 31) + 5, false).expect("credit");
    p.drive();
    for i in 0..2u8 {
        p.client.send(snd, Bytes::from(vec![i]), &[i], true).expect("send");
    }
    p.server.flow(rcv, 0, false).expect("lowered");
    p.drive();
    let ev = events(&mut p.server);
    assert_eq!(deliveries(&ev).len(), 2, "{ev:?}");
    assert_eq!(p.server.link_state(rcv), Some(LinkState::Attached));
    p.server.flow(rcv, u32::MAX, true).expect("drain");
    p.drive();
    p.client.drained(snd).expect("nothing to send");
    p.drive();
    assert_eq!(p.server.link_credit(rcv), Some(0));
    assert_eq!(p.client.link_credit(snd), Some(0));
}

#[test]
fn seventy_thousand_presettled_transfers_do_not_stall() {
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 33);
    let total = 70_000u32;
    let (mut sent, mut received) = (0u32, 0u32);
    p.server.flow(rcv, 1000, false).expect("credit");
    p.drive();
    let mut rounds = 0;
    while received < total {
        rounds += 1;
        assert!(rounds < 10_000, "stalled at {received} of {total}");
        while sent < total {
            match p.client.send(snd, Bytes::new(), &sent.to_be_bytes(), true) {
                Ok(_) => sent += 1,
                Err(UsageError::NoCredit | UsageError::SessionWindowFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        p.drive();
        let got = deliveries(&events(&mut p.server));
        for (id, payload, settled) in &got {
            assert_eq!(*id, received, "delivery-ids in order");
            assert_eq!(payload[..], received.to_be_bytes());
            assert!(settled);
            received += 1;
        }
        let _ = events(&mut p.client);
        if p.server.link_credit(rcv).is_some_and(|c| c < 500) {
            p.server.flow(rcv, 1000, false).expect("top up");
        }
    }
    assert_eq!(received, total);
}

#[test]
fn large_messages_split_at_the_peers_max_frame_size_and_join_again() {
    let (mut p, snd, _) = small_frame_pair(1, 35);
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    p.client.send(snd, Bytes::from_static(b"big"), &body, false).expect("send");
    p.drive();
    let frames = performatives(&p.c2s).iter().filter(|p| *p == "transfer").count();
    assert!(frames >= 40, "{frames} transfer frames");
    let got = deliveries(&events(&mut p.server));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1[..], body[..]);
}

#[test]
fn a_transfer_beyond_credit_detaches_the_link_with_transfer_limit_exceeded() {
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 37);
    p.server.flow(rcv, 1, false).expect("credit");
    p.drive();
    p.client.send(snd, Bytes::from_static(b"a"), b"one", true).expect("send");
    p.drive();
    // A misbehaving sender: a second transfer with no credit, written by hand.
    let mut t = amqpwire::types::Transfer::new(amqpwire::types::Handle(0));
    t.delivery_id = Some(SequenceNo(1));
    t.delivery_tag = Some(Bytes::from_static(b"b"));
    t.settled = Some(true);
    let mut raw = Vec::new();
    FrameEncoder::new(u32::MAX).encode_transfer(0, &t, b"two", &mut raw).expect("frame");
    p.server.handle_input(&raw, p.now);
    p.drive();
    let se = events(&mut p.server);
    assert!(
        se.iter().any(|e| matches!(
            e,
            Event::LinkError { violation: Violation::TransferLimitExceeded, .. }
        )),
        "{se:?}"
    );
    let ce = events(&mut p.client);
    let err = ce
        .iter()
        .find_map(|e| match e {
            Event::LinkDetached { link, error: Some(err), by_peer: true, .. } if *link == snd => {
                Some(err.clone())
            }
            _ => None,
        })
        .expect("the client's link was detached with an error");
    assert_eq!(err.condition.as_str(), condition::TRANSFER_LIMIT_EXCEEDED);
    assert!(err.description.as_deref().unwrap_or_default().contains("2.6.7"));
    assert_eq!(p.client.link_state(snd), None);
}

#[test]
fn drain_uses_up_the_credit_when_the_sender_has_nothing() {
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 39);
    p.server.flow(rcv, 5, true).expect("drain");
    p.drive();
    assert!(events(&mut p.client).contains(&Event::Credit { link: snd, credit: 5, drain: true }));
    p.client.drained(snd).expect("nothing to send");
    p.drive();
    assert!(events(&mut p.server).contains(&Event::Credit { link: rcv, credit: 0, drain: true }));
    assert_eq!(p.client.link_credit(snd), Some(0));
}

#[test]
fn links_detach_from_either_side_and_names_can_be_reused() {
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 41);
    p.server.detach(rcv, true, None).expect("detach");
    p.drive();
    assert!(events(&mut p.client).iter().any(|e| matches!(e, Event::LinkDetached { link, closed: true, by_peer: true, .. } if *link == snd)));
    assert!(events(&mut p.server)
        .iter()
        .any(|e| matches!(e, Event::LinkDetached { by_peer: false, .. })));
    // The same name again, now as a receiver: a new link.
    let again =
        p.client.attach(snd.session, LinkOptions::receiver("telemetry", "q1")).expect("attach");
    p.drive();
    assert_eq!(p.client.link_state(again), Some(LinkState::Attached));
    assert_eq!(p.client.detach(again, true, None), Ok(()));
    assert_eq!(p.client.detach(again, true, None), Err(UsageError::DetachSent));
}

/// A settle after our own detach would mean nothing to the peer (a closing detach let the
/// delivery go; one that keeps the link leaves it to a later attachment): refused, and
/// nothing written.
#[test]
fn a_settle_after_our_detach_is_refused_and_nothing_is_sent() {
    let (mut p, snd, rcv) = link_pair(Config::new("client"), Config::new("server"), 43);
    p.server.flow(rcv, 1, false).expect("credit");
    p.drive();
    let delivery_id = p.client.send(snd, Bytes::from_static(b"t"), b"\x00\x53\x77\x41", false);
    let delivery_id = delivery_id.expect("sent");
    p.drive();
    assert!(events(&mut p.server).iter().any(|e| matches!(e, Event::Delivery { .. })));
    p.server.detach(rcv, true, None).expect("detach");
    let accepted = Some(DeliveryState::Accepted(Accepted {}));
    assert_eq!(
        p.server.disposition(rcv, delivery_id, None, true, accepted),
        Err(UsageError::DetachSent)
    );
    p.drive();
    assert!(
        !performatives(&p.s2c).iter().any(|f| f.starts_with("disposition")),
        "{:?}",
        performatives(&p.s2c)
    );
}

/// 2.6.5: a link detached before the peer's attach answered it. The answer crosses our
/// detach; it belongs to the detaching link and is never taken for a new one (which each
/// side would answer and detach again, for ever). Found by the `engine` fuzz target
/// (`fuzz/corpus/engine/attach-answer-crosses-detach`).
#[test]
fn an_attach_answer_that_crosses_our_detach_ends_the_link_once() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 45);
    let session = p.client.begin().expect("begin");
    let link = p.client.attach(session, LinkOptions::sender("early", "q1")).expect("attach");
    p.client.detach(link, true, None).expect("detach before any answer");
    p.drive();
    let kinds = |stream: &[u8]| -> Vec<&'static str> {
        sent(stream)
            .into_iter()
            .filter_map(|(_, p)| match p {
                Performative::Attach(_) => Some("attach"),
                Performative::Detach(_) => Some("detach"),
                _ => None,
            })
            .collect()
    };
    assert_eq!(kinds(&p.c2s), ["attach", "detach"], "the client attached and detached once");
    assert_eq!(kinds(&p.s2c), ["attach", "detach"], "the server answered each once");
    let ce = events(&mut p.client);
    assert!(
        !ce.iter().any(|e| matches!(e, Event::LinkAttached { .. })),
        "the late answer is no new link: {ce:?}"
    );
    assert!(ce.iter().any(|e| matches!(
        e,
        Event::LinkDetached { link: l, by_peer: false, .. } if *l == link
    )));
    // The handle and the name are free again.
    assert_eq!(p.client.link_state(link), None);
    let again = p.client.attach(session, LinkOptions::sender("early", "q1")).expect("attach");
    p.drive();
    assert_eq!(again.handle, link.handle);
    assert_eq!(p.client.link_state(again), Some(LinkState::Attached));
}

#[test]
fn a_frame_for_an_unknown_handle_ends_the_session_with_unattached_handle() {
    let (mut p, _snd, _rcv) = link_pair(Config::new("client"), Config::new("server"), 43);
    let mut t = amqpwire::types::Transfer::new(amqpwire::types::Handle(77));
    t.delivery_id = Some(SequenceNo(0));
    t.delivery_tag = Some(Bytes::from_static(b"x"));
    let mut raw = Vec::new();
    FrameEncoder::new(u32::MAX).encode_transfer(0, &t, b"?", &mut raw).expect("frame");
    p.server.handle_input(&raw, p.now);
    p.drive();
    let ce = events(&mut p.client);
    let err = ce
        .iter()
        .find_map(|e| match e {
            Event::SessionEnded { error: Some(err), by_peer: true, .. } => Some(err.clone()),
            _ => None,
        })
        .expect("the session ended with an error");
    assert_eq!(err.condition.as_str(), condition::UNATTACHED_HANDLE);
    assert_eq!(p.client.state(), ConnectionState::Opened, "only the session ended");
}

#[test]
fn a_sender_respects_the_receivers_max_message_size() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 51);
    let mut opts = LinkOptions::receiver("inbox", "q1");
    opts.max_message_size = Some(1000);
    let (rcv, snd) = p.attach(opts);
    p.client.flow(rcv, 5, false).expect("credit");
    p.drive();
    assert_eq!(
        p.server.send(snd, Bytes::from_static(b"big"), &[0u8; 2000], true),
        Err(UsageError::MessageTooLarge { size: 2000, max: 1000 })
    );
    assert!(p.server.send(snd, Bytes::from_static(b"ok"), &[0u8; 1000], true).is_ok());
}

/// A peer's attach of a sending link: `name` on `handle`, every optional field absent.
fn sender_attach(name: &str, handle: u32) -> amqpwire::types::Attach {
    let mut a = amqpwire::types::Attach::new(name, amqpwire::types::Handle(handle), Role::SENDER);
    a.initial_delivery_count = Some(SequenceNo(0));
    a
}

#[test]
fn an_attach_above_our_handle_max_ends_the_session() {
    let mut client = Config::new("client");
    client.session.handle_max = 3;
    let mut p = Pair::new(client, Config::new("server"), 53);
    p.client.begin().expect("begin");
    p.drive();
    let _ = events(&mut p.client);
    let a = sender_attach("h", 10);
    let mut raw = Vec::new();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Attach(a), &[], &mut raw)
        .expect("frame");
    p.client.handle_input(&raw, p.now);
    let ce = events(&mut p.client);
    assert!(
        ce.iter().any(|e| matches!(
            e,
            Event::SessionError {
                violation: Violation::HandleMaxExceeded { handle: 10, max: 3 },
                ..
            }
        )),
        "{ce:?}"
    );
}

#[test]
fn a_link_name_reused_in_the_other_role_before_detach_makes_a_second_link() {
    // Qpid Proton names links <container>-<address>: a sender and a later receiver on the
    // same address share a name, and its receiver's attach can come before the sender's
    // detach.
    let (mut p, snd, _) = link_pair(Config::new("client"), Config::new("server"), 55);
    let again =
        p.client.attach(snd.session, LinkOptions::receiver("telemetry", "q1")).expect("attach");
    p.drive();
    assert_eq!(p.client.link_state(snd), Some(LinkState::Attached));
    assert_eq!(p.client.link_state(again), Some(LinkState::Attached));
    assert!(events(&mut p.server).iter().any(|e| matches!(e, Event::LinkAttached { by_peer: true, remote, .. } if remote.role == Role::RECEIVER)));
    p.client.detach(snd, true, None).expect("detach the old one");
    p.drive();
    assert_eq!(p.client.link_state(snd), None);
    assert_eq!(p.client.link_state(again), Some(LinkState::Attached));
}

#[test]
fn the_application_can_accept_or_refuse_a_peer_attach() {
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(Config::new("client"), server, 57);
    let s = p.client.begin().expect("begin");
    let good = p.client.attach(s, LinkOptions::sender("good", "q-ok")).expect("attach");
    let bad = p.client.attach(s, LinkOptions::sender("bad", "q-forbidden")).expect("attach");
    p.drive();
    // Nothing answered yet: the server's application decides.
    assert_eq!(p.client.link_state(good), Some(LinkState::AttachSent));
    let requests: Vec<_> = events(&mut p.server)
        .into_iter()
        .filter_map(|e| match e {
            Event::AttachRequested { link, remote } => Some((link, remote.name.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 2);
    for (link, name) in requests {
        if name == "good" {
            assert_eq!(p.server.flow(link, 1, false), Err(UsageError::NotAttached));
            p.server.accept_attach(link, None).expect("accept");
            p.server.flow(link, 1, false).expect("credit");
        } else {
            let e = amqpwire::types::Error::new(
                condition::UNAUTHORIZED_ACCESS,
                "no access to q-forbidden",
            );
            p.server.refuse_attach(link, e).expect("refuse");
        }
    }
    p.drive();
    assert_eq!(p.client.link_state(good), Some(LinkState::Attached));
    assert_eq!(p.client.link_credit(good), Some(1));
    let ce = events(&mut p.client);
    let refused = ce
        .iter()
        .find_map(|e| match e {
            Event::LinkDetached { link, error: Some(err), closed: true, by_peer: true }
                if *link == bad =>
            {
                Some(err)
            }
            _ => None,
        })
        .expect("the refused link was detached with the error");
    assert_eq!(refused.condition.as_str(), condition::UNAUTHORIZED_ACCESS);
    // 2.6.3: the refusal attached with a null target before detaching.
    let attaches = attaches(&p.s2c);
    assert!(attaches.iter().any(|a| &*a.name == "bad" && a.target.is_none()));
    assert!(attaches.iter().any(|a| &*a.name == "good" && a.target.is_some()));
    assert_eq!(p.client.link_state(bad), None);
}

#[test]
fn a_link_detached_before_the_application_answered_is_attached_then_detached() {
    // The server's application has not answered the attach when the client detaches it
    // (an attach given up for a time-out), or detaches it itself: the server's detach
    // must name a handle the client knows, so its attach (with a null terminus, as a
    // refusal's) goes first, and the client's session, with its other link, lives on.
    for by_client in [true, false] {
        let mut server = Config::new("server");
        server.accept_links = false;
        let mut p = Pair::new(Config::new("client"), server, 71);
        let s = p.client.begin().expect("begin");
        let keep = p.client.attach(s, LinkOptions::sender("keep", "q1")).expect("attach");
        p.drive();
        let kept = requested(&mut p);
        p.server.accept_attach(kept, None).expect("accept");
        let late = p.client.attach(s, LinkOptions::sender("late", "q2")).expect("attach");
        p.drive();
        let asked = requested(&mut p);
        let from = p.s2c.len();
        if by_client {
            p.client.detach(late, true, None).expect("detach");
        } else {
            let e = amqpwire::types::Error::new(condition::RESOURCE_LIMIT_EXCEEDED, "busy");
            p.server.detach(asked, true, Some(e)).expect("detach");
        }
        p.drive();
        let answer: Vec<_> = sent(&p.s2c[from..]).into_iter().map(|(_, p)| p).collect();
        let [Performative::Attach(a), Performative::Detach(d)] = &answer[..] else {
            panic!("{answer:?}")
        };
        assert_eq!((&*a.name, a.target.is_none(), d.handle), ("late", true, a.handle));
        let ce = events(&mut p.client);
        assert!(
            !ce.iter()
                .any(|e| matches!(e, Event::SessionError { .. } | Event::SessionEnded { .. })),
            "{ce:?}"
        );
        assert!(
            ce.iter().any(|e| matches!(e, Event::LinkDetached { link, .. } if *link == late)),
            "{ce:?}"
        );
        assert_eq!(p.client.link_state(late), None);
        assert_eq!(p.client.session_state(s), Some(amqpwire::connection::SessionState::Mapped));
        assert_eq!(p.client.link_state(keep), Some(LinkState::Attached));
        // The server's application hears the link is gone; answering it now is refused.
        assert_eq!(p.server.link_state(asked), None);
        assert_eq!(p.server.accept_attach(asked, None), Err(UsageError::UnknownLink));
    }
}

#[test]
fn receiver_settle_mode_second_settles_after_the_sender() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 59);
    let mut opts = LinkOptions::sender("twophase", "q");
    opts.rcv_settle_mode = amqpwire::types::ReceiverSettleMode::SECOND;
    let (snd, rcv) = p.attach(opts);
    p.server.flow(rcv, 1, false).expect("credit");
    p.drive();
    let id = p.client.send(snd, Bytes::from_static(b"1"), b"payload", false).expect("send");
    p.drive();
    let accepted = Some(DeliveryState::Accepted(Accepted {}));
    // The receiver may not settle first.
    assert_eq!(
        p.server.disposition(rcv, id, None, true, accepted.clone()),
        Err(UsageError::SettleOrder)
    );
    // It states the outcome unsettled; the sender settles; then the receiver is settled too.
    p.server.disposition(rcv, id, None, false, accepted.clone()).expect("outcome");
    p.drive();
    assert!(events(&mut p.client).contains(&Event::Disposition {
        link: snd,
        delivery_id: id,
        settled: false,
        state: accepted.clone()
    }));
    assert_eq!(p.client.unsettled(snd), [id]);
    p.client.disposition(snd, id, None, true, accepted.clone()).expect("sender settles");
    p.drive();
    assert!(events(&mut p.server).contains(&Event::Disposition {
        link: rcv,
        delivery_id: id,
        settled: true,
        state: accepted
    }));
    assert!(p.client.unsettled(snd).is_empty() && p.server.unsettled(rcv).is_empty());
}

#[test]
fn a_sender_keeps_to_its_settle_mode() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 61);
    let mut opts = LinkOptions::sender("presettled-only", "q");
    opts.snd_settle_mode = amqpwire::types::SenderSettleMode::SETTLED;
    let (snd, rcv) = p.attach(opts);
    p.server.flow(rcv, 2, false).expect("credit");
    p.drive();
    assert_eq!(p.client.send(snd, Bytes::new(), b"x", false), Err(UsageError::SettleOrder));
    assert!(p.client.send(snd, Bytes::new(), b"x", true).is_ok());
}

/// A server-side receiving link with `credit`, and a function to inject raw transfers as
/// if the client had sent them.
fn receiving(credit: u32, max_message_size: Option<u64>, seed: u64) -> (Pair, LinkId) {
    let mut opts = LinkOptions::receiver("raw", "q");
    opts.max_message_size = max_message_size;
    support::raw_receiver(seed, credit, opts)
}

fn transfer(id: Option<u32>, more: bool, aborted: bool, payload: &[u8]) -> Vec<u8> {
    let mut t = amqpwire::types::Transfer::new(amqpwire::types::Handle(0));
    t.delivery_id = id.map(SequenceNo);
    t.delivery_tag = id.map(|i| Bytes::from(i.to_be_bytes().to_vec()));
    t.more = more;
    t.aborted = aborted;
    t.settled = Some(true);
    let mut b = Vec::new();
    FrameEncoder::new(u32::MAX).encode_transfer(0, &t, payload, &mut b).expect("frame");
    // encode_transfer clears `more` on a single frame; put it back for the test.
    if more {
        let mut t2 = t.clone();
        t2.more = true;
        b.clear();
        FrameEncoder::new(u32::MAX)
            .encode_amqp(0, &Performative::Transfer(t2), payload, &mut b)
            .expect("frame");
    }
    b
}

fn link_error(p: &mut Pair) -> Option<Violation> {
    events(&mut p.server).into_iter().find_map(|e| match e {
        Event::LinkError { violation, .. } => Some(violation),
        _ => None,
    })
}

#[test]
fn a_first_transfer_without_a_delivery_id_detaches_the_link() {
    let (mut p, _) = receiving(5, None, 63);
    p.server.handle_input(&transfer(None, false, false, b"x"), p.now);
    assert_eq!(link_error(&mut p), Some(Violation::MissingDeliveryId));
}

#[test]
fn a_continuation_with_another_delivery_id_detaches_the_link() {
    let (mut p, _) = receiving(5, None, 65);
    p.server.handle_input(&transfer(Some(0), true, false, b"part"), p.now);
    p.server.handle_input(&transfer(Some(9), false, false, b"rest"), p.now);
    assert_eq!(link_error(&mut p), Some(Violation::DeliveryIdChanged { expected: 0, found: 9 }));
}

#[test]
fn continuations_may_omit_the_delivery_id_and_an_abort_discards_the_delivery() {
    let (mut p, link) = receiving(5, None, 67);
    p.server.handle_input(&transfer(Some(0), true, false, b"he"), p.now);
    p.server.handle_input(&transfer(None, false, false, b"llo"), p.now);
    let ev = events(&mut p.server);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Delivery { payload, .. } if &payload[..] == b"hello")),
        "{ev:?}"
    );
    p.server.handle_input(&transfer(Some(1), true, false, b"never"), p.now);
    p.server.handle_input(&transfer(None, false, true, b""), p.now);
    let ev = events(&mut p.server);
    assert!(ev.contains(&Event::Aborted { link, delivery_id: SequenceNo(1) }), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, Event::Delivery { .. })));
}

#[test]
fn a_message_above_our_max_message_size_detaches_the_link() {
    let (mut p, _) = receiving(5, Some(4), 69);
    p.server.handle_input(&transfer(Some(0), false, false, b"too long"), p.now);
    assert_eq!(link_error(&mut p), Some(Violation::MessageSizeExceeded { size: 8, max: 4 }));
}

#[test]
fn a_one_frame_session_window_is_readvertised_after_every_transfer() {
    let mut server = Config::new("server");
    server.session.incoming_window = 1;
    let (mut p, snd, rcv) = link_pair(Config::new("client"), server, 71);
    p.server.flow(rcv, 10, false).expect("credit");
    p.drive();
    // The sender may send one frame at a time; the receiver re-advertises after each, so
    // all ten go through.
    for i in 0..10u8 {
        p.client.send(snd, Bytes::from(vec![i]), &[i], true).expect("the window reopened");
        p.drive();
    }
    assert_eq!(deliveries(&events(&mut p.server)).len(), 10);
}

#[test]
fn a_transfer_into_a_closed_session_window_ends_the_session() {
    let mut server = Config::new("server");
    server.session.incoming_window = 0;
    let (mut p, _snd, rcv) = link_pair(Config::new("client"), server, 73);
    p.server.flow(rcv, 10, false).expect("credit");
    p.drive();
    p.server.handle_input(&transfer(Some(0), false, false, b"a"), p.now);
    let ev = events(&mut p.server);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::SessionError { violation: Violation::WindowViolation, .. }
        )),
        "{ev:?}"
    );
    p.drive();
    let ended_with = events(&mut p.client).into_iter().find_map(|e| match e {
        Event::SessionEnded { error: Some(err), .. } => Some(err.condition.to_string()),
        _ => None,
    });
    assert_eq!(ended_with.as_deref(), Some(condition::WINDOW_VIOLATION));
}

#[test]
fn a_second_open_or_a_begin_on_a_used_channel_are_refused() {
    let mut b = server_open(Open::new("x"));
    b.extend(frame(0, Performative::Open(Open::new("again"))));
    let (c, _, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    // A begin answering a channel we never began on.
    let mut b = server_open(Open::new("x"));
    let begin = Begin {
        remote_channel: Some(3),
        next_outgoing_id: SequenceNo(0),
        incoming_window: 1,
        outgoing_window: 1,
        handle_max: amqpwire::types::Handle(1),
        offered_capabilities: vec![],
        desired_capabilities: vec![],
        properties: None,
    };
    b.extend(frame(0, Performative::Begin(begin)));
    let (c, out, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    // Closed with not-found, naming the channel that no session of ours uses.
    let (cond, text) = close_error(&out);
    assert_eq!(cond, condition::NOT_FOUND);
    assert!(text.contains("channel 3"), "{text}");
}

/// A link whose frames may be 4 MiB either way, with credit for 4 deliveries.
fn large_frame_link(seed: u64) -> (Pair, LinkId) {
    let mut server = Config::new("server");
    server.max_frame_size = 4 << 20;
    let mut client = Config::new("client");
    client.max_frame_size = 4 << 20;
    let (mut p, snd, rcv) = link_pair(client, server, seed);
    p.server.flow(rcv, 4, false).expect("credit");
    p.drive();
    (p, snd)
}

#[test]
fn large_bodies_travel_without_copies_through_chunks_and_owned_reads() {
    let (mut p, snd) = large_frame_link(75);
    let body = Bytes::from(vec![0xab; 1 << 20]);
    let message = amqpwire::message::Message::with_data(body.clone());
    let mut payload = amqpwire::message::Payload::default();
    message.encode_payload(&mut payload);
    p.client.send_payload(snd, Bytes::from_static(b"big"), &payload, true).expect("send");
    // The sender passes the body on as it was given.
    let mut chunks = Vec::new();
    p.client.poll_transmit_chunks(&mut chunks);
    assert!(chunks.iter().any(|c| c.as_ptr() == body.as_ptr() && c.len() == body.len()));
    // The transport gathers what it reads into one buffer and hands it over.
    let mut read = bytes::BytesMut::new();
    for c in &chunks {
        read.extend_from_slice(c);
    }
    let read = read.freeze();
    p.server.handle_input_bytes(read.clone(), p.now);
    let got = events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::Delivery { payload, .. } => Some(payload),
            _ => None,
        })
        .expect("delivered");
    // The delivery is a slice of the transport's buffer: no copy on the way in either.
    let range = read.as_ptr() as usize..read.as_ptr() as usize + read.len();
    assert!(range.contains(&(got.as_ptr() as usize)));
    let decoded = amqpwire::message::Message::decode(&got).expect("message");
    assert_eq!(decoded.body.as_data().map(|b| b.len()), Some(1 << 20));
    assert_eq!(decoded, message);
}

#[test]
fn output_as_a_payload_and_input_in_the_callers_buffer_copy_no_body() {
    let (mut p, snd) = large_frame_link(76);
    let body = Bytes::from(vec![0xcd; 300_000]);
    let big = amqpwire::message::Message::with_data(body.clone());
    let mut payload = amqpwire::message::Payload::default();
    big.encode_payload(&mut payload);
    p.client.send_payload(snd, Bytes::from_static(b"big"), &payload, true).expect("send");
    let mut out = amqpwire::message::Payload::default();
    p.client.poll_transmit_payload(&mut out);
    assert!(out.inserts.iter().any(|(_, b)| b.as_ptr() == body.as_ptr()), "body referenced");
    // More output joins what the transport has not written yet, after it.
    let small = amqpwire::message::Message::with_data(&b"small"[..]);
    let mut payload2 = amqpwire::message::Payload::default();
    small.encode_payload(&mut payload2);
    p.client.send_payload(snd, Bytes::from_static(b"s"), &payload2, true).expect("send");
    p.client.poll_transmit_payload(&mut out);
    assert_eq!(p.client.pending_transmit(), 0);
    let wire = out.to_vec();
    // Read as a runtime reads: into one buffer of its own, in two reads that cut the large
    // frame; the frame completes in place.
    let mut buf = bytes::BytesMut::with_capacity(wire.len());
    let mem = buf.as_ptr() as usize..buf.as_ptr() as usize + wire.len();
    let mut got = Vec::new();
    for part in [&wire[..100_000], &wire[100_000..]] {
        buf.extend_from_slice(part);
        p.server.handle_input_buf(&mut buf, p.now);
        got.extend(events(&mut p.server).into_iter().filter_map(|e| match e {
            Event::Delivery { payload, .. } => Some(payload),
            _ => None,
        }));
    }
    assert!(buf.is_empty());
    assert_eq!(got.len(), 2);
    assert!(mem.contains(&(got[0].as_ptr() as usize)), "the large delivery was not copied");
    assert_eq!(amqpwire::message::Message::decode(&got[0]).expect("message"), big);
    assert_eq!(amqpwire::message::Message::decode(&got[1]).expect("message"), small);
}

#[test]
fn a_delivery_in_two_frames_is_joined_whole() {
    // The peer's frames are small: a 3000-byte body goes in two or more transfers.
    let mut server = Config::new("server");
    server.max_frame_size = 2048;
    let (mut p, snd, rcv) = link_pair(Config::new("client"), server, 77);
    p.server.flow(rcv, 4, false).expect("credit");
    p.drive();
    for len in [1500usize, 3000, 9000] {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let m = amqpwire::message::Message::with_data(body);
        let mut wire = Vec::new();
        m.encode(&mut wire);
        p.client.send(snd, Bytes::from(len.to_string()), &wire, true).expect("send");
        p.drive();
        let got = events(&mut p.server)
            .into_iter()
            .find_map(|e| match e {
                Event::Delivery { payload, .. } => Some(payload),
                _ => None,
            })
            .expect("delivered");
        assert_eq!(amqpwire::message::Message::decode(&got).expect("message"), m, "{len}");
    }
}

#[test]
fn sasl_frames_out_of_place_and_foreign_headers_are_refused() {
    use amqpwire::types::{SaslFrameBody, SaslOutcome};
    let sasl_frame = |body: SaslFrameBody| {
        let mut b = Vec::new();
        FrameEncoder::new(u32::MAX).encode_sasl(&body, &mut b).expect("sasl");
        b
    };
    // A SASL outcome on a connection that never did SASL: after open, it is out of place.
    let mut b = server_open(Open::new("x"));
    b.extend(sasl_frame(SaslOutcome { code: SaslCode::OK, additional_data: None }.into()));
    let (c, out, _) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding);
    assert!(performatives(&out).contains(&"close".to_owned()));

    // An AMQP frame in the middle of the SASL exchange.
    let mut cfg = Config::new("client");
    cfg.sasl_client = Some(SaslClient::plain("alice", "secret"));
    let mut c = Connection::client(cfg);
    let mut stream = ProtocolHeader::SASL.to_bytes().to_vec();
    stream.extend(frame(0, Performative::Close(Default::default())));
    c.handle_input(&stream, Instant::now());
    assert!(c.is_ended());
    let ev = events(&mut c);
    assert!(
        matches!(
            ended(&ev),
            Some(Some(ConnectionError::Violation(Violation::UnexpectedFrameType("AMQP"))))
        ),
        "{ev:?}"
    );

    // A server asked for TLS inside AMQP answers with the plain header and names the problem.
    let mut s = Connection::server(Config::new("server"));
    s.handle_input(&ProtocolHeader::TLS.to_bytes(), Instant::now());
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    assert_eq!(out, ProtocolHeader::AMQP.to_bytes());
    let ev = events(&mut s);
    assert!(
        matches!(ended(&ev), Some(Some(ConnectionError::ProtocolMismatch(m))) if m.contains("amqps")),
        "{ev:?}"
    );
}

#[test]
fn closing_during_sasl_ends_without_an_amqp_close() {
    let mut cfg = Config::new("client");
    cfg.sasl_client = Some(SaslClient::anonymous(""));
    let mut c = Connection::client(cfg);
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(out, ProtocolHeader::SASL.to_bytes());
    c.close(None).expect("close");
    assert!(c.is_ended());
    out.clear();
    c.poll_transmit(&mut out);
    assert!(out.is_empty(), "no AMQP close can be sent before the AMQP header");
    assert_eq!(ended(&events(&mut c)), Some(&None));
}

#[test]
fn a_peer_that_closes_inside_its_protocol_header_is_named() {
    // What a TLS server sends a plain client before hanging up: a 7-byte alert.
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46];
    let (mut c, _, _) = client_facing(&alert);
    c.handle_eof(Instant::now());
    let ev = events(&mut c);
    let Some(Some(ConnectionError::ProtocolMismatch(why))) = ended(&ev) else {
        panic!("expected a protocol mismatch: {ev:?}")
    };
    assert!(why.contains("TLS alert") && why.contains("7 bytes"), "{why}");
    // Half an AMQP header is named too; nothing at all is a plain early close.
    let (mut c, _, _) = client_facing(b"AMQ");
    c.handle_eof(Instant::now());
    let ev = events(&mut c);
    assert!(
        matches!(ended(&ev), Some(Some(ConnectionError::ProtocolMismatch(w))) if w.contains("AMQP header"))
    );
    let (mut c, _, _) = client_facing(b"");
    c.handle_eof(Instant::now());
    assert_eq!(ended(&events(&mut c)), Some(&Some(ConnectionError::TransportClosed)));
}

#[test]
fn the_open_carries_the_configured_locales() {
    let mut cfg = Config::new("page");
    cfg.outgoing_locales = vec!["en-US".into()];
    cfg.incoming_locales = vec!["de-DE".into(), "en-US".into()];
    let mut client = Connection::client(cfg);
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    let open = Inspector::inspect_all(&out, DecodeOptions::STRICT)
        .into_iter()
        .find_map(|r| match r {
            Record::Frame(f) => match f.frame {
                Ok(amqpwire::frame::Frame {
                    body: FrameBody::Amqp { performative: Performative::Open(o), .. },
                    ..
                }) => Some(o),
                _ => None,
            },
            _ => None,
        })
        .expect("the client sends its open at once");
    let names =
        |v: &[amqpwire::codec::Symbol]| v.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&open.outgoing_locales), ["en-US"]);
    assert_eq!(names(&open.incoming_locales), ["de-DE", "en-US"]);
}

/// 2.7.6: a disposition's `first` and `last` are delivery-numbers, serial numbers that wrap
/// (RFC 1982). A range from 4294967295 to 0 covers two deliveries, a `last` left out
/// covers `first` alone, and nothing outside either is settled. (rhea walks the range as
/// integers: it settles nothing of a wrapped range and spends seconds on 0..=4294967295;
/// docs/fuzz-peer.md.)
#[test]
fn a_disposition_range_that_wraps_settles_exactly_the_deliveries_it_covers() {
    use amqpwire::types::{Accepted, DeliveryState, Disposition, Handle, Role, Transfer};
    let now = Instant::now();
    let mut c = Connection::client(Config::new("client"));
    let session = c.begin().expect("begin");
    let rcv = c.attach(session, LinkOptions::receiver("r", "q")).expect("attach");
    let enc = FrameEncoder::new(u32::MAX);
    let amqp = |p: Performative, payload: &[u8], out: &mut Vec<u8>| {
        enc.encode_amqp(0, &p, payload, out).expect("frame");
    };
    // The peer: open, a begin whose deliveries start four before the wrap, its attach.
    let mut b = server_open(Open::new("x"));
    let begin = Begin {
        remote_channel: Some(0),
        next_outgoing_id: SequenceNo(u32::MAX - 1),
        incoming_window: 100,
        outgoing_window: 100,
        handle_max: Handle(u32::MAX),
        offered_capabilities: vec![],
        desired_capabilities: vec![],
        properties: None,
    };
    amqp(Performative::Begin(begin), &[], &mut b);
    amqp(Performative::Attach(sender_attach("r", 7)), &[], &mut b);
    c.handle_input(&b, now);
    assert_eq!(c.link_state(rcv), Some(LinkState::Attached));
    c.flow(rcv, 10, false).expect("credit");
    // Four unsettled deliveries: 4294967294, 4294967295, 0, 1.
    let ids = [u32::MAX - 1, u32::MAX, 0, 1];
    let mut b = Vec::new();
    for (n, id) in ids.into_iter().enumerate() {
        let mut t = Transfer::new(Handle(7));
        t.delivery_id = Some(SequenceNo(id));
        t.delivery_tag = Some(bytes::Bytes::from(vec![n as u8]));
        t.message_format = Some(0);
        t.settled = Some(false);
        enc.encode_transfer(0, &t, b"m", &mut b).expect("transfer");
    }
    c.handle_input(&b, now);
    let got: Vec<u32> = events(&mut c)
        .iter()
        .filter_map(|e| match e {
            Event::Delivery { delivery_id, .. } => Some(delivery_id.0),
            _ => None,
        })
        .collect();
    assert_eq!(got, ids);
    let accepted = Some(DeliveryState::Accepted(Accepted {}));
    let settled = |c: &mut Connection, first: u32, last: Option<u32>| -> Vec<u32> {
        let d = Disposition {
            role: Role::SENDER,
            first: SequenceNo(first),
            last: last.map(SequenceNo),
            settled: true,
            state: accepted.clone(),
            batchable: false,
        };
        let mut b = Vec::new();
        amqp(Performative::Disposition(d), &[], &mut b);
        c.handle_input(&b, now);
        let ev = events(c);
        ev.iter()
            .map(|e| match e {
                Event::Disposition { link, delivery_id, settled: true, state } => {
                    assert_eq!((*link, state), (rcv, &accepted));
                    delivery_id.0
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(settled(&mut c, u32::MAX, Some(0)), [u32::MAX, 0]);
    assert_eq!(settled(&mut c, 1, None), [1]);
    // The whole space, twice over the wrap: only the one still unsettled is left.
    assert_eq!(settled(&mut c, 2, Some(1)), [u32::MAX - 1]);
    assert_eq!(settled(&mut c, 0, Some(u32::MAX)), Vec::<u32>::new());
    assert_eq!(c.state(), ConnectionState::Opened);
}

#[test]
fn an_ended_links_id_never_names_the_link_given_its_handle_after_it() {
    // A handle an ended link freed goes to the next link attached on the session; the
    // ended link's id must not reach that link (a send, a flow or a detach through a
    // stale id would act on a link its caller never attached).
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 131);
    let (first, first_there) = p.attach(LinkOptions::sender("first", "q1"));
    p.server.flow(first_there, 10, false).expect("credit");
    p.drive();
    p.client.detach(first, true, None).expect("detach");
    p.drive();
    let _ = events(&mut p.client);
    let _ = events(&mut p.server);
    assert_eq!(p.client.link_state(first), None, "the first link has ended");

    let second =
        p.client.attach(first.session, LinkOptions::sender("second", "q2")).expect("attach");
    p.drive();
    let second_there = events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::LinkAttached { link, .. } => Some(link),
            _ => None,
        })
        .expect("the server saw the second attach");
    assert_eq!(
        (second.session, second.handle),
        (first.session, first.handle),
        "the handle is reused"
    );
    assert_eq!(
        (second_there.session, second_there.handle),
        (first_there.session, first_there.handle)
    );
    assert_ne!(second, first, "but the id is new");
    assert_ne!(second_there, first_there);
    p.server.flow(second_there, 5, false).expect("credit for the second link");
    p.drive();
    let _ = events(&mut p.client);

    // Every command through the stale ids is refused, and the new link is untouched.
    let stale = p.client.send(first, Bytes::from_static(b"t"), b"x", false);
    assert_eq!(stale.err(), Some(UsageError::UnknownLink));
    assert_eq!(p.client.link_state(first), None);
    assert_eq!(p.client.link_credit(first), None);
    assert_eq!(p.client.detach(first, true, None), Err(UsageError::UnknownLink));
    assert_eq!(p.server.flow(first_there, 1, false), Err(UsageError::UnknownLink));
    assert_eq!(p.client.link_state(second), Some(LinkState::Attached));
    assert_eq!(p.client.link_credit(second), Some(5));
    p.drive();
    assert!(
        !events(&mut p.server)
            .iter()
            .any(|e| matches!(e, Event::Delivery { .. } | Event::LinkDetached { .. })),
        "nothing reached the second link through the first's id"
    );

    // Through its own id, the second link works.
    p.client.send(second, Bytes::from_static(b"t"), b"x", false).expect("send on the second");
    p.drive();
    let delivered = events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::Delivery { link, .. } => Some(link),
            _ => None,
        })
        .expect("the delivery");
    assert_eq!(delivered, second_there);
}

#[test]
fn an_ended_sessions_id_never_names_the_session_given_its_channel_after_it() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 137);
    let first = p.client.begin().expect("begin");
    p.drive();
    p.client.end_session(first, None).expect("end");
    p.drive();
    let _ = events(&mut p.client);
    assert_eq!(p.client.session_state(first), None, "the first session has ended");
    assert_eq!(p.client.session_on(first.0), None);

    let second = p.client.begin().expect("begin again");
    p.drive();
    assert_eq!(second.0, first.0, "the channel is reused");
    assert_ne!(second, first, "but the id is new");
    assert_eq!(p.client.session_on(second.0), Some(second));
    let ended = p.client.end_session(first, None);
    assert_eq!(ended, Err(UsageError::UnknownSession));
    let attached = p.client.attach(first, LinkOptions::sender("s", "q"));
    assert_eq!(attached.err(), Some(UsageError::UnknownSession));
    assert_eq!(p.client.session_state(first), None);
    assert_eq!(p.client.session_windows(first), None);
    assert_eq!(
        p.client.session_state(second),
        Some(amqpwire::connection::SessionState::Mapped),
        "the second session is untouched"
    );
    let link =
        p.client.attach(second, LinkOptions::sender("s", "q")).expect("attach on the second");
    p.drive();
    assert_eq!(p.client.link_state(link), Some(LinkState::Attached));
}

#[test]
fn after_our_end_no_command_sends_a_frame_on_the_session() {
    // The peer unmaps the channel when our end arrives: a detach, flow, disposition or
    // transfer written after it would be on an unknown channel, an error of the whole
    // connection. Each is refused, and nothing follows the end on the wire.
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 133);
    let (sender, sender_there) = p.attach(LinkOptions::sender("out", "q"));
    p.server.flow(sender_there, 10, false).expect("credit");
    p.drive();
    let _ = events(&mut p.client);
    let id = p.client.send(sender, Bytes::from_static(b"t"), b"x", false).expect("send");
    p.client.end_session(sender.session, None).expect("end");
    let mut out = Vec::new();
    p.client.poll_transmit(&mut out);
    let written = out.len();
    assert!(written > 0, "the transfer and the end are written");
    let ending = Err(UsageError::SessionEnding);
    assert_eq!(p.client.detach(sender, true, None), ending);
    assert_eq!(p.client.send(sender, Bytes::from_static(b"u"), b"y", false).map(|_| ()), ending);
    assert_eq!(p.client.request_flow(sender), ending);
    assert_eq!(p.client.disposition(sender, id, None, true, None), ending);
    let mut more = Vec::new();
    p.client.poll_transmit(&mut more);
    assert!(more.is_empty(), "nothing after the end: {more:02x?}");
}

// ----- limits: the peer's time, the engine's memory, values at the edges -----

/// A connection given the time once, then `d` later.
fn silent_for(mut c: Connection, d: Duration) -> (Connection, Vec<Event>) {
    let t0 = Instant::now();
    c.handle_timeout(t0);
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    c.handle_timeout(t0 + d);
    let ev = events(&mut c);
    (c, ev)
}

#[test]
fn a_peer_that_never_opens_is_let_go_after_the_open_time_out() {
    let limit = Config::new("c").open_timeout.expect("a default open time-out");
    // A client whose server sends nothing; a server whose client sends nothing, or only
    // its protocol header.
    let client = Connection::client(Config::new("client"));
    let (c, ev) = silent_for(client, limit - Duration::from_millis(1));
    assert!(!c.is_ended(), "ended early: {ev:?}");
    let (c, ev) = silent_for(Connection::client(Config::new("client")), limit);
    assert!(c.is_ended());
    assert_eq!(ended(&ev), Some(&Some(ConnectionError::OpenTimeout(limit))));
    assert_eq!(c.error(), Some(&ConnectionError::OpenTimeout(limit)));
    let mut server = Connection::server(Config::new("server"));
    let t0 = Instant::now();
    server.handle_input(&ProtocolHeader::AMQP.to_bytes(), t0);
    assert_eq!(server.poll_timeout(), Some(t0 + limit), "timed from the first time given");
    server.handle_timeout(t0 + limit);
    assert!(server.is_ended());
    // A client that stops in SASL, its mechanisms received and no sasl-init sent.
    let mut server = Connection::server(sasl_server());
    server.handle_input(&ProtocolHeader::SASL.to_bytes(), t0);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(out.starts_with(&ProtocolHeader::SASL.to_bytes()), "{out:02x?}");
    server.handle_timeout(t0 + limit);
    assert_eq!(ended(&events(&mut server)), Some(&Some(ConnectionError::OpenTimeout(limit))));
    // Once the peer has opened, no such limit applies.
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 201);
    p.drive();
    p.advance(limit * 3);
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert_eq!(p.server.state(), ConnectionState::Opened);
    // None: the caller times the handshake.
    let mut cfg = Config::new("client");
    cfg.open_timeout = None;
    let (c, ev) = silent_for(Connection::client(cfg), Duration::from_secs(86_400));
    assert!(!c.is_ended() && ev.is_empty() && c.poll_timeout().is_none(), "{ev:?}");
}

#[test]
fn a_close_made_before_any_time_is_timed_from_the_first_time_given() {
    let mut cfg = Config::new("client");
    cfg.open_timeout = None;
    let mut c = Connection::client(cfg);
    c.close(None).expect("close");
    assert_eq!(c.poll_timeout(), None, "no time known yet");
    let t0 = Instant::now();
    c.handle_timeout(t0);
    let close = Config::new("c").close_timeout;
    assert_eq!(c.poll_timeout(), Some(t0 + close));
    c.handle_timeout(t0 + close);
    assert_eq!(ended(&events(&mut c)), Some(&Some(ConnectionError::CloseTimeout)));
}

/// The attaches in a byte stream.
fn attaches(stream: &[u8]) -> Vec<amqpwire::types::Attach> {
    sent(stream)
        .into_iter()
        .filter_map(|(_, p)| match p {
            Performative::Attach(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// The first open in a byte stream (the test fails without one).
fn first_open(stream: &[u8]) -> Open {
    sent(stream)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Open(o) => Some(o),
            _ => None,
        })
        .expect("an open")
}

#[test]
fn time_outs_too_long_for_the_clock_mean_never_and_do_not_panic() {
    let mut client = Config::new("client");
    client.close_timeout = Duration::MAX;
    client.open_timeout = Some(Duration::MAX);
    client.idle_time_out = Some(Duration::MAX);
    let mut server = Config::new("server");
    server.idle_time_out = Some(Duration::MAX);
    let mut p = Pair::new(client, server, 203);
    p.drive();
    assert_eq!(p.client.state(), ConnectionState::Opened);
    // Announced as the most open can say.
    let open = first_open(&p.c2s);
    assert_eq!(open.idle_time_out, Some(u32::MAX));
    p.cut_s2c = true;
    p.client.close(None).expect("close");
    // (The idle time-out, clamped to u32::MAX ms, is enforced after about 99 days.)
    p.advance(Duration::from_secs(86_400 * 90));
    let ev = events(&mut p.client);
    assert_eq!(p.client.state(), ConnectionState::CloseSent, "waits for ever, as asked: {ev:?}");
}

#[test]
fn an_idle_time_out_is_announced_in_whole_milliseconds_and_zero_is_none() {
    for (given, announced) in [
        (Duration::ZERO, None),
        (Duration::from_micros(500), Some(1)),
        (Duration::from_micros(1500), Some(2)),
        (Duration::from_millis(30_000), Some(30_000)),
    ] {
        let mut client = Config::new("client");
        client.idle_time_out = Some(given);
        let mut p = Pair::new(client, Config::new("server"), 205);
        p.drive();
        let open = first_open(&p.c2s);
        assert_eq!(open.idle_time_out, announced, "{given:?}");
        if announced.is_none() {
            // Not enforced either: a silent but open peer is kept.
            p.cut_s2c = true;
            p.advance(Duration::from_secs(3600));
            assert_eq!(p.client.state(), ConnectionState::Opened, "{given:?}");
        }
    }
}

#[test]
fn a_violation_is_told_at_once_and_a_framing_error_ends_the_connection_at_once() {
    // A frame header claiming nearly 4 GiB after the open: the stream cannot be split any
    // more, so the peer's close could never be read.
    let mut b = server_open(Open::new("x"));
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0x00, 2, 0, 0, 0]);
    let (c, out, ev) = client_facing(&b);
    let violation = ev
        .iter()
        .find_map(|e| match e {
            Event::ConnectionError { violation } => Some(violation.clone()),
            _ => None,
        })
        .expect("a ConnectionError event");
    assert!(matches!(violation, Violation::Framing(_)), "{violation:?}");
    assert!(c.is_ended(), "ended at once");
    assert_eq!(ended(&ev), Some(&Some(ConnectionError::Violation(violation.clone()))));
    assert_eq!(c.error(), Some(&ConnectionError::Violation(violation)));
    // The chain goes down to the framing error itself.
    let e = c.error().expect("an error");
    let framing = std::error::Error::source(e).and_then(std::error::Error::source);
    assert!(
        framing.is_some_and(|f| f.to_string().contains("exceeds max-frame-size")),
        "{framing:?}"
    );
    assert_eq!(close_error(&out).0, condition::FRAMING_ERROR, "the close still goes out");
    // A body that does not decode: told at once, closed, and the peer's close awaited.
    let mut b = server_open(Open::new("x"));
    b.extend_from_slice(&[0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x13, 0xee]);
    let (c, _, ev) = client_facing(&b);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::ConnectionError { violation: Violation::Decode(_) })));
    assert!(ended(&ev).is_none());
    assert_eq!(c.state(), ConnectionState::Discarding);
    assert!(matches!(c.error(), Some(ConnectionError::Violation(Violation::Decode(_)))));
}

#[test]
fn commands_on_an_ending_link_or_session_say_what_was_sent() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 207);
    let (sender, _) = p.attach(LinkOptions::sender("out", "q"));
    p.client.detach(sender, true, None).expect("detach");
    assert_eq!(p.client.detach(sender, true, None), Err(UsageError::DetachSent));
    assert!(UsageError::DetachSent.to_string().contains("detach"));
    p.client.end_session(sender.session, None).expect("end");
    assert_eq!(p.client.end_session(sender.session, None), Err(UsageError::SessionEnding));
    assert_eq!(
        p.client.attach(sender.session, LinkOptions::sender("late", "q")),
        Err(UsageError::SessionEnding)
    );
}

#[test]
fn links_that_ask_for_a_dynamic_node_are_refused_when_the_engine_answers() {
    let mut p = Pair::new(Config::new("client"), Config::new("server"), 209);
    let s = p.client.begin().expect("begin");
    // A receiver asking the server for a dynamic source (a temporary queue).
    let mut dynamic = LinkOptions::receiver("reply", "");
    dynamic.source = Some(amqpwire::types::AttachSource::Source(amqpwire::types::Source {
        dynamic: true,
        ..Default::default()
    }));
    let reply = p.client.attach(s, dynamic).expect("attach");
    // A sender asking for a dynamic target.
    let mut dynamic = LinkOptions::sender("drop", "");
    dynamic.target = Some(amqpwire::types::AttachTarget::Target(amqpwire::types::Target {
        dynamic: true,
        ..Default::default()
    }));
    let drop = p.client.attach(s, dynamic).expect("attach");
    // An ordinary link is answered as before.
    let plain = p.client.attach(s, LinkOptions::sender("plain", "q")).expect("attach");
    p.drive();
    let ce = events(&mut p.client);
    for link in [reply, drop] {
        let error = ce
            .iter()
            .find_map(|e| match e {
                Event::LinkDetached { link: l, error: Some(e), closed: true, by_peer: true }
                    if *l == link =>
                {
                    Some(e)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{link:?} was not refused: {ce:?}"));
        assert_eq!(error.condition.as_str(), condition::NOT_IMPLEMENTED);
    }
    assert_eq!(p.client.link_state(plain), Some(LinkState::Attached));
    // The refusal attached with a null terminus on its side (2.6.3), naming no node.
    let answers = attaches(&p.s2c);
    assert!(answers.iter().any(|a| &*a.name == "reply" && a.source.is_none()), "{answers:?}");
    assert!(answers.iter().any(|a| &*a.name == "drop" && a.target.is_none()), "{answers:?}");
    // The server's application heard of neither.
    let se = events(&mut p.server);
    let attached: Vec<_> = se
        .iter()
        .filter_map(|e| match e {
            Event::LinkAttached { remote, .. } => Some(remote.name.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(attached, ["plain"]);
}

/// A hand-driven client's bytes to a server: header, open, a session, and sending links
/// on handles 0.. named after them.
fn hand_client(links: u32) -> Vec<u8> {
    let mut b = ProtocolHeader::AMQP.to_bytes().to_vec();
    let enc = FrameEncoder::new(u32::MAX);
    enc.encode_amqp(0, &Performative::Open(Open::new("hand")), &[], &mut b).expect("open");
    let begin = Begin::new(SequenceNo(0), 100, 100);
    enc.encode_amqp(0, &Performative::Begin(begin), &[], &mut b).expect("begin");
    for h in 0..links {
        let mut a = sender_attach(&format!("l{h}"), h);
        a.target =
            Some(amqpwire::types::AttachTarget::Target(amqpwire::types::Target::with_address("q")));
        enc.encode_amqp(0, &Performative::Attach(a), &[], &mut b).expect("attach");
    }
    b
}

fn hand_transfer(handle: u32, id: u32, payload: &[u8], more: bool) -> Vec<u8> {
    let mut t = amqpwire::types::Transfer::new(amqpwire::types::Handle(handle));
    t.delivery_id = Some(SequenceNo(id));
    t.delivery_tag = Some(Bytes::from(id.to_be_bytes().to_vec()));
    t.more = more;
    let mut b = Vec::new();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Transfer(t), payload, &mut b)
        .expect("transfer");
    b
}

#[test]
fn partial_deliveries_of_all_links_together_are_held_within_a_limit() {
    let mut cfg = Config::new("server");
    cfg.max_incoming_held = 1000;
    let mut server = Connection::server(cfg);
    let now = Instant::now();
    server.handle_input(&hand_client(2), now);
    let links: Vec<LinkId> = events(&mut server)
        .into_iter()
        .filter_map(|e| match e {
            Event::LinkAttached { link, .. } => Some(link),
            _ => None,
        })
        .collect();
    assert_eq!(links.len(), 2);
    for l in &links {
        server.flow(*l, 10, false).expect("credit");
    }
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    // One delivery after another, each under the limit: what a finished one held is
    // given back, so the second is taken as the first was.
    for id in 0..2 {
        server.handle_input(&hand_transfer(0, id, &[b'a'; 600], true), now);
        server.handle_input(&hand_transfer(0, id, &[b'b'; 300], false), now);
        let ev = events(&mut server);
        assert!(
            ev.iter().any(|e| matches!(e, Event::Delivery { payload, .. } if payload.len() == 900)),
            "delivery {id}: {ev:?}"
        );
    }
    // Two at once, on two links: the one that goes over the limit is detached.
    server.handle_input(&hand_transfer(0, 2, &[b'c'; 600], true), now);
    server.handle_input(&hand_transfer(1, 3, &[b'd'; 600], true), now);
    let ev = events(&mut server);
    let violation = ev
        .iter()
        .find_map(|e| match e {
            Event::LinkError { link, violation } if *link == links[1] => Some(violation.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("link 1 was not detached: {ev:?}"));
    assert_eq!(violation, Violation::IncomingHeldExceeded { held: 1200, max: 1000 });
    assert_eq!(violation.condition(), condition::RESOURCE_LIMIT_EXCEEDED);
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(sent(&out).iter().any(|(_, p)| matches!(p, Performative::Detach(d)
        if d.handle.0 == 1 && d.error.as_ref().is_some_and(|e| e.condition.as_str() == condition::RESOURCE_LIMIT_EXCEEDED))));
    // The other link's delivery goes on, and what the dropped one held was given back:
    // 600 + 350 fits the limit only without link 1's 600.
    server.handle_input(&hand_transfer(0, 2, &[b'e'; 350], true), now);
    server.handle_input(&hand_transfer(0, 2, &[b'f'; 10], false), now);
    let ev = events(&mut server);
    assert!(!ev.iter().any(|e| matches!(e, Event::LinkError { .. })), "{ev:?}");
    assert!(
        ev.iter().any(|e| matches!(e, Event::Delivery { payload, .. } if payload.len() == 960)),
        "{ev:?}"
    );
}

#[test]
fn the_first_violation_stays_the_reason_whatever_comes_after_it() {
    // A begin before any open, then silence: the open time-out (shorter than the close
    // time-out) does not replace the violation as the reason.
    let mut cfg = Config::new("server");
    cfg.open_timeout = Some(Duration::from_secs(1));
    let mut server = Connection::server(cfg);
    let t0 = Instant::now();
    let mut b = ProtocolHeader::AMQP.to_bytes().to_vec();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Begin(Begin::new(SequenceNo(0), 10, 10)), &[], &mut b)
        .expect("begin");
    server.handle_input(&b, t0);
    server.handle_timeout(t0 + Duration::from_secs(2));
    assert!(!server.is_ended(), "the close time-out governs now");
    server.handle_timeout(t0 + Duration::from_secs(11));
    let ev = events(&mut server);
    let told: Vec<_> = ev.iter().filter(|e| matches!(e, Event::ConnectionError { .. })).collect();
    assert_eq!(told.len(), 1, "{ev:?}");
    assert!(
        matches!(
            ended(&ev),
            Some(Some(ConnectionError::Violation(Violation::FirstFrameNotOpen(_))))
        ),
        "{ev:?}"
    );
    // Closing for a decode error, then bytes that cannot be split into frames: not told
    // again, and the connection ends with the first reason.
    let mut b = server_open(Open::new("x"));
    b.extend_from_slice(&[0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x13, 0xee]);
    let (mut c, _, ev) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding, "{ev:?}");
    c.handle_input(&[0xff, 0xff, 0xff, 0x00, 2, 0, 0, 0], Instant::now());
    let ev = events(&mut c);
    assert!(!ev.iter().any(|e| matches!(e, Event::ConnectionError { .. })), "{ev:?}");
    assert!(
        matches!(ended(&ev), Some(Some(ConnectionError::Violation(Violation::Decode(_))))),
        "{ev:?}"
    );
}

#[test]
fn a_close_whose_reason_quotes_a_long_value_is_cut_to_fit_and_ends_once() {
    // The peer accepts frames of 512 bytes and sends a performative whose descriptor is a
    // 600-byte symbol: our close quotes it, cut to fit.
    let mut open = Open::new("x");
    open.max_frame_size = 512;
    let mut b = server_open(open);
    let mut body = vec![0x00, 0xb3];
    body.extend_from_slice(&600u32.to_be_bytes());
    body.extend_from_slice(&[b'a'; 600]);
    body.push(0x45);
    b.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(&[2, 0, 0, 0]);
    b.extend_from_slice(&body);
    let (mut c, out, ev) = client_facing(&b);
    assert_eq!(c.state(), ConnectionState::Discarding, "{ev:?}");
    let (condition, text) = close_error(&out);
    assert_eq!(condition, condition::DECODE_ERROR);
    assert!(text.ends_with('…') && text.len() < 512, "{text}");
    // The peer's close ends it, once.
    let mut more = Vec::new();
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Close(Default::default()), &[], &mut more)
        .expect("close");
    c.handle_input(&more, Instant::now());
    c.handle_eof(Instant::now());
    c.handle_timeout(Instant::now() + Duration::from_secs(60));
    let ev = events(&mut c);
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::Ended { .. })).count(), 1, "{ev:?}");
}

#[test]
fn a_close_whose_error_cannot_be_cut_enough_drops_its_description_then_its_info() {
    // Before the peer's open its limit is 512 bytes. A two-byte description halved
    // becomes "a…" (longer than "ab") and 600 bytes of info never fit: the close goes out
    // with the condition alone, at once.
    let mut info = amqpwire::types::Fields::new();
    info.insert("detail", "x".repeat(600).as_str());
    for description in ["ab", "é", "a much longer description of what went wrong"] {
        let mut c = Connection::client(Config::new("client"));
        let mut out = Vec::new();
        c.poll_transmit(&mut out);
        let mut error = amqpwire::types::Error::new(condition::INTERNAL_ERROR, description);
        error.info = Some(info.clone());
        c.close(Some(error)).expect("close");
        out.clear();
        c.poll_transmit(&mut out);
        let close = sent(&out)
            .into_iter()
            .find_map(|(_, p)| match p {
                Performative::Close(c) => Some(c),
                _ => None,
            })
            .expect("a close");
        let e = close.error.expect("its error");
        assert_eq!(e.condition.to_string(), condition::INTERNAL_ERROR);
        assert_eq!((e.description, e.info), (None, None), "{description}");
        assert!(out.len() <= 512 + 8, "{}", out.len());
    }
    // Info that fits keeps its place; a long description is cut rather than dropped.
    let mut c = Connection::client(Config::new("client"));
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    let mut small = amqpwire::types::Fields::new();
    small.insert("k", "v");
    let mut error = amqpwire::types::Error::new(condition::INTERNAL_ERROR, "d".repeat(900));
    error.info = Some(small.clone());
    c.close(Some(error)).expect("close");
    out.clear();
    c.poll_transmit(&mut out);
    let e = sent(&out)
        .into_iter()
        .find_map(|(_, p)| match p {
            Performative::Close(c) => c.error,
            _ => None,
        })
        .expect("a close with an error");
    assert_eq!(e.info, Some(small));
    let text = e.description.expect("a description").to_string();
    assert!(text.starts_with("ddd") && text.ends_with('…') && text.len() < 512, "{text}");
}

#[test]
fn a_transfer_that_crosses_a_refusal_is_dropped_quietly() {
    // A sender asks for a dynamic target and sends at once, before the refusal reaches
    // it: one refusal goes back (attach and detach), and nothing is told of a link the
    // application never saw.
    let mut b = hand_client(0);
    let mut a = sender_attach("eager", 0);
    a.target = Some(amqpwire::types::AttachTarget::Target(amqpwire::types::Target {
        dynamic: true,
        ..Default::default()
    }));
    FrameEncoder::new(u32::MAX)
        .encode_amqp(0, &Performative::Attach(a), &[], &mut b)
        .expect("attach");
    b.extend_from_slice(&hand_transfer(0, 0, b"early", false));
    let mut server = Connection::server(Config::new("server"));
    server.handle_input(&b, Instant::now());
    let ev = events(&mut server);
    assert!(
        !ev.iter().any(|e| matches!(
            e,
            Event::LinkError { .. } | Event::LinkAttached { .. } | Event::Delivery { .. }
        )),
        "{ev:?}"
    );
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    let detaches =
        sent(&out).into_iter().filter(|(_, p)| matches!(p, Performative::Detach(_))).count();
    assert_eq!(detaches, 1);
}

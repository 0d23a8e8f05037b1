//! Packet captures: the pcapng writer, the pcap/pcapng reader, TCP reassembly, WebSocket
//! unframing and the capture decoder, on the real AMQP exchanges of tests/fixtures/wire/,
//! on captures broken by hand, and against tshark's own AMQP dissector.

#[path = "support/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqpwire::capture::net::{parse_tcp, TcpSegment};
use amqpwire::capture::tcp::{Limits, Reassembler, TcpEvent};
use amqpwire::capture::websocket::Opcode;
use amqpwire::capture::{
    Block, CaptureDecoder, CaptureEvent, CaptureReader, CaptureStream, ConnectionInfo, Direction,
    EventKind, Format, PcapWriter, Transport, WriterOptions, WsEvent,
};
use amqpwire::codec::DecodeOptions;
use amqpwire::frame::FrameBody;
use amqpwire::inspect::{Inspector, Record};

const C2S: Direction = Direction::ClientToServer;

const S2C: Direction = Direction::ServerToClient;

fn fixture(name: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let read = |suffix: &str| {
        let p = dir.join(format!("{name}.{suffix}.bin"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    (read("c2s"), read("s2c"))
}

fn fixture_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".c2s.bin").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 20, "only {} fixtures", names.len());
    names
}

/// The protocol headers and frames of a stream, as byte ranges.
fn items(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for r in Inspector::inspect_all(stream, DecodeOptions::LENIENT) {
        let (at, len) = match &r {
            Record::Header { offset, .. } => (*offset as usize, 8),
            Record::Frame(f) => (f.offset as usize, f.raw.len()),
            other => panic!("fixture does not decode: {other:?}"),
        };
        out.push(&stream[at..at + len]);
    }
    assert_eq!(out.iter().map(|i| i.len()).sum::<usize>(), stream.len());
    out
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000) + Duration::from_millis(ms)
}

/// Writes one connection per exchange: the items of both directions alternately, one
/// write per item, 1 ms apart; then the FIN exchange.
fn write_exchanges(opts: WriterOptions, exchanges: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), opts).expect("writer");
    let mut t = 0;
    for (n, (c2s, s2c)) in exchanges.iter().enumerate() {
        let conn = n as u64 + 1;
        let info = ConnectionInfo {
            transport: Some("tls".into()),
            url: Some(format!("amqps://broker.example:5671/conn{conn}")),
            client: Some("10.1.2.3:50000".parse().expect("addr")),
            server: Some("10.9.8.7:5671".parse().expect("addr")),
            note: None,
        };
        w.open(conn, &info, at(t)).expect("open");
        let (a, b) = (items(c2s), items(s2c));
        for i in 0..a.len().max(b.len()) {
            for (dir, side) in [(C2S, &a), (S2C, &b)] {
                if let Some(item) = side.get(i) {
                    t += 1;
                    w.write(conn, dir, item, at(t)).expect("write");
                }
            }
        }
        t += 1;
        w.close(conn, C2S, at(t)).expect("close");
    }
    w.flush().expect("flush");
    w.into_inner()
}

/// What the reassembler makes of a capture: per connection, both streams, the gaps
/// (direction, offset, length) and the ends seen.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flow {
    streams: [Vec<u8>; 2],
    gaps: Vec<(Direction, u64, u64)>,
    fins: Vec<Direction>,
    resets: Vec<Direction>,
    closed: bool,
}

fn reassemble_with(file: &[u8], limits: Limits) -> BTreeMap<u64, Flow> {
    let mut r = Reassembler::with_limits(limits);
    let mut flows: BTreeMap<u64, Flow> = BTreeMap::new();
    let take = |r: &mut Reassembler, flows: &mut BTreeMap<u64, Flow>| {
        while let Some(ev) = r.next_event() {
            match ev {
                TcpEvent::Open { flow, .. } => {
                    flows.insert(flow, Flow::default());
                }
                TcpEvent::Data { flow, dir, offset, data } => {
                    let s = &mut flows.get_mut(&flow).expect("open first").streams[dir.index()];
                    assert!(offset >= s.len() as u64, "offsets only grow");
                    s.extend_from_slice(&data);
                }
                TcpEvent::Gap { flow, dir, offset, len, .. } => {
                    flows.get_mut(&flow).expect("flow").gaps.push((dir, offset, len))
                }
                TcpEvent::Fin { flow, dir } => flows.get_mut(&flow).expect("flow").fins.push(dir),
                TcpEvent::Reset { flow, dir } => {
                    flows.get_mut(&flow).expect("flow").resets.push(dir)
                }
                TcpEvent::Closed { flow } => flows.get_mut(&flow).expect("flow").closed = true,
            }
        }
    };
    for p in CaptureReader::new(file).expect("a capture").packets() {
        let p = p.expect("packet");
        if let Some(seg) = parse_tcp(p.link_type, p.data).expect("tcp") {
            r.push(&seg);
        }
        take(&mut r, &mut flows);
    }
    r.finish();
    take(&mut r, &mut flows);
    flows
}

fn reassemble(file: &[u8]) -> BTreeMap<u64, Flow> {
    reassemble_with(file, Limits::default())
}

// ---------------------------------------------------------------------------------------
// The writer, read back
#[test]
fn every_fixture_exchange_survives_the_writer_and_reassembly_byte_for_byte() {
    for name in fixture_names() {
        let (c2s, s2c) = fixture(&name);
        // A small MSS splits frames across packets; the default does not.
        for mss in [65000, 1000, 7] {
            if mss == 7 && c2s.len() > 5000 {
                continue;
            }
            let opts = WriterOptions { mss, ..WriterOptions::default() };
            let file = write_exchanges(opts, &[(&c2s, &s2c)]);
            let flows = reassemble(&file);
            assert_eq!(flows.len(), 1, "{name}");
            let f = &flows[&0];
            assert!(f.streams[0] == c2s, "{name} mss {mss}: client stream differs");
            assert!(f.streams[1] == s2c, "{name} mss {mss}: server stream differs");
            assert!(f.gaps.is_empty(), "{name}: {:?}", f.gaps);
            assert_eq!(f.fins, [C2S, S2C], "{name}: the client closes first");
            assert!(f.closed);
        }
    }
}

#[test]
fn close_all_ends_every_open_connection_with_a_fin_exchange() {
    // Connections left open are closed at the end, each with its FIN pair.
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    for conn in [3, 1, 2] {
        w.write(conn, C2S, b"AMQP\x00\x01\x00\x00", at(0)).expect("write");
    }
    w.close_all(at(1)).expect("close all");
    let flows = reassemble(&w.into_inner());
    assert_eq!(flows.len(), 3);
    assert!(flows.values().all(|f| f.closed && f.fins == [C2S, S2C]), "{flows:?}");
}

// ---------------------------------------------------------------------------------------
// Reassembly of segments crafted by hand
fn seg<'a>(src: u16, seq: u32, ack: Option<u32>, flags: &str, payload: &'a [u8]) -> TcpSegment<'a> {
    let ip = |p: u16| SocketAddr::new(IpAddr::from([10, 0, 0, if p == 5672 { 2 } else { 1 }]), p);
    let dst = if src == 5672 { 40000 } else { 5672 };
    TcpSegment {
        src: ip(src),
        dst: ip(dst),
        seq,
        ack,
        syn: flags.contains('S'),
        fin: flags.contains('F'),
        rst: flags.contains('R'),
        payload,
        wire_len: payload.len(),
    }
}

fn run(segments: &[TcpSegment<'_>]) -> Vec<TcpEvent> {
    let mut r = Reassembler::new();
    let mut out = Vec::new();
    for s in segments {
        r.push(s);
        out.extend(std::iter::from_fn(|| r.next_event()));
    }
    r.finish();
    out.extend(std::iter::from_fn(|| r.next_event()));
    out
}

fn data_of(events: &[TcpEvent], want: Direction) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if let TcpEvent::Data { dir, data, offset, .. } = e {
            if *dir == want {
                assert!(*offset >= out.len() as u64, "offsets only grow");
                out.extend_from_slice(data);
            }
        }
    }
    out
}

fn gaps_of(events: &[TcpEvent]) -> Vec<(Direction, u64, u32, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            TcpEvent::Gap { dir, offset, seq, len, .. } => Some((*dir, *offset, *seq, *len)),
            _ => None,
        })
        .collect()
}

#[test]
fn out_of_order_segments_are_held_and_retransmissions_dropped_across_a_sequence_wrap() {
    let body: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
    // Client ISN just below the wrap: its data runs across 2^32.
    let isn = u32::MAX - 150;
    let d = isn.wrapping_add(1);
    let s = 1000u32;
    let part = |a: usize, b: usize| &body[a..b];
    let events = run(&[
        seg(40000, isn, None, "S", b""),
        seg(5672, s, Some(d), "S", b""),
        seg(40000, d, Some(s + 1), "", b""),
        seg(40000, d, Some(s + 1), "", part(0, 100)),
        seg(40000, d.wrapping_add(200), Some(s + 1), "", part(200, 300)), // early
        seg(40000, d.wrapping_add(300), Some(s + 1), "", part(300, 400)), // early
        seg(40000, d.wrapping_add(200), Some(s + 1), "", part(200, 300)), // early, again
        seg(40000, d, Some(s + 1), "", part(0, 100)),                     // retransmission
        seg(40000, d.wrapping_add(50), Some(s + 1), "", part(50, 200)),   // overlaps, fills
        seg(5672, s + 1, Some(d.wrapping_add(400)), "", b"pong"),
        seg(40000, d.wrapping_add(400), Some(s + 5), "F", b""),
        seg(5672, s + 5, Some(d.wrapping_add(401)), "F", b""),
        seg(40000, d.wrapping_add(401), Some(s + 6), "", b""),
    ]);
    assert_eq!(data_of(&events, C2S), body);
    assert_eq!(data_of(&events, S2C), b"pong");
    assert!(gaps_of(&events).is_empty(), "{events:?}");
    let tail: Vec<&TcpEvent> = events.iter().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            &TcpEvent::Closed { flow: 0 },
            &TcpEvent::Fin { flow: 0, dir: S2C },
            &TcpEvent::Fin { flow: 0, dir: C2S }
        ]
    );
    assert!(matches!(events[0], TcpEvent::Open { handshake: true, .. }));
}

#[test]
fn a_missing_segment_is_a_gap_as_soon_as_the_other_side_acknowledges_past_it() {
    let d = 5001u32;
    let events = run(&[
        seg(40000, 5000, None, "S", b""),
        seg(5672, 9000, Some(d), "S", b""),
        seg(40000, d, Some(9001), "", b"AAAA"),
        // d+4..d+10 is lost; d+10.. arrives and is held.
        seg(40000, d + 10, Some(9001), "", b"CCCC"),
        // The server acknowledges all 14 bytes: the 6 missing ones will never come.
        seg(5672, 9001, Some(d + 14), "", b""),
        seg(40000, d + 14, Some(9001), "", b"DD"),
    ]);
    assert_eq!(gaps_of(&events), [(C2S, 4, d + 4, 6)]);
    // The gap is reported where it happened: after AAAA, before CCCC.
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            TcpEvent::Data { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            TcpEvent::Gap { len, .. } => Some(format!("gap {len}")),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["AAAA", "gap 6", "CCCC", "DD"]);
}

#[test]
fn holes_left_at_the_end_of_the_capture_become_gaps() {
    let events = run(&[
        seg(40000, 0, None, "S", b""),
        seg(40000, 1, None, "", b"ab"),
        seg(40000, 5, None, "", b"ef"),
        seg(40000, 9, None, "F", b"ij"),
    ]);
    assert_eq!(gaps_of(&events), [(C2S, 2, 3, 2), (C2S, 6, 7, 2)]);
    assert_eq!(events.last(), Some(&TcpEvent::Fin { flow: 0, dir: C2S }));
}

#[test]
fn a_packet_cut_short_by_the_snap_length_leaves_a_gap_of_the_rest() {
    let mut s = seg(40000, 1, None, "", b"0123");
    s.wire_len = 1000;
    let events = run(&[seg(40000, 0, None, "S", b""), s, seg(40000, 1001, None, "", b"next")]);
    assert_eq!(gaps_of(&events), [(C2S, 4, 5, 996)]);
    assert_eq!(data_of(&events, C2S), b"0123next");
}

/// An Ethernet/IPv4/TCP frame with 20 bytes of TCP options (NOPs and a timestamp, as
/// Linux sends on every segment) put after its fixed header.
fn with_tcp_options(frame: &[u8]) -> Vec<u8> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let tcp = 14 + ihl;
    let words = frame[tcp + 12] >> 4;
    let header = usize::from(words) * 4;
    let mut out = frame[..tcp + header].to_vec();
    out.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 1, 1, 1, 1, 1, 0]);
    out.extend_from_slice(&frame[tcp + header..]);
    let total = u16::from_be_bytes([out[16], out[17]]) + 20;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[tcp + 12] = ((words + 5) << 4) | (out[tcp + 12] & 0x0f);
    out
}

#[test]
fn a_tcp_header_cut_by_the_snap_length_is_read_from_its_fixed_part() {
    let (c2s, s2c) = fixture("rhea-to-proton-no-sasl");
    let frames = frames_of(&write_exchanges(WriterOptions::default(), &[(&c2s, &s2c)]));
    // 64 bytes of each packet, as `tcpdump -s 64` keeps: the headers with options are cut
    // inside their options.
    let cut: Vec<(Duration, Vec<u8>)> = frames
        .iter()
        .map(|(t, f)| {
            let f = with_tcp_options(f);
            (*t, f[..f.len().min(64)].to_vec())
        })
        .collect();
    let (_, first) = &cut[0];
    let syn = parse_tcp(1, first).expect("a header cut in its options").expect("TCP");
    assert!(syn.syn && syn.payload.is_empty() && syn.wire_len == 0, "{syn:?}");
    // Nothing is damaged: the data the snap length cut is missing, and the connection
    // carried none that was captured.
    let events = decode(&pcap(1, false, false, &cut));
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    // The handshake's headers alone cut (their options are longer, as with `-s 68` on
    // Linux): the connection is found from its handshake and decoded whole.
    let cut_syns: Vec<(Duration, Vec<u8>)> = frames
        .iter()
        .map(|(t, f)| {
            let syn = f[14 + 20 + 13] & 0x02 != 0;
            let f = if syn { with_tcp_options(f)[..64].to_vec() } else { f.clone() };
            (*t, f)
        })
        .collect();
    let events = decode(&pcap(1, false, false, &cut_syns));
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Connection(c) if c.handshake)));
    let items = decoded_items(&events);
    assert_eq!(items.get(&(1, C2S)), Some(&stream_items(&c2s)));
    assert_eq!(items.get(&(1, S2C)), Some(&stream_items(&s2c)));
}

#[test]
fn held_bytes_are_bounded_and_the_hole_is_given_up_when_they_pass_the_bound() {
    let chunk = vec![7u8; 16 * 1024];
    let mut segs = vec![seg(40000, 0, None, "S", b"")];
    // Byte 1..1001 never comes; 100 chunks of 16 KiB follow it.
    for i in 0..100u32 {
        segs.push(seg(40000, 1001 + i * 16384, None, "", &chunk));
    }
    let mut r = Reassembler::with_limits(Limits { max_buffered: 256 * 1024, ..Limits::default() });
    let mut events = Vec::new();
    for s in &segs {
        r.push(s);
        events.extend(std::iter::from_fn(|| r.next_event()));
    }
    // The hole was given up once 256 KiB were held, not at the end.
    assert_eq!(gaps_of(&events), [(C2S, 0, 1, 1000)]);
    assert_eq!(data_of(&events, C2S).len(), 100 * 16384);
    assert!(r.stats().out_of_order >= 16);
}

#[test]
fn a_reset_ends_a_connection_at_once_and_a_new_syn_reuses_the_ports() {
    let events = run(&[
        seg(40000, 100, None, "S", b""),
        seg(40000, 101, None, "", b"one"),
        seg(5672, 7, None, "R", b""),
        seg(40000, 900, None, "S", b""),
        seg(40000, 901, None, "", b"two"),
    ]);
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            TcpEvent::Open { flow, .. } => format!("open {flow}"),
            TcpEvent::Data { flow, data, .. } => {
                format!("data {flow} {}", String::from_utf8_lossy(data))
            }
            TcpEvent::Reset { flow, dir } => format!("reset {flow} {}", dir.label()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["open 0", "data 0 one", "reset 0 s2c", "open 1", "data 1 two"]);
}

#[test]
fn a_connection_joined_midway_takes_the_server_from_its_port() {
    let events = run(&[seg(5672, 77, Some(3), "", b"from the server")]);
    let TcpEvent::Open { client, server, handshake, .. } = &events[0] else { panic!() };
    assert_eq!(server.port(), 5672);
    assert_eq!(client.port(), 40000);
    assert!(!handshake);
    assert_eq!(data_of(&events, S2C), b"from the server");
}

// ---------------------------------------------------------------------------------------
// The reader

fn small_capture() -> Vec<u8> {
    let (c2s, s2c) = fixture("rhea-to-rhea-no-sasl");
    write_exchanges(WriterOptions::default(), &[(&c2s, &s2c)])
}

#[test]
fn the_reader_yields_sections_and_packets_in_order() {
    let file = small_capture();
    let blocks: Vec<Block<'_>> =
        CaptureReader::new(&file).expect("capture").map(|b| b.expect("block")).collect();
    let Block::Section(s) = &blocks[0] else { panic!() };
    assert_eq!(s.offset, 0);
    assert!(blocks[1..].iter().all(|b| matches!(b, Block::Packet(_))));
    let numbers: Vec<u64> = blocks[1..]
        .iter()
        .map(|b| match b {
            Block::Packet(p) => p.number,
            Block::Section(_) => 0,
        })
        .collect();
    assert_eq!(numbers, (1..blocks.len() as u64).collect::<Vec<_>>());
}

/// A frame or header as tshark and amqpwire can both describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Header(u8),
    Frame { size: u32, kind: u8, channel: u16, code: Option<u8> },
}

fn performative_code(name: &str) -> Option<u8> {
    let names =
        ["open", "begin", "attach", "flow", "transfer", "disposition", "detach", "end", "close"];
    let sasl = ["sasl-mechanisms", "sasl-init", "sasl-challenge", "sasl-response", "sasl-outcome"];
    if let Some(i) = names.iter().position(|n| *n == name) {
        return Some(0x10 + i as u8);
    }
    sasl.iter().position(|n| *n == name).map(|i| 0x40 + i as u8)
}

fn record_item(r: &Record) -> Option<Item> {
    match r {
        Record::Header { header, .. } => Some(Item::Header(header.id.0)),
        Record::Frame(f) => Some(Item::Frame {
            size: f.header.size,
            kind: f.header.frame_type.0,
            channel: f.header.channel,
            code: f.performative().and_then(performative_code),
        }),
        _ => None,
    }
}

/// Per connection and direction, the items amqpwire's capture decoder found.
fn decoded_items(events: &[CaptureEvent]) -> BTreeMap<(u32, Direction), Vec<Item>> {
    let mut out: BTreeMap<(u32, Direction), Vec<Item>> = BTreeMap::new();
    for e in events {
        if let (EventKind::Record(r), Some(c), Some(d)) = (&e.kind, e.connection, e.direction) {
            if let Some(item) = record_item(r) {
                out.entry((c, d)).or_default().push(item);
            }
        }
    }
    out
}

fn stream_items(stream: &[u8]) -> Vec<Item> {
    Inspector::inspect_all(stream, DecodeOptions::LENIENT).iter().filter_map(record_item).collect()
}

fn decode(file: &[u8]) -> Vec<CaptureEvent> {
    CaptureDecoder::decode_all(file, DecodeOptions::LENIENT, true)
}

fn errors(events: &[CaptureEvent]) -> Vec<String> {
    events.iter().filter(|e| e.errors() > 0).map(|e| format!("{e:?}")).collect()
}

// ---------------------------------------------------------------------------------------
// The decoder

#[test]
fn the_decoder_shows_every_frame_of_both_directions_with_time_and_packet() {
    let (c2s, s2c) = fixture("rhea-to-proton-messages");
    let file = write_exchanges(WriterOptions::default(), &[(&c2s, &s2c)]);
    let events = decode(&file);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let items = decoded_items(&events);
    assert_eq!(items[&(1, C2S)], stream_items(&c2s));
    assert_eq!(items[&(1, S2C)], stream_items(&s2c));

    // The section header, then the connection, with the writer's comment.
    assert!(
        matches!(&events[0].kind, EventKind::Section(s) if s.format == Format::Pcapng { big_endian: false }
        && s.application.as_deref().is_some_and(|a| a.starts_with("amqpwire ")))
    );
    let EventKind::Connection(c) = &events[1].kind else { panic!("{:?}", events[1]) };
    assert_eq!(c.transport, Transport::Tcp);
    assert!(c.handshake);
    assert_eq!(c.server, "192.0.2.2:5672".parse::<SocketAddr>().expect("addr"));
    assert_eq!(c.client, "192.0.2.1:49152".parse::<SocketAddr>().expect("addr"));
    assert_eq!(
        c.comments,
        ["amqpwire connection 1; transport tls; url amqps://broker.example:5671/conn1; \
          client 10.1.2.3:50000; server 10.9.8.7:5671"]
    );
    assert_eq!(events[1].packet, Some(1), "the SYN starts the connection");

    // Records come in capture order, each at its packet's time, both directions
    // interleaved as written (client item, server item, …).
    let records: Vec<&CaptureEvent> =
        events.iter().filter(|e| matches!(e.kind, EventKind::Record(_))).collect();
    let dirs: Vec<Direction> = records.iter().take(4).filter_map(|e| e.direction).collect();
    assert_eq!(dirs, [C2S, S2C, C2S, S2C]);
    let mut last = (0, Duration::ZERO);
    for e in &records {
        let (p, t) = (e.packet.expect("packet"), e.time);
        assert!(p > last.0 && t > last.1, "one item per packet, 1 ms apart");
        assert_eq!(e.connection, Some(1));
        last = (p, t);
    }
    let first = records[0].time - Duration::from_secs(1_795_000_000);
    assert_eq!(first, Duration::from_millis(1));
    // The end: both FINs.
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Closed { reset: false, offset } => Some((e.direction, offset)),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [(Some(C2S), c2s.len() as u64), (Some(S2C), s2c.len() as u64)]);
}

#[test]
fn several_connections_get_their_own_ports_and_numbers() {
    let a = fixture("proton-to-rhea-no-sasl");
    let b = fixture("rhea-to-proton-sasl-anonymous");
    let file = write_exchanges(WriterOptions::default(), &[(&a.0, &a.1), (&b.0, &b.1)]);
    let events = decode(&file);
    let conns: Vec<(u32, SocketAddr)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Connection(c) => Some((e.connection.expect("number"), c.client)),
            _ => None,
        })
        .collect();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].0, 1);
    assert_eq!(conns[1].0, 2);
    assert_ne!(conns[0].1.port(), conns[1].1.port());
    let items = decoded_items(&events);
    assert_eq!(items[&(1, C2S)], stream_items(&a.0));
    assert_eq!(items[&(2, S2C)], stream_items(&b.1));
}

#[test]
fn ipv6_and_a_chosen_port_work_too() {
    let (c2s, s2c) = fixture("rhea-to-rhea-sasl-plain");
    let opts = WriterOptions {
        client_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        server_ip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        server_port: 15672,
        ..WriterOptions::default()
    };
    let file = write_exchanges(opts, &[(&c2s, &s2c)]);
    let events = decode(&file);
    let EventKind::Connection(c) = &events[1].kind else { panic!("{:?}", events[1]) };
    assert_eq!(c.server, "[2001:db8::2]:15672".parse::<SocketAddr>().expect("addr"));
    let items = decoded_items(&events);
    assert_eq!(items[&(1, C2S)], stream_items(&c2s));
    assert_eq!(items[&(1, S2C)], stream_items(&s2c));
    // Mixed families are refused.
    let mixed =
        WriterOptions { client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST), ..WriterOptions::default() };
    assert!(PcapWriter::new(Vec::new(), mixed).is_err());
}

#[test]
fn a_reset_ends_the_connection_and_reports_an_unfinished_frame() {
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    w.write(5, C2S, b"AMQP\x00\x01\x00\x00", at(0)).expect("write");
    // Half an open frame, then the server resets.
    w.write(5, C2S, &[0, 0, 0, 0x20, 2, 0, 0, 0], at(1)).expect("write");
    w.reset(5, S2C, at(2)).expect("reset");
    let events = decode(&w.into_inner());
    let kinds: Vec<String> = events.iter().map(|e| format!("{:?}", e.kind)).collect();
    let truncated = events
        .iter()
        .position(|e| {
            matches!(&e.kind, EventKind::Record(Record::Truncated { offset: 8, rest, .. })
                if rest[..] == [0, 0, 0, 0x20, 2, 0, 0, 0])
        })
        .unwrap_or_else(|| panic!("{kinds:#?}"));
    let reset = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::Closed { reset: true, .. }))
        .unwrap_or_else(|| panic!("{kinds:#?}"));
    assert!(truncated < reset);
    assert_eq!(events[reset].direction, Some(S2C));
}

// ---------------------------------------------------------------------------------------
// Captures of other shapes: pcap, byte orders, link types
/// The packets (time, Ethernet frame) of a capture.
fn frames_of(file: &[u8]) -> Vec<(Duration, Vec<u8>)> {
    CaptureReader::new(file)
        .expect("capture")
        .packets()
        .map(|p| {
            let p = p.expect("packet");
            assert_eq!(p.link_type, 1);
            (p.time, p.data.to_vec())
        })
        .collect()
}

/// A classic pcap file of the packets.
fn pcap(link_type: u32, big_endian: bool, nanos: bool, packets: &[(Duration, Vec<u8>)]) -> Vec<u8> {
    let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 }));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(262144));
    out.extend_from_slice(&u32b(link_type));
    for (t, data) in packets {
        let frac = if nanos { t.subsec_nanos() } else { t.subsec_micros() };
        out.extend_from_slice(&u32b(t.as_secs() as u32));
        out.extend_from_slice(&u32b(frac));
        out.extend_from_slice(&u32b(data.len() as u32));
        out.extend_from_slice(&u32b(data.len() as u32));
        out.extend_from_slice(data);
    }
    out
}

/// The Ethernet frame re-wrapped for another link type.
fn relink(link_type: u32, frame: &[u8]) -> Vec<u8> {
    let ether = [frame[12], frame[13]];
    let ip = &frame[14..];
    let v6 = ether == [0x86, 0xdd];
    let mut out = Vec::new();
    match link_type {
        0 => out.extend_from_slice(&(if v6 { 30u32 } else { 2 }).to_le_bytes()),
        108 => out.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_be_bytes()),
        113 => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6]);
            out.extend_from_slice(&frame[6..12]);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ether);
        }
        276 => {
            out.extend_from_slice(&ether);
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6]);
            out.extend_from_slice(&frame[6..12]);
            out.extend_from_slice(&[0, 0]);
        }
        101 | 228 | 229 => {}
        other => panic!("link type {other}"),
    }
    out.extend_from_slice(ip);
    out
}

#[test]
fn pcap_files_of_every_byte_order_resolution_and_link_type_decode_the_same() {
    let (c2s, s2c) = fixture("proton-to-rhea-sasl-plain");
    let want = (stream_items(&c2s), stream_items(&s2c));
    for v6 in [false, true] {
        let mut opts = WriterOptions { mss: 300, ..WriterOptions::default() };
        if v6 {
            opts.client_ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
            opts.server_ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
        }
        let frames = frames_of(&write_exchanges(opts, &[(&c2s, &s2c)]));
        let raw = if v6 { 229 } else { 228 };
        for link in [1u32, 0, 108, 113, 276, 101, raw] {
            for (big_endian, nanos) in [(false, false), (true, false), (false, true), (true, true)]
            {
                let packets: Vec<(Duration, Vec<u8>)> = frames
                    .iter()
                    .map(|(t, f)| (*t, if link == 1 { f.clone() } else { relink(link, f) }))
                    .collect();
                let file = pcap(link, big_endian, nanos, &packets);
                let events = decode(&file);
                let what = format!("v6 {v6} link {link} big-endian {big_endian} nanos {nanos}");
                assert!(errors(&events).is_empty(), "{what}: {:?}", errors(&events));
                assert!(
                    matches!(&events[0].kind, EventKind::Section(s)
                        if s.format == Format::Pcap { nanos, big_endian, modified: false }),
                    "{what}"
                );
                let items = decoded_items(&events);
                assert_eq!(items.get(&(1, C2S)), Some(&want.0), "{what}");
                assert_eq!(items.get(&(1, S2C)), Some(&want.1), "{what}");
                let first = events.iter().find_map(|e| e.packet.map(|_| e.time)).expect("time");
                assert_eq!(first, frames[0].0, "{what}: timestamps keep their precision");
            }
        }
    }
}

#[test]
fn dropped_duplicated_and_reordered_packets_decode_with_the_gap_reported() {
    let (c2s, s2c) = fixture("rhea-to-proton-dispositions");
    let opts = WriterOptions { mss: 60, ..WriterOptions::default() };
    let frames = frames_of(&write_exchanges(opts, &[(&c2s, &s2c)]));
    // Swap two neighbours and send one packet twice: nothing is lost.
    let mut shuffled = frames.clone();
    shuffled.swap(10, 11);
    shuffled.swap(20, 22);
    shuffled.insert(15, frames[14].clone());
    let events = decode(&pcap(1, false, false, &shuffled));
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let items = decoded_items(&events);
    assert_eq!(items[&(1, C2S)], stream_items(&c2s));
    assert_eq!(items[&(1, S2C)], stream_items(&s2c));

    // Drop a packet of the client's in the middle: the client's stream stops there with a
    // gap; the server's is whole.
    let mut dropped = frames.clone();
    let victim = dropped
        .iter()
        .enumerate()
        .skip(dropped.len() / 2)
        .find(|(_, (_, f))| f.len() == 54 + 60 && f[34..36] != 5672u16.to_be_bytes())
        .map(|(i, _)| i)
        .expect("a client data packet");
    dropped.remove(victim);
    let events = decode(&pcap(1, false, false, &dropped));
    let gaps: Vec<&CaptureEvent> =
        events.iter().filter(|e| matches!(e.kind, EventKind::Gap { .. })).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].direction, Some(C2S));
    let EventKind::Gap { len, .. } = gaps[0].kind else { unreachable!() };
    assert_eq!(len, 60, "one full segment");
    let items = decoded_items(&events);
    assert_eq!(items[&(1, S2C)], stream_items(&s2c));
    // The client's frames but the one or two the lost segment was part of: decoding
    // resumed at the next frame after the gap.
    let got = &items[&(1, C2S)];
    let all = stream_items(&c2s);
    let same_start = all.iter().zip(got).take_while(|(a, b)| a == b).count();
    let same_end = all.iter().rev().zip(got.iter().rev()).take_while(|(a, b)| a == b).count();
    assert_eq!(same_start + same_end, got.len(), "the frames either side of the gap");
    assert!((1..=2).contains(&(all.len() - got.len())), "{} of {} frames", got.len(), all.len());
    let resync = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::Resync { .. }))
        .expect("decoding resumes");
    let gap = events.iter().position(|e| matches!(e.kind, EventKind::Gap { .. })).expect("gap");
    assert!(gap < resync);
    assert!(errors(&events).len() == 1, "the gap is the one error: {:?}", errors(&events));
    // Text output names the gap.
    let mut text = String::new();
    for e in &events {
        amqpwire::capture::event_text(e, Duration::ZERO, &mut text);
    }
    assert!(text.contains("gap: 60 bytes missing at seq"), "{text}");
}

#[test]
fn a_capture_joined_midway_is_decoded_from_each_directions_first_frame() {
    let (c2s, s2c) = fixture("rhea-to-proton-no-sasl");
    let frames = frames_of(&write_exchanges(WriterOptions::default(), &[(&c2s, &s2c)]));
    // Without the handshake and the first two items of each side.
    let events = decode(&pcap(1, false, false, &frames[7..]));
    let items = decoded_items(&events);
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    for (dir, stream) in [(C2S, &c2s), (S2C, &s2c)] {
        let got = items.get(&(1, dir)).cloned().unwrap_or_default();
        let all = stream_items(stream);
        // What is decoded is the tail of the whole direction, from a frame on.
        assert!(!got.is_empty() && got.len() < all.len(), "{dir:?}: {got:?}");
        assert_eq!(got[..], all[all.len() - got.len()..], "{dir:?}");
        assert!(!matches!(got[0], Item::Header(_)), "{dir:?}: {got:?}");
    }
    let infos: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Info(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert!(infos[0].contains("joined this connection after its start"), "{}", infos[0]);
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::Resync { .. })));
    // Bytes of another protocol, joined midway: still reported, not decoded.
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    w.write(1, C2S, &[0x17; 64], at(0)).expect("write");
    w.write(1, S2C, &[0x17; 64], at(1)).expect("write");
    let frames = frames_of(&w.into_inner());
    let events = decode(&pcap(1, false, false, &frames[3..]));
    assert!(decoded_items(&events).is_empty());
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::Info(m) if m.contains("neither direction holds an AMQP frame header"))),
        "{events:?}"
    );
}

/// A transfer frame on channel 0, handle 0: `delivery_id` (none on a continuation that
/// leaves it out), `more`, and `payload` as its part of the message.
fn part_frame(delivery_id: Option<u8>, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut fields = vec![0x43];
    match delivery_id {
        Some(id) => fields.extend_from_slice(&[0x52, id, 0xa0, 0x01, id]),
        None => fields.extend_from_slice(&[0x40, 0x40]),
    }
    fields.extend_from_slice(&[0x40, 0x40, if more { 0x41 } else { 0x42 }]);
    let mut body = vec![0x00, 0x53, 0x14, 0xc0, (fields.len() + 1) as u8, 0x06];
    body.extend_from_slice(&fields);
    body.extend_from_slice(payload);
    let mut frame = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[2, 0, 0, 0]);
    frame.extend_from_slice(&body);
    frame
}

/// A whole transfer on channel 0, handle 0, delivery 0: its message one data section of
/// `n` bytes.
fn transfer_frame(n: usize) -> Vec<u8> {
    part_frame(Some(0), false, &data_section(n))
}

/// A data section (vbin32) of `n` bytes of `a`.
fn data_section(n: usize) -> Vec<u8> {
    let mut data = vec![0x00, 0x53, 0x75, 0xb0];
    data.extend_from_slice(&(n as u32).to_be_bytes());
    data.extend(std::iter::repeat_n(b'a', n));
    data
}

#[test]
fn a_delivery_whose_start_is_lost_in_a_gap_is_not_decoded_as_a_message() {
    // A message of 3,000 bytes in three transfers, then a whole one.
    let message = data_section(2_992);
    let whole = [&[0x00, 0x53, 0x77, 0xa1, 0x02][..], b"ok"].concat();
    // Continuations that leave the delivery-id out (as the spec allows), and ones that
    // repeat it (as rhea and Proton do).
    for repeat in [false, true] {
        let later = repeat.then_some(0);
        let c2s = [
            b"AMQP\x00\x01\x00\x00".to_vec(),
            part_frame(Some(0), true, &message[..1_000]),
            part_frame(later, true, &message[1_000..2_000]),
            part_frame(later, false, &message[2_000..]),
            part_frame(Some(1), false, &whole),
        ]
        .concat();
        let s2c = b"AMQP\x00\x01\x00\x00".to_vec();
        let opts = WriterOptions { mss: 300, ..WriterOptions::default() };
        let mut frames = frames_of(&write_exchanges(opts, &[(&c2s, &s2c)]));
        // The client's third data packet: inside the delivery's first transfer.
        let victim = frames
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| f.len() == 54 + 300 && f[34..36] != 5672u16.to_be_bytes())
            .nth(2)
            .map(|(i, _)| i)
            .expect("a client data packet");
        frames.remove(victim);
        let events = decode(&pcap(1, false, false, &frames));
        assert_eq!(errors(&events).len(), 1, "the gap alone: {:?}", errors(&events));
        let mut text = String::new();
        for e in &events {
            amqpwire::capture::event_text(e, Duration::ZERO, &mut text);
        }
        assert!(text.contains("its first transfers came before the stream was joined"), "{text}");
        assert!(!text.contains("message error"), "{text}");
        // The whole delivery after it is decoded.
        let items = decoded_items(&events);
        let deliveries: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Record(Record::Frame(f)) => f.delivery.as_ref(),
                _ => None,
            })
            .collect();
        assert_eq!(deliveries.len(), 1, "repeat {repeat}: {items:?}");
        assert_eq!(deliveries[0].payload.as_ref(), &whole[..]);
    }
}

#[test]
fn a_capture_joined_inside_a_large_frame_finds_the_next_frame_past_it() {
    // Each direction joined 20 KB into a 40 KB frame: the next frame header is 20 KB on,
    // past the first 16 KB of either direction.
    let (big, small) = (transfer_frame(40_000), transfer_frame(10));
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    for (dir, t) in [(C2S, 0), (S2C, 10)] {
        w.write(1, dir, &big[..20_000], at(t)).expect("write");
        w.write(1, dir, &big[20_000..], at(t + 1)).expect("write");
    }
    w.write(1, C2S, &small, at(20)).expect("write");
    w.write(1, S2C, &small, at(21)).expect("write");
    let frames = frames_of(&w.into_inner());
    let late = |ms: u64| at(ms).duration_since(UNIX_EPOCH).expect("time");
    let joined: Vec<_> =
        frames.into_iter().filter(|(t, _)| *t == late(1) || *t >= late(11)).collect();
    let events = decode(&pcap(1, false, false, &joined));
    let items = decoded_items(&events);
    for dir in [C2S, S2C] {
        assert_eq!(items.get(&(1, dir)).map(Vec::len), Some(1), "{dir:?}: {items:?}");
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Info(m) if m.contains("neither direction"))),
        "{events:?}"
    );
}

/// The Ethernet frame's IPv4 datagram cut into fragments of `size` bytes of payload (a
/// multiple of 8), each a frame of its own with a correct header checksum.
fn fragments(frame: &[u8], size: usize, id: u16) -> Vec<Vec<u8>> {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let header = &frame[14..14 + ihl];
    let payload = &frame[14 + ihl..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let chunk = &payload[off..(off + size).min(payload.len())];
        let more = off + chunk.len() < payload.len();
        let mut h = header.to_vec();
        h[2..4].copy_from_slice(&((ihl + chunk.len()) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let flags_offset = (u16::from(more) << 13) | (off / 8) as u16;
        h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let sum: u32 = h.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut f = frame[..14].to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(chunk);
        out.push(f);
        off += chunk.len();
    }
    out
}

#[test]
fn ipv4_fragments_are_reassembled_in_any_order() {
    let (c2s, s2c) = fixture("rhea-to-proton-no-sasl");
    let file = write_exchanges(WriterOptions::default(), &[(&c2s, &s2c)]);
    let whole = decoded_items(&decode(&file));
    // Every packet with a payload, cut into 48-byte fragments; every other datagram's
    // fragments in reverse order, and one fragment sent twice.
    let mut packets = Vec::new();
    for (i, (t, frame)) in frames_of(&file).into_iter().enumerate() {
        if frame.len() <= 14 + 20 + 20 + 48 {
            packets.push((t, frame));
            continue;
        }
        let mut f = fragments(&frame, 48, 1000 + i as u16);
        if i % 2 == 0 {
            f.reverse();
        }
        let again = f[0].clone();
        f.push(again);
        packets.extend(f.into_iter().map(|f| (t, f)));
    }
    let events = decode(&pcap(1, false, false, &packets));
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert_eq!(decoded_items(&events), whole);
    // A datagram missing a fragment: said at the end, and its bytes are a gap.
    let frames = frames_of(&file);
    let (big, _) = frames
        .iter()
        .enumerate()
        .filter(|(_, (_, f))| f.len() > 14 + 20 + 20 + 96)
        .map(|(i, (_, f))| (i, f.len()))
        .next()
        .expect("a large packet");
    let mut packets = frames.clone();
    let mut f = fragments(&packets[big].1, 48, 7);
    f.remove(1);
    let t = packets[big].0;
    packets.splice(big..=big, f.into_iter().map(|f| (t, f)));
    let events = decode(&pcap(1, false, false, &packets));
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::Info(m) if m.contains("IPv4 datagram 7") && m.contains("incomplete"))),
        "{events:?}"
    );
}

#[test]
fn amqp_is_found_on_any_port_from_either_side_and_tls_is_reported() {
    // AMQP on port 80, and a server that speaks first.
    let mut w =
        PcapWriter::new(Vec::new(), WriterOptions { server_port: 80, ..Default::default() })
            .expect("writer");
    w.write(1, S2C, b"AMQP\x03\x01\x00\x00", at(0)).expect("write");
    w.write(1, C2S, b"AMQP\x03\x01\x00\x00", at(1)).expect("write");
    // An HTTP connection: skipped, silently (not an AMQP port).
    w.write(2, C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", at(2)).expect("write");
    w.write(2, S2C, b"HTTP/1.1 200 OK\r\n\r\n", at(3)).expect("write");
    let events = decode(&w.into_inner());
    let items = decoded_items(&events);
    assert_eq!(items[&(1, S2C)], [Item::Header(3)]);
    assert_eq!(items[&(1, C2S)], [Item::Header(3)]);
    assert_eq!(items.len(), 2);
    assert!(!events.iter().any(|e| matches!(e.kind, EventKind::Info(_))));

    // A TLS ClientHello on 5671, and AMQP's TLS protocol header followed by TLS.
    let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00];
    let mut w =
        PcapWriter::new(Vec::new(), WriterOptions { server_port: 5671, ..Default::default() })
            .expect("writer");
    w.write(1, C2S, &hello, at(0)).expect("write");
    let mut w2 = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    let mut tls_header = b"AMQP\x02\x01\x00\x00".to_vec();
    tls_header.extend_from_slice(&hello);
    w2.write(1, C2S, &tls_header, at(0)).expect("write");
    w2.write(1, S2C, b"AMQP\x02\x01\x00\x00\x16\x03\x03", at(1)).expect("write");
    for (file, transport) in [(w.into_inner(), Transport::Tls), (w2.into_inner(), Transport::Tcp)] {
        let events = decode(&file);
        let c = events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Connection(c) => Some(c.transport),
                _ => None,
            })
            .expect("a connection");
        assert_eq!(c, transport);
        let notes: Vec<&CaptureEvent> = events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Info(m) if m == "TLS: give --keylog FILE (the key log SSLKEYLOGFILE writes) to decrypt it"))
            .collect();
        assert_eq!(notes.len(), 1, "{events:?}");
        assert_eq!(notes[0].connection, Some(1));
        assert!(errors(&events).is_empty(), "TLS is not an error: {:?}", errors(&events));
        if transport == Transport::Tcp {
            let items = decoded_items(&events);
            assert_eq!(items[&(1, C2S)], [Item::Header(2)], "the header shows, TLS does not");
            assert_eq!(items[&(1, S2C)], [Item::Header(2)]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket
/// A WebSocket frame: FIN flag, opcode, payload, masked with `mask` when given.
fn ws_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// permessage-deflate (RFC 7692) for one direction: each message compressed with the
/// window kept across messages (or reset, with `reset`), the trailing 00 00 ff ff removed.
struct Compressor {
    c: Box<miniz_oxide::deflate::core::CompressorOxide>,
    reset: bool,
}

impl Compressor {
    fn new(reset: bool) -> Self {
        let flags = miniz_oxide::deflate::core::create_comp_flags_from_zip_params(6, -15, 0);
        Self { c: Box::new(miniz_oxide::deflate::core::CompressorOxide::new(flags)), reset }
    }

    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        use miniz_oxide::deflate::stream::deflate;
        use miniz_oxide::MZFlush;
        let mut out = vec![0u8; data.len() * 2 + 64];
        let r = deflate(&mut self.c, data, &mut out, MZFlush::Sync);
        assert_eq!(r.bytes_consumed, data.len());
        out.truncate(r.bytes_written);
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "a sync flush ends so");
        out.truncate(out.len() - 4);
        if self.reset {
            self.c.reset();
        }
        out
    }
}

#[test]
fn permessage_deflate_messages_are_inflated_with_their_window() {
    let (c2s, s2c) = fixture("proton-to-rhea-large");
    let request = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Protocol: AMQPWSB10\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n";
    // The client resets its window per message (as negotiated); the server keeps it, so its
    // later messages refer back into earlier ones. Some messages go uncompressed (RSV1
    // clear), one compressed message is split over two frames.
    let mut client = request.as_bytes().to_vec();
    let mut zc = Compressor::new(true);
    for (i, item) in items(&c2s).iter().enumerate() {
        let mask = Some([1, 2, 3, (i % 251) as u8]);
        if i % 3 == 2 {
            client.extend(ws_frame(true, 2, item, mask));
        } else {
            let mut f = ws_frame(true, 2, &zc.message(item), mask);
            f[0] |= 0x40;
            client.extend(f);
        }
    }
    let mut server = response.as_bytes().to_vec();
    let mut zs = Compressor::new(false);
    for (i, item) in items(&s2c).iter().enumerate() {
        let z = zs.message(item);
        if i == 1 && z.len() > 4 {
            let (a, b) = z.split_at(z.len() / 2);
            let mut f = ws_frame(false, 2, a, None);
            f[0] |= 0x40;
            server.extend(f);
            server.extend(ws_frame(true, 0, b, None));
        } else {
            let mut f = ws_frame(true, 2, &z, None);
            f[0] |= 0x40;
            server.extend(f);
        }
    }
    let opts = WriterOptions { server_port: 443, mss: 1400, ..WriterOptions::default() };
    let mut w = PcapWriter::new(Vec::new(), opts.clone()).expect("writer");
    // The request, the server's answer, then the client's messages: a client sends none
    // before the 101 (RFC 6455 4.1).
    let half = request.len();
    w.write(1, C2S, &client[..half], at(1)).expect("write");
    w.write(1, S2C, &server, at(2)).expect("write");
    w.write(1, C2S, &client[half..], at(3)).expect("write");
    let events = decode(&w.into_inner());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let got = decoded_items(&events);
    assert_eq!(got[&(1, C2S)], stream_items(&c2s));
    assert_eq!(got[&(1, S2C)], stream_items(&s2c));
    // A compressed frame on a connection that negotiated nothing: a fatal error, said so.
    let plain = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n";
    let mut bad = plain.as_bytes().to_vec();
    let mut f =
        ws_frame(true, 2, &Compressor::new(false).message(b"AMQP\x00\x01\x00\x00"), Some([9; 4]));
    f[0] |= 0x40;
    bad.extend(f);
    let mut w = PcapWriter::new(Vec::new(), opts).expect("writer");
    w.write(1, C2S, &bad, at(1)).expect("write");
    let events = decode(&w.into_inner());
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::WebSocket(WsEvent::Error { message, fatal: true, .. }) if message.contains("negotiated no extension"))),
        "{events:?}"
    );
}

#[test]
fn amqp_over_websocket_is_unframed_from_a_capture_made_by_hand() {
    let (c2s, s2c) = fixture("proton-to-rhea-large");
    let request =
        "GET /$servicebus/websocket HTTP/1.1\r\nHost: hub.example\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n";
    let response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGJzzZYK+xOo4=\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n";
    // Client: one masked binary message per item; the first large transfer fragmented
    // over three frames with a ping between them; a 64-bit length for one message.
    let mut client = request.as_bytes().to_vec();
    let mut mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut fragmented = false;
    for item in items(&c2s) {
        mask = mask.map(|b| b.wrapping_add(1));
        if !fragmented && item.len() > 10_000 {
            fragmented = true;
            let (a, rest) = item.split_at(100);
            let (b, c) = rest.split_at(5000);
            client.extend(ws_frame(false, 2, a, Some(mask)));
            client.extend(ws_frame(true, 9, b"ping!", Some(mask)));
            client.extend(ws_frame(false, 0, b, Some(mask)));
            client.extend(ws_frame(true, 0, c, Some(mask)));
        } else {
            client.extend(ws_frame(true, 2, item, Some(mask)));
        }
    }
    client.extend(ws_frame(true, 8, b"\x03\xe8bye", Some(mask)));
    // Server: every item in unmasked binary frames, a pong, a text message, a close.
    let mut server = response.as_bytes().to_vec();
    for item in items(&s2c) {
        server.extend(ws_frame(true, 2, item, None));
    }
    server.extend(ws_frame(true, 10, b"ping!", None));
    server.extend(ws_frame(true, 1, b"{\"text\":1}", None));
    server.extend(ws_frame(true, 8, b"\x03\xe8", None));
    assert!(server.len() > 65536 && client.len() > 65536);

    // Both directions in uneven packets, alternating.
    let opts = WriterOptions { server_port: 443, mss: 1400, ..WriterOptions::default() };
    let mut w = PcapWriter::new(Vec::new(), opts).expect("writer");
    let (mut i, mut j, mut t) = (0, 0, 0);
    let cuts = [7, 300, 1, 9000, 65, 2];
    while i < client.len() || j < server.len() {
        let n = cuts[t % cuts.len()];
        t += 1;
        let a = (i + n).min(client.len());
        w.write(1, C2S, &client[i..a], at(t as u64)).expect("write");
        i = a;
        let b = (j + n * 2).min(server.len());
        w.write(1, S2C, &server[j..b], at(t as u64)).expect("write");
        j = b;
    }
    w.close(1, S2C, at(t as u64 + 1)).expect("close");
    let events = decode(&w.into_inner());
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let EventKind::Connection(c) = &events[1].kind else { panic!("{:?}", events[1]) };
    assert_eq!(c.transport, Transport::WebSocket);
    assert_eq!(c.server.port(), 443);

    let items = decoded_items(&events);
    assert_eq!(items[&(1, C2S)], stream_items(&c2s));
    assert_eq!(items[&(1, S2C)], stream_items(&s2c));
    // The multi-frame deliveries still come out whole.
    let messages = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::Record(Record::Frame(f))
                if f.delivery.as_ref().is_some_and(|d| d.frames == 21 && d.message.is_ok()))
        })
        .count();
    assert_eq!(messages, 2, "one 21-frame delivery each way");

    let ws: Vec<(Direction, &WsEvent)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::WebSocket(w) => Some((e.direction.expect("direction"), w)),
            _ => None,
        })
        .collect();
    let summary: Vec<String> = ws
        .iter()
        .map(|(d, w)| match w {
            WsEvent::Request { line, protocol } => {
                format!("{} request {line} {protocol:?}", d.label())
            }
            WsEvent::Response { status, .. } => format!("{} response {status}", d.label()),
            WsEvent::Control { opcode, payload, .. } => {
                format!("{} {} {}", d.label(), opcode.name(), String::from_utf8_lossy(payload))
            }
            WsEvent::Text { len, .. } => format!("{} text {len}", d.label()),
            WsEvent::Error { message, .. } => format!("{} error {message}", d.label()),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "c2s request GET /$servicebus/websocket HTTP/1.1 Some(\"AMQPWSB10\")",
            "s2c response 101",
            "c2s ping ping!",
            "s2c pong ping!",
            "s2c text 10",
            "s2c close \u{3}\u{fffd}",
            "c2s close \u{3}\u{fffd}bye",
        ]
    );
    assert!(matches!(ws[2].1, WsEvent::Control { opcode: Opcode::Ping, .. }));
}

#[test]
fn websocket_breaches_and_refusals_are_reported() {
    let request =
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n";
    let header = b"AMQP\x00\x01\x00\x00";
    // An unmasked client frame (reported, decoded anyway), then a reserved opcode (fatal).
    let mut client = request.as_bytes().to_vec();
    client.extend(ws_frame(true, 2, header, None));
    client.extend(ws_frame(true, 3, b"??", Some([1, 2, 3, 4])));
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    w.write(1, C2S, &client, at(0)).expect("write");
    w.write(1, S2C, b"HTTP/1.1 101 Switching Protocols\r\n\r\n", at(1)).expect("write");
    // A refused upgrade.
    w.write(2, C2S, request.as_bytes(), at(2)).expect("write");
    w.write(2, S2C, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", at(3)).expect("write");
    let events = decode(&w.into_inner());
    let errs: Vec<(u32, bool, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::WebSocket(WsEvent::Error { message, fatal, .. }) => {
                Some((e.connection.expect("conn"), *fatal, message.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(!errs[0].1 && errs[0].2.contains("from the client is not masked"), "{errs:?}");
    assert!(errs[1].1 && errs[1].2.contains("reserved opcode 0x3"), "{errs:?}");
    assert_eq!(errs[2].0, 2);
    assert!(errs[2].1 && errs[2].2.contains("refused: HTTP/1.1 403 Forbidden"), "{errs:?}");
    assert_eq!(decoded_items(&events)[&(1, C2S)], [Item::Header(0)]);
}

#[test]
fn a_token_in_the_upgrade_request_s_query_is_masked_unless_secrets_are_shown() {
    let token = "SharedAccessSignature%20sr%3Dhub.example%26sig%3DsEcReT%253D%26se%3D1";
    let line = format!("GET /$servicebus/websocket?authorization={token}&api-version=2 HTTP/1.1");
    let protocols = "AMQPWSB10, access_token, s3cr3t";
    let request =
        format!("{line}\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n");
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    w.write(1, C2S, request.as_bytes(), at(0)).expect("write");
    w.write(1, S2C, b"HTTP/1.1 101 Switching Protocols\r\n\r\n", at(1)).expect("write");
    let file = w.into_inner();
    let request = |redact: bool| {
        CaptureDecoder::decode_all(&file, DecodeOptions::LENIENT, redact)
            .into_iter()
            .find_map(|e| match e.kind {
                EventKind::WebSocket(WsEvent::Request { line, protocol }) => Some((line, protocol)),
                _ => None,
            })
            .expect("a request")
    };
    let stars = "*".repeat(token.len());
    let masked = (
        format!("GET /$servicebus/websocket?authorization={stars}&api-version=2 HTTP/1.1"),
        Some("AMQPWSB10, access_token, ******".to_owned()),
    );
    assert_eq!(request(true), masked);
    assert_eq!(request(false), (line, Some(protocols.to_owned())));
}

// ---------------------------------------------------------------------------------------
// Captures read a block at a time

#[test]
fn a_capture_read_in_pieces_reads_as_the_whole_file_even_cut_anywhere_or_damaged() {
    let file = small_capture();
    let frames = frames_of(&file);
    let mut files =
        vec![file.clone(), pcap(1, false, false, &frames), pcap(1, true, true, &frames)];
    // A block length that disagrees with its trailer; one that claims the rest of the file.
    let mut bad = file.clone();
    let second = u32::from_le_bytes(bad[4..8].try_into().expect("len")) as usize;
    bad[second + 4] ^= 4;
    files.push(bad);
    let mut huge = file.clone();
    huge[second + 4..second + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    files.push(huge);
    for f in &files {
        // Cut within every block's or record's header and the start of its data (every
        // length from just before each block to 40 bytes into it), and every 61st length.
        let starts = CaptureReader::new(f).expect("capture").map(|b| match b {
            Ok(Block::Packet(p)) => p.offset,
            Ok(Block::Section(s)) => s.offset,
            Err(e) => e.offset,
        });
        let mut cuts: Vec<usize> = starts
            .flat_map(|o| o.saturating_sub(2)..o + 40)
            .chain((0..f.len()).step_by(61))
            .collect();
        cuts.push(f.len());
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts.into_iter().filter(|c| *c <= f.len()) {
            amqpwire::fuzzing::stream_reads_as_whole(&f[..cut]);
        }
    }
}

/// Counts what is read through it.
struct Counted<'a, R> {
    inner: R,
    read: &'a mut usize,
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.read += n;
        Ok(n)
    }
}

/// A pcapng block of type `kind` around `body` (padded to 4 bytes), big-endian when `be`.
fn pcapng_block(kind: u32, body: &[u8], be: bool) -> Vec<u8> {
    let w = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let len = 12 + body.len().div_ceil(4) * 4;
    let mut out = [w(kind), w(len as u32)].concat();
    out.extend_from_slice(body);
    out.resize(len - 4, 0);
    out.extend_from_slice(&w(len as u32));
    out
}

#[test]
fn a_capture_read_in_pieces_reads_as_the_whole_file_across_sections_of_either_byte_order() {
    // After the writer's little-endian section: a big-endian one with an interface, a
    // block of a type not read, an interface with a resolution out of range (an error), a
    // packet, and a packet on an interface never described (an error); then a section
    // header whose byte-order magic is neither, and a block whose length is too large.
    let file = small_capture();
    let packet = frames_of(&file).remove(3).1;
    let (u16b, u32b) = (|v: u16| v.to_be_bytes(), |v: u32| v.to_be_bytes());
    let shb = [&u32b(0x1A2B_3C4D)[..], &u16b(1), &u16b(0), &[0xff; 8]].concat();
    let idb = [&u16b(1)[..], &u16b(0), &u32b(0)].concat();
    let bad_idb = [&idb[..], &u16b(9), &u16b(1), &[0x7f, 0, 0, 0], &[0; 4]].concat();
    let epb = |iface: u32| {
        let head = [iface, 0, 1_000_000, packet.len() as u32, packet.len() as u32];
        let mut b: Vec<u8> = head.iter().flat_map(|v| v.to_be_bytes()).collect();
        b.extend_from_slice(&packet);
        b
    };
    let tail = [
        pcapng_block(0x0A0D_0D0A, &shb, true),
        pcapng_block(1, &idb, true),
        pcapng_block(0x0BAD, b"not read", true),
        pcapng_block(1, &bad_idb, true),
        pcapng_block(6, &epb(0), true),
        pcapng_block(6, &epb(5), true),
    ]
    .concat();
    let whole = [&file[..], &tail].concat();
    let blocks: Vec<_> = CaptureReader::new(&whole).expect("capture").collect();
    let errors: Vec<&String> =
        blocks.iter().filter_map(|b| b.as_ref().err()).map(|e| &e.problem).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("timestamp resolution 0x7f is out of range"), "{errors:?}");
    assert!(errors[1].contains("interface 5 was not described"), "{errors:?}");
    let last_packet = blocks.iter().rev().find_map(|b| match b {
        Ok(Block::Packet(p)) => Some(p),
        _ => None,
    });
    assert_eq!(last_packet.expect("a packet").data, &packet[..]);
    // Every cut of the appended part, then the damaged endings.
    for cut in file.len()..=whole.len() {
        amqpwire::fuzzing::stream_reads_as_whole(&whole[..cut]);
    }
    let mut bad_magic = pcapng_block(0x0A0D_0D0A, &shb, true);
    bad_magic[8] = 0x99;
    let mut too_long = pcapng_block(6, &epb(0), true);
    too_long[4..8].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    for (ending, said) in [(bad_magic, "byte-order magic"), (too_long, "is over the 67108864")] {
        let damaged = [&file[..], &tail, &ending].concat();
        let errors: Vec<String> = CaptureReader::new(&damaged)
            .expect("capture")
            .filter_map(|b| b.err().map(|e| e.problem))
            .collect();
        assert!(errors.last().is_some_and(|e| e.contains(said)), "{errors:?}");
        amqpwire::fuzzing::stream_reads_as_whole(&damaged);
        // From a source that never ends (a live pipe), the error comes from the block's
        // header: the stream does not read on towards the length it claims.
        let mut read = 0;
        let endless =
            std::io::Read::take(std::io::Read::chain(&damaged[..], std::io::repeat(0x55)), 1 << 30);
        let mut counted = Counted { inner: endless, read: &mut read };
        let mut stream = CaptureStream::new(&mut counted).expect("capture");
        let error = loop {
            match stream.next_block().expect("an error before the end") {
                Err(e) if e.fatal => break e,
                _ => {}
            }
        };
        assert!(error.problem.contains(said), "{error}");
        drop(stream);
        assert!(read < damaged.len() + 2 * 65536, "read {read} bytes");
    }
}

#[test]
fn a_large_capture_is_read_holding_a_block_and_a_read_at_a_time() {
    // About 24 MB: every fixture's exchange, over and over, in 1400-byte segments.
    let names = fixture_names();
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = names.iter().map(|n| fixture(n)).collect();
    let pairs: Vec<(&[u8], &[u8])> =
        exchanges.iter().map(|(c, s)| (c.as_slice(), s.as_slice())).collect();
    let once: usize = pairs.iter().map(|(c, s)| c.len() + s.len()).sum();
    let all = pairs.repeat((24 << 20) / once + 1);
    let opts = WriterOptions { mss: 1400, ..WriterOptions::default() };
    let file = write_exchanges(opts, &all);
    assert!(file.len() > 24 << 20, "{}", file.len());
    let whole = CaptureReader::new(&file).expect("capture").packets().count();
    let mut stream = CaptureStream::new(&file[..]).expect("capture");
    let (mut packets, mut held) = (0, 0);
    loop {
        // What the stream holds between blocks: all it read, less what it let go.
        held = held.max(stream.buffered());
        let Some(b) = stream.next_block() else { break };
        packets += usize::from(matches!(b.expect("block"), Block::Packet(_)));
    }
    assert_eq!((packets as u64, packets), (stream.packet_count(), whole));
    // No block here is over 2 KB: at most one read of 64 KiB and the block it ends in.
    assert!(held <= 64 * 1024 + 2048, "held {held} bytes of a {}-byte file", file.len());
}

#[test]
fn a_read_that_fails_ends_the_stream_with_an_error_after_what_came_before() {
    #[derive(Debug)]
    struct Failing<'a>(&'a [u8]);
    impl std::io::Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let file = small_capture();
    let cut = file.len() / 2;
    let whole: Vec<String> = CaptureReader::new(&file[..cut])
        .expect("capture")
        .filter_map(|b| b.ok().map(|b| format!("{b:?}")))
        .collect();
    let mut stream = CaptureStream::new(Failing(&file[..cut])).expect("capture");
    let mut read = Vec::new();
    let error = loop {
        match stream.next_block() {
            Some(Ok(b)) => read.push(format!("{b:?}")),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without saying its read failed"),
        }
    };
    assert_eq!(read, whole, "every block before the failure");
    assert!(
        error.fatal && error.problem == "reading the capture failed: the disk went away",
        "{error}"
    );
    assert!(error.offset < cut && error.offset > 0, "{error}");
    assert!(stream.next_block().is_none());
    // Failing before a file header is whole: refused as no capture is.
    let e = CaptureStream::new(Failing(&file[..10])).expect_err("no header");
    assert!(e.problem.contains("the disk went away"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Damaged captures

#[test]
fn a_capture_cut_short_names_the_packet_and_keeps_what_came_before() {
    let file = small_capture();
    let frames = frames_of(&file);
    let classic = pcap(1, false, false, &frames);
    // Cut inside the record header of packet 6, then inside its data.
    let header_end: usize = 24 + frames[..5].iter().map(|(_, f)| 16 + f.len()).sum::<usize>();
    for (cut, want) in [
        (header_end + 10, "packet 6 (file offset "),
        (header_end + 16 + 20, "packet 6 (file offset "),
    ] {
        let events = decode(&classic[..cut]);
        let e = events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Error(e) => Some(e.clone()),
                _ => None,
            })
            .expect("an error");
        assert!(e.fatal);
        assert_eq!(e.packet, Some(6));
        assert!(e.to_string().starts_with(want), "{e}");
        let problem = if cut == header_end + 10 {
            "the file ends inside the packet's record header (10 of 16 bytes)".to_owned()
        } else {
            format!("captured length {} exceeds the 20 bytes left in the file", frames[5].1.len())
        };
        assert_eq!(e.problem, problem);
        // The five packets before it were decoded: the handshake and two items.
        assert_eq!(decoded_items(&events)[&(1, C2S)].len(), 1);
    }
    // A pcapng cut inside a block.
    let events = decode(&file[..file.len() - 30]);
    let last_error = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Error(e) => Some(e.clone()),
        _ => None,
    });
    let e = last_error.expect("an error");
    assert!(e.fatal && e.problem.contains("exceeds the"), "{e}");
    assert_eq!(e.packet, Some(frames.len() as u64));
}

#[test]
fn garbage_after_a_valid_start_is_a_clear_error_never_a_panic() {
    let file = small_capture();
    let frames = frames_of(&file);
    // pcapng: the third packet's block replaced by garbage.
    let mut blocks = Vec::new();
    let mut pos = 0;
    while pos < file.len() {
        let len = u32::from_le_bytes(file[pos + 4..pos + 8].try_into().expect("4")) as usize;
        blocks.push(pos);
        pos += len;
    }
    let third_packet = blocks[2 + 2];
    let mut bad = file.clone();
    bad[third_packet..third_packet + 8].copy_from_slice(b"\xde\xad\xbe\xef\x00\x00\x10\x00");
    let events = decode(&bad);
    let e = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Error(e) => Some(e.clone()),
            _ => None,
        })
        .expect("an error");
    assert!(e.fatal);
    assert_eq!(e.offset, third_packet);
    assert_eq!(
        e.to_string(),
        format!(
            "file offset {third_packet}: block of type 0xefbeadde: block length 1048576 \
             exceeds the {} bytes left in the file (after packet 2)",
            file.len() - third_packet
        )
    );
    // A length past any block's is refused from the header (a stream need not wait).
    bad[third_packet + 4..third_packet + 8].copy_from_slice(b"\xf0\xff\xff\x7f");
    let e = first_error(&bad);
    assert!(e.fatal && e.offset == third_packet, "{e}");
    assert!(e.problem.contains("block length 2147483632 is over the 67108864 bytes"), "{e}");
    // A length that is not a multiple of 4, and a trailing length that disagrees.
    let mut bad = file.clone();
    bad[third_packet + 4] = bad[third_packet + 4].wrapping_add(1);
    let e = first_error(&bad);
    assert!(e.problem.contains("is not a multiple of 4"), "{e}");
    assert_eq!(e.packet, Some(3));
    let mut bad = file.clone();
    let next = blocks[5];
    bad[next - 1] ^= 0x40;
    let e = first_error(&bad);
    assert!(e.problem.contains("differs from the length at its start"), "{e}");

    // pcap: a captured length larger than the file, in the third record.
    let mut classic = pcap(1, false, false, &frames);
    let third: usize = 24 + frames[..2].iter().map(|(_, f)| 16 + f.len()).sum::<usize>();
    classic[third + 8..third + 12].copy_from_slice(&0x0010_0000u32.to_le_bytes());
    let e = first_error(&classic);
    assert_eq!(e.packet, Some(3));
    assert!(e.problem.starts_with("captured length 1048576 exceeds the"), "{e}");
    let mut huge = classic.clone();
    huge[third + 8..third + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let e = first_error(&huge);
    assert_eq!((e.packet, e.fatal), (Some(3), true));
    assert_eq!(
        e.problem,
        "captured length 2147483647 is over the 67108864 bytes a packet may have"
    );
    // Not a capture at all, and a header cut short.
    let e = CaptureReader::new(b"AMQP\x00\x01\x00\x00").expect_err("not a capture");
    assert!(e.problem.contains("no pcap or pcapng magic number"), "{e}");
    let e = CaptureReader::new(&classic[..10]).expect_err("short header");
    assert_eq!(e.problem, "pcap file header: the file ends after 10 of its 24 bytes");
    // An enhanced packet block naming an interface that was never described.
    let mut bad = file.clone();
    bad[blocks[2] + 8] = 9;
    let e = first_error(&bad);
    assert!(!e.fatal && e.problem.starts_with("interface 9 was not described"), "{e}");
    assert_eq!(e.packet, Some(1));
    // Every prefix and every single-byte change of a small capture: no panic.
    for cut in (0..file.len()).step_by(5) {
        let _ = decode(&file[..cut]);
    }
    for i in (0..file.len()).step_by(7) {
        let mut f = file.clone();
        f[i] ^= 0xa5;
        let _ = decode(&f);
    }
}

fn first_error(file: &[u8]) -> amqpwire::capture::CaptureError {
    decode(file)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::Error(e) => Some(e),
            _ => None,
        })
        .expect("an error")
}

// ---------------------------------------------------------------------------------------
// tshark agrees
/// Runs tshark on `file`: per packet, the TCP source port and the AMQP fields.
fn tshark(file: &Path) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"])
        .args([
            "-Y",
            "amqp || tcp.checksum.status == 0 || ip.checksum.status == 0 || tcp.analysis.flags",
        ])
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(["-e", "tcp.srcport", "-e", "amqp.init.id", "-e", "amqp.length", "-e", "amqp.type"])
        .args(["-e", "amqp.channel", "-e", "amqp.performative", "-e", "amqp.sasl.method"])
        .args(["-e", "tcp.checksum.status", "-e", "ip.checksum.status", "-e", "tcp.analysis.flags"])
        .args(["-e", "amqp.performative.arguments.deliveryId"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "tshark could not be run ({e}): this test needs it; install it with \
                 tests/peers/install.sh (apt-get install tshark)"
            )
        });
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

fn number(s: &str) -> u32 {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).expect("hex"),
        None => s.parse().expect("number"),
    }
}

#[test]
fn tshark_reads_the_writers_files_as_amqpwire_does() {
    let dir = std::env::temp_dir().join(format!("amqpwire-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The large exchange: 21-frame transfers each way, split over packets by a small MSS;
    // and SASL PLAIN with its frames on a second connection.
    let large = fixture("proton-to-rhea-large");
    let plain = fixture("rhea-to-proton-sasl-anonymous");
    let opts = WriterOptions { mss: 1460, ..WriterOptions::default() };
    let file = write_exchanges(opts, &[(&large.0, &large.1), (&plain.0, &plain.1)]);
    let path = dir.join("exchange.pcapng");
    std::fs::write(&path, &file).expect("write");
    let rows = tshark(&path);
    std::fs::remove_dir_all(&dir).ok();

    // tshark's list, per connection and direction.
    let ports = |client: u16| (client, 5672u16);
    let mut theirs: BTreeMap<(u32, Direction), Vec<Item>> = BTreeMap::new();
    let mut delivery_ids = Vec::new();
    for row in &rows {
        let f = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        // 1: good (0 would be bad, 2 unverified).
        assert_eq!(f(7), "1", "tshark finds a bad TCP checksum: {row:?}");
        assert_eq!(f(8), "1", "tshark finds a bad IP checksum: {row:?}");
        assert_eq!(f(9), "", "tshark's TCP analysis flags a packet: {row:?}");
        let sport: u16 = f(0).parse().expect("port");
        let (conn, dir) = match sport {
            5672 => (0, S2C),
            p => (u32::from(p - ports(49152).0) + 1, C2S),
        };
        let split = |i: usize| f(i).split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let (inits, lengths, types, channels) = (split(1), split(2), split(3), split(4));
        let (perfs, sasl) = (split(5), split(6));
        assert!(lengths.len() + inits.len() <= 1, "one item per packet: {row:?}");
        delivery_ids.extend(split(10).into_iter().map(number));
        let item = if let Some(id) = inits.first() {
            Item::Header(number(id) as u8)
        } else if let Some(len) = lengths.first() {
            Item::Frame {
                size: number(len),
                kind: number(types[0]) as u8,
                channel: number(channels[0]) as u16,
                code: perfs.first().or(sasl.first()).map(|c| number(c) as u8),
            }
        } else {
            continue;
        };
        theirs.entry((conn, dir)).or_default().push(item);
    }
    // Split the server's items between the connections by replaying them in order:
    // the writer wrote connection 1 completely before connection 2.
    let server_items = theirs.remove(&(0, S2C)).unwrap_or_default();
    let events = decode(&file);
    let ours = decoded_items(&events);
    let n1 = ours[&(1, S2C)].len();
    theirs.insert((1, S2C), server_items[..n1.min(server_items.len())].to_vec());
    theirs.insert((2, S2C), server_items[n1.min(server_items.len())..].to_vec());
    assert_eq!(theirs, ours, "tshark and amqpwire list the same headers and frames");
    // And a key field: the delivery ids of the transfers (tshark lists them where set).
    let our_ids: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Record(Record::Frame(f)) => match &f.frame {
                Ok(amqpwire::frame::Frame {
                    body:
                        FrameBody::Amqp {
                            performative: amqpwire::types::Performative::Transfer(t), ..
                        },
                    ..
                }) => t.delivery_id.map(|d| d.0),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(!our_ids.is_empty());
    assert_eq!(delivery_ids, our_ids);
    assert!(
        ours[&(1, C2S)]
            .iter()
            .filter(|i| matches!(i, Item::Frame { code: Some(0x14), .. }))
            .count()
            >= 21
    );
}

/// Runs a Wireshark tool (tshark, editcap, mergecap); this test needs it.
fn wireshark_tool(tool: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{tool} could not be run ({e}): this test needs it; install it with \
             tests/peers/install.sh (apt-get install tshark)"
        )
    });
    assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn files_rewritten_by_wiresharks_tools_decode_the_same() {
    let dir = std::env::temp_dir().join(format!("amqpwire-editcap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (c2s, s2c) = fixture("rhea-to-proton-messages");
    let opts = WriterOptions { mss: 500, ..WriterOptions::default() };
    let ours = dir.join("ours.pcapng");
    std::fs::write(&ours, write_exchanges(opts, &[(&c2s, &s2c)])).expect("write");
    let (b, s2c_b) = fixture("proton-to-rhea-no-sasl");
    let other = dir.join("other.pcapng");
    let opts = WriterOptions { server_port: 5673, ..WriterOptions::default() };
    std::fs::write(&other, write_exchanges(opts, &[(&b, &s2c_b)])).expect("write");
    let path = |name: &str| dir.join(name);
    let os = |p: &Path| p.as_os_str().to_owned();
    // libpcap formats by editcap, pcapng rewritten by tshark, and two files merged by
    // mergecap into one pcapng with two interfaces.
    for (format, name) in
        [("pcap", "a.pcap"), ("nsecpcap", "a.nsec.pcap"), ("modpcap", "a.mod.pcap")]
    {
        wireshark_tool("editcap", &["-F".as_ref(), format.as_ref(), &os(&ours), &os(&path(name))]);
    }
    wireshark_tool("tshark", &["-r".as_ref(), &os(&ours), "-w".as_ref(), &os(&path("t.pcapng"))]);
    wireshark_tool(
        "mergecap",
        &["-w".as_ref(), &os(&path("merged.pcapng")), &os(&ours), &os(&other)],
    );
    wireshark_tool(
        "editcap",
        &["-s".as_ref(), "120".as_ref(), &os(&ours), &os(&path("snap.pcapng"))],
    );
    for name in ["a.pcap", "a.nsec.pcap", "a.mod.pcap", "t.pcapng", "merged.pcapng"] {
        let file = std::fs::read(path(name)).expect("read");
        let events = decode(&file);
        assert!(errors(&events).is_empty(), "{name}: {:?}", errors(&events));
        let items = decoded_items(&events);
        // Connections by server port (mergecap interleaves the two files by time).
        let number = |port: u16| {
            events
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::Connection(c) if c.server.port() == port => e.connection,
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name}: no connection to port {port}"))
        };
        let n = number(5672);
        assert_eq!(items[&(n, C2S)], stream_items(&c2s), "{name}");
        assert_eq!(items[&(n, S2C)], stream_items(&s2c), "{name}");
        if name == "merged.pcapng" {
            let m = number(5673);
            assert_eq!(items[&(m, C2S)], stream_items(&b), "{name}");
            assert_eq!(items[&(m, S2C)], stream_items(&s2c_b), "{name}");
            assert_eq!(items.len(), 4);
        }
        let modified = name == "a.mod.pcap";
        match &events[0].kind {
            EventKind::Section(s) if name.ends_with("pcap") => assert!(
                matches!(s.format, Format::Pcap { nanos, modified: m, .. }
                    if nanos == name.contains("nsec") && m == modified),
                "{name}: {s:?}"
            ),
            EventKind::Section(s) => assert!(matches!(s.format, Format::Pcapng { .. }), "{s:?}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Packets cut at 120 bytes: a gap for each packet cut, and the frames that are whole
    // in what was kept decode.
    let file = std::fs::read(path("snap.pcapng")).expect("read");
    let events = decode(&file);
    let cut = |d: Direction| {
        frames_of(&std::fs::read(&ours).expect("read"))
            .iter()
            .filter(|(_, f)| f.len() > 120 && (f[34..36] == 5672u16.to_be_bytes()) == (d == S2C))
            .count()
    };
    for (d, stream) in [(C2S, &c2s), (S2C, &s2c)] {
        let gaps = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Gap { .. }) && e.direction == Some(d))
            .count();
        assert_eq!(gaps, cut(d), "{d:?}");
        let all = stream_items(stream);
        let got = &decoded_items(&events)[&(1, d)];
        assert!(got.len() >= 4 && got.iter().all(|i| all.contains(i)), "{d:?}: {got:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// The command line
fn amqpwire(args: &[&std::ffi::OsStr], stdin: Option<&[u8]>) -> std::process::Output {
    cli::run_with_input(args, stdin.unwrap_or_default())
}

#[test]
fn amqpwire_decode_takes_a_capture_file_or_standard_input() {
    let dir = std::env::temp_dir().join(format!("amqpwire-cli-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (c2s, s2c) = fixture("rhea-to-rhea-sasl-plain");
    let file = write_exchanges(WriterOptions::default(), &[(&c2s, &s2c)]);
    let path = dir.join("x.pcapng");
    std::fs::write(&path, &file).expect("write");

    let text = amqpwire(&["decode".as_ref(), path.as_os_str()], None);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let out = String::from_utf8(text.stdout).expect("utf-8");
    assert!(out.starts_with("capture: pcapng, written by amqpwire "), "{out}");
    assert!(
        out.contains(
            "[ 0.000000s] c1 (packet 1) connection: 192.0.2.1:49152 -> 192.0.2.2:5672 over tcp"
        ),
        "{out}"
    );
    assert!(out.contains("c1 -> c2s (packet 4)\n       0  41 4d 51 50 03 01 00 00"), "{out}");
    assert!(out.contains("c1 <- s2c (packet 5)\n       0  41 4d 51 50 03 01 00 00"), "{out}");
    assert!(out.contains("credentials masked"), "the PLAIN password is masked: {out}");
    assert!(!out.contains("73 65 63 72 65 74"), "the password leaked");

    let json = amqpwire(&["decode".as_ref(), "--json".as_ref(), "-".as_ref()], Some(&file));
    assert!(json.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(json.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines[0]["kind"], "capture");
    assert_eq!(lines[0]["start"], "2026-11-18T11:06:40.000000Z");
    assert_eq!(lines[1]["kind"], "connection");
    assert_eq!(lines[1]["transport"], "tcp");
    assert_eq!(lines[1]["server"], "192.0.2.2:5672");
    let mut per_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &lines[2..] {
        if l["kind"] == "frame" || l["kind"] == "header" {
            assert_eq!(l["connection"], 1);
            assert!(l["time"].as_f64().expect("time") > 0.0);
            assert!(l["packet"].as_u64().expect("packet") >= 4);
            let what = l["performative"].as_str().unwrap_or("header").to_owned();
            per_dir
                .entry(l["direction"].as_str().expect("direction").into())
                .or_default()
                .push(what);
        }
    }
    let names = |s: &[u8]| -> Vec<String> {
        Inspector::inspect_all(s, DecodeOptions::LENIENT)
            .iter()
            .map(|r| match r {
                Record::Frame(f) => f.performative().unwrap_or("?").to_owned(),
                _ => "header".into(),
            })
            .collect()
    };
    assert_eq!(per_dir["c2s"], names(&c2s));
    assert_eq!(per_dir["s2c"], names(&s2c));
    let last = lines.last().expect("lines");
    assert_eq!((last["kind"].as_str(), last["event"].as_str()), (Some("tcp"), Some("fin")));

    // The ladder view draws the records, and the connection and the FINs as notes.
    let page = dir.join("x.html");
    let o =
        amqpwire(&["decode".as_ref(), "--html".as_ref(), page.as_os_str(), path.as_os_str()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.contains(r#""performative":"sasl-init""#), "{html}");
    assert!(html.contains(r#""direction":"s2c""#));
    assert!(
        html.contains(r#""kind":"event","#) && html.contains(r#""event":"FIN after 655 bytes""#)
    );
    assert!(html.contains("connection: 192.0.2.1:49152 -> 192.0.2.2:5672 over tcp"), "{html}");

    // A capture cut short: what came is decoded, the error says where, status 1.
    let cut = amqpwire(&["decode".as_ref(), "--json".as_ref()], Some(&file[..file.len() - 100]));
    assert_eq!(cut.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&cut.stderr);
    assert!(stderr.contains("1 AMQP connections") && stderr.contains("1 errors"), "{stderr}");
    let out = String::from_utf8(cut.stdout).expect("utf-8");
    let err: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|l| l["kind"] == "error")
        .expect("an error line");
    assert_eq!(err["in"], "capture");
    assert_eq!(err["fatal"], true);
    assert!(err["packet"].as_u64().is_some());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn amqpwire_decode_reads_a_large_input_as_it_comes_and_prints_what_the_whole_would() {
    let dir = std::env::temp_dir().join(format!("amqpwire-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json_of = |o: std::process::Output| -> Vec<String> {
        // (The stream below repeats its frames: exit status 1, for the errors it finds.)
        assert!(o.status.code().is_some_and(|c| c < 2), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8").lines().map(str::to_owned).collect()
    };

    // A capture of about 3 MB (three of decode's reads of standard input and more).
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = fixture_names().iter().map(|n| fixture(n)).collect();
    let pairs: Vec<(&[u8], &[u8])> =
        exchanges.iter().map(|(c, s)| (c.as_slice(), s.as_slice())).collect();
    let once: usize = pairs.iter().map(|(c, s)| c.len() + s.len()).sum();
    let file = write_exchanges(WriterOptions::default(), &pairs.repeat((3 << 20) / once + 1));
    let events = CaptureDecoder::decode_all(&file, DecodeOptions::LENIENT, true);
    let start = CaptureReader::new(&file)
        .expect("capture")
        .packets()
        .find_map(Result::ok)
        .map_or(Duration::ZERO, |p| p.time);
    let whole: Vec<String> = events
        .iter()
        .flat_map(|e| amqpwire::capture::event_json(e, start))
        .map(|j| j.to_string())
        .collect();
    assert!(whole.len() > 2_000, "{}", whole.len());
    let path = dir.join("large.pcapng");
    std::fs::write(&path, &file).expect("write");
    let from_file =
        json_of(amqpwire(&["decode".as_ref(), "--json".as_ref(), path.as_os_str()], None));
    assert!(from_file == whole, "decode of the file differs from the capture decoded whole");
    let piped = json_of(amqpwire(&["decode".as_ref(), "--json".as_ref()], Some(&file)));
    assert!(piped == whole, "decode of standard input differs from the capture decoded whole");

    // A byte stream of about 3 MB: a client's header, then its frames over and over (a
    // 1 MB piece ends inside a frame).
    let (c2s, _) = fixture("proton-to-rhea-large");
    let frames: Vec<u8> = items(&c2s)[1..].concat();
    let mut stream = c2s[..8].to_vec();
    while stream.len() < 3 << 20 {
        stream.extend_from_slice(&frames);
    }
    let mut whole = String::new();
    for r in Inspector::inspect_all(&stream, DecodeOptions::LENIENT) {
        amqpwire::inspect::json::write_record_json(&r, &mut whole);
    }
    let whole: Vec<String> = whole.lines().map(str::to_owned).collect();
    let piped = json_of(amqpwire(&["decode".as_ref(), "--json".as_ref()], Some(&stream)));
    assert_eq!(piped.len(), whole.len());
    assert!(piped == whole, "decode of a stream in pieces differs from the stream decoded whole");

    // A stream that breaks off early and goes on for 2.5 MB: masked, the bytes after the
    // first piece are counted in `undecoded` lines; shown, they come back through encode.
    let mut broken = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x03\x02\x00\x00\x00".to_vec();
    broken.extend((0..5 << 19).map(|i: u32| (i % 251) as u8));
    // (A file, cut into pieces of a mebibyte; standard input is decoded as it arrives.)
    let broken_path = dir.join("broken.bin");
    std::fs::write(&broken_path, &broken).expect("write");
    let masked =
        json_of(amqpwire(&["decode".as_ref(), "--json".as_ref(), broken_path.as_os_str()], None));
    let undecoded: Vec<serde_json::Value> = masked
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .filter(|l: &serde_json::Value| l["kind"] == "undecoded")
        .collect();
    assert_eq!(undecoded.len(), 2, "{masked:?}");
    assert_eq!(undecoded[0]["offset"], 1 << 20);
    assert!(
        undecoded.iter().all(|l| l["bytes"].is_u64() && l["redacted"] == true),
        "{undecoded:?}"
    );
    let shown =
        amqpwire(&["decode".as_ref(), "--json".as_ref(), "--show-secrets".as_ref()], Some(&broken));
    let back = amqpwire(&["encode".as_ref()], Some(&shown.stdout));
    assert!(back.status.success(), "{}", String::from_utf8_lossy(&back.stderr));
    assert!(back.stdout == broken, "encode of decode --show-secrets is not the stream");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// The fuzz target's seeds
/// Writes the seeds of `fuzz/corpus/capture/`: small captures of every shape the decoder
/// reads. Run by hand after a change of format: `cargo test --test capture -- --ignored`.
#[test]
#[ignore = "rewrites fuzz/corpus/capture/"]
fn regenerate_fuzz_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/capture");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let (c2s, s2c) = fixture("rhea-to-rhea-no-sasl");
    let small = write_exchanges(WriterOptions { mss: 400, ..Default::default() }, &[(&c2s, &s2c)]);
    let frames = frames_of(&small);
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![("pcapng-no-sasl", small.clone())];
    seeds.push(("pcap-be-nanos-sll2", {
        let p: Vec<_> = frames.iter().map(|(t, f)| (*t, relink(276, f))).collect();
        pcap(276, true, true, &p)
    }));
    seeds.push(("pcap-null-loopback", {
        let p: Vec<_> = frames.iter().map(|(t, f)| (*t, relink(0, f))).collect();
        pcap(0, false, false, &p)
    }));
    let mut dropped = frames.clone();
    dropped.remove(6);
    dropped.swap(8, 9);
    seeds.push(("pcap-gap-reordered", pcap(1, false, false, &dropped)));
    seeds.push(("pcapng-truncated", small[..small.len() - 77].to_vec()));
    let v6 = WriterOptions {
        client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
        server_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
        ..Default::default()
    };
    let mut w = PcapWriter::new(Vec::new(), v6).expect("writer");
    w.write(1, C2S, b"AMQP\x00\x01\x00\x00\x00\x00\x00\x08\x02\x00\x00\x00", at(0)).expect("w");
    w.reset(1, S2C, at(1)).expect("reset");
    seeds.push(("pcapng-ipv6-reset", w.into_inner()));
    let request =
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: AMQPWSB10\r\n\r\n";
    let mut client = request.as_bytes().to_vec();
    for (i, item) in items(&c2s).into_iter().take(4).enumerate() {
        client.extend(ws_frame(i != 1, if i == 2 { 0 } else { 2 }, item, Some([1, 2, 3, i as u8])));
    }
    client.extend(ws_frame(true, 9, b"hi", Some([9, 9, 9, 9])));
    let mut server = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
    for item in items(&s2c).into_iter().take(3) {
        server.extend(ws_frame(true, 2, item, None));
    }
    server.extend(ws_frame(true, 8, b"\x03\xe8", None));
    let mut w = PcapWriter::new(Vec::new(), WriterOptions { mss: 300, ..Default::default() })
        .expect("writer");
    w.write(1, C2S, &client, at(0)).expect("w");
    w.write(1, S2C, &server, at(1)).expect("w");
    seeds.push(("pcapng-websocket", w.into_inner()));
    seeds.push(("raw-amqp-stream", c2s[..200].to_vec()));
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}

#[test]
fn a_writer_s_seed_gives_its_connections_their_initial_sequence_numbers() {
    let write = |seed: u64| {
        let mut w = PcapWriter::new(Vec::new(), WriterOptions { seed, ..WriterOptions::default() })
            .expect("writer");
        w.write(1, C2S, b"AMQP\x00\x01\x00\x00", at(0)).expect("write");
        w.into_inner()
    };
    let syn_seq = |file: &[u8]| {
        let frames = frames_of(file);
        parse_tcp(1, &frames[0].1).expect("tcp").expect("a segment").seq
    };
    // The same seed, the same file; another seed, other initial sequence numbers (and the
    // default, 0, the numbers files had before seeds).
    assert_eq!(write(7), write(7));
    assert_ne!(syn_seq(&write(7)), syn_seq(&write(8)));
    assert_eq!(syn_seq(&write(0)), 479_680_206);
}

/// amqpwire's own captures number connections as its traces do: by their SYNs (the
/// comment's `amqpwire connection N`), even when a later connection sends first or one
/// sends nothing at all.
#[test]
fn an_amqpwire_capture_numbers_connections_by_their_syns_whoever_sends_first() {
    let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
    let info = |_: u64| ConnectionInfo {
        transport: Some("tcp".into()),
        url: Some("amqp://127.0.0.1:5672".into()),
        ..ConnectionInfo::default()
    };
    for conn in 1..=3 {
        w.open(conn, &info(conn), at(0)).expect("open");
    }
    // Connection 3 sends first, 2 never sends.
    w.write(3, Direction::ClientToServer, b"AMQP\x00\x01\x00\x00", at(1)).expect("write");
    w.write(1, Direction::ClientToServer, b"AMQP\x00\x01\x00\x00", at(2)).expect("write");
    w.close_all(at(3)).expect("close");
    let numbered: Vec<(u32, String)> = decode(w.get_ref())
        .iter()
        .filter_map(|e| match &e.kind {
            amqpwire::capture::EventKind::Connection(c) => {
                Some((e.connection.unwrap_or(0), c.comments.join(" ")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(numbered.len(), 3, "{numbered:?}");
    for (n, comment) in &numbered {
        assert!(comment.starts_with(&format!("amqpwire connection {n};")), "{numbered:?}");
    }
}

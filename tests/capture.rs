//! Packet captures: the pcapng writer, the pcap/pcapng reader and TCP reassembly, on the
//! real AMQP exchanges of tests/fixtures/wire/ and on segments crafted by hand.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqpwire::capture::net::{parse_tcp, TcpSegment};
use amqpwire::capture::tcp::{Limits, Reassembler, TcpEvent};
use amqpwire::capture::{
    Block, CaptureReader, ConnectionInfo, Direction, PcapWriter, WriterOptions,
};
use amqpwire::codec::DecodeOptions;
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

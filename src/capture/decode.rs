//! The capture decoder: packets in, the AMQP connections in them out, decoded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::net::{link_type_name, link_type_supported, parse_tcp};
use super::reader::{Block, CaptureError, CaptureReader, Packet, Section};
use super::tcp::{Reassembler, TcpEvent};
use super::websocket::{self, Head, Opcode, Unframer, WsItem};
use super::Direction;
use crate::codec::DecodeOptions;
use crate::inspect::{Inspector, Record};

/// How many bytes of each direction are looked at to recognise a connection's protocol.
const SNIFF: usize = websocket::MAX_HEAD;

/// How many bytes of each direction of a connection the capture joined midway are looked
/// through for a frame header: the capture may start inside a frame of up to a megabyte
/// (a large message's transfer), after which the next header comes.
const JOINED_SNIFF: usize = 1 << 20;

/// The most bytes the connections still being recognised hold all together (64 MiB, as
/// the reassembler's bound): a capture of many connections joined midway that are not
/// AMQP (nothing in them looks like a frame header) cannot hold a megabyte of each.
const SNIFFING_HELD: usize = 64 << 20;

/// Server ports on which a TLS ClientHello is taken for AMQP (or AMQP over WebSocket) in
/// TLS: AMQPS, AMQP, HTTPS.
const TLS_PORTS: [u16; 3] = [5671, 5672, 443];

/// Ports whose connections are reported when they are skipped (likely AMQP that cannot be
/// decoded, such as a connection the capture joined in the middle).
const AMQP_PORTS: [u16; 2] = [5671, 5672];

/// The message for a connection in TLS, without a key log.
pub(super) const TLS_NOTE: &str =
    "TLS: give --keylog FILE (the key log SSLKEYLOGFILE writes) to decrypt it";

/// How an AMQP connection was carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// AMQP directly over TCP.
    Tcp,
    /// AMQP over WebSocket (`AMQPWSB10`) over TCP.
    WebSocket,
    /// TLS where AMQP was expected: not decoded.
    Tls,
}

impl Transport {
    /// `tcp`, `websocket` or `tls`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::WebSocket => "websocket",
            Self::Tls => "tls",
        }
    }
}

/// A connection found in the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSummary {
    /// The side that opened it.
    pub client: SocketAddr,
    /// The side that accepted it.
    pub server: SocketAddr,
    /// What carries the AMQP bytes.
    pub transport: Transport,
    /// Whether the TCP handshake is in the capture.
    pub handshake: bool,
    /// Comments of its packets up to now (a pcapng file from [`super::PcapWriter`] puts the
    /// real transport and addresses on the SYN).
    pub comments: Vec<String>,
}

/// A WebSocket event of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// The client's upgrade request.
    Request {
        /// Its request line.
        line: String,
        /// Its `Sec-WebSocket-Protocol` header, if any.
        protocol: Option<String>,
    },
    /// The server's answer.
    Response {
        /// Its status line.
        line: String,
        /// Its status code (101 when it switched to WebSocket).
        status: u16,
        /// Its `Sec-WebSocket-Protocol` header, if any.
        protocol: Option<String>,
    },
    /// A control frame.
    Control {
        /// Ping, pong or close.
        opcode: Opcode,
        /// Its payload (a close frame's code and reason).
        payload: Vec<u8>,
        /// Where it starts in the direction's TCP stream.
        offset: u64,
    },
    /// A text message, which AMQP does not use: skipped.
    Text {
        /// Its length.
        len: u64,
        /// Where it starts in the direction's TCP stream.
        offset: u64,
    },
    /// A breach of RFC 6455 or an upgrade that failed; when `fatal`, the direction is not
    /// decoded further.
    Error {
        /// Where it is in the direction's TCP stream.
        offset: u64,
        /// What is wrong.
        message: String,
        /// Whether decoding of the direction stops.
        fatal: bool,
    },
}

/// What the decoder found.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The start of the capture or of a pcapng section.
    Section(Section),
    /// A connection recognised as AMQP (over TCP or WebSocket) or as TLS where AMQP would
    /// be; it gets the next connection number.
    Connection(ConnectionSummary),
    /// A protocol header, frame or error of the AMQP stream of one direction, as
    /// [`Inspector`] gives it (offsets count in that direction's AMQP bytes).
    Record(Record),
    /// Bytes of one direction the capture does not hold. Over TCP, decoding resumes at the
    /// next frame header ([`EventKind::Resync`]); over WebSocket, whose framing is lost,
    /// the direction is not decoded further.
    Gap {
        /// The sequence number of the first missing byte.
        seq: u32,
        /// Where the missing bytes start in the direction's TCP stream.
        offset: u64,
        /// How many bytes are missing.
        len: u64,
    },
    /// After a gap, decoding of the direction resumes at what looks like the start of a
    /// frame or protocol header: the records that follow count their offsets from there
    /// (a new inspector starts), and a delivery whose first transfers were before the gap
    /// is not joined.
    Resync {
        /// Where decoding resumes, in the direction's TCP stream.
        offset: u64,
    },
    /// A WebSocket handshake step, control frame, text message or error.
    WebSocket(WsEvent),
    /// The direction's sender closed (FIN) or reset (RST) the connection.
    Closed {
        /// RST rather than FIN.
        reset: bool,
        /// Bytes the direction carried, gaps included (its TCP stream length).
        offset: u64,
    },
    /// A note: a connection in TLS, a connection skipped, a link type not supported.
    Info(String),
    /// A damaged capture file or packet.
    Error(CaptureError),
}

/// One thing the decoder found, with where and when.
#[derive(Clone, Debug)]
pub struct CaptureEvent {
    /// The packet it came from (1-based), or `None` for a section header and for what the
    /// end of the capture brings out.
    pub packet: Option<u64>,
    /// The capture time of that packet (of the last packet at the end), since the Unix
    /// epoch; zero before the first packet.
    pub time: Duration,
    /// The connection's number (from 1, in the order connections are recognised), for
    /// events of one connection.
    pub connection: Option<u32>,
    /// The direction, for events of one direction.
    pub direction: Option<Direction>,
    /// What it is.
    pub kind: EventKind,
}

impl CaptureEvent {
    /// How many errors the event reports: a damaged file or packet, a gap, a WebSocket
    /// error, and in records, as `amqpwire decode` counts them, framing errors, truncation,
    /// frames and messages that do not decode, and frames on the wrong layer.
    pub fn errors(&self) -> usize {
        match &self.kind {
            EventKind::Error(_) | EventKind::Gap { .. } => 1,
            EventKind::WebSocket(WsEvent::Error { .. }) => 1,
            EventKind::Record(r) => r.errors(),
            _ => 0,
        }
    }
}

/// Counts of what the decoder saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Packets read (damaged ones included).
    pub packets: u64,
    /// TCP connections seen.
    pub tcp_connections: u64,
    /// Connections decoded as AMQP over TCP.
    pub amqp: u32,
    /// Connections decoded as AMQP over WebSocket.
    pub websocket: u32,
    /// Connections in TLS where AMQP would be.
    pub tls: u32,
    /// TCP connections that are none of these (not decoded).
    pub skipped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Sniffing,
    Amqp,
    WebSocket,
    Tls,
    Ignored,
}

#[derive(Debug, Default)]
struct Side {
    /// The first bytes (while the protocol is being recognised, or the HTTP head).
    first: Vec<u8>,
    /// Bytes of the TCP stream so far, gaps included.
    tcp_offset: u64,
    /// Bytes given to the inspector.
    amqp_offset: u64,
    inspector: Option<Inspector>,
    ws: Option<Unframer>,
    /// The HTTP head is behind us (WebSocket).
    head_done: bool,
    /// Nothing more is decoded (TLS, a fatal WebSocket error, a gap in WebSocket, the end).
    stopped: bool,
    /// After a gap: looking for the next frame header in `scan`, which starts at TCP
    /// stream offset `scan_start`.
    resync: bool,
    scan: Vec<u8>,
    scan_start: u64,
    /// FIN or RST seen, or the data ended before the protocol was known.
    ended: bool,
    /// A frame header was found in this direction (a connection joined midway), and the
    /// last bytes looked through, in which one could still start.
    boundary: bool,
    carry: Vec<u8>,
    /// This direction sent the AMQP TLS header (`AMQP 2 1 0 0`) and TLS follows it, which
    /// the key log decrypts.
    #[cfg(feature = "keylog")]
    upgraded: bool,
}

#[derive(Debug)]
struct Conn {
    number: Option<u32>,
    client: SocketAddr,
    server: SocketAddr,
    handshake: bool,
    comments: Vec<String>,
    state: State,
    sides: [Side; 2],
    /// TCP events held while the protocol is being recognised, with their packet and time.
    held: Vec<(Option<u64>, Duration, TcpEvent)>,
    held_bytes: usize,
    tls_noted: bool,
    /// The packet and time it was first seen at.
    opened: (Option<u64>, Duration),
    /// TLS being decrypted with the key log, and what it carries once known (AMQP or
    /// WebSocket, from the client's first bytes).
    #[cfg(feature = "keylog")]
    tls: Option<super::tls::TlsSession>,
    #[cfg(feature = "keylog")]
    inner: Option<State>,
}

/// Finds the AMQP connections of a capture and decodes both directions of each, in capture
/// order. Feed it what a [`CaptureReader`] reads ([`push_block`](Self::push_block)), take
/// the events after each, and call [`finish`](Self::finish) at the end.
///
/// A TCP connection is AMQP when either direction starts with an AMQP 1.0 protocol header
/// (`AMQP` 0, 2 or 3, version 1.0.0), on any port; AMQP over WebSocket when the client's
/// first bytes are an HTTP upgrade to `websocket` offering `AMQPWSB10`; TLS when the
/// client's first bytes are a TLS handshake record on port 5671, 5672 or 443, or on any
/// port when the key log holds that session's secrets (decrypted with a key log, else
/// reported). Other connections are skipped (and reported when on port 5671 or 5672).
///
/// ```
/// use std::time::UNIX_EPOCH;
/// use amqpwire::capture::{CaptureDecoder, Direction, EventKind, PcapWriter, WriterOptions};
/// use amqpwire::codec::DecodeOptions;
/// use amqpwire::inspect::Record;
///
/// let mut w = PcapWriter::new(Vec::new(), WriterOptions::default())?;
/// w.write(7, Direction::ClientToServer, b"AMQP\x00\x01\x00\x00", UNIX_EPOCH)?;
/// let events = CaptureDecoder::decode_all(&w.into_inner(), DecodeOptions::LENIENT, true);
/// assert!(events.iter().any(|e| matches!(e.kind, EventKind::Record(Record::Header { .. }))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CaptureDecoder {
    opts: DecodeOptions,
    redact: bool,
    tcp: Reassembler,
    conns: BTreeMap<u64, Conn>,
    next_number: u32,
    events: VecDeque<CaptureEvent>,
    packet: Option<u64>,
    time: Duration,
    links_reported: BTreeSet<u16>,
    stats: DecodeStats,
    /// Bytes held by the connections still being recognised, all together.
    sniffing_held: usize,
    /// IPv4 datagrams arriving in fragments.
    defrag: super::net::Defrag,
    /// The key log that TLS connections are decrypted with.
    #[cfg(feature = "keylog")]
    keylog: Option<std::sync::Arc<super::tls::KeyLog>>,
}

impl CaptureDecoder {
    /// A decoder whose inspectors decode with `opts`.
    pub fn new(opts: DecodeOptions) -> Self {
        Self {
            opts,
            redact: true,
            tcp: Reassembler::new(),
            conns: BTreeMap::new(),
            next_number: 0,
            events: VecDeque::new(),
            packet: None,
            time: Duration::ZERO,
            links_reported: BTreeSet::new(),
            stats: DecodeStats::default(),
            sniffing_held: 0,
            defrag: super::net::Defrag::new(),
            #[cfg(feature = "keylog")]
            keylog: None,
        }
    }

    /// Decrypts TLS connections with the secrets of `keys` (a key log), instead of only
    /// reporting them.
    #[cfg(feature = "keylog")]
    pub fn with_keylog(mut self, keys: super::tls::KeyLog) -> Self {
        self.keylog = Some(std::sync::Arc::new(keys));
        self
    }

    /// Whether to mask credentials, as [`Inspector::redact_secrets`] (on by default).
    pub fn redact_secrets(mut self, on: bool) -> Self {
        self.redact = on;
        self
    }

    /// Every event of a whole capture file (an error event alone when it is not one).
    pub fn decode_all(data: &[u8], opts: DecodeOptions, redact: bool) -> Vec<CaptureEvent> {
        let mut d = Self::new(opts).redact_secrets(redact);
        let mut out = Vec::new();
        match CaptureReader::new(data) {
            Ok(reader) => {
                for block in reader {
                    d.push_block(block);
                    out.extend(std::iter::from_fn(|| d.next_event()));
                }
            }
            Err(e) => d.push_block(Err(e)),
        }
        d.finish();
        out.extend(std::iter::from_fn(|| d.next_event()));
        out
    }

    /// What has been counted so far.
    pub fn stats(&self) -> DecodeStats {
        DecodeStats { tcp_connections: self.tcp.stats().connections, ..self.stats }
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<CaptureEvent> {
        self.events.pop_front()
    }

    /// Takes the next item a [`CaptureReader`] read.
    pub fn push_block(&mut self, block: Result<Block<'_>, CaptureError>) {
        match block {
            Ok(Block::Packet(p)) => self.push_packet(&p),
            Ok(Block::Section(s)) => {
                let time = self.time;
                self.push(None, time, None, None, EventKind::Section(s));
            }
            Err(e) => {
                if e.packet.is_some() {
                    self.stats.packets += 1;
                }
                self.packet = e.packet;
                self.emit(None, None, EventKind::Error(e));
            }
        }
    }

    /// Takes the next packet of the capture.
    pub fn push_packet(&mut self, p: &Packet<'_>) {
        self.stats.packets += 1;
        self.packet = Some(p.number);
        self.time = p.time;
        if !link_type_supported(p.link_type) {
            if self.links_reported.insert(p.link_type) {
                let msg = format!(
                    "{} is not supported: its packets are skipped",
                    link_type_name(p.link_type)
                );
                self.emit(None, None, EventKind::Info(msg));
            }
            return;
        }
        let reassembled;
        let parsed = match super::net::fragment(p.link_type, p.data) {
            None => parse_tcp(p.link_type, p.data),
            Some(f) => match self.defrag.push(f) {
                Ok(None) => return,
                Ok(Some(d)) => {
                    reassembled = d;
                    reassembled.segment().map(Some)
                }
                Err(problem) => Err(problem),
            },
        };
        let seg = match parsed {
            Ok(Some(seg)) => seg,
            Ok(None) => return,
            Err(problem) => {
                let e = CaptureError {
                    packet: Some(p.number),
                    offset: p.offset,
                    fatal: false,
                    problem,
                };
                self.emit(None, None, EventKind::Error(e));
                return;
            }
        };
        self.tcp.push(&seg);
        self.pump(&p.comments);
    }

    /// The end of the capture: holes become gaps, connections still being recognised are
    /// decided with the bytes there are, and each direction's unfinished frame is reported.
    pub fn finish(&mut self) {
        for note in self.defrag.incomplete() {
            let time = self.time;
            self.push(None, time, None, None, EventKind::Info(note));
        }
        self.tcp.finish();
        self.pump(&[]);
        self.packet = None;
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in &ids {
            if self.conns.get(id).is_some_and(|c| c.state == State::Sniffing) {
                self.decide(*id, true);
            }
        }
        for id in ids {
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                self.end_side(id, dir);
            }
        }
    }

    /// Handles what the reassembler found.
    fn pump(&mut self, comments: &[String]) {
        let mut comments = Some(comments);
        while let Some(ev) = self.tcp.next_event() {
            if let TcpEvent::Open { flow, client, server, handshake } = ev {
                let conn = Conn {
                    number: None,
                    client,
                    server,
                    handshake,
                    comments: comments.take().map(<[String]>::to_vec).unwrap_or_default(),
                    state: State::Sniffing,
                    sides: Default::default(),
                    held: Vec::new(),
                    held_bytes: 0,
                    tls_noted: false,
                    opened: (self.packet, self.time),
                    #[cfg(feature = "keylog")]
                    tls: None,
                    #[cfg(feature = "keylog")]
                    inner: None,
                };
                let traced = conn.handshake && conn.comments.iter().any(|c| amqpwire_traced(c));
                self.conns.insert(flow, conn);
                // One of amqpwire's commands captured: AMQP, numbered at its SYN, in the
                // order its trace numbers connections, whichever sends first.
                if traced {
                    self.decide(flow, false);
                }
                continue;
            }
            let flow = match &ev {
                TcpEvent::Open { flow, .. }
                | TcpEvent::Data { flow, .. }
                | TcpEvent::Gap { flow, .. }
                | TcpEvent::Fin { flow, .. }
                | TcpEvent::Reset { flow, .. }
                | TcpEvent::Closed { flow } => *flow,
            };
            let Some(conn) = self.conns.get_mut(&flow) else { continue };
            match conn.state {
                State::Sniffing => {
                    if let TcpEvent::Data { dir, data, .. } = &ev {
                        let side = &mut conn.sides[dir.index()];
                        let room = SNIFF.saturating_sub(side.first.len());
                        side.first.extend_from_slice(data.get(..room).unwrap_or(data));
                        conn.held_bytes += data.len();
                        self.sniffing_held += data.len();
                        if !conn.handshake && !side.boundary {
                            // Looked through once: each packet's bytes, after the few
                            // before them in which a header could start.
                            let mut window = std::mem::take(&mut side.carry);
                            window.extend_from_slice(data);
                            side.boundary = frame_boundary(&window).is_some();
                            let keep = window.len().saturating_sub(RESYNC_WINDOW - 1);
                            side.carry = window.split_off(keep);
                        }
                    }
                    if let TcpEvent::Gap { dir, .. } | TcpEvent::Fin { dir, .. } = &ev {
                        conn.sides[dir.index()].ended = true;
                    }
                    // The connections still being recognised hold their bytes: past
                    // SNIFFING_HELD in all, this one is decided with what it has.
                    let end = matches!(ev, TcpEvent::Reset { .. } | TcpEvent::Closed { .. })
                        || self.sniffing_held > SNIFFING_HELD;
                    conn.held.push((self.packet, self.time, ev));
                    self.decide(flow, end);
                }
                State::Ignored => {
                    if matches!(ev, TcpEvent::Closed { .. } | TcpEvent::Reset { .. }) {
                        self.conns.remove(&flow);
                    }
                }
                _ => self.handle(flow, ev, self.packet, self.time),
            }
        }
    }

    /// Recognises a connection's protocol from its first bytes, if they say enough (or if
    /// `last`, with what there is), then replays what was held.
    fn decide(&mut self, flow: u64, last: bool) {
        let Some(conn) = self.conns.get(&flow) else { return };
        let [c2s, s2c] = &conn.sides;
        // TLS on a port of its own is taken when the key log holds the session's secrets.
        #[cfg(feature = "keylog")]
        let keyed = self.keylog.as_ref().is_some_and(|k| k.knows_hello(&c2s.first));
        #[cfg(not(feature = "keylog"))]
        let keyed = false;
        let sniff = if conn.handshake { SNIFF } else { JOINED_SNIFF };
        let decided = classify(conn, c2s, s2c, keyed, last || conn.held_bytes > 2 * sniff);
        let Some((state, why)) = decided else { return };
        let Some(conn) = self.conns.get_mut(&flow) else { return };
        conn.state = state;
        self.sniffing_held = self.sniffing_held.saturating_sub(conn.held_bytes);
        let held = std::mem::take(&mut conn.held);
        for side in &mut conn.sides {
            side.first.clear();
            side.ended = false;
        }
        if state == State::Ignored {
            self.stats.skipped += 1;
            let (client, server) = (conn.client, conn.server);
            let note = AMQP_PORTS.contains(&server.port()) || AMQP_PORTS.contains(&client.port());
            let opened = conn.opened;
            if held
                .iter()
                .any(|(_, _, e)| matches!(e, TcpEvent::Closed { .. } | TcpEvent::Reset { .. }))
            {
                self.conns.remove(&flow);
            }
            self.tcp.ignore(flow);
            if note {
                let (packet, time) = opened;
                let msg = format!("{client} -> {server}: {why}; not decoded");
                self.push(packet, time, None, None, EventKind::Info(msg));
            }
            return;
        }
        self.next_number += 1;
        let number = self.next_number;
        conn.number = Some(number);
        let transport = match state {
            State::WebSocket => {
                self.stats.websocket += 1;
                for (i, side) in conn.sides.iter_mut().enumerate() {
                    side.ws = Some(Unframer::new(i == 0));
                }
                Transport::WebSocket
            }
            State::Tls => {
                self.stats.tls += 1;
                Transport::Tls
            }
            _ => {
                self.stats.amqp += 1;
                Transport::Tcp
            }
        };
        if state != State::Tls {
            for side in &mut conn.sides {
                side.inspector = Some(Inspector::new(self.opts).redact_secrets(self.redact));
            }
        }
        let joined = why == JOINED;
        if joined {
            // No protocol header to start from: each direction is scanned for its first
            // frame, as after a gap.
            for side in &mut conn.sides {
                side.resync = true;
                side.inspector = None;
                side.scan.clear();
                side.scan_start = side.tcp_offset;
            }
        }
        let summary = ConnectionSummary {
            client: conn.client,
            server: conn.server,
            transport,
            handshake: conn.handshake,
            comments: conn.comments.clone(),
        };
        let (packet, time) = conn.opened;
        #[cfg(feature = "keylog")]
        if state == State::Tls {
            if let Some(keys) = &self.keylog {
                conn.tls = Some(super::tls::TlsSession::new(keys.clone()));
            }
        }
        #[cfg(feature = "keylog")]
        let decrypting = conn.tls.is_some();
        #[cfg(not(feature = "keylog"))]
        let decrypting = false;
        self.push(packet, time, Some(number), None, EventKind::Connection(summary));
        if joined {
            let note = "the capture joined this connection after its start: each direction is \
                        decoded from its first frame (frame sizes, channels and deliveries \
                        begun before are not known)";
            self.push(packet, time, Some(number), None, EventKind::Info(note.into()));
        }
        if state == State::Tls && !decrypting {
            self.push(packet, time, Some(number), None, EventKind::Info(TLS_NOTE.into()));
            if let Some(c) = self.conns.get_mut(&flow) {
                for side in &mut c.sides {
                    side.stopped = true;
                }
            }
            self.tcp.ignore(flow);
        }
        for (packet, time, ev) in held {
            self.handle(flow, ev, packet, time);
        }
    }

    /// Handles a TCP event of a recognised connection.
    fn handle(&mut self, flow: u64, ev: TcpEvent, packet: Option<u64>, time: Duration) {
        let Some(conn) = self.conns.get_mut(&flow) else { return };
        let number = conn.number;
        match ev {
            TcpEvent::Open { .. } => {}
            TcpEvent::Data { dir, data, .. } => {
                let side = &mut conn.sides[dir.index()];
                side.tcp_offset += data.len() as u64;
                #[cfg(feature = "keylog")]
                if conn.state == State::Tls || side.upgraded {
                    self.decrypted(flow, dir, &data, packet, time);
                    return;
                }
                if conn.state == State::WebSocket {
                    self.websocket(flow, dir, &data, packet, time);
                } else {
                    self.feed(flow, dir, &data, packet, time);
                }
            }
            TcpEvent::Gap { dir, seq, offset, len, .. } => {
                let websocket = conn.state == State::WebSocket;
                let side = &mut conn.sides[dir.index()];
                side.tcp_offset = offset + len;
                let lost = websocket && !side.stopped;
                if websocket {
                    side.stopped = true;
                } else if !side.stopped {
                    // AMQP over TCP: look for the next frame header after the hole.
                    side.resync = true;
                    side.inspector = None;
                    side.scan.clear();
                    side.scan_start = side.tcp_offset;
                }
                self.push(packet, time, number, Some(dir), EventKind::Gap { seq, offset, len });
                if lost {
                    let msg = "the WebSocket framing is lost in the gap: \
                               this direction is not decoded further";
                    self.push(packet, time, number, Some(dir), EventKind::Info(msg.into()));
                }
            }
            TcpEvent::Fin { dir, .. } => {
                let offset = conn.sides[dir.index()].tcp_offset;
                self.end_side_at(flow, dir, packet, time);
                let kind = EventKind::Closed { reset: false, offset };
                self.push(packet, time, number, Some(dir), kind);
            }
            TcpEvent::Reset { dir, .. } => {
                let offset = conn.sides[dir.index()].tcp_offset;
                for d in [Direction::ClientToServer, Direction::ServerToClient] {
                    self.end_side_at(flow, d, packet, time);
                }
                self.push(
                    packet,
                    time,
                    number,
                    Some(dir),
                    EventKind::Closed { reset: true, offset },
                );
                self.conns.remove(&flow);
            }
            TcpEvent::Closed { .. } => {
                for d in [Direction::ClientToServer, Direction::ServerToClient] {
                    self.end_side_at(flow, d, packet, time);
                }
                self.conns.remove(&flow);
            }
        }
    }

    /// TLS bytes of one direction, decrypted with the key log; the application data goes
    /// on as AMQP or as WebSocket, as the client's first plaintext bytes say.
    #[cfg(feature = "keylog")]
    fn decrypted(
        &mut self,
        flow: u64,
        dir: Direction,
        data: &[u8],
        packet: Option<u64>,
        time: Duration,
    ) {
        use super::tls::TlsOutput;
        let Some(conn) = self.conns.get_mut(&flow) else { return };
        let number = conn.number;
        let Some(tls) = conn.tls.as_mut() else { return };
        let mut out = Vec::new();
        tls.push(dir.index(), data, &mut out);
        for o in out {
            match o {
                TlsOutput::Note(n) => self.push(packet, time, number, None, EventKind::Info(n)),
                TlsOutput::Data(i, bytes) => {
                    let d =
                        if i == 0 { Direction::ClientToServer } else { Direction::ServerToClient };
                    let Some(conn) = self.conns.get_mut(&flow) else { return };
                    let inner = match conn.inner {
                        Some(s) => s,
                        None => {
                            let ws = d == Direction::ClientToServer && bytes.starts_with(b"GET ");
                            let s = if ws { State::WebSocket } else { State::Amqp };
                            conn.inner = Some(s);
                            for (k, side) in conn.sides.iter_mut().enumerate() {
                                side.inspector =
                                    Some(Inspector::new(self.opts).redact_secrets(self.redact));
                                side.first.clear();
                                if ws {
                                    side.ws = Some(Unframer::new(k == 0));
                                }
                            }
                            let what = if ws { "WebSocket" } else { "AMQP" };
                            let note = format!("TLS decrypted: {what} inside");
                            self.push(packet, time, number, None, EventKind::Info(note));
                            s
                        }
                    };
                    if inner == State::WebSocket {
                        self.websocket(flow, d, &bytes, packet, time);
                    } else {
                        self.feed(flow, d, &bytes, packet, time);
                    }
                }
            }
        }
    }

    /// The WebSocket layer of one direction: the HTTP head, then frames.
    fn websocket(
        &mut self,
        flow: u64,
        dir: Direction,
        data: &[u8],
        packet: Option<u64>,
        time: Duration,
    ) {
        let Some(conn) = self.conns.get_mut(&flow) else { return };
        let number = conn.number;
        let side = &mut conn.sides[dir.index()];
        if side.stopped {
            return;
        }
        let mut data = data;
        let mut events = Vec::new();
        // permessage-deflate as the server's 101 accepted it: whether each side resets its
        // window after every message.
        let mut deflate = None;
        if !side.head_done {
            let before = side.first.len();
            let room = websocket::MAX_HEAD.saturating_sub(before);
            side.first.extend_from_slice(data.get(..room).unwrap_or(data));
            match websocket::parse_head(&side.first) {
                Head::Incomplete => return,
                Head::Invalid(why) => {
                    side.stopped = true;
                    events.push(WsEvent::Error { offset: 0, message: why, fatal: true });
                    data = &[];
                }
                Head::Complete(head) => {
                    side.head_done = true;
                    side.first = Vec::new();
                    data = data.get(head.len.saturating_sub(before)..).unwrap_or_default();
                    let mut protocol = head.header("Sec-WebSocket-Protocol").map(str::to_owned);
                    if let (true, Some(p)) = (self.redact, &mut protocol) {
                        crate::inspect::mask_subprotocols(p);
                    }
                    match (dir, head.status()) {
                        (Direction::ClientToServer, _) => {
                            let mut line = head.start_line;
                            if self.redact {
                                crate::inspect::mask_request_line(&mut line);
                            }
                            events.push(WsEvent::Request { line, protocol });
                        }
                        (Direction::ServerToClient, Some(status)) => {
                            let refused = status != 101;
                            if let Some(ext) = head.header("Sec-WebSocket-Extensions") {
                                if !refused && ext.contains("permessage-deflate") {
                                    deflate = Some((
                                        ext.contains("client_no_context_takeover"),
                                        ext.contains("server_no_context_takeover"),
                                    ));
                                }
                            }
                            let line = head.start_line.clone();
                            events.push(WsEvent::Response {
                                line: head.start_line,
                                status,
                                protocol,
                            });
                            if refused {
                                side.stopped = true;
                                events.push(WsEvent::Error {
                                    offset: 0,
                                    message: format!("the WebSocket upgrade was refused: {line}"),
                                    fatal: true,
                                });
                                data = &[];
                            }
                        }
                        (Direction::ServerToClient, None) => {
                            side.stopped = true;
                            // (A request, when the sides were taken the wrong way round.)
                            let mut line = head.start_line;
                            if self.redact {
                                crate::inspect::mask_request_line(&mut line);
                            }
                            events.push(WsEvent::Error {
                                offset: 0,
                                message: format!("not an HTTP response: {line:?}"),
                                fatal: true,
                            });
                            data = &[];
                        }
                    }
                }
            }
        }
        let mut items = Vec::new();
        if let (Some((_, server)), Some(ws)) = (deflate, &mut side.ws) {
            ws.enable_deflate(server);
        }
        if !data.is_empty() && !side.stopped {
            if let Some(ws) = &mut side.ws {
                ws.push(data, &mut items);
            }
        }
        if let Some((client, _)) = deflate {
            if let Some(ws) = &mut conn.sides[Direction::ClientToServer.index()].ws {
                ws.enable_deflate(client);
            }
        }
        for e in events {
            self.push(packet, time, number, Some(dir), EventKind::WebSocket(e));
        }
        self.ws_items(flow, dir, items, packet, time);
    }

    fn ws_items(
        &mut self,
        flow: u64,
        dir: Direction,
        items: Vec<WsItem>,
        packet: Option<u64>,
        time: Duration,
    ) {
        let number = self.conns.get(&flow).and_then(|c| c.number);
        for item in items {
            let e = match item {
                WsItem::Data(bytes) => {
                    self.feed(flow, dir, &bytes, packet, time);
                    continue;
                }
                WsItem::Control { opcode, payload, offset } => {
                    WsEvent::Control { opcode, payload, offset }
                }
                WsItem::Text { len, offset } => WsEvent::Text { len, offset },
                WsItem::Error { offset, message, fatal } => {
                    if fatal {
                        if let Some(c) = self.conns.get_mut(&flow) {
                            c.sides[dir.index()].stopped = true;
                        }
                    }
                    WsEvent::Error { offset, message, fatal }
                }
            };
            self.push(packet, time, number, Some(dir), EventKind::WebSocket(e));
        }
    }

    /// The next AMQP bytes of one direction, through its inspector (after a gap, from the
    /// next frame header on).
    fn feed(
        &mut self,
        flow: u64,
        dir: Direction,
        data: &[u8],
        packet: Option<u64>,
        time: Duration,
    ) {
        let Some(conn) = self.conns.get_mut(&flow) else { return };
        let number = conn.number;
        let side = &mut conn.sides[dir.index()];
        if side.stopped {
            return;
        }
        let mut data = data;
        let mut replay = Vec::new();
        let mut resumed = None;
        if side.resync {
            // Scan the bytes since the gap for a frame header; keep the last few, in which
            // one could still start.
            side.scan.extend_from_slice(data);
            let Some(i) = frame_boundary(&side.scan) else {
                let keep = side.scan.len().saturating_sub(RESYNC_WINDOW - 1);
                side.scan.drain(..keep);
                side.scan_start += keep as u64;
                return;
            };
            let at = side.scan_start + i as u64;
            resumed = Some(at);
            replay = side.scan.split_off(i);
            data = &[];
            side.resync = false;
            side.scan = Vec::new();
            side.inspector = Some(Inspector::new(self.opts).redact_secrets(self.redact).resumed());
            side.amqp_offset = 0;
            side.first.clear();
        }
        let data: &[u8] = if replay.is_empty() { data } else { &replay };
        let Some(inspector) = &mut side.inspector else { return };
        // The TLS protocol header: TLS follows it, decrypted with the key log when one is
        // given (what comes after the header in these bytes goes to it), else not decoded.
        let mut data = data;
        let mut tls = false;
        #[cfg(feature = "keylog")]
        let mut after_header: &[u8] = &[];
        if side.amqp_offset < 8 {
            let have = side.amqp_offset as usize;
            let take = (8 - have).min(data.len());
            side.first.extend_from_slice(data.get(..take).unwrap_or_default());
            if side.first.len() == 8 && side.first.starts_with(b"AMQP\x02") {
                tls = true;
                #[cfg(feature = "keylog")]
                {
                    after_header = data.get(take..).unwrap_or_default();
                }
                data = data.get(..take).unwrap_or_default();
            }
        }
        side.amqp_offset += data.len() as u64;
        inspector.push(data);
        let records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
        #[cfg(feature = "keylog")]
        let decrypting = tls && self.keylog.is_some();
        #[cfg(not(feature = "keylog"))]
        let decrypting = false;
        if tls && !decrypting {
            side.stopped = true;
        }
        #[cfg(feature = "keylog")]
        if decrypting {
            side.upgraded = true;
            if conn.tls.is_none() {
                conn.tls = self.keylog.clone().map(super::tls::TlsSession::new);
            }
        }
        let note = tls && !decrypting && !conn.tls_noted;
        if note {
            conn.tls_noted = true;
        }
        if let Some(offset) = resumed {
            self.push(packet, time, number, Some(dir), EventKind::Resync { offset });
        }
        for r in records {
            self.push(packet, time, number, Some(dir), EventKind::Record(r));
        }
        if note {
            self.push(packet, time, number, None, EventKind::Info(TLS_NOTE.into()));
        }
        #[cfg(feature = "keylog")]
        if decrypting && !after_header.is_empty() {
            self.decrypted(flow, dir, after_header, packet, time);
        }
    }

    /// The end of one direction at the end of the capture.
    fn end_side(&mut self, flow: u64, dir: Direction) {
        let (packet, time) = (self.packet, self.time);
        self.end_side_at(flow, dir, packet, time);
    }

    /// The end of one direction: an unfinished WebSocket frame or AMQP item is reported.
    fn end_side_at(&mut self, flow: u64, dir: Direction, packet: Option<u64>, time: Duration) {
        let Some(conn) = self.conns.get_mut(&flow) else { return };
        let number = conn.number;
        let side = &mut conn.sides[dir.index()];
        if side.ended {
            return;
        }
        side.ended = true;
        if side.stopped {
            return;
        }
        side.stopped = true;
        let mut items = Vec::new();
        if let Some(ws) = &mut side.ws {
            ws.finish(&mut items);
        }
        let rec = side.inspector.as_mut().and_then(Inspector::finish);
        for item in items {
            if let WsItem::Error { offset, message, fatal } = item {
                let e = WsEvent::Error { offset, message, fatal };
                self.push(packet, time, number, Some(dir), EventKind::WebSocket(e));
            }
        }
        if let Some(r) = rec {
            self.push(packet, time, number, Some(dir), EventKind::Record(r));
        }
    }

    fn emit(&mut self, connection: Option<u32>, direction: Option<Direction>, kind: EventKind) {
        let (packet, time) = (self.packet, self.time);
        self.push(packet, time, connection, direction, kind);
    }

    fn push(
        &mut self,
        packet: Option<u64>,
        time: Duration,
        connection: Option<u32>,
        direction: Option<Direction>,
        kind: EventKind,
    ) {
        self.events.push_back(CaptureEvent { packet, time, connection, direction, kind });
    }
}

/// Whether a SYN's comment is one amqpwire's commands write for a connection whose AMQP
/// bytes they captured (`amqpwire connection N; transport …`).
fn amqpwire_traced(comment: &str) -> bool {
    comment.starts_with("amqpwire connection ") && comment.contains("; transport ")
}

/// The protocol of a connection from its first bytes, with a reason when it is skipped;
/// `None` while they do not say enough and `last` is not set.
fn classify(
    conn: &Conn,
    c2s: &Side,
    s2c: &Side,
    keyed: bool,
    last: bool,
) -> Option<(State, String)> {
    let amqp = |b: &[u8]| {
        b.len() >= 8
            && b.starts_with(b"AMQP")
            && matches!(b.get(4), Some(0 | 2 | 3))
            && b.get(5..8) == Some(&[1, 0, 0][..])
    };
    if amqp(&c2s.first) || amqp(&s2c.first) {
        return Some((State::Amqp, String::new()));
    }
    // amqpwire's commands capture each connection's AMQP bytes, with the transport that
    // carried them in its SYN's comment, and number connections as their traces do: each
    // such connection is taken for AMQP, one that carried nothing (a relay's client whose
    // upstream failed) or bytes that are not AMQP included, so that connection N is the
    // trace's N.
    if conn.handshake && conn.comments.iter().any(|c| amqpwire_traced(c)) {
        return Some((State::Amqp, String::new()));
    }
    let enough = |s: &Side| s.first.len() >= 8 || s.ended || last;
    let c = &c2s.first;
    if c.starts_with(b"GET ") {
        return match websocket::parse_head(c) {
            Head::Incomplete if !(c2s.ended || last) => None,
            Head::Complete(h) if h.is_websocket_upgrade() && h.has_amqp_subprotocol() => {
                Some((State::WebSocket, String::new()))
            }
            Head::Complete(h) if h.is_websocket_upgrade() => Some((
                State::Ignored,
                format!(
                    "a WebSocket upgrade without the {} subprotocol",
                    websocket::AMQP_SUBPROTOCOL
                ),
            )),
            _ => Some((State::Ignored, "HTTP, not an upgrade to AMQP over WebSocket".into())),
        };
    }
    let tls_hello = c.len() >= 3 && c.first() == Some(&0x16) && c.get(1) == Some(&0x03);
    if tls_hello && (keyed || TLS_PORTS.contains(&conn.server.port())) {
        return Some((State::Tls, String::new()));
    }
    if !enough(c2s) || (c.len() < 8 && !enough(s2c)) {
        return None;
    }
    // Neither direction starts with an AMQP header: wait for the other one's first bytes.
    if !enough(s2c) {
        return None;
    }
    // Joined after its start: AMQP if a frame can be found in either direction; decoding
    // starts at the first frame boundary of each. Until one is found, the bytes are looked
    // through as they come (up to JOINED_SNIFF of each direction).
    if !conn.handshake && (c2s.boundary || s2c.boundary) {
        return Some((State::Amqp, JOINED.to_owned()));
    }
    if !conn.handshake && !last {
        return None;
    }
    let why = if !conn.handshake {
        "the capture joined the connection after its start, and neither direction holds an AMQP frame header"
            .to_owned()
    } else if c.is_empty() && s2c.first.is_empty() {
        "no data".to_owned()
    } else {
        let first = if c.is_empty() { &s2c.first } else { c };
        let show: String = first.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("no AMQP protocol header (the first bytes are {show})")
    };
    Some((State::Ignored, why))
}

/// What `classify` says of AMQP found in a connection the capture joined after its start.
const JOINED: &str = "joined";

/// The bytes a frame header is recognised by, after a gap.
const RESYNC_WINDOW: usize = 11;

/// The first place in `b` where a protocol header or a frame seems to start: `AMQP` 0 or 3
/// 1.0.0; an empty AMQP frame (a heartbeat); or an AMQP or SASL frame (DOFF 2) whose body
/// starts with a performative's or SASL body's small-ulong descriptor. Eleven bytes, which
/// random bytes match by chance about once in 10^12 places.
fn frame_boundary(b: &[u8]) -> Option<usize> {
    let looks = |w: &[u8]| -> bool {
        let Ok(w) = <[u8; RESYNC_WINDOW]>::try_from(w) else { return false };
        if w.starts_with(b"AMQP") {
            return matches!(w[4], 0 | 3) && w[5..8] == [1, 0, 0];
        }
        let size = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
        let (doff, kind) = (w[4], w[5]);
        if doff != 2 || size > 1 << 26 {
            return false;
        }
        let descriptor = w[8] == 0 && w[9] == 0x53;
        match kind {
            0 if size == 8 => true,
            0 => size >= 12 && descriptor && (0x10..=0x18).contains(&w[10]),
            1 => size >= 12 && w[6..8] == [0, 0] && descriptor && (0x40..=0x44).contains(&w[10]),
            _ => false,
        }
    };
    b.windows(RESYNC_WINDOW).position(looks)
}

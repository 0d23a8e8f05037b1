//! TCP reassembly, sans-IO: segments in, the payload of each direction of each connection
//! out in order, with the holes a capture left reported as gaps.
//!
//! - A connection is a pair of addresses; the side that sent the SYN is the client (without
//!   a handshake in the capture, the side on a well-known server port is the server, or
//!   else the side seen first is the client).
//! - Each direction's bytes are numbered from the SYN (or from the first segment seen).
//!   Segments that arrive early are held until the bytes before them arrive; bytes seen
//!   before (retransmissions) are dropped; a segment's bytes that overlap bytes already
//!   delivered are cut off (the first copy wins).
//! - A hole becomes a [`TcpEvent::Gap`] as soon as it cannot be filled any more: when the
//!   other side has acknowledged the missing bytes and a segment after the hole arrives
//!   after that acknowledgement (captures sometimes show packets a little out of order), when
//!   the bytes held early exceed [`Limits::max_buffered`], when a packet was cut short by
//!   the capture's snap length, and at the end of the capture ([`Reassembler::finish`]).
//! - FIN is delivered in order (after the bytes before it); RST ends the connection at
//!   once. A SYN with a new initial sequence number on a known address pair starts a new
//!   connection.
//!
//! Memory is bounded by [`Limits`]: bytes held early per direction and in all, and the
//! number of connections followed at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use super::net::TcpSegment;
use super::Direction;

/// Bounds on what the reassembler holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes held early in one direction before the hole in front of them is given up as a
    /// gap (default 2 MiB).
    pub max_buffered: usize,
    /// Bytes held early in all connections together (default 64 MiB).
    pub max_total_buffered: usize,
    /// Connections followed at once; segments of further connections are dropped and
    /// counted in [`Stats::dropped_connections`] (default 65536).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_buffered: 2 << 20, max_total_buffered: 64 << 20, max_connections: 65536 }
    }
}

/// Counters of what the reassembler saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments pushed.
    pub segments: u64,
    /// Segments whose bytes had all been seen before (dropped).
    pub retransmissions: u64,
    /// Segments that arrived before the bytes in front of them (held).
    pub out_of_order: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Connections seen.
    pub connections: u64,
    /// New connections not followed because [`Limits::max_connections`] were open.
    pub dropped_connections: u64,
}

/// What the reassembler reports, in the order it learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    /// A connection seen for the first time.
    Open {
        /// Its number, from 0, in the order connections appear.
        flow: u64,
        /// The side that opened it.
        client: SocketAddr,
        /// The side that accepted it.
        server: SocketAddr,
        /// Whether its SYN was in the capture (so its bytes are complete from the start).
        handshake: bool,
    },
    /// The next bytes of one direction.
    Data {
        /// The connection.
        flow: u64,
        /// The direction.
        dir: Direction,
        /// Where the bytes start in the direction's stream (from 0 after the SYN).
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Bytes of one direction the capture does not hold.
    Gap {
        /// The connection.
        flow: u64,
        /// The direction.
        dir: Direction,
        /// Where the missing bytes start in the direction's stream.
        offset: u64,
        /// The sequence number of the first missing byte.
        seq: u32,
        /// How many bytes are missing.
        len: u64,
    },
    /// The sender of `dir` closed its side (FIN), after all its bytes.
    Fin {
        /// The connection.
        flow: u64,
        /// The direction that ended.
        dir: Direction,
    },
    /// The sender of `dir` reset the connection (RST); no event of it follows.
    Reset {
        /// The connection.
        flow: u64,
        /// The direction whose sender reset it.
        dir: Direction,
    },
    /// Both sides have closed; no event of the connection follows.
    Closed {
        /// The connection.
        flow: u64,
    },
}

/// Ports on which the server side is assumed when a connection's handshake is not in the
/// capture: AMQP, AMQPS, HTTP, HTTPS.
const SERVER_PORTS: [u16; 4] = [5672, 5671, 80, 443];

/// A segment further ahead than this of the next expected byte is taken for garbage.
const WINDOW: u64 = 1 << 30;

#[derive(Debug)]
struct Chunk {
    data: Vec<u8>,
    wire_len: u64,
}

#[derive(Debug, Default)]
struct Stream {
    /// The sequence number of stream offset 0.
    base: Option<u32>,
    /// The offset of the next byte to deliver.
    next: u64,
    /// Segments held early, by offset.
    pending: BTreeMap<u64, Chunk>,
    buffered: usize,
    /// The offset of the FIN, once seen.
    fin: Option<u64>,
    /// How far the other side has acknowledged.
    acked: u64,
    fin_done: bool,
}

impl Stream {
    /// The stream offset of sequence number `seq`, or `None` before the stream's start.
    fn offset(&self, seq: u32) -> Option<u64> {
        let base = self.base?;
        let next_seq = base.wrapping_add(self.next as u32);
        let diff = i64::from(seq.wrapping_sub(next_seq) as i32);
        u64::try_from(self.next as i64 + diff).ok()
    }
}

#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    streams: [Stream; 2],
    ignored: bool,
    /// FIN seen per direction, in any order (for ignored connections).
    fin_seen: [bool; 2],
}

/// Reassembles the TCP connections of a capture. Push segments in capture order; take
/// events after each push.
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: Limits,
    by_addr: HashMap<(SocketAddr, SocketAddr), u64>,
    flows: BTreeMap<u64, Flow>,
    next_flow: u64,
    events: VecDeque<TcpEvent>,
    total_buffered: usize,
    stats: Stats,
}

impl Reassembler {
    /// A reassembler with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A reassembler with the given limits (`max_buffered` at least 64 KiB).
    pub fn with_limits(limits: Limits) -> Self {
        let limits = Limits { max_buffered: limits.max_buffered.max(1 << 16), ..limits };
        Self { limits, ..Self::default() }
    }

    /// What has been counted so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<TcpEvent> {
        self.events.pop_front()
    }

    /// Stops delivering the bytes of connection `flow` (not one to decode): what it holds is
    /// dropped, and only its end is still followed, to forget it then.
    pub fn ignore(&mut self, flow: u64) {
        if let Some(f) = self.flows.get_mut(&flow) {
            f.ignored = true;
            for s in &mut f.streams {
                self.total_buffered -= s.buffered;
                s.buffered = 0;
                s.pending.clear();
            }
        }
    }

    /// Takes the next segment of the capture.
    pub fn push(&mut self, seg: &TcpSegment<'_>) {
        self.stats.segments += 1;
        let found = self
            .by_addr
            .get(&(seg.src, seg.dst))
            .map(|&id| (id, Direction::ClientToServer))
            .or_else(|| {
                self.by_addr.get(&(seg.dst, seg.src)).map(|&id| (id, Direction::ServerToClient))
            });
        let (id, dir) = match found {
            // A fresh SYN from the client with another initial sequence number: the port
            // pair is being reused by a new connection.
            Some((id, Direction::ClientToServer))
                if seg.syn && seg.ack.is_none() && self.is_new_syn(id, seg.seq) =>
            {
                self.end_flow(id);
                match self.new_flow(seg) {
                    Some(f) => f,
                    None => return,
                }
            }
            Some(f) => f,
            None => match self.new_flow(seg) {
                Some(f) => f,
                None => return,
            },
        };
        let Some(flow) = self.flows.get_mut(&id) else { return };
        if flow.ignored {
            if seg.fin {
                flow.fin_seen[dir.index()] = true;
            }
            if seg.rst || flow.fin_seen == [true, true] {
                self.events.push_back(TcpEvent::Closed { flow: id });
                self.forget(id);
            }
            return;
        }
        let stream = &mut flow.streams[dir.index()];
        let data_seq = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
        if stream.base.is_none() {
            stream.base = Some(data_seq);
        }
        if let Some(ack) = seg.ack {
            self.acked(id, dir.reverse(), ack);
        }
        if seg.wire_len > 0 {
            self.insert(id, dir, data_seq, seg.payload, seg.wire_len as u64);
        }
        if seg.fin {
            let mut after_ack = false;
            if let Some(s) = self.stream(id, dir) {
                if s.fin.is_none() {
                    s.fin = s.offset(data_seq).map(|o| o + seg.wire_len as u64);
                }
                after_ack = s.fin.is_some_and(|f| f >= s.acked) && s.acked > s.next;
            }
            self.drain(id, dir);
            if after_ack {
                self.give_up(id, dir);
            }
        }
        if seg.rst {
            for d in [Direction::ClientToServer, Direction::ServerToClient] {
                self.flush(id, d);
            }
            self.events.push_back(TcpEvent::Reset { flow: id, dir });
            self.forget(id);
            return;
        }
        if let Some(f) = self.flows.get(&id) {
            if f.streams.iter().all(|s| s.fin_done) {
                self.events.push_back(TcpEvent::Closed { flow: id });
                self.forget(id);
            }
        }
    }

    /// The end of the capture: every hole left becomes a gap, and bytes held behind it are
    /// delivered; FINs behind holes are delivered. Connections stay known (no `Closed`).
    pub fn finish(&mut self) {
        let ids: Vec<u64> = self.flows.keys().copied().collect();
        for id in ids {
            for d in [Direction::ClientToServer, Direction::ServerToClient] {
                self.flush(id, d);
            }
        }
    }

    fn is_new_syn(&self, id: u64, seq: u32) -> bool {
        let base = self.flows.get(&id).and_then(|f| f.streams[0].base);
        base.is_some_and(|b| b != seq.wrapping_add(1))
    }

    /// A connection for a segment of an unknown address pair; `None` for a segment that
    /// starts nothing (a lone RST, ACK or FIN) or when too many are open.
    fn new_flow(&mut self, seg: &TcpSegment<'_>) -> Option<(u64, Direction)> {
        if seg.rst || !(seg.syn || seg.wire_len > 0) {
            return None;
        }
        if self.flows.len() >= self.limits.max_connections {
            self.stats.dropped_connections += 1;
            return None;
        }
        let src_is_client = if seg.syn {
            seg.ack.is_none()
        } else {
            let server = |p: u16| SERVER_PORTS.contains(&p);
            !server(seg.src.port()) || server(seg.dst.port())
        };
        let (client, server) = if src_is_client { (seg.src, seg.dst) } else { (seg.dst, seg.src) };
        let id = self.next_flow;
        self.next_flow += 1;
        self.stats.connections += 1;
        self.by_addr.insert((client, server), id);
        self.flows.insert(
            id,
            Flow {
                client,
                server,
                streams: Default::default(),
                ignored: false,
                fin_seen: [false; 2],
            },
        );
        self.events.push_back(TcpEvent::Open { flow: id, client, server, handshake: seg.syn });
        let dir = if src_is_client { Direction::ClientToServer } else { Direction::ServerToClient };
        Some((id, dir))
    }

    fn stream(&mut self, id: u64, dir: Direction) -> Option<&mut Stream> {
        self.flows.get_mut(&id).map(|f| &mut f.streams[dir.index()])
    }

    /// The other side acknowledged up to `ack`: bytes before it that never came are gone,
    /// which [`give_up`](Self::give_up) acts on when bytes after them arrive.
    fn acked(&mut self, id: u64, dir: Direction, ack: u32) {
        let Some(s) = self.stream(id, dir) else { return };
        let Some(mut upto) = s.offset(ack) else { return };
        if let Some(f) = s.fin {
            upto = upto.min(f);
        }
        if upto <= s.next || upto - s.next > WINDOW {
            return;
        }
        s.acked = s.acked.max(upto);
    }

    /// Gives up the holes the other side has acknowledged. Called when a segment (or a FIN)
    /// arrives that starts at or after the acknowledged point: it was sent after the bytes
    /// the acknowledgement covers, so those are not merely shown late by the capture. (A
    /// segment the acknowledgement covers proves nothing: the capture may show it before
    /// the missing one.)
    fn give_up(&mut self, id: u64, dir: Direction) {
        loop {
            let Some(s) = self.stream(id, dir) else { return };
            let upto = s.acked;
            if s.next >= upto {
                return;
            }
            let to = s.pending.first_key_value().map_or(upto, |(&k, _)| k.min(upto));
            self.gap(id, dir, to);
            self.drain(id, dir);
        }
    }

    fn insert(&mut self, id: u64, dir: Direction, seq: u32, data: &[u8], wire_len: u64) {
        let Some(flow) = self.flows.get_mut(&id) else { return };
        let s = &mut flow.streams[dir.index()];
        let Some(mut rel) = s.offset(seq) else {
            self.stats.retransmissions += 1;
            return;
        };
        if rel + wire_len <= s.next {
            self.stats.retransmissions += 1;
            return;
        }
        let mut data = data;
        let mut wire_len = wire_len;
        if rel < s.next {
            let skip = s.next - rel;
            data = data.get(usize::try_from(skip).unwrap_or(usize::MAX)..).unwrap_or_default();
            wire_len -= skip;
            rel = s.next;
        }
        if rel == s.next {
            self.deliver(id, dir, data, wire_len);
            self.drain(id, dir);
            return;
        }
        if rel - s.next > WINDOW {
            self.stats.retransmissions += 1;
            return;
        }
        self.stats.out_of_order += 1;
        let after_ack = rel >= s.acked && s.acked > s.next;
        let held = s.pending.get(&rel).map_or(0, |c| c.data.len());
        if s.pending.get(&rel).is_some_and(|c| c.wire_len >= wire_len) {
            return;
        }
        s.buffered = s.buffered - held + data.len();
        s.pending.insert(rel, Chunk { data: data.to_vec(), wire_len });
        self.total_buffered = self.total_buffered - held + data.len();
        if after_ack {
            self.give_up(id, dir);
        }
        // Over a bound: give up the hole in front and deliver what was held behind it.
        let max = self.limits.max_buffered;
        loop {
            let Some(s) = self.flows.get(&id).map(|f| &f.streams[dir.index()]) else { return };
            let Some((&first, _)) = s.pending.first_key_value() else { return };
            if s.buffered <= max && self.total_buffered <= self.limits.max_total_buffered {
                return;
            }
            self.gap(id, dir, first);
            self.drain(id, dir);
        }
    }

    /// Delivers bytes at the stream's next offset; a tail the capture cut off is a gap.
    fn deliver(&mut self, id: u64, dir: Direction, data: &[u8], wire_len: u64) {
        let Some(s) = self.stream(id, dir) else { return };
        let offset = s.next;
        s.next += data.len() as u64;
        if !data.is_empty() {
            self.events.push_back(TcpEvent::Data { flow: id, dir, offset, data: data.to_vec() });
        }
        self.gap(id, dir, offset + wire_len);
    }

    /// A gap from the stream's next offset to `to` (nothing when `to` is not ahead).
    fn gap(&mut self, id: u64, dir: Direction, to: u64) {
        let Some(s) = self.stream(id, dir) else { return };
        if to <= s.next {
            return;
        }
        let offset = s.next;
        let seq = s.base.unwrap_or(0).wrapping_add(offset as u32);
        s.next = to;
        self.stats.gaps += 1;
        self.events.push_back(TcpEvent::Gap { flow: id, dir, offset, seq, len: to - offset });
    }

    /// Delivers the segments held that the stream has reached, then the FIN if reached.
    fn drain(&mut self, id: u64, dir: Direction) {
        loop {
            let Some(s) = self.stream(id, dir) else { return };
            let next = s.next;
            let Some(entry) = s.pending.first_entry() else { break };
            if *entry.key() > next {
                break;
            }
            let (rel, chunk) = entry.remove_entry();
            s.buffered -= chunk.data.len();
            self.total_buffered -= chunk.data.len();
            let end = rel + chunk.wire_len;
            if end <= next {
                continue;
            }
            let skip = usize::try_from(next - rel).unwrap_or(usize::MAX);
            let data = chunk.data.get(skip..).unwrap_or_default();
            self.deliver(id, dir, data, end - next);
        }
        let Some(s) = self.stream(id, dir) else { return };
        if let Some(f) = s.fin {
            if !s.fin_done && s.next >= f {
                s.fin_done = true;
                self.events.push_back(TcpEvent::Fin { flow: id, dir });
            }
        }
    }

    /// Every hole left in one direction becomes a gap, up to its FIN when one was seen.
    fn flush(&mut self, id: u64, dir: Direction) {
        loop {
            let Some(s) = self.stream(id, dir) else { return };
            let Some((&first, _)) = s.pending.first_key_value() else { break };
            self.gap(id, dir, first);
            self.drain(id, dir);
        }
        let Some(s) = self.stream(id, dir) else { return };
        if let Some(f) = s.fin {
            self.gap(id, dir, f);
            self.drain(id, dir);
        }
    }

    fn end_flow(&mut self, id: u64) {
        for d in [Direction::ClientToServer, Direction::ServerToClient] {
            self.flush(id, d);
        }
        self.events.push_back(TcpEvent::Closed { flow: id });
        self.forget(id);
    }

    fn forget(&mut self, id: u64) {
        if let Some(f) = self.flows.remove(&id) {
            self.by_addr.remove(&(f.client, f.server));
            for s in &f.streams {
                self.total_buffered -= s.buffered;
            }
        }
    }
}

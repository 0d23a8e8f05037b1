//! The pcapng writer: AMQP byte streams as synthetic Ethernet/IP/TCP packets.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6Header, PacketBuilder, TcpHeader, TcpOptionElement,
};

use super::{Direction, AMQP_PORT};

/// The largest TCP payload the writer puts in one packet (IPv4 and IPv6 lengths are 16-bit).
pub(super) const MAX_SEGMENT: usize = 65000;

/// pcapng block types and option codes (draft-ietf-opsawg-pcapng).
pub(super) const SHB: u32 = 0x0A0D_0D0A;
pub(super) const IDB: u32 = 1;
pub(super) const EPB: u32 = 6;
pub(super) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const LINKTYPE_ETHERNET: u16 = 1;

/// The receive window the synthetic packets advertise, scaled by 2^14 (the SYNs carry the
/// window-scale option), so about 1 GiB: Wireshark never sees a full window.
const WINDOW: u16 = 0xFFFF;
const WINDOW_SCALE: u8 = 14;

/// How a [`PcapWriter`] lays out its packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// The server's TCP port: 5672 (Wireshark's AMQP port) unless told otherwise.
    pub server_port: u16,
    /// The client's address in every packet (default 192.0.2.1, a documentation address).
    pub client_ip: IpAddr,
    /// The server's address in every packet (default 192.0.2.2). Must be of the same
    /// family as `client_ip`.
    pub server_ip: IpAddr,
    /// The client port of the first connection; each new connection takes the next one,
    /// wrapping around to this one after 65535 (default 49152).
    pub first_client_port: u16,
    /// The largest TCP payload of one packet: longer writes are split (1 to 65000; default
    /// 65000).
    pub mss: usize,
    /// A comment for the whole file (the section header's `opt_comment`), for example what
    /// was captured, by which command.
    pub comment: Option<String>,
    /// Mixed into every initial sequence number (default 0): files written with the same
    /// seed are the same byte for byte; files written with different ones, merged
    /// (`mergecap`), do not show Wireshark two connections with one address pair and one
    /// initial sequence number, which it takes for retransmissions.
    pub seed: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            server_port: AMQP_PORT,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            server_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            first_client_port: 49152,
            mss: MAX_SEGMENT,
            comment: None,
            seed: 0,
        }
    }
}

/// What is known of a connection's real transport, written as the `opt_comment` of its
/// SYN packet: the packets themselves always carry the plaintext AMQP bytes over
/// synthetic TCP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The real transport: `tcp`, `tls`, `ws`, `wss`…
    pub transport: Option<String>,
    /// The URL the connection was made to or accepted on.
    pub url: Option<String>,
    /// The client's real address.
    pub client: Option<SocketAddr>,
    /// The server's real address.
    pub server: Option<SocketAddr>,
    /// Anything else to record.
    pub note: Option<String>,
}

impl ConnectionInfo {
    /// The comment written on the connection's SYN: `amqpwire connection N` followed by
    /// `; key value` for each field that is set.
    pub fn comment(&self, conn: u64) -> String {
        let mut s = format!("amqpwire connection {conn}");
        let fields = [
            ("transport", self.transport.clone()),
            ("url", self.url.clone()),
            ("client", self.client.map(|a| a.to_string())),
            ("server", self.server.map(|a| a.to_string())),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                s.push_str(&format!("; {k} {v}"));
            }
        }
        if let Some(n) = &self.note {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }
}

#[derive(Debug)]
struct Flow {
    port: u16,
    /// The next sequence number of each direction (indexed by [`Direction::index`]).
    next: [u32; 2],
    /// Whether each direction has sent its FIN ([`PcapWriter::half_close`]).
    fin: [bool; 2],
}

/// Writes AMQP connections as a pcapng file: one section, one Ethernet interface, and per
/// connection a TCP handshake, the data of both directions as it is given (split at
/// [`WriterOptions::mss`]) with correct sequence and acknowledgement numbers and checksums,
/// and a FIN exchange (or a reset) at the end.
///
/// Each connection is named by a number of the caller's choosing and gets its own client
/// port. Nothing is buffered between calls except what `W` buffers; [`flush`](Self::flush)
/// flushes `W`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use amqpwire::capture::{CaptureReader, ConnectionInfo, Direction, PcapWriter, WriterOptions};
///
/// let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let mut w = PcapWriter::new(Vec::new(), WriterOptions::default())?;
/// let info = ConnectionInfo { transport: Some("tls".into()), ..Default::default() };
/// w.open(1, &info, t)?;
/// w.write(1, Direction::ClientToServer, b"AMQP\x00\x01\x00\x00", t)?;
/// w.write(1, Direction::ServerToClient, b"AMQP\x00\x01\x00\x00", t)?;
/// w.close(1, Direction::ClientToServer, t)?;
/// assert_eq!(w.packets(), 3 + 2 + 3); // handshake, data, FIN exchange
/// let file = w.into_inner();
/// assert_eq!(CaptureReader::new(&file)?.packets().count(), 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    opts: WriterOptions,
    flows: HashMap<u64, Flow>,
    ports: u64,
    packet: Vec<u8>,
    block: Vec<u8>,
    packets: u64,
}

impl<W: Write> PcapWriter<W> {
    /// A writer to `out`; writes the section header and the interface description at once.
    /// Fails when the two addresses are of different families or `mss` is out of range.
    pub fn new(out: W, opts: WriterOptions) -> io::Result<Self> {
        if opts.client_ip.is_ipv4() != opts.server_ip.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pcapng writer: the client and server addresses must both be IPv4 or both IPv6",
            ));
        }
        if opts.mss == 0 || opts.mss > MAX_SEGMENT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pcapng writer: mss {} is not in 1..={MAX_SEGMENT}", opts.mss),
            ));
        }
        let mut w = Self {
            out,
            opts,
            flows: HashMap::new(),
            ports: 0,
            packet: Vec::new(),
            block: Vec::new(),
            packets: 0,
        };
        w.write_headers()?;
        Ok(w)
    }

    /// Starts connection `conn`: a SYN (with `info` as its comment), SYN-ACK and ACK at
    /// `time`. Fails if `conn` is open already.
    pub fn open(&mut self, conn: u64, info: &ConnectionInfo, time: SystemTime) -> io::Result<()> {
        if self.flows.contains_key(&conn) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pcapng writer: connection {conn} is already open"),
            ));
        }
        self.start(conn, Some(&info.comment(conn)), time)
    }

    /// Appends `data` to one direction of connection `conn` at `time`, in packets of at most
    /// `mss` bytes (the last with PSH), each acknowledging everything the other side sent.
    /// A connection not opened yet is opened first, without a comment.
    pub fn write(
        &mut self,
        conn: u64,
        dir: Direction,
        data: &[u8],
        time: SystemTime,
    ) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.flows.contains_key(&conn) {
            self.start(conn, None, time)?;
        }
        let mss = self.opts.mss;
        let mut chunks = data.chunks(mss).peekable();
        while let Some(chunk) = chunks.next() {
            let Some(flow) = self.flows.get_mut(&conn) else { break };
            let seq = flow.next[dir.index()];
            let ack = flow.next[dir.reverse().index()];
            // `chunk` is at most 65000 bytes.
            flow.next[dir.index()] = seq.wrapping_add(chunk.len() as u32);
            let port = flow.port;
            let flags = Flags { psh: chunks.peek().is_none(), ..Flags::default() };
            self.packet(port, dir, flags, seq, Some(ack), chunk, time, None)?;
        }
        Ok(())
    }

    /// One side of connection `conn` closes its direction at `time` (a half-close): a FIN
    /// from `by` and the other side's ACK. The other side may go on sending; its own end
    /// is a later [`close`](Self::close) (or [`reset`](Self::reset)). Nothing happens for a
    /// connection that is not open, or a direction already closed.
    pub fn half_close(&mut self, conn: u64, by: Direction, time: SystemTime) -> io::Result<()> {
        let Some(flow) = self.flows.get_mut(&conn) else { return Ok(()) };
        let (a, b) = (by.index(), by.reverse().index());
        if flow.fin[a] {
            return Ok(());
        }
        flow.fin[a] = true;
        let (port, sa, sb) = (flow.port, flow.next[a], flow.next[b]);
        flow.next[a] = sa.wrapping_add(1);
        let fin = Flags { fin: true, ..Flags::default() };
        self.packet(port, by, fin, sa, Some(sb), &[], time, None)?;
        self.packet(
            port,
            by.reverse(),
            Flags::default(),
            sb,
            Some(sa.wrapping_add(1)),
            &[],
            time,
            None,
        )?;
        if self.flows.get(&conn).is_some_and(|f| f.fin[b]) {
            self.flows.remove(&conn);
        }
        Ok(())
    }

    /// Ends connection `conn` at `time`: a FIN from `by`, the other side's FIN, and the last
    /// ACK; after a [`half_close`](Self::half_close), the FIN of the side still open and
    /// its ACK. Nothing happens for a connection that is not open.
    pub fn close(&mut self, conn: u64, by: Direction, time: SystemTime) -> io::Result<()> {
        let Some(flow) = self.flows.get(&conn) else { return Ok(()) };
        if flow.fin.iter().any(|f| *f) {
            // The side that closed its direction has; the other closes now.
            let open = if flow.fin[by.index()] { by.reverse() } else { by };
            return self.half_close(conn, open, time);
        }
        let Some(flow) = self.flows.remove(&conn) else { return Ok(()) };
        let (a, b) = (by.index(), by.reverse().index());
        let [mut sa, mut sb] = [flow.next[a], flow.next[b]];
        let fin = Flags { fin: true, ..Flags::default() };
        self.packet(flow.port, by, fin, sa, Some(sb), &[], time, None)?;
        sa = sa.wrapping_add(1);
        self.packet(flow.port, by.reverse(), fin, sb, Some(sa), &[], time, None)?;
        sb = sb.wrapping_add(1);
        self.packet(flow.port, by, Flags::default(), sa, Some(sb), &[], time, None)
    }

    /// Ends every open connection at `time`, in the order of their numbers, as
    /// [`close`](Self::close) does with the client closing first (for a capture that ends
    /// while connections are still open).
    pub fn close_all(&mut self, time: SystemTime) -> io::Result<()> {
        let mut open: Vec<u64> = self.flows.keys().copied().collect();
        open.sort_unstable();
        for conn in open {
            self.close(conn, Direction::ClientToServer, time)?;
        }
        Ok(())
    }

    /// Aborts connection `conn` at `time`: one RST from `by`. Nothing happens for a
    /// connection that is not open.
    pub fn reset(&mut self, conn: u64, by: Direction, time: SystemTime) -> io::Result<()> {
        let Some(flow) = self.flows.remove(&conn) else { return Ok(()) };
        let seq = flow.next[by.index()];
        let ack = flow.next[by.reverse().index()];
        let rst = Flags { rst: true, ..Flags::default() };
        self.packet(flow.port, by, rst, seq, Some(ack), &[], time, None)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// How many packets have been written.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The client port of open connection `conn`.
    pub fn client_port(&self, conn: u64) -> Option<u16> {
        self.flows.get(&conn).map(|f| f.port)
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer, given back (unflushed).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn start(&mut self, conn: u64, comment: Option<&str>, time: SystemTime) -> io::Result<()> {
        let port = self.next_port();
        let seed = self.opts.seed;
        let isn = [initial_seq(conn, 0, seed), initial_seq(conn, 1, seed)];
        let c2s = Direction::ClientToServer;
        let syn = Flags { syn: true, ..Flags::default() };
        self.packet(port, c2s, syn, isn[0], None, &[], time, comment)?;
        let (c, s) = (isn[0].wrapping_add(1), isn[1].wrapping_add(1));
        self.packet(port, c2s.reverse(), syn, isn[1], Some(c), &[], time, None)?;
        self.packet(port, c2s, Flags::default(), c, Some(s), &[], time, None)?;
        self.flows.insert(conn, Flow { port, next: [c, s], fin: [false; 2] });
        Ok(())
    }

    /// A client port no open connection holds (when there is one).
    fn next_port(&mut self) -> u16 {
        let first = u64::from(self.opts.first_client_port);
        let span = 65536 - first;
        for _ in 0..=self.flows.len() {
            let port = (first + self.ports % span) as u16;
            self.ports = self.ports.wrapping_add(1);
            if !self.flows.values().any(|f| f.port == port) {
                return port;
            }
        }
        first as u16
    }

    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        port: u16,
        dir: Direction,
        flags: Flags,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
        time: SystemTime,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let (client, server) = (self.opts.client_ip, self.opts.server_ip);
        let sport = self.opts.server_port;
        let (src, dst, src_port, dst_port, src_mac, dst_mac) = match dir {
            Direction::ClientToServer => (client, server, port, sport, CLIENT_MAC, SERVER_MAC),
            Direction::ServerToClient => (server, client, sport, port, SERVER_MAC, CLIENT_MAC),
        };
        let mut tcp = TcpHeader::new(src_port, dst_port, seq, WINDOW);
        tcp.syn = flags.syn;
        tcp.fin = flags.fin;
        tcp.rst = flags.rst;
        tcp.psh = flags.psh;
        if let Some(a) = ack {
            tcp.ack = true;
            tcp.acknowledgment_number = a;
        }
        if flags.syn {
            let mss = u16::try_from(self.opts.mss).unwrap_or(u16::MAX);
            tcp.set_options(&[
                TcpOptionElement::MaximumSegmentSize(mss),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(WINDOW_SCALE),
            ])
            .map_err(io::Error::other)?;
        }
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
                Ipv4Header::new(0, 64, IpNumber::TCP, s.octets(), d.octets())
                    .map_err(io::Error::other)?,
                Default::default(),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
                Ipv6Header {
                    hop_limit: 64,
                    next_header: IpNumber::TCP,
                    source: s.octets(),
                    destination: d.octets(),
                    ..Default::default()
                },
                Default::default(),
            ),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "mixed address families")),
        };
        self.packet.clear();
        PacketBuilder::ethernet2(src_mac, dst_mac)
            .ip(ip)
            .tcp_header(tcp)
            .write(&mut self.packet, payload)
            .map_err(io::Error::other)?;
        let packet = std::mem::take(&mut self.packet);
        let r = self.write_epb(&packet, time, comment);
        self.packet = packet;
        r
    }

    fn write_headers(&mut self) -> io::Result<()> {
        // Section header: byte-order magic, version 1.0, section length unknown (-1).
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        if let Some(c) = self.opts.comment.clone() {
            option(&mut body, OPT_COMMENT, c.as_bytes());
        }
        let appl = format!("amqpwire {}", env!("CARGO_PKG_VERSION"));
        option(&mut body, SHB_USERAPPL, appl.as_bytes());
        end_options(&mut body);
        self.write_block(SHB, &body)?;

        // One Ethernet interface, no snap length, nanosecond timestamps.
        let mut body = Vec::new();
        body.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        option(&mut body, IF_NAME, b"amqpwire");
        option(&mut body, IF_TSRESOL, &[9]);
        end_options(&mut body);
        self.write_block(IDB, &body)
    }

    fn write_epb(
        &mut self,
        packet: &[u8],
        time: SystemTime,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let ns = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        let len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        let mut body = std::mem::take(&mut self.block);
        body.clear();
        body.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        body.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ns as u32).to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(packet);
        pad(&mut body);
        if let Some(c) = comment {
            option(&mut body, OPT_COMMENT, c.as_bytes());
            end_options(&mut body);
        }
        let r = self.write_block(EPB, &body);
        self.block = body;
        self.packets += 1;
        r
    }

    fn write_block(&mut self, kind: u32, body: &[u8]) -> io::Result<()> {
        let total = u32::try_from(body.len() + 12).map_err(io::Error::other)?;
        self.out.write_all(&kind.to_le_bytes())?;
        self.out.write_all(&total.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&total.to_le_bytes())
    }
}

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    syn: bool,
    fin: bool,
    rst: bool,
    psh: bool,
}

/// A deterministic initial sequence number per connection, direction and seed
/// (splitmix64), so that files are reproducible and sequence numbers wrap at different
/// places.
fn initial_seq(conn: u64, dir: u64, seed: u64) -> u32 {
    let mut z = conn.wrapping_mul(2).wrapping_add(dir).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z ^= seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// Appends one pcapng option (a value longer than 65535 bytes is cut there, on a UTF-8
/// boundary when it is text).
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let mut n = value.len().min(usize::from(u16::MAX));
    if let Ok(s) = std::str::from_utf8(value) {
        while !s.is_char_boundary(n) {
            n -= 1;
        }
    }
    let value = value.get(..n).unwrap_or_default();
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad(out);
}

fn end_options(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0, 0]);
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// The packets of a pcapng file as this writer lays it out, block by block.
    fn packets(file: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < file.len() {
            let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().expect("4"));
            let (kind, len) = (u32_at(pos), u32_at(pos + 4) as usize);
            assert_eq!(u32_at(pos + len - 4) as usize, len, "trailing length");
            if kind == EPB {
                let caplen = u32_at(pos + 20) as usize;
                out.push(file[pos + 28..pos + 28 + caplen].to_vec());
            }
            pos += len;
        }
        out
    }

    /// Each packet as `PORT FLAGS LEN`, checking its IP and TCP checksums and that each
    /// side's sequence numbers follow on from its last segment.
    fn summary(file: &[u8]) -> Vec<String> {
        let mut summary = Vec::new();
        let mut next = std::collections::HashMap::new();
        for p in &packets(file) {
            let s = SlicedPacket::from_ethernet(p).expect("a packet");
            let Some(TransportSlice::Tcp(tcp)) = &s.transport else { panic!("TCP") };
            let sum = match &s.net {
                Some(NetSlice::Ipv4(ip)) => {
                    let h = ip.header();
                    assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                    tcp.calc_checksum_ipv4(h.source(), h.destination())
                }
                Some(NetSlice::Ipv6(ip)) => {
                    let h = ip.header();
                    tcp.calc_checksum_ipv6(h.source(), h.destination())
                }
                _ => panic!("IP"),
            };
            assert_eq!(sum.expect("checksum"), tcp.checksum());
            let (port, to) = (tcp.source_port(), tcp.destination_port());
            if let Some(&want) = next.get(&(port, to)) {
                assert_eq!(tcp.sequence_number(), want, "port {port}");
            }
            let used = tcp.payload().len() as u32 + u32::from(tcp.syn() || tcp.fin());
            next.insert((port, to), tcp.sequence_number().wrapping_add(used));
            let flags = [
                (tcp.syn(), 'S'),
                (tcp.fin(), 'F'),
                (tcp.ack(), 'A'),
                (tcp.psh(), 'P'),
                (tcp.rst(), 'R'),
            ];
            let flags: String = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
            summary.push(format!("{port} {flags} {}", tcp.payload().len()));
        }
        summary
    }

    #[test]
    fn a_half_close_lets_the_other_side_send_before_its_own_fin() {
        let mut w = PcapWriter::new(Vec::new(), WriterOptions::default()).expect("writer");
        let (t, c2s, s2c) = (UNIX_EPOCH, Direction::ClientToServer, Direction::ServerToClient);
        w.write(1, c2s, b"ask", t).expect("write");
        w.half_close(1, c2s, t).expect("half-close");
        w.half_close(1, c2s, t).expect("again: nothing");
        w.write(1, s2c, b"answer", t).expect("write");
        // The end, named from the side that closed first: the other side's FIN.
        w.close(1, c2s, t).expect("close");
        w.close(1, c2s, t).expect("closed: nothing");
        // A server that half-closes first, then the client's close.
        w.write(2, s2c, b"bye", t).expect("write");
        w.half_close(2, s2c, t).expect("half-close");
        w.write(2, c2s, b"late", t).expect("write");
        w.close(2, c2s, t).expect("close");
        assert_eq!(w.client_port(2), None, "ended");
        assert_eq!(
            summary(w.get_ref()),
            [
                "49152 S 0",
                "5672 SA 0",
                "49152 A 0",
                "49152 AP 3",
                "49152 FA 0",
                "5672 A 0",
                "5672 AP 6",
                "5672 FA 0",
                "49152 A 0",
                "49153 S 0",
                "5672 SA 0",
                "49153 A 0",
                "5672 AP 3",
                "5672 FA 0",
                "49153 A 0",
                "49153 AP 4",
                "49153 FA 0",
                "5672 A 0",
            ]
        );
    }

    #[test]
    fn packets_carry_valid_checksums_sequence_numbers_and_flags() {
        for (client, server) in [
            (WriterOptions::default().client_ip, WriterOptions::default().server_ip),
            ("2001:db8::1".parse().expect("v6"), "2001:db8::2".parse().expect("v6")),
        ] {
            let opts = WriterOptions {
                client_ip: client,
                server_ip: server,
                mss: 1000,
                ..Default::default()
            };
            let mut w = PcapWriter::new(Vec::new(), opts).expect("writer");
            let t = UNIX_EPOCH;
            w.write(9, Direction::ClientToServer, &[7; 2500], t).expect("write");
            w.write(9, Direction::ServerToClient, b"back", t).expect("write");
            w.reset(9, Direction::ServerToClient, t).expect("reset");
            let file = w.into_inner();
            assert_eq!(file.get(..4), Some(&SHB.to_le_bytes()[..]));
            assert_eq!(packets(&file).len(), 3 + 3 + 1 + 1);
            let summary = summary(&file);
            assert_eq!(
                summary,
                [
                    "49152 S 0",
                    "5672 SA 0",
                    "49152 A 0",
                    "49152 A 1000",
                    "49152 A 1000",
                    "49152 AP 500",
                    "5672 AP 4",
                    "5672 AR 0"
                ]
            );
        }
    }

    #[test]
    fn ports_are_distinct_per_open_connection_and_wrap() {
        let opts = WriterOptions { first_client_port: 65533, ..Default::default() };
        let mut w = PcapWriter::new(Vec::new(), opts).expect("writer");
        let t = UNIX_EPOCH;
        let c2s = Direction::ClientToServer;
        let mut ports = Vec::new();
        for conn in 0..3 {
            w.write(conn, c2s, b"x", t).expect("write");
            ports.push(w.client_port(conn));
        }
        w.close(1, c2s, t).expect("close");
        // 65533 and 65535 are still held: the next free port after 65535 wraps to 65534.
        w.write(3, c2s, b"x", t).expect("write");
        ports.push(w.client_port(3));
        assert_eq!(ports, [Some(65533), Some(65534), Some(65535), Some(65534)]);
        assert!(w.open(0, &ConnectionInfo::default(), t).is_err(), "already open");
        let bad = WriterOptions { mss: 0, ..Default::default() };
        assert!(PcapWriter::new(Vec::new(), bad).is_err());
        // A comment longer than an option holds is cut, on a character boundary.
        let long = Some("é".repeat(40_000));
        let w = PcapWriter::new(Vec::new(), WriterOptions { comment: long, ..Default::default() });
        let file = w.expect("writer").into_inner();
        let text = String::from_utf8_lossy(&file);
        assert_eq!(text.matches('é').count(), 32767);
    }
}

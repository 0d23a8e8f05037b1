//! From a captured packet to its TCP segment: the link layers captures use, then IPv4 or
//! IPv6 (headers parsed by `etherparse`, which is fuzzed and never panics), then TCP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::err::Layer;
use etherparse::{EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TcpSlice, TransportSlice};

/// `LINKTYPE_NULL`: BSD loopback, a 4-byte address family in the capturing host's byte
/// order.
pub const LINKTYPE_NULL: u16 = 0;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u16 = 1;
/// `LINKTYPE_RAW`: the packet starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u16 = 101;
/// `LINKTYPE_LOOP`: OpenBSD loopback, the address family in network byte order.
pub const LINKTYPE_LOOP: u16 = 108;
/// `LINKTYPE_LINUX_SLL`: Linux cooked capture, version 1 (`tcpdump -i any`).
pub const LINKTYPE_LINUX_SLL: u16 = 113;
/// `LINKTYPE_IPV4`: raw IPv4.
pub const LINKTYPE_IPV4: u16 = 228;
/// `LINKTYPE_IPV6`: raw IPv6.
pub const LINKTYPE_IPV6: u16 = 229;
/// `LINKTYPE_LINUX_SLL2`: Linux cooked capture, version 2.
pub const LINKTYPE_LINUX_SLL2: u16 = 276;

/// The TCP part of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// The sender.
    pub src: SocketAddr,
    /// The receiver.
    pub dst: SocketAddr,
    /// The sequence number.
    pub seq: u32,
    /// The acknowledgement number, when the ACK flag is set.
    pub ack: Option<u32>,
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// The payload bytes captured.
    pub payload: &'a [u8],
    /// The payload's length on the wire, from the IP length fields: more than
    /// `payload.len()` when the capture cut the packet short (a snap length).
    pub wire_len: usize,
}

/// The name of a link type for messages.
pub fn link_type_name(link_type: u16) -> String {
    let name = match link_type {
        LINKTYPE_NULL => "BSD loopback",
        LINKTYPE_ETHERNET => "Ethernet",
        LINKTYPE_RAW | 12 | 14 => "raw IP",
        LINKTYPE_LOOP => "OpenBSD loopback",
        LINKTYPE_LINUX_SLL => "Linux cooked v1",
        LINKTYPE_LINUX_SLL2 => "Linux cooked v2",
        LINKTYPE_IPV4 => "raw IPv4",
        LINKTYPE_IPV6 => "raw IPv6",
        105 => "IEEE 802.11",
        127 => "IEEE 802.11 radiotap",
        _ => return format!("link type {link_type}"),
    };
    format!("link type {link_type} ({name})")
}

/// Whether the link type is one [`parse_tcp`] reads.
pub fn link_type_supported(link_type: u16) -> bool {
    matches!(
        link_type,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_RAW
            | 12
            | 14
            | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_LINUX_SLL2
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
    )
}

/// The TCP segment in a packet of link type `link_type`: `Ok(None)` when the packet
/// carries something else (ARP, UDP, ICMP, a protocol the link layer names that is not
/// IP), an error naming the layer when a header is malformed or cut short, when an IP
/// fragment carries TCP (fragments are not reassembled), or when the link type is not
/// supported.
pub fn parse_tcp(link_type: u16, data: &[u8]) -> Result<Option<TcpSegment<'_>>, String> {
    let sliced = match link_type {
        LINKTYPE_ETHERNET => {
            LaxSlicedPacket::from_ethernet(data).map_err(|e| format!("Ethernet header: {e}"))?
        }
        LINKTYPE_LINUX_SLL => {
            let ether = be16(data, 14).ok_or_else(|| short("Linux cooked header", 16, data))?;
            LaxSlicedPacket::from_ether_type(EtherType(ether), data.get(16..).unwrap_or_default())
        }
        LINKTYPE_LINUX_SLL2 => {
            let ether = be16(data, 0).ok_or_else(|| short("Linux cooked v2 header", 20, data))?;
            let rest = data.get(20..).ok_or_else(|| short("Linux cooked v2 header", 20, data))?;
            LaxSlicedPacket::from_ether_type(EtherType(ether), rest)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let b: [u8; 4] = data
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| short("loopback header", 4, data))?;
            // LINKTYPE_NULL is in the capturing host's byte order: a family is small, so
            // a value that does not fit 16 bits was read in the wrong one.
            let family = match u32::from_le_bytes(b) {
                f if link_type == LINKTYPE_NULL && f <= 0xFFFF => f,
                _ => u32::from_be_bytes(b),
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD, OpenBSD), 28
            // (FreeBSD), 30 (macOS).
            if !matches!(family, 2 | 10 | 24 | 28 | 30) {
                return Ok(None);
            }
            ip(data.get(4..).unwrap_or_default())?
        }
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => ip(data)?,
        other => return Err(format!("{} is not supported", link_type_name(other))),
    };
    segment(&sliced)
}

/// A TCP segment from the fixed 20 bytes of a header the capture cut short (RFC 9293,
/// 3.1): no payload captured, `declared` bytes of TCP on the wire.
fn cut_header(src: IpAddr, dst: IpAddr, tcp: &[u8], declared: usize) -> Option<TcpSegment<'_>> {
    let fixed: &[u8; 20] = tcp.get(..20)?.try_into().ok()?;
    let u16_at = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
    let u32_at =
        |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let header_len = usize::from(fixed[12] >> 4) * 4;
    if header_len < 20 || tcp.len() >= header_len {
        return None; // a malformed header, or one that is whole: not a cut one
    }
    let flags = fixed[13];
    Some(TcpSegment {
        src: SocketAddr::new(src, u16_at(0)),
        dst: SocketAddr::new(dst, u16_at(2)),
        seq: u32_at(4),
        ack: (flags & 0x10 != 0).then(|| u32_at(8)),
        syn: flags & 0x02 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        payload: &[],
        wire_len: declared.saturating_sub(header_len),
    })
}

fn ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, String> {
    LaxSlicedPacket::from_ip(data).map_err(|e| format!("IP header: {e}"))
}

fn short(what: &str, need: usize, data: &[u8]) -> String {
    format!("{what}: {} bytes captured, fewer than its {need}", data.len())
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn segment<'a>(p: &LaxSlicedPacket<'a>) -> Result<Option<TcpSegment<'a>>, String> {
    let Some(net) = &p.net else {
        // Not IP (or no header at all): a failed IP header is an error, anything else is
        // not ours.
        return match &p.stop_err {
            Some((_, Layer::Arp)) | None => Ok(None),
            Some((e, _)) => Err(format!("{e}")),
        };
    };
    let (src, dst, payload, declared) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let exts = v4.extensions().auth.map_or(0, |a| a.slice().len());
            let declared = usize::from(h.total_len()).saturating_sub(h.slice().len() + exts);
            let src = IpAddr::V4(Ipv4Addr::from(h.source()));
            let dst = IpAddr::V4(Ipv4Addr::from(h.destination()));
            (src, dst, v4.payload(), declared)
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let exts = v6.extensions().slice().len();
            let declared = usize::from(h.payload_length()).saturating_sub(exts);
            let src = IpAddr::V6(Ipv6Addr::from(h.source()));
            let dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
            (src, dst, v6.payload(), declared)
        }
        LaxNetSlice::Arp(_) => return Ok(None),
    };
    if payload.ip_number != IpNumber::TCP {
        return Ok(None);
    }
    if payload.fragmented {
        // IPv4 fragments come through `fragment` and `Defrag`; an IPv6 fragment of TCP is
        // rare enough (TCP sizes its segments to the path) to be reported instead.
        return Err("IPv6 fragment of a TCP segment: IPv6 fragments are not reassembled".into());
    }
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        // A header the snap length cut short (in its options, as a 64-byte snap length
        // cuts every header with timestamps): its fixed 20 bytes say what is needed, and
        // the rest of the segment is missing, as a cut payload is.
        if payload.incomplete {
            if let Some(segment) = cut_header(src, dst, payload.payload, declared) {
                return Ok(Some(segment));
            }
        }
        return Err(match &p.stop_err {
            Some((e, _)) => format!("{e}"),
            None => "TCP header missing".into(),
        });
    };
    let data = tcp.payload();
    // A jumbogram (IPv6 payload length 0) or a complete packet: what was captured is all.
    let wire_len = if payload.incomplete && declared > 0 {
        declared.saturating_sub(tcp.header_slice().len()).max(data.len())
    } else {
        data.len()
    };
    Ok(Some(TcpSegment {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.ack().then(|| tcp.acknowledgment_number()),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload: data,
        wire_len,
    }))
}

/// A fragment of an IPv4 datagram carrying TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Source and destination addresses.
    pub src: Ipv4Addr,
    /// The destination.
    pub dst: Ipv4Addr,
    /// The datagram's identification.
    pub id: u16,
    /// Where this fragment's bytes go in the datagram's payload.
    pub offset: usize,
    /// More fragments follow (MF).
    pub more: bool,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The IPv4 fragment of a TCP datagram in a packet of link type `link_type`, if it is one
/// (a datagram sent whole is not).
pub fn fragment(link_type: u16, data: &[u8]) -> Option<Fragment> {
    let sliced = match link_type {
        LINKTYPE_ETHERNET => LaxSlicedPacket::from_ethernet(data).ok()?,
        LINKTYPE_LINUX_SLL => LaxSlicedPacket::from_ether_type(
            EtherType(be16(data, 14)?),
            data.get(16..).unwrap_or_default(),
        ),
        LINKTYPE_LINUX_SLL2 => {
            LaxSlicedPacket::from_ether_type(EtherType(be16(data, 0)?), data.get(20..)?)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => LaxSlicedPacket::from_ip(data.get(4..)?).ok()?,
        LINKTYPE_RAW | 12 | 14 | LINKTYPE_IPV4 => LaxSlicedPacket::from_ip(data).ok()?,
        _ => return None,
    };
    let Some(LaxNetSlice::Ipv4(v4)) = &sliced.net else { return None };
    let h = v4.header();
    let payload = v4.payload();
    if !h.is_fragmenting_payload() || payload.ip_number != IpNumber::TCP {
        return None;
    }
    Some(Fragment {
        src: Ipv4Addr::from(h.source()),
        dst: Ipv4Addr::from(h.destination()),
        id: h.identification(),
        offset: usize::from(h.fragments_offset().value()) * 8,
        more: h.more_fragments(),
        data: payload.payload.to_vec(),
    })
}

/// A reassembled IPv4 datagram's TCP bytes, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender.
    pub src: Ipv4Addr,
    /// The receiver.
    pub dst: Ipv4Addr,
    /// The TCP header and payload.
    pub tcp: Vec<u8>,
}

impl Datagram {
    /// Its TCP segment.
    pub fn segment(&self) -> Result<TcpSegment<'_>, String> {
        let tcp = TcpSlice::from_slice(&self.tcp)
            .map_err(|e| format!("TCP header of a reassembled IPv4 datagram: {e}"))?;
        let data = tcp.payload();
        Ok(TcpSegment {
            src: SocketAddr::new(IpAddr::V4(self.src), tcp.source_port()),
            dst: SocketAddr::new(IpAddr::V4(self.dst), tcp.destination_port()),
            seq: tcp.sequence_number(),
            ack: tcp.ack().then(|| tcp.acknowledgment_number()),
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: data,
            wire_len: data.len(),
        })
    }
}

/// Datagrams being reassembled at once, at most; past it the oldest is given up.
pub const MAX_DATAGRAMS: usize = 64;

/// IPv4 reassembly (RFC 791) of the TCP datagrams a capture holds in fragments, in any
/// order, bounded: at most [`MAX_DATAGRAMS`] at once, each at most 65535 bytes, overlapping
/// fragments refused. Datagrams are kept in arrival order.
#[derive(Debug, Default)]
pub struct Defrag {
    open: Vec<Pending>,
}

/// A datagram being reassembled: (source, destination, identification), its fragments so
/// far by offset, and the payload's length once the last fragment came.
type Pending =
    ((Ipv4Addr, Ipv4Addr, u16), std::collections::BTreeMap<usize, Vec<u8>>, Option<usize>);

impl Defrag {
    /// A reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fragment: the datagram when it is complete, `Ok(None)` while it is not, an
    /// error for a fragment that cannot belong (past 65535 bytes, overlapping another); a
    /// note on a datagram given up for room is the error's too.
    pub fn push(&mut self, f: Fragment) -> Result<Option<Datagram>, String> {
        let key = (f.src, f.dst, f.id);
        let end = f.offset + f.data.len();
        if end > 65535 - 20 {
            return Err(format!(
                "IPv4 fragment of datagram {} ({} -> {}) ends at {end}, past the largest datagram",
                f.id, f.src, f.dst
            ));
        }
        let at = match self.open.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                let mut given_up = None;
                if self.open.len() >= MAX_DATAGRAMS {
                    let ((s, d, id), _, _) = self.open.remove(0);
                    given_up = Some(format!(
                        "IPv4 datagram {id} ({s} -> {d}) never completed: given up for room"
                    ));
                }
                self.open.push((key, Default::default(), None));
                if let Some(msg) = given_up {
                    self.add(self.open.len() - 1, f, end)?;
                    return Err(msg);
                }
                self.open.len() - 1
            }
        };
        self.add(at, f, end)
    }

    fn add(&mut self, at: usize, f: Fragment, end: usize) -> Result<Option<Datagram>, String> {
        let (_, parts, total) = &mut self.open[at];
        if parts.get(&f.offset) == Some(&f.data) && (f.more || *total == Some(end)) {
            // The same fragment again (a capture on both ends, a retransmission).
            return Ok(None);
        }
        let overlaps = parts.range(..end).next_back().is_some_and(|(o, d)| o + d.len() > f.offset);
        if overlaps
            || total.is_some_and(|t| end > t)
            || (!f.more && parts.keys().any(|&o| o >= end))
        {
            let ((s, d, id), _, _) = self.open.remove(at);
            return Err(format!(
                "IPv4 fragments of datagram {id} ({s} -> {d}) overlap or disagree on its length: not reassembled"
            ));
        }
        if !f.more {
            *total = Some(end);
        }
        parts.insert(f.offset, f.data);
        let Some(total) = *total else { return Ok(None) };
        // Complete when the parts cover 0..total without a hole.
        let mut covered = 0;
        for (o, d) in parts.iter() {
            if *o != covered {
                return Ok(None);
            }
            covered += d.len();
        }
        if covered != total {
            return Ok(None);
        }
        let ((src, dst, _), parts, _) = self.open.remove(at);
        let mut tcp = Vec::with_capacity(total);
        for (_, d) in parts {
            tcp.extend(d);
        }
        Ok(Some(Datagram { src, dst, tcp }))
    }

    /// The datagrams still incomplete (for a note at the end of a capture).
    pub fn incomplete(&self) -> Vec<String> {
        self.open
            .iter()
            .map(|((s, d, id), parts, _)| {
                let have: usize = parts.values().map(Vec::len).sum();
                format!("IPv4 datagram {id} ({s} -> {d}) incomplete at the end: {have} bytes of fragments, not reassembled")
            })
            .collect()
    }
}

//! From a captured packet to its TCP segment: the link layers captures use, then IPv4 or
//! IPv6 (headers parsed by `etherparse`, which is fuzzed and never panics), then TCP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::err::Layer;
use etherparse::{EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice};

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
        return Err("IP fragment of a TCP segment: fragments are not reassembled".into());
    }
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
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

//! The pcap and pcapng reader: packets out of a capture file held in memory
//! ([`CaptureReader`]), or read from any [`std::io::Read`] a block at a time
//! ([`CaptureStream`]).

use std::fmt;
use std::io::Read;
use std::time::Duration;

use super::writer::{BYTE_ORDER_MAGIC, EPB, IDB, SHB};

/// The longest block (pcapng) or packet record's data (pcap) read: 64 MiB, far past any
/// link's packets (libpcap's largest snapshot length is 256 KiB), so that a damaged
/// length is reported at once rather than read towards (a stream would wait for it).
const MAX_BLOCK: u32 = 64 << 20;

/// pcapng's obsolete Packet Block and the Simple Packet Block.
const PB: u32 = 2;
const SPB: u32 = 3;

/// The layout of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// libpcap's format.
    Pcap {
        /// Timestamps in nanoseconds (magic `a1b23c4d`) rather than microseconds.
        nanos: bool,
        /// Written big-endian.
        big_endian: bool,
        /// The modified format of old Red Hat patches (magic `a1b2cd34`, 24-byte records).
        modified: bool,
    },
    /// pcapng.
    Pcapng {
        /// This section is big-endian.
        big_endian: bool,
    },
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pcap { nanos, modified, .. } => {
                f.write_str("pcap")?;
                if *nanos {
                    f.write_str(" (nanosecond)")?;
                }
                if *modified {
                    f.write_str(" (modified)")?;
                }
                Ok(())
            }
            Self::Pcapng { .. } => f.write_str("pcapng"),
        }
    }
}

/// The start of a capture, or of a new section of a pcapng file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// File offset of the file header or section header block.
    pub offset: usize,
    /// The format (for pcapng, with this section's byte order).
    pub format: Format,
    /// The section's comments (`opt_comment`).
    pub comments: Vec<String>,
    /// The application that wrote it (`shb_userappl`).
    pub application: Option<String>,
    /// The operating system it was written on (`shb_os`).
    pub os: Option<String>,
    /// The hardware it was written on (`shb_hardware`).
    pub hardware: Option<String>,
}

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// 1-based, counting every packet of the file as Wireshark numbers its frames.
    pub number: u64,
    /// File offset of the packet's record or block.
    pub offset: usize,
    /// When it was captured, since the Unix epoch.
    pub time: Duration,
    /// The link-layer header type (`LINKTYPE_*`: 1 Ethernet, 113 Linux cooked…).
    pub link_type: u16,
    /// The bytes captured.
    pub data: &'a [u8],
    /// The packet's length on the wire (more than `data` when the capture cut it short).
    pub original_len: u32,
    /// The packet's comments (`opt_comment`, pcapng only).
    pub comments: Vec<String>,
}

/// An item of a capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block<'a> {
    /// A file or section header.
    Section(Section),
    /// A packet.
    Packet(Packet<'a>),
}

/// A capture file that cannot be read (from `offset` on, when `fatal`) or one packet of it
/// that cannot be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureError {
    /// The packet at fault (1-based, as Wireshark numbers frames), or `None` for a file or
    /// section header.
    pub packet: Option<u64>,
    /// File offset of the record, block or header at fault.
    pub offset: usize,
    /// Whether reading stops here (the file's structure is lost) or goes on with the next
    /// packet.
    pub fatal: bool,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.packet {
            Some(n) => write!(f, "packet {n} (file offset {}): {}", self.offset, self.problem),
            None => write!(f, "file offset {}: {}", self.offset, self.problem),
        }
    }
}

impl std::error::Error for CaptureError {}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: u16,
    snap_len: u32,
    /// Timestamp units per second.
    units: u64,
    /// Seconds added to every timestamp.
    offset: i64,
}

#[derive(Debug)]
enum Kind {
    Pcap { le: bool, nanos: bool, modified: bool, link_type: u16 },
    Pcapng { le: bool, interfaces: Vec<Interface> },
}

/// Reads the packets of a pcap or pcapng file in memory, in file order. An iterator of
/// [`Block`]s: a [`Section`] first, then packets (and, in pcapng, further sections).
///
/// Errors name the packet and the problem. A damaged packet (an unknown interface, a
/// captured length past its block) is reported and skipped; a damaged structure (a block
/// or record running past the end of the file, lengths that disagree) is reported as fatal
/// and ends the iteration. Nothing is copied: packets borrow the file's bytes.
#[derive(Debug)]
pub struct CaptureReader<'a> {
    /// The file, or (for a [`CaptureStream`]) the part of it in memory.
    data: &'a [u8],
    /// The file offset of `data[0]`.
    base: usize,
    /// The file offset of the next block or record.
    pos: usize,
    kind: Kind,
    packets: u64,
    header: Option<Section>,
    done: bool,
    /// Set by a [`CaptureStream`] while it takes a block that yields nothing: the reader
    /// returns after it (with `skipped`) rather than going on to a block not yet read.
    one_block: bool,
    skipped: bool,
}

/// The format `data` starts with, from its magic number.
pub(super) fn detect(data: &[u8]) -> Option<Format> {
    let magic: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let (nanos, modified) = match u32::from_le_bytes(magic) {
        0xA1B2_C3D4 => (false, false),
        0xA1B2_3C4D => (true, false),
        0xA1B2_CD34 => (false, true),
        0x0A0D_0D0A => return Some(Format::Pcapng { big_endian: false }),
        _ => match u32::from_be_bytes(magic) {
            0xA1B2_C3D4 => return Some(pcap(false, false, true)),
            0xA1B2_3C4D => return Some(pcap(true, false, true)),
            0xA1B2_CD34 => return Some(pcap(false, true, true)),
            _ => return None,
        },
    };
    Some(pcap(nanos, modified, false))
}

fn pcap(nanos: bool, modified: bool, big_endian: bool) -> Format {
    Format::Pcap { nanos, big_endian, modified }
}

impl<'a> CaptureReader<'a> {
    /// A reader over a whole capture file. Fails when `data` does not start with a pcap or
    /// pcapng magic number, or a pcap file header is cut short.
    pub fn new(data: &'a [u8]) -> Result<Self, CaptureError> {
        let err = |problem: String| CaptureError { packet: None, offset: 0, fatal: true, problem };
        let Some(format) = detect(data) else {
            let start = data.get(..4).unwrap_or(data);
            return Err(err(format!(
                "not a capture: no pcap or pcapng magic number (the file starts with {})",
                hex(start)
            )));
        };
        match format {
            Format::Pcap { nanos, big_endian, modified } => {
                let Some(h) = data.get(..24) else {
                    return Err(err(format!(
                        "pcap file header: the file ends after {} of its 24 bytes",
                        data.len()
                    )));
                };
                let le = !big_endian;
                // libpcap's LT_LINKTYPE: the low 26 bits; the rest is FCS information.
                let link = read_u32(h, 20, le).unwrap_or(0) & 0x03FF_FFFF;
                let link_type = u16::try_from(link).unwrap_or(u16::MAX);
                let header = Section {
                    offset: 0,
                    format,
                    comments: Vec::new(),
                    application: None,
                    os: None,
                    hardware: None,
                };
                Ok(Self {
                    data,
                    base: 0,
                    pos: 24,
                    kind: Kind::Pcap { le, nanos, modified, link_type },
                    packets: 0,
                    header: Some(header),
                    done: false,
                    one_block: false,
                    skipped: false,
                })
            }
            Format::Pcapng { .. } => Ok(Self {
                data,
                base: 0,
                pos: 0,
                kind: Kind::Pcapng { le: true, interfaces: Vec::new() },
                packets: 0,
                header: None,
                done: false,
                one_block: false,
                skipped: false,
            }),
        }
    }

    /// The packets alone (sections skipped), with the errors in their place.
    pub fn packets(self) -> impl Iterator<Item = Result<Packet<'a>, CaptureError>> {
        self.filter_map(|b| match b {
            Ok(Block::Packet(p)) => Some(Ok(p)),
            Ok(Block::Section(_)) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// How many packets have been met so far (read or reported as damaged).
    pub fn packet_count(&self) -> u64 {
        self.packets
    }

    /// The same reader over another part of the file: `data` starts at file offset
    /// `base` (at or before the next block).
    fn rebind(self, data: &[u8], base: usize) -> CaptureReader<'_> {
        let CaptureReader { pos, kind, packets, header, done, .. } = self;
        CaptureReader {
            data,
            base,
            pos,
            kind,
            packets,
            header,
            done,
            one_block: false,
            skipped: false,
        }
    }

    /// How many bytes from the next block's start it takes to read that block whole, as
    /// far as the bytes at hand tell (a header's length until the header is there).
    fn wants(&self) -> usize {
        let rest = self.data.get(self.pos - self.base..).unwrap_or_default();
        let total = |head: usize, len: Option<usize>| match len {
            Some(len) if rest.len() >= head => len.max(head),
            _ => head,
        };
        // A length the reader refuses is refused from the header alone.
        match &self.kind {
            Kind::Pcap { le, modified, .. } => {
                let head = if *modified { 24 } else { 16 };
                let caplen = read_u32(rest, 8, *le).filter(|c| *c <= MAX_BLOCK);
                total(head, caplen.map(|c| head + c as usize))
            }
            Kind::Pcapng { le, .. } => {
                // A section header block's own byte-order magic gives its length's order
                // (a magic that is neither is refused from the first 12 bytes).
                let le = match rest.get(8..12) {
                    Some(magic) if read_u32(rest, 0, true) == Some(SHB) => {
                        if magic == BYTE_ORDER_MAGIC.to_le_bytes() {
                            true
                        } else if magic == BYTE_ORDER_MAGIC.to_be_bytes() {
                            false
                        } else {
                            return 12;
                        }
                    }
                    _ => *le,
                };
                let len =
                    read_u32(rest, 4, le).filter(|l| *l >= 12 && l % 4 == 0 && *l <= MAX_BLOCK);
                total(12, len.map(|len| len as usize))
            }
        }
    }

    /// Whether the next block, once read, yields nothing: a pcapng interface description
    /// or a block of a type not read (which the reader goes on past).
    fn next_yields_nothing(&self) -> bool {
        let rest = self.data.get(self.pos - self.base..).unwrap_or_default();
        match &self.kind {
            Kind::Pcap { .. } => false,
            Kind::Pcapng { le, .. } => {
                read_u32(rest, 0, *le).is_some_and(|k| !matches!(k, SHB | EPB | PB | SPB))
            }
        }
    }

    fn next_pcap(&mut self) -> Option<Result<Block<'a>, CaptureError>> {
        let Kind::Pcap { le, nanos, modified, link_type } = self.kind else { return None };
        let rest = self.data.get(self.pos - self.base..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let number = self.packets + 1;
        self.packets = number;
        let head_len = if modified { 24 } else { 16 };
        let offset = self.pos;
        let fatal =
            |problem: String| CaptureError { packet: Some(number), offset, fatal: true, problem };
        let Some(head) = rest.get(..head_len) else {
            return Some(Err(fatal(format!(
                "the file ends inside the packet's record header ({} of {head_len} bytes)",
                rest.len()
            ))));
        };
        let field = |i: usize| read_u32(head, i * 4, le).unwrap_or(0);
        let (secs, frac, caplen, origlen) = (field(0), field(1), field(2), field(3));
        let left = rest.len() - head_len;
        if caplen > MAX_BLOCK {
            return Some(Err(fatal(format!(
                "captured length {caplen} is over the {MAX_BLOCK} bytes a packet may have"
            ))));
        }
        let Some(data) = rest.get(head_len..).and_then(|r| r.get(..caplen as usize)) else {
            return Some(Err(fatal(format!(
                "captured length {caplen} exceeds the {left} bytes left in the file"
            ))));
        };
        self.pos += head_len + data.len();
        let frac_ns = if nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        let time = Duration::from_secs(u64::from(secs)) + Duration::from_nanos(frac_ns);
        Some(Ok(Block::Packet(Packet {
            number,
            offset,
            time,
            link_type,
            data,
            original_len: origlen,
            comments: Vec::new(),
        })))
    }

    fn next_pcapng(&mut self) -> Option<Result<Block<'a>, CaptureError>> {
        loop {
            let rest = self.data.get(self.pos - self.base..).unwrap_or_default();
            if rest.is_empty() {
                return None;
            }
            let offset = self.pos;
            let packet = self.packets + 1;
            let Kind::Pcapng { le, .. } = &self.kind else { return None };
            let mut le = *le;
            let Some(kind) = read_u32(rest, 0, le) else {
                return Some(Err(self.block_error(
                    None,
                    format!("the file ends inside a block header ({} of 8 bytes)", rest.len()),
                )));
            };
            if kind == SHB {
                // The byte-order magic sets the byte order of the section it opens.
                match rest.get(8..12).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                    Some(b) if u32::from_le_bytes(b) == BYTE_ORDER_MAGIC => le = true,
                    Some(b) if u32::from_be_bytes(b) == BYTE_ORDER_MAGIC => le = false,
                    Some(b) => {
                        return Some(Err(self.block_error(Some(SHB), format!(
                            "section header block: byte-order magic {} is neither 1a2b3c4d nor 4d3c2b1a",
                            hex(&b)
                        ))))
                    }
                    None => {
                        return Some(Err(self.block_error(Some(SHB), format!(
                            "the file ends inside a section header block ({} bytes)",
                            rest.len()
                        ))))
                    }
                }
            }
            let Some(len) = read_u32(rest, 4, le) else {
                return Some(Err(self.block_error(
                    Some(kind),
                    format!("the file ends inside a block header ({} of 8 bytes)", rest.len()),
                )));
            };
            let what = block_name(kind);
            if len < 12 || len % 4 != 0 {
                return Some(Err(self.block_error(
                    Some(kind),
                    format!("{what}: block length {len} is not a multiple of 4 of at least 12"),
                )));
            }
            if len > MAX_BLOCK {
                return Some(Err(self.block_error(
                    Some(kind),
                    format!(
                        "{what}: block length {len} is over the {MAX_BLOCK} bytes a block may have"
                    ),
                )));
            }
            let Some(block) = rest.get(..len as usize) else {
                return Some(Err(self.block_error(
                    Some(kind),
                    format!(
                        "{what}: block length {len} exceeds the {} bytes left in the file",
                        rest.len()
                    ),
                )));
            };
            let trailer = read_u32(block, block.len() - 4, le).unwrap_or(0);
            if trailer != len {
                return Some(Err(self.block_error(Some(kind), format!(
                    "{what}: the length at its end ({trailer}) differs from the length at its start ({len})"
                ))));
            }
            self.pos += block.len();
            let body = block.get(8..block.len() - 4).unwrap_or_default();
            match kind {
                SHB => match self.section(body, le, offset) {
                    Ok(s) => return Some(Ok(Block::Section(s))),
                    Err(e) => return Some(Err(e)),
                },
                IDB => {
                    if let Err(e) = self.interface(body, le, offset) {
                        return Some(Err(e));
                    }
                }
                EPB | PB | SPB => {
                    self.packets = packet;
                    return Some(self.packet(kind, body, le, offset, packet).map(Block::Packet));
                }
                _ => {}
            }
            if self.one_block {
                self.skipped = true;
                return None;
            }
        }
    }

    /// A fatal error at the current block, a packet's (`kind` EPB, PB, SPB or unknown) or
    /// another: reading stops.
    fn block_error(&mut self, kind: Option<u32>, problem: String) -> CaptureError {
        self.done = true;
        let number = self.packets + 1;
        match kind {
            None | Some(EPB | PB | SPB) => {
                CaptureError { packet: Some(number), offset: self.pos, fatal: true, problem }
            }
            Some(_) => CaptureError {
                packet: None,
                offset: self.pos,
                fatal: true,
                problem: format!("{problem} (after packet {})", self.packets),
            },
        }
    }

    fn section(&mut self, body: &[u8], le: bool, offset: usize) -> Result<Section, CaptureError> {
        let major = read_u16(body, 4, le).unwrap_or(0);
        let problem = if body.len() < 16 {
            Some(format!("section header block: {} bytes, fewer than the 16 it needs", body.len()))
        } else if major != 1 {
            Some(format!("section header block: pcapng version {major} is not supported (1.x is)"))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.done = true;
            return Err(CaptureError { packet: None, offset, fatal: true, problem });
        }
        self.kind = Kind::Pcapng { le, interfaces: Vec::new() };
        let mut s = Section {
            offset,
            format: Format::Pcapng { big_endian: !le },
            comments: Vec::new(),
            application: None,
            os: None,
            hardware: None,
        };
        for (code, value) in options(body.get(16..).unwrap_or_default(), le) {
            let text = || String::from_utf8_lossy(value).into_owned();
            match code {
                1 => s.comments.push(text()),
                2 => s.hardware = Some(text()),
                3 => s.os = Some(text()),
                4 => s.application = Some(text()),
                _ => {}
            }
        }
        Ok(s)
    }

    fn interface(&mut self, body: &[u8], le: bool, offset: usize) -> Result<(), CaptureError> {
        let Kind::Pcapng { interfaces, .. } = &mut self.kind else { return Ok(()) };
        let (Some(link_type), Some(snap_len)) = (read_u16(body, 0, le), read_u32(body, 4, le))
        else {
            return Err(CaptureError {
                packet: None,
                offset,
                fatal: false,
                problem: format!(
                    "interface description {}: only {} bytes, fewer than the 8 it needs",
                    interfaces.len(),
                    body.len()
                ),
            });
        };
        let mut iface = Interface { link_type, snap_len, units: 1_000_000, offset: 0 };
        for (code, value) in options(body.get(8..).unwrap_or_default(), le) {
            match (code, value) {
                (9, [r]) => {
                    let units = if r & 0x80 == 0 {
                        10u64.checked_pow(u32::from(*r))
                    } else {
                        1u64.checked_shl(u32::from(r & 0x7F))
                    };
                    match units {
                        Some(u) if u > 0 => iface.units = u,
                        _ => {
                            return Err(CaptureError {
                                packet: None,
                                offset,
                                fatal: false,
                                problem: format!(
                                    "interface description {}: timestamp resolution {r:#04x} is out of range",
                                    interfaces.len()
                                ),
                            })
                        }
                    }
                }
                (14, v) if v.len() == 8 => {
                    let b: [u8; 8] = v.try_into().unwrap_or_default();
                    iface.offset = if le { i64::from_le_bytes(b) } else { i64::from_be_bytes(b) };
                }
                _ => {}
            }
        }
        interfaces.push(iface);
        Ok(())
    }

    fn packet(
        &mut self,
        kind: u32,
        body: &'a [u8],
        le: bool,
        offset: usize,
        number: u64,
    ) -> Result<Packet<'a>, CaptureError> {
        let err =
            |problem: String| CaptureError { packet: Some(number), offset, fatal: false, problem };
        let Kind::Pcapng { interfaces, .. } = &self.kind else {
            return Err(err("a pcapng block outside pcapng".into()));
        };
        let (iface_id, ts, caplen, origlen, data_at) = match kind {
            SPB => {
                let origlen = read_u32(body, 0, le).ok_or_else(|| {
                    err("simple packet block: shorter than its 4-byte length".into())
                })?;
                let room = body.len().saturating_sub(4);
                let snap = interfaces.first().map_or(0, |i| i.snap_len as usize);
                let mut caplen = (origlen as usize).min(room);
                if snap > 0 {
                    caplen = caplen.min(snap);
                }
                (0u32, None, caplen, origlen, 4usize)
            }
            _ => {
                if body.len() < 20 {
                    return Err(err(format!(
                        "{}: {} bytes, fewer than the 20 of its fixed fields",
                        block_name(kind),
                        body.len()
                    )));
                }
                let (iface, ts_hi, ts_lo, caplen, origlen) = if kind == EPB {
                    (
                        read_u32(body, 0, le).unwrap_or(0),
                        read_u32(body, 4, le).unwrap_or(0),
                        read_u32(body, 8, le).unwrap_or(0),
                        read_u32(body, 12, le).unwrap_or(0),
                        read_u32(body, 16, le).unwrap_or(0),
                    )
                } else {
                    (
                        u32::from(read_u16(body, 0, le).unwrap_or(0)),
                        read_u32(body, 4, le).unwrap_or(0),
                        read_u32(body, 8, le).unwrap_or(0),
                        read_u32(body, 12, le).unwrap_or(0),
                        read_u32(body, 16, le).unwrap_or(0),
                    )
                };
                let ts = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                (iface, Some(ts), caplen as usize, origlen, 20usize)
            }
        };
        let Some(iface) = interfaces.get(iface_id as usize).copied() else {
            return Err(err(format!(
                "interface {iface_id} was not described (the section has {} interface description blocks)",
                interfaces.len()
            )));
        };
        let room = body.len().saturating_sub(data_at);
        let Some(data) = body.get(data_at..).and_then(|b| b.get(..caplen)) else {
            return Err(err(format!(
                "captured length {caplen} exceeds the {room} bytes its block holds"
            )));
        };
        let mut comments = Vec::new();
        if kind != SPB {
            let opts_at = data_at + caplen.div_ceil(4) * 4;
            for (code, value) in options(body.get(opts_at..).unwrap_or_default(), le) {
                if code == 1 {
                    comments.push(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
        let time = ts.map_or(Duration::ZERO, |ts| to_duration(ts, iface.units, iface.offset));
        Ok(Packet {
            number,
            offset,
            time,
            link_type: iface.link_type,
            data,
            original_len: origlen,
            comments,
        })
    }
}

impl<'a> Iterator for CaptureReader<'a> {
    type Item = Result<Block<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(h) = self.header.take() {
            return Some(Ok(Block::Section(h)));
        }
        if self.done {
            return None;
        }
        let item = match self.kind {
            Kind::Pcap { .. } => self.next_pcap(),
            Kind::Pcapng { .. } => self.next_pcapng(),
        };
        match &item {
            None if self.skipped => self.skipped = false,
            None => self.done = true,
            Some(Err(e)) if e.fatal => self.done = true,
            _ => {}
        }
        item
    }
}

/// Reads a capture from any [`Read`] (a file, standard input) a block at a time: the
/// blocks, packets and errors a [`CaptureReader`] finds in the whole file, in the same
/// order and with the same file offsets, holding in memory only the block being read
/// (and what was read with it), so a capture of any size can be decoded.
///
/// Not an [`Iterator`], since each block borrows the stream's buffer until the next
/// call of [`next_block`](Self::next_block). A failed read ends the stream with a fatal
/// [`CaptureError`] at the offset it was reading.
///
/// ```
/// use amqpwire::capture::{Block, CaptureStream, Direction, PcapWriter, WriterOptions};
/// let mut w = PcapWriter::new(Vec::new(), WriterOptions::default())?;
/// w.write(1, Direction::ClientToServer, b"AMQP\x00\x01\x00\x00", std::time::UNIX_EPOCH)?;
/// let file = w.into_inner();
/// // A file, standard input, or here the bytes in memory:
/// let mut stream = CaptureStream::new(&file[..])?;
/// let mut packets = 0u64;
/// while let Some(block) = stream.next_block() {
///     packets += u64::from(matches!(block?, Block::Packet(_)));
/// }
/// assert_eq!(packets, stream.packet_count());
/// assert!(packets >= 4, "the handshake and the header: {packets}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CaptureStream<R> {
    source: R,
    /// The file from offset `base` on, as far as it has been read (`buf[..end]`; the
    /// rest is room for the next read).
    buf: Vec<u8>,
    end: usize,
    base: usize,
    /// Whether the source has ended (or failed).
    eof: bool,
    /// A read that failed, to be reported once the bytes before it are read.
    failed: Option<std::io::Error>,
    /// The reader's state between blocks (over no bytes).
    reader: CaptureReader<'static>,
}

/// How much a [`CaptureStream`] asks of its source at a time.
const READ_SIZE: usize = 64 * 1024;

impl<R: Read> CaptureStream<R> {
    /// A stream over `source`. Fails, as [`CaptureReader::new`] does, when it does not
    /// start with a pcap or pcapng magic number or a pcap file header is cut short (or
    /// the first read fails).
    pub fn new(source: R) -> Result<Self, CaptureError> {
        let mut s = Self {
            source,
            buf: Vec::new(),
            end: 0,
            base: 0,
            eof: false,
            failed: None,
            reader: CaptureReader::new_empty(),
        };
        // A pcap file header is 24 bytes; a pcapng file starts with an 8-byte header.
        while s.end < 24 && !s.eof {
            s.fill();
        }
        if let Some(e) = s.failed.take() {
            return Err(CaptureError {
                packet: None,
                offset: s.end,
                fatal: true,
                problem: format!("reading the capture failed: {e}"),
            });
        }
        s.reader = CaptureReader::new(&s.buf[..s.end])?.rebind(&[], 0);
        Ok(s)
    }

    /// The next block, or the error in its place, as [`CaptureReader`]'s iterator gives
    /// them; `None` at the end.
    pub fn next_block(&mut self) -> Option<Result<Block<'_>, CaptureError>> {
        let mut reader = std::mem::replace(&mut self.reader, CaptureReader::new_empty());
        // Read on until the next block that yields something is whole in the buffer, or
        // the source has ended; blocks that yield nothing are taken on the way, one at a
        // time, so that the reader never goes on into a block not yet read whole.
        let mut short = false;
        while !reader.done && reader.header.is_none() {
            let mut r = reader.rebind(&self.buf[..self.end], self.base);
            let have = self.end.saturating_sub(r.pos - self.base);
            short = have < r.wants();
            if short && !self.eof {
                reader = r.rebind(&[], self.base);
                // What came before the next block is no longer needed.
                let used = reader.pos - self.base;
                if used > 0 {
                    self.buf.copy_within(used..self.end, 0);
                    self.end -= used;
                }
                // After a block far larger than a read, give the memory back.
                if self.buf.len() > 16 * READ_SIZE && self.end < self.buf.len() / 4 {
                    self.buf.truncate(self.end + READ_SIZE);
                    self.buf.shrink_to_fit();
                }
                self.base = reader.pos;
                self.fill();
                continue;
            }
            if short || !r.next_yields_nothing() {
                reader = r.rebind(&[], self.base);
                break;
            }
            r.one_block = true;
            let taken = r.next().map(|b| b.map(|_| ()));
            reader = r.rebind(&[], self.base);
            if let Some(Err(e)) = taken {
                self.reader = reader;
                return Some(Err(e));
            }
        }
        if let (true, Some(e)) = (short, self.failed.take()) {
            reader.done = true;
            let offset = reader.pos;
            self.reader = reader;
            return Some(Err(CaptureError {
                packet: None,
                offset,
                fatal: true,
                problem: format!("reading the capture failed: {e}"),
            }));
        }
        let mut r = reader.rebind(&self.buf[..self.end], self.base);
        let item = r.next();
        self.reader = r.rebind(&[], self.base);
        item
    }

    /// How many packets have been met so far (read or reported as damaged).
    pub fn packet_count(&self) -> u64 {
        self.reader.packets
    }

    /// How many bytes of the file the stream holds now.
    pub fn buffered(&self) -> usize {
        self.end
    }

    /// Reads more of the source onto the buffer; at its end (or on a failed read) sets
    /// `eof`.
    fn fill(&mut self) {
        // Room for a whole read after what is held (zeroed once, when the buffer grows).
        if self.buf.len() - self.end < READ_SIZE {
            self.buf.resize(self.end + READ_SIZE, 0);
        }
        loop {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    // (A reader that says it read more than it was given room for is
                    // taken at the room's size.)
                    self.end += n.min(self.buf.len() - self.end);
                    self.eof = n == 0;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = Some(e);
                    self.eof = true;
                    return;
                }
            }
        }
    }
}

impl CaptureReader<'static> {
    /// A reader with nothing to read (a placeholder while a stream's reader is moved).
    fn new_empty() -> Self {
        CaptureReader {
            data: &[],
            base: 0,
            pos: 0,
            kind: Kind::Pcapng { le: true, interfaces: Vec::new() },
            packets: 0,
            header: None,
            done: true,
            one_block: false,
            skipped: false,
        }
    }
}

/// A timestamp of `units` per second, plus `offset` seconds, since the epoch (clamped at
/// the epoch).
fn to_duration(ts: u64, units: u64, offset: i64) -> Duration {
    let secs = ts / units;
    let frac = u128::from(ts % units) * 1_000_000_000 / u128::from(units);
    let secs = if offset >= 0 {
        secs.saturating_add(offset.unsigned_abs())
    } else {
        secs.saturating_sub(offset.unsigned_abs())
    };
    Duration::new(secs, frac as u32)
}

/// The options of a pcapng block: (code, value) up to `opt_endofopt` or as far as they are
/// well formed.
fn options(mut data: &[u8], le: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = read_u16(data, 0, le)?;
        let len = usize::from(read_u16(data, 2, le)?);
        if code == 0 {
            return None;
        }
        let value = data.get(4..4 + len)?;
        data = data.get(4 + len.div_ceil(4) * 4..).unwrap_or_default();
        Some((code, value))
    })
}

fn block_name(kind: u32) -> String {
    match kind {
        SHB => "section header block".into(),
        IDB => "interface description block".into(),
        PB => "packet block".into(),
        SPB => "simple packet block".into(),
        EPB => "enhanced packet block".into(),
        k => format!("block of type {k:#010x}"),
    }
}

fn read_u16(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if le { u16::from_le_bytes(a) } else { u16::from_be_bytes(a) })
}

fn read_u32(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if le { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_resolution_and_offset() {
        assert_eq!(to_duration(1_500_000, 1_000_000, 0), Duration::from_millis(1500));
        assert_eq!(to_duration(3, 2, 0), Duration::from_millis(1500));
        assert_eq!(to_duration(1_000_000_001, 1_000_000_000, 10), Duration::new(11, 1));
        assert_eq!(to_duration(5, 1, -10), Duration::ZERO);
        assert_eq!(to_duration(u64::MAX, 1, i64::MAX), Duration::new(u64::MAX, 0));
    }

    #[test]
    fn options_stop_at_the_end_marker_or_where_they_break() {
        let mut b = Vec::new();
        for (code, v) in [(1u16, &b"hello"[..]), (4, b"app")] {
            b.extend_from_slice(&code.to_le_bytes());
            b.extend_from_slice(&(v.len() as u16).to_le_bytes());
            b.extend_from_slice(v);
            b.resize(b.len().div_ceil(4) * 4, 0);
        }
        let good: Vec<_> = options(&b, true).collect();
        assert_eq!(good, [(1, &b"hello"[..]), (4, &b"app"[..])]);
        b.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        assert_eq!(options(&b, true).count(), 2, "after the end marker, nothing");
        let broken = [1u8, 0, 200, 0, b'x'];
        assert_eq!(options(&broken, true).count(), 0, "a length past the end");
    }

    #[test]
    fn magic_numbers_of_every_format() {
        let cases: [(&[u8], Option<Format>); 6] = [
            (&[0xd4, 0xc3, 0xb2, 0xa1], Some(pcap(false, false, false))),
            (&[0xa1, 0xb2, 0xc3, 0xd4], Some(pcap(false, false, true))),
            (&[0x4d, 0x3c, 0xb2, 0xa1], Some(pcap(true, false, false))),
            (&[0xa1, 0xb2, 0xcd, 0x34], Some(pcap(false, true, true))),
            (&[0x0a, 0x0d, 0x0d, 0x0a], Some(Format::Pcapng { big_endian: false })),
            (b"AMQP", None),
        ];
        for (magic, want) in cases {
            assert_eq!(detect(magic), want, "{magic:02x?}");
        }
        assert_eq!(detect(&[0xd4, 0xc3]), None);
    }
}

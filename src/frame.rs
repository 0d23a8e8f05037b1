//! Protocol headers and frames (part 2, 2.2 and 2.3), and a streaming decoder that takes
//! input split at any byte.
//!
//! ```text
//!  protocol header:  'A' 'M' 'Q' 'P' | id | major | minor | revision      (8 bytes)
//!
//!  frame:  +------+------+------+---------+------------------+----------------------+
//!          | SIZE (4)    | DOFF | TYPE    | CHANNEL (2)      | extended header      | body …
//!          +------+------+------+---------+------------------+----------------------+
//!          0             4      5         6                  8             DOFF*4  SIZE
//! ```

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeError, DecodeOptions, ErrorKind, Reader};
use crate::message::{Message, Payload};
use crate::types::{Composite, Layout, Performative, SaslFrameBody, Transfer};

/// The smallest max-frame-size a peer may set (2.7.1: MIN-MAX-FRAME-SIZE).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// Most bytes the frame decoder reserves ahead of data that has not arrived yet.
const RESERVE_AHEAD: usize = 64 * 1024;

/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 8;

restricted! {
    /// The protocol id of a protocol header (2.2, 5.2.1, 5.3.1).
    #[derive(Copy)]
    pub struct ProtocolId(u8) : "protocol-id" {
        /// Plain AMQP.
        AMQP = 0 => "AMQP",
        /// TLS negotiation follows.
        TLS = 2 => "TLS",
        /// SASL negotiation follows.
        SASL = 3 => "SASL",
    }
}

restricted! {
    /// The type of a frame (2.3.1).
    #[derive(Copy)]
    pub struct FrameType(u8) : "frame-type" {
        /// An AMQP frame.
        AMQP = 0 => "amqp",
        /// A SASL frame.
        SASL = 1 => "sasl",
    }
}

/// A protocol header: `AMQP` then protocol id, major, minor and revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolHeader {
    /// Which layer follows.
    pub id: ProtocolId,
    /// Major version (1).
    pub major: u8,
    /// Minor version (0).
    pub minor: u8,
    /// Revision (0).
    pub revision: u8,
}

impl ProtocolHeader {
    /// `AMQP 0 1 0 0`.
    pub const AMQP: Self = Self::new(ProtocolId::AMQP);
    /// `AMQP 2 1 0 0`.
    pub const TLS: Self = Self::new(ProtocolId::TLS);
    /// `AMQP 3 1 0 0`.
    pub const SASL: Self = Self::new(ProtocolId::SASL);

    /// Version 1.0.0 with protocol `id`.
    pub const fn new(id: ProtocolId) -> Self {
        Self { id, major: 1, minor: 0, revision: 0 }
    }

    /// The eight bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        [b'A', b'M', b'Q', b'P', self.id.0, self.major, self.minor, self.revision]
    }

    /// Parses eight bytes, naming what arrived when they are not an AMQP 1.0 header.
    pub fn parse(b: &[u8; 8]) -> Result<Self, HeaderError> {
        if &b[..4] != b"AMQP" {
            return Err(HeaderError::NotAmqp(*b));
        }
        let h = Self { id: ProtocolId(b[4]), major: b[5], minor: b[6], revision: b[7] };
        if (h.major, h.minor, h.revision) != (1, 0, 0) {
            return Err(HeaderError::Version(*b));
        }
        if h.id.name().is_none() {
            return Err(HeaderError::UnknownProtocolId(b[4]));
        }
        Ok(h)
    }
}

impl fmt::Display for ProtocolHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AMQP {} {}.{}.{}", self.id.0, self.major, self.minor, self.revision)
    }
}

/// Eight bytes that are not an AMQP 1.0 protocol header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// They do not start with `AMQP`.
    NotAmqp([u8; 8]),
    /// `AMQP` with a version other than 1.0.0 (AMQP 0-9-1 and 0-10 clients send these).
    Version([u8; 8]),
    /// `AMQP` 1.0.0 with a protocol id other than 0, 2 or 3.
    UnknownProtocolId(u8),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAmqp(b) => {
                write!(f, "expected an AMQP protocol header, found {} ({})", hex8(b), what_is(b))
            }
            Self::Version(b) => {
                let what = match (b[4], b[5], b[6], b[7]) {
                    (0, 0, 9, 1) => "an AMQP 0-9-1 client (RabbitMQ's classic protocol)",
                    (1, 1, 0, 9) | (1, 1, 0, 10) => "an AMQP 0-9/0-10 client",
                    _ => "an unsupported AMQP version",
                };
                write!(f, "expected AMQP 1.0.0, found header {} from {what}", hex8(b))
            }
            Self::UnknownProtocolId(id) => {
                write!(f, "unknown protocol id {id} (0 AMQP, 2 TLS, 3 SASL are defined)")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

fn hex8(b: &[u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

const UNRECOGNISED: &str = "bytes of no recognised protocol";

/// A guess at what a non-AMQP byte stream is, for error messages.
fn what_is(b: &[u8; 8]) -> &'static str {
    let starts = |p: &[u8]| b.starts_with(p);
    if b[0] == 0x16 && b[1] == 0x03 {
        "a TLS ClientHello: this peer speaks TLS, connect with amqps://"
    } else if starts(b"GET ")
        || starts(b"POST ")
        || starts(b"PUT ")
        || starts(b"HEAD ")
        || starts(b"HTTP/")
    {
        "an HTTP request or response: this peer speaks HTTP or WebSocket"
    } else if starts(b"SSH-") {
        "an SSH banner"
    } else if b[0] == 0x15 && b[1] == 0x03 {
        "a TLS alert"
    } else if b[..4].iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        "text in some other protocol"
    } else {
        UNRECOGNISED
    }
}

/// Names what a peer sent when it closed the stream before a whole protocol header: a
/// TLS alert (a TLS server answering a plain client), the start of an AMQP header, …
pub fn describe_partial_header(b: &[u8]) -> String {
    let n = b.len().min(8);
    let mut padded = [0u8; 8];
    padded[..n].copy_from_slice(&b[..n]);
    let what = if !b.is_empty() && b"AMQP".starts_with(&b[..n.min(4)]) {
        "the start of an AMQP header"
    } else {
        what_is(&padded)
    };
    let hex: Vec<_> = b[..n].iter().map(|x| format!("{x:02x}")).collect();
    format!("the peer sent {n} bytes ({}) and closed the stream: {what}", hex.join(" "))
}

/// The fixed eight bytes that start every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Total frame size, header included.
    pub size: u32,
    /// Data offset in 4-byte words (at least 2).
    pub doff: u8,
    /// AMQP or SASL.
    pub frame_type: FrameType,
    /// The channel (type-specific; 0 for SASL).
    pub channel: u16,
}

impl FrameHeader {
    /// Parses and checks a frame header.
    pub fn parse(b: &[u8; 8]) -> Result<Self, FrameErrorKind> {
        let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let h = Self {
            size,
            doff: b[4],
            frame_type: FrameType(b[5]),
            channel: u16::from_be_bytes([b[6], b[7]]),
        };
        // 2.3.1: "SIZE … MUST be at least 8"; DOFF "MUST be at least 2".
        if size < 8 {
            return Err(FrameErrorKind::SizeTooSmall(size));
        }
        if h.doff < 2 {
            return Err(FrameErrorKind::DoffTooSmall(h.doff));
        }
        if u32::from(h.doff) * 4 > size {
            return Err(FrameErrorKind::DoffBeyondSize { doff: h.doff, size });
        }
        Ok(h)
    }

    /// The eight bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let s = self.size.to_be_bytes();
        let c = self.channel.to_be_bytes();
        [s[0], s[1], s[2], s[3], self.doff, self.frame_type.0, c[0], c[1]]
    }
}

/// A framing error: the stream cannot be split into frames past this point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// Stream offset of the frame or header at fault.
    pub offset: u64,
    /// What was wrong.
    pub kind: FrameErrorKind,
}

/// What was wrong with a frame header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// The protocol header was not AMQP 1.0.
    Header(HeaderError),
    /// SIZE below 8.
    SizeTooSmall(u32),
    /// DOFF below 2.
    DoffTooSmall(u8),
    /// DOFF points past the end of the frame.
    DoffBeyondSize {
        /// The data offset in words.
        doff: u8,
        /// The frame size.
        size: u32,
    },
    /// SIZE above the negotiated max-frame-size.
    TooLarge {
        /// The frame size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// A protocol header where a frame was due: the one that follows a SASL layer, read
    /// by a decoder not told to expect it ([`FrameDecoder::expect_header`],
    /// [`FrameDecoder::sniff_headers`]), or a peer that sent one out of turn.
    UnexpectedHeader(ProtocolHeader),
    /// Bytes after a TLS protocol header (part 5, 5.2): TLS records, which are not frames.
    TlsFollows,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.kind)
    }
}

impl fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(h) => write!(f, "{h}"),
            Self::SizeTooSmall(s) => write!(f, "frame size {s} is below the minimum of 8"),
            Self::DoffTooSmall(d) => write!(f, "data offset {d} is below the minimum of 2"),
            Self::DoffBeyondSize { doff, size } => {
                write!(
                    f,
                    "data offset {doff} ({} bytes) lies beyond the frame size {size}",
                    u32::from(*doff) * 4
                )
            }
            Self::TooLarge { size, max } => {
                write!(f, "frame size {size} exceeds max-frame-size {max}")
            }
            Self::UnexpectedHeader(h) => {
                write!(f, "a protocol header ({h}) where a frame was due")
            }
            Self::TlsFollows => f.write_str(
                "TLS records follow the TLS protocol header: encrypted, not frames (decode a \
                 capture of the connection with --keylog FILE to see the AMQP inside)",
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// One frame as it arrived: its header and all its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// Stream offset of the first byte.
    pub offset: u64,
    /// The parsed header.
    pub header: FrameHeader,
    /// The whole frame, header included.
    pub bytes: Bytes,
}

impl RawFrame {
    /// The extended header (between byte 8 and DOFF*4), usually empty.
    pub fn extended_header(&self) -> &[u8] {
        &self.bytes[FRAME_HEADER_LEN..usize::from(self.header.doff) * 4]
    }

    /// The frame body.
    pub fn body(&self) -> Bytes {
        self.bytes.slice(usize::from(self.header.doff) * 4..)
    }

    /// Stream offset of the body's first byte.
    pub fn body_offset(&self) -> u64 {
        self.offset + u64::from(self.header.doff) * 4
    }

    /// Decodes the body: a performative (and, for a transfer, the payload after it), a SASL
    /// body, or nothing for an empty (heartbeat) frame.
    pub fn decode(&self, opts: DecodeOptions) -> Result<Frame, DecodeError> {
        self.decode_with_warnings(opts).map(|(f, _)| f)
    }

    /// Like [`RawFrame::decode`], also returning the deviations a lenient decode accepted.
    pub fn decode_with_warnings(
        &self,
        opts: DecodeOptions,
    ) -> Result<(Frame, Vec<crate::codec::Warning>), DecodeError> {
        let body = self.body();
        let base = self.body_offset() as usize;
        let mut r = Reader::from_bytes(&body, opts).with_base(base);
        let body_kind = match self.header.frame_type {
            FrameType::AMQP if body.is_empty() => FrameBody::Empty,
            FrameType::AMQP => {
                let p = Performative::read(&mut r)?;
                let payload = body.slice(r.position()..);
                if !payload.is_empty() && !matches!(p, Performative::Transfer(_)) {
                    // 2.3.2: only a transfer carries a payload after the performative.
                    let pos = r.position();
                    r.deviation(
                        pos,
                        ErrorKind::TrailingBytes { within: p.name(), left: payload.len() },
                        "ignored the bytes after the performative",
                    )?;
                }
                FrameBody::Amqp { performative: p, payload }
            }
            FrameType::SASL => {
                let s = SaslFrameBody::read(&mut r)?;
                if !r.is_empty() {
                    let (pos, left) = (r.position(), r.remaining());
                    r.deviation(
                        pos,
                        ErrorKind::TrailingBytes { within: s.name(), left },
                        "ignored the bytes after the SASL body",
                    )?;
                }
                FrameBody::Sasl(s)
            }
            FrameType(t) => {
                // 2.3.1 defines types 0x00 (AMQP) and 0x01 (SASL) only.
                return Err(DecodeError::new(
                    self.offset as usize + 5,
                    ErrorKind::InvalidValue {
                        what: "frame type",
                        reason: format!("0x{t:02x} is neither AMQP (0x00) nor SASL (0x01)"),
                    },
                ));
            }
        };
        Ok((Frame { channel: self.header.channel, body: body_kind }, r.take_warnings()))
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The channel.
    pub channel: u16,
    /// What it carries.
    pub body: FrameBody,
}

/// What a frame carries.
// Unboxed on purpose, like `Performative`: decoding a transfer frame must not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum FrameBody {
    /// An empty AMQP frame: a heartbeat.
    Empty,
    /// An AMQP performative, and the payload after it (transfers only).
    Amqp {
        /// The performative.
        performative: Performative,
        /// The bytes after the performative.
        payload: Bytes,
    },
    /// A SASL frame body.
    Sasl(SaslFrameBody),
}

/// An item of a byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamItem {
    /// A protocol header.
    Header {
        /// Stream offset.
        offset: u64,
        /// The header.
        header: ProtocolHeader,
    },
    /// A frame.
    Frame(RawFrame),
}

/// Splits a byte stream into protocol headers and frames, whatever the chunking.
///
/// A header is expected first, and again after [`FrameDecoder::expect_header`] (a
/// connection does so after the SASL outcome). With [`FrameDecoder::sniff_headers`] a
/// header is recognised wherever a frame could start (`AMQP` as a frame size would mean a
/// frame of over 1 GB), which is what a tool reading a capture wants.
///
/// Frames larger than the max-frame-size are refused from their header, before their bytes
/// are buffered, so a peer cannot make the decoder hold more than one frame's worth.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// An owned chunk handed over by [`FrameDecoder::push_bytes`]; items wholly inside it
    /// are sliced off without copying. When it holds bytes, `buf` is empty.
    pending: Bytes,
    offset: u64,
    max_frame_size: u32,
    expect_header: bool,
    sniff: bool,
    auto_start: bool,
    failed: Option<FrameError>,
    /// The caller reads into a buffer of its own ([`FrameDecoder::swap_buffer`]) and sizes
    /// it with [`FrameDecoder::wanted`]: the decoder does not reserve in it.
    external: bool,
    /// Room worth making for the item being received ([`FrameDecoder::wanted`]).
    wanted: usize,
    /// The size of the last frame returned ([`FrameDecoder::last_frame_size`]).
    last_frame: usize,
    /// A TLS protocol header went by: what follows is TLS records, not frames.
    tls: bool,
}

impl FrameDecoder {
    /// A decoder that expects a protocol header first and accepts frames up to
    /// `max_frame_size` bytes.
    pub fn new(max_frame_size: u32) -> Self {
        Self {
            buf: BytesMut::new(),
            pending: Bytes::new(),
            offset: 0,
            max_frame_size,
            expect_header: true,
            sniff: false,
            auto_start: false,
            failed: None,
            external: false,
            wanted: 0,
            last_frame: 0,
            tls: false,
        }
    }

    /// Starts with frames (no protocol header first): for a capture that begins mid-stream.
    pub fn frames_first(mut self) -> Self {
        self.expect_header = false;
        self
    }

    /// Decides from the first eight bytes whether the stream starts with a protocol header
    /// or a frame, and names the protocol when it is neither (for captures of unknown
    /// provenance).
    pub fn auto_start(mut self) -> Self {
        self.auto_start = true;
        self
    }

    /// Recognise protocol headers at any frame boundary.
    pub fn sniff_headers(mut self, on: bool) -> Self {
        self.sniff = on;
        self
    }

    /// Expect a protocol header next.
    pub fn expect_header(&mut self) {
        self.expect_header = true;
    }

    /// Changes the frame size limit (after open negotiation).
    pub fn set_max_frame_size(&mut self, max: u32) {
        self.max_frame_size = max;
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.unpend();
        self.buf.extend_from_slice(data);
    }

    /// Appends received bytes the caller gives up: frames that lie wholly inside them are
    /// returned as slices of them, with no copy (the rest is buffered as by
    /// [`FrameDecoder::push`]).
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.buf.is_empty() && self.pending.is_empty() {
            self.pending = data;
        } else {
            self.push(&data);
        }
    }

    /// Exchanges the decoder's buffer with the caller's, for a caller that reads into a
    /// buffer of its own: swap it in, take the items, swap it back (with what is left of
    /// an item that is not complete yet). Bytes the decoder held are kept in front of the
    /// caller's on the way in.
    pub fn swap_buffer(&mut self, buf: &mut BytesMut) {
        self.external = true;
        self.unpend();
        if !self.buf.is_empty() && !buf.is_empty() {
            // Both hold bytes: the decoder's come first, so the caller's join them.
            self.buf.extend_from_slice(buf);
            buf.clear();
        } else {
            std::mem::swap(&mut self.buf, buf);
        }
    }

    /// How many more bytes the item being received needs, as far as is known (its frame
    /// header says its size), but never more than the larger of what has arrived of it
    /// and 64 KiB (a header claiming 3 GB must not make a caller allocate 3 GB before the
    /// bytes come): room worth making in a buffer read into, growing it geometrically
    /// while keeping it within twice what was received.
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// The size of the last frame returned, header included (0 before the first): a
    /// caller reading into buffers of its own can size them to whole frames of a stream
    /// whose frames are alike.
    pub fn last_frame_size(&self) -> usize {
        self.last_frame
    }

    /// Bytes received but not yet returned as items.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending.len()
    }

    /// The first `n` bytes received but not yet returned as items (fewer if fewer wait).
    pub fn peek_buffered(&self, n: usize) -> Vec<u8> {
        let mut v: Vec<u8> = self.buf.iter().take(n).copied().collect();
        v.extend(self.pending.iter().take(n - v.len()));
        v
    }

    /// Takes every byte received but not yet returned as an item (the decoder then holds
    /// none): what is left when decoding has stopped.
    pub fn take_buffered(&mut self) -> BytesMut {
        self.unpend();
        std::mem::take(&mut self.buf)
    }

    /// Moves the owned chunk into the buffer (when an item straddles its end).
    fn unpend(&mut self) {
        if !self.pending.is_empty() {
            self.buf.extend_from_slice(&self.pending);
            self.pending = Bytes::new();
        }
    }

    /// The bytes not yet decoded.
    fn avail(&self) -> &[u8] {
        if self.pending.is_empty() {
            &self.buf
        } else {
            &self.pending
        }
    }

    /// Takes the next `n` bytes (which are available).
    fn consume(&mut self, n: usize) -> Bytes {
        if self.pending.is_empty() {
            self.buf.split_to(n).freeze()
        } else {
            self.pending.split_to(n)
        }
    }

    /// Stream offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next complete item, `Ok(None)` if more bytes are needed. After an error every
    /// call returns the same kind of error: the stream cannot be resynchronised.
    pub fn next_item(&mut self) -> Result<Option<StreamItem>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.tls && !self.avail().is_empty() {
            return self.fail(FrameErrorKind::TlsFollows);
        }
        if self.auto_start {
            if self.avail().len() < 8 {
                self.unpend();
                return Ok(None);
            }
            self.auto_start = false;
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.avail()[..8]);
            // A TLS record or an HTTP request can pass for a frame header (a ClientHello's
            // sixth byte is 0x01, the SASL frame type); name them instead.
            let foreign = what_is(&b) != UNRECOGNISED;
            // A frame header whose only fault is its size (below 8, with the usual doff
            // and an AMQP or SASL type) is a frame, and its framing error says so.
            let too_small = b[4] == 2 && b[5] <= 1 && b[..4] < [0, 0, 0, 8][..];
            let plausible_frame = too_small
                || matches!(FrameHeader::parse(&b), Ok(h) if h.frame_type.name().is_some());
            self.expect_header = &b[..4] == b"AMQP" || foreign || !plausible_frame;
        }
        let at_header = self.expect_header
            || (self.sniff && self.avail().len() >= 4 && &self.avail()[..4] == b"AMQP");
        if at_header {
            if self.avail().len() < 8 {
                self.unpend();
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.avail()[..8]);
            return match ProtocolHeader::parse(&b) {
                Ok(header) => {
                    let offset = self.offset;
                    self.consume(8);
                    self.offset += 8;
                    self.expect_header = false;
                    self.tls = header.id == ProtocolId::TLS;
                    Ok(Some(StreamItem::Header { offset, header }))
                }
                Err(e) => self.fail(FrameErrorKind::Header(e)),
            };
        }
        if self.avail().len() < FRAME_HEADER_LEN {
            self.unpend();
            return Ok(None);
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.avail()[..8]);
        let header = match FrameHeader::parse(&b) {
            Ok(h) if h.size <= self.max_frame_size => h,
            // A protocol header where a frame was due (the one after a SASL layer, to a
            // decoder not told to expect it) is named as one rather than as a bad frame.
            parsed => {
                return self.fail(match (ProtocolHeader::parse(&b), parsed) {
                    (Ok(p), _) => FrameErrorKind::UnexpectedHeader(p),
                    (Err(_), Ok(h)) => {
                        FrameErrorKind::TooLarge { size: h.size, max: self.max_frame_size }
                    }
                    (Err(_), Err(k)) => k,
                })
            }
        };
        let size = header.size as usize;
        if self.avail().len() < size {
            self.unpend();
            let have = self.buf.len();
            self.wanted = (size - have).min(have.max(RESERVE_AHEAD));
            // Reserve for what is coming, but never on the peer's word alone, so a large
            // frame is not copied over and over.
            if !self.external {
                self.buf.reserve(self.wanted);
            }
            return Ok(None);
        }
        self.wanted = 0;
        self.last_frame = size;
        let offset = self.offset;
        let bytes = self.consume(size);
        self.offset += size as u64;
        Ok(Some(StreamItem::Frame(RawFrame { offset, header, bytes })))
    }

    fn fail<T>(&mut self, kind: FrameErrorKind) -> Result<T, FrameError> {
        let e = FrameError { offset: self.offset, kind };
        self.failed = Some(e.clone());
        Err(e)
    }
}

/// Writes frames that never exceed a max-frame-size.
#[derive(Clone, Copy, Debug)]
pub struct FrameEncoder {
    /// The peer's max-frame-size.
    pub max_frame_size: u32,
    /// Compact, or every field written (for peers that index fields by position).
    pub layout: Layout,
}

/// A frame that cannot fit in the max-frame-size (2.7.1: the peer would refuse it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// Bytes the frame needs.
    pub size: usize,
    /// The limit.
    pub max: u32,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {}-byte frame exceeds max-frame-size {}", self.size, self.max)
    }
}

impl std::error::Error for FrameTooLarge {}

impl FrameEncoder {
    /// An encoder for frames up to `max_frame_size`, compact layout.
    pub fn new(max_frame_size: u32) -> Self {
        Self { max_frame_size, layout: Layout::Compact }
    }

    /// Appends an empty AMQP frame (a heartbeat).
    pub fn encode_empty(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            &FrameHeader { size: 8, doff: 2, frame_type: FrameType::AMQP, channel: 0 }.to_bytes(),
        );
    }

    /// Appends one AMQP frame holding `performative` and `payload`.
    pub fn encode_amqp(
        &self,
        channel: u16,
        performative: &Performative,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameTooLarge> {
        // Written in one pass: the performative, measured, then the header filled in.
        let at = reserve_header(out);
        performative.encode_with(self.layout, out);
        if let Err(e) = self.check(out.len() - at + payload.len()) {
            out.truncate(at);
            return Err(e);
        }
        out.extend_from_slice(payload);
        fill_header(out, at, FrameType::AMQP, channel);
        Ok(())
    }

    /// The size of the AMQP frame of `performative` and `payload_len` bytes of payload, if
    /// it is within `max_frame_size` (what [`FrameEncoder::encode_amqp`] checks; the
    /// performative is encoded to measure it).
    pub fn amqp_frame_len(
        &self,
        performative: &Performative,
        payload_len: usize,
    ) -> Result<usize, FrameTooLarge> {
        let size = FRAME_HEADER_LEN + performative.encoded_len_with(self.layout) + payload_len;
        self.check(size)?;
        Ok(size)
    }

    /// Appends one SASL frame.
    pub fn encode_sasl(
        &self,
        body: &SaslFrameBody,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameTooLarge> {
        let at = reserve_header(out);
        body.encode_with(self.layout, out);
        if let Err(e) = self.check(out.len() - at) {
            out.truncate(at);
            return Err(e);
        }
        fill_header(out, at, FrameType::SASL, 0);
        Ok(())
    }

    /// Appends the transfer frames of one delivery: the payload is split so that no frame
    /// exceeds the max-frame-size, `more` is set on all but the last, and continuation
    /// frames leave out delivery-id, delivery-tag, message-format and settled (2.7.5: they
    /// are only required on the first transfer). Returns the number of frames.
    pub fn encode_transfer(
        &self,
        channel: u16,
        first: &Transfer,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, FrameTooLarge> {
        let max = self.max_frame_size as usize;
        let mut t = first.clone();
        t.more = false;
        let at = reserve_header(out);
        t.encode_with(self.layout, out);
        if out.len() - at + payload.len() <= max {
            out.extend_from_slice(payload);
            fill_header(out, at, FrameType::AMQP, channel);
            return Ok(1);
        }
        out.truncate(at);
        t.more = true;
        let mut rest = payload;
        let mut frames = 0;
        let mut cont = Transfer::new(first.handle);
        cont.more = true;
        cont.rcv_settle_mode = None;
        loop {
            let perf = if frames == 0 { &t } else { &cont };
            let at = reserve_header(out);
            perf.encode_with(self.layout, out);
            let overhead = out.len() - at;
            if overhead >= max {
                out.truncate(at);
                return Err(FrameTooLarge { size: overhead + 1, max: self.max_frame_size });
            }
            let room = max - overhead;
            if rest.len() <= room {
                // The last frame, written again without `more` (never longer).
                out.truncate(at + FRAME_HEADER_LEN);
                let mut last = perf.clone();
                last.more = false;
                last.encode_with(self.layout, out);
                out.extend_from_slice(rest);
                fill_header(out, at, FrameType::AMQP, channel);
                return Ok(frames + 1);
            }
            let (chunk, tail) = rest.split_at(room);
            out.extend_from_slice(chunk);
            fill_header(out, at, FrameType::AMQP, channel);
            rest = tail;
            frames += 1;
        }
    }

    /// Appends the transfer frames of one delivery carrying `message`, encoding the message
    /// straight into `out` (no temporary buffer) when it fits in one frame, and never
    /// copying data sections of [`ZERO_COPY_MIN`](crate::message::ZERO_COPY_MIN) bytes or
    /// more: `out` references them. Splits like [`FrameEncoder::encode_transfer`]. Returns the
    /// number of frames.
    pub fn encode_message(
        &self,
        channel: u16,
        first: &Transfer,
        message: &Message,
        out: &mut Payload,
    ) -> Result<usize, FrameTooLarge> {
        let whole = if first.more {
            let mut whole = Payload::default();
            message.append_to_payload(&mut whole);
            whole
        } else {
            // One frame, unless it turns out too large: then the message's encoding is
            // taken back off and split (encoded once either way).
            let (at, inserts) = (reserve_header(&mut out.head), out.inserts.len());
            first.encode_with(self.layout, &mut out.head);
            let message_at = out.head.len();
            message.append_to_payload(out);
            let referenced: usize = out.inserts[inserts..].iter().map(|(_, b)| b.len()).sum();
            let size = out.head.len() - at + referenced;
            if size <= self.max_frame_size as usize {
                let header = FrameHeader {
                    size: size as u32,
                    doff: 2,
                    frame_type: FrameType::AMQP,
                    channel,
                };
                out.head[at..at + FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
                return Ok(1);
            }
            let whole = out.split_off(message_at, inserts);
            out.head.truncate(at);
            whole
        };
        self.encode_payload_transfer(channel, first, &whole, out)
    }

    /// Like [`FrameEncoder::encode_transfer`] for a payload given as a [`Payload`]: its
    /// referenced sections stay referenced in `out`.
    pub fn encode_payload_transfer(
        &self,
        channel: u16,
        first: &Transfer,
        payload: &Payload,
        out: &mut Payload,
    ) -> Result<usize, FrameTooLarge> {
        let max = self.max_frame_size as usize;
        let total = payload.len();
        let mut t = first.clone();
        t.more = false;
        let mut cont = Transfer::new(first.handle);
        let mut at = 0usize;
        let mut frames = 0usize;
        loop {
            let perf = if frames == 0 { &mut t } else { &mut cont };
            perf.more = false;
            let start = reserve_header(&mut out.head);
            perf.encode_with(self.layout, &mut out.head);
            let rest = total - at;
            let (n, more) = if out.head.len() - start + rest <= max {
                (rest, false)
            } else {
                // `more` costs at most one byte more in the compact layout (null → true
                // may extend the list); the frame is written again with it set.
                perf.more = true;
                out.head.truncate(start + FRAME_HEADER_LEN);
                perf.encode_with(self.layout, &mut out.head);
                let overhead = out.head.len() - start;
                if overhead >= max {
                    out.head.truncate(start);
                    return Err(FrameTooLarge { size: overhead + 1, max: self.max_frame_size });
                }
                (max - overhead, true)
            };
            let size = out.head.len() - start + n;
            out.head[start..start + FRAME_HEADER_LEN].copy_from_slice(
                &FrameHeader { size: size as u32, doff: 2, frame_type: FrameType::AMQP, channel }
                    .to_bytes(),
            );
            out.append_range(payload, at, n);
            at += n;
            frames += 1;
            if !more {
                return Ok(frames);
            }
        }
    }

    fn check(&self, size: usize) -> Result<(), FrameTooLarge> {
        if size > self.max_frame_size as usize {
            return Err(FrameTooLarge { size, max: self.max_frame_size });
        }
        Ok(())
    }
}

/// Reserves a frame header at the end of `out`, for [`fill_header`] once the frame is
/// written; returns where the frame starts.
fn reserve_header(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    at
}

/// Fills in the header of the frame that starts at `at` and ends at the end of `out`.
fn fill_header(out: &mut [u8], at: usize, frame_type: FrameType, channel: u16) {
    let size = (out.len() - at) as u32;
    out[at..at + FRAME_HEADER_LEN]
        .copy_from_slice(&FrameHeader { size, doff: 2, frame_type, channel }.to_bytes());
}

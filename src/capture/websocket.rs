//! WebSocket in a capture (RFC 6455), sans-IO: the HTTP upgrade that starts it, and the
//! frames after it turned back into the byte stream they carry (the AMQP WebSocket binding,
//! `AMQPWSB10`, sends AMQP bytes in binary messages whose boundaries mean nothing).
//!
//! Bounded: an HTTP head is read up to [`MAX_HEAD`] bytes; a frame's payload is passed on
//! as it arrives (unmasked on the way), never held whole; only control frames, at most
//! 125 bytes by the RFC, are held until complete.

/// The longest HTTP request or response head that is looked at.
pub const MAX_HEAD: usize = 16 * 1024;

/// The subprotocol of the AMQP WebSocket binding.
pub const AMQP_SUBPROTOCOL: &str = "AMQPWSB10";

/// The head of an HTTP request or response: its first line and header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpHead {
    /// The request line or status line, without its line end.
    pub start_line: String,
    /// The header fields, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The head's length in bytes, blank line included: the body or the next protocol
    /// starts there.
    pub len: usize,
}

impl HttpHead {
    /// The value of the first header field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the head's comma-separated header `name` lists `token` (any case).
    pub fn lists(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The status code of a response (`HTTP/1.1 101 Switching Protocols` gives 101).
    pub fn status(&self) -> Option<u16> {
        let mut parts = self.start_line.split_whitespace();
        let version = parts.next()?;
        if !version.starts_with("HTTP/") {
            return None;
        }
        parts.next()?.parse().ok()
    }

    /// Whether this is a request to upgrade to WebSocket (`Upgrade: websocket`).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.status().is_none() && self.lists("Upgrade", "websocket")
    }

    /// Whether it offers or accepts the AMQP binding (`Sec-WebSocket-Protocol` lists
    /// `AMQPWSB10`).
    pub fn has_amqp_subprotocol(&self) -> bool {
        self.lists("Sec-WebSocket-Protocol", AMQP_SUBPROTOCOL)
    }
}

/// What [`parse_head`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// No blank line yet: more bytes are needed.
    Incomplete,
    /// A complete head.
    Complete(HttpHead),
    /// Not an HTTP head, or one longer than [`MAX_HEAD`].
    Invalid(String),
}

/// Reads an HTTP head from the start of `data`: lines ended by CRLF (a bare LF is taken
/// too) up to a blank line.
pub fn parse_head(data: &[u8]) -> Head {
    let window = data.get(..MAX_HEAD).unwrap_or(data);
    let Some(end) = head_end(window) else {
        if data.len() >= MAX_HEAD {
            return Head::Invalid(format!("no end of the HTTP head in its first {MAX_HEAD} bytes"));
        }
        return Head::Incomplete;
    };
    let text = String::from_utf8_lossy(window.get(..end).unwrap_or_default());
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_line = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((n, v)) => headers.push((n.trim().to_owned(), v.trim().to_owned())),
            None => return Head::Invalid(format!("HTTP header line without a colon: {line:?}")),
        }
    }
    Head::Complete(HttpHead { start_line, headers, len: end })
}

/// The length of the head up to and including its blank line.
fn head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        if b.get(i) == Some(&b'\n') {
            match b.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if b.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// A WebSocket opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// 0: the next frame of a fragmented message.
    Continuation,
    /// 1: text.
    Text,
    /// 2: binary.
    Binary,
    /// 8: close.
    Close,
    /// 9: ping.
    Ping,
    /// 10: pong.
    Pong,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Continuation,
            1 => Self::Text,
            2 => Self::Binary,
            8 => Self::Close,
            9 => Self::Ping,
            10 => Self::Pong,
            _ => return None,
        })
    }

    /// `continuation`, `text`, `binary`, `close`, `ping` or `pong`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Continuation => "continuation",
            Self::Text => "text",
            Self::Binary => "binary",
            Self::Close => "close",
            Self::Ping => "ping",
            Self::Pong => "pong",
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// What the unframer found in a direction's bytes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsItem {
    /// Bytes of binary messages, unmasked: the next bytes of the stream they carry.
    Data(Vec<u8>),
    /// A control frame: ping, pong or close.
    Control {
        /// Its opcode.
        opcode: Opcode,
        /// Its payload, unmasked (a close frame's is a 2-byte code and a reason).
        payload: Vec<u8>,
        /// Where the frame starts in the direction's TCP stream.
        offset: u64,
    },
    /// A whole text message, which the AMQP binding does not use: its bytes are skipped.
    Text {
        /// Its length.
        len: u64,
        /// Where its first frame starts.
        offset: u64,
    },
    /// A breach of RFC 6455. When `fatal`, no frame boundary can be trusted any more and
    /// nothing follows.
    Error {
        /// Where the frame at fault starts in the direction's TCP stream.
        offset: u64,
        /// What is wrong.
        message: String,
        /// Whether unframing stops.
        fatal: bool,
    },
}

/// Turns one direction's WebSocket frames back into the bytes of its binary messages.
#[derive(Debug)]
pub struct Unframer {
    from_client: bool,
    head: [u8; 14],
    head_len: usize,
    /// The frame whose payload is being read.
    frame: Option<Frame>,
    /// The data message in progress (text or binary), and the offset and length so far.
    message: Option<(Opcode, u64, u64)>,
    control: Vec<u8>,
    offset: u64,
    closed: bool,
    failed: bool,
    /// permessage-deflate (RFC 7692), once the handshake negotiated it.
    deflate: Option<Deflate>,
}

/// The inflating side of permessage-deflate for one direction.
struct Deflate {
    state: Box<miniz_oxide::inflate::stream::InflateState>,
    /// The sender resets its window after each message (`*_no_context_takeover`).
    no_context_takeover: bool,
    /// The message in progress is compressed (RSV1 on its first frame).
    compressed: bool,
    /// Its compressed bytes so far.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("compressed", &self.compressed)
            .finish_non_exhaustive()
    }
}

/// The largest message permessage-deflate may inflate to (64 MiB): a few bytes of DEFLATE
/// can claim far more.
pub const MAX_INFLATED: usize = 64 << 20;

impl Deflate {
    /// Inflates a whole message (RFC 7692 7.2.2: its bytes, then 00 00 ff ff).
    fn inflate(&mut self) -> Result<Vec<u8>, String> {
        use miniz_oxide::inflate::stream::inflate;
        use miniz_oxide::{DataFormat, MZFlush, MZStatus};
        let mut input = std::mem::take(&mut self.buf);
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 32 * 1024];
        let mut rest = &input[..];
        loop {
            let r = inflate(&mut self.state, rest, &mut chunk, MZFlush::Sync);
            rest = &rest[r.bytes_consumed..];
            out.extend_from_slice(&chunk[..r.bytes_written]);
            if out.len() > MAX_INFLATED {
                return Err(format!(
                    "a permessage-deflate message inflates past {MAX_INFLATED} bytes"
                ));
            }
            match r.status {
                Ok(MZStatus::StreamEnd) => break,
                Ok(_) if rest.is_empty() && r.bytes_written < chunk.len() => break,
                Ok(_) if r.bytes_consumed == 0 && r.bytes_written == 0 => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(format!("a permessage-deflate message does not inflate: {e:?}"))
                }
            }
        }
        if self.no_context_takeover {
            self.state.reset(DataFormat::Raw);
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    opcode: Opcode,
    fin: bool,
    mask: Option<[u8; 4]>,
    mask_pos: usize,
    left: u64,
    offset: u64,
    /// What its payload is part of (a continuation takes its message's opcode).
    kind: Opcode,
}

impl Unframer {
    /// From here on, messages with RSV1 set are compressed with permessage-deflate (RFC
    /// 7692), the window kept from message to message unless `no_context_takeover` (the
    /// handshake's `client_no_context_takeover` for a client's bytes,
    /// `server_no_context_takeover` for a server's).
    pub fn enable_deflate(&mut self, no_context_takeover: bool) {
        self.deflate = Some(Deflate {
            state: miniz_oxide::inflate::stream::InflateState::new_boxed(
                miniz_oxide::DataFormat::Raw,
            ),
            no_context_takeover,
            compressed: false,
            buf: Vec::new(),
        });
    }

    /// An unframer for the bytes a client sent (`from_client`: frames must be masked) or a
    /// server sent (frames must not be).
    pub fn new(from_client: bool) -> Self {
        Self {
            from_client,
            head: [0; 14],
            head_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
            offset: 0,
            closed: false,
            failed: false,
            deflate: None,
        }
    }

    /// Whether a fatal error stopped it.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Reads the next bytes of the direction, appending what they complete to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<WsItem>) {
        while !data.is_empty() && !self.failed {
            if let Some(frame) = &mut self.frame {
                let n = usize::try_from(frame.left).unwrap_or(usize::MAX).min(data.len());
                let (chunk, rest) = data.split_at(n);
                data = rest;
                frame.left -= n as u64;
                self.offset += n as u64;
                let mut bytes = chunk.to_vec();
                if let Some(mask) = frame.mask {
                    for b in &mut bytes {
                        *b ^= mask.get(frame.mask_pos % 4).copied().unwrap_or(0);
                        frame.mask_pos += 1;
                    }
                }
                let frame = *frame;
                match frame.kind {
                    Opcode::Binary | Opcode::Continuation | Opcode::Text => match &mut self.deflate
                    {
                        Some(d) if d.compressed => {
                            if d.buf.len() + bytes.len() > MAX_INFLATED {
                                self.failed = true;
                                out.push(WsItem::Error {
                                    offset: frame.offset,
                                    message: format!(
                                        "a compressed WebSocket message past {MAX_INFLATED} bytes"
                                    ),
                                    fatal: true,
                                });
                                return;
                            }
                            d.buf.extend_from_slice(&bytes);
                        }
                        // Text is skipped (the AMQP binding is binary).
                        _ if frame.kind == Opcode::Text => {}
                        _ => push_data(out, bytes),
                    },
                    _ => self.control.extend_from_slice(&bytes),
                }
                if frame.left == 0 {
                    self.end_frame(frame, out);
                }
                continue;
            }
            // Collect the header: 2 bytes, then the extended length and the mask.
            let need = header_len(&self.head[..self.head_len.min(2)]);
            let take = need.saturating_sub(self.head_len).min(data.len());
            let (h, rest) = data.split_at(take);
            if let Some(dst) = self.head.get_mut(self.head_len..self.head_len + take) {
                dst.copy_from_slice(h);
            }
            self.head_len += take;
            data = rest;
            let need = header_len(&self.head[..self.head_len.min(2)]);
            if self.head_len < need || self.head_len < 2 {
                continue;
            }
            self.start_frame(out);
        }
    }

    /// The end of the direction's bytes: an unfinished frame is reported.
    pub fn finish(&mut self, out: &mut Vec<WsItem>) {
        if self.failed {
            return;
        }
        if let Some(f) = self.frame {
            out.push(WsItem::Error {
                offset: f.offset,
                message: format!(
                    "the stream ends inside a WebSocket {} frame ({} payload bytes missing)",
                    f.opcode.name(),
                    f.left
                ),
                fatal: true,
            });
        } else if self.head_len > 0 {
            out.push(WsItem::Error {
                offset: self.offset,
                message: format!(
                    "the stream ends inside a WebSocket frame header ({} bytes)",
                    self.head_len
                ),
                fatal: true,
            });
        }
        self.failed = true;
    }

    fn start_frame(&mut self, out: &mut Vec<WsItem>) {
        let h = self.head;
        let len = self.head_len;
        self.head_len = 0;
        let offset = self.offset;
        self.offset += len as u64;
        let [b0, b1, ..] = h;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (mut left, ext) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 2),
            127 => (u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]), 8),
            n => (u64::from(n), 0),
        };
        let mask = masked.then(|| {
            let at = 2 + ext;
            [h[at], h[at + 1], h[at + 2], h[at + 3]]
        });
        let fatal = |message: String| WsItem::Error { offset, message, fatal: true };
        let Some(opcode) = Opcode::from_bits(b0 & 0x0F) else {
            self.failed = true;
            out.push(fatal(format!("reserved opcode {:#x} (RFC 6455, 5.2)", b0 & 0x0F)));
            return;
        };
        // RSV1 is permessage-deflate's "compressed" bit, on a message's first frame only
        // (RFC 7692 6); any other RSV bit is an extension nobody negotiated.
        let first_of_message = matches!(opcode, Opcode::Text | Opcode::Binary);
        let rsv1_ok = self.deflate.is_some() && first_of_message;
        if b0 & 0x30 != 0 || (b0 & 0x40 != 0 && !rsv1_ok) {
            self.failed = true;
            out.push(fatal(if self.deflate.is_none() {
                format!(
                    "RSV bits {:#x} set, and the handshake negotiated no extension (RFC 6455, 5.2)",
                    (b0 & 0x70) >> 4
                )
            } else {
                format!(
                    "RSV bits {:#x} set where permessage-deflate allows none (RFC 7692, 6)",
                    (b0 & 0x70) >> 4
                )
            }));
            return;
        }
        if let (Some(d), true) = (&mut self.deflate, first_of_message) {
            d.compressed = b0 & 0x40 != 0;
            d.buf.clear();
        }
        if left >> 63 != 0 {
            self.failed = true;
            out.push(fatal("a 64-bit payload length with its top bit set (RFC 6455, 5.2)".into()));
            return;
        }
        if opcode.is_control() && (left > 125 || !fin) {
            self.failed = true;
            out.push(fatal(format!(
                "a {} frame {} (RFC 6455, 5.5)",
                opcode.name(),
                if fin { "longer than 125 bytes" } else { "that is fragmented" }
            )));
            return;
        }
        let mut note = |message: String| out.push(WsItem::Error { offset, message, fatal: false });
        if self.closed {
            note(format!("a {} frame after the close frame (RFC 6455, 5.5.1)", opcode.name()));
        }
        if masked != self.from_client {
            note(format!(
                "a {} frame from the {} is {}masked (RFC 6455, 5.1)",
                opcode.name(),
                if self.from_client { "client" } else { "server" },
                if masked { "" } else { "not " }
            ));
        }
        let kind = match opcode {
            Opcode::Continuation => match self.message {
                Some((k, _, _)) => k,
                None => {
                    note("a continuation frame with no message to continue (RFC 6455, 5.4)".into());
                    self.message = Some((Opcode::Binary, offset, 0));
                    Opcode::Binary
                }
            },
            Opcode::Text | Opcode::Binary => {
                if self.message.is_some() {
                    note(format!(
                        "a new {} message before the last one ended (RFC 6455, 5.4)",
                        opcode.name()
                    ));
                }
                self.message = Some((opcode, offset, 0));
                opcode
            }
            c => c,
        };
        if let Some((_, _, total)) = &mut self.message {
            if !opcode.is_control() {
                *total += left;
            }
        }
        if opcode == Opcode::Close {
            self.closed = true;
        }
        self.control.clear();
        left = left.min(u64::MAX >> 1);
        let frame = Frame { opcode, fin, mask, mask_pos: 0, left, offset, kind };
        if left == 0 {
            self.end_frame(frame, out);
        } else {
            self.frame = Some(frame);
        }
    }

    fn end_frame(&mut self, frame: Frame, out: &mut Vec<WsItem>) {
        self.frame = None;
        if frame.opcode.is_control() {
            out.push(WsItem::Control {
                opcode: frame.opcode,
                payload: std::mem::take(&mut self.control),
                offset: frame.offset,
            });
            return;
        }
        if frame.fin {
            if let Some(d) = self.deflate.as_mut().filter(|d| d.compressed) {
                d.compressed = false;
                let binary = matches!(self.message, Some((Opcode::Binary, _, _)));
                match d.inflate() {
                    Ok(bytes) if binary => push_data(out, bytes),
                    Ok(_) => {}
                    Err(message) => {
                        self.failed = true;
                        out.push(WsItem::Error { offset: frame.offset, message, fatal: true });
                        return;
                    }
                }
            }
            if let Some((Opcode::Text, start, len)) = self.message {
                out.push(WsItem::Text { len, offset: start });
            }
            self.message = None;
        }
    }
}

/// The length of a frame header, from its first two bytes (2 while they are not there).
fn header_len(first: &[u8]) -> usize {
    let Some(&b1) = first.get(1) else { return 2 };
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

fn push_data(out: &mut Vec<WsItem>, bytes: Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    if let Some(WsItem::Data(d)) = out.last_mut() {
        d.extend_from_slice(&bytes);
    } else {
        out.push(WsItem::Data(bytes));
    }
}

/// A close frame's status code and reason, when its payload holds them.
pub fn close_reason(payload: &[u8]) -> Option<(u16, String)> {
    let code = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    Some((code, String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![first];
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
        if let Some(k) = mask {
            out.extend_from_slice(&k);
            out.extend(payload.iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// Pushes `bytes` in pieces of `step` and returns the items, data joined.
    fn unframe(from_client: bool, bytes: &[u8], step: usize) -> Vec<WsItem> {
        let mut u = Unframer::new(from_client);
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            u.push(piece, &mut out);
        }
        u.finish(&mut out);
        let mut joined: Vec<WsItem> = Vec::new();
        for item in out {
            match (joined.last_mut(), item) {
                (Some(WsItem::Data(d)), WsItem::Data(more)) => d.extend(more),
                (_, item) => joined.push(item),
            }
        }
        joined
    }

    #[test]
    fn frames_of_every_length_encoding_unframe_in_any_chunking() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut bytes = frame(0x82, &big[..100], Some([1, 2, 3, 4]));
        bytes.extend(frame(0x02, &big[..1000], Some([5, 6, 7, 8])));
        bytes.extend(frame(0x89, b"ping", Some([9, 9, 9, 9])));
        bytes.extend(frame(0x80, &big, Some([0xff, 0, 0xff, 0])));
        let mut first = big[..100].to_vec();
        first.extend_from_slice(&big[..1000]);
        for step in [1, 3, 7, 1000, bytes.len()] {
            let items = unframe(true, &bytes, step);
            assert_eq!(items.len(), 3, "step {step}: {:?}", items.get(3));
            // Two binary messages in a row: their bytes are one stream.
            assert!(items[0] == WsItem::Data(first.clone()), "step {step}");
            let WsItem::Control { opcode: Opcode::Ping, payload, offset } = &items[1] else {
                panic!("step {step}: {:?}", items[1])
            };
            assert_eq!((payload.as_slice(), *offset), (&b"ping"[..], 106 + 1008));
            assert!(items[2] == WsItem::Data(big.clone()), "step {step}");
        }
    }

    #[test]
    fn breaches_are_named() {
        let fatal = |bytes: &[u8], from_client: bool| -> String {
            match unframe(from_client, bytes, 1).pop() {
                Some(WsItem::Error { message, fatal: true, .. }) => message,
                other => panic!("{other:?}"),
            }
        };
        assert!(fatal(&frame(0x89, &[0; 126], None), false).contains("longer than 125"));
        assert!(fatal(&frame(0x09, b"x", None), false).contains("fragmented"));
        assert!(fatal(&frame(0xC2, b"x", None), false).contains("negotiated no extension"));
        // With permessage-deflate: RSV1 only on a message's first frame, never RSV2.
        let rsv = |bytes: &[u8]| {
            let mut u = Unframer::new(false);
            u.enable_deflate(false);
            let mut out = Vec::new();
            u.push(bytes, &mut out);
            match out.pop() {
                Some(WsItem::Error { message, fatal: true, .. }) => message,
                other => panic!("{other:?}"),
            }
        };
        assert!(rsv(&frame(0xC9, b"x", None)).contains("RFC 7692"));
        assert!(rsv(&frame(0xA2, b"x", None)).contains("RFC 7692"));
        let mut two = frame(0x42, b"", None);
        two.extend(frame(0xC0, b"x", None));
        assert!(rsv(&two).contains("RFC 7692"));
        assert!(rsv(&frame(0xC2, b"\xff\xff", None)).contains("does not inflate"));
        assert!(fatal(&frame(0x83, b"x", None), false).contains("reserved opcode 0x3"));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(fatal(&huge, false).contains("top bit"));
        assert!(fatal(&frame(0x82, b"abc", None)[..3], false).contains("2 payload bytes missing"));
        let items = unframe(false, &frame(0x00, b"abc", Some([1, 1, 1, 1])), 2);
        let notes: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                WsItem::Error { message, fatal: false, .. } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("from the server is masked"));
        assert!(notes[1].contains("no message to continue"));
        assert_eq!(items.last(), Some(&WsItem::Data(b"abc".to_vec())));
    }

    #[test]
    fn http_heads_are_read_up_to_the_blank_line() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Incomplete);
        let req = b"GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nSec-WebSocket-Protocol: mqtt, amqpwsb10\r\n\r\nrest";
        let Head::Complete(h) = parse_head(req) else { panic!() };
        assert_eq!(h.len, req.len() - 4);
        assert!(h.is_websocket_upgrade() && h.has_amqp_subprotocol());
        assert_eq!(h.header("upgrade"), Some("WebSocket"));
        assert_eq!(h.status(), None);
        let Head::Complete(r) = parse_head(b"HTTP/1.1 101 Switching\n\n") else { panic!() };
        assert_eq!((r.status(), r.len), (Some(101), 24));
        assert!(matches!(parse_head(b"GET / HTTP/1.1\r\nbad line\r\n\r\n"), Head::Invalid(_)));
        assert!(matches!(parse_head(&vec![b'a'; MAX_HEAD]), Head::Invalid(_)));
        assert_eq!(close_reason(b"\x03\xe8bye"), Some((1000, "bye".into())));
        assert_eq!(close_reason(b"\x03"), None);
    }
}

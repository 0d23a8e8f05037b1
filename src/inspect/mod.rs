//! Annotated decoding of whole byte streams, for people and tools that study the wire.
//!
//! An [`Inspector`] takes a byte stream in any chunking (protocol headers, SASL frames,
//! AMQP frames) and yields one [`Record`] per protocol header or frame, with its offset in
//! the stream, its raw bytes, the typed decode, and a tree of [`Node`]s giving the offset,
//! encoding and meaning of every value in it, named after the spec's fields. Transfers that
//! end a delivery also carry the decoded message, reassembled across frames when the
//! delivery was split.
//!
//! Malformed input is reported at its exact offset; a frame whose body is malformed still
//! leaves the stream in step, so decoding goes on with the next frame. Only a broken frame
//! header stops it, since no later frame boundary can be trusted.

#[cfg(feature = "json")]
pub mod html;
pub mod json;
#[cfg(all(test, feature = "json"))]
mod json_oracle;
mod text;
mod transfer_mask;
pub mod typed;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;

pub use text::render_text;

use crate::codec::format as fc;
use crate::codec::{DecodeError, DecodeOptions, Reader, Value, Warning};
use crate::frame::{
    Frame, FrameBody, FrameDecoder, FrameError, FrameHeader, FrameType, ProtocolHeader, ProtocolId,
    StreamItem,
};
use crate::message::Message;
use crate::types::{fields_for_code, name_for_code, Performative, SaslFrameBody};

/// One annotated value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Offset of the first byte (stream offset, or message offset for a reassembled
    /// delivery).
    pub offset: usize,
    /// Bytes of the whole value.
    pub len: usize,
    /// Bytes of the value's own header: constructor, size and count (all of it for a
    /// primitive).
    pub head: usize,
    /// What the value is in its context: a field name, a section name, `[3]`, a map key.
    pub label: Cow<'static, str>,
    /// The encoding: the spec's name for the constructor (`str8-utf8`, `list32`…).
    pub encoding: &'static str,
    /// The value rendered for people, or a summary for compounds.
    pub summary: Cow<'static, str>,
    /// Elements of a compound, or descriptor and value of a described type.
    pub children: Vec<Self>,
}

/// A decoded message with its annotated sections.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// The message bytes (joined when reassembled).
    pub payload: Bytes,
    /// Number of transfer frames the delivery took.
    pub frames: usize,
    /// Offsets in `sections` count from the start of the message instead of the stream,
    /// because the delivery was split across frames.
    pub reassembled: bool,
    /// The typed message, or why it could not be decoded.
    pub message: Result<Message, DecodeError>,
    /// One node per section (shared: the sections do not depend on the mode, see
    /// [`Inspector::inspect_both`]).
    pub sections: Arc<[Node]>,
    /// Deviations accepted in lenient mode.
    pub warnings: Vec<Warning>,
}

/// One frame as the inspector saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameRecord {
    /// Stream offset.
    pub offset: u64,
    /// The frame header.
    pub header: FrameHeader,
    /// The whole frame.
    pub raw: Bytes,
    /// The typed decode, or why it failed.
    pub frame: Result<Frame, DecodeError>,
    /// The performative's annotated tree (absent for an empty frame or a failed decode).
    /// Shared: the tree is read leniently whatever the mode, see
    /// [`Inspector::inspect_both`].
    pub tree: Option<Arc<Node>>,
    /// Deviations accepted in lenient mode.
    pub warnings: Vec<Warning>,
    /// For the last transfer of a delivery: the message. Boxed, since few frames end a
    /// delivery: a record small enough for the allocator's fast path is a frame's largest
    /// allocation.
    pub delivery: Option<Box<DeliveryRecord>>,
    /// For a transfer that continues a delivery: which frame of it this is (1-based).
    pub continuation: Option<usize>,
    /// A transfer that aborted its delivery.
    pub aborted: bool,
    /// Credentials in the frame were masked (a SASL PLAIN password, a SAS signature).
    pub redacted: bool,
    /// The frame's type does not belong to the layer the last protocol header opened (an
    /// AMQP frame after the SASL header, a SASL frame after the AMQP header): an error in
    /// every mode, whatever the frame holds.
    pub layer_error: Option<&'static str>,
}

impl FrameRecord {
    /// The spec's name of what the frame carries: a performative, a SASL body, or
    /// `empty` for a heartbeat; `None` when the body could not be decoded.
    pub fn performative(&self) -> Option<&'static str> {
        match &self.frame {
            Ok(Frame { body: FrameBody::Empty, .. }) => Some("empty"),
            Ok(Frame { body: FrameBody::Amqp { performative, .. }, .. }) => {
                Some(performative.name())
            }
            Ok(Frame { body: FrameBody::Sasl(s), .. }) => Some(s.name()),
            Err(_) => None,
        }
    }
}

/// An item of the inspected stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// A protocol header.
    Header {
        /// Stream offset.
        offset: u64,
        /// The header.
        header: ProtocolHeader,
    },
    /// A frame.
    Frame(Box<FrameRecord>),
    /// The stream cannot be split into frames from here on.
    Error {
        /// What is wrong, and where.
        error: FrameError,
        /// The bytes from the error's offset that had arrived when decoding stopped (of a
        /// stream given whole, the rest of it), masked as frames are (see
        /// [`Inspector::redact_secrets`]). Bytes that arrive later come as
        /// [`Record::Undecoded`].
        rest: Bytes,
        /// Whether credentials in `rest` were masked.
        redacted: bool,
    },
    /// Bytes that came after the stream broke off (an [`Record::Error`] or
    /// [`Record::Truncated`] before them), as they came: not decoded, but kept, so that the
    /// stream can be shown and written back whole. Each [`Inspector::next_record`] (or
    /// [`Inspector::finish`]) hands out what was pushed since the last: one record per
    /// piece for a caller that reads its records after each push.
    Undecoded {
        /// Stream offset of the piece's first byte.
        offset: u64,
        /// How many bytes the piece has.
        len: u64,
        /// The bytes, or `None` where credentials are masked: in bytes that arrive in
        /// pieces with no frame to decode, a credential cut across two pieces could not be
        /// found and masked, so none is shown.
        bytes: Option<Bytes>,
    },
    /// The stream ended inside a header or frame.
    Truncated {
        /// Stream offset of the incomplete item.
        offset: u64,
        /// The bytes left over (what there is of the item), masked as frames are.
        rest: Bytes,
        /// Whether credentials in `rest` were masked.
        redacted: bool,
    },
}

impl Record {
    /// How many errors it holds (as `amqpwire decode` counts them): a fatal error or a
    /// truncated stream, a frame that cannot be decoded, a layer error, a delivery whose
    /// message cannot be decoded.
    pub fn errors(&self) -> usize {
        match self {
            Self::Header { .. } | Self::Undecoded { .. } => 0,
            Self::Error { .. } | Self::Truncated { .. } => 1,
            Self::Frame(f) => {
                usize::from(f.frame.is_err())
                    + usize::from(f.layer_error.is_some())
                    + f.delivery.as_ref().map_or(0, |d| usize::from(d.message.is_err()))
            }
        }
    }
}

/// Decodes and annotates a byte stream.
#[derive(Debug)]
pub struct Inspector {
    decoder: FrameDecoder,
    opts: DecodeOptions,
    partial: HashMap<(u16, u32), Partial>,
    failed: bool,
    /// After a framing error: the stream offset of the first byte pushed since the last
    /// record, and those bytes (only their count where credentials are masked).
    after: u64,
    undecoded: Vec<u8>,
    undecoded_len: u64,
    redact: bool,
    /// The layer the last protocol header opened (none seen yet: frames of either type).
    layer: Option<ProtocolId>,
    /// [`Inspector::resumed`]: the links whose transfers have been seen since, for which
    /// the next delivery is a whole one.
    resumed: Option<std::collections::HashSet<(u16, u32)>>,
    /// While masking: of each link whose delivery is under way, where the walk of its
    /// payload is, so that the next transfer's bytes are masked as the values they go on
    /// with (a credential cut across two transfers is masked in both).
    mask_walks: HashMap<(u16, u32), transfer_mask::PayloadWalk>,
    /// While masking: a sasl-init chose PLAIN with no initial response, so the client's
    /// next sasl-response carries the credentials (RFC 4422 lets them follow an empty
    /// challenge) and is masked as the initial response would have been.
    plain_answer_due: bool,
}

#[derive(Debug, Default)]
struct Partial {
    payload: Vec<u8>,
    frames: usize,
    /// The first transfers of the delivery may be before the stream started (a
    /// [resumed](Inspector::resumed) stream); `Some(true)` when they surely were (its
    /// first transfer seen carried no delivery-id, which a delivery's first must).
    headless: Option<bool>,
}

impl Inspector {
    /// An inspector decoding with `opts`. The stream may start with a protocol header or
    /// directly with a frame; headers are recognised wherever a frame could start.
    pub fn new(opts: DecodeOptions) -> Self {
        Self {
            decoder: FrameDecoder::new(u32::MAX).auto_start().sniff_headers(true),
            opts,
            partial: HashMap::new(),
            failed: false,
            after: 0,
            undecoded: Vec::new(),
            undecoded_len: 0,
            redact: true,
            layer: None,
            resumed: None,
            mask_walks: HashMap::new(),
            plain_answer_due: false,
        }
    }

    /// The stream starts in the middle of a connection (after a gap in a capture, or one
    /// the capture joined midway), at a frame: the first delivery seen on each link may
    /// have begun before it. Such a delivery whose first transfer seen has no
    /// delivery-id (which a delivery's first transfer must have), or whose message does
    /// not decode, is shown without its message and with a warning saying why, rather
    /// than as a message that is in error.
    pub fn resumed(mut self) -> Self {
        self.resumed = Some(std::collections::HashSet::new());
        self
    }

    /// Whether to mask credentials (on by default): the password of a SASL PLAIN
    /// initial response (decoded, or found by its shape in a sasl-init that does not
    /// decode as one), or of the sasl-response that follows a PLAIN sasl-init with none,
    /// the `sig=` of any `SharedAccessSignature` token, the key of any
    /// Azure connection string and the signature of any JSON Web Token in a frame are
    /// replaced by `*` in every rendering, raw bytes
    /// included. Lengths are kept, so offsets do not move.
    pub fn redact_secrets(mut self, on: bool) -> Self {
        self.redact = on;
        self
    }

    /// Bytes pushed that no record has covered yet: once [`Inspector::next_record`] has
    /// given every record, those of an item not complete yet (a frame cut short).
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Appends bytes of the stream. After a framing error nothing later can be decoded:
    /// they are handed out as they came, by the next [`Inspector::next_record`], as a
    /// [`Record::Undecoded`] (so a relay that goes on feeding a long connection does not
    /// pile them up, as long as it reads its records).
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.decoder.push(data);
        } else {
            if !self.redact {
                self.undecoded.extend_from_slice(data);
            }
            self.undecoded_len += data.len() as u64;
        }
    }

    /// The next record, or `None` when more bytes are needed (or, after a framing error,
    /// when none have come since the last record).
    pub fn next_record(&mut self) -> Option<Record> {
        if self.failed {
            return self.take_undecoded();
        }
        match self.decoder.next_item() {
            Ok(None) => None,
            Ok(Some(StreamItem::Header { offset, header })) => {
                self.layer = Some(header.id);
                Some(Record::Header { offset, header })
            }
            Ok(Some(StreamItem::Frame(raw))) => {
                let mut shared = self.share(raw);
                Some(Record::Frame(Box::new(self.frame(&mut shared))))
            }
            Err(error) => Some(self.fail(error)),
        }
    }

    /// The stream cannot be split into frames from `error` on: its record, with the bytes
    /// the decoder held.
    fn fail(&mut self, error: FrameError) -> Record {
        self.failed = true;
        let at = self.decoder.offset();
        let (rest, redacted) = self.take_rest();
        self.after = at + rest.len() as u64;
        Record::Error { error, rest, redacted }
    }

    /// The bytes pushed since a framing error and not yet handed out.
    fn take_undecoded(&mut self) -> Option<Record> {
        if self.undecoded_len == 0 {
            return None;
        }
        let (offset, len) = (self.after, std::mem::take(&mut self.undecoded_len));
        self.after += len;
        let bytes = (!self.redact).then(|| Bytes::from(std::mem::take(&mut self.undecoded)));
        Some(Record::Undecoded { offset, len, bytes })
    }

    /// Call when the stream has ended: reports bytes left inside an incomplete item.
    pub fn finish(&mut self) -> Option<Record> {
        if self.failed {
            return self.take_undecoded();
        }
        if self.decoder.buffered() == 0 {
            return None;
        }
        self.failed = true;
        let offset = self.decoder.offset();
        let (rest, redacted) = self.take_rest();
        self.after = offset + rest.len() as u64;
        Some(Record::Truncated { offset, rest, redacted })
    }

    /// The bytes the decoder holds and will not decode (it has stopped), masked when
    /// masking is on (and whether that masked anything); the decoder keeps none of them.
    fn take_rest(&mut self) -> (Bytes, bool) {
        let mut rest = self.decoder.take_buffered();
        let redacted = self.redact && mask_undecoded(&mut rest);
        (rest.freeze(), redacted)
    }

    /// Every record of a complete stream.
    pub fn inspect_all(data: &[u8], opts: DecodeOptions) -> Vec<Record> {
        let mut i = Self::new(opts);
        i.push(data);
        let mut out = Vec::new();
        while let Some(r) = i.next_record() {
            out.push(r);
        }
        out.extend(i.finish());
        out
    }

    /// Every record of a complete stream in strict mode and in lenient mode (with
    /// credentials masked): `[inspect_all(data, STRICT), inspect_all(data, LENIENT)]`, with
    /// the work that does not depend on the mode done once. The stream splits into the
    /// same frames in both modes, masking reads the frame leniently in both, and the
    /// annotated trees of a frame's body and of a message are read leniently in both:
    /// the two records of a frame share them.
    pub fn inspect_both(data: &[u8]) -> [Vec<Record>; 2] {
        let mut modes = [Self::new(DecodeOptions::STRICT), Self::new(DecodeOptions::LENIENT)];
        // The lenient inspector's decoder splits the stream for both.
        let [strict, lenient] = &mut modes;
        lenient.push(data);
        let mut out = [Vec::new(), Vec::new()];
        loop {
            match lenient.decoder.next_item() {
                Ok(None) => break,
                Ok(Some(StreamItem::Header { offset, header })) => {
                    strict.layer = Some(header.id);
                    lenient.layer = Some(header.id);
                    out[0].push(Record::Header { offset, header });
                    out[1].push(Record::Header { offset, header });
                }
                Ok(Some(StreamItem::Frame(raw))) => {
                    let mut shared = lenient.share(raw);
                    out[0].push(Record::Frame(Box::new(strict.frame(&mut shared))));
                    out[1].push(Record::Frame(Box::new(lenient.frame(&mut shared))));
                }
                Err(error) => {
                    let r = lenient.fail(error);
                    out[0].push(r.clone());
                    out[1].push(r);
                    break;
                }
            }
        }
        if let Some(r) = lenient.finish() {
            out[0].push(r.clone());
            out[1].push(r);
        }
        out
    }

    /// A frame's [`Shared`] part: its bytes masked (when masking is on), a transfer's
    /// payload as the values of its delivery ([`Inspector::mask_transfer`]).
    fn share(&mut self, mut raw: crate::frame::RawFrame) -> Shared {
        if !self.redact {
            return Shared::new(raw, false);
        }
        let answer = self.mask_plain_answer(&mut raw);
        match self.mask_transfer(&mut raw) {
            Some(redacted) => Shared { raw, redacted, tree: None, sections: None },
            None => {
                let mut shared = Shared::new(raw, true);
                shared.redacted |= answer;
                shared
            }
        }
    }

    /// Follows a SASL exchange for PLAIN credentials sent after the sasl-init: a
    /// sasl-init that chooses PLAIN (in any case) with no initial response makes the next
    /// sasl-response carry them, and its response is masked as [`plain_secret`] says (all
    /// of its texts when it does not decode). Whether it masked anything.
    fn mask_plain_answer(&mut self, raw: &mut crate::frame::RawFrame) -> bool {
        if raw.header.frame_type != FrameType::SASL {
            return false;
        }
        let doff = (usize::from(raw.header.doff) * 4).min(raw.bytes.len());
        let mut r = Reader::new(&raw.bytes[doff..], DecodeOptions::LENIENT);
        let code = crate::types::read_descriptor(&mut r).ok().and_then(|d| d.code());
        match code {
            Some(<crate::types::SaslInit as crate::types::Composite>::CODE) => {
                self.plain_answer_due = match raw.decode(DecodeOptions::LENIENT) {
                    Ok(Frame { body: FrameBody::Sasl(SaslFrameBody::Init(init)), .. }) => {
                        init.mechanism.as_str().eq_ignore_ascii_case("PLAIN")
                            && init.initial_response.as_ref().is_none_or(|r| r.is_empty())
                    }
                    _ => false,
                };
                false
            }
            Some(<crate::types::SaslResponse as crate::types::Composite>::CODE)
                if std::mem::take(&mut self.plain_answer_due) =>
            {
                let mut bytes = raw.bytes.to_vec();
                let masked = match raw.decode(DecodeOptions::LENIENT) {
                    Ok(Frame { body: FrameBody::Sasl(SaslFrameBody::Response(resp)), .. }) => {
                        crate::codec::offset_within(&raw.bytes, &resp.response).is_some_and(
                            |start| {
                                let secret = plain_secret(&resp.response);
                                let range = start + secret.start..start + secret.end;
                                fill_stars(&mut bytes[range])
                            },
                        )
                    }
                    // Written some other way: every text it holds, and all from where it
                    // stops being values.
                    _ => mask_all_texts(&mut bytes[doff..]),
                };
                if masked {
                    raw.bytes = Bytes::from(bytes);
                }
                masked
            }
            Some(<crate::types::SaslOutcome as crate::types::Composite>::CODE) => {
                self.plain_answer_due = false;
                false
            }
            _ => false,
        }
    }

    /// Masks a transfer (read leniently: masking does not depend on the mode): its
    /// performative as [`redact`] masks a frame, and its payload as the next bytes of its
    /// delivery's message, walked value by value across the delivery's transfers, so that
    /// a credential that a transfer's end cut is masked in the next too, and masking never
    /// runs past a value's end. `None` for a frame that is not a transfer; else whether it
    /// masked anything.
    fn mask_transfer(&mut self, raw: &mut crate::frame::RawFrame) -> Option<bool> {
        if raw.header.frame_type != FrameType::AMQP {
            return None;
        }
        // Only a transfer is decoded here: its descriptor says so.
        let body = raw.body();
        let mut r = Reader::from_bytes(&body, DecodeOptions::LENIENT);
        let code = crate::types::read_descriptor(&mut r).ok().and_then(|d| d.code());
        if code != Some(<crate::types::Transfer as crate::types::Composite>::CODE) {
            return None;
        }
        let Ok(Frame {
            channel,
            body: FrameBody::Amqp { performative: Performative::Transfer(t), payload },
        }) = raw.decode(DecodeOptions::LENIENT)
        else {
            return None;
        };
        let key = (channel, t.handle.0);
        let ended = !t.more || t.aborted;
        // The payload is the frame's tail.
        let at = raw.bytes.len() - payload.len();
        let doff = (usize::from(raw.header.doff) * 4).min(at);
        let walk = self.mask_walks.entry(key).or_default();
        // Most transfers hold nothing to mask: walked, not copied.
        if !holds_mark(raw.bytes.get(8..).unwrap_or_default())
            && !walk.open()
            && !walk.cut_mark(&payload)
        {
            walk.pass(&payload);
            if ended {
                self.mask_walks.remove(&key);
            }
            return Some(false);
        }
        let mut bytes = raw.bytes.to_vec();
        let mut masked = mask_tokens(bytes.get_mut(8..doff).unwrap_or_default());
        masked |= mask_plain_responses(&mut bytes[doff..]);
        let performative = &mut bytes[doff..at];
        let mut texts = Vec::new();
        if let Err(stop) = walk_values(performative, &mut texts) {
            masked |= mask_text_tokens(&mut performative[stop..]);
        }
        for t in texts {
            masked |= mask_text_tokens(&mut performative[t]);
        }
        masked |= self.mask_walks.entry(key).or_default().mask(&mut bytes[at..]);
        if ended {
            self.mask_walks.remove(&key);
        }
        if masked {
            raw.bytes = Bytes::from(bytes);
        }
        Some(masked)
    }

    fn frame(&mut self, shared: &mut Shared) -> FrameRecord {
        let raw = &shared.raw;
        let body = raw.body();
        let base = raw.body_offset() as usize;
        let mut warnings = Vec::new();
        let frame = match raw.decode_with_warnings(self.opts) {
            Ok((f, w)) => {
                warnings = w;
                Ok(f)
            }
            Err(e) => Err(e),
        };
        let tree = if body.is_empty() || frame.is_err() && raw.header.frame_type.name().is_none() {
            None
        } else {
            shared.tree(&body, base)
        };
        let raw = &shared.raw;
        let mut rec = FrameRecord {
            offset: raw.offset,
            header: raw.header,
            raw: raw.bytes.clone(),
            frame,
            tree,
            warnings,
            delivery: None,
            continuation: None,
            aborted: false,
            redacted: shared.redacted,
            layer_error: self.layer_error(raw.header.frame_type),
        };
        if let Ok(Frame {
            channel,
            body: FrameBody::Amqp { performative: Performative::Transfer(t), payload },
        }) = &rec.frame
        {
            let key = (*channel, t.handle.0);
            let payload_offset = base + (body.len() - payload.len());
            // The first transfer seen on a link of a resumed stream: its delivery may have
            // begun before the stream did.
            let first_seen = self.resumed.as_mut().is_some_and(|seen| seen.insert(key));
            let headless = first_seen.then_some(t.delivery_id.is_none());
            if t.aborted {
                self.partial.remove(&key);
                rec.aborted = true;
            } else if t.more {
                let p = self.partial.entry(key).or_default();
                if p.frames == 0 {
                    p.headless = headless;
                }
                p.payload.extend_from_slice(payload);
                p.frames += 1;
                rec.continuation = Some(p.frames);
            } else {
                let (delivery, headless) = match self.partial.remove(&key) {
                    Some(mut p) => {
                        p.payload.extend_from_slice(payload);
                        let payload = Bytes::from(p.payload);
                        (self.delivery(payload, p.frames + 1, 0, true, shared), p.headless)
                    }
                    None => {
                        (self.delivery(payload.clone(), 1, payload_offset, false, shared), headless)
                    }
                };
                let lost = match headless {
                    Some(true) => Some("its first transfer seen carries no delivery-id"),
                    Some(false) if delivery.message.is_err() => {
                        Some("its message does not decode from the transfers seen")
                    }
                    _ => None,
                };
                match lost {
                    // Its start is missing: no message is shown, and nothing is in error.
                    Some(why) => rec.warnings.push(Warning {
                        offset: payload_offset,
                        kind: crate::codec::ErrorKind::InvalidValue {
                            what: "delivery",
                            reason: format!(
                                "its first transfers came before the stream was joined ({why})"
                            ),
                        },
                        action: "its message is not decoded",
                    }),
                    None => rec.delivery = Some(Box::new(delivery)),
                }
            }
        }
        rec
    }

    /// Part 5, 5.3.2 and part 2, 2.3: a SASL layer carries only SASL frames, and the AMQP
    /// layer only AMQP frames. Checked in every mode: a frame on the wrong layer is not a
    /// deviation a lenient reader can work around, since the peer would reject the stream.
    fn layer_error(&self, ty: FrameType) -> Option<&'static str> {
        match self.layer? {
            ProtocolId::SASL if ty != FrameType::SASL => Some(
                "a frame other than SASL after the SASL protocol header: the SASL layer carries only SASL frames (part 5, 5.3.2)",
            ),
            ProtocolId::AMQP if ty == FrameType::SASL => Some(
                "a SASL frame after the AMQP protocol header: SASL frames belong to the SASL layer only (part 2, 2.3; part 5, 5.3.2)",
            ),
            _ => None,
        }
    }

    fn delivery(
        &self,
        payload: Bytes,
        frames: usize,
        base: usize,
        reassembled: bool,
        shared: &mut Shared,
    ) -> DeliveryRecord {
        let mut r = Reader::from_bytes(&payload, self.opts).with_base(base);
        let message = Message::read(&mut r);
        let warnings = r.take_warnings();
        let sections = shared.sections(&payload, base);
        DeliveryRecord { payload, frames, reassembled, message, sections, warnings }
    }
}

/// What a frame gives whatever the mode, worked out once for the records of both modes:
/// its bytes with credentials masked, and the annotated trees of its body and of the
/// message it ends, all read leniently.
struct Shared {
    raw: crate::frame::RawFrame,
    redacted: bool,
    /// The body's tree, once annotated.
    tree: Option<Option<Arc<Node>>>,
    /// The sections of a message, once annotated: its bytes, their base offset, the
    /// sections.
    sections: Option<(Bytes, usize, Arc<[Node]>)>,
}

impl Shared {
    fn new(mut raw: crate::frame::RawFrame, redact_secrets: bool) -> Self {
        let redacted = redact_secrets && redact(&mut raw);
        Self { raw, redacted, tree: None, sections: None }
    }

    /// The annotated tree of the frame's `body`, which starts at stream offset `base`.
    fn tree(&mut self, body: &Bytes, base: usize) -> Option<Arc<Node>> {
        self.tree
            .get_or_insert_with(|| {
                let mut r = Reader::from_bytes(body, DecodeOptions::LENIENT).with_base(base);
                // As far as it reads: what comes before a fault is still shown.
                match annotate_partial(&mut r, "", None) {
                    Ok(node) => Some(Arc::new(node)),
                    Err((_, partial)) => partial.map(Arc::new),
                }
            })
            .clone()
    }

    /// The annotated sections of a message: as far as they can be read, from offset
    /// `base`. The two modes may end different deliveries with a frame (one may have
    /// refused a transfer the other took): the sections are shared only for the same
    /// bytes at the same offset.
    fn sections(&mut self, payload: &Bytes, base: usize) -> Arc<[Node]> {
        if let Some((p, b, sections)) = &self.sections {
            if *b == base && p == payload {
                return sections.clone();
            }
        }
        let mut sections = Vec::new();
        let mut r = Reader::from_bytes(payload, DecodeOptions::LENIENT).with_base(base);
        while !r.is_empty() {
            match annotate_partial(&mut r, "", None) {
                Ok(n) => sections.push(n),
                Err((_, partial)) => {
                    sections.extend(partial);
                    break;
                }
            }
        }
        let sections: Arc<[Node]> = sections.into();
        self.sections = Some((payload.clone(), base, sections.clone()));
        sections
    }
}

/// Masks credentials in a frame (see [`Inspector::redact_secrets`]); returns whether it
/// masked anything.
pub fn redact(raw: &mut crate::frame::RawFrame) -> bool {
    let doff = usize::from(raw.header.doff) * 4;
    if raw.header.frame_type == FrameType::SASL {
        if let Some(password) = plain_password(raw) {
            let mut bytes = raw.bytes.to_vec();
            bytes[password].fill(b'*');
            raw.bytes = Bytes::from(bytes);
            return true;
        }
    }
    // Any other frame, and a sasl-init that does not decode as one (a response written as
    // a string, a sasl-init in an AMQP frame): masked by the shapes of what it holds. The
    // frame is copied only when there is something to mask: most frames have nothing.
    // The extended header too: it is the peer's to fill, and shown.
    if !holds_mark(raw.bytes.get(8..).unwrap_or_default()) {
        return false;
    }
    let mut bytes = raw.bytes.to_vec();
    let from = doff.min(bytes.len());
    let (extended, body) = bytes.split_at_mut(from);
    let extended_masked = mask_tokens(extended.get_mut(8..).unwrap_or_default());
    // Tokens are masked inside the string, symbol and binary values that hold them, so
    // that masking never runs on into the bytes after a value (a null's 0x40 is a
    // printable '@'). From where a body stops being values (a transfer's later part, a
    // malformed frame) it is scanned as undecoded bytes are: masking more, not less.
    let mut texts = Vec::new();
    let mut masked = mask_plain_responses(body) | extended_masked;
    let walked = walk_values(body, &mut texts);
    for t in texts {
        masked |= mask_text_tokens(&mut body[t]);
    }
    if let Err(stop) = walked {
        masked |= mask_text_tokens(&mut body[stop..]);
    }
    if masked {
        raw.bytes = Bytes::from(bytes);
    }
    masked
}

/// Whether `body` holds the mark of a credential masking looks for (a PLAIN mechanism, a
/// SAS token, a connection string's key, a JSON Web Token): most frames hold none, and are
/// not copied.
fn holds_mark(body: &[u8]) -> bool {
    // One pass over every transfer's payload: the first two bytes of each mark (`pl`,
    // `sh`, `ey`, in any case) rule out most positions, lower-case text included. The
    // names are matched in any case (as Azure's parsers take a connection string's keys),
    // a token's base64url as it is.
    let names: [&[u8]; 3] = [b"PLAIN", SAS_TOKEN, SHARED_ACCESS_KEY];
    let holds = |i: usize| {
        let rest = &body[i..];
        body[i] == b'e' && rest.starts_with(JWT)
            || names.iter().any(|m| rest.get(..m.len()).is_some_and(|r| r.eq_ignore_ascii_case(m)))
    };
    (0..body.len().saturating_sub(1)).any(|i| {
        matches!([body[i] | 0x20, body[i + 1] | 0x20], [b'p', b'l'] | [b's', b'h'] | [b'e', b'y'])
            && holds(i)
    })
}

/// Walks the encoded values that make up `buf` (1.5, 1.6), as the encoding lays them out,
/// collecting the byte ranges of the contents of its binaries, strings and symbols, at any
/// depth (described values, lists, maps, arrays). `Err` with where the walk could go no
/// further, when `buf` is not all values (the ranges found before it are kept).
pub(crate) fn walk_values(
    buf: &[u8],
    texts: &mut Vec<std::ops::Range<usize>>,
) -> Result<(), usize> {
    let mut at = 0;
    while at < buf.len() {
        at = walk_value(buf, at, 0, texts)?;
    }
    Ok(())
}

/// The value at `at` (constructor included): where it ends, or `Err` with where the walk
/// could go no further.
fn walk_value(
    buf: &[u8],
    at: usize,
    depth: u32,
    texts: &mut Vec<std::ops::Range<usize>>,
) -> Result<usize, usize> {
    if depth > MAX_WALK_DEPTH {
        return Err(at);
    }
    match *buf.get(at).ok_or(at)? {
        fc::DESCRIBED => {
            let value = walk_value(buf, at + 1, depth + 1, texts)?;
            walk_value(buf, value, depth + 1, texts)
        }
        code => walk_body(buf, code, at + 1, depth, texts),
    }
}

/// How deep [`walk_value`] goes into compounds and described values.
const MAX_WALK_DEPTH: u32 = 64;

/// The body of a value with constructor `code`, at `at`: where it ends, or `Err` with
/// where the walk could go no further (the constructor's position, `at - 1`, when the
/// value itself is not one).
fn walk_body(
    buf: &[u8],
    code: u8,
    at: usize,
    depth: u32,
    texts: &mut Vec<std::ops::Range<usize>>,
) -> Result<usize, usize> {
    let here = at - 1;
    let u8_at = |i: usize| buf.get(i).map(|n| usize::from(*n)).ok_or(here);
    let u32_at = |i: usize| {
        i.checked_add(4)
            .and_then(|e| buf.get(i..e))
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .ok_or(here)
    };
    // The size, the count of a compound, and where what the size counts starts.
    let (size, count, content) = match code {
        fc::VBIN8 | fc::STR8 | fc::SYM8 => (u8_at(at)?, None, at + 1),
        fc::VBIN32 | fc::STR32 | fc::SYM32 => (u32_at(at)?, None, at + 4),
        fc::LIST8 | fc::MAP8 | fc::ARRAY8 => (u8_at(at)?, Some(u8_at(at + 1)?), at + 1),
        fc::LIST32 | fc::MAP32 | fc::ARRAY32 => (u32_at(at)?, Some(u32_at(at + 4)?), at + 4),
        _ => {
            let width = fc::fixed_width(code).ok_or(here)?;
            return at.checked_add(width).filter(|end| *end <= buf.len()).ok_or(here);
        }
    };
    let end = content.checked_add(size).filter(|end| *end <= buf.len()).ok_or(here)?;
    let Some(count) = count else {
        texts.push(content..end);
        return Ok(end);
    };
    // The items start after the count.
    let mut pos = content + if matches!(code, fc::LIST8 | fc::MAP8 | fc::ARRAY8) { 1 } else { 4 };
    // An item that runs past the compound's end: the walk stops where it starts.
    let within = |item: usize, next: usize| if next <= end { Ok(next) } else { Err(item) };
    if matches!(code, fc::ARRAY8 | fc::ARRAY32) {
        // One constructor for all the elements (a described one: its descriptor, then the
        // constructor of the values).
        let mut element = *buf.get(pos).ok_or(pos)?;
        pos += 1;
        if element == fc::DESCRIBED {
            pos = within(pos, walk_value(buf, pos, depth + 1, texts)?)?;
            element = *buf.get(pos).ok_or(pos)?;
            pos += 1;
        }
        if fc::fixed_width(element) == Some(0) {
            return within(pos, pos).map(|_| end);
        }
        for _ in 0..count {
            pos = within(pos, walk_body(buf, element, pos, depth + 1, texts)?)?;
        }
    } else {
        for _ in 0..count {
            pos = within(pos, walk_value(buf, pos, depth + 1, texts)?)?;
        }
    }
    if pos == end {
        Ok(end)
    } else {
        Err(pos)
    }
}

/// Masks what [`mask_plain_responses`] and [`mask_text_tokens`] find.
fn mask_tokens(buf: &mut [u8]) -> bool {
    let plain = mask_plain_responses(buf);
    mask_text_tokens(buf) | plain
}

/// Masks the tokens text carries: what [`mask_sas_signatures`], [`mask_shared_keys`] and
/// [`mask_jwt_signatures`] find.
fn mask_text_tokens(buf: &mut [u8]) -> bool {
    let sas = mask_sas_signatures(buf);
    let keys = mask_shared_keys(buf);
    mask_jwt_signatures(buf) | sas | keys
}

/// What names the key in an Azure connection string (in any case).
const SHARED_ACCESS_KEY: &[u8] = b"SharedAccessKey";

/// Masks the key of every Azure connection string found in `buf` (`SharedAccessKey=`, in
/// any case and with spaces around the `=`, up to the next `;`, quote or byte that is not
/// printable): the key signs any token.
fn mask_shared_keys(buf: &mut [u8]) -> bool {
    let mut masked = false;
    let mut i = 0;
    while let Some(p) = find_ignoring_case(&buf[i..], SHARED_ACCESS_KEY) {
        let mut at = i + p + SHARED_ACCESS_KEY.len();
        i = at;
        let spaces = |from: usize| from + buf[from..].iter().take_while(|b| **b == b' ').count();
        at = spaces(at);
        if buf.get(at) != Some(&b'=') {
            continue;
        }
        let start = spaces(at + 1);
        let end = buf[start..]
            .iter()
            .position(|b| !b.is_ascii_graphic() || matches!(b, b';' | b'"' | b'\''))
            .map_or(buf.len(), |e| start + e);
        masked |= fill_stars(&mut buf[start..end]);
        i = end.max(i);
    }
    masked
}

/// Masks what follows each `mark` in `buf`, up to the first byte that `ends` it (or the
/// end of `buf`). Whether it masked anything not masked already.
fn mask_after(buf: &mut [u8], mark: &[u8], ends: impl Fn(u8) -> bool) -> bool {
    let mut masked = false;
    let mut i = 0;
    while let Some(p) = find(&buf[i..], mark) {
        let start = i + p + mark.len();
        let end = buf[start..].iter().position(|b| ends(*b)).map_or(buf.len(), |e| start + e);
        masked |= buf[start..end].iter().any(|b| *b != b'*');
        buf[start..end].fill(b'*');
        i = end;
    }
    masked
}

/// Where the password of a SASL PLAIN initial response sits in the frame, when there is
/// one (not empty).
fn plain_password(raw: &crate::frame::RawFrame) -> Option<std::ops::Range<usize>> {
    let Ok(Frame { body: FrameBody::Sasl(crate::types::SaslFrameBody::Init(init)), .. }) =
        raw.decode(DecodeOptions::LENIENT)
    else {
        return None;
    };
    if !init.mechanism.as_str().eq_ignore_ascii_case("PLAIN") {
        return None;
    }
    // The response shares the frame's storage; find where it sits (an empty response is
    // not a slice of the frame, and has nothing to mask).
    let resp = init.initial_response.as_ref()?;
    let start = crate::codec::offset_within(&raw.bytes, resp)?;
    let secret = plain_secret(resp);
    let password = start + secret.start..start + secret.end;
    (!password.is_empty()).then_some(password)
}

/// Where the secret of a PLAIN response is: the password after its second NUL (authzid
/// NUL authcid NUL passwd, RFC 4616); in a response that is not of that shape, all after
/// its only NUL, or all of it (a careless client may send the password alone).
fn plain_secret(resp: &[u8]) -> std::ops::Range<usize> {
    let mut nuls = resp.iter().enumerate().filter(|(_, b)| **b == 0).map(|(i, _)| i + 1);
    let first = nuls.next();
    nuls.next().or(first).unwrap_or(0)..resp.len()
}

/// Replaces `bytes` with `*`: whether any was not one already.
fn fill_stars(bytes: &mut [u8]) -> bool {
    let masked = bytes.iter().any(|b| *b != b'*');
    bytes.fill(b'*');
    masked
}

/// Masks every text (binary, string, symbol) in the values of `buf`, and all of `buf`
/// from where it stops being values.
fn mask_all_texts(buf: &mut [u8]) -> bool {
    let mut texts = Vec::new();
    let walked = walk_values(buf, &mut texts);
    let mut masked = false;
    for t in texts {
        masked |= fill_stars(&mut buf[t]);
    }
    if let Err(stop) = walked {
        masked |= fill_stars(&mut buf[stop..]);
    }
    masked
}

/// Masks credentials in bytes that do not split into frames (after a framing error, or
/// an item the stream ends inside): the `sig=` of SAS tokens, the password of a SASL
/// PLAIN initial response, as far as either is there, and the values of HTTP
/// `Authorization`, `Proxy-Authorization` and `Cookie` headers (a WebSocket or HTTP
/// client that reached an AMQP port). With no frame to decode, a PLAIN response is found
/// by its mechanism symbol (sym8 or sym32) followed by a binary: in a stream cut short,
/// the password runs to the end of what there is. Returns whether it masked anything.
fn mask_undecoded(buf: &mut [u8]) -> bool {
    let mut masked = mask_tokens(buf);
    for header in [&b"\nauthorization:"[..], b"\nproxy-authorization:", b"\ncookie:"] {
        let mut i = 0;
        while let Some(p) =
            buf[i..].windows(header.len()).position(|w| w.eq_ignore_ascii_case(header))
        {
            let value = i + p + header.len();
            let end = buf[value..]
                .iter()
                .position(|b| *b == b'\r' || *b == b'\n')
                .map_or(buf.len(), |e| value + e);
            for b in buf[value..end].iter_mut().skip_while(|b| **b == b' ') {
                *b = b'*';
                masked = true;
            }
            i = end;
        }
    }
    masked
}

/// The password of every SASL PLAIN initial response in `buf`, found by its shape with no
/// frame decoded: the mechanism `PLAIN`, in any case (a symbol, or a string as a careless
/// peer writes it: sym8, sym32, str8, str32) followed by the response. In a binary (vbin8
/// or vbin32, or a str8 or str32 in its place), what [`plain_secret`] says is masked, up
/// to the response's end or, in bytes cut short, to what there is; a response written as
/// any other value (described, a list, an array) has all of its texts masked, and all
/// that follows when it is not a whole value.
fn mask_plain_responses(buf: &mut [u8]) -> bool {
    let mut masked = false;
    let mut i = 0;
    while let Some(p) = find_ignoring_case(&buf[i..], b"PLAIN") {
        let name = i + p;
        let at = name + 5;
        i = at;
        let short = name >= 2 && matches!(buf[name - 2..name], [fc::SYM8 | fc::STR8, 5]);
        let long = name >= 5 && matches!(buf[name - 5..name], [fc::SYM32 | fc::STR32, 0, 0, 0, 5]);
        if !short && !long {
            continue;
        }
        let (start, len) = match buf.get(at) {
            Some(&(fc::VBIN8 | fc::STR8)) => (at + 2, buf.get(at + 1).map(|n| usize::from(*n))),
            Some(&(fc::VBIN32 | fc::STR32)) => (
                at + 5,
                buf.get(at + 1..at + 5)
                    .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize),
            ),
            Some(&(fc::DESCRIBED | fc::LIST8 | fc::LIST32 | fc::ARRAY8 | fc::ARRAY32))
            | Some(&(fc::MAP8 | fc::MAP32)) => {
                let mut texts = Vec::new();
                let walked = walk_value(buf, at, 0, &mut texts);
                for t in texts {
                    masked |= fill_stars(&mut buf[t]);
                }
                match walked {
                    Ok(end) => i = end,
                    Err(stop) => {
                        masked |= fill_stars(&mut buf[stop.max(at + 1)..]);
                        i = buf.len();
                    }
                }
                continue;
            }
            _ => continue,
        };
        let Some(len) = len else { continue };
        let end = start.saturating_add(len).min(buf.len());
        let Some(response) = buf.get_mut(start..end) else { continue };
        let secret = plain_secret(response);
        masked |= fill_stars(&mut response[secret]);
        i = end.max(at);
    }
    masked
}

/// What starts a JSON Web Token: the base64url of `{"` (its header, RFC 7519), as in the
/// `jwt` tokens of claims-based security with Microsoft Entra ID.
const JWT: &[u8] = b"eyJ";

/// Masks the signature (the third part) of every JSON Web Token found in `buf`: three
/// runs of base64url characters joined by dots, the first starting `eyJ`. The header and
/// the claims stay readable, as a SAS token's fields do.
fn mask_jwt_signatures(buf: &mut [u8]) -> bool {
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let mut masked = false;
    let mut i = 0;
    while let Some(p) = find(&buf[i..], JWT) {
        let start = i + p;
        i = start + JWT.len();
        // Not inside a longer run of base64url characters.
        if start > 0 && b64(&buf[start - 1]) {
            continue;
        }
        let run = |from: usize| buf[from..].iter().take_while(|b| b64(b)).count();
        let header = start + run(start);
        if buf.get(header) != Some(&b'.') {
            continue;
        }
        let claims = header + 1 + run(header + 1);
        if claims == header + 1 || buf.get(claims) != Some(&b'.') {
            continue;
        }
        let signature = claims + 1;
        // (A signature already masked in part, by a transfer that held its start, goes
        // on after its stars.)
        let end = signature + buf[signature..].iter().take_while(|b| b64(b) || **b == b'*').count();
        masked |= buf[signature..end].iter().any(|b| *b != b'*');
        buf[signature..end].fill(b'*');
        i = end.max(i);
    }
    masked
}

/// Masks the credentials an HTTP request line can carry in its target (the line of a
/// WebSocket upgrade: `GET /$servicebus/websocket?authorization=… HTTP/1.1`): the
/// password of an absolute target's user information, and the value of each query
/// parameter whose name says it is a credential (a signature, token, key, password,
/// secret, code or authorization) or whose value, percent-decoded, holds a SAS token, a
/// connection string's key or a JSON Web Token. Each masked byte becomes `*`, so the line
/// keeps its length; names and other parameters are kept. Whether it masked anything.
pub(crate) fn mask_request_line(line: &mut String) -> bool {
    let mut b = std::mem::take(line).into_bytes();
    // METHOD SP request-target SP HTTP-version (RFC 9112, 3).
    let start = b.iter().position(|c| *c == b' ').map_or(b.len(), |p| p + 1);
    let end = b.iter().rposition(|c| *c == b' ').filter(|e| *e >= start).unwrap_or(b.len());
    let target = &mut b[start..end];
    let stop = |c: &u8| matches!(c, b'/' | b'?' | b'#');
    let mut masked = false;
    // An absolute target's authority: user:password@host.
    if let Some(p) = find(target, b"://") {
        let authority = p + 3;
        let len = target[authority..].iter().position(stop).unwrap_or(target.len() - authority);
        let auth = &mut target[authority..authority + len];
        if let Some(at) = auth.iter().rposition(|c| *c == b'@') {
            if let Some(colon) = auth[..at].iter().position(|c| *c == b':') {
                masked |= colon + 1 < at;
                auth[colon + 1..at].fill(b'*');
            }
        }
    }
    if let Some(q) = target.iter().position(|c| *c == b'?') {
        let end = target.iter().position(|c| *c == b'#').filter(|h| *h > q).unwrap_or(target.len());
        let query = &mut target[q + 1..end];
        let mut i = 0;
        while i < query.len() {
            let rest = query.len() - i;
            let len = query[i..].iter().position(|c| matches!(c, b'&' | b';')).unwrap_or(rest);
            let param = &mut query[i..i + len];
            i += param.len() + 1;
            // name=value, or a value alone (a token given as the whole parameter).
            let eq = param.iter().position(|c| *c == b'=');
            let from = eq.map_or(0, |e| e + 1);
            let name = percent_decoded(&param[..eq.unwrap_or(0)]).to_ascii_lowercase();
            // Decoded as often as it was encoded (a token in a URL in a URL).
            let mut value = percent_decoded(&param[from..]);
            for _ in 0..3 {
                if !value.contains(&b'%') {
                    break;
                }
                value = percent_decoded(&value);
            }
            if secret_name(&name) || mask_text_tokens(&mut value) {
                masked |= param.len() > from;
                param[from..].fill(b'*');
            }
        }
    }
    // What is not in a parameter: a token written as it is.
    masked |= mask_text_tokens(&mut b);
    *line = String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into());
    masked
}

/// Whether a query parameter's name (percent-decoded, in lower case) says its value is a
/// credential: a signature, token, key (not a key's name), password, secret,
/// authorization, code, credential, bearer token, JSON Web Token or session.
fn secret_name(name: &[u8]) -> bool {
    const PARTS: [&str; 12] = [
        "sig",
        "token",
        "key",
        "pass",
        "pwd",
        "secret",
        "auth",
        "code",
        "credential",
        "bearer",
        "jwt",
        "session",
    ];
    let key_name = [&b"keyname"[..], b"key_name", b"key-name"].iter().any(|k| name.ends_with(k));
    matches!(name, b"pw" | b"sid" | b"sas")
        || (!key_name && PARTS.iter().any(|w| find(name, w.as_bytes()).is_some()))
}

/// Masks the credentials a `Sec-WebSocket-Protocol` header can carry, since a browser's
/// WebSocket cannot send an `Authorization` header: a subprotocol that follows one named
/// as a token's (`access_token, <token>`), a Kubernetes bearer token
/// (`base64url.bearer.authorization.k8s.io.<token>`), and what text tokens hold (a JSON
/// Web Token's signature). Each masked byte becomes `*`. Whether it masked anything.
pub(crate) fn mask_subprotocols(value: &mut String) -> bool {
    const K8S: &[u8] = b"bearer.authorization.k8s.io.";
    let mut b = std::mem::take(value).into_bytes();
    let mut masked = false;
    let mut previous_names_a_token = false;
    let mut i = 0;
    while i < b.len() {
        let len = b[i..].iter().position(|c| *c == b',').unwrap_or(b.len() - i);
        let item = &mut b[i..i + len];
        i += len + 1;
        let start = item.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let end = item.len() - item.iter().rev().take_while(|c| c.is_ascii_whitespace()).count();
        let item = &mut item[start..end.max(start)];
        let lower = item.to_ascii_lowercase();
        if previous_names_a_token && !item.is_empty() {
            masked = true;
            item.fill(b'*');
        } else if let Some(p) = find(&lower, K8S) {
            masked |= p + K8S.len() < item.len();
            item[p + K8S.len()..].fill(b'*');
        }
        previous_names_a_token = matches!(
            &lower[..],
            b"access_token" | b"token" | b"bearer" | b"authorization" | b"jwt"
        );
    }
    masked |= mask_text_tokens(&mut b);
    *value = String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into());
    masked
}

/// `text` with its `%XX` escapes and `+` decoded (form encoding); a `%` not followed by
/// two hex digits is kept as it is.
fn percent_decoded(text: &[u8]) -> Vec<u8> {
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let escaped = match text[i..] {
            [b'%', h, l, ..] => hex(h).zip(hex(l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match escaped {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(if text[i] == b'+' { b' ' } else { text[i] });
                i += 1;
            }
        }
    }
    out
}

/// What starts an Azure SAS token.
const SAS_TOKEN: &[u8] = b"SharedAccessSignature ";

/// Masks the value of `sig=` in every `SharedAccessSignature` token found in `buf`.
fn mask_sas_signatures(buf: &mut [u8]) -> bool {
    let mut masked = false;
    let mut i = 0;
    while let Some(p) = find_ignoring_case(&buf[i..], SAS_TOKEN) {
        let start = i + p + SAS_TOKEN.len();
        // The token runs while its bytes are printable and not a quote.
        let end = buf[start..]
            .iter()
            .position(|b| !b.is_ascii_graphic() || *b == b'"')
            .map_or(buf.len(), |e| start + e);
        masked |= mask_after(&mut buf[start..end], b"sig=", |b| b == b'&');
        i = end.max(start);
    }
    masked
}

/// Where `needle` (not empty) first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    // The first byte alone rules out most positions, without comparing slices.
    hay.windows(needle.len()).position(|w| w[0] == needle[0] && w == needle)
}

/// Where `needle` (not empty) first occurs in `hay`, ASCII letters in any case.
fn find_ignoring_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0].to_ascii_lowercase();
    hay.windows(needle.len())
        .position(|w| w[0].to_ascii_lowercase() == first && w.eq_ignore_ascii_case(needle))
}

/// Annotates the value at the reader's position. `fields` names the elements when the
/// value is the list of a known composite.
pub fn annotate(
    r: &mut Reader<'_>,
    label: impl Into<Cow<'static, str>>,
    fields: Option<&'static [&'static str]>,
) -> Result<Node, DecodeError> {
    annotate_value(r, label.into(), fields).map(|(node, _)| node).map_err(|p| p.error)
}

/// [`annotate`], giving with the error what was annotated before it: the compounds and
/// described values the fault is inside, each with the nodes read before it (summary
/// `cut short`), so that everything decodable is still shown. `None` when the fault is the
/// value's own first bytes.
pub fn annotate_partial(
    r: &mut Reader<'_>,
    label: impl Into<Cow<'static, str>>,
    fields: Option<&'static [&'static str]>,
) -> Result<Node, (DecodeError, Option<Node>)> {
    annotate_value(r, label.into(), fields).map(|(node, _)| node).map_err(|p| (p.error, p.node))
}

/// A value that did not annotate whole: why, and what of it did.
struct Cut {
    error: DecodeError,
    node: Option<Node>,
}

impl From<DecodeError> for Cut {
    fn from(error: DecodeError) -> Self {
        Self { error, node: None }
    }
}

/// [`annotate`], also giving back the value of a primitive read without deviation (what a
/// strict decode of its bytes gives), from which a descriptor's code and a field's meaning
/// come without decoding it again.
///
/// Labels and summaries that are the same for every value (field names, `null`…) are
/// borrowed, not allocated: a frame has a node per value.
fn annotate_value(
    r: &mut Reader<'_>,
    label: Cow<'static, str>,
    fields: Option<&'static [&'static str]>,
) -> Result<(Node, Option<Value>), Cut> {
    let start = r.position();
    let offset = r.offset();
    let code = r.read_u8()?;
    let mut primitive = None;
    // A compound or described value whose reading met a fault at `at`: itself, cut short,
    // with the nodes read before the fault and what the faulty one gave.
    let cut = |at: usize, head: usize, encoding: &'static str, mut children: Vec<Node>, p: Cut| {
        children.extend(p.node);
        let summary = Cow::Borrowed("cut short (see the error)");
        let node = Node {
            offset,
            len: at - start,
            head,
            label: label.clone(),
            encoding,
            summary,
            children,
        };
        Cut { error: p.error, node: Some(node) }
    };
    let (head, encoding, summary, children) = match code {
        fc::DESCRIBED => {
            r.enter()?;
            let (mut descriptor, dval) = match annotate_value(r, Cow::Borrowed("descriptor"), None)
            {
                Ok(d) => d,
                Err(p) => return Err(cut(r.position(), 1, "described", Vec::new(), p)),
            };
            let known = match &dval {
                Some(Value::Ulong(c, _)) => Some(*c),
                Some(Value::Symbol(s, _)) => crate::types::code_for_symbol(s),
                _ => None,
            };
            let named = known.and_then(|c| name_for_code(c).map(|n| (c, n)));
            if let Some((c, n)) = named {
                // 0x{c:016x} = {n}
                let mut s = String::with_capacity(21 + n.len());
                push_hex(&mut s, c, 16);
                s.push_str(" = ");
                s.push_str(n);
                descriptor.summary = s.into();
            }
            let value = annotate_value(
                r,
                Cow::Borrowed(named.map_or("value", |(_, n)| n)),
                known.and_then(fields_for_code),
            );
            let (value, _) = match value {
                Ok(v) => v,
                Err(p) => {
                    let mut c = cut(r.position(), 1, "described", vec![descriptor], p);
                    if let (Some(node), Some((_, n))) = (c.node.as_mut(), named) {
                        node.summary = Cow::Owned(format!("{n}, cut short (see the error)"));
                    }
                    return Err(c);
                }
            };
            r.leave();
            let summary = match named {
                Some((c, n)) => {
                    // {n} (0x{c:02x})
                    let mut s = String::with_capacity(n.len() + 24);
                    s.push_str(n);
                    s.push_str(" (");
                    push_hex(&mut s, c, 2);
                    s.push(')');
                    Cow::Owned(s)
                }
                None => Cow::Owned(format!("described, descriptor {}", descriptor.summary)),
            };
            (1, "described", summary, vec![descriptor, value])
        }
        fc::LIST0 | fc::LIST8 | fc::LIST32 | fc::MAP8 | fc::MAP32 => {
            r.enter()?;
            let (count, c) = r.open_compound(code)?;
            let head = r.position() - start;
            let mut children = Vec::with_capacity(count as usize);
            let is_map = matches!(code, fc::MAP8 | fc::MAP32);
            let map_start = c.start;
            let mut keys = Vec::new();
            let mut i = 0;
            let encoding = fc::name(code).unwrap_or("?");
            while i < count {
                if is_map {
                    let kpos = r.position();
                    let k = match annotate_value(r, Cow::Borrowed("key"), None) {
                        Ok((k, _)) => k,
                        Err(p) => return Err(cut(r.position(), head, encoding, children, p)),
                    };
                    keys.push((kpos, r.position()));
                    let v = annotate_value(r, k.summary.clone(), None);
                    children.push(k);
                    match v {
                        Ok((v, _)) => children.push(v),
                        Err(p) => return Err(cut(r.position(), head, encoding, children, p)),
                    }
                    i += 2;
                } else {
                    let l = fields
                        .and_then(|f| f.get(i as usize))
                        .map_or_else(|| index_label(i), |n| Cow::Borrowed(*n));
                    let (mut child, value) = match annotate_value(r, l, None) {
                        Ok(c) => c,
                        Err(p) => return Err(cut(r.position(), head, encoding, children, p)),
                    };
                    if fields.is_some() {
                        if let Some(m) = value.and_then(|v| meaning(&child.label, &v)) {
                            let s = child.summary.to_mut();
                            s.push_str(" (");
                            s.push_str(m);
                            s.push(')');
                        }
                    }
                    children.push(child);
                    i += 1;
                }
            }
            let closed = r.close_compound(c, fc::name(code).unwrap_or("compound")).and_then(|()| {
                r.leave();
                r.check_distinct_keys(map_start, &keys)
            });
            if let Err(e) = closed {
                return Err(cut(r.position(), head, encoding, children, e.into()));
            }
            let summary = match (is_map, count) {
                (true, 2) => Cow::Borrowed("1 entry"),
                (true, _) => counted(count / 2, " entries"),
                (false, 1) => Cow::Borrowed("1 element"),
                (false, _) => counted(count, " elements"),
            };
            (head, fc::name(code).unwrap_or("?"), summary, children)
        }
        fc::ARRAY8 | fc::ARRAY32 => {
            // Decode it whole (checks, limits) then annotate elements by re-reading.
            r.enter()?;
            let (count, c) = r.open_compound(code)?;
            let mut elem = r.read_u8()?;
            let mut children = Vec::new();
            let encoding = fc::name(code).unwrap_or("?");
            if elem == fc::DESCRIBED {
                match annotate_value(r, Cow::Borrowed("descriptor"), None) {
                    Ok((d, _)) => children.push(d),
                    Err(p) => {
                        return Err(cut(r.position(), r.position() - start, encoding, children, p))
                    }
                }
                elem = r.read_u8()?;
            }
            let head = r.position() - start;
            if let Err(e) = crate::codec::check_array_count(r, &c, elem, count) {
                return Err(cut(r.position(), head, encoding, children, e.into()));
            }
            for i in 0..count {
                let epos = r.position();
                let eoff = r.offset();
                let v = match Value::read_body(r, elem, epos) {
                    Ok(v) => v,
                    Err(e) => return Err(cut(r.position(), head, encoding, children, e.into())),
                };
                children.push(Node {
                    offset: eoff,
                    len: r.position() - epos,
                    head: r.position() - epos,
                    label: index_label(i),
                    encoding: fc::name(elem).unwrap_or("?"),
                    summary: summary(&v),
                    children: Vec::new(),
                });
            }
            if let Err(e) = r.close_compound(c, fc::name(code).unwrap_or("array")) {
                return Err(cut(r.position(), head, encoding, children, e.into()));
            }
            r.leave();
            let summary = Cow::Owned(format!("{count} × {}", fc::name(elem).unwrap_or("?")));
            (head, fc::name(code).unwrap_or("?"), summary, children)
        }
        _ => {
            let warnings = r.warnings().len();
            let v = Value::read_body(r, code, start)?;
            let summary = summary(&v);
            // Read without deviation, it is what a strict decode of its bytes gives (a
            // boolean byte of 2 reads as true here, but is no boolean to a strict reader).
            if r.warnings().len() == warnings {
                primitive = Some(v);
            }
            (r.position() - start, fc::name(code).unwrap_or("?"), summary, Vec::new())
        }
    };
    let node = Node { offset, len: r.position() - start, head, label, encoding, summary, children };
    Ok((node, primitive))
}

/// Appends `0x` and the lower-case hex digits of `x`, at least `digits` (at most 16) of
/// them: what `format!("0x{x:0digits$x}")` gives, without the formatting machinery.
fn push_hex(s: &mut String, x: u64, digits: usize) {
    let significant = 16 - x.leading_zeros() as usize / 4;
    s.push_str("0x");
    for i in (0..significant.max(digits)).rev() {
        s.push(char::from(HEX_DIGITS[(x >> (4 * i)) as usize & 0xf]));
    }
}

/// The digits of lower-case hex.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// [`render`], borrowed where the rendering is always the same. There is a summary per
/// value: the common ones (integers, symbols, binaries) are written without the
/// formatting machinery.
fn summary(v: &Value) -> Cow<'static, str> {
    match v {
        Value::Null => Cow::Borrowed("null"),
        Value::Boolean(true, _) => Cow::Borrowed("true"),
        Value::Boolean(false, _) => Cow::Borrowed("false"),
        Value::Ubyte(x) => decimal(false, (*x).into()),
        Value::Ushort(x) => decimal(false, (*x).into()),
        Value::Uint(x, _) => decimal(false, (*x).into()),
        Value::Ulong(x, _) => decimal(false, *x),
        Value::Byte(x) => decimal(*x < 0, x.unsigned_abs().into()),
        Value::Short(x) => decimal(*x < 0, x.unsigned_abs().into()),
        Value::Int(x, _) => decimal(*x < 0, x.unsigned_abs().into()),
        Value::Long(x, _) => decimal(*x < 0, x.unsigned_abs()),
        Value::Symbol(s, _) => {
            let mut out = String::with_capacity(1 + s.as_str().len());
            out.push(':');
            let _ = crate::codec::write_shown(&mut out, s.as_str());
            Cow::Owned(out)
        }
        Value::Binary(b, _) => match std::str::from_utf8(b) {
            // Text in a binary (JSON telemetry, tags like "2044") reads better as text.
            Ok(t) if !t.is_empty() && !t.chars().any(|c| c.is_control() && c != '\n') => {
                let mut out = String::with_capacity(t.len() + 20);
                push_quoted(&mut out, t);
                out.push_str(" (");
                push_decimal(&mut out, b.len() as u64);
                out.push_str(if b.len() == 1 { " byte)" } else { " bytes)" });
                Cow::Owned(out)
            }
            _ => {
                let mut out = String::with_capacity(2 + 2 * b.len());
                out.push_str("0x");
                push_hex_bytes(&mut out, b);
                Cow::Owned(out)
            }
        },
        Value::String(s, _) => {
            let mut out = String::with_capacity(s.len() + 2);
            push_quoted(&mut out, s);
            Cow::Owned(out)
        }
        _ => Cow::Owned(render(v)),
    }
}

/// Appends `s` quoted and escaped as `format!("{s:?}")` writes it. Text of printable
/// ASCII (with line breaks and tabs) is escaped here, a byte at a time; anything else
/// goes through `Debug`, which knows which characters of Unicode are printable.
fn push_quoted(out: &mut String, s: &str) {
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b) || matches!(b, b'\n' | b'\r' | b'\t')) {
        let _ = write!(out, "{s:?}");
        return;
    }
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        out.push_str(escaped);
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// An integer in decimal, `-` first when `negative`: `x.to_string()`. A single digit is
/// borrowed.
fn decimal(negative: bool, x: u64) -> Cow<'static, str> {
    const DIGITS: &str = "0123456789";
    if !negative && x < 10 {
        let x = x as usize;
        return Cow::Borrowed(&DIGITS[x..x + 1]);
    }
    let mut s = String::with_capacity(usize::from(negative) + 20);
    if negative {
        s.push('-');
    }
    push_decimal(&mut s, x);
    Cow::Owned(s)
}

/// A float as `Display` writes it (`1`, `0.5`, `1000000000000000000000`, `-0`, `NaN`,
/// `inf`), from `shortest`: `x`'s shortest digits that read back as it, as `zmij` writes
/// them (`1.0`, `1e21`), which are the digits `Display` chooses. Core's own float
/// formatting would add about 13 KB to the browser module.
pub(crate) fn float_text(x: f64, shortest: &str) -> Cow<'static, str> {
    if x.is_nan() {
        return Cow::Borrowed("NaN");
    }
    if x.is_infinite() {
        return Cow::Borrowed(if x > 0.0 { "inf" } else { "-inf" });
    }
    let (negative, s) = match shortest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shortest),
    };
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = [whole, fraction].concat();
    // The digits without leading or trailing zeros, and where the point falls in them.
    let lead = all.bytes().take_while(|&b| b == b'0').count();
    let digits = all[lead..].trim_end_matches('0');
    let point = whole.len() as i64 - lead as i64 + i64::from(exponent);
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    let zeros = |out: &mut String, n: i64| (0..n).for_each(|_| out.push('0'));
    if digits.is_empty() {
        out.push('0');
    } else if point <= 0 {
        out.push_str("0.");
        zeros(&mut out, -point);
        out.push_str(digits);
    } else if point >= digits.len() as i64 {
        out.push_str(digits);
        zeros(&mut out, point - digits.len() as i64);
    } else {
        let (a, b) = digits.split_at(point as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    }
    Cow::Owned(out)
}

/// A double as `Display` writes it (see [`float_text`]).
pub(crate) fn f64_text(x: f64) -> Cow<'static, str> {
    float_text(x, zmij::Buffer::new().format_finite(x))
}

/// `n` then `what` (` elements`): `format!("{n}{what}")`.
fn counted(n: u32, what: &str) -> Cow<'static, str> {
    let mut s = String::with_capacity(10 + what.len());
    push_decimal(&mut s, n.into());
    s.push_str(what);
    Cow::Owned(s)
}

/// The label `[i]` of an element with no field name.
fn index_label(i: u32) -> Cow<'static, str> {
    let mut s = String::with_capacity(12);
    s.push('[');
    push_decimal(&mut s, i.into());
    s.push(']');
    Cow::Owned(s)
}

/// Appends the decimal digits of `x`, without the formatting machinery.
pub(crate) fn push_decimal(out: &mut String, mut x: u64) {
    let mut digits = [0u8; 20];
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    // A character at a time: checking a few digits as UTF-8 costs more.
    for &d in &digits[first..] {
        out.push(char::from(d));
    }
}

/// Appends the lower-case hex of `b`.
fn push_hex_bytes(out: &mut String, b: &[u8]) {
    for x in b {
        out.push(char::from(HEX_DIGITS[usize::from(x >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(x & 0xf)]));
    }
}

/// The spec's name for the value of a restricted field (`role: true` is a receiver).
fn meaning(field: &str, v: &Value) -> Option<&'static str> {
    use crate::types::{ReceiverSettleMode, Role, SaslCode, SenderSettleMode, TerminusDurability};
    match (field, v) {
        ("role", Value::Boolean(b, _)) => Role(*b).name(),
        ("snd-settle-mode", Value::Ubyte(x)) => SenderSettleMode(*x).name(),
        ("rcv-settle-mode", Value::Ubyte(x)) => ReceiverSettleMode(*x).name(),
        ("code", Value::Ubyte(x)) => SaslCode(*x).name(),
        ("durable", Value::Uint(x, _)) => TerminusDurability(*x).name(),
        _ => None,
    }
}

/// Renders a value compactly for people: strings quoted, binaries in hex (with their text
/// when printable), timestamps in UTC.
pub fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Boolean(b, _) => b.to_string(),
        Value::Ubyte(x) => x.to_string(),
        Value::Ushort(x) => x.to_string(),
        Value::Uint(x, _) => x.to_string(),
        Value::Ulong(x, _) => x.to_string(),
        Value::Byte(x) => x.to_string(),
        Value::Short(x) => x.to_string(),
        Value::Int(x, _) => x.to_string(),
        Value::Long(x, _) => x.to_string(),
        Value::Float(x) => {
            float_text(f64::from(*x), zmij::Buffer::new().format_finite(*x)).into_owned()
        }
        Value::Double(x) => f64_text(*x).into_owned(),
        Value::Decimal32(b) => format!("decimal32 0x{}", hex(b)),
        Value::Decimal64(b) => format!("decimal64 0x{}", hex(b)),
        Value::Decimal128(b) => format!("decimal128 0x{}", hex(b)),
        Value::Char(c) => format!("{c:?}"),
        Value::Timestamp(t) => format!("{t} ({})", t.0),
        Value::Uuid(u) => u.to_string(),
        Value::Binary(b, _) => match std::str::from_utf8(b) {
            // Text in a binary (JSON telemetry, tags like "2044") reads better as text.
            Ok(t) if !t.is_empty() && !t.chars().any(|c| c.is_control() && c != '\n') => {
                format!("{t:?} ({} byte{})", b.len(), if b.len() == 1 { "" } else { "s" })
            }
            _ => format!("0x{}", hex(b)),
        },
        Value::String(s, _) => format!("{:?}", &**s),
        Value::Symbol(s, _) => format!(":{s}"),
        Value::List(items, _) => {
            format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        Value::Map(pairs, _) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => {
            format!("[{}]", a.items().iter().map(render).collect::<Vec<_>>().join(", "))
        }
        Value::Described(d) => format!("{}:{}", render(&d.descriptor), render(&d.value)),
    }
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(HEX_DIGITS[usize::from(x >> 4)]));
        s.push(char::from(HEX_DIGITS[usize::from(x & 0xf)]));
    }
    s
}

/// Whether `b` is hex text rather than bytes (as `amqpwire decode` takes a file): not
/// empty, and only hex digits and white space (white space alone is hex text of no
/// bytes). A binary AMQP stream never qualifies: it starts with `AMQP` or with a frame
/// size whose first byte is a control character.
pub fn looks_like_hex(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|c| c.is_ascii_hexdigit() || c.is_ascii_whitespace())
}

/// Hex text (white space between digits allowed) to bytes; `Err` names the first
/// character that is not a hex digit, or says the number of digits is odd.
pub fn parse_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    // Characters, not bytes: a stray `é` is named as itself, at its place in the text.
    for (i, c) in String::from_utf8_lossy(text).chars().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let d = c
            .to_digit(16)
            .ok_or_else(|| format!("hex input: {c:?} at character {i} is not a hex digit"))?
            as u8;
        match high.take() {
            None => high = Some(d),
            Some(h) => out.push(h << 4 | d),
        }
    }
    if high.is_some() {
        return Err("hex input: odd number of hex digits".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a framing error, what is pushed later comes as it came, one record per piece
    /// with its stream offset: whole where credentials are shown, counted only where they
    /// are masked (a credential could be cut across two pieces); nothing is held once
    /// handed out, and `finish` hands out what no `next_record` took.
    #[test]
    fn bytes_after_a_framing_error_come_out_as_they_came() {
        // A header, then a frame header with doff 0: the stream breaks off at offset 8.
        let broken = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00";
        for shown in [true, false] {
            let mut i = Inspector::new(DecodeOptions::LENIENT).redact_secrets(!shown);
            i.push(&broken[..12]);
            assert!(matches!(i.next_record(), Some(Record::Header { offset: 0, .. })));
            assert_eq!(i.next_record(), None, "a frame header still coming");
            i.push(&broken[12..]);
            let Some(Record::Error { error, rest, .. }) = i.next_record() else {
                panic!("the framing error")
            };
            assert_eq!((error.offset, &rest[..]), (8, &broken[8..]));
            assert_eq!(i.next_record(), None, "nothing pushed since");
            i.push(b"abc");
            i.push(b"de");
            let bytes = |b: &'static [u8]| shown.then(|| Bytes::from_static(b));
            let want = Record::Undecoded { offset: 16, len: 5, bytes: bytes(b"abcde") };
            assert_eq!(i.next_record(), Some(want));
            assert_eq!(i.next_record(), None);
            i.push(b"f");
            assert_eq!(
                i.finish(),
                Some(Record::Undecoded { offset: 21, len: 1, bytes: bytes(b"f") })
            );
            assert_eq!((i.finish(), i.undecoded.capacity()), (None, 0), "nothing held");
        }
    }

    /// A SASL header and the start of a sasl-init frame with a PLAIN response of user
    /// "u" and password "pw", 29 bytes.
    const SASL_INIT: &[u8] = b"AMQP\x03\x01\x00\x00\x00\x00\x00\x1d\x02\x01\x00\x00\
        \x00\x53\x41\xc0\x10\x03\xa3\x05PLAIN\xa0\x05\x00u\x00pw\x40";

    fn records(bytes: &[u8], redact: bool) -> Vec<Record> {
        let mut i = Inspector::new(DecodeOptions::STRICT).redact_secrets(redact);
        i.push(bytes);
        let mut out: Vec<Record> = std::iter::from_fn(|| i.next_record()).collect();
        out.extend(i.finish());
        out
    }

    /// A frame's bytes (raw) once masked.
    fn masked_raw(frame: &[u8]) -> Vec<u8> {
        match records(frame, true).pop() {
            Some(Record::Frame(f)) => f.raw.to_vec(),
            other => panic!("not a frame: {other:?}"),
        }
    }

    /// A frame (channel 0, frame type `ty`) with body `body`.
    fn frame_of(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut f = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[2, ty, 0, 0]);
        f.extend_from_slice(body);
        f
    }

    /// A PLAIN password is masked however its sasl-init is written: decoded, or found by
    /// its shape where it does not decode as one (a response written as a string, a
    /// mechanism as a string, a sasl-init in an AMQP frame).
    #[test]
    fn a_plain_password_is_masked_however_its_sasl_init_is_written() {
        let init = |mechanism: u8, response: u8| {
            let mut items = vec![mechanism, 5];
            items.extend_from_slice(b"PLAIN");
            items.extend_from_slice(&[response, 13]);
            items.extend_from_slice(b"\0user\0secret!");
            let mut body = vec![0x00, 0x53, 0x41, 0xc0, items.len() as u8 + 1, 2];
            body.extend(items);
            body
        };
        for (ty, mechanism, response) in [
            (1, fc::SYM8, fc::VBIN8),
            (1, fc::SYM8, fc::STR8),
            (1, fc::STR8, fc::VBIN8),
            (0, fc::SYM8, fc::VBIN8),
        ] {
            let raw = masked_raw(&frame_of(ty, &init(mechanism, response)));
            assert!(
                raw.ends_with(b"\0user\0*******"),
                "{ty} {mechanism:#x} {response:#x}: {raw:?}"
            );
        }
    }

    /// What decodes before a fault is still shown: an open whose properties nest past the
    /// depth limit keeps its container-id and hostname in the text tree, and a message
    /// whose amqp-value is cut short keeps its sections and that section's descriptor.
    #[test]
    fn what_decodes_before_a_fault_is_still_shown() {
        let mut nested = vec![0x40];
        for _ in 0..70 {
            nested = [&[0xc0, nested.len() as u8 + 1, 1][..], &nested].concat();
        }
        let mut items = b"\xa1\x01c\xa1\x04host\x40\x40\x40\x40\x40\x40\x40\x00\x53\x01".to_vec();
        items.extend(&nested);
        let mut body = vec![0x00, 0x53, 0x10, 0xd0];
        body.extend(((items.len() + 4) as u32).to_be_bytes());
        body.extend(10u32.to_be_bytes());
        body.extend(items);
        let mut text = String::new();
        for r in records(&frame_of(0, &body), true) {
            render_text(&r, &mut text);
        }
        assert!(
            text.contains("container-id: \"c\"") && text.contains("hostname: \"host\""),
            "{text}"
        );
        assert!(text.contains("open, cut short (see the error)"), "{text}");
        // A transfer whose amqp-value claims 50 bytes and has 3.
        let mut transfer =
            b"\x00\x53\x14\xc0\x0b\x06\x52\x00\x52\x00\xa0\x01\x01\x43\x42\x42".to_vec();
        transfer.extend(b"\x00\x53\x73\xc0\x07\x03\x40\x40\xa1\x02to\x00\x53\x77\xa1\x32abc");
        let mut text = String::new();
        for r in records(&frame_of(0, &transfer), false) {
            render_text(&r, &mut text);
        }
        assert!(text.contains("to: \"to\""), "{text}");
        assert!(text.contains("amqp-value, cut short (see the error)"), "{text}");
        assert!(text.contains("descriptor: 0x0000000000000077 = amqp-value"), "{text}");
    }

    /// Errors and warnings are written in the order of their offsets: a message whose
    /// string at offset 8 is not UTF-8 (a warning) and whose map at 17 is odd (the error)
    /// says the warning first.
    #[test]
    fn errors_and_warnings_come_in_the_order_of_their_offsets() {
        let stream = b"AMQP\x00\x01\x00\x00\
            \x00\x00\x00\x22\x02\x00\x00\x00\x00\x53\x14\xc0\x0f\x0a\x52\x00\x52\x00\
            \xa0\x01\x01\x43\x42\x41\x40\x40\x40\x42\x00\x53\x73\xc0\x08\x03\x00\x00\
            \x00\x29\x02\x00\x00\x00\x00\x53\x14\xc0\x0c\x0a\x52\x00\x40\x40\x43\x42\
            \x42\x40\x40\x40\x42\x40\x40\xa1\x03\xff\xfe\xfd\x00\x53\x77\xc1\x04\x03\x40\x40\x40";
        let mut i = Inspector::new(DecodeOptions::LENIENT);
        i.push(stream);
        let mut text = String::new();
        while let Some(r) = i.next_record() {
            render_text(&r, &mut text);
        }
        let notes: Vec<&str> = text.lines().filter(|l| l.contains("  ! ")).collect();
        assert_eq!(notes.len(), 2, "{text}");
        assert!(notes[0].contains("warning: string is not valid UTF-8"), "{text}");
        assert!(notes[1].contains("message error: map count 3 is odd"), "{text}");
    }

    /// A peer's control characters never reach the text output as they are: a symbol
    /// holding an escape sequence or a newline (which would forge a line of output) is
    /// quoted with escapes, and an error quoting a symbol descriptor is too.
    #[test]
    fn a_symbol_s_control_characters_are_escaped_in_the_text_output() {
        // An open whose offered-capabilities hold "ab ESC[2K c" and "x NEWLINE 99".
        let body = b"\x00\x53\x10\xc0\x1b\x08\xa1\x01c\xa1\x01h\x40\x40\x40\x40\x40\
            \xe0\x0d\x02\xa3\x05ab\x1b[2\x04x\n99";
        let mut text = String::new();
        for r in records(&frame_of(0, body), true) {
            render_text(&r, &mut text);
        }
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains(r#":"ab\u{1b}[2""#) && text.contains(r#":"x\n99""#), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("99")), "{text}");
        // A descriptor symbol quoted in an error.
        let body = b"\x00\xa3\x03a\x1bb\x45";
        let mut text = String::new();
        for r in records(&frame_of(0, body), true) {
            render_text(&r, &mut text);
        }
        assert!(!text.contains('\x1b') && text.contains(r#""a\u{1b}b""#), "{text}");
    }

    /// A PLAIN sasl-init written carelessly still has its secret masked: the mechanism in
    /// lower case, a response with one NUL or none (the password alone), a response
    /// written as a described value or an array.
    #[test]
    fn a_plain_secret_is_masked_in_a_malformed_sasl_init() {
        let init = |mechanism: &[u8], response: &[u8]| {
            let mut items = vec![fc::SYM8, mechanism.len() as u8];
            items.extend_from_slice(mechanism);
            items.extend_from_slice(response);
            let mut body = vec![0x00, 0x53, 0x41, 0xc0, items.len() as u8 + 1, 2];
            body.extend(items);
            frame_of(1, &body)
        };
        let vbin = |b: &[u8]| [&[fc::VBIN8, b.len() as u8][..], b].concat();
        for (mechanism, response, masked) in [
            (&b"plain"[..], vbin(b"\0user\0secret!"), &b"\0user\0*******"[..]),
            (b"PlAiN", vbin(b"user\0secret!"), b"user\0*******"),
            (b"PLAIN", vbin(b"secret!"), b"*******"),
            (b"PLAIN", [&[0x00, 0x53, 0x75][..], &vbin(b"\0u\0secret!")].concat(), b"*********"),
            (b"PLAIN", [&[0xe0, 11, 1, fc::VBIN8, 9][..], b"\0u\0secret!"].concat(), b"*********"),
        ] {
            let raw = masked_raw(&init(mechanism, &response));
            let shown = String::from_utf8_lossy(&raw).into_owned();
            assert!(raw.ends_with(masked), "{mechanism:?}: {shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }

    /// PLAIN credentials sent in the sasl-response that follows a sasl-init with no
    /// initial response are masked as an initial response is; a SCRAM client's responses
    /// (a proof, no password) are not.
    #[test]
    fn plain_credentials_in_a_sasl_response_after_an_empty_init_are_masked() {
        let init = |mechanism: &[u8]| {
            let mut body = vec![0x00, 0x53, 0x41, 0xc0, mechanism.len() as u8 + 3, 1];
            body.extend_from_slice(&[fc::SYM8, mechanism.len() as u8]);
            body.extend_from_slice(mechanism);
            frame_of(1, &body)
        };
        let response = frame_of(1, b"\x00\x53\x43\xc0\x10\x01\xa0\x0d\0user\0secret!");
        let challenge = frame_of(1, b"\x00\x53\x42\xc0\x03\x01\xa0\x00");
        for (mechanism, masked) in [(&b"PLAIN"[..], true), (b"SCRAM-SHA-256", false)] {
            let mut stream = b"AMQP\x03\x01\x00\x00".to_vec();
            stream.extend(init(mechanism));
            stream.extend(&challenge);
            stream.extend(&response);
            let Some(Record::Frame(f)) = records(&stream, true).pop() else { panic!("a frame") };
            let want: &[u8] = if masked { b"\0user\0*******" } else { b"\0user\0secret!" };
            assert!(f.raw.ends_with(want), "{mechanism:?}: {:?}", f.raw);
            assert_eq!(f.redacted, masked);
            // Only the response that answers the empty init: a later one is not masked.
            if masked {
                stream.extend(&response);
                let Some(Record::Frame(f)) = records(&stream, true).pop() else { panic!() };
                assert!(f.raw.ends_with(b"secret!"), "{:?}", f.raw);
            }
        }
    }

    /// A token in a frame's extended header (the peer's to fill, and shown) is masked.
    #[test]
    fn a_token_in_the_extended_header_is_masked() {
        let token = b"SharedAccessSignature sr=h&sig=c2lnbmF0dXJl&se=1";
        let mut f = ((64 + 3) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[16, 0, 0, 0]);
        f.extend_from_slice(token);
        f.resize(64, 0);
        f.extend_from_slice(&[0x00, 0x53, 0x18]);
        let raw = masked_raw(&f);
        assert!(raw.windows(17).any(|w| w == b"sig=************&"), "{:?}", raw);
    }

    /// An Azure connection string's key is masked, its other fields kept.
    #[test]
    fn a_connection_string_s_key_is_masked() {
        let cs = b"HostName=h;SharedAccessKeyName=owner;SharedAccessKey=a2V5;DeviceId=d";
        let mut body = vec![0x00, 0x53, 0x77, 0xa1, cs.len() as u8];
        body.extend_from_slice(cs);
        let raw = masked_raw(&frame_of(0, &body));
        assert!(raw.ends_with(b"SharedAccessKeyName=owner;SharedAccessKey=****;DeviceId=d"));
        // A key that ends its string: masking stops at the string's end, not at the
        // printable bytes after it (nulls, 0x40, are '@'), which the frame still decodes.
        let cs = b"HostName=h;SharedAccessKey=a2V5";
        let mut body = vec![0x00, 0x53, 0x10, 0xc0, cs.len() as u8 + 6, 4, 0xa1, cs.len() as u8];
        body.extend_from_slice(cs);
        body.extend_from_slice(&[0x40, 0x40, 0x40]);
        let raw = masked_raw(&frame_of(0, &body));
        assert!(raw.ends_with(b"SharedAccessKey=****@@@"), "{raw:?}");
        let Some(Record::Frame(f)) = records(&frame_of(0, &body), true).pop() else {
            panic!("a frame")
        };
        assert_eq!(f.performative(), Some("open"), "{:?}", f.frame);
        // The name in any case, spaces around its `=`.
        for cs in
            [&b"HostName=h;sharedaccesskey=a2V5;x=y"[..], b"HostName=h;SHAREDACCESSKEY = a2V5;x=y"]
        {
            let mut body = vec![0x00, 0x53, 0x77, 0xa1, cs.len() as u8];
            body.extend_from_slice(cs);
            let raw = masked_raw(&frame_of(0, &body));
            assert!(raw.ends_with(b"****;x=y"), "{}", String::from_utf8_lossy(&raw));
        }
        // Bytes that are no values (a transfer's later part): scanned whole.
        let mut body = b"...;SharedAccessKey=a2V5".to_vec();
        body.splice(0..0, [0x00, 0x53, 0x14, 0x45]);
        assert!(masked_raw(&frame_of(0, &body)).ends_with(b"SharedAccessKey=****"));
    }

    /// A JSON Web Token (claims-based security's `jwt` tokens) keeps its header and
    /// claims and loses its signature, wherever it is; text that only looks like the
    /// start of one is left alone.
    #[test]
    fn a_json_web_token_s_signature_is_masked() {
        let jwt = b"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodWIifQ.c2lnbmF0dXJlX2J5dGVz";
        let mut body = vec![0x00, 0x53, 0x77, 0xa1, jwt.len() as u8];
        body.extend_from_slice(jwt);
        let raw = masked_raw(&frame_of(0, &body));
        assert!(raw.ends_with(b"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodWIifQ.********************"));
        for text in [&b"eyJust a word. And. more"[..], b"keyJhbG.eyJ.abc", b"eyJa.b"] {
            let mut body = vec![0x00, 0x53, 0x77, 0xa1, text.len() as u8];
            body.extend_from_slice(text);
            assert!(masked_raw(&frame_of(0, &body)).ends_with(text), "{text:?}");
        }
    }

    /// A credential in a message that several transfers carry is masked wherever the
    /// transfers cut it: in each frame's bytes and in the message they make, and in both
    /// modes at once (`inspect_both`) as in one; the frames and the message still decode.
    #[test]
    fn a_credential_cut_across_transfers_is_masked_in_each_of_them() {
        let tokens: [(&[u8], &[u8]); 3] = [
            (
                b"SharedAccessSignature sr=h%2Fdevices%2Fd&sig=U2lnbmF0dXJlQnl0ZXM%3D&se=1700000000",
                b"U2lnbmF0dXJlQnl0ZXM%3D",
            ),
            (b"HostName=h;SharedAccessKey=a2V5a2V5a2V5;DeviceId=d", b"a2V5a2V5a2V5"),
            (b"eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodWIifQ.c2lnbmF0dXJlX2J5dGVz", b"c2lnbmF0dXJlX2J5dGVz"),
        ];
        // The token where it ends a string followed by printable bytes that are values: a
        // properties section's message-id (nulls after it, 0x40, `@`), an amqp-sequence's
        // first element (true after it, 0x41, `A`); and an amqp-value followed by a footer.
        let layouts = |token: &[u8]| -> Vec<Vec<u8>> {
            let n = token.len() as u8;
            let mut properties = vec![0x00, 0x53, 0x73, 0xc0, n + 5, 3, 0xa1, n];
            properties.extend_from_slice(token);
            properties.extend_from_slice(&[0x40, 0x40, 0x00, 0x53, 0x77, 0x43]);
            let mut sequence = vec![0x00, 0x53, 0x76, 0xc0, n + 4, 2, 0xa1, n];
            sequence.extend_from_slice(token);
            sequence.push(0x41);
            let mut value = vec![0x00, 0x53, 0x77, 0xa1, n];
            value.extend_from_slice(token);
            value.extend_from_slice(&[0x00, 0x53, 0x78, 0xc1, 0x01, 0x00]);
            vec![properties, sequence, value]
        };
        for (token, secret) in tokens {
            for message in layouts(token) {
                for pieces in [1, 2, 3, 7] {
                    for first in 1..message.len() {
                        // The message cut at `first`, and the rest in `pieces - 1` parts.
                        if pieces == 1 && first > 1 {
                            continue;
                        }
                        let mut cuts = if pieces == 1 { vec![0] } else { vec![0, first] };
                        let rest = message.len() - first;
                        for k in 1..pieces - 1 {
                            cuts.push(first + rest * k / (pieces - 1));
                        }
                        cuts.push(message.len());
                        cuts.dedup();
                        let mut stream = b"AMQP\x00\x01\x00\x00".to_vec();
                        for (n, w) in cuts.windows(2).enumerate() {
                            let more = w[1] < message.len();
                            // transfer: handle 0, delivery-id 0 and tag on the first, more
                            let mut body = vec![0x00, 0x53, 0x14];
                            if n == 0 {
                                body.extend_from_slice(&[
                                    0xc0, 0x09, 0x06, 0x43, 0x43, 0xa0, 0x01, 0x01, 0x43, 0x40,
                                ]);
                            } else {
                                body.extend_from_slice(&[
                                    0xc0, 0x07, 0x06, 0x43, 0x40, 0x40, 0x40, 0x40,
                                ]);
                            }
                            body.push(if more { 0x41 } else { 0x42 });
                            body.extend_from_slice(&message[w[0]..w[1]]);
                            stream.extend(frame_of(0, &body));
                        }
                        let what = format!("{} cut at {cuts:?}", String::from_utf8_lossy(token));
                        let mut both = Inspector::inspect_both(&stream);
                        let single = records(&stream, true);
                        for (mode, recs) in [
                            ("single", single),
                            ("strict", std::mem::take(&mut both[0])),
                            ("lenient", std::mem::take(&mut both[1])),
                        ] {
                            let frames: Vec<_> = recs
                                .iter()
                                .filter_map(|r| match r {
                                    Record::Frame(f) => Some(f),
                                    _ => None,
                                })
                                .collect();
                            assert_eq!(frames.len(), cuts.len() - 1, "{mode} {what}: {recs:?}");
                            // Each frame's payload, as its bytes show it.
                            let mut shown = Vec::new();
                            for f in &frames {
                                let Ok(Frame { body: FrameBody::Amqp { payload, .. }, .. }) =
                                    &f.frame
                                else {
                                    panic!("{mode} {what}: {:?}", f.frame)
                                };
                                assert!(f.raw.ends_with(payload), "{mode} {what}");
                                shown.extend_from_slice(payload);
                            }
                            let delivery = frames.last().and_then(|f| f.delivery.as_ref());
                            let delivery = delivery.unwrap_or_else(|| panic!("{mode} {what}"));
                            assert!(
                                delivery.message.is_ok(),
                                "{mode} {what}: {:?} {:?}",
                                delivery.message,
                                String::from_utf8_lossy(&delivery.payload)
                            );
                            let payload = &delivery.payload;
                            // The secret is stars in the frames' bytes and in the message, and
                            // nothing else changed; a frame says it masked something.
                            let at = find(&message, secret).expect("the secret is in the message");
                            let mut expected = message.clone();
                            expected[at..at + secret.len()].fill(b'*');
                            assert_eq!(shown, expected, "{mode} {what}");
                            assert!(frames.iter().any(|f| f.redacted), "{mode} {what}");
                            assert_eq!(&payload[..], &expected[..], "{mode} {what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn what_a_stream_breaks_off_inside_is_kept_with_its_credentials_masked() {
        // Whole, the frame decodes and the password is masked in it.
        let whole = records(SASL_INIT, true);
        assert!(matches!(&whole[1], Record::Frame(f) if f.redacted), "{whole:?}");
        // Cut inside the password, and one byte into it: the rest is kept, the
        // password's bytes that are there masked.
        for (cut, masked) in [(SASL_INIT.len() - 2, &b"*"[..]), (SASL_INIT.len() - 1, b"**")] {
            let rs = records(&SASL_INIT[..cut], true);
            let Some(Record::Truncated { offset: 8, rest, redacted: true }) = rs.last() else {
                panic!("{rs:?}");
            };
            assert_eq!(rest.len(), cut - 8);
            assert!(rest.ends_with(&[&[b'u', 0][..], masked].concat()), "{rest:?}");
            let shown = records(&SASL_INIT[..cut], false);
            let Some(Record::Truncated { rest, redacted: false, .. }) = shown.last() else {
                panic!("{shown:?}");
            };
            assert_eq!(rest[..], SASL_INIT[8..cut]);
        }
        // Cut before the second NUL: what follows the first cannot be told from a password
        // sent alone yet, and is masked; cut before the first, nothing is.
        let rs = records(&SASL_INIT[..SASL_INIT.len() - 4], true);
        let Some(Record::Truncated { rest, redacted: true, .. }) = rs.last() else {
            panic!("{rs:?}")
        };
        assert!(rest.ends_with(b"\0*"), "{rest:?}");
        let rs = records(&SASL_INIT[..SASL_INIT.len() - 6], true);
        assert!(matches!(rs.last(), Some(Record::Truncated { redacted: false, .. })), "{rs:?}");
    }

    #[test]
    fn credentials_in_bytes_that_are_not_frames_are_masked() {
        // An HTTP request at an AMQP port: the headers that carry credentials.
        let http = b"GET /$iothub/websocket HTTP/1.1\r\nHost: h\r\nAuthorization: Basic dTpw\r\n\
            cookie: s=1\r\nUpgrade: websocket\r\n\r\n";
        let Some(Record::Error { rest, redacted: true, .. }) = records(http, true).pop() else {
            panic!("not masked");
        };
        let text = String::from_utf8_lossy(&rest);
        assert!(text.contains("Authorization: **********\r\ncookie: ***\r\nUpgrade"), "{text}");
        assert_eq!(rest.len(), http.len());
        // PLAIN named by a sym32, in a frame cut short.
        let mut sym32 = SASL_INIT.to_vec();
        let at = sym32.windows(7).position(|w| w == b"\xa3\x05PLAIN").expect("PLAIN");
        sym32.splice(at..at + 2, [0xb3, 0, 0, 0, 5]);
        sym32[11] += 3;
        sym32[20] += 3;
        let cut = &sym32[..sym32.len() - 1];
        let Some(Record::Truncated { rest, redacted: true, .. }) = records(cut, true).pop() else {
            panic!("not masked: {:?}", records(cut, true));
        };
        assert!(rest.ends_with(b"u\0**"), "{rest:?}");
    }

    /// `text` masked by `mask`, which must keep its length, and whether it said so.
    fn masked_by(mask: fn(&mut String) -> bool, text: &str) -> (String, bool) {
        let mut m = text.to_owned();
        let changed = mask(&mut m);
        assert_eq!(m.len(), text.len(), "{m}");
        (m, changed)
    }

    #[test]
    fn credentials_in_a_request_line_are_masked_and_the_rest_kept() {
        let masked = |line: &str| masked_by(mask_request_line, line);
        // A SAS token percent-encoded in a parameter of any name; api-version kept.
        let sas = "GET /$servicebus/websocket?x=SharedAccessSignature%20sr%3Dhub%26sig%3DAb%252Bc%26se%3D9&api-version=2021 HTTP/1.1";
        let (l, changed) = masked(sas);
        assert!(changed);
        assert_eq!(
            l,
            format!("GET /$servicebus/websocket?x={}&api-version=2021 HTTP/1.1", "*".repeat(58))
        );
        // Parameters named as credentials, whatever their value; a form-encoded token.
        let (l, _) = masked("GET /ws?access_token=abc&sig=x%2By;Key=k&n=1&code=&flag HTTP/1.1");
        assert_eq!(l, "GET /ws?access_token=***&sig=*****;Key=*&n=1&code=&flag HTTP/1.1");
        // A JSON Web Token under another name; a password in an absolute target.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
        let (l, _) = masked(&format!("GET http://u:pw@proxy:80/ws?t2={jwt}#sig=f HTTP/1.1"));
        let stars = "*".repeat(jwt.len());
        assert_eq!(l, format!("GET http://u:**@proxy:80/ws?t2={stars}#sig=f HTTP/1.1"));
        // Nothing to mask: unchanged, and said so.
        let plain = "GET /$iothub/websocket?iothub-no-client-cert=true HTTP/1.1";
        assert_eq!(masked(plain), (plain.to_owned(), false));
        // Malformed lines: no panic, and what is a token is still masked.
        for line in ["", " ", "GET", "GET ?", "GET ?= HTTP/1.1", "GET http://@:", "GET %4 ?a%=%"] {
            masked(line);
        }
        assert!(masked("GET ?q=%E2%82%AC&key=\u{20ac} HTTP/1.1").0.ends_with("key=*** HTTP/1.1"));
        // A token as a whole parameter, and one encoded twice; a key's name is kept.
        let (l, _) = masked("GET /?SharedAccessSignature%20sr%3Dx%26sig%3Dab&n=1 HTTP/1.1");
        assert_eq!(l, format!("GET /?{}&n=1 HTTP/1.1", "*".repeat(41)));
        let twice = "SharedAccessSignature%2520sr%253Dx%2526sig%253Dab";
        let (l, _) = masked(&format!("GET /?t={twice} HTTP/1.1"));
        assert_eq!(l, format!("GET /?t={} HTTP/1.1", "*".repeat(twice.len())));
        let (l, _) = masked("GET /?SharedAccessKeyName=iothubowner&pw=x&sid=y&side=z HTTP/1.1");
        assert_eq!(l, "GET /?SharedAccessKeyName=iothubowner&pw=*&sid=*&side=z HTTP/1.1");
    }

    #[test]
    fn credentials_in_websocket_subprotocols_are_masked() {
        let masked = |v: &str| masked_by(mask_subprotocols, v);
        assert_eq!(masked("AMQPWSB10"), ("AMQPWSB10".into(), false));
        assert_eq!(
            masked("AMQPWSB10, access_token, abc.def").0,
            "AMQPWSB10, access_token, *******"
        );
        assert_eq!(
            masked("base64url.bearer.authorization.k8s.io.dG9rZW4, base64.channel.k8s.io").0,
            "base64url.bearer.authorization.k8s.io.*******, base64.channel.k8s.io"
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
        assert_eq!(
            masked(&format!("chat, {jwt}")).0,
            format!("chat, {}****", &jwt[..jwt.len() - 4])
        );
        for v in ["", ",", " , ,access_token", "access_token,", "token, ,x"] {
            masked(v);
        }
    }

    proptest::proptest! {
        /// Whatever the line (built of the characters that matter to it, and others),
        /// masking keeps it UTF-8 of the same length that differs only by `*`.
        #[test]
        fn masking_a_request_line_only_writes_stars(
            line in "[ ?&;=#@:/%+a-zA-Z0-9.é€]{0,80}(sig=|token=|SharedAccessKey=|eyJ)?[ ?&=%a-z0-9.]{0,20}"
        ) {
            let mut masked = line.clone();
            mask_request_line(&mut masked);
            proptest::prop_assert_eq!(masked.len(), line.len());
            let other = masked.bytes().zip(line.bytes()).any(|(m, l)| m != l && m != b'*');
            proptest::prop_assert!(!other, "{line:?} -> {masked:?}");
        }
    }

    #[test]
    fn after_a_framing_error_the_rest_is_kept_masked_and_later_bytes_are_counted() {
        let token = b"SharedAccessSignature sr=hub&sig=abc%2Bd&se=1";
        let mut stream = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x04\x02\x00\x00\x00".to_vec();
        stream.extend_from_slice(token);
        let mut i = Inspector::new(DecodeOptions::STRICT);
        i.push(&stream);
        assert!(matches!(i.next_record(), Some(Record::Header { .. })));
        let Some(Record::Error { error, rest, redacted: true }) = i.next_record() else {
            panic!("no framing error");
        };
        assert_eq!(error.offset, 8);
        assert_eq!(rest.len(), stream.len() - 8);
        assert!(rest.ends_with(b"sig=*******&se=1"), "{rest:?}");
        // A relay goes on feeding it: masked, what comes is counted, and nothing held.
        for _ in 0..64 {
            i.push(&[0u8; 16 * 1024]);
        }
        assert_eq!((i.decoder.buffered(), i.undecoded.capacity()), (0, 0));
        let more = Record::Undecoded { offset: stream.len() as u64, len: 1 << 20, bytes: None };
        assert_eq!(i.next_record(), Some(more));
        assert!(i.next_record().is_none() && i.finish().is_none());
    }

    #[test]
    fn the_text_shows_the_bytes_a_fatal_error_left_and_says_how_many_more() {
        let mut stream = b"\x00\x00\x00\x04\x02\x00\x00\x00".to_vec();
        stream.extend(0..100u8);
        let mut text = String::new();
        for r in &records(&stream, true) {
            render_text(r, &mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("framing error: frame size 4"), "{text}");
        assert!(lines[1].starts_with("       0  00 00 00 04 02 00 00 00 "), "{text}");
        assert!(lines[1].ends_with("not decoded: 108 bytes"), "{text}");
        assert_eq!(lines[2], "       8  00 01 02 03 04 05 06 07", "{text}");
        assert_eq!(lines.len(), 1 + 8 + 1, "{text}");
        assert!(lines[9].ends_with("… 44 more bytes not shown (the JSON rendering has them all)"));
    }

    #[test]
    fn floats_are_written_as_display_writes_them_but_for_ties() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            0.1 + 0.2,
            1e21,
            1e-7,
            123_456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(f64_text(x), x.to_string(), "{x:?}");
        }
        for x in [0.1_f32, 1e-45, f32::MAX, 16_777_217.0, -3.4e38, f32::NAN] {
            let shown = float_text(f64::from(x), zmij::Buffer::new().format_finite(x));
            assert_eq!(shown, x.to_string(), "{x:?}");
        }
        // A tie between two shortest forms goes to the even digit.
        let tie = f32::from_bits(3_366_274_964); // -338492.625 exactly
        let shown = float_text(f64::from(tie), zmij::Buffer::new().format_finite(tie));
        assert_eq!((shown.as_ref(), tie.to_string().as_str()), ("-338492.62", "-338492.63"));
    }

    /// `ours` reads back as `x`, in as many characters as `Display` takes, and is its text
    /// but for a tie between two shortest forms, which `zmij` settles to the even digit
    /// where `Display` rounds the half up (`-338492.625f32`: `-338492.62`, `-338492.63`).
    fn shortest_like_display<T>(ours: &str, x: T) -> Result<(), String>
    where
        T: std::fmt::Display + std::str::FromStr + PartialEq + Copy,
    {
        let theirs = x.to_string();
        let back = ours.parse::<T>().ok();
        if theirs == "NaN" {
            return if ours == "NaN" { Ok(()) } else { Err(ours.to_owned()) };
        }
        let same_but_last = ours.len() == theirs.len()
            && ours[..ours.len() - 1] == theirs[..theirs.len() - 1]
            && ours.bytes().last().zip(theirs.bytes().last()).is_some_and(|(a, b)| {
                a.is_ascii_digit()
                    && b.is_ascii_digit()
                    && a.abs_diff(b) == 1
                    && (a - b'0') % 2 == 0
            });
        if back == Some(x) && (ours == theirs || same_but_last) {
            Ok(())
        } else {
            Err(format!("{ours} for {theirs}"))
        }
    }

    proptest::proptest! {
        #[test]
        fn every_float_is_written_in_its_shortest_form(bits in proptest::prelude::any::<u64>(), small in proptest::prelude::any::<u32>()) {
            let x = f64::from_bits(bits);
            proptest::prop_assert_eq!(shortest_like_display(&f64_text(x), x), Ok(()));
            let y = f32::from_bits(small);
            let shown = float_text(f64::from(y), zmij::Buffer::new().format_finite(y));
            proptest::prop_assert_eq!(shortest_like_display(&shown, y), Ok(()));
        }
    }

    #[test]
    fn summaries_are_the_renderings() {
        // Every encoding choice of generated values (integers at their limits, symbols,
        // binaries that are text or not), each element of their compounds too.
        fn walk(v: &Value, seen: &mut usize) {
            assert_eq!(summary(v), render(v).as_str(), "{v:?}");
            *seen += 1;
            match v {
                Value::List(items, _) => items.iter().for_each(|i| walk(i, seen)),
                Value::Map(pairs, _) => pairs.iter().for_each(|(k, v)| {
                    walk(k, seen);
                    walk(v, seen);
                }),
                Value::Array(a) => a.items().iter().for_each(|i| walk(i, seen)),
                Value::Described(d) => {
                    walk(&d.descriptor, seen);
                    walk(&d.value, seen);
                }
                _ => {}
            }
        }
        let mut seen = 0;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000 {
            let noise: Vec<u8> = (0..64 + n % 256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut out = Vec::new();
            crate::fuzzing::generate::value(&mut arbitrary::Unstructured::new(&noise), &mut out);
            if let Ok(v) = Value::decode_with(&out, DecodeOptions::LENIENT) {
                walk(&v, &mut seen);
            }
        }
        let texts = [
            "",
            "plain",
            "quote \" and \\ backslash, 'single'",
            "tab\tnew\nline\rreturn",
            "nul\0 escape\u{1b} del\u{7f}",
            "é, 😀, \u{200b}, \u{301}combining",
            "{\"temperature\": 21.5}",
        ];
        for s in texts {
            walk(&Value::String(s.into(), crate::codec::Fmt::Auto), &mut seen);
            walk(
                &Value::Binary(Bytes::copy_from_slice(s.as_bytes()), crate::codec::Fmt::Auto),
                &mut seen,
            );
        }
        for v in [
            Value::Long(i64::MIN, crate::codec::Fmt::Auto),
            Value::Ulong(u64::MAX, crate::codec::Fmt::Auto),
            Value::Byte(-128),
            Value::Int(-7, crate::codec::Fmt::Auto),
            Value::Ubyte(9),
            Value::Ushort(10),
        ] {
            walk(&v, &mut seen);
        }
        assert!(seen > 10_000, "only {seen} values");
        assert_eq!(index_label(12), "[12]");
        assert_eq!(counted(3, " elements"), "3 elements");
    }

    #[test]
    fn inspecting_both_modes_at_once_gives_each_mode_s_records() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut frames = 0;
        let mut differ = 0;
        for dir in [
            "fuzz/corpus/inspect",
            "fuzz/corpus/frames",
            "fuzz/corpus/connection",
            "tests/fixtures/iothub",
            "tests/fixtures/wire",
        ] {
            let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("corpus folder")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            for p in paths {
                let data = std::fs::read(&p).expect("file");
                let [strict, lenient] = Inspector::inspect_both(&data);
                let name = p.display();
                assert_eq!(strict, Inspector::inspect_all(&data, DecodeOptions::STRICT), "{name}");
                assert_eq!(
                    lenient,
                    Inspector::inspect_all(&data, DecodeOptions::LENIENT),
                    "{name}"
                );
                frames += lenient.iter().filter(|r| matches!(r, Record::Frame(_))).count();
                differ += strict.iter().zip(&lenient).filter(|(s, l)| s != l).count();
            }
        }
        // Enough frames to mean something, and seeds where the modes part (few do).
        assert!(frames > 1000 && differ > 0, "{frames} frames, {differ} differing records");
    }
}

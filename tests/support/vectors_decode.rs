//! How amqpwire decodes a conformance vector: the verdict, the error kind, the warnings
//! and the decoded value, for one mode. Shared by the generator (which records them) and
//! the test (which checks the committed files against them).

use amqpwire::codec::{DecodeOptions, ErrorKind, Reader, Value, Warning};
use amqpwire::frame::{FrameDecoder, FrameErrorKind, StreamItem};
use amqpwire::inspect::json::{payload_json, record_json};
use amqpwire::inspect::typed::to_typed;
use amqpwire::inspect::{Inspector, Record};
use amqpwire::message::Message;
use bytes::Bytes;
use serde_json::{Map, Value as Json};

/// What a vector's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Exactly one encoded value (part 1).
    Value,
    /// A bare or annotated message: a sequence of sections (part 3, 3.2).
    Message,
    /// Exactly one frame, header included (part 2, 2.3; part 5, 5.3.1).
    Frame,
}

impl Input {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Message => "message",
            Self::Frame => "frame",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "value" => Self::Value,
            "message" => Self::Message,
            "frame" => Self::Frame,
            _ => return None,
        })
    }
}

/// What amqpwire made of a vector in one mode.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Decoded, with the deviations a lenient decode accepted (kind names) and the value.
    Accept { warnings: Vec<&'static str>, value: Json },
    /// Refused: the error kind's name and the offset where it was found.
    Reject { error: &'static str, offset: usize },
}

impl Outcome {
    pub(crate) fn accepted(&self) -> bool {
        matches!(self, Self::Accept { .. })
    }

    /// The error kind of a reject.
    pub(crate) fn error(&self) -> Option<&'static str> {
        match self {
            Self::Reject { error, .. } => Some(error),
            Self::Accept { .. } => None,
        }
    }
}

/// The stable name of a decoding error kind, as the vectors record it.
pub(crate) fn kind_name(k: &ErrorKind) -> &'static str {
    match k {
        ErrorKind::Truncated { .. } => "truncated",
        ErrorKind::UnknownFormatCode(_) => "unknown-format-code",
        ErrorKind::InvalidBoolean(_) => "invalid-boolean",
        ErrorKind::InvalidUtf8 => "invalid-utf8",
        ErrorKind::InvalidSymbol => "invalid-symbol",
        ErrorKind::InvalidChar(_) => "invalid-char",
        ErrorKind::OddMapCount(_) => "odd-map-count",
        ErrorKind::SizeTooSmall { .. } => "size-too-small",
        ErrorKind::CountExceedsSize { .. } => "count-exceeds-size",
        ErrorKind::TrailingBytes { .. } => "trailing-bytes",
        ErrorKind::DepthLimit(_) => "depth-limit",
        ErrorKind::ArrayTooLong { .. } => "array-too-long",
        ErrorKind::InvalidArrayConstructor(_) => "invalid-array-constructor",
        ErrorKind::UnexpectedType { .. } => "unexpected-type",
        ErrorKind::UnexpectedDescriptor { .. } => "unexpected-descriptor",
        ErrorKind::MissingField { .. } => "missing-field",
        ErrorKind::TooManyFields { .. } => "too-many-fields",
        ErrorKind::InvalidValue { what: "frame type", .. } => "unknown-frame-type",
        ErrorKind::InvalidValue { .. } => "invalid-value",
        ErrorKind::DuplicateKey(_) => "duplicate-key",
        ErrorKind::SectionOrder { .. } => "section-order",
        _ => "other",
    }
}

fn frame_kind_name(k: &FrameErrorKind) -> &'static str {
    match k {
        FrameErrorKind::SizeTooSmall(_) => "frame-size-too-small",
        FrameErrorKind::DoffTooSmall(_) => "doff-too-small",
        FrameErrorKind::DoffBeyondSize { .. } => "doff-beyond-size",
        FrameErrorKind::TooLarge { .. } => "frame-too-large",
        FrameErrorKind::Header(_) => "not-a-frame",
        _ => "other",
    }
}

fn warning_names(w: &[Warning]) -> Vec<&'static str> {
    w.iter().map(|w| kind_name(&w.kind)).collect()
}

/// Decodes `bytes` as `input` with `opts`.
pub(crate) fn decode(input: Input, bytes: &[u8], opts: DecodeOptions) -> Outcome {
    match input {
        Input::Value => {
            let mut r = Reader::new(bytes, opts);
            match Value::read(&mut r) {
                Ok(_) if !r.is_empty() => {
                    Outcome::Reject { error: "trailing-bytes", offset: r.position() }
                }
                Ok(v) => {
                    Outcome::Accept { warnings: warning_names(r.warnings()), value: to_typed(&v) }
                }
                Err(e) => Outcome::Reject { error: kind_name(&e.kind), offset: e.offset },
            }
        }
        Input::Message => {
            let b = Bytes::copy_from_slice(bytes);
            match Message::decode_with(&b, opts) {
                Ok((_, w)) => {
                    Outcome::Accept { warnings: warning_names(&w), value: message_value(bytes) }
                }
                Err(e) => Outcome::Reject { error: kind_name(&e.kind), offset: e.offset },
            }
        }
        Input::Frame => {
            let mut d = FrameDecoder::new(u32::MAX).frames_first();
            d.push(bytes);
            let raw = match d.next_item() {
                Ok(Some(StreamItem::Frame(raw))) => raw,
                Ok(Some(StreamItem::Header { .. })) => {
                    return Outcome::Reject { error: "not-a-frame", offset: 0 }
                }
                Ok(None) => return Outcome::Reject { error: "truncated", offset: 0 },
                Err(e) => {
                    return Outcome::Reject {
                        error: frame_kind_name(&e.kind),
                        offset: e.offset as usize,
                    }
                }
            };
            if d.buffered() > 0 {
                // The bytes after the frame are the start of another that never ends.
                return Outcome::Reject { error: "truncated", offset: raw.bytes.len() };
            }
            match raw.decode_with_warnings(opts) {
                Ok((_, w)) => {
                    Outcome::Accept { warnings: warning_names(&w), value: frame_value(bytes, opts) }
                }
                Err(e) => Outcome::Reject { error: kind_name(&e.kind), offset: e.offset },
            }
        }
    }
}

/// The trace-format `message` object of a message, with its sections in the typed form.
fn message_value(bytes: &[u8]) -> Json {
    let mut r = Reader::new(bytes, DecodeOptions::LENIENT);
    let mut typed = Vec::new();
    while !r.is_empty() {
        match Value::read(&mut r) {
            Ok(v) => typed.push(to_typed(&v)),
            Err(_) => break,
        }
    }
    let mut o = Map::new();
    o.insert("message".into(), payload_json(bytes, None));
    o.insert("typed".into(), Json::Array(typed));
    Json::Object(o)
}

/// The keys of the trace-format frame line that describe the frame itself (not where it
/// lay in a stream, nor a lenient decode's warnings).
const FRAME_KEYS: &[&str] = &[
    "type",
    "channel",
    "size",
    "doff",
    "performative",
    "extended_header",
    "fields",
    "payload_size",
    "typed",
    "payload",
];

/// The trace-format frame line of a frame, reduced to [`FRAME_KEYS`].
fn frame_value(bytes: &[u8], opts: DecodeOptions) -> Json {
    let records = Inspector::inspect_all(bytes, opts);
    let line = records
        .iter()
        .find_map(|r| match r {
            Record::Frame(_) => record_json(r).into_iter().next(),
            _ => None,
        })
        .unwrap_or(Json::Null);
    let mut o = Map::new();
    for k in FRAME_KEYS {
        if let Some(v) = line.get(*k) {
            o.insert((*k).into(), v.clone());
        }
    }
    Json::Object(o)
}

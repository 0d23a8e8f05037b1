//! JSON lines to bytes: the trace format read backwards, malformations included.
//!
//! Each line is one JSON object:
//!
//! - `{"kind": "header", "protocol_id": 3}` (or `"protocol": "SASL"`): a protocol
//!   header; `"version": "1.0.0"` may be changed to write a wrong one.
//! - `{"kind": "frame", …}`: a frame. Its body comes from, in this order:
//!   - `typed`: the lossless typed value ([`typed`](crate::inspect::typed)) that
//!     `decode --json` writes, then `payload` (hex) for the bytes after it;
//!   - `body`: the body's bytes in hex (what `decode --json` writes for a frame it could
//!     not type: malformed, or read with warnings);
//!   - `performative` and `fields`: the hand-written form. Field values are typed by the
//!     spec's field types (`"handle": 0` is a uint, `"name": "x"` a string, `"role":
//!     "receiver"` the role), and may always be written typed; mandatory fields left out
//!     get a default. `data` (text) adds a message with one data section; `payload` (hex)
//!     adds bytes as they are.
//!
//!   A line with `typed` or `body` that also has `performative` or `fields` (a line of
//!   `decode --json`) must show what it writes: edited fields would otherwise be lost, so
//!   such a line is refused, and the edit is written by removing `typed` and `body`.
//!
//!   `type` (`amqp`, `sasl` or a number), `channel` (default 0), `doff` (default: from
//!   `extended_header`, hex, else 2) and `size` (default: the real size) may each be given,
//!   wrong on purpose; `truncate` keeps only that many bytes of the frame.
//! - `{"kind": "raw", "hex": "…"}`: bytes as they are.
//! - `{"kind": "error"}` and `{"kind": "event"}` lines (from `decode` and traces) write
//!   nothing, except a fatal error's `raw`: the bytes `decode` could not split into frames
//!   (after a framing error, or an item the stream ends inside), written as they are.
//! - `{"kind": "undecoded"}` lines (bytes that came after a framing error, in the pieces
//!   they came in) write their `raw`; one without it (masked) is refused.
//!
//! Anywhere a typed value may stand, `{"raw": "hex"}` splices bytes as they are, and
//! `{"list": […], "size": N, "count": N}` (also `map`, `array`) writes a compound whose size
//! or count disagrees with its contents.

use serde_json::Value as Json;

use crate::codec::format as fc;
use crate::codec::{Symbol, Value};
use crate::inspect::typed::{from_typed, parse_code, to_typed, unhex};

/// Encodes JSON lines (one object per line; blank lines and lines starting with `#` are
/// skipped) into bytes. An error names the line (from 1) and what is wrong; nothing is
/// written for a bad input.
pub fn encode_lines(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for line in super::json_lines(text) {
        let (n, j) = line?;
        encode_line(&j, &mut out).map_err(|e| format!("line {n}: {e}"))?;
    }
    Ok(out)
}

/// `text` with the lines of other streams than the one chosen (`want_direction`: `in`,
/// `out`, `c2s`, `s2c`; `want_connection`: a capture's or a server trace's number) blanked (so that errors
/// still name the lines as numbered in the input); an error when the lines hold more than
/// one stream and none was chosen: written into one, two streams' bytes would interleave.
/// [`StreamEncoder`] does this and the encoding in one pass.
pub fn one_stream(
    text: &str,
    want_direction: Option<&str>,
    want_connection: Option<u64>,
) -> Result<String, String> {
    let mut choice = Choice::new(want_direction, want_connection);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let j = serde_json::from_str::<Json>(line).ok();
        if choice.keeps(j.as_ref()) {
            out.push_str(line);
        }
        out.push('\n');
    }
    choice.verdict()?;
    Ok(out)
}

/// The choice of one stream among lines that name theirs: which lines it keeps, and
/// whether the lines held the stream asked for, or (none asked for) only one.
struct Choice<'a> {
    want_direction: Option<&'a str>,
    want_connection: Option<u64>,
    /// The streams of the lines kept, in the order they came.
    streams: Vec<(Option<u64>, String)>,
    /// Every stream named, in the order they came.
    all: Vec<(Option<u64>, String)>,
}

impl<'a> Choice<'a> {
    fn new(want_direction: Option<&'a str>, want_connection: Option<u64>) -> Self {
        Self { want_direction, want_connection, streams: Vec::new(), all: Vec::new() }
    }

    /// Whether the line `j` (`None`: not JSON) is of the stream chosen; a line that names
    /// no stream is of every one.
    fn keeps(&mut self, j: Option<&Json>) -> bool {
        let direction = j.and_then(|j| j["direction"].as_str());
        let connection = j.and_then(|j| j["connection"].as_u64());
        let Some(d) = direction else {
            return self.want_connection.is_none_or(|c| connection.is_none_or(|x| x == c));
        };
        let named =
            |list: &[(Option<u64>, String)]| list.iter().any(|(c, x)| *c == connection && x == d);
        if !named(&self.all) {
            self.all.push((connection, d.to_owned()));
        }
        let kept = self.want_direction.is_none_or(|w| w == d)
            && self.want_connection.is_none_or(|c| connection.is_none_or(|x| x == c));
        if kept && !named(&self.streams) {
            self.streams.push((connection, d.to_owned()));
        }
        kept
    }

    /// Whether the stream may be written, all lines seen: an error when the lines held
    /// none asked for, or more than one and none was asked for.
    fn verdict(&self) -> Result<(), String> {
        let name_all = |streams: &[(Option<u64>, String)]| -> Vec<String> {
            streams
                .iter()
                .map(|(c, d)| match c {
                    Some(c) => format!("connection {c} {d}"),
                    None => d.clone(),
                })
                .collect()
        };
        let (all, streams) = (&self.all, &self.streams);
        if let Some(c) = self.want_connection {
            if !all.is_empty() && all.iter().all(|(n, _)| n.is_none()) {
                return Err(format!("--connection {c}: the lines name no connection (one connection's lines: choose with --direction only)"));
            }
        }
        let filtered = self.want_direction.is_some() || self.want_connection.is_some();
        if filtered && streams.is_empty() {
            return Err(if all.is_empty() {
                // Hand-written lines, one stream; or a capture with nothing decoded in it.
                "no line names its direction, so none is of the stream asked for: lines written \
                 by hand are one stream (leave out --direction and --connection), and a capture \
                 whose lines name none held no AMQP stream that could be decoded"
                    .to_owned()
            } else {
                format!(
                    "no line is of the stream asked for (the lines hold: {})",
                    name_all(all).join(", ")
                )
            });
        }
        if streams.len() > 1 {
            let named = name_all(streams);
            return Err(format!(
                "the lines hold {} streams ({}): choose one with --direction{}",
                streams.len(),
                named.join(", "),
                if streams.iter().any(|(c, _)| c.is_some()) { " and --connection" } else { "" }
            ));
        }
        Ok(())
    }
}

/// JSON lines to bytes one line at a time, choosing one stream as [`one_stream`] does:
/// each line read as JSON once, and nothing held but the bytes written so far, so that
/// `decode --json big.pcapng | encode --connection 3 --direction c2s` needs the memory of
/// the bytes, not of the lines. Errors are those of [`one_stream`] followed by
/// [`encode_lines`]: the choice's first (it needs every line), then the first line that
/// does not encode; after an error, no bytes.
pub struct StreamEncoder<'a> {
    choice: Choice<'a>,
    /// Lines given so far.
    lines: usize,
    out: Vec<u8>,
    /// The first line that did not encode, with why (no more are encoded after it).
    failed: Option<String>,
    /// The kept lines whose credentials `decode` masked (`"redacted": true`).
    masked: Vec<usize>,
}

impl<'a> StreamEncoder<'a> {
    /// An encoder of the stream chosen by `want_direction` and `want_connection` (as for
    /// [`one_stream`]; both `None` for lines of one stream).
    pub fn new(want_direction: Option<&'a str>, want_connection: Option<u64>) -> Self {
        Self {
            choice: Choice::new(want_direction, want_connection),
            lines: 0,
            out: Vec::new(),
            failed: None,
            masked: Vec::new(),
        }
    }

    /// Takes the next line (with or without its line ending): blank lines and lines
    /// starting with `#` are skipped, and the lines of other streams.
    pub fn line(&mut self, line: &str) {
        self.lines += 1;
        let n = self.lines;
        let Some(j) = super::json_line(n, line) else {
            // (A blank line or a comment names no stream either.)
            return;
        };
        if !self.choice.keeps(j.as_ref().ok()) || self.failed.is_some() {
            return;
        }
        let j = match j {
            Ok(j) => j,
            Err(e) => {
                self.failed = Some(e);
                return;
            }
        };
        if j["redacted"] == true {
            self.masked.push(n);
        }
        if let Err(e) = encode_line(&j, &mut self.out) {
            self.failed = Some(format!("line {n}: {e}"));
        }
    }

    /// The bytes, once every line is given; or the first error.
    pub fn finish(self) -> Result<Vec<u8>, String> {
        self.choice.verdict()?;
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }

    /// The lines (numbered from 1) of the chosen stream that `decode` wrote with
    /// credentials masked (`"redacted": true`): their bytes are written with the stars.
    pub fn masked_lines(&self) -> &[usize] {
        &self.masked
    }
}

/// Encodes one line's object, appending to `out`.
pub fn encode_line(j: &Json, out: &mut Vec<u8>) -> Result<(), String> {
    let o = j.as_object().ok_or("a line is a JSON object")?;
    let kind = o.get("kind").and_then(Json::as_str).unwrap_or("frame");
    // A capture's stream that goes on in TLS after its protocol header (5.2): the TLS
    // records are not in the lines (shown as not decoded, or decrypted with a key log).
    let captured = o.contains_key("direction") && o.contains_key("packet");
    if captured && kind == "header" && o.get("protocol_id").and_then(Json::as_u64) == Some(2) {
        return Err("this stream goes on in TLS after its protocol header, and the capture's \
                    lines do not hold the TLS records: it cannot be written whole"
            .into());
    }
    match kind {
        "header" => header(o, out),
        "frame" => frame(o, out),
        "raw" => {
            let h = o.get("hex").and_then(Json::as_str).ok_or("a raw line needs \"hex\"")?;
            out.extend(
                crate::inspect::parse_hex(h.as_bytes())
                    .map_err(|e| format!("a raw line's \"hex\": {e}"))?,
            );
            Ok(())
        }
        // A fatal error of `decode` carries the bytes it left undecoded: written back, so
        // a stream that breaks off or cannot be split comes out as it went in. Other error
        // lines, and events, say something about the bytes around them and write nothing.
        "error" => {
            let fatal = o.get("fatal") == Some(&Json::Bool(true));
            // A capture's own fatal errors: the file breaks off, or the WebSocket framing
            // does, and the rest of the stream is not in the lines.
            if let Some(layer) =
                o.get("in").and_then(Json::as_str).filter(|l| fatal && *l != "message")
            {
                return Err(format!(
                    "the {layer} breaks off here ({}): the rest of the stream is not in the \
                     lines, so it cannot be written whole",
                    o.get("error").and_then(Json::as_str).unwrap_or("a fatal error")
                ));
            }
            if fatal {
                if let Some(h) = o.get("raw") {
                    let h = h.as_str().ok_or("an error line's \"raw\" must be a hex string")?;
                    out.extend(unhex(h).ok_or("error: bad hex in \"raw\"")?);
                }
            }
            Ok(())
        }
        // Bytes that came after the stream broke off, as they came; masked ones were not
        // shown, so the stream cannot be written whole.
        "undecoded" => match o.get("raw") {
            Some(h) => {
                let h = h.as_str().ok_or("an undecoded line's \"raw\" must be a hex string")?;
                out.extend(unhex(h).ok_or("undecoded: bad hex in \"raw\"")?);
                Ok(())
            }
            None => Err(format!(
                "{} bytes after a framing error were not shown (decode hides them unless \
                 --show-secrets): the stream cannot be written whole",
                o.get("bytes").map_or_else(|| "some".to_owned(), Json::to_string)
            )),
        },
        // A capture's lines about the transport (decode of a pcap): the AMQP bytes are in
        // the frame lines beside them.
        "event" | "capture" | "connection" | "tcp" | "websocket" | "resync" | "info" => Ok(()),
        "gap" => Err(format!(
            "the capture misses {} bytes here: the stream cannot be written whole",
            o.get("bytes").map_or_else(|| "some".to_owned(), Json::to_string)
        )),
        other => Err(format!("unknown kind {other:?}")),
    }
}

/// Keys that say where a line of `decode --json`, a capture's or a live trace's came from,
/// or show what its bytes hold: accepted, and not written.
pub(crate) const SHOWN: &[&str] = &[
    "offset",
    "raw",
    "redacted",
    "direction",
    "time",
    "connection",
    "packet",
    "message",
    "payload_size",
    "continuation",
    "aborted",
    "warning",
    "warnings",
    "error",
];

/// The keys a header line may have.
pub(crate) const HEADER_KEYS: &[&str] = &["kind", "protocol_id", "protocol", "version"];

/// The keys of `decode --json` lines (of any kind) besides [`SHOWN`]: what an `expect`
/// pattern may name.
pub(crate) const DECODED_KEYS: &[&str] = &[
    "kind",
    "performative",
    "fields",
    "channel",
    "type",
    "doff",
    "size",
    "extended_header",
    "typed",
    "body",
    "payload",
    "protocol_id",
    "protocol",
    "version",
    "fatal",
    "frame_offset",
    "rest",
];

/// The keys a frame line may have.
const FRAME_KEYS: &[&str] = &[
    "kind",
    "type",
    "channel",
    "size",
    "doff",
    "extended_header",
    "typed",
    "body",
    "performative",
    "fields",
    "payload",
    "data",
    "truncate",
    "split",
];

/// A key of `o` that is neither written (`keys`) nor shown ([`SHOWN`]): most likely a
/// misspelt one, which would otherwise be left out without a word (a frame with no
/// performative is an empty frame).
fn unknown_key(o: &serde_json::Map<String, Json>, keys: &[&str], what: &str) -> Result<(), String> {
    match first_unknown_key(o, keys) {
        Some(k) => Err(format!("unknown key {k:?} (a {what} line has: {})", keys.join(", "))),
        None => Ok(()),
    }
}

/// The first key of `o` that is neither one of `keys` nor one `decode` shows beside them
/// (offsets, raw bytes…).
pub(crate) fn first_unknown_key<'a>(
    o: &'a serde_json::Map<String, Json>,
    keys: &[&str],
) -> Option<&'a String> {
    o.keys().find(|k| !keys.contains(&k.as_str()) && !SHOWN.contains(&k.as_str()))
}

fn header(o: &serde_json::Map<String, Json>, out: &mut Vec<u8>) -> Result<(), String> {
    unknown_key(o, HEADER_KEYS, "header")?;
    let named = |p: &str| match p {
        "AMQP" => Some(0u8),
        "TLS" => Some(2),
        "SASL" => Some(3),
        _ => None,
    };
    let id = match (o.get("protocol_id"), o.get("protocol").and_then(Json::as_str)) {
        (Some(n), p) => {
            let n = n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or("protocol_id is a number 0-255")?;
            // The name `decode` shows beside an id it names must be that id's.
            if let Some(by_name) = p.and_then(named).filter(|by_name| *by_name != n) {
                return Err(format!(
                    "protocol {:?} is protocol_id {by_name}, not {n}: write one of them",
                    p.unwrap_or_default()
                ));
            }
            n
        }
        (None, Some(p)) => named(p).ok_or_else(|| {
            format!("protocol {p:?}: write \"AMQP\", \"TLS\" or \"SASL\", or a protocol_id")
        })?,
        _ => return Err("a header needs \"protocol_id\" (0, 2 or 3) or \"protocol\"".into()),
    };
    let version = o.get("version").and_then(Json::as_str).unwrap_or("1.0.0");
    let v: Vec<u8> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    let [major, minor, revision] = v.as_slice() else {
        return Err(format!("version {version:?} is not MAJOR.MINOR.REVISION"));
    };
    out.extend_from_slice(&[b'A', b'M', b'Q', b'P', id, *major, *minor, *revision]);
    Ok(())
}

fn frame(o: &serde_json::Map<String, Json>, out: &mut Vec<u8>) -> Result<(), String> {
    unknown_key(o, FRAME_KEYS, "frame")?;
    if let Some(n) = o.get("split") {
        return split_transfer(o, n, out);
    }
    let named = o.get("performative").and_then(Json::as_str);
    // (`decode` shows the fields of a frame of a type it does not know with a null
    // performative, written from its `typed`.)
    let written_from_bytes = o.contains_key("typed") || o.contains_key("body");
    if o.contains_key("fields") && named.is_none() && !written_from_bytes {
        return Err("\"fields\" without a \"performative\" to give them to".into());
    }
    let ty: u8 = match o.get("type") {
        // A SASL body goes in a SASL frame (2.3.2) unless the line says otherwise.
        None if named.is_some_and(|p| p.starts_with("sasl-")) => 1,
        None => 0,
        Some(Json::String(s)) if s == "amqp" => 0,
        Some(Json::String(s)) if s == "sasl" => 1,
        Some(Json::Number(n)) => {
            n.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or("type is 0-255")?
        }
        Some(other) => return Err(format!("type {other}: write \"amqp\", \"sasl\" or a number")),
    };
    let number = |key: &str, max: u64| -> Result<Option<u64>, String> {
        match o.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(format!("{key} is a number up to {max}")),
            },
        }
    };
    let channel = number("channel", u64::from(u16::MAX))?.unwrap_or(0) as u16;
    let ext = match o.get("extended_header").and_then(Json::as_str) {
        Some(h) => unhex(h).ok_or("extended_header: bad hex")?,
        None => Vec::new(),
    };
    let doff = match number("doff", 255)? {
        Some(d) => d as u8,
        None => u8::try_from(2 + ext.len().div_ceil(4)).map_err(|_| "extended_header too long")?,
    };
    // The extended header fills doff's words, padded with zeros.
    let mut ext = ext;
    ext.resize(ext.len().max(usize::from(doff).saturating_sub(2) * 4), 0);
    let mut body = Vec::new();
    // Written from `typed` or `body`: the frame as decode saw it, size included.
    let exact = o.contains_key("typed") || o.contains_key("body");
    if let Some(t) = o.get("typed") {
        write_value(t, "typed", &mut body)?;
    } else if let Some(h) = o.get("body").and_then(Json::as_str) {
        // A frame `decode --json` could not type (malformed, or with warnings): its fields
        // are only what could be read, its body the bytes themselves.
        body.extend(unhex(h).ok_or("body: bad hex")?);
    } else if let Some(p) = o.get("performative").and_then(Json::as_str) {
        if p != "empty" {
            performative(p, &fields_of(o)?, &mut body)?;
        }
    }
    body.extend(message_of(o)?);
    let real = 8 + ext.len() + body.len();
    let size = match number("size", u64::from(u32::MAX))? {
        // A `decode --json` line (it has an `offset`) that was edited (its fields, its
        // payload, its extended header): its `size` is the one decode saw, and a size
        // that lies is not what was asked for. (Unedited, the two always agree.)
        Some(s) if s != real as u64 && o.contains_key("offset") => {
            return Err(format!(
                "\"size\" is {s}, but the frame is now {real} bytes: remove \"size\" to write \
                 the real one (or remove \"offset\" as well to write a size that lies)"
            ))
        }
        Some(s) => s as u32,
        None => u32::try_from(real).map_err(|_| "the frame is larger than 4 GiB")?,
    };
    let start = out.len();
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[doff, ty]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&body);
    if let Some(n) = number("truncate", u64::from(u32::MAX))? {
        out.truncate(start + (n as usize).min(real));
    }
    if exact {
        same_fields_as_written(o, &out[start..])?;
    }
    Ok(())
}

/// A frame line's hand-written `fields` (none: no fields).
fn fields_of(o: &serde_json::Map<String, Json>) -> Result<serde_json::Map<String, Json>, String> {
    match o.get("fields") {
        Some(Json::Object(f)) => Ok(f.clone()),
        None => Ok(serde_json::Map::new()),
        Some(_) => Err("fields is an object".into()),
    }
}

/// What a frame line appends after its performative: `payload` (hex) as it is, then
/// `data` (text) as a message of one data section.
fn message_of(o: &serde_json::Map<String, Json>) -> Result<Vec<u8>, String> {
    let mut message = Vec::new();
    if let Some(h) = o.get("payload").and_then(Json::as_str) {
        message.extend(unhex(h).ok_or("payload: bad hex")?);
    }
    if let Some(text) = o.get("data").and_then(Json::as_str) {
        message.extend_from_slice(&[fc::DESCRIBED, fc::SMALLULONG, 0x75]);
        Value::Binary(bytes::Bytes::copy_from_slice(text.as_bytes()), crate::codec::Fmt::Auto)
            .encode(&mut message);
    }
    Ok(message)
}

/// A hand-written transfer whose message (`payload`, `data`) is written as `split: N`
/// transfer frames: the first with the line's fields, the others with its handle only (2.7.5:
/// the delivery-id and tag may be left out of continuations), each but the last with
/// `more` set, the message cut into N pieces as even as can be.
fn split_transfer(
    o: &serde_json::Map<String, Json>,
    n: &Json,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let typed = o.get("typed").map(typed_transfer_list).transpose()?;
    if o.get("performative").and_then(Json::as_str) != Some("transfer") && typed.is_none() {
        return Err("split is for a transfer's message".into());
    }
    if let Some(k) = ["body", "size", "truncate"].iter().find(|k| o.contains_key(**k)) {
        return Err(format!("split writes its frames from the transfer's fields, not {k:?}"));
    }
    let n = n.as_u64().filter(|n| *n >= 1).ok_or("split is a number of frames, at least 1")?;
    let pieces = split_message(o, n)?;
    if let Some(list) = typed {
        return split_typed(o, &list, &pieces, out);
    }
    let fields = fields_of(o)?;
    for (i, piece) in pieces.iter().enumerate() {
        let mut line = piece_line(o, piece);
        let mut f = if i == 0 {
            fields.clone()
        } else {
            fields
                .iter()
                .filter(|(k, _)| *k == "handle")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        f.insert("more".into(), Json::Bool(i + 1 < pieces.len()));
        line.insert("fields".into(), Json::Object(f));
        frame(&line, out)?;
    }
    Ok(())
}

/// The message (`payload`, then `data`) of a transfer line to split into `n` frames, cut
/// into `n` pieces as even as can be.
fn split_message(o: &serde_json::Map<String, Json>, n: u64) -> Result<Vec<Vec<u8>>, String> {
    let message = message_of(o)?;
    let pieces = usize::try_from(n).unwrap_or(usize::MAX);
    if message.len() < pieces {
        return Err(format!(
            "split into {n} frames needs a message of at least {n} bytes (it has {})",
            message.len()
        ));
    }
    let (each, longer) = (message.len() / pieces, message.len() % pieces);
    let mut at = 0;
    let mut out = Vec::with_capacity(pieces);
    for i in 0..pieces {
        let len = each + usize::from(i < longer);
        out.push(message.get(at..at + len).ok_or("split: out of range")?.to_vec());
        at += len;
    }
    Ok(out)
}

/// The line of one frame of a split transfer: `o` with `piece` as its payload.
fn piece_line(o: &serde_json::Map<String, Json>, piece: &[u8]) -> serde_json::Map<String, Json> {
    let mut line = o.clone();
    for k in ["split", "payload", "data"] {
        line.remove(k);
    }
    line.insert("payload".into(), Json::String(crate::inspect::hex(piece)));
    line
}

/// The field list of a transfer in the typed form (`{"described": [{"ulong": 20}, […]]}`,
/// the list plain or `{"list": […], "code": …}`), as a recording's lines hold it; an error
/// for a `typed` of anything else.
fn typed_transfer_list(typed: &Json) -> Result<Vec<Json>, String> {
    let not = || "split: \"typed\" is not a transfer".to_owned();
    let [d, list] =
        typed.get("described").and_then(Json::as_array).map(Vec::as_slice).ok_or_else(not)?
    else {
        return Err(not());
    };
    let code = <crate::types::Transfer as crate::types::Composite>::CODE;
    if d.get("ulong").and_then(Json::as_u64) != Some(code) {
        return Err(not());
    }
    let items = list.as_array().or_else(|| list.get("list").and_then(Json::as_array));
    items.cloned().ok_or_else(not)
}

/// [`split_transfer`] of a transfer written typed (a recording's line): the first frame
/// is its list with `more` set, the others its handle and `more` (2.7.5), each in its
/// smallest form.
fn split_typed(
    o: &serde_json::Map<String, Json>,
    list: &[Json],
    pieces: &[Vec<u8>],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let code = <crate::types::Transfer as crate::types::Composite>::CODE;
    for (i, piece) in pieces.iter().enumerate() {
        // more (field 5): set on all but the last.
        let mut items: Vec<Json> =
            if i == 0 { list.to_vec() } else { list.first().cloned().into_iter().collect() };
        if items.len() < 6 {
            items.resize(6, Json::Null);
        }
        items[5] = Json::Bool(i + 1 < pieces.len());
        let mut line = piece_line(o, piece);
        line.insert("typed".into(), serde_json::json!({ "described": [{ "ulong": code }, items] }));
        frame(&line, out)?;
    }
    Ok(())
}

/// A `decode --json` line is written from its `typed` value or its `body`, which are
/// exact; its `performative` and `fields` only show them. Fields edited by hand (or a
/// performative renamed) would be lost without a word: the frame written is decoded again,
/// and a line whose performative or fields differ from what it shows in either mode is
/// refused, saying how to write the edit.
fn same_fields_as_written(o: &serde_json::Map<String, Json>, frame: &[u8]) -> Result<(), String> {
    let (performative, fields) = (o.get("performative"), o.get("fields"));
    if performative.is_none() && fields.is_none() {
        return Ok(());
    }
    // Whether the frame's decoded line shows this performative and these fields; `None`
    // when the frame alone is not read as a frame (a type byte no one defines, which only
    // a stream started otherwise makes a frame of): nothing to compare then.
    let shown = |records: &[crate::inspect::Record]| {
        let lines = records.first().map(crate::inspect::json::record_json).unwrap_or_default();
        let line =
            lines.into_iter().find(|l| l.get("kind").and_then(Json::as_str) == Some("frame"))?;
        Some(
            performative.is_none_or(|p| line.get("performative") == Some(p))
                && fields.is_none_or(|f| line.get("fields") == Some(f)),
        )
    };
    // Unmasked: a line of `decode --show-secrets` shows the credentials, and a masked one
    // has its stars in `typed` and `body` too.
    let shows = |opts| {
        let mut i = crate::inspect::Inspector::new(opts).redact_secrets(false);
        i.push(frame);
        let mut records: Vec<_> = std::iter::from_fn(|| i.next_record()).take(1).collect();
        records.extend(i.finish().filter(|_| records.is_empty()));
        shown(&records)
    };
    let lenient = shows(crate::codec::DecodeOptions::LENIENT);
    if lenient.is_none() || lenient == Some(true) {
        return Ok(());
    }
    if shows(crate::codec::DecodeOptions::STRICT) == Some(true) {
        return Ok(());
    }
    let from = if o.contains_key("typed") { "typed" } else { "body" };
    Err(format!(
        "its performative or fields differ from its {from}, which is what is written (a line of \
         `decode --json` edited?): to write the edited fields, remove \"{from}\"{}{}",
        if from == "typed" && o.contains_key("body") { " and \"body\"" } else { "" },
        if o.contains_key("size") { ", and \"size\" for the frame's new size" } else { "" }
    ))
}

/// A performative (or SASL body) from its name and hand-written fields.
fn performative(
    name: &str,
    fields: &serde_json::Map<String, Json>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let typed = performative_typed(name, fields)?;
    write_value(&typed, name, out)
}

/// The typed form of a hand-written performative (or SASL body): `{"described":
/// [{"ulong": code}, {"list": [...]}]}`, each field typed by the spec's field table and
/// mandatory fields left out given their defaults. Byte-level escapes in fields are kept.
pub fn performative_typed(
    name: &str,
    fields: &serde_json::Map<String, Json>,
) -> Result<Json, String> {
    let code = crate::types::code_for_symbol(&format!("amqp:{name}:list"))
        .ok_or_else(|| format!("unknown performative {name:?}"))?;
    let (names, types) = crate::types::field_types_for_code(code)
        .ok_or_else(|| format!("{name} has no field table"))?;
    for k in fields.keys() {
        if !names.contains(&k.as_str()) && !k.starts_with('[') {
            return Err(format!("{name} has no field {k:?} (its fields: {})", names.join(", ")));
        }
    }
    let items = typed_items(names, types, fields, "fields", |field| default_for(name, field))?;
    Ok(serde_json::json!({ "described": [{ "ulong": code }, { "list": items }] }))
}

/// The list of a composite's (or performative's) fields in the typed form, each typed by
/// the spec's table (`names`, `types`), up to the last field given or defaulted
/// (`default`): trailing absent fields are left out (a trailing `null` given is written).
/// Fields holding byte-level escapes are
/// kept as written; a terminus's `durable` may be written by its name (3.5.5). `path`
/// names the fields in errors.
fn typed_items(
    names: &[&str],
    types: &[&str],
    fields: &serde_json::Map<String, Json>,
    path: &str,
    default: impl Fn(&str) -> Option<Value>,
) -> Result<Vec<Json>, String> {
    let durable = |j: &Json| match j.as_str() {
        Some("none") => Some(Json::from(0)),
        Some("configuration") => Some(Json::from(1)),
        Some("unsettled-state") => Some(Json::from(2)),
        _ => None,
    };
    let mut items = Vec::new();
    // Fields up to the last one given are written, an explicit `null` too (as `decode`
    // shows a peer's trailing nulls, 0x40, apart from fields it left out).
    let mut given = 0;
    for (i, (field, ty)) in names.iter().zip(types.iter()).enumerate() {
        let at = format!("{path}.{field}");
        if fields.contains_key(*field) {
            given = i + 1;
        }
        items.push(match fields.get(*field) {
            // A fields map written as a plain object, with a byte-level escape inside:
            // the typed map it stands for (symbol keys, values as written), so that the
            // escapes are written where they stand.
            Some(Json::Object(o))
                if *ty == "fields" && needs_bytes(&Json::Object(o.clone())) && !is_typed(o) =>
            {
                let pairs: Vec<Json> =
                    o.iter().map(|(k, v)| serde_json::json!([{ "symbol": k }, v])).collect();
                serde_json::json!({ "map": pairs })
            }
            // An escape cannot stand in an array: its elements share one constructor.
            Some(j @ Json::Array(_)) if *ty == "symbol (multiple)" && needs_bytes(j) => {
                return Err(format!(
                    "{at}: a raw element cannot stand in an array of symbols (its elements \
                     share one constructor): write the whole field raw, or typed as a list"
                ));
            }
            Some(j) if needs_bytes(j) => j.clone(),
            Some(j) => match durable(j).filter(|_| *field == "durable") {
                Some(n) => to_typed(&typed_field(&n, ty, &at)?),
                None => to_typed(&typed_field(j, ty, &at)?),
            },
            None => default(field).map_or(Json::Null, |v| to_typed(&v)),
        });
    }
    while items.len() > given && items.last() == Some(&Json::Null) {
        items.pop();
    }
    Ok(items)
}

/// Defaults for the mandatory fields a hand-written performative leaves out.
fn default_for(performative: &str, field: &str) -> Option<Value> {
    use crate::codec::Fmt::Auto;
    Some(match (performative, field) {
        ("open", "container-id") => Value::String("amqpwire-script".into(), Auto),
        ("begin", "next-outgoing-id") | ("flow", "next-outgoing-id") => Value::Uint(0, Auto),
        ("begin", "incoming-window") | ("flow", "incoming-window") => Value::Uint(2048, Auto),
        ("begin", "outgoing-window") | ("flow", "outgoing-window") => Value::Uint(2048, Auto),
        ("attach", "name") => Value::String("link".into(), Auto),
        ("attach" | "transfer" | "detach", "handle") => Value::Uint(0, Auto),
        ("attach", "role") | ("disposition", "role") => Value::Boolean(false, Auto),
        ("disposition", "first") => Value::Uint(0, Auto),
        ("sasl-mechanisms", "sasl-server-mechanisms") => {
            Value::Symbol(Symbol::from("ANONYMOUS"), Auto)
        }
        ("sasl-init", "mechanism") => Value::Symbol(Symbol::from("ANONYMOUS"), Auto),
        ("sasl-challenge", "challenge") | ("sasl-response", "response") => {
            Value::Binary(bytes::Bytes::new(), Auto)
        }
        ("sasl-outcome", "code") => Value::Ubyte(0),
        _ => return None,
    })
}

/// What one of the spec's names stands for in a `boolean` or `ubyte` field, as plain JSON:
/// a role (2.8.1: sender is false), a settle mode (2.8.2, 2.8.3), a SASL code (5.3.3.6),
/// a terminus durability (3.5.5).
fn named(ty: &str, name: &str) -> Option<Json> {
    Some(match (ty, name) {
        ("boolean", "sender") => Json::Bool(false),
        ("boolean", "receiver") => Json::Bool(true),
        ("ubyte", "unsettled" | "first" | "ok") => 0.into(),
        ("ubyte", "settled" | "second" | "auth") => 1.into(),
        ("ubyte", "mixed" | "sys") => 2.into(),
        ("ubyte", "sys-perm") => 3.into(),
        ("ubyte", "sys-temp") => 4.into(),
        _ => return None,
    })
}

/// An `expect` pattern read as a `send` step writes its fields: the spec's names in a
/// performative's `boolean` and `ubyte` fields (`"role": "receiver"`, `"snd-settle-mode":
/// "mixed"`, `"code": "ok"`) become the values a decoded frame shows (`true`, `2`, `0`).
pub fn pattern_values(pattern: &mut Json) {
    let Some(name) = pattern.get("performative").and_then(Json::as_str) else { return };
    let Some(code) = crate::types::code_for_symbol(&format!("amqp:{name}:list")) else {
        return;
    };
    let Some((names, types)) = crate::types::field_types_for_code(code) else { return };
    let Some(Json::Object(fields)) = pattern.get_mut("fields") else { return };
    for (field, ty) in names.iter().zip(types.iter()) {
        if let Some(v) = fields.get(*field).and_then(Json::as_str).and_then(|s| named(ty, s)) {
            fields.insert((*field).to_owned(), v);
        }
    }
}

/// A hand-written field value, typed by the field's wire type where JSON leaves it open.
fn typed_field(j: &Json, ty: &str, at: &str) -> Result<Value, String> {
    use crate::codec::Fmt::Auto;
    let wrong = || format!("{at}: {j} does not fit a {ty}");
    if let Some(v) = j.as_str().and_then(|s| named(ty, s)) {
        return typed_field(&v, ty, at);
    }
    match (ty, j) {
        (_, Json::Null) => Ok(Value::Null),
        // A fields map written as a plain object: symbol keys, values typed as written.
        ("fields", Json::Object(o)) if !is_typed(o) => {
            let pairs = o
                .iter()
                .map(|(k, v)| {
                    let key = Value::Symbol(Symbol::from(k.as_str()), Auto);
                    Ok((key, from_typed(v, &format!("{at}.{k}"))?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Value::Map(pairs, Auto))
        }
        // A composite as `decode` shows it: `{"source": {"address": "q"}}`, `{"accepted":
        // {}}`, `{"error": {"condition": "amqp:not-found"}}`.
        (_, Json::Object(o)) if !is_typed(o) && composite_code(o).is_some() => composite(o, at),
        // A typed value (or a splice) always stands for itself.
        (_, Json::Object(_)) => from_typed(j, at),
        ("uint", Json::Number(n)) => {
            Ok(Value::Uint(n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(wrong)?, Auto))
        }
        ("ulong", Json::Number(n)) => Ok(Value::Ulong(n.as_u64().ok_or_else(wrong)?, Auto)),
        ("ushort", Json::Number(n)) => {
            Ok(Value::Ushort(n.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or_else(wrong)?))
        }
        ("ubyte", Json::Number(n)) => {
            Ok(Value::Ubyte(n.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or_else(wrong)?))
        }
        ("timestamp", Json::Number(n)) => {
            Ok(Value::Timestamp(crate::codec::Timestamp(n.as_i64().ok_or_else(wrong)?)))
        }
        ("boolean", Json::Bool(b)) => Ok(Value::Boolean(*b, Auto)),
        // A name that is not one of `named`'s.
        ("ubyte", Json::String(_)) => Err(wrong()),
        ("string", Json::String(s)) => Ok(Value::String(s.as_str().into(), Auto)),
        ("symbol", Json::String(s)) if s.is_ascii() => {
            Ok(Value::Symbol(Symbol::from(s.as_str()), Auto))
        }
        ("binary", Json::String(s)) => {
            Ok(Value::Binary(unhex(s).ok_or_else(|| format!("{at}: binary is hex"))?.into(), Auto))
        }
        ("symbol (multiple)", Json::String(s)) if s.is_ascii() => {
            Ok(Value::Symbol(Symbol::from(s.as_str()), Auto))
        }
        ("symbol (multiple)", Json::Array(items)) => {
            let syms = items
                .iter()
                .map(|i| i.as_str().filter(|s| s.is_ascii()).map(Symbol::from).ok_or_else(wrong))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(crate::codec::Array::symbols(syms)))
        }
        // A field of one of these types written as a plain JSON value of another shape (a
        // misspelt name, `"0"` for a number) is a mistake: written as it reads, it would be
        // a value of another type, said nowhere. Another type on purpose is written typed.
        (
            "uint" | "ulong" | "ushort" | "ubyte" | "timestamp" | "boolean" | "string" | "symbol"
            | "binary" | "symbol (multiple)",
            _,
        ) => Err(format!(
            "{} (to write another type here on purpose, write it typed: {{\"string\": …}})",
            wrong()
        )),
        // Anything else must be written typed, or is a JSON shape typed JSON reads as is.
        (_, Json::String(_) | Json::Bool(_) | Json::Array(_)) => from_typed(j, at),
        _ => Err(wrong()),
    }
}

/// The descriptor code of a composite written as `decode` shows it: an object of one key,
/// the composite's name (`source`, `accepted`, `error`…), whose value is an object of its
/// fields.
fn composite_code(o: &serde_json::Map<String, Json>) -> Option<u64> {
    let (name, fields) = o.iter().next().filter(|_| o.len() == 1)?;
    fields.as_object()?;
    let code = crate::types::code_for_symbol(&format!("amqp:{name}:list"))?;
    crate::types::field_types_for_code(code).map(|_| code)
}

/// A composite written as `decode` shows it (see [`composite_code`]), each field typed by
/// the spec's table for it, as a performative's are.
fn composite(o: &serde_json::Map<String, Json>, at: &str) -> Result<Value, String> {
    let code = composite_code(o).ok_or_else(|| format!("{at}: not a composite"))?;
    let (name, fields) = o.iter().next().ok_or_else(|| format!("{at}: empty"))?;
    let fields = fields.as_object().ok_or_else(|| format!("{at}.{name}: fields are an object"))?;
    let (names, types) =
        crate::types::field_types_for_code(code).ok_or_else(|| format!("{at}: no field table"))?;
    if let Some(k) = fields.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(format!("{at}: {name} has no field {k:?} (its fields: {})", names.join(", ")));
    }
    let items = typed_items(names, types, fields, &format!("{at}.{name}"), |_| None)?;
    from_typed(&serde_json::json!({ "described": [{ "ulong": code }, { "list": items }] }), at)
}

/// Whether an object is a typed value (`{"uint": 5}`, `{"map": […]}`, `{"raw": "…"}`)
/// rather than a fields map written as a plain object.
pub(crate) fn is_typed(o: &serde_json::Map<String, Json>) -> bool {
    const TYPES: &[&str] = &[
        "boolean",
        "ubyte",
        "ushort",
        "uint",
        "ulong",
        "byte",
        "short",
        "int",
        "long",
        "float",
        "float-bits",
        "double",
        "double-bits",
        "decimal32",
        "decimal64",
        "decimal128",
        "char",
        "timestamp",
        "uuid",
        "binary",
        "string",
        "symbol",
        "list",
        "map",
        "array",
        "described",
        "raw",
    ];
    const MODIFIERS: &[&str] = &["code", "element", "descriptor", "size", "count"];
    o.keys().any(|k| TYPES.contains(&k.as_str()))
        && o.keys().all(|k| TYPES.contains(&k.as_str()) || MODIFIERS.contains(&k.as_str()))
}

/// Writes a typed value, honouring the byte-level escapes (`raw`, compound `size` and
/// `count` overrides) anywhere inside it.
fn write_value(j: &Json, at: &str, out: &mut Vec<u8>) -> Result<(), String> {
    if let Json::Object(o) = j {
        if let Some(h) = o.get("raw").and_then(Json::as_str) {
            out.extend(unhex(h).ok_or_else(|| format!("{at}: raw: bad hex"))?);
            return Ok(());
        }
        let overrides = o.contains_key("size") || o.contains_key("count");
        if let (true, Some(items), Some(kind)) = (
            overrides,
            o.get("list").or_else(|| o.get("map")).and_then(Json::as_array),
            ["list", "map"].into_iter().find(|k| o.contains_key(*k)),
        ) {
            return compound(o, kind, items, at, out);
        }
        if let Some(Json::Array(pair)) = o.get("described") {
            if let [d, v] = pair.as_slice() {
                if needs_bytes(d) || needs_bytes(v) {
                    out.push(fc::DESCRIBED);
                    write_value(d, &format!("{at}.descriptor"), out)?;
                    return write_value(v, &format!("{at}.value"), out);
                }
            }
        }
        for kind in ["list", "map"] {
            if let Some(items) = o.get(kind).and_then(Json::as_array) {
                if items.iter().any(needs_bytes) {
                    return compound(o, kind, items, at, out);
                }
            }
        }
    }
    if let Json::Array(items) = j {
        if items.iter().any(needs_bytes) {
            return compound(&serde_json::Map::new(), "list", items, at, out);
        }
    }
    from_typed(j, at)?.encode(out);
    Ok(())
}

/// Whether a typed value holds a byte-level escape somewhere.
fn needs_bytes(j: &Json) -> bool {
    match j {
        Json::Object(o) => {
            o.contains_key("raw")
                || ((o.contains_key("list") || o.contains_key("map"))
                    && (o.contains_key("size") || o.contains_key("count")))
                || o.values().any(needs_bytes)
        }
        Json::Array(items) => items.iter().any(needs_bytes),
        _ => false,
    }
}

/// A list or map written element by element, its size and count as given or as counted.
fn compound(
    o: &serde_json::Map<String, Json>,
    kind: &str,
    items: &[Json],
    at: &str,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut body = Vec::new();
    let mut count = 0u64;
    for (i, item) in items.iter().enumerate() {
        match (kind, item) {
            ("map", Json::Array(pair)) if pair.len() == 2 => {
                write_value(&pair[0], &format!("{at}.map[{i}][0]"), &mut body)?;
                write_value(&pair[1], &format!("{at}.map[{i}][1]"), &mut body)?;
                count += 2;
            }
            ("map", _) => return Err(format!("{at}.map[{i}]: a pair is [key, value]")),
            _ => {
                write_value(item, &format!("{at}.list[{i}]"), &mut body)?;
                count += 1;
            }
        }
    }
    let count = o.get("count").and_then(Json::as_u64).unwrap_or(count);
    let small = body.len() < 255 && count <= 255;
    let code = match o.get("code") {
        Some(c) => parse_code(c, at)?,
        None if kind == "map" && small => fc::MAP8,
        None if kind == "map" => fc::MAP32,
        None if small => fc::LIST8,
        None => fc::LIST32,
    };
    out.push(code);
    match code {
        fc::LIST8 | fc::MAP8 => {
            let size = o.get("size").and_then(Json::as_u64).unwrap_or(body.len() as u64 + 1);
            out.push(size as u8);
            out.push(count as u8);
        }
        fc::LIST0 => {}
        _ => {
            let size = o.get("size").and_then(Json::as_u64).unwrap_or(body.len() as u64 + 4);
            out.extend_from_slice(&(size as u32).to_be_bytes());
            out.extend_from_slice(&(count as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(&body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_inside_fields_maps_and_typed_values_are_written_or_refused_as_asked() {
        let open = |props: &str| {
            format!(
                r#"{{"performative":"open","fields":{{"container-id":"t","properties":{props}}}}}"#
            )
        };
        let hex = |line: &str| encode_lines(line).map(|b| crate::inspect::hex(&b));
        // A raw value and a list that lies about its size, inside a plain-object map, and
        // a raw value inside a typed map: written where they stand.
        let tail = |line: &str| hex(line).expect("encodes").split_off(50);
        assert_eq!(tail(&open(r#"{"zd":{"raw":"a1"}}"#)), "c10602a3027a64a1");
        assert_eq!(tail(&open(r#"{"k":{"list":[],"size":99,"count":7}}"#)), "c10702a3016bc06307");
        assert_eq!(
            tail(&open(r#"{"map":[[{"symbol":"k"},{"raw":"a10141"}]]}"#)),
            "c10702a3016ba10141"
        );
        // What cannot be written as asked is refused, not written otherwise.
        for (props, said) in [
            (r#"{"k":{"uint":5,"cod":"0x70"}}"#, r#""uint" and "cod" are two"#),
            (r#"{"k":{"int":1,"extra":2}}"#, r#""int" and "extra" are two"#),
            (r#"{"k":{"string":"x","code":"0xa3"}}"#, "the constructor 0xa3 cannot write"),
            (r#"{"k":{"uint":500,"code":"0x52"}}"#, "the constructor 0x52 cannot write"),
            (r#"{"k":{"uint":1,"code":"0x43"}}"#, "the constructor 0x43 cannot write"),
            (r#"{"k":{"float":1e40}}"#, "out of range for float"),
            (
                r#"{"k":{"array":[{"described":[{"ulong":1},"a"]}],"element":"0xa1"}}"#,
                "gives the descriptor once",
            ),
        ] {
            let e = hex(&open(props)).expect_err(props);
            assert!(e.contains(said), "{props}: {e}");
        }
        // Codes that can write the value are kept.
        assert!(tail(&open(r#"{"k":{"uint":0,"code":"0x43"}}"#)).ends_with("43"));
        assert!(tail(&open(r#"{"k":{"uint":5,"code":"0x70"}}"#)).ends_with("7000000005"));
        let caps = r#"{"performative":"open","fields":{"container-id":"t","offered-capabilities":["a",{"raw":"a30142"}]}}"#;
        assert!(hex(caps).expect_err("refused").contains("cannot stand in an array"));
    }

    #[test]
    fn a_typed_transfer_is_split_as_a_hand_written_one_is() {
        let line = r#"{"kind":"frame","type":"amqp","channel":0,"doff":2,"typed":{"described":[{"ulong":20},{"list":[{"uint":0},{"uint":0},{"binary":"30"},{"uint":0},false,false],"code":"0xd0"}]},"payload":"005375a0026869","split":2}"#;
        let bytes = encode_lines(line).expect("encodes");
        let records =
            crate::inspect::Inspector::inspect_all(&bytes, crate::codec::DecodeOptions::STRICT);
        let more: Vec<Option<bool>> = records
            .iter()
            .filter_map(|r| match r {
                crate::inspect::Record::Frame(f) => match &f.frame {
                    Ok(crate::frame::Frame {
                        body:
                            crate::frame::FrameBody::Amqp {
                                performative: crate::types::Performative::Transfer(t),
                                ..
                            },
                        ..
                    }) => Some(Some(t.more)),
                    _ => Some(None),
                },
                _ => None,
            })
            .collect();
        assert_eq!(more, [Some(true), Some(false)]);
        // The message is whole once joined.
        let joined = records.iter().find_map(|r| match r {
            crate::inspect::Record::Frame(f) => f.delivery.as_ref(),
            _ => None,
        });
        assert!(joined.is_some(), "{records:?}");
        let not = r#"{"kind":"frame","type":"amqp","channel":0,"doff":2,"typed":{"described":[{"ulong":16},["c"]]},"payload":"00","split":2}"#;
        assert!(encode_lines(not).expect_err("an open").contains("not a transfer"));
    }

    #[test]
    fn a_pattern_reads_the_spec_s_names_as_a_send_step_does() {
        let mut p = serde_json::json!({"performative": "attach", "fields": {
            "name": "sender", "role": "receiver", "snd-settle-mode": "mixed",
            "rcv-settle-mode": "$mode", "handle": "*"}});
        pattern_values(&mut p);
        assert_eq!(
            p,
            serde_json::json!({"performative": "attach", "fields": {
                "name": "sender", "role": true, "snd-settle-mode": 2,
                "rcv-settle-mode": "$mode", "handle": "*"}})
        );
        let mut p = serde_json::json!({"performative": "sasl-outcome", "fields": {"code": "auth"}});
        pattern_values(&mut p);
        assert_eq!(p["fields"]["code"], 1);
        // Not a performative, or a name its field does not take: left as written.
        let mut p = serde_json::json!({"kind": "header", "fields": {"role": "sender"}});
        pattern_values(&mut p);
        assert_eq!(p["fields"]["role"], "sender");
        let mut p = serde_json::json!({"performative": "attach", "fields": {"role": "mixed"}});
        pattern_values(&mut p);
        assert_eq!(p["fields"]["role"], "mixed");
    }

    fn hex(b: &[u8]) -> String {
        crate::inspect::hex(b)
    }

    #[test]
    fn hand_written_performatives_take_their_field_types_and_defaults() {
        let b = encode_lines(
            r#"{"kind": "header", "protocol": "AMQP"}
               {"performative": "open", "fields": {"container-id": "c", "max-frame-size": 512}}
               {"performative": "attach", "channel": 1, "fields": {"name": "l", "role": "receiver"}}
               {"performative": "transfer", "fields": {"handle": 0, "delivery-id": 0, "delivery-tag": "01"}, "data": "hi"}"#,
        )
        .expect("encodes");
        let frames =
            crate::inspect::Inspector::inspect_all(&b, crate::codec::DecodeOptions::STRICT);
        let names: Vec<_> = frames
            .iter()
            .filter_map(|r| match r {
                crate::inspect::Record::Frame(f) => f.performative(),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["open", "attach", "transfer"], "{}", hex(&b));
        assert!(frames.iter().all(|r| match r {
            crate::inspect::Record::Frame(f) => f.frame.is_ok(),
            crate::inspect::Record::Header { .. } => true,
            _ => false,
        }));
    }

    #[test]
    fn malformations_are_written_as_asked() {
        // A frame claiming 4 GiB, a doff of 1, a list whose count and size lie, a splice.
        let b = encode_lines(
            r#"{"kind": "frame", "size": 4294967295, "typed": null}
               {"kind": "frame", "doff": 1, "body": ""}
               {"kind": "frame", "typed": {"described": [{"ulong": 16}, {"list": ["c"], "count": 9, "size": 200}]}}
               {"kind": "frame", "typed": ["a", {"raw": "a105ff"}]}
               {"kind": "frame", "performative": "open", "truncate": 10}"#,
        )
        .expect("encodes");
        assert_eq!(&b[..8], &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]);
        assert_eq!(&b[9..17], &[0, 0, 0, 8, 1, 0, 0, 0]);
        let third = &b[17..];
        assert_eq!(hex(&third[..17]), "0000001102000000005310c0c809a10163");
        let fourth = &b[17 + 17..];
        assert_eq!(hex(&fourth[..17]), "0000001102000000c00702a10161a105ff");
        assert_eq!(b.len(), 17 + 17 + 17 + 10);
        for bad in [r#"{"kind": "frame", "typed": 5}"#, r#"{"performative": "nope"}"#, "[1]"] {
            assert!(encode_lines(bad).is_err(), "{bad}");
        }
        let e = encode_lines(r#"{"kind": "header", "protocol": "FOO"}"#).expect_err("FOO");
        assert!(e.contains("protocol \"FOO\""), "{e}");
        // A plain value of the wrong shape for its field is a mistake, not another type.
        for (bad, field) in [
            (r#"{"performative": "attach", "fields": {"role": "reciever"}}"#, "role"),
            (r#"{"performative": "attach", "fields": {"handle": "0"}}"#, "handle"),
            (r#"{"performative": "flow", "fields": {"drain": "true"}}"#, "drain"),
            (r#"{"performative": "open", "fields": {"hostname": true}}"#, "hostname"),
        ] {
            let e = encode_lines(bad).expect_err(bad);
            assert!(e.contains(&format!("fields.{field}")) && e.contains("typed"), "{e}");
        }
        // Written typed, another type is written as asked.
        let b = encode_lines(r#"{"performative": "flow", "fields": {"drain": {"string": "x"}}}"#)
            .expect("typed on purpose");
        assert!(hex(&b).ends_with("a10178"), "{}", hex(&b));
    }

    #[test]
    fn a_stream_encoded_a_line_at_a_time_is_what_choosing_then_encoding_gives() {
        let c2s = r#"{"kind":"header","protocol_id":0,"direction":"c2s","connection":1}"#;
        let s2c = r#"{"kind":"header","protocol_id":0,"direction":"s2c","connection":1}"#;
        let c2s2 = r#"{"kind":"header","protocol_id":3,"direction":"c2s","connection":2}"#;
        let open = r#"{"performative":"open","fields":{"container-id":"a"},"direction":"c2s","connection":1}"#;
        let masked =
            r#"{"kind":"raw","hex":"00","redacted":true,"direction":"c2s","connection":1}"#;
        let bad = r#"{"kind":"raw","hex":"zz","direction":"c2s","connection":1}"#;
        let inputs = [
            format!("{c2s}\n{open}\n"),
            format!("# a comment\n\n{c2s}\r\n{s2c}\n{open}\n{masked}\n"),
            format!("{c2s}\n{s2c}\n"),
            format!("{c2s}\n{bad}\n{s2c}\n"),
            format!("{c2s}\nnot json\n{c2s2}\n"),
            format!("{c2s}\n{bad}\n{open}\n"),
            open.to_owned(),
            "\n# nothing\n".to_owned(),
            r#"{"kind":"header"}"#.to_owned(),
        ];
        let choices =
            [(None, None), (Some("c2s"), None), (Some("c2s"), Some(1)), (Some("s2c"), Some(2))];
        let mut outcomes = std::collections::BTreeSet::new();
        for text in &inputs {
            for (direction, connection) in choices {
                let mut enc = StreamEncoder::new(direction, connection);
                text.split_inclusive('\n').for_each(|l| enc.line(l));
                let masked = enc.masked_lines().to_vec();
                let streamed = enc.finish();
                let two =
                    one_stream(text, direction, connection).and_then(|one| encode_lines(&one));
                assert_eq!(streamed, two, "{direction:?} {connection:?}:\n{text}");
                // The masked line is connection 1's c2s, after every line that fails.
                let want_masked = text.contains("redacted")
                    && direction.is_none_or(|d| d == "c2s")
                    && connection.is_none_or(|c| c == 1);
                assert_eq!(!masked.is_empty(), want_masked, "{text}");
                outcomes.insert(match &streamed {
                    Ok(b) => format!("{} bytes", b.len()),
                    Err(e) => e.clone(),
                });
            }
        }
        // The inputs reach every kind of outcome: bytes, a line that does not encode, a
        // line that is not JSON, two streams, none of the stream asked for, no stream named.
        for want in [
            "26 bytes",
            "line 2: a raw line's \"hex\": hex input: 'z' at character 0 is not a hex digit",
            "line 2: not JSON",
            "the lines hold 2 streams (connection 1 c2s, connection 1 s2c)",
            "no line is of the stream asked for (the lines hold",
            "no line names its direction",
        ] {
            assert!(outcomes.iter().any(|o| o.starts_with(want)), "{want}: {outcomes:?}");
        }
        // A stream error wins over a line that does not encode before it, as it did when
        // the stream was chosen first.
        let mut enc = StreamEncoder::new(None, None);
        format!("{c2s}\n{bad}\n{s2c}\n").lines().for_each(|l| enc.line(l));
        let e = enc.finish().expect_err("two streams");
        assert!(e.starts_with("the lines hold 2 streams"), "{e}");
        // The masked line is numbered as in the input (comments and blank lines counted).
        let mut enc = StreamEncoder::new(Some("c2s"), None);
        format!("# a comment\n\n{c2s}\r\n{s2c}\n{open}\n{masked}\n")
            .lines()
            .for_each(|l| enc.line(l));
        assert_eq!(enc.masked_lines(), [6]);
        assert_eq!(enc.finish().map(|b| b.len()), Ok(8 + 17 + 1));
    }

    /// `decode --json`'s lines for `bytes`, as JSON lines.
    fn decoded(bytes: &[u8], secrets: bool) -> String {
        let mut i = crate::inspect::Inspector::new(crate::codec::DecodeOptions::LENIENT)
            .redact_secrets(!secrets);
        i.push(bytes);
        let mut records: Vec<_> = std::iter::from_fn(|| i.next_record()).collect();
        records.extend(i.finish());
        let mut out = String::new();
        for r in &records {
            crate::inspect::json::write_record_json(r, &mut out);
        }
        out
    }

    #[test]
    fn decode_json_lines_of_malformed_and_unknown_frames_are_written_back_byte_for_byte() {
        let streams = [
            // An open with a byte left after its list (a warning: no typed value).
            "0000001502000000005310c00802a1036162634040",
            // A string that is not UTF-8 in an open (shown with U+FFFD in the fields).
            "0000001402000000005310c00701a104ff6565ff",
            // An open, a frame type no one defines, then a SASL frame with a bad body.
            "0000001302000000005310c00601a103616263\
             0000001402020000005310c00701a104706565720000000c0201000000534101",
        ];
        for h in streams {
            let bytes = unhex(h).expect("hex");
            let lines = decoded(&bytes, true);
            assert_eq!(encode_lines(&lines).map(|b| hex(&b)), Ok(hex(&bytes)), "{lines}");
        }
    }

    #[test]
    fn an_edited_field_beside_the_exact_form_is_refused_not_lost() {
        let malformed = unhex("0000001502000000005310c00802a1036162634040").expect("hex");
        let well_formed =
            encode_lines(r#"{"performative": "open", "fields": {"container-id": "abc"}}"#)
                .expect("encodes");
        for (bytes, exact) in [(malformed, "body"), (well_formed, "typed")] {
            let line = decoded(&bytes, true);
            assert!(line.contains(&format!("\"{exact}\":")), "{line}");
            let edited = line.replace(r#""container-id":"abc""#, r#""container-id":"xyz""#);
            assert_ne!(edited, line);
            let e = encode_lines(&edited).expect_err("an edit it would lose");
            assert!(e.contains(&format!("remove \"{exact}\"")), "{e}");
            let renamed = line.replace(r#""performative":"open""#, r#""performative":"close""#);
            assert!(encode_lines(&renamed).is_err(), "{renamed}");
        }
    }

    #[test]
    fn an_edited_decode_line_keeps_no_stale_size() {
        let bytes = encode_lines(r#"{"performative": "open", "fields": {"container-id": "A"}}"#)
            .expect("encodes");
        let line = decoded(&bytes, true);
        let mut o: serde_json::Map<String, Json> = serde_json::from_str(&line).expect("json");
        o.insert("fields".into(), serde_json::json!({"container-id": "LONGERNAME"}));
        let e = encode_lines(&Json::Object(o.clone()).to_string()).expect_err("typed kept");
        assert!(e.contains(r#"remove "typed", and "size" for the frame's new size"#), "{e}");
        // An edit beside `typed` that makes the frame longer (a payload) is refused too.
        let mut payload: serde_json::Map<String, Json> = serde_json::from_str(&line).expect("json");
        payload.insert("payload".into(), "00".into());
        let e = encode_lines(&Json::Object(payload).to_string()).expect_err("a longer frame");
        assert!(e.contains(r#""size" is 17, but the frame is now 18 bytes"#), "{e}");
        o.remove("typed");
        o.remove("raw");
        // The size decode saw (17) no longer fits the edited frame (26 bytes).
        let e = encode_lines(&Json::Object(o.clone()).to_string()).expect_err("stale size");
        assert!(e.contains(r#""size" is 17, but the frame is now 26 bytes"#), "{e}");
        let mut fresh = o.clone();
        fresh.remove("size");
        let written = encode_lines(&Json::Object(fresh).to_string()).expect("encodes");
        assert_eq!(&written[..4], &26u32.to_be_bytes());
        // The same size unedited, and a size that lies on a line that is not decode's.
        let mut same = o.clone();
        same.insert("fields".into(), serde_json::json!({"container-id": "A"}));
        assert_eq!(encode_lines(&Json::Object(same).to_string()).expect("encodes"), bytes);
        o.remove("offset");
        let lying = encode_lines(&Json::Object(o).to_string()).expect("a size that lies");
        assert_eq!(&lying[..4], &17u32.to_be_bytes());
        assert_eq!(lying.len(), 26);
    }
}

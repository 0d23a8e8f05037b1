//! Text and JSON renderings of capture events (the JSON schema is in
//! `docs/trace-format.md`, "Captures").

use std::fmt::Write as _;
use std::time::Duration;

use super::decode::{CaptureEvent, EventKind, WsEvent};
use super::websocket::{close_reason, Opcode};
use crate::codec::{Shown, Timestamp};
use crate::inspect::{hex, render_text};

/// A time since the Unix epoch as RFC 3339 in UTC, to the microsecond
/// (`2024-05-01T12:00:00.123456Z`).
pub fn rfc3339(t: Duration) -> String {
    let ms = i64::try_from(t.as_secs()).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    let s = Timestamp(ms).to_string();
    let date = s.strip_suffix(".000Z").unwrap_or(&s);
    format!("{date}.{:06}Z", t.subsec_micros())
}

/// Seconds from `start` to `t`, to the microsecond.
fn seconds(t: Duration, start: Duration) -> f64 {
    (t.saturating_sub(start).as_secs_f64() * 1e6).round() / 1e6
}

/// Appends the text rendering of `ev` to `out`: a line saying when (seconds since `start`,
/// usually the first packet's time), which connection and direction and which packet,
/// then what (a record as `amqpwire decode` shows it).
pub fn event_text(ev: &CaptureEvent, start: Duration, out: &mut String) {
    let mut head = format!("[{:9.6}s]", seconds(ev.time, start));
    if let Some(c) = ev.connection {
        let _ = write!(head, " c{c}");
    }
    if let Some(d) = ev.direction {
        let _ = write!(head, " {} {}", d.arrow(), d.label());
    }
    if let Some(p) = ev.packet {
        let _ = write!(head, " (packet {p})");
    }
    match &ev.kind {
        EventKind::Section(s) => {
            out.push_str(&format!("capture: {}", s.format));
            for (what, v) in
                [("written by", &s.application), ("on", &s.os), ("hardware", &s.hardware)]
            {
                if let Some(v) = v {
                    let _ = write!(out, ", {what} {}", Shown(v));
                }
            }
            if start > Duration::ZERO {
                let _ = write!(out, ", first packet at {}", rfc3339(start));
            }
            out.push('\n');
            for c in &s.comments {
                let _ = writeln!(out, "  comment: {}", Shown(c));
            }
        }
        EventKind::Connection(c) => {
            let _ = write!(
                out,
                "{head} connection: {} -> {} over {}",
                c.client,
                c.server,
                c.transport.name()
            );
            if !c.handshake {
                out.push_str(" (its TCP handshake is not in the capture)");
            }
            out.push('\n');
            for comment in &c.comments {
                let _ = writeln!(out, "  comment: {}", Shown(comment));
            }
        }
        EventKind::Record(r) => {
            let _ = writeln!(out, "{head}");
            render_text(r, out);
        }
        EventKind::Gap { seq, offset, len } => {
            let _ = writeln!(
                out,
                "{head} ! gap: {len} bytes missing at seq {seq} (TCP stream offset {offset})"
            );
        }
        EventKind::Resync { offset } => {
            let _ = writeln!(
                out,
                "{head} decoding resumes at TCP stream offset {offset}, where a frame seems to \
                 start; the offsets below count from there"
            );
        }
        EventKind::WebSocket(w) => {
            let _ = writeln!(out, "{head} {}", ws_text(w));
        }
        EventKind::Closed { reset, offset } => {
            let what = if *reset { "RST" } else { "FIN" };
            let _ = writeln!(out, "{head} {what} after {offset} bytes");
        }
        EventKind::Info(m) => {
            let _ = writeln!(out, "{head} {m}");
        }
        EventKind::Error(e) => {
            let stop = if e.fatal { "; decoding stops here" } else { "" };
            let _ = writeln!(out, "{head} ! error: {e}{stop}");
        }
    }
}

fn ws_text(w: &WsEvent) -> String {
    let proto = |p: &Option<String>| {
        p.as_ref().map(|p| format!(" (Sec-WebSocket-Protocol: {})", Shown(p))).unwrap_or_default()
    };
    match w {
        WsEvent::Request { line, protocol } => {
            format!("websocket upgrade request: {}{}", Shown(line), proto(protocol))
        }
        WsEvent::Response { line, protocol, .. } => {
            format!("websocket upgrade response: {}{}", Shown(line), proto(protocol))
        }
        WsEvent::Control { opcode: Opcode::Close, payload, offset } => match close_reason(payload) {
            Some((code, reason)) => {
                format!("websocket close at offset {offset}: status {code}, reason {reason:?}")
            }
            None => format!("websocket close at offset {offset}: no status"),
        },
        WsEvent::Control { opcode, payload, offset } => format!(
            "websocket {} at offset {offset}, {} bytes: {}",
            opcode.name(),
            payload.len(),
            hex(payload)
        ),
        WsEvent::Text { len, offset } => format!(
            "websocket text message at offset {offset}, {len} bytes: AMQP uses binary messages, skipped"
        ),
        WsEvent::Error { offset, message, fatal } => {
            let stop = if *fatal { "; this direction is not decoded further" } else { "" };
            format!("! websocket error at offset {offset}: {message}{stop}")
        }
    }
}

/// The JSON lines of `ev` (`docs/trace-format.md`, "Captures"): a record's lines as
/// `amqpwire decode --json` writes them, or one line of a capture kind; each with
/// `packet`, `time` (seconds since `start`), `connection` and `direction` where they apply.
#[cfg(feature = "json")]
pub fn event_json(ev: &CaptureEvent, start: Duration) -> Vec<serde_json::Value> {
    use super::reader::Format;
    use serde_json::{json, Value};
    let mut lines: Vec<Value> = match &ev.kind {
        EventKind::Section(s) => {
            let (format, big_endian) = match s.format {
                Format::Pcap { big_endian, .. } => ("pcap", big_endian),
                Format::Pcapng { big_endian } => ("pcapng", big_endian),
            };
            let mut o = json!({"offset": s.offset, "kind": "capture", "format": format});
            if let Some(m) = o.as_object_mut() {
                if let Format::Pcap { nanos, modified, .. } = s.format {
                    m.insert("nanoseconds".into(), nanos.into());
                    if modified {
                        m.insert("modified".into(), true.into());
                    }
                }
                m.insert("big_endian".into(), big_endian.into());
                for (k, v) in
                    [("application", &s.application), ("os", &s.os), ("hardware", &s.hardware)]
                {
                    if let Some(v) = v {
                        m.insert(k.into(), v.as_str().into());
                    }
                }
                if !s.comments.is_empty() {
                    m.insert("comments".into(), s.comments.clone().into());
                }
                if start > Duration::ZERO {
                    m.insert("start".into(), rfc3339(start).into());
                }
            }
            vec![o]
        }
        EventKind::Connection(c) => {
            let mut o = json!({
                "offset": 0,
                "kind": "connection",
                "client": c.client.to_string(),
                "server": c.server.to_string(),
                "transport": c.transport.name(),
                "handshake": c.handshake,
            });
            if let (Some(m), false) = (o.as_object_mut(), c.comments.is_empty()) {
                m.insert("comments".into(), c.comments.clone().into());
            }
            vec![o]
        }
        EventKind::Record(r) => crate::inspect::json::record_json(r),
        EventKind::Gap { seq, offset, len } => {
            vec![json!({"offset": offset, "kind": "gap", "seq": seq, "bytes": len})]
        }
        EventKind::Resync { offset } => vec![json!({"offset": offset, "kind": "resync"})],
        EventKind::WebSocket(w) => vec![ws_json(w)],
        EventKind::Closed { reset, offset } => {
            vec![
                json!({"offset": offset, "kind": "tcp", "event": if *reset { "rst" } else { "fin" }}),
            ]
        }
        EventKind::Info(m) => vec![json!({"offset": 0, "kind": "info", "info": m})],
        EventKind::Error(e) => vec![json!({
            "offset": e.offset,
            "kind": "error",
            "in": "capture",
            "fatal": e.fatal,
            "error": e.problem,
        })],
    };
    let time = seconds(ev.time, start);
    for line in &mut lines {
        if let Some(o) = line.as_object_mut() {
            if let Some(p) = ev.packet {
                o.insert("packet".into(), p.into());
            }
            if !matches!(ev.kind, EventKind::Section(_)) {
                o.insert("time".into(), json!(time));
            }
            if let Some(c) = ev.connection {
                o.insert("connection".into(), c.into());
            }
            if let Some(d) = ev.direction {
                o.insert("direction".into(), d.label().into());
            }
        }
    }
    lines
}

#[cfg(feature = "json")]
fn ws_json(w: &WsEvent) -> serde_json::Value {
    use serde_json::json;
    let protocol = |mut o: serde_json::Value, p: &Option<String>| {
        if let (Some(m), Some(p)) = (o.as_object_mut(), p) {
            m.insert("protocol".into(), p.as_str().into());
        }
        o
    };
    match w {
        WsEvent::Request { line, protocol: p } => {
            protocol(json!({"offset": 0, "kind": "websocket", "event": "request", "line": line}), p)
        }
        WsEvent::Response { line, status, protocol: p } => protocol(
            json!({
                "offset": 0, "kind": "websocket", "event": "response", "line": line,
                "status": status,
            }),
            p,
        ),
        WsEvent::Control { opcode, payload, offset } => {
            let mut o = json!({
                "offset": offset, "kind": "websocket", "event": opcode.name(),
                "size": payload.len(), "payload": hex(payload),
            });
            if let (Opcode::Close, Some((code, reason)), Some(m)) =
                (opcode, close_reason(payload), o.as_object_mut())
            {
                m.insert("code".into(), code.into());
                m.insert("reason".into(), reason.into());
            }
            o
        }
        WsEvent::Text { len, offset } => {
            json!({"offset": offset, "kind": "websocket", "event": "text", "size": len})
        }
        WsEvent::Error { offset, message, fatal } => json!({
            "offset": offset, "kind": "error", "in": "websocket", "fatal": fatal, "error": message,
        }),
    }
}

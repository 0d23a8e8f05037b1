//! The annotated text rendering: one line per value, with its offset, raw bytes, name,
//! meaning and encoding.

use std::fmt::Write;

use super::{FrameRecord, Node, Record};

/// Raw bytes shown per line before eliding with `…`.
const RAW_COLUMN_BYTES: usize = 12;

/// Characters of a value shown before eliding (the JSON rendering keeps everything).
const TEXT_COLUMN_CHARS: usize = 160;

/// Appends the text rendering of `record` to `out`.
pub fn render_text(record: &Record, out: &mut String) {
    match record {
        Record::Header { offset, header } => {
            line(
                out,
                *offset as usize,
                &header.to_bytes(),
                0,
                &format!("protocol header {header} ({})", header.id.name().unwrap_or("?")),
                "",
            );
        }
        Record::Frame(f) => frame(f, out),
        Record::Error(e) => {
            let _ =
                writeln!(out, "{:>8}  ! framing error: {}; decoding stops here", e.offset, e.kind);
        }
        Record::Truncated { offset, left } => {
            let _ = writeln!(
                out,
                "{offset:>8}  ! the stream ends inside an item: {left} bytes left over"
            );
        }
    }
}

fn frame(f: &FrameRecord, out: &mut String) {
    let h = &f.header;
    let what = f.performative().unwrap_or("undecodable");
    let ty = h.frame_type.name().unwrap_or("?");
    let head =
        format!("frame {ty} channel {}, size {}, doff {}: {what}", h.channel, h.size, h.doff);
    line(out, f.offset as usize, &f.raw[..8], 0, &head, "");
    let ext = &f.raw[8..usize::from(h.doff) * 4];
    if !ext.is_empty() {
        line(
            out,
            f.offset as usize + 8,
            ext,
            1,
            &format!("extended header, {} bytes (ignored)", ext.len()),
            "",
        );
    }
    if let Some(tree) = &f.tree {
        node(tree, &f.raw, f.offset as usize, 1, out);
    }
    match &f.frame {
        Err(e) => {
            let _ = writeln!(out, "{:>8}  ! error: {}", e.offset, e.kind);
        }
        Ok(_) => {
            if let Some(n) = f.continuation {
                let _ = writeln!(out, "{:>8}    (transfer {n} of a delivery that continues)", "");
            }
            if f.aborted {
                let _ =
                    writeln!(out, "{:>8}    (delivery aborted: its transfers are discarded)", "");
            }
        }
    }
    if let Some(e) = f.layer_error {
        let _ = writeln!(out, "{:>8}  ! error: {e}", f.offset + 5);
    }
    for w in &f.warnings {
        let _ = writeln!(out, "{:>8}  ! warning: {} ({})", w.offset, w.kind, w.action);
    }
    if f.redacted {
        let _ =
            writeln!(out, "{:>8}    (credentials masked with '*'; --show-secrets shows them)", "");
    }
    if let Some(d) = &f.delivery {
        let how = if d.reassembled {
            format!("message reassembled from {} transfer frames, {} bytes (offsets below count from the message start)", d.frames, d.payload.len())
        } else {
            format!("message, {} bytes", d.payload.len())
        };
        let _ = writeln!(out, "{:>8}    {how}", "");
        let (buf, base): (&[u8], usize) =
            if d.reassembled { (&d.payload, 0) } else { (&f.raw, f.offset as usize) };
        for s in &d.sections {
            node(s, buf, base, 2, out);
        }
        if let Err(e) = &d.message {
            let _ = writeln!(out, "{:>8}  ! message error: {}", e.offset, e.kind);
        }
        for w in &d.warnings {
            let _ = writeln!(out, "{:>8}  ! warning: {} ({})", w.offset, w.kind, w.action);
        }
    }
}

fn node(n: &Node, buf: &[u8], base: usize, depth: usize, out: &mut String) {
    let start = n.offset.saturating_sub(base);
    let raw = buf.get(start..start + n.head).unwrap_or(&[]);
    let text =
        if n.label.is_empty() { n.summary.clone() } else { format!("{}: {}", n.label, n.summary) };
    line(out, n.offset, raw, depth, &text, n.encoding);
    for c in &n.children {
        node(c, buf, base, depth + 1, out);
    }
}

fn line(out: &mut String, offset: usize, raw: &[u8], depth: usize, text: &str, encoding: &str) {
    let mut hex = String::new();
    for b in raw.iter().take(RAW_COLUMN_BYTES) {
        let _ = write!(hex, "{b:02x} ");
    }
    if raw.len() > RAW_COLUMN_BYTES {
        hex.push('…');
    }
    let indent = "  ".repeat(depth);
    let text: std::borrow::Cow<'_, str> = if text.chars().count() > TEXT_COLUMN_CHARS {
        let cut: String = text.chars().take(TEXT_COLUMN_CHARS).collect();
        format!("{cut}… ({} chars)", text.chars().count()).into()
    } else {
        text.into()
    };
    let _ = write!(out, "{offset:>8}  {hex:<38}{indent}{text}");
    if !encoding.is_empty() {
        let _ = write!(out, "  [{encoding}]");
    }
    out.push('\n');
}

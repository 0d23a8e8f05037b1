//! The annotated text rendering: one line per value, with its offset, raw bytes, name,
//! meaning and encoding.

use std::fmt::Write;

use super::{FrameRecord, Node, Record, HEX_DIGITS};

/// Width of the offset column.
const OFFSET_COLUMN: usize = 8;

/// Raw bytes shown per line before eliding with `…`.
const RAW_COLUMN_BYTES: usize = 12;

/// Width of the raw bytes column (each byte as two hex digits and a space, then `…` when
/// elided), before the two spaces of indent per depth.
const RAW_COLUMN: usize = 38;

/// Characters of a value shown before eliding (the JSON rendering keeps everything).
const TEXT_COLUMN_CHARS: usize = 160;

/// Appends the text rendering of `record` to `out`.
pub fn render_text(record: &Record, out: &mut String) {
    match record {
        Record::Header { offset, header } => {
            let text = begin_line(out, *offset as usize, &header.to_bytes(), 0);
            let _ = write!(out, "protocol header {header} ({})", header.id.name().unwrap_or("?"));
            end_line(out, text, "");
        }
        Record::Frame(f) => frame(f, out),
        Record::Error { error, rest, redacted } => {
            let _ = writeln!(
                out,
                "{:>8}  ! framing error: {}; decoding stops here",
                error.offset, error.kind
            );
            undecoded(error.offset, rest, *redacted, out);
        }
        Record::Truncated { offset, rest, redacted } => {
            let _ = writeln!(
                out,
                "{offset:>8}  ! the stream ends inside an item: {} bytes left over",
                rest.len()
            );
            undecoded(*offset, rest, *redacted, out);
        }
        Record::Undecoded { offset, len, bytes: Some(bytes) } => {
            let _ = writeln!(out, "{offset:>8}  … {len} more bytes after the framing error");
            undecoded(*offset, bytes, false, out);
        }
        Record::Undecoded { offset, len, bytes: None } => {
            let _ = writeln!(
                out,
                "{offset:>8}  … {len} more bytes after the framing error, not shown (they \
                 could hold credentials; --show-secrets shows them)"
            );
        }
    }
}

/// Rows of undecoded bytes shown under a fatal error (the JSON rendering has them all).
const UNDECODED_ROWS: usize = 8;

/// The bytes a fatal error left undecoded, eight to a row as frame headers are shown.
fn undecoded(offset: u64, rest: &[u8], redacted: bool, out: &mut String) {
    for (i, row) in rest.chunks(8).take(UNDECODED_ROWS).enumerate() {
        let text = begin_line(out, offset as usize + 8 * i, row, 0);
        if i == 0 {
            let _ = write!(out, "not decoded: {} bytes", rest.len());
            end_line(out, text, "");
        } else {
            // Bytes alone: no padding left at the end of the line.
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
    }
    let shown = rest.len().min(8 * UNDECODED_ROWS);
    if rest.len() > shown {
        let _ = writeln!(
            out,
            "{:>8}    … {} more bytes not shown (the JSON rendering has them all)",
            "",
            rest.len() - shown
        );
    }
    if redacted {
        let _ =
            writeln!(out, "{:>8}    (credentials masked with '*'; --show-secrets shows them)", "");
    }
}

fn frame(f: &FrameRecord, out: &mut String) {
    let h = &f.header;
    let what = f.performative().unwrap_or("undecodable");
    let ty = h.frame_type.name().unwrap_or("?");
    let text = begin_line(out, f.offset as usize, &f.raw[..8], 0);
    let _ =
        write!(out, "frame {ty} channel {}, size {}, doff {}: {what}", h.channel, h.size, h.doff);
    end_line(out, text, "");
    let ext = &f.raw[8..usize::from(h.doff) * 4];
    if !ext.is_empty() {
        let text = begin_line(out, f.offset as usize + 8, ext, 1);
        let _ = write!(out, "extended header, {} bytes (ignored)", ext.len());
        end_line(out, text, "");
    }
    if let Some(tree) = &f.tree {
        node(tree, &f.raw, f.offset as usize, 1, out);
    }
    // Errors and warnings in the order of their offsets (an error first at the same one).
    let mut notes: Vec<(u64, String)> = Vec::new();
    match &f.frame {
        Err(e) => notes.push((e.offset as u64, format!("{:>8}  ! error: {}", e.offset, e.kind))),
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
        notes.push((f.offset + 5, format!("{:>8}  ! error: {e}", f.offset + 5)));
    }
    warning_notes(&f.warnings, &mut notes);
    write_notes(notes, out);
    if f.redacted {
        let _ =
            writeln!(out, "{:>8}    (credentials masked with '*'; --show-secrets shows them)", "");
    }
    if let Some(d) = &f.delivery {
        if d.reassembled {
            let _ = writeln!(out, "{:>8}    message reassembled from {} transfer frames, {} bytes (offsets below count from the message start)", "", d.frames, d.payload.len());
        } else {
            let _ = writeln!(out, "{:>8}    message, {} bytes", "", d.payload.len());
        }
        let (buf, base): (&[u8], usize) =
            if d.reassembled { (&d.payload, 0) } else { (&f.raw, f.offset as usize) };
        for s in d.sections.iter() {
            node(s, buf, base, 2, out);
        }
        let mut notes = Vec::new();
        if let Err(e) = &d.message {
            notes.push((e.offset as u64, format!("{:>8}  ! message error: {}", e.offset, e.kind)));
        }
        warning_notes(&d.warnings, &mut notes);
        write_notes(notes, out);
    }
}

/// The lines of `warnings`, each with its offset.
fn warning_notes(warnings: &[crate::codec::Warning], notes: &mut Vec<(u64, String)>) {
    for w in warnings {
        let line = format!("{:>8}  ! warning: {} ({})", w.offset, w.kind, w.action);
        notes.push((w.offset as u64, line));
    }
}

/// Writes error and warning lines in the order of their offsets (the order given where
/// two share one).
fn write_notes(mut notes: Vec<(u64, String)>, out: &mut String) {
    notes.sort_by_key(|(offset, _)| *offset);
    for (_, line) in notes {
        out.push_str(&line);
        out.push('\n');
    }
}

fn node(n: &Node, buf: &[u8], base: usize, depth: usize, out: &mut String) {
    let start = n.offset.saturating_sub(base);
    let raw = buf.get(start..start + n.head).unwrap_or(&[]);
    let text = begin_line(out, n.offset, raw, depth);
    if !n.label.is_empty() {
        out.push_str(&n.label);
        out.push_str(": ");
    }
    out.push_str(&n.summary);
    end_line(out, text, n.encoding);
    for c in &n.children {
        node(c, buf, base, depth + 1, out);
    }
}

/// Starts a line: the offset, the raw bytes in hex and the indent. The caller appends the
/// text, then calls [`end_line`] with the position returned, where the text starts.
///
/// There is a line per value: this writes straight into `out`, without allocating and
/// without the formatting machinery.
fn begin_line(out: &mut String, offset: usize, raw: &[u8], depth: usize) -> usize {
    // The offset (right-aligned), two spaces and the hex of the bytes shown are ASCII,
    // put together here and appended at once.
    const DIGITS: usize = 20; // of the largest usize
    let mut ascii = [b' '; DIGITS + 2 + 3 * RAW_COLUMN_BYTES];
    let mut first = DIGITS;
    let mut n = offset;
    loop {
        first -= 1;
        ascii[first] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let first = first.min(DIGITS - OFFSET_COLUMN);
    let mut end = DIGITS + 2;
    let shown = &raw[..raw.len().min(RAW_COLUMN_BYTES)];
    for b in shown {
        ascii[end] = HEX_DIGITS[usize::from(b >> 4)];
        ascii[end + 1] = HEX_DIGITS[usize::from(b & 0xf)];
        end += 3;
    }
    out.push_str(std::str::from_utf8(&ascii[first..end]).unwrap_or_default());
    let mut columns = 3 * shown.len();
    if raw.len() > RAW_COLUMN_BYTES {
        out.push('…');
        columns += 1;
    }
    let mut pad = (RAW_COLUMN + 2 * depth).saturating_sub(columns);
    const SPACES: &str = "                                                                ";
    while pad > 0 {
        let n = pad.min(SPACES.len());
        out.push_str(&SPACES[..n]);
        pad -= n;
    }
    out.len()
}

/// Ends a line begun by [`begin_line`]: elides the text from `text` on when it is too
/// long, then adds the encoding.
fn end_line(out: &mut String, text: usize, encoding: &str) {
    // Never more characters than bytes: most lines need no counting.
    if out.len() - text > TEXT_COLUMN_CHARS {
        let chars = out[text..].chars().count();
        if chars > TEXT_COLUMN_CHARS {
            let cut =
                out[text..].char_indices().nth(TEXT_COLUMN_CHARS).map_or(out.len(), |c| text + c.0);
            out.truncate(cut);
            let _ = write!(out, "… ({chars} chars)");
        }
    }
    if !encoding.is_empty() {
        out.push_str("  [");
        out.push_str(encoding);
        out.push(']');
    }
    out.push('\n');
}

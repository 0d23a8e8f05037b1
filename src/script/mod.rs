//! Writing any exchange: frames from JSON, malformations included.
//!
//! Sans-IO, above [`inspect`](crate::inspect): [`encode`] turns the JSON lines of the trace
//! format (with the lossless [`typed`](crate::inspect::typed) values `decode --json` adds)
//! and a shorter hand-written form back into bytes.

pub mod encode;
pub mod player;
pub mod record;

/// The JSON objects of a text of JSON lines, each with its line number (from 1); blank
/// lines and lines starting with `#` are skipped. The one reader of scripts and encode
/// input.
pub(crate) fn json_lines(
    text: &str,
) -> impl Iterator<Item = Result<(usize, serde_json::Value), String>> + '_ {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| json_line(i + 1, line).map(|j| j.map(|j| (i + 1, j))))
}

/// Line `n` of JSON lines: `None` for a blank line or a `#` comment, else its object or
/// why it is not JSON.
pub(crate) fn json_line(n: usize, line: &str) -> Option<Result<serde_json::Value, String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON: {e}")))
}

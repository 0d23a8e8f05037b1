//! Recording a session as a script: one side's frames as `send` steps, the other's as
//! `expect` steps, with what changes from run to run turned into wildcards, so that the
//! script replays the recorded side against a fresh peer and reports where the peer's
//! answers diverge.
//!
//! What an `expect` keeps of the peer's frame:
//! - headers: the protocol id;
//! - `open`, `begin`, `close`, `end`: the performative, and the error's condition if any
//!   (connection and session parameters differ between peers and versions);
//! - `attach`: name, role and the addresses of source and target;
//! - `transfer`: handle and settled, and of its message the application properties but for
//!   values that name times, ids or tokens;
//! - `disposition`: role, first, last, settled and the outcome's kind;
//! - `detach`: closed and the error's condition.
//!
//! `flow` frames are not expected (the script starts with `{"ignore": ["flow"]}`): how
//! often a peer sends them is its own business. The recorded side's frames are sent as
//! they were, byte for byte ([`typed`](crate::inspect::typed) and `payload`).

use serde_json::{json, Map, Value as Json};

use crate::codec::DecodeOptions;
use crate::inspect::json::record_json;
use crate::inspect::{Inspector, Record};

/// Records one connection.
#[derive(Debug)]
pub struct Recorder {
    /// The side replayed (its bytes become `send` steps), then the other.
    inspectors: [Inspector; 2],
    lines: Vec<Json>,
    /// How many of `lines` [`Recorder::take_new`] has handed out.
    taken: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder; call [`Recorder::ours`] with the bytes of the side to replay and
    /// [`Recorder::theirs`] with the other side's, in the order they were seen.
    pub fn new() -> Self {
        let new = || Inspector::new(DecodeOptions::LENIENT).redact_secrets(false);
        Self { inspectors: [new(), new()], lines: vec![json!({ "ignore": ["flow"] })], taken: 0 }
    }

    /// Bytes the replayed side sent.
    pub fn ours(&mut self, data: &[u8]) {
        self.push(0, data);
    }

    /// Bytes the other side sent.
    pub fn theirs(&mut self, data: &[u8]) {
        self.push(1, data);
    }

    fn push(&mut self, side: usize, data: &[u8]) {
        let Some(inspector) = self.inspectors.get_mut(side) else { return };
        inspector.push(data);
        let records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
        for r in &records {
            let Some(line) = record_json(r).into_iter().next() else { continue };
            let step = if side == 0 { send_step(&line) } else { expect_step(&line) };
            self.lines.extend(step);
        }
    }

    /// The script so far, as JSON lines.
    pub fn script(&self) -> String {
        lines(&self.lines)
    }

    /// The lines added since the last call, for writing a script as it grows.
    pub fn take_new(&mut self) -> String {
        let new = lines(self.lines.get(self.taken..).unwrap_or_default());
        self.taken = self.lines.len();
        new
    }
}

fn lines(ls: &[Json]) -> String {
    let mut s = String::new();
    for l in ls {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// A `send` step: the line in its lossless form, the decoded views and offsets left out.
fn send_step(line: &Json) -> Option<Json> {
    let o = line.as_object()?;
    let mut keep = Map::new();
    for k in [
        "kind",
        "protocol_id",
        "type",
        "channel",
        "doff",
        "extended_header",
        "typed",
        "payload",
        "body",
    ] {
        if let Some(v) = o.get(k) {
            keep.insert(k.into(), v.clone());
        }
    }
    match o.get("kind").and_then(Json::as_str) {
        Some("header" | "frame") => Some(json!({ "send": keep })),
        _ => None,
    }
}

/// An `expect` step: what should not change from run to run.
fn expect_step(line: &Json) -> Option<Json> {
    let o = line.as_object()?;
    let pattern = match o.get("kind").and_then(Json::as_str)? {
        "header" => json!({ "kind": "header", "protocol_id": o.get("protocol_id")? }),
        "frame" => {
            let p = o.get("performative")?.as_str()?;
            let fields = o.get("fields").and_then(Json::as_object);
            let pick = |names: &[&str]| -> Map<String, Json> {
                let mut m = Map::new();
                for n in names {
                    if let Some(v) = fields.and_then(|f| f.get(*n)) {
                        m.insert((*n).into(), v.clone());
                    }
                }
                m
            };
            let mut f = match p {
                "flow" | "empty" => return None,
                "attach" => {
                    let mut m = pick(&["name", "role"]);
                    for t in ["source", "target"] {
                        if let Some(addr) = terminus_address(fields.and_then(|f| f.get(t))) {
                            m.insert(t.into(), addr);
                        }
                    }
                    m
                }
                "transfer" => pick(&["handle", "settled"]),
                "disposition" => {
                    let mut m = pick(&["role", "first", "last", "settled"]);
                    if let Some(Json::Object(state)) = fields.and_then(|f| f.get("state")) {
                        // The outcome's kind, not its details.
                        let kinds: Map<String, Json> =
                            state.keys().map(|k| (k.clone(), json!("*"))).collect();
                        m.insert("state".into(), Json::Object(kinds));
                    }
                    m
                }
                "detach" => pick(&["closed"]),
                _ => Map::new(),
            };
            if let Some(cond) = fields
                .and_then(|f| f.get("error"))
                .and_then(|e| e.get("error"))
                .and_then(|e| e.get("condition"))
            {
                f.insert("error".into(), json!({ "error": { "condition": cond } }));
            }
            let mut pat = json!({ "performative": p });
            if !f.is_empty() {
                pat["fields"] = Json::Object(f);
            }
            if let Some(props) = o
                .get("message")
                .and_then(|m| m.get("application-properties"))
                .and_then(Json::as_object)
            {
                let stable: Map<String, Json> = props
                    .iter()
                    .filter(|(k, _)| !volatile(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                pat["message"] = json!({ "application-properties": stable });
            }
            pat
        }
        _ => return None,
    };
    Some(json!({ "expect": pattern }))
}

/// The address of a source or target in the value mapping: `{"source": {"address": …}}`.
fn terminus_address(t: Option<&Json>) -> Option<Json> {
    let (kind, inner) = t?.as_object()?.iter().next()?;
    let address = inner.get("address")?;
    Some(json!({ kind.clone(): { "address": address } }))
}

/// Application-property keys whose values differ from run to run.
fn volatile(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["time", "id", "token", "expir", "lock", "sequence", "offset", "date"]
        .iter()
        .any(|w| k.contains(w))
}

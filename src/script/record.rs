//! Recording a session as a script: one side's frames as `send` steps, the other's as
//! `expect` steps, with what changes from run to run turned into wildcards, so that the
//! script replays the recorded side against a fresh peer and reports where the peer's
//! answers diverge.
//!
//! What an `expect` keeps of the peer's frame:
//! - headers: the protocol id;
//! - `open`, `begin`, `close`, `end`: the performative, and the error's condition, or
//!   that there is none (connection and session parameters differ between peers and
//!   versions);
//! - `attach`: name, role and the addresses of source and target;
//! - `transfer`: handle, settled when it is set, and of its message the application
//!   properties but for values that name times, ids or tokens;
//! - `disposition`: role, first, last, settled when it is set, and the outcome's kind;
//! - `detach`: handle, closed when it is set, and the error's condition or that there is
//!   none.
//!
//! A flag that is false is not expected: a peer may leave it out, which means the same.
//! The peer's `open`, when it came before the recorded side's own, is expected after it:
//! each side sends its open without waiting for the other's, and a server that waits for
//! the client's open would otherwise never be given it.
//!
//! The peer's sessions and links are named by variables its `begin` and `attach` bind
//! (`$channel-N`, `$handle-N-H`; see [`CHANNEL_VAR`]), so that a replay holds against a
//! peer that numbers them otherwise; a begin keeps which of our sessions it answers.
//!
//! The recorded side's heartbeats (empty frames) are not sent as steps: when they go out is
//! a matter of time, and sent in a row they would all go at once, then nothing for as long
//! as the recording was quiet. The script starts with `{"keepalive": true}` instead: the
//! replay keeps the peer's idle-time-out itself.
//!
//! `flow` frames are not expected (the script starts with `{"ignore": ["flow"]}`): how
//! often a peer sends them is its own business. But before the first transfer of each
//! link the recorded side sends, the other side's flow for that link is expected, when
//! one came before it: a replay must not send a transfer before the peer has granted
//! credit, as a scripted server would to a client that enforces it. The recorded side's
//! frames are sent as they were, byte for byte ([`typed`](crate::inspect::typed) and
//! `payload`), but for the `remote-channel` of a `begin` that answers one of the peer's,
//! which names the peer's session by its variable.

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
    /// Whether the replayed side has sent its `open`.
    opened: bool,
    /// The other side's steps from its `open` on, while the replayed side has not sent
    /// its own: held back until it has (see [`Recorder::push`]).
    held: Vec<Json>,
    /// The replayed side's sending links, by recorded channel and handle: the credit
    /// their transfers went out on.
    sending: std::collections::HashMap<(u64, u64), Sending>,
    /// Termini the replayed side asked the peer to make (`dynamic`): link name and
    /// `source` or `target`, until the peer's attach answers.
    dynamic_asked: Vec<(String, String)>,
    /// The addresses the peer chose for them (as the steps write them) and the variables
    /// they are named by (`$dynamic-1`…), so a replay holds against a peer that chooses
    /// another, and the replayed side's later frames use the one it chose.
    dynamic: Vec<(String, String)>,
    /// The other side's sessions and links, by the variables their patterns name them by.
    peer: PeerNames,
}

/// A sending link of the replayed side, and the credit its deliveries went out on: in the
/// recording (from the other side's flows), and in a replay (from the flows it expects).
#[derive(Debug)]
struct Sending {
    name: String,
    /// Its delivery-count in the recording (initial-delivery-count plus deliveries sent).
    delivery_count: u32,
    /// Whether its last transfer said `more` (the next one goes on the same delivery).
    more: bool,
    /// Credit left in the recording, as the other side's last flow left it, less the
    /// deliveries sent since (`None` before any flow).
    recorded_left: Option<i64>,
    /// Credit a replay can count on: what was left when its last flow was expected, less
    /// the deliveries sent since.
    replay_left: i64,
    /// A flow of the other side for this link came since the last one expected.
    flow_since: bool,
}

/// The variables a recording names the other side's channels and handles by: each
/// `begin` and `attach` of the peer binds a fresh one (`$channel-0`, `$handle-0-1`; a
/// number used again after its session or link ended gets `-2`, `-3`…), and its later
/// frames use it, so a replay holds against a peer that numbers them otherwise.
#[derive(Debug, Default)]
struct PeerNames {
    /// Recorded channel to the variable of the session on it now.
    channels: std::collections::HashMap<u64, String>,
    /// Recorded (channel, handle) to the variable of the link on it now, its name and
    /// its role (true: the peer receives on it), until the peer detaches it.
    handles: std::collections::HashMap<(u64, u64), (String, String, Option<bool>)>,
    /// How many variables each channel or (channel, handle) has had.
    used: std::collections::HashMap<String, u32>,
}

impl PeerNames {
    /// A fresh variable named after `base`.
    fn fresh(&mut self, base: String) -> String {
        let n = self.used.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}-{n}")
        }
    }

    /// Names the channel and handle of the peer's frame `line` in its `pattern` by
    /// variables: a begin or attach binds fresh ones.
    fn name(&mut self, line: &Json, pattern: &mut Json) {
        let performative = line.get("performative").and_then(Json::as_str).unwrap_or_default();
        if matches!(performative, "open" | "close") || performative.starts_with("sasl-") {
            return;
        }
        let Some(channel) = line.get("channel").and_then(Json::as_u64) else { return };
        if performative == "begin" || !self.channels.contains_key(&channel) {
            let var = self.fresh(format!("{CHANNEL_VAR}{channel}"));
            self.channels.insert(channel, var);
        }
        if let Some(var) = self.channels.get(&channel) {
            pattern["channel"] = json!(format!("${var}"));
        }
        let Some(handle) = line.pointer("/fields/handle").and_then(Json::as_u64) else { return };
        if performative == "attach" {
            let name = line.pointer("/fields/name").and_then(Json::as_str).unwrap_or_default();
            let role = line.pointer("/fields/role").and_then(Json::as_bool);
            let var = self.fresh(format!("{HANDLE_VAR}{channel}-{handle}"));
            self.handles.insert((channel, handle), (var, name.to_owned(), role));
        }
        if let Some((var, _, _)) = self.handles.get(&(channel, handle)) {
            if let Some(fields) = pattern.get_mut("fields").and_then(Json::as_object_mut) {
                if fields.contains_key("handle") || performative == "attach" {
                    fields.insert("handle".into(), json!(format!("${var}")));
                }
            } else if performative == "attach" {
                pattern["fields"] = json!({ "handle": format!("${var}") });
            }
        }
        // The peer's end of the link is gone: a later attach of the name is another.
        if performative == "detach" {
            self.handles.remove(&(channel, handle));
        }
    }

    /// Our `begin` (its `send` step) that answers a session the peer began names the
    /// peer's channel in `remote-channel` by that session's variable: a replay answers
    /// the session the peer began, on whatever channel it chose.
    fn answer(&self, line: &Json, step: &mut Json) {
        let Some(remote) = line.pointer("/fields/remote-channel").and_then(Json::as_u64) else {
            return;
        };
        let Some(var) = self.channels.get(&remote) else { return };
        // The typed form: a described list (`[…]`, or `{"list": […], "code": …}` when
        // it was not written in its smallest form) whose first item is remote-channel.
        let Some(list) = step.pointer_mut("/send/typed/described/1") else { return };
        let list = match list {
            Json::Object(o) => o.get_mut("list"),
            other => Some(other),
        };
        if let Some(Json::Object(item)) = list.and_then(|l| l.get_mut(0)) {
            if item.get("ushort").and_then(Json::as_u64) == Some(remote) {
                item.insert("ushort".into(), json!(format!("${var}")));
            }
        }
    }

    /// The variables of the peer's end of the link called `name`: its channel's and its
    /// handle's, when it attached it.
    fn link(&self, name: &str) -> Option<(String, String)> {
        // The peer's receiving end (the one whose flows grant our sender credit); a name
        // may be used both ways, as a request-response pair does.
        let ((channel, _), (var, _, _)) =
            self.handles.iter().find(|(_, (_, n, role))| n == name && *role != Some(false))?;
        Some((self.channels.get(channel)?.clone(), var.clone()))
    }
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
        Self {
            inspectors: [new(), new()],
            lines: vec![json!({ "ignore": ["flow"] }), json!({ "keepalive": true })],
            taken: 0,
            opened: false,
            held: Vec::new(),
            sending: std::collections::HashMap::new(),
            dynamic_asked: Vec::new(),
            dynamic: Vec::new(),
            peer: PeerNames::default(),
        }
    }

    /// Bytes the replayed side sent.
    pub fn ours(&mut self, data: &[u8]) {
        self.push(0, data);
    }

    /// Bytes the other side sent.
    pub fn theirs(&mut self, data: &[u8]) {
        self.push(1, data);
    }

    /// The other side's flow for its link `handle` on `channel`: the credit it leaves the
    /// replayed side's sending link of the same name (each of them, when the name is not
    /// known: a flow the replay cannot tie to one link).
    fn peer_flow(&mut self, channel: u64, handle: u64, line: &Json) {
        let link = self.peer.handles.get(&(channel, handle));
        // The flow of a link the peer sends on (its own credit, a drain answered) grants
        // our senders nothing.
        if link.is_some_and(|(_, _, role)| *role == Some(false)) {
            return;
        }
        let name = link.map(|(_, n, _)| n.clone());
        let credit = line.pointer("/fields/link-credit").and_then(Json::as_u64).unwrap_or(0);
        let count = line.pointer("/fields/delivery-count").and_then(Json::as_u64);
        for s in self.sending.values_mut() {
            // Of the link of that name; a flow of a link the recording cannot name, for
            // any of them.
            if name.as_ref().is_some_and(|n| n != &s.name) {
                continue;
            }
            // 2.6.7: link-credit(snd) = delivery-count(rcv) + link-credit(rcv) -
            // delivery-count(snd); without the receiver's count, as granted.
            let lag = count.map_or(0, |c| s.delivery_count.wrapping_sub(c as u32) as i32);
            s.recorded_left = Some(credit as i64 - i64::from(lag));
            s.flow_since = true;
        }
    }

    /// Before the replayed side's transfer `line` on `handle` of `channel`: the flow its
    /// delivery waits for, when the credit the replay counts on is used up and the other
    /// side granted more in the recording.
    /// The replayed side's own flow for its sending link `handle` on `channel`: a
    /// delivery-count it advanced (a drain used its credit up) leaves that much less
    /// credit, in the recording and in a replay.
    fn our_flow(&mut self, channel: u64, handle: u64, line: &Json) {
        let Some(s) = self.sending.get_mut(&(channel, handle)) else { return };
        let Some(count) = line.pointer("/fields/delivery-count").and_then(Json::as_u64) else {
            return;
        };
        let advanced = (count as u32).wrapping_sub(s.delivery_count) as i32;
        if advanced > 0 {
            s.delivery_count = count as u32;
            s.replay_left -= i64::from(advanced);
            s.recorded_left = s.recorded_left.map(|c| c - i64::from(advanced));
        }
    }

    fn before_transfer(&mut self, channel: u64, handle: u64, line: &Json) {
        let Some(s) = self.sending.get_mut(&(channel, handle)) else { return };
        let continued = std::mem::replace(
            &mut s.more,
            line.pointer("/fields/more").and_then(Json::as_bool) == Some(true)
                && line.pointer("/fields/aborted").and_then(Json::as_bool) != Some(true),
        );
        if continued {
            return; // the same delivery: no credit of its own
        }
        let mut wait = None;
        if s.replay_left <= 0 && std::mem::take(&mut s.flow_since) {
            s.replay_left = s.recorded_left.unwrap_or(1);
            wait = Some(s.name.clone());
        }
        s.replay_left -= 1;
        s.recorded_left = s.recorded_left.map(|c| c - 1);
        s.delivery_count = s.delivery_count.wrapping_add(1);
        if let Some(name) = wait {
            let mut flow = json!({ "performative": "flow" });
            match self.peer.link(&name) {
                Some((channel, handle)) => {
                    flow["channel"] = json!(format!("${channel}"));
                    flow["fields"] = json!({ "handle": format!("${handle}") });
                }
                None => flow["fields"] = json!({ "handle": "*" }),
            }
            self.lines.push(json!({ "expect": flow }));
        }
    }

    /// The peer's attach answering one whose terminus the replayed side asked it to make:
    /// the address it chose is named by a variable in `pattern`.
    fn name_dynamic(&mut self, line: &Json, pattern: &mut Json) {
        let name = line.pointer("/fields/name").and_then(Json::as_str).unwrap_or_default();
        let Some(i) = self.dynamic_asked.iter().position(|(n, _)| n == name) else { return };
        let (_, kind) = self.dynamic_asked.remove(i);
        let at = format!("/fields/{kind}/{kind}/address");
        let Some(Json::String(address)) = pattern.pointer_mut(&at) else { return };
        let var = format!("dynamic-{}", self.dynamic.len() + 1);
        let chosen = std::mem::replace(address, format!("${var}"));
        self.dynamic.push((chosen, var));
    }

    fn push(&mut self, side: usize, data: &[u8]) {
        let Some(inspector) = self.inspectors.get_mut(side) else { return };
        inspector.push(data);
        let records: Vec<Record> = std::iter::from_fn(|| inspector.next_record()).collect();
        for r in &records {
            let Some(line) = record_json(r).into_iter().next() else { continue };
            let performative = line.get("performative").and_then(Json::as_str);
            let handle = line.pointer("/fields/handle").and_then(Json::as_u64);
            let channel = line.get("channel").and_then(Json::as_u64).unwrap_or(0);
            if side == 0 {
                let Some(mut step) = send_step(&line) else { continue };
                for (address, var) in &self.dynamic {
                    replace_strings(&mut step, address, &format!("${var}"));
                }
                if performative == Some("attach") {
                    for kind in ["source", "target"] {
                        let t = line.pointer(&format!("/fields/{kind}/{kind}/dynamic"));
                        if t.and_then(Json::as_bool) == Some(true) {
                            let name = line.pointer("/fields/name").and_then(Json::as_str);
                            self.dynamic_asked
                                .push((name.unwrap_or_default().to_owned(), kind.to_owned()));
                        }
                    }
                }
                if performative == Some("begin") {
                    self.peer.answer(&line, &mut step);
                }
                match (performative, handle) {
                    // A sender's attach (role false).
                    (Some("attach"), Some(h))
                        if line.pointer("/fields/role").and_then(Json::as_bool) == Some(false) =>
                    {
                        let name = line.pointer("/fields/name").and_then(Json::as_str);
                        let initial = line.pointer("/fields/initial-delivery-count");
                        let sending = Sending {
                            name: name.unwrap_or_default().to_owned(),
                            delivery_count: initial.and_then(Json::as_u64).unwrap_or(0) as u32,
                            more: false,
                            recorded_left: None,
                            replay_left: 0,
                            flow_since: false,
                        };
                        self.sending.insert((channel, h), sending);
                    }
                    // A delivery went out on credit the other side granted in a flow: when
                    // what the replay counts on is used up, it waits for the flow that
                    // granted more (the first delivery's, or a later one), so that it
                    // never sends a transfer beyond the peer's credit (2.6.7).
                    (Some("transfer"), Some(h)) => self.before_transfer(channel, h, &line),
                    (Some("flow"), Some(h)) => self.our_flow(channel, h, &line),
                    _ => {}
                }
                self.lines.push(step);
                if performative == Some("open") {
                    self.opened = true;
                    self.lines.append(&mut self.held);
                }
                continue;
            }
            if let (Some("flow"), Some(h)) = (performative, handle) {
                self.peer_flow(channel, h, &line);
            }
            let Some(mut step) = expect_step(&line) else {
                // (A flow is not expected, but its session keeps its name.)
                self.peer.name(&line, &mut json!({}));
                continue;
            };
            if let Some(pattern) = step.get_mut("expect") {
                self.peer.name(&line, pattern);
                // An address the peer chose, which later frames name (ours and the
                // peer's answers to them).
                for (address, var) in &self.dynamic {
                    replace_strings(pattern, address, &format!("${var}"));
                }
                if performative == Some("attach") {
                    self.name_dynamic(&line, pattern);
                }
            }
            // Each side sends its open on its own, after the headers (2.4.1): a peer that
            // sent its open first (a server that pipelines it after its header) did not
            // make ours wait for it. Expected before ours, it would make a replay wait for
            // an open that a server which waits for the client's never sends.
            let is_open =
                step.pointer("/expect/performative").and_then(Json::as_str) == Some("open");
            if !self.held.is_empty() || (is_open && !self.opened) {
                self.held.push(step);
            } else {
                self.lines.push(step);
            }
        }
    }

    /// The recording is over: steps held back for an `open` of the replayed side that
    /// never came are added as they were seen.
    pub fn finish(&mut self) {
        // The recorded side's stream that ended inside a frame: its last bytes are sent
        // as they were.
        let rest = self.inspectors[0].finish().map(|r| record_json(&r));
        if let Some(step) = rest.as_ref().and_then(|l| l.first()).and_then(send_step) {
            self.lines.push(step);
        }
        self.lines.append(&mut self.held);
    }

    /// The script so far, as JSON lines (with any steps still held back at the end).
    pub fn script(&self) -> String {
        let mut s = lines(&self.lines);
        s.push_str(&lines(&self.held));
        s
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
    // Heartbeats go out when time says, not in the exchange's order: the replay keeps the
    // peer's idle-time-out itself (`keepalive`), rather than send them all at once.
    if o.get("performative").and_then(Json::as_str) == Some("empty") {
        return None;
    }
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
        Some("header" | "frame") => {
            let mut keep = Json::Object(keep);
            escape_dollars(&mut keep);
            Some(json!({ "send": keep }))
        }
        // What the recorded side sent that could not be split into frames (a bad frame
        // header and what followed it, a stream that ended inside a frame) is sent as the
        // bytes it was: a replay misbehaves as the recorded side did.
        Some("error" | "undecoded") => Some(json!({ "send": o.get("raw")?.as_str()? })),
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
                // Which of our sessions it answers: our channels are as recorded.
                "begin" => pick(&["remote-channel"]),
                "attach" => {
                    let mut m = pick(&["name", "role"]);
                    for t in ["source", "target"] {
                        if let Some(addr) = terminus_address(fields.and_then(|f| f.get(t))) {
                            m.insert(t.into(), addr);
                        }
                    }
                    m
                }
                // A flag left out or null means false for these (and continuation
                // transfers carry the first's): only a flag that is set is expected, so
                // that a peer that leaves it out and one that says false both match.
                "transfer" => {
                    pick(&["handle"]).into_iter().chain(set_flag(fields, "settled")).collect()
                }
                "disposition" => {
                    let mut m = pick(&["role", "first", "last"]);
                    m.extend(set_flag(fields, "settled"));
                    if let Some(Json::Object(state)) = fields.and_then(|f| f.get("state")) {
                        // The outcome's kind, not its details.
                        let kinds: Map<String, Json> =
                            state.keys().map(|k| (k.clone(), json!("*"))).collect();
                        m.insert("state".into(), Json::Object(kinds));
                    }
                    m
                }
                "detach" => {
                    let mut m = pick(&["handle"]);
                    m.extend(set_flag(fields, "closed"));
                    m
                }
                // A refused login where the recorded one passed (or the reverse) has
                // diverged there, not at whatever comes next.
                "sasl-outcome" => pick(&["code"]),
                _ => Map::new(),
            };
            if let Some(cond) = fields
                .and_then(|f| f.get("error"))
                .and_then(|e| e.get("error"))
                .and_then(|e| e.get("condition"))
            {
                f.insert("error".into(), json!({ "error": { "condition": cond } }));
            } else if matches!(p, "detach" | "end" | "close") {
                // Ended without an error: a peer that ends with one has diverged.
                f.insert("error".into(), Json::Null);
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
    let mut pattern = pattern;
    escape_dollars(&mut pattern);
    Some(json!({ "expect": pattern }))
}

/// Strings that start with `$` (`$cbs`, `$management`, a broker's `$dynamic/…` address)
/// written `$$…`, as they are, rather than read as variables by the player.
fn escape_dollars(j: &mut Json) {
    match j {
        Json::String(s) if s.starts_with('$') => s.insert(0, '$'),
        Json::Array(a) => a.iter_mut().for_each(escape_dollars),
        Json::Object(o) => o.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

/// Every string of `j` that is `from`, made `to`.
fn replace_strings(j: &mut Json, from: &str, to: &str) {
    match j {
        Json::String(s) if s == from => *s = to.to_owned(),
        Json::Array(a) => a.iter_mut().for_each(|v| replace_strings(v, from, to)),
        Json::Object(o) => o.values_mut().for_each(|v| replace_strings(v, from, to)),
        _ => {}
    }
}

/// The prefix of the variables a recording names the peer's channels by
/// (`$channel-0`…): bound by the peer's `begin`.
pub const CHANNEL_VAR: &str = "channel-";

/// The prefix of the variables a recording names the peer's handles by (`$handle-0-1`:
/// channel 0, handle 1): bound by the peer's `attach`.
pub const HANDLE_VAR: &str = "handle-";

/// `name: true` when the flag `name` of `fields` is set; nothing when it is false, null or
/// left out.
fn set_flag(fields: Option<&Map<String, Json>>, name: &str) -> Option<(String, Json)> {
    let set = fields.and_then(|f| f.get(name)).and_then(Json::as_bool) == Some(true);
    set.then(|| (name.to_owned(), Json::Bool(true)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::encode::encode_lines;

    fn bytes(lines: &[&str]) -> Vec<u8> {
        encode_lines(&lines.join("\n")).expect("encode")
    }

    fn steps(r: &Recorder) -> Vec<String> {
        let script = r.script();
        let mut lines = script.lines();
        // Every recording starts so.
        assert_eq!(lines.next(), Some(r#"{"ignore":["flow"]}"#));
        assert_eq!(lines.next(), Some(r#"{"keepalive":true}"#));
        lines
            .map(|l| {
                let j: Json = serde_json::from_str(l).expect("a line");
                let (verb, body) = j.as_object().and_then(|o| o.iter().next()).expect("a step");
                let what = body
                    .get("performative")
                    .or_else(|| body.get("kind"))
                    .and_then(Json::as_str)
                    .unwrap_or("?");
                format!("{verb} {what}")
            })
            .collect()
    }

    const HEADER: &str = r#"{"kind":"header","protocol":"AMQP"}"#;
    const OPEN: &str = r#"{"performative":"open","fields":{"container-id":"c"}}"#;

    /// The recorded side's bytes that do not split into frames are replayed as they were:
    /// the bad frame header and what came with it, and each piece that came after it.
    #[test]
    fn what_the_recorded_side_sent_after_its_stream_broke_is_sent_as_it_was() {
        let mut r = Recorder::new();
        r.opened = true;
        let good = bytes(&[HEADER, OPEN]);
        let bad = b"\x00\x00\x00\x10\x00\x00\x00\x00garbage!";
        r.ours(&[&good[..], &bad[..]].concat());
        r.ours(b"more");
        r.ours(b"");
        r.finish();
        let script = r.script();
        let sends: Vec<Json> = script
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok()?.get("send").cloned())
            .collect();
        assert_eq!(sends.len(), 4, "{script}");
        assert_eq!(sends[2], json!(crate::inspect::hex(bad)));
        assert_eq!(sends[3], json!(crate::inspect::hex(b"more")));
        // Played, the script writes the recorded side's bytes, all of them.
        let mut player = crate::script::player::Player::new(
            crate::script::player::parse(&script, std::time::Duration::from_secs(1))
                .expect("steps"),
        );
        player.start(crate::time::Instant::now());
        let mut out = Vec::new();
        player.poll_transmit(&mut out);
        assert_eq!(out, [&good[..], &bad[..], b"more"].concat());
        // A stream that ends inside a frame: its last bytes too, once the recording ends.
        let mut r = Recorder::new();
        r.ours(&[&good[..], b"\x00\x00\x00\x20\x02"].concat());
        assert_eq!(r.script().lines().filter(|l| l.contains("send")).count(), 2);
        r.finish();
        assert!(r.script().ends_with("{\"send\":\"0000002002\"}\n"), "{}", r.script());
    }

    #[test]
    fn a_peer_open_that_came_first_is_expected_after_ours() {
        let mut r = Recorder::new();
        r.ours(&bytes(&[HEADER]));
        // A server that pipelines its open after its header.
        r.theirs(&bytes(&[HEADER, OPEN]));
        // The two first lines, our header and theirs.
        assert_eq!(r.take_new().lines().count(), 4, "the open is held back");
        r.ours(&bytes(&[OPEN, r#"{"performative":"begin","channel":0,"fields":{"next-outgoing-id":0,"incoming-window":10,"outgoing-window":10}}"#]));
        r.theirs(&bytes(&[r#"{"performative":"begin","fields":{"remote-channel":0,"next-outgoing-id":0,"incoming-window":10,"outgoing-window":10}}"#]));
        assert_eq!(
            steps(&r),
            [
                "send header",
                "expect header",
                "send frame",
                "expect open",
                "send frame",
                "expect begin"
            ]
        );
        // A peer that waited for ours is recorded as it came.
        let mut r = Recorder::new();
        r.ours(&bytes(&[HEADER, OPEN]));
        r.theirs(&bytes(&[HEADER, OPEN]));
        assert_eq!(steps(&r), ["send header", "send frame", "expect header", "expect open"]);
        // A recording that ends before our open keeps what was held back.
        let mut r = Recorder::new();
        r.ours(&bytes(&[HEADER]));
        r.theirs(&bytes(&[HEADER, OPEN]));
        let _ = r.take_new();
        r.finish();
        assert_eq!(r.take_new().trim(), r#"{"expect":{"performative":"open"}}"#);
    }

    #[test]
    fn a_link_s_first_transfer_waits_for_the_peer_s_credit() {
        let attach = |role: &str, handle: u32| {
            format!(
                r#"{{"performative":"attach","fields":{{"name":"l{handle}","handle":{handle},"role":"{role}"}}}}"#
            )
        };
        let flow = r#"{"performative":"flow","fields":{"next-incoming-id":0,"incoming-window":9,"next-outgoing-id":0,"outgoing-window":9,"handle":0,"delivery-count":0,"link-credit":5}}"#;
        let transfer = |handle: u32, id: u32| {
            format!(
                r#"{{"performative":"transfer","fields":{{"handle":{handle},"delivery-id":{id},"delivery-tag":"0{id}"}},"data":"m"}}"#
            )
        };
        let mut r = Recorder::new();
        r.opened = true;
        // A server's side: we attach a sender, a flow comes for a link the recording cannot
        // name (the client's attach came before it began), we send twice on it.
        r.theirs(&bytes(&[HEADER]));
        r.ours(&bytes(&[HEADER, &attach("sender", 3)]));
        r.theirs(&bytes(&[flow]));
        r.ours(&bytes(&[&transfer(3, 0), &transfer(3, 1)]));
        assert_eq!(
            steps(&r),
            [
                "expect header",
                "send header",
                "send frame",
                "expect flow",
                "send frame",
                "send frame"
            ]
        );
        assert!(r
            .script()
            .contains(r#"{"expect":{"performative":"flow","fields":{"handle":"*"}}}"#));
        // Of the link by its name: the peer's end of "l3" is its handle 0 on channel 0.
        let mut r = Recorder::new();
        r.opened = true;
        r.ours(&bytes(&[HEADER, &attach("sender", 3)]));
        r.theirs(&bytes(&[HEADER, &attach("receiver", 0).replace("\"l0\"", "\"l3\""), flow]));
        r.ours(&bytes(&[&transfer(3, 0)]));
        let flow_step = r#"{"expect":{"performative":"flow","channel":"$channel-0","fields":{"handle":"$handle-0-0"}}}"#;
        assert!(r.script().contains(flow_step), "{}", r.script());
        // Our transfers on a link that never waited for a flow of theirs: none expected.
        let mut r = Recorder::new();
        r.opened = true;
        r.ours(&bytes(&[HEADER, &attach("sender", 0), &transfer(0, 0)]));
        assert!(!r.script().contains(r#""performative":"flow""#), "{}", r.script());
    }

    #[test]
    fn only_the_peer_s_receiving_link_of_the_name_grants_and_a_drain_uses_the_credit_up() {
        // A pair of links named "l" both ways: the peer's sender "l" (handle 0, its flow
        // of 100 is its own credit) and its receiver "l" (handle 1, which grants ours 2).
        let attach = |role: &str, handle: u32| {
            format!(
                r#"{{"performative":"attach","fields":{{"name":"l","handle":{handle},"role":"{role}"}}}}"#
            )
        };
        let flow = |handle: u32, count: u32, credit: u32, drain: bool| {
            format!(
                r#"{{"performative":"flow","fields":{{"next-incoming-id":0,"incoming-window":9,"next-outgoing-id":0,"outgoing-window":9,"handle":{handle},"delivery-count":{count},"link-credit":{credit},"drain":{drain}}}}}"#
            )
        };
        let transfer = |id: u32| {
            format!(
                r#"{{"performative":"transfer","fields":{{"handle":7,"delivery-id":{id},"delivery-tag":"0{id}"}},"data":"m"}}"#
            )
        };
        let mut r = Recorder::new();
        r.opened = true;
        r.theirs(&bytes(&[HEADER, &attach("sender", 0), &attach("receiver", 1)]));
        r.ours(&bytes(&[HEADER, &attach("sender", 7)]));
        r.theirs(&bytes(&[&flow(0, 0, 100, false), &flow(1, 0, 10, true)]));
        r.ours(&bytes(&[&transfer(0), &transfer(1)]));
        // Drained: our flow moves delivery-count to 10, using the other 8 up.
        r.ours(&bytes(&[&flow(7, 10, 0, true)]));
        r.theirs(&bytes(&[&flow(0, 0, 100, false)]));
        r.theirs(&bytes(&[&flow(1, 10, 1, false)]));
        r.ours(&bytes(&[&transfer(2)]));
        let script = r.script();
        let after: Vec<String> = steps(&r).into_iter().skip(5).collect();
        assert_eq!(
            after,
            ["expect flow", "send frame", "send frame", "send frame", "expect flow", "send frame"],
            "{script}"
        );
        // Each expects the flow of the peer's receiver "l" (bound by its attach), never
        // its sender's.
        assert_eq!(script.matches(r#""handle":"$handle-0-1""#).count(), 3, "{script}");
        // Detached and attached again on another handle: the new one is expected.
        r.theirs(&bytes(&[
            r#"{"performative":"detach","fields":{"handle":1,"closed":true}}"#,
            &attach("receiver", 4),
            &flow(4, 11, 1, false),
        ]));
        r.ours(&bytes(&[&transfer(3)]));
        assert!(r.script().contains(r#"{"expect":{"performative":"flow","channel":"$channel-0","fields":{"handle":"$handle-0-4"}}}"#), "{}", r.script());
    }

    #[test]
    fn addresses_the_peer_chose_are_variables_dollar_texts_are_kept_and_sasl_codes_checked() {
        // We (a client) ask for a dynamic source; the server chooses "tmp-7", and our
        // later attach sends to it: both name it `$dynamic-1`, which the replay binds to
        // whatever the server chooses then. `$cbs` is the text `$cbs` (`$$cbs`), not a
        // variable, both ways. The server's sasl-outcome is expected with its code.
        let ours = r#"{"performative":"attach","fields":{"name":"r","handle":0,"role":"receiver","source":{"source":{"dynamic":true}},"target":{"target":{"address":"$cbs"}}}}"#;
        let theirs = r#"{"performative":"attach","fields":{"name":"r","handle":5,"role":"sender","source":{"source":{"address":"tmp-7","dynamic":true}},"target":{"target":{"address":"$cbs"}}}}"#;
        let later = r#"{"performative":"attach","fields":{"name":"s","handle":1,"role":"sender","target":{"target":{"address":"tmp-7"}}}}"#;
        let echo = r#"{"performative":"attach","fields":{"name":"s","handle":6,"role":"receiver","target":{"target":{"address":"tmp-7"}}}}"#;
        let outcome = r#"{"performative":"sasl-outcome","fields":{"code":1}}"#;
        let mut r = Recorder::new();
        r.opened = true;
        r.theirs(&bytes(&[r#"{"kind":"header","protocol_id":3}"#, outcome]));
        r.ours(&bytes(&[HEADER, ours]));
        r.theirs(&bytes(&[HEADER, theirs]));
        r.ours(&bytes(&[later]));
        r.theirs(&bytes(&[echo]));
        let script = r.script();
        let lines: Vec<Json> =
            script.lines().map(|l| serde_json::from_str(l).expect("a line")).collect();
        let expects: Vec<&Json> = lines.iter().filter_map(|l| l.get("expect")).collect();
        let sends: Vec<&Json> = lines.iter().filter_map(|l| l.get("send")).collect();
        assert!(expects.iter().any(|e| e.pointer("/fields/code") == Some(&json!(1))), "{script}");
        let attach = |name: &str| {
            expects
                .iter()
                .find(|e| e.pointer("/fields/name") == Some(&json!(name)))
                .copied()
                .unwrap_or_else(|| panic!("{script}"))
        };
        assert_eq!(
            attach("r").pointer("/fields/source/source/address"),
            Some(&json!("$dynamic-1"))
        );
        assert_eq!(attach("r").pointer("/fields/target/target/address"), Some(&json!("$$cbs")));
        assert_eq!(
            attach("s").pointer("/fields/target/target/address"),
            Some(&json!("$dynamic-1"))
        );
        let sent = serde_json::to_string(&sends).expect("JSON");
        assert!(sent.contains(r#""$$cbs""#) && sent.contains(r#""$dynamic-1""#), "{sent}");
        assert!(!sent.contains("tmp-7"), "{sent}");
        // The player reads them so: `$$cbs` matches the text `$cbs` only.
        let mut bound = std::collections::HashMap::new();
        assert!(crate::script::player::matches(&json!("$$cbs"), &json!("$cbs"), &mut bound));
        assert!(!crate::script::player::matches(&json!("$$cbs"), &json!("x"), &mut bound));
        assert!(bound.is_empty());
    }

    #[test]
    fn a_delivery_past_the_credit_the_replay_counts_on_waits_for_the_flow_that_granted_more() {
        // The client grants 2, we send 2; it grants 3 more (after settling), we send a
        // third, in two frames (one delivery, one credit), then a fourth and a fifth on
        // the same grant: one flow is expected before the third, none before the others.
        let attach = |role: &str| {
            format!(
                r#"{{"performative":"attach","fields":{{"name":"l","handle":0,"role":"{role}"}}}}"#
            )
        };
        let flow = |count: u32, credit: u32| {
            format!(
                r#"{{"performative":"flow","fields":{{"next-incoming-id":0,"incoming-window":9,"next-outgoing-id":0,"outgoing-window":9,"handle":0,"delivery-count":{count},"link-credit":{credit}}}}}"#
            )
        };
        let transfer = |id: u32, more: bool| {
            format!(
                r#"{{"performative":"transfer","fields":{{"handle":0,"delivery-id":{id},"delivery-tag":"0{id}","more":{more}}},"data":"m"}}"#
            )
        };
        let mut r = Recorder::new();
        r.opened = true;
        r.theirs(&bytes(&[HEADER, &attach("receiver")]));
        r.ours(&bytes(&[HEADER, &attach("sender")]));
        r.theirs(&bytes(&[&flow(0, 2)]));
        r.ours(&bytes(&[&transfer(0, false), &transfer(1, false)]));
        r.theirs(&bytes(&[&flow(2, 3)]));
        r.ours(&bytes(&[&transfer(2, true), &transfer(2, false)]));
        r.ours(&bytes(&[&transfer(3, false), &transfer(4, false)]));
        let after: Vec<String> = steps(&r).into_iter().skip(4).collect();
        assert_eq!(
            after,
            [
                "expect flow",
                "send frame",
                "send frame",
                "expect flow",
                "send frame",
                "send frame",
                "send frame",
                "send frame"
            ],
            "{}",
            r.script()
        );
        // A flow that crossed transfers in flight counts them off its grant: granted 2 at
        // delivery-count 0 after we sent 1, it leaves 1 more, then one is expected again.
        let mut r = Recorder::new();
        r.opened = true;
        r.theirs(&bytes(&[HEADER, &attach("receiver")]));
        r.ours(&bytes(&[HEADER, &attach("sender")]));
        r.theirs(&bytes(&[&flow(0, 1)]));
        r.ours(&bytes(&[&transfer(0, false)]));
        r.theirs(&bytes(&[&flow(0, 2)]));
        r.ours(&bytes(&[&transfer(1, false)]));
        r.theirs(&bytes(&[&flow(2, 1)]));
        r.ours(&bytes(&[&transfer(2, false)]));
        let after: Vec<String> = steps(&r).into_iter().skip(4).collect();
        assert_eq!(
            after,
            ["expect flow", "send frame", "expect flow", "send frame", "expect flow", "send frame"],
            "{}",
            r.script()
        );
    }

    #[test]
    fn the_peer_s_channels_and_handles_are_named_by_variables_its_begins_and_attaches_bind() {
        let begin = |remote: u32| {
            format!(
                r#"{{"performative":"begin","channel":{remote},"fields":{{"remote-channel":{remote},"next-outgoing-id":0,"incoming-window":9,"outgoing-window":9}}}}"#
            )
        };
        let attach = |channel: u32, handle: u32, name: &str| {
            format!(
                r#"{{"performative":"attach","channel":{channel},"fields":{{"name":"{name}","handle":{handle},"role":"sender"}}}}"#
            )
        };
        let detach = |channel: u32, handle: u32| {
            format!(
                r#"{{"performative":"detach","channel":{channel},"fields":{{"handle":{handle},"closed":true}}}}"#
            )
        };
        let end = r#"{"performative":"end","channel":0}"#;
        let mut r = Recorder::new();
        r.opened = true;
        r.theirs(&bytes(&[
            HEADER,
            &begin(0),
            &attach(0, 1, "a"),
            &detach(0, 1),
            &attach(0, 1, "b"),
            end,
            &begin(0),
            &attach(0, 1, "c"),
        ]));
        let patterns: Vec<Json> = r
            .script()
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter_map(|j| j.get("expect").cloned())
            .filter(|p| p.get("performative").is_some())
            .collect();
        let at = |i: usize, key: &str| patterns[i].pointer(key).cloned().unwrap_or(Json::Null);
        // The begin keeps which of our sessions it answers, and binds its channel.
        assert_eq!(at(0, "/channel"), "$channel-0");
        assert_eq!(at(0, "/fields/remote-channel"), 0);
        // Each attach binds a handle; its detach uses it; a number used again, and a
        // channel begun again, get fresh names.
        assert_eq!(at(1, "/fields/handle"), "$handle-0-1");
        assert_eq!(at(2, "/fields/handle"), "$handle-0-1");
        assert_eq!(at(3, "/fields/handle"), "$handle-0-1-2");
        assert_eq!(at(4, "/channel"), "$channel-0");
        assert_eq!(at(5, "/channel"), "$channel-0-2");
        assert_eq!(at(6, "/channel"), "$channel-0-2");
        assert_eq!(at(6, "/fields/handle"), "$handle-0-1-3");
    }

    #[test]
    fn our_begin_answers_the_peer_s_session_by_its_variable() {
        let begin = |channel: u32, remote: &str| {
            format!(
                r#"{{"performative":"begin","channel":{channel},"fields":{{"remote-channel":{remote},"next-outgoing-id":0,"incoming-window":9,"outgoing-window":9}}}}"#
            )
        };
        let mut r = Recorder::new();
        r.opened = true;
        r.theirs(&bytes(&[HEADER, &begin(5, "null")]));
        r.ours(&bytes(&[HEADER, &begin(0, "5"), &begin(1, "null")]));
        let sends: Vec<Json> = r
            .script()
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter_map(|j| j.pointer("/send/typed/described/1/0").cloned())
            .collect();
        // Our answer names the peer's channel by what its begin bound; our own begin of a
        // session (remote-channel null) is sent as it was.
        assert_eq!(sends, [json!({"ushort": "$channel-5"}), Json::Null]);
        // Played against a peer that begins on another channel, the answer names that one.
        let script = r.script();
        let steps = crate::script::player::parse(&script, std::time::Duration::from_secs(5));
        let mut p = crate::script::player::Player::new(steps.expect("a script"));
        let now = std::time::Instant::now();
        p.start(now);
        p.handle_input(&bytes(&[HEADER, &begin(2, "null")]), now);
        let mut out = Vec::new();
        p.poll_transmit(&mut out);
        let mut inspector = Inspector::new(DecodeOptions::LENIENT);
        inspector.push(&out);
        let answers: Vec<Json> = std::iter::from_fn(|| inspector.next_record())
            .filter_map(|r| record_json(&r).into_iter().next())
            .filter_map(|l| l.pointer("/fields/remote-channel").cloned())
            .collect();
        assert_eq!(answers, [json!(2), Json::Null]);
    }

    #[test]
    fn flags_that_are_false_or_left_out_are_not_expected() {
        let expect = |line: &str| -> Json {
            let mut r = Recorder::new();
            r.opened = true;
            r.theirs(&bytes(&[HEADER, line]));
            let last = r.script().lines().last().map(str::to_owned).unwrap_or_default();
            let mut pattern =
                serde_json::from_str::<Json>(&last).expect("a line")["expect"].clone();
            // A session's frames name their channel by the variable the begin binds.
            let channel = pattern.as_object_mut().and_then(|p| p.remove("channel"));
            let session = !matches!(pattern["performative"].as_str(), Some("open" | "close"));
            assert_eq!(channel, session.then(|| json!("$channel-0")), "{last}");
            pattern
        };
        let transfer = |settled: &str| {
            expect(&format!(
                r#"{{"performative":"transfer","fields":{{"handle":1,"delivery-id":0,"delivery-tag":{{"binary":"00"}}{settled}}}}}"#
            ))
        };
        let plain = json!({"performative": "transfer", "fields": {"handle": 1}});
        assert_eq!(transfer(""), plain);
        assert_eq!(transfer(r#","settled":false"#), plain);
        assert_eq!(transfer(r#","settled":null"#), plain);
        assert_eq!(
            transfer(r#","settled":true"#),
            json!({"performative": "transfer", "fields": {"handle": 1, "settled": true}})
        );
        let detach = expect(r#"{"performative":"detach","fields":{"handle":0,"closed":false}}"#);
        assert_eq!(
            detach,
            json!({"performative": "detach", "fields": {"handle": 0, "error": null}})
        );
        let detach = expect(r#"{"performative":"detach","fields":{"handle":0,"closed":true}}"#);
        let fields = json!({"handle": 0, "closed": true, "error": null});
        assert_eq!(detach, json!({"performative": "detach", "fields": fields}));
        // An error is expected by its condition; its absence as such.
        let close = expect(
            r#"{"performative":"close","fields":{"error":{"error":{"condition":"amqp:connection:forced"}}}}"#,
        );
        let fields = json!({"error": {"error": {"condition": "amqp:connection:forced"}}});
        assert_eq!(close, json!({"performative": "close", "fields": fields}));
        let close = expect(r#"{"performative":"close"}"#);
        assert_eq!(close, json!({"performative": "close", "fields": {"error": null}}));
        let d = expect(
            r#"{"performative":"disposition","fields":{"role":true,"first":0,"settled":false}}"#,
        );
        let fields = json!({"role": true, "first": 0, "last": null});
        assert_eq!(d, json!({"performative": "disposition", "fields": fields}));
    }
}

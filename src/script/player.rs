//! Scripted peers: a script of JSON lines played against a real peer, sans-IO.
//!
//! One step per line:
//!
//! | step | meaning |
//! | --- | --- |
//! | `{"send": {…}}` | write a header or frame in the [`encode`](super::encode) form; `{"send": "hex"}` writes bytes |
//! | `{"expect": {…}}` | the next header or frame from the peer matches the pattern (below) |
//! | `{"expect-close": true}` | the peer closes the connection (its stream ends) |
//! | `{"expect-silence": MS}` | nothing arrives for MS milliseconds |
//! | `{"wait": MS}` | let MS milliseconds pass |
//! | `{"close": true}` | close the connection |
//! | `{"half-close": true}` | end our stream, keep reading the peer's |
//! | `{"ignore": ["flow"]}` | from here on, skip the peer's frames of these performatives while expecting |
//! | `{"keepalive": true}` | from here on, keep the peer's idle-time-out (its `open`'s): an empty frame whenever nothing has been sent for half of it, as an engine's heartbeats would (recordings start with it, since when heartbeats go out is timing, not content) |
//! | `{"lenient": true}` | from here on, expectations only pace the script: a frame that does not match is skipped, a time limit passed moves on, the peer closing or its stream breaking off (a framing error) ends the script; nothing fails |
//! | `{"write": {"chunk": N, "delay": MS}}` | from here on, split what is sent into writes of N bytes, MS milliseconds apart |
//! | `{"sasl": {"mechanism": "SCRAM-SHA-256", "user": …, "password": …}}` | the client's whole SASL layer, computed: the SASL header, the mechanism checked against those offered, sasl-init, a response to each challenge, the outcome checked (SCRAM's server signature included); also ANONYMOUS, PLAIN, EXTERNAL, MSSBCBS |
//! | `{"sasl-server": {"users": {"alice": "secret"}, "anonymous": true}}` | a server's whole SASL layer, computed: waits for the client's SASL header, answers with its own and the mechanisms (SCRAM-SHA-256 and PLAIN for the users; ANONYMOUS, EXTERNAL, MSSBCBS when set true), judges sasl-init and each response (SCRAM's challenges computed), and sends the outcome, ok or not: the step is done once the outcome is sent, and the lines after it expect what the client does next |
//!
//! A pattern is a line of the trace format reduced to what matters: `{"kind": "header",
//! "protocol_id": 0}`, or `{"performative": "attach", "channel": 0, "fields": {"name": "*",
//! "handle": "$handle"}}`. Every key given must match; keys not given are not checked.
//! `"*"` matches any value that is present; `"$name"` matches anything the first time and
//! binds it, then must equal what it bound; `"$$text"` is the text `$text` (in `send`
//! steps too). A performative's fields may use the spec's
//! names as `send` steps do (`"role": "receiver"`, `"snd-settle-mode": "mixed"`). Bound names are substituted wherever they appear
//! in later `send` and `expect` steps. Heartbeats (empty frames) are skipped unless a
//! pattern asks for `"performative": "empty"`. Every expectation has a time limit: `within`
//! (milliseconds) on the step, else the player's default.
//!
//! A `disposition` pattern whose `first` is a number matches the deliveries it names,
//! however the peer groups them (2.7.6: an absent `last` is `first`): the peer may settle
//! them in one frame or in several, one after another from `first` on, and a frame that
//! settles more than the pattern names settles in advance those later patterns that name
//! the rest with the same role, settled flag and outcome. The other fields must match each
//! frame, as in any pattern.
//!
//! The player is sans-IO: bytes in with [`Player::handle_input`], bytes out with
//! [`Player::poll_transmit`], time passed in, and what to do with the transport from
//! [`Player::poll_action`]. [`Player::verdict`] says when it is over and how.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::codec::DecodeOptions;
use crate::inspect::json::record_json;
use crate::inspect::{render_text, Inspector, Record};

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write this line (encode form) or these bytes.
    Send(Json),
    /// The next item from the peer matches this pattern, within the time limit.
    Expect {
        /// The pattern.
        pattern: Json,
        /// The time limit.
        within: Duration,
    },
    /// The peer's stream ends, within the time limit.
    ExpectClose {
        /// The time limit.
        within: Duration,
    },
    /// Nothing arrives for this long.
    ExpectSilence(Duration),
    /// Time passes.
    Wait(Duration),
    /// Close the connection.
    Close,
    /// End our stream.
    HalfClose,
    /// From here on, skip the peer's frames of these performatives while expecting.
    Ignore(Vec<String>),
    /// From here on, expectations only pace the script (see the module documentation).
    Lenient,
    /// From here on, keep the peer's idle-time-out with empty frames.
    Keepalive,
    /// The client's SASL layer, computed by a [`SaslClient`](crate::sasl::SaslClient): the
    /// step's JSON names the mechanism and its credentials.
    Sasl {
        /// `mechanism`, `user`, `password`, `authzid`, `hostname`, `nonce`.
        spec: Json,
        /// The time limit of each answer.
        within: Duration,
    },
    /// A server's SASL layer, computed by a [`Credentials`](crate::sasl::Credentials)
    /// authenticator: the step's JSON names the users and the other mechanisms.
    SaslServer {
        /// `users` (name to password), `anonymous`, `external`, `mssbcbs`, `nonce`.
        spec: Json,
        /// The time limit of each message from the client.
        within: Duration,
    },
    /// From here on, split writes into pieces of this many bytes, this far apart.
    Write {
        /// Bytes per write (at least 1).
        chunk: usize,
        /// Time between two writes.
        delay: Duration,
    },
}

/// What the driver must do to the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Close the connection (both ways).
    Close,
    /// Shut down our writing side.
    HalfClose,
}

/// Why a script failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The step (from 1, as the script's lines with steps are counted).
    pub step: usize,
    /// What the step expected.
    pub expected: String,
    /// What came instead, decoded, with offsets.
    pub got: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {}: expected {}\ngot: {}", self.step, self.expected, self.got)
    }
}

/// Parses a script: one step per line; blank lines and lines starting with `#` skipped.
/// `within` is the default time limit of expectations.
pub fn parse(text: &str, within: Duration) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for line in super::json_lines(text) {
        let (n, j) = line?;
        steps.push(step(&j, within).map_err(|e| format!("line {n}: {e}"))?);
    }
    Ok(steps)
}

fn step(j: &Json, default: Duration) -> Result<Step, String> {
    let o = j.as_object().ok_or("a step is a JSON object")?;
    let ms = |v: &Json, what: &str| {
        v.as_u64().map(Duration::from_millis).ok_or_else(|| format!("{what} is milliseconds"))
    };
    let within = match o.get("within") {
        Some(v) => ms(v, "within")?,
        None => default,
    };
    const KINDS: [&str; 14] = [
        "send",
        "expect",
        "expect-close",
        "expect-silence",
        "wait",
        "close",
        "half-close",
        "lenient",
        "keepalive",
        "sasl",
        "sasl-server",
        "write",
        "ignore",
        "within",
    ];
    if let Some(k) = o.keys().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(format!("unknown key {k:?} (a step is one of: {})", KINDS[..13].join(", ")));
    }
    let mut keys = o.keys().filter(|k| *k != "within");
    let key = keys.next().ok_or(
        "a step needs one of send, expect, expect-close, expect-silence, wait, close, half-close",
    )?;
    if let Some(other) = keys.next() {
        return Err(format!("a step is one of its kinds: {key:?} and {other:?} are two steps"));
    }
    // Only the steps that wait for the peer have a time limit.
    if o.contains_key("within")
        && !["expect", "expect-close", "sasl", "sasl-server"].contains(&key.as_str())
    {
        return Err(format!("a {key:?} step has no time limit (\"within\" is for expect, expect-close, sasl, sasl-server)"));
    }
    let v = &o[key];
    Ok(match key.as_str() {
        "send" => {
            // A line with no variable encodes the same whenever it is sent: a mistake in
            // it is the script's, said before anything is played.
            if !has_placeholder(v) {
                match v {
                    Json::String(h) => {
                        crate::inspect::typed::unhex(h).ok_or("send: bad hex")?;
                    }
                    _ => super::encode::encode_line(v, &mut Vec::new())
                        .map_err(|e| format!("send: {e}"))?,
                }
            }
            Step::Send(v.clone())
        }
        "expect" => {
            if let Some(p) = v.get("performative").and_then(Json::as_str) {
                let known = p == "empty"
                    || p == "*"
                    || p.starts_with('$')
                    || crate::types::code_for_symbol(&format!("amqp:{p}:list")).is_some();
                if !known {
                    return Err(format!("expect: no performative or SASL body is named {p:?}"));
                }
            }
            // A misspelt field would only be found out when the step fails.
            if let Some(fields) = v.get("fields").and_then(Json::as_object) {
                let p = v.get("performative").and_then(Json::as_str).unwrap_or_default();
                check_fields(p, fields, "").map_err(|e| format!("expect: {e}"))?;
            }
            if v.get("kind").and_then(Json::as_str) == Some("header") {
                let unknown = v
                    .as_object()
                    .and_then(|o| super::encode::first_unknown_key(o, super::encode::HEADER_KEYS));
                if let Some(k) = unknown {
                    return Err(format!(
                        "expect: a header has no {k:?} (it has: {})",
                        super::encode::HEADER_KEYS.join(", ")
                    ));
                }
            }
            if v.get("within").is_some() {
                return Err(
                    "expect: \"within\" goes beside \"expect\" ({\"expect\": {…}, \"within\": \
                            2000}), not inside its pattern"
                        .into(),
                );
            }
            // A pattern's keys are those of the lines `decode --json` writes: another
            // (`"chanel"`) would never be checked, or never match.
            let unknown = v
                .as_object()
                .and_then(|o| super::encode::first_unknown_key(o, super::encode::DECODED_KEYS));
            if let Some(k) = unknown {
                return Err(format!(
                    "expect: a pattern has no key {k:?} (a decoded line's keys: {})",
                    super::encode::DECODED_KEYS.join(", ")
                ));
            }
            let mut pattern = v.clone();
            super::encode::pattern_values(&mut pattern);
            Step::Expect { pattern, within }
        }
        "expect-close" | "close" | "half-close" | "lenient" | "keepalive"
            if *v != Json::Bool(true) =>
        {
            // A step to take or not: `false` would read as "not", and be taken all the same.
            return Err(format!("{key} takes true (leave the step out for no {key}), not {v}"));
        }
        "expect-close" => Step::ExpectClose { within },
        "expect-silence" => Step::ExpectSilence(ms(v, "expect-silence")?),
        "wait" => Step::Wait(ms(v, "wait")?),
        "close" => Step::Close,
        "half-close" => Step::HalfClose,
        "lenient" => Step::Lenient,
        "keepalive" => Step::Keepalive,
        "sasl" => {
            sasl_client(v)?;
            Step::Sasl { spec: v.clone(), within }
        }
        "sasl-server" => {
            sasl_server(v)?;
            Step::SaslServer { spec: v.clone(), within }
        }
        "write" => {
            let chunk = v
                .get("chunk")
                .and_then(Json::as_u64)
                .filter(|&c| c >= 1)
                .ok_or("write needs \"chunk\": bytes per write, a whole number from 1 to 18446744073709551615")?;
            let delay = match v.get("delay") {
                Some(d) => ms(d, "write.delay")?,
                None => Duration::ZERO,
            };
            Step::Write { chunk: usize::try_from(chunk).unwrap_or(usize::MAX), delay }
        }
        "ignore" => Step::Ignore(
            v.as_array()
                .ok_or("ignore lists performatives")?
                .iter()
                .map(|p| {
                    let p = p.as_str().ok_or("ignore lists performative names")?;
                    // A misspelt name would skip nothing, without a word.
                    if crate::types::code_for_symbol(&format!("amqp:{p}:list")).is_none() {
                        return Err(format!("ignore: no performative or SASL body is named {p:?}"));
                    }
                    Ok(p.to_owned())
                })
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("unknown step {other:?}")),
    })
}

/// Checks `fields`, written for the performative or composite `name` (as `decode` shows
/// them), for fields it does not have, and the composites among them in turn
/// (`{"source": {"address": …}}`): a misspelt one could never match, and would be
/// reported as the peer's difference. `path` says where the fields are, for errors.
fn check_fields(
    name: &str,
    fields: &serde_json::Map<String, Json>,
    path: &str,
) -> Result<(), String> {
    let table = crate::types::code_for_symbol(&format!("amqp:{name}:list"))
        .and_then(crate::types::field_types_for_code);
    // A composite's descriptor on a value that is another described value, as decode
    // shows a malformed one (`{"rejected": {"data": …}}`): no fields to check.
    let nested = |k: &String| crate::types::KNOWN_DESCRIPTORS.iter().any(|(_, _, n)| n == k);
    let described = fields.len() == 1
        && fields.keys().all(nested)
        && table.is_some_and(|(names, _)| fields.keys().all(|k| !names.contains(&k.as_str())));
    if described {
        return Ok(());
    }
    if let Some((names, _)) = table {
        // (`[N]`: an element past the spec's fields, as decode shows it.)
        let unknown = |k: &&String| !names.contains(&k.as_str()) && !k.starts_with('[');
        if let Some(bad) = fields.keys().find(unknown) {
            let at = if path.is_empty() { String::new() } else { format!("{path}: ") };
            return Err(format!(
                "{at}{name} has no field {bad:?} (its fields: {})",
                names.join(", ")
            ));
        }
    }
    for (k, v) in fields {
        // `v` is `{composite: {fields}}` when it names one.
        // (A composite's descriptor on a value that is not its list, as decode shows a
        // malformed one, `{"modified": {"decimal32": …}}`, holds no fields to check.)
        let inner = v.as_object().filter(|m| m.len() == 1).and_then(|m| m.iter().next());
        if let Some((composite, Json::Object(inner))) =
            inner.filter(|(_, i)| !i.as_object().is_some_and(super::encode::is_typed))
        {
            let here =
                if path.is_empty() { format!("fields.{k}") } else { format!("{path}.{name}.{k}") };
            check_fields(composite, inner, &here)?;
        }
    }
    Ok(())
}

/// Whether a step's value holds a `$name` placeholder anywhere: a variable, bound when
/// the step runs (or a literal such as `$cbs`, which is left as it is).
pub(crate) fn has_placeholder(j: &Json) -> bool {
    match j {
        Json::String(s) => s.starts_with('$') && s.len() > 1 && !s.starts_with("$$"),
        Json::Array(a) => a.iter().any(has_placeholder),
        Json::Object(o) => o.values().any(has_placeholder),
        _ => false,
    }
}

/// Plays a script.
#[derive(Debug)]
pub struct Player {
    steps: Vec<Step>,
    next: usize,
    inspector: Inspector,
    /// Records from the peer not yet matched.
    incoming: VecDeque<Record>,
    /// The peer's stream ended.
    eof: bool,
    out: Vec<u8>,
    actions: VecDeque<Action>,
    /// When the current step times out (expectations) or ends (waits, silences).
    deadline: Option<Instant>,
    bound: HashMap<String, Json>,
    verdict: Option<Result<(), Failure>>,
    /// Performatives skipped while expecting (heartbeats always are).
    ignored: Vec<String>,
    /// Expectations only pace the script.
    lenient: bool,
    /// The peer sent a `close`: in lenient mode nothing more is waited for.
    peer_closed: bool,
    /// The peer's stream broke off (a framing error): no frame can come after it, so in
    /// lenient mode nothing more is waited for, as after the stream's end.
    broken: bool,
    /// The `close` step (from 1) that closed the connection, if one did: the stream's end
    /// after it is not the peer's doing.
    closed_at: Option<usize>,
    /// In lenient mode an expectation has run out of time: later ones wait a fifth as long.
    hurried: bool,
    /// How writes are split: bytes per write and the time between writes.
    pacing: Option<(usize, Duration)>,
    /// The SASL exchange of the current `sasl` step, once started.
    sasl: Option<crate::sasl::SaslClient>,
    /// The authenticator of the current `sasl-server` step, once started.
    sasl_server: Option<crate::sasl::Credentials>,
    /// Everything the peer sent, when kept ([`Player::keep_input`]), up to [`KEPT_INPUT`].
    received: Option<Vec<u8>>,
    /// Of a `disposition` expectation (the step's index), the first delivery id not yet
    /// settled by the peer's frames, when they have settled part of its range.
    disposition_from: Option<(usize, u64)>,
    /// Deliveries the peer settled beyond what their expectation named: its disposition
    /// (the trace line), and the ids from and to, for later expectations.
    settled_ahead: Vec<(Json, u64, u64)>,
    /// See [`Player::sent_unbound`].
    sent_unbound: Vec<(usize, String)>,
    /// Later `expect` steps a frame of another link has already met, out of order (see
    /// [`Player::met_ahead`]): skipped when the script comes to them.
    met: std::collections::BTreeSet<usize>,
    /// Frames of an ignored performative skipped while other steps were expected, since
    /// the last step other than an `expect` or a `send` (the latest [`SKIPPED_KEPT`]): an
    /// `expect` that asks for one is met by one of these too.
    skipped: VecDeque<(Option<(u64, u64)>, Json)>,
    /// The max-frame-size the peer's open announced, and the first frame a `send` step
    /// wrote over it (its step and size): said when the peer then closes.
    peer_max_frame: Option<u32>,
    /// A `keepalive` step came: the peer's idle-time-out is kept with empty frames.
    keepalive: bool,
    /// Our AMQP protocol header has been written (no frame may come before it).
    header_sent: bool,
    /// Our close has been written, or our stream closed or ended: nothing more is sent.
    closing: bool,
    /// The idle-time-out the peer's open announced (not 0).
    peer_idle: Option<Duration>,
    /// When we last wrote (or the script started): the next heartbeat is due half the
    /// peer's idle-time-out later.
    last_write: Option<Instant>,
    oversized: Option<(usize, u32)>,
}

/// How many skipped frames of ignored performatives a player keeps for a later `expect`
/// that asks for one: enough for the first flow of each link of a client with thousands
/// (a recording expects one before each link's first transfer), bounded so that a peer
/// cannot grow the player's memory without end.
const SKIPPED_KEPT: usize = 4096;

/// How many dispositions settled in advance of their `expect` steps a player keeps.
const SETTLED_AHEAD_KEPT: usize = 1024;

/// The most input [`Player::keep_input`] keeps (16 MiB): a peer that sends more is cut off
/// from the copy, not from the script.
pub const KEPT_INPUT: usize = 16 << 20;

impl Player {
    /// A player for `steps`.
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps,
            next: 0,
            inspector: Inspector::new(DecodeOptions::LENIENT).redact_secrets(false),
            incoming: VecDeque::new(),
            eof: false,
            out: Vec::new(),
            actions: VecDeque::new(),
            deadline: None,
            bound: HashMap::new(),
            verdict: None,
            ignored: Vec::new(),
            lenient: false,
            peer_closed: false,
            broken: false,
            closed_at: None,
            hurried: false,
            pacing: None,
            sasl: None,
            sasl_server: None,
            received: None,
            disposition_from: None,
            settled_ahead: Vec::new(),
            sent_unbound: Vec::new(),
            met: std::collections::BTreeSet::new(),
            skipped: VecDeque::new(),
            peer_max_frame: None,
            keepalive: false,
            header_sent: false,
            closing: false,
            peer_idle: None,
            last_write: None,
            oversized: None,
        }
    }

    /// Keeps a copy of everything the peer sends (up to [`KEPT_INPUT`]), for
    /// [`Player::received`].
    pub fn keep_input(mut self) -> Self {
        self.received = Some(Vec::new());
        self
    }

    /// What the peer sent so far, if kept.
    pub fn received(&self) -> &[u8] {
        self.received.as_deref().unwrap_or_default()
    }

    /// How the driver must split writes: bytes per write and the time between two, once a
    /// `write` step has said so.
    pub fn pacing(&self) -> Option<(usize, Duration)> {
        self.pacing
    }

    /// Starts the script (call once, with the time the connection was made).
    pub fn start(&mut self, now: Instant) {
        self.last_write = Some(now);
        self.run(now);
        self.heartbeat(now);
    }

    /// With `keepalive`: the time the next heartbeat is due (half the peer's idle-time-out
    /// after we last wrote), while the script runs.
    fn heartbeat_due(&self) -> Option<Instant> {
        let stopped = self.verdict.is_some() || self.eof || self.closing || self.peer_closed;
        if !self.keepalive || !self.header_sent || stopped {
            return None;
        }
        let half = self.peer_idle? / 2;
        self.last_write?.checked_add(half)
    }

    /// Writes an empty frame if a heartbeat is due; notes that we wrote when we did.
    fn heartbeat(&mut self, now: Instant) {
        if !self.out.is_empty() {
            self.last_write = Some(now);
        } else if self.heartbeat_due().is_some_and(|due| now >= due) {
            // 2.3.2: an empty frame (no body), on channel 0.
            self.out.extend_from_slice(&[0, 0, 0, 8, 2, 0, 0, 0]);
            self.last_write = Some(now);
        }
    }

    /// Bytes from the peer.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if let Some(r) = &mut self.received {
            let room = KEPT_INPUT.saturating_sub(r.len());
            r.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        }
        self.inspector.push(data);
        while let Some(r) = self.inspector.next_record() {
            if let Record::Frame(f) = &r {
                match &f.frame {
                    Ok(crate::frame::Frame {
                        body:
                            crate::frame::FrameBody::Amqp {
                                performative: crate::types::Performative::Open(open),
                                ..
                            },
                        ..
                    }) => {
                        self.peer_max_frame = Some(open.max_frame_size);
                        self.peer_idle = open
                            .idle_time_out
                            .filter(|ms| *ms > 0)
                            .map(|ms| Duration::from_millis(u64::from(ms)));
                    }
                    _ if f.performative() == Some("close") => self.peer_closed = true,
                    _ => {}
                }
            }
            self.broken |= matches!(r, Record::Error { .. });
            // What the peer sends after its stream broke off matches no pattern (the
            // framing error before it is what a step meets): not kept.
            if matches!(r, Record::Undecoded { .. }) {
                continue;
            }
            self.incoming.push_back(r);
        }
        self.run(now);
        self.heartbeat(now);
    }

    /// The peer's stream ended.
    pub fn handle_eof(&mut self, now: Instant) {
        if let Some(r) = self.inspector.finish().filter(|r| !matches!(r, Record::Undecoded { .. }))
        {
            self.incoming.push_back(r);
        }
        self.eof = true;
        self.run(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run(now);
        self.heartbeat(now);
    }

    /// Appends what must be written to the peer.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) {
        buf.append(&mut self.out);
    }

    /// What to do to the transport next.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Player::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let step = self.verdict.is_none().then_some(self.deadline).flatten();
        match (step, self.heartbeat_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The `$name`s a `send` step wrote as text because no `expect` before it had bound
    /// them, each with the first step (from 1) that did: a misspelt name, or a string
    /// that starts with `$` on purpose (`$cbs`).
    pub fn sent_unbound(&self) -> &[(usize, String)] {
        &self.sent_unbound
    }

    /// `None` while the script runs; then whether every step held.
    pub fn verdict(&self) -> Option<&Result<(), Failure>> {
        self.verdict.as_ref()
    }

    /// Values bound by `$name` patterns so far.
    pub fn bound(&self) -> &HashMap<String, Json> {
        &self.bound
    }

    /// Runs steps until one must wait for the peer or for time.
    fn run(&mut self, now: Instant) {
        while self.verdict.is_none() {
            if self.met.remove(&self.next) {
                self.next += 1;
                continue;
            }
            let Some(step) = self.steps.get(self.next).cloned() else {
                self.verdict = Some(Ok(()));
                return;
            };
            let n = self.next + 1;
            if !matches!(step, Step::Expect { .. } | Step::Send(_)) {
                // A frame skipped before we waited, closed or changed what is ignored is
                // not what an expectation after that asks for. (One skipped before a send
                // of ours may be: a link's flow that came early, before our first transfer
                // on it.)
                self.skipped.clear();
            }
            match step {
                Step::Send(written) => {
                    // `$name`s no expect has bound: written as text (`$cbs` is a real
                    // address), and said once each (a misspelt name is sent so too).
                    let mut unbound = Vec::new();
                    unbound_names(&written, &mut unbound);
                    unbound.retain(|name| !self.bound.contains_key(&name[1..]));
                    for name in &unbound {
                        if !self.sent_unbound.iter().any(|(_, seen)| seen == name) {
                            self.sent_unbound.push((n, name.clone()));
                        }
                    }
                    let j = self.substitute(&written);
                    let before = self.out.len();
                    let r = match &j {
                        Json::String(h) => crate::inspect::typed::unhex(h)
                            .map(|b| self.out.extend(b))
                            .ok_or_else(|| "send: bad hex".to_owned()),
                        _ => super::encode::encode_line(&j, &mut self.out),
                    };
                    if let Err(mut e) = r {
                        // Where an unbound name's text is what does not encode, say so
                        // (the names of the step as written: a bound value that starts
                        // with `$` is a value, not a name).
                        unbound.retain(|name| e.contains(&format!("{name:?}")));
                        if !unbound.is_empty() {
                            e.push_str(&format!(
                                " ({} bound by no expect before this step, so written as {})",
                                unbound
                                    .iter()
                                    .map(|n| format!("{n:?}"))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                if unbound.len() == 1 { "a string" } else { "strings" }
                            ));
                        }
                        return self.fail(n, "a line that encodes", &e);
                    }
                    // Heartbeats go only after our AMQP header and before our close.
                    let sent = self.out.get(before..).unwrap_or_default();
                    if sent.windows(8).any(|w| w == b"AMQP\x00\x01\x00\x00") {
                        self.header_sent = true;
                    }
                    if sent_performative(&j) == Some("close") {
                        self.closing = true;
                    }
                    self.note_oversized(n, before);
                }
                Step::Close => {
                    self.closing = true;
                    self.closed_at = Some(n);
                    self.actions.push_back(Action::Close);
                }
                Step::HalfClose => {
                    self.closing = true;
                    self.actions.push_back(Action::HalfClose);
                }
                Step::Ignore(names) => self.ignored = names,
                Step::Lenient => self.lenient = true,
                Step::Keepalive => self.keepalive = true,
                Step::Sasl { spec, within } => {
                    let progress = self.sasl_step(&spec, within, now);
                    if !self.sasl_went_on(progress, n) {
                        return;
                    }
                }
                Step::SaslServer { spec, within } => {
                    let progress = self.sasl_server_step(&spec, within, now);
                    if !self.sasl_went_on(progress, n) {
                        return;
                    }
                }
                Step::Write { chunk, delay } => self.pacing = Some((chunk.max(1), delay)),
                Step::Wait(d) => {
                    let until = *self.deadline.get_or_insert(now + d);
                    if now < until {
                        return;
                    }
                }
                Step::ExpectSilence(d) => {
                    self.skip_heartbeats(None);
                    if self.lenient {
                        self.incoming.clear();
                    }
                    if let Some(r) = self.incoming.front() {
                        let got = describe(r);
                        return self.fail(n, &format!("silence for {d:?}"), &got);
                    }
                    if (self.eof || self.broken) && self.lenient {
                        self.verdict = Some(Ok(()));
                        return;
                    }
                    if self.eof {
                        let why = self.peer_closed_why();
                        return self.fail(n, &format!("silence for {d:?}"), &why);
                    }
                    let until = *self.deadline.get_or_insert(now + d);
                    if now < until {
                        return;
                    }
                }
                Step::ExpectClose { within } => {
                    self.skip_heartbeats(None);
                    if self.lenient {
                        self.incoming.clear();
                    }
                    if let Some(r) = self.incoming.front() {
                        let got = describe(r);
                        return self.fail(n, "the peer to close the connection", &got);
                    }
                    if !self.eof {
                        let within = self.lenient_within(within);
                        let until = *self.deadline.get_or_insert(now + within);
                        if (now >= until || self.peer_closed || self.broken) && self.lenient {
                            self.next += 1;
                            self.deadline = None;
                            continue;
                        }
                        if now >= until {
                            return self.fail(
                                n,
                                "the peer to close the connection",
                                &format!("nothing within {within:?}"),
                            );
                        }
                        return;
                    }
                }
                Step::Expect { pattern: written, within } => {
                    let pattern = self.substitute(&written);
                    // A failure shows the pattern as matched, and as written when the
                    // values bound to its names changed it.
                    let expected = if pattern == written {
                        pattern.to_string()
                    } else {
                        format!("{pattern}\n(as written: {written})")
                    };
                    // An ignored performative asked for: perhaps skipped already.
                    if self.met_by_skipped(&pattern) {
                        self.next += 1;
                        self.deadline = None;
                        continue;
                    }
                    // Of a disposition pattern, the ids still due: from its `first`, or
                    // from where the peer's frames for this step have come to.
                    let range = disposition_range(&pattern).map(|(first, last)| {
                        match self.disposition_from {
                            Some((step, id)) if step == self.next => (id, last),
                            _ => (first, last),
                        }
                    });
                    if let Some((first, last)) = range {
                        // Settled already, in whole or in part, by a frame that settled
                        // more than its own pattern named: used up as it is used.
                        let rest = without_range(&pattern);
                        let ahead = self.settled_ahead.iter().position(|(line, from, to)| {
                            *from <= first
                                && first <= *to
                                && matches(&rest, &without_range(line), &mut self.bound.clone())
                        });
                        if let Some(i) = ahead {
                            let to = self.settled_ahead[i].2;
                            let covered = to.min(last);
                            match covered.checked_add(1).filter(|next| *next <= to) {
                                Some(next) => self.settled_ahead[i].1 = next,
                                None => {
                                    self.settled_ahead.remove(i);
                                }
                            }
                            if covered < last {
                                self.disposition_from = Some((self.next, covered + 1));
                                continue;
                            }
                            self.next += 1;
                            self.deadline = None;
                            continue;
                        }
                    }
                    self.skip_heartbeats(Some(&pattern));
                    let Some(r) = self.incoming.pop_front() else {
                        if (self.eof || self.broken) && self.lenient {
                            // Nothing more will come: the rest of the script is moot.
                            self.verdict = Some(Ok(()));
                            return;
                        }
                        if self.eof {
                            return self.fail(n, &expected, &self.peer_closed_why());
                        }
                        let within = self.lenient_within(within);
                        let until = *self.deadline.get_or_insert(now + within);
                        if (now >= until || self.peer_closed) && self.lenient {
                            self.hurried |= now >= until;
                            self.next += 1;
                            self.deadline = None;
                            continue;
                        }
                        if now >= until {
                            return self.fail(n, &expected, &format!("nothing within {within:?}"));
                        }
                        return;
                    };
                    let line = record_json(&r).into_iter().next().unwrap_or(Json::Null);
                    let mut bound = self.bound.clone();
                    if let (Some((first, last)), Some((a, b))) = (range, disposition_range(&line)) {
                        // The peer's frame settles ids a..=b: from the first still due,
                        // with the rest of the pattern holding.
                        if a == first
                            && matches(&without_range(&pattern), &without_range(&line), &mut bound)
                        {
                            self.bound = bound;
                            if b < last {
                                self.disposition_from = Some((self.next, b + 1));
                                continue;
                            }
                            if b > last {
                                self.settle_ahead(line, last + 1, b);
                            }
                            self.next += 1;
                            self.deadline = None;
                            continue;
                        }
                        bound = self.bound.clone();
                    }
                    if !matches(&pattern, &line, &mut bound) {
                        if self.lenient {
                            // Not this one: keep waiting for one that is, within the limit.
                            continue;
                        }
                        if self.met_ahead(&line) {
                            continue;
                        }
                        let mut got = describe(&r);
                        let mut bound = self.bound.clone();
                        let difference = match (range, disposition_range(&line)) {
                            // A range in progress: judged from the first id still due.
                            (Some((first, _)), Some((a, _))) if a != first => {
                                Some(format!("fields.first: expected {first}, got {a}"))
                            }
                            (Some(_), Some(_)) => first_difference(
                                &without_range(&pattern),
                                &without_range(&line),
                                &mut bound,
                            ),
                            _ => first_difference(&pattern, &line, &mut bound),
                        };
                        if let Some(d) = difference {
                            got.push_str(&format!("\n(the first difference: {d})"));
                        }
                        // A peer that closes with a framing error, rather than hanging
                        // up, after a frame over its max-frame-size: the likely cause.
                        if line["performative"] == "close" {
                            if let (Some((step, size)), Some(max)) =
                                (self.oversized, self.peer_max_frame)
                            {
                                got.push_str(&format!(
                                    "\n(step {step} sent a frame of {size} bytes, over the \
                                     max-frame-size of {max} the peer's open announced)"
                                ));
                            }
                        }
                        return self.fail(n, &expected, &got);
                    }
                    self.bound = bound;
                }
            }
            self.next += 1;
            self.deadline = None;
        }
    }

    /// Runs the `sasl` step as far as the peer's answers allow.
    fn sasl_step(&mut self, spec: &Json, within: Duration, now: Instant) -> SaslProgress {
        use crate::frame::FrameBody;
        use crate::types::SaslFrameBody as B;
        if self.sasl.is_none() {
            let Ok(client) = sasl_client(spec) else {
                return SaslProgress::Failed("a sasl step that parses".into(), String::new());
            };
            self.sasl = Some(client);
            self.out.extend_from_slice(b"AMQP\x03\x01\x00\x00");
        }
        let within = self.lenient_within(within);
        let until = *self.deadline.get_or_insert(now + within);
        while let Some(r) = self.incoming.pop_front() {
            let Some(client) = self.sasl.as_mut() else { break };
            let body = match &r {
                Record::Header { header, .. } if header.id == crate::frame::ProtocolId::SASL => {
                    continue
                }
                Record::Frame(f) => match &f.frame {
                    Ok(crate::frame::Frame { body: FrameBody::Sasl(b), .. }) => b.clone(),
                    _ => return SaslProgress::Failed("a SASL frame".into(), describe(&r)),
                },
                _ => return SaslProgress::Failed("the SASL header".into(), describe(&r)),
            };
            let (name, fields) = match body {
                B::Mechanisms(m) => {
                    if let Err(e) = client.check_offered(&m.sasl_server_mechanisms) {
                        return SaslProgress::Failed(client.mechanism().into(), e.to_string());
                    }
                    let mut f = serde_json::json!({ "mechanism": client.mechanism() });
                    if let Some(r) = client.initial_response() {
                        f["initial-response"] = crate::inspect::hex(&r).into();
                    }
                    if let Some(h) = client.hostname() {
                        f["hostname"] = h.into();
                    }
                    ("sasl-init", f)
                }
                B::Challenge(c) => match client.challenge(&c.challenge) {
                    Ok(resp) => (
                        "sasl-response",
                        serde_json::json!({ "response": crate::inspect::hex(&resp) }),
                    ),
                    Err(e) => {
                        return SaslProgress::Failed(
                            "a challenge it can answer".into(),
                            e.to_string(),
                        )
                    }
                },
                B::Outcome(o) => {
                    let r = client.outcome(o.code, o.additional_data.as_deref());
                    self.sasl = None;
                    return match r {
                        Ok(()) => SaslProgress::Done,
                        Err(e) => {
                            SaslProgress::Failed("a sasl-outcome of ok".into(), e.to_string())
                        }
                    };
                }
                other => {
                    return SaslProgress::Failed(
                        "sasl-mechanisms, sasl-challenge or sasl-outcome".into(),
                        format!("{other:?}"),
                    )
                }
            };
            if let Err(failed) = self.send_sasl(name, fields) {
                return failed;
            }
            self.deadline = Some(now + within);
        }
        self.sasl_waiting(until, within, now)
    }

    /// Plays a `sasl-server` step as far as the client's input allows.
    fn sasl_server_step(&mut self, spec: &Json, within: Duration, now: Instant) -> SaslProgress {
        use crate::frame::FrameBody;
        use crate::sasl::{AuthStep, Authenticator};
        use crate::types::SaslFrameBody as B;
        if self.sasl_server.is_none() {
            let Ok(auth) = sasl_server(spec) else {
                return SaslProgress::Failed(
                    "a sasl-server step that parses".into(),
                    String::new(),
                );
            };
            self.sasl_server = Some(auth);
        }
        let within = self.lenient_within(within);
        let until = *self.deadline.get_or_insert(now + within);
        while let Some(r) = self.incoming.pop_front() {
            let Some(auth) = self.sasl_server.as_mut() else { break };
            let step = match &r {
                Record::Header { header, .. } if header.id == crate::frame::ProtocolId::SASL => {
                    self.out.extend_from_slice(b"AMQP\x03\x01\x00\x00");
                    let offered: Vec<Json> =
                        auth.mechanisms().iter().map(|m| m.as_str().into()).collect();
                    let fields = serde_json::json!({ "sasl-server-mechanisms": offered });
                    if let Err(failed) = self.send_sasl("sasl-mechanisms", fields) {
                        return failed;
                    }
                    self.deadline = Some(now + within);
                    continue;
                }
                Record::Frame(f) => match &f.frame {
                    Ok(crate::frame::Frame { body: FrameBody::Sasl(B::Init(i)), .. }) => auth
                        .start(
                            i.mechanism.as_str(),
                            i.initial_response.as_deref(),
                            i.hostname.as_deref(),
                            None,
                        ),
                    Ok(crate::frame::Frame {
                        body: FrameBody::Sasl(B::Response(resp)), ..
                    }) => auth.step(&resp.response),
                    _ => {
                        return SaslProgress::Failed(
                            "sasl-init or sasl-response".into(),
                            describe(&r),
                        )
                    }
                },
                _ => return SaslProgress::Failed("the SASL header".into(), describe(&r)),
            };
            let (name, fields, done) = match step {
                AuthStep::Challenge(c) => (
                    "sasl-challenge",
                    serde_json::json!({ "challenge": crate::inspect::hex(&c) }),
                    false,
                ),
                AuthStep::Done(o) => {
                    let mut f = serde_json::json!({ "code": o.code.0 });
                    if let Some(d) = &o.additional_data {
                        f["additional-data"] = crate::inspect::hex(d).into();
                    }
                    ("sasl-outcome", f, true)
                }
            };
            if let Err(failed) = self.send_sasl(name, fields) {
                return failed;
            }
            if done {
                self.sasl_server = None;
                return SaslProgress::Done;
            }
            self.deadline = Some(now + within);
        }
        self.sasl_waiting(until, within, now)
    }

    /// Acts on a SASL step's progress: `true` when the script goes on to the next step.
    fn sasl_went_on(&mut self, progress: SaslProgress, n: usize) -> bool {
        match progress {
            SaslProgress::Waiting => false,
            SaslProgress::Done => true,
            SaslProgress::Failed(_, _) if self.lenient => {
                // The peer left the script's path: the SASL layer is moot.
                self.verdict = Some(Ok(()));
                false
            }
            SaslProgress::Failed(expected, got) => {
                self.fail(n, &expected, &got);
                false
            }
        }
    }

    /// Writes a SASL body, given as its name and fields in the trace format.
    fn send_sasl(&mut self, name: &str, fields: Json) -> Result<(), SaslProgress> {
        let line = serde_json::json!({ "type": "sasl", "performative": name, "fields": fields });
        super::encode::encode_line(&line, &mut self.out)
            .map_err(|e| SaslProgress::Failed(format!("{name} that encodes"), e))
    }

    /// A SASL step with nothing more to read: it fails if the peer has gone or its time is
    /// up (ending the exchange), else it waits.
    fn sasl_waiting(&mut self, until: Instant, within: Duration, now: Instant) -> SaslProgress {
        let why = if self.eof {
            self.peer_closed_why()
        } else if now >= until {
            self.hurried = true;
            format!("nothing within {within:?}")
        } else {
            return SaslProgress::Waiting;
        };
        self.sasl = None;
        self.sasl_server = None;
        SaslProgress::Failed("the SASL exchange".into(), why)
    }

    /// The time limit of an expectation: as written, or a fifth of it in lenient mode once
    /// one expectation has gone unanswered (the peer has left the script's path).
    fn lenient_within(&self, within: Duration) -> Duration {
        if self.lenient && self.hurried {
            within / 5
        } else {
            within
        }
    }

    /// Drops heartbeats and ignored performatives at the head of the queue, unless the
    /// pattern asks for that very performative.
    fn skip_heartbeats(&mut self, pattern: Option<&Json>) {
        let asked = pattern.and_then(|p| p.get("performative")).and_then(Json::as_str);
        while let Some(r) = self.incoming.front() {
            let Record::Frame(f) = r else { break };
            let Some(name) = f.performative() else { break };
            let heartbeat = name == "empty";
            let skipped = heartbeat || self.ignored.iter().any(|i| i == name);
            if !skipped {
                break;
            }
            if heartbeat {
                if asked == Some(name) {
                    break;
                }
                self.incoming.pop_front();
                continue;
            }
            let line = record_json(r).into_iter().next().unwrap_or(Json::Null);
            // An ignored performative asked for: skipped unless it is the one asked for
            // (a session's flow while a link's is expected, say).
            if asked == Some(name)
                && pattern.is_none_or(|p| matches(p, &line, &mut self.bound.clone()))
            {
                break;
            }
            self.incoming.pop_front();
            // A link's flow says where the link stands now: it replaces one of the same
            // link skipped before, so that a peer's flows for one busy link do not push
            // out the first flows of the others.
            // (Each kept with its link, so that finding it again compares numbers.)
            let link = flow_link(&line);
            if link.is_some() {
                self.skipped.retain(|(l, _)| *l != link);
            }
            if self.skipped.len() == SKIPPED_KEPT {
                self.skipped.pop_front();
            }
            self.skipped.push_back((link, line));
        }
    }

    /// Notes the first frame of those `send` step `step` wrote (from `out[from..]`) that
    /// is larger than the max-frame-size the peer announced.
    fn note_oversized(&mut self, step: usize, from: usize) {
        let (Some(max), None) = (self.peer_max_frame, self.oversized) else { return };
        let mut at = from;
        while let Some(head) = self.out.get(at..at + 8) {
            if head.starts_with(b"AMQP") {
                at += 8;
                continue;
            }
            let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if size > max {
                self.oversized = Some((step, size));
                return;
            }
            at += (size as usize).max(8);
        }
    }

    /// "the peer closed", and the likely cause when a frame sent was over its
    /// max-frame-size (2.7.1: a peer MUST NOT send frames larger than the other's); or,
    /// once a `close` step of the script closed the connection, that step.
    fn peer_closed_why(&self) -> String {
        if let Some(step) = self.closed_at {
            return format!("the connection is closed: step {step} closed it");
        }
        match (self.oversized, self.peer_max_frame) {
            (Some((step, size)), Some(max)) => format!(
                "the peer closed (step {step} sent a frame of {size} bytes, over the \
                 max-frame-size of {max} its open announced)"
            ),
            _ => "the peer closed".to_owned(),
        }
    }

    /// Meets an `expect` of an ignored performative with a frame skipped while another
    /// step was expected (the oldest that matches), if there is one.
    fn met_by_skipped(&mut self, pattern: &Json) -> bool {
        let asked = pattern.get("performative").and_then(Json::as_str);
        if !asked.is_some_and(|p| self.ignored.iter().any(|i| i == p)) {
            return false;
        }
        for i in 0..self.skipped.len() {
            let mut bound = self.bound.clone();
            if self.skipped.get(i).is_some_and(|(_, line)| matches(pattern, line, &mut bound)) {
                self.skipped.remove(i);
                self.bound = bound;
                return true;
            }
        }
        false
    }

    fn fail(&mut self, step: usize, expected: &str, got: &str) {
        self.verdict =
            Some(Err(Failure { step, expected: expected.to_owned(), got: got.to_owned() }));
    }

    /// Whether `line`, a frame that does not meet the current `expect` step, meets a
    /// later one of the same run of `expect` steps that no step before it in the run need
    /// come before: then that step is met (and skipped when the script comes to it), or,
    /// for a disposition, its ids are kept as settled in advance. A run ends at a step of
    /// another kind than an `expect`, a `send` of a transfer, disposition or flow, or a
    /// `send` of an attach or detach when the frame is not one (before it, it is the
    /// peer's own, not the answer). Frames of different links (or sessions) are
    /// independent, and peers order them as they like: one detaches its sender first,
    /// another its receiver; one settles a link's deliveries before it sends another
    /// link's transfers, another after. What stays in order: a link's own frames (the same
    /// handle or name), a session's (the same channel, or one still to be bound by its
    /// begin), `open` and `close` (never met out of order, and never passed over), and a
    /// step whose `$name` an earlier step of the run, or a passed-over `send`, uses.
    fn met_ahead(&mut self, line: &Json) -> bool {
        const LINK_LEVEL: [&str; 7] =
            ["attach", "detach", "transfer", "disposition", "flow", "begin", "end"];
        let performative =
            |j: &Json| j.get("performative").and_then(Json::as_str).map(str::to_owned);
        let link_level =
            |j: &Json| performative(j).is_some_and(|p| LINK_LEVEL.contains(&p.as_str()));
        if !link_level(line) {
            return false;
        }
        let handle = |j: &Json| j.pointer("/fields/handle").and_then(Json::as_u64);
        let name = |j: &Json| j.pointer("/fields/name").and_then(Json::as_str).map(str::to_owned);
        let channel = |j: &Json| j.get("channel").and_then(Json::as_u64);
        // Channels a recording's begin patterns have bound (`$channel-N`): sessions begun.
        let begun: Vec<u64> = self
            .bound
            .iter()
            .filter(|(k, _)| k.starts_with(super::record::CHANNEL_VAR))
            .filter_map(|(_, v)| v.as_u64())
            .collect();
        let session_frame = |j: &Json| matches!(performative(j).as_deref(), Some("begin" | "end"));
        // Whether the frame may be of the link (or session) an earlier pattern waits for:
        // the same handle, or the same link name; a pattern of a link's frame that names
        // neither may be of any link. (Dispositions and flows name no single link.)
        let same_link = |earlier: &Json| {
            if session_frame(earlier) || session_frame(line) {
                // The same session, unless the channels differ: known on both sides, or
                // the frame's is a session begun already while the earlier pattern's is
                // still to be bound (a session yet to begin).
                return match (channel(earlier), channel(line)) {
                    (Some(a), Some(b)) => a == b,
                    (None, Some(b)) => {
                        let to_bind =
                            earlier.get("channel").and_then(Json::as_str).is_some_and(|c| {
                                c.strip_prefix('$')
                                    .is_some_and(|n| n.starts_with(super::record::CHANNEL_VAR))
                            });
                        !(to_bind && begun.contains(&b))
                    }
                    _ => true,
                };
            }
            let channels_differ =
                matches!((channel(earlier), channel(line)), (Some(a), Some(b)) if a != b);
            // A disposition settles deliveries, not a link's frames in order; a session's
            // flow names no link.
            let of_no_link = performative(line).as_deref() == Some("disposition")
                || (performative(line).as_deref() == Some("flow") && handle(line).is_none());
            if channels_differ || of_no_link {
                return false;
            }
            match (handle(earlier), handle(line), name(earlier), name(line)) {
                (Some(a), Some(b), ..) => a == b,
                (_, _, Some(a), Some(b)) => a == b,
                _ => performative(earlier)
                    .is_some_and(|p| ["attach", "detach", "transfer"].contains(&p.as_str())),
            }
        };
        let names = |j: &Json| {
            let mut all = Vec::new();
            unbound_names(j, &mut all);
            all.retain(|n| !self.bound.contains_key(&n[1..]));
            all
        };
        let line_range = disposition_range(line);
        // The unmet patterns passed over, with their names still to be bound.
        let mut passed: Vec<(Json, Vec<String>)> = Vec::new();
        // Names a passed-over `send` uses: bound later, they must not be bound by a frame
        // met early (the send would have written them as text).
        let mut sent_names: Vec<String> = Vec::new();
        for at in self.next..self.steps.len() {
            let pattern = match self.steps.get(at) {
                Some(Step::Expect { pattern, .. }) => pattern,
                // A frame that came before we sent something was not caused by it: the peer
                // sent it on credit it had, or settled what it had received (a recording
                // made while the peer was slower has it after). But a frame of what a send
                // asks to be answered (an attach for an attach, a detach for a detach…)
                // stays after it: before it, it is the peer's own, not the answer.
                Some(Step::Send(j))
                    if sent_performative(j).is_some_and(|p| {
                        ["transfer", "disposition", "flow"].contains(&p)
                            || (["attach", "detach"].contains(&p)
                                && performative(line).as_deref() != Some(p))
                    }) =>
                {
                    sent_names.extend(names(j));
                    continue;
                }
                _ => break,
            };
            if self.met.contains(&at) {
                continue;
            }
            let pattern = self.substitute(pattern);
            let names_here = names(&pattern);
            let independent = passed.iter().all(|(earlier, names)| {
                !same_link(earlier) && !names.iter().any(|n| names_here.contains(n))
            }) && !sent_names.iter().any(|n| names_here.contains(n));
            // A disposition that settles ids a later disposition pattern names, however it
            // groups them: kept as settled in advance, for the pattern to take when the
            // script comes to it (as a frame that settles more does).
            if let (Some((a, b)), Some((first, last))) = (line_range, disposition_range(&pattern)) {
                let overlaps = a <= last && first <= b;
                if overlaps
                    && at > self.next
                    && independent
                    && matches(
                        &without_range(&pattern),
                        &without_range(line),
                        &mut self.bound.clone(),
                    )
                {
                    self.settle_ahead(line.clone(), a, b);
                    return true;
                }
            }
            if at > self.next {
                let mut bound = self.bound.clone();
                if matches(&pattern, line, &mut bound) {
                    if !independent {
                        // Its own step is held up by an earlier one: not another's either.
                        return false;
                    }
                    self.bound = bound;
                    self.met.insert(at);
                    return true;
                }
            }
            if !link_level(&pattern) {
                // Connection frames are never passed over.
                return false;
            }
            passed.push((pattern, names_here));
        }
        false
    }

    /// Keeps a disposition of the peer's that settled ids `a..=b` for later `expect`
    /// steps (the latest [`SETTLED_AHEAD_KEPT`]: a peer that settles far ahead of the
    /// script cannot make the player keep all it sends).
    fn settle_ahead(&mut self, line: Json, a: u64, b: u64) {
        if self.settled_ahead.len() == SETTLED_AHEAD_KEPT {
            self.settled_ahead.remove(0);
        }
        self.settled_ahead.push((line, a, b));
    }

    /// `j` with every `"$name"` string that is bound replaced by its value.
    fn substitute(&self, j: &Json) -> Json {
        match j {
            // `$$…` is the text `$…`, not a name.
            Json::String(s) if s.starts_with("$$") => Json::String(s[1..].to_owned()),
            Json::String(s) if s.starts_with('$') => {
                self.bound.get(&s[1..]).cloned().unwrap_or_else(|| j.clone())
            }
            Json::Array(a) => Json::Array(a.iter().map(|v| self.substitute(v)).collect()),
            Json::Object(o) => {
                Json::Object(o.iter().map(|(k, v)| (k.clone(), self.substitute(v))).collect())
            }
            other => other.clone(),
        }
    }
}

/// The channel and handle of a link's `flow` line (a session's flow has no handle).
fn flow_link(line: &Json) -> Option<(u64, u64)> {
    if line.get("performative").and_then(Json::as_str) != Some("flow") {
        return None;
    }
    let handle = line.pointer("/fields/handle").and_then(Json::as_u64)?;
    Some((line.get("channel").and_then(Json::as_u64).unwrap_or(0), handle))
}

/// The performative a `send` step writes: named, or by its descriptor in the typed form
/// (a recording's).
fn sent_performative(j: &Json) -> Option<&str> {
    if let Some(p) = j.get("performative").and_then(Json::as_str) {
        return Some(p);
    }
    let code = j.pointer("/typed/described/0/ulong").and_then(Json::as_u64)?;
    crate::types::name_for_code(code)
}

/// The `$name` strings left in `j` (names of letters, digits, `_` and `-`).
fn unbound_names(j: &Json, out: &mut Vec<String>) {
    match j {
        Json::String(s) if s.starts_with("$$") => {}
        Json::String(s) => {
            let name = s.strip_prefix('$').unwrap_or_default();
            let is_name = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name.is_empty() && is_name && !out.contains(s) {
                out.push(s.clone());
            }
        }
        Json::Array(a) => a.iter().for_each(|v| unbound_names(v, out)),
        Json::Object(o) => o.values().for_each(|v| unbound_names(v, out)),
        _ => {}
    }
}

/// Where a `sasl` step stands.
enum SaslProgress {
    /// Waiting for the peer.
    Waiting,
    /// Authenticated.
    Done,
    /// What was expected, and what came.
    Failed(String, String),
}

/// The SASL client a `sasl` step describes.
fn sasl_client(v: &Json) -> Result<crate::sasl::SaslClient, String> {
    use crate::sasl::SaslClient;
    let text = |k: &str| v.get(k).and_then(Json::as_str).unwrap_or_default();
    let mechanism = v
        .get("mechanism")
        .and_then(Json::as_str)
        .ok_or("sasl needs \"mechanism\" (ANONYMOUS, PLAIN, EXTERNAL, SCRAM-SHA-256, MSSBCBS)")?;
    let client = match mechanism {
        "ANONYMOUS" => SaslClient::anonymous(text("trace")),
        "PLAIN" => SaslClient::plain_as(text("authzid"), text("user"), text("password")),
        "EXTERNAL" => SaslClient::external(text("authzid")),
        "MSSBCBS" => SaslClient::mssbcbs(),
        "SCRAM-SHA-256" => {
            // A script is data and plays the same every time; a nonce that is not given is
            // made from the credentials (scripts test peers, they do not guard secrets).
            let nonce = match v.get("nonce").and_then(Json::as_str) {
                Some(n) => n.to_owned(),
                None => {
                    use sha2::Digest;
                    let d = sha2::Sha256::digest(format!("{}\0{}", text("user"), text("password")));
                    crate::inspect::hex(&d[..16])
                }
            };
            SaslClient::scram_sha256(text("user"), text("password"), &nonce)
                .map_err(|e| e.to_string())?
        }
        other => return Err(format!("sasl: no mechanism {other:?}")),
    };
    Ok(match v.get("hostname").and_then(Json::as_str) {
        Some(h) => client.with_hostname(h),
        None => client,
    })
}

/// The authenticator a `sasl-server` step describes. SCRAM keys are derived with a salt
/// made from the user's name, and the server nonce, unless given, from the users: a
/// script plays the same every time (scripts test peers, they do not guard secrets).
fn sasl_server(v: &Json) -> Result<crate::sasl::Credentials, String> {
    use crate::sasl::Credentials;
    let o =
        v.as_object().ok_or("sasl-server is an object: {\"users\": {…}, \"anonymous\": true}")?;
    for k in o.keys() {
        if !matches!(k.as_str(), "users" | "anonymous" | "external" | "mssbcbs" | "nonce") {
            return Err(format!(
                "sasl-server: no field {k:?} (users, anonymous, external, mssbcbs, nonce)"
            ));
        }
    }
    let users = match o.get("users") {
        None => serde_json::Map::new(),
        Some(Json::Object(u)) => u.clone(),
        Some(_) => return Err("sasl-server.users maps each user to a password".into()),
    };
    let flag = |k: &str| match o.get(k) {
        None => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("sasl-server.{k} is true or false")),
    };
    let nonce = match o.get("nonce") {
        Some(Json::String(n)) => n.clone(),
        Some(_) => return Err("sasl-server.nonce is a string".into()),
        None => {
            use sha2::Digest;
            let names: Vec<&String> = users.keys().collect();
            crate::inspect::hex(&sha2::Sha256::digest(format!("{names:?}"))[..16])
        }
    };
    let mut c = Credentials::new(move || nonce.clone())
        .anonymous(flag("anonymous")?)
        .external(flag("external")?)
        .mssbcbs(flag("mssbcbs")?);
    for (user, password) in &users {
        let password =
            password.as_str().ok_or_else(|| format!("sasl-server.users.{user} is a string"))?;
        c = c.with_user(user, password, format!("salt:{user}").as_bytes());
    }
    Ok(c)
}

/// Whether `got` matches `pattern` (see the module documentation), binding names.
pub fn matches(pattern: &Json, got: &Json, bound: &mut HashMap<String, Json>) -> bool {
    match pattern {
        Json::String(s) if s == "*" => true,
        // `$$…` matches the text `$…` (an address such as `$cbs`, kept as it is).
        Json::String(s) if s.starts_with("$$") => got.as_str() == Some(&s[1..]),
        Json::String(s) if s.starts_with('$') && s.len() > 1 => {
            let name = &s[1..];
            match bound.get(name) {
                Some(v) => v == got,
                None => {
                    bound.insert(name.to_owned(), got.clone());
                    true
                }
            }
        }
        Json::Object(p) => match got.as_object() {
            Some(g) => p.iter().all(|(k, pv)| match g.get(k) {
                Some(gv) => matches(pv, gv, bound),
                // A field the peer left out reads as null, as the spec's defaults do.
                None => pv.is_null(),
            }),
            None => false,
        },
        Json::Array(p) => match got.as_array() {
            Some(g) => p.len() == g.len() && p.iter().zip(g).all(|(a, b)| matches(a, b, bound)),
            None => false,
        },
        other => other == got,
    }
}

/// The delivery ids a disposition (a pattern or a trace line) names: `first` and `last`,
/// an absent or null `last` being `first` (2.7.6); `None` when it is not a disposition or
/// its `first` is not a number (a wildcard, a variable).
fn disposition_range(j: &Json) -> Option<(u64, u64)> {
    if j.get("performative")?.as_str()? != "disposition" {
        return None;
    }
    let fields = j.get("fields")?;
    let first = fields.get("first")?.as_u64()?;
    let last = match fields.get("last") {
        None | Some(Json::Null) => first,
        Some(l) => l.as_u64()?,
    };
    (last >= first).then_some((first, last))
}

/// A disposition (pattern or line) without its `first` and `last`.
fn without_range(j: &Json) -> Json {
    let mut j = j.clone();
    if let Some(f) = j.get_mut("fields").and_then(Json::as_object_mut) {
        f.remove("first");
        f.remove("last");
    }
    j
}

/// Where `got` first fails to match `pattern`, as a path and the two values
/// (`fields.last: expected 0, got null`); `None` when it matches.
fn first_difference(
    pattern: &Json,
    got: &Json,
    bound: &mut HashMap<String, Json>,
) -> Option<String> {
    fn walk(
        p: &Json,
        g: Option<&Json>,
        path: &str,
        bound: &mut HashMap<String, Json>,
    ) -> Option<String> {
        let shown = |v: Option<&Json>| v.map_or("nothing (left out)".to_owned(), Json::to_string);
        match (p, g) {
            (Json::Object(po), Some(Json::Object(go))) => po.iter().find_map(|(k, pv)| {
                let at = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match go.get(k) {
                    Some(gv) => walk(pv, Some(gv), &at, bound),
                    None if pv.is_null() => None,
                    None => Some(format!("{at}: expected {pv}, got {}", shown(None))),
                }
            }),
            (Json::Array(pa), Some(Json::Array(ga))) if pa.len() == ga.len() => pa
                .iter()
                .zip(ga)
                .enumerate()
                .find_map(|(i, (a, b))| walk(a, Some(b), &format!("{path}[{i}]"), bound)),
            (_, Some(g)) if matches(p, g, bound) => None,
            _ => {
                // A name bound earlier in the same pattern: shown with its value.
                let expected = match p.as_str().and_then(|n| n.strip_prefix('$')) {
                    Some(name) => match bound.get(name) {
                        Some(v) => format!("{p} (= {v})"),
                        None => p.to_string(),
                    },
                    None => p.to_string(),
                };
                Some(format!(
                    "{}: expected {expected}, got {}",
                    if path.is_empty() { "the line" } else { path },
                    shown(g)
                ))
            }
        }
    }
    walk(pattern, Some(got), "", bound)
}

/// A record as people read it: the text rendering (offsets, fields).
fn describe(r: &Record) -> String {
    let mut s = String::new();
    render_text(r, &mut s);
    s.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Config, Connection};

    #[test]
    fn mistakes_in_a_script_are_said_before_it_is_played() {
        let within = Duration::from_secs(1);
        for (script, said) in [
            (r#"{"send": {"performative": "bogus"}}"#, "unknown performative"),
            (r#"{"send": "zz"}"#, "bad hex"),
            (r#"{"send": {"performative": "attach", "fields": {"handle": "0"}}}"#, "fields.handle"),
            (r#"{"expect": {"performative": "opne"}}"#, "\"opne\""),
            (
                r#"{"expect": {"performative": "open", "fields": {"container-idd": "x"}}}"#,
                "open has no field \"container-idd\"",
            ),
            (r#"{"expect": {"performative": "open", "within": 100}}"#, "goes beside"),
            (r#"{"send": "00", "expect": {"performative": "open"}}"#, "two steps"),
            (r#"{"expect": {"performative": "open"}, "withn": 100}"#, "unknown key \"withn\""),
            (r#"{"wait": 100, "within": 100}"#, "has no time limit"),
            (r#"{"expect": {"performative": "begin", "chanel": 1}}"#, "no key \"chanel\""),
            (
                r#"{"expect": {"performative": "attach", "fields": {"source": {"source": {"adress": "q"}}}}}"#,
                "fields.source: source has no field \"adress\"",
            ),
            (
                r#"{"expect": {"performative": "detach", "fields": {"error": {"error": {"conditon": "x"}}}}}"#,
                "error has no field \"conditon\"",
            ),
            (
                r#"{"expect": {"kind": "header", "protocolid": 0}}"#,
                "a header has no \"protocolid\"",
            ),
            (r#"{"write": {"chunk": 0}}"#, "a whole number from 1 to 18446744073709551615"),
            (
                r#"{"write": {"chunk": 99999999999999999999}}"#,
                "a whole number from 1 to 18446744073709551615",
            ),
        ] {
            let e = parse(script, within).expect_err(script);
            assert!(e.starts_with("line 1: ") && e.contains(said), "{script}: {e}");
        }
        // Variables are bound when the step runs; literals such as `$cbs` stay as written.
        for script in [
            r#"{"send": {"performative": "attach", "fields": {"handle": "$h"}}}"#,
            r#"{"expect": {"performative": "$p"}}"#,
            r#"{"send": {"performative": "attach", "fields": {"name": "$cbs", "handle": 0}}}"#,
            r#"{"expect": {"performative": "empty"}}"#,
            r#"{"expect": {"performative": "*"}}"#,
            // A composite's descriptor on a value that is not its list, as decode shows it.
            r#"{"expect": {"performative": "open", "fields": {"hostname": {"modified": {"decimal32": "73005374"}}}}}"#,
            r#"{"expect": {"performative": "open", "fields": {"hostname": {"rejected": {"sasl-mechanisms": {"data": {"binary": "6d"}}}}}}}"#,
        ] {
            assert!(parse(script, within).is_ok(), "{script}");
        }
        // A variable no expect bound, where a string does not fit: said when it runs.
        let f = against_server(&format!(
            "{OPEN}\n{{\"send\": {{\"performative\": \"attach\", \"fields\": {{\"handle\": \"$h\"}}}}}}"
        ))
        .expect_err("unbound");
        assert_eq!(f.step, 5, "{f:?}");
        assert!(
            f.got.ends_with("(\"$h\" bound by no expect before this step, so written as a string)"),
            "{f:?}"
        );
        // A name no expect bound, where a string fits: sent as text, and said so, once.
        let (p, v) = played_against_server(&format!(
            "{OPEN}\n{}\n{}\n{}",
            r#"{"send": {"performative": "begin", "fields": {"next-outgoing-id": 0, "incoming-window": 9, "outgoing-window": 9}}}"#,
            r#"{"send": {"performative": "attach", "fields": {"name": "$nope", "handle": 0, "role": "receiver"}}}"#,
            r#"{"send": {"performative": "detach", "fields": {"handle": 0, "error": {"described": [{"ulong": 29}, [{"symbol": "$nope"}, "$peer"]]}}}}"#,
        ));
        assert!(v.is_ok(), "{v:?}");
        assert_eq!(p.sent_unbound(), [(6, "$nope".to_owned())]);
        // A bound value that starts with `$` is a value: not taken for a name.
        let bound_to_dollar = "{\"send\": {\"kind\": \"header\", \"protocol_id\": 0}}
{\"send\": {\"performative\": \"open\", \"fields\": {\"container-id\": \"$x\"}}}
{\"expect\": {\"kind\": \"header\", \"protocol_id\": 0}}
{\"expect\": {\"performative\": \"open\", \"fields\": {\"container-id\": \"$peer\"}}}";
        let wrong =
            r#"{"send": {"performative": "begin", "fields": {"next-outgoing-id": "$peer"}}}"#;
        let (p, v) = played_against(&format!("{bound_to_dollar}\n{wrong}"), "$engine");
        assert_eq!(p.sent_unbound(), [(2, "$x".to_owned())]);
        assert_eq!(p.bound().get("peer"), Some(&Json::from("$engine")));
        let f = v.expect_err("a string for a number");
        assert!(f.got.contains("next-outgoing-id") && !f.got.contains("bound by no"), "{f:?}");
    }

    /// Plays `script` against an engine in server role, in memory; the verdict.
    fn against_server(script: &str) -> Result<(), Failure> {
        played_against_server(script).1
    }

    /// Plays `script` against an engine in server role, in memory; the player and its
    /// verdict.
    fn played_against_server(script: &str) -> (Player, Result<(), Failure>) {
        played_against(script, "engine")
    }

    /// Plays `script` against an engine in server role whose container-id is `id`.
    fn played_against(script: &str, id: &str) -> (Player, Result<(), Failure>) {
        let steps = parse(script, Duration::from_secs(5)).expect("script");
        let mut p = Player::new(steps);
        let mut server = Connection::server(Config::new(id));
        let mut now = Instant::now();
        p.start(now);
        for _ in 0..100 {
            let mut b = Vec::new();
            p.poll_transmit(&mut b);
            if !b.is_empty() {
                server.handle_input(&b, now);
            }
            let mut back = Vec::new();
            server.poll_transmit(&mut back);
            if !back.is_empty() {
                p.handle_input(&back, now);
            }
            while let Some(a) = p.poll_action() {
                if a == Action::Close {
                    server.handle_eof(now);
                }
            }
            if server.is_ended() && back.is_empty() {
                p.handle_eof(now);
            }
            if let Some(v) = p.verdict().cloned() {
                return (p, v);
            }
            if b.is_empty() && back.is_empty() {
                // Nothing moves: let time run to the next deadline.
                now = p.poll_timeout().unwrap_or(now + Duration::from_secs(1));
                p.handle_timeout(now);
                server.handle_timeout(now);
            }
        }
        panic!("the script never ended");
    }

    const OPEN: &str = r#"{"send": {"kind": "header", "protocol_id": 0}}
{"send": {"performative": "open", "fields": {"container-id": "script"}}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "open", "fields": {"container-id": "$peer"}}}"#;

    /// Plays `script` against a peer that sends `peer` (encode lines) and then closes.
    fn against_bytes(script: &str, peer: &str) -> Result<(), Failure> {
        let mut p = Player::new(parse(script, Duration::from_secs(5)).expect("script"));
        let now = Instant::now();
        p.start(now);
        p.handle_input(&super::super::encode::encode_lines(peer).expect("peer's frames"), now);
        p.handle_eof(now);
        p.verdict().cloned().expect("a verdict")
    }

    #[test]
    fn a_peer_that_closes_after_an_oversized_frame_is_said_to_have_had_one() {
        let open =
            r#"{"performative": "open", "fields": {"container-id": "p", "max-frame-size": 512}}"#;
        let big = format!(
            r#"{{"send": {{"performative": "transfer", "channel": 0, "fields": {{"handle": 0, "delivery-id": 0, "delivery-tag": "00"}}, "data": "{}"}}}}"#,
            "x".repeat(1000)
        );
        let script = [
            r#"{"expect": {"performative": "open"}}"#,
            &big,
            r#"{"expect": {"performative": "begin"}}"#,
        ]
        .join("\n");
        let f = against_bytes(&script, open).expect_err("the peer closed");
        assert_eq!(f.step, 3, "{f:?}");
        assert!(f.got.starts_with("the peer closed (step 2 sent a frame of 10"), "{f:?}");
        assert!(f.got.ends_with("over the max-frame-size of 512 its open announced)"), "{f:?}");
        // A frame within the limit: the peer just closed.
        let small = big.replace(&"x".repeat(1000), "x");
        let small_script = script.replace(&big, &small);
        let f = against_bytes(&small_script, open).expect_err("the peer closed");
        assert_eq!(f.got, "the peer closed", "{f:?}");
        // A script that closed the connection itself: its step is named, not the peer.
        for after in [r#"{"expect": {"performative": "begin"}}"#, r#"{"expect-silence": 10}"#] {
            let own = [r#"{"expect": {"performative": "open"}}"#, r#"{"close": true}"#, after];
            let f = against_bytes(&own.join("\n"), open).expect_err("closed");
            assert_eq!(f.step, 3, "{f:?}");
            assert_eq!(f.got, "the connection is closed: step 2 closed it", "{f:?}");
        }
        // A peer that answers with a close (a framing error) rather than hanging up: the
        // failure names the frame too.
        let close = r#"{"performative": "close", "fields": {"error": {"error": {"condition": {"symbol": "amqp:connection:framing-error"}}}}}"#;
        let f = against_bytes(&script, &format!("{open}\n{close}")).expect_err("a close");
        assert_eq!(f.step, 3, "{f:?}");
        assert!(f.got.contains("framing-error"), "{f:?}");
        assert!(
            f.got.ends_with("(step 2 sent a frame of 1027 bytes, over the max-frame-size of 512 the peer's open announced)"),
            "{f:?}"
        );
        let f = against_bytes(&small_script, &format!("{open}\n{close}")).expect_err("a close");
        assert!(!f.got.contains("max-frame-size"), "{f:?}");
    }

    #[test]
    fn frames_of_other_links_may_meet_later_expectations_first() {
        let transfer = |handle: u32, id: u32| {
            format!(
                r#"{{"performative": "transfer", "channel": 0, "fields": {{"handle": {handle}, "delivery-id": {id}, "delivery-tag": "0{id}"}}, "data": "m"}}"#
            )
        };
        let expect = |line: &str| format!(r#"{{"expect": {line}}}"#);
        let exp_transfer = |handle: u32, id: u32| {
            expect(&format!(
                r#"{{"performative": "transfer", "fields": {{"handle": {handle}, "delivery-id": {id}}}}}"#
            ))
        };
        let detach = |handle: u32| {
            format!(
                r#"{{"performative": "detach", "fields": {{"handle": {handle}, "closed": true}}}}"#
            )
        };
        let close = r#"{"performative": "close"}"#;
        let script = [
            exp_transfer(0, 0),
            exp_transfer(0, 1),
            expect(
                r#"{"performative": "disposition", "fields": {"first": 0, "last": 1, "state": {"accepted": "*"}}}"#,
            ),
            exp_transfer(1, 2),
            expect(&detach(0)),
            expect(&detach(1)),
            expect(close),
        ]
        .join("\n");
        // Another link's transfer, the disposition and the detaches in another order: held.
        let peer = [
            transfer(0, 0),
            transfer(1, 2),
            settle(0, Some(1), "36"),
            transfer(0, 1),
            detach(1),
            detach(0),
            close.to_owned(),
        ];
        let peer_reordered = [&peer[0], &peer[1], &peer[3], &peer[2], &peer[4], &peer[5], &peer[6]];
        let joined = |p: &[&String]| p.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n");
        let v = against_bytes(&script, &joined(&peer_reordered));
        assert!(v.is_ok(), "{v:?}");
        // One link's own frames stay in order: delivery 1 before delivery 0 is not held.
        let swapped = [&peer[1], &peer[3], &peer[0], &peer[2], &peer[4], &peer[5], &peer[6]];
        let f = against_bytes(&script, &joined(&swapped)).expect_err("a link's order");
        assert_eq!(f.step, 1, "{f:?}");
        // A close is never met before the link frames expected ahead of it.
        let early_close = [&peer[0], &peer[1], &peer[3], &peer[2], &peer[6]];
        let f = against_bytes(&script, &joined(&early_close)).expect_err("close first");
        assert_eq!(f.step, 5, "{f:?}");
        assert!(f.got.contains("close"), "{f:?}");
        // Across a transfer, disposition or flow we send, as across nothing: what came
        // before it was not caused by it. Across an attach or detach too, but for the
        // frame it asks for: a detach that came before ours is not its answer. Not across
        // anything else (a begin, an end, a close, a wait).
        let ours = |line: &str| format!(r#"{{"send": {line}}}"#);
        let across =
            |between: &str| [exp_transfer(0, 0), ours(between), exp_transfer(1, 2)].join("\n");
        let early = [transfer(1, 2), transfer(0, 0)].join("\n");
        assert!(against_bytes(&across(&settle(0, None, "36")), &early).is_ok());
        assert!(against_bytes(&across(&detach(5)), &early).is_ok());
        let f = against_bytes(&across(r#"{"performative": "end"}"#), &early).expect_err("end");
        assert_eq!(f.step, 1, "{f:?}");
        let answer = [exp_transfer(0, 0), ours(&detach(1)), expect(&detach(1))].join("\n");
        let unasked = [detach(1), transfer(0, 0)].join("\n");
        let f = against_bytes(&answer, &unasked).expect_err("a detach before ours");
        assert_eq!(f.step, 1, "{f:?}");
        // A recording's sends are typed: their descriptor names them.
        let typed = r#"{"kind": "frame", "typed": {"described": [{"ulong": 19}, [{"uint": 0}, {"uint": 9}, {"uint": 0}, {"uint": 9}]]}}"#;
        assert!(against_bytes(&across(typed), &early).is_ok());
    }

    #[test]
    fn out_of_order_frames_keep_to_their_link_their_deliveries_and_their_names() {
        let transfer = r#"{"performative": "transfer", "fields": {"handle": 2, "delivery-id": 5, "delivery-tag": "05"}, "data": "m"}"#;
        let script = [
            r#"{"expect": {"performative": "transfer", "fields": {"handle": 2}}}"#,
            r#"{"expect": {"performative": "disposition", "fields": {"role": "receiver", "first": 1, "last": 2, "settled": true, "state": {"accepted": "*"}}}}"#,
        ]
        .join("\n");
        // Settled one by one, before the other link's transfer, or around it: held.
        for order in [[0, 1, 2], [1, 0, 2], [1, 2, 0], [2, 1, 0]] {
            let frames = [transfer.to_owned(), settle(1, None, "36"), settle(2, None, "36")];
            let peer: Vec<&str> = order.iter().map(|i| frames[*i].as_str()).collect();
            let v = against_bytes(&script, &peer.join("\n"));
            assert!(v.is_ok(), "{order:?}: {v:?}");
        }
        // A transfer is not met before the attach of a link the script has not seen yet:
        // the attach's pattern names no handle, so it may be the transfer's link.
        let script = [
            r#"{"expect": {"performative": "attach", "fields": {"name": "a"}}}"#,
            r#"{"expect": {"performative": "transfer", "fields": {"handle": 0}}}"#,
        ]
        .join("\n");
        let attach =
            r#"{"performative": "attach", "fields": {"name": "a", "handle": 0, "role": "sender"}}"#;
        let early = transfer.replace("\"handle\": 2", "\"handle\": 0");
        let f = against_bytes(&script, &[early.as_str(), attach].join("\n")).expect_err("early");
        assert_eq!(f.step, 1, "{f:?}");
        // Attaches of other links (other names) may come in either order.
        let script = [
            r#"{"expect": {"performative": "attach", "fields": {"name": "a"}}}"#,
            r#"{"expect": {"performative": "attach", "fields": {"name": "b"}}}"#,
        ]
        .join("\n");
        let attach_b = attach.replace("\"a\"", "\"b\"").replace("\"handle\": 0", "\"handle\": 1");
        assert!(against_bytes(&script, &[attach_b.as_str(), attach].join("\n")).is_ok());
        // A name a passed-over send uses is not bound by a frame met early.
        let script = [
            r#"{"expect": {"performative": "transfer", "fields": {"handle": 2}}}"#,
            r#"{"send": {"performative": "disposition", "fields": {"role": "receiver", "first": "$d", "settled": true}}}"#,
            r#"{"expect": {"performative": "transfer", "fields": {"handle": 3, "delivery-id": "$d"}}}"#,
        ]
        .join("\n");
        let other = transfer.replace("\"handle\": 2", "\"handle\": 3");
        let f = against_bytes(&script, &[other.as_str(), transfer].join("\n"))
            .expect_err("$d is sent before it is bound");
        assert_eq!(f.step, 1, "{f:?}");
    }

    #[test]
    fn heartbeats_are_skipped_unless_asked_for_and_settlements_ahead_are_bounded() {
        let heartbeat = r#"{"performative": "empty"}"#;
        let detach = r#"{"performative": "detach", "fields": {"handle": 0}}"#;
        let asked = r#"{"expect": {"performative": "empty"}}"#;
        assert!(against_bytes(asked, heartbeat).is_ok());
        let skipped = r#"{"expect": {"performative": "detach"}}"#;
        assert!(against_bytes(skipped, &[heartbeat, heartbeat, detach].join("\n")).is_ok());
        // A peer that settles far ahead of the script: what is kept for later is bounded.
        let script = [
            r#"{"expect": {"performative": "transfer", "fields": {"handle": 2}}}"#.to_owned(),
            r#"{"expect": {"performative": "disposition", "fields": {"role": "receiver", "first": 0, "last": 4294967294, "settled": true, "state": {"accepted": "*"}}}}"#.to_owned(),
        ]
        .join("\n");
        let mut p = Player::new(parse(&script, Duration::from_secs(5)).expect("script"));
        let now = Instant::now();
        p.start(now);
        let many: Vec<String> =
            (0..SETTLED_AHEAD_KEPT as u32 + 10).map(|i| settle(i, None, "36")).collect();
        p.handle_input(&super::super::encode::encode_lines(&many.join("\n")).expect("peer"), now);
        assert!(p.verdict().is_none(), "{:?}", p.verdict());
        assert_eq!(p.settled_ahead.len(), SETTLED_AHEAD_KEPT);
    }

    #[test]
    fn an_ignored_frame_skipped_earlier_meets_a_later_expect_that_asks_for_it() {
        let flow = r#"{"performative": "flow", "fields": {"handle": 1, "link-credit": 5}}"#;
        let attach =
            r#"{"performative": "attach", "fields": {"name": "l", "handle": 0, "role": "sender"}}"#;
        let detach = r#"{"performative": "detach", "fields": {"handle": 0}}"#;
        let script = [
            r#"{"ignore": ["flow"]}"#,
            r#"{"expect": {"performative": "attach"}}"#,
            r#"{"expect": {"performative": "detach"}}"#,
            r#"{"expect": {"performative": "flow", "fields": {"handle": "*"}}}"#,
        ]
        .join("\n");
        // The flow came while the detach was expected: skipped then, met later.
        assert!(against_bytes(&script, &[attach, flow, detach].join("\n")).is_ok());
        // One that never came is still missed.
        let f = against_bytes(&script, &[attach, detach].join("\n")).expect_err("no flow");
        assert_eq!(f.step, 4, "{f:?}");
        // A skipped one meets only what it matches.
        let session_flow = r#"{"performative": "flow", "fields": {"next-incoming-id": 0}}"#;
        let f = against_bytes(&script, &[attach, session_flow, detach].join("\n"))
            .expect_err("a session flow has no handle");
        assert_eq!(f.step, 4, "{f:?}");
    }

    #[test]
    fn the_first_flows_of_many_links_wait_for_their_expects() {
        // A server that grants credit on 300 links at once, and more on the first many
        // times, before the script comes to each link's expected flow.
        let flow = |handle: u32, credit: u32| {
            format!(
                r#"{{"performative": "flow", "fields": {{"handle": {handle}, "link-credit": {credit}, "next-incoming-id": 0, "incoming-window": 9, "next-outgoing-id": 0, "outgoing-window": 9}}}}"#
            )
        };
        let attach =
            r#"{"performative": "attach", "fields": {"name": "l", "handle": 0, "role": "sender"}}"#;
        let detach = r#"{"performative": "detach", "fields": {"handle": 0}}"#;
        let mut peer = vec![attach.to_owned()];
        peer.extend((0..300).map(|h| flow(h, 1)));
        peer.extend((0..5000).map(|n| flow(0, n + 2)));
        peer.push(detach.to_owned());
        // Skipped while the detach is expected, each met by its expect afterwards.
        let mut script = vec![r#"{"ignore": ["flow"]}"#.to_owned()];
        script.push(r#"{"expect": {"performative": "attach"}}"#.to_owned());
        script.push(r#"{"expect": {"performative": "detach"}}"#.to_owned());
        script.extend((0..300).map(|h| {
            format!(r#"{{"expect": {{"performative": "flow", "fields": {{"handle": {h}}}}}}}"#)
        }));
        assert!(against_bytes(&script.join("\n"), &peer.join("\n")).is_ok());
    }

    #[test]
    fn a_failure_shows_the_pattern_as_matched_and_as_written() {
        let script = [
            r#"{"expect": {"performative": "attach", "fields": {"handle": "$h"}}}"#,
            r#"{"expect": {"performative": "detach", "fields": {"handle": "$h"}}}"#,
        ]
        .join("\n");
        let peer = [
            r#"{"performative": "attach", "fields": {"name": "l", "handle": 3, "role": "sender"}}"#,
            r#"{"performative": "detach", "fields": {"handle": 4}}"#,
        ]
        .join("\n");
        let f = against_bytes(&script, &peer).expect_err("another handle");
        assert_eq!(f.step, 2, "{f:?}");
        assert_eq!(
            f.expected,
            concat!(
                r#"{"performative":"detach","fields":{"handle":3}}"#,
                "\n(as written: ",
                r#"{"performative":"detach","fields":{"handle":"$h"}}"#,
                ")"
            )
        );
        // A name bound earlier in the same pattern is shown with its value.
        let same = r#"{"expect": {"performative": "attach", "fields": {"handle": "$x", "initial-delivery-count": "$x"}}}"#;
        let attach = r#"{"performative": "attach", "fields": {"name": "l", "handle": 3, "role": "sender", "initial-delivery-count": 4}}"#;
        let f = against_bytes(same, attach).expect_err("3 is not 4");
        assert!(
            f.got.ends_with(r#"(the first difference: fields.initial-delivery-count: expected "$x" (= 3), got 4)"#),
            "{f:?}"
        );
        // A pattern no name changed is shown once.
        let f = against_bytes(r#"{"expect": {"performative": "open"}}"#, &peer).expect_err("open");
        assert_eq!(f.expected, r#"{"performative":"open"}"#);
    }

    /// A disposition of the receiver settling `first..=last` (`last` left out if `None`)
    /// with `outcome`, as an encode line.
    fn settle(first: u32, last: Option<u32>, outcome: &str) -> String {
        let last = last.map_or(String::new(), |l| format!(r#", "last": {l}"#));
        let state = format!(r#"{{"described": [{{"ulong": {outcome}}}, []]}}"#);
        format!(
            r#"{{"performative": "disposition", "fields": {{"role": "receiver", "first": {first}{last}, "settled": true, "state": {state}}}}}"#
        )
    }

    #[test]
    fn a_disposition_expectation_holds_however_the_peer_groups_the_deliveries() {
        const ACCEPTED: &str = "36";
        const REJECTED: &str = "37";
        let expect = |first: u32, last: Option<u32>| {
            let last = last.map_or(String::new(), |l| format!(r#", "last": {l}"#));
            format!(
                r#"{{"expect": {{"performative": "disposition", "fields": {{"role": "receiver", "first": {first}{last}, "settled": true, "state": {{"accepted": "*"}}}}}}}}"#
            )
        };
        let lines = |l: &[String]| l.join("\n");
        let one_by_one = lines(&[
            settle(0, None, ACCEPTED),
            settle(1, Some(1), ACCEPTED),
            settle(2, None, ACCEPTED),
        ]);
        let batched = settle(0, Some(2), ACCEPTED);
        // Recorded as one batch, answered one by one; and the other way round.
        against_bytes(&expect(0, Some(2)), &one_by_one).expect("batch expected, singles sent");
        let singles = lines(&[expect(0, None), expect(1, Some(1)), expect(2, None)]);
        against_bytes(&singles, &batched).expect("singles expected, batch sent");
        // An absent `last` is `first`.
        against_bytes(&expect(0, Some(0)), &settle(0, None, ACCEPTED)).expect("last left out");
        // Batches that straddle the patterns' ranges, either way.
        let two = lines(&[expect(0, Some(1)), expect(2, Some(3))]);
        let straddling = lines(&[settle(0, Some(2), ACCEPTED), settle(3, None, ACCEPTED)]);
        against_bytes(&two, &straddling).expect("0..2 then 3 for 0..1 and 2..3");
        let two = lines(&[expect(0, None), expect(1, Some(2))]);
        let straddling = lines(&[settle(0, Some(1), ACCEPTED), settle(2, None, ACCEPTED)]);
        against_bytes(&two, &straddling).expect("0..1 then 2 for 0 and 1..2");
        // Ids settled in advance are used once: a later pattern for the same id (another
        // session's delivery 1, say) takes the frame that settles it.
        let detach = r#"{"expect": {"performative": "detach"}}"#;
        let script = lines(&[expect(0, None), expect(1, None), expect(1, None), detach.into()]);
        let peer = lines(&[
            settle(0, Some(1), ACCEPTED),
            settle(1, None, ACCEPTED),
            r#"{"performative": "detach", "fields": {"handle": 0}}"#.into(),
        ]);
        against_bytes(&script, &peer).expect("advance used once");
        // But each delivery must be settled as the pattern says, and all of them.
        let rejected_one = lines(&[
            settle(0, None, ACCEPTED),
            settle(1, None, REJECTED),
            settle(2, None, ACCEPTED),
        ]);
        let f = against_bytes(&expect(0, Some(2)), &rejected_one).expect_err("one rejected");
        assert!(f.got.contains("(the first difference: fields.state.accepted: expected \"*\", got nothing (left out))"), "{f:?}");
        let f = against_bytes(&expect(0, Some(2)), &settle(0, Some(1), ACCEPTED))
            .expect_err("one missing");
        assert_eq!(f.got, "the peer closed", "{f:?}");
        // A frame that starts elsewhere does not count.
        let f = against_bytes(&expect(0, Some(1)), &settle(1, Some(1), ACCEPTED))
            .expect_err("starts at 1");
        assert!(f.got.contains("(the first difference: fields.first: expected 0, got 1)"), "{f:?}");
    }

    #[test]
    fn a_script_that_holds_passes_and_binds_names() {
        let script = format!(
            r#"{OPEN}
{{"send": {{"performative": "begin"}}}}
{{"expect": {{"performative": "begin", "fields": {{"remote-channel": 0, "next-outgoing-id": "*"}}}}}}
{{"send": {{"performative": "close"}}}}
{{"expect": {{"performative": "close"}}}}
{{"expect-close": true}}"#
        );
        assert_eq!(against_server(&script), Ok(()));
    }

    #[test]
    fn a_role_is_expected_by_its_name_as_it_is_sent() {
        // 2.8.1: a role is a boolean; scripts write it "sender" or "receiver" on both sides.
        let attach = |role: &str| {
            format!(
                r#"{OPEN}
{{"send": {{"performative": "begin"}}}}
{{"expect": {{"performative": "begin"}}}}
{{"send": {{"performative": "attach", "fields": {{"name": "s", "handle": 0, "role": "sender", "initial-delivery-count": 0, "target": {{"described": [{{"ulong": 41}}, ["q"]]}}}}}}}}
{{"expect": {{"performative": "attach", "fields": {{"name": "$name", "role": "{role}"}}}}}}
{{"send": {{"performative": "detach", "fields": {{"handle": 0, "closed": true}}}}}}
{{"expect": {{"performative": "detach"}}}}"#
            )
        };
        assert_eq!(against_server(&attach("receiver")), Ok(()));
        let f = against_server(&attach("sender")).expect_err("the engine answers as receiver");
        assert_eq!(f.step, 8, "{f}");
        assert!(f.got.contains("role: true (receiver)"), "{f}");
        // The boolean itself still matches.
        assert_eq!(against_server(&attach("receiver").replace(r#""receiver""#, "true")), Ok(()));
    }

    #[test]
    fn a_wrong_expectation_fails_at_its_step_with_what_came() {
        let script = format!(
            r#"{OPEN}
{{"send": {{"performative": "begin"}}}}
{{"expect": {{"performative": "attach"}}}}"#
        );
        let f = against_server(&script).expect_err("no attach comes");
        assert_eq!(f.step, 6);
        assert!(f.expected.contains("attach"), "{f}");
        assert!(f.got.contains("begin"), "{f}");
        // A transfer on a link never attached: the engine ends the session with an error.
        let script = format!(
            r#"{OPEN}
{{"send": {{"performative": "begin"}}}}
{{"expect": {{"performative": "begin"}}}}
{{"send": {{"performative": "transfer", "fields": {{"handle": 3, "delivery-id": 0, "delivery-tag": "01"}}, "data": "x"}}}}
{{"expect": {{"performative": "end", "fields": {{"error": {{"error": {{"condition": "amqp:session:unattached-handle"}}}}}}}}}}"#
        );
        assert_eq!(against_server(&script), Ok(()));
    }

    #[test]
    fn a_lenient_script_is_paced_by_expectations_and_never_fails() {
        // The attach expected never comes (no attach was sent): strictly the script fails
        // at that step; leniently it waits out the limit, moves on, and ends well.
        let body = r#"{"send": {"performative": "begin"}}
{"expect": {"performative": "attach"}, "within": 100}
{"expect": {"performative": "end"}, "within": 100}
{"send": {"performative": "close"}}
{"expect": {"performative": "close"}}
{"expect-close": true}"#;
        let strict = format!("{OPEN}\n{body}");
        assert_eq!(against_server(&strict).expect_err("no attach").step, 6);
        let lenient = format!("{{\"lenient\": true}}\n{OPEN}\n{body}");
        assert_eq!(against_server(&lenient), Ok(()));
    }

    #[test]
    fn a_lenient_script_ends_when_the_peer_stream_breaks_off() {
        // The peer answers the header with a frame whose size (4) is below the minimum:
        // nothing can be decoded after it. Leniently, the expectations after it wait for
        // nothing (as after the stream's end), and the sends after them are not made;
        // strictly, the framing error is what the expectation meets.
        let body = r#"{"send": {"kind": "header", "protocol_id": 0}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"expect": {"performative": "open"}, "within": 60000}
{"send": {"performative": "begin"}}
{"expect": {"performative": "begin"}, "within": 60000}"#;
        let broken = b"AMQP\x00\x01\x00\x00\x00\x00\x00\x04\x02\x00\x00\x00";
        for (lenient, pieces) in [(true, 1), (true, 2), (false, 1)] {
            let script =
                if lenient { format!("{{\"lenient\": true}}\n{body}") } else { body.into() };
            let mut p = Player::new(parse(&script, Duration::from_secs(5)).expect("script"));
            let now = Instant::now();
            p.start(now);
            let mut sent = Vec::new();
            p.poll_transmit(&mut sent);
            assert_eq!(sent, b"AMQP\x00\x01\x00\x00");
            // Whole, or with the frame's size split across two reads.
            let (a, b) = broken.split_at(if pieces == 1 { broken.len() } else { 10 });
            p.handle_input(a, now);
            p.handle_input(b, now);
            let verdict = p.verdict().cloned();
            if lenient {
                assert_eq!(verdict, Some(Ok(())), "pieces {pieces}");
                let mut after = Vec::new();
                p.poll_transmit(&mut after);
                assert!(after.is_empty(), "the begin after the break was not sent");
                assert_eq!(p.poll_timeout(), None);
            } else {
                let f = verdict.expect("a verdict").expect_err("strict fails");
                assert_eq!(f.step, 3, "{f}");
            }
        }
    }

    /// Plays `script` against an engine server that authenticates alice (password secret)
    /// with PLAIN or SCRAM-SHA-256.
    fn against_authenticating_server(script: &str) -> Result<(), Failure> {
        let steps = parse(script, Duration::from_secs(5)).expect("script");
        let mut p = Player::new(steps);
        let mut cfg = Config::new("engine");
        cfg.authenticator = Some(Box::new(
            crate::sasl::Credentials::new(|| "servernonce".to_owned())
                .with_user("alice", "secret", b"salt"),
        ));
        let mut server = Connection::server(cfg);
        let now = Instant::now();
        p.start(now);
        for _ in 0..50 {
            let mut b = Vec::new();
            p.poll_transmit(&mut b);
            server.handle_input(&b, now);
            let mut back = Vec::new();
            server.poll_transmit(&mut back);
            p.handle_input(&back, now);
            if let Some(v) = p.verdict() {
                return v.clone();
            }
        }
        panic!("the script never ended");
    }

    #[test]
    fn a_sasl_step_authenticates_with_scram_and_checks_the_server() {
        let open = r#"{"send": {"kind": "header", "protocol_id": 0}}
{"expect": {"kind": "header", "protocol_id": 0}}
{"send": {"performative": "open", "fields": {"container-id": "script"}}}
{"expect": {"performative": "open"}}"#;
        for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
            let good = format!(
                r#"{{"sasl": {{"mechanism": "{mechanism}", "user": "alice", "password": "secret"}}}}
{open}"#
            );
            assert_eq!(against_authenticating_server(&good), Ok(()), "{mechanism}");
            let bad = format!(
                r#"{{"sasl": {{"mechanism": "{mechanism}", "user": "alice", "password": "nope"}}}}
{open}"#
            );
            let f = against_authenticating_server(&bad).expect_err("wrong password");
            assert_eq!(f.step, 1, "{f}");
            assert!(f.got.contains("auth"), "{f}");
        }
        // A mechanism the server does not offer is refused before any sasl-init.
        let f = against_authenticating_server(r#"{"sasl": {"mechanism": "EXTERNAL"}}"#)
            .expect_err("EXTERNAL is not offered");
        assert!(f.got.contains("EXTERNAL"), "{f}");
        assert!(parse(r#"{"sasl": {"mechanism": "KERBEROS"}}"#, Duration::ZERO).is_err());
    }

    #[test]
    fn a_write_step_sets_the_pacing_of_what_follows() {
        let steps = parse(
            r#"{"send": "00"}
{"write": {"chunk": 3, "delay": 7}}
{"send": "0102030405"}"#,
            Duration::from_secs(1),
        )
        .expect("script");
        let mut p = Player::new(steps);
        assert_eq!(p.pacing(), None);
        p.start(Instant::now());
        assert_eq!(p.pacing(), Some((3, Duration::from_millis(7))));
        let mut out = Vec::new();
        p.poll_transmit(&mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, 5]);
        for bad in [r#"{"write": {"chunk": 0}}"#, r#"{"write": {"delay": 5}}"#] {
            assert!(parse(bad, Duration::from_secs(1)).is_err(), "{bad}");
        }
    }

    #[test]
    fn keepalive_keeps_the_peer_s_idle_time_out_and_only_then() {
        // The peer's open asks for 1000 ms; the script then waits 5 s for a begin. With
        // `keepalive`, an empty frame goes out whenever 500 ms pass without a write; without
        // it (or with a peer that asks for none), nothing.
        let peer = |idle: &str| {
            super::super::encode::encode_lines(&format!(
                r#"{{"kind": "header", "protocol_id": 0}}
{{"performative": "open", "fields": {{"container-id": "p"{idle}}}}}"#
            ))
            .expect("peer's frames")
        };
        let empties = |script: &str, idle: &str| {
            let mut p = Player::new(parse(script, Duration::from_secs(5)).expect("script"));
            let t0 = Instant::now();
            p.start(t0);
            p.handle_input(&peer(idle), t0);
            let mut out = Vec::new();
            p.poll_transmit(&mut out);
            let mut beats = Vec::new();
            // Time as a driver gives it: at each time the player asks for.
            while let Some(at) = p.poll_timeout() {
                if at > t0 + Duration::from_millis(2_100) {
                    break;
                }
                p.handle_timeout(at);
                let mut o = Vec::new();
                p.poll_transmit(&mut o);
                if o == [0, 0, 0, 8, 2, 0, 0, 0] {
                    beats.push((at - t0).as_millis());
                }
            }
            beats
        };
        let script = format!(
            "{{\"keepalive\": true}}\n{OPEN}\n{{\"expect\": {{\"performative\": \"begin\"}}}}"
        );
        assert_eq!(empties(&script, r#", "idle-time-out": 1000"#), [500, 1000, 1500, 2000]);
        assert_eq!(empties(&script, ""), Vec::<u128>::new(), "the peer asks for none");
        let without = script.replace("{\"keepalive\": true}\n", "");
        assert_eq!(empties(&without, r#", "idle-time-out": 1000"#), Vec::<u128>::new());
        // None before our AMQP header (a server's script that waits for the client's open
        // first), none after our close.
        let waits = "{\"keepalive\": true}\n{\"expect\": {\"kind\": \"header\"}}\n\
                     {\"expect\": {\"performative\": \"open\"}}\n\
                     {\"expect\": {\"performative\": \"begin\"}}";
        assert_eq!(empties(waits, r#", "idle-time-out": 1000"#), Vec::<u128>::new());
        let closed = format!(
            "{{\"keepalive\": true}}\n{OPEN}\n{{\"send\": {{\"performative\": \"close\"}}}}\n\
             {{\"expect\": {{\"performative\": \"close\"}}}}"
        );
        assert_eq!(empties(&closed, r#", "idle-time-out": 1000"#), Vec::<u128>::new());
        let half =
            closed.replace(r#"{"send": {"performative": "close"}}"#, r#"{"half-close": true}"#);
        assert_eq!(empties(&half, r#", "idle-time-out": 1000"#), Vec::<u128>::new());
        // Steps that are taken or not take `true`; an ignored name must be a performative.
        for bad in [r#"{"close": false}"#, r#"{"lenient": 1}"#, r#"{"keepalive": false}"#] {
            let e = parse(bad, Duration::from_secs(1)).expect_err(bad);
            assert!(e.contains("takes true"), "{bad}: {e}");
        }
        let e = parse(r#"{"ignore": ["flwo"]}"#, Duration::from_secs(1)).expect_err("misspelt");
        assert!(e.contains(r#"no performative or SASL body is named "flwo""#), "{e}");
    }

    #[test]
    fn a_transfer_without_credit_detaches_the_link() {
        // The engine grants no credit to a link it accepts until its application asks.
        let script = format!(
            r#"{OPEN}
{{"send": {{"performative": "begin"}}}}
{{"expect": {{"performative": "begin"}}}}
{{"send": {{"performative": "attach", "fields": {{"name": "s", "handle": 0, "role": "sender", "initial-delivery-count": 0, "target": {{"described": [{{"ulong": 41}}, ["q"]]}}}}}}}}
{{"expect": {{"performative": "attach", "fields": {{"handle": "$handle"}}}}}}
{{"send": {{"performative": "transfer", "fields": {{"handle": 0, "delivery-id": 0, "delivery-tag": "01", "settled": true}}, "data": "no credit"}}}}
{{"expect": {{"performative": "detach", "fields": {{"handle": "$handle", "error": {{"error": {{"condition": "amqp:link:transfer-limit-exceeded"}}}}}}}}}}"#
        );
        assert_eq!(against_server(&script), Ok(()));
    }
}

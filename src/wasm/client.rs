//! The client's module (feature `wasm`): [`Engine`], one client connection driven from
//! JavaScript.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasm_bindgen::prelude::*;

use crate::codec::Symbol;
use crate::connection::{
    Config, Connection, Event, LinkId, LinkOptions, SessionId, TraceRecord, UsageError,
};
use crate::inspect::json::{write_payload, Sink, Writer};
use crate::json::Json;
use crate::sasl::SaslClient;
use crate::time::Instant;
use crate::types::{Accepted, DeliveryState, Modified, Rejected, Released, SequenceNo};

use super::message::{member_bool, member_opt_str, member_str, parse_json};
use super::{err, message, message_from_json, pack_trace_frame};

/// Bytes the trace callback saw, packed as [`pack_trace_frame`] packs them, waiting for
/// [`Engine::poll_trace_frames`].
type TraceQueue = Arc<Mutex<Vec<u8>>>;

/// One AMQP client connection, driven from JavaScript (see the module documentation).
#[wasm_bindgen]
pub struct Engine {
    conn: Connection,
    /// Sessions by the number JavaScript knows them by (their index), as links below.
    sessions: Vec<SessionId>,
    /// Links by the number JavaScript knows them by (their index). An ended link keeps
    /// its number, and its id names no later link (the engine tells links on a reused
    /// handle apart).
    links: Vec<LinkId>,
    /// Credit to grant each receiving link once it is attached (by link number).
    credit_on_attach: Vec<(usize, u32)>,
    /// Delivery-tags handed out so far.
    next_tag: u64,
    traced: TraceQueue,
    start: Instant,
}

#[wasm_bindgen]
impl Engine {
    /// A client connection. `options` (JSON): `containerId` (required), `hostname`,
    /// `maxFrameSize`, `channelMax`, `idleTimeOut` (milliseconds), `outgoingLocales`,
    /// `incomingLocales` (arrays of strings; `locales` sets both), `properties` (an object
    /// of string keys), `sasl` (`{"mechanism": "PLAIN", "username": …, "password": …}` or
    /// `{"mechanism": "ANONYMOUS"}` or `{"mechanism": "MSSBCBS"}`; none: no SASL layer),
    /// `trace` (`true`: every header and frame in and out is kept for
    /// [`Engine::poll_trace_frames`]; nothing is kept otherwise).
    #[wasm_bindgen(constructor)]
    pub fn new(options: &str) -> Result<Self, JsError> {
        let o = parse_json("connection options", options)?;
        const KNOWN: [&str; 11] = [
            "containerId",
            "hostname",
            "maxFrameSize",
            "channelMax",
            "idleTimeOut",
            "locales",
            "outgoingLocales",
            "incomingLocales",
            "properties",
            "sasl",
            "trace",
        ];
        let fields = o.as_object().ok_or_else(|| err("connection options: not an object"))?;
        if let Some((k, _)) = fields.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
            return Err(err(format!(
                "connection options: unknown option {k:?} (known: {})",
                KNOWN.join(", ")
            )));
        }
        let container_id = o
            .get("containerId")
            .and_then(Json::as_str)
            .ok_or_else(|| err("connection options: containerId (a string) is required"))?;
        let mut cfg = Config::new(container_id);
        cfg.hostname = opt_str(&o, "hostname")?.map(str::to_owned);
        if let Some(n) = opt_u64(&o, "maxFrameSize")? {
            cfg.max_frame_size = u32::try_from(n)
                .ok()
                .filter(|n| *n >= 512)
                .ok_or_else(|| err("connection options: maxFrameSize must be 512 to 4294967295"))?;
        }
        if let Some(n) = opt_u64(&o, "channelMax")? {
            cfg.channel_max = u16::try_from(n)
                .map_err(|_| err("connection options: channelMax is over 65535"))?;
        }
        if let Some(ms) = opt_u64(&o, "idleTimeOut")? {
            // The open's idle-time-out is a uint of milliseconds.
            u32::try_from(ms)
                .map_err(|_| err("connection options: idleTimeOut is over 4294967295 ms"))?;
            cfg.idle_time_out = Some(Duration::from_millis(ms));
        }
        let symbols = |key: &str| -> Result<Option<Vec<Symbol>>, JsError> {
            match o.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str().map(Symbol::from).ok_or_else(|| {
                            err(format!("connection options: {key} holds {v}, not a string"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(v) => Err(err(format!("connection options: {key} is {v}, not an array"))),
            }
        };
        if let Some(l) = symbols("locales")? {
            cfg.outgoing_locales.clone_from(&l);
            cfg.incoming_locales = l;
        }
        if let Some(l) = symbols("outgoingLocales")? {
            cfg.outgoing_locales = l;
        }
        if let Some(l) = symbols("incomingLocales")? {
            cfg.incoming_locales = l;
        }
        if let Some(p) = o.get("properties").filter(|p| !p.is_null()) {
            cfg.properties = Some(message::fields_from_json("connection options: properties", p)?);
        }
        if let Some(s) = o.get("sasl").filter(|s| !s.is_null()) {
            if s.as_object().is_none() {
                return Err(err(format!(
                    "connection options: sasl is {s}, not an object such as {{\"mechanism\": \"ANONYMOUS\"}}"
                )));
            }
            let mechanism = s.get("mechanism").and_then(Json::as_str).unwrap_or_default();
            cfg.sasl_client = Some(match mechanism.to_ascii_uppercase().as_str() {
                "PLAIN" => {
                    let user = s.get("username").and_then(Json::as_str);
                    let password = s.get("password").and_then(Json::as_str);
                    let (Some(user), Some(password)) = (user, password) else {
                        return Err(err("SASL PLAIN needs a username and a password (strings)"));
                    };
                    SaslClient::plain(user, password)
                }
                "ANONYMOUS" => SaslClient::anonymous(""),
                // Azure's: an empty exchange, then tokens on $cbs (putTokenMessage).
                "MSSBCBS" => SaslClient::mssbcbs(),
                other => {
                    return Err(err(format!(
                        "SASL mechanism {other:?}: the browser binding offers PLAIN, \
                         ANONYMOUS and MSSBCBS"
                    )))
                }
            });
        }
        let traced = TraceQueue::default();
        match o.get("trace") {
            None | Some(Json::Null | Json::Bool(false)) => {}
            Some(Json::Bool(true)) => {
                let queue = Arc::clone(&traced);
                cfg.trace = Some(Box::new(move |r: &TraceRecord<'_>| {
                    if let Ok(mut q) = queue.lock() {
                        pack_trace_frame(&mut q, r.direction, r.raw);
                    }
                }));
            }
            Some(v) => {
                return Err(err(format!("connection options: trace is {v}, not true or false")))
            }
        }
        Ok(Self {
            conn: Connection::client(cfg),
            sessions: Vec::new(),
            links: Vec::new(),
            credit_on_attach: Vec::new(),
            next_tag: 0,
            traced,
            start: Instant::now(),
        })
    }

    /// Bytes received from the peer (any chunking).
    #[wasm_bindgen(js_name = handleInput)]
    pub fn handle_input(&mut self, data: &[u8]) {
        self.conn.handle_input(data, Instant::now());
    }

    /// The transport closed.
    #[wasm_bindgen(js_name = handleEof)]
    pub fn handle_eof(&mut self) {
        self.conn.handle_eof(Instant::now());
    }

    /// The timer set from [`Engine::poll_timeout`] fired.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self) {
        self.conn.handle_timeout(Instant::now());
    }

    /// What to send now (empty: nothing).
    #[wasm_bindgen(js_name = pollTransmit)]
    pub fn poll_transmit(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.conn.poll_transmit(&mut out);
        out
    }

    /// Milliseconds until [`Engine::handle_timeout`] is due, or -1 when no timer runs.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> f64 {
        self.conn
            .poll_timeout()
            .map_or(-1.0, |t| t.saturating_duration_since(Instant::now()).as_secs_f64() * 1000.0)
    }

    /// Whether the connection is over.
    #[wasm_bindgen(js_name = isEnded)]
    pub fn is_ended(&self) -> bool {
        self.conn.is_ended()
    }

    /// The events since the last call: a JSON array of objects with a `type` (`saslDone`,
    /// `opened`, `sessionBegun`, `sessionEnded`, `linkAttached`, `linkDetached`, `credit`,
    /// `delivery`, `disposition`, `aborted`, `linkError`, `sessionError`, `remoteClose`,
    /// `ended`, `other`); deliveries carry the message as `amqpwire decode --json` shows
    /// it (`message`) and its bytes in hex (`payload`).
    #[wasm_bindgen(js_name = pollEvents)]
    pub fn poll_events(&mut self) -> String {
        let mut out = String::new();
        let mut w = Writer::new(&mut out);
        w.begin_array();
        while let Some(ev) = self.conn.poll_event() {
            if let Event::LinkAttached { link, .. } = &ev {
                self.grant_initial_credit(*link);
            }
            self.write_event(&mut w, &ev);
        }
        w.end_array();
        out
    }

    /// Every header and frame in and out since the last call (with option `trace`), packed
    /// as [`pack_trace_frame`] packs them: what a `Tracer` (the trace module, feature
    /// `wasm-trace`) makes the JSON records of `--trace-json` from. Empty
    /// when nothing came or went.
    #[wasm_bindgen(js_name = pollTraceFrames)]
    pub fn poll_trace_frames(&mut self) -> Vec<u8> {
        self.traced.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default()
    }

    /// Seconds since the engine was made: the `time` of trace records.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Begins a session; its number comes back at once, `sessionBegun` when the peer
    /// answered.
    pub fn begin(&mut self) -> Result<usize, JsError> {
        let id = self.conn.begin().map_err(err)?;
        self.sessions.push(id);
        Ok(self.sessions.len() - 1)
    }

    /// Attaches a sender to `address`; returns the link's number (`linkAttached` follows).
    #[wasm_bindgen(js_name = attachSender)]
    pub fn attach_sender(
        &mut self,
        session: f64,
        name: &str,
        address: &str,
    ) -> Result<usize, JsError> {
        let link = self.conn.attach(self.session(session)?, LinkOptions::sender(name, address));
        Ok(self.add_link(link.map_err(err)?))
    }

    /// Attaches a receiver from `address`, granting `credit` once it is attached.
    #[wasm_bindgen(js_name = attachReceiver)]
    pub fn attach_receiver(
        &mut self,
        session: f64,
        name: &str,
        address: &str,
        credit: f64,
    ) -> Result<usize, JsError> {
        let credit = uint("credit", credit)?;
        let session = self.session(session)?;
        let link = self.conn.attach(session, LinkOptions::receiver(name, address));
        let n = self.add_link(link.map_err(err)?);
        self.credit_on_attach.push((n, credit));
        Ok(n)
    }

    /// Grants a receiving link `credit`.
    pub fn flow(&mut self, link: f64, credit: f64) -> Result<(), JsError> {
        let credit = uint("credit", credit)?;
        let id = self.link(link)?;
        self.conn.flow(id, credit, false).map_err(err)
    }

    /// A sending link asked to drain (a `credit` event with `drain`) that has nothing to
    /// send: its credit is used up, and the flow that says so goes to the peer (2.6.7).
    pub fn drained(&mut self, link: f64) -> Result<(), JsError> {
        let id = self.link(link)?;
        self.conn.drained(id).map_err(err)
    }

    /// Sends a message given as JSON (see [`message_from_json`]), unsettled; returns its
    /// delivery-id (its `disposition` event brings the outcome), or -1 when the peer's
    /// session incoming-window cannot take it now (send it again after a `sessionWindow`
    /// event).
    pub fn send(&mut self, link: f64, message: &str) -> Result<f64, JsError> {
        let m = message_from_json(&parse_json("message", message)?)?;
        self.send_encoded(link, &m.to_vec())
    }

    /// Sends a message already encoded (as the Azure module's `c2dMessage` and `putTokenMessage`
    /// make).
    #[wasm_bindgen(js_name = sendEncoded)]
    pub fn send_encoded(&mut self, link: f64, payload: &[u8]) -> Result<f64, JsError> {
        let id = self.link(link)?;
        self.next_tag += 1;
        let tag = Bytes::copy_from_slice(&self.next_tag.to_be_bytes());
        match self.conn.send(id, tag, payload, false) {
            Ok(d) => Ok(d.0.into()),
            Err(UsageError::SessionWindowFull) => Ok(-1.0),
            Err(e) => Err(err(e)),
        }
    }

    /// Settles a received delivery with `outcome`: `accepted`, `rejected`, `released` or
    /// `modified`; `description` goes into a rejection's error.
    pub fn settle(
        &mut self,
        link: f64,
        delivery_id: f64,
        outcome: &str,
        description: Option<String>,
    ) -> Result<(), JsError> {
        let delivery_id = uint("delivery-id", delivery_id)?;
        let id = self.link(link)?;
        let state = match outcome {
            "accepted" => DeliveryState::Accepted(Accepted {}),
            "rejected" => DeliveryState::Rejected(Rejected {
                error: description.map(|d| crate::types::Error::new("amqp:internal-error", d)),
            }),
            "released" => DeliveryState::Released(Released {}),
            "modified" => DeliveryState::Modified(Modified::default()),
            other => {
                return Err(err(format!(
                    "outcome {other:?}: accepted, rejected, released or modified"
                )))
            }
        };
        let first = SequenceNo(delivery_id);
        if !self.conn.unsettled(id).contains(&first) {
            // (`link` was checked as a uint by `self.link`; a float's `Display` would pull core's
            // float formatting, about 10 KB, into the module.)
            let link = link as u32;
            return Err(err(format!("link {link} has no unsettled delivery {delivery_id}")));
        }
        self.conn.disposition(id, first, None, true, Some(state)).map_err(err)
    }

    /// Ends a session (`sessionEnded` follows once the peer answered); its links end with
    /// it.
    pub fn end(&mut self, session: f64) -> Result<(), JsError> {
        let id = self.session(session)?;
        self.conn.end_session(id, None).map_err(err)
    }

    /// Detaches (and closes) a link.
    pub fn detach(&mut self, link: f64) -> Result<(), JsError> {
        let id = self.link(link)?;
        self.conn.detach(id, true, None).map_err(err)
    }

    /// Closes the connection (`ended` follows once the peer answered).
    pub fn close(&mut self) -> Result<(), JsError> {
        // The close time-out runs from the time the engine last heard: tell it the time.
        self.conn.handle_timeout(Instant::now());
        self.conn.close(None).map_err(err)
    }
}

impl Engine {
    /// A number for a new link.
    fn add_link(&mut self, id: LinkId) -> usize {
        self.links.push(id);
        self.links.len() - 1
    }

    fn link(&self, n: f64) -> Result<LinkId, JsError> {
        let n = uint("link", n)?;
        let id = *self.links.get(n as usize).ok_or_else(|| err(format!("no link {n}")))?;
        if self.conn.link_state(id).is_none() {
            return Err(err(format!("link {n} has ended")));
        }
        Ok(id)
    }

    fn session(&self, n: f64) -> Result<SessionId, JsError> {
        let n = uint("session", n)?;
        let id = *self.sessions.get(n as usize).ok_or_else(|| err(format!("no session {n}")))?;
        if self.conn.session_state(id).is_none() {
            return Err(err(format!("session {n} has ended")));
        }
        Ok(id)
    }

    /// `"session": n`, or `null` for a session this binding did not begin.
    fn session_member(&self, w: &mut Writer<'_>, id: SessionId) {
        w.key("session");
        match self.sessions.iter().position(|s| *s == id) {
            Some(n) => w.u64(n as u64),
            None => w.null(),
        }
    }

    fn number_of_link(&self, id: LinkId) -> Option<usize> {
        self.links.iter().position(|l| *l == id)
    }

    fn grant_initial_credit(&mut self, id: LinkId) {
        let Some(n) = self.number_of_link(id) else { return };
        if let Some(i) = self.credit_on_attach.iter().position(|(l, _)| *l == n) {
            let (_, credit) = self.credit_on_attach.swap_remove(i);
            // A link refused at once is detached by now: nothing to grant.
            let _ = self.conn.flow(id, credit, false);
        }
    }

    /// `"link": n`, or `null` for a link this binding did not attach.
    fn link_member(&self, w: &mut Writer<'_>, id: LinkId) {
        w.key("link");
        match self.number_of_link(id) {
            Some(n) => w.u64(n as u64),
            None => w.null(),
        }
    }

    /// One event as a JSON object (see [`Engine::poll_events`]).
    fn write_event(&self, w: &mut Writer<'_>, ev: &Event) {
        w.begin_object();
        let kind = |w: &mut Writer<'_>, kind: &str| member_str(w, "type", kind);
        match ev {
            Event::SaslDone { mechanism, .. } => {
                kind(w, "saslDone");
                member_str(w, "mechanism", mechanism);
            }
            Event::Opened { remote } => {
                kind(w, "opened");
                member_str(w, "containerId", &remote.container_id);
                member_u64(w, "maxFrameSize", remote.max_frame_size.into());
                member_u64(w, "channelMax", remote.channel_max.into());
                w.key("idleTimeOut");
                match remote.idle_time_out {
                    Some(t) => w.u64(t.into()),
                    None => w.null(),
                }
            }
            Event::SessionBegun { session, .. } => {
                kind(w, "sessionBegun");
                self.session_member(w, *session);
            }
            Event::SessionEnded { session, error, by_peer } => {
                kind(w, "sessionEnded");
                self.session_member(w, *session);
                member_error(w, error.as_ref());
                member_bool(w, "byPeer", *by_peer);
            }
            Event::LinkAttached { link, remote, .. } => {
                kind(w, "linkAttached");
                self.link_member(w, *link);
                // 2.6.3: an answer without the terminus we asked for (the target of our
                // sender, the source of our receiver) is a refusal; its detach follows.
                let we_send = remote.role == crate::types::Role::RECEIVER;
                let refused =
                    if we_send { remote.target.is_none() } else { remote.source.is_none() };
                member_bool(w, "refused", refused);
            }
            Event::LinkDetached { link, closed, error, by_peer } => {
                kind(w, "linkDetached");
                self.link_member(w, *link);
                member_bool(w, "closed", *closed);
                member_error(w, error.as_ref());
                member_bool(w, "byPeer", *by_peer);
            }
            Event::SessionWindow { session, remote_incoming_window } => {
                kind(w, "sessionWindow");
                self.session_member(w, *session);
                member_u64(w, "remoteIncomingWindow", (*remote_incoming_window).into());
            }
            Event::Credit { link, credit, drain } => {
                kind(w, "credit");
                self.link_member(w, *link);
                member_u64(w, "credit", (*credit).into());
                member_bool(w, "drain", *drain);
            }
            Event::Delivery { link, delivery_id, payload, settled, .. } => {
                kind(w, "delivery");
                self.link_member(w, *link);
                member_u64(w, "deliveryId", delivery_id.0.into());
                member_bool(w, "settled", *settled);
                w.key("message");
                // A payload whose sections stop short: `message` shows those before, and
                // `messageError` why the rest could not be read.
                if let Some(why) = write_payload(w, payload, None) {
                    member_str(w, "messageError", &why);
                }
                w.key("payload");
                w.hex(payload);
            }
            Event::Disposition { link, delivery_id, settled, state } => {
                kind(w, "disposition");
                self.link_member(w, *link);
                member_u64(w, "deliveryId", delivery_id.0.into());
                member_bool(w, "settled", *settled);
                w.key("state");
                match state {
                    Some(s) => write_state(w, s),
                    None => w.null(),
                }
            }
            Event::Aborted { link, delivery_id } => {
                kind(w, "aborted");
                self.link_member(w, *link);
                member_u64(w, "deliveryId", delivery_id.0.into());
            }
            Event::LinkError { link, violation } => {
                kind(w, "linkError");
                self.link_member(w, *link);
                w.key("error");
                w.display(violation);
            }
            Event::SessionError { session, violation } => {
                kind(w, "sessionError");
                self.session_member(w, *session);
                w.key("error");
                w.display(violation);
            }
            Event::ConnectionError { violation } => {
                kind(w, "connectionError");
                w.key("error");
                w.display(violation);
            }
            Event::RemoteClose { error } => {
                kind(w, "remoteClose");
                member_error(w, error.as_ref());
            }
            Event::Ended { error } => {
                kind(w, "ended");
                w.key("error");
                match error {
                    Some(e) => w.display(e),
                    None => w.null(),
                }
            }
            // BeginRequested, AttachRequested and Resumed come only with options this
            // binding does not set (accept_sessions or accept_links off, link recovery).
            // Not rendered with Debug, which would pull every type's Debug into the module.
            _ => kind(w, "other"),
        }
        w.end_object();
    }
}

fn member_u64(w: &mut Writer<'_>, key: &str, v: u64) {
    w.key(key);
    w.u64(v);
}

/// `"error": {"condition", "description"}`, or `null`.
fn member_error(w: &mut Writer<'_>, e: Option<&crate::types::Error>) {
    w.key("error");
    let Some(e) = e else { return w.null() };
    w.begin_object();
    member_str(w, "condition", e.condition.as_str());
    member_opt_str(w, "description", e.description.as_deref());
    w.end_object();
}

/// A delivery state as JSON: its name, and a rejection's error.
fn write_state(w: &mut Writer<'_>, s: &DeliveryState) {
    w.begin_object();
    let outcome = match s {
        DeliveryState::Accepted(_) => "accepted",
        DeliveryState::Rejected(r) => {
            member_str(w, "outcome", "rejected");
            let error = r.error.as_ref();
            member_opt_str(w, "condition", error.map(|e| e.condition.as_str()));
            member_opt_str(w, "description", error.and_then(|e| e.description.as_deref()));
            return w.end_object();
        }
        DeliveryState::Released(_) => "released",
        DeliveryState::Modified(_) => "modified",
        DeliveryState::Received(_) => "received",
        DeliveryState::Declared(_) => "declared",
        DeliveryState::TransactionalState(_) => "transactional-state",
        _ => "other",
    };
    member_str(w, "outcome", outcome);
    w.end_object();
}

/// `n`, a number from JavaScript, as a uint: a whole number from 0 to 4294967295 (what
/// wasm-bindgen would make of anything else, NaN as 0 and -1 as 4294967295, is refused).
fn uint(what: &str, n: f64) -> Result<u32, JsError> {
    if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
        Ok(n as u32)
    } else {
        let shown = crate::inspect::f64_text(n);
        Err(err(format!("{what} must be a whole number from 0 to 4294967295, not {shown}")))
    }
}

fn opt_str<'a>(o: &'a Json, key: &str) -> Result<Option<&'a str>, JsError> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(v) => Err(err(format!("connection options: {key} is {v}, not a string"))),
    }
}

fn opt_u64(o: &Json, key: &str) -> Result<Option<u64>, JsError> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| err(format!("connection options: {key} is {v}, not a whole number"))),
    }
}

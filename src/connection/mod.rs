//! The sans-IO connection engine: bytes in, bytes and events out, time passed in.
//!
//! This first layer covers what belongs to the connection itself: protocol headers, the
//! SASL exchange (both roles), open and close in every order the spec allows (pipelined
//! open included), max-frame-size and channel-max, heartbeats for the peer's idle time-out,
//! our own idle time-out, the close time-out, and a trace of every frame in and out.
//! Sessions and links are handled too: begin and end, attach and detach, credit, transfers
//! split and joined at the negotiated max-frame-size, dispositions and settlement.
//!
//! # Using a `Connection`
//!
//! The methods fall in four groups (the quinn-proto contract):
//!
//! - getters: [`Connection::state`], [`Connection::remote_open`], [`Connection::is_ended`],
//!   [`Connection::error`], [`Connection::remote_begin`], [`Connection::session_state`],
//!   [`Connection::link_state`],
//!   [`Connection::link_credit`], [`Connection::unsettled`], [`Connection::resumable`],
//!   [`Connection::retained_unsettled`];
//! - input: [`Connection::handle_input`] (any chunking), [`Connection::handle_eof`],
//!   [`Connection::handle_timeout`];
//! - commands, which return `Result<_, UsageError>` at once; what the peer does arrives
//!   later as an [`Event`]:
//!   - connection and sessions: [`Connection::close`], [`Connection::begin`],
//!     [`Connection::end_session`], [`Connection::accept_begin`], [`Connection::refuse_begin`];
//!   - links: [`Connection::attach`], [`Connection::accept_attach`],
//!     [`Connection::refuse_attach`], [`Connection::detach`];
//!   - flow: [`Connection::flow`] (credit, drain), [`Connection::drained`],
//!     [`Connection::set_available`], [`Connection::request_flow`] (echo);
//!   - deliveries: [`Connection::send`], [`Connection::send_payload`],
//!     [`Connection::disposition`] (settle or update, any delivery state, over ranges);
//!   - link recovery: [`Connection::resume`], [`Connection::forget`];
//! - output, to call after every input or command, in this order:
//!   [`Connection::poll_transmit`] (write what it appends), [`Connection::poll_event`] until
//!   it returns `None`, then [`Connection::poll_timeout`] to know when to call
//!   [`Connection::handle_timeout`].
//!
//! The engine knows the time only from the input calls. Give it the time once as soon as
//! the transport is up (`handle_timeout(now)`): the peer's open is timed
//! ([`Config::open_timeout`]) from the first time given, and commands such as
//! [`Connection::close`] arm their timers from the last. Sessions can be begun once our
//! open is sent: with SASL configured, a client's after [`Event::SaslDone`], a server's
//! after the client's AMQP header ([`Connection::begin`] says [`UsageError::NotOpen`]
//! before).
//!
//! ```text
//!  states (2.4.6):   START ─hdr─► HDR_SENT ─open─► OPEN_PIPE ─hdr─► OPEN_SENT ─open─► OPENED
//!                      │                             │ close                             │
//!                      └─hdr─► HDR_RCVD ─► HDR_EXCH   ▼                          close │ ▲ close
//!                                            │      OC_PIPE ─hdr─► CLOSE_PIPE     sent ▼ │ rcvd
//!                                            └─open─► OPEN_RCVD            CLOSE_SENT / CLOSE_RCVD
//!                                                                                 └──► END ◄──┘
//!  an error while OPENED sends close with the error and DISCARDS until the peer's close
//!  (ENDs at once when the bytes can no longer be split into frames).
//! ```
//!
//! # Example
//!
//! A client and a server joined in memory: the client sends one message, the server
//! accepts it.
//!
//! ```
//! use std::time::Instant;
//! use amqpwire::connection::{Config, Connection, Event, LinkOptions};
//! use amqpwire::types::{Accepted, DeliveryState};
//!
//! let mut client = Connection::client(Config::new("client"));
//! let mut server = Connection::server(Config::new("server"));
//! let now = Instant::now();
//! // Moves bytes both ways until both sides are quiet; returns the events of each side.
//! let mut pump = |client: &mut Connection, server: &mut Connection| {
//!     let (mut ce, mut se) = (Vec::new(), Vec::new());
//!     loop {
//!         let (mut a, mut b) = (Vec::new(), Vec::new());
//!         client.poll_transmit(&mut a);
//!         server.poll_transmit(&mut b);
//!         if a.is_empty() && b.is_empty() {
//!             return (ce, se);
//!         }
//!         server.handle_input(&a, now);
//!         client.handle_input(&b, now);
//!         ce.extend(std::iter::from_fn(|| client.poll_event()));
//!         se.extend(std::iter::from_fn(|| server.poll_event()));
//!     }
//! };
//!
//! let session = client.begin()?;
//! let sender = client.attach(session, LinkOptions::sender("telemetry", "events"))?;
//! let (_, server_events) = pump(&mut client, &mut server);
//! let receiver = server_events
//!     .iter()
//!     .find_map(|e| match e {
//!         Event::LinkAttached { link, by_peer: true, .. } => Some(*link),
//!         _ => None,
//!     })
//!     .expect("the server answered the attach");
//!
//! server.flow(receiver, 10, false)?; // credit for ten messages
//! pump(&mut client, &mut server);
//! let id = client.send(sender, bytes::Bytes::from_static(b"tag-0"), b"\x00\x53\x77\xa1\x02hi", false)?;
//! let (_, server_events) = pump(&mut client, &mut server);
//! // The server settles the delivery by the id its own event gives it.
//! let received = server_events
//!     .iter()
//!     .find_map(|e| match e {
//!         Event::Delivery { delivery_id, payload, .. } if payload.ends_with(b"hi") => Some(*delivery_id),
//!         _ => None,
//!     })
//!     .expect("the message arrived");
//!
//! let accepted = Some(DeliveryState::Accepted(Accepted {}));
//! server.disposition(receiver, received, None, true, accepted.clone())?;
//! let (client_events, _) = pump(&mut client, &mut server);
//! assert!(client_events.contains(&Event::Disposition { link: sender, delivery_id: id, settled: true, state: accepted }));
//! # Ok::<(), amqpwire::connection::UsageError>(())
//! ```

mod deliveries;
mod error;
mod link;
mod links;
mod session;
pub mod txn;
mod vec_map;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::time::Instant;

pub use error::{ConnectionError, Scope, UsageError, Violation};
pub use link::{LinkId, LinkOptions, LinkState, PeerUnsettled, Resumable, UnsettledDelivery};
pub use session::{SessionConfig, SessionId, SessionState, SessionWindows};
pub use txn::{CoordinatorConfig, TxnEndCause};

use session::Session;

use crate::codec::{DecodeOptions, Symbol};
use crate::frame::{
    Frame, FrameBody, FrameDecoder, FrameEncoder, ProtocolHeader, ProtocolId, RawFrame, StreamItem,
    MIN_MAX_FRAME_SIZE,
};
use crate::message::Payload;
use crate::sasl::{AuthStep, Authenticator, SaslClient, SaslError};
use crate::types::{
    Begin, Close, Fields, Layout, Open, Performative, SaslChallenge, SaslFrameBody, SaslInit,
    SaslMechanisms, SaslOutcome,
};

/// Connection states as the spec names them (2.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Nothing sent or received.
    Start,
    /// Our protocol header sent.
    HdrSent,
    /// The peer's protocol header received.
    HdrRcvd,
    /// Both headers exchanged.
    HdrExch,
    /// Our header and open sent, the peer's header not yet received.
    OpenPipe,
    /// Our header, open and close sent, the peer's header not yet received.
    OcPipe,
    /// The peer's open received, ours not yet sent.
    OpenRcvd,
    /// Our open sent, the peer's not yet received.
    OpenSent,
    /// Our open and close sent, the peer's open not yet received.
    ClosePipe,
    /// Both opens exchanged.
    Opened,
    /// The peer's close received.
    CloseRcvd,
    /// Our close sent.
    CloseSent,
    /// Our close sent after an error; incoming frames are discarded until the peer's close.
    Discarding,
    /// Done.
    End,
}

/// A frame or header seen going in or out, for tracing.
#[derive(Debug)]
pub struct TraceRecord<'a> {
    /// In or out.
    pub direction: Direction,
    /// Offset of the first byte in that direction's stream.
    pub offset: u64,
    /// The bytes on the wire.
    pub raw: &'a [u8],
    /// What they are.
    pub item: TraceItem<'a>,
}

/// What a trace record holds.
#[derive(Debug)]
pub enum TraceItem<'a> {
    /// A protocol header.
    Header(ProtocolHeader),
    /// A decoded frame.
    Frame(&'a Frame),
    /// A frame whose body could not be decoded.
    Undecodable(&'a crate::codec::DecodeError),
    /// Received bytes that cannot be split into frames: those the decoder held when the
    /// framing error came, from the place of the error on. The connection ends there, and
    /// reads nothing later.
    Unframed(&'a crate::frame::FrameError),
}

/// Direction of a traced item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

/// A trace callback: sees every header and frame before it changes any state.
pub type TraceFn = Box<dyn FnMut(&TraceRecord<'_>) + Send>;

/// How a connection behaves.
pub struct Config {
    /// Our container-id.
    pub container_id: String,
    /// The hostname to put in open (clients: the name the peer knows itself by).
    pub hostname: Option<String>,
    /// The largest frame we accept.
    pub max_frame_size: u32,
    /// The highest channel we accept.
    pub channel_max: u16,
    /// The idle-time-out sent to the peer in open (which then sends heartbeats); once the
    /// peer's open has come, the connection is closed when the peer is silent for twice
    /// this long (2.4.5). It is announced in whole milliseconds, rounded up; zero is no
    /// idle time-out (2.4.5: a value of 0 means none). Before the peer's open,
    /// [`Config::open_timeout`] applies.
    pub idle_time_out: Option<Duration>,
    /// The shortest idle-time-out of the peer's kept (100 ms by default): heartbeats go
    /// out at half of it, so one of a few milliseconds would have the connection send an
    /// empty frame whenever it is quiet for a moment. 2.4.5 lets a peer close with an
    /// error when it cannot keep the idle-time-out asked for: a peer's open asking for
    /// less is [`Violation::IdleTimeOutTooShort`] (`amqp:not-allowed`).
    pub shortest_peer_idle_time_out: Duration,
    /// How long to wait for the peer's close after sending ours.
    pub close_timeout: Duration,
    /// How long the peer may take to open: from the first time the engine is given
    /// (by [`Connection::handle_input`], [`Connection::handle_timeout`] or
    /// [`Connection::handle_eof`]) until the peer's open has come, protocol headers and
    /// SASL included. A peer that is silent longer ends the connection with
    /// [`ConnectionError::OpenTimeout`]. `None`: wait for ever (the caller times the
    /// handshake itself).
    pub open_timeout: Option<Duration>,
    /// Connection properties for open.
    pub properties: Option<Fields>,
    /// The locales we write text in, for open's `outgoing-locales` (empty: none sent).
    pub outgoing_locales: Vec<Symbol>,
    /// The locales we want text in, most preferred first, for open's `incoming-locales`.
    pub incoming_locales: Vec<Symbol>,
    /// Compact, or every field written (for peers that index fields by position).
    pub layout: Layout,
    /// The largest SASL frame we accept (tokens can exceed 512 bytes).
    pub sasl_frame_limit: u32,
    /// Client role: authenticate with this mechanism (`None`: no SASL layer).
    pub sasl_client: Option<SaslClient>,
    /// Server role: offer SASL and judge it with this (`None`: no SASL layer).
    pub authenticator: Option<Box<dyn Authenticator + Send>>,
    /// Server role: refuse clients that skip SASL.
    pub require_sasl: bool,
    /// Server role: the transport's authenticated identity, for SASL EXTERNAL.
    pub external_identity: Option<String>,
    /// How sessions are set up (ours and the ones the peer begins).
    pub session: SessionConfig,
    /// Answer links the peer attaches at once, mirroring their role and echoing their
    /// termini (the default); when off, each arrives as [`Event::AttachRequested`] and waits
    /// for [`Connection::accept_attach`] or [`Connection::refuse_attach`]. Answering at
    /// once, the engine refuses (`amqp:not-implemented`) a link that asks for a dynamic
    /// node on our side (a dynamic source we would send from, or target we would receive
    /// at), since its answer must name the node made (3.5.3); only the peer's detach then
    /// reaches the application.
    pub accept_links: bool,
    /// The largest message reassembled on a receiving link that sets no
    /// `max-message-size` of its own: a guard against a peer that sends continuation frames
    /// without end. Not announced to the peer; a larger message detaches the link with
    /// `amqp:link:message-size-exceeded`.
    pub max_message_size: u64,
    /// The most bytes that deliveries still being received in several frames may hold on
    /// the connection, all links together (each link's own guard is
    /// [`Config::max_message_size`]): a transfer that takes them past it detaches its link
    /// with `amqp:resource-limit-exceeded` and drops its partial delivery, so a peer that
    /// starts many large messages at once cannot hold memory without bound (payload
    /// bytes, counted as they come; the buffers they are gathered in grow by doubling).
    /// Not announced to the peer.
    pub max_incoming_held: u64,
    /// How many link names' unsettled deliveries are kept after their links went without
    /// closing (for `retained_unsettled` and re-attaching); beyond it, what a link of a new
    /// name leaves is forgotten.
    pub retained_links: usize,
    /// Answer sessions the peer begins at once (the default); when off, each arrives as
    /// [`Event::BeginRequested`] and waits for [`Connection::accept_begin`] or
    /// [`Connection::refuse_begin`]. Frames the peer sends on it meanwhile (up to
    /// [`PENDING_FRAMES`]) are held and handled once it is accepted.
    pub accept_sessions: bool,
    /// A callback that sees every header and frame in and out (no cost when `None`).
    pub trace: Option<TraceFn>,
    /// A transaction coordinator (part 4) for links the peer attaches with a
    /// `coordinator` target: the engine answers them and their declares and discharges;
    /// see [`txn`]. `None` (the default): such links reach the application like any other.
    pub coordinator: Option<CoordinatorConfig>,
}

/// How many frames the peer may send on the sessions it began before the application has
/// accepted them, all such sessions together; one more ends the session it came on with
/// `amqp:resource-limit-exceeded`. A transfer on such a session ends it with
/// `amqp:session:unattached-handle`, since none of its links can be attached yet.
pub const PENDING_FRAMES: usize = 64;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("container_id", &self.container_id)
            .field("hostname", &self.hostname)
            .field("max_frame_size", &self.max_frame_size)
            .field("channel_max", &self.channel_max)
            .field("idle_time_out", &self.idle_time_out)
            .field("sasl_client", &self.sasl_client.as_ref().map(SaslClient::mechanism))
            .field("authenticator", &self.authenticator.is_some())
            .field("require_sasl", &self.require_sasl)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults: 1 MiB frames, channel-max 255 (256 channels), no idle time-out, 60 s for the peer to open,
    /// a 10 s close time-out, no SASL.
    pub fn new(container_id: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            hostname: None,
            max_frame_size: 1024 * 1024,
            channel_max: 255,
            idle_time_out: None,
            shortest_peer_idle_time_out: Duration::from_millis(100),
            close_timeout: Duration::from_secs(10),
            open_timeout: Some(Duration::from_secs(60)),
            properties: None,
            outgoing_locales: Vec::new(),
            incoming_locales: Vec::new(),
            layout: Layout::Compact,
            sasl_frame_limit: 64 * 1024,
            sasl_client: None,
            authenticator: None,
            require_sasl: false,
            external_identity: None,
            session: SessionConfig::default(),
            accept_links: true,
            accept_sessions: true,
            max_message_size: 256 * 1024 * 1024,
            max_incoming_held: 512 * 1024 * 1024,
            retained_links: 1024,
            trace: None,
            coordinator: None,
        }
    }
}

/// Something that happened, for the application.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// SASL succeeded; on the server, with the authenticated identity.
    SaslDone {
        /// The mechanism used.
        mechanism: String,
        /// The authenticated identity (server side).
        identity: Option<String>,
    },
    /// The peer's open arrived.
    Opened {
        /// The peer's open.
        remote: Box<Open>,
    },
    /// A session began: ours answered, or one the peer began (and we answered).
    SessionBegun {
        /// The session.
        session: SessionId,
        /// Whether the peer began it.
        by_peer: bool,
        /// The peer's begin (its windows, handle-max, capabilities and properties).
        remote: Box<Begin>,
    },
    /// The peer began a session and waits for us to accept or refuse it (only with
    /// [`Config::accept_sessions`] off).
    BeginRequested {
        /// The session, as we would name it.
        session: SessionId,
        /// The peer's begin.
        remote: Box<crate::types::Begin>,
    },
    /// A session ended.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// The error it ended with (ours or the peer's).
        error: Option<crate::types::Error>,
        /// Whether the peer ended it.
        by_peer: bool,
    },
    /// A link attached: ours answered, or one the peer attached (and we answered,
    /// mirroring its role and echoing its source and target).
    LinkAttached {
        /// The link.
        link: LinkId,
        /// Whether the peer attached it.
        by_peer: bool,
        /// The peer's attach.
        remote: Box<crate::types::Attach>,
    },
    /// The peer attached a link and waits for us to accept or refuse it (only with
    /// [`Config::accept_links`] off).
    AttachRequested {
        /// The link, as we would name it.
        link: LinkId,
        /// The peer's attach.
        remote: Box<crate::types::Attach>,
    },
    /// A link detached.
    LinkDetached {
        /// The link.
        link: LinkId,
        /// Whether it was closed, not only detached.
        closed: bool,
        /// The peer's error, if any.
        error: Option<crate::types::Error>,
        /// Whether the peer detached it.
        by_peer: bool,
    },
    /// The peer's session incoming-window grew (a flow of the session or of one of its
    /// links), or the transfer frames the session held for it have all gone: transfers
    /// refused with [`UsageError::SessionWindowFull`] may go now.
    SessionWindow {
        /// The session.
        session: SessionId,
        /// Transfer frames the peer takes now before its next flow.
        remote_incoming_window: u32,
    },
    /// A link's credit changed (a sender got credit, or a receiver saw the sender drain).
    Credit {
        /// The link.
        link: LinkId,
        /// The credit now.
        credit: u32,
        /// Whether the receiver asks the sender to use it all or say it has nothing.
        drain: bool,
    },
    /// A whole delivery arrived on a receiving link.
    Delivery {
        /// The link.
        link: LinkId,
        /// Its delivery-id.
        delivery_id: crate::types::SequenceNo,
        /// Its delivery-tag.
        tag: Bytes,
        /// The message bytes (joined across frames when it was split).
        payload: Bytes,
        /// Whether the sender settled it.
        settled: bool,
        /// The transfer's delivery state: `transactional-state` for work of a transaction
        /// (4.4.1), otherwise usually none.
        state: Option<crate::types::DeliveryState>,
    },
    /// A delivery carried over from an earlier attachment of the link arrived again, with
    /// `resume` set (2.6.13): the whole message, or only its settlement (an empty
    /// payload). Unless settled, it is now unsettled under its new delivery-id.
    Resumed {
        /// The link.
        link: LinkId,
        /// Its delivery-id on this attachment.
        delivery_id: crate::types::SequenceNo,
        /// Its delivery-tag.
        tag: Bytes,
        /// The message bytes (empty when the sender only settles it).
        payload: Bytes,
        /// Whether the sender settled it.
        settled: bool,
        /// The state the sender gave it, if any.
        state: Option<crate::types::DeliveryState>,
    },
    /// A delivery was aborted by its sender; its frames are discarded.
    Aborted {
        /// The link.
        link: LinkId,
        /// Its delivery-id.
        delivery_id: crate::types::SequenceNo,
    },
    /// The peer's disposition for one of our deliveries.
    Disposition {
        /// The link.
        link: LinkId,
        /// The delivery.
        delivery_id: crate::types::SequenceNo,
        /// Whether the peer settled it.
        settled: bool,
        /// Its state (an outcome, usually).
        state: Option<crate::types::DeliveryState>,
    },
    /// The peer broke the protocol on a link: we detached it with the error.
    LinkError {
        /// The link.
        link: LinkId,
        /// What happened.
        violation: Violation,
    },
    /// The peer broke the protocol on a session: we ended it with the error (or, our end
    /// being already written, nothing more is sent and this tells what happened).
    SessionError {
        /// The session.
        session: SessionId,
        /// What happened.
        violation: Violation,
    },
    /// Our coordinator declared a transaction (part 4; with [`Config::coordinator`]).
    TxnDeclared {
        /// The control link the declare came on.
        link: LinkId,
        /// The new transaction's id.
        txn_id: Bytes,
    },
    /// A transaction on our coordinator ended: apply its work (`commit`) or undo it. When
    /// the cause [awaits an answer](TxnEndCause::awaits_answer), the controller hears the
    /// outcome once the application calls [`Connection::complete_discharge`].
    TxnEnded {
        /// The transaction.
        txn_id: Bytes,
        /// Commit its work; `false`: roll it back.
        commit: bool,
        /// Why it ended.
        cause: TxnEndCause,
        /// How many pieces of work the engine handed the application for it before it
        /// ended ([`Event::Delivery`] and [`Event::Disposition`] events naming it): an
        /// application that processes them on other tasks waits until it has taken that
        /// many before it commits or rolls back.
        work: u32,
    },
    /// A transactional delivery named a transaction that cannot take work (unknown, timed
    /// out, rolled back): the engine refused it (rejected, with the transaction error) and
    /// it is not delivered. A receiver that keeps a credit window tops it up here.
    TxnWorkRefused {
        /// The link.
        link: LinkId,
        /// The delivery.
        delivery_id: crate::types::SequenceNo,
        /// The error it was rejected with.
        error: crate::types::Error,
    },
    /// The peer broke the protocol on the connection (or stayed silent past our idle
    /// time-out): we sent close with the error where we could. [`Event::Ended`] follows
    /// with the same violation (later ones are not told: the first is the reason): once
    /// the peer's close comes or the close time-out passes, or at once when no close could
    /// be sent or the stream can no longer be split into frames. [`Connection::error`]
    /// holds it meanwhile.
    ConnectionError {
        /// What happened.
        violation: Violation,
    },
    /// The peer sent close (we answer it).
    RemoteClose {
        /// The peer's error, if any.
        error: Option<crate::types::Error>,
    },
    /// The connection is over; `None` for a clean close.
    Ended {
        /// Why it ended badly.
        error: Option<ConnectionError>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Where the SASL layer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sasl {
    /// No SASL layer on this connection (or not decided yet, on a server).
    Off,
    /// Client: SASL header sent, waiting for the server's header and mechanisms.
    ClientMechanisms,
    /// Client: sasl-init sent.
    ClientOutcome,
    /// Server: header and mechanisms sent, waiting for sasl-init.
    ServerInit,
    /// Server: challenge sent, waiting for a response.
    ServerResponse,
    /// Done; the AMQP header comes next.
    Done,
}

/// Timers, indexing [`Connection::timers`].
#[derive(Clone, Copy, Debug)]
enum Timer {
    /// The peer has been silent for our idle time-out.
    Idle = 0,
    /// We must send something (a heartbeat) for the peer's idle time-out.
    Keepalive = 1,
    /// Our close has gone unanswered.
    Close = 2,
    /// The peer has not opened in time.
    Open = 3,
}

/// One AMQP connection, either role.
pub struct Connection {
    side: Side,
    cfg: Config,
    state: ConnectionState,
    sasl: Sasl,
    /// Server: the mechanism the client's sasl-init chose, for the exchange's later steps.
    sasl_mechanism: String,
    decoder: FrameDecoder,
    out: Payload,
    out_offset: u64,
    events: VecDeque<Event>,
    timers: [Option<Instant>; 4],
    now: Option<Instant>,
    remote_open: Option<Open>,
    peer_max_frame_size: u32,
    peer_idle: Option<Duration>,
    error: Option<ConnectionError>,
    /// Our sessions, by our channel.
    sessions: Vec<Option<Session>>,
    /// The peer's channel → ours.
    remote_channels: vec_map::VecMap<u16, u16>,
    /// What links left unsettled when they went without closing, by name and role.
    retained: vec_map::VecMap<(String, bool), Vec<UnsettledDelivery>>,
    /// What the partial deliveries of every link hold.
    incoming_held: link::Held,
    /// A protocol header has come from the peer.
    header_seen: bool,
    /// The transaction coordinator, when [`Config::coordinator`] asks for one.
    txn: Option<txn::TxnState>,
    /// Where [`Connection::fits`] encodes a frame to measure it.
    scratch: std::cell::Cell<Vec<u8>>,
    /// The serial of the last link made: each link has its own, so that the [`LinkId`] of
    /// an ended link never names a later one given the same handle.
    link_serial: u32,
    /// The serial of the last session made (see [`SessionId`]).
    session_serial: u32,
    /// Our close has been written: nothing more is (2.4.6).
    close_written: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.side)
            .field("state", &self.state)
            .field("sasl", &self.sasl)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A client connection: it sends its protocol header (SASL first when configured),
    /// and its open right after the AMQP header, without waiting for the server's
    /// (pipelined open).
    pub fn client(cfg: Config) -> Self {
        let mut c = Self::new(Side::Client, cfg);
        if c.cfg.sasl_client.is_some() {
            c.send_header(ProtocolHeader::SASL);
            c.sasl = Sasl::ClientMechanisms;
            c.decoder.set_max_frame_size(c.cfg.sasl_frame_limit);
        } else {
            c.start_amqp();
        }
        c
    }

    /// A server connection: it waits for the client's protocol header.
    pub fn server(cfg: Config) -> Self {
        Self::new(Side::Server, cfg)
    }

    fn new(side: Side, cfg: Config) -> Self {
        let max = cfg.max_frame_size.max(MIN_MAX_FRAME_SIZE);
        Self {
            side,
            state: ConnectionState::Start,
            sasl: Sasl::Off,
            sasl_mechanism: String::new(),
            decoder: FrameDecoder::new(max),
            out: Payload::default(),
            out_offset: 0,
            events: VecDeque::new(),
            timers: [None; 4],
            now: None,
            remote_open: None,
            // Before the peer's open, frames must fit the minimum (2.7.1).
            peer_max_frame_size: MIN_MAX_FRAME_SIZE,
            peer_idle: None,
            error: None,
            sessions: Vec::new(),
            remote_channels: vec_map::VecMap::new(),
            retained: vec_map::VecMap::new(),
            incoming_held: link::Held::default(),
            header_seen: false,
            txn: cfg.coordinator.clone().map(txn::TxnState::new),
            scratch: std::cell::Cell::default(),
            link_serial: 0,
            session_serial: 0,
            close_written: false,
            cfg,
        }
    }

    // ----- getters -----

    /// Our container-id.
    pub fn container_id(&self) -> &str {
        &self.cfg.container_id
    }

    /// Server role: the transport's authenticated identity ([`Config::external_identity`]:
    /// a TLS client certificate's subject common name).
    pub fn external_identity(&self) -> Option<&str> {
        self.cfg.external_identity.as_deref()
    }

    /// Whether this is the client (the side that sent the first protocol header).
    pub fn is_client(&self) -> bool {
        self.side == Side::Client
    }

    /// Whether a trace callback sees the frames.
    pub fn has_trace(&self) -> bool {
        self.cfg.trace.is_some()
    }

    /// Sets the trace callback after the connection was made (replacing any).
    pub fn set_trace(&mut self, trace: TraceFn) {
        self.cfg.trace = Some(trace);
    }

    /// The state, as the spec names it.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// How long the peer has to answer our close ([`Config::close_timeout`]); the runtime
    /// gives the peer as long to answer a detach or an end.
    pub fn close_timeout(&self) -> Duration {
        self.cfg.close_timeout
    }

    /// The peer's open, once received.
    pub fn remote_open(&self) -> Option<&Open> {
        self.remote_open.as_ref()
    }

    /// What is wrong with the connection: the violation it is closing with (from the
    /// [`Event::ConnectionError`] on), and once it has ended, what [`Event::Ended`] said.
    /// `None` while all is well, and after a clean close.
    pub fn error(&self) -> Option<&ConnectionError> {
        self.error.as_ref()
    }

    /// Whether the connection is over (nothing more will be sent or accepted).
    pub fn is_ended(&self) -> bool {
        self.state == ConnectionState::End
    }

    /// The max-frame-size our frames must fit (the peer's, once its open arrived).
    pub fn peer_max_frame_size(&self) -> u32 {
        self.peer_max_frame_size
    }

    // ----- input -----

    /// Bytes received from the transport, split anywhere.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.before_input(now) {
            self.decoder.push(data);
            self.process_input();
        }
    }

    /// Bytes received from the transport, handed over: frames that lie wholly inside them
    /// reach the application (as delivery payloads) without being copied.
    pub fn handle_input_bytes(&mut self, data: Bytes, now: Instant) {
        if self.before_input(now) {
            self.decoder.push_bytes(data);
            self.process_input();
        }
    }

    /// Bytes received from the transport into `buf`, a buffer the caller reads into and
    /// keeps: frames that lie wholly inside it are taken off its front without being
    /// copied, and what remains (the start of a frame) is left in it for the next read to
    /// complete, so a frame that straddles two reads is not copied either unless `buf`
    /// has to move to new memory. Bytes given to [`Connection::handle_input`] before and
    /// not yet decoded come first.
    pub fn handle_input_buf(&mut self, buf: &mut BytesMut, now: Instant) {
        if self.before_input(now) {
            self.decoder.swap_buffer(buf);
            self.process_input();
            self.decoder.swap_buffer(buf);
        }
    }

    /// Room worth making in the buffer given to [`Connection::handle_input_buf`] before
    /// the next read, beyond a read's usual size: what the frame being received still
    /// needs, bounded by what has arrived of it (a frame header alone never makes the
    /// caller allocate much).
    pub fn input_wanted(&self) -> usize {
        self.decoder.wanted()
    }

    /// The size of the last frame received, header included (0 before the first): a
    /// caller reading into buffers of its own can size them to hold whole frames when the
    /// peer's frames are alike (large messages, one frame each).
    pub fn input_frame_size(&self) -> usize {
        self.decoder.last_frame_size()
    }

    /// Notes the time and the peer's liveness; `false` when the connection is over.
    fn before_input(&mut self, now: Instant) -> bool {
        self.note_time(now);
        if self.state == ConnectionState::End {
            return false;
        }
        if let Some(idle) = self.idle().filter(|_| self.is_open_or_closing()) {
            self.timers[Timer::Idle as usize] = later(now, silence_allowed(idle));
        }
        true
    }

    /// The time is `now`. The first time the engine is given starts the timers that wait
    /// for it: the peer's open, and a close sent before any time was known.
    fn note_time(&mut self, now: Instant) {
        let first = self.now.is_none();
        self.now = Some(now);
        if !first || self.state == ConnectionState::End {
            return;
        }
        if self.remote_open.is_none() {
            if let Some(limit) = self.cfg.open_timeout {
                self.timers[Timer::Open as usize] = later(now, limit);
            }
        }
        if self.closing() && self.timers[Timer::Close as usize].is_none() {
            self.timers[Timer::Close as usize] = later(now, self.cfg.close_timeout);
        }
    }

    /// Our close is sent and the peer's awaited.
    fn closing(&self) -> bool {
        use ConnectionState as S;
        matches!(self.state, S::CloseSent | S::Discarding | S::OcPipe | S::ClosePipe)
    }

    /// Our idle time-out as announced: whole milliseconds, rounded up; none for zero.
    fn idle(&self) -> Option<Duration> {
        idle_millis(self.cfg.idle_time_out).map(|ms| Duration::from_millis(u64::from(ms)))
    }

    fn process_input(&mut self) {
        while self.state != ConnectionState::End {
            match self.decoder.next_item() {
                Ok(None) => break,
                Ok(Some(StreamItem::Header { offset, header })) => {
                    self.trace_in_header(offset, header);
                    self.on_header(header);
                }
                Ok(Some(StreamItem::Frame(raw))) => self.on_raw_frame(raw),
                Err(e) => {
                    // What the decoder holds from the error on, for the trace: the
                    // connection ends here (`violation`), and reads nothing after.
                    if let Some(trace) = self.cfg.trace.as_mut() {
                        let held = self.decoder.peek_buffered(self.decoder.buffered());
                        trace(&TraceRecord {
                            direction: Direction::In,
                            offset: self.decoder.offset(),
                            raw: &held,
                            item: TraceItem::Unframed(&e),
                        });
                    }
                    let first = self.side == Side::Server && self.state == ConnectionState::Start;
                    if first && matches!(e.kind, crate::frame::FrameErrorKind::Header(_)) {
                        // 2.2: a version not supported: "the server MUST send a protocol
                        // header with a supported protocol version and then close".
                        let ours = match self.cfg.authenticator {
                            Some(_) => ProtocolHeader::SASL,
                            None => ProtocolHeader::AMQP,
                        };
                        self.send_header(ours);
                    }
                    self.violation(Violation::Framing(e));
                    break;
                }
            }
        }
    }

    /// The transport closed: whatever was not finished failed.
    pub fn handle_eof(&mut self, now: Instant) {
        self.note_time(now);
        if self.state != ConnectionState::End {
            let partial = (!self.header_seen && self.decoder.buffered() > 0).then(|| {
                let head = self.decoder.peek_buffered(8);
                ConnectionError::ProtocolMismatch(crate::frame::describe_partial_header(&head))
            });
            let error = self.error.take().or(partial).unwrap_or(ConnectionError::TransportClosed);
            self.end(Some(error));
        }
    }

    /// Time has reached `now`: fire the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_time(now);
        // Armed only until the peer's open comes, or a violation closes the connection.
        if let Some(limit) = self.cfg.open_timeout.filter(|_| self.due(Timer::Open, now)) {
            self.end(Some(ConnectionError::OpenTimeout(limit)));
            return;
        }
        if self.due(Timer::Close, now) {
            self.timers[Timer::Close as usize] = None;
            let error = self.error.take().unwrap_or(ConnectionError::CloseTimeout);
            self.end(Some(error));
            return;
        }
        if self.due(Timer::Idle, now) {
            self.timers[Timer::Idle as usize] = None;
            // 2.4.5: the peer stayed silent past our idle time-out.
            self.violation(Violation::IdleTimeout);
        }
        if self.due(Timer::Keepalive, now) {
            self.timers[Timer::Keepalive as usize] = None;
            if self.is_open_or_closing() && self.state != ConnectionState::CloseSent {
                self.send_empty();
            }
        }
        if self.state != ConnectionState::End {
            self.txn_timeouts(now);
        }
    }

    // ----- commands -----

    /// Closes the connection, with an error or without. If the peer does not answer
    /// within [`Config::close_timeout`] the connection ends with
    /// [`ConnectionError::CloseTimeout`]; that time runs from the last time the engine was
    /// given (by [`Connection::handle_input`], [`Connection::handle_timeout`] or
    /// [`Connection::handle_eof`]), so a driver that has been quiet for a while gives it
    /// the time first with `handle_timeout(now)`.
    pub fn close(&mut self, error: Option<crate::types::Error>) -> Result<(), UsageError> {
        use ConnectionState as S;
        match self.state {
            S::End | S::CloseSent | S::Discarding | S::OcPipe | S::ClosePipe => {
                Err(UsageError::Closed)
            }
            S::Start | S::HdrRcvd | S::HdrSent if self.sasl != Sasl::Off => {
                // Still in SASL: there is no AMQP close to send; just stop.
                self.end(None);
                Ok(())
            }
            S::Start | S::HdrRcvd => {
                // No header of ours yet: a close alone would be a frame before any header
                // and open (2.4.1); just stop.
                self.end(None);
                Ok(())
            }
            _ => {
                if let Some(e) = &error {
                    // Cut to fit as far as it can be (`fitted_error`): only a condition
                    // too large on its own is refused.
                    let bare = crate::types::Error {
                        condition: e.condition.clone(),
                        description: None,
                        info: None,
                    };
                    self.fits(&Performative::Close(Close { error: Some(bare) }))?;
                }
                if self.state == S::OpenRcvd || self.state == S::HdrExch {
                    // 2.4.1: our open comes before our close.
                    self.send_open();
                }
                self.send_close(error);
                Ok(())
            }
        }
    }

    /// Begins a session. Allowed once our open is sent (pipelined before the peer's open).
    pub fn begin(&mut self) -> Result<SessionId, UsageError> {
        use ConnectionState as S;
        if !matches!(self.state, S::OpenPipe | S::OpenSent | S::Opened) {
            return Err(if self.remote_open.is_some() || self.state == S::End {
                UsageError::Closed
            } else {
                UsageError::NotOpen
            });
        }
        let channel = self.free_channel().ok_or(if self.remote_open.is_none() {
            // Only channel 0 is known to be allowed before the peer's open.
            UsageError::NotOpen
        } else {
            UsageError::ChannelsExhausted
        })?;
        let session = Session::new(&self.cfg.session, SessionState::BeginSent);
        let begin = session.begin();
        let id = self.put_session(channel, session);
        self.send_performative(channel, Performative::Begin(begin));
        Ok(id)
    }

    /// Ends a session, with an error or without.
    pub fn end_session(
        &mut self,
        id: SessionId,
        error: Option<crate::types::Error>,
    ) -> Result<(), UsageError> {
        self.check_writable()?;
        let end = Performative::End(Session::end(error));
        self.fits(&end)?;
        let Some(s) = self.session_mut(id) else { return Err(UsageError::UnknownSession) };
        match s.state {
            SessionState::EndSent | SessionState::Discarding => {
                return Err(UsageError::SessionEnding)
            }
            SessionState::EndRcvd => {}
            SessionState::BeginRcvd => {
                // Not answered yet: our begin must come before our end.
                s.pending.clear();
                self.answer_begin(id.0);
                if let Some(s) = self.session_mut(id) {
                    s.state = SessionState::EndSent;
                }
            }
            _ => s.state = SessionState::EndSent,
        }
        self.send_performative(id.0, end);
        Ok(())
    }

    /// The session now on our `channel`, if there is one (the id of that session only: a
    /// later session on the channel has another).
    pub fn session_on(&self, channel: u16) -> Option<SessionId> {
        let s = self.sessions.get(usize::from(channel)).and_then(Option::as_ref)?;
        Some(SessionId::new(channel, s.serial))
    }

    /// The peer's begin for a session, once it came (`None` before, and once the session
    /// is gone).
    pub fn remote_begin(&self, id: SessionId) -> Option<&Begin> {
        self.session_ref(id).and_then(|s| s.remote.as_deref())
    }

    /// A session's state (`None` once it is gone).
    pub fn session_state(&self, id: SessionId) -> Option<SessionState> {
        self.session_ref(id).map(|s| s.state)
    }

    /// A session's flow-control state: its transfer-ids and windows (`None` once it is
    /// gone).
    pub fn session_windows(&self, id: SessionId) -> Option<SessionWindows> {
        self.session_ref(id).map(Session::windows)
    }

    // ----- output -----

    /// Appends the bytes to write to the transport.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) {
        // Nothing referenced and an empty buffer: hand the output over without a copy.
        if buf.is_empty() && self.out.inserts.is_empty() {
            std::mem::swap(buf, &mut self.out.head);
            return;
        }
        for chunk in self.out.chunks() {
            buf.extend_from_slice(chunk);
        }
        self.out.clear();
    }

    /// Appends the bytes to write to `out`, large message bodies sent with
    /// [`Connection::send_payload`] referenced rather than copied, for a vectored write
    /// ([`Payload::chunks`]). Given an empty `out`, the engine's output is handed over
    /// whole and `out`'s capacity is kept for the next output.
    pub fn poll_transmit_payload(&mut self, out: &mut Payload) {
        if out.is_empty() {
            out.clear();
            std::mem::swap(out, &mut self.out);
            return;
        }
        let n = self.out.len();
        out.append_range(&self.out, 0, n);
        self.out.clear();
    }

    /// Appends the bytes to write as chunks, for a vectored write: large message bodies
    /// sent with [`Connection::send_payload`] are passed on as they were given, not copied.
    pub fn poll_transmit_chunks(&mut self, chunks: &mut Vec<Bytes>) {
        let out = std::mem::take(&mut self.out);
        let head = Bytes::from(out.head);
        let mut at = 0;
        for (pos, b) in out.inserts {
            if pos > at {
                chunks.push(head.slice(at..pos));
            }
            chunks.push(b);
            at = pos;
        }
        if head.len() > at {
            chunks.push(head.slice(at..));
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Connection::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let live = self.state != ConnectionState::End;
        let txn = if live { self.txn_deadline() } else { None };
        self.timers.iter().flatten().copied().chain(txn).min()
    }

    /// How many bytes wait for [`Connection::poll_transmit`]. A runtime whose transport
    /// cannot write stops feeding input while this is large: the engine's output only
    /// grows in answer to input and commands, so a peer that does not read cannot make
    /// it grow without bound.
    pub fn pending_transmit(&self) -> usize {
        self.out.len()
    }

    // ----- internals -----

    /// Whether `timer` is set and due at `now`.
    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.timers[timer as usize].is_some_and(|t| t <= now)
    }

    fn is_open_or_closing(&self) -> bool {
        use ConnectionState as S;
        matches!(self.state, S::Opened | S::CloseSent | S::CloseRcvd | S::Discarding)
    }

    fn start_amqp(&mut self) {
        self.send_header(ProtocolHeader::AMQP);
        self.decoder.set_max_frame_size(self.cfg.max_frame_size.max(MIN_MAX_FRAME_SIZE));
        self.send_open();
    }

    fn on_header(&mut self, h: ProtocolHeader) {
        use ConnectionState as S;
        self.header_seen = true;
        match (self.side, self.sasl, h.id) {
            // Client: the server's answer to our SASL header.
            (Side::Client, Sasl::ClientMechanisms, ProtocolId::SASL) => {}
            (Side::Client, Sasl::ClientMechanisms, _) => self.mismatch(format!(
                "we asked for SASL and the server answered with {h}: it does not use SASL here"
            )),
            // Server: a client asking for SASL.
            (Side::Server, Sasl::Off, ProtocolId::SASL) if self.state == S::Start => {
                if let Some(auth) = &self.cfg.authenticator {
                    let mechanisms = auth.mechanisms();
                    self.send_header(ProtocolHeader::SASL);
                    self.send_sasl(SaslMechanisms { sasl_server_mechanisms: mechanisms }.into());
                    self.sasl = Sasl::ServerInit;
                    self.decoder.set_max_frame_size(self.cfg.sasl_frame_limit);
                } else {
                    // 2.2: answer with the header we do support, then close.
                    self.send_header(ProtocolHeader::AMQP);
                    self.mismatch(
                        "the client asked for SASL, which this server does not offer".into(),
                    );
                }
            }
            // Server: plain AMQP, fresh or after SASL.
            (Side::Server, Sasl::Off | Sasl::Done, ProtocolId::AMQP)
                if matches!(self.state, S::Start) =>
            {
                if self.sasl == Sasl::Off && self.cfg.require_sasl {
                    // 5.1: a server that requires SASL answers with the SASL header.
                    self.send_header(ProtocolHeader::SASL);
                    self.mismatch(
                        "the client skipped SASL, which this server requires (it sent AMQP 0 1.0.0)".into(),
                    );
                    return;
                }
                self.state = S::HdrRcvd;
                self.start_amqp();
            }
            // Client: the server's AMQP header after ours (and our open).
            (Side::Client, Sasl::Off | Sasl::Done, ProtocolId::AMQP) => match self.state {
                S::HdrSent => self.state = S::HdrExch,
                S::OpenPipe => self.state = S::OpenSent,
                S::OcPipe => self.state = S::ClosePipe,
                _ => self.violation(Violation::UnexpectedFrameType("protocol header")),
            },
            // Client without SASL: 5.1, a server that requires it answers with its header.
            (Side::Client, Sasl::Off, ProtocolId::SASL) => self.mismatch(format!(
                "the server requires SASL (it answered our AMQP header with {h}): \
                 connect with SASL credentials"
            )),
            (_, _, ProtocolId::TLS) => {
                self.send_header(ProtocolHeader::AMQP);
                self.mismatch(
                    "the peer asked for TLS inside AMQP (AMQP 2 1.0.0): use a TLS transport (amqps://)".into(),
                );
            }
            _ => self.mismatch(format!("unexpected protocol header {h} in state {:?}", self.state)),
        }
    }

    fn on_raw_frame(&mut self, raw: RawFrame) {
        let decoded = raw.decode(DecodeOptions::STRICT);
        if let Some(trace) = self.cfg.trace.as_mut() {
            let item = match &decoded {
                Ok(f) => TraceItem::Frame(f),
                Err(e) => TraceItem::Undecodable(e),
            };
            trace(&TraceRecord {
                direction: Direction::In,
                offset: raw.offset,
                raw: &raw.bytes,
                item,
            });
        }
        if self.state == ConnectionState::Discarding {
            // 2.4.4: after sending close with an error, ignore everything but close.
            if let Ok(Frame {
                body: FrameBody::Amqp { performative: Performative::Close(_), .. },
                ..
            }) = decoded
            {
                let error = self.error.take();
                self.end(error);
            }
            return;
        }
        match decoded {
            Err(e) => self.violation(Violation::Decode(e)),
            Ok(Frame { channel: _, body: FrameBody::Sasl(s) }) => self.on_sasl(s),
            Ok(Frame { body: FrameBody::Empty, .. }) => {}
            Ok(Frame { channel, body: FrameBody::Amqp { performative, payload } }) => {
                self.on_amqp(channel, performative, payload)
            }
        }
    }

    fn on_sasl(&mut self, body: SaslFrameBody) {
        match (self.side, self.sasl, body) {
            (Side::Client, Sasl::ClientMechanisms, SaslFrameBody::Mechanisms(m)) => {
                let Some(client) = self.cfg.sasl_client.as_mut() else { return };
                if let Err(e) = client.check_offered(&m.sasl_server_mechanisms) {
                    self.sasl_failed(e);
                    return;
                }
                let init = SaslInit {
                    mechanism: Symbol::from(client.mechanism()),
                    initial_response: client.initial_response(),
                    hostname: client.hostname().or(self.cfg.hostname.as_deref()).map(Into::into),
                };
                self.send_sasl(init.into());
                self.sasl = Sasl::ClientOutcome;
            }
            (Side::Client, Sasl::ClientOutcome, SaslFrameBody::Challenge(c)) => {
                let Some(client) = self.cfg.sasl_client.as_mut() else { return };
                match client.challenge(&c.challenge) {
                    Ok(response) => self.send_sasl(crate::types::SaslResponse { response }.into()),
                    Err(e) => self.sasl_failed(e),
                }
            }
            (Side::Client, Sasl::ClientOutcome, SaslFrameBody::Outcome(o)) => {
                let Some(client) = self.cfg.sasl_client.as_mut() else { return };
                let mechanism = client.mechanism().to_owned();
                match client.outcome(o.code, o.additional_data.as_deref()) {
                    Ok(()) => {
                        self.sasl = Sasl::Done;
                        self.events.push_back(Event::SaslDone { mechanism, identity: None });
                        // 5.3.2: the AMQP header follows the outcome.
                        self.decoder.expect_header();
                        self.start_amqp();
                    }
                    Err(e) => self.sasl_failed(e),
                }
            }
            (Side::Server, Sasl::ServerInit, SaslFrameBody::Init(init)) => {
                let Some(auth) = self.cfg.authenticator.as_mut() else { return };
                let step = auth.start(
                    init.mechanism.as_str(),
                    init.initial_response.as_deref(),
                    init.hostname.as_deref(),
                    self.cfg.external_identity.as_deref(),
                );
                self.sasl_mechanism = init.mechanism.as_str().to_owned();
                self.server_step(init.mechanism.as_str().to_owned(), step);
            }
            (Side::Server, Sasl::ServerResponse, SaslFrameBody::Response(r)) => {
                let Some(auth) = self.cfg.authenticator.as_mut() else { return };
                let step = auth.step(&r.response);
                // A multi-step exchange (SCRAM) ends on a response: its mechanism is init's.
                let mechanism = std::mem::take(&mut self.sasl_mechanism);
                self.server_step(mechanism, step);
            }
            (_, _, other) => self.violation(Violation::UnexpectedSasl(other.name())),
        }
    }

    fn server_step(&mut self, mechanism: String, step: AuthStep) {
        match step {
            AuthStep::Challenge(challenge) => {
                self.send_sasl(SaslChallenge { challenge }.into());
                self.sasl = Sasl::ServerResponse;
            }
            AuthStep::Done(outcome) => {
                let ok = outcome.code == crate::types::SaslCode::OK;
                self.send_sasl(
                    SaslOutcome { code: outcome.code, additional_data: outcome.additional_data }
                        .into(),
                );
                if ok {
                    self.sasl = Sasl::Done;
                    self.events
                        .push_back(Event::SaslDone { mechanism, identity: outcome.identity });
                    self.decoder.expect_header();
                } else {
                    let code = outcome.code;
                    let error = match outcome.reason {
                        Some(reason) => SaslError::Refused { code, reason },
                        None => SaslError::Failed { code },
                    };
                    self.end(Some(ConnectionError::Sasl(error)));
                }
            }
        }
    }

    fn on_amqp(&mut self, channel: u16, performative: Performative, payload: Bytes) {
        use ConnectionState as S;
        if matches!(
            self.sasl,
            Sasl::ClientMechanisms | Sasl::ClientOutcome | Sasl::ServerInit | Sasl::ServerResponse
        ) {
            return self.violation(Violation::UnexpectedFrameType("AMQP"));
        }
        if channel > self.cfg.channel_max {
            return self.violation(Violation::ChannelMax { channel, max: self.cfg.channel_max });
        }
        match performative {
            // 2.4.1: before the open, the highest channel is 0 (so the open is on it).
            Performative::Open(_) if channel != 0 && self.remote_open.is_none() => {
                self.violation(Violation::ChannelMax { channel, max: 0 });
            }
            Performative::Open(open) => {
                if self.remote_open.is_some() {
                    return self.violation(Violation::DuplicateOpen);
                }
                // 2.7.1: max-frame-size MUST NOT be below MIN-MAX-FRAME-SIZE.
                if open.max_frame_size < MIN_MAX_FRAME_SIZE {
                    return self.violation(Violation::MaxFrameSizeTooSmall(open.max_frame_size));
                }
                // 2.4.5: "If a peer can not, for any reason support a proposed idle
                // timeout, then it SHOULD close the connection using a close frame with an
                // error explaining why."
                let shortest = self.cfg.shortest_peer_idle_time_out;
                if let Some(ms) = open.idle_time_out.filter(|ms| *ms > 0) {
                    if Duration::from_millis(u64::from(ms)) < shortest {
                        let shortest = u32::try_from(shortest.as_millis()).unwrap_or(u32::MAX);
                        return self
                            .violation(Violation::IdleTimeOutTooShort { asked: ms, shortest });
                    }
                }
                self.peer_max_frame_size = open.max_frame_size;
                self.peer_idle = open
                    .idle_time_out
                    .filter(|ms| *ms > 0)
                    .map(|ms| Duration::from_millis(u64::from(ms)));
                self.state = match self.state {
                    S::OpenSent => S::Opened,
                    S::ClosePipe => S::CloseSent,
                    S::HdrExch => S::OpenRcvd,
                    other => other,
                };
                self.remote_open = Some(open.clone());
                self.timers[Timer::Open as usize] = None;
                self.events.push_back(Event::Opened { remote: Box::new(open) });
                self.arm_keepalive();
                if let (Some(idle), Some(now)) = (self.idle(), self.now) {
                    self.timers[Timer::Idle as usize] = later(now, silence_allowed(idle));
                }
            }
            _ if self.remote_open.is_none() => {
                self.violation(Violation::FirstFrameNotOpen(performative.name()));
            }
            Performative::Close(close) => {
                self.events.push_back(Event::RemoteClose { error: close.error.clone() });
                match self.state {
                    S::CloseSent => {
                        let error = self.error.take().or(close.error.map(ConnectionError::Remote));
                        self.end(error);
                    }
                    _ => {
                        // 2.4.4: answer the close, then the connection is over.
                        self.state = S::CloseRcvd;
                        self.send_close(None);
                        self.end(close.error.map(ConnectionError::Remote));
                    }
                }
            }
            other => {
                if !matches!(self.state, S::Opened | S::CloseSent) {
                    return self.violation(Violation::NotOpen(other.name()));
                }
                self.on_session_frame(channel, other, payload);
            }
        }
    }

    /// Routes a frame on a session channel (2.5).
    fn on_session_frame(&mut self, channel: u16, p: Performative, payload: Bytes) {
        if let Performative::Begin(b) = &p {
            return self.on_begin(channel, b);
        }
        let Some(&local) = self.remote_channels.get(&channel) else {
            // 2.7.2: frames other than begin need a channel the peer has begun.
            return self.violation(Violation::UnknownChannel { channel, performative: p.name() });
        };
        let id = self.sid(local);
        let Some(state) = self.session_state(id) else { return };
        if state == SessionState::Discarding && !matches!(p, Performative::End(_)) {
            return;
        }
        if state == SessionState::BeginRcvd {
            return self.hold_pending(id, p);
        }
        match p {
            Performative::End(end) => {
                self.remote_channels.remove(&channel);
                let by_peer = state != SessionState::EndSent && state != SessionState::Discarding;
                let ours = self.session_mut(id).and_then(|s| s.error.take());
                // Our end, when it still waits behind frames held for the peer's window
                // (the two ends crossed): it goes now, the frames before it dropped.
                let ours_held = !by_peer
                    && self
                        .session_mut(id)
                        .is_some_and(|s| !std::mem::take(&mut s.held).is_empty());
                if ours_held {
                    self.send_performative(local, Performative::End(Session::end(ours.clone())));
                }
                let error = if by_peer { end.error } else { ours.or(end.error) };
                if by_peer {
                    // 2.5.4: answer the peer's end (at once: what our session held for the
                    // peer's window is dropped with it).
                    if let Some(s) = self.session_mut(id) {
                        s.held.clear();
                    }
                    self.send_performative(local, Performative::End(Session::end(None)));
                }
                self.drop_session(local);
                self.push_ending(Event::SessionEnded { session: id, error, by_peer });
            }
            Performative::Flow(f) => {
                // 2.7.4: every flow carries the session's state, a link's flow too.
                let Some(s) = self.session_mut(id) else { return };
                let before = s.remote_incoming_window;
                s.on_flow(&f);
                let was_held = !s.held.is_empty();
                // A delivery's held frames go first; then the room left is news.
                let clear = self.release_held(id);
                let Some(s) = self.session_mut(id) else { return };
                let remote_incoming_window = s.remote_incoming_window;
                // (Held frames all gone is news even with no room left: a declare or
                // discharge on another session waited for them.)
                if clear
                    && (was_held || remote_incoming_window > 0 && remote_incoming_window > before)
                {
                    self.events
                        .push_back(Event::SessionWindow { session: id, remote_incoming_window });
                }
                if f.handle.is_some() {
                    return self.on_link_frame(local, Performative::Flow(f), payload);
                }
                if f.echo {
                    let Some(s) = self.session_mut(id) else { return };
                    let flow = s.flow(false);
                    self.send_performative(local, Performative::Flow(flow));
                }
            }
            other => self.on_link_frame(local, other, payload),
        }
    }

    fn on_begin(&mut self, channel: u16, b: &crate::types::Begin) {
        if self.remote_channels.contains_key(&channel) {
            // 2.5.1: a begin on a channel already in use.
            return self.violation(Violation::ChannelInUse(channel));
        }
        match b.remote_channel {
            Some(local) => {
                // The answer to our begin.
                let Some(s) = self.sessions.get_mut(usize::from(local)).and_then(Option::as_mut)
                else {
                    return self.violation(Violation::UnknownChannel {
                        channel: local,
                        performative: "begin",
                    });
                };
                let ended_early = s.state == SessionState::EndSent && s.remote_channel.is_none();
                if s.state != SessionState::BeginSent && !ended_early {
                    return self.violation(Violation::UnknownChannel {
                        channel: local,
                        performative: "begin",
                    });
                }
                s.on_begin(b);
                s.remote_channel = Some(channel);
                self.remote_channels.insert(channel, local);
                if ended_early {
                    // We ended it before the answer came (pipelined): the peer's end follows.
                    return;
                }
                s.state = SessionState::Mapped;
                let session = SessionId::new(local, s.serial);
                let remote = Box::new(b.clone());
                self.events.push_back(Event::SessionBegun { session, by_peer: false, remote });
            }
            None => {
                // The peer begins a session: map it, then answer (or ask the application).
                let Some(local) = self.free_channel() else {
                    return self
                        .violation(Violation::ChannelMax { channel, max: self.cfg.channel_max });
                };
                let mut s = Session::new(&self.cfg.session, SessionState::BeginRcvd);
                s.on_begin(b);
                s.remote_channel = Some(channel);
                let session = self.put_session(local, s);
                self.remote_channels.insert(channel, local);
                let remote = Box::new(b.clone());
                if self.cfg.accept_sessions {
                    self.answer_begin(local);
                    self.events.push_back(Event::SessionBegun { session, by_peer: true, remote });
                } else {
                    self.events.push_back(Event::BeginRequested { session, remote });
                }
            }
        }
    }

    /// Sends our begin for a session the peer began; it is mapped from then on.
    fn answer_begin(&mut self, local: u16) {
        let Some(s) = self.sessions.get_mut(usize::from(local)).and_then(Option::as_mut) else {
            return;
        };
        s.state = SessionState::Mapped;
        let answer = s.begin();
        self.send_performative(local, Performative::Begin(answer));
    }

    /// Accepts a session the peer began (with [`Config::accept_sessions`] off): our begin
    /// answers it, and the frames the peer sent on it meanwhile are handled now.
    pub fn accept_begin(&mut self, session: SessionId) -> Result<(), UsageError> {
        self.check_writable()?;
        let s = self.session_mut(session).ok_or(UsageError::UnknownSession)?;
        if s.state != SessionState::BeginRcvd {
            return Err(UsageError::NotRequested);
        }
        let pending = std::mem::take(&mut s.pending);
        let (Some(channel), Some(remote)) = (s.remote_channel, s.remote.clone()) else {
            return Err(UsageError::NotRequested);
        };
        self.answer_begin(session.0);
        self.events.push_back(Event::SessionBegun { session, by_peer: true, remote });
        for p in pending {
            if self.state == ConnectionState::End {
                break;
            }
            self.on_session_frame(channel, p, Bytes::new());
        }
        Ok(())
    }

    /// Refuses a session the peer began: our begin answers it and an end with `error`
    /// follows at once, as for a refused link (2.6.3); what the peer sent on it is dropped.
    pub fn refuse_begin(
        &mut self,
        session: SessionId,
        error: crate::types::Error,
    ) -> Result<(), UsageError> {
        self.check_writable()?;
        let end = Performative::End(Session::end(Some(error)));
        self.fits(&end)?;
        let s = self.session_mut(session).ok_or(UsageError::UnknownSession)?;
        if s.state != SessionState::BeginRcvd {
            return Err(UsageError::NotRequested);
        }
        s.pending.clear();
        self.answer_begin(session.0);
        if let Some(s) = self.session_mut(session) {
            s.state = SessionState::EndSent;
        }
        self.send_performative(session.0, end);
        Ok(())
    }

    /// Holds a frame the peer sent on a session the application has not answered yet.
    fn hold_pending(&mut self, id: SessionId, p: Performative) {
        let held: usize = self.sessions.iter().flatten().map(|s| s.pending.len()).sum();
        let Some(s) = self.session_mut(id) else { return };
        if let Performative::End(end) = p {
            // The peer gave up before we answered: answer both, and it is gone.
            if let Some(channel) = s.remote_channel {
                self.remote_channels.remove(&channel);
            }
            self.answer_begin(id.0);
            self.send_performative(id.0, Performative::End(Session::end(None)));
            self.drop_session(id.0);
            self.push_ending(Event::SessionEnded { session: id, error: end.error, by_peer: true });
            return;
        }
        let refuse = match &p {
            // No link on it is attached yet, so no transfer can have credit (2.6.2); only
            // frames without a payload are held.
            Performative::Transfer(t) => {
                Some(Violation::UnattachedHandle { handle: t.handle.0, performative: "transfer" })
            }
            _ if held >= PENDING_FRAMES => Some(Violation::PendingBeginOverflow),
            _ => None,
        };
        if let Some(v) = refuse {
            s.pending.clear();
            // Answer the begin so that the end has a session to end.
            self.answer_begin(id.0);
            return self.scoped(id, None, v);
        }
        s.pending.push(p);
    }

    /// Forgets a session, keeping what its links leave unsettled (ending a session detaches
    /// its links without closing them).
    fn drop_session(&mut self, local: u16) {
        let Some(s) = self.sessions.get_mut(usize::from(local)).and_then(Option::take) else {
            return;
        };
        for l in s.links.iter().flatten() {
            self.retain(l, false);
        }
    }

    /// Whether `p` fits the peer's max-frame-size: a command checks its frame before it
    /// changes anything, rather than have a frame that cannot be sent end the connection.
    /// (Measured by encoding it into a buffer kept for the purpose.)
    pub(super) fn fits(&self, p: &Performative) -> Result<(), UsageError> {
        let enc =
            FrameEncoder { max_frame_size: self.peer_max_frame_size, layout: self.cfg.layout };
        let mut scratch = self.scratch.take();
        scratch.clear();
        let fits = enc.encode_amqp(0, p, &[], &mut scratch).map_err(|_| UsageError::TooLarge);
        // A large frame's buffer is not kept.
        if scratch.capacity() <= 4096 {
            self.scratch.set(scratch);
        }
        fits
    }

    /// Whether our end has been written on the session on our `channel`.
    fn session_ending(&self, channel: u16) -> bool {
        self.sessions
            .get(usize::from(channel))
            .and_then(Option::as_ref)
            .is_some_and(|s| matches!(s.state, SessionState::EndSent | SessionState::Discarding))
    }

    /// Commands that write frames are refused once our close is written or the
    /// connection has ended.
    pub(super) fn check_writable(&self) -> Result<(), UsageError> {
        if self.close_written || self.state == ConnectionState::End {
            return Err(UsageError::Closed);
        }
        Ok(())
    }

    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.sessions
            .get_mut(usize::from(id.0))
            .and_then(Option::as_mut)
            .filter(|s| s.serial == id.serial())
    }

    fn session_ref(&self, id: SessionId) -> Option<&Session> {
        self.sessions
            .get(usize::from(id.0))
            .and_then(Option::as_ref)
            .filter(|s| s.serial == id.serial())
    }

    /// The id of the session now on our `channel`.
    pub(super) fn sid(&self, channel: u16) -> SessionId {
        // Serial 0 names no session: lookups with it find nothing.
        self.session_on(channel).unwrap_or(SessionId::new(channel, 0))
    }

    /// Stores a new session on `channel`, giving it its serial; returns its id.
    fn put_session(&mut self, channel: u16, mut s: Session) -> SessionId {
        // 32 bits, counted round (0 is skipped: it names no session).
        self.session_serial = self.session_serial.checked_add(1).unwrap_or(1);
        s.serial = self.session_serial;
        let i = usize::from(channel);
        if self.sessions.len() <= i {
            self.sessions.resize_with(i + 1, || None);
        }
        self.sessions[i] = Some(s);
        SessionId::new(channel, self.session_serial)
    }

    /// The lowest channel free for a new session, within both sides' channel-max.
    fn free_channel(&self) -> Option<u16> {
        // 2.4.1: until the peer's open says otherwise, the highest channel is 0 (a
        // session pipelined before it takes channel 0; a peer with channel-max 0 would
        // refuse a second).
        let max = self.remote_open.as_ref().map_or(0, |o| o.channel_max.min(self.cfg.channel_max));
        (0..=max).find(|c| self.sessions.get(usize::from(*c)).is_none_or(Option::is_none))
    }

    fn violation(&mut self, v: Violation) {
        use ConnectionState as S;
        let can_close =
            matches!(self.state, S::Opened | S::OpenSent | S::OpenRcvd | S::HdrExch | S::OpenPipe)
                && !matches!(
                    self.sasl,
                    Sasl::ClientMechanisms
                        | Sasl::ClientOutcome
                        | Sasl::ServerInit
                        | Sasl::ServerResponse
                );
        // Once the stream cannot be split into frames, the peer's close could never be
        // read: the close goes out and the connection ends at once.
        let unreadable = matches!(v, Violation::Framing(_));
        if self.state == S::Discarding {
            // Closing for an earlier violation already: that one stays the reason, and
            // nothing more is sent; a stream that can no longer be read ends it now.
            if unreadable {
                let e = self.error.take();
                self.end(e);
            }
            return;
        }
        let error = v.to_error();
        self.events.push_back(Event::ConnectionError { violation: v.clone() });
        self.error = Some(ConnectionError::Violation(v));
        if can_close {
            if self.state == S::OpenRcvd || self.state == S::HdrExch {
                self.send_open();
            }
            self.send_close(Some(error));
            if self.state == S::End {
                return;
            }
            self.state = S::Discarding;
            // Only the close time-out runs now: the reason stays this violation.
            self.timers[Timer::Open as usize] = None;
            self.timers[Timer::Idle as usize] = None;
        }
        if !can_close || unreadable {
            let e = self.error.take();
            self.end(e);
        }
    }

    fn mismatch(&mut self, why: String) {
        self.end(Some(ConnectionError::ProtocolMismatch(why)));
    }

    fn sasl_failed(&mut self, e: SaslError) {
        self.end(Some(ConnectionError::Sasl(e)));
    }

    fn end(&mut self, error: Option<ConnectionError>) {
        if self.state == ConnectionState::End {
            return;
        }
        self.state = ConnectionState::End;
        // The links of a connection that ends are detached, not closed: keep what they
        // leave unsettled for `retained_unsettled`.
        let sessions = std::mem::take(&mut self.sessions);
        for l in sessions.iter().flatten().flat_map(|s| s.links.iter().flatten()) {
            self.retain(l, false);
        }
        self.sessions = sessions;
        self.timers = [None; 4];
        self.error.clone_from(&error);
        self.push_ending(Event::Ended { error });
    }

    fn arm_keepalive(&mut self) {
        // Send something within half the peer's idle time-out, so a heartbeat arrives in
        // time even if one is delayed (2.4.5 lets the peer close at the full value).
        if let (Some(idle), Some(now)) = (self.peer_idle, self.now) {
            self.timers[Timer::Keepalive as usize] = later(now, idle / 2);
        }
    }

    fn send_header(&mut self, h: ProtocolHeader) {
        let bytes = h.to_bytes();
        if let Some(trace) = self.cfg.trace.as_mut() {
            trace(&TraceRecord {
                direction: Direction::Out,
                offset: self.out_offset,
                raw: &bytes,
                item: TraceItem::Header(h),
            });
        }
        self.push_out(&bytes);
        if self.state == ConnectionState::Start && h.id == ProtocolId::AMQP {
            self.state = ConnectionState::HdrSent;
        } else if self.state == ConnectionState::HdrRcvd && h.id == ProtocolId::AMQP {
            self.state = ConnectionState::HdrExch;
        }
    }

    fn send_open(&mut self) {
        use ConnectionState as S;
        let mut open = Open::new(self.cfg.container_id.clone());
        open.hostname = self.cfg.hostname.clone().map(Into::into);
        open.max_frame_size = self.cfg.max_frame_size.max(MIN_MAX_FRAME_SIZE);
        open.channel_max = self.cfg.channel_max;
        open.idle_time_out = idle_millis(self.cfg.idle_time_out);
        open.properties = self.cfg.properties.clone();
        open.outgoing_locales.clone_from(&self.cfg.outgoing_locales);
        open.incoming_locales.clone_from(&self.cfg.incoming_locales);
        self.send_performative(0, Performative::Open(open));
        self.state = match self.state {
            S::HdrSent => S::OpenPipe,
            S::HdrExch => S::OpenSent,
            S::OpenRcvd => S::Opened,
            other => other,
        };
    }

    fn send_close(&mut self, error: Option<crate::types::Error>) {
        use ConnectionState as S;
        let error = error.map(|e| self.fitted_error(e));
        self.send_performative(0, Performative::Close(Close { error }));
        self.close_written = true;
        if self.state == S::End {
            return; // it did not fit even so: the connection has ended
        }
        self.state = match self.state {
            S::OpenPipe => S::OcPipe,
            S::OpenSent => S::ClosePipe,
            // Answering the peer's close: the caller ends the connection.
            S::CloseRcvd => S::CloseRcvd,
            _ => S::CloseSent,
        };
        if self.state != S::CloseRcvd {
            if let Some(now) = self.now {
                self.timers[Timer::Close as usize] = later(now, self.cfg.close_timeout);
            }
        }
    }

    /// `e` cut until a close that carries it fits the peer's max-frame-size: its
    /// description halved (at a character boundary) while that shortens it, then left
    /// out, then its info left out. A violation's text quotes what the peer sent (a
    /// descriptor, say), which may be longer than the peer accepts back, and an
    /// application's info may be larger than a peer that has not opened yet accepts.
    /// (Only the condition left and still too large: the close is not sent, see
    /// [`Connection::send_performative`].)
    fn fitted_error(&self, e: crate::types::Error) -> crate::types::Error {
        self.fitted_error_in(e, |e| Performative::Close(Close { error: Some(e) }))
    }

    /// [`Connection::fitted_error`] for the error of any performative `carry` makes.
    pub(super) fn fitted_error_in(
        &self,
        mut e: crate::types::Error,
        carry: impl Fn(crate::types::Error) -> Performative,
    ) -> crate::types::Error {
        loop {
            if self.fits(&carry(e.clone())).is_ok() {
                return e;
            }
            match e.description.take() {
                Some(text) if !text.is_empty() => {
                    let mut cut = text.len() / 2;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    // A short text ("ab" to "a…") does not get shorter: left out.
                    let shorter = format!("{}…", &text[..cut]);
                    if cut > 0 && shorter.len() < text.len() {
                        e.description = Some(shorter.into());
                    }
                }
                _ => {
                    if e.info.take().is_none() {
                        return e;
                    }
                }
            }
        }
    }

    fn send_empty(&mut self) {
        if self.close_written {
            return;
        }
        let mut buf = Vec::with_capacity(8);
        FrameEncoder::new(self.peer_max_frame_size).encode_empty(&mut buf);
        if self.cfg.trace.is_some() {
            let frame = Frame { channel: 0, body: FrameBody::Empty };
            self.trace_out(&buf, &frame);
        }
        self.push_out(&buf);
    }

    fn send_sasl(&mut self, body: SaslFrameBody) {
        let mut buf = Vec::new();
        let enc = FrameEncoder { max_frame_size: u32::MAX, layout: self.cfg.layout };
        if enc.encode_sasl(&body, &mut buf).is_ok() {
            if self.cfg.trace.is_some() {
                let frame = Frame { channel: 0, body: FrameBody::Sasl(body) };
                self.trace_out(&buf, &frame);
            }
            self.push_out(&buf);
        }
    }

    fn send_performative(&mut self, channel: u16, p: Performative) {
        // 2.4.6: once our close is written (or the connection has ended), nothing more
        // is; 2.5.5: once our end is, nothing more on its session (answers, echoes and
        // window updates the peer's frames would call for are left unsent).
        let session_frame =
            !matches!(p, Performative::Open(_) | Performative::Close(_) | Performative::End(_));
        if self.close_written
            || self.state == ConnectionState::End
            || session_frame && self.session_ending(channel)
        {
            return;
        }
        let mut buf = Vec::new();
        let enc =
            FrameEncoder { max_frame_size: self.peer_max_frame_size, layout: self.cfg.layout };
        if enc.encode_amqp(channel, &p, &[], &mut buf).is_err() {
            // Our own open or close is larger than the peer accepts: send it without the
            // parts that made it large would be guessing; drop the connection instead.
            self.end(Some(ConnectionError::ProtocolMismatch(format!(
                "our {} does not fit the peer's max-frame-size {}",
                p.name(),
                self.peer_max_frame_size
            ))));
            return;
        }
        // A session's frames keep their place behind transfer frames held for the peer's
        // window (traced when they go); flows, which say its state as it is now, go at
        // once, but for a link's whose attach is held (see `hold_behind`).
        let held = session_frame && !matches!(p, Performative::Begin(_))
            || matches!(p, Performative::End(_));
        if held && self.hold_behind(channel, &p, &buf) {
            return;
        }
        if self.cfg.trace.is_some() {
            let frame =
                Frame { channel, body: FrameBody::Amqp { performative: p, payload: Bytes::new() } };
            self.trace_out(&buf, &frame);
        }
        self.push_out(&buf);
    }

    fn trace_out(&mut self, raw: &[u8], frame: &Frame) {
        let offset = self.out_offset;
        if let Some(trace) = self.cfg.trace.as_mut() {
            trace(&TraceRecord {
                direction: Direction::Out,
                offset,
                raw,
                item: TraceItem::Frame(frame),
            });
        }
    }

    fn trace_in_header(&mut self, offset: u64, header: ProtocolHeader) {
        if let Some(trace) = self.cfg.trace.as_mut() {
            let raw = header.to_bytes();
            trace(&TraceRecord {
                direction: Direction::In,
                offset,
                raw: &raw,
                item: TraceItem::Header(header),
            });
        }
    }

    fn push_out(&mut self, bytes: &[u8]) {
        self.out.head.extend_from_slice(bytes);
        self.out_offset += bytes.len() as u64;
        self.arm_keepalive();
    }
}

/// `now + d`, or never (`None`) when that is past what the clock can hold: a time-out of
/// `Duration::MAX` is a wait without end, not an overflow.
pub(crate) fn later(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// An idle time-out in open's terms: whole milliseconds, rounded up so that a time-out
/// under a millisecond is not announced as none, at most `u32::MAX`; none for zero.
fn idle_millis(d: Option<Duration>) -> Option<u32> {
    let d = d.filter(|d| !d.is_zero())?;
    // In u64 (no 128-bit division in the browser's module).
    let ms = d
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
    Some(u32::try_from(ms).unwrap_or(u32::MAX))
}

/// How long the peer may stay silent before the connection is closed, given the
/// idle-time-out we advertise. 2.4.5: "the value in idle-time-out SHOULD be half the peer's
/// actual timeout threshold", so the advertised value is half of what is enforced: a peer
/// that sends a heartbeat once per advertised period (Qpid Proton does) is not cut off.
fn silence_allowed(advertised: Duration) -> Duration {
    advertised.saturating_mul(2)
}

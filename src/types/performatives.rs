//! The nine performatives of part 2 (2.7), and the [`Performative`] union that frame
//! bodies decode to.

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{DecodeError, DecodeOptions, ErrorKind, Fast, Reader, Symbol, Value};

use super::{
    read_descriptor, AttachSource, AttachTarget, Composite, DeliveryState, Error, Fields, Handle,
    Layout, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo,
};

composite! {
    /// Negotiate connection parameters (2.7.1).
    pub struct Open : "open", "amqp:open:list", 0x10 {
        /// The id of the source container.
        container_id: ByteString => "container-id", mandatory;
        /// The name of the target host.
        hostname: ByteString => "hostname", optional;
        /// Proposed maximum frame size.
        max_frame_size: u32 => "max-frame-size", default(u32::MAX);
        /// The maximum channel number that can be used on the connection.
        channel_max: u16 => "channel-max", default(u16::MAX);
        /// Idle time-out in milliseconds.
        idle_time_out: u32 => "idle-time-out", optional;
        /// Locales available for outgoing text.
        outgoing_locales: Vec<Symbol> => "outgoing-locales", default(Vec::<Symbol>::new());
        /// Desired locales for incoming text in decreasing level of preference.
        incoming_locales: Vec<Symbol> => "incoming-locales", default(Vec::<Symbol>::new());
        /// Extension capabilities the sender supports.
        offered_capabilities: Vec<Symbol> => "offered-capabilities", default(Vec::<Symbol>::new());
        /// Extension capabilities the sender can use if the receiver supports them.
        desired_capabilities: Vec<Symbol> => "desired-capabilities", default(Vec::<Symbol>::new());
        /// Connection properties.
        properties: Fields => "properties", optional;
    }
}

impl Open {
    /// An open with only a container id; every other field takes its default.
    pub fn new(container_id: impl Into<ByteString>) -> Self {
        Self {
            container_id: container_id.into(),
            hostname: None,
            max_frame_size: u32::MAX,
            channel_max: u16::MAX,
            idle_time_out: None,
            outgoing_locales: Vec::new(),
            incoming_locales: Vec::new(),
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            properties: None,
        }
    }
}

composite! {
    /// Begin a session on a channel (2.7.2).
    pub struct Begin : "begin", "amqp:begin:list", 0x11 {
        /// The remote channel for this session (set when answering a begin).
        remote_channel: u16 => "remote-channel", optional;
        /// The transfer-id of the first transfer id the sender will send.
        next_outgoing_id: SequenceNo => "next-outgoing-id", mandatory;
        /// The initial incoming-window of the sender.
        incoming_window: u32 => "incoming-window", mandatory;
        /// The initial outgoing-window of the sender.
        outgoing_window: u32 => "outgoing-window", mandatory;
        /// The maximum handle value that can be used on the session.
        handle_max: Handle => "handle-max", default(Handle(u32::MAX));
        /// Extension capabilities the sender supports.
        offered_capabilities: Vec<Symbol> => "offered-capabilities", default(Vec::<Symbol>::new());
        /// Extension capabilities the sender can use if the receiver supports them.
        desired_capabilities: Vec<Symbol> => "desired-capabilities", default(Vec::<Symbol>::new());
        /// Session properties.
        properties: Fields => "properties", optional;
    }
}

composite! {
    /// Attach a link to a session (2.7.3).
    pub struct Attach : "attach", "amqp:attach:list", 0x12 {
        /// The name of the link.
        name: ByteString => "name", mandatory;
        /// The handle for the link while attached.
        handle: Handle => "handle", mandatory;
        /// The role of the link endpoint that sends this attach.
        role: Role => "role", mandatory;
        /// Settlement policy for the sender.
        snd_settle_mode: SenderSettleMode => "snd-settle-mode", default(SenderSettleMode::MIXED);
        /// The settlement policy of the receiver.
        rcv_settle_mode: ReceiverSettleMode => "rcv-settle-mode", default(ReceiverSettleMode::FIRST);
        /// The source for messages.
        source: AttachSource => "source", optional;
        /// The target for messages.
        target: AttachTarget => "target", optional;
        /// Unsettled delivery state: a map from delivery-tag to delivery-state.
        unsettled: Value => "unsettled", optional;
        /// Whether the unsettled map is incomplete.
        incomplete_unsettled: bool => "incomplete-unsettled", default(false);
        /// The sender's initial value for delivery-count.
        initial_delivery_count: SequenceNo => "initial-delivery-count", optional;
        /// The maximum message size supported by the link endpoint.
        max_message_size: u64 => "max-message-size", optional;
        /// Extension capabilities the sender supports.
        offered_capabilities: Vec<Symbol> => "offered-capabilities", default(Vec::<Symbol>::new());
        /// Extension capabilities the sender can use if the receiver supports them.
        desired_capabilities: Vec<Symbol> => "desired-capabilities", default(Vec::<Symbol>::new());
        /// Link properties.
        properties: Fields => "properties", optional;
    }
}

impl Begin {
    /// A begin of a new session (no remote-channel) with the given transfer-id and
    /// windows, and every other field at its default (handle-max 4294967295, no
    /// capabilities or properties).
    pub fn new(next_outgoing_id: SequenceNo, incoming_window: u32, outgoing_window: u32) -> Self {
        Self {
            remote_channel: None,
            next_outgoing_id,
            incoming_window,
            outgoing_window,
            handle_max: Handle(u32::MAX),
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            properties: None,
        }
    }
}

impl Attach {
    /// An attach of link `name` on `handle` in `role`, every other field at its default
    /// or absent (settle modes mixed and first, no source or target, no unsettled map,
    /// no initial delivery-count: a sender sets one, 2.7.3).
    pub fn new(name: impl Into<ByteString>, handle: Handle, role: Role) -> Self {
        Self {
            name: name.into(),
            handle,
            role,
            snd_settle_mode: SenderSettleMode::MIXED,
            rcv_settle_mode: ReceiverSettleMode::FIRST,
            source: None,
            target: None,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            properties: None,
        }
    }
}

composite! {
    /// Update link state (2.7.4).
    pub struct Flow : "flow", "amqp:flow:list", 0x13 {
        /// The expected next transfer-id of the sender's session.
        next_incoming_id: SequenceNo => "next-incoming-id", optional;
        /// The incoming-window of the sender's session.
        incoming_window: u32 => "incoming-window", mandatory;
        /// The next transfer-id the sender's session will send.
        next_outgoing_id: SequenceNo => "next-outgoing-id", mandatory;
        /// The outgoing-window of the sender's session.
        outgoing_window: u32 => "outgoing-window", mandatory;
        /// The link the flow state is for, if any.
        handle: Handle => "handle", optional;
        /// The endpoint's delivery-count.
        delivery_count: SequenceNo => "delivery-count", optional;
        /// The current maximum number of messages that can be received.
        link_credit: u32 => "link-credit", optional;
        /// The number of available messages.
        available: u32 => "available", optional;
        /// Whether the sender should use all credit.
        drain: bool => "drain", default(false);
        /// Request state from the partner.
        echo: bool => "echo", default(false);
        /// Link state properties.
        properties: Fields => "properties", optional;
    }
}

composite! {
    /// Transfer a message (2.7.5). The message bytes follow the performative in the frame.
    pub struct Transfer : "transfer", "amqp:transfer:list", 0x14 {
        /// The link.
        handle: Handle => "handle", mandatory;
        /// Alias for delivery-tag; required on the first transfer of a delivery.
        delivery_id: SequenceNo => "delivery-id", optional;
        /// The delivery-tag; required on the first transfer of a delivery.
        delivery_tag: Bytes => "delivery-tag", optional;
        /// The message format; required on the first transfer of a delivery.
        message_format: u32 => "message-format", optional;
        /// Whether the delivery is settled at the sender.
        settled: bool => "settled", optional;
        /// Whether more transfers of this delivery follow.
        more: bool => "more", default(false);
        /// The receiver settle mode for this delivery.
        rcv_settle_mode: ReceiverSettleMode => "rcv-settle-mode", optional;
        /// The state of the delivery at the sender.
        state: DeliveryState => "state", optional;
        /// Whether this is a resumed delivery.
        resume: bool => "resume", default(false);
        /// Whether the delivery is aborted.
        aborted: bool => "aborted", default(false);
        /// Batchable hint.
        batchable: bool => "batchable", default(false);
    }
}

impl Transfer {
    /// The transfer list in its common encodings (uint, boolean, binary and null fields,
    /// no delivery state), read without building errors. `None` leaves the reader where
    /// it was, and the general reader takes over: it accepts everything else and reports
    /// errors with their offsets, so the result never depends on which path ran.
    #[inline]
    pub(crate) fn read_fast(r: &mut Reader<'_>) -> Option<Self> {
        // In WebAssembly the general reader alone reads transfers: the fast path's 2 KB
        // counts for more in the browser's module than its speed does in a browser,
        // whose transfers come a WebSocket message at a time. Both read the same.
        if cfg!(target_arch = "wasm32") {
            return None;
        }
        let mut f = Fast::new(r.rest());
        let (count, end) = f.list()?;
        if count == 0 || count > 11 {
            return None;
        }
        let mut t = Self::new(Handle(f.opt_uint()??));
        let mut tag = None;
        for i in 1..count {
            match i {
                1 => t.delivery_id = f.opt_uint()?.map(SequenceNo),
                2 => tag = f.opt_binary()?,
                3 => t.message_format = f.opt_uint()?,
                4 => t.settled = f.opt_bool()?,
                5 => t.more = f.opt_bool()?.unwrap_or(false),
                6 => t.rcv_settle_mode = f.opt_ubyte()?.map(ReceiverSettleMode),
                // A delivery state needs the general reader.
                7 => (f.u8()? == crate::codec::format::NULL).then_some(())?,
                8 => t.resume = f.opt_bool()?.unwrap_or(false),
                9 => t.aborted = f.opt_bool()?.unwrap_or(false),
                _ => t.batchable = f.opt_bool()?.unwrap_or(false),
            }
        }
        if f.i != end {
            return None;
        }
        t.delivery_tag = tag.map(|s| r.to_bytes(s));
        r.advance(f.i);
        Some(t)
    }

    /// Reads a described transfer at the reader's position (the receive hot path: no
    /// `Performative` is built), through the fast path when it applies.
    #[inline]
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let pos = r.position();
        let d = read_descriptor(r)?;
        if d.code() != Some(Self::CODE) {
            return Err(r.error_at(
                pos,
                ErrorKind::UnexpectedDescriptor { expected: Self::SYMBOL, found: d.to_string() },
            ));
        }
        match Self::read_fast(r) {
            Some(t) => Ok(t),
            None => Self::read_list(r),
        }
    }

    /// A transfer on `handle` with every optional field absent.
    pub fn new(handle: Handle) -> Self {
        Self {
            handle,
            delivery_id: None,
            delivery_tag: None,
            message_format: None,
            settled: None,
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        }
    }
}

composite! {
    /// Inform the remote peer of delivery state changes (2.7.6).
    pub struct Disposition : "disposition", "amqp:disposition:list", 0x15 {
        /// Directionality of the disposition.
        role: Role => "role", mandatory;
        /// Lower bound of deliveries.
        first: SequenceNo => "first", mandatory;
        /// Upper bound of deliveries (inclusive).
        last: SequenceNo => "last", optional;
        /// Whether the deliveries are settled.
        settled: bool => "settled", default(false);
        /// The delivery state.
        state: DeliveryState => "state", optional;
        /// Batchable hint.
        batchable: bool => "batchable", default(false);
    }
}

composite! {
    /// Detach the link endpoint from the session (2.7.7).
    pub struct Detach : "detach", "amqp:detach:list", 0x16 {
        /// The link.
        handle: Handle => "handle", mandatory;
        /// Whether the link is closed (not only detached).
        closed: bool => "closed", default(false);
        /// The error that caused the detach.
        error: Error => "error", optional;
    }
}

composite! {
    /// End the session (2.7.8).
    #[derive(Default)]
    pub struct End : "end", "amqp:end:list", 0x17 {
        /// The error that caused the end.
        error: Error => "error", optional;
    }
}

composite! {
    /// Signal a connection close (2.7.9).
    #[derive(Default)]
    pub struct Close : "close", "amqp:close:list", 0x18 {
        /// The error that caused the close.
        error: Error => "error", optional;
    }
}

/// The body of an AMQP frame: one of the nine performatives.
// Unboxed on purpose: a transfer is decoded per message and must not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Performative {
    /// open.
    Open(Open),
    /// begin.
    Begin(Begin),
    /// attach.
    Attach(Attach),
    /// flow.
    Flow(Flow),
    /// transfer.
    Transfer(Transfer),
    /// disposition.
    Disposition(Disposition),
    /// detach.
    Detach(Detach),
    /// end.
    End(End),
    /// close.
    Close(Close),
}

macro_rules! performative_dispatch {
    ($($v:ident),*) => {
        impl Performative {
            /// The spec's name (`"open"` …).
            pub fn name(&self) -> &'static str {
                match self { $(Self::$v(_) => $v::NAME,)* }
            }

            /// The descriptor code.
            pub fn code(&self) -> u64 {
                match self { $(Self::$v(_) => $v::CODE,)* }
            }

            /// Reads a performative at the reader's position.
            #[inline]
            pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let pos = r.position();
                let d = read_descriptor(r)?;
                let code = d.code();
                // The hot performative first, through the fast path when it applies.
                if code == Some(Transfer::CODE) {
                    if let Some(t) = Transfer::read_fast(r) {
                        return Ok(Self::Transfer(t));
                    }
                }
                $( if code == Some($v::CODE) { return Ok(Self::$v($v::read_list(r)?)); } )*
                Err(r.error_at(pos, ErrorKind::UnexpectedDescriptor { expected: "a performative (open … close)", found: d.to_string() }))
            }

            /// Bytes [`Performative::encode_with`] writes.
            pub fn encoded_len_with(&self, layout: Layout) -> usize {
                match self { $(Self::$v(p) => p.encoded_len_with(layout),)* }
            }

            /// Appends the encoding in `layout`.
            pub fn encode_with(&self, layout: Layout, out: &mut Vec<u8>) {
                match self { $(Self::$v(p) => p.encode_with(layout, out),)* }
            }

            /// The performative as a generic value, for rendering.
            pub fn field_values(&self) -> Vec<(&'static str, Option<Value>)> {
                let mut buf = Vec::new();
                self.encode_with(Layout::AllFields, &mut buf);
                let fields: &[&str] = match self { $(Self::$v(_) => $v::FIELDS,)* };
                crate::types::field_values(&buf, fields)
            }
        }

        $(
            impl From<$v> for Performative {
                fn from(p: $v) -> Self {
                    Self::$v(p)
                }
            }
        )*
    };
}

performative_dispatch!(Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close);

impl Performative {
    /// Decodes a performative that fills `buf` exactly... or is followed by a payload (for
    /// a transfer); returns it and the bytes it took.
    pub fn decode(buf: &[u8], opts: DecodeOptions) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(buf, opts);
        let p = Self::read(&mut r)?;
        Ok((p, r.position()))
    }

    /// Appends the compact encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(Layout::Compact, out);
    }

    /// Bytes of the compact encoding.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len_with(Layout::Compact)
    }
}

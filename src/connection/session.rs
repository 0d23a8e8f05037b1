//! Sessions (2.5): begin and end, the mapping between our channels and the peer's, and the
//! session flow state (transfer ids and windows, with serial-number arithmetic).

use std::collections::VecDeque;

use crate::types::{Begin, End, Error, Flow, Handle, SequenceNo};

use super::link::Link;

/// A session, named by our channel number (`.0`), and told apart from every other session
/// the connection had on that channel: a channel an ended session freed goes to the next
/// session begun, and a command given the ended session's id then fails with
/// [`UsageError::UnknownSession`](super::UsageError::UnknownSession) rather than acting on
/// the new one. Ids come from [`Connection::begin`](super::Connection::begin) and from
/// events. (The serial that tells sessions apart is 32 bits: an id held across four
/// billion later sessions could name one of them.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u16, u32);

impl SessionId {
    pub(crate) fn new(channel: u16, serial: u32) -> Self {
        Self(channel, serial)
    }

    pub(crate) fn serial(self) -> u32 {
        self.1
    }
}

/// Session states as the spec names them (2.5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Our begin sent, the peer's not yet received.
    BeginSent,
    /// The peer's begin received, ours not yet sent.
    BeginRcvd,
    /// Both begins exchanged.
    Mapped,
    /// Our end sent.
    EndSent,
    /// The peer's end received.
    EndRcvd,
    /// Our end sent after an error; frames are discarded until the peer's end.
    Discarding,
}

/// A session's flow-control state (2.5.6), as [`Connection::session_windows`] gives it:
/// its own view of both directions. Once both ends have read everything, each end's
/// next-outgoing-id is the other's next-incoming-id, and each end's view of the other's
/// windows is the other's own.
///
/// [`Connection::session_windows`]: super::Connection::session_windows
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWindows {
    /// The peer's channel for this session, once known.
    pub remote_channel: Option<u16>,
    /// The transfer-id of our next transfer.
    pub next_outgoing_id: SequenceNo,
    /// The transfer-id expected next from the peer (`None` before the peer's begin).
    pub next_incoming_id: Option<SequenceNo>,
    /// Transfers we can still take.
    pub incoming_window: u32,
    /// Transfers we may still send, as we advertise it.
    pub outgoing_window: u32,
    /// Transfers the peer can still take, as far as we know.
    pub remote_incoming_window: u32,
    /// The peer's outgoing-window, as it last advertised it.
    pub remote_outgoing_window: u32,
}

/// How new sessions are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The incoming-window we advertise (transfer frames the peer may send before we
    /// re-advertise it).
    pub incoming_window: u32,
    /// The outgoing-window we advertise.
    pub outgoing_window: u32,
    /// The highest link handle we accept.
    pub handle_max: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { incoming_window: 2048, outgoing_window: u32::MAX, handle_max: 1023 }
    }
}

/// One session's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// The session's own number in its connection (see [`SessionId`]), given when it is
    /// stored.
    pub(crate) serial: u32,
    pub(crate) state: SessionState,
    pub(crate) remote_channel: Option<u16>,
    /// The transfer-id we give our next transfer.
    pub(crate) next_outgoing_id: SequenceNo,
    pub(crate) incoming_window: u32,
    pub(crate) outgoing_window: u32,
    pub(crate) handle_max: u32,
    /// The transfer-id we expect next from the peer.
    pub(crate) next_incoming_id: Option<SequenceNo>,
    pub(crate) remote_incoming_window: u32,
    pub(crate) remote_outgoing_window: u32,
    pub(crate) remote_handle_max: u32,
    pub(crate) error: Option<Error>,
    /// Our links, by our handle (changed through `put_link` and `take_link`, which keep
    /// `free_from`).
    pub(crate) links: Vec<Option<Link>>,
    /// Every handle below this one is in use: where the search for a free one starts.
    free_from: u32,
    /// The peer's handle → ours.
    pub(crate) remote_handles: super::vec_map::VecMap<u32, u32>,
    /// The delivery-id of our next delivery (session-scoped, 2.6.12).
    pub(crate) next_delivery_id: SequenceNo,
    /// The incoming-window we re-advertise when it runs low.
    pub(crate) max_incoming_window: u32,
    /// Frames the peer sent before the application accepted its begin.
    pub(crate) pending: Vec<crate::types::Performative>,
    /// The peer's begin, once it came.
    pub(crate) remote: Option<Box<Begin>>,
    /// The transfer frames of a delivery that the peer's incoming-window could not take
    /// all at once, and the session's frames written after them (but flows): sent in
    /// order as its flows open the window, before any other delivery of the session.
    pub(crate) held: VecDeque<HeldFrame>,
}

/// A frame that waits for the peer's session window, or for the transfer frames before it.
#[derive(Debug)]
pub(crate) struct HeldFrame {
    /// The link, for a transfer frame (it takes a unit of the window); `None` for the
    /// session's other frames.
    pub(crate) transfer_of: Option<super::LinkId>,
    /// For a transfer frame: whether its delivery is transactional work (a discharge
    /// waits for it).
    pub(crate) transactional: bool,
    /// For an attach: its handle (a flow naming that handle waits behind it).
    pub(crate) attach_of: Option<u32>,
    /// A link's flow, written when it goes (with the session's and the link's state as
    /// they are then; `bytes` is empty), and whether it asks for an echo.
    pub(crate) flow_of: Option<(super::LinkId, bool)>,
    /// The frame, encoded.
    pub(crate) bytes: crate::message::Payload,
}

impl HeldFrame {
    /// A frame that is neither a transfer nor an attach nor a flow.
    pub(crate) fn other(bytes: crate::message::Payload) -> Self {
        Self { transfer_of: None, transactional: false, attach_of: None, flow_of: None, bytes }
    }
}

impl Session {
    pub(crate) fn new(cfg: &SessionConfig, state: SessionState) -> Self {
        Self {
            serial: 0,
            state,
            remote_channel: None,
            next_outgoing_id: SequenceNo(0),
            incoming_window: cfg.incoming_window,
            outgoing_window: cfg.outgoing_window,
            handle_max: cfg.handle_max,
            next_incoming_id: None,
            remote_incoming_window: 0,
            remote_outgoing_window: 0,
            remote_handle_max: u32::MAX,
            error: None,
            links: Vec::new(),
            free_from: 0,
            remote_handles: super::vec_map::VecMap::new(),
            next_delivery_id: SequenceNo(0),
            max_incoming_window: cfg.incoming_window,
            pending: Vec::new(),
            remote: None,
            held: VecDeque::new(),
        }
    }

    /// Its flow-control state.
    pub(crate) fn windows(&self) -> SessionWindows {
        SessionWindows {
            remote_channel: self.remote_channel,
            next_outgoing_id: self.next_outgoing_id,
            next_incoming_id: self.next_incoming_id,
            incoming_window: self.incoming_window,
            outgoing_window: self.outgoing_window,
            remote_incoming_window: self.remote_incoming_window,
            remote_outgoing_window: self.remote_outgoing_window,
        }
    }

    /// The lowest handle free for a new link, within both sides' handle-max.
    pub(crate) fn free_handle(&self) -> Option<u32> {
        let max = self.handle_max.min(self.remote_handle_max);
        (self.free_from..=max).find(|h| self.links.get(*h as usize).is_none_or(Option::is_none))
    }

    /// Puts `link` on `handle`.
    pub(crate) fn put_link(&mut self, handle: u32, link: Link) {
        let i = handle as usize;
        if self.links.len() <= i {
            self.links.resize_with(i + 1, || None);
        }
        self.links[i] = Some(link);
        if handle == self.free_from {
            let used = self.links[i..].iter().take_while(|l| l.is_some()).count();
            // At most the vector's length, which handles (u32) index.
            self.free_from = u32::try_from(i + used).unwrap_or(u32::MAX);
        }
    }

    /// Takes the link off `handle`, which is free then.
    pub(crate) fn take_link(&mut self, handle: u32) -> Option<Link> {
        let gone = self.links.get_mut(handle as usize).and_then(Option::take);
        if gone.is_some() {
            self.free_from = self.free_from.min(handle);
        }
        gone
    }

    pub(crate) fn link_mut(&mut self, handle: u32) -> Option<&mut Link> {
        self.links.get_mut(handle as usize).and_then(Option::as_mut)
    }

    /// The link `id` names, if it is still on its handle (not a later link given it).
    pub(crate) fn link_by_id(&mut self, id: super::LinkId) -> Option<&mut Link> {
        self.link_mut(id.handle.0).filter(|l| l.serial == id.serial())
    }

    /// Our begin; `remote_channel` when answering the peer's.
    pub(crate) fn begin(&self) -> Begin {
        let mut b = Begin::new(self.next_outgoing_id, self.incoming_window, self.outgoing_window);
        b.remote_channel = self.remote_channel.filter(|_| self.state != SessionState::BeginSent);
        b.handle_max = Handle(self.handle_max);
        b
    }

    /// Takes the peer's begin.
    pub(crate) fn on_begin(&mut self, b: &Begin) {
        self.remote = Some(Box::new(b.clone()));
        self.next_incoming_id = Some(b.next_outgoing_id);
        self.remote_incoming_window = b.incoming_window;
        self.remote_outgoing_window = b.outgoing_window;
        self.remote_handle_max = b.handle_max.0;
    }

    /// Takes a session-level flow (2.5.6): the peer's view of both directions.
    pub(crate) fn on_flow(&mut self, f: &Flow) {
        // remote-incoming-window = next-incoming-id(flow) + incoming-window(flow)
        //                          - next-outgoing-id(ours); with no next-incoming-id the
        // peer has not seen our begin, and counts from our initial next-outgoing-id.
        // Transfer-ids are serial numbers: ours run ahead of the peer's next-incoming-id
        // by the transfers in flight, which a window it has since shrunk may not cover
        // (then it takes none, not four billion).
        let base = f.next_incoming_id.unwrap_or(SequenceNo(0));
        let in_flight = self.next_outgoing_id.0.wrapping_sub(base.0) as i32;
        let window = i64::from(f.incoming_window) - i64::from(in_flight);
        self.remote_incoming_window = u32::try_from(window.max(0)).unwrap_or(u32::MAX);
        self.remote_outgoing_window = f.outgoing_window;
        self.next_incoming_id = Some(f.next_outgoing_id);
    }

    /// Our session-level flow.
    pub(crate) fn flow(&self, echo: bool) -> Flow {
        Flow {
            next_incoming_id: self.next_incoming_id,
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: self.outgoing_window,
            handle: None,
            delivery_count: None,
            link_credit: None,
            available: None,
            drain: false,
            echo,
            properties: None,
        }
    }

    /// Our flow for `link` (one of this session's): the session's state and the link's,
    /// as they are now; `None` if the link is gone.
    pub(crate) fn link_flow(&mut self, link: super::LinkId, echo: bool) -> Option<Flow> {
        let mut f = self.flow(echo);
        let l = self.link_by_id(link)?;
        f.handle = Some(link.handle);
        f.delivery_count = Some(l.delivery_count);
        f.link_credit = Some(l.link_credit);
        f.available = (l.role == crate::types::Role::SENDER).then_some(l.available);
        f.drain = l.drain;
        Some(f)
    }

    /// Our end.
    pub(crate) fn end(error: Option<Error>) -> End {
        End { error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{LinkOptions, LinkState};
    use proptest::prelude::*;

    proptest! {
        /// Links put on the handle `free_handle` gives and taken off any handle: it is
        /// always the lowest free one within handle-max, as a search from 0 finds it.
        #[test]
        fn the_free_handle_is_the_lowest_one_free(
            ops in proptest::collection::vec((any::<bool>(), 0u32..40), 0..300),
            handle_max in 0u32..48,
        ) {
            let cfg = SessionConfig { handle_max, ..SessionConfig::default() };
            let mut s = Session::new(&cfg, SessionState::Mapped);
            let link = || Link::new(LinkOptions::sender("l", "q"), LinkState::Attached);
            for (put, h) in ops {
                let lowest = (0..=handle_max)
                    .find(|h| s.links.get(*h as usize).is_none_or(Option::is_none));
                prop_assert_eq!(s.free_handle(), lowest);
                if put {
                    if let Some(h) = s.free_handle() {
                        s.put_link(h, link());
                    }
                } else {
                    let was = s.links.get(h as usize).is_some_and(Option::is_some);
                    prop_assert_eq!(s.take_link(h).is_some(), was);
                }
            }
        }
    }
}

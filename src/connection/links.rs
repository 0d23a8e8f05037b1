//! The link layer of the connection: attach, detach, flow, transfer and disposition, in
//! both roles, with errors closing the right scope.

use std::collections::VecDeque;

use bytes::Bytes;

use super::link::{
    read_unsettled_map, HeldPart, Incoming, Link, LinkId, LinkOptions, LinkState, Resumable,
    Unsettled, UnsettledDelivery,
};
use super::session::{HeldFrame, Session, SessionState};
use super::{Connection, Event, Scope, SessionId, UsageError, Violation};
use crate::frame::FrameEncoder;
use crate::message::Payload;
use crate::types::{
    Attach, AttachSource, AttachTarget, DeliveryState, Detach, Disposition, Error, Flow, Handle,
    Performative, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo, Transfer,
};

impl Connection {
    // ----- commands -----

    /// Attaches a link on a session (the session may still be waiting for the peer's begin).
    ///
    /// Deliveries the link left unsettled when it last detached without closing (on this
    /// connection, or given in [`LinkOptions::unsettled`]) are announced in the attach's
    /// `unsettled` map; see [`Connection::resumable`].
    pub fn attach(
        &mut self,
        session: SessionId,
        mut opts: LinkOptions,
    ) -> Result<LinkId, UsageError> {
        self.check_writable()?;
        let s = self.session_mut(session).ok_or(UsageError::UnknownSession)?;
        if !matches!(s.state, SessionState::BeginSent | SessionState::Mapped) {
            return Err(if s.state == SessionState::BeginRcvd {
                UsageError::SessionNotAccepted
            } else {
                UsageError::SessionEnding
            });
        }
        let handle = s.free_handle().ok_or(UsageError::HandlesExhausted)?;
        let retained = opts.unsettled.is_empty();
        if retained {
            opts.unsettled = self.retained_take(&opts.name, opts.role);
        }
        let mut link = Link::new(opts, LinkState::AttachSent);
        let attach = self.fitted_attach(&mut link, Handle(handle));
        if let Err(e) = self.fits(&Performative::Attach(attach.clone())) {
            // Too large even with its unsettled map cut (its properties, capabilities or
            // termini): nothing changes, what the name had left unsettled stays kept.
            let kept = std::mem::take(&mut link.options.unsettled);
            if retained && !kept.is_empty() {
                self.retained.insert((link.name.clone(), link.role.0), kept);
            }
            return Err(e);
        }
        link.serial = self.next_link_serial();
        let id = LinkId::new(session, handle, link.serial);
        let Some(s) = self.session_mut(session) else { return Err(UsageError::UnknownSession) };
        s.put_link(handle, link);
        self.send_performative(session.0, Performative::Attach(attach));
        Ok(id)
    }

    /// Our attach for `link`, its `unsettled` map cut down (and marked incomplete) if the
    /// whole would not fit the peer's max-frame-size.
    fn fitted_attach(&self, link: &mut Link, handle: Handle) -> Attach {
        let mut attach = link.attach(handle);
        if attach.unsettled.is_none() {
            return attach;
        }
        let enc =
            FrameEncoder { max_frame_size: self.peer_max_frame_size, layout: self.cfg.layout };
        let mut keep = link.resumable.len();
        loop {
            let p = Performative::Attach(attach.clone());
            if enc.amqp_frame_len(&p, 0).is_ok() || keep == 0 {
                return attach;
            }
            // 2.7.3: an incomplete map says so, and limits both sides to resumed deliveries.
            keep /= 2;
            let entries = link.resumable[..keep].iter().map(Resumable::record);
            attach.unsettled = Some(super::link::unsettled_map(entries));
            attach.incomplete_unsettled = true;
            link.local_incomplete = true;
        }
    }

    /// Receiver: grants `credit` (replacing what was granted), optionally asking the sender
    /// to use it all or say it has nothing (drain).
    pub fn flow(&mut self, link: LinkId, credit: u32, drain: bool) -> Result<(), UsageError> {
        let l = self.attached_as(link, Role::RECEIVER)?;
        l.link_credit = credit;
        l.drain = drain;
        // The limit is a serial number: a grant of 2^31 or more is as far ahead as one can
        // be told (while credit is left, transfers are taken anyway; see `on_transfer`).
        let limit = l.delivery_count.wrapping_add(credit.min(i32::MAX as u32));
        if l.credit_limit.precedes(limit) {
            l.credit_limit = limit;
        }
        self.send_link_flow(link, false);
        Ok(())
    }

    /// Sender: after a drain request, says it has nothing more: the remaining credit is
    /// used up by advancing delivery-count (2.6.7).
    pub fn drained(&mut self, link: LinkId) -> Result<(), UsageError> {
        let l = self.attached_as(link, Role::SENDER)?;
        l.delivery_count = l.delivery_count.wrapping_add(l.link_credit);
        l.link_credit = 0;
        self.send_link_flow(link, false);
        Ok(())
    }

    /// Sender: sends one delivery (a whole encoded message) with `tag`, split into transfer
    /// frames that fit the peer's max-frame-size. Returns its delivery-id.
    pub fn send(
        &mut self,
        link: LinkId,
        tag: Bytes,
        payload: &[u8],
        settled: bool,
    ) -> Result<SequenceNo, UsageError> {
        self.send_with(link, tag, payload.len(), settled, false, None, |enc, channel, t, out| {
            enc.encode_transfer(channel, t, payload, &mut out.head)
        })
    }

    /// Sender: resumes a delivery carried over from an earlier attachment of the link
    /// (2.6.13), by its tag: the whole message again (`payload`), or, when the peer already
    /// holds a terminal outcome, an empty payload with `settled` to settle it, `state`
    /// giving the outcome. The transfer carries `resume`; it uses credit like any other.
    pub fn resume(
        &mut self,
        link: LinkId,
        tag: Bytes,
        payload: &[u8],
        settled: bool,
        state: Option<DeliveryState>,
    ) -> Result<SequenceNo, UsageError> {
        let l = self.link_ref(link).ok_or(UsageError::UnknownLink)?;
        // 2.7.5: the sender MUST NOT send resumed transfers for deliveries not in its
        // local unsettled map.
        if !l.resumable.iter().any(|r| r.tag == tag) {
            return Err(UsageError::NotResumable);
        }
        self.send_with(link, tag, payload.len(), settled, true, state, |enc, channel, t, out| {
            enc.encode_transfer(channel, t, payload, &mut out.head)
        })
    }

    /// Drops a carried-over delivery without telling the peer: a sender whose peer has no
    /// record of it and that will not send it again, or a receiver giving up on it.
    pub fn forget(&mut self, link: LinkId, tag: &[u8]) -> Result<(), UsageError> {
        let l = self.link_mut(link).ok_or(UsageError::UnknownLink)?;
        let before = l.resumable.len();
        l.resumable.retain(|r| r.tag != tag);
        if l.resumable.len() == before {
            return Err(UsageError::NotResumable);
        }
        Ok(())
    }

    /// The deliveries carried over from an earlier attachment of the link that are neither
    /// resumed nor forgotten yet, each with what the peer's attach said of it.
    pub fn resumable(&self, link: LinkId) -> Vec<Resumable> {
        self.link_ref(link).map(|l| l.resumable.clone()).unwrap_or_default()
    }

    /// What a link named `name`, in `role`, left unsettled when it detached without
    /// closing, or when its session or the connection ended: the map to give
    /// [`LinkOptions::unsettled`] when attaching it again on a new connection.
    pub fn retained_unsettled(&self, name: &str, role: Role) -> Vec<UnsettledDelivery> {
        self.retained.get(&(name.to_owned(), role.0)).cloned().unwrap_or_default()
    }

    /// Sender: like [`Connection::send`] for a message encoded into a [`Payload`]; its
    /// referenced data sections stay referenced in the output, so with
    /// [`Connection::poll_transmit_chunks`] a large body reaches the transport uncopied.
    pub fn send_payload(
        &mut self,
        link: LinkId,
        tag: Bytes,
        payload: &Payload,
        settled: bool,
    ) -> Result<SequenceNo, UsageError> {
        self.send_with(link, tag, payload.len(), settled, false, None, |enc, channel, t, out| {
            enc.encode_payload_transfer(channel, t, payload, out)
        })
    }

    /// Sends one delivery: `resume` for a resumed one (2.6.13), `state` the transfer's
    /// delivery state (a resumed delivery's, or a transactional one's, 4.4.1).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_with(
        &mut self,
        link: LinkId,
        tag: Bytes,
        len: usize,
        settled: bool,
        resume: bool,
        state: Option<DeliveryState>,
        encode: impl FnOnce(
            &FrameEncoder,
            u16,
            &Transfer,
            &mut Payload,
        ) -> Result<usize, crate::frame::FrameTooLarge>,
    ) -> Result<SequenceNo, UsageError> {
        // 2.8.7 delivery-tag: "A delivery-tag may be up to 32 octets of binary data."
        if tag.len() > 32 {
            return Err(UsageError::InvalidDeliveryTag { len: tag.len() });
        }
        self.check_writable()?;
        let max = self.peer_max_frame_size;
        let layout = self.cfg.layout;
        let s = self.session_mut(link.session).ok_or(UsageError::UnknownSession)?;
        if matches!(s.state, SessionState::EndSent | SessionState::Discarding) {
            return Err(UsageError::SessionEnding);
        }
        let delivery_id = s.next_delivery_id;
        let remote_window = s.remote_incoming_window;
        let held_before = !s.held.is_empty();
        let l = s.link_by_id(link).ok_or(UsageError::UnknownLink)?;
        if l.role != Role::SENDER {
            return Err(UsageError::WrongRole);
        }
        if l.state != LinkState::Attached {
            return Err(UsageError::NotAttached);
        }
        if l.link_credit == 0 {
            return Err(UsageError::NoCredit);
        }
        // 2.5.6: the sender MUST NOT send more transfer frames than the peer's window. A
        // delivery that starts goes out as the window opens; the next one waits for it.
        // (A transaction's declare or discharge waits for every session's held work, which
        // it would otherwise overtake.)
        let coordinator = super::txn::is_coordinator(l.options.target.as_ref());
        if remote_window == 0
            || held_before
            || coordinator
                && self.sessions.iter().flatten().any(|s| s.held.iter().any(|f| f.transactional))
        {
            return Err(UsageError::SessionWindowFull);
        }
        let s = self.session_mut(link.session).ok_or(UsageError::UnknownSession)?;
        let l = s.link_by_id(link).ok_or(UsageError::UnknownLink)?;
        // 2.7.3: after an incomplete unsettled map a sender MUST NOT send new deliveries.
        if !resume && l.remote_incomplete {
            return Err(UsageError::ResumeOnly);
        }
        // 2.8.2: a settled sender sends only settled deliveries, an unsettled one none.
        match l.options.snd_settle_mode {
            SenderSettleMode::SETTLED if !settled => return Err(UsageError::SettleOrder),
            SenderSettleMode::UNSETTLED if settled => return Err(UsageError::SettleOrder),
            _ => {}
        }
        // 2.7.3: the peer's max-message-size bounds what we may send on the link.
        if let Some(max) = l.remote.as_ref().and_then(|a| a.max_message_size).filter(|m| *m > 0) {
            if len as u64 > max {
                return Err(UsageError::MessageTooLarge { size: len, max });
            }
        }
        let mut t = Transfer::new(link.handle);
        t.delivery_id = Some(delivery_id);
        t.delivery_tag = Some(tag.clone());
        t.message_format = Some(0);
        t.settled = Some(settled);
        t.resume = resume;
        t.state.clone_from(&state);
        // Encode straight into the output (no per-message allocation); the frames past
        // the peer's window are taken out of it again and held.
        let (start, start_inserts) = (self.out.head.len(), self.out.inserts.len());
        let enc = FrameEncoder { max_frame_size: max, layout };
        let undo = |out: &mut Payload| {
            out.head.truncate(start);
            out.inserts.truncate(start_inserts);
        };
        let frames = match encode(&enc, link.session.0, &t, &mut self.out) {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(_) => {
                undo(&mut self.out);
                return Err(UsageError::TooLarge);
            }
        };
        let mut held = VecDeque::new();
        let transactional = matches!(state, Some(DeliveryState::TransactionalState(_)));
        if frames > remote_window {
            // The frames past the window, each taken out of the output on its own (from the
            // last, so that each split moves one frame).
            let mut bounds = Vec::with_capacity((frames - remote_window) as usize);
            let mut at = self.out.after_frames(start, start_inserts, remote_window as usize);
            for _ in remote_window..frames {
                let Some((h, k)) = at else { break };
                bounds.push((h, k));
                at = self.out.after_frames(h, k, 1);
            }
            if at != Some((self.out.head.len(), self.out.inserts.len())) {
                // (Not so for the frames FrameEncoder writes.)
                undo(&mut self.out);
                return Err(UsageError::SessionWindowFull);
            }
            for (h, k) in bounds.into_iter().rev() {
                let bytes = self.out.split_off(h, k);
                let mut frame = HeldFrame::other(bytes);
                frame.transfer_of = Some(link);
                frame.transactional = transactional;
                held.push_front(frame);
            }
        }
        let sent = frames - held.len() as u32;
        let s = self.session_mut(link.session).ok_or(UsageError::UnknownSession)?;
        let l = s.link_by_id(link).ok_or(UsageError::UnknownLink)?;
        l.link_credit -= 1;
        l.delivery_count = l.delivery_count.next();
        if resume {
            l.resumable.retain(|r| r.tag != tag);
        }
        if !settled {
            l.unsettled.insert(delivery_id.0, Unsettled { tag, state });
        }
        let s = self.session_mut(link.session).ok_or(UsageError::UnknownSession)?;
        s.next_delivery_id = delivery_id.next();
        s.next_outgoing_id = s.next_outgoing_id.wrapping_add(sent);
        s.remote_incoming_window -= sent;
        s.held = held;
        self.account_out(start, start_inserts);
        Ok(delivery_id)
    }

    /// Sends what the peer's session window now takes of the session's held frames, in
    /// order: each transfer frame takes a unit of the window, the others follow freely.
    /// Drops them all once nothing may be written (our close, the connection's end, or the
    /// session discarding after a violation). Whether none are left.
    pub(super) fn release_held(&mut self, session: SessionId) -> bool {
        let writable = self.check_writable().is_ok();
        let Some(s) = self.session_mut(session) else { return true };
        if s.held.is_empty() {
            return true;
        }
        if !writable || !matches!(s.state, SessionState::Mapped | SessionState::EndSent) {
            s.held.clear();
            return true;
        }
        let (max, layout) = (self.peer_max_frame_size, self.cfg.layout);
        let Some(s) = self.session_mut(session) else { return true };
        let mut now = Payload::default();
        while let Some(f) = s.held.front() {
            if f.transfer_of.is_some() {
                if s.remote_incoming_window == 0 {
                    break;
                }
                s.remote_incoming_window -= 1;
                s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
            }
            let Some(f) = s.held.pop_front() else { break };
            match f.flow_of {
                // Written now, with the state as it is now (transfer-ids included).
                Some((link, echo)) => {
                    let Some(flow) = s.link_flow(link, echo) else { continue };
                    let enc = FrameEncoder { max_frame_size: max, layout };
                    let _ =
                        enc.encode_amqp(session.0, &Performative::Flow(flow), &[], &mut now.head);
                }
                None => now.append(f.bytes),
            }
        }
        let done = s.held.is_empty();
        let (start, start_inserts) = (self.out.head.len(), self.out.inserts.len());
        self.out.append(now);
        self.account_out(start, start_inserts);
        done
    }

    /// Holds a frame written on `channel` behind the session's held transfer frames, if it
    /// has any: a disposition, detach or end must not overtake the delivery it follows
    /// (and an attach the detach of its handle). A flow goes at once (it says the state as
    /// it is), but a link's flow whose attach is held waits behind it, to be written when
    /// it goes. Whether it was held.
    pub(super) fn hold_behind(&mut self, channel: u16, p: &Performative, frame: &[u8]) -> bool {
        // Most frames go when nothing is held: ask that first, before any id lookups.
        let holds = self.sessions.get(usize::from(channel)).and_then(Option::as_ref);
        if holds.is_none_or(|s| s.held.is_empty()) {
            return false;
        }
        let session = self.sid(channel);
        let link = match p {
            Performative::Flow(f) => f.handle.map(|h| self.id_at(session, h.0)),
            _ => None,
        };
        let Some(s) = self.session_mut(session) else { return false };
        if s.held.is_empty() {
            return false;
        }
        let mut held = HeldFrame::other(Payload::default());
        match p {
            Performative::Flow(f) => {
                let Some(link) = link else { return false };
                if !s.held.iter().any(|h| h.attach_of == Some(link.handle.0)) {
                    return false;
                }
                held.flow_of = Some((link, f.echo));
            }
            Performative::Attach(a) => {
                held.attach_of = Some(a.handle.0);
                held.bytes.head = frame.to_vec();
            }
            _ => held.bytes.head = frame.to_vec(),
        }
        s.held.push_back(held);
        true
    }

    /// Settles or updates deliveries `first..=last` on a link, in our role.
    pub fn disposition(
        &mut self,
        link: LinkId,
        first: SequenceNo,
        last: Option<SequenceNo>,
        settled: bool,
        state: Option<DeliveryState>,
    ) -> Result<(), UsageError> {
        let l = self.command_link(link)?;
        // After our detach the peer has let the link's deliveries go (a closing detach) or
        // keeps them for a later attachment to settle (2.6.13): a disposition now would
        // be taken for settled here and mean nothing there.
        if l.state == LinkState::DetachSent {
            return Err(UsageError::DetachSent);
        }
        let role = l.role;
        let d = Disposition { role, first, last, settled, state: state.clone(), batchable: false };
        let d = Performative::Disposition(d);
        self.fits(&d)?;
        let l = self.command_link(link)?;
        // 3.x rcv-settle-mode second: the receiver settles only after the sender has; its
        // first disposition carries the outcome unsettled.
        if settled && role == Role::RECEIVER && l.rcv_settle_mode() == ReceiverSettleMode::SECOND {
            let pending = l.unsettled.ids_in(first, last.unwrap_or(first));
            if !pending.is_empty() {
                return Err(UsageError::SettleOrder);
            }
        }
        if settled {
            for id in l.unsettled.ids_in(first, last.unwrap_or(first)) {
                l.unsettled.remove(id);
            }
        } else {
            // Kept for the link's unsettled map, should it be re-attached.
            for id in l.unsettled.ids_in(first, last.unwrap_or(first)) {
                if let Some(u) = l.unsettled.get_mut(id) {
                    u.state.clone_from(&state);
                }
            }
        }
        self.send_performative(link.session.0, d);
        Ok(())
    }

    /// Detaches a link (closing it when `closed`), with an error or without.
    pub fn detach(
        &mut self,
        link: LinkId,
        closed: bool,
        error: Option<Error>,
    ) -> Result<(), UsageError> {
        let l = self.command_link(link)?;
        if l.state == LinkState::DetachSent {
            return Err(UsageError::DetachSent);
        }
        let detach = Performative::Detach(Detach { handle: link.handle, closed, error });
        self.detach_fits(link, &detach)?;
        self.attach_unanswered(link, closed);
        if let Some(l) = self.link_mut(link) {
            l.state = LinkState::DetachSent;
        }
        self.send_performative(link.session.0, detach);
        Ok(())
    }

    /// Our attach refusing a link the peer attached and the application has not answered
    /// (a null source or target, 2.6.3; no unsettled map, since nothing is resumed on a
    /// link refused); `None` for a link in any other state.
    fn refusal_attach(&self, link: LinkId) -> Option<Attach> {
        let l = self.link_ref(link).filter(|l| l.state == LinkState::AttachRcvd)?;
        let mut attach = l.attach(link.handle);
        if l.role == Role::RECEIVER {
            attach.target = None;
        } else {
            attach.source = None;
        }
        attach.unsettled = None;
        attach.incomplete_unsettled = false;
        Some(attach)
    }

    /// Whether the refusal attach of `link` (if it needs one) and `detach` fit the peer's
    /// max-frame-size: a command checks both before it changes anything.
    fn detach_fits(&self, link: LinkId, detach: &Performative) -> Result<(), UsageError> {
        if let Some(attach) = self.refusal_attach(link) {
            self.fits(&Performative::Attach(attach))?;
        }
        self.fits(detach)
    }

    /// A link the peer attached and the application has not answered yet has no handle
    /// of ours the peer knows, so a detach alone would name an unattached handle (which
    /// ends the peer's whole session, 2.6.2): our attach goes first, with a null source
    /// or target as a refusal's (2.6.3). Nothing for a link in any other state.
    fn attach_unanswered(&mut self, link: LinkId, closing: bool) {
        let Some(attach) = self.refusal_attach(link) else { return };
        let Some(l) = self.link_mut(link) else { return };
        l.refused = true;
        // What the link's name had left unsettled (taken for the answer it did not get)
        // stays kept for the name, unless the link is being closed by the peer's detach
        // or the application's, which forgets it (2.6.13); a refusal keeps it.
        let kept = std::mem::take(&mut l.options.unsettled);
        let key = (l.name.clone(), l.role.0);
        if closing {
            self.retained.remove(&key);
        } else if !kept.is_empty() {
            self.retained.insert(key, kept);
        }
        self.send_performative(link.session.0, Performative::Attach(attach));
    }

    /// Sender: tells the receiver how many messages wait to be sent (the flow's
    /// `available`, 2.6.7); a hint, it grants nothing.
    pub fn set_available(&mut self, link: LinkId, available: u32) -> Result<(), UsageError> {
        let l = self.attached_as(link, Role::SENDER)?;
        l.available = available;
        self.send_link_flow(link, false);
        Ok(())
    }

    /// Either role: sends our link flow state with `echo` set, asking the peer for its own
    /// (2.7.4); the answer arrives as [`Event::Credit`].
    pub fn request_flow(&mut self, link: LinkId) -> Result<(), UsageError> {
        let l = self.command_link(link)?;
        if l.state != LinkState::Attached {
            return Err(UsageError::NotAttached);
        }
        self.send_link_flow(link, true);
        Ok(())
    }

    /// A link's credit as this side sees it.
    pub fn link_credit(&self, link: LinkId) -> Option<u32> {
        self.link_ref(link).map(|l| l.link_credit)
    }

    /// A link's delivery-count as this side knows it (2.6.7): a sender's own; a receiver's,
    /// the sender's count at attach, advanced by each delivery that arrived and by the
    /// sender's flows. With [`Connection::link_credit`] it gives the limit the sender
    /// may send up to: their sum.
    pub fn link_delivery_count(&self, link: LinkId) -> Option<SequenceNo> {
        self.link_ref(link).map(|l| l.delivery_count)
    }

    /// Whether a receiving link is in the middle of a delivery: its first transfer came
    /// (and took a credit), its last has not.
    pub fn link_delivery_in_progress(&self, link: LinkId) -> Option<bool> {
        self.link_ref(link).map(|l| l.incoming.is_some())
    }

    /// Whether the peer's last flow on a link asked to drain (senders: use the credit or
    /// give it up with [`Connection::drained`]).
    pub fn link_drain(&self, link: LinkId) -> Option<bool> {
        self.link_ref(link).map(|l| l.drain)
    }

    /// How many messages the sender says wait to be sent (receivers: the sender's last
    /// `available`; senders: what we last announced).
    pub fn link_available(&self, link: LinkId) -> Option<u32> {
        self.link_ref(link).map(|l| l.available)
    }

    /// A link's state (`None` once detached).
    pub fn link_state(&self, link: LinkId) -> Option<LinkState> {
        self.link_ref(link).map(|l| l.state)
    }

    /// The delivery-ids of a link's unsettled deliveries.
    pub fn unsettled(&self, link: LinkId) -> Vec<SequenceNo> {
        self.link_ref(link).map(|l| l.unsettled.ids().map(SequenceNo).collect()).unwrap_or_default()
    }

    // ----- incoming -----

    /// A frame for a link of the session on our `channel`.
    pub(super) fn on_link_frame(&mut self, channel: u16, p: Performative, payload: Bytes) {
        let session = self.sid(channel);
        match p {
            Performative::Attach(a) => self.on_attach(session, a),
            Performative::Detach(d) => self.on_detach(session, d),
            Performative::Flow(f) => self.on_link_flow(session, f),
            Performative::Transfer(t) => self.on_transfer(session, t, payload),
            Performative::Disposition(d) => self.on_disposition(session, d),
            _ => {}
        }
    }

    fn on_attach(&mut self, session: SessionId, a: Attach) {
        let Some(s) = self.session_mut(session) else { return };
        // 2.7.2: handles stay within the handle-max we announced in begin.
        if a.handle.0 > s.handle_max {
            let max = s.handle_max;
            return self.scoped(
                session,
                None,
                Violation::HandleMaxExceeded { handle: a.handle.0, max },
            );
        }
        if s.remote_handles.contains_key(&a.handle.0) {
            return self.scoped(session, None, Violation::HandleInUse(a.handle.0));
        }
        // The answer to an attach of ours that we detached before it came: our detach
        // crossed it, and the peer's detach follows. It names the link's remote handle so
        // that detach ends it; taken as a new attach instead, it would be answered, and
        // each side would take the other's late answers for new links, without end.
        let crossed = s.links.iter().position(|l| {
            l.as_ref().is_some_and(|l| {
                l.state == LinkState::DetachSent
                    && l.remote_handle.is_none()
                    && l.name == *a.name
                    && l.role != a.role
            })
        });
        if let Some(h) = crossed {
            s.remote_handles.insert(a.handle.0, h as u32);
            if let Some(l) = s.link_mut(h as u32) {
                l.remote_handle = Some(a.handle);
                l.remote = Some(a);
            }
            return;
        }
        // The answer to our attach: same name, the other role.
        let ours = s.links.iter().position(|l| {
            l.as_ref().is_some_and(|l| {
                l.state == LinkState::AttachSent && l.name == *a.name && l.role != a.role
            })
        });
        let (handle, by_peer) = match ours {
            Some(h) => (h as u32, false),
            None => {
                let Some(h) = s.free_handle() else {
                    return self.scoped(session, None, Violation::HandleInUse(a.handle.0));
                };
                let mut options = Link::answering(&a);
                options.unsettled = self.retained_take(&options.name, options.role);
                // A link to our transaction coordinator is answered by the engine.
                let control = self.coordinator_answer(&mut options);
                let mut link = Link::new(options, LinkState::AttachSent);
                link.control = control;
                link.serial = self.next_link_serial();
                let Some(s) = self.session_mut(session) else { return };
                s.put_link(h, link);
                (h, true)
            }
        };
        let Some(s) = self.session_mut(session) else { return };
        s.remote_handles.insert(a.handle.0, handle);
        let remote_map = a.unsettled.as_ref().map(read_unsettled_map).transpose();
        let accept_links = self.cfg.accept_links;
        let Some(s) = self.session_mut(session) else { return };
        let Some(l) = s.link_mut(handle) else { return };
        let ask = by_peer && !accept_links && !l.control;
        let control = l.control;
        // Answered by the engine, a link that asks for a dynamic node would name none (3.5.3:
        // the node's address is in the answer): it is refused.
        let refuse = by_peer && !ask && !control && needs_a_node(&a);
        l.remote_handle = Some(a.handle);
        l.state = if ask || refuse { LinkState::AttachRcvd } else { LinkState::Attached };
        if l.role == Role::RECEIVER {
            // 2.6.7: the receiver starts counting from the sender's initial-delivery-count.
            l.delivery_count = a.initial_delivery_count.unwrap_or_default();
            l.credit_limit = l.delivery_count;
        }
        let bad_map = match &remote_map {
            Ok(map) => {
                l.on_remote_unsettled(map.as_deref().unwrap_or(&[]), a.incomplete_unsettled);
                None
            }
            Err(why) => Some(why.clone()),
        };
        l.remote = Some(a.clone());
        let link = LinkId::new(session, handle, l.serial);
        if refuse {
            let why = "amqpwire's automatic link acceptance makes no dynamic nodes: the \
                       application answers such links";
            let _ = self.refuse_attach(link, Error::new("amqp:not-implemented", why));
            return;
        }
        if by_peer && !ask {
            self.answer_attach(link);
            if control {
                self.control_credit(link);
            }
        }
        if ask {
            self.events.push_back(Event::AttachRequested { link, remote: Box::new(a) });
        } else {
            self.events.push_back(Event::LinkAttached { link, by_peer, remote: Box::new(a) });
        }
        if let Some(why) = bad_map {
            self.scoped(session, Some(link), Violation::BadUnsettledMap(why));
        }
    }

    /// Sends our attach for a link the peer attached.
    fn answer_attach(&mut self, link: LinkId) {
        let Some(mut l) = self.session_mut(link.session).and_then(|s| s.take_link(link.handle.0))
        else {
            return;
        };
        let attach = self.fitted_attach(&mut l, link.handle);
        if let Some(s) = self.session_mut(link.session) {
            s.put_link(link.handle.0, l);
        }
        self.send_performative(link.session.0, Performative::Attach(attach));
    }

    /// Accepts a link the peer attached (with [`Config::accept_links`](super::Config) off),
    /// answering with `options` (the mirrored role and the peer's termini by default).
    pub fn accept_attach(
        &mut self,
        link: LinkId,
        options: Option<LinkOptions>,
    ) -> Result<(), UsageError> {
        let l = self.command_link(link)?;
        if l.state != LinkState::AttachRcvd {
            return Err(UsageError::NotAttached);
        }
        if let Some(mut o) = options {
            if o.unsettled.is_empty() {
                o.unsettled = l.options.unsettled.clone();
            } else {
                // The application's own record of the link: weigh it against the peer's.
                l.resumable = o.unsettled.iter().map(Resumable::carried).collect();
                let remote = l.remote.as_ref();
                let map = remote.and_then(|a| a.unsettled.as_ref()).map(read_unsettled_map);
                let incomplete = remote.is_some_and(|a| a.incomplete_unsettled);
                // A malformed map has already detached the link.
                l.on_remote_unsettled(&map.and_then(Result::ok).unwrap_or_default(), incomplete);
            }
            l.options = o;
            l.role = l.options.role;
        }
        l.state = LinkState::Attached;
        self.answer_attach(link);
        Ok(())
    }

    /// Refuses a link the peer attached: 2.6.3 has the refusing side attach with a null
    /// source or target and then detach, closed, with the error.
    pub fn refuse_attach(&mut self, link: LinkId, error: Error) -> Result<(), UsageError> {
        let l = self.command_link(link)?;
        if l.state != LinkState::AttachRcvd {
            return Err(UsageError::NotAttached);
        }
        let detach = Detach { handle: link.handle, closed: true, error: Some(error) };
        let detach = Performative::Detach(detach);
        self.detach_fits(link, &detach)?;
        self.attach_unanswered(link, false);
        if let Some(l) = self.link_mut(link) {
            l.state = LinkState::DetachSent;
        }
        self.send_performative(link.session.0, detach);
        Ok(())
    }

    fn on_detach(&mut self, session: SessionId, d: Detach) {
        let Some(handle) = self.local_handle(session, d.handle.0, "detach") else { return };
        let link = self.id_at(session, handle);
        let by_peer = self
            .session_mut(session)
            .and_then(|s| s.link_mut(handle))
            .is_some_and(|l| l.state != LinkState::DetachSent);
        if by_peer {
            // Detached before the application answered: our attach, then the answer.
            self.attach_unanswered(link, d.closed);
        }
        let Some(s) = self.session_mut(session) else { return };
        s.remote_handles.remove(&d.handle.0);
        // The peer has gone from the link: the rest of a delivery held for its window
        // would be for a handle it no longer knows.
        s.held.retain(|f| f.transfer_of != Some(link));
        let gone = s.take_link(handle);
        if let Some(l) = gone.filter(|l| !l.refused) {
            self.retain(&l, d.closed);
        }
        if by_peer {
            // 2.6.5: answer the peer's detach in kind.
            let answer = Detach { handle: Handle(handle), closed: d.closed, error: None };
            self.send_performative(session.0, Performative::Detach(answer));
        }
        // What the dropped transfer frames held back goes now.
        self.release_held_and_tell(session);
        self.push_ending(Event::LinkDetached { link, closed: d.closed, error: d.error, by_peer });
    }

    /// [`Connection::release_held`], and [`Event::SessionWindow`] if that cleared what the
    /// session held.
    pub(super) fn release_held_and_tell(&mut self, session: SessionId) {
        let held = self.session_ref(session).is_some_and(|s| !s.held.is_empty());
        if held && self.release_held(session) {
            let window = self.session_ref(session).map_or(0, |s| s.remote_incoming_window);
            self.events.push_back(Event::SessionWindow { session, remote_incoming_window: window });
        }
    }

    fn on_link_flow(&mut self, session: SessionId, f: Flow) {
        let Some(handle) = f.handle else { return };
        let Some(local) = self.local_handle(session, handle.0, "flow") else { return };
        let link = self.id_at(session, local);
        // 4.4.3: transactional acquisition asks with a `txn-id` in the flow's properties;
        // our coordinator does not offer it, so the link is refused it clearly.
        let acquisition = f.properties.as_ref().is_some_and(|p| p.get("txn-id").is_some());
        if acquisition && self.txn.is_some() {
            let v = Violation::TransactionWork {
                condition: crate::types::condition::NOT_IMPLEMENTED,
                why: "transactional acquisition (a flow with a txn-id) is not supported".into(),
            };
            return self.scoped(session, Some(link), v);
        }
        let Some(l) = self.link_mut(link) else { return };
        if l.role == Role::SENDER {
            // 2.6.7: link-credit(snd) := delivery-count(rcv) + link-credit(rcv) - delivery-count(snd).
            // When flows cross (our drain or sends in flight), the receiver's count lags
            // ours and the difference is negative: that means no credit, not 4 billion.
            // Only delivery-counts are serial numbers (RFC 1982): link-credit is a plain
            // uint, so a grant of 2^31 or more is taken as it is, less how far the
            // receiver's count lags ours.
            let rcv_count = f.delivery_count.unwrap_or_default();
            let lag = l.delivery_count.0.wrapping_sub(rcv_count.0) as i32;
            let credit = i64::from(f.link_credit.unwrap_or(0)) - i64::from(lag);
            l.link_credit = u32::try_from(credit.max(0)).unwrap_or(u32::MAX);
            l.drain = f.drain;
        } else {
            // The sender's view: its delivery-count may have advanced (a drain used the
            // credit up). A stale count (behind ours) changes nothing.
            if let Some(count) = f.delivery_count {
                let used_up = l.delivery_count.wrapping_add(l.link_credit);
                if l.drain && f.link_credit == Some(0) && count == used_up {
                    // Our drain answered (2.6.7): the sender used up the credit we left,
                    // however far that moved its delivery-count (a grant of 2^31 or more
                    // is past what serial numbers can compare). A flow of the sender's
                    // that crossed our grant says otherwise, and is taken below.
                    l.delivery_count = count;
                    l.link_credit = 0;
                } else if l.delivery_count.precedes(count) {
                    let advanced = l.delivery_count.distance_to(count);
                    l.delivery_count = count;
                    l.link_credit = l.link_credit.saturating_sub(advanced);
                }
            }
            l.available = f.available.unwrap_or(0);
        }
        let (credit, drain) = (l.link_credit, l.drain);
        self.events.push_back(Event::Credit { link, credit, drain });
        if f.echo {
            self.send_link_flow(link, false);
        }
    }

    fn on_transfer(&mut self, session: SessionId, t: Transfer, payload: Bytes) {
        let guard = self.cfg.max_message_size;
        let max_held = self.cfg.max_incoming_held;
        let Some(local) = self.local_handle(session, t.handle.0, "transfer") else { return };
        let link = self.id_at(session, local);
        // A delivery that starts here and goes on past this frame takes its part in what
        // the connection's partial deliveries hold (one in a single frame holds nothing
        // for long, and costs the accounting nothing).
        let held = (t.more && self.link_ref(link).is_some_and(|l| l.incoming.is_none()))
            .then(|| self.incoming_held.part());
        let Some(s) = self.session_mut(session) else { return };
        // 2.5.6: each transfer frame uses one unit of our incoming-window.
        if s.incoming_window == 0 {
            return self.scoped(session, None, Violation::WindowViolation);
        }
        s.incoming_window -= 1;
        s.next_incoming_id = Some(s.next_incoming_id.unwrap_or_default().next());
        // At or below half (so that a window of one is re-advertised too).
        let low = s.max_incoming_window > 0 && s.incoming_window <= s.max_incoming_window / 2;
        if low {
            // Re-advertise the window before it runs out, so a long run never stalls.
            s.incoming_window = s.max_incoming_window;
            let flow = s.flow(false);
            self.send_performative(session.0, Performative::Flow(flow));
        }
        let Some(l) = self.link_mut(link) else { return };
        if l.state == LinkState::DetachSent {
            // Sent before our detach (or refusal) reached the peer: the link is going,
            // and what it carried is dropped with it, not held against the peer.
            return;
        }
        if l.role != Role::RECEIVER {
            return self.scoped(session, Some(link), Violation::TransferToSender);
        }
        match l.incoming.as_mut() {
            None => {
                let Some(delivery_id) = t.delivery_id else {
                    return self.scoped(session, Some(link), Violation::MissingDeliveryId);
                };
                // 2.6.7: a transfer needs credit. One sent under credit we have since
                // lowered is still in good faith; one beyond every grant is not.
                // (Credit left is a grant too: a grant of 2^31 or more is past what the
                // serial limit can tell.)
                if l.link_credit == 0 && !l.delivery_count.precedes(l.credit_limit) {
                    return self.scoped(session, Some(link), Violation::TransferLimitExceeded);
                }
                // 2.7.3: a receiver that sent an incomplete unsettled map takes only
                // resumed deliveries.
                if !t.resume && l.local_incomplete {
                    return self.scoped(session, Some(link), Violation::NewDeliveryDuringResume);
                }
                l.link_credit = l.link_credit.saturating_sub(1);
                l.delivery_count = l.delivery_count.next();
                let tag = t.delivery_tag.clone().unwrap_or_default();
                // 2.7.5: the receiver MUST ignore resumed deliveries that are not in its
                // local unsettled map.
                let ignored = t.resume && !l.resumable.iter().any(|r| r.tag == tag);
                l.incoming = Some(Incoming {
                    delivery_id,
                    tag,
                    settled: t.settled.unwrap_or(false),
                    first: Bytes::new(),
                    joined: bytes::BytesMut::new(),
                    resumed: t.resume,
                    ignored,
                    state: t.state.clone(),
                    held,
                });
            }
            Some(inc) => {
                if let Some(id) = t.delivery_id.filter(|id| *id != inc.delivery_id) {
                    let v =
                        Violation::DeliveryIdChanged { expected: inc.delivery_id.0, found: id.0 };
                    return self.scoped(session, Some(link), v);
                }
                inc.settled |= t.settled.unwrap_or(false);
            }
        }
        // Our advertised limit, or else the connection's guard against endless
        // continuations (never more than what is held in memory for one delivery).
        let max = l.options.max_message_size.filter(|m| *m > 0).or(Some(guard));
        let Some(inc) = l.incoming.as_mut() else { return };
        if t.aborted {
            let delivery_id = inc.delivery_id;
            l.incoming = None;
            self.events.push_back(Event::Aborted { link, delivery_id });
            return;
        }
        inc.add(payload, t.more);
        let size = inc.len();
        if let Some(max) = max.filter(|m| size as u64 > *m) {
            l.incoming = None;
            return self.scoped(session, Some(link), Violation::MessageSizeExceeded { size, max });
        }
        if t.more {
            let held = inc.held.as_ref().map_or(0, HeldPart::total);
            if held > max_held {
                l.incoming = None;
                let v = Violation::IncomingHeldExceeded { held, max: max_held };
                return self.scoped(session, Some(link), v);
            }
            return;
        }
        let Some(mut inc) = l.incoming.take() else { return };
        if inc.ignored {
            return;
        }
        let body = inc.take_payload();
        let mut state = None;
        if inc.resumed {
            let at = l.resumable.iter().position(|r| r.tag == inc.tag);
            state = at.and_then(|i| l.resumable.remove(i).local);
        }
        if !inc.settled {
            let u = Unsettled { tag: inc.tag.clone(), state: state.clone() };
            l.unsettled.insert(inc.delivery_id.0, u);
        }
        if l.control {
            return self.on_control(link, inc.delivery_id, inc.settled, &body);
        }
        let state = t.state.or(inc.state.take());
        if !inc.resumed && !self.txn_transfer(link, inc.delivery_id, inc.settled, state.as_ref()) {
            return;
        }
        if inc.resumed {
            self.events.push_back(Event::Resumed {
                link,
                delivery_id: inc.delivery_id,
                tag: inc.tag,
                payload: body,
                settled: inc.settled,
                state,
            });
            return;
        }
        self.events.push_back(Event::Delivery {
            link,
            delivery_id: inc.delivery_id,
            tag: inc.tag,
            payload: body,
            settled: inc.settled,
            state,
        });
    }

    fn on_disposition(&mut self, session: SessionId, d: Disposition) {
        let last = d.last.unwrap_or(d.first);
        let Some(s) = self.session_mut(session) else { return };
        let mut hits = Vec::new();
        for (h, l) in s.links.iter_mut().enumerate() {
            let Some(l) = l.as_mut() else { continue };
            // A disposition from the peer's role concerns our links of the other role.
            if l.role == d.role {
                continue;
            }
            for id in l.unsettled.ids_in(d.first, last) {
                // Only our senders' deliveries can be retired in a transaction (4.4.2).
                let prior = if l.role == Role::SENDER {
                    l.unsettled.get(id).and_then(|u| u.state.clone())
                } else {
                    None
                };
                if d.settled {
                    l.unsettled.remove(id);
                } else if let Some(u) = l.unsettled.get_mut(id) {
                    u.state = d.state.clone();
                }
                hits.push((h as u32, id, l.role == Role::SENDER, prior));
            }
        }
        for (h, id, ours, prior) in hits {
            let link = self.id_at(session, h);
            if ours {
                if let Err(v) = self.txn_disposition(prior.as_ref(), d.state.as_ref()) {
                    if self.link_ref(link).is_some_and(|l| l.state == LinkState::Attached) {
                        self.scoped(session, Some(link), v);
                    }
                    continue;
                }
            }
            self.events.push_back(Event::Disposition {
                link,
                delivery_id: SequenceNo(id),
                settled: d.settled,
                state: d.state.clone(),
            });
        }
    }

    // ----- helpers -----

    /// Keeps what a link leaves unsettled when it goes without closing (2.6.13: the
    /// endpoint's state outlives the attachment), and forgets it when it closes.
    pub(super) fn retain(&mut self, l: &Link, closed: bool) {
        let key = (l.name.clone(), l.role.0);
        let left = l.unsettled_deliveries();
        if closed || left.is_empty() {
            self.retained.remove(&key);
        } else if self.retained.contains_key(&key) || self.retained.len() < self.cfg.retained_links
        {
            self.retained.insert(key, left);
        }
        // Beyond `retained_links` names, what a new one leaves is forgotten: the peer picks
        // link names, and must not grow this map without end.
    }

    fn retained_take(&mut self, name: &str, role: Role) -> Vec<UnsettledDelivery> {
        self.retained.remove(&(name.to_owned(), role.0)).unwrap_or_default()
    }

    pub(super) fn link_ref(&self, link: LinkId) -> Option<&Link> {
        self.sessions
            .get(usize::from(link.session.0))
            .and_then(Option::as_ref)
            .and_then(|s| s.links.get(link.handle.0 as usize))
            .and_then(Option::as_ref)
            .filter(|l| l.serial == link.serial())
    }

    /// The id of the link now on our `handle` of `session`.
    fn id_at(&self, session: SessionId, handle: u32) -> LinkId {
        let serial = self
            .sessions
            .get(usize::from(session.0))
            .and_then(Option::as_ref)
            .and_then(|s| s.links.get(handle as usize))
            .and_then(Option::as_ref)
            .map_or(0, |l| l.serial);
        LinkId::new(session, handle, serial)
    }

    fn next_link_serial(&mut self) -> u32 {
        // 32 bits, counted round (0 is skipped: it names no link).
        self.link_serial = self.link_serial.checked_add(1).unwrap_or(1);
        self.link_serial
    }

    /// An attached link of ours in `role`, for a command only that role may give.
    fn attached_as(&mut self, link: LinkId, role: Role) -> Result<&mut Link, UsageError> {
        let l = self.command_link(link)?;
        if l.role != role {
            return Err(UsageError::WrongRole);
        }
        if l.state != LinkState::Attached {
            return Err(UsageError::NotAttached);
        }
        Ok(l)
    }

    /// A link of ours for a command that sends a frame on it. After our end the session
    /// sends nothing more (2.5: the peer unmaps the channel at our end, so a later frame on
    /// it is an error of the whole connection); its links end with it.
    fn command_link(&mut self, link: LinkId) -> Result<&mut Link, UsageError> {
        self.check_writable()?;
        let s = self.session_mut(link.session).ok_or(UsageError::UnknownLink)?;
        if matches!(s.state, SessionState::EndSent | SessionState::Discarding) {
            return Err(UsageError::SessionEnding);
        }
        s.link_by_id(link).ok_or(UsageError::UnknownLink)
    }

    fn link_mut(&mut self, link: LinkId) -> Option<&mut Link> {
        self.session_mut(link.session).and_then(|s| s.link_by_id(link))
    }

    /// Our handle for the peer's; a frame for an unknown handle ends the session (2.6.2).
    fn local_handle(
        &mut self,
        session: SessionId,
        remote: u32,
        performative: &'static str,
    ) -> Option<u32> {
        let local = self.session_mut(session).and_then(|s| s.remote_handles.get(&remote).copied());
        if local.is_none() {
            self.scoped(
                session,
                None,
                Violation::UnattachedHandle { handle: remote, performative },
            );
        }
        local
    }

    /// Ends the scope a violation belongs to: the link (detach), the session (end) or the
    /// connection (close).
    pub(super) fn scoped(&mut self, session: SessionId, link: Option<LinkId>, v: Violation) {
        match (v.scope(), link) {
            (Scope::Link, Some(link)) => {
                let handle = link.handle;
                let error = self.fitted_error_in(v.to_error(), |e| {
                    Performative::Detach(Detach { handle, closed: true, error: Some(e) })
                });
                self.attach_unanswered(link, false);
                if let Some(l) = self.link_mut(link) {
                    l.state = LinkState::DetachSent;
                    l.incoming = None;
                }
                let detach =
                    Detach { handle: link.handle, closed: true, error: Some(error.clone()) };
                self.send_performative(session.0, Performative::Detach(detach));
                self.push_ending(Event::LinkError { link, violation: v });
            }
            (Scope::Session | Scope::Link, _) => {
                let error = self
                    .fitted_error_in(v.to_error(), |e| Performative::End(Session::end(Some(e))));
                if self.session_ref(session).is_some_and(|s| {
                    matches!(s.state, SessionState::EndSent | SessionState::Discarding)
                }) {
                    // Our end is written already: nothing more goes on the session.
                    self.push_ending(Event::SessionError { session, violation: v });
                    return;
                }
                if let Some(s) = self.session_mut(session) {
                    s.state = SessionState::Discarding;
                    s.error = Some(error.clone());
                    // Nothing more goes on it: what it held for the peer's window neither.
                    s.held.clear();
                }
                self.send_performative(session.0, Performative::End(Session::end(Some(error))));
                self.push_ending(Event::SessionError { session, violation: v });
            }
            (Scope::Connection, _) => self.violation(v),
        }
    }

    fn send_link_flow(&mut self, link: LinkId, echo: bool) {
        let Some(f) = self.session_mut(link.session).and_then(|s| s.link_flow(link, echo)) else {
            return;
        };
        self.send_performative(link.session.0, Performative::Flow(f));
    }

    /// Accounts for frames just added to the output from head offset `start` (and insert
    /// `start_inserts`): stream offsets, the keepalive timer, and the trace (each frame,
    /// when tracing is on).
    fn account_out(&mut self, start: usize, start_inserts: usize) {
        let added_inserts: usize =
            self.out.inserts[start_inserts..].iter().map(|(_, b)| b.len()).sum();
        let added = self.out.head.len() - start + added_inserts;
        if self.cfg.trace.is_some() {
            // Only when tracing: gather the new bytes in order, then trace frame by frame.
            let mut bytes = Vec::with_capacity(added);
            let mut at = start;
            for (pos, b) in &self.out.inserts[start_inserts..] {
                bytes.extend_from_slice(&self.out.head[at..*pos]);
                bytes.extend_from_slice(b);
                at = *pos;
            }
            bytes.extend_from_slice(&self.out.head[at..]);
            let mut d = crate::frame::FrameDecoder::new(u32::MAX).frames_first();
            d.push(&bytes);
            let mut off = 0usize;
            while let Ok(Some(crate::frame::StreamItem::Frame(raw))) = d.next_item() {
                let len = raw.bytes.len();
                if let Ok(frame) = raw.decode(crate::codec::DecodeOptions::STRICT) {
                    self.trace_out(&bytes[off..off + len], &frame);
                }
                self.out_offset += len as u64;
                off += len;
            }
        } else {
            self.out_offset += added as u64;
        }
        self.arm_keepalive();
    }
}

/// Whether answering the peer's `attach` needs a node made for it: a dynamic terminus on
/// our side (the source we send from, the target we receive at).
fn needs_a_node(a: &Attach) -> bool {
    if a.role == Role::RECEIVER {
        matches!(&a.source, Some(AttachSource::Source(s)) if s.dynamic)
    } else {
        matches!(&a.target, Some(AttachTarget::Target(t)) if t.dynamic)
    }
}

//! The stateful engine target: a client and a server [`Connection`] joined in memory and
//! driven by a sequence of commands the fuzzer chooses (begin, attach, flow, send,
//! disposition, drained, detach, end, close, and the recovery of a link detached without
//! closing: attach again under its name, resume or forget what it carried over), of the
//! sizes in which bytes cross the wire,
//! and of steps of virtual time, with adversarial bytes fed into either side at chosen
//! points. The quinn style: structure-aware operation sequences over a sans-IO machine.
//!
//! Checked after every step: nothing panics, and what either side writes stays bounded.
//! Whenever both sides have read everything the other wrote, and as long as only the two
//! engines wrote the bytes: on every link attached at both ends, the receiver has every
//! delivery the sender sent, once and in order; both ends agree on the link's credit; the
//! sender sees each unsettled delivery settled at most once, and only those it sent
//! unsettled; the receiver hears of each resumed delivery at most once, in the order it was
//! resumed, and of every one it carried over itself and did not forget. On every session
//! mapped at both ends, each end's next-outgoing-id is the other's next-incoming-id and each
//! end's view of the other's windows is the other's own (2.5.6). At the end a close from
//! the client ends both connections cleanly.
//!
//! The server's engine runs a transaction coordinator (part 4): the client attaches
//! controllers, declares and discharges (real ids and made-up ones), and sends work in
//! transactions. Checked too: every control message is answered exactly once; work refused
//! by the coordinator never reaches the application; the work a transaction's end reports
//! is the work the application was handed for it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::time::Instant;

use arbitrary::Unstructured;
use bytes::Bytes;

use crate::connection::txn::{declare_message, discharge_message, LOCAL_TRANSACTIONS};
use crate::connection::{
    Config, Connection, CoordinatorConfig, Event, LinkId, LinkOptions, SessionId,
};
use crate::types::{Accepted, DeliveryState, Modified, Rejected, Released, SequenceNo};

/// One link as both ends know it, and what crossed it.
#[derive(Debug, Default)]
struct Link {
    /// Its name: an attach under the same name later recovers it.
    name: String,
    /// The client's end and its role (true: the client sends).
    client: Option<LinkId>,
    client_sends: bool,
    /// The server's end, once its attach arrived there.
    server: Option<LinkId>,
    /// The server's answer reached the client.
    answered: bool,
    /// Either end detached it (or its session ended).
    dead: bool,
    /// Its end is gone at the client, and at the server: only then may its name attach
    /// again.
    client_gone: bool,
    server_gone: bool,
    /// Tags of deliveries carried over from an earlier attachment: as the sender resumed
    /// them, and as the receiver heard of them.
    resumed_sent: Vec<Bytes>,
    resumed_received: Vec<Bytes>,
    /// What the receiving end carried over when it attached, and what it forgot since.
    rcv_carried: BTreeSet<Bytes>,
    rcv_forgot: BTreeSet<Bytes>,
    /// Tags the sender sent, in order.
    sent: Vec<Bytes>,
    /// Tags the receiver got, in order.
    received: Vec<Bytes>,
    /// Delivery-ids the sender sent unsettled and has not seen settled.
    awaiting: BTreeSet<u32>,
    /// Delivery-ids the receiver holds unsettled.
    unsettled: Vec<SequenceNo>,
}

/// The pair, the wire between them, and what the checks need to know.
struct Pair {
    client: Connection,
    server: Connection,
    /// Written by the client, not yet read by the server; and the other way.
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    now: Instant,
    sessions: Vec<SessionId>,
    links: Vec<Link>,
    by_name: HashMap<String, usize>,
    /// Controller links at the client, the control messages awaiting an answer, and
    /// whether the link has gone.
    controllers: Vec<(LinkId, BTreeSet<u32>, bool)>,
    /// Transaction ids the coordinator gave out.
    txns: Vec<Bytes>,
    /// Work the server's application was handed, by transaction.
    work: HashMap<Bytes, u32>,
    /// Tags of transactional sends, by link and delivery-id (refused ones are taken off
    /// the link's sent list).
    txn_sent: HashMap<(usize, u32), Bytes>,
    /// Only the two engines have written the bytes each side read.
    honest: bool,
    /// Either side reported a protocol error or ended: the link checks stop.
    troubled: bool,
    tags: u32,
}

/// Runs the commands the input describes; see the module documentation for the checks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut server = Config::new("server");
    // Small frames on one side, so that large messages span several transfers.
    server.max_frame_size = [512, 4096, 65536][usize::from(byte(&mut u)) % 3];
    server.session.incoming_window = 1 + u32::from(byte(&mut u) % 32);
    let mut coordinator = CoordinatorConfig::default();
    coordinator.timeout = flag(&mut u).then(|| Duration::from_millis(2000));
    coordinator.max_open = 1 + usize::from(byte(&mut u) % 4);
    server.coordinator = Some(coordinator);
    let mut client = Config::new("client");
    client.idle_time_out = flag(&mut u).then(|| Duration::from_millis(1000));
    let mut p = Pair {
        client: Connection::client(client),
        server: Connection::server(server),
        c2s: Vec::new(),
        s2c: Vec::new(),
        now: Instant::now(),
        sessions: Vec::new(),
        links: Vec::new(),
        by_name: HashMap::new(),
        controllers: Vec::new(),
        txns: Vec::new(),
        work: HashMap::new(),
        txn_sent: HashMap::new(),
        honest: true,
        troubled: false,
        tags: 0,
    };
    let mut steps = 0;
    while !u.is_empty() && steps < 256 {
        steps += 1;
        p.step(&mut u);
        p.transmit();
        p.collect();
    }
    // The end: everything delivered, checked, then a clean close.
    p.quiesce(&mut u);
    let clean = p.honest && !p.troubled;
    let _ = p.client.close(None);
    p.quiesce(&mut u);
    if clean {
        assert!(p.client.is_ended(), "the client's close must end its connection");
        assert!(p.server.is_ended(), "the client's close must end the server's connection");
    }
}

impl Pair {
    /// One command.
    fn step(&mut self, u: &mut Unstructured<'_>) {
        // Weighted: links and deliveries often, hostile bytes rarely.
        match byte(u) % 36 {
            0 | 1 => {
                if let Ok(s) = self.client.begin() {
                    self.sessions.push(s);
                }
            }
            2..=5 => self.attach(u),
            6..=9 => self.flow(u),
            10..=15 => self.send(u),
            16..=18 => self.settle(u),
            19 => {
                if let Some(l) = self.pick_link(u) {
                    let (sender, id) = self.end_of(l, true);
                    if let Some(id) = id {
                        let _ = sender.drained(id);
                    }
                }
            }
            20 => {
                if let Some(l) = self.pick_link(u) {
                    let closed = flag(u);
                    let on_client = flag(u);
                    let link = &self.links[l];
                    let id = if link.dead {
                        None
                    } else if on_client {
                        link.client
                    } else {
                        link.server
                    };
                    let conn = if on_client { &mut self.client } else { &mut self.server };
                    if let Some(id) = id {
                        if conn.detach(id, closed, None).is_ok() {
                            let link = &mut self.links[l];
                            link.dead = true;
                            if on_client {
                                link.client_gone = true;
                            } else {
                                link.server_gone = true;
                            }
                        }
                    }
                }
            }
            21 => {
                if !self.sessions.is_empty() {
                    let s = self.sessions[usize::from(byte(u)) % self.sessions.len()];
                    if self.client.end_session(s, None).is_ok() {
                        // Its links go with it.
                        self.session_gone(s);
                    }
                }
            }
            22..=24 => {
                // Part of what one side wrote crosses, in a chunk of the fuzzer's size.
                let n = usize::from(byte(u)) * 4 + 1;
                if flag(u) {
                    let n = n.min(self.c2s.len());
                    let chunk: Vec<u8> = self.c2s.drain(..n).collect();
                    self.server.handle_input(&chunk, self.now);
                } else {
                    let n = n.min(self.s2c.len());
                    let chunk: Vec<u8> = self.s2c.drain(..n).collect();
                    self.client.handle_input(&chunk, self.now);
                }
            }
            25 => {
                // Time passes; timers fire.
                let ms = u64::from(byte(u)) * 16;
                self.now += Duration::from_millis(ms);
                self.client.handle_timeout(self.now);
                self.server.handle_timeout(self.now);
            }
            26..=30 => self.quiesce(u),
            32 => self.controller(u),
            33 | 34 => self.control(u),
            35 => self.send_in_txn(u),
            _ => {
                // Recovery shares its command with hostile bytes, so that the inputs found
                // before it existed mostly keep their meaning.
                let b = byte(u);
                if b >= 128 {
                    return match b % 4 {
                        0 => self.reattach(u),
                        1 => self.credit_to_resume(u),
                        2 => self.resume(u),
                        _ => self.forget(u),
                    };
                }
                // Hostile bytes into one side, where its stream stands now.
                let n = usize::from(b % 64);
                let junk: Vec<u8> = (0..n).map(|_| byte(u)).collect();
                if n > 0 {
                    self.honest = false;
                    if flag(u) {
                        self.server.handle_input(&junk, self.now);
                    } else {
                        self.client.handle_input(&junk, self.now);
                    }
                }
            }
        }
    }

    fn attach(&mut self, u: &mut Unstructured<'_>) {
        let name = format!("link-{}", self.links.len());
        let client_sends = flag(u);
        self.attach_named(u, name, client_sends);
    }

    /// Attaches a link named `name` from the client, in a session the input chooses. An
    /// earlier attachment of the name that detached without closing left its unsettled
    /// deliveries behind at both ends: each end's attach carries them (2.6.13).
    fn attach_named(&mut self, u: &mut Unstructured<'_>, name: String, client_sends: bool) {
        if self.sessions.is_empty() {
            return;
        }
        let s = self.sessions[usize::from(byte(u)) % self.sessions.len()];
        let mut opts = if client_sends {
            LinkOptions::sender(&name, "q")
        } else {
            LinkOptions::receiver(&name, "q")
        };
        if flag(u) {
            // rcv-settle-mode second: the receiver's outcome waits for the sender's settle.
            opts.rcv_settle_mode = crate::types::ReceiverSettleMode::SECOND;
        }
        if let Ok(id) = self.client.attach(s, opts) {
            // A receiving end knows what it carried over from the start.
            let rcv_carried = if client_sends {
                BTreeSet::new()
            } else {
                self.client.resumable(id).into_iter().map(|r| r.tag).collect()
            };
            self.by_name.insert(name.clone(), self.links.len());
            self.links.push(Link {
                name,
                client: Some(id),
                client_sends,
                rcv_carried,
                ..Link::default()
            });
        }
    }

    /// Attaches again, under its name and in its role, a link whose ends are both gone and
    /// that no newer attachment has taken the name of.
    fn reattach(&mut self, u: &mut Unstructured<'_>) {
        let gone: Vec<usize> = (0..self.links.len())
            .filter(|&l| {
                let link = &self.links[l];
                link.client_gone && link.server_gone && self.by_name.get(&link.name) == Some(&l)
            })
            .collect();
        if gone.is_empty() {
            return;
        }
        let l = gone[usize::from(byte(u)) % gone.len()];
        let (name, client_sends) = (self.links[l].name.clone(), self.links[l].client_sends);
        self.attach_named(u, name, client_sends);
    }

    /// The sender resumes a delivery its end carried over: the whole message again,
    /// settled or not, or only its settlement with an outcome.
    fn resume(&mut self, u: &mut Unstructured<'_>) {
        let Some(l) = self.pick_carrying(u, true) else { return };
        let choice = byte(u);
        let size = usize::from(byte(u)) * 8;
        let (sender, id) = self.end_of(l, true);
        let Some(id) = id else { return };
        let carried = sender.resumable(id);
        if carried.is_empty() {
            return;
        }
        let r = &carried[usize::from(choice) % carried.len()];
        let (payload, settled, state) = match choice % 3 {
            0 => (vec![0x55; size], false, None),
            1 => (vec![0x55; size], true, None),
            _ => (
                Vec::new(),
                true,
                Some(r.local.clone().unwrap_or(DeliveryState::Accepted(Accepted {}))),
            ),
        };
        let before = sender.link_credit(id);
        if let Ok(d) = sender.resume(id, r.tag.clone(), &payload, settled, state) {
            assert!(before.is_some_and(|c| c > 0), "a resume succeeded without credit");
            let link = &mut self.links[l];
            link.resumed_sent.push(r.tag.clone());
            if !settled {
                link.awaiting.insert(d.0);
            }
        }
    }

    /// The receiver of a link whose sender carries deliveries over grants credit, so that
    /// they can be resumed.
    fn credit_to_resume(&mut self, u: &mut Unstructured<'_>) {
        let Some(l) = self.pick_carrying(u, true) else { return };
        let credit = u32::from(byte(u) % 8) + 1;
        let (receiver, id) = self.end_of(l, false);
        if let Some(id) = id {
            let _ = receiver.flow(id, credit, false);
        }
    }

    /// Either end drops a delivery it carried over, without telling the peer.
    fn forget(&mut self, u: &mut Unstructured<'_>) {
        let sending = flag(u);
        let Some(l) = self.pick_carrying(u, sending) else { return };
        let choice = usize::from(byte(u));
        let (conn, id) = self.end_of(l, sending);
        let Some(id) = id else { return };
        let carried = conn.resumable(id);
        if carried.is_empty() {
            return;
        }
        let tag = carried[choice % carried.len()].tag.clone();
        if conn.forget(id, &tag).is_ok() && !sending {
            self.links[l].rcv_forgot.insert(tag);
        }
    }

    fn controller(&mut self, u: &mut Unstructured<'_>) {
        if self.sessions.is_empty() {
            return;
        }
        let s = self.sessions[usize::from(byte(u)) % self.sessions.len()];
        let name = format!("ctl-{}", self.controllers.len());
        let opts = LinkOptions::coordinator(&name, vec![LOCAL_TRANSACTIONS.into()]);
        if let Ok(id) = self.client.attach(s, opts) {
            self.controllers.push((id, BTreeSet::new(), false));
        }
    }

    /// The client's session `s` ended (or is ending): its links are gone, and their
    /// handles may name newer links.
    fn session_gone(&mut self, s: SessionId) {
        for l in &mut self.links {
            if l.client.is_some_and(|c| c.session == s) {
                l.dead = true;
                l.client_gone = true;
            }
        }
        for c in &mut self.controllers {
            if c.0.session == s {
                c.2 = true;
            }
        }
    }

    /// A real or made-up transaction id.
    fn txn_id(&self, u: &mut Unstructured<'_>) -> Bytes {
        match self.txns.len() {
            0 => Bytes::from_static(b"made-up"),
            len => self.txns[usize::from(byte(u)) % len].clone(),
        }
    }

    /// A declare, or a discharge of a real or made-up transaction.
    fn control(&mut self, u: &mut Unstructured<'_>) {
        if self.controllers.is_empty() {
            return;
        }
        let c = usize::from(byte(u)) % self.controllers.len();
        let message = match byte(u) % 3 {
            0 => declare_message(),
            n => discharge_message(self.txn_id(u), n == 2),
        };
        self.tags += 1;
        let tag = Bytes::from(self.tags.to_be_bytes().to_vec());
        let (link, awaiting, dead) = &mut self.controllers[c];
        if *dead {
            return;
        }
        if let Ok(d) = self.client.send(*link, tag, &message.to_vec(), false) {
            awaiting.insert(d.0);
        }
    }

    /// Work in a transaction on a link where the client sends.
    fn send_in_txn(&mut self, u: &mut Unstructured<'_>) {
        let Some(l) = self.pick_link(u) else { return };
        let txn = self.txn_id(u);
        self.tags += 1;
        let tag = Bytes::from(self.tags.to_be_bytes().to_vec());
        let (sender, id) = self.end_of(l, true);
        let Some(id) = id else { return };
        let mut payload = crate::message::Payload::default();
        payload.head.extend_from_slice(&[0x55; 16]);
        if let Ok(d) = sender.send_transactional(id, tag.clone(), &payload, false, txn) {
            let link = &mut self.links[l];
            link.sent.push(tag.clone());
            link.awaiting.insert(d.0);
            self.txn_sent.insert((l, d.0), tag);
        }
    }

    fn flow(&mut self, u: &mut Unstructured<'_>) {
        let Some(l) = self.pick_link(u) else { return };
        let credit = u32::from(byte(u) % 40);
        let drain = byte(u) % 8 == 0;
        let (receiver, id) = self.end_of(l, false);
        if let Some(id) = id {
            let _ = receiver.flow(id, credit, drain);
        }
    }

    fn send(&mut self, u: &mut Unstructured<'_>) {
        let Some(l) = self.pick_link(u) else { return };
        let size = match byte(u) % 4 {
            0 => 0,
            1 => usize::from(byte(u)),
            _ => usize::from(byte(u)) * 24,
        };
        let settled = flag(u);
        self.tags += 1;
        let tag = Bytes::from(self.tags.to_be_bytes().to_vec());
        let payload = vec![0x55; size];
        let (sender, id) = self.end_of(l, true);
        let Some(id) = id else { return };
        let before = sender.link_credit(id);
        if let Ok(delivery) = sender.send(id, tag.clone(), &payload, settled) {
            // Credit is never exceeded: a send uses one unit that existed.
            assert!(before.is_some_and(|c| c > 0), "a send succeeded without credit");
            let link = &mut self.links[l];
            link.sent.push(tag);
            if !settled {
                link.awaiting.insert(delivery.0);
            }
        }
    }

    fn settle(&mut self, u: &mut Unstructured<'_>) {
        let Some(l) = self.pick_link(u) else { return };
        let n = usize::from(byte(u) % 4) + 1;
        let state = match byte(u) % 4 {
            0 => DeliveryState::Accepted(Accepted {}),
            1 => DeliveryState::Rejected(Rejected { error: None }),
            2 => DeliveryState::Released(Released {}),
            _ => DeliveryState::Modified(Modified {
                delivery_failed: Some(true),
                undeliverable_here: None,
                message_annotations: None,
            }),
        };
        let settled = !flag(u) || byte(u) % 2 == 0;
        let ids: Vec<SequenceNo> = {
            let link = &mut self.links[l];
            let n = n.min(link.unsettled.len());
            link.unsettled.drain(..n).collect()
        };
        let (receiver, id) = self.end_of(l, false);
        let Some(id) = id else { return };
        for d in ids {
            let _ = receiver.disposition(id, d, None, settled, Some(state.clone()));
        }
    }

    /// A live link whose sending (or receiving) end still carries deliveries over from an
    /// earlier attachment, if any.
    fn pick_carrying(&mut self, u: &mut Unstructured<'_>, sending: bool) -> Option<usize> {
        let carrying: Vec<usize> = (0..self.links.len())
            .filter(|&l| {
                let (conn, id) = self.end_of(l, sending);
                id.is_some_and(|id| !conn.resumable(id).is_empty())
            })
            .collect();
        (!carrying.is_empty()).then(|| carrying[usize::from(byte(u)) % carrying.len()])
    }

    /// A link that exists at the client's end, if any.
    fn pick_link(&self, u: &mut Unstructured<'_>) -> Option<usize> {
        (!self.links.is_empty()).then(|| usize::from(byte(u)) % self.links.len())
    }

    /// The sending (or receiving) end of link `l`: its connection and its id there (none
    /// once the link detached: its handle may already name a newer link).
    fn end_of(&mut self, l: usize, sending: bool) -> (&mut Connection, Option<LinkId>) {
        let link = &self.links[l];
        if link.dead {
            return (&mut self.client, None);
        }
        if link.client_sends == sending {
            (&mut self.client, link.client)
        } else {
            (&mut self.server, link.server)
        }
    }

    /// Moves what each side wants to write onto the wire, bounded.
    fn transmit(&mut self) {
        for (conn, wire) in [(&mut self.client, &mut self.c2s), (&mut self.server, &mut self.s2c)] {
            let before = wire.len();
            conn.poll_transmit(wire);
            // One step sends at most a few frames of every link plus one message of up
            // to 6 KiB split into 512-byte frames: far below this.
            assert!(wire.len() - before < 1 << 20, "one step wrote {} bytes", wire.len() - before);
        }
        assert!(self.c2s.len() + self.s2c.len() < 64 << 20, "the wire holds too much");
    }

    /// Reads both sides' events, keeping the records the checks need.
    fn collect(&mut self) {
        while let Some(e) = self.server.poll_event() {
            self.on_event(e, false);
        }
        while let Some(e) = self.client.poll_event() {
            self.on_event(e, true);
        }
    }

    fn on_event(&mut self, e: Event, at_client: bool) {
        match e {
            Event::LinkAttached { link, by_peer, remote } => {
                if let Some(&l) = self.by_name.get(&*remote.name) {
                    match (at_client, by_peer) {
                        (false, true) => {
                            let r = &mut self.links[l];
                            r.server = Some(link);
                            if r.client_sends {
                                r.rcv_carried = self
                                    .server
                                    .resumable(link)
                                    .into_iter()
                                    .map(|r| r.tag)
                                    .collect();
                            }
                        }
                        (true, false) => self.links[l].answered = true,
                        _ => {}
                    }
                }
            }
            Event::Resumed { link, delivery_id, tag, settled, .. } => {
                if let Some(l) = self.index_of(link, at_client) {
                    let r = &mut self.links[l];
                    r.resumed_received.push(tag);
                    if !settled {
                        r.unsettled.push(delivery_id);
                    }
                }
            }
            Event::Delivery { link, delivery_id, tag, settled, state, .. } => {
                if let Some((txn, _)) = crate::connection::txn::transaction_of(state.as_ref()) {
                    *self.work.entry(txn.clone()).or_default() += 1;
                }
                if let Some(l) = self.index_of(link, at_client) {
                    let r = &mut self.links[l];
                    r.received.push(tag);
                    if !settled {
                        r.unsettled.push(delivery_id);
                    }
                }
            }
            Event::Disposition { link, delivery_id, settled: true, state } => {
                let honest = self.honest && !self.troubled;
                let ctl = self.controllers.iter_mut().rfind(|c| at_client && c.0 == link && !c.2);
                if let Some((_, awaiting, _)) = ctl {
                    // Every control message is answered once.
                    assert!(awaiting.remove(&delivery_id.0) || !honest, "answered twice");
                    if let Some(DeliveryState::Declared(d)) = state {
                        self.txns.push(d.txn_id);
                    }
                } else if let Some(l) = self.index_of(link, at_client) {
                    let r = &mut self.links[l];
                    if !r.dead && honest {
                        // Settled once, and only what was sent unsettled.
                        assert!(
                            r.awaiting.remove(&delivery_id.0),
                            "delivery {} settled twice, or never sent unsettled",
                            delivery_id.0
                        );
                    }
                }
            }
            Event::TxnEnded { txn_id, cause, work, .. } => {
                // The work reported is the work handed out (retirement is not fuzzed).
                let handed = self.work.remove(&txn_id).unwrap_or(0);
                if self.honest && !self.troubled {
                    assert_eq!(work, handed, "a transaction's work, as reported and as handed out");
                }
                if cause.awaits_answer() {
                    let _ = self.server.complete_discharge(&txn_id, Ok(()));
                }
            }
            Event::TxnWorkRefused { link, delivery_id, .. } => {
                // Refused work never reaches the application: it leaves the sent list.
                if let Some(l) = self.index_of(link, at_client) {
                    if let Some(tag) = self.txn_sent.remove(&(l, delivery_id.0)) {
                        self.links[l].sent.retain(|t| *t != tag);
                    }
                }
            }
            Event::LinkDetached { link, .. } | Event::LinkError { link, .. } => {
                if at_client {
                    for c in self.controllers.iter_mut().filter(|c| c.0 == link) {
                        c.2 = true;
                    }
                }
                if let Some(l) = self.index_of(link, at_client) {
                    let r = &mut self.links[l];
                    r.dead = true;
                    if at_client {
                        r.client_gone = true;
                    } else {
                        r.server_gone = true;
                    }
                }
            }
            // What only a broken protocol, or time running out, explains; ending a session
            // or closing the connection without an error is ordinary.
            Event::SessionEnded { session, error, .. } => {
                self.end_gone(session, at_client);
                self.troubled |= error.is_some();
            }
            Event::SessionError { session, .. } => {
                self.end_gone(session, at_client);
                self.troubled = true;
            }
            Event::RemoteClose { error: Some(_) } | Event::Ended { error: Some(_) } => {
                self.troubled = true
            }
            _ => {}
        }
    }

    /// A session ended at one end: the links it held there are gone.
    fn end_gone(&mut self, session: SessionId, at_client: bool) {
        if at_client {
            self.session_gone(session);
        } else {
            for l in &mut self.links {
                if l.server.is_some_and(|s| s.session == session) {
                    l.dead = true;
                    l.server_gone = true;
                }
            }
        }
    }

    /// The link whose end on this side is `link` (a handle is reused once the link that
    /// held it has detached, but each link's id is its own).
    fn index_of(&self, link: LinkId, at_client: bool) -> Option<usize> {
        self.links.iter().rposition(|l| if at_client { l.client } else { l.server } == Some(link))
    }

    /// Delivers everything both ways, in chunks the fuzzer sizes, until both are quiet;
    /// then checks what both ends of every live link must agree on.
    fn quiesce(&mut self, u: &mut Unstructured<'_>) {
        for _ in 0..64 {
            self.transmit();
            if self.c2s.is_empty() && self.s2c.is_empty() {
                break;
            }
            let cut = usize::from(byte(u)) + 1;
            for to_server in [true, false] {
                let wire = if to_server { &mut self.c2s } else { &mut self.s2c };
                let bytes = std::mem::take(wire);
                let conn = if to_server { &mut self.server } else { &mut self.client };
                for chunk in bytes.chunks(cut) {
                    conn.handle_input(chunk, self.now);
                }
            }
            self.collect();
        }
        self.collect();
        if !self.c2s.is_empty() || !self.s2c.is_empty() || !self.honest || self.troubled {
            return;
        }
        for (i, l) in self.links.iter().enumerate() {
            let (Some(c), Some(s)) = (l.client, l.server) else { continue };
            if l.dead || !l.answered {
                continue;
            }
            assert_eq!(l.received, l.sent, "link {i}: every delivery once, in order");
            // Resumed deliveries: each heard of at most once, in the order resumed, and
            // every one the receiver carried over and kept.
            let mut resumed = l.resumed_sent.iter();
            for t in &l.resumed_received {
                assert!(resumed.any(|s| s == t), "link {i}: resumed {t:?} heard out of order");
            }
            for t in &l.resumed_sent {
                if l.rcv_carried.contains(t) && !l.rcv_forgot.contains(t) {
                    assert!(l.resumed_received.contains(t), "link {i}: resumed {t:?} never heard");
                }
            }
            let (snd, rcv) = if l.client_sends { (c, s) } else { (s, c) };
            let (sc, rc) = if l.client_sends {
                (self.client.link_credit(snd), self.server.link_credit(rcv))
            } else {
                (self.server.link_credit(snd), self.client.link_credit(rcv))
            };
            assert_eq!(sc, rc, "link {i}: both ends agree on the credit");
        }
        self.check_session_windows();
        for (link, awaiting, dead) in &self.controllers {
            let attached =
                self.client.link_state(*link) == Some(crate::connection::LinkState::Attached);
            if !dead && attached {
                assert!(awaiting.is_empty(), "control messages {awaiting:?} never answered");
            }
        }
    }
}

impl Pair {
    /// On every session mapped at both ends, with nothing in flight: each end's
    /// next-outgoing-id is the other's next-incoming-id, and each end's view of the other's
    /// incoming and outgoing windows is the other's own (2.5.6).
    fn check_session_windows(&self) {
        use crate::connection::SessionState::Mapped;
        for &s in &self.sessions {
            if self.client.session_state(s) != Some(Mapped) {
                continue;
            }
            let Some(c) = self.client.session_windows(s) else { continue };
            let Some(peer) = c.remote_channel.and_then(|ch| self.server.session_on(ch)) else {
                continue;
            };
            if self.server.session_state(peer) != Some(Mapped) {
                continue;
            }
            let Some(v) = self.server.session_windows(peer) else { continue };
            assert_eq!(v.remote_channel, Some(s.0), "session {}: the server's end is its", s.0);
            assert_eq!(Some(c.next_outgoing_id), v.next_incoming_id, "session {}: c2s ids", s.0);
            assert_eq!(Some(v.next_outgoing_id), c.next_incoming_id, "session {}: s2c ids", s.0);
            assert_eq!(
                c.remote_incoming_window, v.incoming_window,
                "session {}: server's window",
                s.0
            );
            assert_eq!(
                v.remote_incoming_window, c.incoming_window,
                "session {}: client's window",
                s.0
            );
            assert_eq!(
                c.remote_outgoing_window, v.outgoing_window,
                "session {}: server's outgoing",
                s.0
            );
            assert_eq!(
                v.remote_outgoing_window, c.outgoing_window,
                "session {}: client's outgoing",
                s.0
            );
        }
    }
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary::<u8>().unwrap_or(0)
}

fn flag(u: &mut Unstructured<'_>) -> bool {
    byte(u) & 1 == 1
}

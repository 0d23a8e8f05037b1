//! A two-peer harness for the connection engine: two `Connection`s joined in memory,
//! virtual time that jumps to the next timer, and byte streams cut at random points.
#![allow(dead_code)] // each test binary uses part of it

use std::time::{Duration, Instant};

use amqpwire::codec::DecodeOptions;
use amqpwire::connection::{Config, Connection, ConnectionError, Event, LinkId, LinkOptions};
use amqpwire::frame::{FrameBody, FrameEncoder};
use amqpwire::inspect::{Inspector, Record};
use amqpwire::types::Performative;

/// Two connections and the wire between them.
pub(crate) struct Pair {
    pub(crate) client: Connection,
    pub(crate) server: Connection,
    pub(crate) now: Instant,
    pub(crate) rng: u64,
    /// Every byte each side sent, for inspection.
    pub(crate) c2s: Vec<u8>,
    pub(crate) s2c: Vec<u8>,
    /// Drop what the server sends (a silent or vanished peer).
    pub(crate) cut_s2c: bool,
    pub(crate) cut_c2s: bool,
}

impl Pair {
    pub(crate) fn new(client: Config, server: Config, seed: u64) -> Self {
        Self {
            client: Connection::client(client),
            server: Connection::server(server),
            now: Instant::now(),
            rng: seed | 1,
            c2s: Vec::new(),
            s2c: Vec::new(),
            cut_s2c: false,
            cut_c2s: false,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64: reproducible splitting.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Delivers `bytes` to `to` in random pieces.
    pub(crate) fn deliver(&mut self, bytes: &[u8], to_server: bool) {
        let mut at = 0;
        while at < bytes.len() {
            let n = 1 + (self.next() as usize % 40).min(bytes.len() - at - 1);
            let chunk = &bytes[at..at + n];
            if to_server {
                self.server.handle_input(chunk, self.now);
            } else {
                self.client.handle_input(chunk, self.now);
            }
            at += n;
        }
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub(crate) fn drive(&mut self) {
        for _ in 0..1000 {
            let mut a = Vec::new();
            self.client.poll_transmit(&mut a);
            let mut b = Vec::new();
            self.server.poll_transmit(&mut b);
            if a.is_empty() && b.is_empty() {
                return;
            }
            self.c2s.extend_from_slice(&a);
            self.s2c.extend_from_slice(&b);
            if !self.cut_c2s {
                self.deliver(&a, true);
            }
            if !self.cut_s2c {
                self.deliver(&b, false);
            }
        }
        panic!("the peers never went quiet");
    }

    /// Lets `d` of virtual time pass, firing every timer on the way.
    pub(crate) fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        loop {
            self.drive();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = target;
        self.drive();
    }
}

pub(crate) fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

pub(crate) fn ended(events: &[Event]) -> Option<&Option<ConnectionError>> {
    events.iter().find_map(|e| match e {
        Event::Ended { error } => Some(error),
        _ => None,
    })
}

impl Pair {
    /// Begins a session on the client, attaches a link with `opts` on it, and drives until
    /// the server has answered; returns the client's link and the server's. Panics (the
    /// test fails) if either side does not report the attach.
    pub(crate) fn attach(&mut self, opts: LinkOptions) -> (LinkId, LinkId) {
        let role = opts.role;
        let session = self.client.begin().expect("begin");
        let ours = self.client.attach(session, opts).expect("attach");
        self.drive();
        let ce = events(&mut self.client);
        assert!(
            ce.iter().any(
                |e| matches!(e, Event::LinkAttached { link, by_peer: false, .. } if *link == ours)
            ),
            "the client's attach was not answered: {ce:?}"
        );
        let theirs = events(&mut self.server)
            .into_iter()
            .find_map(|e| match e {
                Event::LinkAttached { link, by_peer: true, remote } => {
                    // The server saw the client's role in the attach.
                    assert_eq!(remote.role, role);
                    Some(link)
                }
                _ => None,
            })
            .expect("the server saw the attach");
        (ours, theirs)
    }
}

/// Encodes `p` on `channel` as one frame, as a hand-driven peer would send it.
pub(crate) fn frame(channel: u16, p: Performative) -> Vec<u8> {
    let mut b = Vec::new();
    FrameEncoder::new(u32::MAX).encode_amqp(channel, &p, &[], &mut b).expect("frame");
    b
}

/// The AMQP performatives a byte stream carries, decoded, with their channels.
pub(crate) fn sent(stream: &[u8]) -> Vec<(u16, Performative)> {
    Inspector::inspect_all(stream, DecodeOptions::STRICT)
        .into_iter()
        .filter_map(|r| match r {
            Record::Frame(f) => {
                let frame = f.frame.ok()?;
                match frame.body {
                    FrameBody::Amqp { performative, .. } => Some((frame.channel, performative)),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// The link of the first attach `c` reports the peer made (its events are taken).
pub(crate) fn attached_by_peer(c: &mut Connection) -> Option<LinkId> {
    events(c).into_iter().find_map(|e| match e {
        Event::LinkAttached { link, by_peer: true, .. } => Some(link),
        _ => None,
    })
}

/// The link of the first [`Event::AttachRequested`] the server reports.
pub(crate) fn requested(p: &mut Pair) -> LinkId {
    events(&mut p.server)
        .into_iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, .. } => Some(link),
            _ => None,
        })
        .expect("an attach request")
}

/// A server-side receiving link, answered with `answer` and given `credit`, for a client
/// sender named "raw" on handle 0: raw transfers can then be injected into the server as
/// if the client had sent them.
pub(crate) fn raw_receiver(seed: u64, credit: u32, answer: LinkOptions) -> (Pair, LinkId) {
    let mut server = Config::new("server");
    server.accept_links = false;
    let mut p = Pair::new(Config::new("client"), server, seed);
    let s = p.client.begin().expect("begin");
    p.client.attach(s, LinkOptions::sender("raw", "q")).expect("attach");
    p.drive();
    let link = requested(&mut p);
    p.server.accept_attach(link, Some(answer)).expect("accept");
    p.server.flow(link, credit, false).expect("credit");
    p.drive();
    let _ = events(&mut p.client);
    (p, link)
}

#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Throughput of the connection engine through an in-memory pair (no sockets): 100-byte
//! messages on one link, pre-settled and unsettled with accepted dispositions, and 1 MiB
//! messages; and a link detached and attached again among many while a transaction is
//! open (the coordinator's look for transactions whose control link went, at each
//! detach); and a delivery settled by the peer among many links with unsettled deliveries
//! (a disposition names deliveries by session-wide id). Figures go in docs/performance.md.

use std::time::Instant;

use amqpwire::connection::{
    Config, Connection, CoordinatorConfig, Event, LinkId, LinkOptions, UsageError,
};
use amqpwire::message::{Message, Payload};
use amqpwire::types::{Accepted, DeliveryState, SequenceNo};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// How many bytes one transport read hands to the engine.
const READ_SIZE: usize = 256 * 1024;

struct Pair {
    client: Connection,
    server: Connection,
    snd: LinkId,
    rcv: LinkId,
    now: Instant,
    buf: Vec<u8>,
}

impl Pair {
    fn new(max_frame_size: u32) -> Self {
        let mut c = Config::new("client");
        c.max_frame_size = max_frame_size;
        let mut s = Config::new("server");
        s.max_frame_size = max_frame_size;
        s.session.incoming_window = 100_000;
        let mut client = Connection::client(c);
        let session = client.begin().expect("begin");
        let snd = client.attach(session, LinkOptions::sender("bench", "q")).expect("attach");
        // The server's end is known once its attach event comes: until then, the client's
        // id stands in (the pump below reads neither).
        let mut p = Self {
            client,
            server: Connection::server(s),
            snd,
            rcv: snd,
            now: Instant::now(),
            buf: Vec::new(),
        };
        p.pump();
        while let Some(e) = p.server.poll_event() {
            if let Event::LinkAttached { link, .. } = e {
                p.rcv = link;
            }
        }
        while p.client.poll_event().is_some() {}
        p
    }

    /// Moves bytes both ways until quiet; returns the deliveries the server saw.
    fn pump(&mut self) -> u64 {
        self.pump_with(false)
    }

    /// Moves bytes both ways until quiet. Bytes arrive in socket-sized reads, as a
    /// transport would hand them over. With `zero_copy`, the client's output goes out as
    /// chunks (bodies referenced) and the transport gathers them into one read buffer (its
    /// one copy, like a socket's) that it hands over.
    fn pump_with(&mut self, zero_copy: bool) -> u64 {
        let mut delivered = 0;
        let mut chunks = Vec::new();
        loop {
            let a = if zero_copy {
                chunks.clear();
                self.client.poll_transmit_chunks(&mut chunks);
                if !chunks.is_empty() {
                    let mut read =
                        bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                    for c in &chunks {
                        read.extend_from_slice(c);
                    }
                    self.server.handle_input_bytes(read.freeze(), self.now);
                }
                !chunks.is_empty()
            } else {
                self.buf.clear();
                self.client.poll_transmit(&mut self.buf);
                for chunk in self.buf.chunks(READ_SIZE) {
                    self.server.handle_input(chunk, self.now);
                }
                !self.buf.is_empty()
            };
            self.buf.clear();
            self.server.poll_transmit(&mut self.buf);
            let b = !self.buf.is_empty();
            for chunk in self.buf.chunks(READ_SIZE) {
                self.client.handle_input(chunk, self.now);
            }
            while let Some(e) = self.server.poll_event() {
                if matches!(e, Event::Delivery { .. }) {
                    delivered += 1;
                }
            }
            while self.client.poll_event().is_some() {}
            if !a && !b {
                return delivered;
            }
        }
    }

    /// Sends `n` large messages (encoded once into `payload`) pre-settled.
    fn run_large(&mut self, n: u64, payload: &Payload) {
        let (mut sent, mut done) = (0, 0);
        self.server.flow(self.rcv, 64, false).expect("credit");
        while done < n {
            while sent < n {
                match self.client.send_payload(self.snd, Bytes::new(), payload, true) {
                    Ok(_) => sent += 1,
                    Err(UsageError::NoCredit | UsageError::SessionWindowFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            done += self.pump_with(true);
            if self.server.link_credit(self.rcv).is_some_and(|c| c < 32) {
                self.server.flow(self.rcv, 64, false).expect("credit");
            }
        }
    }

    /// Sends `n` messages of `body`, topping credit up as the receiver would.
    fn run(&mut self, n: u64, body: &[u8], settled: bool) {
        let mut sent = 0;
        let mut done = 0;
        let mut next_settle = 0u32;
        self.server.flow(self.rcv, 5000, false).expect("credit");
        while done < n {
            while sent < n {
                match self.client.send(self.snd, Bytes::new(), body, settled) {
                    Ok(_) => sent += 1,
                    Err(UsageError::NoCredit | UsageError::SessionWindowFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            let got = self.pump();
            if !settled && got > 0 {
                // One disposition settles the batch (accepted), as a broker would.
                let last = next_settle + got as u32 - 1;
                let state = Some(DeliveryState::Accepted(Accepted {}));
                self.server
                    .disposition(
                        self.rcv,
                        SequenceNo(next_settle),
                        Some(SequenceNo(last)),
                        true,
                        state,
                    )
                    .expect("settle");
                next_settle = last + 1;
                self.pump();
            }
            done += got;
            if self.server.link_credit(self.rcv).is_some_and(|c| c < 2500) {
                self.server.flow(self.rcv, 5000, false).expect("credit");
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_pair");
    let n = 10_000u64;
    g.throughput(Throughput::Elements(n));
    let body = [b'7'; 100];
    g.bench_function("presettled_100B", |b| {
        let mut p = Pair::new(1 << 20);
        b.iter(|| p.run(n, &body, true))
    });
    g.bench_function("unsettled_accepted_100B", |b| {
        let mut p = Pair::new(1 << 20);
        b.iter(|| p.run(n, &body, false))
    });
    let big = vec![b'7'; 1 << 20];
    g.throughput(Throughput::Bytes(16 << 20));
    g.bench_function("presettled_1MiB", |b| {
        // A max-frame-size above the message size: one frame per message.
        let mut p = Pair::new(2 << 20);
        b.iter(|| p.run(16, &big, true))
    });
    let mut payload = Payload::default();
    Message::with_data(Bytes::from(vec![b'7'; 1 << 20])).encode_payload(&mut payload);
    g.bench_function("presettled_1MiB_zero_copy", |b| {
        let mut p = Pair::new(2 << 20);
        b.iter(|| p.run_large(16, &payload))
    });
    g.finish();
}

/// A client with `links` senders (in sessions of a thousand) and a controller, and a
/// server whose coordinator has one transaction open: [`Churn::cycle`] detaches one
/// sender and attaches it again.
struct Churn {
    client: Connection,
    server: Connection,
    session: amqpwire::connection::SessionId,
    link: LinkId,
    now: Instant,
    buf: Vec<u8>,
}

impl Churn {
    fn new(links: usize) -> Self {
        let mut s = Config::new("server");
        s.coordinator = Some(CoordinatorConfig::default());
        let mut client = Connection::client(Config::new("client"));
        let session = client.begin().expect("begin");
        let caps = vec![amqpwire::connection::txn::LOCAL_TRANSACTIONS.into()];
        let ctl = client.attach(session, LinkOptions::coordinator("ctl", caps)).expect("attach");
        let mut c = Self {
            client,
            server: Connection::server(s),
            session,
            link: ctl,
            now: Instant::now(),
            buf: Vec::new(),
        };
        // Open (a second begin waits for the peer's channel-max), then the links.
        c.pump();
        for i in 0..links {
            if i > 0 && i % 1000 == 0 {
                c.session = c.client.begin().expect("begin");
            }
            let options = LinkOptions::sender(&format!("s{i}"), "q");
            c.link = c.client.attach(c.session, options).expect("attach");
        }
        c.pump();
        let declare = amqpwire::connection::txn::declare_message().to_vec();
        c.client.send(ctl, Bytes::from_static(b"d"), &declare, false).expect("declare");
        c.pump();
        assert_eq!(c.server.open_transactions().len(), 1);
        c
    }

    fn pump(&mut self) {
        self.pump_with(|_| {});
    }

    /// Moves bytes both ways until quiet, showing `server_event` the server's events.
    fn pump_with(&mut self, mut server_event: impl FnMut(Event)) {
        loop {
            self.buf.clear();
            self.client.poll_transmit(&mut self.buf);
            let a = !self.buf.is_empty();
            self.server.handle_input(&self.buf, self.now);
            self.buf.clear();
            self.server.poll_transmit(&mut self.buf);
            let b = !self.buf.is_empty();
            self.client.handle_input(&self.buf, self.now);
            while let Some(e) = self.server.poll_event() {
                server_event(e);
            }
            while self.client.poll_event().is_some() {}
            if !a && !b {
                return;
            }
        }
    }

    fn cycle(&mut self) {
        self.client.detach(self.link, true, None).expect("detach");
        self.pump();
        let options = LinkOptions::sender("again", "q");
        self.link = self.client.attach(self.session, options).expect("attach");
        self.pump();
    }
}

/// A client with `links` senders in one session, each with a delivery the server has not
/// settled: [`Settle::cycle`] sends one more on the last link and the server settles it,
/// so the client finds the delivery a disposition names among its links.
struct Settle {
    pair: Churn,
    snd: LinkId,
    rcv: LinkId,
}

impl Settle {
    fn new(links: usize) -> Self {
        let mut s = Config::new("server");
        s.session.handle_max = 4095;
        s.session.incoming_window = 1_000_000;
        let mut c = Config::new("client");
        c.session.handle_max = 4095;
        let mut client = Connection::client(c);
        let session = client.begin().expect("begin");
        let senders: Vec<LinkId> = (0..links)
            .map(|i| {
                let options = LinkOptions::sender(&format!("s{i}"), "q");
                client.attach(session, options).expect("attach")
            })
            .collect();
        let mut pair = Churn {
            client,
            server: Connection::server(s),
            session,
            link: senders[0],
            now: Instant::now(),
            buf: Vec::new(),
        };
        let mut receivers = Vec::new();
        pair.pump_with(|e| {
            if let Event::LinkAttached { link, .. } = e {
                receivers.push(link);
            }
        });
        for l in &receivers {
            pair.server.flow(*l, 1_000_000, false).expect("credit");
        }
        pair.pump();
        for l in &senders {
            pair.client.send(*l, Bytes::from_static(b"t"), b"body", false).expect("send");
        }
        pair.pump();
        let snd = *senders.last().expect("a sender");
        Self { pair, snd, rcv: *receivers.last().expect("a receiver") }
    }

    fn cycle(&mut self) {
        let p = &mut self.pair;
        let id = p.client.send(self.snd, Bytes::from_static(b"t"), b"body", false).expect("send");
        p.pump();
        let accepted = Some(DeliveryState::Accepted(Accepted {}));
        p.server.disposition(self.rcv, id, None, true, accepted).expect("settle");
        p.pump();
    }
}

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("detach_attach_with_a_transaction_open");
    for links in [100, 100_000] {
        g.bench_function(format!("{links}_links"), |b| {
            let mut churn = Churn::new(links);
            b.iter(|| churn.cycle());
            assert_eq!(churn.server.open_transactions().len(), 1);
        });
    }
    g.finish();
    let mut g = c.benchmark_group("settle_among_links_with_unsettled_deliveries");
    for links in [10, 1000, 4000] {
        g.bench_function(format!("{links}_links"), |b| {
            let mut settle = Settle::new(links);
            b.iter(|| settle.cycle());
        });
    }
    g.finish();
}

criterion_group!(benches, bench, churn);
criterion_main!(benches);

//! Random operation sequences on a client/server pair: credit is never exceeded, windows
//! are honoured, every delivery arrives once and in order, every unsettled delivery is
//! settled exactly once on both sides, and the outcome does not depend on how the byte
//! streams are cut.

mod support;

use amqpwire::connection::{Config, Event, LinkOptions, UsageError};
use amqpwire::types::{Accepted, DeliveryState, Rejected, SequenceNo};
use bytes::Bytes;
use proptest::prelude::*;
use support::{events, Pair};

#[derive(Clone, Debug)]
enum Op {
    Send { settled: bool, size: usize },
    Grant { credit: u32, drain: bool },
    Settle { n: usize, accept: bool },
    Drained,
    Drive,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), prop_oneof![0usize..200, 200usize..3000]).prop_map(|(settled, size)| Op::Send { settled, size }),
        2 => (0u32..40, prop::bool::weighted(0.2)).prop_map(|(credit, drain)| Op::Grant { credit, drain }),
        2 => (1usize..8, any::<bool>()).prop_map(|(n, accept)| Op::Settle { n, accept }),
        1 => Just(Op::Drained),
        3 => Just(Op::Drive),
    ]
}

/// What one run observed, to compare runs with different chunking.
#[derive(Debug, PartialEq)]
struct Outcome {
    received: Vec<(u32, Vec<u8>, bool)>,
    settled_at_sender: Vec<(u32, bool)>,
    sends: Vec<Result<u32, UsageError>>,
}

fn run(ops: &[Op], seed: u64, max_frame: u32, window: u32) -> Result<Outcome, TestCaseError> {
    let mut server = Config::new("server");
    server.max_frame_size = max_frame;
    // A window smaller than a delivery's frames holds its later frames back until the
    // server's flows open it.
    server.session.incoming_window = window;
    let mut p = Pair::new(Config::new("client"), server, seed);
    let (snd, rcv) = p.attach(LinkOptions::sender("s", "q"));

    let mut out =
        Outcome { received: Vec::new(), settled_at_sender: Vec::new(), sends: Vec::new() };
    let mut granted_open: u64 = 0; // credit the receiver has outstanding, as it last set it
    let mut unsettled_rcv: Vec<u32> = Vec::new();
    let mut unsettled_snd: std::collections::BTreeSet<u32> = Default::default();
    let mut counter = 0u8;
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let collect = |p: &mut Pair,
                   out: &mut Outcome,
                   unsettled_rcv: &mut Vec<u32>,
                   unsettled_snd: &mut std::collections::BTreeSet<u32>|
     -> Result<(), TestCaseError> {
        for e in events(&mut p.server) {
            if let Event::Delivery { delivery_id, payload, settled, .. } = e {
                // In order, each once.
                let expected = out.received.last().map_or(0, |r| r.0 + 1);
                prop_assert_eq!(delivery_id.0, expected);
                if !settled {
                    unsettled_rcv.push(delivery_id.0);
                }
                out.received.push((delivery_id.0, payload.to_vec(), settled));
            }
        }
        for e in events(&mut p.client) {
            if let Event::Disposition { delivery_id, settled: true, state, .. } = e {
                // Settled exactly once.
                prop_assert!(
                    unsettled_snd.remove(&delivery_id.0),
                    "delivery {} settled twice or never sent unsettled",
                    delivery_id.0
                );
                out.settled_at_sender
                    .push((delivery_id.0, matches!(state, Some(DeliveryState::Accepted(_)))));
            }
        }
        Ok(())
    };

    for op in ops {
        match *op {
            Op::Send { settled, size } => {
                counter = counter.wrapping_add(1);
                let body = vec![counter; size];
                let before = p.client.link_credit(snd).unwrap_or(0);
                let r = p.client.send(snd, Bytes::from(vec![counter]), &body, settled);
                if let Ok(id) = r {
                    bodies.push(body);
                    // Credit is never exceeded: a send consumed one unit that existed.
                    prop_assert!(before > 0);
                    prop_assert_eq!(p.client.link_credit(snd), Some(before - 1));
                    if !settled {
                        unsettled_snd.insert(id.0);
                    }
                } else {
                    prop_assert!(
                        matches!(r, Err(UsageError::NoCredit | UsageError::SessionWindowFull)),
                        "{r:?}"
                    );
                }
                out.sends.push(r.map(|id| id.0));
            }
            Op::Grant { credit, drain } => {
                p.server
                    .flow(rcv, credit, drain)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                granted_open = u64::from(credit);
            }
            Op::Settle { n, accept } => {
                for id in unsettled_rcv.drain(..n.min(unsettled_rcv.len())).collect::<Vec<_>>() {
                    let state = if accept {
                        DeliveryState::Accepted(Accepted {})
                    } else {
                        DeliveryState::Rejected(Rejected { error: None })
                    };
                    p.server
                        .disposition(rcv, SequenceNo(id), None, true, Some(state))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            Op::Drained => {
                let _ = p.client.drained(snd);
            }
            Op::Drive => {
                p.drive();
                collect(&mut p, &mut out, &mut unsettled_rcv, &mut unsettled_snd)?;
                // The sender never believes it has more credit than the receiver granted.
                prop_assert!(u64::from(p.client.link_credit(snd).unwrap_or(0)) <= granted_open);
            }
        }
    }
    p.drive();
    collect(&mut p, &mut out, &mut unsettled_rcv, &mut unsettled_snd)?;
    // Everything sent arrived.
    let sent = out.sends.iter().filter(|r| r.is_ok()).count();
    prop_assert_eq!(out.received.len(), sent);
    // As it was sent, whatever frames it took.
    for (r, body) in out.received.iter().zip(&bodies) {
        prop_assert!(&r.1 == body, "delivery {} changed on the way", r.0);
    }
    // Settle the rest: each remaining unsettled delivery is settled once at the sender.
    for id in std::mem::take(&mut unsettled_rcv) {
        p.server
            .disposition(
                rcv,
                SequenceNo(id),
                None,
                true,
                Some(DeliveryState::Accepted(Accepted {})),
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    p.drive();
    collect(&mut p, &mut out, &mut unsettled_rcv, &mut unsettled_snd)?;
    prop_assert!(unsettled_snd.is_empty(), "never settled: {unsettled_snd:?}");
    prop_assert!(p.client.unsettled(snd).is_empty());
    prop_assert!(p.server.unsettled(rcv).is_empty());
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_credit_windows_and_settlement_right(
        ops in proptest::collection::vec(op(), 1..120),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
        max_frame in prop_oneof![Just(512u32), Just(4096u32), Just(65536u32)],
        window in prop_oneof![Just(1u32), Just(3u32), Just(16u32)],
    ) {
        let a = run(&ops, seed_a, max_frame, window)?;
        let b = run(&ops, seed_b, max_frame, window)?;
        // The same operations give the same outcome however the streams are cut.
        prop_assert_eq!(a, b);
    }
}

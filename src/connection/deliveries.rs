//! [`DeliveryMap`]: one link's unsettled deliveries by delivery-id.
//!
//! Delivery-ids are serial numbers (2.6.12: RFC 1982 arithmetic on a uint), assigned in
//! order by the sending end of a session, so a link's deliveries arrive (or leave) in
//! increasing order, wrapping from 4294967295 to 0. The map keeps them in a deque in that
//! order: a new delivery is pushed at the back (one out of order, which only a peer that
//! numbers its deliveries out of order sends, moves the entries on the shorter side of
//! where it goes), lookups are a binary search, and a settled
//! delivery leaves a hole (its id kept, its entry empty) that is dropped when it reaches
//! either end, or with every other hole once holes are half the deque. Settling in any
//! order is therefore amortised O(1) after the O(log n) search, as a B-tree's removal is
//! O(log n), with a fraction of a B-tree's code (it counts in the browser build).
//!
//! The order is "the serial distance from the first entry", so it stays a total order
//! however the ids wrap: every id in the deque is at distance 0 to 2^32 - 1 from the
//! first, and dropping the first entry lowers every distance by the same amount.

use std::collections::VecDeque;

use super::link::Unsettled;
use crate::types::SequenceNo;

/// Holes are compacted away once there are more than this many and they are over half the
/// deque (a few holes are left for the ends to drop).
const HOLES_KEPT: usize = 16;

/// A link's unsettled deliveries, by delivery-id (see the module documentation).
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliveryMap {
    /// (delivery-id, the delivery or `None` once removed), in serial order from the first
    /// entry, which is never a hole (nor is the last).
    entries: VecDeque<(u32, Option<Unsettled>)>,
    /// How many entries are holes.
    holes: usize,
}

impl DeliveryMap {
    /// The serial distance of `id` from the first entry.
    fn distance(&self, id: u32) -> u32 {
        id.wrapping_sub(self.entries.front().map_or(id, |e| e.0))
    }

    /// Where `id` is (`Ok`), or where it would go (`Err`).
    fn search(&self, id: u32) -> Result<usize, usize> {
        let d = self.distance(id);
        let base = self.entries.front().map_or(0, |e| e.0);
        self.entries.binary_search_by_key(&d, |e| e.0.wrapping_sub(base))
    }

    /// The first index whose distance is at least `d`.
    fn first_at(&self, d: u32) -> usize {
        let base = self.entries.front().map_or(0, |e| e.0);
        self.entries.partition_point(|e| e.0.wrapping_sub(base) < d)
    }

    /// Adds (or replaces) delivery `id`; the delivery it replaced, if any.
    pub(crate) fn insert(&mut self, id: u32, u: Unsettled) -> Option<Unsettled> {
        match self.search(id) {
            Ok(i) => {
                let old = self.entries[i].1.replace(u);
                if old.is_none() {
                    self.holes -= 1;
                }
                old
            }
            Err(i) if i == self.entries.len() => {
                self.entries.push_back((id, Some(u)));
                None
            }
            Err(i) => {
                // Out of order (a receiver's peer chooses the ids; honest ones number a
                // session's deliveries in order): the deque moves the shorter side, so an
                // id just after the oldest costs as little as one at the end.
                self.entries.insert(i, (id, Some(u)));
                None
            }
        }
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Unsettled> {
        self.search(id).ok().and_then(|i| self.entries[i].1.as_ref())
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Unsettled> {
        self.search(id).ok().and_then(|i| self.entries[i].1.as_mut())
    }

    pub(crate) fn remove(&mut self, id: u32) -> Option<Unsettled> {
        let i = self.search(id).ok()?;
        let u = self.entries[i].1.take()?;
        self.holes += 1;
        self.tidy();
        Some(u)
    }

    /// Drops the holes at either end, and all of them once they are too many.
    fn tidy(&mut self) {
        while self.entries.front().is_some_and(|e| e.1.is_none()) {
            self.entries.pop_front();
            self.holes -= 1;
        }
        while self.entries.back().is_some_and(|e| e.1.is_none()) {
            self.entries.pop_back();
            self.holes -= 1;
        }
        if self.holes > HOLES_KEPT && self.holes * 2 > self.entries.len() {
            self.entries.retain(|e| e.1.is_some());
            self.holes = 0;
        }
    }

    /// The ids in `first..=last` (serial numbers: the range may wrap) that the map holds,
    /// in serial order from `first`; bounded by the map, whatever the range claims.
    pub(crate) fn ids_in(&self, first: SequenceNo, last: SequenceNo) -> Vec<u32> {
        let (lo, hi) = (self.distance(first.0), self.distance(last.0));
        let n = self.entries.len();
        let from = self.first_at(lo);
        // How many entries from `from` on are in the range: up to `last` (the range may go
        // round past the first entry, and on from there).
        let through_last = if hi == u32::MAX { n } else { self.first_at(hi + 1) };
        let count = if lo <= hi { through_last - from } else { n - from + through_last };
        let mut ids = Vec::new();
        for k in from..from + count {
            let (id, u) = &self.entries[k % n];
            if u.is_some() {
                ids.push(*id);
            }
        }
        ids
    }

    /// The ids, in serial order from the first.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().filter(|e| e.1.is_some()).map(|e| e.0)
    }

    /// The deliveries, in serial order of their ids.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Unsettled> {
        self.entries.iter().filter_map(|e| e.1.as_ref())
    }

    /// How many deliveries the map holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len() - self.holes
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn delivery(id: u32) -> Unsettled {
        Unsettled { tag: Bytes::copy_from_slice(&id.to_be_bytes()), state: None }
    }

    /// The model: a B-tree by the serial distance from `base`, which every id the test
    /// uses is near (within 2^31 after it).
    fn model_ids(m: &BTreeMap<u32, u32>, first: u32, last: u32) -> Vec<u32> {
        // An id is in the range when its distance from first is at most last's.
        let span = last.wrapping_sub(first);
        let mut ids: Vec<u32> =
            m.values().copied().filter(|id| id.wrapping_sub(first) <= span).collect();
        ids.sort_by_key(|id| id.wrapping_sub(first));
        ids
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Range(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u32..200).prop_map(Op::Insert),
            3 => (0u32..220).prop_map(Op::Remove),
            1 => (0u32..220, 0u32..60).prop_map(|(a, n)| Op::Range(a, n)),
        ]
    }

    proptest! {
        /// Against a B-tree, with ids counted from a base near the wrap (so they wrap
        /// past 4294967295 half the time), inserted mostly in order and removed in any.
        #[test]
        fn matches_a_btree(base in prop_oneof![Just(u32::MAX - 100), Just(7u32), any::<u32>()],
                           ops in proptest::collection::vec(op(), 1..400),
                           in_order in any::<bool>()) {
            let mut map = DeliveryMap::default();
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(n) => {
                        let n = if in_order { next += 1 + n % 3; next } else { n };
                        let id = base.wrapping_add(n);
                        let had = model.insert(n, id).is_some();
                        prop_assert_eq!(map.insert(id, delivery(id)).is_some(), had);
                    }
                    Op::Remove(n) => {
                        let n = if in_order { n.min(next) } else { n };
                        let id = base.wrapping_add(n);
                        let had = model.remove(&n).is_some();
                        let got = map.remove(id);
                        prop_assert_eq!(got.is_some(), had);
                        if let Some(u) = got {
                            prop_assert_eq!(u, delivery(id));
                        }
                    }
                    Op::Range(a, n) => {
                        let first = base.wrapping_add(a);
                        let last = first.wrapping_add(n);
                        prop_assert_eq!(
                            map.ids_in(SequenceNo(first), SequenceNo(last)),
                            model_ids(&model, first, last)
                        );
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                // In serial order from the first entry (the oldest, when ids come in
                // order; one added "before" it goes after the others).
                let ids: Vec<u32> = map.ids().collect();
                let front = ids.first().copied().unwrap_or(0);
                let mut want: Vec<u32> = model.values().copied().collect();
                want.sort_by_key(|id| id.wrapping_sub(front));
                prop_assert_eq!(&ids, &want);
                if in_order {
                    prop_assert_eq!(ids, model.values().copied().collect::<Vec<_>>());
                }
                for (n, id) in &model {
                    prop_assert!(map.get(*id).is_some(), "{} ({}) lost", id, n);
                }
                prop_assert!(map.holes * 2 <= map.entries.len() || map.holes <= HOLES_KEPT);
            }
        }
    }

    #[test]
    fn a_range_round_the_whole_serial_space_holds_everything() {
        let mut map = DeliveryMap::default();
        for id in [u32::MAX - 1, u32::MAX, 0, 1] {
            map.insert(id, delivery(id));
        }
        // first..=last covering 2^32 ids: every one, in serial order from first.
        assert_eq!(
            map.ids_in(SequenceNo(0), SequenceNo(u32::MAX)),
            vec![0, 1, u32::MAX - 1, u32::MAX]
        );
        assert_eq!(map.ids_in(SequenceNo(u32::MAX), SequenceNo(0)), vec![u32::MAX, 0]);
        assert_eq!(map.ids_in(SequenceNo(1), SequenceNo(u32::MAX - 1)), vec![1, u32::MAX - 1]);
        assert_eq!(map.ids_in(SequenceNo(2), SequenceNo(u32::MAX - 2)), Vec::<u32>::new());
        assert_eq!(map.ids().collect::<Vec<_>>(), vec![u32::MAX - 1, u32::MAX, 0, 1]);
    }

    #[test]
    fn settling_out_of_order_keeps_the_deque_small() {
        let mut map = DeliveryMap::default();
        for id in 0..10_000u32 {
            map.insert(id, delivery(id));
        }
        // Keep the oldest, settle every other: holes are compacted away.
        for id in (1..10_000u32).filter(|id| id % 2 == 1) {
            assert!(map.remove(id).is_some());
        }
        assert_eq!(map.len(), 5_000);
        assert!(map.entries.len() <= 2 * 5_000 + HOLES_KEPT);
        for id in (2..10_000u32).step_by(2) {
            map.remove(id);
        }
        assert_eq!(map.ids().collect::<Vec<_>>(), vec![0]);
        assert!(map.entries.len() <= 1 + HOLES_KEPT);
        assert_eq!(map.remove(0).map(|u| u.tag), Some(Bytes::copy_from_slice(&[0, 0, 0, 0])));
        assert!(map.is_empty() && map.entries.is_empty());
    }
}

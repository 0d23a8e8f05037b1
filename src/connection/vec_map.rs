//! [`VecMap`]: the engine's small maps (the peer's channels and handles, transactions,
//! retained unsettled state) as one sorted vector each.
//!
//! They hold a handful of entries (bounded by channel-max, handle-max, the coordinator's
//! limit, `retained_links`) and are read on every frame: a binary search over a few
//! entries is as fast as hashing the key, and the code is a fraction of a hash table's
//! (it counts in the browser build, where every map type is its own copy).

use std::borrow::Borrow;

/// A map kept as a vector sorted by key. Lookups are O(log n); an insert or removal moves
/// the entries after it (O(n)), cheap for the few entries these maps hold.
#[derive(Clone, Debug)]
pub(crate) struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub(crate) const fn new() -> Self {
        Self(Vec::new())
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Every operation answers as a B-tree map does, and iteration is in key order.
        #[test]
        fn answers_as_a_btree_map(ops in proptest::collection::vec((0u8..4, 0u16..24, any::<u32>()), 0..200)) {
            let mut ours = VecMap::new();
            let mut theirs = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(ours.insert(k, v), theirs.insert(k, v)),
                    1 => prop_assert_eq!(ours.remove(&k), theirs.remove(&k)),
                    2 => {
                        if let Some(x) = ours.get_mut(&k) {
                            *x = x.wrapping_add(v);
                        }
                        if let Some(x) = theirs.get_mut(&k) {
                            *x = x.wrapping_add(v);
                        }
                    }
                    _ => prop_assert_eq!(ours.contains_key(&k), theirs.contains_key(&k)),
                }
                prop_assert_eq!(ours.get(&k), theirs.get(&k));
                prop_assert_eq!(ours.len(), theirs.len());
                prop_assert_eq!(ours.is_empty(), theirs.is_empty());
            }
            let a: Vec<_> = ours.iter().map(|(k, v)| (*k, *v)).collect();
            let b: Vec<_> = theirs.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(a, b);
            prop_assert!(ours.keys().copied().eq(theirs.keys().copied()));
            prop_assert!(ours.values().copied().eq(theirs.values().copied()));
            ours.clear();
            prop_assert!(ours.is_empty());
        }
    }

    #[test]
    fn looks_up_by_a_borrowed_key() {
        let mut m: VecMap<bytes::Bytes, u8> = VecMap::new();
        m.insert(bytes::Bytes::from_static(b"txn-2"), 2);
        m.insert(bytes::Bytes::from_static(b"txn-1"), 1);
        assert_eq!(m.get(&b"txn-1"[..]), Some(&1));
        assert_eq!(m.remove(&b"txn-2"[..]), Some(2));
        assert_eq!(m.get(&b"txn-2"[..]), None);
    }
}

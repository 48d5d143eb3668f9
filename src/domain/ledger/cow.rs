//! A map that copies cheaply: a shared, immutable base and a small overlay of what changed
//! since the base was last rebuilt.
//!
//! `decide` works on a copy of the account's fold. With the fold's maps in this form the
//! copy costs one reference count and the overlay (kept small by [`CowMap::compact`]), and
//! changing a value copies that one value, not the map.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeBounds;
use std::sync::Arc;

/// An ordered map as `base` changed by `overlay`, where `None` removes the key.
pub(super) struct CowMap<K, V> {
    base: Arc<BTreeMap<K, V>>,
    overlay: BTreeMap<K, Option<V>>,
}

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        CowMap {
            base: Arc::new(BTreeMap::new()),
            overlay: BTreeMap::new(),
        }
    }
}

impl<K: Clone, V: Clone> Clone for CowMap<K, V> {
    fn clone(&self) -> Self {
        CowMap {
            base: Arc::clone(&self.base),
            overlay: self.overlay.clone(),
        }
    }
}

impl<K: Ord + Clone, V: Clone> CowMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        match self.overlay.get(k) {
            Some(v) => v.as_ref(),
            None => self.base.get(k),
        }
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }

    /// The value under `k` to change, copied from the base into the overlay first.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        if !self.overlay.contains_key(k) {
            let v = self.base.get(k)?.clone();
            self.overlay.insert(k.clone(), Some(v));
        }
        self.overlay.get_mut(k)?.as_mut()
    }

    /// The value under `k` to change, inserting the default if there is none.
    pub fn get_or_insert_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        let base = &self.base;
        self.overlay
            .entry(k)
            .or_insert_with_key(|k| base.get(k).cloned())
            .get_or_insert_with(V::default)
    }

    pub fn insert(&mut self, k: K, v: V) {
        self.overlay.insert(k, Some(v));
    }

    pub fn remove(&mut self, k: &K) {
        if self.base.contains_key(k) {
            self.overlay.insert(k.clone(), None);
        } else {
            self.overlay.remove(k);
        }
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        merge(self.base.iter(), self.overlay.iter())
    }

    /// The entries with keys in `range`, in key order.
    pub fn range<R: RangeBounds<K> + Clone>(&self, range: R) -> impl Iterator<Item = (&K, &V)> {
        merge(self.base.range(range.clone()), self.overlay.range(range))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// How many changes the overlay holds.
    #[cfg(test)]
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Folds the overlay into the base when this map is the base's only owner (it costs
    /// what the changes cost), or, when the base is shared, once the overlay holds more
    /// than `max_overlay` changes (copying the base once for that many changes).
    pub fn compact(&mut self, max_overlay: usize) {
        if self.overlay.is_empty()
            || (self.overlay.len() <= max_overlay && Arc::get_mut(&mut self.base).is_none())
        {
            return;
        }
        let base = Arc::make_mut(&mut self.base);
        for (k, v) in std::mem::take(&mut self.overlay) {
            match v {
                Some(v) => {
                    base.insert(k, v);
                }
                None => {
                    base.remove(&k);
                }
            }
        }
    }
}

/// The base's entries with the overlay's in place of the same keys, less those it removes.
fn merge<'a, K: Ord + 'a, V: 'a>(
    base: impl Iterator<Item = (&'a K, &'a V)>,
    overlay: impl Iterator<Item = (&'a K, &'a Option<V>)>,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    let mut base = base.peekable();
    let mut overlay = overlay.peekable();
    std::iter::from_fn(move || {
        loop {
            let from_base = match (base.peek().copied(), overlay.peek().copied()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((b, _)), Some((o, _))) => match b.cmp(o) {
                    Ordering::Less => true,
                    Ordering::Equal => {
                        base.next();
                        false
                    }
                    Ordering::Greater => false,
                },
            };
            if from_base {
                return base.next();
            }
            if let Some((k, Some(v))) = overlay.next() {
                return Some((k, v));
            }
        }
    })
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for CowMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone + Eq> Eq for CowMap<K, V> {}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for CowMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn contents(m: &CowMap<u8, i32>) -> Vec<(u8, i32)> {
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn reads_see_the_overlay_over_the_base() {
        let mut m = CowMap::new();
        m.insert(1u8, 10);
        m.insert(2, 20);
        m.insert(3, 30);
        m.compact(0);
        assert_eq!(m.overlay_len(), 0);
        m.insert(2, 21);
        m.insert(4, 40);
        m.remove(&3);
        assert_eq!(m.get(&1), Some(&10));
        assert_eq!(m.get(&2), Some(&21));
        assert_eq!(m.get(&3), None);
        assert!(!m.contains_key(&3));
        assert_eq!(m.get(&4), Some(&40));
        assert_eq!(contents(&m), vec![(1, 10), (2, 21), (4, 40)]);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![10, 21, 40]);
        assert_eq!(
            m.range(2..=3).map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            vec![(2, 21)]
        );
    }

    #[test]
    fn a_change_to_a_copy_leaves_the_original_as_it_was() {
        let mut a = CowMap::new();
        a.insert(1u8, 10);
        a.insert(2, 20);
        a.compact(0);
        let mut b = a.clone();
        *b.get_mut(&1).expect("present") += 1;
        *b.get_or_insert_default(3) += 3;
        b.remove(&2);
        assert_eq!(contents(&a), vec![(1, 10), (2, 20)]);
        assert_eq!(contents(&b), vec![(1, 11), (3, 3)]);
        assert_ne!(a, b);
        // The base is shared: a small overlay stays an overlay.
        b.compact(8);
        assert_eq!(b.overlay_len(), 3);
        b.compact(2);
        assert_eq!(b.overlay_len(), 0);
        assert_eq!(contents(&a), vec![(1, 10), (2, 20)]);
        assert_eq!(contents(&b), vec![(1, 11), (3, 3)]);
    }

    #[test]
    fn a_sole_owner_compacts_at_once() {
        let mut m = CowMap::new();
        m.insert(5u8, 1);
        m.compact(64);
        assert_eq!(m.overlay_len(), 0);
        assert_eq!(m.get_mut(&6), None);
        assert_eq!(m.overlay_len(), 0, "a missing key copies nothing");
        m.remove(&7);
        assert_eq!(m.overlay_len(), 0, "removing a missing key leaves no mark");
        m.insert(7, 2);
        m.remove(&7);
        assert_eq!(m.overlay_len(), 0);
        assert_eq!(format!("{m:?}"), "{5: 1}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, i32),
        Remove(u8),
        Add(u8, i32),
        AddOrInsert(u8, i32),
        Compact(usize),
        Fork,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..24, any::<i32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u8..24).prop_map(Op::Remove),
            (0u8..24, -5i32..5).prop_map(|(k, v)| Op::Add(k, v)),
            (0u8..24, -5i32..5).prop_map(|(k, v)| Op::AddOrInsert(k, v)),
            (0usize..6).prop_map(Op::Compact),
            Just(Op::Fork),
        ]
    }

    proptest! {
        /// Any sequence of changes reads as the same changes to a plain map, and leaves
        /// every earlier copy as it was.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..80)) {
            let mut m = CowMap::new();
            let mut model: BTreeMap<u8, i32> = BTreeMap::new();
            let mut forks: Vec<(CowMap<u8, i32>, BTreeMap<u8, i32>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        m.insert(k, v);
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        m.remove(&k);
                        model.remove(&k);
                    }
                    Op::Add(k, d) => {
                        let got = m.get_mut(&k).map(|v| {
                            *v = v.wrapping_add(d);
                            *v
                        });
                        let want = model.get_mut(&k).map(|v| {
                            *v = v.wrapping_add(d);
                            *v
                        });
                        prop_assert_eq!(got, want);
                    }
                    Op::AddOrInsert(k, d) => {
                        let v = m.get_or_insert_default(k);
                        *v = v.wrapping_add(d);
                        let w = model.entry(k).or_default();
                        *w = w.wrapping_add(d);
                    }
                    Op::Compact(max) => m.compact(max),
                    Op::Fork => forks.push((m.clone(), model.clone())),
                }
                let want: Vec<(u8, i32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(contents(&m), want);
                for k in 0..24u8 {
                    prop_assert_eq!(m.get(&k), model.get(&k));
                }
                let got: Vec<(u8, i32)> = m.range(5..15).map(|(k, v)| (*k, *v)).collect();
                let want: Vec<(u8, i32)> = model.range(5..15).map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(got, want);
            }
            for (fork, model) in &forks {
                let want: Vec<(u8, i32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(contents(fork), want);
            }
        }
    }
}

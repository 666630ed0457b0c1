//! A map with a capacity: past it, the entry inserted longest ago is forgotten.
//!
//! The eviction order is one queue of (insertion number, key), kept in a single allocation: a
//! removed key's place is left in the queue and skipped (its number no longer matches), and the
//! queue is compacted when such places outnumber the entries.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Below this room a map does not shrink: small maps are not worth reallocating.
const SHRINK_ABOVE: usize = 1024;

/// A map that holds at most `capacity` entries, forgetting the oldest insertion first.
///
/// Updating an entry keeps its place; removing one removes it from the eviction order too,
/// so a later insertion of the same key starts afresh.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    /// (insertion number, key), oldest first; a place whose number is not its key's current one
    /// is stale.
    order: VecDeque<(u64, K)>,
    next: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// An empty map that holds at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new(), next: 0, capacity: capacity.max(1) }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// The value of `key`, to change in place (its place in the order stays).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(v, _)| v)
    }

    /// Whether `key` is held.
    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets `key` to `value` and returns the value it replaced. A new key goes last in the
    /// order, and the oldest entries are forgotten past the capacity; a key already held keeps
    /// its place.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some((old, _)) = self.entries.get_mut(&key) {
            return Some(std::mem::replace(old, value));
        }
        let n = self.next;
        self.next += 1;
        self.order.push_back((n, key.clone()));
        self.entries.insert(key, (value, n));
        while self.entries.len() > self.capacity {
            let Some((n, oldest)) = self.order.pop_front() else { break };
            if self.is_current(n, &oldest) {
                self.entries.remove(&oldest);
            }
        }
        self.skip_stale();
        None
    }

    /// The value of `key`, inserting `make()` first if it is not held.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(&key) {
            self.insert(key.clone(), make());
        }
        match self.entries.get_mut(&key) {
            Some((v, _)) => v,
            None => unreachable!("a key just inserted is held: the capacity is at least one"),
        }
    }

    /// Forgets `key`, and returns its value. A map left mostly empty gives its room back, so
    /// that a burst of entries does not hold memory after they are gone.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, _) = self.entries.remove(key)?;
        self.skip_stale();
        if self.order.len() > 2 * self.entries.len() + SHRINK_ABOVE {
            // More stale places than entries: keep only the live ones.
            let entries = &self.entries;
            self.order.retain(|(n, k)| entries.get(k).is_some_and(|(_, m)| m == n));
        }
        if self.entries.capacity() > SHRINK_ABOVE && self.entries.len() * 4 < self.entries.capacity() {
            self.entries.shrink_to(self.entries.len() * 2);
            self.order.shrink_to(self.entries.len() * 2);
        }
        Some(value)
    }

    /// How many entries it has room for without growing (for tests of its memory).
    pub fn room(&self) -> usize {
        self.entries.capacity()
    }

    /// The entry inserted longest ago.
    pub fn oldest(&self) -> Option<(&K, &V)> {
        let (_, key) = self.order.front()?;
        self.entries.get(key).map(|(v, _)| (key, v))
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (v, _))| (k, v))
    }

    /// Whether the place numbered `n` is `key`'s current one.
    fn is_current(&self, n: u64, key: &K) -> bool {
        self.entries.get(key).is_some_and(|(_, m)| *m == n)
    }

    /// Drops stale places from the front, so that the front is the oldest entry.
    fn skip_stale(&mut self) {
        while let Some((n, key)) = self.order.front() {
            if self.is_current(*n, key) {
                break;
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let mut m = BoundedMap::new(2);
        m.insert(1, 'a');
        m.insert(2, 'b');
        m.insert(3, 'c');
        assert_eq!(m.get(&1), None);
        assert_eq!(m.get(&2), Some(&'b'));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn an_update_keeps_its_place() {
        let mut m = BoundedMap::new(2);
        m.insert(1, 'a');
        m.insert(2, 'b');
        assert_eq!(m.insert(1, 'z'), Some('a'));
        m.insert(3, 'c');
        assert_eq!(m.get(&1), None, "1 is still the oldest");
        assert_eq!(m.get(&2), Some(&'b'));
    }

    #[test]
    fn a_removed_key_leaves_the_order_too() {
        let mut m = BoundedMap::new(2);
        m.insert(1, 'a');
        m.insert(2, 'b');
        assert_eq!(m.remove(&1), Some('a'));
        m.insert(1, 'c');
        m.insert(3, 'd');
        // Had the first 1 stayed in the order, its eviction would have taken the new 1.
        assert_eq!(m.get(&2), None, "2 is the oldest now");
        assert_eq!(m.get(&1), Some(&'c'));
        assert_eq!(m.get(&3), Some(&'d'));
        assert_eq!(m.oldest(), Some((&1, &'c')), "no stale place at the front");
    }

    #[test]
    fn a_map_emptied_after_a_burst_gives_its_room_back() {
        let mut m = BoundedMap::new(100_000);
        for i in 0..50_000 {
            m.insert(i, i);
        }
        let burst = m.room();
        for i in 0..49_990 {
            m.remove(&i);
        }
        assert!(m.room() * 16 < burst, "room {} after a burst of {burst}", m.room());
        assert_eq!(m.get(&49_995), Some(&49_995));
    }

    #[test]
    fn stale_places_do_not_pile_up() {
        let mut m = BoundedMap::new(10);
        m.insert(1_000_000, 0); // stays at the front, so stale places pile up behind it
        for i in 0..100_000u32 {
            m.insert(i % 7, i);
            m.remove(&(i % 7));
        }
        assert!(m.order.len() <= 2 * m.len() + SHRINK_ABOVE, "{} places for {} entries", m.order.len(), m.len());
        assert_eq!(m.oldest(), Some((&1_000_000, &0)));
    }

    #[test]
    fn get_or_insert_with_inserts_once() {
        let mut m = BoundedMap::new(4);
        *m.get_or_insert_with(7, || 0) += 1;
        *m.get_or_insert_with(7, || 100) += 1;
        assert_eq!(m.get(&7), Some(&2));
    }
}

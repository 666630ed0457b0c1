//! Deadlines kept in time order, so that a wake-up looks only at what is due.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// At most one deadline per key, ordered by time (ties by key).
#[derive(Debug)]
pub struct Deadlines<K> {
    by_time: BTreeSet<(Instant, K)>,
    at: HashMap<K, Instant>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self { by_time: BTreeSet::new(), at: HashMap::new() }
    }
}

impl<K: Hash + Ord + Clone> Deadlines<K> {
    /// Sets `key`'s deadline to `at`, replacing the one it had.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.at.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Drops `key`'s deadline, if it has one.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.at.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// `key`'s deadline.
    pub fn get(&self, key: &K) -> Option<Instant> {
        self.at.get(key).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the earliest key whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.at.remove(&key);
        Some(key)
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_only_what_is_due_in_time_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Deadlines::default();
        d.set("b", t0 + ms(20));
        d.set("a", t0 + ms(10));
        d.set("c", t0 + ms(30));
        assert_eq!(d.next(), Some(t0 + ms(10)));
        assert_eq!(d.pop_due(t0 + ms(25)), Some("a"));
        assert_eq!(d.pop_due(t0 + ms(25)), Some("b"));
        assert_eq!(d.pop_due(t0 + ms(25)), None);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn set_moves_and_cancel_drops() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Deadlines::default();
        d.set(1, t0 + ms(10));
        d.set(1, t0 + ms(50));
        assert_eq!(d.pop_due(t0 + ms(20)), None, "the old deadline is gone");
        assert_eq!(d.get(&1), Some(t0 + ms(50)));
        d.cancel(&1);
        assert!(d.is_empty());
        assert_eq!(d.next(), None);
    }
}

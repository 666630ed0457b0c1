//! What waits for mailboxes to be learnt: each waiter parked until every mailbox it needs is
//! known (or could not be read), and the mailboxes whose open job is out.
//!
//! It owns that bookkeeping only: it must not touch the store or make jobs (the storage port
//! does), nor look inside a waiter (of the core's type `W`).

use std::collections::HashMap;

use chat_proto::Name;

/// A waiter parked until `left` mailboxes are known.
#[derive(Debug)]
struct Slot<W> {
    left: usize,
    failed: Vec<Name>,
    waiter: W,
}

/// The parked waiters, and the mailboxes being learnt.
#[derive(Debug)]
pub(crate) struct Parked<W> {
    /// Mailboxes being learnt, each with the slots that wait on it.
    opening: HashMap<Name, Vec<u64>>,
    slots: HashMap<u64, Slot<W>>,
    next: u64,
}

impl<W> Parked<W> {
    pub fn new() -> Self {
        Self { opening: HashMap::new(), slots: HashMap::new(), next: 0 }
    }

    /// Parks `waiter` until every one of `names` (not empty) is learnt. Returns the names not
    /// being learnt yet, whose open jobs are to be made.
    pub fn park(&mut self, names: Vec<Name>, waiter: W) -> Vec<Name> {
        let slot = self.next;
        self.next += 1;
        self.slots.insert(slot, Slot { left: names.len(), failed: Vec::new(), waiter });
        let mut new = Vec::new();
        for name in names {
            let waiting = self.opening.entry(name.clone()).or_insert_with(|| {
                new.push(name);
                Vec::new()
            });
            waiting.push(slot);
        }
        new
    }

    /// Notes that `name` is being learnt with nothing parked on it yet. Returns false if it was
    /// already.
    pub fn learn(&mut self, name: &Name) -> bool {
        if self.opening.contains_key(name) {
            return false;
        }
        self.opening.insert(name.clone(), Vec::new());
        true
    }

    /// Whether `name` is being learnt.
    pub fn is_learning(&self, name: &Name) -> bool {
        self.opening.contains_key(name)
    }

    /// `name` is learnt (or, `failed`, could not be read): the waiters that waited for it
    /// last, each with the names that could not be read.
    pub fn learnt(&mut self, name: &Name, failed: bool) -> Vec<(W, Vec<Name>)> {
        let mut ready = Vec::new();
        for slot in self.opening.remove(name).unwrap_or_default() {
            let Some(s) = self.slots.get_mut(&slot) else { continue };
            s.left -= 1;
            if failed {
                s.failed.push(name.clone());
            }
            if s.left > 0 {
                continue;
            }
            if let Some(Slot { waiter, failed, .. }) = self.slots.remove(&slot) {
                ready.push((waiter, failed));
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    #[test]
    fn a_waiter_goes_on_once_its_last_mailbox_is_learnt_with_those_that_failed() {
        let mut p = Parked::new();
        assert_eq!(p.park(vec![name("bob"), name("carol")], 1), [name("bob"), name("carol")]);
        assert_eq!(p.park(vec![name("bob")], 2), Vec::<Name>::new(), "bob is being learnt already");
        let ready = p.learnt(&name("bob"), true);
        assert_eq!(ready, [(2, vec![name("bob")])]);
        assert!(p.is_learning(&name("carol")) && !p.is_learning(&name("bob")));
        assert_eq!(p.learnt(&name("carol"), false), [(1, vec![name("bob")])]);
        assert!(p.learn(&name("bob")) && !p.learn(&name("bob")));
    }
}

//! [`Durability`]: how much of one mailbox is known durable, so that a duplicate of a stored
//! message is acknowledged only when the copy it rests on is.
//!
//! A mailbox's records, oldest first, fall in three runs: the first `durable` ones are known on
//! disk (a sync that covered them succeeded, or a scan synced the file they were found in); the
//! last `unjournalled` ones have not been handed to a sync yet, so the next sync covers them;
//! those in between were handed to a sync not known to have succeeded (still running, failed,
//! or written by a run that was killed before its sync). A duplicate may rest on a record of the
//! first two runs only. This module owns those counts; it must not touch files or know records.

/// The durability of one mailbox's records, as counts (see the module docs). Counting the
/// unjournalled records from the end keeps the counts true when records leave from the front.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Durability {
    /// The first `durable` records are known durable.
    durable: usize,
    /// The last `unjournalled` records wait for the next sync to be handed to it.
    unjournalled: usize,
    /// A sync that covered records after the first `durable` failed: a later sync does not
    /// make them durable (after a failed `fdatasync` the next one may succeed without them),
    /// so `durable` stays where it is until the mailbox file itself is synced.
    stuck: bool,
}

impl Durability {
    /// `count` records, all known durable: found by a scan that synced the file, or written by
    /// a rewrite that did.
    pub(crate) fn synced(count: usize) -> Self {
        Self { durable: count, unjournalled: 0, stuck: false }
    }

    /// Whether a duplicate may rest on the record at `index` of `len`: it is durable, or the
    /// next sync covers it.
    pub(crate) fn settles(&self, index: usize, len: usize) -> bool {
        index < self.durable || index >= len.saturating_sub(self.unjournalled)
    }

    /// How many records are known durable (the first ones).
    pub(crate) fn durable(&self) -> usize {
        self.durable
    }

    /// How many of the last records wait for the next sync to be handed to it.
    pub(crate) fn unhanded(&self) -> usize {
        self.unjournalled
    }

    /// Whether the record at `index` is known durable.
    pub(crate) fn is_durable(&self, index: usize) -> bool {
        index < self.durable
    }

    /// The records `from..to` of `len` (none of them known durable) were dropped: those after
    /// them stay as they were (not handed to a sync yet).
    pub(crate) fn discarded(&mut self, from: usize, to: usize, len: usize) {
        self.durable = self.durable.min(from);
        self.unjournalled = self.unjournalled.min(len.saturating_sub(to));
    }

    /// A record was appended; the next sync covers it.
    pub(crate) fn pushed(&mut self) {
        self.unjournalled += 1;
    }

    /// The mailbox's `len` records were all handed to a sync: returns what its success covers
    /// (for [`Durability::covered`]).
    pub(crate) fn handed(&mut self, len: usize) -> usize {
        self.unjournalled = 0;
        len
    }

    /// A sync that covered the first `n` records succeeded.
    pub(crate) fn covered(&mut self, n: usize) {
        if !self.stuck {
            self.durable = self.durable.max(n);
        }
    }

    /// A sync that covered records after the durable ones failed (or never ran).
    pub(crate) fn failed(&mut self) {
        self.stuck = true;
    }

    /// The mailbox file was synced with its first `n` records written in it (a checkpoint): they
    /// are durable, whatever sync of the journal failed before.
    pub(crate) fn file_synced(&mut self, n: usize) {
        self.durable = self.durable.max(n);
        self.stuck = false;
    }

    /// The first `n` records were removed (they were durable, or they go anyway).
    pub(crate) fn removed_front(&mut self, n: usize) {
        self.durable = self.durable.saturating_sub(n);
    }

    /// `n` records not handed to a sync yet were put after these (a rewritten file's, with the
    /// appends made while it was rewritten).
    pub(crate) fn then_unhanded(&mut self, n: usize) {
        self.unjournalled += n;
    }
}

#[cfg(test)]
mod tests {
    use super::Durability;

    #[test]
    fn a_duplicate_rests_only_on_durable_or_unhanded_records() {
        let mut d = Durability::synced(2);
        d.pushed();
        assert!(d.settles(1, 3) && d.settles(2, 3), "durable, and not handed to a sync yet");
        let covers = d.handed(3);
        assert!(!d.settles(2, 3), "handed to a sync still running");
        d.pushed();
        assert!(d.settles(3, 4));
        d.covered(covers);
        assert!(d.settles(2, 4));
    }

    #[test]
    fn after_a_failed_sync_only_a_synced_file_makes_its_records_durable() {
        let mut d = Durability::synced(1);
        d.pushed();
        let _lost = d.handed(2);
        d.failed();
        d.pushed();
        let covers = d.handed(3);
        d.covered(covers);
        assert!(!d.settles(1, 3) && !d.settles(2, 3), "the failed sync's record is not durable");
        d.file_synced(3);
        assert!(d.settles(1, 3) && d.settles(2, 3));
    }
}

//! The anti-replay window of RFC 6479: a ring of 64-bit words over the newest counters seen.
//! A counter is taken once, and not at all once it falls more than [`WINDOW`] behind the newest.

const WORDS: usize = 32;
/// How far behind the newest counter a datagram may still arrive (reordered) and be taken.
pub(crate) const WINDOW: u64 = ((WORDS - 1) * 64) as u64;

pub(crate) struct Window {
    /// The newest counter taken plus one; 0 before the first.
    next: u64,
    ring: [u64; WORDS],
}

impl Window {
    pub(crate) fn new() -> Self {
        Self { next: 0, ring: [0; WORDS] }
    }

    /// Whether `counter` would be taken: newer than any so far, or within the window and not
    /// seen. Asked before the datagram is authenticated; [`Window::mark`] after.
    pub(crate) fn allows(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        // `next` is the newest plus one: up to WINDOW behind the newest is still taken.
        if self.next - counter > WINDOW + 1 {
            return false;
        }
        let (word, bit) = slot(counter);
        self.ring[word] & (1 << bit) == 0
    }

    /// Takes `counter` (which [`Window::allows`]).
    pub(crate) fn mark(&mut self, counter: u64) {
        if counter >= self.next {
            let newest_word = counter / 64;
            let from = if self.next == 0 { newest_word.saturating_sub(WORDS as u64) } else { (self.next - 1) / 64 };
            let advance = (newest_word - from).min(WORDS as u64);
            for step in 1..=advance {
                self.ring[((from + step) % WORDS as u64) as usize] = 0;
            }
            self.next = counter + 1;
        }
        let (word, bit) = slot(counter);
        self.ring[word] |= 1 << bit;
    }
}

fn slot(counter: u64) -> (usize, u32) {
    (((counter / 64) % WORDS as u64) as usize, (counter % 64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(w: &mut Window, n: u64) -> bool {
        let ok = w.allows(n);
        if ok {
            w.mark(n);
        }
        ok
    }

    #[test]
    fn each_counter_is_taken_once_in_any_order_within_the_window() {
        let mut w = Window::new();
        for n in [5, 3, 4, 0, 1, 2, 9, 6] {
            assert!(take(&mut w, n), "{n} is new");
        }
        for n in [0, 3, 5, 9] {
            assert!(!take(&mut w, n), "{n} again is a replay");
        }
        assert!(take(&mut w, 7));
        assert!(take(&mut w, 8));
    }

    #[test]
    fn a_counter_too_far_behind_the_newest_is_refused_and_a_jump_forgets_the_old_bits() {
        let mut w = Window::new();
        assert!(take(&mut w, 10));
        assert!(take(&mut w, 10 + WINDOW));
        assert!(!take(&mut w, 10), "seen");
        assert!(take(&mut w, 11), "less than WINDOW behind the newest is in");
        assert!(take(&mut w, 20_000));
        assert!(!take(&mut w, 20_000 - WINDOW - 1), "out of the window");
        assert!(take(&mut w, 20_000 - WINDOW + 64), "bits of a word reused after the jump are clear");
        assert!(!take(&mut w, u64::MAX), "the last counter is never used");
    }

    #[test]
    fn a_long_run_with_reordering_takes_everything_once() {
        let mut w = Window::new();
        let mut taken = 0;
        for block in 0..1000u64 {
            for n in (block * 100..block * 100 + 100).rev() {
                taken += u64::from(take(&mut w, n));
                assert!(!take(&mut w, n));
            }
        }
        assert_eq!(taken, 100_000);
    }
}

#[cfg(test)]
mod review {
    use super::*;

    #[test]
    fn a_counter_exactly_1984_behind_the_newest_is_still_taken_as_documented() {
        let mut w = Window::new();
        assert!(w.allows(WINDOW));
        w.mark(WINDOW);
        // docs/PROTOCOL.md: "a counter up to 1,984 behind the newest is still taken once".
        assert!(w.allows(0), "counter 0 is exactly {WINDOW} behind the newest {WINDOW}");
    }
}

//! The order of answers: in a script, the lines a command causes are shown in the order of the
//! commands, even while an earlier `send` still waits for its ACK (its retries, its fallback to
//! the server). Each command gets a turn; the lines of the oldest unfinished turn are shown at
//! once, the lines of later turns are held until every turn before them has finished.
//!
//! It owns only the held lines; it knows nothing of requests (the core says when a turn is
//! finished) and sends nothing. At a terminal it holds nothing: lines show as they come.

use std::collections::BTreeMap;

use crate::event::Event;

/// The lines of one command.
#[derive(Debug, Default)]
struct Turn {
    held: Vec<Event>,
    finished: bool,
}

/// The commands whose answers are not all shown yet, oldest first.
#[derive(Debug)]
pub(crate) struct Answers {
    in_order: bool,
    next: u64,
    turns: BTreeMap<u64, Turn>,
}

impl Answers {
    /// Answers kept in the order of their commands when `in_order`, shown as they come if not.
    pub fn new(in_order: bool) -> Self {
        Self { in_order, next: 0, turns: BTreeMap::new() }
    }

    /// A command starts: its turn.
    pub fn begin(&mut self) -> u64 {
        let turn = self.next;
        self.next += 1;
        if self.in_order {
            self.turns.insert(turn, Turn::default());
        }
        turn
    }

    /// A line caused by `turn`'s command: returned to show now, or held behind earlier turns.
    pub fn say(&mut self, turn: u64, e: Event) -> Option<Event> {
        let head = self.turns.first_key_value().map(|(t, _)| *t);
        match self.turns.get_mut(&turn) {
            Some(t) if head != Some(turn) => {
                t.held.push(e);
                None
            }
            _ => Some(e),
        }
    }

    /// The turns not finished yet.
    pub fn open(&self) -> Vec<u64> {
        self.turns.iter().filter(|(_, t)| !t.finished).map(|(n, _)| *n).collect()
    }

    /// `turn`'s command has nothing more to say. Returns the lines that may show now: those of
    /// the turns after it that were waiting only for it.
    pub fn finish(&mut self, turn: u64) -> Vec<Event> {
        if let Some(t) = self.turns.get_mut(&turn) {
            t.finished = true;
        }
        let mut show = Vec::new();
        while let Some(mut head) = self.turns.first_entry() {
            show.append(&mut head.get_mut().held);
            if !head.get().finished {
                break; // the new head: its later lines show as they come
            }
            head.remove();
        }
        show
    }

    /// Every line held, in order (the client is exiting).
    pub fn drain(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.turns).into_values().flat_map(|t| t.held).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Event {
        Event::Notice(s.into())
    }

    #[test]
    fn a_later_commands_lines_wait_for_the_earlier_one() {
        let mut a = Answers::new(true);
        let (send, list) = (a.begin(), a.begin());
        assert_eq!(a.say(list, line("row")), None, "held behind the send");
        assert_eq!(a.finish(list), vec![], "finished, still behind the send");
        assert_eq!(a.say(send, line("no ack")), Some(line("no ack")), "the oldest shows at once");
        assert_eq!(a.finish(send), vec![line("row")]);
        assert!(a.open().is_empty());
    }

    #[test]
    fn the_next_turn_shows_as_it_comes_once_it_is_the_oldest() {
        let mut a = Answers::new(true);
        let (first, second) = (a.begin(), a.begin());
        assert_eq!(a.say(second, line("a")), None);
        assert_eq!(a.finish(first), vec![line("a")]);
        assert_eq!(a.say(second, line("b")), Some(line("b")));
        assert_eq!(a.open(), vec![second]);
    }

    #[test]
    fn at_a_terminal_nothing_is_held() {
        let mut a = Answers::new(false);
        let (_, later) = (a.begin(), a.begin());
        assert_eq!(a.say(later, line("now")), Some(line("now")));
        assert!(a.open().is_empty());
    }
}

//! The campaign's bookkeeping and verdict: the tagged messages sent, which of them each run's
//! output acknowledged, and what each client showed. Pure: lines in, counts out, no process.
//!
//! Outcomes are tied to commands by order only (a script's answers come in command order), and
//! only where that cannot misattribute: a run whose outcome lines do not match its commands
//! counts as `unmatched` (a checker error) instead of being guessed at.

use std::collections::HashMap;

/// Every message text starts with a tag `cmp.<d|c>.<sender>.<n>`; nothing else prints this.
pub const TAG: &str = "cmp.";

/// Where a tagged message went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `send <to> …`.
    Direct { to: String },
    /// `send_all …`: owed to every other client of the campaign (all of them registered before
    /// the first message, so all are channel members from then on, online or not).
    Channel,
}

/// One `send` or `send_all` a client was given.
#[derive(Clone, Debug)]
pub struct Sent {
    pub tag: String,
    pub from: String,
    pub kind: Kind,
}

impl Sent {
    pub fn new(from: &str, kind: Kind, n: usize) -> Sent {
        let k = match kind {
            Kind::Direct { .. } => 'd',
            Kind::Channel => 'c',
        };
        Sent { tag: format!("{TAG}{k}.{from}.{n}"), from: from.to_owned(), kind }
    }

    /// The command line that sends it (the tag, then some words).
    pub fn command(&self, filler: usize) -> String {
        let words = ["hello", "and", "more", "text", "here"];
        let body: Vec<&str> = (0..filler % 6).map(|i| words[(filler + i) % words.len()]).collect();
        match &self.kind {
            Kind::Direct { to } => format!("send {to} {} {}", self.tag, body.join(" ")),
            Kind::Channel => format!("send_all {} {}", self.tag, body.join(" ")),
        }
    }

    /// Who must show it once, out of `names`.
    pub fn owed<'a>(&'a self, names: &'a [String]) -> Vec<&'a str> {
        match &self.kind {
            Kind::Direct { to } => vec![to.as_str()],
            Kind::Channel => names.iter().map(String::as_str).filter(|n| *n != self.from).collect(),
        }
    }
}

/// What a line of a client's stdout is to the checker.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The outcome of a `send`/`send_all` that says it was received or saved.
    Acked,
    /// Any other outcome of a `send`/`send_all`.
    NotAcked,
    /// `[Server not responding]`: the outcome of the command that failed; the client exits.
    Gone,
    /// The registration succeeded.
    Welcome,
    /// A message shown, by its tag.
    Shown(&'a str),
    Other,
}

/// Classifies one stdout line.
pub fn classify(line: &str) -> Line<'_> {
    if let Some(at) = line.find(TAG) {
        let tag = line[at..].split(|c: char| c.is_whitespace() || c == ']').next().unwrap_or("");
        return Line::Shown(tag);
    }
    const ACKED: [&str; 2] = [">>> [Message received by ", ">>> [Messages received by the server and saved]"];
    const NOT_ACKED: [&str; 8] = [
        ">>> [Server not responding.]",
        ">>> [Message for ",
        ">>> [Not kept for ",
        ">>> [Message not sent",
        ">>> [Message too long",
        ">>> [Not sent: ",
        ">>> [No client named ",
        ">>> [You are offline: ",
    ];
    match line {
        ">>> [Server not responding]" => Line::Gone,
        ">>> [Welcome, You are registered.]" => Line::Welcome,
        l if ACKED.iter().any(|p| l.starts_with(p)) => Line::Acked,
        l if NOT_ACKED.iter().any(|p| l.starts_with(p)) => Line::NotAcked,
        _ => Line::Other,
    }
}

/// How a client process ended, as far as the checker cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Still running, or SIGKILLed by the campaign: later commands may have no outcome yet.
    Cut,
    /// Exited on its own: every command must have its outcome line.
    Exited,
}

/// The send outcome lines of one run, in order, given the stdout length at which each send was
/// written (`issued`, ascending). Only lines after the run's first Welcome count (a registration
/// that fails at start answers no command), and a `[Server not responding]` while no send is
/// open answers a `dereg`, `reg` or fetch, not a send. Also returns how many other outcome
/// lines came while no send was open (answers to nothing: checker errors).
fn outcomes<'a>(lines: &'a [String], issued: &[usize]) -> (Vec<Line<'a>>, usize) {
    let start = lines.iter().position(|l| classify(l) == Line::Welcome).map_or(lines.len(), |i| i + 1);
    let (mut outs, mut stray) = (Vec::new(), 0);
    for (i, line) in lines.iter().enumerate().skip(start) {
        let line = classify(line);
        let open = issued.partition_point(|at| *at <= i) > outs.len();
        match line {
            Line::Gone if !open => {}
            Line::Acked | Line::NotAcked if !open => stray += 1,
            Line::Acked | Line::NotAcked | Line::Gone => outs.push(line),
            _ => {}
        }
    }
    (outs, stray)
}

/// Counts a run's send outcomes as its lines come, as [`attribute`] does (for the driver's
/// window: sends in flight are those given minus those answered).
#[derive(Debug, Default)]
pub struct Counter {
    next: usize,
    welcomed: bool,
    outs: usize,
}

impl Counter {
    /// The index of the next line to feed.
    pub fn next(&self) -> usize {
        self.next
    }

    /// Takes the lines from index [`Counter::next`] on; returns the outcomes counted so far.
    pub fn feed(&mut self, lines: &[String], issued: &[usize]) -> usize {
        for line in lines {
            let (i, line) = (self.next, classify(line));
            self.next += 1;
            if !self.welcomed {
                self.welcomed = line == Line::Welcome;
                continue;
            }
            let open = issued.partition_point(|at| *at <= i) > self.outs;
            if open && matches!(line, Line::Acked | Line::NotAcked | Line::Gone) {
                self.outs += 1;
            }
        }
        self.outs
    }
}

/// Which of a run's sends (written at the stdout lengths `issued`) were acknowledged (by
/// order), and how many outcome lines could not be tied to a send (missing or extra). Where
/// they do not match, only the outcomes before the first `[Server not responding]` are
/// trusted, as answers are in order until then.
pub fn attribute(lines: &[String], issued: &[usize], end: End) -> (Vec<bool>, usize) {
    let n = issued.len();
    let (outs, extra) = outcomes(lines, issued);
    let matched = extra == 0
        && match end {
            End::Cut => outs.len() <= n,
            End::Exited => outs.len() == n,
        };
    let trusted = if matched { outs.len() } else { outs.iter().position(|l| *l == Line::Gone).unwrap_or(outs.len()) };
    let mut acked = vec![false; n];
    for (i, out) in outs.iter().take(trusted.min(n)).enumerate() {
        acked[i] = *out == Line::Acked;
    }
    let unmatched = if matched { 0 } else { (outs.len() + extra).abs_diff(n).max(1) };
    (acked, unmatched)
}

/// The counts of one scenario.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub sent: usize,
    pub acked: usize,
    /// Deliveries owed for an acknowledged message and never shown.
    pub lost: usize,
    /// Deliveries shown more than once (each message and recipient counted once).
    pub doubled: usize,
    /// Outcome lines that could not be tied to their commands (checker errors).
    pub unmatched: usize,
    /// Tagged messages shown by a client they were not for.
    pub stray: usize,
    /// Some of the lost and doubled deliveries, `tag -> recipient`, for the failure message.
    pub examples: Vec<String>,
}

impl Tally {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.unmatched == 0 && self.stray == 0
    }
}

/// How many times each `(recipient, tag)` was shown, from every run of every client.
pub fn shown<'a>(runs: impl IntoIterator<Item = (&'a str, &'a [String])>) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for (name, lines) in runs {
        for line in lines {
            if let Line::Shown(tag) = classify(line) {
                *seen.entry((name.to_owned(), tag.to_owned())).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// The verdict over `sent` (with `acked` per message) and what was `shown`.
pub fn judge(sent: &[Sent], acked: &[bool], names: &[String], shown: &HashMap<(String, String), usize>) -> Tally {
    let mut t = Tally { sent: sent.len(), acked: acked.iter().filter(|a| **a).count(), ..Tally::default() };
    let mut owed: HashMap<(&str, &str), bool> = HashMap::new();
    for (s, a) in sent.iter().zip(acked) {
        for r in s.owed(names) {
            owed.insert((r, s.tag.as_str()), *a);
            if *a && shown.get(&(r.to_owned(), s.tag.clone())).is_none_or(|n| *n == 0) {
                t.lost += 1;
                note(&mut t.examples, format!("lost {} -> {r}", s.tag));
            }
        }
    }
    for ((r, tag), n) in shown {
        if !owed.contains_key(&(r.as_str(), tag.as_str())) {
            t.stray += 1;
            note(&mut t.examples, format!("stray {tag} shown by {r}"));
        } else if *n > 1 {
            t.doubled += 1;
            note(&mut t.examples, format!("doubled {tag} shown {n} times by {r}"));
        }
    }
    t
}

fn note(examples: &mut Vec<String>, what: String) {
    if examples.len() < 20 {
        examples.push(what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ls: &[&str]) -> Vec<String> {
        ls.iter().map(|l| (*l).to_owned()).collect()
    }

    const SAVED: &str = ">>> [Messages received by the server and saved]";
    const GONE: &str = ">>> [Server not responding]";
    const WELCOME: &str = ">>> [Welcome, You are registered.]";
    const OFFLINE: &str = ">>> [You are Offline. Bye.]";

    #[test]
    fn lines_are_told_apart() {
        assert_eq!(classify(">>> [Message received by bob.]"), Line::Acked);
        assert_eq!(classify(">>> [Message received by Server.]"), Line::Acked);
        assert_eq!(classify(SAVED), Line::Acked);
        assert_eq!(classify(">>> [Server not responding.]"), Line::NotAcked);
        assert_eq!(classify(GONE), Line::Gone);
        assert_eq!(classify(">>> [No ACK from bob, message sent to server.]"), Line::Other);
        assert_eq!(classify(">>> [Channel_Message a: cmp.c.a.3 hi]"), Line::Shown("cmp.c.a.3"));
        assert_eq!(classify(">>> a: 2026-11-23 14:05:09 cmp.d.a.4"), Line::Shown("cmp.d.a.4"));
    }

    #[test]
    fn outcomes_are_tied_to_commands_in_order_after_the_welcome() {
        let run = lines(&[GONE, ">>> [Exiting]"]);
        assert_eq!(attribute(&run, &[], End::Exited), (vec![], 0), "a failed start answers nothing");
        let run = lines(&[WELCOME, SAVED, ">>> [Server not responding.]", ">>> [Message received by Server.]"]);
        assert_eq!(attribute(&run, &[1, 1, 1], End::Cut), (vec![true, false, true], 0));
        assert_eq!(attribute(&run, &[1, 1, 1, 1], End::Cut), (vec![true, false, true, false], 0), "one cut off");
        assert_eq!(attribute(&run, &[1, 1, 1, 1], End::Exited).1, 1, "an exit leaves no command unanswered");
        assert_eq!(attribute(&run, &[1, 1], End::Cut).1, 1, "more outcomes than commands");
        assert_eq!(attribute(&run, &[1, 1, 4], End::Cut).1, 1, "an outcome before its command");
    }

    #[test]
    fn a_missing_line_after_an_exit_is_unmatched_and_only_what_came_before_counts() {
        // Three commands: the second failed; the third's held answer came after the exit.
        let run = lines(&[WELCOME, SAVED, GONE, ">>> [Exiting]", SAVED]);
        assert_eq!(attribute(&run, &[1, 1, 1], End::Exited), (vec![true, false, true], 0));
        // Four commands, one outcome missing: the SAVED after the exit is not guessed at.
        assert_eq!(attribute(&run, &[1, 1, 1, 1], End::Exited), (vec![true, false, false, false], 1));
        // The exit came while no send was open (a dereg, or a fetch after reg): not a send's.
        let run = lines(&[WELCOME, SAVED, OFFLINE, WELCOME, GONE, ">>> [Exiting]"]);
        assert_eq!(attribute(&run, &[1], End::Exited), (vec![true], 0));
        let mut counter = Counter::default();
        assert_eq!(counter.feed(&run[..3], &[1]), 1);
        assert_eq!(counter.feed(&run[3..], &[1]), 1);
        assert_eq!(counter.next(), run.len());
    }

    #[test]
    fn the_verdict_counts_lost_doubled_and_stray_deliveries() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let sent = vec![
            Sent::new("a", Kind::Direct { to: "b".into() }, 0),
            Sent::new("a", Kind::Channel, 1),
            Sent::new("b", Kind::Direct { to: "c".into() }, 2),
        ];
        let (b, c) = (lines(&[">>> a: cmp.d.a.0", ">>> [Channel_Message a: cmp.c.a.1]"]), lines(&[">>> a: cmp.d.a.0"]));
        let seen = shown([("b", &b[..]), ("c", &c[..]), ("c", &c[..])]);
        let t = judge(&sent, &[true, true, false], &names, &seen);
        assert_eq!((t.sent, t.acked, t.lost, t.doubled, t.stray), (3, 2, 1, 0, 1), "{t:?}");
        let seen = shown([("b", &b[..]), ("b", &b[..])]);
        let t = judge(&sent, &[true, true, false], &names, &seen);
        assert_eq!((t.lost, t.doubled), (1, 2), "{t:?}");
    }
}

//! How the client looks at a terminal (standard input and output both terminals): the prompt
//! with the name, the assignment's lines with additions beside them (the time of a live
//! message, who came or went with a table update), stable colours for names, an aligned `list`,
//! and Tab completion of commands and names.
//!
//! It owns what the display needs to know (this client's name, whether it is online, the names
//! the tables showed) and never decides anything about the protocol. A script never sees any of
//! it: [`crate::output`] prints [`Event`]'s lines as they are there.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use chat_proto::{ClientRow, Name, Table};
use chrono::Local;
use rustyline::completion::Completer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use unicode_width::UnicodeWidthStr;

use crate::event::{Event, Presence};

/// Colours for names, readable on dark and light backgrounds (SGR codes: green, yellow,
/// magenta, cyan, and bright blue, green, magenta, cyan). Red is left for trouble.
const PALETTE: [u8; 8] = [32, 33, 35, 36, 94, 92, 95, 96];

/// Names listed in full beside a table update before the rest are counted.
const NAMED: usize = 4;

/// The commands that take more after them, for Tab completion (which adds the space).
const WITH_MORE: [&str; 6] = ["send", "send_all", "dereg", "reg", "verify", "trust"];

/// The commands that stand alone, for Tab completion.
const ALONE: [&str; 3] = ["list", "help", "quit"];

/// The names Tab completes, shared between the display (which learns them from the tables) and
/// the line editor's thread.
pub(crate) type Names = Arc<Mutex<Vec<String>>>;

/// The prompt: the name, then the assignment's `>>> `.
pub(crate) fn prompt(me: &Name) -> String {
    format!("{me}>>> ")
}

/// Whether to colour: not when `NO_COLOR` is set to anything (<https://no-color.org>), nor on a
/// terminal that says it is dumb.
pub(crate) fn colour_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// The display's state: what it needs to turn events into terminal lines.
pub(crate) struct Screen {
    me: Name,
    colour: bool,
    /// This client is online as far as its own commands go: false after its `dereg`, true again
    /// after the welcome (its own table is not updated while it is offline).
    online: bool,
    /// Every name a table showed.
    known: BTreeSet<Name>,
    names: Names,
}

impl Screen {
    /// The display of the client named `me`, in colour or not.
    pub fn new(me: Name, colour: bool) -> Self {
        let names = Arc::new(Mutex::new(vec![me.to_string()]));
        let known = BTreeSet::from([me.clone()]);
        Self { me, colour, online: true, known, names }
    }

    /// The names Tab completes, kept up to date as tables come.
    pub fn names(&self) -> Names {
        Arc::clone(&self.names)
    }

    /// The lines `event` shows at the terminal, separated by newlines.
    pub fn render(&mut self, event: &Event) -> String {
        match event {
            Event::Welcome => self.online = true,
            Event::Offline => self.online = false,
            Event::TableUpdated(p) => self.learn(p.came.iter().chain(&p.went)),
            Event::List(Some(t)) => self.learn(t.clients.iter().map(|r| &r.name)),
            _ => {}
        }
        match event {
            Event::Chat { from, text } => format!(">>> {}: {text}{}", self.name(from), self.now()),
            Event::Channel { from, text } => {
                format!(">>> [Channel_Message {}: {text}]{}", self.name(from), self.now())
            }
            Event::Stored(m) => {
                let plain = event.to_string();
                plain.replacen(&format!(" {}: ", m.from), &format!(" {}: ", self.name(&m.from)), 1)
            }
            Event::Delivered { to } => format!(">>> [Message received by {}.]", self.name(to)),
            Event::NoAck { to } => format!(">>> [No ACK from {}, message sent to server.]", self.name(to)),
            Event::Exists { to } => format!(">>> [Client {} exists!!]", self.name(to)),
            Event::TableUpdated(p) => format!("{event}{}", self.presence(p)),
            Event::List(Some(t)) if !t.clients.is_empty() => self.list(t),
            _ => event.to_string(),
        }
    }

    /// Adds `names` to those Tab completes.
    fn learn<'a>(&mut self, names: impl Iterator<Item = &'a Name>) {
        let before = self.known.len();
        self.known.extend(names.cloned());
        if self.known.len() != before {
            let all = self.known.iter().map(ToString::to_string).collect();
            *self.names.lock().unwrap_or_else(PoisonError::into_inner) = all;
        }
    }

    /// `name` in its colour.
    fn name(&self, name: &Name) -> String {
        self.paint(name.as_str(), colour_of(name))
    }

    fn paint(&self, s: &str, sgr: u8) -> String {
        if self.colour { format!("\x1b[{sgr}m{s}\x1b[0m") } else { s.to_owned() }
    }

    /// The time now, beside a live message: two spaces, then `HH:MM` (dim).
    fn now(&self) -> String {
        format!("  {}", self.paint(&Local::now().format("%H:%M").to_string(), 2))
    }

    /// Beside a table update: ` bob is online; carol and dan are offline` (this client left
    /// out), or nothing.
    fn presence(&self, p: &Presence) -> String {
        let parts: Vec<String> = [(&p.came, "online"), (&p.went, "offline")]
            .into_iter()
            .filter_map(|(names, state)| {
                let others: Vec<&Name> = names.iter().filter(|n| **n != self.me).collect();
                self.who(&others).map(|(who, verb)| format!("{who} {verb} {state}"))
            })
            .collect();
        if parts.is_empty() { String::new() } else { format!(" {}", parts.join("; ")) }
    }

    /// `bob is`, `bob and carol are`, `a, b, c, d and 3 others are`; none for nobody.
    fn who(&self, names: &[&Name]) -> Option<(String, &'static str)> {
        let shown: Vec<String> = names.iter().take(NAMED).map(|n| self.name(n)).collect();
        let rest = names.len() - shown.len();
        let who = match (shown.as_slice(), rest) {
            ([], _) => return None,
            ([one], 0) => return Some((one.clone(), "is")),
            ([first @ .., last], 0) => format!("{} and {last}", first.join(", ")),
            (all, 1) => format!("{} and 1 other", all.join(", ")),
            (all, rest) => format!("{} and {rest} others", all.join(", ")),
        };
        Some((who, "are"))
    }

    /// `list` at the terminal: a header, then who is online, then who is not, each in name
    /// order, aligned by display width, this client's row marked (and offline after its
    /// `dereg`).
    fn list(&self, table: &Table) -> String {
        let mut rows: Vec<(&ClientRow, bool)> =
            table.clients.iter().map(|r| (r, if r.name == self.me { self.online } else { r.online })).collect();
        rows.sort_by(|(a, a_on), (b, b_on)| b_on.cmp(a_on).then_with(|| a.name.cmp(&b.name)));
        let name_w = rows.iter().map(|(r, _)| r.name.as_str().width()).chain([4]).max().unwrap_or(4);
        let ip_w = rows.iter().map(|(r, _)| r.addr.ip().to_string().len()).chain([7]).max().unwrap_or(7);
        let header = format!(">>> {}", pad("name", name_w));
        let header = format!("{header}  {:<ip_w$}  {:>5}  status", "address", "port");
        let mut out = self.paint(&header, 1);
        for (r, online) in rows {
            let name = format!("{}{}", self.name(&r.name), " ".repeat(name_w - r.name.as_str().width()));
            let status = if online { "online".to_owned() } else { self.paint("offline", 2) };
            let _ = write!(out, "\n>>> {name}  {:<ip_w$}  {:>5}  {status}", r.addr.ip().to_string(), r.addr.port());
            if r.name == self.me {
                let pad = if online { " " } else { "" };
                let _ = write!(out, " {pad}(you)");
            }
        }
        out
    }
}

/// `s` padded with spaces to `width` columns.
fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(s.width())))
}

/// The colour of `name`: the same in every run and on every machine (FNV-1a of its bytes).
fn colour_of(name: &Name) -> u8 {
    let hash = name.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    PALETTE[hash as usize % PALETTE.len()]
}

/// The line editor's helper: Tab completes a command as the first word, and a name as the
/// second (after `send`, `verify` or `trust` any name the tables showed; after `dereg` or `reg`
/// this client's own); the prompt's name in its colour.
pub(crate) struct Helper {
    me: Name,
    colour: bool,
    names: Names,
}

impl Helper {
    /// The helper of the client `me`, completing from `names`.
    pub fn new(me: Name, colour: bool, names: Names) -> Self {
        Self { me, colour, names }
    }
}

impl Completer for Helper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let earlier: Vec<&str> = before[..start].split_whitespace().collect();
        let mut candidates: Vec<String> = match earlier.as_slice() {
            [] => {
                let with_space = WITH_MORE.iter().map(|c| format!("{c} "));
                let alone = ALONE.iter().map(|c| (*c).to_owned());
                with_space.chain(alone).filter(|c| c.starts_with(word)).collect()
            }
            ["dereg" | "reg"] if self.me.as_str().starts_with(word) => vec![self.me.to_string()],
            ["send"] => self.matching(word, " "),
            ["verify" | "trust"] => self.matching(word, ""),
            _ => Vec::new(),
        };
        candidates.sort();
        Ok((start, candidates))
    }
}

impl Helper {
    /// The names that start with `word`, each followed by `then`.
    fn matching(&self, word: &str, then: &str) -> Vec<String> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.iter().filter(|n| n.starts_with(word)).map(|n| format!("{n}{then}")).collect()
    }
}

impl Highlighter for Helper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        match prompt.strip_prefix(self.me.as_str()) {
            Some(rest) if self.colour => Cow::Owned(format!("\x1b[{}m{}\x1b[0m{rest}", colour_of(&self.me), self.me)),
            _ => Cow::Borrowed(prompt),
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        false
    }
}

impl Hinter for Helper {
    type Hint = String;
}

impl Validator for Helper {}

impl rustyline::Helper for Helper {}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use chat_proto::Text;
    use rustyline::history::DefaultHistory;

    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    fn row(name: &str, port: u16, online: bool) -> ClientRow {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        ClientRow { name: n(name), addr, online, key: None, lan: None }
    }

    fn plain(me: &str) -> Screen {
        Screen::new(n(me), false)
    }

    #[test]
    fn the_assignments_lines_stay_with_the_time_beside_a_live_message() {
        let mut screen = plain("alice");
        let text = Text::new("hi there").expect("text");
        let chat = screen.render(&Event::Chat { from: n("bob"), text: text.clone() });
        let (line, time) = chat.split_at(chat.len() - 7);
        assert_eq!(line, ">>> bob: hi there");
        assert!(time.starts_with("  ") && time[2..].chars().filter(char::is_ascii_digit).count() == 4, "{chat:?}");
        let channel = screen.render(&Event::Channel { from: n("bob"), text });
        assert!(channel.starts_with(">>> [Channel_Message bob: hi there]  "), "{channel:?}");
        for event in [Event::Welcome, Event::Delivered { to: n("bob") }, Event::NoAck { to: n("bob") }, Event::Saved] {
            assert_eq!(screen.render(&event), event.to_string());
        }
    }

    #[test]
    fn names_have_one_colour_each_and_none_without_colour() {
        let mut screen = Screen::new(n("alice"), true);
        let line = screen.render(&Event::Delivered { to: n("bob") });
        let sgr = colour_of(&n("bob"));
        assert_eq!(line, format!(">>> [Message received by \x1b[{sgr}mbob\x1b[0m.]"));
        assert_eq!(colour_of(&n("bob")), sgr, "stable");
        let colours: BTreeSet<u8> =
            ["alice", "bob", "carol", "dan", "erin", "李雷", "🦀"].iter().map(|s| colour_of(&n(s))).collect();
        assert!(colours.len() > 3, "names spread over the palette: {colours:?}");
        assert!(!plain("alice").render(&Event::Delivered { to: n("bob") }).contains('\x1b'));
    }

    #[test]
    fn a_table_update_says_who_came_and_went_beside_the_line_leaving_out_this_client() {
        let mut screen = plain("alice");
        let update = |came: &[&str], went: &[&str]| {
            Event::TableUpdated(Presence {
                came: came.iter().map(|s| n(s)).collect(),
                went: went.iter().map(|s| n(s)).collect(),
            })
        };
        let cases = [
            (update(&[], &[]), ">>> [Client table updated.]"),
            (update(&["alice"], &[]), ">>> [Client table updated.]"),
            (update(&["bob"], &[]), ">>> [Client table updated.] bob is online"),
            (update(&[], &["bob"]), ">>> [Client table updated.] bob is offline"),
            (
                update(&["alice", "bob", "carol"], &["dan"]),
                ">>> [Client table updated.] bob and carol are online; dan is offline",
            ),
            (update(&["a", "b", "c"], &[]), ">>> [Client table updated.] a, b and c are online"),
            (update(&["a", "b", "c", "d", "e"], &[]), ">>> [Client table updated.] a, b, c, d and 1 other are online"),
            (
                update(&["a", "b", "c", "d", "e", "f"], &[]),
                ">>> [Client table updated.] a, b, c, d and 2 others are online",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(screen.render(&event), line);
        }
    }

    #[test]
    fn list_has_a_header_puts_who_is_online_first_aligns_wide_names_and_marks_this_client() {
        let mut screen = plain("alice");
        let clients =
            vec![row("alice", 5001, true), row("bob", 5002, false), row("李雷", 5003, true), row("🦀", 5004, true)];
        let table = Table { version: 3, clients };
        let shown = screen.render(&Event::List(Some(table.clone())));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                ">>> name   address     port  status",
                ">>> alice  127.0.0.1   5001  online  (you)",
                ">>> 李雷   127.0.0.1   5003  online",
                ">>> 🦀     127.0.0.1   5004  online",
                ">>> bob    127.0.0.1   5002  offline",
            ]
        );
        screen.render(&Event::Offline);
        let after = screen.render(&Event::List(Some(table)));
        assert_eq!(after.lines().nth(3), Some(">>> alice  127.0.0.1   5001  offline (you)"), "{after}");
        assert_eq!(screen.render(&Event::List(None)), ">>> [The client table is empty.]");
    }

    #[test]
    fn tab_completes_commands_and_the_names_the_tables_showed() {
        let mut screen = plain("alice");
        screen.render(&Event::TableUpdated(Presence { came: vec![n("bob"), n("李雷")], went: vec![n("barb")] }));
        let helper = Helper::new(n("alice"), false, screen.names());
        let history = DefaultHistory::new();
        let ctx = rustyline::Context::new(&history);
        let complete = |line: &str| helper.complete(line, line.len(), &ctx).expect("complete");
        assert_eq!(complete("se"), (0, vec!["send ".to_owned(), "send_all ".to_owned()]));
        assert_eq!(complete("li"), (0, vec!["list".to_owned()]));
        assert_eq!(complete("send b"), (5, vec!["barb ".to_owned(), "bob ".to_owned()]));
        assert_eq!(complete("send 李"), (5, vec!["李雷 ".to_owned()]));
        assert_eq!(complete("verify bo"), (7, vec!["bob".to_owned()]));
        assert_eq!(complete("dereg "), (6, vec!["alice".to_owned()]));
        assert_eq!(complete("send bob hel"), (9, vec![]), "not inside the message");
        assert_eq!(complete("send_all b"), (9, vec![]));
    }
}

//! The commands typed at the prompt: parsing a line into a [`Command`], nothing else.

use chat_proto::{Name, NameError, Text, TextError};

/// One command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `send <name> <message>`
    Send {
        /// The recipient.
        to: Name,
        /// The message: the rest of the line.
        text: Text,
    },
    /// `send_all <message>`
    SendAll {
        /// The message: the rest of the line.
        text: Text,
    },
    /// `dereg <name>`
    Dereg {
        /// Must be the client's own name.
        name: Name,
    },
    /// `reg <name>`
    Reg {
        /// Must be the client's own name.
        name: Name,
    },
    /// `verify <name>`: the safety number with that name's key
    Verify {
        /// Whose key.
        name: Name,
    },
    /// `trust <name>`: accept that name's new key
    Trust {
        /// Whose key.
        name: Name,
    },
    /// `list`
    List,
    /// `help`
    Help,
    /// `quit`
    Quit,
}

/// Why a line is not a command; the text is what the user is shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The first word is no command.
    #[error("Unknown command '{0}'. Type help for the commands.")]
    Unknown(String),
    /// An argument is missing, or one too many.
    #[error("Usage: {0}")]
    Usage(&'static str),
    /// The name argument breaks the name rules.
    #[error("Bad name: {0}.")]
    Name(NameError),
    /// The message is too long.
    #[error("Message too long: {0} bytes, the limit is {max}.", max = chat_proto::MAX_TEXT_BYTES)]
    TooLong(usize),
    /// The message is too long once encoded for the wire.
    #[error(
        "Message too long: {0} bytes once encoded (quotes, backslashes and tabs count twice), the limit is {max}.",
        max = chat_proto::MAX_TEXT_ESCAPED
    )]
    TooLongEncoded(usize),
    /// The message holds a control character.
    #[error("A message cannot contain control characters.")]
    ControlChar,
}

const SEND: &str = "send <name> <message>";
const SEND_ALL: &str = "send_all <message>";
const DEREG: &str = "dereg <name>";
const REG: &str = "reg <name>";
const VERIFY: &str = "verify <name>";
const TRUST: &str = "trust <name>";

/// The lines `help` prints.
pub const HELP: [&str; 9] = [
    "send <name> <message>   direct message to a client",
    "send_all <message>      message to everyone, through the server",
    "dereg <name>            go offline (your own name)",
    "reg <name>              come back online and get stored messages",
    "verify <name>           safety number to compare with that client",
    "trust <name>            accept that client's new key",
    "list                    show the client table",
    "help                    show this list",
    "quit                    go offline and exit",
];

/// Parses one line. `Ok(None)` for a blank line.
///
/// # Errors
/// [`CommandError`], whose text is meant for the user.
pub fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (word, rest) = split_word(line.trim_start());
    let cmd = match word {
        "" => return Ok(None),
        "send" => {
            let (to, text) = split_word(rest);
            if to.is_empty() || text.is_empty() {
                return Err(CommandError::Usage(SEND));
            }
            Command::Send { to: name(to)?, text: text_of(text)? }
        }
        "send_all" if rest.is_empty() => return Err(CommandError::Usage(SEND_ALL)),
        "send_all" => Command::SendAll { text: text_of(rest)? },
        "dereg" => Command::Dereg { name: only_name(rest, DEREG)? },
        "reg" => Command::Reg { name: only_name(rest, REG)? },
        "verify" => Command::Verify { name: only_name(rest, VERIFY)? },
        "trust" => Command::Trust { name: only_name(rest, TRUST)? },
        "list" => Command::List,
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(CommandError::Unknown(printable(other))),
    };
    Ok(Some(cmd))
}

/// `word` fit to be shown: control characters escaped, cut after 40 characters.
fn printable(word: &str) -> String {
    let mut shown = String::new();
    for c in word.chars().take(40) {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    if word.chars().count() > 40 {
        shown.push('…');
    }
    shown
}

/// Splits off the first word; the rest starts at the next non-blank character and keeps
/// everything after it, spaces included.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn only_name(rest: &str, usage: &'static str) -> Result<Name, CommandError> {
    let (n, extra) = split_word(rest);
    if n.is_empty() || !extra.trim().is_empty() {
        return Err(CommandError::Usage(usage));
    }
    name(n)
}

fn name(s: &str) -> Result<Name, CommandError> {
    Name::new(s).map_err(CommandError::Name)
}

fn text_of(s: &str) -> Result<Text, CommandError> {
    Text::new(s).map_err(|e| match e {
        TextError::TooLong(n) => CommandError::TooLong(n),
        TextError::TooLongEncoded(n) => CommandError::TooLongEncoded(n),
        TextError::BadChar => CommandError::ControlChar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).expect("name")
    }

    fn t(s: &str) -> Text {
        Text::new(s).expect("text")
    }

    #[test]
    fn parses_every_command_and_keeps_message_spaces() {
        let cases = [
            ("send bob hello there  world ", Command::Send { to: n("bob"), text: t("hello there  world ") }),
            ("  send   bob   hi", Command::Send { to: n("bob"), text: t("hi") }),
            ("send_all Welcome to Channel", Command::SendAll { text: t("Welcome to Channel") }),
            ("dereg alice", Command::Dereg { name: n("alice") }),
            ("reg alice\r\n", Command::Reg { name: n("alice") }),
            ("verify bob", Command::Verify { name: n("bob") }),
            ("trust bob ", Command::Trust { name: n("bob") }),
            ("list", Command::List),
            ("help", Command::Help),
            ("quit", Command::Quit),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(Some(want)), "{line:?}");
        }
        assert_eq!(parse("   "), Ok(None));
    }

    #[test]
    fn explains_what_is_wrong() {
        assert_eq!(parse("sned bob hi"), Err(CommandError::Unknown("sned".into())));
        assert_eq!(parse("\u{1b}[2J"), Err(CommandError::Unknown("\\u{1b}[2J".into())));
        let long = parse(&"x".repeat(100)).expect_err("unknown");
        assert_eq!(long.to_string().chars().filter(|c| *c == 'x').count(), 40);
        assert_eq!(parse("send bob"), Err(CommandError::Usage(SEND)));
        assert_eq!(parse("send"), Err(CommandError::Usage(SEND)));
        assert_eq!(parse("send_all"), Err(CommandError::Usage(SEND_ALL)));
        assert_eq!(parse("dereg"), Err(CommandError::Usage(DEREG)));
        assert_eq!(parse("reg a b"), Err(CommandError::Usage(REG)));
        assert_eq!(parse("verify"), Err(CommandError::Usage(VERIFY)));
        assert_eq!(parse("trust bob carol"), Err(CommandError::Usage(TRUST)));
        let long = format!("send bob {}", "x".repeat(chat_proto::MAX_TEXT_BYTES + 1));
        assert_eq!(parse(&long), Err(CommandError::TooLong(chat_proto::MAX_TEXT_BYTES + 1)));
        assert_eq!(parse("send bob \u{1b}[2J"), Err(CommandError::ControlChar));
        let bad = parse(&format!("send {} hi", "n".repeat(40))).expect_err("long name");
        assert!(bad.to_string().starts_with("Bad name"), "{bad}");
    }
}

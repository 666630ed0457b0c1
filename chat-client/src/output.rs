//! The terminal side: where commands come from and where lines go. The only module that
//! prints.
//!
//! On a terminal, rustyline gives the prompt (with the name) line editing, history and Tab
//! completion, and incoming lines are printed above the line being typed, as
//! [`crate::terminal`] shows them. Otherwise (a script, a pipe) commands are read line by line
//! and every event is written as its own line, exactly [`Event`]'s, and flushed at once, with no
//! prompt.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use chat_proto::Name;
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use tokio::sync::mpsc;

use crate::event::Event;
use crate::terminal::{self, Helper, Screen};

/// The line editor, with its helper.
type Editor = rustyline::Editor<Helper, DefaultHistory>;

/// What the user did.
#[derive(Debug)]
pub enum Input {
    /// A line was entered.
    Line(String),
    /// A line that is not UTF-8.
    Unreadable,
    /// End of input (Ctrl+D, end of a script): finish what is in flight, then leave.
    End,
    /// Ctrl+C at the prompt: leave now.
    Interrupt,
}

/// Where output lines go.
pub(crate) enum Printer {
    Plain(io::Stdout),
    Terminal { printer: Box<dyn rustyline::ExternalPrinter + Send>, saved: Option<TermState>, screen: Box<Screen> },
}

impl Printer {
    /// Whether lines go out one per event with no prompt (a script, a pipe, or a terminal
    /// without line editing), rather than above a prompt.
    pub fn is_plain(&self) -> bool {
        matches!(self, Self::Plain(_))
    }

    /// Prints `event`: its lines as they are in a script, as the terminal shows them there.
    ///
    /// # Errors
    /// The output is gone (a closed terminal or pipe).
    pub fn show(&mut self, event: &Event) -> io::Result<()> {
        let lines = self.lines(event);
        self.print(lines)
    }

    /// Prints `event` as one of the last before the client exits (see [`Printer::print_last`]).
    ///
    /// # Errors
    /// The output is gone.
    pub fn show_last(&mut self, event: &Event) -> io::Result<()> {
        let lines = self.lines(event);
        self.print_last(lines)
    }

    fn lines(&mut self, event: &Event) -> String {
        match self {
            Self::Plain(_) => event.to_string(),
            Self::Terminal { screen, .. } => screen.render(event),
        }
    }

    /// Prints one event's lines.
    ///
    /// # Errors
    /// The output is gone (a closed terminal or pipe).
    pub fn print(&mut self, lines: String) -> io::Result<()> {
        match self {
            Self::Plain(out) => {
                let mut out = out.lock();
                writeln!(out, "{lines}")?;
                out.flush()
            }
            Self::Terminal { printer, .. } => printer.print(format!("{lines}\n")).map_err(io::Error::other),
        }
    }

    /// Prints the last lines before the client exits. On a terminal they go straight to it,
    /// over the prompt line: the line editor's thread, which draws what the external printer
    /// is given, may not get to it before the process ends.
    ///
    /// # Errors
    /// The output is gone.
    pub fn print_last(&mut self, lines: String) -> io::Result<()> {
        match self {
            Self::Plain(_) => self.print(lines),
            Self::Terminal { .. } => {
                let mut out = io::stdout().lock();
                write!(out, "\r\x1b[K{}\r\n", lines.replace('\n', "\r\n"))?;
                out.flush()
            }
        }
    }

    /// Puts the terminal back as it was, in case the process exits while a line is edited: its
    /// settings, bracketed paste off, and the half-typed prompt line cleared.
    pub fn restore(&mut self) {
        if let Self::Terminal { saved, .. } = self {
            if let Some(state) = saved {
                state.restore();
            }
            let mut out = io::stdout().lock();
            let _ = write!(out, "\r\x1b[K\x1b[?2004l");
            let _ = out.flush();
        }
    }
}

/// Starts reading the commands of the client named `me` on a thread of their own; `history` is
/// where a terminal's command history is kept. Line editing only when both ends are a terminal:
/// with its output piped (to `tee`, say) the client reads plain lines and prints plain lines,
/// without a word about it.
pub(crate) fn start(me: &Name, history: Option<PathBuf>) -> (mpsc::UnboundedReceiver<Input>, Printer) {
    let (tx, rx) = mpsc::unbounded_channel();
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        let config = Config::builder().completion_type(CompletionType::List).build();
        match Editor::with_config(config) {
            Ok(mut editor) => match editor.create_external_printer() {
                Ok(printer) => {
                    let colour = terminal::colour_wanted();
                    let screen = Box::new(Screen::new(me.clone(), colour));
                    editor.set_helper(Some(Helper::new(me.clone(), colour, screen.names())));
                    let saved = TermState::save();
                    let prompt = terminal::prompt(me);
                    std::thread::spawn(move || read_terminal(editor, &prompt, history, &tx));
                    return (rx, Printer::Terminal { printer: Box::new(printer), saved, screen });
                }
                Err(e) => tracing::warn!("no line editing: {e}"),
            },
            Err(e) => tracing::warn!("no line editing: {e}"),
        }
    }
    std::thread::spawn(move || read_plain(&tx));
    (rx, Printer::Plain(io::stdout()))
}

fn read_terminal(mut editor: Editor, prompt: &str, history: Option<PathBuf>, tx: &mpsc::UnboundedSender<Input>) {
    if let Some(path) = &history {
        let _ = editor.load_history(path); // none yet is fine
    }
    loop {
        let input = match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(path) = &history {
                        if let Err(e) = editor.save_history(path) {
                            tracing::debug!("history not saved: {e}");
                        }
                    }
                }
                Input::Line(line)
            }
            Err(ReadlineError::Interrupted) => Input::Interrupt,
            Err(ReadlineError::Eof) => Input::End,
            Err(e) => {
                tracing::warn!("terminal input failed: {e}");
                Input::End
            }
        };
        let last = matches!(input, Input::End | Input::Interrupt);
        if tx.send(input).is_err() || last {
            return;
        }
    }
}

fn read_plain(tx: &mpsc::UnboundedSender<Input>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let input = match stdin.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => Input::End,
            Ok(_) => match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(line) => Input::Line(line),
                Err(_) => Input::Unreadable,
            },
        };
        let last = matches!(input, Input::End);
        if tx.send(input).is_err() || last {
            return;
        }
    }
}

/// The terminal's settings before line editing changed them.
pub(crate) struct TermState(#[cfg(unix)] nix::sys::termios::Termios);

impl TermState {
    #[cfg(unix)]
    fn save() -> Option<Self> {
        nix::sys::termios::tcgetattr(io::stdin()).ok().map(Self)
    }

    #[cfg(not(unix))]
    fn save() -> Option<Self> {
        None
    }

    fn restore(&self) {
        #[cfg(unix)]
        {
            let _ = nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.0);
        }
    }
}

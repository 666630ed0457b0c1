//! The fetch of stored messages after a registration: which indices to ask for (a window of
//! them at a time), the messages that came early, and when all have been shown in order.
//!
//! It owns only the window and the early messages; it neither sends nor shows anything.

use std::collections::BTreeMap;
use std::ops::Range;

use chat_proto::{MsgId, StoredMessage};

/// How many stored messages are requested at once.
const WINDOW: u32 = 8;

/// Stored messages being fetched.
#[derive(Debug)]
pub(crate) struct Fetch {
    total: u32,
    next_request: u32,
    next_show: u32,
    /// By index; `None` for a message that did not open (it is skipped, but counts).
    early: BTreeMap<u32, Option<StoredMessage>>,
    /// `[You have messages]` was shown.
    announced: bool,
    /// The id of the last stored message, for `fetch_done`.
    last: MsgId,
}

impl Fetch {
    /// A fetch of `total` stored messages.
    pub fn new(total: u32) -> Self {
        Self { total, next_request: 0, next_show: 0, early: BTreeMap::new(), announced: false, last: MsgId(0) }
    }

    /// The indices to ask for now: the window ahead of the next one to show.
    pub fn poll_indices(&mut self) -> Range<u32> {
        let end = self.total.min(self.next_show.saturating_add(WINDOW)).max(self.next_request);
        let range = self.next_request..end;
        self.next_request = end;
        range
    }

    /// Takes the message `id` at `index` (asked for, so below the total; `None` if it did not
    /// open) and returns those now ready to show, in order.
    pub fn handle_stored(
        &mut self,
        index: u32,
        id: MsgId,
        message: Option<StoredMessage>,
    ) -> Vec<Option<StoredMessage>> {
        if index.checked_add(1) == Some(self.total) {
            self.last = id;
        }
        if index >= self.next_show {
            self.early.insert(index, message);
        }
        let mut ready = Vec::new();
        while let Some(m) = self.early.remove(&self.next_show) {
            ready.push(m);
            self.next_show += 1;
        }
        ready
    }

    /// Whether all are shown: then `fetch_done` names how many and the last one's id.
    pub fn done(&self) -> Option<(u32, MsgId)> {
        (self.next_show == self.total).then_some((self.total, self.last))
    }

    /// True the first time: `[You have messages]` is shown once, before the first message.
    pub fn announce(&mut self) -> bool {
        !std::mem::replace(&mut self.announced, true)
    }
}

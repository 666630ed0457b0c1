//! The name's secret: the one an earlier run kept, or the one the server handed out at
//! registration, and whether the driver has kept the new one yet. It owns only the secret; it
//! writes no file (the driver does).

use chat_proto::Secret;

/// The secret that proves this client owns its name.
#[derive(Debug)]
pub(crate) struct Identity {
    secret: Option<Secret>,
    /// Handed out by the server and not yet given to the driver to keep.
    unsaved: bool,
}

impl Identity {
    /// `secret` from an earlier run, if any.
    pub fn new(secret: Option<Secret>) -> Self {
        Self { secret, unsaved: false }
    }

    /// The secret, if known.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// The server handed out `secret` (the same as before, or a new one to keep).
    pub fn handle_issued(&mut self, secret: Secret) {
        if self.secret.as_ref() != Some(&secret) {
            self.secret = Some(secret);
            self.unsaved = true;
        }
    }

    /// A new secret for the driver to keep, once.
    pub fn poll_unsaved(&mut self) -> Option<Secret> {
        if !std::mem::take(&mut self.unsaved) {
            return None;
        }
        self.secret.clone()
    }
}

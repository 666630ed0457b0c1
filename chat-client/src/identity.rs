//! Who this client is: its long-term key pair, and the name's secret (the one an earlier run
//! kept, or the one the server handed out at registration, and whether the driver has kept the
//! new one yet). It writes no file (the driver does).

use chat_core::BoundedMap;
use chat_proto::{KeyPair, Pairwise, PublicKey, Secret};

/// How many peers' shared keys are kept (each costs one X25519 exchange to make again).
const PAIRWISE_KEPT: usize = 4096;

/// The key pair this client speaks with, and the secret that proves it owns its name.
#[derive(Debug)]
pub struct Identity {
    key: KeyPair,
    /// The keys shared with the peers written to or read from lately.
    shared: BoundedMap<PublicKey, Pairwise>,
    secret: Option<Secret>,
    /// Handed out by the server and not yet given to the driver to keep.
    unsaved: bool,
}

impl Identity {
    /// The long-term `key`, and `secret` from an earlier run, if any.
    pub fn new(key: KeyPair, secret: Option<Secret>) -> Self {
        Self { key, shared: BoundedMap::new(PAIRWISE_KEPT), secret, unsaved: false }
    }

    /// The key shared with the holder of `their` (made once, then kept).
    pub(crate) fn pairwise(&mut self, their: PublicKey) -> &Pairwise {
        let key = &self.key;
        self.shared.get_or_insert_with(their, || key.pairwise(&their))
    }

    /// The long-term key pair.
    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// The secret, if known.
    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// The server handed out `secret` (the same as before, or a new one to keep).
    pub(crate) fn handle_issued(&mut self, secret: Secret) {
        if self.secret.as_ref() != Some(&secret) {
            self.secret = Some(secret);
            self.unsaved = true;
        }
    }

    /// A new secret for the driver to keep, once.
    pub(crate) fn poll_unsaved(&mut self) -> Option<Secret> {
        if !std::mem::take(&mut self.unsaved) {
            return None;
        }
        self.secret.clone()
    }
}

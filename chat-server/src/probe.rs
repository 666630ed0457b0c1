//! Probes: "is this client still there?", asked inside one ACK window before the server acts
//! on a client's absence (a save for it, a channel message it did not ACK, its name claimed
//! from another address). Owns the probes in flight and their deadlines; what to do once a
//! probe is answered or not is the caller's, which gets the waiters back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::Deadlines;
use chat_proto::{Datagram, MsgId, Name, PublicKey, Secret, StoredMessage};

use crate::clients::NodeId;
use crate::deliveries::Delivery;
use crate::ids::Ids;
use crate::outbox::Outbox;

/// Probes are retransmitted this many times per window.
const SENDS_PER_WINDOW: u32 = 5;

/// How long a request to another node and its answer may take through the shared store, on
/// top of that node's own probe window.
pub(crate) const PEER_DELAY: Duration = Duration::from_secs(1);

/// What is waiting on a probe's answer.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// `name` wants to register from `from`, but is online elsewhere.
    Register { from: SocketAddr, id: MsgId, name: Name, secret: Option<Secret>, key: PublicKey },
    /// A save for the probed client.
    Save { from: SocketAddr, id: MsgId, to: Name, msg: StoredMessage },
    /// A channel message the probed client did not ACK.
    Channel(Delivery),
    /// Another node asked whether its client is still here (see [`crate::cluster`]).
    Peer { node: NodeId, token: MsgId },
}

/// One probe in flight; every waiter for the same client at the same address shares it.
#[derive(Debug)]
struct Probe {
    name: Name,
    addr: SocketAddr,
    deadline: Instant,
    next_send: Instant,
    waiters: Vec<Waiter>,
    /// The node asked to probe, when the client is registered at another one.
    via: Option<NodeId>,
}

/// A probe that went unanswered through its window.
#[derive(Debug)]
pub(crate) struct Unanswered {
    pub name: Name,
    pub addr: SocketAddr,
    pub waiters: Vec<Waiter>,
    /// The node that was asked, if it was not this one's probe.
    pub via: Option<NodeId>,
}

/// The probes in flight, by id.
#[derive(Debug)]
pub(crate) struct Probes {
    window: Duration,
    probes: HashMap<MsgId, Probe>,
    due: Deadlines<MsgId>,
}

impl Probes {
    /// Probes that wait `window` for an answer.
    pub fn new(window: Duration) -> Self {
        Self { window, probes: HashMap::new(), due: Deadlines::default() }
    }

    fn step(&self) -> Duration {
        self.window / SENDS_PER_WINDOW
    }

    /// Probes `name` at `addr` (or joins the probe already running) on behalf of `waiter`.
    pub fn probe(
        &mut self,
        now: Instant,
        name: &Name,
        addr: SocketAddr,
        waiter: Waiter,
        ids: &mut Ids,
        out: &mut Outbox,
    ) {
        if let Some(p) = self.probes.values_mut().find(|p| &p.name == name && p.addr == addr) {
            p.waiters.push(waiter);
            return;
        }
        let id = ids.fresh_id();
        tracing::info!(%name, %addr, "probing");
        out.send(addr, &Datagram::Probe { id });
        let (deadline, next_send) = (now + self.window, now + self.step());
        let probe = Probe { name: name.clone(), addr, deadline, next_send, waiters: vec![waiter], via: None };
        self.probes.insert(id, probe);
        self.due.set(id, next_send.min(deadline));
    }

    /// Has node `via`, where `name` is registered, probe it at `addr` on behalf of `waiter`
    /// (or joins the request already out). Returns the token of a new request, for the caller
    /// to send to `via`. It ends with [`Probes::handle_peer_answer`], or unanswered after
    /// twice the window plus [`PEER_DELAY`]: the other node's own window, and the way there
    /// and back through the shared store.
    pub fn probe_via(
        &mut self,
        now: Instant,
        (name, addr): (&Name, SocketAddr),
        via: NodeId,
        waiter: Waiter,
        ids: &mut Ids,
    ) -> Option<MsgId> {
        if let Some(p) = self.probes.values_mut().find(|p| &p.name == name && p.addr == addr && p.via == Some(via)) {
            p.waiters.push(waiter);
            return None;
        }
        let id = ids.fresh_id();
        tracing::info!(%name, %addr, node = via, "asking its node to probe");
        let deadline = now + self.window * 2 + PEER_DELAY;
        let probe =
            Probe { name: name.clone(), addr, deadline, next_send: deadline, waiters: vec![waiter], via: Some(via) };
        self.probes.insert(id, probe);
        self.due.set(id, deadline);
        Some(id)
    }

    /// Node `from` answered the probe request `token`: returns its waiters, if it was one.
    pub fn handle_peer_answer(&mut self, from: NodeId, token: MsgId) -> Option<Vec<Waiter>> {
        if self.probes.get(&token).is_none_or(|p| p.via != Some(from)) {
            return None;
        }
        self.due.cancel(&token);
        self.probes.remove(&token).map(|p| p.waiters)
    }

    /// The probe requests out to node `node`, which is gone: their waiters, as unanswered.
    pub fn abandon_via(&mut self, node: NodeId) -> Vec<Unanswered> {
        let ids: Vec<MsgId> = self.probes.iter().filter(|(_, p)| p.via == Some(node)).map(|(id, _)| *id).collect();
        ids.into_iter()
            .filter_map(|id| {
                self.due.cancel(&id);
                self.probes.remove(&id)
            })
            .map(|p| Unanswered { name: p.name, addr: p.addr, waiters: p.waiters, via: p.via })
            .collect()
    }

    /// `from` answered probe `id` as `name`: returns the probe's waiters, if it was one.
    pub fn handle_ack(&mut self, from: SocketAddr, id: MsgId, name: &Name) -> Option<Vec<Waiter>> {
        if !self.probes.get(&id).is_some_and(|p| p.addr == from && &p.name == name && p.via.is_none()) {
            tracing::debug!(%from, %id, "probe ack for no probe in flight");
            return None;
        }
        self.due.cancel(&id);
        let probe = self.probes.remove(&id)?;
        tracing::info!(%name, %from, "probe answered: client is there");
        Some(probe.waiters)
    }

    /// Retransmits the probes that are due, and returns those whose window is over.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) -> Vec<Unanswered> {
        let (step, mut resend, mut over) = (self.step(), Vec::new(), Vec::new());
        let due: Vec<MsgId> = std::iter::from_fn(|| self.due.pop_due(now)).collect();
        for id in due {
            let Some(p) = self.probes.get_mut(&id) else { continue };
            if p.deadline <= now {
                over.push(id);
                continue;
            }
            resend.push((p.addr, id));
            p.next_send = now + step;
            self.due.set(id, p.next_send.min(p.deadline));
        }
        for (addr, id) in resend {
            out.send(addr, &Datagram::Probe { id });
        }
        let over = over.into_iter().filter_map(|id| self.probes.remove(&id));
        over.map(|p| {
            tracing::info!(name = %p.name, addr = %p.addr, node = p.via, "probe unanswered: client is gone");
            Unanswered { name: p.name, addr: p.addr, waiters: p.waiters, via: p.via }
        })
        .collect()
    }

    /// When a probe is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.next()
    }
}

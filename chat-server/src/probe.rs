//! Probes: "is this client still there?", asked inside one ACK window before the server acts
//! on a client's absence (a save for it, a channel message it did not ACK, its name claimed
//! from another address).

use std::net::SocketAddr;
use std::time::Instant;

use chat_proto::{Datagram, MsgId, Name, Refusal, StoredMessage};
use offline_store::Store;

use crate::Server;
use crate::channel::Delivery;

/// Probes are retransmitted this many times per window.
const SENDS_PER_WINDOW: u32 = 5;

/// What is waiting on a probe's answer.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// `name` wants to register from `from`, but is online elsewhere.
    Register { from: SocketAddr, id: MsgId, name: Name },
    /// A save for the probed client.
    Save { from: SocketAddr, id: MsgId, to: Name, msg: StoredMessage },
    /// A channel message the probed client did not ACK.
    Channel(Delivery),
}

/// One probe in flight; every waiter for the same client at the same address shares it.
#[derive(Debug)]
pub(crate) struct Probe {
    id: MsgId,
    name: Name,
    addr: SocketAddr,
    deadline: Instant,
    next_send: Instant,
    waiters: Vec<Waiter>,
}

impl Probe {
    pub fn due(&self) -> Instant {
        self.deadline.min(self.next_send)
    }
}

impl<S: Store> Server<S> {
    /// Probes `name` at `addr` (or joins the probe already running) on behalf of `waiter`.
    pub(crate) fn probe(&mut self, now: Instant, name: &Name, addr: SocketAddr, waiter: Waiter) {
        if let Some(p) = self.probes.iter_mut().find(|p| &p.name == name && p.addr == addr) {
            p.waiters.push(waiter);
            return;
        }
        let id = self.fresh_id();
        tracing::info!(%name, %addr, "probing");
        self.send(addr, &Datagram::Probe { id });
        let step = self.cfg.ack_timeout / SENDS_PER_WINDOW;
        let deadline = now + self.cfg.ack_timeout;
        let waiters = vec![waiter];
        self.probes.push(Probe { id, name: name.clone(), addr, deadline, next_send: now + step, waiters });
    }

    pub(crate) fn on_probe_ack(&mut self, now: Instant, from: SocketAddr, id: MsgId, name: &Name) {
        let Some(i) = self.probes.iter().position(|p| p.id == id && p.addr == from && &p.name == name) else {
            tracing::debug!(%from, %id, "probe ack for no probe in flight");
            return;
        };
        let probe = self.probes.swap_remove(i);
        tracing::info!(%name, %from, "probe answered: client is there");
        self.prove(from);
        for w in probe.waiters {
            self.on_alive(now, w);
        }
    }

    pub(crate) fn probe_timeouts(&mut self, now: Instant) {
        let step = self.cfg.ack_timeout / SENDS_PER_WINDOW;
        let mut resend = Vec::new();
        for p in &mut self.probes {
            if p.next_send <= now && now < p.deadline {
                resend.push((p.addr, p.id));
                p.next_send = now + step;
            }
        }
        for (addr, id) in resend {
            self.send(addr, &Datagram::Probe { id });
        }
        let (expired, running) = std::mem::take(&mut self.probes).into_iter().partition(|p| p.deadline <= now);
        self.probes = running;
        for p in expired {
            tracing::info!(name = %p.name, addr = %p.addr, "probe unanswered: client is gone");
            self.mark_gone(&p.name, p.addr);
            for w in p.waiters {
                self.on_dead(now, w);
            }
        }
    }

    /// Marks `name` offline if it is still online at `addr`, and tells it too: a client that is
    /// alive after all (its answers were lost) sees itself offline and registers again.
    pub(crate) fn mark_gone(&mut self, name: &Name, addr: SocketAddr) {
        if self.clients.get(name).is_some_and(|e| e.addr == addr) && self.clients.set_offline(name) {
            self.table_dirty = true;
            self.also_tell.push(addr);
        }
    }

    fn on_alive(&mut self, now: Instant, w: Waiter) {
        match w {
            Waiter::Register { from, id, name } => {
                tracing::info!(%name, %from, "registration refused: name in use");
                self.answer(from, id, Datagram::Refused { id, reason: Refusal::NameTaken });
            }
            Waiter::Save { from, id, to, .. } => match self.clients.row_of(&to) {
                Some(row) => self.answer(from, id, Datagram::Exists { id, row }),
                None => self.answer(from, id, Datagram::Refused { id, reason: Refusal::UnknownRecipient }),
            },
            Waiter::Channel(d) => self.redeliver(now, d),
        }
    }

    fn on_dead(&mut self, now: Instant, w: Waiter) {
        match w {
            Waiter::Register { from, id, name } => self.register(now, from, id, &name, None),
            Waiter::Save { from, id, to, msg } => self.store_for(from, id, &to, msg),
            Waiter::Channel(d) => self.store_channel(&d),
        }
    }
}

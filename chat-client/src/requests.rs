//! The requests in flight: each datagram sent and not yet answered, with its retries and its
//! deadline, the requests parked until the client is registered again, and those taken off a
//! server that stopped answering, to go to the next one the same.
//!
//! It owns the encoded bytes (a retransmission is the same datagram), the retries left and the
//! deadlines (kept in order by [`Deadlines`], so a wake-up looks only at what is due). It does
//! not decide what an answer or a give-up means: the kind `K` says what a request is for, and
//! the caller acts on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{Deadlines, Transmit};
use chat_proto::MsgId;

/// One datagram sent and not yet answered.
#[derive(Debug)]
struct Request<K> {
    to: SocketAddr,
    bytes: Arc<[u8]>,
    /// Retransmissions left before giving up.
    left: u32,
    kind: K,
}

/// What a wake-up found due.
#[derive(Debug)]
pub(crate) enum Due<K> {
    /// Send this again; the request stays in flight. `first`: the first retransmission of
    /// request `id` (the first attempt got no answer in time).
    Retransmit {
        /// The datagram.
        transmit: Transmit,
        /// The request's id.
        id: MsgId,
        /// Whether this is its first retransmission.
        first: bool,
    },
    /// No answer after every retry: the request is over.
    GaveUp {
        /// What it was for.
        kind: K,
        /// Its id.
        id: MsgId,
        /// The datagram, to send the same elsewhere.
        bytes: Arc<[u8]>,
    },
}

/// The requests in flight, by id.
#[derive(Debug)]
pub(crate) struct Requests<K> {
    in_flight: HashMap<MsgId, Request<K>>,
    deadlines: Deadlines<MsgId>,
    /// Requests the server refused because it does not know this client: made again once
    /// registered.
    parked: Vec<K>,
    /// Requests taken off a server that stopped answering: sent again, the same id and bytes,
    /// to the next server once the client is registered there.
    moved: Vec<(MsgId, Arc<[u8]>, K)>,
    ack_timeout: Duration,
    retries: u32,
}

impl<K> Requests<K> {
    /// Requests that wait `ack_timeout` for each answer and retransmit `retries` times.
    pub fn new(ack_timeout: Duration, retries: u32) -> Self {
        Self {
            in_flight: HashMap::new(),
            deadlines: Deadlines::default(),
            parked: Vec::new(),
            moved: Vec::new(),
            ack_timeout,
            retries,
        }
    }

    /// Puts request `id` of `kind` in flight and returns its first transmission.
    pub fn start(&mut self, now: Instant, to: SocketAddr, id: MsgId, bytes: Vec<u8>, kind: K) -> Transmit {
        let bytes: Arc<[u8]> = bytes.into();
        self.in_flight.insert(id, Request { to, bytes: bytes.clone(), left: self.retries, kind });
        self.deadlines.set(id, now + self.ack_timeout);
        Transmit { to, bytes }
    }

    /// The kind of request `id`, if it is in flight to `from`.
    pub fn get(&self, id: MsgId, from: SocketAddr) -> Option<&K> {
        self.in_flight.get(&id).filter(|r| r.to == from).map(|r| &r.kind)
    }

    /// Ends request `id` if it is in flight to `from` (an answer from elsewhere is no answer)
    /// and is of a kind `fits` takes (another kind is not answered by this answer).
    pub fn answer(&mut self, id: MsgId, from: SocketAddr, fits: impl Fn(&K) -> bool) -> Option<K> {
        if !self.get(id, from).is_some_and(fits) {
            tracing::debug!(%from, %id, "answer to no request in flight");
            return None;
        }
        self.deadlines.cancel(&id);
        self.in_flight.remove(&id).map(|r| r.kind)
    }

    /// The next retransmission or give-up due at `now`, if any.
    pub fn poll_due(&mut self, now: Instant) -> Option<Due<K>> {
        let id = self.deadlines.pop_due(now)?;
        let Some(r) = self.in_flight.get_mut(&id) else {
            return self.poll_due(now);
        };
        if r.left == 0 {
            return self.in_flight.remove(&id).map(|r| Due::GaveUp { kind: r.kind, id, bytes: r.bytes });
        }
        let first = r.left == self.retries;
        r.left -= 1;
        self.deadlines.set(id, now + self.ack_timeout);
        Some(Due::Retransmit { transmit: Transmit { to: r.to, bytes: r.bytes.clone() }, id, first })
    }

    /// Where request `id` was sent, if it is in flight.
    pub fn target(&self, id: MsgId) -> Option<SocketAddr> {
        self.in_flight.get(&id).map(|r| r.to)
    }

    /// How long each answer is waited for.
    pub fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// Copies of every request in flight to `to`, to send again now (the way to it just
    /// opened); their retries and deadlines stay as they are.
    pub fn copies_to(&self, to: SocketAddr) -> Vec<Transmit> {
        self.in_flight.values().filter(|r| r.to == to).map(|r| Transmit { to, bytes: r.bytes.clone() }).collect()
    }

    /// When the next retransmission or give-up is due.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// The kinds of the requests in flight and parked.
    pub fn kinds(&self) -> impl Iterator<Item = &K> {
        self.in_flight.values().map(|r| &r.kind).chain(&self.parked).chain(self.moved.iter().map(|(_, _, k)| k))
    }

    /// Whether a request in flight is of a kind `pred` accepts.
    pub fn any(&self, pred: impl Fn(&K) -> bool) -> bool {
        self.in_flight.values().any(|r| pred(&r.kind))
    }

    /// Drops every request in flight of a kind `pred` accepts (their answers no longer matter).
    pub fn cancel(&mut self, pred: impl Fn(&K) -> bool) {
        let ids: Vec<MsgId> = self.in_flight.iter().filter(|(_, r)| pred(&r.kind)).map(|(id, _)| *id).collect();
        for id in ids {
            self.in_flight.remove(&id);
            self.deadlines.cancel(&id);
        }
    }

    /// Takes every request in flight of a kind `pred` accepts, and every parked one: they end
    /// without an answer (the client exits).
    pub fn take(&mut self, pred: impl Fn(&K) -> bool) -> Vec<K> {
        let ids: Vec<MsgId> = self.in_flight.iter().filter(|(_, r)| pred(&r.kind)).map(|(id, _)| *id).collect();
        let mut taken: Vec<K> = ids.iter().filter_map(|id| self.take_one(*id)).collect();
        taken.append(&mut self.parked);
        taken.extend(std::mem::take(&mut self.moved).into_iter().map(|(_, _, k)| k));
        taken
    }

    fn take_one(&mut self, id: MsgId) -> Option<K> {
        self.deadlines.cancel(&id);
        self.in_flight.remove(&id).map(|r| r.kind)
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Keeps `kind` to be made again once the client is registered.
    pub fn park(&mut self, kind: K) {
        self.parked.push(kind);
    }

    /// Takes the parked requests, oldest first.
    pub fn unpark(&mut self) -> Vec<K> {
        std::mem::take(&mut self.parked)
    }

    /// Whether requests are parked, or wait to go to the next server.
    pub fn has_parked(&self) -> bool {
        !self.parked.is_empty() || !self.moved.is_empty()
    }

    /// The server at `from` stopped answering: every request in flight to it is taken off,
    /// those `keep` accepts to go to the next server (oldest first, by id) once the client is
    /// registered there, the others dropped.
    pub fn move_off(&mut self, from: SocketAddr, keep: impl Fn(&K) -> bool) {
        let mut ids: Vec<MsgId> = self.in_flight.iter().filter(|(_, r)| r.to == from).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        for id in ids {
            self.deadlines.cancel(&id);
            if let Some(r) = self.in_flight.remove(&id).filter(|r| keep(&r.kind)) {
                self.moved.push((id, r.bytes, r.kind));
            }
        }
    }

    /// Keeps request `id` that gave up (`bytes`, of `kind`) to go to the next server.
    pub fn hold(&mut self, id: MsgId, bytes: Arc<[u8]>, kind: K) {
        self.moved.push((id, bytes, kind));
    }

    /// Sends the requests taken off the last server to `to`: the same ids and bytes (so a
    /// request the old server did is not done twice), each with its retries anew.
    pub fn resend_moved(&mut self, now: Instant, to: SocketAddr) -> Vec<Transmit> {
        let moved = std::mem::take(&mut self.moved);
        moved.into_iter().map(|(id, bytes, kind)| self.start(now, to, id, bytes.to_vec(), kind)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn retransmits_the_same_bytes_on_time_then_gives_up_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Requests::new(ms(500), 2);
        let first = r.start(t0, addr(1), MsgId(7), vec![1, 2, 3], 'k');
        assert!(r.poll_due(t0 + ms(499)).is_none());
        let Some(Due::Retransmit { transmit: again, first: true, .. }) = r.poll_due(t0 + ms(500)) else {
            panic!("the first retransmission")
        };
        assert_eq!(again, first);
        assert!(r.poll_due(t0 + ms(500)).is_none(), "not twice at one time");
        assert_eq!(r.next_timeout(), Some(t0 + ms(1000)));
        assert!(matches!(r.poll_due(t0 + ms(1000)), Some(Due::Retransmit { first: false, .. })));
        assert!(matches!(r.poll_due(t0 + ms(1500)), Some(Due::GaveUp { kind: 'k', .. })));
        assert!(r.is_empty() && r.next_timeout().is_none());
    }

    #[test]
    fn only_an_answer_from_where_it_went_ends_it() {
        let t0 = Instant::now();
        let mut r = Requests::new(Duration::from_millis(500), 5);
        r.start(t0, addr(1), MsgId(7), vec![0], 'k');
        let any = |_: &char| true;
        assert_eq!(r.answer(MsgId(7), addr(2), any), None);
        assert_eq!(r.answer(MsgId(7), addr(1), |k| *k == 'x'), None, "another kind's answer");
        assert_eq!(r.answer(MsgId(7), addr(1), any), Some('k'));
        assert_eq!(r.answer(MsgId(7), addr(1), any), None, "answered once");
        assert!(r.next_timeout().is_none());
    }

    #[test]
    fn requests_taken_off_a_server_go_to_the_next_the_same_once_asked() {
        let t0 = Instant::now();
        let mut r = Requests::new(Duration::from_millis(500), 5);
        r.start(t0, addr(1), MsgId(2), vec![2], 'b');
        r.start(t0, addr(1), MsgId(1), vec![1], 'a');
        r.start(t0, addr(1), MsgId(3), vec![3], 'x');
        r.start(t0, addr(9), MsgId(4), vec![4], 'p');
        r.move_off(addr(1), |k| *k != 'x');
        assert!(r.has_parked() && r.get(MsgId(1), addr(1)).is_none(), "off the old server");
        assert_eq!(r.kinds().filter(|k| **k != 'p').count(), 2, "x dropped, a and b kept");
        assert_eq!(r.next_timeout(), Some(t0 + Duration::from_millis(500)), "the peer's request stays");
        let again = r.resend_moved(t0, addr(2));
        let again: Vec<(SocketAddr, Vec<u8>)> = again.into_iter().map(|t| (t.to, t.bytes.to_vec())).collect();
        assert_eq!(again, [(addr(2), vec![1]), (addr(2), vec![2])], "oldest first, the same bytes");
        assert_eq!(r.answer(MsgId(2), addr(2), |_| true), Some('b'));
        assert!(!r.has_parked());
    }

    #[test]
    fn cancel_drops_the_kinds_asked_for() {
        let t0 = Instant::now();
        let mut r = Requests::new(Duration::from_millis(500), 5);
        r.start(t0, addr(1), MsgId(1), vec![0], 'a');
        r.start(t0, addr(1), MsgId(2), vec![0], 'b');
        r.cancel(|k| *k == 'a');
        assert!(!r.any(|k| *k == 'a') && r.any(|k| *k == 'b'));
    }
}

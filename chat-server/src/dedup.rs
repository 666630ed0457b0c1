//! Request dedup: remembers recent requests by (address, id), so that a retransmitted request is
//! answered with the same reply and never done twice. Owns only that memory; it sends nothing
//! itself and knows nothing of what the requests do.
//!
//! A reply is kept compact (an `ack` or a refusal is a tag; anything else its encoded bytes),
//! and only as long as the client may still retransmit: past `keep` after the answer it is
//! forgotten, and at most `capacity` requests are remembered in any case. Expiry goes through
//! the requests oldest first (the map's own order), so no second queue of deadlines is kept: an
//! answer given quickly may wait behind an older one a little past its deadline, and a request
//! still being worked on holds back the ones after it until it is answered or forgotten (a probe
//! window or a disk sync).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::BoundedMap;
use chat_proto::{Datagram, MsgId, Refusal, encode};

type Key = (SocketAddr, MsgId);

/// What a retransmission of an answered request gets again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ack,
    Refused(Refusal),
    /// Any other reply, as it was sent.
    Encoded(Arc<[u8]>),
}

/// Where a remembered request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Being worked on (a probe, a disk sync): retransmissions are ignored.
    Pending,
    /// Done: retransmissions get this reply again, until the deadline.
    Answered(Reply, Instant),
}

/// What to do with a request that came in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Not seen (or forgotten): handle it.
    New,
    /// Being worked on: ignore the retransmission.
    Pending,
    /// Answered: send these bytes again.
    Replay(Arc<[u8]>),
}

/// A bounded, expiring memory of recent requests.
#[derive(Debug)]
pub(crate) struct Dedup {
    seen: BoundedMap<Key, Seen>,
    keep: Duration,
}

impl Dedup {
    /// Remembers at most `capacity` requests, each answered one for `keep`.
    pub fn new(capacity: usize, keep: Duration) -> Self {
        Self { seen: BoundedMap::new(capacity), keep }
    }

    /// What to do with request `id` from `from`.
    pub fn check(&self, from: SocketAddr, id: MsgId) -> Check {
        match self.seen.get(&(from, id)) {
            None => Check::New,
            Some(Seen::Pending) => Check::Pending,
            Some(Seen::Answered(reply, _)) => {
                let again = match reply {
                    Reply::Ack => encode(&Datagram::Ack { id }).ok().map(Arc::from),
                    Reply::Refused(reason) => encode(&Datagram::Refused { id, reason: *reason }).ok().map(Arc::from),
                    Reply::Encoded(bytes) => Some(bytes.clone()),
                };
                again.map_or(Check::Pending, Check::Replay)
            }
        }
    }

    /// Request `id` from `from` is being worked on.
    pub fn pending(&mut self, from: SocketAddr, id: MsgId) {
        self.seen.insert((from, id), Seen::Pending);
    }

    /// Request `id` from `from` was answered at `now` with `reply`, encoded as `bytes`.
    pub fn answered(&mut self, now: Instant, from: SocketAddr, id: MsgId, reply: &Datagram, bytes: &Arc<[u8]>) {
        let reply = match reply {
            Datagram::Ack { id: acked } if *acked == id => Reply::Ack,
            Datagram::Refused { id: refused, reason } if *refused == id => Reply::Refused(*reason),
            _ => Reply::Encoded(bytes.clone()),
        };
        self.seen.insert((from, id), Seen::Answered(reply, now + self.keep));
    }

    /// Forgets `id`, so that a retransmission is handled as new (after a failure).
    pub fn forget(&mut self, from: SocketAddr, id: MsgId) {
        self.seen.remove(&(from, id));
    }

    /// Forgets the answers no retransmission can come for any more.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((&key, Seen::Answered(_, due))) = self.seen.oldest() {
            if *due > now {
                break;
            }
            self.seen.remove(&key);
        }
    }

    /// When the oldest answer is forgotten (none while the oldest request is being worked on:
    /// its answer sets the next deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.seen.oldest() {
            Some((_, Seen::Answered(_, due))) => Some(*due),
            _ => None,
        }
    }

    /// How many requests are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    fn ack(d: &mut Dedup, now: Instant, id: u64) {
        let reply = Datagram::Ack { id: MsgId(id) };
        let bytes: Arc<[u8]> = encode(&reply).expect("encode").into();
        d.answered(now, FROM, MsgId(id), &reply, &bytes);
    }

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let mut d = Dedup::new(2, Duration::from_secs(3));
        for i in 0..3 {
            d.pending(FROM, MsgId(i));
        }
        assert_eq!(d.check(FROM, MsgId(0)), Check::New);
        assert_eq!(d.check(FROM, MsgId(2)), Check::Pending);
        ack(&mut d, Instant::now(), 2);
        assert_eq!(d.check(FROM, MsgId(1)), Check::Pending);
    }

    #[test]
    fn a_forgotten_request_leaves_no_stale_place_in_the_eviction_order() {
        // Before the bounded map, `forget` left the key in the order: once noted again, it was
        // evicted at its old place, in front of older requests.
        let mut d = Dedup::new(2, Duration::from_secs(3));
        d.pending(FROM, MsgId(1));
        d.pending(FROM, MsgId(2));
        d.forget(FROM, MsgId(1));
        d.pending(FROM, MsgId(1));
        assert_eq!(d.check(FROM, MsgId(1)), Check::Pending, "noted again, and kept");
        assert_eq!(d.check(FROM, MsgId(2)), Check::Pending);
        d.pending(FROM, MsgId(3));
        assert_eq!(d.check(FROM, MsgId(2)), Check::New, "the oldest goes first");
        assert_eq!(d.check(FROM, MsgId(1)), Check::Pending);
    }

    #[test]
    fn an_answer_is_replayed_until_no_retransmission_can_come() {
        let t0 = Instant::now();
        let mut d = Dedup::new(8, Duration::from_millis(3500));
        ack(&mut d, t0, 5);
        let again = encode(&Datagram::Ack { id: MsgId(5) }).expect("encode");
        assert_eq!(d.check(FROM, MsgId(5)), Check::Replay(again.into()));
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_millis(3500)));
        d.handle_timeout(t0 + Duration::from_millis(3499));
        assert_eq!(d.len(), 1);
        d.handle_timeout(t0 + Duration::from_millis(3500));
        assert_eq!((d.check(FROM, MsgId(5)), d.len(), d.poll_timeout()), (Check::New, 0, None));
    }

    #[test]
    fn an_old_deadline_does_not_forget_a_request_noted_again() {
        let t0 = Instant::now();
        let mut d = Dedup::new(8, Duration::from_millis(3500));
        ack(&mut d, t0, 5);
        d.forget(FROM, MsgId(5));
        d.pending(FROM, MsgId(5)); // done again after a failure
        d.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(d.check(FROM, MsgId(5)), Check::Pending, "still being worked on");
        ack(&mut d, t0 + Duration::from_secs(60), 5);
        d.handle_timeout(t0 + Duration::from_secs(61));
        assert_eq!(d.len(), 1, "answered at 60 s, kept until 63.5 s");
    }

    #[test]
    fn answers_behind_a_request_being_worked_on_expire_once_it_is_answered() {
        let t0 = Instant::now();
        let keep = Duration::from_millis(3500);
        let mut d = Dedup::new(8, keep);
        d.pending(FROM, MsgId(1)); // a save waiting for its sync
        ack(&mut d, t0, 2);
        assert_eq!(d.poll_timeout(), None, "the oldest has no deadline yet");
        d.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(d.len(), 2, "nothing is forgotten past a request still being worked on");
        ack(&mut d, t0 + Duration::from_secs(10), 1);
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_secs(10) + keep));
        d.handle_timeout(t0 + Duration::from_secs(10) + keep);
        assert_eq!(d.len(), 0, "both are past their deadlines");
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_reply_other_than_ack_or_refused_is_replayed_as_it_was_sent() {
        let mut d = Dedup::new(8, Duration::from_secs(3));
        let reply = Datagram::Probe { id: MsgId(77) };
        let bytes: Arc<[u8]> = encode(&reply).expect("encode").into();
        d.answered(Instant::now(), FROM, MsgId(1), &reply, &bytes);
        assert_eq!(d.check(FROM, MsgId(1)), Check::Replay(bytes));
    }
}

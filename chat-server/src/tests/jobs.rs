//! Disk work as jobs: a registration, a fetch and a `fetch_done` wait on their jobs, failed
//! jobs are survived, mailboxes leave memory when no longer in use, and no handler touches the
//! disk (the [`TestStore`](super::disk::TestStore) panics if one does).

use super::*;

/// Alice online; bob registered, then offline with `texts` saved for him by alice; the store
/// then forgets bob's mailbox (as after a restart).
fn bob_away_with(texts: &[&str]) -> Fixture {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let out = f.dereg("bob", BOB);
    f.ack_tables(&out);
    for text in texts {
        let (id, out) = f.save(("alice", ALICE), "bob", text);
        assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    }
    f.disk.forget("bob");
    f
}

/// Bob registers; returns what the server sent once its jobs ran.
fn bob_registers(f: &mut Fixture) -> Vec<(u16, Datagram)> {
    let id = f.id();
    f.recv(BOB, f.reg(id, "bob"))
}

#[test]
fn a_registration_whose_mailbox_is_not_known_is_answered_once_its_open_job_is_done() {
    let mut f = bob_away_with(&["one", "two"]);
    let id = f.id();
    f.server.handle_datagram(f.now, addr(BOB), f.reg(id, "bob"));
    assert_eq!(f.drain(), vec![], "no answer before the mailbox is known");
    let job = f.server.poll_job(f.now).expect("a job");
    assert_eq!(job.kind(), JobKind::Open);
    assert!(f.server.poll_job(f.now).is_none(), "one open job for the mailbox");
    assert!(f.recv(BOB, f.reg(id, "bob")).is_empty(), "a retransmission waits with it");
    f.server.handle_job_done(f.now, job.run());
    let out = f.drain();
    assert!(matches!(out[..], [(BOB, Datagram::Registered { stored: 2, .. })]), "{out:?}");
}

#[test]
fn a_fetch_is_answered_with_the_message_its_read_job_read() {
    let mut f = bob_away_with(&["one", "two"]);
    bob_registers(&mut f);
    let id = f.id();
    f.server.handle_datagram(f.now, addr(BOB), Datagram::Fetch { id, index: 1 });
    assert_eq!(f.drain(), vec![], "no answer before the read");
    let job = f.server.poll_job(f.now).expect("a job");
    assert_eq!(job.kind(), JobKind::Read);
    f.server.handle_job_done(f.now, job.run());
    let out = f.drain();
    let [(BOB, Datagram::Stored { id: got, index: 1, ref message })] = out[..] else { panic!("{out:?}") };
    assert_eq!((got, read("bob", message).as_str()), (id, "two"));
    assert_eq!(f.recv(BOB, Datagram::Fetch { id, index: 2 }), vec![], "past the end: nothing to read");
}

#[test]
fn a_failed_read_or_removal_is_survived_and_the_retransmission_works() {
    let mut f = bob_away_with(&["one", "two"]);
    bob_registers(&mut f);
    let id = f.id();
    f.fail = Some(JobKind::Read);
    assert_eq!(f.recv(BOB, Datagram::Fetch { id, index: 0 }), vec![], "a failed read is not answered");
    let out = f.recv(BOB, Datagram::Fetch { id, index: 0 });
    assert!(matches!(&out[..], [(BOB, Datagram::Stored { message, .. })] if read("bob", message) == "one"), "{out:?}");

    let last = f.server.store_mut().messages(&name("bob"))[1].id;
    let done = Datagram::FetchDone { id: f.id(), count: 2, last };
    f.fail = Some(JobKind::Remove);
    let out = f.recv(BOB, done.clone());
    assert!(out.iter().all(|(p, _)| *p != BOB), "not acknowledged: {out:?}");
    assert_eq!(f.stored("bob").len(), 2, "nothing deleted");
    let out = f.recv(BOB, done.clone());
    let Datagram::FetchDone { id, .. } = done else { unreachable!() };
    assert_eq!(out.last(), Some(&(BOB, Datagram::Ack { id })), "done again: {out:?}");
    assert!(out.iter().any(|(p, d)| *p == ALICE && online_in(d, "bob") == Some(true)), "{out:?}");
    assert!(f.stored("bob").is_empty());
}

#[test]
fn a_removal_waits_for_the_sync_out_and_then_runs_alone() {
    let mut f = bob_away_with(&["one"]);
    bob_registers(&mut f);
    let last = f.server.store_mut().messages(&name("bob"))[0].id;
    f.save(("bob", BOB), "alice", "a save to hold a sync"); // alice is online: probed, not stored
    f.dereg("alice", ALICE);
    let request = f.save_request(MsgId(900), "bob", "alice", "held");
    f.server.handle_datagram(f.now, addr(BOB), request);
    let sync = f.lane_job().expect("a sync");
    assert_eq!(sync.kind(), JobKind::Sync);
    f.server.handle_datagram(f.now, addr(BOB), Datagram::FetchDone { id: MsgId(901), count: 1, last });
    assert!(f.lane_job().is_none(), "the removal waits for the sync");
    f.server.handle_job_done(f.now, sync.run());
    let remove = f.lane_job().expect("the removal");
    assert_eq!(remove.kind(), JobKind::Remove);
    f.server.handle_job_done(f.now, remove.run());
    f.commit();
    let out = f.drain();
    assert!(out.contains(&(BOB, Datagram::Ack { id: MsgId(901) })), "{out:?}");
    assert!(f.stored("bob").is_empty());
}

#[test]
fn a_mailbox_leaves_memory_once_fetched_and_at_dereg() {
    let mut f = bob_away_with(&["one"]);
    bob_registers(&mut f);
    assert!(f.disk.knows("bob"), "known while it is fetched");
    let last = f.server.store_mut().messages(&name("bob"))[0].id;
    let id = f.id();
    f.recv(BOB, Datagram::FetchDone { id, count: 1, last });
    assert!(!f.disk.knows("bob"), "evicted once the fetch is done");
    f.register("carol", CAROL);
    let (_, out) = f.save(("alice", ALICE), "carol", "probe"); // carol online: known, probed
    assert!(out.iter().any(|(p, d)| *p == CAROL && matches!(d, Datagram::Probe { .. })), "{out:?}");
    f.dereg("carol", CAROL);
    assert!(!f.disk.knows("carol"), "evicted at dereg");
}

#[test]
fn saves_and_channel_copies_for_mailboxes_not_known_wait_for_their_open_jobs() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)]);
    f.dereg("bob", BOB);
    f.dereg("carol", CAROL);
    f.disk.forget("bob");
    f.disk.forget("carol");
    let (id, out) = f.save(("alice", ALICE), "bob", "direct");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    f.disk.forget("bob");
    let id = f.id();
    f.server.handle_datagram(f.now, addr(ALICE), f.channel_send(id, "alice", "all"));
    let kinds: Vec<JobKind> = std::iter::from_fn(|| f.server.poll_job(f.now)).map(|j| j.kind()).collect();
    assert_eq!(kinds, [JobKind::Open, JobKind::Open], "one per offline member; the jobs were dropped");
    assert_eq!(f.drain(), vec![]);
}

#[test]
fn the_channel_send_is_acked_once_the_offline_mailboxes_are_known_and_the_copies_synced() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB), ("carol", CAROL)]);
    f.dereg("carol", CAROL);
    f.disk.forget("carol");
    let id = f.id();
    let out = f.recv(ALICE, f.channel_send(id, "alice", "all"));
    assert!(out.contains(&(ALICE, Datagram::Ack { id })), "{out:?}");
    assert_eq!(f.stored("carol"), vec![("alice".into(), Origin::Channel, "all".into())]);
}

#[test]
#[should_panic(expected = "blocking load")]
fn the_test_store_catches_a_blocking_call() {
    let mut f = Fixture::new();
    let _ = f.server.store_mut().load(&name("bob"));
}

#[test]
fn a_save_for_a_mailbox_that_cannot_be_read_is_refused_not_left_to_retransmit() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    f.disk.forget("bob");
    f.fail = Some(JobKind::Open);
    let (id, out) = f.save(("alice", ALICE), "bob", "for an unreadable mailbox");
    assert_eq!(out, vec![(ALICE, Datagram::Refused { id, reason: Refusal::StorageUnavailable })]);
    assert!(f.stored("bob").is_empty());
}

#[test]
fn a_save_whose_mailbox_the_database_cannot_read_now_is_left_for_its_retransmission() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    f.dereg("bob", BOB);
    f.disk.forget("bob");
    let id = f.id();
    let save = f.save_request(id, "alice", "bob", "while the database restarts");
    f.server.handle_datagram(f.now, addr(ALICE), save.clone());
    while let Some(job) = f.server.poll_job(f.now) {
        let done = if job.kind() == JobKind::Open {
            let source = std::io::Error::other("the database system is shutting down").into();
            job.fail(StoreError::Database { op: "read a mailbox", source })
        } else {
            job.run()
        };
        f.server.handle_job_done(f.now, done);
    }
    assert_eq!(f.drain(), vec![], "not refused: the database may be back for the retransmission");
    let out = f.recv(ALICE, save);
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    assert_eq!(f.stored("bob"), vec![("alice".into(), Origin::Direct, "while the database restarts".into())]);
}

/// Issue 17, 2: what memory holds of a mailbox may be stale when other nodes share the store
/// (they store into it, or deliver from it): a registration learns it again by an open job,
/// even when it is known.
#[test]
fn a_registration_learns_its_mailbox_again_even_when_it_is_known() {
    let mut f = Fixture::online(&[("alice", ALICE), ("bob", BOB)]);
    let out = f.dereg("bob", BOB);
    f.ack_tables(&out);
    let (id, out) = f.save(("alice", ALICE), "bob", "one");
    assert_eq!(out, vec![(ALICE, Datagram::Ack { id })]);
    assert!(f.disk.knows("bob"), "known since the save");
    let id = f.id();
    f.server.handle_datagram(f.now, addr(BOB), f.reg(id, "bob"));
    assert_eq!(f.drain(), vec![], "no answer before the mailbox is learnt again");
    let job = f.server.poll_job(f.now).expect("a job");
    assert_eq!(job.kind(), JobKind::Open);
    f.server.handle_job_done(f.now, job.run());
    let out = f.drain();
    assert!(matches!(out[..], [(BOB, Datagram::Registered { stored: 1, .. })]), "{out:?}");
}

/// Issue 17, 2: a stored message another node delivered since this one learnt the mailbox is
/// answered as gone, with its id, so that the client skips it and its fetch completes.
#[test]
fn a_fetch_of_a_message_another_node_delivered_is_answered_gone() {
    let mut f = bob_away_with(&["one", "two"]);
    bob_registers(&mut f);
    let id = f.id();
    f.server.handle_datagram(f.now, addr(BOB), Datagram::Fetch { id, index: 1 });
    let job = f.server.poll_job(f.now).expect("a job");
    let Job { work: crate::jobs::Work::Read(read, _) } = job else { panic!("a read job: {job:?}") };
    let msg = MsgId(4242);
    let done = crate::jobs::JobDone { done: crate::jobs::Done::Read(read, Ok(offline_store::Fetched::Gone(msg))) };
    f.server.handle_job_done(f.now, done);
    assert_eq!(f.drain(), vec![(BOB, Datagram::Gone { id, index: 1, msg })]);
}

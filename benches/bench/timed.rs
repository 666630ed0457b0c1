//! A store that times another's syncs, for finding where a save's time goes: with
//! `CHATAPP_BENCH_SYNCS` set, each benchmark server over PostgreSQL prints, when it stops, how
//! many syncs it ran, their batches, and the time spent preparing each batch (`start_sync`,
//! on the server's thread), running it (the job: the transaction, waited for on the server's
//! thread) and taking it back (`sync_done`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_proto::{MsgId, Name, StoredMessage};
use offline_store::{
    Appended, CheckpointJob, Checkpointed, Discarded, MailboxScan, OpenJob, ReadJob, RemoveJob, Store, StoreError,
    SyncJob, Usage,
};

/// Whether servers over PostgreSQL report their syncs.
pub(crate) fn enabled() -> bool {
    std::env::var_os("CHATAPP_BENCH_SYNCS").is_some()
}

#[derive(Default)]
struct Figures {
    syncs: u64,
    appends: u64,
    largest: u64,
    start: Duration,
    run: Vec<Duration>,
    done: Duration,
    opens: u64,
    open: Duration,
}

/// `S`, its syncs timed.
pub(crate) struct Timed<S> {
    inner: S,
    label: String,
    batch: u64,
    figures: Arc<Mutex<Figures>>,
}

impl<S> Timed<S> {
    pub(crate) fn new(inner: S, label: String) -> Self {
        Timed { inner, label, batch: 0, figures: Arc::default() }
    }
}

impl<S> Drop for Timed<S> {
    fn drop(&mut self) {
        let mut f = self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.syncs == 0 {
            return;
        }
        let n = f.syncs as f64;
        let total_run: Duration = f.run.iter().sum();
        let p99 = crate::percentile(&mut f.run, 99.0);
        let p50 = crate::percentile(&mut f.run, 50.0);
        eprintln!(
            "  [{}] {} syncs, {:.1} saves each (largest {}); per sync: start_sync {:.3} ms, job {:.3} ms \
             (p50 {:.3}, p99 {:.3}), sync_done {:.3} ms; {} opens, {:.3} ms each",
            self.label,
            f.syncs,
            f.appends as f64 / n,
            f.largest,
            f.start.as_secs_f64() * 1e3 / n,
            total_run.as_secs_f64() * 1e3 / n,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            f.done.as_secs_f64() * 1e3 / n,
            f.opens,
            f.open.as_secs_f64() * 1e3 / f.opens.max(1) as f64,
        );
    }
}

impl<S: Store> Store for Timed<S> {
    fn append_once(&mut self, to: &Name, msg: &StoredMessage) -> Result<Appended, StoreError> {
        self.batch += 1;
        self.inner.append_once(to, msg)
    }

    fn start_sync(&mut self) -> Result<Option<SyncJob>, StoreError> {
        let t = Instant::now();
        let job = self.inner.start_sync()?;
        let mut f = self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f.start += t.elapsed();
        let Some(job) = job else { return Ok(None) };
        f.syncs += 1;
        f.appends += self.batch;
        f.largest = f.largest.max(self.batch);
        self.batch = 0;
        let figures = self.figures.clone();
        Ok(Some(SyncJob::deferred(move || {
            let t = Instant::now();
            let r = job.run();
            figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).run.push(t.elapsed());
            r
        })))
    }

    fn sync_done(&mut self) {
        let t = Instant::now();
        self.inner.sync_done();
        self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).done += t.elapsed();
    }

    fn discard_failed_batch(&mut self) -> Discarded {
        self.inner.discard_failed_batch()
    }

    fn holds_durable(&self, to: &Name, msg: &StoredMessage) -> bool {
        self.inner.holds_durable(to, msg)
    }

    fn checkpoint_due(&self) -> bool {
        self.inner.checkpoint_due()
    }

    fn checkpoint_job(&mut self) -> Result<CheckpointJob, StoreError> {
        self.inner.checkpoint_job()
    }

    fn finish_checkpoint(&mut self, result: Result<Checkpointed, StoreError>) -> Result<(), StoreError> {
        self.inner.finish_checkpoint(result)
    }

    fn load(&mut self, to: &Name) -> Result<Vec<StoredMessage>, StoreError> {
        self.inner.load(to)
    }

    fn open_job(&mut self, to: &Name) -> OpenJob {
        let job = self.inner.open_job(to);
        let figures = self.figures.clone();
        OpenJob::deferred(move || {
            let t = Instant::now();
            let r = job.run();
            let mut f = figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f.opens += 1;
            f.open += t.elapsed();
            r
        })
    }

    fn install(&mut self, to: &Name, scan: MailboxScan) {
        self.inner.install(to, scan);
    }

    fn known_usage(&self, to: &Name) -> Option<Usage> {
        self.inner.known_usage(to)
    }

    fn id_at(&self, to: &Name, index: usize) -> Option<MsgId> {
        self.inner.id_at(to, index)
    }

    fn read_job(&mut self, to: &Name, index: usize) -> Result<Option<ReadJob>, StoreError> {
        self.inner.read_job(to, index)
    }

    fn remove_first_job(&mut self, to: &Name, n: usize) -> Result<RemoveJob, StoreError> {
        self.inner.remove_first_job(to, n)
    }

    fn finish_remove(&mut self, to: &Name, done: Result<offline_store::Removed, StoreError>) -> Result<(), StoreError> {
        self.inner.finish_remove(to, done)
    }

    fn note_owed(&mut self, owed: &offline_store::OwedChannel) -> Result<(), StoreError> {
        self.inner.note_owed(owed)
    }

    fn owed_done(&mut self, from: &Name, id: MsgId) {
        self.inner.owed_done(from, id);
    }

    fn owed(&self) -> Vec<offline_store::OwedChannel> {
        self.inner.owed()
    }

    fn evict(&mut self, to: &Name) {
        self.inner.evict(to);
    }
}

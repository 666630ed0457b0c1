//! [`Db`]: the handle to one PostgreSQL database, whose connections live on a thread of their
//! own (a tokio current-thread runtime with a small pool), so that callers on any thread, inside
//! another tokio runtime or not, can wait for a query without nesting runtimes.
//!
//! This module owns the thread, the pool, the connection at start (with the schema's
//! migration) and what an error shows of the URL (never its password); it must not know what
//! the tables hold (that is [`crate::schema`]'s and the stores').

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::NoTls;

/// Most connections one [`Db`] keeps open: the store's jobs run one at a time, reads and the
/// connection at start may overlap them.
const POOL_SIZE: usize = 4;

/// One piece of work for the database thread, given the pool.
type Task = Box<dyn FnOnce(Pool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What went wrong with the database itself (a store's operations report
/// [`offline_store::StoreError::Database`] instead).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not parse as a libpq connection string.
    #[error("bad PostgreSQL URL {url}: {reason}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// No connection could be made within the timeout (refused, no such socket, no answer,
    /// authentication refused, ...).
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// The deepest cause, on one line.
        reason: String,
    },
    /// A statement failed (at start: the schema's creation or migration).
    #[error("PostgreSQL at {url}: {op}")]
    Query {
        /// The URL, without its password.
        url: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database holds a newer schema than this build knows.
    #[error("PostgreSQL at {url} has schema version {found}; this build knows up to {known}")]
    NewerSchema {
        /// The URL, without its password.
        url: String,
        /// The version in the database's `meta` table.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },
    /// The server identity kept in the database is damaged.
    #[error("the server identity kept in the database is damaged: {0}")]
    Identity(String),
    /// The database thread could not be started, or has stopped.
    #[error("the PostgreSQL thread {0}")]
    Thread(&'static str),
}

/// A handle to one PostgreSQL database: cheap to clone, usable from any thread.
///
/// Its connections live on a dedicated thread that runs a tokio current-thread runtime with a
/// pool of at most four connections; [`Db::run`] blocks the caller until a piece of work is done
/// there (fine inside another runtime: it waits on a std channel), [`Db::run_async`] awaits it,
/// and [`Db::spawn`] leaves a long-lived task there (e.g. a `LISTEN` connection made from
/// [`Db::config`]). The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    tasks: mpsc::UnboundedSender<Task>,
    /// The URL without its password, for messages.
    url: String,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("url", &self.inner.url).finish_non_exhaustive()
    }
}

impl Db {
    /// Connects to the database at `url` (libpq style: `postgres://user:password@host:port/db`,
    /// or `postgres://user@/db?host=/socket/dir`) within `timeout`, and creates or migrates the
    /// schema ([`crate::schema`]).
    ///
    /// # Errors
    /// [`DbError::BadUrl`], [`DbError::Unreachable`] (one line naming the URL without its
    /// password, e.g. `cannot reach PostgreSQL at postgres://chat@127.0.0.1:5432/chat:
    /// Connection refused (os error 111)`), [`DbError::Query`] or [`DbError::NewerSchema`]
    /// from the migration, [`DbError::Thread`].
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, DbError> {
        let db = Self::start(url, timeout)?;
        let shown = db.inner.url.clone();
        db.run(move |pool| async move {
            let mut client = get(&pool, timeout, &shown).await?;
            crate::schema::migrate(&mut client, &shown).await
        })??;
        Ok(db)
    }

    /// Starts the thread and checks that a connection can be made, without touching the schema
    /// (for the test harness's maintenance connection).
    pub(crate) fn connect_bare(url: &str, timeout: Duration) -> Result<Self, DbError> {
        let db = Self::start(url, timeout)?;
        let shown = db.inner.url.clone();
        db.run(move |pool| async move { get(&pool, timeout, &shown).await.map(drop) })??;
        Ok(db)
    }

    fn start(url: &str, timeout: Duration) -> Result<Self, DbError> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::BadUrl { url: shown.clone(), reason: deepest(&e) })?;
        config.connect_timeout(timeout);
        // Every commit on these connections waits for the WAL flush, whatever the server's
        // default (a save is ACKed on it), set as the session starts, which costs no round
        // trip; and the schema's `IF NOT EXISTS` notices are not worth a log line at each start.
        let options = format!(
            "{} -c synchronous_commit=on -c client_min_messages=warning",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .build()
            .map_err(|_| DbError::Thread("cannot build its pool"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|_| DbError::Thread("cannot build its runtime"))?;
        let (tasks, mut queue) = mpsc::unbounded_channel::<Task>();
        std::thread::Builder::new()
            .name("chat-pg".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(task) = queue.recv().await {
                        tokio::spawn(task(pool.clone()));
                    }
                });
            })
            .map_err(|_| DbError::Thread("cannot be started"))?;
        Ok(Self { inner: Arc::new(Inner { tasks, url: shown, config }) })
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The parsed connection settings, for a connection of one's own (e.g. `LISTEN`, made with
    /// `config.connect(NoTls)` inside [`Db::spawn`]).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.inner.config
    }

    /// Runs `work` on the database thread with the pool and blocks this thread until it is
    /// done. Works from inside another tokio runtime (it waits on a std channel); never call it
    /// from work running on the database thread itself.
    ///
    /// # Errors
    /// [`DbError::Thread`] when the database thread has stopped (or `work` panicked).
    pub fn run<T, F, Fut>(&self, work: F) -> Result<T, DbError>
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(move |pool| async move {
            let _ = reply.send(work(pool).await);
        })?;
        answer.recv().map_err(|_| DbError::Thread("stopped before answering"))
    }

    /// [`Db::run`] for async callers: awaits the work instead of blocking.
    ///
    /// # Errors
    /// As [`Db::run`].
    pub async fn run_async<T, F, Fut>(&self, work: F) -> Result<T, DbError>
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(move |pool| async move {
            let _ = reply.send(work(pool).await);
        })?;
        answer.await.map_err(|_| DbError::Thread("stopped before answering"))
    }

    /// Leaves `work` running on the database thread (until it ends or the last handle is
    /// dropped), e.g. a long-lived `LISTEN` connection.
    ///
    /// # Errors
    /// [`DbError::Thread`] when the database thread has stopped.
    pub fn spawn<F, Fut>(&self, work: F) -> Result<(), DbError>
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.send(work)
    }

    fn send<F, Fut>(&self, work: F) -> Result<(), DbError>
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task: Task = Box::new(move |pool| Box::pin(work(pool)));
        self.inner.tasks.send(task).map_err(|_| DbError::Thread("has stopped"))
    }
}

/// A connection from the pool within `timeout`, or [`DbError::Unreachable`].
async fn get(pool: &Pool, timeout: Duration, url: &str) -> Result<deadpool_postgres::Client, DbError> {
    let unreachable = |reason: String| DbError::Unreachable { url: url.to_owned(), reason };
    match tokio::time::timeout(timeout, pool.get()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unreachable(deepest(&e))),
        Err(_) => Err(unreachable(format!("no connection within {} ms", timeout.as_millis()))),
    }
}

/// The deepest cause of `e`, on one line.
pub(crate) fn deepest(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().replace('\n', " ")
}

/// `url` without its password: `postgres://user:secret@host/db` shows as
/// `postgres://user@host/db`, and a `password=` parameter (URL or key-value form) as
/// `password=…`.
pub fn redact(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let authority = match authority.rsplit_once('@') {
                Some((user, host)) => format!("{}@{host}", user.split(':').next().unwrap_or_default()),
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{tail}")
        }
        None => url.to_owned(),
    };
    for sep in ['?', '&', ' '] {
        let key = format!("{sep}password=");
        if let Some(at) = out.find(&key) {
            let start = at + key.len();
            let end = out[start..].find(['&', ' ']).map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "…");
        }
    }
    if let Some(rest) = out.strip_prefix("password=") {
        let end = rest.find(' ').map_or(rest.len(), |e| e);
        out = format!("password=…{}", &rest[end..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(redact("postgres://chat:s3cret@127.0.0.1:5432/chat"), "postgres://chat@127.0.0.1:5432/chat");
        assert_eq!(redact("postgres://chat@127.0.0.1:5432/chat"), "postgres://chat@127.0.0.1:5432/chat");
        assert_eq!(
            redact("postgres://u@/db?host=/tmp/x&password=p&port=5"),
            "postgres://u@/db?host=/tmp/x&password=…&port=5"
        );
        assert_eq!(redact("host=/tmp password=p user=u"), "host=/tmp password=… user=u");
        assert_eq!(redact("password=p user=u"), "password=… user=u");
    }
}

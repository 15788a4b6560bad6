//! SQLite's read connections, run on the thread that asks.
//!
//! A read through a connection on a thread of its own costs two or more hand-overs between
//! threads, which cost more than most reads do themselves (a resource by id, a page of one
//! patient's records: some microseconds of SQLite's work). So a read first runs on the
//! runtime thread of its request, within a short budget ([`BUDGET`]). One still running at
//! the end of it is ended and run again from the start on a blocking thread, within the
//! statement timeout, where it may be stopped by its request's cancellation: no request holds
//! a runtime thread for longer than the budget. When it runs past the budget on the blocking
//! thread too, the statement is remembered (by a hash of its text, which holds no values: they
//! are bound) and goes to a blocking thread at once the next times, so that a search that
//! always runs long pays the budget once, not on every request. The budget is time on the
//! clock, and a thread can be paused by the system in the middle of a read (on a busy machine,
//! for milliseconds): one such pause must not send every later read of its kind to a blocking
//! thread, two hand-overs each.
//!
//! Reads see what was committed when they start, as any SQLite read does: nothing is cached.
//! A statement that writes (an `UPDATE ... RETURNING` outside a transaction) is not run here
//! ([`Fetched::Writes`]): it goes to the write connection.

use super::lite::{bind, LiteRow};
use super::watch::Clock;
use super::{Arg, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a read may run on its request's thread before it moves to a blocking thread.
/// The five searches of the benchmark and a read by id end well within it.
const BUDGET: Duration = Duration::from_micros(500);

/// The most read connections open at once (and reads running at once).
const CONNECTIONS: usize = 8;

/// How long a read on a blocking thread waits for a lock another connection holds (the
/// recovery of a log after a crash, say); on the request's thread it does not wait.
const BUSY: Duration = Duration::from_secs(10);

/// The read connections: cheap to clone.
#[derive(Clone)]
pub(super) struct Readers {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    timeout: Duration,
    budget: Duration,
    long_after: Duration,
    idle: Mutex<Vec<Reader>>,
    permits: Arc<Semaphore>,
    /// The hashes of statements that outran the budget (see the module).
    long: Mutex<HashSet<u64>>,
}

/// The most statements remembered as long; past it, they are all forgotten.
const LONG_MAX: usize = 4096;

struct Reader {
    conn: Connection,
    clock: Arc<Clock>,
}

/// What a statement gave.
pub(super) enum Fetched {
    Rows(Vec<LiteRow>),
    /// The statement writes: it was not run.
    Writes,
}

impl Readers {
    /// The read connections of the database at `path`, each statement ended after `timeout`;
    /// one is opened now, to fail early.
    pub(super) fn open(path: &Path, timeout: Duration) -> Result<Readers, StoreError> {
        Readers::open_with(path, timeout, BUDGET, BUDGET)
    }

    /// The same, a read moving to a blocking thread after `budget` on its request's thread and
    /// remembered as long when it runs past `long_after` there.
    fn open_with(
        path: &Path,
        timeout: Duration,
        budget: Duration,
        long_after: Duration,
    ) -> Result<Readers, StoreError> {
        let inner = Inner {
            path: path.to_owned(),
            timeout,
            budget,
            long_after,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(CONNECTIONS)),
            long: Mutex::new(HashSet::new()),
        };
        let first = inner.connect()?;
        inner.give_back(first);
        Ok(Readers {
            inner: Arc::new(inner),
        })
    }

    /// Lets the idle connections go, so that each read afterwards opens one that loads the
    /// schema and the planner's statistics as they are now: a connection loads statistics with
    /// the schema, and an ANALYZE on another connection does not make it load them again.
    pub(super) fn renew(&self) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Closes the idle connections; a read asked for afterwards fails.
    pub(super) fn close(&self) {
        self.inner.permits.close();
        self.renew();
    }

    /// Runs `sql`, keeping at most `max` rows.
    pub(super) async fn fetch(
        &self,
        sql: &str,
        args: &[Arg],
        max: usize,
    ) -> Result<Fetched, StoreError> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let reader = self.inner.take()?;
        let started = Instant::now();
        let shape = hash(sql);
        if !self.inner.is_long(shape) {
            reader
                .clock
                .start_within(self.inner.budget.min(self.inner.timeout));
            reader.conn.busy_timeout(Duration::ZERO)?;
            match reader.fetch(sql, args, max) {
                Err(e) if over_budget(&e) && started.elapsed() < self.inner.timeout => {}
                done => {
                    self.inner.give_back(reader);
                    return done;
                }
            }
        }
        let left = self.inner.timeout.saturating_sub(started.elapsed());
        let moved = Moved {
            sql: sql.to_owned(),
            args: args.to_vec(),
            max,
            shape,
        };
        self.on_blocking_thread(reader, permit, moved, left).await
    }

    /// Runs the statement again on a blocking thread, for at most `left`; stopped if this
    /// future is dropped. When it runs past the budget there too, it is remembered as long: a
    /// read that only seemed long (its thread was paused by the system while the clock ran, or
    /// it found a lock held once) keeps its place on the request's thread.
    async fn on_blocking_thread(
        &self,
        reader: Reader,
        permit: OwnedSemaphorePermit,
        moved: Moved,
        left: Duration,
    ) -> Result<Fetched, StoreError> {
        let clock = reader.clock.clone();
        let run = clock.start_within(left);
        let mut stop = Stop(Some((clock, run)));
        let inner = self.inner.clone();
        let done = tokio::task::spawn_blocking(move || {
            let Moved {
                sql,
                args,
                max,
                shape,
            } = moved;
            let started = Instant::now();
            let r = reader
                .conn
                .busy_timeout(BUSY)
                .map_err(StoreError::from)
                .and_then(|()| reader.fetch(&sql, &args, max));
            if started.elapsed() > inner.long_after {
                inner.runs_long(shape);
            }
            inner.give_back(reader);
            drop(permit);
            r
        })
        .await;
        stop.0 = None;
        done.map_err(|_| StoreError::Closed)?
    }
}

/// A statement moved to a blocking thread.
struct Moved {
    sql: String,
    args: Vec<Arg>,
    max: usize,
    /// Its text's hash.
    shape: u64,
}

/// A statement's text, hashed.
fn hash(sql: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(sql)
}

/// Whether a read on its request's thread was ended by the budget (or found a lock held).
fn over_budget(e: &StoreError) -> bool {
    match e {
        StoreError::TimedOut => true,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DatabaseBusy
                || f.code == rusqlite::ErrorCode::DatabaseLocked
        }
        _ => false,
    }
}

/// Stops a statement on a blocking thread when its read is dropped.
struct Stop(Option<(Arc<Clock>, u64)>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some((clock, run)) = self.0.take() {
            clock.stop(run);
        }
    }
}

impl Inner {
    fn connect(&self) -> Result<Reader, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Reads only: a statement that writes is sent to the write connection before it runs
        // (see [`Fetched::Writes`]), and this makes sure.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        conn.set_prepared_statement_cache_capacity(256);
        let clock = Clock::new(self.timeout);
        clock.install(&conn);
        Ok(Reader { conn, clock })
    }

    fn is_long(&self, shape: u64) -> bool {
        self.long
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&shape)
    }

    fn runs_long(&self, shape: u64) {
        let mut long = self.long.lock().unwrap_or_else(|p| p.into_inner());
        if long.len() >= LONG_MAX {
            long.clear();
        }
        long.insert(shape);
    }

    fn take(&self) -> Result<Reader, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(r) => Ok(r),
            None => self.connect(),
        }
    }

    fn give_back(&self, reader: Reader) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reader);
    }
}

impl Reader {
    fn fetch(&self, sql: &str, args: &[Arg], max: usize) -> Result<Fetched, StoreError> {
        let mut st = self.conn.prepare_cached(sql)?;
        if !st.readonly() {
            return Ok(Fetched::Writes);
        }
        if args.len() != st.parameter_count() {
            return Err(StoreError::Decode(format!(
                "{} values for {} parameters",
                args.len(),
                st.parameter_count()
            )));
        }
        bind(&mut st, args)?;
        let columns = LiteRow::columns_of(&st);
        let mut rows = Vec::new();
        let mut result = st.raw_query();
        while rows.len() < max {
            let Some(r) = result.next()? else { break };
            rows.push(LiteRow::read(r, &columns)?);
        }
        Ok(Fetched::Rows(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recursive count to `n`: about a dozen steps of SQLite's machine a number.
    fn count_to(n: u64) -> String {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) \
             SELECT count(*) AS n FROM c"
        )
    }

    async fn counted(readers: &Readers, sql: &str) -> i64 {
        match readers.fetch(sql, &[], 1).await.unwrap() {
            Fetched::Rows(rows) => crate::store::Row::Lite(rows.into_iter().next().unwrap())
                .int("n")
                .unwrap(),
            Fetched::Writes => panic!("a count does not write"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_read_long_on_its_blocking_thread_too_is_remembered_as_long() {
        let dir = std::env::temp_dir().join(format!("expediente-readers-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.db");
        Connection::open(&path).unwrap();
        // No time at all on the request's thread: every read that reaches SQLite's progress
        // handler moves, as one paused by the system would.
        let long_after = Duration::from_millis(50);
        let readers =
            Readers::open_with(&path, Duration::from_secs(30), Duration::ZERO, long_after).unwrap();
        // A short count moves, runs quickly on its blocking thread, and is not remembered:
        // its next run starts on the request's thread again.
        let short = count_to(3_000);
        assert_eq!(counted(&readers, &short).await, 3_000);
        assert!(!readers.inner.is_long(hash(&short)));
        // A long one is remembered.
        let long = count_to(5_000_000);
        let started = Instant::now();
        assert_eq!(counted(&readers, &long).await, 5_000_000);
        assert!(started.elapsed() > long_after, "{:?}", started.elapsed());
        assert!(readers.inner.is_long(hash(&long)));
        assert!(!readers.inner.is_long(hash(&short)));
        readers.close();
        std::fs::remove_dir_all(&dir).ok();
    }
}

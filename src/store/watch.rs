//! How SQLite's statements are ended: SQLite has no statement timeout, but it calls a progress
//! handler every few thousand steps of a statement, and the statement stops when the handler
//! says so.
//!
//! Each connection (the write connection, [`super::lite`], and each read connection,
//! [`super::readers`]) has a [`Clock`]: set before each statement, its handler ends the
//! statement past the deadline, or at once when the statement is stopped (its request
//! cancelled).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Virtual machine steps between two calls of a progress handler (some microseconds).
const STEPS: i32 = 10_000;

/// A connection's deadline for the statement it runs.
pub(super) struct Clock {
    base: Instant,
    timeout: Duration,
    /// Nanoseconds after `base`.
    deadline: AtomicU64,
    /// The number of the statement that runs, and the number of one to stop at once (a
    /// number, not a flag: a stop asked for a statement that has ended cannot stop the next).
    run: AtomicU64,
    stop: AtomicU64,
}

impl Clock {
    pub fn new(timeout: Duration) -> Arc<Clock> {
        Arc::new(Clock {
            base: Instant::now(),
            timeout,
            deadline: AtomicU64::new(u64::MAX),
            run: AtomicU64::new(0),
            stop: AtomicU64::new(u64::MAX),
        })
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts the time of a statement.
    pub fn start(&self) {
        self.start_within(self.timeout);
    }

    /// Starts the time of a statement that may run for `limit`; its number, to stop it with.
    pub fn start_within(&self, limit: Duration) -> u64 {
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        self.deadline
            .store(self.nanos().saturating_add(limit), Ordering::Relaxed);
        self.run.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Stops statement `run` if it still runs.
    pub fn stop(&self, run: u64) {
        self.stop.store(run, Ordering::Release);
    }

    fn over(&self) -> bool {
        self.nanos() > self.deadline.load(Ordering::Relaxed)
            || self.stop.load(Ordering::Acquire) == self.run.load(Ordering::Acquire)
    }

    /// Installs the handler on a connection (rusqlite: `true` interrupts).
    pub fn install(self: &Arc<Clock>, conn: &rusqlite::Connection) {
        let clock = self.clone();
        conn.progress_handler(STEPS, Some(move || clock.over()));
    }
}

//! How SQLite's statements are ended: SQLite has no statement timeout, but it calls a progress
//! handler every few thousand steps of a statement, and the statement stops when the handler
//! says so.
//!
//! - The write connection ([`super::lite`]) runs its statements on a thread of its own: its
//!   [`Clock`] is set before each statement and the handler ends the statement past it. A
//!   transaction dropped while a statement of its own runs interrupts it (see
//!   [`super::lite::LiteTx`]).
//! - A read from the pool ([`Watch`]) installs a handler of its own on the connection it took:
//!   the statement ends past its deadline, or as soon as the read is dropped (its request
//!   cancelled).

use super::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::Sqlite;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Virtual machine steps between two calls of a progress handler (some microseconds).
const STEPS: i32 = 10_000;

/// The write connection's deadline for the statement it runs.
pub(super) struct Clock {
    base: Instant,
    timeout: Duration,
    /// Nanoseconds after `base`.
    deadline: AtomicU64,
}

impl Clock {
    pub fn new(timeout: Duration) -> Arc<Clock> {
        Arc::new(Clock {
            base: Instant::now(),
            timeout,
            deadline: AtomicU64::new(u64::MAX),
        })
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts the time of a statement.
    pub fn start(&self) {
        let timeout = u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX);
        self.deadline
            .store(self.nanos().saturating_add(timeout), Ordering::Relaxed);
    }

    /// Installs the handler on the write connection (rusqlite: `true` interrupts).
    pub fn install(self: &Arc<Clock>, conn: &rusqlite::Connection) {
        let clock = self.clone();
        conn.progress_handler(
            STEPS,
            Some(move || clock.nanos() > clock.deadline.load(Ordering::Relaxed)),
        );
    }
}

/// A read's hold on the statement it runs on a pooled SQLite connection: its statement ends
/// past `timeout` or when this is dropped, whichever comes first. Made before the statement
/// and dropped before the connection.
pub(super) struct Watch {
    cancelled: Arc<AtomicBool>,
}

impl Watch {
    pub async fn set(
        conn: &mut PoolConnection<Sqlite>,
        timeout: Duration,
    ) -> Result<Watch, StoreError> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let seen = cancelled.clone();
        let deadline = Instant::now() + timeout;
        // (sqlx: `false` interrupts.)
        conn.lock_handle()
            .await?
            .set_progress_handler(STEPS, move || {
                !seen.load(Ordering::Relaxed) && Instant::now() < deadline
            });
        Ok(Watch { cancelled })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

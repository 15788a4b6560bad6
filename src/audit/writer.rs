//! The writer of read events: requests hand their event to a bounded queue and are answered;
//! one task per process takes what is waiting, appends it to the chain and commits. With a
//! [`Journal`] (as `serve` runs), each event is first written to the journal file, so a crash
//! loses none of the answered reads, and the writer gathers events for longer: on SQLite for up to a second, one
//! transaction then storing thousands, which costs far less per event than many small ones
//! (docs/BENCHMARKS.md). Without one (the tests' in-process servers, `import`) it
//! gathers for a few milliseconds, and a crash loses the events waiting.
//!
//! Nothing is dropped: a batch that cannot be stored is tried again until it is, the queue
//! fills meanwhile, and once it is full requests wait to enter it (and time out, answered 503,
//! if the database stays away). A graceful stop stores what waits before the database closes.
//! The same task chains the inbox (direct changes) every second.

use super::journal::{Journal, Retired};
use super::{chain, Event};
use crate::store::Db;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The most events waiting; past it, requests wait to enter.
const QUEUE: usize = 4096;
/// The most events appended in one transaction.
const BATCH: usize = 1024;
/// How long the writer gathers events after the first before it writes them.
const GATHER: Duration = Duration::from_millis(5);
/// The same with a journal, where waiting costs no durability. On SQLite, a commit writes each
/// page it changed to the log, so a second's events stored at once write each index page that
/// many of them touch once for all (the read cost of audit fell by half). PostgreSQL gains
/// nothing past some milliseconds and its answers wait longer behind a large batch.
const JOURNALED_SQLITE: (Duration, usize) = (Duration::from_secs(1), 16384);
const JOURNALED_POSTGRES: (Duration, usize) = (Duration::from_millis(50), 2048);
/// How often the inbox is looked at.
const INBOX_EVERY: Duration = Duration::from_secs(1);
/// How long a stopping writer keeps trying to store what waits.
const LAST_TRIES: Duration = Duration::from_secs(10);

enum Job {
    Event(Box<Event>),
    /// Answered once every event sent before it is stored.
    Flush(oneshot::Sender<()>),
}

/// The audit queue of a process (cheap to clone).
#[derive(Clone)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    journal: Option<Arc<Journal>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: Arc<Stats>,
}

/// What the writer has done, for /metrics and /health.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events waiting to be stored.
    pub depth: AtomicUsize,
    pub events: AtomicU64,
    pub batches: AtomicU64,
    /// The time spent appending batches, in microseconds.
    pub write_micros: AtomicU64,
    pub failures: AtomicU64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.inner.is_some() {
            "Audit"
        } else {
            "Audit(off)"
        })
    }
}

impl Audit {
    /// Starts the writer of `db`'s audit, writing each event to `journal` first when given.
    pub fn start(db: Db, journal: Option<Journal>) -> Audit {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let journal = journal.map(Arc::new);
        let task = tokio::spawn(run(db, rx, stats.clone(), journal.clone()));
        Audit {
            inner: Some(Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                journal,
                task: Mutex::new(Some(task)),
                stats,
            })),
        }
    }

    /// No audit at all: only to measure what auditing costs (`--no-audit-for-measurement`).
    pub fn off() -> Audit {
        Audit { inner: None }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.inner
            .as_ref()
            .and_then(|i| i.jobs.lock().ok().and_then(|j| j.clone()))
    }

    /// Queues `event` (written to the journal first, when there is one), waiting for room in
    /// the queue when it is full.
    pub async fn record(&self, mut event: Event) -> Result<(), crate::error::Error> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let stopped = || unrecorded("the audit writer has stopped");
        let sender = self.sender().ok_or_else(stopped)?;
        let permit = sender.reserve().await.map_err(|_| stopped())?;
        inner.stats.depth.fetch_add(1, Ordering::Relaxed);
        let Some(journal) = &inner.journal else {
            permit.send(Job::Event(Box::new(event)));
            return Ok(());
        };
        let id = uuid::Uuid::now_v7();
        event.id = Some(id);
        let text = event.text();
        journal
            .write(id, text, move |text| {
                event.written = Some(text);
                permit.send(Job::Event(Box::new(event)))
            })
            .map_err(|e| {
                inner.stats.depth.fetch_sub(1, Ordering::Relaxed);
                tracing::error!(error = %e, "the audit journal could not be written");
                unrecorded("the audit journal could not be written")
            })
    }

    /// Waits until every event queued before is stored.
    pub async fn flush(&self) {
        let Some(sender) = self.sender() else { return };
        let (done, wait) = oneshot::channel();
        if sender.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub fn stats(&self) -> Option<Arc<Stats>> {
        self.inner.as_ref().map(|i| i.stats.clone())
    }

    /// Stops taking events, stores those waiting and ends the writer.
    pub async fn close(&self) {
        let Some(inner) = &self.inner else { return };
        if let Ok(mut j) = inner.jobs.lock() {
            j.take();
        }
        let task = inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// A request whose event could not be queued: nothing is served without its event, and the
/// client may try again.
fn unrecorded(why: &str) -> crate::error::Error {
    crate::error::Error::Unavailable(format!("the audit event could not be stored: {why}"))
}

/// The writer: one part gathers the queued events into batches while the other stores the
/// batch before, so that requests find room in the queue while a batch is stored (a second of
/// reads, thousands of events, takes a fifth of a second to store on SQLite: the queue filled
/// meanwhile, and requests waited).
async fn run(db: Db, rx: mpsc::Receiver<Job>, stats: Arc<Stats>, journal: Option<Arc<Journal>>) {
    let limits = match journal {
        Some(_) if db.dialect() == crate::store::Dialect::Sqlite => JOURNALED_SQLITE,
        Some(_) => JOURNALED_POSTGRES,
        None => (GATHER, BATCH),
    };
    // One batch gathered while one is stored: no more.
    let (batches, todo) = mpsc::channel(1);
    tokio::join!(
        gather_all(rx, batches, limits),
        store_all(db, todo, stats, journal)
    );
}

/// A batch of events, the flushes answered once it is stored, and whether it is the last.
struct Batch {
    events: Vec<Event>,
    flushes: Vec<oneshot::Sender<()>>,
    last: bool,
}

async fn gather_all(
    mut rx: mpsc::Receiver<Job>,
    batches: mpsc::Sender<Batch>,
    limits: (Duration, usize),
) {
    while let Some(job) = rx.recv().await {
        let (events, flushes, open) = gather(job, &mut rx, limits).await;
        let batch = Batch {
            events,
            flushes,
            last: !open,
        };
        if batches.send(batch).await.is_err() || !open {
            return;
        }
    }
}

async fn store_all(
    db: Db,
    mut todo: mpsc::Receiver<Batch>,
    stats: Arc<Stats>,
    journal: Option<Arc<Journal>>,
) {
    let mut tick = tokio::time::interval(INBOX_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut files = Files::default();
    loop {
        tokio::select! {
            batch = todo.recv() => {
                let Some(batch) = batch else { break };
                let n = batch.events.len() as u64;
                if write(&db, batch.events, &stats, batch.last).await {
                    files.stored(n, journal.as_ref()).await;
                } else {
                    files.lost = true;
                }
                for f in batch.flushes {
                    let _ = f.send(());
                }
                if batch.last {
                    break;
                }
            }
            _ = tick.tick() => {
                if let Err(e) = seal(&db).await {
                    tracing::warn!(error = %e, "could not chain the audit inbox");
                }
            }
        }
    }
    // The last changes made while stopping.
    let _ = seal(&db).await;
    if let (Some(j), false) = (journal, files.lost) {
        j.finish();
    }
}

/// The journal files the writer moved on from, and how many journaled events it stored.
#[derive(Default)]
struct Files {
    stored: u64,
    retired: Vec<Retired>,
    /// Events were given up on (the database away while stopping): the files stay, for the
    /// next start to store.
    lost: bool,
}

impl Files {
    /// `n` more events are stored: the files whose events all are go; a large journal moves
    /// to a new file.
    async fn stored(&mut self, n: u64, journal: Option<&Arc<Journal>>) {
        let Some(journal) = journal.cloned() else {
            return;
        };
        self.stored += n;
        let stored = self.stored;
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| r.upto <= stored);
        self.retired = kept;
        done.into_iter().for_each(Retired::remove);
        // A new file is written full of zeros: not on the runtime's threads.
        let files = tokio::task::spawn_blocking(move || journal.rotate())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match files {
            Ok(files) => {
                for r in files {
                    if r.upto <= stored {
                        r.remove();
                    } else {
                        self.retired.push(r);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "could not start a new audit journal file"),
        }
    }
}

/// The events waiting after `first`, gathered for `window` at most (less when asked to flush
/// or when the batch reaches `most`); and whether the queue is still open.
async fn gather(
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    (window, most): (Duration, usize),
) -> (Vec<Event>, Vec<oneshot::Sender<()>>, bool) {
    let (mut events, mut flushes) = (Vec::new(), Vec::new());
    let take = |job: Job, events: &mut Vec<Event>, flushes: &mut Vec<oneshot::Sender<()>>| match job
    {
        Job::Event(e) => events.push(*e),
        Job::Flush(f) => flushes.push(f),
    };
    take(first, &mut events, &mut flushes);
    let until = tokio::time::Instant::now() + window;
    while events.len() < most && flushes.is_empty() {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(job)) => take(job, &mut events, &mut flushes),
            Ok(None) => return (events, flushes, false),
            Err(_) => break,
        }
    }
    (events, flushes, true)
}

/// Stores `events`, trying again until it can (at most [`LAST_TRIES`] when `stopping`);
/// whether they were stored.
async fn write(db: &Db, events: Vec<Event>, stats: &Stats, stopping: bool) -> bool {
    if events.is_empty() {
        return true;
    }
    let mut stored = true;
    let n = events.len();
    let first_try = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        let r = append(db, &events).await;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .write_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match r {
            Ok(()) => {
                stats.events.fetch_add(n as u64, Ordering::Relaxed);
                break;
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if stopping && first_try.elapsed() > LAST_TRIES {
                    tracing::error!(error = %e, events = n, "audit events not stored: the database is away while stopping");
                    stored = false;
                    break;
                }
                tracing::error!(error = %e, events = n, "audit events not stored yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    stats.depth.fetch_sub(n, Ordering::Relaxed);
    stored
}

async fn append(db: &Db, events: &[Event]) -> Result<(), crate::store::StoreError> {
    let mut tx = db.begin().await?;
    if db.dialect() == crate::store::Dialect::Postgres {
        // Committed without waiting for the disk (docs/AUDIT.md); a later write's commit, which
        // does wait, makes these durable with it.
        tx.queue_once("SET LOCAL synchronous_commit = off").await?;
    }
    chain::append(&mut tx, events).await?;
    tx.commit().await
}

/// Chains what waits in the inbox, a batch at a time.
pub async fn seal(db: &Db) -> Result<usize, crate::store::StoreError> {
    let mut total = 0;
    loop {
        // Most of the time there is nothing: looked at without taking the head.
        if !chain::waiting(db).await? {
            return Ok(total);
        }
        let mut tx = db.begin().await?;
        let n = chain::seal_inbox(&mut tx, &[]).await?;
        if n == 0 {
            return Ok(total);
        }
        tx.commit().await?;
        total += n;
    }
}

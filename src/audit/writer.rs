//! The writer of read events: requests hand their event to a bounded queue and wait until it is
//! stored; one task per process takes what is waiting, appends it to the chain in one
//! transaction and answers every request of the batch. Nothing is dropped: when the queue is
//! full, requests wait to enter it; an event that cannot be stored fails its request. The same
//! task chains the inbox (direct changes) every second.

use super::{chain, Event};
use crate::store::Db;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The most events waiting; past it, requests wait to enter.
const QUEUE: usize = 4096;
/// The most events appended in one transaction.
const BATCH: usize = 512;
/// How often the inbox is looked at.
const INBOX_EVERY: Duration = Duration::from_secs(1);

type Job = (Event, oneshot::Sender<Result<(), String>>);

/// The audit queue of a process (cheap to clone).
#[derive(Clone)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
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
    /// Starts the writer of `db`'s audit.
    pub fn start(db: Db) -> Audit {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run(db, rx, stats.clone()));
        Audit {
            inner: Some(Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                task: Mutex::new(Some(task)),
                stats,
            })),
        }
    }

    /// No audit at all: only to measure what auditing costs (`serve --audit off`).
    pub fn off() -> Audit {
        Audit { inner: None }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Stores `event`, waiting until it is stored.
    pub async fn record(&self, event: Event) -> Result<(), crate::error::Error> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let sender = inner.jobs.lock().ok().and_then(|j| j.clone());
        let Some(sender) = sender else {
            return Err(unrecorded("the audit writer has stopped"));
        };
        let (done, wait) = oneshot::channel();
        inner.stats.depth.fetch_add(1, Ordering::Relaxed);
        if sender.send((event, done)).await.is_err() {
            inner.stats.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(unrecorded("the audit writer has stopped"));
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(unrecorded(&why)),
            Err(_) => Err(unrecorded("the audit writer has stopped")),
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

/// A request whose event could not be stored: nothing is served without its event, and the
/// client may try again (the database is most often what is away).
fn unrecorded(why: &str) -> crate::error::Error {
    crate::error::Error::Unavailable(format!("the audit event could not be stored: {why}"))
}

async fn run(db: Db, mut rx: mpsc::Receiver<Job>, stats: Arc<Stats>) {
    let mut tick = tokio::time::interval(INBOX_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { break };
                let mut batch = vec![job];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                write(&db, batch, &stats).await;
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
}

async fn write(db: &Db, batch: Vec<Job>, stats: &Stats) {
    let started = Instant::now();
    let (events, answers): (Vec<Event>, Vec<_>) = batch.into_iter().unzip();
    let n = events.len();
    let r = async {
        let mut tx = db.begin().await?;
        if db.dialect() == crate::store::Dialect::Postgres {
            // Committed without waiting for the disk (see docs/AUDIT.md): a read's answer waits
            // for its event to be committed, not for an fsync, as every commit on SQLite
            // (synchronous=NORMAL). A later write's commit, which does wait, makes these durable
            // with it.
            tx.queue_once("SET LOCAL synchronous_commit = off").await?;
        }
        chain::append(&mut tx, &events).await?;
        tx.commit().await
    }
    .await;
    stats.depth.fetch_sub(n, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .write_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let r = match r {
        Ok(()) => {
            stats.events.fetch_add(n as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, events = n, "audit events could not be stored");
            Err(e.to_string())
        }
    };
    for a in answers {
        let _ = a.send(r.clone());
    }
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

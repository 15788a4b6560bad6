//! SQLite's write connection, on a thread of its own.
//!
//! SQLite has one writer at a time, so every write transaction goes through this one connection
//! (a lock taken at [`Writer::begin`] queues them). Its thread runs commands in the order they
//! are sent. A transaction's BEGIN and its queued writes ([`Cmd::Run`]) are sent without
//! waiting for them: the caller goes on mapping the next resources while SQLite writes the last
//! ones, and a failure among them is kept and answered to the next command that waits (a read,
//! a statement whose outcome is read, the commit). A commit may be sent without waiting too
//! ([`LiteTx::commit_sent`]): the next transaction then begins behind it. Statements are prepared once and kept (a cache of the
//! recurring SQL), and a multi-row INSERT is run as its single-row statement once per row.

use super::queue::Queued;
use super::watch::Clock;
use super::{Arg, StoreError};
use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// Batches of queued writes sent and not yet written: past this many the sender waits, so a
/// fast producer does not pile up rows in memory. Enough for the sender to run ahead while it
/// maps rows that make many writes, so that the writer still has work when the sender maps
/// rows that make few, or none (with 4, a 1,000-patient import took 11 % longer; with 256, no
/// less than with 32). A transaction's reads wait for everything sent before them, which
/// bounds what piles up by what one transaction writes.
const IN_FLIGHT: usize = 32;

enum Cmd {
    /// Not answered: a BEGIN that fails fails the next command that waits, and the writes
    /// before it are not run. With the transaction's number (see [`Writer::current`]).
    Begin(u64),
    /// Writes nobody waits for; the permit is given back when they are done.
    Run(Vec<Queued>, OwnedSemaphorePermit),
    Execute(Queued, oneshot::Sender<Result<u64, StoreError>>),
    Fetch(Queued, oneshot::Sender<Result<Vec<LiteRow>, StoreError>>),
    Commit(oneshot::Sender<Result<(), StoreError>>),
    Rollback,
    Close(oneshot::Sender<()>),
    /// Statements run after each BEGIN and before each COMMIT (see [`Writer::mark`]).
    Marks(&'static str, &'static str),
}

/// The write connection: cheap to clone.
#[derive(Clone)]
pub(super) struct Writer {
    cmds: mpsc::UnboundedSender<Cmd>,
    lock: Arc<Mutex<()>>,
    in_flight: Arc<Semaphore>,
    /// Ends the statement the thread runs (see [`LiteTx`]'s drop).
    interrupt: Arc<rusqlite::InterruptHandle>,
    /// The number of the transaction whose commands the thread runs (from its BEGIN to its
    /// end; 0 between transactions), and the number the next one takes.
    current: Arc<AtomicU64>,
    numbers: Arc<AtomicU64>,
}

/// A result row read through the write connection: column names and owned values.
pub struct LiteRow {
    columns: Arc<[String]>,
    values: Vec<SqlValue>,
}

impl LiteRow {
    /// The names of a statement's result columns, shared by its rows.
    pub(super) fn columns_of(st: &rusqlite::Statement) -> Arc<[String]> {
        st.column_names().into_iter().map(str::to_owned).collect()
    }

    /// Row `r` of a statement whose result columns are `columns`.
    pub(super) fn read(r: &rusqlite::Row, columns: &Arc<[String]>) -> rusqlite::Result<LiteRow> {
        Ok(LiteRow {
            columns: columns.clone(),
            values: (0..columns.len())
                .map(|i| r.get::<_, SqlValue>(i))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The value of column `col`.
    pub(super) fn get(&self, col: &str) -> Result<&SqlValue, StoreError> {
        self.columns
            .iter()
            .position(|c| c == col)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Decode(format!("column {col}: no such column")))
    }
}

fn closed() -> StoreError {
    StoreError::Closed
}

impl Writer {
    /// Opens `path` (creating it) with the settings of the write connection and starts its
    /// thread; each statement ends after `statement_timeout`.
    pub(super) fn open(path: &Path, statement_timeout: Duration) -> Result<Writer, StoreError> {
        Writer::open_waiting(path, Duration::from_secs(10), statement_timeout)
    }

    /// [`Writer::open`], waiting at most `busy` for another process's write lock.
    pub(super) fn open_waiting(
        path: &Path,
        busy: Duration,
        statement_timeout: Duration,
    ) -> Result<Writer, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy)?;
        // A large transaction (a bundle) keeps its pages in memory (16 MiB of cache at most
        // instead of 2: the index pages that random UUID keys land on, which a smaller cache
        // spilled and read again) and its statement journals too. The cache is the server's
        // to keep: it fills with what is written (the audit trail grows with every read) and
        // is not given back, so it stays small; an import asks for more (see
        // [`super::Db::bulk_writes`]).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
             PRAGMA cache_size = -16384; PRAGMA temp_store = memory;",
        )?;
        conn.set_prepared_statement_cache_capacity(1000);
        // The log is copied into the database by a thread of its own after each commit (see
        // [`checkpoints`]), not by the committing writer; past this many pages (256 MiB) the
        // writer does it too, so that the log stays bounded whatever happens to that thread.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 65536;")?;
        let checkpointer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        checkpointer.busy_timeout(Duration::from_secs(10))?;
        let (committed, wake) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoints(checkpointer, wake))
            .map_err(|e| {
                StoreError::Config(format!("cannot start the SQLite checkpointer: {e}"))
            })?;
        let clock = Clock::new(statement_timeout);
        clock.install(&conn);
        let interrupt = Arc::new(conn.get_interrupt_handle());
        let current = Arc::new(AtomicU64::new(0));
        let (cmds, rx) = mpsc::unbounded_channel();
        let thread = WriterThread {
            conn,
            committed,
            clock,
            current: current.clone(),
            failed: None,
            unbegun: None,
            poisoned: None,
            marks: None,
            marked: false,
        };
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(thread, rx))
            .map_err(|e| StoreError::Config(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Writer {
            cmds,
            lock: Arc::new(Mutex::new(())),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            interrupt,
            current,
            numbers: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Runs `mark` after each BEGIN and `unmark` before each COMMIT of the server's
    /// transactions, so triggers can tell the server's changes from any other connection's.
    pub(super) fn mark(&self, mark: &'static str, unmark: &'static str) {
        let _ = self.cmds.send(Cmd::Marks(mark, unmark));
    }

    async fn ask<T>(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Cmd,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(cmd(tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Starts a write transaction once the one before it has ended (or has sent its commit):
    /// the BEGIN is sent without waiting for it, and its failure answered to the next command
    /// that waits.
    pub(super) async fn begin(&self) -> Result<LiteTx, StoreError> {
        let guard = self.lock.clone().lock_owned().await;
        let number = self.numbers.fetch_add(1, Ordering::Relaxed);
        self.cmds.send(Cmd::Begin(number)).map_err(|_| closed())?;
        Ok(LiteTx {
            writer: self.clone(),
            open: true,
            number,
            _guard: guard,
        })
    }

    /// Runs one statement outside any transaction.
    pub(super) async fn execute(&self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        let _guard = self.lock.lock().await;
        self.ask(|r| Cmd::Execute(Queued::one(sql, args), r)).await
    }

    /// Runs one statement that returns rows (a write's `RETURNING`) outside any transaction.
    pub(super) async fn fetch(&self, sql: &str, args: &[Arg]) -> Result<Vec<LiteRow>, StoreError> {
        let _guard = self.lock.lock().await;
        self.ask(|r| Cmd::Fetch(Queued::one(sql, args), r)).await
    }

    /// Closes the connection (checkpointing its log) once what was sent before is done.
    pub(super) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// An open write transaction; dropped while open, it rolls back.
pub(super) struct LiteTx {
    writer: Writer,
    open: bool,
    /// Its number (see [`Writer::current`]).
    number: u64,
    // Dropped after `drop` has sent the rollback: the next transaction begins after it.
    _guard: OwnedMutexGuard<()>,
}

impl LiteTx {
    /// Sends writes; a failure among them is answered by the next command that waits.
    pub(super) async fn run(&mut self, stmts: Vec<Queued>) -> Result<(), StoreError> {
        let permit = self
            .writer
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        self.writer
            .cmds
            .send(Cmd::Run(stmts, permit))
            .map_err(|_| closed())
    }

    pub(super) async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        self.writer
            .ask(|r| Cmd::Execute(Queued::one(sql, args), r))
            .await
    }

    pub(super) async fn fetch(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Vec<LiteRow>, StoreError> {
        self.writer
            .ask(|r| Cmd::Fetch(Queued::one(sql, args), r))
            .await
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.commit_sent()?.await.map_err(|_| closed())?
    }

    /// Sends the COMMIT and ends the transaction without waiting for it: the next one may begin
    /// at once (its commands run after the commit); the commit's outcome comes on the receiver.
    pub(super) fn commit_sent(
        mut self,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        self.open = false;
        let (tx, rx) = oneshot::channel();
        self.writer
            .cmds
            .send(Cmd::Commit(tx))
            .map_err(|_| closed())?;
        Ok(rx)
    }
}

impl LiteTx {
    /// A handle for reads of this transaction that need not wait for each other (see
    /// [`super::TxReads`]).
    pub(super) fn reads(&self) -> Reads {
        Reads {
            writer: self.writer.clone(),
        }
    }
}

/// Reads of an open transaction, sent to the writer's thread as they are asked for.
#[derive(Clone)]
pub(super) struct Reads {
    writer: Writer,
}

impl Reads {
    pub(super) async fn fetch(&self, sql: &str, args: &[Arg]) -> Result<Vec<LiteRow>, StoreError> {
        self.writer
            .ask(|r| Cmd::Fetch(Queued::one(sql, args), r))
            .await
    }
}

impl Drop for LiteTx {
    /// Rolls back an open transaction, first ending the statement of it that runs, if any
    /// (its request was cancelled, say). While another transaction's commit is still being
    /// made, the thread is not in this one, and nothing is interrupted.
    fn drop(&mut self) {
        if self.open {
            if self.writer.current.load(Ordering::Acquire) == self.number {
                self.writer.interrupt.interrupt();
            }
            let _ = self.writer.cmds.send(Cmd::Rollback);
        }
    }
}

/// The checkpointer thread: after each commit it is told of, copies what the log holds into
/// the database (a passive checkpoint: it waits for no one, and the writer goes on appending to
/// the log meanwhile), until the writer is gone.
fn checkpoints(conn: Connection, wake: std::sync::mpsc::Receiver<()>) {
    while wake.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
        // Many small commits (the audit events of reads) are copied together: a page they all
        // touch is copied once, not once a commit.
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

/// The least time between two checkpoints.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(20);

/// The writer thread: commands in order until every sender is gone or [`Cmd::Close`]. Each
/// commit wakes the checkpointer (`committed`).
fn serve(mut writer: WriterThread, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    while let Some(cmd) = rx.blocking_recv() {
        if let Cmd::Close(reply) = cmd {
            drop(writer);
            let _ = reply.send(());
            return;
        }
        writer.handle(cmd);
    }
}

/// The writer thread's connection and the state of its open transaction.
struct WriterThread {
    conn: Connection,
    committed: std::sync::mpsc::SyncSender<()>,
    /// The deadline of the statement that runs.
    clock: Arc<Clock>,
    /// The number of the transaction in progress (see [`Writer::current`]).
    current: Arc<AtomicU64>,
    /// The first failure of writes nobody waited for, kept for the next command that waits.
    failed: Option<StoreError>,
    /// Why the open transaction's BEGIN failed: everything sent in it fails, until its end.
    unbegun: Option<String>,
    /// A failure already answered: the rest of the transaction fails with it, until its end
    /// (a read that runs beside the one told must not see a transaction missing writes).
    poisoned: Option<String>,
    /// What marks a transaction as the server's, and unmarks it (see [`Writer::mark`]).
    marks: Option<(&'static str, &'static str)>,
    /// Whether the open transaction was marked.
    marked: bool,
}

impl WriterThread {
    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Begin(number) => {
                // A transaction left open (its end never sent) ends here.
                self.rollback_open();
                self.current.store(number, Ordering::Release);
                self.failed = None;
                self.poisoned = None;
                self.unbegun = self
                    .conn
                    .execute_batch("BEGIN IMMEDIATE")
                    .err()
                    .map(|e| e.to_string());
                // Unmarked when the schema has no mark yet (before its migration).
                self.marked = self.unbegun.is_none()
                    && self
                        .marks
                        .is_some_and(|(mark, _)| self.conn.execute_batch(mark).is_ok());
            }
            Cmd::Run(stmts, permit) => {
                if self.failed.is_none() && self.unbegun.is_none() && self.poisoned.is_none() {
                    let clock = &self.clock;
                    let failed = stmts.iter().find_map(|q| {
                        clock.start();
                        run(&self.conn, q, None).err()
                    });
                    if let Some(e) = failed {
                        self.failed = Some(e);
                    }
                }
                drop(permit);
            }
            Cmd::Execute(q, reply) => {
                self.clock.start();
                let r = self.settled().and_then(|()| run(&self.conn, &q, None));
                let _ = reply.send(r);
            }
            Cmd::Fetch(q, reply) => {
                self.clock.start();
                let r = self.settled().and_then(|()| {
                    let mut rows = Vec::new();
                    run(&self.conn, &q, Some(&mut rows)).map(|_| rows)
                });
                let _ = reply.send(r);
            }
            Cmd::Commit(reply) => self.commit(reply),
            Cmd::Rollback => {
                self.current.store(0, Ordering::Release);
                self.failed = None;
                self.unbegun = None;
                self.poisoned = None;
                self.rollback_open();
            }
            Cmd::Close(reply) => {
                let _ = reply.send(());
            }
            Cmd::Marks(mark, unmark) => self.marks = Some((mark, unmark)),
        }
    }

    fn commit(&mut self, reply: oneshot::Sender<Result<(), StoreError>>) {
        // A transaction that cannot be unmarked is not committed: it would leave every later
        // change looking like the server's.
        let unmark = match self.marks {
            Some((_, unmark)) if self.marked => unmark,
            _ => "",
        };
        self.marked = false;
        let r = self.settled().and_then(|()| {
            self.conn
                .execute_batch(unmark)
                .and_then(|()| self.conn.execute_batch("COMMIT"))
                .map_err(Into::into)
        });
        self.unbegun = None;
        self.poisoned = None;
        self.current.store(0, Ordering::Release);
        if r.is_err() {
            self.rollback_open();
        } else {
            // Already awake with a wake-up pending: it will see this commit too.
            let _ = self.committed.try_send(());
        }
        let _ = reply.send(r);
    }

    fn rollback_open(&mut self) {
        self.marked = false;
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Whether the open transaction may go on: not if its BEGIN failed, nor if a write failed
    /// (the failure itself the first time it is told, after that [`StoreError::Failed`]).
    fn settled(&mut self) -> Result<(), StoreError> {
        if let Some(why) = &self.unbegun {
            return Err(StoreError::NotBegun(why.clone()));
        }
        if let Some(e) = self.failed.take() {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        match &self.poisoned {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }
}

/// Runs `q` (once per row it carries), collecting result rows into `out` when given; the
/// number of rows changed.
fn run(
    conn: &Connection,
    q: &Queued,
    mut out: Option<&mut Vec<LiteRow>>,
) -> Result<u64, StoreError> {
    let mut st = conn.prepare_cached(q.row_sql())?;
    let params = st.parameter_count();
    let rows = q.rows.max(1);
    if q.args.len() != params * rows {
        return Err(StoreError::Decode(format!(
            "{} values for {rows} rows of {params} parameters",
            q.args.len()
        )));
    }
    let columns = out.is_some().then(|| LiteRow::columns_of(&st));
    let mut changed = 0;
    for row in 0..rows {
        bind(&mut st, &q.args[row * params..(row + 1) * params])?;
        let mut result = st.raw_query();
        while let Some(r) = result.next()? {
            if let (Some(out), Some(columns)) = (out.as_deref_mut(), &columns) {
                out.push(LiteRow::read(r, columns)?);
            }
        }
        drop(result);
        changed += conn.changes();
    }
    Ok(changed)
}

/// Binds `args` to the statement's parameters, in order.
pub(super) fn bind(st: &mut rusqlite::Statement, args: &[Arg]) -> rusqlite::Result<()> {
    for (i, a) in args.iter().enumerate() {
        st.raw_bind_parameter(i + 1, Lit(a))?;
    }
    Ok(())
}

/// An [`Arg`] bound as SQLite keeps it (see [`super::arg::lite_text`]).
struct Lit<'a>(&'a Arg);

impl ToSql for Lit<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        if let Some(text) = super::arg::lite_text(self.0) {
            return Ok(ToSqlOutput::Owned(
                text.map_or(SqlValue::Null, SqlValue::Text),
            ));
        }
        Ok(match self.0 {
            Arg::Text(Some(s)) | Arg::Decimal(Some(s)) => s.as_str().to_sql()?,
            Arg::Int(v) => ToSqlOutput::Owned(v.map_or(SqlValue::Null, SqlValue::Integer)),
            Arg::Bool(v) => {
                ToSqlOutput::Owned(v.map_or(SqlValue::Null, |b| SqlValue::Integer(b.into())))
            }
            Arg::Bytes(Some(b)) => b.as_slice().to_sql()?,
            Arg::Text(None) | Arg::Decimal(None) | Arg::Bytes(None) => {
                ToSqlOutput::Owned(SqlValue::Null)
            }
            // (Written out as text above.)
            _ => ToSqlOutput::Owned(SqlValue::Null),
        })
    }
}

//! A database transaction: its reads, and its writes that wait to be sent together.

use super::arg::{keep, keep_owned};
use super::pg::PgTx;
use super::queue::{Queued, Shape, What, MAX_ROWS};
use super::{lite, Arg, Dialect, Row, Shared, StoreError, TxReads};
use chrono::{DateTime, SubsecRound, Utc};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// The advisory locks a PostgreSQL transaction holds: taken once, they last until it ends.
#[derive(Default)]
struct HeldLocks(std::collections::HashSet<i64>);

/// The most statements kept waiting before they are sent anyway: on PostgreSQL, a round trip
/// each time; on SQLite a hand-over to its writer, which writes them while the transaction goes
/// on.
const MAX_QUEUED: usize = 2000;
const MAX_QUEUED_SQLITE: usize = 128;
/// On PostgreSQL, the statements that wait while no earlier ones are on their way.
const SEND_AT: usize = 200;

/// A database transaction; dropped without [`Tx::commit`], it rolls back.
///
/// Writes whose outcome nobody reads ([`Tx::queue`], [`Tx::insert`]) are not sent one by one:
/// they wait, and go to the database together (on PostgreSQL from a task of their own, on
/// SQLite in one hand-over to its writer's thread) before the next statement that is sent, at
/// [`Tx::flush`] and at commit. A failure among them surfaces there. Their values are always
/// bound, never written into SQL.
pub struct Tx {
    conn: TxConn,
    /// What transactions share (see [`Tx::share`]).
    shared: Arc<Shared>,
    /// Waiting writes, in order.
    pub(super) queued: Vec<Queued>,
    queued_n: usize,
    /// Inserts of detached rows still open to more rows, with their place in `queued` (see
    /// [`Tx::insert_detached`]).
    open_detached: Vec<(Arc<Shape>, usize)>,
    /// What the layers above keep for the rest of the transaction: one struct of theirs per
    /// type (see [`Tx::memo`]).
    memos: Memos,
    /// What the layers above record for the end of the transaction: like the memos, but kept
    /// by [`Tx::forget_all`] (see [`Tx::ledger`]).
    ledger: Memos,
    /// Statements queued once for the whole transaction (see [`Tx::queue_once`]).
    once: std::collections::HashSet<&'static str>,
    /// Rows this transaction inserted (see [`Tx::is_new`]), with the time written into them
    /// (see [`Tx::stamp`]).
    new_rows: std::collections::HashMap<Uuid, DateTime<Utc>>,
    /// On PostgreSQL, the server's clock when the transaction first read it, and the moment of
    /// that reading (see [`Tx::mark_new`]).
    clock: Option<(DateTime<Utc>, Instant)>,
    /// How many times the waiting writes went (see [`Held`]).
    sends: u64,
}

/// Where the values of a write queued with [`Tx::insert_held`] wait: [`Tx::amend`] changes them
/// until the write is sent.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    sends: u64,
    at: usize,
    first_arg: usize,
    args: usize,
}

pub(super) enum TxConn {
    Sqlite(lite::LiteTx),
    Postgres(PgTx),
}

impl Tx {
    pub(super) fn new(conn: TxConn, shared: Arc<Shared>) -> Tx {
        Tx {
            conn,
            shared,
            queued: Vec::new(),
            queued_n: 0,
            open_detached: Vec::new(),
            memos: Memos::default(),
            ledger: Memos::default(),
            once: std::collections::HashSet::new(),
            new_rows: std::collections::HashMap::new(),
            clock: None,
            sends: 0,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.conn {
            TxConn::Sqlite(_) => Dialect::Sqlite,
            TxConn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The memo of type `T` of this transaction, made empty the first time it is asked for:
    /// a layer above keeps there, in fields of its own, what it has looked up and may look up
    /// again, or has written and will need again, until the transaction ends or
    /// [`Tx::forget_all`].
    pub fn memo<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        self.memos.get_or_default()
    }

    /// The ledger entry of type `T` of this transaction, made empty the first time it is asked
    /// for: what a layer above has done in it and must account for when it ends (never
    /// forgotten before then).
    pub fn ledger<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        self.ledger.get_or_default()
    }

    /// The memo of type `T`, if one was made.
    pub fn peek_memo<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.memos.get()
    }

    /// Forgets every memo (a delete: what they say of rows may no longer hold).
    pub fn forget_all(&mut self) {
        self.memos = Memos::default();
    }

    /// What a transaction found committed under `key` and shared, if not too long ago.
    pub fn shared<T: Clone + 'static>(&self, key: &str) -> Option<T> {
        self.shared.get(key, Instant::now())
    }

    /// Shares with the transactions after this one a fact found committed in the database:
    /// never one this transaction wrote itself (it may yet roll back).
    pub fn share<T: Send + Sync + 'static>(&self, key: String, value: T) {
        self.shared.put(key, value, Instant::now());
    }

    /// Notes that row `id` is being inserted by this transaction, and the time its insert writes
    /// into it as its creation and update time (see [`Tx::stamp`]).
    pub async fn mark_new(&mut self, id: Uuid) -> Result<(), StoreError> {
        let stamp = self.now().await?;
        self.new_rows.insert(id, stamp);
        Ok(())
    }

    /// The time now, by the clock the database stamps rows with. On SQLite the server's (to
    /// the millisecond, as the columns keep it). On PostgreSQL the database server's clock,
    /// read once per transaction, and the time since: the clock every other change of the rows
    /// (the update triggers) is stamped by (to the microsecond, as timestamptz keeps it).
    pub async fn now(&mut self) -> Result<DateTime<Utc>, StoreError> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(Utc::now().trunc_subsecs(3));
        }
        let (at, since) = match self.clock {
            Some(c) => c,
            None => {
                let row = self
                    .fetch_optional("SELECT clock_timestamp() AS now", &[])
                    .await?
                    .ok_or(StoreError::Closed)?;
                let c = (row.timestamp("now")?, Instant::now());
                self.clock = Some(c);
                c
            }
        };
        let elapsed = chrono::Duration::from_std(since.elapsed()).unwrap_or_default();
        Ok((at + elapsed).trunc_subsecs(6))
    }

    /// Whether this transaction inserted row `id`: rows keyed by it (child rows, index rows)
    /// can only be this transaction's own, so there is nothing older to clear first.
    pub fn is_new(&self, id: Uuid) -> bool {
        self.new_rows.contains_key(&id)
    }

    /// The creation and update time that the insert of row `id` (marked with [`Tx::mark_new`])
    /// writes into the row, instead of leaving them to the columns' default, so that the row's
    /// version and update time are known without reading them back: a read that would wait for
    /// every write queued before it.
    pub fn stamp(&self, id: Uuid) -> Option<DateTime<Utc>> {
        self.new_rows.get(&id).copied()
    }

    /// A statement whose outcome is not needed: sent with the next statement, at
    /// [`Tx::flush`] or at commit. Rows to insert go with [`Tx::insert`] instead.
    pub async fn queue(&mut self, sql: &str, args: &[Arg]) -> Result<(), StoreError> {
        // A statement that names a table of detached rows closes their open inserts, so no row
        // moves past it.
        if !self.open_detached.is_empty() {
            self.open_detached
                .retain(|(shape, _)| !sql.contains(shape.table.as_str()));
        }
        let mut kept = Vec::with_capacity(args.len());
        keep(self.is_lite(), &mut kept, args);
        self.queued.push(Queued {
            what: What::Statement(sql.to_owned()),
            args: kept,
            rows: 1,
        });
        self.count_queued().await
    }

    fn is_lite(&self) -> bool {
        matches!(self.conn, TxConn::Sqlite(_))
    }

    /// The shape of rows of `table` with `columns`: the one of a waiting insert when it is
    /// that, else the database's (made once).
    fn shape(&self, table: &str, columns: &[&str]) -> Arc<Shape> {
        if let Some(s) = self.queued.last().and_then(Queued::shape) {
            if s.is(table, columns) {
                return s.clone();
            }
        }
        self.shared.shape(table, columns)
    }

    /// Queues a row of `table`: `values` for `columns`, in order. Consecutive rows of one
    /// shape go in one insert.
    pub async fn insert(
        &mut self,
        table: &str,
        columns: &[&str],
        values: &[Arg],
    ) -> Result<(), StoreError> {
        self.insert_with(table, columns, values.len(), |lite, into| {
            keep(lite, into, values)
        })
        .await
    }

    /// [`Tx::insert`] of values the caller has no more use for: they are moved, not copied.
    pub async fn insert_vec(
        &mut self,
        table: &str,
        columns: &[&str],
        values: Vec<Arg>,
    ) -> Result<(), StoreError> {
        self.insert_with(table, columns, values.len(), |lite, into| {
            keep_owned(lite, into, values)
        })
        .await
    }

    async fn insert_with(
        &mut self,
        table: &str,
        columns: &[&str],
        n: usize,
        put: impl FnOnce(bool, &mut Vec<Arg>),
    ) -> Result<(), StoreError> {
        debug_assert_eq!(columns.len(), n, "a value per column of {table}");
        let lite = self.is_lite();
        if let Some(last) = self.queued.last_mut() {
            if last.rows < MAX_ROWS && last.shape().is_some_and(|s| s.is(table, columns)) {
                put(lite, &mut last.args);
                last.rows += 1;
                return Ok(());
            }
        }
        let shape = self.shape(table, columns);
        let mut kept = Vec::with_capacity(n);
        put(lite, &mut kept);
        self.push_kept(shape, kept).await
    }

    async fn push_rows(&mut self, shape: Arc<Shape>, values: &[Arg]) -> Result<(), StoreError> {
        let mut kept = Vec::with_capacity(values.len());
        keep(self.is_lite(), &mut kept, values);
        self.push_kept(shape, kept).await
    }

    async fn push_kept(&mut self, shape: Arc<Shape>, kept: Vec<Arg>) -> Result<(), StoreError> {
        self.queued.push(Queued {
            what: What::Insert(shape),
            args: kept,
            rows: 1,
        });
        self.count_queued().await
    }

    /// Queues a detached row: of a table that no trigger, foreign key or read of this
    /// transaction before the next flush involves (a search index). It joins the open insert
    /// of its shape wherever that is in the queue, so that the rows of many resources go in
    /// one statement; a statement naming its table ([`Tx::queue`]) closes that insert.
    pub async fn insert_detached(
        &mut self,
        table: &str,
        columns: &[&str],
        values: &[Arg],
    ) -> Result<(), StoreError> {
        let lite = self.is_lite();
        if let Some(i) = self
            .open_detached
            .iter()
            .position(|(s, _)| s.is(table, columns))
        {
            let at = self.open_detached[i].1;
            let q = &mut self.queued[at];
            keep(lite, &mut q.args, values);
            q.rows += 1;
            if q.rows >= MAX_ROWS {
                self.open_detached.swap_remove(i);
            }
            return Ok(());
        }
        let shape = self.shared.shape(table, columns);
        self.open_detached.push((shape.clone(), self.queued.len()));
        self.push_rows(shape, values).await
    }

    /// Queues a row ([`Tx::insert`]) whose values may still change while it waits
    /// ([`Tx::amend`]): a row that later writes of the transaction would otherwise UPDATE goes
    /// in whole.
    pub async fn insert_held(
        &mut self,
        table: &str,
        columns: &[&str],
        values: &[Arg],
    ) -> Result<Held, StoreError> {
        let sends = self.sends;
        self.insert(table, columns, values).await?;
        // The row is the last of the last waiting write; if the queue was sent meanwhile (it
        // was full), `sends` has moved and the handle is out of date.
        Ok(Held {
            sends,
            at: self.queued.len().saturating_sub(1),
            first_arg: self
                .queued
                .last()
                .map_or(0, |q| q.args.len().saturating_sub(values.len())),
            args: values.len(),
        })
    }

    /// Sets value `arg` of a row queued with [`Tx::insert_held`]; `false` (and nothing
    /// changed) once the row has been sent, when the caller writes the change itself.
    pub fn amend(&mut self, held: Held, arg: usize, value: Arg) -> bool {
        if held.sends != self.sends || arg >= held.args {
            return false;
        }
        let lite = self.is_lite();
        match self
            .queued
            .get_mut(held.at)
            .and_then(|q| q.args.get_mut(held.first_arg + arg))
        {
            Some(slot) => {
                let mut kept = Vec::with_capacity(1);
                keep(lite, &mut kept, std::slice::from_ref(&value));
                *slot = kept.pop().unwrap_or(value);
                true
            }
            None => false,
        }
    }

    /// Counts a write just queued; too many waiting are sent.
    async fn count_queued(&mut self) -> Result<(), StoreError> {
        self.queued_n += 1;
        let most = match &self.conn {
            TxConn::Sqlite(_) => MAX_QUEUED_SQLITE,
            // While the connection is idle, the writes go as soon as there are enough of them
            // to be worth a round trip: PostgreSQL makes them while the caller goes on.
            TxConn::Postgres(t) if !t.busy() => SEND_AT,
            TxConn::Postgres(_) => MAX_QUEUED,
        };
        if self.queued_n >= most {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the queued writes without waiting for them: on SQLite to the writer's thread (its
    /// statements are prepared once and kept; see the lite module); on PostgreSQL from a task
    /// that owns the connection until they are made (see [`PgTx`]).
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queued);
        self.queued_n = 0;
        self.sends += 1;
        self.open_detached.clear();
        match &mut self.conn {
            TxConn::Sqlite(t) => t.run(queued).await?,
            TxConn::Postgres(t) => t.send(queued, &self.shared.order()).await?,
        }
        Ok(())
    }

    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        self.flush().await?;
        Ok(match &mut self.conn {
            TxConn::Sqlite(t) => t.execute(sql, args).await?,
            TxConn::Postgres(t) => t.conn().await?.execute(sql, args).await?,
        })
    }

    pub async fn fetch_all(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        self.flush().await?;
        Ok(match &mut self.conn {
            TxConn::Sqlite(t) => t
                .fetch(sql, args)
                .await?
                .into_iter()
                .map(Row::Lite)
                .collect(),
            TxConn::Postgres(t) => t
                .conn()
                .await?
                .fetch_all(sql, args)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Option<Row>, StoreError> {
        self.flush().await?;
        Ok(match &mut self.conn {
            TxConn::Sqlite(t) => t.fetch(sql, args).await?.into_iter().next().map(Row::Lite),
            TxConn::Postgres(t) => t
                .conn()
                .await?
                .fetch_optional(sql, args)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Makes the transactions that take the lock `key` take turns until this one ends. SQLite
    /// has one writer: its transactions take turns anyway.
    pub async fn lock_key(&mut self, key: i64) -> Result<(), StoreError> {
        self.lock_keys(&[key]).await
    }

    /// [`Tx::lock_key`] of each of `keys` this transaction does not hold yet, in one statement,
    /// in the order of the keys (two transactions taking sets that share keys take them in one
    /// order, so neither waits on the other in a circle).
    pub async fn lock_keys(&mut self, keys: &[i64]) -> Result<(), StoreError> {
        if self.dialect() != Dialect::Postgres {
            return Ok(());
        }
        let held = &self.ledger::<HeldLocks>().0;
        let mut wanted: Vec<i64> = keys.iter().copied().filter(|k| !held.contains(k)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        match wanted.as_slice() {
            [] => return Ok(()),
            [key] => {
                self.execute("SELECT pg_advisory_xact_lock(?)", &[(*key).into()])
                    .await?
            }
            _ => {
                let list: Vec<String> = wanted.iter().map(i64::to_string).collect();
                self.execute(
                    "SELECT pg_advisory_xact_lock(k::int8) FROM unnest(string_to_array(?, ',')) \
                     WITH ORDINALITY AS u(k, n) ORDER BY n",
                    &[list.join(",").into()],
                )
                .await?
            }
        };
        self.ledger::<HeldLocks>().0.extend(wanted);
        Ok(())
    }

    /// Queues a statement without values the first time it is asked for in this transaction (a
    /// setting for the rest of it).
    pub async fn queue_once(&mut self, sql: &'static str) -> Result<(), StoreError> {
        if self.once.insert(sql) {
            self.queue(sql, &[]).await?;
        }
        Ok(())
    }

    /// Reads that may go side by side, after the writes queued so far (see [`TxReads`]); `None`
    /// on PostgreSQL, whose connection answers one statement at a time.
    pub async fn side_by_side(&mut self) -> Result<Option<TxReads<'_>>, StoreError> {
        self.flush().await?;
        Ok(match &self.conn {
            TxConn::Sqlite(t) => Some(TxReads {
                reads: t.reads(),
                _tx: std::marker::PhantomData,
            }),
            TxConn::Postgres(_) => None,
        })
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        match self.conn {
            TxConn::Sqlite(t) => t.commit().await?,
            TxConn::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Commits, on SQLite without waiting for the outcome: the commit is sent to the writer,
    /// the next transaction may begin behind it, and [`Committing::outcome`] tells how it went.
    /// On PostgreSQL the commit is made here.
    pub async fn commit_sent(mut self) -> Result<Committing, StoreError> {
        self.flush().await?;
        Ok(match self.conn {
            TxConn::Sqlite(t) => Committing::Sent(t.commit_sent()?),
            TxConn::Postgres(t) => Committing::Done(t.commit().await),
        })
    }
}

/// A commit on its way (see [`Tx::commit_sent`]).
pub enum Committing {
    Sent(tokio::sync::oneshot::Receiver<Result<(), StoreError>>),
    Done(Result<(), StoreError>),
}

impl Committing {
    /// Whether the transaction was committed.
    pub async fn outcome(self) -> Result<(), StoreError> {
        match self {
            Committing::Sent(rx) => rx.await.map_err(|_| StoreError::Closed)?,
            Committing::Done(r) => r,
        }
    }
}

/// One value per type, each made empty when first asked for.
#[derive(Default)]
struct Memos(std::collections::HashMap<std::any::TypeId, Box<dyn std::any::Any + Send + Sync>>);

impl Memos {
    fn get_or_default<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        let slot = self
            .0
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match slot.downcast_mut::<T>() {
            Some(t) => t,
            // (A slot holds the type it is keyed by.)
            None => unreachable!(
                "a memo of another type under {}",
                std::any::type_name::<T>()
            ),
        }
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&std::any::TypeId::of::<T>())?.downcast_ref()
    }
}

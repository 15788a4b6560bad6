//! Storage: one sqlx pool for SQLite or PostgreSQL, chosen once from the URL.
//!
//! SQL is written once with `?` placeholders and portable syntax; values are passed as [`Arg`]s and
//! rows read through [`Row`], which hide the type differences between the engines (PostgreSQL uses
//! native uuid, timestamptz, date and jsonb; SQLite stores them as text). Engine-only fragments are
//! chosen with [`Dialect`].

mod arg;
mod error;
mod lite;
mod migrate;
mod pg;
mod pg_conn;
mod queue;
mod readers;
mod row;
mod tx;
mod watch;

pub use arg::{millis_text, parse_decimal, sqlite_timestamp, Arg};
pub use error::StoreError;
pub use lite::LiteRow;
use pg_conn::PgConn;
pub use queue::Shape;
pub use row::Row;
use tx::TxConn;
pub use tx::{Committing, Held, Tx};

use queue::{table_order, TableOrder};
use readers::{Fetched, Readers};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The SQL dialect of the connected database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The current time, as the triggers write it.
    pub fn now(self) -> &'static str {
        match self {
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            Dialect::Postgres => "clock_timestamp()",
        }
    }
}

/// `column` is one of `ids`. On PostgreSQL one bound array: the same statement and cached plan
/// whatever the number of ids (a new list length was a new statement to plan). On SQLite a
/// placeholder per id: planning is cheap there, and a list it can see stays an index condition
/// in each branch of a view (`json_each` of one bound array did not).
pub fn one_of(dialect: Dialect, column: &str, ids: &[Uuid]) -> (String, Vec<Arg>) {
    match dialect {
        Dialect::Sqlite => (
            format!("{column} IN ({})", placeholders(ids.len())),
            ids.iter().map(|i| Arg::from(*i)).collect(),
        ),
        Dialect::Postgres => (
            format!("{column} = ANY (?)"),
            vec![Arg::UuidList(ids.to_vec())],
        ),
    }
}

enum Pools {
    Sqlite {
        /// The read connections (see the readers module).
        read: Readers,
        /// The connection migrations run on.
        write: SqlitePool,
        /// The connection every write transaction runs on (see the lite module): SQLite has a
        /// single writer, so writers queue there instead of failing with SQLITE_BUSY when two
        /// transactions upgrade to write at once.
        writer: lite::Writer,
    },
    Postgres(PgPool),
}

/// A handle on the database: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Db {
    pools: Arc<Pools>,
    shared: Arc<Shared>,
}

/// How long one statement may run unless told otherwise ([`Db::connect_with`]).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fact one transaction found stays shared with the next (see [`Tx::share`]).
const SHARED_FOR: Duration = Duration::from_secs(10);
/// The most facts shared at once; past it, they are all forgotten.
const SHARED_MAX: usize = 100_000;

/// Facts that transactions found committed in the database and share with the transactions
/// after them for a while ([`SHARED_FOR`]), so that a change made by others (a catalog entry
/// renamed by the clinic's own application, say) is seen soon after.
#[derive(Default)]
pub struct Shared {
    entries: std::sync::Mutex<std::collections::HashMap<String, SharedFact>>,
    /// The tables in an order that puts every table after those its foreign keys name (see
    /// [`arrange`]), read from the database after the migrations; empty until then.
    order: std::sync::RwLock<Arc<TableOrder>>,
    /// The shapes of the rows inserted so far, by table and columns (see [`Shared::shape`]).
    shapes: std::sync::Mutex<std::collections::HashMap<String, Arc<Shape>>>,
}

/// When a fact was found, and the fact.
type SharedFact = (Instant, Arc<dyn std::any::Any + Send + Sync>);

impl Shared {
    fn order(&self) -> Arc<TableOrder> {
        self.order.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// The shape of rows of `table` with `columns`, made once and shared.
    fn shape(&self, table: &str, columns: &[&str]) -> Arc<Shape> {
        let key = format!("{table}({})", columns.join(","));
        let Ok(mut shapes) = self.shapes.lock() else {
            return Arc::new(Shape::new(table, columns));
        };
        shapes
            .entry(key)
            .or_insert_with(|| Arc::new(Shape::new(table, columns)))
            .clone()
    }

    fn get<T: Clone + 'static>(&self, key: &str, now: Instant) -> Option<T> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        if now.saturating_duration_since(*at) > SHARED_FOR {
            return None;
        }
        value.downcast_ref::<T>().cloned()
    }

    fn put<T: Send + Sync + 'static>(&self, key: String, value: T, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= SHARED_MAX {
                entries.clear();
            }
            entries.insert(key, (now, Arc::new(value)));
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({:?})", self.dialect())
    }
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a SQLite file if missing.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        Db::connect_with(url, STATEMENT_TIMEOUT).await
    }

    /// [`Db::connect`], every statement ended by the database after `statement_timeout`
    /// (PostgreSQL's `statement_timeout`; on SQLite a progress handler that interrupts it).
    pub async fn connect_with(url: &str, statement_timeout: Duration) -> Result<Db, StoreError> {
        let statement_timeout = statement_timeout.max(Duration::from_millis(1));
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // (see the PostgreSQL options below)
                .disable_statement_logging();
            // No ping before each acquire: a dead connection fails its query and is replaced.
            let write = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
                .await?;
            let writer = lite::Writer::open(opts.get_filename(), statement_timeout)?;
            let read = Readers::open(opts.get_filename(), statement_timeout)?;
            Ok(Db {
                pools: Arc::new(Pools::Sqlite {
                    read,
                    write,
                    writer,
                }),
                shared: Arc::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Db {
                pools: Arc::new(Pools::Postgres(pg_pool(url, statement_timeout).await?)),
                shared: Arc::default(),
            })
        } else {
            Err(StoreError::Config(
                "database URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    pub fn dialect(&self) -> Dialect {
        match *self.pools {
            Pools::Sqlite { .. } => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies the migrations of this engine, then reads the foreign keys of the schema (see
    /// [`arrange`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &*self.pools {
            Pools::Sqlite { write, read, .. } => {
                migrate::sqlite().run(write).await?;
                self.analyze_new_indexes().await?;
                // A read connection that loaded the migrated schema before those statistics
                // were taken would plan without them for as long as it lives.
                read.renew();
            }
            Pools::Postgres(p) => {
                // On a connection of their own, without the statement timeout: rewriting a large
                // table may take longer. Closed afterwards, with its setting.
                let mut conn = p.acquire().await?;
                sqlx::Executor::execute(&mut *conn, "SET statement_timeout = 0").await?;
                migrate::postgres().run(&mut *conn).await?;
                drop(conn.detach());
            }
        }
        let sql = match self.dialect() {
            Dialect::Sqlite => {
                "SELECT m.name AS child, f.\"table\" AS parent FROM sqlite_master m \
                 LEFT JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'"
            }
            Dialect::Postgres => {
                "SELECT c.relname AS child, p.relname AS parent FROM pg_class c \
                 LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f' \
                 LEFT JOIN pg_class p ON p.oid = k.confrelid \
                 WHERE c.relkind IN ('r', 'p') AND c.relnamespace = CAST(current_schema() AS regnamespace)"
            }
        };
        let mut edges = Vec::new();
        for r in self.fetch_all(sql, &[]).await? {
            edges.push((r.string("child")?, r.text("parent")?));
        }
        if let Ok(mut order) = self.shared.order.write() {
            *order = Arc::new(table_order(&edges));
        }
        Ok(())
    }

    /// Marks the server's own transactions: on SQLite `mark` runs after each BEGIN and
    /// `unmark` before each COMMIT (PostgreSQL connections carry the setting
    /// `expediente.server = on` instead), so that the schema's triggers can tell a change made
    /// by the server from one made by any other connection.
    pub fn mark_transactions(&self, marks: Option<(&'static str, &'static str)>) {
        if let (Pools::Sqlite { writer, .. }, Some((mark, unmark))) = (&*self.pools, marks) {
            writer.mark(mark, unmark);
        }
    }

    /// Starts a read-write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &*self.pools {
            Pools::Sqlite { writer, .. } => {
                Tx::new(TxConn::Sqlite(writer.begin().await?), self.shared.clone())
            }
            Pools::Postgres(p) => Tx::new(
                TxConn::Postgres(pg::PgTx::new(PgConn::begin(p).await?)),
                self.shared.clone(),
            ),
        })
    }

    /// Sizes the database for a bulk load (an import): on SQLite the writer's page cache grows
    /// to 64 MiB, for the index pages that a load's random UUID keys land on (an import of a
    /// 1,000-patient Synthea set ran as fast with 64 as with 128 or 256, and peaked at 235 MB
    /// instead of 305 or 450). PostgreSQL sizes its own buffers.
    pub async fn bulk_writes(&self) -> Result<(), StoreError> {
        if let Pools::Sqlite { writer, .. } = &*self.pools {
            writer.execute("PRAGMA cache_size = -65536", &[]).await?;
        }
        Ok(())
    }

    /// Runs a query that returns rows, outside any transaction (a read).
    pub async fn fetch_all(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        Ok(match &*self.pools {
            Pools::Sqlite { read, writer, .. } => lite_fetch(read, writer, sql, args, usize::MAX)
                .await?
                .into_iter()
                .map(Row::Lite)
                .collect(),
            Pools::Postgres(p) => PgConn::acquire(p)
                .await?
                .fetch_all(sql, args)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// Runs a query that returns at most one row, outside any transaction.
    pub async fn fetch_optional(&self, sql: &str, args: &[Arg]) -> Result<Option<Row>, StoreError> {
        Ok(match &*self.pools {
            Pools::Sqlite { read, writer, .. } => lite_fetch(read, writer, sql, args, 1)
                .await?
                .into_iter()
                .next()
                .map(Row::Lite),
            Pools::Postgres(p) => PgConn::acquire(p)
                .await?
                .fetch_optional(sql, args)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Runs a statement outside any transaction.
    pub async fn execute(&self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        Ok(match &*self.pools {
            Pools::Sqlite { writer, .. } => writer.execute(sql, args).await?,
            Pools::Postgres(p) => PgConn::acquire(p).await?.execute(sql, args).await?,
        })
    }

    /// SQLite: statistics for each index a migration made on a table that has them (an index
    /// dropped and made again loses its own). Without, the planner weighs that index by its
    /// defaults against the others' measured figures, and can pick a plan a hundred times
    /// slower (docs/BENCHMARKS.md). A database never analyzed stays so.
    async fn analyze_new_indexes(&self) -> Result<(), StoreError> {
        let analyzed = self
            .fetch_optional(
                "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'",
                &[],
            )
            .await?;
        if analyzed.is_none() {
            return Ok(());
        }
        let missing = self
            .fetch_all(
                "SELECT m.name AS name FROM sqlite_master m WHERE m.type = 'index' \
                 AND m.sql IS NOT NULL AND m.tbl_name IN (SELECT tbl FROM sqlite_stat1) \
                 AND m.name NOT IN (SELECT idx FROM sqlite_stat1 WHERE idx IS NOT NULL)",
                &[],
            )
            .await?;
        for r in missing {
            let name = r.string("name")?;
            self.execute(&format!("ANALYZE \"{}\"", name.replace('"', "\"\"")), &[])
                .await?;
        }
        Ok(())
    }

    /// Refreshes the statistics the planner chooses plans by (PostgreSQL's ANALYZE; SQLite
    /// plans without them).
    pub async fn refresh_statistics(&self) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres {
            self.execute("ANALYZE", &[]).await?;
        }
        Ok(())
    }

    /// How many write transactions the database works on at once: PostgreSQL, each in a
    /// process of its own, as many as the pool holds; SQLite has one writer.
    pub fn writers_at_once(&self) -> usize {
        match &*self.pools {
            Pools::Sqlite { .. } => 1,
            Pools::Postgres(p) => p.options().get_max_connections() as usize,
        }
    }

    /// Answers when the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.fetch_optional("SELECT 1", &[]).await.map(|_| ())
    }

    pub async fn close(&self) {
        match &*self.pools {
            Pools::Sqlite {
                read,
                write,
                writer,
            } => {
                writer.close().await;
                read.close();
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

/// The PostgreSQL pool: every statement under `statement_timeout`, and every connection's
/// client checked every second while it runs (PostgreSQL 14 and later), so that a statement
/// whose connection was closed ends (see [`PgConn`]).
async fn pg_pool(url: &str, statement_timeout: Duration) -> Result<PgPool, StoreError> {
    let ms = statement_timeout.as_millis().clamp(1, i32::MAX as u128);
    // No statement logging: sqlx logs the text of a slow statement, and the writes
    // carry their values in their text (patient data stays out of the logs).
    let opts = PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .options([
            ("statement_timeout", format!("{ms}")),
            // Changes made on this connection are the server's (see `Db::mark_transactions`).
            ("expediente.server", "on".to_owned()),
            // A transaction left idle (its process stopped answering) gives its locks back.
            (
                "idle_in_transaction_session_timeout",
                format!("{}", ms.saturating_mul(2)),
            ),
        ]);
    Ok(PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(16)
        // While the database is away (restarting, say), a request waits this long for a
        // connection, then is answered 503: not as long as the database takes to come back.
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Older servers do not know the setting: they only notice a closed client
                // when they next write to it.
                let _ = sqlx::Executor::execute(
                    &mut *conn,
                    "SET client_connection_check_interval = 1000",
                )
                .await;
                Ok(())
            })
        })
        .connect_with(opts)
        .await?)
}

/// The first `max` rows of a query on SQLite, outside any transaction: on a read connection, or
/// on the write connection for a statement that writes.
async fn lite_fetch(
    read: &Readers,
    writer: &lite::Writer,
    sql: &str,
    args: &[Arg],
    max: usize,
) -> Result<Vec<LiteRow>, StoreError> {
    Ok(match read.fetch(sql, args, max).await? {
        Fetched::Rows(rows) => rows,
        Fetched::Writes => writer
            .fetch(sql, args)
            .await?
            .into_iter()
            .take(max)
            .collect(),
    })
}

/// `?, ?, ?` for `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Somewhere to run a read: the pool, or an open transaction (to see its own writes), or reads
/// of one that go side by side.
pub enum Conn<'a> {
    Pool(&'a Db),
    Tx(&'a mut Tx),
    Reads(TxReads<'a>),
}

/// Reads of an open SQLite transaction that need not wait for each other (from
/// [`Tx::side_by_side`]): each goes to the writer's thread as soon as it is asked for and the
/// thread answers them in order, so that the caller works on what one returned while the next
/// runs. They borrow the transaction: no write can be queued among them.
#[derive(Clone)]
pub struct TxReads<'a> {
    reads: lite::Reads,
    _tx: std::marker::PhantomData<&'a mut Tx>,
}

impl TxReads<'_> {
    pub async fn fetch_all(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        Ok(self
            .reads
            .fetch(sql, args)
            .await?
            .into_iter()
            .map(Row::Lite)
            .collect())
    }
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Pool(db) => db.dialect(),
            Conn::Tx(tx) => tx.dialect(),
            Conn::Reads(_) => Dialect::Sqlite,
        }
    }

    pub async fn fetch_all(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Pool(db) => db.fetch_all(sql, args).await,
            Conn::Tx(tx) => tx.fetch_all(sql, args).await,
            Conn::Reads(r) => r.fetch_all(sql, args).await,
        }
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Option<Row>, StoreError> {
        match self {
            Conn::Pool(db) => db.fetch_optional(sql, args).await,
            Conn::Tx(tx) => tx.fetch_optional(sql, args).await,
            Conn::Reads(r) => Ok(r.fetch_all(sql, args).await?.into_iter().next()),
        }
    }
}

#[cfg(test)]
mod tests;

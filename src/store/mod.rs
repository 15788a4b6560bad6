//! Storage: one sqlx pool for SQLite or PostgreSQL, chosen once from the URL.
//!
//! SQL is written once with `?` placeholders and portable syntax; values are passed as [`Arg`]s and
//! rows read through [`Row`], which hide the type differences between the engines (PostgreSQL uses
//! native uuid, timestamptz, date and jsonb; SQLite stores them as text). Engine-only fragments are
//! chosen with [`Dialect`].

mod error;
mod lite;
mod migrate;
mod row;

pub use error::StoreError;
pub use lite::LiteRow;
pub use row::Row;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde_json::Value;
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

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Json(Value),
    /// JSON or SQL NULL.
    OptJson(Option<Value>),
    Timestamp(Option<DateTime<Utc>>),
    Date(Option<NaiveDate>),
    /// A decimal as its exact text (`37.50`): numeric on PostgreSQL, text on SQLite.
    Decimal(Option<String>),
    /// Binary content: bytea on PostgreSQL, a BLOB on SQLite.
    Bytes(Option<Vec<u8>>),
    /// A list of UUIDs: a `uuid[]` on PostgreSQL (`col = ANY (?)`); on SQLite a JSON array of
    /// their texts (see [`one_of`], which gives SQLite one placeholder per id instead).
    UuidList(Vec<Uuid>),
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Uuid(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Self {
        Arg::Bool(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Timestamp(Some(v))
    }
}
impl From<Option<NaiveDate>> for Arg {
    fn from(v: Option<NaiveDate>) -> Self {
        Arg::Date(v)
    }
}

/// A decimal's text as PostgreSQL numeric, keeping its scale (`37.50` stays `37.50`).
pub fn parse_decimal(text: &str) -> Option<rust_decimal::Decimal> {
    use std::str::FromStr;
    rust_decimal::Decimal::from_str(text)
        .or_else(|_| rust_decimal::Decimal::from_scientific(text))
        .ok()
}

/// Adds `args` to the values of a waiting write. On SQLite (`lite`) a value its writer would
/// write out as text ([`lite_text`]) is written out here instead: by the caller, beside the
/// writer's thread, which a large transaction keeps busy, and for JSON instead of a deep copy of
/// the value.
fn keep(lite: bool, into: &mut Vec<Arg>, args: &[Arg]) {
    if !lite {
        into.extend_from_slice(args);
        return;
    }
    into.extend(args.iter().map(|a| match lite_text(a) {
        Some(text) => Arg::Text(text),
        None => a.clone(),
    }));
}

/// The text SQLite keeps for a value that is not text in Rust (JSON, a UUID, a time, a date, a
/// list of UUIDs), `Some(None)` for its NULL; `None` for a value bound as it is.
pub(super) fn lite_text(a: &Arg) -> Option<Option<String>> {
    Some(match a {
        Arg::Json(v) => Some(v.to_string()),
        Arg::OptJson(v) => v.as_ref().map(Value::to_string),
        Arg::Uuid(v) => Some(v.hyphenated().to_string()),
        Arg::OptUuid(v) => v.map(|u| u.hyphenated().to_string()),
        Arg::Timestamp(v) => v.as_ref().map(sqlite_timestamp),
        Arg::Date(v) => v.map(|d| d.format("%Y-%m-%d").to_string()),
        Arg::UuidList(v) => Some(
            Value::Array(
                v.iter()
                    .map(|u| Value::String(u.hyphenated().to_string()))
                    .collect(),
            )
            .to_string(),
        ),
        Arg::Text(_) | Arg::Int(_) | Arg::Bool(_) | Arg::Decimal(_) | Arg::Bytes(_) => return None,
    })
}

/// Formats a timestamp the way the SQLite schema stores it (sortable text, milliseconds).
pub fn sqlite_timestamp(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Rewrites `?` placeholders to PostgreSQL's `$n`. Our SQL never has `?` inside literals.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn sqlite_query<'q>(sql: &'q str, args: &[Arg]) -> SqliteQuery<'q> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Uuid(v) => q.bind(v.hyphenated().to_string()),
            Arg::OptUuid(v) => q.bind(v.map(|u| u.hyphenated().to_string())),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::Int(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Json(v) => q.bind(v.to_string()),
            Arg::OptJson(v) => q.bind(v.as_ref().map(Value::to_string)),
            Arg::Timestamp(v) => q.bind(v.as_ref().map(sqlite_timestamp)),
            Arg::Date(v) => q.bind(v.map(|d| d.format("%Y-%m-%d").to_string())),
            Arg::Decimal(v) => q.bind(v.clone()),
            Arg::Bytes(v) => q.bind(v.clone()),
            Arg::UuidList(v) => q.bind(
                Value::Array(
                    v.iter()
                        .map(|u| Value::String(u.hyphenated().to_string()))
                        .collect(),
                )
                .to_string(),
            ),
        };
    }
    q
}

/// JSON sent to PostgreSQL as `json`, its text as is: a `jsonb` parameter would be normalised
/// before it reaches a `json` column (`1e-22` becoming `0.0000000000000000000001`). PostgreSQL
/// casts it to `jsonb` where a column is `jsonb`.
struct JsonText(String);

impl sqlx::Type<sqlx::Postgres> for JsonText {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("json")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for JsonText {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

fn pg_query<'q>(sql: &'q str, args: &[Arg]) -> PgQuery<'q> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Uuid(v) => q.bind(*v),
            Arg::OptUuid(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::Int(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Json(v) => q.bind(JsonText(v.to_string())),
            Arg::OptJson(v) => q.bind(v.as_ref().map(|v| JsonText(v.to_string()))),
            Arg::Timestamp(v) => q.bind(*v),
            Arg::Date(v) => q.bind(*v),
            Arg::Decimal(v) => q.bind(v.as_deref().and_then(parse_decimal)),
            Arg::Bytes(v) => q.bind(v.clone()),
            Arg::UuidList(v) => q.bind(v.clone()),
        };
    }
    q
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

#[derive(Clone)]
enum Pools {
    Sqlite {
        read: SqlitePool,
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
    pools: Pools,
    shared: Arc<Shared>,
}

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
}

/// Each table's place in the foreign key order: a table comes after every table it references.
/// Tables in a cycle of foreign keys have no place.
type TableOrder = std::collections::HashMap<String, usize>;

/// When a fact was found, and the fact.
type SharedFact = (Instant, Arc<dyn std::any::Any + Send + Sync>);

impl Shared {
    fn order(&self) -> Arc<TableOrder> {
        self.order.read().map(|o| o.clone()).unwrap_or_default()
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
            let writer = lite::Writer::open(opts.get_filename())?;
            let read = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(false))
                .await?;
            Ok(Db {
                pools: Pools::Sqlite {
                    read,
                    write,
                    writer,
                },
                shared: Arc::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // No statement logging: sqlx logs the text of a slow statement, and the writes
            // carry their values in their text (patient data stays out of the logs).
            let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
            let pool = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Db {
                pools: Pools::Postgres(pool),
                shared: Arc::default(),
            })
        } else {
            Err(StoreError::Config(
                "database URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Sqlite { .. } => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies the migrations of this engine, then reads the foreign keys of the schema (see
    /// [`arrange`]).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => migrate::sqlite().run(write).await?,
            Pools::Postgres(p) => migrate::postgres().run(p).await?,
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

    /// Starts a read-write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { writer, .. } => {
                Tx::new(TxConn::Sqlite(writer.begin().await?), self.shared.clone())
            }
            Pools::Postgres(p) => Tx::new(
                TxConn::Postgres(PgTx {
                    tx: Some(p.begin().await?),
                    sending: None,
                }),
                self.shared.clone(),
            ),
        })
    }

    /// Runs a query that returns rows, outside any transaction (a read).
    pub async fn fetch_all(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => sqlite_query(sql, args)
                .fetch_all(read)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Pools::Postgres(p) => pg_query(&pg_sql(sql), args)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    /// Runs a query that returns at most one row, outside any transaction.
    pub async fn fetch_optional(&self, sql: &str, args: &[Arg]) -> Result<Option<Row>, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => sqlite_query(sql, args)
                .fetch_optional(read)
                .await?
                .map(Row::Sqlite),
            Pools::Postgres(p) => pg_query(&pg_sql(sql), args)
                .fetch_optional(p)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Runs a statement outside any transaction.
    pub async fn execute(&self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { writer, .. } => writer.execute(sql, args).await?,
            Pools::Postgres(p) => pg_query(&pg_sql(sql), args)
                .execute(p)
                .await?
                .rows_affected(),
        })
    }

    /// Answers when the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.fetch_optional("SELECT 1", &[]).await.map(|_| ())
    }

    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite {
                read,
                write,
                writer,
            } => {
                writer.close().await;
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

/// A database transaction; dropped without [`Tx::commit`], it rolls back.
///
/// Writes whose outcome nobody reads ([`Tx::queue`]) are not sent one by one: they wait, with
/// their values written into the SQL as literals, and go to the database together (one round
/// trip, one hand-over to SQLite's thread) before the next statement that is sent, at
/// [`Tx::flush`] and at commit. A failure among them surfaces there.
pub struct Tx {
    conn: TxConn,
    /// What transactions share (see [`Tx::share`]).
    shared: Arc<Shared>,
    /// Waiting writes, in order.
    queued: Vec<Queued>,
    queued_n: usize,
    /// Search index INSERTs still open to more rows, by SQL, with their place in `queued`.
    open_index: std::collections::HashMap<String, usize>,
    /// Facts the transaction has looked up and may look up again (see [`Tx::memo`]).
    memo: std::collections::HashMap<String, Box<dyn std::any::Any + Send + Sync>>,
    /// Rows this transaction inserted (see [`Tx::is_new`]), with the time written into them
    /// (see [`Tx::stamp`]).
    new_rows: std::collections::HashMap<Uuid, DateTime<Utc>>,
    /// On PostgreSQL, the server's clock when the transaction first read it, and the moment of
    /// that reading (see [`Tx::mark_new`]).
    clock: Option<(DateTime<Utc>, Instant)>,
    /// How many times the waiting writes went (see [`Held`]).
    sends: u64,
}

/// Where the values of a write queued with [`Tx::queue_held`] wait: [`Tx::amend`] changes them
/// until the write is sent.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    sends: u64,
    at: usize,
    first_arg: usize,
    args: usize,
}

enum TxConn {
    Sqlite(lite::LiteTx),
    Postgres(PgTx),
}

type PgTransaction = sqlx::Transaction<'static, sqlx::Postgres>;

/// A PostgreSQL transaction whose queued writes may be on their way: a task owns the
/// connection while it sends them, and gives it back with how it went. Whatever comes next
/// (a read, the next writes, the commit) waits for it first, so the order holds, and a failure
/// among them surfaces there.
struct PgTx {
    tx: Option<PgTransaction>,
    sending: Option<tokio::task::JoinHandle<(PgTransaction, Result<(), StoreError>)>>,
}

impl PgTx {
    /// The connection, once the writes on their way have been made.
    async fn conn(&mut self) -> Result<&mut PgTransaction, StoreError> {
        if let Some(h) = self.sending.take() {
            let (t, sent) = h.await.map_err(|_| StoreError::Closed)?;
            self.tx = Some(t);
            sent?;
        }
        self.tx.as_mut().ok_or(StoreError::Closed)
    }

    /// Whether writes are on their way.
    fn busy(&self) -> bool {
        self.sending.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Sends `queued` from a task of its own: the caller goes on meanwhile. Their text is made
    /// here, while the writes sent before are being made, not after them in the task.
    async fn send(&mut self, queued: Vec<Queued>, order: &TableOrder) -> Result<(), StoreError> {
        let pieces = pg_pieces(queued, order);
        self.conn().await?;
        let Some(mut t) = self.tx.take() else {
            return Err(StoreError::Closed);
        };
        self.sending = Some(tokio::spawn(async move {
            let sent = pg_send(&mut t, pieces).await;
            (t, sent)
        }));
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.conn().await?;
        match self.tx.take() {
            Some(t) => Ok(t.commit().await?),
            None => Err(StoreError::Closed),
        }
    }
}

/// Queued writes ready for PostgreSQL, in the order [`arrange`] gives: runs of statements with
/// their values written in as literals (a round trip is what costs there), one simple query
/// each, and between them any statement with a value no literal carries, bound.
enum PgPiece {
    Text(String),
    Bound(String, Vec<Arg>),
}

fn pg_pieces(queued: Vec<Queued>, order: &TableOrder) -> Vec<PgPiece> {
    // The literals double their quotes and keep backslashes as they are.
    const START: &str = "SET LOCAL standard_conforming_strings = on;\n";
    let mut pieces = Vec::new();
    let mut sql = String::from(START);
    for q in arrange(queued, order) {
        let stmt = q.statement();
        let rows = insert_tuple(&q.sql).is_some();
        match inline(Dialect::Postgres, &stmt, &q.args, rows) {
            Some(text) => {
                sql.push_str(&text);
                sql.push_str(";\n");
            }
            None => {
                // A value no literal carries: what came before, then this one bound.
                pieces.push(PgPiece::Text(std::mem::take(&mut sql)));
                pieces.push(PgPiece::Bound(pg_sql(&stmt), q.args));
            }
        }
    }
    pieces.push(PgPiece::Text(sql));
    pieces
}

/// Makes writes of [`pg_pieces`], in order.
async fn pg_send(t: &mut PgTransaction, pieces: Vec<PgPiece>) -> Result<(), StoreError> {
    for p in pieces {
        match p {
            PgPiece::Text(sql) if !sql.is_empty() => {
                sqlx::Executor::execute(&mut **t, sql.as_str()).await?;
            }
            PgPiece::Text(_) => {}
            PgPiece::Bound(sql, args) => {
                pg_query(&sql, &args).execute(&mut **t).await?;
            }
        }
    }
    Ok(())
}

/// The most statements kept waiting before they are sent anyway: on PostgreSQL, a round trip
/// each time; on SQLite a hand-over to its writer, which writes them while the transaction goes
/// on.
const MAX_QUEUED: usize = 2000;
const MAX_QUEUED_SQLITE: usize = 128;
/// On PostgreSQL, the statements that wait while no earlier ones are on their way.
const SEND_AT: usize = 200;
/// The most rows one coalesced INSERT carries.
const MAX_ROWS: usize = 100;
/// How the INSERTs into the search index tables begin (see [`Tx::queue`]).
const INDEX_TABLES: [&str; 2] = [
    "INSERT INTO search_strings ",
    "INSERT INTO search_quantities ",
];

/// A waiting write. Consecutive single-row INSERTs of the same SQL become one INSERT of several
/// rows (`VALUES (...), (...)`).
struct Queued {
    sql: String,
    args: Vec<Arg>,
    rows: usize,
}

impl Queued {
    fn one(sql: &str, args: &[Arg]) -> Queued {
        Queued {
            sql: sql.to_owned(),
            args: args.to_vec(),
            rows: 1,
        }
    }
}

/// `INSERT ... VALUES (tuple)` split into the part up to the tuple and the tuple, when the
/// statement is a plain single-row INSERT that more rows can be added to.
fn insert_tuple(sql: &str) -> Option<(&str, &str)> {
    if !sql.starts_with("INSERT INTO ") || !sql.ends_with(')') {
        return None;
    }
    let at = sql.rfind(" VALUES (")? + " VALUES ".len();
    let tuple = &sql[at..];
    // The tuple must be all the rest: one parenthesised list, nothing after it.
    (closing(tuple) == Some(tuple.len() - 1)).then(|| (&sql[..at], tuple))
}

/// The index of the parenthesis closing the one `s` opens with.
fn closing(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

impl Queued {
    /// The statement with every row's tuple.
    fn statement(&self) -> String {
        if self.rows == 1 {
            return self.sql.clone();
        }
        match insert_tuple(&self.sql) {
            Some((head, tuple)) => {
                let mut out = String::with_capacity(head.len() + (tuple.len() + 2) * self.rows);
                out.push_str(head);
                for i in 0..self.rows {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(tuple);
                }
                out
            }
            None => self.sql.clone(),
        }
    }
}

/// Places the tables of `edges` (table, table its foreign key names, or none) so that each comes
/// after the tables it references; the tables of a cycle (other than a table naming itself) get
/// no place.
fn table_order(edges: &[(String, Option<String>)]) -> TableOrder {
    use std::collections::{BTreeMap, BTreeSet};
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (child, parent) in edges {
        let set = parents.entry(child.as_str()).or_default();
        if let Some(p) = parent.as_deref().filter(|p| *p != child) {
            set.insert(p);
        }
    }
    let mut order = TableOrder::new();
    loop {
        let ready: Vec<&str> = parents
            .iter()
            .filter(|(t, ps)| !order.contains_key(**t) && ps.iter().all(|p| order.contains_key(*p)))
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            return order;
        }
        for t in ready {
            order.insert(t.to_owned(), order.len());
        }
    }
}

/// The table a waiting write may be moved past other tables' INSERTs into: a plain
/// `INSERT INTO t (...) VALUES (...)` with no query inside, into a table with a place in
/// `order`.
fn movable(q: &Queued, order: &TableOrder) -> Option<usize> {
    insert_tuple(&q.sql)?;
    if q.sql.contains("SELECT") || q.sql.contains("select") {
        return None;
    }
    let table = q.sql["INSERT INTO ".len()..].split([' ', '(']).next()?;
    order.get(table).copied()
}

/// Puts waiting writes in the order they are sent. Between two statements that are not plain
/// INSERTs (updates, deletes, settings: they stay where they are, and nothing moves past them),
/// the INSERTs are sorted by their table's place in the foreign key order, each table's rows
/// kept in the order they came, and the rows of one SQL that then stand together go in one
/// statement of up to [`MAX_ROWS`] rows. Every row still follows the rows it references, and
/// the statements are far fewer: the rows of one resource type written by many resources
/// interleaved with their child rows become a few INSERTs.
fn arrange(queued: Vec<Queued>, order: &TableOrder) -> Vec<Queued> {
    if order.is_empty() {
        return queued;
    }
    fn settle(run: &mut Vec<(usize, Queued)>, out: &mut Vec<Queued>) {
        run.sort_by_key(|(place, _)| *place);
        for (_, q) in run.drain(..) {
            match out.last_mut() {
                Some(last) if last.sql == q.sql && last.rows + q.rows <= MAX_ROWS => {
                    last.args.extend(q.args);
                    last.rows += q.rows;
                }
                _ => out.push(q),
            }
        }
    }
    let mut out = Vec::with_capacity(queued.len());
    let mut run: Vec<(usize, Queued)> = Vec::new();
    for q in queued {
        match movable(&q, order) {
            Some(place) => run.push((place, q)),
            None => {
                settle(&mut run, &mut out);
                out.push(q);
            }
        }
    }
    settle(&mut run, &mut out);
    out
}

/// `s` as an SQL string literal; `None` if it holds a NUL (which no literal can carry).
fn quote(s: &str) -> Option<String> {
    if s.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value as an SQL literal of `dialect`, with the type a bound parameter would have had;
/// `bare`, without it (the literal takes the type of the column it goes to).
fn literal(dialect: Dialect, a: &Arg, bare: bool) -> Option<String> {
    let typed = |v: Option<String>, ty: &str| match dialect {
        Dialect::Sqlite => Some(v.unwrap_or_else(|| "NULL".into())),
        Dialect::Postgres if bare => Some(v.unwrap_or_else(|| "NULL".into())),
        Dialect::Postgres => Some(format!(
            "CAST({} AS {ty})",
            v.unwrap_or_else(|| "NULL".into())
        )),
    };
    let text = |v: Option<&str>, ty: &str| -> Option<String> {
        let q = match v {
            Some(s) => Some(quote(s)?),
            None => None,
        };
        typed(q, ty)
    };
    match a {
        Arg::Uuid(v) => text(Some(&v.hyphenated().to_string()), "uuid"),
        Arg::OptUuid(v) => text(v.map(|u| u.hyphenated().to_string()).as_deref(), "uuid"),
        Arg::Text(v) => text(v.as_deref(), "text"),
        Arg::Int(v) => typed(v.map(|i| i.to_string()), "bigint"),
        Arg::Bool(v) => match dialect {
            Dialect::Sqlite => typed(v.map(|b| if b { "1" } else { "0" }.to_owned()), ""),
            Dialect::Postgres => typed(v.map(|b| b.to_string()), "boolean"),
        },
        Arg::Json(v) => text(Some(&v.to_string()), "json"),
        Arg::OptJson(v) => text(v.as_ref().map(Value::to_string).as_deref(), "json"),
        Arg::Timestamp(v) => match dialect {
            Dialect::Sqlite => text(v.as_ref().map(sqlite_timestamp).as_deref(), ""),
            Dialect::Postgres => text(
                v.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .as_deref(),
                "timestamptz",
            ),
        },
        Arg::Date(v) => text(
            v.map(|d| d.format("%Y-%m-%d").to_string()).as_deref(),
            "date",
        ),
        Arg::Decimal(v) => match dialect {
            Dialect::Sqlite => text(v.as_deref(), ""),
            Dialect::Postgres => text(
                v.as_deref()
                    .and_then(parse_decimal)
                    .map(|d| d.to_string())
                    .as_deref(),
                "numeric",
            ),
        },
        Arg::Bytes(v) => match dialect {
            Dialect::Sqlite => typed(v.as_ref().map(|b| format!("X'{}'", hex(b))), ""),
            Dialect::Postgres => typed(v.as_ref().map(|b| format!("'\\x{}'", hex(b))), "bytea"),
        },
        Arg::UuidList(v) => match dialect {
            Dialect::Sqlite => text(
                Some(
                    &Value::Array(
                        v.iter()
                            .map(|u| Value::String(u.hyphenated().to_string()))
                            .collect(),
                    )
                    .to_string(),
                ),
                "",
            ),
            Dialect::Postgres => {
                let items: Vec<String> = v.iter().map(|u| u.hyphenated().to_string()).collect();
                text(Some(&format!("{{{}}}", items.join(","))), "uuid[]")
            }
        },
    }
}

/// `sql` with each `?` replaced by its value as a literal (our SQL never has `?` inside a
/// literal); `None` when a value cannot be written as one.
///
/// For a plain INSERT of one or more rows (`rows`: its single-row form passes
/// [`insert_tuple`]), a value that is a whole item of a row's tuple goes in bare, typed by its
/// column as PostgreSQL assigns it. A cast to parse, check and fold for every value cost more
/// than the insert of the row itself for narrow tables.
fn inline(dialect: Dialect, sql: &str, args: &[Arg], rows: bool) -> Option<String> {
    let mut out = String::with_capacity(sql.len() + args.len() * 16);
    let mut values = args.iter();
    let tuples = if rows {
        sql.find(" VALUES (").map(|at| at + " VALUES ".len())
    } else {
        None
    };
    let bytes = sql.as_bytes();
    // Parenthesis depth and quoting from the tuples on.
    let mut depth = 0i32;
    let mut quoted = false;
    for (i, c) in sql.char_indices() {
        let in_tuples = tuples.is_some_and(|at| i >= at);
        if in_tuples {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => depth -= 1,
                _ => {}
            }
        }
        if c == '?' {
            let whole = in_tuples && depth == 1 && {
                let before = sql[..i].trim_end().bytes().last();
                let after = bytes[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                matches!(before, Some(b'(' | b',')) && matches!(after, Some(b',' | b')'))
            };
            out.push_str(&literal(dialect, values.next()?, whole)?);
        } else {
            out.push(c);
        }
    }
    values.next().is_none().then_some(out)
}

impl Tx {
    fn new(conn: TxConn, shared: Arc<Shared>) -> Tx {
        Tx {
            conn,
            shared,
            queued: Vec::new(),
            queued_n: 0,
            open_index: std::collections::HashMap::new(),
            memo: std::collections::HashMap::new(),
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

    /// A value this transaction remembered under `key`.
    pub fn memo<T: Clone + Send + Sync + 'static>(&self, key: &str) -> Option<T> {
        self.memo.get(key)?.downcast_ref::<T>().cloned()
    }

    /// Remembers `value` under `key` until the transaction ends (or [`Tx::forget`]).
    pub fn remember<T: Send + Sync + 'static>(&mut self, key: String, value: T) {
        self.memo.insert(key, Box::new(value));
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

    /// Takes what was remembered under `key`: it is forgotten.
    pub fn take_memo<T: Send + Sync + 'static>(&mut self, key: &str) -> Option<T> {
        let v = self.memo.remove(key)?;
        v.downcast::<T>().ok().map(|b| *b)
    }

    /// Notes that row `id` is being inserted by this transaction, and the time its insert writes
    /// into it as its creation and update time (see [`Tx::stamp`]).
    pub async fn mark_new(&mut self, id: Uuid) -> Result<(), StoreError> {
        let stamp = match self.dialect() {
            // (To the millisecond, as the column keeps it.)
            Dialect::Sqlite => Utc::now().trunc_subsecs(3),
            // The server's clock, read once per transaction, and the time since: the clock
            // every other change of the rows (the update triggers) is stamped by. (To the
            // microsecond, as timestamptz keeps it.)
            Dialect::Postgres => {
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
                (at + elapsed).trunc_subsecs(6)
            }
        };
        self.new_rows.insert(id, stamp);
        Ok(())
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

    /// Forgets what was remembered under keys starting with `prefix`.
    pub fn forget(&mut self, prefix: &str) {
        self.memo.retain(|k, _| !k.starts_with(prefix));
    }

    /// A write whose outcome is not needed: sent with the next statement, at [`Tx::flush`] or at
    /// commit.
    pub async fn queue(&mut self, sql: &str, args: &[Arg]) -> Result<(), StoreError> {
        // Rows of the search index tables (no triggers, no foreign keys, read only by searches,
        // which flush first) join the open INSERT of their SQL wherever it is in the queue:
        // the index rows of many resources go in one statement. A statement that otherwise
        // touches those tables closes the open INSERTs, so nothing moves past it.
        let lite = self.dialect() == Dialect::Sqlite;
        let index_insert =
            INDEX_TABLES.iter().any(|t| sql.starts_with(t)) && insert_tuple(sql).is_some();
        if index_insert {
            if let Some(&at) = self.open_index.get(sql) {
                let q = &mut self.queued[at];
                keep(lite, &mut q.args, args);
                q.rows += 1;
                if q.rows >= MAX_ROWS {
                    self.open_index.remove(sql);
                }
                return Ok(());
            }
            self.open_index.insert(sql.to_owned(), self.queued.len());
            let mut kept = Vec::with_capacity(args.len());
            keep(lite, &mut kept, args);
            self.queued.push(Queued {
                sql: sql.to_owned(),
                args: kept,
                rows: 1,
            });
            return self.count_queued().await;
        } else if !self.open_index.is_empty()
            && (sql.contains("search_strings") || sql.contains("search_quantities"))
        {
            self.open_index.clear();
        }
        if let Some(last) = self.queued.last_mut() {
            if last.sql == sql && last.rows < MAX_ROWS && insert_tuple(sql).is_some() {
                keep(lite, &mut last.args, args);
                last.rows += 1;
                return Ok(());
            }
        }
        let mut kept = Vec::with_capacity(args.len());
        keep(lite, &mut kept, args);
        self.queued.push(Queued {
            sql: sql.to_owned(),
            args: kept,
            rows: 1,
        });
        self.count_queued().await
    }

    /// Queues a single-row INSERT whose values may still change while it waits ([`Tx::amend`]):
    /// a row that later writes of the transaction would otherwise UPDATE goes in whole.
    pub async fn queue_held(&mut self, sql: &str, args: &[Arg]) -> Result<Held, StoreError> {
        debug_assert!(
            !INDEX_TABLES.iter().any(|t| sql.starts_with(t)),
            "search index rows join an earlier INSERT, not the last"
        );
        let sends = self.sends;
        self.queue(sql, args).await?;
        // The row is the last of the last waiting write; if the queue was sent meanwhile (it
        // was full), `sends` has moved and the handle is out of date.
        Ok(Held {
            sends,
            at: self.queued.len().saturating_sub(1),
            first_arg: self
                .queued
                .last()
                .map_or(0, |q| q.args.len().saturating_sub(args.len())),
            args: args.len(),
        })
    }

    /// Sets value `arg` of a write queued with [`Tx::queue_held`]; `false` (and nothing changed)
    /// once the write has been sent, when the caller writes the change itself.
    pub fn amend(&mut self, held: Held, arg: usize, value: Arg) -> bool {
        if held.sends != self.sends || arg >= held.args {
            return false;
        }
        match self
            .queued
            .get_mut(held.at)
            .and_then(|q| q.args.get_mut(held.first_arg + arg))
        {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// Counts a statement just queued; too many waiting are sent.
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

    /// Tells [`Tx::row_by_fhir_id`] the row just written under a logical id: a reference to it
    /// later in the transaction needs no lookup.
    pub fn remember_row(&mut self, table: &str, fhir_id: &str, row_id: Uuid) {
        self.remember(format!("row:{table}:{fhir_id}"), row_id);
    }

    /// The row of `table` (a table with `fhir_id` and `deleted_at`) behind a live logical id.
    /// A row found is remembered for the rest of the transaction (deletes forget them all).
    pub async fn row_by_fhir_id(
        &mut self,
        table: &str,
        fhir_id: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let key = format!("row:{table}:{fhir_id}");
        if let Some(id) = self.memo::<Uuid>(&key) {
            return Ok(Some(id));
        }
        let found = self
            .fetch_optional(
                &format!("SELECT id FROM {table} WHERE fhir_id = ? AND deleted_at IS NULL"),
                &[fhir_id.into()],
            )
            .await?
            .map(|r| r.uuid("id"))
            .transpose()?;
        if let Some(id) = found {
            self.remember(key, id);
        }
        Ok(found)
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
        self.open_index.clear();
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
            TxConn::Postgres(t) => pg_query(&pg_sql(sql), args)
                .execute(&mut **t.conn().await?)
                .await?
                .rows_affected(),
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
            TxConn::Postgres(t) => pg_query(&pg_sql(sql), args)
                .fetch_all(&mut **t.conn().await?)
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
            TxConn::Postgres(t) => pg_query(&pg_sql(sql), args)
                .fetch_optional(&mut **t.conn().await?)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Marks a row as being written through FHIR for the rest of the transaction, so that the
    /// triggers of its child tables do not touch it again (see the fhir_write_guard table).
    /// On PostgreSQL the mark is a transaction-local setting (`expediente.write_guard`, read
    /// through the fhir_write_guard view), which leaves no dead rows behind as a table would.
    ///
    /// A row this transaction inserted ([`Tx::mark_new`]) needs no mark on PostgreSQL: the
    /// triggers that read the mark for such rows also pass over every row whose xmin is the
    /// current transaction (a resource's row is inserted before the rows that hang from it).
    /// vital_signs rows are marked with [`Tx::guard_vitals`].
    pub async fn guard(&mut self, row_id: Uuid) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres && self.is_new(row_id) {
            return Ok(());
        }
        let sql = match self.dialect() {
            Dialect::Sqlite => "INSERT INTO fhir_write_guard (row_id) VALUES (?)",
            Dialect::Postgres => "SELECT set_config('expediente.write_guard', concat_ws(',', NULLIF(current_setting('expediente.write_guard', true), ''), CAST(? AS text)), true)",
        };
        self.queue(sql, &[row_id.into()]).await
    }

    /// Marks a vital_signs row as written through FHIR (its vital_sign_observations rows are
    /// kept by the writer, not by the table's trigger) until [`Tx::unguard_vitals`]. On
    /// PostgreSQL the transaction says so once for all its vital_signs rows (the
    /// `expediente.fhir_vitals` setting): every write of that table inside it is a FHIR write.
    pub async fn guard_vitals(&mut self, row_id: Uuid) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Sqlite {
            return self.guard(row_id).await;
        }
        self.queue_once("SELECT set_config('expediente.fhir_vitals', 'on', true)")
            .await
    }

    /// Queues a statement without values the first time it is asked for in this transaction (a
    /// setting for the rest of it).
    pub async fn queue_once(&mut self, sql: &str) -> Result<(), StoreError> {
        let key = format!("once:{sql}");
        if self.memo::<bool>(&key).is_some() {
            return Ok(());
        }
        self.remember(key, true);
        self.queue(sql, &[]).await
    }

    /// Ends what [`Tx::guard_vitals`] started (on PostgreSQL, the transaction's end does).
    pub async fn unguard_vitals(&mut self, row_id: Uuid) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Sqlite {
            return self.unguard(row_id).await;
        }
        Ok(())
    }

    /// Ends what [`Tx::guard`] started.
    pub async fn unguard(&mut self, row_id: Uuid) -> Result<(), StoreError> {
        if self.dialect() == Dialect::Postgres && self.is_new(row_id) {
            return Ok(());
        }
        let sql = match self.dialect() {
            Dialect::Sqlite => "DELETE FROM fhir_write_guard WHERE row_id = ?",
            Dialect::Postgres => "SELECT set_config('expediente.write_guard', array_to_string(array_remove(string_to_array(current_setting('expediente.write_guard', true), ','), CAST(? AS text)), ','), true)",
        };
        self.queue(sql, &[row_id.into()]).await
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
mod tests {
    use super::*;

    #[test]
    fn values_become_literals_of_their_type() {
        let id = Uuid::nil();
        let args = [
            Arg::Uuid(id),
            Arg::Text(Some("O'Brien ? x".into())),
            Arg::Int(None),
            Arg::Bool(Some(true)),
            Arg::Decimal(Some("37.50".into())),
            Arg::Bytes(Some(vec![0, 255])),
        ];
        let sql = "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)";
        assert_eq!(
            inline(Dialect::Sqlite, sql, &args, false).unwrap(),
            "INSERT INTO t VALUES ('00000000-0000-0000-0000-000000000000', 'O''Brien ? x', NULL, 1, '37.50', X'00ff')"
        );
        assert_eq!(
            inline(Dialect::Postgres, sql, &args, false).unwrap(),
            "INSERT INTO t VALUES (CAST('00000000-0000-0000-0000-000000000000' AS uuid), CAST('O''Brien ? x' AS text), CAST(NULL AS bigint), CAST(true AS boolean), CAST('37.50' AS numeric), CAST('\\x00ff' AS bytea))"
        );
        // No literal carries a NUL; too few or too many values are refused.
        assert!(inline(
            Dialect::Sqlite,
            "SELECT ?",
            &[Arg::Text(Some("a\0b".into()))],
            false
        )
        .is_none());
        assert!(inline(Dialect::Sqlite, "SELECT ?, ?", &[Arg::Int(Some(1))], false).is_none());
        assert!(inline(
            Dialect::Sqlite,
            "SELECT ?",
            &[Arg::Int(Some(1)), Arg::Int(Some(2))],
            false
        )
        .is_none());
    }

    #[test]
    fn single_row_inserts_take_more_rows() {
        assert_eq!(
            insert_tuple("INSERT INTO t (a, b) VALUES (?, COALESCE(?, 'x)'))"),
            Some(("INSERT INTO t (a, b) VALUES ", "(?, COALESCE(?, 'x)'))"))
        );
        for not in [
            "INSERT INTO t (a) VALUES (?) ON CONFLICT DO NOTHING",
            "INSERT INTO t (a) SELECT a FROM u WHERE b IN (?)",
            "UPDATE t SET a = (?)",
            "INSERT INTO t (a) VALUES (?), (?)x",
        ] {
            assert_eq!(insert_tuple(not), None, "{not}");
        }
        let q = Queued {
            sql: "INSERT INTO t (a, b) VALUES (?, ?)".into(),
            args: vec![],
            rows: 3,
        };
        assert_eq!(
            q.statement(),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)"
        );
    }

    #[test]
    fn tables_come_after_the_tables_they_reference_and_a_cycle_has_no_place() {
        let edge = |c: &str, p: Option<&str>| (c.to_owned(), p.map(str::to_owned));
        let order = table_order(&[
            edge("results", Some("tests")),
            edge("results", Some("patients")),
            edge("tests", Some("patients")),
            edge("patients", None),
            edge("tree", Some("tree")),
            edge("a", Some("b")),
            edge("b", Some("a")),
            edge("index", None),
        ]);
        assert!(order["patients"] < order["tests"]);
        assert!(order["tests"] < order["results"]);
        assert!(
            order.contains_key("tree"),
            "a table naming itself keeps a place"
        );
        assert!(order.contains_key("index"));
        assert!(!order.contains_key("a") && !order.contains_key("b"));
    }

    #[test]
    fn inserts_between_other_statements_go_by_table_and_in_fewer_statements() {
        let order: TableOrder = [("p", 0), ("c", 1)]
            .into_iter()
            .map(|(t, i)| (t.to_owned(), i))
            .collect();
        let q = |sql: &str, v: i64| Queued::one(sql, &[Arg::Int(Some(v))]);
        let (p, c) = (
            "INSERT INTO p (a) VALUES (?)",
            "INSERT INTO c (a) VALUES (?)",
        );
        let queued = vec![
            q(p, 1),
            q(c, 2),
            q(p, 3),
            q(c, 4),
            q("UPDATE p SET a = ? WHERE a = 1", 5),
            q(c, 6),
            q(p, 7),
            q("INSERT INTO c (a) SELECT a FROM p WHERE a = ?", 8),
            q("INSERT INTO unknown (a) VALUES (?)", 9),
            q(c, 10),
        ];
        let got: Vec<(String, Vec<i64>)> = arrange(queued, &order)
            .into_iter()
            .map(|q| {
                let vals = q
                    .args
                    .iter()
                    .map(|a| match a {
                        Arg::Int(Some(v)) => *v,
                        _ => -1,
                    })
                    .collect();
                (q.statement(), vals)
            })
            .collect();
        let want = vec![
            ("INSERT INTO p (a) VALUES (?), (?)", vec![1, 3]),
            ("INSERT INTO c (a) VALUES (?), (?)", vec![2, 4]),
            ("UPDATE p SET a = ? WHERE a = 1", vec![5]),
            ("INSERT INTO p (a) VALUES (?)", vec![7]),
            ("INSERT INTO c (a) VALUES (?)", vec![6]),
            ("INSERT INTO c (a) SELECT a FROM p WHERE a = ?", vec![8]),
            ("INSERT INTO unknown (a) VALUES (?)", vec![9]),
            ("INSERT INTO c (a) VALUES (?)", vec![10]),
        ];
        let want: Vec<(String, Vec<i64>)> =
            want.into_iter().map(|(s, v)| (s.to_owned(), v)).collect();
        assert_eq!(got, want);
        // No statement carries more than MAX_ROWS rows.
        let many: Vec<Queued> = (0..(MAX_ROWS as i64 + 5)).map(|v| q(c, v)).collect();
        let rows: Vec<usize> = arrange(many, &order).iter().map(|q| q.rows).collect();
        assert_eq!(rows, vec![MAX_ROWS, 5]);
        // Without the schema's order, nothing moves.
        let two = vec![q(c, 1), q(p, 2)];
        let kept: Vec<String> = arrange(two, &TableOrder::new())
            .iter()
            .map(|q| q.sql.clone())
            .collect();
        assert_eq!(kept, vec![c.to_owned(), p.to_owned()]);
    }

    #[test]
    fn values_that_are_whole_items_of_an_inserted_row_go_bare() {
        let sql =
            "INSERT INTO t (a, b, c) VALUES (?, COALESCE(?, 'x,('), ?), (?, COALESCE(?, 'x,('), ?)";
        let args = [
            Arg::Text(Some("it's".into())),
            Arg::Int(Some(2)),
            Arg::Text(None),
            Arg::Uuid(Uuid::nil()),
            Arg::Int(None),
            Arg::Bool(Some(true)),
        ];
        assert_eq!(
            inline(Dialect::Postgres, sql, &args, true).unwrap(),
            "INSERT INTO t (a, b, c) VALUES ('it''s', COALESCE(CAST(2 AS bigint), 'x,('), NULL), \
             ('00000000-0000-0000-0000-000000000000', COALESCE(CAST(NULL AS bigint), 'x,('), true)"
        );
        // Anything else keeps the type its parameter would have had.
        assert_eq!(
            inline(
                Dialect::Postgres,
                "UPDATE t SET a = ? WHERE b IN (?)",
                &args[..2],
                false
            )
            .unwrap(),
            "UPDATE t SET a = CAST('it''s' AS text) WHERE b IN (CAST(2 AS bigint))"
        );
    }

    #[tokio::test]
    async fn index_rows_join_the_open_insert_but_never_pass_a_statement_on_their_table() {
        let path = std::env::temp_dir().join(format!("expediente-queue-{}.db", Uuid::new_v4()));
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let (r, other) = (Uuid::new_v4(), Uuid::new_v4());
        let ins = "INSERT INTO search_strings (resource_type, row_id, param, value, exact) VALUES (?, ?, ?, ?, ?)";
        let row = |id: Uuid, v: &str| -> Vec<Arg> {
            vec![
                "Patient".into(),
                id.into(),
                "name".into(),
                v.into(),
                v.into(),
            ]
        };
        let mut tx = db.begin().await.unwrap();
        tx.queue(ins, &row(r, "a")).await.unwrap();
        tx.queue("UPDATE patients SET deleted_at = NULL WHERE 0 = 1", &[])
            .await
            .unwrap();
        tx.queue(ins, &row(other, "c")).await.unwrap();
        tx.queue("DELETE FROM search_strings WHERE row_id = ?", &[r.into()])
            .await
            .unwrap();
        tx.queue(ins, &row(r, "b")).await.unwrap();
        let rows: Vec<usize> = tx.queued.iter().map(|q| q.rows).collect();
        assert_eq!(
            rows,
            vec![2, 1, 1, 1],
            "the second row joined the first INSERT"
        );
        tx.commit().await.unwrap();
        let values: Vec<(String, String)> = db
            .fetch_all(
                "SELECT row_id, value FROM search_strings ORDER BY value",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|x| (x.string("row_id").unwrap(), x.string("value").unwrap()))
            .collect();
        assert_eq!(
            values,
            vec![(r.to_string(), "b".into()), (other.to_string(), "c".into())]
        );
        db.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// A migrated SQLite database in a file of its own, and the file.
    async fn sqlite_db() -> (Db, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("expediente-store-{}.db", Uuid::new_v4()));
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (db, path)
    }

    async fn drop_sqlite_db(db: Db, path: std::path::PathBuf) {
        db.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    async fn roles(db: &Db) -> Vec<String> {
        db.fetch_all("SELECT name FROM roles ORDER BY name", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.string("name").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_failed_queued_write_fails_the_next_read_or_the_commit_and_nothing_stays() {
        let (db, path) = sqlite_db().await;
        let before = roles(&db).await;
        let insert = "INSERT INTO roles (id, name) VALUES (?, ?)";
        // The second row repeats the unique name of the first: the failure is found when the
        // queued writes run, and answered to the read after them.
        let mut tx = db.begin().await.unwrap();
        for _ in 0..2 {
            tx.queue(insert, &[Uuid::new_v4().into(), "auditor".into()])
                .await
                .unwrap();
        }
        let read = tx.fetch_all("SELECT name FROM roles", &[]).await;
        assert!(
            matches!(read, Err(StoreError::Conflict)),
            "{:?}",
            read.err()
        );
        drop(tx);
        // The same at commit.
        let mut tx = db.begin().await.unwrap();
        for _ in 0..2 {
            tx.queue(insert, &[Uuid::new_v4().into(), "auditor".into()])
                .await
                .unwrap();
        }
        let commit = tx.commit().await;
        assert!(matches!(commit, Err(StoreError::Conflict)), "{commit:?}");
        assert_eq!(roles(&db).await, before);
        // A transaction dropped open rolls back; the next one runs and commits.
        let mut tx = db.begin().await.unwrap();
        tx.queue(insert, &[Uuid::new_v4().into(), "auditor".into()])
            .await
            .unwrap();
        drop(tx);
        assert_eq!(roles(&db).await, before);
        let mut tx = db.begin().await.unwrap();
        tx.queue(insert, &[Uuid::new_v4().into(), "auditor".into()])
            .await
            .unwrap();
        // A read inside the transaction sees its own queued write.
        let own = tx
            .fetch_optional("SELECT name FROM roles WHERE name = ?", &["auditor".into()])
            .await
            .unwrap()
            .map(|r| r.string("name").unwrap());
        assert_eq!(own.as_deref(), Some("auditor"));
        tx.commit().await.unwrap();
        let mut after = before.clone();
        after.push("auditor".into());
        after.sort();
        assert_eq!(roles(&db).await, after);
        drop_sqlite_db(db, path).await;
    }

    #[tokio::test]
    async fn a_queued_write_stores_each_kind_of_value_as_a_write_sent_at_once_does() {
        let (db, path) = sqlite_db().await;
        let at = DateTime::parse_from_rfc3339("2026-05-02T08:00:00.125Z")
            .unwrap()
            .with_timezone(&Utc);
        let values = vec![
            Arg::Json(serde_json::json!({"b": [1.50, "ñ \"x\""], "a": null})),
            Arg::OptJson(Some(serde_json::json!(1e-22))),
            Arg::OptJson(None),
            Arg::Uuid(Uuid::new_v4()),
            Arg::OptUuid(Some(Uuid::new_v4())),
            Arg::OptUuid(None),
            Arg::Timestamp(Some(at)),
            Arg::Date(NaiveDate::from_ymd_opt(1974, 12, 25)),
            Arg::Decimal(Some("37.50".into())),
        ];
        let cols = (0..values.len())
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>();
        let insert = format!(
            "INSERT INTO vals (how, {}) VALUES (?, {})",
            cols.join(", "),
            vec!["?"; values.len()].join(", ")
        );
        let mut tx = db.begin().await.unwrap();
        tx.execute(
            &format!("CREATE TEMP TABLE vals (how, {})", cols.join(", ")),
            &[],
        )
        .await
        .unwrap();
        let with = |how: &str| {
            let mut args = vec![Arg::from(how)];
            args.extend(values.iter().cloned());
            args
        };
        tx.queue(&insert, &with("queued")).await.unwrap();
        tx.execute(&insert, &with("at once")).await.unwrap();
        let typed = cols
            .iter()
            .map(|c| format!("typeof({c}) || ':' || coalesce({c}, 'NULL') AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = tx
            .fetch_all(&format!("SELECT how, {typed} FROM vals ORDER BY how"), &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let stored = |i: usize| {
            cols.iter()
                .map(|c| rows[i].string(c).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].string("how").unwrap(), "at once");
        assert_eq!(stored(1), stored(0));
        assert_eq!(stored(0)[0], r#"text:{"b":[1.5,"ñ \"x\""],"a":null}"#);
        assert_eq!(stored(0)[6], "text:2026-05-02T08:00:00.125Z");
        assert_eq!(stored(0)[7], "text:1974-12-25");
        drop_sqlite_db(db, path).await;
    }

    #[tokio::test]
    async fn a_held_write_takes_amendments_until_it_is_sent_and_none_after() {
        let (db, path) = sqlite_db().await;
        let insert = "INSERT INTO roles (id, name, description) VALUES (?, ?, ?)";
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut tx = db.begin().await.unwrap();
        let first = tx
            .queue_held(insert, &[a.into(), "first".into(), Arg::Text(None)])
            .await
            .unwrap();
        // The second row joins the first's INSERT; each handle still finds its own values.
        let second = tx
            .queue_held(insert, &[b.into(), "second".into(), Arg::Text(None)])
            .await
            .unwrap();
        assert_eq!(tx.queued.len(), 1);
        assert!(tx.amend(second, 2, "two".into()));
        assert!(tx.amend(first, 2, "one".into()));
        assert!(!tx.amend(first, 3, "past the row".into()));
        tx.flush().await.unwrap();
        // Sent: the values are the database's now.
        assert!(!tx.amend(first, 2, "late".into()));
        tx.commit().await.unwrap();
        let rows: Vec<(String, String)> = db
            .fetch_all(
                "SELECT name, description FROM roles WHERE name IN ('first', 'second') ORDER BY name",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.string("name").unwrap(), r.string("description").unwrap()))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("first".to_owned(), "one".to_owned()),
                ("second".to_owned(), "two".to_owned())
            ]
        );
        drop_sqlite_db(db, path).await;
    }

    #[tokio::test]
    async fn a_transaction_dropped_after_its_begin_leaves_no_transaction_open() {
        let (db, path) = sqlite_db().await;
        {
            // The BEGIN is sent, not waited for; then the caller goes.
            let _tx = db.begin().await.unwrap();
        }
        let mut tx = db.begin().await.unwrap();
        tx.queue(
            "INSERT INTO roles (id, name) VALUES (?, ?)",
            &[Uuid::new_v4().into(), "auditor".into()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(roles(&db).await.contains(&"auditor".to_owned()));
        drop_sqlite_db(db, path).await;
    }

    #[test]
    fn a_shared_fact_is_forgotten_after_a_while() {
        let shared = Shared::default();
        let at = Instant::now();
        shared.put("catalog:x".into(), 7u32, at);
        assert_eq!(shared.get::<u32>("catalog:x", at), Some(7));
        assert_eq!(shared.get::<u32>("catalog:x", at + SHARED_FOR / 2), Some(7));
        assert_eq!(
            shared.get::<u32>("catalog:x", at + SHARED_FOR + Duration::from_secs(1)),
            None
        );
        assert_eq!(shared.get::<u32>("catalog:y", at), None);
        // Another type under the key is not it.
        assert_eq!(shared.get::<String>("catalog:x", at), None);
    }

    #[tokio::test]
    async fn a_begin_that_fails_fails_its_transaction_and_runs_none_of_its_writes() {
        let (db, path) = sqlite_db().await;
        let before = roles(&db).await;
        // Another connection holds the write lock past the writer's wait.
        let writer = lite::Writer::open_waiting(&path, Duration::from_millis(50)).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let role = |name: &str| {
            vec![Queued::one(
                "INSERT INTO roles (id, name) VALUES (?, ?)",
                &[Uuid::new_v4().into(), name.into()],
            )]
        };
        let mut tx = writer.begin().await.unwrap();
        tx.run(role("auditor")).await.unwrap();
        let read = tx.fetch("SELECT name FROM roles", &[]).await;
        assert!(
            matches!(read, Err(StoreError::NotBegun(_))),
            "{:?}",
            read.err()
        );
        // Writes after the failed read are not run either (not outside a transaction).
        tx.run(role("clerk")).await.unwrap();
        let commit = tx.commit().await;
        assert!(matches!(commit, Err(StoreError::NotBegun(_))), "{commit:?}");
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(roles(&db).await, before);
        // The next transaction begins.
        let mut tx = writer.begin().await.unwrap();
        tx.run(role("auditor")).await.unwrap();
        tx.commit().await.unwrap();
        assert!(roles(&db).await.contains(&"auditor".to_owned()));
        assert!(!roles(&db).await.contains(&"clerk".to_owned()));
        writer.close().await;
        drop_sqlite_db(db, path).await;
    }

    #[tokio::test]
    async fn a_commit_sent_lets_the_next_transaction_begin_behind_it() {
        let (db, path) = sqlite_db().await;
        let insert = "INSERT INTO roles (id, name) VALUES (?, ?)";
        let mut first = db.begin().await.unwrap();
        first
            .queue(insert, &[Uuid::new_v4().into(), "auditor".into()])
            .await
            .unwrap();
        let committing = first.commit_sent().await.unwrap();
        // Begun before the first's outcome is known, the second sees the first's row.
        let mut second = db.begin().await.unwrap();
        let seen = second
            .fetch_optional("SELECT name FROM roles WHERE name = ?", &["auditor".into()])
            .await
            .unwrap();
        assert!(seen.is_some());
        committing.outcome().await.unwrap();
        // A failing commit is told by its outcome: the row repeats the unique name.
        second
            .queue(insert, &[Uuid::new_v4().into(), "auditor".into()])
            .await
            .unwrap();
        let failed = second.commit_sent().await.unwrap().outcome().await;
        assert!(matches!(failed, Err(StoreError::Conflict)), "{failed:?}");
        assert_eq!(
            roles(&db).await.iter().filter(|r| *r == "auditor").count(),
            1
        );
        drop_sqlite_db(db, path).await;
    }

    #[tokio::test]
    async fn committed_pages_are_copied_from_the_log_into_the_database_in_the_background() {
        let (db, path) = sqlite_db().await;
        let mut tx = db.begin().await.unwrap();
        for i in 0..2000 {
            tx.queue(
                "INSERT INTO roles (id, name) VALUES (?, ?)",
                &[
                    Uuid::new_v4().into(),
                    format!("role {i:05} {}", "x".repeat(200)).into(),
                ],
            )
            .await
            .unwrap();
        }
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        tx.commit().await.unwrap();
        // The commit goes to the log; the checkpointer copies it into the database file (the
        // writer itself would only past 65,536 pages of log), which grows by the ~500 kB.
        let mut copied = false;
        for _ in 0..250 {
            if size() > before + 400_000 {
                copied = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(copied, "database file {} bytes, was {before}", size());
        drop_sqlite_db(db, path).await;
    }

    #[test]
    fn pg_sql_numbers_placeholders_in_order() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
    }

    #[test]
    fn sqlite_timestamps_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.1Z").unwrap();
        let b = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.01Z").unwrap();
        let (a, b) = (
            sqlite_timestamp(&a.with_timezone(&Utc)),
            sqlite_timestamp(&b.with_timezone(&Utc)),
        );
        assert_eq!(a, "2026-01-02T03:04:05.100Z");
        assert!(b < a);
    }
}

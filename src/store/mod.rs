//! Storage: one sqlx pool for SQLite or PostgreSQL, chosen once from the URL.
//!
//! SQL is written once with `?` placeholders and portable syntax; values are passed as [`Arg`]s and
//! rows read through [`Row`], which hide the type differences between the engines (PostgreSQL uses
//! native uuid, timestamptz, date and jsonb; SQLite stores them as text). Engine-only fragments are
//! chosen with [`Dialect`].

mod error;
mod migrate;
mod row;

pub use error::StoreError;
pub use row::Row;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;
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
        /// One connection: SQLite has a single writer, so writers queue here instead of
        /// failing with SQLITE_BUSY when two transactions upgrade to write at once.
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// A handle on the database: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Db {
    pools: Pools,
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
                .foreign_keys(true);
            // No ping before each acquire: a dead connection fails its query and is replaced.
            let write = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(false))
                .await?;
            Ok(Db {
                pools: Pools::Sqlite { read, write },
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Db {
                pools: Pools::Postgres(pool),
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

    /// Applies the migrations of this engine.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => migrate::sqlite().run(write).await?,
            Pools::Postgres(p) => migrate::postgres().run(p).await?,
        }
        Ok(())
    }

    /// Starts a read-write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { write, .. } => Tx::Sqlite(write.begin().await?),
            Pools::Postgres(p) => Tx::Postgres(p.begin().await?),
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
            Pools::Sqlite { write, .. } => sqlite_query(sql, args)
                .execute(write)
                .await?
                .rows_affected(),
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
            Pools::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

/// A database transaction; dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        Ok(match self {
            Tx::Sqlite(t) => sqlite_query(sql, args)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Tx::Postgres(t) => pg_query(&pg_sql(sql), args)
                .execute(&mut **t)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        Ok(match self {
            Tx::Sqlite(t) => sqlite_query(sql, args)
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Tx::Postgres(t) => pg_query(&pg_sql(sql), args)
                .fetch_all(&mut **t)
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
        Ok(match self {
            Tx::Sqlite(t) => sqlite_query(sql, args)
                .fetch_optional(&mut **t)
                .await?
                .map(Row::Sqlite),
            Tx::Postgres(t) => pg_query(&pg_sql(sql), args)
                .fetch_optional(&mut **t)
                .await?
                .map(Row::Postgres),
        })
    }

    /// Marks a row as being written through FHIR for the rest of the transaction, so that the
    /// triggers of its child tables do not touch it again (see the fhir_write_guard table).
    /// On PostgreSQL the mark is a transaction-local setting (`expediente.write_guard`, read
    /// through the fhir_write_guard view), which leaves no dead rows behind as a table would.
    pub async fn guard(&mut self, row_id: Uuid) -> Result<(), StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => "INSERT INTO fhir_write_guard (row_id) VALUES (?)",
            Dialect::Postgres => "SELECT set_config('expediente.write_guard', concat_ws(',', NULLIF(current_setting('expediente.write_guard', true), ''), CAST(? AS text)), true)",
        };
        self.execute(sql, &[row_id.into()]).await.map(|_| ())
    }

    /// Ends what [`Tx::guard`] started.
    pub async fn unguard(&mut self, row_id: Uuid) -> Result<(), StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => "DELETE FROM fhir_write_guard WHERE row_id = ?",
            Dialect::Postgres => "SELECT set_config('expediente.write_guard', array_to_string(array_remove(string_to_array(current_setting('expediente.write_guard', true), ','), CAST(? AS text)), ','), true)",
        };
        self.execute(sql, &[row_id.into()]).await.map(|_| ())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// `?, ?, ?` for `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Somewhere to run a read: the pool, or an open transaction (to see its own writes).
pub enum Conn<'a> {
    Pool(&'a Db),
    Tx(&'a mut Tx),
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Pool(db) => db.dialect(),
            Conn::Tx(tx) => tx.dialect(),
        }
    }

    pub async fn fetch_all(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Pool(db) => db.fetch_all(sql, args).await,
            Conn::Tx(tx) => tx.fetch_all(sql, args).await,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

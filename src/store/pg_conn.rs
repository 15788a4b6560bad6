//! A PostgreSQL connection whose statement ends when its request does.
//!
//! Dropping an sqlx query in the middle (the client went away, the request ran out of time)
//! leaves the statement running on the server: the connection goes back to the pool and waits
//! there for its answer. [`PgConn`] knows whether a statement of its own is still running; if it
//! is dropped then, it closes the connection instead of returning it, and the server, which
//! checks its client every second (`client_connection_check_interval`, set at connect), ends the
//! statement and rolls its transaction back. Every statement also runs under the connection's
//! `statement_timeout`.

use super::arg::{pg_query, pg_sql};
use super::{Arg, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Database, PgConnection, Postgres, TransactionManager};

type Manager = <Postgres as Database>::TransactionManager;

/// A pooled connection, inside a transaction or not (see the module).
pub(super) struct PgConn {
    conn: Option<PoolConnection<Postgres>>,
    /// A statement was sent and its answer not read to the end.
    running: bool,
    /// A transaction was begun and has not ended.
    open: bool,
}

impl PgConn {
    pub async fn acquire(pool: &PgPool) -> Result<PgConn, StoreError> {
        Ok(PgConn {
            conn: Some(pool.acquire().await?),
            running: false,
            open: false,
        })
    }

    /// A connection with a transaction begun on it.
    pub async fn begin(pool: &PgPool) -> Result<PgConn, StoreError> {
        let mut c = PgConn::acquire(pool).await?;
        let r = Manager::begin(c.start()?, None).await;
        c.running = false;
        r?;
        c.open = true;
        Ok(c)
    }

    /// The connection, for a statement about to be sent.
    fn start(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.running = true;
        Ok(&mut **self.conn.as_mut().ok_or(StoreError::Closed)?)
    }

    pub async fn fetch_all(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<PgRow>, StoreError> {
        let sql = pg_sql(sql);
        let r = pg_query(&sql, args).fetch_all(self.start()?).await;
        self.running = false;
        Ok(r?)
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Option<PgRow>, StoreError> {
        let sql = pg_sql(sql);
        let r = pg_query(&sql, args).fetch_optional(self.start()?).await;
        self.running = false;
        Ok(r?)
    }

    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        let sql = pg_sql(sql);
        let r = pg_query(&sql, args).execute(self.start()?).await;
        self.running = false;
        Ok(r?.rows_affected())
    }

    /// Runs a statement built with its values already bound (SQL with `$n` placeholders).
    pub async fn run(
        &mut self,
        q: sqlx::query::Query<'_, Postgres, PgArguments>,
    ) -> Result<u64, StoreError> {
        let r = q.execute(self.start()?).await;
        self.running = false;
        Ok(r?.rows_affected())
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        let r = Manager::commit(self.start()?).await;
        self.running = false;
        self.open = false;
        Ok(r?)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.running {
            // Closed, not returned: the server ends what it was running (see the module).
            drop(conn.detach());
        } else if self.open {
            // Sent before the connection serves anyone else (sqlx flushes it on release).
            Manager::start_rollback(&mut conn);
        }
    }
}

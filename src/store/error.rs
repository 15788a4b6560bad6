//! The store's own small error, converted from sqlx in one place.

use sqlx::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated (a concurrent create of the same id, for instance).
    #[error("unique constraint violated")]
    Conflict,
    /// A foreign key points at no row.
    #[error("foreign key constraint violated")]
    ForeignKey,
    /// A CHECK or NOT NULL constraint rejected a value.
    #[error("check constraint violated: {0}")]
    Check(String),
    /// The database gave up the transaction for another's sake (a deadlock or a serialization
    /// failure); the whole transaction may be retried.
    #[error("transaction aborted by a concurrent one")]
    Aborted,
    /// A value read back could not be decoded.
    #[error("cannot decode row: {0}")]
    Decode(String),
    /// The configuration is unusable (bad URL).
    #[error("configuration: {0}")]
    Config(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Other(sqlx::Error),
    /// An error of SQLite's write connection (see the lite module) that is none of the above.
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    /// The transaction's BEGIN failed (another process held the write lock too long, say): its
    /// reads, writes and commit fail with this.
    #[error("the transaction could not begin: {0}")]
    NotBegun(String),
    /// A write of this transaction failed and was answered before (SQLite's write connection):
    /// everything after it in the transaction fails too, its commit included, as on
    /// PostgreSQL.
    #[error("an earlier statement of this transaction failed: {0}")]
    Failed(String),
    /// The write connection has been closed.
    #[error("the database connection is closed")]
    Closed,
    /// The database ended a statement that ran past the statement timeout (or whose request
    /// was cancelled).
    #[error("the statement ran out of time")]
    TimedOut,
    /// The database cannot be reached or is shutting down or starting.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => return StoreError::Unavailable(e.to_string()),
            _ => {}
        }
        if let sqlx::Error::Database(db) = &e {
            match db.code().as_deref() {
                // PostgreSQL's query_canceled; SQLite's SQLITE_INTERRUPT.
                Some("57014" | "9") => return StoreError::TimedOut,
                // PostgreSQL's disk_full and out_of_memory; SQLite's SQLITE_FULL.
                Some("53100" | "53200" | "13") => {
                    return StoreError::Unavailable(db.message().to_owned())
                }
                // Connection exceptions; the server shutting down, crashed or starting.
                Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                    return StoreError::Unavailable(db.message().to_owned())
                }
                _ => {}
            }
            match db.kind() {
                ErrorKind::UniqueViolation => return StoreError::Conflict,
                ErrorKind::ForeignKeyViolation => return StoreError::ForeignKey,
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    return StoreError::Check(db.message().to_owned())
                }
                _ => {}
            }
            // 40001 serialization_failure, 40P01 deadlock_detected (PostgreSQL).
            if matches!(db.code().as_deref(), Some("40001" | "40P01")) {
                return StoreError::Aborted;
            }
        }
        StoreError::Other(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            if f.code == ffi::ErrorCode::OperationInterrupted {
                return StoreError::TimedOut;
            }
            if f.code == ffi::ErrorCode::DiskFull {
                return StoreError::Unavailable("the database's disk is full".into());
            }
            match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    return StoreError::Conflict
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::ForeignKey,
                ffi::SQLITE_CONSTRAINT_CHECK | ffi::SQLITE_CONSTRAINT_NOTNULL => {
                    return StoreError::Check(msg.clone().unwrap_or_default())
                }
                _ => {}
            }
        }
        StoreError::Sqlite(e)
    }
}

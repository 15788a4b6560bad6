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
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
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

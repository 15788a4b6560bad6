//! A result row of either engine, decoded to the types the mapping layer uses.

use super::{LiteRow, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::Value as SqlValue;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row as _;
use uuid::Uuid;

pub enum Row {
    /// A SQLite row, read by a read connection or by the write connection.
    Lite(LiteRow),
    Postgres(PgRow),
}

fn bad(col: &str, what: &str) -> StoreError {
    StoreError::Decode(format!("column {col}: {what}"))
}

impl Row {
    pub fn uuid(&self, col: &str) -> Result<Uuid, StoreError> {
        self.opt_uuid(col)?
            .ok_or_else(|| bad(col, "unexpected NULL"))
    }

    pub fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError> {
        match self {
            Row::Lite(_) => match self.text(col)? {
                Some(s) => Uuid::parse_str(&s)
                    .map(Some)
                    .map_err(|_| bad(col, "not a UUID")),
                None => Ok(None),
            },
            Row::Postgres(r) => Ok(r.try_get::<Option<Uuid>, _>(col)?),
        }
    }

    pub fn text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(match self {
            Row::Lite(r) => match r.get(col)? {
                SqlValue::Null => None,
                SqlValue::Text(s) => Some(s.clone()),
                SqlValue::Integer(i) => Some(i.to_string()),
                SqlValue::Real(f) => Some(f.to_string()),
                SqlValue::Blob(_) => return Err(bad(col, "binary, not text")),
            },
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn string(&self, col: &str) -> Result<String, StoreError> {
        self.text(col)?.ok_or_else(|| bad(col, "unexpected NULL"))
    }

    /// An `integer` column (int4 on PostgreSQL).
    pub fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(match self {
            Row::Lite(_) => self
                .opt_int(col)?
                .ok_or_else(|| bad(col, "unexpected NULL"))?,
            Row::Postgres(r) => i64::from(r.try_get::<i32, _>(col)?),
        })
    }

    /// A `bigint` column or an aggregate such as `count(*)`.
    pub fn bigint(&self, col: &str) -> Result<i64, StoreError> {
        Ok(match self {
            Row::Lite(_) => self
                .opt_int(col)?
                .ok_or_else(|| bad(col, "unexpected NULL"))?,
            Row::Postgres(r) => r.try_get::<i64, _>(col)?,
        })
    }

    /// An integer column of either width, NULL allowed.
    pub fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(match self {
            Row::Lite(r) => match r.get(col)? {
                SqlValue::Null => None,
                SqlValue::Integer(i) => Some(*i),
                _ => return Err(bad(col, "not an integer")),
            },
            Row::Postgres(r) => match r.try_get::<Option<i32>, _>(col) {
                Ok(v) => v.map(i64::from),
                Err(_) => r.try_get::<Option<i64>, _>(col)?,
            },
        })
    }

    /// A numeric column as its exact text.
    pub fn decimal(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(match self {
            Row::Lite(_) => self.text(col)?,
            Row::Postgres(r) => r
                .try_get::<Option<rust_decimal::Decimal>, _>(col)?
                .map(|d| d.to_string()),
        })
    }

    /// A binary column.
    pub fn bytes(&self, col: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match self {
            Row::Lite(r) => match r.get(col)? {
                SqlValue::Null => None,
                SqlValue::Blob(b) => Some(b.clone()),
                SqlValue::Text(s) => Some(s.as_bytes().to_vec()),
                _ => return Err(bad(col, "not binary")),
            },
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn bool(&self, col: &str) -> Result<Option<bool>, StoreError> {
        Ok(match self {
            Row::Lite(_) => self.opt_int(col)?.map(|i| i != 0),
            Row::Postgres(r) => r.try_get(col)?,
        })
    }

    pub fn json(&self, col: &str) -> Result<Option<Value>, StoreError> {
        match self {
            Row::Lite(_) => match self.text(col)? {
                Some(s) => serde_json::from_str(&s)
                    .map(Some)
                    .map_err(|_| bad(col, "not JSON")),
                None => Ok(None),
            },
            Row::Postgres(r) => Ok(r
                .try_get::<Option<sqlx::types::Json<Value>>, _>(col)?
                .map(|j| j.0)),
        }
    }

    /// A text column holding JSON (on both engines).
    pub fn json_text(&self, col: &str) -> Result<Option<Value>, StoreError> {
        match self.text(col)? {
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|_| bad(col, "not JSON")),
            None => Ok(None),
        }
    }

    pub fn timestamp(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_timestamp(col)?
            .ok_or_else(|| bad(col, "unexpected NULL"))
    }

    pub fn opt_timestamp(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Row::Lite(_) => match self.text(col)? {
                Some(s) => parse_sqlite_timestamp(&s)
                    .map(Some)
                    .ok_or_else(|| bad(col, "not a timestamp")),
                None => Ok(None),
            },
            Row::Postgres(r) => Ok(r.try_get(col)?),
        }
    }

    pub fn date(&self, col: &str) -> Result<Option<NaiveDate>, StoreError> {
        match self {
            Row::Lite(_) => match self.text(col)? {
                Some(s) => NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| bad(col, "not a date")),
                None => Ok(None),
            },
            Row::Postgres(r) => Ok(r.try_get(col)?),
        }
    }
}

/// Reads the timestamps SQLite holds: RFC 3339 text as the triggers write it, or the
/// `YYYY-MM-DD HH:MM:SS` form a clinic application may write with CURRENT_TIMESTAMP.
fn parse_sqlite_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::parse_sqlite_timestamp;

    #[test]
    fn sqlite_timestamps_in_both_written_forms_are_read() {
        let a = parse_sqlite_timestamp("2026-11-26T22:45:37.357Z").unwrap();
        let b = parse_sqlite_timestamp("2026-11-26 22:45:37.357").unwrap();
        assert_eq!(a, b);
        assert!(parse_sqlite_timestamp("yesterday").is_none());
    }
}

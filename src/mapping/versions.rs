//! Where a resource's rows and versions are, by what the interactions ask of them: the row
//! behind a logical id (its head), the current version and the versions served
//! (`resource_versions`), recording a version, and locking a row for the rest of a transaction.

use super::search::{Cond, Rendered};
use super::ResourceMapping;
use crate::store::{Arg, Conn, Db, Dialect, Row, StoreError, Tx};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// The row behind a logical id.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub row_id: Uuid,
    pub version_id: i64,
    pub deleted: bool,
}

impl Head {
    fn of(r: &Row) -> Result<Head, StoreError> {
        Ok(Head {
            row_id: r.uuid("id")?,
            version_id: r.int("version_id")?,
            deleted: r.opt_timestamp("deleted_at")?.is_some(),
        })
    }
}

/// `t` is a row of `m`'s type (deleted or not).
fn of_type(m: &dyn ResourceMapping) -> String {
    m.row_filter()
        .map(|f| format!(" AND {f}"))
        .unwrap_or_default()
}

/// The head of resource `id` of `m`, deleted or not.
pub async fn head(
    conn: &mut Conn<'_>,
    m: &dyn ResourceMapping,
    id: &str,
) -> Result<Option<Head>, StoreError> {
    let sql = format!(
        "SELECT t.id, t.version_id, t.deleted_at FROM {} t WHERE t.fhir_id = ?{}",
        m.table(),
        of_type(m)
    );
    conn.fetch_optional(&sql, &[id.into()])
        .await?
        .as_ref()
        .map(Head::of)
        .transpose()
}

/// The heads of many resources of `m` at once, by logical id (those without a row are absent).
pub async fn heads(
    tx: &mut Tx,
    m: &dyn ResourceMapping,
    ids: &[&str],
) -> Result<HashMap<String, Head>, StoreError> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT t.id, t.fhir_id, t.version_id, t.deleted_at FROM {} t WHERE t.fhir_id IN ({}){}",
            m.table(),
            crate::store::placeholders(chunk.len()),
            of_type(m)
        );
        let args: Vec<Arg> = chunk.iter().map(|i| Arg::from(*i)).collect();
        for r in tx.fetch_all(&sql, &args).await? {
            found.insert(r.string("fhir_id")?, Head::of(&r)?);
        }
    }
    Ok(found)
}

/// The row of a resource and, when `resource_versions` holds its current version (every FHIR
/// write records it), that version as served.
pub struct Current {
    pub row_id: Uuid,
    pub version_id: i64,
    pub deleted: bool,
    /// The time and text of the stored current version.
    pub stored: Option<(DateTime<Utc>, String)>,
}

/// The current row of resource `id` of `m`, with its stored rendering when there is one.
pub async fn current(
    conn: &mut Conn<'_>,
    m: &dyn ResourceMapping,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    let sql = format!(
        "SELECT t.id, t.version_id, t.deleted_at, rv.last_updated, CAST(rv.resource AS TEXT) AS resource_text \
         FROM {} t LEFT JOIN resource_versions rv \
         ON rv.resource_type = ? AND rv.fhir_id = t.fhir_id AND rv.version_id = t.version_id \
         WHERE t.fhir_id = ?{}",
        m.table(),
        of_type(m)
    );
    let Some(row) = conn
        .fetch_optional(&sql, &[m.resource_type().into(), id.into()])
        .await?
    else {
        return Ok(None);
    };
    let stored = match (
        row.opt_timestamp("last_updated")?,
        row.text("resource_text")?,
    ) {
        (Some(at), Some(text)) => Some((at, text)),
        _ => None,
    };
    Ok(Some(Current {
        row_id: row.uuid("id")?,
        version_id: row.int("version_id")?,
        deleted: row.opt_timestamp("deleted_at")?.is_some(),
        stored,
    }))
}

/// A version as it was served: how it was written, when, and the resource (none for a
/// deletion).
pub struct Stored {
    pub method: String,
    pub last_updated: DateTime<Utc>,
    pub resource: Option<String>,
}

/// Version `version_id` of `resource_type`/`id`, if it was recorded.
pub async fn stored(
    conn: &mut Conn<'_>,
    resource_type: &str,
    id: &str,
    version_id: i64,
) -> Result<Option<Stored>, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT method, last_updated, CAST(resource AS TEXT) AS resource_text FROM resource_versions \
             WHERE resource_type = ? AND fhir_id = ? AND version_id = ?",
            &[resource_type.into(), id.into(), version_id.into()],
        )
        .await?;
    row.map(|r| {
        Ok(Stored {
            method: r.string("method")?,
            last_updated: r.timestamp("last_updated")?,
            resource: r.text("resource_text")?,
        })
    })
    .transpose()
}

/// The columns of a row of resource_versions.
const VERSION_ROW: [&str; 8] = [
    "id",
    "resource_type",
    "row_id",
    "fhir_id",
    "version_id",
    "method",
    "last_updated",
    "resource",
];

/// A version to record: which resource and row, written how, and what was served (none for a
/// deletion).
pub struct NewVersion<'a> {
    pub resource_type: &'a str,
    pub row_id: Uuid,
    pub fhir_id: &'a str,
    pub version_id: i64,
    pub method: &'static str,
    pub last_updated: DateTime<Utc>,
    pub resource: Option<String>,
}

/// Records a version in the transaction (it is written with the rows it records). The table
/// has no foreign keys and no triggers: its row joins the open insert of versions wherever it
/// is in the queue (see [`Tx::insert_detached`]), so that the rows of a run of writes go
/// together instead of one between each two rows of the resources' own tables.
pub async fn record(tx: &mut Tx, v: NewVersion<'_>) -> Result<(), StoreError> {
    tx.insert_detached(
        "resource_versions",
        &VERSION_ROW,
        &[
            Uuid::new_v4().into(),
            v.resource_type.into(),
            v.row_id.into(),
            v.fhir_id.into(),
            v.version_id.into(),
            v.method.into(),
            v.last_updated.into(),
            Arg::Text(v.resource),
        ],
    )
    .await
}

/// Locks the row of resource `id` of `m` until the transaction ends: a concurrent write
/// of it waits. (SQLite has one writer: its transactions take turns anyway.)
pub async fn lock(tx: &mut Tx, m: &dyn ResourceMapping, id: &str) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let sql = format!(
        "SELECT 1 FROM {} t WHERE t.fhir_id = ?{} FOR UPDATE",
        m.table(),
        of_type(m)
    );
    tx.execute(&sql, &[id.into()]).await?;
    Ok(())
}

/// Which versions a history reads: of one type (of one resource, when `id` is given), from an
/// instant on, of the rows `visible` lets through, before a place in the history (newest
/// first), at most `limit`.
pub struct HistoryPlan<'a> {
    pub m: &'a dyn ResourceMapping,
    pub id: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    /// A condition on the rows of `m` (alias `t`), deleted ones included.
    pub visible: Option<Cond>,
    /// Versions strictly older than this (time, write sequence number).
    pub before: Option<(DateTime<Utc>, i64)>,
    pub limit: i64,
}

/// A version in a history: its place (time and write sequence number), id, version, how it was
/// written and what was served (none for a deletion).
pub struct HistoryRow {
    pub seq: i64,
    pub fhir_id: String,
    pub version_id: i64,
    pub method: String,
    pub last_updated: DateTime<Utc>,
    pub resource: Option<String>,
}

impl HistoryPlan<'_> {
    /// `{with}` and the condition of the versions (without the place), with their values.
    fn condition(&self, dialect: Dialect) -> (String, String, Vec<Arg>) {
        let mut sql = String::from("resource_type = ?");
        let mut args: Vec<Arg> = vec![self.m.resource_type().into()];
        if let Some(id) = self.id {
            sql.push_str(" AND fhir_id = ?");
            args.push(id.into());
        }
        if let Some(s) = self.since {
            sql.push_str(" AND last_updated >= ?");
            args.push(s.into());
        }
        let mut with = String::new();
        if let Some(c) = &self.visible {
            let rows =
                Cond::in_select("row_id", "t.id", format!("{} t", self.m.table()), c.clone());
            let r = Rendered::of(&rows, dialect);
            sql.push_str(&format!(" AND {}", r.sql));
            args.extend(r.args);
            with = r.with;
            args.splice(0..0, r.with_args);
        }
        (with, sql, args)
    }

    /// How many versions there are (the place and the limit aside).
    pub async fn count(&self, db: &Db) -> Result<i64, StoreError> {
        let (with, sql, args) = self.condition(db.dialect());
        let r = db
            .fetch_optional(
                &format!("{with}SELECT count(*) AS n FROM resource_versions WHERE {sql}"),
                &args,
            )
            .await?;
        Ok(r.map(|r| r.bigint("n")).transpose()?.unwrap_or(0))
    }

    /// The versions, newest first (those of one instant in the reverse of the order they were
    /// written).
    pub async fn rows(&self, db: &Db) -> Result<Vec<HistoryRow>, StoreError> {
        let (with, mut sql, mut args) = self.condition(db.dialect());
        let seq = match db.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        };
        if let Some((t, n)) = self.before {
            sql.push_str(&format!(
                " AND (last_updated < ? OR (last_updated = ? AND {seq} < ?))"
            ));
            args.extend([t.into(), t.into(), n.into()]);
        }
        args.push(self.limit.into());
        let sql = format!(
            "{with}SELECT {seq} AS seq, fhir_id, version_id, method, last_updated, CAST(resource AS TEXT) AS resource_text \
             FROM resource_versions WHERE {sql} ORDER BY last_updated DESC, {seq} DESC LIMIT ?"
        );
        db.fetch_all(&sql, &args)
            .await?
            .iter()
            .map(|r| {
                Ok(HistoryRow {
                    seq: r.bigint("seq")?,
                    fhir_id: r.string("fhir_id")?,
                    version_id: r.int("version_id")?,
                    method: r.string("method")?,
                    last_updated: r.timestamp("last_updated")?,
                    resource: r.text("resource_text")?,
                })
            })
            .collect()
    }
}

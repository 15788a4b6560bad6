//! Appending to the chain. The head row (`audit_chain`) is updated first thing, which locks it
//! until the transaction ends (PostgreSQL; SQLite has one writer anyway): appenders take turns,
//! in every process, so each takes the next sequence numbers and the hash of the row before.
//! A transaction that rolls back gives its numbers back with its rows: the sequence has no gaps.

use super::{hash, Event};
use crate::store::{Arg, Dialect, StoreError, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

const COLUMNS: &[&str] = &[
    "id",
    "seq",
    "recorded_at",
    "category",
    "action",
    "outcome",
    "agent",
    "client_id",
    "resource_type",
    "resource_id",
    "patient",
    "resource_version",
    "source_ip",
    "request_id",
    "event",
    "prev_hash",
    "hash",
];

/// The head of the chain: the last sequence number and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub start: i64,
    pub seq: i64,
    pub hash: String,
}

/// Appends `events` to the chain, in `tx`: they commit or roll back with it. Call it last, just
/// before committing, so the head is held for as short a time as can be.
pub async fn append(tx: &mut Tx, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len() as i64;
    let row = tx
        .fetch_optional(
            "UPDATE audit_chain SET seq = seq + ? WHERE id = 1 RETURNING seq, hash",
            &[n.into()],
        )
        .await?
        .ok_or_else(|| StoreError::Decode("the audit chain has no head".into()))?;
    let last = row.bigint("seq")?;
    let mut prev = row.string("hash")?;
    let first = last - n + 1;
    // All rows of one table, then the other's: consecutive rows of a table go in one statement.
    for (i, e) in events.iter().enumerate() {
        let seq = first + i as i64;
        let text = e.text();
        let h = hash(seq, &prev, &text);
        tx.insert_vec("audit_logs", COLUMNS, values(seq, e, text, &prev, &h))
            .await?;
        prev = h;
    }
    for (i, e) in events.iter().enumerate() {
        if the_patient(e).is_some() {
            continue;
        }
        for p in &e.patients {
            let seq = first + i as i64;
            tx.insert(
                "audit_log_patients",
                &["seq", "patient"],
                &[seq.into(), p.as_str().into()],
            )
            .await?;
        }
    }
    for (i, e) in events.iter().enumerate() {
        for (t, id) in e.entities.iter().filter_map(|x| entity_key(x)) {
            let seq = first + i as i64;
            tx.insert(
                "audit_log_entities",
                &["seq", "resource_type", "resource_id"],
                &[seq.into(), t.into(), id.into()],
            )
            .await?;
        }
    }
    tx.queue(
        "UPDATE audit_chain SET hash = ? WHERE id = 1",
        &[prev.into()],
    )
    .await
}

/// The patient of an event about exactly one, kept in the event's row (`patient`); an event
/// about several lists them in audit_log_patients.
pub fn the_patient(e: &Event) -> Option<&str> {
    match e.patients.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// The type and id of an entity named `Type/id/_history/n`.
pub fn entity_key(entity: &str) -> Option<(&str, &str)> {
    let mut parts = entity.split('/');
    Some((parts.next()?, parts.next()?))
}

fn values(seq: i64, e: &Event, text: String, prev: &str, h: &str) -> Vec<Arg> {
    let time = DateTime::parse_from_rfc3339(&e.time)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    vec![
        // Time-ordered: each row's key lands at the end of the index, as its sequence number
        // does (a random one costs an insert in the middle, more than the rest of the row).
        e.id.unwrap_or_else(Uuid::now_v7).into(),
        seq.into(),
        time.into(),
        e.category.as_str().into(),
        e.action.as_str().into(),
        e.outcome.as_str().into(),
        e.agent.clone().into(),
        e.client.clone().into(),
        e.resource_type.clone().into(),
        e.resource_id.clone().into(),
        the_patient(e).map(str::to_owned).into(),
        Arg::Int(e.version),
        e.source.clone().into(),
        e.request_id.clone().into(),
        text.into(),
        prev.into(),
        h.into(),
    ]
}

/// The head of the chain as committed.
pub async fn head(db: &crate::store::Db) -> Result<Head, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT start_seq, seq, hash FROM audit_chain WHERE id = 1",
            &[],
        )
        .await?
        .ok_or_else(|| StoreError::Decode("the audit chain has no head".into()))?;
    Ok(Head {
        start: row.bigint("start_seq")?,
        seq: row.bigint("seq")?,
        hash: row.string("hash")?,
    })
}

/// The most inbox rows chained in one transaction.
const INBOX_BATCH: i64 = 500;

/// Chains the events waiting in the inbox (direct changes, the clinic application's own audit
/// rows), in `tx`, with `more` (read events) after them. Returns how many inbox rows it took.
pub async fn seal_inbox(tx: &mut Tx, more: &[Event]) -> Result<usize, StoreError> {
    // The head first: another process sealing at the same time waits here, and then finds the
    // rows this one took gone.
    tx.fetch_optional(
        "UPDATE audit_chain SET seq = seq WHERE id = 1 RETURNING seq",
        &[],
    )
    .await?;
    let rows = tx
        .fetch_all(
            "SELECT id, event FROM audit_inbox ORDER BY id LIMIT ?",
            &[INBOX_BATCH.into()],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len() + more.len());
    let mut last = None;
    for r in &rows {
        last = Some(r.bigint("id")?);
        let v: Value = serde_json::from_str(&r.string("event")?).unwrap_or_default();
        events.push(from_inbox(&v));
    }
    let outside = outside_rows(tx, &mut events).await?;
    name_patients(tx, &mut events).await?;
    events.extend_from_slice(more);
    if let Some(last) = last {
        tx.queue("DELETE FROM audit_inbox WHERE id <= ?", &[last.into()])
            .await?;
    }
    append(tx, &events).await?;
    Ok(rows.len() + outside)
}

/// The rows of audit_logs that the clinic application wrote itself, on SQLite (on PostgreSQL a
/// trigger sends them to the inbox), as events; how many. They stay as they were written, outside
/// the chain, and a copy of each joins it.
async fn outside_rows(tx: &mut Tx, events: &mut Vec<Event>) -> Result<usize, StoreError> {
    if tx.dialect() != Dialect::Sqlite {
        return Ok(0);
    }
    let rows = tx
        .fetch_all(
            "SELECT rowid AS r, action, resource_type, resource_id, patient_id, user_id, client_id, \
             outcome, source_ip, recorded_at, details FROM audit_logs WHERE seq IS NULL AND \
             rowid > (SELECT outside_rowid FROM audit_chain WHERE id = 1) ORDER BY rowid LIMIT ?",
            &[INBOX_BATCH.into()],
        )
        .await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    let last = last.bigint("r")?;
    for r in &rows {
        let t = |c: &str| r.text(c).ok().flatten();
        let details = t("details").and_then(|d| serde_json::from_str::<Value>(&d).ok());
        let v = serde_json::json!({
            "kind": "clinic", "action": t("action"), "table": t("resource_type"),
            "row": t("resource_id"), "patient": t("patient_id"), "user": t("user_id"),
            "client": t("client_id"), "outcome": t("outcome"), "source": t("source_ip"),
            "time": t("recorded_at"), "details": details,
        });
        events.push(from_inbox(&v));
    }
    tx.queue(
        "UPDATE audit_chain SET outside_rowid = ? WHERE id = 1",
        &[last.into()],
    )
    .await?;
    Ok(rows.len())
}

/// Whether events made outside the server wait to be chained (looked at without taking the
/// chain's head).
pub async fn waiting(db: &crate::store::Db) -> Result<bool, StoreError> {
    if db
        .fetch_optional("SELECT id FROM audit_inbox LIMIT 1", &[])
        .await?
        .is_some()
    {
        return Ok(true);
    }
    if db.dialect() != Dialect::Sqlite {
        return Ok(false);
    }
    Ok(db
        .fetch_optional(
            "SELECT rowid AS r FROM audit_logs WHERE seq IS NULL AND \
             rowid > (SELECT outside_rowid FROM audit_chain WHERE id = 1) LIMIT 1",
            &[],
        )
        .await?
        .is_some())
}

/// The event of an inbox row.
fn from_inbox(v: &Value) -> Event {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let clinic = v["kind"] == "clinic";
    Event {
        time: s("time").unwrap_or_else(|| super::stamp(Utc::now())),
        category: if clinic { "clinic" } else { "change" }.into(),
        action: s("action").unwrap_or_else(|| "unknown".into()),
        outcome: s("outcome")
            .filter(|o| {
                [
                    "success",
                    "minor-failure",
                    "serious-failure",
                    "major-failure",
                ]
                .contains(&o.as_str())
            })
            .unwrap_or_else(|| "success".into()),
        agent: s("user"),
        client: s("client"),
        // A patient's row id for now: named by its logical id in `name_patients`.
        patients: s("patient").into_iter().collect(),
        resource_type: s("table"),
        resource_id: s("row"),
        source: s("source"),
        by: s("by"),
        changes: v
            .get("changes")
            .or_else(|| v.get("details"))
            .filter(|c| !c.is_null())
            .cloned(),
        ..Event::default()
    }
}

/// Replaces the patients' row ids of inbox events by their logical ids (kept as they are for a
/// patient no longer there).
async fn name_patients(tx: &mut Tx, events: &mut [Event]) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = events
        .iter()
        .flat_map(|e| e.patients.iter())
        .filter_map(|p| Uuid::parse_str(p).ok())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (cond, args) = crate::store::one_of(tx.dialect(), "id", &ids);
    let sql = format!("SELECT id, fhir_id FROM patients WHERE {cond}");
    let mut names = HashMap::new();
    for r in tx.fetch_all(&sql, &args).await? {
        names.insert(r.uuid("id")?.to_string(), r.string("fhir_id")?);
    }
    for e in events.iter_mut() {
        for p in e.patients.iter_mut() {
            if let Some(n) = names.get(p.as_str()) {
                *p = n.clone();
            }
        }
    }
    Ok(())
}

/// The statements that mark the server's own SQLite transactions, so the change triggers leave
/// them to the server's audit (PostgreSQL connections say so in a setting of their own).
pub fn transaction_marks(dialect: Dialect) -> Option<(&'static str, &'static str)> {
    (dialect == Dialect::Sqlite).then_some((
        "UPDATE audit_chain SET writer = 1 WHERE id = 1",
        "UPDATE audit_chain SET writer = 0 WHERE id = 1",
    ))
}

//! Walking the chain: every row from the start (or from a checkpoint kept elsewhere) must take
//! the next sequence number, name the hash of the row before, hash to its own hash, and have
//! columns that say what its event says; the last must be the head.

use super::chain::{self, Head};
use super::{hash, stamp, Event, GENESIS};
use crate::store::{Arg, Db, Row, StoreError};
use serde::{Deserialize, Serialize};

/// How many rows are read at a time.
const PAGE: i64 = 5000;

/// A point of the chain, to keep elsewhere: `audit verify --since` proves the chain still
/// passes through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// How many rows the chain held (from its start).
    pub count: i64,
    pub time: String,
}

/// The head of the chain now, as a checkpoint.
pub async fn checkpoint(db: &Db) -> Result<Checkpoint, StoreError> {
    let head = chain::head(db).await?;
    Ok(Checkpoint {
        seq: head.seq,
        hash: head.hash,
        count: head.seq - head.start,
        time: stamp(chrono::Utc::now()),
    })
}

/// What a walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The rows checked.
    pub checked: i64,
    /// The head the walk went to.
    pub head: Head,
    /// The first row found wrong or missing, and why.
    pub broken: Option<(i64, String)>,
    /// Changes made outside the server that it has not chained yet.
    pub waiting: i64,
}

/// Walks the chain up to its head, from the start or from `since`.
pub async fn verify(db: &Db, since: Option<&Checkpoint>) -> Result<Report, StoreError> {
    let head = chain::head(db).await?;
    let waiting = db
        .fetch_optional("SELECT count(*) AS n FROM audit_inbox", &[])
        .await?
        .map(|r| r.bigint("n"))
        .transpose()?
        .unwrap_or(0);
    let mut report = Report {
        checked: 0,
        head: head.clone(),
        broken: None,
        waiting,
    };
    let (mut next, mut prev) = match since {
        None => (head.start + 1, GENESIS.to_owned()),
        Some(c) => match at(db, &head, c).await? {
            Ok(()) => (c.seq + 1, c.hash.clone()),
            Err(why) => {
                report.broken = Some((c.seq, why));
                return Ok(report);
            }
        },
    };
    while next <= head.seq {
        let rows = db
            .fetch_all(
                "SELECT seq, recorded_at, category, action, outcome, agent, client_id, \
                 resource_type, resource_id, resource_version, source_ip, request_id, event, \
                 patient, prev_hash, hash FROM audit_logs WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                &[next.into(), head.seq.into(), PAGE.into()],
            )
            .await?;
        let to = head.seq.min(next + PAGE);
        let patients = side_rows(db, "patient", "audit_log_patients", next, to).await?;
        let entities = side_rows(
            db,
            "resource_type || '/' || resource_id",
            "audit_log_entities",
            next,
            to,
        )
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let seq = r.bigint("seq")?;
            if seq != next {
                report.broken = Some((next, format!("row {next} is missing")));
                return Ok(report);
            }
            if let Err(why) = check(r, seq, &prev, &patients, &entities) {
                report.broken = Some((seq, why));
                return Ok(report);
            }
            prev = r.string("hash")?;
            next += 1;
            report.checked += 1;
        }
    }
    if next <= head.seq {
        report.broken = Some((next, format!("row {next} is missing")));
    } else if prev != head.hash && head.seq > head.start {
        report.broken = Some((
            head.seq,
            "the last row's hash is not the chain's head".into(),
        ));
    }
    Ok(report)
}

/// Whether the chain passes through checkpoint `c`.
async fn at(db: &Db, head: &Head, c: &Checkpoint) -> Result<Result<(), String>, StoreError> {
    if c.seq > head.seq {
        return Ok(Err(format!(
            "the checkpoint names row {}, past the chain's last row {}: rows were removed",
            c.seq, head.seq
        )));
    }
    if c.seq == head.start {
        return Ok((c.hash == GENESIS)
            .then_some(())
            .ok_or_else(|| "the checkpoint's hash is not the chain's start".into()));
    }
    let row = db
        .fetch_optional("SELECT hash FROM audit_logs WHERE seq = ?", &[c.seq.into()])
        .await?;
    Ok(match row {
        None => Err(format!("row {} of the checkpoint is missing", c.seq)),
        Some(r) if r.text("hash")?.as_deref() != Some(&c.hash) => Err(format!(
            "row {}'s hash differs from the checkpoint: the chain was rewritten",
            c.seq
        )),
        Some(_) => Ok(()),
    })
}

type Side = std::collections::HashMap<i64, Vec<String>>;

/// What a side table (the patients, the entities) says of rows `from..=to`, by row.
async fn side_rows(
    db: &Db,
    value: &str,
    table: &str,
    from: i64,
    to: i64,
) -> Result<Side, StoreError> {
    let mut out: Side = Default::default();
    let sql = format!("SELECT seq, {value} AS v FROM {table} WHERE seq >= ? AND seq <= ?");
    for r in db
        .fetch_all(&sql, &[Arg::from(from), Arg::from(to)])
        .await?
    {
        out.entry(r.bigint("seq")?)
            .or_default()
            .push(r.string("v")?);
    }
    Ok(out)
}

/// Whether side table rows say what the event says.
fn agrees(side: &Side, seq: i64, named: Vec<String>) -> bool {
    same(side.get(&seq).cloned().unwrap_or_default(), named)
}

/// Whether two lists hold the same values, in any order.
fn same(mut listed: Vec<String>, mut named: Vec<String>) -> bool {
    listed.sort();
    named.sort();
    listed == named
}

/// Why row `seq` is wrong, if it is.
fn check(r: &Row, seq: i64, prev: &str, patients: &Side, entities: &Side) -> Result<(), String> {
    let text = r.text("event").ok().flatten().unwrap_or_default();
    let stored_prev = r.text("prev_hash").ok().flatten().unwrap_or_default();
    let stored = r.text("hash").ok().flatten().unwrap_or_default();
    if stored_prev != prev {
        return Err(format!(
            "row {seq} does not name the hash of the row before it"
        ));
    }
    if hash(seq, prev, &text) != stored {
        return Err(format!(
            "row {seq}'s event does not hash to its hash: it was changed"
        ));
    }
    let e: Event = serde_json::from_str(&text)
        .map_err(|_| format!("row {seq}'s event is not an audit event"))?;
    let column_is = |col: &str, v: &Option<String>| r.text(col).ok().flatten() == *v;
    let time = r.timestamp("recorded_at").map(stamp).ok();
    let columns_agree = column_is("category", &Some(e.category.clone()))
        && column_is("action", &Some(e.action.clone()))
        && column_is("outcome", &Some(e.outcome.clone()))
        && column_is("agent", &e.agent)
        && column_is("client_id", &e.client)
        && column_is("resource_type", &e.resource_type)
        && column_is("resource_id", &e.resource_id)
        && column_is("source_ip", &e.source)
        && column_is("request_id", &e.request_id)
        && r.opt_int("resource_version").ok().flatten() == e.version
        && time.as_deref() == Some(e.time.as_str());
    if !columns_agree {
        return Err(format!(
            "row {seq}'s columns differ from its event: they were changed"
        ));
    }
    // The patient of an event about one is in its row (rows before that have none there).
    let mut listed = patients.get(&seq).cloned().unwrap_or_default();
    listed.extend(r.text("patient").ok().flatten());
    if !same(listed, e.patients.clone()) {
        return Err(format!(
            "row {seq}'s patients differ from its event: they were changed"
        ));
    }
    let named = e
        .entities
        .iter()
        .filter_map(|x| super::chain::entity_key(x))
        .map(|(t, id)| format!("{t}/{id}"))
        .collect();
    if !agrees(entities, seq, named) {
        return Err(format!(
            "row {seq}'s entities differ from its event: they were changed"
        ));
    }
    Ok(())
}

//! history: every version written through FHIR, newest first, with deletions shown.

use super::{Caller, Fhir};
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, HistoryEntry, Link};
use crate::fhir::{date, instant, Id, Issue, IssueType};
use crate::interactions::search::{DEFAULT_COUNT, MAX_COUNT};
use crate::mapping::search::{Cond, Ctx, Rendered};
use crate::store::Arg;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// `_count`, `_since` and the paging cursor of a history request.
#[derive(Debug, Default)]
pub struct HistoryQuery {
    count: Option<i64>,
    since: Option<DateTime<Utc>>,
    /// Continue after this (last_updated, write sequence number).
    cursor: Option<(DateTime<Utc>, i64)>,
}

fn bad(msg: &str) -> Error {
    Error::BadRequest(vec![Issue::error(IssueType::Invalid, msg)])
}

impl HistoryQuery {
    pub fn parse(params: &[(String, String)]) -> Result<HistoryQuery> {
        let mut q = HistoryQuery::default();
        for (k, v) in params {
            match k.as_str() {
                "_count" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| bad("_count must be a non-negative integer"))?;
                    if n < 0 {
                        return Err(bad("_count must not be negative"));
                    }
                    q.count = Some(n.min(MAX_COUNT));
                }
                "_since" => {
                    let r = date::parse_range(v).ok_or_else(|| bad("_since must be an instant"))?;
                    q.since = Some(r.start);
                }
                "_cursor" => {
                    let not_ours = || bad("_cursor is not a cursor this server made");
                    let mut parts = v.split('~');
                    let (Some(t), Some(seq), None) = (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(not_ours());
                    };
                    let t = DateTime::parse_from_rfc3339(t).map_err(|_| not_ours())?;
                    let seq: i64 = seq.parse().map_err(|_| not_ours())?;
                    q.cursor = Some((t.with_timezone(&Utc), seq));
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

impl Fhir {
    /// Instance history (`id` given) or type history.
    pub async fn history(
        &self,
        caller: &Caller,
        resource_type: &str,
        id: Option<&Id>,
        q: &HistoryQuery,
    ) -> Result<Value> {
        let m = self.mapping(resource_type)?;
        let rt = m.resource_type();
        let mut where_sql = String::from("resource_type = ?");
        let mut args: Vec<Arg> = vec![rt.into()];
        if let Some(id) = id {
            where_sql.push_str(" AND fhir_id = ?");
            args.push(id.as_str().into());
        }
        if let Some(s) = q.since {
            where_sql.push_str(" AND last_updated >= ?");
            args.push(s.into());
        }
        // Only the versions of rows the caller may see (deleted ones included).
        let ctx = Ctx {
            dialect: self.db.dialect(),
            resource_type: rt,
            registry: &self.registry,
            base_url: &caller.base_url,
            narrow: false,
            restriction: &caller.restriction,
        };
        let mut with = String::new();
        if let Some(c) = caller
            .restriction
            .cond(m.as_ref(), &ctx)
            .map_err(|e| Error::BadRequest(vec![Issue::error(IssueType::Invalid, e.0)]))?
        {
            let rows = Cond::in_select("row_id", "t.id", format!("{} t", m.table()), c);
            let r = Rendered::of(&rows, ctx.dialect);
            where_sql.push_str(&format!(" AND {}", r.sql));
            args.extend(r.args);
            with = r.with;
            args.splice(0..0, r.with_args);
        }
        let total = self
            .db
            .fetch_optional(
                &format!("{with}SELECT count(*) AS n FROM resource_versions WHERE {where_sql}"),
                &args,
            )
            .await?
            .map(|r| r.bigint("n"))
            .transpose()?
            .unwrap_or(0);
        if let Some(id) = id {
            if total == 0 {
                return Err(Error::NotFound(format!("{rt}/{id} is not known")));
            }
        }
        // Versions of the same instant in the order they were written.
        let seq = match self.db.dialect() {
            crate::store::Dialect::Sqlite => "rowid",
            crate::store::Dialect::Postgres => "seq",
        };
        if let Some((t, n)) = q.cursor {
            where_sql.push_str(&format!(
                " AND (last_updated < ? OR (last_updated = ? AND {seq} < ?))"
            ));
            args.extend([t.into(), t.into(), n.into()]);
        }
        let count = q.count.unwrap_or(DEFAULT_COUNT);
        args.push((count + 1).into());
        let rows = self
            .db
            .fetch_all(
                &format!("{with}SELECT {seq} AS seq, fhir_id, version_id, method, last_updated, resource FROM resource_versions WHERE {where_sql} ORDER BY last_updated DESC, {seq} DESC LIMIT ?"),
                &args,
            )
            .await?;
        let more = rows.len() as i64 > count;
        let mut entries = Vec::new();
        let mut last = None;
        for r in rows.iter().take(count as usize) {
            let fhir_id = r.string("fhir_id")?;
            let vid = r.int("version_id")?;
            let method = r.string("method")?;
            let at = r.timestamp("last_updated")?;
            last = Some((at, r.bigint("seq")?));
            let (status, request_url, method) = match method.as_str() {
                "DELETE" => ("204 No Content", format!("{rt}/{fhir_id}"), "DELETE"),
                "POST" => ("201 Created", rt.to_owned(), "POST"),
                _ => ("200 OK", format!("{rt}/{fhir_id}"), "PUT"),
            };
            entries.push(HistoryEntry {
                full_url: format!("{}/{rt}/{fhir_id}", caller.base_url),
                resource: r.json_text("resource")?,
                method: method.to_owned(),
                request_url,
                status,
                etag: format!("W/\"{vid}\""),
                last_modified: instant(&at),
            });
        }
        let path = match id {
            Some(id) => format!("{}/{rt}/{id}/_history", caller.base_url),
            None => format!("{}/{rt}/_history", caller.base_url),
        };
        let link = |cursor: Option<String>| {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            ser.append_pair("_count", &count.to_string());
            if let Some(s) = q.since {
                ser.append_pair("_since", &instant(&s));
            }
            if let Some(c) = cursor {
                ser.append_pair("_cursor", &c);
            }
            format!("{path}?{}", ser.finish())
        };
        let mut links = vec![Link {
            relation: "self",
            url: link(q.cursor.map(|(t, n)| format!("{}~{n}", instant(&t)))),
        }];
        if let (true, Some((t, n))) = (more, last) {
            links.push(Link {
                relation: "next",
                url: link(Some(format!("{}~{n}", instant(&t)))),
            });
        }
        Ok(bundle::history(Some(total), &links, entries))
    }
}

//! history: every version written through FHIR, newest first, with deletions shown.

use super::{Caller, Fhir};
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, HistoryEntry, Link};
use crate::fhir::ResourceType;
use crate::fhir::{date, instant, Id, Issue, IssueType};
use crate::interactions::search::DEFAULT_COUNT;
use crate::mapping::versions::{HistoryPlan, HistoryRow};
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
                    q.count = Some(
                        crate::fhir::search::count(v).map_err(|i| Error::BadRequest(vec![i]))?,
                    )
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

impl HistoryQuery {
    /// The URL of the page from `cursor` on, of `count` entries.
    fn link(&self, path: &str, count: i64, cursor: Option<String>) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.append_pair("_count", &count.to_string());
        if let Some(s) = self.since {
            ser.append_pair("_since", &instant(&s));
        }
        if let Some(c) = cursor {
            ser.append_pair("_cursor", &c);
        }
        format!("{path}?{}", ser.finish())
    }
}

impl Fhir {
    /// One page of `plan`: at most `count` entries, and the cursor of the next page when there
    /// is one. When `hiding`, the versions the caller may not see are skipped, reading on
    /// until the page is full, so that neither its size nor its cursor tells of them.
    async fn history_page(
        &self,
        caller: &Caller,
        rt: &'static str,
        mut plan: HistoryPlan<'_>,
        count: i64,
        hiding: bool,
    ) -> Result<(Vec<HistoryEntry>, Option<(DateTime<Utc>, i64)>)> {
        let mut kept = Vec::new();
        loop {
            let rows = plan.rows(&self.db).await?;
            let exhausted = (rows.len() as i64) <= count;
            for r in rows {
                let at = (r.last_updated, r.seq);
                plan.before = Some(at);
                let e = entry_of(&caller.base_url, rt, r)?;
                let seen = !hiding
                    || e.resource
                        .as_ref()
                        .is_none_or(|v| caller.may_see_version(rt, v));
                if seen {
                    kept.push((e, at));
                }
                if kept.len() as i64 > count {
                    break;
                }
            }
            if kept.len() as i64 > count || exhausted || !hiding {
                break;
            }
        }
        let more = kept.len() as i64 > count;
        kept.truncate(count as usize);
        let next = if more {
            kept.last().map(|(_, at)| *at)
        } else {
            None
        };
        Ok((kept.into_iter().map(|(e, _)| e).collect(), next))
    }
}

/// The history entry of one stored version.
fn entry_of(base_url: &str, rt: &str, r: HistoryRow) -> Result<HistoryEntry> {
    let fhir_id = r.fhir_id;
    let (status, request_url, method) = match r.method.as_str() {
        "DELETE" => ("204 No Content", format!("{rt}/{fhir_id}"), "DELETE"),
        "POST" => ("201 Created", rt.to_owned(), "POST"),
        _ => ("200 OK", format!("{rt}/{fhir_id}"), "PUT"),
    };
    let resource = match r.resource {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("a stored version is not JSON: {e}"))?,
        ),
        None => None,
    };
    Ok(HistoryEntry {
        full_url: format!("{base_url}/{rt}/{fhir_id}"),
        resource,
        method: method.to_owned(),
        request_url,
        status,
        etag: format!("W/\"{}\"", r.version_id),
        last_modified: instant(&r.last_updated),
    })
}

impl Fhir {
    /// Instance history (`id` given) or type history.
    pub async fn history(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: Option<&Id>,
        q: &HistoryQuery,
    ) -> Result<Value> {
        let m = self.mapping(resource_type)?;
        let rt = m.resource_type();
        // An instance's history is read with `r`, a type's with `s`.
        let action = match id {
            Some(_) => crate::auth::scope::Action::Read,
            None => crate::auth::scope::Action::Search,
        };
        caller.may(action, rt)?;
        // Only the versions of rows the caller may see (deleted ones included).
        let mut ctx = self.ctx(caller, rt);
        ctx.restriction = caller.access.restriction(action);
        let visible = ctx
            .restriction
            .cond(m.as_ref(), &ctx)
            .map_err(|e| Error::BadRequest(vec![Issue::error(IssueType::Invalid, e.0)]))?;
        let count = q.count.unwrap_or(DEFAULT_COUNT);
        let plan = HistoryPlan {
            m: m.as_ref(),
            id: id.map(Id::as_str),
            since: q.since,
            visible,
            before: q.cursor,
            limit: count + 1,
        };
        let total = plan.count(&self.db).await?;
        if let Some(id) = id {
            if total == 0 {
                return Err(Error::NotFound(format!("{rt}/{id} is not known")));
            }
        }
        // A patient's token sees only the versions that name its patient, and no total that
        // would count the others.
        let hiding = caller.access.patient().is_some()
            && !caller
                .access
                .unrestricted(crate::auth::scope::Action::Read, rt);
        let total = (!hiding).then_some(total);
        let (entries, last) = self.history_page(caller, rt, plan, count, hiding).await?;
        let more = last.is_some();
        let path = match id {
            Some(id) => format!("{}/{rt}/{id}/_history", caller.base_url),
            None => format!("{}/{rt}/_history", caller.base_url),
        };
        let link = |cursor: Option<String>| q.link(&path, count, cursor);
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
        Ok(bundle::history(total, &links, entries))
    }
}

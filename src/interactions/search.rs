//! search: parameters parsed against the mapping's declarations, SQL conditions on indexed
//! columns, keyset paging (stable while rows are inserted) and an honest total.

use super::{Caller, Fhir};
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, Link, SearchEntry};
use crate::fhir::{Issue, IssueType};
use crate::mapping::search::{condition, Ctx, SearchParam, COMMON};
use crate::store::{Arg, Conn};
use serde_json::Value;
use uuid::Uuid;

/// Default and largest page sizes.
pub const DEFAULT_COUNT: i64 = 20;
pub const MAX_COUNT: i64 = 1000;

/// A search as the HTTP layer received it: decoded name/value pairs, in order.
pub struct SearchRequest {
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=strict`: unknown parameters are an error instead of being ignored.
    pub strict: bool,
}

/// Result parameters that shape the Bundle rather than filter it.
const RESULT_PARAMS: &[&str] = &["_count", "_total", "_cursor", "_format", "_pretty"];

/// A parsed search, ready to run.
pub struct SearchQuery {
    filters: Vec<(&'static SearchParam, Option<String>, Vec<String>)>,
    /// The filter parameters applied, for the self link.
    applied: Vec<(String, String)>,
    count: i64,
    total: bool,
    cursor: Option<Cursor>,
}

#[derive(Clone, Copy)]
enum Cursor {
    After(Uuid),
    Before(Uuid),
}

/// Splits a value on commas not escaped with a backslash, and unescapes `\,` `\|` `\$` `\\`.
fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '$' | '\\')) => out.last_mut().map(|s| s.push(n)).unwrap_or(()),
                Some(n) => {
                    if let Some(s) = out.last_mut() {
                        s.push('\\');
                        s.push(n);
                    }
                }
                None => out.last_mut().map(|s| s.push('\\')).unwrap_or(()),
            },
            ',' => out.push(String::new()),
            c => out.last_mut().map(|s| s.push(c)).unwrap_or(()),
        }
    }
    out
}

fn bad(msg: String) -> Error {
    Error::BadRequest(vec![Issue::error(IssueType::Invalid, msg)])
}

impl SearchQuery {
    /// Parses `req` against the parameters `declared` by a mapping (plus `_id`, `_lastUpdated`).
    pub fn parse(req: &SearchRequest, declared: &'static [SearchParam]) -> Result<SearchQuery> {
        let mut q = SearchQuery {
            filters: vec![],
            applied: vec![],
            count: DEFAULT_COUNT,
            total: true,
            cursor: None,
        };
        let mut ignored = Vec::new();
        for (name, value) in &req.params {
            match name.as_str() {
                "_count" => {
                    let n: i64 = value.parse().map_err(|_| {
                        bad(format!(
                            "_count must be a non-negative integer, not '{}'",
                            value.escape_default()
                        ))
                    })?;
                    if n < 0 {
                        return Err(bad("_count must not be negative".into()));
                    }
                    q.count = n.min(MAX_COUNT);
                    continue;
                }
                "_total" => {
                    q.total = match value.as_str() {
                        "none" => false,
                        "estimate" | "accurate" => true,
                        _ => return Err(bad("_total must be none, estimate or accurate".into())),
                    };
                    continue;
                }
                "_cursor" => {
                    let parse = |s: &str| {
                        Uuid::parse_str(s)
                            .map_err(|_| bad("_cursor is not a cursor this server made".into()))
                    };
                    q.cursor = Some(match value.split_once('.') {
                        Some(("a", id)) => Cursor::After(parse(id)?),
                        Some(("b", id)) => Cursor::Before(parse(id)?),
                        _ => return Err(bad("_cursor is not a cursor this server made".into())),
                    });
                    continue;
                }
                n if RESULT_PARAMS.contains(&n) => continue,
                _ => {}
            }
            let (base, modifier) = match name.split_once(':') {
                Some((b, m)) => (b, Some(m)),
                None => (name.as_str(), None),
            };
            let Some(p) = COMMON
                .iter()
                .chain(declared.iter())
                .find(|p| p.name == base)
            else {
                ignored.push(name.clone());
                continue;
            };
            q.filters
                .push((p, modifier.map(str::to_owned), split_values(value)));
            q.applied.push((name.clone(), value.clone()));
        }
        if req.strict && !ignored.is_empty() {
            let issues = ignored
                .iter()
                .map(|n| {
                    Issue::error(
                        IssueType::NotSupported,
                        format!("search parameter '{}' is not supported", n.escape_default()),
                    )
                })
                .collect();
            return Err(Error::BadRequest(issues));
        }
        Ok(q)
    }
}

impl Fhir {
    /// search: a searchset Bundle of the matching resources, one page at a time.
    pub async fn search(
        &self,
        caller: &Caller,
        resource_type: &str,
        req: &SearchRequest,
    ) -> Result<Value> {
        let m = self.mapping(resource_type)?;
        let q = SearchQuery::parse(req, m.search_params())?;
        let ctx = Ctx {
            dialect: self.db.dialect(),
            resource_type: m.resource_type(),
        };
        let mut where_sql = format!("t.deleted_at IS NULL{}", super::filter_sql(m.as_ref()));
        let mut args: Vec<Arg> = Vec::new();
        for (p, modifier, values) in &q.filters {
            let c = condition(p, modifier.as_deref(), values, &ctx).map_err(|e| bad(e.0))?;
            where_sql.push_str(" AND ");
            where_sql.push_str(&c.text);
            args.extend(c.args);
        }
        let table = m.table();
        let total = if q.total {
            let r = self
                .db
                .fetch_optional(
                    &format!("SELECT count(*) AS n FROM {table} t WHERE {where_sql}"),
                    &args,
                )
                .await?
                .ok_or_else(|| anyhow::anyhow!("count returned no row"))?;
            Some(r.bigint("n")?)
        } else {
            None
        };
        let mut page_sql = format!("SELECT t.id FROM {table} t WHERE {where_sql}");
        let mut page_args = args.clone();
        let descending = matches!(q.cursor, Some(Cursor::Before(_)));
        match q.cursor {
            Some(Cursor::After(id)) => {
                page_sql.push_str(" AND t.id > ?");
                page_args.push(id.into());
            }
            Some(Cursor::Before(id)) => {
                page_sql.push_str(" AND t.id < ?");
                page_args.push(id.into());
            }
            None => {}
        }
        page_sql.push_str(if descending {
            " ORDER BY t.id DESC LIMIT ?"
        } else {
            " ORDER BY t.id LIMIT ?"
        });
        page_args.push((q.count + 1).into());
        let mut ids = Vec::new();
        if q.count > 0 {
            for r in self.db.fetch_all(&page_sql, &page_args).await? {
                ids.push(r.uuid("id")?);
            }
        }
        let more = ids.len() as i64 > q.count;
        ids.truncate(q.count as usize);
        if descending {
            ids.reverse();
        }
        let (has_next, has_prev) = match q.cursor {
            None => (more, false),
            Some(Cursor::After(_)) => (more, true),
            Some(Cursor::Before(_)) => (true, more),
        };
        let mut loaded = m.load(&mut Conn::Pool(&self.db), &ids).await?;
        crate::mapping::custom::apply(&mut Conn::Pool(&self.db), m.resource_type(), &mut loaded)
            .await?;
        let mut entries = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(i) = loaded.iter().position(|(r, _)| r == id) {
                let (_, resource) = loaded.swap_remove(i);
                let fhir_id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                entries.push(SearchEntry {
                    full_url: format!("{}/{resource_type}/{fhir_id}", caller.base_url),
                    resource,
                    mode: "match",
                });
            }
        }
        let link = |cursor: Option<String>| {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &q.applied {
                ser.append_pair(k, v);
            }
            ser.append_pair("_count", &q.count.to_string());
            if let Some(c) = cursor {
                ser.append_pair("_cursor", &c);
            }
            format!("{}/{resource_type}?{}", caller.base_url, ser.finish())
        };
        let self_cursor = q.cursor.map(|c| match c {
            Cursor::After(id) => format!("a.{id}"),
            Cursor::Before(id) => format!("b.{id}"),
        });
        let mut links = vec![Link {
            relation: "self",
            url: link(self_cursor),
        }];
        if let (true, Some(last)) = (has_next, ids.last()) {
            links.push(Link {
                relation: "next",
                url: link(Some(format!("a.{last}"))),
            });
        }
        if let (true, Some(first)) = (has_prev, ids.first()) {
            links.push(Link {
                relation: "previous",
                url: link(Some(format!("b.{first}"))),
            });
        }
        Ok(bundle::searchset(total, &links, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::split_values;

    #[test]
    fn commas_separate_values_unless_escaped() {
        assert_eq!(split_values("a,b"), ["a", "b"]);
        assert_eq!(split_values(r"a\,b,c"), ["a,b", "c"]);
        assert_eq!(split_values(r"sys\|x"), [r"sys\|x"]);
    }
}

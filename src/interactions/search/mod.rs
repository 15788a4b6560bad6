//! search: parameters parsed against the mappings' declarations into a filter tree (chains,
//! `_has`, modifiers), SQL conditions on indexed columns, `_sort` with keyset paging (stable
//! while rows are inserted), `_include`/`_revinclude`, `_summary`/`_elements`, an honest total;
//! on one type, in the Patient compartment and across types.

use super::{Caller, Fhir};
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, EntryResource, Link, SearchEntry};
use crate::fhir::subset::{self, Summary};
use crate::fhir::ResourceType;
use crate::fhir::{Issue, IssueType};
use crate::mapping::filter::{self, find_param, reference_target, Filter};
use crate::mapping::search::plan::{self, Keyset, Plan};
use crate::mapping::search::{sort_key, Cond, Ctx, SearchParam, SortKey, COMMON};
use crate::mapping::{ParamKind, ResourceMapping, Target};
use crate::store::Conn;
use base64::Engine as _;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

mod all;
mod include;
mod query;

pub use crate::fhir::search::DEFAULT_COUNT;
use include::*;
use query::*;
pub use query::{SearchQuery, SearchRequest};

/// The most resources `_include`/`_revinclude` add to one page.
pub const MAX_INCLUDED: usize = 1000;
/// How many rounds `:iterate` follows.
const MAX_ITERATIONS: usize = 4;

pub(super) fn bad(msg: String) -> Error {
    Error::BadRequest(vec![Issue::error(IssueType::Invalid, msg)])
}

/// What a search over one type returned for one page.
struct Page {
    ids: Vec<Uuid>,
    total: Option<i64>,
    next: Option<Cursor>,
    previous: Option<Cursor>,
}

impl Fhir {
    /// search: a searchset Bundle of the matching resources, one page at a time.
    pub async fn search(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        req: &SearchRequest,
    ) -> Result<String> {
        self.search_in(caller, resource_type, None, req).await
    }

    /// search in the Patient compartment: the resources of `resource_type` that belong to
    /// Patient `patient_id` (through their patient/subject references), filtered by `req`.
    pub async fn search_compartment(
        &self,
        caller: &Caller,
        patient_id: &str,
        resource_type: ResourceType,
        req: &SearchRequest,
    ) -> Result<String> {
        if crate::fhir::Id::parse(patient_id).is_none() {
            return Err(bad(format!(
                "'{}' is not a valid resource id",
                patient_id.escape_default()
            )));
        }
        self.search_in(caller, resource_type, Some(patient_id), req)
            .await
    }

    async fn search_in(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        compartment: Option<&str>,
        req: &SearchRequest,
    ) -> Result<String> {
        let m = self.mapping(resource_type)?;
        let rt = m.resource_type();
        caller.may(crate::auth::scope::Action::Search, rt)?;
        let mut q = SearchQuery::parse(req, &self.registry, Some(rt))?;
        let base = match compartment {
            Some(pid) => {
                let link = m
                    .search_params()
                    .iter()
                    .find(|p| reference_target(p) == Some("Patient"))
                    .ok_or_else(|| {
                        Error::NotFound(format!(
                            "{rt} is not in the Patient compartment of this server"
                        ))
                    })?;
                q.filters.push(Filter::Param {
                    param: link,
                    modifier: crate::mapping::search::Modifier::None,
                    values: vec![format!("Patient/{pid}")],
                });
                format!("{}/Patient/{pid}/{rt}", caller.base_url)
            }
            None => format!("{}/{rt}", caller.base_url),
        };
        let ctx = self.ctx(caller, rt);
        let page = self.page(&m, &q, &ctx).await?;
        let mut entries = self.entries(caller, &m, &page.ids, "match").await?;
        let included = self.includes(caller, rt, &page.ids, &q.includes).await?;
        entries.extend(included);
        for e in &mut entries {
            q.shape(e);
        }
        let links = links(&base, &q, &page);
        Ok(bundle::searchset(page.total, &links, entries))
    }

    /// The rows of `m` that the criteria of a conditional interaction (a search query string,
    /// `identifier=sys|val`) match: at most `limit` (row id, logical id), read on `conn` so that a
    /// transaction sees its own writes. Criteria must hold at least one search parameter, and
    /// every parameter must be known (an unknown one would silently match more).
    pub(crate) async fn matches_in(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
        limit: usize,
    ) -> Result<Vec<(Uuid, String)>> {
        let cond = self.criteria_cond(caller, m, criteria)?;
        Ok(Plan::by_id(m.as_ref(), cond, limit as i64)
            .matches(conn)
            .await?)
    }

    /// [`Fhir::matches_in`] of several criteria (each of its type, with its limit), read
    /// together where their SQL allows (see [`crate::mapping::search::many`]).
    pub(crate) async fn matches_each_in(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        each: &[(&Arc<dyn ResourceMapping>, &str, usize)],
    ) -> Result<Vec<Vec<(Uuid, String)>>> {
        let mut plans = Vec::with_capacity(each.len());
        for (m, criteria, limit) in each {
            let cond = self.criteria_cond(caller, m, criteria)?;
            plans.push(Plan::by_id(m.as_ref(), cond, *limit as i64));
        }
        Ok(crate::mapping::search::many::matches_each(&plans, conn).await?)
    }

    /// The condition of conditional criteria: the rows of `m` the caller may see that match.
    fn criteria_cond(
        &self,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
    ) -> Result<Cond> {
        let rt = m.resource_type();
        let params: Vec<(String, String)> = form_urlencoded::parse(criteria.as_bytes())
            .into_owned()
            .collect();
        let req = SearchRequest {
            params,
            strict: true,
        };
        let q = SearchQuery::parse(&req, &self.registry, Some(rt))?;
        if q.filters.is_empty() {
            return Err(bad(format!(
                "the conditional criteria '{}' hold no search parameter of {rt}",
                criteria.escape_default()
            )));
        }
        let ctx = self.ctx(caller, rt);
        self.where_clause(m, &q.filters, &ctx)
    }

    /// The WHERE clause of a search of `m` (alias `t`), with its bound values.
    pub(super) fn where_clause(
        &self,
        m: &Arc<dyn ResourceMapping>,
        filters: &[Filter],
        ctx: &Ctx<'_>,
    ) -> Result<Cond> {
        // A reference or id condition leaves few rows: the others then test rows one by one.
        let narrow = filters.iter().any(|f| {
            matches!(f, Filter::Param { param, modifier, .. }
                if *modifier != crate::mapping::search::Modifier::Missing
                    && matches!(param.target, Target::RefColumn { .. } | Target::FhirId))
        });
        let ctx = &Ctx {
            narrow,
            ..ctx.on(ctx.resource_type)
        };
        let mut cond = filter::visible(m.as_ref(), ctx).map_err(|e| bad(e.0))?;
        for f in filters {
            cond = cond.and(filter::filter_sql(f, ctx).map_err(|e| bad(e.0))?);
        }
        Ok(cond)
    }

    /// One page of matching row ids in `_sort` order (then by row id), after or before the
    /// cursor: a keyset page, so rows inserted meanwhile never shift it.
    async fn page(
        &self,
        m: &Arc<dyn ResourceMapping>,
        q: &SearchQuery,
        ctx: &Ctx<'_>,
    ) -> Result<Page> {
        let cond = self.where_clause(m, &q.filters, ctx)?;
        let keys: Vec<(SortKey, bool)> = q
            .sort
            .iter()
            .map(|s| {
                sort_key(s.param, ctx)
                    .map(|k| (k, s.descending))
                    .ok_or_else(|| bad(format!("_sort: {} has no order", s.param.name)))
            })
            .collect::<Result<_>>()?;
        let plan = Plan {
            m: m.as_ref(),
            cond,
            keys,
            from: q.cursor.clone(),
            limit: q.count + 1,
            // A first page asked for a count counts every match in the same evaluation of the
            // filters (the rows must all be found to be ordered anyway) instead of a second
            // query.
            count_all: q.cursor.is_none() && q.counts(),
        };
        let mut page = if q.summary == Summary::Count || q.count == 0 {
            Page {
                ids: vec![],
                total: None,
                next: None,
                previous: None,
            }
        } else {
            page_of(&self.db, &plan, q).await?
        };
        // A first page that holds every match is its own count.
        let complete = q.summary != Summary::Count && page.next.is_none();
        let known = complete.then(|| q.complete_total(page.ids.len())).flatten();
        page.total = match (known, page.total) {
            (Some(n), _) | (None, Some(n)) => Some(n),
            (None, None) if q.counts() => Some(plan.count(&self.db).await?),
            (None, None) => None,
        };
        Ok(page)
    }

    /// The entries of rows `ids` of `m`, in that order.
    pub(super) async fn entries(
        &self,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        ids: &[Uuid],
        mode: &'static str,
    ) -> Result<Vec<SearchEntry>> {
        Ok(self
            .row_entries(caller, m, ids, mode)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The entries of rows `ids` of `m` with their row ids, in that order; a row deleted since
    /// it was found has none.
    async fn row_entries(
        &self,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        ids: &[Uuid],
        mode: &'static str,
    ) -> Result<Vec<(Uuid, SearchEntry)>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        // The stored rendering of a row's current version is the current resource (as for a
        // read); only rows changed outside FHIR writes are rebuilt from their columns.
        // (row, served id, resource)
        let mut loaded: Vec<(Uuid, String, EntryResource)> =
            plan::served(&self.db, m.as_ref(), ids)
                .await?
                .into_iter()
                .map(|s| (s.row_id, s.fhir_id, EntryResource::Text(s.text)))
                .collect();
        let missing: Vec<Uuid> = ids
            .iter()
            .filter(|id| !loaded.iter().any(|(r, _, _)| r == *id))
            .copied()
            .collect();
        if !missing.is_empty() {
            let mut rebuilt = m.load(&mut Conn::Pool(&self.db), &missing).await?;
            crate::mapping::custom::apply(
                &mut Conn::Pool(&self.db),
                m.resource_type(),
                &mut rebuilt,
            )
            .await?;
            for (row, resource) in rebuilt {
                let fhir_id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                loaded.push((row, fhir_id, EntryResource::Json(resource)));
            }
        }
        let mut entries = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(i) = loaded.iter().position(|(r, _, _)| r == id) {
                let (_, fhir_id, resource) = loaded.swap_remove(i);
                entries.push((
                    *id,
                    SearchEntry {
                        full_url: format!("{}/{}/{fhir_id}", caller.base_url, m.resource_type()),
                        resource,
                        mode,
                    },
                ));
            }
        }
        Ok(entries)
    }
}

/// The cursors of the next and previous pages of a page whose first and last rows (id and sort
/// The rows of one page of `plan`, with the cursors of the pages around it.
async fn page_of(db: &crate::store::Db, plan: &Plan<'_>, q: &SearchQuery) -> Result<Page> {
    let (rows, total) = plan.page(db).await?;
    let mut rows: Vec<(Uuid, Vec<Option<String>>)> =
        rows.into_iter().map(|r| (r.id, r.keys)).collect();
    let more = rows.len() as i64 > q.count;
    rows.truncate(q.count as usize);
    // Walking backwards (a `previous` link) read every order reversed.
    if q.cursor.as_ref().is_some_and(|c| !c.after) {
        rows.reverse();
    }
    let (next, previous) = neighbours(
        rows.first().cloned(),
        rows.last().cloned(),
        q.cursor.as_ref(),
        more,
    );
    Ok(Page {
        next,
        previous,
        ids: rows.into_iter().map(|(id, _)| id).collect(),
        total,
    })
}

/// values) are given, reached through `current`, with `more` rows beyond it in its direction.
fn neighbours(
    first: Option<(Uuid, Vec<Option<String>>)>,
    last: Option<(Uuid, Vec<Option<String>>)>,
    current: Option<&Cursor>,
    more: bool,
) -> (Option<Cursor>, Option<Cursor>) {
    let (has_next, has_prev) = match current {
        None => (more, false),
        Some(c) if c.after => (more, true),
        Some(_) => (true, more),
    };
    let cursor = |row: Option<(Uuid, Vec<Option<String>>)>, after: bool| {
        row.map(|(id, values)| Cursor { after, values, id })
    };
    (
        if has_next { cursor(last, true) } else { None },
        if has_prev { cursor(first, false) } else { None },
    )
}

/// The self, next and previous links of a page: the applied parameters only.
fn links(base: &str, q: &SearchQuery, page: &Page) -> Vec<Link> {
    let link = |cursor: Option<&Cursor>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q.applied {
            ser.append_pair(k, v);
        }
        ser.append_pair("_count", &q.count.to_string());
        if let Some(c) = cursor {
            ser.append_pair("_cursor", &c.encode());
        }
        format!("{base}?{}", ser.finish())
    };
    let mut links = vec![Link {
        relation: "self",
        url: link(q.cursor.as_ref()),
    }];
    if let Some(c) = &page.next {
        links.push(Link {
            relation: "next",
            url: link(Some(c)),
        });
    }
    if let Some(c) = &page.previous {
        links.push(Link {
            relation: "previous",
            url: link(Some(c)),
        });
    }
    links
}

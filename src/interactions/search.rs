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

/// Default and largest page sizes.
pub const DEFAULT_COUNT: i64 = 20;
pub const MAX_COUNT: i64 = 1000;
/// The most resources `_include`/`_revinclude` add to one page.
pub const MAX_INCLUDED: usize = 1000;
/// How many rounds `:iterate` follows.
const MAX_ITERATIONS: usize = 4;

/// A search as the HTTP layer received it: decoded name/value pairs, in order.
pub struct SearchRequest {
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=strict`: unknown parameters are an error instead of being ignored.
    pub strict: bool,
}

/// Parameters that only concern the representation.
const FORMAT_PARAMS: &[&str] = &["_format", "_pretty"];

/// One `_sort` key.
struct Sort {
    param: &'static SearchParam,
    descending: bool,
}

/// One `_include` or `_revinclude`.
#[derive(Clone)]
struct Include {
    /// The type holding the reference.
    source: &'static str,
    /// The reference parameter; `None` for `*` (every reference parameter of `source`).
    param: Option<&'static SearchParam>,
    /// The target type named after the parameter, if any.
    target: Option<String>,
    reverse: bool,
    iterate: bool,
}

/// A parsed search, ready to run.
pub struct SearchQuery {
    filters: Vec<Filter>,
    /// The parameters applied, for the self link.
    applied: Vec<(String, String)>,
    count: i64,
    /// `_total`: `Some(false)` for none, `Some(true)` for estimate or accurate; by default the
    /// first page has a total and the pages after it do not (counting every page costs).
    total: Option<bool>,
    sort: Vec<Sort>,
    includes: Vec<Include>,
    summary: Summary,
    elements: Option<Vec<String>>,
    cursor: Option<Cursor>,
}

/// Where a page starts: after or before the row whose sort values and id it carries; in a
/// link, as the text [`Encoded::encode`] gives.
type Cursor = Keyset;

trait Encoded: Sized {
    fn encode(&self) -> String;
    fn decode(s: &str, keys: usize) -> Option<Self>;
}

impl Encoded for Cursor {
    fn encode(&self) -> String {
        let json = serde_json::json!([self.values, self.id.to_string()]);
        let dir = if self.after { "a" } else { "b" };
        format!(
            "{dir}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        )
    }

    fn decode(s: &str, keys: usize) -> Option<Cursor> {
        let after = match s.get(..1)? {
            "a" => true,
            "b" => false,
            _ => return None,
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.get(1..)?)
            .ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        let values = v.get(0)?.as_array()?;
        if values.len() != keys {
            return None;
        }
        let values = values
            .iter()
            .map(|x| match x {
                Value::Null => Some(None),
                Value::String(s) => Some(Some(s.clone())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let id = Uuid::parse_str(v.get(1)?.as_str()?).ok()?;
        Some(Cursor { after, values, id })
    }
}

/// Splits a value on commas not escaped with a backslash, and unescapes `\,` `\$` `\\`.
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

pub(super) fn bad(msg: String) -> Error {
    Error::BadRequest(vec![Issue::error(IssueType::Invalid, msg)])
}

impl SearchQuery {
    /// Parses `req` as a search of `resource_type`; `None` for a search across types, which
    /// takes only the parameters every type has.
    pub fn parse(
        req: &SearchRequest,
        registry: &crate::mapping::Registry,
        resource_type: Option<&'static str>,
    ) -> Result<SearchQuery> {
        let mut q = SearchQuery {
            filters: vec![],
            applied: vec![],
            count: DEFAULT_COUNT,
            total: None,
            sort: vec![],
            includes: vec![],
            summary: Summary::False,
            elements: None,
            cursor: None,
        };
        let mut ignored = Vec::new();
        let mut cursor = None;
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
                        "none" => Some(false),
                        "estimate" | "accurate" => Some(true),
                        _ => return Err(bad("_total must be none, estimate or accurate".into())),
                    };
                    q.applied.push((name.clone(), value.clone()));
                    continue;
                }
                "_cursor" => {
                    cursor = Some(value.clone());
                    continue;
                }
                "_summary" => {
                    q.summary = Summary::parse(value).ok_or_else(|| {
                        bad("_summary must be true, text, data, count or false".into())
                    })?;
                    q.applied.push((name.clone(), value.clone()));
                    continue;
                }
                "_elements" => {
                    let names: Vec<String> = value
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if names.iter().any(|n| {
                        !n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    }) {
                        return Err(bad("_elements takes element names".into()));
                    }
                    q.elements = Some(names);
                    q.applied.push((name.clone(), value.clone()));
                    continue;
                }
                "_sort" => {
                    let Some(rt) = resource_type else {
                        return Err(bad("_sort is not supported in a search across types".into()));
                    };
                    for key in value.split(',') {
                        let (descending, pname) = match key.strip_prefix('-') {
                            Some(p) => (true, p),
                            None => (false, key),
                        };
                        let param = find_param(registry, rt, pname)
                            .filter(|p| p.kind != ParamKind::Composite)
                            .ok_or_else(|| {
                                bad(format!(
                                    "_sort: '{}' is not a sortable parameter of {rt}",
                                    pname.escape_default()
                                ))
                            })?;
                        q.sort.push(Sort { param, descending });
                    }
                    q.applied.push((name.clone(), value.clone()));
                    continue;
                }
                n if FORMAT_PARAMS.contains(&n) => continue,
                _ => {}
            }
            if let Some(spec) = name
                .strip_prefix("_include")
                .map(|m| (false, m))
                .or_else(|| name.strip_prefix("_revinclude").map(|m| (true, m)))
            {
                let (reverse, modifier) = spec;
                let iterate = match modifier {
                    "" => false,
                    ":iterate" | ":recurse" => true,
                    _ => {
                        return Err(bad(format!(
                            "{} takes no modifier other than :iterate",
                            name.escape_default()
                        )))
                    }
                };
                match parse_include(registry, value, reverse, iterate)? {
                    Some(inc) => {
                        q.includes.push(inc);
                        q.applied.push((name.clone(), value.clone()));
                    }
                    None => ignored.push(format!("{name}={value}")),
                }
                continue;
            }
            let parsed = match resource_type {
                Some(rt) => filter::parse(registry, rt, name, split_values(value)),
                None => {
                    // Across types only the parameters of every resource apply.
                    let base = name.split(':').next().unwrap_or_default();
                    match COMMON.iter().find(|p| p.name == base) {
                        Some(_) => filter::parse(registry, "Patient", name, split_values(value)),
                        None => Ok(None),
                    }
                }
            };
            match parsed.map_err(|e| bad(e.0))? {
                Some(f) => {
                    q.filters.push(f);
                    q.applied.push((name.clone(), value.clone()));
                }
                None => ignored.push(name.clone()),
            }
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
        if let Some(c) = cursor {
            q.cursor = Some(
                Cursor::decode(&c, q.sort.len())
                    .ok_or_else(|| bad("_cursor is not a cursor of this search".into()))?,
            );
        }
        Ok(q)
    }

    /// Applies `_elements` (to matches) and `_summary` (to every entry) to an entry's resource.
    fn shape(&self, e: &mut SearchEntry) {
        let elements = self.elements.as_ref().filter(|_| e.mode == "match");
        if elements.is_none() && matches!(self.summary, Summary::False | Summary::Count) {
            return;
        }
        let resource = e.resource.json_mut();
        let t = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(names) = elements {
            subset::elements(resource, &t, names);
        }
        subset::summary(resource, &t, self.summary);
    }

    /// Whether this page's Bundle carries a total.
    fn wants_total(&self) -> bool {
        self.summary == Summary::Count || self.total.unwrap_or(self.cursor.is_none())
    }
}

/// `Type:param[:Target]`, `Type:*` or `*`; `None` when the type or parameter is unknown.
fn parse_include(
    registry: &crate::mapping::Registry,
    value: &str,
    reverse: bool,
    iterate: bool,
) -> Result<Option<Include>> {
    if value == "*" {
        return Ok(Some(Include {
            source: "*",
            param: None,
            target: None,
            reverse,
            iterate,
        }));
    }
    let mut parts = value.splitn(3, ':');
    let (Some(source), Some(pname)) = (parts.next(), parts.next()) else {
        return Err(bad(format!(
            "'{}' is not Type:parameter[:targetType]",
            value.escape_default()
        )));
    };
    let Some(source) = registry.get(source).map(|m| m.resource_type()) else {
        return Ok(None);
    };
    let param = if pname == "*" {
        None
    } else {
        match find_param(registry, source, pname) {
            Some(p) if reference_target(p).is_some() => Some(p),
            Some(_) => {
                return Err(bad(format!(
                    "{source}:{pname} is not a reference parameter"
                )))
            }
            None => return Ok(None),
        }
    };
    Ok(Some(Include {
        source,
        param,
        target: parts.next().map(str::to_owned),
        reverse,
        iterate,
    }))
}

/// The reference parameters of `source` an include follows.
fn include_params(
    registry: &crate::mapping::Registry,
    inc: &Include,
    source: &'static str,
) -> Vec<&'static SearchParam> {
    let all = || -> Vec<&'static SearchParam> {
        registry
            .get(source)
            .map(|m| {
                m.search_params()
                    .iter()
                    .filter(|p| reference_target(p).is_some())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ps = match inc.param {
        Some(p) if inc.source == source => vec![p],
        Some(_) => vec![],
        None if inc.source == "*" || inc.source == source => all(),
        None => vec![],
    };
    // `subject` and `patient` are often one column: follow each column once.
    let mut seen = HashSet::new();
    ps.into_iter()
        .filter(|p| {
            inc.target
                .as_deref()
                .is_none_or(|t| reference_target(p) == Some(t))
        })
        .filter(|p| match p.target {
            Target::RefColumn { column, .. } => seen.insert(column.to_owned()),
            _ => seen.insert(p.name.to_owned()),
        })
        .collect()
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
        let ctx = Ctx {
            dialect: self.db.dialect(),
            resource_type: rt,
            registry: &self.registry,
            base_url: &caller.base_url,
            narrow: false,
            restriction: &caller.restriction,
        };
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
        let ctx = Ctx {
            dialect: conn.dialect(),
            resource_type: rt,
            registry: &self.registry,
            base_url: &caller.base_url,
            narrow: false,
            restriction: &caller.restriction,
        };
        let cond = self.where_clause(m, &q.filters, &ctx)?;
        Ok(Plan::by_id(m.as_ref(), cond, limit as i64)
            .matches(conn)
            .await?)
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
            // The first page counts every match in the same evaluation of the filters (the
            // rows must all be found to be ordered anyway) instead of a second query.
            count_all: q.cursor.is_none() && q.wants_total(),
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
        // A first page that holds every match is its own count; the first page of a longer
        // result was counted by its own query (a window count, one evaluation of the filters).
        let complete = q.cursor.is_none() && page.next.is_none() && q.count > 0;
        page.total = if !q.wants_total() {
            None
        } else if complete && q.summary != Summary::Count {
            Some(page.ids.len() as i64)
        } else if page.total.is_some() {
            page.total
        } else {
            Some(plan.count(&self.db).await?)
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

    /// The resources `_include` and `_revinclude` add to a page of `rt` rows `ids`, each once
    /// and none that is already a match; `:iterate` follows them from what was included too.
    async fn includes(
        &self,
        caller: &Caller,
        rt: &'static str,
        ids: &[Uuid],
        includes: &[Include],
    ) -> Result<Vec<SearchEntry>> {
        if includes.is_empty() || ids.is_empty() {
            return Ok(vec![]);
        }
        let mut seen: HashSet<Uuid> = ids.iter().copied().collect();
        let mut frontier: BTreeMap<&'static str, Vec<Uuid>> = BTreeMap::new();
        frontier.insert(rt, ids.to_vec());
        let mut found: BTreeMap<&'static str, Vec<Uuid>> = BTreeMap::new();
        let mut total = 0usize;
        for round in 0..MAX_ITERATIONS {
            let mut next: BTreeMap<&'static str, Vec<Uuid>> = BTreeMap::new();
            for inc in includes.iter().filter(|i| round == 0 || i.iterate) {
                for (ty, rows) in &frontier {
                    for (target_type, row) in self.follow(caller, inc, ty, rows).await? {
                        if total < MAX_INCLUDED && seen.insert(row) {
                            total += 1;
                            next.entry(target_type).or_default().push(row);
                            found.entry(target_type).or_default().push(row);
                        }
                    }
                }
            }
            if next.is_empty() || !includes.iter().any(|i| i.iterate) {
                break;
            }
            frontier = next;
        }
        let mut out = Vec::new();
        for (ty, rows) in found {
            let m = self.mapping(ty)?;
            out.extend(self.entries(caller, &m, &rows, "include").await?);
        }
        Ok(out)
    }

    /// The live rows one include reaches from rows `ids` of type `ty`, with their types.
    async fn follow(
        &self,
        caller: &Caller,
        inc: &Include,
        ty: &'static str,
        ids: &[Uuid],
    ) -> Result<Vec<(&'static str, Uuid)>> {
        let mut out = Vec::new();
        let ctx = Ctx {
            dialect: self.db.dialect(),
            resource_type: ty,
            registry: &self.registry,
            base_url: &caller.base_url,
            narrow: false,
            restriction: &caller.restriction,
        };
        // At most one more than a page may include: more is never used.
        let limit = MAX_INCLUDED as i64 + 1;
        let here = self.mapping(ty)?;
        if !inc.reverse {
            for p in include_params(&self.registry, inc, ty) {
                let Some(target) = reference_target(p).and_then(|t| self.registry.get(t)) else {
                    continue;
                };
                let cond = plan::included(&ctx, here.as_ref(), p, target.as_ref(), ids)
                    .map_err(|e| bad(e.0))?;
                for id in Plan::by_id(target.as_ref(), cond, limit)
                    .ids(&self.db)
                    .await?
                {
                    out.push((target.resource_type(), id));
                }
            }
            return Ok(out);
        }
        // _revinclude: resources of the source type(s) that refer to these.
        let sources: Vec<&'static str> = if inc.source == "*" {
            self.registry.types()
        } else {
            vec![inc.source]
        };
        for source in sources {
            let src = self.mapping(source)?;
            for p in include_params(&self.registry, inc, source) {
                if reference_target(p) != Some(ty) {
                    continue;
                }
                let cond = plan::referring(&ctx, src.as_ref(), p, here.as_ref(), ids)
                    .map_err(|e| bad(e.0))?;
                for id in Plan::by_id(src.as_ref(), cond, limit).ids(&self.db).await? {
                    out.push((source, id));
                }
            }
        }
        Ok(out)
    }

    /// search across types (`GET /fhir?_type=Patient,Observation&_lastUpdated=gt...`): the
    /// parameters every resource has, over every hosted type or those `_type` names, in row id
    /// order with keyset paging.
    pub async fn search_all(&self, caller: &Caller, req: &SearchRequest) -> Result<String> {
        let mut types: Vec<&'static str> = self.registry.types();
        let mut rest = Vec::new();
        let mut type_param = None;
        for (k, v) in &req.params {
            if k == "_type" {
                let mut named = Vec::new();
                for t in v.split(',') {
                    match self.registry.get(t.trim()) {
                        Some(m) => named.push(m.resource_type()),
                        None => {
                            return Err(bad(format!(
                                "_type: '{}' is not a resource type this server hosts",
                                t.escape_default()
                            )))
                        }
                    }
                }
                types.retain(|t| named.contains(t));
                type_param = Some(v.clone());
            } else {
                rest.push((k.clone(), v.clone()));
            }
        }
        let sub = SearchRequest {
            params: rest,
            strict: req.strict,
        };
        let q = SearchQuery::parse(&sub, &self.registry, None)?;
        if !q.includes.is_empty() {
            return Err(bad(
                "_include and _revinclude need a resource type to search".into(),
            ));
        }
        let mut total = q.wants_total().then_some(0i64);
        let mut rows: Vec<(Uuid, &'static str)> = Vec::new();
        for ty in &types {
            let m = self.mapping(ty)?;
            let ctx = Ctx {
                dialect: self.db.dialect(),
                resource_type: m.resource_type(),
                registry: &self.registry,
                base_url: &caller.base_url,
                narrow: false,
                restriction: &caller.restriction,
            };
            let cond = self.where_clause(&m, &q.filters, &ctx)?;
            let plan = Plan {
                from: q.cursor.as_ref().map(|c| Keyset {
                    values: vec![],
                    ..c.clone()
                }),
                ..Plan::by_id(m.as_ref(), cond, q.count + 1)
            };
            if let Some(t) = total.as_mut() {
                *t += plan.count(&self.db).await?;
            }
            if q.summary == Summary::Count || q.count == 0 {
                continue;
            }
            for r in plan.page(&self.db).await?.0 {
                rows.push((r.id, m.resource_type()));
            }
        }
        let backwards = q.cursor.as_ref().is_some_and(|c| !c.after);
        rows.sort();
        if backwards {
            rows.reverse();
        }
        let more = rows.len() as i64 > q.count;
        rows.truncate(q.count.max(0) as usize);
        if backwards {
            rows.reverse();
        }
        let (next, previous) = neighbours(
            rows.first().map(|(id, _)| (*id, vec![])),
            rows.last().map(|(id, _)| (*id, vec![])),
            q.cursor.as_ref(),
            more,
        );
        let page = Page {
            next,
            previous,
            ids: vec![],
            total,
        };
        let mut by_type: BTreeMap<&'static str, Vec<Uuid>> = BTreeMap::new();
        for (id, ty) in &rows {
            by_type.entry(ty).or_default().push(*id);
        }
        let mut loaded = std::collections::HashMap::new();
        for (ty, ids) in by_type {
            let m = self.mapping(ty)?;
            loaded.extend(self.row_entries(caller, &m, &ids, "match").await?);
        }
        // In row id order, across types.
        let mut entries: Vec<SearchEntry> = rows
            .iter()
            .filter_map(|(id, _)| loaded.remove(id))
            .collect();
        for e in &mut entries {
            q.shape(e);
        }
        let mut q = q;
        if let Some(t) = type_param {
            q.applied.insert(0, ("_type".into(), t));
        }
        let links = links(&caller.base_url, &q, &page);
        Ok(bundle::searchset(page.total, &links, entries))
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

#[cfg(test)]
mod tests {
    use super::{split_values, Cursor, Encoded};
    use uuid::Uuid;

    #[test]
    fn commas_separate_values_unless_escaped() {
        assert_eq!(split_values("a,b"), ["a", "b"]);
        assert_eq!(split_values(r"a\,b,c"), ["a,b", "c"]);
        assert_eq!(split_values(r"sys\|x"), [r"sys\|x"]);
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_shapes() {
        let c = Cursor {
            after: false,
            values: vec![Some("Smith".into()), None],
            id: Uuid::new_v4(),
        };
        let d = Cursor::decode(&c.encode(), 2).unwrap();
        assert_eq!((d.after, d.values, d.id), (false, c.values.clone(), c.id));
        assert!(Cursor::decode(&c.encode(), 1).is_none());
        assert!(Cursor::decode("a.not-base64", 0).is_none());
    }
}

//! Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html): the patient
//! and every resource of their compartment that this server hosts, in pages. `_since` keeps what
//! changed from that instant on, `_type` the types named, `_count` sets the page size. Pages run
//! in a fixed order (the Patient, then type by type, each by row id) and the cursor of the next
//! page is the last (type, row) served, so resources written meanwhile never shift a page.

use super::search::{bad, DEFAULT_COUNT};
use super::{Caller, Fhir};
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, Link, SearchEntry};
use crate::fhir::Id;
use crate::mapping::filter::{reference_target, Filter};
use crate::mapping::search::plan::{Keyset, Plan};
use crate::mapping::search::Modifier;
use crate::mapping::ResourceMapping;
use std::sync::Arc;
use uuid::Uuid;

/// The parsed parameters of one $everything request.
struct Request {
    since: Option<String>,
    types: Option<Vec<String>>,
    count: i64,
    /// After which (type position, row) this page starts.
    cursor: Option<(usize, Uuid)>,
}

fn parse(params: &[(String, String)]) -> Result<Request> {
    let mut r = Request {
        since: None,
        types: None,
        count: DEFAULT_COUNT,
        cursor: None,
    };
    for (k, v) in params {
        match k.as_str() {
            "_since" => r.since = Some(v.clone()),
            "_type" => {
                r.types = Some(
                    v.split(',')
                        .map(|t| t.trim().to_owned())
                        .filter(|t| !t.is_empty())
                        .collect(),
                )
            }
            "_count" => {
                r.count = crate::fhir::search::count(v).map_err(|i| Error::BadRequest(vec![i]))?;
                if r.count == 0 {
                    return Err(bad("_count must be a positive integer".into()));
                }
            }
            "_cursor" => {
                let (t, id) = v
                    .split_once('.')
                    .and_then(|(t, id)| Some((t.parse().ok()?, Uuid::parse_str(id).ok()?)))
                    .ok_or_else(|| bad("_cursor is not a cursor of this operation".into()))?;
                r.cursor = Some((t, id));
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(bad(format!(
                    "$everything takes _since, _type and _count, not '{}'",
                    other.escape_default()
                )))
            }
        }
    }
    Ok(r)
}

impl Request {
    /// Refuses a `_type` that is not a type of the compartment.
    fn check_types(&self, types: &[(Arc<dyn ResourceMapping>, Option<&str>)]) -> Result<()> {
        for t in self.types.iter().flatten() {
            if !types.iter().any(|(m, _)| m.resource_type() == t) {
                return Err(bad(format!(
                    "_type: '{}' is not a type of the Patient compartment on this server",
                    t.escape_default()
                )));
            }
        }
        Ok(())
    }

    /// Whether resources of type `rt` are asked for.
    fn wants(&self, rt: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|w| w.iter().any(|t| t == rt))
    }

    /// The URL of the page starting after `cursor` (the first page without one).
    fn link(&self, base: &str, cursor: Option<(usize, Uuid)>) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &self.since {
            ser.append_pair("_since", s);
        }
        if let Some(t) = &self.types {
            ser.append_pair("_type", &t.join(","));
        }
        ser.append_pair("_count", &self.count.to_string());
        if let Some((pos, id)) = cursor {
            ser.append_pair("_cursor", &format!("{pos}.{id}"));
        }
        format!("{base}?{}", ser.finish())
    }
}

impl Fhir {
    /// The filters of one type's part of the compartment: tied to the patient (the Patient by
    /// its id), changed from `since` on.
    fn filters_of(
        &self,
        rt: &str,
        link: Option<&str>,
        patient: &Id,
        since: Option<&str>,
    ) -> Result<Vec<Filter>> {
        let param = |name: &str| {
            crate::mapping::filter::find_param(&self.registry, rt, name)
                .ok_or_else(|| anyhow::anyhow!("{rt} does not declare {name}"))
        };
        let mut filters = vec![match link {
            Some(name) => Filter::Param {
                param: param(name)?,
                modifier: Modifier::None,
                values: vec![format!("Patient/{patient}")],
            },
            None => Filter::Param {
                param: param("_id")?,
                modifier: Modifier::None,
                values: vec![patient.to_string()],
            },
        }];
        if let Some(since) = since {
            filters.push(Filter::Param {
                param: param("_lastUpdated")?,
                modifier: Modifier::None,
                values: vec![format!("ge{since}")],
            });
        }
        Ok(filters)
    }

    /// The types of the Patient compartment, in page order: Patient first, then by name, each
    /// with the parameter that ties it to its patient (none for the Patient itself).
    fn compartment_types(&self) -> Vec<(Arc<dyn ResourceMapping>, Option<&'static str>)> {
        let mut out = Vec::new();
        if let Some(p) = self.registry.get("Patient") {
            out.push((p.clone(), None));
        }
        for m in self.registry.iter() {
            if m.resource_type() == "Patient" {
                continue;
            }
            if let Some(link) = m
                .search_params()
                .iter()
                .find(|p| reference_target(p) == Some("Patient"))
            {
                out.push((m.clone(), Some(link.name)));
            }
        }
        out
    }

    /// GET /Patient/{id}/$everything
    pub async fn everything(
        &self,
        caller: &Caller,
        patient: &Id,
        params: &[(String, String)],
    ) -> Result<String> {
        let req = parse(params)?;
        // 404 or 410 for a patient who is not there.
        self.read(caller, self.resource_type("Patient")?, patient)
            .await?;
        let types = self.compartment_types();
        req.check_types(&types)?;
        let mut entries: Vec<SearchEntry> = Vec::new();
        let mut total = 0i64;
        let mut next = None;
        let mut last: Option<(usize, Uuid)> = None;
        let mut left = req.count;
        for (pos, (m, link)) in types.iter().enumerate() {
            let rt = m.resource_type();
            if !req.wants(rt) {
                continue;
            }
            let filters = self.filters_of(rt, *link, patient, req.since.as_deref())?;
            let ctx = self.ctx(caller, rt);
            let cond = self.where_clause(m, &filters, &ctx)?;
            let mut plan = Plan::by_id(m.as_ref(), cond, left + 1);
            if req.cursor.is_none() {
                total += plan.count(&self.db).await?;
            }
            if next.is_some() {
                if req.cursor.is_some() {
                    break;
                }
                // The first page still counts every type for its total.
                continue;
            }
            let after = match req.cursor {
                Some((cpos, _)) if pos < cpos => continue,
                Some((cpos, id)) if pos == cpos => Some(id),
                _ => None,
            };
            // One row more than the page holds tells whether another page follows (with the
            // page already full, that is all this query asks).
            plan.from = after.map(|id| Keyset {
                after: true,
                values: vec![],
                id,
            });
            let mut ids: Vec<Uuid> = plan
                .page(&self.db)
                .await?
                .0
                .into_iter()
                .map(|r| r.id)
                .collect();
            let more = ids.len() as i64 > left;
            ids.truncate(left as usize);
            left -= ids.len() as i64;
            if let Some(id) = ids.last() {
                last = Some((pos, *id));
            }
            if more {
                next = last;
            }
            entries.extend(self.entries(caller, m, &ids, "match").await?);
        }
        let base = format!("{}/Patient/{patient}/$everything", caller.base_url);
        let mut links = vec![Link {
            relation: "self",
            url: req.link(&base, req.cursor),
        }];
        if let Some(c) = next {
            links.push(Link {
                relation: "next",
                url: req.link(&base, Some(c)),
            });
        }
        let total = req.cursor.is_none().then_some(total);
        Ok(bundle::searchset(total, &links, entries))
    }
}

//! Search across types (`GET /fhir?_type=...`): the parameters every resource has, in row id
//! order with keyset paging.

use super::*;

impl Fhir {
    /// search across types (`GET /fhir?_type=Patient,Observation&_lastUpdated=gt...`): the
    /// parameters every resource has, over every hosted type or those `_type` names, in row id
    /// order with keyset paging.
    pub async fn search_all(&self, caller: &Caller, req: &SearchRequest) -> Result<String> {
        let (types, sub, type_param) = self.split_type(req)?;
        let q = SearchQuery::parse(&sub, &self.registry, None)?;
        if !q.includes.is_empty() {
            return Err(bad(
                "_include and _revinclude need a resource type to search".into(),
            ));
        }
        let mut total = q.counts().then_some(0i64);
        let mut rows: Vec<(Uuid, &'static str)> = Vec::new();
        for ty in &types {
            let m = self.mapping(ty)?;
            let ctx = self.ctx(caller, m.resource_type());
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
        if total.is_none() && !more && q.summary != Summary::Count {
            total = q.complete_total(rows.len());
        }
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
        let mut entries = self.entries_in_order(caller, &rows).await?;
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

    /// The types a search across types covers (every hosted type, or those `_type` names), the
    /// request without `_type`, and `_type` as sent.
    fn split_type(
        &self,
        req: &SearchRequest,
    ) -> Result<(Vec<&'static str>, SearchRequest, Option<String>)> {
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
        Ok((types, sub, type_param))
    }

    /// The entries of `rows` (row id and type), loaded type by type, in the order of `rows`.
    async fn entries_in_order(
        &self,
        caller: &Caller,
        rows: &[(Uuid, &'static str)],
    ) -> Result<Vec<SearchEntry>> {
        let mut by_type: BTreeMap<&'static str, Vec<Uuid>> = BTreeMap::new();
        for (id, ty) in rows {
            by_type.entry(ty).or_default().push(*id);
        }
        let mut loaded = std::collections::HashMap::new();
        for (ty, ids) in by_type {
            let m = self.mapping(ty)?;
            loaded.extend(self.row_entries(caller, &m, &ids, "match").await?);
        }
        Ok(rows
            .iter()
            .filter_map(|(id, _)| loaded.remove(id))
            .collect())
    }
}

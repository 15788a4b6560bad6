//! `_include` and `_revinclude`: the resources a page's matches refer to, or that refer to
//! them, each once, followed `:iterate` a few rounds.

use super::*;

/// `Type:param[:Target]`, `Type:*` or `*`; `None` when the type or parameter is unknown.
pub(super) fn parse_include(
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
pub(super) fn include_params(
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

impl Fhir {
    /// The resources `_include` and `_revinclude` add to a page of `rt` rows `ids`, each once
    /// and none that is already a match; `:iterate` follows them from what was included too.
    pub(super) async fn includes(
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
                        if seen.insert(row) {
                            total += 1;
                            if total > MAX_INCLUDED {
                                return Err(crate::error::Error::bad_request(
                                    crate::fhir::IssueType::TooCostly,
                                    format!(
                                        "this page includes more than {MAX_INCLUDED} resources, \
                                         the limit per page; ask for a smaller page (_count)"
                                    ),
                                ));
                            }
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
        let ctx = self.ctx(caller, ty);
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
}

//! Reference parameters: a foreign key column, or the `search_strings` index.

use super::*;

/// The id a reference parameter names: `id`, `Type/id`, `Type/id/_history/n` or an absolute URL
/// of this server (`{base}/Type/id`). `Ok(None)` when it names another type or another server;
/// `Err` when the id is not a FHIR id.
pub(super) fn reference_id<'a>(
    value: &'a str,
    resource_type: &str,
    base_url: &str,
) -> Result<Option<&'a str>, ()> {
    let mut local = value;
    if value.contains("://") {
        match value
            .strip_prefix(base_url.trim_end_matches('/'))
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(rest) => local = rest,
            None => return Ok(None),
        }
    }
    let local = match local.split_once("/_history/") {
        Some((r, _)) => r,
        None => local,
    };
    let id = match local.split_once('/') {
        None => local,
        Some((ty, id)) => {
            if ty != resource_type {
                return Ok(None);
            }
            id
        }
    };
    crate::fhir::Id::parse(id).map(|_| Some(id)).ok_or(())
}

/// The logical id a reference value names on this server; `None` for another type or server.
fn local_id<'a>(
    p: &SearchParam,
    value: &'a str,
    resource_type: &str,
    ctx: &Ctx,
) -> Result<Option<&'a str>, SearchError> {
    reference_id(value, resource_type, ctx.base_url)
        .map_err(|_| invalid(p, "not a reference to a resource of this server"))
}

/// A reference held in a foreign key column.
pub(super) fn ref_column(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    column: &'static str,
    table: &'static str,
    resource_type: &'static str,
) -> Result<Cond, SearchError> {
    let Some(id) = local_id(p, value, resource_type, ctx)? else {
        return Ok(Cond::none());
    };
    // fhir_id is unique: one row at most, evaluated once (an index condition on t.column).
    Ok(sql(
        format!("t.{column} = (SELECT r.id FROM {table} r WHERE r.fhir_id = ? AND r.deleted_at IS NULL)"),
        vec![id.into()],
    ))
}

/// A reference kept in the `search_strings` index.
pub(super) fn ref_index(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    resource_type: &'static str,
) -> Result<Cond, SearchError> {
    let Some(id) = local_id(p, value, resource_type, ctx)? else {
        return Ok(Cond::none());
    };
    Ok(index_rows(
        "search_strings",
        &format!(
            "s.resource_type = ? AND s.param = ? AND s.exact = ?{}",
            exact_bound(id)
        ),
        vec![ctx.resource_type.into(), p.name.into(), id.into()],
    ))
}

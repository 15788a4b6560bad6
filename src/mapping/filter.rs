//! A search's filters as a tree: a parameter with its modifier and values, a chain through a
//! reference (`subject:Patient.name=`, any depth), or a reverse chain
//! (`_has:Observation:patient:code=`), and the SQL of each. Every level is a subquery on the
//! indexed columns of its own table; user input only ever becomes a bound value.

use super::search::{condition, Cond, Ctx, Modifier, ParamKind, SearchError, SearchParam, Target};
use super::Registry;

/// One filter of a search (repeated parameters make several, ANDed).
#[derive(Debug)]
pub enum Filter {
    /// A parameter of the searched type; its comma-separated values are ORed.
    Param {
        param: &'static SearchParam,
        modifier: Modifier,
        values: Vec<String>,
    },
    /// A reference parameter whose target must match `inner`.
    Chain {
        param: &'static SearchParam,
        target: &'static str,
        inner: Box<Filter>,
    },
    /// Resources of type `source` that refer to this one through `param` and match `inner`.
    Has {
        source: &'static str,
        param: &'static SearchParam,
        inner: Box<Filter>,
    },
    /// Matches nothing (a chain through a type the reference cannot point to).
    Nothing,
}

/// A parameter of a hosted type: one of its own or a common one (`_id`, `_lastUpdated`...).
pub fn find_param(
    registry: &Registry,
    resource_type: &str,
    name: &str,
) -> Option<&'static SearchParam> {
    let m = registry.get(resource_type)?;
    super::search::COMMON
        .iter()
        .chain(m.search_params().iter())
        .find(|p| p.name == name)
}

/// The resource type a reference parameter points to.
pub fn reference_target(p: &SearchParam) -> Option<&'static str> {
    match p.target {
        Target::RefColumn { resource_type, .. } | Target::RefIndex { resource_type } => {
            Some(resource_type)
        }
        _ => None,
    }
}

/// Parses the parameter `name` of `resource_type`, with its values, into a filter. `Ok(None)`
/// when the parameter, or one along its chain, is not one this server knows; a malformed name
/// or an unsupported modifier is an error.
pub fn parse(
    registry: &Registry,
    resource_type: &'static str,
    name: &str,
    values: Vec<String>,
) -> Result<Option<Filter>, SearchError> {
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(registry, resource_type, rest, values);
    }
    if let Some((head, rest)) = name.split_once('.') {
        return parse_chain(registry, resource_type, head, rest, values);
    }
    let (pname, modifier) = match name.split_once(':') {
        Some((p, m)) => (p, Some(m)),
        None => (name, None),
    };
    let Some(param) = find_param(registry, resource_type, pname) else {
        return Ok(None);
    };
    let modifier = Modifier::parse(param, modifier)?;
    if param.kind == ParamKind::Composite && modifier != Modifier::None {
        return Err(SearchError(format!(
            "modifier is not supported on composite parameter {pname}"
        )));
    }
    Ok(Some(Filter::Param {
        param,
        modifier,
        values,
    }))
}

/// `_has:Type:reference:parameter` (`rest`: what follows `_has:`).
fn parse_has(
    registry: &Registry,
    resource_type: &'static str,
    rest: &str,
    values: Vec<String>,
) -> Result<Option<Filter>, SearchError> {
    let mut parts = rest.splitn(3, ':');
    let (Some(source), Some(ref_name), Some(inner_name)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(SearchError(
            "_has takes the form _has:Type:reference:parameter".into(),
        ));
    };
    let Some(source) = registry.get(source).map(|m| m.resource_type()) else {
        return Ok(None);
    };
    let Some(param) = find_param(registry, source, ref_name) else {
        return Ok(None);
    };
    if reference_target(param) != Some(resource_type) {
        return Err(SearchError(format!(
            "_has: {source}.{ref_name} does not refer to {resource_type}"
        )));
    }
    Ok(
        parse(registry, source, inner_name, values)?.map(|inner| Filter::Has {
            source,
            param,
            inner: Box::new(inner),
        }),
    )
}

/// A chain `head.rest`: `head` a reference parameter (with a type modifier or not).
fn parse_chain(
    registry: &Registry,
    resource_type: &'static str,
    head: &str,
    rest: &str,
    values: Vec<String>,
) -> Result<Option<Filter>, SearchError> {
    let (pname, type_modifier) = match head.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (head, None),
    };
    let Some(param) = find_param(registry, resource_type, pname) else {
        return Ok(None);
    };
    let Some(target) = reference_target(param) else {
        return Err(SearchError(format!(
            "{pname} is not a reference parameter and cannot be chained"
        )));
    };
    if let Some(t) = type_modifier {
        if let Modifier::Type(t) = Modifier::parse(param, Some(t))? {
            if t != target {
                return Ok(Some(Filter::Nothing));
            }
        } else {
            return Err(SearchError(format!(
                "only a resource type may follow {pname}: in a chain"
            )));
        }
    }
    Ok(
        parse(registry, target, rest, values)?.map(|inner| Filter::Chain {
            param,
            target,
            inner: Box::new(inner),
        }),
    )
}

/// The condition of the rows of `ctx.resource_type` (alias `t`) that a filter keeps.
pub fn filter_sql(f: &Filter, ctx: &Ctx) -> Result<Cond, SearchError> {
    Ok(match f {
        Filter::Param {
            param,
            modifier,
            values,
        } => condition(param, modifier, values, ctx)?,
        Filter::Nothing => Cond::none(),
        Filter::Chain {
            param,
            target,
            inner,
        } => {
            let (from, live) = scope(ctx, target, inner)?;
            match param.target {
                Target::RefColumn { column, .. } => {
                    Cond::in_select(format!("t.{column}"), "t.id", from, live)
                }
                _ => Cond::in_select(
                    "t.id",
                    "s.row_id",
                    "search_strings s",
                    index_of(ctx.resource_type, param.name)
                        // (An id is short: see `exact_bound`.)
                        .and(Cond::sql("length(s.exact) <= 250"))
                        .and(Cond::in_select("s.exact", "t.fhir_id", from, live)),
                ),
            }
        }
        Filter::Has {
            source,
            param,
            inner,
        } => {
            let (from, live) = scope(ctx, source, inner)?;
            match param.target {
                Target::RefColumn { column, .. } => {
                    Cond::in_select("t.id", format!("t.{column}"), from, live)
                }
                _ => Cond::in_select(
                    "t.fhir_id",
                    "s.exact",
                    "search_strings s",
                    index_of(source, param.name)
                        .and(Cond::in_select("s.row_id", "t.id", from, live)),
                ),
            }
        }
    })
}

/// The rows of the `search_strings` index (alias `s`) of one parameter of one type.
fn index_of(resource_type: &str, param: &str) -> Cond {
    Cond::Sql(
        "s.resource_type = ? AND s.param = ?".into(),
        vec![resource_type.into(), param.into()],
    )
}

/// `{table} t`, and the condition its live rows of the type that `inner` keeps meet, for a
/// subquery over another type.
fn scope(
    ctx: &Ctx,
    resource_type: &'static str,
    inner: &Filter,
) -> Result<(String, Cond), SearchError> {
    let m = ctx
        .registry
        .get(resource_type)
        .ok_or_else(|| SearchError(format!("resource type {resource_type} is not hosted")))?;
    let on = ctx.on(m.resource_type());
    let inner = filter_sql(inner, &on)?;
    Ok((
        format!("{} t", m.table()),
        visible(m.as_ref(), &on)?.and(inner),
    ))
}

/// The rows of a mapping's table (alias `t`) the caller may see as live resources of its type:
/// [`live`], and the restriction of the context.
pub fn visible(m: &dyn super::ResourceMapping, ctx: &Ctx) -> Result<Cond, SearchError> {
    let mut c = live(m);
    if let Some(r) = ctx.restriction.cond(m, ctx)? {
        c = c.and(r);
    }
    Ok(c)
}

/// The condition the rows of deleted resources of `m` meet to be within what `ctx` may see:
/// what a caller may be told is gone (410) rather than absent.
pub fn gone(m: &dyn super::ResourceMapping, ctx: &Ctx) -> Result<Cond, SearchError> {
    let mut text = "t.deleted_at IS NOT NULL".to_owned();
    if let Some(f) = m.row_filter() {
        text.push_str(" AND ");
        text.push_str(f);
    }
    let mut c = Cond::And(vec![Cond::sql(text)]);
    if let Some(r) = ctx.restriction.cond(m, ctx)? {
        c = c.and(r);
    }
    Ok(c)
}

/// The condition the rows of a mapping's table (alias `t`) meet to be live resources of its
/// type: not deleted, and of the type (users are Practitioners only with a clinical role).
pub fn live(m: &dyn super::ResourceMapping) -> Cond {
    let mut text = "t.deleted_at IS NULL".to_owned();
    if let Some(f) = m.row_filter() {
        text.push_str(" AND ");
        text.push_str(f);
    }
    Cond::And(vec![Cond::sql(text)])
}

//! A search's filters as a tree: a parameter with its modifier and values, a chain through a
//! reference (`subject:Patient.name=`, any depth), or a reverse chain
//! (`_has:Observation:patient:code=`), and the SQL of each. Every level is a subquery on the
//! indexed columns of its own table; user input only ever becomes a bound value.

use super::search::{condition, Ctx, Modifier, ParamKind, SearchError, SearchParam, Sql, Target};
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
        return Ok(
            parse(registry, source, inner_name, values)?.map(|inner| Filter::Has {
                source,
                param,
                inner: Box::new(inner),
            }),
        );
    }
    if let Some((head, rest)) = name.split_once('.') {
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
        return Ok(
            parse(registry, target, rest, values)?.map(|inner| Filter::Chain {
                param,
                target,
                inner: Box::new(inner),
            }),
        );
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

/// The condition of the rows of `ctx.resource_type` (alias `t`) that a filter keeps.
pub fn filter_sql(f: &Filter, ctx: &Ctx) -> Result<Sql, SearchError> {
    Ok(match f {
        Filter::Param {
            param,
            modifier,
            values,
        } => condition(param, modifier, values, ctx)?,
        Filter::Nothing => Sql {
            text: "1 = 0".into(),
            args: vec![],
        },
        Filter::Chain {
            param,
            target,
            inner,
        } => {
            let (scope, inner_args) = scope(ctx, target, inner)?;
            let mut args = Vec::new();
            let text = match param.target {
                Target::RefColumn { column, .. } => {
                    format!("t.{column} IN (SELECT t.id FROM {scope})")
                }
                _ => {
                    args.push(ctx.resource_type.into());
                    args.push(param.name.into());
                    format!("t.id IN (SELECT s.row_id FROM search_strings s WHERE s.resource_type = ? AND s.param = ? AND s.exact IN (SELECT t.fhir_id FROM {scope}))")
                }
            };
            args.extend(inner_args);
            Sql { text, args }
        }
        Filter::Has {
            source,
            param,
            inner,
        } => {
            let (scope, inner_args) = scope(ctx, source, inner)?;
            let mut args = Vec::new();
            let text = match param.target {
                Target::RefColumn { column, .. } => {
                    format!("t.id IN (SELECT t.{column} FROM {scope})")
                }
                _ => {
                    args.push((*source).into());
                    args.push(param.name.into());
                    format!("t.fhir_id IN (SELECT s.exact FROM search_strings s WHERE s.resource_type = ? AND s.param = ? AND s.row_id IN (SELECT t.id FROM {scope}))")
                }
            };
            args.extend(inner_args);
            Sql { text, args }
        }
    })
}

/// `{table} t WHERE {live rows of the type} AND {inner}`, for a subquery over another type.
fn scope(
    ctx: &Ctx,
    resource_type: &'static str,
    inner: &Filter,
) -> Result<(String, Vec<crate::store::Arg>), SearchError> {
    let m = ctx
        .registry
        .get(resource_type)
        .ok_or_else(|| SearchError(format!("resource type {resource_type} is not hosted")))?;
    let inner = filter_sql(inner, &ctx.on(m.resource_type()))?;
    let row_filter = m
        .row_filter()
        .map(|f| format!(" AND {f}"))
        .unwrap_or_default();
    Ok((
        format!(
            "{} t WHERE t.deleted_at IS NULL{row_filter} AND {}",
            m.table(),
            inner.text
        ),
        inner.args,
    ))
}

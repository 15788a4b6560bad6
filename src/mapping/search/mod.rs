//! Search parameters as SQL: each parameter a mapping declares names a [`Target`], and this
//! module turns a parsed parameter into a condition on indexed columns, with bound values only.

use crate::fhir::date::{parse_range, Prefix};
use crate::fhir::text::normalize;
use crate::store::{Arg, Dialect};
use chrono::Utc;

pub mod cond;
mod date;
mod in_order;
mod index;
pub mod many;
mod observation;
mod params;
pub mod plan;
mod quantity;
mod reference;
pub mod restrict;
mod sort;
mod string;
mod token;
mod walk;
pub use cond::{Cond, List, Rendered, Select};
pub use date::date_precision;
pub use index::{index, index_meta, index_names, QUANTITY_ROW, STRING_ROW};
use observation::*;
pub use params::*;
use quantity::*;
pub use restrict::Restriction;
pub use sort::{sort_key, SortKey};
use string::*;
use token::*;

/// A malformed value of parameter `p`.
fn invalid(p: &SearchParam, what: &str) -> SearchError {
    SearchError(format!("invalid value for parameter {}: {what}", p.name))
}

/// SQL without a list subquery, with its values, as a condition.
fn sql(text: impl Into<String>, args: Vec<Arg>) -> Cond {
    Cond::Sql(text.into(), args)
}

/// `t.id` is one of the rows of an index table that `cond` (on alias `s`) keeps.
fn index_rows(table: &str, cond: &str, args: Vec<Arg>) -> Cond {
    let alias = table_alias(table);
    Cond::in_select(
        "t.id",
        format!("{alias}.row_id"),
        format!("{table} {alias}"),
        sql(cond, args),
    )
}

fn table_alias(table: &str) -> &'static str {
    if table == "search_quantities" {
        "q"
    } else {
        "s"
    }
}

/// The condition for one occurrence of a parameter: its comma-separated values are ORed.
pub fn condition(
    p: &SearchParam,
    modifier: &Modifier,
    values: &[String],
    ctx: &Ctx,
) -> Result<Cond, SearchError> {
    if *modifier == Modifier::Missing {
        let [v] = values else {
            return Err(SearchError(format!(
                "{}:missing takes one value, true or false",
                p.name
            )));
        };
        let missing = match v.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(SearchError(format!(
                    "{}:missing takes true or false",
                    p.name
                )))
            }
        };
        let c = missing_sql(p, ctx);
        return Ok(if missing { c } else { Cond::Not(Box::new(c)) });
    }
    let mut parts = Vec::with_capacity(values.len());
    for v in values {
        parts.push(one_value(p, modifier, v, ctx)?);
    }
    let c = if parts.len() == 1 {
        parts.pop().unwrap_or_else(Cond::none)
    } else {
        Cond::Or(parts)
    };
    // :not matches what has none of the codes, and what has no code at all.
    Ok(if *modifier == Modifier::Not {
        Cond::NotTrue(Box::new(c))
    } else {
        c
    })
}

/// The condition that a resource has no value for `p`.
fn missing_sql(p: &SearchParam, ctx: &Ctx) -> Cond {
    let index = |params: &str, mut args: Vec<Arg>| {
        args.insert(0, Arg::from(ctx.resource_type));
        Cond::Not(Box::new(index_rows(
            "search_strings",
            &format!("s.resource_type = ? AND s.param IN {params}"),
            args,
        )))
    };
    match p.target {
        Target::FhirId | Target::LastUpdated | Target::CodeValueQuantity { .. } => Cond::none(),
        Target::TokenColumn { column, .. }
        | Target::BoolColumn { column }
        | Target::DateColumn { column, .. }
        | Target::CatalogToken { column, .. }
        | Target::RefColumn { column, .. }
        | Target::TokenColumns { code: column, .. }
        | Target::Quantity { value: column, .. } => Cond::sql(format!("t.{column} IS NULL")),
        Target::Period { start, end, .. } => {
            Cond::sql(format!("(t.{start} IS NULL AND t.{end} IS NULL)"))
        }
        Target::StringIndex
        | Target::CodeIndex { .. }
        | Target::RefIndex { .. }
        | Target::IndexToken
        | Target::IndexUri => index("(?)", vec![p.name.into()]),
        Target::ObservationCode { components } => Cond::sql("t.code IS NULL").and(index(
            if components {
                "('code', 'component-code')"
            } else {
                "('code')"
            },
            vec![],
        )),
        Target::IdentifierTable { table, foreign_key } => Cond::Not(Box::new(Cond::in_select(
            "t.id",
            format!("i.{foreign_key}"),
            format!("{table} i"),
            Cond::sql("i.deleted_at IS NULL"),
        ))),
    }
}

fn one_value(
    p: &SearchParam,
    modifier: &Modifier,
    value: &str,
    ctx: &Ctx,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    if value.is_empty() {
        return Err(bad("empty value"));
    }
    // The value as written, for the types whose values have parts separated by `|` (tokens,
    // quantities), and unescaped for the others.
    let plain = crate::fhir::search::unescape(value);
    if *modifier == Modifier::Text {
        return Ok(text_match(&p.target, &plain));
    }
    if *modifier == Modifier::OfType {
        return of_type(p, value, ctx).ok_or_else(|| bad("of-type takes system|code|value"));
    }
    let plain = match modifier {
        Modifier::Type(t) => {
            if !matches!(p.target, Target::RefColumn { resource_type, .. } | Target::RefIndex { resource_type } if resource_type == t)
            {
                return Ok(Cond::none());
            }
            if plain.contains('/') {
                plain
            } else {
                format!("{t}/{plain}")
            }
        }
        _ => plain,
    };
    let plain = plain.as_str();
    Ok(match p.target {
        Target::FhirId => token::fhir_id(plain)?,
        Target::TokenColumn { column, system } => token::token_column(value, column, system)?,
        Target::TokenColumns { code, system, .. } => token::token_columns(p, value, code, system)?,
        Target::CatalogToken { column, table } => token::catalog_token(p, value, column, table)?,
        Target::RefColumn {
            column,
            table,
            resource_type,
        } => reference::ref_column(p, plain, ctx, column, table, resource_type)?,
        Target::Period {
            start,
            end,
            end_precision,
            ..
        } => date::period(p, plain, ctx, start, end, end_precision)?,
        Target::RefIndex { resource_type } => reference::ref_index(p, plain, ctx, resource_type)?,
        Target::ObservationCode { components } if !ctx.narrow => {
            observation::code_listed(p, value, ctx, components)?
        }
        Target::ObservationCode { components } => {
            observation::code_tested(p, value, ctx, components)?
        }
        Target::Quantity {
            value: column,
            system,
            code,
        } => quantity::quantity(p, value, ctx, column, system, code)?,
        Target::CodeValueQuantity { top, components } => {
            quantity::code_value_quantity(p, value, ctx, top, components)?
        }
        Target::BoolColumn { column } => token::bool_column(p, value, column)?,
        Target::IdentifierTable { table, foreign_key } => {
            token::identifier_table(p, value, table, foreign_key)?
        }
        Target::CodeIndex { system } => token::code_index(p, value, ctx, system)?,
        Target::IndexToken => token::index_token(p, value, ctx)?,
        Target::IndexUri => token::index_uri(p, plain, ctx)?,
        Target::StringIndex => string::string_index(p, modifier, plain, ctx)?,
        Target::LastUpdated => date::last_updated(p, plain)?,
        Target::DateColumn {
            column,
            precision_column,
        } => date::date_column(p, plain, ctx, column, precision_column)?,
    })
}

/// The test of a token's system on `search_strings s` when its code is tested too: an
/// expression, which no index serves. The lookup index (`resource_type, param, value, row_id`)
/// gives a system's rows in row id order, and SQLite chose it over the code's index for a page
/// in row id order, reading every row of the system (`http://loinc.org`) to find one code's.
pub(super) const SYSTEM_BESIDE_CODE: &str = "s.value || '' = ?";

/// The length bound that goes with `s.exact = ?` for `value`: PostgreSQL indexes the exact values
/// of up to 250 characters in a btree and longer ones by hash (a btree entry holds about
/// 2.7 KB; see the migration `bounded index keys`), each a partial index that a query naming its
/// bound can use.
pub(super) fn exact_bound(value: &str) -> &'static str {
    if short(value) {
        " AND length(s.exact) <= 250"
    } else {
        " AND length(s.exact) > 250"
    }
}

/// Whether `value` is short enough for the partial btree indexes of the migration `bounded
/// index keys` (250 characters, at most 1,000 bytes).
pub(super) fn short(value: &str) -> bool {
    value.chars().count() <= 250
}

#[cfg(test)]
mod tests {
    use super::index::name_index;
    use super::reference::reference_id;
    use super::*;
    use serde_json::json;

    #[test]
    fn name_index_covers_every_part_of_every_name() {
        let idx = name_index(
            &json!({"name": [{"family": "Chalmers", "given": ["Peter"]}, {"text": "Jim", "prefix": ["Mr."]}]}),
        );
        assert!(idx.contains(&("family", "Chalmers".into())));
        assert!(idx.contains(&("name", "Peter".into())));
        assert!(idx.contains(&("name", "Mr.".into())));
        assert!(idx.contains(&("name", "Jim".into())));
    }

    #[test]
    fn tokens_split_into_system_and_code() {
        let t = |v: &str| {
            let (s, c) = token(v);
            (s.map(|s| s.map(|s| s.to_owned())), c)
        };
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(t("abc"), (None, s("abc")));
        assert_eq!(t("http://x|abc"), (Some(s("http://x")), s("abc")));
        assert_eq!(t("|abc"), (Some(None), s("abc")));
        assert_eq!(t("http://x|"), (Some(s("http://x")), None));
        // An escaped pipe or backslash belongs to the part it is in.
        assert_eq!(t(r"a\|b|c\|d"), (Some(s("a|b")), s("c|d")));
        assert_eq!(t(r"a\\|b"), (Some(s(r"a\")), s("b")));
    }

    #[test]
    fn references_name_local_resources_only() {
        let base = "http://ehr.example/fhir";
        assert_eq!(reference_id("p1", "Patient", base), Ok(Some("p1")));
        assert_eq!(reference_id("Patient/p1", "Patient", base), Ok(Some("p1")));
        assert_eq!(
            reference_id("Patient/p1/_history/2", "Patient", base),
            Ok(Some("p1"))
        );
        assert_eq!(
            reference_id("http://ehr.example/fhir/Patient/p1", "Patient", base),
            Ok(Some("p1"))
        );
        assert_eq!(
            reference_id("http://other.example/fhir/Patient/p1", "Patient", base),
            Ok(None)
        );
        assert_eq!(reference_id("Group/g1", "Patient", base), Ok(None));
        assert_eq!(reference_id("Patient/p 1", "Patient", base), Err(()));
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }

    #[test]
    fn user_input_only_ever_becomes_a_bound_value() {
        let p = SearchParam {
            name: "family",
            kind: ParamKind::String,
            target: Target::StringIndex,
            definition: "",
            documentation: "",
        };
        let registry = crate::mapping::Registry::standard();
        let ctx = Ctx {
            dialect: Dialect::Postgres,
            resource_type: "Patient",
            registry: &registry,
            base_url: "http://localhost/fhir",
            narrow: false,
            restriction: &Restriction::none(),
        };
        let evil = "x'); DROP TABLE patients; --".to_owned();
        let c = condition(&p, &Modifier::None, &[evil], &ctx).unwrap();
        let sql = Rendered::of(&c, Dialect::Postgres);
        assert!(!sql.sql.contains("DROP"));
        // Type and parameter, then the value as the index range's two ends and the LIKE.
        assert_eq!(sql.args.len(), 5);
        assert_eq!(sql.sql.matches('?').count(), 5);
    }
}

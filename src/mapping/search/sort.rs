//! `_sort` keys.

use super::*;

/// A sort key: an expression over the row `t` (with its bound values), and the SQL type its
/// cursor value is cast back to (the value travels in the cursor as text).
#[derive(Debug, Clone)]
pub struct SortKey {
    pub expr: String,
    pub args: Vec<Arg>,
    pub cast: &'static str,
}

/// The key `_sort` orders by for parameter `p`: its column, or the least of its indexed values.
/// `None` for a parameter that has no order (composites).
pub fn sort_key(p: &SearchParam, ctx: &Ctx) -> Option<SortKey> {
    let pg = ctx.dialect == Dialect::Postgres;
    let (time, date, num, boolean) = if pg {
        ("timestamptz", "date", "numeric", "boolean")
    } else {
        ("text", "text", "real", "integer")
    };
    let key = |expr: String, args: Vec<Arg>, cast: &'static str| Some(SortKey { expr, args, cast });
    let index = |col: &str| {
        format!("(SELECT min(s.{col}) FROM search_strings s WHERE s.row_id = t.id AND s.resource_type = ? AND s.param = ?)")
    };
    let index_args = vec![Arg::from(ctx.resource_type), Arg::from(p.name)];
    match p.target {
        Target::FhirId => key("t.fhir_id".into(), vec![], "text"),
        Target::LastUpdated => key("t.updated_at".into(), vec![], time),
        Target::TokenColumn { column, .. }
        | Target::TokenColumns { code: column, .. } => key(format!("t.{column}"), vec![], "text"),
        Target::ObservationCode { .. } => key("t.code".into(), vec![], "text"),
        Target::BoolColumn { column } => key(format!("t.{column}"), vec![], boolean),
        Target::DateColumn { column, .. } => key(format!("t.{column}"), vec![], date),
        Target::Period { start, .. } => key(
            if pg {
                format!("CAST(t.{start} AS timestamptz)")
            } else {
                format!("t.{start}")
            },
            vec![],
            time,
        ),
        Target::CatalogToken { column, table } => key(
            format!("(SELECT c.code FROM {table} c WHERE c.id = t.{column})"),
            vec![],
            "text",
        ),
        Target::RefColumn { column, table, .. } => key(
            format!("(SELECT r.fhir_id FROM {table} r WHERE r.id = t.{column})"),
            vec![],
            "text",
        ),
        Target::StringIndex => key(index("value"), index_args, "text"),
        Target::CodeIndex { .. }
        | Target::RefIndex { .. }
        | Target::IndexToken
        | Target::IndexUri => key(index("exact"), index_args, "text"),
        Target::Quantity { value, .. } => key(
            format!("CAST(t.{value} AS {})", if pg { "numeric" } else { "REAL" }),
            vec![],
            num,
        ),
        Target::IdentifierTable { table, foreign_key } => key(
            format!("(SELECT min(i.value) FROM {table} i WHERE i.{foreign_key} = t.id AND i.deleted_at IS NULL)"),
            vec![],
            "text",
        ),
        Target::CodeValueQuantity { .. } => None,
    }
}

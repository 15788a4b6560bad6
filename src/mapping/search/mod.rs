//! Search parameters as SQL: each parameter a mapping declares names a [`Target`], and this
//! module turns a parsed parameter into a condition on indexed columns, with bound values only.

use crate::fhir::date::{parse_range, Prefix};
use crate::fhir::text::normalize;
use crate::store::{Arg, Dialect};
use chrono::Utc;

/// The FHIR search parameter type, as the CapabilityStatement states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Token,
    Date,
    Reference,
    Quantity,
    Composite,
    Uri,
}

impl ParamKind {
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
            ParamKind::Quantity => "quantity",
            ParamKind::Composite => "composite",
            ParamKind::Uri => "uri",
        }
    }
}

/// Where a parameter's values live. Table and column names are static: never user input.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The logical id (`_id`).
    FhirId,
    /// `meta.lastUpdated`, the row's updated_at.
    LastUpdated,
    /// A code column, optionally bound to one code system.
    TokenColumn {
        column: &'static str,
        system: Option<&'static str>,
    },
    /// A boolean column.
    BoolColumn { column: &'static str },
    /// A date column whose value stands for a year, month or day as `precision_column` says.
    DateColumn {
        column: &'static str,
        precision_column: &'static str,
    },
    /// The `search_strings` index, rows kept under the parameter's own name.
    StringIndex,
    /// Codes (of one code system) kept in the `search_strings` index under the parameter's
    /// name, matched exactly.
    CodeIndex { system: &'static str },
    /// A code column and the column of its system.
    TokenColumns {
        code: &'static str,
        system: &'static str,
        /// The display or text column `:text` searches.
        text: Option<&'static str>,
    },
    /// A foreign key to a catalog table with `code` and `system` columns.
    CatalogToken {
        column: &'static str,
        table: &'static str,
    },
    /// A foreign key to the table of another resource type.
    RefColumn {
        column: &'static str,
        table: &'static str,
        resource_type: &'static str,
    },
    /// A Period held in two timestamp columns (either may be open), or a date/dateTime held
    /// in one (`start` = `end`). A precision column (`year`, `month`, `day`; NULL for a time to
    /// the second) makes the element's range reach to the end of its precision.
    Period {
        start: &'static str,
        end: &'static str,
        start_precision: Option<&'static str>,
        end_precision: Option<&'static str>,
    },
    /// Observation codes: the code columns of the `observations` view, the other codings the
    /// client sent (kept in `search_strings` under `code` and `component-code`, system in `value`), and
    /// with `components` the component codes too (vital-sign components from vital_sign_codes).
    ObservationCode { components: bool },
    /// References kept in `search_strings` under the parameter's name (the target's id in
    /// `exact`), for references that have no column.
    RefIndex { resource_type: &'static str },
    /// A Quantity held as a numeric column with the system and code of its unit.
    Quantity {
        value: &'static str,
        system: &'static str,
        code: &'static str,
    },
    /// Observation code and Quantity value as a pair (`token$quantity`): of the Observation itself
    /// (`top`), of one of its components (`components`: the `search_quantities` index and the
    /// blood-pressure columns of vital signs), or either.
    CodeValueQuantity { top: bool, components: bool },
    /// Tokens kept in `search_strings` under the parameter's name: system in `value` (empty when
    /// none), code in `exact` (`meta.tag`, `meta.security`).
    IndexToken,
    /// URIs kept in `search_strings` under the parameter's name, in `exact` (`meta.profile`).
    IndexUri,
    /// A child table of identifiers with `system` and `value` columns.
    IdentifierTable {
        table: &'static str,
        foreign_key: &'static str,
    },
}

/// A search parameter a mapping supports.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    pub target: Target,
    /// Canonical URL of the SearchParameter definition.
    pub definition: &'static str,
    pub documentation: &'static str,
}

/// The foreign keys a reference parameter can follow, by target type.
const PATIENT: Target = Target::RefColumn {
    column: "patient_id",
    table: "patients",
    resource_type: "Patient",
};

/// A reference parameter to the resource's Patient (`patient`, `subject`) over `patient_id`.
pub const fn patient_param(
    name: &'static str,
    definition: &'static str,
    documentation: &'static str,
) -> SearchParam {
    SearchParam {
        name,
        kind: ParamKind::Reference,
        target: PATIENT,
        definition,
        documentation,
    }
}

/// A reference parameter over a foreign key `column` to the table of `resource_type`.
pub const fn reference_param(
    name: &'static str,
    column: &'static str,
    table: &'static str,
    resource_type: &'static str,
    definition: &'static str,
    documentation: &'static str,
) -> SearchParam {
    SearchParam {
        name,
        kind: ParamKind::Reference,
        target: Target::RefColumn {
            column,
            table,
            resource_type,
        },
        definition,
        documentation,
    }
}

/// Address and telecom parameters of a person (Patient, Practitioner), kept in the name index.
pub const PERSON_CONTACT: [SearchParam; 8] = [
    SearchParam {
        name: "address",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address",
        documentation:
            "Any part of any address: line, city, district, state, postal code, country or text",
    },
    SearchParam {
        name: "address-city",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-city",
        documentation: "A city of an address",
    },
    SearchParam {
        name: "address-state",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-state",
        documentation: "A state of an address",
    },
    SearchParam {
        name: "address-postalcode",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-postalcode",
        documentation: "A postal code of an address",
    },
    SearchParam {
        name: "address-country",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-address-country",
        documentation: "A country of an address",
    },
    SearchParam {
        name: "telecom",
        kind: ParamKind::Token,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/individual-telecom",
        documentation: "The value of any kind of telecom detail",
    },
    SearchParam {
        name: "phone",
        kind: ParamKind::Token,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/individual-phone",
        documentation: "A phone number (exactly as written)",
    },
    SearchParam {
        name: "email",
        kind: ParamKind::Token,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/individual-email",
        documentation: "An email address (exactly as written)",
    },
];

/// The parameters every resource type supports.
pub const COMMON: &[SearchParam] = &[
    SearchParam {
        name: "_id",
        kind: ParamKind::Token,
        target: Target::FhirId,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-id",
        documentation: "Logical id of the resource",
    },
    SearchParam {
        name: "_lastUpdated",
        kind: ParamKind::Date,
        target: Target::LastUpdated,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        documentation: "When the resource version last changed",
    },
    SearchParam {
        name: "_tag",
        kind: ParamKind::Token,
        target: Target::IndexToken,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-tag",
        documentation: "Tags applied to this resource (meta.tag)",
    },
    SearchParam {
        name: "_security",
        kind: ParamKind::Token,
        target: Target::IndexToken,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-security",
        documentation: "Security labels applied to this resource (meta.security)",
    },
    SearchParam {
        name: "_profile",
        kind: ParamKind::Uri,
        target: Target::IndexUri,
        definition: "http://hl7.org/fhir/SearchParameter/Resource-profile",
        documentation: "Profiles this resource claims to conform to (meta.profile)",
    },
];

/// A malformed or unsupported search; the message names the parameter (400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

pub mod cond;
pub mod plan;
pub mod restrict;
pub use cond::{Cond, List, Rendered, Select};
pub use restrict::Restriction;

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

/// Where a condition is built: the resource table is always aliased `t` (a subquery for a chain
/// aliases its own table `t` too, which shadows the outer one).
pub struct Ctx<'a> {
    pub dialect: Dialect,
    pub resource_type: &'static str,
    pub registry: &'a super::Registry,
    /// This server's FHIR base URL: absolute references are local only under it.
    pub base_url: &'a str,
    /// Whether another condition of the same query already narrows the rows to a few (a
    /// patient, an encounter, ids): conditions then test each row (correlated subqueries)
    /// instead of listing every row that matches them.
    pub narrow: bool,
    /// What the caller may see: every table the search reads is restricted to it.
    pub restriction: &'a Restriction,
}

impl Ctx<'_> {
    /// The same context for another resource type (the target of a chain, the source of `_has`).
    pub fn on(&self, resource_type: &'static str) -> Ctx<'_> {
        Ctx {
            dialect: self.dialect,
            resource_type,
            registry: self.registry,
            base_url: self.base_url,
            narrow: false,
            restriction: self.restriction,
        }
    }
}

/// A search modifier (https://hl7.org/fhir/R4/search.html#modifiers) this server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Not,
    Text,
    OfType,
    /// `:Patient` on a reference: the target must be of that type.
    Type(String),
}

impl Modifier {
    /// The modifier named `m` if parameter `p` allows it; a 400 naming both otherwise.
    pub fn parse(p: &SearchParam, m: Option<&str>) -> Result<Modifier, SearchError> {
        let Some(m) = m else {
            return Ok(Modifier::None);
        };
        let out = match (m, p.kind) {
            ("missing", _) => Some(Modifier::Missing),
            ("exact", ParamKind::String) => Some(Modifier::Exact),
            ("contains", ParamKind::String) => Some(Modifier::Contains),
            ("not", ParamKind::Token) => Some(Modifier::Not),
            ("text", ParamKind::Token) if text_columns(&p.target).is_some() => Some(Modifier::Text),
            ("of-type", ParamKind::Token) if matches!(p.target, Target::IdentifierTable { .. }) => {
                Some(Modifier::OfType)
            }
            (t, ParamKind::Reference)
                if t.len() > 1
                    && t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Some(Modifier::Type(t.to_owned()))
            }
            _ => None,
        };
        out.ok_or_else(|| {
            SearchError(format!(
                "modifier :{} is not supported on parameter {}",
                m.escape_default(),
                p.name
            ))
        })
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

/// The display columns `:text` searches, when the target has any.
fn text_columns(target: &Target) -> Option<()> {
    match target {
        Target::TokenColumns { text: Some(_), .. }
        | Target::CatalogToken { .. }
        | Target::ObservationCode { .. } => Some(()),
        _ => None,
    }
}

/// Splits a token into (system, code): `code`, `system|code`, `|code`, `system|`.
fn token(value: &str) -> (Option<Option<&str>>, Option<&str>) {
    match value.split_once('|') {
        None => (None, Some(value)),
        Some((s, c)) => (
            Some((!s.is_empty()).then_some(s)),
            (!c.is_empty()).then_some(c),
        ),
    }
}

/// The conditions a token (`code`, `system|code`, `|code`, `system|`) puts on a code column and
/// its system column, ANDed; `None` when it names neither.
fn token_match(value: &str, code_column: &str, system_column: &str) -> Option<(String, Vec<Arg>)> {
    let (sys, code) = token(value);
    let mut cond = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    if let Some(c) = code {
        cond.push(format!("{code_column} = ?"));
        args.push(c.into());
    }
    match sys {
        Some(Some(s)) => {
            cond.push(format!("{system_column} = ?"));
            args.push(s.into());
        }
        Some(None) => cond.push(format!("{system_column} IS NULL")),
        None => {}
    }
    (!cond.is_empty()).then(|| (cond.join(" AND "), args))
}

/// The id a reference parameter names: `id`, `Type/id`, `Type/id/_history/n` or an absolute URL
/// of this server (`{base}/Type/id`). `Ok(None)` when it names another type or another server;
/// `Err` when the id is not a FHIR id.
fn reference_id<'a>(
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

/// The last second of the range a timestamp column stands for at the precision in another
/// column (the timestamp itself when the precision is NULL).
fn last_instant(column: &str, precision: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "CASE {precision} WHEN 'year' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+1 year', '-1 second') WHEN 'month' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+1 month', '-1 second') WHEN 'day' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+1 day', '-1 second') ELSE {column} END"
        ),
        Dialect::Postgres => format!(
            "CASE {precision} WHEN 'year' THEN {column} + interval '1 year' - interval '1 second' WHEN 'month' THEN {column} + interval '1 month' - interval '1 second' WHEN 'day' THEN {column} + interval '1 day' - interval '1 second' ELSE {column} END"
        ),
    }
}

/// The precision of a date or dateTime as sent (`year`, `month`, `day`), for the precision
/// columns of [`Target::Period`]; NULL for a time.
pub fn date_precision(value: Option<&serde_json::Value>) -> Arg {
    let p = value
        .and_then(serde_json::Value::as_str)
        .and_then(|s| match s.len() {
            4 => Some("year"),
            7 => Some("month"),
            10 => Some("day"),
            _ => None,
        });
    Arg::Text(p.map(str::to_owned))
}

/// The digits after the decimal point of a number as written (`5.40` has 2; `1e2` has 0).
fn number_scale(number: &str) -> u32 {
    let mantissa = number.split(['e', 'E']).next().unwrap_or(number);
    mantissa
        .split_once('.')
        .map(|(_, f)| f.len() as u32)
        .unwrap_or(0)
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn one_value(
    p: &SearchParam,
    modifier: &Modifier,
    value: &str,
    ctx: &Ctx,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| SearchError(format!("invalid value for parameter {}: {what}", p.name));
    if value.is_empty() {
        return Err(bad("empty value"));
    }
    if *modifier == Modifier::Text {
        return Ok(text_match(&p.target, value));
    }
    if *modifier == Modifier::OfType {
        return of_type(p, value, ctx).ok_or_else(|| bad("of-type takes system|code|value"));
    }
    let value = match modifier {
        Modifier::Type(t) => {
            if !matches!(p.target, Target::RefColumn { resource_type, .. } | Target::RefIndex { resource_type } if resource_type == t)
            {
                return Ok(Cond::none());
            }
            if value.contains('/') {
                value.to_owned()
            } else {
                format!("{t}/{value}")
            }
        }
        _ => value.to_owned(),
    };
    let value = value.as_str();
    Ok(match p.target {
        Target::FhirId => sql("t.fhir_id = ?", vec![value.into()]),
        Target::TokenColumn { column, system } => {
            let (sys, code) = token(value);
            let sys_ok = match (sys, system) {
                (None, _) => true,
                (Some(Some(s)), Some(expected)) => s == expected,
                (Some(None), _) | (Some(Some(_)), None) => false,
            };
            match (sys_ok, code) {
                (false, _) => Cond::none(),
                (true, Some(c)) => sql(format!("t.{column} = ?"), vec![c.into()]),
                (true, None) => Cond::sql(format!("t.{column} IS NOT NULL")),
            }
        }
        Target::TokenColumns { code, system, .. } => {
            let (cond, args) = token_match(value, &format!("t.{code}"), &format!("t.{system}"))
                .ok_or_else(|| bad("a token needs a code or a system"))?;
            sql(format!("({cond})"), args)
        }
        Target::CatalogToken { column, table } => {
            let (cond, args) = token_match(value, "c.code", "c.system")
                .ok_or_else(|| bad("a token needs a code or a system"))?;
            Cond::in_select(
                format!("t.{column}"),
                "c.id",
                format!("{table} c"),
                sql(cond, args),
            )
        }
        Target::RefColumn {
            column,
            table,
            resource_type,
        } => {
            let Some(id) = reference_id(value, resource_type, ctx.base_url)
                .map_err(|_| bad("not a reference to a resource of this server"))?
            else {
                return Ok(Cond::none());
            };
            sql(
                // fhir_id is unique: one row at most, evaluated once (an index condition on t.column).
                format!("t.{column} = (SELECT r.id FROM {table} r WHERE r.fhir_id = ? AND r.deleted_at IS NULL)"),
                vec![id.into()],
            )
        }
        Target::Period {
            start,
            end,
            end_precision,
            ..
        } => {
            let (prefix, rest) = Prefix::split(value);
            let mut r = parse_range(rest).ok_or_else(|| bad("not a date or dateTime"))?;
            if prefix == Prefix::Ap {
                r = r.approximate(Utc::now());
            }
            let (lo, hi) = (Arg::from(r.start), Arg::from(r.end));
            // The target's range [a, b]: an open start or end reaches out for ever.
            let a = format!("t.{start}");
            let b = match end_precision {
                None => format!("t.{end}"),
                Some(p) => last_instant(&format!("t.{end}"), &format!("t.{p}"), ctx.dialect),
            };
            let (a_ge, b_le) = (
                format!("({a} IS NOT NULL AND {a} >= ?)"),
                format!("({b} IS NOT NULL AND {b} < ?)"),
            );
            let (b_gt, a_lt) = (
                format!("({b} IS NULL OR {b} >= ?)"),
                format!("({a} IS NULL OR {a} < ?)"),
            );
            let (cond, args) = match prefix {
                Prefix::Eq => (format!("({a_ge} AND {b_le})"), vec![lo, hi]),
                Prefix::Ne => (format!("NOT ({a_ge} AND {b_le})"), vec![lo, hi]),
                Prefix::Gt => (b_gt, vec![hi]),
                Prefix::Lt => (a_lt, vec![lo]),
                Prefix::Ge => (format!("({a_ge} OR {b_gt})"), vec![lo, hi]),
                Prefix::Le => (format!("({b_le} OR {a_lt})"), vec![hi, lo]),
                Prefix::Sa => (format!("({a} IS NOT NULL AND {a} >= ?)"), vec![hi]),
                Prefix::Eb => (format!("({b} IS NOT NULL AND {b} < ?)"), vec![lo]),
                Prefix::Ap => (format!("({a_lt} AND {b_gt})"), vec![hi, lo]),
            };
            // A resource without the element has no range to compare.
            sql(
                format!("(({a} IS NOT NULL OR {b} IS NOT NULL) AND {cond})"),
                args,
            )
        }
        Target::RefIndex { resource_type } => {
            let Some(id) = reference_id(value, resource_type, ctx.base_url)
                .map_err(|_| bad("not a reference to a resource of this server"))?
            else {
                return Ok(Cond::none());
            };
            index_rows(
                "search_strings",
                "s.resource_type = ? AND s.param = ? AND s.exact = ?",
                vec![ctx.resource_type.into(), p.name.into(), id.into()],
            )
        }
        Target::ObservationCode { components } if !ctx.narrow => {
            let (sys, code) = token(value);
            if code.is_none() && !matches!(sys, Some(Some(_))) {
                return Err(bad("a token needs a code or a system"));
            }
            observation_code_rows(value, components, None, ctx)
                .ok_or_else(|| bad("a token needs a code or a system"))?
        }
        Target::ObservationCode { components } => {
            let (sys, code) = token(value);
            if code.is_none() && !matches!(sys, Some(Some(_))) {
                return Err(bad("a token needs a code or a system"));
            }
            let (cols, mut args) = token_match(value, "t.code", "t.code_system")
                .ok_or_else(|| bad("a token needs a code or a system"))?;
            let params = if components {
                "('code', 'component-code')"
            } else {
                "('code')"
            };
            let mut index = format!("EXISTS (SELECT 1 FROM search_strings s WHERE s.row_id = t.id AND s.resource_type = ? AND s.param IN {params}");
            args.push(ctx.resource_type.into());
            let mut vital = "EXISTS (SELECT 1 FROM vital_sign_codes c WHERE c.measurement = t.measurement AND c.part = 'component'".to_owned();
            let mut vital_args: Vec<Arg> = Vec::new();
            if let Some(c) = code {
                index.push_str(" AND s.exact = ?");
                args.push(c.into());
                vital.push_str(" AND c.code = ?");
                vital_args.push(c.into());
            }
            match sys {
                Some(Some(system)) => {
                    index.push_str(" AND s.value = ?");
                    args.push(system.into());
                    vital.push_str(" AND c.system = ?");
                    vital_args.push(system.into());
                }
                Some(None) => {
                    index.push_str(" AND s.value = ''");
                    vital.push_str(" AND 1 = 0");
                }
                None => {}
            }
            index.push(')');
            vital.push(')');
            let mut text = format!("(({cols}) OR {index})");
            if components {
                text = format!("({text} OR {vital})");
                args.extend(vital_args);
            }
            sql(text, args)
        }
        Target::Quantity {
            value: column,
            system,
            code,
        } => {
            let (text, args) = quantity_sql(
                &format!("t.{column}"),
                &format!("t.{system}"),
                &format!("t.{code}"),
                value,
                ctx.dialect,
            )
            .ok_or_else(|| bad("a quantity is [prefix]number|system|code"))?;
            sql(text, args)
        }
        Target::CodeValueQuantity { top, components } => {
            let (code, quantity) = value
                .split_once('$')
                .ok_or_else(|| bad("a composite value is code$quantity"))?;
            let code_param = SearchParam {
                target: Target::ObservationCode { components: false },
                ..*p
            };
            let mut parts = Vec::new();
            if top && !ctx.narrow {
                parts.push(
                    observation_code_rows(code, false, Some(quantity), ctx).ok_or_else(|| {
                        bad("a composite value is code$[prefix]number|system|code")
                    })?,
                );
            } else if top {
                let c = one_value(&code_param, &Modifier::None, code, ctx)?;
                let (q, b) = quantity_sql(
                    "t.value_quantity",
                    "t.value_unit_system",
                    "t.value_unit",
                    quantity,
                    ctx.dialect,
                )
                .ok_or_else(|| bad("a quantity is [prefix]number|system|code"))?;
                parts.push(c.and(sql(q, b)));
            }
            if components {
                let (c, a) = token_match(code, "q.code", "q.code_system")
                    .ok_or_else(|| bad("a token needs a code or a system"))?;
                let (q, b) = quantity_sql(
                    "q.value",
                    "q.unit_system",
                    "q.unit_code",
                    quantity,
                    ctx.dialect,
                )
                .ok_or_else(|| bad("a quantity is [prefix]number|system|code"))?;
                let mut values = a;
                values.extend(b);
                parts.push(index_rows(
                    "search_quantities",
                    &format!(
                        "q.resource_type = 'Observation' AND q.param = 'component' AND {c} AND {q}"
                    ),
                    values,
                ));
                // Blood pressure written by the clinic: its components are columns, each with
                // its own value index (the measurement and column names are mapping data).
                let rows = vital_component_rows(code, quantity, ctx)
                    .ok_or_else(|| bad("a quantity is [prefix]number|system|code"))?;
                if let Some(c) = rows {
                    parts.push(c);
                }
            }
            Cond::Or(parts)
        }
        Target::BoolColumn { column } => {
            let (sys, code) = token(value);
            if sys.is_some_and(|s| s.is_some()) {
                return Err(bad("a boolean has no system"));
            }
            let b = match code {
                Some("true") => true,
                Some("false") => false,
                _ => return Err(bad("expected true or false")),
            };
            sql(format!("t.{column} = ?"), vec![Arg::Bool(Some(b))])
        }
        Target::IdentifierTable { table, foreign_key } => {
            // An identifier needs a value or a system: `|` alone names nothing.
            if matches!(token(value), (Some(None) | None, None)) {
                return Err(bad("a token needs a code or a system"));
            }
            let (cond, args) = token_match(value, "i.value", "i.system")
                .ok_or_else(|| bad("a token needs a code or a system"))?;
            Cond::in_select(
                "t.id",
                format!("i.{foreign_key}"),
                format!("{table} i"),
                sql(format!("i.deleted_at IS NULL AND {cond}"), args),
            )
        }
        Target::CodeIndex { system } => {
            let (sys, code) = token(value);
            if sys.is_some_and(|s| s != Some(system)) {
                return Ok(Cond::none());
            }
            let code = code.ok_or_else(|| bad("a code is needed"))?;
            index_rows(
                "search_strings",
                "s.resource_type = ? AND s.param = ? AND s.exact = ?",
                vec![ctx.resource_type.into(), p.name.into(), code.into()],
            )
        }
        Target::IndexToken => {
            let (cond, mut args) = token_match(value, "s.exact", "s.value")
                .ok_or_else(|| bad("a token needs a code or a system"))?;
            // No system is kept as the empty string.
            let cond = cond.replace("s.value IS NULL", "s.value = ''");
            let mut all = vec![Arg::from(ctx.resource_type), Arg::from(p.name)];
            all.append(&mut args);
            index_rows(
                "search_strings",
                &format!("s.resource_type = ? AND s.param = ? AND {cond}"),
                all,
            )
        }
        Target::IndexUri => index_rows(
            "search_strings",
            "s.resource_type = ? AND s.param = ? AND s.exact = ?",
            vec![ctx.resource_type.into(), p.name.into(), value.into()],
        ),
        Target::StringIndex => {
            let mut args: Vec<Arg> = vec![ctx.resource_type.into(), p.name.into()];
            let cond = match modifier {
                Modifier::Exact => {
                    args.push(value.into());
                    "s.exact = ?".to_owned()
                }
                Modifier::Contains => {
                    args.push(format!("%{}%", like_escape(&normalize(value))).into());
                    "s.value LIKE ? ESCAPE '\\'".to_owned()
                }
                _ => {
                    let n = normalize(value);
                    match ctx.dialect {
                        // A range on the binary-ordered index; LIKE would not use it in SQLite.
                        Dialect::Sqlite => {
                            args.push(n.clone().into());
                            args.push(format!("{n}\u{10FFFF}").into());
                            "s.value >= ? AND s.value < ?".to_owned()
                        }
                        // The same range with the operators of the text_pattern_ops index
                        // (a LIKE with a bound pattern gives a generic plan no index range),
                        // and the LIKE itself for exactness.
                        Dialect::Postgres => {
                            args.push(n.clone().into());
                            args.push(format!("{n}\u{10FFFF}").into());
                            args.push(format!("{}%", like_escape(&n)).into());
                            "s.value ~>=~ ? AND s.value ~<~ ? AND s.value LIKE ? ESCAPE '\\'"
                                .to_owned()
                        }
                    }
                }
            };
            index_rows(
                "search_strings",
                &format!("s.resource_type = ? AND s.param = ? AND {cond}"),
                args,
            )
        }
        Target::LastUpdated => {
            let (prefix, rest) = Prefix::split(value);
            let mut r = parse_range(rest).ok_or_else(|| bad("not a date, dateTime or instant"))?;
            if prefix == Prefix::Ap {
                r = r.approximate(Utc::now());
            }
            let (lo, hi) = (Arg::from(r.start), Arg::from(r.end));
            let c = "t.updated_at";
            let (text, args) = match prefix {
                Prefix::Eq | Prefix::Ap => (format!("({c} >= ? AND {c} < ?)"), vec![lo, hi]),
                Prefix::Ne => (format!("NOT ({c} >= ? AND {c} < ?)"), vec![lo, hi]),
                Prefix::Gt | Prefix::Sa => (format!("{c} >= ?"), vec![hi]),
                Prefix::Lt | Prefix::Eb => (format!("{c} < ?"), vec![lo]),
                Prefix::Ge => (format!("{c} >= ?"), vec![lo]),
                Prefix::Le => (format!("{c} < ?"), vec![hi]),
            };
            sql(text, args)
        }
        Target::DateColumn {
            column,
            precision_column,
        } => {
            let (prefix, rest) = Prefix::split(value);
            let mut r = parse_range(rest).ok_or_else(|| bad("not a date or dateTime"))?;
            if prefix == Prefix::Ap {
                r = r.approximate(Utc::now());
            }
            let (lo, hi) = r.days();
            let (lo, hi) = (Arg::Date(Some(lo)), Arg::Date(Some(hi)));
            // The target's own range [a, b): its value to the end of its precision.
            let a = format!("t.{column}");
            let b = match ctx.dialect {
                Dialect::Sqlite => format!(
                    "date(t.{column}, CASE t.{precision_column} WHEN 'year' THEN '+1 year' WHEN 'month' THEN '+1 month' ELSE '+1 day' END)"
                ),
                Dialect::Postgres => format!(
                    "CAST(t.{column} + CASE t.{precision_column} WHEN 'year' THEN interval '1 year' WHEN 'month' THEN interval '1 month' ELSE interval '1 day' END AS date)"
                ),
            };
            let (text, args) = match prefix {
                Prefix::Eq => (format!("({a} >= ? AND {b} <= ?)"), vec![lo, hi]),
                Prefix::Ne => (format!("NOT ({a} >= ? AND {b} <= ?)"), vec![lo, hi]),
                Prefix::Gt => (format!("{b} > ?"), vec![hi]),
                Prefix::Lt => (format!("{a} < ?"), vec![lo]),
                Prefix::Ge => (format!("({a} >= ? OR {b} > ?)"), vec![lo, hi]),
                Prefix::Le => (format!("({b} <= ? OR {a} < ?)"), vec![hi, lo]),
                Prefix::Sa => (format!("{a} >= ?"), vec![hi]),
                Prefix::Eb => (format!("{b} <= ?"), vec![lo]),
                Prefix::Ap => (format!("({a} < ? AND {b} > ?)"), vec![hi, lo]),
            };
            sql(text, args)
        }
    })
}

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

/// The Observations with a code, listed from the indexes of each place a code lives (the code
/// columns of results, the other codings in `search_strings`, the vital-sign measurements whose
/// LOINC code it is), results and vital signs apart: `(t.source = 'result' AND t.id IN (...))
/// OR (t.source = 'vital' AND t.id IN (...))`; with `quantity`, only those whose value also
/// matches it (code-value-quantity).
fn observation_code_rows(
    token_value: &str,
    components: bool,
    quantity: Option<&str>,
    ctx: &Ctx,
) -> Option<Cond> {
    let (sys, code) = token(token_value);
    // The arms listing results and those listing vital signs.
    let mut results: Vec<Select> = Vec::new();
    let mut vitals: Vec<Select> = Vec::new();
    let arm = |column: &str, from: &str, cond: String, args: Vec<Arg>| Select {
        column: column.to_owned(),
        from: from.to_owned(),
        cond: sql(cond, args),
    };
    let q = |value: &str, system: &str, unit: &str| match quantity {
        None => Some(None),
        Some(v) => quantity_sql(value, system, unit, v, ctx.dialect).map(Some),
    };
    // Results, by their code columns.
    let (mut c, mut args) = token_match(token_value, "r.code", "r.code_system")?;
    if let Some((qt, qa)) = q("r.value_quantity", "r.value_unit_system", "r.value_unit")? {
        c.push_str(&format!(" AND {qt}"));
        args.extend(qa);
    }
    results.push(arm("r.id", "medical_test_results r", c, args));
    // The codings of FHIR-written Observations (and of their components) beyond the code
    // columns.
    let params = if components {
        "('code', 'component-code')"
    } else {
        "('code')"
    };
    let mut coded = format!("s.resource_type = 'Observation' AND s.param IN {params}");
    let mut coded_args: Vec<Arg> = Vec::new();
    if let Some(c) = code {
        coded.push_str(" AND s.exact = ?");
        coded_args.push(c.into());
    }
    match sys {
        Some(Some(system)) => {
            coded.push_str(" AND s.value = ?");
            coded_args.push(system.into());
        }
        Some(None) => coded.push_str(" AND s.value = ''"),
        None => {}
    }
    // With a quantity: results by their value column, vital signs by the column of their
    // measurement (column names and units are the mapping's own data).
    let mut c = coded.clone();
    let mut args = coded_args.clone();
    if let Some((qt, qa)) = q("r.value_quantity", "r.value_unit_system", "r.value_unit")? {
        c.push_str(&format!(" AND {qt}"));
        args.extend(qa);
    }
    results.push(arm(
        "s.row_id",
        "search_strings s JOIN medical_test_results r ON r.id = s.row_id",
        c,
        args,
    ));
    let mut c = coded;
    let mut args = coded_args;
    let (mut value, mut unit) = (String::new(), String::new());
    for m in &super::vital_data::table().measurements {
        if let Some(slot) = &m.value {
            let key = m.key.replace('\'', "''");
            value.push_str(&format!(" WHEN '{key}' THEN v.{}", slot.column));
            unit.push_str(&format!(
                " WHEN '{key}' THEN '{}'",
                slot.ucum.replace('\'', "''")
            ));
        }
    }
    if let Some((qt, qa)) = q(
        &format!("CASE o.measurement{value} END"),
        "'http://unitsofmeasure.org'",
        &format!("CASE o.measurement{unit} END"),
    )? {
        c.push_str(&format!(" AND {qt}"));
        args.extend(qa);
    }
    vitals.push(arm(
        "s.row_id",
        "search_strings s JOIN vital_sign_observations o ON o.id = s.row_id JOIN vital_signs v ON v.id = o.vital_sign_id",
        c,
        args,
    ));
    // Vital signs, by measurement: their codes are data (mappings/vital-signs.json).
    let loinc_matches = |c: &str| is_loinc_token(token_value, c);
    for m in &super::vital_data::table().measurements {
        let own = loinc_matches(&m.code);
        let component = components
            && m.components
                .iter()
                .any(|s| s.code.as_deref().is_some_and(&loinc_matches));
        if !(own || component) {
            continue;
        }
        match (quantity, &m.value) {
            (None, _) => vitals.push(arm(
                "o.id",
                "vital_sign_observations o",
                "o.measurement = ?".into(),
                vec![m.key.as_str().into()],
            )),
            (Some(_), Some(slot)) if own => {
                let unit = format!("'{}'", slot.ucum.replace('\'', "''"));
                let (qt, qa) = q(
                    &format!("v.{}", slot.column),
                    "'http://unitsofmeasure.org'",
                    &unit,
                )??;
                let mut args: Vec<Arg> = vec![m.key.as_str().into()];
                args.extend(qa);
                vitals.push(arm(
                    "o.id",
                    "vital_sign_observations o JOIN vital_signs v ON v.id = o.vital_sign_id",
                    format!("o.measurement = ? AND {qt}"),
                    args,
                ));
            }
            _ => {}
        }
    }
    // Each list is tested only against the view's branch of its own source (the other
    // branch's condition folds to false), so no row id is looked up where it cannot be.
    let parts = [("result", results), ("vital", vitals)]
        .into_iter()
        .map(|(source, arms)| {
            Cond::sql(format!("t.source = '{source}'")).and(Cond::In("t.id".into(), List(arms)))
        })
        .collect();
    Some(Cond::Or(parts))
}

/// Whether a token search value matches the LOINC code `loinc` (the codes of vital signs).
fn is_loinc_token(token_value: &str, loinc: &str) -> bool {
    let (sys, code) = token(token_value);
    code.is_none_or(|want| want == loinc)
        && match sys {
            None => true,
            Some(Some(s)) => s == super::vital_data::LOINC,
            Some(None) => false,
        }
}

/// The vital-sign Observations written by the clinic that have a component coded `token_value`
/// whose value matches `quantity` (the systolic and diastolic columns of blood pressure), as
/// `t.id IN (...)` over one arm per matching column; `Some(None)` when no component has that
/// code, `None` when `quantity` is not a quantity.
fn vital_component_rows(token_value: &str, quantity: &str, ctx: &Ctx) -> Option<Option<Cond>> {
    let matches = |c: &str| is_loinc_token(token_value, c);
    let mut arms = Vec::new();
    for m in &super::vital_data::table().measurements {
        for slot in &m.components {
            if !slot.code.as_deref().is_some_and(matches) {
                continue;
            }
            let unit = format!("'{}'", slot.ucum.replace('\'', "''"));
            let (q, a) = quantity_sql(
                &format!("v.{}", slot.column),
                "'http://unitsofmeasure.org'",
                &unit,
                quantity,
                ctx.dialect,
            )?;
            let mut args: Vec<Arg> = vec![m.key.as_str().into()];
            args.extend(a);
            arms.push(Select {
                column: "o.id".into(),
                from: "vital_sign_observations o JOIN vital_signs v ON v.id = o.vital_sign_id"
                    .into(),
                cond: sql(format!("o.measurement = ? AND {q}"), args),
            });
        }
    }
    Some((!arms.is_empty()).then(|| Cond::In("t.id".into(), List(arms))))
}

/// A quantity search value (`[prefix]number|system|code`) on a numeric column expression and
/// the expressions of its unit's system and code. `None` when the value is not a quantity.
fn quantity_sql(
    column: &str,
    system: &str,
    code: &str,
    value: &str,
    dialect: Dialect,
) -> Option<(String, Vec<Arg>)> {
    let (prefix, rest) = Prefix::split(value);
    let mut parts = rest.splitn(3, '|');
    let number = parts.next().unwrap_or_default();
    let unit_system = parts.next().filter(|s| !s.is_empty());
    let unit_code = parts.next().filter(|s| !s.is_empty());
    let v = crate::store::parse_decimal(number)?;
    let (col, param) = match dialect {
        Dialect::Sqlite => (format!("CAST({column} AS REAL)"), "CAST(? AS REAL)"),
        Dialect::Postgres => (format!("CAST({column} AS numeric)"), "CAST(? AS numeric)"),
    };
    // The implicit range of the number's precision: 5.4 stands for [5.35, 5.45).
    let half = rust_decimal::Decimal::new(5, number_scale(number) + 1);
    let t = |d: rust_decimal::Decimal| Arg::Text(Some(d.normalize().to_string()));
    let (lo, hi) = (v - half, v + half);
    let tenth = (v / rust_decimal::Decimal::TEN).abs();
    let (mut text, mut args) = match prefix {
        Prefix::Eq => (
            format!("({col} >= {param} AND {col} < {param})"),
            vec![t(lo), t(hi)],
        ),
        Prefix::Ne => (
            format!("NOT ({col} >= {param} AND {col} < {param})"),
            vec![t(lo), t(hi)],
        ),
        Prefix::Gt | Prefix::Sa => (format!("{col} > {param}"), vec![t(v)]),
        Prefix::Lt | Prefix::Eb => (format!("{col} < {param}"), vec![t(v)]),
        Prefix::Ge => (format!("{col} >= {param}"), vec![t(v)]),
        Prefix::Le => (format!("{col} <= {param}"), vec![t(v)]),
        Prefix::Ap => (
            format!("({col} >= {param} AND {col} <= {param})"),
            vec![t(v - tenth), t(v + tenth)],
        ),
    };
    text = format!("({column} IS NOT NULL AND {text}");
    if let Some(s) = unit_system {
        text.push_str(&format!(" AND {system} = ?"));
        args.push(s.into());
    }
    if let Some(c) = unit_code {
        text.push_str(&format!(" AND {code} = ?"));
        args.push(c.into());
    }
    text.push(')');
    Some((text, args))
}

/// `:text`: a display or text that has a word starting with `value`, case-insensitively.
fn text_match(target: &Target, value: &str) -> Cond {
    let v = like_escape(&value.to_lowercase());
    let words = |col: &str, args: &mut Vec<Arg>| {
        args.push(format!("{v}%").into());
        args.push(format!("% {v}%").into());
        format!("(lower({col}) LIKE ? ESCAPE '\\' OR lower({col}) LIKE ? ESCAPE '\\')")
    };
    match *target {
        Target::TokenColumns {
            text: Some(col), ..
        } => {
            let mut args = Vec::new();
            let w = words(&format!("t.{col}"), &mut args);
            sql(w, args)
        }
        Target::CatalogToken { column, table } => {
            let mut args = Vec::new();
            let w = words("c.display", &mut args);
            Cond::in_select(
                format!("t.{column}"),
                "c.id",
                format!("{table} c"),
                sql(w, args),
            )
        }
        Target::ObservationCode { components } => {
            let mut args = Vec::new();
            let d = words("r.code_display", &mut args);
            let x = words("r.code_text", &mut args);
            let results = Cond::in_select(
                "t.id",
                "r.id",
                "medical_test_results r",
                sql(format!("{d} OR {x}"), args),
            );
            let mut args = Vec::new();
            let c = words("c.display", &mut args);
            let parts = if components {
                "('code', 'component')"
            } else {
                "('code')"
            };
            Cond::Or(vec![
                results,
                sql(format!("EXISTS (SELECT 1 FROM vital_sign_codes c WHERE c.measurement = t.measurement AND c.part IN {parts} AND {c})"), args),
            ])
        }
        _ => Cond::none(),
    }
}

/// `identifier:of-type=system|code|value`: an identifier with that value whose type has that
/// coding (the type is kept with the identifier's other elements, in its `fhir_extra`).
fn of_type(p: &SearchParam, value: &str, ctx: &Ctx) -> Option<Cond> {
    let Target::IdentifierTable { table, foreign_key } = p.target else {
        return None;
    };
    let mut parts = value.splitn(3, '|');
    let (system, code, id_value) = (parts.next()?, parts.next()?, parts.next()?);
    if code.is_empty() || id_value.is_empty() {
        return None;
    }
    let coding = match ctx.dialect {
        Dialect::Sqlite => "EXISTS (SELECT 1 FROM json_each(i.fhir_extra, '$.type.coding') c WHERE json_extract(c.value, '$.code') = ?",
        Dialect::Postgres => "EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof(i.fhir_extra->'type'->'coding') = 'array' THEN i.fhir_extra->'type'->'coding' ELSE '[]'::json END) c WHERE c->>'code' = ?",
    };
    let mut args: Vec<Arg> = vec![id_value.into(), code.into()];
    let mut text = format!("i.deleted_at IS NULL AND i.value = ? AND {coding}");
    if !system.is_empty() {
        text.push_str(match ctx.dialect {
            Dialect::Sqlite => " AND json_extract(c.value, '$.system') = ?",
            Dialect::Postgres => " AND c->>'system' = ?",
        });
        args.push(system.into());
    }
    text.push(')');
    Some(Cond::in_select(
        "t.id",
        format!("i.{foreign_key}"),
        format!("{table} i"),
        sql(text, args),
    ))
}

/// `identifier` of the clinical resources whose identifiers have no table of their own: kept in
/// the `search_strings` index (system in `value`, value in `exact`) by [`index_meta`].
pub const CLINICAL_IDENTIFIER: SearchParam = SearchParam {
    name: "identifier",
    kind: ParamKind::Token,
    target: Target::IndexToken,
    definition: "http://hl7.org/fhir/SearchParameter/clinical-identifier",
    documentation: "A business identifier of the resource (identifier)",
};

/// Rewrites the `_tag`, `_security` and `_profile` index rows of a resource from its `meta`,
/// and its `identifier` rows when the mapping declares [`CLINICAL_IDENTIFIER`].
pub async fn index_meta(
    tx: &mut crate::store::Tx,
    resource_type: &str,
    params: &[SearchParam],
    row_id: uuid::Uuid,
    resource: &serde_json::Value,
) -> Result<(), crate::store::StoreError> {
    let identifiers = params
        .iter()
        .any(|p| p.name == "identifier" && matches!(p.target, Target::IndexToken));
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM search_strings WHERE row_id = ? AND resource_type = ? AND param IN ('_tag', '_security', '_profile', 'identifier')",
            &[row_id.into(), resource_type.into()],
        )
        .await?;
    }
    let meta = resource.get("meta");
    let list = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut rows: Vec<(&str, String, String)> = Vec::new();
    for (param, key) in [("_tag", "tag"), ("_security", "security")] {
        for c in list(key) {
            if let Some(code) = c.get("code").and_then(serde_json::Value::as_str) {
                let system = c.get("system").and_then(serde_json::Value::as_str);
                rows.push((
                    param,
                    system.unwrap_or_default().to_owned(),
                    code.to_owned(),
                ));
            }
        }
    }
    if identifiers {
        if let Some(ids) = resource
            .get("identifier")
            .and_then(serde_json::Value::as_array)
        {
            for i in ids {
                if let Some(value) = i.get("value").and_then(serde_json::Value::as_str) {
                    let system = i.get("system").and_then(serde_json::Value::as_str);
                    rows.push((
                        "identifier",
                        system.unwrap_or_default().to_owned(),
                        value.to_owned(),
                    ));
                }
            }
        }
    }
    for p in list("profile") {
        if let Some(url) = p.as_str() {
            rows.push(("_profile", String::new(), url.to_owned()));
        }
    }
    rows.sort();
    rows.dedup();
    for (param, value, exact) in rows {
        tx.insert_detached(
            "search_strings",
            &STRING_ROW,
            &[
                resource_type.into(),
                row_id.into(),
                param.into(),
                value.into(),
                exact.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The columns of a row of the `search_strings` index.
pub const STRING_ROW: [&str; 5] = ["resource_type", "row_id", "param", "value", "exact"];

/// The columns of a row of the `search_quantities` index.
pub const QUANTITY_ROW: [&str; 8] = [
    "resource_type",
    "row_id",
    "param",
    "code_system",
    "code",
    "value",
    "unit_system",
    "unit_code",
];

/// Rewrites the `search_strings` rows of a resource's names (`name`, `family`, `given`).
pub async fn index_names(
    tx: &mut crate::store::Tx,
    resource_type: &'static str,
    row_id: uuid::Uuid,
    resource: &serde_json::Value,
) -> Result<(), crate::store::StoreError> {
    index(tx, resource_type, row_id, resource, true, &[]).await
}

/// Rewrites the index rows of a resource: its names (when `names`), and for each
/// `(parameter, element)` of `codes` the codes of that top-level element (a code or an array of
/// codes), which the parameter then finds exactly.
pub async fn index(
    tx: &mut crate::store::Tx,
    resource_type: &'static str,
    row_id: uuid::Uuid,
    resource: &serde_json::Value,
    names: bool,
    codes: &[(&'static str, &'static str)],
) -> Result<(), crate::store::StoreError> {
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM search_strings WHERE row_id = ? AND resource_type = ?",
            &[row_id.into(), resource_type.into()],
        )
        .await?;
    }
    let mut rows = if names {
        name_index(resource)
    } else {
        Vec::new()
    };
    for (param, key) in codes {
        let values = match resource.get(*key) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => vec![],
        };
        rows.extend(values.into_iter().map(|v| (*param, v)));
    }
    for (param, value) in rows {
        tx.insert_detached(
            "search_strings",
            &STRING_ROW,
            &[
                resource_type.into(),
                row_id.into(),
                param.into(),
                normalize(&value).into(),
                value.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The (parameter, value) pairs of the name index: every part of every name.
fn name_index(resource: &serde_json::Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let names = resource
        .get("name")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    for n in &names {
        let strings = |k: &str| -> Vec<String> {
            match n.get(k) {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            }
        };
        for f in strings("family") {
            out.push(("family", f.clone()));
            out.push(("name", f));
        }
        for g in strings("given") {
            out.push(("given", g.clone()));
            out.push(("name", g));
        }
        for k in ["prefix", "suffix", "text"] {
            for s in strings(k) {
                out.push(("name", s));
            }
        }
    }
    let items = |k: &str| {
        resource
            .get(k)
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for a in items("address") {
        let text = |k: &str| {
            a.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        for (k, param) in [
            ("city", "address-city"),
            ("state", "address-state"),
            ("postalCode", "address-postalcode"),
            ("country", "address-country"),
        ] {
            if let Some(v) = text(k) {
                out.push((param, v.clone()));
                out.push(("address", v));
            }
        }
        for k in ["district", "text"] {
            if let Some(v) = text(k) {
                out.push(("address", v));
            }
        }
        for line in a
            .get("line")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
        {
            out.push(("address", line.to_owned()));
        }
    }
    for t in items("telecom") {
        if let Some(v) = t.get("value").and_then(serde_json::Value::as_str) {
            out.push(("telecom", v.to_owned()));
            match t.get("system").and_then(serde_json::Value::as_str) {
                Some("phone") => out.push(("phone", v.to_owned())),
                Some("email") => out.push(("email", v.to_owned())),
                _ => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
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
        assert_eq!(token("abc"), (None, Some("abc")));
        assert_eq!(token("http://x|abc"), (Some(Some("http://x")), Some("abc")));
        assert_eq!(token("|abc"), (Some(None), Some("abc")));
        assert_eq!(token("http://x|"), (Some(Some("http://x")), None));
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

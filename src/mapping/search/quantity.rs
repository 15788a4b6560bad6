//! Quantity parameters and the code-value-quantity composites.

use super::*;

/// A quantity search value (`[prefix]number|system|code`) on a numeric column expression and
/// the expressions of its unit's system and code. `None` when the value is not a quantity.
pub(super) fn quantity_sql(
    column: &str,
    system: &str,
    code: &str,
    value: &str,
    dialect: Dialect,
) -> Option<(String, Vec<Arg>)> {
    let (prefix, rest) = Prefix::split(value);
    let (number, units) = crate::fhir::search::split_pipe(rest);
    let (unit_system, unit_code) = match units.map(crate::fhir::search::split_pipe) {
        Some((s, c)) => (Some(s), c.map(|c| crate::fhir::search::split_pipe(c).0)),
        None => (None, None),
    };
    let unit_system = unit_system.filter(|s| !s.is_empty());
    let unit_code = unit_code.filter(|s| !s.is_empty());
    let number = number.as_str();
    let v = crate::store::parse_decimal(number)?;
    let (col, param) = match dialect {
        Dialect::Sqlite => (format!("CAST({column} AS REAL)"), "CAST(? AS REAL)"),
        Dialect::Postgres => (format!("CAST({column} AS numeric)"), "CAST(? AS numeric)"),
    };
    // The implicit range of the number's precision: 5.4 stands for [5.35, 5.45). A number too
    // precise or too large for that arithmetic (28 digits) is not a value this server searches.
    let half = rust_decimal::Decimal::try_new(5, number_scale(number).checked_add(1)?).ok()?;
    let t = |d: rust_decimal::Decimal| Arg::Text(Some(d.normalize().to_string()));
    let (lo, hi) = (v.checked_sub(half)?, v.checked_add(half)?);
    let tenth = v.checked_div(rust_decimal::Decimal::TEN)?.abs();
    let (near_lo, near_hi) = (v.checked_sub(tenth)?, v.checked_add(tenth)?);
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
            vec![t(near_lo), t(near_hi)],
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

/// A quantity search value on an Observation's value as the `observations` view gives it (a
/// row's own value, tested row by row).
pub(super) fn observation_value(value: &str, dialect: Dialect) -> Option<(String, Vec<Arg>)> {
    quantity_sql(
        "t.value_quantity",
        "t.value_unit_system",
        "t.value_unit",
        value,
        dialect,
    )
}

/// The digits after the decimal point of a number as written (`5.40` has 2; `1e2` has 0).
pub(super) fn number_scale(number: &str) -> u32 {
    let mantissa = number.split(['e', 'E']).next().unwrap_or(number);
    mantissa
        .split_once('.')
        .map(|(_, f)| f.len() as u32)
        .unwrap_or(0)
}

/// The condition of one value of a parameter of target `Quantity`.
pub(super) fn quantity(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    column: &'static str,
    system: &'static str,
    code: &'static str,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
        let (text, args) = quantity_sql(
            &format!("t.{column}"),
            &format!("t.{system}"),
            &format!("t.{code}"),
            value,
            ctx.dialect,
        )
        .ok_or_else(|| bad("a quantity is [prefix]number|system|code"))?;
        sql(text, args)
    })
}

/// The condition of one value of a parameter of target `CodeValueQuantity`.
pub(super) fn code_value_quantity(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    top: bool,
    components: bool,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
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
                observation_code_rows(code, false, Some(quantity), ctx)
                    .ok_or_else(|| bad("a composite value is code$[prefix]number|system|code"))?,
            );
        } else if top {
            let c = one_value(&code_param, &Modifier::None, code, ctx)?;
            let (q, b) = observation_value(quantity, ctx.dialect)
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
        // (One part stays itself: a code and value alone can be walked.)
        match <[Cond; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => Cond::Or(parts),
        }
    })
}

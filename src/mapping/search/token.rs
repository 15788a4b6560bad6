//! Token parameters: codes in columns, in catalogs, in the identifier tables and in the
//! `search_strings` index; booleans; `:text` and `:of-type`.

use super::*;

/// Splits a token into (system, code): `code`, `system|code`, `|code`, `system|`; a `|` or `\`
/// escaped with `\` belongs to the system or code it is in.
pub(super) fn token(value: &str) -> (Option<Option<String>>, Option<String>) {
    let (first, rest) = crate::fhir::search::split_pipe(value);
    match rest {
        None => (None, Some(first)),
        Some(c) => {
            let code = crate::fhir::search::split_pipe(c).0;
            (
                Some((!first.is_empty()).then_some(first)),
                (!code.is_empty()).then_some(code),
            )
        }
    }
}

/// The conditions a token (`code`, `system|code`, `|code`, `system|`) puts on a code column and
/// its system column, ANDed; `None` when it names neither.
pub(super) fn token_match(
    value: &str,
    code_column: &str,
    system_column: &str,
) -> Option<(String, Vec<Arg>)> {
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

/// `:text`: a display or text that has a word starting with `value`, case-insensitively.
pub(super) fn text_match(target: &Target, value: &str) -> Cond {
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
pub(super) fn of_type(p: &SearchParam, value: &str, ctx: &Ctx) -> Option<Cond> {
    let Target::IdentifierTable { table, foreign_key } = p.target else {
        return None;
    };
    let (system, rest) = crate::fhir::search::split_pipe(value);
    let (code, rest) = crate::fhir::search::split_pipe(rest?);
    let id_value = crate::fhir::search::unescape(rest?);
    let (system, code, id_value) = (system.as_str(), code.as_str(), id_value.as_str());
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

/// The condition of one value of a parameter of target `FhirId`.
pub(super) fn fhir_id(value: &str) -> Result<Cond, SearchError> {
    Ok(sql("t.fhir_id = ?", vec![value.into()]))
}

/// The condition of one value of a parameter of target `TokenColumn`.
pub(super) fn token_column(
    value: &str,
    column: &'static str,
    system: Option<&'static str>,
) -> Result<Cond, SearchError> {
    Ok({
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
    })
}

/// The condition of one value of a parameter of target `TokenColumns`.
pub(super) fn token_columns(
    p: &SearchParam,
    value: &str,
    code: &'static str,
    system: &'static str,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
        let (cond, args) = token_match(value, &format!("t.{code}"), &format!("t.{system}"))
            .ok_or_else(|| bad("a token needs a code or a system"))?;
        sql(format!("({cond})"), args)
    })
}

/// The condition of one value of a parameter of target `CatalogToken`.
pub(super) fn catalog_token(
    p: &SearchParam,
    value: &str,
    column: &'static str,
    table: &'static str,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
        let (cond, args) = token_match(value, "c.code", "c.system")
            .ok_or_else(|| bad("a token needs a code or a system"))?;
        Cond::in_select(
            format!("t.{column}"),
            "c.id",
            format!("{table} c"),
            sql(cond, args),
        )
    })
}

/// The condition of one value of a parameter of target `BoolColumn`.
pub(super) fn bool_column(
    p: &SearchParam,
    value: &str,
    column: &'static str,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
        let (sys, code) = token(value);
        if sys.is_some_and(|s| s.is_some()) {
            return Err(bad("a boolean has no system"));
        }
        let b = match code.as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => return Err(bad("expected true or false")),
        };
        sql(format!("t.{column} = ?"), vec![Arg::Bool(Some(b))])
    })
}

/// The condition of one value of a parameter of target `IdentifierTable`.
pub(super) fn identifier_table(
    p: &SearchParam,
    value: &str,
    table: &'static str,
    foreign_key: &'static str,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
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
    })
}

/// The condition of one value of a parameter of target `CodeIndex`.
pub(super) fn code_index(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    system: &'static str,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
        let (sys, code) = token(value);
        if sys.is_some_and(|s| s.as_deref() != Some(system)) {
            return Ok(Cond::none());
        }
        let code = code.ok_or_else(|| bad("a code is needed"))?;
        index_rows(
            "search_strings",
            &format!(
                "s.resource_type = ? AND s.param = ? AND s.exact = ?{}",
                exact_bound(&code)
            ),
            vec![ctx.resource_type.into(), p.name.into(), code.into()],
        )
    })
}

/// The condition of one value of a parameter of target `IndexToken`.
pub(super) fn index_token(p: &SearchParam, value: &str, ctx: &Ctx) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    Ok({
        let (cond, mut args) = token_match(value, "s.exact", "s.value")
            .ok_or_else(|| bad("a token needs a code or a system"))?;
        // No system is kept as the empty string.
        let mut cond = cond.replace("s.value IS NULL", "s.value = ''");
        if let (_, Some(code)) = token(value) {
            cond = cond.replace("s.value = ?", super::SYSTEM_BESIDE_CODE);
            cond.push_str(exact_bound(&code));
        }
        let mut all = vec![Arg::from(ctx.resource_type), Arg::from(p.name)];
        all.append(&mut args);
        index_rows(
            "search_strings",
            &format!("s.resource_type = ? AND s.param = ? AND {cond}"),
            all,
        )
    })
}

/// The condition of one value of a parameter of target `IndexUri`.
pub(super) fn index_uri(p: &SearchParam, value: &str, ctx: &Ctx) -> Result<Cond, SearchError> {
    Ok(index_rows(
        "search_strings",
        &format!(
            "s.resource_type = ? AND s.param = ? AND s.exact = ?{}",
            exact_bound(value)
        ),
        vec![ctx.resource_type.into(), p.name.into(), value.into()],
    ))
}

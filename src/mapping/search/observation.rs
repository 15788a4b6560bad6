//! Observation codes, which live in three places: the code columns of results, the other
//! codings in `search_strings`, and the vital-sign measurements whose LOINC code it is.

use super::*;

/// The Observations with a code, listed from the indexes of each place a code lives (the code
/// columns of results, the other codings in `search_strings`, the vital-sign measurements whose
/// LOINC code it is), results and vital signs apart: `(t.source = 'result' AND t.id IN (...))
/// OR (t.source = 'vital' AND t.id IN (...))`; with `quantity`, only those whose value also
/// matches it (code-value-quantity).
///
/// A page can walk the Observations of the code in row id order (the indexes of codes and of
/// measurements end with the row id), testing the value on each row: the walk reads a bounded
/// number of rows whether few or most of the code's values match.
pub(super) fn observation_code_rows(
    token_value: &str,
    components: bool,
    quantity: Option<&str>,
    ctx: &Ctx,
) -> Option<Cond> {
    let q = QuantityMatch {
        value: quantity,
        dialect: ctx.dialect,
    };
    let (results, vitals) = code_arms(token_value, components, &q)?;
    let arms = || results.iter().chain(&vitals);
    let walked = List(arms().map(|(s, _)| s.clone()).collect());
    let (test, keeps) = match quantity {
        None => (Cond::And(vec![]), None),
        Some(v) => {
            let (text, args) = observation_value(v, ctx.dialect)?;
            let keeps = arms().map(|(_, k)| k.clone().unwrap_or_else(Cond::none));
            (sql(text, args), Some(keeps.collect()))
        }
    };
    // Each list is tested only against the view's branch of its own source (the other
    // branch's condition folds to false), so no row id is looked up where it cannot be.
    let parts = [("result", &results), ("vital", &vitals)]
        .into_iter()
        .map(|(source, arms)| {
            let list = List(arms.iter().map(with_value).collect());
            Cond::sql(format!("t.source = '{source}'")).and(Cond::In("t.id".into(), list))
        })
        .collect();
    Some(Cond::Walkable(
        Box::new(Cond::Or(parts)),
        walked,
        Box::new(test),
        keeps,
    ))
}

/// A select of a code's rows, with the test of their value if there is one.
type Arm = (Select, Option<Cond>);

/// The select of the rows of `arm` whose value matches too.
fn with_value((select, value): &Arm) -> Select {
    match value {
        Some(v) => Select {
            cond: select.cond.clone().and(v.clone()),
            ..select.clone()
        },
        None => select.clone(),
    }
}

/// The selects listing the results and the vital signs with a code, each (with a quantity in
/// `q`) with the test of its value.
fn code_arms(
    token_value: &str,
    components: bool,
    q: &QuantityMatch,
) -> Option<(Vec<Arm>, Vec<Arm>)> {
    // Results, by their code columns, and the codings of FHIR-written Observations (and of
    // their components) beyond the code columns.
    let coded = coding_cond(token_value, components);
    let (mut by_code, args) = token_match(token_value, "r.code", "r.code_system")?;
    // A short code names the partial index of codes and values (see `exact_bound`).
    if let (_, Some(code)) = token(token_value) {
        by_code.push_str(if short(&code) {
            " AND length(r.code) <= 250"
        } else {
            " AND length(r.code) > 250"
        });
    }
    let results = vec![
        q.arm(
            "r.id",
            "medical_test_results r",
            (by_code, args),
            RESULT_VALUE,
        )?,
        q.arm(
            "s.row_id",
            "search_strings s JOIN medical_test_results r ON r.id = s.row_id",
            coded.clone(),
            RESULT_VALUE,
        )?,
    ];
    // With a quantity, vital signs by the column of their measurement (column names and units
    // are the mapping's own data).
    let (value, unit) = measurement_cases();
    let mut vitals = vec![q.arm(
        "s.row_id",
        "search_strings s JOIN vital_sign_observations o ON o.id = s.row_id JOIN vital_signs v ON v.id = o.vital_sign_id",
        coded,
        (&value, UCUM, &unit),
    )?];
    vitals.extend(measurement_arms(token_value, components, q)?);
    Some((results, vitals))
}

/// The value, unit system and unit columns of a result.
const RESULT_VALUE: (&str, &str, &str) =
    ("r.value_quantity", "r.value_unit_system", "r.value_unit");
const UCUM: &str = "'http://unitsofmeasure.org'";

/// The quantity an Observation's value must also match (code-value-quantity), if any.
struct QuantityMatch<'a> {
    value: Option<&'a str>,
    dialect: Dialect,
}

impl QuantityMatch<'_> {
    /// An arm listing `column` of the rows of `from` that `cond` keeps, with a quantity the
    /// test that their value (value, unit system and unit expressions) matches it.
    fn arm(
        &self,
        column: &str,
        from: &str,
        (cond, args): (String, Vec<Arg>),
        (value, system, unit): (&str, &str, &str),
    ) -> Option<Arm> {
        let test = match self.value {
            Some(v) => {
                let (qt, qa) = quantity_sql(value, system, unit, v, self.dialect)?;
                Some(sql(qt, qa))
            }
            None => None,
        };
        let select = Select {
            column: column.to_owned(),
            from: from.to_owned(),
            cond: sql(cond, args),
        };
        Some((select, test))
    }
}

/// The condition on `search_strings s` of an Observation coding (of its components too).
fn coding_cond(token_value: &str, components: bool) -> (String, Vec<Arg>) {
    let (sys, code) = token(token_value);
    let params = if components {
        "('code', 'component-code')"
    } else {
        "('code')"
    };
    let mut coded = format!("s.resource_type = 'Observation' AND s.param IN {params}");
    let mut args: Vec<Arg> = Vec::new();
    if let Some(c) = code {
        coded.push_str(" AND s.exact = ?");
        coded.push_str(exact_bound(&c));
        args.push(c.into());
    }
    match sys {
        Some(Some(system)) => {
            // With a code, the code's index finds the rows.
            coded.push_str(" AND ");
            coded.push_str(if args.is_empty() {
                "s.value = ?"
            } else {
                super::SYSTEM_BESIDE_CODE
            });
            args.push(system.into());
        }
        Some(None) => coded.push_str(" AND s.value = ''"),
        None => {}
    }
    (coded, args)
}

/// The value and unit of a vital-sign Observation `o` of row `v`, as CASE expressions over its
/// measurement.
fn measurement_cases() -> (String, String) {
    let (mut value, mut unit) = (String::new(), String::new());
    for m in &crate::mapping::vital_data::table().measurements {
        if let Some(slot) = &m.value {
            let key = m.key.replace('\'', "''");
            value.push_str(&format!(" WHEN '{key}' THEN v.{}", slot.column));
            unit.push_str(&format!(
                " WHEN '{key}' THEN '{}'",
                slot.ucum.replace('\'', "''")
            ));
        }
    }
    (
        format!("CASE o.measurement{value} END"),
        format!("CASE o.measurement{unit} END"),
    )
}

/// Vital signs, by measurement: their codes are data (mappings/vital-signs.json).
fn measurement_arms(token_value: &str, components: bool, q: &QuantityMatch) -> Option<Vec<Arm>> {
    let mut arms = Vec::new();
    let loinc_matches = |c: &str| is_loinc_token(token_value, c);
    for m in &crate::mapping::vital_data::table().measurements {
        let own = loinc_matches(&m.code);
        let component = components
            && m.components
                .iter()
                .any(|s| s.code.as_deref().is_some_and(&loinc_matches));
        if !(own || component) {
            continue;
        }
        let keyed = || ("o.measurement = ?".to_owned(), vec![m.key.as_str().into()]);
        match (q.value, &m.value) {
            (None, _) => {
                arms.push(q.arm("o.id", "vital_sign_observations o", keyed(), ("", "", ""))?)
            }
            (Some(_), Some(slot)) if own => {
                let unit = format!("'{}'", slot.ucum.replace('\'', "''"));
                arms.push(q.arm(
                    "o.id",
                    "vital_sign_observations o JOIN vital_signs v ON v.id = o.vital_sign_id",
                    keyed(),
                    (&format!("v.{}", slot.column), UCUM, &unit),
                )?);
            }
            _ => {}
        }
    }
    Some(arms)
}

/// Whether a token search value matches the LOINC code `loinc` (the codes of vital signs).
pub(super) fn is_loinc_token(token_value: &str, loinc: &str) -> bool {
    let (sys, code) = token(token_value);
    code.is_none_or(|want| want == loinc)
        && match sys {
            None => true,
            Some(Some(s)) => s == crate::mapping::vital_data::LOINC,
            Some(None) => false,
        }
}

/// The vital-sign Observations written by the clinic that have a component coded `token_value`
/// whose value matches `quantity` (the systolic and diastolic columns of blood pressure), as
/// `t.id IN (...)` over one arm per matching column; `Some(None)` when no component has that
/// code, `None` when `quantity` is not a quantity.
pub(super) fn vital_component_rows(
    token_value: &str,
    quantity: &str,
    ctx: &Ctx,
) -> Option<Option<Cond>> {
    let matches = |c: &str| is_loinc_token(token_value, c);
    let mut arms = Vec::new();
    for m in &crate::mapping::vital_data::table().measurements {
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

/// The system and code of a token that names at least one of them.
fn coded(
    p: &SearchParam,
    value: &str,
) -> Result<(Option<Option<String>>, Option<String>), SearchError> {
    let (sys, code) = token(value);
    if code.is_none() && !matches!(sys, Some(Some(_))) {
        return Err(invalid(p, "a token needs a code or a system"));
    }
    Ok((sys, code))
}

/// An Observation code, listed from where codes live (see [`observation_code_rows`]).
pub(super) fn code_listed(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    components: bool,
) -> Result<Cond, SearchError> {
    coded(p, value)?;
    observation_code_rows(value, components, None, ctx)
        .ok_or_else(|| invalid(p, "a token needs a code or a system"))
}

/// An Observation code, tested row by row (another condition narrows the rows to a few).
pub(super) fn code_tested(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    components: bool,
) -> Result<Cond, SearchError> {
    let bad = |what: &str| invalid(p, what);
    let (sys, code) = coded(p, value)?;
    Ok({
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
            index.push_str(exact_bound(&c));
            args.push(c.as_str().into());
            vital.push_str(" AND c.code = ?");
            vital_args.push(c.into());
        }
        match sys {
            Some(Some(system)) => {
                index.push_str(" AND s.value = ?");
                args.push(system.as_str().into());
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
    })
}

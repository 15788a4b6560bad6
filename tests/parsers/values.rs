//! Search values: commas and escapes, tokens, quantities, and every parameter.

use expediente::fhir::search::{split_values, unescape};
use expediente::mapping::search::{SearchParam, Target};
use expediente::store::Dialect;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use rust_decimal::Decimal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::LazyLock;

use super::{
    config, count_values, dialect, search_sql, search_value, texts, MODIFIERS, PARAMS, PREFIXES,
};

/// The parameters `pick` keeps, as (type, parameter name).
fn params_where(pick: fn(&SearchParam) -> bool) -> Vec<(&'static str, &'static str)> {
    PARAMS
        .iter()
        .filter(|(_, p)| pick(p))
        .map(|(rt, p)| (*rt, p.name))
        .collect()
}

/// Escapes what separates search values: `\` `,` `$`, and `|` when `pipe`.
fn escape(s: &str, pipe: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '$') || (pipe && c == '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Token parameters whose condition binds the code and then the system of `system|code`.
static TOKEN_PARAMS: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
    params_where(|p| {
        matches!(
            p.target,
            Target::TokenColumns { .. }
                | Target::CatalogToken { .. }
                | Target::IndexToken
                | Target::IdentifierTable { .. }
        )
    })
});

/// The values a token binds: for the `search_strings` index its type and parameter first.
fn token_binds(rt: &str, name: &str, code: Option<&str>, system: Option<&str>) -> Vec<String> {
    let index = PARAMS
        .iter()
        .any(|(t, p)| *t == rt && p.name == name && matches!(p.target, Target::IndexToken));
    let mut out = Vec::new();
    if index {
        out.push(rt.to_owned());
        out.push(name.to_owned());
    }
    out.extend(code.map(str::to_owned));
    out.extend(system.map(str::to_owned));
    out
}

fn quantity_params() -> Vec<(&'static str, &'static str, bool)> {
    PARAMS
        .iter()
        .filter_map(|(rt, p)| match p.target {
            Target::Quantity { .. } => Some((*rt, p.name, false)),
            Target::CodeValueQuantity { .. } => Some((*rt, p.name, true)),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn escaped_values_are_split_back_into_what_was_escaped(
        values in vec("[a-z,$\\\\|é ]{0,6}", 1..6)
    ) {
        // Pipes escaped or not: a plain value's `\|` is its `|`.
        for pipe in [false, true] {
            let raw = values.iter().map(|v| escape(v, pipe)).collect::<Vec<_>>().join(",");
            let plain: Vec<String> = split_values(&raw).iter().map(|v| unescape(v)).collect();
            prop_assert_eq!(&plain, &values);
        }
    }

    #[test]
    fn values_are_split_on_every_unescaped_comma(raw in prop_oneof!["[a,\\\\$|]{0,40}", "\\PC{0,40}"]) {
        prop_assert_eq!(split_values(&raw).len(), count_values(&raw), "{:?}", raw);
    }

    #[test]
    fn tokens_with_escapes_bind_the_codes_and_systems_they_were_built_from(
        (rt, name) in select(TOKEN_PARAMS.clone()),
        tokens in vec(("[a-z:/.,$\\\\é]{1,12}", "[A-Za-z0-9.\\-,$\\\\ü]{1,10}", 0u8..4), 1..4),
    ) {
        let mut raw = Vec::new();
        let mut expected = Vec::new();
        for (system, code, form) in &tokens {
            let (s, c) = (escape(system, true), escape(code, true));
            let (text, binds) = match form {
                0 => (format!("{s}|{c}"), token_binds(rt, name, Some(code), Some(system))),
                1 => (format!("|{c}"), token_binds(rt, name, Some(code), None)),
                2 => (format!("{s}|"), token_binds(rt, name, None, Some(system))),
                _ => (c.clone(), token_binds(rt, name, Some(code), None)),
            };
            raw.push(text);
            expected.extend(binds);
        }
        let raw = raw.join(",");
        let r = search_sql(rt, name, &raw, Dialect::Postgres, false);
        prop_assert!(matches!(r, Ok(Some(_))), "{}?{}={}: {:?}", rt, name, raw, r.err());
        prop_assert_eq!(texts(&r.unwrap().unwrap()), expected, "{}?{}={}", rt, name, raw);
        prop_assert!(search_sql(rt, name, &raw, Dialect::Sqlite, false).is_ok());
    }

    // Regression: `\|` did not escape the separator of a token
    // (https://hl7.org/fhir/R4/search.html#escaping).
    #[test]
    fn an_escaped_pipe_belongs_to_the_code_or_system_it_is_in(
        (rt, name) in select(TOKEN_PARAMS.clone()),
        plain in "[a-z:/.]{1,8}",
        piped in "[a-z0-9]{0,4}\\|[a-z0-9]{0,4}",
        pipe_in_system in any::<bool>(),
    ) {
        let (system, code) = if pipe_in_system { (&piped, &plain) } else { (&plain, &piped) };
        let raw = format!("{}|{}", escape(system, true), escape(code, true));
        let r = search_sql(rt, name, &raw, Dialect::Postgres, false);
        prop_assert!(matches!(r, Ok(Some(_))), "{}?{}={}: {:?}", rt, name, raw, r.err());
        prop_assert_eq!(
            texts(&r.unwrap().unwrap()),
            token_binds(rt, name, Some(code), Some(system)),
            "{}?{}={}", rt, name, raw
        );
    }

    #[test]
    fn quantities_bind_the_number_range_system_and_code_they_were_built_from(
        negative in any::<bool>(),
        whole in 0u64..1_000_000,
        (scale, seed) in (0u32..7, any::<u64>()),
        prefix in select([&["" as &str][..], &PREFIXES[..]].concat()),
        (system, code, unit) in ("[a-z:/.]{1,20}", "[a-zA-Z%/]{1,5}", 0u8..4),
        dialect in dialect(),
    ) {
        let mut number = format!("{}{whole}", if negative { "-" } else { "" });
        if scale > 0 {
            let frac = seed % 10u64.pow(scale);
            number.push_str(&format!(".{frac:0w$}", w = scale as usize));
        }
        let (suffix, units) = match unit {
            0 => (String::new(), vec![]),
            1 => (format!("|{system}|{code}"), vec![system.clone(), code.clone()]),
            2 => (format!("||{code}"), vec![code.clone()]),
            _ => (format!("|{system}|"), vec![system.clone()]),
        };
        let value = format!("{prefix}{number}{suffix}");
        let v = Decimal::from_str(&number).unwrap();
        // 5.4 stands for [5.35, 5.45): half a unit of its last digit either side.
        let half = Decimal::new(5, scale + 1);
        let tenth = (v / Decimal::TEN).abs();
        let numbers = match prefix {
            "" | "eq" | "ne" => vec![v - half, v + half],
            "ap" => vec![v - tenth, v + tenth],
            _ => vec![v],
        };
        let r = search_sql("Observation", "value-quantity", &value, dialect, false);
        prop_assert!(matches!(r, Ok(Some(_))), "value-quantity={}: {:?}", value, r.err());
        let got = texts(&r.unwrap().unwrap());
        prop_assert_eq!(got.len(), numbers.len() + units.len(), "{}: {:?}", value, got);
        for (g, n) in got.iter().zip(&numbers) {
            prop_assert_eq!(Decimal::from_str(g).ok(), Some(*n), "{}: {:?}", value, got);
        }
        prop_assert_eq!(&got[numbers.len()..], &units[..], "{}", value);
    }

    // Regression: a quantity with 29 decimals or at the edge of rust_decimal's range overflowed
    // (a panic); it is refused.
    #[test]
    fn quantity_values_are_parsed_or_refused_without_panicking(
        (rt, name, composite) in select(quantity_params()),
        number in prop_oneof![
            "(ge|ap|ne|)-?[0-9]{1,30}(\\.[0-9]{0,32})?([eE][+-]?[0-9]{1,2})?",
            select(vec![
                "79228162514264337593543950335",
                "-79228162514264337593543950335",
                "ap79228162514264337593543950335",
                "7.9228162514264337593543950335",
                "1.00000000000000000000000000000",
            ]).prop_map(str::to_owned),
            "\\PC{0,20}",
        ],
        unit in prop_oneof![Just(String::new()), "\\|[a-z:/.]{0,12}\\|[a-z%]{0,4}"],
        narrow in any::<bool>(),
        dialect in dialect(),
    ) {
        let quantity = format!("{number}{unit}");
        let value = if composite { format!("http://loinc.org|8480-6${quantity}") } else { quantity };
        let r = catch_unwind(|| search_sql(rt, name, &value, dialect, narrow));
        prop_assert!(r.is_ok(), "{}?{}={} panicked", rt, name, value);
        if let Ok(Err(e)) = r {
            prop_assert!(e.contains(name), "{}?{}={}: {}", rt, name, value, e);
        }
    }

    #[test]
    fn every_search_parameter_answers_any_value_with_a_condition_or_an_error_naming_it(
        (rt, p) in select(PARAMS.clone()),
        modifier in select(MODIFIERS.to_vec()),
        raw in search_value(),
        narrow in any::<bool>(),
        dialect in dialect(),
    ) {
        let name = format!("{}{modifier}", p.name);
        let r = catch_unwind(AssertUnwindSafe(|| search_sql(rt, &name, &raw, dialect, narrow)));
        prop_assert!(r.is_ok(), "{}?{}={} panicked", rt, name, raw);
        match r.unwrap() {
            Ok(found) => prop_assert!(found.is_some(), "{}?{} unknown", rt, name),
            Err(e) => prop_assert!(e.contains(p.name), "{}?{}={}: {}", rt, name, raw, e),
        }
    }
}

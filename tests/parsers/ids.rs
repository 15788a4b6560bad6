//! FHIR ids, and the search values of reference parameters.

use expediente::fhir::Id;
use expediente::store::Dialect;
use proptest::prelude::*;
use proptest::sample::select;

use super::{bound, config, dialect, search_sql, texts, BASE, REFERENCE_PARAMS};

// ---------------------------------------------------------------------------------------------
// FHIR ids
// ---------------------------------------------------------------------------------------------

/// `[A-Za-z0-9\-\.]{1,64}` with a letter or digit, written from the specification.
fn matches_id_pattern(s: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    (1..=64).contains(&s.chars().count())
        && s.chars().all(allowed)
        && s.chars().any(|c| c.is_ascii_alphanumeric())
}

fn id_candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9.\\-]{0,70}",
        "[.\\-]{0,4}",
        "[A-Za-z0-9.\\-/_ %:é\\x00]{0,66}",
        "\\PC{0,70}",
        any::<String>(),
    ]
}

fn valid_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.\\-]{0,63}[A-Za-z0-9]"
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn ids_are_accepted_exactly_when_they_match_the_fhir_pattern(s in id_candidate()) {
        let parsed = Id::parse(&s);
        prop_assert_eq!(parsed.is_some(), matches_id_pattern(&s), "{:?}", s);
        if let Some(id) = parsed {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.to_string(), s);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// References (search values of reference parameters)
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn references_name_the_id_they_were_built_from_or_nothing_for_another_type_or_server(
        (rt, name, target) in select(REFERENCE_PARAMS.clone()),
        id in valid_id(),
        version in 1u32..10_000,
        form in 0usize..9,
        dialect in dialect(),
    ) {
        let other = if target == "Patient" { "Practitioner" } else { "Patient" };
        let (param, value, names_it) = match form {
            0 => (name.to_owned(), id.clone(), true),
            1 => (name.to_owned(), format!("{target}/{id}"), true),
            2 => (name.to_owned(), format!("{target}/{id}/_history/{version}"), true),
            3 => (name.to_owned(), format!("{BASE}/{target}/{id}"), true),
            4 => (name.to_owned(), format!("{BASE}/{target}/{id}/_history/{version}"), true),
            5 => (format!("{name}:{target}"), id.clone(), true),
            6 => (name.to_owned(), format!("{other}/{id}"), false),
            7 => (name.to_owned(), format!("http://elsewhere.example/fhir/{target}/{id}"), false),
            _ => (format!("{name}:{other}"), id.clone(), false),
        };
        let r = search_sql(rt, &param, &value, dialect, false);
        prop_assert!(matches!(r, Ok(Some(_))), "{}?{}={}: {:?}", rt, param, value, r.err());
        let r = r.unwrap().unwrap();
        if names_it {
            let got = texts(&r);
            prop_assert_eq!(got.last(), Some(&id), "{}?{}={}", rt, param, value);
        } else {
            prop_assert!(bound(&r).is_empty(), "{}?{}={} binds {:?}", rt, param, value, texts(&r));
        }
    }

    #[test]
    fn references_to_what_is_not_a_fhir_id_are_refused(
        (rt, name, target) in select(REFERENCE_PARAMS.clone()),
        bad in "\\PC{0,12}".prop_filter("not an id, one value, no path", |s| {
            !matches_id_pattern(s) && !s.contains(['/', ',', '\\'])
        }),
        form in 0usize..3,
    ) {
        let value = match form {
            0 => bad.clone(),
            1 => format!("{target}/{bad}"),
            _ => format!("{BASE}/{target}/{bad}/_history/1"),
        };
        let r = search_sql(rt, name, &value, Dialect::Sqlite, false);
        prop_assert!(r.is_err(), "{}?{}={} accepted", rt, name, value);
    }
}

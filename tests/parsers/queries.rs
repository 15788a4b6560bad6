//! Whole search queries and their documented limits, the result parameters, and history queries.

use chrono::DateTime;
use expediente::error::Error;
use expediente::fhir::date::parse_range;
use expediente::fhir::search::{self as vocabulary, MAX_CHAIN, MAX_COUNT, MAX_PARAMS, MAX_VALUES};
use expediente::fhir::subset::Summary;
use expediente::fhir::IssueType;
use expediente::interactions::{HistoryQuery, SearchQuery, SearchRequest};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use super::{
    config, count_values, date_like, search_value, valid_date, MODIFIERS, PARAMS, REFERENCE_PARAMS,
    REGISTRY,
};

/// The hosted types.
static TYPES: LazyLock<Vec<&'static str>> = LazyLock::new(|| REGISTRY.types());

/// Whether a search was refused as too costly (a 400 with a `too-costly` issue).
fn too_costly<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::BadRequest(issues)) if issues.iter().any(|i| i.code == IssueType::TooCostly))
}

static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = PARAMS.iter().map(|(_, p)| p.name).collect();
    names.sort_unstable();
    names.dedup();
    names
});

static REFERENCE_NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = REFERENCE_PARAMS.iter().map(|(_, n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    names
});

fn param_name() -> impl Strategy<Value = String> {
    let type_modifier = select(vec![
        "",
        ":Patient",
        ":Encounter",
        ":Practitioner",
        ":Group",
    ]);
    prop_oneof![
        3 => (select(NAMES.clone()), select(MODIFIERS.to_vec())).prop_map(|(n, m)| format!("{n}{m}")),
        2 => (vec((select(REFERENCE_NAMES.clone()), type_modifier), 1..6), select(NAMES.clone()))
            .prop_map(|(links, last)| {
                let mut s: String = links.iter().map(|(n, t)| format!("{n}{t}.")).collect();
                s.push_str(last);
                s
            }),
        2 => (vec((select(TYPES.clone()), select(REFERENCE_NAMES.clone())), 1..6), select(NAMES.clone()))
            .prop_map(|(links, last)| {
                let mut s: String = links.iter().map(|(t, n)| format!("_has:{t}:{n}:")).collect();
                s.push_str(last);
                s
            }),
        2 => select(vec![
            "_count", "_total", "_summary", "_elements", "_sort", "_include", "_revinclude",
            "_include:iterate", "_revinclude:iterate", "_include:recurse", "_include:x",
            "_cursor", "_format", "_pretty", "_has", "_has:", "_has:Observation", ".", "_id",
            "_lastUpdated", "_id:missing", "_text", "_content",
        ]).prop_map(str::to_owned),
        1 => "\\PC{0,16}",
        1 => "[a-z_:.%\\-]{0,16}",
    ]
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => search_value(),
        1 => "(Observation|Patient|Encounter|DiagnosticReport|\\*):[a-z\\-*]{0,10}(:[A-Za-z]{0,10})?",
        1 => "-?[a-z_\\-]{1,10}(,-?[a-z_\\-]{1,10}){0,3}",
        1 => "[a,\\\\]{0,400}",
        1 => "-?[0-9]{1,5}",
        1 => "[ab][A-Za-z0-9_\\-]{0,40}",
        1 => "(none|estimate|accurate|true|false|text|data|count|json|application/fhir\\+json|xml)",
    ]
}

/// Whether a search goes over a documented limit of the whole request (checked before any
/// parameter is read), counted here from its parameters.
fn over_the_limits(params: &[(String, String)]) -> bool {
    params.len() > MAX_PARAMS
        || params.iter().any(|(name, value)| {
            name.matches('.').count() + name.matches("_has:").count() > MAX_CHAIN
                || count_values(value) > MAX_VALUES
        })
}

/// Whether a search asks for a page larger than the largest (refused as too costly when its
/// `_count` is read, unless a parameter before it is refused first).
fn over_the_page_limit(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(name, value)| name == "_count" && value.parse::<i64>().is_ok_and(|n| n > MAX_COUNT))
}

fn parse_search(
    params: Vec<(String, String)>,
    strict: bool,
    rt: Option<&'static str>,
) -> Result<SearchQuery, Error> {
    SearchQuery::parse(&SearchRequest { params, strict }, &REGISTRY, rt)
}

fn pairs(name: &str, value: &str, n: usize) -> Vec<(String, String)> {
    vec![(name.to_owned(), value.to_owned()); n]
}

/// Whether `HistoryQuery::parse` should take `params`, written from its documentation.
fn history_ok(params: &[(String, String)]) -> bool {
    params.iter().all(|(k, v)| match k.as_str() {
        "_count" => v.parse::<i64>().is_ok_and(|n| (0..=MAX_COUNT).contains(&n)),
        "_since" => parse_range(v).is_some(),
        "_cursor" => {
            let parts: Vec<&str> = v.split('~').collect();
            parts.len() == 2
                && DateTime::parse_from_rfc3339(parts[0]).is_ok()
                && parts[1].parse::<i64>().is_ok()
        }
        _ => true,
    })
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn searches_of_arbitrary_parameters_are_parsed_or_refused_and_refused_over_the_limits(
        params in vec((param_name(), query_value()), 0..60),
        rt in prop::option::of(select(TYPES.clone())),
        strict in any::<bool>(),
    ) {
        let over = over_the_limits(&params);
        let limits = vocabulary::within_limits(&params);
        let r = catch_unwind(AssertUnwindSafe(|| parse_search(params.clone(), strict, rt)));
        prop_assert!(r.is_ok(), "{:?} on {:?} panicked", params, rt);
        let r = r.unwrap();
        prop_assert_eq!(limits.is_err(), over, "{:?}", params);
        // Over a request's limits, refused before anything else; otherwise too costly only for
        // a page past the largest.
        if over {
            prop_assert!(too_costly(&r), "{:?}: {:?}", params, r.as_ref().err());
        } else if too_costly(&r) {
            prop_assert!(over_the_page_limit(&params), "{:?}: {:?}", params, r.as_ref().err());
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn searches_beyond_the_documented_limits_are_refused_and_at_them_are_not(
        extra in 1usize..20,
        more in 1usize..50,
        links in 1usize..4,
        escaped in MAX_VALUES..3 * MAX_VALUES,
        rt in select(TYPES.clone()),
    ) {
        let parse = |params| parse_search(params, false, Some(rt));
        prop_assert!(parse(pairs("_id", "a", MAX_PARAMS)).is_ok());
        prop_assert!(too_costly(&parse(pairs("_id", "a", MAX_PARAMS + extra))));
        let values = |n| vec!["x"; n].join(",");
        prop_assert!(parse(pairs("_id", &values(MAX_VALUES), 1)).is_ok());
        prop_assert!(too_costly(&parse(pairs("_id", &values(MAX_VALUES + more), 1))));
        // An escaped comma separates nothing.
        prop_assert!(parse(pairs("_id", &vec!["x"; escaped].join("\\,"), 1)).is_ok());
        let chain = |n| format!("{}name", "subject.".repeat(n));
        prop_assert!(!too_costly(&parse(pairs(&chain(MAX_CHAIN), "x", 1))));
        prop_assert!(too_costly(&parse(pairs(&chain(MAX_CHAIN + links), "x", 1))));
        let has = |n| format!("{}code", "_has:Observation:patient:".repeat(n));
        prop_assert!(!too_costly(&parse(pairs(&has(MAX_CHAIN), "x", 1))));
        prop_assert!(too_costly(&parse(pairs(&has(MAX_CHAIN + links), "x", 1))));
    }
}

#[test]
fn a_chain_of_as_many_links_as_the_limit_is_searched() {
    let three = "encounter.subject.general-practitioner.name";
    assert_eq!(three.matches('.').count(), MAX_CHAIN);
    assert!(parse_search(pairs(three, "x", 1), true, Some("Observation")).is_ok());
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn result_parameters_take_their_documented_values_and_refuse_others(
        s in prop_oneof![
            "[+-]?[0-9]{1,20}",
            "\\PC{0,10}",
            "[a-zA-Z0-9_., ;]{0,16}",
            select(vec!["none", "estimate", "accurate", "true", "false", "text", "data", "count",
                "_include", "_revinclude", "_include:iterate", "_revinclude:recurse", "_include:x"])
                .prop_map(str::to_owned),
        ]
    ) {
        // A page past the largest is refused as too costly, naming the limit.
        let count = s.parse::<i64>().ok().filter(|n| (0..=MAX_COUNT).contains(n));
        prop_assert_eq!(vocabulary::count(&s).ok(), count);
        if let Some(n) = s.parse::<i64>().ok().filter(|n| *n > MAX_COUNT) {
            let e = vocabulary::count(&s).unwrap_err();
            prop_assert_eq!(e.code, expediente::fhir::IssueType::TooCostly);
            prop_assert!(e.diagnostics.contains(&format!("asks for {n} ")), "{}", e.diagnostics);
        }
        let total = match s.as_str() {
            "none" => Some(false),
            "estimate" | "accurate" => Some(true),
            _ => None,
        };
        prop_assert_eq!(vocabulary::total(&s).ok(), total);
        let summary = ["true", "text", "data", "count", "false"].contains(&s.as_str());
        prop_assert_eq!(Summary::parse(&s).is_some(), summary);
        let names: Vec<String> = s.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
        let element = |n: &String| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let elements = names.iter().all(element).then_some(names);
        prop_assert_eq!(vocabulary::elements(&s).ok(), elements);
        let include = match s.strip_prefix("_include").map(|m| (false, m))
            .or_else(|| s.strip_prefix("_revinclude").map(|m| (true, m)))
        {
            None => None,
            Some((reverse, "")) => Some(Some((reverse, false))),
            Some((reverse, ":iterate" | ":recurse")) => Some(Some((reverse, true))),
            Some(_) => Some(None),
        };
        prop_assert_eq!(vocabulary::include_name(&s).map(Result::ok), include);
    }

    #[test]
    fn history_queries_are_parsed_or_refused_as_documented(
        params in vec((
            select(vec!["_count", "_since", "_cursor", "_at", "x"]).prop_map(str::to_owned),
            prop_oneof![
                "-?[0-9]{1,20}",
                valid_date().prop_map(|d| d.0),
                date_like(),
                "\\PC{0,20}",
                (valid_date(), "-?[0-9]{1,6}|x|")
                    .prop_map(|(d, n)| format!("{}~{n}", d.1.to_rfc3339())),
            ],
        ), 0..6)
    ) {
        let r = catch_unwind(|| HistoryQuery::parse(&params));
        prop_assert!(r.is_ok(), "{:?} panicked", params);
        prop_assert_eq!(r.unwrap().is_ok(), history_ok(&params), "{:?}", params);
    }
}

// Regression (a failing case found by the property above, which then counted a page past the
// largest among the request's limits): `_count` over the largest alone is refused as too
// costly, and `within_limits`, which checks the request as a whole, leaves it to `_count`.
#[test]
fn a_page_past_the_largest_alone_is_too_costly() {
    let params = vec![("_count".to_owned(), (MAX_COUNT + 1).to_string())];
    assert!(vocabulary::within_limits(&params).is_ok());
    for (strict, rt) in [(false, None), (true, Some("Observation"))] {
        let r = parse_search(params.clone(), strict, rt);
        assert!(too_costly(&r), "{:?}", r.err());
    }
}

//! Property tests, in process, of the parsers at the server's edge: strict JSON bodies, FHIR
//! ids, reference search values, dates and the ranges they stand for, search values (date
//! prefixes, tokens with escapes, quantities), whole search and history queries with their
//! documented limits, the result parameters, and JSON Patch documents.
//!
//! Every parser must answer any input with a value or an error, never a panic, and give back
//! what a valid input was built from. The expected answers are written here independently of
//! the code under test (from https://hl7.org/fhir/R4/datatypes.html, search.html and RFC 6902).
//!
//! One module per section; the helpers and strategies that several sections use are here.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use expediente::fhir::search::split_values;
use expediente::mapping::filter::{self, filter_sql};
use expediente::mapping::search::{Ctx, Rendered, Restriction, SearchParam, COMMON};
use expediente::mapping::Registry;
use expediente::store::{Arg, Dialect};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};
use std::str::FromStr;
use std::sync::LazyLock;

mod dates;
mod ids;
mod json;
mod patch;
mod queries;
mod values;

// ---------------------------------------------------------------------------------------------
// Configuration, and the search parameters of the hosted types
// ---------------------------------------------------------------------------------------------

/// `cases` random inputs per property; failures are reported, not written beside the sources.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::standard);

/// The base URL the search conditions are built under: absolute references are local under it.
const BASE: &str = "http://localhost/fhir";

/// Every search parameter of every hosted type (the common ones included), with the type.
static PARAMS: LazyLock<Vec<(&'static str, &'static SearchParam)>> = LazyLock::new(|| {
    let registry: &'static Registry = &REGISTRY;
    registry
        .iter()
        .flat_map(|m| {
            let rt = m.resource_type();
            COMMON.iter().chain(m.search_params()).map(move |p| (rt, p))
        })
        .collect()
});

/// The reference parameters: type, parameter name, and the type they point to.
static REFERENCE_PARAMS: LazyLock<Vec<(&'static str, &'static str, &'static str)>> =
    LazyLock::new(|| {
        PARAMS
            .iter()
            .filter_map(|(rt, p)| filter::reference_target(p).map(|t| (*rt, p.name, t)))
            .collect()
    });

const PREFIXES: [&str; 9] = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];

/// Modifiers a client may send, understood or not.
const MODIFIERS: [&str; 13] = [
    "",
    ":missing",
    ":exact",
    ":contains",
    ":not",
    ":text",
    ":of-type",
    ":Patient",
    ":Encounter",
    ":above",
    ":iterate",
    ":",
    ":patient",
];

// ---------------------------------------------------------------------------------------------
// Search conditions (ids and references, dates, search values)
// ---------------------------------------------------------------------------------------------

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::Sqlite), Just(Dialect::Postgres)]
}

/// One parameter and its raw value the way a search takes them: the value split on commas, the
/// name parsed (modifier, chain, `_has`), then the condition built and written as SQL. `None`
/// for a parameter this server does not know.
fn search_sql(
    rt: &'static str,
    name: &str,
    raw: &str,
    dialect: Dialect,
    narrow: bool,
) -> Result<Option<Rendered>, String> {
    let restriction = Restriction::none();
    let ctx = Ctx {
        dialect,
        resource_type: rt,
        registry: &REGISTRY,
        base_url: BASE,
        narrow,
        restriction: &restriction,
    };
    let Some(f) = filter::parse(&REGISTRY, rt, name, split_values(raw)).map_err(|e| e.0)? else {
        return Ok(None);
    };
    let cond = filter_sql(&f, &ctx).map_err(|e| e.0)?;
    Ok(Some(Rendered::of(&cond, dialect)))
}

/// The values a condition binds, in order (those of its common table expressions first).
fn bound(r: &Rendered) -> Vec<&Arg> {
    r.with_args.iter().chain(&r.args).collect()
}

/// The text values a condition binds.
fn texts(r: &Rendered) -> Vec<String> {
    bound(r)
        .into_iter()
        .map(|a| match a {
            Arg::Text(Some(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// JSON values (strict JSON, JSON Patch)
// ---------------------------------------------------------------------------------------------

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,16}", "[a-zé😀 \t\r\n\"\\\\/]{0,8}"]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,3}", "\\PC{0,6}"]
}

/// A JSON number as a client may write it (at most 47 characters, always finite).
fn decimal_text() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,2})?"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("a finite number", |f| Number::from_f64(f)
            .map(Value::Number)),
        decimal_text().prop_map(|t| Value::Number(Number::from_str(&t).expect("a JSON number"))),
        json_string().prop_map(Value::String),
    ]
}

/// An object of `members`, each key kept once (the first), in the order given.
fn object(members: Vec<(String, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in members {
        m.entry(k).or_insert(v);
    }
    Value::Object(m)
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((json_key(), inner), 0..6).prop_map(object),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Dates and the ranges they stand for (dates, search values, history)
// ---------------------------------------------------------------------------------------------

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

fn first_of_next_month(d: NaiveDate) -> NaiveDate {
    use chrono::Datelike;
    if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1).unwrap()
    }
}

/// A valid date, dateTime or instant with years 1 to 9999, as (text, start, end): the text and
/// the half-open range it stands for, worked out from its parts.
fn valid_date() -> impl Strategy<Value = (String, DateTime<Utc>, DateTime<Utc>)> {
    let day = (1i32..=9999, 1u32..=12, 1u32..=31).prop_filter_map("a calendar day", |(y, m, d)| {
        NaiveDate::from_ymd_opt(y, m, d)
    });
    let time = (0u32..24, 0u32..60, 0u32..60);
    let fraction = (1u32..=9, any::<u32>());
    // 0: no zone (UTC), 1: Z, 2: an offset of whole quarters of an hour up to 14 hours.
    let zone = (0u8..3, -56i32..=56);
    (day, time, 0u8..6, fraction, zone).prop_map(
        |(day, (h, mi, s), precision, (digits, seed), (zone, quarters))| {
            use chrono::Datelike;
            let (y, m, d) = (day.year(), day.month(), day.day());
            match precision {
                0 => {
                    let jan1 = NaiveDate::from_ymd_opt(y, 1, 1).unwrap();
                    let next = NaiveDate::from_ymd_opt(y + 1, 1, 1).unwrap();
                    (format!("{y:04}"), midnight(jan1), midnight(next))
                }
                1 => {
                    let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
                    (
                        format!("{y:04}-{m:02}"),
                        midnight(first),
                        midnight(first_of_next_month(first)),
                    )
                }
                2 => (
                    format!("{y:04}-{m:02}-{d:02}"),
                    midnight(day),
                    midnight(day.succ_opt().unwrap()),
                ),
                _ => {
                    let mut text = format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}");
                    let (secs, nanos, step) = match precision {
                        3 => (0, 0, Duration::minutes(1)),
                        4 => {
                            text.push_str(&format!(":{s:02}"));
                            (s, 0, Duration::seconds(1))
                        }
                        _ => {
                            let unit = 10u32.pow(9 - digits);
                            let frac = seed % 10u32.pow(digits);
                            text.push_str(&format!(":{s:02}.{frac:0w$}", w = digits as usize));
                            (s, frac * unit, Duration::nanoseconds(unit.into()))
                        }
                    };
                    let offset_minutes = quarters * 15;
                    match zone {
                        0 => {}
                        1 => text.push('Z'),
                        _ => {
                            let sign = if offset_minutes < 0 { '-' } else { '+' };
                            let a = offset_minutes.abs();
                            text.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
                        }
                    }
                    let offset = if zone == 2 { offset_minutes * 60 } else { 0 };
                    let local = day.and_hms_nano_opt(h, mi, secs, nanos).unwrap();
                    let start = FixedOffset::east_opt(offset)
                        .unwrap()
                        .from_local_datetime(&local)
                        .single()
                        .unwrap()
                        .to_utc();
                    (text, start, start + step)
                }
            }
        },
    )
}

/// Date-like text with four-digit years, valid or not.
fn date_like() -> impl Strategy<Value = String> {
    "[0-9]{4}(-[0-9]{1,2}(-[0-9]{1,2}(T[0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{1,12})?)?(Z|[+-][0-9]{1,2}:[0-9]{1,2})?)?)?)?"
}

// ---------------------------------------------------------------------------------------------
// Search values (search values, whole searches)
// ---------------------------------------------------------------------------------------------

/// The number of values in a parameter value: unescaped commas, plus one.
fn count_values(v: &str) -> usize {
    let mut n = 1;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            ',' => n += 1,
            _ => {}
        }
    }
    n
}

/// Values a client may send to any parameter (numbers too short to reach rust_decimal's
/// limits, and four-digit years: those are properties of their own).
fn search_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[a-z0-9|,$\\\\%.:/\\- ]{0,24}",
        (select(PREFIXES.to_vec()), date_like()).prop_map(|(p, d)| format!("{p}{d}")),
        "(eq|gt|ap|)-?[0-9]{1,4}(\\.[0-9]{1,6})?(\\|[a-z:/.]{0,10}(\\|[a-z%]{0,4})?)?",
        "[a-z0-9|]{0,8}\\$(ge)?[0-9.]{0,8}(\\|[a-z]{0,3}\\|[a-z]{0,3})?",
        "(Patient|Encounter|Practitioner|Observation|http://localhost/fhir/Patient|http://x/Patient)/[A-Za-z0-9.\\-]{0,8}(/_history/[0-9]{1,3})?",
        "(true|false|[a-z]{1,8}\\|[a-z]{1,8}\\|[a-z0-9]{1,8})",
    ]
}

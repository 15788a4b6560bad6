//! Dates, dateTimes and instants: the ranges they stand for, prefixes, and date search values.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use expediente::fhir::date::{parse_range, Prefix};
use expediente::mapping::search::Target;
use expediente::store::{Arg, Dialect};
use proptest::prelude::*;
use proptest::sample::select;
use std::panic::catch_unwind;
use std::sync::LazyLock;

use super::{bound, config, date_like, dialect, search_sql, valid_date, PARAMS, PREFIXES};

/// The prefix its two letters name.
fn prefix_of(p: &str) -> Prefix {
    match p {
        "ne" => Prefix::Ne,
        "gt" => Prefix::Gt,
        "lt" => Prefix::Lt,
        "ge" => Prefix::Ge,
        "le" => Prefix::Le,
        "sa" => Prefix::Sa,
        "eb" => Prefix::Eb,
        "ap" => Prefix::Ap,
        _ => Prefix::Eq,
    }
}

/// Dates and dateTimes near the first and last days chrono can hold (years -262,143 to
/// 262,142), and a little beyond.
fn extreme_date() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        4 => select(vec![-262_144i32, -262_143, 262_142, 262_143]),
        1 => prop_oneof![-262_146i32..=-200_000, 200_000i32..=262_146],
    ];
    let day = select(vec!["01-01", "12-31"]);
    let time = select(vec![
        "T00:00",
        "T00:00:00",
        "T23:58",
        "T23:59",
        "T23:59:59",
        "T23:59:59.999999999",
    ]);
    let zone = select(vec!["", "Z", "+00:00", "+01:00", "-01:00", "+14:00"]);
    (year, day, time, zone).prop_map(|(y, d, t, z)| format!("{y:+07}-{d}{t}{z}"))
}

/// Values with a month, day, hour, minute or offset that does not exist.
fn impossible_date() -> impl Strategy<Value = String> {
    let year = 1i32..=9999;
    let no_such_day = (year.clone(), 1u32..=12, 0u32..=99)
        .prop_filter("no such day", |(y, m, d)| {
            NaiveDate::from_ymd_opt(*y, *m, *d).is_none()
        })
        .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    prop_oneof![
        (year.clone(), prop_oneof![Just(0u32), 13u32..=99])
            .prop_map(|(y, m)| format!("{y:04}-{m:02}")),
        no_such_day.clone(),
        no_such_day.prop_map(|d| format!("{d}T10:00Z")),
        (year.clone(), 24u32..=99).prop_map(|(y, h)| format!("{y:04}-01-01T{h:02}:00Z")),
        (year.clone(), 60u32..=99).prop_map(|(y, m)| format!("{y:04}-01-01T10:{m:02}:00")),
        (year, 24u32..=99).prop_map(|(y, h)| format!("{y:04}-01-01T10:00+{h:02}:00")),
    ]
}

/// The date parameters, and whether their column holds days (`date`) rather than instants.
static DATE_PARAMS: LazyLock<Vec<(&'static str, &'static str, bool)>> = LazyLock::new(|| {
    PARAMS
        .iter()
        .filter_map(|(rt, p)| match p.target {
            Target::Period { .. } | Target::LastUpdated => Some((*rt, p.name, false)),
            Target::DateColumn { .. } => Some((*rt, p.name, true)),
            _ => None,
        })
        .collect()
});

/// An instant far from the ends of the calendar, for `ap`.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn valid_dates_parse_to_the_range_they_stand_for((text, start, end) in valid_date()) {
        let r = parse_range(&text);
        prop_assert!(r.is_some(), "{} refused", text);
        let r = r.unwrap();
        prop_assert_eq!((r.start, r.end), (start, end), "{}", text);
        // The value written is the first instant of its range.
        prop_assert!(r.start <= start && start < r.end);
    }

    #[test]
    fn impossible_months_days_hours_minutes_and_offsets_are_refused(
        text in impossible_date(),
        prefix in select(PREFIXES.to_vec()),
    ) {
        prop_assert!(parse_range(&text).is_none(), "{} accepted", text);
        for (rt, name, _) in DATE_PARAMS.iter().filter(|(rt, _, _)| *rt == "Observation" || *rt == "Patient") {
            let r = search_sql(rt, name, &format!("{prefix}{text}"), Dialect::Sqlite, false);
            prop_assert!(r.is_err(), "{}?{}={}{} accepted", rt, name, prefix, text);
        }
    }

    #[test]
    fn prefixes_are_split_off_search_values(
        p in select(PREFIXES.to_vec()),
        given in any::<bool>(),
        rest in prop_oneof![valid_date().prop_map(|d| d.0), "\\PC{0,12}"],
    ) {
        let value = if given { format!("{p}{rest}") } else { rest.clone() };
        let (prefix, tail) = Prefix::split(&value);
        if given {
            prop_assert_eq!((prefix, tail), (prefix_of(p), rest.as_str()));
        } else {
            match PREFIXES.iter().find(|k| rest.starts_with(**k)) {
                Some(k) => prop_assert_eq!((prefix, tail), (prefix_of(k), &rest[2..])),
                None => prop_assert_eq!((prefix, tail), (Prefix::Eq, rest.as_str())),
            }
        }
    }

    // Regression: counting and widening the range of a date at the end of chrono's calendar
    // overflowed (a panic); dates have four-digit years.
    #[test]
    fn the_range_of_an_accepted_date_can_be_counted_in_days_and_widened_for_ap(
        text in prop_oneof![extreme_date(), valid_date().prop_map(|d| d.0)]
    ) {
        // Values whose parsing panics belong to date_values_are_parsed_or_refused_without_panicking.
        let parsed = catch_unwind(|| parse_range(&text));
        prop_assume!(parsed.is_ok());
        let Ok(Some(r)) = parsed else { return Ok(()) };
        let days = catch_unwind(|| r.days());
        prop_assert!(days.is_ok(), "days() of {} panicked", text);
        let (first, after) = days.unwrap();
        prop_assert!(first <= r.start.date_naive() && (r.end - Duration::nanoseconds(1)).date_naive() < after);
        let wide = catch_unwind(|| r.approximate(now()));
        prop_assert!(wide.is_ok(), "approximate() of {} panicked", text);
        let wide = wide.unwrap();
        prop_assert!(wide.start <= r.start - Duration::days(1) && r.end + Duration::days(1) <= wide.end);
    }

    #[test]
    fn date_search_values_bind_the_range_they_stand_for(
        (text, start, end) in valid_date(),
        prefix in select(PREFIXES.to_vec()),
        (rt, name, days) in select(DATE_PARAMS.clone()),
        dialect in dialect(),
    ) {
        let value = format!("{prefix}{text}");
        let r = search_sql(rt, name, &value, dialect, false);
        prop_assert!(matches!(r, Ok(Some(_))), "{}?{}={}: {:?}", rt, name, value, r.err());
        let r = r.unwrap().unwrap();
        // As instants (in nanoseconds), or as days for a date column: [first day, day after
        // the last).
        let (lo, hi, binds): (i128, i128, Vec<i128>) = if days {
            let day = |d: NaiveDate| i128::from(d.signed_duration_since(NaiveDate::MIN).num_days());
            let last = (end - Duration::nanoseconds(1)).date_naive();
            let values = bound(&r).iter().map(|a| match a {
                Arg::Date(Some(d)) => Ok(day(*d)),
                other => Err(format!("{other:?}")),
            }).collect::<Result<Vec<_>, _>>();
            prop_assert!(values.is_ok(), "{}: {:?}", value, values);
            (day(start.date_naive()), day(last) + 1, values.unwrap())
        } else {
            let ns = |t: DateTime<Utc>| {
                i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
            };
            let values = bound(&r).iter().map(|a| match a {
                Arg::Timestamp(Some(t)) => Ok(ns(*t)),
                other => Err(format!("{other:?}")),
            }).collect::<Result<Vec<_>, _>>();
            prop_assert!(values.is_ok(), "{}: {:?}", value, values);
            (ns(start), ns(end), values.unwrap())
        };
        prop_assert!(!binds.is_empty(), "{} binds nothing", value);
        if prefix == "ap" {
            // Widened by at least a day on both sides.
            let a_day = if days { 1 } else { 86_400 * 1_000_000_000 };
            prop_assert!(binds.iter().min().unwrap() <= &(lo - a_day), "{}: {:?}", value, binds);
            prop_assert!(binds.iter().max().unwrap() >= &(hi + a_day), "{}: {:?}", value, binds);
        } else {
            prop_assert!(binds.iter().all(|b| *b == lo || *b == hi), "{}: {:?} not in [{}, {})", value, binds, lo, hi);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    // Regression: a dateTime in the last minute of chrono's calendar (`+262142-12-31T23:59Z`)
    // overflowed (a panic); dates have four-digit years.
    #[test]
    fn date_values_are_parsed_or_refused_without_panicking(
        text in prop_oneof![4 => extreme_date(), 1 => date_like(), 1 => "\\PC{0,30}"]
    ) {
        let r = catch_unwind(|| parse_range(&text));
        prop_assert!(r.is_ok(), "parse_range({:?}) panicked", text);
        if let Ok(Some(r)) = r {
            prop_assert!(r.start < r.end, "{}", text);
        }
    }
}

//! Property tests: random date and token searches over a random set of Observations, the
//! server's answer compared with a plain in-memory filter written from the FHIR search rules
//! (https://hl7.org/fhir/R4/search.html#date, #token), on SQLite and PostgreSQL.

mod common;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use common::{Engine, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const SYSTEMS: &[&str] = &["http://loinc.org", "http://clinic.example/codes"];
const CODES: &[&str] = &["1000-1", "2000-2", "3000-3"];
const STATUSES: &[&str] = &["final", "preliminary", "amended"];

/// When an Observation happened: an instant to the second, or a Period.
#[derive(Debug, Clone)]
enum Effective {
    None,
    At(DateTime<FixedOffset>),
    /// A date of lower precision (`2023`, `2023-05`, `2023-05-17`) and the range it stands for.
    Date(String, DateTime<Utc>, DateTime<Utc>),
    Period(DateTime<FixedOffset>, Option<DateTime<FixedOffset>>),
}

#[derive(Debug, Clone)]
struct Obs {
    id: String,
    system: &'static str,
    code: &'static str,
    status: &'static str,
    effective: Effective,
}

impl Obs {
    /// The range the element stands for: [start, end) in UTC, an open end for ever.
    fn range(&self) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        let second = Duration::seconds(1);
        match &self.effective {
            Effective::None => None,
            Effective::At(t) => Some((t.to_utc(), Some(t.to_utc() + second))),
            Effective::Date(_, a, b) => Some((*a, Some(*b))),
            Effective::Period(s, e) => Some((s.to_utc(), e.map(|e| e.to_utc() + second))),
        }
    }

    fn resource(&self) -> Value {
        let mut o = json!({"resourceType": "Observation", "id": self.id, "status": self.status,
            "code": {"coding": [{"system": self.system, "code": self.code}]},
            "valueString": "x"});
        let fmt = |t: &DateTime<FixedOffset>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        match &self.effective {
            Effective::None => {}
            Effective::At(t) => o["effectiveDateTime"] = json!(fmt(t)),
            Effective::Date(text, _, _) => o["effectiveDateTime"] = json!(text),
            Effective::Period(s, e) => {
                o["effectivePeriod"] = json!({"start": fmt(s)});
                if let Some(e) = e {
                    o["effectivePeriod"]["end"] = json!(fmt(e));
                }
            }
        }
        o
    }
}

/// A small deterministic generator, so the dataset is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn instant(&mut self) -> DateTime<FixedOffset> {
        let offset = FixedOffset::east_opt(([-5, 0, 1, 9][self.next(4) as usize]) * 3600).unwrap();
        let day =
            NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + Duration::days(self.next(500) as i64);
        let t = day
            .and_hms_opt(
                self.next(24) as u32,
                [0, 30, 59][self.next(3) as usize],
                [0, 30][self.next(2) as usize],
            )
            .unwrap();
        offset.from_local_datetime(&t).unwrap()
    }
}

fn dataset() -> Vec<Obs> {
    let mut g = Lcg(20261127);
    (0..40)
        .map(|i| {
            let effective = match g.next(6) {
                0 => Effective::None,
                1 | 2 => Effective::At(g.instant()),
                3 => {
                    let d = g.instant().date_naive();
                    let utc =
                        |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap());
                    match g.next(3) {
                        0 => Effective::Date(
                            d.format("%Y-%m-%d").to_string(),
                            utc(d),
                            utc(d + Duration::days(1)),
                        ),
                        1 => {
                            let first = d.with_day_one();
                            let next = (first + Duration::days(32)).with_day_one();
                            Effective::Date(
                                first.format("%Y-%m").to_string(),
                                utc(first),
                                utc(next),
                            )
                        }
                        _ => {
                            use chrono::Datelike;
                            let y = d.year();
                            let a = NaiveDate::from_ymd_opt(y, 1, 1).unwrap();
                            let b = NaiveDate::from_ymd_opt(y + 1, 1, 1).unwrap();
                            Effective::Date(format!("{y}"), utc(a), utc(b))
                        }
                    }
                }
                _ => {
                    let s = g.instant();
                    let e = (g.next(4) > 0).then(|| s + Duration::hours(g.next(24 * 40) as i64));
                    Effective::Period(s, e)
                }
            };
            Obs {
                id: format!("o{i}"),
                system: SYSTEMS[g.next(2) as usize],
                code: CODES[g.next(3) as usize],
                status: STATUSES[g.next(3) as usize],
                effective,
            }
        })
        .collect()
}

/// A date search value at some precision, and the range it stands for.
#[derive(Debug, Clone)]
struct DateValue {
    text: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn date_value() -> impl Strategy<Value = DateValue> {
    (
        0u32..5,
        0i64..520,
        0u32..24,
        0u32..60,
        0u32..60,
        prop::sample::select(vec![-5i32, 0, 2]),
    )
        .prop_map(|(precision, day, h, m, s, tz)| {
            let d = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + Duration::days(day);
            let utc = |n: chrono::NaiveDateTime| Utc.from_utc_datetime(&n);
            let off = FixedOffset::east_opt(tz * 3600).unwrap();
            let zone = if tz == 0 {
                "Z".to_owned()
            } else {
                off.to_string()
            };
            match precision {
                0 => {
                    let y = d.format("%Y").to_string().parse::<i32>().unwrap();
                    let a = NaiveDate::from_ymd_opt(y, 1, 1)
                        .unwrap()
                        .and_hms_opt(0, 0, 0)
                        .unwrap();
                    let b = NaiveDate::from_ymd_opt(y + 1, 1, 1)
                        .unwrap()
                        .and_hms_opt(0, 0, 0)
                        .unwrap();
                    DateValue {
                        text: format!("{y}"),
                        start: utc(a),
                        end: utc(b),
                    }
                }
                1 => {
                    let first = d.with_day_one();
                    let next = if first.format("%m").to_string() == "12" {
                        NaiveDate::from_ymd_opt(
                            first.format("%Y").to_string().parse::<i32>().unwrap() + 1,
                            1,
                            1,
                        )
                        .unwrap()
                    } else {
                        first + Duration::days(32)
                    }
                    .with_day_one();
                    DateValue {
                        text: first.format("%Y-%m").to_string(),
                        start: utc(first.and_hms_opt(0, 0, 0).unwrap()),
                        end: utc(next.and_hms_opt(0, 0, 0).unwrap()),
                    }
                }
                2 => DateValue {
                    text: d.format("%Y-%m-%d").to_string(),
                    start: utc(d.and_hms_opt(0, 0, 0).unwrap()),
                    end: utc((d + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap()),
                },
                3 => {
                    let t = off
                        .from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
                        .unwrap();
                    DateValue {
                        text: format!("{}{zone}", t.format("%Y-%m-%dT%H:%M")),
                        start: t.to_utc(),
                        end: t.to_utc() + Duration::minutes(1),
                    }
                }
                _ => {
                    let t = off
                        .from_local_datetime(&d.and_hms_opt(h, m, s).unwrap())
                        .unwrap();
                    DateValue {
                        text: format!("{}{zone}", t.format("%Y-%m-%dT%H:%M:%S")),
                        start: t.to_utc(),
                        end: t.to_utc() + Duration::seconds(1),
                    }
                }
            }
        })
}

trait FirstDay {
    fn with_day_one(&self) -> NaiveDate;
}

impl FirstDay for NaiveDate {
    fn with_day_one(&self) -> NaiveDate {
        use chrono::Datelike;
        self.with_day(1).unwrap()
    }
}

/// The date prefixes compared here (`ap` depends on the clock and is tested on its own).
const PREFIXES: &[&str] = &["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"];

/// The FHIR rule for a prefix, target range [a, b) (b `None` for an open end), value [lo, hi).
fn date_matches(
    prefix: &str,
    target: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    v: &DateValue,
) -> bool {
    let Some((a, b)) = target else {
        return false;
    };
    let (lo, hi) = (v.start, v.end);
    let contained = a >= lo && b.is_some_and(|b| b <= hi);
    let above = b.is_none_or(|b| b > hi);
    let below = a < lo;
    match prefix {
        "" | "eq" => contained,
        "ne" => !contained,
        "gt" => above,
        "lt" => below,
        "ge" => contained || above,
        "le" => contained || below,
        "sa" => a >= hi,
        "eb" => b.is_some_and(|b| b <= lo),
        _ => unreachable!(),
    }
}

/// A token search on `code` or `status`, and its in-memory meaning.
#[derive(Debug, Clone)]
enum TokenQuery {
    Code {
        system: Option<Option<&'static str>>,
        code: Option<&'static str>,
        not: bool,
    },
    Status(Vec<&'static str>, bool),
}

impl TokenQuery {
    fn query(&self) -> String {
        match self {
            TokenQuery::Code { system, code, not } => {
                let v = match (system, code) {
                    (None, Some(c)) => c.to_string(),
                    (Some(Some(s)), Some(c)) => format!("{s}|{c}"),
                    (Some(None), Some(c)) => format!("|{c}"),
                    (Some(Some(s)), None) => format!("{s}|"),
                    _ => unreachable!(),
                };
                format!("code{}={}", if *not { ":not" } else { "" }, enc(&v))
            }
            TokenQuery::Status(codes, not) => format!(
                "status{}={}",
                if *not { ":not" } else { "" },
                codes.join(",")
            ),
        }
    }

    fn matches(&self, o: &Obs) -> bool {
        match self {
            TokenQuery::Code { system, code, not } => {
                let hit = code.is_none_or(|c| c == o.code)
                    && match system {
                        None => true,
                        Some(Some(s)) => *s == o.system,
                        Some(None) => false,
                    };
                hit != *not
            }
            TokenQuery::Status(codes, not) => codes.contains(&o.status) != *not,
        }
    }
}

fn token_query() -> impl Strategy<Value = TokenQuery> {
    let system = prop_oneof![
        Just(None),
        Just(Some(None)),
        prop::sample::select(SYSTEMS.to_vec()).prop_map(|s| Some(Some(s)))
    ];
    let code = prop::sample::select(CODES.to_vec());
    prop_oneof![
        (system, code, any::<bool>(), any::<bool>()).prop_map(|(system, code, drop_code, not)| {
            // `system|` alone names every code of the system.
            let code = match (&system, drop_code) {
                (Some(Some(_)), true) => None,
                _ => Some(code),
            };
            TokenQuery::Code { system, code, not }
        }),
        (
            prop::sample::subsequence(STATUSES.to_vec(), 1..3),
            any::<bool>()
        )
            .prop_map(|(c, not)| TokenQuery::Status(c, not)),
    ]
}

fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

async fn search(app: &TestApp, query: &str) -> BTreeSet<String> {
    let r = app
        .get(&format!("/fhir/Observation?{query}&_count=1000"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    TestApp::ids(&r.body).into_iter().collect()
}

fn run(engine: Engine) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = dataset();
    let app = rt.block_on(async {
        let app = TestApp::spawn(engine).await;
        for o in &data {
            let r = app
                .put(&format!("/fhir/Observation/{}", o.id), &o.resource())
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
        app
    });
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(PREFIXES.to_vec()),
        date_value(),
        prop::option::of(token_query()),
    );
    runner
        .run(&strategy, |(prefix, value, token)| {
            let mut query = format!("date={prefix}{}", enc(&value.text));
            if let Some(t) = &token {
                query = format!("{query}&{}", t.query());
            }
            let got = rt.block_on(search(&app, &query));
            let want: BTreeSet<String> = data
                .iter()
                .filter(|o| date_matches(prefix, o.range(), &value))
                .filter(|o| token.as_ref().is_none_or(|t| t.matches(o)))
                .map(|o| o.id.clone())
                .collect();
            prop_assert!(
                got == want,
                "{}: only the server {:?}, only the filter {:?}",
                query,
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>()
            );
            Ok(())
        })
        .unwrap();
    // Tokens alone too, and :missing.
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&token_query(), |t| {
            let got = rt.block_on(search(&app, &t.query()));
            let want: BTreeSet<String> = data
                .iter()
                .filter(|o| t.matches(o))
                .map(|o| o.id.clone())
                .collect();
            prop_assert!(
                got == want,
                "{}: only the server {:?}, only the filter {:?}",
                t.query(),
                got.difference(&want).collect::<Vec<_>>(),
                want.difference(&got).collect::<Vec<_>>()
            );
            Ok(())
        })
        .unwrap();
    let missing: BTreeSet<String> = data
        .iter()
        .filter(|o| o.range().is_none())
        .map(|o| o.id.clone())
        .collect();
    assert!(!missing.is_empty());
    assert_eq!(rt.block_on(search(&app, "date:missing=true")), missing);
    drop(app);
}

#[test]
fn sqlite_date_and_token_searches_agree_with_an_in_memory_filter() {
    run(Engine::Sqlite);
}

#[test]
fn postgres_date_and_token_searches_agree_with_an_in_memory_filter() {
    run(Engine::Postgres);
}

//! Search inputs: queries made of the server's search parameters, modifiers, prefixes, chains
//! and `_has`, with values drawn from the resources and mutated, sent by GET or POST `_search`.

use super::generate::{extra_headers, type_index, Corpus, Input, CONTENT_TYPES, TYPES};
use super::mutate::{long_string, odd_number, odd_reference, odd_text, Rng};

/// Search parameters of every type (`_has` among them, some malformed).
const SPECIAL: &[&str] = &[
    "_id",
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_format",
    "_lastUpdated",
    "_type",
    "_content",
    "_text",
    "_filter",
    "_offset",
    "_contained",
    "_include:iterate",
    "_revinclude:iterate",
    "_has:Observation:patient:code",
    "_has:Observation:subject:_has:DiagnosticReport:result:status",
    "_has:Encounter:patient:_id",
    "_has",
    "_has:",
    "_has:Observation",
];
/// Chained parameters: of 1 to 4 links (3 is the limit), some malformed.
const CHAINS: &[&str] = &[
    "subject.name",
    "patient.name",
    "subject:Patient.name",
    "general-practitioner.family",
    "encounter.subject.name",
    "encounter.subject.general-practitioner.name",
    "encounter.subject.general-practitioner.family.given",
    "subject.general-practitioner.name",
    "result.subject.name",
    "requester.name",
    "subject:Practitioner.name",
    "subject.",
    ".name",
    "subject..name",
    "patient.identifier",
    "encounter.patient.birthdate",
];
/// Modifiers, of every kind of parameter (so mostly on the wrong one), and unknown ones.
const MODIFIERS: &[&str] = &[
    "exact",
    "contains",
    "missing",
    "not",
    "above",
    "below",
    "text",
    "of-type",
    "Patient",
    "in",
    "not-in",
    "identifier",
    "iterate",
    "unknown",
    "",
];
/// Prefixes of dates, numbers and quantities, and two that are not.
const PREFIXES: &[&str] = &[
    "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx", "EQ",
];

/// One value of search parameter `name`.
fn value(c: &Corpus, rng: &mut Rng, name: &str, t: usize) -> String {
    let base = name.split([':', '.']).next().unwrap_or("");
    let mut v = match base {
        "_count" | "_offset" => (*rng.pick(&[
            "0",
            "1",
            "10",
            "1000",
            "1001",
            "-1",
            "1e3",
            "99999999999999999999",
            "x",
        ]))
        .to_owned(),
        "_sort" => {
            let p = rng.pick(&c.params[t]).clone();
            format!("{}{p}", if rng.one_in(2) { "-" } else { "" })
        }
        "_include" | "_revinclude" => {
            let other = TYPES[rng.below(TYPES.len())];
            let p = rng.pick(&c.params[type_index(other).unwrap_or(0)]).clone();
            match rng.below(5) {
                0 => "*".into(),
                1 => format!("{other}:{p}:{}", TYPES[rng.below(TYPES.len())]),
                2 => format!("{other}:*"),
                _ => format!("{other}:{p}"),
            }
        }
        "_summary" => (*rng.pick(&["true", "false", "count", "text", "data", "x"])).to_owned(),
        "_total" => (*rng.pick(&["none", "estimate", "accurate", "x"])).to_owned(),
        "_format" => (*rng.pick(&["json", "xml", "application/fhir+json", "ttl", "x"])).to_owned(),
        "_type" => TYPES[rng.below(TYPES.len())].to_owned(),
        "_elements" => rng.pick(&c.params[t]).clone(),
        "_id" => {
            let ids = &c.ids[rng.below(TYPES.len())];
            if ids.is_empty() {
                "x".into()
            } else {
                rng.pick(ids).clone()
            }
        }
        "date" | "birthdate" | "_lastUpdated" | "authoredon" | "onset" | "issued" => {
            let d = *rng.pick(&[
                "2020",
                "2020-01",
                "1990-07-08",
                "2020-01-01T10:00:00Z",
                "2020-01-01T10:00",
                "2020-02-30",
                "99999",
                "1990-07-08T01:39:26+00:00",
            ]);
            format!(
                "{}{d}",
                if rng.one_in(2) {
                    *rng.pick(PREFIXES)
                } else {
                    ""
                }
            )
        }
        b if b.contains("quantity") => {
            let n = if rng.one_in(5) {
                odd_number(rng)
            } else {
                format!("{}.{}", rng.below(300), rng.below(100))
            };
            let p = if rng.one_in(2) {
                *rng.pick(PREFIXES)
            } else {
                ""
            };
            match rng.below(4) {
                0 => format!("{p}{n}|http://unitsofmeasure.org|mg"),
                1 => format!("8867-4${p}{n}"),
                2 => format!("http://loinc.org|8867-4${p}{n}|http://unitsofmeasure.org|/min"),
                _ => format!("{p}{n}"),
            }
        }
        "patient"
        | "subject"
        | "encounter"
        | "performer"
        | "general-practitioner"
        | "practitioner"
        | "participant"
        | "requester"
        | "recorder"
        | "result" => {
            let target = if matches!(base, "encounter") {
                2
            } else if matches!(base, "patient" | "subject") {
                0
            } else {
                rng.below(TYPES.len())
            };
            let ids = &c.ids[target];
            match (rng.below(5), ids.is_empty()) {
                (0, _) => odd_reference(rng),
                (1, false) => rng.pick(ids).clone(),
                (_, false) => format!("{}/{}", TYPES[target], rng.pick(ids)),
                _ => "Patient/x".into(),
            }
        }
        _ => match rng.below(6) {
            0 => format!("http://loinc.org|{}", rng.pick(&c.words)),
            1 => (*rng.pick(&[
                "|x",
                "x|",
                "|",
                "a|b|c",
                "http://snomed.info/sct|",
                "true",
                "false",
                "male",
            ]))
            .to_owned(),
            _ => rng.pick(&c.words).clone(),
        },
    };
    if rng.one_in(6) {
        v = match rng.below(6) {
            0 => long_string(rng),
            1 => odd_text(&v, rng),
            2 => format!(
                "{v}{}",
                rng.pick(&["\\,", "\\|", "\\$", "\\\\", "\\", ",", "$", "|"])
            ),
            3 => (*rng.pick(&[
                "مرحبا",
                "👩‍⚕️",
                "\u{202e}x",
                "\u{0}",
                "e\u{301}",
                "\u{feff}",
                "İ",
                "ß",
                "ﬃ",
                "%",
                "_",
                "%_",
                "'",
                "\"",
                "' OR 1=1--",
            ]))
            .to_owned(),
            4 => odd_number(rng),
            _ => String::new(),
        };
    }
    v
}

/// Percent-encodes `s`, keeping unreserved characters and those in `keep`.
fn encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A search query string for type `t` (without the `?`).
pub fn query(c: &Corpus, rng: &mut Rng, t: usize) -> String {
    let count = match rng.below(40) {
        0 => 0,
        1 => *rng.pick(&[49, 50, 51, 80]),
        2..=5 => rng.between(5, 12),
        _ => rng.between(1, 4),
    };
    let style = rng.below(20);
    let mut parts = vec![];
    for _ in 0..count {
        let mut name = match rng.below(20) {
            0..=11 => rng.pick(&c.params[t]).clone(),
            12..=14 => (*rng.pick(SPECIAL)).to_owned(),
            15..=17 => (*rng.pick(CHAINS)).to_owned(),
            _ => (*rng.pick(&[
                "",
                "unknown",
                "name:",
                ":exact",
                "_",
                "a=b",
                "\u{e9}",
                "code-value-quantity",
            ]))
            .to_owned(),
        };
        if rng.one_in(4) {
            name = format!("{name}:{}", rng.pick(MODIFIERS));
        }
        let n = match rng.below(30) {
            0 => *rng.pick(&[99, 100, 101, 150]),
            1..=4 => rng.between(2, 6),
            _ => 1,
        };
        let values: Vec<String> = (0..n).map(|_| value(c, rng, &name, t)).collect();
        let (name, joined) = match style {
            // Loose: only what would break the query's structure is encoded.
            0..=2 => (
                encode(&name, ":,|$*/?@!'()[]"),
                encode(&values.join(","), ":,|$*/?@!'()[]\\"),
            ),
            // Unencoded: sent as it is (over TCP when an HTTP client would not).
            3 => (name, values.join(",")),
            _ => (encode(&name, ":"), encode(&values.join(","), ":,|$")),
        };
        let repeats = if rng.one_in(40) {
            rng.between(2, 60)
        } else {
            1
        };
        for _ in 0..repeats {
            parts.push(format!("{name}={joined}"));
        }
    }
    let mut q = parts.join("&");
    if rng.one_in(15) {
        let tails: &[&str] = &[
            "%",
            "%zz",
            "%ff%fe",
            "%ED%A0%80",
            "%00",
            "%C0%AF",
            "&&&",
            "&=",
            "=&=",
            "+",
            "#frag",
        ];
        q.push_str(rng.pick::<&str>(tails));
    }
    q
}

/// A search: GET or POST `_search`, on a type, the system or a compartment.
pub fn search(c: &Corpus, rng: &mut Rng) -> Input {
    let t = rng.below(TYPES.len());
    let mut q = query(c, rng, t).into_bytes();
    if rng.one_in(30) {
        // Random bytes in the query string.
        q.extend((0..rng.between(1, 20)).map(|_| rng.next_u64() as u8));
    }
    let path = match rng.below(20) {
        0 => c.base.clone(),
        1 => {
            let ids = &c.ids[0];
            let id = if ids.is_empty() {
                "x"
            } else {
                rng.pick(ids).as_str()
            };
            format!("{}/Patient/{id}/{}", c.base, TYPES[t])
        }
        _ => format!("{}/{}", c.base, TYPES[t]),
    };
    let mut input = if rng.one_in(3) {
        let path = format!("{path}/_search");
        let ct = if rng.one_in(10) {
            *rng.pick(CONTENT_TYPES)
        } else {
            "application/x-www-form-urlencoded"
        };
        Input::new("POST _search", "POST", path).body(Some(ct), q)
    } else {
        let mut target = format!("{path}?").into_bytes();
        target.extend(q);
        Input::new("GET search", "GET", target)
    };
    if rng.one_in(3) {
        input = input.header("Prefer", "handling=strict");
    }
    extra_headers(input, c, rng)
}

//! The inputs: valid resources from tests/data, and requests built from mutations of them
//! (searches are in `search.rs`).

use super::mutate::{mutate, mutate_bytes, Doc, Rng};
use super::search::{query, search};
use anyhow::Context;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The seven resource types the inputs are made of.
pub const TYPES: [&str; 7] = [
    "Patient",
    "Practitioner",
    "Encounter",
    "Observation",
    "MedicationRequest",
    "AllergyIntolerance",
    "DiagnosticReport",
];

/// One request, as sent.
pub struct Input {
    /// What made it: the generator and the mutations applied.
    pub label: String,
    pub method: String,
    /// Path and query, exactly as sent.
    pub target: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The whole request, for one that is not valid HTTP (sent as it is over TCP).
    pub raw: Option<Vec<u8>>,
    /// A body deliberately shorter than its Content-Length: a 408 is the expected answer.
    pub slow: bool,
    /// Copies sent at once (writes racing each other): 1 for most.
    pub copies: usize,
}

impl Input {
    pub fn new(label: impl Into<String>, method: &str, target: impl Into<Vec<u8>>) -> Input {
        Input {
            label: label.into(),
            method: method.into(),
            target: target.into(),
            headers: vec![],
            body: vec![],
            raw: None,
            slow: false,
            copies: 1,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Input {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, content_type: Option<&str>, body: Vec<u8>) -> Input {
        if let Some(ct) = content_type {
            self = self.header("Content-Type", ct);
        }
        self.body = body;
        self
    }

    /// The request as bytes on the wire, on a connection closed after it.
    pub fn wire(&self, host: &str) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut out = format!("{} ", self.method).into_bytes();
        out.extend_from_slice(&self.target);
        out.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").as_bytes(),
        );
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// A short hash of the request (FNV-1a), naming its finding file.
    pub fn hash(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes.iter().chain(&[0xff]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(self.method.as_bytes());
        eat(&self.target);
        for (n, v) in &self.headers {
            eat(n.as_bytes());
            eat(v);
        }
        eat(&self.body);
        eat(self.raw.as_deref().unwrap_or_default());
        format!("{:012x}", h >> 16)
    }
}

/// What the inputs are made of.
pub struct Corpus {
    /// The path of the FHIR base (`/fhir`).
    pub base: String,
    /// `host:port` of the server.
    pub host: String,
    /// Valid resources of each of [`TYPES`].
    pub resources: Vec<Vec<Value>>,
    /// The search parameters of each of [`TYPES`], from the server's CapabilityStatement.
    pub params: Vec<Vec<String>>,
    /// Ids of the stored resources (see [`seeds`]), of each of [`TYPES`].
    pub ids: Vec<Vec<String>>,
    /// Short strings of the resources, for search values.
    pub words: Vec<String>,
}

pub fn type_index(t: &str) -> Option<usize> {
    TYPES.iter().position(|x| *x == t)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Calls `f` on every `reference` string of `v`.
fn references(v: &mut Value, f: &mut impl FnMut(&mut String)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if k == "reference" => f(s),
                    _ => references(x, f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| references(x, f)),
        _ => {}
    }
}

/// Loads the official examples, the Synthea extracts and the Synthea practitioners under
/// `data` (tests/data). Synthea's `urn:uuid:` references become `Type/id`.
pub fn load(data: &Path) -> anyhow::Result<Vec<Vec<Value>>> {
    let mut resources = vec![vec![]; TYPES.len()];
    let mut push = |r: Value| {
        if let Some(i) = r["resourceType"].as_str().and_then(type_index) {
            resources[i].push(r);
        }
    };
    let mut files: Vec<_> = std::fs::read_dir(data.join("examples"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        push(read_json(&f)?);
    }
    let mut synthea = vec![];
    for name in [
        "patients",
        "encounters",
        "observations",
        "diagnostic_reports",
        "medication_requests",
        "allergies",
    ] {
        if let Value::Array(a) = read_json(&data.join(format!("synthea/{name}.json")))? {
            synthea.extend(a);
        }
    }
    let bundles = data.join("synthea-bundles/hiv-conditional");
    let mut names: Vec<_> = std::fs::read_dir(&bundles)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("practitionerInformation"))
        })
        .collect();
    names.sort();
    for f in names {
        let mut bundle = read_json(&f)?;
        if let Value::Array(entries) = bundle["entry"].take() {
            synthea.extend(entries.into_iter().map(|mut e| e["resource"].take()));
        }
    }
    let kinds: HashMap<String, String> = synthea
        .iter()
        .filter_map(|r| {
            Some((
                r["id"].as_str()?.to_owned(),
                r["resourceType"].as_str()?.to_owned(),
            ))
        })
        .collect();
    for mut r in synthea {
        references(&mut r, &mut |s| {
            if let Some(kind) = s.strip_prefix("urn:uuid:").and_then(|id| kinds.get(id)) {
                *s = format!("{kind}/{}", &s[9..]);
            }
        });
        push(r);
    }
    Ok(resources)
}

/// The PUTs that store valid resources before the run, so that searches find data and writes
/// refer to stored resources: the practitioners the extracts name by NPI, every patient and
/// encounter, and some of the other types, in groups to be sent one after the other (each
/// refers only to earlier ones). Their ids go to `corpus.ids`.
pub fn seeds(corpus: &mut Corpus) -> Vec<Vec<Input>> {
    let mut npis = HashSet::new();
    for list in &corpus.resources {
        for r in list {
            let mut r = r.clone();
            references(&mut r, &mut |s| {
                if let Some((_, npi)) = s.split_once("us-npi|") {
                    npis.insert(npi.to_owned());
                }
            });
        }
    }
    let mut out = vec![];
    for t in [1, 0, 2, 3, 4, 5, 6] {
        let list = &corpus.resources[t];
        let limit = [usize::MAX, usize::MAX, usize::MAX, 200, 100, 100, 60][t];
        let mut group = vec![];
        let chosen = list.iter().filter(|r| {
            t != 1
                || r["identifier"][0]["value"]
                    .as_str()
                    .is_some_and(|v| npis.contains(v))
        });
        for r in chosen.take(limit) {
            let Some(id) = r["id"].as_str() else { continue };
            corpus.ids[t].push(id.to_owned());
            let target = format!("{}/{}/{id}", corpus.base, TYPES[t]);
            group.push(
                Input::new("seed", "PUT", target)
                    .body(Some("application/fhir+json"), r.to_string().into_bytes()),
            );
        }
        out.push(group);
    }
    out
}

/// Collects short strings of `v` into `words`.
pub fn words(v: &Value, words: &mut HashSet<String>) {
    match v {
        Value::String(s) if (2..=40).contains(&s.len()) => {
            words.insert(s.clone());
        }
        Value::Object(m) => m.values().for_each(|x| self::words(x, words)),
        Value::Array(a) => a.iter().for_each(|x| self::words(x, words)),
        _ => {}
    }
}

/// The next input, drawn from `rng`.
pub fn next(c: &Corpus, rng: &mut Rng) -> Input {
    match rng.below(100) {
        0..=32 => write(c, rng),
        33..=44 => bundle(c, rng),
        45..=84 => search(c, rng),
        85..=94 => other(c, rng),
        95..=97 => race(c, rng),
        _ => odd_http(c, rng),
    }
}

pub const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/fhir+json; charset=utf-8",
    "application/fhir+json; fhirVersion=4.0",
    "text/plain",
    "application/xml",
    "application/fhir+xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "application/fhir+json; charset=latin1",
    "APPLICATION/FHIR+JSON",
    "application/json-patch+json",
    "*/*",
    "application/fhir+json;;;",
    "\u{7f}",
];

/// A Content-Type for a JSON body: the right one mostly, an odd one (or none) sometimes.
fn content_type(rng: &mut Rng) -> Option<&'static str> {
    match rng.below(12) {
        0 => None,
        1 => Some(*rng.pick(CONTENT_TYPES)),
        _ => Some("application/fhir+json"),
    }
}

/// Headers that may go with any request.
pub fn extra_headers(mut input: Input, c: &Corpus, rng: &mut Rng) -> Input {
    for _ in 0..rng.below(3).saturating_sub(1) {
        input = match rng.below(9) {
            0 => input.header("X-Request-ID", odd_id(rng, "fuzz-request")),
            1 => input.header(
                "Accept",
                *rng.pick(&[
                    "application/fhir+xml",
                    "text/html",
                    "application/fhir+json;q=0",
                    "*/*",
                    ";;",
                    "application/json",
                ]),
            ),
            2 => input.header(
                "Prefer",
                *rng.pick(&[
                    "return=minimal",
                    "return=OperationOutcome",
                    "handling=strict",
                    "handling=lenient",
                    "return=representation, handling=strict",
                    "respond-async",
                    "=",
                    "return=\u{80}",
                ]),
            ),
            3 => input.header(
                "If-Match",
                *rng.pick(&[
                    "W/\"1\"",
                    "W/\"x\"",
                    "\"1\"",
                    "*",
                    "W/\"99999999999999999999\"",
                    "",
                ]),
            ),
            4 => {
                let t = rng.below(TYPES.len());
                input.header("If-None-Exist", query(c, rng, t))
            }
            5 => input.header("If-None-Match", *rng.pick(&["*", "W/\"1\"", "junk"])),
            6 => input.header(
                "If-Modified-Since",
                *rng.pick(&[
                    "Sat, 01 Jan 2000 00:00:00 GMT",
                    "yesterday",
                    "Sat, 01 Jan 99999 00:00:00 GMT",
                ]),
            ),
            7 => input.header(
                "Content-Encoding",
                *rng.pick(&["gzip", "br", "identity", "x"]),
            ),
            _ => {
                let len = *rng.pick(&[10, 1000, 8000, 40_000]);
                input.header("X-Fuzz", "a".repeat(len))
            }
        };
    }
    input
}

/// An id for a URL: a valid one mostly, an odd one sometimes.
fn odd_id(rng: &mut Rng, valid: &str) -> String {
    if rng.below(3) > 0 {
        return valid.to_owned();
    }
    match rng.below(22) {
        0 => "../x".into(),
        1 => "%2e%2e".into(),
        2 => "%2E%2E%2Fhealth".into(),
        3 => "a".repeat(65),
        4 => "a".repeat(64),
        5 => "a%2Fb".into(),
        6 => "a b".into(),
        7 => "ü".into(),
        8 => "%C3%BC".into(),
        9 => "%00".into(),
        10 => "%ff".into(),
        11 => "".into(),
        12 => ".".into(),
        13 => "..".into(),
        14 => "A".repeat(1000),
        15 => "_history".into(),
        16 => "$validate".into(),
        17 => "_search".into(),
        18 => "1e999999".into(),
        19 => "'%20OR%20'1'='1".into(),
        20 => format!("{valid}/"),
        _ => format!("{valid}\\x"),
    }
}

/// A resource of type `t` with 0 to 3 mutations, and their names.
fn resource(c: &Corpus, rng: &mut Rng, t: usize) -> (Doc, Vec<&'static str>) {
    let mut doc = Doc::new(rng.pick(&c.resources[t]).clone());
    let mut names = vec![];
    for _ in 0..rng.below(4) {
        names.push(mutate(&mut doc, rng));
    }
    (doc, names)
}

/// A create, update or $validate of a mutated resource.
fn write(c: &Corpus, rng: &mut Rng) -> Input {
    let t = rng.below(TYPES.len());
    let (doc, mut names) = resource(c, rng, t);
    let id = doc.value["id"].as_str().unwrap_or("fuzz").to_owned();
    let mut body = doc.render();
    if rng.one_in(6) {
        names.push(mutate_bytes(&mut body, rng));
    }
    let (method, target) = match rng.below(10) {
        0..=4 => ("POST", format!("{}/{}", c.base, TYPES[t])),
        5..=8 => (
            "PUT",
            format!("{}/{}/{}", c.base, TYPES[t], odd_id(rng, &id)),
        ),
        _ => ("POST", format!("{}/{}/$validate", c.base, TYPES[t])),
    };
    let label = format!("{method} {}: {}", TYPES[t], names.join(", "));
    let input = Input::new(label, method, target).body(content_type(rng), body);
    extra_headers(input, c, rng)
}

/// A transaction or batch of resources, with references between its entries, mutated.
fn bundle(c: &Corpus, rng: &mut Rng) -> Input {
    let transaction = rng.below(3) > 0;
    let n = match rng.below(50) {
        0..=2 => 0,
        3 => 2000,
        4..=6 => rng.between(11, 60),
        _ => rng.between(1, 10),
    };
    let mut entries = vec![];
    let mut urns: Vec<Vec<String>> = vec![vec![]; TYPES.len()];
    for i in 0..n {
        // Patients first, so that the others can refer to them; Observations for the big ones.
        let t = if i == 0 {
            0
        } else if n > 100 {
            3
        } else {
            rng.below(TYPES.len())
        };
        let resource = rng.pick(&c.resources[t]).clone();
        let urn = format!("urn:uuid:{}", rng.uuid());
        urns[t].push(urn.clone());
        let id = resource["id"].as_str().unwrap_or("fuzz").to_owned();
        let request = match rng.below(20) {
            0..=11 => json!({"method": "POST", "url": TYPES[t]}),
            12..=16 => json!({"method": "PUT", "url": format!("{}/{id}", TYPES[t])}),
            17 => {
                json!({"method": "DELETE", "url": format!("{}/fuzz-{}", TYPES[t], rng.below(1000))})
            }
            18 => json!({"method": "GET", "url": format!("{}?{}", TYPES[t], query(c, rng, t))}),
            _ => json!({"method": "POST", "url": TYPES[t], "ifNoneExist": query(c, rng, t)}),
        };
        entries.push(json!({"fullUrl": urn, "resource": resource, "request": request}));
    }
    for e in entries.iter_mut() {
        references(&mut e["resource"], &mut |s| {
            for (t, list) in urns.iter().enumerate() {
                if s.starts_with(&format!("{}/", TYPES[t])) && !list.is_empty() && rng.below(4) > 0
                {
                    *s = rng.pick(list).clone();
                }
            }
        });
    }
    let mut names = vec![];
    for _ in 0..rng.below(4) {
        if entries.is_empty() {
            break;
        }
        let i = rng.below(entries.len());
        let j = rng.below(entries.len());
        names.push(match rng.below(8) {
            0 => {
                entries[i]["fullUrl"] = match rng.below(6) {
                    0 => Value::Null,
                    1 => entries[j]["fullUrl"].clone(),
                    2 => json!("urn:uuid:not-a-uuid"),
                    3 => json!("http://elsewhere.example/fhir/Patient/1"),
                    4 => json!(""),
                    _ => json!(5),
                };
                "fullUrl"
            }
            1 => {
                let method =
                    *rng.pick(&["GET", "DELETE", "PATCH", "HEAD", "post", "", "PUT", "TRACE"]);
                entries[i]["request"]["method"] = json!(method);
                "request.method"
            }
            2 => {
                let url = *rng.pick(&[
                    "",
                    "Patient/../x",
                    "Patient/%2e%2e",
                    "http://elsewhere.example/fhir/Patient",
                    "Patient?name=x",
                    "metadata",
                    "/fhir/Patient",
                    "Bundle",
                    "Patient/$validate",
                    "Observation",
                    "Patient/_search",
                    "Patient?_count=1000&_include=*",
                    "Patient/",
                    "Patient?",
                    "?",
                    "Patient/a/_history/1",
                ]);
                entries[i]["request"]["url"] = json!(url);
                "request.url"
            }
            3 => {
                let mut r = entries[i]["resource"].take();
                references(&mut r, &mut |s| *s = format!("urn:uuid:{}", rng.uuid()));
                entries[i]["resource"] = r;
                "unknown urn:uuid"
            }
            4 => {
                // Two entries that refer to each other.
                let a = entries[i]["fullUrl"].clone();
                let b = entries[j]["fullUrl"].clone();
                entries[i]["resource"]["partOf"] = json!({"reference": b});
                entries[i]["resource"]["hasMember"] = json!([{"reference": b}]);
                entries[j]["resource"]["partOf"] = json!({"reference": a});
                entries[j]["resource"]["hasMember"] = json!([{"reference": a}]);
                "circular references"
            }
            5 => {
                let copy = entries[i].clone();
                for _ in 0..rng.between(1, 3) {
                    entries.push(copy.clone());
                }
                "duplicated entry"
            }
            6 => {
                entries[i]["resource"] = Value::Null;
                "no resource"
            }
            _ => {
                let t = rng.below(TYPES.len());
                let url = format!("{}?{}", TYPES[t], query(c, rng, t));
                entries[i]["request"] = json!({"method": "PUT", "url": url});
                "conditional update"
            }
        });
    }
    let kind = if transaction { "transaction" } else { "batch" };
    let mut value = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
    if rng.one_in(200) {
        // Over the limit of entries: small entries, so the body stays small.
        value["entry"] = Value::Array(vec![
            json!({"request": {"method": "GET", "url": "Patient"}});
            10_001
        ]);
        names.push("10,001 entries");
    }
    let mut doc = Doc::new(value);
    if rng.one_in(3) {
        names.push(mutate(&mut doc, rng));
    }
    let mut body = doc.render();
    if rng.one_in(10) {
        names.push(mutate_bytes(&mut body, rng));
    }
    let label = format!("{kind} of {n}: {}", names.join(", "));
    let target = if rng.one_in(20) {
        format!("{}/Patient", c.base)
    } else {
        c.base.clone()
    };
    let input = Input::new(label, "POST", target).body(content_type(rng), body);
    extra_headers(input, c, rng)
}

/// Reads, history, deletes, patches and other interactions, with odd ids.
fn other(c: &Corpus, rng: &mut Rng) -> Input {
    let t = rng.below(TYPES.len());
    let ids = &c.ids[t];
    let stored = if ids.is_empty() {
        "x".to_owned()
    } else {
        rng.pick(ids).clone()
    };
    let id = odd_id(rng, &stored);
    let ty = TYPES[t];
    let base = &c.base;
    let input = match rng.below(12) {
        0 | 1 => Input::new("read", "GET", format!("{base}/{ty}/{id}")),
        2 => Input::new(
            "vread",
            "GET",
            format!(
                "{base}/{ty}/{id}/_history/{}",
                rng.pick(&["1", "0", "-1", "x", "99999999999999999999", "1.5"])
            ),
        ),
        3 => Input::new(
            "history",
            "GET",
            format!(
                "{base}/{ty}/{}_history?_count={}&_since={}",
                if rng.one_in(2) {
                    format!("{id}/")
                } else {
                    String::new()
                },
                rng.pick(&["1", "1000", "0", "x"]),
                rng.pick(&["2020-01-01", "x", "99999-01-01T00:00:00Z"])
            ),
        ),
        4 => {
            let fresh = format!("fuzz-{}", rng.below(1000));
            Input::new(
                "delete",
                "DELETE",
                format!("{base}/{ty}/{}", odd_id(rng, &fresh)),
            )
        }
        5 => Input::new(
            "conditional delete",
            "DELETE",
            format!("{base}/{ty}?{}", query(c, rng, t)),
        ),
        6 | 7 => {
            let path = *rng.pick(&[
                "/active",
                "/gender",
                "/name/0/family",
                "/name/-",
                "/status",
                "/id",
                "/meta",
                "/",
                "",
                "/name/99999999999",
                "/a~2b",
                "/resourceType",
                "/subject/reference",
            ]);
            let op = *rng.pick(&["replace", "add", "remove", "move", "copy", "test", "x"]);
            let mut doc = Doc::new(json!([{"op": op, "path": path, "from": "/id", "value": "x"}]));
            let names: Vec<_> = (0..rng.below(3)).map(|_| mutate(&mut doc, rng)).collect();
            let ct = if rng.one_in(5) {
                *rng.pick(CONTENT_TYPES)
            } else {
                "application/json-patch+json"
            };
            Input::new(
                format!("patch: {}", names.join(", ")),
                "PATCH",
                format!("{base}/{ty}/{id}"),
            )
            .body(Some(ct), doc.render())
        }
        8 => {
            let (doc, names) = resource(c, rng, t);
            Input::new(
                format!("conditional update: {}", names.join(", ")),
                "PUT",
                format!("{base}/{ty}?{}", query(c, rng, t)),
            )
            .body(content_type(rng), doc.render())
        }
        9 => Input::new(
            "everything",
            "GET",
            format!("{base}/Patient/{id}/$everything?{}", query(c, rng, 0)),
        ),
        10 => Input::new(
            "metadata",
            "GET",
            format!(
                "{base}/{}",
                rng.pick(&[
                    "metadata?_format=xml",
                    "metadata?mode=terminology",
                    "StructureDefinition?url=x",
                    "StructureDefinition/x",
                    "StructureDefinition/../metadata",
                    "metadata/x"
                ])
            ),
        ),
        _ => Input::new(
            "odd method",
            rng.pick::<&str>(&["OPTIONS", "HEAD", "TRACE", "FOO", "get", "PROPFIND"]),
            format!("{base}/{ty}/{id}"),
        ),
    };
    extra_headers(input, c, rng)
}

/// A valid write sent 2 to 4 times at once: an update that creates, a conditional create, an
/// update that makes a new version.
fn race(c: &Corpus, rng: &mut Rng) -> Input {
    let t = rng.below(TYPES.len());
    let mut resource = rng.pick(&c.resources[t]).clone();
    let fresh = format!("race-{}", rng.next_u64() % 1_000_000_000);
    let ty = TYPES[t];
    let mut input = match rng.below(3) {
        0 => {
            resource["id"] = json!(fresh);
            Input::new(
                "race: update that creates",
                "PUT",
                format!("{}/{ty}/{fresh}", c.base),
            )
        }
        1 => {
            if let Some(m) = resource.as_object_mut() {
                m.remove("id");
            }
            resource["identifier"] =
                json!([{"system": "http://fuzz.example/race", "value": fresh}]);
            Input::new(
                "race: conditional create",
                "POST",
                format!("{}/{ty}", c.base),
            )
            .header(
                "If-None-Exist",
                format!("identifier=http://fuzz.example/race|{fresh}"),
            )
        }
        _ => {
            let id = resource["id"].as_str().unwrap_or("x").to_owned();
            let tag = json!({"system": "http://fuzz.example/race", "code": fresh});
            resource["meta"] = json!({ "tag": [tag] });
            Input::new("race: new version", "PUT", format!("{}/{ty}/{id}", c.base))
        }
    };
    input = input.body(
        Some("application/fhir+json"),
        resource.to_string().into_bytes(),
    );
    input.copies = rng.between(2, 4);
    input
}

/// Requests that are not quite HTTP, sent as bytes over TCP.
fn odd_http(c: &Corpus, rng: &mut Rng) -> Input {
    let (base, host) = (&c.base, &c.host);
    let fill = |n: usize| "a".repeat(n);
    let (label, raw): (&str, Vec<u8>) = match rng.below(16) {
        0 => ("70 KB URL", format!("GET {base}/Patient?name={} HTTP/1.1\r\nHost: {host}\r\n\r\n", fill(70_000)).into_bytes()),
        1 => ("20 KB URL", format!("GET {base}/Patient?name={} HTTP/1.1\r\nHost: {host}\r\n\r\n", fill(20_000)).into_bytes()),
        2 => ("200 KB header", format!("GET {base}/metadata HTTP/1.1\r\nHost: {host}\r\nX-Fill: {}\r\n\r\n", fill(200_000)).into_bytes()),
        3 => ("40 KB header", format!("GET {base}/metadata HTTP/1.1\r\nHost: {host}\r\nX-Fill: {}\r\n\r\n", fill(40_000)).into_bytes()),
        4 => ("not HTTP", b"HELLO\r\n\r\n".to_vec()),
        5 => {
            let mut line: Vec<u8> = (0..rng.between(1, 200)).map(|_| rng.next_u64() as u8).filter(|b| *b != b'\n').collect();
            line.extend_from_slice(b"\r\n\r\n");
            ("random request line", line)
        }
        6 => ("bad version", format!("GET {base}/metadata HTTP/1.7\r\nHost: {host}\r\n\r\n").into_bytes()),
        7 => ("header without colon", format!("GET {base}/metadata HTTP/1.1\r\nHost: {host}\r\nBroken header\r\n\r\n").into_bytes()),
        8 => ("two lengths", format!("POST {base}/Patient HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n{{}}").into_bytes()),
        9 => ("length and chunked", format!("POST {base}/Patient HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        10 => ("bad chunk", format!("POST {base}/Patient HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        11 => {
            let mut r = format!("GET {base}/Patient?name=").into_bytes();
            r.extend_from_slice(b"\xff\xfe\xc0\xaf");
            r.extend_from_slice(format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
            ("raw bytes in URL", r)
        }
        12 => ("absolute form", format!("GET http://{host}{base}/metadata HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()),
        13 => ("many headers", format!("GET {base}/metadata HTTP/1.1\r\nHost: {host}\r\n{}\r\n", "X-A: 1\r\n".repeat(rng.between(90, 500))).into_bytes()),
        14 => ("HTTP/1.0 without Host", format!("GET {base}/metadata HTTP/1.0\r\n\r\n").into_bytes()),
        _ => ("obsolete line folding", format!("GET {base}/metadata HTTP/1.1\r\nHost: {host}\r\nX-A: 1\r\n folded\r\n\r\n").into_bytes()),
    };
    let mut input = Input::new(label, "", "");
    input.raw = Some(raw);
    input
}

/// A body shorter than its Content-Length: the server waits for the rest, then answers 408.
pub fn slow_body(c: &Corpus) -> Input {
    let mut input = Input::new("short body", "", "");
    input.raw = Some(
        format!(
            "POST {}/Patient HTTP/1.1\r\nHost: {}\r\nContent-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n{{\"resourceType\":",
            c.base, c.host
        )
        .into_bytes(),
    );
    input.slow = true;
    input
}

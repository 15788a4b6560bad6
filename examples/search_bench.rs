//! Search benchmark: times FHIR searches against a server holding replicated Synthea patients.
//!
//! `search_bench --base http://127.0.0.1:PORT/fhir --patients N [--load] [--repeat R] [--data DIR]`
//! `search_bench --patients N --ndjson OUT_DIR [--data DIR]`
//!
//! Patient number i (0 <= i < N) is replica k = i / 20 of the (i % 20)-th Synthea patient in
//! tests/data/synthea/patients.json. Every replicated resource gets the id `{t}{k}x{index}`, where
//! `t` is p, e, o, d or m (Patient, Encounter, Observation, DiagnosticReport, MedicationRequest)
//! and `index` is its position in its Synthea file; every `urn:uuid:` reference is rewritten to
//! the replica of its target in the same replica k, and every identifier value gets `-{k}`
//! appended, so `Patient?identifier=` finds exactly one patient. Practitioners are stored once
//! under their own ids; references to them (by `urn:uuid:` or by `Practitioner?identifier=` NPI)
//! become `Practitioner/{id}`. References to types the extracts do not hold become literal
//! references (`Organization/{id}`, `Condition/{id}`).
//!
//! With `--load` the program stores, in this order and one type after the other (so every
//! reference names a stored resource): the practitioners, the N patients, their encounters,
//! observations, diagnostic reports and medication requests, with `PUT {base}/{Type}/{id}`, 8
//! requests at a time. Refusals are printed and counted; the load goes on. With `--ndjson` it
//! writes the same resources instead, one NDJSON file per type in `OUT_DIR`, for
//! `expediente import` (which writes each under its id, as the PUT does, through the same
//! transaction code), and ends.
//!
//! Then, unless R is 0, it times seven searches, one request at a time on one kept HTTP/1.1
//! connection with TCP_NODELAY written by hand (a client library can cost more than a search),
//! each 20 times as warm-up and R times (default 200) measured, with values drawn from the loaded
//! data. The values are recomputed from the same Synthea files and N (a fixed-seed generator), so
//! a run without `--load` searches the data an earlier `--load` stored. Searches send
//! `Prefer: handling=strict`: a parameter the server does not support answers 400 instead of
//! being ignored, and is reported as such. Figures only: nothing is asserted.

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use reqwest::Client;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "shared/kept.rs"]
mod kept;
use kept::Conn;

const USAGE: &str = "usage: search_bench --base http://127.0.0.1:PORT/fhir --patients N \
                     [--load] [--repeat R] [--only TEXT] [--data DIR]\n       \
                     search_bench --patients N --ndjson OUT_DIR [--data DIR]";
/// Requests in flight while loading.
const CONCURRENCY: usize = 8;
/// Unmeasured requests before each search's measured ones.
const WARMUP: usize = 20;
/// Seconds between progress lines while loading.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// Refusals printed in full; later ones are only counted (and summarised at the end).
const PRINTED_REFUSALS: usize = 100;

struct Args {
    base: String,
    patients: usize,
    load: bool,
    repeat: usize,
    data: PathBuf,
    ndjson: Option<PathBuf>,
    /// Only the searches whose name holds this text.
    only: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut base = None;
    let mut patients = None;
    let mut load = false;
    let mut repeat = 200;
    let mut data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/synthea"));
    let mut ndjson = None;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--base" => base = Some(value("--base")?.trim_end_matches('/').to_owned()),
            "--patients" => {
                patients = Some(
                    value("--patients")?
                        .parse()
                        .context("--patients takes a number")?,
                )
            }
            "--repeat" => {
                repeat = value("--repeat")?
                    .parse()
                    .context("--repeat takes a number")?
            }
            "--data" => data = PathBuf::from(value("--data")?),
            "--load" => load = true,
            "--ndjson" => ndjson = Some(PathBuf::from(value("--ndjson")?)),
            "--only" => only = Some(value("--only")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    let base = match (base, &ndjson) {
        (Some(b), _) => b,
        (None, Some(_)) => String::new(),
        (None, None) => bail!("--base is required\n{USAGE}"),
    };
    let patients = patients.with_context(|| format!("--patients is required\n{USAGE}"))?;
    if patients == 0 {
        bail!("--patients must be at least 1");
    }
    Ok(Args {
        base,
        patients,
        load,
        repeat,
        data,
        ndjson,
        only,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Practitioner,
    Patient,
    Encounter,
    Observation,
    DiagnosticReport,
    MedicationRequest,
}

impl Kind {
    /// The load order: every type refers only to types stored before it.
    const ALL: [Kind; 6] = [
        Kind::Practitioner,
        Kind::Patient,
        Kind::Encounter,
        Kind::Observation,
        Kind::DiagnosticReport,
        Kind::MedicationRequest,
    ];

    fn resource_type(self) -> &'static str {
        match self {
            Kind::Practitioner => "Practitioner",
            Kind::Patient => "Patient",
            Kind::Encounter => "Encounter",
            Kind::Observation => "Observation",
            Kind::DiagnosticReport => "DiagnosticReport",
            Kind::MedicationRequest => "MedicationRequest",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Kind::Practitioner => "practitioners.json",
            Kind::Patient => "patients.json",
            Kind::Encounter => "encounters.json",
            Kind::Observation => "observations.json",
            Kind::DiagnosticReport => "diagnostic_reports.json",
            Kind::MedicationRequest => "medication_requests.json",
        }
    }

    fn prefix(self) -> char {
        match self {
            Kind::Practitioner => 'r',
            Kind::Patient => 'p',
            Kind::Encounter => 'e',
            Kind::Observation => 'o',
            Kind::DiagnosticReport => 'd',
            Kind::MedicationRequest => 'm',
        }
    }
}

/// The id of replica `k` of the `index`-th resource of a file (practitioners keep their own).
fn replica_id(kind: Kind, index: usize, k: usize) -> String {
    format!("{}{k}x{index}", kind.prefix())
}

/// A `urn:uuid:` reference in `field` to a resource the extracts do not hold, as a literal
/// reference of the type Synthea puts there.
fn held_elsewhere(field: &str, reference: &str) -> Option<String> {
    let id = reference.strip_prefix("urn:uuid:")?;
    let rtype = match field {
        "serviceProvider" => "Organization",
        "reasonReference" => "Condition",
        _ => return None,
    };
    Some(format!("{rtype}/{id}"))
}

/// The Synthea extracts, indexed by id and by owning patient.
struct Source {
    files: Vec<Vec<Value>>,
    /// Synthea id (the part after `urn:uuid:`) to its type and position in its file.
    ids: HashMap<String, (Kind, usize)>,
    /// Practitioner NPI to practitioner id.
    npi: HashMap<String, String>,
    /// For each Synthea patient, the positions of the resources whose subject it is, by type.
    owned: Vec<HashMap<Kind, Vec<usize>>>,
}

fn read_array(dir: &Path, file: &str) -> anyhow::Result<Vec<Value>> {
    let path = dir.join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    match serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))? {
        Value::Array(items) => Ok(items),
        _ => bail!("{} is not a JSON array", path.display()),
    }
}

impl Source {
    fn read(dir: &Path) -> anyhow::Result<Source> {
        let mut files = Vec::new();
        let mut ids = HashMap::new();
        for kind in Kind::ALL {
            let items = read_array(dir, kind.file())?;
            for (index, r) in items.iter().enumerate() {
                let id = r["id"]
                    .as_str()
                    .with_context(|| format!("{} #{index} has no id", kind.file()))?;
                ids.insert(id.to_owned(), (kind, index));
            }
            files.push(items);
        }
        let mut npi = HashMap::new();
        // Practitioners come first in Kind::ALL.
        for r in &files[0] {
            for identifier in r["identifier"].as_array().into_iter().flatten() {
                if let (Some("http://hl7.org/fhir/sid/us-npi"), Some(value), Some(id)) = (
                    identifier["system"].as_str(),
                    identifier["value"].as_str(),
                    r["id"].as_str(),
                ) {
                    npi.insert(value.to_owned(), id.to_owned());
                }
            }
        }
        let mut src = Source {
            files,
            ids,
            npi,
            owned: Vec::new(),
        };
        let mut owned = vec![HashMap::<Kind, Vec<usize>>::new(); src.list(Kind::Patient).len()];
        let mut orphans = 0;
        for kind in &Kind::ALL[2..] {
            for (index, r) in src.list(*kind).iter().enumerate() {
                let owner = r["subject"]["reference"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("urn:uuid:"))
                    .and_then(|id| src.ids.get(id));
                match owner {
                    Some(&(Kind::Patient, p)) => owned[p].entry(*kind).or_default().push(index),
                    _ => orphans += 1,
                }
            }
        }
        if orphans > 0 {
            eprintln!("{orphans} Synthea resources name no Synthea patient as subject: not loaded");
        }
        src.owned = owned;
        if src.owned.is_empty() {
            bail!("{} holds no patients", dir.join("patients.json").display());
        }
        Ok(src)
    }

    fn list(&self, kind: Kind) -> &[Value] {
        &self.files[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
    }

    fn owned(&self, p: usize, kind: Kind) -> &[usize] {
        self.owned[p].get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Synthea patients in the extracts.
    fn sources(&self) -> usize {
        self.owned.len()
    }

    /// Patient number i as (replica, Synthea patient).
    fn split(&self, i: usize) -> (usize, usize) {
        (i / self.sources(), i % self.sources())
    }

    fn patient_id(&self, i: usize) -> String {
        let (k, p) = self.split(i);
        replica_id(Kind::Patient, p, k)
    }

    /// Replica `k` of the `index`-th resource of `kind`: its id and its body.
    fn replica(&self, kind: Kind, index: usize, k: usize) -> (String, Value) {
        let mut r = self.list(kind)[index].clone();
        if kind == Kind::Practitioner {
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            return (id, r);
        }
        let id = replica_id(kind, index, k);
        r["id"] = Value::String(id.clone());
        self.rewrite(&mut r, k);
        if let Some(identifiers) = r.get_mut("identifier").and_then(Value::as_array_mut) {
            for identifier in identifiers {
                if let Some(Value::String(v)) = identifier.get_mut("value") {
                    v.push_str(&format!("-{k}"));
                }
            }
        }
        (id, r)
    }

    /// Rewrites every `reference` in `v` that names a Synthea resource to its replica `k`, and
    /// one that names a resource the extracts do not hold (an encounter's organization, a
    /// prescription's condition) to a literal reference of its type: a `urn:uuid:` names an
    /// entry of a Bundle, and an import wraps each NDJSON line in one.
    fn rewrite(&self, v: &mut Value, k: usize) {
        self.rewrite_under(v, k, "");
    }

    fn rewrite_under(&self, v: &mut Value, k: usize, field: &str) {
        match v {
            Value::Object(fields) => {
                for (key, child) in fields.iter_mut() {
                    match child {
                        Value::String(s) if key == "reference" => {
                            if let Some(target) = self.target(s, k) {
                                *s = target;
                            } else if let Some(literal) = held_elsewhere(field, s) {
                                *s = literal;
                            }
                        }
                        _ => self.rewrite_under(child, k, key),
                    }
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|c| self.rewrite_under(c, k, field)),
            _ => {}
        }
    }

    fn target(&self, reference: &str, k: usize) -> Option<String> {
        if let Some(id) = reference.strip_prefix("urn:uuid:") {
            let &(kind, index) = self.ids.get(id)?;
            return Some(match kind {
                Kind::Practitioner => format!("Practitioner/{id}"),
                _ => format!("{}/{}", kind.resource_type(), replica_id(kind, index, k)),
            });
        }
        let (_, npi) = reference
            .strip_prefix("Practitioner?identifier=")?
            .split_once('|')?;
        Some(format!("Practitioner/{}", self.npi.get(npi)?))
    }

    /// What `--load` stores for `kind`: (position in its file, replica) pairs, patient by patient.
    fn load_items(
        &self,
        kind: Kind,
        patients: usize,
    ) -> Box<dyn Iterator<Item = (usize, usize)> + '_> {
        match kind {
            Kind::Practitioner => Box::new((0..self.list(kind).len()).map(|index| (index, 0))),
            Kind::Patient => Box::new((0..patients).map(|i| {
                let (k, p) = self.split(i);
                (p, k)
            })),
            _ => Box::new((0..patients).flat_map(move |i| {
                let (k, p) = self.split(i);
                self.owned(p, kind).iter().map(move |&index| (index, k))
            })),
        }
    }
}

/// One refused or failed PUT.
struct Refusal {
    resource_type: &'static str,
    id: String,
    status: String,
    body: String,
}

async fn put(
    client: &Client,
    base: &str,
    kind: Kind,
    id: String,
    body: Vec<u8>,
) -> Result<(), Refusal> {
    let resource_type = kind.resource_type();
    let refusal = |status: String, body: String| Refusal {
        resource_type,
        id: id.clone(),
        status,
        body,
    };
    let answer = client
        .put(format!("{base}/{resource_type}/{id}"))
        .header("content-type", "application/fhir+json")
        .header("accept", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => {
            // Read the (minimal) body so the connection goes back to the pool.
            let _ = r.bytes().await;
            Ok(())
        }
        Ok(r) => {
            let status = r.status().to_string();
            let text = r.text().await.unwrap_or_else(|e| format!("(body: {e})"));
            Err(refusal(status, text))
        }
        Err(e) => Err(refusal("no answer".into(), e.to_string())),
    }
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect::<String>().replace('\n', " ")
}

/// The diagnostics of an OperationOutcome, or the start of the body.
fn outcome_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let messages: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v["issue"].as_array())
        .map(|issues| {
            issues
                .iter()
                .filter_map(|i| {
                    let text = i["diagnostics"].as_str()?;
                    let at = i["expression"][0].as_str().unwrap_or("");
                    Some(if at.is_empty() {
                        text.to_owned()
                    } else {
                        format!("{text} (at {at})")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if messages.is_empty() {
        first_chars(body, 300)
    } else {
        first_chars(&messages.join("; "), 300)
    }
}

#[derive(Default)]
struct LoadTotals {
    stored: u64,
    failed: u64,
    /// (type, status) to (count, an example: id and message).
    refusals: BTreeMap<(String, String), (u64, String)>,
}

async fn load(client: &Client, base: &str, src: &Source, patients: usize) -> LoadTotals {
    let total: usize = Kind::ALL
        .iter()
        .map(|&kind| src.load_items(kind, patients).count())
        .sum();
    eprintln!(
        "loading {total} resources for {patients} patients ({} practitioners), {CONCURRENCY} at a time",
        src.list(Kind::Practitioner).len()
    );
    let start = Instant::now();
    let mut last_print = start;
    let mut totals = LoadTotals::default();
    for kind in Kind::ALL {
        let phase_start = Instant::now();
        let mut phase_stored = 0u64;
        let mut answers = stream::iter(src.load_items(kind, patients))
            .map(|(index, k)| {
                let (id, body) = src.replica(kind, index, k);
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                put(client, base, kind, id, bytes)
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(()) => {
                    totals.stored += 1;
                    phase_stored += 1;
                }
                Err(r) => {
                    totals.failed += 1;
                    if totals.failed as usize <= PRINTED_REFUSALS {
                        eprintln!(
                            "refused: {} {}/{}: {}",
                            r.status,
                            r.resource_type,
                            r.id,
                            first_chars(&r.body, 300)
                        );
                    } else if totals.failed as usize == PRINTED_REFUSALS + 1 {
                        eprintln!("(further refusals are counted, not printed)");
                    }
                    let entry = totals
                        .refusals
                        .entry((r.resource_type.to_owned(), r.status))
                        .or_insert_with(|| (0, format!("{}: {}", r.id, outcome_message(&r.body))));
                    entry.0 += 1;
                }
            }
            if last_print.elapsed() >= PROGRESS_EVERY {
                last_print = Instant::now();
                let done = totals.stored + totals.failed;
                eprintln!(
                    "  {done}/{total} ({kind:?}), {} stored, {} refused, {:.0} resources/s",
                    totals.stored,
                    totals.failed,
                    done as f64 / start.elapsed().as_secs_f64()
                );
            }
        }
        let secs = phase_start.elapsed().as_secs_f64();
        println!(
            "  {:<18} {:>9} stored in {:>8.1} s  {:>8.0} /s",
            kind.resource_type(),
            phase_stored,
            secs,
            phase_stored as f64 / secs.max(1e-9)
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "load: {} stored, {} refused, {:.1} s, {:.0} resources/s",
        totals.stored,
        totals.failed,
        secs,
        (totals.stored + totals.failed) as f64 / secs.max(1e-9)
    );
    for ((resource_type, status), (count, example)) in &totals.refusals {
        println!("  refused {count} x {resource_type} with {status}, e.g. {example}");
    }
    totals
}

/// SplitMix64: a fixed-seed generator, so the search values depend only on the data and N.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get((self.next() % items.len() as u64) as usize)
    }
}

/// Escapes the characters that separate search values and their parts.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '$' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_vital_sign(o: &Value) -> bool {
    o["category"].as_array().into_iter().flatten().any(|cat| {
        cat["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["code"] == "vital-signs")
    })
}

fn first_coding(concept: &Value) -> Option<String> {
    let coding = &concept["coding"][0];
    let code = coding["code"].as_str()?;
    Some(match coding["system"].as_str() {
        Some(system) => format!("{}|{}", escape(system), escape(code)),
        None => escape(code),
    })
}

/// A number a little under `v`, so `gt` matches the observation it came from.
fn threshold(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{}", v.floor())
    } else {
        format!("{:.1}", (v * 10.0).floor() / 10.0)
    }
}

type Query = Vec<(String, String)>;

struct Case {
    name: &'static str,
    resource_type: &'static str,
    queries: Vec<Query>,
}

/// The searches, each with `count` queries drawn from the data of the N loaded patients.
fn cases(src: &Source, patients: usize, count: usize) -> Vec<Case> {
    let obs = src.list(Kind::Observation);
    // Patient numbers whose Synthea patient has at least one of `wanted`.
    let with = |kind: Kind, wanted: &dyn Fn(&Value) -> bool| -> Vec<usize> {
        (0..patients)
            .filter(|&i| {
                let (_, p) = src.split(i);
                src.owned(p, kind)
                    .iter()
                    .any(|&index| wanted(&src.list(kind)[index]))
            })
            .collect()
    };
    let own = |i: usize, kind: Kind, wanted: &dyn Fn(&Value) -> bool| -> Vec<usize> {
        let (_, p) = src.split(i);
        src.owned(p, kind)
            .iter()
            .copied()
            .filter(|&index| wanted(&src.list(kind)[index]))
            .collect()
    };
    let all: Vec<usize> = (0..patients).collect();
    let has_quantity = |o: &Value| o["valueQuantity"]["value"].as_f64().is_some();
    let has_date = |o: &Value| is_vital_sign(o) && o["effectiveDateTime"].as_str().is_some();
    let has_result = |r: &Value| r["result"].as_array().is_some_and(|a| !a.is_empty());
    let active = |r: &Value| r["status"] == "active";
    let any = |_: &Value| true;

    let mut out = Vec::new();
    let mut case = |name: &'static str,
                    resource_type: &'static str,
                    candidates: &[usize],
                    make: &dyn Fn(&mut Rng, usize) -> Option<Query>| {
        let mut rng = Rng(0x5EA4_C8B0 ^ ((out.len() as u64) << 32));
        let mut queries = Vec::new();
        for _ in 0..count * 4 {
            if queries.len() == count {
                break;
            }
            let Some(&i) = rng.pick(candidates) else {
                break;
            };
            if let Some(q) = make(&mut rng, i) {
                queries.push(q);
            }
        }
        out.push(Case {
            name,
            resource_type,
            queries,
        });
    };
    let q = |pairs: &[(&str, String)]| -> Query {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };

    case("Patient?name=<family prefix>", "Patient", &all, &|_, i| {
        let (_, p) = src.split(i);
        let family = src.list(Kind::Patient)[p]["name"][0]["family"].as_str()?;
        Some(q(&[(
            "name",
            escape(&family.chars().take(4).collect::<String>()),
        )]))
    });
    case(
        "Patient?identifier=<system>|<value>",
        "Patient",
        &all,
        &|rng, i| {
            let (k, p) = src.split(i);
            let identifiers: Vec<(&str, &str)> = src.list(Kind::Patient)[p]["identifier"]
                .as_array()?
                .iter()
                .filter_map(|id| Some((id["system"].as_str()?, id["value"].as_str()?)))
                .collect();
            let (system, value) = rng.pick(&identifiers)?;
            Some(q(&[(
                "identifier",
                format!("{}|{}", escape(system), escape(&format!("{value}-{k}"))),
            )]))
        },
    );
    case(
        "Observation?patient=<id>&code=<loinc>",
        "Observation",
        &with(Kind::Observation, &any),
        &|rng, i| {
            let o = &obs[*rng.pick(&own(i, Kind::Observation, &any))?];
            Some(q(&[
                ("patient", src.patient_id(i)),
                ("code", first_coding(&o["code"])?),
            ]))
        },
    );
    case(
        "Observation?patient=<id>&category=vital-signs&date=ge<date>",
        "Observation",
        &with(Kind::Observation, &has_date),
        &|rng, i| {
            let o = &obs[*rng.pick(&own(i, Kind::Observation, &has_date))?];
            let day = o["effectiveDateTime"].as_str()?.get(..10)?;
            Some(q(&[
                ("patient", src.patient_id(i)),
                ("category", "vital-signs".into()),
                ("date", format!("ge{day}")),
            ]))
        },
    );
    case(
        "DiagnosticReport?patient=<id>&_include=DiagnosticReport:result",
        "DiagnosticReport",
        &with(Kind::DiagnosticReport, &has_result),
        &|_, i| {
            Some(q(&[
                ("patient", src.patient_id(i)),
                ("_include", "DiagnosticReport:result".into()),
            ]))
        },
    );
    case(
        "MedicationRequest?patient=<id>&status=active",
        "MedicationRequest",
        &with(Kind::MedicationRequest, &active),
        &|_, i| {
            Some(q(&[
                ("patient", src.patient_id(i)),
                ("status", "active".into()),
            ]))
        },
    );
    case(
        "Observation?code-value-quantity=<loinc>$gt<number>",
        "Observation",
        &with(Kind::Observation, &has_quantity),
        &|rng, i| {
            let o = &obs[*rng.pick(&own(i, Kind::Observation, &has_quantity))?];
            let value = o["valueQuantity"]["value"].as_f64()?;
            Some(q(&[(
                "code-value-quantity",
                format!("{}$gt{}", first_coding(&o["code"])?, threshold(value)),
            )]))
        },
    );
    out
}

/// The figures of one search.
struct Figures {
    name: &'static str,
    /// Latencies of the 200 answers.
    ok: Vec<Duration>,
    entries: u64,
    totals: u64,
    with_total: u64,
    non_200: usize,
    queries: usize,
}

impl Figures {
    fn percentile(&self, q: f64) -> Option<f64> {
        if self.ok.is_empty() {
            return None;
        }
        let mut sorted = self.ok.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1].as_secs_f64() * 1000.0)
    }

    fn mean_entries(&self) -> Option<f64> {
        (!self.ok.is_empty()).then(|| self.entries as f64 / self.ok.len() as f64)
    }

    fn mean_total(&self) -> Option<f64> {
        (self.with_total > 0).then(|| self.totals as f64 / self.with_total as f64)
    }
}

fn show(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// Runs `case`: the first WARMUP queries unmeasured, the rest measured.
fn run(conn: &mut Conn, case: &Case) -> Figures {
    let mut f = Figures {
        name: case.name,
        ok: Vec::new(),
        entries: 0,
        totals: 0,
        with_total: 0,
        non_200: 0,
        queries: case.queries.len().saturating_sub(WARMUP),
    };
    let mut reported = false;
    for (n, query) in case.queries.iter().enumerate() {
        let rel = format!(
            "{}?{}",
            case.resource_type,
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish()
        );
        let start = Instant::now();
        let answer = conn.send("GET", &rel, None);
        let elapsed = start.elapsed();
        if n < WARMUP {
            continue;
        }
        let (status, body) = match answer {
            Ok((200, body)) => {
                f.ok.push(elapsed);
                let bundle: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                f.entries += bundle["entry"].as_array().map_or(0, Vec::len) as u64;
                if let Some(total) = bundle["total"].as_u64() {
                    f.totals += total;
                    f.with_total += 1;
                }
                continue;
            }
            Ok((status, body)) => (
                status.to_string(),
                String::from_utf8_lossy(&body).into_owned(),
            ),
            Err(e) => ("no answer".to_owned(), e.to_string()),
        };
        f.non_200 += 1;
        if !reported {
            reported = true;
            let shown: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!(
                "  {} {}?{}: {}",
                status,
                case.resource_type,
                shown.join("&"),
                first_chars(&body, 300)
            );
        }
    }
    f
}

fn search(
    base: &str,
    src: &Source,
    patients: usize,
    repeat: usize,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let mut conn = Conn::open(base, None)?;
    conn.extra = "Prefer: handling=strict\r\n".to_owned();
    // The kept connection answers before anything is timed on it.
    conn.json("metadata")?;
    println!(
        "searches: {patients} patients, {WARMUP} warm-up + {repeat} measured requests each, \
         one request at a time over one kept connection with TCP_NODELAY (Prefer: handling=strict)"
    );
    let mut all = Vec::new();
    for case in cases(src, patients, WARMUP + repeat) {
        if only.is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        if case.queries.len() <= WARMUP {
            println!(
                "{:<62} skipped: the loaded patients hold no data for it",
                case.name
            );
            continue;
        }
        let f = run(&mut conn, &case);
        println!(
            "{:<62} median {:>8} ms  p99 {:>8} ms  entries {:>6}  total {:>8}  non-200 {}/{}",
            f.name,
            show(f.percentile(0.5), 2),
            show(f.percentile(0.99), 2),
            show(f.mean_entries(), 1),
            show(f.mean_total(), 1),
            f.non_200,
            f.queries
        );
        all.push(f);
    }
    println!();
    println!("| search | median ms | p99 ms | mean entries | mean total | non-200 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for f in &all {
        println!(
            "| `{}` | {} | {} | {} | {} | {}/{} |",
            f.name.replace('|', "\\|"),
            show(f.percentile(0.5), 2),
            show(f.percentile(0.99), 2),
            show(f.mean_entries(), 1),
            show(f.mean_total(), 1),
            f.non_200,
            f.queries
        );
    }
    Ok(())
}

/// Writes what `--load` stores as one NDJSON file per type under `dir`, named in load order.
fn write_ndjson(dir: &Path, src: &Source, patients: usize) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let start = Instant::now();
    let mut total = 0usize;
    for (n, kind) in Kind::ALL.into_iter().enumerate() {
        let path = dir.join(format!("{n}-{}.ndjson", kind.resource_type()));
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for (index, k) in src.load_items(kind, patients) {
            let (_, body) = src.replica(kind, index, k);
            serde_json::to_writer(&mut out, &body)?;
            out.write_all(b"\n")?;
            total += 1;
        }
        out.flush()?;
    }
    println!(
        "wrote {total} resources for {patients} patients to {} in {:.1} s",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let src = Source::read(&args.data)?;
    if let Some(dir) = &args.ndjson {
        return write_ndjson(dir, &src, args.patients);
    }
    let client = Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")?;
    let metadata = client
        .get(format!("{}/metadata", args.base))
        .send()
        .await
        .with_context(|| format!("no answer from {}/metadata", args.base))?;
    if !metadata.status().is_success() {
        bail!(
            "{}/metadata answered {}: is --base the FHIR base URL?",
            args.base,
            metadata.status()
        );
    }
    let _ = metadata.bytes().await;
    if args.load {
        load(&client, &args.base, &src, args.patients).await;
    }
    if args.repeat > 0 {
        search(
            &args.base,
            &src,
            args.patients,
            args.repeat,
            args.only.as_deref(),
        )?;
    }
    Ok(())
}

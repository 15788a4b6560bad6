//! The client side of `benches/compare.sh`: loads Synthea bundles over HTTP and times reads and
//! searches against any FHIR R4 server (expediente or a peer), so both are measured alike.
//!
//! - `compare_bench prepare --data DIR --out DIR`: the bundles under `--data` (recursively) with
//!   only the entries of the seven resource types expediente hosts; a reference to a dropped
//!   entry's `urn:uuid:` becomes literal (`Organization/<id>`), as `expediente import
//!   --skip-unsupported` does. Batch bundles are written first in name order (`0-...`), the
//!   transaction bundles after them (`1-...`).
//! - `compare_bench load --base URL [--token T] [--clients N] DIR`: POSTs each bundle of DIR to
//!   `URL` (the batches first, one after the other; then the transactions, N clients each
//!   posting one bundle at a time) and prints the resources sent per second, timed from the
//!   first request to the last answer.
//! - `compare_bench search --base URL [--token T] [--repeat R] [--paths PREFIX] DIR`: finds, from
//!   the bundles of DIR and the server's answers, the patient with the most observations (among
//!   those with vital signs, medication requests and encounters) and
//!   times five searches about it, each 20 times as warm-up and R times (default 200)
//!   measured, one request at a time over one kept connection with TCP_NODELAY (written and
//!   read by hand: a client library can cost more than the search). Prints the median and p99.
//!   With `--paths`, writes two wrk scripts, `PREFIXPatient.lua` reading up to 300 stored
//!   patients and `PREFIXObservation.lua` reading that patient's observations (up to 300).
//!
//! Figures only: nothing is asserted. Non-2xx answers are counted and printed.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "shared/kept.rs"]
mod kept;
use kept::Conn;

const HOSTED: [&str; 7] = [
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "MedicationRequest",
    "AllergyIntolerance",
    "Practitioner",
];
const WARMUP: usize = 20;
const USAGE: &str = "usage: compare_bench prepare --data DIR --out DIR\n\
       compare_bench load --base URL [--token T] [--clients N] DIR\n\
       compare_bench search --base URL [--token T] [--repeat R] [--paths PREFIX] DIR";

#[derive(Default)]
struct Args {
    base: String,
    token: Option<String>,
    clients: usize,
    repeat: usize,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
    paths: Option<PathBuf>,
    dir: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut a = Args {
        clients: 1,
        repeat: 200,
        ..Args::default()
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--base" => a.base = value()?.trim_end_matches('/').to_owned(),
            "--token" => a.token = Some(value()?).filter(|t| !t.is_empty()),
            "--clients" => a.clients = value()?.parse().context("--clients takes a number")?,
            "--repeat" => a.repeat = value()?.parse().context("--repeat takes a number")?,
            "--data" => a.data = Some(value()?.into()),
            "--out" => a.out = Some(value()?.into()),
            "--paths" => a.paths = Some(value()?.into()),
            other if !other.starts_with('-') => a.dir = Some(other.into()),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let a = parse_args(args)?;
    let dir = || a.dir.clone().context(USAGE);
    match command.as_str() {
        "prepare" => prepare(
            a.data.as_deref().context(USAGE)?,
            a.out.as_deref().context(USAGE)?,
        ),
        "load" => load(&a, &dir()?),
        "search" => search(&a, &dir()?),
        _ => bail!("{USAGE}"),
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            json_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out.sort();
    Ok(())
}

fn prepare(data: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut files = Vec::new();
    json_files(data, &mut files)?;
    let (mut bundles, mut kept_total) = (0, 0);
    for f in files {
        let mut b: Value = serde_json::from_slice(&std::fs::read(&f)?)?;
        if b["resourceType"] != "Bundle" {
            continue;
        }
        let entries = b["entry"].as_array_mut().map(std::mem::take);
        let mut literal = HashMap::new();
        let mut kept = Vec::new();
        for e in entries.unwrap_or_default() {
            let rt = e["resource"]["resourceType"].as_str().unwrap_or_default();
            if HOSTED.contains(&rt) {
                kept.push(e);
            } else if let (Some(u), Some(id)) =
                (e["fullUrl"].as_str(), e["resource"]["id"].as_str())
            {
                literal.insert(u.to_owned(), format!("{rt}/{id}"));
            }
        }
        for e in &mut kept {
            relink(&mut e["resource"], &literal);
        }
        kept_total += kept.len();
        b["entry"] = Value::Array(kept);
        let order = if b["type"] == "batch" { 0 } else { 1 };
        let name = f.file_name().context("a file name")?.to_string_lossy();
        std::fs::write(out.join(format!("{order}-{name}")), serde_json::to_vec(&b)?)?;
        bundles += 1;
    }
    println!("{bundles} bundles, {kept_total} entries of hosted types");
    Ok(())
}

/// Every `reference` in `v` found in `literal` replaced by its literal form.
fn relink(v: &mut Value, literal: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), x.as_str().and_then(|s| literal.get(s))) {
                    ("reference", Some(l)) => *x = Value::String(l.clone()),
                    _ => relink(x, literal),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| relink(x, literal)),
        _ => {}
    }
}

fn bundles(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>, usize)>> {
    let mut files = Vec::new();
    json_files(dir, &mut files)?;
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f)?;
            let v: Value = serde_json::from_slice(&bytes)?;
            let n = v["entry"].as_array().map_or(0, Vec::len);
            Ok((f, bytes, n))
        })
        .collect()
}

fn load(a: &Args, dir: &Path) -> anyhow::Result<()> {
    let all = bundles(dir)?;
    let (batches, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|(f, ..)| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("0-"))
    });
    let resources: usize = batches.iter().chain(&rest).map(|b| b.2).sum();
    let started = Instant::now();
    let mut failed = 0;
    for b in &batches {
        failed += post(a, b)? as usize;
    }
    let batches_took = started.elapsed().as_secs_f64();
    let queue = std::sync::Mutex::new(rest.iter());
    let results: Vec<anyhow::Result<usize>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..a.clients.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut failed = 0;
                    loop {
                        let next = queue.lock().expect("the queue").next();
                        let Some(b) = next else { return Ok(failed) };
                        failed += post(a, b)? as usize;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker"))
            .collect()
    });
    for r in results {
        failed += r?;
    }
    let secs = started.elapsed().as_secs_f64();
    let in_transactions: usize = rest.iter().map(|b| b.2).sum();
    println!(
        "loaded {resources} resources in {secs:.2} s ({:.0} resources/s), {} bundles, {failed} failed, {} clients",
        resources as f64 / secs,
        batches.len() + rest.len(),
        a.clients.max(1)
    );
    // The batches go first, one request each, whatever the number of clients: the
    // transactions alone show what parallel clients gain.
    println!(
        "transactions: {in_transactions} resources in {:.2} s ({:.0} resources/s) after the batches' {batches_took:.2} s",
        secs - batches_took,
        in_transactions as f64 / (secs - batches_took).max(1e-9),
    );
    Ok(())
}

/// POSTs one bundle; true when the server refused it (its answer is printed).
fn post(a: &Args, (file, body, _): &(PathBuf, Vec<u8>, usize)) -> anyhow::Result<bool> {
    let mut c = Conn::open(&a.base, a.token.clone())?;
    let (status, answer) = c.send("POST", "", Some(body))?;
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&answer);
        eprintln!(
            "{}: {status} {}",
            file.display(),
            text.chars().take(400).collect::<String>()
        );
        return Ok(true);
    }
    Ok(false)
}

/// What the five searches ask about: the patient with the most observations in the bundles
/// among those with vital signs, medication requests and encounters.
struct Subject {
    identifier: String,
    family: String,
    code: String,
    date: String,
    status: String,
    observations: usize,
}

fn subject(dir: &Path) -> anyhow::Result<Subject> {
    let mut best: Option<(usize, Value, Vec<Value>)> = None;
    for (_, bytes, _) in bundles(dir)? {
        let b: Value = serde_json::from_slice(&bytes)?;
        let rs: Vec<Value> = b["entry"]
            .as_array()
            .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default();
        let Some(p) = rs.iter().find(|r| r["resourceType"] == "Patient").cloned() else {
            continue;
        };
        let count = |t: &str| rs.iter().filter(|r| r["resourceType"] == t).count();
        let vital = rs
            .iter()
            .filter(|r| r["category"][0]["coding"][0]["code"] == "vital-signs")
            .count();
        let n = count("Observation");
        // Every search must have something to find.
        let searchable = vital > 0 && count("MedicationRequest") > 0 && count("Encounter") > 0;
        if searchable && best.as_ref().is_none_or(|b| n > b.0) {
            best = Some((n, p, rs));
        }
    }
    let (observations, p, rs) = best.context("no bundle holds a Patient")?;
    let of = |t: &'static str| rs.iter().filter(move |r| r["resourceType"] == t);
    let id = p["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["type"].is_null()).or(ids.first()))
        .context("the patient has no identifier")?;
    let code = most_common(of("Observation").filter_map(|o| {
        let c = &o["code"]["coding"][0];
        Some(format!("{}|{}", c["system"].as_str()?, c["code"].as_str()?))
    }))?;
    let mut dates: Vec<&str> = of("Observation")
        .filter(|o| o["category"][0]["coding"][0]["code"] == "vital-signs")
        .filter_map(|o| o["effectiveDateTime"].as_str())
        .collect();
    dates.sort();
    let date = dates.get(dates.len() / 2).context("no vital signs")?;
    Ok(Subject {
        identifier: format!(
            "{}|{}",
            id["system"].as_str().unwrap_or_default(),
            id["value"].as_str().unwrap_or_default()
        ),
        family: p["name"][0]["family"].as_str().unwrap_or_default().into(),
        code,
        date: date.get(..10).unwrap_or(date).to_owned(),
        status: most_common(
            of("MedicationRequest").filter_map(|m| Some(m["status"].as_str()?.into())),
        )?,
        observations,
    })
}

fn most_common(values: impl Iterator<Item = String>) -> anyhow::Result<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let top = counts.into_iter().max_by_key(|(_, n)| *n);
    Ok(top.context("no value to search for")?.0)
}

/// Encodes a search parameter's value for a query string.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn search(a: &Args, dir: &Path) -> anyhow::Result<()> {
    let s = subject(dir)?;
    let mut c = Conn::open(&a.base, a.token.clone())?;
    let found = c.json(&format!("Patient?identifier={}", q(&s.identifier)))?;
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .context("the patient is not found by its identifier")?
        .to_owned();
    println!(
        "the patient with the most observations ({}), id {id}",
        s.observations
    );
    if let Some(file) = &a.paths {
        write_paths(&mut c, &id, file)?;
    }
    let searches = [
        format!("Observation?patient={id}&code={}", q(&s.code)),
        format!(
            "Observation?patient={id}&category=vital-signs&date=ge{}",
            s.date
        ),
        format!("MedicationRequest?patient={id}&status={}", s.status),
        format!("Encounter?patient={id}"),
        format!("Patient?family={}", q(&s.family)),
    ];
    for rel in &searches {
        let (ms, entries, failed) = time(&mut c, rel, a.repeat)?;
        println!(
            "{:<60} median {:>6.2} ms   p99 {:>6.2} ms   {entries:>4} entries   {failed} failed",
            rel.split('?').next().unwrap_or_default().to_owned() + "?" + &params(rel),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
        );
    }
    Ok(())
}

/// The parameter names of a search, for its label.
fn params(rel: &str) -> String {
    let query = rel.split_once('?').map_or("", |(_, q)| q);
    let names: Vec<&str> = query
        .split('&')
        .filter_map(|p| p.split('=').next())
        .collect();
    names.join("&")
}

fn time(c: &mut Conn, rel: &str, repeat: usize) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let (mut ms, mut failed, mut entries) = (Vec::with_capacity(repeat), 0, 0);
    for i in 0..WARMUP + repeat {
        let started = Instant::now();
        let (status, body) = c.send("GET", rel, None)?;
        let took = started.elapsed();
        if status != 200 {
            failed += 1;
            if failed == 1 {
                eprintln!("GET {rel}: {status} {}", String::from_utf8_lossy(&body));
            }
        }
        if i == 0 {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            entries = v["entry"].as_array().map_or(0, Vec::len);
        }
        if i >= WARMUP {
            ms.push(took.as_secs_f64() * 1000.0);
        }
    }
    Ok((ms, entries, failed))
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Two wrk scripts, `{prefix}Patient.lua` and `{prefix}Observation.lua`, each reading one of up to
/// 300 stored resources of its type at random.
fn write_paths(c: &mut Conn, patient: &str, prefix: &Path) -> anyhow::Result<()> {
    for (rt, rel) in [
        ("Patient", "Patient?_count=300".to_owned()),
        (
            "Observation",
            format!("Observation?patient={patient}&_count=300"),
        ),
    ] {
        let page = c.json(&rel)?;
        let mut seen = HashSet::new();
        let paths: Vec<String> = page["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["resource"]["id"].as_str())
            .filter(|i| seen.insert(*i))
            .map(|id| json!(format!("{}/{rt}/{id}", c.path)).to_string())
            .collect();
        let mut script = format!(
            "paths = {{{}}}\nrequest = function() return wrk.format('GET', paths[math.random(#paths)]) end\n",
            paths.join(",")
        );
        if let Some(t) = &c.token {
            script.push_str(&format!("wrk.headers['Authorization'] = 'Bearer {t}'\n"));
        }
        let mut file = prefix.as_os_str().to_owned();
        file.push(format!("{rt}.lua"));
        std::fs::write(&file, script)?;
        println!("{} {rt} paths for the read benchmark", paths.len());
    }
    Ok(())
}

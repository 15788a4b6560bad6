//! `expediente import PATH...`: loads Bundles (`.json`) and NDJSON (`.ndjson`, one resource a
//! line) through the same transaction code as `POST /fhir`, so an import is exactly as checked
//! as an API write.
//!
//! - Resources with ids keep them: a POST entry whose fullUrl is `urn:uuid:<id>` (and that has no
//!   `ifNoneExist`) is written as `PUT Type/<id>`, and NDJSON resources are written under their
//!   id. References to them, rewritten by the transaction, name those ids. Importing the same
//!   files again writes nothing new: an update that changes nothing makes no version.
//! - Each bundle (or line) is parsed and checked as a transaction would check it on the reader
//!   thread, ahead of the database; one that fails there fails alone, with the transaction's
//!   error. GET entries are not run: an import writes.
//! - Small bundles are grouped into database transactions of about `batch_size` resources;
//!   a bundle is never split. A group that fails is retried bundle by bundle (read again from
//!   its file), so a bad bundle fails alone and is reported with its reason; a failed NDJSON
//!   group line by line.
//! - On SQLite a group's commit is sent without waiting for it: the next group begins behind
//!   it, and its outcome is settled before the next group commits (if it failed, that group is
//!   rolled back and both are retried bundle by bundle, in order).
//! - With `skip_unsupported`, entries of types this server does not host are dropped (and
//!   counted); references to them from the bundle become literal (`Organization/<id>`);
//!   conditional references to such types stay as sent.
//! - Batch bundles are loaded first (Synthea's hospital and practitioner files are batches the
//!   patient bundles refer to), then the other JSON files, then NDJSON files, patients first.

use crate::error::Error;
use crate::fhir::references_mut;
use crate::interactions::{Answers, BundleOptions, Caller, Fhir, Prepared};
use crate::store::Committing;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// About how many resources go in one database transaction.
    pub batch_size: usize,
    /// Drop entries of resource types this server does not host instead of failing.
    pub skip_unsupported: bool,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub created: BTreeMap<String, u64>,
    /// Updated, or found unchanged (a conditional create's match, a repeated import).
    pub updated: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    /// Each failed bundle, line or file, with why.
    pub failed: Vec<(String, String)>,
    /// Resources in what failed.
    pub failed_resources: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Resources written or found.
    pub fn loaded(&self) -> u64 {
        self.created.values().sum::<u64>() + self.updated.values().sum::<u64>()
    }

    /// The summary as text, for the terminal.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        out.push_str(&format!(
            "imported {} resources in {:.1} s ({:.0} resources/s)\n",
            self.loaded(),
            secs,
            self.loaded() as f64 / secs
        ));
        for (label, counts) in [
            ("created", &self.created),
            ("updated or unchanged", &self.updated),
            ("skipped (type not hosted)", &self.skipped),
        ] {
            if !counts.is_empty() {
                let parts: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
                out.push_str(&format!("  {label}: {}\n", parts.join(", ")));
            }
        }
        if !self.failed.is_empty() {
            out.push_str(&format!(
                "  failed: {} ({} resources)\n",
                self.failed.len(),
                self.failed_resources
            ));
            for (what, why) in &self.failed {
                out.push_str(&format!("    {what}: {why}\n"));
            }
        }
        out
    }
}

/// A bundle (or NDJSON line, or lone resource) as read: transaction entries and where they came
/// from.
struct RawUnit {
    source: String,
    entries: Vec<Value>,
    origin: Origin,
}

/// Where a unit can be read again from, to run alone after its group failed.
#[derive(Clone)]
enum Origin {
    /// The `n`th unit of a JSON file.
    File(PathBuf, usize),
    /// An NDJSON line.
    Line(String),
}

/// A unit ready to run: its entries parsed and checked.
struct Unit {
    part: Part,
    prepared: Prepared,
}

/// What is kept of a unit while its group runs.
struct Part {
    source: String,
    origin: Origin,
    /// Its resources.
    len: usize,
}

/// A file to import, in the order files are loaded.
struct Source {
    path: PathBuf,
    rank: u8,
    bytes: u64,
}

/// Every `.json` and `.ndjson` file under `paths`, in loading order.
fn sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files).with_context(|| format!("reading {}", p.display()))?;
    }
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::metadata(&path)?.len();
        let rank = if is_ndjson(&path) {
            10 + ndjson_rank(&path)
        } else {
            match head_of(&path) {
                (Some(rt), Some(kind)) if rt == "Bundle" && kind == "batch" => 0,
                _ => 1,
            }
        };
        out.push(Source { path, rank, bytes });
    }
    out.sort_by(|a, b| (a.rank, &a.path).cmp(&(b.rank, &b.path)));
    Ok(out)
}

/// A JSON file's `resourceType` and `type`, read from its start: the file is read only as far
/// as they are (the first two properties of a Synthea bundle), not parsed whole.
fn head_of(path: &Path) -> (Option<String>, Option<String>) {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Head<'a>(&'a mut (Option<String>, Option<String>));
    impl<'de> Visitor<'de> for Head<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "resourceType" => self.0 .0 = map.next_value::<Option<String>>()?,
                    "type" => self.0 .1 = map.next_value::<Option<String>>()?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if self.0 .0.is_some() && self.0 .1.is_some() {
                    // Stopping here leaves the object unfinished: the error that makes is
                    // not one (what was wanted has been read).
                    break;
                }
            }
            Ok(())
        }
    }
    let mut found = (None, None);
    if let Ok(f) = std::fs::File::open(path) {
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(f));
        let _ = de.deserialize_map(Head(&mut found));
    }
    found
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_dir() {
        for e in std::fs::read_dir(p)? {
            let path = e?.path();
            let wanted = path.is_dir()
                || matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("json") | Some("ndjson")
                );
            if wanted {
                collect(&path, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

fn is_ndjson(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("ndjson")
}

/// NDJSON files of the types others refer to load first (by the type of the first line).
fn ndjson_rank(p: &Path) -> u8 {
    use std::io::BufRead;
    let first = std::fs::File::open(p)
        .ok()
        .and_then(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find(|l| !l.trim().is_empty())
        })
        .and_then(|l| serde_json::from_str::<Value>(&l).ok());
    match first
        .as_ref()
        .and_then(|v| v.get("resourceType"))
        .and_then(Value::as_str)
    {
        Some("Practitioner") => 0,
        Some("Patient") => 1,
        Some("Encounter") => 2,
        Some("AllergyIntolerance") | Some("MedicationRequest") => 3,
        Some("Observation") => 4,
        Some("DiagnosticReport") => 5,
        _ => 6,
    }
}

/// The resource type an entry writes.
fn entry_type(e: &Value) -> Option<String> {
    e.pointer("/resource/resourceType")
        .and_then(Value::as_str)
        .or_else(|| {
            e.pointer("/request/url")
                .and_then(Value::as_str)
                .map(|u| u.split(['/', '?']).next().unwrap_or_default())
        })
        .map(str::to_owned)
}

/// A valid FHIR id.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The top of a JSON file, its entries left unparsed.
#[derive(serde::Deserialize)]
struct BundleTop<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    entry: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// What [`Reader::prepare`] needs of an entry it drops.
#[derive(serde::Deserialize)]
struct EntryHead {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<ResourceHead>,
    request: Option<RequestHead>,
}

#[derive(serde::Deserialize)]
struct ResourceHead {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    id: Option<String>,
}

#[derive(serde::Deserialize)]
struct RequestHead {
    url: Option<String>,
}

/// A bundle entry as read (see [`Reader::read_entry`]).
enum Read {
    Parsed(Value),
    /// Of a type not hosted, to be dropped.
    Dropped {
        rt: String,
        full_url: Option<String>,
        own_id: Option<String>,
    },
}

/// What reading one file gave: the units to run, what could not be read, what was dropped.
struct Parsed<U> {
    units: Vec<U>,
    /// The units of an NDJSON file are grouped among themselves only.
    alone: bool,
    failed: Vec<(String, String, u64)>,
    skipped: BTreeMap<String, u64>,
    bytes: u64,
}

/// Reads and prepares files; it runs on a thread of its own, ahead of the transactions.
struct Reader {
    fhir: Fhir,
    base_url: String,
    skip_unsupported: bool,
}

impl Reader {
    /// A file's units, parsed and checked as their transactions will check them.
    fn file(&self, f: &Source) -> Parsed<Unit> {
        let parsed = self.parse(&f.path, f.bytes);
        let mut out = Parsed {
            units: Vec::with_capacity(parsed.units.len()),
            alone: parsed.alone,
            failed: parsed.failed,
            skipped: parsed.skipped,
            bytes: parsed.bytes,
        };
        for u in parsed.units {
            let len = u.entries.len();
            match self.fhir.prepare_transaction(u.entries, &self.base_url) {
                Ok(prepared) => out.units.push(Unit {
                    part: Part {
                        source: u.source,
                        origin: u.origin,
                        len,
                    },
                    prepared,
                }),
                Err(e) => out.failed.push((u.source, describe(&e), len as u64)),
            }
        }
        out
    }

    /// The entries of a unit read again; `files` keeps the units of the files read so far, so
    /// that the units of one file are read with one reading of it.
    fn again(
        &self,
        origin: &Origin,
        files: &mut HashMap<PathBuf, Vec<Option<Vec<Value>>>>,
    ) -> Result<Vec<Value>, String> {
        match origin {
            Origin::Line(line) => {
                let r = serde_json::from_str::<Value>(line).map_err(|e| e.to_string())?;
                Ok(self
                    .resource_entry(r, &mut BTreeMap::new())
                    .into_iter()
                    .collect())
            }
            Origin::File(path, n) => files
                .entry(path.clone())
                .or_insert_with(|| {
                    self.parse(path, 0)
                        .units
                        .into_iter()
                        .map(|u| Some(u.entries))
                        .collect()
                })
                .get_mut(*n)
                .and_then(Option::take)
                .ok_or_else(|| format!("{} changed while it was imported", path.display())),
        }
    }

    fn parse(&self, path: &Path, bytes: u64) -> Parsed<RawUnit> {
        let mut out = Parsed {
            units: Vec::new(),
            alone: false,
            failed: Vec::new(),
            skipped: BTreeMap::new(),
            bytes,
        };
        let name = path.display().to_string();
        if is_ndjson(path) {
            out.alone = true;
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    out.failed.push((name, e.to_string(), 0));
                    return out;
                }
            };
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let source = format!("{name}:{}", i + 1);
                match serde_json::from_str::<Value>(line) {
                    Ok(r) => {
                        if let Some(entry) = self.resource_entry(r, &mut out.skipped) {
                            out.units.push(RawUnit {
                                source,
                                entries: vec![entry],
                                origin: Origin::Line(line.to_owned()),
                            });
                        }
                    }
                    Err(e) => out.failed.push((source, format!("not JSON: {e}"), 1)),
                }
            }
            return out;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                out.failed.push((name, e.to_string(), 0));
                return out;
            }
        };
        // A transaction or batch Bundle's entries are parsed one by one, and with
        // --skip-unsupported those of types not hosted (most of a Synthea file) only looked at.
        if let Ok(top) = serde_json::from_slice::<BundleTop>(&bytes) {
            if let (Some("Bundle"), Some(kind @ ("transaction" | "batch")), Some(raw)) =
                (top.resource_type.as_deref(), top.kind.as_deref(), top.entry)
            {
                let mut read = Vec::with_capacity(raw.len());
                for r in raw {
                    match self.read_entry(r) {
                        Ok(e) => read.push(e),
                        Err(e) => {
                            out.failed.push((name, e.0, 0));
                            return out;
                        }
                    }
                }
                let entries = self.prepare(read, &mut out.skipped);
                self.units_of(&name, path, kind == "batch", entries, &mut out.units);
                return out;
            }
        }
        let mut value = match crate::fhir::json::parse_strict(&bytes) {
            Ok(v) => v,
            Err(e) => {
                out.failed.push((name, e.0, 0));
                return out;
            }
        };
        match (
            value.get("resourceType").and_then(Value::as_str),
            value.get("type").and_then(Value::as_str),
        ) {
            (Some("Bundle"), Some(kind @ ("transaction" | "batch"))) => {
                let batch = kind == "batch";
                let entries = match value.get_mut("entry").map(Value::take) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                let entries = self.prepare(
                    entries.into_iter().map(Read::Parsed).collect(),
                    &mut out.skipped,
                );
                self.units_of(&name, path, batch, entries, &mut out.units);
            }
            (Some("Bundle"), _) => out.failed.push((
                name,
                "a Bundle to import is a batch or a transaction".into(),
                0,
            )),
            (Some(_), _) => {
                if let Some(entry) = self.resource_entry(value, &mut out.skipped) {
                    out.units.push(RawUnit {
                        source: name,
                        entries: vec![entry],
                        origin: Origin::File(path.to_owned(), 0),
                    });
                }
            }
            (None, _) => out.failed.push((name, "not a FHIR resource".into(), 0)),
        }
        out
    }

    /// A bundle's prepared entries as units: the bundle, or each entry of a batch (they stand
    /// alone: each may fail alone).
    fn units_of(
        &self,
        name: &str,
        path: &Path,
        batch: bool,
        entries: Vec<Value>,
        units: &mut Vec<RawUnit>,
    ) {
        if batch {
            for (i, e) in entries.into_iter().enumerate() {
                units.push(RawUnit {
                    source: format!("{name} entry {i}"),
                    entries: vec![e],
                    origin: Origin::File(path.to_owned(), i),
                });
            }
        } else if !entries.is_empty() {
            units.push(RawUnit {
                source: name.to_owned(),
                entries,
                origin: Origin::File(path.to_owned(), 0),
            });
        }
    }

    /// One entry of a bundle: parsed, or, when it is of a type not hosted and such entries are
    /// skipped, only what [`Reader::prepare`] needs of it.
    fn read_entry(
        &self,
        raw: &serde_json::value::RawValue,
    ) -> Result<Read, crate::fhir::json::JsonError> {
        if self.skip_unsupported {
            if let Ok(head) = serde_json::from_str::<EntryHead>(raw.get()) {
                let rt = head
                    .resource
                    .as_ref()
                    .and_then(|r| r.resource_type.clone())
                    .or_else(|| {
                        head.request
                            .as_ref()
                            .and_then(|r| r.url.as_deref())
                            .map(|u| u.split(['/', '?']).next().unwrap_or_default().to_owned())
                    });
                if let Some(rt) = rt.filter(|t| !self.hosts(t)) {
                    let own_id = head
                        .resource
                        .and_then(|r| r.id)
                        .or_else(|| {
                            head.full_url
                                .as_deref()
                                .and_then(|u| u.rsplit([':', '/']).next())
                                .map(str::to_owned)
                        })
                        .filter(|i| is_id(i));
                    return Ok(Read::Dropped {
                        rt,
                        full_url: head.full_url,
                        own_id,
                    });
                }
            }
        }
        crate::fhir::json::parse_strict(raw.get().as_bytes()).map(Read::Parsed)
    }

    fn hosts(&self, resource_type: &str) -> bool {
        self.fhir.registry.get(resource_type).is_some()
    }

    /// A lone resource as a transaction entry: PUT under its id, or POST without one.
    fn resource_entry(&self, r: Value, skipped: &mut BTreeMap<String, u64>) -> Option<Value> {
        let rt = r
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !self.hosts(&rt) && self.skip_unsupported {
            *skipped.entry(rt).or_default() += 1;
            return None;
        }
        let url = match r.get("id").and_then(Value::as_str).filter(|i| is_id(i)) {
            Some(id) => json!({"method": "PUT", "url": format!("{rt}/{id}")}),
            None => json!({"method": "POST", "url": rt}),
        };
        Some(json!({"resource": r, "request": url}))
    }

    /// A bundle's entries made ready: entries of types not hosted dropped (when asked, with
    /// references to them made literal), POSTs of resources with a `urn:uuid:` fullUrl turned
    /// into PUTs under that id.
    fn prepare(&self, entries: Vec<Read>, skipped: &mut BTreeMap<String, u64>) -> Vec<Value> {
        let mut literal: HashMap<String, String> = HashMap::new();
        let mut kept = Vec::with_capacity(entries.len());
        for e in entries {
            let mut e = match e {
                Read::Parsed(e) => e,
                Read::Dropped {
                    rt,
                    full_url,
                    own_id,
                } => {
                    *skipped.entry(rt.clone()).or_default() += 1;
                    if let (Some(u), Some(id)) = (full_url, own_id) {
                        literal.insert(u, format!("{rt}/{id}"));
                    }
                    continue;
                }
            };
            let Some(rt) = entry_type(&e) else {
                kept.push(e);
                continue;
            };
            let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
            let own_id = e
                .pointer("/resource/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    full_url
                        .as_deref()
                        .and_then(|u| u.rsplit([':', '/']).next())
                        .map(str::to_owned)
                })
                .filter(|i| is_id(i));
            if !self.hosts(&rt) && self.skip_unsupported {
                *skipped.entry(rt.clone()).or_default() += 1;
                if let (Some(u), Some(id)) = (full_url, own_id) {
                    literal.insert(u, format!("{rt}/{id}"));
                }
                continue;
            }
            let is_post = e.pointer("/request/method").and_then(Value::as_str) == Some("POST");
            let conditional = e.pointer("/request/ifNoneExist").is_some();
            let uuid_id = full_url
                .as_deref()
                .and_then(|u| u.strip_prefix("urn:uuid:"))
                .filter(|i| is_id(i))
                .map(str::to_owned);
            if let (true, false, Some(id)) = (is_post, conditional, uuid_id) {
                e["request"] = json!({"method": "PUT", "url": format!("{rt}/{id}")});
                if let Some(r) = e.get_mut("resource").and_then(Value::as_object_mut) {
                    r.insert("id".into(), Value::String(id));
                }
            }
            kept.push(e);
        }
        if !literal.is_empty() {
            for e in &mut kept {
                if let Some(r) = e.get_mut("resource") {
                    references_mut(r, &mut |s| {
                        if let Some(l) = literal.get(s.as_str()) {
                            *s = l.clone();
                        }
                    });
                }
            }
        }
        kept
    }
}

impl Fhir {
    /// Imports the files under `paths`.
    pub async fn import(
        &self,
        caller: &Caller,
        paths: &[PathBuf],
        opts: &ImportOptions,
    ) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let files = sources(paths)?;
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        let bar = if opts.progress {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let reader = || Reader {
            fhir: self.clone(),
            base_url: caller.base_url.clone(),
            skip_unsupported: opts.skip_unsupported,
        };
        let mut run = Run {
            fhir: self,
            caller,
            opts,
            reader: reader(),
            summary: Summary::default(),
            pending: Vec::new(),
            pending_len: 0,
            pending_targets: Default::default(),
            committing: None,
            analyze_at: 1000,
            analyzing: None,
            bar: &bar,
            started,
        };
        // Files are read, parsed, prepared and checked on another thread while the
        // transactions run: the two halves of the work use both cores. The reader keeps up to
        // READ_AHEAD files ready, about a group's worth of patient bundles: the files of the
        // next group are read while this one is written, not after.
        let reader = reader();
        let (send, mut parsed) = tokio::sync::mpsc::channel::<Parsed<Unit>>(READ_AHEAD);
        let producer = std::thread::Builder::new()
            .name("import-reader".into())
            .spawn(move || {
                for f in &files {
                    if send.blocking_send(reader.file(f)).is_err() {
                        break;
                    }
                }
            })
            .context("starting the file reader")?;
        while let Some(p) = parsed.recv().await {
            run.take(p).await;
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the file reader failed"))?;
        run.flush().await;
        run.settle().await;
        if let Some(a) = run.analyzing.take() {
            let _ = a.await;
        }
        bar.finish_and_clear();
        let mut summary = run.summary;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

/// Files read and prepared ahead of the transactions (see [`Fhir::import`]). A Synthea patient
/// bundle holds 100 to 300 resources, so a group of the default size is about 20 to 50 of them.
const READ_AHEAD: usize = 32;

struct Run<'a> {
    fhir: &'a Fhir,
    caller: &'a Caller,
    opts: &'a ImportOptions,
    /// Reads units again, for a group that failed.
    reader: Reader,
    summary: Summary,
    /// Units waiting to go in one transaction.
    pending: Vec<Unit>,
    pending_len: usize,
    /// What the pending units write (see [`Prepared::targets`]).
    pending_targets: std::collections::HashSet<String>,
    /// The last group, its commit sent and its outcome not yet known.
    committing: Option<Sent>,
    /// Resources loaded at which statistics are next refreshed.
    analyze_at: u64,
    /// The statistics being refreshed, beside the transactions (PostgreSQL).
    analyzing: Option<tokio::task::JoinHandle<()>>,
    bar: &'a ProgressBar,
    started: Instant,
}

/// A group whose commit is on its way.
struct Sent {
    commit: Committing,
    answers: Answers,
    parts: Vec<Part>,
}

impl Run<'_> {
    fn fail(&mut self, what: String, why: String, resources: u64) {
        self.summary.failed.push((what, why));
        self.summary.failed_resources += resources;
    }

    /// Runs (or groups) what one file gave.
    async fn take(&mut self, p: Parsed<Unit>) {
        for (t, n) in p.skipped {
            *self.summary.skipped.entry(t).or_default() += n;
        }
        for (what, why, n) in p.failed {
            self.fail(what, why, n);
        }
        if p.alone {
            self.flush().await;
        }
        for u in p.units {
            self.queue(u).await;
        }
        if p.alone {
            // A file's lines are not grouped with the next file's.
            self.flush().await;
        }
        self.bar.inc(p.bytes);
    }

    /// Adds a unit to the group, running the group first if the unit would overfill it. Units
    /// that write the same resource go in different transactions (a transaction writes a
    /// resource once).
    async fn queue(&mut self, unit: Unit) {
        let targets = unit.prepared.targets();
        let overlaps = targets.iter().any(|t| self.pending_targets.contains(t));
        if !self.pending.is_empty()
            && (overlaps || self.pending_len + unit.part.len > self.opts.batch_size)
        {
            self.flush().await;
        }
        self.pending_targets.extend(targets);
        self.pending_len += unit.part.len;
        self.pending.push(unit);
        if self.pending_len >= self.opts.batch_size {
            self.flush().await;
        }
    }

    /// Runs the pending units in one transaction and sends its commit; if it fails, each unit
    /// runs in its own.
    async fn flush(&mut self) {
        let units = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.pending_targets.clear();
        if units.is_empty() {
            return;
        }
        let mut prepared = Vec::with_capacity(units.len());
        let mut parts = Vec::with_capacity(units.len());
        for u in units {
            prepared.push(u.prepared);
            parts.push(u.part);
        }
        let opts = BundleOptions {
            representation: false,
            max_entries: usize::MAX,
        };
        let group = self
            .fhir
            .transaction_open(self.caller, Prepared::join(prepared), opts)
            .await;
        // The group before commits first: if it did not, this one ran without its writes, and
        // is rolled back; the units of both run again alone, in order.
        match (group, self.outcome().await) {
            (Ok((tx, answers)), None) => match tx.commit_sent().await {
                Ok(commit) => {
                    self.committing = Some(Sent {
                        commit,
                        answers,
                        parts,
                    })
                }
                Err(e) => self.failed(parts, e.into()).await,
            },
            (Err(e), None) => self.failed(parts, e).await,
            (group, Some((before, e))) => {
                drop(group);
                self.failed(before, e).await;
                self.alone(parts).await;
            }
        }
        let loaded = self.summary.loaded();
        // PostgreSQL plans by its statistics, and a database filled from empty has none that
        // fit: refreshed each time the data has doubled, the plans follow the growth. ANALYZE
        // runs on a connection of its own while the next groups are written (it blocks no
        // write), one at a time.
        if loaded >= self.analyze_at && self.analyzing.as_ref().is_none_or(|a| a.is_finished()) {
            let db = self.fhir.db.clone();
            self.analyzing = Some(tokio::spawn(async move {
                if let Err(e) = db.refresh_statistics().await {
                    tracing::warn!(error = %e, "ANALYZE failed");
                }
            }));
            self.analyze_at = loaded.saturating_mul(2);
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "{loaded} resources, {:.0}/s, {} failed",
            loaded as f64 / secs,
            self.summary.failed.len()
        ));
    }

    /// Waits for the last group's commit and counts what it wrote; if the commit failed, its
    /// units run alone.
    async fn settle(&mut self) {
        if let Some((parts, e)) = self.outcome().await {
            self.failed(parts, e).await;
        }
    }

    /// Waits for the last group's commit and counts what it wrote; if the commit failed, its
    /// units and why.
    async fn outcome(&mut self) -> Option<(Vec<Part>, Error)> {
        let sent = self.committing.take()?;
        match sent.commit.outcome().await {
            Ok(()) => {
                for (rt, created) in sent.answers.written() {
                    self.count(rt, created);
                }
                None
            }
            Err(e) => Some((sent.parts, e.into())),
        }
    }

    /// A group failed with `e`: one unit that failed for itself (not for a concurrent
    /// transaction) has failed; several run again, each alone.
    async fn failed(&mut self, mut parts: Vec<Part>, e: Error) {
        if parts.len() == 1 && !matches!(e, Error::Aborted) {
            if let Some(p) = parts.pop() {
                self.fail(p.source, describe(&e), p.len as u64);
            }
        } else {
            self.alone(parts).await;
        }
    }

    /// Each unit in a transaction of its own, read again from where it came from.
    async fn alone(&mut self, parts: Vec<Part>) {
        let opts = BundleOptions {
            representation: false,
            max_entries: usize::MAX,
        };
        let mut files = HashMap::new();
        for p in parts {
            let n = p.len as u64;
            let entries = match self.reader.again(&p.origin, &mut files) {
                Ok(entries) => entries,
                Err(why) => {
                    self.fail(p.source, why, n);
                    continue;
                }
            };
            match self
                .fhir
                .transaction(self.caller, &transaction_bundle(entries), opts)
                .await
            {
                Ok(response) => self.tally(&response),
                Err(e) => self.fail(p.source, describe(&e), n),
            }
        }
    }

    fn count(&mut self, rt: &str, created: bool) {
        let counts = if created {
            &mut self.summary.created
        } else {
            &mut self.summary.updated
        };
        match counts.get_mut(rt) {
            Some(n) => *n += 1,
            None => {
                counts.insert(rt.to_owned(), 1);
            }
        }
    }

    /// Counts what a transaction-response Bundle says was written.
    fn tally(&mut self, response: &Value) {
        for e in response
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let status = e
                .pointer("/response/status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(rt) = e
                .pointer("/response/location")
                .and_then(Value::as_str)
                .and_then(|l| l.split('/').next())
            else {
                continue;
            };
            if status.starts_with("201") || status.starts_with("200") {
                self.count(rt, status.starts_with("201"));
            }
        }
    }
}

/// A transaction Bundle of `entries`, moved in (`json!` would copy them).
fn transaction_bundle(entries: Vec<Value>) -> Value {
    let mut bundle = serde_json::Map::new();
    bundle.insert("resourceType".into(), "Bundle".into());
    bundle.insert("type".into(), "transaction".into());
    bundle.insert("entry".into(), Value::Array(entries));
    Value::Object(bundle)
}

/// An error as one line: its OperationOutcome's diagnostics (for a failure of the server, the
/// error itself: this is the operator's terminal, not a client).
fn describe(e: &Error) -> String {
    if let Error::Internal(inner) = e {
        return format!("500 {inner:#}");
    }
    let oo = e.outcome("");
    let msgs: Vec<String> = oo
        .get("issue")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| {
            let d = i.get("diagnostics").and_then(Value::as_str).unwrap_or("");
            match i.pointer("/expression/0").and_then(Value::as_str) {
                Some(path) => format!("{d} (at {path})"),
                None => d.to_owned(),
            }
        })
        .collect();
    format!("{} {}", e.status().as_u16(), msgs.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_type_is_read_from_its_start_wherever_the_properties_are() {
        let dir = std::env::temp_dir().join(format!("expediente-head-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (
                r#"{"resourceType": "Bundle", "type": "batch", "entry": [{"x": [1, 2]}]}"#,
                (Some("Bundle"), Some("batch")),
            ),
            // After the entries, and after a property that is not a string.
            (
                r#"{"entry": [{"resource": {"resourceType": "Patient"}}], "id": 7, "type": "transaction", "resourceType": "Bundle"}"#,
                (Some("Bundle"), Some("transaction")),
            ),
            (
                r#"{"resourceType": "Patient", "id": "p"}"#,
                (Some("Patient"), None),
            ),
            (r#"[1, 2]"#, (None, None)),
            (
                r#"{"resourceType": "Bundle", "type": "#,
                (Some("Bundle"), None),
            ),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let path = dir.join(format!("{i}.json"));
            std::fs::write(&path, text).unwrap();
            let (rt, kind) = head_of(&path);
            assert_eq!((rt.as_deref(), kind.as_deref()), *want, "{text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

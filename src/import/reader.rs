//! The reader: a file's bundles or lines parsed and checked as a transaction checks them, on a
//! thread of its own, ahead of the database.

use super::*;

/// The resource type an entry writes.
pub(super) fn entry_type(e: &Value) -> Option<String> {
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
pub(super) fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The top of a JSON file, its entries left unparsed.
#[derive(serde::Deserialize)]
pub(super) struct BundleTop<'a> {
    #[serde(rename = "resourceType")]
    pub(super) resource_type: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(borrow)]
    pub(super) entry: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// What [`Reader::prepare`] needs of an entry it drops.
#[derive(serde::Deserialize)]
pub(super) struct EntryHead {
    #[serde(rename = "fullUrl")]
    pub(super) full_url: Option<String>,
    pub(super) resource: Option<ResourceHead>,
    pub(super) request: Option<RequestHead>,
}

#[derive(serde::Deserialize)]
pub(super) struct ResourceHead {
    #[serde(rename = "resourceType")]
    pub(super) resource_type: Option<String>,
    pub(super) id: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct RequestHead {
    pub(super) url: Option<String>,
}

/// A bundle entry as read (see [`Reader::read_entry`]).
pub(super) enum Read {
    Parsed(Value),
    /// Of a type not hosted, to be dropped.
    Dropped {
        rt: String,
        full_url: Option<String>,
        own_id: Option<String>,
    },
}

/// What reading one file gave: the units to run, what could not be read, what was dropped.
pub(super) struct Parsed<U> {
    pub(super) units: Vec<U>,
    /// The units of an NDJSON file are grouped among themselves only, and it is read in parts
    /// ([`super::lines`]): whether this is the first part of one, and the last (false for a
    /// JSON file, whose units join the groups around them).
    pub(super) first: bool,
    pub(super) last: bool,
    pub(super) failed: Vec<(String, String, u64)>,
    pub(super) skipped: BTreeMap<String, u64>,
    pub(super) bytes: u64,
}

impl<U> Parsed<U> {
    /// Nothing read yet, of a file (or part) of `bytes` bytes.
    pub(super) fn empty(bytes: u64) -> Parsed<U> {
        Parsed {
            units: Vec::new(),
            first: false,
            last: false,
            failed: Vec::new(),
            skipped: BTreeMap::new(),
            bytes,
        }
    }
}

/// Reads and prepares files; it runs on a thread of its own, ahead of the transactions.
pub(super) struct Reader {
    pub(super) fhir: Fhir,
    pub(super) base_url: String,
    pub(super) skip_unsupported: bool,
}

impl Reader {
    /// A file's units, parsed and checked as their transactions will check them.
    pub(super) fn file(&self, f: &Source) -> Parsed<Unit> {
        self.prepared(self.parse(&f.path, f.bytes))
    }

    /// Units as read, parsed and checked as their transactions will check them.
    pub(super) fn prepared(&self, parsed: Parsed<RawUnit>) -> Parsed<Unit> {
        let mut out = Parsed {
            units: Vec::with_capacity(parsed.units.len()),
            first: parsed.first,
            last: parsed.last,
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
    pub(super) fn again(
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

    /// A JSON file's units (an NDJSON file is read in parts: [`super::lines`]).
    pub(super) fn parse(&self, path: &Path, bytes: u64) -> Parsed<RawUnit> {
        let mut out = Parsed::empty(bytes);
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => self.parse_file(name, path, &bytes, &mut out),
            Err(e) => out.failed.push((name, e.to_string(), 0)),
        }
        out
    }

    /// Line `n` of NDJSON file `name`: a resource, a unit of its own.
    pub(super) fn parse_line(&self, name: &str, n: usize, line: &str, out: &mut Parsed<RawUnit>) {
        if line.trim().is_empty() {
            return;
        }
        let source = format!("{name}:{n}");
        match serde_json::from_str::<Value>(line) {
            Ok(r) => {
                if let Some(entry) = self.resource_entry(r, &mut out.skipped) {
                    out.units.push(RawUnit {
                        source,
                        entries: vec![entry],
                        origin: Origin::Line(line.trim_end().to_owned()),
                    });
                }
            }
            Err(e) => out.failed.push((source, format!("not JSON: {e}"), 1)),
        }
    }

    /// A JSON file: a transaction or batch Bundle, or one resource.
    fn parse_file(&self, name: String, path: &Path, bytes: &[u8], out: &mut Parsed<RawUnit>) {
        // A transaction or batch Bundle's entries are parsed one by one, and with
        // --skip-unsupported those of types not hosted (most of a Synthea file) only looked at.
        if let Ok(top) = serde_json::from_slice::<BundleTop>(bytes) {
            if let (Some("Bundle"), Some(kind @ ("transaction" | "batch")), Some(raw)) =
                (top.resource_type.as_deref(), top.kind.as_deref(), top.entry)
            {
                let mut read = Vec::with_capacity(raw.len());
                for r in raw {
                    match self.read_entry(r) {
                        Ok(e) => read.push(e),
                        Err(e) => return out.failed.push((name, e.0, 0)),
                    }
                }
                let entries = self.prepare(read, &mut out.skipped);
                self.units_of(&name, path, kind == "batch", entries, &mut out.units);
                return;
            }
        }
        let mut value = match crate::fhir::json::parse_strict(bytes) {
            Ok(v) => v,
            Err(e) => return out.failed.push((name, e.0, 0)),
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
    }

    /// A bundle's prepared entries as units: the bundle, or each entry of a batch (they stand
    /// alone: each may fail alone).
    pub(super) fn units_of(
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
    pub(super) fn read_entry(
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

    pub(super) fn hosts(&self, resource_type: &str) -> bool {
        self.fhir.registry.get(resource_type).is_some()
    }

    /// A lone resource as a transaction entry: PUT under its id, or POST without one.
    pub(super) fn resource_entry(
        &self,
        r: Value,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Option<Value> {
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
    pub(super) fn prepare(
        &self,
        entries: Vec<Read>,
        skipped: &mut BTreeMap<String, u64>,
    ) -> Vec<Value> {
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

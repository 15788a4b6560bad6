//! batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).
//!
//! A transaction is all or nothing, in one database transaction. Its entries are processed in
//! the order the specification gives (DELETE, then POST, then PUT and PATCH, then GET), except
//! that a write which references another entry of the bundle is made after it: ids are assigned
//! before anything is written, every reference to an entry's fullUrl (`urn:uuid:`, `urn:oid:`
//! or a URL) is rewritten to the entry's `Type/id` wherever it occurs in a resource, and the
//! writes are then ordered by those references. GETs are answered after the commit, so they see
//! what the transaction wrote. The first failure rolls everything back and is answered with one
//! OperationOutcome naming the entry.
//!
//! A batch runs each entry on its own, in the order given; a failure is that entry's response.

use super::{Caller, Fhir, SearchRequest, Updated, Version, Written, WrittenRow};
use crate::error::{Error, Result};
use crate::fhir::{references, references_mut, Id, Issue, IssueType};
use crate::mapping::ResourceMapping;
use crate::store::{Conn, Tx};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// A write whose version is yet to be recorded: its entry, its row and whether it created.
type PendingRow = (usize, WrittenRow, bool);

/// How a bundle's response entries are made.
#[derive(Debug, Clone, Copy)]
pub struct BundleOptions {
    /// `Prefer: return=representation`: each written resource in its response entry.
    pub representation: bool,
    /// The most entries a bundle may hold.
    pub max_entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    Delete,
    Post,
    Put,
    Patch,
    Get,
}

impl Method {
    /// The processing phase: PUT and PATCH share one.
    fn phase(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get => 3,
        }
    }
}

/// One entry of a batch or transaction, parsed.
struct Entry {
    index: usize,
    full_url: Option<String>,
    method: Method,
    /// The resource type of the request URL.
    rtype: String,
    /// `[type]/[id]`
    id: Option<Id>,
    /// `[type]/[id]/_history/[vid]` (GET only).
    version: Option<i64>,
    /// `[type]?criteria`: a conditional update, patch or delete, or a search.
    query: Option<String>,
    resource: Option<Value>,
    patch: Option<json_patch::Patch>,
    if_match: Option<i64>,
    if_none_exist: Option<String>,
}

/// A transaction's entries, parsed and checked (see [`Fhir::prepare_transaction`]).
pub(crate) struct Prepared(Vec<Entry>);

impl Prepared {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `Type/id` each update by id writes: a transaction may write a resource once.
    pub(crate) fn targets(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|e| e.method == Method::Put && e.query.is_none())
            .filter_map(|e| e.id.as_ref().map(|id| format!("{}/{id}", e.rtype)))
            .collect()
    }

    /// Several transactions' entries as one transaction's, in order.
    pub(crate) fn join(parts: Vec<Prepared>) -> Prepared {
        let mut entries = Vec::with_capacity(parts.iter().map(Prepared::len).sum());
        for part in parts {
            let offset = entries.len();
            entries.extend(part.0.into_iter().map(|mut e| {
                e.index += offset;
                e
            }));
        }
        Prepared(entries)
    }
}

/// The answers of a transaction's writes (see [`Fhir::transaction_open`]).
pub(crate) struct Answers(Vec<Option<Answer>>);

impl Answers {
    /// For each write: the resource type and whether it was created (else updated, or found
    /// unchanged).
    pub(crate) fn written(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        self.0.iter().flatten().filter_map(|a| {
            a.version
                .as_ref()
                .map(|v| (v.resource_type, a.status.starts_with("201")))
        })
    }
}

/// The response of one entry.
struct Answer {
    status: &'static str,
    version: Option<Version>,
    /// A resource to return (a read or search, or a written one when asked for).
    body: Option<Value>,
    outcome: Option<Value>,
}

impl Answer {
    fn written(w: Written, representation: bool) -> Answer {
        let status = if w.created { "201 Created" } else { "200 OK" };
        Answer::version(status, w.version, representation)
    }

    fn version(status: &'static str, mut v: Version, representation: bool) -> Answer {
        let body = if representation {
            v.resource
                .take()
                .or_else(|| v.raw.take().and_then(|t| serde_json::from_str(&t).ok()))
        } else {
            v.resource = None;
            v.raw = None;
            None
        };
        Answer {
            status,
            version: Some(v),
            body,
            outcome: None,
        }
    }

    fn failed(e: &Error) -> Answer {
        Answer {
            status: status_line(e),
            version: None,
            body: None,
            outcome: Some(e.outcome("")),
        }
    }

    fn to_json(&self, base_url: &str) -> Value {
        let mut response = Map::new();
        response.insert("status".into(), json!(self.status));
        if let Some(v) = &self.version {
            response.insert(
                "location".into(),
                json!(format!(
                    "{}/{}/_history/{}",
                    v.resource_type, v.id, v.version_id
                )),
            );
            response.insert("etag".into(), json!(format!("W/\"{}\"", v.version_id)));
            response.insert(
                "lastModified".into(),
                json!(crate::fhir::instant(&v.last_updated)),
            );
        }
        if let Some(o) = &self.outcome {
            response.insert("outcome".into(), o.clone());
        }
        let mut entry = Map::new();
        if let Some(v) = &self.version {
            entry.insert(
                "fullUrl".into(),
                json!(format!("{base_url}/{}/{}", v.resource_type, v.id)),
            );
        }
        if let Some(b) = &self.body {
            entry.insert("resource".into(), b.clone());
        }
        entry.insert("response".into(), Value::Object(response));
        Value::Object(entry)
    }
}

fn status_line(e: &Error) -> &'static str {
    match e.status().as_u16() {
        400 => "400 Bad Request",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        409 => "409 Conflict",
        410 => "410 Gone",
        412 => "412 Precondition Failed",
        413 => "413 Payload Too Large",
        415 => "415 Unsupported Media Type",
        422 => "422 Unprocessable Entity",
        _ => "500 Internal Server Error",
    }
}

/// Says which entry an error belongs to: its messages name the entry (index and fullUrl), and
/// element paths become paths inside the Bundle.
fn at_entry(e: Error, index: usize, full_url: Option<&str>) -> Error {
    let who = match full_url {
        Some(u) => format!("Bundle.entry[{index}] (fullUrl {})", u.escape_default()),
        None => format!("Bundle.entry[{index}]"),
    };
    let name = |m: String| format!("{who}: {m}");
    let issues = |issues: Vec<Issue>| {
        issues
            .into_iter()
            .map(|mut i| {
                i.diagnostics = name(std::mem::take(&mut i.diagnostics));
                i.expression = Some(match i.expression.take() {
                    Some(path) if path.starts_with("Bundle.") => path,
                    Some(path) => match path.split_once('.') {
                        Some((_, rest)) => format!("Bundle.entry[{index}].resource.{rest}"),
                        None => format!("Bundle.entry[{index}].resource"),
                    },
                    None => format!("Bundle.entry[{index}]"),
                });
                i
            })
            .collect()
    };
    match e {
        Error::BadRequest(i) => Error::BadRequest(issues(i)),
        Error::Unprocessable(i) => Error::Unprocessable(issues(i)),
        Error::NotFound(m) => Error::NotFound(name(m)),
        Error::Conflict(m) => Error::Conflict(name(m)),
        Error::Gone(m) => Error::Gone(name(m)),
        Error::PreconditionFailed(m) => Error::PreconditionFailed(name(m)),
        Error::UnsupportedMediaType(m) => Error::UnsupportedMediaType(name(m)),
        Error::NotAcceptable(m) => Error::NotAcceptable(name(m)),
        other => other,
    }
}

fn bad_entry(index: usize, field: &str, msg: impl Into<String>) -> Error {
    Error::BadRequest(vec![
        Issue::error(IssueType::Invalid, msg).at(format!("Bundle.entry[{index}].{field}"))
    ])
}

/// An entry's version condition: `W/"3"`, `"3"` or `3`.
fn version_tag(index: usize, tag: &Value) -> Result<i64> {
    let s = tag.as_str().unwrap_or_default().trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').parse().map_err(|_| {
        bad_entry(
            index,
            "request.ifMatch",
            "ifMatch must be an ETag such as W/\"3\"",
        )
    })
}

/// Parses one entry: its request (method and URL) and what it carries.
fn parse_entry(index: usize, e: &Value, base_url: &str) -> Result<Entry> {
    parse_entry_with(index, e, e.get("resource").cloned(), base_url)
}

/// [`parse_entry`] of an entry whose resource has been taken out of it (`resource`).
fn parse_entry_with(
    index: usize,
    e: &Value,
    resource: Option<Value>,
    base_url: &str,
) -> Result<Entry> {
    let full_url = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
    let request = e
        .get("request")
        .filter(|r| r.is_object())
        .ok_or_else(|| bad_entry(index, "request", "every entry needs a request"))?;
    let method = match request.get("method").and_then(Value::as_str) {
        Some("GET") | Some("HEAD") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("PATCH") => Method::Patch,
        Some("DELETE") => Method::Delete,
        _ => {
            return Err(bad_entry(
                index,
                "request.method",
                "request.method must be GET, POST, PUT, PATCH or DELETE",
            ))
        }
    };
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad_entry(index, "request.url", "request.url is required"))?;
    let own = format!("{base_url}/");
    let local = url
        .strip_prefix(&own)
        .unwrap_or(url)
        .trim_start_matches('/');
    let (path, query) = match local.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (local, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let bad_url = || {
        bad_entry(
            index,
            "request.url",
            format!(
                "request.url '{}' is not [type], [type]/[id], [type]/[id]/_history/[vid] or [type]?[criteria]",
                url.escape_default()
            ),
        )
    };
    let valid_type = |t: &str| {
        t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && t.chars().all(|c| c.is_ascii_alphanumeric())
    };
    let parse_id = |s: &str| Id::parse(s).ok_or_else(bad_url);
    let (rtype, id, version) = match segments.as_slice() {
        [t] if valid_type(t) => (t.to_string(), None, None),
        [t, id] if valid_type(t) => (t.to_string(), Some(parse_id(id)?), None),
        [t, id, "_history", v] if valid_type(t) && method == Method::Get => (
            t.to_string(),
            Some(parse_id(id)?),
            Some(
                v.parse::<i64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(bad_url)?,
            ),
        ),
        _ => return Err(bad_url()),
    };
    let query = query.filter(|q| !q.is_empty());
    let mut entry = Entry {
        index,
        full_url,
        method,
        rtype,
        id,
        version,
        query,
        resource: None,
        patch: None,
        if_match: request
            .get("ifMatch")
            .map(|t| version_tag(index, t))
            .transpose()?,
        if_none_exist: request
            .get("ifNoneExist")
            .and_then(Value::as_str)
            .map(|c| c.split_once('?').map_or(c, |(_, q)| q).trim().to_owned())
            .filter(|c| !c.is_empty()),
    };
    match method {
        Method::Post => {
            if entry.id.is_some() || entry.query.is_some() {
                return Err(bad_entry(
                    index,
                    "request.url",
                    "a POST entry's url is the resource type alone; put criteria in ifNoneExist",
                ));
            }
            entry.resource = Some(resource_of(index, resource, &entry.rtype)?);
        }
        Method::Put => {
            if entry.id.is_none() == entry.query.is_none() {
                return Err(bad_entry(
                    index,
                    "request.url",
                    "a PUT entry's url is [type]/[id] or [type]?[criteria]",
                ));
            }
            let r = resource_of(index, resource, &entry.rtype)?;
            if let Some(id) = &entry.id {
                match r.get("id").and_then(Value::as_str) {
                    Some(b) if b == id.as_str() => {}
                    Some(_) => {
                        return Err(bad_entry(
                            index,
                            "resource.id",
                            "the resource id does not match the id in request.url",
                        ))
                    }
                    None => {
                        return Err(bad_entry(
                            index,
                            "resource.id",
                            "an update must carry the resource id",
                        ))
                    }
                }
            }
            entry.resource = Some(r);
        }
        Method::Patch => {
            if entry.id.is_none() == entry.query.is_none() {
                return Err(bad_entry(
                    index,
                    "request.url",
                    "a PATCH entry's url is [type]/[id] or [type]?[criteria]",
                ));
            }
            entry.patch = Some(patch_of(index, resource)?);
        }
        Method::Delete => {
            if entry.id.is_none() == entry.query.is_none() {
                return Err(bad_entry(
                    index,
                    "request.url",
                    "a DELETE entry's url is [type]/[id] or [type]?[criteria]",
                ));
            }
        }
        Method::Get => {}
    }
    Ok(entry)
}

fn resource_of(index: usize, resource: Option<Value>, rtype: &str) -> Result<Value> {
    let r = resource
        .filter(Value::is_object)
        .ok_or_else(|| bad_entry(index, "resource", "this entry needs a resource"))?;
    match r.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rtype => Ok(r),
        _ => Err(bad_entry(
            index,
            "resource.resourceType",
            format!("the resource is not a {rtype}, as request.url says"),
        )),
    }
}

/// A PATCH entry's JSON Patch: a Binary resource holding it (contentType
/// application/json-patch+json, base64 data), as the specification carries patches in bundles.
fn patch_of(index: usize, resource: Option<Value>) -> Result<json_patch::Patch> {
    let r = resource.ok_or_else(|| {
        bad_entry(
            index,
            "resource",
            "a PATCH entry needs a Binary resource holding a JSON Patch",
        )
    })?;
    let is_patch = r.get("resourceType").and_then(Value::as_str) == Some("Binary")
        && r.get("contentType")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("application/json-patch+json"));
    if !is_patch {
        return Err(bad_entry(
            index,
            "resource",
            "a PATCH entry's resource is a Binary with contentType application/json-patch+json",
        ));
    }
    let data = r
        .get("data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .ok_or_else(|| bad_entry(index, "resource.data", "Binary.data is not base64"))?;
    let doc = crate::fhir::json::parse_strict(&data).map_err(|e| {
        bad_entry(
            index,
            "resource.data",
            format!("the patch is not JSON: {}", e.0),
        )
    })?;
    super::parse_patch(&doc).map_err(|e| at_entry(e, index, None))
}

/// Every entry of a batch or transaction Bundle, parsed; the bundle itself checked.
fn entries_of<'a>(bundle: &'a Value, kind: &str, max: usize) -> Result<&'a [Value]> {
    let entries = match bundle.get("entry") {
        None => return Ok(&[]),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(Error::BadRequest(vec![Issue::error(
                IssueType::Structure,
                "Bundle.entry must be an array",
            )
            .at("Bundle.entry")]))
        }
    };
    if entries.len() > max {
        return Err(Error::BadRequest(vec![Issue::error(
            IssueType::TooCostly,
            format!(
                "this {kind} has {} entries; the server takes at most {max} in one bundle",
                entries.len()
            ),
        )
        .at("Bundle.entry")]));
    }
    Ok(entries)
}

impl Fhir {
    /// POST [base] with a Bundle: a transaction or a batch, answered with its response Bundle.
    pub async fn process_bundle(
        &self,
        caller: &Caller,
        bundle: Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::BadRequest(vec![Issue::error(
                IssueType::Invalid,
                "POST to the base URL takes a Bundle of type batch or transaction",
            )
            .at("resourceType")]));
        }
        match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => self.transaction(caller, &bundle, opts).await,
            Some("batch") => self.batch(caller, &bundle, opts).await,
            _ => Err(Error::BadRequest(vec![Issue::error(
                IssueType::Invalid,
                "the Bundle type must be batch or transaction",
            )
            .at("Bundle.type")])),
        }
    }

    /// A transaction: every entry, or none. One the database aborts in favour of a concurrent
    /// one (a deadlock) is run again, a few times, after a short pause.
    pub async fn transaction(
        &self,
        caller: &Caller,
        bundle: &Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        let mut attempt = 0u64;
        loop {
            match self.transaction_once(caller, bundle, opts).await {
                Err(Error::Aborted) if attempt < 4 => {
                    attempt += 1;
                    let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 20;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * attempt + jitter))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// A transaction's entries (a Bundle's `entry`, given away: their resources are moved, not
    /// copied) parsed and checked: all that a transaction does before it touches the database,
    /// failing as it would. The import does this on its reader thread, ahead of the database.
    pub(crate) fn prepare_transaction(&self, raw: Vec<Value>, base_url: &str) -> Result<Prepared> {
        let mut entries = Vec::with_capacity(raw.len());
        for (i, mut e) in raw.into_iter().enumerate() {
            let resource = e.get_mut("resource").map(Value::take);
            let full_url = e.get("fullUrl").and_then(Value::as_str);
            entries.push(
                parse_entry_with(i, &e, resource, base_url)
                    .map_err(|err| at_entry(err, i, full_url))?,
            );
        }
        self.checked(entries)
    }

    /// Runs a prepared transaction's writes, once (an [`Error::Aborted`] is answered, not
    /// retried), and leaves it open for the caller to commit. Its GET entries are not answered:
    /// they come after a commit, and the import, which calls this, only writes.
    pub(crate) async fn transaction_open(
        &self,
        caller: &Caller,
        prepared: Prepared,
        opts: BundleOptions,
    ) -> Result<(Tx, Answers)> {
        let mut entries = prepared.0;
        let mut tx = self.db.begin().await?;
        let answers = self
            .transaction_in(&mut tx, caller, &mut entries, opts)
            .await?;
        Ok((tx, Answers(answers)))
    }

    /// Entries of hosted types whose resources pass [`Fhir::check`]; else the transaction's
    /// error.
    fn checked(&self, entries: Vec<Entry>) -> Result<Prepared> {
        // Types this server does not host: the whole transaction is refused, naming them all.
        let unhosted: BTreeSet<&str> = entries
            .iter()
            .filter(|e| self.registry.get(&e.rtype).is_none())
            .map(|e| e.rtype.as_str())
            .collect();
        if !unhosted.is_empty() {
            let names: Vec<&str> = unhosted.into_iter().collect();
            return Err(Error::Unprocessable(vec![Issue::error(
                IssueType::NotSupported,
                format!(
                    "this server does not host {}; the transaction was not processed",
                    names.join(", ")
                ),
            )
            .at("Bundle.entry")]));
        }
        // Every resource is checked before anything is written.
        for e in &entries {
            if let (Some(r), Some(m)) = (&e.resource, self.registry.get(&e.rtype)) {
                self.check(m.as_ref(), r)
                    .map_err(|err| at_entry(err, e.index, e.full_url.as_deref()))?;
            }
        }
        Ok(Prepared(entries))
    }

    async fn transaction_once(
        &self,
        caller: &Caller,
        bundle: &Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        let raw = entries_of(bundle, "transaction", opts.max_entries)?;
        let mut entries = Vec::with_capacity(raw.len());
        for (i, e) in raw.iter().enumerate() {
            let full_url = e.get("fullUrl").and_then(Value::as_str);
            entries.push(
                parse_entry(i, e, &caller.base_url).map_err(|err| at_entry(err, i, full_url))?,
            );
        }
        self.transaction_of(caller, entries, opts).await
    }

    /// A transaction of its parsed entries.
    async fn transaction_of(
        &self,
        caller: &Caller,
        entries: Vec<Entry>,
        opts: BundleOptions,
    ) -> Result<Value> {
        let Prepared(mut entries) = self.checked(entries)?;
        let mut tx = self.db.begin().await?;
        let answers = self
            .transaction_in(&mut tx, caller, &mut entries, opts)
            .await?;
        tx.commit().await?;
        let mut answers: Vec<Option<Answer>> = answers;
        for e in entries.iter().filter(|e| e.method == Method::Get) {
            answers[e.index] = Some(match self.get_entry(caller, e).await {
                Ok(a) => a,
                Err(err) => Answer::failed(&at_entry(err, e.index, e.full_url.as_deref())),
            });
        }
        Ok(response_bundle(
            "transaction-response",
            answers,
            &caller.base_url,
        ))
    }

    /// The writes of a transaction, inside `tx`; an answer for each write entry.
    async fn transaction_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        entries: &mut [Entry],
        opts: BundleOptions,
    ) -> Result<Vec<Option<Answer>>> {
        let mut answers: Vec<Option<Answer>> = (0..entries.len()).map(|_| None).collect();
        let named = |e: &Entry| (e.index, e.full_url.clone());
        let fail = |(i, u): (usize, Option<String>)| move |err| at_entry(err, i, u.as_deref());
        // DELETE first.
        let mut touched: HashSet<(String, String)> = HashSet::new();
        // Rows and criteria are taken in one order (type, then id or criteria), whatever the
        // bundle's order, so that two transactions over the same resources do not wait on each
        // other in a circle.
        let lock_key = |e: &Entry| {
            (
                e.method.phase(),
                e.rtype.clone(),
                e.id.as_ref().map(|i| i.to_string()),
                e.query.clone().or_else(|| e.if_none_exist.clone()),
                e.index,
            )
        };
        let mut in_lock_order: Vec<usize> = (0..entries.len()).collect();
        in_lock_order.sort_by_cached_key(|&i| lock_key(&entries[i]));
        for e in in_lock_order
            .iter()
            .map(|&i| &entries[i])
            .filter(|e| e.method == Method::Delete)
        {
            let m = self.mapping(&e.rtype)?;
            let gone = match (&e.id, &e.query) {
                (Some(id), _) => self
                    .delete_in(tx, m.as_ref(), id, e.if_match)
                    .await
                    .map(|_| Some(id.clone())),
                (None, Some(q)) => {
                    self.conditional_delete_in(tx, caller, &m, q, e.if_match)
                        .await
                }
                (None, None) => Ok(None),
            }
            .map_err(fail(named(e)))?;
            if let Some(id) = gone {
                touched.insert((e.rtype.clone(), id.to_string()));
            }
            answers[e.index] = Some(Answer {
                status: "204 No Content",
                version: None,
                body: None,
                outcome: None,
            });
        }
        // Every write's target id, found or assigned before anything is written.
        let mut targets: Vec<Option<Id>> = vec![None; entries.len()];
        let mut existing: HashSet<usize> = HashSet::new();
        // Conditional creates with the same criteria in one transaction make one resource.
        let mut created_for: HashMap<(String, String), Id> = HashMap::new();
        for e in in_lock_order.iter().map(|&i| &entries[i]) {
            let m = self.mapping(&e.rtype)?;
            let target = match e.method {
                Method::Post => match &e.if_none_exist {
                    Some(c) => {
                        let key = (e.rtype.clone(), c.clone());
                        if let Some(id) = created_for.get(&key) {
                            existing.insert(e.index);
                            id.clone()
                        } else {
                            match self
                                .existing_for_create(tx, caller, &m, c)
                                .await
                                .map_err(fail(named(e)))?
                            {
                                Some(id) => {
                                    existing.insert(e.index);
                                    id
                                }
                                None => {
                                    let id = new_id()?;
                                    created_for.insert(key, id.clone());
                                    id
                                }
                            }
                        }
                    }
                    None => new_id()?,
                },
                Method::Put => match (&e.id, &e.query) {
                    (Some(id), _) => id.clone(),
                    (None, Some(q)) => {
                        let body_id = e
                            .resource
                            .as_ref()
                            .and_then(|r| r.get("id"))
                            .and_then(Value::as_str);
                        self.conditional_target(tx, caller, &m, q, body_id)
                            .await
                            .map_err(fail(named(e)))?
                    }
                    (None, None) => continue,
                },
                Method::Patch => match (&e.id, &e.query) {
                    (Some(id), _) => id.clone(),
                    (None, Some(q)) => self
                        .patch_target(tx, caller, &m, q)
                        .await
                        .map_err(fail(named(e)))?,
                    (None, None) => continue,
                },
                Method::Delete | Method::Get => continue,
            };
            if !existing.contains(&e.index)
                && !touched.insert((e.rtype.clone(), target.to_string()))
            {
                return Err(at_entry(
                    Error::BadRequest(vec![Issue::error(
                        IssueType::Duplicate,
                        format!(
                            "{}/{target} is written by more than one entry of this transaction",
                            e.rtype
                        ),
                    )]),
                    e.index,
                    e.full_url.as_deref(),
                ));
            }
            targets[e.index] = Some(target);
        }
        // fullUrl → Type/id, and every reference to a fullUrl rewritten.
        let mut local: HashMap<String, String> = HashMap::new();
        for e in entries.iter() {
            if let (Some(u), Some(id)) = (&e.full_url, &targets[e.index]) {
                local.insert(u.clone(), format!("{}/{id}", e.rtype));
            }
        }
        // The conditional references met on the way, and the entries that hold one.
        let own = format!("{}/", caller.base_url);
        let mut conditional: BTreeSet<String> = BTreeSet::new();
        let mut with_conditional: HashSet<usize> = HashSet::new();
        for e in entries.iter_mut() {
            if let Some(r) = e.resource.as_mut() {
                let mut unresolved = None;
                let mut holds_conditional = false;
                references_mut(r, &mut |s| {
                    if let Some(to) = local.get(s.as_str()) {
                        *s = to.clone();
                    } else if (s.starts_with("urn:uuid:") || s.starts_with("urn:oid:"))
                        && unresolved.is_none()
                    {
                        unresolved = Some(s.clone());
                    } else if s.contains('?') {
                        holds_conditional = true;
                        conditional.insert(s.strip_prefix(&own).unwrap_or(s).to_owned());
                    }
                });
                if holds_conditional {
                    with_conditional.insert(e.index);
                }
                if let Some(u) = unresolved {
                    return Err(at_entry(
                        Error::Unprocessable(vec![Issue::error(
                            IssueType::NotFound,
                            format!(
                                "the reference '{}' names no entry of this transaction",
                                u.escape_default()
                            ),
                        )]),
                        e.index,
                        e.full_url.as_deref(),
                    ));
                }
                if let Some(id) = &targets[e.index] {
                    if e.method == Method::Put {
                        r["id"] = Value::String(id.to_string());
                    }
                }
            }
            if let Some(q) = e
                .query
                .as_mut()
                .filter(|q| q.contains("urn%3A") || q.contains("urn:"))
            {
                *q = rewrite_criteria(q, &local);
            }
        }
        // The heads of the update targets, read ahead: one query per type, not one per entry.
        let mut updated: HashMap<String, Vec<Id>> = HashMap::new();
        for e in entries.iter().filter(|e| e.method == Method::Put) {
            if let Some(id) = &targets[e.index] {
                updated.entry(e.rtype.clone()).or_default().push(id.clone());
            }
        }
        for (rt, ids) in &updated {
            let m = self.mapping(rt)?;
            self.prefetch_heads(tx, m.as_ref(), ids).await?;
        }
        // New reports' new results go in linked to their report (see report_of).
        // (Entries that create: a POST that found no match, a PUT whose target has no row.)
        let creates = |e: &Entry| match (&e.method, &targets[e.index]) {
            (Method::Post, Some(_)) => !existing.contains(&e.index),
            (Method::Put, Some(id)) => self.known_absent(tx, &e.rtype, id),
            _ => false,
        };
        let new_results: HashSet<String> = entries
            .iter()
            .filter(|e| e.rtype == "Observation" && creates(e))
            .filter_map(|e| targets[e.index].as_ref().map(|id| id.to_string()))
            .collect();
        if !new_results.is_empty() {
            let reports: Vec<usize> = entries
                .iter()
                .filter(|e| e.rtype == "DiagnosticReport" && creates(e))
                .map(|e| e.index)
                .collect();
            for e in reports.into_iter().map(|i| &entries[i]) {
                let (Some(resource), Some(id)) = (&e.resource, &targets[e.index]) else {
                    continue;
                };
                let results: Vec<String> = crate::mapping::diagnostic_report::result_ids(resource)
                    .into_iter()
                    .filter(|r| new_results.contains(r))
                    .collect();
                if results.is_empty() {
                    continue;
                }
                // A POST's row id is its new id; a PUT's is chosen now.
                let report = match e.method {
                    Method::Post => match Uuid::parse_str(id.as_str()) {
                        Ok(row) => row,
                        Err(_) => continue,
                    },
                    _ => Fhir::new_row_for(tx, &e.rtype, id),
                };
                crate::mapping::diagnostic_report::report_of(tx, report, &results).await?;
            }
        }
        // The writes, each after the entries it references; their versions are recorded after
        // the last, one read per type.
        let order = write_order(entries, &targets);
        // Conditional references that no write here can answer differently, resolved now.
        let mut cache = self
            .resolve_ahead(tx, caller, &conditional, entries, &targets, &existing)
            .await?;
        let mut pending: Vec<PendingRow> = Vec::new();
        for i in order {
            let e = &mut entries[i];
            let m = self.mapping(&e.rtype)?;
            let Some(id) = targets[i].clone() else {
                continue;
            };
            let answer = async {
                match e.method {
                    Method::Post if existing.contains(&i) => {
                        let v = self.read_in(&mut Conn::Tx(tx), m.as_ref(), &id).await?;
                        Ok(Some(Answer::version("200 OK", v, opts.representation)))
                    }
                    Method::Post => {
                        let mut body = e.resource.take().unwrap_or_default();
                        if with_conditional.contains(&i) {
                            self.resolve_conditional_references(tx, caller, &mut body, &mut cache)
                                .await?;
                        }
                        let row_id = Uuid::parse_str(id.as_str())
                            .map_err(|_| anyhow::anyhow!("assigned id is not a uuid"))?;
                        self.create_rows(tx, caller, m.as_ref(), row_id, &body)
                            .await?;
                        let row = WrittenRow::new(tx, row_id, id.as_str(), "POST", Some(body));
                        pending.push((i, row, true));
                        Ok(None)
                    }
                    Method::Put => {
                        let mut body = e.resource.take().unwrap_or_default();
                        if with_conditional.contains(&i) {
                            self.resolve_conditional_references(tx, caller, &mut body, &mut cache)
                                .await?;
                        }
                        match self
                            .update_rows(tx, caller, m.as_ref(), &id, &body, e.if_match)
                            .await?
                        {
                            Updated::Unchanged(v) => {
                                Ok(Some(Answer::version("200 OK", v, opts.representation)))
                            }
                            Updated::Rows {
                                row_id,
                                created,
                                inserted,
                            } => {
                                let row = WrittenRow::new(
                                    tx,
                                    row_id,
                                    id.as_str(),
                                    "PUT",
                                    inserted.then_some(body),
                                );
                                pending.push((i, row, created));
                                Ok(None)
                            }
                        }
                    }
                    Method::Patch => {
                        let ops = e.patch.take().unwrap_or_default();
                        let w = self.patch_in(tx, caller, &m, &id, &ops, e.if_match).await?;
                        Ok(Some(Answer::written(w, opts.representation)))
                    }
                    Method::Delete | Method::Get => {
                        Err(Error::Internal(anyhow::anyhow!("not a write entry")))
                    }
                }
            }
            .await
            .map_err(|err: Error| at_entry(err, e.index, e.full_url.as_deref()))?;
            if let Some(a) = answer {
                answers[i] = Some(a);
            }
        }
        // The versions of what was written, type by type: the rows of each type, and the
        // entries they answer (with whether each created).
        let mut types: Vec<(Arc<dyn ResourceMapping>, Vec<WrittenRow>)> = Vec::new();
        let mut answered: Vec<Vec<(usize, bool)>> = Vec::new();
        for (i, row, created) in pending {
            let m = self.mapping(&entries[i].rtype)?;
            let at = match types
                .iter()
                .position(|(t, _)| t.resource_type() == m.resource_type())
            {
                Some(at) => at,
                None => {
                    types.push((m, Vec::new()));
                    answered.push(Vec::new());
                    types.len() - 1
                }
            };
            types[at].1.push(row);
            answered[at].push((i, created));
        }
        // Every type read back first, then every version written: the reads wait for the
        // writes before them once.
        let loaded = self.read_back_all(tx, &mut types).await?;
        for (((m, rows), entries), loaded) in types.iter().zip(answered).zip(loaded) {
            let versions = self.queue_versions(tx, m.as_ref(), rows, loaded).await?;
            for ((i, created), version) in entries.into_iter().zip(versions) {
                let w = Written { version, created };
                answers[i] = Some(Answer::written(w, opts.representation));
            }
        }
        Ok(answers)
    }

    /// The conditional references `wanted` (met in the transaction's resources, without the
    /// server's base) whose answer none of its writes can change, resolved before the writes (a read among them waits for every write sent
    /// before it), as (reference, literal reference) for [`Fhir::resolve_conditional_references`];
    /// the others are resolved when their entry is written, after the entries it follows.
    ///
    /// An answer can change when the transaction writes a resource of the referenced type that
    /// may match the criteria (told from `identifier` criteria by the resources' identifiers;
    /// for any other criteria, any write of that type may), writes the resource found, or
    /// patches one of that type; chained and `_has` criteria may read other types, and wait.
    /// Only criteria that find exactly one resource are kept: the others fail where their entry
    /// is written, naming it. Deletes were made before, and count. What is found is known to
    /// exist, and its row, for the rest of the transaction.
    async fn resolve_ahead(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        wanted: &BTreeSet<String>,
        entries: &[Entry],
        targets: &[Option<Id>],
        existing: &HashSet<usize>,
    ) -> Result<HashMap<String, String>> {
        let mut resolved = HashMap::new();
        for local in wanted {
            let Some((ty, criteria)) = local.split_once('?') else {
                continue;
            };
            let Some(m) = self.registry.get(ty).cloned() else {
                continue;
            };
            let params: Vec<(String, String)> = form_urlencoded::parse(criteria.as_bytes())
                .into_owned()
                .collect();
            if params
                .iter()
                .any(|(name, _)| name.contains('.') || name.starts_with("_has"))
            {
                continue;
            }
            // The writes of that type.
            let writes: Vec<&Entry> = entries
                .iter()
                .filter(|e| {
                    e.rtype == ty
                        && matches!(e.method, Method::Post | Method::Put | Method::Patch)
                        && targets[e.index].is_some()
                        && !existing.contains(&e.index)
                })
                .collect();
            if writes.iter().any(|e| e.method == Method::Patch) {
                continue;
            }
            if !writes.is_empty() {
                let Some(values) = identifier_values(&params) else {
                    continue;
                };
                if writes.iter().any(|e| {
                    e.resource
                        .as_ref()
                        .is_none_or(|r| may_carry_identifier(r, &values))
                }) {
                    continue;
                }
            }
            let hits = self
                .matches_in(&mut Conn::Tx(tx), caller, &m, criteria, 2)
                .await?;
            let [(row, id)] = hits.as_slice() else {
                continue;
            };
            if writes
                .iter()
                .any(|e| targets[e.index].as_ref().is_some_and(|t| t.as_str() == id))
            {
                continue;
            }
            // Found, so there (see check_references), and its row known.
            super::WriteMemo::found(tx, ty, id);
            crate::mapping::memo::remember_row(tx, m.table(), id, *row);
            resolved.insert(local.clone(), format!("{ty}/{id}"));
        }
        Ok(resolved)
    }

    /// A batch: each entry on its own transaction, in the order given.
    pub async fn batch(
        &self,
        caller: &Caller,
        bundle: &Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        let raw = entries_of(bundle, "batch", opts.max_entries)?;
        let mut answers = Vec::with_capacity(raw.len());
        for (i, e) in raw.iter().enumerate() {
            let full_url = e.get("fullUrl").and_then(Value::as_str);
            let answer = match parse_entry(i, e, &caller.base_url) {
                Ok(entry) => self.batch_entry(caller, entry, opts).await,
                Err(err) => Err(err),
            }
            .map_err(|err| at_entry(err, i, full_url));
            answers.push(Some(answer.unwrap_or_else(|err| Answer::failed(&err))));
        }
        Ok(response_bundle("batch-response", answers, &caller.base_url))
    }

    async fn batch_entry(&self, caller: &Caller, e: Entry, opts: BundleOptions) -> Result<Answer> {
        let rep = opts.representation;
        let rt = self.resource_type(&e.rtype)?;
        match e.method {
            Method::Get => self.get_entry(caller, &e).await,
            Method::Post => {
                let body = e.resource.unwrap_or_default();
                let w = match &e.if_none_exist {
                    Some(c) => self.conditional_create(caller, rt, body, c).await?,
                    None => self.create(caller, rt, body).await?,
                };
                Ok(Answer::written(w, rep))
            }
            Method::Put => {
                let body = e.resource.unwrap_or_default();
                let w = match (&e.id, &e.query) {
                    (Some(id), _) => self.update(caller, rt, id, body, e.if_match).await?,
                    (None, Some(q)) => {
                        self.conditional_update(caller, rt, q, body, e.if_match)
                            .await?
                    }
                    (None, None) => return Err(anyhow::anyhow!("PUT without target").into()),
                };
                Ok(Answer::written(w, rep))
            }
            Method::Patch => {
                let ops = e.patch.unwrap_or_default();
                let w = match (&e.id, &e.query) {
                    (Some(id), _) => self.patch(caller, rt, id, &ops, e.if_match).await?,
                    (None, Some(q)) => {
                        self.conditional_patch(caller, rt, q, &ops, e.if_match)
                            .await?
                    }
                    (None, None) => return Err(anyhow::anyhow!("PATCH without target").into()),
                };
                Ok(Answer::written(w, rep))
            }
            Method::Delete => {
                match (&e.id, &e.query) {
                    (Some(id), _) => self.delete(caller, rt, id, e.if_match).await?,
                    (None, Some(q)) => {
                        self.conditional_delete(caller, rt, q, e.if_match).await?;
                    }
                    (None, None) => return Err(anyhow::anyhow!("DELETE without target").into()),
                }
                Ok(Answer {
                    status: "204 No Content",
                    version: None,
                    body: None,
                    outcome: None,
                })
            }
        }
    }

    /// A GET entry: a read, a vread or a search.
    async fn get_entry(&self, caller: &Caller, e: &Entry) -> Result<Answer> {
        let rt = self.resource_type(&e.rtype)?;
        match (&e.id, e.version) {
            (Some(id), Some(v)) => {
                let ver = self.vread(caller, rt, id, v).await?;
                Ok(Answer::version("200 OK", ver, true))
            }
            (Some(id), None) => {
                let ver = self.read(caller, rt, id).await?;
                Ok(Answer::version("200 OK", ver, true))
            }
            (None, _) => {
                let params = e
                    .query
                    .as_deref()
                    .map(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .into_owned()
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let text = self
                    .search(
                        caller,
                        rt,
                        &SearchRequest {
                            params,
                            strict: false,
                        },
                    )
                    .await?;
                let body = serde_json::from_str(&text)
                    .map_err(|err| anyhow::anyhow!("search bundle is not JSON: {err}"))?;
                Ok(Answer {
                    status: "200 OK",
                    version: None,
                    body: Some(body),
                    outcome: None,
                })
            }
        }
    }
}

fn new_id() -> Result<Id> {
    Ok(Id::parse(&Uuid::new_v4().to_string())
        .ok_or_else(|| anyhow::anyhow!("uuid is not an id"))?)
}

/// Criteria that name a bundle entry by its fullUrl (`subject=urn:uuid:...`) name its id.
fn rewrite_criteria(criteria: &str, local: &HashMap<String, String>) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(criteria.as_bytes())
        .into_owned()
        .map(|(k, v)| {
            let v = local.get(&v).cloned().unwrap_or(v);
            (k, v)
        })
        .collect();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The order of a transaction's writes: by phase (POST, then PUT and PATCH) and bundle order,
/// except that an entry comes after every entry whose `Type/id` it references. A cycle of
/// references cannot be ordered: its first entry written names one not written yet, and the
/// transaction fails naming it.
fn write_order(entries: &[Entry], targets: &[Option<Id>]) -> Vec<usize> {
    let writes: Vec<usize> = entries
        .iter()
        .filter(|e| matches!(e.method, Method::Post | Method::Put | Method::Patch))
        .filter(|e| targets[e.index].is_some())
        .map(|e| e.index)
        .collect();
    let by_target: HashMap<String, usize> = writes
        .iter()
        .filter_map(|&i| {
            targets[i]
                .as_ref()
                .map(|id| (format!("{}/{id}", entries[i].rtype), i))
        })
        .collect();
    // POSTs in bundle order; updates by target, the order rows are locked in: each write's
    // place in that order.
    let mut sorted: Vec<usize> = writes.clone();
    sorted.sort_by_cached_key(|&i| {
        let e = &entries[i];
        let target = match e.method {
            Method::Put | Method::Patch => targets[i]
                .as_ref()
                .map(|id| format!("{}/{id}", e.rtype))
                .unwrap_or_default(),
            _ => String::new(),
        };
        (e.method.phase(), target, i)
    });
    let rank: HashMap<usize, usize> = sorted.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let mut deps: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &writes {
        let mut found = Vec::new();
        if let Some(r) = &entries[i].resource {
            references(r, &mut |s| {
                let target = s.split("/_history/").next().unwrap_or(s);
                if let Some(&j) = by_target.get(target) {
                    if j != i {
                        found.push(j);
                    }
                }
            });
        }
        deps.insert(i, found);
    }
    // Depth-first: before an entry, the entries it needs (in their own order).
    let mut done: HashSet<usize> = HashSet::new();
    let mut visiting: HashSet<usize> = HashSet::new();
    let mut out = Vec::with_capacity(writes.len());
    fn visit(
        i: usize,
        deps: &HashMap<usize, Vec<usize>>,
        rank: &HashMap<usize, usize>,
        done: &mut HashSet<usize>,
        visiting: &mut HashSet<usize>,
        out: &mut Vec<usize>,
    ) {
        if done.contains(&i) || !visiting.insert(i) {
            return;
        }
        let mut needs = deps.get(&i).cloned().unwrap_or_default();
        needs.sort_by_key(|j| rank.get(j));
        for j in needs {
            visit(j, deps, rank, done, visiting, out);
        }
        visiting.remove(&i);
        done.insert(i);
        out.push(i);
    }
    for i in sorted {
        visit(i, &deps, &rank, &mut done, &mut visiting, &mut out);
    }
    out
}

fn response_bundle(kind: &str, answers: Vec<Option<Answer>>, base_url: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "type": kind,
        "entry": answers
            .iter()
            .map(|a| a.as_ref().map(|a| a.to_json(base_url)).unwrap_or_else(|| json!({"response": {"status": "200 OK"}})))
            .collect::<Vec<_>>(),
    })
}

/// The identifier values criteria made only of `identifier` parameters (no modifier) ask for,
/// lowercased (`system|value` and `value` both give the value); `None` for any other criteria,
/// or a system without a value.
fn identifier_values(params: &[(String, String)]) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for (name, value) in params {
        if name != "identifier" {
            return None;
        }
        for one in value.split(',') {
            let v = one.rsplit_once('|').map_or(one, |(_, v)| v);
            if v.is_empty() {
                return None;
            }
            values.push(v.to_lowercase());
        }
    }
    (!values.is_empty()).then_some(values)
}

/// Whether `resource` carries an identifier whose value is one of `values` (any system, any
/// case: a resource that may match the criteria).
fn may_carry_identifier(resource: &Value, values: &[String]) -> bool {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter().any(|i| {
                i.get("value")
                    .and_then(Value::as_str)
                    .is_some_and(|v| values.contains(&v.to_lowercase()))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize, method: Method, rtype: &str, resource: Option<Value>) -> Entry {
        Entry {
            index,
            full_url: None,
            method,
            rtype: rtype.into(),
            id: None,
            version: None,
            query: None,
            resource,
            patch: None,
            if_match: None,
            if_none_exist: None,
        }
    }

    #[test]
    fn writes_follow_phases_and_references() {
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p"}});
        let entries = vec![
            entry(
                0,
                Method::Put,
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(1, Method::Post, "Observation", Some(obs)),
            entry(
                2,
                Method::Post,
                "Encounter",
                Some(json!({"resourceType": "Encounter"})),
            ),
            entry(3, Method::Get, "Patient", None),
        ];
        let targets = vec![Id::parse("p"), Id::parse("o"), Id::parse("e"), None];
        assert_eq!(write_order(&entries, &targets), vec![0, 1, 2]);
        let plain = vec![
            entry(
                0,
                Method::Put,
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(
                1,
                Method::Post,
                "Encounter",
                Some(json!({"resourceType": "Encounter"})),
            ),
        ];
        assert_eq!(
            write_order(&plain, &[Id::parse("p"), Id::parse("e")]),
            vec![1, 0],
            "POST before PUT when nothing ties them"
        );
    }

    #[test]
    fn a_cycle_is_ordered_as_far_as_it_goes() {
        let a = json!({"resourceType": "Encounter", "partOf": {"reference": "Encounter/b"}});
        let b = json!({"resourceType": "Encounter", "partOf": {"reference": "Encounter/a"}});
        let entries = vec![
            entry(0, Method::Post, "Encounter", Some(a)),
            entry(1, Method::Post, "Encounter", Some(b)),
        ];
        assert_eq!(
            write_order(&entries, &[Id::parse("a"), Id::parse("b")]),
            vec![1, 0]
        );
    }

    #[test]
    fn entry_urls_are_parsed_or_refused() {
        let base = "http://x/fhir";
        let e = parse_entry(
            0,
            &json!({"request": {"method": "GET", "url": "Patient/1/_history/2"}}),
            base,
        )
        .unwrap();
        assert_eq!((e.id.unwrap().as_str(), e.version), ("1", Some(2)));
        let e = parse_entry(
            0,
            &json!({"request": {"method": "DELETE", "url": "http://x/fhir/Patient?identifier=a|b"}}),
            base,
        )
        .unwrap();
        assert_eq!(e.query.as_deref(), Some("identifier=a|b"));
        for bad in [
            "",
            "patient",
            "Patient/../x",
            "Patient/1/2",
            "Patient/1/_history/x",
        ] {
            let r = parse_entry(0, &json!({"request": {"method": "GET", "url": bad}}), base);
            assert!(matches!(r, Err(Error::BadRequest(_))), "{bad}");
        }
        let r = parse_entry(
            0,
            &json!({"request": {"method": "PUT", "url": "Patient"}, "resource": {"resourceType": "Patient"}}),
            base,
        );
        assert!(matches!(r, Err(Error::BadRequest(_))));
    }
}

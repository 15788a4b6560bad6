//! A transaction's or batch's entries: their requests parsed and checked.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Method {
    Delete,
    Post,
    Put,
    Patch,
    Get,
}

impl Method {
    /// The processing phase: PUT and PATCH share one.
    pub(super) fn phase(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get => 3,
        }
    }
}

/// One entry of a batch or transaction, parsed.
pub(super) struct Entry {
    pub(super) index: usize,
    pub(super) full_url: Option<String>,
    pub(super) method: Method,
    /// The resource type of the request URL.
    pub(super) rtype: String,
    /// `[type]/[id]`
    pub(super) id: Option<Id>,
    /// `[type]/[id]/_history/[vid]` (GET only).
    pub(super) version: Option<i64>,
    /// `[type]?criteria`: a conditional update, patch or delete, or a search.
    pub(super) query: Option<String>,
    pub(super) resource: Option<Value>,
    pub(super) patch: Option<json_patch::Patch>,
    pub(super) if_match: Option<i64>,
    pub(super) if_none_exist: Option<String>,
}

/// A transaction's entries, parsed and checked (see [`Fhir::prepare_transaction`]).
pub(crate) struct Prepared(pub(super) Vec<Entry>);

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

pub(super) fn bad_entry(index: usize, field: &str, msg: impl Into<String>) -> Error {
    Error::BadRequest(vec![
        Issue::error(IssueType::Invalid, msg).at(format!("Bundle.entry[{index}].{field}"))
    ])
}

/// An entry's version condition: `W/"3"`, `"3"` or `3`.
pub(super) fn version_tag(index: usize, tag: &Value) -> Result<i64> {
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
pub(super) fn parse_entry(index: usize, e: &Value, base_url: &str) -> Result<Entry> {
    parse_entry_with(index, e, e.get("resource").cloned(), base_url)
}

/// [`parse_entry`] of an entry whose resource has been taken out of it (`resource`).
pub(super) fn parse_entry_with(
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
    let method = method_of(index, request)?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad_entry(index, "request.url", "request.url is required"))?;
    let (rtype, id, version, query) = target_of(index, url, base_url, method)?;
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
    carry(&mut entry, resource)?;
    Ok(entry)
}

fn method_of(index: usize, request: &Value) -> Result<Method> {
    Ok(match request.get("method").and_then(Value::as_str) {
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
    })
}

/// What an entry's request URL names: type, id, version and criteria.
type Target = (String, Option<Id>, Option<i64>, Option<String>);

fn target_of(index: usize, url: &str, base_url: &str, method: Method) -> Result<Target> {
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
    Ok((rtype, id, version, query.filter(|q| !q.is_empty())))
}

/// Checks the URL form of an entry against its method and puts in what the method carries:
/// the resource of a POST or PUT, the JSON Patch of a PATCH.
fn carry(entry: &mut Entry, resource: Option<Value>) -> Result<()> {
    let index = entry.index;
    let by_id_or_criteria = |name: &str| {
        if entry.id.is_none() == entry.query.is_none() {
            return Err(bad_entry(
                index,
                "request.url",
                format!("a {name} entry's url is [type]/[id] or [type]?[criteria]"),
            ));
        }
        Ok(())
    };
    match entry.method {
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
            by_id_or_criteria("PUT")?;
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
            by_id_or_criteria("PATCH")?;
            entry.patch = Some(patch_of(index, resource)?);
        }
        Method::Delete => by_id_or_criteria("DELETE")?,
        Method::Get => {}
    }
    Ok(())
}

pub(super) fn resource_of(index: usize, resource: Option<Value>, rtype: &str) -> Result<Value> {
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
pub(super) fn patch_of(index: usize, resource: Option<Value>) -> Result<json_patch::Patch> {
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
    super::super::parse_patch(&doc).map_err(|e| at_entry(e, index, None))
}

/// Every entry of a batch or transaction Bundle, parsed; the bundle itself checked.
pub(super) fn entries_of<'a>(bundle: &'a Value, kind: &str, max: usize) -> Result<&'a [Value]> {
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

pub(super) fn new_id() -> Result<Id> {
    Ok(Id::parse(&Uuid::new_v4().to_string())
        .ok_or_else(|| anyhow::anyhow!("uuid is not an id"))?)
}

//! create, read, vread, update, delete.

use super::format::{self, negotiate, prefer, respond, Format, Return};
use super::AppState;
use crate::error::{Error, Result};
use crate::fhir::outcome::information;
use crate::fhir::{json, Id, Issue, IssueType, ResourceType};
use crate::interactions::{Caller, Version, Written};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

/// Decoded query pairs.
pub fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub fn parse_id(id: &str) -> Result<Id> {
    Id::parse(id).ok_or_else(|| {
        Error::bad_request(
            IssueType::Invalid,
            "the id in the URL is not a valid FHIR id ([A-Za-z0-9-.]{1,64})",
        )
    })
}

/// What a handler first takes from a request on a type: the format asked for, the type (404
/// when not hosted) and the caller.
pub struct Req {
    pub fmt: Format,
    pub rtype: ResourceType,
    pub caller: Caller,
}

/// The [`Req`] of a request on `rtype` with query `q`.
pub fn request(
    state: &AppState,
    headers: &HeaderMap,
    q: &Option<String>,
    rtype: &str,
) -> Result<Req> {
    let fmt = negotiate(headers, &query_pairs(q))?;
    let rtype = state.fhir.resource_type(rtype)?;
    Ok(Req {
        fmt,
        rtype,
        caller: state.caller(headers),
    })
}

/// Reads and parses a FHIR JSON body: 415 for another type, 413 over the limit, 400 if malformed.
pub async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Value> {
    format::check_content_type(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body) {
        return Err(Error::PayloadTooLarge(state.max_body));
    }
    let bytes = state.body_bytes(body).await?;
    json::parse_strict(&bytes)
        .map_err(|e| Error::BadRequest(vec![Issue::error(IssueType::Structure, e.0)]))
}

fn version_headers(base: &str, v: &Version) -> Vec<(header::HeaderName, HeaderValue)> {
    let mut h = vec![
        (header::ETAG, format::etag(v.version_id)),
        (
            header::LAST_MODIFIED,
            format::last_modified(&v.last_updated),
        ),
    ];
    let loc = format!(
        "{base}/{}/{}/_history/{}",
        v.resource_type, v.id, v.version_id
    );
    if let Ok(l) = HeaderValue::from_str(&loc) {
        h.push((header::CONTENT_LOCATION, l));
    }
    h
}

/// A read or vread answer: the stored JSON text as it is, or the resource serialised.
fn serve_version(v: Version, fmt: Format, h: Vec<(header::HeaderName, HeaderValue)>) -> Response {
    match v.raw {
        Some(text) => format::respond_text(StatusCode::OK, text, fmt, h),
        None => respond(StatusCode::OK, v.resource.as_ref(), fmt, h),
    }
}

fn written(state: &AppState, headers: &HeaderMap, fmt: Format, w: Written) -> Response {
    let base = state.base_url(headers);
    let mut h = version_headers(&base, &w.version);
    let status = if w.created {
        if let Some((_, loc)) = h
            .iter()
            .find(|(k, _)| k == header::CONTENT_LOCATION)
            .cloned()
        {
            h.push((header::LOCATION, loc));
        }
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let ret = match prefer(headers).ret {
        Return::Representation if !state.caller(headers).shows(w.version.resource_type) => {
            Return::Minimal
        }
        ret => ret,
    };
    match ret {
        Return::Minimal => respond(status, None, fmt, h),
        Return::Representation => match w.version.raw {
            Some(text) => format::respond_text(status, text, fmt, h),
            None => respond(status, w.version.resource.as_ref(), fmt, h),
        },
        Return::OperationOutcome => {
            let msg = format!(
                "{} {}/{} (version {})",
                if w.created { "created" } else { "updated" },
                w.version.resource_type,
                w.version.id,
                w.version.version_id
            );
            respond(status, Some(&information(msg)), fmt, h)
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let value = read_body(&state, &headers, body).await?;
    let w = match if_none_exist(&headers)? {
        Some(criteria) => {
            state
                .fhir
                .conditional_create(&caller, rtype, value, &criteria)
                .await?
        }
        None => state.fhir.create(&caller, rtype, value).await?,
    };
    Ok(written(&state, &headers, fmt, w))
}

/// The criteria of a conditional create: the `If-None-Exist` header, a query string with or
/// without its leading `?` or `[type]?` (both are seen in the wild).
fn if_none_exist(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(v) = headers.get("if-none-exist") else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| {
        Error::bad_request(IssueType::Invalid, "If-None-Exist must be a query string")
    })?;
    let criteria = v.split_once('?').map_or(v, |(_, q)| q).trim();
    if criteria.is_empty() {
        return Err(Error::bad_request(
            IssueType::Invalid,
            "If-None-Exist is empty; it takes search criteria such as identifier=system|value",
        ));
    }
    Ok(Some(criteria.to_owned()))
}

/// PUT [type]?criteria: conditional update.
pub async fn conditional_update(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let criteria = criteria(&q)?;
    let if_match = format::if_match(&headers)?;
    let value = read_body(&state, &headers, body).await?;
    let w = state
        .fhir
        .conditional_update(&caller, rtype, &criteria, value, if_match)
        .await?;
    Ok(written(&state, &headers, fmt, w))
}

/// DELETE [type]?criteria: conditional delete of the one match; nothing to delete is no error.
pub async fn conditional_delete(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let criteria = criteria(&q)?;
    let if_match = format::if_match(&headers)?;
    let deleted = state
        .fhir
        .conditional_delete(&caller, rtype, &criteria, if_match)
        .await?;
    Ok(match prefer(&headers).ret {
        Return::OperationOutcome => {
            let msg = match deleted {
                Some(id) => format!("deleted {rtype}/{id}"),
                None => format!("no {rtype} matched the criteria; nothing was deleted"),
            };
            respond(StatusCode::OK, Some(&information(msg)), fmt, vec![])
        }
        _ => respond(StatusCode::NO_CONTENT, None, fmt, vec![]),
    })
}

/// Reads a JSON Patch body: 415 unless its Content-Type is application/json-patch+json.
async fn read_patch(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<json_patch::Patch> {
    let t = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if t.as_deref() != Some("application/json-patch+json") {
        return Err(Error::UnsupportedMediaType(
            "a patch is a JSON Patch document: send Content-Type application/json-patch+json"
                .into(),
        ));
    }
    let bytes = state.body_bytes(body).await?;
    let doc = json::parse_strict(&bytes)
        .map_err(|e| Error::BadRequest(vec![Issue::error(IssueType::Structure, e.0)]))?;
    crate::interactions::parse_patch(&doc)
}

/// PATCH [type]/[id] with a JSON Patch document.
pub async fn patch(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let id = parse_id(&id)?;
    let if_match = format::if_match(&headers)?;
    let ops = read_patch(&state, &headers, body).await?;
    let w = state
        .fhir
        .patch(&caller, rtype, &id, &ops, if_match)
        .await?;
    Ok(written(&state, &headers, fmt, w))
}

/// PATCH [type]?criteria: conditional patch of the one match.
pub async fn conditional_patch(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let criteria = criteria(&q)?;
    let if_match = format::if_match(&headers)?;
    let ops = read_patch(&state, &headers, body).await?;
    let w = state
        .fhir
        .conditional_patch(&caller, rtype, &criteria, &ops, if_match)
        .await?;
    Ok(written(&state, &headers, fmt, w))
}

/// The search criteria of a conditional interaction: the query string without the parameters
/// that only choose the response format.
fn criteria(q: &Option<String>) -> Result<String> {
    let kept: Vec<(String, String)> = query_pairs(q)
        .into_iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .collect();
    if kept.is_empty() {
        return Err(Error::bad_request(
            IssueType::Invalid,
            "this interaction needs an id in the URL or search criteria in the query",
        ));
    }
    Ok(form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish())
}

pub async fn update(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let id = parse_id(&id)?;
    let if_match = format::if_match(&headers)?;
    let value = read_body(&state, &headers, body).await?;
    let w = state
        .fhir
        .update(&caller, rtype, &id, value, if_match)
        .await?;
    Ok(written(&state, &headers, fmt, w))
}

pub async fn read(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let id = parse_id(&id)?;
    let v = state.fhir.read(&caller, rtype, &id).await?;
    super::audit::saw_version(&v);
    let h = version_headers(&caller.base_url, &v);
    if not_modified(&headers, &v) {
        let mut res = axum::response::IntoResponse::into_response(StatusCode::NOT_MODIFIED);
        res.headers_mut().extend(h);
        return Ok(res);
    }
    Ok(serve_version(v, fmt, h))
}

/// Conditional read (RFC 9110 §13.1.2, §13.1.3): whether the client's copy is current, by
/// `If-None-Match` (an entity tag of the current version, or `*`) or, without it, by
/// `If-Modified-Since` (not changed since that date; an unreadable date is ignored).
fn not_modified(headers: &HeaderMap, v: &Version) -> bool {
    let current = format!("\"{}\"", v.version_id);
    if let Some(tags) = headers.get(header::IF_NONE_MATCH) {
        let Ok(tags) = tags.to_str() else {
            return false;
        };
        return tags
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == current);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .is_some_and(|since| v.last_updated.timestamp() <= since.timestamp())
}

pub async fn vread(
    State(state): State<AppState>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let id = parse_id(&id)?;
    let vid: i64 = vid.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
        Error::bad_request(IssueType::Invalid, "a version id is a positive integer")
    })?;
    let v = state.fhir.vread(&caller, rtype, &id, vid).await?;
    super::audit::saw_version(&v);
    let h = version_headers(&caller.base_url, &v);
    Ok(serve_version(v, fmt, h))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let id = parse_id(&id)?;
    let if_match = format::if_match(&headers)?;
    state.fhir.delete(&caller, rtype, &id, if_match).await?;
    Ok(match prefer(&headers).ret {
        Return::OperationOutcome => respond(
            StatusCode::OK,
            Some(&information(format!("deleted {rtype}/{id}"))),
            fmt,
            vec![],
        ),
        _ => respond(StatusCode::NO_CONTENT, None, fmt, vec![]),
    })
}

/// POST /{type}/$validate: the issues a create of the body would meet, nothing written. The body
/// is the resource itself, or a Parameters resource with a `resource` parameter.
pub async fn validate(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Req { fmt, rtype, caller } = request(&state, &headers, &q, &rtype)?;
    let mut value = read_body(&state, &headers, body).await?;
    if value.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        let resource = value
            .get("parameter")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some("resource"))
            })
            .and_then(|p| p.get("resource"))
            .cloned();
        value = resource.ok_or_else(|| {
            Error::bad_request(
                IssueType::Required,
                "the Parameters resource has no 'resource' parameter",
            )
        })?;
    }
    let issues = state.fhir.validate(&caller, rtype, value).await?;
    let outcome = if issues.is_empty() {
        information(format!("the {rtype} is valid for this server"))
    } else {
        crate::fhir::outcome::operation_outcome(&issues)
    };
    Ok(respond(StatusCode::OK, Some(&outcome), fmt, vec![]))
}

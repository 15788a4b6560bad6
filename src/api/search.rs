//! search (GET and POST _search) and history.

use super::crud::{parse_id, query_pairs};
use super::format::{negotiate, prefer, respond, respond_text};
use super::AppState;
use crate::error::{Error, Result};
use crate::interactions::{HistoryQuery, SearchRequest};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

/// Which search a request is.
enum Scope<'a> {
    Type(&'a str),
    Compartment { patient: &'a str, rtype: &'a str },
    System,
}

async fn run(
    state: &AppState,
    scope: Scope<'_>,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response> {
    let fmt = negotiate(headers, &params)?;
    let req = SearchRequest {
        params,
        strict: prefer(headers).strict,
    };
    let caller = state.caller(headers);
    let bundle = match scope {
        Scope::Type(rtype) => {
            let rtype = state.fhir.resource_type(rtype)?;
            state.fhir.search(&caller, rtype, &req).await?
        }
        Scope::Compartment { patient, rtype } => {
            let rtype = state.fhir.resource_type(rtype)?;
            state
                .fhir
                .search_compartment(&caller, patient, rtype, &req)
                .await?
        }
        Scope::System => state.fhir.search_all(&caller, &req).await?,
    };
    super::audit::saw_bundle(&bundle);
    Ok(respond_text(StatusCode::OK, bundle, fmt, vec![]))
}

pub async fn search_get(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    run(&state, Scope::Type(&rtype), &headers, query_pairs(&q)).await
}

/// `GET /fhir/Patient/{id}/{type}`: search in a Patient's compartment.
pub async fn search_compartment(
    State(state): State<AppState>,
    Path((ctype, id, rtype)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    if ctype != "Patient" {
        return Err(Error::NotFound(format!(
            "no compartment '{}' on this server (the Patient compartment is)",
            ctype.escape_default()
        )));
    }
    if rtype == "$everything" {
        let params = query_pairs(&q);
        let fmt = negotiate(&headers, &params)?;
        let id = parse_id(&id)?;
        let bundle = state
            .fhir
            .everything(&state.caller(&headers), &id, &params)
            .await?;
        super::audit::saw_bundle(&bundle);
        return Ok(respond_text(StatusCode::OK, bundle, fmt, vec![]));
    }
    let scope = Scope::Compartment {
        patient: &id,
        rtype: &rtype,
    };
    run(&state, scope, &headers, query_pairs(&q)).await
}

/// `GET /fhir?_type=...`: search across types.
pub async fn search_system(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    run(&state, Scope::System, &headers, query_pairs(&q)).await
}

/// Parameters of a POST _search: an application/x-www-form-urlencoded body, and the URL's.
async fn form_params(
    state: &AppState,
    q: &Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<(String, String)>> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(Error::UnsupportedMediaType(
            "POST _search takes an application/x-www-form-urlencoded body".into(),
        ));
    }
    let bytes = state.body_bytes(body).await?;
    let mut params = query_pairs(q);
    params.extend(form_urlencoded::parse(&bytes).into_owned());
    Ok(params)
}

/// POST _search: parameters in an application/x-www-form-urlencoded body, and in the URL.
pub async fn search_post(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let params = form_params(&state, &q, &headers, body).await?;
    run(&state, Scope::Type(&rtype), &headers, params).await
}

/// `POST /fhir/_search`: search across types with a form body.
pub async fn search_system_post(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let params = form_params(&state, &q, &headers, body).await?;
    run(&state, Scope::System, &headers, params).await
}

pub async fn history_type(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let params = query_pairs(&q);
    let fmt = negotiate(&headers, &params)?;
    let hq = HistoryQuery::parse(&params)?;
    let rtype = state.fhir.resource_type(&rtype)?;
    let bundle = state
        .fhir
        .history(&state.caller(&headers), rtype, None, &hq)
        .await?;
    super::audit::saw_bundle_value(&bundle);
    Ok(respond(StatusCode::OK, Some(&bundle), fmt, vec![]))
}

pub async fn history_instance(
    State(state): State<AppState>,
    Path((rtype, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let params = query_pairs(&q);
    let fmt = negotiate(&headers, &params)?;
    let rtype = state.fhir.resource_type(&rtype)?;
    let id = parse_id(&id)?;
    let hq = HistoryQuery::parse(&params)?;
    let bundle = state
        .fhir
        .history(&state.caller(&headers), rtype, Some(&id), &hq)
        .await?;
    super::audit::saw_bundle_value(&bundle);
    Ok(respond(StatusCode::OK, Some(&bundle), fmt, vec![]))
}

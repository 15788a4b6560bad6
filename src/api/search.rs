//! search (GET and POST _search) and history.

use super::crud::{parse_id, query_pairs};
use super::format::{negotiate, prefer, respond};
use super::AppState;
use crate::error::{Error, Result};
use crate::interactions::{HistoryQuery, SearchRequest};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

async fn run(
    state: &AppState,
    rtype: &str,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response> {
    let fmt = negotiate(headers, &params)?;
    let req = SearchRequest {
        params,
        strict: prefer(headers).strict,
    };
    let bundle = state
        .fhir
        .search(&state.caller(headers), rtype, &req)
        .await?;
    Ok(respond(StatusCode::OK, Some(&bundle), fmt, vec![]))
}

pub async fn search_get(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    run(&state, &rtype, &headers, query_pairs(&q)).await
}

/// POST _search: parameters in an application/x-www-form-urlencoded body, and in the URL.
pub async fn search_post(
    State(state): State<AppState>,
    Path(rtype): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(Error::UnsupportedMediaType(
            "POST _search takes an application/x-www-form-urlencoded body".into(),
        ));
    }
    let bytes = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|_| Error::PayloadTooLarge(state.max_body))?;
    let mut params = query_pairs(&q);
    params.extend(form_urlencoded::parse(&bytes).into_owned());
    run(&state, &rtype, &headers, params).await
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
    let bundle = state
        .fhir
        .history(&state.caller(&headers), &rtype, None, &hq)
        .await?;
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
    state.fhir.mapping(&rtype)?;
    let id = parse_id(&id)?;
    let hq = HistoryQuery::parse(&params)?;
    let bundle = state
        .fhir
        .history(&state.caller(&headers), &rtype, Some(&id), &hq)
        .await?;
    Ok(respond(StatusCode::OK, Some(&bundle), fmt, vec![]))
}

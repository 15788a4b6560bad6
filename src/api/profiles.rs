//! StructureDefinitions of the custom fields' extensions, generated from their definitions.

use super::crud::query_pairs;
use super::format::{negotiate, respond, respond_text};
use super::AppState;
use crate::error::{Error, Result};
use crate::fhir::bundle::{self, Link, SearchEntry};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

pub async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let fmt = negotiate(&headers, &query_pairs(&q))?;
    let all = state.fhir.custom_field_profiles().await?;
    let sd = all
        .into_iter()
        .find(|sd| sd["id"].as_str() == Some(id.as_str()))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "StructureDefinition/{} is not known",
                id.escape_default()
            ))
        })?;
    Ok(respond(StatusCode::OK, Some(&sd), fmt, vec![]))
}

/// Search by `url` (or all of them).
pub async fn search(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let params = query_pairs(&q);
    let fmt = negotiate(&headers, &params)?;
    let url = params
        .iter()
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.clone());
    let base = state.base_url(&headers);
    let entries: Vec<SearchEntry> = state
        .fhir
        .custom_field_profiles()
        .await?
        .into_iter()
        .filter(|sd| url.as_deref().is_none_or(|u| sd["url"].as_str() == Some(u)))
        .map(|sd| SearchEntry {
            full_url: format!(
                "{base}/StructureDefinition/{}",
                sd["id"].as_str().unwrap_or_default()
            ),
            resource: bundle::EntryResource::Json(sd),
            mode: "match",
        })
        .collect();
    let mut self_url = format!("{base}/StructureDefinition");
    if let Some(u) = &url {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.append_pair("url", u);
        self_url = format!("{self_url}?{}", ser.finish());
    }
    let total = entries.len() as i64;
    let b = bundle::searchset(
        Some(total),
        &[Link {
            relation: "self",
            url: self_url,
        }],
        entries,
    );
    Ok(respond_text(StatusCode::OK, b, fmt, vec![]))
}

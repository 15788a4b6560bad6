//! POST [base]: batch and transaction Bundles.

use super::crud::{query_pairs, read_body};
use super::format::{negotiate, prefer, respond, Return};
use super::AppState;
use crate::error::Result;
use crate::interactions::BundleOptions;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// The most entries one batch or transaction may hold.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;

pub async fn process(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let fmt = negotiate(&headers, &query_pairs(&q))?;
    let bundle = read_body(&state, &headers, body).await?;
    let p = prefer(&headers);
    let opts = BundleOptions {
        // Entries carry their resources only when asked to: a bundle's response would otherwise
        // repeat the whole bundle.
        representation: p.given && p.ret == Return::Representation,
        max_entries: MAX_BUNDLE_ENTRIES,
    };
    let out = state
        .fhir
        .process_bundle(&state.caller(&headers), bundle, opts)
        .await?;
    Ok(respond(StatusCode::OK, Some(&out), fmt, vec![]))
}

//! AuditEvent through FHIR, read-only: read and search (GET, or POST `_search`); create,
//! update, patch and delete answer 405. An administrator's or auditor's token (a `user/` or
//! `system/` scope naming AuditEvent) sees every event; a patient's token with
//! `patient/AuditEvent.rs` sees the events about their own record, without the clinic's
//! internal fields; any other token, none.

use super::crud::query_pairs;
use super::format::{negotiate, respond};
use super::AppState;
use crate::audit::fhir::audit_event;
use crate::audit::search::{self, Query};
use crate::auth::access::AuditView;
use crate::auth::scope::Action;
use crate::error::{Error, Result};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

fn view(state: &AppState, headers: &HeaderMap, action: Action) -> Result<AuditView> {
    let caller = state.caller(headers);
    match caller.access.audit_view(action) {
        AuditView::Nothing => Err(Error::Forbidden(
            "the access token does not allow to read AuditEvent: that takes a scope naming it, \
             such as user/AuditEvent.rs, for a role that may read the audit trail"
                .into(),
        )),
        v => Ok(v),
    }
}

/// `GET /fhir/AuditEvent/{id}`
pub async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let fmt = negotiate(&headers, &query_pairs(&q))?;
    let view = view(&state, &headers, Action::Read)?;
    let gone = || Error::NotFound(format!("AuditEvent/{} is not known", id.escape_default()));
    let seq: i64 = id.parse().map_err(|_| gone())?;
    let event = search::read(&state.fhir.db, seq, &view)
        .await?
        .ok_or_else(gone)?;
    let r = audit_event(seq, &event, view == AuditView::All);
    Ok(respond(StatusCode::OK, Some(&r), fmt, vec![]))
}

/// `GET /fhir/AuditEvent`
pub async fn search_get(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    run(&state, &headers, query_pairs(&q)).await
}

/// `POST /fhir/AuditEvent/_search`
pub async fn search_post(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let bytes = state.body_bytes(body).await?;
    let mut params = query_pairs(&q);
    params.extend(form_urlencoded::parse(&bytes).into_owned());
    run(&state, &headers, params).await
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response> {
    let fmt = negotiate(headers, &params)?;
    let view = view(state, headers, Action::Search)?;
    let query = Query::parse(&params, &view)?;
    // The events of the reads this process answered before are in the results: stored now
    // rather than at the end of the writer's gathering.
    state.fhir.audit.flush().await;
    let (events, more) = query.run(&state.fhir.db).await?;
    let base = state.base_url(headers);
    let link = |page: Option<i64>| {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &query.applied {
            pairs.append_pair(k, v);
        }
        if let Some(p) = page {
            pairs.append_pair("_page", &p.to_string());
        }
        format!("{base}/AuditEvent?{}", pairs.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": link(query.after)})];
    if let (true, Some((last, _))) = (more, events.last()) {
        links.push(json!({"relation": "next", "url": link(Some(*last))}));
    }
    let internal = view == AuditView::All;
    let entries: Vec<Value> = events
        .iter()
        .map(|(seq, e)| {
            json!({
                "fullUrl": format!("{base}/AuditEvent/{seq}"),
                "resource": audit_event(*seq, e, internal),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    super::audit::current().saw(crate::audit::Seen {
        count: Some(events.len() as u64),
        query: Some(
            link(query.after)
                .split_once('?')
                .map(|(_, q)| q.to_owned())
                .unwrap_or_default(),
        ),
        ..Default::default()
    });
    Ok(respond(StatusCode::OK, Some(&bundle), fmt, vec![]))
}

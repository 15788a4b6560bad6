//! The steps after sign-in: the patient picker (for a clinician when the app asks for a
//! patient and none is in context: only patients the clinician's role may see are found or
//! taken), and the consent page, whose choices make the scope granted
//! ([`crate::auth::consent`]).

use super::authorize::{lang_for, posted, see_other, show, sign_in_page, user_of};
use super::pages::{self, page, Found};
use super::words::{t, Lang};
use super::AppState;
use crate::auth::access::Access;
use crate::auth::authorize::Problem;
use crate::auth::consent;
use crate::auth::records;
use crate::auth::scope::{Context, Scopes};
use crate::auth::sessions::{self, Pending, Session};
use crate::auth::users::User;
use crate::fhir::Id;
use crate::interactions::{Caller, SearchRequest};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::collections::HashSet;

/// The name an app is shown by.
pub async fn app_name(state: &AppState, p: &Pending) -> String {
    match records::client(state.auth.db(), &p.client_id).await {
        Ok(Some(c)) => c.name.unwrap_or(c.client_id),
        _ => p.client_id.clone(),
    }
}

/// The caller `user` is on this server: their role's rights (their own record for a patient).
fn caller_of(state: &AppState, user: &User, base_url: String) -> Caller {
    Caller {
        base_url,
        access: Access::new(
            &state.fhir.registry,
            user.permissions.clone(),
            user.patient.as_deref(),
        ),
        request_id: String::new(),
        audit: super::audit::current(),
    }
}

/// Whether `user` may see Patient `id`.
async fn may_see(state: &AppState, user: &User, id: &str) -> anyhow::Result<bool> {
    Ok(patient_name(state, user, id).await?.is_some())
}

/// The name of Patient `id` (and birth date), if `user` may see it.
async fn patient_name(state: &AppState, user: &User, id: &str) -> anyhow::Result<Option<String>> {
    let Some(id) = Id::parse(id) else {
        return Ok(None);
    };
    let caller = caller_of(state, user, String::new());
    let rtype = state.fhir.resource_type("Patient")?;
    let Ok(v) = state.fhir.read(&caller, rtype, &id).await else {
        return Ok(None);
    };
    let r = v.into_json().unwrap_or_default();
    let born = r["birthDate"]
        .as_str()
        .map(|b| format!(" ({b})"))
        .unwrap_or_default();
    Ok(Some(format!("{}{born}", name_of(&r))))
}

/// Whether the request still needs a patient picked.
fn needs_patient(p: &Pending, user: &User) -> bool {
    let asked = Scopes::parse(&p.scope);
    p.patient.is_none()
        && user.patient.is_none()
        && (asked.has("launch/patient")
            || asked.grants.iter().any(|g| g.context == Context::Patient))
}

/// The page of the step `p` is at.
pub async fn step(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
    p: &Pending,
    q: &str,
) -> anyhow::Result<Response> {
    let app = app_name(state, p).await;
    let Some(user) = user_of(state, session).await? else {
        let lang = Lang::of_browser(headers);
        return Ok(sign_in_page(
            StatusCode::OK,
            lang,
            &app,
            session,
            &p.id,
            "",
            None,
        ));
    };
    let lang = lang_for(state, headers, Some(&user)).await;
    if needs_patient(p, &user) {
        let found = if q.trim().is_empty() {
            None
        } else {
            Some(search(state, &user, q.trim()).await?)
        };
        let body = pages::picker(lang, &p.id, &session.csrf, q, found.as_deref());
        return Ok(page(StatusCode::OK, lang, t(lang, "pick"), &body));
    }
    let patient = p.patient.clone().or_else(|| user.patient.clone());
    let mut label = None;
    if let Some(id) = &patient {
        let Some(name) = patient_name(state, &user, id).await? else {
            return Ok(show(Problem::PatientNotVisible, lang));
        };
        label = Some(name);
    }
    let asked = Scopes::parse(&p.scope);
    let types = state.fhir.registry.types();
    let choices = consent::choices(&asked, &types);
    let body = pages::consent(
        lang,
        &app,
        &p.id,
        &session.csrf,
        label
            .as_deref()
            .map(|l| (l, user.patient.is_some() && user.patient == patient)),
        &choices,
        consent::narrows(&choices),
    );
    Ok(page(StatusCode::OK, lang, t(lang, "consent"), &body))
}

/// The patients `user` may see whose name or identifier is `q` (twenty at most).
async fn search(state: &AppState, user: &User, q: &str) -> anyhow::Result<Vec<Found>> {
    let caller = caller_of(state, user, String::new());
    let rtype = state.fhir.resource_type("Patient")?;
    let mut found = Vec::new();
    for param in ["name", "identifier"] {
        let req = SearchRequest {
            params: vec![(param.into(), q.into()), ("_count".into(), "20".into())],
            strict: false,
        };
        let Ok(bundle) = state.fhir.search(&caller, rtype, &req).await else {
            continue;
        };
        let bundle: Value = serde_json::from_str(&bundle)?;
        for e in bundle["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            let Some(id) = r["id"].as_str() else { continue };
            if found.iter().any(|f: &Found| f.id == id) {
                continue;
            }
            found.push(Found {
                id: id.to_owned(),
                name: name_of(r),
                birth_date: r["birthDate"].as_str().map(str::to_owned),
                identifier: r["identifier"][0]["value"].as_str().map(str::to_owned),
            });
        }
        if !found.is_empty() {
            break;
        }
    }
    Ok(found)
}

fn name_of(r: &Value) -> String {
    let n = &r["name"][0];
    if let Some(text) = n["text"].as_str() {
        return text.to_owned();
    }
    let given: Vec<&str> = n["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or(""))
        .trim()
        .to_owned()
}

/// `POST /auth/flow/{id}/patient`: the clinician picks a patient they may see.
pub async fn pick(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = Lang::of_browser(&headers);
    let (session, pending, form) = match posted(&state, &headers, &id, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let patient = form
        .iter()
        .find(|(k, _)| k == "patient")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let done = async {
        let Some(user) = user_of(&state, &session).await? else {
            return Ok(false);
        };
        if !needs_patient(&pending, &user) || !may_see(&state, &user, &patient).await? {
            return Ok(false);
        }
        sessions::pick(state.auth.db(), &pending.id, &patient).await?;
        anyhow::Ok(true)
    };
    match done.await {
        Ok(true) => see_other(&format!("/auth/flow/{}", pending.id)),
        Ok(false) => show(Problem::PatientNotVisible, lang),
        Err(e) => {
            tracing::error!(error = %e, "picking a patient failed");
            show(Problem::Expired, lang)
        }
    }
}

/// `POST /auth/flow/{id}/consent`: allow (what is ticked) or decline.
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = Lang::of_browser(&headers);
    let (session, pending, form) = match posted(&state, &headers, &id, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = |k: &str| -> Vec<String> {
        form.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let allow = all("decision").iter().any(|d| d == "allow");
    let ticked: HashSet<String> = all("allow").into_iter().collect();
    let categories = all("category");
    let answered = async {
        let Some(user) = user_of(&state, &session).await? else {
            return Ok(None);
        };
        if needs_patient(&pending, &user) {
            return Ok(None);
        }
        if let Some(p) = pending.patient.clone().or_else(|| user.patient.clone()) {
            if !may_see(&state, &user, &p).await? {
                return Ok(None);
            }
        }
        if !allow {
            return state.auth.decline(&pending).await.map(Some);
        }
        let asked = Scopes::parse(&pending.scope);
        let types = state.fhir.registry.types();
        let scope = consent::granted(&asked, &types, &ticked, &categories);
        let granted = Scopes::parse(&scope);
        if granted.grants.is_empty() && !granted.has("openid") {
            // Nothing allowed is a refusal.
            return state.auth.decline(&pending).await.map(Some);
        }
        state.auth.approve(&pending, &user, scope).await
    };
    match answered.await {
        Ok(Some(to)) => see_other(&to),
        Ok(None) => show(Problem::Expired, lang),
        Err(e) => {
            tracing::error!(error = %e, "answering a consent failed");
            show(Problem::Expired, lang)
        }
    }
}

//! Every request to /fhir and /auth leaves an audit event, whatever its answer: the outermost
//! layer makes the request's [`Context`] (where it comes from), the token check names the
//! caller, the handler tells what it returned, and once the answer is made its event is queued
//! (a write's event went with the write, in its transaction). The answer waits for room in the
//! queue; an event that cannot be queued turns a successful answer into a 503.

use super::authorize::Peer;
use super::AppState;
use crate::audit::{Context, Event, Seen};
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};

tokio::task_local! {
    static CONTEXT: Context;
}

/// The audit context of the request being answered (an empty one outside a request).
pub fn current() -> Context {
    CONTEXT.try_with(Clone::clone).unwrap_or_default()
}

/// Answers the request with `answer`, then queues its event; `class` is what
/// [`classify`] made of it (nothing is recorded for what it does not audit).
pub async fn record<F, Fut>(
    state: &AppState,
    class: Option<Class>,
    req: Request,
    answer: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some((category, action, rtype, id)) = class else {
        return answer(req).await;
    };
    let ctx = Context::new(
        req.extensions().get::<Peer>().map(|Peer(a)| a.to_string()),
        header(&req, "user-agent"),
        header(&req, "x-request-id"),
    );
    let res = CONTEXT.scope(ctx.clone(), answer(req)).await;
    if ctx.is_written() {
        return res;
    }
    let mut event = Event::now(&ctx, category, action).answered(res.status().as_u16());
    event.resource_type = rtype;
    event.resource_id = id;
    if let Some(seen) = ctx.seen() {
        apply(&mut event, seen);
    } else if event.resource_type.as_deref() == Some("Patient") && event.outcome == "success" {
        event.patients = event.resource_id.iter().cloned().collect();
    }
    match state.fhir.audit.record(event).await {
        Ok(()) => res,
        // A refusal stays what it was; an answer with data is not given without its event.
        Err(_) if res.status().is_client_error() || res.status().is_server_error() => res,
        Err(e) => e.into_response(),
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect())
}

fn apply(event: &mut Event, seen: Seen) {
    if let Some(a) = seen.action {
        event.action = a.into();
    }
    if seen.resource_type.is_some() {
        event.resource_type = seen.resource_type;
    }
    if seen.resource_id.is_some() {
        event.resource_id = seen.resource_id;
    }
    event.version = seen.version.or(event.version);
    event.patients = seen.patients;
    event.count = seen.count;
    event.query = seen.query;
}

pub type Class = (&'static str, &'static str, Option<String>, Option<String>);

/// What a request is, for its event: category, action, resource type and id; None for what
/// is not audited (the server's own description, keys, styles, health and metrics).
pub fn classify(method: &Method, path: &str) -> Option<Class> {
    if let Some(rest) = path.strip_prefix("/fhir") {
        return fhir(method, rest.trim_start_matches('/'));
    }
    let rest = path.strip_prefix("/auth/")?;
    let action = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["token"] => "token",
        ["introspect"] => "introspect",
        ["revoke"] => "revoke",
        ["authorize"] => "authorize",
        ["flow", _] => "authorize",
        ["flow", _, "signin"] => return Some(("login", "sign-in", None, None)),
        ["flow", _, "patient"] => "pick-patient",
        ["flow", _, "consent"] => "consent",
        ["signout"] => return Some(("login", "sign-out", None, None)),
        ["launch"] => "launch",
        _ => return None,
    };
    Some(("token", action, None, None))
}

fn fhir(method: &Method, rest: &str) -> Option<Class> {
    let parts: Vec<&str> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').collect()
    };
    let s = |x: &str| Some(x.to_owned());
    let by_method = |on_type: bool| match *method {
        Method::GET if on_type => "search-type",
        Method::GET => "read",
        Method::POST => "create",
        Method::PUT => "update",
        Method::DELETE => "delete",
        Method::PATCH => "patch",
        _ => "other",
    };
    let (action, rtype, id) = match parts.as_slice() {
        [] if *method == Method::POST => ("bundle", None, None),
        [] | ["_search"] => ("search-system", None, None),
        ["_history"] => ("history-system", None, None),
        ["metadata"] | [".well-known", ..] | ["StructureDefinition", ..] => return None,
        [t] => (by_method(true), s(t), None),
        [t, "_search"] => ("search-type", s(t), None),
        [t, "$validate"] => ("validate", s(t), None),
        [t, "_history"] => ("history-type", s(t), None),
        [t, id] => (by_method(false), s(t), s(id)),
        [t, id, "_history"] => ("history-instance", s(t), s(id)),
        [t, id, "$everything"] => ("everything", s(t), s(id)),
        [_, _, ctype] => ("search-type", s(ctype), None),
        [t, id, "_history", _] => ("vread", s(t), s(id)),
        _ => ("other", None, None),
    };
    Some(("rest", action, rtype, id))
}

/// Tells the request's event which version a read returned.
pub fn saw_version(v: &crate::interactions::Version) {
    let patients = match (&v.resource, &v.raw) {
        // A Patient is its own patient: its id is known without reading its text.
        _ if v.resource_type == "Patient" => vec![v.id.clone()],
        (Some(r), _) => crate::audit::patients_of(r),
        (None, Some(text)) => crate::audit::patients_in_text(text),
        (None, None) => vec![],
    };
    current().saw(Seen {
        version: Some(v.version_id),
        patients,
        count: Some(1),
        ..Seen::default()
    });
}

/// Tells the request's event what a Bundle it answers with returned.
pub fn saw_bundle(text: &str) {
    current().saw(crate::audit::seen_in_bundle(text));
}

/// Tells the request's event what a Bundle (as a value) it answers with returned.
pub fn saw_bundle_value(bundle: &serde_json::Value) {
    let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut patients: Vec<String> = Vec::new();
    for p in entries
        .iter()
        .flat_map(|e| crate::audit::patients_of(&e["resource"]))
    {
        if !patients.contains(&p) {
            patients.push(p);
        }
    }
    current().saw(Seen {
        patients,
        count: Some(entries.len() as u64),
        ..Seen::default()
    });
}

/// Names the caller of the request: the user (by fhirUser, else by subject unless the subject
/// is the client itself) and the client.
pub fn identified(sub: &str, fhir_user: Option<&str>, client_id: &str) {
    let agent = fhir_user
        .map(str::to_owned)
        .or_else(|| (sub != client_id).then(|| sub.to_owned()));
    current().identify(agent, Some(client_id.to_owned()));
}

/// Names the request's action more precisely than its route does (`refresh` at the token
/// endpoint).
pub fn acted(action: &'static str) {
    let ctx = current();
    let mut seen = ctx.seen().unwrap_or_default();
    seen.action = Some(action);
    ctx.saw(seen);
}

/// Names the patient the request is about (the patient in a token's context).
pub fn about_patient(id: &str) {
    let ctx = current();
    let mut seen = ctx.seen().unwrap_or_default();
    seen.patients = vec![id.to_owned()];
    ctx.saw(seen);
}

/// The name of a request's route for the metrics: what it does, never its path (`class` is
/// what [`classify`] made of it).
pub fn route_name(class: Option<&Class>, path: &str) -> &'static str {
    match class {
        Some((_, action, ..)) => action,
        None if path == "/health" => "health",
        None if path == "/metrics" => "metrics",
        None if path.starts_with("/fhir") => "description",
        None => "other",
    }
}

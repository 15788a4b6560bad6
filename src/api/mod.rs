//! The HTTP API: routes by FHIR interaction, content negotiation, and errors as OperationOutcome.

mod app_tokens;
mod audit;
mod audit_events;
mod authorize;
mod bearer;
mod bundle;
mod consent;
mod cors;
mod crud;
mod format;
mod frame;
mod launch;
mod metadata;
mod metrics;
mod oauth;
mod pages;
mod profiles;
mod search;
mod serve;
mod words;

pub use serve::serve;

use crate::error::Error;
use crate::fhir::IssueType;
use crate::interactions::{Caller, Fhir};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// What every handler shares: cheap to clone (every layer of every request clones it).
#[derive(Clone)]
pub struct AppState(Arc<ServerState>);

impl AppState {
    pub fn new(state: ServerState) -> AppState {
        AppState(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = ServerState;

    fn deref(&self) -> &ServerState {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct ServerState {
    pub fhir: Fhir,
    /// Keys, tokens and clients.
    pub auth: Arc<crate::auth::Auth>,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The FHIR base URL to put in links; derived from the Host header when absent.
    pub base_url: Option<String>,
    /// How long a request may take (see [`within_time`]).
    pub request_timeout: Duration,
    /// Serve `/fhir` without tokens, every caller an administrator (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// The rights of the tokens met lately.
    pub accesses: Arc<bearer::Accesses>,
    /// Request counts and latencies, for /metrics.
    pub metrics: Arc<metrics::Metrics>,
}

/// How long a client may take to send a request's body, at most (and at most half the request
/// timeout).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest URL (path and query) read: a longer search goes as POST `_search`.
pub const MAX_URL: usize = 16 * 1024;
/// The most bytes of headers (names and values) read.
pub const MAX_HEADERS: usize = 32 * 1024;

impl AppState {
    /// The request body: 413 past the limit, 408 when it does not come in time.
    pub(crate) async fn body_bytes(&self, body: Body) -> Result<axum::body::Bytes, Error> {
        self.body_bytes_upto(body, self.max_body).await
    }

    /// The request body, at most `max` bytes (413 past it).
    pub(crate) async fn body_bytes_upto(
        &self,
        body: Body,
        max: usize,
    ) -> Result<axum::body::Bytes, Error> {
        let limit = BODY_TIMEOUT.min(self.request_timeout / 2);
        match tokio::time::timeout(limit, axum::body::to_bytes(body, max)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) if unreadable(&e) => Err(Error::bad_request(
                IssueType::Structure,
                "the request body could not be read: its chunked encoding is not well formed, \
                 or it ended before its length",
            )),
            Ok(Err(_)) => Err(Error::PayloadTooLarge(max)),
            Err(_) => Err(Error::RequestTimeout),
        }
    }

    /// The caller of this request, as far as the server knows it.
    fn caller(&self, headers: &HeaderMap) -> Caller {
        Caller {
            base_url: self.base_url(headers),
            access: bearer::current(),
            request_id: request_id(headers),
            audit: audit::current(),
        }
    }

    /// The FHIR base URL of this request: the configured one, else from its Host header.
    fn base_url(&self, headers: &HeaderMap) -> String {
        self.base_url.clone().unwrap_or_else(|| {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("http://{host}/fhir")
        })
    }
}

/// Whether a body failed to arrive because of its framing (an error of hyper's somewhere in
/// the chain), rather than by passing the size limit.
fn unreadable(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<hyper::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The FHIR routes, under /fhir: all but the CapabilityStatement and the SMART discovery
/// document take an access token.
fn fhir_routes(state: &AppState) -> Router<AppState> {
    // Anyone may read what the server is and how to get a token; the rest takes a token.
    let public = Router::new()
        .route("/metadata", get(metadata::capabilities))
        .route(
            "/.well-known/smart-configuration",
            get(oauth::smart_configuration),
        )
        .route(
            "/.well-known/openid-configuration",
            get(launch::openid_configuration),
        );
    Router::new()
        .route("/StructureDefinition", get(profiles::search))
        .route("/StructureDefinition/{id}", get(profiles::read))
        // The audit trail: read-only (the other methods answer 405).
        .route("/AuditEvent", get(audit_events::search_get))
        .route("/AuditEvent/_search", post(audit_events::search_post))
        .route("/AuditEvent/{id}", get(audit_events::read))
        .route("/", get(search::search_system).post(bundle::process))
        .route("/_search", post(search::search_system_post))
        .route(
            "/{rtype}",
            get(search::search_get)
                .post(crud::create)
                .put(crud::conditional_update)
                .delete(crud::conditional_delete)
                .patch(crud::conditional_patch),
        )
        .route("/{rtype}/_search", post(search::search_post))
        .route("/{rtype}/$validate", post(crud::validate))
        .route("/{rtype}/_history", get(search::history_type))
        .route(
            "/{rtype}/{id}",
            get(crud::read)
                .put(crud::update)
                .delete(crud::delete)
                .patch(crud::patch),
        )
        .route("/{rtype}/{id}/_history", get(search::history_instance))
        .route("/{rtype}/{id}/{ctype}", get(search::search_compartment))
        .route("/{rtype}/{id}/_history/{vid}", get(crud::vread))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            bearer::require_token,
        ))
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The whole router: FHIR under /fhir, /health beside it.
pub fn router(state: AppState) -> frame::App {
    let fhir = fhir_routes(&state);
    let auth = Router::new()
        .route("/token", post(oauth::token))
        .route("/introspect", post(oauth::introspect))
        .route("/revoke", post(oauth::revoke))
        .route("/jwks", get(oauth::jwks))
        .route(
            "/authorize",
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route("/flow/{id}", get(authorize::flow))
        .route("/flow/{id}/signin", post(authorize::sign_in))
        .route("/flow/{id}/patient", post(consent::pick))
        .route("/flow/{id}/consent", post(consent::decide))
        .route("/signout", post(authorize::sign_out))
        .route("/launch", post(launch::launch))
        .route("/style.json", get(launch::style))
        .route("/pages.css", get(launch::pages_css));
    let routes = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .nest("/fhir", fhir)
        .nest("/auth", auth)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    frame::around(state, routes)
}

/// The request's id as the request-id layer set it (a client's own id when it sent a usable
/// one: see [`usable_request_id`]).
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::fhir::Id::parse(v).is_some())
        .unwrap_or("")
        .to_owned()
}

async fn health(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(5), state.fhir.db.ping()).await {
        Ok(Ok(())) => {
            // The audit queue, when events wait in it.
            let waiting = state
                .fhir
                .audit
                .stats()
                .map_or(0, |s| s.depth.load(std::sync::atomic::Ordering::Relaxed));
            let body = match waiting {
                0 => r#"{"status":"ok"}"#.to_owned(),
                n => format!(r#"{{"status":"ok","audit_queue":{n}}}"#),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        _ => Error::Internal(anyhow::anyhow!("database does not answer")).into_response(),
    }
}

async fn not_found() -> Error {
    Error::NotFound("no such endpoint on this FHIR server".into())
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Marks a response made from an [`Error`], so the middleware can log it once and add the
/// request id.
#[derive(Clone)]
struct ErrorMark(Arc<Error>);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut res = format::respond(
            status,
            Some(&self.outcome("")),
            format::Format {
                pretty: false,
                content_type: format::FHIR_JSON,
            },
            vec![],
        );
        if let Error::Unauthorized(m, code) = &self {
            bearer::challenge(&mut res, m, *code);
        }
        res.extensions_mut().insert(ErrorMark(Arc::new(self)));
        res
    }
}

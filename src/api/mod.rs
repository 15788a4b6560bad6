//! The HTTP API: routes by FHIR interaction, content negotiation, and errors as OperationOutcome.

mod bundle;
mod crud;
mod format;
mod metadata;
mod profiles;
mod search;

use crate::error::Error;
use crate::fhir::IssueType;
use crate::interactions::{Caller, Fhir};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub fhir: Fhir,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The FHIR base URL to put in links; derived from the Host header when absent.
    pub base_url: Option<String>,
}

impl AppState {
    /// The caller of this request, as far as the server knows it.
    fn caller(&self, headers: &HeaderMap) -> Caller {
        let base_url = self.base_url.clone().unwrap_or_else(|| {
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
        });
        Caller {
            base_url,
            restriction: crate::mapping::search::Restriction::none(),
            request_id: request_id(headers),
        }
    }
}

/// The whole router: FHIR under /fhir, /health beside it.
pub fn router(state: AppState) -> Router {
    let fhir = Router::new()
        .route("/metadata", get(metadata::capabilities))
        .route("/StructureDefinition", get(profiles::search))
        .route("/StructureDefinition/{id}", get(profiles::read))
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route("/health", get(health))
        .nest("/fhir", fhir)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(finish_errors))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Only the route template: paths and queries can carry patient data.
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            let id = req
                .extensions()
                .get::<RequestId>()
                .and_then(|r| r.header_value().to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The request's id as the request-id layer set it (a client's own id when it sent one): only
/// a short run of visible ASCII is repeated back in an answer.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
        .to_owned()
}

async fn health(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(5), state.fhir.db.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok"}"#,
        )
            .into_response(),
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
        res.extensions_mut().insert(ErrorMark(Arc::new(self)));
        res
    }
}

/// Logs each error once inside its request span, writes the request id into 500 bodies, and
/// turns any error response not made by this server's handlers (a framework rejection) into an
/// OperationOutcome too.
async fn finish_errors(req: Request, next: Next) -> Response {
    let request_id = request_id(req.headers());
    let res = next.run(req).await;
    let status = res.status();
    if let Some(ErrorMark(err)) = res.extensions().get::<ErrorMark>().cloned() {
        if status.is_server_error() {
            tracing::error!(error = ?err, "request failed");
            let mut fixed = format::respond(
                status,
                Some(&err.outcome(&request_id)),
                format::Format {
                    pretty: false,
                    content_type: format::FHIR_JSON,
                },
                vec![],
            );
            fixed.headers_mut().extend(
                res.headers()
                    .clone()
                    .into_iter()
                    .filter(|(k, _)| k.as_ref() != Some(&header::CONTENT_LENGTH)),
            );
            return fixed;
        }
        tracing::info!(status = status.as_u16(), "request refused");
        return res;
    }
    let is_fhir = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if status.is_client_error() && !is_fhir {
        let (parts, body) = res.into_parts();
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text)
            .chars()
            .take(300)
            .collect::<String>();
        let msg = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        };
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            IssueType::TooLong
        } else {
            IssueType::Invalid
        };
        let oo = crate::fhir::outcome::operation_outcome(&[crate::fhir::Issue::error(code, msg)]);
        let mut out = Response::from_parts(parts, Body::from(oo.to_string()));
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format::FHIR_JSON),
        );
        out.headers_mut().remove(header::CONTENT_LENGTH);
        return out;
    }
    res
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

//! What every request passes through around the routes, outermost first: its request id (a
//! client's usable `X-Request-ID`, else a new one, echoed on the answer), its tracing span, CORS,
//! then one layer that counts and times it, records its audit event once it is answered, makes
//! every error an OperationOutcome, refuses a head over the limits and stops it at the request
//! timeout, and finally a handler's panic answered 500.
//!
//! They wrap the router as one service built once: the router's own layers would wrap every
//! route apart and be copied, layer by layer, for every request.

use super::{audit, cors, format, oauth, AppState, ErrorMark, MAX_HEADERS, MAX_URL};
use crate::error::Error;
use crate::fhir::IssueType;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::convert::Infallible;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// The server: the routes and everything around them.
pub type App = tower::util::BoxCloneSyncService<Request, Response, Infallible>;

/// `routes` with the layers of the module around them.
pub fn around(state: AppState, routes: Router) -> App {
    let stack = ServiceBuilder::new()
        .map_response(|res: axum::http::Response<_>| res.map(Body::new))
        .map_request(prepare)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Only what the request does: paths and queries can carry patient data.
            let route = req
                .extensions()
                .get::<Classified>()
                .map_or("other", |c| c.route);
            let id = req
                .extensions()
                .get::<RequestId>()
                .and_then(|r| r.header_value().to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        // Outside the error answers: a preflight is answered before them, and every answer
        // (errors too) carries the CORS headers a registered browser app needs; inside the
        // request id, which every answer carries.
        .layer(cors::layer(state.auth.clone()))
        .layer(middleware::from_fn_with_state(state, frame))
        // A bug that panics answers 500 like any other failure (logged, with the request id)
        // instead of closing the connection without an answer.
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                Error::Internal(anyhow::anyhow!("a handler panicked")).into_response()
            },
        ))
        .service(routes);
    tower::util::BoxCloneSyncService::new(stack)
}

/// Counts and times the request, records its audit event once it is answered (every answer,
/// errors and timeouts too), makes its errors OperationOutcomes, and refuses it when over the
/// limits or the request timeout.
async fn frame(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Classified { class, route } = req
        .extensions_mut()
        .remove::<Classified>()
        .unwrap_or_else(|| Classified::of(&req));
    let request_id = super::request_id(req.headers());
    let limit = state.request_timeout;
    let answer = |req: Request| {
        finish_errors(request_id, async move {
            if let Err(e) = within_limits(&req) {
                return e.into_response();
            }
            within_time(limit, next.run(req)).await
        })
    };
    state
        .metrics
        .observe(route, audit::record(&state, class, req, answer))
        .await
}

/// What a request is, for its audit event and its metrics, told once.
#[derive(Clone)]
struct Classified {
    class: Option<audit::Class>,
    route: &'static str,
}

impl Classified {
    fn of(req: &Request) -> Classified {
        let class = audit::classify(req.method(), req.uri().path());
        let route = audit::route_name(class.as_ref(), req.uri().path());
        Classified { class, route }
    }
}

/// Tells what the request is (see [`Classified`]) and drops a client's X-Request-ID that is not
/// usable as a FHIR id (64 letters, digits, `-` and `.` at most): the server then makes one.
fn prepare(mut req: Request) -> Request {
    let classified = Classified::of(&req);
    req.extensions_mut().insert(classified);
    let usable = req
        .headers()
        .get("x-request-id")
        .is_none_or(|v| crate::fhir::Id::parse(v.to_str().unwrap_or("")).is_some());
    if !usable {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// Refuses a URL or headers over [`MAX_URL`] and [`MAX_HEADERS`] (hyper itself refuses heads
/// larger still: see the serve module).
fn within_limits(req: &Request) -> Result<(), Error> {
    let url = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if url > MAX_URL {
        return Err(Error::UriTooLong(MAX_URL));
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > MAX_HEADERS {
        return Err(Error::HeadersTooLarge(MAX_HEADERS));
    }
    Ok(())
}

/// Stops a request that runs past the request timeout: dropping it ends the statement it was
/// running (see the store) and rolls back what it had begun; the client is told it changed
/// nothing.
async fn within_time<Fut>(limit: std::time::Duration, answer: Fut) -> Response
where
    Fut: std::future::Future<Output = Response>,
{
    match tokio::time::timeout(limit, answer).await {
        Ok(res) => res,
        Err(_) => Error::TimedOut.into_response(),
    }
}

/// Logs each error once inside its request span and makes every error answer an
/// OperationOutcome that carries the request id (as its `id`; a 500 names it in its text too):
/// the handlers' errors, and any error answer not made by them (a framework rejection).
async fn finish_errors<Fut>(request_id: String, answer: Fut) -> Response
where
    Fut: std::future::Future<Output = Response>,
{
    let res = answer.await;
    let status = res.status();
    if !status.is_client_error() && !status.is_server_error() {
        return res;
    }
    // The OAuth endpoints answer in RFC 6749's own JSON.
    if res.extensions().get::<oauth::OAuthAnswer>().is_some() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let mut oo = match parts.extensions.get::<ErrorMark>().cloned() {
        Some(ErrorMark(err)) => {
            if status.is_server_error() {
                tracing::error!(error = ?err, "request failed");
            } else {
                tracing::info!(status = status.as_u16(), "request refused");
            }
            err.outcome(&request_id)
        }
        None => foreign_outcome(status, body).await,
    };
    if !request_id.is_empty() {
        if let Some(o) = oo.as_object_mut() {
            o.shift_insert(1, "id".into(), serde_json::Value::String(request_id));
        }
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format::FHIR_JSON),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    if matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        // The body was not read to its end: the connection cannot carry another request.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Response::from_parts(parts, Body::from(oo.to_string()))
}

/// The OperationOutcome for an error answer the handlers did not make: its own when it is one,
/// else one made from its text.
async fn foreign_outcome(status: StatusCode, body: Body) -> serde_json::Value {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        if v["resourceType"] == "OperationOutcome" {
            return v;
        }
    }
    let text = String::from_utf8_lossy(&bytes)
        .chars()
        .take(300)
        .collect::<String>();
    let msg = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::URI_TOO_LONG
        | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => IssueType::TooLong,
        StatusCode::REQUEST_TIMEOUT => IssueType::Timeout,
        StatusCode::TOO_MANY_REQUESTS => IssueType::Throttled,
        s if s.is_server_error() => IssueType::Exception,
        _ => IssueType::Invalid,
    };
    crate::fhir::outcome::operation_outcome(&[crate::fhir::Issue::error(code, msg)])
}

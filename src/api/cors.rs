//! CORS for browser apps: a preflight or a request from the origin of a registered client's
//! redirect URI is answered with that origin; any other origin gets no CORS header (the
//! browser then keeps the answer from the page). Never `*`, and no credentials: the API takes
//! bearer tokens, not cookies.

use crate::auth::Auth;
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The layer, for every route.
pub fn layer(auth: Arc<Auth>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| auth.allows_origin(o))
        }))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("prefer"),
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            HeaderName::from_static("if-none-exist"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::CONTENT_LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}

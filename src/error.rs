//! The one error type of the FHIR API. Each variant documents its HTTP status; every error
//! leaves the server as an OperationOutcome.

use crate::fhir::outcome::operation_outcome;
use crate::fhir::{Issue, IssueType};
use crate::mapping::MapError;
use crate::store::StoreError;
use axum::http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is malformed (bad JSON, invalid resource, bad search value).
    #[error("bad request")]
    BadRequest(Vec<Issue>),
    /// 401: no valid access token; the text says what is wrong with it, the code is RFC 6750's
    /// (`invalid_token`), absent when no token was sent.
    #[error("unauthorized: {0}")]
    Unauthorized(String, Option<&'static str>),
    /// 403: the caller's token does not allow this; the text names a scope that would.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such resource, type or route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 406: the client accepts no format this server produces.
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    /// 409: the write conflicts with another (a concurrent create of the same id).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 409: the database gave up this transaction in favour of a concurrent one (a deadlock or
    /// a serialization failure); the whole transaction may simply be run again.
    #[error("transaction aborted by a concurrent one")]
    Aborted,
    /// 410: the resource was deleted.
    #[error("gone: {0}")]
    Gone(String),
    /// 412: If-Match names a version that is not the current one.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// 413: the body is larger than the configured limit.
    #[error("payload too large")]
    PayloadTooLarge(usize),
    /// 415: the body is not FHIR JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    /// 422: a valid resource whose content the server cannot accept (a rule or constraint).
    #[error("unprocessable entity")]
    Unprocessable(Vec<Issue>),
    /// 408: the client took too long to send its request.
    #[error("request timeout")]
    RequestTimeout,
    /// 414: the URL is longer than the server reads.
    #[error("URI too long")]
    UriTooLong(usize),
    /// 431: the request's headers are larger than the server reads.
    #[error("request header fields too large")]
    HeadersTooLarge(usize),
    /// 503: the request ran out of time (the statement or request timeout): it was stopped and
    /// changed nothing.
    #[error("timed out")]
    TimedOut,
    /// 503: the database is unavailable (restarting, unreachable); the request changed nothing
    /// and may be sent again.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500: a failure of the server; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn bad_request(code: IssueType, message: impl Into<String>) -> Error {
        Error::BadRequest(vec![Issue::error(code, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::Conflict(_) | Error::Aborted => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Error::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::TimedOut | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OperationOutcome sent for this error. `request_id` ties a 500 to its log line.
    pub fn outcome(&self, request_id: &str) -> serde_json::Value {
        let one = |code, msg: String| vec![Issue::error(code, msg)];
        let issues = match self {
            Error::BadRequest(i) | Error::Unprocessable(i) => i.clone(),
            Error::Unauthorized(m, _) => one(IssueType::Login, m.clone()),
            Error::Forbidden(m) => one(IssueType::Forbidden, m.clone()),
            Error::NotFound(m) => one(IssueType::NotFound, m.clone()),
            Error::MethodNotAllowed => one(
                IssueType::NotSupported,
                "this interaction is not supported on this URL".into(),
            ),
            Error::NotAcceptable(m) => one(IssueType::NotSupported, m.clone()),
            Error::Conflict(m) => one(IssueType::Conflict, m.clone()),
            Error::Aborted => one(
                IssueType::Transient,
                "the database ended this transaction in favour of a concurrent one; send it again"
                    .into(),
            ),
            Error::Gone(m) => one(IssueType::Deleted, m.clone()),
            Error::PreconditionFailed(m) => one(IssueType::Conflict, m.clone()),
            Error::PayloadTooLarge(limit) => one(
                IssueType::TooLong,
                format!("the request body is larger than the limit of {limit} bytes"),
            ),
            Error::UnsupportedMediaType(m) => one(IssueType::NotSupported, m.clone()),
            Error::RequestTimeout => one(
                IssueType::Timeout,
                "the request was not received in time".into(),
            ),
            Error::UriTooLong(limit) => one(
                IssueType::TooLong,
                format!("the URL is longer than the limit of {limit} bytes; send a search as POST _search"),
            ),
            Error::HeadersTooLarge(limit) => one(
                IssueType::TooLong,
                format!("the request's headers are larger than the limit of {limit} bytes"),
            ),
            Error::TimedOut => one(
                IssueType::Timeout,
                "the request took longer than the server allows and was stopped; it changed nothing (narrow a search, or send less at once)".into(),
            ),
            Error::Unavailable(_) => one(
                IssueType::Transient,
                "the database is unavailable; the request changed nothing and may be sent again".into(),
            ),
            Error::Internal(_) if request_id.is_empty() => {
                one(IssueType::Exception, "internal server error".into())
            }
            Error::Internal(_) => one(
                IssueType::Exception,
                format!("internal server error (request id {request_id})"),
            ),
        };
        operation_outcome(&issues)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Error::Conflict(
                "the resource was written concurrently by another request; retry".into(),
            ),
            StoreError::Aborted => Error::Aborted,
            StoreError::ForeignKey => Error::Unprocessable(vec![Issue::error(
                IssueType::Processing,
                "a reference points at a record that does not exist",
            )]),
            StoreError::Check(_) => Error::Unprocessable(vec![Issue::error(
                IssueType::Value,
                "a value is outside what the clinic schema allows for its column",
            )]),
            StoreError::TimedOut => Error::TimedOut,
            StoreError::Unavailable(why) => Error::Unavailable(why),
            other => Error::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<MapError> for Error {
    fn from(e: MapError) -> Self {
        match e {
            MapError::Unprocessable(issues) => Error::Unprocessable(issues),
            MapError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_violations_become_client_errors_with_outcomes() {
        let check: Error = StoreError::Check("CHECK constraint failed: gender".into()).into();
        assert_eq!(check.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let oo = check.outcome("r1");
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert!(
            !oo.to_string().contains("CHECK constraint"),
            "database text stays inside"
        );
        let fk: Error = StoreError::ForeignKey.into();
        assert_eq!(fk.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let unique: Error = StoreError::Conflict.into();
        assert_eq!(unique.status(), StatusCode::CONFLICT);
        let other: Error = StoreError::Decode("column x".into()).into();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            other.outcome("abc")["issue"][0]["diagnostics"],
            "internal server error (request id abc)"
        );
        // Without a request to name, no empty parentheses.
        assert_eq!(
            other.outcome("")["issue"][0]["diagnostics"],
            "internal server error"
        );
    }
}

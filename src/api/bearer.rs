//! Every `/fhir` request but the CapabilityStatement and the SMART discovery document carries an
//! access token (RFC 6750: `Authorization: Bearer ...`). A missing, malformed, expired, revoked,
//! wrongly signed or wrong-audience token is a 401 with `WWW-Authenticate: Bearer` and an
//! OperationOutcome. The token's rights ([`Access`]) go with the request: the handlers' `Caller`
//! reads them, and finds none (nothing allowed) when no token was checked.

use super::AppState;
use crate::auth::access::Access;
use crate::auth::scope::Scopes;
use crate::auth::token::Claims;
use crate::error::Error;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Mutex;

tokio::task_local! {
    static ACCESS: Access;
}

/// The rights of the request being answered: none unless a token was checked for it.
pub fn current() -> Access {
    ACCESS
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Access::nothing())
}

/// Checks the request's token and answers it with the token's rights.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.insecure_no_auth {
        return ACCESS.scope(Access::everything(), next.run(req)).await;
    }
    let token = match token(&req) {
        Ok(t) => t.to_owned(),
        Err(e) => return e.into_response(),
    };
    let base = state.base_url(req.headers());
    match state.auth.verify(&token, &base).await {
        Ok(claims) => {
            super::audit::identified(&claims.sub, claims.fhir_user.as_deref(), &claims.client_id);
            let access = state.accesses.of(&state, &claims);
            ACCESS.scope(access, next.run(req)).await
        }
        Err(refusal) => {
            Error::Unauthorized(refusal.describe().into(), Some("invalid_token")).into_response()
        }
    }
}

/// The bearer token of a request.
fn token(req: &Request) -> Result<&str, Error> {
    let Some(v) = req.headers().get(header::AUTHORIZATION) else {
        return Err(Error::Unauthorized(
            "this request needs an access token (Authorization: Bearer ...); see \
             /fhir/.well-known/smart-configuration"
                .into(),
            None,
        ));
    };
    let bad = || {
        Error::Unauthorized(
            "the Authorization header is not a Bearer token".into(),
            Some("invalid_request"),
        )
    };
    let v = v.to_str().map_err(|_| bad())?;
    match v.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            Ok(t.trim())
        }
        _ => Err(bad()),
    }
}

/// Adds `WWW-Authenticate: Bearer ...` to a 401.
pub fn challenge(res: &mut Response, message: &str, code: Option<&str>) {
    let mut v = String::from("Bearer realm=\"expediente\"");
    if let Some(code) = code {
        let said: String = message
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
            .collect();
        v.push_str(&format!(", error=\"{code}\", error_description=\"{said}\""));
    }
    if let Ok(v) = HeaderValue::from_str(&v) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
}

/// The rights of tokens, by jti, until the tokens expire: a token's scopes are parsed once.
#[derive(Default)]
pub struct Accesses {
    map: Mutex<HashMap<String, (i64, Access)>>,
}

/// The most tokens whose rights are kept.
const LIMIT: usize = 10_000;

impl Accesses {
    fn of(&self, state: &AppState, claims: &Claims) -> Access {
        let now = chrono::Utc::now().timestamp();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, a)) = map.get(&claims.jti) {
            return a.clone();
        }
        let access = Access::new(
            &state.fhir.registry,
            Scopes::parse(&claims.scope),
            claims.patient.as_deref(),
        );
        if map.len() >= LIMIT {
            map.retain(|_, (exp, _)| *exp > now);
            if map.len() >= LIMIT {
                map.clear();
            }
        }
        map.insert(claims.jti.clone(), (claims.exp, access.clone()));
        access
    }
}

impl std::fmt::Debug for Accesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Accesses")
    }
}

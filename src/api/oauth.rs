//! The authorization server's HTTP face: SMART discovery, the JWKS, and the token,
//! introspection and revocation endpoints. Errors here are RFC 6749 JSON, not
//! OperationOutcomes.

use super::AppState;
use crate::auth::client_auth::{Credentials, JWT_BEARER};
use crate::auth::grant::{Denied, TokenRequest};
use crate::auth::records::Client;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How long a token for a backend client lives (SMART Backend Services: at most 5 minutes).
const BACKEND_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The grant types the token endpoint takes.
pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
/// How clients authenticate at the token endpoint.
pub const AUTH_METHODS: &[&str] = &["private_key_jwt", "client_secret_basic"];
/// The algorithms of client assertions.
pub const ASSERTION_ALGS: &[&str] = &["RS384", "ES384"];
/// The SMART capabilities this server has.
pub const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "permission-v1",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "permission-offline",
    "permission-online",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
];

/// The base of the authorization endpoints for the FHIR base `base_url` (`http://h/fhir` →
/// `http://h/auth`).
pub fn auth_base(base_url: &str) -> String {
    let b = base_url.trim_end_matches('/');
    format!("{}/auth", b.strip_suffix("/fhir").unwrap_or(b))
}

/// Marks an answer of the OAuth endpoints: its error is RFC 6749 JSON, not an
/// OperationOutcome.
#[derive(Clone, Copy)]
pub struct OAuthAnswer;

/// An RFC 6749 error answer.
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The scheme to name in `WWW-Authenticate` (a 401 to a client that used HTTP Basic).
    challenge: Option<&'static str>,
}

impl OAuthError {
    pub(super) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    pub(super) fn request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut r = (self.status, axum::Json(body)).into_response();
        r.extensions_mut().insert(OAuthAnswer);
        no_store(r.headers_mut());
        if let Some(scheme) = self.challenge {
            let v = format!("{scheme} realm=\"expediente\"");
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }
}

impl From<anyhow::Error> for OAuthError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %e, "authorization endpoint failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server could not answer; try again",
        )
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

pub(super) fn json_answer(v: Value) -> Response {
    let mut r = (StatusCode::OK, axum::Json(v)).into_response();
    no_store(r.headers_mut());
    r
}

/// `GET /fhir/.well-known/smart-configuration`: JSON whatever Accept says.
pub async fn smart_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = state.base_url(&headers);
    let auth = auth_base(&base);
    let scopes: Vec<String> = ["system", "user", "patient"]
        .iter()
        .flat_map(|c| {
            [
                format!("{c}/*.rs"),
                format!("{c}/*.cruds"),
                format!("{c}/*.read"),
            ]
        })
        .chain(
            [
                "openid",
                "fhirUser",
                "profile",
                "launch",
                "launch/patient",
                "offline_access",
                "online_access",
            ]
            .map(String::from),
        )
        .collect();
    axum::Json(json!({
        "issuer": base.trim_end_matches('/'),
        "authorization_endpoint": format!("{auth}/authorize"),
        "token_endpoint": format!("{auth}/token"),
        "jwks_uri": format!("{auth}/jwks"),
        "introspection_endpoint": format!("{auth}/introspect"),
        "revocation_endpoint": format!("{auth}/revoke"),
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "scopes_supported": scopes,
        "capabilities": CAPABILITIES,
    }))
    .into_response()
}

/// The SMART security of the CapabilityStatement's `rest`: the oauth-uris extension.
pub fn capability_security(base_url: &str) -> Value {
    let auth = auth_base(base_url);
    let uri = |name: &str, path: &str| json!({"url": name, "valueUri": format!("{auth}/{path}")});
    json!({
        // Registered browser apps get CORS headers (api::cors).
        "cors": true,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                uri("authorize", "authorize"),
                uri("token", "token"),
                uri("introspect", "introspect"),
                uri("revoke", "revoke"),
            ],
        }],
        "description": "SMART App Launch (EHR and standalone, PKCE S256, public and confidential clients, OpenID Connect, refresh tokens) and SMART Backend Services (client_credentials with private_key_jwt or client_secret_basic); SMART v1 and v2 scopes.",
    })
}

/// `GET /auth/jwks`: the public keys that sign access tokens.
pub async fn jwks(State(state): State<AppState>) -> Response {
    axum::Json(state.auth.jwks()).into_response()
}

/// The largest body the OAuth endpoints read: a client assertion is a few KiB.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The most parameters they read.
const MAX_FORM_PARAMETERS: usize = 20;

/// The parameters of a form body, each once (RFC 6749 §3.2).
pub(super) async fn form(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in form_fields(state, headers, body, MAX_FORM_PARAMETERS).await? {
        if out.contains_key(&k) {
            return Err(OAuthError::request(format!("{k} is given more than once")));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// The fields of a form body, in order, at most `max` of them.
pub(super) async fn form_fields(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Vec<(String, String)>, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::request(
            "the body is application/x-www-form-urlencoded",
        ));
    }
    let bytes = state
        .body_bytes_upto(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| match e {
            crate::error::Error::PayloadTooLarge(n) => {
                OAuthError::request(format!("the body is larger than {n} bytes"))
            }
            _ => OAuthError::request("the body could not be read"),
        })?;
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(&bytes) {
        if out.len() == max {
            return Err(OAuthError::request(format!(
                "the body has more than {max} parameters"
            )));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// HTTP Basic credentials: the client id and secret, each form-encoded (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<Result<(String, String), OAuthError>> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bad = || OAuthError::request("the Basic credentials cannot be read");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Some(Err(bad()));
    };
    let dec = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some(match (dec(id), dec(secret)) {
        (Some(i), Some(s)) => Ok((i, s)),
        _ => Err(bad()),
    })
}

/// The client a request authenticates as (`invalid_client` when it does not).
async fn client_of(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    endpoints: &[&str],
) -> Result<Client, OAuthError> {
    let unauthorized = |d: String, challenge| OAuthError {
        challenge,
        ..OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    };
    let (credentials, challenge) = match (basic(headers), params.get("client_assertion_type")) {
        (Some(Err(e)), _) => return Err(e),
        (Some(Ok(_)), Some(_)) => {
            return Err(OAuthError::request("one client authentication, not two"))
        }
        (Some(Ok((id, secret))), None) => (Some((id, secret)), Some("Basic")),
        (None, Some(t)) if t != JWT_BEARER => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                format!("client_assertion_type is {JWT_BEARER}"),
            ))
        }
        (None, Some(_)) => (None, None),
        (None, None) => {
            return Err(unauthorized(
                "the client authenticates with HTTP Basic or a client assertion".into(),
                Some("Basic"),
            ))
        }
    };
    let authenticated = match &credentials {
        Some((id, secret)) => {
            state
                .auth
                .authenticate(
                    Credentials::Secret {
                        client_id: id,
                        secret,
                    },
                    endpoints,
                )
                .await?
        }
        None => {
            let Some(jwt) = params.get("client_assertion") else {
                return Err(OAuthError::request("client_assertion is missing"));
            };
            state
                .auth
                .authenticate(Credentials::Assertion(jwt), endpoints)
                .await?
        }
    };
    authenticated.map_err(|e| unauthorized(e.0, challenge))
}

/// The client of an App Launch grant: authenticated as a confidential client is, or a public
/// client naming itself with `client_id` (PKCE, or its refresh token, proves the rest).
async fn app_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    endpoints: &[&str],
) -> Result<Client, OAuthError> {
    let credentials =
        headers.contains_key(header::AUTHORIZATION) || params.contains_key("client_assertion_type");
    if credentials {
        return client_of(state, headers, params, endpoints).await;
    }
    let db = state.auth.db();
    let named = match (params.get("client_id"), params.get("refresh_token")) {
        (Some(id), _) => Some(id.clone()),
        // client-js refreshes for a public client without naming it: the token does.
        (None, Some(t))
            if params.get("grant_type").map(String::as_str) == Some("refresh_token") =>
        {
            crate::auth::codes::refresh_client(db, t)
                .await
                .map_err(anyhow::Error::from)?
        }
        (None, _) => None,
    };
    let client = match named {
        Some(id) => crate::auth::records::client(db, &id)
            .await
            .map_err(anyhow::Error::from)?,
        None => None,
    };
    match client {
        Some(c) if c.kind == "public" => Ok(c),
        Some(_) => Err(OAuthError {
            challenge: Some("Basic"),
            ..OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "this client authenticates with HTTP Basic or a client assertion",
            )
        }),
        None => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client is not registered (a public client sends client_id)",
        )),
    }
}

/// `POST /auth/token`.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let params = form(&state, &headers, body).await?;
    let base = state.base_url(&headers);
    let endpoint = format!("{}/token", auth_base(&base));
    match params.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("authorization_code" | "refresh_token") => {
            let client = app_client(&state, &headers, &params, &[&endpoint]).await?;
            return super::app_tokens::token(&state, &client, &params, &base).await;
        }
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("the grant types are {}", GRANT_TYPES.join(", ")),
            ))
        }
        None => return Err(OAuthError::request("grant_type is missing")),
    }
    let client = client_of(&state, &headers, &params, &[&endpoint]).await?;
    super::audit::identified(&client.client_id, None, &client.client_id);
    let Some(scope) = params.get("scope").filter(|s| !s.trim().is_empty()) else {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope is missing",
        ));
    };
    let req = TokenRequest {
        client_id: client.client_id,
        scope: scope.clone(),
        user: None,
        patient: None,
        encounter: None,
        expires_in: BACKEND_TOKEN_LIFETIME,
        audience: base,
    };
    match state.auth.grant(&req).await? {
        Ok((token, claims)) => Ok(json_answer(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims.exp - claims.iat,
            "scope": claims.scope,
        }))),
        Err(Denied::InvalidScope(why)) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            why,
        )),
        Err(Denied::UnknownClient | Denied::UnknownUser) => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client is not registered",
        )),
    }
}

/// A request about a token (introspection, revocation): the client it authenticates as (an
/// assertion's audience the token endpoint or `endpoint`), the FHIR base, and the token.
async fn about_a_token(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    endpoint: &str,
) -> Result<(Client, String, String), OAuthError> {
    let mut params = form(state, headers, body).await?;
    let base = state.base_url(headers);
    let auth = auth_base(&base);
    let endpoints = [format!("{auth}/token"), format!("{auth}/{endpoint}")];
    // A public client names itself (RFC 7009 §2.1); the others authenticate.
    let client = app_client(state, headers, &params, &[&endpoints[0], &endpoints[1]]).await?;
    super::audit::identified(&client.client_id, None, &client.client_id);
    let Some(t) = params.remove("token") else {
        return Err(OAuthError::request("token is missing"));
    };
    Ok((client, base, t))
}

/// `POST /auth/introspect` (RFC 7662), for an authenticated client, about its own tokens.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let (client, base, t) = about_a_token(&state, &headers, body, "introspect").await?;
    Ok(json_answer(match state.auth.verify(&t, &base).await {
        // A client learns about its own tokens only: another's patient and user are not its.
        Ok(c) if c.client_id == client.client_id => {
            let mut v = json!({
                "active": true,
                "scope": c.scope,
                "client_id": c.client_id,
                "sub": c.sub,
                "iss": c.iss,
                "aud": c.aud,
                "exp": c.exp,
                "iat": c.iat,
                "token_type": "Bearer",
            });
            if let Some(p) = &c.patient {
                v["patient"] = json!(p);
            }
            if let Some(e) = &c.encounter {
                v["encounter"] = json!(e);
            }
            if let Some(u) = &c.fhir_user {
                v["fhirUser"] = json!(u);
            }
            v
        }
        Ok(_) | Err(_) => json!({"active": false}),
    }))
}

/// `POST /auth/revoke` (RFC 7009): a client revokes one of its own tokens; 200 whatever the
/// token was.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let (client, base, t) = about_a_token(&state, &headers, body, "revoke").await?;
    if let Ok(c) = state.auth.verify(&t, &base).await {
        state.auth.revoke(&c.jti, Some(&client.client_id)).await?;
    } else {
        // A refresh token: it and what its family holds (RFC 7009 §2.1).
        state.auth.revoke_refresh(&t, &client.client_id).await?;
    }
    Ok(json_answer(json!({})))
}

//! EHR launch and what launched apps fetch: `POST /auth/launch` (the clinic's application,
//! with its user's token, mints a launch id for a patient it may see), the style the app
//! matches (`smart_style_url`), the pages' style sheet, and the OpenID configuration.

use super::oauth::{auth_base, json_answer, OAuthError};
use super::AppState;
use crate::auth::access::Access;
use crate::auth::scope::Scopes;
use crate::fhir::Id;
use crate::interactions::Caller;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `POST /auth/launch` (form: `client_id`, `patient`, optional `encounter`), with a user's
/// bearer token that may read the patient (and the encounter, which must be the patient's).
pub async fn launch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OAuthError> {
    let base = state.base_url(&headers);
    let unauthorized = |d: &str| OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_token", d);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned())
        .ok_or_else(|| unauthorized("a user's access token is needed (Authorization: Bearer)"))?;
    let claims = state
        .auth
        .verify(&token, &base)
        .await
        .map_err(|r| unauthorized(r.describe()))?;
    let params = super::oauth::form(&state, &headers, body).await?;
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(client_id), Some(patient)) = (get("client_id"), get("patient")) else {
        return Err(OAuthError::request("client_id and patient are needed"));
    };
    let caller = Caller {
        base_url: base.clone(),
        access: Access::new(
            &state.fhir.registry,
            Scopes::parse(&claims.scope),
            claims.patient.as_deref(),
        ),
        request_id: String::new(),
        audit: super::audit::current(),
    };
    let forbidden = |d: &str| OAuthError::new(StatusCode::FORBIDDEN, "access_denied", d);
    if claims.fhir_user.is_none() || !readable(&state, &caller, "Patient", patient, None).await {
        return Err(forbidden("the token's user may not see this patient"));
    }
    if let Some(e) = get("encounter") {
        if !readable(&state, &caller, "Encounter", e, Some(patient)).await {
            return Err(forbidden(
                "the token's user may not see this encounter of the patient",
            ));
        }
    }
    match state
        .auth
        .mint_launch(client_id, patient, get("encounter"))
        .await?
    {
        Some(id) => Ok(json_answer(json!({
            "launch": id,
            "expires_in": crate::auth::authorize::LAUNCH_LIFETIME.as_secs(),
            "iss": base,
        }))),
        None => Err(OAuthError::request("the client is not registered")),
    }
}

/// Whether `caller` may read `rtype/id` (an Encounter: one of Patient `of`).
async fn readable(
    state: &AppState,
    caller: &Caller,
    rtype: &str,
    id: &str,
    of: Option<&str>,
) -> bool {
    let (Ok(t), Some(id)) = (state.fhir.resource_type(rtype), Id::parse(id)) else {
        return false;
    };
    match state.fhir.read(caller, t, &id).await {
        Ok(v) => of.is_none_or(|p| {
            let r = v.into_json().unwrap_or_default();
            r["subject"]["reference"].as_str() == Some(&format!("Patient/{p}"))
        }),
        Err(_) => false,
    }
}

/// `GET /auth/style.json`: the clinic's look, for apps to match (`smart_style_url`).
pub async fn style() -> Response {
    let mut r = axum::Json(json!({
        "color_background": "#ffffff",
        "color_error": "#aa0000",
        "color_highlight": "#0b5394",
        "color_modal_backdrop": "#00000080",
        "color_success": "#2e7d32",
        "color_text": "#1a1a1a",
        "dim_border_radius": "4px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif",
        "font_family_heading": "system-ui, sans-serif",
    }))
    .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

/// `GET /auth/pages.css`.
pub async fn pages_css() -> Response {
    let mut r = super::pages::STYLE.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

/// `GET /fhir/.well-known/openid-configuration`: the issuer is the FHIR base.
pub async fn openid_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = state.base_url(&headers);
    let auth = auth_base(&base);
    axum::Json(json!({
        "issuer": base.trim_end_matches('/'),
        "authorization_endpoint": format!("{auth}/authorize"),
        "token_endpoint": format!("{auth}/token"),
        "jwks_uri": format!("{auth}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [crate::auth::oidc::ID_TOKEN_ALG],
        "scopes_supported": ["openid", "fhirUser", "profile", "offline_access", "online_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": super::oauth::AUTH_METHODS,
    }))
    .into_response()
}

//! The token endpoint's App Launch grants (`authorization_code`, `refresh_token`) and their
//! answer: the tokens, the scope granted, the launch context, and what the app shows.

use super::oauth::{auth_base, json_answer, OAuthError};
use super::AppState;
use crate::auth::exchange::{Issued, Refusal};
use crate::auth::records::Client;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use std::collections::HashMap;

/// Answers an `authorization_code` or `refresh_token` grant for `client`.
pub async fn token(
    state: &AppState,
    client: &Client,
    params: &HashMap<String, String>,
    base: &str,
) -> Result<Response, OAuthError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("grant_type") == Some("refresh_token") {
        super::audit::acted("refresh");
    }
    let issued = if get("grant_type") == Some("authorization_code") {
        let Some(code) = get("code").filter(|c| !c.is_empty()) else {
            return Err(OAuthError::request("code is missing"));
        };
        state
            .auth
            .exchange_code(
                client,
                code,
                get("redirect_uri"),
                get("code_verifier"),
                base,
            )
            .await?
    } else {
        let Some(t) = get("refresh_token").filter(|c| !c.is_empty()) else {
            return Err(OAuthError::request("refresh_token is missing"));
        };
        let scope = get("scope").filter(|s| !s.trim().is_empty());
        state.auth.refresh(client, t, scope, base).await?
    };
    match issued {
        Ok(i) => {
            let c = &i.claims;
            super::audit::identified(&c.sub, c.fhir_user.as_deref(), &c.client_id);
            if let Some(p) = &c.patient {
                super::audit::about_patient(p);
            }
            Ok(answer(i, base))
        }
        Err(Refusal::InvalidRequest(d)) => Err(OAuthError::request(d)),
        Err(Refusal::InvalidGrant(d)) => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", d))
        }
        Err(Refusal::InvalidScope(d)) => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", d))
        }
    }
}

fn answer(i: Issued, base: &str) -> Response {
    let c = &i.claims;
    let mut v = json!({
        "access_token": i.access_token,
        "token_type": "Bearer",
        "expires_in": c.exp - c.iat,
        "scope": c.scope,
    });
    if let Some(p) = &c.patient {
        v["patient"] = json!(p);
        // A launch from the clinic's application shows the patient already.
        v["need_patient_banner"] = json!(!i.launched);
    }
    if let Some(e) = &c.encounter {
        v["encounter"] = json!(e);
    }
    v["smart_style_url"] = json!(format!("{}/style.json", auth_base(base)));
    if let Some(t) = i.refresh_token {
        v["refresh_token"] = json!(t);
    }
    if let Some(t) = i.id_token {
        v["id_token"] = json!(t);
    }
    json_answer(v)
}

//! The token endpoint's App Launch grants: a code for tokens (PKCE checked, the code used
//! once), and a refresh token for new ones (rotated; used twice, its whole family is revoked;
//! narrower scopes may be asked for, never wider; online_access ends with the user's session).

use super::authorize::{pkce_matches, pkce_value, SESSION_LIFETIME};
use super::codes::{self, Grant, Taken};
use super::grant::{granted, Denied, TokenRequest};
use super::oidc::IdClaims;
use super::records::Client;
use super::scope::Scopes;
use super::token::Claims;
use super::{keys, sessions, users, Auth, TOKEN_LIFETIME};
use chrono::Utc;
use std::time::Duration;

/// How long an offline_access refresh token family lives.
pub const OFFLINE_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// What the token endpoint answers.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub claims: Claims,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    /// Whether the app was launched from the clinic's application (which shows the patient).
    pub launched: bool,
}

/// Why no token is issued (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    InvalidRequest(String),
    InvalidGrant(String),
    InvalidScope(String),
}

fn grant_error(why: &str) -> Refusal {
    Refusal::InvalidGrant(why.to_owned())
}

impl Auth {
    /// Tokens for the code `code`, presented by `client` with `redirect_uri` and `verifier`.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        base: &str,
    ) -> anyhow::Result<Result<Issued, Refusal>> {
        let Some(verifier) = verifier.filter(|v| !v.is_empty()) else {
            return Ok(Err(Refusal::InvalidRequest(
                "code_verifier is missing (PKCE is required)".into(),
            )));
        };
        let c = match codes::take_code(&self.db, code, &client.client_id).await? {
            Taken::Fresh(c) => c,
            Taken::Reused(family) => {
                // Someone has the code besides the app, or the app replays: what it yielded
                // is no longer to be trusted.
                self.revoke_family(&family).await?;
                return Ok(Err(grant_error(
                    "the code was used before; its tokens are revoked",
                )));
            }
            Taken::Unknown => return Ok(Err(grant_error("the code is unknown or has expired"))),
        };
        if redirect_uri != Some(c.redirect_uri.as_str()) {
            return Ok(Err(grant_error(
                "redirect_uri is not the one the code was issued to",
            )));
        }
        if !pkce_value(verifier) || !pkce_matches(verifier, &c.code_challenge) {
            return Ok(Err(grant_error(
                "code_verifier does not match the code_challenge",
            )));
        }
        let nonce = c.nonce.clone();
        let mut grant = c.grant;
        let lifetime = if Scopes::parse(&grant.scope).has("offline_access") {
            OFFLINE_LIFETIME
        } else {
            SESSION_LIFETIME
        };
        grant.expires_at = Some(Utc::now() + chrono::Duration::from_std(lifetime)?);
        self.tokens_for(client, grant, nonce, base, true).await
    }

    /// New tokens for the refresh token `token` of `client`, for `scope` if given (at most what
    /// the token holds).
    pub async fn refresh(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
        base: &str,
    ) -> anyhow::Result<Result<Issued, Refusal>> {
        if let Some(asked) = scope {
            let held = codes::refresh_scope(&self.db, token, &client.client_id).await?;
            if held.is_some_and(|h| !Scopes::parse(asked).within(&Scopes::parse(&h))) {
                return Ok(Err(Refusal::InvalidScope(
                    "a refresh may ask for the scopes granted or fewer, never more".into(),
                )));
            }
        }
        let mut grant = match codes::take_refresh(&self.db, token, &client.client_id).await? {
            Taken::Fresh(g) => g,
            Taken::Reused(family) => {
                self.revoke_family(&family).await?;
                return Ok(Err(grant_error(
                    "the refresh token was used before; its family is revoked",
                )));
            }
            Taken::Unknown => {
                return Ok(Err(grant_error(
                    "the refresh token is unknown, revoked or expired",
                )))
            }
        };
        if let Some(s) = &grant.session_hash {
            if sessions::live_session(&self.db, s).await?.is_none() {
                return Ok(Err(grant_error(
                    "online_access ended with the user's session",
                )));
            }
        }
        if let Some(asked) = scope {
            grant.scope = asked.to_owned();
        }
        self.tokens_for(client, grant, None, base, false).await
    }

    /// The tokens of `grant`: an access token, a refresh token when the scope holds
    /// offline_access or online_access, an id_token (on a code) when it holds openid.
    async fn tokens_for(
        &self,
        client: &Client,
        mut grant: Grant,
        nonce: Option<String>,
        base: &str,
        with_id_token: bool,
    ) -> anyhow::Result<Result<Issued, Refusal>> {
        let user = match users::by_id(&self.db, grant.user_id).await? {
            Some(u) if u.active => u,
            _ => return Ok(Err(grant_error("the user may no longer sign in"))),
        };
        let req = TokenRequest {
            client_id: client.client_id.clone(),
            scope: grant.scope.clone(),
            user: Some(user.email.clone()),
            patient: grant.patient.clone(),
            encounter: grant.encounter.clone(),
            expires_in: TOKEN_LIFETIME,
            audience: base.to_owned(),
        };
        let claims = match granted(client, Some(&user), &req) {
            Ok(c) => c,
            Err(Denied::InvalidScope(why)) => return Ok(Err(Refusal::InvalidScope(why))),
            Err(_) => return Ok(Err(grant_error("the client or user is gone"))),
        };
        let access_token = self.issue_in(&claims, Some(&grant.family)).await?;
        let scopes = Scopes::parse(&claims.scope);
        let online = scopes.has("online_access") && !scopes.has("offline_access");
        let refresh_token = if scopes.has("offline_access") || online {
            let t = keys::random_token::<32>()?;
            if !online {
                grant.session_hash = None;
            }
            grant.scope = claims.scope.clone();
            let expires = grant.expires_at.unwrap_or_else(Utc::now);
            codes::add_refresh(&self.db, &t, &grant, expires).await?;
            Some(t)
        } else {
            None
        };
        // An id_token whenever openid is granted; fhirUser in it when asked for and known.
        let fhir_user = user
            .fhir_user
            .as_ref()
            .filter(|_| scopes.has("fhirUser") || scopes.has("profile"))
            .map(|who| format!("{}/{who}", base.trim_end_matches('/')));
        let id_token = if with_id_token && scopes.has("openid") {
            Some(
                self.id_token(&IdClaims {
                    iss: base.trim_end_matches('/').to_owned(),
                    sub: user.id.to_string(),
                    aud: client.client_id.clone(),
                    exp: claims.exp,
                    iat: claims.iat,
                    nonce,
                    fhir_user,
                })
                .await?,
            )
        } else {
            None
        };
        // A reuse detected meanwhile (by any process) revoked the family: what was just issued
        // goes with it.
        if codes::family_revoked(&self.db, &grant.family).await? {
            self.revoke_family(&grant.family).await?;
            return Ok(Err(grant_error("the grant was revoked")));
        }
        Ok(Ok(Issued {
            access_token,
            claims,
            refresh_token,
            id_token,
            launched: grant.launched,
        }))
    }
}

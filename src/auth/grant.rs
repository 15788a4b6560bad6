//! What a client is granted: the scopes it asks for, within the scopes it is registered for,
//! made into the claims of an access token.

use super::records::{self, Client};
use super::scope::{Context, Scopes};
use super::token::Claims;
use super::{keys, Auth, TOKEN_LIFETIME};

/// A request for a token, however it came (the token endpoint, the command line).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub client_id: String,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub expires_in: std::time::Duration,
    /// The FHIR base the token is for.
    pub audience: String,
}

/// Why no token is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No such client (or it was removed).
    UnknownClient,
    /// Nothing asked for is allowed, or the scopes need what the request lacks.
    InvalidScope(String),
}

impl Auth {
    /// Grants `req` for its client: the scopes asked for that the client's registration allows
    /// (see [`Scopes::intersect`]), for at most [`TOKEN_LIFETIME`].
    pub async fn grant(
        &self,
        req: &TokenRequest,
    ) -> anyhow::Result<Result<(String, Claims), Denied>> {
        let Some(client) = records::client(&self.db, &req.client_id).await? else {
            return Ok(Err(Denied::UnknownClient));
        };
        Ok(match granted(&client, req) {
            Ok(claims) => Ok((self.issue(&claims).await?, claims)),
            Err(d) => Err(d),
        })
    }
}

fn granted(client: &Client, req: &TokenRequest) -> Result<Claims, Denied> {
    let scopes = Scopes::parse(&req.scope).intersect(&Scopes::parse(&client.scope));
    if scopes.grants.is_empty() {
        return Err(Denied::InvalidScope(
            "none of the scopes asked for is one this client may be granted".into(),
        ));
    }
    let patient_scopes = scopes.grants.iter().any(|g| g.context == Context::Patient);
    if patient_scopes && req.patient.is_none() {
        return Err(Denied::InvalidScope(
            "patient/ scopes need a patient in context".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let lifetime = req.expires_in.min(TOKEN_LIFETIME).as_secs().max(1) as i64;
    Ok(Claims {
        iss: req.audience.clone(),
        aud: req.audience.clone(),
        sub: client.client_id.clone(),
        client_id: client.client_id.clone(),
        scope: scopes.to_string(),
        patient: req.patient.clone(),
        encounter: req.encounter.clone(),
        fhir_user: None,
        iat: now,
        exp: now + lifetime,
        jti: keys::random_token::<16>().map_err(|e| Denied::InvalidScope(e.to_string()))?,
    })
}

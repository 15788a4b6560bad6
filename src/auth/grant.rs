//! What a client is granted: the scopes it asks for, within the scopes it is registered for,
//! made into the claims of an access token.

use super::records::{self, Client};
use super::scope::{Context, Scopes};
use super::token::Claims;
use super::users::{self, User};
use super::{keys, Auth, TOKEN_LIFETIME};

/// A request for a token, however it came (the token endpoint, the command line).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub client_id: String,
    pub scope: String,
    /// The email of the user the token acts for.
    pub user: Option<String>,
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
    /// No such user, or one who may not sign in.
    UnknownUser,
    /// Nothing asked for is allowed, or the scopes need what the request lacks.
    InvalidScope(String),
}

impl Auth {
    /// Grants `req` for its client: the scopes asked for that the client's registration allows
    /// and, for a user, that the user's role allows (see [`Scopes::intersect`]), for at most
    /// [`TOKEN_LIFETIME`].
    pub async fn grant(
        &self,
        req: &TokenRequest,
    ) -> anyhow::Result<Result<(String, Claims), Denied>> {
        let Some(client) = records::client(&self.db, &req.client_id).await? else {
            return Ok(Err(Denied::UnknownClient));
        };
        let user = match &req.user {
            Some(email) => match users::by_email(&self.db, email).await? {
                Some(u) if u.active => Some(u),
                _ => return Ok(Err(Denied::UnknownUser)),
            },
            None => None,
        };
        Ok(match granted(&client, user.as_ref(), req) {
            Ok(claims) => Ok((self.issue(&claims).await?, claims)),
            Err(d) => Err(d),
        })
    }
}

/// The claims of a token for `req`, by `client`, acting for `user`.
pub(super) fn granted(
    client: &Client,
    user: Option<&User>,
    req: &TokenRequest,
) -> Result<Claims, Denied> {
    let mut scopes = Scopes::parse(&req.scope).intersect(&Scopes::parse(&client.scope));
    if let Some(u) = user {
        // A role bounds access to resources; `openid`, `launch` and the like are the client's.
        scopes.grants = scopes.intersect(&u.permissions).grants;
    } else {
        // Without a user, only system/ scopes mean anything.
        scopes.grants.retain(|g| g.context == Context::System);
    }
    // A user may sign in to an app for their identity alone (`openid fhirUser`).
    if scopes.grants.is_empty() && (user.is_none() || scopes.others.is_empty()) {
        return Err(Denied::InvalidScope(
            "none of the scopes asked for is one this client (and user) may be granted".into(),
        ));
    }
    // A patient's own account is always about that patient.
    let patient = match (user.and_then(|u| u.patient.clone()), &req.patient) {
        (Some(own), Some(asked)) if own != *asked => {
            return Err(Denied::InvalidScope(
                "a patient's account is for that patient only".into(),
            ))
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked.clone(),
    };
    let patient_scopes = scopes.grants.iter().any(|g| g.context == Context::Patient);
    if patient_scopes && patient.is_none() {
        return Err(Denied::InvalidScope(
            "patient/ scopes need a patient in context".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let lifetime = req.expires_in.min(TOKEN_LIFETIME).as_secs().max(1) as i64;
    Ok(Claims {
        iss: req.audience.clone(),
        aud: req.audience.clone(),
        sub: user.map_or_else(|| client.client_id.clone(), |u| u.id.to_string()),
        client_id: client.client_id.clone(),
        scope: scopes.to_string(),
        patient,
        encounter: req.encounter.clone(),
        fhir_user: user.and_then(|u| u.fhir_user.clone()),
        iat: now,
        exp: now + lifetime,
        jti: keys::random_token::<16>().map_err(|e| Denied::InvalidScope(e.to_string()))?,
    })
}

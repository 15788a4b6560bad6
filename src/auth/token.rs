//! Access tokens: JWTs the server signs (ES256) and verifies, and a cache of the ones verified.

use super::keys::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The FHIR base the token is for.
    pub aud: String,
    /// The user (`Practitioner/x`, `Patient/y`, a user id) or, with no user, the client.
    pub sub: String,
    pub client_id: String,
    /// The granted scopes.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a token is refused (each a 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
    WrongAudience,
    Revoked,
}

impl Refusal {
    pub fn describe(&self) -> &'static str {
        match self {
            Refusal::Malformed => "the access token is not a token of this server",
            Refusal::UnknownKey => "the access token names a key this server does not have",
            Refusal::BadSignature => "the access token's signature is not valid",
            Refusal::Expired => "the access token has expired",
            Refusal::WrongAudience => "the access token is for another server",
            Refusal::Revoked => "the access token was revoked",
        }
    }
}

/// Signs `claims` with `key`.
pub fn sign(claims: &Claims, key: &SigningKey) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .map_err(|e| anyhow::anyhow!("signing a token: {e}"))
}

/// Checks a token's signature with the key its header names (only ES256 is accepted: `none`,
/// HS256 and every other algorithm are refused before any key is used), its expiry, and its
/// audience.
pub fn check(
    token: &str,
    key_of: impl Fn(&str) -> Option<DecodingKey>,
    audience: &str,
    now: i64,
) -> Result<Claims, Refusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    if header.alg != Algorithm::ES256 {
        return Err(Refusal::Malformed);
    }
    let kid = header.kid.ok_or(Refusal::UnknownKey)?;
    let key = key_of(&kid).ok_or(Refusal::UnknownKey)?;
    let mut v = Validation::new(Algorithm::ES256);
    // Expiry and audience are checked below, against this server's clock and base.
    v.validate_exp = false;
    v.validate_aud = false;
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => Refusal::BadSignature,
            _ => Refusal::Malformed,
        }
    })?;
    let claims = data.claims;
    if claims.exp <= now {
        return Err(Refusal::Expired);
    }
    if claims.aud.trim_end_matches('/') != audience.trim_end_matches('/') {
        return Err(Refusal::WrongAudience);
    }
    Ok(claims)
}

/// Tokens already verified, by the SHA-256 of their text, until they expire: a request with a
/// token seen before costs a hash and a lookup, not a signature check.
#[derive(Default)]
pub struct Verified {
    map: Mutex<HashMap<[u8; 32], Arc<Claims>>>,
}

/// The most tokens the cache holds; past it, expired ones are dropped, then all.
const CACHE_LIMIT: usize = 10_000;

impl Verified {
    pub fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn get(&self, hash: &[u8; 32], now: i64) -> Option<Arc<Claims>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash).filter(|c| c.exp > now).cloned()
    }

    pub fn put(&self, hash: [u8; 32], claims: Arc<Claims>, now: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_LIMIT {
            map.retain(|_, c| c.exp > now);
            if map.len() >= CACHE_LIMIT {
                map.clear();
            }
        }
        map.insert(hash, claims);
    }
}

#[cfg(test)]
mod tests;

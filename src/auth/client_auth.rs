//! Client authentication at the token, introspection and revocation endpoints: a secret
//! (`client_secret_basic`), or a signed assertion (`private_key_jwt`, RFC 7523, as SMART
//! Backend Services asks: RS384 or ES384, iss = sub = client_id, aud = the token endpoint, exp
//! at most five minutes ahead, a jti never used before), checked against the keys the client
//! registered or those at its JWKS URL.

use super::records::{self, Client};
use super::{password, Auth};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The assertion type of `private_key_jwt`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live.
const MAX_ASSERTION_LIFETIME: i64 = 300;

/// How a client says who it is.
pub enum Credentials<'a> {
    /// HTTP Basic: client id and secret.
    Secret { client_id: &'a str, secret: &'a str },
    /// A client assertion (its type already checked).
    Assertion(&'a str),
}

/// Why a client is not authenticated (`invalid_client`), in words for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated(pub String);

fn no(why: impl Into<String>) -> Unauthenticated {
    Unauthenticated(why.into())
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    exp: i64,
    jti: String,
}

impl Auth {
    /// The client `credentials` prove to be; an assertion's audience is one of `endpoints`
    /// (the token endpoint, or the endpoint called).
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
        endpoints: &[&str],
    ) -> anyhow::Result<Result<Client, Unauthenticated>> {
        match credentials {
            Credentials::Secret { client_id, secret } => {
                let client = records::client(&self.db, client_id).await?;
                let hash = client.as_ref().and_then(|c| c.secret_hash.clone());
                // (An unknown client costs a hash too, so that timing tells nothing.)
                let phc = hash.clone().unwrap_or_else(|| DUMMY_HASH.to_owned());
                let ok = password::verify(secret.to_owned(), phc).await && hash.is_some();
                Ok(match (client, ok) {
                    (Some(c), true) => Ok(c),
                    _ => Err(no("the client id or secret is wrong")),
                })
            }
            Credentials::Assertion(jwt) => self.check_assertion(jwt, endpoints).await,
        }
    }

    async fn check_assertion(
        &self,
        jwt: &str,
        endpoints: &[&str],
    ) -> anyhow::Result<Result<Client, Unauthenticated>> {
        let Ok(header) = jsonwebtoken::decode_header(jwt) else {
            return Ok(Err(no("the client assertion is not a JWT")));
        };
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Ok(Err(no("a client assertion is signed with RS384 or ES384")));
        }
        // Whose it claims to be, read before its signature is checked, only to find the keys.
        let Ok(claimed) = jsonwebtoken::dangerous::insecure_decode_claims::<AssertionClaims>(jwt)
        else {
            return Ok(Err(no(
                "the client assertion lacks iss, sub, aud, exp or jti",
            )));
        };
        let Some(client) = records::client(&self.db, &claimed.iss).await? else {
            return Ok(Err(no(
                "the client assertion's issuer is no registered client",
            )));
        };
        let set = match (client.jwks.as_deref(), client.jwks_url.as_deref()) {
            (Some(jwks), _) => match serde_json::from_str::<JwkSet>(jwks) {
                Ok(set) => std::sync::Arc::new(set),
                Err(_) => return Ok(Err(no("this client's registered keys cannot be read"))),
            },
            (None, Some(url)) => match self.client_keys.keys(url, header.kid.as_deref()).await {
                Ok(set) => set,
                Err(why) => {
                    // The cause stays in the log: told to the caller, it would map what the
                    // server can reach.
                    tracing::warn!(client = %client.client_id, reason = %why, "a client's JWKS URL could not be read");
                    return Ok(Err(no(
                        "this client's keys could not be read from its JWKS URL",
                    )));
                }
            },
            (None, None) => return Ok(Err(no("this client has registered no keys"))),
        };
        let key = match header.kid.as_deref() {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        };
        let Some(key) = key.and_then(|k| DecodingKey::from_jwk(k).ok()) else {
            return Ok(Err(no(
                "no registered key of this client has the assertion's kid",
            )));
        };
        let mut v = Validation::new(header.alg);
        v.set_audience(endpoints);
        v.set_issuer(&[&client.client_id]);
        v.sub = Some(client.client_id.clone());
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud", "jti"]);
        let claims = match jsonwebtoken::decode::<AssertionClaims>(jwt, &key, &v) {
            Ok(d) => d.claims,
            Err(e) => return Ok(Err(no(format!("the client assertion is not valid: {e}")))),
        };
        let now = chrono::Utc::now().timestamp();
        if claims.exp > now + MAX_ASSERTION_LIFETIME {
            return Ok(Err(no(
                "a client assertion expires at most five minutes ahead",
            )));
        }
        if claims.iss != claims.sub || claims.aud.is_null() {
            return Ok(Err(no(
                "a client assertion's iss and sub are the client id",
            )));
        }
        if !records::remember_assertion(&self.db, &client.client_id, &claims.jti, claims.exp)
            .await?
        {
            return Ok(Err(no("this client assertion was used before")));
        }
        Ok(Ok(client))
    }
}

/// An argon2id hash of nothing anyone knows, checked for unknown clients.
pub(super) const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$mrSC9h0gpDXEJNFNZBoa8oH7JZxjWORbVFHOClQ7a5E";

#[cfg(test)]
mod tests {
    #[test]
    fn the_hash_checked_for_unknown_clients_is_a_real_argon2id_hash() {
        let h = argon2::password_hash::PasswordHash::new(super::DUMMY_HASH).unwrap();
        assert_eq!(h.algorithm.as_str(), "argon2id");
    }
}

//! A backend client's side of `private_key_jwt`: its ES384 key, and the assertions it signs.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// An ES384 key of a backend client: its signing key and public JWK (kid `k1`).
pub fn backend_key() -> (EncodingKey, Value) {
    use p384::pkcs8::EncodePrivateKey;
    let secret = loop {
        if let Ok(k) = p384::SecretKey::from_slice(&expediente::auth::keys::random::<48>().unwrap())
        {
            break k;
        }
    };
    let enc = EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes());
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, Algorithm::ES384).unwrap();
    jwk.common.key_id = Some("k1".into());
    (enc, serde_json::to_value(&jwk).unwrap())
}

pub fn assertion(key: &EncodingKey, alg: Algorithm, claims: Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some("k1".into());
    h.typ = Some("JWT".into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

/// The form a backend client posts to the token endpoint at `token_url`, with a fresh
/// assertion for `client_id` signed by `key`.
pub fn token_form(
    client_id: &str,
    token_url: &str,
    key: &EncodingKey,
    scope: &str,
) -> Vec<(String, String)> {
    let now = chrono::Utc::now().timestamp();
    let jti = uuid::Uuid::new_v4().to_string();
    let claims =
        json!({"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 120, "jti": jti});
    vec![
        ("grant_type".into(), "client_credentials".into()),
        ("scope".into(), scope.into()),
        (
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        (
            "client_assertion".into(),
            assertion(key, Algorithm::ES384, claims),
        ),
    ]
}

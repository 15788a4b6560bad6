//! OpenID Connect: the RSA key that signs id_tokens (RS256, as OIDC and SMART require; access
//! tokens stay ES256), made the first time an id_token is asked for and kept sealed beside the
//! access token keys, and the id_token itself.

use super::keys::{random_token, KeyEncryptionKey, StoredKey};
use super::{records, Auth};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The algorithm of id_tokens.
pub const ID_TOKEN_ALG: &str = "RS256";

/// The RSA key that signs id_tokens.
#[derive(Clone)]
pub struct IdKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public: Jwk,
}

impl IdKey {
    /// A new 2048-bit key and its PKCS#1 form.
    fn generate() -> anyhow::Result<(IdKey, Vec<u8>)> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let mut rng = crypto_common::getrandom::SysRng;
        let key = rsa::PrivateKey::new(&mut rng, 2048)
            .map_err(|e| anyhow::anyhow!("making an RSA key: {e}"))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| anyhow::anyhow!("encoding an RSA key: {e}"))?;
        let der = der.as_bytes().to_vec();
        Ok((IdKey::from_der(random_token::<12>()?, &der)?, der))
    }

    fn from_der(kid: String, der: &[u8]) -> anyhow::Result<IdKey> {
        let encoding = EncodingKey::from_rsa_der(der);
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|e| anyhow::anyhow!("deriving a public key: {e}"))?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(IdKey {
            kid,
            encoding,
            public,
        })
    }

    /// A new key, sealed with `kek` for the database.
    pub fn generate_sealed(kek: &KeyEncryptionKey) -> anyhow::Result<StoredKey> {
        let (key, der) = IdKey::generate()?;
        Ok(StoredKey {
            kid: key.kid.clone(),
            alg: ID_TOKEN_ALG.into(),
            public_jwk: serde_json::to_string(&key.public)?,
            private_key: kek.seal(&der)?,
        })
    }

    /// A stored key, opened with `kek`.
    pub fn open(kek: &KeyEncryptionKey, stored: &StoredKey) -> anyhow::Result<IdKey> {
        let der = kek.open(&stored.private_key)?;
        IdKey::from_der(stored.kid.clone(), &der)
    }
}

/// The claims of an id_token (OIDC Core §2, SMART's `fhirUser`).
#[derive(Debug, Clone, Serialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The client id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The absolute URL of the user's Practitioner or Patient.
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

impl Auth {
    /// Signs an id_token, making the RSA key first if the database has none.
    pub async fn id_token(&self, claims: &IdClaims) -> anyhow::Result<String> {
        let key = match self.ring().id_signing.clone() {
            Some(k) => k,
            None => self.make_id_key().await?,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| anyhow::anyhow!("signing an id_token: {e}"))
    }

    /// The RSA key: one process makes it at a time (it takes a moment), and one made by another
    /// process in the meantime is taken instead.
    async fn make_id_key(&self) -> anyhow::Result<IdKey> {
        let _one = self.id_key_made.lock().await;
        self.reload().await?;
        if let Some(k) = self.ring().id_signing.clone() {
            return Ok(k);
        }
        let kek = self.kek.clone();
        let stored = tokio::task::spawn_blocking(move || IdKey::generate_sealed(&kek)).await??;
        records::add_signing_key(&self.db, &stored).await?;
        self.reload().await?;
        self.ring()
            .id_signing
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no id_token key after making one"))
    }
}

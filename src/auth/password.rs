//! Passwords and client secrets, kept as argon2id hashes (PHC strings). Hashing takes tens of
//! milliseconds of CPU on purpose, so it runs on a blocking thread, off the async executor.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id with 19 MiB of memory, 2 passes, 1 lane: the OWASP minimum for argon2id.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `secret`'s hash, with a fresh salt.
pub async fn hash(secret: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt_bytes = super::keys::random::<16>()?;
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("a salt: {e}"))?;
        hasher()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))
    })
    .await?
}

/// Whether `secret` matches the PHC string `phc` (a malformed one matches nothing).
pub async fn verify(secret: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|h| hasher().verify_password(secret.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_hash_matches_its_secret_only() {
        let h = super::hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(super::verify("correct horse".into(), h.clone()).await);
        assert!(!super::verify("correct horsf".into(), h.clone()).await);
        assert!(!super::verify("x".into(), "not a hash".into()).await);
        assert_ne!(
            h,
            super::hash("correct horse".into()).await.unwrap(),
            "salted"
        );
    }
}

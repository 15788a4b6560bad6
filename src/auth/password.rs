//! Passwords and client secrets, kept as argon2id hashes (PHC strings). Hashing takes tens of
//! milliseconds of CPU and 19 MiB of memory on purpose, so it runs on a blocking thread, off the
//! async executor, and at most one per core at a time: a flood of sign-ins or client
//! authentications waits its turn instead of exhausting the memory.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// The hashes computed at this moment, and the most seen at once.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// One permit per core.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(limit()))
}

/// How many hashes may run at once.
pub fn limit() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The most hashes that ran at once in this process.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Gives a permit back when the hash that took it ends (or panics).
struct Returned;

impl Drop for Returned {
    fn drop(&mut self) {
        permits().add_permits(1);
    }
}

/// Runs `f` (a hash) on a blocking thread once a permit is free.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    // The permit goes with the hash: a request dropped while it runs does not free it early.
    permits().acquire().await?.forget();
    let permit = Returned;
    Ok(tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        let out = f();
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await?)
}

/// argon2id with 19 MiB of memory, 2 passes, 1 lane: the OWASP minimum for argon2id.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `secret`'s hash, with a fresh salt.
pub async fn hash(secret: String) -> anyhow::Result<String> {
    hashing(move || {
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
    hashing(move || {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_cores() {
        let h = super::hash("correct horse".into()).await.unwrap();
        let all = (0..4 * super::limit() + 4).map(|i| {
            let h = h.clone();
            tokio::spawn(async move { super::verify(format!("guess {i}"), h).await })
        });
        for v in futures_util::future::join_all(all).await {
            assert!(!v.unwrap());
        }
        assert!(super::peak() >= 1);
        assert!(
            super::peak() <= super::limit(),
            "{} > {}",
            super::peak(),
            super::limit()
        );
        // Requests dropped while their hash runs (a client that leaves) keep its permit until
        // the hash ends: the next ones wait.
        for _ in 0..3 {
            let dropped: Vec<_> = (0..2 * super::limit())
                .map(|i| {
                    let h = h.clone();
                    tokio::spawn(async move { super::verify(format!("gone {i}"), h).await })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            for d in dropped {
                d.abort();
            }
        }
        let after = (0..2 * super::limit()).map(|i| {
            let h = h.clone();
            tokio::spawn(async move { super::verify(format!("next {i}"), h).await })
        });
        futures_util::future::join_all(after).await;
        assert!(
            super::peak() <= super::limit(),
            "{} > {}",
            super::peak(),
            super::limit()
        );
    }
}

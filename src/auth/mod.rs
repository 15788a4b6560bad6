//! Authorization: SMART scopes, the server's signing keys and its access tokens.
//!
//! [`Auth`] holds what every server process needs to issue and check tokens: the signing keys
//! (kept in the database, so that every process on one database signs and verifies alike), the
//! cache of verified tokens, and the revocations, which every process follows from the
//! database.

pub mod access;
pub mod authorize;
pub mod client_auth;
pub mod codes;
pub mod consent;
pub mod exchange;
pub mod grant;
pub mod jwks_url;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod records;
pub mod scope;
pub mod sessions;
pub mod token;
pub mod users;

use crate::store::Db;
use jsonwebtoken::DecodingKey;
use keys::{KeyEncryptionKey, SigningKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use token::{Claims, Refusal, Verified};

/// How often every process reads the revocations and the new keys made by the others.
pub const REVOCATION_POLL: Duration = Duration::from_secs(1);

/// Every how many polls a process forgets the expired tokens, revocations and assertions.
const FORGET_EVERY: u64 = 600;

/// How long an access token lives.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The keys as loaded: the one that signs, and every one still published.
struct KeyRing {
    signing: SigningKey,
    /// The RSA key of id_tokens, once one was made.
    id_signing: Option<oidc::IdKey>,
    published: HashMap<String, (jsonwebtoken::jwk::Jwk, DecodingKey)>,
}

impl KeyRing {
    /// The key `kid` if it is one that signs access tokens (never the id_token key).
    fn access_key(&self, kid: &str) -> Option<DecodingKey> {
        let (jwk, key) = self.published.get(kid)?;
        let ec = matches!(
            jwk.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)
        );
        ec.then(|| key.clone())
    }
}

pub struct Auth {
    db: Db,
    kek: KeyEncryptionKey,
    ring: RwLock<Arc<KeyRing>>,
    verified: Verified,
    /// The revoked jti this process knows of (until their tokens expire), and the last
    /// revocation it has read.
    revoked: RwLock<(i64, HashMap<String, i64>)>,
    /// Whether this process made the database's first signing key (its first start).
    new: bool,
    /// When the keys were last read because a token named one unknown here: at most once per
    /// [`REVOCATION_POLL`], so that forged kids cannot make every request read the database.
    unknown_kid_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// The key sets of clients registered with a JWKS URL.
    client_keys: jwks_url::JwksCache,
    /// The origins of the registered clients' redirect URIs: the browser apps that may call.
    origins: RwLock<Arc<std::collections::HashSet<String>>>,
    /// Held while this process makes the id_token key.
    id_key_made: tokio::sync::Mutex<()>,
}

impl Auth {
    /// Loads the keys, making the first one when the database has none.
    pub async fn load(db: Db, kek: KeyEncryptionKey) -> anyhow::Result<Auth> {
        let ring = Self::read_ring(&db, &kek).await?;
        let new = ring.is_none();
        let ring = match ring {
            Some(r) => r,
            None => {
                let (_, stored) = SigningKey::generate_sealed(&kek)?;
                records::add_signing_key(&db, &stored).await?;
                Self::read_ring(&db, &kek)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no signing key after making one"))?
            }
        };
        let auth = Auth {
            db,
            kek,
            ring: RwLock::new(Arc::new(ring)),
            verified: Verified::default(),
            revoked: RwLock::new((0, HashMap::new())),
            new,
            unknown_kid_read: std::sync::Mutex::new(None),
            client_keys: Default::default(),
            origins: Default::default(),
            id_key_made: Default::default(),
        };
        auth.follow_revocations().await?;
        auth.follow_clients().await?;
        Ok(auth)
    }

    /// The keys in the database: None when there is none that signs.
    async fn read_ring(db: &Db, kek: &KeyEncryptionKey) -> anyhow::Result<Option<KeyRing>> {
        let now = chrono::Utc::now();
        let mut signing = None;
        let mut id_signing = None;
        let mut published = HashMap::new();
        for (stored, retired) in records::signing_keys(db).await? {
            // A retired key is published while tokens it signed may still be alive.
            let alive = retired.is_none_or(|r| r + TOKEN_LIFETIME > now);
            if !alive {
                continue;
            }
            if retired.is_none() && stored.alg == oidc::ID_TOKEN_ALG && id_signing.is_none() {
                id_signing = Some(oidc::IdKey::open(kek, &stored)?);
            } else if retired.is_none() && signing.is_none() && stored.alg != oidc::ID_TOKEN_ALG {
                signing = Some(SigningKey::open(kek, &stored)?);
            }
            let (jwk, key) = keys::decoding_key(&stored.public_jwk)?;
            published.insert(stored.kid.clone(), (jwk, key));
        }
        Ok(signing.map(|signing| KeyRing {
            signing,
            id_signing,
            published,
        }))
    }

    /// The database of the authorization tables.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether the database had no signing key before this process made one.
    pub fn is_new(&self) -> bool {
        self.new
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the keys again (after a rotation, here or by another process).
    pub async fn reload(&self) -> anyhow::Result<()> {
        if let Some(r) = Self::read_ring(&self.db, &self.kek).await? {
            *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
        }
        Ok(())
    }

    /// A new signing key (and a new id_token key, once there is one); the old ones stay
    /// published until their tokens have expired.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        let (key, stored) = SigningKey::generate_sealed(&self.kek)?;
        records::add_signing_key(&self.db, &stored).await?;
        if self.ring().id_signing.is_some() {
            let kek = self.kek.clone();
            let stored =
                tokio::task::spawn_blocking(move || oidc::IdKey::generate_sealed(&kek)).await??;
            records::add_signing_key(&self.db, &stored).await?;
        }
        self.reload().await?;
        Ok(key.kid)
    }

    /// The published keys, as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let ring = self.ring();
        let mut keys: Vec<_> = ring.published.values().map(|(jwk, _)| jwk).collect();
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        serde_json::json!({ "keys": keys })
    }

    /// Signs and records a token with `claims`.
    pub async fn issue(&self, claims: &Claims) -> anyhow::Result<String> {
        self.issue_in(claims, None).await
    }

    /// Signs and records a token of the code or refresh token family `family`.
    pub async fn issue_in(&self, claims: &Claims, family: Option<&str>) -> anyhow::Result<String> {
        let token = token::sign(claims, &self.ring().signing)?;
        records::record_token(&self.db, claims, family).await?;
        Ok(token)
    }

    /// The claims of a valid token for `audience`: from the cache, or checked (reading the
    /// keys again once when it names one this process does not know yet).
    pub async fn verify(&self, token: &str, audience: &str) -> Result<Arc<Claims>, Refusal> {
        let now = chrono::Utc::now().timestamp();
        let hash = Verified::hash(token);
        let claims = match self.verified.get(&hash, now) {
            Some(c) => c,
            None => {
                let ring = self.ring();
                let key_of = |kid: &str| ring.access_key(kid);
                let checked = match token::check(token, key_of, audience, now) {
                    Err(Refusal::UnknownKey) if self.may_read_keys_again() => {
                        let _ = self.reload().await;
                        let ring = self.ring();
                        let key_of = |kid: &str| ring.access_key(kid);
                        token::check(token, key_of, audience, now)?
                    }
                    other => other?,
                };
                let c = Arc::new(checked);
                self.verified.put(hash, c.clone(), now);
                c
            }
        };
        if claims.aud.trim_end_matches('/') != audience.trim_end_matches('/') {
            return Err(Refusal::WrongAudience);
        }
        if self.is_revoked(&claims.jti) {
            return Err(Refusal::Revoked);
        }
        Ok(claims)
    }

    /// Whether an unknown kid may make this process read the keys again now.
    fn may_read_keys_again(&self) -> bool {
        let mut last = self
            .unknown_kid_read
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REVOCATION_POLL) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Reads the keys again when another process has made a new one (`keys rotate`).
    pub async fn follow_keys(&self) -> anyhow::Result<()> {
        let current = records::current_signing_keys(&self.db).await?;
        let ring = self.ring();
        let mut mine: Vec<&str> = std::iter::once(ring.signing.kid.as_str())
            .chain(ring.id_signing.as_ref().map(|k| k.kid.as_str()))
            .collect();
        mine.sort_unstable();
        if current.iter().map(String::as_str).ne(mine) {
            self.reload().await?;
        }
        Ok(())
    }

    /// Reads the registered clients' origins again (a client added or removed by any process).
    pub async fn follow_clients(&self) -> anyhow::Result<()> {
        let origins = records::clients(&self.db)
            .await?
            .iter()
            .flat_map(|c| c.redirect_uris.iter())
            .filter_map(|uri| origin_of(uri))
            .collect();
        *self.origins.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(origins);
        Ok(())
    }

    /// Whether `origin` (`https://app.example`) is that of a registered client's redirect URI.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(origin)
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let r = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        r.1.contains_key(jti)
    }

    /// Revokes a token by its jti (of `client_id` when given), here at once and in every other
    /// process when it next follows the revocations; false when there is no such token.
    pub async fn revoke(&self, jti: &str, client_id: Option<&str>) -> anyhow::Result<bool> {
        let done = records::revoke(&self.db, jti, client_id).await?;
        if done {
            self.follow_revocations().await?;
        }
        Ok(done)
    }

    /// Reads the revocations made since the last read (by any process).
    pub async fn follow_revocations(&self) -> anyhow::Result<()> {
        let since = self.revoked.read().unwrap_or_else(|p| p.into_inner()).0;
        let new = records::revocations_since(&self.db, since).await?;
        let now = chrono::Utc::now().timestamp();
        let mut r = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        if let Some((last, _, _)) = new.last() {
            r.0 = r.0.max(*last);
            r.1.extend(new.into_iter().map(|(_, jti, exp)| (jti, exp)));
        }
        // An expired token is refused for its expiry: its revocation need not be kept.
        r.1.retain(|_, exp| *exp > now);
        Ok(())
    }

    /// Forgets the tokens, sessions, codes and sign-in failures that no longer count.
    pub async fn forget_expired(&self) -> anyhow::Result<()> {
        records::forget_expired(&self.db).await?;
        let window = chrono::Duration::from_std(authorize::THROTTLE_WINDOW)?;
        sessions::forget_expired(&self.db, chrono::Utc::now() - window).await?;
        Ok(())
    }

    /// Follows the revocations, the signing keys and the clients' origins every `every` until the
    /// process ends.
    pub fn follow_in_background(self: &Arc<Self>, every: Duration) {
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            for tick in 1u64.. {
                tokio::time::sleep(every).await;
                let Some(auth) = auth.upgrade() else { break };
                if tick % FORGET_EVERY == 0 {
                    if let Err(e) = auth.forget_expired().await {
                        tracing::warn!(error = %e, "forgetting expired tokens failed");
                    }
                }
                if let Err(e) = auth.follow_revocations().await {
                    tracing::warn!(error = %e, "reading the token revocations failed");
                }
                if let Err(e) = auth.follow_keys().await {
                    tracing::warn!(error = %e, "reading the signing keys failed");
                }
                if let Err(e) = auth.follow_clients().await {
                    tracing::warn!(error = %e, "reading the registered clients failed");
                }
            }
        });
    }
}

/// The origin (scheme, host, port) of a URL, as a browser sends it in `Origin`.
fn origin_of(uri: &str) -> Option<String> {
    let url = reqwest::Url::parse(uri).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

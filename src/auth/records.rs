//! The authorization tables: signing keys, issued tokens and their revocations, OAuth clients.
//! The one module of `auth` that writes SQL.

use super::keys::StoredKey;
use super::token::Claims;
use crate::store::{Arg, Db, StoreError};
use chrono::{DateTime, TimeZone, Utc};

fn at(secs: i64) -> Arg {
    Arg::Timestamp(Utc.timestamp_opt(secs, 0).single())
}

/// Every signing key, newest first, with when it was retired (None: it signs).
pub async fn signing_keys(db: &Db) -> Result<Vec<(StoredKey, Option<DateTime<Utc>>)>, StoreError> {
    let rows = db
        .fetch_all(
            "SELECT kid, alg, public_jwk, private_key, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                StoredKey {
                    kid: r.string("kid")?,
                    alg: r.string("alg")?,
                    public_jwk: r.string("public_jwk")?,
                    private_key: r.bytes("private_key")?.unwrap_or_default(),
                },
                r.opt_timestamp("retired_at")?,
            ))
        })
        .collect()
}

/// The kids of the keys that sign (one per algorithm), in order.
pub async fn current_signing_keys(db: &Db) -> Result<Vec<String>, StoreError> {
    let rows = db
        .fetch_all(
            "SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY kid",
            &[],
        )
        .await?;
    rows.iter().map(|r| r.string("kid")).collect()
}

/// Stores `key` as the one that signs with its algorithm, retiring the others of that
/// algorithm, in one transaction.
pub async fn add_signing_key(db: &Db, key: &StoredKey) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let now = tx.now().await?;
    tx.execute(
        "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL AND alg = ?",
        &[now.into(), key.alg.as_str().into()],
    )
    .await?;
    tx.execute(
        "INSERT INTO signing_keys (kid, alg, public_jwk, private_key, created_at) \
         VALUES (?, ?, ?, ?, ?)",
        &[
            key.kid.as_str().into(),
            key.alg.as_str().into(),
            key.public_jwk.as_str().into(),
            Arg::Bytes(Some(key.private_key.clone())),
            now.into(),
        ],
    )
    .await?;
    tx.commit().await
}

/// Records an issued token (for introspection and revocation).
/// `family`: the code or refresh token family it belongs to.
pub async fn record_token(db: &Db, c: &Claims, family: Option<&str>) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO issued_tokens (jti, client_id, subject, scope, patient, encounter, \
         fhir_user, issued_at, expires_at, family) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            c.jti.as_str().into(),
            c.client_id.as_str().into(),
            c.sub.as_str().into(),
            c.scope.as_str().into(),
            c.patient.clone().into(),
            c.encounter.clone().into(),
            c.fhir_user.clone().into(),
            at(c.iat),
            at(c.exp),
            family.map(str::to_owned).into(),
        ],
    )
    .await
    .map(|_| ())
}

/// Revokes the token `jti` (of `client_id` when given); false when there is no such token.
pub async fn revoke(db: &Db, jti: &str, client_id: Option<&str>) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let now = tx.now().await?;
    let row = tx
        .fetch_optional(
            "SELECT expires_at, client_id FROM issued_tokens WHERE jti = ?",
            &[jti.into()],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    if client_id.is_some_and(|c| row.text("client_id").ok().flatten().as_deref() != Some(c)) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE issued_tokens SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL",
        &[now.into(), jti.into()],
    )
    .await?;
    tx.execute(
        "INSERT INTO token_revocations (jti, expires_at) VALUES (?, ?)",
        &[jti.into(), row.timestamp("expires_at")?.into()],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The revocations after `seq`, in order: (seq, jti, the token's expiry as a Unix time).
pub async fn revocations_since(db: &Db, seq: i64) -> Result<Vec<(i64, String, i64)>, StoreError> {
    let rows = db
        .fetch_all(
            "SELECT seq, jti, expires_at FROM token_revocations WHERE seq > ? ORDER BY seq",
            &[seq.into()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.bigint("seq")?,
                r.string("jti")?,
                r.timestamp("expires_at")?.timestamp(),
            ))
        })
        .collect()
}

/// Forgets the tokens, revocations and client assertions that have expired: nothing can use
/// them any more.
pub async fn forget_expired(db: &Db) -> Result<(), StoreError> {
    let now = Utc::now();
    for table in ["issued_tokens", "token_revocations", "client_assertions"] {
        db.execute(
            &format!("DELETE FROM {table} WHERE expires_at < ?"),
            &[now.into()],
        )
        .await?;
    }
    Ok(())
}

/// A registered OAuth client.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: Option<String>,
    /// `public`, `secret`, `jwks` or `jwks_url`.
    pub kind: String,
    pub secret_hash: Option<String>,
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scope: String,
}

pub async fn add_client(db: &Db, c: &Client) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO oauth_clients (client_id, name, kind, secret_hash, jwks, jwks_url, \
         redirect_uris, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            c.client_id.as_str().into(),
            c.name.clone().into(),
            c.kind.as_str().into(),
            c.secret_hash.clone().into(),
            c.jwks.clone().into(),
            c.jwks_url.clone().into(),
            c.redirect_uris.join(" ").into(),
            c.scope.as_str().into(),
        ],
    )
    .await
    .map(|_| ())
}

const CLIENT_COLUMNS: &str =
    "client_id, name, kind, secret_hash, jwks, jwks_url, redirect_uris, scope";

fn client_of(r: &crate::store::Row) -> Result<Client, StoreError> {
    Ok(Client {
        client_id: r.string("client_id")?,
        name: r.text("name")?,
        kind: r.string("kind")?,
        secret_hash: r.text("secret_hash")?,
        jwks: r.text("jwks")?,
        jwks_url: r.text("jwks_url")?,
        redirect_uris: r
            .string("redirect_uris")?
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect(),
        scope: r.string("scope")?,
    })
}

/// The client `client_id`, unless it was removed.
pub async fn client(db: &Db, client_id: &str) -> Result<Option<Client>, StoreError> {
    let sql = format!(
        "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = ? AND removed_at IS NULL"
    );
    db.fetch_optional(&sql, &[client_id.into()])
        .await?
        .as_ref()
        .map(client_of)
        .transpose()
}

pub async fn clients(db: &Db) -> Result<Vec<Client>, StoreError> {
    let sql = format!(
        "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE removed_at IS NULL ORDER BY client_id"
    );
    db.fetch_all(&sql, &[])
        .await?
        .iter()
        .map(client_of)
        .collect()
}

/// Removes a client (its id stays taken); false when there was none.
pub async fn remove_client(db: &Db, client_id: &str) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE oauth_clients SET removed_at = {} WHERE client_id = ? AND removed_at IS NULL",
        db.dialect().now()
    );
    Ok(db.execute(&sql, &[client_id.into()]).await? > 0)
}

/// Remembers the jti of a client assertion until it expires: false when it was seen before
/// (by any process). Expired ones are forgotten on the way.
pub async fn remember_assertion(
    db: &Db,
    client_id: &str,
    jti: &str,
    exp: i64,
) -> Result<bool, StoreError> {
    let now = Utc::now();
    db.execute(
        "DELETE FROM client_assertions WHERE expires_at < ?",
        &[now.into()],
    )
    .await?;
    let inserted = db
        .execute(
            "INSERT INTO client_assertions (client_id, jti, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
            &[client_id.into(), jti.into(), at(exp)],
        )
        .await?;
    Ok(inserted == 1)
}

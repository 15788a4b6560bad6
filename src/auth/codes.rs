//! Authorization codes, refresh tokens and EHR launch contexts, each kept as the hash of its
//! secret, and the families they make: the tokens one consent yielded, revoked together when a
//! code or a refresh token is used twice.

use super::sessions::hash;
use crate::store::{Db, Row, StoreError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a consent granted, as a code or a refresh token carries it.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub family: String,
    pub client_id: String,
    pub user_id: Uuid,
    pub scope: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The browser session it was granted in (online_access lives as long as it does).
    pub session_hash: Option<String>,
    /// When a refresh token's family ends (every rotation keeps it).
    pub expires_at: Option<DateTime<Utc>>,
    /// An EHR launch: the clinic's application shows the patient.
    pub launched: bool,
}

/// A code, beside its grant.
#[derive(Debug, Clone, Default)]
pub struct Code {
    pub grant: Grant,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
}

/// What taking a code or refresh token found.
#[derive(Debug)]
pub enum Taken<T> {
    /// Unused and alive: now used.
    Fresh(T),
    /// Used before: the family it belongs to.
    Reused(String),
    /// Unknown or expired.
    Unknown,
}

pub async fn add_code(
    db: &Db,
    code: &str,
    c: &Code,
    expires: DateTime<Utc>,
) -> Result<(), StoreError> {
    let g = &c.grant;
    db.execute(
        "INSERT INTO authorization_codes (code_hash, family, client_id, redirect_uri, \
         code_challenge, scope, user_id, session_hash, patient, encounter, nonce, launched, \
         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            hash(code).into(),
            g.family.as_str().into(),
            g.client_id.as_str().into(),
            c.redirect_uri.as_str().into(),
            c.code_challenge.as_str().into(),
            g.scope.as_str().into(),
            g.user_id.into(),
            g.session_hash.clone().unwrap_or_default().into(),
            g.patient.clone().into(),
            g.encounter.clone().into(),
            c.nonce.clone().into(),
            Some(g.launched).into(),
            expires.into(),
        ],
    )
    .await
    .map(|_| ())
}

fn grant_of(r: &Row) -> Result<Grant, StoreError> {
    Ok(Grant {
        family: r.string("family")?,
        client_id: r.string("client_id")?,
        user_id: r.uuid("user_id")?,
        scope: r.string("scope")?,
        patient: r.text("patient")?,
        encounter: r.text("encounter")?,
        session_hash: r.text("session_hash")?.filter(|s| !s.is_empty()),
        expires_at: r.opt_timestamp("expires_at")?,
        launched: r.bool("launched")?.unwrap_or(false),
    })
}

/// Takes the code `code` of `client_id`: at most one caller, in any process, ever finds it
/// fresh. Another client's code is unknown to this one.
pub async fn take_code(db: &Db, code: &str, client_id: &str) -> Result<Taken<Code>, StoreError> {
    let h = hash(code);
    let now = Utc::now();
    let row = db
        .fetch_optional(
            "UPDATE authorization_codes SET used_at = ? \
             WHERE code_hash = ? AND client_id = ? AND used_at IS NULL AND expires_at > ? \
             AND family NOT IN (SELECT family FROM revoked_families) \
             RETURNING family, client_id, redirect_uri, code_challenge, scope, user_id, \
             session_hash, patient, encounter, nonce, launched, expires_at",
            &[now.into(), h.as_str().into(), client_id.into(), now.into()],
        )
        .await?;
    if let Some(r) = row {
        return Ok(Taken::Fresh(Code {
            grant: grant_of(&r)?,
            redirect_uri: r.string("redirect_uri")?,
            code_challenge: r.string("code_challenge")?,
            nonce: r.text("nonce")?,
        }));
    }
    reused(db, "authorization_codes", "code_hash", &h, client_id).await
}

/// The family of a secret of `client_id` used before, if it is one.
async fn reused<T>(
    db: &Db,
    table: &str,
    key: &str,
    h: &str,
    client_id: &str,
) -> Result<Taken<T>, StoreError> {
    let sql = format!(
        "SELECT family FROM {table} WHERE {key} = ? AND client_id = ? AND used_at IS NOT NULL"
    );
    Ok(
        match db
            .fetch_optional(&sql, &[h.into(), client_id.into()])
            .await?
        {
            Some(r) => Taken::Reused(r.string("family")?),
            None => Taken::Unknown,
        },
    )
}

pub async fn add_refresh(
    db: &Db,
    token: &str,
    g: &Grant,
    expires: DateTime<Utc>,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO refresh_tokens (token_hash, family, client_id, user_id, scope, patient, \
         encounter, session_hash, launched, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            hash(token).into(),
            g.family.as_str().into(),
            g.client_id.as_str().into(),
            g.user_id.into(),
            g.scope.as_str().into(),
            g.patient.clone().into(),
            g.encounter.clone().into(),
            g.session_hash.clone().into(),
            Some(g.launched).into(),
            expires.into(),
        ],
    )
    .await
    .map(|_| ())
}

/// Takes the refresh token `token` of `client_id` (a rotation: it is used once). A token of
/// another client is unknown to this one, and stays usable by its own.
pub async fn take_refresh(
    db: &Db,
    token: &str,
    client_id: &str,
) -> Result<Taken<Grant>, StoreError> {
    let h = hash(token);
    let now = Utc::now();
    let row = db
        .fetch_optional(
            "UPDATE refresh_tokens SET used_at = ? \
             WHERE token_hash = ? AND client_id = ? AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > ? AND family NOT IN (SELECT family FROM revoked_families) \
             RETURNING family, client_id, user_id, scope, patient, encounter, session_hash, \
             expires_at, launched",
            &[now.into(), h.as_str().into(), client_id.into(), now.into()],
        )
        .await?;
    if let Some(r) = row {
        return Ok(Taken::Fresh(grant_of(&r)?));
    }
    reused(db, "refresh_tokens", "token_hash", &h, client_id).await
}

/// The scope of the live refresh token `token` of `client_id`.
pub async fn refresh_scope(
    db: &Db,
    token: &str,
    client_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT scope FROM refresh_tokens WHERE token_hash = ? AND client_id = ? \
             AND used_at IS NULL AND revoked_at IS NULL",
            &[hash(token).into(), client_id.into()],
        )
        .await?;
    row.map(|r| r.string("scope")).transpose()
}

/// The client the refresh token `token` was issued to (a public client's refresh may not name
/// it).
pub async fn refresh_client(db: &Db, token: &str) -> Result<Option<String>, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT client_id FROM refresh_tokens WHERE token_hash = ?",
            &[hash(token).into()],
        )
        .await?;
    row.map(|r| r.string("client_id")).transpose()
}

/// The family of the refresh token `token` of `client_id` (to revoke it), used or not.
pub async fn refresh_family(
    db: &Db,
    token: &str,
    client_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT family FROM refresh_tokens WHERE token_hash = ? AND client_id = ?",
            &[hash(token).into(), client_id.into()],
        )
        .await?;
    row.map(|r| r.string("family")).transpose()
}

/// Revokes the refresh tokens of `family`, and answers the access tokens it holds that are
/// not yet revoked (for the caller to revoke: every process must learn of them).
pub async fn revoke_family(db: &Db, family: &str) -> Result<Vec<String>, StoreError> {
    // First the mark: a code or refresh token of the family taken from now on is refused, and
    // whoever took one just before finds the mark after issuing (see `family_revoked`).
    let until = Utc::now() + chrono::Duration::days(90);
    db.execute(
        "INSERT INTO revoked_families (family, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        &[family.into(), until.into()],
    )
    .await?;
    db.execute(
        "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
        &[Utc::now().into(), family.into()],
    )
    .await?;
    let rows = db
        .fetch_all(
            "SELECT jti FROM issued_tokens WHERE family = ? AND revoked_at IS NULL",
            &[family.into()],
        )
        .await?;
    rows.iter().map(|r| r.string("jti")).collect()
}

/// Whether `family` was revoked.
pub async fn family_revoked(db: &Db, family: &str) -> Result<bool, StoreError> {
    Ok(db
        .fetch_optional(
            "SELECT family FROM revoked_families WHERE family = ?",
            &[family.into()],
        )
        .await?
        .is_some())
}

/// An EHR launch: the patient (and encounter) the clinic's application had open.
#[derive(Debug, Clone)]
pub struct Launch {
    pub client_id: String,
    pub patient: String,
    pub encounter: Option<String>,
}

pub async fn add_launch(
    db: &Db,
    launch: &str,
    l: &Launch,
    expires: DateTime<Utc>,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO launch_contexts (launch_hash, client_id, patient, encounter, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
        &[
            hash(launch).into(),
            l.client_id.as_str().into(),
            l.patient.as_str().into(),
            l.encounter.clone().into(),
            expires.into(),
        ],
    )
    .await
    .map(|_| ())
}

/// Takes the launch `launch` for `client_id`: once, before it expires.
pub async fn take_launch(
    db: &Db,
    launch: &str,
    client_id: &str,
) -> Result<Option<Launch>, StoreError> {
    let now = Utc::now();
    let row = db
        .fetch_optional(
            "UPDATE launch_contexts SET used_at = ? WHERE launch_hash = ? AND client_id = ? \
             AND used_at IS NULL AND expires_at > ? RETURNING client_id, patient, encounter",
            &[
                now.into(),
                hash(launch).into(),
                client_id.into(),
                now.into(),
            ],
        )
        .await?;
    row.map(|r| {
        Ok(Launch {
            client_id: r.string("client_id")?,
            patient: r.string("patient")?,
            encounter: r.text("encounter")?,
        })
    })
    .transpose()
}

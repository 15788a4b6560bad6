//! The sign-in pages' state: browser sessions (the cookie's token kept as its hash), the
//! authorization requests being answered, and the failed sign-ins that throttle the next ones.
//! With `codes`, the modules of `auth` that write SQL for App Launch.

use crate::store::{Arg, Db, Row, StoreError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

/// The SHA-256 of a secret (a cookie, code, refresh token or launch id), as kept in the
/// database: whoever reads the tables cannot use what they find.
pub fn hash(secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

fn later(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::hours(1))
}

/// A live browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub hash: String,
    /// The token every form of the session carries back.
    pub csrf: String,
    /// Who signed in, if anyone has.
    pub user_id: Option<Uuid>,
}

/// Opens a session for `user_id` (None: nobody signed in yet) that lasts `lifetime`: the
/// cookie's token and the session.
pub async fn open(
    db: &Db,
    user_id: Option<Uuid>,
    lifetime: Duration,
) -> anyhow::Result<(String, Session)> {
    let token = super::keys::random_token::<32>()?;
    let session = Session {
        hash: hash(&token),
        csrf: super::keys::random_token::<24>()?,
        user_id,
    };
    db.execute(
        "INSERT INTO browser_sessions (token_hash, csrf, user_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
        &[
            session.hash.as_str().into(),
            session.csrf.as_str().into(),
            Arg::OptUuid(user_id),
            Utc::now().into(),
            later(lifetime).into(),
        ],
    )
    .await?;
    Ok((token, session))
}

/// The live session of the cookie token `token`.
pub async fn session(db: &Db, token: &str) -> Result<Option<Session>, StoreError> {
    live_session(db, &hash(token)).await
}

/// The session whose hash is `hash`, unless it ended or expired.
pub async fn live_session(db: &Db, hash: &str) -> Result<Option<Session>, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT token_hash, csrf, user_id FROM browser_sessions \
             WHERE token_hash = ? AND ended_at IS NULL AND expires_at > ?",
            &[hash.into(), Utc::now().into()],
        )
        .await?;
    row.map(|r| {
        Ok(Session {
            hash: r.string("token_hash")?,
            csrf: r.string("csrf")?,
            user_id: r.opt_uuid("user_id")?,
        })
    })
    .transpose()
}

/// Ends a session (signing out): its online_access refresh tokens end with it.
pub async fn end(db: &Db, hash: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE browser_sessions SET ended_at = ? WHERE token_hash = ? AND ended_at IS NULL",
        &[Utc::now().into(), hash.into()],
    )
    .await
    .map(|_| ())
}

/// An app's authorization request while its user signs in, picks a patient and consents.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// A random id, in the pages' URLs and forms.
    pub id: String,
    /// The browser session it belongs to.
    pub session_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// What the app asked for, within what the client is registered for.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// An EHR launch: the clinic's application shows the patient.
    pub launched: bool,
}

const PENDING: &str = "SELECT id, session_hash, client_id, redirect_uri, scope, state, nonce, \
     code_challenge, patient, encounter, launched FROM authorization_requests";

fn pending_of(r: &Row) -> Result<Pending, StoreError> {
    Ok(Pending {
        id: r.string("id")?,
        session_hash: r.string("session_hash")?,
        client_id: r.string("client_id")?,
        redirect_uri: r.string("redirect_uri")?,
        scope: r.string("scope")?,
        state: r.text("state")?,
        nonce: r.text("nonce")?,
        code_challenge: r.string("code_challenge")?,
        patient: r.text("patient")?,
        encounter: r.text("encounter")?,
        launched: r.bool("launched")?.unwrap_or(false),
    })
}

pub async fn add_pending(db: &Db, p: &Pending, lifetime: Duration) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO authorization_requests (id, session_hash, client_id, redirect_uri, scope, \
         state, nonce, code_challenge, patient, encounter, launched, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            p.id.as_str().into(),
            p.session_hash.as_str().into(),
            p.client_id.as_str().into(),
            p.redirect_uri.as_str().into(),
            p.scope.as_str().into(),
            p.state.clone().into(),
            p.nonce.clone().into(),
            p.code_challenge.as_str().into(),
            p.patient.clone().into(),
            p.encounter.clone().into(),
            Some(p.launched).into(),
            later(lifetime).into(),
        ],
    )
    .await
    .map(|_| ())
}

/// The request `id` of the session `session_hash`, unless it expired.
pub async fn pending(db: &Db, id: &str, session_hash: &str) -> Result<Option<Pending>, StoreError> {
    let sql = format!("{PENDING} WHERE id = ? AND session_hash = ? AND expires_at > ?");
    db.fetch_optional(&sql, &[id.into(), session_hash.into(), Utc::now().into()])
        .await?
        .as_ref()
        .map(pending_of)
        .transpose()
}

/// Moves a request to the new session of whoever signed in.
pub async fn move_pending(db: &Db, id: &str, session_hash: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE authorization_requests SET session_hash = ? WHERE id = ?",
        &[session_hash.into(), id.into()],
    )
    .await
    .map(|_| ())
}

/// The patient picked for a request.
pub async fn pick(db: &Db, id: &str, patient: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE authorization_requests SET patient = ? WHERE id = ?",
        &[patient.into(), id.into()],
    )
    .await
    .map(|_| ())
}

/// Removes a request (answered); false when it was already gone (answered by another tab).
pub async fn remove_pending(db: &Db, id: &str) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            "DELETE FROM authorization_requests WHERE id = ?",
            &[id.into()],
        )
        .await?
        > 0)
}

/// How many sign-ins failed for `subject` since `since`.
pub async fn failures(db: &Db, subject: &str, since: DateTime<Utc>) -> Result<i64, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT count(*) AS n FROM sign_in_failures WHERE subject = ? AND at > ?",
            &[subject.into(), since.into()],
        )
        .await?;
    row.map_or(Ok(0), |r| r.bigint("n"))
}

/// Records a sign-in attempt as failed for each of `subjects` (before its password is
/// checked, so that attempts in parallel count too); answers its time, to forget it by.
pub async fn add_failure(db: &Db, subjects: &[&str]) -> Result<DateTime<Utc>, StoreError> {
    let now = Utc::now();
    for s in subjects {
        db.execute(
            "INSERT INTO sign_in_failures (subject, at) VALUES (?, ?)",
            &[(*s).into(), now.into()],
        )
        .await?;
    }
    Ok(now)
}

/// Forgets the attempt of `subject` recorded at `at` (it succeeded).
pub async fn forget_failure(db: &Db, subject: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM sign_in_failures WHERE subject = ? AND at = ?",
        &[subject.into(), at.into()],
    )
    .await
    .map(|_| ())
}

/// Forgets the failures of `subject` (its account signed in).
pub async fn clear_failures(db: &Db, subject: &str) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM sign_in_failures WHERE subject = ?",
        &[subject.into()],
    )
    .await
    .map(|_| ())
}

/// Forgets what has expired: sessions, requests, codes, refresh tokens, launches, and failures
/// older than `failures_before`.
pub async fn forget_expired(db: &Db, failures_before: DateTime<Utc>) -> Result<(), StoreError> {
    let now = Utc::now();
    for table in [
        "browser_sessions",
        "authorization_requests",
        "authorization_codes",
        "refresh_tokens",
        "launch_contexts",
        "revoked_families",
    ] {
        db.execute(
            &format!("DELETE FROM {table} WHERE expires_at < ?"),
            &[now.into()],
        )
        .await?;
    }
    db.execute(
        "DELETE FROM sign_in_failures WHERE at < ?",
        &[failures_before.into()],
    )
    .await
    .map(|_| ())
}

//! The users who sign in: their role and its permissions, the FHIR resource they are
//! (`fhirUser`), and their credentials. Beside `records`, the other module of `auth` that
//! writes SQL.

use super::scope::Scopes;
use crate::store::{Arg, Db, StoreError};
use uuid::Uuid;

/// A user as the authorization server sees one.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    /// The most the role allows.
    pub permissions: Scopes,
    /// `Practitioner/x` for a clinical role, `Patient/y` for a patient's own account.
    pub fhir_user: Option<String>,
    /// The Patient a patient's account is for.
    pub patient: Option<String>,
    pub active: bool,
    pub password_hash: Option<String>,
}

const SELECT: &str = "SELECT u.id, u.email, u.is_active, u.password_hash, r.name AS role, \
     r.permissions, r.is_clinical, u.fhir_id AS practitioner, p.fhir_id AS patient \
     FROM users u JOIN roles r ON r.id = u.role_id LEFT JOIN patients p ON p.id = u.patient_id";

fn user_of(r: &crate::store::Row) -> Result<User, StoreError> {
    let clinical = r.bool("is_clinical")?.unwrap_or(false);
    let patient = r.text("patient")?;
    let fhir_user = match (&patient, clinical) {
        (Some(p), _) => Some(format!("Patient/{p}")),
        (None, true) => r.text("practitioner")?.map(|p| format!("Practitioner/{p}")),
        (None, false) => None,
    };
    Ok(User {
        id: r.uuid("id")?,
        email: r.text("email")?.unwrap_or_default(),
        role: r.string("role")?,
        permissions: Scopes::parse(&r.string("permissions")?),
        fhir_user,
        patient,
        active: r.bool("is_active")?.unwrap_or(false),
        password_hash: r.text("password_hash")?,
    })
}

/// The user with `email` (compared without regard to case), unless deleted.
pub async fn by_email(db: &Db, email: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("{SELECT} WHERE lower(u.email) = lower(?) AND u.deleted_at IS NULL");
    db.fetch_optional(&sql, &[email.into()])
        .await?
        .as_ref()
        .map(user_of)
        .transpose()
}

/// The user `id`, unless deleted.
pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<User>, StoreError> {
    let sql = format!("{SELECT} WHERE u.id = ? AND u.deleted_at IS NULL");
    db.fetch_optional(&sql, &[id.into()])
        .await?
        .as_ref()
        .map(user_of)
        .transpose()
}

/// The preferred language of the patient whose own account `id` is (`es`, `en-US`...).
pub async fn patient_language(db: &Db, id: Uuid) -> Result<Option<String>, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT p.preferred_language FROM users u JOIN patients p ON p.id = u.patient_id \
             WHERE u.id = ?",
            &[id.into()],
        )
        .await?;
    Ok(row.and_then(|r| r.text("preferred_language").ok().flatten()))
}

/// Records a sign-in.
pub async fn signed_in(db: &Db, id: Uuid) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE users SET last_login_at = {} WHERE id = ?",
        db.dialect().now()
    );
    db.execute(&sql, &[id.into()]).await.map(|_| ())
}

/// Every user who has an email, by email.
pub async fn all(db: &Db) -> Result<Vec<User>, StoreError> {
    let sql =
        format!("{SELECT} WHERE u.email IS NOT NULL AND u.deleted_at IS NULL ORDER BY u.email");
    db.fetch_all(&sql, &[]).await?.iter().map(user_of).collect()
}

/// Whether role `name` exists, and whether it is clinical.
pub async fn role(db: &Db, name: &str) -> Result<Option<bool>, StoreError> {
    let row = db
        .fetch_optional(
            "SELECT is_clinical FROM roles WHERE name = ? AND deleted_at IS NULL",
            &[name.into()],
        )
        .await?;
    row.map(|r| Ok(r.bool("is_clinical")?.unwrap_or(false)))
        .transpose()
}

/// What a new account is.
pub enum Account<'a> {
    /// The existing users row of Practitioner `id` signs in.
    Practitioner(&'a str),
    /// A new users row for Patient `id`'s own account.
    Patient(&'a str),
    /// A new users row (a Practitioner too when the role is clinical).
    New,
}

/// Adds an account; Err with a reason a person can act on.
pub async fn add(
    db: &Db,
    email: &str,
    role: &str,
    account: Account<'_>,
    password_hash: Option<String>,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let role_id = Arg::Text(Some(role.to_owned()));
    let hash = Arg::Text(password_hash);
    let changed = match account {
        Account::Practitioner(id) => {
            tx.execute(
                "UPDATE users SET email = ?, password_hash = ?, \
                 role_id = (SELECT id FROM roles WHERE name = ?) \
                 WHERE fhir_id = ? AND deleted_at IS NULL AND email IS NULL \
                 AND role_id IN (SELECT id FROM roles WHERE is_clinical)",
                &[email.into(), hash, role_id, id.into()],
            )
            .await?
        }
        Account::Patient(id) => {
            tx.execute(
                "INSERT INTO users (email, password_hash, role_id, patient_id) \
                 SELECT ?, ?, (SELECT id FROM roles WHERE name = ?), p.id \
                 FROM patients p WHERE p.fhir_id = ? AND p.deleted_at IS NULL",
                &[email.into(), hash, role_id, id.into()],
            )
            .await?
        }
        Account::New => {
            tx.execute(
                "INSERT INTO users (email, password_hash, role_id) \
                 SELECT ?, ?, id FROM roles WHERE name = ?",
                &[email.into(), hash, role_id],
            )
            .await?
        }
    };
    if changed != 1 {
        anyhow::bail!(match account {
            Account::Practitioner(id) => format!(
                "there is no Practitioner {id} without an account (a user with a clinical role)"
            ),
            Account::Patient(id) => format!("there is no Patient {id}"),
            Account::New => format!("there is no role {role}"),
        });
    }
    tx.commit().await?;
    Ok(())
}

/// Sets whether the user with `email` may sign in; false when there is none.
pub async fn set_active(db: &Db, email: &str, active: bool) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            "UPDATE users SET is_active = ? WHERE lower(email) = lower(?) AND deleted_at IS NULL",
            &[Arg::Bool(Some(active)), email.into()],
        )
        .await?
        > 0)
}

/// Sets the password hash of the user with `email`; false when there is none.
pub async fn set_password(db: &Db, email: &str, hash: String) -> Result<bool, StoreError> {
    Ok(db
        .execute(
            "UPDATE users SET password_hash = ? WHERE lower(email) = lower(?) AND deleted_at IS NULL",
            &[hash.into(), email.into()],
        )
        .await?
        > 0)
}

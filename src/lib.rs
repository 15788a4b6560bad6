//! expediente: a FHIR R4 server over the ExpedienteDLM clinic schema.
//!
//! Layers, top to bottom: [`api`] (HTTP) → [`interactions`] (one FHIR interaction, one
//! transaction) → [`mapping`] (FHIR JSON ⇄ clinic tables) → [`store`] (SQLite or PostgreSQL).
//! [`fhir`] is the shared vocabulary at the bottom.
// One function maps the audit journal's files into memory (audit::journal::map), with its
// reasons; nothing else is unsafe.
#![deny(unsafe_code)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod fhir;
pub mod import;
pub mod interactions;
pub mod mapping;
pub mod store;

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// How `serve` runs, beside its database URL.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The FHIR base URL to put in links; derived from the Host header when absent.
    pub base_url: Option<String>,
    /// How long a request may take, from its headers to its answer; past it, it is stopped.
    pub request_timeout: Duration,
    /// How long one database statement may run.
    pub statement_timeout: Duration,
    /// The key that encrypts the signing keys at rest; None: a new one, for this process only
    /// (tests).
    pub key: Option<auth::keys::KeyEncryptionKey>,
    /// Serve `/fhir` without tokens (`--insecure-no-auth`: local experiments only).
    pub insecure_no_auth: bool,
    /// Write the audit trail (always, but to measure what it costs:
    /// `serve --no-audit-for-measurement`).
    pub audit: bool,
    /// The folder of the audit journal, where each read's event is written before the read is
    /// answered (`serve --audit-journal`); None: no journal (a crash loses the read events of
    /// its last milliseconds).
    pub audit_journal: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body: 16 * 1024 * 1024,
            base_url: None,
            request_timeout: Duration::from_secs(60),
            statement_timeout: store::STATEMENT_TIMEOUT,
            key: None,
            insecure_no_auth: false,
            audit: true,
            audit_journal: None,
        }
    }
}

/// Applies the migrations and writes the mapping tables the database mirrors.
pub async fn prepare(db: &store::Db) -> anyhow::Result<()> {
    db.migrate().await.context("applying migrations")?;
    // The server's own transactions say so: the triggers that record direct changes leave
    // them to the server's audit.
    db.mark_transactions(audit::chain::transaction_marks(db.dialect()));
    mapping::vital_data::sync_codes(db)
        .await
        .context("writing the vital-sign codes")?;
    Ok(())
}

/// Connects, migrates and builds the FHIR service: what `import` needs.
pub async fn build_fhir(
    database_url: &str,
    settings: &Settings,
) -> anyhow::Result<interactions::Fhir> {
    let db = store::Db::connect_with(database_url, settings.statement_timeout)
        .await
        .context("connecting to the database")?;
    prepare(&db).await?;
    let registry = mapping::Registry::standard();
    let validators = fhir::validate::Validators::new(&registry.types());
    Ok(interactions::Fhir {
        db: db.clone(),
        registry,
        validators: Arc::new(validators),
        profiles: Arc::new(fhir::profiles::Profiles::load().context("loading the profiles")?),
        audit: start_audit(&db, settings).await?,
    })
}

/// The audit writer: the events a stopped server left in its journal are stored first.
async fn start_audit(db: &store::Db, settings: &Settings) -> anyhow::Result<audit::Audit> {
    if !settings.audit {
        return Ok(audit::Audit::off());
    }
    let journal = match &settings.audit_journal {
        Some(dir) => {
            audit::journal::recover(db, dir)
                .await
                .context("storing the events left in the audit journal")?;
            Some(
                audit::journal::Journal::open(db, dir)
                    .await
                    .with_context(|| format!("opening the audit journal in {}", dir.display()))?,
            )
        }
        None => None,
    };
    Ok(audit::Audit::start(db.clone(), journal))
}

/// Connects, migrates and builds the application state: what `serve` and the tests share.
pub async fn build_state(database_url: &str, settings: Settings) -> anyhow::Result<api::AppState> {
    let fhir = build_fhir(database_url, &settings).await?;
    let key = match settings.key {
        Some(k) => k,
        None => auth::keys::KeyEncryptionKey::new_random()?,
    };
    let auth = Arc::new(
        auth::Auth::load(fhir.db.clone(), key)
            .await
            .context("loading the signing keys")?,
    );
    auth.follow_in_background(auth::REVOCATION_POLL);
    Ok(api::AppState::new(api::ServerState {
        fhir,
        auth,
        max_body: settings.max_body,
        base_url: settings.base_url,
        request_timeout: settings.request_timeout,
        insecure_no_auth: settings.insecure_no_auth,
        accesses: Default::default(),
        metrics: Default::default(),
    }))
}

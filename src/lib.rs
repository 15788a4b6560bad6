//! expediente: a FHIR R4 server over the ExpedienteDLM clinic schema.
//!
//! Layers, top to bottom: [`api`] (HTTP) → [`interactions`] (one FHIR interaction, one
//! transaction) → [`mapping`] (FHIR JSON ⇄ clinic tables) → [`store`] (SQLite or PostgreSQL).
//! [`fhir`] is the shared vocabulary at the bottom.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod fhir;
pub mod import;
pub mod interactions;
pub mod mapping;
pub mod store;

use anyhow::Context;
use std::sync::Arc;

/// Applies the migrations and writes the mapping tables the database mirrors.
pub async fn prepare(db: &store::Db) -> anyhow::Result<()> {
    db.migrate().await.context("applying migrations")?;
    mapping::vital_data::sync_codes(db)
        .await
        .context("writing the vital-sign codes")?;
    Ok(())
}

/// Connects, migrates and builds the application state: what `serve` and the tests share.
pub async fn build_state(
    database_url: &str,
    max_body: usize,
    base_url: Option<String>,
) -> anyhow::Result<api::AppState> {
    let db = store::Db::connect(database_url)
        .await
        .context("connecting to the database")?;
    prepare(&db).await?;
    let registry = mapping::Registry::standard();
    let validators = fhir::validate::Validators::compile(&registry.types())
        .context("compiling the FHIR schema")?;
    Ok(api::AppState {
        fhir: interactions::Fhir {
            db,
            registry,
            validators: Arc::new(validators),
            profiles: Arc::new(fhir::profiles::Profiles::load().context("loading the profiles")?),
        },
        max_body,
        base_url,
    })
}

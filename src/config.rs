//! Command line and environment configuration.

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://expediente.db";

#[derive(Debug, Parser)]
#[command(
    name = "expediente",
    version,
    about = "A FHIR R4 server over the ExpedienteDLM clinic schema"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the FHIR server (migrating the database first).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Load Bundles (.json) and NDJSON (.ndjson) files or folders into the database.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Files or folders (searched recursively for .json and .ndjson).
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// About how many resources go in one database transaction (small bundles are grouped up to
    /// it; a bundle is never split).
    #[arg(long, env = "EXPEDIENTE_IMPORT_BATCH_SIZE", default_value_t = 5000)]
    pub batch_size: usize,
    /// Drop entries of resource types this server does not host (counted in the summary)
    /// instead of failing their bundle.
    #[arg(long)]
    pub skip_unsupported: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// sqlite://path (created if missing) or postgres://user@host/db.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "EXPEDIENTE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "EXPEDIENTE_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Public FHIR base URL for links (e.g. https://fhir.clinic.example/fhir); by default it is
    /// derived from the Host header.
    #[arg(long, env = "EXPEDIENTE_BASE_URL")]
    pub base_url: Option<String>,
    /// Seconds a request may take from its headers to its answer; past it, it is stopped
    /// (its statement ended, its transaction rolled back) and answered 503.
    #[arg(long, env = "EXPEDIENTE_REQUEST_TIMEOUT", default_value_t = 60)]
    pub request_timeout: u64,
    /// Seconds one database statement may run before the database ends it.
    #[arg(long, env = "EXPEDIENTE_STATEMENT_TIMEOUT", default_value_t = 30)]
    pub statement_timeout: u64,
}

impl ServeArgs {
    pub fn settings(&self) -> crate::Settings {
        crate::Settings {
            max_body: self.max_body_bytes,
            base_url: self.base_url.clone(),
            request_timeout: std::time::Duration::from_secs(self.request_timeout.max(1)),
            statement_timeout: std::time::Duration::from_secs(self.statement_timeout.max(1)),
        }
    }
}

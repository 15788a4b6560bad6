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
    /// The keys that sign access tokens.
    Keys(KeysArgs),
    /// Register, list and remove OAuth clients (apps and backend services).
    Client(ClientArgs),
    /// Mint an access token directly against the database and print it.
    Token(TokenArgs),
    /// Start an EHR launch: print a launch id, valid five minutes, that gives app `--client`
    /// the patient (and encounter) in context.
    Launch(LaunchArgs),
    /// Add, list and disable the users who sign in, and set their passwords.
    User(UserArgs),
    /// Check the audit trail's hash chain, or export a checkpoint of it.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the chain and report the first row broken or missing (exit status 1 then).
    Verify {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Start from a checkpoint exported earlier (a file written by `audit checkpoint`):
        /// the chain must still pass through it, and only the rows after it are walked.
        #[arg(long)]
        since: Option<std::path::PathBuf>,
    },
    /// Print the chain's head (last sequence number, its hash, the row count) as JSON, to
    /// keep somewhere else.
    Checkpoint {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Write it to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user: a new one, the Practitioner `--practitioner` (a user with a clinical role),
    /// or the own account of Patient `--patient` (role patient).
    Add {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        email: String,
        /// administrator, physician, nurse, receptionist, auditor or patient (or a role the
        /// clinic added).
        #[arg(long)]
        role: String,
        #[arg(long, conflicts_with = "patient")]
        practitioner: Option<String>,
        #[arg(long)]
        patient: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// The users, one a line: email, role, fhirUser, active or disabled.
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// The user may no longer sign in or be granted tokens.
    Disable {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        email: String,
    },
    /// Set a user's password, read from the first line of standard input.
    Passwd {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        email: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The file holding the key that encrypts the signing keys at rest (base64 of 32 bytes;
    /// made, readable by its owner only, when missing). EXPEDIENTE_KEY, the key itself in
    /// base64, takes its place when set.
    #[arg(long, env = "EXPEDIENTE_KEY_FILE", default_value = "expediente.key")]
    pub key_file: std::path::PathBuf,
}

impl KeyArgs {
    pub fn key(&self) -> anyhow::Result<crate::auth::keys::KeyEncryptionKey> {
        match std::env::var("EXPEDIENTE_KEY") {
            Ok(k) if !k.trim().is_empty() => crate::auth::keys::KeyEncryptionKey::from_base64(&k),
            _ => crate::auth::keys::KeyEncryptionKey::from_file(&self.key_file),
        }
    }
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; the old ones stay published until their tokens have expired.
    Rotate {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. `--secret` prints its secret once; only its hash is kept.
    Add(ClientAdd),
    /// The registered clients.
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Remove a client: its tokens are refused from then on.
    Remove {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["public", "secret", "jwks", "jwks_url"])))]
pub struct ClientAdd {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub name: Option<String>,
    /// A public client (a browser or phone app): PKCE alone.
    #[arg(long)]
    pub public: bool,
    /// A confidential client with a secret (client_secret_basic).
    #[arg(long)]
    pub secret: bool,
    /// A backend client's public keys (a JWKS file): private_key_jwt.
    #[arg(long)]
    pub jwks: Option<std::path::PathBuf>,
    /// Where a backend client publishes its JWKS: private_key_jwt.
    #[arg(long)]
    pub jwks_url: Option<String>,
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// The most this client may ever be granted (SMART scopes).
    #[arg(long)]
    pub scope: String,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub scope: String,
    /// The user the token acts for (its rights are also within the user's role).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub patient: Option<String>,
    #[arg(long)]
    pub encounter: Option<String>,
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u64,
    /// The FHIR base the token is for (the server's --base-url).
    #[arg(
        long,
        env = "EXPEDIENTE_BASE_URL",
        default_value = "http://127.0.0.1:8080/fhir"
    )]
    pub audience: String,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The client id of the app to launch.
    #[arg(long)]
    pub client: String,
    /// The Patient in context.
    #[arg(long)]
    pub patient: String,
    /// The Encounter in context (one of the patient's).
    #[arg(long)]
    pub encounter: Option<String>,
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
    /// Write no audit events: only to measure what auditing costs.
    #[arg(long, hide = true)]
    pub no_audit_for_measurement: bool,
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
    #[command(flatten)]
    pub key: KeyArgs,
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
    /// Serve /fhir without access tokens, every caller an administrator: for local experiments
    /// only (refused on any address but the loopback).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Write no audit trail: only to measure what auditing costs, on the loopback.
    #[arg(long, hide = true)]
    pub no_audit_for_measurement: bool,
    /// The folder where the event of each read is written before the read is answered, until
    /// it is stored in the database (made, readable by its owner only, when missing). A server
    /// that starts stores what a crashed one left there.
    #[arg(
        long,
        env = "EXPEDIENTE_AUDIT_JOURNAL",
        default_value = "expediente-audit"
    )]
    pub audit_journal: std::path::PathBuf,
}

impl ServeArgs {
    pub fn settings(&self) -> anyhow::Result<crate::Settings> {
        Ok(crate::Settings {
            key: Some(self.key.key()?),
            insecure_no_auth: self.insecure_no_auth,
            max_body: self.max_body_bytes,
            base_url: self.base_url.clone(),
            request_timeout: std::time::Duration::from_secs(self.request_timeout.max(1)),
            statement_timeout: std::time::Duration::from_secs(self.statement_timeout.max(1)),
            audit: !self.no_audit_for_measurement,
            audit_journal: Some(self.audit_journal.clone()),
        })
    }
}

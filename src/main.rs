use anyhow::Context;
use clap::Parser;
use expediente::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: a request allocates many small JSON values, and
/// glibc's malloc spent close to a third of a search's CPU time on them (consolidating its bins).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process: the allocators hand memory back and take it
/// again as requests and import groups come and go, and each fault of a huge page zeroes 2 MiB
/// (an import spent about a tenth of its CPU time there).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and changes only this process's
    // paging policy; a failure leaves it as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    no_huge_pages();
    // Logs go to stderr: stdout is for what a command answers (the import's summary).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Migrate(args) => {
            let db = expediente::store::Db::connect(&args.database_url)
                .await
                .context("connecting to the database")?;
            expediente::prepare(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Import(args) => import(args).await,
        Command::Keys(args) => print(expediente::admin::keys(args.command).await?),
        Command::Client(args) => print(expediente::admin::client(args.command).await?),
        Command::Token(args) => print(expediente::admin::token(args).await?),
        Command::Launch(args) => print(expediente::admin::launch(args).await?),
        Command::User(args) => print(expediente::admin::user(args.command).await?),
        Command::Audit(args) => {
            let (text, ok) = expediente::admin::audit(args.command).await?;
            if !ok {
                eprint!("{text}");
                std::process::exit(1);
            }
            print(text)
        }
        Command::Serve(args) => {
            let listener = tokio::net::TcpListener::bind(&args.listen)
                .await
                .with_context(|| format!("listening on {}", args.listen))?;
            check_exposure(&args, listener.local_addr()?.ip().is_loopback())?;
            let state = expediente::build_state(&args.db.database_url, args.settings()?).await?;
            if state.auth.is_new() {
                eprintln!("{}", expediente::admin::FIRST_STEPS);
            }
            let db = state.fhir.db.clone();
            let audit = state.fhir.audit.clone();
            tracing::info!(address = %listener.local_addr()?, "expediente is serving FHIR R4 at /fhir");
            expediente::api::serve(listener, expediente::api::router(state), shutdown_signal())
                .await?;
            // The events of the last requests are stored before the database closes.
            audit.close().await;
            db.close().await;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// `expediente import`: loads the files, prints the summary, exits 1 when some failed.
async fn import(args: expediente::config::ImportArgs) -> anyhow::Result<()> {
    let settings = expediente::Settings {
        max_body: 0,
        audit: !args.no_audit_for_measurement,
        ..Default::default()
    };
    let fhir = expediente::build_fhir(&args.db.database_url, &settings).await?;
    let caller = expediente::interactions::Caller {
        base_url: "http://localhost/fhir".into(),
        // The administrator of the clinic's own database.
        access: expediente::auth::access::Access::everything(),
        request_id: "import".into(),
        audit: expediente::audit::Context::local("import"),
    };
    let opts = expediente::import::ImportOptions {
        batch_size: args.batch_size.max(1),
        skip_unsupported: args.skip_unsupported,
        progress: !args.no_progress,
    };
    let summary = fhir.import(&caller, &args.paths, &opts).await?;
    fhir.audit.close().await;
    fhir.db.close().await;
    // A closed stdout (`| head`) is no reason to fail an import that succeeded.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), summary.report().as_bytes());
    if !summary.failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// Writes what a command answers to stdout.
fn print(text: String) -> anyhow::Result<()> {
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// Refuses `--insecure-no-auth` beyond the loopback, and warns of what a server open to others
/// should not run without.
fn check_exposure(args: &expediente::config::ServeArgs, loopback: bool) -> anyhow::Result<()> {
    if args.insecure_no_auth {
        if !loopback {
            anyhow::bail!(
                "--insecure-no-auth serves every record to anyone: it runs on a loopback \
                 address only, not on {}",
                args.listen
            );
        }
        tracing::warn!(
            "--insecure-no-auth: /fhir answers without access tokens, every caller an \
             administrator; for local experiments only"
        );
    }
    if args.no_audit_for_measurement && !loopback {
        anyhow::bail!("--no-audit-for-measurement runs on a loopback address only");
    }
    if args.base_url.is_none() && !loopback {
        tracing::warn!(
            "no --base-url: the FHIR base, which access tokens and client assertions are \
             checked against, is taken from each request's Host header; set --base-url when \
             serving others"
        );
    }
    Ok(())
}

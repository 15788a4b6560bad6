//! The binary itself: `migrate` applies migrations and exits; `serve` with no configuration
//! creates ./expediente.db, answers, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_expediente")
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "expediente-cli-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn migrate_applies_the_migrations_and_exits() {
    let dir = temp_dir("migrate");
    let db = dir.join("clinic.db");
    let out = Command::new(bin())
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = expediente::store::Db::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let row = conn
            .fetch_optional("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ('patients', 'vital_signs', 'audit_logs', 'resource_versions')", &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.bigint("n").unwrap(), 4);
        conn.close().await;
    });
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
    let again = Command::new(bin())
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ])
        .output()
        .unwrap();
    assert!(again.status.success(), "migrating twice is harmless");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn migrate_on_postgres_applies_the_migrations() {
    let admin = std::env::var("EXPEDIENTE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = format!("expediente_cli_{}", uuid::Uuid::new_v4().simple());
    rt.block_on(async {
        let db = expediente::store::Db::connect(&admin)
            .await
            .expect("PostgreSQL is reachable; its tests are never skipped");
        db.execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .unwrap();
        db.close().await;
    });
    let base = admin.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{name}");
    let out = Command::new(bin())
        .args(["migrate"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let db = expediente::store::Db::connect(&url).await.unwrap();
        let n = db.fetch_optional("SELECT count(*) AS n FROM _sqlx_migrations", &[]).await.unwrap().unwrap().bigint("n").unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
        assert_eq!(n as usize, files, "every migration of the folder is applied");
        // migrate also writes the vital-sign codes of mappings/vital-signs.json.
        let codes = db.fetch_optional("SELECT count(*) AS n FROM vital_sign_codes WHERE code = '8867-4' AND measurement = 'heart-rate'", &[]).await.unwrap().unwrap().bigint("n").unwrap();
        assert_eq!(codes, 1);
        let t = db.fetch_optional("SELECT data_type FROM information_schema.columns WHERE table_name = 'patients' AND column_name = 'id'", &[]).await.unwrap().unwrap();
        assert_eq!(t.string("data_type").unwrap(), "uuid", "PostgreSQL uses native uuid");
        db.close().await;
        let admin_db = expediente::store::Db::connect(&admin).await.unwrap();
        admin_db.execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[]).await.unwrap();
    });
}

#[test]
fn serve_with_no_configuration_uses_expediente_db_and_stops_on_sigterm() {
    let dir = temp_dir("serve");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(bin())
        .arg("serve")
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env("EXPEDIENTE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("EXPEDIENTE_KEY")
        .env_remove("EXPEDIENTE_KEY_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(async {
        let client = reqwest::Client::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
            {
                return r.status().is_success();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    assert!(ok, "the server answered /health");
    assert!(
        dir.join("expediente.db").exists(),
        "the default database file was created"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server stops after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "a graceful shutdown exits with 0, got {status:?}"
    );
    // On its first start it says how to get a token, and keeps its key file to its owner.
    let mut said = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("Every /fhir request needs an access token"),
        "{said}"
    );
    assert!(said.contains("expediente token --client-id"), "{said}");
    let key = std::fs::metadata(dir.join("expediente.key")).expect("the key file");
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn insecure_no_auth_is_refused_off_the_loopback() {
    let dir = temp_dir("insecure");
    let out = Command::new(bin())
        .args(["serve", "--insecure-no-auth", "--listen", "0.0.0.0:0"])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("loopback"), "{said}");
    assert!(
        !dir.join("expediente.db").exists(),
        "it stopped before opening anything"
    );
    let _ = std::fs::remove_dir_all(dir);
}

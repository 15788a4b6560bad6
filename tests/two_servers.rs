//! Two `serve` processes on one PostgreSQL, behind one FHIR base (as behind a load balancer):
//! a token issued by one works on the other; revoked on one, it is refused by both within the
//! revocation poll; a key rotated by `expediente keys rotate` is published by both, and tokens
//! it signs work on both while the old key's tokens still do.

mod common;

use common::acting::{cli, mint};
use common::{Engine, TestApp};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "http://fhir.clinic.example/fhir";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(app: &TestApp) -> (Server, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_expediente"))
        .args(["serve", "--database-url", &app.url, "--base-url", BASE])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("EXPEDIENTE_KEY_FILE", &app.key_file)
        .env(
            "EXPEDIENTE_AUDIT_JOURNAL",
            common::journal_dir(&app.key_file),
        )
        .env_remove("EXPEDIENTE_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    (Server(child), format!("http://127.0.0.1:{port}"))
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while !client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{base} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_with(client: &reqwest::Client, base: &str, token: &str) -> StatusCode {
    client
        .get(format!("{base}/fhir/Patient"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
}

/// Waits until `check` holds, at most `limit`; how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn kids(client: &reqwest::Client, base: &str) -> Vec<String> {
    let jwks: Value = client
        .get(format!("{base}/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn token(app: &TestApp) -> String {
    let t = cli(
        app,
        &[
            "token",
            "--client-id",
            "backend",
            "--scope",
            "system/*.rs",
            "--audience",
            BASE,
        ],
        "",
    )
    .expect("a token");
    t.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_tokens_revocations_and_keys() {
    let app = TestApp::spawn(Engine::Postgres).await;
    let secret = cli(
        &app,
        &[
            "client",
            "add",
            "--client-id",
            "backend",
            "--secret",
            "--scope",
            "system/*.rs",
        ],
        "",
    )
    .expect("client add");
    let secret = secret.trim().to_owned();
    let (_one, a) = serve(&app);
    let (_two, b) = serve(&app);
    let client = reqwest::Client::new();
    wait_healthy(&client, &a).await;
    wait_healthy(&client, &b).await;

    // One token, both servers.
    let t = token(&app);
    assert_eq!(read_with(&client, &a, &t).await, StatusCode::OK);
    assert_eq!(read_with(&client, &b, &t).await, StatusCode::OK);
    let other = token(&app);

    // Revoked on the first (RFC 7009), refused by both.
    let r = client
        .post(format!("{a}/auth/revoke"))
        .basic_auth("backend", Some(&secret))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(read_with(&client, &a, &t).await, StatusCode::UNAUTHORIZED);
    let took = within(Duration::from_secs(5), || async {
        read_with(&client, &b, &t).await == StatusCode::UNAUTHORIZED
    })
    .await;
    eprintln!("the other process refused the revoked token after {took:?}");
    // Only that token.
    assert_eq!(read_with(&client, &b, &other).await, StatusCode::OK);

    // A key rotated (by the command line, a third process): both publish it.
    let before = kids(&client, &a).await;
    assert_eq!(before, kids(&client, &b).await);
    let kid = cli(&app, &["keys", "rotate"], "").expect("keys rotate");
    let kid = kid.trim().to_owned();
    for base in [&a, &b] {
        within(Duration::from_secs(5), || async {
            kids(&client, base).await.contains(&kid)
        })
        .await;
        let published = kids(&client, base).await;
        for old in &before {
            assert!(published.contains(old), "the old key stays published");
        }
    }
    // Tokens signed with the new key work on both; the old key's tokens too.
    let fresh = token(&app);
    let header: Value = {
        use base64::Engine as _;
        let h = fresh.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(read_with(&client, &a, &fresh).await, StatusCode::OK);
    assert_eq!(read_with(&client, &b, &fresh).await, StatusCode::OK);
    assert_eq!(read_with(&client, &b, &other).await, StatusCode::OK);
    // A token for another FHIR base is refused by both.
    let elsewhere = mint(&app, "backend", "system/*.rs", &[]).unwrap();
    assert_eq!(
        read_with(&client, &a, &elsewhere).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        read_with(&client, &b, &elsewhere).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Two processes writing and reading at once, four writers each: the audit chain takes one
/// event per write and per read, without gaps or repeats, and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_keep_one_gapless_audit_chain() {
    let app = TestApp::spawn(Engine::Postgres).await;
    cli(
        &app,
        &[
            "client",
            "add",
            "--client-id",
            "writer",
            "--public",
            "--scope",
            "system/Patient.cruds",
        ],
        "",
    )
    .expect("client add");
    let t = cli(
        &app,
        &[
            "token",
            "--client-id",
            "writer",
            "--scope",
            "system/Patient.cruds",
            "--audience",
            BASE,
        ],
        "",
    )
    .expect("a token")
    .trim()
    .to_owned();
    let (_one, a) = serve(&app);
    let (_two, b) = serve(&app);
    let client = reqwest::Client::new();
    wait_healthy(&client, &a).await;
    wait_healthy(&client, &b).await;
    let before = app
        .db
        .fetch_all("SELECT coalesce(max(seq), 0) AS n FROM audit_logs", &[])
        .await
        .unwrap()[0]
        .bigint("n")
        .unwrap();
    let mut writers = Vec::new();
    for w in 0..8 {
        let base = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (client, t) = (client.clone(), t.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let body = serde_json::json!({"resourceType": "Patient", "name": [{"family": format!("P{w}x{i}")}]});
                let r = client
                    .post(format!("{base}/fhir/Patient"))
                    .bearer_auth(&t)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                assert_eq!(read_with(&client, &base, &t).await, StatusCode::OK);
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let count = |sql: &'static str| {
        let db = app.db.clone();
        async move {
            db.fetch_all(sql, &[]).await.unwrap()[0]
                .bigint("n")
                .unwrap()
        }
    };
    // The servers store their read events a few milliseconds after answering.
    let started = Instant::now();
    while count("SELECT count(*) AS n FROM audit_logs").await - before < 160 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "every event is stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = count("SELECT count(*) AS n FROM audit_logs").await;
    let distinct = count("SELECT count(DISTINCT seq) AS n FROM audit_logs").await;
    let last = count("SELECT max(seq) AS n FROM audit_logs").await;
    assert_eq!(
        (rows, distinct),
        (last, last),
        "one row per number, none missing"
    );
    assert_eq!(last - before, 160, "80 creates and 80 searches");
    let out = cli(&app, &["audit", "verify"], "").expect("the chain holds");
    assert!(out.contains("holds"), "{out}");
}

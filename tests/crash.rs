//! The server killed with SIGKILL in the middle of transactions: after a restart, each
//! transaction is there whole or not at all, every transaction the server acknowledged is
//! there, and SQLite's file passes its integrity check. The server runs as its own process (the
//! built `expediente` binary), killed at moments spread over the time one transaction takes.

mod common;

use common::{Engine, TestApp};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TRIALS: usize = 20;
const ENTRIES: usize = 200;
const TAG: &str = "http://crash.example/trial";

/// A server process on `url`.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(url: &str, key_file: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_expediente"))
            // (What a crash keeps is the subject here, not tokens.)
            .args([
                "serve",
                "--insecure-no-auth",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("DATABASE_URL", url)
            // The key the test's own server made the signing keys with.
            .env("EXPEDIENTE_KEY_FILE", key_file)
            .env("EXPEDIENTE_AUDIT_JOURNAL", common::journal_dir(key_file))
            .env_remove("EXPEDIENTE_KEY")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{base}/health")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server came up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Server { child, base }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bundle(trial: usize) -> Value {
    let entries: Vec<Value> = (0..ENTRIES)
        .map(|i| {
            json!({
                "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                "resource": {
                    "resourceType": "Patient",
                    "meta": {"tag": [{"system": TAG, "code": format!("t{trial}")}]},
                    "name": [{"family": format!("Trial{trial}"), "given": [format!("N{i}")]}],
                    "birthDate": "1980-01-01"
                },
                "request": {"method": "POST", "url": "Patient"}
            })
        })
        .collect();
    common::transaction(entries)
}

/// How many patients of `trial` the server holds.
async fn stored(base: &str, trial: usize) -> i64 {
    let r = reqwest::get(format!(
        "{base}/fhir/Patient?_tag={TAG}|t{trial}&_summary=count"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["total"].as_i64().unwrap()
}

/// Posts `trial`'s transaction; whether the server acknowledged it.
async fn post(base: String, trial: usize) -> bool {
    let res = reqwest::Client::new()
        .post(format!("{base}/fhir"))
        .header("content-type", "application/fhir+json")
        .body(bundle(trial).to_string())
        .send()
        .await;
    matches!(res, Ok(r) if r.status() == 200)
}

async fn a_killed_server_keeps_each_transaction_whole_or_not_at_all(engine: Engine) {
    // A database of its own, made and removed by the harness (its server is not used).
    let app = TestApp::spawn(engine).await;
    let url = app.url.clone();
    // How long one transaction takes, committed whole.
    let server = Server::start(&url, &app.key_file).await;
    let t0 = Instant::now();
    assert!(post(server.base.clone(), 0).await);
    let took = t0.elapsed();
    assert_eq!(stored(&server.base, 0).await, ENTRIES as i64);
    let mut server = server;
    let (mut lost, mut kept) = (0, 0);
    for trial in 1..=TRIALS {
        // Killed at 0 %, 5 %, ... 95 % of that time after the request left.
        let after = took.mul_f64((trial - 1) as f64 / TRIALS as f64);
        let request = tokio::spawn(post(server.base.clone(), trial));
        tokio::time::sleep(after).await;
        server.kill();
        let acknowledged = request.await.unwrap_or(false);
        server = Server::start(&url, &app.key_file).await;
        let n = stored(&server.base, trial).await;
        assert!(
            n == 0 || n == ENTRIES as i64,
            "trial {trial}: {n} of {ENTRIES} entries survived"
        );
        if acknowledged {
            assert_eq!(n, ENTRIES as i64, "trial {trial}: acknowledged, then lost");
        }
        if n == 0 {
            lost += 1;
        } else {
            kept += 1;
        }
    }
    println!("{engine:?}: {TRIALS} kills over {took:?}: {lost} transactions gone whole, {kept} kept whole");
    assert!(lost > 0, "some kills landed before a commit");
    // The earlier transaction is intact.
    assert_eq!(stored(&server.base, 0).await, ENTRIES as i64);
    // The audit chain holds, and every write that is there (every acknowledged one among
    // them) has its event: they committed together.
    let db = expediente::store::Db::connect(&url).await.unwrap();
    let report = expediente::audit::verify::verify(&db, None).await.unwrap();
    assert_eq!(report.broken, None, "the chain holds after {TRIALS} kills");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.fetch_all(sql, &[]).await.unwrap()[0]
                .bigint("n")
                .unwrap()
        }
    };
    let created = count(
        "SELECT count(*) AS n FROM audit_logs WHERE action = 'create' AND resource_type = 'Patient'",
    )
    .await;
    assert_eq!(created, count("SELECT count(*) AS n FROM patients").await);
    db.close().await;
    server.kill();
    if engine == Engine::Sqlite {
        let db = expediente::store::Db::connect(&url).await.unwrap();
        let check = db.fetch_all("PRAGMA integrity_check", &[]).await.unwrap();
        assert_eq!(check[0].string("integrity_check").unwrap(), "ok");
        db.close().await;
    }
}

on_both_engines!(
    a_killed_server_keeps_each_transaction_whole_or_not_at_all,
    a_killed_server_loses_the_event_of_no_answered_read
);

/// Reads answered until SIGKILL: each one's event was in the journal before its answer left, so
/// the next server to start stores those the killed one had not, and none is lost.
async fn a_killed_server_loses_the_event_of_no_answered_read(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let server = Server::start(&app.url, &app.key_file).await;
    let client = reqwest::Client::new();
    let made = client
        .post(format!("{}/fhir/Patient", server.base))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "name": [{"family": "Leída"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let id = made.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (client, answered) = (client.clone(), answered.clone());
            let url = format!("{}/fhir/Patient/{id}", server.base);
            tokio::spawn(async move {
                loop {
                    let rid = uuid::Uuid::new_v4().to_string();
                    match client.get(&url).header("x-request-id", &rid).send().await {
                        Ok(r) if r.status() == 200 => answered.lock().unwrap().push(rid),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    for r in readers {
        r.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 50, "{} reads answered", answered.len());
    let stored = || async {
        let rows = app
            .db
            .fetch_all(
                "SELECT request_id FROM audit_logs WHERE action = 'read'",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .filter_map(|r| r.text("request_id").unwrap())
            .collect::<HashSet<String>>()
    };
    let before = stored().await;
    let waiting = answered.iter().filter(|r| !before.contains(*r)).count();
    assert!(waiting > 0, "the kill left events in the journal only");
    let server = Server::start(&app.url, &app.key_file).await;
    let after = stored().await;
    let lost: Vec<_> = answered.iter().filter(|r| !after.contains(*r)).collect();
    assert!(
        lost.is_empty(),
        "{} answered reads lost their event",
        lost.len()
    );
    println!(
        "{engine:?}: {} reads answered, {waiting} of their events stored from the journal",
        answered.len()
    );
    // The killed server's journal file is gone; the running servers' remain.
    let files = std::fs::read_dir(common::journal_dir(&app.key_file))
        .unwrap()
        .count();
    assert_eq!(
        files, 2,
        "the test's own server's journal and the new one's"
    );
    let report = expediente::audit::verify::verify(&app.db, None)
        .await
        .unwrap();
    assert_eq!(report.broken, None);
    server.kill();
}

/// SQLite's disk full (its page limit reached, as a full disk would): writes are answered 503
/// and change nothing, reads go on, and once there is room again writes succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_full_disk_refuses_writes_with_503_and_loses_nothing() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let kept = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Antes"}]}))
        .await;
    let patients = app.count("patients").await;
    // The writer's connection may grow the file no further.
    let pages = app.db.fetch_all("PRAGMA page_count", &[]).await.unwrap()[0]
        .int("page_count")
        .unwrap();
    app.db
        .execute(&format!("PRAGMA max_page_count = {pages}"), &[])
        .await
        .unwrap();
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(200_000)}]});
    let r = app.post("/fhir/Patient", &big).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.outcome()[0].0, "transient");
    assert_eq!(app.count("patients").await, patients, "nothing was written");
    let id = kept["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.status, 200);
    app.db
        .execute("PRAGMA max_page_count = 1073741823", &[])
        .await
        .unwrap();
    let r = app.post("/fhir/Patient", &big).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

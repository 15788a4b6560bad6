//! Writes racing each other: conditional creates with the same criteria make one resource (also
//! across two server processes on one PostgreSQL), parallel updates make a gapless version line,
//! and transactions over the same resources in opposite order neither deadlock nor corrupt.

mod common;

use common::{Engine, TestApp};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn patient(mrn: &str, n: usize) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "http://clinic.example/mrn", "value": mrn}],
           "name": [{"family": format!("Carrera{n}")}]})
}

/// Sends `n` conditional creates with the same criteria at once to the servers at `bases` (in
/// turn) and checks that exactly one created and every other answered 200 with that resource.
async fn race_conditional_creates(client: &reqwest::Client, bases: &[String], n: usize) -> String {
    let sends = (0..n).map(|i| {
        let url = format!("{}/fhir/Patient", bases[i % bases.len()]);
        let body = patient("race-1", i).to_string();
        async move {
            let r = client
                .post(url)
                .header("content-type", "application/fhir+json")
                .header(
                    "if-none-exist",
                    "identifier=http://clinic.example/mrn|race-1",
                )
                .body(body)
                .send()
                .await
                .expect("send");
            let status = r.status();
            let v: Value = r.json().await.expect("json");
            (status, v)
        }
    });
    let replies = join_all(sends).await;
    let created: Vec<&Value> = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(created.len(), 1, "exactly one create: {replies:?}");
    let id = created[0]["id"].as_str().unwrap().to_owned();
    for (s, v) in &replies {
        assert!(
            *s == StatusCode::CREATED || *s == StatusCode::OK,
            "{s}: {v}"
        );
        assert_eq!(
            v["id"].as_str(),
            Some(id.as_str()),
            "every answer is the one resource"
        );
    }
    id
}

async fn parallel_conditional_creates_make_one_resource(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    race_conditional_creates(&app.client, std::slice::from_ref(&app.base), 12).await;
    assert_eq!(app.count("patients").await, 1);
    // In transactions too.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:7e57ab1e-0000-4000-8000-000000000001",
        "resource": patient("race-2", 0),
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://clinic.example/mrn|race-2"}}]});
    let replies = join_all((0..8).map(|_| app.post("/fhir", &bundle))).await;
    let statuses: Vec<String> = replies
        .iter()
        .map(|r| {
            r.body["entry"][0]["response"]["status"]
                .as_str()
                .unwrap_or(&r.text)
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "201 Created").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "200 OK").count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.count("patients").await, 2);
}

async fn parallel_updates_make_a_gapless_version_line(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    common::stub(&app, "Patient", "shared").await;
    let n = 10;
    let replies = join_all((0..n).map(|i| {
        let mut body = patient("upd", i);
        body["id"] = json!("shared");
        let app = &app;
        async move { app.put("/fhir/Patient/shared", &body).await }
    }))
    .await;
    let mut versions = BTreeSet::new();
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        versions.insert(
            r.body["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
    }
    let expected: BTreeSet<i64> = (2..=n as i64 + 1).collect();
    assert_eq!(
        versions, expected,
        "each update its own version, none skipped"
    );
    let history = app
        .get("/fhir/Patient/shared/_history?_count=100")
        .await
        .body;
    assert_eq!(history["total"], n as i64 + 1);
    // The current version is the last one, with the content of the update that made it.
    let now = app.get("/fhir/Patient/shared").await.body;
    assert_eq!(now["meta"]["versionId"], json!((n + 1).to_string()));
    let last = replies
        .iter()
        .find(|r| r.body["meta"]["versionId"] == json!((n + 1).to_string()))
        .unwrap();
    assert_eq!(now["name"], last.body["name"]);
    // With a stale If-Match, every racer but one is refused.
    let replies = join_all((0..6).map(|i| {
        let mut body = patient("upd", 100 + i);
        body["id"] = json!("shared");
        let app = &app;
        let tag = format!("W/\"{}\"", n + 1);
        async move {
            app.send(
                Method::PUT,
                "/fhir/Patient/shared",
                Some(&body),
                &[("if-match", tag.as_str())],
            )
            .await
        }
    }))
    .await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let stale = replies
        .iter()
        .filter(|r| r.status == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!(
        (ok, stale),
        (1, 5),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

async fn opposite_order_transactions_neither_deadlock_nor_corrupt(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for id in ["a", "b", "c"] {
        common::stub(&app, "Patient", id).await;
    }
    let put = |id: &str, n: usize| {
        json!({"resource": {"resourceType": "Patient", "id": id, "name": [{"family": format!("T{n}")}]},
               "request": {"method": "PUT", "url": format!("Patient/{id}")}})
    };
    let rounds = 6;
    let started = Instant::now();
    let replies = join_all((0..rounds).map(|n| {
        let ids: &[&str] = if n % 2 == 0 {
            &["a", "b", "c"]
        } else {
            &["c", "b", "a"]
        };
        let bundle = json!({"resourceType": "Bundle", "type": "transaction",
                            "entry": ids.iter().map(|id| put(id, n)).collect::<Vec<_>>()});
        let app = &app;
        async move { app.post("/fhir", &bundle).await }
    }))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the transactions hung"
    );
    let mut done = 0;
    for r in &replies {
        match r.status {
            StatusCode::OK => done += 1,
            StatusCode::CONFLICT => assert_eq!(r.outcome()[0].0, "transient", "{}", r.text),
            other => panic!("{other}: {}", r.text),
        }
    }
    assert!(done >= 1);
    // Every resource moved once per transaction that committed, and all three carry the name
    // the same (last) transaction gave them: none was half applied.
    let mut names = BTreeSet::new();
    for id in ["a", "b", "c"] {
        let p = app.get(&format!("/fhir/Patient/{id}")).await.body;
        assert_eq!(
            p["meta"]["versionId"],
            json!((1 + done).to_string()),
            "{id}"
        );
        names.insert(p["name"][0]["family"].as_str().unwrap().to_owned());
        let h = app
            .get(&format!("/fhir/Patient/{id}/_history?_count=100"))
            .await
            .body;
        assert_eq!(h["total"], 1 + done as i64);
    }
    assert_eq!(names.len(), 1, "{names:?}");
}

/// A server process, killed when dropped (also when the test fails half-way).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server process of the built binary on `url`, and its base address once it answers.
fn serve(url: &str) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_expediente"))
        .args([
            "serve",
            // (Concurrent writes are the subject here, not tokens.)
            "--insecure-no-auth",
            "--database-url",
            url,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env(
            "EXPEDIENTE_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .env(
            "EXPEDIENTE_AUDIT_JOURNAL",
            std::env::temp_dir().join(format!("expediente-test-{port}.audit")),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    (Server(child), format!("http://127.0.0.1:{port}"))
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{base} never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_server_processes_on_one_postgres_make_one_resource() {
    let admin_url = common::postgres_admin_url();
    let admin = expediente::store::Db::connect(&admin_url)
        .await
        .expect("PostgreSQL is reachable; its tests are never skipped");
    let name = format!("expediente_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let client = reqwest::Client::new();
    // One after the other: each migrates the database when it starts.
    let (one, base_one) = serve(&url);
    wait_healthy(&client, &base_one).await;
    let (two, base_two) = serve(&url);
    wait_healthy(&client, &base_two).await;
    let id = race_conditional_creates(&client, &[base_one.clone(), base_two.clone()], 16).await;
    for base in [&base_one, &base_two] {
        let r: Value = client
            .get(format!(
                "{base}/fhir/Patient?identifier=http://clinic.example/mrn|race-1"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["total"], 1);
        assert_eq!(r["entry"][0]["resource"]["id"].as_str(), Some(id.as_str()));
    }
    drop((one, two));
    admin
        .execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[])
        .await
        .unwrap();
    admin.close().await;
}

on_both_engines!(
    parallel_conditional_creates_make_one_resource,
    parallel_updates_make_a_gapless_version_line,
    opposite_order_transactions_neither_deadlock_nor_corrupt,
);

#[tokio::test]
async fn locks_taken_together_are_held_until_the_transaction_ends() {
    let app = TestApp::spawn(Engine::Postgres).await;
    // Does another transaction get lock `k` at once? (It does not wait for it.)
    let free = |k: i64| {
        let db = app.db.clone();
        async move {
            let mut other = db.begin().await.unwrap();
            let r = other
                .fetch_optional("SELECT pg_try_advisory_xact_lock(?) AS got", &[k.into()])
                .await
                .unwrap()
                .unwrap();
            let got = r.bool("got").unwrap().unwrap();
            other.commit().await.unwrap();
            got
        }
    };
    assert!(free(7).await && free(-3).await && free(11).await);
    let mut tx = app.db.begin().await.unwrap();
    tx.lock_keys(&[11, -3, 7, 7]).await.unwrap();
    // Taken again, alone or with others: nothing waits on its own locks.
    tx.lock_key(7).await.unwrap();
    tx.lock_keys(&[-3, 12]).await.unwrap();
    for k in [7, -3, 11, 12] {
        assert!(!free(k).await, "lock {k} is held");
    }
    assert!(free(8).await, "only the keys asked for are held");
    tx.commit().await.unwrap();
    for k in [7, -3, 11, 12] {
        assert!(free(k).await, "lock {k} ends with its transaction");
    }
}

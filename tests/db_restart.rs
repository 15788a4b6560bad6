//! PostgreSQL restarted under a write load: while the database is away the server answers 503
//! OperationOutcomes (never a 500, never a hang), it serves again by itself within five seconds
//! of the database's return, and no write it acknowledged is lost. The cluster on this machine
//! is stopped and started with `pg_ctlcluster` (as `.ci/run` starts it): this file holds this
//! one test, so that no other test runs while the database is away.

mod common;

use common::{Engine, TestApp};
use serde_json::json;
use std::time::{Duration, Instant};

/// Runs `pg_ctlcluster VERSION main ACTION` for the one cluster of this machine.
fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a PostgreSQL cluster on this machine (/etc/postgresql)")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a PostgreSQL version");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action}");
}

#[derive(Debug)]
struct Answer {
    at: Instant,
    status: u16,
    outcome: Option<String>,
    id: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_under_writes_answers_503_and_loses_no_acknowledged_write() {
    let app = TestApp::spawn(Engine::Postgres).await;
    let base = app.base.clone();
    let token = app.token.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut answers = Vec::new();
        let mut n = 0;
        while !*stopped.borrow_and_update() {
            n += 1;
            let patient =
                json!({"resourceType": "Patient", "name": [{"family": format!("Reinicio{n}")}]});
            let sent = client
                .post(format!("{base}/fhir/Patient"))
                .bearer_auth(&token)
                .header("content-type", "application/fhir+json")
                .body(patient.to_string())
                .send()
                .await;
            let answer = match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    Answer {
                        at: Instant::now(),
                        status,
                        outcome: (body["resourceType"] == "OperationOutcome")
                            .then(|| body["issue"][0]["code"].as_str().unwrap_or("").to_owned()),
                        id: body["id"]
                            .as_str()
                            .map(str::to_owned)
                            .filter(|_| status == 201),
                    }
                }
                Err(e) => panic!("request {n} got no answer: {e}"),
            };
            answers.push(answer);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(|| cluster("stop"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| cluster("start"))
        .await
        .unwrap();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _ = stop.send(true);
    let answers = writer.await.unwrap();

    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 201).collect();
    assert!(
        !refused.is_empty(),
        "some writes came while the database was away"
    );
    for a in &refused {
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.outcome.as_deref(), Some("transient"), "{a:?}");
    }
    let first_after = answers
        .iter()
        .find(|a| a.at > back && a.status == 201)
        .expect("writes succeed again");
    assert!(
        first_after.at.duration_since(back) < Duration::from_secs(5),
        "served again {:?} after the database returned",
        first_after.at.duration_since(back)
    );
    assert!(answers.iter().rev().take(5).all(|a| a.status == 201));
    // Every acknowledged write is there.
    let acknowledged: Vec<&String> = answers.iter().filter_map(|a| a.id.as_ref()).collect();
    for id in &acknowledged {
        assert_eq!(
            app.get(&format!("/fhir/Patient/{id}")).await.status,
            200,
            "Patient/{id}"
        );
    }
    println!(
        "{} writes: {} acknowledged, {} answered 503 while the database was away",
        answers.len(),
        acknowledged.len(),
        refused.len()
    );
}

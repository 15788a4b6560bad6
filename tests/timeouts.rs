//! Every statement runs under a timeout, and a request that is stopped (its client left, or it
//! ran past the request timeout) leaves no statement of its own running in the database.

mod common;

use common::{Engine, TestApp};
use expediente::store::{Db, StoreError};
use std::time::{Duration, Instant};

/// A statement that runs until it is stopped.
fn endless(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
        }
        Engine::Postgres => "SELECT 1 AS n FROM pg_sleep(600)",
    }
}

fn settings(statement: Duration, request: Duration) -> expediente::Settings {
    expediente::Settings {
        statement_timeout: statement,
        request_timeout: request,
        ..Default::default()
    }
}

async fn statements_past_the_timeout_are_ended(engine: Engine) {
    let app = TestApp::spawn_settings(
        engine,
        settings(Duration::from_millis(300), Duration::from_secs(60)),
    )
    .await;
    // A short statement runs.
    let one = app.db.fetch_all("SELECT 1 AS n", &[]).await.unwrap();
    assert_eq!(one[0].int("n").unwrap(), 1);
    // A read outside any transaction is ended, and so is one inside a write transaction.
    let started = Instant::now();
    let read = app.db.fetch_all(endless(engine), &[]).await;
    assert!(
        matches!(read, Err(StoreError::TimedOut)),
        "{:?}",
        read.err()
    );
    let mut tx = app.db.begin().await.unwrap();
    let in_tx = tx.fetch_all(endless(engine), &[]).await;
    assert!(
        matches!(in_tx, Err(StoreError::TimedOut)),
        "{:?}",
        in_tx.err()
    );
    drop(tx);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connections serve the next statements.
    let mut tx = app.db.begin().await.unwrap();
    assert_eq!(
        tx.fetch_all("SELECT 2 AS n", &[]).await.unwrap()[0]
            .int("n")
            .unwrap(),
        2
    );
    tx.commit().await.unwrap();
}

/// Reads whose future is dropped (their request cancelled) end their statements: with every
/// read connection taken by an endless statement and then dropped, the next read still
/// answers at once. A transaction dropped the same way frees SQLite's single writer.
async fn dropped_statements_give_their_connections_back(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut readers = Vec::new();
    for _ in 0..20 {
        let db: Db = app.db.clone();
        readers.push(tokio::spawn(async move {
            let _ = db.fetch_all(endless(engine), &[]).await;
        }));
    }
    let db = app.db.clone();
    let writer = tokio::spawn(async move {
        let mut tx = db.begin().await.unwrap();
        let _ = tx.fetch_all(endless(engine), &[]).await;
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in &readers {
        assert!(!r.is_finished(), "the endless statements were running");
    }
    for r in readers {
        r.abort();
    }
    writer.abort();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tx = app.db.begin().await.unwrap();
        tx.fetch_all("SELECT 3 AS n", &[]).await.unwrap();
        tx.commit().await.unwrap();
        app.db.fetch_all("SELECT 4 AS n", &[]).await.unwrap()
    })
    .await
    .expect("the connections came back");
    assert_eq!(answered[0].int("n").unwrap(), 4);
    if engine == Engine::Postgres {
        assert_eq!(running_sleeps(&app).await, 0);
    }
}

/// PostgreSQL backends of this database still running `pg_sleep` or waiting for a lock, after
/// giving them up to five seconds to end.
async fn running_sleeps(app: &TestApp) -> i64 {
    let mut n = 0;
    for _ in 0..50 {
        n = app
            .db
            .fetch_all(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state = 'active' \
                 AND (query LIKE '%pg_sleep%' OR wait_event_type = 'Lock')",
                &[],
            )
            .await
            .unwrap()[0]
            .bigint("n")
            .unwrap();
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n
}

/// Holds an exclusive lock on the patients table from a connection of its own, so that a
/// search of patients waits for it, until `release`.
async fn lock_patients(
    app: &TestApp,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let url = app.url.clone();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let db = Db::connect(&url).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.execute("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE", &[])
            .await
            .unwrap();
        let _ = locked.send(());
        let _ = released.await;
        drop(tx);
        db.close().await;
    });
    is_locked.await.unwrap();
    (holder, release)
}

/// Backends of this database waiting for a lock (the search behind [`lock_patients`]), after
/// waiting up to five seconds for one to appear.
async fn waiting_backends(app: &TestApp) -> i64 {
    for _ in 0..50 {
        let n = app
            .db
            .fetch_all(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()[0]
            .bigint("n")
            .unwrap();
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_request_whose_client_leaves_leaves_no_statement_behind() {
    let app = TestApp::spawn(Engine::Postgres).await;
    let (holder, release) = lock_patients(&app).await;
    let url = app.url("/fhir/Patient?family=Nadie");
    let client = app.client.clone();
    let request = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    assert_eq!(
        waiting_backends(&app).await,
        1,
        "the search waits for the lock"
    );
    // The client goes away: its connection closes.
    request.abort();
    assert_eq!(running_sleeps(&app).await, 0, "its statement was ended");
    let _ = release.send(());
    holder.await.unwrap();
    // The server goes on serving.
    assert_eq!(app.get("/fhir/Patient?family=Nadie").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_request_past_the_request_timeout_is_stopped_with_an_outcome() {
    let app = TestApp::spawn_settings(
        Engine::Postgres,
        settings(Duration::from_secs(30), Duration::from_secs(1)),
    )
    .await;
    let patients = app.count("patients").await;
    let (holder, release) = lock_patients(&app).await;
    let started = Instant::now();
    let r = app.get("/fhir/Patient?family=Nadie").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.outcome()[0].0, "timeout");
    assert_eq!(r.body["id"], r.header("x-request-id").unwrap().as_str());
    assert_eq!(running_sleeps(&app).await, 0, "its statement was ended");
    // A write stopped the same way changed nothing.
    let created = app
        .post(
            "/fhir/Patient",
            &serde_json::json!({"resourceType": "Patient", "name": [{"family": "Tarde"}]}),
        )
        .await;
    assert_eq!(created.status, 503, "{}", created.text);
    assert_eq!(running_sleeps(&app).await, 0);
    let _ = release.send(());
    holder.await.unwrap();
    assert_eq!(app.count("patients").await, patients);
    assert_eq!(app.get("/fhir/Patient?family=Nadie").await.status, 200);
}

/// A read that runs longer than SQLite's reads may on their request's thread (0.5 ms) is run
/// again elsewhere and answers in full; one that runs past the timeout is still ended. On
/// PostgreSQL the same reads answer the same.
async fn long_reads_answer_in_full_within_the_timeout(engine: Engine) {
    let app = TestApp::spawn_settings(
        engine,
        settings(Duration::from_secs(20), Duration::from_secs(60)),
    )
    .await;
    let count = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
                 SELECT count(*) AS n, sum(x) AS s FROM c";
    for n in [10_i64, 300_000] {
        let started = Instant::now();
        let row = app.db.fetch_all(count, &[n.into()]).await.unwrap();
        assert_eq!(row[0].bigint("n").unwrap(), n);
        assert_eq!(row[0].bigint("s").unwrap(), n * (n + 1) / 2);
        if n > 10 {
            assert!(
                started.elapsed() > Duration::from_millis(1),
                "the long read ran past the budget: {:?}",
                started.elapsed()
            );
        }
    }
    // Many at once, more than there are read connections, all answered in full.
    let reads = (0..20).map(|_| {
        let db = app.db.clone();
        tokio::spawn(async move { db.fetch_all(count, &[100_000_i64.into()]).await })
    });
    for r in futures_util::future::join_all(reads).await {
        assert_eq!(r.unwrap().unwrap()[0].bigint("n").unwrap(), 100_000);
    }
}

/// Long reads do not hold the runtime's threads: with endless reads running on most of the read
/// connections, a short read still answers at once, and the endless ones end when dropped.
async fn long_reads_leave_the_runtime_to_the_others(engine: Engine) {
    let app = TestApp::spawn_settings(
        engine,
        settings(Duration::from_secs(60), Duration::from_secs(60)),
    )
    .await;
    let endless: Vec<_> = (0..6)
        .map(|_| {
            let db = app.db.clone();
            tokio::spawn(async move { db.fetch_all(endless(engine), &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let one = app.db.fetch_all("SELECT 1 AS n", &[]).await.unwrap();
        assert_eq!(one[0].int("n").unwrap(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a short read waited {:?} behind the long ones",
            started.elapsed()
        );
    }
    for e in &endless {
        assert!(!e.is_finished(), "the endless reads were running");
    }
    for e in endless {
        e.abort();
    }
}

on_both_engines!(
    statements_past_the_timeout_are_ended,
    long_reads_leave_the_runtime_to_the_others,
    dropped_statements_give_their_connections_back,
    long_reads_answer_in_full_within_the_timeout,
);

//! The audit journal a server left when it stopped without storing it: the next start stores
//! its events once (none twice, even from two files), leaves the files of other databases and
//! of servers still running alone, and skips a line cut short by the crash.

mod common;

use common::{Engine, TestApp};
use expediente::audit::{chain, journal, verify, Event};
use uuid::Uuid;

fn event(request_id: &str) -> Event {
    Event {
        time: "2026-12-06T10:00:00.000Z".into(),
        category: "rest".into(),
        action: "read".into(),
        outcome: "success".into(),
        resource_type: Some("Patient".into()),
        resource_id: Some("journaled".into()),
        request_id: Some(request_id.into()),
        ..Event::default()
    }
}

async fn rows_of(app: &TestApp, request_id: &str) -> i64 {
    app.db
        .fetch_all(
            "SELECT count(*) AS n FROM audit_logs WHERE request_id = ?",
            &[request_id.into()],
        )
        .await
        .unwrap()[0]
        .bigint("n")
        .unwrap()
}

async fn journaled_events_are_stored_once_and_only_into_their_database(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let instance = app
        .db
        .fetch_all("SELECT instance FROM audit_chain WHERE id = 1", &[])
        .await
        .unwrap()[0]
        .string("instance")
        .unwrap();
    // An event stored before the crash, one that was not, and a line the crash cut short.
    let mut stored = event("journal-stored");
    stored.id = Some(Uuid::now_v7());
    let mut tx = app.db.begin().await.unwrap();
    chain::append(&mut tx, std::slice::from_ref(&stored))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let waiting = event("journal-waiting");
    let text = format!(
        "{}\t{}\n{}\t{}\n{}\t{{\"time\":\"2026-12",
        stored.id.unwrap(),
        stored.text(),
        Uuid::now_v7(),
        waiting.text(),
        Uuid::now_v7(),
    );
    let dir = std::env::temp_dir().join(format!("expediente-journal-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let left = dir.join(format!("{instance}-left.journal"));
    let other_database = dir.join("0123456789abcdef-left.journal");
    let running = dir.join(format!("{instance}-running.journal"));
    for f in [&left, &other_database, &running] {
        std::fs::write(f, &text).unwrap();
    }
    // The server writing `running` holds its lock.
    let held = std::fs::File::open(&running).unwrap();
    held.try_lock().unwrap();

    assert_eq!(journal::recover(&app.db, &dir).await.unwrap(), 1);
    assert_eq!(rows_of(&app, "journal-stored").await, 1, "not stored twice");
    assert_eq!(rows_of(&app, "journal-waiting").await, 1);
    assert!(!left.exists(), "a stored journal file is removed");
    assert!(other_database.exists() && running.exists());

    // Once its server has stopped, the other file's events are found stored already.
    drop(held);
    assert_eq!(journal::recover(&app.db, &dir).await.unwrap(), 0);
    assert_eq!(rows_of(&app, "journal-waiting").await, 1);
    assert!(!running.exists());
    assert!(
        other_database.exists(),
        "another database's file is left alone"
    );

    let report = verify::verify(&app.db, None).await.unwrap();
    assert_eq!(report.broken, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

on_both_engines!(journaled_events_are_stored_once_and_only_into_their_database);

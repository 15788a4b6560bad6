//! The store's own tests, on SQLite (the suite in tests/ runs every query on both engines).

use super::*;
use chrono::{DateTime, NaiveDate, Utc};
use queue::Queued;
use std::time::Duration;

#[tokio::test]
async fn index_rows_join_the_open_insert_but_never_pass_a_statement_on_their_table() {
    let path = std::env::temp_dir().join(format!("expediente-queue-{}.db", Uuid::new_v4()));
    let db = Db::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let (r, other) = (Uuid::new_v4(), Uuid::new_v4());
    let cols = ["resource_type", "row_id", "param", "value", "exact"];
    let row = |id: Uuid, v: &str| -> Vec<Arg> {
        vec![
            "Patient".into(),
            id.into(),
            "name".into(),
            v.into(),
            v.into(),
        ]
    };
    let mut tx = db.begin().await.unwrap();
    tx.insert_detached("search_strings", &cols, &row(r, "a"))
        .await
        .unwrap();
    tx.queue("UPDATE patients SET deleted_at = NULL WHERE 0 = 1", &[])
        .await
        .unwrap();
    tx.insert_detached("search_strings", &cols, &row(other, "c"))
        .await
        .unwrap();
    tx.queue("DELETE FROM search_strings WHERE row_id = ?", &[r.into()])
        .await
        .unwrap();
    tx.insert_detached("search_strings", &cols, &row(r, "b"))
        .await
        .unwrap();
    let rows: Vec<usize> = tx.queued.iter().map(|q| q.rows).collect();
    assert_eq!(
        rows,
        vec![2, 1, 1, 1],
        "the second row joined the first INSERT"
    );
    tx.commit().await.unwrap();
    let values: Vec<(String, String)> = db
        .fetch_all(
            "SELECT row_id, value FROM search_strings ORDER BY value",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|x| (x.string("row_id").unwrap(), x.string("value").unwrap()))
        .collect();
    assert_eq!(
        values,
        vec![(r.to_string(), "b".into()), (other.to_string(), "c".into())]
    );
    db.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A migrated SQLite database in a file of its own, and the file.
async fn sqlite_db() -> (Db, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("expediente-store-{}.db", Uuid::new_v4()));
    let db = Db::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    (db, path)
}

async fn drop_sqlite_db(db: Db, path: std::path::PathBuf) {
    db.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

async fn roles(db: &Db) -> Vec<String> {
    db.fetch_all("SELECT name FROM roles ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.string("name").unwrap())
        .collect()
}

#[tokio::test]
async fn a_failed_queued_write_fails_the_next_read_or_the_commit_and_nothing_stays() {
    let (db, path) = sqlite_db().await;
    let before = roles(&db).await;
    let insert = "INSERT INTO roles (id, name) VALUES (?, ?)";
    // The second row repeats the unique name of the first: the failure is found when the
    // queued writes run, and answered to the read after them.
    let mut tx = db.begin().await.unwrap();
    for _ in 0..2 {
        tx.queue(insert, &[Uuid::new_v4().into(), "archivist".into()])
            .await
            .unwrap();
    }
    let read = tx.fetch_all("SELECT name FROM roles", &[]).await;
    assert!(
        matches!(read, Err(StoreError::Conflict)),
        "{:?}",
        read.err()
    );
    drop(tx);
    // The same at commit.
    let mut tx = db.begin().await.unwrap();
    for _ in 0..2 {
        tx.queue(insert, &[Uuid::new_v4().into(), "archivist".into()])
            .await
            .unwrap();
    }
    let commit = tx.commit().await;
    assert!(matches!(commit, Err(StoreError::Conflict)), "{commit:?}");
    assert_eq!(roles(&db).await, before);
    // A transaction dropped open rolls back; the next one runs and commits.
    let mut tx = db.begin().await.unwrap();
    tx.queue(insert, &[Uuid::new_v4().into(), "archivist".into()])
        .await
        .unwrap();
    drop(tx);
    assert_eq!(roles(&db).await, before);
    let mut tx = db.begin().await.unwrap();
    tx.queue(insert, &[Uuid::new_v4().into(), "archivist".into()])
        .await
        .unwrap();
    // A read inside the transaction sees its own queued write.
    let own = tx
        .fetch_optional(
            "SELECT name FROM roles WHERE name = ?",
            &["archivist".into()],
        )
        .await
        .unwrap()
        .map(|r| r.string("name").unwrap());
    assert_eq!(own.as_deref(), Some("archivist"));
    tx.commit().await.unwrap();
    let mut after = before.clone();
    after.push("archivist".into());
    after.sort();
    assert_eq!(roles(&db).await, after);
    drop_sqlite_db(db, path).await;
}

#[tokio::test]
async fn a_queued_write_stores_each_kind_of_value_as_a_write_sent_at_once_does() {
    let (db, path) = sqlite_db().await;
    let at = DateTime::parse_from_rfc3339("2026-05-02T08:00:00.125Z")
        .unwrap()
        .with_timezone(&Utc);
    let values = vec![
        Arg::Json(serde_json::json!({"b": [1.50, "ñ \"x\""], "a": null})),
        Arg::OptJson(Some(serde_json::json!(1e-22))),
        Arg::OptJson(None),
        Arg::Uuid(Uuid::new_v4()),
        Arg::OptUuid(Some(Uuid::new_v4())),
        Arg::OptUuid(None),
        Arg::Timestamp(Some(at)),
        Arg::Date(NaiveDate::from_ymd_opt(1974, 12, 25)),
        Arg::Decimal(Some("37.50".into())),
    ];
    let cols = (0..values.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>();
    let insert = format!(
        "INSERT INTO vals (how, {}) VALUES (?, {})",
        cols.join(", "),
        vec!["?"; values.len()].join(", ")
    );
    let mut tx = db.begin().await.unwrap();
    tx.execute(
        &format!("CREATE TEMP TABLE vals (how, {})", cols.join(", ")),
        &[],
    )
    .await
    .unwrap();
    let with = |how: &str| {
        let mut args = vec![Arg::from(how)];
        args.extend(values.iter().cloned());
        args
    };
    let names: Vec<&str> = std::iter::once("how")
        .chain(cols.iter().map(String::as_str))
        .collect();
    tx.insert("vals", &names, &with("queued")).await.unwrap();
    tx.execute(&insert, &with("at once")).await.unwrap();
    let typed = cols
        .iter()
        .map(|c| format!("typeof({c}) || ':' || coalesce({c}, 'NULL') AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = tx
        .fetch_all(&format!("SELECT how, {typed} FROM vals ORDER BY how"), &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let stored = |i: usize| {
        cols.iter()
            .map(|c| rows[i].string(c).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].string("how").unwrap(), "at once");
    assert_eq!(stored(1), stored(0));
    assert_eq!(stored(0)[0], r#"text:{"b":[1.5,"ñ \"x\""],"a":null}"#);
    assert_eq!(stored(0)[6], "text:2026-05-02T08:00:00.125Z");
    assert_eq!(stored(0)[7], "text:1974-12-25");
    drop_sqlite_db(db, path).await;
}

#[tokio::test]
async fn a_held_write_takes_amendments_until_it_is_sent_and_none_after() {
    let (db, path) = sqlite_db().await;
    let insert = ["id", "name", "description"];
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut tx = db.begin().await.unwrap();
    let first = tx
        .insert_held(
            "roles",
            &insert,
            &[a.into(), "first".into(), Arg::Text(None)],
        )
        .await
        .unwrap();
    // The second row joins the first's INSERT; each handle still finds its own values.
    let second = tx
        .insert_held(
            "roles",
            &insert,
            &[b.into(), "second".into(), Arg::Text(None)],
        )
        .await
        .unwrap();
    assert_eq!(tx.queued.len(), 1);
    assert!(tx.amend(second, 2, "two".into()));
    assert!(tx.amend(first, 2, "one".into()));
    assert!(!tx.amend(first, 3, "past the row".into()));
    tx.flush().await.unwrap();
    // Sent: the values are the database's now.
    assert!(!tx.amend(first, 2, "late".into()));
    tx.commit().await.unwrap();
    let rows: Vec<(String, String)> = db
        .fetch_all(
            "SELECT name, description FROM roles WHERE name IN ('first', 'second') ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.string("name").unwrap(), r.string("description").unwrap()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("first".to_owned(), "one".to_owned()),
            ("second".to_owned(), "two".to_owned())
        ]
    );
    drop_sqlite_db(db, path).await;
}

#[tokio::test]
async fn a_transaction_dropped_after_its_begin_leaves_no_transaction_open() {
    let (db, path) = sqlite_db().await;
    {
        // The BEGIN is sent, not waited for; then the caller goes.
        let _tx = db.begin().await.unwrap();
    }
    let mut tx = db.begin().await.unwrap();
    tx.queue(
        "INSERT INTO roles (id, name) VALUES (?, ?)",
        &[Uuid::new_v4().into(), "archivist".into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(roles(&db).await.contains(&"archivist".to_owned()));
    drop_sqlite_db(db, path).await;
}

#[test]
fn a_shared_fact_is_forgotten_after_a_while() {
    let shared = Shared::default();
    let at = Instant::now();
    shared.put("catalog:x".into(), 7u32, at);
    assert_eq!(shared.get::<u32>("catalog:x", at), Some(7));
    assert_eq!(shared.get::<u32>("catalog:x", at + SHARED_FOR / 2), Some(7));
    assert_eq!(
        shared.get::<u32>("catalog:x", at + SHARED_FOR + Duration::from_secs(1)),
        None
    );
    assert_eq!(shared.get::<u32>("catalog:y", at), None);
    // Another type under the key is not it.
    assert_eq!(shared.get::<String>("catalog:x", at), None);
}

#[tokio::test]
async fn a_begin_that_fails_fails_its_transaction_and_runs_none_of_its_writes() {
    let (db, path) = sqlite_db().await;
    let before = roles(&db).await;
    // Another connection holds the write lock past the writer's wait.
    let writer =
        lite::Writer::open_waiting(&path, Duration::from_millis(50), super::STATEMENT_TIMEOUT)
            .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let role = |name: &str| {
        vec![Queued::one(
            "INSERT INTO roles (id, name) VALUES (?, ?)",
            &[Uuid::new_v4().into(), name.into()],
        )]
    };
    let mut tx = writer.begin().await.unwrap();
    tx.run(role("archivist")).await.unwrap();
    let read = tx.fetch("SELECT name FROM roles", &[]).await;
    assert!(
        matches!(read, Err(StoreError::NotBegun(_))),
        "{:?}",
        read.err()
    );
    // Writes after the failed read are not run either (not outside a transaction).
    tx.run(role("clerk")).await.unwrap();
    let commit = tx.commit().await;
    assert!(matches!(commit, Err(StoreError::NotBegun(_))), "{commit:?}");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(roles(&db).await, before);
    // The next transaction begins.
    let mut tx = writer.begin().await.unwrap();
    tx.run(role("archivist")).await.unwrap();
    tx.commit().await.unwrap();
    assert!(roles(&db).await.contains(&"archivist".to_owned()));
    assert!(!roles(&db).await.contains(&"clerk".to_owned()));
    writer.close().await;
    drop_sqlite_db(db, path).await;
}

#[tokio::test]
async fn a_commit_sent_lets_the_next_transaction_begin_behind_it() {
    let (db, path) = sqlite_db().await;
    let insert = "INSERT INTO roles (id, name) VALUES (?, ?)";
    let mut first = db.begin().await.unwrap();
    first
        .queue(insert, &[Uuid::new_v4().into(), "archivist".into()])
        .await
        .unwrap();
    let committing = first.commit_sent().await.unwrap();
    // Begun before the first's outcome is known, the second sees the first's row.
    let mut second = db.begin().await.unwrap();
    let seen = second
        .fetch_optional(
            "SELECT name FROM roles WHERE name = ?",
            &["archivist".into()],
        )
        .await
        .unwrap();
    assert!(seen.is_some());
    committing.outcome().await.unwrap();
    // A failing commit is told by its outcome: the row repeats the unique name.
    second
        .queue(insert, &[Uuid::new_v4().into(), "archivist".into()])
        .await
        .unwrap();
    let failed = second.commit_sent().await.unwrap().outcome().await;
    assert!(matches!(failed, Err(StoreError::Conflict)), "{failed:?}");
    assert_eq!(
        roles(&db)
            .await
            .iter()
            .filter(|r| *r == "archivist")
            .count(),
        1
    );
    drop_sqlite_db(db, path).await;
}

#[tokio::test]
async fn committed_pages_are_copied_from_the_log_into_the_database_in_the_background() {
    let (db, path) = sqlite_db().await;
    let mut tx = db.begin().await.unwrap();
    for i in 0..2000 {
        tx.queue(
            "INSERT INTO roles (id, name) VALUES (?, ?)",
            &[
                Uuid::new_v4().into(),
                format!("role {i:05} {}", "x".repeat(200)).into(),
            ],
        )
        .await
        .unwrap();
    }
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    tx.commit().await.unwrap();
    // The commit goes to the log; the checkpointer copies it into the database file (the
    // writer itself would only past 65,536 pages of log), which grows by the ~500 kB.
    let mut copied = false;
    for _ in 0..250 {
        if size() > before + 400_000 {
            copied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(copied, "database file {} bytes, was {before}", size());
    drop_sqlite_db(db, path).await;
}

#[test]
fn pg_sql_numbers_placeholders_in_order() {
    assert_eq!(
        arg::pg_sql("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
        "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
    );
}

#[test]
fn sqlite_timestamps_sort_as_text() {
    let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.1Z").unwrap();
    let b = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.01Z").unwrap();
    let (a, b) = (
        sqlite_timestamp(&a.with_timezone(&Utc)),
        sqlite_timestamp(&b.with_timezone(&Utc)),
    );
    assert_eq!(a, "2026-01-02T03:04:05.100Z");
    assert!(b < a);
}

#[test]
fn a_sqlite_timestamp_is_what_chrono_writes() {
    let chrono_text = |t: &DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut t = DateTime::parse_from_rfc3339("0001-01-01T00:00:00.000Z")
        .unwrap()
        .with_timezone(&Utc);
    while chrono::Datelike::year(&t) < 9999 {
        assert_eq!(sqlite_timestamp(&t), chrono_text(&t));
        // A step that moves every field, the milliseconds included.
        t += chrono::Duration::milliseconds(86_400_000 * 97 + 3_661_007);
    }
    let far =
        DateTime::parse_from_rfc3339("+12026-05-06T07:08:09.5Z").map(|t| t.with_timezone(&Utc));
    if let Ok(far) = far {
        assert_eq!(sqlite_timestamp(&far), chrono_text(&far));
    }
}

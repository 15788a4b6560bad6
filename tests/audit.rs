//! The audit trail: each interaction leaves exactly the event expected, a failed write leaves
//! its attempt and none of its changes, direct SQL changes join the chain, and the chain shows
//! any row changed or removed (`audit verify`), also from a checkpoint, with concurrent writers.
mod common;

use common::acting::{add_user, cli, mint, register};
use common::{Engine, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The last row's number, once the events of the reads answered are stored.
async fn last(app: &TestApp) -> i64 {
    app.fhir.audit.flush().await;
    app.db
        .fetch_one_i64("SELECT coalesce(max(seq), 0) AS n FROM audit_logs")
        .await
}

trait One {
    async fn fetch_one_i64(&self, sql: &str) -> i64;
}

impl One for expediente::store::Db {
    async fn fetch_one_i64(&self, sql: &str) -> i64 {
        self.fetch_all(sql, &[]).await.unwrap()[0]
            .bigint("n")
            .unwrap()
    }
}

/// The events after row `since`, in order (once those of the reads answered are stored).
async fn events_after(app: &TestApp, since: i64) -> Vec<Value> {
    app.fhir.audit.flush().await;
    app.db
        .fetch_all(
            "SELECT event FROM audit_logs WHERE seq > ? ORDER BY seq",
            &[since.into()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.string("event").unwrap()).unwrap())
        .collect()
}

/// The one event after `since`.
async fn only_event_after(app: &TestApp, since: i64) -> Value {
    let mut events = events_after(app, since).await;
    assert_eq!(events.len(), 1, "one event: {events:#?}");
    events.remove(0)
}

fn verify(app: &TestApp, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    cli(app, &args, "")
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}], "birthDate": "1970-01-01"})
}

async fn each_interaction_leaves_its_event(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    // create
    let at = last(&app).await;
    let p = app.create(&patient("Quispe")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let e = only_event_after(&app, at).await;
    assert_eq!(e["category"], "rest");
    assert_eq!(e["action"], "create");
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["resource_type"], "Patient");
    assert_eq!(e["resource_id"], pid.as_str());
    assert_eq!(e["version"], 1);
    assert_eq!(e["patients"], json!([pid]));
    assert_eq!(e["client"], "test-admin");
    assert_eq!(e["source"], "127.0.0.1");
    assert!(e["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    // The whole date: "1970" alone turns up in a random request id about once in 700 runs.
    let text = e.to_string();
    assert!(
        !text.contains("Quispe") && !text.contains("1970-01-01"),
        "no content: {text}"
    );
    // read
    let at = last(&app).await;
    assert_eq!(app.get(&format!("/fhir/Patient/{pid}")).await.status, 200);
    let e = only_event_after(&app, at).await;
    assert_eq!((&e["action"], &e["version"]), (&json!("read"), &json!(1)));
    assert_eq!(e["patients"], json!([pid]));
    // an Observation of the patient: its read names the patient
    let at = last(&app).await;
    let obs = app
        .create(&json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")},
            "effectiveDateTime": "2026-01-01T10:00:00Z",
            "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
        }))
        .await;
    let oid = obs["id"].as_str().unwrap().to_owned();
    assert_eq!(only_event_after(&app, at).await["patients"], json!([pid]));
    let at = last(&app).await;
    assert_eq!(
        app.get(&format!("/fhir/Observation/{oid}")).await.status,
        200
    );
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["action"], &e["patients"]),
        (&json!("read"), &json!([pid]))
    );
    // search, includes counted
    let at = last(&app).await;
    let r = app
        .get(&format!(
            "/fhir/Observation?subject=Patient/{pid}&_include=Observation:subject"
        ))
        .await;
    assert_eq!(r.status, 200);
    let e = only_event_after(&app, at).await;
    assert_eq!(e["action"], "search-type");
    assert_eq!(e["resource_type"], "Observation");
    assert_eq!(e["count"], 2, "the match and its include: {e}");
    assert_eq!(e["patients"], json!([pid]));
    assert!(e["query"].as_str().unwrap().contains("subject="), "{e}");
    // update, patch, vread, history, delete
    let at = last(&app).await;
    let mut changed = p.clone();
    changed["gender"] = json!("female");
    assert_eq!(
        app.put(&format!("/fhir/Patient/{pid}"), &changed)
            .await
            .status,
        200
    );
    let e = only_event_after(&app, at).await;
    assert_eq!((&e["action"], &e["version"]), (&json!("update"), &json!(2)));
    let at = last(&app).await;
    let r = app
        .patch(
            &format!("/fhir/Patient/{pid}"),
            &json!([{"op": "replace", "path": "/gender", "value": "male"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = only_event_after(&app, at).await;
    assert_eq!((&e["action"], &e["version"]), (&json!("patch"), &json!(3)));
    let at = last(&app).await;
    assert_eq!(
        app.get(&format!("/fhir/Patient/{pid}/_history/2"))
            .await
            .status,
        200
    );
    let e = only_event_after(&app, at).await;
    assert_eq!((&e["action"], &e["version"]), (&json!("vread"), &json!(2)));
    let at = last(&app).await;
    assert_eq!(
        app.get(&format!("/fhir/Patient/{pid}/_history"))
            .await
            .status,
        200
    );
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["action"], &e["count"]),
        (&json!("history-instance"), &json!(3))
    );
    let at = last(&app).await;
    assert_eq!(
        app.get(&format!("/fhir/Patient/{pid}/$everything"))
            .await
            .status,
        200
    );
    let e = only_event_after(&app, at).await;
    assert_eq!(e["action"], "everything");
    assert_eq!(e["patients"], json!([pid]));
    let at = last(&app).await;
    let r = app
        .post("/fhir/Patient/$validate", &patient("Mamani"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(only_event_after(&app, at).await["action"], "validate");
    let at = last(&app).await;
    assert_eq!(
        app.delete(&format!("/fhir/Observation/{oid}")).await.status,
        204
    );
    let e = only_event_after(&app, at).await;
    assert_eq!((&e["action"], &e["version"]), (&json!("delete"), &json!(2)));
    assert_eq!(
        e["patients"],
        json!([pid]),
        "whose record the deleted one was"
    );
    // A refused request: no token, and a token without the right.
    let at = last(&app).await;
    let r = reqwest::get(app.url(&format!("/fhir/Patient/{pid}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["outcome"], &e["status"]),
        (&json!("minor-failure"), &json!(401))
    );
    assert_eq!(e["action"], "read");
    assert!(
        e.get("patients").is_none(),
        "a refused read saw no one: {e}"
    );
    assert!(verify(&app, &[]).unwrap().contains("holds"));
}

async fn bundles_leave_an_event_per_entry_and_one_for_themselves(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let at = last(&app).await;
    let tx = common::transaction(vec![
        common::post(
            "urn:uuid:3f1c0c3e-0000-4000-8000-000000000001",
            patient("Condori"),
        ),
        common::post(
            "urn:uuid:3f1c0c3e-0000-4000-8000-000000000002",
            patient("Huaman"),
        ),
        json!({"request": {"method": "GET", "url": "Patient?family=Condori"}}),
    ]);
    let r = app.post("/fhir", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = events_after(&app, at).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["create", "create", "transaction", "search-type"],
        "{events:#?}"
    );
    assert_eq!(events[2]["count"], 3);
    assert_eq!(events[3]["count"], 1);
    // A transaction that fails: its attempt, and none of its writes.
    let at = last(&app).await;
    let patients = app.count("patients").await;
    let bad = common::transaction(vec![
        common::post(
            "urn:uuid:3f1c0c3e-0000-4000-8000-000000000003",
            patient("Apaza"),
        ),
        json!({"request": {"method": "DELETE", "url": "Patient/not-there"}}),
    ]);
    let r = app.post("/fhir", &bad).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert_eq!(app.count("patients").await, patients);
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["action"], &e["outcome"]),
        (&json!("bundle"), &json!("minor-failure"))
    );
    // A batch: each entry's event, the failed one too, then the batch's. Its writes are first
    // tried together: the refused update sends them one by one. (A refusal's event goes through
    // the audit queue, and may be stored after the writes that follow it.)
    let at = last(&app).await;
    let mut invalid = patient("Mamani");
    invalid["id"] = json!("mamani");
    invalid["gender"] = json!("sometimes");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("Ticona"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("Quispe"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": invalid, "request": {"method": "PUT", "url": "Patient/mamani"}},
        {"resource": patient("Condori"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/not-there"}},
    ]});
    let r = app.post("/fhir", &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = events_after(&app, at).await;
    let mut got = outcomes(&events);
    got.sort();
    assert_eq!(
        got,
        [
            ("batch", "success"),
            ("create", "success"),
            ("create", "success"),
            ("create", "success"),
            ("read", "minor-failure"),
            ("update", "minor-failure"),
        ]
    );
    let created: Vec<&Value> = events.iter().filter(|e| e["action"] == "create").collect();
    for (i, entry) in [0, 1, 3].into_iter().enumerate() {
        let location = r.body["entry"][entry]["response"]["location"]
            .as_str()
            .unwrap();
        assert_eq!(
            created[i]["resource_id"],
            location.split('/').nth(1).unwrap()
        );
    }
    assert_eq!(events.last().unwrap()["action"], "batch");
    // Writes that all succeed commit together, each with its own event.
    let at = last(&app).await;
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("Huanca"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("Choque"), "request": {"method": "POST", "url": "Patient"}},
    ]});
    let r = app.post("/fhir", &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = events_after(&app, at).await;
    assert_eq!(
        outcomes(&events),
        [
            ("create", "success"),
            ("create", "success"),
            ("batch", "success")
        ]
    );
    for (i, e) in r.body["entry"].as_array().unwrap().iter().enumerate() {
        let location = e["response"]["location"].as_str().unwrap();
        let id = location.split('/').nth(1).unwrap();
        assert_eq!(events[i]["resource_id"], id, "{}", events[i]);
    }
    assert!(verify(&app, &[]).unwrap().contains("holds"));
}

/// Each event's action and outcome.
fn outcomes(events: &[Value]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect()
}

/// Runs `sql` on a connection of its own, as the clinic application would.
async fn foreign(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    match app.engine {
        Engine::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
}

/// Waits until the inbox is chained.
async fn chained(app: &TestApp) {
    let started = Instant::now();
    while expediente::audit::chain::waiting(&app.db).await.unwrap() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the inbox is chained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn direct_changes_join_the_chain(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = app.create(&patient("Choque")).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let at = last(&app).await;
    foreign(
        &app,
        &format!("UPDATE patients SET city = 'Cusco' WHERE fhir_id = '{pid}'"),
    )
    .await;
    chained(&app).await;
    let events = events_after(&app, at).await;
    let change = events
        .iter()
        .find(|e| e["changes"].get("city").is_some())
        .unwrap_or_else(|| panic!("the change is chained: {events:#?}"));
    assert_eq!(change["category"], "change");
    assert_eq!(change["action"], "update");
    assert_eq!(change["resource_type"], "patients");
    assert_eq!(change["patients"], json!([pid]));
    assert_eq!(
        change["changes"]["city"],
        json!({"old": null, "new": "Cusco"})
    );
    // The clinic application's own audit row joins the chain too.
    let at = last(&app).await;
    foreign(
        &app,
        "INSERT INTO audit_logs (action, resource_type) VALUES ('print', 'patients')",
    )
    .await;
    chained(&app).await;
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["category"], &e["action"]),
        (&json!("clinic"), &json!("print"))
    );
    assert!(verify(&app, &[]).unwrap().contains("holds"));
}

/// Lets a superuser change audit_logs, as one who meant to hide something would.
async fn unguard(app: &TestApp) {
    let sql = match app.engine {
        Engine::Sqlite => "DROP TRIGGER audit_logs_no_update",
        Engine::Postgres => "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update",
    };
    app.db.execute(sql, &[]).await.unwrap();
    if app.engine == Engine::Sqlite {
        app.db
            .execute("DROP TRIGGER audit_logs_no_delete", &[])
            .await
            .unwrap();
    }
}

async fn a_changed_or_removed_row_breaks_the_chain_there(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for i in 0..5 {
        app.create(&patient(&format!("Flores{i}"))).await;
    }
    // Rows cannot be changed or removed while the triggers stand.
    assert!(app
        .db
        .execute("UPDATE audit_logs SET action = 'read' WHERE seq = 2", &[])
        .await
        .is_err());
    assert!(app
        .db
        .execute("DELETE FROM audit_logs WHERE seq = 2", &[])
        .await
        .is_err());
    let out = verify(&app, &[]).unwrap();
    assert!(out.contains("holds"), "{out}");
    unguard(&app).await;
    // A changed column.
    app.db
        .execute("UPDATE audit_logs SET action = 'read' WHERE seq = 2", &[])
        .await
        .unwrap();
    let err = verify(&app, &[]).unwrap_err();
    assert!(err.contains("broken at row 2"), "{err}");
    app.db
        .execute("UPDATE audit_logs SET action = 'create' WHERE seq = 2", &[])
        .await
        .unwrap();
    assert!(verify(&app, &[]).is_ok());
    // The patient an event is about, kept in its row, changed.
    app.db
        .execute("UPDATE audit_logs SET patient = 'other' WHERE seq = 2", &[])
        .await
        .unwrap();
    let err = verify(&app, &[]).unwrap_err();
    assert!(
        err.contains("broken at row 2") && err.contains("patients"),
        "{err}"
    );
    app.db
        .execute(
            "UPDATE audit_logs SET patient = resource_id WHERE seq = 2",
            &[],
        )
        .await
        .unwrap();
    assert!(verify(&app, &[]).is_ok());
    // A changed event (its hash no longer fits).
    app.db
        .execute(
            "UPDATE audit_logs SET event = replace(event, 'test-admin', 'someone') WHERE seq = 3",
            &[],
        )
        .await
        .unwrap();
    let err = verify(&app, &[]).unwrap_err();
    assert!(err.contains("broken at row 3"), "{err}");
    // Past row 3 (from a checkpoint there) the rest holds.
    let since = checkpoint_of(&app, 3, "x").await;
    assert!(verify(&app, &["--since", &since]).is_ok());
    // The last row removed: the head names one more than there is.
    app.db
        .execute("DELETE FROM audit_logs WHERE seq = 5", &[])
        .await
        .unwrap();
    let err = verify(&app, &["--since", &since]).unwrap_err();
    assert!(
        err.contains("broken at row 5") && err.contains("missing"),
        "{err}"
    );
    // A row in the middle removed.
    app.db
        .execute("DELETE FROM audit_logs WHERE seq = 4", &[])
        .await
        .unwrap();
    let err = verify(&app, &["--since", &since]).unwrap_err();
    assert!(
        err.contains("broken at row 4") && err.contains("missing"),
        "{err}"
    );
    // From the start, the first wrong row is still the changed one.
    let err = verify(&app, &[]).unwrap_err();
    assert!(err.contains("broken at row 3"), "{err}");
}

/// A checkpoint file naming row `seq` with `hash` ("x": the row's own hash).
async fn checkpoint_of(app: &TestApp, seq: i64, hash: &str) -> String {
    let hash = if hash == "x" {
        app.db
            .fetch_all("SELECT hash FROM audit_logs WHERE seq = ?", &[seq.into()])
            .await
            .unwrap()[0]
            .string("hash")
            .unwrap()
    } else {
        hash.to_owned()
    };
    let path = std::env::temp_dir().join(format!("checkpoint-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        json!({"seq": seq, "hash": hash, "count": seq, "time": "2026-01-01T00:00:00.000Z"})
            .to_string(),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

async fn a_checkpoint_proves_the_chain_was_not_rewritten(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for i in 0..3 {
        app.create(&patient(&format!("Mendoza{i}"))).await;
    }
    let file = std::env::temp_dir().join(format!("checkpoint-{}.json", uuid::Uuid::new_v4()));
    let file = file.to_string_lossy().into_owned();
    cli(&app, &["audit", "checkpoint", "--out", &file], "").unwrap();
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let seq = kept["seq"].as_i64().unwrap();
    assert_eq!(seq, last(&app).await);
    for i in 0..2 {
        app.create(&patient(&format!("Vargas{i}"))).await;
    }
    let out = verify(&app, &["--since", &file]).unwrap();
    let walked = last(&app).await - seq;
    assert!(
        out.contains(&format!("{walked} rows checked")),
        "only the rows after the checkpoint: {out}"
    );
    // A chain rebuilt from scratch does not pass through the checkpoint.
    let forged = checkpoint_of(&app, seq, &"ab".repeat(32)).await;
    let err = verify(&app, &["--since", &forged]).unwrap_err();
    assert!(err.contains(&format!("broken at row {seq}")), "{err}");
}

async fn concurrent_writers_keep_the_chain_gapless(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, token) = (app.client.clone(), app.base.clone(), app.token.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let r = client
                    .post(format!("{base}/fhir/Patient"))
                    .bearer_auth(&token)
                    .header("content-type", "application/fhir+json")
                    .body(patient(&format!("W{w}x{i}")).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let r = client
                    .get(format!("{base}/fhir/Patient?family=W{w}x{i}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let out = verify(&app, &[]).unwrap();
    assert!(out.contains("holds"), "{out}");
    let creates = app
        .db
        .fetch_one_i64("SELECT count(*) AS n FROM audit_logs WHERE action = 'create'")
        .await;
    assert_eq!(creates, 80);
    // One statement, one snapshot: the searches' events may still be on
    // their way to the table while this runs.
    let missing = app
        .db
        .fetch_one_i64("SELECT coalesce(max(seq), 0) - count(DISTINCT seq) AS n FROM audit_logs")
        .await;
    assert_eq!(missing, 0, "no gap, no repeat");
    let repeated = app
        .db
        .fetch_one_i64("SELECT count(*) - count(DISTINCT seq) AS n FROM audit_logs")
        .await;
    assert_eq!(repeated, 0, "no repeat");
}

/// The entries of a searchset, as resources.
fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn subtypes(ae: &Value) -> Vec<String> {
    ae["subtype"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

async fn audit_events_are_read_only_and_seen_by_whom_they_concern(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let scopes = "user/*.cruds user/AuditEvent.rs patient/*.rs patient/AuditEvent.rs";
    register(&app, "portal", scopes);
    let ana = app.create(&patient("Ana")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bea = app.create(&patient("Bea")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    add_user(&app, "auditor@clinic.example", "auditor", &[]);
    add_user(&app, "doc@clinic.example", "physician", &[]);
    add_user(&app, "ana@clinic.example", "patient", &["--patient", &ana]);
    assert_eq!(app.get(&format!("/fhir/Patient/{ana}")).await.status, 200);
    assert_eq!(app.get(&format!("/fhir/Patient/{bea}")).await.status, 200);
    assert_eq!(app.get("/fhir/Patient/nobody").await.status, 404);

    // The auditor sees every event, newest first, with the clinic's fields.
    let auditor = mint(
        &app,
        "portal",
        "user/AuditEvent.rs",
        &["--user", "auditor@clinic.example"],
    )
    .unwrap();
    let auditor = app.as_token(&auditor);
    let r = auditor
        .get(&format!("/fhir/AuditEvent?patient=Patient/{ana}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = resources(&r.body);
    assert_eq!(
        found.len(),
        2,
        "the create and the read of Ana: {:#}",
        r.body
    );
    assert!(
        subtypes(&found[0]).contains(&"read".to_owned()),
        "newest first"
    );
    assert!(subtypes(&found[1]).contains(&"create".to_owned()));
    let read = &found[0];
    assert_eq!(read["type"]["code"], "rest");
    assert_eq!(read["action"], "R");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["agent"][0]["requestor"], true);
    assert_eq!(read["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(read["agent"][1]["who"]["identifier"]["value"], "test-admin");
    assert_eq!(
        read["entity"][0]["what"]["reference"],
        format!("Patient/{ana}")
    );
    assert_eq!(read["source"]["observer"]["display"], "expediente");
    // Oldest first, and each parameter narrows.
    let r = auditor
        .get(&format!("/fhir/AuditEvent?patient={ana}&_sort=date"))
        .await;
    assert!(subtypes(&resources(&r.body)[0]).contains(&"create".to_owned()));
    let count = |q: String| {
        let auditor = &auditor;
        async move {
            let r = auditor.get(&format!("/fhir/AuditEvent?{q}")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            resources(&r.body).len()
        }
    };
    assert_eq!(count(format!("entity=Patient/{bea}")).await, 2);
    assert_eq!(count(format!("entity=Patient/{bea}&subtype=read")).await, 1);
    assert_eq!(count(format!("entity=Patient/{bea}&action=C")).await, 1);
    assert_eq!(count("outcome=4&entity=Patient/nobody".into()).await, 1);
    assert_eq!(count("outcome=0&entity=Patient/nobody".into()).await, 0);
    assert_eq!(count(format!("agent=test-admin&patient={bea}")).await, 2);
    assert_eq!(count(format!("agent=someone-else&patient={bea}")).await, 0);
    assert_eq!(count(format!("type=rest&patient={bea}")).await, 2);
    assert_eq!(count(format!("type=110114&patient={bea}")).await, 0);
    assert_eq!(count(format!("source=expediente&patient={bea}")).await, 2);
    assert_eq!(count(format!("address=127.0.0.1&patient={bea}")).await, 2);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(count(format!("date={today}&patient={bea}")).await, 2);
    assert_eq!(count(format!("date=lt{today}&patient={bea}")).await, 0);
    // Paging: one at a time, the next link going on where the page ended.
    let r = auditor
        .get(&format!("/fhir/AuditEvent?patient={bea}&_count=1"))
        .await;
    let first = resources(&r.body)[0]["id"].clone();
    let next = r.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next page")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = next.split_once("/fhir").unwrap().1;
    let second = resources(&auditor.get(&format!("/fhir{path}")).await.body)[0]["id"].clone();
    assert_ne!(first, second);
    // Read by id; writes are refused with 405.
    let id = read["id"].as_str().unwrap();
    let r = auditor.get(&format!("/fhir/AuditEvent/{id}")).await;
    assert_eq!((r.status.as_u16(), &r.body["id"]), (200, &json!(id)));
    assert_eq!(auditor.post("/fhir/AuditEvent", read).await.status, 405);
    assert_eq!(
        auditor
            .put(&format!("/fhir/AuditEvent/{id}"), read)
            .await
            .status,
        405
    );
    assert_eq!(
        auditor
            .delete(&format!("/fhir/AuditEvent/{id}"))
            .await
            .status,
        405
    );
    let ops = json!([{"op": "replace", "path": "/action", "value": "C"}]);
    assert_eq!(
        auditor
            .patch(&format!("/fhir/AuditEvent/{id}"), &ops)
            .await
            .status,
        405
    );

    // A physician's wildcard does not reach the audit trail.
    match mint(
        &app,
        "portal",
        "user/AuditEvent.rs user/Patient.rs",
        &["--user", "doc@clinic.example"],
    ) {
        Ok(t) => {
            let doc = app.as_token(&t);
            assert_eq!(doc.get(&format!("/fhir/Patient/{ana}")).await.status, 200);
            assert_eq!(doc.get("/fhir/AuditEvent").await.status, 403);
        }
        Err(e) => assert!(e.contains("scope"), "{e}"),
    }
    assert_eq!(
        app.get("/fhir/AuditEvent").await.status,
        403,
        "nor system/*.cruds"
    );

    // Ana sees who looked at her record, and nothing of Bea's; no network address.
    let mine = mint(
        &app,
        "portal",
        "patient/AuditEvent.rs",
        &["--user", "ana@clinic.example", "--patient", &ana],
    )
    .unwrap();
    let mine = app.as_token(&mine);
    let r = mine.get("/fhir/AuditEvent").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = resources(&r.body);
    assert!(seen.len() >= 2, "{:#}", r.body);
    for ae in &seen {
        assert!(ae.to_string().contains(&format!("Patient/{ana}")), "{ae}");
        assert!(ae["agent"][0].get("network").is_none(), "{ae}");
    }
    assert!(resources(
        &mine
            .get(&format!("/fhir/AuditEvent?patient={bea}"))
            .await
            .body
    )
    .is_empty());
    let bea_read = resources(
        &auditor
            .get(&format!(
                "/fhir/AuditEvent?entity=Patient/{bea}&subtype=read"
            ))
            .await
            .body,
    )[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        mine.get(&format!("/fhir/AuditEvent/{bea_read}"))
            .await
            .status,
        404
    );
    // A direct change of her record: she sees that it happened, the clinic sees what changed.
    foreign(
        &app,
        &format!("UPDATE patients SET city = 'Cusco' WHERE fhir_id = '{ana}'"),
    )
    .await;
    chained(&app).await;
    // (On SQLite the change and the version it bumps are two events.)
    let hers = resources(&mine.get("/fhir/AuditEvent?type=110110").await.body);
    assert!(!hers.is_empty(), "she sees the change");
    for ae in &hers {
        assert_eq!(ae["action"], "U");
        assert!(
            !ae.to_string().contains("Cusco"),
            "no values for the patient: {ae}"
        );
    }
    let clinics = auditor
        .get(&format!("/fhir/AuditEvent?patient={ana}&type=110110"))
        .await
        .body;
    assert!(
        resources(&clinics)
            .iter()
            .any(|ae| ae.to_string().contains("Cusco")),
        "the values for the clinic: {clinics}"
    );
}

async fn the_command_line_and_refusals_leave_events_and_metrics_count_them(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    // The command line's administration, each command an event (a user named by id).
    register(&app, "reader", "system/Patient.rs");
    add_user(&app, "nurse@clinic.example", "nurse", &[]);
    let token = mint(&app, "reader", "system/Patient.rs", &[]).unwrap();
    let admin: Vec<Value> = events_after(&app, 0)
        .await
        .into_iter()
        .filter(|e| e["category"] == "admin")
        .collect();
    let actions: Vec<&str> = admin
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["client-add", "user-add", "token"], "{admin:#?}");
    assert_eq!(admin[0]["resource_id"], "reader");
    let user = admin[1]["resource_id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(user).is_ok(),
        "the user by id, not email: {user}"
    );
    assert_eq!(admin[1]["source"], "local");
    // What the token allows succeeds and what it does not is refused: both leave their event.
    let pid = app.create(&patient("Rojas")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = app.as_token(&token);
    let at = last(&app).await;
    assert_eq!(
        reader.get(&format!("/fhir/Patient/{pid}")).await.status,
        200
    );
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["outcome"], &e["client"]),
        (&json!("success"), &json!("reader"))
    );
    let at = last(&app).await;
    assert_eq!(reader.get("/fhir/Observation").await.status, 403);
    let e = only_event_after(&app, at).await;
    assert_eq!(
        (&e["outcome"], &e["status"]),
        (&json!("minor-failure"), &json!(403))
    );
    assert_eq!(
        (&e["action"], &e["client"]),
        (&json!("search-type"), &json!("reader"))
    );
    // The metrics count them.
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"expediente_requests_total{route="read",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"expediente_requests_total{route="search-type",status="403"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("expediente_request_duration_seconds_bucket{route=\"read\""));
    assert!(
        metrics.contains("expediente_audit_queue_depth 0"),
        "{metrics}"
    );
    assert!(!metrics.contains(&pid), "no ids in the metrics");
}

/// Holds the chain's head from another connection until `release` is sent.
async fn hold_the_chain(
    app: &TestApp,
    held: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
) {
    use sqlx::Connection;
    match app.engine {
        Engine::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            held.send(()).unwrap();
            release.await.unwrap();
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.url).await.unwrap();
            let mut tx = c.begin().await.unwrap();
            sqlx::query("SELECT seq FROM audit_chain FOR UPDATE")
                .execute(&mut *tx)
                .await
                .unwrap();
            held.send(()).unwrap();
            release.await.unwrap();
            tx.rollback().await.unwrap();
        }
    }
}

async fn a_read_event_waits_while_the_database_is_busy_and_health_shows_it(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let pid = app.create(&patient("Salas")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let health = || async {
        reqwest::get(app.url("/health"))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(health().await, json!({"status": "ok"}));
    let (held_tx, held) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let holder = hold_the_chain(&app, held_tx, release_rx);
    let test = async {
        held.await.unwrap();
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/fhir/Patient/{pid}")),
            app.token.clone(),
        );
        // The read is answered; its event waits in the queue, and /health says so.
        let status = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        let started = Instant::now();
        loop {
            let h = health().await;
            if h["audit_queue"].as_u64().is_some_and(|n| n >= 1) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the queue shows: {h}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        release.send(()).unwrap();
        app.fhir.audit.flush().await;
        assert_eq!(health().await, json!({"status": "ok"}));
    };
    tokio::join!(holder, test);
    let e = events_after(&app, 0).await;
    assert_eq!(e.last().unwrap()["action"], "read");
}

on_both_engines!(
    the_command_line_and_refusals_leave_events_and_metrics_count_them,
    a_read_event_waits_while_the_database_is_busy_and_health_shows_it,
    audit_events_are_read_only_and_seen_by_whom_they_concern,
    each_interaction_leaves_its_event,
    bundles_leave_an_event_per_entry_and_one_for_themselves,
    direct_changes_join_the_chain,
    a_changed_or_removed_row_breaks_the_chain_there,
    a_checkpoint_proves_the_chain_was_not_rewritten,
    concurrent_writers_keep_the_chain_gapless,
);

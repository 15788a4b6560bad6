//! Patient create, read, vread, update (and update-as-create), delete and history, over HTTP.

mod common;

use common::{Engine, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// An instant as a time: as text, `...:01Z` sorts after `...:01.005Z`.
fn instant(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("an instant")).expect("an instant")
}

fn chalmers() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "active": true,
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    })
}

async fn create_answers_201_with_location_etag_and_last_modified(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut sent = chalmers();
    sent["id"] = json!("ignored-on-create");
    let r = app.post("/fhir/Patient", &sent).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_ne!(
        id, "ignored-on-create",
        "the server assigns the id of a create"
    );
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(r.body["meta"]["versionId"], "1");
    let location = r.header("location").unwrap();
    assert_eq!(location, app.url(&format!("/fhir/Patient/{id}/_history/1")));
    assert_eq!(r.header("etag").unwrap(), "W/\"1\"");
    let last_modified = r.header("last-modified").unwrap();
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    let lu = chrono::DateTime::parse_from_rfc3339(r.body["meta"]["lastUpdated"].as_str().unwrap())
        .unwrap();
    assert!(
        (chrono::Utc::now() - lu.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 60
    );

    let read = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, r.body, "read returns what create returned");
    assert_eq!(read.header("etag").unwrap(), "W/\"1\"");
    assert_eq!(
        common::strip_id_meta(&read.body),
        common::strip_id_meta(&chalmers())
    );
}

async fn read_of_an_unknown_id_is_404_and_of_a_bad_id_is_400(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app.get("/fhir/Patient/does-not-exist").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.outcome()[0].0, "not-found");
    for bad in ["a%20b", "_", "a:b", &"x".repeat(65), "%C3%A9"] {
        let r = app.get(&format!("/fhir/Patient/{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.outcome()[0].1.contains("not a valid FHIR id"), "{bad}");
    }
    let r = app.get("/fhir/Patient/a/b").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.outcome();
    let r = app.get("/fhir/Spaceship/1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.outcome()[0].1.contains("not supported"));
}

async fn update_creates_a_new_version_and_vread_serves_each(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let id = v1["id"].as_str().unwrap();
    let mut next = chalmers();
    next["id"] = json!(id);
    next["name"] = json!([{"family": "Chalmers-Windsor", "given": ["Peter"]}]);
    let r = app.put(&format!("/fhir/Patient/{id}"), &next).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");
    assert!(r.header("location").is_none(), "Location is for creates");
    assert_eq!(r.body["name"][0]["family"], "Chalmers-Windsor");
    assert!(instant(&r.body["meta"]["lastUpdated"]) >= instant(&v1["meta"]["lastUpdated"]));

    let old = app.get(&format!("/fhir/Patient/{id}/_history/1")).await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.body, v1, "version 1 is served as it was");
    let new = app.get(&format!("/fhir/Patient/{id}/_history/2")).await;
    assert_eq!(new.body, r.body);
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/3"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/x"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

async fn update_as_create_keeps_the_client_id(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut p = chalmers();
    p["id"] = json!("pat2");
    let r = app.put("/fhir/Patient/pat2", &p).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["id"], "pat2");
    assert_eq!(r.body["meta"]["versionId"], "1");
    assert_eq!(
        r.header("location").unwrap(),
        app.url("/fhir/Patient/pat2/_history/1")
    );
    // The same content again changes nothing: no new version.
    let again = app.put("/fhir/Patient/pat2", &p).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["meta"]["versionId"], "1");
    assert_eq!(again.header("etag").as_deref(), Some("W/\"1\""));
    assert_eq!(app.count("resource_versions").await, 1);
    p["active"] = json!(false);
    let changed = app.put("/fhir/Patient/pat2", &p).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["meta"]["versionId"], "2");
    assert_eq!(app.get("/fhir/Patient/pat2").await.body["id"], "pat2");
    // The FHIR id and the UUID primary key are different columns.
    let row = app
        .db
        .fetch_optional(
            "SELECT CAST(id AS TEXT) AS pk FROM patients WHERE fhir_id = 'pat2'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(uuid::Uuid::parse_str(&row.string("pk").unwrap()).is_ok());
}

async fn stale_if_match_is_rejected_with_412_and_changes_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let id = v1["id"].as_str().unwrap();
    let mut body = chalmers();
    body["id"] = json!(id);
    body["gender"] = json!("other");
    let ok = app
        .send(
            Method::PUT,
            &format!("/fhir/Patient/{id}"),
            Some(&body),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    body["gender"] = json!("female");
    let stale = app
        .send(
            Method::PUT,
            &format!("/fhir/Patient/{id}"),
            Some(&body),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.outcome()[0].1.contains("current version is 2"));
    let now = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(now.body["gender"], "other");
    assert_eq!(now.body["meta"]["versionId"], "2");
    let bad = app
        .send(
            Method::PUT,
            &format!("/fhir/Patient/{id}"),
            Some(&body),
            &[("if-match", "yesterday")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// Sends `n` PUTs of Patient `id` at once (each with its own family name) and returns their
/// statuses.
async fn concurrent_puts(
    app: &TestApp,
    id: &str,
    n: usize,
    if_match: Option<&str>,
) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut req = app
            .client
            .put(app.url(&format!("/fhir/Patient/{id}")))
            .header("content-type", "application/fhir+json");
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        let mut body = chalmers();
        body["id"] = json!(id);
        body["name"][0]["family"] = json!(format!("Writer{i}"));
        let req = req.body(body.to_string());
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

async fn concurrent_updates_with_the_same_if_match_let_exactly_one_win(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let id = v1["id"].as_str().unwrap().to_owned();
    let statuses = concurrent_puts(&app, &id, 8, Some("W/\"1\"")).await;
    let wins = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let stale = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((wins, stale), (1, 7), "{statuses:?}");
    let now = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(now.body["meta"]["versionId"], "2");
}

async fn concurrent_updates_without_if_match_make_gapless_versions(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let id = v1["id"].as_str().unwrap().to_owned();
    let statuses = concurrent_puts(&app, &id, 6, None).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let h = app.get(&format!("/fhir/Patient/{id}/_history")).await;
    let mut versions: Vec<i64> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=7).collect::<Vec<_>>());
}

async fn concurrent_update_as_create_of_one_new_id_creates_it_once(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let statuses = concurrent_puts(&app, "ehr-42", 6, None).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let updated = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((created, updated), (1, 5), "{statuses:?}");
    assert_eq!(app.count("patients").await, 1);
    assert_eq!(
        app.get("/fhir/Patient/ehr-42").await.body["meta"]["versionId"],
        "6"
    );
}

async fn delete_is_soft_then_read_is_410_and_history_shows_it(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let id = v1["id"].as_str().unwrap();
    let d = app.delete(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(d.text.is_empty());
    let r = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.outcome()[0].0, "deleted");
    // The row is still there, marked deleted.
    let row = app
        .db
        .fetch_optional(
            "SELECT deleted_at, version_id FROM patients WHERE fhir_id = ?",
            &[id.into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(row.opt_timestamp("deleted_at").unwrap().is_some());
    assert_eq!(row.int("version_id").unwrap(), 2);
    // Deleting again is harmless, an unknown id is 404.
    assert_eq!(
        app.delete(&format!("/fhir/Patient/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete("/fhir/Patient/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    // Search leaves it out.
    let s = app.get(&format!("/fhir/Patient?_id={id}")).await;
    assert_eq!(s.body["total"], 0);
    // vread of the deletion is 410, of version 1 still works.
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/2"))
            .await
            .status,
        StatusCode::GONE
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/1"))
            .await
            .body,
        v1
    );
    // History: newest first, the delete shown.
    let h = app.get(&format!("/fhir/Patient/{id}/_history")).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["type"], "history");
    assert_eq!(h.body["total"], 2);
    let e = h.body["entry"].as_array().unwrap();
    assert_eq!(e[0]["request"]["method"], "DELETE");
    assert!(e[0].get("resource").is_none());
    assert_eq!(e[0]["response"]["etag"], "W/\"2\"");
    assert_eq!(e[1]["request"]["method"], "POST");
    assert_eq!(e[1]["resource"], v1);
    // A PUT brings it back as a new version.
    let mut again = chalmers();
    again["id"] = json!(id);
    let back = app.put(&format!("/fhir/Patient/{id}"), &again).await;
    assert_eq!(back.status, StatusCode::CREATED);
    assert_eq!(back.body["meta"]["versionId"], "3");
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}")).await.status,
        StatusCode::OK
    );
}

async fn type_history_lists_every_version_newest_first_and_pages(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let a = app.create(&chalmers()).await;
    let b = app.create(&chalmers()).await;
    let a_id = a["id"].as_str().unwrap();
    let mut upd = chalmers();
    upd["id"] = json!(a_id);
    upd["active"] = json!(false);
    app.put(&format!("/fhir/Patient/{a_id}"), &upd).await;
    app.delete(&format!("/fhir/Patient/{}", b["id"].as_str().unwrap()))
        .await;
    let h = app.get("/fhir/Patient/_history?_count=3").await;
    assert_eq!(h.body["total"], 4);
    let entries = h.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let methods: Vec<&str> = entries
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);
    let next = h.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = TestApp::reply(app.client.get(next).send().await.unwrap()).await;
    let rest_entries = rest.body["entry"].as_array().unwrap();
    assert_eq!(rest_entries.len(), 1);
    assert_eq!(rest_entries[0]["request"]["method"], "POST");
    assert_eq!(rest_entries[0]["resource"]["id"], a["id"]);
    assert!(rest.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["relation"] != "next"));
}

async fn prefer_return_is_honoured(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let minimal = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&chalmers()),
            &[("prefer", "return=minimal")],
        )
        .await;
    assert_eq!(minimal.status, StatusCode::CREATED);
    assert!(minimal.text.is_empty());
    assert!(minimal.header("location").is_some());
    let oo = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&chalmers()),
            &[("prefer", "return=OperationOutcome")],
        )
        .await;
    assert_eq!(oo.status, StatusCode::CREATED);
    assert_eq!(oo.body["resourceType"], "OperationOutcome");
    assert_eq!(oo.body["issue"][0]["severity"], "information");
    let rep = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&chalmers()),
            &[("prefer", "return=representation")],
        )
        .await;
    assert_eq!(rep.body["resourceType"], "Patient");
    assert_eq!(app.count("patients").await, 3);
}

async fn a_direct_sql_update_moves_version_and_last_updated_and_shows_in_fhir(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let id = v1["id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // The clinic application edits the row directly.
    let n = app
        .db
        .execute(
            "UPDATE patients SET last_name = 'Chávez', phone = '555-0100' WHERE fhir_id = ?",
            &[id.into()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert!(instant(&r.body["meta"]["lastUpdated"]) > instant(&v1["meta"]["lastUpdated"]));
    assert_eq!(r.body["name"][0]["family"], "Chávez");
    assert_eq!(r.body["name"][0]["given"], json!(["Peter", "James"]));
    assert_eq!(
        r.body["telecom"],
        json!([{"system": "phone", "value": "555-0100"}])
    );
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");
    // vread of the current version works even without a history row; the old one is kept.
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/2"))
            .await
            .body,
        r.body
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}/_history/1"))
            .await
            .body,
        v1
    );
    // An update with the version the clinic edit produced succeeds.
    let mut body = r.body.clone();
    body["gender"] = json!("other");
    let u = app
        .send(
            Method::PUT,
            &format!("/fhir/Patient/{id}"),
            Some(&body),
            &[("if-match", "W/\"2\"")],
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.text);
    assert_eq!(u.body["meta"]["versionId"], "3");
}

async fn a_direct_sql_change_of_a_child_row_is_a_new_patient_version(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut p = chalmers();
    p["contact"] = json!([{"name": {"family": "du Marché", "given": ["Bénédicte"]}, "telecom": [{"system": "phone", "value": "+33 1"}]}]);
    let v1 = app.create(&p).await;
    assert_eq!(
        v1["meta"]["versionId"], "1",
        "a FHIR write with child rows is one version"
    );
    let id = v1["id"].as_str().unwrap();
    let n = app
        .db
        .execute(
            "UPDATE patient_contacts SET phone = '+33 2' WHERE patient_id = (SELECT id FROM patients WHERE fhir_id = ?)",
            &[id.into()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(
        r.body["meta"]["versionId"], "2",
        "the Patient moved to a new version"
    );
    assert_eq!(r.body["contact"][0]["telecom"][0]["value"], "+33 2");
    assert_eq!(r.body["contact"][0]["name"]["family"], "du Marché");
    // Removing an identifier directly is a new version too.
    app.db
        .execute(
            "DELETE FROM patient_identifiers WHERE patient_id = (SELECT id FROM patients WHERE fhir_id = ?)",
            &[id.into()],
        )
        .await
        .unwrap();
    let r = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(r.body["meta"]["versionId"], "3");
    assert!(r.body.get("identifier").is_none());
    // A FHIR update afterwards is exactly one more version.
    let mut body = r.body.clone();
    body["identifier"] = json!([{"system": "urn:x", "value": "1"}]);
    let u = app.put(&format!("/fhir/Patient/{id}"), &body).await;
    assert_eq!(u.body["meta"]["versionId"], "4");
    assert_eq!(app.get(&format!("/fhir/Patient/{id}")).await.body, u.body);
}

/// Conditional read: 304 Not Modified, without a body, when the client's copy is current.
async fn conditional_read_answers_304_while_the_copy_is_current(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let v1 = app.create(&chalmers()).await;
    let path = format!("/fhir/Patient/{}", v1["id"].as_str().unwrap());
    let first = app.get(&path).await;
    let modified = first.header("last-modified").unwrap().to_owned();
    let get = |h: &'static str, v: String| {
        let (app, path) = (&app, &path);
        async move { app.send(Method::GET, path, None, &[(h, &v)]).await }
    };
    for tag in ["W/\"1\"", "\"1\"", "W/\"7\", W/\"1\"", "*"] {
        let r = get("if-none-match", tag.into()).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "If-None-Match: {tag}");
        assert!(r.text.is_empty(), "a 304 has no body");
        assert_eq!(r.header("etag").unwrap(), "W/\"1\"");
    }
    let r = get("if-none-match", "W/\"2\"".into()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, first.body);
    let r = get("if-modified-since", modified.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.text.is_empty());
    let earlier = "Mon, 01 Jan 2001 00:00:00 GMT".to_owned();
    assert_eq!(
        get("if-modified-since", earlier).await.status,
        StatusCode::OK
    );
    let r = get("if-modified-since", "not a date".into()).await;
    assert_eq!(r.status, StatusCode::OK, "an unreadable date is ignored");
    assert_eq!(r.body, first.body);
    // If-None-Match decides when both are sent.
    let both = app
        .send(
            Method::GET,
            &path,
            None,
            &[
                ("if-none-match", "W/\"9\""),
                ("if-modified-since", &modified),
            ],
        )
        .await;
    assert_eq!(both.status, StatusCode::OK);
    // A new version makes the old tag stale.
    let mut next = chalmers();
    next["id"] = v1["id"].clone();
    next["gender"] = json!("other");
    assert_eq!(app.put(&path, &next).await.status, StatusCode::OK);
    let r = get("if-none-match", "W/\"1\"".into()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["gender"], "other");
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");
}

on_both_engines!(
    conditional_read_answers_304_while_the_copy_is_current,
    a_direct_sql_change_of_a_child_row_is_a_new_patient_version,
    create_answers_201_with_location_etag_and_last_modified,
    read_of_an_unknown_id_is_404_and_of_a_bad_id_is_400,
    update_creates_a_new_version_and_vread_serves_each,
    update_as_create_keeps_the_client_id,
    stale_if_match_is_rejected_with_412_and_changes_nothing,
    concurrent_updates_with_the_same_if_match_let_exactly_one_win,
    concurrent_updates_without_if_match_make_gapless_versions,
    concurrent_update_as_create_of_one_new_id_creates_it_once,
    delete_is_soft_then_read_is_410_and_history_shows_it,
    type_history_lists_every_version_newest_first_and_pages,
    prefer_return_is_honoured,
    a_direct_sql_update_moves_version_and_last_updated_and_shows_in_fhir,
);

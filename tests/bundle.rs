//! Batch and transaction Bundles: ids assigned and bundle references rewritten, processing
//! order, all or nothing, per-entry outcomes of a batch, and types this server does not host.

mod common;

use chrono::SubsecRound;
use common::{located, post, stub, transaction, Engine, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

fn batch(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
}

/// A practitioner with a US NPI.
fn npi(n: &str) -> Value {
    json!({"resourceType": "Practitioner",
           "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}],
           "name": [{"family": format!("Npi{n}")}]})
}

/// A batch entry creating the practitioner with NPI `n` unless one has it.
fn conditional(n: &str) -> Value {
    json!({"resource": npi(n), "request": {"method": "POST", "url": "Practitioner",
           "ifNoneExist": format!("identifier=http://hl7.org/fhir/sid/us-npi|{n}")}})
}

/// The status of each entry of a response Bundle.
fn statuses(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect()
}

fn lab_result(subject: &str, encounter: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": subject},
        "encounter": {"reference": encounter},
        "effectiveDateTime": "2026-05-02T08:00:00Z",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    })
}

/// A lab result about `subject` alone (no encounter).
fn subject_result(subject: &str) -> Value {
    let mut result = lab_result(subject, "");
    result.as_object_mut().unwrap().remove("encounter");
    result
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

async fn a_transaction_assigns_ids_and_rewrites_every_reference_to_its_entries(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut obs = lab_result(
        "urn:uuid:6a1f5b0e-0000-4000-8000-000000000001",
        "urn:uuid:6a1f5b0e-0000-4000-8000-000000000002",
    );
    // Nested and in extensions: a reference inside an extension of an extension.
    obs["extension"] = json!([{
        "url": "http://clinic.example/fhir/StructureDefinition/reviewed",
        "extension": [{"url": "by", "valueReference": {"reference": "urn:oid:2.16.840.1.113883.19.5"}}]
    }]);
    let bundle = transaction(vec![
        // The Observation comes first: it is still written after what it references.
        post("urn:uuid:6a1f5b0e-0000-4000-8000-000000000003", obs),
        post(
            "urn:uuid:6a1f5b0e-0000-4000-8000-000000000002",
            json!({"resourceType": "Encounter", "status": "finished",
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                   "subject": {"reference": "urn:uuid:6a1f5b0e-0000-4000-8000-000000000001"},
                   "participant": [{"individual": {"reference": "urn:oid:2.16.840.1.113883.19.5"}}]}),
        ),
        post(
            "urn:uuid:6a1f5b0e-0000-4000-8000-000000000001",
            json!({"resourceType": "Patient", "name": [{"family": "Rivera", "given": ["Ana"]}],
                   "generalPractitioner": [{"reference": "urn:oid:2.16.840.1.113883.19.5"}]}),
        ),
        post(
            "urn:oid:2.16.840.1.113883.19.5",
            json!({"resourceType": "Practitioner", "name": [{"family": "Soto"}]}),
        ),
        post(
            "urn:uuid:6a1f5b0e-0000-4000-8000-000000000004",
            json!({"resourceType": "DiagnosticReport", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
                   "subject": {"reference": "urn:uuid:6a1f5b0e-0000-4000-8000-000000000001"},
                   "result": [{"reference": "urn:uuid:6a1f5b0e-0000-4000-8000-000000000003"}]}),
        ),
    ]);
    let r = app.post("/fhir", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["type"], "transaction-response");
    let entries = r.body["entry"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        5,
        "one response entry per request entry, in order"
    );
    let order = [
        "Observation",
        "Encounter",
        "Patient",
        "Practitioner",
        "DiagnosticReport",
    ];
    let mut at = Vec::new();
    for (e, rt) in entries.iter().zip(order) {
        assert_eq!(e["response"]["status"], "201 Created", "{e}");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
        assert!(e["response"]["lastModified"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert!(e.get("resource").is_none(), "minimal by default: {e}");
        let l = located(e);
        assert!(l.starts_with(&format!("{rt}/")), "{l}");
        assert_eq!(e["fullUrl"], json!(app.url(&format!("/fhir/{l}"))));
        at.push(l);
    }
    let (obs, enc, pat, dr_, rep) = (&at[0], &at[1], &at[2], &at[3], &at[4]);
    let o = app.get(&format!("/fhir/{obs}")).await.body;
    assert_eq!(o["subject"]["reference"], json!(pat));
    assert_eq!(o["encounter"]["reference"], json!(enc));
    assert_eq!(
        o["extension"][0]["extension"][0]["valueReference"]["reference"],
        json!(dr_)
    );
    let e = app.get(&format!("/fhir/{enc}")).await.body;
    assert_eq!(e["subject"]["reference"], json!(pat));
    assert_eq!(e["participant"][0]["individual"]["reference"], json!(dr_));
    let p = app.get(&format!("/fhir/{pat}")).await.body;
    assert_eq!(p["generalPractitioner"][0]["reference"], json!(dr_));
    let d = app.get(&format!("/fhir/{rep}")).await.body;
    assert_eq!(d["result"][0]["reference"], json!(obs));
    for v in [&o, &e, &p, &d] {
        let mut all = Vec::new();
        strings(v, &mut all);
        assert!(
            all.iter().all(|s| !s.starts_with("urn:")),
            "a bundle-local reference was left: {v}"
        );
    }
    // With return=representation each entry carries what was stored.
    let again = transaction(vec![post(
        "urn:uuid:6a1f5b0e-0000-4000-8000-000000000009",
        json!({"resourceType": "Patient", "name": [{"family": "Mora"}]}),
    )]);
    let r = app
        .send(
            Method::POST,
            "/fhir",
            Some(&again),
            &[("prefer", "return=representation")],
        )
        .await;
    let entry = &r.body["entry"][0];
    assert_eq!(entry["resource"]["name"][0]["family"], "Mora");
    assert_eq!(
        format!("Patient/{}", entry["resource"]["id"].as_str().unwrap()),
        located(entry)
    );
}

async fn a_failed_transaction_leaves_every_table_as_it_was(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let enc = json!({"resourceType": "Encounter", "id": "visit", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/ana"}});
    assert_eq!(
        app.put("/fhir/Encounter/visit", &enc).await.status,
        StatusCode::CREATED
    );
    app.create(&lab_result("Patient/ana", "Encounter/visit"))
        .await;
    let before = app.snapshot().await;
    assert!(before["patients"].len() == 1 && before["resource_versions"].len() == 3);

    let good = vec![
        post(
            "urn:uuid:00000000-0000-4000-8000-0000000000a1",
            json!({"resourceType": "Patient", "name": [{"family": "Nueva"}]}),
        ),
        post(
            "urn:uuid:00000000-0000-4000-8000-0000000000a2",
            lab_result(
                "urn:uuid:00000000-0000-4000-8000-0000000000a1",
                "Encounter/visit",
            ),
        ),
        json!({"resource": {"resourceType": "Patient", "id": "ana", "name": [{"family": "Changed"}]},
               "request": {"method": "PUT", "url": "Patient/ana"}}),
        json!({"request": {"method": "DELETE", "url": "Patient?identifier=none|none"}}),
    ];
    // The last entry fails inside the database transaction (a reference to nothing), after
    // every other entry was written; and then before it (a schema error, found up front).
    let failures = [
        (
            lab_result("Patient/nobody", "Encounter/visit"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Bundle.entry[4].resource.subject"),
        ),
        (
            json!({"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}),
            StatusCode::BAD_REQUEST,
            None,
        ),
    ];
    for (last, status, path) in failures {
        let mut entries = good.clone();
        entries.push(post("urn:uuid:00000000-0000-4000-8000-0000000000a5", last));
        let r = app.post("/fhir", &transaction(entries)).await;
        assert_eq!(r.status, status, "{}", r.text);
        let issues = r.outcome();
        assert!(
            issues[0].1.contains("Bundle.entry[4]")
                && issues[0]
                    .1
                    .contains("urn:uuid:00000000-0000-4000-8000-0000000000a5"),
            "the outcome names the entry and its fullUrl: {issues:?}"
        );
        if let Some(p) = path {
            assert_eq!(issues[0].2.as_deref(), Some(p));
        }
        assert_eq!(
            app.snapshot().await,
            before,
            "a failed transaction changed the database"
        );
    }
    // A DELETE that rolls back: the entry after it fails.
    let r = app
        .post(
            "/fhir",
            &transaction(vec![
                json!({"request": {"method": "DELETE", "url": "Observation?code=2345-7"}}),
                json!({"request": {"method": "DELETE", "url": "Encounter/visit"}}),
                json!({"resource": {"resourceType": "Patient", "id": "ana", "gender": "unknown", "birthDate": "3000-01-01", "active": true, "name": [{"family": "x"}], "generalPractitioner": [{"reference": "Practitioner/nobody"}]},
                       "request": {"method": "PUT", "url": "Patient/ana"}}),
            ]),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert!(r.outcome()[0].1.contains("Bundle.entry[2]"), "{}", r.text);
    assert_eq!(app.snapshot().await, before);
    assert_eq!(
        app.get("/fhir/Encounter/visit").await.status,
        StatusCode::OK
    );
}

async fn entries_are_processed_delete_post_put_get(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let old = app
        .create(&json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}], "name": [{"family": "Vieja"}]}))
        .await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    stub(&app, "Patient", "keep").await;
    let bundle = transaction(vec![
        json!({"request": {"method": "GET", "url": "Patient/keep"}}),
        json!({"resource": {"resourceType": "Patient", "id": "keep", "name": [{"family": "Puesta"}]},
               "request": {"method": "PUT", "url": "Patient/keep"}}),
        json!({"fullUrl": "urn:uuid:11111111-0000-4000-8000-000000000001",
               "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}], "name": [{"family": "Nueva"}]},
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|7"}}),
        json!({"request": {"method": "DELETE", "url": "Patient?identifier=urn:mrn|7"}}),
        json!({"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|7"}}),
    ]);
    let r = app.post("/fhir", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = r.body["entry"].as_array().unwrap();
    // GET after PUT: it sees the new name and version.
    assert_eq!(e[0]["response"]["status"], "200 OK");
    assert_eq!(e[0]["resource"]["name"][0]["family"], "Puesta");
    assert_eq!(e[0]["resource"]["meta"]["versionId"], "2");
    assert_eq!(e[1]["response"]["status"], "200 OK");
    assert_eq!(e[1]["response"]["etag"], "W/\"2\"");
    // DELETE before POST: the conditional create no longer finds the old patient.
    assert_eq!(e[3]["response"]["status"], "204 No Content");
    assert_eq!(e[2]["response"]["status"], "201 Created");
    let new_id = located(&e[2]);
    assert_ne!(new_id, format!("Patient/{old_id}"));
    assert_eq!(
        app.get(&format!("/fhir/Patient/{old_id}")).await.status,
        StatusCode::GONE
    );
    // GET last: the search finds only the new one.
    let found = &e[4]["resource"];
    assert_eq!(found["type"], "searchset");
    assert_eq!(
        TestApp::ids(found),
        vec![new_id.trim_start_matches("Patient/").to_owned()]
    );
}

async fn a_batch_answers_each_entry_on_its_own(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let before = app.count("patients").await;
    let bundle = batch(vec![
        post(
            "urn:uuid:22222222-0000-4000-8000-000000000001",
            json!({"resourceType": "Patient", "name": [{"family": "Uno"}]}),
        ),
        post(
            "urn:uuid:22222222-0000-4000-8000-000000000002",
            lab_result("Patient/nobody", "Encounter/none"),
        ),
        json!({"request": {"method": "GET", "url": "Patient/missing"}}),
        json!({"resource": {"resourceType": "Organization", "id": "o1", "name": "Clinic"}, "request": {"method": "PUT", "url": "Organization/o1"}}),
        json!({"request": {"method": "FETCH", "url": "Patient"}}),
        json!({"request": {"method": "GET", "url": "Patient/ana"}}),
        post(
            "urn:uuid:22222222-0000-4000-8000-000000000003",
            json!({"resourceType": "Patient", "name": [{"family": "Dos"}]}),
        ),
    ]);
    let r = app.post("/fhir", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["type"], "batch-response");
    let e = r.body["entry"].as_array().unwrap();
    let statuses = statuses(&r.body);
    assert_eq!(
        statuses,
        [
            "201 Created",
            "422 Unprocessable Entity",
            "404 Not Found",
            "404 Not Found",
            "400 Bad Request",
            "200 OK",
            "201 Created"
        ]
    );
    for (i, failed) in [
        (1, "subject"),
        (2, "Patient/missing"),
        (3, "Organization"),
        (4, "method"),
    ] {
        let outcome = &e[i]["response"]["outcome"];
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{}", e[i]);
        let text = outcome.to_string();
        assert!(
            text.contains(&format!("Bundle.entry[{i}]")) && text.contains(failed),
            "{text}"
        );
    }
    assert_eq!(e[5]["resource"]["id"], "ana");
    assert_eq!(
        app.count("patients").await,
        before + 2,
        "the good entries were committed"
    );
}

async fn a_batch_of_conditional_creates_sees_its_earlier_entries(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let first = app.post("/fhir", &batch(vec![conditional("100")])).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let before = app.count("users").await;
    // The writes of a batch are tried together: each entry still sees the ones before it.
    let r = app
        .post(
            "/fhir",
            &batch(vec![
                conditional("100"),
                conditional("200"),
                conditional("200"),
                conditional("300"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = r.body["entry"].as_array().unwrap();
    let statuses = statuses(&r.body);
    assert_eq!(statuses, ["200 OK", "201 Created", "200 OK", "201 Created"]);
    let location = |i: usize| e[i]["response"]["location"].as_str().unwrap().to_owned();
    assert_eq!(location(0), first.body["entry"][0]["response"]["location"]);
    assert_eq!(
        location(1),
        location(2),
        "the repeated criteria find the first"
    );
    assert_eq!(app.count("users").await, before + 2);
}

async fn a_batch_entry_finds_what_an_earlier_entry_of_its_run_wrote(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let before = app.count("users").await;
    // The conditional creates find nothing when the run begins; each still sees the resource
    // an entry before it made (a PUT, a plain POST) as it would one by one.
    let r = app
        .post(
            "/fhir",
            &batch(vec![
                json!({"resource": {"id": "put-first", "resourceType": "Practitioner",
                       "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "400"}]},
                       "request": {"method": "PUT", "url": "Practitioner/put-first"}}),
                conditional("400"),
                json!({"resource": npi("500"), "request": {"method": "POST", "url": "Practitioner"}}),
                conditional("500"),
                conditional("600"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = r.body["entry"].as_array().unwrap();
    let statuses = statuses(&r.body);
    assert_eq!(
        statuses,
        [
            "201 Created",
            "200 OK",
            "201 Created",
            "200 OK",
            "201 Created"
        ]
    );
    let id = |i: usize| located(&e[i]);
    assert_eq!(id(1), "Practitioner/put-first");
    assert_eq!(id(3), id(2), "the plain POST's practitioner is found");
    assert_eq!(app.count("users").await, before + 3);
}

async fn a_batch_keeps_an_email_another_practitioner_holds_out_of_its_column(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let held = app
        .post("/fhir", &batch(vec![doctor("700", "held@example.org")]))
        .await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.text);
    let r = app
        .post(
            "/fhir",
            &batch(vec![
                doctor("701", "twice@example.org"),
                doctor("702", "twice@example.org"),
                doctor("703", "held@example.org"),
                doctor("704", "own@example.org"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = r.body["entry"].as_array().unwrap();
    let mut ids = Vec::new();
    for (i, email) in ["twice", "twice", "held", "own"].iter().enumerate() {
        assert_eq!(e[i]["response"]["status"], "201 Created", "{}", r.text);
        let path = located(&e[i]);
        // Nothing is lost: each reads back with the email it was sent with.
        let back = app.get(&format!("/fhir/{path}")).await;
        assert_eq!(
            back.body["telecom"][0]["value"],
            format!("{email}@example.org"),
            "{path}"
        );
        ids.push(path.trim_start_matches("Practitioner/").to_owned());
    }
    // The column holds an email once: the first to write it.
    let mut columns = Vec::new();
    for id in &ids {
        let row = app
            .db
            .fetch_optional(
                "SELECT email FROM users WHERE fhir_id = ?",
                &[id.as_str().into()],
            )
            .await
            .unwrap()
            .unwrap();
        columns.push(row.text("email").unwrap());
    }
    assert_eq!(
        columns,
        [
            Some("twice@example.org".to_owned()),
            None,
            None,
            Some("own@example.org".to_owned())
        ]
    );
    if engine == Engine::Postgres {
        // The entries were written together, in one transaction (they would not be if one
        // had failed on the column's unique index and the run had been done one by one).
        let xmins = app
            .db
            .fetch_optional(
                "SELECT count(DISTINCT xmin::text) AS n FROM users WHERE license_number IN ('701', '702', '703', '704')",
                &[],
            )
            .await
            .unwrap()
            .unwrap()
            .bigint("n")
            .unwrap();
        assert_eq!(xmins, 1);
    }
}

/// A doctor with NPI `n` and `email`, created unless one has the NPI.
fn doctor(n: &str, email: &str) -> Value {
    json!({"resource": {"resourceType": "Practitioner",
           "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}],
           "name": [{"family": format!("Npi{n}")}],
           "telecom": [{"system": "email", "value": email, "use": "work"}]},
           "request": {"method": "POST", "url": "Practitioner",
           "ifNoneExist": format!("identifier=http://hl7.org/fhir/sid/us-npi|{n}")}})
}

/// Batches longer than one run of writes (200 entries): on PostgreSQL two runs go to the
/// database side by side unless one could see or take what the other writes; each entry is
/// answered as it would be one after the other.
async fn a_long_batch_answers_each_entry_as_if_in_turn(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let users = app.count("users").await;
    // The last entry looks for the first one's NPI, 398 entries later: it finds it.
    let mut entries: Vec<Value> = (0..399).map(|i| conditional(&format!("9{i:03}"))).collect();
    entries.push(conditional("9000"));
    let r = app.post("/fhir", &batch(entries)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let s = statuses(&r.body);
    assert!(s[..399].iter().all(|s| s == "201 Created"), "{s:?}");
    assert_eq!(s[399], "200 OK");
    let e = r.body["entry"].as_array().unwrap();
    assert_eq!(located(&e[399]), located(&e[0]));
    let ids: std::collections::HashSet<String> = e.iter().map(located).collect();
    assert_eq!(ids.len(), 399);
    assert_eq!(app.count("users").await, users + 399);

    // Two doctors share an email in different runs: the column holds it for the first.
    let mut entries: Vec<Value> = (0..400)
        .map(|i| doctor(&format!("8{i:03}"), &format!("d{i}@example.org")))
        .collect();
    entries[3] = doctor("8003", "shared@example.org");
    entries[399] = doctor("8399", "shared@example.org");
    let r = app.post("/fhir", &batch(entries)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(statuses(&r.body).iter().all(|s| s == "201 Created"));
    let holder = app
        .db
        .fetch_optional(
            "SELECT license_number FROM users WHERE email = 'shared@example.org'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        holder.text("license_number").unwrap().as_deref(),
        Some("8003")
    );

    // A result in the second run refers to a patient the first run writes.
    let mut entries: Vec<Value> = (0..400)
        .map(|i| {
            json!({"resource": {"resourceType": "Patient", "id": format!("long-{i}")},
                   "request": {"method": "PUT", "url": format!("Patient/long-{i}")}})
        })
        .collect();
    entries[399] = json!({"resource": subject_result("Patient/long-0"), "request": {"method": "POST", "url": "Observation"}});
    let r = app.post("/fhir", &batch(entries)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        statuses(&r.body).iter().all(|s| s == "201 Created"),
        "{}",
        r.text
    );
    let back = app.get("/fhir/Observation?subject=Patient/long-0").await;
    assert_eq!(
        back.body["entry"].as_array().map(Vec::len),
        Some(1),
        "{}",
        back.text
    );
}

/// PostgreSQL: a batch entry that the database aborts to break a deadlock is run again, as a
/// transaction is, and answered as if nothing had happened.
#[tokio::test]
async fn postgres_a_batch_entry_aborted_by_a_deadlock_is_run_again() {
    let app = TestApp::spawn(Engine::Postgres).await;
    stub(&app, "Patient", "first").await;
    stub(&app, "Patient", "second").await;
    let mut result = subject_result("Patient/first");
    result["id"] = json!("moved");
    assert_eq!(
        app.put("/fhir/Observation/moved", &result).await.status,
        StatusCode::CREATED
    );
    result["subject"] = json!({"reference": "Patient/second"});
    let entry =
        json!({"resource": result, "request": {"method": "PUT", "url": "Observation/moved"}});

    // Another transaction holds the second patient's row; the entry's update takes the
    // result's row, then waits for the patient's (its new subject) ...
    let mut other = app.db.begin().await.unwrap();
    other
        .fetch_optional(
            "SELECT id FROM patients WHERE fhir_id = 'second' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let bundle = batch(vec![entry]);
    let deadlock = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // ... and this one asks for the result's row: a deadlock, which PostgreSQL breaks by
        // aborting the entry's transaction, the first to wait.
        other
            .fetch_optional(
                "SELECT id FROM medical_test_results WHERE fhir_id = 'moved' FOR UPDATE",
                &[],
            )
            .await
            .unwrap();
        drop(other);
    };
    let (r, ()) = tokio::join!(app.post("/fhir", &bundle), deadlock);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(statuses(&r.body), ["200 OK"], "{}", r.text);
    let back = app.get("/fhir/Observation/moved").await;
    assert_eq!(back.body["subject"]["reference"], "Patient/second");
    assert_eq!(back.body["meta"]["versionId"], "2");
}

async fn concurrent_transactions_adding_one_new_code_all_succeed(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    // Each transaction names a medication and a substance the catalogs do not hold yet.
    let bundle = |i: usize| {
        transaction(vec![
            post(
                &format!("urn:uuid:44444444-0000-4000-8000-00000000000{i}"),
                json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                       "subject": {"reference": "Patient/ana"},
                       "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "990001"}]}}),
            ),
            post(
                &format!("urn:uuid:55555555-0000-4000-8000-00000000000{i}"),
                json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/ana"},
                       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "990002"}]}}),
            ),
        ])
    };
    let mut tasks = Vec::new();
    for i in 0..6 {
        let req = app
            .client
            .post(app.url("/fhir"))
            .header("content-type", "application/fhir+json")
            .body(bundle(i).to_string());
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    for (table, code) in [("medications", "990001"), ("allergies", "990002")] {
        let rows = app
            .db
            .fetch_all(
                &format!("SELECT count(*) AS n FROM {table} WHERE code = ?"),
                &[code.into()],
            )
            .await
            .unwrap();
        assert_eq!(
            rows[0].bigint("n").unwrap(),
            1,
            "{table} holds the code once"
        );
    }
    assert_eq!(app.count("prescriptions").await, 6);
}

async fn a_transaction_with_types_not_hosted_is_refused_naming_them(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let before = app.snapshot().await;
    let r = app
        .post(
            "/fhir",
            &transaction(vec![
                post(
                    "urn:uuid:33333333-0000-4000-8000-000000000001",
                    json!({"resourceType": "Patient"}),
                ),
                post(
                    "urn:uuid:33333333-0000-4000-8000-000000000002",
                    json!({"resourceType": "Organization", "name": "x"}),
                ),
                post(
                    "urn:uuid:33333333-0000-4000-8000-000000000003",
                    json!({"resourceType": "Claim", "status": "active"}),
                ),
                post(
                    "urn:uuid:33333333-0000-4000-8000-000000000004",
                    json!({"resourceType": "Organization", "name": "y"}),
                ),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let issues = r.outcome();
    assert_eq!(issues[0].0, "not-supported");
    assert!(issues[0].1.contains("Claim, Organization"), "{issues:?}");
    assert_eq!(app.snapshot().await, before);
    // References to types not hosted, inside hosted resources, stay as sent.
    let r = app
        .post(
            "/fhir",
            &transaction(vec![post(
                "urn:uuid:33333333-0000-4000-8000-000000000005",
                json!({"resourceType": "Patient", "managingOrganization": {"reference": "Organization/elsewhere"}}),
            )]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let p = app
        .get(&format!("/fhir/{}", located(&r.body["entry"][0])))
        .await;
    assert_eq!(
        p.body["managingOrganization"]["reference"],
        "Organization/elsewhere"
    );
}

async fn malformed_bundles_are_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for (body, needle) in [
        (json!({"resourceType": "Patient"}), "Bundle"),
        (
            json!({"resourceType": "Bundle", "type": "collection"}),
            "batch or transaction",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": {}}),
            "array",
        ),
        (
            transaction(vec![json!({"resource": {"resourceType": "Patient"}})]),
            "request",
        ),
        (
            transaction(vec![
                json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}}),
            ]),
            "not a Observation",
        ),
        (
            transaction(vec![
                json!({"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/a"}}),
            ]),
            "does not match",
        ),
        (
            transaction(vec![
                json!({"request": {"method": "GET", "url": "../etc/passwd"}}),
            ]),
            "request.url",
        ),
        (
            transaction(vec![post(
                "urn:uuid:44444444-0000-4000-8000-000000000001",
                json!({"resourceType": "Patient", "link": [{"type": "seealso", "other": {"reference": "urn:uuid:44444444-0000-4000-8000-000000000099"}}]}),
            )]),
            "names no entry",
        ),
    ] {
        let r = app.post("/fhir", &body).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert!(r.outcome()[0].1.contains(needle), "{needle}: {}", r.text);
    }
    // Two entries writing the same resource.
    let twice = transaction(vec![
        json!({"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}}),
        json!({"resource": {"resourceType": "Patient", "id": "a", "active": true}, "request": {"method": "PUT", "url": "Patient/a"}}),
    ]);
    let r = app.post("/fhir", &twice).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.outcome()[0].1.contains("more than one entry"));
    assert_eq!(app.count("patients").await, 0);
    // Too many entries.
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"request": {"method": "GET", "url": "Patient"}}))
        .collect();
    let r = app.post("/fhir", &batch(many)).await;
    assert!(
        r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        r.status
    );
    assert_eq!(r.body["resourceType"], "OperationOutcome");
}

/// The update time a create is answered with is the one its row keeps: in the entry's response
/// and resource, in a read, in its history and in the row's `updated_at` and `created_at`
/// (which the insert writes itself), for each kind of row a resource is inserted into (a
/// patient, a vital sign, a lab result).
async fn a_created_resource_keeps_the_time_it_was_answered_with(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patient = "urn:uuid:7b2f0c1e-0000-4000-8000-000000000001";
    let weight = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": "2026-05-02T08:00:00Z",
        "valueQuantity": {"value": 71.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    let mut glucose = lab_result(patient, "Encounter/none");
    glucose.as_object_mut().unwrap().remove("encounter");
    let bundle = transaction(vec![
        post(
            patient,
            json!({"resourceType": "Patient", "name": [{"family": "Rivas"}]}),
        ),
        post("urn:uuid:7b2f0c1e-0000-4000-8000-000000000002", weight),
        post("urn:uuid:7b2f0c1e-0000-4000-8000-000000000003", glucose),
    ]);
    // The database's clock, as its update triggers read it, before and after.
    let clock = || async {
        let sql = format!("SELECT {} AS now", app.db.dialect().now());
        let row = app.db.fetch_optional(&sql, &[]).await.unwrap().unwrap();
        row.timestamp("now").unwrap()
    };
    let before = clock().await;
    let r = app
        .send(
            Method::POST,
            "/fhir",
            Some(&bundle),
            &[("prefer", "return=representation")],
        )
        .await;
    let after = clock().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let tables = [
        "patients",
        "vital_sign_observations",
        "medical_test_results",
    ];
    for (entry, table) in r.body["entry"].as_array().unwrap().iter().zip(tables) {
        let at = entry["resource"]["meta"]["lastUpdated"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        // (SQLite's column keeps milliseconds.)
        assert!(
            before.trunc_subsecs(3) <= at && at <= after,
            "{table}: {at} is not between {before} and {after}"
        );
        assert_eq!(
            entry["response"]["lastModified"]
                .as_str()
                .map(|t| { chrono::DateTime::parse_from_rfc3339(t).unwrap() }),
            Some(at)
        );
        let path = located(entry);
        let read = app.get(&format!("/fhir/{path}")).await;
        assert_eq!(read.body, entry["resource"], "{path} reads as answered");
        let history = app.get(&format!("/fhir/{path}/_history")).await;
        assert_eq!(
            history.body["entry"][0]["resource"], entry["resource"],
            "{path}: its history"
        );
        let id = entry["resource"]["id"].as_str().unwrap();
        let row = app
            .db
            .fetch_optional(
                &format!("SELECT created_at, updated_at FROM {table} WHERE fhir_id = ?"),
                &[id.into()],
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no {table} row for {path}"));
        assert_eq!(
            row.timestamp("updated_at").unwrap(),
            at,
            "{table}.updated_at"
        );
        assert_eq!(
            row.timestamp("created_at").unwrap(),
            at,
            "{table}.created_at"
        );
    }
}

on_both_engines!(
    a_transaction_assigns_ids_and_rewrites_every_reference_to_its_entries,
    a_failed_transaction_leaves_every_table_as_it_was,
    entries_are_processed_delete_post_put_get,
    a_batch_answers_each_entry_on_its_own,
    a_batch_of_conditional_creates_sees_its_earlier_entries,
    a_batch_entry_finds_what_an_earlier_entry_of_its_run_wrote,
    a_batch_keeps_an_email_another_practitioner_holds_out_of_its_column,
    a_long_batch_answers_each_entry_as_if_in_turn,
    concurrent_transactions_adding_one_new_code_all_succeed,
    a_transaction_with_types_not_hosted_is_refused_naming_them,
    malformed_bundles_are_refused,
    a_created_resource_keeps_the_time_it_was_answered_with,
);

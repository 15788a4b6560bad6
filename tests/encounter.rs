//! Encounter over the consultations table: round trips, columns, clinic writes, search, errors.

mod common;

use common::{strip_id_meta, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn patient(app: &TestApp, id: &str) {
    let r = app
        .put(
            &format!("/fhir/Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
}

fn assert_same(name: &str, sent: &Value, back: &Value) {
    let (a, b) = (strip_id_meta(sent), strip_id_meta(back));
    assert!(
        a == b,
        "{name} changed: {}",
        common::first_difference(&a, &b, "Encounter").unwrap_or_default()
    );
}

async fn every_example_encounter_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for id in ["example", "f001", "f201"] {
        patient(&app, id).await;
    }
    for id in ["example", "f002", "f201"] {
        let dr = json!({"resourceType": "Practitioner", "id": id});
        assert_eq!(
            app.put(&format!("/fhir/Practitioner/{id}"), &dr)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let names = [
        "Encounter-emerg",
        "Encounter-example",
        "Encounter-f001",
        "Encounter-f201",
        "Encounter-home",
    ];
    for name in names {
        let sent = common::data(&format!("examples/{name}.json"));
        let created = app.post("/fhir/Encounter", &sent).await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{name}: {}",
            created.text
        );
        let back = app
            .get(&format!(
                "/fhir/Encounter/{}",
                created.body["id"].as_str().unwrap()
            ))
            .await;
        assert_same(name, &sent, &back.body);
        let id = sent["id"].as_str().unwrap();
        let put = app.put(&format!("/fhir/Encounter/{id}"), &sent).await;
        assert_eq!(put.status, StatusCode::CREATED, "{name}: {}", put.text);
        assert_same(
            name,
            &sent,
            &app.get(&format!("/fhir/Encounter/{id}")).await.body,
        );
    }
}

/// The Synthea Encounters refer to their Patient by the bundle's urn:uuid; here by Patient/{id}.
fn synthea_encounters() -> Vec<Value> {
    let mut all: Vec<Value> = common::data("synthea/encounters.json")
        .as_array()
        .unwrap()
        .clone();
    for e in &mut all {
        let subject = e["subject"]["reference"]
            .as_str()
            .unwrap()
            .replace("urn:uuid:", "Patient/");
        e["subject"]["reference"] = json!(subject);
        common::literal_practitioners(e);
    }
    all
}

async fn every_synthea_encounter_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for p in common::data("synthea/patients.json").as_array().unwrap() {
        patient(&app, p["id"].as_str().unwrap()).await;
    }
    common::synthea_practitioners(&app).await;
    let all = synthea_encounters();
    assert_eq!(all.len(), 579);
    for sent in &all {
        let id = sent["id"].as_str().unwrap();
        let r = app.put(&format!("/fhir/Encounter/{id}"), sent).await;
        assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.text);
        assert_same(
            id,
            sent,
            &app.get(&format!("/fhir/Encounter/{id}")).await.body,
        );
    }
    assert_eq!(app.count("consultations").await, 579);
}

async fn mapped_values_land_in_their_columns(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    patient(&app, "example").await;
    let sent = common::data("examples/Encounter-example.json");
    let r = app.post("/fhir/Encounter", &sent).await;
    let row = app
        .db
        .fetch_optional(
            "SELECT c.status, c.class_code, p.fhir_id AS patient FROM consultations c JOIN patients p ON p.id = c.patient_id WHERE c.fhir_id = ?",
            &[r.body["id"].as_str().unwrap().into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.text("status").unwrap().as_deref(), Some("in-progress"));
    assert_eq!(row.text("class_code").unwrap().as_deref(), Some("IMP"));
    assert_eq!(row.text("patient").unwrap().as_deref(), Some("example"));
}

async fn a_consultation_written_by_the_clinic_is_an_encounter(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    patient(&app, "ana").await;
    app.db
        .execute(
            "INSERT INTO consultations (id, fhir_id, patient_id, status, class_code, type_code, type_system, type_display, period_start, period_end) \
             SELECT ?, 'clinic-1', id, 'finished', 'AMB', '11429006', 'http://snomed.info/sct', 'Consultation', ?, ? FROM patients WHERE fhir_id = 'ana'",
            &[
                uuid::Uuid::new_v4().into(),
                chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc().into(),
                chrono::DateTime::parse_from_rfc3339("2026-03-01T09:30:00Z").unwrap().to_utc().into(),
            ],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/Encounter/clinic-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "1");
    assert_eq!(r.body["status"], "finished");
    assert_eq!(
        r.body["class"],
        json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"})
    );
    assert_eq!(r.body["subject"], json!({"reference": "Patient/ana"}));
    assert_eq!(
        r.body["type"],
        json!([{"coding": [{"code": "11429006", "system": "http://snomed.info/sct", "display": "Consultation"}]}])
    );
    assert_eq!(
        r.body["period"],
        json!({"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T09:30:00Z"})
    );
    let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys[..3],
        ["resourceType", "id", "meta"],
        "elements in the specification's order"
    );
    app.db
        .execute(
            "UPDATE consultations SET status = 'cancelled' WHERE fhir_id = 'clinic-1'",
            &[],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/Encounter/clinic-1").await;
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert_eq!(r.body["status"], "cancelled");
}

async fn ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let r = app.get(&format!("/fhir/Encounter?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    assert_eq!(
        r.body["total"].as_u64().unwrap() as usize,
        TestApp::ids(&r.body).len()
    );
    TestApp::ids(&r.body).into_iter().collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    patient(&app, "ana").await;
    patient(&app, "bruno").await;
    let enc = |id: &str,
               who: &str,
               status: &str,
               class: &str,
               start: &str,
               end: Option<&str>,
               reason: &str| {
        let mut e = json!({
            "resourceType": "Encounter",
            "id": id,
            "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": if class == "EMER" { "50849002" } else { "11429006" }}]}],
            "subject": {"reference": format!("Patient/{who}")},
            "period": {"start": start},
            "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": reason}]}]
        });
        if let Some(end) = end {
            e["period"]["end"] = json!(end);
        }
        e
    };
    let all = [
        enc(
            "e1",
            "ana",
            "finished",
            "AMB",
            "2026-01-10T09:00:00Z",
            Some("2026-01-10T09:30:00Z"),
            "38341003",
        ),
        enc(
            "e2",
            "ana",
            "finished",
            "EMER",
            "2026-02-03T22:00:00Z",
            Some("2026-02-04T03:00:00Z"),
            "125605004",
        ),
        enc(
            "e3",
            "bruno",
            "in-progress",
            "AMB",
            "2026-02-04T10:00:00Z",
            None,
            "38341003",
        ),
        enc(
            "e4",
            "bruno",
            "cancelled",
            "VR",
            "2025-12-31T23:00:00-02:00",
            Some("2026-01-01T01:30:00-02:00"),
            "44054006",
        ),
    ];
    for e in &all {
        let r = app
            .put(&format!("/fhir/Encounter/{}", e["id"].as_str().unwrap()), e)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let cases: &[(&str, &[&str])] = &[
        ("patient=ana", &["e1", "e2"]),
        ("patient=Patient/bruno", &["e3", "e4"]),
        ("subject=Patient/ana", &["e1", "e2"]),
        ("patient=Group/ana", &[]),
        ("status=finished", &["e1", "e2"]),
        ("status=finished,cancelled", &["e1", "e2", "e4"]),
        ("class=EMER", &["e2"]),
        (
            "class=http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB",
            &["e1", "e3"],
        ),
        ("type=http://snomed.info/sct|50849002", &["e2"]),
        ("type=11429006", &["e1", "e3", "e4"]),
        ("reason-code=38341003", &["e1", "e3"]),
        ("date=2026-01-10", &["e1"]),
        ("date=2026-02", &["e2"]),
        // e2 (Feb 3 22:00 to Feb 4 03:00) neither lies within Feb 4 nor reaches past it: per
        // the specification's ge, only the range above the value or inside it matches.
        ("date=ge2026-02-04", &["e3"]),
        ("date=ge2026-02-03", &["e2", "e3"]),
        // e4 started 2025-12-31T23:00-02:00, which is 2026-01-01T01:00Z: dates are days in UTC.
        ("date=lt2026-01-01", &[]),
        ("date=lt2026-01-01T02:00:00Z", &["e4"]),
        ("date=lt2025-12-31T23:30:00-02:00", &["e4"]),
        ("date=2026-01-01", &["e4"]),
        ("date=gt2026-03-01", &["e3"]),
        ("date=ge2026-01-01&date=lt2026-02-01", &["e1", "e4"]),
        ("patient=bruno&status=in-progress", &["e3"]),
    ];
    for (q, want) in cases {
        assert_eq!(ids(&app, q).await, set(want), "Encounter?{q}");
    }
}

async fn what_the_clinic_schema_cannot_hold_is_a_clear_422(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    patient(&app, "ana").await;
    let base = json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/ana"}
    });
    assert_eq!(
        app.post("/fhir/Encounter", &base).await.status,
        StatusCode::CREATED
    );
    let cases = [
        (
            "class",
            json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "XYZ"}),
            "Encounter.class",
        ),
        (
            "subject",
            json!({"reference": "Patient/nobody"}),
            "Encounter.subject",
        ),
        (
            "subject",
            json!({"reference": "Group/ward-3"}),
            "Encounter.subject",
        ),
    ];
    for (key, value, at) in cases {
        let mut bad = base.clone();
        bad[key] = value;
        let r = app.post("/fhir/Encounter", &bad).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{key}: {}",
            r.text
        );
        assert!(
            r.outcome().iter().any(|(_, _, e)| e.as_deref() == Some(at)),
            "{at}: {:?}",
            r.outcome()
        );
    }
    let mut no_subject = base.clone();
    no_subject.as_object_mut().unwrap().remove("subject");
    let r = app.post("/fhir/Encounter", &no_subject).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Encounter.subject"));
    assert_eq!(
        app.count("consultations").await,
        1,
        "nothing else was written"
    );
}

on_both_engines!(
    every_example_encounter_round_trips,
    every_synthea_encounter_round_trips,
    mapped_values_land_in_their_columns,
    a_consultation_written_by_the_clinic_is_an_encounter,
    search_parameters_return_exactly_the_matching_ids,
    what_the_clinic_schema_cannot_hold_is_a_clear_422,
);

//! DiagnosticReport over medical_tests.

mod common;

use common::{round_trip, stub, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;

const EXAMPLES: &[&str] = &["102", "example-pgx", "f201", "pap", "ultrasound"];

async fn every_example_and_synthea_report_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for p in [
        "pat2",
        "899962",
        "f201",
        "b248b1b2-1686-4b94-9936-37d7a5f94b51",
        "example",
    ] {
        stub(&app, "Patient", p).await;
    }
    for dr in ["3ad0687e-f477-468c-afd5-fcc2bf897809", "example"] {
        stub(&app, "Practitioner", dr).await;
    }
    // The Observations the examples' results name (a subject is optional for a result).
    for o in ["bmd", "example-phenotype"] {
        let body =
            json!({"resourceType": "Observation", "id": o, "status": "final", "code": {"text": o}});
        round_trip(&app, &body, true).await;
    }
    for name in EXAMPLES {
        let sent = common::data(&format!("examples/DiagnosticReport-{name}.json"));
        round_trip(&app, &sent, false).await;
        round_trip(&app, &sent, true).await;
    }
    common::load_synthea_patients_and_encounters(&app).await;
    let all = common::data("synthea/diagnostic_reports.json");
    assert_eq!(all.as_array().unwrap().len(), 333);
    for d in all.as_array().unwrap() {
        let mut sent = d.clone();
        common::local_reference(&mut sent, "subject", "Patient");
        common::local_reference(&mut sent, "encounter", "Encounter");
        round_trip(&app, &sent, true).await;
    }
    let lab = app
        .db
        .fetch_optional("SELECT count(*) AS n FROM medical_tests WHERE category_code = 'LAB' AND consultation_id IS NOT NULL", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lab.bigint("n").unwrap(), 78);
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bruno").await;
    let report = |id: &str, who: &str, status: &str, cat: &str, code: &str, when: &str| {
        json!({
            "resourceType": "DiagnosticReport", "id": id, "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": cat}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{who}")},
            "effectiveDateTime": when, "issued": when
        })
    };
    for r in [
        report(
            "r1",
            "ana",
            "final",
            "LAB",
            "58410-2",
            "2026-01-10T08:00:00Z",
        ),
        report(
            "r2",
            "ana",
            "preliminary",
            "RAD",
            "24627-2",
            "2026-02-11T08:00:00Z",
        ),
        report(
            "r3",
            "bruno",
            "final",
            "LAB",
            "24323-8",
            "2025-12-01T08:00:00Z",
        ),
    ] {
        round_trip(&app, &r, true).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("patient=ana", &["r1", "r2"]),
        ("status=final", &["r1", "r3"]),
        ("category=LAB", &["r1", "r3"]),
        (
            "category=http://terminology.hl7.org/CodeSystem/v2-0074|RAD",
            &["r2"],
        ),
        ("code=http://loinc.org|24323-8", &["r3"]),
        ("date=2026-01", &["r1"]),
        ("issued=ge2026-01-01", &["r1", "r2"]),
        ("patient=ana&category=LAB", &["r1"]),
    ];
    for (q, want) in cases {
        let r = app.get(&format!("/fhir/DiagnosticReport?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "DiagnosticReport?{q}");
    }
}

async fn a_result_reference_must_name_an_observation_of_this_server(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let r = json!({"resourceType": "DiagnosticReport", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient/ana"},
        "result": [{"reference": "Observation/nope"}]});
    let res = app.post("/fhir/DiagnosticReport", &r).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.outcome()[0].2.as_deref(),
        Some("DiagnosticReport.result[0]")
    );
    assert_eq!(app.count("medical_tests").await, 0);
    let obs = json!({"resourceType": "Observation", "id": "nope", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": "Patient/ana"},
        "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}});
    round_trip(&app, &obs, true).await;
    let created = app.post("/fhir/DiagnosticReport", &r).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let found = app.get("/fhir/DiagnosticReport?patient=ana").await;
    assert_eq!(
        found.body["entry"][0]["resource"]["result"][0]["reference"],
        "Observation/nope"
    );
}

async fn a_report_without_a_code_the_clinic_can_keep_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let r = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Blood panel"}, "subject": {"reference": "Patient/ana"}});
    let res = app.post("/fhir/DiagnosticReport", &r).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.outcome()[0].2.as_deref(), Some("DiagnosticReport.code"));
    assert_eq!(app.count("medical_tests").await, 0);
}

on_both_engines!(
    every_example_and_synthea_report_round_trips,
    search_parameters_return_exactly_the_matching_ids,
    a_report_without_a_code_the_clinic_can_keep_is_refused,
    a_result_reference_must_name_an_observation_of_this_server,
);

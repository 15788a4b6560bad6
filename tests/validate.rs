//! $validate: the issues a write would meet, reported without writing anything.

mod common;

use common::{stub, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::json;

async fn nothing_written(app: &TestApp) {
    for t in [
        "consultations",
        "resource_versions",
        "allergies",
        "patient_allergies",
    ] {
        let n = app.count(t).await;
        let expected = if t == "resource_versions" { 1 } else { 0 };
        assert_eq!(n, expected, "{t}: $validate writes nothing");
    }
}

async fn a_valid_resource_gets_an_informational_outcome(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let enc = json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/ana"}
    });
    let r = app.post("/fhir/Encounter/$validate", &enc).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["issue"][0]["severity"], "information");
    let wrapped =
        json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": enc}]});
    let r = app.post("/fhir/Encounter/$validate", &wrapped).await;
    assert_eq!(r.body["issue"][0]["severity"], "information");
    nothing_written(&app).await;
}

async fn every_kind_of_problem_is_reported_without_writing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    // Schema problems.
    let r = app
        .post(
            "/fhir/Encounter/$validate",
            &json!({"resourceType": "Encounter", "status": 7}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.outcome()
            .iter()
            .any(|(_, _, e)| e.as_deref() == Some("Encounter.status")),
        "{:?}",
        r.outcome()
    );
    // A reference to nothing.
    let r = app
        .post(
            "/fhir/Encounter/$validate",
            &json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/ghost"}}),
        )
        .await;
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Encounter.subject"));
    // A code the clinic schema does not take; the catalog entry it would have added is rolled back.
    let allergy = json!({
        "resourceType": "AllergyIntolerance", "criticality": "high",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "dormant"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
        "patient": {"reference": "Patient/ana"}
    });
    let r = app
        .post("/fhir/AllergyIntolerance/$validate", &allergy)
        .await;
    assert_eq!(
        r.outcome()[0].2.as_deref(),
        Some("AllergyIntolerance.clinicalStatus")
    );
    // A valid allergy would add a catalog entry: validating it adds nothing.
    let mut ok = allergy.clone();
    ok["clinicalStatus"]["coding"][0]["code"] = json!("active");
    let r = app.post("/fhir/AllergyIntolerance/$validate", &ok).await;
    assert_eq!(r.body["issue"][0]["severity"], "information", "{}", r.text);
    nothing_written(&app).await;
    // A Parameters without a resource is a bad request.
    let r = app.post("/fhir/Encounter/$validate", &json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn claimed_profiles_are_checked_on_writes_and_by_validate(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let claim = json!({"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient|3.1.1"]});
    let thin = json!({"resourceType": "Patient", "meta": claim, "identifier": [{"system": "urn:x", "value": "1"}], "name": [{"family": "X"}]});
    let r = app.post("/fhir/Patient", &thin).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Patient.gender"));
    assert!(r.outcome()[0].1.contains("us-core-patient"));
    let v = app.post("/fhir/Patient/$validate", &thin).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.outcome()[0].2.as_deref(), Some("Patient.gender"));
    assert_eq!(app.count("patients").await, 0);
    let mut full = thin.clone();
    full["gender"] = json!("female");
    assert_eq!(
        app.post("/fhir/Patient", &full).await.status,
        StatusCode::CREATED
    );
    // The same resource without the claim is not held to the profile.
    let mut unclaimed = thin.clone();
    unclaimed.as_object_mut().unwrap().remove("meta");
    assert_eq!(
        app.post("/fhir/Patient", &unclaimed).await.status,
        StatusCode::CREATED
    );
}

on_both_engines!(
    claimed_profiles_are_checked_on_writes_and_by_validate,
    a_valid_resource_gets_an_informational_outcome,
    every_kind_of_problem_is_reported_without_writing
);

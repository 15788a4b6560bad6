//! AllergyIntolerance over patient_allergies and the allergies catalog.

mod common;

use common::{round_trip, stub, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;

const EXAMPLES: &[&str] = &["example", "fishallergy", "medication", "nka", "nkda"];

async fn every_example_and_synthea_allergy_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for p in ["example", "mom"] {
        stub(&app, "Patient", p).await;
    }
    for dr in ["example", "13"] {
        stub(&app, "Practitioner", dr).await;
    }
    for name in EXAMPLES {
        let sent = common::data(&format!("examples/AllergyIntolerance-{name}.json"));
        round_trip(&app, &sent, false).await;
        round_trip(&app, &sent, true).await;
    }
    for p in common::data("synthea/patients.json").as_array().unwrap() {
        stub(&app, "Patient", p["id"].as_str().unwrap()).await;
    }
    let all = common::data("synthea/allergies.json");
    assert_eq!(all.as_array().unwrap().len(), 55);
    for a in all.as_array().unwrap() {
        let mut sent = a.clone();
        common::local_reference(&mut sent, "patient", "Patient");
        round_trip(&app, &sent, true).await;
    }
    assert_eq!(
        app.count("patient_allergies").await,
        2 * 5 + 55,
        "each example posted and put, each Synthea one put"
    );
}

async fn codes_share_one_catalog_entry(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bruno").await;
    let allergy = |who: &str, display: &str| {
        json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980", "display": display}]},
            "patient": {"reference": format!("Patient/{who}")},
            "criticality": "high"
        })
    };
    let a = allergy("ana", "Penicillin G");
    let b = allergy("bruno", "penicilina G (es-MX)");
    round_trip(&app, &a, false).await;
    round_trip(&app, &b, false).await;
    assert_eq!(
        app.count("allergies").await,
        1,
        "one catalog entry for one code"
    );
    let row = app
        .db
        .fetch_optional("SELECT display FROM allergies", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.text("display").unwrap().as_deref(),
        Some("Penicillin G")
    );
    // The clinic's catalog display shows on rows the clinic writes.
    app.db
        .execute(
            "INSERT INTO patient_allergies (id, fhir_id, patient_id, allergy_id, clinical_status, criticality) \
             SELECT ?, 'clinic-a1', p.id, a.id, 'active', 'low' FROM patients p, allergies a WHERE p.fhir_id = 'ana'",
            &[uuid::Uuid::new_v4().into()],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/AllergyIntolerance/clinic-a1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["code"],
        json!({"coding": [{"code": "7980", "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "display": "Penicillin G"}]})
    );
    assert_eq!(
        r.body["clinicalStatus"],
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]})
    );
    assert_eq!(r.body["patient"], json!({"reference": "Patient/ana"}));
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bruno").await;
    let make = |id: &str, who: &str, status: &str, crit: &str, code: &str, recorded: &str| {
        json!({
            "resourceType": "AllergyIntolerance", "id": id,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": status}]},
            "criticality": crit, "type": "allergy",
            "category": [if code == "300913006" { "food" } else { "medication" }],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
            "patient": {"reference": format!("Patient/{who}")},
            "recordedDate": recorded
        })
    };
    for a in [
        make(
            "a1",
            "ana",
            "active",
            "high",
            "91936005",
            "2020-01-15T10:00:00Z",
        ),
        make(
            "a2",
            "ana",
            "resolved",
            "low",
            "300913006",
            "2021-06-01T10:00:00Z",
        ),
        make(
            "a3",
            "bruno",
            "active",
            "low",
            "91936005",
            "2022-03-03T10:00:00Z",
        ),
    ] {
        round_trip(&app, &a, true).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("patient=ana", &["a1", "a2"]),
        ("clinical-status=active", &["a1", "a3"]),
        ("criticality=low", &["a2", "a3"]),
        ("code=91936005", &["a1", "a3"]),
        ("code=http://snomed.info/sct|300913006", &["a2"]),
        ("code=http://loinc.org|300913006", &[]),
        ("date=2021", &["a2"]),
        ("date=ge2021-01-01", &["a2", "a3"]),
        ("patient=bruno&code=91936005", &["a3"]),
        ("type=allergy", &["a1", "a2", "a3"]),
        ("category=food", &["a2"]),
        ("category=medication,environment", &["a1", "a3"]),
        ("category=http://other|food", &[]),
        (
            "category=http://hl7.org/fhir/allergy-intolerance-category|food",
            &["a2"],
        ),
    ];
    for (q, want) in cases {
        let r = app.get(&format!("/fhir/AllergyIntolerance?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "AllergyIntolerance?{q}");
    }
}

async fn codes_outside_the_clinic_schema_are_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let bad = json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "dormant"}]},
        "patient": {"reference": "Patient/ana"}
    });
    let r = app.post("/fhir/AllergyIntolerance", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.outcome()[0].2.as_deref(),
        Some("AllergyIntolerance.clinicalStatus")
    );
    let orphan =
        json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/ghost"}});
    assert_eq!(
        app.post("/fhir/AllergyIntolerance", &orphan).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.count("patient_allergies").await, 0);
    assert_eq!(
        app.count("allergies").await,
        0,
        "a refused write adds no catalog entry either"
    );
}

on_both_engines!(
    every_example_and_synthea_allergy_round_trips,
    codes_share_one_catalog_entry,
    search_parameters_return_exactly_the_matching_ids,
    codes_outside_the_clinic_schema_are_refused,
);

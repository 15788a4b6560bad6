//! MedicationRequest over prescriptions and the medications catalog.

mod common;

use common::{round_trip, stub, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;

const EXAMPLES: &[&str] = &[
    "medrx002",
    "medrx0301",
    "medrx0302",
    "medrx0310",
    "medrx0311",
];

async fn every_example_and_synthea_prescription_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for p in ["pat1", "f001", "f201"] {
        stub(&app, "Patient", p).await;
    }
    for dr in ["example", "f001", "f007", "f204", "f002", "f201"] {
        stub(&app, "Practitioner", dr).await;
    }
    for e in ["f001", "f201"] {
        round_trip(
            &app,
            &common::data(&format!("examples/Encounter-{e}.json")),
            true,
        )
        .await;
    }
    for name in EXAMPLES {
        let sent = common::data(&format!("examples/MedicationRequest-{name}.json"));
        round_trip(&app, &sent, false).await;
        round_trip(&app, &sent, true).await;
    }
    // Synthea: the patients, their encounters, then the prescriptions that point at both.
    common::load_synthea_patients_and_encounters(&app).await;
    let all = common::data("synthea/medication_requests.json");
    assert_eq!(all.as_array().unwrap().len(), 94);
    for m in all.as_array().unwrap() {
        let mut sent = m.clone();
        common::literal_practitioners(&mut sent);
        common::local_reference(&mut sent, "subject", "Patient");
        common::local_reference(&mut sent, "encounter", "Encounter");
        round_trip(&app, &sent, true).await;
    }
    let linked = app
        .db
        .fetch_optional("SELECT count(*) AS n FROM prescriptions WHERE consultation_id IS NOT NULL AND medication_id IS NOT NULL", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        linked.bigint("n").unwrap(),
        94,
        "every Synthea prescription has its consultation and catalog medication"
    );
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bruno").await;
    stub(&app, "Practitioner", "dr1").await;
    let rx = |id: &str,
              who: &str,
              status: &str,
              intent: &str,
              code: &str,
              on: &str,
              by: Option<&str>| {
        let mut r = json!({
            "resourceType": "MedicationRequest", "id": id, "status": status, "intent": intent,
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code}]},
            "subject": {"reference": format!("Patient/{who}")},
            "authoredOn": on
        });
        if let Some(by) = by {
            r["requester"] = json!({"reference": format!("Practitioner/{by}")});
        }
        r
    };
    for r in [
        rx(
            "m1",
            "ana",
            "active",
            "order",
            "197361",
            "2026-01-05T10:00:00Z",
            Some("dr1"),
        ),
        rx(
            "m2",
            "ana",
            "stopped",
            "order",
            "308136",
            "2025-07-01T10:00:00Z",
            None,
        ),
        rx(
            "m3",
            "bruno",
            "active",
            "plan",
            "197361",
            "2026-02-01T10:00:00Z",
            Some("dr1"),
        ),
    ] {
        round_trip(&app, &r, true).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("patient=ana", &["m1", "m2"]),
        ("subject=Patient/bruno", &["m3"]),
        ("status=active", &["m1", "m3"]),
        ("patient=ana&status=active", &["m1"]),
        ("intent=plan", &["m3"]),
        ("code=197361", &["m1", "m3"]),
        (
            "code=http://www.nlm.nih.gov/research/umls/rxnorm|308136",
            &["m2"],
        ),
        ("authoredon=2026", &["m1", "m3"]),
        ("authoredon=lt2026-01-01", &["m2"]),
        ("requester=Practitioner/dr1", &["m1", "m3"]),
    ];
    for (q, want) in cases {
        let r = app.get(&format!("/fhir/MedicationRequest?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "MedicationRequest?{q}");
    }
}

async fn a_prescription_written_by_the_clinic_is_a_medication_request(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    app.db
        .execute(
            "INSERT INTO medications (id, code, system, display) VALUES (?, '197361', 'http://www.nlm.nih.gov/research/umls/rxnorm', 'Amlodipine 5 MG Oral Tablet')",
            &[uuid::Uuid::new_v4().into()],
        )
        .await
        .unwrap();
    app.db
        .execute(
            "INSERT INTO prescriptions (id, fhir_id, patient_id, medication_id, status, intent, dosage_text) \
             SELECT ?, 'rx-1', p.id, m.id, 'active', 'order', 'One tablet daily' FROM patients p, medications m WHERE p.fhir_id = 'ana'",
            &[uuid::Uuid::new_v4().into()],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/MedicationRequest/rx-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["intent"], "order");
    assert_eq!(r.body["subject"], json!({"reference": "Patient/ana"}));
    assert_eq!(
        r.body["medicationCodeableConcept"]["coding"][0]["display"],
        "Amlodipine 5 MG Oral Tablet"
    );
    assert_eq!(
        r.body["dosageInstruction"],
        json!([{"text": "One tablet daily"}])
    );
    let bad = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "wish", "subject": {"reference": "Patient/ana"}, "medicationCodeableConcept": {"text": "x"}});
    let e = app.post("/fhir/MedicationRequest", &bad).await;
    assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", e.text);
    assert_eq!(
        e.outcome()[0].2.as_deref(),
        Some("MedicationRequest.intent")
    );
    assert!(e.outcome()[0].1.contains("'wish'"));
    assert_eq!(app.count("prescriptions").await, 1);
}

async fn doses_and_quantities_keep_their_decimal_precision(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let body = r#"{"resourceType":"MedicationRequest","id":"dose-1","status":"active","intent":"order",
        "subject":{"reference":"Patient/ana"},
        "dosageInstruction":[{"text":"2.50 mL twice a day","doseAndRate":[{"doseQuantity":{"value":2.50,"unit":"mL"}}]}],
        "dispenseRequest":{"numberOfRepeatsAllowed":3,"quantity":{"value":30.0,"unit":"mL"}}}"#;
    let r = app
        .client
        .put(app.url("/fhir/MedicationRequest/dose-1"))
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let back = app.get("/fhir/MedicationRequest/dose-1").await;
    assert!(back.text.contains(r#""value":2.50"#), "{}", back.text);
    assert!(back.text.contains(r#""value":30.0"#), "{}", back.text);
    let row = app
        .db
        .fetch_optional("SELECT dose_value, dose_unit, quantity_value, refills FROM prescriptions WHERE fhir_id = 'dose-1'", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.decimal("dose_value").unwrap().as_deref(), Some("2.50"));
    assert_eq!(row.text("dose_unit").unwrap().as_deref(), Some("mL"));
    assert_eq!(
        row.decimal("quantity_value").unwrap().as_deref(),
        Some("30.0")
    );
    assert_eq!(row.opt_int("refills").unwrap(), Some(3));
    // The clinic changes the dose: FHIR shows it, the rest as it was.
    let sql = match app.engine {
        common::Engine::Sqlite => {
            "UPDATE prescriptions SET dose_value = '5.0' WHERE fhir_id = 'dose-1'"
        }
        common::Engine::Postgres => {
            "UPDATE prescriptions SET dose_value = 5.0 WHERE fhir_id = 'dose-1'"
        }
    };
    app.db.execute(sql, &[]).await.unwrap();
    let after = app.get("/fhir/MedicationRequest/dose-1").await;
    assert!(
        after
            .text
            .contains(r#""doseQuantity":{"value":5.0,"unit":"mL"}"#),
        "{}",
        after.text
    );
    assert_eq!(after.body["meta"]["versionId"], "2");
}

/// A catalog code is looked up once and the entry found shared with later transactions for a
/// while; one that a transaction added and then rolled back is not: the next adds it again.
async fn a_catalog_code_added_by_a_failed_transaction_is_added_again(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "cat-p").await;
    let rx = |id: &str| {
        json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                          "code": "990001", "display": "Nuevo"}]},
               "subject": {"reference": "Patient/cat-p"}})
    };
    let catalog = || async {
        app.db
            .fetch_optional(
                "SELECT count(*) AS n FROM medications WHERE code = ?",
                &["990001".into()],
            )
            .await
            .unwrap()
            .unwrap()
            .bigint("n")
            .unwrap()
    };
    // The prescription adds the code, then the entry written after it fails: all rolls back.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": rx("cat-a"), "request": {"method": "PUT", "url": "MedicationRequest/cat-a"}},
        {"resource": {"resourceType": "Observation", "id": "cat-z", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/nobody"}},
         "request": {"method": "PUT", "url": "Observation/cat-z"}}]});
    let r = app.post("/fhir", &bundle).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert!(r.text.contains("Patient/nobody"), "{}", r.text);
    assert_eq!(catalog().await, 0);
    // Then in transactions that commit: the first adds the code, the second finds it.
    for id in ["cat-b", "cat-c"] {
        let r = app
            .put(&format!("/fhir/MedicationRequest/{id}"), &rx(id))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let read = app.get(&format!("/fhir/MedicationRequest/{id}")).await;
        assert_eq!(
            read.body["medicationCodeableConcept"]["coding"][0]["code"],
            "990001"
        );
        assert_eq!(
            read.body["medicationCodeableConcept"]["coding"][0]["display"],
            "Nuevo"
        );
    }
    assert_eq!(catalog().await, 1);
    assert_eq!(
        app.get("/fhir/MedicationRequest/cat-a").await.status,
        StatusCode::NOT_FOUND
    );
}

on_both_engines!(
    a_catalog_code_added_by_a_failed_transaction_is_added_again,
    doses_and_quantities_keep_their_decimal_precision,
    every_example_and_synthea_prescription_round_trips,
    search_parameters_return_exactly_the_matching_ids,
    a_prescription_written_by_the_clinic_is_a_medication_request,
);

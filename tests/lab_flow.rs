//! The lab-results flow: a laboratory posts a transaction holding a DiagnosticReport and its
//! result Observations, the patient found by identifier (a conditional reference) and the order
//! named by identifier; posting it again changes nothing; a corrected report updates in place.

mod common;

use common::{Engine, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const MRN: &str = "http://clinic.example/mrn";
const LAB: &str = "http://lab.example/results";

fn result(n: u32, code: &str, value: f64, unit: &str, status: &str) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:9b1c0000-0000-4000-8000-00000000000{n}"),
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": LAB, "value": format!("R-77-{n}")}],
            "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient?identifier={MRN}|12345")},
            "effectiveDateTime": "2026-11-20T07:30:00Z",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
        },
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": format!("identifier={LAB}|R-77-{n}")}
    })
}

fn report(status: &str) -> Value {
    json!({
        "fullUrl": "urn:uuid:9b1c0000-0000-4000-8000-000000000000",
        "resource": {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": LAB, "value": "R-77"}],
            "basedOn": [{"type": "ServiceRequest", "identifier": {"system": "http://clinic.example/orders", "value": "ORD-9"}}],
            "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8", "display": "Comprehensive metabolic panel"}]},
            "subject": {"reference": format!("Patient?identifier={MRN}|12345")},
            "effectiveDateTime": "2026-11-20T07:30:00Z",
            "issued": "2026-11-20T11:00:00Z",
            "result": [
                {"reference": "urn:uuid:9b1c0000-0000-4000-8000-000000000001"},
                {"reference": "urn:uuid:9b1c0000-0000-4000-8000-000000000002"}
            ]
        },
        "request": {"method": "POST", "url": "DiagnosticReport", "ifNoneExist": format!("identifier={LAB}|R-77")}
    })
}

fn lab_transaction() -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        report("final"),
        result(1, "2345-7", 5.4, "mmol/L", "final"),
        result(2, "2160-0", 88.0, "umol/L", "final"),
    ]})
}

fn locations(r: &Value) -> Vec<String> {
    r["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap().to_owned())
        .collect()
}

fn statuses(r: &Value) -> Vec<String> {
    r["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_lab_posts_results_once_and_corrects_them_in_place(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    // Without the patient on file the whole result is refused.
    let before = app.snapshot().await;
    let r = app.post("/fhir", &lab_transaction()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.outcome()[0].1.contains("finds no Patient"), "{}", r.text);
    assert_eq!(app.snapshot().await, before);

    let patient = app
        .create(&json!({"resourceType": "Patient", "identifier": [{"system": MRN, "value": "12345"}], "name": [{"family": "Paz"}]}))
        .await;
    let pid = patient["id"].as_str().unwrap();
    let r = app.post("/fhir", &lab_transaction()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(statuses(&r.body), ["201 Created"; 3]);
    let first = locations(&r.body);
    let ids: Vec<String> = first
        .iter()
        .map(|l| l.split("/_history").next().unwrap().to_owned())
        .collect();
    let dr = app.get(&format!("/fhir/{}", ids[0])).await.body;
    assert_eq!(dr["subject"]["reference"], json!(format!("Patient/{pid}")));
    assert_eq!(
        dr["result"],
        json!([{"reference": ids[1]}, {"reference": ids[2]}])
    );
    assert_eq!(
        dr["basedOn"],
        report("final")["resource"]["basedOn"],
        "the order stays as sent"
    );
    // The results, inserted before their report in the same transaction, are its test's
    // results in the clinic's tables.
    let linked = app
        .db
        .fetch_all(
            "SELECT r.fhir_id AS result FROM medical_test_results r JOIN medical_tests m ON m.id = r.medical_test_id WHERE m.fhir_id = ? ORDER BY r.fhir_id",
            &[ids[0].trim_start_matches("DiagnosticReport/").into()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| format!("Observation/{}", r.string("result").unwrap()))
        .collect::<Vec<_>>();
    let mut results = vec![ids[1].clone(), ids[2].clone()];
    results.sort();
    assert_eq!(linked, results);
    let search = app
        .get(&format!(
            "/fhir/DiagnosticReport?patient={pid}&_include=DiagnosticReport:result"
        ))
        .await
        .body;
    assert_eq!(search["total"], 1);
    assert_eq!(search["entry"].as_array().unwrap().len(), 3);
    let glucose = app.get(&format!("/fhir/{}", ids[1])).await.body;
    assert_eq!(
        glucose["subject"]["reference"],
        json!(format!("Patient/{pid}"))
    );
    assert_eq!(glucose["valueQuantity"]["value"], json!(5.4));

    // The same message again (a retry after a lost response): found, nothing new.
    let versions = app.count("resource_versions").await;
    let after_first = app.snapshot().await;
    let r = app.post("/fhir", &lab_transaction()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(statuses(&r.body), ["200 OK"; 3]);
    assert_eq!(locations(&r.body), first);
    assert_eq!(app.count("resource_versions").await, versions);
    assert_eq!(
        app.snapshot().await,
        after_first,
        "a repeated result changed the database"
    );

    // A correction: the report and one result updated in place, found by their identifiers.
    let mut corrected = report("corrected");
    corrected["request"] =
        json!({"method": "PUT", "url": format!("DiagnosticReport?identifier={LAB}|R-77")});
    let mut fixed = result(1, "2345-7", 6.1, "mmol/L", "corrected");
    fixed["request"] =
        json!({"method": "PUT", "url": format!("Observation?identifier={LAB}|R-77-1")});
    // The unchanged result is named by a conditional reference instead of an entry.
    corrected["resource"]["result"][1] =
        json!({"reference": format!("Observation?identifier={LAB}|R-77-2")});
    let r = app
        .post(
            "/fhir",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [corrected, fixed]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(statuses(&r.body), ["200 OK", "200 OK"]);
    assert_eq!(
        locations(&r.body),
        [
            format!("{}/_history/2", ids[0]),
            format!("{}/_history/2", ids[1])
        ]
    );
    let dr = app.get(&format!("/fhir/{}", ids[0])).await.body;
    assert_eq!(dr["status"], "corrected");
    assert_eq!(dr["meta"]["versionId"], "2");
    assert_eq!(
        dr["result"],
        json!([{"reference": ids[1]}, {"reference": ids[2]}])
    );
    let glucose = app.get(&format!("/fhir/{}", ids[1])).await.body;
    assert_eq!(
        (
            glucose["status"].as_str(),
            glucose["valueQuantity"]["value"].as_f64()
        ),
        (Some("corrected"), Some(6.1))
    );
    let creatinine = app.get(&format!("/fhir/{}", ids[2])).await.body;
    assert_eq!(creatinine["meta"]["versionId"], "1");
    let history = app.get(&format!("/fhir/{}/_history", ids[0])).await.body;
    assert_eq!(history["total"], 2);
    let all = app
        .get(&format!("/fhir/Observation?patient={pid}"))
        .await
        .body;
    assert_eq!(all["total"], 2, "corrections add versions, not resources");
}

on_both_engines!(a_lab_posts_results_once_and_corrects_them_in_place);

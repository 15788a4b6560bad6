//! Patient/$everything: the patient and their compartment, paged, with _since and _type.

mod common;

use common::{stub, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn observation(patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "valueQuantity": {"value": 1.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
}

/// `Type/id` of every entry of a Bundle.
fn entries(b: &Value) -> Vec<String> {
    b["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn next(b: &Value) -> Option<String> {
    b["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

async fn everything_pages_through_the_patient_compartment(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bob").await;
    let mut expected: BTreeSet<String> = BTreeSet::from(["Patient/ana".to_owned()]);
    let mut add = |v: &Value| {
        expected.insert(format!(
            "{}/{}",
            v["resourceType"].as_str().unwrap(),
            v["id"].as_str().unwrap()
        ));
    };
    for _ in 0..2 {
        add(&app
            .create(&json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "Patient/ana"}}))
            .await);
    }
    let mut obs = Vec::new();
    for code in ["2345-7", "2160-0", "2951-2", "2823-3", "2075-0"] {
        let o = app.create(&observation("ana", code)).await;
        add(&o);
        obs.push(o);
    }
    add(&app
        .create(&json!({"resourceType": "DiagnosticReport", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": {"reference": "Patient/ana"}, "result": [{"reference": format!("Observation/{}", obs[0]["id"].as_str().unwrap())}]}))
        .await);
    add(&app
        .create(&json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]},
            "subject": {"reference": "Patient/ana"}}))
        .await);
    add(&app
        .create(&json!({"resourceType": "AllergyIntolerance",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
            "patient": {"reference": "Patient/ana"}}))
        .await);
    // Someone else's data stays out.
    app.create(&observation("bob", "2345-7")).await;
    assert_eq!(expected.len(), 11);

    // Four to a page: three pages, the patient first, every resource once.
    let mut url = "/fhir/Patient/ana/$everything?_count=4".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = app.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["type"], "searchset");
        if pages == 0 {
            assert_eq!(r.body["total"], 11);
            assert_eq!(r.body["entry"][0]["resource"]["id"], "ana");
        } else {
            assert!(r.body.get("total").is_none());
        }
        let page = entries(&r.body);
        assert!(page.len() <= 4);
        seen.extend(page);
        pages += 1;
        match next(&r.body) {
            Some(n) => {
                url = n
                    .split_once("/fhir")
                    .map(|(_, p)| format!("/fhir{p}"))
                    .unwrap()
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 11, "no resource twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);

    // Exactly one full page: no next link to an empty page.
    let r = app.get("/fhir/Patient/ana/$everything?_count=11").await;
    assert_eq!(entries(&r.body).len(), 11);
    assert!(next(&r.body).is_none(), "{}", r.text);

    // _type keeps the types named.
    let r = app
        .get("/fhir/Patient/ana/$everything?_type=Observation,Patient")
        .await;
    let got = entries(&r.body);
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got
        .iter()
        .all(|e| e.starts_with("Observation/") || e == "Patient/ana"));
    assert_eq!(r.body["total"], 6);

    // _since keeps what changed from then on.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let mut changed = obs[2].clone();
    changed["status"] = json!("amended");
    let id = changed["id"].as_str().unwrap().to_owned();
    let r = app.put(&format!("/fhir/Observation/{id}"), &changed).await;
    let since = r.body["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let r = app
        .get(&format!(
            "/fhir/Patient/ana/$everything?_since={}",
            since.replace('+', "%2B")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(entries(&r.body), vec![format!("Observation/{id}")]);

    // Refusals.
    assert_eq!(
        app.get("/fhir/Patient/nobody/$everything").await.status,
        StatusCode::NOT_FOUND
    );
    for bad in [
        "_type=Claim",
        "_count=0",
        "_cursor=x",
        "_since=yesterday",
        "name=ana",
    ] {
        let r = app
            .get(&format!("/fhir/Patient/ana/$everything?{bad}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
    app.delete("/fhir/Patient/bob").await;
    assert_eq!(
        app.get("/fhir/Patient/bob/$everything").await.status,
        StatusCode::GONE
    );
}

on_both_engines!(everything_pages_through_the_patient_compartment);

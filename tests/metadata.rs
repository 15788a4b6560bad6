//! The CapabilityStatement, /health, and the validity of every kind of body the server sends.

mod common;

use common::{Engine, TestApp};
use expediente::fhir::validate::Validators;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::OnceLock;

fn validators() -> &'static Validators {
    static V: OnceLock<Validators> = OnceLock::new();
    V.get_or_init(|| {
        Validators::new(&[
            "Bundle",
            "OperationOutcome",
            "CapabilityStatement",
            "Patient",
        ])
    })
}

/// Asserts a body is valid FHIR R4 JSON (the official schema plus the JSON rules).
fn assert_valid(body: &Value) {
    let rt = body["resourceType"].as_str().expect("a resource");
    let mut issues = validators().validate(rt, body);
    issues.extend(expediente::fhir::validate::json_rules(rt, body));
    assert!(
        issues.is_empty(),
        "{rt} is not valid FHIR: {issues:?}\n{body}"
    );
}

async fn capability_statement_describes_exactly_what_works(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app.get("/fhir/metadata").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    let cs = &r.body;
    assert_valid(cs);
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    assert!(cs["format"]
        .as_array()
        .unwrap()
        .contains(&json!("application/fhir+json")));
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "AllergyIntolerance",
            "DiagnosticReport",
            "Encounter",
            "MedicationRequest",
            "Observation",
            "Patient",
            "Practitioner",
            "StructureDefinition",
            "AuditEvent"
        ],
        "only the mapped types are claimed"
    );
    // The audit trail is read-only.
    let audit = resources
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .unwrap();
    assert_eq!(
        audit["interaction"],
        json!([{"code": "read"}, {"code": "search-type"}])
    );
    let names: Vec<&str> = audit["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "date", "agent", "entity", "patient", "type", "subtype", "action", "outcome", "source",
    ] {
        assert!(names.contains(&p), "AuditEvent searches by {p}");
    }
    let observation = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    let value_quantity = observation["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "value-quantity")
        .expect("Observation declares value-quantity");
    assert_eq!(value_quantity["type"], "quantity");
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    assert_eq!(patient["updateCreate"], true);
    assert_eq!(patient["versioning"], "versioned-update");
    // If-None-Match and If-Modified-Since both answer 304 (tests/patient_crud.rs).
    assert_eq!(patient["conditionalRead"], "full-support");
    // If-None-Exist, PUT/DELETE/PATCH by criteria (tests/conditional.rs); a delete whose criteria
    // find several resources is refused.
    assert_eq!(patient["conditionalCreate"], true);
    assert_eq!(patient["conditionalUpdate"], true);
    assert_eq!(patient["conditionalDelete"], "single");
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for i in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(interactions.contains(&i), "{i}");
    }
    assert_eq!(patient["operation"][0]["name"], "validate");
    let mut params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    params.sort();
    assert_eq!(
        params,
        [
            "_id",
            "_lastUpdated",
            "_profile",
            "_security",
            "_tag",
            "active",
            "address",
            "address-city",
            "address-country",
            "address-postalcode",
            "address-state",
            "birthdate",
            "email",
            "family",
            "gender",
            "general-practitioner",
            "given",
            "identifier",
            "name",
            "phone",
            "telecom"
        ]
    );
    // Every claimed parameter of every type is accepted by the server (strict handling rejects
    // unknown ones) with a value of its declared type. (The audit trail takes a scope naming it.)
    common::acting::register(&app, "auditing", "system/AuditEvent.rs");
    let audit_token = common::acting::mint(&app, "auditing", "system/AuditEvent.rs", &[]).unwrap();
    for resource in resources {
        let rt = resource["type"].as_str().unwrap();
        for p in resource["searchParam"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let value = match (p["type"].as_str().unwrap(), name) {
                ("date", _) => "ge2000",
                ("quantity", _) => "gt5.4",
                ("composite", _) => "x$gt5.4",
                ("uri", _) => "http://example.org/StructureDefinition/x",
                (_, "active") => "true",
                _ => "x",
            };
            let auth = format!(
                "Bearer {}",
                if rt == "AuditEvent" {
                    &audit_token
                } else {
                    &app.token
                }
            );
            let s = app
                .send(
                    Method::GET,
                    &format!("/fhir/{rt}?{name}={value}"),
                    None,
                    &[("prefer", "handling=strict"), ("authorization", &auth)],
                )
                .await;
            assert_eq!(s.status, StatusCode::OK, "{rt}?{name}: {}", s.text);
            assert_eq!(s.body["type"], "searchset");
        }
        // And every claimed _include and _revinclude.
        for (kind, key) in [
            ("_include", "searchInclude"),
            ("_revinclude", "searchRevInclude"),
        ] {
            for inc in resource[key].as_array().cloned().unwrap_or_default() {
                let inc = inc.as_str().unwrap();
                let s = app
                    .send(
                        Method::GET,
                        &format!("/fhir/{rt}?{kind}={inc}"),
                        None,
                        &[("prefer", "handling=strict")],
                    )
                    .await;
                assert_eq!(s.status, StatusCode::OK, "{rt}?{kind}={inc}: {}", s.text);
                assert!(s.body["link"][0]["url"].as_str().unwrap().contains(kind));
            }
        }
    }
    // Search across types is claimed, with the common parameters.
    let system = &cs["rest"][0];
    let system_interactions: Vec<&str> = system["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        system_interactions,
        ["transaction", "batch", "search-system"]
    );
    let empty = app
        .post(
            "/fhir",
            &serde_json::json!({"resourceType": "Bundle", "type": "batch"}),
        )
        .await;
    assert_eq!(
        empty.body["type"], "batch-response",
        "batch is served: {}",
        empty.text
    );
    let s = app.get("/fhir?_type=Patient&_lastUpdated=ge2000").await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    assert_eq!(s.body["type"], "searchset");
}

async fn every_kind_of_response_body_is_valid_fhir(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = app
        .create(&common::data("examples/Patient-example.json"))
        .await;
    assert_valid(&p);
    let id = p["id"].as_str().unwrap();
    let mut upd = p.clone();
    upd["active"] = json!(false);
    app.put(&format!("/fhir/Patient/{id}"), &upd).await;
    app.delete(&format!("/fhir/Patient/{id}")).await;
    app.create(&common::data("examples/Patient-f001.json"))
        .await;
    for path in [
        "/fhir/Patient?_count=1".to_owned(),
        "/fhir/Patient?name=nobody".to_owned(),
        format!("/fhir/Patient/{id}/_history"),
        "/fhir/Patient/_history?_count=1".to_owned(),
        format!("/fhir/Patient/{id}"),
        "/fhir/Patient/missing".to_owned(),
        "/fhir/Patient?birthdate=bad".to_owned(),
        "/fhir/Nothing".to_owned(),
    ] {
        let r = app.get(&path).await;
        assert_valid(&r.body);
    }
    let oo = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&json!({"resourceType": "Patient"})),
            &[("prefer", "return=OperationOutcome")],
        )
        .await;
    assert_valid(&oo.body);
    let err = app
        .post(
            "/fhir/Patient",
            &json!({"resourceType": "Patient", "gender": 1}),
        )
        .await;
    assert_valid(&err.body);
    // Bundle responses, with written resources, a search, and failed entries' outcomes.
    let bundle = |kind: &str| {
        json!({"resourceType": "Bundle", "type": kind, "entry": [
            {"fullUrl": "urn:uuid:5c3e1d2a-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient", "active": true},
             "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient?_count=1"}},
            {"request": {"method": "GET", "url": "Patient/missing"}}
        ]})
    };
    for kind in ["transaction", "batch"] {
        let r = app
            .send(
                Method::POST,
                "/fhir",
                Some(&bundle(kind)),
                &[("prefer", "return=representation")],
            )
            .await;
        assert_eq!(r.body["type"], format!("{kind}-response"), "{}", r.text);
        assert_valid(&r.body);
    }
}

async fn health_answers_when_the_database_does(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    app.db.close().await;
    let r = app.get("/health").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let issues = r.outcome();
    let request_id = r
        .header("x-request-id")
        .expect("every response has a request id");
    assert_eq!(
        issues[0].1,
        format!("internal server error (request id {request_id})"),
        "a 500 names its request id, not its cause"
    );
    assert!(
        !r.text.to_lowercase().contains("pool"),
        "no internal detail leaks: {}",
        r.text
    );
}

on_both_engines!(
    capability_statement_describes_exactly_what_works,
    every_kind_of_response_body_is_valid_fhir,
    health_answers_when_the_database_does,
);

//! Conditional create, update, delete and patch, conditional references, and JSON Patch: the
//! outcomes for no match, one and several.

mod common;

use base64::Engine as _;
use common::{located, post, transaction, Engine, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn patient(mrn: &str, family: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": "http://clinic.example/mrn", "value": mrn}],
           "name": [{"family": family}]})
}

const MRN: &str = "identifier=http://clinic.example/mrn|";

async fn conditional_create_makes_one_or_finds_it(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let criteria = format!("{MRN}100");
    let h = [("if-none-exist", criteria.as_str())];
    let first = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient("100", "Uno")),
            &h,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let id = first.body["id"].as_str().unwrap().to_owned();
    let again = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient("100", "Otro")),
            &h,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["id"], json!(id));
    assert_eq!(
        again.body["name"][0]["family"], "Uno",
        "the match is returned unchanged"
    );
    assert_eq!(again.header("etag").as_deref(), Some("W/\"1\""));
    assert_eq!(app.count("patients").await, 1);
    // The header may also carry the type and '?'.
    let prefixed = format!("Patient?{criteria}");
    let r = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient("100", "Tres")),
            &[("if-none-exist", prefixed.as_str())],
        )
        .await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    // Several matches: 412, nothing written.
    app.create(&patient("100", "Duplicado")).await;
    let r = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient("100", "Cuatro")),
            &h,
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert!(r.outcome()[0].1.contains("more than one"));
    assert_eq!(app.count("patients").await, 2);
    // Criteria the server cannot evaluate are refused rather than matching everything.
    for bad in ["", "nonsense=1", "_count=1"] {
        let r = app
            .send(
                Method::POST,
                "/fhir/Patient",
                Some(&patient("101", "x")),
                &[("if-none-exist", bad)],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    assert_eq!(app.count("patients").await, 2);
}

async fn conditional_update_updates_the_match_or_creates(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let url = format!("/fhir/Patient?{MRN}200");
    let r = app.put(&url, &patient("200", "Nueva")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = app.put(&url, &patient("200", "Cambiada")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["id"].as_str(), r.body["meta"]["versionId"].as_str()),
        (Some(id.as_str()), Some("2"))
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{id}")).await.body["name"][0]["family"],
        "Cambiada"
    );
    // The body's id must be the match's.
    let mut other = patient("200", "x");
    other["id"] = json!("someone-else");
    let r = app.put(&url, &other).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // No match and a body id that another resource holds: refused, nothing overwritten.
    common::stub(&app, "Patient", "taken").await;
    let mut taken = patient("201", "y");
    taken["id"] = json!("taken");
    let r = app.put(&format!("/fhir/Patient?{MRN}201"), &taken).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert!(app
        .get("/fhir/Patient/taken")
        .await
        .body
        .get("name")
        .is_none());
    // With If-Match.
    let r = app
        .send(
            Method::PUT,
            &url,
            Some(&patient("200", "z")),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    // Several matches: 412.
    app.create(&patient("200", "Gemela")).await;
    let r = app.put(&url, &patient("200", "Ambas")).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    let r = app.get(&format!("/fhir/Patient?{MRN}200&name=Ambas")).await;
    assert_eq!(r.body["total"], 0);
    // Without criteria there is nothing to update.
    let r = app.put("/fhir/Patient", &patient("202", "x")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn conditional_delete_deletes_one_match(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app.delete(&format!("/fhir/Patient?{MRN}300")).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "nothing matched, nothing to do"
    );
    let p = app.create(&patient("300", "Borrar")).await;
    let keep = app.create(&patient("301", "Queda")).await;
    let r = app
        .send(
            Method::DELETE,
            &format!("/fhir/Patient?{MRN}300"),
            None,
            &[("prefer", "return=OperationOutcome")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.to_string().contains(p["id"].as_str().unwrap()));
    assert_eq!(
        app.get(&format!("/fhir/Patient/{}", p["id"].as_str().unwrap()))
            .await
            .status,
        StatusCode::GONE
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{}", keep["id"].as_str().unwrap()))
            .await
            .status,
        StatusCode::OK
    );
    app.create(&patient("302", "A")).await;
    app.create(&patient("302", "B")).await;
    let r = app.delete(&format!("/fhir/Patient?{MRN}302")).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(
        app.get(&format!("/fhir/Patient?{MRN}302")).await.body["total"],
        2
    );
}

async fn conditional_references_resolve_to_exactly_one(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = app.create(&patient("400", "Ref")).await;
    let obs = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "peso"},
               "subject": {"reference": subject},
               "performer": [{"reference": "Organization?identifier=http://clinic.example/org|1"}]})
    };
    let r = app
        .post("/fhir/Observation", &obs(&format!("Patient?{MRN}400")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["subject"]["reference"],
        json!(format!("Patient/{}", p["id"].as_str().unwrap()))
    );
    assert_eq!(
        r.body["performer"][0]["reference"], "Organization?identifier=http://clinic.example/org|1",
        "a conditional reference to a type not hosted stays as sent"
    );
    let before = app.count("medical_tests").await;
    let r = app
        .post("/fhir/Observation", &obs(&format!("Patient?{MRN}499")))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Observation.subject"));
    app.create(&patient("400", "Otra")).await;
    let r = app
        .post("/fhir/Observation", &obs(&format!("Patient?{MRN}400")))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(app.count("medical_tests").await, before);
    // In an update too.
    let mut o = obs(&format!("Patient?{MRN}400&name=Ref"));
    o["id"] = json!("o1");
    let r = app.put("/fhir/Observation/o1", &o).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["subject"]["reference"],
        json!(format!("Patient/{}", p["id"].as_str().unwrap()))
    );
}

/// The subject of the resource a transaction response's entry `i` wrote.
async fn subject_at(app: &TestApp, r: &common::Reply, i: usize) -> String {
    let id = located(&r.body["entry"][i]);
    app.get(&format!("/fhir/{id}")).await.body["subject"]["reference"]
        .as_str()
        .unwrap_or_else(|| panic!("no subject in {id}"))
        .to_owned()
}

/// Conditional references in a transaction see the transaction's own writes that come before
/// them: a resource it creates that matches, a second match it makes, a match it updates away.
async fn conditional_references_in_a_transaction_see_its_writes(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p600 = app.create(&patient("600", "Existe")).await;
    let p600_ref = format!("Patient/{}", p600["id"].as_str().unwrap());
    let obs = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "peso"},
               "subject": {"reference": subject}})
    };
    // One created here before the reference (POSTs go in bundle order), one found as it was.
    let r = app
        .post(
            "/fhir",
            &transaction(vec![
                post(
                    "urn:uuid:6f7a1c2e-0000-4000-8000-000000000601",
                    patient("601", "Nuevo"),
                ),
                post(
                    "urn:uuid:6f7a1c2e-0000-4000-8000-000000000001",
                    obs(&format!("Patient?{MRN}601")),
                ),
                post(
                    "urn:uuid:6f7a1c2e-0000-4000-8000-000000000002",
                    obs(&format!("Patient?{MRN}600")),
                ),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let created = located(&r.body["entry"][0]);
    assert_eq!(subject_at(&app, &r, 1).await, created);
    assert_eq!(subject_at(&app, &r, 2).await, p600_ref);
    // A second match made before the reference: several, so 412, and nothing written.
    let before = app.snapshot().await;
    let r = app
        .post(
            "/fhir",
            &transaction(vec![
                post(
                    "urn:uuid:6f7a1c2e-0000-4000-8000-000000000602",
                    patient("600", "Gemelo"),
                ),
                post(
                    "urn:uuid:6f7a1c2e-0000-4000-8000-000000000003",
                    obs(&format!("Patient?{MRN}600")),
                ),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(app.snapshot().await, before);
    // A match updated away before the reference (updates go by target: Encounter before
    // Observation): none is left, so 422 naming the reference.
    let enc = |mrn: &str| {
        json!({"resourceType": "Encounter", "id": "enc-600", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "identifier": [{"system": "http://clinic.example/enc", "value": mrn}],
               "subject": {"reference": p600_ref}})
    };
    let r = app.put("/fhir/Encounter/enc-600", &enc("E-1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut o = obs(&p600_ref);
    o["id"] = json!("obs-600");
    o["encounter"] = json!({"reference": "Encounter?identifier=http://clinic.example/enc|E-1"});
    let put = |resource: Value| {
        let url = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        json!({"resource": resource, "request": {"method": "PUT", "url": url}})
    };
    let before = app.snapshot().await;
    let r = app
        .post("/fhir", &transaction(vec![put(o.clone()), put(enc("E-2"))]))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.outcome()[0].2.as_deref(),
        Some("Bundle.entry[0].resource.encounter"),
        "{}",
        r.text
    );
    assert_eq!(app.snapshot().await, before);
    // Without that update the reference finds it.
    let r = app.post("/fhir", &transaction(vec![put(o)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        app.get("/fhir/Observation/obs-600").await.body["encounter"]["reference"],
        "Encounter/enc-600"
    );
}

async fn json_patch_changes_a_resource_or_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = app.create(&patient("500", "Antes")).await;
    let url = format!("/fhir/Patient/{}", p["id"].as_str().unwrap());
    let patch = |ops: Value, extra: &[(&'static str, &'static str)]| {
        let app = &app;
        let url = url.clone();
        let mut headers = vec![("content-type", "application/json-patch+json")];
        headers.extend_from_slice(extra);
        async move {
            let res = app
                .client
                .patch(app.url(&url))
                .body(ops.to_string())
                .headers(
                    headers
                        .iter()
                        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                        .collect(),
                )
                .send()
                .await
                .unwrap();
            TestApp::reply(res).await
        }
    };
    let r = patch(
        json!([
            {"op": "test", "path": "/name/0/family", "value": "Antes"},
            {"op": "replace", "path": "/name/0/family", "value": "Después"},
            {"op": "add", "path": "/gender", "value": "female"},
            {"op": "add", "path": "/telecom", "value": [{"system": "phone", "value": "555-0100"}]}
        ]),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "2");
    let now = app.get(&url).await.body;
    assert_eq!(now["name"][0]["family"], "Después");
    assert_eq!(now["gender"], "female");
    assert_eq!(now["telecom"][0]["value"], "555-0100");
    assert_eq!(
        now["identifier"], p["identifier"],
        "what the patch did not touch stays"
    );
    let versions = app.count("resource_versions").await;
    // Failures change nothing.
    for (ops, status) in [
        (
            json!([{"op": "test", "path": "/gender", "value": "male"}, {"op": "remove", "path": "/telecom"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([{"op": "replace", "path": "/gender", "value": "bogus"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([{"op": "remove", "path": "/nothing/here"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"op": "remove", "path": "/gender"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "jump", "path": "/gender"}]),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = patch(ops.clone(), &[]).await;
        assert_eq!(r.status, status, "{ops}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
    let r = patch(
        json!([{"op": "remove", "path": "/gender"}]),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(app.count("resource_versions").await, versions);
    assert_eq!(app.get(&url).await.body, now);
    // The patch media type is required.
    let r = app
        .send(
            Method::PATCH,
            &url,
            Some(&json!([{"op": "remove", "path": "/gender"}])),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
    let r = app
        .client
        .patch(app.url("/fhir/Patient/nobody"))
        .header("content-type", "application/json-patch+json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // In a transaction: a Binary carrying the patch, the target found by criteria.
    let ops = json!([{"op": "replace", "path": "/name/0/family", "value": "Por lote"}]).to_string();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                     "data": base64::engine::general_purpose::STANDARD.encode(ops)},
        "request": {"method": "PATCH", "url": format!("Patient?{MRN}500")}
    }]});
    let r = app.post("/fhir", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["entry"][0]["response"]["etag"], "W/\"3\"");
    assert_eq!(app.get(&url).await.body["name"][0]["family"], "Por lote");
}

on_both_engines!(
    conditional_create_makes_one_or_finds_it,
    conditional_update_updates_the_match_or_creates,
    conditional_delete_deletes_one_match,
    conditional_references_resolve_to_exactly_one,
    conditional_references_in_a_transaction_see_its_writes,
    json_patch_changes_a_resource_or_nothing,
);

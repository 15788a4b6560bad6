//! Long values are stored and found: any string a body may hold, in every element that is
//! indexed for search, is written, read back as sent, and found exactly by a search for it (and
//! not by one for a value that differs only in its last character), on both engines.
//! PostgreSQL's btree keeps at most about 2.7 KB an entry: these values are far longer, and
//! random enough not to compress.

mod common;

use common::{Engine, Reply, TestApp};
use serde_json::{json, Value};

/// `n` characters no compression shortens much: hexadecimal of random UUIDs.
fn long(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

/// `v` with its last character changed.
fn near(v: &str) -> String {
    let mut s = v[..v.len() - 1].to_owned();
    s.push(if v.ends_with('x') { 'y' } else { 'x' });
    s
}

async fn search(app: &TestApp, rtype: &str, param: &str, value: &str) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair(param, value)
        .finish();
    app.post_form(&format!("/fhir/{rtype}/_search"), body).await
}

/// The search for `value` finds exactly `id`; the one for a value one character off finds none.
async fn finds(app: &TestApp, rtype: &str, param: &str, value: &str, id: &str) {
    let r = search(app, rtype, param, value).await;
    assert_eq!(r.status, 200, "{rtype}?{param}: {}", r.text);
    assert_eq!(
        TestApp::ids(&r.body),
        vec![id.to_owned()],
        "{rtype}?{param}"
    );
    let r = search(app, rtype, param, &near(value)).await;
    assert_eq!(r.status, 200, "{rtype}?{param}: {}", r.text);
    assert!(
        TestApp::ids(&r.body).is_empty(),
        "{rtype}?{param} one character off"
    );
}

fn coding(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": long(5000)}]})
}

async fn created(app: &TestApp, resource: Value) -> (String, Value) {
    let r = app
        .post(
            &format!("/fhir/{}", resource["resourceType"].as_str().unwrap()),
            &resource,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    (id, r.body)
}

async fn long_values_are_stored_read_back_and_found_exactly(engine: Engine) {
    let app = TestApp::spawn_with(engine, 4 * 1024 * 1024).await;
    let n = 12_000;
    let (family, given, line, city) = (long(n), long(n), long(n), long(n));
    let (id_system, id_value) = (format!("http://ids.example/{}", long(n)), long(n));
    let (tag_system, tag_code) = (format!("http://tags.example/{}", long(n)), long(n));
    let patient = json!({
        "resourceType": "Patient",
        "meta": {"tag": [{"system": tag_system, "code": tag_code}]},
        "identifier": [{"system": id_system, "value": id_value}],
        "name": [{"family": family, "given": [given]}],
        "address": [{"line": [line], "city": city}]
    });
    let (pid, stored) = created(&app, patient.clone()).await;
    let read = app.get(&format!("/fhir/Patient/{pid}")).await;
    assert_eq!(read.body["name"], patient["name"]);
    assert_eq!(read.body["address"], patient["address"]);
    assert_eq!(read.body["identifier"], patient["identifier"]);
    assert_eq!(stored["meta"]["tag"], patient["meta"]["tag"]);
    finds(&app, "Patient", "family", &family, &pid).await;
    finds(&app, "Patient", "family:exact", &family, &pid).await;
    finds(&app, "Patient", "given", &given, &pid).await;
    finds(&app, "Patient", "address", &line, &pid).await;
    finds(&app, "Patient", "address-city", &city, &pid).await;
    finds(
        &app,
        "Patient",
        "identifier",
        &format!("{id_system}|{id_value}"),
        &pid,
    )
    .await;
    finds(
        &app,
        "Patient",
        "_tag",
        &format!("{tag_system}|{tag_code}"),
        &pid,
    )
    .await;
    let subject = json!({"reference": format!("Patient/{pid}")});

    let (system, code) = (format!("http://codes.example/{}", long(n)), long(n));
    let (oid, _) = created(
        &app,
        json!({"resourceType": "Observation", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
               "code": coding(&system, &code), "subject": subject,
               "valueCodeableConcept": coding(&system, &long(n))}),
    )
    .await;
    finds(
        &app,
        "Observation",
        "code",
        &format!("{system}|{code}"),
        &oid,
    )
    .await;
    let (rid, _) = created(
        &app,
        json!({"resourceType": "DiagnosticReport", "status": "final",
               "code": coding(&system, &code), "subject": subject}),
    )
    .await;
    finds(
        &app,
        "DiagnosticReport",
        "code",
        &format!("{system}|{code}"),
        &rid,
    )
    .await;

    let (aid, _) = created(
        &app,
        json!({"resourceType": "AllergyIntolerance", "patient": subject,
               "code": coding(&system, &long(n))}),
    )
    .await;
    let allergy = app.get(&format!("/fhir/AllergyIntolerance/{aid}")).await;
    let acode = allergy.body["code"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    finds(
        &app,
        "AllergyIntolerance",
        "code",
        &format!("{system}|{acode}"),
        &aid,
    )
    .await;
    let mcode = long(n);
    let (mid, _) = created(
        &app,
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "subject": subject, "medicationCodeableConcept": coding(&system, &mcode)}),
    )
    .await;
    finds(
        &app,
        "MedicationRequest",
        "code",
        &format!("{system}|{mcode}"),
        &mid,
    )
    .await;

    let (tcode, rcode) = (long(n), long(n));
    let (eid, _) = created(
        &app,
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "type": [coding(&system, &tcode)], "reasonCode": [coding(&system, &rcode)],
               "subject": subject}),
    )
    .await;
    finds(
        &app,
        "Encounter",
        "type",
        &format!("{system}|{tcode}"),
        &eid,
    )
    .await;
    finds(
        &app,
        "Encounter",
        "reason-code",
        &format!("{system}|{rcode}"),
        &eid,
    )
    .await;

    let (license, email, qual) = (long(n), format!("a{}@mail.example", long(n)), long(n));
    let license_system = expediente::mapping::practitioner::LICENCE_SYSTEM;
    let (prid, _) = created(
        &app,
        json!({"resourceType": "Practitioner",
               "identifier": [{"system": license_system, "value": license}],
               "name": [{"family": long(n)}],
               "telecom": [{"system": "email", "value": email}],
               "qualification": [{"code": coding(&system, &qual)}]}),
    )
    .await;
    let practitioner = app.get(&format!("/fhir/Practitioner/{prid}")).await;
    assert_eq!(practitioner.body["telecom"][0]["value"], email.as_str());
    let pvalue = practitioner.body["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(pvalue, license);
    let identifier = format!("{license_system}|{license}");
    finds(&app, "Practitioner", "identifier", &identifier, &prid).await;
}

on_both_engines!(long_values_are_stored_read_back_and_found_exactly);

//! Practitioner over users with a clinical role: round trips, the clinic's own users, search.

mod common;

use common::{strip_id_meta, stub, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn assert_same(name: &str, sent: &Value, back: &Value) {
    let (a, b) = (strip_id_meta(sent), strip_id_meta(back));
    assert!(
        a == b,
        "{name} changed: {}",
        common::first_difference(&a, &b, "Practitioner").unwrap_or_default()
    );
}

async fn every_synthea_practitioner_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let all = common::data("synthea/practitioners.json");
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1214);
    for sent in all {
        let id = sent["id"].as_str().unwrap();
        let r = app.put(&format!("/fhir/Practitioner/{id}"), sent).await;
        assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.text);
        assert_same(
            id,
            sent,
            &app.get(&format!("/fhir/Practitioner/{id}")).await.body,
        );
    }
    // Synthea gives two different practitioners one email: the login column stays unique and the
    // second keeps its email in fhir_extra (checked by the round trip above).
    let n = app
        .db
        .fetch_optional(
            "SELECT count(DISTINCT email) AS d, count(email) AS n FROM users",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.bigint("d").unwrap(), n.bigint("n").unwrap());
    assert_eq!(app.count("users").await, 1214);
}

async fn a_practitioner_created_through_fhir_is_a_doctor_without_credentials(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let sent = json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        "name": [{"family": "Pérez", "given": ["Lucía", "María"], "prefix": ["Dra."]}],
        "telecom": [{"system": "phone", "value": "+52 55 1234 5678"}, {"system": "email", "value": "lucia@clinica.example"}],
        "gender": "female"
    });
    let created = app.create(&sent).await;
    assert_same("created", &sent, &created);
    let row = app
        .db
        .fetch_optional(
            "SELECT u.first_name, u.last_name, u.phone, u.email, u.license_number, u.password_hash, u.is_active, r.name AS role \
             FROM users u JOIN roles r ON r.id = u.role_id WHERE u.fhir_id = ?",
            &[created["id"].as_str().unwrap().into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.text("role").unwrap().as_deref(), Some("physician"));
    assert_eq!(
        row.text("password_hash").unwrap(),
        None,
        "no credentials: it cannot log in"
    );
    assert_eq!(
        row.text("first_name").unwrap().as_deref(),
        Some("Lucía María")
    );
    assert_eq!(row.text("last_name").unwrap().as_deref(), Some("Pérez"));
    assert_eq!(
        row.text("phone").unwrap().as_deref(),
        Some("+52 55 1234 5678")
    );
    assert_eq!(
        row.text("email").unwrap().as_deref(),
        Some("lucia@clinica.example")
    );
    assert_eq!(
        row.text("license_number").unwrap().as_deref(),
        Some("1234567893")
    );
    assert_eq!(
        row.bool("is_active").unwrap(),
        Some(true),
        "an absent active is the column's default"
    );
    assert!(created.get("active").is_none(), "and reads back absent");
}

async fn the_clinics_users_are_practitioners_only_with_a_clinical_role(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doctor = uuid::Uuid::new_v4();
    let clerk = uuid::Uuid::new_v4();
    for (id, role, last) in [
        (doctor, "nurse", "Nightingale"),
        (clerk, "receptionist", "Front"),
    ] {
        app.db
            .execute(
                "INSERT INTO users (id, role_id, first_name, last_name, is_active) SELECT ?, id, 'Florence', ?, ? FROM roles WHERE name = ?",
                &[id.into(), last.into(), expediente::store::Arg::Bool(Some(false)), role.into()],
            )
            .await
            .unwrap();
    }
    let r = app.get(&format!("/fhir/Practitioner/{doctor}")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a clinical user without a FHIR id is served under its UUID: {}",
        r.text
    );
    assert_eq!(r.body["id"], doctor.to_string());
    assert_eq!(r.body["meta"]["versionId"], "1");
    assert_eq!(
        r.body["name"],
        json!([{"family": "Nightingale", "given": ["Florence"]}])
    );
    assert_eq!(r.body["active"], false);
    assert_eq!(
        app.get(&format!("/fhir/Practitioner/{clerk}")).await.status,
        StatusCode::NOT_FOUND
    );
    let s = app.get("/fhir/Practitioner?given=florence").await;
    assert_eq!(
        TestApp::ids(&s.body),
        Vec::<String>::new(),
        "the name index is kept by FHIR writes"
    );
    let all = app.get("/fhir/Practitioner").await;
    assert_eq!(TestApp::ids(&all.body), vec![doctor.to_string()]);
    // An Encounter of the clinic's doctor refers to it.
    app.put(
        "/fhir/Patient/p1",
        &json!({"resourceType": "Patient", "id": "p1"}),
    )
    .await;
    let enc = json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": format!("Practitioner/{doctor}")}}]
    });
    let e = app.create(&enc).await;
    let row = app
        .db
        .fetch_optional(
            "SELECT CAST(doctor_id AS TEXT) AS d FROM consultations WHERE fhir_id = ?",
            &[e["id"].as_str().unwrap().into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.text("d").unwrap(), Some(doctor.to_string()));
    let by_participant = app
        .get(&format!(
            "/fhir/Encounter?participant=Practitioner/{doctor}"
        ))
        .await;
    assert_eq!(
        TestApp::ids(&by_participant.body),
        vec![e["id"].as_str().unwrap().to_owned()]
    );
    let by_doctor = app
        .get(&format!("/fhir/Encounter?practitioner={doctor}"))
        .await;
    assert_eq!(
        TestApp::ids(&by_doctor.body),
        vec![e["id"].as_str().unwrap().to_owned()]
    );
    // The receptionist is no Practitioner to refer to.
    let mut bad = enc.clone();
    bad["participant"][0]["individual"]["reference"] = json!(format!("Practitioner/{clerk}"));
    assert_eq!(
        app.post("/fhir/Encounter", &bad).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let people = [
        ("d1", "García", "Ana", "female", true, "1111111111"),
        ("d2", "Garza", "Beto", "male", true, "2222222222"),
        ("d3", "Smith", "Carol", "female", false, "3333333333"),
    ];
    for (id, family, given, gender, active, npi) in people {
        let p = json!({
            "resourceType": "Practitioner", "id": id, "active": active, "gender": gender,
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
            "name": [{"family": family, "given": [given]}]
        });
        assert_eq!(
            app.put(&format!("/fhir/Practitioner/{id}"), &p)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let cases: &[(&str, &[&str])] = &[
        ("family=gar", &["d1", "d2"]),
        ("name=ana", &["d1"]),
        ("given=carol", &["d3"]),
        ("gender=female", &["d1", "d3"]),
        ("active=false", &["d3"]),
        ("identifier=2222222222", &["d2"]),
        (
            "identifier=http://hl7.org/fhir/sid/us-npi|3333333333",
            &["d3"],
        ),
        ("identifier=http://other|3333333333", &[]),
        ("_id=d1,d3", &["d1", "d3"]),
    ];
    for (q, want) in cases {
        let r = app.get(&format!("/fhir/Practitioner?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "Practitioner?{q}");
    }
    // Deleted practitioners leave the search and answer 410.
    assert_eq!(
        app.delete("/fhir/Practitioner/d1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/fhir/Practitioner/d1").await.status,
        StatusCode::GONE
    );
    assert_eq!(
        app.get("/fhir/Practitioner?family=gar").await.body["total"],
        1
    );
}

async fn qualification_and_service_type_share_the_specialties_catalog(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let cardiology = json!({"coding": [{"system": "http://snomed.info/sct", "code": "394579002", "display": "Cardiology"}]});
    let dr = json!({"resourceType": "Practitioner", "id": "cardio-1", "qualification": [{"code": cardiology}]});
    common::round_trip(&app, &dr, true).await;
    stub(&app, "Patient", "ana").await;
    let enc = json!({
        "resourceType": "Encounter", "id": "visit-1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceType": cardiology, "subject": {"reference": "Patient/ana"},
        "participant": [{"individual": {"reference": "Practitioner/cardio-1"}}]
    });
    common::round_trip(&app, &enc, true).await;
    assert_eq!(
        app.count("specialties").await,
        1,
        "one catalog entry for one specialty"
    );
    let row = app
        .db
        .fetch_optional(
            "SELECT s.name FROM consultations c JOIN users u ON u.id = c.doctor_id JOIN specialties s ON s.id = c.specialty_id AND s.id = u.specialty_id WHERE c.fhir_id = 'visit-1'",
            &[],
        )
        .await
        .unwrap()
        .expect("the consultation and its doctor point at the same specialty");
    assert_eq!(row.text("name").unwrap().as_deref(), Some("Cardiology"));
    // The clinic's own specialty shows on a user it creates.
    app.db
        .execute(
            "INSERT INTO users (id, fhir_id_given, role_id, specialty_id, last_name) SELECT ?, 'dr-2', r.id, s.id, 'Ruiz' FROM roles r, specialties s WHERE r.name = 'physician'",
            &[uuid::Uuid::new_v4().into()],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/Practitioner/dr-2").await;
    assert_eq!(
        r.body["qualification"],
        json!([{"code": {"coding": [{"code": "394579002", "system": "http://snomed.info/sct", "display": "Cardiology"}]}}])
    );
}

on_both_engines!(
    qualification_and_service_type_share_the_specialties_catalog,
    every_synthea_practitioner_round_trips,
    a_practitioner_created_through_fhir_is_a_doctor_without_credentials,
    the_clinics_users_are_practitioners_only_with_a_clinical_role,
    search_parameters_return_exactly_the_matching_ids,
);

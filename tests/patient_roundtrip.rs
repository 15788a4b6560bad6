//! Nothing lost: every official example Patient and every Synthea Patient, posted and read back,
//! equals what was sent apart from id, meta.versionId and meta.lastUpdated.

mod common;

use common::{strip_id_meta, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

fn example_patients() -> Vec<(String, Value)> {
    let dir = format!("{}/tests/data/examples", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("examples")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Patient-") && n.ends_with(".json"))
        .map(|n| {
            let v = common::data(&format!("examples/{n}"));
            (n, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn synthea_patients() -> Vec<(String, Value)> {
    common::data("synthea/patients.json")
        .as_array()
        .expect("array")
        .iter()
        .map(|p| (format!("synthea {}", p["id"]), p.clone()))
        .collect()
}

async fn check_round_trip(app: &TestApp, name: &str, sent: &Value, via_put: bool) {
    let r = if via_put {
        app.put(
            &format!("/fhir/Patient/{}", sent["id"].as_str().unwrap()),
            sent,
        )
        .await
    } else {
        app.post("/fhir/Patient", sent).await
    };
    // The examples' ids exist already (stubs), so a PUT updates them.
    let expected = if via_put {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    assert_eq!(r.status, expected, "{name}: {}", r.text);
    let id = r.body["id"].as_str().unwrap();
    let back = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(back.status, StatusCode::OK);
    let (a, b) = (strip_id_meta(sent), strip_id_meta(&back.body));
    assert!(
        a == b,
        "{name} changed: {}",
        common::first_difference(&a, &b, "Patient").unwrap_or_default()
    );
    if via_put {
        assert_eq!(back.body["id"], sent["id"]);
    }
}

async fn every_example_patient_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let all = example_patients();
    assert_eq!(all.len(), 8, "the eight official example Patients");
    // What the examples point at (pat1 ⇄ pat2 links, Practitioner/example) exists first:
    // references to hosted types are checked.
    let dr = serde_json::json!({"resourceType": "Practitioner", "id": "example"});
    assert_eq!(
        app.put("/fhir/Practitioner/example", &dr).await.status,
        StatusCode::CREATED
    );
    for (_, p) in &all {
        let id = p["id"].as_str().unwrap();
        let stub = serde_json::json!({"resourceType": "Patient", "id": id});
        assert_eq!(
            app.put(&format!("/fhir/Patient/{id}"), &stub).await.status,
            StatusCode::CREATED
        );
    }
    for (name, p) in &all {
        check_round_trip(&app, name, p, false).await;
        check_round_trip(&app, name, p, true).await;
    }
}

async fn every_synthea_patient_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let all = synthea_patients();
    assert_eq!(all.len(), 20);
    for (name, p) in &all {
        check_round_trip(&app, name, p, false).await;
    }
}

/// Mapped columns really hold the data (the mapping is not just a JSON blob).
async fn mapped_values_land_in_their_columns(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let sent = common::data("examples/Patient-f001.json");
    let created = app.create(&sent).await;
    let id = created["id"].as_str().unwrap();
    let row = app
        .db
        .fetch_optional(
            "SELECT first_name, last_name, gender, birth_date, phone, email, city, postal_code, country, marital_status, preferred_language, active FROM patients WHERE fhir_id = ?",
            &[id.into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.text("last_name").unwrap().as_deref(),
        Some("van de Heuvel")
    );
    assert_eq!(row.text("first_name").unwrap().as_deref(), Some("Pieter"));
    assert_eq!(row.text("gender").unwrap().as_deref(), Some("male"));
    assert_eq!(
        row.date("birth_date")
            .unwrap()
            .map(|d| d.to_string())
            .as_deref(),
        Some("1944-11-17")
    );
    assert_eq!(row.text("phone").unwrap().as_deref(), Some("0648352638"));
    assert_eq!(
        row.text("email").unwrap().as_deref(),
        Some("p.heuvel@gmail.com")
    );
    assert_eq!(row.text("city").unwrap().as_deref(), Some("Amsterdam"));
    assert_eq!(row.text("postal_code").unwrap().as_deref(), Some("1024 RJ"));
    assert_eq!(row.text("country").unwrap().as_deref(), Some("NLD"));
    assert_eq!(row.text("marital_status").unwrap().as_deref(), Some("M"));
    assert_eq!(
        row.text("preferred_language").unwrap().as_deref(),
        Some("nl")
    );
    assert_eq!(row.bool("active").unwrap(), Some(true));
    let idents = app
        .db
        .fetch_all("SELECT system, value FROM patient_identifiers i JOIN patients p ON p.id = i.patient_id WHERE p.fhir_id = ? ORDER BY position", &[id.into()])
        .await
        .unwrap();
    assert_eq!(idents.len(), 2);
    assert_eq!(
        idents[0].text("system").unwrap().as_deref(),
        Some("urn:oid:2.16.840.1.113883.2.4.6.3")
    );
    assert_eq!(
        idents[0].text("value").unwrap().as_deref(),
        Some("738472983")
    );
    let contacts = app
        .db
        .fetch_all("SELECT c.relationship, c.first_name, c.last_name, c.phone FROM patient_contacts c JOIN patients p ON p.id = c.patient_id WHERE p.fhir_id = ?", &[id.into()])
        .await
        .unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].text("relationship").unwrap().as_deref(),
        Some("C")
    );
    assert_eq!(
        contacts[0].text("last_name").unwrap().as_deref(),
        Some("Abels")
    );
    assert_eq!(
        contacts[0].text("phone").unwrap().as_deref(),
        Some("0690383372")
    );
}

/// A clinic user linked as general practitioner maps to the foreign key and back.
async fn general_practitioner_pointing_at_a_user_maps_to_the_foreign_key(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.db
        .execute(
            "INSERT INTO users (id, fhir_id_given, role_id, first_name, last_name) SELECT ?, 'dr-house', id, 'Gregory', 'House' FROM roles WHERE name = 'physician'",
            &[uuid::Uuid::new_v4().into()],
        )
        .await
        .unwrap();
    let sent = serde_json::json!({
        "resourceType": "Patient",
        "name": [{"family": "Cuddy"}],
        "generalPractitioner": [{"reference": "Practitioner/dr-house"}]
    });
    let created = app.create(&sent).await;
    assert_eq!(created["generalPractitioner"], sent["generalPractitioner"]);
    let row = app
        .db
        .fetch_optional(
            "SELECT u.last_name FROM patients p JOIN users u ON u.id = p.general_practitioner_id WHERE p.fhir_id = ?",
            &[created["id"].as_str().unwrap().into()],
        )
        .await
        .unwrap()
        .expect("the foreign key is set");
    assert_eq!(row.text("last_name").unwrap().as_deref(), Some("House"));
    // A practitioner of another server or an organisation is kept as sent, with no foreign key.
    let other = serde_json::json!({"resourceType": "Patient", "generalPractitioner": [
        {"reference": "https://other.example/fhir/Practitioner/1", "display": "Dr. Elsewhere"},
        {"reference": "Organization/clinic-2"}
    ]});
    let c2 = app.create(&other).await;
    assert_eq!(c2["generalPractitioner"], other["generalPractitioner"]);
    let fk = app
        .db
        .fetch_optional(
            "SELECT general_practitioner_id FROM patients WHERE fhir_id = ?",
            &[c2["id"].as_str().unwrap().into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fk.opt_uuid("general_practitioner_id").unwrap(), None);
    // A Practitioner of this server that does not exist is refused.
    let missing = serde_json::json!({"resourceType": "Patient", "generalPractitioner": [{"reference": "Practitioner/nobody"}]});
    assert_eq!(
        app.post("/fhir/Patient", &missing).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

on_both_engines!(
    every_example_patient_round_trips,
    every_synthea_patient_round_trips,
    mapped_values_land_in_their_columns,
    general_practitioner_pointing_at_a_user_maps_to_the_foreign_key,
);

//! Custom fields: extensions on the resource of their entity, stored in custom_field_values with
//! their type checked, required ones enforced, and their StructureDefinitions served.

mod common;

use common::{round_trip, Engine, TestApp};
use expediente::store::Arg;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SMOKER: &str = "https://clinic.example/fhir/StructureDefinition/patient-smoker";
const BLOOD: &str = "https://clinic.example/fhir/StructureDefinition/patient-blood-type";
const PAIN: &str = "https://clinic.example/fhir/StructureDefinition/encounter-pain-score";

async fn define(app: &TestApp) {
    for (entity, key, label, kind, choices, required, url) in [
        ("Patient", "smoker", "Smoker", "boolean", None, true, SMOKER),
        (
            "Patient",
            "blood-type",
            "Blood type",
            "choice",
            Some(json!(["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"])),
            false,
            BLOOD,
        ),
        (
            "Encounter",
            "pain-score",
            "Pain score (0-10)",
            "number",
            None,
            false,
            PAIN,
        ),
    ] {
        app.db
            .execute(
                "INSERT INTO custom_fields (id, entity_type, field_key, label, field_type, choices, is_required, extension_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &[
                    uuid::Uuid::new_v4().into(),
                    entity.into(),
                    key.into(),
                    label.into(),
                    kind.into(),
                    Arg::OptJson(choices),
                    Arg::Bool(Some(required)),
                    url.into(),
                ],
            )
            .await
            .unwrap();
    }
}

fn patient(exts: Value) -> Value {
    json!({"resourceType": "Patient", "id": "ana", "name": [{"family": "García"}], "extension": exts})
}

async fn values_are_type_checked_and_required_ones_enforced(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    define(&app).await;
    let missing = app
        .post(
            "/fhir/Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "García"}]}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        missing.outcome()[0].1.contains("smoker"),
        "{:?}",
        missing.outcome()
    );
    assert_eq!(missing.outcome()[0].2.as_deref(), Some("Patient.extension"));
    let wrong_type = app
        .post(
            "/fhir/Patient",
            &patient(json!([{"url": SMOKER, "valueString": "yes"}])),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        wrong_type.outcome()[0].2.as_deref(),
        Some("Patient.extension[0]")
    );
    assert!(wrong_type.outcome()[0].1.contains("valueBoolean"));
    let bad_choice = app
        .post(
            "/fhir/Patient",
            &patient(
                json!([{"url": SMOKER, "valueBoolean": true}, {"url": BLOOD, "valueCode": "Z+"}]),
            ),
        )
        .await;
    assert_eq!(bad_choice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad_choice.outcome()[0].2.as_deref(),
        Some("Patient.extension[1]")
    );
    assert_eq!(app.count("patients").await, 0);
    assert_eq!(app.count("custom_field_values").await, 0);
}

async fn values_are_stored_and_round_trip(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    define(&app).await;
    let sent = patient(json!([
        {"url": SMOKER, "valueBoolean": true},
        {"url": BLOOD, "valueCoding": {"system": "https://clinic.example/blood", "code": "O+", "display": "O positive"}},
        {"url": "http://example.org/other", "valueString": "kept as sent"}
    ]));
    round_trip(&app, &sent, true).await;
    let rows = app
        .db
        .fetch_all(
            "SELECT f.field_key, v.value_text, v.value_boolean FROM custom_field_values v JOIN custom_fields f ON f.id = v.custom_field_id ORDER BY f.field_key",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].text("field_key").unwrap().as_deref(),
        Some("blood-type")
    );
    assert_eq!(rows[0].text("value_text").unwrap().as_deref(), Some("O+"));
    assert_eq!(rows[1].bool("value_boolean").unwrap(), Some(true));
    // An update replaces the values.
    let mut next = sent.clone();
    next["extension"] = json!([{"url": SMOKER, "valueBoolean": false}]);
    round_trip(&app, &next, true).await;
    assert_eq!(app.count("custom_field_values").await, 1);
}

async fn the_clinics_own_changes_show_as_extensions(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    define(&app).await;
    let sent =
        patient(json!([{"url": SMOKER, "valueBoolean": true}, {"url": BLOOD, "valueCode": "A+"}]));
    round_trip(&app, &sent, true).await;
    app.db
        .execute(
            "UPDATE custom_field_values SET value_boolean = ? WHERE custom_field_id IN (SELECT id FROM custom_fields WHERE field_key = 'smoker')",
            &[Arg::Bool(Some(false))],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/Patient/ana").await;
    assert_eq!(
        r.body["meta"]["versionId"], "2",
        "a changed value is a new version"
    );
    assert_eq!(
        r.body["extension"],
        json!([{"url": SMOKER, "valueBoolean": false}, {"url": BLOOD, "valueCode": "A+"}])
    );
    app.db
        .execute("DELETE FROM custom_field_values WHERE custom_field_id IN (SELECT id FROM custom_fields WHERE field_key = 'blood-type')", &[])
        .await
        .unwrap();
    let r = app.get("/fhir/Patient/ana").await;
    assert_eq!(r.body["meta"]["versionId"], "3");
    assert_eq!(
        r.body["extension"],
        json!([{"url": SMOKER, "valueBoolean": false}])
    );
    // A value the clinic adds to an Encounter appears as an extension.
    let enc = json!({
        "resourceType": "Encounter", "id": "v1", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/ana"}
    });
    round_trip(&app, &enc, true).await;
    app.db
        .execute(
            "INSERT INTO custom_field_values (id, custom_field_id, entity_type, entity_id, value_number) \
             SELECT ?, f.id, 'Encounter', c.id, ? FROM custom_fields f, consultations c WHERE f.field_key = 'pain-score' AND c.fhir_id = 'v1'",
            &[uuid::Uuid::new_v4().into(), Arg::Decimal(Some("7.5".into()))],
        )
        .await
        .unwrap();
    let r = app.get("/fhir/Encounter/v1").await;
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert_eq!(
        r.body["extension"],
        json!([{"url": PAIN, "valueDecimal": 7.5}])
    );
    assert!(r.text.contains(r#""valueDecimal":7.5"#));
}

async fn each_field_has_a_structure_definition(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    define(&app).await;
    let all = app.get("/fhir/StructureDefinition").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["total"], 3);
    let one = app
        .get(&format!(
            "/fhir/StructureDefinition?url={}",
            form_urlencoded::byte_serialize(SMOKER.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(one.body["total"], 1);
    let sd = &one.body["entry"][0]["resource"];
    assert_eq!(sd["url"], SMOKER);
    assert_eq!(sd["type"], "Extension");
    assert_eq!(sd["context"][0]["expression"], "Patient");
    assert_eq!(
        sd["differential"]["element"][0]["min"], 1,
        "a required field is min 1"
    );
    assert_eq!(
        sd["differential"]["element"][3]["type"][0]["code"],
        "boolean"
    );
    let validators =
        expediente::fhir::validate::Validators::new(&["StructureDefinition", "Bundle"]);
    assert!(
        validators.validate("StructureDefinition", sd).is_empty(),
        "{:?}",
        validators.validate("StructureDefinition", sd)
    );
    assert!(validators.validate("Bundle", &all.body).is_empty());
    let read = app
        .get(&format!(
            "/fhir/StructureDefinition/{}",
            sd["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(read.body, *sd);
    assert_eq!(
        app.get("/fhir/StructureDefinition/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn fields_of_a_specialty_are_required_only_there(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    common::stub(&app, "Patient", "ana").await;
    let cardio = uuid::Uuid::new_v4();
    app.db
        .execute(
            "INSERT INTO specialties (id, code, system, name) VALUES (?, 'cardio', 'https://clinic.example/specialties', 'Cardiology'), (?, 'derma', 'https://clinic.example/specialties', 'Dermatology')",
            &[cardio.into(), uuid::Uuid::new_v4().into()],
        )
        .await
        .unwrap();
    const NYHA: &str = "https://clinic.example/fhir/StructureDefinition/encounter-nyha-class";
    const ECG: &str = "https://clinic.example/fhir/StructureDefinition/observation-ecg-device";
    for (entity, key, kind, url) in [
        ("Encounter", "nyha-class", "text", NYHA),
        ("Observation", "ecg-device", "text", ECG),
    ] {
        app.db
            .execute(
                "INSERT INTO custom_fields (id, entity_type, specialty_id, field_key, label, field_type, is_required, extension_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &[uuid::Uuid::new_v4().into(), entity.into(), cardio.into(), key.into(), key.into(), kind.into(), Arg::Bool(Some(true)), url.into()],
            )
            .await
            .unwrap();
    }
    let encounter = |id: &str, specialty: &str, exts: Value| {
        let mut e = json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "serviceType": {"coding": [{"system": "https://clinic.example/specialties", "code": specialty}]},
            "subject": {"reference": "Patient/ana"}});
        if exts != json!([]) {
            e["extension"] = exts;
        }
        e
    };
    // A cardiology consultation needs the NYHA class; a dermatology one does not.
    let r = app
        .put("/fhir/Encounter/c1", &encounter("c1", "cardio", json!([])))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.outcome()[0].1.contains("nyha-class"), "{}", r.text);
    assert_eq!(app.count("consultations").await, 0);
    round_trip(&app, &encounter("d1", "derma", json!([])), true).await;
    round_trip(
        &app,
        &encounter("c1", "cardio", json!([{"url": NYHA, "valueString": "II"}])),
        true,
    )
    .await;
    // An Observation made in a cardiology consultation needs the ECG device; others do not.
    let obs = |id: &str, encounter: Option<&str>, exts: Value| {
        let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8601-7"}]},
            "subject": {"reference": "Patient/ana"}, "valueString": "normal sinus rhythm"});
        if let Some(e) = encounter {
            o["encounter"] = json!({"reference": format!("Encounter/{e}")});
        }
        if exts != json!([]) {
            o["extension"] = exts;
        }
        o
    };
    let r = app
        .put("/fhir/Observation/o1", &obs("o1", Some("c1"), json!([])))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Observation.extension"));
    round_trip(&app, &obs("o2", Some("d1"), json!([])), true).await;
    round_trip(&app, &obs("o3", None, json!([])), true).await;
    round_trip(
        &app,
        &obs(
            "o1",
            Some("c1"),
            json!([{"url": ECG, "valueString": "GE MAC 2000"}]),
        ),
        true,
    )
    .await;
    // Its StructureDefinition does not claim it everywhere.
    let sd = app
        .get(&format!("/fhir/StructureDefinition?url={NYHA}"))
        .await;
    let root = &sd.body["entry"][0]["resource"]["differential"]["element"][0];
    assert_eq!(root["min"], 0, "{}", sd.text);
}

on_both_engines!(
    fields_of_a_specialty_are_required_only_there,
    values_are_type_checked_and_required_ones_enforced,
    values_are_stored_and_round_trip,
    the_clinics_own_changes_show_as_extensions,
    each_field_has_a_structure_definition,
);

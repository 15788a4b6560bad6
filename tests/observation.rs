//! Observation over vital_signs (one Observation per filled measurement) and
//! medical_test_results (every other Observation).

mod common;

use common::{round_trip, stub, Engine, TestApp};
use expediente::store::Arg;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The official examples, in an order where what `hasMember` names exists first.
const EXAMPLES: &[&str] = &[
    "blood-pressure",
    "bmi",
    "body-height",
    "body-temperature",
    "decimal",
    "ekg",
    "example",
    "f001",
    "f202",
    "head-circumference",
    "heart-rate",
    "respiratory-rate",
    "satO2",
    "vitals-panel",
];

/// The examples whose code is a mapped vital sign with a value its column takes.
const VITAL_EXAMPLES: usize = 10;

async fn every_example_and_synthea_observation_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for p in ["example", "f001", "f201"] {
        stub(&app, "Patient", p).await;
    }
    for p in ["example", "f005", "f201"] {
        stub(&app, "Practitioner", p).await;
    }
    round_trip(&app, &common::data("examples/Encounter-example.json"), true).await;
    for name in EXAMPLES {
        let sent = common::data(&format!("examples/Observation-{name}.json"));
        round_trip(&app, &sent, true).await;
    }
    assert_eq!(
        app.count("vital_sign_observations").await,
        VITAL_EXAMPLES as i64
    );
    // The weight in pounds is kept in kilograms, and read back in pounds as sent.
    let w = app
        .db
        .fetch_optional(
            "SELECT v.body_weight FROM vital_signs v JOIN vital_sign_observations o ON o.vital_sign_id = v.id WHERE o.fhir_id = 'example'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        w.decimal("body_weight").unwrap().as_deref(),
        Some("83.91458845")
    );
    // Posting (server-assigned ids) stores them again.
    for name in ["blood-pressure", "decimal", "f001"] {
        let sent = common::data(&format!("examples/Observation-{name}.json"));
        round_trip(&app, &sent, false).await;
    }

    common::load_synthea_patients_and_encounters(&app).await;
    let all = common::data("synthea/observations.json");
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2332);
    for o in all {
        let mut sent = o.clone();
        common::local_reference(&mut sent, "subject", "Patient");
        common::local_reference(&mut sent, "encounter", "Encounter");
        round_trip(&app, &sent, true).await;
    }
    // Synthea's heights, weights and BMIs are vital signs; its blood pressures use the older
    // code 55284-4 and stay with the other results, as do pain scores and labs.
    let vitals = app.count("vital_sign_observations").await;
    assert_eq!(vitals, VITAL_EXAMPLES as i64 + 1 + 132 + 132 + 116);
    let results = app.count("medical_test_results").await;
    assert_eq!(
        results,
        (EXAMPLES.len() - VITAL_EXAMPLES) as i64 + 2 + 2332 - 380
    );
}

/// Writes a vital_signs row with plain SQL, as the clinic application does.
async fn sql_vitals(app: &TestApp, patient: &str, at: &str, values: &[(&str, &str)]) -> String {
    let p = app
        .db
        .fetch_optional(
            "SELECT id FROM patients WHERE fhir_id = ?",
            &[patient.into()],
        )
        .await
        .unwrap()
        .unwrap()
        .uuid("id")
        .unwrap();
    let id = uuid::Uuid::new_v4();
    let cols: Vec<&str> = values.iter().map(|(c, _)| *c).collect();
    let mut args: Vec<Arg> = vec![
        id.into(),
        p.into(),
        Arg::Timestamp(Some(at.parse().unwrap())),
    ];
    args.extend(
        values
            .iter()
            .map(|(_, v)| Arg::Decimal(Some(v.to_string()))),
    );
    app.db
        .execute(
            &format!(
                "INSERT INTO vital_signs (id, patient_id, measured_at, {}) VALUES (?, ?, ?, {})",
                cols.join(", "),
                vec!["?"; cols.len()].join(", ")
            ),
            &args,
        )
        .await
        .unwrap();
    id.to_string()
}

fn row_uuid(row: &str) -> uuid::Uuid {
    row.parse().unwrap()
}

async fn vitals_written_with_sql_read_as_vital_sign_observations(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let row = sql_vitals(
        &app,
        "ana",
        "2026-03-01T09:30:00Z",
        &[
            ("systolic_bp", "120"),
            ("diastolic_bp", "80"),
            ("heart_rate", "72"),
            ("body_temperature", "36.6"),
        ],
    )
    .await;
    let found = app.get("/fhir/Observation?patient=ana").await;
    let ids: BTreeSet<String> = TestApp::ids(&found.body).into_iter().collect();
    let want: BTreeSet<String> = ["blood-pressure", "heart-rate", "body-temperature"]
        .iter()
        .map(|m| format!("{row}.{m}"))
        .collect();
    assert_eq!(ids, want);

    let category = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}]);
    let bp = app
        .get(&format!("/fhir/Observation/{row}.blood-pressure"))
        .await;
    assert_eq!(bp.status, StatusCode::OK, "{}", bp.text);
    assert_eq!(
        common::strip_id_meta(&bp.body),
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": category,
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel with all children optional"}]},
            "subject": {"reference": "Patient/ana"},
            "effectiveDateTime": "2026-03-01T09:30:00Z",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": {"value": 80, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
            ]
        })
    );
    let hr = app
        .get(&format!("/fhir/Observation/{row}.heart-rate"))
        .await;
    assert_eq!(
        hr.body["valueQuantity"],
        json!({"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"})
    );
    assert_eq!(hr.body["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(hr.body["meta"]["versionId"], "1");
    let temp = app
        .get(&format!("/fhir/Observation/{row}.body-temperature"))
        .await;
    assert_eq!(temp.body["valueQuantity"]["value"], json!(36.6));
    assert_eq!(temp.body["valueQuantity"]["code"], "Cel");

    // A direct change of one measurement is a new version of its Observation only.
    app.db
        .execute(
            "UPDATE vital_signs SET heart_rate = ? WHERE id = ?",
            &[Arg::Decimal(Some("75".into())), row_uuid(&row).into()],
        )
        .await
        .unwrap_or_else(|_| panic!("update"));
    let hr = app
        .get(&format!("/fhir/Observation/{row}.heart-rate"))
        .await;
    assert_eq!(hr.body["meta"]["versionId"], "2");
    assert_eq!(hr.body["valueQuantity"]["value"], json!(75));
    let bp = app
        .get(&format!("/fhir/Observation/{row}.blood-pressure"))
        .await;
    assert_eq!(bp.body["meta"]["versionId"], "1");
    // A measurement set to NULL is an Observation deleted.
    app.db
        .execute(
            "UPDATE vital_signs SET heart_rate = NULL WHERE id = ?",
            &[row_uuid(&row).into()],
        )
        .await
        .unwrap();
    let gone = app
        .get(&format!("/fhir/Observation/{row}.heart-rate"))
        .await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.text);
    let bp = app
        .get(&format!("/fhir/Observation/{row}.blood-pressure"))
        .await;
    assert_eq!(bp.status, StatusCode::OK);
    assert_eq!(bp.body["meta"]["versionId"], "1");
}

fn vital(code: &str, value: Value, unit: &str, at: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": code},
        "subject": {"reference": "Patient/ana"},
        "effectiveDateTime": at,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

fn blood_pressure(sys: i64, dia: i64, at: &str) -> Value {
    let comp = |code: &str, v: i64| json!({"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": {"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}});
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/ana"},
        "effectiveDateTime": at,
        "component": [comp("8480-6", sys), comp("8462-4", dia)]
    })
}

async fn vital_row(app: &TestApp, fhir_id: &str) -> expediente::store::Row {
    app.db
        .fetch_optional(
            "SELECT v.* FROM vital_signs v JOIN vital_sign_observations o ON o.vital_sign_id = v.id WHERE o.fhir_id = ?",
            &[fhir_id.into()],
        )
        .await
        .unwrap()
        .expect("vital_signs row")
}

async fn a_posted_blood_pressure_fills_two_columns_and_writes_touch_one_measurement(
    engine: Engine,
) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let at = "2026-03-02T10:00:00Z";
    let bp = app.create(&blood_pressure(131, 84, at)).await;
    let bp_id = bp["id"].as_str().unwrap().to_owned();
    let row = vital_row(&app, &bp_id).await;
    assert_eq!(row.decimal("systolic_bp").unwrap().as_deref(), Some("131"));
    assert_eq!(row.decimal("diastolic_bp").unwrap().as_deref(), Some("84"));
    assert_eq!(row.decimal("heart_rate").unwrap(), None);
    // A heart rate of the same session joins the same row.
    let hr = app.create(&vital("8867-4", json!(64), "/min", at)).await;
    let hr_id = hr["id"].as_str().unwrap().to_owned();
    assert_eq!(app.count("vital_signs").await, 1);
    let row = vital_row(&app, &hr_id).await;
    assert_eq!(row.decimal("heart_rate").unwrap().as_deref(), Some("64"));
    assert_eq!(row.decimal("systolic_bp").unwrap().as_deref(), Some("131"));

    // Updating the heart rate changes its column only; the blood pressure keeps its version.
    let mut hr2 = vital("8867-4", json!(66), "/min", at);
    hr2["id"] = json!(hr_id);
    let r = app.put(&format!("/fhir/Observation/{hr_id}"), &hr2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "2");
    let row = vital_row(&app, &hr_id).await;
    assert_eq!(row.decimal("heart_rate").unwrap().as_deref(), Some("66"));
    assert_eq!(row.decimal("systolic_bp").unwrap().as_deref(), Some("131"));
    let back = app.get(&format!("/fhir/Observation/{bp_id}")).await;
    assert_eq!(back.body["meta"]["versionId"], "1");

    // A new time for the blood pressure moves it to a row of its own; the heart rate stays.
    let mut bp2 = blood_pressure(131, 84, "2026-03-02T10:05:00Z");
    bp2["id"] = json!(bp_id);
    let r = app.put(&format!("/fhir/Observation/{bp_id}"), &bp2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.count("vital_signs").await, 2);
    let hr_row = vital_row(&app, &hr_id).await;
    assert_eq!(hr_row.decimal("systolic_bp").unwrap(), None);
    assert_eq!(hr_row.decimal("heart_rate").unwrap().as_deref(), Some("66"));
    let hr_back = app.get(&format!("/fhir/Observation/{hr_id}")).await;
    assert_eq!(hr_back.body["meta"]["versionId"], "2");
    assert_eq!(hr_back.body["effectiveDateTime"], at);
    let bp_back = app.get(&format!("/fhir/Observation/{bp_id}")).await;
    assert_eq!(bp_back.body["effectiveDateTime"], "2026-03-02T10:05:00Z");
    assert_eq!(bp_back.body["component"][0]["valueQuantity"]["value"], 131);

    // Deleting the heart rate empties its column and nothing else.
    let d = app.delete(&format!("/fhir/Observation/{hr_id}")).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
    let row = app
        .db
        .fetch_optional(
            "SELECT v.heart_rate, v.deleted_at FROM vital_signs v JOIN vital_sign_observations o ON o.vital_sign_id = v.id WHERE o.fhir_id = ?",
            &[hr_id.as_str().into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.decimal("heart_rate").unwrap(), None);
    let gone = app.get(&format!("/fhir/Observation/{hr_id}")).await;
    assert_eq!(gone.status, StatusCode::GONE);
    let hist = app
        .get(&format!("/fhir/Observation/{hr_id}/_history"))
        .await;
    assert_eq!(hist.body["total"], 3, "{}", hist.text);
    let bp_back = app.get(&format!("/fhir/Observation/{bp_id}")).await;
    assert_eq!(bp_back.status, StatusCode::OK);

    // A unit the column cannot take leaves the vital-signs record alone: the Observation is kept
    // with the other results, exactly as sent.
    let odd = vital("29463-7", json!(11), "[stone_av]", at);
    let r = app.create(&odd).await;
    assert_eq!(r["valueQuantity"]["code"], "[stone_av]");
    assert_eq!(app.count("medical_test_results").await, 1);
    // A vital sign cannot be turned into another measurement by an update.
    let mut turned = vital("9279-1", json!(16), "/min", at);
    turned["id"] = json!(bp_id);
    let r = app
        .put(&format!("/fhir/Observation/{bp_id}"), &turned)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Observation.code"));
}

fn lab(id: &str, who: &str, code: &str, value: Value, at: &str) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{who}")},
        "effectiveDateTime": at
    });
    if let Value::Object(v) = value {
        for (k, x) in v {
            o[k] = x;
        }
    }
    o
}

async fn results_keep_every_kind_of_value_in_its_column(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let at = "2026-01-05T08:00:00Z";
    let cases = [
        (
            lab(
                "q",
                "ana",
                "2339-0",
                json!({"valueQuantity": {"value": serde_json::from_str::<Value>("5.40").unwrap(), "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}, "referenceRange": [{"low": {"value": 3.9}, "high": {"value": 5.6}}], "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}]}),
                at,
            ),
            "quantity",
        ),
        (
            lab("s", "ana", "5778-6", json!({"valueString": "amber"}), at),
            "string",
        ),
        (
            lab("b", "ana", "5797-6", json!({"valueBoolean": false}), at),
            "boolean",
        ),
        (
            lab("i", "ana", "6690-2", json!({"valueInteger": 7}), at),
            "integer",
        ),
        (
            lab(
                "c",
                "ana",
                "5778-6",
                json!({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "A"}], "text": "clear"}}),
                at,
            ),
            "codeable-concept",
        ),
        (
            lab(
                "r",
                "ana",
                "2093-3",
                json!({"valueRange": {"low": {"value": 1}, "high": {"value": 2}}}),
                at,
            ),
            "range",
        ),
    ];
    for (o, kind) in &cases {
        round_trip(&app, o, true).await;
        let row = app
            .db
            .fetch_optional(
                "SELECT value_type, value_quantity, value_unit, value_unit_system, value_code, value_string, value_boolean, value_integer, value_json, reference_low, reference_high, interpretation_code, effective_at, category_code FROM medical_test_results WHERE fhir_id = ?",
                &[o["id"].as_str().unwrap().into()],
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.text("value_type").unwrap().as_deref(), Some(*kind));
        assert_eq!(
            row.text("category_code").unwrap().as_deref(),
            Some("laboratory")
        );
        assert!(row.opt_timestamp("effective_at").unwrap().is_some());
        match *kind {
            "quantity" => {
                assert_eq!(
                    row.decimal("value_quantity").unwrap().as_deref(),
                    Some("5.40")
                );
                assert_eq!(
                    row.decimal("reference_low").unwrap().as_deref(),
                    Some("3.9")
                );
                assert_eq!(
                    row.decimal("reference_high").unwrap().as_deref(),
                    Some("5.6")
                );
                assert_eq!(
                    row.text("interpretation_code").unwrap().as_deref(),
                    Some("N")
                );
            }
            "string" => assert_eq!(row.text("value_string").unwrap().as_deref(), Some("amber")),
            "boolean" => assert_eq!(row.bool("value_boolean").unwrap(), Some(false)),
            "integer" => assert_eq!(row.opt_int("value_integer").unwrap(), Some(7)),
            "codeable-concept" => {
                assert_eq!(row.text("value_code").unwrap().as_deref(), Some("A"))
            }
            "range" => assert_eq!(
                row.json("value_json").unwrap(),
                Some(json!({"low": {"value": 1}, "high": {"value": 2}}))
            ),
            _ => {}
        }
    }
    // The clinic corrects a value in its own table: the Observation shows it.
    app.db
        .execute(
            "UPDATE medical_test_results SET value_quantity = ? WHERE fhir_id = 'q'",
            &[Arg::Decimal(Some("6.1".into()))],
        )
        .await
        .unwrap();
    let q = app.get("/fhir/Observation/q").await;
    assert_eq!(q.body["valueQuantity"]["value"], json!(6.1));
    assert_eq!(q.body["valueQuantity"]["unit"], "mmol/L");
    assert_eq!(q.body["meta"]["versionId"], "2");
    // A result may name no patient, and a code may be text only.
    let r = app
        .post(
            "/fhir/Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "Smell"}, "valueString": "none"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // A reference to a Patient that does not exist is refused and nothing is written.
    let before = app.count("medical_test_results").await;
    let r = app
        .post(
            "/fhir/Observation",
            &lab("x", "nobody", "2339-0", json!({}), at),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Observation.subject"));
    assert_eq!(app.count("medical_test_results").await, before);
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bruno").await;
    let enc = json!({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": {"reference": "Patient/ana"}});
    round_trip(&app, &enc, true).await;
    let mut obs = vec![
        lab(
            "glu1",
            "ana",
            "2339-0",
            json!({"valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}, "encounter": {"reference": "Encounter/e1"}}),
            "2026-01-05T08:00:00Z",
        ),
        lab(
            "glu2",
            "ana",
            "2339-0",
            json!({"valueQuantity": {"value": 7.25, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}),
            "2026-02-05T08:00:00Z",
        ),
        lab(
            "glu3",
            "bruno",
            "2339-0",
            json!({"valueQuantity": {"value": 98, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}, "status": "preliminary"}),
            "2025-12-05T08:00:00Z",
        ),
        lab(
            "smoke",
            "bruno",
            "72166-2",
            json!({"valueCodeableConcept": {"text": "Never smoker"}, "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history"}]}]}),
            "2026-01-20T08:00:00Z",
        ),
    ];
    let mut hr = vital("8867-4", json!(88), "/min", "2026-01-05T08:00:00Z");
    hr["id"] = json!("hr1");
    hr["code"]["coding"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "http://snomed.info/sct", "code": "364075005"}));
    hr["encounter"] = json!({"reference": "Encounter/e1"});
    obs.push(hr);
    let mut bp = blood_pressure(140, 90, "2026-02-05T08:00:00Z");
    bp["id"] = json!("bp1");
    obs.push(bp);
    for o in &obs {
        round_trip(&app, o, true).await;
    }
    let sql_row = sql_vitals(
        &app,
        "bruno",
        "2026-03-01T09:00:00Z",
        &[
            ("systolic_bp", "118"),
            ("diastolic_bp", "76"),
            ("body_weight", "81.5"),
        ],
    )
    .await;
    let sql_bp = format!("{sql_row}.blood-pressure");
    let sql_w = format!("{sql_row}.body-weight");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("patient=ana", vec!["glu1", "glu2", "hr1", "bp1"]),
        (
            "subject=Patient/bruno",
            vec!["glu3", "smoke", &sql_bp, &sql_w],
        ),
        ("encounter=e1", vec!["glu1", "hr1"]),
        ("code=2339-0", vec!["glu1", "glu2", "glu3"]),
        ("code=http://loinc.org|8867-4", vec!["hr1"]),
        ("code=http://snomed.info/sct|364075005", vec!["hr1"]),
        ("code=85354-9", vec!["bp1", &sql_bp]),
        ("code=29463-7", vec![&sql_w]),
        ("combo-code=8480-6", vec!["bp1", &sql_bp]),
        ("combo-code=http://loinc.org|8462-4", vec!["bp1", &sql_bp]),
        ("combo-code=8867-4", vec!["hr1"]),
        ("category=vital-signs", vec!["hr1", "bp1", &sql_bp, &sql_w]),
        ("category=laboratory", vec!["glu1", "glu2", "glu3"]),
        (
            "category=http://terminology.hl7.org/CodeSystem/observation-category|social-history",
            vec!["smoke"],
        ),
        ("status=preliminary", vec!["glu3"]),
        ("date=2026-01", vec!["glu1", "hr1", "smoke"]),
        ("date=ge2026-02-01", vec!["glu2", "bp1", &sql_bp, &sql_w]),
        ("date=lt2026-01-01", vec!["glu3"]),
        ("value-quantity=5.4", vec!["glu1"]),
        ("value-quantity=7.2", vec![]),
        // 7.3 stands for [7.25, 7.35).
        ("value-quantity=7.3", vec!["glu2"]),
        ("value-quantity=7.25", vec!["glu2"]),
        ("value-quantity=gt6", vec!["glu2", "glu3", "hr1", &sql_w]),
        (
            "value-quantity=gt6|http://unitsofmeasure.org|mmol/L",
            vec!["glu2"],
        ),
        ("value-quantity=le81.5||kg", vec![&sql_w]),
        // ap is within 10%: [81, 99].
        ("value-quantity=ap90", vec!["hr1", "glu3", &sql_w]),
        (
            "patient=ana&category=vital-signs&date=ge2026-01-01",
            vec!["hr1", "bp1"],
        ),
        (
            "patient=ana&code=2339-0,8867-4",
            vec!["glu1", "glu2", "hr1"],
        ),
    ];
    for (q, want) in &cases {
        let r = app.get(&format!("/fhir/Observation?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "Observation?{q}");
        assert_eq!(r.body["total"], json!(want.len()), "Observation?{q}");
    }
    let bad = app.get("/fhir/Observation?value-quantity=high").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.outcome()[0].1.contains("value-quantity"));
    // Paging walks vital signs and results together, each once.
    let mut seen = Vec::new();
    let mut next = Some("/fhir/Observation?_count=2".to_owned());
    while let Some(url) = next.take() {
        let page = app.get(&url).await;
        seen.extend(TestApp::ids(&page.body));
        next = page.body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| {
                let u = l["url"].as_str().unwrap();
                u[u.find("/fhir/").unwrap()..].to_owned()
            });
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 8);
    assert_eq!(unique.len(), 8);
}

async fn a_vital_sign_that_breaks_its_profile_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let mut hr = vital("9279-1", json!(16), "/min", "2026-03-02T10:00:00Z");
    hr["meta"] = json!({"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]});
    let r = app.post("/fhir/Observation", &hr).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let issues = r.outcome();
    assert!(
        issues.iter().any(|(code, msg, at)| code == "required"
            && msg.contains("HeartRateCode")
            && at.as_deref() == Some("Observation.code.coding")),
        "{issues:?}"
    );
    assert_eq!(app.count("vital_signs").await, 0);
    assert_eq!(app.count("medical_test_results").await, 0);
    // $validate reports the same without writing; the right code passes.
    let v = app.post("/fhir/Observation/$validate", &hr).await;
    assert!(v.text.contains("HeartRateCode"), "{}", v.text);
    hr["code"]["coding"][0]["code"] = json!("8867-4");
    let ok = app.post("/fhir/Observation", &hr).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
}

/// Parses JSON text, keeping numbers as written.
fn raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

async fn numbers_come_back_as_written_or_are_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let at = "2026-01-05T08:00:00Z";
    // Kept exactly, in the results table and in the vital-signs columns alike.
    for (i, n) in [
        "1e2",
        "1.50E+1",
        "-0",
        "0.000000000000000000000000001",
        "-12.500",
    ]
    .iter()
    .enumerate()
    {
        let o = lab(
            &format!("n{i}"),
            "ana",
            "2339-0",
            raw(&format!(
                r#"{{"valueQuantity": {{"value": {n}, "unit": "mmol/L"}}}}"#
            )),
            at,
        );
        let back = round_trip(&app, &o, true).await;
        let sent = o["valueQuantity"]["value"].to_string();
        assert_eq!(back["valueQuantity"]["value"].to_string(), sent);
        assert_eq!(sent.contains(['e', 'E']), n.contains(['e', 'E']));
    }
    let row = app
        .db
        .fetch_optional(
            "SELECT value_quantity FROM medical_test_results WHERE fhir_id = 'n0'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(expediente::mapping::vital_data::same_number(
        &row.decimal("value_quantity").unwrap().unwrap(),
        "100"
    ));
    let mut w = vital("29463-7", raw("7.25e1"), "kg", at);
    w["id"] = json!("w");
    let back = round_trip(&app, &w, true).await;
    assert_eq!(
        back["valueQuantity"]["value"].to_string(),
        w["valueQuantity"]["value"].to_string()
    );
    assert!(back["valueQuantity"]["value"].to_string().contains('e'));
    let row = vital_row(&app, "w").await;
    assert!(expediente::mapping::vital_data::same_number(
        &row.decimal("body_weight").unwrap().unwrap(),
        "72.5"
    ));
    // Beyond what a decimal column holds, or not a number: refused, nothing written.
    let before = app.count("medical_test_results").await;
    let long = "1".repeat(1000);
    for n in ["1e999999", long.as_str()] {
        let o = lab(
            "big",
            "ana",
            "2339-0",
            raw(&format!(r#"{{"valueQuantity": {{"value": {n}}}}}"#)),
            at,
        );
        let r = app.put("/fhir/Observation/big", &o).await;
        assert!(r.status.is_client_error(), "{n}: {}", r.text);
        assert!(!r.outcome().is_empty());
    }
    assert_eq!(app.count("medical_test_results").await, before);
}

/// Vital signs of one session sent together in a transaction share one row; a second value of
/// a measurement the row already holds opens another; a session row written earlier (by the
/// clinic's application) takes the measurements it lacks.
async fn a_transaction_groups_its_vital_signs_by_session(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let at = "2026-03-02T10:00:00Z";
    let entry = |id: &str, resource: Value| {
        let mut r = resource;
        r["id"] = json!(id);
        json!({"resource": r, "request": {"method": "PUT", "url": format!("Observation/{id}")}})
    };
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry("bp", blood_pressure(120, 80, at)),
            entry("hr", vital("8867-4", json!(70), "/min", at)),
            entry("weight", vital("29463-7", json!(61.5), "kg", at)),
            entry("hr-again", vital("8867-4", json!(72), "/min", at)),
            entry("hr-later", vital("8867-4", json!(75), "/min", "2026-03-02T11:00:00Z")),
        ]
    });
    let r = app.post("/fhir", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.count("vital_signs").await, 3);
    let first = vital_row(&app, "bp").await;
    let first_id = first.uuid("id").unwrap();
    for id in ["hr", "weight"] {
        assert_eq!(
            vital_row(&app, id).await.uuid("id").unwrap(),
            first_id,
            "{id}"
        );
    }
    assert_eq!(first.decimal("heart_rate").unwrap().as_deref(), Some("70"));
    assert_eq!(
        first.decimal("body_weight").unwrap().as_deref(),
        Some("61.5")
    );
    let again = vital_row(&app, "hr-again").await;
    assert_ne!(again.uuid("id").unwrap(), first_id);
    assert_eq!(again.decimal("heart_rate").unwrap().as_deref(), Some("72"));
    assert_eq!(again.decimal("systolic_bp").unwrap(), None);
    let later = vital_row(&app, "hr-later").await;
    assert_eq!(later.decimal("heart_rate").unwrap().as_deref(), Some("75"));
    for (id, value) in [("hr", 70), ("hr-again", 72), ("hr-later", 75)] {
        let back = app.get(&format!("/fhir/Observation/{id}")).await;
        assert_eq!(back.body["valueQuantity"]["value"], value, "{id}");
    }

    // A second transaction of the same session: the height joins a row of the session (both
    // lack one), found in the database.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry("height", vital("8302-2", json!(170), "cm", at))]
    });
    let r = app.post("/fhir", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(app.count("vital_signs").await, 3);
    let height = vital_row(&app, "height").await;
    assert_eq!(
        height.decimal("body_height").unwrap().as_deref(),
        Some("170")
    );
    let hr = height.decimal("heart_rate").unwrap();
    assert!(matches!(hr.as_deref(), Some("70") | Some("72")), "{hr:?}");
}

on_both_engines!(
    a_transaction_groups_its_vital_signs_by_session,
    numbers_come_back_as_written_or_are_refused,
    a_vital_sign_that_breaks_its_profile_is_refused,
    every_example_and_synthea_observation_round_trips,
    vitals_written_with_sql_read_as_vital_sign_observations,
    a_posted_blood_pressure_fills_two_columns_and_writes_touch_one_measurement,
    results_keep_every_kind_of_value_in_its_column,
    search_parameters_return_exactly_the_matching_ids,
);

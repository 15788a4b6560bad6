//! DiagnosticReport over medical_tests.

mod common;

use common::{round_trip, stub, Engine, TestApp};
use expediente::store::Arg;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;

const EXAMPLES: &[&str] = &["102", "example-pgx", "f201", "pap", "ultrasound"];

/// The row id behind a logical id, read from the clinic's table.
async fn row_id(app: &TestApp, table: &str, fhir_id: &str) -> uuid::Uuid {
    app.db
        .fetch_optional(
            &format!("SELECT id FROM {table} WHERE fhir_id = ?"),
            &[fhir_id.into()],
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {table} row for {fhir_id}"))
        .uuid("id")
        .unwrap()
}

async fn every_example_and_synthea_report_round_trips(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for p in [
        "pat2",
        "899962",
        "f201",
        "b248b1b2-1686-4b94-9936-37d7a5f94b51",
        "example",
    ] {
        stub(&app, "Patient", p).await;
    }
    for dr in ["3ad0687e-f477-468c-afd5-fcc2bf897809", "example"] {
        stub(&app, "Practitioner", dr).await;
    }
    // The Observations the examples' results name (a subject is optional for a result).
    for o in ["bmd", "example-phenotype"] {
        let body =
            json!({"resourceType": "Observation", "id": o, "status": "final", "code": {"text": o}});
        round_trip(&app, &body, true).await;
    }
    for name in EXAMPLES {
        let sent = common::data(&format!("examples/DiagnosticReport-{name}.json"));
        round_trip(&app, &sent, false).await;
        round_trip(&app, &sent, true).await;
    }
    common::load_synthea_patients_and_encounters(&app).await;
    let all = common::data("synthea/diagnostic_reports.json");
    assert_eq!(all.as_array().unwrap().len(), 333);
    for d in all.as_array().unwrap() {
        let mut sent = d.clone();
        common::literal_practitioners(&mut sent);
        common::local_reference(&mut sent, "subject", "Patient");
        common::local_reference(&mut sent, "encounter", "Encounter");
        round_trip(&app, &sent, true).await;
    }
    let lab = app
        .db
        .fetch_optional("SELECT count(*) AS n FROM medical_tests WHERE category_code = 'LAB' AND consultation_id IS NOT NULL", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lab.bigint("n").unwrap(), 78);
}

async fn search_parameters_return_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    stub(&app, "Patient", "bruno").await;
    let report = |id: &str, who: &str, status: &str, cat: &str, code: &str, when: &str| {
        json!({
            "resourceType": "DiagnosticReport", "id": id, "status": status,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": cat}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{who}")},
            "effectiveDateTime": when, "issued": when
        })
    };
    for r in [
        report(
            "r1",
            "ana",
            "final",
            "LAB",
            "58410-2",
            "2026-01-10T08:00:00Z",
        ),
        report(
            "r2",
            "ana",
            "preliminary",
            "RAD",
            "24627-2",
            "2026-02-11T08:00:00Z",
        ),
        report(
            "r3",
            "bruno",
            "final",
            "LAB",
            "24323-8",
            "2025-12-01T08:00:00Z",
        ),
    ] {
        round_trip(&app, &r, true).await;
    }
    let cases: &[(&str, &[&str])] = &[
        ("patient=ana", &["r1", "r2"]),
        ("status=final", &["r1", "r3"]),
        ("category=LAB", &["r1", "r3"]),
        (
            "category=http://terminology.hl7.org/CodeSystem/v2-0074|RAD",
            &["r2"],
        ),
        ("code=http://loinc.org|24323-8", &["r3"]),
        ("date=2026-01", &["r1"]),
        ("issued=ge2026-01-01", &["r1", "r2"]),
        ("patient=ana&category=LAB", &["r1"]),
    ];
    for (q, want) in cases {
        let r = app.get(&format!("/fhir/DiagnosticReport?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "DiagnosticReport?{q}");
    }
}

async fn a_result_reference_must_name_an_observation_of_this_server(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let r = json!({"resourceType": "DiagnosticReport", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient/ana"},
        "result": [{"reference": "Observation/nope"}]});
    let res = app.post("/fhir/DiagnosticReport", &r).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.outcome()[0].2.as_deref(),
        Some("DiagnosticReport.result[0]")
    );
    assert_eq!(app.count("medical_tests").await, 0);
    let obs = json!({"resourceType": "Observation", "id": "nope", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": "Patient/ana"},
        "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}});
    round_trip(&app, &obs, true).await;
    let created = app.post("/fhir/DiagnosticReport", &r).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let found = app.get("/fhir/DiagnosticReport?patient=ana").await;
    assert_eq!(
        found.body["entry"][0]["resource"]["result"][0]["reference"],
        "Observation/nope"
    );
}

async fn presented_forms_are_the_files_of_the_medical_test(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    // "hello report" and "second file", base64.
    let report = json!({"resourceType": "DiagnosticReport", "id": "rep", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
    "subject": {"reference": "Patient/ana"},
    "presentedForm": [
        {"contentType": "text/plain", "data": "aGVsbG8gcmVwb3J0", "title": "Report"},
        {"contentType": "application/pdf", "url": "http://lab.example.org/reports/rep.pdf"},
        {"title": "Printed copy at the front desk"}
    ]});
    round_trip(&app, &report, true).await;
    let files = app
        .db
        .fetch_all(
            "SELECT f.file_name, f.content_type, f.size_bytes, f.sha256, f.storage_path, f.content, p.fhir_id AS patient \
             FROM file_attachments f JOIN medical_tests m ON m.id = f.medical_test_id JOIN patients p ON p.id = f.patient_id \
             WHERE m.fhir_id = 'rep' AND f.deleted_at IS NULL ORDER BY f.storage_path",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(files.len(), 2);
    let text = files
        .iter()
        .find(|f| f.text("storage_path").unwrap().is_none())
        .unwrap();
    assert_eq!(
        text.bytes("content").unwrap().as_deref(),
        Some(&b"hello report"[..])
    );
    assert_eq!(text.opt_int("size_bytes").unwrap(), Some(12));
    assert_eq!(text.text("file_name").unwrap().as_deref(), Some("Report"));
    assert_eq!(text.text("patient").unwrap().as_deref(), Some("ana"));
    // sha256sum of "hello report".
    assert_eq!(
        text.text("sha256").unwrap().as_deref(),
        Some("6dce0a4409fabc637beaa80f9a1d36e0528575f6201c4834d02f6ec7e421fd66")
    );
    let pdf = files
        .iter()
        .find(|f| f.text("storage_path").unwrap().is_some())
        .unwrap();
    assert_eq!(pdf.bytes("content").unwrap(), None);
    assert_eq!(
        pdf.text("content_type").unwrap().as_deref(),
        Some("application/pdf")
    );

    // The clinic attaches a file to the test directly: the report shows it, as a new version.
    let test_id = row_id(&app, "medical_tests", "rep").await;
    app.db
        .execute(
            "INSERT INTO file_attachments (id, medical_test_id, file_name, content_type, size_bytes, content) VALUES (?, ?, 'scan.txt', 'text/plain', 11, ?)",
            &[uuid::Uuid::new_v4().into(), test_id.into(), Arg::Bytes(Some(b"second file".to_vec()))],
        )
        .await
        .unwrap();
    let back = app.get("/fhir/DiagnosticReport/rep").await;
    assert_eq!(back.body["meta"]["versionId"], "2");
    let form = back.body["presentedForm"].as_array().unwrap();
    assert_eq!(form.len(), 4, "{}", back.text);
    assert_eq!(form[0]["title"], "Printed copy at the front desk");
    assert_eq!(form[1]["data"], "aGVsbG8gcmVwb3J0");
    assert_eq!(form[2]["url"], "http://lab.example.org/reports/rep.pdf");
    assert_eq!(
        form[3],
        json!({"contentType": "text/plain", "data": "c2Vjb25kIGZpbGU=", "size": 11, "title": "scan.txt"})
    );

    // A report written without the PDF no longer has it: its file is soft-deleted.
    let mut fewer = back.body.clone();
    fewer["presentedForm"] = json!([form[0], form[1], form[3]]);
    let r = app.put("/fhir/DiagnosticReport/rep", &fewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["presentedForm"], fewer["presentedForm"]);
    let live = app
        .db
        .fetch_optional(
            "SELECT count(*) AS n FROM file_attachments WHERE medical_test_id = ? AND deleted_at IS NULL",
            &[test_id.into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.bigint("n").unwrap(), 2);
    assert_eq!(app.count("file_attachments").await, 3);

    // Content that is not base64 is refused and nothing is written.
    let mut bad = fewer.clone();
    bad["presentedForm"] = json!([{"contentType": "text/plain", "data": "===="}]);
    let r = app.put("/fhir/DiagnosticReport/rep", &bad).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert!(
        r.outcome()[0]
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("presentedForm"),
        "{}",
        r.text
    );
    assert_eq!(app.count("file_attachments").await, 3);
}

async fn results_are_linked_to_the_medical_test(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let lab = |id: &str, code: &str, v: f64| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/ana"}, "effectiveDateTime": "2026-01-05T08:00:00Z",
            "valueQuantity": {"value": v, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}})
    };
    round_trip(&app, &lab("o1", "718-7", 13.1), true).await;
    round_trip(&app, &lab("o2", "1751-7", 4.2), true).await;
    let hr = json!({"resourceType": "Observation", "id": "hr", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/ana"}, "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
    round_trip(&app, &hr, true).await;
    let report = json!({"resourceType": "DiagnosticReport", "id": "rep", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient/ana"},
        "result": [{"reference": "Observation/o1", "display": "Hemoglobin"}, {"reference": "Observation/hr"}]});
    round_trip(&app, &report, true).await;
    let link = |id: &'static str| {
        let app = &app;
        async move {
            app.db
                .fetch_optional(
                    "SELECT m.fhir_id AS report FROM medical_test_results r LEFT JOIN medical_tests m ON m.id = r.medical_test_id WHERE r.fhir_id = ?",
                    &[id.into()],
                )
                .await
                .unwrap()
                .unwrap()
                .text("report")
                .unwrap()
        }
    };
    assert_eq!(link("o1").await.as_deref(), Some("rep"));
    assert_eq!(link("o2").await, None);
    // Linking is not a change of the Observation.
    let o1 = app.get("/fhir/Observation/o1").await;
    assert_eq!(o1.body["meta"]["versionId"], "1");

    // The clinic links another result to the test: the report lists it, as a new version.
    let rep_row = row_id(&app, "medical_tests", "rep").await;
    app.db
        .execute(
            "UPDATE medical_test_results SET medical_test_id = ? WHERE fhir_id = 'o2'",
            &[rep_row.into()],
        )
        .await
        .unwrap();
    let back = app.get("/fhir/DiagnosticReport/rep").await;
    assert_eq!(back.body["meta"]["versionId"], "2");
    assert_eq!(
        back.body["result"],
        json!([{"reference": "Observation/o1", "display": "Hemoglobin"}, {"reference": "Observation/hr"}, {"reference": "Observation/o2"}])
    );
    // And unlinks the first: it leaves the list; the vital sign stays as sent.
    app.db
        .execute(
            "UPDATE medical_test_results SET medical_test_id = NULL WHERE fhir_id = 'o1'",
            &[],
        )
        .await
        .unwrap();
    let back = app.get("/fhir/DiagnosticReport/rep").await;
    assert_eq!(back.body["meta"]["versionId"], "3");
    assert_eq!(
        back.body["result"],
        json!([{"reference": "Observation/hr"}, {"reference": "Observation/o2"}])
    );
    // A FHIR update names o1 again: o1 is linked, o2 no longer.
    round_trip(&app, &report, true).await;
    assert_eq!(link("o1").await.as_deref(), Some("rep"));
    assert_eq!(link("o2").await, None);
    // The result parameter finds the report by any Observation it names.
    for (q, want) in [
        ("result=o1", vec!["rep"]),
        ("result=Observation/hr", vec!["rep"]),
        ("result=o2", vec![]),
        ("result=Patient/o1", vec![]),
    ] {
        let r = app.get(&format!("/fhir/DiagnosticReport?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        assert_eq!(TestApp::ids(&r.body), want, "{q}");
    }
    // The clinic inserts a new result already linked to the test: the report lists it, as a new
    // version (the trigger that FHIR transactions linking their own new results skip still
    // touches the report for writes from elsewhere).
    let before = app.get("/fhir/DiagnosticReport/rep").await;
    let version: u64 = before.body["meta"]["versionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ana = row_id(&app, "patients", "ana").await;
    app.db
        .execute(
            "INSERT INTO medical_test_results (id, fhir_id, patient_id, medical_test_id, code, code_system) VALUES (?, 'o3', ?, ?, '2345-7', 'http://loinc.org')",
            &[uuid::Uuid::new_v4().into(), ana.into(), rep_row.into()],
        )
        .await
        .unwrap();
    let after = app.get("/fhir/DiagnosticReport/rep").await;
    assert_eq!(
        after.body["meta"]["versionId"],
        (version + 1).to_string(),
        "{}",
        after.text
    );
    assert!(
        after.body["result"]
            .as_array()
            .unwrap()
            .contains(&json!({"reference": "Observation/o3"})),
        "{}",
        after.text
    );
}

async fn a_report_without_a_code_the_clinic_can_keep_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    stub(&app, "Patient", "ana").await;
    let r = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Blood panel"}, "subject": {"reference": "Patient/ana"}});
    let res = app.post("/fhir/DiagnosticReport", &r).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.outcome()[0].2.as_deref(), Some("DiagnosticReport.code"));
    assert_eq!(app.count("medical_tests").await, 0);
}

on_both_engines!(
    every_example_and_synthea_report_round_trips,
    search_parameters_return_exactly_the_matching_ids,
    a_report_without_a_code_the_clinic_can_keep_is_refused,
    a_result_reference_must_name_an_observation_of_this_server,
    presented_forms_are_the_files_of_the_medical_test,
    results_are_linked_to_the_medical_test,
);

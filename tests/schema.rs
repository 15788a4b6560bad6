//! The clinic schema itself, straight through the store: common columns, the touch triggers,
//! CHECK / foreign key / unique constraints, the append-only audit trail, soft delete and
//! idempotent migrations, on both engines.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{Engine, TestApp};
use expediente::mapping::guard;
use expediente::store::{Arg, Conn, StoreError, TxReads};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Every table that carries id, version_id, created_at, updated_at, deleted_at and fhir_extra
/// (and a <table>_touch trigger), in both migrations.
const CLINICAL_TABLES: [&str; 18] = [
    "roles",
    "specialties",
    "users",
    "patients",
    "patient_identifiers",
    "patient_contacts",
    "medical_histories",
    "allergies",
    "patient_allergies",
    "consultations",
    "vital_signs",
    "medications",
    "prescriptions",
    "medical_tests",
    "medical_test_results",
    "file_attachments",
    "custom_fields",
    "custom_field_values",
];

/// Runs a statement that must succeed, naming it when it does not.
async fn exec(app: &TestApp, sql: &str, args: &[Arg]) -> u64 {
    app.db
        .execute(sql, args)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Inserts a row with a new id and the given columns; returns the id.
async fn insert(app: &TestApp, table: &str, columns: &str, values: &[Arg]) -> Uuid {
    let id = Uuid::new_v4();
    let placeholders = vec!["?"; values.len() + 1].join(", ");
    let sql = format!("INSERT INTO {table} (id, {columns}) VALUES ({placeholders})");
    let mut args = vec![Arg::Uuid(id)];
    args.extend_from_slice(values);
    exec(app, &sql, &args).await;
    id
}

/// The number of rows of `table` matching `filter` (a WHERE clause with `?` placeholders).
async fn count_where(app: &TestApp, table: &str, filter: &str, args: &[Arg]) -> i64 {
    let sql = format!("SELECT count(*) AS n FROM {table} WHERE {filter}");
    app.db
        .fetch_optional(&sql, args)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a count row")
        .bigint("n")
        .expect("n")
}

/// The id of one of the seeded roles.
async fn role_id(app: &TestApp, name: &str) -> Uuid {
    app.db
        .fetch_optional("SELECT id FROM roles WHERE name = ?", &[name.into()])
        .await
        .expect("select role")
        .unwrap_or_else(|| panic!("the {name} role is seeded"))
        .uuid("id")
        .expect("id")
}

/// Inserts a bare patient and returns its row id.
async fn insert_patient(app: &TestApp, fhir_id: &str) -> Uuid {
    let id = Uuid::new_v4();
    exec(
        app,
        "INSERT INTO patients (id, fhir_id) VALUES (?, ?)",
        &[id.into(), fhir_id.into()],
    )
    .await;
    id
}

/// (version_id, created_at, updated_at) of one row.
async fn stamps(app: &TestApp, table: &str, id: Uuid) -> (i64, DateTime<Utc>, DateTime<Utc>) {
    let sql = format!("SELECT version_id, created_at, updated_at FROM {table} WHERE id = ?");
    let row = app
        .db
        .fetch_optional(&sql, &[id.into()])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{table} row {id} exists"));
    (
        row.int("version_id").expect("version_id"),
        row.timestamp("created_at").expect("created_at"),
        row.timestamp("updated_at").expect("updated_at"),
    )
}

async fn every_clinical_table_has_the_common_columns(engine: Engine) {
    let app = TestApp::spawn(engine).await;

    for table in CLINICAL_TABLES {
        let sql = format!(
            "SELECT id, version_id, created_at, updated_at, deleted_at, fhir_extra FROM {table} WHERE 1 = 0"
        );
        let rows = app
            .db
            .fetch_all(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{table} lacks a common column: {e}"));
        assert!(rows.is_empty(), "{table}: WHERE 1 = 0 returns no row");
    }
    for table in ["resource_versions", "audit_logs"] {
        let rows = app
            .db
            .fetch_all(&format!("SELECT * FROM {table} WHERE 1 = 0"), &[])
            .await
            .unwrap_or_else(|e| panic!("{table} does not exist: {e}"));
        assert!(rows.is_empty(), "{table}: WHERE 1 = 0 returns no row");
    }
    // The probe does fail on a missing column or table, so the loops above prove something.
    assert!(app
        .db
        .fetch_all("SELECT no_such_column FROM patients WHERE 1 = 0", &[])
        .await
        .is_err());
    assert!(app
        .db
        .fetch_all("SELECT id FROM no_such_table WHERE 1 = 0", &[])
        .await
        .is_err());
}

/// Inserts one minimal valid row into every clinical table (foreign keys satisfied: a doctor
/// user, a patient, a consultation, a medical test, catalog entries, a custom field...) and
/// returns (table, id) in the order of [`CLINICAL_TABLES`].
async fn one_row_in_every_clinical_table(app: &TestApp) -> Vec<(&'static str, Uuid)> {
    let doctor_role = role_id(app, "physician").await;
    let mut rows: Vec<(&'static str, Uuid)> = Vec::new();

    let role = insert(
        app,
        "roles",
        "name, description",
        &["lab-technician".into(), "Laboratory".into()],
    )
    .await;
    rows.push(("roles", role));

    let specialty = insert(
        app,
        "specialties",
        "code, name",
        &["394579002".into(), "Cardiology".into()],
    )
    .await;
    rows.push(("specialties", specialty));

    let user = insert(
        app,
        "users",
        "fhir_id_given, email, role_id, specialty_id, first_name, last_name",
        &[
            "dr-ana".into(),
            "ana@example.org".into(),
            doctor_role.into(),
            specialty.into(),
            "Ana".into(),
            "López".into(),
        ],
    )
    .await;
    rows.push(("users", user));

    let patient = insert(
        app,
        "patients",
        "fhir_id, last_name, gender, general_practitioner_id",
        &["pat-1".into(), "Pérez".into(), "female".into(), user.into()],
    )
    .await;
    rows.push(("patients", patient));

    let identifier = insert(
        app,
        "patient_identifiers",
        "patient_id, position, system, value",
        &[
            patient.into(),
            0i64.into(),
            "urn:oid:2.16.840.1.113883.4.629".into(),
            "PEPA800101MDFRRN09".into(),
        ],
    )
    .await;
    rows.push(("patient_identifiers", identifier));

    let contact = insert(
        app,
        "patient_contacts",
        "patient_id, position, first_name",
        &[patient.into(), 0i64.into(), "Luis".into()],
    )
    .await;
    rows.push(("patient_contacts", contact));

    let history = insert(
        app,
        "medical_histories",
        "fhir_id, patient_id, condition_code, recorded_by",
        &[
            "cond-1".into(),
            patient.into(),
            "44054006".into(),
            user.into(),
        ],
    )
    .await;
    rows.push(("medical_histories", history));

    let allergy = insert(
        app,
        "allergies",
        "code, display, category",
        &[
            "penicillin".into(),
            "Penicillin".into(),
            "medication".into(),
        ],
    )
    .await;
    rows.push(("allergies", allergy));

    let patient_allergy = insert(
        app,
        "patient_allergies",
        "fhir_id, patient_id, allergy_id, recorder_id, criticality",
        &[
            "alg-1".into(),
            patient.into(),
            allergy.into(),
            user.into(),
            "high".into(),
        ],
    )
    .await;
    rows.push(("patient_allergies", patient_allergy));

    let consultation = insert(
        app,
        "consultations",
        "fhir_id, patient_id, doctor_id, specialty_id",
        &[
            "enc-1".into(),
            patient.into(),
            user.into(),
            specialty.into(),
        ],
    )
    .await;
    rows.push(("consultations", consultation));

    let vitals = insert(
        app,
        "vital_signs",
        "patient_id, consultation_id, performer_id",
        &[patient.into(), consultation.into(), user.into()],
    )
    .await;
    rows.push(("vital_signs", vitals));

    let medication = insert(
        app,
        "medications",
        "code, system, display",
        &[
            "723".into(),
            "http://www.nlm.nih.gov/research/umls/rxnorm".into(),
            "amoxicillin".into(),
        ],
    )
    .await;
    rows.push(("medications", medication));

    let prescription = insert(
        app,
        "prescriptions",
        "fhir_id, patient_id, consultation_id, prescriber_id, medication_id",
        &[
            "rx-1".into(),
            patient.into(),
            consultation.into(),
            user.into(),
            medication.into(),
        ],
    )
    .await;
    rows.push(("prescriptions", prescription));

    let test = insert(
        app,
        "medical_tests",
        "fhir_id, patient_id, consultation_id, ordered_by, code",
        &[
            "dr-1".into(),
            patient.into(),
            consultation.into(),
            user.into(),
            "58410-2".into(),
        ],
    )
    .await;
    rows.push(("medical_tests", test));

    let result = insert(
        app,
        "medical_test_results",
        "fhir_id, medical_test_id, patient_id, code_display",
        &[
            "obs-1".into(),
            test.into(),
            patient.into(),
            "Hemoglobin".into(),
        ],
    )
    .await;
    rows.push(("medical_test_results", result));

    let attachment = insert(
        app,
        "file_attachments",
        "patient_id, medical_test_id, file_name, storage_path, uploaded_by",
        &[
            patient.into(),
            test.into(),
            "cbc.pdf".into(),
            "files/cbc.pdf".into(),
            user.into(),
        ],
    )
    .await;
    rows.push(("file_attachments", attachment));

    let field = insert(
        app,
        "custom_fields",
        "entity_type, field_key, field_type",
        &["Patient".into(), "blood_type".into(), "text".into()],
    )
    .await;
    rows.push(("custom_fields", field));

    let value = insert(
        app,
        "custom_field_values",
        "custom_field_id, entity_type, entity_id, value_text",
        &[field.into(), "Patient".into(), patient.into(), "O+".into()],
    )
    .await;
    rows.push(("custom_field_values", value));

    let covered: Vec<&str> = rows.iter().map(|(t, _)| *t).collect();
    assert_eq!(covered, CLINICAL_TABLES, "one row in every clinical table");
    rows
}

async fn a_direct_update_bumps_version_and_updated_at_on_every_clinical_table(engine: Engine) {
    // Arrange: one minimal valid row in every clinical table.
    let app = TestApp::spawn(engine).await;
    let rows = one_row_in_every_clinical_table(&app).await;

    let forged = Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 6).unwrap();
    for (table, id) in rows {
        let (v1, _, _) = stamps(&app, table, id).await;
        // The patient's identifier, contact and custom field value rows, inserted after it by
        // the clinic, each made a new version of the Patient.
        // Likewise the result and the file linked to the medical test made new versions of its
        // DiagnosticReport.
        let expected = match table {
            "patients" => 4,
            "medical_tests" => 3,
            _ => 1,
        };
        assert_eq!(v1, expected, "{table}: a new row is version 1");

        // A harmless direct write, as the clinic application would do it.
        let set_extra = format!("UPDATE {table} SET fhir_extra = ? WHERE id = ?");
        write_is_one_version(
            &app,
            table,
            id,
            &set_extra,
            &[Arg::Json(json!({"touched": table})), id.into()],
        )
        .await;
        // Writes that try to back-date created_at or updated_at.
        let back_created = format!("UPDATE {table} SET created_at = ? WHERE id = ?");
        write_is_one_version(&app, table, id, &back_created, &[forged.into(), id.into()]).await;
        let back_updated = format!("UPDATE {table} SET updated_at = ? WHERE id = ?");
        write_is_one_version(&app, table, id, &back_updated, &[forged.into(), id.into()]).await;
    }
}

/// Runs a direct UPDATE of one row and asserts the triggers made it exactly one new version:
/// version_id up by one, updated_at later, created_at unchanged.
async fn write_is_one_version(app: &TestApp, table: &str, id: Uuid, sql: &str, args: &[Arg]) {
    let (v1, created1, updated1) = stamps(app, table, id).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        exec(app, sql, args).await,
        1,
        "{table}: one row updated by {sql}"
    );
    let (v2, created2, updated2) = stamps(app, table, id).await;
    assert_eq!(v2, v1 + 1, "{table}: {sql} makes exactly one new version");
    assert!(
        updated2 > updated1,
        "{table}: {sql} moves updated_at forward ({updated1} -> {updated2})"
    );
    assert_eq!(created2, created1, "{table}: {sql} keeps created_at");
}

async fn an_update_that_sets_version_id_itself_still_bumps_once_and_keeps_created_at(
    engine: Engine,
) {
    // Arrange: one minimal valid row in every clinical table.
    let app = TestApp::spawn(engine).await;
    let rows = one_row_in_every_clinical_table(&app).await;

    let forged = Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 6).unwrap();
    for (table, id) in rows {
        let (v1, _, _) = stamps(&app, table, id).await;
        // An optimistic-locking write, as a clinic application may do it.
        let locked = format!(
            "UPDATE {table} SET fhir_extra = ?, version_id = version_id + 1 WHERE id = ? AND version_id = ?"
        );
        write_is_one_version(
            &app,
            table,
            id,
            &locked,
            &[Arg::Json(json!({"locked": table})), id.into(), v1.into()],
        )
        .await;
        // A write that rewinds version_id and back-dates created_at.
        let rewind = format!("UPDATE {table} SET created_at = ?, version_id = 1 WHERE id = ?");
        write_is_one_version(&app, table, id, &rewind, &[forged.into(), id.into()]).await;
    }
}

/// Inserts one row into `table` with `column` set to `value` (plus the columns the table
/// requires: id, a fresh fhir_id unless `column` is fhir_id, and patient_id).
async fn insert_with(
    app: &TestApp,
    table: &str,
    patient: Uuid,
    column: &str,
    value: &str,
) -> Result<u64, StoreError> {
    let mut cols = vec!["id"];
    let mut args: Vec<Arg> = vec![Uuid::new_v4().into()];
    if column != "fhir_id" {
        cols.push("fhir_id");
        args.push(Uuid::new_v4().simple().to_string().into());
    }
    if table != "patients" {
        cols.push("patient_id");
        args.push(patient.into());
    }
    cols.push(column);
    args.push(value.into());
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        cols.join(", "),
        vec!["?"; cols.len()].join(", ")
    );
    app.db.execute(&sql, &args).await
}

async fn check_constraints_reject_bad_codes(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patient = insert_patient(&app, "owner").await;
    let long_id = "a".repeat(65);
    let longest_id = "b".repeat(64);
    // (table, column, a value the CHECK refuses, a value it accepts)
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("patients", "gender", "robot", "unknown"),
        ("patients", "marital_status", "Z", "M"),
        ("patients", "birth_date_precision", "week", "year"),
        ("patients", "fhir_id", "../x", "x.y-1"),
        ("patients", "fhir_id", long_id.as_str(), longest_id.as_str()),
        ("patients", "fhir_id", "", "Z9"),
        ("patients", "fhir_id", "a b", "a-b"),
        ("patients", "fhir_id", "ñandú", "nandu"),
        ("consultations", "status", "bogus", "finished"),
        ("consultations", "class_code", "amb", "EMER"),
        ("consultations", "fhir_id", "enc/1", "enc-1"),
        ("prescriptions", "intent", "wish", "plan"),
        ("prescriptions", "status", "paused", "on-hold"),
        (
            "patient_allergies",
            "criticality",
            "extreme",
            "unable-to-assess",
        ),
        ("patient_allergies", "type", "dislike", "intolerance"),
    ];

    for (table, column, bad, good) in cases {
        // Arrange
        let before = app.count(table).await;

        // Act
        let refused = insert_with(&app, table, patient, column, bad).await;

        // Assert
        assert!(
            matches!(refused, Err(StoreError::Check(_))),
            "{table}.{column} = {bad:?} is refused by a CHECK, got {refused:?}"
        );
        assert_eq!(app.count(table).await, before, "{table}: nothing inserted");

        // The same insert with a valid value goes through: the CHECK on the value refused it.
        let accepted = insert_with(&app, table, patient, column, good).await;
        assert!(
            matches!(accepted, Ok(1)),
            "{table}.{column} = {good:?} is accepted, got {accepted:?}"
        );
        assert_eq!(
            app.count(table).await,
            before + 1,
            "{table}: one row inserted"
        );
    }
}

async fn foreign_keys_and_unique_fhir_ids_are_enforced(engine: Engine) {
    // Arrange
    let app = TestApp::spawn(engine).await;
    let patient = insert_patient(&app, "pat-1").await;
    let consultation_sql = "INSERT INTO consultations (id, fhir_id, patient_id) VALUES (?, ?, ?)";

    // Act: a consultation of a patient that does not exist.
    let orphan = app
        .db
        .execute(
            consultation_sql,
            &[
                Uuid::new_v4().into(),
                "enc-orphan".into(),
                Uuid::new_v4().into(),
            ],
        )
        .await;

    // Assert
    assert!(
        matches!(orphan, Err(StoreError::ForeignKey)),
        "a consultation of an unknown patient is refused, got {orphan:?}"
    );
    assert_eq!(app.count("consultations").await, 0);

    // A user with an unknown role is refused too.
    let roleless = app
        .db
        .execute(
            "INSERT INTO users (id, fhir_id_given, role_id) VALUES (?, ?, ?)",
            &[Uuid::new_v4().into(), "dr-x".into(), Uuid::new_v4().into()],
        )
        .await;
    assert!(
        matches!(roleless, Err(StoreError::ForeignKey)),
        "a user with an unknown role is refused, got {roleless:?}"
    );
    assert_eq!(app.count("users").await, 0);

    // The same consultation of the real patient is accepted...
    let consultation = Uuid::new_v4();
    exec(
        &app,
        consultation_sql,
        &[consultation.into(), "enc-1".into(), patient.into()],
    )
    .await;
    assert_eq!(app.count("consultations").await, 1);

    // ...and then the patient cannot be hard-deleted under it (NO ACTION).
    let hard_delete = app
        .db
        .execute("DELETE FROM patients WHERE id = ?", &[patient.into()])
        .await;
    assert!(
        matches!(hard_delete, Err(StoreError::ForeignKey)),
        "a patient with consultations cannot be hard-deleted, got {hard_delete:?}"
    );
    assert_eq!(app.count("patients").await, 1);

    // Act: a second patient with the same FHIR id.
    let duplicate = app
        .db
        .execute(
            "INSERT INTO patients (id, fhir_id) VALUES (?, ?)",
            &[Uuid::new_v4().into(), "pat-1".into()],
        )
        .await;

    // Assert
    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "a duplicate patient fhir_id is refused, got {duplicate:?}"
    );
    assert_eq!(app.count("patients").await, 1);

    // And the same for consultations.
    let duplicate = app
        .db
        .execute(
            consultation_sql,
            &[Uuid::new_v4().into(), "enc-1".into(), patient.into()],
        )
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "a duplicate consultation fhir_id is refused, got {duplicate:?}"
    );
    assert_eq!(app.count("consultations").await, 1);
}

async fn audit_logs_are_append_only(engine: Engine) {
    // Arrange: a write, and its audit row.
    let app = TestApp::spawn(engine).await;
    let created = app.create(&json!({"resourceType": "Patient"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.count("audit_logs").await, 1);

    // Act
    let update = app
        .db
        .execute(
            "UPDATE audit_logs SET action = ?, outcome = ? WHERE seq = 1",
            &["delete".into(), "major-failure".into()],
        )
        .await;
    let delete = app.db.execute("DELETE FROM audit_logs", &[]).await;

    // Assert
    for (what, outcome) in [("UPDATE", update), ("DELETE", delete)] {
        match outcome {
            Err(e) => assert!(
                e.to_string().contains("append-only"),
                "{what} is refused by the append-only trigger, got: {e}"
            ),
            Ok(n) => panic!("{what} on the audit trail succeeded ({n} rows)"),
        }
    }
    let row = app
        .db
        .fetch_optional(
            "SELECT action, outcome, resource_id FROM audit_logs WHERE seq = 1",
            &[],
        )
        .await
        .expect("select")
        .expect("the entry is still there");
    assert_eq!(row.string("action").unwrap(), "create");
    assert_eq!(row.string("outcome").unwrap(), "success");
    assert_eq!(row.string("resource_id").unwrap(), id);

    // A row the clinic's application inserts joins the chain (through the inbox), its
    // details kept.
    exec(
        &app,
        "INSERT INTO audit_logs (id, action, details) VALUES (?, ?, ?)",
        &[
            Uuid::new_v4().into(),
            "search".into(),
            Arg::Json(json!({"query": "_id=pat-1"})),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let chained = || async {
        app.db
            .fetch_optional("SELECT seq FROM audit_logs WHERE seq = 2", &[])
            .await
            .unwrap()
            .is_some()
    };
    while !chained().await {
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let row = app
        .db
        .fetch_optional("SELECT category, event FROM audit_logs WHERE seq = 2", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.string("category").unwrap(), "clinic");
    let event: serde_json::Value = serde_json::from_str(&row.string("event").unwrap()).unwrap();
    assert_eq!(event["action"], "search");
    assert_eq!(event["changes"], json!({"query": "_id=pat-1"}));

    // The patients of an event about several are rows of their own, append-only as well.
    let several = expediente::audit::Event {
        time: "2026-12-06T10:00:00.000Z".into(),
        category: "rest".into(),
        action: "search-type".into(),
        outcome: "success".into(),
        patients: vec![id.clone(), "another".into()],
        ..Default::default()
    };
    let mut tx = app.db.begin().await.unwrap();
    expediente::audit::chain::append(&mut tx, &[several])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app.count("audit_log_patients").await, 2);
    for sql in [
        "DELETE FROM audit_log_patients",
        "UPDATE audit_log_patients SET patient = 'x'",
    ] {
        let e = app.db.execute(sql, &[]).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(app.count("audit_log_patients").await, 2);
}

async fn soft_deleted_rows_stay_in_the_table(engine: Engine) {
    // Arrange
    let app = TestApp::spawn(engine).await;
    let created = app
        .create(&json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:oid:2.16.840.1.113883.4.629", "value": "PEPA800101MDFRRN09"},
                {"system": "urn:example:mrn", "value": "MRN-0042"}
            ],
            "name": [{"family": "Pérez", "given": ["Ana"]}],
            "gender": "female",
            "birthDate": "1980-01-01",
            "contact": [{
                "name": {"family": "Pérez", "given": ["Luis"]},
                "telecom": [{"system": "phone", "value": "+52 55 1234 5678"}]
            }]
        }))
        .await;
    let fhir_id = created["id"].as_str().expect("id").to_owned();
    let row = app
        .db
        .fetch_optional(
            "SELECT id, deleted_at FROM patients WHERE fhir_id = ?",
            &[fhir_id.as_str().into()],
        )
        .await
        .expect("select")
        .expect("the patient row");
    let patient = row.uuid("id").unwrap();
    assert!(row.opt_timestamp("deleted_at").unwrap().is_none());
    let by_patient = [Arg::from(patient)];
    assert_eq!(
        count_where(&app, "patient_identifiers", "patient_id = ?", &by_patient).await,
        2
    );
    assert_eq!(
        count_where(&app, "patient_contacts", "patient_id = ?", &by_patient).await,
        1
    );

    // Act
    let deleted = app.delete(&format!("/fhir/Patient/{fhir_id}")).await;

    // Assert
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let row = app
        .db
        .fetch_optional(
            "SELECT fhir_id, version_id, deleted_at FROM patients WHERE id = ?",
            &[patient.into()],
        )
        .await
        .expect("select")
        .expect("the deleted patient's row is still in the table");
    assert_eq!(row.string("fhir_id").unwrap(), fhir_id);
    assert_eq!(row.int("version_id").unwrap(), 2);
    let deleted_at = row
        .opt_timestamp("deleted_at")
        .unwrap()
        .expect("deleted_at is set");
    assert!(
        (Utc::now() - deleted_at).num_seconds().abs() < 60,
        "{deleted_at}"
    );
    assert_eq!(app.count("patients").await, 1);
    assert_eq!(
        count_where(&app, "patient_identifiers", "patient_id = ?", &by_patient).await,
        2
    );
    assert_eq!(
        count_where(&app, "patient_contacts", "patient_id = ?", &by_patient).await,
        1
    );
    assert_eq!(
        app.get(&format!("/fhir/Patient/{fhir_id}")).await.status,
        StatusCode::GONE
    );
}

async fn migrate_is_idempotent(engine: Engine) {
    // Arrange: the harness has migrated the fresh database once.
    let app = TestApp::spawn(engine).await;
    let roles = app.count("roles").await;

    // Act
    let again = app.db.migrate().await;
    let and_again = app.db.migrate().await;

    // Assert
    assert!(again.is_ok(), "a second migrate succeeds: {again:?}");
    assert!(and_again.is_ok(), "a third migrate succeeds: {and_again:?}");
    // Two servers starting together write the vital-sign codes without colliding.
    let (a, b) = tokio::join!(expediente::prepare(&app.db), expediente::prepare(&app.db));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(app.count("vital_sign_codes").await, 11);
    let folder = match engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    let files = std::fs::read_dir(format!(
        "{}/migrations/{folder}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .count();
    assert_eq!(app.count("_sqlx_migrations").await as usize, files);
    let applied: Vec<(i64, bool)> = app
        .db
        .fetch_all(
            "SELECT version, success FROM _sqlx_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("select migrations")
        .iter()
        .map(|r| {
            (
                r.bigint("version").unwrap(),
                r.bool("success").unwrap().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(i64, bool)> = (1..=files as i64).map(|v| (v, true)).collect();
    assert_eq!(
        applied, expected,
        "each migration once, in order, every one a success"
    );
    assert_eq!(roles, 6, "the six roles are seeded");
    assert_eq!(
        app.count("roles").await,
        roles,
        "the seed rows are not inserted again"
    );
}

/// The statistics rows of `index` (SQLite).
async fn index_stats(app: &TestApp, index: &str) -> i64 {
    count_where(app, "sqlite_stat1", "idx = ?", &[index.into()]).await
}

/// SQLite: an index a migration makes again (dropped and created) loses its statistics; when
/// the database has statistics, migrating gives it its own again, and a database never
/// analyzed stays without.
#[tokio::test]
async fn sqlite_indexes_made_again_by_a_migration_get_statistics_again() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let analyzed = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.fetch_optional(
                "SELECT 1 AS x FROM sqlite_master WHERE name = 'sqlite_stat1'",
                &[],
            )
            .await
            .unwrap()
            .is_some()
        }
    };
    let named = json!({"resourceType": "Patient", "id": "stats", "name": [{"family": "Stat"}]});
    assert_eq!(
        app.put("/fhir/Patient/stats", &named).await.status,
        StatusCode::CREATED
    );
    app.db.migrate().await.unwrap();
    assert!(!analyzed(&app).await, "a database never analyzed stays so");

    app.db.execute("ANALYZE", &[]).await.unwrap();
    let index = "search_strings_lookup_idx";
    assert_eq!(index_stats(&app, index).await, 1);
    // What a migration's DROP INDEX and CREATE INDEX leave.
    app.db
        .execute("DELETE FROM sqlite_stat1 WHERE idx = ?", &[index.into()])
        .await
        .unwrap();
    assert_eq!(index_stats(&app, index).await, 0);
    app.db.migrate().await.unwrap();
    assert_eq!(index_stats(&app, index).await, 1);
}

/// SQLite is built without STAT4 (.cargo/config.toml): ANALYZE keeps no samples, so that no
/// statement is prepared again each time a value bound to it might change its plan.
#[tokio::test]
async fn sqlite_keeps_no_stat4_samples() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let db = &app.db;
    let stat4 = db
        .fetch_all(
            "SELECT compile_options FROM pragma_compile_options \
             WHERE compile_options LIKE 'ENABLE_STAT%'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        stat4.is_empty(),
        "built with {:?}",
        stat4[0].string("compile_options")
    );
    db.execute("ANALYZE", &[]).await.unwrap();
    let tables = db
        .fetch_all(
            "SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%' ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.string("name").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(tables, ["sqlite_stat1"]);
}

/// SQLite: a read connection loads the planner's statistics with the schema. One that read
/// the migrated schema before the new index had statistics (migrating reads the schema to find
/// such indexes) must not go on planning without them: at 10,000 patients that made a search
/// 25 times slower until the server restarted. After migrating, reads plan with the statistics.
#[tokio::test]
async fn sqlite_reads_plan_with_the_statistics_a_migration_takes() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let db = &app.db;
    // Five rows to each `a`, one to each `b`: with statistics for both indexes, a lookup of
    // both is planned through the index of `b`; without those of `b`, through the one of `a`.
    db.execute("CREATE TABLE plan_probe (a INTEGER, b INTEGER)", &[])
        .await
        .unwrap();
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 999) \
         INSERT INTO plan_probe SELECT i / 5, i FROM n",
        &[],
    )
    .await
    .unwrap();
    db.execute("CREATE INDEX plan_probe_a ON plan_probe (a)", &[])
        .await
        .unwrap();
    db.execute("ANALYZE", &[]).await.unwrap();
    let plan = || async {
        let rows = db
            .fetch_all(
                "EXPLAIN QUERY PLAN SELECT * FROM plan_probe WHERE a = 7 AND b = 35",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.string("detail").unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(plan().await.contains("plan_probe_a"), "{}", plan().await);
    // What a migration leaves: an index without statistics, which reads then see.
    db.execute("CREATE INDEX plan_probe_b ON plan_probe (b)", &[])
        .await
        .unwrap();
    assert!(plan().await.contains("plan_probe_a"), "{}", plan().await);
    db.migrate().await.unwrap();
    assert_eq!(index_stats(&app, "plan_probe_b").await, 1);
    assert!(plan().await.contains("plan_probe_b"), "{}", plan().await);
}

async fn guarded(tx: &mut expediente::store::Tx, id: Uuid) -> i64 {
    tx.fetch_optional(
        "SELECT count(*) AS n FROM fhir_write_guard WHERE row_id = ?",
        &[id.into()],
    )
    .await
    .unwrap()
    .unwrap()
    .bigint("n")
    .unwrap()
}

/// A FHIR write marks the rows it rewrites while it rewrites them, so that the triggers of their
/// child tables leave them alone; a direct change of a child row still makes a version.
async fn the_write_guard_lasts_one_transaction(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patient = insert_patient(&app, "guarded").await;
    let other = insert_patient(&app, "unguarded").await;
    let (v0, _, _) = stamps(&app, "patients", patient).await;
    let mut tx = app.db.begin().await.unwrap();
    guard::guard(&mut tx, patient).await.unwrap();
    guard::guard(&mut tx, other).await.unwrap();
    assert_eq!(guarded(&mut tx, patient).await, 1);
    guard::unguard(&mut tx, other).await.unwrap();
    assert_eq!(guarded(&mut tx, other).await, 0);
    assert_eq!(guarded(&mut tx, patient).await, 1);
    tx.execute(
        "INSERT INTO patient_contacts (patient_id, position, first_name) VALUES (?, 0, ?)",
        &[patient.into(), "Guarded".into()],
    )
    .await
    .unwrap();
    guard::unguard(&mut tx, patient).await.unwrap();
    tx.commit().await.unwrap();
    let (v1, _, _) = stamps(&app, "patients", patient).await;
    assert_eq!(v1, v0, "a guarded row is not touched by its children");
    let mut tx = app.db.begin().await.unwrap();
    assert_eq!(
        guarded(&mut tx, patient).await,
        0,
        "no mark outlives its write"
    );
    drop(tx);
    exec(
        &app,
        "INSERT INTO patient_contacts (patient_id, position, first_name) VALUES (?, 0, ?)",
        &[patient.into(), "Direct".into()],
    )
    .await;
    let (v2, _, _) = stamps(&app, "patients", patient).await;
    assert_eq!(
        v2,
        v0 + 1,
        "an unguarded change of a child row is a new version"
    );
}

/// Queues a patient `fhir_id` and then a contact of no patient, which fails.
async fn queue_patient_and_orphan(tx: &mut expediente::store::Tx, fhir_id: &str) {
    tx.queue(
        "INSERT INTO patients (id, fhir_id) VALUES (?, ?)",
        &[Uuid::new_v4().into(), fhir_id.into()],
    )
    .await
    .unwrap();
    tx.queue(
        "INSERT INTO patient_contacts (patient_id, position, first_name) VALUES (?, 0, ?)",
        &[Uuid::new_v4().into(), "orphan".into()],
    )
    .await
    .unwrap();
}

/// The fhir_ids of the patients named `fhir_id`, read beside other reads.
async fn fhir_ids(reads: TxReads<'_>, fhir_id: &str) -> Result<Vec<String>, StoreError> {
    Conn::Reads(reads)
        .fetch_all(
            "SELECT fhir_id FROM patients WHERE fhir_id = ?",
            &[fhir_id.into()],
        )
        .await?
        .iter()
        .map(|r| r.string("fhir_id"))
        .collect()
}

/// Reads of a transaction that go side by side (SQLite) each see the writes queued before them.
/// A queued write that failed fails the read told first, every read beside it and the commit:
/// nothing of the transaction stays. PostgreSQL's connection answers one statement at a time
/// and offers none.
async fn reads_side_by_side_see_the_writes_before_them(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut tx = app.db.begin().await.unwrap();
    for i in 0..3 {
        tx.queue(
            "INSERT INTO patients (id, fhir_id, first_name) VALUES (?, ?, ?)",
            &[
                Uuid::new_v4().into(),
                format!("side-{i}").into(),
                "Ana".into(),
            ],
        )
        .await
        .unwrap();
    }
    let Some(reads) = tx.side_by_side().await.unwrap() else {
        assert_eq!(engine, Engine::Postgres, "SQLite reads go side by side");
        return;
    };
    assert_eq!(
        engine,
        Engine::Sqlite,
        "PostgreSQL offers no reads side by side"
    );
    let (a, b, c) = tokio::join!(
        fhir_ids(reads.clone(), "side-0"),
        fhir_ids(reads.clone(), "side-1"),
        fhir_ids(reads, "side-2")
    );
    assert_eq!(
        [a.unwrap(), b.unwrap(), c.unwrap()],
        [["side-0"], ["side-1"], ["side-2"]].map(|v| v.map(str::to_owned).to_vec())
    );
    tx.commit().await.unwrap();
    assert_eq!(
        count_where(&app, "patients", "fhir_id LIKE ?", &["side-%".into()]).await,
        3
    );

    let mut tx = app.db.begin().await.unwrap();
    queue_patient_and_orphan(&mut tx, "side-lost").await;
    let reads = tx.side_by_side().await.unwrap().unwrap();
    let (a, b) = tokio::join!(
        fhir_ids(reads.clone(), "side-lost"),
        fhir_ids(reads, "side-0")
    );
    assert!(matches!(a, Err(StoreError::ForeignKey)), "{a:?}");
    assert!(matches!(b, Err(StoreError::Failed(_))), "{b:?}");
    let commit = tx.commit().await;
    assert!(matches!(commit, Err(StoreError::Failed(_))), "{commit:?}");
    assert_eq!(
        count_where(&app, "patients", "fhir_id = ?", &["side-lost".into()]).await,
        0
    );
}

/// Writes queued inside a transaction go out in fewer statements (on PostgreSQL, sorted by the
/// foreign key order of their tables): every row lands, a row still follows the row it
/// references, and a write that fails surfaces at the next read and takes the whole transaction
/// with it.
async fn queued_writes_land_whole_and_a_failed_one_fails_the_transaction(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut tx = app.db.begin().await.unwrap();
    let mut patients = Vec::new();
    for i in 0..250 {
        let id = Uuid::new_v4();
        patients.push(id);
        tx.queue(
            "INSERT INTO patients (id, fhir_id, first_name) VALUES (?, ?, ?)",
            &[id.into(), format!("queued-{i}").into(), "Ana".into()],
        )
        .await
        .unwrap();
        tx.queue(
            "INSERT INTO patient_contacts (patient_id, position, first_name) VALUES (?, 0, ?)",
            &[id.into(), format!("contact {i}").into()],
        )
        .await
        .unwrap();
    }
    let n = tx
        .fetch_optional(
            "SELECT count(*) AS n FROM patient_contacts c JOIN patients p ON p.id = c.patient_id \
             WHERE p.fhir_id LIKE 'queued-%'",
            &[],
        )
        .await
        .unwrap()
        .unwrap()
        .bigint("n")
        .unwrap();
    assert_eq!(n, 250, "every contact landed with its patient");
    tx.commit().await.unwrap();
    assert_eq!(
        count_where(&app, "patients", "fhir_id LIKE ?", &["queued-%".into()]).await,
        250
    );

    // A contact of no patient, queued among good rows: the next read fails, nothing stays.
    let mut tx = app.db.begin().await.unwrap();
    queue_patient_and_orphan(&mut tx, "queued-lost").await;
    let read = tx
        .fetch_all("SELECT id FROM patients", &[])
        .await
        .map(|r| r.len());
    assert!(
        matches!(read, Err(StoreError::ForeignKey)),
        "the failed write surfaces at the read: {read:?}"
    );
    drop(tx);
    assert_eq!(
        count_where(&app, "patients", "fhir_id = ?", &["queued-lost".into()]).await,
        0
    );
    assert_eq!(
        count_where(
            &app,
            "patient_contacts",
            "first_name = ?",
            &["orphan".into()]
        )
        .await,
        0
    );
}

/// A vital_signs row written through FHIR gets no observation rows from the table's trigger (the
/// FHIR write makes them); one written directly by the clinic's application does.
async fn vital_signs_written_through_fhir_keep_their_observation_rows_themselves(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patient = insert_patient(&app, "vitals-guarded").await;
    let insert = "INSERT INTO vital_signs (id, patient_id, heart_rate) VALUES (?, ?, 70)";
    let observations = |vs: Uuid| {
        let app = &app;
        async move {
            count_where(
                app,
                "vital_sign_observations",
                "vital_sign_id = ?",
                &[vs.into()],
            )
            .await
        }
    };
    let (fhir, direct) = (Uuid::new_v4(), Uuid::new_v4());
    let mut tx = app.db.begin().await.unwrap();
    guard::guard_vitals(&mut tx, fhir).await.unwrap();
    tx.execute(insert, &[fhir.into(), patient.into()])
        .await
        .unwrap();
    guard::unguard_vitals(&mut tx, fhir).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(observations(fhir).await, 0, "the FHIR write keeps its own");
    exec(&app, insert, &[direct.into(), patient.into()]).await;
    assert_eq!(
        observations(direct).await,
        1,
        "the trigger keeps a direct write's"
    );
}

/// PostgreSQL: a stored rendering is compressed with lz4 (cheaper to write and to read than
/// pglz) and reads back as it was written.
#[tokio::test]
async fn postgres_stored_renderings_are_compressed_with_lz4() {
    let app = TestApp::spawn(Engine::Postgres).await;
    let long = "x".repeat(6000);
    let named = json!({"resourceType": "Patient", "id": "long", "name": [{"family": "Long", "text": long}]});
    assert_eq!(
        app.put("/fhir/Patient/long", &named).await.status,
        StatusCode::CREATED
    );
    let row = app
        .db
        .fetch_optional(
            "SELECT pg_column_compression(resource) AS method FROM resource_versions \
             WHERE resource_type = 'Patient' AND fhir_id = 'long'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.string("method").unwrap(), "lz4");
    let read = app.get("/fhir/Patient/long").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["name"][0]["text"], long.as_str());
}

/// PostgreSQL: the trigger that touches a report when a file is attached to it finds the report
/// through its primary key, even on a connection that planned it while the table was small: such
/// a plan, kept, read the whole table for every file as the table grew (an import of 10,000
/// patients read the reports 46,000 times over).
#[tokio::test]
async fn postgres_a_report_is_touched_through_its_key_however_small_its_table_was() {
    let app = TestApp::spawn(Engine::Postgres).await;
    let patient = insert_patient(&app, "touched").await;
    let report = Uuid::new_v4();
    // One connection throughout: the trigger's plans are kept per connection.
    let mut tx = app.db.begin().await.unwrap();
    tx.execute(
        "INSERT INTO medical_tests (id, fhir_id, patient_id, code) VALUES (?, 'touched', ?, '58410-2')",
        &[report.into(), patient.into()],
    )
    .await
    .unwrap();
    let attach =
        "INSERT INTO file_attachments (id, patient_id, medical_test_id, file_name, storage_path) \
                  VALUES (?, ?, ?, 'cbc.pdf', 'files/cbc.pdf')";
    // Planned, and planned again, while the table holds one row.
    for _ in 0..8 {
        let args = [Uuid::new_v4().into(), patient.into(), report.into()];
        tx.execute(attach, &args).await.unwrap();
    }
    tx.execute(
        "INSERT INTO medical_tests (id, fhir_id, patient_id, code) \
         SELECT gen_random_uuid(), 'grown-' || n, ?, '58410-2' FROM generate_series(1, 5000) n",
        &[patient.into()],
    )
    .await
    .unwrap();
    let scans = "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'medical_tests'";
    let before = tx.fetch_optional(scans, &[]).await.unwrap().unwrap();
    for _ in 0..5 {
        let args = [Uuid::new_v4().into(), patient.into(), report.into()];
        tx.execute(attach, &args).await.unwrap();
    }
    let after = tx.fetch_optional(scans, &[]).await.unwrap().unwrap();
    assert_eq!(
        after.bigint("seq_scan").unwrap(),
        before.bigint("seq_scan").unwrap(),
        "a file attached to a report of a grown table read the whole table"
    );
    drop(tx);
}

on_both_engines!(
    queued_writes_land_whole_and_a_failed_one_fails_the_transaction,
    reads_side_by_side_see_the_writes_before_them,
    vital_signs_written_through_fhir_keep_their_observation_rows_themselves,
    the_write_guard_lasts_one_transaction,
    every_clinical_table_has_the_common_columns,
    a_direct_update_bumps_version_and_updated_at_on_every_clinical_table,
    an_update_that_sets_version_id_itself_still_bumps_once_and_keeps_created_at,
    check_constraints_reject_bad_codes,
    foreign_keys_and_unique_fhir_ids_are_enforced,
    audit_logs_are_append_only,
    soft_deleted_rows_stay_in_the_table,
    migrate_is_idempotent,
);

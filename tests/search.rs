//! Search across the clinical resources: one small designed dataset whose answers are known, and
//! for each parameter type, prefix and modifier the exact set of ids returned; chains, `_has`,
//! composites, `_include`/`_revinclude`, `_sort` with paging, `_summary`/`_elements`, the
//! Patient compartment and search across types. On SQLite and PostgreSQL.

mod common;

use common::{Engine, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const MRN: &str = "http://clinic.example/mrn";
const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

fn category(code: &str) -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": code}]}])
}

fn quantity(value: i64, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

fn code(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

/// The dataset: four patients, a practitioner, two encounters, seven observations (vital signs
/// in vital_signs, results in medical_test_results), two reports, two prescriptions, an allergy.
fn dataset() -> Vec<Value> {
    let patient = |id: &str, family: &str, given: &str, extra: Value| {
        let mut p = json!({"resourceType": "Patient", "id": id, "name": [{"family": family, "given": [given]}]});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let mr_type = json!({"coding": [{"system": V2_0203, "code": "MR"}]});
    let obs = |id: &str, subject: &str, c: Value, extra: Value| {
        let mut o = json!({"resourceType": "Observation", "id": id, "status": "final", "code": c,
            "subject": {"reference": format!("Patient/{subject}")}});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    vec![
        json!({"resourceType": "Practitioner", "id": "dr-house", "name": [{"family": "House", "given": ["Gregory"]}]}),
        patient(
            "ana",
            "García",
            "Ana",
            json!({"gender": "female", "birthDate": "1980-05-17", "active": true,
            "identifier": [{"type": mr_type, "system": MRN, "value": "MRN-1"}],
            "telecom": [{"system": "phone", "value": "+52 33 1234 5678"}, {"system": "email", "value": "ana@example.org"}],
            "address": [{"line": ["Av. Juárez 10"], "city": "Guadalajara", "postalCode": "44100", "country": "MX"}],
            "generalPractitioner": [{"reference": "Practitioner/dr-house"}],
            "meta": {"tag": [{"system": "http://clinic.example/tags", "code": "vip"}]}}),
        ),
        patient(
            "bruno",
            "Garcilaso",
            "Bruno",
            json!({"gender": "male", "birthDate": "1980-11-02", "active": true,
            "identifier": [{"type": mr_type, "system": MRN, "value": "MRN-2"}],
            "address": [{"city": "Monterrey", "country": "MX"}]}),
        ),
        patient(
            "carla",
            "Pérez",
            "Carla",
            json!({"birthDate": "1975", "active": false,
            "identifier": [{"system": MRN, "value": "MRN-3"}],
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}),
        ),
        patient(
            "diego",
            "Smith",
            "Diego",
            json!({"gender": "male", "birthDate": "1990-01"}),
        ),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [code("http://snomed.info/sct", "185349003", "Encounter for check up")],
            "subject": {"reference": "Patient/ana"},
            "period": {"start": "2024-01-10T09:00:00Z", "end": "2024-01-10T10:00:00Z"}}),
        json!({"resourceType": "Encounter", "id": "e2", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [code("http://snomed.info/sct", "270427003", "Patient-initiated encounter")],
            "subject": {"reference": "Patient/bruno"},
            "period": {"start": "2024-02-01T08:00:00Z"}}),
        obs(
            "hr-ana",
            "ana",
            code(LOINC, "8867-4", "Heart rate"),
            json!({"category": category("vital-signs"),
            "encounter": {"reference": "Encounter/e1"}, "performer": [{"reference": "Practitioner/dr-house"}],
            "effectiveDateTime": "2024-01-10T09:15:00Z", "valueQuantity": quantity(72, "/min")}),
        ),
        obs(
            "bp-ana",
            "ana",
            code(LOINC, "85354-9", "Blood pressure panel"),
            json!({"category": category("vital-signs"),
            "encounter": {"reference": "Encounter/e1"}, "effectiveDateTime": "2024-01-10T09:16:00Z",
            "component": [
                {"code": code(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": quantity(120, "mm[Hg]")},
                {"code": code(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": quantity(80, "mm[Hg]")}]}),
        ),
        obs(
            "wt-bruno",
            "bruno",
            // Two codings, LOINC second: a vital sign found by either.
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight"},
                {"system": LOINC, "code": "29463-7", "display": "Body weight"}], "text": "Body weight"}),
            json!({"category": category("vital-signs"),
            "encounter": {"reference": "Encounter/e2"}, "effectiveDateTime": "2024-02-01T08:30:00Z",
            "valueQuantity": quantity(80, "kg")}),
        ),
        obs(
            "glu-bruno",
            "bruno",
            code(LOINC, "2339-0", "Glucose [Mass/volume] in Blood"),
            json!({"category": category("laboratory"),
            "effectivePeriod": {"start": "2024-02-01T08:00:00Z", "end": "2024-02-03T08:00:00Z"},
            "valueQuantity": quantity(95, "mg/dL")}),
        ),
        obs(
            "glu-carla",
            "carla",
            // Two codings: a result found by its laboratory's own code too.
            json!({"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"},
                {"system": "http://lab.example/codes", "code": "GLU"}], "text": "Glucose [Mass/volume] in Blood"}),
            json!({"status": "preliminary",
            "category": category("laboratory"), "effectiveDateTime": "2023-12-31T23:30:00Z",
            "valueQuantity": quantity(140, "mg/dL")}),
        ),
        obs(
            "bp-lab-carla",
            "carla",
            code(LOINC, "55284-4", "Blood pressure systolic and diastolic"),
            json!({
            "category": category("laboratory"), "effectiveDateTime": "2023-12-31T10:00:00Z",
            "component": [
                {"code": code(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": quantity(150, "mm[Hg]")},
                {"code": code(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": quantity(95, "mm[Hg]")}]}),
        ),
        obs(
            "smoke-diego",
            "diego",
            code(LOINC, "72166-2", "Tobacco smoking status"),
            json!({
            "category": category("social-history"),
            "valueCodeableConcept": code("http://snomed.info/sct", "266919005", "Never smoker")}),
        ),
        json!({"resourceType": "DiagnosticReport", "id": "dr-bruno", "status": "final",
            "code": code(LOINC, "24323-8", "Comprehensive metabolic panel"), "subject": {"reference": "Patient/bruno"},
            "effectiveDateTime": "2024-02-03T09:00:00Z", "result": [{"reference": "Observation/glu-bruno"}]}),
        json!({"resourceType": "DiagnosticReport", "id": "dr-carla", "status": "preliminary",
            "code": code(LOINC, "24323-8", "Comprehensive metabolic panel"), "subject": {"reference": "Patient/carla"},
            "effectiveDateTime": "2024-01-01T09:00:00Z",
            "result": [{"reference": "Observation/glu-carla"}, {"reference": "Observation/bp-lab-carla"}]}),
        json!({"resourceType": "MedicationRequest", "id": "mr-bruno", "status": "active", "intent": "order",
            "medicationCodeableConcept": code("http://www.nlm.nih.gov/research/umls/rxnorm", "860975", "Metformin 500 MG"),
            "subject": {"reference": "Patient/bruno"}, "authoredOn": "2024-02-01", "note": [{"text": "Take with food"}]}),
        json!({"resourceType": "MedicationRequest", "id": "mr-carla", "status": "stopped", "intent": "order",
            "medicationCodeableConcept": code("http://www.nlm.nih.gov/research/umls/rxnorm", "860975", "Metformin 500 MG"),
            "subject": {"reference": "Patient/carla"}, "authoredOn": "2023-12-31"}),
        json!({"resourceType": "AllergyIntolerance", "id": "al-ana", "patient": {"reference": "Patient/ana"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": code("http://snomed.info/sct", "91936005", "Allergy to penicillin")}),
    ]
}

async fn load(app: &TestApp) {
    for r in dataset() {
        let path = format!(
            "/fhir/{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let res = app.put(&path, &r).await;
        assert_eq!(res.status, StatusCode::CREATED, "{path}: {}", res.text);
    }
}

/// The ids a search returns (matches only), checked against the Bundle's total.
async fn ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let path = if query.starts_with('?') {
        format!("/fhir{query}")
    } else {
        format!("/fhir/{query}")
    };
    let r = app.get(&path).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    assert_eq!(r.body["type"], "searchset");
    let got: BTreeSet<String> = matches(&r.body).into_iter().collect();
    assert_eq!(
        r.body["total"].as_u64().unwrap() as usize,
        got.len(),
        "{query}: total is honest"
    );
    got
}

fn matches(bundle: &Value) -> Vec<String> {
    entries(bundle, "match")
}

fn entries(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Runs each (query, expected ids) case.
async fn check(app: &TestApp, cases: &[(&str, &[&str])]) {
    for (q, want) in cases {
        assert_eq!(ids(app, q).await, set(want), "{q}");
    }
}

async fn strings_match_start_exact_and_contains(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    check(
        &app,
        &[
            ("Patient?name=gar", &["ana", "bruno"]),
            ("Patient?family=garcia", &["ana"]),
            ("Patient?family=garc", &["ana", "bruno"]),
            ("Patient?family=GARCÍA", &["ana"]),
            ("Patient?family=perez", &["carla"]),
            ("Patient?family:exact=García", &["ana"]),
            ("Patient?family:exact=garcía", &[]),
            ("Patient?family:contains=RCI", &["ana", "bruno"]),
            ("Patient?name:contains=ila", &["bruno"]),
            ("Patient?given=car", &["carla"]),
            ("Patient?name=smith,perez", &["carla", "diego"]),
            ("Patient?name=gar&name=bru", &["bruno"]),
            (
                "Patient?name:missing=false",
                &["ana", "bruno", "carla", "diego"],
            ),
            ("Practitioner?name=hou", &["dr-house"]),
            ("Patient?address-city=guada", &["ana"]),
            ("Patient?address:contains=juarez", &["ana"]),
            ("Patient?address=av. juar", &["ana"]),
            ("Patient?address=juarez", &[]),
            ("Patient?address=mon", &["bruno"]),
            ("Patient?address-postalcode=441", &["ana"]),
            ("Patient?address-country=mx", &["ana", "bruno"]),
            (
                "Patient?address-state:missing=true",
                &["ana", "bruno", "carla", "diego"],
            ),
            ("Patient?address:missing=true", &["carla", "diego"]),
            ("Patient?phone=%2B52%2033%201234%205678", &["ana"]),
            ("Patient?email=ana@example.org", &["ana"]),
            ("Patient?telecom=ana@example.org", &["ana"]),
            ("Patient?email=bruno@example.org", &[]),
        ],
    )
    .await;
}

async fn tokens_with_systems_not_text_of_type_and_missing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    // The Observation code index holds only the codings beyond the rows' code columns.
    let extra: Vec<(String, String)> = app
        .db
        .fetch_all(
            "SELECT value, exact FROM search_strings WHERE resource_type = 'Observation' AND param = 'code' ORDER BY exact",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.string("value").unwrap(), r.string("exact").unwrap()))
        .collect();
    assert_eq!(
        extra,
        [
            ("http://snomed.info/sct".to_owned(), "27113001".to_owned()),
            ("http://lab.example/codes".to_owned(), "GLU".to_owned()),
        ]
    );
    let mrn2 = format!("Patient?identifier={MRN}|MRN-2");
    let mrn_any = format!("Patient?identifier={MRN}|");
    let of_type = format!("Patient?identifier:of-type={V2_0203}|MR|MRN-1");
    let of_type_wrong = format!("Patient?identifier:of-type={V2_0203}|DL|MRN-1");
    let of_type_untyped = format!("Patient?identifier:of-type={V2_0203}|MR|MRN-3");
    let loinc_hr = format!("Observation?code={LOINC}|8867-4");
    check(
        &app,
        &[
            ("Patient?gender=female", &["ana"]),
            (
                "Patient?gender=http://hl7.org/fhir/administrative-gender|male",
                &["bruno", "diego"],
            ),
            ("Patient?gender=http://other.example|male", &[]),
            ("Patient?gender=|male", &[]),
            ("Patient?gender:not=male", &["ana", "carla"]),
            ("Patient?gender:missing=true", &["carla"]),
            ("Patient?gender:missing=false", &["ana", "bruno", "diego"]),
            ("Patient?active=false", &["carla"]),
            ("Patient?active=true", &["ana", "bruno"]),
            (&mrn2, &["bruno"]),
            ("Patient?identifier=MRN-3", &["carla"]),
            ("Patient?identifier=|MRN-3", &[]),
            (&mrn_any, &["ana", "bruno", "carla"]),
            ("Patient?identifier:missing=true", &["diego"]),
            (&of_type, &["ana"]),
            (&of_type_wrong, &[]),
            (&of_type_untyped, &[]),
            (&loinc_hr, &["hr-ana"]),
            ("Observation?code=|8867-4", &[]),
            (
                "Observation?code=2339-0,8867-4",
                &["glu-bruno", "glu-carla", "hr-ana"],
            ),
            (
                "Observation?code:not=2339-0",
                &[
                    "hr-ana",
                    "bp-ana",
                    "wt-bruno",
                    "bp-lab-carla",
                    "smoke-diego",
                ],
            ),
            (
                "Observation?code=http://snomed.info/sct|27113001",
                &["wt-bruno"],
            ),
            ("Observation?code=29463-7", &["wt-bruno"]),
            (
                "Observation?code=http://lab.example/codes|GLU",
                &["glu-carla"],
            ),
            ("Observation?code=http://loinc.org|GLU", &[]),
            (
                "Observation?code=GLU,http://snomed.info/sct|27113001",
                &["glu-carla", "wt-bruno"],
            ),
            ("Observation?patient=bruno&code=27113001", &["wt-bruno"]),
            ("Observation?patient=carla&code=GLU", &["glu-carla"]),
            ("Observation?patient=carla&code=2339-0", &["glu-carla"]),
            (
                "Observation?code:not=GLU",
                &[
                    "hr-ana",
                    "bp-ana",
                    "wt-bruno",
                    "glu-bruno",
                    "bp-lab-carla",
                    "smoke-diego",
                ],
            ),
            ("Observation?code:text=glucose", &["glu-bruno", "glu-carla"]),
            ("Observation?code:text=weight", &["wt-bruno"]),
            ("Observation?combo-code=8480-6", &["bp-ana", "bp-lab-carla"]),
            (
                "Observation?category=laboratory",
                &["glu-bruno", "glu-carla", "bp-lab-carla"],
            ),
            (
                "Observation?category:not=vital-signs",
                &["glu-bruno", "glu-carla", "bp-lab-carla", "smoke-diego"],
            ),
            ("Observation?status=preliminary", &["glu-carla"]),
            ("Encounter?type:text=check", &["e1"]),
            ("Encounter?type=http://snomed.info/sct|270427003", &["e2"]),
            (
                "MedicationRequest?code:text=metformin",
                &["mr-bruno", "mr-carla"],
            ),
            ("MedicationRequest?status=active", &["mr-bruno"]),
            (
                "DiagnosticReport?code:text=metabolic",
                &["dr-bruno", "dr-carla"],
            ),
            ("Patient?_id=ana,carla", &["ana", "carla"]),
            ("Patient?_tag=http://clinic.example/tags|vip", &["ana"]),
            ("Patient?_tag=vip", &["ana"]),
            ("Patient?_tag:missing=true", &["bruno", "carla", "diego"]),
            ("Patient?_security=R", &["carla"]),
        ],
    )
    .await;
}

async fn dates_compare_ranges_for_every_prefix(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    // Observation date ranges: hr-ana 2024-01-10T09:15, bp-ana 09:16, wt-bruno 2024-02-01T08:30,
    // glu-bruno [2024-02-01T08:00, 2024-02-03T08:00], glu-carla 2023-12-31T23:30,
    // bp-lab-carla 2023-12-31T10:00, smoke-diego none.
    check(
        &app,
        &[
            ("Observation?date=2024-01-10", &["hr-ana", "bp-ana"]),
            ("Observation?date=eq2024-01", &["hr-ana", "bp-ana"]),
            ("Observation?date=2024-01-10T09:15", &["hr-ana"]),
            ("Observation?date=2024-01-10T09:15:00Z", &["hr-ana"]),
            ("Observation?date=2024-01-10T10:15:00%2B01:00", &["hr-ana"]),
            ("Observation?date=2024-02-02", &[]),
            (
                "Observation?date=ne2024-01-10",
                &["wt-bruno", "glu-bruno", "glu-carla", "bp-lab-carla"],
            ),
            ("Observation?date=gt2024-02-01", &["glu-bruno"]),
            ("Observation?date=ge2024-02-01", &["wt-bruno", "glu-bruno"]),
            (
                "Observation?date=lt2024-01-01",
                &["glu-carla", "bp-lab-carla"],
            ),
            (
                "Observation?date=le2024-01-10T09:15",
                &["hr-ana", "glu-carla", "bp-lab-carla"],
            ),
            ("Observation?date=sa2024-01-31", &["wt-bruno", "glu-bruno"]),
            (
                "Observation?date=eb2024-02-02",
                &["hr-ana", "bp-ana", "wt-bruno", "glu-carla", "bp-lab-carla"],
            ),
            // ap widens the value by a tenth of its distance from now (here months).
            (
                "Observation?date=ap2024-02-02",
                &[
                    "hr-ana",
                    "bp-ana",
                    "wt-bruno",
                    "glu-bruno",
                    "glu-carla",
                    "bp-lab-carla",
                ],
            ),
            ("Observation?date=ap2022-01-01", &[]),
            ("Observation?date=2023", &["glu-carla", "bp-lab-carla"]),
            (
                "Observation?date=ge2023-12-31&date=lt2024-01-10",
                &["glu-carla", "bp-lab-carla"],
            ),
            ("Observation?date:missing=true", &["smoke-diego"]),
            // Birth dates of lower precision are ranges too: 1975 is the whole year, 1990-01 the month.
            ("Patient?birthdate=1975", &["carla"]),
            ("Patient?birthdate=1975-06-01", &[]),
            (
                "Patient?birthdate=ge1975-06-01&birthdate=lt1981",
                &["ana", "bruno", "carla"],
            ),
            (
                "Patient?birthdate=gt1975-06-01",
                &["ana", "bruno", "carla", "diego"],
            ),
            ("Patient?birthdate=sa1975-06-01", &["ana", "bruno", "diego"]),
            (
                "Patient?birthdate=lt1990-01-15",
                &["ana", "bruno", "carla", "diego"],
            ),
            ("Patient?birthdate=eb1990-01-15", &["ana", "bruno", "carla"]),
            ("Patient?birthdate=1990-01", &["diego"]),
            ("Patient?birthdate=ne1980", &["carla", "diego"]),
            ("Encounter?date=2024-02-05", &[]),
            ("Encounter?date=ge2024-02-05", &["e2"]),
            ("Encounter?date=gt2030-01-01", &["e2"]),
            ("Encounter?date=lt2024-01-10T09:30", &["e1"]),
            ("MedicationRequest?authoredon=2023-12-31", &["mr-carla"]),
            // A date stands for its whole day.
            (
                "MedicationRequest?authoredon=gt2023-12-31T12:00:00Z",
                &["mr-bruno", "mr-carla"],
            ),
            (
                "MedicationRequest?authoredon=lt2023-12-31T12:00:00Z",
                &["mr-carla"],
            ),
            ("MedicationRequest?authoredon=2023-12-31T12:00:00Z", &[]),
            ("DiagnosticReport?date=ge2024-02", &["dr-bruno"]),
        ],
    )
    .await;
}

async fn quantities_and_composites(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let glu_gt = format!("Observation?code-value-quantity={LOINC}|2339-0$gt100");
    let glu_unit = format!("Observation?code-value-quantity=2339-0$ge90|{UCUM}|mg/dL");
    // The same composites next to a patient condition (rows tested one by one).
    check(
        &app,
        &[
            (
                "Observation?patient=ana,bruno&code-value-quantity=8867-4$72,2339-0$95",
                &["hr-ana", "glu-bruno"],
            ),
            (
                "Observation?patient=carla&code-value-quantity=2339-0$gt100",
                &["glu-carla"],
            ),
            (
                "Observation?patient=ana&component-code-value-quantity=8480-6$ge120",
                &["bp-ana"],
            ),
            (
                "Observation?subject=carla&combo-code-value-quantity=8462-4$95",
                &["bp-lab-carla"],
            ),
            ("Observation?patient=ana&combo-code=8480-6", &["bp-ana"]),
            (
                "Observation?patient=ana&code=http://loinc.org|8867-4",
                &["hr-ana"],
            ),
            (
                "Observation?_id=hr-ana,glu-bruno&code:not=8867-4",
                &["glu-bruno"],
            ),
            (
                "Observation?code=http://loinc.org|",
                &[
                    "hr-ana",
                    "bp-ana",
                    "wt-bruno",
                    "glu-bruno",
                    "glu-carla",
                    "bp-lab-carla",
                    "smoke-diego",
                ],
            ),
            ("Observation?code-value-quantity=8302-2$gt1", &[]),
            (
                "Observation?code-value-quantity=29463-7$gt79|http://unitsofmeasure.org|kg",
                &["wt-bruno"],
            ),
            ("Observation?code-value-quantity=29463-7$gt79||[lb_av]", &[]),
        ],
    )
    .await;
    check(&app, &[
        ("Observation?value-quantity=72", &["hr-ana"]),
        ("Observation?value-quantity=80", &["wt-bruno"]),
        ("Observation?value-quantity=80|http://unitsofmeasure.org|kg", &["wt-bruno"]),
        ("Observation?value-quantity=80||mg/dL", &[]),
        ("Observation?value-quantity=gt90", &["glu-bruno", "glu-carla"]),
        ("Observation?value-quantity=ge95", &["glu-bruno", "glu-carla"]),
        ("Observation?value-quantity=lt80", &["hr-ana"]),
        ("Observation?value-quantity=le80", &["hr-ana", "wt-bruno"]),
        ("Observation?value-quantity=ne80", &["hr-ana", "glu-bruno", "glu-carla"]),
        ("Observation?value-quantity=ap100", &["glu-bruno"]),
        ("Observation?value-quantity=9.5e1", &["glu-bruno"]),
        ("Observation?value-quantity:missing=true", &["bp-ana", "bp-lab-carla", "smoke-diego"]),
        (&glu_gt, &["glu-carla"]),
        (&glu_unit, &["glu-bruno", "glu-carla"]),
        ("Observation?code-value-quantity=8867-4$72,2339-0$95", &["hr-ana", "glu-bruno"]),
        ("Observation?code-value-quantity=8480-6$gt100", &[]),
        // By a coding beyond the code columns: a result's and a vital sign's.
        ("Observation?code-value-quantity=GLU$gt100", &["glu-carla"]),
        ("Observation?code-value-quantity=GLU$lt100", &[]),
        ("Observation?code-value-quantity=http://snomed.info/sct|27113001$gt79", &["wt-bruno"]),
        ("Observation?code-value-quantity=27113001$gt80", &[]),
        ("Observation?patient=bruno&code-value-quantity=27113001$gt79", &["wt-bruno"]),
        ("Observation?component-code-value-quantity=8480-6$gt140", &["bp-lab-carla"]),
        ("Observation?component-code-value-quantity=8480-6$ge120", &["bp-ana", "bp-lab-carla"]),
        ("Observation?component-code-value-quantity=8462-4$lt90|http://unitsofmeasure.org|mm[Hg]", &["bp-ana"]),
        ("Observation?combo-code-value-quantity=8867-4$72", &["hr-ana"]),
        ("Observation?combo-code-value-quantity=8462-4$95", &["bp-lab-carla"]),
    ]).await;
}

async fn references_chains_and_reverse_chains(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let absolute = format!("Observation?subject={}/Patient/ana", app.url("/fhir"));
    check(
        &app,
        &[
            ("Observation?subject=ana", &["hr-ana", "bp-ana"]),
            ("Observation?patient=Patient/ana", &["hr-ana", "bp-ana"]),
            (&absolute, &["hr-ana", "bp-ana"]),
            (
                "Observation?subject=http://elsewhere.example/fhir/Patient/ana",
                &[],
            ),
            ("Observation?subject:Patient=ana", &["hr-ana", "bp-ana"]),
            ("Observation?subject:Group=ana", &[]),
            ("Observation?subject=Group/ana", &[]),
            (
                "Observation?subject=ana,carla",
                &["hr-ana", "bp-ana", "glu-carla", "bp-lab-carla"],
            ),
            (
                "Observation?encounter:missing=true",
                &["glu-bruno", "glu-carla", "bp-lab-carla", "smoke-diego"],
            ),
            ("Observation?performer=dr-house", &["hr-ana"]),
            ("DiagnosticReport?result=glu-carla", &["dr-carla"]),
            (
                "DiagnosticReport?result=Observation/glu-bruno",
                &["dr-bruno"],
            ),
            // Chains, one and more levels, with and without a type.
            (
                "Observation?subject:Patient.name=garc",
                &["hr-ana", "bp-ana", "wt-bruno", "glu-bruno"],
            ),
            (
                "Observation?patient.gender=male",
                &["wt-bruno", "glu-bruno", "smoke-diego"],
            ),
            (
                "Observation?patient.identifier=MRN-3",
                &["glu-carla", "bp-lab-carla"],
            ),
            ("Observation?subject:Group.name=garcia", &[]),
            ("Observation?encounter.status=in-progress", &["wt-bruno"]),
            (
                "Observation?encounter.patient.name=ana",
                &["hr-ana", "bp-ana"],
            ),
            ("Observation?encounter.patient.gender:missing=true", &[]),
            ("DiagnosticReport?result.code=55284-4", &["dr-carla"]),
            (
                "DiagnosticReport?result.patient.family=perez",
                &["dr-carla"],
            ),
            ("Observation?performer.name=house", &["hr-ana"]),
            ("Patient?general-practitioner=dr-house", &["ana"]),
            ("Patient?general-practitioner.name=house", &["ana"]),
            (
                "Practitioner?_has:Patient:general-practitioner:family=garc",
                &["dr-house"],
            ),
            // Reverse chains, nested too.
            (
                "Patient?_has:Observation:patient:code=2339-0",
                &["bruno", "carla"],
            ),
            (
                "Patient?_has:Observation:subject:category=social-history",
                &["diego"],
            ),
            (
                "Patient?_has:MedicationRequest:subject:status=active",
                &["bruno"],
            ),
            (
                "Patient?_has:AllergyIntolerance:patient:_id=al-ana",
                &["ana"],
            ),
            (
                "Observation?_has:DiagnosticReport:result:status=preliminary",
                &["glu-carla", "bp-lab-carla"],
            ),
            (
                "Patient?_has:Observation:patient:_has:DiagnosticReport:result:status=final",
                &["bruno"],
            ),
            ("Encounter?_has:Observation:encounter:code=85354-9", &["e1"]),
            (
                "Patient?_has:Observation:patient:code=2339-0&gender=male",
                &["bruno"],
            ),
        ],
    )
    .await;
}

async fn includes_and_revincludes(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let get = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/fhir/{q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
            r.body
        }
    };
    let b = get("DiagnosticReport?_id=dr-carla&_include=DiagnosticReport:result").await;
    assert_eq!(matches(&b), ["dr-carla"]);
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["glu-carla", "bp-lab-carla"])
    );
    assert_eq!(b["total"], 1, "total counts matches only");
    let b = get("DiagnosticReport?_id=dr-carla&_include=DiagnosticReport:result&_include:iterate=Observation:patient").await;
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["glu-carla", "bp-lab-carla", "carla"])
    );
    let b = get("DiagnosticReport?_id=dr-carla&_include=*").await;
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["glu-carla", "bp-lab-carla", "carla"])
    );
    let b = get("Observation?code=8867-4&_include=Observation:patient&_include=Observation:encounter&_include=Observation:performer").await;
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["ana", "e1", "dr-house"])
    );
    // A target type narrows the include; each resource is in the Bundle once.
    let b = get(
        "Observation?patient=ana&_include=Observation:subject:Patient&_include=Observation:patient",
    )
    .await;
    assert_eq!(matches(&b).len(), 2);
    assert_eq!(entries(&b, "include"), ["ana"]);
    let b = get("Observation?patient=ana&_include=Observation:subject:Group").await;
    assert!(entries(&b, "include").is_empty());
    let b = get("Patient?_id=bruno&_revinclude=Observation:patient").await;
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["wt-bruno", "glu-bruno"])
    );
    let b = get("Observation?_id=glu-bruno&_revinclude=DiagnosticReport:result").await;
    assert_eq!(entries(&b, "include"), ["dr-bruno"]);
    let b = get("Patient?_id=bruno&_revinclude=*").await;
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["wt-bruno", "glu-bruno", "e2", "dr-bruno", "mr-bruno"])
    );
    let b = get(
        "Patient?_id=bruno&_revinclude=Observation:patient&_include:iterate=Observation:encounter",
    )
    .await;
    assert_eq!(
        entries(&b, "include").into_iter().collect::<BTreeSet<_>>(),
        set(&["wt-bruno", "glu-bruno", "e2"])
    );
    // Included entries have full URLs of their own type.
    let b = get("Observation?_id=hr-ana&_include=Observation:encounter").await;
    let inc = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "include")
        .unwrap();
    assert_eq!(inc["fullUrl"], format!("{}/Encounter/e1", app.url("/fhir")));
    assert_eq!(inc["resource"]["resourceType"], "Encounter");
}

async fn sorting_is_stable_and_pages_in_order(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let order = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/fhir/{q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
            matches(&r.body)
        }
    };
    assert_eq!(
        order("Patient?_sort=birthdate").await,
        ["carla", "ana", "bruno", "diego"]
    );
    assert_eq!(
        order("Patient?_sort=-birthdate").await,
        ["diego", "bruno", "ana", "carla"]
    );
    assert_eq!(
        order("Patient?_sort=family").await,
        ["ana", "bruno", "carla", "diego"]
    );
    // Several keys; resources without a value last in either direction.
    assert_eq!(
        order("Patient?_sort=gender,-birthdate").await,
        ["ana", "diego", "bruno", "carla"]
    );
    assert_eq!(
        order("Patient?_sort=-gender,birthdate").await,
        ["bruno", "diego", "ana", "carla"]
    );
    assert_eq!(
        order("Observation?_sort=date").await,
        [
            "bp-lab-carla",
            "glu-carla",
            "hr-ana",
            "bp-ana",
            "glu-bruno",
            "wt-bruno",
            "smoke-diego"
        ]
    );
    assert_eq!(
        order("Observation?_sort=-date").await,
        [
            "wt-bruno",
            "glu-bruno",
            "bp-ana",
            "hr-ana",
            "glu-carla",
            "bp-lab-carla",
            "smoke-diego"
        ]
    );
    assert_eq!(
        order("Observation?_sort=value-quantity&value-quantity:missing=false").await,
        ["hr-ana", "wt-bruno", "glu-bruno", "glu-carla"]
    );
    assert_eq!(
        order("Observation?_sort=patient,-_id&category=laboratory").await,
        ["glu-bruno", "glu-carla", "bp-lab-carla"]
    );
    // Paging a sorted search two at a time walks the same order, forwards and backwards.
    for q in [
        "Observation?_sort=-date",
        "Patient?_sort=gender,-birthdate",
        "Observation?_sort=code,date",
    ] {
        let whole = order(Box::leak(q.to_owned().into_boxed_str())).await;
        let mut page = app.get(&format!("/fhir/{q}&_count=2")).await.body;
        let mut walked = matches(&page);
        let mut pages = vec![matches(&page)];
        while let Some(next) = link(&page, "next") {
            page = get_url(&app, &next).await.body;
            walked.extend(matches(&page));
            pages.push(matches(&page));
        }
        assert_eq!(walked, whole, "{q}");
        let mut back = vec![matches(&page)];
        while let Some(prev) = link(&page, "previous") {
            page = get_url(&app, &prev).await.body;
            back.push(matches(&page));
        }
        back.reverse();
        assert_eq!(back, pages, "{q} backwards");
    }
    let r = app.get("/fhir/Observation?_sort=code-value-quantity").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("code-value-quantity"));
    let r = app.get("/fhir/Patient?_sort=nonsense").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("nonsense"));
}

/// GET of an absolute URL from a Bundle link.
async fn get_url(app: &TestApp, url: &str) -> common::Reply {
    let r = app.client.get(url).send().await.expect("request");
    TestApp::reply(r).await
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

async fn summary_elements_and_total(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let r = app
        .get("/fhir/Observation?category=laboratory&_summary=count")
        .await;
    assert_eq!(r.body["total"], 3);
    assert!(r.body.get("entry").is_none());
    let r = app
        .get("/fhir/Observation?category=laboratory&_total=none")
        .await;
    assert!(r.body.get("total").is_none());
    assert_eq!(matches(&r.body).len(), 3);
    // A first page that holds every match carries their number; a longer result is counted
    // only when _total asks (counting means finding every match).
    let all = app.get("/fhir/Observation?_count=7").await.body;
    assert_eq!(all["total"], 7);
    assert!(link(&all, "next").is_none());
    let first = app.get("/fhir/Observation?_count=2").await.body;
    assert!(first.get("total").is_none(), "{first}");
    assert_eq!(matches(&first).len(), 2);
    let second = get_url(&app, &link(&first, "next").unwrap()).await.body;
    assert!(second.get("total").is_none());
    assert_eq!(matches(&second).len(), 2);
    let first = app
        .get("/fhir/Observation?_count=2&_total=accurate")
        .await
        .body;
    assert_eq!(first["total"], 7);
    let second = get_url(&app, &link(&first, "next").unwrap()).await.body;
    assert_eq!(second["total"], 7);
    let r = app
        .get("/fhir/Patient?_id=ana&_elements=gender,birthDate")
        .await;
    let p = &r.body["entry"][0]["resource"];
    assert_eq!(p["gender"], "female");
    assert_eq!(p["birthDate"], "1980-05-17");
    assert!(p.get("name").is_none() && p.get("identifier").is_none());
    assert!(p["meta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["code"] == "SUBSETTED"));
    assert!(
        p["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["code"] == "vip"),
        "own tags stay"
    );
    let r = app
        .get("/fhir/Observation?_id=hr-ana&_elements=value")
        .await;
    let o = &r.body["entry"][0]["resource"];
    assert_eq!(o["valueQuantity"]["value"], 72);
    assert_eq!(o["status"], "final", "mandatory elements stay");
    assert!(o.get("subject").is_none() && o.get("category").is_none());
    let r = app
        .get("/fhir/MedicationRequest?_id=mr-bruno&_summary=true")
        .await;
    let m = &r.body["entry"][0]["resource"];
    assert_eq!(m["status"], "active");
    assert_eq!(m["subject"]["reference"], "Patient/bruno");
    assert!(m.get("note").is_none(), "not a summary element");
    assert_eq!(
        app.get("/fhir/MedicationRequest/mr-bruno").await.body["note"][0]["text"],
        "Take with food"
    );
    let r = app.get("/fhir/Patient?_id=ana&_summary=data").await;
    assert_eq!(
        r.body["entry"][0]["resource"]["name"][0]["family"],
        "García"
    );
    for bad in ["_summary=maybe", "_total=some", "_elements=na%20me"] {
        let r = app.get(&format!("/fhir/Patient?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            r.outcome()[0].1.contains(bad.split('=').next().unwrap()),
            "{bad}"
        );
    }
}

async fn compartment_cross_type_and_post(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    check(
        &app,
        &[
            ("Patient/bruno/Observation", &["wt-bruno", "glu-bruno"]),
            ("Patient/bruno/Observation?code=2339-0", &["glu-bruno"]),
            ("Patient/carla/DiagnosticReport", &["dr-carla"]),
            ("Patient/ana/AllergyIntolerance", &["al-ana"]),
            ("Patient/ana/Encounter", &["e1"]),
            ("Patient/nobody/Observation", &[]),
            (
                "?_type=Patient,Observation&_id=ana,hr-ana,e1",
                &["ana", "hr-ana"],
            ),
            ("?_id=ana,hr-ana,e1", &["ana", "hr-ana", "e1"]),
            ("?_type=Encounter&_lastUpdated=gt2000-01-01", &["e1", "e2"]),
        ],
    )
    .await;
    let r = app.get("/fhir/Patient/bruno/Observation?code=2339-0").await;
    assert!(link(&r.body, "self")
        .unwrap()
        .contains("/Patient/bruno/Observation?code=2339-0"));
    let r = app.get("/fhir/Practitioner/dr-house/Observation").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/fhir?_type=Nonsense").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("Nonsense"));
    // Cross-type paging walks every resource once.
    let mut page = app.get("/fhir?_count=4").await.body;
    assert_eq!(
        link(&page, "self").unwrap(),
        format!("{}?_count=4", app.url("/fhir"))
    );
    assert!(page.get("total").is_none(), "counted only when asked");
    let counted = app.get("/fhir?_count=4&_total=accurate").await.body;
    let total = counted["total"].as_u64().unwrap() as usize;
    assert_eq!(total, dataset().len());
    let mut seen = matches(&page);
    while let Some(next) = link(&page, "next") {
        page = get_url(&app, &next).await.body;
        seen.extend(matches(&page));
    }
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), total);
    assert_eq!(seen.len(), total);
    // POST _search: form parameters, on a type and across types.
    for (path, want) in [
        (
            "/fhir/Observation/_search",
            set(&["glu-bruno", "glu-carla"]),
        ),
        ("/fhir/_search", set(&["glu-bruno", "glu-carla"])),
    ] {
        let body = if path == "/fhir/_search" {
            "_id=glu-bruno,glu-carla"
        } else {
            "code=2339-0"
        };
        let r = app.post_form(path, body.to_owned()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert_eq!(
            matches(&r.body).into_iter().collect::<BTreeSet<_>>(),
            want,
            "{path}"
        );
    }
}

async fn bad_searches_are_400s_naming_the_problem(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    for (q, named) in [
        ("Observation?date=2024-13-01", "date"),
        ("Observation?date=xx2024", "date"),
        ("Observation?value-quantity=abc", "value-quantity"),
        (
            "Observation?code-value-quantity=2339-0",
            "code-value-quantity",
        ),
        ("Patient?gender:contains=ma", "contains"),
        ("Patient?gender:missing=maybe", "missing"),
        ("Patient?birthdate:exact=1980", "exact"),
        ("Patient?name.family=x", "name"),
        ("Patient?_has:Observation:code:code=x", "_has"),
        ("Patient?_has:Observation", "_has"),
        ("Observation?_include=Observation:code", "code"),
        ("Observation?_include:foo=Observation:patient", "_include"),
        ("Observation?_cursor=abc", "_cursor"),
        (
            "Observation?combo-code-value-quantity:missing=true",
            "combo-code-value-quantity",
        ),
    ] {
        let r = app.get(&format!("/fhir/{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
        assert!(r.outcome()[0].1.contains(named), "{q}: {:?}", r.outcome());
    }
    // Unknown parameters inside chains and _has are ignored, or named with strict handling.
    for q in [
        "Observation?patient.nonsense=1",
        "Patient?_has:Observation:patient:nonsense=1",
        "Observation?_include=Nonsense:x",
    ] {
        let r = app.get(&format!("/fhir/{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
        assert!(!link(&r.body, "self").unwrap().contains("nonsense"), "{q}");
        let strict = app
            .send(
                Method::GET,
                &format!("/fhir/{q}"),
                None,
                &[("prefer", "handling=strict")],
            )
            .await;
        assert_eq!(strict.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(
            strict.outcome()[0].1.to_lowercase().contains("nonsense"),
            "{q}"
        );
    }
}

/// Stores Patient `id` with family Pagina through a plain client (for use from other tasks).
async fn put_pagina(client: reqwest::Client, base: String, id: String, year: u32) {
    let p = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Pagina"}],
        "birthDate": format!("{year}-01-01")});
    let r = client
        .put(format!("{base}/fhir/Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .body(p.to_string())
        .send()
        .await
        .expect("put");
    assert!(r.status().is_success(), "{id}: {}", r.status());
}

async fn paging_walks_a_thousand_matches_exactly_once_while_rows_are_inserted(engine: Engine) {
    use futures_util::StreamExt;
    let app = TestApp::spawn(engine).await;
    let originals: BTreeSet<String> = (0..1000).map(|i| format!("pg-{i}")).collect();
    futures_util::stream::iter(0..1000u32)
        .map(|i| {
            put_pagina(
                app.client.clone(),
                app.base.clone(),
                format!("pg-{i}"),
                1950 + i % 40,
            )
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for (round, query) in [
        "Patient?family=pagina&_count=7",
        "Patient?family=pagina&_sort=-birthdate&_count=7",
    ]
    .into_iter()
    .enumerate()
    {
        // Another client keeps adding matching patients while the pages are read.
        let (client, base) = (app.client.clone(), app.base.clone());
        let writer = tokio::spawn(async move {
            for i in 0..150u32 {
                put_pagina(
                    client.clone(),
                    base.clone(),
                    format!("new-{round}-{i}"),
                    1950 + i % 40,
                )
                .await;
            }
        });
        let mut page = app.get(&format!("/fhir/{query}")).await.body;
        let mut seen: Vec<String> = matches(&page);
        let mut pages = 1;
        while let Some(next) = link(&page, "next") {
            page = get_url(&app, &next).await.body;
            let ids = matches(&page);
            assert!(ids.len() <= 7);
            seen.extend(ids);
            pages += 1;
            if pages % 20 == 0 {
                tokio::task::yield_now().await;
            }
        }
        writer.await.expect("writer");
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: no resource twice");
        assert!(
            originals.is_subset(&unique),
            "{query}: every original match once: missing {:?}",
            originals.difference(&unique).take(5).collect::<Vec<_>>()
        );
        assert!(
            unique
                .iter()
                .all(|id| id.starts_with("pg-") || id.starts_with("new-")),
            "{query}"
        );
        assert!(
            pages >= 143,
            "{query}: 1,000 matches are at least 143 pages of 7"
        );
    }
}

async fn search_entries_show_changes_the_clinic_made_with_sql(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let before = app.get("/fhir/Patient?_id=diego").await.body;
    assert_eq!(before["entry"][0]["resource"]["name"][0]["family"], "Smith");
    app.db
        .execute(
            "UPDATE patients SET last_name = 'Smythe' WHERE fhir_id = 'diego'",
            &[],
        )
        .await
        .expect("update");
    // The stored rendering of version 1 is no longer current: the entry is rebuilt.
    let after = app.get("/fhir/Patient?_id=diego").await.body;
    let p = &after["entry"][0]["resource"];
    assert_eq!(p["name"][0]["family"], "Smythe");
    assert_eq!(p["meta"]["versionId"], "2");
    assert_eq!(p["birthDate"], "1990-01");
}

async fn vital_signs_dated_to_the_day_are_searched_as_the_whole_day(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    common::stub(&app, "Patient", "p").await;
    let temp = json!({"resourceType": "Observation", "id": "temp", "status": "final",
        "category": category("vital-signs"), "code": code(LOINC, "8310-5", "Body temperature"),
        "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2024-03-05",
        "valueQuantity": quantity(37, "Cel")});
    let r = app.put("/fhir/Observation/temp", &temp).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["effectiveDateTime"], "2024-03-05");
    // It is a vital sign, in the vital_signs columns, with the precision it was sent with.
    let row = app
        .db
        .fetch_optional(
            "SELECT body_temperature, measured_at_precision FROM vital_signs",
            &[],
        )
        .await
        .unwrap()
        .expect("a vital_signs row");
    assert_eq!(
        row.text("measured_at_precision").unwrap().as_deref(),
        Some("day")
    );
    check(
        &app,
        &[
            ("Observation?date=2024-03-05", &["temp"]),
            ("Observation?date=2024-03-05T12:00:00Z", &[]),
            ("Observation?date=gt2024-03-05T12:00:00Z", &["temp"]),
            ("Observation?date=lt2024-03-05T12:00:00Z", &["temp"]),
            ("Observation?date=sa2024-03-04", &["temp"]),
            ("Observation?date=eb2024-03-05T12:00:00Z", &[]),
            ("Observation?date=eb2024-03-06", &["temp"]),
        ],
    )
    .await;
}

/// Reads every page of `query` forwards, then back from the last page, and returns the ids
/// of both walks (the backward one put back in reading order).
async fn both_ways(app: &TestApp, query: &str) -> (Vec<String>, Vec<String>) {
    let mut page = app.get(&format!("/fhir/{query}")).await.body;
    let mut forwards = matches(&page);
    while let Some(next) = link(&page, "next") {
        page = get_url(app, &next).await.body;
        forwards.extend(matches(&page));
    }
    let mut pages = vec![matches(&page)];
    while let Some(previous) = link(&page, "previous") {
        page = get_url(app, &previous).await.body;
        pages.push(matches(&page));
    }
    pages.reverse();
    (forwards, pages.concat())
}

async fn a_common_code_is_walked_in_row_order_past_rows_that_do_not_match(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patient =
        json!({"resourceType": "Patient", "id": "walker", "name": [{"family": "Walker"}]});
    assert!(app
        .put("/fhir/Patient/walker", &patient)
        .await
        .status
        .is_success());
    // 200 heart rates (vital_signs rows) and 200 glucose results, half of them coded by the
    // laboratory first and LOINC second (the search index holds the second coding).
    let entries = (0..400)
        .map(|i| {
            let (c, cat) = match i % 4 {
                0 | 2 => (code(LOINC, "8867-4", "Heart rate"), "vital-signs"),
                1 => (code(LOINC, "2339-0", "Glucose"), "laboratory"),
                _ => (
                    json!({"coding": [{"system": "http://lab.example/codes", "code": "GLU"},
                        {"system": LOINC, "code": "2339-0"}]}),
                    "laboratory",
                ),
            };
            let o = json!({"resourceType": "Observation", "id": format!("walk-{i}"), "status": "final",
                "code": c, "category": category(cat), "subject": {"reference": "Patient/walker"},
                "effectiveDateTime": "2024-01-10T09:15:00Z", "valueQuantity": quantity(60 + i, "/min")});
            json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/walk-{i}")}})
        })
        .collect();
    let r = app.post("/fhir", &common::transaction(entries)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let db = &app.db;
    let rows = |sql: &'static str| async move {
        db.fetch_all(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.string("fhir_id").unwrap())
            .collect::<Vec<_>>()
    };
    let vitals = rows("SELECT fhir_id FROM vital_sign_observations ORDER BY id").await;
    let results = rows("SELECT fhir_id FROM medical_test_results ORDER BY id").await;
    assert_eq!((vitals.len(), results.len()), (200, 200));
    // In the order of the rows' ids (the pages' order), all but the last three of each code
    // are deleted: a page of one or two walks its first rounds past deleted rows only, and
    // finds the rest the usual way (the value turned none away: the narrow list would not help).
    let deletes = vitals[..197]
        .iter()
        .chain(&results[..197])
        .map(|id| json!({"request": {"method": "DELETE", "url": format!("Observation/{id}")}}))
        .collect();
    let r = app.post("/fhir", &common::transaction(deletes)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (code, live) in [("8867-4", &vitals[197..]), ("2339-0", &results[197..])] {
        for query in [
            format!("Observation?code={LOINC}|{code}&_count=2"),
            format!("Observation?code={code}&_count=1"),
            format!("Observation?code-value-quantity={LOINC}|{code}$gt0&_count=2"),
            format!("Observation?code={code}&_count=5"),
        ] {
            let (forwards, backwards) = both_ways(&app, &query).await;
            assert_eq!(
                forwards, live,
                "{query}: the live rows, in row order, once each"
            );
            assert_eq!(backwards, live, "{query}: walked back");
        }
        // A value the walk tests on each row, and a count asked for.
        let value = |id: &String| id.trim_start_matches("walk-").parse::<i64>().unwrap() + 60;
        let threshold = value(&live[1]);
        let high: Vec<String> = live
            .iter()
            .filter(|id| value(id) > threshold)
            .cloned()
            .collect();
        let query =
            format!("Observation?code-value-quantity={LOINC}|{code}$gt{threshold}&_count=1");
        assert_eq!(both_ways(&app, &query).await.0, high, "{query}");
        let counted = app
            .get(&format!(
                "/fhir/Observation?code={code}&_count=2&_total=accurate"
            ))
            .await
            .body;
        assert_eq!(counted["total"], 3);
        assert_eq!(matches(&counted), live[..2].to_vec());
    }
}

async fn a_rare_value_is_found_through_the_index_of_codes_and_values(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patient = json!({"resourceType": "Patient", "id": "rare", "name": [{"family": "Rare"}]});
    assert!(app
        .put("/fhir/Patient/rare", &patient)
        .await
        .status
        .is_success());
    // Glucose results (rows of medical_test_results) and body weights (vital signs: rows of
    // vital_sign_observations whose value lives in vital_signs), each tested by its own select.
    rare_values(
        &app,
        "2339-0",
        "laboratory",
        "mg/dL",
        "medical_test_results",
    )
    .await;
    rare_values(
        &app,
        "29463-7",
        "vital-signs",
        "kg",
        "vital_sign_observations",
    )
    .await;
}

/// 300 Observations of `code` with the values 0 to 299: few are over 280, so after its rounds
/// the walk goes on through the rows the index of codes and values lists.
async fn rare_values(app: &TestApp, code_: &str, cat: &str, unit: &str, table: &str) {
    let entries = (0..300)
        .map(|i| {
            let o = json!({"resourceType": "Observation", "id": format!("rare-{code_}-{i}"),
                "status": "final", "code": code(LOINC, code_, code_), "category": category(cat),
                "subject": {"reference": "Patient/rare"}, "effectiveDateTime": "2024-01-10T09:15:00Z",
                "valueQuantity": quantity(i, unit)});
            json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/rare-{code_}-{i}")}})
        })
        .collect();
    let r = app.post("/fhir", &common::transaction(entries)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Some of the high ones deleted: those rounds must test the other conditions too (with
    // them left out, this fails on SQLite, whose row ids follow the order of the writes, so that
    // the walk's rounds meet only low values).
    let deletes = (281..300)
        .filter(|i| i % 3 == 0)
        .map(|i| json!({"request": {"method": "DELETE", "url": format!("Observation/rare-{code_}-{i}")}}))
        .collect();
    let r = app.post("/fhir", &common::transaction(deletes)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let prefix = format!("rare-{code_}-");
    let value = |id: &String| id.trim_start_matches(&prefix).parse::<i64>().unwrap();
    let in_row_order: Vec<String> = app
        .db
        .fetch_all(&format!("SELECT fhir_id FROM {table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.string("fhir_id").unwrap())
        .collect();
    assert_eq!(in_row_order.len(), 300);
    for (threshold, count) in [(280, 3), (296, 1), (150, 7)] {
        let expected: Vec<String> = in_row_order
            .iter()
            .filter(|id| value(id) > threshold && (value(id) <= 280 || value(id) % 3 != 0))
            .cloned()
            .collect();
        let query =
            format!("Observation?code-value-quantity={LOINC}|{code_}$gt{threshold}&_count={count}");
        let (forwards, backwards) = both_ways(app, &query).await;
        assert_eq!(forwards, expected, "{query}: the live matches in row order");
        assert_eq!(backwards, expected, "{query}: walked back");
    }
}

on_both_engines!(
    strings_match_start_exact_and_contains,
    tokens_with_systems_not_text_of_type_and_missing,
    dates_compare_ranges_for_every_prefix,
    quantities_and_composites,
    references_chains_and_reverse_chains,
    includes_and_revincludes,
    sorting_is_stable_and_pages_in_order,
    summary_elements_and_total,
    compartment_cross_type_and_post,
    bad_searches_are_400s_naming_the_problem,
    paging_walks_a_thousand_matches_exactly_once_while_rows_are_inserted,
    search_entries_show_changes_the_clinic_made_with_sql,
    vital_signs_dated_to_the_day_are_searched_as_the_whole_day,
    a_common_code_is_walked_in_row_order_past_rows_that_do_not_match,
    a_rare_value_is_found_through_the_index_of_codes_and_values,
);

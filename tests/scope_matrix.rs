//! The scope matrix over HTTP, with tokens minted by `expediente token`: every hosted type ×
//! read, vread, search, history, create, update, patch, delete and $validate × SMART v1 and v2 ×
//! patient/, user/ and system/ × `*` and a named type, and v2 query filters. What a scope
//! allows succeeds; the rest is a 403 and changes nothing. The expected answer comes from a
//! model of the scopes written here, not from the server's parser. On both engines.

mod common;

use common::acting::{add_user, mint, register};
use common::{Engine, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The Patient last: deleting it first would leave the others nobody to refer to.
const TYPES: [&str; 7] = [
    "Practitioner",
    "Encounter",
    "Observation",
    "MedicationRequest",
    "DiagnosticReport",
    "AllergyIntolerance",
    "Patient",
];
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const ADMIN: &str = "admin@clinic.example";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Context {
    Patient,
    User,
    System,
}

/// One token's scope, as the model sees it.
#[derive(Debug)]
struct Form {
    context: Context,
    /// None: `*`.
    named: Option<&'static str>,
    /// The scope's permission as written (`read`, `*`, `rs`...).
    permission: &'static str,
}

impl Form {
    fn scope(&self) -> String {
        let prefix = match self.context {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        };
        format!("{prefix}/{}.{}", self.named.unwrap_or("*"), self.permission)
    }

    /// The SMART v2 letters of the permission (v1: read = rs, write = cud, * = cruds).
    fn letters(&self) -> &'static str {
        match self.permission {
            "read" => "rs",
            "write" => "cud",
            "*" => "cruds",
            v2 => v2,
        }
    }

    fn allows(&self, letter: char, resource_type: &str) -> bool {
        // Practitioner belongs to no patient: patient/ scopes read it, never write it.
        let unwritable = self.context == Context::Patient
            && resource_type == "Practitioner"
            && "cud".contains(letter);
        self.named.is_none_or(|n| n == resource_type)
            && self.letters().contains(letter)
            && !unwritable
    }
}

fn forms() -> Vec<Form> {
    let permissions = [
        "read", "write", "*", "cruds", "rs", "cud", "r", "s", "c", "u", "d",
    ];
    let mut out = Vec::new();
    let mut k = 0;
    for context in [Context::Patient, Context::User, Context::System] {
        for permission in permissions {
            out.push(Form {
                context,
                named: None,
                permission,
            });
            // Named forms take the hosted types in turn, so each is named in every context.
            out.push(Form {
                context,
                named: Some(TYPES[k % TYPES.len()]),
                permission,
            });
            k += 1;
        }
    }
    out
}

fn observation(patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {"value": 90, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
}

/// A resource of `resource_type` about patient `p`, without id.
fn resource(resource_type: &str, p: &str) -> Value {
    let subject = json!({"reference": format!("Patient/{p}")});
    match resource_type {
        "Patient" => json!({"resourceType": "Patient", "name": [{"family": p}]}),
        "Practitioner" => json!({"resourceType": "Practitioner", "name": [{"family": "Ruiz"}]}),
        "Encounter" => json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": subject}),
        "Observation" => observation(p, "laboratory"),
        "MedicationRequest" => json!({"resourceType": "MedicationRequest", "status": "active",
            "intent": "order", "subject": subject,
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]}}),
        "DiagnosticReport" => json!({"resourceType": "DiagnosticReport", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": subject}),
        "AllergyIntolerance" => json!({"resourceType": "AllergyIntolerance",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
            "patient": subject}),
        other => panic!("no fixture for {other}"),
    }
}

fn fixture_id(resource_type: &str, p: &str) -> String {
    match resource_type {
        "Patient" => p.to_owned(),
        other => format!("{p}-{}", other.to_lowercase()),
    }
}

/// Puts one resource of every hosted type about patient `p` (as the test's backend client).
async fn fixtures(app: &TestApp, p: &str) {
    for rt in TYPES.iter().rev() {
        let id = fixture_id(rt, p);
        let mut r = resource(rt, p);
        r["id"] = json!(id);
        let put = app.put(&format!("/fhir/{rt}/{id}"), &r).await;
        assert!(put.status.is_success(), "{rt}/{id}: {}", put.text);
    }
}

fn expect(allowed: bool, success: StatusCode) -> StatusCode {
    if allowed {
        success
    } else {
        StatusCode::FORBIDDEN
    }
}

/// Every interaction on every type with the token of `form`, for patient `p`'s fixtures.
async fn check_form(app: &TestApp, form: &Form, p: &str) {
    let mut extra = vec![];
    if form.context != Context::System {
        extra.extend(["--user", ADMIN]);
    }
    if form.context == Context::Patient {
        extra.extend(["--patient", p]);
    }
    let token = mint(app, "matrix", &form.scope(), &extra)
        .unwrap_or_else(|e| panic!("a token for {}: {e}", form.scope()));
    fixtures(app, p).await;
    let me = app.as_token(&token);
    for rt in TYPES {
        let id = fixture_id(rt, p);
        let at = format!("/fhir/{rt}/{id}");
        let what = |i: &str| format!("{} {i} {rt}", form.scope());
        let r = me.get(&at).await;
        assert_eq!(
            r.status,
            expect(form.allows('r', rt), StatusCode::OK),
            "{}: {}",
            what("read"),
            r.text
        );
        if r.status == StatusCode::FORBIDDEN {
            assert_eq!(r.body["resourceType"], "OperationOutcome");
            assert!(
                r.text.contains(&format!("{rt}.r")),
                "names the scope: {}",
                r.text
            );
        }
        let r = me.get(&format!("{at}/_history/1")).await;
        assert_eq!(
            r.status,
            expect(form.allows('r', rt), StatusCode::OK),
            "{}",
            what("vread")
        );
        let r = me.get(&format!("{at}/_history")).await;
        assert_eq!(
            r.status,
            expect(form.allows('r', rt), StatusCode::OK),
            "{}",
            what("history")
        );
        let r = me.get(&format!("/fhir/{rt}?_id={id}")).await;
        assert_eq!(
            r.status,
            expect(form.allows('s', rt), StatusCode::OK),
            "{}",
            what("search")
        );
        if r.status == StatusCode::OK {
            assert_eq!(
                TestApp::ids(&r.body),
                vec![id.clone()],
                "{}",
                what("search")
            );
        }
        // A new Patient is nobody's compartment but its own: not the patient in context.
        let creatable = !(form.context == Context::Patient && rt == "Patient");
        let r = me.post(&format!("/fhir/{rt}"), &resource(rt, p)).await;
        assert_eq!(
            r.status,
            expect(form.allows('c', rt) && creatable, StatusCode::CREATED),
            "{}: {}",
            what("create"),
            r.text
        );
        if creatable {
            let r = me
                .post(&format!("/fhir/{rt}/$validate"), &resource(rt, p))
                .await;
            let expected = expect(form.allows('c', rt), StatusCode::OK);
            assert_eq!(r.status, expected, "{}: {}", what("$validate"), r.text);
        }
        let mut body = resource(rt, p);
        body["id"] = json!(id);
        let r = me.put(&at, &body).await;
        assert_eq!(
            r.status,
            expect(form.allows('u', rt), StatusCode::OK),
            "{}: {}",
            what("update"),
            r.text
        );
        // Without the read right, a write answers without the resource.
        if r.status == StatusCode::OK && !form.allows('r', rt) {
            assert_ne!(r.body["resourceType"], rt, "{}: {}", what("update"), r.text);
        }
        let r = me
            .patch(&at, &json!([{"op": "test", "path": "/id", "value": id}]))
            .await;
        // A patch reads what it changes: it takes r and u.
        assert_eq!(
            r.status,
            expect(form.allows('u', rt) && form.allows('r', rt), StatusCode::OK),
            "{}: {}",
            what("patch"),
            r.text
        );
        let r = me.delete(&at).await;
        if form.allows('d', rt) {
            assert!(r.status.is_success(), "{}: {}", what("delete"), r.text);
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", what("delete"));
        }
        // What the token deleted is gone for it too, and its versions stay readable.
        if form.allows('d', rt) && form.allows('r', rt) {
            assert_eq!(
                me.get(&at).await.status,
                StatusCode::GONE,
                "{}",
                what("read deleted")
            );
            let v1 = me.get(&format!("{at}/_history/1")).await;
            assert_eq!(v1.status, StatusCode::OK, "{}", what("vread deleted"));
        }
        // What was refused changed nothing; what was allowed happened.
        let after = app.get(&at).await.status;
        let expected = if form.allows('d', rt) {
            StatusCode::GONE
        } else {
            StatusCode::OK
        };
        assert_eq!(after, expected, "{} then read", what("delete"));
    }
}

async fn every_scope_form_allows_what_it_says_and_nothing_else(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    register(
        &app,
        "matrix",
        "patient/*.cruds user/*.cruds system/*.cruds",
    );
    add_user(&app, ADMIN, "administrator", &[]);
    for (n, form) in forms().iter().enumerate() {
        check_form(&app, form, &format!("p{n}")).await;
    }
}

/// Query filters of v2 scopes: only the Observations the filter keeps are read, found and
/// written; the others are absent (404) to reads and refused (403) to writes.
async fn a_filtered_scope_reaches_only_what_its_filter_keeps(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    register(
        &app,
        "matrix",
        "patient/*.cruds user/*.cruds system/*.cruds",
    );
    add_user(&app, ADMIN, "administrator", &[]);
    let cases = [
        ("patient", "rs", "laboratory", "vital-signs"),
        ("user", "cruds", "vital-signs", "laboratory"),
        ("system", "cruds", "laboratory", "vital-signs"),
    ];
    for (n, (context, permission, kept, other)) in cases.into_iter().enumerate() {
        let p = format!("f{n}");
        fixtures(&app, &p).await;
        for (id, category) in [(format!("{p}-kept"), kept), (format!("{p}-other"), other)] {
            let mut o = observation(&p, category);
            o["id"] = json!(id);
            assert!(app
                .put(&format!("/fhir/Observation/{id}"), &o)
                .await
                .status
                .is_success());
        }
        let scope = format!("{context}/Observation.{permission}?category={CATEGORY}|{kept}");
        let mut extra = vec![];
        if context != "system" {
            extra.extend(["--user", ADMIN]);
        }
        if context == "patient" {
            extra.extend(["--patient", &p]);
        }
        let token = mint(&app, "matrix", &scope, &extra).unwrap();
        let me = app.as_token(&token);
        let kept_id = format!("{p}-kept");
        let other_id = format!("{p}-other");
        assert_eq!(
            me.get(&format!("/fhir/Observation/{kept_id}")).await.status,
            200,
            "{scope}"
        );
        assert_eq!(
            me.get(&format!("/fhir/Observation/{other_id}"))
                .await
                .status,
            404,
            "{scope}"
        );
        let found = me
            .get(&format!(
                "/fhir/Observation?subject=Patient/{p}&_total=accurate"
            ))
            .await;
        assert_eq!(found.status, 200);
        // The fixtures hold one laboratory Observation more.
        let mut expected = vec![kept_id.clone()];
        if kept == "laboratory" {
            expected.push(format!("{p}-observation"));
        }
        let mut ids = TestApp::ids(&found.body);
        ids.sort();
        expected.sort();
        assert_eq!(ids, expected, "{scope}");
        assert_eq!(
            found.body["total"],
            expected.len(),
            "{scope}: the total counts only what the filter keeps"
        );
        // Other types: nothing.
        assert_eq!(
            me.get(&format!("/fhir/Encounter/{p}-encounter"))
                .await
                .status,
            403
        );
        if permission.contains('c') {
            let r = me.post("/fhir/Observation", &observation(&p, kept)).await;
            assert_eq!(r.status, 201, "{scope}: {}", r.text);
            let before = app.count("resource_versions").await;
            let r = me.post("/fhir/Observation", &observation(&p, other)).await;
            assert_eq!(r.status, 403, "{scope}: {}", r.text);
            assert_eq!(
                app.count("resource_versions").await,
                before,
                "a refused create writes nothing"
            );
            // Moving the kept one out of the filter is refused too.
            let mut moved = observation(&p, other);
            moved["id"] = json!(kept_id);
            let r = me
                .put(&format!("/fhir/Observation/{kept_id}"), &moved)
                .await;
            assert_eq!(r.status, 403, "{scope}: {}", r.text);
            let stored = app.get(&format!("/fhir/Observation/{kept_id}")).await;
            assert_eq!(stored.body["category"][0]["coding"][0]["code"], kept);
        } else {
            let r = me.post("/fhir/Observation", &observation(&p, kept)).await;
            assert_eq!(r.status, 403, "{scope}: {}", r.text);
        }
    }
}

/// Update as create takes the create right too; a scope's filter may not reach other types
/// through a chain or `_has` (such a scope grants nothing).
async fn update_as_create_and_filters_stay_within_the_scopes(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    register(&app, "matrix", "system/*.cruds");
    fixtures(&app, "u0").await;
    let updater = mint(&app, "matrix", "system/Observation.u", &[]).unwrap();
    let me = app.as_token(&updater);
    let mut o = resource("Observation", "u0");
    o["id"] = json!("u0-observation");
    assert_eq!(
        me.put("/fhir/Observation/u0-observation", &o).await.status,
        200
    );
    o["id"] = json!("u0-new");
    let r = me.put("/fhir/Observation/u0-new", &o).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("Observation.c"), "{}", r.text);
    assert_eq!(app.get("/fhir/Observation/u0-new").await.status, 404);
    let both = mint(&app, "matrix", "system/Observation.cu", &[]).unwrap();
    let r = app
        .as_token(&both)
        .put("/fhir/Observation/u0-new", &o)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // A conditional create in a transaction takes the create right, before any lookup.
    let reader = mint(&app, "matrix", "system/Observation.rs", &[]).unwrap();
    let mut fresh = resource("Observation", "u0");
    fresh["identifier"] = json!([{"system": "http://clinic.example/obs", "value": "o-1"}]);
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:5b0f6a36-2d1c-4f5e-8a3b-6c7d8e9f0a11", "resource": fresh,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=http://clinic.example/obs|o-1"}}]});
    let r = app.as_token(&reader).post("/fhir", &tx).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("Observation.c"), "{}", r.text);
    let r = app.as_token(&both).post("/fhir", &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A plain filter narrows; a chained or _has one grants nothing.
    async fn family(app: &TestApp, scope: &str) -> i64 {
        let t = mint(app, "matrix", scope, &[]).unwrap();
        let r = app.as_token(&t).get("/fhir/Patient?_total=accurate").await;
        assert_eq!(r.status, 200, "{scope}: {}", r.text);
        r.body["total"].as_i64().unwrap()
    }
    assert_eq!(family(&app, "system/Patient.rs").await, 1);
    assert_eq!(family(&app, "system/Patient.rs?family=u0").await, 1);
    assert_eq!(family(&app, "system/Patient.rs?family=nobody").await, 0);
    for sneaky in [
        "system/Patient.rs?_has:Observation:patient:code=http://loinc.org|2339-0",
        "system/Patient.rs?general-practitioner.name=Ruiz",
        "system/Patient.rs?family:contains=u",
    ] {
        assert_eq!(family(&app, sneaky).await, 0, "{sneaky}");
    }
}

/// A batch's conditional creates are read ahead together before its writes, through the
/// caller's reach: a match is found (and answered) only for a caller who may read it; for one
/// who may not, it is absent, as it would be one entry at a time.
async fn a_batch_conditional_create_finds_only_what_its_caller_may_read(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    register(&app, "matrix", "system/*.cruds");
    let doctor = |n: &str| {
        json!({"resource": {"resourceType": "Practitioner",
               "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}],
               "name": [{"family": "Heldname"}]},
               "request": {"method": "POST", "url": "Practitioner",
               "ifNoneExist": format!("identifier=http://hl7.org/fhir/sid/us-npi|{n}")}})
    };
    let batch =
        |entries: Vec<Value>| json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    let first = app.post("/fhir", &batch(vec![doctor("900")])).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let held = first.body["entry"][0]["response"]["location"].clone();
    let before = app.count("users").await;
    let statuses = |r: &Value| -> Vec<String> {
        (0..2)
            .map(|i| {
                r["entry"][i]["response"]["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };

    let reader = mint(&app, "matrix", "system/Practitioner.crs", &[]).unwrap();
    let r = app
        .as_token(&reader)
        .post("/fhir", &batch(vec![doctor("900"), doctor("901")]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(statuses(&r.body), ["200 OK", "201 Created"]);
    assert_eq!(r.body["entry"][0]["response"]["location"], held);
    assert_eq!(app.count("users").await, before + 1);

    // Without the read right, the held practitioner is absent: the entry creates, as for an
    // NPI no one holds, and its answer says nothing of the other.
    let creator = mint(&app, "matrix", "system/Practitioner.c", &[]).unwrap();
    let r = app
        .as_token(&creator)
        .post("/fhir", &batch(vec![doctor("900"), doctor("902")]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(statuses(&r.body), ["201 Created", "201 Created"]);
    assert_ne!(r.body["entry"][0]["response"]["location"], held);
    assert!(!r.text.contains("Heldname"), "{}", r.text);
    assert_eq!(app.count("users").await, before + 3);

    // Without the create right, nothing is looked up or written.
    let looker = mint(&app, "matrix", "system/Practitioner.rs", &[]).unwrap();
    let r = app
        .as_token(&looker)
        .post("/fhir", &batch(vec![doctor("900"), doctor("903")]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for s in statuses(&r.body) {
        assert!(s.starts_with("403"), "{}", r.text);
    }
    assert!(r.body["entry"][0]["response"].get("location").is_none());
    assert_eq!(app.count("users").await, before + 3);
}

on_both_engines!(
    a_batch_conditional_create_finds_only_what_its_caller_may_read,
    update_as_create_and_filters_stay_within_the_scopes,
    every_scope_form_allows_what_it_says_and_nothing_else,
    a_filtered_scope_reaches_only_what_its_filter_keeps,
);

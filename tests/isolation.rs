//! Cross-patient isolation over HTTP: a token for patient Ana (minted by `expediente token`)
//! tries to reach Beatriz's data by every path (reads, searches with chains, `_has`, includes and
//! revincludes, compartments, `$everything`, history, paging links made for another token,
//! conditional interactions and references, batches and transactions) and gets nothing of
//! Beatriz: not a resource, not a total, not the existence of an id. Role limits hold over HTTP
//! too. On both engines.

mod common;

use common::acting::{add_user, mint, register, As};
use common::{transaction, Engine, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SYS: &str = "http://clinic.example/mrn";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// A code only Beatriz's Observations carry.
const BEA_CODE: &str = "4548-4";

fn observation(id: &str, patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "identifier": [{"system": SYS, "value": format!("obs-{id}")}],
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
}

/// Every hosted type's resources of one patient, by (type, id).
fn records(p: &str, family: &str, code: &str) -> Vec<Value> {
    let subject = json!({"reference": format!("Patient/{p}")});
    vec![
        json!({"resourceType": "Patient", "id": p, "name": [{"family": family, "given": [p]}],
            "identifier": [{"system": SYS, "value": format!("mrn-{p}")}]}),
        json!({"resourceType": "Encounter", "id": format!("{p}-enc"), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": subject, "participant": [{"individual": {"reference": "Practitioner/dr-ruiz"}}]}),
        observation(&format!("{p}-obs1"), p, code),
        observation(&format!("{p}-obs2"), p, code),
        json!({"resourceType": "MedicationRequest", "id": format!("{p}-mr"), "status": "active",
            "intent": "order", "subject": subject,
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361"}]}}),
        json!({"resourceType": "DiagnosticReport", "id": format!("{p}-dr"), "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": subject, "result": [{"reference": format!("Observation/{p}-obs1")}]}),
        json!({"resourceType": "AllergyIntolerance", "id": format!("{p}-ai"),
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]},
            "patient": subject}),
    ]
}

/// Beatriz's ids, name and codes: none may appear in what Ana's token gets, unless Ana's
/// request itself named it (an error message may repeat what was asked).
const BEA_MARKS: [&str; 11] = [
    "\"beatriz\"",
    "Patient/beatriz",
    "mrn-beatriz",
    "beatriz-enc",
    "beatriz-obs1",
    "beatriz-obs2",
    "beatriz-mr",
    "beatriz-dr",
    "beatriz-ai",
    "Benitez",
    BEA_CODE,
];

fn nothing_of_beatriz(asked: &str, r: &common::Reply) {
    let decoded: String = form_urlencoded::parse(asked.as_bytes())
        .map(|(k, v)| format!("{k}={v}&"))
        .collect();
    // Ana's own report names one of Beatriz's results: that reference is Ana's data.
    let text = r
        .text
        .replace(r#"{"reference":"Observation/beatriz-obs2"}"#, "");
    for mark in BEA_MARKS {
        if asked.contains(mark) || decoded.contains(mark) {
            continue;
        }
        assert!(
            !text.contains(mark),
            "{asked}: '{mark}' leaked in {}",
            r.text
        );
    }
}

async fn clinic(app: &TestApp) {
    let dr = json!({"resourceType": "Practitioner", "id": "dr-ruiz", "name": [{"family": "Ruiz"}]});
    assert!(app
        .put("/fhir/Practitioner/dr-ruiz", &dr)
        .await
        .status
        .is_success());
    for (p, family, code) in [
        ("ana", "Alvarez", "2339-0"),
        ("beatriz", "Benitez", BEA_CODE),
    ] {
        for r in records(p, family, code) {
            let at = format!(
                "/fhir/{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            let put = app.put(&at, &r).await;
            assert!(put.status.is_success(), "{at}: {}", put.text);
        }
    }
    // Ana's report also points at one of Beatriz's results (a filing error the clinic made).
    let mut dr = records("ana", "Alvarez", "2339-0")[5].clone();
    dr["result"] =
        json!([{"reference": "Observation/ana-obs1"}, {"reference": "Observation/beatriz-obs2"}]);
    assert!(app
        .put("/fhir/DiagnosticReport/ana-dr", &dr)
        .await
        .status
        .is_success());
}

async fn ana_token(app: &TestApp, scope: &str) -> String {
    register(app, "portal", "patient/*.cruds user/*.cruds");
    add_user(app, "ana@clinic.example", "patient", &["--patient", "ana"]);
    add_user(app, "admin@clinic.example", "administrator", &[]);
    mint(
        app,
        "portal",
        scope,
        &["--user", "admin@clinic.example", "--patient", "ana"],
    )
    .unwrap()
}

async fn found(me: &As<'_>, path: &str) -> Vec<String> {
    let r = me.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    nothing_of_beatriz(path, &r);
    let mut ids = TestApp::ids(&r.body);
    ids.sort();
    ids
}

async fn reads_and_searches_reach_nothing_of_another_patient(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let token = ana_token(&app, "patient/*.cruds").await;
    let me = app.as_token(&token);

    // Reads, vreads and histories of Beatriz's resources: absent.
    for r in records("beatriz", "Benitez", BEA_CODE) {
        let at = format!(
            "/fhir/{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        for path in [
            at.clone(),
            format!("{at}/_history/1"),
            format!("{at}/_history"),
        ] {
            let got = me.get(&path).await;
            assert_eq!(got.status, StatusCode::NOT_FOUND, "{path}: {}", got.text);
            nothing_of_beatriz(&path, &got);
        }
        // And the same answer as an id that never existed.
        let ty = r["resourceType"].as_str().unwrap();
        let never = me.get(&format!("/fhir/{ty}/never-was")).await;
        assert_eq!(never.status, StatusCode::NOT_FOUND);
    }
    // Searches: Ana's own, totals included.
    let obs = vec!["ana-obs1".to_owned(), "ana-obs2".to_owned()];
    assert_eq!(found(&me, "/fhir/Observation?_total=accurate").await, obs);
    // A search without a patient is narrowed to Ana's compartment, type by type.
    for (ty, ids) in [
        ("Patient", vec!["ana"]),
        ("Encounter", vec!["ana-enc"]),
        ("MedicationRequest", vec!["ana-mr"]),
        ("DiagnosticReport", vec!["ana-dr"]),
        ("AllergyIntolerance", vec!["ana-ai"]),
        ("Practitioner", vec!["dr-ruiz"]),
    ] {
        assert_eq!(
            found(&me, &format!("/fhir/{ty}?_total=accurate")).await,
            ids,
            "{ty}"
        );
    }
    let count = me.get("/fhir/Observation?_summary=count").await;
    assert_eq!(count.body["total"], 2, "{}", count.text);
    // A code across patients, without a count, is walked row by row: Ana's token walks only
    // Ana's, and the clinic's sees Beatriz's the same way.
    for (code, ana, clinic) in [
        ("2339-0", obs.clone(), obs.clone()),
        (
            BEA_CODE,
            vec![],
            vec!["beatriz-obs1".to_owned(), "beatriz-obs2".to_owned()],
        ),
    ] {
        for query in [
            format!("/fhir/Observation?code={code}&_count=1"),
            format!("/fhir/Observation?code-value-quantity=http://loinc.org|{code}$gt6&_count=1"),
        ] {
            let mut mine = Vec::new();
            let mut page = me.get(&query).await;
            loop {
                assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.text);
                nothing_of_beatriz(&query, &page);
                mine.extend(TestApp::ids(&page.body));
                let Some(next) = page.body["link"].as_array().and_then(|l| {
                    l.iter()
                        .find(|l| l["relation"] == "next")
                        .and_then(|l| l["url"].as_str())
                }) else {
                    break;
                };
                let next = next.trim_start_matches(&app.base).to_owned();
                page = me.get(&next).await;
            }
            mine.sort();
            assert_eq!(mine, ana, "{query}");
            let all = app.get(&query.replace("_count=1", "_count=10")).await;
            let mut seen = TestApp::ids(&all.body);
            seen.sort();
            assert_eq!(seen, clinic, "{query}");
        }
    }
    for query in [
        "Observation?subject.name=Benitez",
        "Observation?patient=beatriz",
        "Observation?patient=Patient/beatriz",
        &format!("Observation?patient.identifier={SYS}|mrn-beatriz"),
        &format!("Observation?code={BEA_CODE}"),
        &format!("Patient?_has:Observation:patient:code={BEA_CODE}"),
        "Patient?_id=beatriz&_revinclude=*",
        "Patient?name=Benitez",
        "Encounter?subject:Patient.family=Benitez",
        "Patient/beatriz/Observation",
        "?_type=Observation,Patient&_id=beatriz,beatriz-obs1",
    ] {
        let path = format!(
            "/fhir/{query}{}_total=accurate",
            if query.contains('?') { "&" } else { "?" }
        );
        let r = me.get(&path).await;
        nothing_of_beatriz(&path, &r);
        if r.status == StatusCode::OK {
            assert_eq!(r.body["total"], 0, "{path}: {}", r.text);
            assert!(TestApp::ids(&r.body).is_empty(), "{path}");
        } else {
            assert!(matches!(r.status.as_u16(), 403 | 404), "{path}: {}", r.text);
        }
    }
    // Without a count, a page of one list is read in the list's order (PostgreSQL): still only
    // what the token may see, while the clinic finds her.
    for query in ["Patient?name=Benitez", "Patient?family=Benitez&_count=1"] {
        let path = format!("/fhir/{query}");
        let r = me.get(&path).await;
        nothing_of_beatriz(&path, &r);
        if r.status == StatusCode::OK {
            assert!(TestApp::ids(&r.body).is_empty(), "{path}");
        } else {
            assert!(matches!(r.status.as_u16(), 403 | 404), "{path}: {}", r.text);
        }
        let all = app.get(&path).await;
        assert_eq!(TestApp::ids(&all.body), ["beatriz"], "{path}");
    }
    let form = me
        .post_form(
            "/fhir/Observation/_search",
            "patient=beatriz&_total=accurate",
        )
        .await;
    assert_eq!(form.body["total"], 0);
    nothing_of_beatriz("patient=beatriz", &form);
    // Includes and revincludes: only Ana's, though her report points at Beatriz's result.
    let got = found(
        &me,
        "/fhir/DiagnosticReport?_include=DiagnosticReport:result",
    )
    .await;
    assert_eq!(got, vec!["ana-dr", "ana-obs1"]);
    let got = found(
        &me,
        "/fhir/Patient?_revinclude=*&_include:iterate=DiagnosticReport:result",
    )
    .await;
    assert!(
        got.contains(&"ana".to_owned()) && got.contains(&"ana-dr".to_owned()),
        "{got:?}"
    );
    // $everything: Beatriz's is absent, Ana's holds nothing of Beatriz.
    assert_eq!(
        me.get("/fhir/Patient/beatriz/$everything").await.status,
        StatusCode::NOT_FOUND
    );
    let all = found(&me, "/fhir/Patient/ana/$everything").await;
    assert!(
        all.contains(&"ana-ai".to_owned()) && all.contains(&"dr-ruiz".to_owned()) || all.len() >= 7,
        "{all:?}"
    );
    // Type history.
    let h = me.get("/fhir/Observation/_history").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(TestApp::ids(&h.body).len(), 2, "{}", h.text);
    assert!(
        h.body.get("total").is_none(),
        "no total for a patient's token"
    );
    nothing_of_beatriz("", &h);
    // A paging link made for another token is answered for this one.
    let page = app.get("/fhir/Observation?_count=1&_sort=-_id").await;
    assert_eq!(
        page.body["entry"][0]["resource"]["id"], "beatriz-obs2",
        "{}",
        page.text
    );
    let next = page.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next page")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = next.strip_prefix(&app.base).unwrap_or(&next);
    let r = me.get(path).await;
    nothing_of_beatriz("", &r);
    // Beatriz's deleted resource is absent for Ana, not gone; Ana's own deleted one is gone.
    assert!(app
        .delete("/fhir/AllergyIntolerance/beatriz-ai")
        .await
        .status
        .is_success());
    assert!(app
        .delete("/fhir/AllergyIntolerance/ana-ai")
        .await
        .status
        .is_success());
    for path in [
        "/fhir/AllergyIntolerance/beatriz-ai",
        "/fhir/AllergyIntolerance/beatriz-ai/_history/1",
    ] {
        assert_eq!(me.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        me.get("/fhir/AllergyIntolerance/ana-ai").await.status,
        StatusCode::GONE
    );
    // A result filed under Beatriz, then moved to Ana: Ana's token sees the version that
    // names her, not the one about Beatriz.
    let mut moved = observation("beatriz-obs2", "beatriz", BEA_CODE);
    moved["subject"] = json!({"reference": "Patient/ana"});
    assert!(app
        .put("/fhir/Observation/beatriz-obs2", &moved)
        .await
        .status
        .is_success());
    let h = me.get("/fhir/Observation/beatriz-obs2/_history").await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text);
    let versions: Vec<&str> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["2"]);
    assert!(h.body.get("total").is_none());
    assert_eq!(
        me.get("/fhir/Observation/beatriz-obs2/_history/1")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        me.get("/fhir/Observation/beatriz-obs2/_history/2")
            .await
            .status,
        StatusCode::OK
    );
    // Paged one by one, the hidden version leaves no trace: no next page.
    let paged = me
        .get("/fhir/Observation/beatriz-obs2/_history?_count=1")
        .await;
    assert_eq!(TestApp::ids(&paged.body).len(), 1);
    let relations: Vec<&str> = paged.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["relation"].as_str().unwrap())
        .collect();
    assert_eq!(relations, vec!["self"], "{}", paged.text);
    // A clinician's token with Ana in context (reads not restricted) sees every version.
    let clinician = mint(
        &app,
        "portal",
        "user/*.rs",
        &["--user", "admin@clinic.example", "--patient", "ana"],
    )
    .unwrap();
    let v1 = app
        .as_token(&clinician)
        .get("/fhir/Observation/beatriz-obs2/_history/1")
        .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.text);
    assert_eq!(
        app.get("/fhir/Observation/beatriz-obs2/_history/1")
            .await
            .status,
        StatusCode::OK
    );
    // A batch of reads: each of Beatriz's is absent.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/beatriz-obs1"}},
        {"request": {"method": "GET", "url": "Observation?patient=beatriz&_total=accurate"}},
        {"request": {"method": "GET", "url": "Observation/ana-obs1"}}]});
    let r = me.post("/fhir", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    nothing_of_beatriz(&batch.to_string(), &r);
    assert!(r.body["entry"][0]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("404"));
    assert_eq!(r.body["entry"][1]["resource"]["total"], 0);
    assert!(r.body["entry"][2]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("200"));
}

fn mine_without_id() -> Value {
    let mut o = observation("x", "ana", "2339-0");
    o.as_object_mut().unwrap().remove("id");
    o
}

async fn writes_reach_nothing_of_another_patient(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let token = ana_token(&app, "patient/*.cruds").await;
    let me = app.as_token(&token);
    let reader = mint(
        &app,
        "portal",
        "patient/*.rs",
        &["--user", "admin@clinic.example", "--patient", "ana"],
    )
    .unwrap();
    let before = app.snapshot().await;

    // Beatriz's resources cannot be updated, patched or deleted: they are not there.
    let mut o = observation("beatriz-obs1", "ana", "2339-0");
    let r = me.put("/fhir/Observation/beatriz-obs1", &o).await;
    assert!(matches!(r.status.as_u16(), 403 | 404), "{}", r.text);
    let r = me
        .patch(
            "/fhir/Observation/beatriz-obs1",
            &json!([{"op": "replace", "path": "/status", "value": "amended"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(
        me.delete("/fhir/Observation/beatriz-obs1").await.status,
        StatusCode::NOT_FOUND
    );
    // Conditional delete and patch matching only Beatriz's: nothing happens to them.
    let asked = format!("/fhir/Observation?code={BEA_CODE}");
    let r = me.delete(&asked).await;
    nothing_of_beatriz(&asked, &r);
    let asked = format!("/fhir/Observation?identifier={SYS}|obs-beatriz-obs1");
    let r = me
        .patch(
            &asked,
            &json!([{"op": "replace", "path": "/status", "value": "amended"}]),
        )
        .await;
    nothing_of_beatriz(&asked, &r);
    assert!(!r.status.is_success(), "{}", r.text);
    // Writing about Beatriz is refused, as about a patient who does not exist.
    o.as_object_mut().unwrap().remove("id");
    o["subject"] = json!({"reference": "Patient/beatriz"});
    let about_her = me.post("/fhir/Observation", &o).await;
    o["subject"] = json!({"reference": "Patient/never-was"});
    let about_nobody = me.post("/fhir/Observation", &o).await;
    assert_eq!(about_her.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(about_her.status, about_nobody.status);
    // A conditional update that matches nothing, its body naming an id: taken by Beatriz or
    // free, the same answer; and a token that may not update gets a 403 before any lookup.
    let mut answers = Vec::new();
    for id in ["beatriz-obs1", "never-was"] {
        o["id"] = json!(id);
        o["subject"] = json!({"reference": "Patient/ana"});
        let r = me.put("/fhir/Observation?identifier=none|none", &o).await;
        answers.push((
            r.status,
            r.body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .replace(id, "X"),
        ));
    }
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    for id in ["beatriz", "never-was"] {
        let body = json!({"resourceType": "Patient", "id": id});
        let r = app
            .as_token(&reader)
            .put("/fhir/Patient?_id=nomatch", &body)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{id}: {}", r.text);
    }
    // Ana's token does not create by update with an id of its choosing: an id taken by
    // Beatriz, deleted, or free gets the same answer.
    o["subject"] = json!({"reference": "Patient/ana"});
    let answers: Vec<(StatusCode, String)> = {
        let mut out = Vec::new();
        for id in ["beatriz-obs1", "never-was"] {
            o["id"] = json!(id);
            let r = me.put(&format!("/fhir/Observation/{id}"), &o).await;
            out.push((
                r.status,
                r.body["issue"][0]["diagnostics"]
                    .as_str()
                    .unwrap_or_default()
                    .replace(id, "X"),
            ));
        }
        out
    };
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    // A transaction with a conditional update that would match Beatriz's, and a write about Beatriz:
    // refused whole.
    let mut about_beatriz = observation("x", "beatriz", "2339-0");
    about_beatriz.as_object_mut().unwrap().remove("id");
    let tx = transaction(vec![
        json!({"fullUrl": "urn:uuid:0c3f1a52-8a7e-4d0b-9a65-2d7c1f9e0a01", "resource": mine_without_id(),
            "request": {"method": "POST", "url": "Observation"}}),
        json!({"resource": about_beatriz,
            "request": {"method": "PUT", "url": format!("Observation?identifier={SYS}|obs-beatriz-obs2")}}),
    ]);
    let r = me.post("/fhir", &tx).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    nothing_of_beatriz(&tx.to_string(), &r);
    assert_eq!(
        app.snapshot().await,
        before,
        "nothing written, nothing of Beatriz touched"
    );
    // The same conditional update about Ana: her criteria find nothing of Beatriz's, so it
    // creates Ana's own.
    let mut about_ana = observation("x", "ana", "2339-0");
    about_ana.as_object_mut().unwrap().remove("id");
    let tx = transaction(vec![
        json!({"fullUrl": "urn:uuid:0c3f1a52-8a7e-4d0b-9a65-2d7c1f9e0a01", "resource": mine_without_id(),
            "request": {"method": "POST", "url": "Observation"}}),
        json!({"resource": about_ana,
            "request": {"method": "PUT", "url": format!("Observation?identifier={SYS}|obs-beatriz-obs2")}}),
    ]);
    let r = me.post("/fhir", &tx).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    nothing_of_beatriz(&tx.to_string(), &r);
    for e in r.body["entry"].as_array().unwrap() {
        assert!(
            e["response"]["status"].as_str().unwrap().starts_with("201"),
            "{e}"
        );
    }

    // A reference to Beatriz's resource answers as one to a resource that does not exist.
    let refer = |target: &str| {
        json!({"resourceType": "DiagnosticReport", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": {"reference": "Patient/ana"}, "result": [{"reference": target}]})
    };
    let to_beatriz = me
        .post("/fhir/DiagnosticReport", &refer("Observation/beatriz-obs1"))
        .await;
    let to_none = me
        .post("/fhir/DiagnosticReport", &refer("Observation/never-was"))
        .await;
    assert_eq!(
        to_beatriz.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        to_beatriz.text
    );
    assert_eq!(to_beatriz.status, to_none.status);
    assert_eq!(
        to_beatriz
            .text
            .replace("beatriz-obs1", "X")
            .split("\"diagnostics\"")
            .nth(1),
        to_none
            .text
            .replace("never-was", "X")
            .split("\"diagnostics\"")
            .nth(1)
    );
    let mut conditional = observation("y", "ana", "2339-0");
    conditional.as_object_mut().unwrap().remove("id");
    conditional["subject"] = json!({"reference": format!("Patient?identifier={SYS}|mrn-beatriz")});
    let r = me.post("/fhir/Observation", &conditional).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // A conditional create whose criteria match Beatriz's creates Ana's own, and says nothing of
    // Beatriz's.
    let mut mine = observation("z", "ana", "2339-0");
    mine.as_object_mut().unwrap().remove("id");
    let r = me
        .send(
            reqwest::Method::POST,
            "/fhir/Observation",
            Some(("application/fhir+json", mine.to_string())),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let with_criteria = app
        .client
        .post(app.url("/fhir/Observation"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/fhir+json")
        .header(
            "if-none-exist",
            format!("identifier={SYS}|obs-beatriz-obs1"),
        )
        .body(mine.to_string())
        .send()
        .await
        .unwrap();
    let r = TestApp::reply(with_criteria).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    nothing_of_beatriz("obs-beatriz-obs1", &r);
    // A batch (its writes tried together first): Ana's own writes are made, each write that
    // reaches Beatriz is refused as if she did not exist.
    let mut about_beatriz = observation("x", "beatriz", "2339-0");
    about_beatriz.as_object_mut().unwrap().remove("id");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": mine_without_id(), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation("beatriz-obs1", "ana", "2339-0"),
            "request": {"method": "PUT", "url": "Observation/beatriz-obs1"}},
        {"request": {"method": "DELETE", "url": "Observation/beatriz-obs1"}},
        {"resource": about_beatriz, "request": {"method": "POST", "url": "Observation"}},
        {"resource": mine_without_id(), "request": {"method": "POST", "url": "Observation"}},
    ]});
    let r = me.post("/fhir", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    nothing_of_beatriz(&batch.to_string(), &r);
    let statuses: Vec<&str> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses[0].starts_with("201"), "{statuses:?}");
    assert!(
        statuses[1].starts_with("403") || statuses[1].starts_with("404"),
        "{statuses:?}"
    );
    assert!(statuses[2].starts_with("404"), "{statuses:?}");
    assert!(statuses[3].starts_with("422"), "{statuses:?}");
    assert!(statuses[4].starts_with("201"), "{statuses:?}");
    // Beatriz's record is as it was.
    for r in records("beatriz", "Benitez", BEA_CODE) {
        let at = format!(
            "/fhir/{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let got = app.get(&at).await;
        assert_eq!(got.status, StatusCode::OK, "{at}");
        assert_eq!(got.body["meta"]["versionId"], "1", "{at}");
    }
}

/// A receptionist's token asks for `user/*.cruds`; the role still bounds it: Patients and
/// Encounters yes, Observations no.
async fn a_role_bounds_what_a_token_may_do(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    register(&app, "desk", "user/*.cruds");
    add_user(&app, "desk@clinic.example", "receptionist", &[]);
    add_user(
        &app,
        "nurse@clinic.example",
        "nurse",
        &["--practitioner", "dr-ruiz"],
    );
    let desk = mint(
        &app,
        "desk",
        "user/*.cruds",
        &["--user", "desk@clinic.example"],
    )
    .unwrap();
    let me = app.as_token(&desk);
    assert_eq!(me.get("/fhir/Patient/ana").await.status, StatusCode::OK);
    assert_eq!(
        me.get("/fhir/Encounter/ana-enc").await.status,
        StatusCode::OK
    );
    let r = me.get("/fhir/Observation/ana-obs1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("Observation.r"), "{}", r.text);
    assert_eq!(
        me.get("/fhir/Observation?patient=ana").await.status,
        StatusCode::FORBIDDEN
    );
    let r = me
        .get("/fhir/Patient?_id=ana&_revinclude=Observation:patient")
        .await;
    assert!(
        r.status == StatusCode::FORBIDDEN || TestApp::ids(&r.body) == vec!["ana"],
        "{}",
        r.text
    );
    // A nurse reads clinical data and writes vital signs, but no MedicationRequest.
    let nurse = mint(
        &app,
        "desk",
        "user/*.cruds",
        &["--user", "nurse@clinic.example"],
    )
    .unwrap();
    let me = app.as_token(&nurse);
    assert_eq!(
        me.get("/fhir/Observation/ana-obs1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        me.get("/fhir/MedicationRequest/ana-mr").await.status,
        StatusCode::OK
    );
    let mut vital = observation("ana-vs", "ana", "8867-4");
    vital["category"] = json!([{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}]);
    vital["valueQuantity"] =
        json!({"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"});
    vital.as_object_mut().unwrap().remove("id");
    let r = me.post("/fhir/Observation", &vital).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        me.post("/fhir/Observation", &mine_without_id())
            .await
            .status,
        StatusCode::FORBIDDEN,
        "a laboratory result is no vital sign"
    );
    // The nurse reads every Observation: a device's own id may be created by update, within
    // the vital-signs filter only.
    let mut device = vital.clone();
    device["id"] = json!("dev-123");
    let r = me.put("/fhir/Observation/dev-123", &device).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut lab = mine_without_id();
    lab["id"] = json!("dev-124");
    let r = me.put("/fhir/Observation/dev-124", &lab).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        app.get("/fhir/Observation/dev-124").await.status,
        StatusCode::NOT_FOUND
    );
    let mut mr = records("ana", "Alvarez", "2339-0")[4].clone();
    mr["status"] = json!("stopped");
    // A transaction with one entry the role forbids is refused whole.
    let vitals = "/fhir/Observation?code=8867-4&_total=accurate";
    let before = app.get(vitals).await.body["total"].clone();
    let tx = transaction(vec![
        json!({"fullUrl": "urn:uuid:0c3f1a52-8a7e-4d0b-9a65-2d7c1f9e0a02", "resource": vital,
            "request": {"method": "POST", "url": "Observation"}}),
        json!({"resource": mr.clone(), "request": {"method": "PUT", "url": "MedicationRequest/ana-mr"}}),
    ]);
    let r = me.post("/fhir", &tx).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("MedicationRequest.u"), "{}", r.text);
    assert_eq!(
        app.get(vitals).await.body["total"],
        before,
        "nothing written"
    );
    assert_eq!(
        me.put("/fhir/MedicationRequest/ana-mr", &mr).await.status,
        StatusCode::FORBIDDEN
    );
}

/// A value few of a code's rows pass, across patients, most of them another patient's: a
/// patient's token pages through its own matches only, while the clinic finds both patients'.
/// (The token's patient is a list of rows, so such a search is not walked: the walk and its
/// narrow list serve searches whose other conditions test a row by its own columns.)
async fn a_rare_value_across_patients_reaches_only_the_tokens_patient(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let token = ana_token(&app, "patient/*.rs").await;
    let me = app.as_token(&token);
    // Beatriz's 100 glucose values 0 to 99, then Ana's two high ones.
    let high = |p: &str, i: i64, v: i64| {
        let mut o = observation(&format!("{p}-glu-{i}"), p, "2339-0");
        o["valueQuantity"]["value"] = json!(v);
        json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/{p}-glu-{i}")}})
    };
    let beatriz = (0..100).map(|i| high("beatriz", i, i)).collect();
    let r = app.post("/fhir", &transaction(beatriz)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ana = (0..2).map(|i| high("ana", i, 95 + i)).collect();
    let r = app.post("/fhir", &transaction(ana)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let query = "/fhir/Observation?code-value-quantity=http://loinc.org|2339-0$gt90&_count=1";
    let mut mine = Vec::new();
    let mut page = me.get(query).await;
    loop {
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.text);
        nothing_of_beatriz(query, &page);
        mine.extend(TestApp::ids(&page.body));
        let next = page.body["link"].as_array().and_then(|l| {
            l.iter()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
        });
        let Some(next) = next else { break };
        page = me.get(next.trim_start_matches(&app.base)).await;
    }
    mine.sort();
    assert_eq!(mine, ["ana-glu-0", "ana-glu-1"], "{query}");
    // The clinic finds Beatriz's high values the same way.
    let all = app.get(&query.replace("_count=1", "_count=20")).await;
    let mut seen = TestApp::ids(&all.body);
    seen.sort();
    let expected: Vec<String> = ["ana-glu-0", "ana-glu-1"]
        .into_iter()
        .map(str::to_owned)
        .chain((91..100).map(|i| format!("beatriz-glu-{i}")))
        .collect();
    assert_eq!(seen, expected, "{query}");
}

on_both_engines!(
    reads_and_searches_reach_nothing_of_another_patient,
    writes_reach_nothing_of_another_patient,
    a_role_bounds_what_a_token_may_do,
    a_rare_value_across_patients_reaches_only_the_tokens_patient,
);

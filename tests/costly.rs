//! The costliest searches within the limits (every parameter repeated up to the limit, every
//! value list full) are answered, and rightly, over stored data, under a statement timeout that
//! a search whose SQL grew faster than its values would run past (503).

mod common;

use common::{Engine, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const PATIENTS: usize = 300;

async fn store_patients(app: &TestApp) -> Vec<String> {
    let entries: Vec<Value> = (0..PATIENTS)
        .map(|i| {
            let family = if i % 3 == 0 { "Mora" } else { "Lugo" };
            json!({
                "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": format!("{family}{i}"), "given": ["Eva", "Marta"]}],
                    "identifier": [{"system": "http://clinic.example/mrn", "value": format!("mrn-{i}")}]
                },
                "request": {"method": "POST", "url": "Patient"}
            })
        })
        .collect();
    let r = app.post("/fhir", &common::transaction(entries)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let all = app.get("/fhir/Patient?_count=1000&_elements=id").await;
    TestApp::ids(&all.body)
}

async fn post_search(app: &TestApp, body: String) -> common::Reply {
    let res = app
        .client
        .post(app.url("/fhir/Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    TestApp::reply(res).await
}

fn total(r: &common::Reply) -> i64 {
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["total"].as_i64().expect("a total")
}

async fn the_costliest_searches_within_the_limits_are_answered(engine: Engine) {
    let app = TestApp::spawn_settings(
        engine,
        expediente::Settings {
            statement_timeout: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .await;
    let ids = store_patients(&app).await;
    assert_eq!(ids.len(), PATIENTS);
    let repeat = |p: &str| vec![p; 48].join("&");
    // One parameter 48 times over: what one match costs, 48 times.
    let r = app
        .get(&format!(
            "/fhir/Patient?{}&_total=accurate",
            repeat("name=mo")
        ))
        .await;
    assert_eq!(total(&r), (PATIENTS / 3) as i64);
    let r = app
        .get(&format!(
            "/fhir/Patient?{}&_total=accurate",
            repeat("name:contains=art")
        ))
        .await;
    assert_eq!(total(&r), PATIENTS as i64);
    // 48 lists of 100 ids: 4,800 values.
    let hundred = ids[..100].join(",");
    let r = post_search(
        &app,
        format!("{}&_total=accurate", repeat(&format!("_id={hundred}"))),
    )
    .await;
    assert_eq!(total(&r), 100);
    // 48 lists of 100 identifiers, each list naming other patients but its first ten.
    let lists: Vec<String> = (0..48)
        .map(|k| {
            (0..100)
                .map(|i| {
                    let n = if i < 10 {
                        i
                    } else {
                        10 + (k * 90 + i) % (PATIENTS - 10)
                    };
                    format!("http://clinic.example/mrn|mrn-{n}")
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let body = lists
        .iter()
        .map(|l| format!("identifier={l}"))
        .collect::<Vec<_>>()
        .join("&");
    let r = post_search(&app, format!("{body}&_total=accurate")).await;
    assert_eq!(total(&r), 10);
}

on_both_engines!(the_costliest_searches_within_the_limits_are_answered);

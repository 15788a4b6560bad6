//! Patient search: each parameter against a small dataset whose answers are known, exact id
//! sets, and paging that walks the whole set exactly once.

mod common;

use common::{Engine, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// (id, family, given, gender, birthDate, active, identifier value)
const PEOPLE: &[(&str, &str, &str, &str, &str, bool, &str)] = &[
    (
        "ana",
        "García",
        "Ana",
        "female",
        "1980-05-17",
        true,
        "MRN-1",
    ),
    (
        "bruno",
        "Garcilaso",
        "Bruno",
        "male",
        "1980-11-02",
        true,
        "MRN-2",
    ),
    (
        "carla",
        "Pérez",
        "Carla María",
        "female",
        "1975",
        false,
        "MRN-3",
    ),
    ("diego", "Smith", "Diego", "male", "1990-01", true, "MRN-4"),
    (
        "elena",
        "Smithers",
        "Elena",
        "other",
        "2001-12-31",
        true,
        "MRN-5",
    ),
];

async fn load(app: &TestApp) {
    for (id, family, given, gender, birth, active, mrn) in PEOPLE {
        let p = json!({
            "resourceType": "Patient",
            "id": id,
            "identifier": [
                {"system": "http://clinic.example/mrn", "value": mrn},
                {"system": "urn:oid:2.16.840.1.113883.4.629", "value": format!("CURP-{id}")}
            ],
            "active": active,
            "name": [{"family": family, "given": given.split(' ').collect::<Vec<_>>()}],
            "gender": gender,
            "birthDate": birth
        });
        let r = app.put(&format!("/fhir/Patient/{id}"), &p).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}

async fn ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let r = app.get(&format!("/fhir/Patient?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    assert_eq!(r.body["type"], "searchset");
    let got: BTreeSet<String> = TestApp::ids(&r.body).into_iter().collect();
    assert_eq!(
        r.body["total"].as_u64().unwrap() as usize,
        got.len(),
        "{query}: total is honest"
    );
    got
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn each_parameter_returns_exactly_the_matching_ids(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let cases: &[(&str, &[&str])] = &[
        ("", &["ana", "bruno", "carla", "diego", "elena"]),
        ("_id=ana", &["ana"]),
        ("_id=ana,diego", &["ana", "diego"]),
        ("family=garc", &["ana", "bruno"]),
        ("family=GARCIA", &["ana"]),
        ("family=perez", &["carla"]),
        ("family:exact=García", &["ana"]),
        ("family:exact=garcía", &[]),
        ("family:contains=ith", &["diego", "elena"]),
        ("given=maria", &["carla"]),
        ("given=car", &["carla"]),
        ("name=smith", &["diego", "elena"]),
        ("name=ana", &["ana"]),
        ("name=smith&gender=male", &["diego"]),
        ("gender=female", &["ana", "carla"]),
        (
            "gender=http://hl7.org/fhir/administrative-gender|other",
            &["elena"],
        ),
        ("gender=http://example.org/other-system|female", &[]),
        ("gender=male,other", &["bruno", "diego", "elena"]),
        ("active=false", &["carla"]),
        ("active=true", &["ana", "bruno", "diego", "elena"]),
        ("identifier=MRN-2", &["bruno"]),
        ("identifier=http://clinic.example/mrn|MRN-3", &["carla"]),
        ("identifier=http://other.example|MRN-3", &[]),
        (
            "identifier=urn:oid:2.16.840.1.113883.4.629|",
            &["ana", "bruno", "carla", "diego", "elena"],
        ),
        ("identifier=|MRN-1", &[]),
        ("birthdate=1980", &["ana", "bruno"]),
        ("birthdate=1980-05", &["ana"]),
        ("birthdate=1980-05-17", &["ana"]),
        ("birthdate=eq1975", &["carla"]),
        ("birthdate=1975-06", &[]),
        ("birthdate=lt1980", &["carla"]),
        ("birthdate=le1980-05-17", &["ana", "carla"]),
        ("birthdate=gt1990-01-15", &["diego", "elena"]),
        ("birthdate=ge1990", &["diego", "elena"]),
        ("birthdate=ne1980", &["carla", "diego", "elena"]),
        ("birthdate=ge1980&birthdate=lt1981", &["ana", "bruno"]),
        ("birthdate=sa1990-12-31", &["elena"]),
        ("birthdate=eb1976", &["carla"]),
    ];
    for (q, want) in cases {
        assert_eq!(ids(&app, q).await, set(want), "Patient?{q}");
    }
}

async fn last_updated_filters_on_meta_last_updated(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let a = app
        .create(&json!({"resourceType": "Patient", "gender": "male"}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let b = app
        .create(&json!({"resourceType": "Patient", "gender": "male"}))
        .await;
    let b_time = b["meta"]["lastUpdated"].as_str().unwrap();
    let enc = |s: &str| s.replace('+', "%2B");
    let a_id = a["id"].as_str().unwrap();
    let b_id = b["id"].as_str().unwrap();
    assert_eq!(
        ids(&app, &format!("_lastUpdated=ge{}", enc(b_time))).await,
        set(&[b_id])
    );
    assert_eq!(
        ids(&app, &format!("_lastUpdated=lt{}", enc(b_time))).await,
        set(&[a_id])
    );
    let today = chrono::Utc::now().format("%Y").to_string();
    assert_eq!(
        ids(&app, &format!("_lastUpdated={today}")).await,
        set(&[a_id, b_id])
    );
    assert_eq!(ids(&app, "_lastUpdated=lt2000-01-01").await, set(&[]));
}

async fn malformed_values_are_a_400_naming_the_parameter(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for q in [
        "birthdate=yesterday",
        "birthdate=xx2000",
        "active=maybe",
        "_count=abc",
        "_count=-1",
        "_lastUpdated=2020-13",
        "family:soundex=x",
        "_total=some",
        "_cursor=zzz",
    ] {
        let r = app.get(&format!("/fhir/Patient?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        let name = q.split(['=', ':']).next().unwrap();
        assert!(r.outcome()[0].1.contains(name), "{q}: {:?}", r.outcome());
    }
}

async fn unknown_parameters_are_ignored_unless_handling_is_strict(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let r = app
        .get("/fhir/Patient?gender=female&nonsense=1&_contained=true")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["total"], 2);
    let self_link = r.body["link"][0]["url"].as_str().unwrap();
    assert_eq!(r.body["link"][0]["relation"], "self");
    assert!(self_link.contains("gender=female"));
    assert!(
        !self_link.contains("nonsense") && !self_link.contains("_contained"),
        "{self_link}"
    );
    let strict = app
        .send(
            Method::GET,
            "/fhir/Patient?gender=female&nonsense=1",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert!(strict.outcome()[0].1.contains("nonsense"));
    // The result parameters are known parameters under strict handling too.
    let results = app
        .send(
            Method::GET,
            "/fhir/Patient?gender=female&_count=1&_total=accurate&_summary=true&_elements=name&_sort=family&_format=json",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(results.status, StatusCode::OK, "{}", results.text);
    assert_eq!(results.body["total"], 2);
    assert_eq!(results.body["entry"].as_array().map(Vec::len), Some(1));
}

async fn search_entries_have_full_url_and_match_mode(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    load(&app).await;
    let r = app.get("/fhir/Patient?_id=ana").await;
    let e = &r.body["entry"][0];
    assert_eq!(e["fullUrl"], app.url("/fhir/Patient/ana"));
    assert_eq!(e["search"]["mode"], "match");
    assert_eq!(e["resource"]["name"][0]["family"], "García");
    assert_eq!(
        app.get("/fhir/Patient?_id=ana&_total=none")
            .await
            .body
            .get("total"),
        None
    );
    let counted = app.get("/fhir/Patient?_count=0").await;
    assert_eq!(counted.body["total"], 5);
    assert!(counted.body.get("entry").is_none());
}

async fn follow(app: &TestApp, bundle: &Value, relation: &str) -> Option<Value> {
    let url = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)?["url"]
        .as_str()?
        .to_owned();
    let r = TestApp::reply(app.client.get(url).send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    Some(r.body)
}

async fn paging_walks_the_whole_set_exactly_once_both_ways(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut created = BTreeSet::new();
    for i in 0..23 {
        let p = app
            .create(&json!({"resourceType": "Patient", "name": [{"family": format!("Paged{i}")}]}))
            .await;
        created.insert(p["id"].as_str().unwrap().to_owned());
    }
    app.create(&json!({"resourceType": "Patient", "name": [{"family": "Other"}]}))
        .await;
    // A deleted match is no page's.
    let gone = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "PagedGone"}]}))
        .await;
    let gone = format!("/fhir/Patient/{}", gone["id"].as_str().unwrap());
    assert!(app.delete(&gone).await.status.is_success());
    let mut page = app.get("/fhir/Patient?family=paged&_count=5").await.body;
    let mut seen = Vec::new();
    let mut pages = vec![TestApp::ids(&page)];
    seen.extend(TestApp::ids(&page));
    // A total of a result longer than its first page only when asked for (counting it means
    // finding every match).
    assert!(page.get("total").is_none(), "{page}");
    let counted = app
        .get("/fhir/Patient?family=paged&_count=5&_total=accurate")
        .await;
    assert_eq!(counted.body["total"], 23);
    assert_eq!(TestApp::ids(&counted.body), pages[0]);
    while let Some(next) = follow(&app, &page, "next").await {
        // Inserts while paging do not disturb the walk (keyset paging).
        app.create(&json!({"resourceType": "Patient", "name": [{"family": "Unrelated"}]}))
            .await;
        seen.extend(TestApp::ids(&next));
        pages.push(TestApp::ids(&next));
        page = next;
    }
    assert_eq!(pages.len(), 5);
    assert_eq!(seen.len(), 23, "no id twice");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);
    // And back again with previous links.
    let mut back = Vec::new();
    while let Some(prev) = follow(&app, &page, "previous").await {
        back.push(TestApp::ids(&prev));
        page = prev;
    }
    back.reverse();
    assert_eq!(back, pages[..pages.len() - 1].to_vec());
}

on_both_engines!(
    each_parameter_returns_exactly_the_matching_ids,
    last_updated_filters_on_meta_last_updated,
    malformed_values_are_a_400_naming_the_parameter,
    unknown_parameters_are_ignored_unless_handling_is_strict,
    search_entries_have_full_url_and_match_mode,
    paging_walks_the_whole_set_exactly_once_both_ways,
);

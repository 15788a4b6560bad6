//! Bad input gets a clear OperationOutcome with the right status, and nothing is written.

mod common;

use common::{Engine, Reply, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = app.client.request(method, app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    TestApp::reply(req.send().await.unwrap()).await
}

async fn assert_nothing_written(app: &TestApp) {
    assert_eq!(
        app.count("patients").await,
        0,
        "a failed write changed nothing"
    );
    assert_eq!(app.count("resource_versions").await, 0);
    assert_eq!(app.count("search_strings").await, 0);
    assert_eq!(app.count("patient_identifiers").await, 0);
}

async fn malformed_bodies_are_400_and_write_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let deep = "[".repeat(20_000) + &"]".repeat(20_000);
    let deep_ext = format!(
        r#"{{"resourceType":"Patient","extension":{}}}"#,
        "[{\"extension\":".repeat(5_000) + "[]" + &"}]".repeat(5_000)
    );
    let nul = r#"{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}"#.to_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{\"resourceType\": \"Patient\",".to_vec()),
        (
            "duplicate keys",
            br#"{"resourceType":"Patient","id":"a","id":"b"}"#.to_vec(),
        ),
        ("deep arrays", deep.into_bytes()),
        ("deep extensions", deep_ext.into_bytes()),
        ("NUL in a string", nul.into_bytes()),
        (
            "lone surrogate",
            br#"{"resourceType":"Patient","name":[{"family":"\ud800"}]}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}".to_vec(),
        ),
        (
            "huge number",
            br#"{"resourceType":"Patient","multipleBirthInteger":1e999999}"#.to_vec(),
        ),
        ("empty body", Vec::new()),
        ("array instead of a resource", b"[]".to_vec()),
    ];
    for (what, body) in cases {
        let r = raw(
            &app,
            Method::POST,
            "/fhir/Patient",
            Some("application/fhir+json"),
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert!(!r.outcome()[0].1.is_empty(), "{what}: the outcome says why");
    }
    assert_nothing_written(&app).await;
}

async fn schema_violations_list_every_problem_with_its_location(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let bad = json!({
        "resourceType": "Patient",
        "gender": "robot",
        "birthDate": "25/12/1974",
        "name": [{"family": "Chalmers", "given": [7]}],
        "telecom": [],
        "active": null,
        "favouriteColour": "blue"
    });
    let r = app.post("/fhir/Patient", &bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let places: Vec<String> = r.outcome().into_iter().filter_map(|(_, _, e)| e).collect();
    for want in [
        "Patient.gender",
        "Patient.birthDate",
        "Patient.name[0].given[0]",
        "Patient.telecom",
        "Patient.active",
    ] {
        assert!(
            places.iter().any(|p| p == want),
            "{want} missing in {places:?}"
        );
    }
    assert!(
        r.text.contains("favouriteColour"),
        "the unknown element is named: {}",
        r.text
    );
    assert_nothing_written(&app).await;
}

async fn wrong_type_and_id_mismatch_are_400(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let r = app.post("/fhir/Patient", &obs).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("does not match the URL"));
    let r = app
        .post("/fhir/Patient", &json!({"name": [{"family": "x"}]}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("resourceType"));
    let r = app
        .put(
            "/fhir/Patient/abc",
            &json!({"resourceType": "Patient", "id": "xyz"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Patient.id"));
    let r = app
        .put("/fhir/Patient/abc", &json!({"resourceType": "Patient"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("id"));
    let r = app
        .put(
            "/fhir/Patient/a%20b",
            &json!({"resourceType": "Patient", "id": "a b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_nothing_written(&app).await;
}

async fn content_type_and_size_limits_are_enforced(engine: Engine) {
    let app = TestApp::spawn_with(engine, 4096).await;
    let body = json!({"resourceType": "Patient"}).to_string().into_bytes();
    let r = raw(
        &app,
        Method::POST,
        "/fhir/Patient",
        Some("application/xml"),
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.outcome()[0].1.contains("application/fhir+json"));
    let r = raw(&app, Method::POST, "/fhir/Patient", None, body.clone()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let ok = raw(
        &app,
        Method::POST,
        "/fhir/Patient",
        Some("application/json; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(
        ok.status,
        StatusCode::CREATED,
        "application/json bodies are accepted too"
    );
    let big = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(10_000)}]})
        .to_string()
        .into_bytes();
    let r = raw(
        &app,
        Method::POST,
        "/fhir/Patient",
        Some("application/fhir+json"),
        big,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.outcome()[0].0, "too-long");
    // A streamed body with no Content-Length is cut off at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let stream = futures_util::stream::iter(chunks);
    let res = app
        .client
        .post(app.url("/fhir/Patient"))
        .header("content-type", "application/fhir+json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count("patients").await, 1);
}

async fn unsafe_narrative_is_rejected(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>"}
    });
    let r = app.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.outcome()[0].2.as_deref(), Some("Patient.text.div"));
    assert_nothing_written(&app).await;
}

async fn a_code_outside_the_clinic_schema_is_422_naming_the_element(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = json!({
        "resourceType": "Patient",
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "Z"}]}
    });
    let r = app.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let issues = r.outcome();
    assert_eq!(issues[0].2.as_deref(), Some("Patient.maritalStatus"));
    assert!(issues[0].1.contains("'Z'"));
    assert_nothing_written(&app).await;
}

async fn unsupported_methods_and_formats_get_operation_outcomes(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app.send(Method::PATCH, "/fhir/metadata", None, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.outcome()[0].0, "not-supported");
    let r = app
        .send(Method::DELETE, "/fhir/Patient/x/_history", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    r.outcome();
    // A conditional delete without criteria would delete the type: refused.
    let r = app.send(Method::DELETE, "/fhir/Patient", None, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.outcome()[0].1.contains("criteria"));
    let r = app
        .send(
            Method::GET,
            "/fhir/Patient",
            None,
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    r.outcome();
    let r = app.get("/fhir/Patient?_format=xml").await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    r.outcome();
    let r = app.get("/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.outcome();
}

async fn json_formats_and_pretty_printing_are_honoured(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "gender": "female"}))
        .await;
    let path = format!("/fhir/Patient/{}", p["id"].as_str().unwrap());
    let fhir = app
        .send(
            Method::GET,
            &path,
            None,
            &[("accept", "application/fhir+json")],
        )
        .await;
    assert!(fhir
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    let plain = app
        .send(Method::GET, &path, None, &[("accept", "application/json")])
        .await;
    assert!(plain
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(plain.body, fhir.body);
    let fmt = app.get(&format!("{path}?_format=json")).await;
    assert_eq!(fmt.status, StatusCode::OK);
    assert!(fmt
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    assert!(!fmt.text.contains('\n'));
    let pretty = app.get(&format!("{path}?_pretty=true")).await;
    assert!(
        pretty.text.contains("\n  \"resourceType\": \"Patient\""),
        "{}",
        pretty.text
    );
    assert_eq!(pretty.body, fmt.body);
}

async fn sql_metacharacters_are_just_data(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let evil = "x'); DROP TABLE patients; --";
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": evil}]}))
        .await;
    let r = app
        .get(&format!("/fhir/Patient?family:exact={}", urlencode(evil)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        TestApp::ids(&r.body),
        vec![p["id"].as_str().unwrap().to_owned()]
    );
    let r = app
        .get(&format!(
            "/fhir/Patient?family:contains={}",
            urlencode("%_\\")
        ))
        .await;
    assert_eq!(
        r.body["total"], 0,
        "LIKE wildcards in a value match only themselves"
    );
    assert_eq!(app.count("patients").await, 1);
}

async fn decimals_keep_their_precision_and_huge_pages_are_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let body = r#"{"resourceType":"Patient","extension":[{"url":"http://example.org/weight-at-birth","valueDecimal":3.50},{"url":"http://example.org/tiny","valueDecimal":0.000120}]}"#;
    let r = raw(
        &app,
        Method::POST,
        "/fhir/Patient",
        Some("application/fhir+json"),
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let back = app
        .get(&format!("/fhir/Patient/{}", r.body["id"].as_str().unwrap()))
        .await;
    assert!(
        back.text.contains(r#""valueDecimal":3.50"#),
        "{}",
        back.text
    );
    assert!(
        back.text.contains(r#""valueDecimal":0.000120"#),
        "{}",
        back.text
    );
    // The largest page is answered; past it, search, history and $everything refuse it.
    let s = app.get("/fhir/Patient?_count=1000").await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(
        s.body["link"][0]["url"]
            .as_str()
            .unwrap()
            .contains("_count=1000"),
        "{}",
        s.text
    );
    let id = r.body["id"].as_str().unwrap();
    for (path, past) in [
        ("/fhir/Patient?_count=".to_owned(), "1000000"),
        ("/fhir/Patient/_history?_count=".to_owned(), "1001"),
        (format!("/fhir/Patient/{id}/$everything?_count="), "5000"),
    ] {
        let s = app.get(&format!("{path}{past}")).await;
        assert_eq!(s.status, StatusCode::BAD_REQUEST, "{path}: {}", s.text);
        assert_eq!(s.body["issue"][0]["code"], "too-costly", "{}", s.text);
        assert!(s.outcome()[0].1.contains("the limit is 1000"), "{}", s.text);
        let at = app.get(&format!("{path}1000")).await;
        assert_eq!(at.status, StatusCode::OK, "{path}: {}", at.text);
    }
}

async fn references_to_hosted_types_must_exist(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = json!({
        "resourceType": "Patient",
        "link": [{"other": {"reference": "Patient/nobody"}, "type": "seealso"}],
        "managingOrganization": {"reference": "Organization/elsewhere"},
        "generalPractitioner": [{"reference": "#contained"}, {"reference": "https://other.example/fhir/Patient/1"}]
    });
    let r = app.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let issues = r.outcome();
    assert_eq!(
        issues.len(),
        1,
        "only the hosted type is checked: {issues:?}"
    );
    assert_eq!(issues[0].2.as_deref(), Some("Patient.link[0].other"));
    assert!(issues[0].1.contains("Patient/nobody"));
    assert_nothing_written(&app).await;
    // Once the target exists, the same resource is accepted and the reference kept as sent.
    let target = app
        .put(
            "/fhir/Patient/nobody",
            &json!({"resourceType": "Patient", "id": "nobody"}),
        )
        .await;
    assert_eq!(target.status, StatusCode::CREATED);
    let ok = app.post("/fhir/Patient", &p).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    assert_eq!(ok.body["link"], p["link"]);
    // A deleted target is no target.
    app.delete("/fhir/Patient/nobody").await;
    assert_eq!(
        app.post("/fhir/Patient", &p).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// An element whose JSON type is not its definition's (an object sent as a string or an array)
/// is refused naming it, on every write path, and nothing of the resource is kept.
async fn an_element_of_the_wrong_json_type_is_refused_not_dropped(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let named = |r: &Reply, at: &str| r.outcome().iter().any(|(_, _, e)| e.as_deref() == Some(at));
    for meta in [json!("x"), json!([{"tag": [{"code": "t"}]}])] {
        let p = json!({"resourceType": "Patient", "meta": meta, "name": [{"family": "Tipo"}]});
        let r = app.post("/fhir/Patient", &p).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{meta}: {}", r.text);
        assert!(named(&r, "Patient.meta"), "{meta}: {}", r.text);
    }
    assert_nothing_written(&app).await;

    let created = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Tipo"}]}))
        .await;
    let url = format!("/fhir/Patient/{}", created["id"].as_str().unwrap());
    let mut bad = created.clone();
    bad["maritalStatus"] = json!("M");
    let r = app.put(&url, &bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "update: {}", r.text);
    assert!(named(&r, "Patient.maritalStatus"), "update: {}", r.text);

    let ops = json!([{"op": "add", "path": "/meta", "value": "x"}]);
    let r = raw(
        &app,
        Method::PATCH,
        &url,
        Some("application/json-patch+json"),
        ops.to_string().into_bytes(),
    )
    .await;
    // A patch whose result is not a valid resource is 422 (FHIR R4 http.html#patch).
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "patch: {}",
        r.text
    );
    assert!(named(&r, "Patient.meta"), "patch: {}", r.text);

    for kind in ["transaction", "batch"] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [{
            "fullUrl": "urn:uuid:0f6c6ee4-57c2-4b4e-9c53-2a3f0d1f6b10",
            "resource": {"resourceType": "Patient", "text": "x"},
            "request": {"method": "POST", "url": "Patient"}
        }]});
        let r = app.post("/fhir", &bundle).await;
        let at = "Bundle.entry[0].resource.text";
        if kind == "transaction" {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
            assert!(named(&r, at), "{}", r.text);
        } else {
            let answer = &r.body["entry"][0]["response"];
            assert_eq!(answer["status"], "400 Bad Request", "{}", r.text);
            assert_eq!(answer["outcome"]["issue"][0]["expression"][0], at);
        }
    }
    // The one patient as created, in one version.
    assert_eq!(app.count("patients").await, 1);
    assert_eq!(app.count("resource_versions").await, 1);
    let now = app.get(&url).await;
    assert!(now.body.get("maritalStatus").is_none(), "{}", now.text);
}

/// A search beyond the documented limits (parameters per request, values per parameter, links of
/// a chain) is a 400 too-costly naming the limit, on GET and POST; at the limit it runs.
async fn searches_beyond_the_limits_are_refused_as_too_costly(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let too_costly = |r: &Reply, limit: &str| {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.body["issue"][0]["code"], "too-costly", "{}", r.text);
        let says = r.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default();
        assert!(says.contains(limit), "{says}");
    };
    let repeated = |n: usize| vec!["name=a"; n].join("&");
    let ok = app.get(&format!("/fhir/Patient?{}", repeated(50))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    too_costly(
        &app.get(&format!("/fhir/Patient?{}", repeated(351))).await,
        "the limit is 50 per request",
    );
    let ids = |n: usize| {
        (0..n)
            .map(|i| format!("id-{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let post = |body: String| {
        let app = &app;
        async move { app.post_form("/fhir/Patient/_search", body).await }
    };
    let ok = post(format!("_id={}", ids(100))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    too_costly(
        &post(format!("_id={}", ids(100_000))).await,
        "lists 100000 values; the limit is 100",
    );
    let ok = app
        .get("/fhir/Observation?subject:Patient.general-practitioner:Practitioner.name=x")
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    too_costly(
        &app.get("/fhir/Observation?subject.a.b.c.d=x").await,
        "the limit is 3",
    );
}

/// A NUL in a search value, on every path that runs a search (found by the fuzz driver: a 500
/// on PostgreSQL, whose text holds no NUL), is a 400; the same search without it answers.
async fn a_nul_in_a_search_value_is_a_400_on_every_path(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for path in [
        "/fhir/Patient?name=a%00",
        "/fhir/Patient?_id=a%00",
        "/fhir/Patient?general-practitioner.name=x%00",
        "/fhir/Observation?code=http://loinc.org|%00",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(r.outcome()[0].1.contains("NUL"), "{path}: {}", r.text);
        assert_eq!(
            app.get(&path.replace("%00", "")).await.status,
            StatusCode::OK
        );
    }
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Nul"}]});
    let r = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&patient),
            &[("if-none-exist", "name=%00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(app.count("patients").await, 0, "nothing was written");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient?name=%00"}},
        {"request": {"method": "GET", "url": "Patient?name=x"}}
    ]});
    let r = app.post("/fhir", &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["entry"][0]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("400"));
    assert!(r.body["entry"][1]["response"]["status"]
        .as_str()
        .unwrap()
        .starts_with("200"));
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

on_both_engines!(
    malformed_bodies_are_400_and_write_nothing,
    schema_violations_list_every_problem_with_its_location,
    wrong_type_and_id_mismatch_are_400,
    content_type_and_size_limits_are_enforced,
    unsafe_narrative_is_rejected,
    a_code_outside_the_clinic_schema_is_422_naming_the_element,
    unsupported_methods_and_formats_get_operation_outcomes,
    json_formats_and_pretty_printing_are_honoured,
    sql_metacharacters_are_just_data,
    decimals_keep_their_precision_and_huge_pages_are_refused,
    references_to_hosted_types_must_exist,
    an_element_of_the_wrong_json_type_is_refused_not_dropped,
    searches_beyond_the_limits_are_refused_as_too_costly,
    a_nul_in_a_search_value_is_a_400_on_every_path,
);

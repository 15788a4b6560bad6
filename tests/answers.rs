//! Every error answer is FHIR: an OperationOutcome, served as application/fhir+json, whose id
//! is the request id the answer's X-Request-ID header names, whoever made it (a handler, the
//! router, or hyper before any handler saw the request).

mod common;

use common::{Engine, Reply, TestApp};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asserts `r` is an OperationOutcome answer with status `status` naming its request id.
fn assert_fhir_error(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text);
    let issues = r.outcome();
    assert!(!issues.is_empty(), "{what}");
    let id = r
        .header("x-request-id")
        .expect("every answer names its request");
    assert_eq!(
        r.body["id"],
        id.as_str(),
        "{what}: the outcome names the request"
    );
}

async fn handler_and_router_errors_are_outcomes_with_the_request_id(engine: Engine) {
    let app = TestApp::spawn_with(engine, 64 * 1024).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Vega"}]}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let send = |m: Method, path: &str, h: &[(&str, &str)]| {
        let (m, path) = (m.clone(), path.to_owned());
        let h: Vec<(String, String)> = h
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let app = &app;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            app.send(m, &path, None, &h).await
        }
    };
    let r = send(Method::GET, "/fhir/Patient?birthdate=not-a-date", &[]).await;
    assert_fhir_error(&r, 400, "a bad search value");
    let r = send(Method::GET, "/fhir/Patient/nobody", &[]).await;
    assert_fhir_error(&r, 404, "an unknown resource");
    let r = send(Method::GET, "/nowhere", &[]).await;
    assert_fhir_error(&r, 404, "an unknown route");
    let r = send(Method::DELETE, "/fhir/metadata", &[]).await;
    assert_fhir_error(&r, 405, "a method the route has not");
    let r = send(
        Method::GET,
        "/fhir/Patient",
        &[("accept", "application/xml")],
    )
    .await;
    assert_fhir_error(&r, 406, "a format the server does not speak");
    let stale = format!("/fhir/Patient/{id}");
    let r = app
        .send(Method::PUT, &stale, Some(&p), &[("if-match", "W/\"99\"")])
        .await;
    assert_fhir_error(&r, 412, "a stale If-Match");
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(70 * 1024)}]});
    let r = app.post("/fhir/Patient", &big).await;
    assert_fhir_error(&r, 413, "a body over the limit");
    let r = app
        .client
        .post(app.url("/fhir/Patient"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_fhir_error(
        &TestApp::reply(r).await,
        415,
        "a body that is not FHIR JSON",
    );
    let patch = json!([{"op": "replace", "path": "/meta", "value": "a string"}]);
    let r = app
        .client
        .patch(app.url(&format!("/fhir/Patient/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_fhir_error(
        &TestApp::reply(r).await,
        422,
        "a patch with an invalid result",
    );
    assert_eq!(app.delete(&format!("/fhir/Patient/{id}")).await.status, 204);
    let r = app.get(&format!("/fhir/Patient/{id}")).await;
    assert_fhir_error(&r, 410, "a deleted resource");
    // The router's own limits on the request head.
    let long = format!("/fhir/Patient?family={}", "a".repeat(20 * 1024));
    assert_fhir_error(&app.get(&long).await, 414, "a URL over the limit");
    let wide = "b".repeat(40 * 1024);
    let r = send(Method::GET, "/fhir/metadata", &[("x-wide", &wide)]).await;
    assert_fhir_error(&r, 431, "headers over the limit");
    // Within the limits, the same requests are served.
    assert_eq!(app.get("/fhir/Patient?family=aaaa").await.status, 200);
    let r = send(
        Method::GET,
        "/fhir/metadata",
        &[("x-wide", &"b".repeat(1024))],
    )
    .await;
    assert_eq!(r.status, 200);
}

async fn a_client_request_id_is_kept_when_usable_and_replaced_when_not(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app
        .send(
            Method::GET,
            "/fhir/Patient/nobody",
            None,
            &[("x-request-id", "lab-42.a")],
        )
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("lab-42.a"));
    assert_eq!(r.body["id"], "lab-42.a");
    let r = app
        .send(
            Method::GET,
            "/fhir/Patient/nobody",
            None,
            &[("x-request-id", "a b<script>")],
        )
        .await;
    let made = r.header("x-request-id").unwrap();
    assert_ne!(made, "a b<script>");
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    assert_eq!(r.body["id"], made.as_str());
}

/// Sends raw bytes and reads the whole answer (the server closes the connection after it).
async fn raw(app: &TestApp, bytes: &[u8]) -> Reply {
    let addr = app.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
    }
    Reply {
        status: reqwest::StatusCode::from_u16(status).unwrap(),
        headers,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        text: body.to_owned(),
    }
}

async fn answers_made_before_any_handler_are_outcomes_too(engine: Engine) {
    let app = TestApp::spawn_settings(
        engine,
        expediente::Settings {
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    // hyper's own answers: a URL longer than it parses, a head larger than it reads, a request
    // that is not HTTP.
    let url = format!(
        "GET /fhir/Patient?family={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_fhir_error(&raw(&app, url.as_bytes()).await, 414, "a URL hyper refuses");
    let head = format!(
        "GET /fhir/metadata HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(200_000)
    );
    assert_fhir_error(
        &raw(&app, head.as_bytes()).await,
        431,
        "a head hyper refuses",
    );
    assert_fhir_error(
        &raw(&app, b"NOT HTTP AT ALL\r\n\r\n").await,
        400,
        "not HTTP",
    );
    // A body that does not come in time (from a client with a token: one without is refused
    // before its body is read).
    let host = app.base.trim_start_matches("http://");
    let signed = format!("host: {host}\r\nauthorization: Bearer {}", app.token);
    let slow = format!("POST /fhir/Patient HTTP/1.1\r\n{signed}\r\ncontent-type: application/fhir+json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{{");
    assert_fhir_error(
        &raw(&app, slow.as_bytes()).await,
        408,
        "a body that never comes",
    );
    // A chunked body whose chunk size is not hexadecimal is a 400, not a 413; chunked
    // well, it is read.
    let post = format!(
        "POST /fhir/Patient HTTP/1.1\r\n{signed}\r\ncontent-type: application/fhir+json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let broken = format!("{post}zz\r\n{{}}\r\n0\r\n\r\n");
    let r = raw(&app, broken.as_bytes()).await;
    assert_fhir_error(&r, 400, "a broken chunked body");
    assert!(r.text.contains("chunked"), "{}", r.text);
    let patient = r#"{"resourceType":"Patient","active":true}"#;
    let good = format!("{post}{:x}\r\n{patient}\r\n0\r\n\r\n", patient.len());
    assert_eq!(raw(&app, good.as_bytes()).await.status, 201);
    // A well-formed request on the same path is served.
    let ok = raw(
        &app,
        b"GET /fhir/metadata HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["resourceType"], "CapabilityStatement");
}

on_both_engines!(
    handler_and_router_errors_are_outcomes_with_the_request_id,
    a_client_request_id_is_kept_when_usable_and_replaced_when_not,
    answers_made_before_any_handler_are_outcomes_too,
);

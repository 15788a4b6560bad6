//! CORS for browser apps: the origin of a registered client's redirect URI is reflected on
//! preflights and answers (errors too), with the headers a SMART app sends; any other origin
//! gets no CORS header, and `*` is never answered. A client registered while the server runs
//! is followed within seconds. On both engines.

mod common;

use common::acting::cli;
use common::{Engine, TestApp};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

const APP: &str = "https://app.example:8443";

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "authorization, content-type, prefer, if-match",
        )
        .send()
        .await
        .unwrap()
}

async fn get_from(
    app: &TestApp,
    path: &str,
    origin: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(app.url(path))
        .header("origin", origin);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn allowed(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn only_registered_origins_are_answered(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    // Before the app is registered, its origin gets nothing.
    assert_eq!(
        allowed(&get_from(&app, "/fhir/metadata", APP, None).await),
        None
    );
    let args = [
        "client",
        "add",
        "--client-id",
        "browser-app",
        "--public",
        "--redirect-uri",
        &format!("{APP}/callback"),
        "--scope",
        "patient/*.rs",
    ];
    cli(&app, &args, "").expect("client add");
    // Followed within seconds.
    let start = Instant::now();
    while allowed(&get_from(&app, "/fhir/metadata", APP, None).await).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new client's origin is not followed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for path in [
        "/fhir/Patient",
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/auth/token",
    ] {
        let r = preflight(&app, path, APP).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert!(
            r.headers().contains_key("x-request-id"),
            "{path}: every answer has its id"
        );
        assert_eq!(allowed(&r).as_deref(), Some(APP), "{path}");
        let headers = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        for h in [
            "authorization",
            "content-type",
            "accept",
            "prefer",
            "if-match",
        ] {
            assert!(headers.contains(h), "{path}: {headers}");
        }
        let methods = r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(methods.contains("PUT"), "{methods}");
        assert!(r
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
        // Another origin: no CORS header at all.
        for evil in [
            "https://evil.example",
            "https://app.example",
            "https://app.example:8443.evil.example",
            "null",
        ] {
            let r = preflight(&app, path, evil).await;
            assert_eq!(allowed(&r), None, "{path} from {evil}");
        }
    }
    // Answers carry the origin too, errors included (a browser app must read its 401), and
    // expose what a FHIR client reads.
    let ok = get_from(&app, "/fhir/Patient", APP, Some(&app.token)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(allowed(&ok).as_deref(), Some(APP));
    let exposed = ok.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for h in ["location", "etag", "last-modified", "www-authenticate"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let refused = get_from(&app, "/fhir/Patient", APP, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed(&refused).as_deref(), Some(APP));
    let evil = get_from(
        &app,
        "/fhir/Patient",
        "https://evil.example",
        Some(&app.token),
    )
    .await;
    assert_eq!(allowed(&evil), None);
    // The CapabilityStatement says so.
    let meta = app.get("/fhir/metadata").await;
    assert_eq!(meta.body["rest"][0]["security"]["cors"], true);
    // Removed: its origin is no longer answered.
    cli(
        &app,
        &["client", "remove", "--client-id", "browser-app"],
        "",
    )
    .unwrap();
    let start = Instant::now();
    while allowed(&get_from(&app, "/fhir/metadata", APP, None).await).is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the removed client's origin stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_engines!(only_registered_origins_are_answered);

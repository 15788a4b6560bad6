//! Backend clients registered with a JWKS URL (`client add --jwks-url`): their keys are
//! fetched and cached; a set too large, a server too slow, and a redirect to an internal
//! address are refused (`invalid_client`), while a redirect on the registered host is followed.
//! On both engines.

mod common;

use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use common::acting::cli;
use common::backend::{backend_key, token_form};
use common::{Engine, TestApp};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client's own web server: its key set, and ways to misbehave. Listens on every loopback
/// address, so that a redirect to 127.0.0.2 would be answered if it were followed.
async fn client_site(jwks: Value) -> (String, u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counted = hits.clone();
    let broken_hits = Arc::new(AtomicUsize::new(0));
    let broken = broken_hits.clone();
    let app =
        axum::Router::new()
            .route(
                "/jwks",
                get(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = jwks.to_string();
                    async move { ([("content-type", "application/json")], body) }
                }),
            )
            .route(
                "/big",
                get(|| async { "x".repeat(1024 * 1024).into_response() }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    "{}"
                }),
            )
            .route("/moved", get(|| async { Redirect::temporary("/jwks") }))
            .route(
                "/broken",
                get(move || {
                    broken.fetch_add(1, Ordering::SeqCst);
                    async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }
                }),
            )
            .route(
                "/to-private",
                get(move || async move {
                    Redirect::temporary(&format!("http://127.0.0.2:{port}/jwks"))
                }),
            )
            .route(
                "/to-localhost",
                get(move || async move {
                    Redirect::temporary(&format!("http://localhost:{port}/jwks"))
                }),
            );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), port, hits, broken_hits)
}

async fn ask_token(
    app: &TestApp,
    client_id: &str,
    key: &jsonwebtoken::EncodingKey,
) -> (u16, Value) {
    let form = token_form(client_id, &app.url("/auth/token"), key, "system/*.rs");
    let res = app
        .client
        .post(app.url("/auth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn keys_are_fetched_from_a_registered_jwks_url(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (key, jwk) = backend_key();
    let (site, port, hits, broken_hits) = client_site(json!({"keys": [jwk]})).await;
    for (id, path) in [
        ("direct", "/jwks"),
        ("moved", "/moved"),
        ("big", "/big"),
        ("slow", "/slow"),
        ("to-private", "/to-private"),
        ("to-localhost", "/to-localhost"),
        ("broken", "/broken"),
    ] {
        let url = format!("{site}{path}");
        let args = [
            "client",
            "add",
            "--client-id",
            id,
            "--jwks-url",
            &url,
            "--scope",
            "system/*.rs",
        ];
        cli(&app, &args, "").expect("client add");
    }
    // Only http and https URLs are registered.
    let args = [
        "client",
        "add",
        "--client-id",
        "ftp",
        "--jwks-url",
        "ftp://keys.example/jwks",
        "--scope",
        "system/*.rs",
    ];
    assert!(cli(&app, &args, "").is_err());

    // Fetched once, then from the cache.
    for _ in 0..3 {
        let (status, body) = ask_token(&app, "direct", &key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scope"], "system/*.rs");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the key set is cached");
    // A redirect on the registered host is followed.
    let (status, body) = ask_token(&app, "moved", &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A flood of assertions at once for a client whose keys cannot be fetched makes one fetch.
    let flood = (0..8).map(|_| ask_token(&app, "broken", &key));
    for (status, body) in futures_util::future::join_all(flood).await {
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(
        broken_hits.load(Ordering::SeqCst),
        1,
        "one fetch for the flood"
    );
    // The refusals: invalid_client, with one description whatever the cause (the cause is the
    // server's to log: told to the caller, it would map what the server can reach). The fetch
    // itself says why.
    const REFUSED: &str = "this client's keys could not be read from its JWKS URL";
    for (id, path, why) in [
        ("big", "/big", "more than"),
        ("to-private", "/to-private", "redirect"),
        ("to-localhost", "/to-localhost", "redirect"),
        ("broken", "/broken", "500"),
    ] {
        let (status, body) = ask_token(&app, id, &key).await;
        assert_eq!(status, 401, "{id}: {body}");
        assert_eq!(body["error"], "invalid_client", "{id}");
        assert_eq!(body["error_description"], REFUSED, "{id}");
        let direct = expediente::auth::jwks_url::fetch(&format!("{site}{path}")).await;
        let cause = direct.expect_err("the fetch fails");
        assert!(cause.contains(why), "{id}: {cause}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "no redirect to an internal address was followed"
    );
    assert_eq!(
        broken_hits.load(Ordering::SeqCst),
        2,
        "the failure was remembered: only the direct fetch went out again"
    );
    // The redirect target answers when asked directly: the refusal above was the policy's.
    let direct = reqwest::get(format!("http://127.0.0.2:{port}/jwks"))
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    // A server that never answers: bounded in time, on both paths at once.
    let start = Instant::now();
    let slow = format!("{site}/slow");
    let (asked, direct) = tokio::join!(
        ask_token(&app, "slow", &key),
        expediente::auth::jwks_url::fetch(&slow)
    );
    assert_eq!(asked.0, 401, "{}", asked.1);
    assert!(direct.unwrap_err().contains("no answer within"));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "the fetch is bounded in time"
    );
}

on_both_engines!(keys_are_fetched_from_a_registered_jwks_url);

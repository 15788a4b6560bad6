//! /fhir takes an access token: without one, or with one that is malformed, forged, expired,
//! revoked or for another server, a request is a 401 with `WWW-Authenticate: Bearer` and an
//! OperationOutcome; the CapabilityStatement and the SMART discovery document are open; a valid
//! token reaches what its scopes reach. On both engines.

mod common;

use common::{Engine, TestApp};
use expediente::auth::token::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get_with(
    app: &TestApp,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().get(app.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn claims(app: &TestApp, scope: &str, patient: Option<&str>) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: format!("{}/fhir", app.base),
        aud: format!("{}/fhir", app.base),
        sub: "someone".into(),
        client_id: "test-admin".into(),
        scope: scope.into(),
        patient: patient.map(str::to_owned),
        encounter: None,
        fhir_user: None,
        iat: now,
        exp: now + 600,
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn refused(answer: &(StatusCode, reqwest::header::HeaderMap, Value), error: Option<&str>) {
    let (status, headers, body) = answer;
    assert_eq!(*status, 401, "{body}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"expediente\""),
        "{challenge}"
    );
    match error {
        Some(e) => assert!(challenge.contains(&format!("error=\"{e}\"")), "{challenge}"),
        None => assert!(!challenge.contains("error="), "{challenge}"),
    }
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "login");
    assert!(body["id"].is_string(), "the request id: {body}");
}

async fn fhir_requests_need_a_valid_token(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let p = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Ana"}]}))
        .await;
    let path = format!("/fhir/Patient/{}", p["id"].as_str().unwrap());
    // Open: what the server is and how to get a token.
    assert_eq!(get_with(&app, "/fhir/metadata", None).await.0, 200);
    assert_eq!(
        get_with(&app, "/fhir/.well-known/smart-configuration", None)
            .await
            .0,
        200
    );
    // A valid token reads.
    let ok = get_with(&app, &path, Some(&format!("Bearer {}", app.token))).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    // No token, or not a bearer one.
    refused(&get_with(&app, &path, None).await, None);
    refused(&get_with(&app, "/fhir/Patient", None).await, None);
    refused(
        &get_with(&app, "/fhir/StructureDefinition", None).await,
        None,
    );
    refused(
        &get_with(&app, &path, Some("Basic dGVzdDp0ZXN0")).await,
        Some("invalid_request"),
    );
    refused(
        &get_with(&app, &path, Some("Bearer")).await,
        Some("invalid_request"),
    );
    // Not a token, expired, for another server, revoked.
    refused(
        &get_with(&app, &path, Some("Bearer not.a.token")).await,
        Some("invalid_token"),
    );
    let mut old = claims(&app, "system/*.rs", None);
    old.exp = chrono::Utc::now().timestamp() - 1;
    let t = app.auth.issue(&old).await.unwrap();
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {t}"))).await,
        Some("invalid_token"),
    );
    let mut elsewhere = claims(&app, "system/*.rs", None);
    elsewhere.aud = "https://other.example/fhir".into();
    let t = app.auth.issue(&elsewhere).await.unwrap();
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {t}"))).await,
        Some("invalid_token"),
    );
    let good = claims(&app, "system/*.rs", None);
    let t = app.auth.issue(&good).await.unwrap();
    assert_eq!(
        get_with(&app, &path, Some(&format!("Bearer {t}"))).await.0,
        200
    );
    assert!(app.auth.revoke(&good.jti, None).await.unwrap());
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {t}"))).await,
        Some("invalid_token"),
    );
    // Forged: alg none, HS256 keyed with the public key, another key under the server's kid,
    // an unknown kid, claims edited under a real signature.
    let jwks: Value = reqwest::get(app.url("/auth/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let body = b64(serde_json::to_string(&claims(&app, "system/*.cruds", None))
        .unwrap()
        .as_bytes());
    let none = format!(
        "{}.{body}.",
        b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#).as_bytes())
    );
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {none}"))).await,
        Some("invalid_token"),
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let public = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let h = jsonwebtoken::encode(
        &hs,
        &claims(&app, "system/*.cruds", None),
        &EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {h}"))).await,
        Some("invalid_token"),
    );
    let other = expediente::auth::keys::SigningKey::generate().unwrap();
    let mut es = Header::new(Algorithm::ES256);
    es.kid = Some(kid.clone());
    let f =
        jsonwebtoken::encode(&es, &claims(&app, "system/*.cruds", None), &other.encoding).unwrap();
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {f}"))).await,
        Some("invalid_token"),
    );
    es.kid = Some("unknown".into());
    let u =
        jsonwebtoken::encode(&es, &claims(&app, "system/*.cruds", None), &other.encoding).unwrap();
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {u}"))).await,
        Some("invalid_token"),
    );
    // A header pointing at the forger's own keys (jku, x5u, an embedded jwk) is not followed.
    es.kid = Some(kid.clone());
    es.jku = Some("https://forger.example/jwks".into());
    es.x5u = Some("https://forger.example/cert.pem".into());
    es.jwk =
        Some(jsonwebtoken::jwk::Jwk::from_encoding_key(&other.encoding, Algorithm::ES256).unwrap());
    let j =
        jsonwebtoken::encode(&es, &claims(&app, "system/*.cruds", None), &other.encoding).unwrap();
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {j}"))).await,
        Some("invalid_token"),
    );
    let real = app
        .auth
        .issue(&claims(&app, "patient/Patient.r", Some("nobody")))
        .await
        .unwrap();
    let parts: Vec<&str> = real.split('.').collect();
    let edited = format!("{}.{body}.{}", parts[0], parts[2]);
    refused(
        &get_with(&app, &path, Some(&format!("Bearer {edited}"))).await,
        Some("invalid_token"),
    );
}

async fn a_valid_token_reaches_only_what_its_scopes_reach(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let ana = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Ana"}]}))
        .await;
    let bob = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Bob"}]}))
        .await;
    let (ana, bob) = (ana["id"].as_str().unwrap(), bob["id"].as_str().unwrap());
    let t = app
        .auth
        .issue(&claims(&app, "patient/Patient.rs", Some(ana)))
        .await
        .unwrap();
    let bearer = format!("Bearer {t}");
    assert_eq!(
        get_with(&app, &format!("/fhir/Patient/{ana}"), Some(&bearer))
            .await
            .0,
        200
    );
    let (status, _, body) = get_with(&app, &format!("/fhir/Patient/{bob}"), Some(&bearer)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let (status, _, all) = get_with(&app, "/fhir/Patient?_total=accurate", Some(&bearer)).await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 1, "{all}");
    let (status, _, body) = get_with(&app, "/fhir/Observation", Some(&bearer)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["issue"][0]["code"], "forbidden");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Observation.s"),
        "{body}"
    );
}

/// Expired tokens, their revocations and client assertions are forgotten (from the database
/// and from memory); live ones are kept and still work.
async fn expired_tokens_are_forgotten(engine: Engine) {
    use common::acting::{mint, register};
    let app = TestApp::spawn(engine).await;
    register(&app, "short", "system/*.rs");
    let short = mint(&app, "short", "system/*.rs", &["--expires-in", "1"]).unwrap();
    let long = mint(&app, "short", "system/*.rs", &[]).unwrap();
    let jti = |t: &str| {
        use base64::Engine as _;
        let body = t.split('.').nth(1).unwrap();
        let v: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .unwrap(),
        )
        .unwrap();
        v["jti"].as_str().unwrap().to_owned()
    };
    assert!(app.auth.revoke(&jti(&short), None).await.unwrap());
    assert!(app.auth.revoke(&jti(&long), None).await.unwrap());
    let tokens = app.count("issued_tokens").await;
    assert_eq!(app.count("token_revocations").await, 2);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    expediente::auth::records::forget_expired(&app.db)
        .await
        .unwrap();
    assert_eq!(
        app.count("issued_tokens").await,
        tokens - 1,
        "the short one is forgotten"
    );
    assert_eq!(
        app.count("token_revocations").await,
        1,
        "the long one's revocation stays"
    );
    app.auth.follow_revocations().await.unwrap();
    let path = "/fhir/Patient";
    assert_eq!(
        get_with(&app, path, Some(&format!("Bearer {long}")))
            .await
            .0,
        401
    );
    assert_eq!(
        get_with(&app, path, Some(&format!("Bearer {short}")))
            .await
            .0,
        401
    );
    assert_eq!(app.get(path).await.status, StatusCode::OK);
}

on_both_engines!(
    fhir_requests_need_a_valid_token,
    a_valid_token_reaches_only_what_its_scopes_reach,
    expired_tokens_are_forgotten,
);

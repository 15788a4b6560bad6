//! The authorization server over HTTP: SMART discovery, the JWKS, the token endpoint for
//! backend clients (client_secret_basic and private_key_jwt), introspection and revocation, with
//! the errors of RFC 6749; on both engines.

mod common;

use common::backend::{assertion, backend_key};
use common::{Engine, TestApp};
use expediente::auth::records::{self, Client};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn post_form(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Answer {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn refused(a: &Answer, status: u16, error: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"], error, "{}", a.body);
    assert!(a.body["error_description"].is_string(), "{}", a.body);
    assert_eq!(a.headers["cache-control"], "no-store");
}

async fn register(
    app: &TestApp,
    id: &str,
    kind: &str,
    secret: Option<&str>,
    jwks: Option<Value>,
    scope: &str,
) {
    let secret_hash = match secret {
        Some(s) => Some(expediente::auth::password::hash(s.into()).await.unwrap()),
        None => None,
    };
    records::add_client(
        &app.db,
        &Client {
            client_id: id.into(),
            name: None,
            kind: kind.into(),
            secret_hash,
            jwks: jwks.map(|j| j.to_string()),
            jwks_url: None,
            redirect_uris: vec![],
            scope: scope.into(),
        },
    )
    .await
    .unwrap();
}

async fn discovery_says_what_the_server_does(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let r = app
        .client
        .get(app.url("/fhir/.well-known/smart-configuration"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let c: Value = r.json().await.unwrap();
    let origin = app.base.clone();
    assert_eq!(c["token_endpoint"], format!("{origin}/auth/token"));
    assert_eq!(c["jwks_uri"], format!("{origin}/auth/jwks"));
    assert_eq!(
        c["introspection_endpoint"],
        format!("{origin}/auth/introspect")
    );
    assert_eq!(c["revocation_endpoint"], format!("{origin}/auth/revoke"));
    assert_eq!(
        c["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        c["authorization_endpoint"],
        format!("{origin}/auth/authorize")
    );
    assert_eq!(c["issuer"], format!("{origin}/fhir"));
    assert_eq!(c["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(c["response_types_supported"], json!(["code"]));
    assert_eq!(
        c["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "client_secret_basic"])
    );
    assert_eq!(
        c["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    for cap in [
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "permission-v1",
        "permission-v2",
        "permission-patient",
        "permission-user",
    ] {
        assert!(
            c["capabilities"].as_array().unwrap().contains(&json!(cap)),
            "{cap}"
        );
    }
    // What is not done is not claimed.
    for absent in ["context-standalone-encounter", "smart-app-state"] {
        assert!(!c["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!(absent)));
    }
    assert!(c.get("registration_endpoint").is_none());
    let cs = app.get("/fhir/metadata").await.body;
    let security = &cs["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let uris = &security["extension"][0];
    assert_eq!(
        uris["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    let token = uris["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "token")
        .unwrap();
    assert_eq!(token["valueUri"], c["token_endpoint"]);
    let jwks: Value = app
        .client
        .get(app.url("/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(key["kid"].is_string() && key.get("d").is_none(), "{key}");
}

async fn a_client_with_a_secret_gets_system_tokens_and_nothing_else(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    register(
        &app,
        "lab",
        "secret",
        Some("s3cret-of-the-lab"),
        None,
        "system/Observation.cruds system/Patient.rs",
    )
    .await;
    let ok = post_form(
        &app,
        "/auth/token",
        &[
            ("grant_type", "client_credentials"),
            (
                "scope",
                "system/Observation.cu system/Patient.rs system/Encounter.rs",
            ),
        ],
        Some(("lab", "s3cret-of-the-lab")),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert_eq!(ok.body["scope"], "system/Observation.cu system/Patient.rs");
    assert_eq!(ok.body["expires_in"], 300);
    assert_eq!(ok.headers["cache-control"], "no-store");
    assert_eq!(ok.headers["pragma"], "no-cache");
    let token = ok.body["access_token"].as_str().unwrap().to_owned();

    let intro = post_form(
        &app,
        "/auth/introspect",
        &[("token", &token)],
        Some(("lab", "s3cret-of-the-lab")),
    )
    .await;
    assert_eq!(intro.status, 200);
    assert_eq!(intro.body["active"], true);
    assert_eq!(intro.body["client_id"], "lab");
    assert_eq!(
        intro.body["scope"],
        "system/Observation.cu system/Patient.rs"
    );
    assert!(intro.body["exp"].as_i64().unwrap() > intro.body["iat"].as_i64().unwrap());

    // Every refusal with its status and code.
    let cc = [
        ("grant_type", "client_credentials"),
        ("scope", "system/Patient.rs"),
    ];
    let wrong = post_form(&app, "/auth/token", &cc, Some(("lab", "not-the-secret"))).await;
    refused(&wrong, 401, "invalid_client");
    assert!(wrong.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    refused(
        &post_form(&app, "/auth/token", &cc, Some(("nobody", "x"))).await,
        401,
        "invalid_client",
    );
    refused(
        &post_form(&app, "/auth/token", &cc, None).await,
        401,
        "invalid_client",
    );
    refused(
        &post_form(
            &app,
            "/auth/token",
            &[("grant_type", "password"), ("scope", "system/Patient.rs")],
            Some(("lab", "s3cret-of-the-lab")),
        )
        .await,
        400,
        "unsupported_grant_type",
    );
    refused(
        &post_form(
            &app,
            "/auth/token",
            &[("grant_type", "client_credentials")],
            Some(("lab", "s3cret-of-the-lab")),
        )
        .await,
        400,
        "invalid_scope",
    );
    refused(
        &post_form(
            &app,
            "/auth/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "user/*.rs system/Encounter.rs"),
            ],
            Some(("lab", "s3cret-of-the-lab")),
        )
        .await,
        400,
        "invalid_scope",
    );
    refused(
        &post_form(
            &app,
            "/auth/token",
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
            ],
            Some(("lab", "s3cret-of-the-lab")),
        )
        .await,
        400,
        "invalid_request",
    );
    let json_body = app
        .client
        .post(app.url("/auth/token"))
        .basic_auth("lab", Some("s3cret-of-the-lab"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    assert_eq!(
        json_body.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // Bodies are small: past 64 KiB or 20 parameters, invalid_request before any client check.
    let big = "x".repeat(100 * 1024);
    refused(
        &post_form(
            &app,
            "/auth/introspect",
            &[("token", &big)],
            Some(("lab", "s3cret-of-the-lab")),
        )
        .await,
        400,
        "invalid_request",
    );
    let names: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    refused(
        &post_form(&app, "/auth/token", &many, None).await,
        400,
        "invalid_request",
    );

    // Revoked: no longer active. Another client can neither revoke it nor learn about it, and
    // nobody introspects without authenticating.
    register(
        &app,
        "other",
        "secret",
        Some("other-secret-1"),
        None,
        "system/Patient.rs",
    )
    .await;
    assert_eq!(
        post_form(
            &app,
            "/auth/revoke",
            &[("token", &token)],
            Some(("other", "other-secret-1"))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_form(
            &app,
            "/auth/introspect",
            &[("token", &token)],
            Some(("other", "other-secret-1"))
        )
        .await
        .body,
        json!({"active": false})
    );
    assert_eq!(
        post_form(
            &app,
            "/auth/introspect",
            &[("token", &token)],
            Some(("lab", "s3cret-of-the-lab"))
        )
        .await
        .body["active"],
        true
    );
    refused(
        &post_form(&app, "/auth/introspect", &[("token", &token)], None).await,
        401,
        "invalid_client",
    );
    assert_eq!(
        post_form(
            &app,
            "/auth/revoke",
            &[("token", &token)],
            Some(("lab", "s3cret-of-the-lab"))
        )
        .await
        .status,
        200
    );
    let after = post_form(
        &app,
        "/auth/introspect",
        &[("token", &token)],
        Some(("lab", "s3cret-of-the-lab")),
    )
    .await;
    assert_eq!(after.body, json!({"active": false}));
    let junk = post_form(
        &app,
        "/auth/introspect",
        &[("token", "invalid_token_value")],
        Some(("lab", "s3cret-of-the-lab")),
    )
    .await;
    assert_eq!(
        (junk.status, junk.body),
        (StatusCode::OK, json!({"active": false}))
    );
}

async fn a_backend_client_authenticates_with_a_signed_assertion(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let (key, jwk) = backend_key();
    register(
        &app,
        "backend",
        "jwks",
        None,
        Some(json!({"keys": [jwk]})),
        "system/*.rs",
    )
    .await;
    let aud = format!("{}/auth/token", app.base);
    let now = chrono::Utc::now().timestamp();
    let claims = |jti: &str| json!({"iss": "backend", "sub": "backend", "aud": aud, "exp": now + 120, "jti": jti});
    let ask = |jwt: String| {
        let app = &app;
        async move {
            post_form(
                app,
                "/auth/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/*.rs"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &jwt),
                ],
                None,
            )
            .await
        }
    };
    let first = assertion(&key, Algorithm::ES384, claims("a-1"));
    let ok = ask(first.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["scope"], "system/*.rs");
    // A replayed jti, and every other bad assertion: invalid_client.
    refused(&ask(first).await, 401, "invalid_client");
    let mut c = claims("a-2");
    c["aud"] = json!("https://elsewhere.example/token");
    refused(
        &ask(assertion(&key, Algorithm::ES384, c)).await,
        401,
        "invalid_client",
    );
    let mut c = claims("a-3");
    c["exp"] = json!(now + 3600);
    refused(
        &ask(assertion(&key, Algorithm::ES384, c)).await,
        401,
        "invalid_client",
    );
    let mut c = claims("a-4");
    c["exp"] = json!(now - 10);
    refused(
        &ask(assertion(&key, Algorithm::ES384, c)).await,
        401,
        "invalid_client",
    );
    let (other_key, _) = backend_key();
    refused(
        &ask(assertion(&other_key, Algorithm::ES384, claims("a-5"))).await,
        401,
        "invalid_client",
    );
    let mut c = claims("a-6");
    c["iss"] = json!("nobody");
    c["sub"] = json!("nobody");
    refused(
        &ask(assertion(&key, Algorithm::ES384, c)).await,
        401,
        "invalid_client",
    );
    let mut c = claims("a-7");
    c["sub"] = json!("someone-else");
    refused(
        &ask(assertion(&key, Algorithm::ES384, c)).await,
        401,
        "invalid_client",
    );
    let hs = assertion(
        &EncodingKey::from_secret(b"guess").unwrap(),
        Algorithm::HS256,
        claims("a-8"),
    );
    refused(&ask(hs).await, 401, "invalid_client");
    let wrong_type = post_form(
        &app,
        "/auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            (
                "client_assertion",
                &assertion(&key, Algorithm::ES384, claims("a-9")),
            ),
        ],
        None,
    )
    .await;
    refused(&wrong_type, 400, "invalid_client");
    // A scope the client is not registered for: invalid_scope.
    let unregistered = post_form(
        &app,
        "/auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.c"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                &assertion(&key, Algorithm::ES384, claims("a-11")),
            ),
        ],
        None,
    )
    .await;
    refused(&unregistered, 400, "invalid_scope");
    // A fresh jti still works after all that.
    assert_eq!(
        ask(assertion(&key, Algorithm::ES384, claims("a-10")))
            .await
            .status,
        200
    );
}

on_both_engines!(
    discovery_says_what_the_server_does,
    a_client_with_a_secret_gets_system_tokens_and_nothing_else,
    a_backend_client_authenticates_with_a_signed_assertion,
);

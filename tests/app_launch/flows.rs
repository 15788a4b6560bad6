//! The flows that succeed, and what their tokens then may and may not do.

use super::common::browser::Browser;
use super::common::Engine;
use super::*;
use serde_json::{json, Value};

async fn fhir_get(c: &Clinic, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(c.app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub async fn a_clinician_launches_an_app_standalone_and_it_reads_the_patient_picked(
    engine: Engine,
) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let code = doctor_code(&c, &b, &[]).await;
    let (status, t) = exchange(&c, &code, Some(VERIFIER)).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["patient"], c.ana.as_str());
    assert_eq!(t["need_patient_banner"], true);
    assert!(t["expires_in"].as_i64().unwrap() > 0);
    assert!(
        t["refresh_token"].is_string(),
        "offline_access gives one: {t}"
    );
    assert!(t["id_token"].is_string());
    assert!(t["smart_style_url"]
        .as_str()
        .unwrap()
        .ends_with("/auth/style.json"));
    let scope = t["scope"].as_str().unwrap();
    for s in [
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/*.rs",
    ] {
        assert!(scope.split(' ').any(|w| w == s), "{s} in {scope}");
    }
    let token = t["access_token"].as_str().unwrap();
    let (s, p) = fhir_get(&c, token, &format!("/fhir/Patient/{}", c.ana)).await;
    assert_eq!((s, p["id"].as_str()), (200, Some(c.ana.as_str())));
    // Only the patient picked: the other is not there for this token.
    assert_eq!(
        fhir_get(&c, token, &format!("/fhir/Patient/{}", c.other))
            .await
            .0,
        404
    );
    let (s, bundle) = fhir_get(&c, token, "/fhir/Observation").await;
    assert_eq!(s, 200);
    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(2));
    // Read only: patient/*.rs writes nothing.
    let r = reqwest::Client::new()
        .delete(c.app.url(&format!("/fhir/Observation/{}", c.lab)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let style = reqwest::get(t["smart_style_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(style.status(), 200);
    let style: Value = style.json().await.unwrap();
    assert!(style["color_background"].is_string());
}

pub async fn the_id_token_is_rs256_with_fhir_user_and_the_discovery_documents_agree(
    engine: Engine,
) {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let c = clinic(engine).await;
    let b = Browser::new();
    let code = doctor_code(&c, &b, &[]).await;
    let (_, t) = exchange(&c, &code, Some(VERIFIER)).await;
    let id_token = t["id_token"].as_str().unwrap();
    let base = c.app.url("/fhir");
    let smart: Value = reqwest::get(c.app.url("/fhir/.well-known/smart-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oidc: Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        smart["issuer"].as_str().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(oidc["issuer"], base.as_str());
    assert_eq!(
        oidc["authorization_endpoint"],
        smart["authorization_endpoint"]
    );
    assert!(oidc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("RS256")));
    for cap in [
        "launch-ehr",
        "launch-standalone",
        "authorize-post",
        "client-public",
        "sso-openid-connect",
        "context-banner",
        "context-style",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "permission-offline",
        "permission-online",
    ] {
        assert!(
            smart["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!(cap)),
            "{cap}"
        );
    }
    assert_eq!(smart["code_challenge_methods_supported"], json!(["S256"]));
    let jwks: Value = reqwest::get(oidc["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let kid = header.kid.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap();
    assert_eq!(jwk["kty"], "RSA");
    let key = DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["app"]);
    v.set_issuer(&[base.as_str()]);
    let claims = decode::<Value>(id_token, &key, &v).unwrap().claims;
    assert_eq!(claims["nonce"], "n-456");
    let fhir_user = claims["fhirUser"].as_str().unwrap();
    assert!(
        fhir_user.starts_with(&format!("{base}/Practitioner/")),
        "{fhir_user}"
    );
    // The access token reads the user's own resource.
    let path = fhir_user.strip_prefix(&c.app.base).unwrap();
    assert_eq!(
        fhir_get(&c, t["access_token"].as_str().unwrap(), path)
            .await
            .0,
        200
    );
    // Another key would not verify it.
    let other = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), "AQAC").unwrap();
    assert!(decode::<Value>(id_token, &other, &v).is_err());
    // The CapabilityStatement names the authorize endpoint too.
    let meta: Value = reqwest::get(c.app.url("/fhir/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uris = meta["rest"][0]["security"]["extension"][0]["extension"]
        .as_array()
        .unwrap();
    assert!(uris
        .iter()
        .any(|u| u["url"] == "authorize" && u["valueUri"] == smart["authorization_endpoint"]));
}

pub async fn a_patient_signs_in_in_their_language_and_unticks_observations(engine: Engine) {
    let c = clinic(engine).await;
    // The browser speaks English; Ana's record says Spanish.
    let b = Browser::speaking(Some("en-US,en;q=0.9"));
    let page = signed_in(&c, &b, &[], PORTAL).await;
    assert!(page.body.contains("lang=\"es\""), "{}", page.body);
    assert!(page.body.contains("Permitir"), "{}", page.body);
    assert!(!page.body.contains("name=\"q\""), "a patient picks no one");
    let offered = page.fields("allow");
    let ticked: Vec<&str> = offered
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "0:Observation")
        .collect();
    assert!(ticked.len() + 1 == offered.len(), "{offered:?}");
    let r = consent(&c, &b, &page, Some(&ticked), &[]).await;
    let code = query(&r.location().unwrap())["code"].clone();
    let (_, t) = exchange(&c, &code, Some(VERIFIER)).await;
    assert_eq!(t["patient"], c.ana.as_str());
    let scope = t["scope"].as_str().unwrap();
    assert!(
        scope.contains("patient/Patient.rs")
            && !scope.contains("Observation")
            && !scope.contains("patient/*"),
        "{scope}"
    );
    let token = t["access_token"].as_str().unwrap();
    assert_eq!(
        fhir_get(&c, token, &format!("/fhir/Patient/{}", c.ana))
            .await
            .0,
        200
    );
    assert_eq!(fhir_get(&c, token, "/fhir/Observation").await.0, 403);
    assert_eq!(
        fhir_get(&c, token, &format!("/fhir/Observation/{}", c.lab))
            .await
            .0,
        403
    );
}

pub async fn observation_access_narrowed_to_a_category_finds_only_that_category(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let params = [(
        "scope",
        "launch/patient patient/Patient.rs patient/Observation.rs",
    )];
    let page = signed_in(&c, &b, &params, PORTAL).await;
    assert!(
        page.body.contains("name=\"category\" value=\"laboratory\""),
        "{}",
        page.body
    );
    let r = consent(&c, &b, &page, None, &["laboratory"]).await;
    let code = query(&r.location().unwrap())["code"].clone();
    let (_, t) = exchange(&c, &code, Some(VERIFIER)).await;
    let scope = t["scope"].as_str().unwrap();
    assert!(scope.contains("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"), "{scope}");
    let token = t["access_token"].as_str().unwrap();
    let (s, bundle) = fhir_get(&c, token, "/fhir/Observation").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![c.lab.as_str()]);
    assert_eq!(
        fhir_get(&c, token, &format!("/fhir/Observation/{}", c.lab))
            .await
            .0,
        200
    );
    assert_eq!(
        fhir_get(&c, token, &format!("/fhir/Observation/{}", c.vital))
            .await
            .0,
        404
    );
}

pub async fn an_ehr_launch_gives_the_patient_and_encounter_of_its_launch_id(engine: Engine) {
    let c = clinic(engine).await;
    let launch = common::acting::cli(
        &c.app,
        &[
            "launch",
            "--client",
            "app",
            "--patient",
            &c.ana,
            "--encounter",
            &c.encounter,
        ],
        "",
    )
    .unwrap();
    let b = Browser::new();
    let params = [
        ("launch", launch.trim()),
        (
            "scope",
            "launch openid fhirUser offline_access patient/*.rs",
        ),
    ];
    let page = signed_in(&c, &b, &params, DOCTOR).await;
    assert!(
        !page.body.contains("name=\"q\""),
        "no picker in an EHR launch: {}",
        page.body
    );
    let r = consent(&c, &b, &page, None, &[]).await;
    let code = query(&r.location().unwrap())["code"].clone();
    let (s, t) = exchange(&c, &code, Some(VERIFIER)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["patient"], c.ana.as_str());
    assert_eq!(t["encounter"], c.encounter.as_str());
    assert_eq!(t["need_patient_banner"], false);
    // A refresh keeps the context, and the clinic's application still shows the patient.
    let (s, r) = refresh(&c, t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["patient"], c.ana.as_str());
    assert_eq!(r["need_patient_banner"], false);
    // The launch id was used: a second authorize with it is sent back with an error.
    let again = b.get(&authorize_url(&c.app, &params)).await;
    let q = query(&again.location().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("code"));
    // The CLI refuses an encounter of another patient.
    let other_patient = common::acting::cli(
        &c.app,
        &[
            "launch",
            "--client",
            "app",
            "--patient",
            &c.other,
            "--encounter",
            &c.encounter,
        ],
        "",
    );
    assert!(other_patient.unwrap_err().contains("is not one of Patient"));
}

async fn refresh(c: &Clinic, token: &str, scope: Option<&str>) -> (u16, Value) {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    token_request(c, &form, None).await
}

pub async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let code = doctor_code(&c, &b, &[]).await;
    let (_, t) = exchange(&c, &code, Some(VERIFIER)).await;
    let first = t["refresh_token"].as_str().unwrap();
    // More than was granted: refused, and the token still works.
    let (s, e) = refresh(&c, first, Some("patient/*.cruds offline_access")).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")));
    // Fewer: granted, a new refresh token replaces the old.
    let (s, t2) = refresh(&c, first, Some("patient/Patient.rs offline_access")).await;
    assert_eq!(s, 200, "{t2}");
    assert_eq!(t2["scope"], "patient/Patient.rs offline_access");
    assert_eq!(t2["patient"], c.ana.as_str());
    let second = t2["refresh_token"].as_str().unwrap();
    assert_ne!(first, second);
    let narrow = t2["access_token"].as_str().unwrap();
    assert_eq!(
        fhir_get(&c, narrow, &format!("/fhir/Patient/{}", c.ana))
            .await
            .0,
        200
    );
    assert_eq!(fhir_get(&c, narrow, "/fhir/Observation").await.0, 403);
    // A refresh asks for no more than the one before it granted.
    let (s, _) = refresh(&c, second, Some("patient/*.rs")).await;
    assert_eq!(s, 400);
    let (s, t3) = refresh(&c, second, None).await;
    assert_eq!(s, 200, "{t3}");
    let live = t3["access_token"].as_str().unwrap();
    assert_eq!(
        fhir_get(&c, live, &format!("/fhir/Patient/{}", c.ana))
            .await
            .0,
        200
    );
    // The first token again: the whole family is revoked, the newest tokens with it.
    let (s, e) = refresh(&c, first, None).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        fhir_get(&c, live, &format!("/fhir/Patient/{}", c.ana))
            .await
            .0,
        401
    );
    assert_eq!(
        fhir_get(&c, narrow, &format!("/fhir/Patient/{}", c.ana))
            .await
            .0,
        401
    );
    let (s, _) = refresh(&c, t3["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 400);
    // A token no one issued names no client either.
    let (s, e) = refresh(&c, "not-a-refresh-token", None).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
}

pub async fn online_access_ends_with_the_session_and_offline_access_does_not(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let online = [("scope", "launch/patient online_access patient/Patient.rs")];
    let code = doctor_code(&c, &b, &online).await;
    let (_, on) = exchange(&c, &code, Some(VERIFIER)).await;
    let on_token = on["refresh_token"].as_str().unwrap().to_owned();
    let code = doctor_code(&c, &b, &[]).await;
    let (_, off) = exchange(&c, &code, Some(VERIFIER)).await;
    let off_token = off["refresh_token"].as_str().unwrap().to_owned();
    let (s, on2) = refresh(&c, &on_token, None).await;
    assert_eq!(s, 200, "{on2}");
    let r = b.post(&c.app.url("/auth/signout"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let (s, e) = refresh(&c, on2["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );
    let (s, off2) = refresh(&c, &off_token, None).await;
    assert_eq!(s, 200);
    // The public app revokes its refresh token by naming itself (RFC 7009): it is done.
    let live = off2["refresh_token"].as_str().unwrap();
    let form = [("token", live), ("client_id", "app")];
    assert_eq!(token_request_at(&c, "/auth/revoke", &form).await.0, 200);
    assert_eq!(refresh(&c, live, None).await.0, 400);
}

pub async fn a_confidential_app_authenticates_at_the_token_endpoint(engine: Engine) {
    let c = clinic(engine).await;
    register(&c.app, "dash", "secret", &[REDIRECT], SCOPE).await;
    let b = Browser::new();
    let code = doctor_code(&c, &b, &[("client_id", "dash")]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // Naming itself like a public client is not enough, nor a wrong secret.
    let mut public = form.to_vec();
    public.push(("client_id", "dash"));
    let (s, e) = token_request(&c, &public, None).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    assert_eq!(
        token_request(&c, &form, Some(("dash", "wrong"))).await.0,
        401
    );
    // Another client's code is no code at all.
    let (s, e) = token_request(&c, &form, Some(("app", "x"))).await;
    assert_eq!(s, 401, "{e}");
    let (s, t) = token_request(&c, &form, Some(("dash", "app secret"))).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["patient"], c.ana.as_str());
    // openid without fhirUser: an id_token all the same, naming no FHIR resource.
    let params = [
        ("client_id", "dash"),
        ("scope", "launch/patient openid patient/Patient.rs"),
    ];
    let code = doctor_code(&c, &b, &params).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (_, t) = token_request(&c, &form, Some(("dash", "app secret"))).await;
    let claims = claims_of(t["id_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "dash");
    assert!(claims.get("fhirUser").is_none(), "{claims}");
}

/// The claims of a JWT, unverified.
fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Each step of a sign-in leaves its audit event: a refused sign-in (without the email tried),
/// the sign-in, the code exchanged for tokens (naming the patient in context), the refresh and
/// the revocation, each naming the app and, once known, the user.
pub async fn the_sign_in_and_token_steps_leave_audit_events(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let r = b.get(&authorize_url(&c.app, &[])).await;
    let flow = c.app.url(&r.location().unwrap());
    let csrf = b.get(&flow).await.field("csrf").unwrap();
    let form = [
        ("csrf", csrf.as_str()),
        ("email", DOCTOR),
        ("password", "not it"),
    ];
    assert_eq!(b.post(&format!("{flow}/signin"), &form).await.status, 401);
    let code = doctor_code(&c, &b, &[]).await;
    let (_, t) = exchange(&c, &code, Some(VERIFIER)).await;
    let (s, t2) = refresh(&c, t["refresh_token"].as_str().unwrap(), None).await;
    assert_eq!(s, 200, "{t2}");
    let form = [
        ("token", t2["access_token"].as_str().unwrap()),
        ("client_id", "app"),
    ];
    let (s, about) = token_request_at(&c, "/auth/introspect", &form).await;
    assert_eq!((s, &about["active"]), (200, &json!(true)), "{about}");
    let form = [
        ("token", t2["refresh_token"].as_str().unwrap()),
        ("client_id", "app"),
    ];
    assert_eq!(token_request_at(&c, "/auth/revoke", &form).await.0, 200);
    c.app.fhir.audit.flush().await;
    let events: Vec<Value> = c
        .app
        .db
        .fetch_all(
            "SELECT event FROM audit_logs WHERE category IN ('login', 'token') ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.string("event").unwrap()).unwrap())
        .collect();
    let of =
        |action: &str| -> Vec<&Value> { events.iter().filter(|e| e["action"] == action).collect() };
    let sign_ins = of("sign-in");
    assert_eq!(sign_ins.len(), 2, "{events:#?}");
    assert_eq!(sign_ins[0]["outcome"], "minor-failure");
    assert_eq!(sign_ins[0]["client"], "app");
    assert!(
        sign_ins[0].get("agent").is_none(),
        "a refused sign-in names no one"
    );
    assert_eq!(sign_ins[1]["outcome"], "success");
    let doctor = sign_ins[1]["agent"].as_str().unwrap().to_owned();
    assert!(doctor.starts_with("Practitioner/"), "{doctor}");
    let token = of("token");
    let issued = token
        .iter()
        .find(|e| e["outcome"] == "success")
        .expect("the code exchanged");
    assert_eq!(issued["agent"], doctor.as_str());
    assert_eq!(issued["client"], "app");
    assert_eq!(issued["patients"], json!([c.ana]));
    let refreshed = of("refresh");
    assert_eq!(refreshed.len(), 1);
    assert_eq!(
        (&refreshed[0]["outcome"], &refreshed[0]["agent"]),
        (&json!("success"), &json!(doctor))
    );
    let introspected = of("introspect");
    assert_eq!(
        (introspected.len(), &introspected[0]["client"]),
        (1, &json!("app"))
    );
    let revoked = of("revoke");
    assert_eq!((revoked.len(), &revoked[0]["client"]), (1, &json!("app")));
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(DOCTOR) && !text.contains(PASSWORD),
        "no email, no password"
    );
}

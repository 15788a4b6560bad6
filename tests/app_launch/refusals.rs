//! What the authorization flows refuse, each beside the request that succeeds.

use super::common::browser::Browser;
use super::common::Engine;
use super::*;

pub async fn a_reused_code_is_refused_and_revokes_its_tokens(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let code = doctor_code(&c, &b, &[]).await;
    let (s, t) = exchange(&c, &code, Some(VERIFIER)).await;
    assert_eq!(s, 200);
    let token = t["access_token"].as_str().unwrap();
    let read = |token: String| {
        let url = c.app.url(&format!("/fhir/Patient/{}", c.ana));
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(read(token.to_owned()).await, 200);
    let (s, e) = exchange(&c, &code, Some(VERIFIER)).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        read(token.to_owned()).await,
        401,
        "the code's access token is revoked"
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", t["refresh_token"].as_str().unwrap()),
    ];
    assert_eq!(
        token_request(&c, &form, None).await.0,
        400,
        "and its refresh token"
    );
    let (s, _) = exchange(&c, "BAD_CODE", Some(VERIFIER)).await;
    assert_eq!(s, 400);
}

pub async fn codes_need_their_verifier_and_expire(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    // No verifier, a blank one: the code is not even looked at.
    let code = doctor_code(&c, &b, &[]).await;
    let (s, e) = exchange(&c, &code, None).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(exchange(&c, &code, Some("")).await.0, 400);
    // The challenge itself (plain PKCE), or another verifier: refused.
    let (s, e) = exchange(&c, &code, Some(CHALLENGE)).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let code = doctor_code(&c, &b, &[]).await;
    let (s, _) = exchange(&c, &code, Some(&"x".repeat(43))).await;
    assert_eq!(s, 400);
    // Another redirect_uri than the code's.
    let code = doctor_code(&c, &b, &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/other"),
        ("client_id", "app"),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(token_request(&c, &form, None).await.0, 400);
    // A code past its minute.
    let code = doctor_code(&c, &b, &[]).await;
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    c.app
        .db
        .execute(
            "UPDATE authorization_codes SET expires_at = ?",
            &[past.into()],
        )
        .await
        .unwrap();
    let (s, e) = exchange(&c, &code, Some(VERIFIER)).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    // The same flow in time works.
    let code = doctor_code(&c, &b, &[]).await;
    assert_eq!(exchange(&c, &code, Some(VERIFIER)).await.0, 200);
}

pub async fn the_authorize_endpoint_refuses_what_it_cannot_trust(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    // Before the redirect URI is trusted: a page, never a redirect.
    for uri in [
        "https://app.example/cb/",
        "https://app.example/cb2",
        "https://app.example/c",
        "https://app.example:444/cb",
        "https://app.example/cb?x=1",
        "http://app.example/cb",
        "https://evil.example/cb",
    ] {
        let r = b
            .get(&authorize_url(&c.app, &[("redirect_uri", uri)]))
            .await;
        assert_eq!(r.status, 400, "{uri}");
        assert!(r.location().is_none(), "{uri}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    let r = b
        .get(&authorize_url(&c.app, &[("client_id", "nobody")]))
        .await;
    assert_eq!((r.status, r.location()), (400, None));
    // After: back to the app with the error and the state, and never a code.
    for (params, error) in [
        (
            vec![("aud", "https://inferno.healthit.gov/invalid_aud")],
            "invalid_request",
        ),
        (vec![("aud", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            vec![
                ("launch", "no-such-launch"),
                ("scope", "launch patient/*.rs"),
            ],
            "invalid_request",
        ),
        (vec![("scope", "email")], "invalid_scope"),
    ] {
        let r = b.get(&authorize_url(&c.app, &params)).await;
        assert_eq!(r.status, 303, "{params:?}");
        let to = r.location().unwrap();
        assert!(to.starts_with(REDIRECT), "{params:?}: {to}");
        let q = query(&to);
        assert_eq!(
            q.get("error").map(String::as_str),
            Some(error),
            "{params:?}"
        );
        assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
        assert!(!q.contains_key("code"));
    }
    // Without state: an error, and no state to echo.
    let r = b.get(&authorize_url(&c.app, &[("state", "")])).await;
    let q = query(&r.location().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("state"));
    // The same request, well formed, by POST (authorize-post): to the sign-in page.
    let url = authorize_url(&c.app, &[]);
    let (path, q) = url.split_once('?').unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b.post(path, &pairs).await;
    assert_eq!(r.status, 303);
    assert!(r.location().unwrap().starts_with("/auth/flow/"));
}

pub async fn sign_in_answers_alike_and_is_throttled(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let r = b.get(&authorize_url(&c.app, &[])).await;
    let flow = c.app.url(&r.location().unwrap());
    let page = b.get(&flow).await;
    let csrf = page.field("csrf").unwrap();
    let attempt = |email: &'static str, password: &'static str| {
        let (b, flow, csrf) = (&b, flow.clone(), csrf.clone());
        async move {
            b.post(
                &format!("{flow}/signin"),
                &[("csrf", &csrf), ("email", email), ("password", password)],
            )
            .await
        }
    };
    let wrong = attempt(DOCTOR, "not the password").await;
    let unknown = attempt("nobody@clinic.example", "not the password").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    let said = |p: &Page| {
        p.body
            .split("role=\"alert\">")
            .nth(1)
            .map(|s| s[..s.find('<').unwrap()].to_owned())
    };
    assert_eq!(said(&wrong), said(&unknown));
    assert!(said(&wrong).unwrap().contains("not right"));
    for _ in 0..4 {
        assert_eq!(attempt(DOCTOR, "still wrong").await.status, 401);
    }
    // Five failures: the right password waits now, for this account only.
    let throttled = attempt(DOCTOR, PASSWORD).await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(throttled.body.contains("15"));
    let other = attempt(PORTAL, PASSWORD).await;
    assert_eq!(other.status, 303, "{}", other.body);
}

pub async fn the_pages_refuse_forged_forms_and_frames(engine: Engine) {
    let c = clinic(engine).await;
    let b = Browser::new();
    let r = b.get(&authorize_url(&c.app, &[])).await;
    let cookie = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/auth"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let flow = c.app.url(&r.location().unwrap());
    let page = b.get(&flow).await;
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(page.body.contains("<label for=\"email\">"));
    let signin = format!("{flow}/signin");
    // No CSRF token, or another: refused, and no one is signed in.
    let r = b
        .post(&signin, &[("email", DOCTOR), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post(
            &signin,
            &[
                ("csrf", "forged"),
                ("email", DOCTOR),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(b.get(&flow).await.body.contains("name=\"password\""));
    // Another browser (no cookie) cannot use the request at all.
    let thief = Browser::new();
    let r = thief
        .post(
            &signin,
            &[
                ("csrf", &page.field("csrf").unwrap()),
                ("email", DOCTOR),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(thief.get(&flow).await.status, 400);
    // The session id changes at sign-in; the consent form refuses a forged token too.
    let before = b.cookie("expediente_session").unwrap();
    let csrf = page.field("csrf").unwrap();
    let r = b
        .post(
            &signin,
            &[("csrf", &csrf), ("email", DOCTOR), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_ne!(b.cookie("expediente_session").unwrap(), before);
    let picker = b.get(&format!("{flow}?q=MRN-1001")).await;
    assert_eq!(
        picker.fields("patient"),
        vec![c.ana.clone()],
        "found by identifier"
    );
    let r = b
        .post(
            &format!("{flow}/patient"),
            &[("csrf", &csrf), ("patient", &c.ana)],
        )
        .await;
    assert_eq!(r.status, 403, "the old session's token is no good");
    let r = b
        .post(
            &format!("{flow}/patient"),
            &[
                ("csrf", &picker.field("csrf").unwrap()),
                ("patient", &c.ana),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    let consent_page = b.get(&flow).await;
    let r = b
        .post(&format!("{flow}/consent"), &[("decision", "allow")])
        .await;
    assert_eq!(r.status, 403);
    // Allowing nothing at all is declining.
    let csrf = consent_page.field("csrf").unwrap();
    let r = b
        .post(
            &format!("{flow}/consent"),
            &[("csrf", &csrf), ("decision", "allow")],
        )
        .await;
    assert_eq!(query(&r.location().unwrap())["error"], "access_denied");
    let r = b.get(&authorize_url(&c.app, &[])).await;
    let flow = c.app.url(&r.location().unwrap());
    let picker = b.get(&format!("{flow}?q=MRN-1001")).await;
    let csrf = picker.field("csrf").unwrap();
    b.post(
        &format!("{flow}/patient"),
        &[("csrf", &csrf), ("patient", &c.ana)],
    )
    .await;
    let consent_page = b.get(&flow).await;
    // Declining sends the app access_denied.
    let r = b
        .post(
            &format!("{flow}/consent"),
            &[
                ("csrf", &consent_page.field("csrf").unwrap()),
                ("decision", "deny"),
            ],
        )
        .await;
    let q = query(&r.location().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
}

pub async fn launch_ids_are_for_patients_the_clinician_may_see(engine: Engine) {
    let c = clinic(engine).await;
    let post = |token: String, form: Vec<(&'static str, String)>| {
        let url = c.app.url("/auth/launch");
        async move {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    common::acting::register(&c.app, "ehr", "user/*.cruds patient/*.rs");
    let doctor = common::acting::mint(&c.app, "ehr", "user/*.cruds", &["--user", DOCTOR]).unwrap();
    let (s, l) = post(
        doctor.clone(),
        vec![
            ("client_id", "app".into()),
            ("patient", c.ana.clone()),
            ("encounter", c.encounter.clone()),
        ],
    )
    .await;
    assert_eq!(s, 200, "{l}");
    assert!(l["launch"].as_str().unwrap().len() >= 32);
    // Ana's own account may not start a launch for John.
    let ana = common::acting::mint(&c.app, "ehr", "patient/*.rs", &["--user", PORTAL]).unwrap();
    let (s, _) = post(
        ana,
        vec![("client_id", "app".into()), ("patient", c.other.clone())],
    )
    .await;
    assert_eq!(s, 403);
    // An encounter of another patient, and no token at all.
    let (s, _) = post(
        doctor,
        vec![
            ("client_id", "app".into()),
            ("patient", c.other.clone()),
            ("encounter", c.encounter.clone()),
        ],
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        post(
            String::new(),
            vec![("client_id", "app".into()), ("patient", c.ana.clone())]
        )
        .await
        .0,
        401
    );
}

pub async fn the_picker_finds_only_patients_the_role_may_see(engine: Engine) {
    let c = clinic(engine).await;
    // A role that sees clinicians but no patient.
    c.app
        .db
        .execute(
            "INSERT INTO roles (name, description, is_clinical, permissions) \
             VALUES ('billing', 'Billing', ?, 'user/Practitioner.rs')",
            &[Some(false).into()],
        )
        .await
        .unwrap();
    let hash = expediente::auth::password::hash(PASSWORD.into())
        .await
        .unwrap();
    users::add(
        &c.app.db,
        "billing@clinic.example",
        "billing",
        Account::New,
        Some(hash),
    )
    .await
    .unwrap();
    let b = Browser::new();
    let page = signed_in(&c, &b, &[], "billing@clinic.example").await;
    let flow = flow_of(&c, &page);
    let found = b.get(&format!("{flow}?q=Garc%C3%ADa")).await;
    assert!(found.fields("patient").is_empty(), "{}", found.body);
    assert!(found.body.contains("No patient found"));
    // Picking Ana anyway, with the session's own CSRF token, is refused.
    let session_csrf = sessions_csrf(&c, &b).await;
    let r = b
        .post(
            &format!("{flow}/patient"),
            &[("csrf", &session_csrf), ("patient", &c.ana)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // An EHR launch for Ana stops at a page for this user.
    let launch = common::acting::cli(
        &c.app,
        &["launch", "--client", "app", "--patient", &c.ana],
        "",
    )
    .unwrap();
    let r = b
        .get(&authorize_url(
            &c.app,
            &[("launch", launch.trim()), ("scope", "launch patient/*.rs")],
        ))
        .await;
    let page = b.get(&c.app.url(&r.location().unwrap())).await;
    assert_eq!(page.status, 403, "{}", page.body);
}

/// The CSRF token of `b`'s session, as the database keeps it.
async fn sessions_csrf(c: &Clinic, b: &Browser) -> String {
    let token = b.cookie("expediente_session").unwrap();
    expediente::auth::sessions::session(&c.app.db, &token)
        .await
        .unwrap()
        .unwrap()
        .csrf
}

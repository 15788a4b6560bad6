//! SMART App Launch over HTTP, as a browser without JavaScript and an app would drive it: the
//! authorize endpoint, sign-in, patient picker and consent pages, the code exchange with PKCE,
//! refresh tokens, id_tokens, and EHR launch; each refusal beside the request it refuses. On
//! both engines.

mod clients;
#[path = "../common/mod.rs"]
mod common;
mod flows;
mod refusals;

use common::browser::{Browser, Page};
use common::{Engine, TestApp};
use expediente::auth::records::{self, Client};
use expediente::auth::users::{self, Account};
use serde_json::{json, Value};

pub const REDIRECT: &str = "https://app.example/cb";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9qYrQmlGTTKyRkdWFv4vDDjXk";
pub const CHALLENGE: &str = "ZL5Y4SKYcM28SPXAH1dJxWLo1k_WpGVBrITbBqBcd-k";
pub const PASSWORD: &str = "a long password";
pub const DOCTOR: &str = "dr.ruiz@clinic.example";
pub const PORTAL: &str = "ana@home.example";
pub const SCOPE: &str =
    "launch launch/patient openid fhirUser profile offline_access online_access \
                     patient/*.cruds user/*.cruds";

pub struct Clinic {
    pub app: TestApp,
    /// Ana García (Spanish-speaking, with her own account) and another patient.
    pub ana: String,
    pub other: String,
    pub encounter: String,
    pub lab: String,
    pub vital: String,
}

async fn patient(app: &TestApp, family: &str, given: &str, mrn: &str, lang: &str) -> String {
    let p = app
        .create(&json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:clinic:mrn", "value": mrn}],
            "name": [{"family": family, "given": [given]}],
            "birthDate": "1980-04-02",
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": lang}]}, "preferred": true}],
        }))
        .await;
    p["id"].as_str().unwrap().to_owned()
}

async fn observation(app: &TestApp, patient: &str, category: &str, code: &str) -> String {
    let o = app
        .create(&json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        }))
        .await;
    o["id"].as_str().unwrap().to_owned()
}

/// A clinic with two patients, a physician and Ana's own account, and the app registered.
pub async fn clinic(engine: Engine) -> Clinic {
    let app = TestApp::spawn(engine).await;
    let ana = patient(&app, "García", "Ana", "MRN-1001", "es").await;
    let other = patient(&app, "Smith", "John", "MRN-2002", "en").await;
    let enc = app
        .create(&json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{ana}")},
        }))
        .await;
    let lab = observation(&app, &ana, "laboratory", "2345-7").await;
    let vital = observation(&app, &ana, "vital-signs", "8867-4").await;
    register(&app, "app", "public", &[REDIRECT], SCOPE).await;
    let hash = expediente::auth::password::hash(PASSWORD.into())
        .await
        .unwrap();
    users::add(
        &app.db,
        DOCTOR,
        "physician",
        Account::New,
        Some(hash.clone()),
    )
    .await
    .unwrap();
    users::add(
        &app.db,
        PORTAL,
        "patient",
        Account::Patient(&ana),
        Some(hash),
    )
    .await
    .unwrap();
    Clinic {
        encounter: enc["id"].as_str().unwrap().to_owned(),
        app,
        ana,
        other,
        lab,
        vital,
    }
}

pub async fn register(app: &TestApp, id: &str, kind: &str, uris: &[&str], scope: &str) {
    let secret_hash = match kind {
        "secret" => Some(
            expediente::auth::password::hash("app secret".into())
                .await
                .unwrap(),
        ),
        _ => None,
    };
    records::add_client(
        &app.db,
        &Client {
            client_id: id.into(),
            name: Some("Clinic Companion".into()),
            kind: kind.into(),
            secret_hash,
            jwks: None,
            jwks_url: None,
            redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
            scope: scope.into(),
        },
    )
    .await
    .unwrap();
}

/// The authorize URL of `app` with `params` over the defaults (an empty value drops one).
pub fn authorize_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let aud = app.url("/fhir");
    let mut all: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", REDIRECT),
        (
            "scope",
            "launch/patient openid fhirUser offline_access patient/*.rs",
        ),
        ("state", "st-123"),
        ("aud", &aud),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("nonce", "n-456"),
    ];
    for (k, v) in params {
        all.retain(|(n, _)| n != k);
        if !v.is_empty() {
            all.push((k, v));
        }
    }
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(all)
        .finish();
    app.url(&format!("/auth/authorize?{q}"))
}

/// The query parameters of a redirect to the app.
pub fn query(location: &str) -> std::collections::HashMap<String, String> {
    let q = location.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// Starts a request and signs in: the page after sign-in.
pub async fn signed_in(c: &Clinic, b: &Browser, params: &[(&str, &str)], email: &str) -> Page {
    let r = b.get(&authorize_url(&c.app, params)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let flow = c.app.url(&r.location().unwrap());
    let page = b.get(&flow).await;
    assert_eq!(page.status, 200, "{}", page.body);
    if !page.body.contains("name=\"password\"") {
        // Signed in already in this browser.
        return page;
    }
    let csrf = page.field("csrf").unwrap();
    let r = b
        .post(
            &format!("{flow}/signin"),
            &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    b.get(&flow).await
}

/// The flow page's own URL.
pub fn flow_of(c: &Clinic, page: &Page) -> String {
    let action = page.body.split("action=\"").nth(1).unwrap();
    let path = &action[..action.find('"').unwrap()];
    let path = path
        .trim_end_matches("/consent")
        .trim_end_matches("/patient");
    c.app.url(path)
}

/// Answers the consent page with `allow` ticked (all when None) and `categories`.
pub async fn consent(
    c: &Clinic,
    b: &Browser,
    page: &Page,
    allow: Option<&[&str]>,
    categories: &[&str],
) -> Page {
    let csrf = page.field("csrf").unwrap();
    let offered = page.fields("allow");
    let ticked: Vec<&str> = match allow {
        Some(a) => a.to_vec(),
        None => offered.iter().map(String::as_str).collect(),
    };
    let mut form = vec![("csrf", csrf.as_str()), ("decision", "allow")];
    form.extend(ticked.iter().map(|t| ("allow", *t)));
    form.extend(categories.iter().map(|k| ("category", *k)));
    b.post(&format!("{}/consent", flow_of(c, page)), &form)
        .await
}

/// Exchanges `code` as the public app.
pub async fn exchange(c: &Clinic, code: &str, verifier: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", "app"),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    token_request(c, &form, None).await
}

pub async fn token_request(
    c: &Clinic,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    token_request_with(c, "/auth/token", form, basic).await
}

/// A form posted to another OAuth endpoint by the public app.
pub async fn token_request_at(c: &Clinic, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    token_request_with(c, path, form, None).await
}

async fn token_request_with(
    c: &Clinic,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = reqwest::Client::new()
        .post(c.app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["cache-control"], "no-store");
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A clinician's standalone launch through the picker, to a code.
pub async fn doctor_code(c: &Clinic, b: &Browser, params: &[(&str, &str)]) -> String {
    let page = signed_in(c, b, params, DOCTOR).await;
    assert!(
        page.body.contains("name=\"q\""),
        "the picker: {}",
        page.body
    );
    let flow = flow_of(c, &page);
    let found = b.get(&format!("{flow}?q=Garc%C3%ADa")).await;
    assert_eq!(
        found.fields("patient"),
        vec![c.ana.clone()],
        "{}",
        found.body
    );
    let r = b
        .post(
            &format!("{flow}/patient"),
            &[("csrf", &found.field("csrf").unwrap()), ("patient", &c.ana)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&flow).await;
    let r = consent(c, b, &page, None, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let q = query(&r.location().unwrap());
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    q["code"].clone()
}

use clients::*;
use flows::*;
use refusals::*;

on_both_engines!(
    a_clinician_launches_an_app_standalone_and_it_reads_the_patient_picked,
    the_id_token_is_rs256_with_fhir_user_and_the_discovery_documents_agree,
    a_patient_signs_in_in_their_language_and_unticks_observations,
    observation_access_narrowed_to_a_category_finds_only_that_category,
    an_ehr_launch_gives_the_patient_and_encounter_of_its_launch_id,
    refresh_tokens_rotate_and_a_reused_one_revokes_the_family,
    online_access_ends_with_the_session_and_offline_access_does_not,
    a_confidential_app_authenticates_at_the_token_endpoint,
    a_reused_code_is_refused_and_revokes_its_tokens,
    codes_need_their_verifier_and_expire,
    the_authorize_endpoint_refuses_what_it_cannot_trust,
    sign_in_answers_alike_and_is_throttled,
    the_pages_refuse_forged_forms_and_frames,
    launch_ids_are_for_patients_the_clinician_may_see,
    the_picker_finds_only_patients_the_role_may_see,
    the_official_javascript_client_launches_in_a_real_browser,
    the_official_python_client_completes_a_standalone_launch,
    the_sign_in_and_token_steps_leave_audit_events,
);

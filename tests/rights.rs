//! Writes meet the caller's scopes (through the internal API; the HTTP face comes with tokens):
//! a patient's token writes in its own compartment only, a filtered scope only what its filter
//! keeps, an action no scope allows is a 403, and a refused write, alone or in a transaction,
//! changes nothing. On both engines.

mod common;

use common::{Engine, TestApp};
use expediente::auth::access::Access;
use expediente::auth::scope::Scopes;
use expediente::error::Error;
use expediente::fhir::Id;
use expediente::interactions::{BundleOptions, Caller};
use serde_json::{json, Value};

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

fn observation(id: Option<&str>, patient: &str, category: &str) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {"value": 90, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    });
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o
}

async fn clinic(app: &TestApp) {
    for who in ["ana", "bob"] {
        let p = json!({"resourceType": "Patient", "id": who, "name": [{"family": who}]});
        assert!(app
            .put(&format!("/fhir/Patient/{who}"), &p)
            .await
            .status
            .is_success());
        let id = format!("glu-{who}");
        let r = app
            .put(
                &format!("/fhir/Observation/{id}"),
                &observation(Some(&id), who, "laboratory"),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
}

fn who(app: &TestApp, scopes: &str, patient: Option<&str>) -> Caller {
    Caller {
        base_url: "http://localhost/fhir".into(),
        access: Access::new(&app.fhir.registry, Scopes::parse(scopes), patient),
        request_id: "rights-test".into(),
        audit: Default::default(),
    }
}

async fn observations(app: &TestApp) -> (i64, i64) {
    (
        app.count("medical_test_results").await + app.count("vital_sign_observations").await,
        app.count("resource_versions").await,
    )
}

async fn a_patients_token_writes_only_in_its_compartment(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let ana = who(&app, "patient/*.cruds", Some("ana"));
    let obs = app.fhir.resource_type("Observation").unwrap();
    let id = |i: &str| Id::parse(i).unwrap();
    let before = observations(&app).await;

    // Create: for ana yes, for bob no (and nothing written): bob is not there for ana's token,
    // so a reference to him is refused as one to a patient who does not exist (422).
    assert!(app
        .fhir
        .create(&ana, obs, observation(None, "ana", "laboratory"))
        .await
        .is_ok());
    let mine = observations(&app).await;
    assert!(matches!(
        app.fhir
            .create(&ana, obs, observation(None, "bob", "laboratory"))
            .await,
        Err(Error::Unprocessable(_))
    ));
    assert_eq!(
        observations(&app).await,
        mine,
        "a refused create writes nothing"
    );
    // Update: bob's is not there for ana; ana's cannot be moved to bob.
    let r = app
        .fhir
        .update(
            &ana,
            obs,
            &id("glu-bob"),
            observation(Some("glu-bob"), "ana", "laboratory"),
            None,
        )
        .await;
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    let r = app
        .fhir
        .update(
            &ana,
            obs,
            &id("glu-ana"),
            observation(Some("glu-ana"), "bob", "laboratory"),
            None,
        )
        .await;
    assert!(matches!(r, Err(Error::Unprocessable(_))), "{r:?}");
    assert_eq!(
        app.get("/fhir/Observation/glu-ana").await.body["subject"]["reference"],
        "Patient/ana"
    );
    assert!(app
        .fhir
        .update(
            &ana,
            obs,
            &id("glu-ana"),
            observation(Some("glu-ana"), "ana", "vital-signs"),
            None
        )
        .await
        .is_ok());
    // Patch and delete: bob's is not there.
    let ops = expediente::interactions::parse_patch(
        &json!([{"op": "replace", "path": "/status", "value": "amended"}]),
    )
    .unwrap();
    assert!(matches!(
        app.fhir.patch(&ana, obs, &id("glu-bob"), &ops, None).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        app.fhir.delete(&ana, obs, &id("glu-bob"), None).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        app.get("/fhir/Observation/glu-bob").await.status,
        200,
        "bob's is untouched"
    );
    // A conditional update whose criteria would find bob's finds nothing, and its body, about
    // bob (whom ana's token does not know of), is refused.
    let r = app
        .fhir
        .conditional_update(
            &ana,
            obs,
            "_id=glu-bob",
            observation(None, "bob", "laboratory"),
            None,
        )
        .await;
    assert!(matches!(r, Err(Error::Unprocessable(_))), "{r:?}");
    // A transaction with one entry outside: refused whole.
    let counted = observations(&app).await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f0e4a8e-0c2e-4a57-9d7c-1a2b3c4d5e01", "resource": observation(None, "ana", "laboratory"), "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:6f0e4a8e-0c2e-4a57-9d7c-1a2b3c4d5e02", "resource": observation(None, "bob", "laboratory"), "request": {"method": "POST", "url": "Observation"}}
    ]});
    let opts = BundleOptions {
        representation: false,
        max_entries: 100,
    };
    let r = app.fhir.process_bundle(&ana, bundle, opts).await;
    assert!(matches!(r, Err(Error::Unprocessable(_))), "{r:?}");
    assert_eq!(
        observations(&app).await,
        counted,
        "nothing of the transaction was written"
    );
    assert!(before.0 < counted.0);
    // Deleting its own works.
    assert!(app
        .fhir
        .delete(&ana, obs, &id("glu-ana"), None)
        .await
        .is_ok());
}

async fn a_filtered_scope_writes_only_what_its_filter_keeps(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let labs = who(
        &app,
        &format!("user/Observation.cruds?category={LAB}"),
        None,
    );
    let obs = app.fhir.resource_type("Observation").unwrap();
    assert!(app
        .fhir
        .create(&labs, obs, observation(None, "bob", "laboratory"))
        .await
        .is_ok());
    let counted = observations(&app).await;
    assert!(matches!(
        app.fhir
            .create(&labs, obs, observation(None, "bob", "vital-signs"))
            .await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(observations(&app).await, counted);
    // No scope for Patient at all: 403, naming one that would do.
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Nueva"}]});
    match app
        .fhir
        .create(&labs, app.fhir.resource_type("Patient").unwrap(), patient)
        .await
    {
        Err(Error::Forbidden(m)) => assert!(m.contains("Patient.c"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Read-only scopes write nothing, and $validate is a create.
    let reader = who(&app, "user/*.rs", None);
    assert!(matches!(
        app.fhir
            .create(&reader, obs, observation(None, "ana", "laboratory"))
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        app.fhir
            .validate(&reader, obs, observation(None, "ana", "laboratory"))
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        app.fhir
            .delete(&reader, obs, &Id::parse("glu-ana").unwrap(), None)
            .await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(observations(&app).await, counted);
}

on_both_engines!(
    a_patients_token_writes_only_in_its_compartment,
    a_filtered_scope_writes_only_what_its_filter_keeps,
);

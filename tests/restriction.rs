//! The one restriction of a search (what a caller may see: a patient's compartment, or only the
//! Observations of one category), added through the internal API, holds on every path a search
//! reads: matches and totals, chains and `_has`, includes and revincludes, the Patient
//! compartment, search across types, `$everything` and history. Each path is checked both ways:
//! without the restriction it finds what the restriction hides.

mod common;

use common::{stub, Engine, TestApp};
use expediente::interactions::{Caller, HistoryQuery, SearchRequest};
use expediente::mapping::search::Restriction;
use serde_json::{json, Value};

fn caller(restriction: Restriction) -> Caller {
    Caller {
        base_url: "http://localhost/fhir".into(),
        access: expediente::auth::access::Access::restricted(restriction),
        request_id: "restriction-test".into(),
        audit: Default::default(),
    }
}

fn request(query: &str) -> SearchRequest {
    SearchRequest {
        params: form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        strict: true,
    }
}

/// `Type/id` of every entry of a Bundle, sorted.
fn ids(bundle: &Value) -> Vec<String> {
    let mut out: Vec<String> = bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap_or("deleted"),
                        e["resource"]["id"]
                            .as_str()
                            .or_else(|| e["fullUrl"].as_str().and_then(|u| u.rsplit('/').next()))
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn observation(id: &str, patient: &str, category: &str, code: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-01-05T08:00:00Z",
        "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// Two patients, ana and bob, each with a heart rate (vital sign) and a glucose (laboratory)
/// Observation and an Encounter; ana's report names bob's glucose too.
async fn clinic(app: &TestApp) {
    stub(app, "Patient", "ana").await;
    let bob = json!({"resourceType": "Patient", "id": "bob", "name": [{"family": "Zubiri"}]});
    assert!(app.put("/fhir/Patient/bob", &bob).await.status.is_success());
    for who in ["ana", "bob"] {
        for (id, category, code) in [
            (format!("hr-{who}"), "vital-signs", "8867-4"),
            (format!("glu-{who}"), "laboratory", "2339-0"),
        ] {
            let r = app
                .put(
                    &format!("/fhir/Observation/{id}"),
                    &observation(&id, who, category, code),
                )
                .await;
            assert!(r.status.is_success(), "{}", r.text);
        }
        let enc = json!({"resourceType": "Encounter", "id": format!("enc-{who}"), "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{who}")}});
        let r = app.put(&format!("/fhir/Encounter/enc-{who}"), &enc).await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    let report = json!({"resourceType": "DiagnosticReport", "id": "rep-ana", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
        "subject": {"reference": "Patient/ana"},
        "result": [{"reference": "Observation/glu-ana"}, {"reference": "Observation/glu-bob"}]});
    let r = app.put("/fhir/DiagnosticReport/rep-ana", &report).await;
    assert!(r.status.is_success(), "{}", r.text);
}

async fn search(app: &TestApp, who: &Caller, rt: &str, query: &str) -> Value {
    let text = app
        .fhir
        .search(who, app.fhir.resource_type(rt).unwrap(), &request(query))
        .await
        .unwrap_or_else(|e| panic!("{rt}?{query}: {e:?}"));
    serde_json::from_str(&text).unwrap()
}

fn strs(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    out.sort();
    out
}

async fn a_patient_compartment_restriction_holds_on_every_search_path(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let all = caller(Restriction::none());
    let ana = caller(Restriction::none().patient_compartment("ana"));
    let observation = app.fhir.resource_type("Observation").unwrap();

    // Matches and their total.
    let open = search(&app, &all, "Observation", "_total=accurate").await;
    assert_eq!(open["total"], 4);
    let only = search(&app, &ana, "Observation", "_total=accurate").await;
    assert_eq!(only["total"], 2);
    assert_eq!(
        ids(&only),
        strs(&["Observation/glu-ana", "Observation/hr-ana"])
    );
    // A later page's count too.
    let counted = search(&app, &ana, "Observation", "_count=1&_total=accurate").await;
    assert_eq!(counted["total"], 2);
    assert_eq!(
        ids(&search(&app, &ana, "Patient", "").await),
        strs(&["Patient/ana"])
    );
    // Types outside the compartment: nothing.
    stub(&app, "Practitioner", "doc").await;
    assert_eq!(
        ids(&search(&app, &all, "Practitioner", "").await),
        strs(&["Practitioner/doc"])
    );
    assert!(ids(&search(&app, &ana, "Practitioner", "").await).is_empty());

    // Includes: ana's report names bob's glucose, which stays out.
    let q = "_id=rep-ana&_include=DiagnosticReport:result";
    assert!(ids(&search(&app, &all, "DiagnosticReport", q).await)
        .contains(&"Observation/glu-bob".to_owned()));
    assert_eq!(
        ids(&search(&app, &ana, "DiagnosticReport", q).await),
        strs(&["DiagnosticReport/rep-ana", "Observation/glu-ana"])
    );
    // Revincludes: the reports that name bob's glucose are not bob's to see... nor ana's
    // glucose's for someone restricted to bob.
    let bob = caller(Restriction::none().patient_compartment("bob"));
    let q = "_id=glu-bob&_revinclude=DiagnosticReport:result";
    assert_eq!(
        ids(&search(&app, &all, "Observation", q).await),
        strs(&["DiagnosticReport/rep-ana", "Observation/glu-bob"])
    );
    assert_eq!(
        ids(&search(&app, &bob, "Observation", q).await),
        strs(&["Observation/glu-bob"])
    );

    // The Patient compartment: another patient's is empty.
    let comp = |who: &Caller, pid: &'static str| {
        let app = &app;
        let who = who.clone();
        async move {
            let text = app
                .fhir
                .search_compartment(&who, pid, observation, &request(""))
                .await
                .unwrap();
            ids(&serde_json::from_str(&text).unwrap())
        }
    };
    assert_eq!(comp(&all, "bob").await.len(), 2);
    assert!(comp(&ana, "bob").await.is_empty());
    assert_eq!(comp(&ana, "ana").await.len(), 2);

    // Across types.
    let req = request("_type=Observation,Encounter");
    let across = |who: &Caller| {
        let app = &app;
        let who = who.clone();
        let req = &req;
        async move {
            let text = app.fhir.search_all(&who, req).await.unwrap();
            ids(&serde_json::from_str(&text).unwrap())
        }
    };
    assert_eq!(across(&all).await.len(), 6);
    assert_eq!(
        across(&ana).await,
        strs(&[
            "Encounter/enc-ana",
            "Observation/glu-ana",
            "Observation/hr-ana"
        ])
    );

    // History: only the versions of what the caller may see.
    let history = |who: &Caller| {
        let app = &app;
        let who = who.clone();
        async move {
            let q = HistoryQuery::parse(&[]).unwrap();
            let b = app.fhir.history(&who, observation, None, &q).await.unwrap();
            (b["total"].as_i64().unwrap(), ids(&b))
        }
    };
    assert_eq!(history(&all).await.0, 4);
    assert_eq!(
        history(&ana).await,
        (2, strs(&["Observation/glu-ana", "Observation/hr-ana"]))
    );
}

async fn a_restriction_on_one_type_holds_inside_chains_has_and_everything(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let all = caller(Restriction::none());
    let registry = &app.fhir.registry;
    // Only ana of the Patients; other types as they are.
    let just_ana = caller(
        Restriction::none()
            .matching(registry, "Patient", "_id=ana")
            .unwrap(),
    );
    // Only laboratory Observations.
    let labs = caller(
        Restriction::none()
            .matching(registry, "Observation", "category=laboratory")
            .unwrap(),
    );

    // A chain reads the restricted type: bob's name finds nothing through it.
    let q = "subject:Patient.family=Zubiri";
    assert_eq!(
        ids(&search(&app, &all, "Observation", q).await),
        strs(&["Observation/glu-bob", "Observation/hr-bob"])
    );
    assert!(ids(&search(&app, &just_ana, "Observation", q).await).is_empty());
    // ... and the unrestricted type keeps its own rows.
    assert_eq!(
        ids(&search(&app, &just_ana, "Observation", "").await).len(),
        4
    );

    // _has reads the restricted type: no heart rate is visible to find a patient by.
    let q = "_has:Observation:subject:code=8867-4";
    assert_eq!(
        ids(&search(&app, &all, "Patient", q).await),
        strs(&["Patient/ana", "Patient/bob"])
    );
    assert!(ids(&search(&app, &labs, "Patient", q).await).is_empty());
    let q = "_has:Observation:subject:code=2339-0";
    assert_eq!(ids(&search(&app, &labs, "Patient", q).await).len(), 2);

    // Revincludes of the restricted type.
    let q = "_id=ana&_revinclude=Observation:subject";
    assert_eq!(
        ids(&search(&app, &all, "Patient", q).await),
        strs(&["Observation/glu-ana", "Observation/hr-ana", "Patient/ana"])
    );
    assert_eq!(
        ids(&search(&app, &labs, "Patient", q).await),
        strs(&["Observation/glu-ana", "Patient/ana"])
    );

    // $everything.
    let everything = |who: &Caller| {
        let app = &app;
        let who = who.clone();
        async move {
            let id = expediente::fhir::Id::parse("ana").unwrap();
            let text = app.fhir.everything(&who, &id, &[]).await.unwrap();
            ids(&serde_json::from_str(&text).unwrap())
        }
    };
    assert!(everything(&all)
        .await
        .contains(&"Observation/hr-ana".to_owned()));
    let seen = everything(&labs).await;
    assert!(seen.contains(&"Observation/glu-ana".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"Observation/hr-ana".to_owned()), "{seen:?}");
    assert!(seen.contains(&"Encounter/enc-ana".to_owned()), "{seen:?}");

    // An unknown parameter is refused when the restriction is made.
    assert!(Restriction::none()
        .matching(registry, "Observation", "nonsense=1")
        .is_err());
}

/// The restriction a token's scopes make (`expediente::auth::access`): a patient's compartment
/// for `patient/` scopes, v2 query filters ORed across scopes, nothing for a type no scope names
/// or a filter the server cannot apply.
async fn scopes_become_the_restriction_of_what_a_caller_sees(engine: Engine) {
    use expediente::auth::access::Access;
    use expediente::auth::scope::{Action, Scopes};
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let lab = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let vital = "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
    let who = |scopes: &str, patient: Option<&str>| {
        let access = Access::new(&app.fhir.registry, Scopes::parse(scopes), patient);
        let c = Caller {
            base_url: "http://localhost/fhir".into(),
            access: access.clone(),
            request_id: "scopes-test".into(),
            audit: Default::default(),
        };
        (c, access)
    };
    let (c, access) = who("patient/*.rs", Some("ana"));
    assert!(
        access.allows(Action::Search, "Observation")
            && !access.allows(Action::Create, "Observation")
    );
    assert_eq!(
        ids(&search(&app, &c, "Observation", "").await),
        strs(&["Observation/glu-ana", "Observation/hr-ana"])
    );
    assert_eq!(
        ids(&search(&app, &c, "Patient", "").await),
        strs(&["Patient/ana"])
    );
    assert_eq!(
        ids(&search(&app, &c, "Encounter", "").await),
        strs(&["Encounter/enc-ana"])
    );

    let (c, access) = who(&format!("user/Observation.rs?{lab}"), None);
    assert!(!access.allows(Action::Read, "Patient"));
    assert_eq!(
        ids(&search(&app, &c, "Observation", "").await),
        strs(&["Observation/glu-ana", "Observation/glu-bob"])
    );
    assert!(matches!(
        app.fhir
            .search(&c, app.fhir.resource_type("Patient").unwrap(), &request(""))
            .await,
        Err(expediente::error::Error::Forbidden(_))
    ));
    // Its includes bring no Patient: the type is not granted.
    let inc = search(&app, &c, "Observation", "_include=Observation:subject").await;
    assert_eq!(
        ids(&inc),
        strs(&["Observation/glu-ana", "Observation/glu-bob"])
    );

    let (c, _) = who(
        &format!("user/Observation.rs?{lab} user/Observation.rs?{vital}"),
        None,
    );
    assert_eq!(
        search(&app, &c, "Observation", "_total=accurate").await["total"],
        4
    );
    let (c, _) = who(&format!("patient/Observation.rs?{lab}"), Some("ana"));
    assert_eq!(
        ids(&search(&app, &c, "Observation", "").await),
        strs(&["Observation/glu-ana"])
    );
    // A filter the server cannot apply grants nothing.
    let (c, _) = who("user/Observation.rs?nonsense=1", None);
    assert_eq!(
        search(&app, &c, "Observation", "_total=accurate").await["total"],
        0
    );
    // No patient for patient/ scopes: nothing.
    let (c, _) = who("patient/*.rs", None);
    assert_eq!(
        search(&app, &c, "Observation", "_total=accurate").await["total"],
        0
    );
    // user/*.rs: everything, no restriction at all.
    let (c, _) = who("user/*.rs", None);
    assert!(c.access.restriction(Action::Search).is_none());
    assert!(c.access.unrestricted(Action::Search, "Observation"));
    // A named type: that type unrestricted, the others not reached.
    let (c, _) = who("user/Observation.rs", None);
    assert!(c.access.unrestricted(Action::Search, "Observation"));
    assert!(!c.access.unrestricted(Action::Search, "Patient"));
    assert_eq!(
        search(&app, &c, "Observation", "_total=accurate").await["total"],
        4
    );
}

/// Reads meet the scopes too: a type no scope allows is a 403 naming a scope that would; a
/// resource outside what the caller may reach is a 404, like one that was never written.
async fn reads_history_and_everything_answer_only_what_the_scopes_reach(engine: Engine) {
    use expediente::auth::access::Access;
    use expediente::auth::scope::Scopes;
    use expediente::error::Error;
    use expediente::fhir::Id;
    let app = TestApp::spawn(engine).await;
    clinic(&app).await;
    let who = |scopes: &str, patient: Option<&str>| Caller {
        base_url: "http://localhost/fhir".into(),
        access: Access::new(&app.fhir.registry, Scopes::parse(scopes), patient),
        request_id: "reads-test".into(),
        audit: Default::default(),
    };
    let rt = |t: &str| app.fhir.resource_type(t).unwrap();
    let id = |i: &str| Id::parse(i).unwrap();
    let read = |c: Caller, t: &'static str, i: &'static str| {
        let app = &app;
        async move {
            app.fhir
                .read(
                    &c,
                    app.fhir.resource_type(t).unwrap(),
                    &Id::parse(i).unwrap(),
                )
                .await
        }
    };
    let ana = who("patient/*.rs", Some("ana"));
    assert!(read(ana.clone(), "Patient", "ana").await.is_ok());
    assert!(read(ana.clone(), "Observation", "glu-ana").await.is_ok());
    for (t, i) in [
        ("Patient", "bob"),
        ("Observation", "glu-bob"),
        ("Encounter", "enc-bob"),
        ("Observation", "nobody"),
    ] {
        assert!(
            matches!(read(ana.clone(), t, i).await, Err(Error::NotFound(_))),
            "{t}/{i}"
        );
    }
    assert!(matches!(
        app.fhir
            .vread(&ana, rt("Observation"), &id("glu-bob"), 1)
            .await,
        Err(Error::NotFound(_))
    ));
    assert!(app
        .fhir
        .vread(&ana, rt("Observation"), &id("glu-ana"), 1)
        .await
        .is_ok());
    let q = HistoryQuery::parse(&[]).unwrap();
    assert!(matches!(
        app.fhir
            .history(&ana, rt("Observation"), Some(&id("glu-bob")), &q)
            .await,
        Err(Error::NotFound(_))
    ));
    let h = app
        .fhir
        .history(&ana, rt("Observation"), Some(&id("glu-ana")), &q)
        .await
        .unwrap();
    // (A patient's token gets no total in a history: it would count versions it may not see.)
    assert_eq!(h["entry"].as_array().map(Vec::len), Some(1));
    assert!(h.get("total").is_none());
    assert!(matches!(
        app.fhir.everything(&ana, &id("bob"), &[]).await,
        Err(Error::NotFound(_))
    ));
    let mine: Value =
        serde_json::from_str(&app.fhir.everything(&ana, &id("ana"), &[]).await.unwrap()).unwrap();
    assert!(
        ids(&mine)
            .iter()
            .all(|i| i.ends_with("-ana") || i == "Patient/ana" || i == "DiagnosticReport/rep-ana"),
        "{:?}",
        ids(&mine)
    );

    // Laboratory Observations only: no Patient at all (403), no vital sign (404).
    let labs = who("user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", None);
    match read(labs.clone(), "Patient", "ana").await {
        Err(Error::Forbidden(m)) => assert!(m.contains("user/Patient.r"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        app.fhir.search(&labs, rt("Patient"), &request("")).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        read(labs.clone(), "Observation", "hr-ana").await,
        Err(Error::NotFound(_))
    ));
    assert!(read(labs.clone(), "Observation", "glu-bob").await.is_ok());
    // Read without search: a read answers, a search is refused.
    let r_only = who("patient/Observation.r", Some("ana"));
    assert!(read(r_only.clone(), "Observation", "hr-ana").await.is_ok());
    match app
        .fhir
        .search(&r_only, rt("Observation"), &request(""))
        .await
    {
        Err(Error::Forbidden(m)) => assert!(m.contains("Observation.s"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        app.fhir.history(&r_only, rt("Observation"), None, &q).await,
        Err(Error::Forbidden(_))
    ));
}

on_both_engines!(
    reads_history_and_everything_answer_only_what_the_scopes_reach,
    scopes_become_the_restriction_of_what_a_caller_sees,
    a_patient_compartment_restriction_holds_on_every_search_path,
    a_restriction_on_one_type_holds_inside_chains_has_and_everything,
);

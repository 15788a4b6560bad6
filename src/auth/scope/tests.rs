use super::*;

fn actions(g: &Grant) -> String {
    g.actions.to_string()
}

#[test]
fn v1_and_v2_scopes_read_as_the_same_rights() {
    let v1 = Scopes::parse("patient/Observation.read user/*.write system/*.*");
    let v2 = Scopes::parse("patient/Observation.rs user/*.cud system/*.cruds");
    assert_eq!(v1.grants.len(), 3);
    for (a, b) in v1.grants.iter().zip(&v2.grants) {
        assert_eq!(a.v2(), b.v2());
    }
    assert_eq!(v1.grants[0].text, "patient/Observation.read");
    assert_eq!(actions(&v1.grants[1]), "cud");
    assert!(v1.grants[2].covers(Action::Delete, "Encounter"));
    assert!(!v1.grants[0].covers(Action::Create, "Observation"));
    assert!(!v1.grants[0].covers(Action::Read, "Encounter"));
}

#[test]
fn v2_letters_are_an_in_order_subset_and_filters_are_kept() {
    for ok in ["c", "rs", "cruds", "cd", "us"] {
        assert!(
            Grant::parse(&format!("user/Patient.{ok}")).is_some(),
            "{ok}"
        );
    }
    for bad in ["", "sr", "dus", "x", "rr", "crudsx"] {
        assert!(
            Grant::parse(&format!("user/Patient.{bad}")).is_none(),
            "{bad}"
        );
    }
    let g = Grant::parse(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    )
    .unwrap();
    assert_eq!(
        g.filter.as_deref(),
        Some("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
    );
    assert!(Grant::parse("patient/Observation.read?category=x").is_none());
    assert!(Grant::parse("patient/Observation.rs?").is_none());
    assert!(Grant::parse("nobody/Patient.rs").is_none());
    assert!(Grant::parse("user/Pat-ient.rs").is_none());
}

#[test]
fn other_scopes_are_kept_and_ill_formed_resource_scopes_grant_nothing() {
    let s =
        Scopes::parse("openid fhirUser launch launch/patient offline_access user/Patient.zz x/y");
    assert!(s.grants.is_empty());
    assert_eq!(
        s.others,
        vec![
            "openid",
            "fhirUser",
            "launch",
            "launch/patient",
            "offline_access"
        ]
    );
    assert_eq!(
        Scopes::parse("user/Patient.rs  user/Patient.rs openid").to_string(),
        "user/Patient.rs openid"
    );
}

#[test]
fn an_intersection_keeps_what_both_allow() {
    let asked = Scopes::parse("user/*.cruds patient/Observation.read openid launch");
    let client = Scopes::parse("user/Patient.rs user/Observation.rs patient/*.rs openid");
    let both = asked.intersect(&client);
    let got: Vec<String> = both.grants.iter().map(Grant::v2).collect();
    assert_eq!(
        got,
        // (patient/Observation.rs is within patient/*.rs: it says nothing more.)
        vec!["user/Patient.rs", "user/Observation.rs", "patient/*.rs"]
    );
    // A scope allowed whole is answered as it was asked (v1 stays v1).
    let v1 = Scopes::parse("patient/Observation.read").intersect(&Scopes::parse("patient/*.rs"));
    assert_eq!(v1.to_string(), "patient/Observation.read");
    assert_eq!(both.others, vec!["openid"]);
    // A role that reads only Patient and Encounter: no Observation whatever is asked.
    let receptionist = Scopes::parse("user/Patient.cruds user/Encounter.cruds");
    let r = Scopes::parse("user/*.cruds").intersect(&receptionist);
    assert!(r
        .grants
        .iter()
        .all(|g| !g.covers(Action::Read, "Observation")));
    assert!(r.grants.iter().any(|g| g.covers(Action::Read, "Encounter")));
    // Filters of both sides hold together.
    let f = Scopes::parse("user/Observation.rs?category=a")
        .intersect(&Scopes::parse("user/Observation.r?code=b"));
    assert_eq!(f.grants[0].v2(), "user/Observation.r?category=a&code=b");
    // user and system rights do not meet; nothing in common is nothing.
    assert!(Scopes::parse("system/*.rs")
        .intersect(&Scopes::parse("user/*.rs"))
        .grants
        .is_empty());
    assert!(Scopes::parse("user/Patient.c")
        .intersect(&Scopes::parse("user/Patient.rs"))
        .grants
        .is_empty());
}

#[test]
fn only_a_scope_naming_it_reaches_the_audit_trail() {
    let wild = Scopes::parse("user/*.cruds");
    let named = Scopes::parse("user/AuditEvent.rs");
    assert!(wild.grants[0].covers(Action::Read, "Patient"));
    assert!(!wild.grants[0].covers(Action::Read, "AuditEvent"));
    assert!(named.grants[0].covers(Action::Search, "AuditEvent"));
    // A role's or client's wildcard does not grant it, one naming it does.
    assert!(named.intersect(&wild).grants.is_empty());
    let auditor = Scopes::parse("user/Patient.rs user/AuditEvent.rs");
    assert_eq!(named.intersect(&auditor).to_string(), "user/AuditEvent.rs");
    // An app asking for everything gets the audit trail only by naming it too.
    let asked = wild.intersect(&auditor);
    assert!(asked
        .grants
        .iter()
        .all(|g| !g.covers(Action::Read, "AuditEvent")));
    assert!(asked
        .grants
        .iter()
        .any(|g| g.covers(Action::Read, "Patient")));
    // Nor does a wildcard include it, so a refresh cannot widen to it.
    assert!(!named.within(&wild));
}

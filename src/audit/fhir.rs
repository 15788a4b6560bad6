//! An audit event as a FHIR AuditEvent, after the IHE Basic Audit Log Patterns (BALP) where
//! they fit: type `rest` and the interaction as subtype for FHIR requests, the user as the
//! requesting agent and the app as a second agent, the patient and the resource as entities,
//! and this server as the source. The patient's own view leaves out what is internal to the
//! clinic (the network address, the query, the changed values).

use super::Event;
use serde_json::{json, Value};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ACTIONS: &str = "urn:expediente:audit-action";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The AuditEvent of row `seq`; `internal`: with the clinic's own fields.
pub fn audit_event(seq: i64, e: &Event, internal: bool) -> Value {
    let mut r = json!({
        "resourceType": "AuditEvent",
        "id": seq.to_string(),
        "meta": {"versionId": "1", "lastUpdated": e.time},
        "type": kind(&e.category),
        "subtype": subtype(&e.category, &e.action),
        "action": action_code(&e.category, &e.action),
        "recorded": e.time,
        "outcome": outcome_code(&e.outcome),
        "agent": agents(e, internal),
        "source": {
            "observer": {"display": "expediente"},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server"
            }]
        },
    });
    if let Some(s) = e.status {
        r["outcomeDesc"] = json!(format!("HTTP {s}"));
    }
    let entities = entities(e, internal);
    if !entities.is_empty() {
        r["entity"] = Value::Array(entities);
    }
    r
}

/// The AuditEvent `type` of a category, and the categories of a type code (for searching).
pub const TYPES: &[(&str, &str, &str, &str)] = &[
    ("rest", EVENT_TYPE, "rest", "RESTful Operation"),
    ("login", DCM, "110114", "User Authentication"),
    ("token", DCM, "110114", "User Authentication"),
    ("change", DCM, "110110", "Patient Record"),
    ("clinic", DCM, "110110", "Patient Record"),
];

fn kind(category: &str) -> Value {
    let (_, system, code, display) = TYPES.iter().find(|t| t.0 == category).copied().unwrap_or((
        "",
        DCM,
        "110100",
        "Application Activity",
    ));
    json!({"system": system, "code": code, "display": display})
}

/// The FHIR restful interaction of an action, where there is one.
fn interaction(action: &str) -> Option<&'static str> {
    Some(match action {
        "read" => "read",
        "vread" => "vread",
        "update" => "update",
        "patch" => "patch",
        "delete" => "delete",
        "history-instance" => "history-instance",
        "history-type" => "history-type",
        "history-system" => "history-system",
        "create" => "create",
        "search-type" => "search-type",
        "search-system" => "search-system",
        "batch" | "transaction" => {
            return Some(if action == "batch" {
                "batch"
            } else {
                "transaction"
            })
        }
        "validate" | "everything" => "operation",
        _ => return None,
    })
}

fn subtype(category: &str, action: &str) -> Value {
    let mut codings = Vec::new();
    if category == "rest" {
        if let Some(i) = interaction(action) {
            codings.push(json!({"system": INTERACTION, "code": i}));
        }
    }
    match action {
        "sign-in" => codings.push(json!({"system": DCM, "code": "110122", "display": "Login"})),
        "sign-out" => codings.push(json!({"system": DCM, "code": "110123", "display": "Logout"})),
        _ => {}
    }
    codings.push(json!({"system": ACTIONS, "code": action}));
    Value::Array(codings)
}

/// The AuditEvent `action` (C, R, U, D, E) of an event.
pub fn action_code(category: &str, action: &str) -> &'static str {
    match (category, action) {
        ("change", "insert") | (_, "create") => "C",
        ("change", "update") | (_, "update" | "patch") => "U",
        (_, "delete") => "D",
        (_, "read" | "vread" | "search-type" | "search-system" | "history-instance")
        | (_, "history-type" | "history-system" | "everything") => "R",
        _ => "E",
    }
}

/// The AuditEvent outcome code of an outcome, and back.
pub const OUTCOMES: &[(&str, &str)] = &[
    ("success", "0"),
    ("minor-failure", "4"),
    ("serious-failure", "8"),
    ("major-failure", "12"),
];

fn outcome_code(outcome: &str) -> &'static str {
    OUTCOMES
        .iter()
        .find(|o| o.0 == outcome)
        .map_or("0", |o| o.1)
}

fn agents(e: &Event, internal: bool) -> Value {
    let mut user = json!({
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "requestor": true,
    });
    match &e.agent {
        Some(a) if a.contains('/') => user["who"] = json!({"reference": a}),
        Some(a) => user["who"] = json!({"identifier": {"value": a}}),
        None if e.category == "change" || e.category == "clinic" => {
            user["who"] = json!({"display": "the clinic's application"});
            if let (Some(by), true) = (&e.by, internal) {
                user["altId"] = json!(by);
            }
        }
        None => user["who"] = json!({"display": "unknown"}),
    }
    if internal {
        if let Some(s) = &e.source {
            user["network"] = json!({"address": s, "type": "2"});
        }
    }
    let mut out = vec![user];
    if let Some(c) = &e.client {
        out.push(json!({
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": "urn:expediente:client", "value": c}},
            "requestor": false,
        }));
    }
    Value::Array(out)
}

fn entities(e: &Event, internal: bool) -> Vec<Value> {
    let mut out: Vec<Value> = e
        .patients
        .iter()
        .map(|p| {
            json!({
                "what": {"reference": format!("Patient/{p}")},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": ROLE, "code": "1", "display": "Patient"},
            })
        })
        .collect();
    if let Some(t) = &e.resource_type {
        let what = match (&e.resource_id, e.version, e.category.as_str()) {
            (Some(id), Some(v), "rest") => json!({"reference": format!("{t}/{id}/_history/{v}")}),
            (Some(id), None, "rest") => json!({"reference": format!("{t}/{id}")}),
            (Some(id), _, _) => {
                json!({"identifier": {"system": format!("urn:expediente:table:{t}"), "value": id}})
            }
            (None, ..) => json!({"display": t}),
        };
        let mut entity = json!({
            "what": what,
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": ROLE, "code": "4", "display": "Domain Resource"},
        });
        if let (Some(changes), true) = (&e.changes, internal) {
            entity["detail"] = json!([{"type": "changes", "valueString": changes.to_string()}]);
        }
        out.push(entity);
    }
    for x in &e.entities {
        out.push(json!({
            "what": {"reference": x},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": ROLE, "code": "4", "display": "Domain Resource"},
        }));
    }
    if let (Some(q), true) = (&e.query, internal) {
        use base64::Engine;
        out.push(json!({
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": ROLE, "code": "24", "display": "Query"},
            "query": base64::engine::general_purpose::STANDARD.encode(q),
        }));
    }
    out
}

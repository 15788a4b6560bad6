//! The CapabilityStatement, generated from the registry of mappings so it claims only what the
//! server does.

use super::crud::query_pairs;
use super::format::{negotiate, respond};
use super::AppState;
use crate::error::Result;
use crate::mapping::search::COMMON;
use crate::mapping::Registry;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// The interactions every mapped type supports.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

pub fn capability_statement(registry: &Registry, base_url: &str) -> Value {
    let resources: Vec<Value> = registry
        .iter()
        .map(|m| {
            let params: Vec<Value> = COMMON
                .iter()
                .chain(m.search_params())
                .map(|p| json!({"name": p.name, "definition": p.definition, "type": p.kind.code(), "documentation": p.documentation}))
                .collect();
            let rt = m.resource_type();
            let refs = |ps: &'static [crate::mapping::SearchParam]| {
                ps.iter()
                    .filter(|p| crate::mapping::filter::reference_target(p).is_some())
                    .collect::<Vec<_>>()
            };
            let mut includes: Vec<String> = refs(m.search_params())
                .iter()
                .map(|p| format!("{rt}:{}", p.name))
                .collect();
            includes.push(format!("{rt}:*"));
            let mut revincludes: Vec<String> = registry
                .iter()
                .flat_map(|src| {
                    refs(src.search_params())
                        .into_iter()
                        .filter(|p| crate::mapping::filter::reference_target(p) == Some(rt))
                        .map(|p| format!("{}:{}", src.resource_type(), p.name))
                        .collect::<Vec<_>>()
                })
                .collect();
            revincludes.sort();
            let mut r = json!({
                "type": m.resource_type(),
                "searchInclude": includes,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{}", m.resource_type()),
                "interaction": TYPE_INTERACTIONS.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": params,
                "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
            });
            if !revincludes.is_empty() {
                r["searchRevInclude"] = json!(revincludes);
            }
            r
        })
        .collect();
    let mut resources = resources;
    // The custom fields' extensions, generated from their definitions.
    resources.push(json!({
        "type": "StructureDefinition",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "url", "definition": "http://hl7.org/fhir/SearchParameter/StructureDefinition-url", "type": "uri", "documentation": "The extension URL of a custom field"}],
    }));
    resources.push(audit_events());
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::fhir::instant(&chrono::Utc::now()),
        "publisher": "expediente",
        "kind": "instance",
        "software": {"name": "expediente", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "expediente FHIR R4 server over the ExpedienteDLM clinic schema", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json", "application/json"],
        "rest": [{
            "mode": "server",
            "security": super::oauth::capability_security(base_url),
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"}],
            "searchParam": COMMON.iter().map(|p| json!({"name": p.name, "definition": p.definition, "type": p.kind.code(), "documentation": p.documentation})).collect::<Vec<_>>(),
        }]
    })
}

/// The audit trail: read and search, nothing else (see [`crate::audit::search`]).
fn audit_events() -> Value {
    let params: Vec<Value> = crate::audit::search::PARAMS
        .iter()
        .map(|p| {
            let kind = match *p {
                "date" => "date",
                "agent" | "entity" | "patient" | "source" => "reference",
                "address" => "string",
                _ => "token",
            };
            json!({
                "name": p,
                "definition": format!("http://hl7.org/fhir/SearchParameter/AuditEvent-{p}"),
                "type": kind,
            })
        })
        .collect();
    json!({
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": params,
        "documentation": "The audit trail, read-only, newest first (_sort=-date or date). A user/ \
            or system/ scope naming AuditEvent sees every event; patient/AuditEvent.rs the events \
            about the patient's own record.",
    })
}

pub async fn capabilities(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let fmt = negotiate(&headers, &query_pairs(&q))?;
    let cs = capability_statement(&state.fhir.registry, &state.base_url(&headers));
    Ok(respond(StatusCode::OK, Some(&cs), fmt, vec![]))
}

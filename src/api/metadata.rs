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
            json!({
                "type": m.resource_type(),
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{}", m.resource_type()),
                "interaction": TYPE_INTERACTIONS.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
                "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
            })
        })
        .collect();
    let mut resources = resources;
    // The custom fields' extensions, generated from their definitions.
    resources.push(json!({
        "type": "StructureDefinition",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "url", "definition": "http://hl7.org/fhir/SearchParameter/StructureDefinition-url", "type": "uri", "documentation": "The extension URL of a custom field"}],
    }));
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
            "resource": resources,
        }]
    })
}

pub async fn capabilities(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let fmt = negotiate(&headers, &query_pairs(&q))?;
    let cs = capability_statement(&state.fhir.registry, &state.caller(&headers).base_url);
    Ok(respond(StatusCode::OK, Some(&cs), fmt, vec![]))
}

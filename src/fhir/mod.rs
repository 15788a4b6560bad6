//! The shared FHIR vocabulary: ids, strict JSON, OperationOutcome and Bundle builders, search
//! values and validation. Used by every layer above; calls none of them.

pub mod bundle;
pub mod date;
pub mod id;
pub mod json;
pub mod outcome;
pub mod profiles;
pub mod subset;
pub mod text;
pub mod validate;

pub use id::Id;
pub use outcome::{Issue, IssueType, Severity};

/// Formats an instant as FHIR `instant` (UTC, with only the fractional digits it has).
pub fn instant(ts: &chrono::DateTime<chrono::Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Calls `visit` with every `reference` string of a resource, wherever it is (nested elements,
/// extensions, contained resources).
pub fn references(v: &serde_json::Value, visit: &mut dyn FnMut(&str)) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, item) in o {
                match item {
                    serde_json::Value::String(s) if k == "reference" => visit(s),
                    other => references(other, visit),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| references(x, visit)),
        _ => {}
    }
}

/// [`references`], each one open to change.
pub fn references_mut(v: &mut serde_json::Value, visit: &mut dyn FnMut(&mut String)) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, item) in o.iter_mut() {
                match item {
                    serde_json::Value::String(s) if k == "reference" => visit(s),
                    other => references_mut(other, visit),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| references_mut(x, visit)),
        _ => {}
    }
}

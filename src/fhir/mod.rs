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

//! FHIRPath invariants of the profiles, checked natively for the expressions they use (keyed
//! by expression).

use super::*;

/// The invariants checked natively, by FHIRPath expression (the same expression may carry
/// different keys in different profiles). Others are not checked.
pub(super) fn known_invariant(expression: &str) -> Option<Check> {
    pub(super) fn exists(v: &Value, key: &str) -> bool {
        v.get(key).is_some()
    }
    pub(super) fn value_exists(v: &Value) -> bool {
        v.as_object()
            .is_some_and(|o| o.keys().any(|k| is_choice(k, "value")))
    }
    Some(match expression {
        // vs-1, us-core-1: a dateTime precise to the day at least.
        "($this as dateTime).toString().length() >= 8" => {
            |v| v.as_str().is_none_or(|s| s.len() >= 8)
        }
        // vs-2, us-core-2
        "(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())" => {
            |v| {
                exists(v, "component")
                    || exists(v, "hasMember")
                    || exists(v, "dataAbsentReason")
                    || value_exists(v)
            }
        }
        // vs-3
        "value.exists() or dataAbsentReason.exists()" => {
            |v| exists(v, "dataAbsentReason") || value_exists(v)
        }
        // obs-3
        "low.exists() or high.exists() or text.exists()" => {
            |v| exists(v, "low") || exists(v, "high") || exists(v, "text")
        }
        // obs-6
        "dataAbsentReason.empty() or value.empty()" => {
            |v| !exists(v, "dataAbsentReason") || !value_exists(v)
        }
        // us-core-3
        "valueQuantity.system.empty() or valueQuantity.system = 'http://unitsofmeasure.org'" => {
            |v| {
                v.get("valueQuantity")
                    .and_then(|q| q.get("system"))
                    .is_none_or(|s| s == "http://unitsofmeasure.org")
            }
        }
        // pat-1
        "name.exists() or telecom.exists() or address.exists() or organization.exists()" => {
            |v| {
                ["name", "telecom", "address", "organization"]
                    .iter()
                    .any(|k| exists(v, k))
            }
        }
        _ => return None,
    })
}

pub(super) fn invariants_of(e: &Value) -> Vec<(String, String, Check)> {
    e["constraint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let check = known_invariant(c["expression"].as_str()?)?;
            Some((
                c["key"].as_str()?.to_owned(),
                c["human"].as_str().unwrap_or_default().to_owned(),
                check,
            ))
        })
        .collect()
}

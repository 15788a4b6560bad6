//! `_summary` and `_elements`: a resource cut down to some of its top-level elements, marked
//! SUBSETTED in `meta.tag` (https://hl7.org/fhir/R4/search.html#summary).

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Summary and mandatory elements of each hosted type (see fhir-profiles/SOURCES.md).
struct Elements {
    summary: Vec<String>,
    mandatory: Vec<String>,
}

static ELEMENTS: LazyLock<HashMap<String, Elements>> = LazyLock::new(|| {
    let raw: Value =
        serde_json::from_str(include_str!("../../fhir-profiles/summary-elements.json"))
            .unwrap_or_default();
    let list = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    raw.as_object()
        .map(|o| {
            o.iter()
                .map(|(t, v)| {
                    (
                        t.clone(),
                        Elements {
                            summary: list(v, "summary"),
                            mandatory: list(v, "mandatory"),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
});

/// What `_summary` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

impl Summary {
    pub fn parse(v: &str) -> Option<Summary> {
        Some(match v {
            "true" => Summary::True,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            "false" => Summary::False,
            _ => return None,
        })
    }
}

fn mark_subsetted(resource: &mut Map<String, Value>) {
    let meta = resource
        .entry("meta")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted"
            }));
        }
    }
}

/// Keeps `resourceType`, `id`, `meta` and the elements `keep` accepts; marks the resource
/// SUBSETTED when anything was removed.
fn retain(resource: &mut Value, keep: impl Fn(&str) -> bool) {
    let Some(o) = resource.as_object_mut() else {
        return;
    };
    let before = o.len();
    o.retain(|k, _| {
        let base = k.strip_prefix('_').unwrap_or(k);
        matches!(base, "resourceType" | "id" | "meta") || keep(base)
    });
    if o.len() < before {
        mark_subsetted(o);
    }
}

/// Applies `_summary` to a resource of `resource_type`.
pub fn summary(resource: &mut Value, resource_type: &str, s: Summary) {
    let Some(e) = ELEMENTS.get(resource_type) else {
        return;
    };
    match s {
        Summary::True => retain(resource, |k| e.summary.iter().any(|n| n == k)),
        Summary::Text => retain(resource, |k| {
            k == "text" || e.mandatory.iter().any(|n| n == k)
        }),
        Summary::Data => retain(resource, |k| k != "text"),
        Summary::Count | Summary::False => {}
    }
}

/// Applies `_elements`: the named top-level elements (a choice by its base name, `value` for
/// `valueQuantity`), and the mandatory ones, which a resource cannot be valid without.
pub fn elements(resource: &mut Value, resource_type: &str, names: &[String]) {
    let mandatory = ELEMENTS
        .get(resource_type)
        .map(|e| e.mandatory.as_slice())
        .unwrap_or_default();
    retain(resource, |k| {
        mandatory.iter().any(|n| n == k)
            || names.iter().any(|n| {
                k == n
                    || k.strip_prefix(n.as_str())
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_summary_elements_and_marks_the_cut() {
        let mut p = json!({"resourceType": "Patient", "id": "a", "text": {"status": "generated"},
            "name": [{"family": "X"}], "contact": [{"name": {"family": "Y"}}], "gender": "male"});
        summary(&mut p, "Patient", Summary::True);
        assert_eq!(p["name"][0]["family"], "X");
        assert_eq!(p["gender"], "male");
        assert!(p.get("contact").is_none() && p.get("text").is_none());
        assert_eq!(p["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn elements_keep_choices_by_base_name_and_mandatory_ones() {
        let mut o = json!({"resourceType": "Observation", "id": "a", "status": "final",
            "code": {"text": "x"}, "valueQuantity": {"value": 1}, "note": [{"text": "n"}],
            "subject": {"reference": "Patient/1"}});
        elements(&mut o, "Observation", &["value".into()]);
        assert!(o.get("valueQuantity").is_some() && o.get("status").is_some());
        assert!(o.get("note").is_none() && o.get("subject").is_none());
    }

    #[test]
    fn nothing_removed_means_no_tag() {
        let mut o = json!({"resourceType": "Observation", "id": "a", "status": "final"});
        summary(&mut o, "Observation", Summary::Data);
        assert!(o.get("meta").is_none());
    }
}

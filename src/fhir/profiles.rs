//! Profiles a resource claims in `meta.profile` (the US Core and vital-signs profiles in
//! fhir-profiles/), checked on writes: the cardinality of every element outside slices, and
//! fixed and pattern values. Slices, invariants and bindings are left to later work.

use super::{Issue, IssueType};
use serde_json::Value;
use std::collections::HashMap;

macro_rules! profiles {
    ($($path:literal),* $(,)?) => {
        &[$(include_str!(concat!("../../fhir-profiles/", $path))),*]
    };
}

const SOURCES: &[&str] = profiles!(
    "us-core/StructureDefinition-us-core-patient.json",
    "us-core/StructureDefinition-us-core-encounter.json",
    "us-core/StructureDefinition-us-core-allergyintolerance.json",
    "us-core/StructureDefinition-us-core-medicationrequest.json",
    "us-core/StructureDefinition-us-core-diagnosticreport-lab.json",
    "us-core/StructureDefinition-us-core-observation-lab.json",
    "vital-signs/StructureDefinition-vitalsigns.json",
    "vital-signs/StructureDefinition-bp.json",
    "vital-signs/StructureDefinition-heartrate.json",
    "vital-signs/StructureDefinition-resprate.json",
    "vital-signs/StructureDefinition-bodytemp.json",
    "vital-signs/StructureDefinition-bodyheight.json",
    "vital-signs/StructureDefinition-bodyweight.json",
    "vital-signs/StructureDefinition-bmi.json",
    "vital-signs/StructureDefinition-oxygensat.json",
    "vital-signs/StructureDefinition-headcircum.json",
);

/// One constrained element of a profile's snapshot.
#[derive(Debug)]
struct Rule {
    /// Path segments after the resource type; a segment ending in `[x]` is a choice.
    path: Vec<String>,
    min: u64,
    max: Option<u64>,
    fixed: Option<Value>,
    pattern: Option<Value>,
}

/// A loaded profile.
#[derive(Debug)]
struct Profile {
    resource_type: String,
    rules: Vec<Rule>,
}

/// The profiles this server checks, by canonical URL.
pub struct Profiles {
    by_url: HashMap<String, Profile>,
}

impl Profiles {
    pub fn load() -> anyhow::Result<Profiles> {
        let mut by_url = HashMap::new();
        for src in SOURCES {
            let sd: Value = serde_json::from_str(src)?;
            let url = sd["url"].as_str().unwrap_or_default().to_owned();
            let resource_type = sd["type"].as_str().unwrap_or_default().to_owned();
            let mut rules = Vec::new();
            for e in sd["snapshot"]["element"].as_array().into_iter().flatten() {
                let id = e["id"].as_str().unwrap_or_default();
                // Slices and what lies inside them are not checked yet.
                if id.contains(':') || e.get("sliceName").is_some() {
                    continue;
                }
                let path: Vec<String> = e["path"]
                    .as_str()
                    .unwrap_or_default()
                    .split('.')
                    .skip(1)
                    .map(str::to_owned)
                    .collect();
                if path.is_empty() {
                    continue;
                }
                let fixed = e.as_object().and_then(|o| {
                    o.iter()
                        .find(|(k, _)| k.starts_with("fixed"))
                        .map(|(_, v)| v.clone())
                });
                let pattern = e.as_object().and_then(|o| {
                    o.iter()
                        .find(|(k, _)| k.starts_with("pattern"))
                        .map(|(_, v)| v.clone())
                });
                let min = e["min"].as_u64().unwrap_or(0);
                let max = match e["max"].as_str() {
                    Some("*") | None => None,
                    Some(m) => m.parse().ok(),
                };
                if min == 0 && max.is_none() && fixed.is_none() && pattern.is_none() {
                    continue;
                }
                rules.push(Rule {
                    path,
                    min,
                    max,
                    fixed,
                    pattern,
                });
            }
            by_url.insert(
                url,
                Profile {
                    resource_type,
                    rules,
                },
            );
        }
        Ok(Profiles { by_url })
    }

    /// The canonical URLs of the profiles checked.
    pub fn urls(&self) -> impl Iterator<Item = &String> {
        self.by_url.keys()
    }

    /// The problems of `resource` against every known profile it claims.
    pub fn check(&self, resource_type: &str, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        let claimed = resource["meta"]["profile"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for url in claimed.iter().filter_map(Value::as_str) {
            let canonical = url.split('|').next().unwrap_or(url);
            let Some(p) = self.by_url.get(canonical) else {
                continue;
            };
            if p.resource_type != resource_type {
                issues.push(
                    Issue::error(
                        IssueType::Invalid,
                        format!("profile {canonical} is for {}", p.resource_type),
                    )
                    .at(format!("{resource_type}.meta.profile")),
                );
                continue;
            }
            for rule in &p.rules {
                check_rule(
                    rule,
                    resource,
                    resource_type.to_owned(),
                    0,
                    canonical,
                    &mut issues,
                );
            }
        }
        issues
    }
}

/// The values of a child element (a choice `value[x]` matches `valueQuantity`...), with their
/// keys, as a list (arrays flattened).
fn children<'a>(node: &'a Value, segment: &str) -> Vec<(String, &'a Value)> {
    let Some(obj) = node.as_object() else {
        return vec![];
    };
    let keys: Vec<&String> = match segment.strip_suffix("[x]") {
        Some(prefix) => obj
            .keys()
            .filter(|k| {
                k.starts_with(prefix)
                    && k[prefix.len()..].starts_with(|c: char| c.is_ascii_uppercase())
            })
            .collect(),
        None => obj.keys().filter(|k| *k == segment).collect(),
    };
    let mut out = Vec::new();
    for k in keys {
        match &obj[k.as_str()] {
            Value::Array(a) => {
                out.extend(a.iter().enumerate().map(|(i, v)| (format!("{k}[{i}]"), v)))
            }
            v => out.push((k.clone(), v)),
        }
    }
    out
}

fn check_rule(
    rule: &Rule,
    node: &Value,
    at: String,
    depth: usize,
    url: &str,
    issues: &mut Vec<Issue>,
) {
    let segment = &rule.path[depth];
    let found = children(node, segment);
    if depth + 1 < rule.path.len() {
        for (key, child) in found {
            check_rule(rule, child, format!("{at}.{key}"), depth + 1, url, issues);
        }
        return;
    }
    let here = format!("{at}.{}", segment.trim_end_matches("[x]"));
    let n = found.len() as u64;
    if n < rule.min {
        issues.push(
            Issue::error(
                IssueType::Required,
                format!("at least {} required by profile {url}", rule.min),
            )
            .at(here.clone()),
        );
    }
    if rule.max.is_some_and(|m| n > m) {
        issues.push(
            Issue::error(
                IssueType::Structure,
                format!("at most {} allowed by profile {url}", rule.max.unwrap_or(0)),
            )
            .at(here.clone()),
        );
    }
    for (key, v) in &found {
        if rule.fixed.as_ref().is_some_and(|f| f != *v) {
            issues.push(
                Issue::error(
                    IssueType::Value,
                    format!("must have the value fixed by profile {url}"),
                )
                .at(format!("{at}.{key}")),
            );
        }
        if rule
            .pattern
            .as_ref()
            .is_some_and(|p| !matches_pattern(p, v))
        {
            issues.push(
                Issue::error(
                    IssueType::Value,
                    format!("must match the pattern of profile {url}"),
                )
                .at(format!("{at}.{key}")),
            );
        }
    }
}

/// Whether `value` carries everything `pattern` has (objects key by key, arrays item by item).
fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches_pattern(pv, vv))),
        (Value::Array(p), Value::Array(v)) => p
            .iter()
            .all(|pi| v.iter().any(|vi| matches_pattern(pi, vi))),
        (p, v) => p == v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_profile_loads_with_rules() {
        let p = Profiles::load().unwrap();
        assert_eq!(p.urls().count(), SOURCES.len());
        let patient = &p.by_url["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"];
        assert!(patient
            .rules
            .iter()
            .any(|r| r.path == ["identifier"] && r.min == 1));
    }

    #[test]
    fn us_core_patient_needs_identifier_name_and_gender() {
        let p = Profiles::load().unwrap();
        let claim =
            json!({"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]});
        let bare =
            json!({"resourceType": "Patient", "meta": claim, "identifier": [{"value": "1"}]});
        let places: Vec<String> = p
            .check("Patient", &bare)
            .into_iter()
            .filter_map(|i| i.expression)
            .collect();
        for want in [
            "Patient.name",
            "Patient.gender",
            "Patient.identifier[0].system",
        ] {
            assert!(places.iter().any(|p| p == want), "{want} in {places:?}");
        }
        let ok = json!({"resourceType": "Patient", "meta": claim, "identifier": [{"system": "s", "value": "1"}], "name": [{"family": "X"}], "gender": "male"});
        assert!(
            p.check("Patient", &ok).is_empty(),
            "{:?}",
            p.check("Patient", &ok)
        );
        // Unknown profiles are not checked, unclaimed profiles neither.
        let other =
            json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/p"]}});
        assert!(p.check("Patient", &other).is_empty());
    }

    #[test]
    fn patterns_match_by_containment() {
        let pattern = json!({"coding": [{"system": "http://loinc.org", "code": "85354-9"}]});
        let value = json!({"coding": [{"system": "http://snomed.info/sct", "code": "x"}, {"system": "http://loinc.org", "code": "85354-9", "display": "BP"}], "text": "BP"});
        assert!(matches_pattern(&pattern, &value));
        assert!(!matches_pattern(
            &pattern,
            &json!({"coding": [{"system": "http://loinc.org", "code": "8867-4"}]})
        ));
    }
}

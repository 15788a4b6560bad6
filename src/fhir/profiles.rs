//! Profiles a resource claims in `meta.profile` (the US Core and vital-signs profiles in
//! fhir-profiles/), checked on writes: the cardinality of every element and of every slice (items
//! are sorted into slices by their `value` and `pattern` discriminators, choice types by type),
//! fixed and pattern values, and the invariants of [`known_invariant`]. Bindings and other
//! invariants are not checked.

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

/// A step of a rule's path: an element name (a choice ends in `[x]`), and the slice of it the
/// rule is about, if any.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    name: String,
    slice: Option<String>,
}

/// A native check of a FHIRPath invariant the profiles use.
type Check = fn(&Value) -> bool;

/// One constrained element of a profile's snapshot.
#[derive(Debug)]
struct Rule {
    path: Vec<Step>,
    min: u64,
    max: Option<u64>,
    fixed: Option<Value>,
    pattern: Option<Value>,
    /// Invariants on this element: key, human description, check.
    invariants: Vec<(String, String, Check)>,
}

/// What puts an item of a sliced element into a slice: each discriminator's path inside the
/// item and the value (fixed or pattern) found there.
#[derive(Debug, Default)]
struct Matcher {
    conditions: Vec<(Vec<String>, Value)>,
    /// Some discriminator's value could not be found: the slice is not checked.
    unknown: bool,
}

/// A loaded profile.
#[derive(Debug)]
struct Profile {
    resource_type: String,
    rules: Vec<Rule>,
    /// By the slice's element id without the resource type (`component:SystolicBP`).
    slices: HashMap<String, Matcher>,
}

/// The profiles this server checks, by canonical URL.
pub struct Profiles {
    by_url: HashMap<String, Profile>,
}

/// The invariants checked natively, by FHIRPath expression (the same expression may carry
/// different keys in different profiles). Others are not checked.
fn known_invariant(expression: &str) -> Option<Check> {
    fn exists(v: &Value, key: &str) -> bool {
        v.get(key).is_some()
    }
    fn value_exists(v: &Value) -> bool {
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

/// Whether `key` is the choice element `prefix[x]` of some type (`valueQuantity` for `value`).
fn is_choice(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// Splits an element id (`Observation.component:SystolicBP.code`) into steps, without the
/// resource type.
fn steps(id: &str) -> Vec<Step> {
    id.split('.')
        .skip(1)
        .map(|seg| match seg.split_once(':') {
            Some((name, slice)) => Step {
                name: name.to_owned(),
                slice: Some(slice.to_owned()),
            },
            None => Step {
                name: seg.to_owned(),
                slice: None,
            },
        })
        .collect()
}

fn fixed_or_pattern(e: &Value) -> (Option<Value>, Option<Value>) {
    let find = |prefix: &str| {
        e.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v.clone())
        })
    };
    (find("fixed"), find("pattern"))
}

impl Profiles {
    pub fn load() -> anyhow::Result<Profiles> {
        let mut by_url = HashMap::new();
        for src in SOURCES {
            let sd: Value = serde_json::from_str(src)?;
            let url = sd["url"].as_str().unwrap_or_default().to_owned();
            let resource_type = sd["type"].as_str().unwrap_or_default().to_owned();
            let elements: Vec<&Value> = sd["snapshot"]["element"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let id_of = |e: &Value| e["id"].as_str().unwrap_or_default().to_owned();
            // The discriminators of every sliced element, by its id.
            let discriminators: HashMap<String, Vec<(String, String)>> = elements
                .iter()
                .filter_map(|e| {
                    let d = e["slicing"]["discriminator"].as_array()?;
                    Some((
                        id_of(e),
                        d.iter()
                            .map(|x| {
                                (
                                    x["type"].as_str().unwrap_or_default().to_owned(),
                                    x["path"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                    ))
                })
                .collect();
            let mut slices = HashMap::new();
            for e in &elements {
                let id = id_of(e);
                let Some((root, name)) = id.rsplit_once(':') else {
                    continue;
                };
                if name.contains('.') {
                    continue;
                }
                let mut m = Matcher::default();
                for (kind, path) in discriminators.get(root).into_iter().flatten() {
                    if kind == "type" {
                        continue;
                    }
                    // The value lies at the slice's element plus the path, nested slices aside.
                    let want = if path == "$this" {
                        id.clone()
                    } else {
                        format!("{id}.{path}")
                    };
                    let found = elements.iter().find(|x| {
                        let xid = id_of(x);
                        xid.strip_prefix(&id).is_some_and(|rest| {
                            let plain: Vec<&str> = rest
                                .split('.')
                                .map(|s| s.split(':').next().unwrap_or(s))
                                .collect();
                            format!("{id}{}", plain.join(".")) == want
                        })
                    });
                    let value = found
                        .map(|x| fixed_or_pattern(x))
                        .and_then(|(f, p)| f.or(p))
                        .or_else(|| {
                            // An extension slice names its extension by profile, not by a
                            // fixed url.
                            (path == "url")
                                .then(|| e["type"][0]["profile"][0].clone())
                                .filter(Value::is_string)
                        });
                    match value {
                        Some(v) => {
                            let segs = if path == "$this" {
                                vec![]
                            } else {
                                path.split('.').map(str::to_owned).collect()
                            };
                            m.conditions.push((segs, v));
                        }
                        // A slice that cannot be told apart is not checked.
                        None => m.unknown = true,
                    }
                }
                slices.insert(
                    id.split_once('.')
                        .map(|x| x.1)
                        .unwrap_or_default()
                        .to_owned(),
                    m,
                );
            }
            let mut rules = Vec::new();
            for e in &elements {
                let path = steps(&id_of(e));
                if path.is_empty() {
                    // Invariants on the resource itself.
                    let invariants = invariants_of(e);
                    if !invariants.is_empty() {
                        rules.push(Rule {
                            path,
                            min: 0,
                            max: None,
                            fixed: None,
                            pattern: None,
                            invariants,
                        });
                    }
                    continue;
                }
                let (fixed, pattern) = fixed_or_pattern(e);
                let min = e["min"].as_u64().unwrap_or(0);
                let max = match e["max"].as_str() {
                    Some("*") | None => None,
                    Some(m) => m.parse().ok(),
                };
                let invariants = invariants_of(e);
                if min == 0
                    && max.is_none()
                    && fixed.is_none()
                    && pattern.is_none()
                    && invariants.is_empty()
                {
                    continue;
                }
                rules.push(Rule {
                    path,
                    min,
                    max,
                    fixed,
                    pattern,
                    invariants,
                });
            }
            by_url.insert(
                url,
                Profile {
                    resource_type,
                    rules,
                    slices,
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
        let mut issues: Vec<Issue> = Vec::new();
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
                let mut ctx = Walk {
                    profile: p,
                    rule,
                    url: canonical,
                    issues: &mut issues,
                };
                ctx.check(resource, resource_type.to_owned(), 0, String::new());
            }
        }
        // The same problem found through a slice and its element is reported once.
        let mut seen = std::collections::HashSet::new();
        issues.retain(|i| seen.insert((i.expression.clone(), i.diagnostics.clone())));
        issues
    }
}

fn invariants_of(e: &Value) -> Vec<(String, String, Check)> {
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

/// The values of a path inside an item (arrays flattened).
fn values_at<'a>(v: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return match v {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
    };
    match v {
        Value::Array(a) => a.iter().flat_map(|x| values_at(x, path)).collect(),
        Value::Object(o) => o.get(first).map(|x| values_at(x, rest)).unwrap_or_default(),
        _ => vec![],
    }
}

impl Matcher {
    fn matches(&self, item: &Value) -> bool {
        self.conditions.iter().all(|(path, want)| {
            values_at(item, path)
                .into_iter()
                .any(|v| matches_pattern(want, v))
        })
    }
}

/// One rule being checked against a resource.
struct Walk<'a> {
    profile: &'a Profile,
    rule: &'a Rule,
    url: &'a str,
    issues: &'a mut Vec<Issue>,
}

impl Walk<'_> {
    /// The items of step `depth` under `node`, with their keys: a choice matches its typed
    /// keys, a slice keeps the items that belong to it. `slice_id` is the element id so far.
    fn children<'v>(
        &self,
        node: &'v Value,
        depth: usize,
        slice_id: &str,
    ) -> Option<(Vec<(String, &'v Value)>, String)> {
        let step = &self.rule.path[depth];
        let id = if slice_id.is_empty() {
            step.name.clone()
        } else {
            format!("{slice_id}.{}", step.name)
        };
        let Some(obj) = node.as_object() else {
            return Some((vec![], id));
        };
        let keys: Vec<&String> = match step.name.strip_suffix("[x]") {
            Some(prefix) => obj.keys().filter(|k| is_choice(k, prefix)).collect(),
            None => obj.keys().filter(|k| **k == step.name).collect(),
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
        match &step.slice {
            None => Some((out, id)),
            Some(slice) => {
                let sliced = format!("{id}:{slice}");
                if step.name.ends_with("[x]") {
                    // A type slice of a choice: `value[x]:valueQuantity`.
                    out.retain(|(k, _)| k == slice);
                } else {
                    match self.profile.slices.get(&sliced) {
                        Some(m) if !m.unknown && !m.conditions.is_empty() => {
                            out.retain(|(_, v)| m.matches(v))
                        }
                        _ => return None,
                    }
                }
                Some((out, sliced))
            }
        }
    }

    fn check(&mut self, node: &Value, at: String, depth: usize, slice_id: String) {
        if self.rule.path.is_empty() {
            self.leaf(&[(String::new(), node)], &at);
            return;
        }
        let Some((found, id)) = self.children(node, depth, &slice_id) else {
            return;
        };
        if depth + 1 < self.rule.path.len() {
            for (key, child) in found {
                self.check(child, format!("{at}.{key}"), depth + 1, id.clone());
            }
            return;
        }
        let here = format!(
            "{at}.{}",
            self.rule.path[depth].name.trim_end_matches("[x]")
        );
        let n = found.len() as u64;
        let url = self.url;
        let what = match &self.rule.path[depth].slice {
            Some(s) => format!(" (slice {s})"),
            None => String::new(),
        };
        if n < self.rule.min {
            self.issues.push(
                Issue::error(
                    IssueType::Required,
                    format!("at least {}{what} required by profile {url}", self.rule.min),
                )
                .at(here.clone()),
            );
        }
        if self.rule.max.is_some_and(|m| n > m) {
            self.issues.push(
                Issue::error(
                    IssueType::Structure,
                    format!(
                        "at most {}{what} allowed by profile {url}",
                        self.rule.max.unwrap_or(0)
                    ),
                )
                .at(here.clone()),
            );
        }
        self.leaf(&found, &at);
    }

    fn leaf(&mut self, found: &[(String, &Value)], at: &str) {
        let url = self.url;
        for (key, v) in found {
            let place = if key.is_empty() {
                at.to_owned()
            } else {
                format!("{at}.{key}")
            };
            if self.rule.fixed.as_ref().is_some_and(|f| f != *v) {
                self.issues.push(
                    Issue::error(
                        IssueType::Value,
                        format!("must have the value fixed by profile {url}"),
                    )
                    .at(place.clone()),
                );
            }
            if self
                .rule
                .pattern
                .as_ref()
                .is_some_and(|p| !matches_pattern(p, v))
            {
                self.issues.push(
                    Issue::error(
                        IssueType::Value,
                        format!("must match the pattern of profile {url}"),
                    )
                    .at(place.clone()),
                );
            }
            for (k, human, check) in &self.rule.invariants {
                if !check(v) {
                    self.issues.push(
                        Issue::error(
                            IssueType::Invariant,
                            format!("{k}: {human} (profile {url})"),
                        )
                        .at(place.clone()),
                    );
                }
            }
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
            .any(|r| r.path == steps("Patient.identifier") && r.min == 1));
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

    fn places(p: &Profiles, r: &Value) -> Vec<(String, String)> {
        p.check("Observation", r)
            .into_iter()
            .map(|i| (i.expression.unwrap_or_default(), i.diagnostics))
            .collect()
    }

    fn vital(profile: &str, code: &str) -> Value {
        json!({
            "resourceType": "Observation",
            "meta": {"profile": [format!("http://hl7.org/fhir/StructureDefinition/{profile}")]},
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/p"},
            "effectiveDateTime": "2026-03-01T10:00:00Z",
            "valueQuantity": {"value": 70, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
        })
    }

    #[test]
    fn every_official_vital_sign_example_meets_the_profiles_it_claims() {
        let p = Profiles::load().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            if r["meta"]["profile"].is_array() {
                let rt = r["resourceType"].as_str().unwrap();
                assert_eq!(p.check(rt, &r), vec![], "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 9, "{checked}");
    }

    #[test]
    fn slices_hold_the_fixed_codes_of_vital_signs() {
        let p = Profiles::load().unwrap();
        assert_eq!(places(&p, &vital("heartrate", "8867-4")), vec![]);
        // Another code: the HeartRateCode slice is missing.
        let wrong = places(&p, &vital("heartrate", "9279-1"));
        assert!(
            wrong
                .iter()
                .any(|(at, msg)| at == "Observation.code.coding"
                    && msg.contains("slice HeartRateCode")),
            "{wrong:?}"
        );
        // No vital-signs category.
        let mut r = vital("heartrate", "8867-4");
        r["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]}]);
        let issues = places(&p, &r);
        assert!(
            issues
                .iter()
                .any(|(at, msg)| at == "Observation.category" && msg.contains("VSCat")),
            "{issues:?}"
        );
        // The wrong unit, inside the valueQuantity type slice.
        let mut r = vital("heartrate", "8867-4");
        r["valueQuantity"]["code"] = json!("/s");
        let issues = places(&p, &r);
        assert!(
            issues
                .iter()
                .any(|(at, _)| at == "Observation.valueQuantity.code"),
            "{issues:?}"
        );
    }

    #[test]
    fn blood_pressure_needs_both_components_in_mm_hg() {
        let p = Profiles::load().unwrap();
        let comp = |code: &str, unit: &str| json!({"code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": unit}});
        let mut bp = vital("bp", "85354-9");
        bp.as_object_mut().unwrap().remove("valueQuantity");
        bp["component"] = json!([comp("8480-6", "mm[Hg]"), comp("8462-4", "mm[Hg]")]);
        assert_eq!(places(&p, &bp), vec![]);
        bp["component"] = json!([comp("8480-6", "kPa")]);
        let issues = places(&p, &bp);
        assert!(
            issues.iter().any(|(at, msg)| at == "Observation.component" && msg.contains("slice DiastolicBP")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(
                |(at, msg)| at == "Observation.component[0].valueQuantity.code"
                    && msg.contains("fixed")
            ),
            "{issues:?}"
        );
    }

    #[test]
    fn invariants_of_the_vital_signs_are_checked() {
        let p = Profiles::load().unwrap();
        let mut r = vital("vitalsigns", "8867-4");
        r.as_object_mut().unwrap().remove("valueQuantity");
        let issues = places(&p, &r);
        assert!(
            issues
                .iter()
                .any(|(at, msg)| at == "Observation" && msg.starts_with("vs-2")),
            "{issues:?}"
        );
        r["dataAbsentReason"] = json!({"text": "refused"});
        assert_eq!(places(&p, &r), vec![]);
        let mut r = vital("vitalsigns", "8867-4");
        r["effectiveDateTime"] = json!("2026-03");
        let issues = places(&p, &r);
        assert!(
            issues
                .iter()
                .any(|(at, msg)| at == "Observation.effectiveDateTime" && msg.starts_with("vs-1")),
            "{issues:?}"
        );
    }

    #[test]
    fn a_us_core_lab_result_needs_the_laboratory_category() {
        let p = Profiles::load().unwrap();
        let mut r = vital("vitalsigns", "2339-0");
        r["meta"]["profile"] =
            json!(["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]);
        let issues = places(&p, &r);
        assert!(
            issues
                .iter()
                .any(|(at, msg)| at == "Observation.category" && msg.contains("slice Laboratory")),
            "{issues:?}"
        );
        r["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
        assert_eq!(places(&p, &r), vec![]);
    }

    #[test]
    fn us_core_extensions_are_sliced_by_their_profile() {
        let p = Profiles::load().unwrap();
        let ext = |name: &str| json!({"url": format!("http://hl7.org/fhir/us/core/StructureDefinition/us-core-{name}"), "extension": [{"url": "text", "valueString": "x"}]});
        let mut r = json!({"resourceType": "Patient",
            "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
            "identifier": [{"system": "s", "value": "1"}], "name": [{"family": "X"}], "gender": "male",
            "extension": [ext("race"), ext("ethnicity"), {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "M"}]});
        assert_eq!(p.check("Patient", &r), vec![]);
        r["extension"] = json!([ext("race"), ext("race")]);
        let issues = p.check("Patient", &r);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].diagnostics.contains("slice race"), "{issues:?}");
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

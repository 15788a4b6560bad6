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
        &[$(include_str!(concat!("../../../fhir-profiles/", $path))),*]
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

fn id_of(e: &Value) -> String {
    e["id"].as_str().unwrap_or_default().to_owned()
}

/// How each slice of a snapshot is told apart, by its path below the resource.
fn slices_of(elements: &[&Value]) -> HashMap<String, Matcher> {
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
    for e in elements {
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
            match discriminator_value(elements, e, &id, path) {
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
        let below = id.split_once('.').map(|x| x.1).unwrap_or_default();
        slices.insert(below.to_owned(), m);
    }
    slices
}

/// The value a slice (element `e`, id `id`) fixes at a discriminator's `path`.
fn discriminator_value(elements: &[&Value], e: &Value, id: &str, path: &str) -> Option<Value> {
    // The value lies at the slice's element plus the path, nested slices aside.
    let want = if path == "$this" {
        id.to_owned()
    } else {
        format!("{id}.{path}")
    };
    let found = elements.iter().find(|x| {
        let xid = id_of(x);
        xid.strip_prefix(id).is_some_and(|rest| {
            let plain: Vec<&str> = rest
                .split('.')
                .map(|s| s.split(':').next().unwrap_or(s))
                .collect();
            format!("{id}{}", plain.join(".")) == want
        })
    });
    found
        .map(|x| fixed_or_pattern(x))
        .and_then(|(f, p)| f.or(p))
        .or_else(|| {
            // An extension slice names its extension by profile, not by a fixed url.
            (path == "url")
                .then(|| e["type"][0]["profile"][0].clone())
                .filter(Value::is_string)
        })
}

/// The cardinality, fixed value, pattern and invariant rules of a snapshot's elements.
fn rules_of(elements: &[&Value]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for e in elements {
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
    rules
}

impl Profiles {
    pub fn load() -> anyhow::Result<Profiles> {
        let mut by_url = HashMap::new();
        for src in SOURCES {
            let sd: Value = serde_json::from_str(src)?;
            let url = sd["url"].as_str().unwrap_or_default().to_owned();
            let elements: Vec<&Value> = sd["snapshot"]["element"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let profile = Profile {
                resource_type: sd["type"].as_str().unwrap_or_default().to_owned(),
                rules: rules_of(&elements),
                slices: slices_of(&elements),
            };
            by_url.insert(url, profile);
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

mod invariants;
mod walk;

use invariants::*;
use walk::*;

#[cfg(test)]
mod tests;

//! Validation of resources against the official FHIR R4 JSON Schema, compiled on the first
//! validation and shared by every request after it.

use super::{Issue, IssueType};
use jsonschema::paths::LocationSegment;
use jsonschema::Validator;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// The official FHIR R4 JSON Schema, embedded.
pub const SCHEMA: &str = include_str!("../../fhir-profiles/fhir.schema.json");

/// The schema validator of the resource types the server hosts.
pub struct Validators {
    types: Vec<&'static str>,
    /// Made when first needed (in about a tenth of a second): a server that only reads never
    /// holds the compiled schema, the largest part of its memory.
    validator: OnceLock<Result<Validator, String>>,
    /// The validators of the types of contained resources, each made when first met: a
    /// resource's `contained` may hold any of the 146 resource types, and compiling them all
    /// in every validator held nearly the whole schema in memory.
    contained: Mutex<HashMap<String, Arc<Result<Validator, String>>>>,
}

impl Validators {
    /// The validator of `types`, compiled when first used ([`Validators::ready`] compiles it
    /// now).
    pub fn new(types: &[&'static str]) -> Validators {
        Validators {
            types: types.to_vec(),
            validator: OnceLock::new(),
            contained: Mutex::new(HashMap::new()),
        }
    }

    /// Compiles the validator now, if it was not yet: an error names what the schema lacks.
    pub fn ready(&self) -> anyhow::Result<&Validator> {
        self.validator
            .get_or_init(|| build(&self.types))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Every schema problem of `resource` as a `resource_type`, each with its FHIRPath location.
    /// An empty list means valid.
    pub fn validate(&self, resource_type: &str, resource: &Value) -> Vec<Issue> {
        if !self.types.contains(&resource_type) {
            return vec![Issue::error(
                IssueType::NotSupported,
                format!("resource type {resource_type} is not supported"),
            )];
        }
        if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
            return vec![Issue::error(
                IssueType::Structure,
                format!("resourceType must be \"{resource_type}\""),
            )
            .at(format!("{resource_type}.resourceType"))];
        }
        let validator = match self.ready() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "the FHIR schema cannot be compiled");
                return vec![Issue::error(
                    IssueType::Exception,
                    "the server cannot check resources against the FHIR schema",
                )];
            }
        };
        let mut issues = problems(validator, resource, resource_type);
        let contained = resource.get("contained").and_then(Value::as_array);
        for (i, r) in contained.into_iter().flatten().enumerate() {
            self.check_contained(r, &format!("{resource_type}.contained[{i}]"), &mut issues);
        }
        issues.dedup();
        issues
    }

    /// The problems of a contained resource (at `at`), against its own type's definition.
    fn check_contained(&self, r: &Value, at: &str, issues: &mut Vec<Issue>) {
        let Some(rt) = r.get("resourceType").and_then(Value::as_str) else {
            // (Not an object: the container's validator named it.)
            if r.is_object() {
                issues.push(
                    Issue::error(
                        IssueType::Required,
                        "a contained resource needs a resourceType",
                    )
                    .at(at),
                );
            }
            return;
        };
        if r.get("contained").is_some() {
            issues.push(
                Issue::error(
                    IssueType::Invariant,
                    "a contained resource cannot contain resources (dom-2)",
                )
                .at(format!("{at}.contained")),
            );
        }
        // Only the schema's own resource types are compiled (and remembered): any other name
        // is refused without a cost.
        if !resource_types().contains(rt) {
            issues.push(
                Issue::error(
                    IssueType::NotSupported,
                    format!("{} is not a FHIR R4 resource type", rt.escape_default()),
                )
                .at(format!("{at}.resourceType")),
            );
            return;
        }
        let validator = {
            let mut known = self.contained.lock().unwrap_or_else(|e| e.into_inner());
            known
                .entry(rt.to_owned())
                .or_insert_with(|| Arc::new(build(&[rt])))
                .clone()
        };
        match validator.as_ref() {
            Ok(v) => issues.extend(problems(v, r, at)),
            Err(e) => {
                tracing::error!(error = %e, "the FHIR schema cannot be compiled");
                issues.push(Issue::error(
                    IssueType::Exception,
                    "the server cannot check resources against the FHIR schema",
                ));
            }
        }
    }
}

/// The names of the schema's resource types (its discriminator's mapping).
fn resource_types() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct Head {
            discriminator: Discriminator,
        }
        #[derive(serde::Deserialize)]
        struct Discriminator {
            mapping: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
        }
        serde_json::from_str::<Head>(SCHEMA)
            .map(|h| h.discriminator.mapping.into_keys().collect())
            .unwrap_or_default()
    })
}

/// What `validator` finds wrong with `resource`, each at its FHIRPath under `at`.
fn problems(validator: &Validator, resource: &Value, at: &str) -> Vec<Issue> {
    validator
        .iter_errors(resource)
        .map(|e| {
            let mut expr = at.to_owned();
            for seg in e.instance_path().iter() {
                match seg {
                    LocationSegment::Property(p) => {
                        expr.push('.');
                        expr.push_str(&p);
                    }
                    LocationSegment::Index(i) => expr.push_str(&format!("[{i}]")),
                }
            }
            Issue::error(IssueType::Structure, e.masked().to_string()).at(expr)
        })
        .collect()
}

/// One validator for all of `types`: each resource is checked against its own type's
/// definition, chosen by its `resourceType`, with only the definitions that one of them uses.
/// A contained resource is an object here, and checked on its own (see
/// [`Validators::validate`]): through `contained`, each type's definition reached nearly all the
/// others.
fn build(types: &[&str]) -> Result<Validator, String> {
    let mut full: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
    let mut definitions = full
        .get_mut("definitions")
        .map(Value::take)
        .ok_or("the FHIR schema has no definitions")?;
    drop(full);
    if let Some(list) = definitions.get_mut("ResourceList") {
        *list = json!({"type": "object"});
    }
    let used = used_by(&definitions, types);
    if let Some(defs) = definitions.as_object_mut() {
        defs.retain(|name, _| used.contains(name.as_str()));
    }
    objects_typed(&mut definitions);
    without_descriptions(&mut definitions);
    let mut by_type = Vec::with_capacity(types.len());
    for &t in types {
        if definitions.get(t).is_none() {
            return Err(format!("the FHIR schema does not define {t}"));
        }
        by_type.push(json!({
            "if": {"properties": {"resourceType": {"const": t}}},
            "then": {"$ref": format!("#/definitions/{t}")},
        }));
    }
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "id": "http://hl7.org/fhir/json-schema/4.0",
        "definitions": definitions,
        "allOf": by_type,
    });
    jsonschema::options()
        .should_validate_formats(false)
        .build(&schema)
        .map_err(|e| format!("cannot compile the FHIR schema: {e}"))
}

/// The definitions that `types` use, themselves included: those their `$ref`s name, and so on.
fn used_by(definitions: &Value, types: &[&str]) -> BTreeSet<String> {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.extend(r.strip_prefix("#/definitions/"));
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut used = BTreeSet::new();
    let mut next: Vec<&str> = types.to_vec();
    while let Some(name) = next.pop() {
        if used.insert(name.to_owned()) {
            if let Some(def) = definitions.get(name) {
                refs(def, &mut next);
            }
        }
    }
    used
}

/// States that the complex types and resources of the schema are JSON objects. The official
/// schema gives them `properties` but no `type`, and JSON Schema applies `properties` to objects
/// only: without this, `"meta": "x"` or `"maritalStatus": ["M"]` would pass and be lost. `Element`
/// (the `_x` of a primitive) may also be `null`, inside the arrays of primitive extensions
/// (`json_rules` refuses it anywhere else).
fn objects_typed(definitions: &mut Value) {
    let Some(defs) = definitions.as_object_mut() else {
        return;
    };
    for (name, def) in defs.iter_mut() {
        let Some(def) = def.as_object_mut() else {
            continue;
        };
        if def.contains_key("properties") && !def.contains_key("type") {
            let ty = if name == "Element" {
                json!(["object", "null"])
            } else {
                json!("object")
            };
            def.insert("type".into(), ty);
        }
    }
}

/// Leaves out the schema's descriptions (more than half of its text): the validator keeps the
/// schema it was built from, and a description checks nothing. An element named `description`
/// stays: its schema is an object, a description a string.
fn without_descriptions(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("description").is_some_and(Value::is_string) {
                o.shift_remove("description");
            }
            o.values_mut().for_each(without_descriptions);
        }
        Value::Array(a) => a.iter_mut().for_each(without_descriptions),
        _ => {}
    }
}

/// The FHIR JSON rules the schema does not state: no empty objects or arrays, and `null` only
/// inside the arrays of primitive extensions (`_given: [null, {...}]`).
pub fn json_rules(resource_type: &str, resource: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    walk(resource, resource_type.to_owned(), false, &mut issues);
    issues
}

fn walk(v: &Value, path: String, in_primitive_array: bool, issues: &mut Vec<Issue>) {
    match v {
        Value::Null if !in_primitive_array => {
            issues.push(Issue::error(IssueType::Structure, "null is not allowed here").at(path))
        }
        Value::Array(a) if a.is_empty() => {
            issues.push(Issue::error(IssueType::Structure, "arrays must not be empty").at(path))
        }
        Value::Object(o) if o.is_empty() => {
            issues.push(Issue::error(IssueType::Structure, "objects must not be empty").at(path))
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), in_primitive_array, issues);
            }
        }
        Value::Object(o) => {
            for (k, item) in o {
                let primitive_ext = k.starts_with('_') && item.is_array();
                let here = format!("{path}.{k}");
                if k == "div" && path.ends_with(".text") {
                    if let Some(html) = item.as_str() {
                        if let Some(why) = unsafe_narrative(html) {
                            issues.push(
                                Issue::error(
                                    IssueType::Value,
                                    format!("the narrative is not safe XHTML: {why}"),
                                )
                                .at(here.clone()),
                            );
                        }
                    }
                }
                walk(item, here, primitive_ext, issues);
            }
        }
        _ => {}
    }
}

/// Why a narrative is unsafe to show, if it is: FHIR narrative is limited XHTML with no active
/// content (no scripts, event handlers, frames, forms or script URLs).
pub fn unsafe_narrative(html: &str) -> Option<&'static str> {
    let lower: String = html
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r' | '\0'))
        .collect();
    for tag in [
        "<script", "<iframe", "<object", "<embed", "<form", "<base", "<link", "<meta", "<style",
        "<frame", "<applet",
    ] {
        if lower.contains(tag) {
            return Some("it contains an element that is not allowed");
        }
    }
    for scheme in ["javascript:", "vbscript:", "data:text/html"] {
        if lower.contains(scheme) {
            return Some("it contains a script URL");
        }
    }
    // Only the inside of tags can hold attributes; text such as "once = daily" is harmless.
    let mut tags = String::new();
    let mut in_tag = false;
    for c in lower.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                tags.push(' ');
            }
            c if in_tag => tags.push(c),
            _ => {}
        }
    }
    let b = tags.as_bytes();
    for (i, w) in b.windows(3).enumerate() {
        // An attribute named on...= after whitespace or a quote: an event handler.
        if (w[0] == b' ' || w[0] == b'"' || w[0] == b'\'' || w[0] == b'/')
            && w[1] == b'o'
            && w[2] == b'n'
        {
            let rest = &b[i + 3..];
            let name_len = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            let after = rest[name_len..].iter().find(|c| **c != b' ');
            if name_len > 0 && after == Some(&b'=') {
                return Some("it contains an event handler attribute");
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_narratives_are_recognised() {
        let div =
            |inner: &str| format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>");
        for bad in [
            "<script>alert(1)</script>",
            "<img src=\"x\" onerror=\"alert(1)\"/>",
            "<a href=\" javascript:alert(1)\">x</a>",
            "<a href=\"\tjava\nscript:alert(1)\">x</a>",
            "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">x</a>",
            "<p ONCLICK = 'x'>a</p>",
            "<iframe src=\"https://evil\"></iframe>",
        ] {
            assert!(unsafe_narrative(&div(bad)).is_some(), "{bad}");
        }
        for good in [
            "<p>Peter <b>Chalmers</b> (one, two)</p>",
            "<table><tr><td>Contacts</td></tr></table>",
            "<p>Take it on an empty stomach</p>",
            "<p>dose once = daily</p>",
        ] {
            assert!(unsafe_narrative(&div(good)).is_none(), "{good}");
        }
    }

    #[test]
    fn json_rules_reject_empty_and_null_but_allow_primitive_extension_gaps() {
        let ok = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [null, {"id": "x"}]}]});
        assert!(json_rules("Patient", &ok).is_empty());
        let bad = json!({"resourceType": "Patient", "name": [], "telecom": [{}], "gender": null});
        let places: Vec<_> = json_rules("Patient", &bad)
            .into_iter()
            .filter_map(|i| i.expression)
            .collect();
        assert_eq!(
            places,
            ["Patient.name", "Patient.telecom[0]", "Patient.gender"]
        );
    }

    #[test]
    fn reports_every_problem_with_its_location() {
        let v = Validators::new(&["Patient"]);
        let ok = json!({"resourceType": "Patient", "name": [{"family": "Chalmers"}]});
        assert!(v.validate("Patient", &ok).is_empty());
        let bad = json!({
            "resourceType": "Patient",
            "gender": "robot",
            "name": [{"given": [42]}],
            "birthDate": "1974-13-45",
            "unknownElement": true
        });
        let issues = v.validate("Patient", &bad);
        let places: Vec<_> = issues.iter().filter_map(|i| i.expression.clone()).collect();
        for want in [
            "Patient.gender",
            "Patient.name[0].given[0]",
            "Patient.birthDate",
            "Patient",
        ] {
            assert!(
                places.iter().any(|p| p == want),
                "{want} missing from {places:?}"
            );
        }
    }

    #[test]
    fn an_element_of_the_wrong_json_type_is_named() {
        let v = Validators::new(&["Patient", "Observation"]);
        for (rt, bad, at) in [
            ("Patient", json!({"meta": "x"}), "Patient.meta"),
            ("Patient", json!({"meta": [{"tag": []}]}), "Patient.meta"),
            (
                "Patient",
                json!({"maritalStatus": "M"}),
                "Patient.maritalStatus",
            ),
            ("Patient", json!({"text": 1}), "Patient.text"),
            ("Patient", json!({"name": {"family": "x"}}), "Patient.name"),
            (
                "Patient",
                json!({"name": [{"period": "2020"}]}),
                "Patient.name[0].period",
            ),
            (
                "Observation",
                json!({"status": "final", "code": {"text": "x"}, "valueQuantity": 5}),
                "Observation.valueQuantity",
            ),
        ] {
            let mut r = bad.clone();
            r["resourceType"] = json!(rt);
            let places: Vec<_> = v
                .validate(rt, &r)
                .into_iter()
                .filter_map(|i| i.expression)
                .collect();
            assert!(places.iter().any(|p| p == at), "{bad}: {places:?}");
        }
        // The gaps of primitive extensions stay allowed.
        let ok = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [null, {"id": "x"}]}]});
        assert!(v.validate("Patient", &ok).is_empty());
    }

    #[test]
    fn the_hosted_types_compile_once_and_an_unknown_type_is_named() {
        let types = crate::mapping::Registry::standard().types();
        assert!(Validators::new(&types).ready().is_ok());
        let err = Validators::new(&["Patient", "Nonexistent"])
            .ready()
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("Nonexistent"), "{err}");
    }

    #[test]
    fn an_element_named_description_is_still_checked() {
        // The schema's descriptions are left out; Location's `description` element is not.
        let v = Validators::new(&["Encounter"]);
        let encounter = |description: Value| {
            json!({
                "resourceType": "Encounter", "status": "finished",
                "class": {"code": "AMB"},
                "contained": [{"resourceType": "Location", "id": "room", "description": description}]
            })
        };
        assert_eq!(v.validate("Encounter", &encounter(json!("Room 5"))), vec![]);
        // A contained resource is checked against its own type: its problems are named in it.
        let issues = v.validate("Encounter", &encounter(json!(5)));
        assert!(
            issues
                .iter()
                .any(|i| i.expression.as_deref() == Some("Encounter.contained[0].description")),
            "{issues:?}"
        );
    }

    #[test]
    fn contained_resources_are_checked_as_their_own_type() {
        let v = Validators::new(&["Observation"]);
        let observation = |contained: Value| {
            json!({
                "resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "contained": contained
            })
        };
        let places = |contained: Value| -> Vec<String> {
            v.validate("Observation", &observation(contained))
                .into_iter()
                .filter_map(|i| i.expression)
                .collect()
        };
        let medication = json!({"resourceType": "Medication", "id": "m", "code": {"text": "x"}});
        assert!(places(json!([medication])).is_empty());
        assert_eq!(resource_types().len(), 146);
        for (contained, at) in [
            (
                json!([{"resourceType": "Medication", "id": "m", "code": "x"}]),
                "Observation.contained[0].code",
            ),
            (
                json!([{"resourceType": "Nonexistent", "id": "n"}]),
                "Observation.contained[0].resourceType",
            ),
            (json!([{"id": "n"}]), "Observation.contained[0]"),
            // A name of the schema that is no resource type is not one either.
            (
                json!([{"resourceType": "HumanName", "family": "x"}]),
                "Observation.contained[0].resourceType",
            ),
            (json!(["text"]), "Observation.contained[0]"),
            (
                json!([{"resourceType": "Medication", "id": "m", "contained": [medication]}]),
                "Observation.contained[0].contained",
            ),
        ] {
            let found = places(contained.clone());
            assert!(found.iter().any(|p| p == at), "{contained}: {found:?}");
        }
    }

    #[test]
    fn wrong_resource_type_is_reported() {
        let v = Validators::new(&["Patient"]);
        let issues = v.validate("Patient", &json!({"resourceType": "Observation"}));
        assert!(!issues.is_empty());
    }
}

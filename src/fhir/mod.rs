//! The shared FHIR vocabulary: ids, strict JSON, OperationOutcome and Bundle builders, search
//! values and validation. Used by every layer above; calls none of them.

pub mod bundle;
pub mod date;
pub mod id;
pub mod json;
pub mod outcome;
pub mod profiles;
pub mod resource_type;
pub mod search;
pub mod subset;
pub mod text;
pub mod validate;

pub use id::Id;
pub use outcome::{Issue, IssueType, Severity};
pub use resource_type::ResourceType;

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

/// A step into a JSON value: a member or an array item.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Calls `visit` with every Reference of a resource (an object with a string `reference`), with
/// the steps that lead to it. `_x` members (a primitive's id and extensions) are not entered.
/// Paths are spelled out only for what `visit` keeps, with [`fhirpath`] or [`json_pointer`].
pub fn references_at<'a>(v: &'a serde_json::Value, visit: &mut dyn FnMut(&[Step<'a>], &'a str)) {
    fn walk<'a>(
        v: &'a serde_json::Value,
        steps: &mut Vec<Step<'a>>,
        visit: &mut dyn FnMut(&[Step<'a>], &'a str),
    ) {
        let nested = |x: &serde_json::Value| x.is_object() || x.is_array();
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(r)) = o.get("reference") {
                    visit(steps, r);
                }
                for (k, item) in o {
                    if !k.starts_with('_') && nested(item) {
                        steps.push(Step::Key(k));
                        walk(item, steps, visit);
                        steps.pop();
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    if nested(item) {
                        steps.push(Step::Index(i));
                        walk(item, steps, visit);
                        steps.pop();
                    }
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), visit)
}

/// The FHIRPath of `steps` from a resource of type `root`: `Observation.component[0].code`.
pub fn fhirpath(root: &str, steps: &[Step]) -> String {
    let mut out = root.to_owned();
    for s in steps {
        match s {
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The JSON pointer (RFC 6901) of `steps`.
pub fn json_pointer(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        out.push('/');
        match s {
            Step::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_at_gives_the_path_of_each_reference() {
        let r = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient?identifier=a|1"},
            "component": [
                {"code": {"text": "x"}},
                {"extension": [{"url": "u", "valueReference": {"reference": "Encounter/e"}}]}
            ],
            "a/b~c": {"reference": "Practitioner/p"},
            "_status": {"extension": [{"valueReference": {"reference": "Patient/skipped"}}]}
        });
        let mut seen = Vec::new();
        references_at(&r, &mut |steps, reference| {
            seen.push((
                fhirpath("Observation", steps),
                json_pointer(steps),
                reference.to_owned(),
            ))
        });
        assert_eq!(
            seen,
            vec![
                (
                    "Observation.subject".to_owned(),
                    "/subject".to_owned(),
                    "Patient?identifier=a|1".to_owned()
                ),
                (
                    "Observation.component[1].extension[0].valueReference".to_owned(),
                    "/component/1/extension/0/valueReference".to_owned(),
                    "Encounter/e".to_owned()
                ),
                (
                    "Observation.a/b~c".to_owned(),
                    "/a~1b~0c".to_owned(),
                    "Practitioner/p".to_owned()
                ),
            ]
        );
    }
}

//! JSON Patch documents (RFC 6902): parsed or refused, and applied as the operations say.

use expediente::error::Error;
use expediente::fhir::json::parse_strict;
use expediente::interactions::{apply_patch, parse_patch, MAX_PATCH_COPIED, MAX_PATCH_DEPTH};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{config, decimal_text, json_leaf, json_value, object};

/// A document a patch can reach into: small keys, small arrays.
fn patch_target() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[abc~/]", inner), 0..4).prop_map(object),
        ]
    })
}

fn pointer() -> impl Strategy<Value = String> {
    let segment = select(vec![
        "a", "b", "c", "0", "1", "2", "-", "~0", "~1", "~", "~2", "x", "",
    ]);
    prop_oneof![
        1 => Just(String::new()),
        4 => vec(segment, 1..4).prop_map(|s| s.iter().map(|x| format!("/{x}")).collect()),
        1 => "[a-z/~0-9]{0,6}",
    ]
}

fn patch_operation() -> impl Strategy<Value = Value> {
    let op = select(vec![
        "add",
        "remove",
        "replace",
        "move",
        "copy",
        "test",
        "frobnicate",
    ]);
    (
        op,
        pointer(),
        prop::option::of(pointer()),
        prop::option::of(patch_target()),
    )
        .prop_map(|(op, path, from, value)| {
            let mut m = Map::new();
            m.insert("op".into(), op.into());
            m.insert("path".into(), path.into());
            if let Some(f) = from {
                m.insert("from".into(), f.into());
            }
            if let Some(v) = value {
                m.insert("value".into(), v);
            }
            Value::Object(m)
        })
}

/// Leaves whose integers are 64-bit ones written the usual way (the others are a property of
/// their own, below).
fn patch_leaf() -> impl Strategy<Value = Value> {
    json_leaf().prop_filter("64-bit integers, as Rust writes them", |v| match v {
        Value::Number(n) => {
            let t = n.to_string();
            t.contains(['.', 'e', 'E'])
                || t.parse::<i64>().is_ok_and(|i| i.to_string() == t)
                || t.parse::<u64>().is_ok_and(|u| u.to_string() == t)
        }
        _ => true,
    })
}

/// The JSON pointer (RFC 6901) of a member of the top object.
fn member(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn patch_documents_that_are_not_arrays_are_refused(v in json_value()) {
        prop_assume!(!v.is_array());
        prop_assert!(parse_patch(&v).is_err());
    }

    // (json_patch::patch panics when it cannot undo the operations before a failed one, as
    // after `[{"op":"move","from":"/id","path":""}]` twice; apply_patch never undoes.)
    #[test]
    fn arbitrary_patches_are_refused_or_applied_and_a_failure_names_its_operation(
        doc in patch_target(),
        ops in prop_oneof![
            1 => json_value(),
            4 => vec(patch_operation(), 0..6).prop_map(Value::Array),
        ],
    ) {
        if let Ok(patch) = parse_patch(&ops) {
            let mut patched = doc.clone();
            let applied = catch_unwind(AssertUnwindSafe(|| apply_patch(&mut patched, &patch)));
            prop_assert!(applied.is_ok(), "{} on {} panicked", ops, doc);
            match applied.unwrap() {
                Ok(()) => {
                    let text = patched.to_string();
                    prop_assert_eq!(parse_strict(text.as_bytes()).ok(), Some(patched), "{}", ops);
                }
                Err(e) => {
                    // What the 422 says: the index of the operation and its path; the document
                    // is as it was.
                    prop_assert_eq!(&patched, &doc);
                    let says = diagnostics(&e);
                    let named = (0..patch.len()).any(|i| {
                        let path = ops[i]["path"].as_str().unwrap_or_default();
                        says.starts_with(&format!(
                            "JSON Patch operation {i} ({}) ",
                            path.escape_default()
                        ))
                    });
                    prop_assert!(named, "{}: {}", ops, says);
                }
            }
        }
    }

    #[test]
    fn generated_operations_give_the_expected_document_or_fail_leaving_it_unchanged(
        members in vec(("[ab~/]{1,2}", patch_leaf()), 0..5),
        steps in vec((0u8..4, "[ab~/]{1,2}", patch_leaf(), any::<bool>()), 1..6),
    ) {
        let doc = object(members);
        let mut model = doc.as_object().unwrap().clone();
        let mut ops = Vec::new();
        let mut fails = false;
        for (kind, key, value, current) in steps {
            let path = member(&key);
            let op = match kind {
                0 => {
                    if !fails {
                        model.insert(key.clone(), value.clone());
                    }
                    serde_json::json!({"op": "add", "path": path, "value": value})
                }
                1 => {
                    fails |= !model.contains_key(&key);
                    if !fails {
                        model.insert(key.clone(), value.clone());
                    }
                    serde_json::json!({"op": "replace", "path": path, "value": value})
                }
                2 => {
                    fails |= model.remove(&key).is_none();
                    serde_json::json!({"op": "remove", "path": path})
                }
                _ => {
                    // Test the value the member has now, or another.
                    let expected = match model.get(&key) {
                        Some(v) if current => v.clone(),
                        _ => value,
                    };
                    fails |= model.get(&key) != Some(&expected);
                    serde_json::json!({"op": "test", "path": path, "value": expected})
                }
            };
            ops.push(op);
        }
        let ops = Value::Array(ops);
        let patch = parse_patch(&ops);
        prop_assert!(patch.is_ok(), "{} refused", ops);
        let mut patched = doc.clone();
        let applied = apply_patch(&mut patched, &patch.unwrap());
        if fails {
            prop_assert!(applied.is_err(), "{} applied to {}", ops, doc);
            prop_assert_eq!(patched, doc);
        } else {
            prop_assert!(applied.is_ok(), "{} on {}: {:?}", ops, doc, applied.err());
            prop_assert_eq!(patched, Value::Object(model));
        }
    }

    // Regression: integers beyond 64 bits were refused in patch values and `-0` became `0`.
    #[test]
    fn patch_values_keep_every_number_a_body_may_hold(
        t in prop_oneof![decimal_text(), "-?[1-9][0-9]{19,40}", Just("-0".to_owned())],
        op in select(vec!["add", "replace", "test"]),
    ) {
        let body = format!("[{{\"op\":\"{op}\",\"path\":\"/a\",\"value\":{t}}}]");
        let ops = parse_strict(body.as_bytes());
        prop_assert!(ops.is_ok(), "{} refused", body);
        let patch = parse_patch(&ops.unwrap());
        prop_assert!(patch.is_ok(), "{} refused: {:?}", body, patch.err());
        let expected = parse_strict(format!("{{\"a\":{t}}}").as_bytes()).unwrap();
        let mut doc = if op == "test" { expected.clone() } else { serde_json::json!({"a": 0}) };
        let applied = apply_patch(&mut doc, &patch.unwrap());
        prop_assert!(applied.is_ok(), "{}: {:?}", body, applied.err());
        prop_assert_eq!(doc.to_string(), expected.to_string(), "{}", body);
    }
}

fn diagnostics(e: &Error) -> String {
    match e {
        Error::BadRequest(issues) | Error::Unprocessable(issues) => issues[0].diagnostics.clone(),
        other => panic!("not a 400 or 422: {other:?}"),
    }
}

fn too_costly(e: &Error) -> bool {
    matches!(e, Error::BadRequest(issues) if issues[0].code == expediente::fhir::IssueType::TooCostly)
}

fn ops(list: Vec<Value>) -> json_patch::Patch {
    parse_patch(&Value::Array(list)).expect("a patch")
}

// Regression (found by the fuzz driver, a 500 on both engines): json_patch::patch panicked
// undoing a `move` of a member onto the whole document once a later operation failed.
#[test]
fn a_failed_patch_after_a_move_onto_the_document_leaves_it_unchanged() {
    let doc = serde_json::json!({"resourceType": "Practitioner", "id": "p1", "active": true});
    let step = serde_json::json!({"op": "move", "from": "/id", "path": ""});
    for n in 1..6 {
        let mut patched = doc.clone();
        let r = apply_patch(&mut patched, &ops(vec![step.clone(); n]));
        if n == 1 {
            assert_eq!(r.ok(), Some(()));
            assert_eq!(patched, "p1");
        } else {
            assert!(diagnostics(&r.unwrap_err()).starts_with("JSON Patch operation 1 ()"));
            assert_eq!(patched, doc);
        }
    }
}

#[test]
fn copies_are_bounded_by_what_they_copy() {
    // Each copy of the array into itself doubles it: within the limit it is applied, past it
    // the patch is refused before the copy is made.
    let doc = serde_json::json!({"a": ["0123456789"]});
    let step = serde_json::json!({"op": "copy", "from": "/a", "path": "/a/-"});
    let mut patched = doc.clone();
    apply_patch(&mut patched, &ops(vec![step.clone(); 10])).unwrap();
    assert_eq!(patched["a"].as_array().unwrap().len(), 11);
    let mut patched = doc.clone();
    let e = apply_patch(&mut patched, &ops(vec![step; 60])).unwrap_err();
    assert!(too_costly(&e), "{e:?}");
    assert!(
        diagnostics(&e).contains(&MAX_PATCH_COPIED.to_string()),
        "{e:?}"
    );
    assert_eq!(patched, doc);
}

#[test]
fn patched_documents_are_bounded_in_depth() {
    // Copying an object into itself nests it one level deeper each time; copying the document's
    // deepest member under its own deepest point doubles its depth.
    let doc = serde_json::json!({"a": {}});
    let step = serde_json::json!({"op": "copy", "from": "/a", "path": "/a/a"});
    let mut patched = doc.clone();
    apply_patch(&mut patched, &ops(vec![step.clone(); 50])).unwrap();
    let text = patched.to_string();
    assert_eq!(
        parse_strict(text.as_bytes()).ok(),
        Some(patched),
        "read back"
    );
    let mut patched = doc.clone();
    let e = apply_patch(&mut patched, &ops(vec![step; 200])).unwrap_err();
    assert!(too_costly(&e), "{e:?}");
    assert!(
        diagnostics(&e).contains(&MAX_PATCH_DEPTH.to_string()),
        "{e:?}"
    );
    assert_eq!(patched, doc);
    // An added value deep enough on its own, at a deep path.
    let mut deep = serde_json::json!(0);
    for _ in 0..60 {
        deep = serde_json::json!({ "a": deep });
    }
    let mut patched = deep.clone();
    let path = "/a".repeat(59);
    let add = serde_json::json!({"op": "add", "path": format!("{path}/b"), "value": deep.clone()});
    assert!(too_costly(
        &apply_patch(&mut patched, &ops(vec![add])).unwrap_err()
    ));
    assert_eq!(patched, deep);
}

#[test]
fn patch_documents_past_the_operation_limit_are_refused() {
    let test = serde_json::json!({"op": "test", "path": "/a", "value": 1});
    assert!(parse_patch(&Value::Array(vec![test.clone(); 1_000])).is_ok());
    let e = parse_patch(&Value::Array(vec![test; 1_001])).unwrap_err();
    assert!(too_costly(&e), "{e:?}");
    assert!(diagnostics(&e).contains("at most 1000 operations"), "{e:?}");
}

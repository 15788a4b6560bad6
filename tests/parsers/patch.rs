//! JSON Patch documents (RFC 6902): parsed or refused, and applied as the operations say.

use expediente::fhir::json::parse_strict;
use expediente::interactions::parse_patch;
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

    // (json_patch::patch is not all or nothing for a `move` whose `add` half fails —
    // `[{"op":"move","from":"/a","path":"/b/a"}]` on `{"a":null}` leaves `{}` — but the server
    // discards the document of a patch that fails, so only the error is asserted here.)
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
            let applied = catch_unwind(AssertUnwindSafe(|| json_patch::patch(&mut patched, &patch)));
            prop_assert!(applied.is_ok(), "{} on {} panicked", ops, doc);
            match applied.unwrap() {
                Ok(()) => {
                    let text = patched.to_string();
                    prop_assert_eq!(parse_strict(text.as_bytes()).ok(), Some(patched), "{}", ops);
                }
                Err(e) => {
                    // What the 422 says: the index of the operation and its path.
                    let op = &ops[e.operation];
                    prop_assert!(e.operation < patch.len(), "{}: {}", ops, e);
                    prop_assert_eq!(Some(e.path.as_str()), op["path"].as_str(), "{}: {}", ops, e);
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
        let applied = json_patch::patch(&mut patched, &patch.unwrap());
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
        let applied = json_patch::patch(&mut doc, &patch.unwrap());
        prop_assert!(applied.is_ok(), "{}: {:?}", body, applied.err());
        prop_assert_eq!(doc.to_string(), expected.to_string(), "{}", body);
    }
}

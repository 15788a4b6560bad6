//! The specs' own tests.

use super::*;

const CLASS: Spec = Spec::new(
    &[Seg::Key("class")],
    Kind::Coding {
        code: "class_code",
        system: Some("class_system"),
    },
);
const TYPE: Spec = Spec::new(
    &[Seg::Key("type"), Seg::First],
    Kind::Concept {
        code: "type_code",
        system: Some("type_system"),
        display: Some("type_display"),
    },
);
const DOCTOR: Spec = Spec::new(
    &[Seg::Key("participant"), Seg::First, Seg::Key("individual")],
    Kind::Ref {
        column: "doctor_id",
        target: "Practitioner",
        table: "users",
    },
);

#[test]
fn specs_project_and_patch_paths_into_arrays_and_objects() {
    let t = json!([{"coding": [{"system": "http://snomed.info/sct", "code": "11429006", "display": "Consultation"}]}]);
    let cells = TYPE.project(Some(&t));
    assert_eq!(cells[0], Cell::Text(Some("11429006".into())));
    assert_eq!(TYPE.patch(None, &cells), Some(t.clone()));
    let changed = TYPE.patch(
        Some(t),
        &[
            Cell::Text(Some("x".into())),
            Cell::Text(None),
            Cell::Text(None),
        ],
    );
    assert_eq!(changed, Some(json!([{"coding": [{"code": "x"}]}])));
    let p = json!([{"individual": {"reference": "Practitioner/dr1", "display": "Dr. One"}}]);
    assert_eq!(
        DOCTOR.project(Some(&p)),
        vec![Cell::Text(Some("dr1".into()))]
    );
    assert_eq!(
        DOCTOR.patch(None, &DOCTOR.project(Some(&p))),
        Some(json!([{"individual": {"reference": "Practitioner/dr1"}}]))
    );
    assert_eq!(
        CLASS.patch(None, &[Cell::Text(None), Cell::Text(None)]),
        None
    );
}

#[test]
fn removing_a_value_prunes_what_it_leaves_empty() {
    let p = json!([{"individual": {"reference": "Practitioner/dr1"}}]);
    assert_eq!(DOCTOR.patch(Some(p), &[Cell::Text(None)]), None);
    let p = json!([{"individual": {"reference": "Practitioner/dr1"}, "type": [{"text": "x"}]}]);
    assert_eq!(
        DOCTOR.patch(Some(p), &[Cell::Text(None)]),
        Some(json!([{"type": [{"text": "x"}]}]))
    );
}

#[test]
fn references_of_other_types_or_forms_are_not_mapped() {
    let r = json!({"reference": "RelatedPerson/x"});
    assert_eq!(ref_id(Some(&r), "Practitioner"), None);
    let r = json!({"reference": "Practitioner/dr1/_history/2"});
    assert_eq!(ref_id(Some(&r), "Practitioner"), Some("dr1"));
    let r = json!({"reference": "Practitioner/../x"});
    assert_eq!(ref_id(Some(&r), "Practitioner"), None);
}

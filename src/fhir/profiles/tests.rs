//! The profiles' own tests.

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
    let bare = json!({"resourceType": "Patient", "meta": claim, "identifier": [{"value": "1"}]});
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
    let other = json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/p"]}});
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
        issues
            .iter()
            .any(|(at, msg)| at == "Observation.component" && msg.contains("slice DiastolicBP")),
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

//! AllergyIntolerance ⇄ patient_allergies, with the allergies catalog.

use super::search::{
    date_precision, patient_param, reference_param, ParamKind, SearchParam, Target,
};
use super::spec::{patient, practitioner, Kind, Seg, Spec};
use super::table::TableMapping;

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

static SPECS: &[Spec] = &[
    Spec::new(
        &[Seg::Key("clinicalStatus")],
        Kind::FixedConcept {
            code: "clinical_status",
            system: CLINICAL,
        },
    )
    .one_of(&["active", "inactive", "resolved"]),
    Spec::new(
        &[Seg::Key("verificationStatus")],
        Kind::FixedConcept {
            code: "verification_status",
            system: VERIFICATION,
        },
    )
    .one_of(&[
        "unconfirmed",
        "presumed",
        "confirmed",
        "refuted",
        "entered-in-error",
    ]),
    Spec::new(&[Seg::Key("type")], Kind::Text("type")).one_of(&["allergy", "intolerance"]),
    Spec::new(&[Seg::Key("criticality")], Kind::Text("criticality")).one_of(&[
        "low",
        "high",
        "unable-to-assess",
    ]),
    Spec::new(
        &[Seg::Key("code")],
        Kind::Catalog {
            column: "allergy_id",
            table: "allergies",
            display: "display",
        },
    ),
    patient(&[Seg::Key("patient")]).required(),
    Spec::new(&[Seg::Key("onsetDateTime")], Kind::Time("onset")),
    Spec::new(&[Seg::Key("recordedDate")], Kind::Time("recorded_date")),
    practitioner(&[Seg::Key("recorder")], "recorder_id"),
    Spec::new(
        &[Seg::Key("reaction"), Seg::First, Seg::Key("severity")],
        Kind::Text("severity"),
    )
    .one_of(&["mild", "moderate", "severe"]),
    Spec::new(
        &[Seg::Key("reaction"), Seg::First, Seg::Key("description")],
        Kind::Text("reaction"),
    ),
    Spec::new(
        &[Seg::Key("note"), Seg::First, Seg::Key("text")],
        Kind::Text("notes"),
    ),
];

static PARAMS: &[SearchParam] = &[
    crate::mapping::search::CLINICAL_IDENTIFIER,
    SearchParam {
        name: "category",
        kind: ParamKind::Token,
        target: Target::CodeIndex {
            system: "http://hl7.org/fhir/allergy-intolerance-category",
        },
        definition: "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-category",
        documentation: "food | medication | environment | biologic",
    },
    patient_param(
        "patient",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        "Who the sensitivity is for",
    ),
    SearchParam {
        name: "clinical-status",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "clinical_status",
            system: Some(CLINICAL),
        },
        definition: "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-clinical-status",
        documentation: "active | inactive | resolved",
    },
    SearchParam {
        name: "verification-status",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "verification_status",
            system: Some(VERIFICATION),
        },
        definition: "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-verification-status",
        documentation: "unconfirmed | confirmed | refuted | entered-in-error",
    },
    SearchParam {
        name: "criticality",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "criticality",
            system: Some("http://hl7.org/fhir/allergy-intolerance-criticality"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-criticality",
        documentation: "low | high | unable-to-assess",
    },
    SearchParam {
        name: "type",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "type",
            system: Some("http://hl7.org/fhir/allergy-intolerance-type"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-type",
        documentation: "allergy | intolerance",
    },
    SearchParam {
        name: "code",
        kind: ParamKind::Token,
        target: Target::CatalogToken {
            column: "allergy_id",
            table: "allergies",
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-code",
        documentation: "Code that identifies the allergy or intolerance",
    },
    SearchParam {
        name: "date",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "recorded_date",
            end: "recorded_date",
            start_precision: Some("recorded_date_precision"),
            end_precision: Some("recorded_date_precision"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
        documentation: "Date first version of the resource instance was recorded",
    },
    SearchParam {
        name: "onset",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "onset",
            end: "onset",
            start_precision: Some("onset_precision"),
            end_precision: Some("onset_precision"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-onset",
        documentation: "Date(/time) when manifestations showed",
    },
    reference_param(
        "recorder",
        "recorder_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-recorder",
        "Who recorded the sensitivity",
    ),
];

/// The AllergyIntolerance mapping.
pub fn mapping() -> TableMapping {
    TableMapping {
        resource_type: "AllergyIntolerance",
        table: "patient_allergies",
        specs: SPECS,
        params: PARAMS,
        code_index: &[("category", "category")],
        derived: &[
            ("onset_precision", |r| {
                date_precision(r.get("onsetDateTime"))
            }),
            ("recorded_date_precision", |r| {
                date_precision(r.get("recordedDate"))
            }),
        ],
        ..TableMapping::BASE
    }
}

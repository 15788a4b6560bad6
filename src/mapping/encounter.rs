//! Encounter ⇄ consultations.

use super::search::{
    date_precision, patient_param, reference_param, ParamKind, SearchParam, Target,
};
use super::spec::{concept, patient, practitioner, Kind, Seg, Spec};
use super::table::TableMapping;

const STATUS: &[&str] = &[
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const CLASS: &[&str] = &[
    "AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR",
];
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

static SPECS: &[Spec] = &[
    Spec::new(
        &[Seg::Key("serviceType")],
        Kind::Catalog {
            column: "specialty_id",
            table: "specialties",
            display: "name",
        },
    ),
    Spec::new(&[Seg::Key("status")], Kind::Text("status"))
        .one_of(STATUS)
        .required(),
    Spec::new(
        &[Seg::Key("class")],
        Kind::FixedCoding {
            code: "class_code",
            system: ACT_CODE,
        },
    )
    .one_of(CLASS)
    .required(),
    concept(
        &[Seg::Key("type"), Seg::First],
        "type_code",
        "type_system",
        "type_display",
    ),
    patient(&[Seg::Key("subject")]).required(),
    practitioner(
        &[Seg::Key("participant"), Seg::First, Seg::Key("individual")],
        "doctor_id",
    ),
    Spec::new(
        &[Seg::Key("period"), Seg::Key("start")],
        Kind::Time("period_start"),
    ),
    Spec::new(
        &[Seg::Key("period"), Seg::Key("end")],
        Kind::Time("period_end"),
    ),
    concept(
        &[Seg::Key("reasonCode"), Seg::First],
        "reason_code",
        "reason_system",
        "reason_display",
    ),
];

static PARAMS: &[SearchParam] = &[
    crate::mapping::search::CLINICAL_IDENTIFIER,
    patient_param(
        "patient",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        "The patient present at the encounter",
    ),
    patient_param(
        "subject",
        "http://hl7.org/fhir/SearchParameter/Encounter-subject",
        "The patient present at the encounter",
    ),
    reference_param(
        "participant",
        "doctor_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/Encounter-participant",
        "The doctor of the consultation (the first participant)",
    ),
    reference_param(
        "practitioner",
        "doctor_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/Encounter-practitioner",
        "The doctor of the consultation (the first participant)",
    ),
    SearchParam {
        name: "status",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "status",
            system: Some("http://hl7.org/fhir/encounter-status"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/Encounter-status",
        documentation:
            "planned | arrived | triaged | in-progress | onleave | finished | cancelled +",
    },
    SearchParam {
        name: "class",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "class_code",
            system: Some(ACT_CODE),
        },
        definition: "http://hl7.org/fhir/SearchParameter/Encounter-class",
        documentation: "Classification of the encounter (v3 ActCode)",
    },
    SearchParam {
        name: "type",
        kind: ParamKind::Token,
        target: Target::TokenColumns {
            code: "type_code",
            system: "type_system",
            text: Some("type_display"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-type",
        documentation: "Specific type of encounter",
    },
    SearchParam {
        name: "reason-code",
        kind: ParamKind::Token,
        target: Target::TokenColumns {
            code: "reason_code",
            system: "reason_system",
            text: Some("reason_display"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/Encounter-reason-code",
        documentation: "Coded reason the encounter takes place",
    },
    SearchParam {
        name: "date",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "period_start",
            end: "period_end",
            start_precision: Some("period_start_precision"),
            end_precision: Some("period_end_precision"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
        documentation: "A date within the period the Encounter lasted",
    },
];

/// The Encounter mapping.
pub fn mapping() -> TableMapping {
    TableMapping {
        resource_type: "Encounter",
        table: "consultations",
        specs: SPECS,
        params: PARAMS,
        derived: &[
            ("period_start_precision", |r| {
                date_precision(r.get("period").and_then(|p| p.get("start")))
            }),
            ("period_end_precision", |r| {
                date_precision(r.get("period").and_then(|p| p.get("end")))
            }),
        ],
        ..TableMapping::BASE
    }
}

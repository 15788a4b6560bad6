//! The Patient's search parameters.

use super::*;

pub(super) const GENDER_SYSTEM: &str = "http://hl7.org/fhir/administrative-gender";

pub(super) static PARAMS: &[SearchParam] = &[
    SearchParam {
        name: "identifier",
        kind: ParamKind::Token,
        target: Target::IdentifierTable {
            table: "patient_identifiers",
            foreign_key: "patient_id",
        },
        definition: "http://hl7.org/fhir/SearchParameter/Patient-identifier",
        documentation: "A patient identifier (system|value)",
    },
    SearchParam {
        name: "family",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-family",
        documentation: "A portion of the family name of the patient",
    },
    SearchParam {
        name: "given",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-given",
        documentation: "A portion of the given name of the patient",
    },
    SearchParam {
        name: "name",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/Patient-name",
        documentation: "A portion of any part of any name: family, given, prefix, suffix or text",
    },
    SearchParam {
        name: "birthdate",
        kind: ParamKind::Date,
        target: Target::DateColumn {
            column: "birth_date",
            precision_column: "birth_date_precision",
        },
        definition: "http://hl7.org/fhir/SearchParameter/individual-birthdate",
        documentation: "The patient's date of birth, compared at its own precision",
    },
    SearchParam {
        name: "gender",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "gender",
            system: Some(GENDER_SYSTEM),
        },
        definition: "http://hl7.org/fhir/SearchParameter/individual-gender",
        documentation: "Gender of the patient",
    },
    SearchParam {
        name: "active",
        kind: ParamKind::Token,
        target: Target::BoolColumn { column: "active" },
        definition: "http://hl7.org/fhir/SearchParameter/Patient-active",
        documentation: "Whether the patient record is active",
    },
    reference_param(
        "general-practitioner",
        "general_practitioner_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/Patient-general-practitioner",
        "The patient's nominated primary care provider (a clinic user)",
    ),
    PERSON_CONTACT[0],
    PERSON_CONTACT[1],
    PERSON_CONTACT[2],
    PERSON_CONTACT[3],
    PERSON_CONTACT[4],
    PERSON_CONTACT[5],
    PERSON_CONTACT[6],
    PERSON_CONTACT[7],
];

// ---- element ⇄ column mappings -------------------------------------------------------------

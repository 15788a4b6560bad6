//! Practitioner ⇄ users with a clinical role.
//!
//! A Practitioner created through FHIR is a users row with the `physician` role and no credentials:
//! it cannot log in until an administrator gives it some. Users without a clinical role
//! (administrators, front desk) are not Practitioners.

use super::search::{ParamKind, SearchParam, Target, PERSON_CONTACT};
use super::spec::{Kind, Seg, Spec};
use super::table::TableMapping;

/// The identifier system of the licence number column. US data (Synthea) carries the NPI; a
/// clinic elsewhere sets its national licence registry here.
pub const LICENCE_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";

const GENDER: &[&str] = &["male", "female", "other", "unknown"];

static SPECS: &[Spec] = &[
    Spec::new(
        &[Seg::Key("qualification"), Seg::First, Seg::Key("code")],
        Kind::Catalog {
            column: "specialty_id",
            table: "specialties",
            display: "name",
        },
    ),
    Spec::new(
        &[Seg::Key("identifier")],
        Kind::IdentifierOf {
            column: "license_number",
            system: LICENCE_SYSTEM,
        },
    ),
    Spec::new(
        &[Seg::Key("active")],
        Kind::BoolDefault {
            column: "is_active",
            default: true,
        },
    ),
    Spec::new(
        &[Seg::Key("name"), Seg::First, Seg::Key("family")],
        Kind::Text("last_name"),
    ),
    Spec::new(
        &[Seg::Key("name"), Seg::First, Seg::Key("given")],
        Kind::Joined {
            column: "first_name",
            sep: " ",
        },
    ),
    Spec::new(
        &[Seg::Key("telecom")],
        Kind::Telecom {
            phone: "phone",
            email: "email",
            unique_email: true,
        },
    ),
    Spec::new(&[Seg::Key("gender")], Kind::Text("gender")).one_of(GENDER),
];

static PARAMS: &[SearchParam] = &[
    SearchParam {
        name: "identifier",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "license_number",
            system: Some(LICENCE_SYSTEM),
        },
        definition: "http://hl7.org/fhir/SearchParameter/Practitioner-identifier",
        documentation: "The practitioner's licence number",
    },
    SearchParam {
        name: "name",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/Practitioner-name",
        documentation: "A portion of any part of any name",
    },
    SearchParam {
        name: "family",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-family",
        documentation: "A portion of the family name",
    },
    SearchParam {
        name: "given",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-given",
        documentation: "A portion of the given name",
    },
    SearchParam {
        name: "gender",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "gender",
            system: Some("http://hl7.org/fhir/administrative-gender"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/individual-gender",
        documentation: "Gender of the practitioner",
    },
    SearchParam {
        name: "active",
        kind: ParamKind::Token,
        target: Target::BoolColumn {
            column: "is_active",
        },
        definition: "http://hl7.org/fhir/SearchParameter/Practitioner-active",
        documentation: "Whether the practitioner record is active",
    },
    PERSON_CONTACT[0],
    PERSON_CONTACT[1],
    PERSON_CONTACT[2],
    PERSON_CONTACT[3],
    PERSON_CONTACT[4],
    PERSON_CONTACT[5],
    PERSON_CONTACT[6],
    PERSON_CONTACT[7],
];

/// The Practitioner mapping.
pub fn mapping() -> TableMapping {
    TableMapping {
        resource_type: "Practitioner",
        table: "users",
        specs: SPECS,
        params: PARAMS,
        id_column: "fhir_id_given",
        filter: Some("t.role_id IN (SELECT r.id FROM roles r WHERE r.is_clinical)"),
        insert_defaults: &[("role_id", "SELECT id FROM roles WHERE name = 'physician'")],
        index_names: true,
        ..TableMapping::BASE
    }
}

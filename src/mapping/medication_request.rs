//! MedicationRequest ⇄ prescriptions, with the medications catalog.

use super::search::{
    date_precision, patient_param, reference_param, ParamKind, SearchParam, Target,
};
use super::spec::{patient, practitioner, Kind, Seg, Spec, ENCOUNTER};
use super::table::TableMapping;

static SPECS: &[Spec] = &[
    Spec::new(&[Seg::Key("status")], Kind::Text("status"))
        .one_of(&[
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        ])
        .required(),
    Spec::new(&[Seg::Key("intent")], Kind::Text("intent"))
        .one_of(&[
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ])
        .required(),
    Spec::new(
        &[Seg::Key("medicationCodeableConcept")],
        Kind::Catalog {
            column: "medication_id",
            table: "medications",
            display: "display",
        },
    ),
    patient(&[Seg::Key("subject")]).required(),
    ENCOUNTER,
    Spec::new(&[Seg::Key("authoredOn")], Kind::Time("authored_on")),
    practitioner(&[Seg::Key("requester")], "prescriber_id"),
    Spec::new(
        &[Seg::Key("dosageInstruction"), Seg::First, Seg::Key("text")],
        Kind::Text("dosage_text"),
    ),
    Spec::new(
        &[Seg::Key("dosageInstruction"), Seg::First, Seg::Key("route")],
        Kind::Concept {
            code: "route_code",
            system: None,
            display: Some("route_display"),
        },
    ),
    Spec::new(
        &[
            Seg::Key("dosageInstruction"),
            Seg::First,
            Seg::Key("doseAndRate"),
            Seg::First,
            Seg::Key("doseQuantity"),
            Seg::Key("value"),
        ],
        Kind::Decimal("dose_value"),
    ),
    Spec::new(
        &[
            Seg::Key("dosageInstruction"),
            Seg::First,
            Seg::Key("doseAndRate"),
            Seg::First,
            Seg::Key("doseQuantity"),
            Seg::Key("unit"),
        ],
        Kind::Text("dose_unit"),
    ),
    Spec::new(
        &[
            Seg::Key("dispenseRequest"),
            Seg::Key("quantity"),
            Seg::Key("value"),
        ],
        Kind::Decimal("quantity_value"),
    ),
    Spec::new(
        &[
            Seg::Key("dispenseRequest"),
            Seg::Key("quantity"),
            Seg::Key("unit"),
        ],
        Kind::Text("quantity_unit"),
    ),
    Spec::new(
        &[
            Seg::Key("dispenseRequest"),
            Seg::Key("numberOfRepeatsAllowed"),
        ],
        Kind::Int("refills"),
    ),
    Spec::new(
        &[
            Seg::Key("dispenseRequest"),
            Seg::Key("validityPeriod"),
            Seg::Key("start"),
        ],
        Kind::Time("valid_from"),
    ),
    Spec::new(
        &[
            Seg::Key("dispenseRequest"),
            Seg::Key("validityPeriod"),
            Seg::Key("end"),
        ],
        Kind::Time("valid_until"),
    ),
    Spec::new(
        &[Seg::Key("note"), Seg::First, Seg::Key("text")],
        Kind::Text("notes"),
    ),
];

static PARAMS: &[SearchParam] = &[
    crate::mapping::search::CLINICAL_IDENTIFIER,
    patient_param(
        "patient",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        "Returns prescriptions for a specific patient",
    ),
    patient_param(
        "subject",
        "http://hl7.org/fhir/SearchParameter/MedicationRequest-subject",
        "The identity of a patient to list orders for",
    ),
    reference_param(
        "encounter",
        "consultation_id",
        "consultations",
        "Encounter",
        "http://hl7.org/fhir/SearchParameter/medications-encounter",
        "Return prescriptions with this encounter identifier",
    ),
    SearchParam {
        name: "status",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "status",
            system: Some("http://hl7.org/fhir/CodeSystem/medicationrequest-status"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/medications-status",
        documentation: "Status of the prescription",
    },
    SearchParam {
        name: "intent",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "intent",
            system: Some("http://hl7.org/fhir/CodeSystem/medicationrequest-intent"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/MedicationRequest-intent",
        documentation: "Returns prescriptions with different intents",
    },
    SearchParam {
        name: "code",
        kind: ParamKind::Token,
        target: Target::CatalogToken {
            column: "medication_id",
            table: "medications",
        },
        definition: "http://hl7.org/fhir/SearchParameter/medications-code",
        documentation: "Return prescriptions of this medication code",
    },
    SearchParam {
        name: "authoredon",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "authored_on",
            end: "authored_on",
            start_precision: Some("authored_on_precision"),
            end_precision: Some("authored_on_precision"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/MedicationRequest-authoredon",
        documentation: "Return prescriptions written on this date",
    },
    reference_param(
        "requester",
        "prescriber_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/MedicationRequest-requester",
        "Returns prescriptions prescribed by this prescriber",
    ),
];

/// The MedicationRequest mapping.
pub fn mapping() -> TableMapping {
    TableMapping {
        resource_type: "MedicationRequest",
        table: "prescriptions",
        specs: SPECS,
        params: PARAMS,
        derived: &[("authored_on_precision", |r| {
            date_precision(r.get("authoredOn"))
        })],
        ..TableMapping::BASE
    }
}

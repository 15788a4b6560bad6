//! DiagnosticReport ⇄ medical_tests, presentedForm ⇄ its file_attachments.

use super::search::{patient_param, reference_param, ParamKind, SearchParam, Target};
use super::spec::{Kind, Seg, Spec};
use super::table::TableMapping;
use super::{attachments, MapError, ResourceMapping};
use crate::fhir::Id;
use crate::store::{Conn, StoreError, Tx};
use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

static SPECS: &[Spec] = &[
    Spec {
        allowed: &[
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
        required: true,
        ..Spec::new(&[Seg::Key("status")], Kind::Text("status"))
    },
    Spec::new(
        &[Seg::Key("category"), Seg::First],
        Kind::Concept {
            code: "category_code",
            system: Some("category_system"),
            display: None,
        },
    ),
    Spec {
        required: true,
        ..Spec::new(
            &[Seg::Key("code")],
            Kind::Concept {
                code: "code",
                system: Some("code_system"),
                display: Some("code_display"),
            },
        )
    },
    Spec {
        required: true,
        ..Spec::new(
            &[Seg::Key("subject")],
            Kind::Ref {
                column: "patient_id",
                target: "Patient",
                table: "patients",
            },
        )
    },
    Spec::new(
        &[Seg::Key("encounter")],
        Kind::Ref {
            column: "consultation_id",
            target: "Encounter",
            table: "consultations",
        },
    ),
    Spec::new(&[Seg::Key("effectiveDateTime")], Kind::Time("effective_at")),
    Spec::new(&[Seg::Key("issued")], Kind::Time("issued_at")),
    Spec::new(
        &[Seg::Key("performer"), Seg::First, Seg::Key("display")],
        Kind::Text("performer"),
    ),
    Spec::new(&[Seg::Key("conclusion")], Kind::Text("conclusion")),
];

static PARAMS: &[SearchParam] = &[
    patient_param(
        "patient",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        "The subject of the report if a patient",
    ),
    patient_param(
        "subject",
        "http://hl7.org/fhir/SearchParameter/DiagnosticReport-subject",
        "The subject of the report",
    ),
    reference_param(
        "encounter",
        "consultation_id",
        "consultations",
        "Encounter",
        "http://hl7.org/fhir/SearchParameter/clinical-encounter",
        "The Encounter when the order was made",
    ),
    SearchParam {
        name: "status",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "status",
            system: Some("http://hl7.org/fhir/diagnostic-report-status"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/DiagnosticReport-status",
        documentation: "The status of the report",
    },
    SearchParam {
        name: "category",
        kind: ParamKind::Token,
        target: Target::TokenColumns {
            code: "category_code",
            system: "category_system",
        },
        definition: "http://hl7.org/fhir/SearchParameter/DiagnosticReport-category",
        documentation: "Which diagnostic discipline/department created the report",
    },
    SearchParam {
        name: "code",
        kind: ParamKind::Token,
        target: Target::TokenColumns {
            code: "code",
            system: "code_system",
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-code",
        documentation: "The code for the report",
    },
    SearchParam {
        name: "date",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "effective_at",
            end: "effective_at",
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
        documentation: "The clinically relevant time of the report",
    },
    SearchParam {
        name: "issued",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "issued_at",
            end: "issued_at",
        },
        definition: "http://hl7.org/fhir/SearchParameter/DiagnosticReport-issued",
        documentation: "When the report was issued",
    },
];

/// The DiagnosticReport mapping: the declared table, and the report's files.
pub struct DiagnosticReportMapping {
    table: TableMapping,
}

pub fn mapping() -> DiagnosticReportMapping {
    DiagnosticReportMapping {
        table: TableMapping {
            resource_type: "DiagnosticReport",
            table: "medical_tests",
            specs: SPECS,
            params: PARAMS,
            ..TableMapping::BASE
        },
    }
}

#[async_trait]
impl ResourceMapping for DiagnosticReportMapping {
    fn resource_type(&self) -> &'static str {
        self.table.resource_type
    }

    fn table(&self) -> &'static str {
        self.table.table
    }

    fn search_params(&self) -> &'static [SearchParam] {
        PARAMS
    }

    async fn insert(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        fhir_id: &Id,
        resource: &Value,
    ) -> Result<(), MapError> {
        self.table.insert(tx, row_id, fhir_id, resource).await?;
        attachments::store(tx, row_id, resource).await
    }

    async fn update(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        expected_version: Option<i64>,
        resource: &Value,
    ) -> Result<bool, MapError> {
        if !self
            .table
            .update(tx, row_id, expected_version, resource)
            .await?
        {
            return Ok(false);
        }
        attachments::store(tx, row_id, resource).await?;
        Ok(true)
    }

    async fn load(
        &self,
        conn: &mut Conn<'_>,
        row_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Value)>, StoreError> {
        let mut loaded = self.table.load(conn, row_ids).await?;
        attachments::apply(conn, &mut loaded).await?;
        Ok(loaded)
    }
}

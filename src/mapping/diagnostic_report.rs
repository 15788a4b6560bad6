//! DiagnosticReport ⇄ medical_tests, presentedForm ⇄ its file_attachments.

use super::memo::MapMemo;
use super::search::{
    date_precision, patient_param, reference_param, ParamKind, SearchParam, Target,
};
use super::spec::ref_id;
use super::spec::{concept, patient, Kind, Seg, Spec, ENCOUNTER};
use super::table::TableMapping;
use super::{attachments, MapError, ResourceMapping};
use crate::fhir::Id;
use crate::store::{placeholders, Arg, Conn, StoreError, Tx};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

static SPECS: &[Spec] = &[
    Spec::new(&[Seg::Key("status")], Kind::Text("status"))
        .one_of(&[
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
        ])
        .required(),
    Spec::new(
        &[Seg::Key("category"), Seg::First],
        Kind::Concept {
            code: "category_code",
            system: Some("category_system"),
            display: None,
        },
    ),
    concept(&[Seg::Key("code")], "code", "code_system", "code_display").required(),
    patient(&[Seg::Key("subject")]).required(),
    ENCOUNTER,
    Spec::new(&[Seg::Key("effectiveDateTime")], Kind::Time("effective_at")),
    Spec::new(&[Seg::Key("issued")], Kind::Time("issued_at")),
    Spec::new(
        &[Seg::Key("performer"), Seg::First, Seg::Key("display")],
        Kind::Text("performer"),
    ),
    Spec::new(&[Seg::Key("conclusion")], Kind::Text("conclusion")),
];

static PARAMS: &[SearchParam] = &[
    crate::mapping::search::CLINICAL_IDENTIFIER,
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
            text: None,
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
            text: Some("code_display"),
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
            start_precision: Some("effective_precision"),
            end_precision: Some("effective_precision"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
        documentation: "The clinically relevant time of the report",
    },
    SearchParam {
        name: "result",
        kind: ParamKind::Reference,
        target: Target::RefIndex {
            resource_type: "Observation",
        },
        definition: "http://hl7.org/fhir/SearchParameter/DiagnosticReport-result",
        documentation: "Link to an atomic result (an Observation of this server)",
    },
    SearchParam {
        name: "issued",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "issued_at",
            end: "issued_at",
            start_precision: None,
            end_precision: None,
        },
        definition: "http://hl7.org/fhir/SearchParameter/DiagnosticReport-issued",
        documentation: "When the report was issued",
    },
];

/// The ids of the local Observations a report's `result` names.
pub fn result_ids(resource: &Value) -> Vec<String> {
    resource
        .get("result")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| ref_id(Some(r), "Observation").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Notes, before a transaction writes anything, that the new Observations `results` are results
/// of the new report `report` (its row id): each is inserted already linked (see
/// [`linked_report`]), and the report's own write has no link to make for it. Linking them
/// afterwards is an UPDATE of every result row, which on PostgreSQL writes each row again with
/// an entry in every index of the table. The report's row is inserted after its results, so the
/// link's foreign key is checked at the commit: on PostgreSQL that key alone (it is deferrable),
/// on SQLite every foreign key of the transaction (`PRAGMA defer_foreign_keys`, which a table's
/// keys cannot be declared for afterwards; the commit fails if any is broken). On PostgreSQL the
/// transaction also tells the result table's trigger that such rows need no touch of their
/// report (migration 11).
pub async fn report_of(tx: &mut Tx, report: Uuid, results: &[String]) -> Result<(), StoreError> {
    if results.is_empty() {
        return Ok(());
    }
    match tx.dialect() {
        crate::store::Dialect::Postgres => {
            tx.queue_once("SET CONSTRAINTS medical_test_results_medical_test_id_fkey DEFERRED")
                .await?;
            // The rows inserted linked need no touch of their report (migration 11).
            tx.queue_once("SELECT set_config('expediente.fhir_results', 'on', true)")
                .await?;
        }
        crate::store::Dialect::Sqlite => tx.queue_once("PRAGMA defer_foreign_keys = ON").await?,
    }
    let memo = tx.memo::<MapMemo>();
    for id in results {
        memo.report_of.insert(id.clone(), report);
    }
    Ok(())
}

/// The report a new result is inserted linked to (see [`report_of`]).
pub fn linked_report(tx: &mut Tx, fhir_id: &str) -> Option<Uuid> {
    let memo = tx.memo::<MapMemo>();
    let report = memo.report_of.remove(fhir_id)?;
    memo.linked.insert(fhir_id.to_owned(), report);
    Some(report)
}

/// Links the results the report names (those kept in medical_test_results) to its medical test,
/// and unlinks those it no longer names.
async fn link_results(tx: &mut Tx, report: Uuid, resource: &Value) -> Result<(), StoreError> {
    let ids = result_ids(resource);
    let mut unlink =
        "UPDATE medical_test_results SET medical_test_id = NULL WHERE medical_test_id = ?"
            .to_owned();
    let mut args: Vec<Arg> = vec![report.into()];
    if !ids.is_empty() {
        unlink.push_str(&format!(
            " AND fhir_id NOT IN ({})",
            placeholders(ids.len())
        ));
        args.extend(ids.iter().map(|i| Arg::from(i.as_str())));
    }
    // A report this transaction inserted has no results linked to it yet.
    if !tx.is_new(report) {
        tx.queue(&unlink, &args).await?;
    }
    // The result parameter finds the report by every Observation it names.
    if !tx.is_new(report) {
        tx.queue(
            "DELETE FROM search_strings WHERE row_id = ? AND resource_type = 'DiagnosticReport' AND param = 'result'",
            &[report.into()],
        )
        .await?;
    }
    for id in &ids {
        tx.insert_detached(
            "search_strings",
            &super::search::STRING_ROW,
            &[
                "DiagnosticReport".into(),
                report.into(),
                "result".into(),
                id.as_str().into(),
                id.as_str().into(),
            ],
        )
        .await?;
    }
    // Results inserted by this transaction already linked to this report (see
    // [`report_of`]) need no UPDATE.
    let ids: Vec<&String> = ids
        .iter()
        .filter(|i| {
            tx.peek_memo::<MapMemo>()
                .and_then(|m| m.linked.get(i.as_str()))
                != Some(&report)
        })
        .collect();
    if !ids.is_empty() {
        let mut args: Vec<Arg> = vec![report.into()];
        args.extend(ids.iter().map(|i| Arg::from(i.as_str())));
        args.push(report.into());
        tx.queue(
            &format!(
                "UPDATE medical_test_results SET medical_test_id = ? WHERE fhir_id IN ({}) AND deleted_at IS NULL \
                 AND (medical_test_id IS NULL OR medical_test_id <> ?)",
                placeholders(ids.len())
            ),
            &args,
        )
        .await?;
    }
    Ok(())
}

/// Serves `result` as sent while the results linked to the medical test are the ones it names;
/// otherwise (the clinic linked or unlinked a result) references to unlinked results go and the
/// newly linked ones are added, in the order of their time.
async fn apply_results(
    conn: &mut Conn<'_>,
    loaded: &mut [(Uuid, Value)],
) -> Result<(), StoreError> {
    if loaded.is_empty() {
        return Ok(());
    }
    let reports: Vec<Arg> = loaded.iter().map(|(id, _)| Arg::Uuid(*id)).collect();
    let mut linked: HashMap<Uuid, Vec<String>> = HashMap::new();
    for r in conn
        .fetch_all(
            &format!(
                "SELECT medical_test_id, fhir_id FROM medical_test_results WHERE medical_test_id IN ({}) \
                 AND deleted_at IS NULL ORDER BY effective_at, fhir_id",
                placeholders(reports.len())
            ),
            &reports,
        )
        .await?
    {
        linked
            .entry(r.uuid("medical_test_id")?)
            .or_default()
            .push(r.string("fhir_id")?);
    }
    let named: Vec<String> = loaded.iter().flat_map(|(_, r)| result_ids(r)).collect();
    let mut results: HashSet<String> = HashSet::new();
    if !named.is_empty() {
        let args: Vec<Arg> = named.iter().map(|i| Arg::from(i.as_str())).collect();
        for r in conn
            .fetch_all(
                &format!(
                    "SELECT fhir_id FROM medical_test_results WHERE fhir_id IN ({}) AND deleted_at IS NULL",
                    placeholders(args.len())
                ),
                &args,
            )
            .await?
        {
            results.insert(r.string("fhir_id")?);
        }
    }
    for (id, resource) in loaded.iter_mut() {
        let links = linked.remove(id).unwrap_or_default();
        let kept = result_ids(resource);
        let kept_linked: HashSet<&String> = kept.iter().filter(|k| results.contains(*k)).collect();
        let link_set: HashSet<&String> = links.iter().collect();
        if kept_linked == link_set {
            continue;
        }
        let Some(obj) = resource.as_object_mut() else {
            continue;
        };
        let mut list: Vec<Value> = obj
            .get("result")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                ref_id(Some(r), "Observation")
                    .is_none_or(|i| !results.contains(i) || link_set.contains(&i.to_owned()))
            })
            .collect();
        for l in &links {
            if !kept.contains(l) {
                list.push(json!({"reference": format!("Observation/{l}")}));
            }
        }
        if list.is_empty() {
            obj.remove("result");
        } else {
            obj.insert("result".into(), Value::Array(list));
        }
        let order = super::element_order("DiagnosticReport");
        *resource = Value::Object(super::fields::ordered(std::mem::take(obj), &order));
    }
    Ok(())
}

/// The DiagnosticReport mapping: the declared table, its results and its files.
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
            derived: &[("effective_precision", |r| {
                date_precision(r.get("effectiveDateTime"))
            })],
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
        let written = self
            .table
            .insert_values(tx, row_id, fhir_id, resource, &[])
            .await?;
        let column = |name: &str| {
            written
                .iter()
                .find(|(c, _)| *c == name)
                .map(|(_, v)| v.clone())
        };
        let owner = column("patient_id").zip(column("consultation_id"));
        link_results(tx, row_id, resource).await?;
        attachments::store(tx, row_id, owner, resource).await
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
        link_results(tx, row_id, resource).await?;
        attachments::store(tx, row_id, None, resource).await?;
        Ok(true)
    }

    async fn load(
        &self,
        conn: &mut Conn<'_>,
        row_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Value)>, StoreError> {
        let mut loaded = self.table.load(conn, row_ids).await?;
        apply_results(conn, &mut loaded).await?;
        attachments::apply(conn, &mut loaded).await?;
        Ok(loaded)
    }
}

//! Observation ⇄ two tables: vital signs in vital_signs (see [`super::vitals`]) and every other
//! Observation (laboratory, social history, surveys, exams...) in medical_test_results. The view
//! `observations` unites both for reads, history and search; writes go to the table the
//! resource belongs in.

use super::search::{
    date_precision, patient_param, reference_param, ParamKind, SearchParam, Target,
};
use super::spec::{concept, parse_time, patient, practitioner, Kind, Seg, Spec, ENCOUNTER};
use super::table::TableMapping;
use super::{vitals, MapError, ResourceMapping};
use crate::fhir::{Id, Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, StoreError, Tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

static SPECS: &[Spec] = &[
    Spec::new(&[Seg::Key("status")], Kind::Text("status"))
        .one_of(vitals::STATUSES)
        .required(),
    Spec::new(
        &[Seg::Key("category"), Seg::First],
        Kind::FixedConcept {
            code: "category_code",
            system: CATEGORY,
        },
    ),
    concept(&[Seg::Key("code")], "code", "code_system", "code_display"),
    Spec::new(
        &[Seg::Key("code"), Seg::Key("text")],
        Kind::Text("code_text"),
    ),
    patient(&[Seg::Key("subject")]),
    ENCOUNTER,
    Spec::new(&[Seg::Key("issued")], Kind::Time("issued_at")),
    practitioner(&[Seg::Key("performer"), Seg::First], "performer_id"),
    Spec::new(
        &[Seg::Key("valueQuantity"), Seg::Key("value")],
        Kind::Decimal("value_quantity"),
    ),
    Spec::new(
        &[Seg::Key("valueQuantity"), Seg::Key("code")],
        Kind::Text("value_unit"),
    ),
    Spec::new(
        &[Seg::Key("valueQuantity"), Seg::Key("system")],
        Kind::Text("value_unit_system"),
    ),
    Spec::new(
        &[Seg::Key("valueCodeableConcept")],
        Kind::Concept {
            code: "value_code",
            system: None,
            display: None,
        },
    ),
    Spec::new(&[Seg::Key("valueString")], Kind::Text("value_string")),
    Spec::new(&[Seg::Key("valueBoolean")], Kind::Bool("value_boolean")),
    Spec::new(&[Seg::Key("valueInteger")], Kind::Int("value_integer")),
    Spec::new(
        &[
            Seg::Key("referenceRange"),
            Seg::First,
            Seg::Key("low"),
            Seg::Key("value"),
        ],
        Kind::Decimal("reference_low"),
    ),
    Spec::new(
        &[
            Seg::Key("referenceRange"),
            Seg::First,
            Seg::Key("high"),
            Seg::Key("value"),
        ],
        Kind::Decimal("reference_high"),
    ),
    Spec::new(
        &[Seg::Key("interpretation"), Seg::First],
        Kind::Concept {
            code: "interpretation_code",
            system: None,
            display: None,
        },
    ),
];

/// value[x] ⇄ value_type.
const VALUE_TYPES: &[(&str, &str)] = &[
    ("valueQuantity", "quantity"),
    ("valueString", "string"),
    ("valueCodeableConcept", "codeable-concept"),
    ("valueBoolean", "boolean"),
    ("valueInteger", "integer"),
    ("valueRange", "range"),
    ("valueRatio", "ratio"),
    ("valueSampledData", "sampled-data"),
    ("valueTime", "time"),
    ("valueDateTime", "date-time"),
    ("valuePeriod", "period"),
];

fn value_type(r: &Value) -> Arg {
    Arg::Text(
        VALUE_TYPES
            .iter()
            .find(|(k, _)| r.get(*k).is_some())
            .map(|(_, t)| (*t).to_owned()),
    )
}

fn time_at(r: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let mut v = r;
    for k in path {
        v = v.get(*k)?;
    }
    parse_time(v.as_str()?)
}

/// The value[x] types without columns of their own (Range, Ratio, SampledData, Period, time,
/// dateTime), as their JSON.
fn value_json(r: &Value) -> Arg {
    const KEYS: &[&str] = &[
        "valueRange",
        "valueRatio",
        "valueSampledData",
        "valuePeriod",
        "valueTime",
        "valueDateTime",
    ];
    Arg::OptJson(KEYS.iter().find_map(|k| r.get(*k)).cloned())
}

/// effective[x]: the start of a dateTime, an instant or a Period.
fn effective_at(r: &Value) -> Arg {
    Arg::Timestamp(
        time_at(r, &["effectiveDateTime"])
            .or_else(|| time_at(r, &["effectiveInstant"]))
            .or_else(|| time_at(r, &["effectivePeriod", "start"])),
    )
}

/// The end of an effectivePeriod.
fn effective_end(r: &Value) -> Arg {
    Arg::Timestamp(time_at(r, &["effectivePeriod", "end"]))
}

static PARAMS: &[SearchParam] = &[
    crate::mapping::search::CLINICAL_IDENTIFIER,
    patient_param(
        "patient",
        "http://hl7.org/fhir/SearchParameter/clinical-patient",
        "The subject that the observation is about (if patient)",
    ),
    patient_param(
        "subject",
        "http://hl7.org/fhir/SearchParameter/Observation-subject",
        "The subject that the observation is about",
    ),
    reference_param(
        "encounter",
        "consultation_id",
        "consultations",
        "Encounter",
        "http://hl7.org/fhir/SearchParameter/clinical-encounter",
        "Encounter related to the observation",
    ),
    reference_param(
        "performer",
        "performer_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/Observation-performer",
        "Who performed the observation",
    ),
    SearchParam {
        name: "code",
        kind: ParamKind::Token,
        target: Target::ObservationCode { components: false },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-code",
        documentation: "The code of the observation type (any of its codings)",
    },
    SearchParam {
        name: "combo-code",
        kind: ParamKind::Token,
        target: Target::ObservationCode { components: true },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-combo-code",
        documentation: "The code of the observation type or component type",
    },
    SearchParam {
        name: "category",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "category_code",
            system: Some(CATEGORY),
        },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-category",
        documentation: "The classification of the type of observation",
    },
    SearchParam {
        name: "date",
        kind: ParamKind::Date,
        target: Target::Period {
            start: "effective_at",
            end: "effective_end",
            start_precision: Some("effective_precision"),
            end_precision: Some("effective_end_precision"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/clinical-date",
        documentation: "Obtained date/time (effective[x])",
    },
    SearchParam {
        name: "status",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "status",
            system: Some("http://hl7.org/fhir/observation-status"),
        },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-status",
        documentation: "The status of the observation",
    },
    SearchParam {
        name: "value-quantity",
        kind: ParamKind::Quantity,
        target: Target::Quantity {
            value: "value_quantity",
            system: "value_unit_system",
            code: "value_unit",
        },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-value-quantity",
        documentation: "The value of the observation, if it is a Quantity",
    },
    SearchParam {
        name: "code-value-quantity",
        kind: ParamKind::Composite,
        target: Target::CodeValueQuantity {
            top: true,
            components: false,
        },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-code-value-quantity",
        documentation:
            "Code and quantity value of the observation (code$[prefix]number|system|unit)",
    },
    SearchParam {
        name: "component-code-value-quantity",
        kind: ParamKind::Composite,
        target: Target::CodeValueQuantity {
            top: false,
            components: true,
        },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-component-code-value-quantity",
        documentation: "Code and quantity value of one component",
    },
    SearchParam {
        name: "combo-code-value-quantity",
        kind: ParamKind::Composite,
        target: Target::CodeValueQuantity {
            top: true,
            components: true,
        },
        definition: "http://hl7.org/fhir/SearchParameter/Observation-combo-code-value-quantity",
        documentation: "Code and quantity value of the observation or of one component",
    },
];

/// The Observation mapping over both tables.
pub struct ObservationMapping {
    results: TableMapping,
}

impl ObservationMapping {
    pub fn new() -> ObservationMapping {
        ObservationMapping {
            results: TableMapping {
                resource_type: "Observation",
                table: "medical_test_results",
                specs: SPECS,
                params: PARAMS,
                derived: &[
                    ("value_type", value_type),
                    ("value_json", value_json),
                    ("effective_at", effective_at),
                    ("effective_end", effective_end),
                    ("effective_precision", |r| {
                        date_precision(
                            r.get("effectiveDateTime")
                                .or_else(|| r.get("effectivePeriod").and_then(|p| p.get("start"))),
                        )
                    }),
                    ("effective_end_precision", |r| {
                        match r.get("effectivePeriod") {
                            Some(p) if p.get("start").is_some() && p.get("end").is_none() => {
                                Arg::Text(Some("open".into()))
                            }
                            Some(p) => date_precision(p.get("end")),
                            None => Arg::Text(None),
                        }
                    }),
                ],
                ..TableMapping::BASE
            },
        }
    }
}

impl Default for ObservationMapping {
    fn default() -> Self {
        ObservationMapping::new()
    }
}

/// The codings of `code` (param `code`) and of the components' codes (`component-code`), with
/// their systems, for the code and combo-code parameters. The coding the row's own columns hold
/// (the first coding of a result; the LOINC code of a vital sign, `vital`) is searched through
/// those columns and not repeated here: the index holds the other codings only.
async fn index_codes(
    tx: &mut Tx,
    row_id: Uuid,
    resource: &Value,
    vital: bool,
) -> Result<(), StoreError> {
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM search_strings WHERE row_id = ? AND resource_type = 'Observation'",
            &[row_id.into()],
        )
        .await?;
    }
    for (param, (system, code)) in coding_rows(resource, vital) {
        tx.insert_detached(
            "search_strings",
            &super::search::STRING_ROW,
            &[
                "Observation".into(),
                row_id.into(),
                param.into(),
                system.into(),
                code.into(),
            ],
        )
        .await?;
    }
    index_component_quantities(tx, row_id, resource).await
}

/// The `(system, code)` of each coding of a CodeableConcept that has a code.
fn codings(concept: Option<&Value>) -> Vec<(String, String)> {
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let code = c.get("code")?.as_str()?;
                    let system = c.get("system").and_then(Value::as_str).unwrap_or("");
                    Some((system.to_owned(), code.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The index rows of [`index_codes`]: parameter and coding, sorted, each once.
fn coding_rows(resource: &Value, vital: bool) -> Vec<(&'static str, (String, String))> {
    let primary: Option<(String, String)> = if vital {
        super::vital_data::table()
            .measurement_of(resource.get("code"))
            .map(|m| (super::vital_data::LOINC.to_owned(), m.code.clone()))
    } else {
        let first = resource.pointer("/code/coding/0");
        first
            .and_then(|c| c.get("code"))
            .and_then(Value::as_str)
            .map(|code| {
                let system = first
                    .and_then(|c| c.get("system"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (system.to_owned(), code.to_owned())
            })
    };
    let mut rows: Vec<(&str, (String, String))> = codings(resource.get("code"))
        .into_iter()
        .filter(|c| Some(c) != primary.as_ref())
        .map(|c| ("code", c))
        .collect();
    if let Some(comps) = resource.get("component").and_then(Value::as_array) {
        for c in comps {
            rows.extend(
                codings(c.get("code"))
                    .into_iter()
                    .map(|c| ("component-code", c)),
            );
        }
    }
    rows.sort();
    rows.dedup();
    rows
}

/// Each component's Quantity under each of its codings, for the composite parameters.
async fn index_component_quantities(
    tx: &mut Tx,
    row_id: Uuid,
    resource: &Value,
) -> Result<(), StoreError> {
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM search_quantities WHERE row_id = ? AND resource_type = 'Observation'",
            &[row_id.into()],
        )
        .await?;
    }
    for c in resource
        .get("component")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(q) = c.get("valueQuantity") else {
            continue;
        };
        let Some(value) = q
            .get("value")
            .filter(|v| v.is_number())
            .map(|v| v.to_string())
            .filter(|v| crate::store::parse_decimal(v).is_some())
        else {
            continue;
        };
        let unit = |k: &str| q.get(k).and_then(Value::as_str).map(str::to_owned);
        for (system, code) in codings(c.get("code")) {
            tx.insert_detached(
                "search_quantities",
                &super::search::QUANTITY_ROW,
                &[
                    "Observation".into(),
                    row_id.into(),
                    "component".into(),
                    system.into(),
                    code.into(),
                    Arg::Decimal(Some(value.clone())),
                    unit("system").into(),
                    unit("code").into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl ResourceMapping for ObservationMapping {
    fn resource_type(&self) -> &'static str {
        "Observation"
    }

    fn table(&self) -> &'static str {
        "observations"
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
        let vital = match vitals::classify(resource) {
            Some(c) => {
                vitals::insert(tx, row_id, fhir_id, resource, &c).await?;
                true
            }
            None => {
                let also: Vec<(&'static str, Arg)> =
                    super::diagnostic_report::linked_report(tx, fhir_id.as_str())
                        .map(|report| vec![("medical_test_id", report.into())])
                        .unwrap_or_default();
                self.results
                    .insert_values(tx, row_id, fhir_id, resource, &also)
                    .await?;
                false
            }
        };
        index_codes(tx, row_id, resource, vital).await?;
        Ok(())
    }

    async fn update(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        expected_version: Option<i64>,
        resource: &Value,
    ) -> Result<bool, MapError> {
        let vital = vitals::is_vital(&mut Conn::Tx(tx), row_id).await?;
        let done = if vital {
            let Some(c) = vitals::classify(resource) else {
                return Err(MapError::Unprocessable(vec![Issue::error(
                    IssueType::Processing,
                    "this Observation is held in the vital-signs record, which needs a Patient subject, a dateTime and a value in a unit it converts; create a new Observation for anything else",
                )
                .at("Observation")]));
            };
            vitals::update(tx, row_id, expected_version, resource, &c).await?
        } else {
            self.results
                .update(tx, row_id, expected_version, resource)
                .await?
        };
        if done {
            index_codes(tx, row_id, resource, vital).await?;
        }
        Ok(done)
    }

    async fn soft_delete(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        version_id: i64,
    ) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
        if vitals::is_vital(&mut Conn::Tx(tx), row_id).await? {
            vitals::soft_delete(tx, row_id, version_id).await
        } else {
            super::soft_delete_row(tx, "medical_test_results", row_id, version_id).await
        }
    }

    async fn load(
        &self,
        conn: &mut Conn<'_>,
        row_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Value)>, StoreError> {
        if row_ids.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<Arg> = row_ids.iter().map(|u| Arg::Uuid(*u)).collect();
        let vital: Vec<Uuid> = conn
            .fetch_all(
                &format!(
                    "SELECT id FROM vital_sign_observations WHERE id IN ({})",
                    placeholders(ids.len())
                ),
                &ids,
            )
            .await?
            .iter()
            .map(|r| r.uuid("id"))
            .collect::<Result<_, _>>()?;
        let rest: Vec<Uuid> = row_ids
            .iter()
            .filter(|id| !vital.contains(id))
            .copied()
            .collect();
        let mut out = vitals::load(conn, &vital).await?;
        out.extend(self.results.load(conn, &rest).await?);
        Ok(out)
    }
}

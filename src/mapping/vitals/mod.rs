//! Vital-sign Observations ⇄ vital_signs, one wide row per measurement session, and
//! vital_sign_observations, which gives each measured Observation its identity, version, soft
//! delete and the leftovers its columns cannot hold (the lossless rule of [`super::fields`]).
//!
//! An Observation is stored here when its code is a measurement of `mappings/vital-signs.json`,
//! its subject is a Patient of this server, its time (if any) is a dateTime and its value a
//! Quantity in a unit the column takes (blood pressure: its systolic and diastolic components).
//! Everything else goes to medical_test_results. A new Observation joins the session row of the
//! same patient, encounter, performer, time and status when that row lacks this measurement; an
//! update or delete changes only its own columns, and moves the measurement to a row of its own
//! when its shared facts change while other measurements share the row.

use super::fields::{ordered, resource_head, resource_rest};
use super::memo::MapMemo;
use super::spec::{parse_time, ref_id};
use super::vital_data::{same_number, table, Measurement, LOINC, UCUM};
use super::MapError;
use crate::fhir::{instant, Id, Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, Dialect, Held, Row, StoreError, Tx};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

mod rows;
mod session;

pub use rows::{insert, is_vital, load, soft_delete, update};
use session::*;
pub use session::{Made, Sessions};

/// The status codes the CHECKs of vital_signs.status and medical_test_results.status accept
/// (every Observation status).
pub(super) const STATUSES: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];

/// The elements the columns of vital_signs rebuild.
pub(super) const COLUMN_KEYS: &[&str] = &[
    "status",
    "code",
    "subject",
    "encounter",
    "performer",
    "effectiveDateTime",
    "valueQuantity",
    "component",
];

/// What the columns say about one vital-sign Observation.
#[derive(Debug, Clone)]
pub struct Cols {
    measurement: &'static Measurement,
    status: String,
    patient: String,
    encounter: Option<String>,
    performer: Option<String>,
    effective: Option<DateTime<Utc>>,
    /// The precision of effectiveDateTime when it is a date (`year`, `month`, `day`).
    precision: Arg,
    /// One per slot of the measurement (its value, or its components in order).
    values: Vec<Option<String>>,
}

/// The columns a resource would fill, or `None` when it is not a vital sign this table can hold.
pub fn classify(resource: &Value) -> Option<Cols> {
    let m = table().measurement_of(resource.get("code"))?;
    let obj = resource.as_object()?;
    let value_keys: Vec<&String> = obj.keys().filter(|k| k.starts_with("value")).collect();
    if obj
        .keys()
        .any(|k| k.starts_with("effective") && k != "effectiveDateTime")
    {
        return None;
    }
    let status = resource.get("status")?.as_str()?;
    if !STATUSES.contains(&status) {
        return None;
    }
    let patient = ref_id(resource.get("subject"), "Patient")?;
    let effective = match resource.get("effectiveDateTime") {
        Some(v) => Some(parse_time(v.as_str()?)?),
        None => None,
    };
    let precision = super::search::date_precision(resource.get("effectiveDateTime"));
    let values: Vec<Option<String>> = match &m.value {
        Some(slot) => {
            if value_keys.len() != 1 || value_keys[0] != "valueQuantity" {
                return None;
            }
            vec![Some(slot.column_value(resource.get("valueQuantity"))?)]
        }
        None => {
            if !value_keys.is_empty() {
                return None;
            }
            let comps = resource.get("component")?.as_array()?;
            let values: Vec<Option<String>> = m
                .components
                .iter()
                .map(|slot| {
                    let c = comps.iter().find(|c| {
                        table().measurement_code_is(c.get("code"), slot.code.as_deref())
                    })?;
                    slot.column_value(c.get("valueQuantity"))
                })
                .collect();
            if values.iter().all(Option::is_none) {
                return None;
            }
            values
        }
    };
    Some(Cols {
        measurement: m,
        precision,
        status: status.to_owned(),
        patient: patient.to_owned(),
        encounter: ref_id(resource.get("encounter"), "Encounter").map(str::to_owned),
        performer: first_performer(resource.get("performer")),
        effective,
        values,
    })
}

pub(super) fn first_performer(v: Option<&Value>) -> Option<String> {
    ref_id(v.and_then(|p| p.get(0)), "Practitioner").map(str::to_owned)
}

pub(super) fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut c = json!({"system": system, "code": code});
    if let Some(d) = display {
        c["display"] = Value::String(d.to_owned());
    }
    c
}

pub(super) fn quantity(value: &str, unit: &str, ucum: &str) -> Option<Value> {
    Some(json!({
        "value": Value::Number(value.parse().ok()?),
        "unit": unit,
        "system": UCUM,
        "code": ucum,
    }))
}

/// The Observation the columns alone describe (without id and meta).
pub(super) fn rebuild(c: &Cols) -> Map<String, Value> {
    let t = table();
    let m = c.measurement;
    let mut out = Map::new();
    out.insert("status".into(), Value::String(c.status.clone()));
    out.insert(
        "category".into(),
        json!([{"coding": [coding(&t.category.system, &t.category.code, Some(&t.category.display))]}]),
    );
    out.insert(
        "code".into(),
        json!({"coding": [coding(LOINC, &m.code, Some(&m.display))]}),
    );
    out.insert(
        "subject".into(),
        json!({"reference": format!("Patient/{}", c.patient)}),
    );
    if let Some(e) = &c.encounter {
        out.insert(
            "encounter".into(),
            json!({"reference": format!("Encounter/{e}")}),
        );
    }
    if let Some(at) = &c.effective {
        out.insert("effectiveDateTime".into(), Value::String(instant(at)));
    }
    if let Some(p) = &c.performer {
        out.insert(
            "performer".into(),
            json!([{"reference": format!("Practitioner/{p}")}]),
        );
    }
    match &m.value {
        Some(slot) => {
            if let Some(q) = c.values[0]
                .as_deref()
                .and_then(|v| quantity(v, &slot.unit, &slot.ucum))
            {
                out.insert("valueQuantity".into(), q);
            }
        }
        None => {
            let comps: Vec<Value> = m
                .components
                .iter()
                .zip(&c.values)
                .filter_map(|(slot, v)| {
                    let q = quantity(v.as_deref()?, &slot.unit, &slot.ucum)?;
                    Some(json!({
                        "code": {"coding": [coding(LOINC, slot.code.as_deref()?, slot.display.as_deref())]},
                        "valueQuantity": q,
                    }))
                })
                .collect();
            if !comps.is_empty() {
                out.insert("component".into(), Value::Array(comps));
            }
        }
    }
    out
}

pub(super) fn same_value(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_number(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether a kept element still says what the columns say.
pub(super) fn agrees(key: &str, kept: &Value, c: &Cols) -> bool {
    let m = c.measurement;
    match key {
        "status" => kept.as_str() == Some(c.status.as_str()),
        "code" => table()
            .measurement_of(Some(kept))
            .is_some_and(|k| k.key == m.key),
        "subject" => ref_id(Some(kept), "Patient") == Some(c.patient.as_str()),
        "encounter" => ref_id(Some(kept), "Encounter") == c.encounter.as_deref(),
        "performer" => first_performer(Some(kept)) == c.performer,
        "effectiveDateTime" => kept.as_str().and_then(parse_time) == c.effective,
        "valueQuantity" => match &m.value {
            Some(slot) => same_value(&slot.column_value(Some(kept)), &c.values[0]),
            None => false,
        },
        "component" => m.components.iter().zip(&c.values).all(|(slot, v)| {
            let sent = kept.as_array().and_then(|comps| {
                comps
                    .iter()
                    .find(|x| table().measurement_code_is(x.get("code"), slot.code.as_deref()))
            });
            same_value(
                &sent.and_then(|x| slot.column_value(x.get("valueQuantity"))),
                v,
            )
        }),
        _ => true,
    }
}

/// What fhir_extra keeps: every element the columns do not rebuild exactly, and a null for each
/// element the columns would add that the client did not send.
pub(super) fn leftovers(resource: &Value, c: &Cols) -> Map<String, Value> {
    let mut rest = resource_rest(resource);
    // A value a numeric column would give back in another form (1e2 as 100) is kept as sent.
    let reshaped = c
        .values
        .iter()
        .flatten()
        .any(|v| super::spec::Cell::Dec(Some(v.clone())).reshaped_by_numeric());
    if c.effective.is_none() {
        // The row has a time all the same (measured_at defaults to now).
        rest.insert("effectiveDateTime".into(), Value::Null);
    }
    for (k, v) in rebuild(c) {
        match rest.get(&k) {
            Some(orig)
                if *orig == v && !(reshaped && (k == "valueQuantity" || k == "component")) =>
            {
                rest.remove(&k);
            }
            Some(_) => {}
            None => {
                rest.insert(k, Value::Null);
            }
        }
    }
    rest
}

pub(super) fn unprocessable(path: &str, msg: String) -> MapError {
    MapError::Unprocessable(vec![Issue::error(IssueType::Processing, msg).at(path)])
}

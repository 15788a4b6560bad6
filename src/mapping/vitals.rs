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

/// The status codes the vital_signs.status CHECK accepts (every Observation status).
const STATUSES: &[&str] = &[
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
const COLUMN_KEYS: &[&str] = &[
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

fn first_performer(v: Option<&Value>) -> Option<String> {
    ref_id(v.and_then(|p| p.get(0)), "Practitioner").map(str::to_owned)
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut c = json!({"system": system, "code": code});
    if let Some(d) = display {
        c["display"] = Value::String(d.to_owned());
    }
    c
}

fn quantity(value: &str, unit: &str, ucum: &str) -> Option<Value> {
    Some(json!({
        "value": Value::Number(value.parse().ok()?),
        "unit": unit,
        "system": UCUM,
        "code": ucum,
    }))
}

/// The Observation the columns alone describe (without id and meta).
fn rebuild(c: &Cols) -> Map<String, Value> {
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

fn same_value(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_number(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether a kept element still says what the columns say.
fn agrees(key: &str, kept: &Value, c: &Cols) -> bool {
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
fn leftovers(resource: &Value, c: &Cols) -> Map<String, Value> {
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

fn unprocessable(path: &str, msg: String) -> MapError {
    MapError::Unprocessable(vec![Issue::error(IssueType::Processing, msg).at(path)])
}

/// The row ids the references name.
struct Keys {
    patient: Uuid,
    encounter: Option<Uuid>,
    performer: Option<Uuid>,
}

async fn row_of(tx: &mut Tx, table: &str, fhir_id: &str) -> Result<Option<Uuid>, StoreError> {
    super::memo::row_by_fhir_id(tx, table, fhir_id).await
}

async fn keys(tx: &mut Tx, c: &Cols) -> Result<Keys, MapError> {
    let patient = row_of(tx, "patients", &c.patient).await?.ok_or_else(|| {
        unprocessable(
            "Observation.subject",
            format!("Patient/{} does not exist on this server", c.patient),
        )
    })?;
    let encounter = match &c.encounter {
        Some(e) => Some(row_of(tx, "consultations", e).await?.ok_or_else(|| {
            unprocessable(
                "Observation.encounter",
                format!("Encounter/{e} does not exist on this server"),
            )
        })?),
        None => None,
    };
    let performer = match &c.performer {
        Some(p) => Some(row_of(tx, "users", p).await?.ok_or_else(|| {
            unprocessable(
                "Observation.performer[0]",
                format!("Practitioner/{p} does not exist on this server"),
            )
        })?),
        None => None,
    };
    Ok(Keys {
        patient,
        encounter,
        performer,
    })
}

fn value_args(c: &Cols) -> Vec<Arg> {
    c.values.iter().map(|v| Arg::Decimal(v.clone())).collect()
}

fn set_columns(m: &Measurement) -> String {
    m.slots()
        .iter()
        .map(|s| format!("{} = ?", s.column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every value column of vital_signs, in the order of `mappings/vital-signs.json`: a new
/// session row names them all, so that its INSERT is one SQL whatever it holds first, and the
/// later measurements of its session fill their columns in while it waits to be sent
/// ([`Tx::amend`]) instead of each updating the row after it.
fn value_columns() -> &'static [String] {
    static COLUMNS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let mut out: Vec<String> = Vec::new();
        for m in &table().measurements {
            for s in m.slots() {
                if !out.contains(&s.column) {
                    out.push(s.column.clone());
                }
            }
        }
        out
    });
    &COLUMNS
}

/// The values before the value columns in a new session row's INSERT.
const HEAD_ARGS: usize = 7;

/// The columns of a new session row: [`HEAD_ARGS`] of them, then every value column.
fn session_columns() -> &'static [&'static str] {
    static COLUMNS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut out = vec![
            "id",
            "patient_id",
            "consultation_id",
            "performer_id",
            "status",
            "measured_at",
            "measured_at_precision",
        ];
        out.extend(value_columns().iter().map(String::as_str));
        out
    });
    &COLUMNS
}

/// The session rows a transaction made, by session (patient, encounter, performer, time,
/// precision and status), with the measurements put in each: the next measurement of a session
/// goes to one of them without a lookup.
pub type Sessions = HashMap<String, Vec<Made>>;

/// A session row this transaction made: the measurements put in it, and its INSERT while that
/// waits to be sent.
#[derive(Clone)]
pub struct Made {
    id: Uuid,
    filled: Vec<String>,
    held: Held,
}

/// Puts the measurement in session row `id` (guarded for the rest of the write).
async fn join(tx: &mut Tx, c: &Cols, id: Uuid) -> Result<Uuid, StoreError> {
    super::guard::guard_vitals(tx, id).await?;
    let mut args = value_args(c);
    args.push(id.into());
    tx.queue(
        &format!(
            "UPDATE vital_signs SET {} WHERE id = ?",
            set_columns(c.measurement)
        ),
        &args,
    )
    .await?;
    Ok(id)
}

/// Puts the measurement in the INSERT of a session row that has not been sent yet; `false` when
/// it has.
fn fill_in(tx: &mut Tx, c: &Cols, held: Held) -> bool {
    let cols = value_columns();
    let places: Option<Vec<usize>> = c
        .measurement
        .slots()
        .iter()
        .map(|s| cols.iter().position(|x| *x == s.column))
        .collect();
    let Some(places) = places else {
        return false;
    };
    places
        .iter()
        .zip(&c.values)
        .all(|(at, v)| tx.amend(held, HEAD_ARGS + at, Arg::Decimal(v.clone())))
}

/// The session row this measurement goes to, and whether it is guarded for the rest of the
/// write: a live row of the same patient, encounter, performer, time and status without this
/// measurement, or a new one.
async fn place(tx: &mut Tx, c: &Cols, k: &Keys) -> Result<(Uuid, bool), StoreError> {
    let m = c.measurement;
    // Session rows this transaction made, by their session, with the measurements put in each:
    // the next measurement of the session goes to one of them without a lookup.
    let made_key = c.effective.map(|at| {
        format!(
            "{}:{:?}:{:?}:{}:{:?}:{}",
            k.patient,
            k.encounter,
            k.performer,
            at.to_rfc3339(),
            c.precision,
            c.status
        )
    });
    if let Some(key) = &made_key {
        let made = tx
            .memo::<MapMemo>()
            .sessions
            .entry(key.clone())
            .or_default();
        if let Some(row) = made.iter_mut().find(|r| !r.filled.contains(&m.key)) {
            row.filled.push(m.key.clone());
            let (id, held) = (row.id, row.held);
            // Written with the row's INSERT when that still waits (every value of one
            // measurement goes, or none: the INSERT has been sent or it has not).
            if fill_in(tx, c, held) {
                return Ok((id, false));
            }
            return Ok((join(tx, c, id).await?, true));
        }
    }
    // A patient this transaction inserted has no session rows but the ones it made, all
    // remembered above: nothing older to look for.
    if let Some(at) = c.effective.filter(|_| !tx.is_new(k.patient)) {
        let same = match tx.dialect() {
            Dialect::Sqlite => "IS",
            Dialect::Postgres => "IS NOT DISTINCT FROM",
        };
        let empty: Vec<String> = m
            .slots()
            .iter()
            .map(|s| format!("v.{} IS NULL", s.column))
            .collect();
        let sql = format!(
            "SELECT v.id FROM vital_signs v WHERE v.patient_id = ? AND v.consultation_id {same} ? AND v.performer_id {same} ? \
             AND v.measured_at = ? AND v.measured_at_precision {same} ? AND v.status = ? AND v.deleted_at IS NULL AND {} \
             AND NOT EXISTS (SELECT 1 FROM vital_sign_observations o WHERE o.vital_sign_id = v.id AND o.measurement = ?) \
             ORDER BY v.id LIMIT 1",
            empty.join(" AND ")
        );
        let found = tx
            .fetch_optional(
                &sql,
                &[
                    k.patient.into(),
                    Arg::OptUuid(k.encounter),
                    Arg::OptUuid(k.performer),
                    Arg::Timestamp(Some(at)),
                    c.precision.clone(),
                    c.status.clone().into(),
                    m.key.clone().into(),
                ],
            )
            .await?;
        if let Some(r) = found {
            return Ok((join(tx, c, r.uuid("id")?).await?, true));
        }
    }
    let id = Uuid::new_v4();
    super::guard::guard_vitals(tx, id).await?;
    let mut args: Vec<Arg> = vec![
        id.into(),
        k.patient.into(),
        Arg::OptUuid(k.encounter),
        Arg::OptUuid(k.performer),
        c.status.clone().into(),
        // (A measurement without a time is taken now.)
        Arg::Timestamp(Some(match c.effective {
            Some(at) => at,
            None => tx.now().await?,
        })),
        c.precision.clone(),
    ];
    let cols = value_columns();
    args.extend(cols.iter().map(|col| {
        let own = m.slots().iter().position(|s| s.column == *col);
        Arg::Decimal(own.and_then(|i| c.values[i].clone()))
    }));
    let held = tx
        .insert_held("vital_signs", session_columns(), &args)
        .await?;
    if let Some(key) = made_key {
        tx.memo::<MapMemo>()
            .sessions
            .entry(key)
            .or_default()
            .push(Made {
                id,
                filled: vec![m.key.clone()],
                held,
            });
    }
    Ok((id, true))
}

pub async fn insert(
    tx: &mut Tx,
    row_id: Uuid,
    fhir_id: &Id,
    resource: &Value,
    c: &Cols,
) -> Result<(), MapError> {
    let k = keys(tx, c).await?;
    let (vs, guarded) = place(tx, c, &k).await?;
    let mut args: Vec<Arg> = vec![
        row_id.into(),
        vs.into(),
        c.measurement.key.clone().into(),
        fhir_id.as_str().into(),
        Arg::Json(Value::Object(leftovers(resource, c))),
    ];
    let mut columns = vec![
        "id",
        "vital_sign_id",
        "measurement",
        "fhir_id",
        "fhir_extra",
    ];
    if let Some(t) = tx.stamp(row_id) {
        args.extend([Arg::Timestamp(Some(t)), Arg::Timestamp(Some(t))]);
        columns.extend(["created_at", "updated_at"]);
    }
    tx.insert("vital_sign_observations", &columns, &args)
        .await?;
    if guarded {
        super::guard::unguard_vitals(tx, vs).await?;
    }
    Ok(())
}

/// The stored facts of one vital-sign Observation's row, for updates and deletes.
struct Current {
    vital_sign_id: Uuid,
    measurement: String,
    version_id: i64,
    deleted: bool,
    row_deleted: bool,
    patient: Uuid,
    encounter: Option<Uuid>,
    performer: Option<Uuid>,
    measured_at: DateTime<Utc>,
    status: String,
    /// Whether another measurement of the row has a value.
    others: bool,
}

async fn current(tx: &mut Tx, row_id: Uuid) -> Result<Option<Current>, StoreError> {
    let cols: Vec<String> = table().columns().iter().map(|c| format!("v.{c}")).collect();
    let Some(r) = tx
        .fetch_optional(
            &format!(
                "SELECT o.vital_sign_id, o.measurement, o.version_id, o.deleted_at, v.deleted_at AS row_deleted_at, \
                 v.patient_id, v.consultation_id, v.performer_id, v.measured_at, v.status, {} \
                 FROM vital_sign_observations o JOIN vital_signs v ON v.id = o.vital_sign_id WHERE o.id = ?",
                cols.join(", ")
            ),
            &[row_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let measurement = r.string("measurement")?;
    let mut others = false;
    for m in &table().measurements {
        if m.key == measurement {
            continue;
        }
        for s in m.slots() {
            others |= r.decimal(&s.column)?.is_some();
        }
    }
    Ok(Some(Current {
        vital_sign_id: r.uuid("vital_sign_id")?,
        measurement,
        version_id: r.int("version_id")?,
        deleted: r.opt_timestamp("deleted_at")?.is_some(),
        row_deleted: r.opt_timestamp("row_deleted_at")?.is_some(),
        patient: r.uuid("patient_id")?,
        encounter: r.opt_uuid("consultation_id")?,
        performer: r.opt_uuid("performer_id")?,
        measured_at: r.timestamp("measured_at")?,
        status: r.string("status")?,
        others,
    }))
}

pub async fn is_vital(conn: &mut Conn<'_>, row_id: Uuid) -> Result<bool, StoreError> {
    Ok(conn
        .fetch_optional(
            "SELECT 1 AS x FROM vital_sign_observations WHERE id = ?",
            &[row_id.into()],
        )
        .await?
        .is_some())
}

pub async fn update(
    tx: &mut Tx,
    row_id: Uuid,
    expected_version: Option<i64>,
    resource: &Value,
    c: &Cols,
) -> Result<bool, MapError> {
    let Some(cur) = current(tx, row_id).await? else {
        return Ok(false);
    };
    if expected_version.is_some_and(|v| v != cur.version_id) {
        return Ok(false);
    }
    if cur.measurement != c.measurement.key {
        return Err(unprocessable(
            "Observation.code",
            format!(
                "this Observation is the {} of a vital-signs record; it cannot become another measurement (create a new Observation instead)",
                cur.measurement
            ),
        ));
    }
    let k = keys(tx, c).await?;
    let shared_same = k.patient == cur.patient
        && k.encounter == cur.encounter
        && k.performer == cur.performer
        && c.effective.is_none_or(|e| e == cur.measured_at)
        && c.status == cur.status;
    let m = c.measurement;
    super::guard::guard_vitals(tx, cur.vital_sign_id).await?;
    let vs = if cur.row_deleted || (!shared_same && cur.others) {
        // Its own columns leave the shared row; the measurement moves to a row of its own.
        let nulls: Vec<Arg> = m.slots().iter().map(|_| Arg::Decimal(None)).collect();
        let mut args = nulls;
        args.push(cur.vital_sign_id.into());
        tx.queue(
            &format!("UPDATE vital_signs SET {} WHERE id = ?", set_columns(m)),
            &args,
        )
        .await?;
        place(tx, c, &k).await?.0
    } else {
        let mut args: Vec<Arg> = vec![
            k.patient.into(),
            Arg::OptUuid(k.encounter),
            Arg::OptUuid(k.performer),
            Arg::Timestamp(c.effective),
            Arg::Timestamp(c.effective),
            c.precision.clone(),
            c.status.clone().into(),
        ];
        args.extend(value_args(c));
        args.push(cur.vital_sign_id.into());
        tx.queue(
            &format!(
                "UPDATE vital_signs SET patient_id = ?, consultation_id = ?, performer_id = ?, measured_at = COALESCE(?, measured_at), \
                 measured_at_precision = CASE WHEN ? IS NULL THEN measured_at_precision ELSE ? END, status = ?, {} WHERE id = ?",
                set_columns(m)
            ),
            &args,
        )
        .await?;
        cur.vital_sign_id
    };
    let changed = tx
        .execute(
            "UPDATE vital_sign_observations SET vital_sign_id = ?, fhir_extra = ?, deleted_at = NULL WHERE id = ? AND version_id = ?",
            &[
                vs.into(),
                Arg::Json(Value::Object(leftovers(resource, c))),
                row_id.into(),
                cur.version_id.into(),
            ],
        )
        .await?;
    super::guard::unguard_vitals(tx, cur.vital_sign_id).await?;
    if vs != cur.vital_sign_id {
        super::guard::unguard_vitals(tx, vs).await?;
    }
    Ok(changed == 1)
}

pub async fn soft_delete(
    tx: &mut Tx,
    row_id: Uuid,
    version_id: i64,
) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
    let Some(cur) = current(tx, row_id).await? else {
        return Ok(None);
    };
    if cur.deleted || cur.version_id != version_id {
        return Ok(None);
    }
    if let Some(m) = table().by_key(&cur.measurement) {
        super::guard::guard_vitals(tx, cur.vital_sign_id).await?;
        let mut args: Vec<Arg> = m.slots().iter().map(|_| Arg::Decimal(None)).collect();
        args.push(cur.vital_sign_id.into());
        tx.queue(
            &format!("UPDATE vital_signs SET {} WHERE id = ?", set_columns(m)),
            &args,
        )
        .await?;
        super::guard::unguard_vitals(tx, cur.vital_sign_id).await?;
    }
    super::soft_delete_row(tx, "vital_sign_observations", row_id, version_id).await
}

fn cols_of(r: &Row) -> Result<Cols, StoreError> {
    let key = r.string("measurement")?;
    let m = table()
        .by_key(&key)
        .ok_or_else(|| StoreError::Decode(format!("unknown vital-sign measurement {key}")))?;
    let values = m
        .slots()
        .iter()
        .map(|s| r.decimal(&s.column))
        .collect::<Result<_, _>>()?;
    Ok(Cols {
        measurement: m,
        status: r.string("status")?,
        patient: r.string("patient")?,
        encounter: r.text("encounter")?,
        performer: r.text("performer")?,
        effective: Some(r.timestamp("measured_at")?),
        // Rendering needs no precision: the time as sent is kept with the resource.
        precision: Arg::Text(None),
        values,
    })
}

pub async fn load(conn: &mut Conn<'_>, row_ids: &[Uuid]) -> Result<Vec<(Uuid, Value)>, StoreError> {
    if row_ids.is_empty() {
        return Ok(vec![]);
    }
    let cols: Vec<String> = table().columns().iter().map(|c| format!("v.{c}")).collect();
    let ids: Vec<Arg> = row_ids.iter().map(|u| Arg::Uuid(*u)).collect();
    let sql = format!(
        "SELECT o.id, o.fhir_id, o.version_id, o.updated_at, o.fhir_extra, o.measurement, v.status, v.measured_at, \
         p.fhir_id AS patient, c.fhir_id AS encounter, u.fhir_id AS performer, {} \
         FROM vital_sign_observations o JOIN vital_signs v ON v.id = o.vital_sign_id \
         JOIN patients p ON p.id = v.patient_id \
         LEFT JOIN consultations c ON c.id = v.consultation_id \
         LEFT JOIN users u ON u.id = v.performer_id \
         WHERE o.id IN ({})",
        cols.join(", "),
        placeholders(ids.len())
    );
    let order = super::element_order("Observation");
    let mut out = Vec::new();
    for r in conn.fetch_all(&sql, &ids).await? {
        let c = cols_of(&r)?;
        let (mut res, mut extra) = resource_head("Observation", &r)?;
        for (k, v) in rebuild(&c) {
            match extra.remove(&k) {
                Some(Value::Null) => {}
                Some(kept) if agrees(&k, &kept, &c) => {
                    res.insert(k, kept);
                }
                _ => {
                    res.insert(k, v);
                }
            }
        }
        // A kept element the columns no longer back (the clinic cleared the encounter) goes.
        extra.retain(|k, v| {
            !v.is_null() && (!COLUMN_KEYS.contains(&k.as_str()) || agrees(k, v, &c))
        });
        res.extend(extra);
        out.push((r.uuid("id")?, Value::Object(ordered(res, &order))));
    }
    Ok(out)
}

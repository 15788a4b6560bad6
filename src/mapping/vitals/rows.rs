//! A vital-sign Observation's rows: written, updated, deleted and read back.

use super::*;

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
        crate::mapping::guard::unguard_vitals(tx, vs).await?;
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
    crate::mapping::guard::guard_vitals(tx, cur.vital_sign_id).await?;
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
        rewrite_session(tx, c, &k, cur.vital_sign_id).await?;
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
    crate::mapping::guard::unguard_vitals(tx, cur.vital_sign_id).await?;
    if vs != cur.vital_sign_id {
        crate::mapping::guard::unguard_vitals(tx, vs).await?;
    }
    Ok(changed == 1)
}

/// Rewrites the session row `id` a measurement keeps: its shared columns and the
/// measurement's own.
async fn rewrite_session(tx: &mut Tx, c: &Cols, k: &Keys, id: Uuid) -> Result<(), StoreError> {
    let m = c.measurement;
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
    args.push(id.into());
    tx.queue(
        &format!(
            "UPDATE vital_signs SET patient_id = ?, consultation_id = ?, performer_id = ?, measured_at = COALESCE(?, measured_at), \
             measured_at_precision = CASE WHEN ? IS NULL THEN measured_at_precision ELSE ? END, status = ?, {} WHERE id = ?",
            set_columns(m)
        ),
        &args,
    )
    .await?;
    Ok(())
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
        crate::mapping::guard::guard_vitals(tx, cur.vital_sign_id).await?;
        let mut args: Vec<Arg> = m.slots().iter().map(|_| Arg::Decimal(None)).collect();
        args.push(cur.vital_sign_id.into());
        tx.queue(
            &format!("UPDATE vital_signs SET {} WHERE id = ?", set_columns(m)),
            &args,
        )
        .await?;
        crate::mapping::guard::unguard_vitals(tx, cur.vital_sign_id).await?;
    }
    crate::mapping::soft_delete_row(tx, "vital_sign_observations", row_id, version_id).await
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
    let order = crate::mapping::element_order("Observation");
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

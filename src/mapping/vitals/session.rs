//! The session rows of vital_signs a measurement goes to: a live row of the same patient,
//! encounter, performer, time and status without it, a row the transaction made, or a new one.

use super::*;

/// The row ids the references name.
pub(super) struct Keys {
    pub(super) patient: Uuid,
    pub(super) encounter: Option<Uuid>,
    pub(super) performer: Option<Uuid>,
}

pub(super) async fn row_of(
    tx: &mut Tx,
    table: &str,
    fhir_id: &str,
) -> Result<Option<Uuid>, StoreError> {
    crate::mapping::memo::row_by_fhir_id(tx, table, fhir_id).await
}

pub(super) async fn keys(tx: &mut Tx, c: &Cols) -> Result<Keys, MapError> {
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

pub(super) fn value_args(c: &Cols) -> Vec<Arg> {
    c.values.iter().map(|v| Arg::Decimal(v.clone())).collect()
}

pub(super) fn set_columns(m: &Measurement) -> String {
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
pub(super) fn value_columns() -> &'static [String] {
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
pub(super) const HEAD_ARGS: usize = 7;

/// The columns of a new session row: [`HEAD_ARGS`] of them, then every value column.
pub(super) fn session_columns() -> &'static [&'static str] {
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
    pub(super) id: Uuid,
    pub(super) filled: Vec<String>,
    pub(super) held: Held,
}

/// Puts the measurement in session row `id` (guarded for the rest of the write).
pub(super) async fn join(tx: &mut Tx, c: &Cols, id: Uuid) -> Result<Uuid, StoreError> {
    crate::mapping::guard::guard_vitals(tx, id).await?;
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
pub(super) fn fill_in(tx: &mut Tx, c: &Cols, held: Held) -> bool {
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
pub(super) async fn place(tx: &mut Tx, c: &Cols, k: &Keys) -> Result<(Uuid, bool), StoreError> {
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
        if let Some(id) = stored(tx, c, k, at).await? {
            return Ok((join(tx, c, id).await?, true));
        }
    }
    let (id, held) = insert(tx, c, k).await?;
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

/// A stored live session row of the same patient, encounter, performer, time (`at`) and status
/// that has no value of this measurement yet.
async fn stored(
    tx: &mut Tx,
    c: &Cols,
    k: &Keys,
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    let m = c.measurement;
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
    found.map(|r| r.uuid("id")).transpose()
}

/// A new session row holding this measurement (its INSERT held open for the measurements of
/// the same session that follow), guarded for the rest of the write.
async fn insert(tx: &mut Tx, c: &Cols, k: &Keys) -> Result<(Uuid, Held), StoreError> {
    let m = c.measurement;
    let id = Uuid::new_v4();
    crate::mapping::guard::guard_vitals(tx, id).await?;
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
    Ok((id, held))
}

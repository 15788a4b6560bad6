//! The vital-signs table as data: `mappings/vital-signs.json` says which column of vital_signs
//! holds which LOINC-coded measurement, in which UCUM unit, and which other units are converted on
//! the way in. The table is mirrored into `vital_sign_codes` so that SQL can search by code.

use crate::store::{Arg, Db, StoreError};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;
use std::sync::LazyLock;

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";

#[derive(Debug, Deserialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    pub display: String,
}

/// A unit converted to the column's: value = (sent + add) × multiply ÷ divide.
#[derive(Debug, Deserialize)]
pub struct Conversion {
    pub ucum: String,
    pub add: Option<String>,
    pub multiply: Option<String>,
    pub divide: Option<String>,
}

/// One column holding a value: a measurement's own, or a component's.
#[derive(Debug, Deserialize)]
pub struct Slot {
    pub column: String,
    pub code: Option<String>,
    pub display: Option<String>,
    pub unit: String,
    pub ucum: String,
    #[serde(default)]
    pub accept: Vec<Conversion>,
}

#[derive(Debug, Deserialize)]
pub struct Measurement {
    pub key: String,
    pub code: String,
    pub display: String,
    /// The measurement's own value (absent for blood pressure, which has components).
    #[serde(flatten)]
    pub value: Option<Slot>,
    #[serde(default)]
    pub components: Vec<Slot>,
}

impl Measurement {
    /// The columns of this measurement, its own value first or its components in order.
    pub fn slots(&self) -> Vec<&Slot> {
        match &self.value {
            Some(s) => vec![s],
            None => self.components.iter().collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct VitalSigns {
    pub category: Coding,
    pub measurements: Vec<Measurement>,
}

static TABLE: LazyLock<VitalSigns> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../mappings/vital-signs.json"))
        .expect("mappings/vital-signs.json is checked by a unit test")
});

pub fn table() -> &'static VitalSigns {
    &TABLE
}

impl VitalSigns {
    /// The measurement a CodeableConcept names: its first LOINC coding with a mapped code.
    pub fn measurement_of(&self, code: Option<&Value>) -> Option<&Measurement> {
        let codings = code?.get("coding")?.as_array()?;
        codings.iter().find_map(|c| {
            if c.get("system").and_then(Value::as_str) != Some(LOINC) {
                return None;
            }
            let code = c.get("code").and_then(Value::as_str)?;
            self.measurements.iter().find(|m| m.code == code)
        })
    }

    /// Whether a CodeableConcept has the LOINC coding `code`.
    pub fn measurement_code_is(&self, concept: Option<&Value>, code: Option<&str>) -> bool {
        let Some(code) = code else { return false };
        concept
            .and_then(|c| c.get("coding"))
            .and_then(Value::as_array)
            .is_some_and(|codings| {
                codings.iter().any(|c| {
                    c.get("system").and_then(Value::as_str) == Some(LOINC)
                        && c.get("code").and_then(Value::as_str) == Some(code)
                })
            })
    }

    pub fn by_key(&self, key: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.key == key)
    }

    /// Every measurement column of vital_signs.
    pub fn columns(&self) -> Vec<&str> {
        self.measurements
            .iter()
            .flat_map(|m| m.slots().into_iter().map(|s| s.column.as_str()))
            .collect()
    }
}

impl Slot {
    /// The value of a Quantity in this column's unit, as exact decimal text; `None` when the
    /// Quantity has no value or a unit this column cannot take.
    pub fn column_value(&self, quantity: Option<&Value>) -> Option<String> {
        let q = quantity?;
        let value = q.get("value")?.as_number()?.to_string();
        if q.get("system")
            .and_then(Value::as_str)
            .is_some_and(|s| s != UCUM)
        {
            return None;
        }
        let unit = q.get("code").and_then(Value::as_str)?;
        if unit == self.ucum {
            // Kept exactly as sent when it is in the column's unit.
            return Decimal::from_str(&value)
                .or_else(|_| Decimal::from_scientific(&value))
                .ok()
                .filter(|d| !d.is_sign_negative())
                .map(|_| value);
        }
        let conv = self.accept.iter().find(|c| c.ucum == unit)?;
        let sent = Decimal::from_str(&value)
            .or_else(|_| Decimal::from_scientific(&value))
            .ok()?;
        let dec = |t: &Option<String>, default: Decimal| match t {
            Some(t) => Decimal::from_str(t).ok(),
            None => Some(default),
        };
        let mut v = sent.checked_add(dec(&conv.add, Decimal::ZERO)?)?;
        v = v.checked_mul(dec(&conv.multiply, Decimal::ONE)?)?;
        if conv.divide.is_some() {
            v = v.checked_div(dec(&conv.divide, Decimal::ONE)?)?;
            v = v.round_dp(sent.scale().max(1) + 2);
        }
        let v = v.normalize();
        (!v.is_sign_negative()).then(|| v.to_string())
    }
}

/// Whether two decimal texts are the same number (`36.5` and `36.50` are).
pub fn same_number(a: &str, b: &str) -> bool {
    let p = |t: &str| Decimal::from_str(t).or_else(|_| Decimal::from_scientific(t));
    match (p(a), p(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Writes the table into `vital_sign_codes`: every row upserted, rows no longer in it removed
/// (so that servers starting together on one database do not collide).
pub async fn sync_codes(db: &Db) -> Result<(), StoreError> {
    let t = table();
    let mut rows: Vec<[Option<String>; 7]> = Vec::new();
    for m in &t.measurements {
        let own = m.value.as_ref();
        rows.push([
            Some(m.key.clone()),
            Some("code".into()),
            own.map(|s| s.column.clone()),
            Some(m.code.clone()),
            Some(m.display.clone()),
            own.map(|s| s.unit.clone()),
            own.map(|s| s.ucum.clone()),
        ]);
        for c in &m.components {
            rows.push([
                Some(m.key.clone()),
                Some("component".into()),
                Some(c.column.clone()),
                c.code.clone(),
                c.display.clone(),
                Some(c.unit.clone()),
                Some(c.ucum.clone()),
            ]);
        }
    }
    let mut tx = db.begin().await?;
    let mut keep = Vec::new();
    for [key, part, column, code, display, unit, ucum] in rows {
        keep.push(format!(
            "{}|{}",
            key.clone().unwrap_or_default(),
            code.clone().unwrap_or_default()
        ));
        tx.queue(
            "INSERT INTO vital_sign_codes (measurement, part, column_name, system, code, display, unit, ucum) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (measurement, system, code) DO UPDATE SET part = excluded.part, column_name = excluded.column_name, \
             display = excluded.display, unit = excluded.unit, ucum = excluded.ucum",
            &[
                Arg::Text(key),
                Arg::Text(part),
                Arg::Text(column),
                LOINC.into(),
                Arg::Text(code),
                Arg::Text(display),
                Arg::Text(unit),
                Arg::Text(ucum),
            ],
        )
        .await?;
    }
    let stale = tx
        .fetch_all("SELECT measurement, code FROM vital_sign_codes", &[])
        .await?;
    for r in stale {
        let (m, c) = (r.string("measurement")?, r.string("code")?);
        if !keep.contains(&format!("{m}|{c}")) {
            tx.queue(
                "DELETE FROM vital_sign_codes WHERE measurement = ? AND code = ?",
                &[m.into(), c.into()],
            )
            .await?;
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_names_every_measurement_column_once() {
        let t = table();
        let mut cols = t.columns();
        assert_eq!(cols.len(), 10);
        cols.sort();
        cols.dedup();
        assert_eq!(cols.len(), 10);
        for m in &t.measurements {
            assert!(m.value.is_some() == m.components.is_empty(), "{}", m.key);
            assert!(crate::fhir::Id::parse(&format!(
                "00000000-0000-4000-8000-000000000000.{}",
                m.key
            ))
            .is_some());
        }
        assert_eq!(
            t.measurement_of(Some(&json!({"coding": [{"system": "http://snomed.info/sct", "code": "8867-4"}, {"system": LOINC, "code": "8867-4"}]})))
                .map(|m| m.key.as_str()),
            Some("heart-rate")
        );
        assert!(t
            .measurement_of(Some(
                &json!({"coding": [{"system": LOINC, "code": "55284-4"}]})
            ))
            .is_none());
    }

    #[test]
    fn units_are_converted_exactly_or_refused() {
        let t = table();
        let weight = t.by_key("body-weight").unwrap().slots()[0];
        assert_eq!(
            weight.column_value(Some(
                &json!({"value": 185, "system": UCUM, "code": "[lb_av]"})
            )),
            Some("83.91458845".into())
        );
        assert_eq!(
            weight.column_value(Some(&json!({"value": 70.50, "system": UCUM, "code": "kg"}))),
            Some("70.5".into())
        );
        assert_eq!(
            weight.column_value(Some(&json!({"value": 70, "code": "stone"}))),
            None
        );
        assert_eq!(
            weight.column_value(Some(&json!({"value": -1, "code": "kg"}))),
            None
        );
        let temp = t.by_key("body-temperature").unwrap().slots()[0];
        assert_eq!(
            temp.column_value(Some(&json!({"value": 98.6, "code": "[degF]"}))),
            Some("37".into())
        );
        assert_eq!(
            temp.column_value(Some(&json!({"value": 99.5, "code": "[degF]"}))),
            Some("37.5".into())
        );
        assert_eq!(
            temp.column_value(Some(&json!({"value": 100, "code": "[degF]"}))),
            Some("37.778".into())
        );
        assert!(same_number("36.50", "36.5"));
    }
}

//! Patient ⇄ patients, patient_identifiers, patient_contacts (and search_strings for names).

use super::fields::{self, rebuild, set_str, store, str_of, Field};
use super::search::{reference_param, ParamKind, SearchParam, Target, PERSON_CONTACT};
use super::{MapError, ResourceMapping};
use crate::fhir::{Id, Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, Row, StoreError, Tx};
use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;
use uuid::Uuid;

mod elements;
mod params;

use elements::*;
use params::*;

// ---- the mapping ---------------------------------------------------------------------------

/// The columns of a patients row, as the mapping writes them.
struct PatientCols {
    active: Option<bool>,
    name: (Option<String>, Option<String>),
    gender: Option<String>,
    birth: (Option<NaiveDate>, &'static str),
    telecom: (Option<String>, Option<String>),
    address: AddressCols,
    marital: Option<String>,
    language: Option<String>,
    practitioner: Option<Uuid>,
    extra: Map<String, Value>,
}

pub struct PatientMapping;

impl PatientMapping {
    pub fn new() -> Self {
        LazyLock::force(&DATA);
        PatientMapping
    }

    /// Splits a resource into columns and the rest, after the checks the columns impose.
    async fn split(&self, tx: &mut Tx, resource: &Value) -> Result<PatientCols, MapError> {
        let mut rest = fields::resource_rest(resource);
        // Identifiers and contacts live in their own tables.
        rest.remove("identifier");
        rest.remove("contact");
        if let Some((code, false)) = marital_code(resource.get("maritalStatus")) {
            return Err(MapError::Unprocessable(vec![Issue::error(
                IssueType::Value,
                format!(
                    "maritalStatus code '{}' is not a code of {}",
                    code.escape_default(),
                    DATA.marital_status.system
                ),
            )
            .at("Patient.maritalStatus")]));
        }
        // generalPractitioner maps to a column only when it names a user of this clinic.
        let practitioner = match practitioner_ref(resource.get("generalPractitioner")) {
            Some(id) => tx
                .fetch_optional(
                    "SELECT id FROM users WHERE deleted_at IS NULL AND fhir_id = ?",
                    &[id.into()],
                )
                .await?
                .map(|r| r.uuid("id"))
                .transpose()?,
            None => None,
        };
        let cols = PatientCols {
            active: store::<Active>(&mut rest),
            name: store::<Name>(&mut rest),
            gender: store::<Gender>(&mut rest),
            birth: store::<BirthDate>(&mut rest),
            telecom: store::<Telecom>(&mut rest),
            address: store::<Address>(&mut rest),
            marital: store::<Marital>(&mut rest),
            language: store::<Communication>(&mut rest),
            practitioner,
            extra: rest,
        };
        Ok(cols)
    }

    fn column_args(c: &PatientCols) -> Vec<Arg> {
        vec![
            Arg::Bool(c.active),
            c.name.0.clone().into(),
            c.name.1.clone().into(),
            c.gender.clone().into(),
            c.birth.0.into(),
            c.birth.1.into(),
            c.telecom.0.clone().into(),
            c.telecom.1.clone().into(),
            c.address[0].clone().into(),
            c.address[1].clone().into(),
            c.address[2].clone().into(),
            c.address[3].clone().into(),
            c.address[4].clone().into(),
            c.marital.clone().into(),
            c.language.clone().into(),
            Arg::OptUuid(c.practitioner),
            Arg::Json(Value::Object(c.extra.clone())),
        ]
    }

    /// Replaces the child rows and the name index of a patient.
    async fn write_children(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        resource: &Value,
    ) -> Result<(), MapError> {
        if !tx.is_new(row_id) {
            for sql in [
                "DELETE FROM patient_identifiers WHERE patient_id = ?",
                "DELETE FROM patient_contacts WHERE patient_id = ?",
            ] {
                tx.queue(sql, &[row_id.into()]).await?;
            }
        }
        let items = |k: &str| {
            resource
                .get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for (pos, item) in items("identifier").iter().enumerate() {
            let (c, extra) = row_extra::<IdentifierRow>(item);
            tx.insert(
                "patient_identifiers",
                &[
                    "id",
                    "patient_id",
                    "position",
                    "use_code",
                    "system",
                    "value",
                    "fhir_extra",
                ],
                &[
                    Uuid::new_v4().into(),
                    row_id.into(),
                    (pos as i64).into(),
                    c[0].clone().into(),
                    c[1].clone().into(),
                    c[2].clone().into(),
                    Arg::Json(extra),
                ],
            )
            .await?;
        }
        for (pos, item) in items("contact").iter().enumerate() {
            let (c, extra) = row_extra::<ContactRow>(item);
            let mut args: Vec<Arg> =
                vec![Uuid::new_v4().into(), row_id.into(), (pos as i64).into()];
            args.extend(c.iter().map(|v| Arg::from(v.clone())));
            args.push(Arg::Json(extra));
            tx.insert(
                "patient_contacts",
                &[
                    "id",
                    "patient_id",
                    "position",
                    "relationship",
                    "first_name",
                    "last_name",
                    "phone",
                    "email",
                    "fhir_extra",
                ],
                &args,
            )
            .await?;
        }
        super::search::index_names(tx, "Patient", row_id, resource).await?;
        Ok(())
    }

    fn assemble(
        row: &Row,
        identifiers: Vec<Value>,
        contacts: Vec<Value>,
    ) -> Result<Value, StoreError> {
        let (mut out, mut extra) = fields::resource_head("Patient", row)?;
        if !identifiers.is_empty() {
            out.insert("identifier".into(), Value::Array(identifiers));
        }
        if !contacts.is_empty() {
            out.insert("contact".into(), Value::Array(contacts));
        }
        let precision = match row.text("birth_date_precision")?.as_deref() {
            Some("year") => "year",
            Some("month") => "month",
            _ => "day",
        };
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                out.insert(k.to_owned(), v);
            }
        };
        put(
            "active",
            rebuild::<Active>(&mut extra, &row.bool("active")?),
        );
        put(
            "name",
            rebuild::<Name>(
                &mut extra,
                &(row.text("first_name")?, row.text("last_name")?),
            ),
        );
        put(
            "gender",
            rebuild::<Gender>(&mut extra, &row.text("gender")?),
        );
        put(
            "birthDate",
            rebuild::<BirthDate>(&mut extra, &(row.date("birth_date")?, precision)),
        );
        put(
            "telecom",
            rebuild::<Telecom>(&mut extra, &(row.text("phone")?, row.text("email")?)),
        );
        let address = [
            row.text("address_line")?,
            row.text("city")?,
            row.text("state")?,
            row.text("postal_code")?,
            row.text("country")?,
        ];
        put("address", rebuild::<Address>(&mut extra, &address));
        put(
            "maritalStatus",
            rebuild::<Marital>(&mut extra, &row.text("marital_status")?),
        );
        put(
            "communication",
            rebuild::<Communication>(&mut extra, &row.text("preferred_language")?),
        );
        // generalPractitioner: a column value the kept element does not name is patched in.
        let gp = row.text("gp_fhir_id")?;
        let kept = extra.remove("generalPractitioner");
        let gp_value = match (&gp, kept) {
            (Some(id), Some(k)) if practitioner_ref(Some(&k)).as_deref() != Some(id) => {
                let mut list = k.as_array().cloned().unwrap_or_default();
                list.insert(0, json!({"reference": format!("Practitioner/{id}")}));
                Some(Value::Array(list))
            }
            (Some(id), None) => Some(json!([{"reference": format!("Practitioner/{id}")}])),
            (_, k) => k,
        };
        put("generalPractitioner", gp_value);
        out.extend(extra);
        Ok(Value::Object(fields::ordered(out, &DATA.element_order)))
    }
}

impl Default for PatientMapping {
    fn default() -> Self {
        Self::new()
    }
}

const COLUMNS: &str = "active, first_name, last_name, gender, birth_date, birth_date_precision, phone, email, address_line, city, state, postal_code, country, marital_status, preferred_language, general_practitioner_id, fhir_extra";

#[async_trait]
impl ResourceMapping for PatientMapping {
    fn resource_type(&self) -> &'static str {
        "Patient"
    }

    fn table(&self) -> &'static str {
        "patients"
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
        let cols = self.split(tx, resource).await?;
        let mut args: Vec<Arg> = vec![row_id.into(), fhir_id.as_str().into()];
        args.extend(Self::column_args(&cols));
        let mut columns: Vec<&str> = vec!["id", "fhir_id"];
        columns.extend(COLUMNS.split(", "));
        if let Some(t) = tx.stamp(row_id) {
            args.extend([Arg::Timestamp(Some(t)), Arg::Timestamp(Some(t))]);
            columns.extend(["created_at", "updated_at"]);
        }
        tx.insert("patients", &columns, &args).await?;
        self.write_children(tx, row_id, resource).await
    }

    async fn update(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        expected_version: Option<i64>,
        resource: &Value,
    ) -> Result<bool, MapError> {
        let cols = self.split(tx, resource).await?;
        let columns: Vec<&str> = COLUMNS.split(", ").collect();
        let args = Self::column_args(&cols);
        if !super::rewrite_row(tx, "patients", &columns, args, row_id, expected_version).await? {
            return Ok(false);
        }
        self.write_children(tx, row_id, resource).await?;
        Ok(true)
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
        let ph = placeholders(ids.len());
        let rows = conn
            .fetch_all(
                &format!(
                    "SELECT p.id, p.fhir_id, p.version_id, p.updated_at, {}, g.fhir_id AS gp_fhir_id \
                     FROM patients p LEFT JOIN users g ON g.id = p.general_practitioner_id WHERE p.id IN ({ph})",
                    COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
                ),
                &ids,
            )
            .await?;
        let mut identifiers: HashMap<Uuid, Vec<Value>> = HashMap::new();
        for r in conn
            .fetch_all(
                &format!("SELECT patient_id, use_code, system, value, fhir_extra FROM patient_identifiers WHERE patient_id IN ({ph}) AND deleted_at IS NULL ORDER BY patient_id, position"),
                &ids,
            )
            .await?
        {
            let cols = [r.text("use_code")?, r.text("system")?, r.text("value")?];
            if let Some(v) = row_rebuild::<IdentifierRow>(r.json("fhir_extra")?, &cols) {
                identifiers.entry(r.uuid("patient_id")?).or_default().push(v);
            }
        }
        let mut contacts: HashMap<Uuid, Vec<Value>> = HashMap::new();
        for r in conn
            .fetch_all(
                &format!("SELECT patient_id, relationship, first_name, last_name, phone, email, fhir_extra FROM patient_contacts WHERE patient_id IN ({ph}) AND deleted_at IS NULL ORDER BY patient_id, position"),
                &ids,
            )
            .await?
        {
            let cols = ["relationship", "first_name", "last_name", "phone", "email"]
                .map(|c| r.text(c))
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let cols: [Option<String>; 5] = cols.try_into().unwrap_or_default();
            if let Some(v) = row_rebuild::<ContactRow>(r.json("fhir_extra")?, &cols) {
                contacts.entry(r.uuid("patient_id")?).or_default().push(v);
            }
        }
        rows.iter()
            .map(|row| {
                let id = row.uuid("id")?;
                let res = Self::assemble(
                    row,
                    identifiers.remove(&id).unwrap_or_default(),
                    contacts.remove(&id).unwrap_or_default(),
                )?;
                Ok((id, res))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<F: Field>(v: Value) {
        let mut rest = Map::new();
        rest.insert(F::KEY.to_owned(), v.clone());
        let cols = store::<F>(&mut rest);
        assert_eq!(rebuild::<F>(&mut rest, &cols), Some(v));
    }

    #[test]
    fn mapping_data_loads() {
        assert!(DATA.marital_status.codes.contains_key("M"));
    }

    #[test]
    fn simple_elements_need_no_extra() {
        let mut rest = json!({
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "birthDate": "1974-12",
            "telecom": [{"system": "phone", "value": "555"}],
            "gender": "male"
        })
        .as_object()
        .unwrap()
        .clone();
        let name = store::<Name>(&mut rest);
        let birth = store::<BirthDate>(&mut rest);
        store::<Telecom>(&mut rest);
        store::<Gender>(&mut rest);
        assert!(rest.is_empty(), "left in extra: {rest:?}");
        assert_eq!(name, (Some("Peter James".into()), Some("Chalmers".into())));
        assert_eq!(birth.1, "month");
    }

    #[test]
    fn rich_elements_round_trip() {
        roundtrip::<Name>(
            json!([{"use": "usual", "given": ["Jim"]}, {"use": "official", "family": "Chalmers", "given": ["Peter", "James"], "_given": [null, {"extension": []}]}]),
        );
        roundtrip::<Address>(
            json!([{"use": "home", "line": ["534 Erewhon St", "Apt 2"], "city": "PleasantVille", "period": {"start": "1974-12-25"}}]),
        );
        roundtrip::<Marital>(
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "M"}], "text": "M"}),
        );
        roundtrip::<Communication>(
            json!([{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es-MX", "display": "Spanish (Mexico)"}], "text": "Español"}, "preferred": true}]),
        );
        roundtrip::<BirthDate>(json!("1974"));
    }

    #[test]
    fn a_changed_column_is_patched_into_the_kept_element() {
        let mut rest = json!({"name": [{"use": "official", "family": "Chalmers", "given": ["Peter"], "prefix": ["Mr."]}]})
            .as_object()
            .unwrap()
            .clone();
        store::<Name>(&mut rest);
        let rebuilt = rebuild::<Name>(&mut rest, &(Some("Pedro".into()), Some("Chávez".into())));
        assert_eq!(
            rebuilt,
            Some(
                json!([{"use": "official", "family": "Chávez", "given": ["Pedro"], "prefix": ["Mr."]}])
            )
        );
    }
}

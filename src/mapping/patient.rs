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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingData {
    marital_status: MaritalData,
    language_system: String,
    contact_relationship_system: String,
    element_order: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaritalData {
    system: String,
    null_flavor_system: String,
    codes: HashMap<String, String>,
}

static DATA: LazyLock<MappingData> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../mappings/patient.json"))
        .expect("mappings/patient.json is valid (checked by a unit test)")
});

const GENDER_SYSTEM: &str = "http://hl7.org/fhir/administrative-gender";

static PARAMS: &[SearchParam] = &[
    SearchParam {
        name: "identifier",
        kind: ParamKind::Token,
        target: Target::IdentifierTable {
            table: "patient_identifiers",
            foreign_key: "patient_id",
        },
        definition: "http://hl7.org/fhir/SearchParameter/Patient-identifier",
        documentation: "A patient identifier (system|value)",
    },
    SearchParam {
        name: "family",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-family",
        documentation: "A portion of the family name of the patient",
    },
    SearchParam {
        name: "given",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/individual-given",
        documentation: "A portion of the given name of the patient",
    },
    SearchParam {
        name: "name",
        kind: ParamKind::String,
        target: Target::StringIndex,
        definition: "http://hl7.org/fhir/SearchParameter/Patient-name",
        documentation: "A portion of any part of any name: family, given, prefix, suffix or text",
    },
    SearchParam {
        name: "birthdate",
        kind: ParamKind::Date,
        target: Target::DateColumn {
            column: "birth_date",
            precision_column: "birth_date_precision",
        },
        definition: "http://hl7.org/fhir/SearchParameter/individual-birthdate",
        documentation: "The patient's date of birth, compared at its own precision",
    },
    SearchParam {
        name: "gender",
        kind: ParamKind::Token,
        target: Target::TokenColumn {
            column: "gender",
            system: Some(GENDER_SYSTEM),
        },
        definition: "http://hl7.org/fhir/SearchParameter/individual-gender",
        documentation: "Gender of the patient",
    },
    SearchParam {
        name: "active",
        kind: ParamKind::Token,
        target: Target::BoolColumn { column: "active" },
        definition: "http://hl7.org/fhir/SearchParameter/Patient-active",
        documentation: "Whether the patient record is active",
    },
    reference_param(
        "general-practitioner",
        "general_practitioner_id",
        "users",
        "Practitioner",
        "http://hl7.org/fhir/SearchParameter/Patient-general-practitioner",
        "The patient's nominated primary care provider (a clinic user)",
    ),
    PERSON_CONTACT[0],
    PERSON_CONTACT[1],
    PERSON_CONTACT[2],
    PERSON_CONTACT[3],
    PERSON_CONTACT[4],
    PERSON_CONTACT[5],
    PERSON_CONTACT[6],
    PERSON_CONTACT[7],
];

// ---- element ⇄ column mappings -------------------------------------------------------------

struct Active;
impl Field for Active {
    type Cols = Option<bool>;
    const KEY: &'static str = "active";
    fn project(e: Option<&Value>) -> Option<bool> {
        e.and_then(Value::as_bool)
    }
    fn patch(_: Option<Value>, c: &Option<bool>) -> Option<Value> {
        c.map(Value::Bool)
    }
}

struct Gender;
impl Field for Gender {
    type Cols = Option<String>;
    const KEY: &'static str = "gender";
    fn project(e: Option<&Value>) -> Option<String> {
        e.and_then(Value::as_str).map(str::to_owned)
    }
    fn patch(_: Option<Value>, c: &Option<String>) -> Option<Value> {
        c.clone().map(Value::String)
    }
}

/// birthDate ⇄ (birth_date, birth_date_precision): `1974`, `1974-12` and `1974-12-25` all fit.
struct BirthDate;
impl Field for BirthDate {
    type Cols = (Option<NaiveDate>, &'static str);
    const KEY: &'static str = "birthDate";
    fn project(e: Option<&Value>) -> Self::Cols {
        let s = e.and_then(Value::as_str).unwrap_or("");
        let parsed = match s.len() {
            4 => s
                .parse()
                .ok()
                .and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1))
                .map(|d| (d, "year")),
            7 => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
                .ok()
                .map(|d| (d, "month")),
            10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| (d, "day")),
            _ => None,
        };
        match parsed {
            Some((d, p)) => (Some(d), p),
            None => (None, "day"),
        }
    }
    fn patch(_: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let d = c.0?;
        Some(Value::String(match c.1 {
            "year" => format!("{:04}", d.year()),
            "month" => d.format("%Y-%m").to_string(),
            _ => d.format("%Y-%m-%d").to_string(),
        }))
    }
}

/// name[] ⇄ (first_name, last_name) of the official name, or the first one.
struct Name;
fn primary_name(names: &[Value]) -> Option<usize> {
    names
        .iter()
        .position(|n| str_of(Some(n), "use") == Some("official"))
        .or((!names.is_empty()).then_some(0))
}
impl Field for Name {
    type Cols = (Option<String>, Option<String>);
    const KEY: &'static str = "name";
    fn project(e: Option<&Value>) -> Self::Cols {
        let names = e
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        primary_name(names).map_or((None, None), |i| fields::name_project(names.get(i)))
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let mut names = match e {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let i = match primary_name(&names) {
            Some(i) => i,
            None if *c == (None, None) => return None,
            None => {
                names.push(json!({}));
                names.len() - 1
            }
        };
        if let Some(n) = names[i].as_object_mut() {
            fields::name_patch(n, &c.0, &c.1);
            if n.is_empty() {
                names.remove(i);
            }
        }
        (!names.is_empty()).then_some(Value::Array(names))
    }
}

struct Telecom;
impl Field for Telecom {
    type Cols = (Option<String>, Option<String>);
    const KEY: &'static str = "telecom";
    fn project(e: Option<&Value>) -> Self::Cols {
        fields::telecom_project(e)
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        fields::telecom_patch(e, &c.0, &c.1)
    }
}

/// address[0] ⇄ (address_line (lines joined by newlines), city, state, postal_code, country).
struct Address;
type AddressCols = [Option<String>; 5];
const ADDRESS_KEYS: [&str; 4] = ["city", "state", "postalCode", "country"];
impl Field for Address {
    type Cols = AddressCols;
    const KEY: &'static str = "address";
    fn project(e: Option<&Value>) -> AddressCols {
        let first = e.and_then(Value::as_array).and_then(|a| a.first());
        [
            fields::joined(first, "line", "\n"),
            str_of(first, ADDRESS_KEYS[0]).map(str::to_owned),
            str_of(first, ADDRESS_KEYS[1]).map(str::to_owned),
            str_of(first, ADDRESS_KEYS[2]).map(str::to_owned),
            str_of(first, ADDRESS_KEYS[3]).map(str::to_owned),
        ]
    }
    fn patch(e: Option<Value>, c: &AddressCols) -> Option<Value> {
        let mut list = match e {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        if list.is_empty() {
            if c.iter().all(Option::is_none) {
                return None;
            }
            list.push(json!({}));
        }
        if let Some(a) = list[0].as_object_mut() {
            fields::set_joined(a, "line", "\n", &c[0]);
            for (k, v) in ADDRESS_KEYS.iter().zip(&c[1..]) {
                set_str(a, k, v);
            }
            if a.is_empty() {
                list.remove(0);
            }
        }
        (!list.is_empty()).then_some(Value::Array(list))
    }
}

/// maritalStatus ⇄ marital_status (a v3-MaritalStatus code, or UNK from v3-NullFlavor).
struct Marital;
fn marital_code(e: Option<&Value>) -> Option<(String, bool)> {
    let d = &DATA.marital_status;
    e?.get("coding")?.as_array()?.iter().find_map(|c| {
        let sys = str_of(Some(c), "system")?;
        let code = str_of(Some(c), "code")?;
        if sys == d.system {
            Some((code.to_owned(), d.codes.contains_key(code) && code != "UNK"))
        } else if sys == d.null_flavor_system && code == "UNK" {
            Some((code.to_owned(), true))
        } else {
            None
        }
    })
}
impl Field for Marital {
    type Cols = Option<String>;
    const KEY: &'static str = "maritalStatus";
    fn project(e: Option<&Value>) -> Option<String> {
        marital_code(e).map(|(c, _)| c)
    }
    fn patch(_: Option<Value>, c: &Option<String>) -> Option<Value> {
        let d = &DATA.marital_status;
        let code = c.as_deref()?;
        let system = if code == "UNK" {
            &d.null_flavor_system
        } else {
            &d.system
        };
        let mut coding = json!({"system": system, "code": code});
        if let Some(display) = d.codes.get(code) {
            coding["display"] = json!(display);
        }
        Some(json!({ "coding": [coding] }))
    }
}

/// communication[] ⇄ preferred_language: the language of the preferred entry, or the first.
struct Communication;
fn preferred_entry(list: &[Value]) -> Option<usize> {
    list.iter()
        .position(|c| c.get("preferred").and_then(Value::as_bool) == Some(true))
        .or((!list.is_empty()).then_some(0))
}
fn language_code(entry: &Value) -> Option<String> {
    let coding = entry.get("language")?.get("coding")?.as_array()?;
    coding
        .iter()
        .find_map(|c| str_of(Some(c), "code"))
        .map(str::to_owned)
}
impl Field for Communication {
    type Cols = Option<String>;
    const KEY: &'static str = "communication";
    fn project(e: Option<&Value>) -> Option<String> {
        let list = e.and_then(Value::as_array)?;
        language_code(list.get(preferred_entry(list)?)?)
    }
    fn patch(e: Option<Value>, c: &Option<String>) -> Option<Value> {
        let mut list = match e {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let fresh =
            |code: &str| json!({"coding": [{"system": DATA.language_system, "code": code}]});
        match (preferred_entry(&list), c) {
            (Some(i), Some(code)) => list[i]["language"] = fresh(code),
            (Some(i), None) => {
                list.remove(i);
            }
            (None, Some(code)) => list.push(json!({"language": fresh(code), "preferred": true})),
            (None, None) => {}
        }
        (!list.is_empty()).then_some(Value::Array(list))
    }
}

/// The logical id of the first `Practitioner/{id}` in generalPractitioner.
fn practitioner_ref(e: Option<&Value>) -> Option<String> {
    e?.as_array()?.iter().find_map(|r| {
        let id = str_of(Some(r), "reference")?.strip_prefix("Practitioner/")?;
        Id::parse(id).map(|i| i.to_string())
    })
}

/// One identifier row: (use, system, value).
struct IdentifierRow;
impl Field for IdentifierRow {
    type Cols = [Option<String>; 3];
    const KEY: &'static str = "";
    fn project(e: Option<&Value>) -> Self::Cols {
        ["use", "system", "value"].map(|k| str_of(e, k).map(str::to_owned))
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let mut o = match e {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        for (k, v) in ["use", "system", "value"].iter().zip(c) {
            set_str(&mut o, k, v);
        }
        Some(Value::Object(o))
    }
}

/// One contact row: (relationship, first_name, last_name, phone, email).
struct ContactRow;
impl Field for ContactRow {
    type Cols = [Option<String>; 5];
    const KEY: &'static str = "";
    fn project(e: Option<&Value>) -> Self::Cols {
        let relationship = e
            .and_then(|c| c.get("relationship"))
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("coding"))
            .and_then(|c| c.get(0))
            .and_then(|c| str_of(Some(c), "code"))
            .map(str::to_owned);
        let (given, family) = fields::name_project(e.and_then(|c| c.get("name")));
        let (phone, email) = fields::telecom_project(e.and_then(|c| c.get("telecom")));
        [relationship, given, family, phone, email]
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let mut o = match e {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        if Self::project(Some(&Value::Object(o.clone())))[0] != c[0] {
            match &c[0] {
                Some(code) => {
                    o.insert(
                        "relationship".into(),
                        json!([{"coding": [{"system": DATA.contact_relationship_system, "code": code}]}]),
                    );
                }
                None => {
                    o.remove("relationship");
                }
            }
        }
        let mut name = match o.remove("name") {
            Some(Value::Object(n)) => n,
            _ => Map::new(),
        };
        fields::name_patch(&mut name, &c[1], &c[2]);
        if !name.is_empty() {
            o.insert("name".into(), Value::Object(name));
        }
        match fields::telecom_patch(o.remove("telecom"), &c[3], &c[4]) {
            Some(t) => {
                o.insert("telecom".into(), t);
            }
            None => {
                o.remove("telecom");
            }
        }
        Some(Value::Object(o))
    }
}

/// What a stored row keeps of an array item: `{}` when the columns rebuild it exactly.
fn row_extra<F: Field>(item: &Value) -> (F::Cols, Value) {
    let cols = F::project(Some(item));
    let extra = if F::patch(None, &cols).as_ref() == Some(item) {
        json!({})
    } else {
        item.clone()
    };
    (cols, extra)
}

fn row_rebuild<F: Field>(extra: Option<Value>, cols: &F::Cols) -> Option<Value> {
    let kept = extra.filter(|e| e.as_object().is_some_and(|o| !o.is_empty()));
    match kept {
        Some(o) if F::project(Some(&o)) == *cols => Some(o),
        o => F::patch(o, cols),
    }
}

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
        let sets: Vec<String> = COLUMNS.split(", ").map(|c| format!("{c} = ?")).collect();
        let mut sql = format!(
            "UPDATE patients SET {}, deleted_at = NULL WHERE id = ?",
            sets.join(", ")
        );
        let mut args = Self::column_args(&cols);
        args.push(row_id.into());
        if let Some(v) = expected_version {
            sql.push_str(" AND version_id = ?");
            args.push(v.into());
        }
        if tx.execute(&sql, &args).await? == 0 {
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

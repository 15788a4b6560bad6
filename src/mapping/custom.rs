//! Custom fields: clinic-defined fields per entity type (and specialty) that appear as
//! extensions on the resource of their entity, each with its own canonical URL.
//!
//! On a write, an extension whose URL is a custom field's is type-checked and stored in
//! custom_field_values (the extension also stays in fhir_extra, so it reads back as sent); a
//! required field that is missing is a 422. On a read, the values the clinic changed directly are
//! patched into their extensions, values it added appear as new extensions, and values it removed
//! take their extension with them.

use super::memo::MapMemo;
use super::MapError;
use crate::fhir::{Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, StoreError, Tx};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A custom field definition.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub id: Uuid,
    pub key: String,
    pub label: Option<String>,
    pub field_type: String,
    pub choices: Vec<String>,
    pub required: bool,
    pub url: String,
    pub specialty: Option<Uuid>,
    pub entity_type: String,
}

/// The custom fields of an entity type that have an extension URL.
pub async fn definitions(
    conn: &mut Conn<'_>,
    entity_type: &str,
) -> Result<Vec<FieldDef>, StoreError> {
    // A transaction reads those of every entity type once, in one query (no FHIR write changes
    // them): a read in the middle of its writes waits for all of them.
    if let Conn::Tx(tx) = conn {
        let known = tx
            .peek_memo::<MapMemo>()
            .and_then(|m| m.custom_fields.clone());
        let by_type = match known {
            Some(by_type) => by_type,
            None => {
                let mut by_type: HashMap<String, Vec<FieldDef>> = HashMap::new();
                for def in all_definitions(conn).await? {
                    by_type
                        .entry(def.entity_type.clone())
                        .or_default()
                        .push(def);
                }
                let by_type = Arc::new(by_type);
                if let Conn::Tx(tx) = conn {
                    tx.memo::<MapMemo>().custom_fields = Some(by_type.clone());
                }
                by_type
            }
        };
        return Ok(by_type.get(entity_type).cloned().unwrap_or_default());
    }
    let rows = conn
        .fetch_all(
            "SELECT id, entity_type, field_key, label, field_type, choices, is_required, extension_url, specialty_id \
             FROM custom_fields WHERE entity_type = ? AND deleted_at IS NULL AND extension_url IS NOT NULL ORDER BY field_key",
            &[entity_type.into()],
        )
        .await?;
    rows.iter().map(def_of).collect()
}

fn def_of(r: &crate::store::Row) -> Result<FieldDef, StoreError> {
    Ok(FieldDef {
        id: r.uuid("id")?,
        key: r.string("field_key")?,
        label: r.text("label")?,
        field_type: r.string("field_type")?,
        choices: r
            .json("choices")?
            .and_then(|c| c.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect(),
        required: r.bool("is_required")?.unwrap_or(false),
        url: r.string("extension_url")?,
        specialty: r.opt_uuid("specialty_id")?,
        entity_type: r.string("entity_type")?,
    })
}

/// Every custom field definition (for StructureDefinitions).
pub async fn all_definitions(conn: &mut Conn<'_>) -> Result<Vec<FieldDef>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT id, entity_type, field_key, label, field_type, choices, is_required, extension_url, specialty_id \
             FROM custom_fields WHERE deleted_at IS NULL AND extension_url IS NOT NULL ORDER BY entity_type, field_key",
            &[],
        )
        .await?;
    rows.iter().map(def_of).collect()
}

/// A stored value: (value_text, value_number, value_date, value_boolean).
#[derive(Debug, Clone, Default, PartialEq)]
struct Stored {
    text: Option<String>,
    number: Option<String>,
    date: Option<String>,
    boolean: Option<bool>,
}

/// The stored value an extension carries for a field, or why it cannot.
fn value_of(def: &FieldDef, ext: &Value) -> Result<Stored, String> {
    let get = |k: &str| ext.get(k);
    let mut v = Stored::default();
    match def.field_type.as_str() {
        "text" => {
            v.text = Some(
                get("valueString")
                    .and_then(Value::as_str)
                    .ok_or("a valueString")?
                    .to_owned(),
            )
        }
        "number" => {
            let n = get("valueDecimal")
                .or_else(|| get("valueInteger"))
                .and_then(Value::as_number);
            v.number = Some(n.ok_or("a valueDecimal or valueInteger")?.to_string());
        }
        "date" => {
            let d = get("valueDate")
                .and_then(Value::as_str)
                .ok_or("a valueDate")?;
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| "a full valueDate (YYYY-MM-DD)")?;
            v.date = Some(d.to_owned());
        }
        "boolean" => {
            v.boolean = Some(
                get("valueBoolean")
                    .and_then(Value::as_bool)
                    .ok_or("a valueBoolean")?,
            )
        }
        _ => {
            let code = get("valueCode")
                .and_then(Value::as_str)
                .or_else(|| {
                    get("valueCoding")
                        .and_then(|c| c.get("code"))
                        .and_then(Value::as_str)
                })
                .ok_or("a valueCode or valueCoding")?;
            if !def.choices.iter().any(|c| c == code) {
                return Err(format!("one of the choices {}", def.choices.join(", ")));
            }
            v.text = Some(code.to_owned());
        }
    }
    Ok(v)
}

/// Writes `stored` into an extension, keeping its value key (valueInteger, valueCoding...)
/// when it still fits.
fn set_value(def: &FieldDef, ext: &mut Map<String, Value>, stored: &Stored) {
    if value_of(def, &Value::Object(ext.clone())).ok().as_ref() == Some(stored) {
        return;
    }
    ext.retain(|k, _| !k.starts_with("value"));
    let (key, value) = match def.field_type.as_str() {
        "text" => ("valueString", json!(stored.text)),
        "number" => (
            "valueDecimal",
            stored
                .number
                .as_deref()
                .and_then(|n| n.parse::<serde_json::Number>().ok())
                .map(Value::Number)
                .unwrap_or(Value::Null),
        ),
        "date" => ("valueDate", json!(stored.date)),
        "boolean" => ("valueBoolean", json!(stored.boolean)),
        _ => ("valueCode", json!(stored.text)),
    };
    ext.insert(key.to_owned(), value);
}

/// Checks and stores the custom field extensions of a resource written as row `row_id`.
/// The specialty a stored resource belongs to, if any.
async fn specialty_of(
    tx: &mut Tx,
    resource_type: &str,
    row_id: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    let through_encounter = |table: &str| {
        format!("SELECT c.specialty_id AS s FROM {table} t JOIN consultations c ON c.id = t.consultation_id WHERE t.id = ?")
    };
    let sql = match resource_type {
        "Encounter" => "SELECT specialty_id AS s FROM consultations WHERE id = ?".to_owned(),
        "Practitioner" => "SELECT specialty_id AS s FROM users WHERE id = ?".to_owned(),
        "Observation" => through_encounter("observations"),
        "MedicationRequest" => through_encounter("prescriptions"),
        "DiagnosticReport" => through_encounter("medical_tests"),
        _ => return Ok(None),
    };
    match tx.fetch_optional(&sql, &[row_id.into()]).await? {
        Some(r) => r.opt_uuid("s"),
        None => Ok(None),
    }
}

pub async fn store(
    tx: &mut Tx,
    resource_type: &str,
    row_id: Uuid,
    resource: &Value,
) -> Result<(), MapError> {
    let defs = definitions(&mut Conn::Tx(tx), resource_type).await?;
    if defs.is_empty() {
        return Ok(());
    }
    let (values, mut issues) = sent_values(&defs, resource_type, resource);
    // A field of one specialty is required of the resources of that specialty: an Encounter or
    // Practitioner of it, or a resource written in an Encounter of it.
    let specialty = if defs.iter().any(|d| d.required && d.specialty.is_some()) {
        specialty_of(tx, resource_type, row_id).await?
    } else {
        None
    };
    for def in defs
        .iter()
        .filter(|d| d.required && (d.specialty.is_none() || d.specialty == specialty))
    {
        if !values.iter().any(|(d, _)| d.id == def.id) {
            issues.push(
                Issue::error(
                    IssueType::Required,
                    format!(
                        "the clinic requires custom field '{}' (extension {})",
                        def.key, def.url
                    ),
                )
                .at(format!("{resource_type}.extension")),
            );
        }
    }
    if !issues.is_empty() {
        return Err(MapError::Unprocessable(issues));
    }
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM custom_field_values WHERE entity_type = ? AND entity_id = ?",
            &[resource_type.into(), row_id.into()],
        )
        .await?;
    }
    for (def, v) in values {
        insert_value(tx, def, resource_type, row_id, v).await?;
    }
    Ok(())
}

/// The values of the custom field extensions a resource carries, and the problems of those
/// whose value is not of their field's type.
fn sent_values<'d>(
    defs: &'d [FieldDef],
    resource_type: &str,
    resource: &Value,
) -> (Vec<(&'d FieldDef, Stored)>, Vec<Issue>) {
    let exts = resource
        .get("extension")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut issues = Vec::new();
    let mut values = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        let Some(def) = defs
            .iter()
            .find(|d| ext.get("url").and_then(Value::as_str) == Some(d.url.as_str()))
        else {
            continue;
        };
        match value_of(def, ext) {
            Ok(v) => values.push((def, v)),
            Err(want) => issues.push(
                Issue::error(
                    IssueType::Value,
                    format!("custom field '{}' needs {want}", def.key),
                )
                .at(format!("{resource_type}.extension[{i}]")),
            ),
        }
    }
    (values, issues)
}

async fn insert_value(
    tx: &mut Tx,
    def: &FieldDef,
    resource_type: &str,
    row_id: Uuid,
    v: Stored,
) -> Result<(), StoreError> {
    tx.insert(
        "custom_field_values",
        &[
            "id",
            "custom_field_id",
            "entity_type",
            "entity_id",
            "value_text",
            "value_number",
            "value_date",
            "value_boolean",
        ],
        &[
            Uuid::new_v4().into(),
            def.id.into(),
            resource_type.into(),
            row_id.into(),
            v.text.into(),
            Arg::Decimal(v.number),
            Arg::Date(
                v.date
                    .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            ),
            Arg::Bool(v.boolean),
        ],
    )
    .await
}

/// Brings the custom field extensions of loaded resources in line with the stored values.
pub async fn apply(
    conn: &mut Conn<'_>,
    resource_type: &str,
    resources: &mut [(Uuid, Value)],
) -> Result<(), StoreError> {
    if resources.is_empty() {
        return Ok(());
    }
    let defs = definitions(conn, resource_type).await?;
    apply_with(conn, &defs, resource_type, resources).await
}

/// [`apply`] with the type's custom field definitions already known.
pub async fn apply_with(
    conn: &mut Conn<'_>,
    defs: &[FieldDef],
    resource_type: &str,
    resources: &mut [(Uuid, Value)],
) -> Result<(), StoreError> {
    if resources.is_empty() || defs.is_empty() {
        return Ok(());
    }
    let mut by_entity = stored_values(conn, resource_type, resources).await?;
    for (row_id, resource) in resources.iter_mut() {
        let values = by_entity.remove(row_id).unwrap_or_default();
        let Some(obj) = resource.as_object_mut() else {
            continue;
        };
        let exts = match obj.remove("extension") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let exts = merged(defs, exts, &values);
        if !exts.is_empty() {
            obj.insert("extension".into(), Value::Array(exts));
        }
        let order = super::element_order(resource_type);
        let taken = std::mem::take(obj);
        *obj = super::fields::ordered(taken, &order);
    }
    Ok(())
}

/// A resource's extensions with those of custom fields made to carry the stored `values`:
/// extensions of fields that have no value any more go, fields with a value and no extension
/// get one.
fn merged(defs: &[FieldDef], mut exts: Vec<Value>, values: &[(Uuid, Stored)]) -> Vec<Value> {
    // Extensions of fields that have no value any more go; the others carry the stored value.
    exts.retain_mut(|ext| {
        let url = ext
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(def) = defs.iter().find(|d| d.url == url) else {
            return true;
        };
        match (
            values.iter().find(|(f, _)| *f == def.id),
            ext.as_object_mut(),
        ) {
            (Some((_, stored)), Some(e)) => {
                set_value(def, e, stored);
                true
            }
            _ => false,
        }
    });
    for (field, stored) in values {
        let Some(def) = defs.iter().find(|d| d.id == *field) else {
            continue;
        };
        if !exts
            .iter()
            .any(|e| e.get("url").and_then(Value::as_str) == Some(def.url.as_str()))
        {
            let mut e = Map::new();
            e.insert("url".into(), json!(def.url));
            set_value(def, &mut e, stored);
            exts.push(Value::Object(e));
        }
    }
    exts
}

/// The stored custom field values of `resources`, by row id.
async fn stored_values(
    conn: &mut Conn<'_>,
    resource_type: &str,
    resources: &[(Uuid, Value)],
) -> Result<HashMap<Uuid, Vec<(Uuid, Stored)>>, StoreError> {
    let ids: Vec<Arg> = resources.iter().map(|(id, _)| Arg::Uuid(*id)).collect();
    let mut args: Vec<Arg> = vec![resource_type.into()];
    args.extend(ids.iter().cloned());
    let rows = conn
        .fetch_all(
            &format!(
                "SELECT entity_id, custom_field_id, value_text, value_number, value_date, value_boolean FROM custom_field_values \
                 WHERE entity_type = ? AND deleted_at IS NULL AND entity_id IN ({})",
                placeholders(ids.len())
            ),
            &args,
        )
        .await?;
    let mut by_entity: HashMap<Uuid, Vec<(Uuid, Stored)>> = HashMap::new();
    for r in &rows {
        let stored = Stored {
            text: r.text("value_text")?,
            number: r.decimal("value_number")?,
            date: r
                .date("value_date")?
                .map(|d| d.format("%Y-%m-%d").to_string()),
            boolean: r.bool("value_boolean")?,
        };
        by_entity
            .entry(r.uuid("entity_id")?)
            .or_default()
            .push((r.uuid("custom_field_id")?, stored));
    }
    Ok(by_entity)
}

/// The StructureDefinition of a custom field's extension.
pub fn structure_definition(def: &FieldDef) -> Value {
    let value_types: Vec<Value> = match def.field_type.as_str() {
        "text" => vec![json!({"code": "string"})],
        "number" => vec![json!({"code": "decimal"}), json!({"code": "integer"})],
        "date" => vec![json!({"code": "date"})],
        "boolean" => vec![json!({"code": "boolean"})],
        _ => vec![json!({"code": "code"}), json!({"code": "Coding"})],
    };
    let name: String = def
        .key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut value = json!({"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1, "type": value_types});
    if !def.choices.is_empty() {
        value["short"] = json!(format!("One of: {}", def.choices.join(", ")));
    }
    json!({
        "resourceType": "StructureDefinition",
        "id": def.id.to_string(),
        "url": def.url,
        "name": if name.is_empty() { "CustomField".to_owned() } else { format!("CustomField{name}") },
        "title": def.label.clone().unwrap_or_else(|| def.key.clone()),
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "complex-type",
        "abstract": false,
        "context": [{"type": "element", "expression": def.entity_type}],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Extension", "path": "Extension", "short": def.label.clone().unwrap_or_else(|| def.key.clone()), "min": if def.required && def.specialty.is_none() { 1 } else { 0 }, "max": "1"},
            {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
            {"id": "Extension.url", "path": "Extension.url", "fixedUri": def.url},
            value
        ]}
    })
}

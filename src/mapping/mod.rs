//! The mapping layer: one module per resource type, translating FHIR JSON to and from the rows of
//! the clinic schema, and declaring the search parameters it supports. The [`Registry`] of these
//! drives routing and the CapabilityStatement.

pub mod allergy;
pub mod attachments;
pub mod custom;
pub mod diagnostic_report;
mod emails;
pub mod encounter;
pub mod fields;
pub mod filter;
pub mod guard;
pub mod medication_request;
pub mod memo;
pub mod observation;
pub mod patient;
pub mod practitioner;
pub mod search;
pub mod spec;
pub mod table;
pub mod versions;
pub mod vital_data;
pub mod vitals;

use crate::fhir::{Id, Issue, ResourceType};
use crate::store::{Conn, StoreError, Tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

pub use search::{ParamKind, SearchParam, Target};

/// Why a mapping could not be done.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The resource is well-formed but its content cannot be stored as given (422).
    #[error("unprocessable resource")]
    Unprocessable(Vec<Issue>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One resource type behind the FHIR API. Writes run inside the caller's transaction; the
/// caller (the interactions layer) owns versions, history and the audit record.
#[async_trait]
pub trait ResourceMapping: Send + Sync {
    /// The FHIR resource type, e.g. `Patient`.
    fn resource_type(&self) -> &'static str;

    /// The table holding one row per resource, with the columns every clinical table has
    /// (id, fhir_id, version_id, updated_at, deleted_at).
    fn table(&self) -> &'static str;

    /// A condition on the table (aliased `t`) that its rows must meet to be resources of this
    /// type (users are Practitioners only with a clinical role).
    fn row_filter(&self) -> Option<&'static str> {
        None
    }

    /// The search parameters this mapping answers, besides `_id` and `_lastUpdated`.
    fn search_params(&self) -> &'static [SearchParam];

    /// Reads, in one go, what writing `resources` (a run of writes about to be made in `tx`)
    /// would otherwise look up one write at a time, and keeps it in the transaction's memo.
    async fn prefetch(&self, _tx: &mut Tx, _resources: &[&Value]) -> Result<(), MapError> {
        Ok(())
    }

    /// The unique values writing `resource` would take (an email that a column's unique index
    /// gives one row), each named with its table and column: two runs of a batch that would
    /// take one go to the database one after the other.
    fn claims(&self, _resource: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Stores a new resource as row `row_id` with logical id `fhir_id`.
    async fn insert(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        fhir_id: &Id,
        resource: &Value,
    ) -> Result<(), MapError>;

    /// Rewrites row `row_id` from `resource`, undeleting it if needed. With `expected_version`,
    /// the write happens only if the row is still at that version; returns false otherwise.
    async fn update(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        expected_version: Option<i64>,
        resource: &Value,
    ) -> Result<bool, MapError>;

    /// Writes a resource: everything a write of this type needs, in the caller's transaction.
    /// Its rows and child rows ([`ResourceMapping::insert`] or [`ResourceMapping::update`]),
    /// its custom field values, the search index of its meta, and the mark that keeps the
    /// triggers from versioning the row again while its child rows are rewritten. False (and
    /// nothing written) when an existing row is no longer at the version expected.
    async fn write(&self, tx: &mut Tx, row: RowWrite<'_>, body: &Value) -> Result<bool, MapError> {
        let (row_id, fhir_id) = match row {
            RowWrite::New { row_id, fhir_id } => {
                tx.mark_new(row_id).await?;
                guard::guard(tx, row_id).await?;
                self.insert(tx, row_id, fhir_id, body).await?;
                (row_id, fhir_id)
            }
            RowWrite::Existing {
                row_id,
                fhir_id,
                expected_version,
            } => {
                guard::guard(tx, row_id).await?;
                if !self.update(tx, row_id, expected_version, body).await? {
                    return Ok(false);
                }
                (row_id, fhir_id)
            }
        };
        custom::store(tx, self.resource_type(), row_id, body).await?;
        search::index_meta(tx, self.resource_type(), self.search_params(), row_id, body).await?;
        guard::unguard(tx, row_id).await?;
        memo::remember_row(tx, self.table(), fhir_id.as_str(), row_id);
        Ok(true)
    }

    /// Soft-deletes row `row_id` if it is still at `version_id`; returns the version and time of
    /// the deletion, or `None` when another request changed the row first.
    async fn soft_delete(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        version_id: i64,
    ) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
        soft_delete_row(tx, self.table(), row_id, version_id).await
    }

    /// Builds the current resources of these rows (with id and meta), in no particular order.
    async fn load(
        &self,
        conn: &mut Conn<'_>,
        row_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Value)>, StoreError>;
}

/// Which row a [`ResourceMapping::write`] writes.
#[derive(Debug, Clone, Copy)]
pub enum RowWrite<'a> {
    /// A new row.
    New { row_id: Uuid, fhir_id: &'a Id },
    /// An existing row, rewritten (and undeleted) if still at `expected_version` when one is
    /// given.
    Existing {
        row_id: Uuid,
        fhir_id: &'a Id,
        expected_version: Option<i64>,
    },
}

/// Rewrites row `row_id` of `table`: `values` into `columns`, undeleting it; with
/// `expected_version`, only if the row is still at that version. Whether it was written.
pub async fn rewrite_row(
    tx: &mut Tx,
    table: &str,
    columns: &[&str],
    mut values: Vec<crate::store::Arg>,
    row_id: Uuid,
    expected_version: Option<i64>,
) -> Result<bool, StoreError> {
    let sets: Vec<String> = columns.iter().map(|c| format!("{c} = ?")).collect();
    let mut sql = format!(
        "UPDATE {table} SET {}, deleted_at = NULL WHERE id = ?",
        sets.join(", ")
    );
    values.push(row_id.into());
    if let Some(v) = expected_version {
        sql.push_str(" AND version_id = ?");
        values.push(v.into());
    }
    Ok(tx.execute(&sql, &values).await? > 0)
}

/// Soft-deletes one row of a table with the common columns (see [`ResourceMapping::soft_delete`]).
pub async fn soft_delete_row(
    tx: &mut Tx,
    table: &str,
    row_id: Uuid,
    version_id: i64,
) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
    // What the transaction remembered about rows may no longer hold.
    tx.forget_all();
    let sql = format!(
        "UPDATE {table} SET deleted_at = {} WHERE id = ? AND version_id = ? AND deleted_at IS NULL",
        tx.dialect().now()
    );
    if tx
        .execute(&sql, &[row_id.into(), version_id.into()])
        .await?
        == 0
    {
        return Ok(None);
    }
    let r = tx
        .fetch_optional(
            &format!("SELECT version_id, updated_at FROM {table} WHERE id = ?"),
            &[row_id.into()],
        )
        .await?
        .ok_or_else(|| StoreError::Decode("deleted row vanished".into()))?;
    Ok(Some((r.int("version_id")?, r.timestamp("updated_at")?)))
}

/// The mapped resource types, by name (cheap to clone).
#[derive(Clone)]
pub struct Registry {
    by_type: Arc<BTreeMap<&'static str, Arc<dyn ResourceMapping>>>,
}

impl Registry {
    /// Every resource type this build of the server hosts.
    pub fn standard() -> Registry {
        let all: [Arc<dyn ResourceMapping>; 7] = [
            Arc::new(patient::PatientMapping::new()),
            Arc::new(encounter::mapping()),
            Arc::new(practitioner::mapping()),
            Arc::new(allergy::mapping()),
            Arc::new(medication_request::mapping()),
            Arc::new(diagnostic_report::mapping()),
            Arc::new(observation::ObservationMapping::new()),
        ];
        Registry {
            by_type: Arc::new(all.into_iter().map(|m| (m.resource_type(), m)).collect()),
        }
    }

    pub fn get(&self, resource_type: &str) -> Option<&Arc<dyn ResourceMapping>> {
        self.by_type.get(resource_type)
    }

    /// The hosted type named `name`, if this server hosts it.
    pub fn resource_type(&self, name: &str) -> Option<ResourceType> {
        self.by_type
            .get_key_value(name)
            .map(|(k, _)| ResourceType::hosted(k))
    }

    pub fn types(&self) -> Vec<&'static str> {
        self.by_type.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ResourceMapping>> {
        self.by_type.values()
    }
}

/// The elements of a resource type in the order the specification lists them (read from the
/// official JSON Schema, whose properties follow that order), for readable output.
pub fn element_order(resource_type: &str) -> Vec<String> {
    static ORDERS: std::sync::LazyLock<std::collections::HashMap<String, Vec<String>>> =
        std::sync::LazyLock::new(|| {
            let schema: Value =
                serde_json::from_str(crate::fhir::validate::SCHEMA).unwrap_or_default();
            let mut out = std::collections::HashMap::new();
            if let Some(defs) = schema.get("definitions").and_then(Value::as_object) {
                for (name, def) in defs {
                    if let Some(props) = def.get("properties").and_then(Value::as_object) {
                        let keys = props
                            .keys()
                            .filter(|k| !k.starts_with('_'))
                            .cloned()
                            .collect();
                        out.insert(name.clone(), keys);
                    }
                }
            }
            out
        });
    ORDERS.get(resource_type).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Registry;

    #[test]
    fn a_resource_type_is_made_only_for_a_hosted_type_named_exactly() {
        let r = Registry::standard();
        let p = r.resource_type("Patient").expect("Patient is hosted");
        assert_eq!(p.as_str(), "Patient");
        assert_eq!(p.to_string(), "Patient");
        for not in ["patient", "Claim", "", "Patient ", "Patient/1", "PATIENT"] {
            assert!(r.resource_type(not).is_none(), "{not:?}");
        }
        assert_eq!(r.types().len(), r.iter().count());
        for t in r.types() {
            assert_eq!(r.resource_type(t).map(|x| x.as_str()), Some(t));
        }
    }
}

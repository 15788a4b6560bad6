//! What the mapping layer keeps for the rest of a transaction (its [`Tx::memo`]): lookups it
//! may repeat and writes that later writes of the transaction build on. A delete forgets it
//! ([`Tx::forget_all`]).

use super::custom::FieldDef;
use super::vitals::Sessions;
use crate::store::{StoreError, Tx};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Default)]
pub struct MapMemo {
    /// Live rows of tables with logical ids, by table and logical id: written by the
    /// transaction or found by it.
    rows: HashMap<(String, String), Uuid>,
    /// The report row each result of the transaction is to be inserted linked to, by the
    /// result's logical id, until it is inserted.
    pub report_of: HashMap<String, Uuid>,
    /// The report row each result the transaction inserted was linked to, by logical id.
    pub linked: HashMap<String, Uuid>,
    /// Vital-sign session rows the transaction made.
    pub sessions: Sessions,
    /// The custom field definitions of every entity type, once read.
    pub custom_fields: Option<Arc<HashMap<String, Vec<FieldDef>>>>,
    /// The rows the queries of insert defaults found, by query.
    pub defaults: HashMap<&'static str, Option<Uuid>>,
    /// Catalog entries found or added (row id and display), by table, code and system.
    pub catalog: HashMap<String, (Uuid, Option<String>)>,
    /// Unique emails no row held when a run of writes began, by table, until one is written
    /// (see [`super::emails`]).
    pub free_emails: std::collections::HashSet<(&'static str, String)>,
}

/// Tells [`row_by_fhir_id`] the row just written under a logical id: a reference to it later
/// in the transaction needs no lookup.
pub fn remember_row(tx: &mut Tx, table: &str, fhir_id: &str, row_id: Uuid) {
    tx.memo::<MapMemo>()
        .rows
        .insert((table.to_owned(), fhir_id.to_owned()), row_id);
}

/// The row of `table` (a table with `fhir_id` and `deleted_at`) behind a live logical id. A row
/// found is remembered for the rest of the transaction (deletes forget them all).
pub async fn row_by_fhir_id(
    tx: &mut Tx,
    table: &str,
    fhir_id: &str,
) -> Result<Option<Uuid>, StoreError> {
    let key = (table.to_owned(), fhir_id.to_owned());
    if let Some(id) = tx.peek_memo::<MapMemo>().and_then(|m| m.rows.get(&key)) {
        return Ok(Some(*id));
    }
    let found = tx
        .fetch_optional(
            &format!("SELECT id FROM {table} WHERE fhir_id = ? AND deleted_at IS NULL"),
            &[fhir_id.into()],
        )
        .await?
        .map(|r| r.uuid("id"))
        .transpose()?;
    if let Some(id) = found {
        tx.memo::<MapMemo>().rows.insert(key, id);
    }
    Ok(found)
}

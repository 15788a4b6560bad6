//! The mark a FHIR write puts on a row while it rewrites the rows that hang from it, so that
//! the triggers of those child tables do not version it again (a child row's change touches
//! its parent: one FHIR write must make one version). On SQLite the mark is a row of the
//! `fhir_write_guard` table; on PostgreSQL a transaction-local setting
//! (`expediente.write_guard`, read through the fhir_write_guard view), which leaves no dead
//! rows behind as a table would.

use crate::store::{Dialect, StoreError, Tx};
use uuid::Uuid;

/// Marks row `row_id` as being written through FHIR until [`unguard`].
///
/// A row this transaction inserted ([`Tx::mark_new`]) needs no mark on PostgreSQL: the
/// triggers that read the mark for such rows also pass over every row whose xmin is the current
/// transaction (a resource's row is inserted before the rows that hang from it). vital_signs
/// rows are marked with [`guard_vitals`].
pub async fn guard(tx: &mut Tx, row_id: Uuid) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Postgres && tx.is_new(row_id) {
        return Ok(());
    }
    let sql = match tx.dialect() {
        Dialect::Sqlite => "INSERT INTO fhir_write_guard (row_id) VALUES (?)",
        Dialect::Postgres => "SELECT set_config('expediente.write_guard', concat_ws(',', NULLIF(current_setting('expediente.write_guard', true), ''), CAST(? AS text)), true)",
    };
    tx.queue(sql, &[row_id.into()]).await
}

/// Ends what [`guard`] started.
pub async fn unguard(tx: &mut Tx, row_id: Uuid) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Postgres && tx.is_new(row_id) {
        return Ok(());
    }
    let sql = match tx.dialect() {
        Dialect::Sqlite => "DELETE FROM fhir_write_guard WHERE row_id = ?",
        Dialect::Postgres => "SELECT set_config('expediente.write_guard', array_to_string(array_remove(string_to_array(current_setting('expediente.write_guard', true), ','), CAST(? AS text)), ','), true)",
    };
    tx.queue(sql, &[row_id.into()]).await
}

/// Marks a vital_signs row as written through FHIR (its vital_sign_observations rows are kept
/// by the writer, not by the table's trigger) until [`unguard_vitals`]. On PostgreSQL the
/// transaction says so once for all its vital_signs rows (the `expediente.fhir_vitals`
/// setting): every write of that table inside it is a FHIR write.
pub async fn guard_vitals(tx: &mut Tx, row_id: Uuid) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Sqlite {
        return guard(tx, row_id).await;
    }
    tx.queue_once("SELECT set_config('expediente.fhir_vitals', 'on', true)")
        .await
}

/// Ends what [`guard_vitals`] started (on PostgreSQL, the transaction's end does).
pub async fn unguard_vitals(tx: &mut Tx, row_id: Uuid) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Sqlite {
        return unguard(tx, row_id).await;
    }
    Ok(())
}

//! Unique emails known to be free: a column whose unique index refuses an email another row
//! holds ([`super::spec::Kind::Telecom`] with `unique_email`) is looked at before each write
//! of one, which keeps a taken email out of the column. A batch's run of writes reads, before
//! its first write, which of its emails no row holds, in one statement; each of those is then
//! written without a look of its own, once (a second write of it looks: the first may have
//! taken it).

use super::memo::MapMemo;
use crate::store::{placeholders, Arg, StoreError, Tx};
use std::collections::BTreeSet;

/// The most emails asked about in one statement.
const CHUNK: usize = 500;

/// Notes which of `emails` no row of `table` holds in `column` now.
pub async fn learn_free(
    tx: &mut Tx,
    table: &'static str,
    column: &str,
    emails: BTreeSet<String>,
) -> Result<(), StoreError> {
    let emails: Vec<String> = emails.into_iter().collect();
    for chunk in emails.chunks(CHUNK) {
        let args: Vec<Arg> = chunk.iter().map(|e| e.as_str().into()).collect();
        let sql = format!(
            "SELECT {column} AS e FROM {table} WHERE {column} IN ({})",
            placeholders(chunk.len())
        );
        let taken: BTreeSet<String> = tx
            .fetch_all(&sql, &args)
            .await?
            .iter()
            .map(|r| r.string("e"))
            .collect::<Result<_, _>>()?;
        let free = &mut tx.memo::<MapMemo>().free_emails;
        free.extend(
            chunk
                .iter()
                .filter(|e| !taken.contains(*e))
                .map(|e| (table, e.clone())),
        );
    }
    Ok(())
}

/// Whether `email` was known free in `table` and not written since: true once.
pub fn take_free(tx: &mut Tx, table: &'static str, email: &str) -> bool {
    tx.memo::<MapMemo>()
        .free_emails
        .remove(&(table, email.to_owned()))
}

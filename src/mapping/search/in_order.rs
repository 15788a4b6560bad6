//! PostgreSQL: a page in row id order of a search whose condition holds one list of row ids (the
//! matches of a name, an identifier, a token) beside tests of a row's own columns. The plan's
//! query (`t.id = ANY (ARRAY(list))`, then the first rows by id) looks up and tests every row
//! the list names before it sorts them: a family prefix 500 patients share costs 500 lookups
//! for a page of 20. PostgreSQL cannot plan otherwise, as it takes a list for ten rows whatever
//! its length. Here the list's ids are sorted first (an in-memory sort of ids) and the rows
//! looked up and tested in that order until the page is full: the page's rows and a few more.
//! The page holds the same rows, in the same order, as the plan's query finds.

use super::plan::{PageRow, Plan};
use super::{Cond, List, Rendered};
use crate::store::{Db, Dialect, StoreError};

/// The other conditions of `cond` and its one list of `t.id`, when `cond` is a conjunction
/// holding exactly one such list and its other members hold no list.
pub(super) fn split(cond: &Cond) -> Option<(Cond, &List)> {
    let Cond::And(all) = cond else {
        return None;
    };
    let mut lists = all
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Cond::In(e, _) if e == "t.id"));
    let (i, Cond::In(_, list)) = lists.next()? else {
        return None;
    };
    if lists.next().is_some() {
        return None;
    }
    Some((super::walk::row_tests_but(all, i, None)?, list))
}

impl Plan<'_> {
    /// The page (as [`Plan::page`] reads it, without sort keys or a count), looking up the rows
    /// `list` names in id order; `rest` holds the other conditions. One statement.
    pub(super) async fn in_list_order(
        &self,
        db: &Db,
        rest: &Cond,
        list: &List,
    ) -> Result<Vec<PageRow>, StoreError> {
        let dialect = db.dialect();
        let backwards = self.from.as_ref().is_some_and(|f| !f.after);
        let (op, dir) = if backwards { ("<", " DESC") } else { (">", "") };
        let mut args = Vec::new();
        let mut arms = Vec::new();
        for s in &list.0 {
            let (cond, values) = Rendered::of_select(s, dialect);
            args.extend(values);
            arms.push(format!("SELECT {} FROM {} WHERE {cond}", s.column, s.from));
        }
        let after = match &self.from {
            Some(from) => {
                args.push(from.id.into());
                format!(" WHERE l.id {op} ?")
            }
            None => String::new(),
        };
        // (No list in `rest`: nothing to put before the statement.)
        let w = Rendered::of(rest, dialect);
        args.extend(w.all_args());
        args.push(self.limit.into());
        let sql = format!(
            "SELECT m.id FROM (SELECT DISTINCT l.id FROM ({}) l(id){after} ORDER BY l.id{dir}) m \
             WHERE EXISTS (SELECT 1 FROM {} t WHERE t.id = m.id AND {}) \
             ORDER BY m.id{dir} LIMIT ?",
            arms.join(" UNION ALL "),
            self.m.table(),
            w.sql
        );
        let mut rows = Vec::new();
        for r in db.fetch_all(&sql, &args).await? {
            rows.push(PageRow {
                id: r.uuid("id")?,
                keys: Vec::new(),
            });
        }
        Ok(rows)
    }
}

/// Whether a page of `dialect` is read in the list's order when it can be (see the module).
pub(super) fn applies(dialect: Dialect) -> bool {
    dialect == Dialect::Postgres
}

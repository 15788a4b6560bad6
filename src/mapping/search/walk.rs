//! Walking a page. When a search's condition holds a list whose selects an index reads in row
//! id order ([`Cond::Walkable`]: a code, a code and a value) and its other conditions each test
//! a row by its own columns, a page in row id order is read by taking the list's next rows in
//! that order, a few at a time, and testing the other conditions on those rows alone, until
//! the page is full. The page holds the same rows, in the same order, as the plan's query
//! would find; the matches past its end are never read. A list of tens of thousands of rows
//! (a common code across all patients) costs a page, not every match found, probed and sorted.
//!
//! Each round is one statement (one snapshot). When each select of the list has a test beside
//! it (a code's value, over the select's own tables), a round tests it on each row as it reads
//! the select, and looks up only the rows that meet it for the other conditions. A walk whose
//! other conditions keep few of the list's rows stops after [`ROUNDS`] rounds. With tests beside
//! the selects, the walk then goes on through the narrow list they make (the rows of a code
//! whose value also matches, from the index of codes and values), in rounds of growing size:
//! each round reads the narrow list's entries past the last row walked and sorts them by row id
//! in the index alone, and looks up only the round's first rows. Otherwise the rest of the page
//! is found the usual way, which looks up every match past the last row walked before it sorts
//! them.

use super::plan::{Keyset, PageRow, Plan};
use super::{Cond, List, Rendered};
use crate::store::{Arg, Db, Dialect, StoreError};
use uuid::Uuid;

/// The rounds a walk takes before the plan's query finds the rest of its page. The first reads
/// twice the page's rows from the list, each other four times as many as the one before.
const ROUNDS: usize = 3;

/// The rounds through a narrow list before the plan's query finds the rest of the page.
const NARROW_ROUNDS: usize = 2;

/// The other conditions of `cond` (with the list's row test) and its walkable list, when a page
/// can walk it: `cond` is a conjunction holding one walkable list, and its other members hold no
/// list.
pub(super) fn split(cond: &Cond) -> Option<(Cond, &List, Option<&[Cond]>)> {
    let Cond::And(all) = cond else {
        return None;
    };
    let i = all.iter().position(|c| matches!(c, Cond::Walkable(..)))?;
    let Cond::Walkable(_, list, test, keeps) = &all[i] else {
        return None;
    };
    Some((row_tests_but(all, i, Some(test))?, list, keeps.as_deref()))
}

/// The members of `all` but its `i`th (with `extra`), when each tests a row by its own columns.
pub(super) fn row_tests_but(all: &[Cond], i: usize, extra: Option<&Cond>) -> Option<Cond> {
    let mut rest: Vec<Cond> = all
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, c)| c.clone())
        .collect();
    rest.extend(extra.cloned());
    rest.iter().all(row_test).then_some(Cond::And(rest))
}

/// Whether `c` tests a row by its own columns: it holds no list.
fn row_test(c: &Cond) -> bool {
    match c {
        Cond::Sql(..) => true,
        Cond::In(..) | Cond::Walkable(..) => false,
        Cond::And(all) | Cond::Or(all) => all.iter().all(row_test),
        Cond::Not(c) | Cond::NotTrue(c) => row_test(c),
    }
}

/// The list a round reads.
#[derive(Clone, Copy)]
enum Walked<'a> {
    /// Each select read by an index in row id order, the test beside it (if any) tested on
    /// each row as it is read.
    InOrder(&'a List, Option<&'a [Cond]>),
    /// The rows of each select that meet the test beside it too, in no order: every one
    /// listed, then sorted.
    Narrow(&'a List, &'a [Cond]),
}

impl Walked<'_> {
    fn in_order(self) -> bool {
        matches!(self, Walked::InOrder(..))
    }

    /// Whether each row read carries whether it meets its select's test (`k`): walking in order
    /// with tests beside the selects, only the rows that meet it are looked up.
    fn flagged(self) -> bool {
        matches!(self, Walked::InOrder(_, Some(_)))
    }

    /// The selects of a round's statement (`UNION ALL`), their values pushed on `args`.
    fn arms(
        self,
        from: Option<Uuid>,
        backwards: bool,
        chunk: i64,
        dialect: Dialect,
        args: &mut Vec<Arg>,
    ) -> String {
        let (op, dir) = if backwards { ("<", " DESC") } else { (">", "") };
        let (list, keeps) = match self {
            Walked::InOrder(l, k) => (l, k),
            Walked::Narrow(l, k) => (l, Some(k)),
        };
        let (in_order, flagged) = (self.in_order(), self.flagged());
        let mut arms = Vec::new();
        for (i, s) in list.0.iter().enumerate() {
            let (cond, values) = Rendered::of_select(s, dialect);
            let keep = keeps
                .and_then(|k| k.get(i))
                .map(|k| Rendered::inline(k, dialect));
            let (keep, keep_args) = keep.unwrap_or_else(|| ("TRUE".to_owned(), Vec::new()));
            let col = &s.column;
            if !in_order {
                // Every row it lists, found through the index its condition names (with the
                // cursor beside it, an index in row id order could be read instead, row after
                // row of the code, as many as it holds when few values match).
                args.extend(values);
                args.extend(keep_args);
                arms.push(format!(
                    "SELECT {col} AS id FROM {} WHERE ({cond}) AND ({keep})",
                    s.from
                ));
                continue;
            }
            let flag = if flagged {
                args.extend(keep_args);
                format!(", ({keep}) AS k")
            } else {
                String::new()
            };
            args.extend(values);
            // Each select its own next rows (an index in row id order stops at the chunk's
            // end, and PostgreSQL plans it so only with the limit beside it), then the first of
            // all.
            let after = match from {
                Some(id) => {
                    args.push(id.into());
                    format!(" AND {col} {op} ?")
                }
                None => String::new(),
            };
            arms.push(format!(
                "SELECT * FROM (SELECT {col} AS id{flag} FROM {} WHERE ({cond}){after} \
                 ORDER BY {col}{dir} LIMIT {chunk}) a{i}",
                s.from
            ));
        }
        arms.join(" UNION ALL ")
    }
}

impl Plan<'_> {
    /// The page (as [`Plan::page`] reads it, without sort keys or a count), walking `list`
    /// (with the `keeps` beside its selects, if any, then the narrow list they make); `rest`
    /// holds the other conditions.
    pub(super) async fn walk(
        &self,
        db: &Db,
        rest: &Cond,
        list: &List,
        keeps: Option<&[Cond]>,
    ) -> Result<Vec<PageRow>, StoreError> {
        let backwards = self.from.as_ref().is_some_and(|f| !f.after);
        let mut from = self.from.as_ref().map(|f| f.id);
        let mut rows = Vec::new();
        let mut chunk = self.limit.saturating_mul(2).max(1);
        for _ in 0..ROUNDS {
            let read = self
                .round(
                    db,
                    rest,
                    Walked::InOrder(list, keeps),
                    from,
                    backwards,
                    chunk,
                )
                .await?;
            if self.took(read, chunk, &mut rows, &mut from) {
                return Ok(rows);
            }
            chunk = chunk.saturating_mul(4);
        }
        if let Some(keeps) = keeps {
            // Each round at least twice the rows the page still needs, and four times the one
            // before: rounds as few as the rows the other conditions turn away allow. Each reads
            // the whole narrow list, so a page whose other conditions turn most of it away
            // (another patient's rows) is finished by the plan's query after two.
            let mut chunk = (self.limit - rows.len() as i64).saturating_mul(2).max(1);
            for _ in 0..NARROW_ROUNDS {
                let read = self
                    .round(
                        db,
                        rest,
                        Walked::Narrow(list, keeps),
                        from,
                        backwards,
                        chunk,
                    )
                    .await?;
                if self.took(read, chunk, &mut rows, &mut from) {
                    return Ok(rows);
                }
                chunk = chunk.saturating_mul(4);
            }
        }
        // The rest of the page, after the rows walked, the usual way.
        let rest_of_page = Plan {
            m: self.m,
            cond: self.cond.clone(),
            keys: Vec::new(),
            from: from.map(|id| Keyset {
                after: !backwards,
                values: Vec::new(),
                id,
            }),
            limit: self.limit - rows.len() as i64,
            count_all: false,
        };
        rows.extend(rest_of_page.scan(db).await?.0);
        Ok(rows)
    }

    /// Takes a round's rows that passed into the page, `from` moving past every row read;
    /// whether the walk ends (the page full, or the list read to its end).
    fn took(
        &self,
        read: Vec<(Uuid, bool)>,
        chunk: i64,
        rows: &mut Vec<PageRow>,
        from: &mut Option<Uuid>,
    ) -> bool {
        let exhausted = (read.len() as i64) < chunk;
        for (id, passed) in read {
            // A row two selects list comes twice in a row (the next round starts past it).
            if passed && (rows.len() as i64) < self.limit && *from != Some(id) {
                rows.push(PageRow { id, keys: vec![] });
            }
            *from = Some(id);
        }
        rows.len() as i64 >= self.limit || exhausted
    }

    /// The list's next `chunk` rows after (walking backwards, before) `from`, in that order,
    /// each with whether it meets `rest`: one statement.
    async fn round(
        &self,
        db: &Db,
        rest: &Cond,
        list: Walked<'_>,
        from: Option<Uuid>,
        backwards: bool,
        chunk: i64,
    ) -> Result<Vec<(Uuid, bool)>, StoreError> {
        let dialect = db.dialect();
        let (op, dir) = if backwards { ("<", " DESC") } else { (">", "") };
        let mut args = Vec::new();
        let arms = list.arms(from, backwards, chunk, dialect, &mut args);
        let (in_order, flagged) = (list.in_order(), list.flagged());
        // The narrow list whole, before the cursor is applied.
        let whole = if in_order { "" } else { " MATERIALIZED" };
        let after = match from {
            Some(id) if !in_order => {
                args.push(id.into());
                format!(" WHERE id {op} ?")
            }
            _ => String::new(),
        };
        let (cols, kept) = if flagged {
            ("id, k", " WHERE k")
        } else {
            ("id", "")
        };
        // (No list in `rest`: nothing to put before the statement.)
        let w = Rendered::of(rest, dialect);
        args.extend(w.all_args());
        let (table, cond) = (self.m.table(), &w.sql);
        let sql = match dialect {
            Dialect::Sqlite => format!(
                "WITH d({cols}) AS{whole} ({arms}), \
                 c({cols}) AS MATERIALIZED \
                 (SELECT {cols} FROM d{after} ORDER BY id{dir} LIMIT {chunk}), \
                 p(id) AS MATERIALIZED (SELECT t.id FROM {table} t WHERE {cond} \
                 AND t.id IN (SELECT id FROM c{kept})) \
                 SELECT c.id, c.id IN p AS passed FROM c ORDER BY c.id{dir}"
            ),
            Dialect::Postgres => format!(
                "WITH d({cols}) AS{whole} ({arms}), \
                 c AS MATERIALIZED (SELECT {cols} FROM d{after} ORDER BY id{dir} LIMIT {chunk}), \
                 p AS MATERIALIZED (SELECT t.id FROM {table} t WHERE {cond} \
                 AND t.id = ANY (ARRAY(SELECT id FROM c{kept}))) \
                 SELECT c.id, EXISTS (SELECT 1 FROM p WHERE p.id = c.id) AS passed \
                 FROM c ORDER BY c.id{dir}"
            ),
        };
        let mut read = Vec::new();
        for r in db.fetch_all(&sql, &args).await? {
            read.push((r.uuid("id")?, r.bool("passed")?.unwrap_or(false)));
        }
        Ok(read)
    }
}

//! Walking a page. When a search's condition holds a list whose selects an index reads in row
//! id order ([`Cond::Walkable`]: a code, a code and a value) and its other conditions each test
//! a row by its own columns, a page in row id order is read by taking the list's next rows in
//! that order, a few at a time, and testing the other conditions on those rows alone, until
//! the page is full. The page holds the same rows, in the same order, as the plan's query
//! would find; the matches past its end are never read. A list of tens of thousands of rows
//! (a common code across all patients) costs a page, not every match found, probed and sorted.
//!
//! Each round is one statement (one snapshot). A walk whose other conditions keep few of the
//! list's rows stops after [`ROUNDS`] rounds. When the list has a narrower one beside it (the
//! rows of a code whose value also matches, from the index of codes and values), the walk goes
//! on through that one, in rounds of growing size: each round reads the narrow list's entries
//! past the last row walked and sorts them by row id in the index alone, and looks up only the
//! round's first rows. Otherwise the rest of the page is found the usual way, which looks up
//! every match past the last row walked before it sorts them.

use super::plan::{Keyset, PageRow, Plan};
use super::{Cond, List, Rendered};
use crate::store::{Db, Dialect, StoreError};
use uuid::Uuid;

/// The rounds a walk takes before the plan's query finds the rest of its page. The first reads
/// twice the page's rows from the list, each other four times as many as the one before, or
/// fewer when the rows that passed so far say fewer fill the page ([`Tally::next_chunk`]).
const ROUNDS: usize = 3;

/// The rounds through a narrow list before the plan's query finds the rest of the page.
const NARROW_ROUNDS: usize = 2;

/// What a page walks, when it can: `cond` is a conjunction holding one walkable list, and its
/// other members hold no list.
pub(super) struct Walk<'a> {
    /// The other members.
    pub rest: Cond,
    /// The list's row test (a value).
    pub test: &'a Cond,
    pub list: &'a List,
    /// The rows that meet the test too, if listed apart.
    pub narrow: Option<&'a List>,
}

pub(super) fn split(cond: &Cond) -> Option<Walk<'_>> {
    let Cond::And(all) = cond else {
        return None;
    };
    let i = all.iter().position(|c| matches!(c, Cond::Walkable(..)))?;
    let Cond::Walkable(_, list, test, narrow) = &all[i] else {
        return None;
    };
    Some(Walk {
        rest: row_tests_but(all, i, None)?,
        test,
        list,
        narrow: narrow.as_ref(),
    })
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

/// The rows a walk has read: those that met the other conditions, and those that met the test
/// too.
#[derive(Default)]
struct Tally {
    read: u64,
    live: u64,
    passed: u64,
}

impl Tally {
    /// Whether the test turned away all but a few of the rows the other conditions kept:
    /// fewer than one in [`FEW`] (the narrow list is then as short, and the walk as long).
    fn test_keeps_few(&self) -> bool {
        self.live > 0 && self.passed.saturating_mul(FEW) < self.live
    }
}

impl Tally {
    /// The next round's rows after one of `chunk` that left `needed` rows to find: four times
    /// as many, or fewer when the rows that passed so far say so (one and a half times the rows
    /// they say would fill the page, and at least twice as many as it needs).
    fn next_chunk(&self, chunk: i64, needed: i64) -> i64 {
        let grown = chunk.saturating_mul(4);
        if self.passed == 0 {
            return grown;
        }
        let per_pass = self.read as f64 / self.passed as f64;
        let enough = (needed as f64 * per_pass * 1.5).ceil() as i64;
        grown.min(enough.max(needed.saturating_mul(2)))
    }
}

/// See [`Tally::test_keeps_few`].
const FEW: u64 = 16;

/// A round's row: whether it met the other conditions, and the test too.
#[derive(Clone, Copy)]
struct Seen {
    live: bool,
    passed: bool,
}

/// The list a round reads.
#[derive(Clone, Copy)]
enum Walked<'a> {
    /// Each select read by an index in row id order.
    InOrder(&'a List),
    /// The rows that meet the test too, in no order: every one listed, then sorted.
    Narrow(&'a List),
}

impl Plan<'_> {
    /// The page (as [`Plan::page`] reads it, without sort keys or a count), walking `w`.
    pub(super) async fn walk(&self, db: &Db, w: &Walk<'_>) -> Result<Vec<PageRow>, StoreError> {
        let backwards = self.from.as_ref().is_some_and(|f| !f.after);
        let mut from = self.from.as_ref().map(|f| f.id);
        let mut rows = Vec::new();
        let mut tally = Tally::default();
        let mut chunk = self.limit.saturating_mul(2).max(1);
        let tests = (&w.rest, w.test);
        for _ in 0..ROUNDS {
            let list = Walked::InOrder(w.list);
            let read = self.round(db, tests, list, from, backwards, chunk).await?;
            if self.took(read, chunk, &mut rows, &mut from, &mut tally) {
                return Ok(rows);
            }
            if w.narrow.is_some() && tally.test_keeps_few() {
                break;
            }
            chunk = tally.next_chunk(chunk, self.limit - rows.len() as i64);
        }
        // Through the narrow list when the test, not the other conditions, turned rows away:
        // twice the rows the page still needs, then four times as many.
        if let (Some(narrow), true) = (w.narrow, tally.passed < tally.live) {
            let mut chunk = (self.limit - rows.len() as i64).saturating_mul(2).max(1);
            for _ in 0..NARROW_ROUNDS {
                let list = Walked::Narrow(narrow);
                let read = self.round(db, tests, list, from, backwards, chunk).await?;
                if self.took(read, chunk, &mut rows, &mut from, &mut tally) {
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
        read: Vec<(Uuid, Seen)>,
        chunk: i64,
        rows: &mut Vec<PageRow>,
        from: &mut Option<Uuid>,
        tally: &mut Tally,
    ) -> bool {
        let exhausted = (read.len() as i64) < chunk;
        for (id, seen) in read {
            // A row two selects list comes twice in a row (the next round starts past it).
            if *from == Some(id) {
                continue;
            }
            tally.read += 1;
            tally.live += u64::from(seen.live);
            tally.passed += u64::from(seen.passed);
            if seen.passed && (rows.len() as i64) < self.limit {
                rows.push(PageRow { id, keys: vec![] });
            }
            *from = Some(id);
        }
        rows.len() as i64 >= self.limit || exhausted
    }

    /// The list's next `chunk` rows after (walking backwards, before) `from`, in that order,
    /// each with whether it meets the other conditions, and the test too: one statement.
    async fn round(
        &self,
        db: &Db,
        (rest, test): (&Cond, &Cond),
        list: Walked<'_>,
        from: Option<Uuid>,
        backwards: bool,
        chunk: i64,
    ) -> Result<Vec<(Uuid, Seen)>, StoreError> {
        let dialect = db.dialect();
        let (op, dir) = if backwards { ("<", " DESC") } else { (">", "") };
        let mut arms = Vec::new();
        let mut args = Vec::new();
        let (list, in_order) = match list {
            Walked::InOrder(l) => (l, true),
            Walked::Narrow(l) => (l, false),
        };
        for (i, s) in list.0.iter().enumerate() {
            let (cond, values) = Rendered::of_select(s, dialect);
            args.extend(values);
            let col = &s.column;
            if !in_order {
                // Every row it lists, found through the index its condition names (with the
                // cursor beside it, an index in row id order could be read instead, row after
                // row of the code, as many as it holds when few values match).
                arms.push(format!("SELECT {col} AS id FROM {} WHERE ({cond})", s.from));
                continue;
            }
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
                "SELECT * FROM (SELECT {col} AS id FROM {} WHERE ({cond}){after} \
                 ORDER BY {col}{dir} LIMIT {chunk}) a{i}",
                s.from
            ));
        }
        let arms = arms.join(" UNION ALL ");
        // The narrow list whole, before the cursor is applied.
        let whole = if in_order { "" } else { " MATERIALIZED" };
        let after = match from {
            Some(id) if !in_order => {
                args.push(id.into());
                format!(" WHERE id {op} ?")
            }
            _ => String::new(),
        };
        // (No list in `rest` or `test`: nothing to put before the statement.)
        let t = Rendered::of(test, dialect);
        args.extend(t.all_args());
        let w = Rendered::of(rest, dialect);
        args.extend(w.all_args());
        let (table, test, cond) = (self.m.table(), &t.sql, &w.sql);
        let sql = match dialect {
            Dialect::Sqlite => format!(
                "WITH d(id) AS{whole} ({arms}), \
                 c(id) AS MATERIALIZED (SELECT id FROM d{after} ORDER BY id{dir} LIMIT {chunk}), \
                 p(id, v) AS MATERIALIZED (SELECT t.id, ({test}) IS TRUE FROM {table} t \
                 WHERE {cond} AND t.id IN c) \
                 SELECT c.id, coalesce(p.v, 0) AS passed, p.id IS NOT NULL AS live \
                 FROM c LEFT JOIN p ON p.id = c.id ORDER BY c.id{dir}"
            ),
            Dialect::Postgres => format!(
                "WITH d(id) AS{whole} ({arms}), \
                 c AS MATERIALIZED (SELECT id FROM d{after} ORDER BY id{dir} LIMIT {chunk}), \
                 p AS MATERIALIZED (SELECT t.id, ({test}) IS TRUE AS v FROM {table} t \
                 WHERE {cond} AND t.id = ANY (ARRAY(SELECT id FROM c))) \
                 SELECT c.id, coalesce(p.v, false) AS passed, p.id IS NOT NULL AS live \
                 FROM c LEFT JOIN p ON p.id = c.id ORDER BY c.id{dir}"
            ),
        };
        let mut read = Vec::new();
        for r in db.fetch_all(&sql, &args).await? {
            let seen = Seen {
                live: r.bool("live")?.unwrap_or(false),
                passed: r.bool("passed")?.unwrap_or(false),
            };
            read.push((r.uuid("id")?, seen));
        }
        Ok(read)
    }
}

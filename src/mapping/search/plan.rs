//! A search plan and the queries that run it: which rows of one type a search reads (a
//! [`Cond`] holding the rows the caller may see and the search's filters), in which order
//! (sort keys, then the row id), from where (a keyset) and how many. The SQL of a search is
//! written here and in [`super::cond`], for both engines; the interactions only hold plans.

use super::super::filter::{reference_target, visible};
use super::super::ResourceMapping;
use super::{Cond, Ctx, Rendered, SearchError, SearchParam, SortKey, Target};
use crate::store::{one_of, Arg, Conn, Db, Dialect, StoreError};
use uuid::Uuid;

/// Where a page starts: after (or, walking backwards, before) the row with these sort values
/// and this id.
#[derive(Debug, Clone)]
pub struct Keyset {
    pub after: bool,
    pub values: Vec<Option<String>>,
    pub id: Uuid,
}

/// What one query of a search reads.
pub struct Plan<'a> {
    pub m: &'a dyn ResourceMapping,
    /// What every row meets: the rows the caller may see, and the search's filters.
    pub cond: Cond,
    /// The sort keys, each with whether it descends; the row id follows them.
    pub keys: Vec<(SortKey, bool)>,
    pub from: Option<Keyset>,
    /// The most rows read.
    pub limit: i64,
    /// Whether each row also carries the number of all the rows that meet `cond` (a window
    /// count: the conditions are evaluated once for both).
    pub count_all: bool,
}

/// A row of a page: its id and its sort values as text.
pub struct PageRow {
    pub id: Uuid,
    pub keys: Vec<Option<String>>,
}

impl Plan<'_> {
    /// The rows of `m` that meet `cond`, in row id order.
    pub fn by_id(m: &dyn ResourceMapping, cond: Cond, limit: i64) -> Plan<'_> {
        Plan {
            m,
            cond,
            keys: Vec::new(),
            from: None,
            limit,
            count_all: false,
        }
    }

    /// The page: its rows in the order read (descending when walking backwards), at most
    /// `limit`, and the count of all when asked for.
    pub async fn page(&self, db: &Db) -> Result<(Vec<PageRow>, Option<i64>), StoreError> {
        // In row id order and uncounted, a list an index reads in that order is walked.
        if self.keys.is_empty() && !self.count_all {
            if let Some((rest, list, keeps)) = super::walk::split(&self.cond) {
                return Ok((self.walk(db, &rest, list, keeps).await?, None));
            }
            if super::in_order::applies(db.dialect()) {
                if let Some((rest, list)) = super::in_order::split(&self.cond) {
                    return Ok((self.in_list_order(db, &rest, list).await?, None));
                }
            }
        }
        self.scan(db).await
    }

    /// The page, read by one query that finds every row meeting `cond`.
    pub(super) async fn scan(&self, db: &Db) -> Result<(Vec<PageRow>, Option<i64>), StoreError> {
        let dialect = db.dialect();
        let backwards = self.from.as_ref().is_some_and(|f| !f.after);
        let mut cond = self.cond.clone();
        if let Some(from) = &self.from {
            cond = cond.and(keyset_after(&self.keys, from, dialect));
        }
        let w = Rendered::of(&cond, dialect);
        let mut select = "SELECT t.id".to_owned();
        let mut args = w.with_args.clone();
        for (i, (k, _)) in self.keys.iter().enumerate() {
            select.push_str(&format!(", CAST({} AS TEXT) AS k{i}", k.expr));
            args.extend(k.args.iter().cloned());
        }
        if self.count_all {
            select.push_str(", count(*) OVER () AS total_matches");
        }
        args.extend(w.args.iter().cloned());
        let mut order = Vec::new();
        for (k, desc) in &self.keys {
            // Resources without a value come last, whichever the direction.
            order.push(format!(
                "CASE WHEN {} IS NULL THEN 1 ELSE 0 END{}",
                k.expr,
                if backwards { " DESC" } else { "" }
            ));
            args.extend(k.args.iter().cloned());
            order.push(format!(
                "{}{}",
                k.expr,
                if *desc != backwards { " DESC" } else { "" }
            ));
            args.extend(k.args.iter().cloned());
        }
        order.push(format!("t.id{}", if backwards { " DESC" } else { "" }));
        args.push(self.limit.into());
        let sql = format!(
            "{}{select} FROM {} t WHERE {} ORDER BY {} LIMIT ?",
            w.with,
            self.m.table(),
            w.sql,
            order.join(", ")
        );
        let mut rows = Vec::new();
        let mut total = None;
        for r in db.fetch_all(&sql, &args).await? {
            if self.count_all && total.is_none() {
                total = Some(r.bigint("total_matches")?);
            }
            let mut keys = Vec::with_capacity(self.keys.len());
            for i in 0..self.keys.len() {
                keys.push(r.text(&format!("k{i}"))?);
            }
            rows.push(PageRow {
                id: r.uuid("id")?,
                keys,
            });
        }
        Ok((rows, total))
    }

    /// How many rows meet `cond`.
    pub async fn count(&self, db: &Db) -> Result<i64, StoreError> {
        let w = Rendered::of(&self.cond, db.dialect());
        let sql = format!(
            "{}SELECT count(*) AS n FROM {} t WHERE {}",
            w.with,
            self.m.table(),
            w.sql
        );
        let r = db
            .fetch_optional(&sql, &w.all_args())
            .await?
            .ok_or_else(|| StoreError::Decode("count returned no row".into()))?;
        r.bigint("n")
    }

    /// `SELECT {columns}` of the rows that meet `cond`, at most `limit`, then `order`.
    fn select(&self, dialect: Dialect, columns: &str, order: &str) -> (String, Vec<Arg>) {
        let w = Rendered::of(&self.cond, dialect);
        let sql = format!(
            "{}SELECT {columns} FROM {} t WHERE {}{order} LIMIT {}",
            w.with,
            self.m.table(),
            w.sql,
            self.limit
        );
        (sql, w.all_args())
    }

    /// The rows that meet `cond` (at most `limit`, by row id), with their logical ids, read on
    /// `conn` (a transaction sees its own writes).
    pub async fn matches(&self, conn: &mut Conn<'_>) -> Result<Vec<(Uuid, String)>, StoreError> {
        let (sql, args) = self.select(conn.dialect(), "t.id, t.fhir_id", " ORDER BY t.id");
        conn.fetch_all(&sql, &args)
            .await?
            .iter()
            .map(|r| Ok((r.uuid("id")?, r.string("fhir_id")?)))
            .collect()
    }

    /// The ids of the rows that meet `cond`, at most `limit`, in no particular order.
    pub async fn ids(&self, db: &Db) -> Result<Vec<Uuid>, StoreError> {
        let (sql, args) = self.select(db.dialect(), "t.id", "");
        db.fetch_all(&sql, &args)
            .await?
            .iter()
            .map(|r| r.uuid("id"))
            .collect()
    }
}

/// The condition that a row comes after (or, walking backwards, before) the keyset's row in
/// the order of `keys` then row id, resources without a value last.
fn keyset_after(keys: &[(SortKey, bool)], from: &Keyset, dialect: Dialect) -> Cond {
    let cast = |ty: &str| match dialect {
        Dialect::Sqlite if ty == "text" => "?".to_owned(),
        _ => format!("CAST(? AS {ty})"),
    };
    let mut ors = Vec::new();
    // For each i: keys before i equal, key i strictly beyond.
    for i in 0..=keys.len() {
        let mut ands = Vec::new();
        let mut a: Vec<Arg> = Vec::new();
        for (j, (k, _)) in keys.iter().enumerate().take(i) {
            match &from.values[j] {
                None => ands.push(format!("{} IS NULL", k.expr)),
                Some(v) => {
                    ands.push(format!("{} = {}", k.expr, cast(k.cast)));
                    a.extend(k.args.iter().cloned());
                    a.push(v.clone().into());
                    continue;
                }
            }
            a.extend(k.args.iter().cloned());
        }
        if i == keys.len() {
            ands.push(if from.after { "t.id > ?" } else { "t.id < ?" }.to_owned());
            a.push(from.id.into());
        } else {
            let (k, desc) = &keys[i];
            match (&from.values[i], from.after) {
                // Nothing comes after a missing value but other missing values.
                (None, true) => continue,
                (None, false) => {
                    ands.push(format!("{} IS NOT NULL", k.expr));
                    a.extend(k.args.iter().cloned());
                }
                (Some(v), after) => {
                    let op = if *desc == after { "<" } else { ">" };
                    if after {
                        ands.push(format!(
                            "({e} {op} {p} OR {e} IS NULL)",
                            e = k.expr,
                            p = cast(k.cast)
                        ));
                        a.extend(k.args.iter().cloned());
                        a.push(v.clone().into());
                        a.extend(k.args.iter().cloned());
                    } else {
                        ands.push(format!("{} {op} {}", k.expr, cast(k.cast)));
                        a.extend(k.args.iter().cloned());
                        a.push(v.clone().into());
                    }
                }
            }
        }
        ors.push(Cond::Sql(format!("({})", ands.join(" AND ")), a));
    }
    Cond::Or(ors)
}

/// A row of `m` with its current version as served, when `resource_versions` holds it.
pub struct Served {
    pub row_id: Uuid,
    pub fhir_id: String,
    pub text: String,
}

/// The rows `ids` of `m` whose current version is stored, with it (one query: the rows
/// joined to their current versions by the unique type, id and version). Rows changed outside
/// FHIR writes since have none, and are left out.
pub async fn served(
    db: &Db,
    m: &dyn ResourceMapping,
    ids: &[Uuid],
) -> Result<Vec<Served>, StoreError> {
    let (among, list) = one_of(db.dialect(), "t.id", ids);
    let mut args: Vec<Arg> = vec![m.resource_type().into()];
    args.extend(list);
    let sql = format!(
        "SELECT t.id, v.fhir_id AS served_id, CAST(v.resource AS TEXT) AS resource_text FROM {} t \
         LEFT JOIN resource_versions v ON v.resource_type = ? AND v.fhir_id = t.fhir_id AND v.version_id = t.version_id \
         WHERE {among}",
        m.table()
    );
    let mut out = Vec::with_capacity(ids.len());
    for r in db.fetch_all(&sql, &args).await? {
        if let (Some(fhir_id), Some(text)) = (r.text("served_id")?, r.text("resource_text")?) {
            out.push(Served {
                row_id: r.uuid("id")?,
                fhir_id,
                text,
            });
        }
    }
    Ok(out)
}

/// The rows of `target` the reference `p` of rows `ids` of `source` names (`_include`), that
/// the context lets the caller see.
pub fn included(
    ctx: &Ctx,
    source: &dyn ResourceMapping,
    p: &SearchParam,
    target: &dyn ResourceMapping,
    ids: &[Uuid],
) -> Result<Cond, SearchError> {
    let reached = match p.target {
        Target::RefColumn { column, .. } => {
            let (among, args) = one_of(ctx.dialect, "r.id", ids);
            Cond::in_select(
                "t.id",
                format!("r.{column}"),
                format!("{} r", source.table()),
                Cond::Sql(among, args),
            )
        }
        _ => {
            let (among, mut args) = one_of(ctx.dialect, "s.row_id", ids);
            args.splice(0..0, [Arg::from(source.resource_type()), Arg::from(p.name)]);
            Cond::in_select(
                "t.fhir_id",
                "s.exact",
                "search_strings s",
                Cond::Sql(
                    format!("s.resource_type = ? AND s.param = ? AND {among}"),
                    args,
                ),
            )
        }
    };
    Ok(visible(target, &ctx.on(target.resource_type()))?.and(reached))
}

/// The rows of `source` whose reference `p` names rows `ids` of `target` (`_revinclude`),
/// that the context lets the caller see.
pub fn referring(
    ctx: &Ctx,
    source: &dyn ResourceMapping,
    p: &SearchParam,
    target: &dyn ResourceMapping,
    ids: &[Uuid],
) -> Result<Cond, SearchError> {
    debug_assert_eq!(reference_target(p), Some(target.resource_type()));
    let referring = match p.target {
        Target::RefColumn { column, .. } => {
            let (among, args) = one_of(ctx.dialect, &format!("t.{column}"), ids);
            Cond::Sql(among, args)
        }
        _ => {
            let (among, args) = one_of(ctx.dialect, "r.id", ids);
            Cond::in_select(
                "t.id",
                "s.row_id",
                "search_strings s",
                Cond::Sql(
                    // (An id is short: see `exact_bound`.)
                    "s.resource_type = ? AND s.param = ? AND length(s.exact) <= 250".into(),
                    vec![Arg::from(source.resource_type()), Arg::from(p.name)],
                )
                .and(Cond::in_select(
                    "s.exact",
                    "r.fhir_id",
                    format!("{} r", target.table()),
                    Cond::Sql(among, args),
                )),
            )
        }
    };
    Ok(visible(source, &ctx.on(source.resource_type()))?.and(referring))
}

//! Search conditions as structures: what a search parameter, a chain or `_has` asks of the rows
//! of a table (always aliased `t`), rendered to SQL for one engine in one place
//! ([`Rendered::of`]), every value bound. Nothing parses SQL to change it: the forms each engine
//! plans best are chosen here, from the structure.

use crate::store::{Arg, Dialect};

/// A condition on the rows of a table aliased `t`.
#[derive(Debug, Clone)]
pub enum Cond {
    /// SQL over `t` (and over tables and columns of the mappings' declarations), with a `?` per
    /// value: its text never holds a value, and holds no list subquery (that is [`Cond::In`]).
    Sql(String, Vec<Arg>),
    /// `expr IN (list)`: an expression of `t` is one of the values a list gives.
    In(String, List),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    /// `(c) IS NOT TRUE`: false or unknown (`:not`, which also keeps rows without a value).
    NotTrue(Box<Cond>),
    /// A condition (written as the first) that holds for exactly the rows whose `t.id` the list
    /// gives and that meet the row test (the third), each select of the list one an index reads
    /// in row id order: a page can walk the list in that order, testing each row, and stop at
    /// its end instead of finding every match first ([`super::walk`]). The fourth, when there
    /// is one, holds a test beside each select of the list, over that select's own tables,
    /// that every row meeting the row test meets (a code's value): a walk tests it as it reads
    /// the select and looks up only the rows that meet it; and the selects with their tests
    /// list the rows that meet the row test (the narrow list: a code and a value, found by an
    /// index in no row id order, but as few as match), for a walk past its rounds.
    Walkable(Box<Cond>, List, Box<Cond>, Option<Vec<Cond>>),
}

/// The values one or more subqueries list (`UNION ALL` of them). None of them refers to the
/// row `t` outside it: a subquery over a table of its own aliases it `t` too, shadowing the
/// outer one.
#[derive(Debug, Clone)]
pub struct List(pub Vec<Select>);

/// `SELECT {column} FROM {from} WHERE {cond}`.
#[derive(Debug, Clone)]
pub struct Select {
    pub column: String,
    pub from: String,
    pub cond: Cond,
}

impl Cond {
    /// SQL without values.
    pub fn sql(text: impl Into<String>) -> Cond {
        Cond::Sql(text.into(), Vec::new())
    }

    /// A condition no row meets.
    pub fn none() -> Cond {
        Cond::sql("1 = 0")
    }

    /// `expr IN (SELECT column FROM from WHERE cond)`.
    pub fn in_select(
        expr: impl Into<String>,
        column: impl Into<String>,
        from: impl Into<String>,
        cond: Cond,
    ) -> Cond {
        Cond::In(
            expr.into(),
            List(vec![Select {
                column: column.into(),
                from: from.into(),
                cond,
            }]),
        )
    }

    /// Both conditions.
    pub fn and(self, other: Cond) -> Cond {
        match self {
            Cond::And(mut all) => {
                all.push(other);
                Cond::And(all)
            }
            c => Cond::And(vec![c, other]),
        }
    }
}

/// A condition as SQL for one engine: the common table expressions it needs (`WITH ...`, with
/// their values) and the condition itself (with its values).
#[derive(Debug, Default, Clone)]
pub struct Rendered {
    pub with: String,
    pub with_args: Vec<Arg>,
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Rendered {
    /// `cond` as SQL for `dialect`. How a list is written is chosen per engine:
    ///
    /// - PostgreSQL: `expr = ANY (ARRAY(SELECT ...))`. The list is computed once (an InitPlan)
    ///   and is an index condition in every branch of a UNION ALL view, where a semi-join would
    ///   read the whole view.
    /// - SQLite: a list of `t.id` (outside another list) becomes a materialized common table
    ///   expression, `t.id IN m0`: SQLite copies a WHERE term into each branch of a UNION ALL
    ///   view (the observations) and keeps it outside too, evaluating its subqueries once per
    ///   copy; a materialized one is evaluated once and shared. Other lists stay `IN (...)`.
    pub fn of(cond: &Cond, dialect: Dialect) -> Rendered {
        let mut w = Writer {
            dialect,
            ctes: Vec::new(),
            with_args: Vec::new(),
        };
        let mut sql = String::new();
        let mut args = Vec::new();
        w.cond(cond, true, &mut sql, &mut args);
        Rendered {
            with: if w.ctes.is_empty() {
                String::new()
            } else {
                format!("WITH {} ", w.ctes.join(", "))
            },
            with_args: w.with_args,
            sql,
            args,
        }
    }

    /// The condition of one select of a list, with its values (lists inside it stay inside).
    pub fn of_select(select: &Select, dialect: Dialect) -> (String, Vec<Arg>) {
        Rendered::inline(&select.cond, dialect)
    }

    /// `cond` with its values, lists inside it kept inside.
    pub fn inline(cond: &Cond, dialect: Dialect) -> (String, Vec<Arg>) {
        let mut w = Writer {
            dialect,
            ctes: Vec::new(),
            with_args: Vec::new(),
        };
        let (mut sql, mut args) = (String::new(), Vec::new());
        w.cond(cond, false, &mut sql, &mut args);
        (sql, args)
    }

    /// Every value, in statement order, for a statement `{with}SELECT ... WHERE {sql}` whose
    /// select list has no values.
    pub fn all_args(&self) -> Vec<Arg> {
        let mut a = self.with_args.clone();
        a.extend(self.args.iter().cloned());
        a
    }
}

struct Writer {
    dialect: Dialect,
    ctes: Vec<String>,
    with_args: Vec<Arg>,
}

impl Writer {
    /// Writes `c`; `hoist`: whether a list of `t.id` may become a common table expression
    /// (not inside one already).
    fn cond(&mut self, c: &Cond, hoist: bool, out: &mut String, args: &mut Vec<Arg>) {
        match c {
            Cond::Sql(text, values) => {
                out.push_str(text);
                args.extend(values.iter().cloned());
            }
            Cond::And(all) | Cond::Or(all) if all.is_empty() => {
                out.push_str(if matches!(c, Cond::And(_)) {
                    "1 = 1"
                } else {
                    "1 = 0"
                });
            }
            Cond::And(all) if self.dialect == Dialect::Postgres && shares_lists(all) => {
                self.and_intersected(all, hoist, out, args);
            }
            Cond::Or(all) if equalities_of_one(all).is_some() => {
                // `x = ? OR x = ? ...` as `x IN (?, ?, ...)`: one list, planned once (SQLite
                // plans each OR term of a long disjunction, and took seconds over hundreds).
                let expr = equalities_of_one(all).unwrap_or_default();
                out.push_str(&format!(
                    "{expr} IN ({})",
                    crate::store::placeholders(all.len())
                ));
                for item in all {
                    if let Cond::Sql(_, values) = item {
                        args.extend(values.iter().cloned());
                    }
                }
            }
            Cond::And(all) | Cond::Or(all) => {
                let op = if matches!(c, Cond::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                out.push('(');
                for (i, item) in all.iter().enumerate() {
                    if i > 0 {
                        out.push_str(op);
                    }
                    self.cond(item, hoist, out, args);
                }
                out.push(')');
            }
            Cond::Not(inner) | Cond::NotTrue(inner) => {
                let not = matches!(c, Cond::Not(_));
                out.push_str(if not { "NOT (" } else { "(" });
                self.cond(inner, hoist, out, args);
                out.push_str(if not { ")" } else { ") IS NOT TRUE" });
            }
            Cond::Walkable(inner, ..) => self.cond(inner, hoist, out, args),
            Cond::In(expr, list) => match self.dialect {
                Dialect::Postgres => {
                    out.push_str(&format!("{expr} = ANY (ARRAY("));
                    self.list(list, hoist, out, args);
                    out.push_str("))");
                }
                Dialect::Sqlite if hoist && expr == "t.id" => {
                    let name = format!("m{}", self.ctes.len());
                    let (mut sql, mut values) = (String::new(), Vec::new());
                    self.list(list, false, &mut sql, &mut values);
                    // (Numbered before the lists inside it are written, so the order of the
                    // names is the order of their values.)
                    self.ctes
                        .push(format!("{name}(id) AS MATERIALIZED ({sql})"));
                    self.with_args.extend(values);
                    out.push_str(&format!("{expr} IN {name}"));
                }
                Dialect::Sqlite => {
                    out.push_str(&format!("{expr} IN ("));
                    self.list(list, hoist, out, args);
                    out.push(')');
                }
            },
        }
    }

    /// On PostgreSQL, `all` ANDed with the lists of one expression intersected into one
    /// (`expr = ANY (ARRAY(SELECT * FROM (l1) i0 INTERSECT SELECT * FROM (l2) i1))`): a hashed
    /// set operation, linear in the values listed. Each list a condition of its own, every row
    /// would scan each list's array (as many lists as parameters, as long as their matches).
    fn and_intersected(
        &mut self,
        all: &[Cond],
        hoist: bool,
        out: &mut String,
        args: &mut Vec<Arg>,
    ) {
        let mut done = vec![false; all.len()];
        out.push('(');
        for i in 0..all.len() {
            if done[i] {
                continue;
            }
            if i > 0 {
                out.push_str(" AND ");
            }
            let Cond::In(expr, _) = &all[i] else {
                self.cond(&all[i], hoist, out, args);
                continue;
            };
            out.push_str(&format!("{expr} = ANY (ARRAY("));
            let mut n = 0;
            for (j, item) in all.iter().enumerate().skip(i) {
                if let Cond::In(e, list) = item {
                    if e == expr {
                        done[j] = true;
                        if n > 0 {
                            out.push_str(" INTERSECT ");
                        }
                        out.push_str("SELECT * FROM (");
                        self.list(list, hoist, out, args);
                        out.push_str(&format!(") i{n}"));
                        n += 1;
                    }
                }
            }
            out.push_str("))");
        }
        out.push(')');
    }

    fn list(&mut self, list: &List, hoist: bool, out: &mut String, args: &mut Vec<Arg>) {
        for (i, s) in list.0.iter().enumerate() {
            if i > 0 {
                out.push_str(" UNION ALL ");
            }
            out.push_str(&format!("SELECT {} FROM {} WHERE ", s.column, s.from));
            self.cond(&s.cond, hoist, out, args);
        }
    }
}

/// The expression `x` when every one of `all` (two or more) is `x = ?` with its one value.
fn equalities_of_one(all: &[Cond]) -> Option<&str> {
    let mut expr = None;
    for c in all {
        let Cond::Sql(text, values) = c else {
            return None;
        };
        let x = text.strip_suffix(" = ?")?;
        if values.len() != 1 || x.contains('?') || x.contains(' ') || expr.is_some_and(|e| e != x) {
            return None;
        }
        expr = Some(x);
    }
    expr.filter(|_| all.len() > 1)
}

/// Whether two of `all` are lists of one expression.
fn shares_lists(all: &[Cond]) -> bool {
    let exprs: Vec<&String> = all
        .iter()
        .filter_map(|c| match c {
            Cond::In(e, _) => Some(e),
            _ => None,
        })
        .collect();
    exprs
        .iter()
        .enumerate()
        .any(|(i, e)| exprs[i + 1..].contains(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cond {
        Cond::And(vec![
            Cond::sql("t.deleted_at IS NULL"),
            Cond::in_select(
                "t.patient_id",
                "t.id",
                "patients t",
                Cond::in_select(
                    "t.id",
                    "s.row_id",
                    "search_strings s",
                    Cond::Sql("s.value = ?".into(), vec![Arg::Int(Some(1))]),
                ),
            ),
            Cond::Not(Box::new(Cond::in_select(
                "t.id",
                "s.row_id",
                "search_strings s",
                Cond::Sql("s.exact = ?".into(), vec![Arg::Int(Some(2))]),
            ))),
            Cond::Sql("t.status = ?".into(), vec![Arg::Int(Some(3))]),
        ])
    }

    fn ints(args: &[Arg]) -> Vec<i64> {
        args.iter()
            .map(|a| match a {
                Arg::Int(Some(v)) => *v,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn equalities_of_one_column_become_one_list() {
        let eq = |v: i64| Cond::Sql("t.fhir_id = ?".into(), vec![Arg::Int(Some(v))]);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let r = Rendered::of(&Cond::Or(vec![eq(1), eq(2), eq(3)]), dialect);
            assert_eq!(r.sql, "t.fhir_id IN (?, ?, ?)");
            assert_eq!(ints(&r.args), vec![1, 2, 3]);
        }
        // Not when the terms differ, or are more than one expression.
        let mixed = Cond::Or(vec![
            eq(1),
            Cond::Sql("t.b = ?".into(), vec![Arg::Int(Some(2))]),
        ]);
        assert_eq!(
            Rendered::of(&mixed, Dialect::Sqlite).sql,
            "(t.fhir_id = ? OR t.b = ?)"
        );
        let expr = Cond::Or(vec![
            Cond::Sql("t.a = 1 AND t.b = ?".into(), vec![Arg::Int(Some(1))]),
            Cond::Sql("t.a = 1 AND t.b = ?".into(), vec![Arg::Int(Some(2))]),
        ]);
        assert!(Rendered::of(&expr, Dialect::Sqlite).sql.contains(" OR "));
    }

    #[test]
    fn postgres_intersects_the_lists_of_one_expression_into_one_array() {
        let name = |v: i64| {
            Cond::in_select(
                "t.id",
                "s.row_id",
                "search_strings s",
                Cond::Sql("s.value = ?".into(), vec![Arg::Int(Some(v))]),
            )
        };
        let c = Cond::And(vec![
            Cond::Sql("t.a = ?".into(), vec![Arg::Int(Some(1))]),
            name(2),
            Cond::Sql("t.b = ?".into(), vec![Arg::Int(Some(3))]),
            name(4),
            name(5),
        ]);
        let r = Rendered::of(&c, Dialect::Postgres);
        assert_eq!(
            r.sql,
            "(t.a = ? AND t.id = ANY (ARRAY(\
             SELECT * FROM (SELECT s.row_id FROM search_strings s WHERE s.value = ?) i0 INTERSECT \
             SELECT * FROM (SELECT s.row_id FROM search_strings s WHERE s.value = ?) i1 INTERSECT \
             SELECT * FROM (SELECT s.row_id FROM search_strings s WHERE s.value = ?) i2)) AND t.b = ?)"
        );
        assert_eq!(ints(&r.args), vec![1, 2, 4, 5, 3]);
        // One list of an expression stays as it was.
        let one = Rendered::of(
            &Cond::And(vec![name(1), Cond::sql("t.c")]),
            Dialect::Postgres,
        );
        assert!(!one.sql.contains("INTERSECT"));
    }

    #[test]
    fn postgres_lists_become_arrays_at_every_depth() {
        let r = Rendered::of(&sample(), Dialect::Postgres);
        assert_eq!(r.with, "");
        assert_eq!(
            r.sql,
            "(t.deleted_at IS NULL AND t.patient_id = ANY (ARRAY(SELECT t.id FROM patients t WHERE \
             t.id = ANY (ARRAY(SELECT s.row_id FROM search_strings s WHERE s.value = ?)))) AND \
             NOT (t.id = ANY (ARRAY(SELECT s.row_id FROM search_strings s WHERE s.exact = ?))) AND t.status = ?)"
        );
        assert_eq!(ints(&r.args), vec![1, 2, 3]);
    }

    #[test]
    fn sqlite_lists_of_row_ids_become_materialized_tables_with_their_values_first() {
        let r = Rendered::of(&sample(), Dialect::Sqlite);
        assert_eq!(
            r.with,
            "WITH m0(id) AS MATERIALIZED (SELECT s.row_id FROM search_strings s WHERE s.value = ?), \
             m1(id) AS MATERIALIZED (SELECT s.row_id FROM search_strings s WHERE s.exact = ?) "
        );
        assert_eq!(
            r.sql,
            "(t.deleted_at IS NULL AND t.patient_id IN (SELECT t.id FROM patients t WHERE t.id IN m0) \
             AND NOT (t.id IN m1) AND t.status = ?)"
        );
        assert_eq!(ints(&r.with_args), vec![1, 2]);
        assert_eq!(ints(&r.args), vec![3]);
        assert_eq!(ints(&r.all_args()), vec![1, 2, 3]);
    }

    #[test]
    fn a_list_inside_a_materialized_one_stays_inside_it() {
        let c = Cond::in_select(
            "t.id",
            "t.id",
            "patients t",
            Cond::in_select("t.id", "s.row_id", "search_strings s", Cond::sql("1 = 1")),
        );
        let r = Rendered::of(&c, Dialect::Sqlite);
        assert_eq!(
            r.with,
            "WITH m0(id) AS MATERIALIZED (SELECT t.id FROM patients t WHERE t.id IN (SELECT s.row_id FROM search_strings s WHERE 1 = 1)) "
        );
        assert_eq!(r.sql, "t.id IN m0");
    }
}

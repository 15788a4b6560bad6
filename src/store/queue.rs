//! Writes that wait: a transaction queues the writes whose outcome nobody reads and sends them
//! together (see [`super::Tx::queue`]). A waiting write is either a row to insert, described
//! as a structure (its table, its columns and their values), which rows of the same shape join,
//! or any other statement, which waits as it is.

use super::Arg;
use std::collections::HashMap;
use std::sync::Arc;

/// The most rows one coalesced INSERT carries.
pub(super) const MAX_ROWS: usize = 100;

/// Each table's place in the foreign key order: a table comes after every table it references.
/// Tables in a cycle of foreign keys have no place.
pub(super) type TableOrder = HashMap<String, usize>;

/// What rows of one INSERT look like: the table and its columns, in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Shape {
    pub table: String,
    pub columns: Vec<String>,
    /// The single-row INSERT with a placeholder per column (SQLite runs it once per row).
    pub(super) single_row: String,
}

impl Shape {
    pub(super) fn new(table: &str, columns: &[&str]) -> Shape {
        let marks = vec!["?"; columns.len()].join(", ");
        Shape {
            table: table.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            single_row: format!(
                "INSERT INTO {table} ({}) VALUES ({marks})",
                columns.join(", ")
            ),
        }
    }

    /// Whether this is the shape of `table` with `columns`.
    pub(super) fn is(&self, table: &str, columns: &[&str]) -> bool {
        self.table == table
            && self.columns.len() == columns.len()
            && self.columns.iter().zip(columns).all(|(a, b)| a == b)
    }
}

/// What a waiting write does.
#[derive(Debug, Clone)]
pub(super) enum What {
    /// Rows of one shape, their values one row after the other.
    Insert(Arc<Shape>),
    /// Any other statement, with `?` placeholders.
    Statement(String),
}

/// A waiting write.
#[derive(Debug)]
pub(super) struct Queued {
    pub what: What,
    pub args: Vec<Arg>,
    /// How many rows an insert carries (1 for a statement).
    pub rows: usize,
}

impl Queued {
    /// A statement, run once with `args`.
    pub fn one(sql: &str, args: &[Arg]) -> Queued {
        Queued {
            what: What::Statement(sql.to_owned()),
            args: args.to_vec(),
            rows: 1,
        }
    }

    /// The SQL run once per row (an insert's single-row form), with `?` placeholders.
    pub fn row_sql(&self) -> &str {
        match &self.what {
            What::Insert(s) => &s.single_row,
            What::Statement(sql) => sql,
        }
    }

    /// The shape of an insert.
    pub fn shape(&self) -> Option<&Arc<Shape>> {
        match &self.what {
            What::Insert(s) => Some(s),
            What::Statement(_) => None,
        }
    }
}

/// Places the tables of `edges` (table, table its foreign key names, or none) so that each comes
/// after the tables it references; the tables of a cycle (other than a table naming itself) get
/// no place.
pub(super) fn table_order(edges: &[(String, Option<String>)]) -> TableOrder {
    use std::collections::{BTreeMap, BTreeSet};
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (child, parent) in edges {
        let set = parents.entry(child.as_str()).or_default();
        if let Some(p) = parent.as_deref().filter(|p| *p != child) {
            set.insert(p);
        }
    }
    let mut order = TableOrder::new();
    loop {
        let ready: Vec<&str> = parents
            .iter()
            .filter(|(t, ps)| !order.contains_key(**t) && ps.iter().all(|p| order.contains_key(*p)))
            .map(|(t, _)| *t)
            .collect();
        if ready.is_empty() {
            return order;
        }
        for t in ready {
            order.insert(t.to_owned(), order.len());
        }
    }
}

/// Puts waiting writes in the order they are sent. Between two statements (updates, deletes,
/// settings: they stay where they are, and nothing moves past them), the inserts are sorted by
/// their table's place in the foreign key order, each table's rows kept in the order they came,
/// and the rows of one shape that then stand together go in one insert of up to [`MAX_ROWS`]
/// rows. Every row still follows the rows it references, and the statements are far fewer: the
/// rows of one resource type written by many resources interleaved with their child rows
/// become a few inserts. An insert into a table without a place stays where it is.
pub(super) fn arrange(queued: Vec<Queued>, order: &TableOrder) -> Vec<Queued> {
    if order.is_empty() {
        return queued;
    }
    fn settle(run: &mut Vec<(usize, Queued)>, out: &mut Vec<Queued>) {
        run.sort_by_key(|(place, _)| *place);
        for (_, q) in run.drain(..) {
            match (out.last_mut(), q.shape()) {
                (Some(last), Some(shape))
                    if last.shape() == Some(shape) && last.rows + q.rows <= MAX_ROWS =>
                {
                    last.args.extend(q.args);
                    last.rows += q.rows;
                }
                _ => out.push(q),
            }
        }
    }
    let mut out = Vec::with_capacity(queued.len());
    let mut run: Vec<(usize, Queued)> = Vec::new();
    for q in queued {
        match q.shape().and_then(|s| order.get(&s.table)).copied() {
            Some(place) => run.push((place, q)),
            None => {
                settle(&mut run, &mut out);
                out.push(q);
            }
        }
    }
    settle(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_after_the_tables_they_reference_and_a_cycle_has_no_place() {
        let edge = |c: &str, p: Option<&str>| (c.to_owned(), p.map(str::to_owned));
        let order = table_order(&[
            edge("results", Some("tests")),
            edge("results", Some("patients")),
            edge("tests", Some("patients")),
            edge("patients", None),
            edge("tree", Some("tree")),
            edge("a", Some("b")),
            edge("b", Some("a")),
            edge("index", None),
        ]);
        assert!(order["patients"] < order["tests"]);
        assert!(order["tests"] < order["results"]);
        assert!(
            order.contains_key("tree"),
            "a table naming itself keeps a place"
        );
        assert!(order.contains_key("index"));
        assert!(!order.contains_key("a") && !order.contains_key("b"));
    }

    #[test]
    fn a_shape_knows_its_single_row_insert() {
        let s = Shape::new("t", &["a", "b"]);
        assert_eq!(s.single_row, "INSERT INTO t (a, b) VALUES (?, ?)");
        assert!(s.is("t", &["a", "b"]));
        assert!(!s.is("t", &["a"]) && !s.is("u", &["a", "b"]) && !s.is("t", &["b", "a"]));
    }

    fn insert(shape: &Arc<Shape>, v: i64) -> Queued {
        Queued {
            what: What::Insert(shape.clone()),
            args: vec![Arg::Int(Some(v))],
            rows: 1,
        }
    }

    fn described(q: &[Queued]) -> Vec<(String, usize, Vec<i64>)> {
        q.iter()
            .map(|q| {
                let vals = q
                    .args
                    .iter()
                    .map(|a| match a {
                        Arg::Int(Some(v)) => *v,
                        _ => -1,
                    })
                    .collect();
                let what = match &q.what {
                    What::Insert(s) => format!("insert {}", s.table),
                    What::Statement(sql) => sql.clone(),
                };
                (what, q.rows, vals)
            })
            .collect()
    }

    #[test]
    fn inserts_between_other_statements_go_by_table_and_in_fewer_statements() {
        let order: TableOrder = [("p", 0), ("c", 1)]
            .into_iter()
            .map(|(t, i)| (t.to_owned(), i))
            .collect();
        let (p, c, unknown) = (
            Arc::new(Shape::new("p", &["a"])),
            Arc::new(Shape::new("c", &["a"])),
            Arc::new(Shape::new("unknown", &["a"])),
        );
        let stmt = |sql: &str, v: i64| Queued::one(sql, &[Arg::Int(Some(v))]);
        let queued = vec![
            insert(&p, 1),
            insert(&c, 2),
            insert(&p, 3),
            insert(&c, 4),
            stmt("UPDATE p SET a = ? WHERE a = 1", 5),
            insert(&c, 6),
            insert(&p, 7),
            stmt("INSERT INTO c (a) SELECT a FROM p WHERE a = ?", 8),
            insert(&unknown, 9),
            insert(&c, 10),
        ];
        let want: Vec<(String, usize, Vec<i64>)> = [
            ("insert p", 2, vec![1, 3]),
            ("insert c", 2, vec![2, 4]),
            ("UPDATE p SET a = ? WHERE a = 1", 1, vec![5]),
            ("insert p", 1, vec![7]),
            ("insert c", 1, vec![6]),
            ("INSERT INTO c (a) SELECT a FROM p WHERE a = ?", 1, vec![8]),
            ("insert unknown", 1, vec![9]),
            ("insert c", 1, vec![10]),
        ]
        .into_iter()
        .map(|(s, n, v)| (s.to_owned(), n, v))
        .collect();
        assert_eq!(described(&arrange(queued, &order)), want);
        // No insert carries more than MAX_ROWS rows.
        let many: Vec<Queued> = (0..(MAX_ROWS as i64 + 5)).map(|v| insert(&c, v)).collect();
        let rows: Vec<usize> = arrange(many, &order).iter().map(|q| q.rows).collect();
        assert_eq!(rows, vec![MAX_ROWS, 5]);
        // Without the schema's order, nothing moves.
        let kept = arrange(vec![insert(&c, 1), insert(&p, 2)], &TableOrder::new());
        assert_eq!(
            described(&kept),
            vec![
                ("insert c".to_owned(), 1, vec![1]),
                ("insert p".to_owned(), 1, vec![2])
            ]
        );
    }
}

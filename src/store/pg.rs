//! Sending a PostgreSQL transaction's queued writes: every value bound, never written into the
//! SQL. Rows of one shape go as one `INSERT ... SELECT * FROM unnest($1::type[], ...)`, a bound
//! array per column: one statement whatever the number of rows (so one prepared statement per
//! shape), with the values in binary form. Other statements go bound as they are.

use super::arg::{parse_decimal, pg_query, pg_sql, JsonText};
use super::pg_conn::PgConn;
use super::queue::{arrange, Queued, Shape, TableOrder, What};
use super::{Arg, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use std::ops::Range;
use uuid::Uuid;

/// A PostgreSQL transaction whose queued writes may be on their way: a task owns the
/// connection while it sends them, and gives it back with how it went. Whatever comes next
/// (a read, the next writes, the commit) waits for it first, so the order holds, and a failure
/// among them surfaces there.
/// Dropped while writes are on their way, it stops their task: the connection is closed with
/// its statement (see [`PgConn`]).
pub(super) struct PgTx {
    pub tx: Option<PgConn>,
    pub sending: Option<tokio::task::JoinHandle<(PgConn, Result<(), StoreError>)>>,
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(h) = self.sending.take() {
            h.abort();
        }
    }
}

impl PgTx {
    pub fn new(tx: PgConn) -> PgTx {
        PgTx {
            tx: Some(tx),
            sending: None,
        }
    }

    /// The connection, once the writes on their way have been made.
    pub async fn conn(&mut self) -> Result<&mut PgConn, StoreError> {
        // Awaited where it is kept: dropped meanwhile, the task is stopped with this.
        if let Some(h) = self.sending.as_mut() {
            let done = h.await;
            self.sending = None;
            let (t, sent) = done.map_err(|_| StoreError::Closed)?;
            self.tx = Some(t);
            sent?;
        }
        self.tx.as_mut().ok_or(StoreError::Closed)
    }

    /// Whether writes are on their way.
    pub fn busy(&self) -> bool {
        self.sending.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Sends `queued` from a task of its own: the caller goes on meanwhile. Their statements
    /// and arrays are made here, while the writes sent before are being made.
    pub async fn send(
        &mut self,
        queued: Vec<Queued>,
        order: &TableOrder,
    ) -> Result<(), StoreError> {
        let pieces = pieces(arrange(queued, order))?;
        self.conn().await?;
        let Some(mut t) = self.tx.take() else {
            return Err(StoreError::Closed);
        };
        self.sending = Some(tokio::spawn(async move {
            let sent = send(&mut t, pieces).await;
            (t, sent)
        }));
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.conn().await?;
        match self.tx.take() {
            Some(t) => t.commit().await,
            None => Err(StoreError::Closed),
        }
    }
}

/// A queued write ready for PostgreSQL: its SQL (with `$n` placeholders) and bound values.
#[derive(Debug)]
pub(super) enum Piece {
    /// Rows: one array per column.
    Rows(String, Vec<Column>),
    Statement(String, Vec<Arg>),
}

/// The values of one column of inserted rows, as the array bound for it.
#[derive(Debug)]
pub(super) enum Column {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Json(Vec<Option<JsonText>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
    Date(Vec<Option<NaiveDate>>),
    Decimal(Vec<Option<rust_decimal::Decimal>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

/// The type of a column's values, as an array element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uuid,
    Text,
    Int,
    Bool,
    Json,
    Timestamp,
    Date,
    Decimal,
    Bytes,
}

impl Kind {
    /// The kind of a value; `None` for a list, which no array element holds.
    fn of(a: &Arg) -> Option<Kind> {
        Some(match a {
            Arg::Uuid(_) | Arg::OptUuid(_) => Kind::Uuid,
            Arg::Text(_) => Kind::Text,
            Arg::Int(_) => Kind::Int,
            Arg::Bool(_) => Kind::Bool,
            Arg::Json(_) | Arg::OptJson(_) => Kind::Json,
            Arg::Timestamp(_) => Kind::Timestamp,
            Arg::Date(_) => Kind::Date,
            Arg::Decimal(_) => Kind::Decimal,
            Arg::Bytes(_) => Kind::Bytes,
            Arg::UuidList(_) | Arg::TextList(_) => return None,
        })
    }

    fn array_type(self) -> &'static str {
        match self {
            Kind::Uuid => "uuid[]",
            Kind::Text => "text[]",
            Kind::Int => "int8[]",
            Kind::Bool => "bool[]",
            Kind::Json => "json[]",
            Kind::Timestamp => "timestamptz[]",
            Kind::Date => "date[]",
            Kind::Decimal => "numeric[]",
            Kind::Bytes => "bytea[]",
        }
    }

    /// The array of `values` (taken: texts and bytes move into it).
    fn column(self, values: impl Iterator<Item = Arg>) -> Column {
        macro_rules! take {
            ($variant:ident, $($pat:pat => $e:expr),+) => {
                Column::$variant(values.map(|a| match a { $($pat => $e,)+ _ => None }).collect())
            };
        }
        match self {
            Kind::Uuid => take!(Uuid, Arg::Uuid(v) => Some(v), Arg::OptUuid(v) => v),
            Kind::Text => take!(Text, Arg::Text(v) => v),
            Kind::Int => take!(Int, Arg::Int(v) => v),
            Kind::Bool => take!(Bool, Arg::Bool(v) => v),
            Kind::Json => take!(Json,
                Arg::Json(v) => Some(JsonText(v.to_string())),
                Arg::OptJson(v) => v.as_ref().map(|v| JsonText(v.to_string()))),
            Kind::Timestamp => take!(Timestamp, Arg::Timestamp(v) => v),
            Kind::Date => take!(Date, Arg::Date(v) => v),
            Kind::Decimal => {
                take!(Decimal, Arg::Decimal(v) => v.as_deref().and_then(parse_decimal))
            }
            Kind::Bytes => take!(Bytes, Arg::Bytes(v) => v),
        }
    }
}

/// Whether a value is SQL NULL (which fits a column of any kind).
fn is_null(a: &Arg) -> bool {
    match a {
        Arg::OptUuid(v) => v.is_none(),
        Arg::Text(v) | Arg::Decimal(v) => v.is_none(),
        Arg::Int(v) => v.is_none(),
        Arg::Bool(v) => v.is_none(),
        Arg::OptJson(v) => v.is_none(),
        Arg::Timestamp(v) => v.is_none(),
        Arg::Date(v) => v.is_none(),
        Arg::Bytes(v) => v.is_none(),
        Arg::Uuid(_) | Arg::Json(_) | Arg::UuidList(_) | Arg::TextList(_) => false,
    }
}

/// Rows of an insert, and the kind of each column's values.
type Run = (Range<usize>, Vec<Kind>);

/// The rows of an insert in runs whose every column holds values of one kind, with the kinds:
/// a NULL fits any kind; a column of NULLs only takes the kind of its first.
fn runs(args: &[Arg], width: usize) -> Result<Vec<Run>, StoreError> {
    let rows = args.len() / width.max(1);
    let mut out: Vec<Run> = Vec::new();
    // Per column of the current run: its kind, and whether only NULLs gave it.
    let mut kinds: Vec<(Kind, bool)> = Vec::new();
    let mut start = 0;
    let mut row_kinds = Vec::with_capacity(width);
    for r in 0..rows {
        let row = &args[r * width..(r + 1) * width];
        row_kinds.clear();
        for a in row {
            let k = Kind::of(a)
                .ok_or_else(|| StoreError::Decode("a list of ids cannot be inserted".into()))?;
            row_kinds.push((k, is_null(a)));
        }
        let fits = kinds
            .iter()
            .zip(&row_kinds)
            .all(|((k, only_null), (rk, null))| *null || *only_null || k == rk);
        if r > start && !fits {
            out.push((start..r, kinds.iter().map(|(k, _)| *k).collect()));
            kinds.clear();
            start = r;
        }
        if kinds.is_empty() {
            kinds.extend_from_slice(&row_kinds);
        } else {
            for (k, rk) in kinds.iter_mut().zip(row_kinds.iter().copied()) {
                if k.1 && !rk.1 {
                    *k = rk;
                }
            }
        }
    }
    if rows > start {
        out.push((start..rows, kinds.iter().map(|(k, _)| *k).collect()));
    }
    Ok(out)
}

/// The insert of rows of `shape` from arrays of `kinds`.
fn unnest_sql(shape: &Shape, kinds: &[Kind]) -> String {
    let arrays: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| format!("${}::{}", i + 1, k.array_type()))
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT * FROM unnest({})",
        shape.table,
        shape.columns.join(", "),
        arrays.join(", ")
    )
}

/// What a value taken into its column leaves behind.
const NULL: Arg = Arg::Int(None);

/// Queued writes, in the order they are sent, ready for PostgreSQL.
pub(super) fn pieces(queued: Vec<Queued>) -> Result<Vec<Piece>, StoreError> {
    let mut out = Vec::with_capacity(queued.len());
    for mut q in queued {
        match &q.what {
            What::Statement(sql) => out.push(Piece::Statement(pg_sql(sql), q.args)),
            What::Insert(shape) => {
                let width = shape.columns.len();
                if q.args.len() != width * q.rows {
                    return Err(StoreError::Decode(format!(
                        "{} values for {} rows of {width} columns",
                        q.args.len(),
                        q.rows
                    )));
                }
                for (rows, kinds) in runs(&q.args, width)? {
                    let columns = kinds
                        .iter()
                        .enumerate()
                        .map(|(c, k)| {
                            let args = &mut q.args;
                            k.column(
                                rows.clone()
                                    .map(|r| std::mem::replace(&mut args[r * width + c], NULL)),
                            )
                        })
                        .collect();
                    out.push(Piece::Rows(unnest_sql(shape, &kinds), columns));
                }
            }
        }
    }
    Ok(out)
}

/// Makes the writes of [`pieces`], in order.
async fn send(t: &mut PgConn, pieces: Vec<Piece>) -> Result<(), StoreError> {
    for p in pieces {
        match p {
            Piece::Statement(sql, args) => {
                t.run(pg_query(&sql, &args)).await?;
            }
            Piece::Rows(sql, columns) => {
                let mut q = sqlx::query(&sql);
                for c in columns {
                    q = match c {
                        Column::Uuid(v) => q.bind(v),
                        Column::Text(v) => q.bind(v),
                        Column::Int(v) => q.bind(v),
                        Column::Bool(v) => q.bind(v),
                        Column::Json(v) => q.bind(v),
                        Column::Timestamp(v) => q.bind(v),
                        Column::Date(v) => q.bind(v),
                        Column::Decimal(v) => q.bind(v),
                        Column::Bytes(v) => q.bind(v),
                    };
                }
                t.run(q).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rows(shape: &Arc<Shape>, args: Vec<Arg>, n: usize) -> Queued {
        Queued {
            what: What::Insert(shape.clone()),
            args,
            rows: n,
        }
    }

    #[test]
    fn rows_become_one_insert_of_bound_arrays_whatever_they_hold() {
        let shape = Arc::new(Shape::new("t", &["id", "name", "n"]));
        let evil = "O'Brien'); DROP TABLE t; -- $$ E'\\' \u{1F600}";
        let q = rows(
            &shape,
            vec![
                Arg::Uuid(Uuid::nil()),
                Arg::Text(Some(evil.into())),
                Arg::Int(None),
                Arg::OptUuid(None),
                Arg::Text(None),
                Arg::Int(Some(7)),
            ],
            2,
        );
        let got = pieces(vec![q]).unwrap();
        let [Piece::Rows(sql, columns)] = got.as_slice() else {
            panic!("{got:?}")
        };
        assert_eq!(
            sql,
            "INSERT INTO t (id, name, n) SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[])"
        );
        assert!(!sql.contains("Brien"), "no value is written into the SQL");
        match &columns[1] {
            Column::Text(v) => assert_eq!(v, &vec![Some(evil.to_owned()), None]),
            other => panic!("{other:?}"),
        }
        match &columns[0] {
            Column::Uuid(v) => assert_eq!(v, &vec![Some(Uuid::nil()), None]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_whose_values_change_kind_go_in_runs_of_one_kind() {
        let shape = Arc::new(Shape::new("t", &["a"]));
        let q = rows(
            &shape,
            vec![
                Arg::Text(None),
                Arg::Int(Some(1)),
                Arg::Int(None),
                Arg::Text(Some("x".into())),
            ],
            4,
        );
        let got: Vec<String> = pieces(vec![q])
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Piece::Rows(sql, c) => format!(
                    "{sql} {}",
                    match &c[0] {
                        Column::Int(v) => v.len(),
                        Column::Text(v) => v.len(),
                        _ => 0,
                    }
                ),
                Piece::Statement(sql, _) => sql,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "INSERT INTO t (a) SELECT * FROM unnest($1::int8[]) 3",
                "INSERT INTO t (a) SELECT * FROM unnest($1::text[]) 1",
            ]
        );
    }

    #[test]
    fn statements_go_bound_with_numbered_placeholders() {
        let got = pieces(vec![Queued::one(
            "UPDATE t SET a = ? WHERE b = ?",
            &[Arg::Int(Some(1)), Arg::Text(Some("'".into()))],
        )])
        .unwrap();
        let [Piece::Statement(sql, args)] = got.as_slice() else {
            panic!("{got:?}")
        };
        assert_eq!(sql, "UPDATE t SET a = $1 WHERE b = $2");
        assert_eq!(args.len(), 2);
    }
}

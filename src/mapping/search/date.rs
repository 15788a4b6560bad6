//! Date parameters: the range of the search value against the range of the stored value
//! (a Period, a date of lower precision, `meta.lastUpdated`), per prefix.

use super::*;

/// The last second of the range a timestamp column stands for at the precision in another
/// column (the timestamp itself when the precision is NULL).
pub(super) fn last_instant(column: &str, precision: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "CASE {precision} WHEN 'year' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+1 year', '-1 second') WHEN 'month' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+1 month', '-1 second') WHEN 'day' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+1 day', '-1 second') ELSE {column} END"
        ),
        Dialect::Postgres => format!(
            "CASE {precision} WHEN 'year' THEN {column} + interval '1 year' - interval '1 second' WHEN 'month' THEN {column} + interval '1 month' - interval '1 second' WHEN 'day' THEN {column} + interval '1 day' - interval '1 second' ELSE {column} END"
        ),
    }
}

/// The precision of a date or dateTime as sent (`year`, `month`, `day`), for the precision
/// columns of [`Target::Period`]; NULL for a time.
pub fn date_precision(value: Option<&serde_json::Value>) -> Arg {
    let p = value
        .and_then(serde_json::Value::as_str)
        .and_then(|s| match s.len() {
            4 => Some("year"),
            7 => Some("month"),
            10 => Some("day"),
            _ => None,
        });
    Arg::Text(p.map(str::to_owned))
}

/// The prefix of a date search value and the range of the rest (`ap` widened already); `what`
/// says what it must be.
fn range(
    p: &SearchParam,
    value: &str,
    what: &str,
) -> Result<(Prefix, crate::fhir::date::DateRange), SearchError> {
    let (prefix, rest) = Prefix::split(value);
    let mut r = parse_range(rest).ok_or_else(|| invalid(p, what))?;
    if prefix == Prefix::Ap {
        r = r.approximate(Utc::now());
    }
    Ok((prefix, r))
}

/// The condition of one value of a parameter of target `Period`.
pub(super) fn period(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    start: &'static str,
    end: &'static str,
    end_precision: Option<&'static str>,
) -> Result<Cond, SearchError> {
    Ok({
        let (prefix, r) = range(p, value, "not a date or dateTime")?;
        let (lo, hi) = (Arg::from(r.start), Arg::from(r.end));
        // The target's range [a, b]: an open start or end reaches out for ever.
        let a = format!("t.{start}");
        let b = match end_precision {
            None => format!("t.{end}"),
            Some(p) => last_instant(&format!("t.{end}"), &format!("t.{p}"), ctx.dialect),
        };
        let (a_ge, b_le) = (
            format!("({a} IS NOT NULL AND {a} >= ?)"),
            format!("({b} IS NOT NULL AND {b} < ?)"),
        );
        let (b_gt, a_lt) = (
            format!("({b} IS NULL OR {b} >= ?)"),
            format!("({a} IS NULL OR {a} < ?)"),
        );
        let (cond, args) = match prefix {
            Prefix::Eq => (format!("({a_ge} AND {b_le})"), vec![lo, hi]),
            Prefix::Ne => (format!("NOT ({a_ge} AND {b_le})"), vec![lo, hi]),
            Prefix::Gt => (b_gt, vec![hi]),
            Prefix::Lt => (a_lt, vec![lo]),
            Prefix::Ge => (format!("({a_ge} OR {b_gt})"), vec![lo, hi]),
            Prefix::Le => (format!("({b_le} OR {a_lt})"), vec![hi, lo]),
            Prefix::Sa => (format!("({a} IS NOT NULL AND {a} >= ?)"), vec![hi]),
            Prefix::Eb => (format!("({b} IS NOT NULL AND {b} < ?)"), vec![lo]),
            Prefix::Ap => (format!("({a_lt} AND {b_gt})"), vec![hi, lo]),
        };
        // A resource without the element has no range to compare.
        sql(
            format!("(({a} IS NOT NULL OR {b} IS NOT NULL) AND {cond})"),
            args,
        )
    })
}

/// The condition of one value of a parameter of target `LastUpdated`.
pub(super) fn last_updated(p: &SearchParam, value: &str) -> Result<Cond, SearchError> {
    Ok({
        let (prefix, r) = range(p, value, "not a date, dateTime or instant")?;
        let (lo, hi) = (Arg::from(r.start), Arg::from(r.end));
        let c = "t.updated_at";
        let (text, args) = match prefix {
            Prefix::Eq | Prefix::Ap => (format!("({c} >= ? AND {c} < ?)"), vec![lo, hi]),
            Prefix::Ne => (format!("NOT ({c} >= ? AND {c} < ?)"), vec![lo, hi]),
            Prefix::Gt | Prefix::Sa => (format!("{c} >= ?"), vec![hi]),
            Prefix::Lt | Prefix::Eb => (format!("{c} < ?"), vec![lo]),
            Prefix::Ge => (format!("{c} >= ?"), vec![lo]),
            Prefix::Le => (format!("{c} < ?"), vec![hi]),
        };
        sql(text, args)
    })
}

/// The condition of one value of a parameter of target `DateColumn`.
pub(super) fn date_column(
    p: &SearchParam,
    value: &str,
    ctx: &Ctx,
    column: &'static str,
    precision_column: &'static str,
) -> Result<Cond, SearchError> {
    Ok({
        let (prefix, r) = range(p, value, "not a date or dateTime")?;
        let (lo, hi) = r.days();
        let (lo, hi) = (Arg::Date(Some(lo)), Arg::Date(Some(hi)));
        // The target's own range [a, b): its value to the end of its precision.
        let a = format!("t.{column}");
        let b = match ctx.dialect {
                Dialect::Sqlite => format!(
                    "date(t.{column}, CASE t.{precision_column} WHEN 'year' THEN '+1 year' WHEN 'month' THEN '+1 month' ELSE '+1 day' END)"
                ),
                Dialect::Postgres => format!(
                    "CAST(t.{column} + CASE t.{precision_column} WHEN 'year' THEN interval '1 year' WHEN 'month' THEN interval '1 month' ELSE interval '1 day' END AS date)"
                ),
            };
        let (text, args) = match prefix {
            Prefix::Eq => (format!("({a} >= ? AND {b} <= ?)"), vec![lo, hi]),
            Prefix::Ne => (format!("NOT ({a} >= ? AND {b} <= ?)"), vec![lo, hi]),
            Prefix::Gt => (format!("{b} > ?"), vec![hi]),
            Prefix::Lt => (format!("{a} < ?"), vec![lo]),
            Prefix::Ge => (format!("({a} >= ? OR {b} > ?)"), vec![lo, hi]),
            Prefix::Le => (format!("({b} <= ? OR {a} < ?)"), vec![hi, lo]),
            Prefix::Sa => (format!("{a} >= ?"), vec![hi]),
            Prefix::Eb => (format!("{b} <= ?"), vec![lo]),
            Prefix::Ap => (format!("({a} < ? AND {b} > ?)"), vec![hi, lo]),
        };
        sql(text, args)
    })
}

//! Values bound to placeholders ([`Arg`]) and how each engine receives them.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Json(Value),
    /// JSON or SQL NULL.
    OptJson(Option<Value>),
    Timestamp(Option<DateTime<Utc>>),
    Date(Option<NaiveDate>),
    /// A decimal as its exact text (`37.50`): numeric on PostgreSQL, text on SQLite.
    Decimal(Option<String>),
    /// Binary content: bytea on PostgreSQL, a BLOB on SQLite.
    Bytes(Option<Vec<u8>>),
    /// A list of UUIDs: a `uuid[]` on PostgreSQL (`col = ANY (?)`); on SQLite a JSON array of
    /// their texts (see [`one_of`], which gives SQLite one placeholder per id instead).
    UuidList(Vec<Uuid>),
    /// A list of texts (NULL among them): a `text[]` on PostgreSQL; on SQLite a JSON array.
    TextList(Vec<Option<String>>),
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Uuid(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Self {
        Arg::Bool(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Timestamp(Some(v))
    }
}
impl From<Option<NaiveDate>> for Arg {
    fn from(v: Option<NaiveDate>) -> Self {
        Arg::Date(v)
    }
}

/// A decimal's text as PostgreSQL numeric, keeping its scale (`37.50` stays `37.50`).
pub fn parse_decimal(text: &str) -> Option<rust_decimal::Decimal> {
    use std::str::FromStr;
    rust_decimal::Decimal::from_str(text)
        .or_else(|_| rust_decimal::Decimal::from_scientific(text))
        .ok()
}

/// Adds `args` to the values of a waiting write. On SQLite (`lite`) a value its writer would
/// write out as text ([`lite_text`]) is written out here instead: by the caller, beside the
/// writer's thread, which a large transaction keeps busy, and for JSON instead of a deep copy of
/// the value.
pub(super) fn keep(lite: bool, into: &mut Vec<Arg>, args: &[Arg]) {
    if !lite {
        into.extend_from_slice(args);
        return;
    }
    into.extend(args.iter().map(|a| match lite_text(a) {
        Some(text) => Arg::Text(text),
        None => a.clone(),
    }));
}

/// [`keep`] of values the caller gives up: those bound as they are move.
pub(super) fn keep_owned(lite: bool, into: &mut Vec<Arg>, args: Vec<Arg>) {
    if !lite {
        into.extend(args);
        return;
    }
    into.extend(args.into_iter().map(|a| match lite_text(&a) {
        Some(text) => Arg::Text(text),
        None => a,
    }));
}

/// The text SQLite keeps for a value that is not text in Rust (JSON, a UUID, a time, a date, a
/// list of UUIDs), `Some(None)` for its NULL; `None` for a value bound as it is.
pub(super) fn lite_text(a: &Arg) -> Option<Option<String>> {
    Some(match a {
        Arg::Json(v) => Some(v.to_string()),
        Arg::OptJson(v) => v.as_ref().map(Value::to_string),
        Arg::Uuid(v) => Some(v.hyphenated().to_string()),
        Arg::OptUuid(v) => v.map(|u| u.hyphenated().to_string()),
        Arg::Timestamp(v) => v.as_ref().map(sqlite_timestamp),
        Arg::Date(v) => v.map(|d| d.format("%Y-%m-%d").to_string()),
        Arg::UuidList(v) => Some(
            Value::Array(
                v.iter()
                    .map(|u| Value::String(u.hyphenated().to_string()))
                    .collect(),
            )
            .to_string(),
        ),
        Arg::TextList(v) => Some(serde_json::json!(v).to_string()),
        Arg::Text(_) | Arg::Int(_) | Arg::Bool(_) | Arg::Decimal(_) | Arg::Bytes(_) => return None,
    })
}

/// Formats a timestamp the way the SQLite schema stores it (sortable text, milliseconds).
pub fn sqlite_timestamp(ts: &DateTime<Utc>) -> String {
    millis_text(ts).unwrap_or_else(|| ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// `2026-12-06T10:00:00.123Z` for a time in the years 0–9999, made digit by digit: every
/// written row and every audit event has one, and chrono's formatter costs more than the rest
/// of an event.
pub fn millis_text(t: &DateTime<Utc>) -> Option<String> {
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let ms = (t.nanosecond() / 1_000_000).min(999);
    let mut out = String::with_capacity(24);
    for (n, width, after) in [
        (t.year() as u32, 4, '-'),
        (t.month(), 2, '-'),
        (t.day(), 2, 'T'),
        (t.hour(), 2, ':'),
        (t.minute(), 2, ':'),
        (t.second(), 2, '.'),
        (ms, 3, 'Z'),
    ] {
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
        }
        out.push(after);
    }
    Some(out)
}

/// Rewrites `?` placeholders to PostgreSQL's `$n`. Our SQL never has `?` inside literals.
pub(super) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// JSON sent to PostgreSQL as `json`, its text as is: a `jsonb` parameter would be normalised
/// before it reaches a `json` column (`1e-22` becoming `0.0000000000000000000001`). PostgreSQL
/// casts it to `jsonb` where a column is `jsonb`.
#[derive(Debug)]
pub(super) struct JsonText(pub(super) String);

impl sqlx::Type<sqlx::Postgres> for JsonText {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("json")
    }
}

impl sqlx::postgres::PgHasArrayType for JsonText {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("_json")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for JsonText {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(self.0.as_bytes());
        Ok(sqlx::encode::IsNull::No)
    }
}

pub(super) fn pg_query<'q>(sql: &'q str, args: &[Arg]) -> PgQuery<'q> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Uuid(v) => q.bind(*v),
            Arg::OptUuid(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::Int(v) => q.bind(*v),
            Arg::Bool(v) => q.bind(*v),
            Arg::Json(v) => q.bind(JsonText(v.to_string())),
            Arg::OptJson(v) => q.bind(v.as_ref().map(|v| JsonText(v.to_string()))),
            Arg::Timestamp(v) => q.bind(*v),
            Arg::Date(v) => q.bind(*v),
            Arg::Decimal(v) => q.bind(v.as_deref().and_then(parse_decimal)),
            Arg::Bytes(v) => q.bind(v.clone()),
            Arg::UuidList(v) => q.bind(v.clone()),
            Arg::TextList(v) => q.bind(v.clone()),
        };
    }
    q
}

//! The matches of many searches at once (a batch's conditional criteria): what
//! [`Plan::matches`] finds for each plan, in as few statements as their SQL allows.
//!
//! On PostgreSQL, plans of one type whose conditions are the same SQL with values of the same
//! kinds (two `identifier=system|value` criteria, say) go as one statement: their values as
//! bound arrays, one row per plan (`unnest(...) WITH ORDINALITY`), and the plan's query run for
//! each row (`CROSS JOIN LATERAL`), which PostgreSQL plans once. Every value stays bound. Other
//! plans, and every plan on SQLite (whose queries cost no round trip), are read one by one.

use super::plan::Plan;
use super::Rendered;
use crate::store::{Arg, Conn, Dialect, StoreError};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Plans that can share a statement: table, condition SQL, limit, kinds of values.
type Group = (String, String, i64, Vec<u8>);

/// The rows each plan's condition finds (at most its limit, by row id), with their logical
/// ids, in the order of `plans`; read on `conn` (a transaction sees its own writes).
pub async fn matches_each(
    plans: &[Plan<'_>],
    conn: &mut Conn<'_>,
) -> Result<Vec<Vec<(Uuid, String)>>, StoreError> {
    let mut out: Vec<Vec<(Uuid, String)>> = vec![Vec::new(); plans.len()];
    let dialect = conn.dialect();
    let mut groups: BTreeMap<Group, Vec<(usize, Vec<Arg>)>> = BTreeMap::new();
    for (i, p) in plans.iter().enumerate() {
        let w = Rendered::of(&p.cond, dialect);
        let kinds: Option<Vec<u8>> = w.args.iter().map(kind).collect();
        match kinds {
            Some(kinds) if dialect == Dialect::Postgres && w.with.is_empty() => {
                groups
                    .entry((p.m.table().to_owned(), w.sql, p.limit, kinds))
                    .or_default()
                    .push((i, w.args));
            }
            _ => out[i] = p.matches(conn).await?,
        }
    }
    for ((table, cond, limit, kinds), members) in groups {
        if let [(i, _)] = members.as_slice() {
            out[*i] = plans[*i].matches(conn).await?;
            continue;
        }
        let (sql, args) = lateral(&table, &cond, limit, &kinds, &members);
        for r in conn.fetch_all(&sql, &args).await? {
            let k = usize::try_from(r.int("k")?)
                .ok()
                .and_then(|k| k.checked_sub(1))
                .and_then(|k| members.get(k))
                .ok_or_else(|| StoreError::Decode("a row of no plan".into()))?;
            out[k.0].push((r.uuid("id")?, r.string("fhir_id")?));
        }
    }
    Ok(out)
}

/// The kind of a value that can travel in a bound array: 0 text, 1 UUID.
fn kind(a: &Arg) -> Option<u8> {
    match a {
        Arg::Text(_) => Some(0),
        Arg::Uuid(_) | Arg::OptUuid(Some(_)) => Some(1),
        _ => None,
    }
}

/// One statement for plans of the same SQL: value `n` of each plan in array `n` (a column of
/// `v`), the `?` of the condition naming it in turn, `k` the plan's place in `members` plus one.
fn lateral(
    table: &str,
    cond: &str,
    limit: i64,
    kinds: &[u8],
    members: &[(usize, Vec<Arg>)],
) -> (String, Vec<Arg>) {
    let mut arrays = Vec::with_capacity(kinds.len());
    let mut args = Vec::with_capacity(kinds.len());
    for (n, k) in kinds.iter().enumerate() {
        let values = members.iter().map(|(_, a)| &a[n]);
        if *k == 0 {
            arrays.push("?::text[]");
            args.push(Arg::TextList(
                values
                    .map(|a| match a {
                        Arg::Text(t) => t.clone(),
                        _ => None,
                    })
                    .collect(),
            ));
        } else {
            arrays.push("?::uuid[]");
            args.push(Arg::UuidList(
                values
                    .filter_map(|a| match a {
                        Arg::Uuid(u) | Arg::OptUuid(Some(u)) => Some(*u),
                        _ => None,
                    })
                    .collect(),
            ));
        }
    }
    let mut n = 0;
    let mut cond_v = String::with_capacity(cond.len() + 8 * kinds.len());
    for c in cond.chars() {
        if c == '?' {
            n += 1;
            cond_v.push_str(&format!("v.a{n}"));
        } else {
            cond_v.push(c);
        }
    }
    let names: Vec<String> = (1..=kinds.len()).map(|n| format!("a{n}")).collect();
    let sql = format!(
        "SELECT CAST(v.k AS INTEGER) AS k, s.id, s.fhir_id FROM unnest({}) WITH ORDINALITY AS v({}, k) \
         CROSS JOIN LATERAL (SELECT t.id, t.fhir_id FROM {table} t WHERE {cond_v} \
         ORDER BY t.id LIMIT {limit}) s",
        arrays.join(", "),
        names.join(", "),
    );
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_of_one_sql_read_their_values_from_bound_arrays() {
        let members = vec![
            (
                0,
                vec![
                    Arg::Text(Some("a'; DROP TABLE users".into())),
                    Arg::Uuid(Uuid::nil()),
                ],
            ),
            (3, vec![Arg::Text(None), Arg::OptUuid(Some(Uuid::max()))]),
        ];
        let (sql, args) = lateral("users", "t.x = ? AND t.y = ?", 2, &[0, 1], &members);
        assert_eq!(
            sql,
            "SELECT CAST(v.k AS INTEGER) AS k, s.id, s.fhir_id FROM unnest(?::text[], ?::uuid[]) WITH ORDINALITY AS \
             v(a1, a2, k) CROSS JOIN LATERAL (SELECT t.id, t.fhir_id FROM users t WHERE \
             t.x = v.a1 AND t.y = v.a2 ORDER BY t.id LIMIT 2) s"
        );
        assert!(!sql.contains("DROP"), "no value is written into the SQL");
        match &args[..] {
            [Arg::TextList(t), Arg::UuidList(u)] => {
                assert_eq!(t, &vec![Some("a'; DROP TABLE users".to_owned()), None]);
                assert_eq!(u, &vec![Uuid::nil(), Uuid::max()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(kind(&Arg::OptUuid(None)), None, "a NULL UUID goes alone");
    }
}

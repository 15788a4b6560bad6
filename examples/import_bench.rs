//! Import benchmark helper (see benches/import.sh).
//!
//! `import_bench prepare --patients N --out DIR` writes the Synthea patient bundles of
//! tests/data/synthea-bundles replicated under fresh ids until they hold N patients: copy k of a
//! bundle has every UUID in it (fullUrls, ids, references, UUID-valued identifiers) with its
//! first eight hex digits replaced by k, so copies never collide and references inside a copy
//! stay whole. The practitioner batch the conditional-reference bundles need is written once.
//!
//! `import_bench rows --from URL --database-url URL --bundles N` is the same-rows floor: every row
//! of the database at `--from` (an import's result) inserted into a fresh database with plain SQL
//! the way the server writes (see `rows_floor`), in N transactions.
//!
//! `import_bench floor --database-url URL DIR` is the JSON-row floor: the resources of the types
//! the server hosts, from every bundle under DIR, inserted as JSON rows
//! (`floor_resources (id, resource_type, resource)`) with one prepared INSERT each and one
//! transaction per bundle; it prints resources per second. Figures only: nothing is asserted.

use anyhow::{bail, Context};
use serde_json::Value;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::time::Instant;

const HOSTED: &[&str] = &[
    "AllergyIntolerance",
    "DiagnosticReport",
    "Encounter",
    "MedicationRequest",
    "Observation",
    "Patient",
    "Practitioner",
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/synthea-bundles")
}

/// The patient bundles (one Patient each) and the practitioner batch.
fn sources() -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut patients = Vec::new();
    let mut once = Vec::new();
    for sub in ["standalone", "hiv-conditional"] {
        for e in std::fs::read_dir(data_dir().join(sub))? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.ends_with(".json") || name.starts_with("hospitalInformation") {
                continue;
            }
            if name.starts_with("practitionerInformation") {
                once.push(p);
            } else {
                patients.push(p);
            }
        }
    }
    patients.sort();
    Ok((patients, once))
}

/// `text` with the first 8 hex digits of every UUID replaced by `k`.
fn replicate(text: &str, k: usize) -> String {
    let prefix = format!("{k:08x}");
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let is_hex = |c: u8| c.is_ascii_hexdigit();
    while i < b.len() {
        let candidate = i + 36 <= b.len()
            && (i == 0 || !is_hex(b[i - 1]))
            && b[i..i + 36].iter().enumerate().all(|(j, c)| match j {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => is_hex(*c),
            })
            && (i + 36 == b.len() || !is_hex(b[i + 36]));
        if candidate {
            out.push_str(&prefix);
            out.push_str(&text[i + 8..i + 36]);
            i += 36;
        } else {
            let ch = text[i..].chars().next().unwrap_or('\0');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn prepare(patients: usize, out: &Path) -> anyhow::Result<()> {
    let (bundles, once) = sources()?;
    std::fs::create_dir_all(out)?;
    for p in &once {
        std::fs::copy(p, out.join(p.file_name().unwrap()))?;
    }
    let mut written = 0;
    let mut k = 0;
    while written < patients {
        for p in &bundles {
            if written == patients {
                break;
            }
            let text = std::fs::read_to_string(p)?;
            let name = format!("{k:05}-{}", p.file_name().unwrap().to_string_lossy());
            std::fs::write(out.join(name), replicate(&text, k))?;
            written += 1;
        }
        k += 1;
    }
    println!("wrote {written} patient bundles to {}", out.display());
    Ok(())
}

async fn floor(url: &str, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("json"))
        .collect();
    files.sort();
    let bundles: Vec<Vec<(String, String, String)>> = files
        .iter()
        .map(|f| -> anyhow::Result<_> {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(f)?)?;
            Ok(v["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let r = &e["resource"];
                    let t = r["resourceType"].as_str()?;
                    HOSTED.contains(&t).then(|| {
                        (
                            r["id"].as_str().unwrap_or_default().to_owned(),
                            t.to_owned(),
                            r.to_string(),
                        )
                    })
                })
                .collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let total: usize = bundles.iter().map(Vec::len).sum();
    let started;
    if url.starts_with("sqlite:") {
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let mut c = sqlx::SqliteConnection::connect_with(
            &opts
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal),
        )
        .await?;
        sqlx::query("CREATE TABLE floor_resources (id TEXT PRIMARY KEY, resource_type TEXT NOT NULL, resource TEXT NOT NULL)")
            .execute(&mut c)
            .await?;
        started = Instant::now();
        for b in &bundles {
            let mut tx = c.begin().await?;
            for (id, t, r) in b {
                sqlx::query("INSERT OR REPLACE INTO floor_resources (id, resource_type, resource) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(t)
                    .bind(r)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    } else if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query("CREATE TABLE floor_resources (id text PRIMARY KEY, resource_type text NOT NULL, resource jsonb NOT NULL)")
            .execute(&mut c)
            .await?;
        started = Instant::now();
        for b in &bundles {
            let mut tx = c.begin().await?;
            for (id, t, r) in b {
                sqlx::query("INSERT INTO floor_resources (id, resource_type, resource) VALUES ($1, $2, CAST($3 AS jsonb)) ON CONFLICT (id) DO UPDATE SET resource = EXCLUDED.resource")
                    .bind(id)
                    .bind(t)
                    .bind(r)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    } else {
        bail!("the database URL must start with sqlite: or postgres");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "plain-SQL floor: {total} resources in {} bundles in {secs:.2} s ({:.0} resources/s)",
        bundles.len(),
        total as f64 / secs
    );
    Ok(())
}

/// A value read from a SQLite column, as stored.
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Tables in an order where every table comes after those its foreign keys name.
fn dependency_order(tables: Vec<(String, Vec<String>)>) -> Vec<String> {
    let mut done: Vec<String> = Vec::new();
    let mut left = tables;
    while !left.is_empty() {
        let before = left.len();
        let (ready, rest): (Vec<_>, Vec<_>) = left
            .into_iter()
            .partition(|(t, deps)| deps.iter().all(|d| d == t || done.contains(d)));
        done.extend(ready.into_iter().map(|(t, _)| t));
        left = rest;
        if left.len() == before {
            // A cycle: the rest in any order (not in this schema).
            done.extend(left.drain(..).map(|(t, _)| t));
        }
    }
    done
}

/// The same-rows floor: every row the import wrote (each table of the database at `from`,
/// migrations' bookkeeping aside) inserted into a fresh database of the same schema at `to` with
/// the server's own way of writing (SQLite: rusqlite, one kept prepared INSERT per row;
/// PostgreSQL: INSERTs of up to 100 rows), in `bundles` transactions of equal size (the import's bundles hold
/// these rows; one transaction per bundle). Tables go in foreign-key order and the target's
/// triggers are dropped: what is timed is inserting rows and keeping their indexes and
/// constraints, nothing the mapping layer adds.
async fn rows_floor(from: &str, to: &str, bundles: usize) -> anyhow::Result<()> {
    let db = expediente::store::Db::connect(to).await?;
    db.migrate().await?;
    db.close().await;
    // The resources those rows hold: each stored resource has a version.
    let source = expediente::store::Db::connect(from).await?;
    let resources = source
        .fetch_optional(
            "SELECT count(*) AS n FROM (SELECT DISTINCT resource_type, fhir_id FROM resource_versions) x",
            &[],
        )
        .await?
        .context("no count")?
        .bigint("n")?;
    source.close().await;
    let bundles = bundles.max(1);
    let (total, secs) = if from.starts_with("sqlite:") {
        rows_floor_sqlite(from, to, bundles).await?
    } else if from.starts_with("postgres") {
        rows_floor_postgres(from, to, bundles).await?
    } else {
        bail!("the database URL must start with sqlite: or postgres");
    };
    println!(
        "same-rows floor: {total} rows of {resources} resources in {bundles} transactions in {secs:.2} s ({:.0} resources/s, {:.0} rows/s)",
        resources as f64 / secs,
        total as f64 / secs
    );
    Ok(())
}

async fn rows_floor_sqlite(from: &str, to: &str, bundles: usize) -> anyhow::Result<(usize, f64)> {
    use sqlx::{Row, TypeInfo, ValueRef};
    let mut src = sqlx::SqliteConnection::connect(from).await?;
    let opts: sqlx::sqlite::SqliteConnectOptions = to.parse()?;
    let path = opts.get_filename().to_path_buf();
    let mut dst = sqlx::SqliteConnection::connect_with(
        &opts
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true)
            .pragma("cache_size", "-262144"),
    )
    .await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut src)
    .await?;
    let mut tables = Vec::new();
    for t in names {
        let deps: Vec<String> =
            sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_list(?)")
                .bind(&t)
                .fetch_all(&mut src)
                .await?;
        tables.push((t, deps));
    }
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(&mut dst)
            .await?;
    for t in triggers {
        sqlx::query(&format!("DROP TRIGGER \"{t}\""))
            .execute(&mut dst)
            .await?;
    }
    let order = dependency_order(tables);
    // What the migrations seeded (roles, codes) is replaced by the source's rows.
    for t in order.iter().rev() {
        sqlx::query(&format!("DELETE FROM \"{t}\""))
            .execute(&mut dst)
            .await?;
    }
    // (insert statement, row) for every row, read before the clock starts.
    let mut work: Vec<(String, Vec<Cell>)> = Vec::new();
    for t in order {
        // Generated columns are computed, not inserted.
        let cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_xinfo(?) WHERE hidden = 0")
                .bind(&t)
                .fetch_all(&mut src)
                .await?
                .into_iter()
                .map(|c: String| format!("\"{c}\""))
                .collect();
        let rows = sqlx::query(&format!("SELECT {} FROM \"{t}\"", cols.join(", ")))
            .fetch_all(&mut src)
            .await?;
        let sql = format!(
            "INSERT INTO \"{t}\" ({}) VALUES ({})",
            cols.join(", "),
            vec!["?"; cols.len()].join(", ")
        );
        for r in &rows {
            let mut cells = Vec::with_capacity(cols.len());
            for i in 0..cols.len() {
                let raw = r.try_get_raw(i)?;
                let cell = if raw.is_null() {
                    Cell::Null
                } else {
                    match raw.type_info().name() {
                        "INTEGER" => Cell::Int(r.try_get(i)?),
                        "REAL" => Cell::Real(r.try_get(i)?),
                        "BLOB" => Cell::Blob(r.try_get(i)?),
                        _ => Cell::Text(r.try_get(i)?),
                    }
                };
                cells.push(cell);
            }
            work.push((sql.clone(), cells));
        }
    }
    dst.close().await?;
    // The rows go in through rusqlite, one prepared (and kept) statement per table, one row per
    // statement: the way the server's SQLite writer runs its writes, with its settings.
    let total = work.len();
    let per = total.div_ceil(bundles).max(1);
    let secs = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
             PRAGMA cache_size = -262144; PRAGMA temp_store = memory; \
             PRAGMA wal_autocheckpoint = 65536;",
        )?;
        let started = Instant::now();
        for chunk in work.chunks(per) {
            let tx = conn.transaction()?;
            for (sql, cells) in chunk {
                let mut stmt = tx.prepare_cached(sql)?;
                use rusqlite::types::{ToSqlOutput, ValueRef};
                let values = cells.iter().map(|c| {
                    ToSqlOutput::Borrowed(match c {
                        Cell::Null => ValueRef::Null,
                        Cell::Int(v) => ValueRef::Integer(*v),
                        Cell::Real(v) => ValueRef::Real(*v),
                        Cell::Text(v) => ValueRef::Text(v.as_bytes()),
                        Cell::Blob(v) => ValueRef::Blob(v),
                    })
                });
                stmt.execute(rusqlite::params_from_iter(values))?;
            }
            tx.commit()?;
        }
        Ok(started.elapsed().as_secs_f64())
    })
    .await??;
    Ok((total, secs))
}

async fn rows_floor_postgres(from: &str, to: &str, bundles: usize) -> anyhow::Result<(usize, f64)> {
    use sqlx::Row;
    let mut src = sqlx::PgConnection::connect(from).await?;
    let mut dst = sqlx::PgConnection::connect(to).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut src)
    .await?;
    let mut tables = Vec::new();
    for t in names {
        let deps: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT c.confrelid::regclass::text FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = CAST($1 AS regclass)",
        )
        .bind(&t)
        .fetch_all(&mut src)
        .await?;
        tables.push((t, deps));
    }
    // Triggers off for the copy (constraints stay).
    for (t, _) in &tables {
        sqlx::query(&format!("ALTER TABLE \"{t}\" DISABLE TRIGGER USER"))
            .execute(&mut dst)
            .await?;
    }
    let order = dependency_order(tables);
    // What the migrations seeded (roles, codes) is replaced by the source's rows.
    for t in order.iter().rev() {
        sqlx::query(&format!("DELETE FROM \"{t}\""))
            .execute(&mut dst)
            .await?;
    }
    // Per table: the start of its INSERT, each column's cast, its rows.
    type Table = (String, Vec<String>, Vec<Vec<Option<String>>>);
    let mut tables: Vec<Table> = Vec::new();
    for t in order {
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = CAST($1 AS regclass) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        )
        .bind(&t)
        .fetch_all(&mut src)
        .await?;
        if cols.is_empty() {
            continue;
        }
        let select = cols
            .iter()
            .map(|(c, _)| format!("CAST(\"{c}\" AS text)"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!("SELECT {select} FROM \"{t}\""))
            .fetch_all(&mut src)
            .await?;
        let head = format!(
            "INSERT INTO \"{t}\" ({}) VALUES ",
            cols.iter()
                .map(|(c, _)| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let casts = cols.iter().map(|(_, ty)| ty.clone()).collect();
        let mut cells = Vec::with_capacity(rows.len());
        for r in &rows {
            cells.push(
                (0..cols.len())
                    .map(|i| r.try_get::<Option<String>, _>(i))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        tables.push((head, casts, cells));
    }
    // The rows in order, then cut into `bundles` transactions; within one, the consecutive rows of
    // a table go in INSERTs of up to 100 rows each (a round trip per row is what costs here, and
    // the server's own writes are multi-row INSERTs too).
    let work: Vec<(usize, &Vec<Option<String>>)> = tables
        .iter()
        .enumerate()
        .flat_map(|(t, (_, _, rows))| rows.iter().map(move |r| (t, r)))
        .collect();
    let total = work.len();
    let per = total.div_ceil(bundles).max(1);
    let started = Instant::now();
    for chunk in work.chunks(per) {
        let mut tx = dst.begin().await?;
        for run in chunk.chunk_by(|a, b| a.0 == b.0) {
            let (head, casts, _) = &tables[run[0].0];
            for part in run.chunks(100) {
                let mut sql = head.clone();
                let mut n = 0;
                for (i, _) in part.iter().enumerate() {
                    sql.push_str(if i == 0 { "(" } else { ", (" });
                    for (j, ty) in casts.iter().enumerate() {
                        n += 1;
                        if j > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("CAST(${n} AS {ty})"));
                    }
                    sql.push(')');
                }
                let mut q = sqlx::query(&sql);
                for (_, cells) in part {
                    for c in cells.iter() {
                        q = q.bind(c.as_deref());
                    }
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.first().map(String::as_str) {
        Some("prepare") => {
            let n: usize = flag("--patients")
                .context("--patients N")?
                .parse()
                .context("--patients N")?;
            prepare(n, Path::new(&flag("--out").context("--out DIR")?))
        }
        Some("floor") => {
            let url = flag("--database-url").context("--database-url URL")?;
            let dir = args.last().context("DIR")?;
            floor(&url, Path::new(dir)).await
        }
        Some("rows") => {
            let from = flag("--from").context("--from URL")?;
            let to = flag("--database-url").context("--database-url URL")?;
            let bundles: usize = flag("--bundles")
                .context("--bundles N")?
                .parse()
                .context("--bundles N")?;
            rows_floor(&from, &to, bundles).await
        }
        _ => bail!("usage: import_bench prepare --patients N --out DIR | import_bench floor --database-url URL DIR | import_bench rows --from URL --database-url URL --bundles N"),
    }
}

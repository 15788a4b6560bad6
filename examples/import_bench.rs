//! Import benchmark helper (see benches/import.sh).
//!
//! `import_bench prepare --patients N --out DIR` writes the Synthea patient bundles of
//! tests/data/synthea-bundles replicated under fresh ids until they hold N patients: copy k of a
//! bundle has every UUID in it (fullUrls, ids, references, UUID-valued identifiers) with its
//! first eight hex digits replaced by k, so copies never collide and references inside a copy
//! stay whole. The practitioner batch the conditional-reference bundles need is written once.
//!
//! `import_bench floor --database-url URL DIR` is the plain-SQL floor: the resources of the types
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
        _ => bail!("usage: import_bench prepare --patients N --out DIR | import_bench floor --database-url URL DIR"),
    }
}

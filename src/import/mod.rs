//! `expediente import PATH...`: loads Bundles (`.json`) and NDJSON (`.ndjson`, one resource a
//! line) through the same transaction code as `POST /fhir`, so an import is exactly as checked
//! as an API write.
//!
//! - Resources with ids keep them: a POST entry whose fullUrl is `urn:uuid:<id>` (and that has no
//!   `ifNoneExist`) is written as `PUT Type/<id>`, and NDJSON resources are written under their
//!   id. References to them, rewritten by the transaction, name those ids. Importing the same
//!   files again writes nothing new: an update that changes nothing makes no version.
//! - Each bundle (or line) is parsed and checked as a transaction would check it on the reader
//!   thread, ahead of the database; one that fails there fails alone, with the transaction's
//!   error. GET entries are not run: an import writes.
//! - Small bundles are grouped into database transactions of about `batch_size` resources;
//!   a bundle is never split. A group that fails is retried bundle by bundle (read again from
//!   its file), so a bad bundle fails alone and is reported with its reason; a failed NDJSON
//!   group line by line.
//! - On SQLite a group's commit is sent without waiting for it: the next group begins behind
//!   it, and its outcome is settled before the next group commits (if it failed, that group is
//!   rolled back and both are retried bundle by bundle, in order).
//! - With `skip_unsupported`, entries of types this server does not host are dropped (and
//!   counted); references to them from the bundle become literal (`Organization/<id>`);
//!   conditional references to such types stay as sent.
//! - Batch bundles are loaded first (Synthea's hospital and practitioner files are batches the
//!   patient bundles refer to), then the other JSON files, then NDJSON files, patients first.

use crate::error::Error;
use crate::fhir::references_mut;
use crate::interactions::{Answers, BundleOptions, Caller, Fhir, Prepared};
use crate::store::Committing;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod lines;
mod reader;
mod run;
mod sources;

use reader::*;
use run::*;
use sources::*;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// About how many resources go in one database transaction.
    pub batch_size: usize,
    /// Drop entries of resource types this server does not host instead of failing.
    pub skip_unsupported: bool,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub created: BTreeMap<String, u64>,
    /// Updated, or found unchanged (a conditional create's match, a repeated import).
    pub updated: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    /// Each failed bundle, line or file, with why.
    pub failed: Vec<(String, String)>,
    /// Resources in what failed.
    pub failed_resources: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Resources written or found.
    pub fn loaded(&self) -> u64 {
        self.created.values().sum::<u64>() + self.updated.values().sum::<u64>()
    }

    /// The summary as text, for the terminal.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        out.push_str(&format!(
            "imported {} resources in {:.1} s ({:.0} resources/s)\n",
            self.loaded(),
            secs,
            self.loaded() as f64 / secs
        ));
        for (label, counts) in [
            ("created", &self.created),
            ("updated or unchanged", &self.updated),
            ("skipped (type not hosted)", &self.skipped),
        ] {
            if !counts.is_empty() {
                let parts: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
                out.push_str(&format!("  {label}: {}\n", parts.join(", ")));
            }
        }
        if !self.failed.is_empty() {
            out.push_str(&format!(
                "  failed: {} ({} resources)\n",
                self.failed.len(),
                self.failed_resources
            ));
            for (what, why) in &self.failed {
                out.push_str(&format!("    {what}: {why}\n"));
            }
        }
        out
    }
}

/// A bundle (or NDJSON line, or lone resource) as read: transaction entries and where they came
/// from.
struct RawUnit {
    source: String,
    entries: Vec<Value>,
    origin: Origin,
}

/// Where a unit can be read again from, to run alone after its group failed.
#[derive(Clone)]
enum Origin {
    /// The `n`th unit of a JSON file.
    File(PathBuf, usize),
    /// An NDJSON line.
    Line(String),
}

/// A unit ready to run: its entries parsed and checked.
struct Unit {
    part: Part,
    prepared: Prepared,
}

/// What is kept of a unit while its group runs.
struct Part {
    source: String,
    origin: Origin,
    /// Its resources.
    len: usize,
}

impl Fhir {
    /// Imports the files under `paths`.
    pub async fn import(
        &self,
        caller: &Caller,
        paths: &[PathBuf],
        opts: &ImportOptions,
    ) -> anyhow::Result<Summary> {
        let started = Instant::now();
        self.db.bulk_writes().await?;
        let files = sources(paths)?;
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        let bar = if opts.progress {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let reader = || Reader {
            fhir: self.clone(),
            base_url: caller.base_url.clone(),
            skip_unsupported: opts.skip_unsupported,
        };
        let mut run = Run {
            fhir: self,
            caller,
            opts,
            reader: reader(),
            summary: Summary::default(),
            pending: Vec::new(),
            pending_len: 0,
            pending_targets: Default::default(),
            committing: None,
            analyze_at: 1000,
            analyzing: None,
            bar: &bar,
            started,
        };
        // Files are read, parsed, prepared and checked on another thread while the
        // transactions run: the two halves of the work use both cores. The reader keeps up to
        // READ_AHEAD files ready, about a group's worth of patient bundles: the files of the
        // next group are read while this one is written, not after.
        let reader = reader();
        let (send, mut parsed) = tokio::sync::mpsc::channel::<Parsed<Unit>>(READ_AHEAD);
        let producer = std::thread::Builder::new()
            .name("import-reader".into())
            .spawn(move || {
                for f in &files {
                    let sent = if is_ndjson(&f.path) {
                        reader.ndjson(f, |part| send.blocking_send(part).is_ok())
                    } else {
                        send.blocking_send(reader.file(f)).is_ok()
                    };
                    if !sent {
                        break;
                    }
                }
            })
            .context("starting the file reader")?;
        while let Some(p) = parsed.recv().await {
            run.take(p).await;
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the file reader failed"))?;
        run.flush().await;
        run.settle().await;
        if let Some(a) = run.analyzing.take() {
            let _ = a.await;
        }
        bar.finish_and_clear();
        let mut summary = run.summary;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_type_is_read_from_its_start_wherever_the_properties_are() {
        let dir = std::env::temp_dir().join(format!("expediente-head-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (
                r#"{"resourceType": "Bundle", "type": "batch", "entry": [{"x": [1, 2]}]}"#,
                (Some("Bundle"), Some("batch")),
            ),
            // After the entries, and after a property that is not a string.
            (
                r#"{"entry": [{"resource": {"resourceType": "Patient"}}], "id": 7, "type": "transaction", "resourceType": "Bundle"}"#,
                (Some("Bundle"), Some("transaction")),
            ),
            (
                r#"{"resourceType": "Patient", "id": "p"}"#,
                (Some("Patient"), None),
            ),
            (r#"[1, 2]"#, (None, None)),
            (
                r#"{"resourceType": "Bundle", "type": "#,
                (Some("Bundle"), None),
            ),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let path = dir.join(format!("{i}.json"));
            std::fs::write(&path, text).unwrap();
            let (rt, kind) = head_of(&path);
            assert_eq!((rt.as_deref(), kind.as_deref()), *want, "{text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

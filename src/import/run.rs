//! The run of an import: units grouped into database transactions, commits sent ahead, a
//! failed group retried unit by unit, and the tally.

use super::*;

/// Files read and prepared ahead of the transactions (see [`Fhir::import`]). A Synthea patient
/// bundle holds 100 to 300 resources, so a group of the default size is about 20 to 50 of them.
pub(super) const READ_AHEAD: usize = 32;

pub(super) struct Run<'a> {
    pub(super) fhir: &'a Fhir,
    pub(super) caller: &'a Caller,
    pub(super) opts: &'a ImportOptions,
    /// Reads units again, for a group that failed.
    pub(super) reader: Reader,
    pub(super) summary: Summary,
    /// Units waiting to go in one transaction.
    pub(super) pending: Vec<Unit>,
    pub(super) pending_len: usize,
    /// What the pending units write (see [`Prepared::targets`]).
    pub(super) pending_targets: std::collections::HashSet<String>,
    /// The last group, its commit sent and its outcome not yet known.
    pub(super) committing: Option<Sent>,
    /// Resources loaded at which statistics are next refreshed.
    pub(super) analyze_at: u64,
    /// The statistics being refreshed, beside the transactions (PostgreSQL).
    pub(super) analyzing: Option<tokio::task::JoinHandle<()>>,
    pub(super) bar: &'a ProgressBar,
    pub(super) started: Instant,
}

/// A group whose commit is on its way.
pub(super) struct Sent {
    pub(super) commit: Committing,
    pub(super) answers: Answers,
    pub(super) parts: Vec<Part>,
}

impl Run<'_> {
    pub(super) fn fail(&mut self, what: String, why: String, resources: u64) {
        self.summary.failed.push((what, why));
        self.summary.failed_resources += resources;
    }

    /// Runs (or groups) what one file gave.
    pub(super) async fn take(&mut self, p: Parsed<Unit>) {
        for (t, n) in p.skipped {
            *self.summary.skipped.entry(t).or_default() += n;
        }
        for (what, why, n) in p.failed {
            self.fail(what, why, n);
        }
        if p.first {
            self.flush().await;
        }
        for u in p.units {
            self.queue(u).await;
        }
        if p.last {
            // A file's lines are not grouped with the next file's.
            self.flush().await;
        }
        self.bar.inc(p.bytes);
    }

    /// Adds a unit to the group, running the group first if the unit would overfill it. Units
    /// that write the same resource go in different transactions (a transaction writes a
    /// resource once).
    pub(super) async fn queue(&mut self, unit: Unit) {
        let targets = unit.prepared.targets();
        let overlaps = targets.iter().any(|t| self.pending_targets.contains(t));
        if !self.pending.is_empty()
            && (overlaps || self.pending_len + unit.part.len > self.opts.batch_size)
        {
            self.flush().await;
        }
        self.pending_targets.extend(targets);
        self.pending_len += unit.part.len;
        self.pending.push(unit);
        if self.pending_len >= self.opts.batch_size {
            self.flush().await;
        }
    }

    /// Runs the pending units in one transaction and sends its commit; if it fails, each unit
    /// runs in its own.
    pub(super) async fn flush(&mut self) {
        let units = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.pending_targets.clear();
        if units.is_empty() {
            return;
        }
        let mut prepared = Vec::with_capacity(units.len());
        let mut parts = Vec::with_capacity(units.len());
        for u in units {
            prepared.push(u.prepared);
            parts.push(u.part);
        }
        let opts = BundleOptions {
            representation: false,
            max_entries: usize::MAX,
        };
        let group = self
            .fhir
            .transaction_open(self.caller, Prepared::join(prepared), opts)
            .await;
        // The group before commits first: if it did not, this one ran without its writes, and
        // is rolled back; the units of both run again alone, in order.
        match (group, self.outcome().await) {
            (Ok((mut tx, answers)), None) => {
                // The group's audit events go with its writes.
                let sent = match self.fhir.seal_import(&mut tx, self.caller).await {
                    Ok(_) => tx.commit_sent().await.map_err(Into::into),
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(commit) => {
                        self.committing = Some(Sent {
                            commit,
                            answers,
                            parts,
                        })
                    }
                    Err(e) => self.failed(parts, e).await,
                }
            }
            (Err(e), None) => self.failed(parts, e).await,
            (group, Some((before, e))) => {
                drop(group);
                self.failed(before, e).await;
                self.alone(parts).await;
            }
        }
        let loaded = self.summary.loaded();
        // PostgreSQL plans by its statistics, and a database filled from empty has none that
        // fit: refreshed each time the data has doubled, the plans follow the growth. ANALYZE
        // runs on a connection of its own while the next groups are written (it blocks no
        // write), one at a time.
        if loaded >= self.analyze_at && self.analyzing.as_ref().is_none_or(|a| a.is_finished()) {
            let db = self.fhir.db.clone();
            self.analyzing = Some(tokio::spawn(async move {
                if let Err(e) = db.refresh_statistics().await {
                    tracing::warn!(error = %e, "refreshing the planner statistics failed");
                }
            }));
            self.analyze_at = loaded.saturating_mul(2);
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "{loaded} resources, {:.0}/s, {} failed",
            loaded as f64 / secs,
            self.summary.failed.len()
        ));
    }

    /// Waits for the last group's commit and counts what it wrote; if the commit failed, its
    /// units run alone.
    pub(super) async fn settle(&mut self) {
        if let Some((parts, e)) = self.outcome().await {
            self.failed(parts, e).await;
        }
    }

    /// Waits for the last group's commit and counts what it wrote; if the commit failed, its
    /// units and why.
    pub(super) async fn outcome(&mut self) -> Option<(Vec<Part>, Error)> {
        let sent = self.committing.take()?;
        match sent.commit.outcome().await {
            Ok(()) => {
                for (rt, created) in sent.answers.written() {
                    self.count(rt, created);
                }
                None
            }
            Err(e) => Some((sent.parts, e.into())),
        }
    }

    /// A group failed with `e`: one unit that failed for itself (not for a concurrent
    /// transaction) has failed; several run again, each alone.
    pub(super) async fn failed(&mut self, mut parts: Vec<Part>, e: Error) {
        if parts.len() == 1 && !matches!(e, Error::Aborted) {
            if let Some(p) = parts.pop() {
                self.fail(p.source, describe(&e), p.len as u64);
            }
        } else {
            self.alone(parts).await;
        }
    }

    /// Each unit in a transaction of its own, read again from where it came from.
    pub(super) async fn alone(&mut self, parts: Vec<Part>) {
        let opts = BundleOptions {
            representation: false,
            max_entries: usize::MAX,
        };
        let mut files = HashMap::new();
        for p in parts {
            let n = p.len as u64;
            let entries = match self.reader.again(&p.origin, &mut files) {
                Ok(entries) => entries,
                Err(why) => {
                    self.fail(p.source, why, n);
                    continue;
                }
            };
            match self
                .fhir
                .transaction(self.caller, &transaction_bundle(entries), opts)
                .await
            {
                Ok(response) => self.tally(&response),
                Err(e) => self.fail(p.source, describe(&e), n),
            }
        }
    }

    pub(super) fn count(&mut self, rt: &str, created: bool) {
        let counts = if created {
            &mut self.summary.created
        } else {
            &mut self.summary.updated
        };
        match counts.get_mut(rt) {
            Some(n) => *n += 1,
            None => {
                counts.insert(rt.to_owned(), 1);
            }
        }
    }

    /// Counts what a transaction-response Bundle says was written.
    pub(super) fn tally(&mut self, response: &Value) {
        for e in response
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let status = e
                .pointer("/response/status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(rt) = e
                .pointer("/response/location")
                .and_then(Value::as_str)
                .and_then(|l| l.split('/').next())
            else {
                continue;
            };
            if status.starts_with("201") || status.starts_with("200") {
                self.count(rt, status.starts_with("201"));
            }
        }
    }
}

/// A transaction Bundle of `entries`, moved in (`json!` would copy them).
pub(super) fn transaction_bundle(entries: Vec<Value>) -> Value {
    let mut bundle = serde_json::Map::new();
    bundle.insert("resourceType".into(), "Bundle".into());
    bundle.insert("type".into(), "transaction".into());
    bundle.insert("entry".into(), Value::Array(entries));
    Value::Object(bundle)
}

/// An error as one line: its OperationOutcome's diagnostics (for a failure of the server, the
/// error itself: this is the operator's terminal, not a client).
pub(super) fn describe(e: &Error) -> String {
    if let Error::Internal(inner) = e {
        return format!("500 {inner:#}");
    }
    let oo = e.outcome("");
    let msgs: Vec<String> = oo
        .get("issue")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| {
            let d = i.get("diagnostics").and_then(Value::as_str).unwrap_or("");
            match i.pointer("/expression/0").and_then(Value::as_str) {
                Some(path) => format!("{d} (at {path})"),
                None => d.to_owned(),
            }
        })
        .collect();
    format!("{} {}", e.status().as_u16(), msgs.join("; "))
}

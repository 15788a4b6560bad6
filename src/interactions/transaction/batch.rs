//! batch Bundles: each entry on its own, in the order given; a failure is that entry's answer.
//!
//! Each write entry is answered as if it had its own database transaction. Committing each
//! one costs a commit (a disk flush on PostgreSQL) per entry, which made a batch of a thousand
//! practitioners take longer than all the patients that refer to them. So a run of consecutive
//! write entries (up to [`GROUP`]) is first tried in one database transaction, one entry after
//! the other, as a transaction would see them: when every one of them succeeds, they commit
//! together, with every write's audit event. When one fails, that transaction is rolled back
//! and the run is done again entry by entry, each in its own transaction: the answers, the
//! audit trail and what is stored are then exactly those of entries run one by one. A GET entry
//! ends a run, so that it sees the writes before it.

use super::*;

/// The most write entries of a batch tried together in one database transaction.
const GROUP: usize = 200;

impl Fhir {
    /// A batch: each entry on its own, in the order given.
    pub async fn batch(
        &self,
        caller: &Caller,
        bundle: &Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        let raw = entries_of(bundle, "batch", opts.max_entries)?;
        let mut answers = Vec::with_capacity(raw.len());
        let mut run: Vec<Entry> = Vec::new();
        for (i, e) in raw.iter().enumerate() {
            match parse_entry(i, e, &caller.base_url) {
                Ok(entry) if entry.method != Method::Get => {
                    run.push(entry);
                    if run.len() == GROUP {
                        self.batch_run(caller, std::mem::take(&mut run), opts, &mut answers)
                            .await;
                    }
                }
                other => {
                    self.batch_run(caller, std::mem::take(&mut run), opts, &mut answers)
                        .await;
                    let full_url = e.get("fullUrl").and_then(Value::as_str);
                    answers.push(Some(self.batch_one(caller, other, full_url, opts).await));
                }
            }
        }
        self.batch_run(caller, run, opts, &mut answers).await;
        self.record(caller, bundle_event("batch", raw.len()))
            .await?;
        caller.audit.mark_written();
        Ok(response_bundle("batch-response", answers, &caller.base_url))
    }

    /// A run of write entries: together when they all succeed, else one by one.
    async fn batch_run(
        &self,
        caller: &Caller,
        run: Vec<Entry>,
        opts: BundleOptions,
        answers: &mut Vec<Option<Answer>>,
    ) {
        if run.len() > 1 {
            if let Some(together) = self.batch_together(caller, &run, opts).await {
                answers.extend(together.into_iter().map(Some));
                return;
            }
        }
        for e in run {
            let full_url = e.full_url.clone();
            answers.push(Some(
                self.batch_one(caller, Ok(e), full_url.as_deref(), opts)
                    .await,
            ));
        }
    }

    /// Write entries in one database transaction; `None`, with nothing written, when one fails.
    async fn batch_together(
        &self,
        caller: &Caller,
        run: &[Entry],
        opts: BundleOptions,
    ) -> Option<Vec<Answer>> {
        let mut tx = self.db.begin().await.ok()?;
        // The criteria of the run's conditional writes, locked at once (each entry would take
        // its own in a round trip of its own).
        let keys: Vec<i64> = run
            .iter()
            .filter_map(|e| {
                let criteria = e.if_none_exist.as_ref().or(e.query.as_ref())?;
                Some(crate::interactions::conditional::criteria_key(
                    &e.rtype, criteria,
                ))
            })
            .collect();
        tx.lock_keys(&keys).await.ok()?;
        let mut out = Vec::with_capacity(run.len());
        for e in run {
            out.push(self.batch_entry_in(&mut tx, caller, e, opts).await.ok()?);
        }
        self.commit(tx, caller).await.ok()?;
        Some(out)
    }

    /// One entry on its own, answered and audited (its failure too).
    async fn batch_one(
        &self,
        caller: &Caller,
        parsed: Result<Entry>,
        full_url: Option<&str>,
        opts: BundleOptions,
    ) -> Answer {
        let index = parsed.as_ref().map_or(0, |e| e.index);
        let answer = match parsed {
            Ok(entry) if entry.method == Method::Get => self.audited_entry(caller, &entry).await,
            Ok(entry) => {
                let what = entry_event(&entry);
                let r = self.batch_entry(caller, &entry, opts).await;
                match &r {
                    // A write's event went with it.
                    Ok(_) => r,
                    Err(err) => self.refused_entry(caller, what, err).await.and(r),
                }
            }
            Err(err) => {
                let what = crate::audit::Event::default();
                self.refused_entry(caller, what, &err).await.and(Err(err))
            }
        };
        answer
            .map_err(|err| at_entry(err, index, full_url))
            .unwrap_or_else(|err| Answer::failed(&err, &caller.request_id))
    }

    /// A write entry in its own database transaction. Two clients creating the same new id
    /// at once: the loser of the unique index retries once, and then finds the row and updates
    /// it.
    async fn batch_entry(&self, caller: &Caller, e: &Entry, opts: BundleOptions) -> Result<Answer> {
        let mut retried = false;
        loop {
            let mut tx = self.db.begin().await?;
            match self.batch_entry_in(&mut tx, caller, e, opts).await {
                Ok(answer) => {
                    self.commit(tx, caller).await?;
                    return Ok(answer);
                }
                Err(Error::Conflict(_))
                    if !retried && e.method == Method::Put && e.id.is_some() =>
                {
                    retried = true;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A write entry inside the caller's transaction, checked as the interaction it names
    /// would check it.
    async fn batch_entry_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        e: &Entry,
        opts: BundleOptions,
    ) -> Result<Answer> {
        use crate::auth::scope::Action;
        let m = self.mapping(self.resource_type(&e.rtype)?)?;
        let rep = opts.representation && caller.shows(&e.rtype);
        let body = e.resource.as_ref().unwrap_or(&Value::Null);
        let target = (&e.id, &e.query);
        let w = match (e.method, target) {
            (Method::Post, _) => match &e.if_none_exist {
                Some(c) => {
                    caller.may(Action::Create, m.resource_type())?;
                    self.check(m.as_ref(), body)?;
                    self.conditional_create_within(tx, caller, &m, body, c)
                        .await?
                }
                None => {
                    self.check(m.as_ref(), body)?;
                    self.create_within(tx, caller, m.as_ref(), body).await?
                }
            },
            (Method::Put, (Some(id), _)) => {
                self.check_update(m.as_ref(), id, body)?;
                self.update_within(tx, caller, m.as_ref(), id, body, e.if_match)
                    .await?
            }
            (Method::Put, (None, Some(q))) => {
                self.check(m.as_ref(), body)?;
                self.conditional_update_within(tx, caller, &m, q, body.clone(), e.if_match)
                    .await?
            }
            (Method::Patch, (Some(id), _)) => {
                let ops = e.patch.clone().unwrap_or_default();
                self.patch_in(tx, caller, &m, id, &ops, e.if_match).await?
            }
            (Method::Patch, (None, Some(q))) => {
                let ops = e.patch.clone().unwrap_or_default();
                let id = self.patch_target(tx, caller, &m, q).await?;
                self.patch_in(tx, caller, &m, &id, &ops, e.if_match).await?
            }
            (Method::Delete, (Some(id), _)) => {
                self.delete_in(tx, caller, m.as_ref(), id, e.if_match)
                    .await?;
                return Ok(Answer::deleted());
            }
            (Method::Delete, (None, Some(q))) => {
                self.conditional_delete_in(tx, caller, &m, q, e.if_match)
                    .await?;
                return Ok(Answer::deleted());
            }
            _ => return Err(anyhow::anyhow!("{:?} entry without a target", e.method).into()),
        };
        Ok(Answer::written(w, rep))
    }
}

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
//! ends a run, so that it sees the writes before it. On PostgreSQL two runs that do not touch
//! each other's resources go to the database side by side (docs/BUNDLES.md).

use super::*;

/// A conditional create of a run: its place in the run, its mapping and its criteria.
type Asked<'e> = (usize, Arc<dyn ResourceMapping>, &'e str);

/// The most write entries of a batch tried together in one database transaction.
const GROUP: usize = 200;
/// The most runs of a batch sent to the database at once (where it writes more than one
/// transaction at a time).
const SIDE_BY_SIDE: usize = 2;

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
        let mut stretch: Vec<Entry> = Vec::new();
        for (i, e) in raw.iter().enumerate() {
            match parse_entry(i, e, &caller.base_url) {
                Ok(entry) if entry.method != Method::Get => stretch.push(entry),
                other => {
                    self.batch_stretch(caller, std::mem::take(&mut stretch), opts, &mut answers)
                        .await;
                    let full_url = e.get("fullUrl").and_then(Value::as_str);
                    answers.push(Some(self.batch_one(caller, other, full_url, opts).await));
                }
            }
        }
        self.batch_stretch(caller, stretch, opts, &mut answers)
            .await;
        self.record(caller, bundle_event("batch", raw.len()))
            .await?;
        caller.audit.mark_written();
        Ok(response_bundle("batch-response", answers, &caller.base_url))
    }

    /// Consecutive write entries, in runs of [`GROUP`]. On PostgreSQL, where each connection
    /// has a process of its own, two runs that do not touch each other's resources
    /// ([`Touches`]) go to the database side by side; their answers keep the entries' order.
    async fn batch_stretch(
        &self,
        caller: &Caller,
        stretch: Vec<Entry>,
        opts: BundleOptions,
        answers: &mut Vec<Option<Answer>>,
    ) {
        let width = self.db.writers_at_once().min(SIDE_BY_SIDE);
        let mut runs: Vec<Vec<Entry>> = Vec::new();
        for e in stretch {
            match runs.last_mut() {
                Some(run) if run.len() < GROUP => run.push(e),
                _ => runs.push(vec![e]),
            }
        }
        let touches = |run: &[Entry]| Touches::of(run, |t| self.mapping(t).ok());
        let mut runs = runs.into_iter().peekable();
        // What the run at the head touches, when the wave before measured it.
        let mut head: Option<Touches> = None;
        while let Some(first) = runs.next() {
            let mut wave = vec![first];
            if width > 1 {
                let mut touched = head.take().unwrap_or_else(|| touches(&wave[0]));
                while wave.len() < width {
                    let Some(next) = runs.peek() else { break };
                    let t = touches(next);
                    if !touched.apart(&t) {
                        head = Some(t);
                        break;
                    }
                    touched.join(t);
                    wave.extend(runs.next());
                }
            }
            let done = futures_util::future::join_all(
                wave.into_iter()
                    .map(|run| self.batch_run(caller, run, opts)),
            )
            .await;
            answers.extend(done.into_iter().flatten().map(Some));
        }
    }

    /// A run of write entries: together when they all succeed, else one by one.
    async fn batch_run(
        &self,
        caller: &Caller,
        run: Vec<Entry>,
        opts: BundleOptions,
    ) -> Vec<Answer> {
        if run.len() > 1 {
            if let Some(together) = self.batch_together(caller, &run, opts).await {
                return together;
            }
        }
        let mut answers = Vec::with_capacity(run.len());
        for e in run {
            let full_url = e.full_url.clone();
            answers.push(
                self.batch_one(caller, Ok(e), full_url.as_deref(), opts)
                    .await,
            );
        }
        answers
    }

    /// Write entries in one database transaction; `None`, with nothing written, when one fails.
    ///
    /// A read in a transaction waits for the writes queued before it, so an entry that reads
    /// before it writes would send the run's rows a few at a time. What the entries would read
    /// is therefore read for all of them before the first write ([`Fhir::batch_read_ahead`]): whether
    /// each conditional create's criteria find anything, and the mappings' own lookups (which
    /// unique emails are free). A conditional create whose criteria found nothing then creates
    /// without looking again, which [`Fhir::still_unmatched`] checks when the run ends: when
    /// an entry before it wrote a match, the run fails and is done one entry at a time.
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
        let unmatched = self.batch_read_ahead(&mut tx, caller, run).await.ok()?;
        let mut out = Vec::with_capacity(run.len());
        for (e, unmatched) in run.iter().zip(&unmatched) {
            out.push(
                self.batch_entry_in(&mut tx, caller, e, opts, *unmatched)
                    .await
                    .ok()?,
            );
        }
        if !self
            .still_unmatched(&mut tx, caller, run, &unmatched, &out)
            .await
            .ok()?
        {
            return None;
        }
        self.commit(tx, caller).await.ok()?;
        Some(out)
    }

    /// For each entry of a run, whether it is a conditional create whose criteria find
    /// nothing now, before any of the run's writes: read in one go. The mappings of the
    /// resources the run writes read ahead too ([`ResourceMapping::prefetch`]).
    async fn batch_read_ahead(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        run: &[Entry],
    ) -> Result<Vec<bool>> {
        let mut bodies: std::collections::BTreeMap<&str, Vec<&Value>> = Default::default();
        for e in run {
            if let (Method::Post | Method::Put, Some(body)) = (e.method, &e.resource) {
                bodies.entry(e.rtype.as_str()).or_default().push(body);
            }
        }
        for (rt, bodies) in bodies {
            let m = self.mapping(self.resource_type(rt)?)?;
            m.prefetch(tx, &bodies).await?;
        }
        let asked = self.conditional_creates(run, |_| true)?;
        let each: Vec<_> = asked.iter().map(|(_, m, c)| (m, *c, 1)).collect();
        let found = self
            .matches_each_in(&mut Conn::Tx(tx), caller, &each)
            .await?;
        let mut unmatched = vec![false; run.len()];
        for ((i, ..), found) in asked.iter().zip(found) {
            unmatched[*i] = found.is_empty();
        }
        Ok(unmatched)
    }

    /// The conditional creates of a run that `pick` keeps (by place in the run): place, mapping
    /// and criteria.
    fn conditional_creates<'e>(
        &self,
        run: &'e [Entry],
        pick: impl Fn(usize) -> bool,
    ) -> Result<Vec<Asked<'e>>> {
        let mut out = Vec::new();
        for (i, e) in run.iter().enumerate() {
            if let (Method::Post, Some(c), true) = (e.method, &e.if_none_exist, pick(i)) {
                out.push((i, self.mapping(self.resource_type(&e.rtype)?)?, c.as_str()));
            }
        }
        Ok(out)
    }

    /// Whether the conditional creates [`Fhir::batch_read_ahead`] found unmatched would still
    /// have found nothing in their turn: no resource an entry before them wrote (created or
    /// changed) meets their criteria now. Read in one go, after the run's writes.
    async fn still_unmatched(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        run: &[Entry],
        unmatched: &[bool],
        answers: &[Answer],
    ) -> Result<bool> {
        let limit = run.len() + 1;
        let asked = self.conditional_creates(run, |i| unmatched[i])?;
        if asked.is_empty() {
            return Ok(true);
        }
        let each: Vec<_> = asked.iter().map(|(_, m, c)| (m, *c, limit)).collect();
        let found = self
            .matches_each_in(&mut Conn::Tx(tx), caller, &each)
            .await?;
        for ((j, m, _), found) in asked.iter().zip(found) {
            let before = &answers[..*j];
            let written_before = |id: &str| {
                before.iter().any(|a| {
                    a.version
                        .as_ref()
                        .is_some_and(|v| v.resource_type == m.resource_type() && v.id == id)
                })
            };
            // As many as the limit: more may hide behind it.
            if found.len() >= limit || found.iter().any(|(_, id)| written_before(id)) {
                return Ok(false);
            }
        }
        Ok(true)
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
    /// it. One that the database aborts in favour of a concurrent one (a deadlock, which two
    /// runs side by side can meet on rows both insert) is run again, as a transaction is.
    async fn batch_entry(&self, caller: &Caller, e: &Entry, opts: BundleOptions) -> Result<Answer> {
        let mut retried = false;
        let mut aborted = 0;
        loop {
            let mut tx = self.db.begin().await?;
            let done = match self.batch_entry_in(&mut tx, caller, e, opts, false).await {
                Ok(answer) => self.commit(tx, caller).await.map(|()| answer),
                Err(err) => Err(err),
            };
            match done {
                Ok(answer) => return Ok(answer),
                Err(Error::Conflict(_))
                    if !retried && e.method == Method::Put && e.id.is_some() =>
                {
                    retried = true;
                }
                Err(Error::Aborted) if aborted < ABORTED_RETRIES => {
                    aborted += 1;
                    pause_after_abort(aborted).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A write entry inside the caller's transaction, checked as the interaction it names
    /// would check it; `unmatched`: a conditional create known to match nothing.
    async fn batch_entry_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        e: &Entry,
        opts: BundleOptions,
        unmatched: bool,
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
                    if unmatched {
                        self.create_within(tx, caller, m.as_ref(), body).await?
                    } else {
                        self.conditional_create_within(tx, caller, &m, body, c)
                            .await?
                    }
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

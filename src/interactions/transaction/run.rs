//! The writes of a transaction, inside its database transaction, in phases: deletes, targets,
//! references rewritten, reads ahead, writes in dependency order, versions.

use super::*;

/// What the phases of a transaction's writes share.
struct Run {
    answers: Vec<Option<Answer>>,
    /// The entries in the order their rows and criteria are locked (see [`lock_order`]).
    in_lock_order: Vec<usize>,
    /// Type and id of every resource deleted or to be written.
    touched: HashSet<(String, String)>,
    /// Every write's target id, found or assigned before anything is written.
    targets: Vec<Option<Id>>,
    /// The POSTs whose conditional create found a resource.
    existing: HashSet<usize>,
    /// The conditional references met (without the server's base), and the entries holding one.
    conditional: BTreeSet<String>,
    with_conditional: HashSet<usize>,
}

/// An error of entry `e`, named.
fn at(e: &Entry) -> impl FnOnce(Error) -> Error + '_ {
    move |err| at_entry(err, e.index, e.full_url.as_deref())
}

/// The entries in the order their rows and criteria are taken (type, then id or criteria),
/// whatever the bundle's order, so that two transactions over the same resources do not wait
/// on each other in a circle.
fn lock_order(entries: &[Entry]) -> Vec<usize> {
    let lock_key = |e: &Entry| {
        (
            e.method.phase(),
            e.rtype.clone(),
            e.id.as_ref().map(|i| i.to_string()),
            e.query.clone().or_else(|| e.if_none_exist.clone()),
            e.index,
        )
    };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_cached_key(|&i| lock_key(&entries[i]));
    order
}

impl Fhir {
    /// The writes of a transaction, inside `tx`; an answer for each write entry.
    pub(super) async fn transaction_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        entries: &mut [Entry],
        opts: BundleOptions,
    ) -> Result<Vec<Option<Answer>>> {
        let mut run = Run {
            answers: (0..entries.len()).map(|_| None).collect(),
            in_lock_order: lock_order(entries),
            touched: HashSet::new(),
            targets: vec![None; entries.len()],
            existing: HashSet::new(),
            conditional: BTreeSet::new(),
            with_conditional: HashSet::new(),
        };
        self.deletes(tx, caller, entries, &mut run).await?;
        self.targets(tx, caller, entries, &mut run).await?;
        rewrite_references(caller, entries, &mut run)?;
        self.read_ahead(tx, entries, &run).await?;
        let pending = self.writes(tx, caller, entries, &mut run, opts).await?;
        self.versions(tx, caller, entries, pending, &mut run, opts)
            .await?;
        Ok(run.answers)
    }

    /// The DELETE entries, first.
    async fn deletes(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        entries: &[Entry],
        run: &mut Run,
    ) -> Result<()> {
        for &i in &run.in_lock_order {
            let e = &entries[i];
            if e.method != Method::Delete {
                continue;
            }
            let m = self.mapping(&e.rtype)?;
            let gone = match (&e.id, &e.query) {
                (Some(id), _) => self
                    .delete_in(tx, caller, m.as_ref(), id, e.if_match)
                    .await
                    .map(|_| Some(id.clone())),
                (None, Some(q)) => {
                    self.conditional_delete_in(tx, caller, &m, q, e.if_match)
                        .await
                }
                (None, None) => Ok(None),
            }
            .map_err(at(e))?;
            if let Some(id) = gone {
                run.touched.insert((e.rtype.clone(), id.to_string()));
            }
            run.answers[e.index] = Some(Answer {
                status: "204 No Content",
                version: None,
                body: None,
                outcome: None,
            });
        }
        Ok(())
    }

    /// Every write's target id, found or assigned before anything is written; two entries
    /// writing one resource are refused.
    async fn targets(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        entries: &[Entry],
        run: &mut Run,
    ) -> Result<()> {
        // Conditional creates with the same criteria in one transaction make one resource.
        let mut created_for: HashMap<(String, String), Id> = HashMap::new();
        for i in run.in_lock_order.clone() {
            let e = &entries[i];
            let m = self.mapping(&e.rtype)?;
            let target = match (e.method, &e.id, &e.query) {
                (Method::Post, _, _) => match &e.if_none_exist {
                    Some(c) => {
                        caller
                            .may(crate::auth::scope::Action::Create, m.resource_type())
                            .map_err(at(e))?;
                        let key = (e.rtype.clone(), c.clone());
                        let found = match created_for.get(&key) {
                            Some(id) => Some(id.clone()),
                            None => self
                                .existing_for_create(tx, caller, &m, c)
                                .await
                                .map_err(at(e))?,
                        };
                        match found {
                            Some(id) => {
                                run.existing.insert(e.index);
                                id
                            }
                            None => {
                                let id = new_id()?;
                                created_for.insert(key, id.clone());
                                id
                            }
                        }
                    }
                    None => new_id()?,
                },
                (Method::Put | Method::Patch, Some(id), _) => id.clone(),
                (Method::Put, None, Some(q)) => {
                    let body_id = e
                        .resource
                        .as_ref()
                        .and_then(|r| r.get("id"))
                        .and_then(Value::as_str);
                    self.conditional_target(tx, caller, &m, q, body_id)
                        .await
                        .map_err(at(e))?
                }
                (Method::Patch, None, Some(q)) => {
                    self.patch_target(tx, caller, &m, q).await.map_err(at(e))?
                }
                _ => continue,
            };
            if !run.existing.contains(&e.index)
                && !run.touched.insert((e.rtype.clone(), target.to_string()))
            {
                return Err(at(e)(Error::BadRequest(vec![Issue::error(
                    IssueType::Duplicate,
                    format!(
                        "{}/{target} is written by more than one entry of this transaction",
                        e.rtype
                    ),
                )])));
            }
            run.targets[e.index] = Some(target);
        }
        Ok(())
    }

    /// The heads of the update targets, read ahead (one query per type, not one per entry),
    /// and the new results of new reports marked to go in linked to their report (see
    /// [`crate::mapping::diagnostic_report::report_of`]).
    async fn read_ahead(&self, tx: &mut Tx, entries: &[Entry], run: &Run) -> Result<()> {
        let mut updated: HashMap<String, Vec<Id>> = HashMap::new();
        for e in entries.iter().filter(|e| e.method == Method::Put) {
            if let Some(id) = &run.targets[e.index] {
                updated.entry(e.rtype.clone()).or_default().push(id.clone());
            }
        }
        for (rt, ids) in &updated {
            let m = self.mapping(rt)?;
            self.prefetch_heads(tx, m.as_ref(), ids).await?;
        }
        // (Entries that create: a POST that found no match, a PUT whose target has no row.)
        let creates = |e: &Entry| match (&e.method, &run.targets[e.index]) {
            (Method::Post, Some(_)) => !run.existing.contains(&e.index),
            (Method::Put, Some(id)) => self.known_absent(tx, &e.rtype, id),
            _ => false,
        };
        let new_results: HashSet<String> = entries
            .iter()
            .filter(|e| e.rtype == "Observation" && creates(e))
            .filter_map(|e| run.targets[e.index].as_ref().map(|id| id.to_string()))
            .collect();
        if new_results.is_empty() {
            return Ok(());
        }
        let reports: Vec<usize> = entries
            .iter()
            .filter(|e| e.rtype == "DiagnosticReport" && creates(e))
            .map(|e| e.index)
            .collect();
        for e in reports.into_iter().map(|i| &entries[i]) {
            let (Some(resource), Some(id)) = (&e.resource, &run.targets[e.index]) else {
                continue;
            };
            let results: Vec<String> = crate::mapping::diagnostic_report::result_ids(resource)
                .into_iter()
                .filter(|r| new_results.contains(r))
                .collect();
            if results.is_empty() {
                continue;
            }
            // A POST's row id is its new id; a PUT's is chosen now.
            let report = match e.method {
                Method::Post => match Uuid::parse_str(id.as_str()) {
                    Ok(row) => row,
                    Err(_) => continue,
                },
                _ => Fhir::new_row_for(tx, &e.rtype, id),
            };
            crate::mapping::diagnostic_report::report_of(tx, report, &results).await?;
        }
        Ok(())
    }

    /// The writes, each after the entries it references; their versions are left to record
    /// (see [`Fhir::versions`]).
    async fn writes(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        entries: &mut [Entry],
        run: &mut Run,
        opts: BundleOptions,
    ) -> Result<Vec<PendingRow>> {
        let order = write_order(entries, &run.targets);
        // Conditional references that no write here can answer differently, resolved now.
        let mut cache = self
            .resolve_ahead(
                tx,
                caller,
                &run.conditional,
                entries,
                &run.targets,
                &run.existing,
            )
            .await?;
        let mut pending: Vec<PendingRow> = Vec::new();
        for i in order {
            let Some(id) = run.targets[i].clone() else {
                continue;
            };
            let e = &mut entries[i];
            let (index, full_url) = (e.index, e.full_url.clone());
            let w = Write {
                id: &id,
                existing: run.existing.contains(&i),
                conditional: run.with_conditional.contains(&i),
                opts,
            };
            let answer = self
                .write_entry(tx, caller, e, w, &mut cache, &mut pending)
                .await
                .map_err(|err| at_entry(err, index, full_url.as_deref()))?;
            if let Some(a) = answer {
                run.answers[i] = Some(a);
            }
        }
        Ok(pending)
    }

    /// One write entry: its answer, or none when its row waits in `pending` for its version.
    async fn write_entry(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        e: &mut Entry,
        w: Write<'_>,
        cache: &mut HashMap<String, String>,
        pending: &mut Vec<PendingRow>,
    ) -> Result<Option<Answer>> {
        let m = self.mapping(&e.rtype)?;
        let rep = w.opts.representation && caller.shows(m.resource_type());
        let take_body = |e: &mut Entry| e.resource.take().unwrap_or_default();
        match e.method {
            Method::Post if w.existing => {
                let v = self.read_in(&mut Conn::Tx(tx), m.as_ref(), w.id).await?;
                Ok(Some(Answer::version("200 OK", v, rep)))
            }
            Method::Post => {
                let mut body = take_body(e);
                if w.conditional {
                    self.resolve_conditional_references(tx, caller, &mut body, cache)
                        .await?;
                }
                let row_id = Uuid::parse_str(w.id.as_str())
                    .map_err(|_| anyhow::anyhow!("assigned id is not a uuid"))?;
                self.create_rows(tx, caller, m.as_ref(), row_id, &body)
                    .await?;
                let row = WrittenRow::new(tx, row_id, w.id.as_str(), "POST", Some(body));
                pending.push((e.index, row, true));
                Ok(None)
            }
            Method::Put => {
                let mut body = take_body(e);
                if w.conditional {
                    self.resolve_conditional_references(tx, caller, &mut body, cache)
                        .await?;
                }
                match self
                    .update_rows(tx, caller, m.as_ref(), w.id, &body, e.if_match)
                    .await?
                {
                    Updated::Unchanged(v) => Ok(Some(Answer::version("200 OK", v, rep))),
                    Updated::Rows {
                        row_id,
                        created,
                        inserted,
                    } => {
                        let body = inserted.then_some(body);
                        let row = WrittenRow::new(tx, row_id, w.id.as_str(), "PUT", body);
                        pending.push((e.index, row, created));
                        Ok(None)
                    }
                }
            }
            Method::Patch => {
                let ops = e.patch.take().unwrap_or_default();
                let written = self
                    .patch_in(tx, caller, &m, w.id, &ops, e.if_match)
                    .await?;
                Ok(Some(Answer::written(written, rep)))
            }
            Method::Delete | Method::Get => {
                Err(Error::Internal(anyhow::anyhow!("not a write entry")))
            }
        }
    }

    /// The versions of what was written, type by type: every type read back first, then every
    /// version written (the reads wait for the writes before them once).
    async fn versions(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        entries: &[Entry],
        pending: Vec<PendingRow>,
        run: &mut Run,
        opts: BundleOptions,
    ) -> Result<()> {
        // The rows of each type, and the entries they answer (with whether each created).
        let mut types: Vec<(Arc<dyn ResourceMapping>, Vec<WrittenRow>)> = Vec::new();
        let mut answered: Vec<Vec<(usize, bool)>> = Vec::new();
        for (i, row, created) in pending {
            let m = self.mapping(&entries[i].rtype)?;
            let at = match types
                .iter()
                .position(|(t, _)| t.resource_type() == m.resource_type())
            {
                Some(at) => at,
                None => {
                    types.push((m, Vec::new()));
                    answered.push(Vec::new());
                    types.len() - 1
                }
            };
            types[at].1.push(row);
            answered[at].push((i, created));
        }
        let loaded = self.read_back_all(tx, &mut types).await?;
        for (((m, rows), entries), loaded) in types.iter().zip(answered).zip(loaded) {
            let versions = self.queue_versions(tx, m.as_ref(), rows, loaded).await?;
            for ((i, created), version) in entries.into_iter().zip(versions) {
                let w = Written { version, created };
                let rep = opts.representation && caller.shows(m.resource_type());
                run.answers[i] = Some(Answer::written(w, rep));
            }
        }
        Ok(())
    }
}

/// How one write entry is written.
#[derive(Clone, Copy)]
struct Write<'a> {
    id: &'a Id,
    /// A POST whose conditional create found this resource.
    existing: bool,
    /// Whether the resource holds conditional references.
    conditional: bool,
    opts: BundleOptions,
}

/// fullUrl → Type/id: every reference to an entry's fullUrl rewritten (and criteria naming one),
/// the conditional references noted, a PUT's body given its target id.
fn rewrite_references(caller: &Caller, entries: &mut [Entry], run: &mut Run) -> Result<()> {
    let mut local: HashMap<String, String> = HashMap::new();
    for e in entries.iter() {
        if let (Some(u), Some(id)) = (&e.full_url, &run.targets[e.index]) {
            local.insert(u.clone(), format!("{}/{id}", e.rtype));
        }
    }
    let own = format!("{}/", caller.base_url);
    for e in entries.iter_mut() {
        if let Some(r) = e.resource.as_mut() {
            let mut unresolved = None;
            let mut holds_conditional = false;
            references_mut(r, &mut |s| {
                if let Some(to) = local.get(s.as_str()) {
                    *s = to.clone();
                } else if (s.starts_with("urn:uuid:") || s.starts_with("urn:oid:"))
                    && unresolved.is_none()
                {
                    unresolved = Some(s.clone());
                } else if s.contains('?') {
                    holds_conditional = true;
                    run.conditional
                        .insert(s.strip_prefix(&own).unwrap_or(s).to_owned());
                }
            });
            if holds_conditional {
                run.with_conditional.insert(e.index);
            }
            if let Some(u) = unresolved {
                return Err(at_entry(
                    Error::Unprocessable(vec![Issue::error(
                        IssueType::NotFound,
                        format!(
                            "the reference '{}' names no entry of this transaction",
                            u.escape_default()
                        ),
                    )]),
                    e.index,
                    e.full_url.as_deref(),
                ));
            }
            if let (Some(id), Method::Put) = (&run.targets[e.index], e.method) {
                r["id"] = Value::String(id.to_string());
            }
        }
        if let Some(q) = e
            .query
            .as_mut()
            .filter(|q| q.contains("urn%3A") || q.contains("urn:"))
        {
            *q = rewrite_criteria(q, &local);
        }
    }
    Ok(())
}

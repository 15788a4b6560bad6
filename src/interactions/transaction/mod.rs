//! batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).
//!
//! A transaction is all or nothing, in one database transaction. Its entries are processed in
//! the order the specification gives (DELETE, then POST, then PUT and PATCH, then GET), except
//! that a write which references another entry of the bundle is made after it: ids are assigned
//! before anything is written, every reference to an entry's fullUrl (`urn:uuid:`, `urn:oid:`
//! or a URL) is rewritten to the entry's `Type/id` wherever it occurs in a resource, and the
//! writes are then ordered by those references. GETs are answered after the commit, so they see
//! what the transaction wrote. The first failure rolls everything back and is answered with one
//! OperationOutcome naming the entry.
//!
//! A batch runs each entry on its own, in the order given; a failure is that entry's response.

use super::{Caller, Fhir, SearchRequest, Updated, Version, Written, WrittenRow};
use crate::error::{Error, Result};
use crate::fhir::{references, references_mut, Id, Issue, IssueType};
use crate::mapping::ResourceMapping;
use crate::store::{Conn, Tx};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

mod answer;
mod batch;
mod entry;
mod order;
mod refs;
mod run;
mod touches;

pub(crate) use answer::Answers;
use answer::*;
pub(crate) use entry::Prepared;
use entry::*;
use order::*;
use refs::*;
use touches::Touches;

/// A write whose version is yet to be recorded: its entry, its row and whether it created.
type PendingRow = (usize, WrittenRow, bool);

/// How many times a write the database aborted for a concurrent one's sake is run again.
const ABORTED_RETRIES: u64 = 4;

/// The pause before running an aborted write again (the `attempt`th time): a little longer
/// each time, with a random part, so that the writes that collided do not meet again.
async fn pause_after_abort(attempt: u64) {
    let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 20;
    tokio::time::sleep(std::time::Duration::from_millis(10 * attempt + jitter)).await;
}

/// How a bundle's response entries are made.
#[derive(Debug, Clone, Copy)]
pub struct BundleOptions {
    /// `Prefer: return=representation`: each written resource in its response entry.
    pub representation: bool,
    /// The most entries a bundle may hold.
    pub max_entries: usize,
}

impl Fhir {
    /// POST [base] with a Bundle: a transaction or a batch, answered with its response Bundle.
    pub async fn process_bundle(
        &self,
        caller: &Caller,
        bundle: Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Error::BadRequest(vec![Issue::error(
                IssueType::Invalid,
                "POST to the base URL takes a Bundle of type batch or transaction",
            )
            .at("resourceType")]));
        }
        match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => self.transaction(caller, &bundle, opts).await,
            Some("batch") => self.batch(caller, &bundle, opts).await,
            _ => Err(Error::BadRequest(vec![Issue::error(
                IssueType::Invalid,
                "the Bundle type must be batch or transaction",
            )
            .at("Bundle.type")])),
        }
    }

    /// A transaction: every entry, or none. One the database aborts in favour of a concurrent
    /// one (a deadlock) is run again, a few times, after a short pause.
    pub async fn transaction(
        &self,
        caller: &Caller,
        bundle: &Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        let mut attempt = 0;
        loop {
            match self.transaction_once(caller, bundle, opts).await {
                Err(Error::Aborted) if attempt < ABORTED_RETRIES => {
                    attempt += 1;
                    pause_after_abort(attempt).await;
                }
                other => return other,
            }
        }
    }

    /// A transaction's entries (a Bundle's `entry`, given away: their resources are moved, not
    /// copied) parsed and checked: all that a transaction does before it touches the database,
    /// failing as it would. The import does this on its reader thread, ahead of the database.
    pub(crate) fn prepare_transaction(&self, raw: Vec<Value>, base_url: &str) -> Result<Prepared> {
        let mut entries = Vec::with_capacity(raw.len());
        for (i, mut e) in raw.into_iter().enumerate() {
            let resource = e.get_mut("resource").map(Value::take);
            let full_url = e.get("fullUrl").and_then(Value::as_str);
            entries.push(
                parse_entry_with(i, &e, resource, base_url)
                    .map_err(|err| at_entry(err, i, full_url))?,
            );
        }
        self.checked(entries)
    }

    /// Runs a prepared transaction's writes, once (an [`Error::Aborted`] is answered, not
    /// retried), and leaves it open for the caller to commit. Its GET entries are not answered:
    /// they come after a commit, and the import, which calls this, only writes.
    pub(crate) async fn transaction_open(
        &self,
        caller: &Caller,
        prepared: Prepared,
        opts: BundleOptions,
    ) -> Result<(Tx, Answers)> {
        let mut entries = prepared.0;
        let mut tx = self.db.begin().await?;
        let answers = self
            .transaction_in(&mut tx, caller, &mut entries, opts)
            .await?;
        Ok((tx, Answers(answers)))
    }

    /// Entries of hosted types whose resources pass [`Fhir::check`]; else the transaction's
    /// error.
    fn checked(&self, entries: Vec<Entry>) -> Result<Prepared> {
        // Types this server does not host: the whole transaction is refused, naming them all.
        let unhosted: BTreeSet<&str> = entries
            .iter()
            .filter(|e| self.registry.get(&e.rtype).is_none())
            .map(|e| e.rtype.as_str())
            .collect();
        if !unhosted.is_empty() {
            let names: Vec<&str> = unhosted.into_iter().collect();
            return Err(Error::Unprocessable(vec![Issue::error(
                IssueType::NotSupported,
                format!(
                    "this server does not host {}; the transaction was not processed",
                    names.join(", ")
                ),
            )
            .at("Bundle.entry")]));
        }
        // Every resource is checked before anything is written.
        for e in &entries {
            if let (Some(r), Some(m)) = (&e.resource, self.registry.get(&e.rtype)) {
                self.check(m.as_ref(), r)
                    .map_err(|err| at_entry(err, e.index, e.full_url.as_deref()))?;
            }
        }
        Ok(Prepared(entries))
    }

    async fn transaction_once(
        &self,
        caller: &Caller,
        bundle: &Value,
        opts: BundleOptions,
    ) -> Result<Value> {
        let raw = entries_of(bundle, "transaction", opts.max_entries)?;
        let mut entries = Vec::with_capacity(raw.len());
        for (i, e) in raw.iter().enumerate() {
            let full_url = e.get("fullUrl").and_then(Value::as_str);
            entries.push(
                parse_entry(i, e, &caller.base_url).map_err(|err| at_entry(err, i, full_url))?,
            );
        }
        self.transaction_of(caller, entries, opts).await
    }

    /// A transaction of its parsed entries.
    async fn transaction_of(
        &self,
        caller: &Caller,
        entries: Vec<Entry>,
        opts: BundleOptions,
    ) -> Result<Value> {
        let Prepared(mut entries) = self.checked(entries)?;
        let mut tx = self.db.begin().await?;
        let answers = self
            .transaction_in(&mut tx, caller, &mut entries, opts)
            .await?;
        super::noted_event(&mut tx, bundle_event("transaction", entries.len()));
        self.commit(tx, caller).await?;
        let mut answers: Vec<Option<Answer>> = answers;
        for e in entries.iter().filter(|e| e.method == Method::Get) {
            answers[e.index] = Some(match self.audited_entry(caller, e).await {
                Ok(a) => a,
                Err(err) => Answer::failed(
                    &at_entry(err, e.index, e.full_url.as_deref()),
                    &caller.request_id,
                ),
            });
        }
        Ok(response_bundle(
            "transaction-response",
            answers,
            &caller.base_url,
        ))
    }

    /// A GET entry, answered and audited (its failure too).
    async fn audited_entry(&self, caller: &Caller, e: &Entry) -> Result<Answer> {
        let mut event = entry_event(e);
        let r = self.get_entry(caller, e).await;
        match &r {
            Ok(a) => {
                event = event.answered(
                    a.status
                        .get(..3)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(200),
                );
                let mut seen = Vec::new();
                if let Some(b) = &a.body {
                    match b["entry"].as_array() {
                        Some(entries) => {
                            event.count = Some(entries.len() as u64);
                            for x in entries {
                                seen.extend(crate::audit::patients_of(&x["resource"]));
                            }
                        }
                        None => seen.extend(crate::audit::patients_of(b)),
                    }
                }
                seen.dedup();
                event.patients = seen;
                self.record(caller, event).await?;
            }
            Err(err) => self.refused_entry(caller, event, err).await?,
        }
        r
    }

    /// Records the failed attempt of an entry.
    async fn refused_entry(
        &self,
        caller: &Caller,
        event: crate::audit::Event,
        err: &Error,
    ) -> Result<()> {
        self.record(caller, event.answered(err.status().as_u16()))
            .await
    }

    /// A GET entry: a read, a vread or a search.
    async fn get_entry(&self, caller: &Caller, e: &Entry) -> Result<Answer> {
        let rt = self.resource_type(&e.rtype)?;
        match (&e.id, e.version) {
            (Some(id), Some(v)) => {
                let ver = self.vread(caller, rt, id, v).await?;
                Ok(Answer::version("200 OK", ver, true))
            }
            (Some(id), None) => {
                let ver = self.read(caller, rt, id).await?;
                Ok(Answer::version("200 OK", ver, true))
            }
            (None, _) => {
                let params = e
                    .query
                    .as_deref()
                    .map(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .into_owned()
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let text = self
                    .search(
                        caller,
                        rt,
                        &SearchRequest {
                            params,
                            strict: false,
                        },
                    )
                    .await?;
                let body = serde_json::from_str(&text)
                    .map_err(|err| anyhow::anyhow!("search bundle is not JSON: {err}"))?;
                Ok(Answer {
                    status: "200 OK",
                    version: None,
                    body: Some(body),
                    outcome: None,
                })
            }
        }
    }
}

/// The event of a bundle itself, with `n` entries.
fn bundle_event(action: &str, n: usize) -> crate::audit::Event {
    crate::audit::Event {
        time: crate::audit::stamp(chrono::Utc::now()),
        category: "rest".into(),
        action: action.into(),
        outcome: "success".into(),
        resource_type: Some("Bundle".into()),
        count: Some(n as u64),
        ..Default::default()
    }
}

/// The event of an entry, before it is answered.
fn entry_event(e: &Entry) -> crate::audit::Event {
    let action = match (e.method, &e.id, e.version) {
        (Method::Get, Some(_), Some(_)) => "vread",
        (Method::Get, Some(_), None) => "read",
        (Method::Get, None, _) => "search-type",
        (Method::Post, ..) => "create",
        (Method::Put, ..) => "update",
        (Method::Patch, ..) => "patch",
        (Method::Delete, ..) => "delete",
    };
    crate::audit::Event {
        time: crate::audit::stamp(chrono::Utc::now()),
        category: "rest".into(),
        action: action.into(),
        outcome: "success".into(),
        resource_type: Some(e.rtype.clone()),
        resource_id: e.id.as_ref().map(|i| i.as_str().to_owned()),
        version: e.version,
        query: e.query.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize, method: Method, rtype: &str, resource: Option<Value>) -> Entry {
        Entry {
            index,
            full_url: None,
            method,
            rtype: rtype.into(),
            id: None,
            version: None,
            query: None,
            resource,
            patch: None,
            if_match: None,
            if_none_exist: None,
        }
    }

    #[test]
    fn writes_follow_phases_and_references() {
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p"}});
        let entries = vec![
            entry(
                0,
                Method::Put,
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(1, Method::Post, "Observation", Some(obs)),
            entry(
                2,
                Method::Post,
                "Encounter",
                Some(json!({"resourceType": "Encounter"})),
            ),
            entry(3, Method::Get, "Patient", None),
        ];
        let targets = vec![Id::parse("p"), Id::parse("o"), Id::parse("e"), None];
        assert_eq!(write_order(&entries, &targets), vec![0, 1, 2]);
        let plain = vec![
            entry(
                0,
                Method::Put,
                "Patient",
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(
                1,
                Method::Post,
                "Encounter",
                Some(json!({"resourceType": "Encounter"})),
            ),
        ];
        assert_eq!(
            write_order(&plain, &[Id::parse("p"), Id::parse("e")]),
            vec![1, 0],
            "POST before PUT when nothing ties them"
        );
    }

    #[test]
    fn a_cycle_is_ordered_as_far_as_it_goes() {
        let a = json!({"resourceType": "Encounter", "partOf": {"reference": "Encounter/b"}});
        let b = json!({"resourceType": "Encounter", "partOf": {"reference": "Encounter/a"}});
        let entries = vec![
            entry(0, Method::Post, "Encounter", Some(a)),
            entry(1, Method::Post, "Encounter", Some(b)),
        ];
        assert_eq!(
            write_order(&entries, &[Id::parse("a"), Id::parse("b")]),
            vec![1, 0]
        );
    }

    #[test]
    fn entry_urls_are_parsed_or_refused() {
        let base = "http://x/fhir";
        let e = parse_entry(
            0,
            &json!({"request": {"method": "GET", "url": "Patient/1/_history/2"}}),
            base,
        )
        .unwrap();
        assert_eq!((e.id.unwrap().as_str(), e.version), ("1", Some(2)));
        let e = parse_entry(
            0,
            &json!({"request": {"method": "DELETE", "url": "http://x/fhir/Patient?identifier=a|b"}}),
            base,
        )
        .unwrap();
        assert_eq!(e.query.as_deref(), Some("identifier=a|b"));
        for bad in [
            "",
            "patient",
            "Patient/../x",
            "Patient/1/2",
            "Patient/1/_history/x",
        ] {
            let r = parse_entry(0, &json!({"request": {"method": "GET", "url": bad}}), base);
            assert!(matches!(r, Err(Error::BadRequest(_))), "{bad}");
        }
        let r = parse_entry(
            0,
            &json!({"request": {"method": "PUT", "url": "Patient"}, "resource": {"resourceType": "Patient"}}),
            base,
        );
        assert!(matches!(r, Err(Error::BadRequest(_))));
    }
}

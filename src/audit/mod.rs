//! The audit trail: one event per access or change, appended to a hash-chained sequence in
//! `audit_logs` (see docs/AUDIT.md). The event of a write is appended in the write's own
//! transaction ([`chain::append`]); the events of reads are written to the process's
//! [`journal`] and go through the [`writer::Audit`] queue, which appends them in batches.
//! Changes made outside the server (the clinic application writing its tables directly) are
//! recorded by triggers into an inbox and chained from there ([`chain::seal_inbox`]).
//!
//! An event holds ids, never content: no names, birth dates, identifiers or bodies (a search's
//! query, which the clinic may need to account for, is the exception, and stays out of the
//! patient's own view).

pub mod chain;
pub mod fhir;
pub mod journal;
pub mod search;
pub mod verify;
pub mod writer;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use writer::Audit;

/// The hash before the first row of the chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited event, in the order its fields are written: its JSON text (without spaces, the
/// absent fields left out) is what the chain hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The id its row takes (made when it is stored, unless given before: an event written to
    /// the journal keeps its id there). Not part of the text.
    #[serde(skip)]
    pub id: Option<uuid::Uuid>,
    /// Its text, once made for the journal: stored as it was written there, not made again.
    #[serde(skip)]
    pub written: Option<String>,
    /// When, in UTC, to the millisecond (`2026-12-06T10:00:00.123Z`).
    pub time: String,
    /// What kind of event: `rest` (a FHIR interaction), `login`, `token`, `admin` (the command
    /// line), `change` (a direct change of a clinical table), `clinic` (the clinic
    /// application's own audit row).
    pub category: String,
    /// The interaction or step: `read`, `search-type`, `create`, `sign-in`, `token`, `update`...
    pub action: String,
    /// `success`, `minor-failure` (refused: 4xx) or `serious-failure` (5xx).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The user (their fhirUser reference, else their user id) or, with no user, nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The OAuth client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The logical ids of the patients whose data was read or written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// A search's query as the server applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// How many resources were returned (includes counted), or written (an import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Every resource version an import wrote (`Type/id/_history/n`): an import's event names
    /// them all instead of taking a row each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// The network address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A direct change: the database user, and the columns it changed (old and new values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Value>,
}

impl Event {
    /// An event of `category` and `action` happening now, by `ctx`.
    pub fn now(ctx: &Context, category: &str, action: &str) -> Event {
        let who = ctx.who();
        Event {
            time: stamp(Utc::now()),
            category: category.into(),
            action: action.into(),
            outcome: "success".into(),
            agent: who.agent,
            client: who.client,
            source: ctx.source.clone(),
            user_agent: ctx.user_agent.clone(),
            request_id: ctx.request_id.clone(),
            ..Event::default()
        }
    }

    /// The event's canonical text (see docs/AUDIT.md).
    pub fn text(&self) -> String {
        if let Some(t) = &self.written {
            return t.clone();
        }
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Sets the outcome from an HTTP status.
    pub fn answered(mut self, status: u16) -> Event {
        self.status = Some(status);
        self.outcome = outcome_of(status).into();
        self
    }

    /// Names the resource the event is about.
    pub fn on(mut self, resource_type: &str, id: Option<&str>, version: Option<i64>) -> Event {
        self.resource_type = Some(resource_type.into());
        self.resource_id = id.map(Into::into);
        self.version = version;
        self
    }
}

/// The outcome of an answer with `status`.
pub fn outcome_of(status: u16) -> &'static str {
    match status {
        500.. => "serious-failure",
        400.. => "minor-failure",
        _ => "success",
    }
}

/// A time as events write it.
pub fn stamp(t: DateTime<Utc>) -> String {
    crate::store::millis_text(&t).unwrap_or_else(|| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The hash of the row `seq` with `event`, after the row whose hash is `prev`: SHA-256 of
/// `"{seq}\n{prev}\n{event}"`, in lower-case hex.
pub fn hash(seq: i64, prev: &str, event: &str) -> String {
    let mut h = Sha256::new();
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(event.as_bytes());
    format!("{:x}", h.finalize())
}

/// Who is calling, once a token or a sign-in told.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub agent: Option<String>,
    pub client: Option<String>,
}

/// Who and where a request comes from, and whether its event was already written (with a
/// write, in the write's transaction): shared by the HTTP layer and the interaction it calls.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub source: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    who: Arc<Mutex<Who>>,
    written: Arc<AtomicBool>,
    seen: Arc<Mutex<Option<Seen>>>,
}

/// What a read or search returned, as its event tells it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub version: Option<i64>,
    pub patients: Vec<String>,
    pub count: Option<u64>,
    pub query: Option<String>,
    pub action: Option<&'static str>,
}

impl Context {
    /// The context of a request from `source`.
    pub fn new(
        source: Option<String>,
        user_agent: Option<String>,
        request_id: Option<String>,
    ) -> Context {
        Context {
            source,
            user_agent,
            request_id,
            ..Context::default()
        }
    }

    /// The context of a command run on the server's machine (`import`, `launch`...).
    pub fn local(command: &str) -> Context {
        let ctx = Context::new(Some("local".into()), None, None);
        ctx.identify(None, Some(format!("expediente {command}")));
        ctx
    }

    pub fn who(&self) -> Who {
        self.who.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Names the caller (from its token, or a sign-in).
    pub fn identify(&self, agent: Option<String>, client: Option<String>) {
        if let Ok(mut w) = self.who.lock() {
            *w = Who { agent, client };
        }
    }

    /// Says the request's event was written with its write.
    pub fn mark_written(&self) {
        self.written.store(true, Ordering::Release);
    }

    pub fn is_written(&self) -> bool {
        self.written.load(Ordering::Acquire)
    }

    /// Tells what a read or search returned.
    pub fn saw(&self, seen: Seen) {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(seen);
        }
    }

    pub fn seen(&self) -> Option<Seen> {
        self.seen.lock().ok().and_then(|mut s| s.take())
    }
}

/// The logical ids of the patients a resource belongs to: the Patient itself, or the patient
/// its `subject` or `patient` names.
pub fn patients_of(resource: &Value) -> Vec<String> {
    if resource["resourceType"] == "Patient" {
        return resource["id"]
            .as_str()
            .map(|s| vec![s.into()])
            .unwrap_or_default();
    }
    ["subject", "patient"]
        .iter()
        .filter_map(|k| resource[*k]["reference"].as_str())
        .filter_map(patient_id)
        .collect()
}

/// The patient id of a reference (`Patient/x`, or an absolute URL ending so).
pub fn patient_id(reference: &str) -> Option<String> {
    let (head, id) = reference.rsplit_once('/')?;
    (head == "Patient" || head.ends_with("/Patient")).then(|| id.to_owned())
}

/// The members of a resource that name its patients (every other member is skipped unread),
/// of any JSON type: a member that is not what FHIR makes it names no patient, and leaves the
/// rest of a Bundle readable.
#[derive(Deserialize)]
struct Linked {
    #[serde(rename = "resourceType")]
    resource_type: Option<Value>,
    id: Option<Value>,
    subject: Option<Value>,
    patient: Option<Value>,
}

impl Linked {
    fn patients(self) -> Vec<String> {
        if self.resource_type.as_ref().and_then(Value::as_str) == Some("Patient") {
            return self
                .id
                .as_ref()
                .and_then(Value::as_str)
                .map(|id| vec![id.to_owned()])
                .unwrap_or_default();
        }
        [self.subject, self.patient]
            .iter()
            .flatten()
            .filter_map(|r| r["reference"].as_str().and_then(patient_id))
            .collect()
    }
}

/// Patients of a resource given as JSON text, without building the whole value.
pub fn patients_in_text(text: &str) -> Vec<String> {
    serde_json::from_str::<Linked>(text)
        .map(Linked::patients)
        .unwrap_or_default()
}

/// What a searchset or history Bundle (as JSON text) returned: how many resources, the
/// patients they belong to, and its query (from its `self` link).
pub fn seen_in_bundle(text: &str) -> Seen {
    #[derive(Deserialize)]
    struct Link {
        relation: Option<String>,
        url: Option<String>,
    }
    // Each resource is read once, for the members that name its patients.
    #[derive(Deserialize)]
    struct Entry {
        resource: Option<Linked>,
    }
    #[derive(Deserialize)]
    struct Bundle {
        #[serde(default)]
        link: Vec<Link>,
        #[serde(default)]
        entry: Vec<Entry>,
    }
    let Ok(b) = serde_json::from_str::<Bundle>(text) else {
        return Seen::default();
    };
    let mut patients: Vec<String> = Vec::new();
    let count = b.entry.len() as u64;
    for r in b.entry.into_iter().filter_map(|e| e.resource) {
        for p in r.patients() {
            if !patients.contains(&p) {
                patients.push(p);
            }
        }
    }
    let query = b
        .link
        .iter()
        .find(|l| l.relation.as_deref() == Some("self"))
        .and_then(|l| l.url.as_deref())
        .and_then(|u| u.split_once('?').map(|(_, q)| q.to_owned()));
    Seen {
        patients,
        count: Some(count),
        query,
        ..Seen::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    #[test]
    fn a_bundle_tells_its_patients_count_and_query() {
        let bundle = serde_json::json!({
            "resourceType": "Bundle",
            "link": [
                {"relation": "next", "url": "http://x/fhir/Observation?_cursor=a"},
                {"relation": "self", "url": "http://x/fhir/Observation?code=1"}
            ],
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "ana", "name": [{"family": "A"}]}},
                {"resource": {"resourceType": "Observation", "id": "o1",
                              "subject": {"reference": "Patient/bea"}, "valueString": "}{"}},
                {"resource": {"resourceType": "Observation", "id": "o2",
                              "subject": {"reference": "Group/g"}}},
                // Not FHIR: names no patient, and the rest is still read.
                {"resource": {"resourceType": "Observation", "id": 7, "subject": "Patient/eve"}},
                {"resource": {"resourceType": "AllergyIntolerance", "id": "a1",
                              "patient": {"reference": "http://x/fhir/Patient/ana"}}}
            ]
        });
        let seen = seen_in_bundle(&bundle.to_string());
        assert_eq!(seen.patients, vec!["ana".to_owned(), "bea".to_owned()]);
        assert_eq!(seen.count, Some(5));
        assert_eq!(seen.query.as_deref(), Some("code=1"));
        assert_eq!(
            patients_in_text(r#"{"resourceType":"Patient","id":"ana"}"#),
            vec!["ana".to_owned()]
        );
        assert!(patients_in_text("not json").is_empty());
    }

    #[test]
    fn a_stamp_is_what_chrono_writes() {
        let mut t = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap();
        let step = chrono::Duration::milliseconds(86_400_000 * 3 + 3_723_457);
        while t.year() < 9999 {
            assert_eq!(stamp(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
            t += step;
        }
        let now = Utc::now();
        assert_eq!(stamp(now), now.to_rfc3339_opts(SecondsFormat::Millis, true));
        let far = Utc.with_ymd_and_hms(12000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(stamp(far), far.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
}

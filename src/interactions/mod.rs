//! The FHIR interactions: the one place where a read or write happens. Each write validates,
//! maps, stores the row and its history version in one database transaction, and commits once.
//! (The caller's rights and the audit record belong inside the same transaction; they join here.)

mod check;
mod conditional;
mod delete;
mod everything;
mod history;
mod patch;
mod read;
mod recorded;
mod rights;
mod search;
mod transaction;
mod write;

pub use history::HistoryQuery;
pub use patch::{
    apply_patch, parse_patch, MAX_PATCH_COPIED, MAX_PATCH_DEPTH, MAX_PATCH_OPERATIONS,
};
pub(crate) use recorded::WrittenRow;
pub use search::{SearchQuery, SearchRequest};
pub use transaction::BundleOptions;
pub(crate) use transaction::{Answers, Prepared};
pub(crate) use write::{Updated, WriteMemo};

use crate::error::{Error, Result};
use crate::fhir::validate::Validators;
use crate::fhir::{Id, Issue, IssueType, ResourceType};
use crate::mapping::fields::RowMeta;
use crate::mapping::versions::{self, Head, NewVersion};
use crate::mapping::{custom, Registry, ResourceMapping, RowWrite};
use crate::store::{Conn, Db, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The FHIR service: database, mappings and validators, shared by every request.
#[derive(Clone)]
pub struct Fhir {
    pub db: Db,
    pub registry: Registry,
    pub validators: Arc<Validators>,
    pub profiles: Arc<crate::fhir::profiles::Profiles>,
    /// Where read events go; write events are appended in their transaction ([`Fhir::commit`]).
    pub audit: crate::audit::Audit,
}

/// Who is asking and where the server is, as the HTTP layer saw it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The FHIR base URL as the client reached it (`http://host/fhir`), for fullUrl and links.
    pub base_url: String,
    /// What the caller may do, and see: searches, includes, `$everything` and history are
    /// restricted to it (see [`crate::auth::access::Access`]).
    pub access: crate::auth::access::Access,
    /// The id of the request (its `X-Request-ID`), written into the outcome of a failure of the
    /// server so that the client's report and the log line meet.
    pub request_id: String,
    /// Who and where the request comes from, for its audit event.
    pub audit: crate::audit::Context,
}

/// A resource version as served: the resource (absent when deleted) and its meta.
#[derive(Debug)]
pub struct Version {
    pub resource_type: &'static str,
    pub id: String,
    pub version_id: i64,
    pub last_updated: DateTime<Utc>,
    pub resource: Option<Value>,
    /// The resource as the exact JSON text stored, when it was read that way (the fast read
    /// path serves it without parsing and re-serialising).
    pub raw: Option<String>,
}

impl Version {
    /// The resource as JSON, parsed from its stored text when it was read that way; None when
    /// deleted.
    pub fn into_json(self) -> Option<Value> {
        self.resource
            .or_else(|| self.raw.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// The result of a create or update.
#[derive(Debug)]
pub struct Written {
    pub version: Version,
    /// True when the write created the resource (201), false when it updated it (200).
    pub created: bool,
}

impl Fhir {
    /// The hosted type a request names, or 404 when this server does not host it.
    pub fn resource_type(&self, name: &str) -> Result<ResourceType> {
        self.registry.resource_type(name).ok_or_else(|| {
            Error::NotFound(format!(
                "resource type '{}' is not supported",
                name.escape_default()
            ))
        })
    }

    /// Where the search conditions on `resource_type` are built for `caller` (what the caller
    /// may see goes with it).
    pub(crate) fn ctx<'a>(
        &'a self,
        caller: &'a Caller,
        resource_type: &'static str,
    ) -> crate::mapping::search::Ctx<'a> {
        crate::mapping::search::Ctx {
            dialect: self.db.dialect(),
            resource_type,
            registry: &self.registry,
            base_url: &caller.base_url,
            narrow: false,
            restriction: caller
                .access
                .restriction(crate::auth::scope::Action::Search),
        }
    }

    /// The mapping of a resource type, or 404 when this server does not host it.
    pub fn mapping(&self, resource_type: impl AsRef<str>) -> Result<Arc<dyn ResourceMapping>> {
        let resource_type = resource_type.as_ref();
        self.registry.get(resource_type).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "resource type '{}' is not supported",
                resource_type.escape_default()
            ))
        })
    }
}

/// The audit events of a transaction's writes, appended when it commits ([`Fhir::commit`]).
#[derive(Default)]
pub(crate) struct Audited(Vec<crate::audit::Event>);

/// Notes the audit event of a version written in `tx`.
pub(crate) fn noted(tx: &mut Tx, action: &str, version: &Version, patients: Vec<String>) {
    let event = crate::audit::Event {
        time: crate::audit::stamp(chrono::Utc::now()),
        category: "rest".into(),
        action: action.into(),
        outcome: "success".into(),
        patients,
        ..Default::default()
    }
    .on(
        version.resource_type,
        Some(&version.id),
        Some(version.version_id),
    );
    tx.ledger::<Audited>().0.push(event);
}

/// Notes an event of `tx` that is no version (a bundle itself).
pub(crate) fn noted_event(tx: &mut Tx, event: crate::audit::Event) {
    tx.ledger::<Audited>().0.push(event);
}

/// Renames the last event noted in `tx` (a patch is written as an update).
pub(crate) fn renote_last(tx: &mut Tx, action: &str) {
    if let Some(e) = tx.ledger::<Audited>().0.last_mut() {
        e.action = action.into();
    }
}

impl Fhir {
    /// Commits `tx` with the audit events of its writes, by `caller`: they are appended to the
    /// chain in the same transaction, and commit or roll back with it.
    pub(crate) async fn commit(&self, mut tx: Tx, caller: &Caller) -> Result<()> {
        let n = self.seal_events(&mut tx, caller).await?;
        tx.commit().await?;
        if n > 0 {
            caller.audit.mark_written();
        }
        Ok(())
    }

    /// Appends the audit events noted in `tx`, by `caller`, to the chain; how many there were.
    pub(crate) async fn seal_events(&self, tx: &mut Tx, caller: &Caller) -> Result<usize> {
        let mut events = std::mem::take(&mut tx.ledger::<Audited>().0);
        if !self.audit.is_on() || events.is_empty() {
            return Ok(0);
        }
        for e in &mut events {
            by(caller, e);
        }
        crate::audit::chain::append(tx, &events).await?;
        Ok(events.len())
    }

    /// Appends the audit events noted in an import's `tx` as one event, by `caller`: the
    /// resources it wrote named in it (each findable by its own entity index row), the
    /// patients they belong to, how many. An import writes thousands of resources a second; an
    /// event row each would cost it more than a tenth of its rate.
    pub(crate) async fn seal_import(&self, tx: &mut Tx, caller: &Caller) -> Result<usize> {
        let noted = std::mem::take(&mut tx.ledger::<Audited>().0);
        if !self.audit.is_on() || noted.is_empty() {
            return Ok(0);
        }
        let mut event = crate::audit::Event {
            time: crate::audit::stamp(chrono::Utc::now()),
            category: "rest".into(),
            action: "import".into(),
            outcome: "success".into(),
            resource_type: Some("Bundle".into()),
            count: Some(noted.len() as u64),
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        for e in noted {
            if let (Some(t), Some(id), Some(v)) = (e.resource_type, e.resource_id, e.version) {
                event.entities.push(format!("{t}/{id}/_history/{v}"));
            }
            for p in e.patients {
                if seen.insert(p.clone()) {
                    event.patients.push(p);
                }
            }
        }
        by(caller, &mut event);
        crate::audit::chain::append(tx, std::slice::from_ref(&event)).await?;
        Ok(1)
    }

    /// Records `event`, by `caller`, through the audit queue (a read, a refused attempt):
    /// answers once it is stored.
    pub async fn record(&self, caller: &Caller, mut event: crate::audit::Event) -> Result<()> {
        by(caller, &mut event);
        self.audit.record(event).await
    }
}

/// Says in `e` who made it and from where.
fn by(caller: &Caller, e: &mut crate::audit::Event) {
    let who = caller.audit.who();
    e.agent = who.agent;
    e.client = who.client;
    e.source.clone_from(&caller.audit.source);
    e.user_agent.clone_from(&caller.audit.user_agent);
    e.request_id.clone_from(&caller.audit.request_id);
}

fn not_found(resource_type: &str, id: &Id) -> Error {
    Error::NotFound(format!("{resource_type}/{id} is not known"))
}

fn stale(resource_type: &str, id: &Id, wanted: i64, current: i64) -> Error {
    Error::PreconditionFailed(format!(
        "If-Match names version {wanted} of {resource_type}/{id}, but the current version is {current}"
    ))
}

/// The version facts of a served resource, read from its meta.
fn version_of(resource_type: &'static str, resource: Option<Value>) -> Result<Version> {
    let r = resource.ok_or_else(|| anyhow::anyhow!("stored version has no resource"))?;
    let meta = r.get("meta");
    let id = r
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let version_id = meta
        .and_then(|m| m.get("versionId"))
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("stored resource has no versionId"))?;
    let last_updated = meta
        .and_then(|m| m.get("lastUpdated"))
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| anyhow::anyhow!("stored resource has no lastUpdated"))?;
    Ok(Version {
        resource_type,
        id,
        version_id,
        last_updated,
        resource: Some(r),
        raw: None,
    })
}

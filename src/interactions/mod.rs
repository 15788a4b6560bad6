//! The FHIR interactions: the one place where a read or write happens. Each write validates,
//! maps, stores the row and its history version in one database transaction, and commits once.
//! (The caller's rights and the audit record belong inside the same transaction; they join here.)

mod conditional;
mod everything;
mod history;
mod patch;
mod search;
mod transaction;

pub use history::HistoryQuery;
pub use patch::parse_patch;
pub use search::{SearchQuery, SearchRequest};
pub use transaction::BundleOptions;
pub(crate) use transaction::{Answers, Prepared};

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

/// A row just written, to record as a version (see [`Fhir::record_versions`]).
pub(crate) struct WrittenRow {
    pub row_id: Uuid,
    /// The method that wrote it (`POST`, `PUT`...).
    pub method: &'static str,
    /// When this transaction inserted the row: the body it was inserted from, and the row's
    /// version and update time, which the insert wrote (see [`crate::store::Tx::stamp`]).
    pub inserted: Option<(Value, RowMeta)>,
}

impl WrittenRow {
    /// Row `row_id` of logical id `fhir_id`, just written by `method`, inserted from
    /// `inserted_from` when this transaction inserted it.
    pub(crate) fn new(
        tx: &Tx,
        row_id: Uuid,
        fhir_id: &str,
        method: &'static str,
        inserted_from: Option<Value>,
    ) -> WrittenRow {
        // (A row without the time its insert wrote is read back, as an update is.)
        let inserted = inserted_from.and_then(|body| {
            let updated_at = tx.stamp(row_id)?;
            let meta = RowMeta {
                fhir_id: fhir_id.to_owned(),
                version_id: 1,
                updated_at,
            };
            Some((body, meta))
        });
        WrittenRow {
            row_id,
            method,
            inserted,
        }
    }
}

/// The FHIR service: database, mappings and validators, shared by every request.
#[derive(Clone)]
pub struct Fhir {
    pub db: Db,
    pub registry: Registry,
    pub validators: Arc<Validators>,
    pub profiles: Arc<crate::fhir::profiles::Profiles>,
}

/// Who is asking and where the server is, as the HTTP layer saw it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The FHIR base URL as the client reached it (`http://host/fhir`), for fullUrl and links.
    pub base_url: String,
    /// What the caller may see: searches, includes, `$everything` and history are restricted
    /// to it (see [`crate::mapping::search::Restriction`]).
    pub restriction: crate::mapping::search::Restriction,
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

/// The result of a create or update.
#[derive(Debug)]
pub struct Written {
    pub version: Version,
    /// True when the write created the resource (201), false when it updated it (200).
    pub created: bool,
}

/// What [`Fhir::update_rows`] did.
pub(crate) enum Updated {
    /// Nothing changed: the current version stands.
    Unchanged(Version),
    /// The rows were written; their version is yet to be recorded. `created` when the
    /// resource did not exist (or was deleted), `inserted` when its rows are new.
    Rows {
        row_id: Uuid,
        created: bool,
        inserted: bool,
    },
}

/// What the interactions keep for the rest of a transaction (its memo), by resource type and
/// logical id.
#[derive(Default)]
pub(crate) struct WriteMemo {
    /// Heads read ahead (see [`Fhir::prefetch_heads`]), for one use each; `None` when there is
    /// no row.
    heads: HashMap<(String, String), Option<Head>>,
    /// Resources found live or written by the transaction.
    exists: std::collections::HashSet<(String, String)>,
    /// The row ids chosen ahead for PUTs that create (see [`Fhir::new_row_for`]).
    new_rows: HashMap<(String, String), Uuid>,
}

fn key(resource_type: &str, id: &str) -> (String, String) {
    (resource_type.to_owned(), id.to_owned())
}

impl WriteMemo {
    /// Notes that the transaction found or wrote `resource_type`/`id` live.
    pub(crate) fn found(tx: &mut Tx, resource_type: &str, id: &str) {
        tx.memo::<WriteMemo>().exists.insert(key(resource_type, id));
    }

    /// Whether the transaction found or wrote `resource_type`/`id` live.
    fn exists(tx: &Tx, resource_type: &str, id: &str) -> bool {
        tx.peek_memo::<WriteMemo>()
            .is_some_and(|w| w.exists.contains(&key(resource_type, id)))
    }
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

    /// Checks a resource body before any write: its type, the JSON rules and the schema.
    fn check(&self, m: &dyn ResourceMapping, body: &Value) -> Result<()> {
        let rt = m.resource_type();
        match body.get("resourceType").and_then(Value::as_str) {
            Some(t) if t == rt => {}
            Some(t) => {
                return Err(Error::BadRequest(vec![Issue::error(
                    IssueType::Invalid,
                    format!(
                        "resourceType '{}' does not match the URL, which expects {rt}",
                        t.escape_default()
                    ),
                )
                .at("resourceType")]))
            }
            None => {
                return Err(Error::BadRequest(vec![Issue::error(
                    IssueType::Required,
                    "the body is not a FHIR resource: resourceType is missing",
                )
                .at("resourceType")]))
            }
        }
        let mut issues = crate::fhir::validate::json_rules(rt, body);
        issues.extend(self.validators.validate(rt, body));
        if !issues.is_empty() {
            return Err(Error::BadRequest(issues));
        }
        // A well-formed resource that breaks a profile it claims cannot be processed as sent.
        let issues = self.profiles.check(rt, body);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(Error::Unprocessable(issues))
        }
    }

    /// References are checked: every reference to a type this server hosts must name a resource
    /// that exists (422 naming the element otherwise). References to other types, contained
    /// resources (`#x`) and other servers are kept as sent.
    async fn check_references(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        resource_type: &str,
        body: &Value,
    ) -> Result<()> {
        let mut refs = Vec::new();
        crate::fhir::references_at(body, &mut |steps, r| {
            refs.push((crate::fhir::fhirpath(resource_type, steps), r.to_owned()))
        });
        let own = format!("{}/", caller.base_url);
        let mut issues = Vec::new();
        for (path, reference) in refs {
            let local = reference.strip_prefix(&own).unwrap_or(&reference);
            let mut parts = local.splitn(3, '/');
            let (Some(ty), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let versioned = parts
                .next()
                .is_none_or(|rest| rest.starts_with("_history/"));
            let Some(target) = self.registry.get(ty) else {
                continue;
            };
            let exists = match Id::parse(id) {
                Some(id) if versioned => {
                    // What this transaction found once stays found (deletes forget it).
                    if WriteMemo::exists(tx, ty, id.as_str()) {
                        true
                    } else {
                        let found = self
                            .head(&mut Conn::Tx(tx), target.as_ref(), &id)
                            .await?
                            .is_some_and(|h| !h.deleted);
                        if found {
                            WriteMemo::found(tx, ty, id.as_str());
                        }
                        found
                    }
                }
                _ => false,
            };
            if !exists {
                issues.push(
                    Issue::error(
                        IssueType::Processing,
                        format!(
                            "the reference '{}' names no {ty} on this server",
                            local.escape_default()
                        ),
                    )
                    .at(path),
                );
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(Error::Unprocessable(issues))
        }
    }

    async fn head(
        &self,
        conn: &mut Conn<'_>,
        m: &dyn ResourceMapping,
        id: &Id,
    ) -> Result<Option<Head>> {
        // A transaction may have read it ahead, for one use (see prefetch_heads).
        if let Conn::Tx(tx) = conn {
            if let Some(h) = tx
                .memo::<WriteMemo>()
                .heads
                .remove(&key(m.resource_type(), id.as_str()))
            {
                return Ok(h);
            }
        }
        Ok(versions::head(conn, m, id.as_str()).await?)
    }

    /// The row id a PUT that creates `rt`/`id` will insert, chosen now for writes that name
    /// the row before it exists.
    pub(crate) fn new_row_for(tx: &mut Tx, rt: &str, id: &Id) -> Uuid {
        let row = Uuid::new_v4();
        tx.memo::<WriteMemo>()
            .new_rows
            .insert(key(rt, id.as_str()), row);
        row
    }

    /// Whether [`Fhir::prefetch_heads`] found no row at all for `rt`/`id` (a write to it creates
    /// it).
    pub(crate) fn known_absent(&self, tx: &Tx, rt: &str, id: &Id) -> bool {
        matches!(
            tx.peek_memo::<WriteMemo>()
                .and_then(|w| w.heads.get(&key(rt, id.as_str()))),
            Some(None)
        )
    }

    /// Reads the heads of many resources of `m` at once, for the next [`Fhir::head`] of each
    /// to use (a transaction about to write them).
    pub(crate) async fn prefetch_heads(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        ids: &[Id],
    ) -> Result<()> {
        let names: Vec<&str> = ids.iter().map(Id::as_str).collect();
        let found = versions::heads(tx, m, &names).await?;
        let memo = tx.memo::<WriteMemo>();
        for id in ids {
            let h = found.get(id.as_str()).copied();
            memo.heads.insert(key(m.resource_type(), id.as_str()), h);
        }
        Ok(())
    }

    /// Records rows just written, of one type, as versions in resource_versions (see
    /// [`Fhir::read_back`]).
    pub(crate) async fn record_versions(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        rows: &mut [WrittenRow],
    ) -> Result<Vec<Version>> {
        let defs = custom::definitions(&mut Conn::Tx(tx), m.resource_type()).await?;
        let loaded = self.read_back(&mut Conn::Tx(tx), m, rows, &defs).await?;
        self.queue_versions(tx, m, rows, loaded).await
    }

    /// The resources of rows just written, of one type (`defs` being its custom fields), as
    /// their versions are to record them (see [`Fhir::queue_versions`]).
    ///
    /// A resource whose rows this transaction inserted from a body is that body (taken from
    /// `rows`): the mapping keeps what it cannot rebuild from columns, so the rows give it back
    /// (lossless by construction, docs/DESIGN.md), with the version and update time the insert
    /// wrote (see [`crate::store::Tx::stamp`]): nothing is read. Every other resource (an update, or a type with custom fields, whose stored values may read
    /// back in a form of their own) is read back and assembled from its rows. Debug builds,
    /// which the tests run, read back the inserted ones too and fail unless they are equal.
    pub(crate) async fn read_back(
        &self,
        conn: &mut Conn<'_>,
        m: &dyn ResourceMapping,
        rows: &mut [WrittenRow],
        defs: &[custom::FieldDef],
    ) -> Result<HashMap<Uuid, Value>> {
        let as_written = |r: &WrittenRow| defs.is_empty() && r.inserted.is_some();
        let to_load: Vec<Uuid> = rows
            .iter()
            .filter(|r| !as_written(r))
            .map(|r| r.row_id)
            .collect();
        let mut out = self.load_all(conn, m, &to_load, defs).await?;
        if to_load.len() == rows.len() {
            return Ok(out);
        }
        let order = crate::mapping::element_order(m.resource_type());
        let mut inserted = Vec::new();
        for r in rows.iter_mut().filter(|r| as_written(r)) {
            if let Some((body, meta)) = r.inserted.take() {
                let resource =
                    crate::mapping::fields::as_stored(m.resource_type(), &meta, body, &order);
                out.insert(r.row_id, resource);
                inserted.push(r.row_id);
            }
        }
        #[cfg(debug_assertions)]
        {
            let loaded = self.load_all(conn, m, &inserted, defs).await?;
            for id in &inserted {
                if loaded.get(id) != out.get(id) {
                    // (The path only: the values are patient data.)
                    return Err(anyhow::anyhow!(
                        "{} row {id}: the rows do not give back the resource written, at {}",
                        m.resource_type(),
                        differs_at(loaded.get(id), out.get(id), m.resource_type())
                    )
                    .into());
                }
            }
        }
        Ok(out)
    }

    /// Rows of `m` read and assembled into resources, custom fields applied.
    async fn load_all(
        &self,
        conn: &mut Conn<'_>,
        m: &dyn ResourceMapping,
        ids: &[Uuid],
        defs: &[custom::FieldDef],
    ) -> Result<HashMap<Uuid, Value>> {
        let mut loaded: HashMap<Uuid, Value> = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut part = m.load(conn, chunk).await?;
            custom::apply_with(conn, defs, m.resource_type(), &mut part).await?;
            loaded.extend(part);
        }
        Ok(loaded)
    }

    /// [`Fhir::read_back`] of several types, in their order. Nothing is written among the reads;
    /// on SQLite they go side by side (see [`crate::store::TxReads`]): each type is made into
    /// resources while the writer's thread reads the next. The custom field definitions come
    /// first, through the transaction, which knows them once read.
    pub(crate) async fn read_back_all(
        &self,
        tx: &mut Tx,
        types: &mut [(Arc<dyn ResourceMapping>, Vec<WrittenRow>)],
    ) -> Result<Vec<HashMap<Uuid, Value>>> {
        let mut defs = Vec::with_capacity(types.len());
        for (m, _) in types.iter() {
            defs.push(custom::definitions(&mut Conn::Tx(tx), m.resource_type()).await?);
        }
        let Some(reads) = tx.side_by_side().await? else {
            let mut out = Vec::with_capacity(types.len());
            for ((m, rows), defs) in types.iter_mut().zip(&defs) {
                out.push(
                    self.read_back(&mut Conn::Tx(tx), m.as_ref(), rows, defs)
                        .await?,
                );
            }
            return Ok(out);
        };
        futures_util::future::try_join_all(types.iter_mut().zip(&defs).map(|((m, rows), defs)| {
            let mut conn = Conn::Reads(reads.clone());
            async move { self.read_back(&mut conn, m.as_ref(), rows, defs).await }
        }))
        .await
    }

    /// Records the resources of [`Fhir::read_back`] as versions in resource_versions.
    pub(crate) async fn queue_versions(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        rows: &[WrittenRow],
        mut loaded: HashMap<Uuid, Value>,
    ) -> Result<Vec<Version>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let resource = loaded
                .remove(&r.row_id)
                .ok_or_else(|| anyhow::anyhow!("row vanished inside its own transaction"))?;
            let version = version_of(m.resource_type(), Some(resource))?;
            versions::record(
                tx,
                NewVersion {
                    resource_type: m.resource_type(),
                    row_id: r.row_id,
                    fhir_id: &version.id,
                    version_id: version.version_id,
                    method: r.method,
                    last_updated: version.last_updated,
                    resource: version.resource.as_ref().map(Value::to_string),
                },
            )
            .await?;
            out.push(version);
        }
        Ok(out)
    }

    /// Records the row just written as a version in resource_versions.
    async fn record_version(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        row: WrittenRow,
    ) -> Result<Version> {
        self.record_versions(tx, m, &mut [row])
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no version recorded").into())
    }

    /// create: a new resource with a server-assigned id.
    pub async fn create(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        mut body: Value,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        self.check(m.as_ref(), &body)?;
        let row_id = Uuid::new_v4();
        let mut tx = self.db.begin().await?;
        self.resolve_conditional_references(&mut tx, caller, &mut body, &mut Default::default())
            .await?;
        let version = self
            .create_in(&mut tx, caller, m.as_ref(), row_id, &body)
            .await?;
        tx.commit().await?;
        Ok(Written {
            version,
            created: true,
        })
    }

    /// A create inside the caller's transaction, of a body already [checked](Self::check): row
    /// `row_id`, whose text is also the logical id.
    async fn create_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        row_id: Uuid,
        body: &Value,
    ) -> Result<Version> {
        self.create_rows(tx, caller, m, row_id, body).await?;
        self.record_version(
            tx,
            m,
            WrittenRow::new(tx, row_id, &row_id.to_string(), "POST", Some(body.clone())),
        )
        .await
    }

    /// The rows of a create, without its version record (see [`Fhir::record_versions`]).
    pub(crate) async fn create_rows(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        row_id: Uuid,
        body: &Value,
    ) -> Result<()> {
        let id =
            Id::parse(&row_id.to_string()).ok_or_else(|| anyhow::anyhow!("uuid is not an id"))?;
        self.check_references(tx, caller, m.resource_type(), body)
            .await?;
        m.write(
            tx,
            RowWrite::New {
                row_id,
                fhir_id: &id,
            },
            body,
        )
        .await?;
        WriteMemo::found(tx, m.resource_type(), id.as_str());
        Ok(())
    }

    /// update: replaces the resource, or creates it under the client's id when it does not exist.
    pub async fn update(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        self.check(m.as_ref(), &body)?;
        match body.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id.as_str() => {}
            Some(_) => {
                return Err(Error::BadRequest(vec![Issue::error(
                    IssueType::Invalid,
                    "the id in the body does not match the id in the URL",
                )
                .at(format!("{resource_type}.id"))]))
            }
            None => {
                return Err(Error::BadRequest(vec![Issue::error(
                    IssueType::Required,
                    "an update must carry the resource id in the body",
                )
                .at(format!("{resource_type}.id"))]))
            }
        }
        // Two clients creating the same new id at once: the loser of the unique index retries
        // once, and then finds the row and updates it.
        match self
            .write_update(caller, m.as_ref(), id, &body, if_match)
            .await
        {
            Err(Error::Conflict(_)) => {
                self.write_update(caller, m.as_ref(), id, &body, if_match)
                    .await
            }
            other => other,
        }
    }

    async fn write_update(
        &self,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let mut tx = self.db.begin().await?;
        // A copy only when there is a conditional reference to resolve in it.
        let mut conditional = false;
        crate::fhir::references(body, &mut |r| conditional |= r.contains('?'));
        let resolved;
        let body = if conditional {
            let mut copy = body.clone();
            self.resolve_conditional_references(
                &mut tx,
                caller,
                &mut copy,
                &mut Default::default(),
            )
            .await?;
            resolved = copy;
            &resolved
        } else {
            body
        };
        let written = self
            .update_in(&mut tx, caller, m, id, body, if_match)
            .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// An update (or create under the client's id) inside the caller's transaction, of a body
    /// already [checked](Self::check) whose id is `id`.
    async fn update_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        match self.update_rows(tx, caller, m, id, body, if_match).await? {
            Updated::Unchanged(version) => Ok(Written {
                version,
                created: false,
            }),
            Updated::Rows {
                row_id,
                created,
                inserted,
            } => Ok(Written {
                version: self
                    .record_version(
                        tx,
                        m,
                        WrittenRow::new(
                            tx,
                            row_id,
                            id.as_str(),
                            "PUT",
                            inserted.then(|| body.clone()),
                        ),
                    )
                    .await?,
                created,
            }),
        }
    }

    /// The rows of an update, without its version record (see [`Fhir::record_versions`]).
    pub(crate) async fn update_rows(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Updated> {
        let resource_type = m.resource_type();
        self.check_references(tx, caller, resource_type, body)
            .await?;
        let head = self.head(&mut Conn::Tx(tx), m, id).await?;
        let (row_id, created, inserted) = match head {
            None => {
                if if_match.is_some() {
                    return Err(Error::PreconditionFailed(format!(
                        "{resource_type}/{id} does not exist, so If-Match cannot match"
                    )));
                }
                // A row id the transaction may have chosen ahead (see new_row_for).
                let row_id = tx
                    .memo::<WriteMemo>()
                    .new_rows
                    .remove(&key(resource_type, id.as_str()))
                    .unwrap_or_else(Uuid::new_v4);
                m.write(
                    tx,
                    RowWrite::New {
                        row_id,
                        fhir_id: id,
                    },
                    body,
                )
                .await?;
                (row_id, true, true)
            }
            Some(h) => {
                if let Some(v) = if_match {
                    if v != h.version_id {
                        return Err(stale(resource_type, id, v, h.version_id));
                    }
                }
                if !h.deleted {
                    if let Some(version) = self.unchanged(tx, m, id, h.version_id, body).await? {
                        return Ok(Updated::Unchanged(version));
                    }
                }
                let row = RowWrite::Existing {
                    row_id: h.row_id,
                    fhir_id: id,
                    expected_version: if_match,
                };
                if !m.write(tx, row, body).await? {
                    return Err(Error::PreconditionFailed(format!(
                        "{resource_type}/{id} was changed by another request; read it again"
                    )));
                }
                (h.row_id, h.deleted, false)
            }
        };
        WriteMemo::found(tx, resource_type, id.as_str());
        Ok(Updated::Rows {
            row_id,
            created,
            inserted,
        })
    }

    /// The current version, when an update to `body` would change nothing in it (apart from
    /// meta.versionId and meta.lastUpdated): such an update makes no new version.
    async fn unchanged(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        id: &Id,
        version_id: i64,
        body: &Value,
    ) -> Result<Option<Version>> {
        let Some(stored) = versions::stored(
            &mut Conn::Tx(tx),
            m.resource_type(),
            id.as_str(),
            version_id,
        )
        .await?
        else {
            return Ok(None);
        };
        let Some(text) = stored.resource else {
            return Ok(None);
        };
        let Ok(served) = serde_json::from_str::<Value>(&text) else {
            return Ok(None);
        };
        if !same_content(&served, body) {
            return Ok(None);
        }
        Ok(Some(Version {
            resource_type: m.resource_type(),
            id: id.to_string(),
            version_id,
            last_updated: stored.last_updated,
            resource: None,
            raw: Some(text),
        }))
    }

    /// The StructureDefinitions of the custom fields' extensions.
    pub async fn custom_field_profiles(&self) -> Result<Vec<Value>> {
        let defs = custom::all_definitions(&mut Conn::Pool(&self.db)).await?;
        Ok(defs.iter().map(custom::structure_definition).collect())
    }

    /// $validate: every problem a create of `body` would meet (schema, JSON rules, references,
    /// what the clinic schema accepts), found by doing the write in a transaction that is then
    /// rolled back. An empty list means the resource would be accepted.
    pub async fn validate(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        body: Value,
    ) -> Result<Vec<Issue>> {
        let m = self.mapping(resource_type)?;
        match self.check(m.as_ref(), &body) {
            Ok(()) => {}
            Err(Error::BadRequest(issues)) | Err(Error::Unprocessable(issues)) => {
                return Ok(issues)
            }
            Err(e) => return Err(e),
        }
        let mut tx = self.db.begin().await?;
        let trial = async {
            self.check_references(&mut tx, caller, m.resource_type(), &body)
                .await?;
            let row_id = Uuid::new_v4();
            let id = Id::parse(&row_id.to_string())
                .ok_or_else(|| anyhow::anyhow!("uuid is not an id"))?;
            m.write(
                &mut tx,
                RowWrite::New {
                    row_id,
                    fhir_id: &id,
                },
                &body,
            )
            .await?;
            Ok::<(), Error>(())
        }
        .await;
        // Dropping the transaction rolls the trial write back.
        drop(tx);
        match trial {
            Ok(()) => Ok(vec![]),
            Err(Error::Unprocessable(issues)) | Err(Error::BadRequest(issues)) => Ok(issues),
            Err(e) => Err(e),
        }
    }

    /// read: the current version; 410 when deleted.
    ///
    /// Every change of a row moves its version_id (the triggers see to it), so when
    /// resource_versions holds the row's current version, that stored rendering is the current
    /// resource and one query answers. Otherwise (a direct SQL write) the mapping builds it.
    pub async fn read(
        &self,
        _caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
    ) -> Result<Version> {
        let m = self.mapping(resource_type)?;
        self.read_in(&mut Conn::Pool(&self.db), m.as_ref(), id)
            .await
    }

    /// read on a connection: the pool, or a transaction that sees its own writes.
    async fn read_in(
        &self,
        conn: &mut Conn<'_>,
        m: &dyn ResourceMapping,
        id: &Id,
    ) -> Result<Version> {
        let resource_type = m.resource_type();
        let row = versions::current(conn, m, id.as_str())
            .await?
            .ok_or_else(|| not_found(resource_type, id))?;
        if row.deleted {
            return Err(Error::Gone(format!("{resource_type}/{id} was deleted")));
        }
        if let Some((at, text)) = row.stored {
            return Ok(Version {
                resource_type: m.resource_type(),
                id: id.to_string(),
                version_id: row.version_id,
                last_updated: at,
                resource: None,
                raw: Some(text),
            });
        }
        let mut loaded = m.load(conn, &[row.row_id]).await?;
        custom::apply(conn, m.resource_type(), &mut loaded).await?;
        let (_, resource) = loaded.pop().ok_or_else(|| not_found(resource_type, id))?;
        version_of(m.resource_type(), Some(resource))
    }

    /// vread: a version as it was served.
    pub async fn vread(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
        version_id: i64,
    ) -> Result<Version> {
        let m = self.mapping(resource_type)?;
        let row = versions::stored(
            &mut Conn::Pool(&self.db),
            m.resource_type(),
            id.as_str(),
            version_id,
        )
        .await?;
        match row {
            Some(r) if r.method == "DELETE" => Err(Error::Gone(format!(
                "version {version_id} of {resource_type}/{id} is a deletion"
            ))),
            Some(r) => {
                let resource = match r.resource {
                    Some(text) => Some(
                        serde_json::from_str(&text)
                            .map_err(|e| anyhow::anyhow!("a stored version is not JSON: {e}"))?,
                    ),
                    None => None,
                };
                version_of(m.resource_type(), resource)
            }
            None => {
                // A version made by a direct SQL write has no history row: it is the current one.
                match self.read(caller, resource_type, id).await {
                    Ok(v) if v.version_id == version_id => Ok(v),
                    Ok(_) | Err(Error::Gone(_)) => Err(Error::NotFound(format!(
                        "{resource_type}/{id} has no version {version_id}"
                    ))),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// delete: a soft delete (a new version that is a deletion). Deleting twice is harmless.
    pub async fn delete(
        &self,
        _caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
        if_match: Option<i64>,
    ) -> Result<()> {
        let m = self.mapping(resource_type)?;
        let mut tx = self.db.begin().await?;
        if self.delete_in(&mut tx, m.as_ref(), id, if_match).await? {
            tx.commit().await?;
        }
        Ok(())
    }

    /// A delete inside the caller's transaction: true when it deleted, false when the resource
    /// was deleted already.
    async fn delete_in(
        &self,
        tx: &mut Tx,
        m: &dyn ResourceMapping,
        id: &Id,
        if_match: Option<i64>,
    ) -> Result<bool> {
        let resource_type = m.resource_type();
        let h = self
            .head(&mut Conn::Tx(tx), m, id)
            .await?
            .ok_or_else(|| not_found(resource_type, id))?;
        if h.deleted {
            return Ok(false);
        }
        if let Some(v) = if_match {
            if v != h.version_id {
                return Err(stale(resource_type, id, v, h.version_id));
            }
        }
        let Some((version_id, at)) = m.soft_delete(tx, h.row_id, h.version_id).await? else {
            return Err(Error::Conflict(format!(
                "{resource_type}/{id} was changed by another request during the delete; retry"
            )));
        };
        versions::record(
            tx,
            NewVersion {
                resource_type: m.resource_type(),
                row_id: h.row_id,
                fhir_id: id.as_str(),
                version_id,
                method: "DELETE",
                last_updated: at,
                resource: None,
            },
        )
        .await?;
        Ok(true)
    }
}

/// Whether two renderings of a resource say the same, leaving aside its id and the meta the
/// server keeps (versionId, lastUpdated).
fn same_content(a: &Value, b: &Value) -> bool {
    let (Some(x), Some(y)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let keys = |o: &serde_json::Map<String, Value>| {
        o.keys().filter(|k| *k != "id" && *k != "meta").count()
    };
    if keys(x) != keys(y) {
        return false;
    }
    let meta = |o: &serde_json::Map<String, Value>| {
        let mut m = o.get("meta").cloned().unwrap_or(Value::Null);
        if let Some(mo) = m.as_object_mut() {
            mo.remove("versionId");
            mo.remove("lastUpdated");
            if mo.is_empty() {
                m = Value::Null;
            }
        }
        m
    };
    meta(x) == meta(y)
        && x.iter()
            .filter(|(k, _)| *k != "id" && *k != "meta")
            .all(|(k, v)| y.get(k) == Some(v))
}

/// Every `reference` string in a resource, with the FHIRPath of its Reference.
/// Where two JSON values first differ, as a path (see [`Fhir::read_back`]).
#[cfg(debug_assertions)]
fn differs_at(a: Option<&Value>, b: Option<&Value>, path: &str) -> String {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => x
            .keys()
            .chain(y.keys())
            .find(|k| x.get(*k) != y.get(*k))
            .map(|k| differs_at(x.get(k), y.get(k), &format!("{path}.{k}")))
            .unwrap_or_else(|| path.to_owned()),
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .position(|(p, q)| p != q)
            .map(|i| differs_at(x.get(i), y.get(i), &format!("{path}[{i}]")))
            .unwrap_or_else(|| path.to_owned()),
        _ => path.to_owned(),
    }
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

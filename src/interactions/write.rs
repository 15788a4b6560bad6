//! create, update and delete: the rows of a write in the caller's transaction, through the
//! mapping's one write entry point, and what the transaction remembers of them.

use super::*;
use crate::auth::scope::Action;

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
    /// Ids the server chose for resources this transaction creates by update (a conditional
    /// update that found nothing): nobody else's, so a restricted caller may create them.
    fresh: std::collections::HashSet<(String, String)>,
}

fn key(resource_type: &str, id: &str) -> (String, String) {
    (resource_type.to_owned(), id.to_owned())
}

impl WriteMemo {
    /// Notes that the transaction found or wrote `resource_type`/`id` live.
    pub(crate) fn found(tx: &mut Tx, resource_type: &str, id: &str) {
        tx.memo::<WriteMemo>().exists.insert(key(resource_type, id));
    }

    /// Notes that the server chose `id` for a new resource of `resource_type`.
    pub(crate) fn fresh(tx: &mut Tx, resource_type: &str, id: &Id) {
        tx.memo::<WriteMemo>()
            .fresh
            .insert(key(resource_type, id.as_str()));
    }

    /// Whether the transaction found or wrote `resource_type`/`id` live.
    pub(super) fn exists(tx: &Tx, resource_type: &str, id: &str) -> bool {
        tx.peek_memo::<WriteMemo>()
            .is_some_and(|w| w.exists.contains(&key(resource_type, id)))
    }
}

impl Fhir {
    pub(super) async fn head(
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

    /// create: a new resource with a server-assigned id.
    pub async fn create(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        body: Value,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        self.check(m.as_ref(), &body)?;
        let mut tx = self.db.begin().await?;
        let written = self
            .create_within(&mut tx, caller, m.as_ref(), &body)
            .await?;
        self.commit(tx, caller).await?;
        Ok(written)
    }

    /// [`Fhir::create`] inside the caller's transaction, of a body already
    /// [checked](Self::check).
    pub(super) async fn create_within(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        body: &Value,
    ) -> Result<Written> {
        let body = self.resolved(tx, caller, body).await?;
        let version = self.create_in(tx, caller, m, Uuid::new_v4(), &body).await?;
        Ok(Written {
            version,
            created: true,
        })
    }

    /// `body` with its conditional references resolved (see
    /// [`Fhir::resolve_conditional_references`]): a copy only when it has one.
    pub(super) async fn resolved<'b>(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        body: &'b Value,
    ) -> Result<std::borrow::Cow<'b, Value>> {
        let mut conditional = false;
        crate::fhir::references(body, &mut |r| conditional |= r.contains('?'));
        if !conditional {
            return Ok(std::borrow::Cow::Borrowed(body));
        }
        let mut copy = body.clone();
        self.resolve_conditional_references(tx, caller, &mut copy, &mut Default::default())
            .await?;
        Ok(std::borrow::Cow::Owned(copy))
    }

    /// A create inside the caller's transaction, of a body already [checked](Self::check): row
    /// `row_id`, whose text is also the logical id.
    pub(super) async fn create_in(
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
        caller.may(Action::Create, m.resource_type())?;
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
        self.written_within(tx, caller, m, &id, Action::Create)
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
        self.check_update(m.as_ref(), id, &body)?;
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

    /// What an update checks before it touches the database: the body, and that its id is the
    /// one in the URL.
    pub(super) fn check_update(
        &self,
        m: &dyn ResourceMapping,
        id: &Id,
        body: &Value,
    ) -> Result<()> {
        self.check(m, body)?;
        let resource_type = m.resource_type();
        match body.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id.as_str() => Ok(()),
            Some(_) => Err(Error::BadRequest(vec![Issue::error(
                IssueType::Invalid,
                "the id in the body does not match the id in the URL",
            )
            .at(format!("{resource_type}.id"))])),
            None => Err(Error::BadRequest(vec![Issue::error(
                IssueType::Required,
                "an update must carry the resource id in the body",
            )
            .at(format!("{resource_type}.id"))])),
        }
    }

    pub(super) async fn write_update(
        &self,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let mut tx = self.db.begin().await?;
        let written = self
            .update_within(&mut tx, caller, m, id, body, if_match)
            .await?;
        self.commit(tx, caller).await?;
        Ok(written)
    }

    /// [`Fhir::update`] inside the caller's transaction, of a body that passed
    /// [`Fhir::check_update`].
    pub(super) async fn update_within(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        body: &Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let body = self.resolved(tx, caller, body).await?;
        self.update_in(tx, caller, m, id, &body, if_match).await
    }

    /// An update (or create under the client's id) inside the caller's transaction, of a body
    /// already [checked](Self::check) whose id is `id`.
    pub(super) async fn update_in(
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

    /// The head of `id` if `caller` may update it (or create it by update), 403 or 404 if not.
    ///
    /// A live resource beyond the caller's update reach is refused (403) if the caller may read
    /// it, and absent (404) if not. Update as create takes the create right; a caller whose
    /// updates and reads of the type are both restricted (a patient's token) does not create by
    /// update with an id of its choosing, unless it names its own deleted resource: an id taken beyond its
    /// reach, deleted, or free gets the same 404, so that it learns nothing of what it cannot
    /// read (it creates with POST, or by a conditional update that finds nothing).
    async fn updatable(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
    ) -> Result<Option<Head>> {
        let rt = m.resource_type();
        caller.may(Action::Update, rt)?;
        let head = self.head(&mut Conn::Tx(tx), m, id).await?;
        let mut conn = Conn::Tx(tx);
        if head.as_ref().is_some_and(|h| !h.deleted) {
            if !caller.access.unrestricted(Action::Update, rt)
                && !self
                    .within(&mut conn, caller, m, id, Action::Update)
                    .await?
            {
                if self.within(&mut conn, caller, m, id, Action::Read).await? {
                    return Err(Error::Forbidden(format!(
                        "the access token does not allow to update this {rt}: it is outside \
                         what its scopes reach"
                    )));
                }
                return Err(not_found(rt, id));
            }
            return Ok(head);
        }
        caller.may(Action::Create, rt)?;
        let fresh = tx
            .peek_memo::<WriteMemo>()
            .is_some_and(|w| w.fresh.contains(&key(rt, id.as_str())));
        let blind = !caller.access.unrestricted(Action::Update, rt)
            && !caller.access.unrestricted(Action::Read, rt);
        if !fresh && blind {
            let own = head.is_some()
                && self
                    .was_within(&mut Conn::Tx(tx), caller, m, id, Action::Read)
                    .await?;
            if !own {
                return Err(not_found(rt, id));
            }
        }
        Ok(head)
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
        let head = self.updatable(tx, caller, m, id).await?;
        self.check_references(tx, caller, resource_type, body)
            .await?;
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
        self.written_within(tx, caller, m, id, Action::Update)
            .await?;
        if created {
            // What an update creates is within what the caller may create, too.
            self.written_within(tx, caller, m, id, Action::Create)
                .await?;
        }
        WriteMemo::found(tx, resource_type, id.as_str());
        Ok(Updated::Rows {
            row_id,
            created,
            inserted,
        })
    }

    /// The current version, when an update to `body` would change nothing in it (apart from
    /// meta.versionId and meta.lastUpdated): such an update makes no new version.
    pub(super) async fn unchanged(
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

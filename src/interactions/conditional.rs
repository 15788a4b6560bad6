//! Conditional interactions (https://hl7.org/fhir/R4/http.html#cond-update): create if none
//! exists, update and delete by search criteria, and conditional references
//! (`"reference": "Patient?identifier=sys|val"`) resolved to the one resource they find.
//!
//! Criteria are found and acted on inside one transaction. Two requests with the same criteria
//! must not both find nothing and both create: on PostgreSQL a transaction-scoped advisory lock
//! keyed by the type and the (sorted) criteria makes them take turns, also across server
//! processes; on SQLite every write transaction already runs alone (one writer).

use super::{Caller, Fhir, Written};
use crate::auth::scope::Action;
use crate::error::{Error, Result};
use crate::fhir::ResourceType;
use crate::fhir::{Id, Issue, IssueType};
use crate::mapping::ResourceMapping;
use crate::store::{Conn, Tx};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The lock of the criteria of a conditional write on `resource_type`: a hash of the type and
/// the (sorted) parameters.
pub(crate) fn criteria_key(resource_type: &str, criteria: &str) -> i64 {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(criteria.as_bytes())
        .into_owned()
        .collect();
    pairs.sort();
    let mut h = Sha256::new();
    h.update(resource_type.as_bytes());
    for (k, v) in &pairs {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

impl Fhir {
    /// Makes writes with the same criteria take turns until this transaction ends.
    pub(crate) async fn lock_criteria(
        &self,
        tx: &mut Tx,
        resource_type: &str,
        criteria: &str,
    ) -> Result<()> {
        tx.lock_key(criteria_key(resource_type, criteria)).await?;
        Ok(())
    }

    /// The one resource of `m` the criteria find: `None` when there is none, 412 when there are
    /// several.
    pub(crate) async fn one_match(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
    ) -> Result<Option<Id>> {
        let found = self
            .matches_in(&mut Conn::Tx(tx), caller, m, criteria, 2)
            .await?;
        match found.as_slice() {
            [] => Ok(None),
            [(_, id)] => {
                Ok(Some(Id::parse(id).ok_or_else(|| {
                    anyhow::anyhow!("stored logical id is not an id")
                })?))
            }
            _ => Err(several(m.resource_type(), criteria)),
        }
    }

    /// The one resource the criteria of a conditional create find: `None` when there is none
    /// (create it), 412 when there are several.
    pub(crate) async fn existing_for_create(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
    ) -> Result<Option<Id>> {
        self.lock_criteria(tx, m.resource_type(), criteria).await?;
        self.one_match(tx, caller, m, criteria).await
    }

    /// The resource a conditional update (or patch) of `m` writes: the one match, or with no
    /// match the id the body names (which must not belong to another resource) or a new id.
    /// 412 when the criteria find several; 400 when the body's id is not the match's.
    pub(crate) async fn conditional_target(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
        body_id: Option<&str>,
    ) -> Result<Id> {
        let rt = m.resource_type();
        caller.may(Action::Update, rt)?;
        self.lock_criteria(tx, rt, criteria).await?;
        match self.one_match(tx, caller, m, criteria).await? {
            None => match body_id {
                None => {
                    let id = new_id()?;
                    super::write::WriteMemo::fresh(tx, rt, &id);
                    Ok(id)
                }
                Some(b) => {
                    let id = Id::parse(b).ok_or_else(|| {
                        Error::bad_request(IssueType::Invalid, "the id in the body is not valid")
                    })?;
                    // For a caller whose updates and reads are restricted, an id beyond its
                    // reach is absent, taken or not.
                    if !caller.access.unrestricted(Action::Update, rt)
                        && !caller.access.unrestricted(Action::Read, rt)
                        && !self
                            .within(&mut Conn::Tx(tx), caller, m.as_ref(), &id, Action::Read)
                            .await?
                    {
                        return Err(super::not_found(rt, &id));
                    }
                    let taken = self
                        .head(&mut Conn::Tx(tx), m.as_ref(), &id)
                        .await?
                        .is_some_and(|h| !h.deleted);
                    if taken {
                        return Err(Error::PreconditionFailed(format!(
                            "{rt}/{id} exists but does not match the criteria '{}'",
                            criteria.escape_default()
                        )));
                    }
                    Ok(id)
                }
            },
            Some(id) => {
                if body_id.is_some_and(|b| b != id.as_str()) {
                    return Err(Error::BadRequest(vec![Issue::error(
                        IssueType::Invalid,
                        format!(
                            "the id in the body is not that of the {rt} the criteria found ({id})"
                        ),
                    )
                    .at(format!("{rt}.id"))]));
                }
                Ok(id)
            }
        }
    }

    /// conditional create (`If-None-Exist`): 201 with the new resource when nothing matches,
    /// 200 with the one match (unchanged), 412 when several match.
    pub async fn conditional_create(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        body: Value,
        criteria: &str,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        caller.may(Action::Create, m.resource_type())?;
        self.check(m.as_ref(), &body)?;
        let mut tx = self.db.begin().await?;
        let written = self
            .conditional_create_within(&mut tx, caller, &m, &body, criteria)
            .await?;
        self.commit(tx, caller).await?;
        Ok(written)
    }

    /// [`Fhir::conditional_create`] inside the caller's transaction, of a body already
    /// [checked](Self::check) for a caller who may create.
    pub(super) async fn conditional_create_within(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        body: &Value,
        criteria: &str,
    ) -> Result<Written> {
        if let Some(id) = self.existing_for_create(tx, caller, m, criteria).await? {
            // The match is answered with its content: that takes the read right.
            caller.may(Action::Read, m.resource_type())?;
            let version = self.read_in(&mut Conn::Tx(tx), m.as_ref(), &id).await?;
            return Ok(Written {
                version,
                created: false,
            });
        }
        self.create_within(tx, caller, m.as_ref(), body).await
    }

    /// conditional update (`PUT [type]?criteria`): updates the one match, creates when nothing
    /// matches, 412 when several do.
    pub async fn conditional_update(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        criteria: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        self.check(m.as_ref(), &body)?;
        let mut tx = self.db.begin().await?;
        let w = self
            .conditional_update_within(&mut tx, caller, &m, criteria, body, if_match)
            .await?;
        self.commit(tx, caller).await?;
        Ok(w)
    }

    /// [`Fhir::conditional_update`] inside the caller's transaction, of a body already
    /// [checked](Self::check).
    pub(super) async fn conditional_update_within(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
        mut body: Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let body_id = body.get("id").and_then(Value::as_str).map(str::to_owned);
        let id = self
            .conditional_target(tx, caller, m, criteria, body_id.as_deref())
            .await?;
        body["id"] = Value::String(id.to_string());
        let mut cache = HashMap::new();
        self.resolve_conditional_references(tx, caller, &mut body, &mut cache)
            .await?;
        self.update_in(tx, caller, m.as_ref(), &id, &body, if_match)
            .await
    }

    /// conditional delete (`DELETE [type]?criteria`): deletes the one match and answers its id,
    /// answers `None` when nothing matches, 412 when several match (deletes are single).
    pub async fn conditional_delete(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        criteria: &str,
        if_match: Option<i64>,
    ) -> Result<Option<Id>> {
        let m = self.mapping(resource_type)?;
        let mut tx = self.db.begin().await?;
        let id = self
            .conditional_delete_in(&mut tx, caller, &m, criteria, if_match)
            .await?;
        self.commit(tx, caller).await?;
        Ok(id)
    }

    pub(crate) async fn conditional_delete_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
        if_match: Option<i64>,
    ) -> Result<Option<Id>> {
        caller.may(Action::Delete, m.resource_type())?;
        self.lock_criteria(tx, m.resource_type(), criteria).await?;
        let found = self.one_match(tx, caller, m, criteria).await?;
        if let Some(id) = &found {
            self.delete_in(tx, caller, m.as_ref(), id, if_match).await?;
        }
        Ok(found)
    }

    /// Replaces every conditional reference (`Type?criteria`, to a type this server hosts) in
    /// `body` by a literal reference to the one resource its criteria find: 422 naming the
    /// element when none does, 412 when several do. References to other types stay as sent.
    /// `cache` remembers what this transaction has resolved already.
    pub(crate) async fn resolve_conditional_references(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        body: &mut Value,
        cache: &mut HashMap<String, String>,
    ) -> Result<()> {
        let rt = body
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let found = conditional_references(body, &rt);
        let own = format!("{}/", caller.base_url);
        for (pointer, path, reference) in found {
            let local = reference.strip_prefix(&own).unwrap_or(&reference);
            let Some((ty, criteria)) = local.split_once('?') else {
                continue;
            };
            let Some(m) = self.registry.get(ty).cloned() else {
                continue;
            };
            let literal = match cache.get(local) {
                Some(l) => l.clone(),
                None => {
                    let hits = self
                        .matches_in(&mut Conn::Tx(tx), caller, &m, criteria, 2)
                        .await?;
                    let literal = match hits.as_slice() {
                        [(_, id)] => format!("{ty}/{id}"),
                        [] => {
                            return Err(Error::Unprocessable(vec![Issue::error(
                                IssueType::NotFound,
                                format!(
                                    "the conditional reference '{}' finds no {ty}",
                                    local.escape_default()
                                ),
                            )
                            .at(path)]))
                        }
                        _ => {
                            return Err(Error::PreconditionFailed(format!(
                                "the conditional reference '{}' at {path} finds several {ty} resources; it must find one",
                                local.escape_default()
                            )))
                        }
                    };
                    cache.insert(local.to_owned(), literal.clone());
                    literal
                }
            };
            if let Some(slot) = body.pointer_mut(&pointer) {
                *slot = Value::String(literal);
            }
        }
        Ok(())
    }
}

fn several(resource_type: &str, criteria: &str) -> Error {
    Error::PreconditionFailed(format!(
        "the criteria '{}' match more than one {resource_type}; they must find one",
        criteria.escape_default()
    ))
}

fn new_id() -> Result<Id> {
    Ok(Id::parse(&Uuid::new_v4().to_string())
        .ok_or_else(|| anyhow::anyhow!("uuid is not an id"))?)
}

/// Every `reference` string holding a `?` (a conditional reference), as (JSON pointer of the
/// string, FHIRPath of its Reference, the reference).
fn conditional_references(v: &Value, resource_type: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    crate::fhir::references_at(v, &mut |steps, r| {
        if r.contains('?') {
            out.push((
                format!("{}/reference", crate::fhir::json_pointer(steps)),
                crate::fhir::fhirpath(resource_type, steps),
                r.to_owned(),
            ));
        }
    });
    out
}

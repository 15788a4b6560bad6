//! patch with JSON Patch (RFC 6902, https://hl7.org/fhir/R4/http.html#patch): the operations are
//! applied to the current version, and the result is validated and stored like an update. A
//! patch that cannot apply, or whose result is not a valid resource, changes nothing (422).

use super::{Caller, Fhir, Written};
use crate::error::{Error, Result};
use crate::fhir::ResourceType;
use crate::fhir::{Id, Issue, IssueType};
use crate::mapping::ResourceMapping;
use crate::store::{Conn, Tx};
use serde_json::Value;
use std::sync::Arc;

/// A JSON Patch document, parsed: 400 when it is not an array of RFC 6902 operations.
pub fn parse_patch(doc: &Value) -> Result<json_patch::Patch> {
    if !doc.is_array() {
        return Err(Error::bad_request(
            IssueType::Structure,
            "a JSON Patch document is an array of operations",
        ));
    }
    // Each operation's value is taken out before the operations are read and put back after:
    // read through serde's tagged enums, a number would lose the digits it was written with
    // (`-0`), or be refused past 128 bits.
    let mut ops = doc.clone();
    let mut values = Vec::new();
    for op in ops.as_array_mut().into_iter().flatten() {
        let value = op.as_object_mut().and_then(|o| o.remove("value"));
        if let (Some(o), Some(_)) = (op.as_object_mut(), &value) {
            o.insert("value".into(), Value::Null);
        }
        values.push(value);
    }
    let mut patch: json_patch::Patch = serde_json::from_value(ops).map_err(|e| {
        Error::bad_request(
            IssueType::Structure,
            format!("not a valid JSON Patch document: {e}"),
        )
    })?;
    for (op, value) in patch.0.iter_mut().zip(values) {
        use json_patch::PatchOperation as Op;
        if let (
            Op::Add(json_patch::AddOperation { value: v, .. })
            | Op::Replace(json_patch::ReplaceOperation { value: v, .. })
            | Op::Test(json_patch::TestOperation { value: v, .. }),
            Some(value),
        ) = (op, value)
        {
            *v = value;
        }
    }
    Ok(patch)
}

impl Fhir {
    /// patch: applies `ops` to the current version of `resource_type/id`. With `if_match`, only
    /// if that is still the current version (412 otherwise).
    pub async fn patch(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
        ops: &json_patch::Patch,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        let mut tx = self.db.begin().await?;
        let w = self
            .patch_in(&mut tx, caller, &m, id, ops, if_match)
            .await?;
        tx.commit().await?;
        Ok(w)
    }

    /// conditional patch (`PATCH [type]?criteria`): patches the one match; 404 when nothing
    /// matches (there is nothing to patch), 412 when several do.
    pub async fn conditional_patch(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        criteria: &str,
        ops: &json_patch::Patch,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let m = self.mapping(resource_type)?;
        let mut tx = self.db.begin().await?;
        let id = self.patch_target(&mut tx, caller, &m, criteria).await?;
        let w = self
            .patch_in(&mut tx, caller, &m, &id, ops, if_match)
            .await?;
        tx.commit().await?;
        Ok(w)
    }

    /// The one resource the criteria of a conditional patch find.
    pub(crate) async fn patch_target(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        criteria: &str,
    ) -> Result<Id> {
        self.one_match(tx, caller, m, criteria)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no {} matches the criteria '{}'",
                    m.resource_type(),
                    criteria.escape_default()
                ))
            })
    }

    /// A patch inside the caller's transaction.
    pub(crate) async fn patch_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &Arc<dyn ResourceMapping>,
        id: &Id,
        ops: &json_patch::Patch,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let rt = m.resource_type();
        // The row stays as read until the patched version is written: a concurrent update
        // waits instead of being lost.
        crate::mapping::versions::lock(tx, m.as_ref(), id.as_str()).await?;
        let current = self.read_in(&mut Conn::Tx(tx), m.as_ref(), id).await?;
        if let Some(v) = if_match {
            if v != current.version_id {
                return Err(super::stale(rt, id, v, current.version_id));
            }
        }
        let mut doc = match (current.resource, current.raw) {
            (Some(r), _) => r,
            (None, Some(text)) => serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("stored resource is not JSON: {e}"))?,
            (None, None) => return Err(anyhow::anyhow!("read gave no resource").into()),
        };
        json_patch::patch(&mut doc, ops).map_err(|e| {
            Error::Unprocessable(vec![Issue::error(
                IssueType::Processing,
                format!(
                    "JSON Patch operation {} ({}) cannot be applied: {}",
                    e.operation,
                    e.path.as_str().escape_default(),
                    e.kind
                ),
            )])
        })?;
        if doc.get("resourceType").and_then(Value::as_str) != Some(rt)
            || doc.get("id").and_then(Value::as_str) != Some(id.as_str())
        {
            return Err(Error::Unprocessable(vec![Issue::error(
                IssueType::Invalid,
                "a patch may not change the resourceType or id of a resource",
            )]));
        }
        // The patched resource is checked as an update would be; its problems are the patch's.
        self.check(m.as_ref(), &doc).map_err(|e| match e {
            Error::BadRequest(issues) => Error::Unprocessable(issues),
            other => other,
        })?;
        self.resolve_conditional_references(tx, caller, &mut doc, &mut Default::default())
            .await?;
        self.update_in(tx, caller, m.as_ref(), id, &doc, Some(current.version_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_is_an_array_of_operations() {
        assert!(
            parse_patch(&json!([{"op": "replace", "path": "/gender", "value": "male"}])).is_ok()
        );
        assert!(matches!(
            parse_patch(&json!({"op": "replace"})),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse_patch(&json!([{"op": "frobnicate", "path": "/x"}])),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse_patch(&json!([{"op": "add", "path": "/x"}])),
            Err(Error::BadRequest(_))
        ));
    }
}

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

/// Operations in one JSON Patch document; more is refused (400, `too-costly`).
pub const MAX_PATCH_OPERATIONS: usize = 1_000;

/// Levels of arrays and objects a patched resource may nest (what is stored is read back with
/// serde_json, which reads at most 128).
pub const MAX_PATCH_DEPTH: usize = 100;

/// What the `copy` operations of one patch may copy, counted as JSON nodes plus the bytes of
/// their strings and keys: without it, a few hundred copies of a value into itself would double
/// the resource each time.
pub const MAX_PATCH_COPIED: usize = 16 * 1024 * 1024;

/// A JSON Patch document, parsed: 400 when it is not an array of RFC 6902 operations, or has
/// more than [`MAX_PATCH_OPERATIONS`].
pub fn parse_patch(doc: &Value) -> Result<json_patch::Patch> {
    let Some(list) = doc.as_array() else {
        return Err(Error::bad_request(
            IssueType::Structure,
            "a JSON Patch document is an array of operations",
        ));
    };
    if list.len() > MAX_PATCH_OPERATIONS {
        return Err(Error::bad_request(
            IssueType::TooCostly,
            format!(
                "a JSON Patch document has at most {MAX_PATCH_OPERATIONS} operations; this one has {}",
                list.len()
            ),
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
        self.commit(tx, caller).await?;
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
        self.commit(tx, caller).await?;
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
        caller.may(crate::auth::scope::Action::Update, m.resource_type())?;
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
        // Beyond the caller's reach it is not there: nothing of it (a `test` operation, a
        // version) may answer otherwise.
        // A patch reads what it changes (its `test` operations compare values): it takes
        // the read right too.
        caller.may(crate::auth::scope::Action::Update, rt)?;
        caller.may(crate::auth::scope::Action::Read, rt)?;
        if !caller
            .access
            .unrestricted(crate::auth::scope::Action::Update, rt)
        {
            self.reachable(
                &mut Conn::Tx(tx),
                caller,
                m.as_ref(),
                id,
                crate::auth::scope::Action::Update,
            )
            .await?;
        }
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
        // A failure drops `doc`: no copy to keep it whole.
        apply_to(&mut doc, ops)?;
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
        let noted = tx.ledger::<super::Audited>().0.len();
        let w = self
            .update_in(tx, caller, m.as_ref(), id, &doc, Some(current.version_id))
            .await?;
        if tx.ledger::<super::Audited>().0.len() > noted {
            super::renote_last(tx, "patch");
        }
        Ok(w)
    }
}

/// Applies `ops` to `doc`, all or nothing: on a failure `doc` is as it was (422, or 400
/// `too-costly` past [`MAX_PATCH_COPIED`] or [`MAX_PATCH_DEPTH`]; the message names the
/// operation by its index and path).
pub fn apply_patch(doc: &mut Value, ops: &json_patch::Patch) -> Result<()> {
    // The operations go to a copy, dropped on a failure. (json-patch's own `patch` undoes the
    // applied operations instead, and panics when that undoing fails, as it does after some
    // failed `move`s.)
    let mut work = doc.clone();
    apply_to(&mut work, ops)?;
    *doc = work;
    Ok(())
}

/// Applies `ops` one by one, each first checked for what it would copy and how deep it could
/// nest the document. On a failure `doc` is left half patched.
fn apply_to(doc: &mut Value, ops: &json_patch::Patch) -> Result<()> {
    use json_patch::PatchOperation as Op;
    let mut copied = 0usize;
    // An upper bound on the levels of arrays and objects in `doc`.
    let mut depth = measure(doc, usize::MAX).map_or(usize::MAX, |m| m.depth);
    for (i, op) in ops.iter().enumerate() {
        let deepest = match op {
            Op::Add(a) => a.path.count() + measure(&a.value, usize::MAX).map_or(0, |m| m.depth),
            Op::Replace(r) => r.path.count() + measure(&r.value, usize::MAX).map_or(0, |m| m.depth),
            // The value moved sat under `from`, so it is at most `depth - from` levels deep.
            Op::Move(m) => m.path.count() + depth.saturating_sub(m.from.count()),
            Op::Copy(c) => match doc.pointer(c.from.as_str()) {
                Some(from) => {
                    let m = measure(from, MAX_PATCH_COPIED - copied).ok_or_else(|| {
                        too_costly(format!(
                            "the copy operations of one JSON Patch copy at most \
                             {MAX_PATCH_COPIED} nodes and bytes; operation {i} goes past it"
                        ))
                    })?;
                    copied += m.weight;
                    c.path.count() + m.depth
                }
                None => 0,
            },
            Op::Remove(_) | Op::Test(_) => 0,
        };
        if deepest > MAX_PATCH_DEPTH {
            return Err(too_costly(format!(
                "a patched resource nests at most {MAX_PATCH_DEPTH} arrays and objects deep; \
                 operation {i} could go past it"
            )));
        }
        depth = depth.max(deepest);
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| {
            Error::Unprocessable(vec![Issue::error(
                IssueType::Processing,
                format!(
                    "JSON Patch operation {i} ({}) cannot be applied: {}",
                    e.path.as_str().escape_default(),
                    e.kind
                ),
            )])
        })?;
    }
    Ok(())
}

fn too_costly(text: String) -> Error {
    Error::bad_request(IssueType::TooCostly, text)
}

/// The size of a JSON value: `weight` is one per node plus the bytes of its strings and keys,
/// `depth` the levels of arrays and objects.
struct Measure {
    weight: usize,
    depth: usize,
}

/// Measures `v`, or None once its weight passes `limit` (the walk stops there).
fn measure(v: &Value, limit: usize) -> Option<Measure> {
    let mut m = Measure {
        weight: 1,
        depth: 0,
    };
    let add = |m: &mut Measure, key: usize, item: &Value| -> Option<()> {
        let inner = measure(item, limit.checked_sub(m.weight + key)?)?;
        m.weight += key + inner.weight;
        m.depth = m.depth.max(inner.depth + 1);
        Some(())
    };
    match v {
        Value::String(s) => m.weight += s.len(),
        Value::Array(items) => {
            m.depth = 1;
            for item in items {
                add(&mut m, 0, item)?;
            }
        }
        Value::Object(map) => {
            m.depth = 1;
            for (k, item) in map {
                add(&mut m, k.len(), item)?;
            }
        }
        _ => {}
    }
    (m.weight <= limit).then_some(m)
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

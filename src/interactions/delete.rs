//! delete: a soft delete, a new version that is a deletion.

use super::*;
use crate::auth::scope::Action;

impl Fhir {
    /// delete: a soft delete (a new version that is a deletion). Deleting twice is harmless.
    pub async fn delete(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
        if_match: Option<i64>,
    ) -> Result<()> {
        let m = self.mapping(resource_type)?;
        let mut tx = self.db.begin().await?;
        if self
            .delete_in(&mut tx, caller, m.as_ref(), id, if_match)
            .await?
        {
            self.commit(tx, caller).await?;
        }
        Ok(())
    }

    /// A delete inside the caller's transaction: true when it deleted, false when the resource
    /// was deleted already.
    pub(super) async fn delete_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        if_match: Option<i64>,
    ) -> Result<bool> {
        let resource_type = m.resource_type();
        caller.may(Action::Delete, resource_type)?;
        if !caller.access.unrestricted(Action::Delete, resource_type) {
            self.reachable(&mut Conn::Tx(tx), caller, m, id, Action::Delete)
                .await?;
        }
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
        // Whose record it was, for the audit event.
        let patients = if resource_type == "Patient" {
            vec![id.as_str().to_owned()]
        } else {
            let current = self.read_in(&mut Conn::Tx(tx), m, id).await?;
            current
                .into_json()
                .as_ref()
                .map(crate::audit::patients_of)
                .unwrap_or_default()
        };
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
        let gone = Version {
            resource_type,
            id: id.as_str().to_owned(),
            version_id,
            last_updated: at,
            resource: None,
            raw: None,
        };
        super::noted(tx, "delete", &gone, patients);
        Ok(true)
    }
}

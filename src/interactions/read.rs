//! read and vread: the stored rendering of a version when there is one, else the resource built
//! from its rows.

use super::*;
use crate::auth::scope::Action;

impl Fhir {
    /// read: the current version; 410 when deleted.
    ///
    /// Every change of a row moves its version_id (the triggers see to it), so when
    /// resource_versions holds the row's current version, that stored rendering is the current
    /// resource and one query answers. Otherwise (a direct SQL write) the mapping builds it.
    pub async fn read(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
    ) -> Result<Version> {
        let m = self.readable(caller, resource_type, id).await?;
        self.read_in(&mut Conn::Pool(&self.db), m.as_ref(), id)
            .await
    }

    /// The mapping of a resource `caller` may read: 403 without a read scope for its type, 404
    /// when it lies beyond the caller's reach (as absent as one never written).
    async fn readable(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        id: &Id,
    ) -> Result<Arc<dyn ResourceMapping>> {
        let m = self.mapping(resource_type)?;
        caller.may(Action::Read, m.resource_type())?;
        if !caller.access.unrestricted(Action::Read, m.resource_type()) {
            // A deleted resource that was within reach is gone (410) for its reader as for
            // anyone; one that was not is absent.
            let mut pool = Conn::Pool(&self.db);
            if !self
                .within(&mut pool, caller, m.as_ref(), id, Action::Read)
                .await?
                && !self
                    .was_within(&mut pool, caller, m.as_ref(), id, Action::Read)
                    .await?
            {
                return Err(super::not_found(m.resource_type(), id));
            }
        }
        Ok(m)
    }

    /// read on a connection: the pool, or a transaction that sees its own writes.
    pub(super) async fn read_in(
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
        let m = self.readable(caller, resource_type, id).await?;
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
                let resource: Option<Value> = match r.resource {
                    Some(text) => Some(
                        serde_json::from_str(&text)
                            .map_err(|e| anyhow::anyhow!("a stored version is not JSON: {e}"))?,
                    ),
                    None => None,
                };
                if resource
                    .as_ref()
                    .is_some_and(|v| !caller.may_see_version(m.resource_type(), v))
                {
                    return Err(Error::NotFound(format!(
                        "{resource_type}/{id} has no version {version_id}"
                    )));
                }
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

    /// The StructureDefinitions of the custom fields' extensions.
    pub async fn custom_field_profiles(&self) -> Result<Vec<Value>> {
        let defs = custom::all_definitions(&mut Conn::Pool(&self.db)).await?;
        Ok(defs.iter().map(custom::structure_definition).collect())
    }
}

//! The caller's rights, where an interaction meets them: an action on a type the caller's
//! scopes do not allow is a 403 naming a scope that would; a resource outside what the caller
//! may reach is answered as absent (404), so that its existence does not leak.

use super::{Caller, Fhir};
use crate::auth::access::Access;
use crate::auth::scope::Action;
use crate::error::{Error, Result};
use crate::fhir::Id;
use crate::mapping::search::plan::Plan;
use crate::mapping::search::Restriction;
use crate::mapping::ResourceMapping;
use crate::store::Conn;
use std::sync::Arc;

impl Caller {
    /// Whether what a write of `resource_type` stored may be answered with its content: that
    /// takes the read right (an update-only token learns nothing by writing).
    pub fn shows(&self, resource_type: &str) -> bool {
        self.access.allows(Action::Read, resource_type)
    }

    /// 403 unless some scope of the caller allows `action` on `resource_type`.
    pub(crate) fn may(&self, action: Action, resource_type: &str) -> Result<()> {
        if self.access.allows(action, resource_type) {
            return Ok(());
        }
        let what = match action {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Search => "search",
        };
        Err(Error::Forbidden(format!(
            "the access token does not allow to {what} {resource_type}: that takes a scope such as {}",
            Access::wanted(action, resource_type)
        )))
    }
}

impl Fhir {
    /// Whether the live resource `id` of `m` is within what `action` may reach (always, for a
    /// caller whom nothing restricts).
    pub(crate) async fn within(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        action: Action,
    ) -> Result<bool> {
        self.meets(
            conn,
            caller,
            m,
            id,
            caller.access.restriction(action),
            false,
        )
        .await
    }

    /// Whether the resource `id` of `m`, deleted, was within what `action` of `caller` may
    /// reach: it may then be told it is gone.
    pub(crate) async fn was_within(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        action: Action,
    ) -> Result<bool> {
        self.meets(conn, caller, m, id, caller.access.restriction(action), true)
            .await
    }

    /// Whether the resource `id` of `m`, live (or deleted, when `deleted`), is within
    /// `restriction`.
    async fn meets(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        restriction: &Restriction,
        deleted: bool,
    ) -> Result<bool> {
        if restriction.is_none() {
            return Ok(true);
        }
        let rt = m.resource_type();
        let m: Arc<dyn ResourceMapping> = self.mapping(rt)?;
        let filters = crate::mapping::search::restrict::filters(
            &self.registry,
            rt,
            &format!("_id={}", id.as_str()),
        )
        .map_err(|e| anyhow::anyhow!("an id as a filter: {}", e.0))?;
        let mut ctx = self.ctx(caller, rt);
        ctx.restriction = restriction;
        let cond = match deleted {
            false => self.where_clause(&m, &filters, &ctx)?,
            true => {
                let bad = |e: crate::mapping::search::SearchError| anyhow::anyhow!("{}", e.0);
                let mut c = crate::mapping::filter::gone(m.as_ref(), &ctx).map_err(bad)?;
                for f in &filters {
                    c = c.and(crate::mapping::filter::filter_sql(f, &ctx).map_err(bad)?);
                }
                c
            }
        };
        Ok(!Plan::by_id(m.as_ref(), cond, 1)
            .matches(conn)
            .await?
            .is_empty())
    }

    /// Whether a reference to the existing resource `id` of `m` may be accepted from `caller`
    /// without telling a patient's token of another patient's data: for a caller with a
    /// patient in context, what it may read, what belongs to that patient, and what belongs to
    /// no patient; any other answers as absent. A caller without a patient in context (a
    /// clinician's or a backend's token) may refer to any resource that exists.
    pub(crate) async fn known_to(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
    ) -> Result<bool> {
        let Some(patient) = caller.access.patient() else {
            return Ok(true);
        };
        if !crate::auth::access::in_compartment(m)
            || self.within(conn, caller, m, id, Action::Read).await?
        {
            return Ok(true);
        }
        let theirs = Restriction::none().patient_compartment(patient);
        self.meets(conn, caller, m, id, &theirs, false).await
    }

    /// 404 unless `id` is within what `action` of `caller` may reach.
    pub(crate) async fn reachable(
        &self,
        conn: &mut Conn<'_>,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        action: Action,
    ) -> Result<()> {
        if self.within(conn, caller, m, id, action).await? {
            Ok(())
        } else {
            Err(super::not_found(m.resource_type(), id))
        }
    }
}

impl Fhir {
    /// After a write of `id` in `tx`: 403 unless what was written is within what `action` of
    /// `caller` may reach (a patient's token writes in its own compartment only, a filtered
    /// scope only what its filter keeps). The transaction is then not committed.
    pub(crate) async fn written_within(
        &self,
        tx: &mut crate::store::Tx,
        caller: &Caller,
        m: &dyn ResourceMapping,
        id: &Id,
        action: Action,
    ) -> Result<()> {
        if caller.access.unrestricted(action, m.resource_type())
            || self
                .within(&mut Conn::Tx(tx), caller, m, id, action)
                .await?
        {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "the access token does not allow to write this {}: it is outside what its scopes \
             reach (the patient in context, the filters of its scopes)",
            m.resource_type()
        )))
    }
}

impl Caller {
    /// Whether a stored version (`resource`, of type `rt`) may be shown to this caller: for a
    /// token with a patient in context whose reads of `rt` are restricted (to the compartment),
    /// only a version that names that patient (a resource
    /// moved from another patient's record keeps that patient's earlier versions to itself).
    /// Other callers see every version of what they reach.
    pub(crate) fn may_see_version(&self, rt: &str, resource: &serde_json::Value) -> bool {
        let Some(p) = self.access.patient() else {
            return true;
        };
        if self.access.unrestricted(Action::Read, rt) {
            return true;
        }
        if rt == "Patient" {
            return resource.get("id").and_then(serde_json::Value::as_str) == Some(p);
        }
        let own = format!("Patient/{p}");
        let mut named = false;
        crate::fhir::references_at(resource, &mut |_, r| {
            // (`Patient/p/_history/2` names the patient too.)
            let r = r.split("/_history/").next().unwrap_or(r);
            named |= r == own || r.ends_with(&format!("/{own}"));
        });
        named || self.access.belongs_to_no_patient(rt)
    }
}

//! What a resource must be before it is written: its type, the JSON rules, the schema, the
//! profiles it claims, references to resources that exist; and `$validate`, which does the
//! write and rolls it back.

use super::*;

impl Fhir {
    /// Checks a resource body before any write: its type, the JSON rules and the schema.
    pub(super) fn check(&self, m: &dyn ResourceMapping, body: &Value) -> Result<()> {
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
    /// that exists and that the caller may know of (422 naming the element otherwise, the same
    /// answer for both: see [`Fhir::known_to`]). References to other types, contained
    /// resources (`#x`) and other servers are kept as sent.
    pub(super) async fn check_references(
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
                            .is_some_and(|h| !h.deleted)
                            && self
                                .known_to(&mut Conn::Tx(tx), caller, target.as_ref(), &id)
                                .await?;
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
        caller.may(crate::auth::scope::Action::Create, m.resource_type())?;
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
}

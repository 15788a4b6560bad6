//! What a token's scopes let its caller do, interaction by interaction: whether an action on a
//! type is allowed at all, and the [`Restriction`] of what it may then see or write (a patient's
//! compartment for `patient/` scopes, except for Practitioner, which belongs to no patient and
//! which they read but never write; the query filters of v2 scopes, plain parameters only). A scope whose filter this
//! server cannot apply grants nothing: an error never widens access.

use super::scope::{Action, Context, Scopes};
use crate::mapping::search::restrict::{filters, patient_link, Door, Seen, UNRESTRICTED};
use crate::mapping::search::Restriction;
use crate::mapping::Registry;
use std::collections::HashMap;
use std::sync::Arc;

/// A caller's rights.
#[derive(Debug, Clone)]
pub struct Access {
    scopes: Scopes,
    /// The restriction of each action, in the order of [`Action::ALL`]; None: everything.
    restrictions: Option<Arc<[Restriction; 5]>>,
    /// The patient in context.
    patient: Option<Arc<str>>,
    /// The types outside every patient's compartment (Practitioner): `patient/` scopes read
    /// them, and never write them.
    outside: Arc<[&'static str]>,
}

/// How much of the audit trail a caller sees (see [`Access::audit_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditView {
    All,
    /// The events about this patient, without the clinic's internal fields.
    Patient(String),
    Nothing,
}

impl Default for Access {
    fn default() -> Self {
        Access::everything()
    }
}

impl Access {
    /// Every right on everything: the clinic's own administrator (`import`), or a server run
    /// with `--insecure-no-auth`.
    pub fn everything() -> Access {
        Access {
            scopes: Scopes::parse("system/*.cruds system/AuditEvent.rs"),
            restrictions: None,
            patient: None,
            outside: Arc::new([]),
        }
    }

    /// No right at all: a request whose token was not checked.
    pub fn nothing() -> Access {
        Access {
            scopes: Scopes::default(),
            restrictions: Some(Arc::new(std::array::from_fn(|_| {
                Restriction::none().by_type(HashMap::new())
            }))),
            patient: None,
            outside: Arc::new([]),
        }
    }

    /// Every action, restricted to `restriction` (the server's own uses, and tests).
    pub fn restricted(restriction: Restriction) -> Access {
        Access {
            scopes: Scopes::parse("system/*.cruds"),
            restrictions: Some(Arc::new(std::array::from_fn(|_| restriction.clone()))),
            patient: None,
            outside: Arc::new([]),
        }
    }

    /// The rights of `scopes`, with `patient` the patient in context.
    pub fn new(registry: &Registry, scopes: Scopes, patient: Option<&str>) -> Access {
        let restrictions = Action::ALL.map(|a| restriction(registry, &scopes, patient, a));
        let outside: Vec<&'static str> = registry
            .iter()
            .filter(|m| !in_compartment(m.as_ref()))
            .map(|m| m.resource_type())
            .collect();
        Access {
            scopes,
            restrictions: Some(Arc::new(restrictions)),
            patient: patient.map(Arc::from),
            outside: outside.into(),
        }
    }

    /// Whether some scope allows `action` on `resource_type` (the restriction may still leave
    /// nothing of it).
    pub fn allows(&self, action: Action, resource_type: &str) -> bool {
        self.scopes.grants.iter().any(|g| {
            g.covers(action, resource_type)
                && !(g.context == Context::Patient
                    && writes(action)
                    && self.outside.contains(&resource_type))
        })
    }

    /// How much of the audit trail `action` may reach: all of it (a `user/` or `system/` scope
    /// naming AuditEvent), the events about the patient in context (a `patient/` one), or
    /// nothing.
    pub fn audit_view(&self, action: Action) -> AuditView {
        let mut view = AuditView::Nothing;
        for g in self
            .scopes
            .grants
            .iter()
            .filter(|g| g.covers(action, "AuditEvent"))
        {
            match (g.context, self.patient.as_deref()) {
                (Context::Patient, Some(p)) => {
                    if view == AuditView::Nothing {
                        view = AuditView::Patient(p.to_owned());
                    }
                }
                (Context::Patient, None) => {}
                _ => return AuditView::All,
            }
        }
        view
    }

    /// What `action` may reach.
    pub fn restriction(&self, action: Action) -> &Restriction {
        match &self.restrictions {
            None => &UNRESTRICTED,
            Some(r) => &r[action as usize],
        }
    }

    /// Whether `action` may reach every resource of `resource_type` (no patient's compartment,
    /// no filter narrows it).
    pub fn unrestricted(&self, action: Action, resource_type: &str) -> bool {
        self.restriction(action).sees_all_of(resource_type)
    }

    /// Whether the resources of `resource_type` belong to no patient's compartment.
    pub fn belongs_to_no_patient(&self, resource_type: &str) -> bool {
        self.outside.contains(&resource_type)
    }

    /// The patient in context, if any.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// A scope that would allow `action` on `resource_type`, to name in a refusal.
    pub fn wanted(action: Action, resource_type: &str) -> String {
        let letter = super::scope::Actions::only(action);
        format!("user/{resource_type}.{letter} or patient/{resource_type}.{letter}")
    }
}

/// Whether the query filter of a scope names only plain parameters (`category=...`): no
/// chain, no `_has` or other `_` parameter, no modifier.
fn plain(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).all(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Whether `action` writes.
fn writes(action: Action) -> bool {
    matches!(action, Action::Create | Action::Update | Action::Delete)
}

/// Whether the resources of `m` belong to a patient's compartment (the Patient, and the types
/// that refer to one).
pub(crate) fn in_compartment(m: &dyn crate::mapping::ResourceMapping) -> bool {
    m.resource_type() == "Patient" || patient_link(m).is_some()
}

/// What `action` may reach under `scopes`, type by type.
fn restriction(
    registry: &Registry,
    scopes: &Scopes,
    patient: Option<&str>,
    action: Action,
) -> Restriction {
    let mut seen = HashMap::new();
    for m in registry.iter() {
        let rt = m.resource_type();
        let mut doors = Vec::new();
        let mut all = false;
        for g in scopes.grants.iter().filter(|g| g.covers(action, rt)) {
            let compartment = match g.context {
                // Practitioner belongs to no patient: read as with user/, never written.
                Context::Patient if !in_compartment(m.as_ref()) && writes(action) => continue,
                Context::Patient if !in_compartment(m.as_ref()) => None,
                Context::Patient => match patient {
                    Some(p) => Some(p.to_owned()),
                    None => continue,
                },
                Context::User | Context::System => None,
            };
            let parsed = match &g.filter {
                // Only plain parameters of the type itself: a chain or `_has` would read other
                // types beyond the scopes (and grant nothing).
                Some(q) if !plain(q) => continue,
                Some(q) => match filters(registry, rt, q) {
                    Ok(f) => f,
                    Err(_) => continue,
                },
                None => Vec::new(),
            };
            if compartment.is_none() && parsed.is_empty() {
                all = true;
                break;
            }
            doors.push(Door {
                compartment,
                filters: Arc::new(parsed),
            });
        }
        if all {
            seen.insert(rt, Seen::All);
        } else if !doors.is_empty() {
            seen.insert(rt, Seen::Through(doors));
        }
    }
    if seen.len() == registry.iter().count() && seen.values().all(|s| matches!(s, Seen::All)) {
        return Restriction::none();
    }
    Restriction::none().by_type(seen)
}

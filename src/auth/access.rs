//! What a token's scopes let its caller do, interaction by interaction: whether an action on a
//! type is allowed at all, and the [`Restriction`] of what it may then see or write (a patient's
//! compartment for `patient/` scopes, except for Practitioner, which belongs to no patient; the
//! query filters of v2 scopes). A scope whose filter this
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
            scopes: Scopes::parse("system/*.cruds"),
            restrictions: None,
            patient: None,
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
        }
    }

    /// Every action, restricted to `restriction` (the server's own uses, and tests).
    pub fn restricted(restriction: Restriction) -> Access {
        Access {
            scopes: Scopes::parse("system/*.cruds"),
            restrictions: Some(Arc::new(std::array::from_fn(|_| restriction.clone()))),
            patient: None,
        }
    }

    /// The rights of `scopes`, with `patient` the patient in context.
    pub fn new(registry: &Registry, scopes: Scopes, patient: Option<&str>) -> Access {
        let restrictions = Action::ALL.map(|a| restriction(registry, &scopes, patient, a));
        Access {
            scopes,
            restrictions: Some(Arc::new(restrictions)),
            patient: patient.map(Arc::from),
        }
    }

    /// Whether some scope allows `action` on `resource_type` (the restriction may still leave
    /// nothing of it).
    pub fn allows(&self, action: Action, resource_type: &str) -> bool {
        self.scopes
            .grants
            .iter()
            .any(|g| g.covers(action, resource_type))
    }

    /// What `action` may reach.
    pub fn restriction(&self, action: Action) -> &Restriction {
        match &self.restrictions {
            None => &UNRESTRICTED,
            Some(r) => &r[action as usize],
        }
    }

    /// Whether nothing is restricted for `action`.
    pub fn unrestricted(&self, action: Action) -> bool {
        self.restriction(action).is_none()
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
                // Practitioner belongs to no patient: reference data, reached as with user/.
                Context::Patient if !in_compartment(m.as_ref()) => None,
                Context::Patient => match patient {
                    Some(p) => Some(p.to_owned()),
                    None => continue,
                },
                Context::User | Context::System => None,
            };
            let parsed = match &g.filter {
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

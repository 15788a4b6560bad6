//! The rows a caller may see, beyond what a request asks for: one [`Restriction`], added to a
//! search where its conditions are built ([`Ctx`]), so that it holds for every table the search
//! reads: the matches and their total, chains and `_has`, includes and revincludes, the Patient
//! compartment, `$everything` and history. What grants it (scopes, a patient context) is the
//! caller's business; this is where it takes effect.

use super::super::filter::{self, Filter};
use super::super::{Registry, ResourceMapping};
use super::{condition, Cond, Ctx, Modifier, SearchError, SearchParam};

/// What a caller may see: every rule holds (none: everything).
#[derive(Debug, Clone, Default)]
pub struct Restriction {
    rules: Vec<Rule>,
}

/// One way a caller may see rows of a type: those in a patient's compartment, those the filters
/// keep, or both (neither: every row).
#[derive(Debug, Clone, Default)]
pub struct Door {
    pub compartment: Option<String>,
    pub filters: std::sync::Arc<Vec<Filter>>,
}

/// What a caller may see of one type.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Every row.
    All,
    /// The rows some door lets through (none: no row).
    Through(Vec<Door>),
}

#[derive(Debug, Clone)]
enum Rule {
    /// Per type, what may be seen; a type it does not name: nothing.
    Types(std::sync::Arc<std::collections::HashMap<&'static str, Seen>>),
    /// The resources of the compartment of Patient `id`: the Patient itself, and the
    /// resources whose reference to a Patient names it. Types outside the compartment: none.
    PatientCompartment(String),
    /// Of one type, the resources the filters keep (`category=laboratory`); other types as
    /// they are.
    Matching {
        resource_type: &'static str,
        filters: std::sync::Arc<Vec<Filter>>,
    },
}

/// No restriction, for borrowing.
pub static UNRESTRICTED: Restriction = Restriction { rules: Vec::new() };

impl Restriction {
    /// No restriction: every resource (the clinic's own administrator, `import`).
    pub fn none() -> Restriction {
        Restriction::default()
    }

    /// Whether nothing is restricted.
    pub fn is_none(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether every live row of `resource_type` may be seen.
    pub fn sees_all_of(&self, resource_type: &str) -> bool {
        self.rules.iter().all(|r| match r {
            Rule::Types(seen) => matches!(seen.get(resource_type), Some(Seen::All)),
            Rule::PatientCompartment(_) => false,
            Rule::Matching {
                resource_type: t, ..
            } => *t != resource_type,
        })
    }

    /// Only the resources of the compartment of Patient `patient_id`.
    pub fn patient_compartment(mut self, patient_id: &str) -> Restriction {
        self.rules
            .push(Rule::PatientCompartment(patient_id.to_owned()));
        self
    }

    /// Only the resources of `resource_type` that the search `query` (`category=laboratory`)
    /// finds. Every parameter must be known.
    pub fn matching(
        mut self,
        registry: &Registry,
        resource_type: &str,
        query: &str,
    ) -> Result<Restriction, SearchError> {
        let m = registry
            .get(resource_type)
            .ok_or_else(|| SearchError(format!("resource type {resource_type} is not hosted")))?;
        let filters = filters(registry, m.resource_type(), query)?;
        self.rules.push(Rule::Matching {
            resource_type: m.resource_type(),
            filters: std::sync::Arc::new(filters),
        });
        Ok(self)
    }

    /// Only what `seen` lets through, type by type: a type it does not name, nothing.
    pub fn by_type(mut self, seen: std::collections::HashMap<&'static str, Seen>) -> Restriction {
        self.rules.push(Rule::Types(std::sync::Arc::new(seen)));
        self
    }

    /// The condition the rows of `m` (alias `t`) must meet; `None` when they are not
    /// restricted. Built without the restriction itself (its own conditions are not
    /// restricted again).
    pub fn cond(&self, m: &dyn ResourceMapping, ctx: &Ctx) -> Result<Option<Cond>, SearchError> {
        if self.rules.is_empty() {
            return Ok(None);
        }
        let none = Restriction::none();
        let ctx = Ctx {
            restriction: &none,
            ..ctx.on(m.resource_type())
        };
        let mut all = Vec::new();
        for rule in &self.rules {
            match rule {
                Rule::PatientCompartment(id) => all.push(compartment(m, id, &ctx)?),
                Rule::Matching {
                    resource_type,
                    filters,
                } if *resource_type == m.resource_type() => {
                    for f in filters.iter() {
                        all.push(filter::filter_sql(f, &ctx)?);
                    }
                }
                Rule::Matching { .. } => {}
                Rule::Types(seen) => match seen.get(m.resource_type()) {
                    None => all.push(Cond::none()),
                    Some(Seen::All) => {}
                    Some(Seen::Through(doors)) => {
                        let mut any = Vec::new();
                        for d in doors {
                            let mut both = Vec::new();
                            if let Some(id) = &d.compartment {
                                both.push(compartment(m, id, &ctx)?);
                            }
                            for f in d.filters.iter() {
                                both.push(filter::filter_sql(f, &ctx)?);
                            }
                            any.push(Cond::And(both));
                        }
                        all.push(if any.is_empty() {
                            Cond::none()
                        } else {
                            Cond::Or(any)
                        });
                    }
                },
            }
        }
        Ok((!all.is_empty()).then_some(Cond::And(all)))
    }
}

/// The filters of a search `query` (`category=...|laboratory&code=...`) on `resource_type`:
/// every parameter must be known.
pub fn filters(
    registry: &Registry,
    resource_type: &'static str,
    query: &str,
) -> Result<Vec<Filter>, SearchError> {
    let mut out = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let values = value.split(',').map(str::to_owned).collect();
        let f = filter::parse(registry, resource_type, &name, values)?
            .ok_or_else(|| SearchError(format!("unknown parameter {name}")))?;
        out.push(f);
    }
    Ok(out)
}

/// The parameter that puts resources of `m` in a patient's compartment: its first reference
/// to a Patient (`patient`, `subject`). The Patient itself has none.
pub fn patient_link(m: &dyn ResourceMapping) -> Option<&'static SearchParam> {
    m.search_params()
        .iter()
        .find(|p| filter::reference_target(p) == Some("Patient"))
}

/// The rows of `m` in the compartment of Patient `id`.
fn compartment(m: &dyn ResourceMapping, id: &str, ctx: &Ctx) -> Result<Cond, SearchError> {
    if m.resource_type() == "Patient" {
        return Ok(Cond::Sql("t.fhir_id = ?".into(), vec![id.into()]));
    }
    match patient_link(m) {
        Some(p) => condition(p, &Modifier::None, &[format!("Patient/{id}")], ctx),
        None => Ok(Cond::none()),
    }
}

//! What the consent page offers and what the user's choices grant. Each resource scope asked
//! for is offered type by type (a wildcard as every type this server hosts), so that the user
//! can untick any; read access to Observation can be narrowed to categories, which yields
//! filtered v2 scopes (`patient/Observation.rs?category=...|laboratory`). The identity and
//! refresh scopes are offered too; the launch scopes are not choices (they carry the context).
//! The grant is rebuilt from the request as stored, never from the form: a form names choices,
//! not scopes.

use super::scope::{Action, Grant, Scopes};
use std::collections::HashSet;

/// The system of the Observation categories.
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// The Observation categories a user may narrow to.
pub const CATEGORIES: &[&str] = &[
    "vital-signs",
    "laboratory",
    "social-history",
    "survey",
    "exam",
    "imaging",
    "procedure",
    "therapy",
    "activity",
];

/// The scopes that are offered as one choice each.
const OPTIONAL: &[&str] = &["offline_access", "online_access"];
/// The identity scopes, offered together (`openid`, with `fhirUser` or `profile` if asked).
const IDENTITY: &[&str] = &["openid", "fhirUser", "profile"];

/// One checkbox of the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Resource scope number `scope` of the request, for `resource_type`.
    Resource {
        scope: usize,
        resource_type: String,
        grant: Grant,
    },
    /// `openid` with `fhirUser` or `profile`.
    Identity,
    /// `offline_access` or `online_access`.
    Other(String),
}

impl Choice {
    /// The form value that names it.
    pub fn key(&self) -> String {
        match self {
            Choice::Resource {
                scope,
                resource_type,
                ..
            } => format!("{scope}:{resource_type}"),
            Choice::Identity => "identity".into(),
            Choice::Other(s) => s.clone(),
        }
    }
}

/// The choices offered for `asked`, with `types` the types this server hosts.
pub fn choices(asked: &Scopes, types: &[&str]) -> Vec<Choice> {
    let mut out = Vec::new();
    for (i, g) in asked.grants.iter().enumerate() {
        let covered: Vec<&str> = match &g.resource_type {
            Some(t) => vec![t.as_str()],
            None => types.to_vec(),
        };
        for t in covered {
            out.push(Choice::Resource {
                scope: i,
                resource_type: t.to_owned(),
                grant: g.clone(),
            });
        }
    }
    if asked.has("openid") {
        out.push(Choice::Identity);
    }
    for s in OPTIONAL {
        if asked.has(s) {
            out.push(Choice::Other((*s).to_owned()));
        }
    }
    out
}

/// Whether Observation can be narrowed to categories in `choices`: a read of it, not already
/// filtered.
pub fn narrows(choices: &[Choice]) -> bool {
    choices.iter().any(|c| match c {
        Choice::Resource {
            resource_type,
            grant,
            ..
        } => resource_type == "Observation" && narrowable(grant),
        _ => false,
    })
}

fn narrowable(g: &Grant) -> bool {
    g.filter.is_none()
        && (g.covers(Action::Read, "Observation") || g.covers(Action::Search, "Observation"))
}

/// The scope granted: `asked` with only the `ticked` choices, Observation narrowed to
/// `categories` when any is given (unknown categories are ignored).
pub fn granted(
    asked: &Scopes,
    types: &[&str],
    ticked: &HashSet<String>,
    categories: &[String],
) -> String {
    let categories: Vec<&str> = CATEGORIES
        .iter()
        .copied()
        .filter(|c| categories.iter().any(|k| k == c))
        .collect();
    let offered = choices(asked, types);
    let mut words: Vec<String> = Vec::new();
    for (i, g) in asked.grants.iter().enumerate() {
        let kept: Vec<&str> = offered
            .iter()
            .filter_map(|c| match c {
                Choice::Resource {
                    scope,
                    resource_type,
                    ..
                } if *scope == i && ticked.contains(&c.key()) => Some(resource_type.as_str()),
                _ => None,
            })
            .collect();
        let narrowed = !categories.is_empty() && narrowable(g) && kept.contains(&"Observation");
        let whole = match &g.resource_type {
            Some(_) => kept.len() == 1,
            None => kept.len() == types.len(),
        };
        if whole && !narrowed {
            words.push(g.text.clone());
            continue;
        }
        for t in kept {
            if t == "Observation" && narrowed {
                for c in &categories {
                    words.push(format!("{}?category={CATEGORY_SYSTEM}|{c}", typed(g, t)));
                }
            } else if g.resource_type.is_some() {
                words.push(g.text.clone());
            } else {
                words.push(typed(g, t));
            }
        }
    }
    for c in &offered {
        match c {
            Choice::Identity if ticked.contains("identity") => {
                words.extend(
                    IDENTITY
                        .iter()
                        .filter(|s| asked.has(s))
                        .map(|s| s.to_string()),
                );
            }
            Choice::Other(s) if ticked.contains(s) => words.push(s.clone()),
            _ => {}
        }
    }
    // The launch scopes carry the context; they are not choices.
    words.extend(
        asked
            .others
            .iter()
            .filter(|o| *o == "launch" || o.starts_with("launch/"))
            .cloned(),
    );
    words.join(" ")
}

/// Grant `g` for the one type `t`, in v2 letters, with its filter.
fn typed(g: &Grant, t: &str) -> String {
    let v2 = g.v2();
    let (context, rest) = v2.split_once('/').unwrap_or(("patient", ""));
    // The letters and any filter: a split scope allows no more than the whole did.
    let letters = rest.split_once('.').map_or("", |(_, l)| l);
    format!("{context}/{t}.{letters}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[&str] = &["Patient", "Observation", "Encounter"];

    fn all(asked: &Scopes) -> HashSet<String> {
        choices(asked, TYPES).iter().map(Choice::key).collect()
    }

    #[test]
    fn everything_ticked_grants_what_was_asked() {
        let asked = Scopes::parse("launch/patient openid fhirUser offline_access patient/*.rs");
        let g = granted(&asked, TYPES, &all(&asked), &[]);
        assert_eq!(
            g,
            "patient/*.rs openid fhirUser offline_access launch/patient"
        );
    }

    #[test]
    fn an_unticked_type_leaves_the_wildcard_for_the_others() {
        let asked = Scopes::parse("patient/*.rs offline_access");
        let mut t = all(&asked);
        assert!(t.remove("0:Observation"));
        assert!(t.remove("offline_access"));
        assert_eq!(
            granted(&asked, TYPES, &t, &[]),
            "patient/Patient.rs patient/Encounter.rs"
        );
    }

    #[test]
    fn observation_narrowed_to_categories_becomes_filtered_scopes() {
        let asked = Scopes::parse("patient/Patient.rs patient/Observation.rs patient/Condition.rs");
        let cats = vec![
            "laboratory".to_string(),
            "bogus".to_string(),
            "vital-signs".to_string(),
        ];
        assert!(narrows(&choices(&asked, TYPES)));
        assert_eq!(
            granted(&asked, TYPES, &all(&asked), &cats),
            format!(
                "patient/Patient.rs patient/Observation.rs?category={CATEGORY_SYSTEM}|vital-signs \
                 patient/Observation.rs?category={CATEGORY_SYSTEM}|laboratory patient/Condition.rs"
            )
        );
    }

    #[test]
    fn a_filtered_scope_is_not_narrowed_again_and_v1_becomes_v2_when_split() {
        let asked = Scopes::parse("user/Observation.rs?category=x|y patient/*.read");
        assert!(!narrows(&choices(
            &Scopes::parse("user/Observation.rs?category=x|y"),
            TYPES
        )));
        let mut t = all(&asked);
        t.remove("1:Encounter");
        assert_eq!(
            granted(&asked, TYPES, &t, &["laboratory".into()]),
            format!(
                "user/Observation.rs?category=x|y patient/Patient.rs \
                 patient/Observation.rs?category={CATEGORY_SYSTEM}|laboratory"
            )
        );
    }

    #[test]
    fn a_filtered_wildcard_split_by_type_keeps_its_filter() {
        let asked = Scopes::parse("user/*.rs?status=final");
        let mut t = all(&asked);
        t.remove("0:Encounter");
        assert_eq!(
            granted(&asked, TYPES, &t, &[]),
            "user/Patient.rs?status=final user/Observation.rs?status=final"
        );
    }

    #[test]
    fn nothing_ticked_grants_only_the_launch_context() {
        let asked = Scopes::parse("launch patient/*.rs openid fhirUser");
        assert_eq!(granted(&asked, TYPES, &HashSet::new(), &[]), "launch");
    }
}

//! SMART scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), parsed
//! once into [`Scopes`]: the resource scopes as [`Grant`]s, in both versions (v1 `.read`,
//! `.write`, `.*` are read as the v2 letters `rs`, `cud`, `cruds`), and the other scopes
//! (`launch`, `openid`, `fhirUser`, `offline_access`, ...) as they were written.

use std::fmt;

/// Whose data a resource scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The patient in context (`patient/`).
    Patient,
    /// What the user may see (`user/`).
    User,
    /// What the client is allowed, with no user (`system/`).
    System,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// One of the five SMART v2 rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `c`: create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search, type and system history.
    Search,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::Search,
    ];

    fn letter(self) -> char {
        match self {
            Action::Create => 'c',
            Action::Read => 'r',
            Action::Update => 'u',
            Action::Delete => 'd',
            Action::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(u8);

impl Actions {
    pub fn all() -> Actions {
        Actions(0b11111)
    }

    /// The one action `a`.
    pub fn only(a: Action) -> Actions {
        Actions(a.bit())
    }

    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    /// The v2 letters, in order (`cruds`): `None` unless they are a non-empty in-order subset.
    fn parse_v2(letters: &str) -> Option<Actions> {
        let mut set = 0u8;
        let mut next = 0;
        for c in letters.chars() {
            let i = Action::ALL[next..].iter().position(|a| a.letter() == c)? + next;
            set |= Action::ALL[i].bit();
            next = i + 1;
        }
        (set != 0).then_some(Actions(set))
    }

    fn parse_v1(word: &str) -> Option<Actions> {
        match word {
            "read" => Actions::parse_v2("rs"),
            "write" => Actions::parse_v2("cud"),
            "*" => Some(Actions::all()),
            _ => None,
        }
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in Action::ALL {
            if self.contains(a) {
                write!(f, "{}", a.letter())?;
            }
        }
        Ok(())
    }
}

/// The types a wildcard scope (`user/*.rs`) does not reach: only a scope naming them does, and
/// a role or client allows them only by naming them too.
pub const NAMED_ONLY: &[&str] = &["AuditEvent"];

/// One resource scope: `patient/Observation.rs?category=...|laboratory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub context: Context,
    /// The resource type, or None for `*`.
    pub resource_type: Option<String>,
    pub actions: Actions,
    /// The query that narrows it (`category=...|laboratory`), as written after the `?`.
    pub filter: Option<String>,
    /// The scope as it was written (a granted scope is answered the way it was asked).
    pub text: String,
}

impl Grant {
    /// Parses one resource scope; None when `text` is not one (or not a well-formed one).
    pub fn parse(text: &str) -> Option<Grant> {
        let (context, rest) = text.split_once('/')?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return None,
        };
        let (body, filter) = match rest.split_once('?') {
            Some((b, q)) if !q.is_empty() => (b, Some(q.to_owned())),
            Some(_) => return None,
            None => (rest, None),
        };
        let (resource, letters) = body.split_once('.')?;
        let resource_type = match resource {
            "*" => None,
            t if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(t.to_owned())
            }
            _ => return None,
        };
        // v1 (`read`, `write`, `*`) or v2 letters; v1 takes no filter.
        let actions = match (Actions::parse_v1(letters), &filter) {
            (Some(a), None) => a,
            (Some(_), Some(_)) => return None,
            (None, _) => Actions::parse_v2(letters)?,
        };
        Some(Grant {
            context,
            resource_type,
            actions,
            filter,
            text: text.to_owned(),
        })
    }

    /// Whether it covers `action` on `resource_type`. The audit trail is no clinical record: a
    /// wildcard does not reach it, only a scope that names it ([`NAMED_ONLY`]).
    pub fn covers(&self, action: Action, resource_type: &str) -> bool {
        self.actions.contains(action)
            && match self.resource_type.as_deref() {
                Some(t) => t == resource_type,
                None => !NAMED_ONLY.contains(&resource_type),
            }
    }

    /// The scope in its v2 form (`user/Observation.rs?category=...`).
    pub fn v2(&self) -> String {
        let t = self.resource_type.as_deref().unwrap_or("*");
        let q = self
            .filter
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!("{}/{t}.{}{q}", self.context.name(), self.actions)
    }
}

/// A parsed scope string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    pub grants: Vec<Grant>,
    /// Every scope that is not a resource scope, as written (`launch`, `openid`, ...).
    pub others: Vec<String>,
}

impl Scopes {
    /// Parses a space-separated scope string. What is neither a resource scope nor a token
    /// without `/` is dropped (an ill-formed resource scope grants nothing).
    pub fn parse(text: &str) -> Scopes {
        let mut s = Scopes::default();
        for word in text.split_ascii_whitespace() {
            if let Some(g) = Grant::parse(word) {
                if !s.grants.contains(&g) {
                    s.grants.push(g);
                }
            } else if (!word.contains('/') || word.starts_with("launch/"))
                && !s.others.iter().any(|o| o == word)
            {
                s.others.push(word.to_owned());
            }
        }
        s
    }

    /// Whether everything `self` holds, `other` holds too (a refresh asks for no more).
    pub fn within(&self, other: &Scopes) -> bool {
        self.grants
            .iter()
            .all(|g| other.grants.iter().any(|o| o.includes(g)))
            && self.others.iter().all(|o| other.has(o))
    }

    pub fn has(&self, other: &str) -> bool {
        self.others.iter().any(|o| o == other)
    }

    /// What `self` asks for that `allowed` allows: each resource scope narrowed by each scope
    /// of `allowed` that overlaps it (the narrower context, the named type, the actions of
    /// both, both filters), and the other scopes `allowed` lists. A resource scope `allowed`
    /// leaves whole is kept as it was written.
    pub fn intersect(&self, allowed: &Scopes) -> Scopes {
        let mut out = Scopes::default();
        for g in &self.grants {
            for a in &allowed.grants {
                if let Some(both) = g.meet(a) {
                    if !out.grants.iter().any(|o| o.v2() == both.v2()) {
                        out.grants.push(both);
                    }
                }
            }
        }
        // What another granted scope covers whole says nothing more.
        let all = out.grants.clone();
        out.grants
            .retain(|g| !all.iter().any(|a| a.v2() != g.v2() && a.includes(g)));
        out.others = self
            .others
            .iter()
            .filter(|o| allowed.has(o))
            .cloned()
            .collect();
        out
    }
}

impl Grant {
    /// Whether this scope allows everything `g` allows.
    fn includes(&self, g: &Grant) -> bool {
        let context = self.context == g.context
            || (self.context != Context::Patient && g.context == Context::Patient);
        let types = match (&self.resource_type, &g.resource_type) {
            (None, Some(t)) => !NAMED_ONLY.contains(&t.as_str()),
            (None, None) => true,
            (a, b) => a == b,
        };
        let actions = self.actions.0 & g.actions.0 == g.actions.0;
        let filter = self.filter.is_none() || self.filter == g.filter;
        context && types && actions && filter
    }

    /// What both scopes allow, or None when that is nothing.
    fn meet(&self, other: &Grant) -> Option<Grant> {
        use Context::*;
        let context = match (self.context, other.context) {
            (a, b) if a == b => a,
            (Patient, _) | (_, Patient) => Patient,
            // A user's rights and a system client's do not meet.
            _ => return None,
        };
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (Some(a), Some(b)) if a != b => return None,
            // What a wildcard does not reach, it does not grant either.
            (Some(a), None) | (None, Some(a)) if NAMED_ONLY.contains(&a.as_str()) => return None,
            (Some(a), _) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let actions = Actions(self.actions.0 & other.actions.0);
        if actions.0 == 0 {
            return None;
        }
        let filter = match (&self.filter, &other.filter) {
            (Some(a), Some(b)) if a != b => Some(format!("{a}&{b}")),
            (Some(a), _) | (None, Some(a)) => Some(a.clone()),
            (None, None) => None,
        };
        let mut g = Grant {
            context,
            resource_type,
            actions,
            filter,
            text: String::new(),
        };
        let same = context == self.context
            && g.resource_type == self.resource_type
            && actions == self.actions
            && g.filter == self.filter;
        g.text = if same { self.text.clone() } else { g.v2() };
        Some(g)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = self
            .grants
            .iter()
            .map(|g| g.text.as_str())
            .chain(self.others.iter().map(String::as_str));
        for (i, w) in words.enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

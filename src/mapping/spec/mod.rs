//! The elements of a declared mapping: a [`Spec`] is a path in a resource and the column or
//! columns its value lands in; `project` reads the column values out of a resource and `patch`
//! writes column values back into it, so that the lossless rule of [`super::fields`] can be
//! applied element by element by [`super::table`].

use crate::fhir::{instant, Id};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// A step of a path inside a resource.
#[derive(Debug, Clone, Copy)]
pub enum Seg {
    Key(&'static str),
    /// The first item of an array.
    First,
}

/// How a value at the end of a path maps onto columns.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string or code ⇄ a text column.
    Text(&'static str),
    /// A boolean ⇄ a boolean column.
    Bool(&'static str),
    /// A boolean ⇄ a NOT NULL boolean column with a default: an absent element is the default,
    /// and the default is written back as an absent element.
    BoolDefault { column: &'static str, default: bool },
    /// An array of strings ⇄ one text column, the strings joined by `sep` (given names).
    Joined {
        column: &'static str,
        sep: &'static str,
    },
    /// ContactPoint[] ⇄ its first phone and first email. With `unique_email`, an email another
    /// row already holds stays out of the column (and is kept in fhir_extra).
    Telecom {
        phone: &'static str,
        email: &'static str,
        unique_email: bool,
    },
    /// Identifier[] ⇄ the value of its identifier of one system.
    IdentifierOf {
        column: &'static str,
        system: &'static str,
    },
    /// A decimal ⇄ a numeric column, its text kept exactly (`37.50`).
    Decimal(&'static str),
    /// An integer ⇄ an integer column.
    Int(&'static str),
    /// A dateTime or instant ⇄ a timestamp column (its lower bound; the exact text as sent is
    /// kept by the lossless rule).
    Time(&'static str),
    /// A CodeableConcept ⇄ its first coding's code, system and display columns.
    Concept {
        code: &'static str,
        system: Option<&'static str>,
        display: Option<&'static str>,
    },
    /// A Coding ⇄ code and system columns.
    Coding {
        code: &'static str,
        system: Option<&'static str>,
    },
    /// A Coding from one code system ⇄ a code column (the system is implied).
    FixedCoding {
        code: &'static str,
        system: &'static str,
    },
    /// A CodeableConcept bound to one code system ⇄ the code of its coding of that system.
    FixedConcept {
        code: &'static str,
        system: &'static str,
    },
    /// A CodeableConcept ⇄ a foreign key to a catalog table (code, system, display), the entry
    /// found by code and system or added to the catalog.
    Catalog {
        column: &'static str,
        table: &'static str,
        /// The catalog's display column (`display`, or `name` for specialties).
        display: &'static str,
    },
    /// A Reference to a hosted resource type ⇄ a foreign key to its table.
    Ref {
        column: &'static str,
        target: &'static str,
        table: &'static str,
    },
}

/// One mapped element.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Starts with the element's top-level key.
    pub path: &'static [Seg],
    pub kind: Kind,
    /// The codes the column's CHECK constraint allows (empty: any value).
    pub allowed: &'static [&'static str],
    /// The column is NOT NULL: the resource must carry a value here.
    pub required: bool,
}

impl Spec {
    /// A spec with no code list that may be empty.
    pub const fn new(path: &'static [Seg], kind: Kind) -> Spec {
        Spec {
            path,
            kind,
            allowed: &[],
            required: false,
        }
    }

    /// The same spec for a NOT NULL column: the resource must carry a value here.
    pub const fn required(self) -> Spec {
        Spec {
            required: true,
            ..self
        }
    }

    /// The same spec for a column whose CHECK constraint allows only `codes`.
    pub const fn one_of(self, codes: &'static [&'static str]) -> Spec {
        Spec {
            allowed: codes,
            ..self
        }
    }
}

/// The patient a clinical row belongs to (`patient_id`), at `path` (`subject` or `patient`).
pub const fn patient(path: &'static [Seg]) -> Spec {
    Spec::new(
        path,
        Kind::Ref {
            column: "patient_id",
            target: "Patient",
            table: "patients",
        },
    )
}

/// The encounter (consultation) a clinical row was written in.
pub const ENCOUNTER: Spec = Spec::new(
    &[Seg::Key("encounter")],
    Kind::Ref {
        column: "consultation_id",
        target: "Encounter",
        table: "consultations",
    },
);

/// A clinician of the clinic (a row of `users`) in `column`, referred to at `path`.
pub const fn practitioner(path: &'static [Seg], column: &'static str) -> Spec {
    Spec::new(
        path,
        Kind::Ref {
            column,
            target: "Practitioner",
            table: "users",
        },
    )
}

/// A CodeableConcept whose first coding's code, system and display have a column each.
pub const fn concept(
    path: &'static [Seg],
    code: &'static str,
    system: &'static str,
    display: &'static str,
) -> Spec {
    Spec::new(
        path,
        Kind::Concept {
            code,
            system: Some(system),
            display: Some(display),
        },
    )
}

/// A column value, compared to decide whether a kept element still agrees with its row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Dec(Option<String>),
    Int(Option<i64>),
}

impl Cell {
    /// A decimal whose text a numeric column would not give back as written (an exponent, a
    /// negative zero): the element that holds it must be kept as sent.
    pub(crate) fn reshaped_by_numeric(&self) -> bool {
        match self {
            Cell::Dec(Some(t)) => {
                t.contains(['e', 'E'])
                    || (t.starts_with('-')
                        && crate::store::parse_decimal(t).is_some_and(|d| d.is_zero()))
            }
            _ => false,
        }
    }

    pub(super) fn is_none(&self) -> bool {
        match self {
            Cell::Text(v) | Cell::Dec(v) => v.is_none(),
            Cell::Bool(v) => v.is_none(),
            Cell::Time(v) => v.is_none(),
            Cell::Int(v) => v.is_none(),
        }
    }
}

impl Spec {
    pub(super) fn top(&self) -> &'static str {
        match self.path.first() {
            Some(Seg::Key(k)) => k,
            _ => "",
        }
    }

    pub(super) fn columns(&self) -> Vec<&'static str> {
        match self.kind {
            Kind::Text(c) | Kind::Bool(c) | Kind::Time(c) | Kind::Decimal(c) | Kind::Int(c) => {
                vec![c]
            }
            Kind::BoolDefault { column, .. }
            | Kind::Joined { column, .. }
            | Kind::IdentifierOf { column, .. } => vec![column],
            Kind::Telecom { phone, email, .. } => vec![phone, email],
            Kind::Concept {
                code,
                system,
                display,
            } => [Some(code), system, display]
                .into_iter()
                .flatten()
                .collect(),
            Kind::Coding { code, system } => [Some(code), system].into_iter().flatten().collect(),
            Kind::FixedCoding { code, .. } => vec![code],
            Kind::Ref { column, .. } | Kind::Catalog { column, .. } => vec![column],
            Kind::FixedConcept { code, .. } => vec![code],
        }
    }

    /// The leaf value the path leads to inside the top-level element.
    fn leaf<'a>(&self, top: Option<&'a Value>) -> Option<&'a Value> {
        let mut v = top?;
        for seg in &self.path[1..] {
            v = match seg {
                Seg::Key(k) => v.get(*k)?,
                Seg::First => v.get(0)?,
            };
        }
        Some(v)
    }

    pub(super) fn project(&self, top: Option<&Value>) -> Vec<Cell> {
        let leaf = self.leaf(top);
        let s = |v: Option<&Value>, k: &str| {
            Cell::Text(
                v.and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        };
        match self.kind {
            Kind::Text(_) => vec![Cell::Text(leaf.and_then(Value::as_str).map(str::to_owned))],
            Kind::Bool(_) => vec![Cell::Bool(leaf.and_then(Value::as_bool))],
            Kind::Decimal(_) => vec![Cell::Dec(
                leaf.and_then(Value::as_number).map(|n| n.to_string()),
            )],
            Kind::Int(_) => vec![Cell::Int(leaf.and_then(Value::as_i64))],
            Kind::BoolDefault { default, .. } => vec![Cell::Bool(Some(
                leaf.and_then(Value::as_bool).unwrap_or(default),
            ))],
            Kind::Joined { sep, .. } => vec![Cell::Text(joined(leaf, sep))],
            Kind::Telecom { .. } => {
                let (phone, email) = super::fields::telecom_project(leaf);
                vec![Cell::Text(phone), Cell::Text(email)]
            }
            Kind::IdentifierOf { system, .. } => vec![Cell::Text(
                identifier_of(leaf, system)
                    .and_then(|i| i.get("value"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )],
            Kind::Time(_) => vec![Cell::Time(
                leaf.and_then(Value::as_str).and_then(parse_time),
            )],
            Kind::Concept {
                system, display, ..
            } => {
                let coding = leaf.and_then(|c| c.get("coding")).and_then(|c| c.get(0));
                let mut cells = vec![s(coding, "code")];
                if system.is_some() {
                    cells.push(s(coding, "system"));
                }
                if display.is_some() {
                    cells.push(s(coding, "display"));
                }
                cells
            }
            Kind::Coding { system, .. } => {
                let mut cells = vec![s(leaf, "code")];
                if system.is_some() {
                    cells.push(s(leaf, "system"));
                }
                cells
            }
            Kind::FixedCoding { system, .. } => {
                let same_system = leaf
                    .and_then(|c| c.get("system"))
                    .and_then(Value::as_str)
                    .is_none_or(|s| s == system);
                vec![if same_system {
                    s(leaf, "code")
                } else {
                    Cell::Text(None)
                }]
            }
            Kind::Ref { target, .. } => vec![Cell::Text(ref_id(leaf, target).map(str::to_owned))],
            Kind::FixedConcept { system, .. } => vec![Cell::Text(
                coding_of(leaf, system)
                    .and_then(|c| c.get("code"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )],
            Kind::Catalog { .. } => {
                let coding = leaf.and_then(|c| c.get("coding")).and_then(|c| c.get(0));
                vec![s(coding, "code"), s(coding, "system"), s(coding, "display")]
            }
        }
    }

    /// Whether a kept element still says what the columns say. An empty unique-email column
    /// agrees with any email: the column may have refused it.
    pub(super) fn agrees(&self, kept: &Value, cells: &[Cell]) -> bool {
        let mut projected = self.project(Some(kept));
        if let Kind::Catalog { .. } = self.kind {
            return projected.get(..2) == cells.get(..2);
        }
        if let (
            Kind::Telecom {
                unique_email: true, ..
            },
            Some(Cell::Text(None)),
        ) = (self.kind, cells.get(1))
        {
            projected[1] = Cell::Text(None);
        }
        projected.len() == cells.len()
            && projected.iter().zip(cells).all(|(a, b)| match (a, b) {
                // A numeric column gives the number back in its own form (1e2 as 100).
                (Cell::Dec(Some(x)), Cell::Dec(Some(y))) => super::vital_data::same_number(x, y),
                (a, b) => a == b,
            })
    }

    /// Writes `cells` at the end of the path inside `top` (building what is missing).
    pub(super) fn patch(&self, top: Option<Value>, cells: &[Cell]) -> Option<Value> {
        let empty = cells.iter().all(Cell::is_none);
        let mut root = json!({ "v": top.unwrap_or(Value::Null) });
        let mut slot = &mut root["v"];
        for seg in &self.path[1..] {
            if empty && slot.is_null() {
                return prune(root);
            }
            slot = match seg {
                Seg::Key(k) => {
                    if !slot.is_object() {
                        *slot = json!({});
                    }
                    // Indexing an object by a missing key inserts null there.
                    &mut slot[*k]
                }
                Seg::First => {
                    if slot.as_array().is_none_or(|a| a.is_empty()) {
                        *slot = json!([null]);
                    }
                    &mut slot[0]
                }
            };
        }
        set_leaf(slot, self.kind, cells);
        prune(root)
    }
}

mod values;

pub(crate) use values::text;
use values::*;
pub use values::{parse_time, ref_id};

#[cfg(test)]
mod tests;

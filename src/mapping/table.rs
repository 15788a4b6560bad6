//! A mapping declared as data: a resource type over one table, each mapped element a [`Spec`]
//! (a path in the resource and the column or columns it lands in). Elements sharing a top-level
//! key are stored and rebuilt together under the lossless rule of [`super::fields`]: the element
//! goes to `fhir_extra` only when the columns cannot rebuild it exactly, and a kept element that
//! no longer agrees with its columns (the clinic changed them) gets the column values patched in.

use super::search::SearchParam;
use super::{MapError, ResourceMapping};
use crate::fhir::{instant, Id, Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, Row, StoreError, Tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

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
}

/// A column value, compared to decide whether a kept element still agrees with its row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(Option<String>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Dec(Option<String>),
    Int(Option<i64>),
}

impl Cell {
    fn is_none(&self) -> bool {
        match self {
            Cell::Text(v) | Cell::Dec(v) => v.is_none(),
            Cell::Bool(v) => v.is_none(),
            Cell::Time(v) => v.is_none(),
            Cell::Int(v) => v.is_none(),
        }
    }
}

impl Spec {
    fn top(&self) -> &'static str {
        match self.path.first() {
            Some(Seg::Key(k)) => k,
            _ => "",
        }
    }

    fn columns(&self) -> Vec<&'static str> {
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

    fn project(&self, top: Option<&Value>) -> Vec<Cell> {
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
    fn agrees(&self, kept: &Value, cells: &[Cell]) -> bool {
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
        projected == cells
    }

    /// Writes `cells` at the end of the path inside `top` (building what is missing).
    fn patch(&self, top: Option<Value>, cells: &[Cell]) -> Option<Value> {
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

fn text(c: &Cell) -> Option<String> {
    match c {
        Cell::Text(t) => t.clone(),
        _ => None,
    }
}

fn set_key(o: &mut Map<String, Value>, k: &str, v: Option<String>) {
    match v {
        Some(s) => {
            o.insert(k.to_owned(), Value::String(s));
        }
        None => {
            o.remove(k);
        }
    }
}

fn set_leaf(slot: &mut Value, kind: Kind, cells: &[Cell]) {
    match kind {
        Kind::Text(_) => *slot = text(&cells[0]).map(Value::String).unwrap_or(Value::Null),
        Kind::Bool(_) => {
            *slot = match cells[0] {
                Cell::Bool(Some(b)) => Value::Bool(b),
                _ => Value::Null,
            }
        }
        Kind::Decimal(_) => {
            *slot = match &cells[0] {
                Cell::Dec(Some(t)) => t
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            }
        }
        Kind::Int(_) => {
            *slot = match cells[0] {
                Cell::Int(Some(i)) => Value::from(i),
                _ => Value::Null,
            }
        }
        Kind::BoolDefault { default, .. } => {
            *slot = match cells[0] {
                Cell::Bool(Some(b)) if b != default => Value::Bool(b),
                _ => Value::Null,
            }
        }
        Kind::Joined { sep, .. } => {
            let want = text(&cells[0]);
            if joined(Some(slot), sep) != want {
                *slot = match want {
                    Some(w) => Value::Array(
                        w.split(sep)
                            .filter(|p| !p.is_empty())
                            .map(|p| Value::String(p.to_owned()))
                            .collect(),
                    ),
                    None => Value::Null,
                };
            }
        }
        Kind::Telecom { unique_email, .. } => {
            let current = Some(slot.take()).filter(|v| !v.is_null());
            let mut email = text(&cells[1]);
            if unique_email && email.is_none() {
                // An email the column refused (another row holds it) stays in the element.
                email = super::fields::telecom_project(current.as_ref()).1;
            }
            *slot = super::fields::telecom_patch(current, &text(&cells[0]), &email)
                .unwrap_or(Value::Null);
        }
        Kind::IdentifierOf { system, .. } => {
            let mut list = match slot.take() {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let at = list
                .iter()
                .position(|i| i.get("system").and_then(Value::as_str) == Some(system));
            match (at, text(&cells[0])) {
                (Some(i), Some(v)) => list[i]["value"] = Value::String(v),
                (Some(i), None) => {
                    list.remove(i);
                }
                (None, Some(v)) => list.push(json!({"system": system, "value": v})),
                (None, None) => {}
            }
            *slot = Value::Array(list);
        }
        Kind::Time(_) => {
            *slot = match &cells[0] {
                Cell::Time(Some(t)) => Value::String(instant(t)),
                _ => Value::Null,
            }
        }
        Kind::Concept {
            system, display, ..
        } => {
            if !slot.is_object() {
                *slot = json!({});
            }
            let concept = slot.as_object_mut();
            let Some(concept) = concept else { return };
            let codings = concept.entry("coding").or_insert(json!([{}]));
            if codings.as_array().is_none_or(|a| a.is_empty()) {
                *codings = json!([{}]);
            }
            if let Some(c) = codings[0].as_object_mut() {
                set_key(c, "code", text(&cells[0]));
                let mut i = 1;
                if system.is_some() {
                    set_key(c, "system", text(&cells[i]));
                    i += 1;
                }
                if display.is_some() {
                    set_key(c, "display", text(&cells[i]));
                }
            }
        }
        Kind::Coding { system, .. } => {
            if !slot.is_object() {
                *slot = json!({});
            }
            if let Some(c) = slot.as_object_mut() {
                set_key(c, "code", text(&cells[0]));
                if system.is_some() {
                    set_key(c, "system", text(&cells[1]));
                }
            }
        }
        Kind::FixedConcept { system, .. } => {
            if !slot.is_object() {
                *slot = json!({});
            }
            let Some(concept) = slot.as_object_mut() else {
                return;
            };
            let mut codings = match concept.remove("coding") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            let at = codings
                .iter()
                .position(|c| c.get("system").and_then(Value::as_str) == Some(system));
            match (at, text(&cells[0])) {
                (Some(i), Some(code)) => codings[i]["code"] = Value::String(code),
                (Some(i), None) => {
                    codings.remove(i);
                }
                (None, Some(code)) => codings.insert(0, json!({"system": system, "code": code})),
                (None, None) => {}
            }
            concept.insert("coding".into(), Value::Array(codings));
        }
        Kind::Catalog { .. } => set_leaf(
            slot,
            Kind::Concept {
                code: "",
                system: Some(""),
                display: Some(""),
            },
            cells,
        ),
        Kind::FixedCoding { system, .. } => {
            if !slot.is_object() {
                *slot = json!({});
            }
            if let Some(c) = slot.as_object_mut() {
                let code = text(&cells[0]);
                set_key(c, "system", code.as_ref().map(|_| system.to_owned()));
                set_key(c, "code", code);
            }
        }
        Kind::Ref { target, .. } => {
            if !slot.is_object() {
                *slot = json!({});
            }
            if let Some(r) = slot.as_object_mut() {
                set_key(
                    r,
                    "reference",
                    text(&cells[0]).map(|id| format!("{target}/{id}")),
                );
            }
        }
    }
}

/// The strings of an array joined by `sep` (`None` when there are none).
fn joined(v: Option<&Value>, sep: &str) -> Option<String> {
    let parts: Vec<&str> = v?.as_array()?.iter().filter_map(Value::as_str).collect();
    (!parts.is_empty()).then(|| parts.join(sep))
}

/// The coding of `system` in a CodeableConcept.
fn coding_of<'a>(concept: Option<&'a Value>, system: &str) -> Option<&'a Value> {
    concept?
        .get("coding")?
        .as_array()?
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(system))
}

/// The first identifier of `system` in an Identifier array.
fn identifier_of<'a>(v: Option<&'a Value>, system: &str) -> Option<&'a Value> {
    v?.as_array()?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
}

/// Removes nulls, empty objects and empty arrays left behind, and unwraps the root.
fn prune(mut root: Value) -> Option<Value> {
    fn clean(v: &mut Value) -> bool {
        match v {
            Value::Null => false,
            Value::Object(o) => {
                o.retain(|_, x| clean(x));
                !o.is_empty()
            }
            Value::Array(a) => {
                a.retain_mut(clean);
                !a.is_empty()
            }
            _ => true,
        }
    }
    let v = root.get_mut("v")?.take();
    let mut v = v;
    clean(&mut v).then_some(v)
}

/// The id of a relative reference `{target}/{id}` (a version suffix allowed).
pub fn ref_id<'a>(reference: Option<&'a Value>, target: &str) -> Option<&'a str> {
    let r = reference?.get("reference")?.as_str()?;
    let rest = r.strip_prefix(target)?.strip_prefix('/')?;
    let id = rest.split("/_history/").next()?;
    Id::parse(id).map(|_| id)
}

/// Parses a FHIR dateTime or instant (any precision; UTC when no zone) to its first instant.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    crate::fhir::date::parse_range(s).map(|r| r.start)
}

/// A resource type over one table, declared by its specs.
pub struct TableMapping {
    pub resource_type: &'static str,
    pub table: &'static str,
    pub specs: &'static [Spec],
    pub params: &'static [SearchParam],
    /// The column a client-chosen id is written to (`fhir_id`, or a column it derives from).
    pub id_column: &'static str,
    /// A condition (on alias `t`) a row must meet to be a resource of this type.
    pub filter: Option<&'static str>,
    /// Columns set on insert only, each to an SQL expression of constants.
    pub insert_defaults: &'static [(&'static str, &'static str)],
    /// Whether `name[]` is indexed for the name, family and given search parameters.
    pub index_names: bool,
    /// Code elements indexed for token search: (parameter, top-level element).
    pub code_index: &'static [(&'static str, &'static str)],
}

impl TableMapping {
    /// The defaults of the optional parts.
    pub const BASE: TableMapping = TableMapping {
        resource_type: "",
        table: "",
        specs: &[],
        params: &[],
        id_column: "fhir_id",
        filter: None,
        insert_defaults: &[],
        index_names: false,
        code_index: &[],
    };
}

impl TableMapping {
    fn groups(&self) -> Vec<(&'static str, Vec<&'static Spec>)> {
        let mut out: Vec<(&'static str, Vec<&'static Spec>)> = Vec::new();
        for s in self.specs {
            match out.iter_mut().find(|(k, _)| *k == s.top()) {
                Some((_, v)) => v.push(s),
                None => out.push((s.top(), vec![s])),
            }
        }
        out
    }

    fn all_columns(&self) -> Vec<&'static str> {
        self.specs.iter().flat_map(Spec::columns).collect()
    }

    /// Splits a resource into column values (as bound arguments) and what goes to fhir_extra.
    async fn split(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        resource: &Value,
    ) -> Result<(Vec<Arg>, Map<String, Value>), MapError> {
        let mut rest = super::fields::resource_rest(resource);
        let mut issues = Vec::new();
        let mut args = Vec::new();
        for (key, specs) in self.groups() {
            let orig = rest.remove(key);
            let mut cells: Vec<Vec<Cell>> =
                specs.iter().map(|s| s.project(orig.as_ref())).collect();
            let mut catalog_ids: Vec<Option<Uuid>> = vec![None; specs.len()];
            for (i, (s, c)) in specs.iter().zip(cells.iter_mut()).enumerate() {
                if let Kind::Catalog { table, display, .. } = s.kind {
                    if let Some(code) = text(&c[0]) {
                        let (id, display) =
                            catalog_entry(tx, table, display, &code, text(&c[1]), text(&c[2]))
                                .await?;
                        catalog_ids[i] = Some(id);
                        c[2] = Cell::Text(display);
                    }
                }
                if let Kind::Telecom {
                    email,
                    unique_email: true,
                    ..
                } = s.kind
                {
                    if let Some(e) = text(&c[1]) {
                        let taken = tx
                            .fetch_optional(
                                &format!(
                                    "SELECT 1 AS x FROM {} WHERE {email} = ? AND id <> ?",
                                    self.table
                                ),
                                &[e.into(), row_id.into()],
                            )
                            .await?
                            .is_some();
                        if taken {
                            c[1] = Cell::Text(None);
                        }
                    }
                }
            }
            let mut rebuilt = None;
            for (s, c) in specs.iter().zip(&cells) {
                rebuilt = s.patch(rebuilt, c);
            }
            if rebuilt != orig {
                if let Some(o) = orig {
                    rest.insert(key.to_owned(), o);
                }
            }
            for (i, (s, c)) in specs.iter().zip(cells).enumerate() {
                let at = || expression(self.resource_type, s.path);
                if let Some(Cell::Dec(Some(t))) = c.first() {
                    if crate::store::parse_decimal(t).is_none() {
                        issues.push(
                            Issue::error(
                                IssueType::Value,
                                "this decimal is beyond what the clinic schema can hold",
                            )
                            .at(at()),
                        );
                    }
                }
                if s.required && text(&c[0]).is_none() && matches!(c[0], Cell::Text(_)) {
                    let what = match s.kind {
                        Kind::Ref { target, .. } => {
                            format!("a reference to a {target} of this server")
                        }
                        _ => "a value".to_owned(),
                    };
                    issues.push(
                        Issue::error(
                            IssueType::Required,
                            format!("the clinic schema needs {what} here"),
                        )
                        .at(at()),
                    );
                }
                if let Some(code) = text(&c[0])
                    .filter(|v| !s.allowed.is_empty() && !s.allowed.contains(&v.as_str()))
                {
                    issues.push(
                        Issue::error(
                            IssueType::Value,
                            format!(
                                "code '{}' is not one the clinic schema accepts here ({})",
                                code.escape_default(),
                                s.allowed.join(", ")
                            ),
                        )
                        .at(at()),
                    );
                }
                match s.kind {
                    Kind::Catalog { .. } => args.push(Arg::OptUuid(catalog_ids[i])),
                    Kind::Ref { target, table, .. } => {
                        let id = text(&c[0]);
                        let row = match &id {
                            Some(id) => tx
                                .fetch_optional(&format!("SELECT id FROM {table} WHERE fhir_id = ? AND deleted_at IS NULL"), &[id.clone().into()])
                                .await?
                                .map(|r| r.uuid("id"))
                                .transpose()?,
                            None => None,
                        };
                        if let (Some(id), None) = (&id, row) {
                            issues.push(
                                Issue::error(
                                    IssueType::Processing,
                                    format!("{target}/{id} does not exist on this server"),
                                )
                                .at(at()),
                            );
                        }
                        args.push(Arg::OptUuid(row));
                    }
                    _ => args.extend(c.into_iter().map(|c| match c {
                        Cell::Text(t) => Arg::Text(t),
                        Cell::Bool(b) => Arg::Bool(b),
                        Cell::Time(t) => Arg::Timestamp(t),
                        Cell::Dec(t) => Arg::Decimal(t),
                        Cell::Int(i) => Arg::Int(i),
                    })),
                }
            }
        }
        if issues.is_empty() {
            Ok((args, rest))
        } else {
            Err(MapError::Unprocessable(issues))
        }
    }

    fn assemble(&self, row: &Row, order: &[String]) -> Result<Value, StoreError> {
        let (mut out, mut extra) = super::fields::resource_head(self.resource_type, row)?;
        for (key, specs) in self.groups() {
            let mut cells = Vec::new();
            for s in &specs {
                cells.push(read_cells(row, s)?);
            }
            let kept = extra.remove(key);
            let agrees = kept
                .as_ref()
                .is_some_and(|k| specs.iter().zip(&cells).all(|(s, c)| s.agrees(k, c)));
            let value = if agrees {
                kept
            } else {
                let mut v = kept;
                for (s, c) in specs.iter().zip(&cells) {
                    v = s.patch(v, c);
                }
                v
            };
            if let Some(v) = value {
                out.insert(key.to_owned(), v);
            }
        }
        out.extend(extra);
        Ok(Value::Object(super::fields::ordered(out, order)))
    }
}

/// The cells of one spec, as the row holds them.
fn read_cells(row: &Row, s: &Spec) -> Result<Vec<Cell>, StoreError> {
    Ok(match s.kind {
        Kind::Bool(c) | Kind::BoolDefault { column: c, .. } => vec![Cell::Bool(row.bool(c)?)],
        Kind::Time(c) => vec![Cell::Time(row.opt_timestamp(c)?)],
        Kind::Decimal(c) => vec![Cell::Dec(row.decimal(c)?)],
        Kind::Int(c) => vec![Cell::Int(row.opt_int(c)?)],
        Kind::Ref { column, .. } => vec![Cell::Text(row.text(&format!("{column}__ref"))?)],
        Kind::Catalog { column, .. } => ["code", "system", "display"]
            .iter()
            .map(|k| row.text(&format!("{column}__{k}")).map(Cell::Text))
            .collect::<Result<_, _>>()?,
        _ => s
            .columns()
            .iter()
            .map(|c| row.text(c).map(Cell::Text))
            .collect::<Result<_, _>>()?,
    })
}

/// The catalog entry of a code (added when the catalog does not have it yet): its id and the
/// display the catalog gives it.
async fn catalog_entry(
    tx: &mut Tx,
    table: &str,
    display_column: &str,
    code: &str,
    system: Option<String>,
    display: Option<String>,
) -> Result<(Uuid, Option<String>), StoreError> {
    let found = match &system {
        Some(sys) => {
            tx.fetch_optional(
                &format!("SELECT id, {display_column} AS display FROM {table} WHERE code = ? AND system = ?"),
                &[code.into(), sys.clone().into()],
            )
            .await?
        }
        None => {
            tx.fetch_optional(
                &format!("SELECT id, {display_column} AS display FROM {table} WHERE code = ? AND system IS NULL"),
                &[code.into()],
            )
            .await?
        }
    };
    if let Some(r) = found {
        return Ok((r.uuid("id")?, r.text("display")?));
    }
    let id = Uuid::new_v4();
    tx.execute(
        // A catalog whose display is NOT NULL (specialties.name) gets the code when none is sent.
        &format!("INSERT INTO {table} (id, code, system, {display_column}) VALUES (?, ?, ?, COALESCE(?, ?))"),
        &[
            id.into(),
            code.into(),
            system.into(),
            display.clone().into(),
            Arg::Text((display_column == "name").then(|| code.to_owned())),
        ],
    )
    .await?;
    Ok((
        id,
        display.or_else(|| (display_column == "name").then(|| code.to_owned())),
    ))
}

/// A FHIRPath for a spec's path, for error messages.
fn expression(resource_type: &str, path: &[Seg]) -> String {
    let mut e = resource_type.to_owned();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                e.push('.');
                e.push_str(k);
            }
            Seg::First => e.push_str("[0]"),
        }
    }
    e
}

#[async_trait]
impl ResourceMapping for TableMapping {
    fn resource_type(&self) -> &'static str {
        self.resource_type
    }

    fn table(&self) -> &'static str {
        self.table
    }

    fn search_params(&self) -> &'static [SearchParam] {
        self.params
    }

    fn row_filter(&self) -> Option<&'static str> {
        self.filter
    }

    async fn insert(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        fhir_id: &Id,
        resource: &Value,
    ) -> Result<(), MapError> {
        let (mut args, extra) = self.split(tx, row_id, resource).await?;
        let mut cols = self.all_columns();
        let mut values = vec!["?"; cols.len()];
        for (c, expr) in self.insert_defaults {
            cols.push(c);
            values.push(expr);
        }
        let sql = format!(
            "INSERT INTO {} (id, {}, {}, fhir_extra) VALUES (?, ?, {}, ?)",
            self.table,
            self.id_column,
            cols.join(", "),
            values.join(", ")
        );
        let mut all: Vec<Arg> = vec![row_id.into(), fhir_id.as_str().into()];
        all.append(&mut args);
        all.push(Arg::Json(Value::Object(extra)));
        tx.execute(&sql, &all).await?;
        if self.index_names || !self.code_index.is_empty() {
            super::search::index(
                tx,
                self.resource_type,
                row_id,
                resource,
                self.index_names,
                self.code_index,
            )
            .await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        tx: &mut Tx,
        row_id: Uuid,
        expected_version: Option<i64>,
        resource: &Value,
    ) -> Result<bool, MapError> {
        let (mut args, extra) = self.split(tx, row_id, resource).await?;
        let sets: Vec<String> = self
            .all_columns()
            .iter()
            .map(|c| format!("{c} = ?"))
            .collect();
        let mut sql = format!(
            "UPDATE {} SET {}, fhir_extra = ?, deleted_at = NULL WHERE id = ?",
            self.table,
            sets.join(", ")
        );
        args.push(Arg::Json(Value::Object(extra)));
        args.push(row_id.into());
        if let Some(v) = expected_version {
            sql.push_str(" AND version_id = ?");
            args.push(v.into());
        }
        if tx.execute(&sql, &args).await? == 0 {
            return Ok(false);
        }
        if self.index_names || !self.code_index.is_empty() {
            super::search::index(
                tx,
                self.resource_type,
                row_id,
                resource,
                self.index_names,
                self.code_index,
            )
            .await?;
        }
        Ok(true)
    }

    async fn load(
        &self,
        conn: &mut Conn<'_>,
        row_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Value)>, StoreError> {
        if row_ids.is_empty() {
            return Ok(vec![]);
        }
        let mut select = vec![
            "t.id".to_owned(),
            "t.fhir_id".into(),
            "t.version_id".into(),
            "t.updated_at".into(),
            "t.fhir_extra".into(),
        ];
        let mut joins = String::new();
        for (i, s) in self.specs.iter().enumerate() {
            match s.kind {
                Kind::Ref { column, table, .. } => {
                    select.push(format!("r{i}.fhir_id AS {column}__ref"));
                    joins.push_str(&format!(" LEFT JOIN {table} r{i} ON r{i}.id = t.{column}"));
                }
                Kind::Catalog {
                    column,
                    table,
                    display,
                } => {
                    select.push(format!("r{i}.code AS {column}__code"));
                    select.push(format!("r{i}.system AS {column}__system"));
                    select.push(format!("r{i}.{display} AS {column}__display"));
                    joins.push_str(&format!(" LEFT JOIN {table} r{i} ON r{i}.id = t.{column}"));
                }
                _ => select.extend(s.columns().iter().map(|c| format!("t.{c}"))),
            }
        }
        let ids: Vec<Arg> = row_ids.iter().map(|u| Arg::Uuid(*u)).collect();
        let sql = format!(
            "SELECT {} FROM {} t{joins} WHERE t.id IN ({})",
            select.join(", "),
            self.table,
            placeholders(ids.len())
        );
        let order = super::element_order(self.resource_type);
        conn.fetch_all(&sql, &ids)
            .await?
            .iter()
            .map(|row| Ok((row.uuid("id")?, self.assemble(row, &order)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: Spec = Spec::new(
        &[Seg::Key("class")],
        Kind::Coding {
            code: "class_code",
            system: Some("class_system"),
        },
    );
    const TYPE: Spec = Spec::new(
        &[Seg::Key("type"), Seg::First],
        Kind::Concept {
            code: "type_code",
            system: Some("type_system"),
            display: Some("type_display"),
        },
    );
    const DOCTOR: Spec = Spec::new(
        &[Seg::Key("participant"), Seg::First, Seg::Key("individual")],
        Kind::Ref {
            column: "doctor_id",
            target: "Practitioner",
            table: "users",
        },
    );

    #[test]
    fn specs_project_and_patch_paths_into_arrays_and_objects() {
        let t = json!([{"coding": [{"system": "http://snomed.info/sct", "code": "11429006", "display": "Consultation"}]}]);
        let cells = TYPE.project(Some(&t));
        assert_eq!(cells[0], Cell::Text(Some("11429006".into())));
        assert_eq!(TYPE.patch(None, &cells), Some(t.clone()));
        let changed = TYPE.patch(
            Some(t),
            &[
                Cell::Text(Some("x".into())),
                Cell::Text(None),
                Cell::Text(None),
            ],
        );
        assert_eq!(changed, Some(json!([{"coding": [{"code": "x"}]}])));
        let p = json!([{"individual": {"reference": "Practitioner/dr1", "display": "Dr. One"}}]);
        assert_eq!(
            DOCTOR.project(Some(&p)),
            vec![Cell::Text(Some("dr1".into()))]
        );
        assert_eq!(
            DOCTOR.patch(None, &DOCTOR.project(Some(&p))),
            Some(json!([{"individual": {"reference": "Practitioner/dr1"}}]))
        );
        assert_eq!(
            CLASS.patch(None, &[Cell::Text(None), Cell::Text(None)]),
            None
        );
    }

    #[test]
    fn removing_a_value_prunes_what_it_leaves_empty() {
        let p = json!([{"individual": {"reference": "Practitioner/dr1"}}]);
        assert_eq!(DOCTOR.patch(Some(p), &[Cell::Text(None)]), None);
        let p = json!([{"individual": {"reference": "Practitioner/dr1"}, "type": [{"text": "x"}]}]);
        assert_eq!(
            DOCTOR.patch(Some(p), &[Cell::Text(None)]),
            Some(json!([{"type": [{"text": "x"}]}]))
        );
    }

    #[test]
    fn references_of_other_types_or_forms_are_not_mapped() {
        let r = json!({"reference": "RelatedPerson/x"});
        assert_eq!(ref_id(Some(&r), "Practitioner"), None);
        let r = json!({"reference": "Practitioner/dr1/_history/2"});
        assert_eq!(ref_id(Some(&r), "Practitioner"), Some("dr1"));
        let r = json!({"reference": "Practitioner/../x"});
        assert_eq!(ref_id(Some(&r), "Practitioner"), None);
    }
}

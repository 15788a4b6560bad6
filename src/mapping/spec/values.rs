//! The values of a spec's columns written into an element, and the helpers that find and
//! prune elements.

use super::*;

pub(crate) fn text(c: &Cell) -> Option<String> {
    match c {
        Cell::Text(t) => t.clone(),
        _ => None,
    }
}

pub(super) fn set_key(o: &mut Map<String, Value>, k: &str, v: Option<String>) {
    match v {
        Some(s) => {
            o.insert(k.to_owned(), Value::String(s));
        }
        None => {
            o.remove(k);
        }
    }
}

pub(super) fn set_leaf(slot: &mut Value, kind: Kind, cells: &[Cell]) {
    match kind {
        Kind::Joined { sep, .. } => set_joined(slot, sep, text(&cells[0])),
        Kind::Telecom { unique_email, .. } => {
            let current = Some(slot.take()).filter(|v| !v.is_null());
            let mut email = text(&cells[1]);
            if unique_email && email.is_none() {
                // An email the column refused (another row holds it) stays in the element.
                email = crate::mapping::fields::telecom_project(current.as_ref()).1;
            }
            *slot = crate::mapping::fields::telecom_patch(current, &text(&cells[0]), &email)
                .unwrap_or(Value::Null);
        }
        Kind::IdentifierOf { system, .. } => {
            let mut list = array(slot.take());
            by_system(&mut list, system, "value", text(&cells[0]), false);
            *slot = Value::Array(list);
        }
        Kind::Concept {
            system, display, ..
        } => set_concept(slot, system.is_some(), display.is_some(), cells),
        Kind::Catalog { .. } => set_concept(slot, true, true, cells),
        Kind::Coding { system, .. } => {
            let c = object(slot);
            set_key(c, "code", text(&cells[0]));
            if system.is_some() {
                set_key(c, "system", text(&cells[1]));
            }
        }
        Kind::FixedConcept { system, .. } => {
            let concept = object(slot);
            let mut codings = array(concept.remove("coding").unwrap_or(Value::Null));
            by_system(&mut codings, system, "code", text(&cells[0]), true);
            concept.insert("coding".into(), Value::Array(codings));
        }
        Kind::FixedCoding { system, .. } => {
            let c = object(slot);
            let code = text(&cells[0]);
            set_key(c, "system", code.as_ref().map(|_| system.to_owned()));
            set_key(c, "code", code);
        }
        Kind::Ref { target, .. } => {
            let reference = text(&cells[0]).map(|id| format!("{target}/{id}"));
            set_key(object(slot), "reference", reference);
        }
        Kind::Text(_)
        | Kind::Bool(_)
        | Kind::Decimal(_)
        | Kind::Int(_)
        | Kind::BoolDefault { .. }
        | Kind::Time(_) => *slot = scalar(kind, &cells[0]),
    }
}

/// The JSON value of a one-column scalar kind (null when the column is).
fn scalar(kind: Kind, cell: &Cell) -> Value {
    match (kind, cell) {
        (Kind::Text(_), Cell::Text(Some(t))) => Value::String(t.clone()),
        (Kind::Bool(_), Cell::Bool(Some(b))) => Value::Bool(*b),
        (Kind::BoolDefault { default, .. }, Cell::Bool(Some(b))) if *b != default => {
            Value::Bool(*b)
        }
        (Kind::Decimal(_), Cell::Dec(Some(t))) => t
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::Null),
        (Kind::Int(_), Cell::Int(Some(i))) => Value::from(*i),
        (Kind::Time(_), Cell::Time(Some(t))) => Value::String(instant(t)),
        _ => Value::Null,
    }
}

/// The slot as an object, made one when it is not.
fn object(slot: &mut Value) -> &mut Map<String, Value> {
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("the slot was just made an object"),
    }
}

/// The elements of an array value (none when it is not one).
fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

/// Sets `key` of the element of `system` in `list` to `v`: changed in place, removed when `v`
/// is none, added (first or last) when there was none.
fn by_system(list: &mut Vec<Value>, system: &str, key: &str, v: Option<String>, first: bool) {
    let at = list
        .iter()
        .position(|i| i.get("system").and_then(Value::as_str) == Some(system));
    match (at, v) {
        (Some(i), Some(v)) => list[i][key] = Value::String(v),
        (Some(i), None) => {
            list.remove(i);
        }
        (None, Some(v)) => {
            let element = json!({"system": system, key: v});
            if first {
                list.insert(0, element)
            } else {
                list.push(element)
            }
        }
        (None, None) => {}
    }
}

/// An array of strings stored joined by `sep` in one column (rewritten only when it changed).
fn set_joined(slot: &mut Value, sep: &str, want: Option<String>) {
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

/// The first coding of a CodeableConcept: code, then system and display when they are columns.
fn set_concept(slot: &mut Value, system: bool, display: bool, cells: &[Cell]) {
    let codings = object(slot).entry("coding").or_insert(json!([{}]));
    if codings.as_array().is_none_or(|a| a.is_empty()) {
        *codings = json!([{}]);
    }
    if let Some(c) = codings[0].as_object_mut() {
        set_key(c, "code", text(&cells[0]));
        let mut i = 1;
        if system {
            set_key(c, "system", text(&cells[i]));
            i += 1;
        }
        if display {
            set_key(c, "display", text(&cells[i]));
        }
    }
}

/// The strings of an array joined by `sep` (`None` when there are none).
pub(super) fn joined(v: Option<&Value>, sep: &str) -> Option<String> {
    let parts: Vec<&str> = v?.as_array()?.iter().filter_map(Value::as_str).collect();
    (!parts.is_empty()).then(|| parts.join(sep))
}

/// The coding of `system` in a CodeableConcept.
pub(super) fn coding_of<'a>(concept: Option<&'a Value>, system: &str) -> Option<&'a Value> {
    concept?
        .get("coding")?
        .as_array()?
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(system))
}

/// The first identifier of `system` in an Identifier array.
pub(super) fn identifier_of<'a>(v: Option<&'a Value>, system: &str) -> Option<&'a Value> {
    v?.as_array()?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
}

/// Removes nulls, empty objects and empty arrays left behind, and unwraps the root.
pub(super) fn prune(mut root: Value) -> Option<Value> {
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

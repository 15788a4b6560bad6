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
                email = crate::mapping::fields::telecom_project(current.as_ref()).1;
            }
            *slot = crate::mapping::fields::telecom_patch(current, &text(&cells[0]), &email)
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

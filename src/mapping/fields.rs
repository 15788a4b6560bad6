//! Elements mapped onto columns, losslessly.
//!
//! A [`Field`] reads column values out of an element (`project`) and writes column values into
//! an element (`patch`). On a write, the element goes to `fhir_extra` only when the columns alone
//! cannot rebuild it exactly. On a read, the element kept in `fhir_extra` is used as long as it
//! still agrees with the columns; when the clinic application changed a column directly, the
//! column's value is patched into it. So what a client sends comes back, and the relational
//! columns stay the source of truth.

use serde_json::{Map, Value};

pub trait Field {
    /// The column values this element carries.
    type Cols: PartialEq;
    /// The element's JSON key.
    const KEY: &'static str;
    fn project(element: Option<&Value>) -> Self::Cols;
    /// Writes `cols` into `element` (or builds it when `None`); `None` means "no element".
    fn patch(element: Option<Value>, cols: &Self::Cols) -> Option<Value>;
}

/// Takes the element out of `rest`, returns its columns, and puts it back only if the columns
/// cannot rebuild it.
pub fn store<F: Field>(rest: &mut Map<String, Value>) -> F::Cols {
    let orig = rest.remove(F::KEY);
    let cols = F::project(orig.as_ref());
    if F::patch(None, &cols) != orig {
        if let Some(o) = orig {
            rest.insert(F::KEY.to_owned(), o);
        }
    }
    cols
}

/// Rebuilds the element from `cols` and what `extra` kept of it.
pub fn rebuild<F: Field>(extra: &mut Map<String, Value>, cols: &F::Cols) -> Option<Value> {
    match extra.remove(F::KEY) {
        Some(o) if F::project(Some(&o)) == *cols => Some(o),
        o => F::patch(o, cols),
    }
}

/// A JSON object.
pub type Object = Map<String, Value>;

/// The start of a resource read from its row: `resourceType`, `id` and `meta` (the row's version
/// and update time with what fhir_extra kept of meta), and the rest of fhir_extra to rebuild from.
pub fn resource_head(
    resource_type: &str,
    row: &crate::store::Row,
) -> Result<(Object, Object), crate::store::StoreError> {
    let mut extra = match row.json("fhir_extra")? {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let out = head(resource_type, row, &mut extra)?;
    Ok((out, extra))
}

/// What a resource's row says of its version: the logical id, version and update time
/// (columns `fhir_id`, `version_id`, `updated_at`).
pub struct RowMeta {
    pub fhir_id: String,
    pub version_id: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl RowMeta {
    pub fn of(row: &crate::store::Row) -> Result<RowMeta, crate::store::StoreError> {
        Ok(RowMeta {
            fhir_id: row.string("fhir_id")?,
            version_id: row.int("version_id")?,
            updated_at: row.timestamp("updated_at")?,
        })
    }
}

/// A resource as the rows inserted from `body` give it back: the body without what the server
/// keeps (see [`resource_rest`]), with the id, version and update time of its row (`head`), its
/// elements in [`resource_head`]'s order and then `order`.
pub fn as_stored(resource_type: &str, head: &RowMeta, body: Value, order: &[String]) -> Value {
    let mut rest = match body {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    // (Removed as resource_rest removes them, so that meta keeps the order it is kept in.)
    if let Some(Value::Object(meta)) = rest.get_mut("meta") {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    let mut out = head_of(resource_type, head, &mut rest);
    rest.remove("resourceType");
    rest.remove("id");
    out.extend(rest);
    Value::Object(ordered(out, order))
}

/// `resourceType`, `id` and `meta` of a resource from its row, meta being the one taken out of
/// `kept` with the row's version and update time.
fn head(
    resource_type: &str,
    row: &crate::store::Row,
    kept: &mut Object,
) -> Result<Object, crate::store::StoreError> {
    Ok(head_of(resource_type, &RowMeta::of(row)?, kept))
}

/// [`head`] of a row's [`RowMeta`].
fn head_of(resource_type: &str, head: &RowMeta, kept: &mut Object) -> Object {
    let mut out = Map::new();
    out.insert(
        "resourceType".into(),
        Value::String(resource_type.to_owned()),
    );
    out.insert("id".into(), Value::String(head.fhir_id.clone()));
    let mut meta = match kept.remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.insert(
        "versionId".into(),
        Value::String(head.version_id.to_string()),
    );
    meta.insert(
        "lastUpdated".into(),
        Value::String(crate::fhir::instant(&head.updated_at)),
    );
    out.insert("meta".into(), Value::Object(meta));
    out
}

/// What of a resource is left to map once the server's own parts are set aside: the resource
/// without `resourceType`, `id`, `meta.versionId` and `meta.lastUpdated`.
pub fn resource_rest(resource: &Value) -> Map<String, Value> {
    let mut rest = resource.as_object().cloned().unwrap_or_default();
    rest.remove("resourceType");
    rest.remove("id");
    if let Some(Value::Object(meta)) = rest.get_mut("meta") {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            rest.remove("meta");
        }
    }
    rest
}

/// A string property of an object.
pub fn str_of<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(key)).and_then(Value::as_str)
}

/// Sets `key` to a string, or removes it when `None`.
pub fn set_str(obj: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    match value {
        Some(s) => {
            obj.insert(key.to_owned(), Value::String(s.clone()));
        }
        None => {
            obj.remove(key);
        }
    }
}

/// The strings of an array property, joined by `sep` (`None` when there are none).
pub fn joined(v: Option<&Value>, key: &str, sep: &str) -> Option<String> {
    let parts: Vec<&str> = v
        .and_then(|v| v.get(key))
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!parts.is_empty()).then(|| parts.join(sep))
}

/// Sets an array-of-strings property from `joined` text, unless it already joins to it.
pub fn set_joined(obj: &mut Map<String, Value>, key: &str, sep: &str, value: &Option<String>) {
    let current = joined(Some(&Value::Object(obj.clone())), key, sep);
    if current == *value {
        return;
    }
    match value {
        Some(s) => {
            let parts: Vec<Value> = s
                .split(sep)
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_owned()))
                .collect();
            obj.insert(key.to_owned(), Value::Array(parts));
        }
        None => {
            obj.remove(key);
        }
    }
}

/// Orders the keys of a resource as the specification lists its elements (`_x` right after
/// `x`), unknown keys last in their original order. JSON does not care; people reading it do.
pub fn ordered(mut obj: Map<String, Value>, order: &[String]) -> Map<String, Value> {
    let mut out = Map::with_capacity(obj.len());
    for key in order {
        if let Some(v) = obj.remove(key.as_str()) {
            out.insert(key.clone(), v);
        }
        let under = format!("_{key}");
        if let Some(v) = obj.remove(&under) {
            out.insert(under, v);
        }
    }
    out.extend(obj);
    out
}

/// HumanName ⇄ (given names joined by spaces, family).
pub fn name_project(name: Option<&Value>) -> (Option<String>, Option<String>) {
    (
        joined(name, "given", " "),
        str_of(name, "family").map(str::to_owned),
    )
}

pub fn name_patch(name: &mut Map<String, Value>, given: &Option<String>, family: &Option<String>) {
    set_str(name, "family", family);
    set_joined(name, "given", " ", given);
}

/// ContactPoint[] ⇄ (first phone, first email).
pub fn telecom_project(telecom: Option<&Value>) -> (Option<String>, Option<String>) {
    let find = |system: &str| {
        telecom
            .and_then(Value::as_array)?
            .iter()
            .find(|c| str_of(Some(c), "system") == Some(system))
            .and_then(|c| str_of(Some(c), "value"))
            .map(str::to_owned)
    };
    (find("phone"), find("email"))
}

pub fn telecom_patch(
    telecom: Option<Value>,
    phone: &Option<String>,
    email: &Option<String>,
) -> Option<Value> {
    let mut arr = match telecom {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    for (system, value) in [("phone", phone), ("email", email)] {
        let at = arr
            .iter()
            .position(|c| str_of(Some(c), "system") == Some(system));
        match (at, value) {
            (Some(i), Some(v)) => {
                if let Some(o) = arr[i].as_object_mut() {
                    o.insert("value".into(), Value::String(v.clone()));
                }
            }
            (Some(i), None) => {
                arr.remove(i);
            }
            (None, Some(v)) => {
                let mut o = Map::new();
                o.insert("system".into(), Value::String(system.into()));
                o.insert("value".into(), Value::String(v.clone()));
                arr.push(Value::Object(o));
            }
            (None, None) => {}
        }
    }
    (!arr.is_empty()).then_some(Value::Array(arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn joined_strings_keep_their_original_array_when_they_still_agree() {
        let mut o = json!({"given": ["Mary Ann", "Lou"]})
            .as_object()
            .unwrap()
            .clone();
        let j = joined(Some(&Value::Object(o.clone())), "given", " ");
        assert_eq!(j.as_deref(), Some("Mary Ann Lou"));
        set_joined(&mut o, "given", " ", &j);
        assert_eq!(o["given"], json!(["Mary Ann", "Lou"]));
        set_joined(&mut o, "given", " ", &Some("Ana Lucía".into()));
        assert_eq!(o["given"], json!(["Ana", "Lucía"]));
    }

    #[test]
    fn telecom_patch_changes_only_the_mapped_entries() {
        let t = json!([{"system": "phone", "value": "1", "use": "home"}, {"system": "fax", "value": "9"}]);
        let (p, e) = telecom_project(Some(&t));
        assert_eq!((p.as_deref(), e), (Some("1"), None));
        let patched = telecom_patch(Some(t), &Some("2".into()), &Some("a@b.c".into())).unwrap();
        assert_eq!(
            patched,
            json!([{"system": "phone", "value": "2", "use": "home"}, {"system": "fax", "value": "9"}, {"system": "email", "value": "a@b.c"}])
        );
        assert_eq!(telecom_patch(None, &None, &None), None);
    }

    #[test]
    fn ordered_puts_known_keys_first_with_their_primitive_extensions() {
        let order: Vec<String> = ["resourceType", "id", "birthDate"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = json!({"zzz": 1, "_birthDate": {}, "birthDate": "2000", "resourceType": "Patient"});
        let keys: Vec<String> = ordered(o.as_object().unwrap().clone(), &order)
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["resourceType", "birthDate", "_birthDate", "zzz"]);
    }
}

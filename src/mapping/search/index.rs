//! The search index rows a FHIR write keeps (`search_strings`, `search_quantities`): names,
//! codes, references and meta, rewritten with the resource.

use super::*;
use serde_json::Value;

/// Rewrites the `_tag`, `_security` and `_profile` index rows of a resource from its `meta`,
/// and its `identifier` rows when the mapping declares [`CLINICAL_IDENTIFIER`].
pub async fn index_meta(
    tx: &mut crate::store::Tx,
    resource_type: &str,
    params: &[SearchParam],
    row_id: uuid::Uuid,
    resource: &serde_json::Value,
) -> Result<(), crate::store::StoreError> {
    let identifiers = params
        .iter()
        .any(|p| p.name == "identifier" && matches!(p.target, Target::IndexToken));
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM search_strings WHERE row_id = ? AND resource_type = ? AND param IN ('_tag', '_security', '_profile', 'identifier')",
            &[row_id.into(), resource_type.into()],
        )
        .await?;
    }
    let meta = resource.get("meta");
    let list = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut rows: Vec<(&str, String, String)> = Vec::new();
    for (param, key) in [("_tag", "tag"), ("_security", "security")] {
        for c in list(key) {
            if let Some(code) = c.get("code").and_then(serde_json::Value::as_str) {
                let system = c.get("system").and_then(serde_json::Value::as_str);
                rows.push((
                    param,
                    system.unwrap_or_default().to_owned(),
                    code.to_owned(),
                ));
            }
        }
    }
    if identifiers {
        if let Some(ids) = resource
            .get("identifier")
            .and_then(serde_json::Value::as_array)
        {
            for i in ids {
                if let Some(value) = i.get("value").and_then(serde_json::Value::as_str) {
                    let system = i.get("system").and_then(serde_json::Value::as_str);
                    rows.push((
                        "identifier",
                        system.unwrap_or_default().to_owned(),
                        value.to_owned(),
                    ));
                }
            }
        }
    }
    for p in list("profile") {
        if let Some(url) = p.as_str() {
            rows.push(("_profile", String::new(), url.to_owned()));
        }
    }
    rows.sort();
    rows.dedup();
    for (param, value, exact) in rows {
        tx.insert_detached(
            "search_strings",
            &STRING_ROW,
            &[
                resource_type.into(),
                row_id.into(),
                param.into(),
                value.into(),
                exact.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The columns of a row of the `search_strings` index.
pub const STRING_ROW: [&str; 5] = ["resource_type", "row_id", "param", "value", "exact"];

/// The columns of a row of the `search_quantities` index.
pub const QUANTITY_ROW: [&str; 8] = [
    "resource_type",
    "row_id",
    "param",
    "code_system",
    "code",
    "value",
    "unit_system",
    "unit_code",
];

/// Rewrites the `search_strings` rows of a resource's names (`name`, `family`, `given`).
pub async fn index_names(
    tx: &mut crate::store::Tx,
    resource_type: &'static str,
    row_id: uuid::Uuid,
    resource: &serde_json::Value,
) -> Result<(), crate::store::StoreError> {
    index(tx, resource_type, row_id, resource, true, &[]).await
}

/// Rewrites the index rows of a resource: its names (when `names`), and for each
/// `(parameter, element)` of `codes` the codes of that top-level element (a code or an array of
/// codes), which the parameter then finds exactly.
pub async fn index(
    tx: &mut crate::store::Tx,
    resource_type: &'static str,
    row_id: uuid::Uuid,
    resource: &serde_json::Value,
    names: bool,
    codes: &[(&'static str, &'static str)],
) -> Result<(), crate::store::StoreError> {
    if !tx.is_new(row_id) {
        tx.queue(
            "DELETE FROM search_strings WHERE row_id = ? AND resource_type = ?",
            &[row_id.into(), resource_type.into()],
        )
        .await?;
    }
    let mut rows = if names {
        name_index(resource)
    } else {
        Vec::new()
    };
    for (param, key) in codes {
        let values = match resource.get(*key) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => vec![],
        };
        rows.extend(values.into_iter().map(|v| (*param, v)));
    }
    for (param, value) in rows {
        tx.insert_detached(
            "search_strings",
            &STRING_ROW,
            &[
                resource_type.into(),
                row_id.into(),
                param.into(),
                normalize(&value).into(),
                value.into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The (parameter, value) pairs of the name index: every part of every name, address and
/// telecom.
pub(super) fn name_index(resource: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for n in items(resource, "name") {
        names(n, &mut out);
    }
    for a in items(resource, "address") {
        address(a, &mut out);
    }
    for t in items(resource, "telecom") {
        if let Some(v) = t.get("value").and_then(Value::as_str) {
            out.push(("telecom", v.to_owned()));
            match t.get("system").and_then(Value::as_str) {
                Some("phone") => out.push(("phone", v.to_owned())),
                Some("email") => out.push(("email", v.to_owned())),
                _ => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The items of an array element (none when it is absent or not an array).
fn items<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The strings of an element that is a string or an array of them.
fn strings(v: &Value, k: &str) -> Vec<String> {
    match v.get(k) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    }
}

/// The index pairs of a HumanName.
fn names(n: &Value, out: &mut Vec<(&'static str, String)>) {
    for f in strings(n, "family") {
        out.push(("family", f.clone()));
        out.push(("name", f));
    }
    for g in strings(n, "given") {
        out.push(("given", g.clone()));
        out.push(("name", g));
    }
    for k in ["prefix", "suffix", "text"] {
        for s in strings(n, k) {
            out.push(("name", s));
        }
    }
}

/// The index pairs of an Address.
fn address(a: &Value, out: &mut Vec<(&'static str, String)>) {
    let text = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
    for (k, param) in [
        ("city", "address-city"),
        ("state", "address-state"),
        ("postalCode", "address-postalcode"),
        ("country", "address-country"),
    ] {
        if let Some(v) = text(k) {
            out.push((param, v.clone()));
            out.push(("address", v));
        }
    }
    for k in ["district", "text"] {
        if let Some(v) = text(k) {
            out.push(("address", v));
        }
    }
    for line in items(a, "line").iter().filter_map(Value::as_str) {
        out.push(("address", line.to_owned()));
    }
}

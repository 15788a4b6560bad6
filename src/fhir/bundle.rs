//! Bundle builders for search results and histories.

use serde_json::{json, Map, Value};

/// A link of a Bundle (`self`, `next`, `previous`...).
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

/// A resource in a Bundle entry: a JSON value, or JSON text served as it is (the stored
/// rendering of a version, spliced into the Bundle without being parsed and written again).
pub enum EntryResource {
    Json(Value),
    Text(String),
}

impl EntryResource {
    /// The resource as a JSON value, parsing its text if need be (to change it).
    pub fn json_mut(&mut self) -> &mut Value {
        if let EntryResource::Text(t) = self {
            let v = serde_json::from_str(t).unwrap_or(Value::Null);
            *self = EntryResource::Json(v);
        }
        match self {
            EntryResource::Json(v) => v,
            EntryResource::Text(_) => unreachable!("converted above"),
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            EntryResource::Json(v) => out.push_str(&v.to_string()),
            EntryResource::Text(t) => out.push_str(t),
        }
    }
}

/// An entry of a searchset Bundle.
pub struct SearchEntry {
    pub full_url: String,
    pub resource: EntryResource,
    /// `match` or `include`.
    pub mode: &'static str,
}

fn links_json(links: &[Link]) -> Value {
    Value::Array(
        links
            .iter()
            .map(|l| json!({"relation": l.relation, "url": l.url}))
            .collect(),
    )
}

fn header(kind: &str, total: Option<i64>, links: &[Link]) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert("resourceType".into(), json!("Bundle"));
    b.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    b.insert(
        "meta".into(),
        json!({"lastUpdated": super::instant(&chrono::Utc::now())}),
    );
    b.insert("type".into(), json!(kind));
    if let Some(t) = total {
        b.insert("total".into(), json!(t));
    }
    if !links.is_empty() {
        b.insert("link".into(), links_json(links));
    }
    b
}

/// A `searchset` Bundle, as JSON text.
pub fn searchset(total: Option<i64>, links: &[Link], entries: Vec<SearchEntry>) -> String {
    let mut out = Value::Object(header("searchset", total, links)).to_string();
    if entries.is_empty() {
        return out;
    }
    // The header's closing brace gives way to the entries.
    out.pop();
    out.push_str(",\"entry\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"fullUrl\":");
        out.push_str(&Value::String(e.full_url.clone()).to_string());
        out.push_str(",\"resource\":");
        e.resource.write(&mut out);
        out.push_str(",\"search\":{\"mode\":");
        out.push_str(&Value::String(e.mode.to_owned()).to_string());
        out.push_str("}}");
    }
    out.push_str("]}");
    out
}

/// One version in a `history` Bundle.
pub struct HistoryEntry {
    pub full_url: String,
    /// Absent for a delete.
    pub resource: Option<Value>,
    pub method: String,
    pub request_url: String,
    pub status: &'static str,
    pub etag: String,
    pub last_modified: String,
}

/// A `history` Bundle, newest first.
pub fn history(total: Option<i64>, links: &[Link], entries: Vec<HistoryEntry>) -> Value {
    let mut b = header("history", total, links);
    if !entries.is_empty() {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|e| {
                let mut entry = Map::new();
                entry.insert("fullUrl".into(), json!(e.full_url));
                if let Some(r) = e.resource {
                    entry.insert("resource".into(), r);
                }
                entry.insert(
                    "request".into(),
                    json!({"method": e.method, "url": e.request_url}),
                );
                entry.insert(
                    "response".into(),
                    json!({"status": e.status, "etag": e.etag, "lastModified": e.last_modified}),
                );
                Value::Object(entry)
            })
            .collect();
        b.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searchset_text_splices_stored_renderings_and_values_alike() {
        let text = searchset(
            Some(2),
            &[Link {
                relation: "self",
                url: "http://x/fhir/Patient?name=\"a\"".into(),
            }],
            vec![
                SearchEntry {
                    full_url: "http://x/fhir/Patient/a".into(),
                    resource: EntryResource::Text(
                        r#"{"resourceType":"Patient","id":"a","birthDate":"1970"}"#.into(),
                    ),
                    mode: "match",
                },
                SearchEntry {
                    full_url: "http://x/fhir/Patient/b".into(),
                    resource: EntryResource::Json(json!({"resourceType": "Patient", "id": "b"})),
                    mode: "include",
                },
            ],
        );
        let b: Value = serde_json::from_str(&text).expect("the Bundle is JSON");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 2);
        assert_eq!(b["link"][0]["url"], "http://x/fhir/Patient?name=\"a\"");
        assert_eq!(
            b["entry"],
            json!([
                {"fullUrl": "http://x/fhir/Patient/a",
                 "resource": {"resourceType": "Patient", "id": "a", "birthDate": "1970"},
                 "search": {"mode": "match"}},
                {"fullUrl": "http://x/fhir/Patient/b",
                 "resource": {"resourceType": "Patient", "id": "b"},
                 "search": {"mode": "include"}}
            ])
        );
        let empty: Value = serde_json::from_str(&searchset(Some(0), &[], vec![])).unwrap();
        assert_eq!(empty["total"], 0);
        assert!(empty.get("entry").is_none());
    }
}

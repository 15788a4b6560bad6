//! Bundle builders for search results and histories.

use serde_json::{json, Map, Value};

/// A link of a Bundle (`self`, `next`, `previous`...).
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

/// An entry of a searchset Bundle.
pub struct SearchEntry {
    pub full_url: String,
    pub resource: Value,
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

/// A `searchset` Bundle.
pub fn searchset(total: Option<i64>, links: &[Link], entries: Vec<SearchEntry>) -> Value {
    let mut b = header("searchset", total, links);
    if !entries.is_empty() {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|e| {
                json!({
                    "fullUrl": e.full_url,
                    "resource": e.resource,
                    "search": {"mode": e.mode},
                })
            })
            .collect();
        b.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(b)
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

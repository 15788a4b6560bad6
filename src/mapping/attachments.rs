//! DiagnosticReport.presentedForm ⇄ file_attachments: each attachment with content (`data`) or a
//! location (`url`) is a file of the report's medical test. The element as sent stays in
//! fhir_extra and is served while the report's files are still the ones it names (same content,
//! by SHA-256, or same location, in the same order); once the clinic attaches, replaces or removes
//! a file, presentedForm is rebuilt from the files.

use super::MapError;
use crate::fhir::{Issue, IssueType};
use crate::store::{placeholders, Arg, Conn, StoreError, Tx};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What identifies a file: the SHA-256 of its content, or its location.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Content(String),
    Location(String),
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The decoded content of an Attachment (FHIR base64Binary may hold whitespace).
fn content(a: &Value) -> Option<Result<Vec<u8>, ()>> {
    let data = a.get("data")?.as_str()?;
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    Some(B64.decode(clean).map_err(|_| ()))
}

fn key_of(a: &Value) -> Option<Key> {
    match content(a) {
        Some(Ok(bytes)) => Some(Key::Content(sha256_hex(&bytes))),
        Some(Err(())) => None,
        None => a
            .get("url")
            .and_then(Value::as_str)
            .map(|u| Key::Location(u.to_owned())),
    }
}

/// One live file of a report, as stored (its content is read only when it is served).
struct File {
    id: Uuid,
    key: Key,
    position: i64,
    has_content: bool,
    attachment: Map<String, Value>,
}

async fn files(
    conn: &mut Conn<'_>,
    reports: &[Uuid],
) -> Result<HashMap<Uuid, Vec<File>>, StoreError> {
    let mut out: HashMap<Uuid, Vec<File>> = HashMap::new();
    if reports.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Arg> = reports.iter().map(|u| Arg::Uuid(*u)).collect();
    let rows = conn
        .fetch_all(
            &format!(
                "SELECT id, medical_test_id, file_name, content_type, size_bytes, sha256, storage_path, fhir_extra, created_at, \
                 (content IS NOT NULL) AS has_content, CASE WHEN sha256 IS NULL THEN content END AS unhashed \
                 FROM file_attachments WHERE medical_test_id IN ({}) AND deleted_at IS NULL ORDER BY created_at, id",
                placeholders(ids.len())
            ),
            &ids,
        )
        .await?;
    for r in rows {
        let has_content = r.bool("has_content")?.unwrap_or(false);
        let path = r.text("storage_path")?;
        let key = match (has_content, &path) {
            // The clinic may leave sha256 empty: the content is hashed here then.
            (true, _) => Key::Content(match r.text("sha256")? {
                Some(h) => h,
                None => sha256_hex(&r.bytes("unhashed")?.unwrap_or_default()),
            }),
            (false, Some(p)) => Key::Location(p.clone()),
            (false, None) => continue,
        };
        let mut a = Map::new();
        if let Some(ct) = r.text("content_type")? {
            a.insert("contentType".into(), Value::String(ct));
        }
        if let Some(p) = path {
            a.insert("url".into(), Value::String(p));
        }
        if let Some(n) = r.opt_int("size_bytes")? {
            a.insert("size".into(), json!(n));
        }
        if let Some(t) = r.text("file_name")? {
            a.insert("title".into(), Value::String(t));
        }
        let position = r
            .json("fhir_extra")?
            .and_then(|e| e.get("position").and_then(Value::as_i64))
            .unwrap_or(i64::MAX);
        out.entry(r.uuid("medical_test_id")?)
            .or_default()
            .push(File {
                id: r.uuid("id")?,
                key,
                position,
                has_content,
                attachment: a,
            });
    }
    for list in out.values_mut() {
        // Stable: files the clinic attached (no position) follow, oldest first.
        list.sort_by_key(|f| f.position);
    }
    Ok(out)
}

/// The contents of the live files of these reports, by file id.
async fn file_contents(
    conn: &mut Conn<'_>,
    reports: &[Uuid],
) -> Result<HashMap<Uuid, Vec<u8>>, StoreError> {
    let ids: Vec<Arg> = reports.iter().map(|u| Arg::Uuid(*u)).collect();
    let mut out = HashMap::new();
    for r in conn
        .fetch_all(
            &format!(
                "SELECT id, content FROM file_attachments WHERE medical_test_id IN ({}) AND deleted_at IS NULL AND content IS NOT NULL",
                placeholders(ids.len())
            ),
            &ids,
        )
        .await?
    {
        out.insert(r.uuid("id")?, r.bytes("content")?.unwrap_or_default());
    }
    Ok(out)
}

/// Stores the report's presentedForm as its files: files still named are kept, new ones added,
/// the others soft-deleted.
///
/// `owner` is the report's patient and encounter when the caller has just written them (its
/// row's patient_id and consultation_id); otherwise each new file reads them from the row.
pub async fn store(
    tx: &mut Tx,
    report: Uuid,
    owner: Option<(Arg, Arg)>,
    resource: &Value,
) -> Result<(), MapError> {
    let sent: Vec<Value> = resource
        .get("presentedForm")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let issues: Vec<Issue> = sent
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(content(a), Some(Err(()))))
        .map(|(i, _)| {
            Issue::error(IssueType::Value, "the attachment's data is not base64")
                .at(format!("DiagnosticReport.presentedForm[{i}].data"))
        })
        .collect();
    if !issues.is_empty() {
        return Err(MapError::Unprocessable(issues));
    }
    // A report this transaction created has no files yet.
    let mut existing = if tx.is_new(report) {
        Vec::new()
    } else {
        files(&mut Conn::Tx(tx), &[report])
            .await?
            .remove(&report)
            .unwrap_or_default()
    };
    for (i, a) in sent.iter().enumerate() {
        let Some(key) = key_of(a) else { continue };
        if let Some(at) = existing.iter().position(|f| f.key == key) {
            let f = existing.remove(at);
            if f.position != i as i64 {
                tx.queue(
                    "UPDATE file_attachments SET fhir_extra = ? WHERE id = ?",
                    &[Arg::Json(json!({"position": i})), f.id.into()],
                )
                .await?;
            }
            continue;
        }
        add(tx, report, &owner, file_args(a, i)).await?;
    }
    for f in existing {
        tx.queue(
            &format!(
                "UPDATE file_attachments SET deleted_at = {} WHERE id = ?",
                tx.dialect().now()
            ),
            &[f.id.into()],
        )
        .await?;
    }
    Ok(())
}

/// The columns of a new file from file_name on, for attachment `a` at `position`.
fn file_args(a: &Value, position: usize) -> Vec<Arg> {
    let bytes = content(a).and_then(Result::ok);
    let size = bytes
        .as_ref()
        .map(|b| b.len() as i64)
        .or_else(|| a.get("size").and_then(Value::as_i64));
    let sha = bytes.as_deref().map(sha256_hex);
    let s = |k: &str| Arg::Text(a.get(k).and_then(Value::as_str).map(str::to_owned));
    vec![
        s("title"),
        s("contentType"),
        Arg::Int(size),
        Arg::Text(sha),
        s("url"),
        Arg::Bytes(bytes),
        Arg::Json(json!({"position": position})),
    ]
}

/// Adds a file (`file`: its columns from file_name on) to `report`.
async fn add(
    tx: &mut Tx,
    report: Uuid,
    owner: &Option<(Arg, Arg)>,
    file: Vec<Arg>,
) -> Result<(), StoreError> {
    match owner {
        // A plain INSERT of values: it goes with the other rows of its table (see
        // store::arrange).
        Some((patient, encounter)) => {
            let mut args = vec![
                Uuid::new_v4().into(),
                patient.clone(),
                encounter.clone(),
                report.into(),
            ];
            args.extend(file);
            tx.insert(
                "file_attachments",
                &[
                    "id",
                    "patient_id",
                    "consultation_id",
                    "medical_test_id",
                    "file_name",
                    "content_type",
                    "size_bytes",
                    "sha256",
                    "storage_path",
                    "content",
                    "fhir_extra",
                ],
                &args,
            )
            .await
        }
        // The file belongs to the report's patient and encounter, read from its row by the
        // INSERT itself (no round trip).
        None => {
            let mut args = vec![Uuid::new_v4().into()];
            args.extend(file);
            args.push(report.into());
            tx.queue(
                "INSERT INTO file_attachments (id, patient_id, consultation_id, medical_test_id, file_name, content_type, size_bytes, sha256, storage_path, content, fhir_extra) \
                 SELECT ?, r.patient_id, r.consultation_id, r.id, ?, ?, ?, ?, ?, ?, ? FROM medical_tests r WHERE r.id = ?",
                &args,
            )
            .await
        }
    }
}

/// Serves presentedForm: as sent while the files agree with it, else rebuilt from the files.
pub async fn apply(conn: &mut Conn<'_>, loaded: &mut [(Uuid, Value)]) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = loaded.iter().map(|(id, _)| *id).collect();
    let mut by_report = files(conn, &ids).await?;
    let mut contents: Option<HashMap<Uuid, Vec<u8>>> = None;
    for (id, resource) in loaded.iter_mut() {
        let stored = by_report.remove(id).unwrap_or_default();
        let kept = resource
            .get("presentedForm")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kept_keys: Vec<Key> = kept.iter().filter_map(key_of).collect();
        let stored_keys: Vec<Key> = stored.iter().map(|f| f.key.clone()).collect();
        if kept_keys == stored_keys {
            continue;
        }
        let Some(obj) = resource.as_object_mut() else {
            continue;
        };
        // Attachments without content or location (a title only) stay as sent.
        let mut form: Vec<Value> = kept
            .into_iter()
            .filter(|a| a.get("data").is_none() && a.get("url").is_none())
            .collect();
        for f in stored {
            let mut a = f.attachment;
            if f.has_content {
                if contents.is_none() {
                    contents = Some(file_contents(conn, &ids).await?);
                }
                if let Some(b) = contents.as_ref().and_then(|c| c.get(&f.id)) {
                    a.insert("data".into(), Value::String(B64.encode(b)));
                }
            }
            // Elements in the order of the Attachment definition.
            let order = [
                "contentType",
                "language",
                "data",
                "url",
                "size",
                "hash",
                "title",
                "creation",
            ];
            let a = super::fields::ordered(a, &order.map(String::from));
            form.push(Value::Object(a));
        }
        if form.is_empty() {
            obj.remove("presentedForm");
        } else {
            obj.insert("presentedForm".into(), Value::Array(form));
        }
        let order = super::element_order("DiagnosticReport");
        *resource = Value::Object(super::fields::ordered(std::mem::take(obj), &order));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_are_known_by_content_or_location() {
        let a = json!({"contentType": "text/plain", "data": "aGVs\nbG8="});
        assert_eq!(key_of(&a), Some(Key::Content(sha256_hex(b"hello"))));
        assert_eq!(
            key_of(&json!({"url": "http://x/y.pdf"})),
            Some(Key::Location("http://x/y.pdf".into()))
        );
        assert_eq!(key_of(&json!({"data": "!!"})), None);
        assert_eq!(key_of(&json!({"title": "t"})), None);
    }
}

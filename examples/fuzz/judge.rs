//! What is a finding, and the file that records one.

use super::generate::Input;
use super::raw::{Answer, Outcome};
use base64::Engine;
use serde_json::{json, Value};

/// The first issue code of an answer's OperationOutcome, if it is one served as FHIR JSON.
pub fn outcome_code(a: &Answer) -> Result<String, String> {
    let content_type = a.header("content-type").unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/fhir+json")
    {
        return Err(format!("Content-Type '{content_type}'"));
    }
    let body: Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("a body that is not JSON ({e})"))?;
    if body["resourceType"] != "OperationOutcome"
        || body["issue"].as_array().is_none_or(|i| i.is_empty())
    {
        return Err(format!(
            "a {} that is not an OperationOutcome with issues",
            body["resourceType"]
        ));
    }
    Ok(body["issue"][0]["code"].as_str().unwrap_or("").to_owned())
}

/// A 503 OperationOutcome `timeout`: a request the server stopped at a time limit.
pub fn is_timeout(a: &Answer) -> bool {
    a.status == 503 && outcome_code(a).is_ok_and(|c| c == "timeout")
}

/// Why the outcome of `input` is a finding (empty if it is not one).
pub fn judge(input: &Input, outcome: &Outcome) -> Vec<String> {
    let a = match outcome {
        Outcome::Hang(after) => return vec![format!("no answer after {} s", after.as_secs())],
        Outcome::Closed(why) => return vec![format!("no answer: {why}")],
        Outcome::Answer(a) => a,
    };
    let mut reasons = vec![];
    if a.header("x-request-id").is_none() {
        reasons.push(format!("{} without X-Request-ID", a.status));
    }
    if a.status >= 400 && input.method != "HEAD" {
        if let Err(why) = outcome_code(a) {
            reasons.push(format!("{} answer with {why}", a.status));
        }
    }
    if a.status >= 500 && !is_timeout(a) {
        reasons.push(format!("{} answer", a.status));
    }
    // The entries of a batch answer each their own request.
    let head = &a.body[..a.body.len().min(200)];
    if a.status < 300 && head.windows(15).any(|w| w == b"batch-response\"") {
        if let Ok(bundle) = serde_json::from_slice::<Value>(&a.body) {
            for (i, e) in bundle["entry"].as_array().into_iter().flatten().enumerate() {
                let status = e["response"]["status"].as_str().unwrap_or("");
                let timeout = e["response"]["outcome"]["issue"][0]["code"] == "timeout";
                if status.starts_with('5') && !(status.starts_with("503") && timeout) {
                    reasons.push(format!(
                        "entry {i} of the {} answered {status}",
                        bundle["type"]
                    ));
                }
            }
        }
    }
    reasons
}

/// Text or base64 of `bytes`, under `name` or `name_base64`.
fn bytes_field(map: &mut serde_json::Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.insert(name.into(), json!(text)),
        Err(_) => map.insert(
            format!("{name}_base64"),
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    };
}

/// The finding file of `input`.
pub fn record(
    seed: u64,
    input: &Input,
    outcome: &Outcome,
    reasons: &[String],
    transport: &str,
    worker: usize,
) -> String {
    let mut request = serde_json::Map::new();
    if let Some(raw) = &input.raw {
        bytes_field(&mut request, "raw", raw);
    } else {
        request.insert("method".into(), json!(input.method));
        bytes_field(&mut request, "target", &input.target);
        let headers: Vec<Value> = input
            .headers
            .iter()
            .map(|(n, v)| json!([n, String::from_utf8_lossy(v)]))
            .collect();
        request.insert("headers".into(), json!(headers));
        bytes_field(&mut request, "body", &input.body);
    }
    let mut answer = serde_json::Map::new();
    match outcome {
        Outcome::Answer(a) => {
            answer.insert("status".into(), json!(a.status));
            answer.insert("after_ms".into(), json!(a.elapsed.as_millis() as u64));
            answer.insert("headers".into(), json!(a.headers));
            bytes_field(&mut answer, "body", &a.body);
        }
        Outcome::Hang(after) => {
            answer.insert("none_after_s".into(), json!(after.as_secs()));
        }
        Outcome::Closed(why) => {
            answer.insert("closed".into(), json!(why));
        }
    }
    let record = json!({
        "reasons": reasons,
        "generator": input.label,
        "seed": seed,
        "worker": worker,
        "transport": transport,
        "request": request,
        "answer": answer,
    });
    serde_json::to_string_pretty(&record).unwrap_or_default()
}

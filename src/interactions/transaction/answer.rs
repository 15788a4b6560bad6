//! A transaction's or batch's answers: an entry of the response Bundle per request entry.

use super::*;

/// The answers of a transaction's writes (see [`Fhir::transaction_open`]).
pub(crate) struct Answers(pub(super) Vec<Option<Answer>>);

impl Answers {
    /// For each write: the resource type and whether it was created (else updated, or found
    /// unchanged).
    pub(crate) fn written(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        self.0.iter().flatten().filter_map(|a| {
            a.version
                .as_ref()
                .map(|v| (v.resource_type, a.status.starts_with("201")))
        })
    }
}

/// The response of one entry.
pub(super) struct Answer {
    pub(super) status: &'static str,
    pub(super) version: Option<Version>,
    /// A resource to return (a read or search, or a written one when asked for).
    pub(super) body: Option<Value>,
    pub(super) outcome: Option<Value>,
}

impl Answer {
    pub(super) fn written(w: Written, representation: bool) -> Answer {
        let status = if w.created { "201 Created" } else { "200 OK" };
        Answer::version(status, w.version, representation)
    }

    /// A delete's answer.
    pub(super) fn deleted() -> Answer {
        Answer {
            status: "204 No Content",
            version: None,
            body: None,
            outcome: None,
        }
    }

    pub(super) fn version(status: &'static str, mut v: Version, representation: bool) -> Answer {
        let body = if representation {
            v.resource
                .take()
                .or_else(|| v.raw.take().and_then(|t| serde_json::from_str(&t).ok()))
        } else {
            v.resource = None;
            v.raw = None;
            None
        };
        Answer {
            status,
            version: Some(v),
            body,
            outcome: None,
        }
    }

    /// The answer of an entry that failed; a failure of the server is logged (in the request's
    /// span) and its outcome names the request.
    pub(super) fn failed(e: &Error, request_id: &str) -> Answer {
        if let Error::Internal(inner) = e {
            tracing::error!(error = ?inner, "bundle entry failed");
        }
        Answer {
            status: status_line(e),
            version: None,
            body: None,
            outcome: Some(e.outcome(request_id)),
        }
    }

    pub(super) fn to_json(&self, base_url: &str) -> Value {
        let mut response = Map::new();
        response.insert("status".into(), json!(self.status));
        if let Some(v) = &self.version {
            response.insert(
                "location".into(),
                json!(format!(
                    "{}/{}/_history/{}",
                    v.resource_type, v.id, v.version_id
                )),
            );
            response.insert("etag".into(), json!(format!("W/\"{}\"", v.version_id)));
            response.insert(
                "lastModified".into(),
                json!(crate::fhir::instant(&v.last_updated)),
            );
        }
        if let Some(o) = &self.outcome {
            response.insert("outcome".into(), o.clone());
        }
        let mut entry = Map::new();
        if let Some(v) = &self.version {
            entry.insert(
                "fullUrl".into(),
                json!(format!("{base_url}/{}/{}", v.resource_type, v.id)),
            );
        }
        if let Some(b) = &self.body {
            entry.insert("resource".into(), b.clone());
        }
        entry.insert("response".into(), Value::Object(response));
        Value::Object(entry)
    }
}

pub(super) fn status_line(e: &Error) -> &'static str {
    match e.status().as_u16() {
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        406 => "406 Not Acceptable",
        408 => "408 Request Timeout",
        409 => "409 Conflict",
        410 => "410 Gone",
        412 => "412 Precondition Failed",
        413 => "413 Payload Too Large",
        414 => "414 URI Too Long",
        415 => "415 Unsupported Media Type",
        422 => "422 Unprocessable Entity",
        431 => "431 Request Header Fields Too Large",
        503 => "503 Service Unavailable",
        _ => "500 Internal Server Error",
    }
}

/// Says which entry an error belongs to: its messages name the entry (index and fullUrl), and
/// element paths become paths inside the Bundle.
pub(super) fn at_entry(e: Error, index: usize, full_url: Option<&str>) -> Error {
    let who = match full_url {
        Some(u) => format!("Bundle.entry[{index}] (fullUrl {})", u.escape_default()),
        None => format!("Bundle.entry[{index}]"),
    };
    let name = |m: String| format!("{who}: {m}");
    let issues = |issues: Vec<Issue>| {
        issues
            .into_iter()
            .map(|mut i| {
                i.diagnostics = name(std::mem::take(&mut i.diagnostics));
                i.expression = Some(match i.expression.take() {
                    Some(path) if path.starts_with("Bundle.") => path,
                    Some(path) => match path.split_once('.') {
                        Some((_, rest)) => format!("Bundle.entry[{index}].resource.{rest}"),
                        None => format!("Bundle.entry[{index}].resource"),
                    },
                    None => format!("Bundle.entry[{index}]"),
                });
                i
            })
            .collect()
    };
    match e {
        Error::BadRequest(i) => Error::BadRequest(issues(i)),
        Error::Unprocessable(i) => Error::Unprocessable(issues(i)),
        Error::NotFound(m) => Error::NotFound(name(m)),
        Error::Forbidden(m) => Error::Forbidden(name(m)),
        Error::Conflict(m) => Error::Conflict(name(m)),
        Error::Gone(m) => Error::Gone(name(m)),
        Error::PreconditionFailed(m) => Error::PreconditionFailed(name(m)),
        Error::UnsupportedMediaType(m) => Error::UnsupportedMediaType(name(m)),
        Error::NotAcceptable(m) => Error::NotAcceptable(name(m)),
        other => other,
    }
}

pub(super) fn response_bundle(kind: &str, answers: Vec<Option<Answer>>, base_url: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "type": kind,
        "entry": answers
            .iter()
            .map(|a| a.as_ref().map(|a| a.to_json(base_url)).unwrap_or_else(|| json!({"response": {"status": "200 OK"}})))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_entry_names_its_request_and_keeps_the_error_inside() {
        let e = at_entry(
            Error::Internal(anyhow::anyhow!("connection reset: secret detail")),
            3,
            None,
        );
        let a = Answer::failed(&e, "5f0c2a1e-request");
        assert_eq!(a.status, "500 Internal Server Error");
        let text = a.outcome.unwrap().to_string();
        assert!(text.contains("(request id 5f0c2a1e-request)"), "{text}");
        assert!(!text.contains("secret detail"), "{text}");
    }

    #[test]
    fn an_entry_refused_answers_the_status_it_would_alone() {
        for e in [
            Error::Forbidden("the access token does not allow it".into()),
            Error::NotAcceptable("no such format".into()),
            Error::RequestTimeout,
            Error::TimedOut,
            Error::UriTooLong(9000),
        ] {
            let alone = e.status().as_u16().to_string();
            let a = Answer::failed(&at_entry(e, 0, None), "r");
            assert!(a.status.starts_with(&alone), "{alone}: {}", a.status);
        }
    }
}

//! Content negotiation (Accept, `_format`, `_pretty`), the Prefer header, ETags and the
//! construction of FHIR responses.

use crate::error::Error;
use crate::fhir::IssueType;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const PLAIN_JSON: &str = "application/json; charset=utf-8";

/// How to write the response body.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub pretty: bool,
    pub content_type: &'static str,
}

fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

const JSON_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/json+fhir",
    "application/json",
];

/// Decides the response format from `_format`, `_pretty` and Accept.
pub fn negotiate(headers: &HeaderMap, query: &[(String, String)]) -> Result<Format, Error> {
    let mut pretty = false;
    let mut forced = None;
    for (k, v) in query {
        match k.as_str() {
            "_pretty" => pretty = v == "true",
            "_format" => {
                let t = media_type(v);
                forced = Some(match t.as_str() {
                    "json" | "application/fhir+json" | "application/json+fhir" => FHIR_JSON,
                    "application/json" => PLAIN_JSON,
                    _ => {
                        return Err(Error::NotAcceptable(format!(
                            "_format '{}' is not supported: this server speaks JSON only",
                            v.escape_default()
                        )))
                    }
                });
            }
            _ => {}
        }
    }
    if let Some(content_type) = forced {
        return Ok(Format {
            pretty,
            content_type,
        });
    }
    let accept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(',').map(media_type).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect();
    let content_type = if accept.is_empty()
        || accept.iter().any(|t| {
            t == "application/fhir+json"
                || t == "application/json+fhir"
                || t == "*/*"
                || t == "application/*"
        }) {
        FHIR_JSON
    } else if accept.iter().any(|t| t == "application/json") {
        PLAIN_JSON
    } else {
        return Err(Error::NotAcceptable(
            "this server answers in application/fhir+json only".into(),
        ));
    };
    Ok(Format {
        pretty,
        content_type,
    })
}

/// Checks that a request body is declared as FHIR JSON.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Error> {
    let t = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type);
    match t {
        Some(t) if JSON_TYPES.contains(&t.as_str()) => Ok(()),
        Some(t) => Err(Error::UnsupportedMediaType(format!(
            "Content-Type '{}' is not supported; send application/fhir+json",
            t.escape_default()
        ))),
        None => Err(Error::UnsupportedMediaType(
            "a body needs a Content-Type; send application/fhir+json".into(),
        )),
    }
}

/// What `Prefer: return=` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

/// The parts of the Prefer header this server honours.
#[derive(Debug, Clone, Copy)]
pub struct Prefer {
    pub ret: Return,
    /// Whether the client said which `return=` it prefers.
    pub given: bool,
    pub strict: bool,
}

pub fn prefer(headers: &HeaderMap) -> Prefer {
    let mut p = Prefer {
        ret: Return::Representation,
        given: false,
        strict: false,
    };
    for h in headers
        .get_all("prefer")
        .iter()
        .filter_map(|h| h.to_str().ok())
    {
        for part in h.split([',', ';']) {
            match part.trim().replace(' ', "").as_str() {
                "return=minimal" => (p.ret, p.given) = (Return::Minimal, true),
                "return=representation" => (p.ret, p.given) = (Return::Representation, true),
                "return=OperationOutcome" => (p.ret, p.given) = (Return::OperationOutcome, true),
                "handling=strict" => p.strict = true,
                "handling=lenient" => p.strict = false,
                _ => {}
            }
        }
    }
    p
}

/// The version an If-Match header names: `W/"3"` or `"3"`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Error> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Error::bad_request(
                IssueType::Invalid,
                "If-Match must be an ETag such as W/\"3\"",
            )
        })
}

pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\""))
        .unwrap_or(HeaderValue::from_static("W/\"0\""))
}

pub fn last_modified(ts: &DateTime<Utc>) -> HeaderValue {
    HeaderValue::from_str(&http_date(ts))
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// An HTTP date (RFC 9110 §5.6.7, `Sun, 06 Nov 1994 08:49:37 GMT`), written field by field:
/// chrono's `format` reads its pattern again on every call, and every read answers one.
fn http_date(ts: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let two = |out: &mut String, n: u32| {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    let mut out = String::with_capacity(29);
    out.push_str(DAYS[ts.weekday().num_days_from_monday() as usize]);
    out.push_str(", ");
    two(&mut out, ts.day());
    out.push(' ');
    out.push_str(MONTHS[ts.month0() as usize]);
    out.push(' ');
    let year = ts.year().clamp(0, 9999) as u32;
    two(&mut out, year / 100);
    two(&mut out, year % 100);
    out.push(' ');
    two(&mut out, ts.hour());
    out.push(':');
    two(&mut out, ts.minute());
    out.push(':');
    two(&mut out, ts.second());
    out.push_str(" GMT");
    out
}

/// A FHIR JSON response from JSON text already serialised (re-indented if `_pretty`).
pub fn respond_text(
    status: StatusCode,
    text: String,
    format: Format,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    if format.pretty {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            return respond(status, Some(&v), format, extra);
        }
    }
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type),
    );
    *res.status_mut() = status;
    for (k, v) in extra {
        res.headers_mut().insert(k, v);
    }
    res
}

/// A FHIR JSON response.
pub fn respond(
    status: StatusCode,
    body: Option<&Value>,
    format: Format,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    let mut res = match body {
        Some(b) => {
            let text = if format.pretty {
                serde_json::to_string_pretty(b)
            } else {
                serde_json::to_string(b)
            };
            let mut r = text.unwrap_or_default().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type),
            );
            r
        }
        None => ().into_response(),
    };
    *res.status_mut() = status;
    for (k, v) in extra {
        res.headers_mut().insert(k, v);
    }
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_http_date_is_what_the_pattern_writes() {
        use chrono::TimeZone;
        let pattern = "%a, %d %b %Y %H:%M:%S GMT";
        let mut at = chrono::Utc
            .with_ymd_and_hms(1994, 11, 6, 8, 49, 37)
            .unwrap();
        assert_eq!(super::http_date(&at), "Sun, 06 Nov 1994 08:49:37 GMT");
        // Every weekday and month, the ends of days and years, leap days.
        for _ in 0..500 {
            assert_eq!(super::http_date(&at), at.format(pattern).to_string());
            at += chrono::Duration::seconds(86_400 * 3 + 3_599 * 7 + 59);
        }
        let end = chrono::Utc
            .with_ymd_and_hms(2024, 12, 31, 23, 59, 59)
            .unwrap();
        assert_eq!(super::http_date(&end), "Tue, 31 Dec 2024 23:59:59 GMT");
    }

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_formats_are_accepted_and_xml_is_not() {
        let q = |v: &str| vec![("_format".to_owned(), v.to_owned())];
        assert_eq!(
            negotiate(&HeaderMap::new(), &q("json"))
                .unwrap()
                .content_type,
            FHIR_JSON
        );
        assert!(negotiate(&HeaderMap::new(), &q("xml")).is_err());
        let h = headers(&[("accept", "application/json")]);
        assert_eq!(negotiate(&h, &[]).unwrap().content_type, PLAIN_JSON);
        let h = headers(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]);
        assert_eq!(negotiate(&h, &[]).unwrap().content_type, FHIR_JSON);
        assert!(negotiate(&headers(&[("accept", "application/fhir+xml")]), &[]).is_err());
    }

    #[test]
    fn prefer_and_if_match_are_parsed() {
        let p = prefer(&headers(&[("prefer", "return=minimal, handling=strict")]));
        assert_eq!((p.ret, p.strict), (Return::Minimal, true));
        assert_eq!(
            if_match(&headers(&[("if-match", "W/\"3\"")])).unwrap(),
            Some(3)
        );
        assert_eq!(
            if_match(&headers(&[("if-match", "\"12\"")])).unwrap(),
            Some(12)
        );
        assert!(if_match(&headers(&[("if-match", "three")])).is_err());
    }
}

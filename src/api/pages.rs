//! The sign-in, patient picker and consent pages: plain HTML forms that work without
//! JavaScript, with labels on every field, and headers that keep them out of frames
//! (`X-Frame-Options`, `frame-ancestors`), out of caches and from loading anything but their own
//! style sheet. Every form carries its session's CSRF token.

use super::oauth::OAuthAnswer;
use super::words::{t, type_words, Lang};
use crate::auth::consent::{Choice, CATEGORIES};
use crate::auth::scope::{Action, Context};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The pages' style sheet: high contrast, visible focus, readable sizes.
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;font-size:1.05rem;color:#1a1a1a;\
background:#fff;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\
h1{font-size:1.5rem}label{display:block;margin:.75rem 0 .25rem;font-weight:600}\
input[type=email],input[type=password],input[type=search]{width:100%;padding:.5rem;\
font-size:1rem;border:2px solid #555;border-radius:4px;box-sizing:border-box}\
fieldset{border:1px solid #777;border-radius:4px;margin:1rem 0}\
fieldset label{font-weight:400;display:flex;gap:.5rem;align-items:flex-start}\
button{margin:1rem .5rem 0 0;padding:.6rem 1.2rem;font-size:1rem;border-radius:4px;\
border:2px solid #0b5394;background:#0b5394;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#0b5394}\
:focus{outline:3px solid #d35400;outline-offset:2px}\
.error{color:#a00;font-weight:600}ul.patients{list-style:none;padding:0}\
ul.patients li{border-bottom:1px solid #ccc;padding:.5rem 0}";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page, answered with `status`.
pub fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"{}\"></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>",
        lang.code(),
        esc(title),
        "/auth/pages.css",
        esc(title),
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page is the answer, errors too: not an OperationOutcome.
    r.extensions_mut().insert(OAuthAnswer);
    r
}

fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// The sign-in form.
pub fn sign_in(
    lang: Lang,
    app: &str,
    id: &str,
    csrf: &str,
    email: &str,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(t(lang, e))))
        .unwrap_or_default();
    format!(
        "<p>{} <strong>{}</strong>.</p>{error}\
         <form method=\"post\" action=\"/auth/flow/{}/signin\">{}\
         <label for=\"email\">{}</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{}\">\
         <label for=\"password\">{}</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">{}</button></form>",
        esc(t(lang, "sign_in_to")),
        esc(app),
        esc(id),
        csrf_field(csrf),
        esc(t(lang, "email")),
        esc(email),
        esc(t(lang, "password")),
        esc(t(lang, "sign_in")),
    )
}

/// A patient found by the picker: id, name, birth date, identifier.
pub struct Found {
    pub id: String,
    pub name: String,
    pub birth_date: Option<String>,
    pub identifier: Option<String>,
}

/// The patient picker: a search form and, once searched, the patients found.
pub fn picker(lang: Lang, id: &str, csrf: &str, q: &str, found: Option<&[Found]>) -> String {
    let mut out = format!(
        "<p>{}</p><form method=\"get\" action=\"/auth/flow/{}\" role=\"search\">\
         <label for=\"q\">{}</label><input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" required>\
         <button type=\"submit\">{}</button></form>",
        esc(t(lang, "pick_for")),
        esc(id),
        esc(t(lang, "search_patient")),
        esc(q),
        esc(t(lang, "search")),
    );
    match found {
        Some([]) => out.push_str(&format!(
            "<p role=\"status\">{}</p>",
            esc(t(lang, "no_patients"))
        )),
        Some(list) => {
            out.push_str("<ul class=\"patients\">");
            for p in list {
                let about = [
                    p.birth_date
                        .as_ref()
                        .map(|b| format!("{} {}", t(lang, "born"), b)),
                    p.identifier.clone(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · ");
                out.push_str(&format!(
                    "<li><form method=\"post\" action=\"/auth/flow/{}/patient\">{}\
                     <input type=\"hidden\" name=\"patient\" value=\"{}\">\
                     <strong>{}</strong> {} <button type=\"submit\" aria-label=\"{} {}\">{}</button>\
                     </form></li>",
                    esc(id),
                    csrf_field(csrf),
                    esc(&p.id),
                    esc(&p.name),
                    esc(&about),
                    esc(t(lang, "choose")),
                    esc(&p.name),
                    esc(t(lang, "choose")),
                ));
            }
            out.push_str("</ul>");
        }
        None => {}
    }
    out
}

/// What a resource choice allows, in plain words.
fn resource_words(
    lang: Lang,
    resource_type: &str,
    g: &crate::auth::scope::Grant,
    own: bool,
) -> String {
    let verbs: Vec<&str> = [
        (Action::Read, "r"),
        (Action::Search, "s"),
        (Action::Create, "c"),
        (Action::Update, "u"),
        (Action::Delete, "d"),
    ]
    .iter()
    .filter(|(a, _)| g.covers(*a, resource_type))
    .map(|(_, k)| t(lang, k))
    .collect();
    let whose = match g.context {
        // Clinicians belong to no patient's record.
        _ if resource_type == "Practitioner" => String::new(),
        Context::Patient if own => format!(" ({})", t(lang, "own_record")),
        Context::Patient => format!(" ({})", t(lang, "patient_record")),
        _ => format!(" ({})", t(lang, "every_record")),
    };
    let verbs = match verbs.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} {} {last}", rest.join(", "), t(lang, "and")),
        None => String::new(),
    };
    let mut s = format!("{verbs}: {}{whose}", type_words(lang, resource_type));
    if let Some(f) = &g.filter {
        s.push_str(&format!(" [{f}]"));
    }
    capitalised(&s)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The consent form.
pub fn consent(
    lang: Lang,
    app: &str,
    id: &str,
    csrf: &str,
    patient: Option<(&str, bool)>,
    choices: &[Choice],
    narrows: bool,
) -> String {
    // The patient's name, and whether it is the user's own record.
    let own = patient.is_some_and(|(_, own)| own);
    let mut out = format!(
        "<p><strong>{}</strong> {}</p>",
        esc(app),
        esc(t(lang, "asks"))
    );
    if let Some((p, _)) = patient {
        out.push_str(&format!(
            "<p>{}: <strong>{}</strong></p>",
            esc(t(lang, "patient_context")),
            esc(p)
        ));
    }
    out.push_str(&format!(
        "<form method=\"post\" action=\"/auth/flow/{}/consent\">{}<fieldset><legend>{}</legend>",
        esc(id),
        csrf_field(csrf),
        esc(t(lang, "untick"))
    ));
    for (i, c) in choices.iter().enumerate() {
        let words = match c {
            Choice::Resource {
                resource_type,
                grant,
                ..
            } => resource_words(lang, resource_type, grant, own),
            Choice::Identity => t(lang, "identity").to_owned(),
            Choice::Other(s) => t(lang, s).to_owned(),
        };
        out.push_str(&format!(
            "<label for=\"c{i}\"><input id=\"c{i}\" type=\"checkbox\" name=\"allow\" value=\"{}\" checked> {}</label>",
            esc(&c.key()),
            esc(&words)
        ));
    }
    out.push_str("</fieldset>");
    if narrows {
        out.push_str(&format!(
            "<fieldset><legend>{}</legend>",
            esc(t(lang, "categories"))
        ));
        for (i, c) in CATEGORIES.iter().enumerate() {
            out.push_str(&format!(
                "<label for=\"k{i}\"><input id=\"k{i}\" type=\"checkbox\" name=\"category\" value=\"{c}\"> {c}</label>"
            ));
        }
        out.push_str("</fieldset>");
    }
    out.push_str(&format!(
        "<button type=\"submit\" name=\"decision\" value=\"allow\">{}</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">{}</button></form>",
        esc(t(lang, "allow")),
        esc(t(lang, "deny"))
    ));
    out
}

/// A problem that stops the request, shown instead of sending the browser anywhere.
pub fn problem(status: StatusCode, lang: Lang, key: &str) -> Response {
    page(
        status,
        lang,
        t(lang, "problem"),
        &format!("<p role=\"alert\">{}</p>", esc(t(lang, key))),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_escaped() {
        assert_eq!(
            super::esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

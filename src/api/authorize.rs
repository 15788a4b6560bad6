//! `/auth/authorize` (GET and POST) and the pages of the request it starts: the browser
//! goes from the app to the authorize endpoint, which checks the request and keeps it, to
//! `/auth/flow/{id}`, which shows the step the request is at (sign in, pick a patient, consent),
//! and each step's form posts back and returns there, until the consent sends the browser to
//! the app with a code. The request belongs to the browser session that started it (a cookie,
//! HttpOnly, SameSite=Lax, Secure over TLS); every form carries the session's CSRF token.

use super::oauth::auth_base;
use super::pages::{self, page, problem};
use super::words::{t, Lang};
use super::AppState;
use crate::auth::authorize::{
    Problem, Refused, SignIn, ANONYMOUS_SESSION_LIFETIME, REQUEST_LIFETIME, SESSION_LIFETIME,
};
use crate::auth::sessions::{self, Pending, Session};
use crate::auth::users::{self, User};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::collections::HashMap;
use std::net::IpAddr;

/// The session cookie.
const COOKIE: &str = "expediente_session";

/// The address a request came from (set by the server for every connection).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// The session token in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// The Set-Cookie of a session token (Secure when the server is reached over https).
fn set_cookie(token: &str, secure: bool, max_age: i64) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{COOKIE}={token}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A 303 to `to`.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(to) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::BAD_REQUEST,
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.extensions_mut().insert(super::oauth::OAuthAnswer);
    r
}

fn failed(lang: Lang, e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "an authorization page failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        lang,
        t(lang, "problem"),
        "<p role=\"alert\">The server could not answer; try again. / El servidor no pudo responder; inténtelo de nuevo.</p>",
    )
}

fn problem_key(p: Problem) -> &'static str {
    match p {
        Problem::UnknownClient => "UnknownClient",
        Problem::RedirectUri => "RedirectUri",
        Problem::Expired => "Expired",
        Problem::Forged => "Forged",
        Problem::PatientNotVisible => "PatientNotVisible",
    }
}

pub fn show(p: Problem, lang: Lang) -> Response {
    let status = match p {
        Problem::Forged | Problem::PatientNotVisible => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    problem(status, lang, problem_key(p))
}

/// `GET /auth/authorize`.
pub async fn authorize_get(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()).take(40) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    authorize(&state, &headers, params).await
}

/// `POST /auth/authorize` (`authorize-post`).
pub async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match super::oauth::form(&state, &headers, body).await {
        Ok(params) => authorize(&state, &headers, params).await,
        Err(e) => e.into_response(),
    }
}

async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    params: HashMap<String, String>,
) -> Response {
    let lang = Lang::of_browser(headers);
    let base = state.base_url(headers);
    let (_, mut pending) = match state.auth.authorization_request(&params, &base).await {
        Err(e) => return failed(lang, e),
        Ok(Err(Refused::Page(p))) => return show(p, lang),
        Ok(Err(Refused::Redirect(to))) => return see_other(&to),
        Ok(Ok(c)) => c,
    };
    let existing = match cookie(headers) {
        Some(token) => sessions::session(state.auth.db(), &token).await,
        None => Ok(None),
    };
    let (session, new_cookie) = match existing {
        Err(e) => return failed(lang, e.into()),
        Ok(Some(s)) => (s, None),
        Ok(None) => match sessions::open(state.auth.db(), None, ANONYMOUS_SESSION_LIFETIME).await {
            Ok((token, s)) => (s, Some(token)),
            Err(e) => return failed(lang, e),
        },
    };
    pending.session_hash = session.hash;
    if let Err(e) = sessions::add_pending(state.auth.db(), &pending, REQUEST_LIFETIME).await {
        return failed(lang, e.into());
    }
    let mut r = see_other(&format!("{}/flow/{}", auth_path(&base), pending.id));
    if let Some(token) = new_cookie {
        let max_age = SESSION_LIFETIME.as_secs() as i64;
        r.headers_mut().insert(
            header::SET_COOKIE,
            set_cookie(&token, secure(&base), max_age),
        );
    }
    r
}

/// The path of the authorization endpoints (`/auth`).
fn auth_path(base: &str) -> String {
    let auth = auth_base(base);
    reqwest::Url::parse(&auth).map_or_else(|_| "/auth".into(), |u| u.path().to_owned())
}

fn secure(base: &str) -> bool {
    base.starts_with("https://")
}

/// The session and request of a page: the request must be this browser's.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> anyhow::Result<Option<(Session, Pending)>> {
    let Some(token) = cookie(headers) else {
        return Ok(None);
    };
    let db = state.auth.db();
    let Some(session) = sessions::session(db, &token).await? else {
        return Ok(None);
    };
    Ok(sessions::pending(db, id, &session.hash)
        .await?
        .map(|p| (session, p)))
}

/// Whether a form's CSRF token is the session's (compared in constant time).
pub fn csrf_ok(session: &Session, form: &[(String, String)]) -> bool {
    let given = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_bytes());
    let Some(given) = given else { return false };
    let want = session.csrf.as_bytes();
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

/// The language of the pages for `user`: a patient's own preference, else the browser's.
pub async fn lang_for(state: &AppState, headers: &HeaderMap, user: Option<&User>) -> Lang {
    if let Some(u) = user.filter(|u| u.patient.is_some()) {
        if let Ok(Some(tag)) = users::patient_language(state.auth.db(), u.id).await {
            if let Some(l) = Lang::of_tag(&tag) {
                return l;
            }
        }
    }
    Lang::of_browser(headers)
}

/// The signed-in user of a session, if still allowed to sign in.
pub async fn user_of(state: &AppState, session: &Session) -> anyhow::Result<Option<User>> {
    let Some(id) = session.user_id else {
        return Ok(None);
    };
    Ok(users::by_id(state.auth.db(), id)
        .await?
        .filter(|u| u.active))
}

/// `GET /auth/flow/{id}`: the step the request is at.
pub async fn flow(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let browser = Lang::of_browser(&headers);
    let (session, pending) = match current(&state, &headers, &id).await {
        Err(e) => return failed(browser, e),
        Ok(None) => return show(Problem::Expired, browser),
        Ok(Some(c)) => c,
    };
    let query: String = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.chars().take(200).collect())
        .unwrap_or_default();
    match super::consent::step(&state, &headers, &session, &pending, &query).await {
        Ok(r) => r,
        Err(e) => failed(browser, e),
    }
}

/// The sign-in page of a request.
pub fn sign_in_page(
    status: StatusCode,
    lang: Lang,
    app: &str,
    session: &Session,
    id: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    page(
        status,
        lang,
        t(lang, "sign_in"),
        &pages::sign_in(lang, app, id, &session.csrf, email, error),
    )
}

/// `POST /auth/flow/{id}/signin`.
pub async fn sign_in(
    State(state): State<AppState>,
    Path(id): Path<String>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lang = Lang::of_browser(&headers);
    let (session, pending, form) = match posted(&state, &headers, &id, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (email, password) = (get("email"), get("password"));
    let app = super::consent::app_name(&state, &pending).await;
    let address = peer.map(|Extension(Peer(a))| a);
    // A refused sign-in names the app, never the email tried.
    super::audit::current().identify(None, Some(pending.client_id.clone()));
    let user = match state.auth.sign_in(email, password, address).await {
        Err(e) => return failed(lang, e),
        Ok(SignIn::Refused) => {
            return sign_in_page(
                StatusCode::UNAUTHORIZED,
                lang,
                &app,
                &session,
                &id,
                email,
                Some("wrong"),
            )
        }
        Ok(SignIn::Throttled) => {
            return sign_in_page(
                StatusCode::TOO_MANY_REQUESTS,
                lang,
                &app,
                &session,
                &id,
                email,
                Some("throttled"),
            )
        }
        Ok(SignIn::Done(u)) => u,
    };
    super::audit::identified(
        &user.id.to_string(),
        user.fhir_user.as_deref(),
        &pending.client_id,
    );
    // A new session for who signed in: a session id known before signing in is worth nothing.
    let db = state.auth.db();
    let opened = sessions::open(db, Some(user.id), SESSION_LIFETIME).await;
    let (token, new) = match opened {
        Ok(o) => o,
        Err(e) => return failed(lang, e),
    };
    let moved = async {
        sessions::move_pending(db, &pending.id, &new.hash).await?;
        sessions::end(db, &session.hash).await
    };
    if let Err(e) = moved.await {
        return failed(lang, e.into());
    }
    let base = state.base_url(&headers);
    let mut r = see_other(&format!("{}/flow/{}", auth_path(&base), pending.id));
    let max_age = SESSION_LIFETIME.as_secs() as i64;
    r.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&token, secure(&base), max_age),
    );
    r
}

/// The most fields a page's form has (the consent page's checkboxes among them).
const MAX_FIELDS: usize = 200;

/// A form posted to a request's page: its session, the request and the fields, once the
/// CSRF token is checked.
pub async fn posted(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    body: Body,
) -> Result<(Session, Pending, Vec<(String, String)>), Response> {
    let lang = Lang::of_browser(headers);
    let form = super::oauth::form_fields(state, headers, body, MAX_FIELDS)
        .await
        .map_err(IntoResponse::into_response)?;
    let (session, pending) = match current(state, headers, id).await {
        Err(e) => return Err(failed(lang, e)),
        Ok(None) => return Err(show(Problem::Expired, lang)),
        Ok(Some(c)) => c,
    };
    if !csrf_ok(&session, &form) {
        return Err(show(Problem::Forged, lang));
    }
    Ok((session, pending, form))
}

/// `POST /auth/signout`: ends the browser's session (and the online_access it granted).
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = Lang::of_browser(&headers);
    if let Some(token) = cookie(&headers) {
        if let Err(e) = sessions::end(state.auth.db(), &sessions::hash(&token)).await {
            return failed(lang, e.into());
        }
    }
    let base = state.base_url(&headers);
    let mut r = page(
        StatusCode::OK,
        lang,
        t(lang, "sign_out"),
        &format!("<p role=\"status\">{}</p>", t(lang, "signed_out")),
    );
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", secure(&base), 0));
    r
}

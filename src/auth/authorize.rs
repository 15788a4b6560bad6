//! The authorization endpoint's decisions (SMART App Launch, OAuth 2.0 with PKCE): whether an
//! app's request is one to answer, who signs in (throttled), and the code a consent yields.
//! The pages that ask the user are the API's; what they decide is here.

use super::codes::{self, Code};
use super::records::{self, Client};
use super::scope::Scopes;
use super::sessions::{self, Pending};
use super::users::{self, User};
use super::{keys, password, Auth};
use chrono::Utc;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How long a user has to sign in and consent.
pub const REQUEST_LIFETIME: Duration = Duration::from_secs(600);
/// How long a code lives.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a launch id lives.
pub const LAUNCH_LIFETIME: Duration = Duration::from_secs(300);
/// How long a signed-in browser session lasts (and the online_access it grants).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How long a session nobody has signed in to lasts.
pub const ANONYMOUS_SESSION_LIFETIME: Duration = REQUEST_LIFETIME;

/// Failed sign-ins that stop an account, and an address, from trying again for a while.
pub const ACCOUNT_FAILURES: i64 = 5;
pub const ADDRESS_FAILURES: i64 = 20;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(900);

/// The longest `state` and `nonce` taken.
const MAX_STATE: usize = 1024;

/// What is wrong with a request before its redirect URI can be trusted: shown as a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    UnknownClient,
    RedirectUri,
    /// The request expired, or belongs to another browser.
    Expired,
    /// A form came without this session's token.
    Forged,
    /// The patient of an EHR launch is not one this user may see.
    PatientNotVisible,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Shown as a page.
    Page(Problem),
    /// Sent back to the app: the redirect URI with `error` and `state`.
    Redirect(String),
}

/// `uri` with `pairs` added to its query.
pub fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", q.finish())
}

fn back(uri: &str, state: Option<&str>, error: &str, description: &str) -> Refused {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    Refused::Redirect(redirect_with(uri, &pairs))
}

/// Whether `s` is a PKCE value: 43 to 128 unreserved characters (RFC 7636 §4.1).
pub fn pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether `verifier` is the one `challenge` was made from (S256).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let made = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    made.len() == challenge.len()
        && made
            .bytes()
            .zip(challenge.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What a sign-in came to.
pub enum SignIn {
    Done(User),
    /// A wrong email or password: one answer for both.
    Refused,
    /// Too many failures for the account or the address.
    Throttled,
}

impl Auth {
    /// The request `p` (the parameters of GET or POST /auth/authorize) as one to answer, for
    /// the FHIR base `base`; a launch id it names is taken.
    pub async fn authorization_request(
        &self,
        p: &HashMap<String, String>,
        base: &str,
    ) -> anyhow::Result<Result<(Client, Pending), Refused>> {
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let client = match get("client_id") {
            Some(id) => records::client(&self.db, id).await?,
            None => None,
        };
        let Some(client) = client else {
            return Ok(Err(Refused::Page(Problem::UnknownClient)));
        };
        // Exactly a registered URI: no prefix, suffix, port or query variant.
        let Some(uri) = get("redirect_uri").filter(|u| client.redirect_uris.iter().any(|r| r == u))
        else {
            return Ok(Err(Refused::Page(Problem::RedirectUri)));
        };
        let state = get("state");
        let no = |error: &str, d: &str| Ok(Err(back(uri, state, error, d)));
        if state.is_none() {
            return no("invalid_request", "state is required");
        }
        if get("response_type") != Some("code") {
            return no("unsupported_response_type", "response_type is code");
        }
        if state.is_some_and(|s| s.len() > MAX_STATE)
            || get("nonce").is_some_and(|s| s.len() > MAX_STATE)
        {
            return no(
                "invalid_request",
                "state and nonce are at most 1024 characters",
            );
        }
        let aud = get("aud").or(get("resource"));
        if aud.map(|a| a.trim_end_matches('/')) != Some(base.trim_end_matches('/')) {
            return no("invalid_request", "aud is not this server's FHIR base URL");
        }
        if get("code_challenge_method") != Some("S256") {
            return no(
                "invalid_request",
                "PKCE is required, with code_challenge_method S256",
            );
        }
        let Some(challenge) = get("code_challenge").filter(|c| c.len() == 43 && pkce_value(c))
        else {
            return no(
                "invalid_request",
                "code_challenge is the S256 hash of the verifier",
            );
        };
        let asked =
            Scopes::parse(get("scope").unwrap_or("")).intersect(&Scopes::parse(&client.scope));
        if asked.grants.is_empty() && asked.others.is_empty() {
            return no(
                "invalid_scope",
                "none of the scopes asked for is one this client may have",
            );
        }
        let mut pending = Pending {
            id: keys::random_token::<24>()?,
            client_id: client.client_id.clone(),
            redirect_uri: uri.to_owned(),
            scope: asked.to_string(),
            state: state.map(str::to_owned),
            nonce: get("nonce").map(str::to_owned),
            code_challenge: challenge.to_owned(),
            ..Default::default()
        };
        if let Some(launch) = get("launch") {
            let Some(l) = codes::take_launch(&self.db, launch, &client.client_id).await? else {
                return no("invalid_request", "the launch is unknown or has expired");
            };
            pending.patient = Some(l.patient);
            pending.encounter = l.encounter;
            pending.launched = true;
        }
        Ok(Ok((client, pending)))
    }

    /// Checks `email` and `password`, counting failures by account and by `address`.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> anyhow::Result<SignIn> {
        let account = format!("account:{}", email.trim().to_lowercase());
        let address = address.map(|a| format!("address:{a}"));
        let since = Utc::now() - chrono::Duration::from_std(THROTTLE_WINDOW)?;
        if sessions::failures(&self.db, &account, since).await? >= ACCOUNT_FAILURES {
            return Ok(SignIn::Throttled);
        }
        if let Some(a) = &address {
            if sessions::failures(&self.db, a, since).await? >= ADDRESS_FAILURES {
                return Ok(SignIn::Throttled);
            }
        }
        // The attempt counts as failed until the password is found right.
        let mut subjects = vec![account.as_str()];
        subjects.extend(address.as_deref());
        let at = sessions::add_failure(&self.db, &subjects).await?;
        let user = users::by_email(&self.db, email.trim()).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        // An unknown email costs a hash too: the time taken tells nothing.
        let phc = hash
            .clone()
            .unwrap_or_else(|| super::client_auth::DUMMY_HASH.to_owned());
        let ok = password::verify(password.to_owned(), phc).await && hash.is_some();
        match user {
            Some(u) if ok && u.active => {
                sessions::clear_failures(&self.db, &account).await?;
                if let Some(a) = &address {
                    sessions::forget_failure(&self.db, a, at).await?;
                }
                users::signed_in(&self.db, u.id).await?;
                Ok(SignIn::Done(u))
            }
            _ => Ok(SignIn::Refused),
        }
    }

    /// The code for the consent to `p` by `user`, granting `scope`, and where the browser goes
    /// with it; None when the request was already answered.
    pub async fn approve(
        &self,
        p: &Pending,
        user: &User,
        scope: String,
    ) -> anyhow::Result<Option<String>> {
        if !sessions::remove_pending(&self.db, &p.id).await? {
            return Ok(None);
        }
        let code = keys::random_token::<32>()?;
        let c = Code {
            grant: codes::Grant {
                family: keys::random_token::<16>()?,
                client_id: p.client_id.clone(),
                user_id: user.id,
                scope,
                patient: p.patient.clone().or_else(|| user.patient.clone()),
                encounter: p.encounter.clone(),
                session_hash: Some(p.session_hash.clone()),
                expires_at: None,
                launched: p.launched,
            },
            redirect_uri: p.redirect_uri.clone(),
            code_challenge: p.code_challenge.clone(),
            nonce: p.nonce.clone(),
        };
        let expires = Utc::now() + chrono::Duration::from_std(CODE_LIFETIME)?;
        codes::add_code(&self.db, &code, &c, expires).await?;
        let mut pairs = vec![("code", code.as_str())];
        pairs.extend(p.state.as_deref().map(|s| ("state", s)));
        Ok(Some(redirect_with(&p.redirect_uri, &pairs)))
    }

    /// Where the browser goes when the user declines `p`.
    pub async fn decline(&self, p: &Pending) -> anyhow::Result<String> {
        sessions::remove_pending(&self.db, &p.id).await?;
        let Refused::Redirect(to) = back(
            &p.redirect_uri,
            p.state.as_deref(),
            "access_denied",
            "the user did not allow it",
        ) else {
            unreachable!("back() redirects")
        };
        Ok(to)
    }

    /// A launch id for `client_id` bound to `patient` (and `encounter`); None when there is no
    /// such client. The caller has checked that they exist and may be seen.
    pub async fn mint_launch(
        &self,
        client_id: &str,
        patient: &str,
        encounter: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        if records::client(&self.db, client_id).await?.is_none() {
            return Ok(None);
        }
        let id = keys::random_token::<24>()?;
        let l = codes::Launch {
            client_id: client_id.to_owned(),
            patient: patient.to_owned(),
            encounter: encounter.map(str::to_owned),
        };
        let expires = Utc::now() + chrono::Duration::from_std(LAUNCH_LIFETIME)?;
        codes::add_launch(&self.db, &id, &l, expires).await?;
        Ok(Some(id))
    }

    /// Revokes the refresh token `token` of `client_id` and its family, if it is one.
    pub async fn revoke_refresh(&self, token: &str, client_id: &str) -> anyhow::Result<()> {
        if let Some(f) = codes::refresh_family(&self.db, token, client_id).await? {
            self.revoke_family(&f).await?;
        }
        Ok(())
    }

    /// Revokes every token of `family` (a code or refresh token used twice), in every process.
    pub async fn revoke_family(&self, family: &str) -> anyhow::Result<()> {
        for jti in codes::revoke_family(&self.db, family).await? {
            self.revoke(&jti, None).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_the_base64url_sha256_of_the_verifier() {
        // The challenge computed apart: base64url(sha256(verifier)) by Python's hashlib.
        let verifier = "dBjftJeZ4CVP-mJ92K9qYrQmlGTTKyRkdWFv4vDDjXk";
        assert!(pkce_value(verifier));
        assert!(pkce_matches(
            verifier,
            "ZL5Y4SKYcM28SPXAH1dJxWLo1k_WpGVBrITbBqBcd-k"
        ));
        assert!(!pkce_matches(
            verifier,
            "ZL5Y4SKYcM28SPXAH1dJxWLo1k_WpGVBrITbBqBcd-j"
        ));
        assert!(!pkce_matches(verifier, verifier), "plain is not S256");
        assert!(!pkce_value("short"));
        assert!(!pkce_value(&"a".repeat(129)));
        assert!(!pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirects_keep_the_registered_query() {
        assert_eq!(
            redirect_with(
                "https://app.example/cb?x=1",
                &[("code", "a b"), ("state", "s&t")]
            ),
            "https://app.example/cb?x=1&code=a+b&state=s%26t"
        );
        assert_eq!(
            redirect_with("https://app.example/cb", &[("error", "access_denied")]),
            "https://app.example/cb?error=access_denied"
        );
    }
}

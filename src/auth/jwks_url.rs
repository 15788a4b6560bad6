//! The keys of a backend client registered with a JWKS URL (`client add --jwks-url`): fetched
//! with a timeout and a size cap, never through a redirect to a private address, and cached
//! (failures too, briefly).
//!
//! The registered URL is the clinic administrator's choice and may name a host on the clinic's
//! own network. A redirect is another matter: followed at most [`MAX_REDIRECTS`] times, never
//! from https to http, and never to a loopback, private, link-local or otherwise internal
//! address, whether the redirect names it as an IP address or as a host name resolving to it.

use jsonwebtoken::jwk::JwkSet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a fetch may take, from connecting to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// How long a fetched key set is used.
pub const CACHE_FOR: Duration = Duration::from_secs(300);
/// An assertion naming a kid the cached set lacks fetches the set again, at most this often.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
pub const MAX_REDIRECTS: usize = 3;

/// What the last fetch of one URL gave, and when.
type Fetched = Option<(Result<Arc<JwkSet>, String>, Instant)>;

/// The key sets fetched, by URL. One fetch per URL at a time (the others wait for its answer),
/// and a failure is remembered for [`REFETCH_AFTER`]: a flood of assertions naming one client
/// makes one outbound request, not one each.
#[derive(Default)]
pub struct JwksCache {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Fetched>>>>,
}

impl JwksCache {
    /// The keys at `url`, from the cache unless they are older than [`CACHE_FOR`], or lack
    /// `kid` and are older than [`REFETCH_AFTER`] (the client may have rotated its keys).
    pub async fn keys(&self, url: &str, kid: Option<&str>) -> Result<Arc<JwkSet>, String> {
        let slot = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_owned())
            .or_default()
            .clone();
        let mut last = slot.lock().await;
        if let Some((answer, at)) = last.as_ref() {
            let age = at.elapsed();
            let fresh = match answer {
                Ok(set) => {
                    let has_kid = kid.is_none_or(|k| set.find(k).is_some());
                    age < CACHE_FOR && (has_kid || age < REFETCH_AFTER)
                }
                Err(_) => age < REFETCH_AFTER,
            };
            if fresh {
                return answer.clone();
            }
        }
        let answer = fetch(url).await.map(Arc::new);
        *last = Some((answer.clone(), Instant::now()));
        answer
    }
}

/// Whether `url` may be registered as a JWKS URL: http or https, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(format!("{url} is not an http or https URL"));
    }
    Ok(())
}

/// Fetches the key set at `url`.
pub async fn fetch(url: &str) -> Result<JwkSet, String> {
    check_url(url)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let home = parsed.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .redirect(redirects(home.clone()))
        .dns_resolver(Arc::new(PublicOnly { home }))
        .no_proxy()
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let mut res = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("the JWKS URL could not be read: {}", describe(&e)))?;
    if !res.status().is_success() {
        return Err(format!("the JWKS URL answered {}", res.status()));
    }
    let too_large = || format!("the JWKS URL answered more than {MAX_JWKS_BYTES} bytes");
    if res
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("the JWKS URL could not be read: {}", describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| "the JWKS URL answered no JWK set".to_owned())
}

/// The cause of a failed fetch, without the internals of the HTTP client.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", FETCH_TIMEOUT.as_secs());
    }
    if e.is_redirect() {
        return "a redirect that is not followed (to a private address, from https to http, \
                or too many)"
            .into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Follows a redirect only to a public address (or the registered host), never from https to
/// http, at most [`MAX_REDIRECTS`] times.
fn redirects(home: String) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let url = attempt.url();
        let downgrade =
            url.scheme() != "https" && attempt.previous().iter().any(|u| u.scheme() == "https");
        let internal = url.host_str() != Some(home.as_str())
            && match url.host_str() {
                None => true,
                Some(h) => {
                    let bare = h.trim_start_matches('[').trim_end_matches(']');
                    match bare.parse::<IpAddr>() {
                        Ok(ip) => internal(ip),
                        Err(_) => bare.eq_ignore_ascii_case("localhost"),
                    }
                }
            };
        if attempt.previous().len() > MAX_REDIRECTS || downgrade || internal {
            attempt.error("a redirect that is not followed")
        } else {
            attempt.follow()
        }
    })
}

/// Resolves host names, keeping only public addresses for any host but the registered one.
struct PublicOnly {
    home: String,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let home = self.home.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| host == home || !internal(a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Loopback, private, link-local, shared, unspecified and other non-public addresses.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 224
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let v4 = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                internal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // unique local, link-local, site-local
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16): the
                // address within
                || seg[..6].iter().all(|&s| s == 0)
                || (seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && v4(seg[6], seg[7]))
                || (seg[0] == 0x2002 && v4(seg[1], seg[2]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::internal;

    #[test]
    fn internal_addresses_are_told_from_public_ones() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a00:1::1",
            "fec0::1",
        ] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "151.101.1.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!internal(ip.parse().unwrap()), "{ip}");
        }
    }
}

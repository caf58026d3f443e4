//! Sticky sessions with a generated cookie: when a backend balances by a
//! consistent hash on a cookie and may make that cookie up, a request without
//! it gets a fresh random 128-bit hex value added to its `Cookie` header (so the
//! hash and the app see the same session) and the response gets a matching
//! `Set-Cookie`. Later requests carrying the cookie hash to the same endpoint.

use super::body::Body;
use super::policy::request_hash;
use crate::lb::rng::with_thread_rng;
use crate::routing::Backend;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response};
use std::net::Ipv4Addr;
use weft_proxy_config::{GeneratedCookie, HashKey};

/// A fresh session value: 128 random bits as 32 lower-case hex digits.
fn session_value() -> String {
    let (a, b) = with_thread_rng(|r| (r.next_u64(), r.next_u64()));
    format!("{a:016x}{b:016x}")
}

/// The `Set-Cookie` value for `name=value` with the configured attributes.
pub fn set_cookie_value(name: &str, value: &str, cookie: &GeneratedCookie) -> String {
    let path = cookie.path.as_deref().unwrap_or("/");
    let mut out = format!("{name}={value}; Path={path}");
    if cookie.ttl_ms > 0 {
        out.push_str(&format!("; Max-Age={}", cookie.ttl_ms.div_ceil(1000)));
    }
    out.push_str("; HttpOnly");
    out
}

/// Adds `name=value` to the request's cookies (appended to the first `Cookie`
/// header: HTTP/1 allows only one).
fn add_cookie(headers: &mut HeaderMap, name: &str, value: &str) -> Option<()> {
    let pair = format!("{name}={value}");
    let joined = match headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}; {pair}"),
        _ => pair,
    };
    let v = HeaderValue::from_str(&joined).ok()?;
    headers.insert(COOKIE, v);
    Some(())
}

/// Gives `req` a session cookie when `backend` generates one and the request
/// has none. Returns the `Set-Cookie` value for the response.
pub fn ensure(backend: &Backend, req: &mut Request<Body>) -> Option<HeaderValue> {
    let (name, cookie) = backend.balancer.generated_cookie()?;
    let key = HashKey::Cookie(name.to_string());
    // The peer address does not matter for a cookie key.
    if request_hash(&key, req.headers(), Ipv4Addr::UNSPECIFIED.into()).is_some() {
        return None;
    }
    let value = session_value();
    add_cookie(req.headers_mut(), name, &value)?;
    let set = HeaderValue::from_str(&set_cookie_value(name, &value, cookie)).ok();
    tracing::debug!(service = %backend.service, cookie = name, "generated a sticky-session cookie");
    set
}

/// Adds the `Set-Cookie` from [`ensure`] to the response.
pub fn finish(resp: &mut Response<Body>, set: Option<HeaderValue>) {
    if let Some(v) = set {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_rounds_ttl_up_and_omits_max_age_for_session_cookies() {
        let c = GeneratedCookie {
            ttl_ms: 1_500,
            path: None,
        };
        assert_eq!(set_cookie_value("s", "v", &c), "s=v; Path=/; Max-Age=2; HttpOnly");
        let c = GeneratedCookie {
            ttl_ms: 0,
            path: Some("/shop".into()),
        };
        assert_eq!(set_cookie_value("s", "v", &c), "s=v; Path=/shop; HttpOnly");
    }

    #[test]
    fn cookie_is_appended_to_existing_ones() {
        let mut h = HeaderMap::new();
        add_cookie(&mut h, "s", "1").unwrap();
        assert_eq!(h[COOKIE], "s=1");
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=b"));
        add_cookie(&mut h, "s", "1").unwrap();
        assert_eq!(h[COOKIE], "a=b; s=1");
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
    }

    #[test]
    fn ensure_adds_a_routable_cookie_only_when_missing() {
        use crate::endpoint::Endpoint;
        use crate::lb::Balancer;
        use crate::metrics::Metrics;
        use std::sync::Arc;
        use weft_proxy_config::{HashAlgorithm, LoadBalancer};
        let eps = (1..=4)
            .map(|i| Arc::new(Endpoint::new(format!("127.0.0.{i}:80").parse().unwrap(), None)))
            .collect();
        let kind = LoadBalancer::ConsistentHash {
            key: HashKey::Cookie("sid".into()),
            algorithm: HashAlgorithm::Ring,
            cookie: Some(GeneratedCookie {
                ttl_ms: 1_000,
                path: None,
            }),
        };
        let m = Metrics::default();
        let backend = Backend {
            service: "t/s".into(),
            balancer: Arc::new(Balancer::new(&kind, eps)),
            policy: Arc::default(),
            http_metrics: m.http(String::new()),
            tcp_metrics: m.tcp(String::new()),
        };
        let mut req = Request::new(Body::empty());
        req.headers_mut().insert(COOKIE, HeaderValue::from_static("a=b"));
        let set = ensure(&backend, &mut req).unwrap();
        let set = set.to_str().unwrap();
        let value = &set["sid=".len().."sid=".len() + 32];
        assert_eq!(set, format!("sid={value}; Path=/; Max-Age=1; HttpOnly"));
        assert_eq!(req.headers()[COOKIE], format!("a=b; sid={value}").as_str());
        // The request now hashes on the generated value, to one endpoint.
        let peer = "10.0.0.1:1".parse().unwrap();
        let now = tokio::time::Instant::now();
        let pick = || {
            super::super::policy::pick_endpoint(&backend, req.headers(), peer, &[], now)
                .unwrap()
                .addr
        };
        let first = pick();
        assert!((0..20).all(|_| pick() == first));
        // Carrying the cookie: nothing generated, nothing changed.
        let before = req.headers().clone();
        assert!(ensure(&backend, &mut req).is_none());
        assert_eq!(req.headers(), &before);
        // A balancer that does not generate cookies leaves requests alone.
        let plain = Backend {
            balancer: Arc::new(Balancer::new(&LoadBalancer::RoundRobin, Vec::new())),
            ..backend
        };
        let mut bare = Request::new(Body::empty());
        assert!(ensure(&plain, &mut bare).is_none());
        assert!(bare.headers().is_empty());
    }

    #[test]
    fn session_values_are_128_bit_hex_and_differ() {
        let (a, b) = (session_value(), session_value());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

//! One request on a gateway listener port: the host (`:authority` or `Host`,
//! without port, lower-case; an invalid one is `400`), the listener of that
//! port whose hostname matches it (none: `404`), that listener's routes
//! ([`crate::proxy::gamma::decide_with`]: `404 no-route`, redirects,
//! `500 no-backend`, request filters), `X-Forwarded-For` / `X-Forwarded-Proto`,
//! then the outbound policy layer ([`forward_routed`]: mTLS to meshed
//! backends, retries, breakers, metrics).
//!
//! The gateway speaks to a backend in the HTTP version of its service port
//! (`http2` / `grpc`: HTTP/2; otherwise HTTP/1.1, except gRPC requests arriving
//! over HTTP/2), translating the request when the client used the other one:
//! clients negotiate HTTP/2 by ALPN whatever the backend speaks.

use crate::proxy::body::Body;
use crate::proxy::errors::ProxyError;
use crate::proxy::gamma::{Decision, Origin, decide_with};
use crate::proxy::outbound_http::forward_routed;
use crate::proxy::{Proto, Shared};
use http::header::{CONTENT_TYPE, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, Uri, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use weft_proxy_config::{ListenerProtocol, Protocol};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Why a request's host cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("the Host header is not valid")]
    Invalid,
    #[error("more than one Host header")]
    Repeated,
    #[error("an HTTP/1.1 request without Host")]
    Missing,
}

/// The request's host, lower-case, without port: the URI authority (HTTP/2
/// `:authority`, HTTP/1 absolute-form, which wins over `Host` as RFC 9112
/// requires) or else `Host`; `""` for an HTTP/1.0 request with neither.
pub fn request_host<B>(req: &Request<B>) -> Result<String, HostError> {
    let mut values = req.headers().get_all(HOST).iter();
    let header = match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err(HostError::Repeated),
        (Some(h), None) => {
            let text = h.to_str().map_err(|_| HostError::Invalid)?;
            Some(Authority::try_from(text).map_err(|_| HostError::Invalid)?)
        }
        (None, _) => None,
    };
    let authority = req.uri().authority().or(header.as_ref());
    if authority.is_none() && req.version() == Version::HTTP_11 {
        return Err(HostError::Missing);
    }
    let host = authority
        .map(|a| a.host().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(host.trim_end_matches('.').to_string())
}

/// Appends the peer to `X-Forwarded-For` and sets `X-Forwarded-Proto`.
pub fn set_forwarded(req: &mut Request<Body>, peer: SocketAddr, tls: bool) {
    let ip = peer.ip().to_canonical().to_string();
    let h = req.headers_mut();
    let prior: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(X_FORWARDED_FOR, v);
    }
    let proto = if tls { "https" } else { "http" };
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
}

/// The HTTP version to speak to a backend of `protocol` for a request that came in on `down`.
pub fn upstream_proto<B>(protocol: Protocol, down: Proto, req: &Request<B>) -> Proto {
    match protocol {
        Protocol::Http2 | Protocol::Grpc => Proto::Http2,
        Protocol::Http1 => Proto::Http1,
        Protocol::Detect | Protocol::Tcp => {
            let grpc = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/grpc"));
            if down == Proto::Http2 && grpc {
                Proto::Http2
            } else {
                Proto::Http1
            }
        }
    }
}

/// Rewrites `req` (from a `down` connection) for an `up` connection.
pub fn translate(req: &mut Request<Body>, down: Proto, up: Proto, host: &str) {
    match (down, up) {
        (Proto::Http2, Proto::Http1) => {
            let authority = req.uri().authority().cloned();
            if !req.headers().contains_key(HOST)
                && let Some(v) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(HOST, v);
            }
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
            *req.version_mut() = Version::HTTP_11;
        }
        (Proto::Http1, Proto::Http2) => {
            let authority = req
                .headers()
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Authority::try_from(v).ok())
                .or_else(|| req.uri().authority().cloned())
                .or_else(|| Authority::try_from(host).ok());
            let mut parts = req.uri().clone().into_parts();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = authority;
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
            req.headers_mut().remove(HOST);
            *req.version_mut() = Version::HTTP_2;
        }
        (Proto::Http1, Proto::Http1) => {
            // Absolute-form goes on in origin-form, its authority as `Host`.
            if let Some(a) = req.uri().authority().cloned() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    req.headers_mut().insert(HOST, v);
                }
                let pq = req
                    .uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                *req.uri_mut() = Uri::from(pq);
            }
        }
        (Proto::Http2, Proto::Http2) => {}
    }
}

/// Handles one request that arrived on gateway port `port` (`tls`: an `Https` listener port).
pub async fn handle(
    shared: &Arc<Shared>,
    port: u16,
    tls: bool,
    proto: Proto,
    peer: SocketAddr,
    start: Instant,
    mut req: Request<Body>,
) -> Response<Body> {
    // What the gateway answers before any listener's routes apply (a bad Host, no config
    // yet, no listener for the host) is counted per port, without a listener label.
    let unrouted = |e: ProxyError| {
        let port = port.to_string();
        let m = shared.metrics.http(crate::metrics::labels(&[
            ("direction", "outbound"),
            ("gateway_port", &port),
        ]));
        m.request();
        m.latency(start.elapsed());
        e.response(Some(&m))
    };
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(error) => {
            tracing::debug!(%peer, port, %error, "malformed request");
            return unrouted(ProxyError::BadRequest);
        }
    };
    let Some(snap) = shared.store.load() else {
        return unrouted(ProxyError::NoRoute);
    };
    let wanted = if tls {
        ListenerProtocol::Https
    } else {
        ListenerProtocol::Http
    };
    let listeners = snap
        .config
        .gateway
        .iter()
        .flat_map(|g| &g.listeners)
        .filter(|l| l.port == port && l.protocol == wanted);
    let Some(listener) = crate::routing::gateway::select_listener(listeners, &host) else {
        tracing::debug!(port, %host, "no listener for the host");
        return unrouted(ProxyError::NoRoute);
    };
    let Some(routes) = snap.table.gateway_listener(&listener.name) else {
        return unrouted(ProxyError::NoRoute);
    };
    let origin = Origin {
        name: &listener.name,
        port,
        metrics: &routes.http_metrics,
        scheme: if tls { "https" } else { "http" },
    };
    let routed = match decide_with(&origin, start, &mut req, |view| routes.find(&host, view)) {
        Decision::Answer(resp) => return *resp,
        Decision::Forward(r) => r,
    };
    set_forwarded(&mut req, peer, tls);
    let up = upstream_proto(routed.protocol(), proto, &req);
    translate(&mut req, proto, up, &host);
    forward_routed(shared, &routed, up, peer, start, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, host: Option<&str>) -> Request<Body> {
        let mut b = Request::get(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn host_from_authority_or_header() {
        assert_eq!(
            request_host(&req("/", Some("Shop.Example.TEST:8443"))).unwrap(),
            "shop.example.test"
        );
        assert_eq!(
            request_host(&req("http://a.example/x", None)).unwrap(),
            "a.example"
        );
        let mut old = req("/", None);
        *old.version_mut() = Version::HTTP_10;
        assert_eq!(request_host(&old).unwrap(), "");
        assert_eq!(request_host(&req("/", Some("[::1]:80"))).unwrap(), "[::1]");
        assert_eq!(request_host(&req("/", Some("bad host"))), Err(HostError::Invalid));
        assert_eq!(
            request_host(&req("http://a.example/x", Some("b.example"))).unwrap(),
            "a.example"
        );
        let mut two = req("/", Some("a.example"));
        two.headers_mut()
            .append(HOST, HeaderValue::from_static("b.example"));
        assert_eq!(request_host(&two), Err(HostError::Repeated));
        assert_eq!(request_host(&req("/", None)), Err(HostError::Missing));
    }

    #[test]
    fn forwarded_headers_append() {
        let mut r = req("/", Some("a"));
        r.headers_mut()
            .insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        r.headers_mut()
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        set_forwarded(&mut r, "192.0.2.7:5000".parse().unwrap(), false);
        assert_eq!(r.headers()[X_FORWARDED_FOR], "10.0.0.1, 192.0.2.7");
        assert_eq!(r.headers()[X_FORWARDED_PROTO], "http");
        let mut r = req("/", Some("a"));
        set_forwarded(&mut r, "[::ffff:192.0.2.8]:1".parse().unwrap(), true);
        assert_eq!(r.headers()[X_FORWARDED_FOR], "192.0.2.8");
        assert_eq!(r.headers()[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn versions_are_translated_for_the_backend() {
        let grpc = Request::get("/")
            .header(CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(
            upstream_proto(Protocol::Detect, Proto::Http2, &grpc),
            Proto::Http2
        );
        assert_eq!(
            upstream_proto(Protocol::Detect, Proto::Http1, &grpc),
            Proto::Http1
        );
        assert_eq!(upstream_proto(Protocol::Http1, Proto::Http2, &grpc), Proto::Http1);
        assert_eq!(upstream_proto(Protocol::Grpc, Proto::Http1, &grpc), Proto::Http2);

        let mut r = Request::get("https://shop.example.test/a?b=1")
            .version(Version::HTTP_2)
            .body(Body::empty())
            .unwrap();
        translate(&mut r, Proto::Http2, Proto::Http1, "shop.example.test");
        assert_eq!(r.uri(), "/a?b=1");
        assert_eq!(r.headers()[HOST], "shop.example.test");
        assert_eq!(r.version(), Version::HTTP_11);

        let mut r = req("http://a.example/p?q", Some("b.example"));
        translate(&mut r, Proto::Http1, Proto::Http1, "a.example");
        assert_eq!(
            (r.uri().to_string(), &r.headers()[HOST]),
            ("/p?q".to_string(), &HeaderValue::from_static("a.example"))
        );

        let mut r = req("/x", Some("web.example:8080"));
        translate(&mut r, Proto::Http1, Proto::Http2, "web.example");
        assert_eq!(r.uri(), "http://web.example:8080/x");
        assert!(!r.headers().contains_key(HOST));
        assert_eq!(r.version(), Version::HTTP_2);
    }
}

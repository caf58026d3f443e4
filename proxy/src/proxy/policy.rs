//! The per-request layer around the upstream call: count the request, pick an
//! endpoint, send, and turn failures into counted error responses. This is the
//! place where retries, per-try timeouts and circuit breakers
//! ([`crate::routing::BackendPolicy`]) wrap [`forward::send`].

use super::body::Body;
use super::forward::{self, Call};
use super::{Proto, Shared};
use crate::lb::rng::{hash_bytes, with_thread_rng};
use crate::routing::Backend;
use http::{HeaderMap, Request, Response};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use weft_proxy_config::HashKey;

/// Hash of the request attribute a consistent-hash balancer keys on.
pub fn request_hash(key: &HashKey, headers: &HeaderMap, peer: IpAddr) -> Option<u64> {
    match key {
        HashKey::Header(name) => headers.get(name.as_str()).map(|v| hash_bytes(v.as_bytes(), 0)),
        HashKey::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| hash_bytes(v.as_bytes(), 0)),
        HashKey::SourceIp => Some(match peer {
            IpAddr::V4(v4) => hash_bytes(&v4.octets(), 0),
            IpAddr::V6(v6) => hash_bytes(&v6.octets(), 0),
        }),
    }
}

/// Routes `req` to an endpoint of `backend` and returns the response.
pub async fn call(
    shared: &Shared,
    backend: &Backend,
    proto: Proto,
    peer: SocketAddr,
    start: Instant,
    req: Request<Body>,
) -> Response<Body> {
    let metrics = &backend.http_metrics;
    metrics.request();
    let key_hash = backend
        .balancer
        .hash_key()
        .and_then(|k| request_hash(k, req.headers(), peer.ip()));
    let Some(ep) = with_thread_rng(|rng| backend.balancer.pick(key_hash, rng).cloned()) else {
        metrics.latency(start.elapsed());
        return super::errors::ProxyError::NoHealthyEndpoints.response(Some(metrics));
    };
    let call = Call {
        proto,
        metrics,
        connector: &*shared.connector,
        connect_timeout: backend
            .policy
            .connect_timeout
            .unwrap_or(shared.settings.connect_timeout),
        response_timeout: shared.settings.response_timeout,
        tunnel_idle: shared.settings.tcp_idle_timeout,
        start,
    };
    match forward::send(&call, &ep, req).await {
        Ok(resp) => resp,
        Err(e) => {
            metrics.latency(start.elapsed());
            tracing::debug!(reason = e.reason(), upstream = %ep.addr, service = %backend.service, "request failed");
            e.response(Some(metrics))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.insert("cookie", "a=1; session=xyz; b=2".parse().unwrap());
        let ip: IpAddr = "198.18.0.1".parse().unwrap();
        let by_header = request_hash(&HashKey::Header("x-user".into()), &h, ip);
        assert_eq!(by_header, Some(hash_bytes(b"alice", 0)));
        assert_eq!(
            request_hash(&HashKey::Cookie("session".into()), &h, ip),
            Some(hash_bytes(b"xyz", 0))
        );
        assert_eq!(request_hash(&HashKey::Cookie("none".into()), &h, ip), None);
        assert_eq!(request_hash(&HashKey::Header("x-none".into()), &h, ip), None);
        assert!(request_hash(&HashKey::SourceIp, &h, ip).is_some());
    }
}

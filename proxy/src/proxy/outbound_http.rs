//! The outbound HTTP request pipeline in front of [`super::policy::call`]:
//! route lookup against the current config, backend choice (split and header
//! routes), a generated sticky-session cookie, fault injection (before the
//! breaker and retries, never retried) and mirroring (copy taken once, before
//! retries), then the policy layer.

use super::body::Body;
use super::errors::ProxyError;
use super::{Proto, Shared, fault, mirror, policy, sticky};
use http::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Handles one outbound request to the original destination `dst`.
pub async fn handle(
    shared: &Arc<Shared>,
    dst: SocketAddr,
    proto: Proto,
    peer: SocketAddr,
    start: Instant,
    mut req: Request<Body>,
) -> Response<Body> {
    // Route per request against the current config, so reloads apply to
    // long-lived keep-alive connections too.
    let Some(route) = shared
        .store
        .load()
        .and_then(|snap| snap.table.outbound(&dst).cloned())
    else {
        return ProxyError::UnknownDestination.response(None);
    };
    let backend = Arc::clone(route.select_http(req.method(), req.uri().path(), req.headers()));
    let set_cookie = sticky::ensure(&backend, &mut req);
    if let Some(rule) = route.fault(req.method(), req.uri().path(), req.headers())
        && let Some(mut resp) = fault::apply(rule, req.headers(), &backend.http_metrics, start).await
    {
        sticky::finish(&mut resp, set_cookie);
        return resp;
    }
    if !route.mirrors.is_empty() {
        mirror::start(shared, &route, proto, peer, &mut req);
    }
    let mut resp = policy::call(shared, &backend, proto, peer, start, req).await;
    sticky::finish(&mut resp, set_cookie);
    resp
}

//! The outbound HTTP request pipeline in front of [`super::policy::call`]:
//! route lookup against the current config, backend choice (Gateway API
//! routes when the dialled port has any, else split and header routes), a
//! generated sticky-session cookie, fault injection (before the breaker and
//! retries, never retried) and mirroring (copy taken once, before retries),
//! then the policy layer, then a route's response header filters.

use super::body::Body;
use super::errors::ProxyError;
use super::gamma::{Decision, Routed};
use super::policy::CallContext;
use super::{Proto, Shared, fault, gamma, mirror, policy, sticky};
use crate::routing::Backend;
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
    // Fault rules match the request as the client sent it, before route edits.
    let fault_rule = route.fault(req.method(), req.uri().path(), req.headers());
    let routed: Option<Routed<'_>> = match route.gamma.as_deref() {
        Some(routes) => match gamma::decide(&route, routes, start, &mut req) {
            Decision::Answer(resp) => return *resp,
            Decision::Forward(r) => Some(r),
        },
        None => None,
    };
    let backend = match &routed {
        Some(r) => Arc::clone(&r.backend),
        None => Arc::clone(route.select_http(req.method(), req.uri().path(), req.headers())),
    };
    let set_cookie = sticky::ensure(&backend, &mut req);
    if let Some(rule) = fault_rule
        && let Some(mut resp) = fault::apply(rule, req.headers(), &backend.http_metrics, start).await
    {
        sticky::finish(&mut resp, set_cookie);
        return resp;
    }
    if !route.mirrors.is_empty() {
        mirror::start(shared, &route.mirrors, proto, peer, &mut req);
    }
    finish_call(
        shared,
        &backend,
        routed.as_ref(),
        proto,
        peer,
        start,
        set_cookie,
        req,
    )
    .await
}

/// Forwards a request a gateway route picked: sticky cookie, the entry's
/// mirrors, the policy layer, then the route's response header filters.
pub async fn forward_routed(
    shared: &Arc<Shared>,
    routed: &Routed<'_>,
    proto: Proto,
    peer: SocketAddr,
    start: Instant,
    mut req: Request<Body>,
) -> Response<Body> {
    let backend = Arc::clone(&routed.backend);
    let set_cookie = sticky::ensure(&backend, &mut req);
    finish_call(
        shared,
        &backend,
        Some(routed),
        proto,
        peer,
        start,
        set_cookie,
        req,
    )
    .await
}

/// The route entry's mirrors, the policy layer, then the route's response
/// header filters and the sticky cookie.
#[allow(clippy::too_many_arguments)]
async fn finish_call(
    shared: &Arc<Shared>,
    backend: &Backend,
    routed: Option<&Routed<'_>>,
    proto: Proto,
    peer: SocketAddr,
    start: Instant,
    set_cookie: Option<http::HeaderValue>,
    mut req: Request<Body>,
) -> Response<Body> {
    if let Some(r) = routed
        && !r.entry.mirrors.is_empty()
    {
        mirror::start(shared, &r.entry.mirrors, proto, peer, &mut req);
    }
    let cx = CallContext {
        proto,
        peer,
        start,
        timeouts: routed.map(|r| r.entry.timeouts).unwrap_or_default(),
    };
    let mut resp = policy::call_in(shared, backend, &cx, req).await;
    if let Some(r) = routed {
        r.finish(&mut resp);
    }
    sticky::finish(&mut resp, set_cookie);
    resp
}

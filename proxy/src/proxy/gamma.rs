//! Gateway API routes on the outbound request path. When the dialled service
//! port has route entries ([`crate::routing::gamma`]) they decide the request
//! instead of the TrafficSplit: the first matching entry either answers it
//! (`404 no-route` when none matches, a redirect, `500 no-backend`) or edits it
//! (route header filters, `URLRewrite`, then the picked backend's header
//! filters) and names the backend. Response header filters (route, then
//! backend) are applied by [`Routed::finish`] to the response.

use super::body::Body;
use super::errors::ProxyError;
use crate::metrics::{Class, HttpMetrics};
use crate::routing::PortRoute;
use crate::routing::gamma::{GammaEntry, GammaRoutes, RouteRequest, RouteTarget};
use crate::routing::gamma_edit::{RedirectFrom, host_without_port, location, rewritten_path};
use crate::routing::{Backend, path};
use http::header::{HOST, LOCATION};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use std::sync::Arc;
use std::time::Instant;
use weft_proxy_config::Rewrite;

/// A request a route sends to a backend.
#[derive(Debug)]
pub struct Routed<'r> {
    pub backend: Arc<Backend>,
    pub entry: &'r GammaEntry,
    target: &'r RouteTarget,
}

impl Routed<'_> {
    /// The protocol of the picked backend's service port.
    pub fn protocol(&self) -> weft_proxy_config::Protocol {
        self.target.protocol
    }

    /// Applies the response header filters: the route's, then the backend's.
    pub fn finish(&self, resp: &mut Response<Body>) {
        let edits = self.entry.headers.response.iter();
        for e in edits.chain(&self.target.headers.response) {
            e.apply(resp.headers_mut());
        }
    }
}

/// What the routes decided.
#[derive(Debug)]
pub enum Decision<'r> {
    /// The proxy answers the request itself (boxed: a response head is large).
    Answer(Box<Response<Body>>),
    /// Forward the (edited) request to a backend.
    Forward(Routed<'r>),
}

/// The request's host: the URI authority (HTTP/2 `:authority`) or `Host`.
fn request_authority<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(Authority::as_str)
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("")
}

/// Where a routed request arrived: the metrics weft's own answers are counted
/// on and the port redirects leave out.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// For logs: the dialled service, or the gateway listener.
    pub name: &'a str,
    /// The dialled service port, or the gateway listener port.
    pub port: u16,
    pub metrics: &'a HttpMetrics,
    /// The request's scheme: `http`, or `https` on a gateway's TLS listeners.
    pub scheme: &'static str,
}

impl<'a> Origin<'a> {
    /// The origin of a request dialled to a service port.
    pub fn service(route: &'a PortRoute) -> Self {
        Self {
            name: &route.service,
            port: route.port,
            metrics: &route.root.http_metrics,
            scheme: "http",
        }
    }
}

/// A weft answer counted on the origin's metrics.
fn answer(origin: &Origin<'_>, start: Instant, e: ProxyError) -> Decision<'static> {
    let metrics = origin.metrics;
    metrics.request();
    metrics.latency(start.elapsed());
    Decision::Answer(Box::new(e.response(Some(metrics))))
}

fn redirect_answer(
    origin: &Origin<'_>,
    entry: &GammaEntry,
    redirect: &weft_proxy_config::Redirect,
    normalized: &str,
    req: &Request<Body>,
    start: Instant,
) -> Decision<'static> {
    let target_path = match &redirect.path {
        Some(rw) => rewritten_path(rw, entry.prefix.as_deref(), normalized),
        None => req.uri().path().to_owned(),
    };
    let from = RedirectFrom {
        host: host_without_port(request_authority(req)),
        path: &target_path,
        query: req.uri().query(),
        service_port: origin.port,
        scheme: origin.scheme,
    };
    let loc = location(redirect, &from);
    let metrics = origin.metrics;
    metrics.request();
    metrics.latency(start.elapsed());
    let Ok(value) = HeaderValue::from_str(&loc) else {
        tracing::debug!(source = %entry.source, "redirect location is not a valid header value");
        return Decision::Answer(Box::new(ProxyError::NoBackend.response(Some(metrics))));
    };
    let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
    metrics.response(status.as_u16(), Class::Success);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(LOCATION, value);
    tracing::debug!(source = %entry.source, location = %loc, status = status.as_u16(), "route redirect");
    Decision::Answer(Box::new(resp))
}

/// Applies a `URLRewrite` (path with the query kept, and/or host). A result
/// that is not a valid URI leaves that part unchanged.
fn apply_rewrite(rewrite: &Rewrite, entry: &GammaEntry, normalized: &str, req: &mut Request<Body>) {
    let mut parts = req.uri().clone().into_parts();
    if let Some(rw) = &rewrite.path {
        let new_path = rewritten_path(rw, entry.prefix.as_deref(), normalized);
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        match PathAndQuery::try_from(pq) {
            Ok(pq) => parts.path_and_query = Some(pq),
            Err(_) => tracing::debug!(source = %entry.source, "rewritten path is not a valid URI path"),
        }
    }
    let mut host_header = None;
    if let Some(host) = &rewrite.hostname {
        if parts.authority.is_some() {
            match Authority::try_from(host.as_str()) {
                Ok(a) => parts.authority = Some(a),
                Err(_) => tracing::debug!(source = %entry.source, "rewritten host is not a valid authority"),
            }
        }
        if req.headers().contains_key(HOST) || parts.authority.is_none() {
            host_header = HeaderValue::from_str(host).ok();
        }
    }
    match Uri::from_parts(parts) {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => tracing::debug!(source = %entry.source, "rewritten URI is not valid"),
    }
    if let Some(h) = host_header {
        req.headers_mut().insert(HOST, h);
    }
}

/// Runs the routes of `route` for `req`, editing it in place when forwarded.
pub fn decide<'r>(
    route: &'r PortRoute,
    routes: &'r GammaRoutes,
    start: Instant,
    req: &mut Request<Body>,
) -> Decision<'r> {
    decide_with(&Origin::service(route), start, req, |view| routes.find(view))
}

/// Runs the entry `find` picks for `req` (`404 no-route` when none): answers a
/// redirect or `500 no-backend` itself, or edits the request and names the backend.
pub fn decide_with<'r>(
    origin: &Origin<'_>,
    start: Instant,
    req: &mut Request<Body>,
    find: impl FnOnce(&RouteRequest<'_>) -> Option<&'r GammaEntry>,
) -> Decision<'r> {
    // Matches see the normalized path (the raw one when it cannot be
    // normalized: the destination's sidecar refuses it).
    let raw = req.uri().path().to_owned();
    let normalized = path::normalize(&raw)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| raw.clone());
    let view = RouteRequest {
        method: req.method(),
        path: &normalized,
        query: req.uri().query(),
        headers: req.headers(),
    };
    let Some(entry) = find(&view) else {
        tracing::debug!(origin = %origin.name, port = origin.port, path = %raw, "no route matches");
        return answer(origin, start, ProxyError::NoRoute);
    };
    if let Some(redirect) = &entry.redirect {
        return redirect_answer(origin, entry, redirect, &normalized, req, start);
    }
    for e in &entry.headers.request {
        e.apply(req.headers_mut());
    }
    if let Some(rw) = &entry.rewrite {
        apply_rewrite(rw, entry, &normalized, req);
    }
    let Some((target, backend)) = entry
        .rule
        .pick()
        .and_then(|t| t.backend.as_ref().map(|b| (t, Arc::clone(b))))
    else {
        tracing::debug!(source = %entry.source, "route has no usable backend");
        return answer(origin, start, ProxyError::NoBackend);
    };
    for e in &target.headers.request {
        e.apply(req.headers_mut());
    }
    Decision::Forward(Routed {
        backend,
        entry,
        target,
    })
}

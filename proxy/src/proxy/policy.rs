//! The per-request layer around the upstream call: the service's circuit
//! breaker (or its fallback), connection-pool limits, endpoint choice that
//! avoids ejected and already-tried endpoints, then attempts with per-try and
//! overall timeouts, retries within the retry budget with jittered exponential
//! backoff, and outlier detection fed by every attempt.
//!
//! A request is retried only while its body is replayable (see
//! [`super::replay`]) and never once a response was handed downstream: the
//! decision is made on response headers before returning.

use super::body::Body;
use super::errors::{ERROR_HEADER, ProxyError};
use super::forward::{self, Call};
use super::headers::wants_upgrade;
use super::replay::Replay;
use super::{Proto, Shared};
use crate::endpoint::Endpoint;
use crate::lb::rng::{hash_bytes, with_thread_rng};
use crate::metrics::Class;
use crate::resilience::ServiceState;
use crate::resilience::retry::{Attempt, backoff, retry_reason};
use crate::routing::Backend;
use crate::routing::gamma::RouteTimeouts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weft_proxy_config::{Fallback, HashKey, RetryPolicy};

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

/// Picks an endpoint of `backend`, avoiding ejected endpoints and, when there
/// is a choice, the ones in `tried`.
pub fn pick_endpoint(
    backend: &Backend,
    headers: &HeaderMap,
    peer: SocketAddr,
    tried: &[SocketAddr],
    now: Instant,
) -> Option<Arc<Endpoint>> {
    let key = backend
        .balancer
        .hash_key()
        .and_then(|k| request_hash(k, headers, peer.ip()));
    let outlier = backend.policy.state.as_ref().and_then(|s| s.outlier.as_ref());
    let healthy = |ep: &Endpoint| outlier.is_none_or(|o| !o.is_ejected(ep.addr, now));
    with_thread_rng(|rng| {
        if outlier.is_none() && tried.is_empty() {
            return backend.balancer.pick(key, rng).cloned();
        }
        let fresh = |ep: &Endpoint| healthy(ep) && !tried.contains(&ep.addr);
        backend
            .balancer
            .pick_filtered(key, rng, &fresh)
            .or_else(|| backend.balancer.pick_filtered(key, rng, &healthy))
            .cloned()
    })
}

/// Where a request came from, and the time limits its route sets.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    pub proto: Proto,
    pub peer: SocketAddr,
    /// When the request headers were received (latency origin).
    pub start: std::time::Instant,
    /// Replace the backend's Retry `timeoutMs` / `perTryTimeoutMs` when set.
    pub timeouts: RouteTimeouts,
}

/// Routes `req` to an endpoint of `backend` and returns the response.
pub async fn call(
    shared: &Shared,
    backend: &Backend,
    proto: Proto,
    peer: SocketAddr,
    start: std::time::Instant,
    req: Request<Body>,
) -> Response<Body> {
    let cx = CallContext {
        proto,
        peer,
        start,
        timeouts: RouteTimeouts::default(),
    };
    call_in(shared, backend, &cx, req).await
}

/// [`call`] with a full [`CallContext`] (route time limits).
pub async fn call_in(
    shared: &Shared,
    backend: &Backend,
    cx: &CallContext,
    req: Request<Body>,
) -> Response<Body> {
    backend.http_metrics.request();
    guarded(shared, backend, cx, req, true).await
}

/// Breaker and pool limits around [`attempts`].
async fn guarded(
    shared: &Shared,
    backend: &Backend,
    cx: &CallContext,
    req: Request<Body>,
    allow_fallback: bool,
) -> Response<Body> {
    let start = cx.start;
    let metrics = &backend.http_metrics;
    let state = backend.policy.state.as_deref();
    let fail = |e: ProxyError| {
        metrics.latency(start.elapsed());
        e.response(Some(metrics))
    };
    let permit = match state.and_then(|s| s.breaker.as_ref().map(|b| (s, b))) {
        Some((s, b)) => match b.admit(Instant::now()) {
            Some(p) => Some(p),
            None => {
                s.rejected(ProxyError::CircuitOpen.reason());
                return open_circuit(shared, backend, cx, req, allow_fallback).await;
            }
        },
        None => None,
    };
    let _slot = match state.and_then(|s| s.limits.as_ref().map(|l| (s, l))) {
        Some((s, l)) => {
            let wait = backend
                .policy
                .connect_timeout
                .unwrap_or(shared.settings.connect_timeout);
            match l.admit(wait).await {
                Ok(slot) => Some(slot),
                Err(e) => {
                    s.rejected(e.reason());
                    return fail(e);
                }
            }
        }
        None => None,
    };
    let (resp, failed) = attempts(shared, backend, state, cx, req).await;
    if let Some(p) = permit {
        p.record(failed, Instant::now());
    }
    resp
}

/// The answer of an open breaker: the static fallback, the fallback service,
/// or 503 `circuit-open`.
async fn open_circuit(
    shared: &Shared,
    backend: &Backend,
    cx: &CallContext,
    req: Request<Body>,
    allow_fallback: bool,
) -> Response<Body> {
    let metrics = &backend.http_metrics;
    if allow_fallback && let Some(fb) = &backend.policy.fallback {
        fb.http_metrics.request();
        let mut resp = Box::pin(guarded(shared, fb, cx, req, false)).await;
        if let Ok(v) = HeaderValue::from_str(&fb.service) {
            resp.headers_mut().insert("x-weft-fallback", v);
        }
        return resp;
    }
    metrics.latency(cx.start.elapsed());
    let fallback = backend
        .policy
        .circuit_breaker
        .as_ref()
        .and_then(|c| c.fallback.as_ref());
    if let Some(Fallback::Static {
        status,
        body,
        headers,
    }) = fallback
    {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let class = if status.is_server_error() {
            Class::Failure
        } else {
            Class::Success
        };
        metrics.response(status.as_u16(), class);
        let mut resp = Response::new(Body::full(body.clone()));
        *resp.status_mut() = status;
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp.headers_mut()
            .insert("x-weft-fallback", HeaderValue::from_static("static"));
        resp.headers_mut()
            .insert(ERROR_HEADER, HeaderValue::from_static("circuit-open"));
        return resp;
    }
    ProxyError::CircuitOpen.response(Some(metrics))
}

/// How an attempt turned out: a response to return or an error.
type Outcome = Result<Response<Body>, ProxyError>;

fn classify(outcome: &Outcome) -> Option<Attempt> {
    match outcome {
        Ok(resp) => Some(Attempt::Response {
            status: resp.status().as_u16(),
            grpc: resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }),
        Err(ProxyError::ConnectFailed | ProxyError::ConnectTimeout | ProxyError::ConnectRejected) => {
            Some(Attempt::ConnectFailure)
        }
        Err(ProxyError::UpstreamError) => Some(Attempt::Reset),
        Err(ProxyError::ResponseTimeout) => Some(Attempt::Timeout),
        // Local conditions (limits, no endpoints) say nothing about the upstream.
        Err(_) => None,
    }
}

fn copy_request(parts: &http::request::Parts, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}

/// Time limits of one request: per attempt and overall.
#[derive(Debug, Clone, Copy)]
struct Limits {
    per_try: Option<Duration>,
    deadline: Option<Instant>,
}

impl Limits {
    /// The limits of a request whose attempts begin at `begin`: the route's
    /// timeouts where set (its request timeout counts from when the request
    /// arrived), else the Retry policy's.
    fn new(policy: Option<&RetryPolicy>, cx: &CallContext, begin: Instant) -> Self {
        let per_try = cx.timeouts.backend.or_else(|| {
            policy
                .and_then(|r| r.per_try_timeout_ms)
                .map(Duration::from_millis)
        });
        let deadline = match cx.timeouts.request {
            Some(total) => Some(begin + total.saturating_sub(cx.start.elapsed())),
            None => policy
                .and_then(|r| r.timeout_ms)
                .map(|ms| begin + Duration::from_millis(ms)),
        };
        Self { per_try, deadline }
    }

    /// The bound for an attempt starting at `now`, and whether it is the
    /// overall deadline (rather than the per-try timeout).
    fn attempt(&self, now: Instant) -> Option<(Duration, bool)> {
        let left = self.deadline.map(|d| d.saturating_duration_since(now));
        match (self.per_try, left) {
            (Some(p), Some(l)) if p < l => Some((p, false)),
            (_, Some(l)) => Some((l, true)),
            (Some(p), None) => Some((p, false)),
            (None, None) => None,
        }
    }
}

/// One attempt on `ep`, bounded by `limits`; feeds outlier detection.
async fn try_once(
    call: &Call<'_>,
    backend: &Backend,
    ep: &Arc<Endpoint>,
    req: Request<Body>,
    limits: Limits,
) -> Outcome {
    let now = Instant::now();
    let outcome = match limits.attempt(now) {
        Some((limit, overall)) => match tokio::time::timeout(limit, forward::send(call, ep, req)).await {
            Ok(r) => r,
            Err(_) if overall => Err(ProxyError::Timeout),
            Err(_) => Err(ProxyError::ResponseTimeout),
        },
        None => forward::send(call, ep, req).await,
    };
    let attempt = match &outcome {
        Err(ProxyError::Timeout) => Some(Attempt::Timeout),
        o => classify(o),
    };
    if let (Some(o), Some(a)) = (
        backend.policy.state.as_ref().and_then(|s| s.outlier.as_ref()),
        attempt,
    ) {
        o.record(ep.addr, a, backend.balancer.endpoints().len(), Instant::now());
    }
    if let (Err(ProxyError::MaxConnections), Some(s)) = (&outcome, backend.policy.state.as_ref()) {
        s.rejected(ProxyError::MaxConnections.reason());
    }
    if let Err(e) = &outcome {
        tracing::debug!(reason = e.reason(), upstream = %ep.addr, service = %backend.service, "attempt failed");
    }
    outcome
}

/// Sends `req` with retries; returns the response and whether the request
/// failed (for the breaker).
async fn attempts(
    shared: &Shared,
    backend: &Backend,
    state: Option<&ServiceState>,
    cx: &CallContext,
    req: Request<Body>,
) -> (Response<Body>, bool) {
    let (proto, peer, start) = (cx.proto, cx.peer, cx.start);
    let metrics = &backend.http_metrics;
    let begin = Instant::now();
    let policy = state.and_then(|s| s.retry.as_ref());
    let limits = Limits::new(policy, cx, begin);
    let budget = state.and_then(|s| s.budget.as_ref());
    if let Some(b) = budget {
        b.request(begin);
    }
    let upgrade = req.method() == Method::CONNECT || wants_upgrade(req.headers());
    let retry = policy.filter(|r| r.num_retries > 0 && !upgrade);
    let limited = state
        .and_then(|s| s.limits.as_ref())
        .and_then(|l| l.connector(&shared.connector));
    let call = Call {
        proto,
        metrics,
        connector: match &limited {
            Some(c) => c,
            None => &*shared.connector,
        },
        connect_timeout: backend
            .policy
            .connect_timeout
            .unwrap_or(shared.settings.connect_timeout),
        response_timeout: shared.settings.response_timeout,
        tunnel_idle: shared.settings.tcp_idle_timeout,
        max_requests_per_connection: state
            .and_then(|s| s.circuit_breaker.as_ref())
            .and_then(|c| c.connection_pool.as_ref())
            .and_then(|p| p.max_requests_per_connection),
        start,
        drain: &shared.drain,
    };
    let done = |outcome: Outcome| {
        metrics.latency(start.elapsed());
        let failed = classify(&outcome).is_none_or(Attempt::is_failure);
        match outcome {
            Ok(resp) => (resp, failed),
            Err(e) => (e.response(Some(metrics)), true),
        }
    };
    let (parts, body) = req.into_parts();
    let (Some(policy), Some(state)) = (retry, state) else {
        let Some(ep) = pick_endpoint(backend, &parts.headers, peer, &[], begin) else {
            return done(Err(ProxyError::NoHealthyEndpoints));
        };
        let req = Request::from_parts(parts, body);
        return done(try_once(&call, backend, &ep, req, limits).await);
    };
    let replay = Replay::new(body);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut retries = 0u32;
    loop {
        let Some(ep) = pick_endpoint(backend, &parts.headers, peer, &tried, Instant::now()) else {
            return done(Err(ProxyError::NoHealthyEndpoints));
        };
        let outcome = try_once(&call, backend, &ep, copy_request(&parts, replay.body()), limits).await;
        let reason = match classify(&outcome) {
            _ if matches!(outcome, Err(ProxyError::Timeout)) => None,
            Some(a) => retry_reason(policy, a),
            None => None,
        };
        let Some(reason) = reason else {
            return done(outcome);
        };
        if retries >= policy.num_retries || !replay.replayable() {
            return done(outcome);
        }
        let now = Instant::now();
        if budget.is_some_and(|b| !b.try_retry(now)) {
            state.retry_metrics.budget_exhausted.inc();
            tracing::debug!(service = %backend.service, "retry budget exhausted");
            return done(outcome);
        }
        retries += 1;
        let delay = with_thread_rng(|rng| {
            let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            backoff(&policy.backoff, retries, unit)
        });
        // No time left for another attempt: the client gets this one's result now.
        if limits.deadline.is_some_and(|d| now + delay >= d) {
            return done(outcome);
        }
        if let Ok(resp) = outcome {
            resp.into_body().discard();
        }
        state.retry_metrics.retried(reason);
        tracing::debug!(service = %backend.service, upstream = %ep.addr, reason = reason.label(), retries, "retrying");
        tried.push(ep.addr);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_timeouts_replace_the_retry_policy_ones() {
        let retry: RetryPolicy = serde_json::from_value(serde_json::json!({
            "source": "shop/retry", "numRetries": 2, "retryOn": ["5xx"],
            "perTryTimeoutMs": 50, "timeoutMs": 1000,
            "backoff": {"baseMs": 1, "maxMs": 2},
            "budget": {"ratio": 0.2, "minPerSecond": 1, "windowMs": 1000}
        }))
        .unwrap();
        let mut cx = CallContext {
            proto: Proto::Http1,
            peer: "127.0.0.1:1".parse().unwrap(),
            start: std::time::Instant::now(),
            timeouts: RouteTimeouts::default(),
        };
        let begin = Instant::now();
        let l = Limits::new(Some(&retry), &cx, begin);
        assert_eq!(l.per_try, Some(Duration::from_millis(50)));
        assert_eq!(l.deadline, Some(begin + Duration::from_secs(1)));
        cx.timeouts = RouteTimeouts {
            request: Some(Duration::from_secs(5)),
            backend: Some(Duration::from_millis(200)),
        };
        let l = Limits::new(Some(&retry), &cx, begin);
        assert_eq!(l.per_try, Some(Duration::from_millis(200)));
        // The route's request timeout counts from when the request arrived.
        let d = l.deadline.unwrap();
        assert!(d <= begin + Duration::from_secs(5) && d > begin + Duration::from_secs(4));
        let l = Limits::new(None, &cx, begin);
        assert_eq!(l.per_try, Some(Duration::from_millis(200)));
        assert_eq!(
            Limits::new(
                None,
                &CallContext {
                    timeouts: RouteTimeouts::default(),
                    ..cx
                },
                begin
            )
            .deadline,
            None
        );
    }
}

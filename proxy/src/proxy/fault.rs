//! Fault injection on the outbound side, before the breaker, the pool limits
//! and retries: the route's first matching FaultInjection rule may delay the
//! request (a tokio sleep) and, rolled independently, abort it with a local
//! answer that never reaches the upstream and is never retried. Aborts are
//! counted in the backend's normal request metrics, so success rates see them.
//!
//! Abort shapes: a gRPC request (`content-type: application/grpc*`) with a
//! `grpcStatus` set gets a trailers-only gRPC answer (HTTP 200, `grpc-status`,
//! `grpc-message: fault%20injected`); otherwise the answer is `httpStatus`, or
//! 503 when only `grpcStatus` is set and the request is not gRPC. Every abort
//! carries `x-weft-error: fault-abort`.

use super::body::Body;
use super::errors::ERROR_HEADER;
use crate::lb::rng::{chance, with_thread_rng};
use crate::metrics::{Class, HttpMetrics};
use crate::routing::traffic::FaultRule;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::time::{Duration, Instant};
use weft_proxy_config::FaultAbort;

/// `x-weft-error` value of an injected abort.
pub const FAULT_ABORT: &str = "fault-abort";

/// Whether the request is gRPC.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// What the dice said for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roll {
    pub delay: Option<Duration>,
    pub abort: bool,
}

/// Rolls delay and abort independently.
pub fn roll(rule: &FaultRule) -> Roll {
    with_thread_rng(|rng| Roll {
        delay: rule
            .delay
            .as_ref()
            .filter(|d| chance(rng, d.percent))
            .map(|d| Duration::from_millis(d.delay_ms)),
        abort: rule.abort.as_ref().is_some_and(|a| chance(rng, a.percent)),
    })
}

/// Applies `rule` to a request: sleeps when the delay is rolled, and returns
/// the local answer when the abort is rolled (counted in `metrics` as one
/// request and its response).
pub async fn apply(
    rule: &FaultRule,
    headers: &HeaderMap,
    metrics: &HttpMetrics,
    start: Instant,
) -> Option<Response<Body>> {
    let r = roll(rule);
    if let Some(d) = r.delay {
        rule.delays.inc();
        tracing::debug!(source = %rule.source, delay_ms = d.as_millis() as u64, "injecting a delay");
        tokio::time::sleep(d).await;
    }
    let abort = rule.abort.as_ref().filter(|_| r.abort)?;
    rule.aborts.inc();
    metrics.request();
    let resp = abort_response(abort, is_grpc(headers));
    let grpc_failed = resp.headers().contains_key("grpc-status");
    let class = if resp.status().is_server_error() || grpc_failed {
        Class::Failure
    } else {
        Class::Success
    };
    metrics.latency(start.elapsed());
    metrics.response(resp.status().as_u16(), class);
    tracing::debug!(source = %rule.source, status = resp.status().as_u16(), "injecting an abort");
    Some(resp)
}

/// The local answer of an abort.
pub fn abort_response(abort: &FaultAbort, grpc: bool) -> Response<Body> {
    let mut resp = match (grpc, abort.grpc_status) {
        (true, Some(code)) => {
            // Trailers-only: the status travels in the headers, the body is empty.
            let mut r = Response::new(Body::empty());
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(code));
            h.insert("grpc-message", HeaderValue::from_static("fault%20injected"));
            r
        }
        _ => {
            let status = abort
                .http_status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut r = Response::new(Body::full("fault injected\n"));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
    };
    resp.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(FAULT_ABORT));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort(http: Option<u16>, grpc: Option<u32>) -> FaultAbort {
        FaultAbort {
            http_status: http,
            grpc_status: grpc,
            percent: 100.0,
        }
    }

    #[test]
    fn grpc_requests_get_trailers_only_answers() {
        let r = abort_response(&abort(Some(500), Some(14)), true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "fault%20injected");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()[ERROR_HEADER], FAULT_ABORT);
        assert!(hyper::body::Body::is_end_stream(r.body()));
        // Plain requests get the HTTP status, or 503 with only a gRPC code.
        assert_eq!(abort_response(&abort(Some(500), Some(14)), false).status(), 500);
        assert_eq!(abort_response(&abort(None, Some(14)), false).status(), 503);
        // gRPC requests without a gRPC code get the HTTP status.
        let r = abort_response(&abort(Some(429), None), true);
        assert_eq!(r.status(), 429);
        assert!(!r.headers().contains_key("grpc-status"));
    }

    #[test]
    fn grpc_is_recognized_by_content_type() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&h));
    }
}

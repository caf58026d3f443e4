//! Sending one request to one chosen endpoint over a pooled connection:
//! hop-by-hop cleanup, HTTP/1 upgrades (WebSocket, CONNECT; which ones is decided
//! before, by [`super::tunnel`]) turned into a byte tunnel tracked by the drain,
//! a response-header timeout, latency feeding the balancer, and a
//! response body that finishes the bookkeeping when it ends. The caller records
//! the request's latency (it may make several attempts).

use super::Proto;
use super::body::{Body, Finish, UpstreamBody, grpc_failed};
use super::connect::{ConnectError, Connector};
use super::errors::ProxyError;
use super::headers::{strip_hop_by_hop, wants_upgrade};
use super::pool::{checkout_h1, checkout_h2};
use crate::drain::Drain;
use crate::endpoint::{Endpoint, now_ns};
use crate::metrics::{Class, HttpMetrics};
use http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-call parameters.
#[derive(Debug)]
pub struct Call<'a> {
    pub proto: Proto,
    pub metrics: &'a Arc<HttpMetrics>,
    pub connector: &'a dyn Connector,
    pub connect_timeout: Duration,
    pub response_timeout: Option<Duration>,
    /// Idle timeout of upgraded tunnels.
    pub tunnel_idle: Duration,
    /// Retire pooled connections after this many requests.
    pub max_requests_per_connection: Option<u32>,
    /// When the request headers were received (latency origin).
    pub start: Instant,
    /// Upgraded tunnels register here, so shutdown waits for them and counts them.
    pub drain: &'a Drain,
}

impl From<ConnectError> for ProxyError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Timeout(_) => Self::ConnectTimeout,
            ConnectError::Io(_) => Self::ConnectFailed,
            ConnectError::Rejected(_) => Self::ConnectRejected,
            ConnectError::Overflow(_) => Self::MaxConnections,
        }
    }
}

async fn bounded<F: Future>(limit: Option<Duration>, fut: F) -> Result<F::Output, ProxyError> {
    match limit {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| ProxyError::ResponseTimeout),
        None => Ok(fut.await),
    }
}

/// Sends `req` to `ep` and returns the upstream response (or why not).
pub async fn send(
    call: &Call<'_>,
    ep: &Arc<Endpoint>,
    mut req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let is_connect = req.method() == Method::CONNECT;
    let is_head = req.method() == Method::HEAD;
    let upgrade = call.proto == Proto::Http1 && (is_connect || wants_upgrade(req.headers()));
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    strip_hop_by_hop(req.headers_mut(), upgrade);
    let in_flight = ep.load.start();

    let (mut resp, pooled) = match call.proto {
        Proto::Http1 => {
            let mut req = req;
            let mut retried = false;
            loop {
                let (mut conn, reused) = checkout_h1(
                    ep,
                    call.connector,
                    call.connect_timeout,
                    call.max_requests_per_connection,
                )
                .await?;
                match bounded(call.response_timeout, conn.sender.try_send_request(req)).await? {
                    Ok(resp) => break (resp, Some(conn)),
                    Err(mut e) => match e.take_message() {
                        // The pooled connection closed before the request was written:
                        // nothing reached the upstream, so one retry on a fresh one is safe.
                        Some(r) if reused && !retried => {
                            req = r;
                            retried = true;
                        }
                        _ => {
                            tracing::debug!(error = %e.error(), upstream = %ep.addr, "upstream request failed");
                            return Err(ProxyError::UpstreamError);
                        }
                    },
                }
            }
        }
        Proto::Http2 => {
            let mut req = req;
            let mut retried = false;
            loop {
                let mut sender = checkout_h2(
                    ep,
                    call.connector,
                    call.connect_timeout,
                    call.max_requests_per_connection,
                )
                .await?;
                match bounded(call.response_timeout, sender.try_send_request(req)).await? {
                    Ok(resp) => break (resp, None),
                    Err(mut e) => match e.take_message() {
                        Some(r) if !retried => {
                            req = r;
                            retried = true;
                        }
                        _ => {
                            tracing::debug!(error = %e.error(), upstream = %ep.addr, "upstream h2 request failed");
                            return Err(ProxyError::UpstreamError);
                        }
                    },
                }
            }
        }
    };

    let elapsed = call.start.elapsed();
    ep.load.observe(elapsed, now_ns());
    let status = resp.status();
    let mut class = if status.is_server_error() {
        Class::Failure
    } else {
        Class::Success
    };
    if resp.headers().get("grpc-status").is_some_and(grpc_failed) {
        class = Class::Failure;
    }
    let upgraded =
        upgrade && (status == StatusCode::SWITCHING_PROTOCOLS || (is_connect && status.is_success()));
    if let (true, Some(down)) = (upgraded, downstream_upgrade) {
        let up = hyper::upgrade::on(&mut resp);
        let idle = call.tunnel_idle;
        // The downstream connection's own guard ends with hyper's serve future at
        // the upgrade: the tunnel holds one of its own.
        let guard = call.drain.track();
        tokio::spawn(async move {
            let _guard = guard;
            match tokio::try_join!(down, up) {
                Ok((d, u)) => {
                    crate::net::tcp::forward(TokioIo::new(d), TokioIo::new(u), idle).await;
                }
                Err(error) => tracing::debug!(%error, "upgrade failed"),
            }
        });
    }
    strip_hop_by_hop(resp.headers_mut(), upgraded);
    let (parts, body) = resp.into_parts();
    let finish = Finish {
        metrics: Arc::clone(call.metrics),
        status: status.as_u16(),
        class,
        pool: pooled.filter(|_| !upgraded).map(|s| (s, Arc::clone(ep))),
        in_flight: Some(in_flight),
        count: true,
    };
    let body = if is_head {
        UpstreamBody::head(body, finish)
    } else {
        UpstreamBody::new(body, finish)
    };
    Ok(Response::from_parts(parts, Body::Upstream(body)))
}

//! Per-endpoint upstream connection pools: a LIFO stack of idle HTTP/1.1
//! connections and one shared, multiplexed HTTP/2 connection. Each endpoint has
//! its own short-held lock, so there is no global lock on the request path.

use super::body::Body;
use super::connect::{ConnectError, Connector};
use crate::endpoint::Endpoint;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Mutex;
use std::time::Duration;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_H1: usize = 256;

/// HTTP/1 request sender.
pub type H1Sender = http1::SendRequest<Body>;
/// HTTP/2 request sender.
pub type H2Sender = http2::SendRequest<Body>;

/// The pooled connections of one endpoint.
#[derive(Debug, Default)]
pub struct EndpointPool {
    h1: Mutex<Vec<H1Sender>>,
    h2: Mutex<Option<H2Sender>>,
}

impl EndpointPool {
    /// Returns an HTTP/1 connection after a response completed cleanly.
    pub fn put_h1(&self, sender: H1Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.h1.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_H1 {
            idle.push(sender);
        }
    }

    fn pop_h1(&self) -> Option<H1Sender> {
        self.h1.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Number of idle HTTP/1 connections (for tests and debugging).
    pub fn idle_h1(&self) -> usize {
        self.h1.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Checks out a ready HTTP/1 connection to `ep`, opening one if none is idle.
/// The second value tells whether the connection was reused.
pub async fn checkout_h1(
    ep: &Endpoint,
    connector: &dyn Connector,
    timeout: Duration,
) -> Result<(H1Sender, bool), ConnectError> {
    while let Some(mut sender) = ep.pool.pop_h1() {
        if sender.is_ready() {
            return Ok((sender, true));
        }
        if sender.is_closed() {
            continue;
        }
        // Returned right at end of body: becomes ready (or closes) promptly.
        if let Ok(Ok(())) = tokio::time::timeout(timeout, sender.ready()).await {
            return Ok((sender, true));
        }
    }
    let io = connector.connect(ep, timeout).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError::Rejected(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "upstream http/1 connection ended");
        }
    });
    Ok((sender, false))
}

/// The shared HTTP/2 connection to `ep`, opened on first use or after it closed.
pub async fn checkout_h2(
    ep: &Endpoint,
    connector: &dyn Connector,
    timeout: Duration,
) -> Result<H2Sender, ConnectError> {
    {
        let cur = ep.pool.h2.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cur.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
    }
    let io = connector.connect(ep, timeout).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .adaptive_window(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError::Rejected(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "upstream http/2 connection ended");
        }
    });
    let mut cur = ep.pool.h2.lock().unwrap_or_else(|p| p.into_inner());
    match cur.as_ref().filter(|s| !s.is_closed()) {
        // Another request raced us and won: use its connection, drop ours.
        Some(s) => Ok(s.clone()),
        None => {
            *cur = Some(sender.clone());
            Ok(sender)
        }
    }
}

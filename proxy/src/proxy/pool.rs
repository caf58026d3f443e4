//! Per-endpoint upstream connection pools: a LIFO stack of idle HTTP/1.1
//! connections and one shared, multiplexed HTTP/2 connection. Each endpoint has
//! its own short-held lock, so there is no global lock on the request path.
//! Connections count their requests so a circuit breaker's
//! `maxRequestsPerConnection` retires them.

use super::body::Body;
use super::connect::{Alpn, ConnectError, Connector};
use crate::endpoint::Endpoint;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_H1: usize = 256;

/// HTTP/1 request sender.
pub type H1Sender = http1::SendRequest<Body>;
/// HTTP/2 request sender.
pub type H2Sender = http2::SendRequest<Body>;

/// An HTTP/1 connection and the number of requests it has carried.
#[derive(Debug)]
pub struct H1Conn {
    pub sender: H1Sender,
    pub uses: u32,
    /// Retire the connection after this many requests.
    pub max_uses: Option<u32>,
}

/// The pooled connections of one endpoint.
#[derive(Debug, Default)]
pub struct EndpointPool {
    h1: Mutex<Vec<H1Conn>>,
    h2: Mutex<Option<(H2Sender, Arc<AtomicU32>)>>,
}

impl EndpointPool {
    /// Returns an HTTP/1 connection after a response completed cleanly.
    pub fn put_h1(&self, conn: H1Conn) {
        if conn.sender.is_closed() || conn.max_uses.is_some_and(|m| conn.uses >= m) {
            return;
        }
        let mut idle = self.h1.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_H1 {
            idle.push(conn);
        }
    }

    fn pop_h1(&self) -> Option<H1Conn> {
        self.h1.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Number of idle HTTP/1 connections (for tests and debugging).
    pub fn idle_h1(&self) -> usize {
        self.h1.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Checks out a ready HTTP/1 connection to `ep`, opening one if none is idle,
/// and counts one use of it. The second value tells whether it was reused.
pub async fn checkout_h1(
    ep: &Endpoint,
    connector: &dyn Connector,
    timeout: Duration,
    max_uses: Option<u32>,
) -> Result<(H1Conn, bool), ConnectError> {
    while let Some(mut conn) = ep.pool.pop_h1() {
        conn.uses += 1;
        conn.max_uses = max_uses;
        if conn.sender.is_ready() {
            return Ok((conn, true));
        }
        if conn.sender.is_closed() {
            continue;
        }
        // Returned right at end of body: becomes ready (or closes) promptly.
        if let Ok(Ok(())) = tokio::time::timeout(timeout, conn.sender.ready()).await {
            return Ok((conn, true));
        }
    }
    let io = connector.connect(ep, timeout, Alpn::Http1).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError::Rejected(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "upstream http/1 connection ended");
        }
    });
    Ok((
        H1Conn {
            sender,
            uses: 1,
            max_uses,
        },
        false,
    ))
}

/// Counts a use of a shared HTTP/2 connection; one that reached `max_uses`
/// leaves the pool (its open streams finish, new requests get a new one).
fn use_h2(slot: &mut Option<(H2Sender, Arc<AtomicU32>)>, max_uses: Option<u32>) -> Option<H2Sender> {
    let (s, uses) = slot.as_ref().filter(|(s, _)| !s.is_closed())?;
    let s = s.clone();
    let n = uses.fetch_add(1, Ordering::Relaxed) + 1;
    if max_uses.is_some_and(|m| n >= m) {
        *slot = None;
    }
    Some(s)
}

/// The shared HTTP/2 connection to `ep`, opened on first use or after it closed.
pub async fn checkout_h2(
    ep: &Endpoint,
    connector: &dyn Connector,
    timeout: Duration,
    max_uses: Option<u32>,
) -> Result<H2Sender, ConnectError> {
    if let Some(s) = use_h2(
        &mut ep.pool.h2.lock().unwrap_or_else(|p| p.into_inner()),
        max_uses,
    ) {
        return Ok(s);
    }
    let io = connector.connect(ep, timeout, Alpn::Http2).await?;
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
    // Another request raced us and won: use its connection, drop ours.
    if let Some(s) = use_h2(&mut cur, max_uses) {
        return Ok(s);
    }
    if max_uses != Some(1) {
        *cur = Some((sender.clone(), Arc::new(AtomicU32::new(1))));
    }
    Ok(sender)
}

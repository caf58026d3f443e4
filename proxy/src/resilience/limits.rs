//! Connection-pool limits of a CircuitBreaker: concurrent requests
//! (`maxRequests`) with a bounded wait queue (`maxPendingRequests`, default 0 =
//! fail fast), and open upstream connections (`maxConnections`, enforced by
//! wrapping the connector). Excess fails fast with a 503 naming the limit.

use crate::endpoint::Endpoint;
use crate::proxy::connect::{Alpn, BoxIo, ConnectError, ConnectFuture, Connector};
use crate::proxy::errors::ProxyError;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weft_proxy_config::ConnectionPool;

/// Limit state of one service.
#[derive(Debug)]
pub struct Limits {
    active: Option<(Arc<Semaphore>, u32)>,
    max_pending: u32,
    pending: AtomicU32,
    connections: Arc<AtomicU32>,
    max_connections: Option<u32>,
}

/// Holds one active-request slot.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Limits {
    /// Limits per `cfg`.
    pub fn new(cfg: &ConnectionPool) -> Self {
        Self {
            active: cfg
                .max_requests
                .map(|n| (Arc::new(Semaphore::new(n as usize)), n)),
            max_pending: cfg.max_pending_requests.unwrap_or(0),
            pending: AtomicU32::new(0),
            connections: Arc::new(AtomicU32::new(0)),
            max_connections: cfg.max_connections,
        }
    }

    /// Takes an active-request slot, waiting up to `wait` in the pending queue
    /// when there is room in it.
    pub async fn admit(&self, wait: Duration) -> Result<Slot, ProxyError> {
        let Some((sem, _)) = &self.active else {
            return Ok(Slot(None));
        };
        if let Ok(p) = Arc::clone(sem).try_acquire_owned() {
            return Ok(Slot(Some(p)));
        }
        let queued = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_pending).then_some(n + 1)
            });
        if queued.is_err() {
            return Err(if self.max_pending == 0 {
                ProxyError::MaxRequests
            } else {
                ProxyError::PendingOverflow
            });
        }
        let got = tokio::time::timeout(wait, Arc::clone(sem).acquire_owned()).await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(Slot(Some(p))),
            _ => Err(ProxyError::PendingOverflow),
        }
    }

    /// `(active, pending, connections)` now (admin view).
    pub fn usage(&self) -> (u32, u32, u32) {
        let active = self
            .active
            .as_ref()
            .map_or(0, |(s, n)| n.saturating_sub(s.available_permits() as u32));
        (
            active,
            self.pending.load(Ordering::Acquire),
            self.connections.load(Ordering::Acquire),
        )
    }

    /// `inner` limited to `maxConnections` open connections for this service.
    pub fn connector(&self, inner: &Arc<dyn Connector>) -> Option<LimitedConnector> {
        self.max_connections.map(|max| LimitedConnector {
            inner: Arc::clone(inner),
            count: Arc::clone(&self.connections),
            max,
        })
    }
}

/// A connector that refuses to open more than `max` connections at once.
#[derive(Debug, Clone)]
pub struct LimitedConnector {
    inner: Arc<dyn Connector>,
    count: Arc<AtomicU32>,
    max: u32,
}

impl Connector for LimitedConnector {
    fn connect<'a>(&'a self, ep: &'a Endpoint, timeout: Duration, alpn: Alpn) -> ConnectFuture<'a> {
        Box::pin(async move {
            self.count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max).then_some(n + 1)
                })
                .map_err(|_| ConnectError::Overflow("max-connections"))?;
            let guard = Counted(Arc::clone(&self.count));
            let io = self.inner.connect(ep, timeout, alpn).await?;
            Ok(Box::new(CountedIo { io, _guard: guard }) as BoxIo)
        })
    }
}

#[derive(Debug)]
struct Counted(Arc<AtomicU32>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection that releases its slot when dropped.
struct CountedIo {
    io: BoxIo,
    _guard: Counted,
}

impl AsyncRead for CountedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_fail_fast_or_queue() {
        let l = Limits::new(&ConnectionPool {
            max_requests: Some(1),
            ..Default::default()
        });
        let a = l.admit(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            l.admit(Duration::from_secs(1)).await.unwrap_err(),
            ProxyError::MaxRequests
        );
        drop(a);
        let _a = l.admit(Duration::from_secs(1)).await.unwrap();
        assert_eq!(l.usage().0, 1);

        let q = Arc::new(Limits::new(&ConnectionPool {
            max_requests: Some(1),
            max_pending_requests: Some(1),
            ..Default::default()
        }));
        let held = q.admit(Duration::from_secs(1)).await.unwrap();
        let q2 = Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.admit(Duration::from_secs(5)).await.is_ok() });
        tokio::task::yield_now().await;
        assert_eq!(q.usage().1, 1);
        assert_eq!(
            q.admit(Duration::from_secs(1)).await.unwrap_err(),
            ProxyError::PendingOverflow
        );
        drop(held);
        assert!(waiter.await.unwrap());
    }
}

//! Opaque TCP forwarding: bidirectional copy that propagates half-close (EOF
//! on one side shuts down writes on the other) and gives up after an idle
//! period with no bytes in either direction.

use crate::endpoint::now_ns;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copy buffer per direction.
const BUF: usize = 64 * 1024;

/// How a forwarded connection ended and what it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOutcome {
    /// Bytes read from the downstream peer (sent upstream).
    pub from_downstream: u64,
    /// Bytes read from upstream (sent downstream).
    pub from_upstream: u64,
    /// Closed by the idle timeout.
    pub idle_timeout: bool,
}

struct Tracked<T> {
    inner: T,
    read: u64,
    activity: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.read += n;
            self.activity.store(now_ns(), Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn idle_watch(activity: &AtomicU64, idle: Duration) {
    let idle_ns = idle.as_nanos() as u64;
    loop {
        let last = activity.load(Ordering::Relaxed);
        let since = now_ns().saturating_sub(last);
        if since >= idle_ns {
            return;
        }
        tokio::time::sleep(Duration::from_nanos(idle_ns - since)).await;
    }
}

/// Forwards bytes both ways until both sides closed, an error, or `idle` passes
/// with no traffic.
pub async fn forward<D, U>(down: D, up: U, idle: Duration) -> TcpOutcome
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(AtomicU64::new(now_ns()));
    let mut d = Tracked {
        inner: down,
        read: 0,
        activity: Arc::clone(&activity),
    };
    let mut u = Tracked {
        inner: up,
        read: 0,
        activity: Arc::clone(&activity),
    };
    let idle_timeout = tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut d, &mut u, BUF, BUF) => {
            if let Err(error) = r {
                tracing::debug!(%error, "tcp forward ended with an error");
            }
            false
        }
        () = idle_watch(&activity, idle) => true,
    };
    TcpOutcome {
        from_downstream: d.read,
        from_upstream: u.read,
        idle_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_with_half_close() {
        let (mut client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(forward(proxy_down, proxy_up, Duration::from_secs(5)));
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        // The server can still answer after the client's half-close.
        server.write_all(b"pong!").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong!");
        let out = task.await.unwrap();
        assert_eq!(
            (out.from_downstream, out.from_upstream, out.idle_timeout),
            (4, 5, false)
        );
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let (_client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, _server) = tokio::io::duplex(1024);
        let out = forward(proxy_down, proxy_up, Duration::from_millis(50)).await;
        assert!(out.idle_timeout);
    }
}

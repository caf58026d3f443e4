//! Idle bookkeeping for one served HTTP connection: how many requests are in
//! flight (a request counts until its response body has been sent or dropped),
//! when the connection became idle, and the stream idle timeout on response
//! bodies. `serve` closes a connection gracefully once it has been idle for the
//! connection idle timeout (as Envoy's `idle_timeout`), and a response body that
//! produces nothing for the stream idle timeout is aborted (Envoy's
//! `stream_idle_timeout`).

use crate::endpoint::now_ns;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// In-flight requests and the time the connection last became idle.
#[derive(Debug)]
pub struct Activity {
    active: AtomicUsize,
    idle_since_ns: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            active: AtomicUsize::new(0),
            idle_since_ns: AtomicU64::new(now_ns()),
        }
    }
}

/// Held while one request is in flight; marks the connection idle when the last
/// one ends.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since_ns.store(now_ns(), Ordering::Release);
        }
    }
}

impl Activity {
    /// Counts a request as in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(Arc::clone(self))
    }

    /// How long the connection has been idle (zero while a request is in flight).
    pub fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = self.idle_since_ns.load(Ordering::Acquire);
        Duration::from_nanos(now_ns().saturating_sub(since))
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub async fn idle_expired(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            // Re-check when the current idle period would end (or a full timeout
            // from now while busy): no timer work per request.
            tokio::time::sleep(timeout - idle).await;
        }
    }
}

/// Error of a response body aborted by the stream idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("response stream idle for {0:?}")]
pub struct StreamIdle(pub Duration);

/// A response body as served downstream: keeps its request counted as in flight
/// and aborts when no frame arrives for `idle` (the deadline is re-armed lazily,
/// not per frame).
#[derive(Debug)]
pub struct Served<B> {
    inner: B,
    _guard: ActiveGuard,
    idle: Duration,
    last_frame: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Served<B> {
    pub fn new(inner: B, guard: ActiveGuard, idle: Duration) -> Self {
        Self {
            inner,
            _guard: guard,
            idle,
            last_frame: Instant::now(),
            timer: None,
        }
    }
}

impl<B> HttpBody for Served<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.last_frame = Instant::now();
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        loop {
            let deadline = this.last_frame + this.idle;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            ready!(timer.as_mut().poll(cx));
            if Instant::now() >= this.last_frame + this.idle {
                return Poll::Ready(Some(Err(Box::new(StreamIdle(this.idle)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn idle_only_when_nothing_in_flight() {
        let a = Arc::new(Activity::default());
        let g1 = a.start();
        let g2 = a.start();
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(g1);
        assert_eq!(a.idle_for(), Duration::ZERO, "one request still in flight");
        drop(g2);
        std::thread::sleep(Duration::from_millis(5));
        assert!(a.idle_for() >= Duration::from_millis(5));
    }

    #[tokio::test]
    async fn idle_expired_waits_for_the_last_request() {
        let a = Arc::new(Activity::default());
        let g = a.start();
        let t0 = std::time::Instant::now();
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.idle_expired(Duration::from_millis(100)).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiter.is_finished(), "a request is in flight");
        drop(g);
        waiter.await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
    }

    /// A body fed frame by frame from a channel.
    struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Channel {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_body_is_aborted_after_the_idle_timeout() {
        let a = Arc::new(Activity::default());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut body = Served::new(Channel(rx), a.start(), Duration::from_secs(5));
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_secs(4)).await;
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert!(
            body.frame().await.unwrap().is_ok(),
            "4 s apart is within the timeout"
        );
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("idle"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(
            a.idle_for(),
            Duration::ZERO,
            "in flight until the body is dropped"
        );
        drop(body);
        assert!(a.idle_for() < Duration::from_secs(1), "the guard was released");
        drop(tx);
    }
}

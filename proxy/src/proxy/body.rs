//! The one body type the proxy passes around: a downstream body forwarded as is,
//! a small synthesized body (errors), or an upstream response body that, when it
//! ends, returns its HTTP/1 connection to the pool, releases the balancer's
//! in-flight slot and counts the response (classified by status and, for gRPC,
//! by `grpc-status` in the trailers).

use super::pool::H1Conn;
use crate::endpoint::{Endpoint, InFlight};
use crate::metrics::{Class, HttpMetrics};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Request or response body.
#[derive(Debug)]
pub enum Body {
    /// A body received from a peer, forwarded unchanged.
    Incoming(Incoming),
    /// A complete in-memory body (`None` once sent).
    Full(Option<Bytes>),
    /// An upstream response body with end-of-stream bookkeeping.
    Upstream(UpstreamBody),
    /// A request body kept for retries.
    Replay(super::replay::ReplayBody),
    /// A request body copied for mirrors while it is forwarded.
    Tee(super::tee::TeeBody),
    /// A mirror's copy of a request body.
    Copy(super::tee::CopyBody),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// A body holding `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b: Bytes = bytes.into();
        Self::Full(if b.is_empty() { None } else { Some(b) })
    }
}

/// Whether a `grpc-status` header value marks a failed call.
pub fn grpc_failed(v: &http::HeaderValue) -> bool {
    v.as_bytes() != b"0"
}

/// Work to do once when an upstream response finishes.
#[derive(Debug)]
pub struct Finish {
    pub metrics: Arc<HttpMetrics>,
    pub status: u16,
    pub class: Class,
    /// HTTP/1 connection to return to the pool on a clean end.
    pub pool: Option<(H1Conn, Arc<Endpoint>)>,
    pub in_flight: Option<InFlight>,
    /// Whether the response is counted (not for attempts that were retried).
    pub count: bool,
}

impl Finish {
    fn complete(self, clean: bool) {
        let class = if clean { self.class } else { Class::Failure };
        if self.count {
            self.metrics.response(self.status, class);
        }
        if let (true, Some((conn, ep))) = (clean, self.pool) {
            ep.pool.put_h1(conn);
        }
    }
}

/// An upstream response body.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    finish: Option<Finish>,
    /// The response to a HEAD request: no content, whatever the upstream sends.
    head: bool,
}

impl UpstreamBody {
    /// Wraps `inner`; `finish` runs at end of stream, on error, or on drop.
    pub fn new(inner: Incoming, finish: Finish) -> Self {
        Self {
            inner,
            finish: Some(finish),
            head: false,
        }
    }

    /// The body of a response to HEAD (RFC 9110 §9.3.2: it has no content). It
    /// ends at once and never reads `inner`: an HTTP/2 upstream that sends DATA
    /// anyway (hyper's h2 server does when the app returns a body) would
    /// otherwise reset the stream with PROTOCOL_ERROR before the downstream saw
    /// the headers. The upstream's `content-length` header is kept.
    pub fn head(inner: Incoming, finish: Finish) -> Self {
        Self {
            inner,
            finish: Some(finish),
            head: true,
        }
    }

    fn complete(&mut self) {
        if let Some(mut f) = self.finish.take() {
            let ended = self.inner.is_end_stream();
            if self.head {
                // Counted by status; a connection with unread DATA is not reused.
                if !ended {
                    f.pool = None;
                }
                f.complete(true);
            } else {
                f.complete(ended);
            }
        }
    }
}

impl Body {
    /// Drops a response body without counting it as a response (an attempt
    /// that is retried). Its connection is closed, not pooled.
    pub fn discard(self) {
        if let Self::Upstream(mut b) = self
            && let Some(f) = b.finish.as_mut()
        {
            f.count = false;
            f.pool = None;
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.complete();
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.head {
            this.complete();
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(f)) = (frame.trailers_ref(), this.finish.as_mut())
                    && trailers.get("grpc-status").is_some_and(grpc_failed)
                {
                    f.class = Class::Failure;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.finish.take() {
                    f.complete(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.finish.take() {
                    f.complete(false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.head || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.head {
            // Unknown, not 0: hyper would otherwise add `content-length: 0`.
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Incoming(b) => Pin::new(b).poll_frame(cx),
            Self::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
            Self::Replay(b) => b.poll(cx),
            Self::Tee(b) => b.poll(cx),
            Self::Copy(b) => b.poll(),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Incoming(b) => b.is_end_stream(),
            Self::Full(b) => b.is_none(),
            Self::Upstream(b) => b.is_end_stream(),
            Self::Replay(b) => b.is_end(),
            Self::Tee(b) => b.is_end(),
            Self::Copy(b) => b.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Incoming(b) => b.size_hint(),
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Upstream(b) => b.size_hint(),
            Self::Replay(b) => b.hint(),
            Self::Tee(b) => b.hint(),
            Self::Copy(b) => b.hint(),
        }
    }
}

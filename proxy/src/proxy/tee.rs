//! A request body that feeds mirrors: every frame goes to the primary upstream
//! unchanged and as it arrives, while a copy of up to the largest subscriber's
//! bound is kept. When the body ends, each subscriber whose bound the body fits
//! gets the whole copy (data and trailers) through a oneshot; a subscriber gets
//! nothing (its sender is dropped) when the body grows past its bound, fails, or
//! is dropped unfinished. The primary never waits for a subscriber.

use super::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// A complete copy of a request body.
#[derive(Debug, Default, Clone)]
pub struct BodyCopy {
    pub data: Vec<Bytes>,
    pub trailers: Option<HeaderMap>,
}

impl BodyCopy {
    /// Total data bytes.
    pub fn len(&self) -> u64 {
        self.data.iter().map(|d| d.len() as u64).sum()
    }

    /// Whether the copy holds no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A body replaying the copy.
    pub fn into_body(self) -> Body {
        let len = self.len();
        Body::Copy(CopyBody {
            data: self.data.into(),
            trailers: self.trailers,
            len,
        })
    }
}

/// The primary's body, copying for subscribers.
#[derive(Debug)]
pub struct TeeBody {
    inner: Box<Body>,
    copy: Vec<Bytes>,
    bytes: u64,
    trailers: Option<HeaderMap>,
    /// `(bound, sender)` per subscriber still waiting.
    waiters: Vec<(u64, oneshot::Sender<BodyCopy>)>,
    done: bool,
}

impl TeeBody {
    /// Wraps the primary body.
    pub fn new(inner: Body) -> Self {
        Self {
            inner: Box::new(inner),
            copy: Vec::new(),
            bytes: 0,
            trailers: None,
            waiters: Vec::new(),
            done: false,
        }
    }

    /// A receiver of the whole body if it ends within `bound` bytes. Subscribe
    /// before the first frame is read.
    pub fn subscribe(&mut self, bound: u64) -> oneshot::Receiver<BodyCopy> {
        let (tx, rx) = oneshot::channel();
        if !self.done && self.bytes <= bound {
            self.waiters.push((bound, tx));
        }
        rx
    }

    fn deliver(&mut self) {
        self.done = true;
        let copy = BodyCopy {
            data: std::mem::take(&mut self.copy),
            trailers: self.trailers.take(),
        };
        for (_, tx) in self.waiters.drain(..) {
            let _ = tx.send(copy.clone());
        }
    }

    fn abandon(&mut self) {
        self.done = true;
        self.waiters.clear();
        self.copy.clear();
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut *self.inner).poll_frame(cx);
        if self.done {
            return polled;
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                    let bytes = self.bytes;
                    self.waiters.retain(|(bound, _)| bytes <= *bound);
                    if self.waiters.is_empty() {
                        self.abandon();
                        return polled;
                    }
                    self.copy.push(d.clone());
                } else if let Some(t) = frame.trailers_ref() {
                    self.trailers = Some(t.clone());
                }
                // hyper may stop polling once the body says it is complete.
                if self.inner.is_end_stream() {
                    self.deliver();
                }
            }
            Poll::Ready(None) => self.deliver(),
            Poll::Ready(Some(Err(_))) => self.abandon(),
            Poll::Pending => {}
        }
        polled
    }

    pub(crate) fn is_end(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub(crate) fn hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        // Complete but never polled to its end: still a whole body.
        if !self.done && self.inner.is_end_stream() {
            self.deliver();
        }
    }
}

/// A body replaying a [`BodyCopy`].
#[derive(Debug)]
pub struct CopyBody {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    len: u64,
}

impl CopyBody {
    pub(crate) fn poll(&mut self) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(d) = self.data.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    pub(crate) fn is_end(&self) -> bool {
        self.data.is_empty() && self.trailers.is_none()
    }

    pub(crate) fn hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Makes `body` a tee (if it is not one yet) and subscribes with `bound`.
pub fn subscribe(body: &mut Body, bound: u64) -> oneshot::Receiver<BodyCopy> {
    if !matches!(body, Body::Tee(_)) {
        let inner = std::mem::replace(body, Body::empty());
        *body = Body::Tee(TeeBody::new(inner));
    }
    match body {
        Body::Tee(t) => t.subscribe(bound),
        // Unreachable: made a tee just above. A dropped sender means "no copy".
        _ => oneshot::channel().1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body yielding `chunks` as separate frames, then trailers.
    fn stream(chunks: &[&'static str], trailers: bool) -> Body {
        let trailers = trailers.then(|| {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            t
        });
        BodyCopy {
            data: chunks.iter().map(|c| Bytes::from(*c)).collect(),
            trailers,
        }
        .into_body()
    }

    #[tokio::test]
    async fn forwards_everything_and_hands_over_the_whole_copy() {
        let mut body = stream(&["ab", "cd"], true);
        let small = subscribe(&mut body, 3);
        let big = subscribe(&mut body, 4);
        let seen = body.collect().await.unwrap();
        assert_eq!(seen.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(seen.to_bytes(), "abcd", "the primary gets the body unchanged");
        assert!(small.await.is_err(), "4 bytes exceed a bound of 3");
        let copy = big.await.unwrap();
        assert_eq!(copy.len(), 4);
        let replayed = copy.into_body().collect().await.unwrap();
        assert_eq!(replayed.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(replayed.to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn an_unfinished_or_oversized_body_gives_no_copy() {
        let mut body = stream(&["abc", "def"], false);
        let rx = subscribe(&mut body, 100);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "abc");
        drop(body);
        assert!(rx.await.is_err(), "dropped before its end");

        let mut body = Body::full(vec![1u8; 10]);
        let rx = subscribe(&mut body, 9);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
        assert!(rx.await.is_err());
    }
}

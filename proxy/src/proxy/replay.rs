//! Request bodies that can be sent again on a retry. The first attempt streams
//! the downstream body as it arrives while a copy of up to [`MAX_REPLAY`]
//! bytes is kept; each retry first replays the copy and then continues with
//! the live body. Once a body grows past the bound it is no longer replayable
//! and the request is not retried. Only the newest attempt may read: older
//! attempts' bodies end when a newer one is created.

use super::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Largest request body kept for replay.
pub const MAX_REPLAY: usize = 64 * 1024;

#[derive(Debug)]
struct State {
    inner: Body,
    copy: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    bytes: usize,
    ended: bool,
    overflow: bool,
    generation: u64,
    hint: SizeHint,
}

/// Shared source of every attempt's body.
#[derive(Debug, Clone)]
pub struct Replay {
    state: Arc<Mutex<State>>,
}

/// One attempt's body.
#[derive(Debug)]
pub struct ReplayBody {
    state: Arc<Mutex<State>>,
    generation: u64,
    pos: usize,
    trailers_sent: bool,
}

impl Replay {
    /// Wraps the downstream body.
    pub fn new(inner: Body) -> Self {
        let hint = inner.size_hint();
        let ended = inner.is_end_stream();
        Self {
            state: Arc::new(Mutex::new(State {
                inner,
                copy: Vec::new(),
                trailers: None,
                bytes: 0,
                ended,
                overflow: false,
                generation: 0,
                hint,
            })),
        }
    }

    /// Whether another attempt can still get the whole body.
    pub fn replayable(&self) -> bool {
        !self.state.lock().unwrap_or_else(|p| p.into_inner()).overflow
    }

    /// A body for the next attempt (ending every older one).
    pub fn body(&self) -> Body {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.generation += 1;
        Body::Replay(ReplayBody {
            state: Arc::clone(&self.state),
            generation: st.generation,
            pos: 0,
            trailers_sent: false,
        })
    }
}

impl ReplayBody {
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.generation != self.generation {
            return Poll::Ready(None);
        }
        if let Some(b) = st.copy.get(self.pos).cloned() {
            self.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if st.ended {
            if !self.trailers_sent {
                self.trailers_sent = true;
                if let Some(t) = st.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut st.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    st.bytes += d.len();
                    if st.bytes > MAX_REPLAY {
                        st.overflow = true;
                        st.copy.clear();
                    } else if !st.overflow {
                        st.copy.push(d.clone());
                        self.pos += 1;
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    st.trailers = Some(t.clone());
                    self.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                st.ended = true;
                self.trailers_sent = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    pub(crate) fn is_end(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.generation != self.generation
            || (st.ended && self.pos >= st.copy.len() && (self.trailers_sent || st.trailers.is_none()))
    }

    pub(crate) fn hint(&self) -> SizeHint {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn replays_small_bodies_and_gives_up_on_large_ones() {
        let r = Replay::new(Body::full("hello"));
        assert_eq!(r.body().collect().await.unwrap().to_bytes(), "hello");
        assert!(r.replayable());
        let older = r.body();
        let newer = r.body();
        assert_eq!(
            older.collect().await.unwrap().to_bytes(),
            "",
            "a stale attempt reads nothing"
        );
        assert_eq!(newer.collect().await.unwrap().to_bytes(), "hello");

        let big = Replay::new(Body::full(vec![7u8; MAX_REPLAY + 1]));
        assert_eq!(
            big.body().collect().await.unwrap().to_bytes().len(),
            MAX_REPLAY + 1
        );
        assert!(!big.replayable());
    }
}

//! Traffic mirroring, fire and forget. For each mirror route of the dialled
//! service whose percentage is rolled, a copy of the request (head now, body
//! through a [`super::tee`] when it ends) is sent by a spawned task through the
//! normal policy layer of the mirror service (mTLS, balancing, its own request
//! metrics) and the answer is read and discarded. The primary request never
//! waits for a mirror.
//!
//! Bounds: [`MAX_IN_FLIGHT`] mirror tasks per sidecar (none free → dropped);
//! a body bigger than the route's `maxBodyBytes` is not mirrored; the body copy
//! is awaited at most [`BODY_WAIT`] and the call takes at most [`CALL_TIMEOUT`].
//! Mirror tasks hold no drain slot and stop when draining starts. The copy's
//! `Host` (and URI authority) gets `-shadow` appended to its host part.

use super::body::Body;
use super::headers::wants_upgrade;
use super::tee::{BodyCopy, subscribe};
use super::{Proto, Shared, policy};
use crate::drain::Drain;
use crate::lb::rng::{chance, with_thread_rng};
use crate::routing::traffic::MirrorRoute;
use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};

/// Mirror requests in flight per sidecar.
pub const MAX_IN_FLIGHT: usize = 128;
/// Longest wait for the primary body to end.
pub const BODY_WAIT: Duration = Duration::from_secs(30);
/// Longest mirror call, from sending to the end of the discarded answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-sidecar mirror slots.
pub fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_IN_FLIGHT))
}

/// `host[:port]` with `-shadow` appended to the host; `None` for IP literals
/// in brackets (nothing sensible to rename) and empty hosts.
pub fn shadow_host(host: &str) -> Option<String> {
    if host.starts_with('[') {
        return None;
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if name.is_empty() {
        return None;
    }
    Some(match port {
        Some(p) => format!("{name}-shadow:{p}"),
        None => format!("{name}-shadow"),
    })
}

fn shadow_uri(uri: &Uri) -> Option<Uri> {
    let a = uri.authority()?;
    let host = shadow_host(a.host())?;
    let renamed = match a.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(Authority::try_from(renamed).ok()?);
    Uri::from_parts(parts).ok()
}

/// The copy's head: the request's, with the host renamed.
pub fn shadow_head<B>(req: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = shadow_uri(req.uri()).unwrap_or_else(|| req.uri().clone());
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    if let Some(v) = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(shadow_host)
        .and_then(|h| HeaderValue::from_str(&h).ok())
    {
        head.headers_mut().insert(HOST, v);
    }
    head
}

/// Where a mirror's body comes from.
enum Source {
    Empty,
    Tee(oneshot::Receiver<BodyCopy>),
}

/// How a mirror ended.
enum Outcome {
    Sent,
    Failed,
    Dropped,
}

/// Starts the `mirrors` (a service's TrafficMirror routes or a Gateway API
/// route's `RequestMirror` filters) that are rolled for `req`, wrapping its
/// body in a tee when a copy is needed. Returns at once.
pub fn start(
    shared: &Arc<Shared>,
    mirrors: &Arc<[MirrorRoute]>,
    proto: Proto,
    peer: SocketAddr,
    req: &mut Request<Body>,
) {
    for (index, m) in mirrors.iter().enumerate() {
        if !with_thread_rng(|rng| chance(rng, m.percent)) {
            continue;
        }
        let tunnel = req.method() == Method::CONNECT || wants_upgrade(req.headers());
        let too_big = req.body().size_hint().lower() > m.max_body_bytes;
        if tunnel || too_big || m.backend.balancer.endpoints().is_empty() {
            tracing::debug!(mirror = %m.backend.service, tunnel, too_big, "mirror dropped");
            m.dropped.inc();
            continue;
        }
        let Ok(permit) = Arc::clone(&shared.mirror_slots).try_acquire_owned() else {
            tracing::debug!(mirror = %m.backend.service, "mirror dropped: no free slot");
            m.dropped.inc();
            continue;
        };
        let source = if req.body().is_end_stream() {
            Source::Empty
        } else {
            Source::Tee(subscribe(req.body_mut(), m.max_body_bytes))
        };
        let head = shadow_head(req);
        let (shared, mirrors) = (Arc::clone(shared), Arc::clone(mirrors));
        tokio::spawn(async move {
            let _permit = permit;
            let mut drain = shared.drain.watcher();
            let Some(m) = mirrors.get(index) else {
                return;
            };
            tokio::select! {
                outcome = run(&shared, m.backend.as_ref(), head, source, proto, peer) => match outcome {
                    Outcome::Sent => m.sent.inc(),
                    Outcome::Failed => m.failed.inc(),
                    Outcome::Dropped => m.dropped.inc(),
                },
                () = Drain::started(&mut drain) => {
                    tracing::debug!(mirror = %m.backend.service, "mirror abandoned: draining");
                }
            }
        });
    }
}

async fn run(
    shared: &Shared,
    backend: &crate::routing::Backend,
    head: Request<()>,
    source: Source,
    proto: Proto,
    peer: SocketAddr,
) -> Outcome {
    let body = match source {
        Source::Empty => Body::empty(),
        Source::Tee(rx) => match tokio::time::timeout(BODY_WAIT, rx).await {
            Ok(Ok(copy)) => copy.into_body(),
            // Too large, unfinished, failed, or too slow.
            _ => {
                tracing::debug!(mirror = %backend.service, "mirror dropped: no complete body copy");
                return Outcome::Dropped;
            }
        },
    };
    let req = head.map(|()| body);
    let call = async {
        let resp = policy::call(shared, backend, proto, peer, Instant::now(), req).await;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        status
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(status) if !status.is_server_error() => Outcome::Sent,
        Ok(status) => {
            tracing::debug!(mirror = %backend.service, status = status.as_u16(), "mirror failed");
            Outcome::Failed
        }
        Err(_) => {
            tracing::debug!(mirror = %backend.service, "mirror timed out");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_a_shadow_suffix_before_the_port() {
        assert_eq!(
            shadow_host("reviews:9080").as_deref(),
            Some("reviews-shadow:9080")
        );
        assert_eq!(shadow_host("reviews").as_deref(), Some("reviews-shadow"));
        assert_eq!(
            shadow_host("reviews.shop.svc.cluster.local").as_deref(),
            Some("reviews.shop.svc.cluster.local-shadow")
        );
        assert_eq!(shadow_host("[::1]:80"), None);
        let req = Request::builder()
            .uri("http://reviews:9080/a?b")
            .header(HOST, "reviews:9080")
            .header("x-keep", "1")
            .body(())
            .unwrap();
        let head = shadow_head(&req);
        assert_eq!(head.uri(), "http://reviews-shadow:9080/a?b");
        assert_eq!(head.headers()[HOST], "reviews-shadow:9080");
        assert_eq!(head.headers()["x-keep"], "1");
        // Origin-form URIs (HTTP/1) keep their path.
        let req = Request::builder().uri("/p").body(()).unwrap();
        assert_eq!(shadow_head(&req).uri(), "/p");
    }
}

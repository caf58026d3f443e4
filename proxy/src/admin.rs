//! The admin server (:15020): `/live`, `/ready`, `/metrics` (Prometheus text),
//! `/config` (the config in force as JSON; it holds no secrets — keys and
//! certificates never enter the config document) and `/breakers` (circuit
//! breaker, outlier, pool and retry-budget state per service), plus the app
//! probes rewritten by the injector (`/app-probe/...`, see [`crate::probes`]).
//!
//! Peers that are not on loopback (other pods, the kubelet, Prometheus) get only
//! `/live`, `/ready`, `/metrics` and the probe paths; everything else (`/config`
//! holds the grant table, `/breakers` the endpoints) answers 403 to them.

use crate::conf::ConfigStore;
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::probes::AppProbes;
use crate::ready::Readiness;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub struct Admin {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub probes: AppProbes,
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// Whether `peer` is on loopback (the pod's own containers, `kubectl exec`,
/// `kubectl port-forward`).
fn is_loopback(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Whether `path` may be served to a peer that is not on loopback.
pub fn public_path(path: &str) -> bool {
    matches!(path, "/live" | "/ready" | "/metrics") || path.starts_with("/app-probe/")
}

impl Admin {
    /// Answers one admin request from `peer`, running an app probe when the path
    /// is one. Paths other than [`public_path`]s are served to loopback peers only.
    pub async fn handle<B>(&self, req: &Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if !public_path(path) && !is_loopback(peer.ip()) {
            let mut r = text(
                StatusCode::FORBIDDEN,
                "text/plain",
                "this admin path is served on loopback only\n",
            );
            r.headers_mut().insert(
                crate::proxy::errors::ERROR_HEADER,
                header::HeaderValue::from_static("admin-loopback-only"),
            );
            return r;
        }
        if req.method() == Method::GET && path.starts_with("/app-probe/") {
            return match self.probes.run(path).await {
                Some(status) => text(status, "text/plain", format!("{}\n", status.as_u16())),
                None => text(StatusCode::NOT_FOUND, "text/plain", "no such probe\n"),
            };
        }
        self.respond(req)
    }

    /// Answers one admin request.
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        match req.uri().path() {
            "/live" => text(StatusCode::OK, "text/plain", "live\n"),
            "/ready" => match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, "text/plain", "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", self.metrics.render()),
            "/config" => match self.store.load() {
                Some(snap) => match serde_json::to_string_pretty(&snap.config) {
                    Ok(json) => text(StatusCode::OK, "application/json", json),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
                },
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no config loaded\n",
                ),
            },
            "/breakers" => {
                let view =
                    crate::resilience::view::render(self.store.resilience(), tokio::time::Instant::now());
                match serde_json::to_string_pretty(&view) {
                    Ok(json) => text(StatusCode::OK, "application/json", json),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}

/// Serves the admin endpoints until draining finishes.
pub async fn run(listener: TcpListener, admin: Admin, drain: Drain) {
    let mut stop = drain.watcher();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::drain::Drain::started(&mut stop) => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(&req, peer).await) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            if let Err(error) = b.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%error, "admin connection error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let metrics = Arc::new(Metrics::default());
        let readiness = Arc::new(Readiness::default());
        let store = Arc::new(ConfigStore::new(Arc::clone(&metrics), Arc::clone(&readiness)));
        let admin = Admin {
            store: Arc::clone(&store),
            metrics,
            readiness,
            probes: AppProbes::default(),
        };
        let get = |p: &str| admin.respond(&Request::get(p).body(()).unwrap()).status();
        assert_eq!(get("/live"), 200);
        assert_eq!(get("/ready"), 503);
        assert_eq!(get("/config"), 503);
        store.apply_json(CONFIG, "test").unwrap();
        assert_eq!(get("/ready"), 200);
        assert_eq!(get("/config"), 200);
        assert_eq!(get("/metrics"), 200);
        assert_eq!(get("/breakers"), 200);
        assert_eq!(get("/nope"), 404);
    }

    /// The smallest valid config (an identity, strict mTLS).
    const CONFIG: &str = r#"{"schemaVersion":1,"identity":{"namespace":"d","serviceAccount":"a","spiffeId":"spiffe://cluster.local/ns/d/sa/a"},
        "mesh":{"trustDomain":"cluster.local","accessMode":"smi","mtlsMode":"strict"}}"#;

    #[tokio::test]
    async fn off_host_peers_get_probes_and_metrics_only() {
        let metrics = Arc::new(Metrics::default());
        let readiness = Arc::new(Readiness::default());
        let store = Arc::new(ConfigStore::new(Arc::clone(&metrics), Arc::clone(&readiness)));
        store.apply_json(CONFIG, "test").unwrap();
        let admin = Admin {
            store,
            metrics,
            readiness,
            probes: AppProbes::from_json(r#"{"/app-probe/web/livez": {"tcpSocket": {"port": 1}}}"#).unwrap(),
        };
        let status = |path: &str, peer: &str| {
            let admin = admin.clone();
            let req = Request::get(path).body(()).unwrap();
            let peer: SocketAddr = peer.parse().unwrap();
            async move { admin.handle(&req, peer).await }
        };
        for peer in [
            "198.18.0.7:40000",
            "10.0.0.1:1",
            "[fd00::1]:1",
            "[::ffff:198.18.0.7]:1",
        ] {
            for (path, want) in [
                ("/live", 200),
                ("/ready", 200),
                ("/metrics", 200),
                ("/app-probe/web/livez", 503),
                ("/app-probe/unlisted", 404),
                ("/config", 403),
                ("/breakers", 403),
                ("/config/", 403),
                ("/nope", 403),
            ] {
                let r = status(path, peer).await;
                assert_eq!(r.status(), want, "{path} from {peer}");
                if want == 403 {
                    assert_eq!(r.headers()["x-weft-error"], "admin-loopback-only");
                }
            }
        }
        for peer in ["127.0.0.1:5", "127.0.0.9:5", "[::1]:5", "[::ffff:127.0.0.1]:5"] {
            for (path, want) in [
                ("/config", 200),
                ("/breakers", 200),
                ("/ready", 200),
                ("/nope", 404),
            ] {
                assert_eq!(status(path, peer).await.status(), want, "{path} from {peer}");
            }
        }
    }
}

//! HTTP edges of the webhook: the axum router (`POST /inject`), served over rustls
//! by [`serve_tls`], and the plain health router (`/healthz`, `/readyz`) for kubelet.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::admission::{Outcome, review};
use super::config::InjectConfig;
use super::tls::CertStore;

/// Path the MutatingWebhookConfiguration calls.
pub const INJECT_PATH: &str = "/inject";

/// The current [`InjectConfig`], replaceable when the MeshConfig changes.
#[derive(Debug, Clone, Default)]
pub struct SharedConfig(Arc<RwLock<Arc<InjectConfig>>>);

impl SharedConfig {
    /// Wraps `cfg`.
    pub fn new(cfg: InjectConfig) -> Self {
        SharedConfig(Arc::new(RwLock::new(Arc::new(cfg))))
    }

    /// The config in force now.
    pub fn get(&self) -> Arc<InjectConfig> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the config for subsequent requests.
    pub fn set(&self, cfg: InjectConfig) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(cfg);
    }
}

/// The webhook router: `POST /inject`.
pub fn router(config: SharedConfig) -> Router {
    Router::new()
        .route(INJECT_PATH, post(inject_handler))
        .with_state(config)
}

async fn inject_handler(State(config): State<SharedConfig>, body: Bytes) -> Response {
    let start = Instant::now();
    match review(&body, &config.get()) {
        Ok((resp, outcome)) => {
            let micros = start.elapsed().as_micros() as u64;
            match &outcome {
                Outcome::Injected => tracing::info!(micros, "pod injected"),
                Outcome::Skipped(reason) => tracing::debug!(micros, reason, "pod skipped"),
                Outcome::Denied(message) => tracing::warn!(micros, message, "pod denied"),
            }
            (StatusCode::OK, Json(resp)).into_response()
        }
        Err(bad) => {
            tracing::warn!(reason = %bad, "undecodable admission review");
            (StatusCode::BAD_REQUEST, bad.0).into_response()
        }
    }
}

/// The health router for the plain port: `/healthz` (process up) and `/readyz`
/// (a serving certificate is loaded).
pub fn health_router(certs: CertStore) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(certs): State<CertStore>| async move {
                if certs.is_loaded() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no serving certificate yet")
                }
            }),
        )
        .with_state(certs)
}

/// Serves `app` over TLS on `listener` until `shutdown` completes (in-flight
/// connections finish on their own tasks).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "webhook connection ended with error");
            }
        });
    }
}

/// Serves `app` in plain HTTP on `listener` until `shutdown` completes.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

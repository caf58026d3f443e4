//! Runs the whole webhook on one replica: the certificate manager loop, the HTTPS
//! `/inject` server and the plain health server, until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;
use tokio::net::TcpListener;

use super::certmgr::{self, CertManagerConfig};
use super::server::{SharedConfig, health_router, router, serve_plain, serve_tls};
use super::tls::{CertStore, TlsError, server_config};

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// HTTPS address of `POST /inject` (the Service targets it).
    pub https_addr: SocketAddr,
    /// Plain address of `/healthz` and `/readyz`.
    pub health_addr: SocketAddr,
    /// Serving-certificate settings.
    pub certs: CertManagerConfig,
    /// How often the certificate Secret is reconciled.
    pub cert_check_interval: Duration,
}

/// The webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Binding a listener failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS config could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The health server failed.
    #[error("health server: {0}")]
    Health(std::io::Error),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Serves until `shutdown` completes. `config` is shared with whoever watches the
/// MeshConfig (call [`SharedConfig::set`] with `InjectConfig::from(&spec)` on change).
pub async fn run(
    client: Client,
    opts: WebhookOptions,
    config: SharedConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let store = CertStore::default();
    let tls = server_config(store.clone())?;
    let https = bind(opts.https_addr).await?;
    let health = bind(opts.health_addr).await?;
    tracing::info!(https = %opts.https_addr, health = %opts.health_addr, "webhook listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let certs = tokio::spawn(certmgr::run(
        client,
        opts.certs,
        store.clone(),
        opts.cert_check_interval,
        stopped(),
    ));
    let server = tokio::spawn(serve_tls(https, router(config), tls, stopped()));
    let health = tokio::spawn(serve_plain(health, health_router(store), stopped()));
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(certs, server);
    match health.await {
        Ok(Err(e)) => Err(RunError::Health(e)),
        _ => Ok(()),
    }
}

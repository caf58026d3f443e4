//! Serving the identity endpoint on every replica: follows the CA Secret `weft-ca`
//! (created if absent, like the operator does) and MeshConfig `default`, keeps a TLS
//! serving certificate for the `weft-identity` Service issued by the current mesh CA
//! (so sidecars verify it with the trust bundle), and serves [`super::server::router`]
//! over HTTPS until shutdown.

use super::review::KubeReviewer;
use super::server::{IdentityService, SignerSettings, router};
use crate::api::mesh::{MESH_CONFIG_NAME, MeshConfig};
use crate::certs::store::{self, CA_SECRET, CaState};
use crate::webhook::server::serve_tls;
use crate::webhook::tls::{CertStore, TlsError, server_config};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Lifetime of the endpoint's own serving certificate (renewed at 2/3).
const SERVING_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// HTTPS address (`--identity-port`).
    pub addr: SocketAddr,
    /// Namespace of the controller and of `weft-ca`.
    pub namespace: String,
    /// Service name the sidecars dial (serving certificate DNS names).
    pub service: String,
}

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Binding failed.
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// DNS names of the serving certificate for `service` in `namespace`.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Serves until `shutdown` completes. Returns the bound address through `bound`
/// (useful with port 0 in tests).
pub async fn run(
    client: Client,
    opts: IdentityOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), RunError> {
    let svc = IdentityService::new(Arc::new(KubeReviewer::new(client.clone())));
    let certs = CertStore::default();
    let tls = server_config(certs.clone())?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| RunError::Bind(opts.addr, e))?;
    let addr = listener.local_addr().map_err(|e| RunError::Bind(opts.addr, e))?;
    tracing::info!(%addr, service = %opts.service, "identity endpoint listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let names = dns_names(&opts.service, &opts.namespace);
    let ca_task = tokio::spawn(follow_ca(
        client.clone(),
        opts.namespace.clone(),
        svc.clone(),
        certs,
        names,
    ));
    let mesh_task = tokio::spawn(follow_mesh(client, svc.clone()));
    serve_tls(listener, router(svc), tls, shutdown).await;
    ca_task.abort();
    mesh_task.abort();
    Ok(())
}

/// Installs `ca` and (re-)issues the serving certificate; returns when it is due.
fn install(ca: &Arc<CaState>, svc: &IdentityService, certs: &CertStore, names: &[String]) -> OffsetDateTime {
    svc.set_ca(Arc::clone(ca));
    let now = OffsetDateTime::now_utc();
    match ca.ca.issue_server(names, SERVING_VALIDITY, now) {
        Ok(c) => {
            let chain = c.cert_pem.clone();
            if let Err(error) = certs.set(&chain, &c.key_pem) {
                tracing::error!(%error, "identity serving certificate unusable");
            } else {
                tracing::info!(fingerprint = %ca.ca.fingerprint(), "identity endpoint uses the current mesh CA");
            }
            crate::certs::renewal_due(c.not_before, c.not_after)
        }
        Err(error) => {
            tracing::error!(%error, "issuing the identity serving certificate failed");
            now + Duration::from_secs(10)
        }
    }
}

async fn follow_ca(
    client: Client,
    namespace: String,
    svc: IdentityService,
    certs: CertStore,
    names: Vec<String>,
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={CA_SECRET}"));
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut current: Option<Arc<CaState>> = None;
    let mut renew_at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    loop {
        let wait = (renew_at - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        let event = tokio::select! {
            e = events.next() => match e { Some(e) => e, None => return },
            () = tokio::time::sleep(wait) => {
                if let Some(ca) = &current {
                    renew_at = install(ca, &svc, &certs, &names);
                } else {
                    renew_at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
                }
                continue;
            }
        };
        match event {
            Ok(Event::Apply(s) | Event::InitApply(s)) => match store::ca_from_secret(&s) {
                Ok(ca) => {
                    let ca = Arc::new(ca);
                    renew_at = install(&ca, &svc, &certs, &names);
                    current = Some(ca);
                }
                Err(error) => tracing::error!(%error, "CA Secret unusable; keeping the last good CA"),
            },
            Ok(Event::InitDone) if current.is_none() => {
                // No CA yet: create it (create-only; a racing replica's CA wins).
                match store::ensure_ca(&client, &namespace, &svc.settings().trust_domain).await {
                    Ok(ca) => {
                        let ca = Arc::new(ca);
                        renew_at = install(&ca, &svc, &certs, &names);
                        current = Some(ca);
                    }
                    Err(error) => tracing::warn!(%error, "mesh CA not available yet"),
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "CA Secret watch error"),
        }
    }
}

/// The signer settings a MeshConfig asks for (the operator's defaults otherwise).
pub fn settings_of(mc: Option<&MeshConfig>) -> SignerSettings {
    let obj = mc
        .and_then(|m| serde_json::to_value(m).ok())
        .and_then(|v| serde_json::from_value::<kube::api::DynamicObject>(v).ok());
    let (mesh, validity) = crate::operator::snapshot::mesh(obj.as_ref());
    SignerSettings {
        trust_domain: mesh.trust_domain,
        validity,
    }
}

async fn follow_mesh(client: Client, svc: IdentityService) {
    let api: Api<MeshConfig> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={MESH_CONFIG_NAME}"));
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(mc) | Event::InitApply(mc)) => svc.set_settings(settings_of(Some(&mc))),
            Ok(Event::Delete(_)) => svc.set_settings(settings_of(None)),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "MeshConfig watch error (identity endpoint)"),
        }
    }
}

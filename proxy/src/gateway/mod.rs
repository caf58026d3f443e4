//! Gateway mode (`weft-proxy gateway`): the ingress proxy of one Gateway API
//! `Gateway`. It is not transparent: instead of the :15001/:15006 listeners it
//! binds the ports of the listeners in its config
//! ([`weft_proxy_config::GatewayConfig`]) itself, reconciled with every applied
//! config ([`listeners`]), terminates TLS for `Https` listeners with the
//! certificates of the TLS Secret ([`tls`], [`secret`]) and routes each request
//! by listener and route ([`http`]) through the outbound policy layer, so mTLS,
//! retries, breakers and metrics apply as for a sidecar's outbound traffic.
//! `Tcp` and `Tls` listeners forward whole connections ([`stream`]).
//! `/ready` waits for [`Gate::Listeners`]: every port of the applied config bound.

pub mod http;
pub mod listeners;
pub mod secret;
pub mod stream;
pub mod tls;

use crate::proxy::Shared;
use crate::ready::{Gate, Readiness};
use listeners::Listeners;
use secret::TlsSource;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tls::CertStore;
use tokio::task::JoinHandle;

/// How long to wait before retrying ports that failed to bind.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// What gateway mode needs beyond a proxy's ordinary options.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Address the listener ports are bound on.
    pub bind: IpAddr,
    /// Where the listener certificates come from.
    pub tls: TlsSource,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tls: TlsSource::None,
        }
    }
}

/// A running gateway: its bound ports and certificates.
#[derive(Debug, Default)]
pub struct Gateway {
    addrs: Mutex<BTreeMap<u16, SocketAddr>>,
    pub certs: Arc<CertStore>,
}

impl Gateway {
    /// The bound listener addresses, by port.
    pub fn addrs(&self) -> BTreeMap<u16, SocketAddr> {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Starts gateway mode on `shared`: the listener reconciler and the
/// certificate source. `/ready` requires [`Gate::Listeners`] from now on.
pub fn start(
    shared: &Arc<Shared>,
    readiness: &Arc<Readiness>,
    opts: GatewayOptions,
) -> (Arc<Gateway>, Vec<JoinHandle<()>>) {
    readiness.require(Gate::Listeners);
    let gw = Arc::new(Gateway::default());
    let mut tasks = Vec::new();
    match opts.tls {
        TlsSource::None => {}
        TlsSource::Dir(dir, every) => {
            tasks.push(tokio::spawn(secret::watch_dir(Arc::clone(&gw.certs), dir, every)));
        }
        TlsSource::Api { http, namespace } => {
            tasks.push(tokio::spawn(secret::watch_secret(
                Arc::clone(&gw.certs),
                Arc::clone(&shared.store),
                http,
                namespace,
            )));
        }
    }
    let listeners = Listeners::new(Arc::clone(shared), Arc::clone(&gw.certs), opts.bind);
    tasks.push(tokio::spawn(reconcile_loop(
        Arc::clone(shared),
        Arc::clone(readiness),
        Arc::clone(&gw),
        listeners,
    )));
    (gw, tasks)
}

/// Reconciles the bound ports with every applied config (and retries failed
/// binds) until draining starts; then stops accepting by closing every port.
async fn reconcile_loop(
    shared: Arc<Shared>,
    readiness: Arc<Readiness>,
    gw: Arc<Gateway>,
    mut listeners: Listeners,
) {
    let mut applied = shared.store.subscribe();
    let mut drain = shared.drain.watcher();
    loop {
        let all_bound = match shared.store.load() {
            Some(snap) => {
                if snap.config.gateway.is_none() {
                    tracing::warn!(
                        generation = snap.generation,
                        "config has no gateway section; no listeners to serve"
                    );
                }
                let ok = listeners.reconcile(snap.config.gateway.as_ref()).await;
                *gw.addrs.lock().unwrap_or_else(|p| p.into_inner()) = listeners.addrs();
                if ok {
                    readiness.open(Gate::Listeners);
                } else {
                    readiness.close(Gate::Listeners);
                }
                ok
            }
            None => true,
        };
        let retry = async {
            if all_bound {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(BIND_RETRY).await;
            }
        };
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            () = retry => {}
            () = crate::drain::Drain::started(&mut drain) => return,
        }
    }
}

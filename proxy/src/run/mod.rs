//! Assembling and starting a proxy: listeners, config sources and admin, on
//! the current tokio runtime. Used by `weft-proxy run`, `weft-proxy gateway`
//! (no transparent listeners, [`Options::gateway`] set) and by tests, which
//! start several proxies on loopback with explicit listeners.

pub mod args;
pub mod cli;

use crate::admin::{self, Admin};
use crate::conf::kube::{ConfigMapRef, watch_configmap};
use crate::conf::kube_http::KubeHttp;
use crate::conf::{ConfigStore, file::watch_file};
use crate::drain::Drain;
use crate::gateway::{Gateway, GatewayOptions};
use crate::metrics::Metrics;
use crate::net::self_guard::SelfGuard;
use crate::probes::AppProbes;
use crate::proxy::connect::{AppConnector, Connector, PlainConnector};
use crate::proxy::hooks::InboundSecurity;
use crate::proxy::inbound::{self, InboundTarget};
use crate::proxy::outbound::{self, OrigDst};
use crate::proxy::{Settings, Shared};
use crate::ready::Readiness;
use crate::tls::client::MeshConnector;
use crate::tls::csr::CsrClient;
use crate::tls::identity::IdentityStore;
use crate::tls::renew::keep_renewed;
use crate::tls::server::MeshInbound;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weft_proxy_config::ProxyConfig;

/// Everything a proxy instance needs.
#[derive(Debug, Default)]
pub struct Options {
    pub settings: Settings,
    /// Outbound listeners and how each finds original destinations.
    pub outbound: Vec<(SocketAddr, OrigDst)>,
    /// Inbound listeners and how each finds the app port.
    pub inbound: Vec<(SocketAddr, InboundTarget)>,
    pub admin: Option<SocketAddr>,
    /// Config file and its poll interval.
    pub config_file: Option<(PathBuf, Duration)>,
    /// ConfigMap watch.
    pub kube: Option<(KubeHttp, ConfigMapRef)>,
    /// A config applied before anything else (explicit-listener mode).
    pub initial: Option<ProxyConfig>,
    /// Identity Secret mount (`tls.crt`, `tls.key`, `ca.crt`) and its poll
    /// interval. With it, meshed upstreams get mTLS, inbound TLS is terminated
    /// and `/ready` waits for the certificate; without it traffic is plaintext.
    pub identity: Option<(PathBuf, Duration)>,
    /// Identity by CSR from the controller (key generated in memory) and how often
    /// the mounted trust bundle is checked for a change. Takes precedence over
    /// [`Self::identity`]; `/ready` waits for the first certificate.
    pub identity_csr: Option<(CsrClient, Duration)>,
    /// App probes served on the admin port (`WEFT_APP_PROBES`).
    pub app_probes: AppProbes,
    /// Override of the upstream connector (default: mTLS per endpoint identity).
    pub connector: Option<Arc<dyn Connector>>,
    /// Override of inbound security (default: mTLS termination + SMI authorization).
    pub inbound_security: Option<Arc<dyn InboundSecurity>>,
    /// Gateway mode: serve the config's gateway listeners. The transparent
    /// listeners are whatever [`Self::outbound`] / [`Self::inbound`] list
    /// (`weft-proxy gateway` lists none).
    pub gateway: Option<GatewayOptions>,
}

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub drain: Drain,
    /// Bound addresses, in the order given in [`Options`].
    pub outbound_addrs: Vec<SocketAddr>,
    pub inbound_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// The workload identity, when mTLS is configured.
    pub identity: Option<Arc<IdentityStore>>,
    /// State every connection shares (config, connectors, settings, drain).
    pub shared: Arc<Shared>,
    /// Gateway mode: the bound listener ports and certificates.
    pub gateway: Option<Arc<Gateway>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds every listener and starts serving.
pub async fn start(opts: Options) -> io::Result<Running> {
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let store = Arc::new(ConfigStore::new(Arc::clone(&metrics), Arc::clone(&readiness)));
    if let Some(cfg) = opts.initial {
        store
            .apply_config(cfg)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    let drain = Drain::default();
    let mut tasks = Vec::new();
    let identity = match (opts.identity_csr, opts.identity) {
        (Some((client, poll)), _) => {
            let id = Arc::new(IdentityStore::new(
                PathBuf::new(),
                Arc::clone(&readiness),
                &metrics,
            ));
            tasks.push(tokio::spawn(keep_renewed(
                Arc::clone(&id),
                client,
                poll,
                drain.watcher(),
            )));
            Some(id)
        }
        (None, dir) => dir.map(|(dir, every)| {
            let id = Arc::new(IdentityStore::new(dir, Arc::clone(&readiness), &metrics));
            // Load synchronously once so a mounted identity is in use from the start.
            let _ = id.reload();
            tasks.push(tokio::spawn(Arc::clone(&id).watch(every, drain.watcher())));
            id
        }),
    };
    let connector = opts.connector.unwrap_or_else(|| match &identity {
        Some(id) => Arc::new(MeshConnector::new(Arc::clone(id))),
        None => Arc::new(PlainConnector),
    });
    let inbound_security = opts.inbound_security.unwrap_or_else(|| {
        Arc::new(MeshInbound::new(
            Arc::clone(&store),
            identity.clone(),
            &opts.settings,
            &metrics,
        ))
    });
    // Bind every listener first: the self-connection guard needs their addresses.
    let mut outbound = Vec::new();
    for (addr, orig) in opts.outbound {
        outbound.push((TcpListener::bind(addr).await?, orig));
    }
    let mut inbound = Vec::new();
    for (addr, target) in opts.inbound {
        inbound.push((TcpListener::bind(addr).await?, target));
    }
    let admin_listener = match opts.admin {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let outbound_addrs = outbound
        .iter()
        .map(|(l, _)| l.local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    let inbound_addrs = inbound
        .iter()
        .map(|(l, _)| l.local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    let admin_addr = admin_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let own: Vec<SocketAddr> = outbound_addrs
        .iter()
        .chain(&inbound_addrs)
        .chain(&admin_addr)
        .copied()
        .collect();
    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        connector,
        app_connector: Arc::new(AppConnector),
        inbound_security,
        settings: opts.settings,
        drain: drain.clone(),
        self_guard: Arc::new(SelfGuard::new(own, &metrics)),
        mirror_slots: crate::proxy::mirror::slots(),
    });
    for (l, orig) in outbound {
        tasks.push(tokio::spawn(outbound::run(l, Arc::clone(&shared), orig)));
    }
    for (l, target) in inbound {
        tasks.push(tokio::spawn(inbound::run(l, Arc::clone(&shared), target)));
    }
    if let Some(l) = admin_listener {
        let a = Admin {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            readiness: Arc::clone(&readiness),
            probes: opts.app_probes,
        };
        tasks.push(tokio::spawn(admin::run(l, a, drain.clone())));
    }
    if let Some((path, every)) = opts.config_file {
        tasks.push(tokio::spawn(watch_file(
            Arc::clone(&store),
            path,
            every,
            drain.watcher(),
        )));
    }
    let gateway = opts.gateway.map(|g| {
        let (gw, t) = crate::gateway::start(&shared, &readiness, g);
        tasks.extend(t);
        gw
    });
    if let Some((http, cm)) = opts.kube {
        tasks.push(tokio::spawn(watch_configmap(
            Arc::clone(&store),
            http,
            cm,
            drain.watcher(),
        )));
    }
    Ok(Running {
        store,
        metrics,
        readiness,
        drain,
        outbound_addrs,
        inbound_addrs,
        admin_addr,
        identity,
        shared,
        gateway,
        tasks,
    })
}

impl Running {
    /// Adds a task stopped with the proxy at shutdown.
    pub fn spawn(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Stops accepting, waits up to `grace` for live connections, then stops
    /// every task. Returns how many connections were still open.
    pub async fn shutdown(self, grace: Duration) -> usize {
        self.readiness.drain();
        let left = self.drain.drain(grace).await;
        for t in &self.tasks {
            t.abort();
        }
        left
    }
}

//! Assembling and starting a proxy: listeners, config sources and admin, on
//! the current tokio runtime. Used by `weft-proxy run` and by tests, which
//! start several proxies on loopback with explicit listeners.

pub mod cli;

use crate::admin::{self, Admin};
use crate::conf::kube::{ConfigMapRef, watch_configmap};
use crate::conf::kube_http::KubeHttp;
use crate::conf::{ConfigStore, file::watch_file};
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::proxy::connect::{Connector, PlainConnector};
use crate::proxy::hooks::{InboundSecurity, Plaintext};
use crate::proxy::inbound::{self, InboundTarget};
use crate::proxy::outbound::{self, OrigDst};
use crate::proxy::{Settings, Shared};
use crate::ready::Readiness;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weft_proxy_config::ProxyConfig;

/// Everything a proxy instance needs.
#[derive(Debug)]
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
    /// Upstream connector (the mTLS layer replaces it).
    pub connector: Arc<dyn Connector>,
    /// Inbound security (the mTLS/authorization layer replaces it).
    pub inbound_security: Arc<dyn InboundSecurity>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            outbound: Vec::new(),
            inbound: Vec::new(),
            admin: None,
            config_file: None,
            kube: None,
            initial: None,
            connector: Arc::new(PlainConnector),
            inbound_security: Arc::new(Plaintext),
        }
    }
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
    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        connector: opts.connector,
        app_connector: Arc::new(PlainConnector),
        inbound_security: opts.inbound_security,
        settings: opts.settings,
        drain: drain.clone(),
    });
    let mut tasks = Vec::new();
    let mut outbound_addrs = Vec::new();
    for (addr, orig) in opts.outbound {
        let l = TcpListener::bind(addr).await?;
        outbound_addrs.push(l.local_addr()?);
        tasks.push(tokio::spawn(outbound::run(l, Arc::clone(&shared), orig)));
    }
    let mut inbound_addrs = Vec::new();
    for (addr, target) in opts.inbound {
        let l = TcpListener::bind(addr).await?;
        inbound_addrs.push(l.local_addr()?);
        tasks.push(tokio::spawn(inbound::run(l, Arc::clone(&shared), target)));
    }
    let mut admin_addr = None;
    if let Some(addr) = opts.admin {
        let l = TcpListener::bind(addr).await?;
        admin_addr = Some(l.local_addr()?);
        let a = Admin {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            readiness: Arc::clone(&readiness),
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
        tasks,
    })
}

impl Running {
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

//! The e2e node agent: plays the kubelet (and the part of kube-proxy the mesh needs) for
//! pods the real scheduler binds to its Node, running each pod as a Linux network namespace
//! with its containers as locally built binaries. See `docs/node-agent.md`.
//!
//! [`Agent::start`] sets up the host network (bridge, forwarding, iptables chains),
//! registers the Node and keeps its Lease fresh, keeps Service DNAT rules and pods'
//! `/etc/hosts` in sync, and runs one worker per bound pod. [`Agent::shutdown`] (or `Drop`,
//! best effort) stops every pod and removes everything the agent created.

pub mod api_relay;
pub mod atomic_writer;
pub mod cmd;
pub mod container_ops;
pub mod container_spec;
pub mod env;
pub mod ipam;
pub mod launch;
mod lifecycle;
pub mod names;
pub mod net;
pub mod node_status;
pub mod pod_status;
mod pods;
pub mod probes;
mod service_sync;
pub mod services;
pub mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use ipam::{Allocator, Cidr};
use net::{HostNet, Sandbox};
use services::ServiceTable;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name (`weft-node-0`).
    pub node_name: String,
    /// Bridge name (`weft0`).
    pub bridge: String,
    /// Where mapped binaries are found (default: the cargo target dir of this build).
    pub bin_dir: PathBuf,
    /// Per-pod directories (volumes, logs); removed on shutdown.
    pub state_dir: PathBuf,
    /// The API server's own address (e.g. `127.0.0.1:6443`); relayed to pods on the bridge
    /// address and used as the `kubernetes` Service's backend.
    pub api_server: Option<SocketAddr>,
    /// First restart back-off (doubles per restart).
    pub restart_backoff: Duration,
    /// Longest restart back-off.
    pub max_backoff: Duration,
    /// How often data volumes are re-synced.
    pub volume_resync: Duration,
    /// Longest grace period when the agent itself stops.
    pub shutdown_grace: Duration,
    /// Version reported as the kubelet version.
    pub kubelet_version: String,
}

impl AgentConfig {
    /// Defaults for node `node_name`.
    pub fn new(node_name: &str) -> Self {
        Self {
            node_name: node_name.into(),
            bridge: "weft0".into(),
            bin_dir: default_bin_dir(),
            state_dir: PathBuf::from("/run/weft-node").join(node_name),
            api_server: None,
            restart_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            volume_resync: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            kubelet_version: format!("{}-weft", crate::control_plane::binaries::kube_version()),
        }
    }
}

/// `WEFT_BIN_DIR`, else the directory holding `weft-demo-app` next to (or above) the
/// running executable, else this workspace's `target/debug`.
pub fn default_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_BIN_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            if dir.join("weft-demo-app").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("debug")
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Host networking failed.
    #[error(transparent)]
    Net(#[from] cmd::CmdError),
    /// Registering the Node failed.
    #[error("registering node: {0}")]
    Kube(#[from] kube::Error),
    /// Local I/O failed.
    #[error("{0}")]
    Io(String),
    /// Another agent owns the bridge.
    #[error("another node agent (pid {0}) is running on this host")]
    Busy(u32),
}

/// Everything the agent created that must go away, for `Drop` when `shutdown` was not called.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub sandboxes: HashMap<String, Sandbox>,
    pub groups: HashSet<u32>,
    pub mount_targets: Vec<PathBuf>,
}

/// State shared by the agent's tasks.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub config: AgentConfig,
    pub host: HostNet,
    pub ipam: Mutex<Allocator>,
    pub registry: Mutex<Registry>,
    pub services: watch::Receiver<Arc<ServiceTable>>,
    /// Where pods reach the API server (bridge address : port).
    pub api_backend: Option<SocketAddrV4>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("config", &self.config)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.host.pods.gateway()
    }
}

/// A running node agent.
#[derive(Debug)]
pub struct Agent {
    ctx: Arc<Ctx>,
    shutdown: watch::Sender<bool>,
    pods: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    previous_ip_forward: Option<String>,
    stopped: bool,
}

/// Host-wide owner file of a bridge: one live agent per bridge (the pod CIDR is fixed).
pub fn owner_file(bridge: &str) -> PathBuf {
    PathBuf::from("/run").join(format!("weft-node-agent-{bridge}.pid"))
}

fn claim(bridge: &str, state_dir: &Path) -> Result<(), Error> {
    let owner = owner_file(bridge);
    if let Ok(pid) = std::fs::read_to_string(&owner) {
        let pid: u32 = pid.trim().parse().unwrap_or(0);
        if pid != 0 && pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists() {
            return Err(Error::Busy(pid));
        }
    }
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", state_dir.display()));
    std::fs::create_dir_all(state_dir).map_err(io)?;
    std::fs::write(&owner, std::process::id().to_string()).map_err(io)
}

/// Removes namespaces and veths with the agent's prefixes left by a crashed earlier run.
fn remove_stale() {
    for ns in net::agent_netns_names() {
        tracing::warn!(netns = %ns, "removing stale pod network namespace");
        let _ = cmd::run_blocking("ip", &cmd::args(&["netns", "del", &ns]));
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
    }
    for veth in net::agent_veth_names() {
        let _ = cmd::run_blocking("ip", &cmd::args(&["link", "del", &veth]));
    }
}

impl Agent {
    /// Starts the agent on the current tokio runtime. Needs root.
    pub async fn start(client: kube::Client, config: AgentConfig) -> Result<Self, Error> {
        claim(&config.bridge, &config.state_dir)?;
        remove_stale();
        let host = HostNet {
            bridge: config.bridge.clone(),
            pods: Cidr::PODS,
            services: Cidr::SERVICES,
        };
        let previous_ip_forward = host.setup().await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let api_backend = match config.api_server {
            Some(addr) => {
                let (backend, task) = api_relay::start(host.pods.gateway(), addr).await;
                tasks.extend(task);
                backend
            }
            None => None,
        };
        let (services_tx, services_rx) = watch::channel(Arc::new(ServiceTable::new()));
        let ctx = Arc::new(Ctx {
            client: client.clone(),
            config: config.clone(),
            host,
            ipam: Mutex::new(Allocator::new(Cidr::PODS)),
            registry: Mutex::new(Registry::default()),
            services: services_rx,
            api_backend,
        });
        let mut agent = Agent {
            ctx: ctx.clone(),
            shutdown,
            pods: None,
            tasks,
            previous_ip_forward: Some(previous_ip_forward),
            stopped: false,
        };
        let node = node_status::register(
            &client,
            &config.node_name,
            ctx.gateway(),
            &Cidr::PODS.to_string(),
            &config.kubelet_version,
        )
        .await?;
        node_status::renew_lease(&client, &node).await?;
        agent.tasks.push(tokio::spawn(heartbeats(ctx.clone(), node)));
        agent
            .tasks
            .push(tokio::spawn(service_sync::run(ctx.clone(), services_tx)));
        agent.pods = Some(tokio::spawn(pods::run(ctx, shutdown_rx)));
        tracing::info!(node = %config.node_name, bridge = %config.bridge, bin_dir = %config.bin_dir.display(), "node agent started");
        Ok(agent)
    }

    /// The node name.
    pub fn node_name(&self) -> &str {
        &self.ctx.config.node_name
    }

    /// Network namespaces of the pods currently running.
    pub fn netns_names(&self) -> Vec<String> {
        self.ctx
            .registry()
            .sandboxes
            .values()
            .map(|s| s.netns.clone())
            .collect()
    }

    /// Stops every pod (SIGTERM, grace, SIGKILL), then removes namespaces, veths, iptables
    /// chains, the bridge, mount points and per-pod directories. Pod objects are left as
    /// they are (a stopped kubelet does not delete pods).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(pods) = self.pods.take() {
            let _ = pods.await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let ctx = self.ctx.clone();
        let prev = self.previous_ip_forward.take();
        self.stopped = true;
        let _ = tokio::task::spawn_blocking(move || cleanup(&ctx, prev.as_deref())).await;
        tracing::info!("node agent stopped");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let _ = self.shutdown.send(true);
        if let Some(p) = self.pods.take() {
            p.abort();
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        cleanup(&self.ctx, self.previous_ip_forward.as_deref());
    }
}

/// Kills what is left, removes sandboxes, host networking, mount points and the state dir.
fn cleanup(ctx: &Ctx, previous_ip_forward: Option<&str>) {
    let mut reg = ctx.registry();
    for pgid in reg.groups.drain() {
        launch::signal_group(pgid, libc::SIGKILL);
    }
    for (_, sandbox) in reg.sandboxes.drain() {
        for e in sandbox.remove_blocking() {
            tracing::warn!(error = %e, "removing a pod sandbox");
        }
    }
    for target in reg.mount_targets.drain(..).rev() {
        let _ = std::fs::remove_file(&target).or_else(|_| std::fs::remove_dir(&target));
    }
    drop(reg);
    for e in ctx.host.teardown_blocking(previous_ip_forward) {
        tracing::warn!(error = %e, "removing host networking");
    }
    let _ = std::fs::remove_file(owner_file(&ctx.config.bridge));
    if let Err(e) = std::fs::remove_dir_all(&ctx.config.state_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, dir = %ctx.config.state_dir.display(), "removing the state dir");
    }
}

async fn heartbeats(ctx: Arc<Ctx>, mut node: k8s_openapi::api::core::v1::Node) {
    let mut since_status = Duration::ZERO;
    loop {
        tokio::time::sleep(node_status::LEASE_RENEW).await;
        since_status += node_status::LEASE_RENEW;
        if since_status >= node_status::STATUS_HEARTBEAT {
            since_status = Duration::ZERO;
            let c = &ctx.config;
            match node_status::heartbeat(&ctx.client, &c.node_name, ctx.gateway(), &c.kubelet_version).await {
                Ok(n) => node = n,
                Err(e) => tracing::warn!(error = %e, "node status heartbeat failed"),
            }
        }
        if let Err(e) = node_status::renew_lease(&ctx.client, &node).await {
            tracing::warn!(error = %e, "lease renewal failed");
        }
    }
}

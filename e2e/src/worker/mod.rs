//! A real Kubernetes worker node for the test ground: containerd + runc (Debian) with the
//! CNI bridge plugin, the upstream kubelet and kube-proxy (iptables mode) built from the
//! pinned k8s.io/kubernetes module, and CoreDNS as the cluster DNS. It joins a
//! [`ControlPlane`] started with `node_address` set, runs every pod the scheduler binds to
//! it from images imported into containerd (never pulled), and serves the kubelet API so
//! `kubectl logs`, `exec` and `port-forward` work. One per machine.
//!
//! [`WorkerNode::start`] blocks until the Node is Ready, kube-proxy programs Services and
//! CoreDNS answers; [`WorkerNode::shutdown`] (also on drop, and from the shared harness's
//! exit hook) removes every pod through the CRI, stops the components and restores the
//! host. A node left behind by a killed test process is cleaned up by the next start.

pub mod addons;
pub mod binaries;
pub mod config;
pub mod host;
pub mod images;
pub mod layout;
pub mod pki;
pub mod pods;
mod stale;
pub mod teardown;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use binaries::NodeBinaries;
pub use config::NODE_NET;
pub use layout::NodeLayout;
pub use pods::PodNetwork;

use crate::control_plane::ControlPlane;
use crate::control_plane::process::ManagedProcess;

/// The node's name.
pub const NODE_NAME: &str = "weft-node-0";

/// How to start the node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// State directory (wiped at start); `None` = a fresh `/tmp/weft-node-*` dir.
    pub state_dir: Option<PathBuf>,
    /// Image archives to import besides pause and CoreDNS (weft's, from `make images`);
    /// those named in `$WEFT_NODE_EXTRA_IMAGES` ([`images::EXTRA_IMAGES_ENV`]) come after.
    pub images: Vec<PathBuf>,
    /// Budget for the whole start.
    pub ready_timeout: Duration,
    /// The caller already holds the machine's node lock ([`teardown::NodeLock`]), e.g. a
    /// test that keeps the machine across a simulated crash of another node's owner.
    pub lock_held_by_caller: bool,
    /// How long to wait for another live process's node to go away before failing with
    /// [`NodeError::AlreadyRunning`]: `$WEFT_NODE_WAIT_SECS` by default, else 0 (fail at once
    /// and say who runs it).
    pub wait_for_other: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            state_dir: None,
            images: Vec::new(),
            ready_timeout: Duration::from_secs(180),
            lock_held_by_caller: false,
            wait_for_other: std::env::var("WEFT_NODE_WAIT_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or_default(),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Another live process owns the machine's node.
    #[error(
        "a weft test node is already running (pid {0}, state {1}); stop it first (`make dev-cluster-down`)"
    )]
    AlreadyRunning(u32, PathBuf),
    /// Something the node needs is missing.
    #[error(transparent)]
    Missing(#[from] binaries::Missing),
    /// The control plane was not started for a node.
    #[error("the control plane was started without node_address; start it with Options::node_address")]
    NoNodeAddress,
    /// Host setup failed.
    #[error(transparent)]
    Host(#[from] host::HostError),
    /// Certificates failed.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// An image could not be imported.
    #[error(transparent)]
    Image(#[from] images::ImageError),
    /// A step did not finish.
    #[error("{step}: {detail}; node logs in {logs}")]
    Step {
        /// Which step.
        step: &'static str,
        /// What happened.
        detail: String,
        /// The logs directory.
        logs: String,
    },
}

/// How long each start phase took.
#[derive(Debug, Clone, Default)]
pub struct StartReport {
    /// Host, certificates and containerd up.
    pub runtime: Duration,
    /// Images imported.
    pub images: Duration,
    /// Until the Node was Ready.
    pub node_ready: Duration,
    /// Until CoreDNS was Available.
    pub dns_ready: Duration,
    /// Image references imported.
    pub imported: Vec<String>,
}

/// A running test node.
#[derive(Debug)]
pub struct WorkerNode {
    layout: NodeLayout,
    binaries: NodeBinaries,
    cri: pods::Cri,
    lock: Mutex<Option<teardown::NodeLock>>,
    procs: Mutex<Vec<ManagedProcess>>,
    temp: Mutex<Option<tempfile::TempDir>>,
    keep_logs: AtomicBool,
    stopped: AtomicBool,
    report: StartReport,
}

impl WorkerNode {
    /// Starts the node against `cp` and waits until it runs pods, Services and DNS.
    pub async fn start(cp: &ControlPlane, options: NodeOptions) -> Result<Self, NodeError> {
        let binaries = NodeBinaries::locate()?;
        let node_ip: IpAddr = cp.node_address().ok_or(NodeError::NoNodeAddress)?;
        let (temp, root) = match &options.state_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("weft-node-")
                    .tempdir()
                    .map_err(step("creating the state dir"))?;
                let root = t.path().to_path_buf();
                (Some(t), root)
            }
        };
        // One node per machine: take the machine's node lock (waiting for its holder if
        // asked to), then clean up after whoever held it before if they died without
        // tearing their node down (the lock outlives nobody; the owner record does).
        let lock = if options.lock_held_by_caller || std::env::var_os(teardown::LOCK_HELD_ENV).is_some() {
            None
        } else {
            match teardown::NodeLock::acquire(options.wait_for_other).map_err(step("taking the node lock"))? {
                Some(lock) => Some(lock),
                None => {
                    let owner = teardown::read_owner();
                    return Err(NodeError::AlreadyRunning(
                        owner.as_ref().map_or(0, |o| o.pid),
                        owner.map(|o| o.state_dir).unwrap_or_default(),
                    ));
                }
            }
        };
        if let Some(owner) = teardown::read_owner()
            && !(owner.pid == std::process::id() && owner.state_dir == root)
        {
            tracing::warn!(pid = owner.pid, dir = %owner.state_dir.display(), "cleaning up the node of a dead run");
            stale::clean_stale(&binaries, &owner.state_dir);
        }
        teardown::claim(&root).map_err(step("recording the node's owner"))?;
        let began = Instant::now();
        if options.state_dir.is_some() {
            // Never recurse into a mount of an earlier run (volumes, rootfs overlays).
            teardown::unmount_under(&root);
            let _ = std::fs::remove_dir_all(&root);
        }
        let layout = NodeLayout::new(&root, &cp.layout().pki.join("ca.crt"));
        layout
            .create_dirs()
            .map_err(step("creating the node's directories"))?;
        let cri = pods::Cri::new(&binaries.crictl, &layout.crictl_config);
        let mut node = Self {
            layout,
            binaries,
            cri,
            lock: Mutex::new(lock),
            procs: Mutex::new(Vec::new()),
            temp: Mutex::new(temp),
            // Until startup succeeds, a drop keeps the logs (they explain the failure).
            keep_logs: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            report: StartReport::default(),
        };
        node.boot(cp, node_ip, &options, began).await?;
        node.keep_logs.store(false, Ordering::SeqCst);
        Ok(node)
    }

    async fn boot(
        &mut self,
        cp: &ControlPlane,
        node_ip: IpAddr,
        options: &NodeOptions,
        began: Instant,
    ) -> Result<(), NodeError> {
        let deadline = began + options.ready_timeout;
        let l = self.layout.clone();
        self.write_configs(cp, node_ip)?;
        host::prepare(&NODE_NET, &l)?;
        self.spawn(
            "containerd",
            &self.binaries.containerd.clone(),
            &[format!("--config={}", l.containerd_config.display())],
        )?;
        self.wait_step("containerd serving the CRI", deadline, || {
            teardown::run_bounded(
                &self.binaries.crictl,
                &["--config", &l.crictl_config.display().to_string(), "info"],
                Duration::from_secs(5),
            )
            .map(|_| Some(()))
        })
        .await?;
        self.report.runtime = began.elapsed();

        let mut archives = vec![
            self.binaries.pause_archive.clone(),
            self.binaries.coredns_archive.clone(),
        ];
        archives.extend(options.images.iter().cloned());
        archives.extend(images::extra_archives()?);
        for a in &archives {
            let refs = images::import(&self.binaries.ctr, &l.containerd_socket, a)?;
            tracing::info!(archive = %a.display(), refs = ?refs, "image imported");
            self.report.imported.extend(refs);
        }
        self.report.images = began.elapsed() - self.report.runtime;

        let client = cp
            .client()
            .map_err(|e| self.step_err("connecting to the API server", e.to_string()))?;
        let kubelet_args = config::kubelet_args(&l, NODE_NAME, &NODE_NET);
        self.spawn("kubelet", &self.binaries.kubelet.clone(), &kubelet_args)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        addons::wait_node_ready(&client, NODE_NAME, remaining)
            .await
            .map_err(|e| self.step_err("waiting for the kubelet", e.to_string()))?;
        self.report.node_ready = began.elapsed();

        let kp_args = vec![
            format!("--config={}", l.kube_proxy_config.display()),
            "--v=1".to_string(),
        ];
        self.spawn("kube-proxy", &self.binaries.kube_proxy.clone(), &kp_args)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        addons::install_coredns(&client, remaining)
            .await
            .map_err(|e| self.step_err("starting CoreDNS", e.to_string()))?;
        self.report.dns_ready = began.elapsed();
        tracing::info!(
            node = NODE_NAME,
            runtime_ms = self.report.runtime.as_millis() as u64,
            images_ms = self.report.images.as_millis() as u64,
            ready_ms = self.report.node_ready.as_millis() as u64,
            dns_ms = self.report.dns_ready.as_millis() as u64,
            dir = %l.root.display(),
            "node ready"
        );
        Ok(())
    }

    fn write_configs(&self, cp: &ControlPlane, node_ip: IpAddr) -> Result<(), NodeError> {
        let l = &self.layout;
        let ca_cert = std::fs::read_to_string(&l.cluster_ca).map_err(step("reading the cluster CA"))?;
        let ca_key = std::fs::read_to_string(cp.layout().pki.join("ca.key"))
            .map_err(step("reading the cluster CA key"))?;
        let node_pki = pki::NodePki::issue(&ca_cert, &ca_key, NODE_NAME, node_ip)?;
        node_pki.write(l, &cp.server_url(), &ca_cert)?;
        let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let files: [(&Path, String); 6] = [
            (
                &l.containerd_config,
                config::containerd_toml(l, &binaries::pause_image(), &self.binaries.cni_bin_dir),
            ),
            (
                &l.cni_conf_dir
                    .join(format!("10-{}.conflist", config::CNI_NETWORK)),
                json(&config::cni_conflist(l, &NODE_NET)),
            ),
            (&l.kubelet_config, json(&config::kubelet_config(l, &NODE_NET))),
            (
                &l.kube_proxy_config,
                json(&config::kube_proxy_config(l, NODE_NAME, &NODE_NET)),
            ),
            (&l.crictl_config, config::crictl_yaml(l)),
            (&l.resolv_conf, config::NO_UPSTREAM_RESOLV_CONF.to_string()),
        ];
        for (path, text) in files {
            std::fs::write(path, text).map_err(step("writing the node's config files"))?;
        }
        Ok(())
    }

    fn spawn(&self, name: &'static str, program: &Path, args: &[String]) -> Result<(), NodeError> {
        let p = ManagedProcess::spawn(name, program, args, &self.layout.logs)
            .map_err(|e| self.step_err("starting a node component", format!("{name}: {e}")))?;
        self.procs.lock().unwrap_or_else(|p| p.into_inner()).push(p);
        Ok(())
    }

    fn check_alive(&self) -> Result<(), NodeError> {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                let detail = format!("{} exited ({status}); last lines:\n{}", p.name(), p.log_tail(30));
                drop(procs);
                return Err(self.step_err("running the node", detail));
            }
        }
        Ok(())
    }

    async fn wait_step<F>(&self, what: &'static str, deadline: Instant, mut f: F) -> Result<(), NodeError>
    where
        F: FnMut() -> Result<Option<()>, String>,
    {
        let mut last = String::new();
        loop {
            self.check_alive()?;
            match f() {
                Ok(Some(())) => return Ok(()),
                Ok(None) => {}
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                return Err(self.step_err(what, format!("timed out: {last}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn step_err(&self, step: &'static str, detail: String) -> NodeError {
        NodeError::Step {
            step,
            detail,
            logs: self.layout.logs.display().to_string(),
        }
    }

    /// The node's files.
    pub fn layout(&self) -> &NodeLayout {
        &self.layout
    }

    /// The binaries it runs.
    pub fn binaries(&self) -> &NodeBinaries {
        &self.binaries
    }

    /// How long the start took, by phase.
    pub fn report(&self) -> &StartReport {
        &self.report
    }

    /// The network of the pod with `uid` (its netns for `ip netns exec`), with the pod's
    /// resolv.conf installed for commands run there.
    pub fn pod_network(&self, uid: &str) -> Result<PodNetwork, String> {
        self.cri.pod_network(uid)
    }

    /// The node's CRI (pods' networks and containers).
    pub fn cri(&self) -> &pods::Cri {
        &self.cri
    }

    /// The host PID of container `container` of the pod with `uid`.
    pub fn container_pid(&self, uid: &str, container: &str) -> Result<u32, String> {
        self.cri.container_pid(uid, container)
    }

    /// Keep the logs when shutting down (a test failed).
    pub fn keep_logs(&self) {
        self.keep_logs.store(true, Ordering::SeqCst);
    }

    /// Removes every pod through the CRI, stops kube-proxy, the kubelet and containerd,
    /// removes their iptables chains, unmounts and restores the host. Idempotent; logs
    /// what could not be cleaned.
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        // kubelet and kube-proxy first, so nothing restarts what the CRI removes.
        for name in ["kube-proxy", "kubelet"] {
            if let Some(p) = procs.iter_mut().find(|p| p.name() == name) {
                p.stop();
            }
        }
        let mut problems = Vec::new();
        if let Err(e) = teardown::remove_all_pods(&self.binaries.crictl, &self.layout.crictl_config) {
            problems.push(e);
        }
        while let Some(mut p) = procs.pop() {
            p.stop();
        }
        drop(procs);
        problems.extend(stale::finish_teardown(&self.binaries, &self.layout));
        for p in &problems {
            tracing::warn!(problem = %p, "node teardown");
        }
        teardown::release();
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        let temp = self.temp.lock().unwrap_or_else(|p| p.into_inner()).take();
        let keep = self.keep_logs.load(Ordering::SeqCst);
        match temp {
            Some(t) if !keep => drop(t),
            Some(t) => {
                remove_all_but_logs(&self.layout);
                let _ = t.keep();
                eprintln!("weft-e2e: node logs kept in {}", self.layout.logs.display());
            }
            // A persistent state dir (the dev cluster's) keeps only its logs.
            None => remove_all_but_logs(&self.layout),
        }
    }
}

/// Removes everything in the state dir but `logs/` (nothing is mounted there any more).
fn remove_all_but_logs(layout: &NodeLayout) {
    let Ok(entries) = std::fs::read_dir(&layout.root) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path == layout.logs {
            continue;
        }
        let _ = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

impl Drop for WorkerNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn step(what: &'static str) -> impl FnOnce(std::io::Error) -> NodeError {
    move |e| NodeError::Step {
        step: what,
        detail: e.to_string(),
        logs: String::new(),
    }
}

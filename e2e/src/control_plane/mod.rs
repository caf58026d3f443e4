//! A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on free loopback ports, built from the upstream Go modules by
//! `make kube-bins`. [`ControlPlane::start`] blocks until the API server is ready and the
//! controller-manager works; every process is killed when the value is dropped, and also by
//! the kernel if this process dies (parent-death signal).

pub mod args;
pub mod binaries;
pub mod certs;
pub mod kubeconfig;
pub mod layout;
pub(crate) mod process;
mod ready;
pub mod sys;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use args::Ports;
pub use binaries::{Binaries, MissingBinary};
pub use layout::Layout;
use process::ManagedProcess;
pub use process::spawn_tied;

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address kube-apiserver binds to. Loopback by default; `0.0.0.0` lets pods reach it
    /// on the node's bridge address (198.18.0.1 is always in the serving certificate).
    pub bind_address: IpAddr,
    /// The address of the test node on the pod bridge when a real node (kubelet) will join:
    /// the API server advertises it as the `kubernetes` endpoint and can reach kubelets.
    /// `None`: no node, no endpoint published.
    pub node_address: Option<IpAddr>,
    /// Persistent state directory (wiped at start); `None` = a fresh temp dir.
    pub state_dir: Option<PathBuf>,
    /// How long to wait for readiness.
    pub ready_timeout: Duration,
    /// Binaries; `None` = [`Binaries::locate`].
    pub binaries: Option<Binaries>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            node_address: None,
            state_dir: None,
            ready_timeout: Duration::from_secs(120),
            binaries: None,
        }
    }
}

/// Why a control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary is missing (run `make kube-bins`).
    #[error(transparent)]
    MissingBinary(#[from] MissingBinary),
    /// File or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Certs(#[from] rcgen::Error),
    /// A kubeconfig could not be rendered or loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A component exited during startup.
    #[error("{component} exited during startup ({status}); logs in {logs}; last lines:\n{tail}")]
    Exited {
        /// Which component.
        component: &'static str,
        /// Its exit status.
        status: String,
        /// The log directory.
        logs: String,
        /// The end of its log.
        tail: String,
    },
    /// Readiness was not reached in time.
    #[error("control plane not ready after {after:?} ({what}); logs in {logs}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
        /// The log directory.
        logs: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A running control plane. Dropping it (or calling [`ControlPlane::shutdown`]) stops
/// every process and removes its temp dir.
#[derive(Debug)]
pub struct ControlPlane {
    layout: Layout,
    temp: Mutex<Option<tempfile::TempDir>>,
    procs: Mutex<Vec<ManagedProcess>>,
    config: kube::Config,
    ports: Ports,
    binaries: Binaries,
    node_address: Option<IpAddr>,
    startup: Duration,
    keep_logs: AtomicBool,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler and waits
    /// until the API server is ready and the controller-manager has created the `default`
    /// service account. Blocking (runs its own small runtime on a separate thread, so it may
    /// be called from inside an async test).
    pub fn start(options: Options) -> Result<Self, Error> {
        std::thread::Builder::new()
            .name("weft-e2e-start".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(io("building the startup runtime"))?;
                rt.block_on(Self::start_inner(options))
            })
            .map_err(io("spawning the startup thread"))?
            .join()
            .unwrap_or_else(|_| {
                Err(io("starting the control plane")(std::io::Error::other(
                    "startup thread panicked",
                )))
            })
    }

    async fn start_inner(options: Options) -> Result<Self, Error> {
        let began = Instant::now();
        let binaries = match options.binaries {
            Some(b) => b,
            None => Binaries::locate()?,
        };
        let (temp, root) = match &options.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                (None, dir.clone())
            }
            None => {
                let temp_root = std::env::temp_dir();
                let stale = layout::remove_stale_temp_dirs(&temp_root);
                if stale > 0 {
                    tracing::info!(count = stale, "removed temp dirs of dead test processes");
                }
                let t = tempfile::Builder::new()
                    .prefix(layout::TEMP_PREFIX)
                    .tempdir_in(&temp_root)
                    .map_err(io("creating the temp dir"))?;
                let root = t.path().to_path_buf();
                (Some(t), root)
            }
        };
        let layout = Layout::new(&root);
        layout
            .prepare_fresh()
            .map_err(io(format!("preparing {}", root.display())))?;

        let extra_ips: Vec<IpAddr> = Some(options.bind_address)
            .filter(|ip| !ip.is_unspecified())
            .into_iter()
            .collect();
        let pki = certs::Pki::generate(&extra_ips)?;
        let pki_paths = pki.write_to(&layout.pki).map_err(io("writing certificates"))?;
        let ports = free_ports()?;
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        let kc = |client: &certs::CertPair| {
            kubeconfig::render(&server, &pki.ca.cert, client).map_err(|e| Error::Kubeconfig(e.to_string()))
        };
        let admin_kubeconfig = kc(&pki.admin)?;
        write_private(&layout.kubeconfig, &admin_kubeconfig)?;
        write_private(
            &layout.controller_manager_kubeconfig,
            &kc(&pki.controller_manager)?,
        )?;
        write_private(&layout.scheduler_kubeconfig, &kc(&pki.scheduler)?)?;
        let config = kubeconfig::client_config(&admin_kubeconfig)
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))?;

        let cp = Self {
            layout,
            temp: Mutex::new(temp),
            procs: Mutex::new(Vec::new()),
            config,
            ports,
            binaries,
            node_address: options.node_address,
            startup: Duration::ZERO,
            // Until startup succeeds, a drop keeps the logs (they explain the failure).
            keep_logs: AtomicBool::new(true),
        };
        let deadline = began + options.ready_timeout;
        cp.spawn("etcd", &cp.binaries.etcd, &args::etcd(&cp.layout, ports))?;
        ready::tcp(&cp, ports.etcd_client, deadline).await?;
        let api_args = args::apiserver(&pki_paths, ports, options.bind_address, options.node_address);
        cp.spawn("kube-apiserver", &cp.binaries.apiserver, &api_args)?;
        ready::readyz(&cp, deadline).await?;
        let cm_args = args::controller_manager(&cp.layout, &pki_paths);
        cp.spawn(
            "kube-controller-manager",
            &cp.binaries.controller_manager,
            &cm_args,
        )?;
        cp.spawn(
            "kube-scheduler",
            &cp.binaries.scheduler,
            &args::scheduler(&cp.layout),
        )?;
        ready::default_service_account(&cp, deadline).await?;

        let mut cp = cp;
        cp.startup = began.elapsed();
        cp.keep_logs.store(false, Ordering::SeqCst);
        tracing::info!(
            server = %server,
            startup_ms = cp.startup.as_millis() as u64,
            dir = %cp.layout.root.display(),
            "control plane ready"
        );
        Ok(cp)
    }

    fn spawn(&self, name: &'static str, program: &Path, args: &[String]) -> Result<(), Error> {
        let p = ManagedProcess::spawn(name, program, args, &self.layout.logs)
            .map_err(io(format!("starting {name} ({})", program.display())))?;
        self.procs.lock().unwrap_or_else(|p| p.into_inner()).push(p);
        Ok(())
    }

    /// `Err` if any component has exited (with the end of its log).
    pub(crate) fn check_alive(&self) -> Result<(), Error> {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                return Err(Error::Exited {
                    component: p.name(),
                    status,
                    logs: self.layout.logs.display().to_string(),
                    tail: p.log_tail(30),
                });
            }
        }
        Ok(())
    }

    /// A client with admin rights. Call inside a tokio runtime; the client lives on it.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        kube::Client::try_from(self.config.clone())
    }

    /// The admin client configuration.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.layout.kubeconfig
    }

    /// Directory with one log file per component.
    pub fn logs_dir(&self) -> &Path {
        &self.layout.logs
    }

    /// The state directory.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver)
    }

    /// The node address this control plane was started for (see [`Options::node_address`]).
    pub fn node_address(&self) -> Option<IpAddr> {
        self.node_address
    }

    /// The ports in use.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The binaries in use (kubectl included).
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// Time from [`ControlPlane::start`] to ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// PIDs of the running components, by name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| (p.name(), p.pid()))
            .collect()
    }

    /// Keep the logs when shutting down (call when a test failed).
    pub fn keep_logs(&self) {
        self.keep_logs.store(true, Ordering::SeqCst);
    }

    /// Kills every component (reverse start order) and removes the state: the whole temp
    /// dir, or for a persistent dir everything but the logs. With [`ControlPlane::keep_logs`]
    /// the logs stay and their path is printed. Idempotent.
    pub fn shutdown(&self) {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut p) = procs.pop() {
            p.stop();
        }
        drop(procs);
        let temp = self.temp.lock().unwrap_or_else(|p| p.into_inner()).take();
        let keep = self.keep_logs.load(Ordering::SeqCst);
        match temp {
            Some(t) if !keep => drop(t),
            Some(t) => {
                self.layout.remove_all_but_logs();
                let root = t.keep();
                eprintln!(
                    "weft-e2e: control-plane logs kept in {}",
                    root.join("logs").display()
                );
            }
            None => self.layout.remove_all_but_logs(),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Three distinct free loopback ports (all bound at once, then released).
fn free_ports() -> Result<Ports, Error> {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"));
    let (a, b, c) = (bind()?, bind()?, bind()?);
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(io("reading a port"));
    Ok(Ports {
        etcd_client: port(&a)?,
        etcd_peer: port(&b)?,
        apiserver: port(&c)?,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("writing {}", path.display())))?;
    std::io::Write::write_all(&mut f, contents.as_bytes()).map_err(io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_nonzero() {
        let p = free_ports().unwrap();
        assert!(p.etcd_client != 0 && p.etcd_peer != 0 && p.apiserver != 0);
        assert!(p.etcd_client != p.etcd_peer && p.etcd_peer != p.apiserver && p.etcd_client != p.apiserver);
    }

    #[test]
    fn missing_binaries_fail_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let options = Options {
            state_dir: Some(state.clone()),
            binaries: Some(Binaries {
                etcd: dir.path().join("nope"),
                apiserver: dir.path().join("nope"),
                controller_manager: dir.path().join("nope"),
                scheduler: dir.path().join("nope"),
                kubectl: dir.path().join("nope"),
            }),
            ..Options::default()
        };
        let err = ControlPlane::start(options).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("starting etcd"), "{err}");
    }
}

//! `weft-dev-cluster`: a local Kubernetes cluster for humans (`make dev-cluster`): the
//! control plane plus the real test node (kubelet + containerd + kube-proxy + CoreDNS),
//! with weft's images (`make images`) imported on the node.
//!
//! - `start`: launch `up` in the background and wait until it is ready.
//! - `up`: run in the foreground until SIGTERM/SIGINT (what `start` launches).
//! - `down`: stop the running cluster by PID.
//! - `status`: print whether one runs.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use weft_e2e::control_plane::{ControlPlane, Options};
use weft_e2e::dev_cluster::{self, DevPaths};
use weft_e2e::worker::{NODE_NAME, NODE_NET, NodeOptions, WorkerNode, images};

#[derive(Debug, Parser)]
#[command(
    about = "A local Kubernetes cluster: etcd, kube-apiserver, controller-manager, scheduler, and one node (kubelet + containerd + kube-proxy + CoreDNS)"
)]
struct Cli {
    /// State directory: kubeconfig, logs/, pidfile.
    #[arg(long, global = true, default_value = ".weft")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start in the background and wait until ready.
    Start {
        /// Address kube-apiserver binds to (it must include the node's bridge address).
        #[arg(long, default_value = "0.0.0.0")]
        bind_address: IpAddr,
        /// Seconds to wait for readiness.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Run in the foreground until SIGTERM or SIGINT.
    Up {
        /// Address kube-apiserver binds to.
        #[arg(long, default_value = "0.0.0.0")]
        bind_address: IpAddr,
    },
    /// Stop the running cluster.
    Down,
    /// Show whether a cluster runs.
    Status,
}

fn main() -> anyhow::Result<()> {
    // kube's client logs every failed readiness poll at ERROR; those are expected.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube_client::client::builder=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    let dir = std::path::absolute(&cli.dir).context("resolving --dir")?;
    let paths = DevPaths::new(&dir);
    match cli.command {
        Cmd::Start {
            bind_address,
            timeout,
        } => {
            let exe = std::env::current_exe().context("locating this executable")?;
            let args = vec![
                "--dir".to_string(),
                dir.display().to_string(),
                "--bind-address".to_string(),
                bind_address.to_string(),
            ];
            let (pid, summary) =
                dev_cluster::start_detached(&exe, &args, &paths, Duration::from_secs(timeout))?;
            println!("dev cluster running (pid {pid}): {summary}");
            println!("kubeconfig: {}", dir.join("kubeconfig").display());
            println!("stop with: make dev-cluster-down");
        }
        Cmd::Up { bind_address } => up(&paths, bind_address)?,
        Cmd::Down => match dev_cluster::stop(&paths, Duration::from_secs(30))? {
            Some(pid) => println!("dev cluster (pid {pid}) stopped"),
            None => println!("no dev cluster running"),
        },
        Cmd::Status => match dev_cluster::running_pid(&paths) {
            Some(pid) => println!(
                "running (pid {pid}); kubeconfig {}",
                dir.join("kubeconfig").display()
            ),
            None => println!("not running"),
        },
    }
    Ok(())
}

fn up(paths: &DevPaths, bind_address: IpAddr) -> anyhow::Result<()> {
    dev_cluster::claim(paths)?;
    let result = run_until_signal(paths, bind_address);
    dev_cluster::release(paths);
    result
}

fn run_until_signal(paths: &DevPaths, bind_address: IpAddr) -> anyhow::Result<()> {
    let options = Options {
        bind_address,
        node_address: Some(IpAddr::V4(NODE_NET.node_ip)),
        state_dir: Some(paths.dir.clone()),
        ..Options::default()
    };
    let images_dir = images::weft_images_dir(&weft_e2e::apply::repo_root());
    let images = images::archives_in(&images_dir).context("weft's images (build them with `make images`)")?;
    let cp = ControlPlane::start(options).context("starting the control plane")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The node starts after the control plane and stops before it.
    let node_options = NodeOptions {
        state_dir: Some(paths.dir.join("node")),
        images,
        ..NodeOptions::default()
    };
    let node = rt
        .block_on(WorkerNode::start(&cp, node_options))
        .context("starting the node (needs root)")?;
    let summary = format!(
        "{} ready in {:.1}s with node {NODE_NAME} (kubelet + containerd) ready {:.1}s later (logs {} and {})",
        cp.server_url(),
        cp.startup_time().as_secs_f64(),
        node.report().dns_ready.as_secs_f64(),
        cp.logs_dir().display(),
        node.layout().logs.display()
    );
    tracing::info!(server = %cp.server_url(), pids = ?cp.pids(), "dev cluster ready");
    dev_cluster::mark_ready(paths, &summary)?;
    let waited = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        anyhow::Ok(())
    });
    node.shutdown();
    waited?;
    cp.shutdown();
    Ok(())
}

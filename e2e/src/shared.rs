//! One control plane (and, for binaries that run pods, one real worker node) per test
//! binary, started lazily by the first test that asks and stopped at process exit (statics
//! are never dropped, so an `atexit` hook does it; the parent-death signal covers a killed
//! test process, and the next node start cleans up what such a process left). Tests
//! isolate themselves by namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use crate::control_plane::{ControlPlane, Options, sys};
use crate::worker::{NODE_NET, NodeOptions, WorkerNode, images};

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static NODE: OnceLock<Result<WorkerNode, String>> = OnceLock::new();

/// The shared control plane or node could not start (the message says why and where the
/// logs are).
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared test cluster unavailable: {0}")]
pub struct Unavailable(pub String);

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(node)) = NODE.get() {
        node.shutdown();
    }
    if let Some(Ok(cp)) = SHARED.get() {
        cp.shutdown();
    }
}

fn start_control_plane(for_node: bool) -> &'static Result<ControlPlane, String> {
    SHARED.get_or_init(|| {
        if let Err(e) = sys::at_exit(stop_shared_at_exit) {
            return Err(format!("cannot register the exit hook: {e}"));
        }
        let mut options = Options::default();
        if for_node {
            // Pods reach the API server on the node's bridge address (the `kubernetes`
            // Service endpoint); it is also in the serving certificate.
            options.bind_address = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            options.node_address = Some(IpAddr::V4(NODE_NET.node_ip));
        }
        match ControlPlane::start(options) {
            Ok(cp) => {
                eprintln!(
                    "weft-e2e: control plane {} ready in {:.1}s; logs in {}",
                    cp.server_url(),
                    cp.startup_time().as_secs_f64(),
                    cp.logs_dir().display()
                );
                Ok(cp)
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

/// The control plane shared by all tests of this binary (started on first use; blocking).
pub fn control_plane() -> Result<&'static ControlPlane, Unavailable> {
    start_control_plane(false)
        .as_ref()
        .map_err(|e| Unavailable(e.clone()))
}

/// The control plane and the real worker node shared by all tests of this binary (started
/// on first use; blocking; needs root). The node imports weft's images from `make images`.
pub fn node() -> Result<(&'static ControlPlane, &'static WorkerNode), Unavailable> {
    node_with_images(Vec::new())
}

/// [`node`], importing `extra` image archives too (e.g. the conformance suite's echo
/// image). Only the first call of a binary starts the node, so its `extra` wins.
pub fn node_with_images(
    extra: Vec<std::path::PathBuf>,
) -> Result<(&'static ControlPlane, &'static WorkerNode), Unavailable> {
    let cp = start_control_plane(true)
        .as_ref()
        .map_err(|e| Unavailable(e.clone()))?;
    if cp.node_address().is_none() {
        return Err(Unavailable(
            "this test binary started its control plane without a node; call shared::node() first".into(),
        ));
    }
    let node = NODE.get_or_init(|| {
        let repo = crate::apply::repo_root();
        images::check_fresh(&repo).map_err(|e| e.to_string())?;
        let mut images = images::archives_in(&images::weft_images_dir(&repo)).map_err(|e| e.to_string())?;
        images.extend(extra);
        let options = NodeOptions {
            images,
            ..NodeOptions::default()
        };
        let started = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(WorkerNode::start(cp, options)).map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the node start thread panicked".into()))?;
        let r = started.report();
        eprintln!(
            "weft-e2e: node ready in {:.1}s (runtime {:.1}s, images {:.1}s, kubelet Ready {:.1}s, DNS {:.1}s); logs in {}",
            r.dns_ready.as_secs_f64(),
            r.runtime.as_secs_f64(),
            r.images.as_secs_f64(),
            r.node_ready.as_secs_f64(),
            r.dns_ready.as_secs_f64(),
            started.layout().logs.display()
        );
        Ok(started)
    });
    let node = node.as_ref().map_err(|e| Unavailable(e.clone()))?;
    Ok((cp, node))
}

/// Sends the harness's `tracing` logs to the test's output (filter from `RUST_LOG`, else
/// `weft_e2e=info`); later calls do nothing.
pub fn init_test_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "weft_e2e=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

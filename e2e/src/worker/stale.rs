//! Teardown that does not need the running node: what every shutdown does once the
//! components are stopped, and the cleanup of a node whose owner died (SIGKILL) and left
//! shims, pods, mounts and host changes behind.

use std::path::Path;
use std::time::{Duration, Instant};

use super::config::NODE_NET;
use super::{NodeBinaries, NodeLayout, host, pods, teardown};
use crate::control_plane::process::ManagedProcess;

/// What every teardown does once the components are stopped (also after a crash).
pub(super) fn finish_teardown(binaries: &NodeBinaries, layout: &NodeLayout) -> Vec<String> {
    let mut problems = Vec::new();
    // Shims outlive containerd; they name its socket on their command line.
    teardown::kill_matching(&layout.containerd_socket.display().to_string());
    if let Err(e) = teardown::kube_proxy_cleanup(&binaries.kube_proxy) {
        problems.push(e);
    }
    teardown::remove_kubelet_chains();
    problems.extend(teardown::unmount_under(&layout.root));
    teardown::remove_log_links(Path::new(teardown::CONTAINER_LOG_LINKS), &layout.pod_logs);
    pods::remove_stale_resolv_dirs(true);
    problems.extend(host::restore(&NODE_NET, layout));
    problems
}

/// Cleans up the node of a run that died: containerd is started once more on its old state
/// so the CRI removes the pods properly (CNI DEL), then the usual teardown runs; sandboxes
/// whose network namespace survives that are deleted by name.
pub(super) fn clean_stale(binaries: &NodeBinaries, state_dir: &Path) {
    let layout = NodeLayout::new(state_dir, &state_dir.join("unused-ca.crt"));
    for file in [
        &layout.kubelet_config,
        &layout.kube_proxy_config,
        &layout.containerd_config,
    ] {
        teardown::kill_matching(&file.display().to_string());
    }
    let mut netns = Vec::new();
    if layout.containerd_config.exists() {
        let _ = std::fs::remove_file(&layout.containerd_socket);
        let _ = std::fs::remove_file(layout.containerd_socket.with_extension("sock.ttrpc"));
        let _ = std::fs::create_dir_all(&layout.logs);
        match ManagedProcess::spawn(
            "containerd-cleanup",
            &binaries.containerd,
            &[format!("--config={}", layout.containerd_config.display())],
            &layout.logs,
        ) {
            Ok(mut p) => {
                let config = layout.crictl_config.display().to_string();
                let began = Instant::now();
                while teardown::run_bounded(
                    &binaries.crictl,
                    &["--config", &config, "info"],
                    Duration::from_secs(5),
                )
                .is_err()
                    && began.elapsed() < Duration::from_secs(30)
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                netns = pods::all_sandbox_netns(&binaries.crictl, &layout.crictl_config);
                if let Err(e) = teardown::remove_all_pods(&binaries.crictl, &layout.crictl_config) {
                    tracing::warn!(error = %e, "removing the stale node's pods");
                }
                p.stop();
            }
            Err(e) => tracing::warn!(error = %e, "starting containerd to clean up the stale node"),
        }
    }
    for p in finish_teardown(binaries, &layout) {
        tracing::warn!(problem = %p, "stale node teardown");
    }
    for name in netns {
        if Path::new("/var/run/netns").join(&name).exists() {
            let _ = host::run("ip", &["netns", "delete", &name]);
        }
    }
    let _ = std::fs::remove_dir_all(state_dir);
    let _ = std::fs::remove_file(teardown::OWNER_FILE);
}

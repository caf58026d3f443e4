//! The real test node: kubelet v1.34 + containerd + CNI + kube-proxy + CoreDNS joined to
//! the real control plane. Proves what a user of any cluster relies on: the Node reports
//! the pinned kubelet and containerd, a pod of a public image built locally (CoreDNS)
//! runs, `kubectl logs`, `kubectl exec` and `kubectl port-forward` work through the kubelet
//! API, pods resolve names through the cluster DNS and reach Services through kube-proxy.
//!
//! And for weft's own pods: an injected pod runs as the webhook specified it, which only
//! a real kubelet and container runtime make true.
//!
//! Needs root (skips otherwise, saying so), `make kube-bins node-tools images`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use support::World;
use weft_e2e::mesh::workload::DemoApp;
use weft_e2e::mesh::{wait_for, workload};
use weft_e2e::worker::{NODE_NAME, WorkerNode, binaries};
use weft_e2e::{ControlPlane, TestNamespace, shared};

fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(&cp.binaries().kubectl)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cluster(test: &str) -> Option<(&'static ControlPlane, &'static WorkerNode)> {
    if !root() {
        eprintln!("SKIPPED {test}: needs root (containerd, kubelet, iptables)");
        return None;
    }
    Some(shared::node().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_is_a_real_kubelet_on_containerd() {
    let Some((cp, _node)) = cluster("the_node_is_a_real_kubelet_on_containerd") else {
        return;
    };
    let client = cp.client().unwrap();
    let node: Node = Api::all(client).get(NODE_NAME).await.unwrap();
    let info = node.status.as_ref().unwrap().node_info.as_ref().unwrap();
    assert_eq!(info.kubelet_version, binaries_kube_version());
    assert!(
        info.container_runtime_version.starts_with("containerd://1."),
        "{}",
        info.container_runtime_version
    );
    let addresses = node.status.as_ref().unwrap().addresses.clone().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "198.18.0.1"),
        "{addresses:?}"
    );
    let (ok, out, err) = kubectl(cp, &["get", "nodes", "-o", "wide"]);
    assert!(ok, "{err}");
    eprintln!("{out}");
    assert!(out.contains("v1.34.4") && out.contains("containerd://"), "{out}");
}

fn binaries_kube_version() -> String {
    weft_e2e::control_plane::binaries::kube_version().to_string()
}

/// A pod of a public image built locally (CoreDNS) runs; logs, exec and port-forward work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_exec_and_port_forward_reach_a_coredns_pod() {
    let Some((cp, _node)) = cluster("kubectl_logs_exec_and_port_forward_reach_a_coredns_pod") else {
        return;
    };
    let client = cp.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "kube-system");
    let dns = pods
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await
        .unwrap()
        .items;
    assert_eq!(dns.len(), 1, "one CoreDNS pod");
    let status = dns[0].status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let image = &status.container_statuses.as_ref().unwrap()[0].image;
    assert_eq!(image, &binaries::coredns_image(), "runs the locally built image");

    let (ok, logs, err) = kubectl(cp, &["-n", "kube-system", "logs", "deploy/coredns"]);
    assert!(ok, "kubectl logs: {err}");
    assert!(
        logs.contains(&format!("CoreDNS-{}", &binaries::coredns_version()[1..])),
        "{logs}"
    );

    let (ok, out, err) = kubectl(
        cp,
        &[
            "-n",
            "kube-system",
            "exec",
            "deploy/coredns",
            "--",
            "/coredns",
            "-version",
        ],
    );
    assert!(ok, "kubectl exec: {err}");
    assert!(out.contains("CoreDNS-"), "{out}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut pf = Command::new(&cp.binaries().kubectl)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args([
            "-n",
            "kube-system",
            "port-forward",
            "deploy/coredns",
            &format!("{port}:9153"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = wait_for(
        "metrics through kubectl port-forward",
        Duration::from_secs(20),
        || async move {
            let out = Command::new("curl")
                .args(["-sS", "-m", "2", &format!("http://127.0.0.1:{port}/metrics")])
                .output()
                .map_err(|e| e.to_string())?;
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(body.contains("coredns_build_info").then_some(body))
        },
    )
    .await;
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(metrics.unwrap().contains("coredns_build_info"));
}

/// A pod resolves Service names through CoreDNS (its own search path) and reaches the
/// `kubernetes` Service through kube-proxy; names outside the cluster do not resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_cluster_names_and_reach_services() {
    let Some((cp, node)) = cluster("pods_resolve_cluster_names_and_reach_services") else {
        return;
    };
    let ns = TestNamespace::create(cp, "node-dns").await.unwrap();
    let client = cp.client().unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sleeper", "namespace": ns.name(), "labels": {"app": "sleeper"}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "pause", "image": binaries::pause_image()}]}});
    workload::apply_value(&client, pod).await.unwrap();
    let pods = workload::wait_pods_ready(&client, ns.name(), "app=sleeper", 1, Duration::from_secs(90))
        .await
        .unwrap();
    let net = node
        .pod_network(pods[0].metadata.uid.as_deref().unwrap())
        .unwrap();
    assert!(
        net.resolv_conf.contains("nameserver 198.19.0.10"),
        "{}",
        net.resolv_conf
    );
    assert!(
        net.resolv_conf
            .contains(&format!("search {}.svc.cluster.local", ns.name())),
        "{}",
        net.resolv_conf
    );
    let in_pod = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.netns])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The pod's own search path: `kubernetes.default` is completed to the FQDN.
    let (ok, out, err) = in_pod(&["getent", "hosts", "kubernetes.default"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("198.19.0.1 "), "{out}");
    let (ok, out, err) = in_pod(&["getent", "hosts", "kube-dns.kube-system.svc.cluster.local"]);
    assert!(ok && out.starts_with("198.19.0.10 "), "{out} {err}");
    let (ok, _, _) = in_pod(&["getent", "hosts", "example.com"]);
    assert!(!ok, "names outside the cluster must not resolve");
    // kube-proxy: the `kubernetes` ClusterIP leads to the API server.
    let (ok, out, err) = in_pod(&[
        "curl",
        "-sS",
        "-k",
        "-m",
        "5",
        "https://kubernetes.default.svc/version",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&binaries_kube_version()), "{out}");
}

fn status_field(line: &str, key: &str) -> Option<u64> {
    line.strip_prefix(key)?.split_whitespace().next()?.parse().ok()
}

/// What only a real kubelet + container runtime makes true of an injected pod: the init
/// container ran `weft-proxy init` in a real container with NET_ADMIN and left the pod's
/// nat rules; the native sidecar started after it and before the app; the sidecar runs as
/// UID 2102 with no capabilities, a read-only root filesystem and the MeshConfig's memory
/// limit in its cgroup; `kubectl exec` and `kubectl logs` work on the meshed pod and the
/// controller; and the proxy image has no shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pods_run_as_specified_on_the_real_kubelet() {
    let Some((_serial, w)) = World::begin(
        "injected_pods_run_as_specified_on_the_real_kubelet",
        "mesh-kubelet",
        "smi",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    w.deploy(&DemoApp::new("server", "server", "v1")).await;
    let pod = w.ready_pods("app=server", 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let status = pod.status.clone().unwrap();

    // Order: init completed, then the sidecar started, then the app.
    let inits = status.init_container_statuses.clone().unwrap();
    let init = inits.iter().find(|c| c.name == "weft-init").unwrap();
    let done = init
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .expect("weft-init terminated");
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed")),
        "{done:?}"
    );
    let sidecar = inits.iter().find(|c| c.name == "weft-proxy").unwrap();
    let sidecar_started = sidecar
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone()
        .unwrap();
    let app = &status.container_statuses.clone().unwrap()[0];
    let app_started = app
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone()
        .unwrap();
    let init_done = done.finished_at.clone().unwrap();
    assert!(
        init_done.0 <= sidecar_started.0 && sidecar_started.0 <= app_started.0,
        "init done {init_done:?}, sidecar {sidecar_started:?}, app {app_started:?}"
    );
    assert_eq!(sidecar.started, Some(true));

    // The init container's rules, in the pod's own netns.
    let netns = w.netns(&pod);
    let rules = std::process::Command::new("ip")
        .args(["netns", "exec", &netns, "iptables-save", "-t", "nat"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains("-j REDIRECT --to-ports 15001") && rules.contains("-j REDIRECT --to-ports 15006"),
        "{rules}"
    );

    // The sidecar process as the runtime started it.
    let pid = w.node().container_pid(&uid, "weft-proxy").unwrap();
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(status_field(uid_line, "Uid:"), Some(2102), "{uid_line}");
    let cap_eff = proc_status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(
        cap_eff.ends_with("0000000000000000"),
        "no capabilities: {cap_eff}"
    );
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_mount = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap();
    let opts = root_mount.split_whitespace().nth(5).unwrap();
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "read-only root filesystem: {root_mount}"
    );
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mem = cgroup
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .unwrap();
    let limit = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes")).unwrap();
    assert_eq!(
        limit.trim(),
        (64 * 1024 * 1024).to_string(),
        "the MeshConfig's 64Mi sidecar limit"
    );

    // kubectl exec and logs, through the kubelet API.
    let (ok, out, err) = w.kubectl(&[
        "-n",
        &ns,
        "exec",
        &name,
        "-c",
        "weft-proxy",
        "--",
        "weft-proxy",
        "--version",
    ]);
    assert!(ok, "kubectl exec into the sidecar: {err}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (ok, _, err) = w.kubectl(&[
        "-n",
        &ns,
        "exec",
        &name,
        "-c",
        "weft-proxy",
        "--",
        "/bin/sh",
        "-c",
        "true",
    ]);
    assert!(!ok, "the proxy image must have no shell");
    eprintln!("exec /bin/sh in the sidecar fails as it should: {}", err.trim());
    let (ok, logs, err) = w.kubectl(&["-n", &ns, "logs", &name, "-c", "weft-proxy"]);
    assert!(
        ok && !logs.trim().is_empty(),
        "kubectl logs of the sidecar: {err}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "no terminal colour codes in the sidecar's container logs: {logs}"
    );
    let (ok, logs, err) = w.kubectl(&["-n", "weft-system", "logs", "deploy/weft-controller"]);
    assert!(
        ok && !logs.trim().is_empty(),
        "kubectl logs of the controller: {err}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "no terminal colour codes in the controller's container logs: {logs}"
    );
    eprintln!(
        "sidecar pid {pid}: uid 2102, {cap_eff}, root {opts}, memory limit {}; controller log lines: {}",
        limit.trim(),
        logs.lines().count()
    );
    w.stop().await;
}

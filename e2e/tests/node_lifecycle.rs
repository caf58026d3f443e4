//! The test node's lifecycle on the host: a node that is shut down leaves nothing behind
//! (no process, mount, network namespace, veth, bridge, route, cgroup, iptables chain or
//! state dir, and the sysctls it changed are back), and the node of a run that was killed
//! with SIGKILL — whose container shims and pods outlive it — is cleaned up by the next
//! start. Each test starts its own control plane and node, one at a time.
//!
//! Needs root (skips otherwise), `make kube-bins node-tools images`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_e2e::control_plane::{ControlPlane, Options};
use weft_e2e::mesh::workload;
use weft_e2e::worker::{NODE_NET, NodeOptions, WorkerNode, binaries, host, images, pods, teardown};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn logs() {
    weft_e2e::shared::init_test_logging();
}

fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A control plane a node can join.
fn for_a_node() -> Options {
    Options {
        bind_address: "0.0.0.0".parse().unwrap(),
        node_address: Some(NODE_NET.node_ip.into()),
        ..Options::default()
    }
}

fn weft_images() -> Vec<PathBuf> {
    images::archives_in(&images::weft_images_dir(&weft_e2e::apply::repo_root())).unwrap()
}

/// A pod with an emptyDir and a projected token (both mounted by the kubelet), Ready.
async fn run_a_pod(cp: &ControlPlane, node: &WorkerNode, name: &str) -> pods::PodNetwork {
    let client = cp.client().unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "volumes": [{"name": "scratch", "emptyDir": {}}],
                 "containers": [{"name": "pause", "image": binaries::pause_image(),
                                 "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]}});
    workload::apply_value(&client, pod).await.unwrap();
    let p = workload::wait_pods_ready(
        &client,
        "default",
        &format!("app={name}"),
        1,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    node.pod_network(p[0].metadata.uid.as_deref().unwrap()).unwrap()
}

fn chains(ipt: &str, table: &str) -> String {
    let out = Command::new(ipt).args(["-t", table, "-S"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything a node may leave on the host, as found now.
fn leftovers(state_dir: &Path, netns: &str, veth: &str) -> Vec<String> {
    let mut found = Vec::new();
    let needle = state_dir.display().to_string();
    for pid in teardown::pids_with_cmdline(&needle) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        found.push(format!(
            "process {pid}: {}",
            String::from_utf8_lossy(&cmd).replace('\0', " ")
        ));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for m in teardown::mounts_under(&mountinfo, state_dir) {
        found.push(format!("mount {}", m.display()));
    }
    if state_dir.exists() {
        found.push(format!("state dir {}", state_dir.display()));
    }
    let links = Path::new(teardown::CONTAINER_LOG_LINKS);
    for l in teardown::log_links_into(links, state_dir) {
        found.push(format!("log link {}", l.display()));
    }
    if Path::new("/var/run/netns").join(netns).exists() {
        found.push(format!("netns {netns}"));
    }
    if Path::new("/etc/netns").join(netns).exists() {
        found.push(format!("/etc/netns/{netns}"));
    }
    for link in [veth, NODE_NET.bridge] {
        if Command::new("ip")
            .args(["link", "show", link])
            .output()
            .unwrap()
            .status
            .success()
        {
            found.push(format!("link {link}"));
        }
    }
    let routes = Command::new("ip").args(["route"]).output().unwrap();
    if String::from_utf8_lossy(&routes.stdout).contains(NODE_NET.service_cidr) {
        found.push("service CIDR route".into());
    }
    for mount in host::cgroup_v1_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()) {
        let dir = mount.join(host::CGROUP_ROOT.trim_start_matches('/'));
        if dir.exists() {
            found.push(format!("cgroup {}", dir.display()));
        }
    }
    for ipt in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle"] {
            for line in chains(ipt, table).lines() {
                if line.contains("KUBE-") || line.contains(host::FORWARD_CHAIN) {
                    found.push(format!("{ipt} -t {table}: {line}"));
                }
            }
        }
    }
    if Path::new(teardown::OWNER_FILE).exists() {
        found.push(teardown::OWNER_FILE.into());
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_leaves_nothing_on_the_host() {
    if !root() {
        eprintln!("SKIPPED a_stopped_node_leaves_nothing_on_the_host: needs root");
        return;
    }
    let _serial = SERIAL.lock().await;
    logs();
    let ip_forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let cp = ControlPlane::start(for_a_node()).unwrap();
    let node = WorkerNode::start(
        &cp,
        NodeOptions {
            images: weft_images(),
            ..NodeOptions::default()
        },
    )
    .await
    .unwrap();
    let state_dir = node.layout().root.clone();
    let net = run_a_pod(&cp, &node, "lifecycle").await;
    let veth = pods::host_veth(&net.netns).unwrap();
    assert!(
        !leftovers(&state_dir, &net.netns, &veth).is_empty(),
        "the node should be visible while it runs"
    );

    let began = Instant::now();
    node.shutdown();
    eprintln!("node shut down in {:?}", began.elapsed());
    let left = leftovers(&state_dir, &net.netns, &veth);
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        ip_forward_before,
        "ip_forward restored"
    );
    cp.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_of_a_killed_run_is_cleaned_up_by_the_next_start() {
    if !root() {
        eprintln!("SKIPPED the_node_of_a_killed_run_is_cleaned_up_by_the_next_start: needs root");
        return;
    }
    let _serial = SERIAL.lock().await;
    logs();
    // This test keeps the machine's node lock from start to end, so no other test binary
    // takes the node over while its owner lies dead (the dev cluster runs under it).
    let lock = teardown::NodeLock::acquire(NodeOptions::default().wait_for_other)
        .unwrap()
        .expect("the machine's node lock (another node runs: set WEFT_NODE_WAIT_SECS to wait)");
    // A dev cluster (control plane + node in one `up` process) with a running pod.
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_weft-dev-cluster");
    let start = Command::new(exe)
        .args(["--dir", &dir.path().display().to_string(), "start"])
        .env(
            "WEFT_IMAGES_DIR",
            images::weft_images_dir(&weft_e2e::apply::repo_root()),
        )
        .env(teardown::LOCK_HELD_ENV, "1")
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let up_pid: u32 = std::fs::read_to_string(dir.path().join("dev-cluster.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
    let config = weft_e2e::control_plane::kubeconfig::client_config(&kubeconfig)
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "namespace": "default", "labels": {"app": "orphan"}},
        "spec": {"containers": [{"name": "pause", "image": binaries::pause_image()}]}});
    workload::apply_value(&client, pod).await.unwrap();
    let p = workload::wait_pods_ready(&client, "default", "app=orphan", 1, Duration::from_secs(90))
        .await
        .unwrap();
    let stale_dir = dir.path().join("node");
    let stale_net = pods::pod_network(
        &binaries::node_tools_dir().join("crictl"),
        &stale_dir.join("crictl.yaml"),
        p[0].metadata.uid.as_deref().unwrap(),
    )
    .unwrap();

    // SIGKILL: the kernel kills its direct children (control plane, kubelet, containerd),
    // but the container shims and the pod's sandbox live on.
    weft_e2e::control_plane::sys::send_signal(up_pid, weft_e2e::control_plane::sys::Signal::Kill).unwrap();
    let socket = stale_dir.join("containerd.sock").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while teardown::alive(up_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!teardown::alive(up_pid), "the up process should be dead");
    std::thread::sleep(Duration::from_secs(1));
    let shims = teardown::pids_with_cmdline(&socket);
    assert!(
        !shims.is_empty(),
        "the killed run's shims outlive it (or this test proves nothing)"
    );
    assert!(
        Path::new("/var/run/netns").join(&stale_net.netns).exists(),
        "its pod sandbox lives on"
    );

    let owner = teardown::read_owner();
    assert!(
        owner.as_ref().is_some_and(|o| o.pid == up_pid),
        "the killed run still owns the node: {owner:?}"
    );
    // The next start cleans up first.
    let cp = ControlPlane::start(for_a_node()).unwrap();
    let node = WorkerNode::start(
        &cp,
        NodeOptions {
            images: weft_images(),
            lock_held_by_caller: true,
            ..NodeOptions::default()
        },
    )
    .await
    .unwrap();
    let survivors: Vec<String> = teardown::pids_with_cmdline(&socket)
        .iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{pid}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    assert!(
        survivors.is_empty(),
        "stale shims should be killed, these remain: {survivors:#?}"
    );
    assert!(
        !Path::new("/var/run/netns").join(&stale_net.netns).exists(),
        "stale netns removed"
    );
    assert!(!stale_dir.exists(), "stale state dir removed");
    let net = run_a_pod(&cp, &node, "after-crash").await;
    let veth = pods::host_veth(&net.netns).unwrap();
    let state_dir = node.layout().root.clone();
    node.shutdown();
    let left = leftovers(&state_dir, &net.netns, &veth);
    assert!(left.is_empty(), "left behind: {left:#?}");
    cp.shutdown();
    drop(lock);
}

//! The real `weft-controller` process at scale on a real API server (a benchmark:
//! `make bench-controller`; ignored by `make test`). Creates 10 namespaces × 20 identities,
//! each with 5 meshed pods and 5 Services (1,000 Services, 1,000 pods, 5,000 endpoints,
//! 200 TrafficTargets), starts the release controller binary against them, and measures:
//! time until all 200 identity ConfigMaps are written, the controller's RSS (VmRSS while
//! settling, VmHWM peak) and CPU time, and TrafficSplit-change-to-ConfigMap delay at that
//! scale (p50/p99 over 20 flips). Run once in `smi` access mode (scoped configs) and once
//! in `permissive` mode (every service reachable: configs reference the shared service
//! catalog, whose shards are counted and sized too). Writes
//! `target/bench/controller-scale-<mode>.json`.
//!
//! Not a benchmark, run by `make test`: two real (debug) `weft-controller` processes elect a
//! leader, and the standby stays under 1 % of a core over 30 s (issue 14 item 13).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fixtures::*;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use weft_e2e::mesh::traffic::percentile;
use weft_e2e::mesh::{policy, sync, workload};
use weft_e2e::{TestNamespace, apply, shared};

const NAMESPACES: usize = 10;
const IDS: usize = 20;
const PODS: usize = 5;
const SVCS: usize = 5;
const CALLERS: usize = 5;

fn controller_bin() -> PathBuf {
    std::env::var_os("WEFT_CONTROLLER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| apply::repo_root().join("target/release/weft-controller"))
}

/// Every object of one namespace: identities `id-<k>`, pods `p-<k>-<m>` (meshed, per the
/// injection annotation), selector-less Services `s-<k>-<j>` with an EndpointSlice over
/// the identity's pods, a TCPRoute and one TrafficTarget per identity (callable by the
/// next 5 identities).
async fn populate(client: &kube::Client, ns: &str, n: usize) {
    for k in 0..IDS {
        create::<ServiceAccount>(client, ns, json!({"metadata": {"name": format!("id-{k}")}})).await;
    }
    let mut jobs: Vec<(u8, Value)> = Vec::new();
    for k in 0..IDS {
        for m in 0..PODS {
            jobs.push((
                0,
                json!({
                "metadata": {"name": format!("p-{k}-{m}"), "annotations": {"weft.dev/injected": "bench"}},
                "spec": {"serviceAccountName": format!("id-{k}"), "initContainers": sidecar_stub(),
                         "containers": [{"name": "app", "image": "app",
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}),
            ));
        }
        for j in 0..SVCS {
            let svc = format!("s-{k}-{j}");
            jobs.push((
                1,
                json!({"metadata": {"name": svc},
                "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}),
            ));
            let endpoints: Vec<Value> = (0..PODS)
                .map(|m| {
                    json!({"addresses": [format!("198.18.{}.{}", n + 1, k * PODS + m + 1)],
                    "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": format!("p-{k}-{m}"), "namespace": ns}})
                })
                .collect();
            jobs.push((2, json!({
                "metadata": {"name": format!("{svc}-bench"), "labels": {
                    "kubernetes.io/service-name": svc, "endpointslice.kubernetes.io/managed-by": "weft-bench"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints})));
        }
    }
    stream::iter(jobs)
        .for_each_concurrent(16, |(kind, v)| async move {
            match kind {
                0 => drop(create::<Pod>(client, ns, v).await),
                1 => drop(create::<Service>(client, ns, v).await),
                _ => drop(create::<EndpointSlice>(client, ns, v).await),
            }
        })
        .await;
    workload::apply_value(client, policy::tcp_route(ns, "all"))
        .await
        .unwrap();
    stream::iter(0..IDS)
        .for_each_concurrent(8, |k| async move {
            let sources: Vec<String> = (1..=CALLERS).map(|c| format!("id-{}", (k + c) % IDS)).collect();
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            let rules: [policy::Rule<'_>; 1] = [("TCPRoute", "all", &[])];
            let dest = format!("id-{k}");
            workload::apply_value(client, policy::traffic_target(ns, &dest, &dest, &sources, &rules))
                .await
                .unwrap();
        })
        .await;
}

fn proc_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After "pid (comm)": state is field 3, utime 14, stime 15 (proc(5)), in clock ticks.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Identity configs written so far (catalog shards carry the same label).
async fn identity_configmaps(client: &kube::Client) -> usize {
    let cms: Api<ConfigMap> = Api::all(client.clone());
    cms.list(&ListParams::default().labels("weft.dev/managed-by=weft"))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|c| {
                    c.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("weft-proxy-"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// (largest identity ConfigMap payload, catalog shards, largest shard, all shards) in bytes.
async fn payload_sizes(client: &kube::Client) -> (usize, usize, usize, usize) {
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let items = cms
        .list(&ListParams::default().labels("weft.dev/managed-by=weft"))
        .await
        .unwrap()
        .items;
    let size = |c: &ConfigMap, key: &str| c.data.as_ref().and_then(|d| d.get(key)).map_or(0, String::len);
    let largest = items.iter().map(|c| size(c, "config.json")).max().unwrap_or(0);
    let shards: Vec<usize> = items
        .iter()
        .map(|c| size(c, "catalog.json"))
        .filter(|n| *n > 0)
        .collect();
    let (n, max, sum) = (
        shards.len(),
        shards.iter().copied().max().unwrap_or(0),
        shards.iter().sum(),
    );
    (largest, n, max, sum)
}

/// Removes what a previous mode's run left in the mesh namespace (its controller was
/// killed before pruning), so each mode is measured from a clean slate.
async fn remove_catalog(client: &kube::Client) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SYSTEM_NS);
    let _ = cms
        .delete_collection(
            &kube::api::DeleteParams::default(),
            &ListParams::default().labels("weft.dev/catalog"),
        )
        .await;
}

/// Both modes share this binary's control plane: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-controller"]
async fn controller_at_scale_smi() {
    controller_at_scale("smi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-controller"]
async fn controller_at_scale_permissive() {
    controller_at_scale("permissive").await;
}

async fn controller_at_scale(mode: &str) {
    let _serial = SERIAL.lock().await;
    let bin = controller_bin();
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p weft-controller",
        bin.display()
    );
    let cp = shared::control_plane().unwrap();
    let client = cp.client().unwrap();
    crds_and_system_namespace(&client).await;
    remove_catalog(&client).await;
    let _mesh = MeshConfigGuard(client.clone());
    weft_e2e::mesh::install::set_mesh_modes(&client, mode, "strict")
        .await
        .unwrap();
    let began = Instant::now();
    let mut namespaces = Vec::new();
    for n in 0..NAMESPACES {
        let ns = TestNamespace::create(cp, "scale").await.unwrap();
        populate(&client, ns.name(), n).await;
        mesh_namespace(&client, ns.name()).await;
        namespaces.push(ns);
    }
    let populate_secs = began.elapsed().as_secs_f64();
    eprintln!("populated {NAMESPACES} namespaces in {populate_secs:.1}s");

    let mut child = tokio::process::Command::new(&bin)
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .args([
            "--disable-webhook",
            "--disable-identity",
            "--disable-leader-election",
            "--pod-name",
            "weft-bench",
        ])
        .args(["--metrics-port", &free_port().to_string()])
        .args(["--health-port", &free_port().to_string()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let started = Instant::now();
    let want = NAMESPACES * IDS;
    let mut rss_samples = Vec::new();
    while identity_configmaps(&client).await < want {
        rss_samples.push(proc_kb(pid, "VmRSS:"));
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "configs not all written in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_written = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled_rss = proc_kb(pid, "VmRSS:");

    // TrafficSplit changes at this scale: root s-0-0 of id-0 (namespace 0) over s-0-1 and
    // s-0-2; id-1 may call id-0, so its config carries the split.
    let ns0 = namespaces[0].name().to_string();
    let root = format!("{ns0}/s-0-0");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns0);
    let mut delays = Vec::new();
    for i in 0..20u64 {
        let (a, b) = if i % 2 == 0 { (100, 0) } else { (0, 100) };
        let split = workload::traffic_split(&ns0, "s-0-0", "s-0-0", &[("s-0-1", a), ("s-0-2", b)]);
        let t0 = Instant::now();
        workload::apply_value(&client, split).await.unwrap();
        let want = [("s-0-1", u64::from(a)), ("s-0-2", u64::from(b))];
        loop {
            let raw = cms
                .get("weft-proxy-id-1")
                .await
                .ok()
                .and_then(|c| c.data?.get("config.json").cloned())
                .and_then(|j| serde_json::from_str::<Value>(&j).ok());
            // Through the catalog in permissive mode, as the sidecar assembles it.
            let cfg = match raw {
                Some(v) => sync::assembled(&client, v).await.ok(),
                None => None,
            };
            if cfg
                .as_ref()
                .and_then(|c| sync::split_weights(c, &root))
                .is_some_and(|got| sync::same_proportions(&got, &want))
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "split {a}/{b} never reached id-1"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        delays.push(t0.elapsed());
    }
    let (hwm, cpu) = (proc_kb(pid, "VmHWM:"), cpu_secs(pid));
    let (largest, shards, largest_shard, catalog_bytes) = payload_sizes(&client).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let max_rss = rss_samples.iter().copied().max().unwrap_or(0);
    let report = json!({
        "bench": "controller-scale",
        "access_mode": mode,
        "namespaces": NAMESPACES, "identities": want, "services": NAMESPACES * IDS * SVCS,
        "pods": NAMESPACES * IDS * PODS, "endpoints": NAMESPACES * IDS * SVCS * PODS,
        "populate_secs": populate_secs,
        "all_configs_written_secs": all_written.as_secs_f64(),
        "rss_mib_while_settling_max": max_rss as f64 / 1024.0,
        "rss_mib_settled": settled_rss as f64 / 1024.0,
        "rss_mib_peak_vmhwm": hwm as f64 / 1024.0,
        "cpu_secs_total": cpu,
        "split_to_configmap_ms_p50": percentile(&delays, 50.0).as_secs_f64() * 1e3,
        "split_to_configmap_ms_p99": percentile(&delays, 99.0).as_secs_f64() * 1e3,
        "largest_identity_configmap_bytes": largest,
        "catalog_shards": shards,
        "largest_shard_bytes": largest_shard,
        "catalog_bytes": catalog_bytes,
    });
    eprintln!(
        "controller at scale: {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    let out = apply::repo_root().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join(format!("controller-scale-{mode}.json")),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    for ns in namespaces {
        ns.delete_and_wait(Duration::from_secs(120), |_| async {})
            .await
            .unwrap();
    }
}

/// The debug `weft-controller` next to this test binary (`<target>/debug/deps/..` → `<target>/debug/`),
/// or `WEFT_CONTROLLER_BIN`. `cargo test --workspace` builds it; a single-package run needs
/// `cargo build -p weft-controller --bin weft-controller` first.
fn debug_controller_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_CONTROLLER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|deps| deps.parent()).unwrap();
    debug.join("weft-controller")
}

/// A real controller process (webhook and operator), killed and reaped on drop; it also
/// dies with the test binary (parent-death signal).
struct Replica {
    name: String,
    child: std::process::Child,
    health_port: u16,
    log: PathBuf,
}

impl Replica {
    fn start(
        bin: &std::path::Path,
        kubeconfig: &std::path::Path,
        ns: &str,
        name: &str,
        logs: &std::path::Path,
    ) -> Self {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let health_port = free_port();
        let mut cmd = std::process::Command::new(bin);
        cmd.env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .args([
                "--namespace",
                ns,
                "--pod-name",
                name,
                "--lease-duration-secs",
                "4",
            ])
            .args(["--health-port", &health_port.to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .args(["--webhook-port", &free_port().to_string()])
            .args(["--webhook-health-port", &free_port().to_string()])
            .args(["--identity-port", &free_port().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = weft_e2e::control_plane::spawn_tied(cmd).unwrap();
        Self {
            name: name.into(),
            child,
            health_port,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/readyz` answers 200 (caches synced; a standby is ready too).
    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.health_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_replica_stays_under_one_percent_cpu() {
    let _serial = SERIAL.lock().await;
    let bin = debug_controller_bin();
    assert!(
        bin.exists(),
        "{} missing: cargo build -p weft-controller --bin weft-controller (or set WEFT_CONTROLLER_BIN)",
        bin.display()
    );
    let cp = shared::control_plane().unwrap();
    let client = cp.client().unwrap();
    crds_and_system_namespace(&client).await;
    // The replicas' own namespace (Lease, CA) is this test's, so nothing else competes.
    let ns = TestNamespace::create(cp, "standby").await.unwrap();
    let ns_name = ns.name().to_string();
    workload(
        &client,
        &ns_name,
        "frontend",
        "frontend-1",
        &["frontend"],
        "198.18.20.1",
    )
    .await;
    let logs = tempfile::tempdir().unwrap();
    let replicas = [
        Replica::start(&bin, cp.kubeconfig_path(), &ns_name, "replica-a", logs.path()),
        Replica::start(&bin, cp.kubeconfig_path(), &ns_name, "replica-b", logs.path()),
    ];
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns_name);
    let began = Instant::now();
    let leader = loop {
        let holder = leases
            .get_opt("weft-controller")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity);
        if let Some(h) = holder
            && replicas.iter().all(Replica::ready)
        {
            break h;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no leader with both replicas ready within 30 s:\n{}\n{}",
            replicas[0].log_tail(),
            replicas[1].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (lead, standby) = if replicas[0].name == leader {
        (&replicas[0], &replicas[1])
    } else {
        (&replicas[1], &replicas[0])
    };
    // The leader's first reconcile (identity ConfigMap) is done: startup work is over.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns_name);
    while cms.get_opt("weft-proxy-frontend").await.unwrap().is_none() {
        assert!(
            began.elapsed() < Duration::from_secs(40),
            "the leader wrote no config"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 30 s with a change every 3 s, which every replica's watches see.
    let window = Duration::from_secs(30);
    let (standby_before, leader_before) = (cpu_secs(standby.pid()), cpu_secs(lead.pid()));
    let t0 = Instant::now();
    for i in 0..10 {
        let svc = format!("churn-{i}");
        create::<Service>(
            &client,
            &ns_name,
            json!({"metadata": {"name": svc}, "spec": {"ports": [{"name": "http", "port": 8080}]}}),
        )
        .await;
        tokio::time::sleep_until((t0 + window * (i + 1) / 10).into()).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let standby_cpu = cpu_secs(standby.pid()) - standby_before;
    let leader_cpu = cpu_secs(lead.pid()) - leader_before;
    eprintln!(
        "standby {} used {standby_cpu:.2} s CPU in {elapsed:.1} s ({:.2} %), leader {} {leader_cpu:.2} s",
        standby.name,
        standby_cpu / elapsed * 100.0,
        lead.name
    );
    assert!(
        standby_cpu / elapsed < 0.01,
        "standby {} used {standby_cpu:.2} s of CPU in {elapsed:.1} s (budget 1 % of a core):\n{}",
        standby.name,
        standby.log_tail()
    );
    let holder = leases
        .get("weft-controller")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(
        holder.as_deref(),
        Some(lead.name.as_str()),
        "leadership stayed put"
    );
    drop(replicas);
    ns.delete_and_wait(Duration::from_secs(60), |_| async {})
        .await
        .unwrap();
}

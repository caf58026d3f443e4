//! Shared by the mesh e2e binaries (`mesh.rs`, `mesh_resilience.rs`): a meshed test world
//! (the real test node, weft installed from its images like `make install`, one labelled
//! namespace), common workloads, background load and config snapshots.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;
use weft_e2e::mesh::policy;
use weft_e2e::mesh::traffic::{Batch, Reply, format_tally, tally};
use weft_e2e::mesh::workload::{self, DemoApp};
use weft_e2e::mesh::{install, sync};
use weft_e2e::worker::WorkerNode;
use weft_e2e::{ControlPlane, TestNamespace, shared};

/// The mesh settings (MeshConfig) are cluster-wide: tests of this binary take turns.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A meshed test world: the node, weft installed, one labelled namespace.
pub struct World {
    cp: &'static ControlPlane,
    node: &'static WorkerNode,
    ns: Option<TestNamespace<'static>>,
    pub client: kube::Client,
}

impl World {
    /// For test `test`: `None` (saying it is skipped) unless root; else waits for this
    /// binary's turn (the mesh modes are cluster-wide) and starts a world.
    pub async fn begin(
        test: &str,
        prefix: &str,
        access: &str,
        mtls: &str,
    ) -> Option<(tokio::sync::MutexGuard<'static, ()>, Self)> {
        if !root() {
            eprintln!("SKIPPED {test}: needs root (network namespaces, iptables)");
            return None;
        }
        let serial = SERIAL.lock().await;
        Some((serial, Self::start(prefix, access, mtls).await))
    }

    /// Lets ServiceAccount `client` call each of `destinations` (ServiceAccount = Service
    /// name) on every port: the TCPRoute `all-ports` plus one TrafficTarget per destination.
    pub async fn allow_client(&self, destinations: &[&str]) {
        let ns = self.ns().to_string();
        self.apply(policy::tcp_route(&ns, "all-ports")).await;
        let rules: [policy::Rule<'_>; 1] = [("TCPRoute", "all-ports", &[])];
        for dest in destinations {
            self.apply(policy::traffic_target(&ns, dest, dest, &["client"], &rules))
                .await;
        }
    }

    /// Starts (or reuses) this binary's node, installs weft (as `make install` does: the
    /// controller runs from its image), creates a labelled namespace and proves the API
    /// server reaches the webhook through its Service.
    pub async fn start(prefix: &str, access: &str, mtls: &str) -> Self {
        shared::init_test_logging();
        let (cp, node): (&'static ControlPlane, &'static WorkerNode) = shared::node().unwrap();
        let client = cp.client().unwrap();
        let began = Instant::now();
        let report = install::install(&client, &weft_e2e::apply::repo_root(), READY_TIMEOUT, &|s| {
            eprintln!("install: {s}")
        })
        .await
        .unwrap();
        eprintln!(
            "weft installed: {} CRDs, {} objects, apply {:?}, controller Available after {:?}",
            report.crds.len(),
            report.objects,
            report.apply,
            report.available
        );
        install::set_mesh_modes(&client, access, mtls).await.unwrap();
        let ns = TestNamespace::create(cp, prefix).await.unwrap();
        workload::apply_value(&client, workload::meshed_namespace(ns.name()))
            .await
            .unwrap();
        let webhook = install::webhook_answers(&client, ns.name(), Duration::from_secs(60))
            .await
            .unwrap();
        eprintln!(
            "webhook answers through its Service (after {webhook:?}); setup {:?}",
            began.elapsed()
        );
        Self {
            cp,
            node,
            ns: Some(ns),
            client,
        }
    }

    /// The network namespace of `pod` (for `ip netns exec`), with the pod's resolv.conf so
    /// names resolve through the cluster DNS as in the pod.
    pub fn netns(&self, pod: &Pod) -> String {
        self.node
            .pod_network(pod.metadata.uid.as_deref().unwrap())
            .unwrap()
            .netns
    }

    /// The node.
    pub fn node(&self) -> &'static WorkerNode {
        self.node
    }

    /// Runs kubectl (the built one, admin kubeconfig): (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(&self.cp.binaries().kubectl)
            .arg("--kubeconfig")
            .arg(self.cp.kubeconfig_path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The host end of `pod`'s veth (packet captures).
    pub fn host_veth(&self, pod: &Pod) -> String {
        weft_e2e::worker::pods::host_veth(&self.netns(pod)).unwrap()
    }

    pub fn ns(&self) -> &str {
        self.ns.as_ref().unwrap().name()
    }

    pub async fn apply(&self, object: serde_json::Value) {
        workload::apply_value(&self.client, object).await.unwrap();
    }

    pub async fn deploy(&self, app: &DemoApp) {
        for o in app.objects(self.ns()) {
            self.apply(o).await;
        }
    }

    /// Waits for `count` Ready pods with `selector`, asserts each is injected, returns them.
    pub async fn ready_pods(&self, selector: &str, count: usize) -> Vec<Pod> {
        let pods = workload::wait_pods_ready(&self.client, self.ns(), selector, count, READY_TIMEOUT)
            .await
            .unwrap();
        for p in &pods {
            assert!(
                workload::injected(p),
                "pod {:?} lacks weft-init + weft-proxy",
                p.metadata.name
            );
        }
        pods
    }

    /// Runs `act` (applies, deletes) and waits until the sidecars of `pods` serve the
    /// config the operator rendered afterwards. Returns how long that took.
    pub async fn change<F: Future<Output = ()>>(&self, pods: &[Pod], act: F) -> Duration {
        let before = sync::hashes(&self.client, pods).await.unwrap();
        let began = Instant::now();
        act.await;
        sync::wait_all(
            &self.client,
            self.node.cri(),
            pods,
            &before,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        began.elapsed()
    }

    /// Deletes the test namespace and waits until the kubelet has removed its pods (weft
    /// stays installed for the binary's next test).
    pub async fn stop(mut self) {
        if let Some(ns) = self.ns.take() {
            ns.delete_and_wait(Duration::from_secs(120), |_| async {})
                .await
                .unwrap();
        }
    }
}

pub async fn send(netns: &str, url: &str, n: usize) -> Vec<Reply> {
    Batch::get(netns, url, n).run().await.unwrap()
}

/// `server` (ServiceAccount + Service `server`, env `server_env`), a second always-failing
/// `broken` service, and a `client`. Returns (client pod, server pod, broken pod).
pub async fn server_client(w: &World, server_env: &[(&str, &str)]) -> (Pod, Pod, Pod) {
    let mut server = DemoApp::new("server", "server", "v1");
    server.env = server_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut broken = DemoApp::new("broken", "broken", "v1");
    broken.env.insert("FAIL_RATE".into(), "1.0".into());
    for (app, name) in [(&server, "server"), (&broken, "broken")] {
        w.deploy(app).await;
        w.apply(workload::service(w.ns(), name, &[("app", name)])).await;
    }
    w.deploy(&DemoApp::new("client", "client", "v1")).await;
    let s = w.ready_pods("app=server", 1).await.remove(0);
    let b = w.ready_pods("app=broken", 1).await.remove(0);
    let c = w.ready_pods("app=client", 1).await.remove(0);
    (c, s, b)
}

pub fn statuses(r: &[Reply]) -> String {
    format_tally(&tally(r))
}

pub fn all_denied(r: &[Reply]) -> bool {
    r.iter().all(|r| r.status != 200)
}

/// Background load from a pod: batches of sequential requests until stopped, bounded by
/// `max` (time) and 5,000 requests.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Reply>>,
}

impl Load {
    pub fn start(netns: &str, url: &str, max: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, netns, url) = (stop.clone(), netns.to_string(), url.to_string());
        let task = tokio::spawn(async move {
            let (began, mut all) = (Instant::now(), Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed)
                && began.elapsed() < max
                && all.len() < 5_000
            {
                match Batch::get(&netns, &url, 10).run().await {
                    Ok(r) => all.extend(r),
                    Err(e) => panic!("load batch failed to run: {e}"),
                }
            }
            all
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> Vec<Reply> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Every weft-managed ConfigMap in `ns`: name → (`resourceVersion`, parsed `config.json`,
/// with the service catalog assembled in as the sidecar runs it).
pub async fn configs(client: &kube::Client, ns: &str) -> BTreeMap<String, (String, serde_json::Value)> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let items = cms
        .list(&ListParams::default().labels("weft.dev/managed-by=weft"))
        .await
        .unwrap()
        .items;
    let mut out = BTreeMap::new();
    for c in items {
        let (Some(name), Some(rv), Some(json)) = (
            c.metadata.name,
            c.metadata.resource_version,
            c.data.and_then(|d| d.get("config.json").cloned()),
        ) else {
            continue;
        };
        let value = sync::assembled(client, serde_json::from_str(&json).unwrap())
            .await
            .unwrap();
        out.insert(name, (rv, value));
    }
    out
}

/// A config without the services of `weft-system` (whose endpoints are the operator pods
/// themselves, so restarting the operator legitimately changes them).
pub fn without_system_services(mut config: serde_json::Value) -> serde_json::Value {
    if let Some(services) = config.get_mut("services").and_then(|s| s.as_object_mut()) {
        let prefix = format!("{}/", install::SYSTEM_NAMESPACE);
        services.retain(|key, _| !key.starts_with(&prefix));
    }
    config
}

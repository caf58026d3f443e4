//! Shared by the mesh e2e binaries (`mesh.rs`, `mesh_resilience.rs`): a meshed test world
//! (node agent, weft installed like `make install`, one labelled namespace), common
//! workloads, background load and config snapshots.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use weft_e2e::mesh::policy;
use weft_e2e::mesh::traffic::{Batch, Reply, format_tally, tally};
use weft_e2e::mesh::workload::{self, DemoApp};
use weft_e2e::mesh::{install, sync, wait_for};
use weft_e2e::node::{Agent, AgentConfig};
use weft_e2e::{ControlPlane, TestNamespace, shared};

/// One agent per host at a time: tests of this binary take turns.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-demo-app"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A meshed test world: the agent, weft installed, one labelled namespace.
pub struct World {
    agent: Option<Agent>,
    ns: Option<TestNamespace<'static>>,
    pub client: kube::Client,
}

impl World {
    /// For test `test`: `None` (saying it is skipped) unless root; else waits for this
    /// binary's turn (one node agent per host) and starts a world.
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

    /// Starts the agent, installs weft (as `make install` does), creates a labelled
    /// namespace and proves the API server reaches the webhook through its Service.
    pub async fn start(prefix: &str, access: &str, mtls: &str) -> Self {
        let filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "weft_e2e=info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let dir = bin_dir();
        for bin in ["weft-proxy", "weft-controller", "weft-demo-app"] {
            assert!(
                dir.join(bin).is_file(),
                "{bin} missing in {}: run `cargo build --workspace --bins` (make e2e does)",
                dir.display()
            );
        }
        let cp: &'static ControlPlane = shared::control_plane().unwrap();
        let client = cp.client().unwrap();
        let mut config = AgentConfig::new("weft-node-0");
        config.bin_dir = dir;
        config.api_server = Some(format!("127.0.0.1:{}", cp.ports().apiserver).parse().unwrap());
        config.state_dir = std::env::temp_dir().join(format!("weft-mesh-test-{}", std::process::id()));
        let agent = Agent::start(client.clone(), config).await.unwrap();
        // Controller pods left by an earlier agent (a test that panicked) would be
        // restarted in fresh sandboxes; start from new ones instead.
        let stale: Api<Pod> = Api::namespaced(client.clone(), install::SYSTEM_NAMESPACE);
        let _ = stale
            .delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default())
            .await;
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
            agent: Some(agent),
            ns: Some(ns),
            client,
        }
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
        sync::wait_all(&self.client, pods, &before, Duration::from_secs(30))
            .await
            .unwrap();
        began.elapsed()
    }

    /// Deletes the namespace while the agent still runs its pods, then stops the agent.
    pub async fn stop(mut self) {
        if let Some(ns) = self.ns.take() {
            ns.delete_and_wait(Duration::from_secs(90), |_| async {})
                .await
                .unwrap();
        }
        // weft-system's pods go too, while this agent still runs them: the next test's
        // agent installs weft afresh instead of inheriting pods whose sandboxes are gone.
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let _ = nss.delete(install::SYSTEM_NAMESPACE, &Default::default()).await;
        wait_for("weft-system to be deleted", Duration::from_secs(90), || {
            let nss = nss.clone();
            async move {
                let gone = nss
                    .get_opt(install::SYSTEM_NAMESPACE)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none();
                Ok(gone.then_some(()))
            }
        })
        .await
        .unwrap();
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
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

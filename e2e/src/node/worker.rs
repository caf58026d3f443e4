//! One pod's worker: creates its sandbox (namespace, veth, IP, `/etc` overrides) and
//! volumes, drives its containers through [`lifecycle`](super::lifecycle), writes its status,
//! and on deletion (or agent shutdown) stops the containers and removes everything — then
//! releases the pod object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::{mpsc, watch};

use super::Ctx;
use super::container_ops::{Event, ProbeKind, Proc};
use super::env::{ObjectCache, PodFacts};
use super::names;
use super::net::Sandbox;
use super::pod_status::{self, Run, Transitions};
use super::probes::ProbeState;
use super::services::render_hosts;
use super::volumes::{self, TokenCache};

/// Where the pod's containers are in their sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stage {
    /// Running the i-th entry of `initContainers`.
    Init(usize),
    /// App containers started.
    Main,
    /// Finished with this phase.
    Terminal(String),
}

/// State of one pod.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(super) ctx: Arc<Ctx>,
    pub(super) pod: Pod,
    pub(super) uid: String,
    pub(super) dir: PathBuf,
    pub(super) sandbox: Option<Sandbox>,
    pub(super) volumes: Option<HashMap<String, PathBuf>>,
    pub(super) tokens: TokenCache,
    pub(super) runs: Vec<Run>,
    pub(super) procs: HashMap<String, Proc>,
    pub(super) probe_states: HashMap<(String, ProbeKind), ProbeState>,
    pub(super) backoff_until: HashMap<String, Instant>,
    pub(super) stage: Stage,
    /// Every init container completed and every sidecar started (stays true once set).
    pub(super) initialized: bool,
    pub(super) message: Option<String>,
    pub(super) transitions: Transitions,
    pub(super) last_status: Option<serde_json::Value>,
    pub(super) events_tx: mpsc::UnboundedSender<Event>,
    pub(super) events_rx: mpsc::UnboundedReceiver<Event>,
    pub(super) start_time: Time,
}

pub(super) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Worker {
    pub(crate) fn new(ctx: Arc<Ctx>, pod: Pod) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = ctx.config.state_dir.join("pods").join(&uid);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let runs = super::lifecycle::initial_runs(&pod);
        Self {
            ctx,
            pod,
            uid,
            dir,
            sandbox: None,
            volumes: None,
            tokens: TokenCache::default(),
            runs,
            procs: HashMap::new(),
            probe_states: HashMap::new(),
            backoff_until: HashMap::new(),
            stage: Stage::Init(0),
            initialized: false,
            message: None,
            transitions: Transitions::new(),
            last_status: None,
            events_tx,
            events_rx,
            start_time: now(),
        }
    }

    pub(super) fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    pub(super) fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    /// Runs the pod until it is deleted or the agent stops.
    pub(crate) async fn run(
        mut self,
        mut pod_rx: watch::Receiver<Option<Pod>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut services = self.ctx.services.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut next_resync = Instant::now() + self.ctx.config.volume_resync;
        tracing::info!(pod = %self.name(), namespace = %self.namespace(), "pod assigned");
        loop {
            self.step().await;
            self.write_status().await;
            tokio::select! {
                Some(ev) = self.events_rx.recv() => self.handle(ev),
                changed = pod_rx.changed() => {
                    let latest = if changed.is_ok() { pod_rx.borrow_and_update().clone() } else { None };
                    match latest {
                        None => {
                            self.stop(Duration::ZERO).await;
                            return self.teardown().await;
                        }
                        Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                            self.pod = pod;
                            self.stop(Duration::from_secs(u64::try_from(grace).unwrap_or(0))).await;
                            self.teardown().await;
                            return super::pods::release(&self.ctx, &self.pod).await;
                        }
                        Some(pod) => self.pod = pod,
                    }
                }
                _ = shutdown.changed() => {
                    let grace = self.grace().min(self.ctx.config.shutdown_grace);
                    self.stop(grace).await;
                    return self.teardown().await;
                }
                _ = services.changed() => self.update_hosts(),
                _ = tick.tick() => {
                    if Instant::now() >= next_resync && self.sandbox.is_some() {
                        next_resync = Instant::now() + self.ctx.config.volume_resync;
                        self.sync_volumes().await;
                    }
                }
            }
        }
    }

    fn grace(&self) -> Duration {
        let s = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(s).unwrap_or(0))
    }

    fn hosts(&self, ip: std::net::Ipv4Addr) -> String {
        render_hosts(&self.ctx.services.borrow(), &self.namespace(), &self.name(), ip)
    }

    fn update_hosts(&mut self) {
        if let Some(sb) = &self.sandbox
            && let Err(e) = sb.update_hosts(&self.hosts(sb.ip))
        {
            tracing::warn!(error = %e, pod = %self.name(), "updating /etc/hosts");
        }
    }

    /// Creates the sandbox if missing. Returns whether it exists.
    pub(super) async fn ensure_sandbox(&mut self) -> bool {
        if self.sandbox.is_some() {
            return true;
        }
        let ip = self.ctx.ipam.lock().unwrap_or_else(|p| p.into_inner()).allocate();
        let Some(ip) = ip else {
            self.message = Some("pod CIDR exhausted".into());
            return false;
        };
        let sb = Sandbox {
            netns: names::netns_name(&self.uid),
            veth: names::veth_name(&self.uid),
            ip,
        };
        self.ctx.registry().sandboxes.insert(self.uid.clone(), sb.clone());
        let hosts = self.hosts(ip);
        let created = sb.create(&self.ctx.host, &hosts).await;
        let dirs = std::fs::create_dir_all(self.dir.join("logs"))
            .and_then(|_| std::fs::create_dir_all(self.dir.join("volumes")));
        match (created, dirs) {
            (Ok(()), Ok(())) => {
                tracing::info!(pod = %self.name(), ip = %ip, netns = %sb.netns, "sandbox created");
                self.sandbox = Some(sb);
                true
            }
            (r, d) => {
                let err = r
                    .err()
                    .map(|e| e.to_string())
                    .or(d.err().map(|e| e.to_string()))
                    .unwrap_or_default();
                self.message = Some(format!("creating the pod sandbox: {err}"));
                self.ctx.registry().sandboxes.remove(&self.uid);
                sb.remove_blocking();
                self.ctx
                    .ipam
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .release(ip);
                false
            }
        }
    }

    /// (Re)writes every volume; `self.volumes` is set once all succeed.
    pub(super) async fn sync_volumes(&mut self) -> bool {
        let Some(sb) = &self.sandbox else { return false };
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: sb.ip,
            host_ip: self.ctx.gateway(),
            kubernetes_service: None,
        };
        let mut cache = ObjectCache::new(self.ctx.client.clone(), &self.namespace());
        let owner = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group)
            .and_then(|g| u32::try_from(g).ok())
            .map(|g| (0, g));
        let mut out = HashMap::new();
        let vols = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &vols {
            match volumes::sync(
                v,
                &self.dir.join("volumes"),
                &facts,
                &mut cache,
                &mut self.tokens,
                owner,
            )
            .await
            {
                Ok(path) => {
                    out.insert(v.name.clone(), path);
                }
                Err(e) => {
                    self.message = Some(format!("MountVolume.SetUp failed for volume {:?}: {e}", v.name));
                    return self.volumes.is_some();
                }
            }
        }
        if self.volumes.is_none() {
            self.message = None;
        }
        self.volumes = Some(out);
        true
    }

    /// SIGTERM app containers, then sidecars (reverse order), SIGKILL at the deadline.
    pub(super) async fn stop(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let apps: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.kind == pod_status::Kind::App)
            .map(|r| r.name.clone())
            .collect();
        let others: Vec<String> = self
            .runs
            .iter()
            .rev()
            .filter(|r| r.kind != pod_status::Kind::App)
            .map(|r| r.name.clone())
            .collect();
        self.stage = Stage::Terminal("Stopping".into());
        for group in [apps, others] {
            for name in &group {
                if let Some(p) = self.procs.get_mut(name) {
                    p.stop_probes();
                    p.signal(libc::SIGTERM);
                }
            }
            self.wait_exits(&group, deadline).await;
        }
        let all: Vec<String> = self.procs.keys().cloned().collect();
        for p in self.procs.values() {
            p.signal(libc::SIGKILL);
        }
        self.wait_exits(&all, Instant::now() + Duration::from_secs(5))
            .await;
    }

    async fn wait_exits(&mut self, names: &[String], deadline: Instant) {
        while names.iter().any(|n| self.procs.contains_key(n)) {
            match tokio::time::timeout_at(deadline.into(), self.events_rx.recv()).await {
                Ok(Some(ev)) => self.handle(ev),
                _ => return,
            }
        }
    }

    /// Kills leftovers, removes the sandbox and the pod dir, releases the IP.
    pub(super) async fn teardown(&mut self) {
        let groups: Vec<u32> = self.procs.values().map(|p| p.pid).collect();
        for (_, p) in self.procs.drain() {
            p.signal(libc::SIGKILL);
            for t in p.tasks {
                t.abort();
            }
        }
        let sandbox = self.sandbox.take();
        let dir = self.dir.clone();
        let ctx = self.ctx.clone();
        let uid = self.uid.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut reg = ctx.registry();
            for g in groups {
                reg.groups.remove(&g);
            }
            reg.sandboxes.remove(&uid);
            drop(reg);
            if let Some(sb) = sandbox {
                // Any process still in the namespace (children that escaped their group).
                if let Ok(pids) =
                    super::cmd::run_blocking("ip", &super::cmd::args(&["netns", "pids", &sb.netns]))
                {
                    for pid in pids.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                        super::launch::signal_pid(pid, libc::SIGKILL);
                    }
                }
                for e in sb.remove_blocking() {
                    tracing::warn!(error = %e, "removing sandbox");
                }
                ctx.ipam.lock().unwrap_or_else(|p| p.into_inner()).release(sb.ip);
            }
            let _ = std::fs::remove_dir_all(&dir);
        })
        .await;
        tracing::info!(pod = %self.name(), namespace = %self.namespace(), "pod torn down");
    }

    /// Writes the status subresource when it changed.
    pub(super) async fn write_status(&mut self) {
        if matches!(&self.stage, Stage::Terminal(p) if p == "Stopping") {
            return;
        }
        let facts = pod_status::PodFacts {
            pod_ip: self.sandbox.as_ref().map(|s| s.ip.to_string()),
            host_ip: self.ctx.gateway().to_string(),
            initialized: self.initialized,
            terminal_phase: match &self.stage {
                Stage::Terminal(p) => Some(p.clone()),
                _ => None,
            },
            start_time: self.start_time.clone(),
            message: self.message.clone(),
            reason: None,
        };
        let status = pod_status::pod_status(&self.uid, &self.runs, &facts, &mut self.transitions, &now());
        let Ok(value) = serde_json::to_value(&status) else {
            return;
        };
        if self.last_status.as_ref() == Some(&value) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let mut patch_value = value.clone();
        if let Some(obj) = patch_value.as_object_mut() {
            // A merge patch only removes a field when told to with null.
            obj.entry("message").or_insert(serde_json::Value::Null);
        }
        let patch = serde_json::json!({ "status": patch_value });
        match api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_status = Some(value),
            Err(e) => tracing::warn!(error = %e, pod = %self.name(), "writing pod status"),
        }
    }
}

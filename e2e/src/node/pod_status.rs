//! Container run states and the pod status the kubelet would report for them (phase,
//! conditions, container and init-container statuses) — pure, so the rules are unit tested.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Which list a container comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular init container (runs to completion).
    Init,
    /// A native sidecar (`initContainers` with `restartPolicy: Always`).
    Sidecar,
    /// An app container.
    App,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128 + signal when killed).
    pub code: i32,
    /// `Completed`, `Error` or `OOMKilled`-like reason.
    pub reason: String,
    /// Tail of the run's output (the kubelet's FallbackToLogsOnError message).
    pub message: String,
    /// Start time.
    pub started: Time,
    /// End time.
    pub finished: Time,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: reason + message (`PodInitializing`, `CrashLoopBackOff`, …).
    Waiting(String, String),
    /// Running since.
    Running(Time),
    /// Finished (and not restarting).
    Terminated(Exit),
}

/// One container's runtime record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Container name.
    pub name: String,
    /// Image as written.
    pub image: String,
    /// Which list.
    pub kind: Kind,
    /// Current state.
    pub state: State,
    /// Previous finished run.
    pub last: Option<Exit>,
    /// Restarts so far.
    pub restarts: i32,
    /// Readiness verdict.
    pub ready: bool,
    /// Startup verdict (startup probe passed, or running without one).
    pub started: bool,
    /// Incremented at each start (container ID suffix).
    pub generation: u64,
}

fn terminated(e: &Exit, id: Option<String>) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: e.code,
            reason: Some(e.reason.clone()),
            message: Some(e.message.clone()).filter(|m| !m.is_empty()),
            started_at: Some(e.started.clone()),
            finished_at: Some(e.finished.clone()),
            container_id: id,
            signal: None,
        }),
        ..ContainerState::default()
    }
}

impl Run {
    /// The API status of this container in pod `uid`.
    pub fn status(&self, uid: &str) -> ContainerStatus {
        let id = format!("weft://{uid}/{}/{}", self.name, self.generation);
        let state = match &self.state {
            State::Waiting(reason, message) => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..ContainerState::default()
            },
            State::Running(since) => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(since.clone()),
                }),
                ..ContainerState::default()
            },
            State::Terminated(e) => terminated(e, Some(id.clone())),
        };
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: format!("weft-local://{}", self.image),
            container_id: (self.generation > 0).then_some(id),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restarts,
            state: Some(state),
            last_state: self.last.as_ref().map(|e| terminated(e, None)),
            ..ContainerStatus::default()
        }
    }

    /// Running now.
    pub fn running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }
}

/// Pod-level facts besides the container runs.
#[derive(Debug, Clone)]
pub struct PodFacts {
    /// Pod IP (once the sandbox exists).
    pub pod_ip: Option<String>,
    /// Node address.
    pub host_ip: String,
    /// All regular init containers completed and sidecars started.
    pub initialized: bool,
    /// `Some("Succeeded" | "Failed")` once the pod is finished.
    pub terminal_phase: Option<String>,
    /// The pod's start time.
    pub start_time: Time,
    /// Pod-level status message (e.g. why it cannot start).
    pub message: Option<String>,
    /// Pod-level reason.
    pub reason: Option<String>,
}

/// Tracks condition transition times across status computations.
pub type Transitions = BTreeMap<String, (String, Time)>;

fn cond(transitions: &mut Transitions, type_: &str, ok: bool, now: &Time) -> PodCondition {
    let status = if ok { "True" } else { "False" }.to_string();
    let entry = transitions
        .entry(type_.to_string())
        .or_insert_with(|| (status.clone(), now.clone()));
    if entry.0 != status {
        *entry = (status.clone(), now.clone());
    }
    PodCondition {
        type_: type_.into(),
        status,
        last_transition_time: Some(entry.1.clone()),
        ..PodCondition::default()
    }
}

/// The pod status for `runs`.
pub fn pod_status(
    uid: &str,
    runs: &[Run],
    facts: &PodFacts,
    transitions: &mut Transitions,
    now: &Time,
) -> PodStatus {
    let apps: Vec<&Run> = runs.iter().filter(|r| r.kind == Kind::App).collect();
    let sidecars_ready = runs.iter().filter(|r| r.kind == Kind::Sidecar).all(|r| r.ready);
    let containers_ready = facts.terminal_phase.is_none() && sidecars_ready && apps.iter().all(|r| r.ready);
    let phase = match &facts.terminal_phase {
        Some(p) => p.clone(),
        None if facts.initialized && apps.iter().any(|r| r.generation > 0) => "Running".into(),
        None => "Pending".into(),
    };
    let conditions = vec![
        cond(
            transitions,
            "PodReadyToStartContainers",
            facts.pod_ip.is_some(),
            now,
        ),
        cond(transitions, "Initialized", facts.initialized, now),
        cond(transitions, "Ready", containers_ready, now),
        cond(transitions, "ContainersReady", containers_ready, now),
        cond(transitions, "PodScheduled", true, now),
    ];
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: facts.host_ip.clone(),
        }]),
        pod_ip: facts.pod_ip.clone(),
        pod_ips: facts.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(facts.start_time.clone()),
        init_container_statuses: Some(
            runs.iter()
                .filter(|r| r.kind != Kind::App)
                .map(|r| r.status(uid))
                .collect(),
        ),
        container_statuses: Some(apps.iter().map(|r| r.status(uid)).collect()),
        message: facts.message.clone(),
        reason: facts.reason.clone(),
        // The API server sets qosClass at creation and it is immutable: never patch it.
        qos_class: None,
        ..PodStatus::default()
    }
}

#[cfg(test)]
#[path = "pod_status_tests.rs"]
mod tests;

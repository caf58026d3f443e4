//! Starting and signalling one container process, its exit watcher and its probe tasks.
//! Results flow back to the pod worker as [`Event`]s tagged with the run's generation, so
//! events of an earlier run of the same container are ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::launch::{self, LaunchSpec};
use super::probes::{self, Action, ProbeSpec};

/// Which probe a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// startupProbe.
    Startup,
    /// readinessProbe.
    Readiness,
    /// livenessProbe.
    Liveness,
}

/// Something happened to a container run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The process exited (code, or 128 + signal).
    Exited {
        /// Container name.
        name: String,
        /// Run generation.
        generation: u64,
        /// Exit code.
        code: i32,
    },
    /// One probe attempt finished.
    Probe {
        /// Container name.
        name: String,
        /// Run generation.
        generation: u64,
        /// Which probe.
        kind: ProbeKind,
        /// Attempt result.
        ok: bool,
        /// Parsed probe (for thresholds).
        spec: Box<ProbeSpec>,
    },
}

/// A running container process and its helper tasks.
#[derive(Debug)]
pub struct Proc {
    /// PID (also the process group ID).
    pub pid: u32,
    /// Run generation.
    pub generation: u64,
    /// The spec it was started with (exec probes reuse it).
    pub spec: LaunchSpec,
    /// Exit watcher and probe tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// Sends `signal` to the container's process group.
    pub fn signal(&self, signal: i32) -> bool {
        launch::signal_group(self.pid, signal)
    }

    /// Stops the probe tasks (the exit watcher keeps running until the process is reaped).
    pub fn stop_probes(&mut self) {
        // The first task is the exit watcher.
        for t in self.tasks.iter().skip(1) {
            t.abort();
        }
    }
}

/// Spawns the process of `spec` and its exit watcher and probe tasks.
pub fn start(
    name: &str,
    generation: u64,
    spec: LaunchSpec,
    container: &Container,
    pod_ip: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<Proc, String> {
    let probes: [(ProbeKind, &Option<Probe>); 3] = [
        (ProbeKind::Startup, &container.startup_probe),
        (ProbeKind::Readiness, &container.readiness_probe),
        (ProbeKind::Liveness, &container.liveness_probe),
    ];
    // Parsed before the process starts, so an unsupported probe never leaves it running.
    let mut parsed_probes = Vec::new();
    for (kind, probe) in probes {
        let Some(probe) = probe else { continue };
        let parsed = probes::parse(probe, container, pod_ip).map_err(|e| format!("{kind:?} probe: {e}"))?;
        parsed_probes.push((kind, parsed));
    }
    let mut child = launch::spawn(&spec).map_err(|e| format!("starting {}: {e}", spec.argv.join(" ")))?;
    let pid = child
        .id()
        .ok_or_else(|| "process exited before its PID was read".to_string())?;
    let mut tasks = Vec::new();
    let (tx, n) = (events.clone(), name.to_string());
    tasks.push(tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
            }
            Err(_) => 255,
        };
        let _ = tx.send(Event::Exited {
            name: n,
            generation,
            code,
        });
    }));
    for (kind, parsed) in parsed_probes {
        tasks.push(tokio::spawn(probe_loop(
            name.to_string(),
            generation,
            kind,
            parsed,
            spec.clone(),
            events.clone(),
        )));
    }
    let log = spec.log.clone();
    Ok(Proc {
        pid,
        generation,
        spec,
        tasks,
        log,
    })
}

async fn probe_loop(
    name: String,
    generation: u64,
    kind: ProbeKind,
    spec: ProbeSpec,
    launch: LaunchSpec,
    events: mpsc::UnboundedSender<Event>,
) {
    tokio::time::sleep(spec.initial_delay).await;
    loop {
        let ok = attempt(&spec, &launch).await;
        let event = Event::Probe {
            name: name.clone(),
            generation,
            kind,
            ok,
            spec: Box::new(spec.clone()),
        };
        if events.send(event).is_err() || (kind == ProbeKind::Startup && ok) {
            return;
        }
        tokio::time::sleep(spec.period).await;
    }
}

async fn attempt(spec: &ProbeSpec, launch: &LaunchSpec) -> bool {
    match &spec.action {
        Action::Http {
            host,
            port,
            path,
            headers,
        } => probes::http_get(host, *port, path, headers, spec.timeout).await,
        Action::Tcp { host, port } => probes::tcp_connect(host, *port, spec.timeout).await,
        Action::Exec(command) => exec_probe(command, launch, spec.timeout).await,
    }
}

/// Runs `command` in the container's namespaces, as its user; success = exit 0 in time.
async fn exec_probe(command: &[String], launch: &LaunchSpec, timeout: Duration) -> bool {
    let mut spec = launch.clone();
    spec.argv = command.to_vec();
    spec.log = probe_log(&launch.log);
    let Ok(mut child) = launch::spawn(&spec) else {
        return false;
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            if let Some(pid) = pid {
                launch::signal_group(pid, libc::SIGKILL);
            }
            let _ = child.wait().await;
            false
        }
    }
}

fn probe_log(log: &Path) -> PathBuf {
    log.with_extension("probe.log")
}

/// The last `max` bytes of a log file, trimmed (the termination message).
pub fn log_tail(path: &Path, max: usize) -> String {
    let Ok(data) = std::fs::read(path) else {
        return String::new();
    };
    let start = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        std::fs::write(&p, "first line\nsecond line\n").unwrap();
        assert_eq!(log_tail(&p, 12), "second line");
        assert_eq!(log_tail(&p, 1000), "first line\nsecond line");
        assert_eq!(log_tail(&dir.path().join("missing"), 10), "");
        assert_eq!(probe_log(&p), dir.path().join("c.probe.log"));
    }
}

//! The container sequence of a pod, as the kubelet runs it: regular init containers to
//! completion in order; native sidecars started (and startup-probed) before the next step
//! and kept running; then the app containers. Exits are handled per restart policy with
//! exponential back-off; probes flip readiness, and failing liveness/startup probes restart
//! the container.

use std::collections::HashMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::container_ops::{self, Event, ProbeKind};
use super::container_spec;
use super::env::{ObjectCache, PodFacts, container_env};
use super::launch;
use super::names::container_argv;
use super::pod_status::{Exit, Kind, Run, State};
use super::probes::ProbeState;
use super::worker::{Stage, Worker, now};

fn containers(pod: &Pod) -> Vec<(Kind, Container)> {
    let Some(spec) = &pod.spec else { return Vec::new() };
    let init = spec.init_containers.iter().flatten().map(|c| {
        let kind = if c.restart_policy.as_deref() == Some("Always") {
            Kind::Sidecar
        } else {
            Kind::Init
        };
        (kind, c.clone())
    });
    init.chain(spec.containers.iter().map(|c| (Kind::App, c.clone())))
        .collect()
}

/// The runs of a pod before anything started.
pub(super) fn initial_runs(pod: &Pod) -> Vec<Run> {
    containers(pod)
        .into_iter()
        .map(|(kind, c)| Run {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            kind,
            state: State::Waiting("PodInitializing".into(), String::new()),
            last: None,
            restarts: 0,
            ready: false,
            started: false,
            generation: 0,
        })
        .collect()
}

impl Worker {
    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn run_mut(&mut self, name: &str) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.name == name)
    }

    fn may_start(&self, name: &str) -> bool {
        !self.procs.contains_key(name) && self.backoff_until.get(name).is_none_or(|t| Instant::now() >= *t)
    }

    /// Starts whatever should run now.
    pub(super) async fn step(&mut self) {
        if matches!(self.stage, Stage::Terminal(_)) {
            return;
        }
        if !self.ensure_sandbox().await || (self.volumes.is_none() && !self.sync_volumes().await) {
            return;
        }
        let all = containers(&self.pod);
        while let Stage::Init(i) = self.stage {
            let Some((kind, c)) = all.get(i).filter(|(k, _)| *k != Kind::App).cloned() else {
                self.stage = Stage::Main;
                self.initialized = true;
                break;
            };
            let run = self.runs.iter().find(|r| r.name == c.name).cloned();
            let Some(run) = run else { break };
            match kind {
                Kind::Sidecar if run.started => self.stage = Stage::Init(i + 1),
                Kind::Init if matches!(&run.state, State::Terminated(e) if e.code == 0) => {
                    self.stage = Stage::Init(i + 1)
                }
                _ => {
                    if self.may_start(&c.name) && !matches!(run.state, State::Terminated(_)) {
                        self.start(&c).await;
                    }
                    break;
                }
            }
        }
        if self.stage == Stage::Main {
            for (kind, c) in &all {
                let Some(run) = self.runs.iter().find(|r| r.name == c.name) else {
                    continue;
                };
                let wants = match kind {
                    Kind::Init => false,
                    Kind::Sidecar | Kind::App => !matches!(run.state, State::Terminated(_)),
                };
                if wants && self.may_start(&c.name) {
                    self.start(c).await;
                }
            }
            let apps: Vec<&Run> = self.runs.iter().filter(|r| r.kind == Kind::App).collect();
            if !apps.is_empty() && apps.iter().all(|r| matches!(r.state, State::Terminated(_))) {
                let ok = apps
                    .iter()
                    .all(|r| matches!(&r.state, State::Terminated(e) if e.code == 0));
                self.finish(if ok { "Succeeded" } else { "Failed" });
            }
        }
    }

    /// The pod is finished: stop sidecars, record the phase.
    fn finish(&mut self, phase: &str) {
        tracing::info!(pod = %self.name(), phase, "pod finished");
        for p in self.procs.values_mut() {
            p.stop_probes();
            p.signal(libc::SIGTERM);
        }
        self.stage = Stage::Terminal(phase.into());
    }

    async fn start(&mut self, c: &Container) {
        let Some(sb) = self.sandbox.clone() else { return };
        let vols = self.volumes.clone().unwrap_or_default();
        let generation = self
            .runs
            .iter()
            .find(|r| r.name == c.name)
            .map_or(1, |r| r.generation + 1);
        let log = self.dir.join("logs").join(format!("{}-{generation}.log", c.name));
        let built = self.launch_spec(c, &sb, &vols, log).await;
        let started = built.and_then(|spec| {
            let created =
                launch::ensure_targets(&spec.binds).map_err(|e| format!("creating mount points: {e}"))?;
            self.ctx.registry().mount_targets.extend(created);
            container_ops::start(&c.name, generation, spec, c, &sb.ip.to_string(), &self.events_tx)
        });
        let name = c.name.clone();
        match started {
            Ok(proc_) => {
                tracing::info!(pod = %self.name(), container = %name, pid = proc_.pid, generation, "container started");
                self.ctx.registry().groups.insert(proc_.pid);
                self.procs.insert(name.clone(), proc_);
                self.probe_states.retain(|(n, _), _| *n != name);
                let (has_startup, has_readiness) = (c.startup_probe.is_some(), c.readiness_probe.is_some());
                if let Some(run) = self.run_mut(&name) {
                    run.generation = generation;
                    run.state = State::Running(now());
                    run.started = !has_startup;
                    run.ready = !has_startup && !has_readiness;
                }
            }
            Err(message) => {
                tracing::warn!(pod = %self.name(), container = %name, error = %message, "container could not start");
                self.backoff(&name);
                if let Some(run) = self.run_mut(&name) {
                    run.state = State::Waiting("CreateContainerError".into(), message);
                }
            }
        }
    }

    async fn launch_spec(
        &self,
        c: &Container,
        sb: &super::net::Sandbox,
        vols: &HashMap<String, std::path::PathBuf>,
        log: std::path::PathBuf,
    ) -> Result<launch::LaunchSpec, String> {
        let argv = container_argv(
            &self.ctx.config.bin_dir,
            c.image.as_deref().unwrap_or(""),
            c.command.as_deref().unwrap_or(&[]),
            c.args.as_deref().unwrap_or(&[]),
        )
        .map_err(|e| e.to_string())?;
        let kubernetes = self
            .ctx
            .services
            .borrow()
            .get(&("default".to_string(), "kubernetes".to_string()))
            .and_then(|s| {
                let port = s.ports.first()?.port;
                Some(std::net::SocketAddrV4::new(s.cluster_ip, port))
            });
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: sb.ip,
            host_ip: self.ctx.gateway(),
            kubernetes_service: kubernetes,
        };
        let mut cache = ObjectCache::new(self.ctx.client.clone(), &self.namespace());
        let env = container_env(c, &facts, &mut cache)
            .await
            .map_err(|e| e.to_string())?;
        let binds = container_spec::binds(c, vols, &sb.etc_dir())?;
        Ok(container_spec::launch_spec(
            &self.pod,
            c,
            argv,
            env,
            binds,
            sb.netns_path(),
            log,
        ))
    }

    fn backoff(&mut self, name: &str) {
        let restarts = self
            .runs
            .iter()
            .find(|r| r.name == name)
            .map_or(0, |r| r.restarts);
        let cfg = &self.ctx.config;
        let factor = 1u32 << u32::try_from(restarts.clamp(0, 16)).unwrap_or(0);
        let delay = cfg.restart_backoff.saturating_mul(factor).min(cfg.max_backoff);
        self.backoff_until
            .insert(name.to_string(), Instant::now() + delay);
    }

    /// Applies one event from a container's exit watcher or probe task.
    pub(super) fn handle(&mut self, ev: Event) {
        match ev {
            Event::Exited {
                name,
                generation,
                code,
            } => self.exited(&name, generation, code),
            Event::Probe {
                name,
                generation,
                kind,
                ok,
                spec,
            } => {
                if self.procs.get(&name).is_none_or(|p| p.generation != generation) {
                    return;
                }
                let state = self
                    .probe_states
                    .entry((name.clone(), kind))
                    .or_insert_with(|| ProbeState::new(kind == ProbeKind::Liveness));
                let verdict = state.record(ok, &spec);
                let exhausted = state.exhausted(&spec);
                let ready_without_probe = self.procs.contains_key(&name) && !self.has_readiness(&name);
                let Some(run) = self.runs.iter_mut().find(|r| r.name == name) else {
                    return;
                };
                match kind {
                    ProbeKind::Startup if verdict => {
                        run.started = true;
                        run.ready = ready_without_probe;
                    }
                    ProbeKind::Readiness => run.ready = verdict && run.started,
                    ProbeKind::Startup | ProbeKind::Liveness
                        if exhausted && (kind == ProbeKind::Startup || run.started) =>
                    {
                        tracing::info!(pod = %self.name(), container = %name, probe = ?kind, "probe failed; restarting container");
                        if let Some(p) = self.procs.get_mut(&name) {
                            p.stop_probes();
                            p.signal(libc::SIGKILL);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn has_readiness(&self, name: &str) -> bool {
        containers(&self.pod)
            .iter()
            .any(|(_, c)| c.name == name && c.readiness_probe.is_some())
    }

    fn exited(&mut self, name: &str, generation: u64, code: i32) {
        let Some(p) = self.procs.get(name).filter(|p| p.generation == generation) else {
            return;
        };
        let log = p.log.clone();
        let pid = p.pid;
        if let Some(p) = self.procs.remove(name) {
            // Anything left in the group (children) goes with the container.
            launch::signal_group(pid, libc::SIGKILL);
            for t in p.tasks.iter().skip(1) {
                t.abort();
            }
        }
        self.ctx.registry().groups.remove(&pid);
        let started = match self.runs.iter().find(|r| r.name == name).map(|r| r.state.clone()) {
            Some(State::Running(t)) => t,
            _ => now(),
        };
        let exit = Exit {
            code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: if code == 0 {
                String::new()
            } else {
                container_ops::log_tail(&log, 2048)
            },
            started,
            finished: now(),
        };
        tracing::info!(pod = %self.name(), container = %name, code, "container exited");
        let stopping = matches!(self.stage, Stage::Terminal(_));
        let policy = self.restart_policy();
        let Some(kind) = self.runs.iter().find(|r| r.name == name).map(|r| r.kind) else {
            return;
        };
        let restart = !stopping
            && match kind {
                Kind::Sidecar => true,
                Kind::Init => code != 0 && policy != "Never",
                Kind::App => policy == "Always" || (policy == "OnFailure" && code != 0),
            };
        let failed_init = kind == Kind::Init && code != 0 && policy == "Never" && !stopping;
        if restart {
            self.backoff(name);
        }
        let max = self.ctx.config.max_backoff;
        if let Some(run) = self.run_mut(name) {
            run.ready = false;
            run.started = false;
            if restart {
                run.restarts += 1;
                let msg = format!(
                    "back-off restarting failed container {name} (up to {}s)",
                    max.as_secs()
                );
                run.state = State::Waiting(
                    if code == 0 {
                        "Completed".into()
                    } else {
                        "CrashLoopBackOff".into()
                    },
                    msg,
                );
                run.last = Some(exit);
            } else {
                run.state = State::Terminated(exit);
            }
        }
        if failed_init {
            self.finish("Failed");
        }
    }
}

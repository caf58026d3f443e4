//! The controller runtime: the inputs ([`super::inputs`]: kube-runtime reflectors for
//! every input and for the objects the operator manages), a debounced global re-render on any change,
//! leader election (only the leader writes), certificate-renewal wake-ups and a
//! periodic resync. Runs as a library call with a `kube::Client`, so tests run
//! it in-process.

use super::apply::Applier;
use super::gateway_class;
use super::inputs::{Inputs, Tasks, gateway_api_served};
use super::leader::{self, LeaseConfig};
use super::metrics::{Metrics, ResultLabel};
use super::render::render;
use super::snapshot;
use super::state::RouteKind;
use crate::api::gateway::GROUP as GATEWAY_GROUP;
use crate::api::gateway::gateway::GATEWAY_CLASS;
use kube::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace holding the CA Secret and the leader Lease.
    pub system_namespace: String,
    /// This replica's name (Events, Lease holder).
    pub instance: String,
    /// Quiet time after a change before re-rendering.
    pub debounce: Duration,
    /// Full reconcile at least this often.
    pub resync: Duration,
    /// Leader election; `None` = always leader (single replica, tests).
    pub lease: Option<LeaseConfig>,
    /// How long an unreferenced service catalog shard is kept before deletion.
    pub catalog_grace: Duration,
    /// The controller's own ServiceAccount (in `system_namespace`): bound to ClusterRole
    /// `weft-controller-workloads` in every meshed namespace, its only write rights there.
    pub controller_service_account: String,
}

impl Options {
    /// Defaults for `system_namespace` and `instance`: 75 ms debounce, 5 min
    /// resync, leader election with the default Lease.
    pub fn new(system_namespace: &str, instance: &str) -> Self {
        Self {
            system_namespace: system_namespace.into(),
            instance: instance.into(),
            debounce: Duration::from_millis(75),
            resync: Duration::from_secs(300),
            lease: Some(LeaseConfig::new(system_namespace, instance)),
            catalog_grace: crate::operator::apply::catalog::DEFAULT_CATALOG_GRACE,
            controller_service_account: crate::operator::apply::objects::CONTROLLER_SERVICE_ACCOUNT.into(),
        }
    }
}

/// Shared handles: metrics and readiness (caches synced).
#[derive(Debug, Clone, Default)]
pub struct Handles {
    /// Operator metrics.
    pub metrics: Metrics,
    /// True once every cache has synced.
    pub ready: Arc<AtomicBool>,
}

/// Runs the operator until `shutdown` resolves (then releases the lease).
/// Dropping the future (task abort) stops everything too, like a crash.
pub async fn run(client: Client, opts: Options, handles: Handles, shutdown: impl Future<Output = ()>) {
    let notify = Arc::new(Notify::new());
    let mut tasks = Tasks(Vec::new());
    let served = gateway_api_served(&client).await;
    let gamma_on = RouteKind::ALL
        .iter()
        .all(|k| served.iter().any(|(v, p)| v == k.gvk().0 && p == k.gvk().2));
    if gamma_on {
        tracing::info!(group = GATEWAY_GROUP, "Gateway API CRDs found; GAMMA routes on");
    } else {
        // Kinds that are absent are still watched (with backoff, at most ~30 s apart),
        // so routes are picked up once the CRDs are installed; errors are debug-only.
        tracing::warn!(
            group = GATEWAY_GROUP,
            kinds = "HTTPRoute,GRPCRoute (v1), ReferenceGrant (v1beta1)",
            "Gateway API CRDs not installed: GAMMA routes off until they are (make gateway-api-crds)"
        );
    }
    let inputs = Inputs::start(&client, &mut tasks, &notify, &served);
    let (leader_tx, mut leader_rx) = watch::channel(opts.lease.is_none());
    if let Some(cfg) = opts.lease.clone() {
        tasks
            .0
            .push(tokio::spawn(leader::run(client.clone(), cfg, leader_tx)));
    }
    let applier = Applier::new(
        client.clone(),
        &opts.system_namespace,
        &opts.instance,
        handles.metrics.clone(),
        opts.catalog_grace,
    )
    .with_controller_service_account(&opts.controller_service_account);
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        r = inputs.wait_ready() => if r.is_err() { return },
        () = &mut shutdown => return,
    }
    handles.ready.store(true, Ordering::SeqCst);
    tracing::info!(instance = %opts.instance, "operator caches synced");
    let mut wake = Instant::now();
    let mut elector_alive = true;
    let mut class = gateway_class::ClassEnsurer::new(
        served
            .iter()
            .any(|(v, p)| v == GATEWAY_CLASS.0 && p == GATEWAY_CLASS.2),
    );
    loop {
        let leading = *leader_rx.borrow_and_update();
        handles.metrics.leader.set(i64::from(leading));
        if leading {
            tokio::time::sleep(opts.debounce).await;
            class
                .ensure(&client, !inputs.gateway_classes.0.state().is_empty())
                .await;
            wake = reconcile(&inputs, &applier, &handles.metrics, opts.resync).await;
            if let Some(retry) = class.retry_at() {
                wake = wake.min(retry);
            }
        }
        // A standby has nothing to reconcile: it must not wait on the (past) resync
        // deadline, which would make this loop spin. It wakes on leadership only.
        let deadline = next_wake(leading, wake);
        tokio::select! {
            () = notify.notified(), if leading => {}
            r = leader_rx.changed(), if elector_alive => {
                // Sender gone (no elector, or it ended): stop polling a closed channel.
                elector_alive = r.is_ok();
            }
            () = sleep_until_opt(deadline) => {}
            () = &mut shutdown => break,
        }
    }
    if let Some(cfg) = &opts.lease {
        leader::release(client, cfg).await;
    }
}

/// When the main loop must run again without an event: at `wake` while leading,
/// never as a standby (it waits for leadership instead).
pub(crate) fn next_wake(leading: bool, wake: Instant) -> Option<Instant> {
    leading.then_some(wake)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One global render + apply; returns when to run again at the latest.
async fn reconcile(inputs: &Inputs, applier: &Applier, metrics: &Metrics, resync: Duration) -> Instant {
    let started = Instant::now();
    let (caches, objects) = inputs.caches();
    // Certificate validity is the identity endpoint's business (crate::identity).
    let (mut state, _validity) = snapshot::cluster_state(&caches);
    state.mesh.catalog_namespace = applier.system_namespace().to_string();
    let out = render(&state);
    let sizes: Vec<usize> = out.configs.values().map(|c| c.json.len()).collect();
    metrics
        .config_bytes_max
        .set(sizes.iter().copied().max().unwrap_or(0) as i64);
    metrics.config_bytes_total.set(sizes.iter().sum::<usize>() as i64);
    metrics.identities.set(out.configs.len() as i64);
    let catalog = out.catalog.as_ref().map_or(&[][..], |c| &c.shards[..]);
    metrics.catalog_shards.set(catalog.len() as i64);
    metrics
        .catalog_bytes
        .set(catalog.iter().map(|s| s.json.len()).sum::<usize>() as i64);
    let mesh_spec: crate::api::mesh::MeshConfigSpec = caches
        .mesh_configs
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some(crate::api::mesh::MESH_CONFIG_NAME))
        .and_then(|m| m.data.get("spec").cloned())
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let inject = crate::webhook::InjectConfig::from(&mesh_spec);
    let outcome = applier
        .apply(
            &out,
            &state.mesh.trust_domain,
            &inputs.managed,
            &objects.by_key,
            &objects.routes,
            &objects.gateway.with_inject(inject),
        )
        .await;
    let elapsed = started.elapsed();
    metrics.reconcile_duration.observe(elapsed.as_secs_f64());
    let result = if outcome.errors == 0 { "success" } else { "error" };
    metrics.reconciles.get_or_create(&ResultLabel { result }).inc();
    tracing::debug!(
        identities = out.configs.len(),
        writes = outcome.writes,
        errors = outcome.errors,
        elapsed_ms = elapsed.as_millis() as u64,
        "reconciled"
    );
    let mut next = Instant::now()
        + if outcome.errors > 0 {
            Duration::from_secs(2)
        } else {
            resync
        };
    if let Some(due) = outcome.next_prune {
        next = next.min(due + Duration::from_millis(50));
    }
    if let Some(due) = outcome.next_renewal {
        let secs = (due - time::OffsetDateTime::now_utc()).as_seconds_f64().max(0.0);
        next = next.min(Instant::now() + Duration::from_secs_f64(secs) + Duration::from_millis(50));
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_never_waits_on_the_resync_deadline() {
        let past = Instant::now();
        assert_eq!(next_wake(false, past), None);
        assert_eq!(next_wake(true, past), Some(past));
    }

    #[tokio::test]
    async fn no_deadline_sleeps_forever() {
        let slept = tokio::time::timeout(Duration::from_millis(300), sleep_until_opt(None)).await;
        assert!(slept.is_err(), "a standby woke without an event");
        let past = Instant::now();
        tokio::time::timeout(Duration::from_millis(200), sleep_until_opt(Some(past)))
            .await
            .expect("a past deadline fires at once");
    }
}

//! The controller runtime: kube-runtime reflectors for every input (and for the
//! objects the operator manages), a debounced global re-render on any change,
//! leader election (only the leader writes), certificate-renewal wake-ups and a
//! periodic resync. Runs as a library call with a `kube::Client`, so tests run
//! it in-process.

use super::apply::gateway_objects::{LABEL_APP_MANAGED_BY, LABEL_GATEWAY_NAME};
use super::apply::{Applier, ManagedStores, api_resource};
use super::gateway_class;
use super::leader::{self, LeaseConfig};
use super::metrics::{Metrics, ResultLabel};
use super::render::gamma::RouteKey;
use super::render::render;
use super::snapshot::{self, Caches};
use super::snapshot_gateway::{GatewayCaches, TLS_SECRET_TYPE};
use super::state::{Kind, ObjectKey, RouteKind};
use crate::api::gateway::gateway::{GATEWAY, GATEWAY_CLASS};
use crate::api::gateway::{GROUP as GATEWAY_GROUP, REFERENCE_GRANT};
use crate::certs::store::{LABEL_MANAGED_BY, MANAGED_BY};
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

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

/// Aborts the spawned watch tasks when the operator stops.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// `quiet`: watch errors are logged at debug level (the Gateway API kinds, whose
/// CRDs may be absent: one warning at start says so instead).
fn drive<K, S>(tasks: &mut Tasks, stream: S, notify: Arc<Notify>, quiet: bool)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    tasks.0.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) if quiet => tracing::debug!(error = %e, "watch error (retrying with backoff)"),
                Err(e) => tracing::warn!(error = %e, "watch error (retrying with backoff)"),
            }
        }
    }));
}

fn typed<K>(tasks: &mut Tasks, api: Api<K>, cfg: watcher::Config, notify: &Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff()).modify(|o| {
        o.meta_mut().managed_fields = None;
    });
    drive(tasks, stream, notify.clone(), false);
    store
}

fn dynamic(
    tasks: &mut Tasks,
    api: Api<DynamicObject>,
    ar: &ApiResource,
    notify: &Arc<Notify>,
    quiet: bool,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(ar.clone());
    let store = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    drive(tasks, stream, notify.clone(), quiet);
    store
}

/// The cached objects status is written to.
struct Objects {
    by_key: HashMap<ObjectKey, Arc<DynamicObject>>,
    routes: HashMap<RouteKey, Arc<DynamicObject>>,
    gateway: super::apply::GatewayObjects,
}

struct Inputs {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    service_accounts: Store<ServiceAccount>,
    objects: Vec<(Kind, Store<DynamicObject>)>,
    mesh_configs: Store<DynamicObject>,
    namespaces: Store<Namespace>,
    managed: ManagedStores,
    /// Gateway API kinds (GAMMA), each with whether its CRD was served at start
    /// (only those are waited for; the others are picked up once installed).
    gamma_routes: Vec<(RouteKind, Store<DynamicObject>, bool)>,
    reference_grants: (Store<DynamicObject>, bool),
    /// Ingress gateway kinds, each with whether its CRD was served at start.
    gateway_classes: (Store<DynamicObject>, bool),
    gateways: (Store<DynamicObject>, bool),
    /// `kubernetes.io/tls` Secrets (listener certificates).
    tls_secrets: Store<Secret>,
}

/// The Gateway API resources the API server serves: `(version, plural)`.
async fn gateway_api_served(client: &Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for version in ["v1", "v1beta1"] {
        if let Ok(list) = client
            .list_api_group_resources(&format!("{GATEWAY_GROUP}/{version}"))
            .await
        {
            out.extend(list.resources.into_iter().map(|r| (version.to_string(), r.name)));
        }
    }
    out
}

fn gateway_resource((version, kind, plural): (&str, &str, &str)) -> ApiResource {
    ApiResource {
        group: GATEWAY_GROUP.into(),
        version: version.into(),
        api_version: format!("{GATEWAY_GROUP}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

impl Inputs {
    fn start(client: &Client, tasks: &mut Tasks, notify: &Arc<Notify>, served: &[(String, String)]) -> Self {
        let is_served =
            |(v, _, plural): (&str, &str, &str)| served.iter().any(|(sv, sp)| sv == v && sp == plural);
        let gamma_routes = RouteKind::ALL
            .iter()
            .map(|k| {
                let ar = gateway_resource(k.gvk());
                let store = dynamic(tasks, Api::all_with(client.clone(), &ar), &ar, notify, true);
                (*k, store, is_served(k.gvk()))
            })
            .collect();
        let grant_ar = gateway_resource(REFERENCE_GRANT);
        let reference_grants = (
            dynamic(
                tasks,
                Api::all_with(client.clone(), &grant_ar),
                &grant_ar,
                notify,
                true,
            ),
            is_served(REFERENCE_GRANT),
        );
        let gw_kind = |k: (&str, &str, &str), tasks: &mut Tasks| {
            let ar = gateway_resource(k);
            (
                dynamic(tasks, Api::all_with(client.clone(), &ar), &ar, notify, true),
                is_served(k),
            )
        };
        let gateway_classes = gw_kind(GATEWAY_CLASS, tasks);
        let gateways = gw_kind(GATEWAY, tasks);
        let all = watcher::Config::default();
        let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
        // The objects weft runs per Gateway (Deployment, Service): both labels.
        let gateway_objects = watcher::Config::default().labels(&format!(
            "{LABEL_APP_MANAGED_BY}={MANAGED_BY},{LABEL_GATEWAY_NAME}"
        ));
        let tls = watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}"));
        let services = typed(tasks, Api::all(client.clone()), all.clone(), notify);
        let service_accounts = typed(tasks, Api::all(client.clone()), all.clone(), notify);
        let objects = Kind::ALL
            .iter()
            .map(|k| {
                let ar = api_resource(*k);
                (
                    *k,
                    dynamic(tasks, Api::all_with(client.clone(), &ar), &ar, notify, false),
                )
            })
            .collect();
        let mesh_ar = ApiResource {
            group: "policy.weft.dev".into(),
            version: "v1alpha1".into(),
            api_version: "policy.weft.dev/v1alpha1".into(),
            kind: "MeshConfig".into(),
            plural: "meshconfigs".into(),
        };
        Self {
            services: services.clone(),
            slices: typed(tasks, Api::all(client.clone()), all.clone(), notify),
            pods: typed(tasks, Api::all(client.clone()), all.clone(), notify),
            service_accounts: service_accounts.clone(),
            objects,
            mesh_configs: dynamic(
                tasks,
                Api::all_with(client.clone(), &mesh_ar),
                &mesh_ar,
                notify,
                false,
            ),
            gamma_routes,
            reference_grants,
            gateway_classes,
            gateways,
            tls_secrets: typed(tasks, Api::all(client.clone()), tls, notify),
            // Every namespace: the mesh opt-in label (`weft.dev/inject=enabled`) and the
            // labels gateway listeners select route namespaces by.
            namespaces: typed(tasks, Api::all(client.clone()), all, notify),
            managed: ManagedStores {
                config_maps: typed::<ConfigMap>(tasks, Api::all(client.clone()), managed.clone(), notify),
                secrets: typed::<Secret>(tasks, Api::all(client.clone()), managed.clone(), notify),
                roles: typed::<Role>(tasks, Api::all(client.clone()), managed.clone(), notify),
                role_bindings: typed::<RoleBinding>(tasks, Api::all(client.clone()), managed, notify),
                deployments: typed::<Deployment>(tasks, Api::all(client.clone()), gateway_objects, notify),
                services,
                service_accounts,
            },
        }
    }

    async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.service_accounts.wait_until_ready().await?;
        for (_, s) in &self.objects {
            s.wait_until_ready().await?;
        }
        self.mesh_configs.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        for (_, s, served) in &self.gamma_routes {
            if *served {
                s.wait_until_ready().await?;
            }
        }
        for (store, served) in [&self.reference_grants, &self.gateway_classes, &self.gateways] {
            if *served {
                store.wait_until_ready().await?;
            }
        }
        self.tls_secrets.wait_until_ready().await?;
        self.managed.deployments.wait_until_ready().await?;
        self.managed.config_maps.wait_until_ready().await?;
        self.managed.secrets.wait_until_ready().await?;
        self.managed.roles.wait_until_ready().await?;
        self.managed.role_bindings.wait_until_ready().await
    }

    fn caches(&self) -> (Caches, Objects) {
        let mut by_key = HashMap::new();
        let objects = self
            .objects
            .iter()
            .map(|(k, s)| {
                let list = s.state();
                for o in &list {
                    if let (Some(ns), Some(name)) = (o.metadata.namespace.clone(), o.metadata.name.clone()) {
                        by_key.insert(
                            ObjectKey {
                                kind: *k,
                                namespace: ns,
                                name,
                            },
                            o.clone(),
                        );
                    }
                }
                (*k, list)
            })
            .collect();
        let caches = Caches {
            services: self.services.state(),
            slices: self.slices.state(),
            pods: self.pods.state(),
            service_accounts: self.service_accounts.state(),
            objects,
            mesh_configs: self.mesh_configs.state(),
            namespaces: self.namespaces.state(),
            gamma_routes: Vec::new(),
            reference_grants: self.reference_grants.0.state(),
            gateway: GatewayCaches {
                classes: self.gateway_classes.0.state(),
                gateways: self.gateways.0.state(),
                tls_secrets: self.tls_secrets.state(),
                deployments: self.managed.deployments.state(),
            },
        };
        let mut caches = caches;
        let mut routes = HashMap::new();
        for (kind, store, _) in &self.gamma_routes {
            let list = store.state();
            for o in &list {
                if let (Some(ns), Some(name)) = (o.metadata.namespace.clone(), o.metadata.name.clone()) {
                    routes.insert((*kind, ns, name), o.clone());
                }
            }
            caches.gamma_routes.push((*kind, list));
        }
        // A Gateway cache that has not synced (CRDs installed after start) must not
        // read as "no Gateways": nothing is deleted until it has.
        let synced = self
            .gateways
            .0
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok());
        let gateway = super::apply::GatewayObjects::new(&caches.gateway).synced(synced);
        (
            caches,
            Objects {
                by_key,
                routes,
                gateway,
            },
        )
    }
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

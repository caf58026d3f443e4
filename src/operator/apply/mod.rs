//! Apply: makes the cluster match a render, writing only what changed. Per
//! identity: ConfigMap, Role, RoleBinding (server-side apply, field manager
//! [`objects::FIELD_MANAGER`], owner = ServiceAccount, skipped when the cached
//! object already holds the desired content, see [`drift`]); per meshed namespace
//! the public trust bundle ConfigMap `weft-ca-bundle`. No workload key or certificate
//! is stored (sidecars get theirs by CSR, `crate::identity`); identity Secrets left by
//! earlier versions are deleted. Objects of identities that left the mesh are
//! deleted. SMI/policy status is patched only on change (GAMMA route status:
//! [`gamma_status`]); Events only on
//! transitions. Ingress gateways: their objects ([`gateway`], [`gateway_objects`])
//! and GatewayClass / Gateway / route status ([`gateway_status`]). One object's
//! failure never stops the others.

pub mod catalog;
mod cleanup;
pub mod drift;
pub mod gamma_status;
pub mod gateway;
pub mod gateway_objects;
pub mod gateway_status;
pub mod objects;
pub mod status;

pub use gateway::GatewayObjects;

use crate::certs::store::{self, CA_SECRET, CaState};
use crate::operator::metrics::Metrics;
use crate::operator::render::gamma::RouteKey;
use crate::operator::render::{IdentityKey, RenderOutput};
use crate::operator::state::{Kind, ObjectKey};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use weft_proxy_config::identity::BUNDLE_CONFIG_MAP;

/// How long a just-written hash is trusted while the watch cache catches up.
const MEMO_TTL: Duration = Duration::from_secs(5);

/// Caches of the objects the operator manages (label `weft.dev/managed-by=weft`).
#[derive(Clone)]
pub struct ManagedStores {
    /// ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// Secrets (identity certificates and the CA).
    pub secrets: Store<Secret>,
    /// Roles.
    pub roles: Store<Role>,
    /// RoleBindings.
    pub role_bindings: Store<RoleBinding>,
    /// The gateways' Deployments (labels `app.kubernetes.io/managed-by=weft` and
    /// `gateway.networking.k8s.io/gateway-name`).
    pub deployments: Store<Deployment>,
    /// Services (all: the gateways' among them).
    pub services: Store<Service>,
    /// ServiceAccounts (all: the gateways' among them).
    pub service_accounts: Store<ServiceAccount>,
}

impl std::fmt::Debug for ManagedStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedStores").finish_non_exhaustive()
    }
}

/// What one apply did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// API writes made.
    pub writes: usize,
    /// Errors (each logged).
    pub errors: usize,
    /// Earliest certificate renewal due.
    pub next_renewal: Option<OffsetDateTime>,
    /// When an unreferenced catalog shard's grace period ends.
    pub next_prune: Option<Instant>,
}

/// ApiResource of an SMI/policy kind at its storage version.
pub fn api_resource(kind: Kind) -> ApiResource {
    let (group, version, k, plural) = kind.gvk();
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: k.into(),
        plural: plural.into(),
    }
}

/// What was last written to one object, when, and the resourceVersion then cached.
type Written = (String, Instant, Option<String>);

/// Writes renders to the cluster.
pub struct Applier {
    client: Client,
    system_namespace: String,
    recorder: Recorder,
    metrics: Metrics,
    ca: Mutex<Option<(String, Arc<CaState>)>>,
    /// Per object: what was last written, when, and the resourceVersion the cache
    /// held at that moment (`None`: not cached), to tell a lagging cache from an edit.
    memo: Mutex<HashMap<String, Written>>,
    pruning: catalog::Pruning,
    controller_sa: String,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("system_namespace", &self.system_namespace)
            .finish_non_exhaustive()
    }
}

fn at<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(ns)
}

fn memo_key(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}

impl Applier {
    /// A new applier; `instance` names this replica in Events; unreferenced catalog
    /// shards are kept for `catalog_grace`.
    pub fn new(
        client: Client,
        system_namespace: &str,
        instance: &str,
        metrics: Metrics,
        catalog_grace: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: "weft-operator".into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            system_namespace: system_namespace.into(),
            metrics,
            ca: Mutex::new(None),
            memo: Mutex::new(HashMap::new()),
            pruning: catalog::Pruning::new(catalog_grace),
            controller_sa: objects::CONTROLLER_SERVICE_ACCOUNT.into(),
        }
    }

    /// The controller's ServiceAccount bound in meshed namespaces.
    pub fn with_controller_service_account(mut self, sa: &str) -> Self {
        self.controller_sa = sa.into();
        self
    }

    /// The mesh's own namespace (CA, catalog).
    pub fn system_namespace(&self) -> &str {
        &self.system_namespace
    }

    fn memo_says(&self, key: &str, hash: &str) -> bool {
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.get(key)
            .is_some_and(|(h, at, _)| h == hash && at.elapsed() < MEMO_TTL)
    }

    /// `hash` was written moments ago and the cache still shows the version it held
    /// then (`cached_rv`): the cache lags, the write need not be repeated. Any other
    /// version in the cache is newer than that write (someone edited the object).
    fn memo_cache_lags(&self, key: &str, hash: &str, cached_rv: Option<&str>) -> bool {
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.get(key)
            .is_some_and(|(h, at, seen)| h == hash && at.elapsed() < MEMO_TTL && seen.as_deref() == cached_rv)
    }

    fn remember(&self, key: String, hash: String) {
        self.remember_write(key, hash, None);
    }

    fn remember_write(&self, key: String, hash: String, cached_rv: Option<String>) {
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (hash, Instant::now(), cached_rv));
    }

    /// The CA from the cache (reloaded when the Secret changes), created if absent.
    async fn ca(
        &self,
        secrets: &Store<Secret>,
        trust_domain: &str,
    ) -> Result<Arc<CaState>, store::StoreError> {
        let cached = secrets.get(&ObjectRef::new(CA_SECRET).within(&self.system_namespace));
        let version = cached
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone())
            .unwrap_or_default();
        if let Some((v, ca)) = self.ca.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && (*v == version || (cached.is_none() && !v.is_empty()))
        {
            return Ok(ca.clone());
        }
        let ca = Arc::new(match &cached {
            Some(s) => store::ca_from_secret(s)?,
            None => store::ensure_ca(&self.client, &self.system_namespace, trust_domain).await?,
        });
        *self.ca.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, ca.clone()));
        Ok(ca)
    }

    async fn apply_obj<K>(
        &self,
        kind: &'static str,
        ns: &str,
        obj: &K,
        hash: &str,
        cached: Option<Arc<K>>,
    ) -> usize
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let key = memo_key(kind, ns, &name);
        // Content, not only the hash annotation: an edit that kept the annotation is drift.
        if cached.as_deref().is_some_and(|c| drift::in_sync(obj, c)) {
            return 0;
        }
        let cached_rv = cached.as_ref().and_then(|c| c.meta().resource_version.clone());
        if self.memo_cache_lags(&key, hash, cached_rv.as_deref()) {
            return 0;
        }
        if cached.as_ref().and_then(|c| objects::hash_of(c.meta())) == Some(hash) {
            tracing::warn!(kind, namespace = ns, name = %name, "object was edited outside weft: restoring it");
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch(
                &name,
                &PatchParams::apply(objects::FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(kind, namespace = ns, name = %name, "applied");
                self.metrics.wrote(kind);
                self.remember_write(key, hash.to_string(), cached_rv);
                1
            }
            Err(e) => {
                tracing::warn!(kind, namespace = ns, name = %name, error = %e, "apply failed");
                usize::MAX
            }
        }
    }

    /// Applies a render. `objects` are the cached SMI/policy objects (for status).
    pub async fn apply(
        &self,
        out: &RenderOutput,
        trust_domain: &str,
        stores: &ManagedStores,
        objects: &HashMap<ObjectKey, Arc<DynamicObject>>,
        routes: &HashMap<RouteKey, Arc<DynamicObject>>,
        gateways: &GatewayObjects,
    ) -> Outcome {
        let mut o = Outcome::default();
        let count = |r: usize, o: &mut Outcome| {
            if r == usize::MAX {
                o.errors += 1;
            } else {
                o.writes += r;
            }
        };
        let ca = match self.ca(&stores.secrets, trust_domain).await {
            Ok(ca) => Some(ca),
            Err(e) => {
                tracing::error!(error = %e, "mesh CA unavailable; certificates are not issued this round");
                o.errors += 1;
                None
            }
        };
        // Shards first: a config must never name a shard that is not there yet.
        let mut catalog_ok = true;
        if let Some(catalog) = &out.catalog {
            let readers: BTreeSet<&IdentityKey> = out
                .configs
                .iter()
                .filter(|(_, c)| c.config.catalog.is_some())
                .map(|(k, _)| k)
                .collect();
            let (writes, errors) = self.apply_catalog(catalog, &readers, stores).await;
            o.writes += writes;
            o.errors += errors;
            catalog_ok = errors == 0;
        }
        // Opt-in: the controller's write rights in each meshed namespace come from a
        // RoleBinding to ClusterRole weft-controller-workloads, applied before anything else
        // there (the ClusterRole grants no cluster-wide write on ConfigMaps or Secrets).
        // A gateway's namespace counts from the start: its objects are written before its
        // identity has a config (the ServiceAccount is one of them).
        let namespaces: BTreeSet<&str> = out
            .configs
            .keys()
            .map(|(ns, _)| ns.as_str())
            .chain(out.gateways.gateways.values().map(|p| p.namespace.as_str()))
            .collect();
        for ns in &namespaces {
            let rb = objects::namespace_binding(ns, &self.controller_sa, &self.system_namespace);
            let h = objects::hash_of(&rb.metadata).unwrap_or_default().to_string();
            let cached = stores.role_bindings.get(&at(ns, objects::NAMESPACE_BINDING));
            count(self.apply_obj("rolebinding", ns, &rb, &h, cached).await, &mut o);
        }
        for ((ns, sa), cfg) in &out.configs {
            let name = objects::config_name(sa);
            if catalog_ok || cfg.config.catalog.is_none() {
                let cm = objects::config_map(ns, sa, cfg);
                let h = objects::hash_of(&cm.metadata).unwrap_or_default().to_string();
                count(
                    self.apply_obj("configmap", ns, &cm, &h, stores.config_maps.get(&at(ns, &name)))
                        .await,
                    &mut o,
                );
            }
            let role = objects::role(ns, sa, &cfg.owner_uid);
            let h = objects::hash_of(&role.metadata).unwrap_or_default().to_string();
            count(
                self.apply_obj("role", ns, &role, &h, stores.roles.get(&at(ns, &name)))
                    .await,
                &mut o,
            );
            let rb = objects::role_binding(ns, sa, &cfg.owner_uid);
            let h = objects::hash_of(&rb.metadata).unwrap_or_default().to_string();
            count(
                self.apply_obj(
                    "rolebinding",
                    ns,
                    &rb,
                    &h,
                    stores.role_bindings.get(&at(ns, &name)),
                )
                .await,
                &mut o,
            );
        }
        // The public trust bundle of every meshed namespace (sidecars verify the identity
        // endpoint with it; a change makes them renew at once). Workload keys and
        // certificates are never stored: sidecars obtain them by CSR (crate::identity).
        if let Some(ca) = &ca {
            for ns in namespaces {
                let cm = objects::ca_bundle(ns, &ca.bundle);
                let h = objects::hash_of(&cm.metadata).unwrap_or_default().to_string();
                let cached = stores.config_maps.get(&at(ns, BUNDLE_CONFIG_MAP));
                count(self.apply_obj("configmap", ns, &cm, &h, cached).await, &mut o);
            }
        }
        self.apply_gateways(out, stores, gateways, &mut o).await;
        let keep: BTreeSet<&IdentityKey> = out.configs.keys().chain(out.skipped.keys()).collect();
        o.writes += self.cleanup(&keep, stores, &mut o.errors).await;
        // Skipped identities keep their last ConfigMap, which may name older shards.
        if o.errors == 0 && out.skipped.is_empty() {
            let (writes, errors, due) = self.prune_catalog(out.catalog.as_ref(), stores).await;
            o.writes += writes;
            o.errors += errors;
            o.next_prune = due;
        }
        self.statuses(out, objects, &mut o).await;
        self.route_statuses(out, routes, &mut o).await;
        self.gateway_statuses(out, gateways, &mut o).await;
        o
    }

    async fn statuses(
        &self,
        out: &RenderOutput,
        objects: &HashMap<ObjectKey, Arc<DynamicObject>>,
        o: &mut Outcome,
    ) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        for (key, report) in &out.reports {
            let Some(obj) = objects.get(key) else { continue };
            let Some(change) = status::diff(obj.data.get("status"), report, now.clone()) else {
                continue;
            };
            let memo = crate::operator::render::content_hash(change.status.to_string().as_bytes());
            let mkey = memo_key("status", &key.namespace, &format!("{:?}/{}", key.kind, key.name));
            let ar = api_resource(key.kind);
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &key.namespace, &ar);
            let body = serde_json::json!({"status": change.status});
            if self.memo_says(&mkey, &memo) {
                continue;
            }
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    o.writes += 1;
                    self.metrics.wrote("status");
                    self.remember(mkey, memo);
                }
                Err(e) => {
                    tracing::warn!(kind = ar.kind, namespace = %key.namespace, name = %key.name, error = %e, "status update failed");
                    o.errors += 1;
                    continue;
                }
            }
            let reference = ObjectReference {
                api_version: Some(ar.api_version.clone()),
                kind: Some(ar.kind.clone()),
                name: Some(obj.name_any()),
                namespace: Some(key.namespace.clone()),
                uid: obj.metadata.uid.clone(),
                ..ObjectReference::default()
            };
            for (ty, v) in change.transitions {
                let ev = Event {
                    type_: if v.ok {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    },
                    reason: v.reason.clone(),
                    note: Some(
                        format!("{ty}={}: {}", if v.ok { "True" } else { "False" }, v.message)
                            .chars()
                            .take(1000)
                            .collect(),
                    ),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                match self.recorder.publish(&ev, &reference).await {
                    Ok(()) => self.metrics.wrote("event"),
                    Err(e) => tracing::warn!(name = %key.name, error = %e, "event publish failed"),
                }
            }
        }
    }
}

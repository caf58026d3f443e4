//! The operator's inputs: a kube-runtime reflector per watched kind (typed or
//! dynamic; the Gateway API kinds watched even while their CRDs are absent), the
//! watch tasks that wake the main loop on any change, and the snapshot of every
//! cache that one reconcile reads ([`Inputs::caches`]).

use super::apply::gateway_objects::{LABEL_APP_MANAGED_BY, LABEL_GATEWAY_NAME};
use super::apply::{ManagedStores, api_resource};
use super::render::gamma::RouteKey;
use super::snapshot::Caches;
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
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Aborts the spawned watch tasks when the operator stops.
pub(super) struct Tasks(pub(super) Vec<JoinHandle<()>>);

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
pub(super) struct Objects {
    pub(super) by_key: HashMap<ObjectKey, Arc<DynamicObject>>,
    pub(super) routes: HashMap<RouteKey, Arc<DynamicObject>>,
    pub(super) gateway: super::apply::GatewayObjects,
}

pub(super) struct Inputs {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    service_accounts: Store<ServiceAccount>,
    objects: Vec<(Kind, Store<DynamicObject>)>,
    mesh_configs: Store<DynamicObject>,
    namespaces: Store<Namespace>,
    pub(super) managed: ManagedStores,
    /// Gateway API kinds (GAMMA), each with whether its CRD was served at start
    /// (only those are waited for; the others are picked up once installed).
    gamma_routes: Vec<(RouteKind, Store<DynamicObject>, bool)>,
    reference_grants: (Store<DynamicObject>, bool),
    /// Ingress gateway kinds, each with whether its CRD was served at start.
    pub(super) gateway_classes: (Store<DynamicObject>, bool),
    gateways: (Store<DynamicObject>, bool),
    /// `kubernetes.io/tls` Secrets (listener certificates).
    tls_secrets: Store<Secret>,
}

/// The Gateway API resources the API server serves: `(version, plural)`.
pub(super) async fn gateway_api_served(client: &Client) -> Vec<(String, String)> {
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
    pub(super) fn start(
        client: &Client,
        tasks: &mut Tasks,
        notify: &Arc<Notify>,
        served: &[(String, String)],
    ) -> Self {
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

    pub(super) async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
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

    pub(super) fn caches(&self) -> (Caches, Objects) {
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

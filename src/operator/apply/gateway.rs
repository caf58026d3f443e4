//! Apply of the ingress gateways: per planned Gateway, the objects of
//! [`super::gateway_objects`] (server-side apply like every managed object, so a
//! cached object that already holds the desired content is not written, and an
//! edit outside weft is restored), in dependency order: ServiceAccount, the
//! certificate copy Secret with its Role/RoleBinding, Service, Deployment. Objects
//! of Gateways that are no longer planned (deleted, or moved to another class),
//! and the TLS objects of a Gateway that no longer terminates TLS, are deleted
//! (owner references garbage-collect them too once the Gateway is gone). One
//! object's failure never stops the others.

use super::gateway_objects::{self as go, KeyPair};
use super::{Applier, ManagedStores, Outcome, at, objects};
use crate::operator::render::RenderOutput;
use crate::operator::render::gateway::GatewayPlan;
use crate::webhook::InjectConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, DynamicObject, ObjectMeta};
use kube::{Api, Resource};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The cached Gateway API objects and listener certificate Secrets the gateway
/// apply and status read, and the proxy settings the gateway container is built with.
#[derive(Debug, Clone, Default)]
pub struct GatewayObjects {
    /// GatewayClasses by name.
    pub classes: HashMap<String, Arc<DynamicObject>>,
    /// Gateways by `(namespace, name)`.
    pub gateways: HashMap<(String, String), Arc<DynamicObject>>,
    /// `kubernetes.io/tls` Secrets by `(namespace, name)`.
    pub tls_sources: HashMap<(String, String), Arc<Secret>>,
    /// Image, resources, ports and identity endpoint of the proxy (the MeshConfig's).
    pub inject: InjectConfig,
    /// Whether the Gateway cache has synced: until it has, an empty plan says nothing
    /// about which Gateways exist, so no gateway object is deleted.
    pub synced: bool,
}

impl GatewayObjects {
    /// Indexes the snapshot's gateway caches.
    pub fn new(c: &crate::operator::snapshot_gateway::GatewayCaches) -> Self {
        fn keyed<K: Resource>(o: &Arc<K>) -> Option<(String, String)> {
            Some((o.meta().namespace.clone()?, o.meta().name.clone()?))
        }
        Self {
            classes: c
                .classes
                .iter()
                .filter_map(|o| Some((o.metadata.name.clone()?, o.clone())))
                .collect(),
            gateways: c
                .gateways
                .iter()
                .filter_map(|o| Some((keyed(o)?, o.clone())))
                .collect(),
            tls_sources: c
                .tls_secrets
                .iter()
                .filter_map(|s| Some((keyed(s)?, s.clone())))
                .collect(),
            inject: InjectConfig::default(),
            synced: true,
        }
    }

    /// The same objects, marked as read from a cache that has (not) synced.
    pub fn synced(mut self, synced: bool) -> Self {
        self.synced = synced;
        self
    }

    /// The same objects with the proxy settings `inject`.
    pub fn with_inject(mut self, inject: InjectConfig) -> Self {
        self.inject = inject;
        self
    }

    /// `tls.crt` / `tls.key` of a source Secret.
    pub fn key_pair(&self, ns: &str, name: &str) -> Option<KeyPair> {
        let data = self
            .tls_sources
            .get(&(ns.to_string(), name.to_string()))?
            .data
            .as_ref()?;
        Some((data.get("tls.crt")?.clone(), data.get("tls.key")?.clone()))
    }
}

/// A desired object: `(kind, namespace, name)`.
type Desired = (&'static str, String, String);

fn desired_key(kind: &'static str, meta: &ObjectMeta) -> Desired {
    (
        kind,
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Applier {
    async fn apply_counted<K>(&self, kind: &'static str, obj: &K, cached: Option<Arc<K>>, o: &mut Outcome)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let hash = objects::hash_of(obj.meta()).unwrap_or_default().to_string();
        match self.apply_obj(kind, &ns, obj, &hash, cached).await {
            usize::MAX => o.errors += 1,
            n => o.writes += n,
        }
    }

    async fn apply_gateway(
        &self,
        plan: &GatewayPlan,
        stores: &ManagedStores,
        gw: &GatewayObjects,
        keep: &mut BTreeSet<Desired>,
        o: &mut Outcome,
    ) {
        let ns = plan.namespace.as_str();
        let sa = go::service_account(plan);
        keep.insert(desired_key("serviceaccount", &sa.metadata));
        let name = sa.metadata.name.clone().unwrap_or_default();
        self.apply_counted(
            "serviceaccount",
            &sa,
            stores.service_accounts.get(&at(ns, &name)),
            o,
        )
        .await;
        if let Some(secret) = go::tls_secret(plan, |n, s| gw.key_pair(n, s)) {
            keep.insert(desired_key("secret", &secret.metadata));
            let cached = stores
                .secrets
                .get(&at(ns, secret.metadata.name.as_deref().unwrap_or_default()));
            self.apply_counted("secret", &secret, cached, o).await;
        }
        if let Some(role) = go::tls_role(plan) {
            keep.insert(desired_key("role", &role.metadata));
            let cached = stores
                .roles
                .get(&at(ns, role.metadata.name.as_deref().unwrap_or_default()));
            self.apply_counted("role", &role, cached, o).await;
        }
        if let Some(rb) = go::tls_role_binding(plan) {
            keep.insert(desired_key("rolebinding", &rb.metadata));
            let cached = stores
                .role_bindings
                .get(&at(ns, rb.metadata.name.as_deref().unwrap_or_default()));
            self.apply_counted("rolebinding", &rb, cached, o).await;
        }
        let svc = go::service(plan);
        keep.insert(desired_key("service", &svc.metadata));
        self.apply_counted("service", &svc, stores.services.get(&at(ns, &name)), o)
            .await;
        let deployment = go::deployment(plan, &gw.inject);
        keep.insert(desired_key("deployment", &deployment.metadata));
        self.apply_counted(
            "deployment",
            &deployment,
            stores.deployments.get(&at(ns, &name)),
            o,
        )
        .await;
    }

    /// Applies every planned gateway's objects and deletes those of gateways gone.
    pub(super) async fn apply_gateways(
        &self,
        out: &RenderOutput,
        stores: &ManagedStores,
        gw: &GatewayObjects,
        o: &mut Outcome,
    ) {
        let mut keep = BTreeSet::new();
        for plan in out.gateways.gateways.values() {
            self.apply_gateway(plan, stores, gw, &mut keep, o).await;
        }
        if !gw.synced {
            return;
        }
        let mut stale: Vec<Desired> = Vec::new();
        let mut collect = |kind: &'static str, metas: Vec<&ObjectMeta>| {
            for m in metas {
                if go::owner_gateway(m).is_some() {
                    let k = desired_key(kind, m);
                    if !keep.contains(&k) {
                        stale.push(k);
                    }
                }
            }
        };
        let sas = stores.service_accounts.state();
        collect("serviceaccount", sas.iter().map(|x| &x.metadata).collect());
        let secrets = stores.secrets.state();
        collect("secret", secrets.iter().map(|x| &x.metadata).collect());
        let roles = stores.roles.state();
        collect("role", roles.iter().map(|x| &x.metadata).collect());
        let rbs = stores.role_bindings.state();
        collect("rolebinding", rbs.iter().map(|x| &x.metadata).collect());
        let svcs = stores.services.state();
        collect("service", svcs.iter().map(|x| &x.metadata).collect());
        let deps = stores.deployments.state();
        collect("deployment", deps.iter().map(|x| &x.metadata).collect());
        for (kind, ns, name) in stale {
            match self.delete_gateway_object(kind, &ns, &name).await {
                Ok(()) => {
                    tracing::info!(kind, namespace = %ns, name = %name, "deleted: its Gateway is no longer weft's");
                    self.metrics.wrote("delete");
                    o.writes += 1;
                }
                Err(e) => {
                    tracing::warn!(kind, namespace = %ns, name = %name, error = %e, "delete failed");
                    o.errors += 1;
                }
            }
        }
    }

    async fn delete_gateway_object(&self, kind: &str, ns: &str, name: &str) -> Result<(), kube::Error> {
        let dp = DeleteParams::background();
        let c = self.client.clone();
        let r = match kind {
            "serviceaccount" => Api::<ServiceAccount>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "service" => Api::<Service>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "deployment" => Api::<Deployment>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "role" => Api::<Role>::namespaced(c, ns).delete(name, &dp).await.map(|_| ()),
            "rolebinding" => Api::<RoleBinding>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            _ => Api::<Secret>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
        };
        match r {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    /// `(kind/name of the role, resource, verbs)` of the shipped RBAC.
    fn grants() -> Vec<(String, String, Vec<String>)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/10-rbac.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_json::Value::deserialize(doc).unwrap();
            let name = format!(
                "{}/{}",
                v["kind"].as_str().unwrap_or_default(),
                v["metadata"]["name"].as_str().unwrap_or_default()
            );
            for rule in v["rules"].as_array().into_iter().flatten() {
                let verbs: Vec<String> = rule["verbs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect();
                for r in rule["resources"].as_array().into_iter().flatten() {
                    out.push((
                        name.clone(),
                        r.as_str().unwrap_or_default().to_string(),
                        verbs.clone(),
                    ));
                }
            }
        }
        out
    }

    /// The controller reads the gateway kinds and writes their status cluster-wide;
    /// it writes the per-Gateway objects only through the namespace-bound role.
    #[test]
    fn rbac_covers_the_gateway() {
        let g = grants();
        let has = |role: &str, resource: &str, verb: &str| {
            g.iter()
                .any(|(n, r, vs)| n == role && r == resource && vs.iter().any(|v| v == verb))
        };
        for r in [
            "gatewayclasses",
            "gateways",
            "deployments",
            "namespaces",
            "secrets",
            "services",
        ] {
            assert!(
                has("ClusterRole/weft-controller", r, "list")
                    && has("ClusterRole/weft-controller", r, "watch"),
                "{r}"
            );
        }
        assert!(has("ClusterRole/weft-controller", "gatewayclasses", "create"));
        for r in ["gatewayclasses/status", "gateways/status"] {
            assert!(has("ClusterRole/weft-controller", r, "patch"), "{r}");
        }
        for r in ["deployments", "services", "serviceaccounts", "secrets", "roles"] {
            for v in ["create", "patch", "delete"] {
                assert!(has("ClusterRole/weft-controller-workloads", r, v), "{r} {v}");
                assert!(
                    !has("ClusterRole/weft-controller", r, v),
                    "no cluster-wide {v} on {r}"
                );
            }
        }
    }
}

//! Removal: the objects of identities that left the mesh (ConfigMap, Role,
//! RoleBinding, found by their identity label), the trust bundle of namespaces
//! that left it, every identity Secret of earlier versions (workload keys), and the
//! delete call shared with the service catalog's pruning.

use super::{Applier, ManagedStores, objects};
use crate::certs::store::{IDENTITY_SECRET_PREFIX, LABEL_IDENTITY};
use crate::operator::render::IdentityKey;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::DeleteParams;
use std::collections::BTreeSet;
use weft_proxy_config::identity::BUNDLE_CONFIG_MAP;

impl Applier {
    pub(super) async fn cleanup(
        &self,
        keep: &BTreeSet<&IdentityKey>,
        stores: &ManagedStores,
        errors: &mut usize,
    ) -> usize {
        let mut stale: Vec<(&'static str, String, String)> = Vec::new();
        let orphan = |meta: &kube::api::ObjectMeta, prefix: &str| -> Option<(String, String)> {
            let sa = meta.labels.as_ref()?.get(LABEL_IDENTITY)?.clone();
            let (ns, name) = (meta.namespace.clone()?, meta.name.clone()?);
            (name == format!("{prefix}{sa}") && !keep.contains(&(ns.clone(), sa))).then_some((ns, name))
        };
        let prefix = objects::CONFIG_PREFIX;
        stale.extend(
            stores
                .config_maps
                .state()
                .iter()
                .filter_map(|c| orphan(&c.metadata, prefix))
                .map(|(n, m)| ("configmap", n, m)),
        );
        stale.extend(
            stores
                .roles
                .state()
                .iter()
                .filter_map(|c| orphan(&c.metadata, prefix))
                .map(|(n, m)| ("role", n, m)),
        );
        stale.extend(
            stores
                .role_bindings
                .state()
                .iter()
                .filter_map(|c| orphan(&c.metadata, prefix))
                .map(|(n, m)| ("rolebinding", n, m)),
        );
        // Identity Secrets of earlier versions (they held workload keys): all of them go.
        stale.extend(
            stores
                .secrets
                .state()
                .iter()
                .filter_map(|c| {
                    let (ns, name) = (c.metadata.namespace.clone()?, c.metadata.name.clone()?);
                    name.starts_with(IDENTITY_SECRET_PREFIX).then_some((ns, name))
                })
                .map(|(n, m)| ("secret", n, m)),
        );
        // Trust bundles of namespaces without meshed identities any more.
        let meshed: BTreeSet<&str> = keep.iter().map(|(ns, _)| ns.as_str()).collect();
        stale.extend(
            stores
                .config_maps
                .state()
                .iter()
                .filter(|c| c.metadata.name.as_deref() == Some(BUNDLE_CONFIG_MAP))
                .filter_map(|c| c.metadata.namespace.clone())
                .filter(|ns| !meshed.contains(ns.as_str()) && *ns != self.system_namespace)
                .map(|ns| ("configmap", ns, BUNDLE_CONFIG_MAP.to_string())),
        );
        // Last: the controller's own binding in namespaces that left the mesh, once
        // nothing else of weft is left to delete there (it grants those deletes).
        let busy: BTreeSet<String> = stale.iter().map(|(_, ns, _)| ns.clone()).collect();
        stale.extend(
            stores
                .role_bindings
                .state()
                .iter()
                .filter(|b| b.metadata.name.as_deref() == Some(objects::NAMESPACE_BINDING))
                .filter(|b| b.role_ref.name == objects::WORKLOADS_CLUSTER_ROLE)
                .filter_map(|b| b.metadata.namespace.clone())
                .filter(|ns| !meshed.contains(ns.as_str()) && !busy.contains(ns))
                .map(|ns| ("rolebinding", ns, objects::NAMESPACE_BINDING.to_string())),
        );
        let mut writes = 0;
        for (kind, ns, name) in stale {
            let r = self.delete(kind, &ns, &name).await;
            match r {
                Ok(()) => {
                    tracing::info!(kind, namespace = %ns, name = %name, "deleted: identity left the mesh");
                    self.metrics.wrote("delete");
                    writes += 1;
                }
                Err(e) => {
                    tracing::warn!(kind, namespace = %ns, name = %name, error = %e, "delete failed");
                    *errors += 1;
                }
            }
        }
        writes
    }

    /// Deletes one managed object; a missing object counts as deleted.
    pub(super) async fn delete(&self, kind: &str, ns: &str, name: &str) -> Result<(), kube::Error> {
        let dp = DeleteParams::default();
        let r = match kind {
            "configmap" => Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "role" => Api::<Role>::namespaced(self.client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "rolebinding" => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            _ => Api::<Secret>::namespaced(self.client.clone(), ns)
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

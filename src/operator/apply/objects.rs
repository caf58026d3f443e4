//! The desired per-identity objects, built purely from a render: the proxy
//! ConfigMap `weft-proxy-<sa>` and a Role/RoleBinding letting the identity read
//! only that ConfigMap; per meshed namespace the public trust bundle
//! [`ca_bundle`]. Each carries a content hash annotation so unchanged
//! content is never written again.

use crate::certs::store::{LABEL_IDENTITY, LABEL_MANAGED_BY, MANAGED_BY, sa_owner};
use crate::operator::render::{RenderedConfig, content_hash};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "weft-operator";
/// Annotation holding the hash of an object's managed content.
pub const ANN_CONFIG_HASH: &str = "weft.dev/config-hash";
/// Prefix of ConfigMap, Role and RoleBinding names.
pub const CONFIG_PREFIX: &str = "weft-proxy-";

/// `weft-proxy-<sa>`.
pub fn config_name(service_account: &str) -> String {
    format!("{CONFIG_PREFIX}{service_account}")
}

fn meta(namespace: &str, sa: &str, owner_uid: &str, hash: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(config_name(sa)),
        namespace: Some(namespace.into()),
        labels: Some(
            [
                (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                (LABEL_IDENTITY.to_string(), sa.to_string()),
            ]
            .into(),
        ),
        annotations: Some([(ANN_CONFIG_HASH.to_string(), hash)].into()),
        owner_references: Some(vec![sa_owner(sa, owner_uid)]),
        ..ObjectMeta::default()
    }
}

/// The proxy ConfigMap (key [`weft_proxy_config::CONFIG_KEY`]).
pub fn config_map(namespace: &str, sa: &str, rendered: &RenderedConfig) -> ConfigMap {
    let hash = content_hash(format!("{}|{}", rendered.hash, rendered.owner_uid).as_bytes());
    ConfigMap {
        metadata: meta(namespace, sa, &rendered.owner_uid, hash),
        data: Some(BTreeMap::from([(
            weft_proxy_config::CONFIG_KEY.to_string(),
            rendered.json.clone(),
        )])),
        ..ConfigMap::default()
    }
}

/// Role: get/list/watch on exactly the identity's ConfigMap.
pub fn role(namespace: &str, sa: &str, owner_uid: &str) -> Role {
    let rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        resource_names: Some(vec![config_name(sa)]),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        non_resource_urls: None,
    }];
    let hash = content_hash(
        format!(
            "{}|{owner_uid}",
            serde_json::to_string(&rules).unwrap_or_default()
        )
        .as_bytes(),
    );
    Role {
        metadata: meta(namespace, sa, owner_uid, hash),
        rules: Some(rules),
    }
}

/// RoleBinding of [`role`] to the ServiceAccount.
pub fn role_binding(namespace: &str, sa: &str, owner_uid: &str) -> RoleBinding {
    let subjects = vec![Subject {
        kind: "ServiceAccount".into(),
        name: sa.into(),
        namespace: Some(namespace.into()),
        api_group: None,
    }];
    let role_ref = RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name: config_name(sa),
    };
    let hash = content_hash(
        format!(
            "{}|{}|{owner_uid}",
            serde_json::to_string(&subjects).unwrap_or_default(),
            role_ref.name
        )
        .as_bytes(),
    );
    RoleBinding {
        metadata: meta(namespace, sa, owner_uid, hash),
        role_ref,
        subjects: Some(subjects),
    }
}

/// The public trust bundle of a meshed namespace: ConfigMap `weft-ca-bundle` (key
/// `ca.crt`), mounted by every sidecar to verify the controller's identity endpoint.
/// No identity label: it belongs to the namespace, not to one ServiceAccount.
pub fn ca_bundle(namespace: &str, bundle: &str) -> ConfigMap {
    use weft_proxy_config::identity::{BUNDLE_CONFIG_MAP, BUNDLE_KEY};
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(BUNDLE_CONFIG_MAP.into()),
            namespace: Some(namespace.into()),
            labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into()),
            annotations: Some([(ANN_CONFIG_HASH.to_string(), content_hash(bundle.as_bytes()))].into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(BUNDLE_KEY.to_string(), bundle.to_string())])),
        ..ConfigMap::default()
    }
}

/// Default ServiceAccount of the controller.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "weft-controller";
/// ClusterRole holding the controller's write rights in a workload namespace; bound
/// only per meshed namespace, by [`namespace_binding`] (never cluster-wide).
pub const WORKLOADS_CLUSTER_ROLE: &str = "weft-controller-workloads";
/// Name of [`namespace_binding`].
pub const NAMESPACE_BINDING: &str = "weft-controller";

/// RoleBinding `weft-controller` in a meshed namespace: grants the controller's
/// ServiceAccount ClusterRole [`WORKLOADS_CLUSTER_ROLE`] there (write ConfigMaps and
/// Roles, delete legacy identity Secrets). Created at opt-in (the first identity),
/// deleted when the namespace has none left.
pub fn namespace_binding(namespace: &str, controller_sa: &str, system_namespace: &str) -> RoleBinding {
    let subjects = vec![Subject {
        kind: "ServiceAccount".into(),
        name: controller_sa.into(),
        namespace: Some(system_namespace.into()),
        api_group: None,
    }];
    let role_ref = RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: WORKLOADS_CLUSTER_ROLE.into(),
    };
    let hash = content_hash(
        format!(
            "{}|{}",
            serde_json::to_string(&subjects).unwrap_or_default(),
            role_ref.name
        )
        .as_bytes(),
    );
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(NAMESPACE_BINDING.into()),
            namespace: Some(namespace.into()),
            labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into()),
            annotations: Some([(ANN_CONFIG_HASH.to_string(), hash)].into()),
            ..ObjectMeta::default()
        },
        role_ref,
        subjects: Some(subjects),
    }
}

/// The hash annotation of an object's metadata.
pub fn hash_of(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(ANN_CONFIG_HASH)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_is_scoped_to_one_config_map() {
        let r = role("shop", "frontend", "uid");
        let rule = &r.rules.unwrap()[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["weft-proxy-frontend".to_string()][..])
        );
        assert_eq!(rule.verbs, ["get", "list", "watch"]);
        assert_eq!(r.metadata.owner_references.unwrap()[0].kind, "ServiceAccount");
        let b = role_binding("shop", "frontend", "uid");
        assert_eq!(b.role_ref.name, "weft-proxy-frontend");
        assert_ne!(
            hash_of(&b.metadata),
            hash_of(&role_binding("shop", "frontend", "uid2").metadata)
        );
    }

    #[test]
    fn the_namespace_binding_grants_the_workloads_cluster_role_to_the_controller() {
        let b = namespace_binding("shop", "weft-controller", "weft-system");
        assert_eq!(b.metadata.name.as_deref(), Some("weft-controller"));
        assert_eq!(
            (b.role_ref.kind.as_str(), b.role_ref.name.as_str()),
            ("ClusterRole", "weft-controller-workloads")
        );
        let s = &b.subjects.unwrap()[0];
        assert_eq!(
            (s.name.as_str(), s.namespace.as_deref()),
            ("weft-controller", Some("weft-system"))
        );
        assert!(!b.metadata.labels.unwrap().contains_key(LABEL_IDENTITY));
    }

    #[test]
    fn the_bundle_config_map_holds_only_public_certificates() {
        let ca = crate::certs::MeshCa::generate("td", time::OffsetDateTime::now_utc()).unwrap();
        let cm = ca_bundle("shop", ca.cert_pem());
        assert_eq!(cm.metadata.name.as_deref(), Some("weft-ca-bundle"));
        let data = cm.data.unwrap();
        assert_eq!(data["ca.crt"], ca.cert_pem());
        assert!(!data.values().any(|v| v.contains("PRIVATE KEY")));
        assert_ne!(
            hash_of(&ca_bundle("shop", "a").metadata),
            hash_of(&ca_bundle("shop", "b").metadata)
        );
    }
}

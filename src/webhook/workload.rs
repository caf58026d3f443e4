//! Which workload a pod belongs to, for metrics labels: the controlling owner
//! reference, with a ReplicaSet `foo-<pod-template-hash>` mapped to its Deployment
//! `foo` (as OSM and Linkerd do). Pods without an owner are their own workload.

use k8s_openapi::api::core::v1::Pod;

/// Kind and name of the workload owning a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `ReplicaSet`, `Pod`, ...
    pub kind: String,
    /// The workload's name (`unknown` if the pod has no name yet and no owner).
    pub name: String,
}

/// Derives the workload of `pod`.
pub fn workload(pod: &Pod) -> Workload {
    let meta = &pod.metadata;
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or(owners.first());
    if let Some(o) = owner {
        if o.kind == "ReplicaSet" {
            let hash = meta.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
            if let Some(deployment) = hash.and_then(|h| o.name.strip_suffix(&format!("-{h}"))) {
                return Workload {
                    kind: "Deployment".into(),
                    name: deployment.to_string(),
                };
            }
        }
        return Workload {
            kind: o.kind.clone(),
            name: o.name.clone(),
        };
    }
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            meta.generate_name
                .as_deref()
                .map(|g| g.trim_end_matches('-').to_string())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    Workload {
        kind: "Pod".into(),
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(owner: Option<(&str, &str)>, hash: Option<&str>, generate: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                generate_name: generate.map(String::from),
                labels: hash.map(|h| [("pod-template-hash".to_string(), h.to_string())].into()),
                owner_references: owner.map(|(kind, name)| {
                    vec![OwnerReference {
                        kind: kind.into(),
                        name: name.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn maps_replicaset_to_deployment() {
        let w = workload(&pod(
            Some(("ReplicaSet", "podinfo-7d9c5b8f6")),
            Some("7d9c5b8f6"),
            None,
        ));
        assert_eq!(
            w,
            Workload {
                kind: "Deployment".into(),
                name: "podinfo".into()
            }
        );
        let bare = workload(&pod(Some(("ReplicaSet", "standalone-rs")), None, None));
        assert_eq!(
            bare,
            Workload {
                kind: "ReplicaSet".into(),
                name: "standalone-rs".into()
            }
        );
    }

    #[test]
    fn other_owners_and_bare_pods() {
        let w = workload(&pod(Some(("StatefulSet", "db")), None, None));
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("StatefulSet", "db"));
        let w = workload(&pod(None, None, Some("client-")));
        assert_eq!((w.kind.as_str(), w.name.as_str()), ("Pod", "client"));
        assert_eq!(workload(&Pod::default()).name, "unknown");
    }
}

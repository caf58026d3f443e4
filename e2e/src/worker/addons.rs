//! What a cluster has besides its nodes that pods rely on: the cluster DNS. CoreDNS (built
//! from its Go module, imported as a local image) runs as a Deployment behind the
//! `kube-dns` Service at 198.19.0.10, from e2e/node-tools/coredns.yaml, as kubeadm and kind
//! deploy it; this module applies it and waits for the node and the DNS to be ready.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use crate::apply;
use crate::mesh::install::wait_available;
use crate::mesh::{MeshError, wait_for};

/// The CoreDNS objects.
pub const COREDNS_YAML: &str = include_str!("../../node-tools/coredns.yaml");

/// Applies the CoreDNS objects and waits until its Deployment is Available.
pub async fn install_coredns(client: &kube::Client, timeout: Duration) -> Result<(), MeshError> {
    let manifests = apply::parse_docs(std::path::Path::new("e2e/node-tools/coredns.yaml"), COREDNS_YAML)?;
    apply::apply_all(client, &manifests, Duration::from_secs(30)).await?;
    wait_available(client, "kube-system", "coredns", timeout).await
}

/// Whether the Node's `Ready` condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until Node `name` is registered and Ready.
pub async fn wait_node_ready(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<Node, MeshError> {
    let api: Api<Node> = Api::all(client.clone());
    wait_for(&format!("node {name} Ready"), timeout, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                Some(n) if node_ready(&n) => Ok(Some(n)),
                Some(_) => Err("registered, not Ready".into()),
                None => Err("not registered".into()),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coredns_manifest_parses_and_serves_the_cluster_dns_ip() {
        let m = apply::parse_docs(std::path::Path::new("coredns.yaml"), COREDNS_YAML).unwrap();
        let kinds: Vec<String> = m.iter().map(|m| m.gvk().unwrap().kind).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "ConfigMap",
                "Deployment",
                "Service"
            ]
        );
        let svc = &m[5].object.data;
        assert_eq!(
            svc["spec"]["clusterIP"],
            super::super::config::NODE_NET.cluster_dns.to_string()
        );
        // No upstream: the test ground never asks an outside resolver.
        assert!(!COREDNS_YAML.contains("forward "), "CoreDNS must not forward");
    }
}

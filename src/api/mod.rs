//! Kubernetes API types weft serves or reads: the SMI groups (TrafficSplit,
//! TrafficTarget, HTTPRouteGroup, TCPRoute) in every version weft serves, weft's
//! own `policy.weft.dev` kinds (Retry, CircuitBreaker, LoadBalancing,
//! FaultInjection, TrafficMirror, MeshConfig), the Gateway API route kinds weft
//! reads for GAMMA ([`gateway`], upstream CRDs, never generated here), and the CRD
//! manifests generated from them ([`crds`]).

pub mod access;
pub mod balancing;
pub mod crds;
pub mod duration;
pub mod fault;
pub mod gateway;
pub mod mesh;
pub mod mirror;
pub mod policy;
pub mod quantity;
pub mod specs;
pub mod split;
pub mod status;

#[cfg(test)]
mod samples_tests;

/// The `message` of each CEL rule (`x-kubernetes-validations`) on a schema node.
#[cfg(test)]
pub(crate) fn cel_messages(node: &serde_json::Value) -> Vec<String> {
    node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

//! Kubernetes API types weft serves or reads: the SMI groups (TrafficSplit,
//! TrafficTarget, HTTPRouteGroup, TCPRoute) in every version weft serves, weft's
//! own `policy.weft.dev` kinds (Retry, CircuitBreaker, LoadBalancing,
//! FaultInjection, TrafficMirror, MeshConfig), and the CRD
//! manifests generated from them ([`crds`]).

pub mod access;
pub mod balancing;
pub mod crds;
pub mod duration;
pub mod fault;
pub mod mesh;
pub mod mirror;
pub mod policy;
pub mod quantity;
pub mod specs;
pub mod split;
pub mod status;

#[cfg(test)]
mod samples_tests;

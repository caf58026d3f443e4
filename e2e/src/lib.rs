//! weft's test harness: a real local Kubernetes control plane built from the upstream Go
//! modules ([`control_plane`]), one shared instance per test binary ([`shared`]) with
//! per-test namespaces ([`namespace`]), and a real worker node (kubelet + containerd,
//! [`worker`]) for the tests that run pods.

pub mod apply;
pub mod conformance;
pub mod control_plane;
pub mod dev_cluster;
pub mod gateway_api;
pub mod mesh;
pub mod namespace;
pub mod shared;
pub mod worker;

pub use control_plane::{ControlPlane, Options};
pub use namespace::TestNamespace;

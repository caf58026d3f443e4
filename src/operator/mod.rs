//! The operator: reconciles SMI resources, weft policies and cluster state into
//! per-identity proxy configs (ConfigMaps), their RBAC, workload certificates
//! and object status.
//!
//! Layers: [`state`] (plain input data) → [`render`] (pure, deterministic) →
//! apply (I/O, only on the elected leader).

pub mod apply;
pub mod controller;
pub mod gateway_class;
mod inputs;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod snapshot;
pub mod snapshot_gateway;
#[cfg(test)]
mod snapshot_tests;
pub mod state;

pub use controller::{Handles, Options, run};

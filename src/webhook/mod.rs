//! Sidecar-injection admission webhook.
//!
//! Pure core: [`inject::decide`] and [`inject::inject`] (with [`containers`],
//! [`probes`], [`exclusions`], [`workload`]) and [`admission::review`], which turns an
//! AdmissionReview body into the response. I/O edges: [`server`] (axum over rustls,
//! plus a plain health port), [`tls`] (hot-swappable serving certificate),
//! [`certgen`] (rcgen CA and serving certificate) and [`certmgr`] (stores them in a
//! Secret, writes the CA into the MutatingWebhookConfiguration, renews); [`run`]
//! starts all of them on one replica; [`mesh_config`] follows the MeshConfig.
//! The contract with `weft-proxy` is in [`names`] and `docs/injection.md`.

pub mod admission;
pub mod certgen;
pub mod certmgr;
pub mod config;
pub mod configuration;
pub mod containers;
pub mod deny;
pub mod enrolment;
pub mod exclusions;
pub mod inject;
pub mod mesh_config;
pub mod names;
pub mod probes;
pub mod run;
pub mod server;
pub mod tls;
pub mod workload;

pub use config::InjectConfig;
pub use deny::Deny;
pub use inject::{Decision, decide, inject, patch};

//! The mesh certificate authority and per-identity workload certificates.
//!
//! - [`ca`]: pure functions (no I/O) to create a CA, load it from PEM and issue
//!   SPIFFE workload certificates — reusable by tests that need "certs issued
//!   by the operator's CA code".
//! - [`bundle`]: the trust bundle (`ca.crt`), which may hold several roots so a
//!   CA can be rotated without an outage (see `docs/certificates.md`).
//! - [`store`]: the Kubernetes side: the CA Secret `weft-ca` in the system
//!   namespace (create-only, never overwritten). Workload certificates are
//!   signed on request by `crate::identity` and never stored.

pub mod bundle;
pub mod ca;
pub mod store;

pub use ca::{CertError, IssuedCert, MeshCa, renewal_due};

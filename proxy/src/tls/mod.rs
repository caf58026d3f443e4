//! Mesh mutual TLS: the workload identity ([`identity`]) obtained from the
//! controller by CSR ([`csr`], kept fresh by [`renew`]) or loaded from a mounted
//! directory, the outbound [`client::MeshConnector`] and the inbound
//! [`server::MeshInbound`] (TLS termination plus SMI authorization).

pub mod client;
pub mod csr;
pub mod identity;
pub mod renew;
pub mod server;
pub mod verify;

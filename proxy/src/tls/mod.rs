//! Mesh mutual TLS: the workload identity loaded (and reloaded) from the
//! identity Secret mount, the outbound [`client::MeshConnector`] and the
//! inbound [`server::MeshInbound`] (TLS termination plus SMI authorization).

pub mod client;
pub mod identity;
pub mod server;
pub mod verify;

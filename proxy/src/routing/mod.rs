//! Routing: from an original destination to a service port, then through an
//! optional TrafficSplit (with HTTPRouteGroup matches) to a backend service
//! whose balancer picks an endpoint, or through Gateway API routes
//! ([`gamma`]) when the port has any. Built once per config; read-only after.

pub mod gamma;
pub mod gamma_edit;
pub mod gateway;
pub mod matcher;
pub mod path;
pub mod split;
pub mod table;
pub mod traffic;

pub use table::{Backend, BackendPolicy, InboundPort, PortRoute, RouteTable};

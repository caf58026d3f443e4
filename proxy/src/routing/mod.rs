//! Routing: from an original destination to a service port, then through an
//! optional TrafficSplit (with HTTPRouteGroup matches) to a backend service
//! whose balancer picks an endpoint. Built once per config; read-only after.

pub mod matcher;
pub mod path;
pub mod split;
pub mod table;
pub mod traffic;

pub use table::{Backend, BackendPolicy, InboundPort, PortRoute, RouteTable};

//! `weft-proxy run`: the weft sidecar data path (library part, so tests and
//! benchmarks can start proxies in-process). The iptables init lives in the
//! binary (`src/init/`).

pub mod admin;
pub mod authz;
pub mod conf;
pub mod drain;
pub mod endpoint;
pub mod gateway;
pub mod lb;
pub mod log_limit;
pub mod metrics;
pub mod net;
pub mod probes;
pub mod proxy;
pub mod ready;
pub mod resilience;
pub mod routing;
pub mod run;
pub mod tls;

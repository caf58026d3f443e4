//! weft control plane: SMI and weft API types ([`api`]), the operator that renders
//! proxy configs ([`operator`]), the sidecar-injection webhook ([`webhook`]) and the
//! mesh certificate authority ([`certs`]).

pub mod api;
pub mod certs;
pub mod identity;
pub mod operator;
pub mod webhook;

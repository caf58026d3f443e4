//! The identity endpoint: sidecars generate their private key in memory and send a
//! CSR here, authenticated by a projected ServiceAccount token with the audience
//! [`AUDIENCE`]; the controller checks the token with the TokenReview API
//! ([`review`]) and signs only the SPIFFE ID of that token's ServiceAccount with the
//! current mesh CA ([`server`]). Every replica serves it over TLS with a certificate
//! from the mesh CA ([`run`]), so no workload key is ever stored in a Secret.

pub mod review;
pub mod run;
pub mod server;

pub use weft_proxy_config::identity::{
    AUDIENCE, BUNDLE_CONFIG_MAP, BUNDLE_KEY, CERTIFICATE_PATH, CertificateRequest, CertificateResponse,
    DEFAULT_PORT, SERVICE,
};

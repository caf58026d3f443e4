//! The identity endpoint's wire format, shared by the controller (which serves it)
//! and the sidecar (which calls it): `POST` [`CERTIFICATE_PATH`] with
//! `Authorization: Bearer <projected ServiceAccount token, audience AUDIENCE>` and a
//! [`CertificateRequest`] body; the answer is a [`CertificateResponse`]. The
//! sidecar's private key never leaves it: only the CSR's public key is used, and the
//! identity signed is always the one of the token's ServiceAccount.

use serde::{Deserialize, Serialize};

/// Audience of the projected ServiceAccount token the sidecar presents.
pub const AUDIENCE: &str = "weft.dev/identity";
/// Path of the signing endpoint.
pub const CERTIFICATE_PATH: &str = "/v1/certificate";
/// Default port of the identity endpoint on the controller.
pub const DEFAULT_PORT: u16 = 15012;
/// Name of the Service in front of the identity endpoint (in `weft-system`).
pub const SERVICE: &str = "weft-identity";
/// ConfigMap (in every meshed namespace) holding the public trust bundle, key
/// [`BUNDLE_KEY`]; the sidecar verifies the identity endpoint with it.
pub const BUNDLE_CONFIG_MAP: &str = "weft-ca-bundle";
/// Key of the PEM bundle in [`BUNDLE_CONFIG_MAP`].
pub const BUNDLE_KEY: &str = "ca.crt";

/// Body of a signing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequest {
    /// PEM PKCS#10 certificate signing request; only its public key is used.
    pub csr: String,
}

/// Answer to a signing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateResponse {
    /// The identity signed: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` of the token.
    pub spiffe_id: String,
    /// PEM chain, leaf first.
    pub certificate_chain: String,
    /// PEM trust bundle: the signing root first, then every other trusted root.
    pub trust_bundle: String,
    /// `notBefore` of the leaf, Unix seconds.
    pub not_before: i64,
    /// `notAfter` of the leaf, Unix seconds.
    pub not_after: i64,
}

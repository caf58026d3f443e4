//! The signing handler, `POST /v1/certificate`: bearer token → TokenReview →
//! ServiceAccount → `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` signed over the CSR's
//! public key with the current CA. The CSR's own subject and SANs are ignored, so a
//! token can only ever obtain the identity of its own ServiceAccount.

use super::review::{self, ReviewError, TokenReviewer};
use super::{AUDIENCE, CERTIFICATE_PATH, CertificateRequest, CertificateResponse};
use crate::certs::store::CaState;
use crate::operator::snapshot::DEFAULT_CERT_VALIDITY;
use crate::operator::state::{DEFAULT_TRUST_DOMAIN, spiffe_id};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// Largest request body accepted (a P-256 CSR is well under 1 KiB).
const MAX_BODY: usize = 16 * 1024;

/// Mesh settings the signer follows (MeshConfig `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerSettings {
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Lifetime of issued certificates.
    pub validity: Duration,
}

impl Default for SignerSettings {
    fn default() -> Self {
        Self {
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
            validity: DEFAULT_CERT_VALIDITY,
        }
    }
}

/// The shared state of the endpoint: reviewer, current CA and settings.
#[derive(Debug, Clone)]
pub struct IdentityService {
    reviewer: Arc<dyn TokenReviewer>,
    ca: Arc<RwLock<Option<Arc<CaState>>>>,
    settings: Arc<RwLock<SignerSettings>>,
}

impl IdentityService {
    /// A service with no CA yet (requests get 503 until [`Self::set_ca`]).
    pub fn new(reviewer: Arc<dyn TokenReviewer>) -> Self {
        Self {
            reviewer,
            ca: Arc::new(RwLock::new(None)),
            settings: Arc::new(RwLock::new(SignerSettings::default())),
        }
    }

    /// Installs the CA (signer + bundle) used from the next request on.
    pub fn set_ca(&self, ca: Arc<CaState>) {
        *self.ca.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ca);
    }

    /// The CA in use.
    pub fn ca(&self) -> Option<Arc<CaState>> {
        self.ca
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the mesh settings.
    pub fn set_settings(&self, s: SignerSettings) {
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }

    /// The mesh settings in use.
    pub fn settings(&self) -> SignerSettings {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The router: `POST /v1/certificate`.
pub fn router(svc: IdentityService) -> Router {
    Router::new()
        .route(CERTIFICATE_PATH, post(certificate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(svc)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn certificate(State(svc): State<IdentityService>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = bearer(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "missing bearer token".into());
    };
    let caller = match svc.reviewer.review(token, AUDIENCE).await {
        Ok(status) => review::caller(&status, AUDIENCE),
        Err(e) => Err(e),
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => {
            let code = match &e {
                ReviewError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                ReviewError::Forbidden(_) => StatusCode::FORBIDDEN,
                ReviewError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(error = %e, status = code.as_u16(), "certificate request refused");
            return refuse(code, e.to_string());
        }
    };
    let req: CertificateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let Some(ca) = svc.ca() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "mesh CA not loaded yet".into());
    };
    let settings = svc.settings();
    let sid = spiffe_id(&settings.trust_domain, &caller.namespace, &caller.service_account);
    let cert = match ca
        .ca
        .sign_csr(&req.csr, &sid, settings.validity, OffsetDateTime::now_utc())
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(namespace = %caller.namespace, service_account = %caller.service_account, error = %e, "unusable CSR");
            return refuse(StatusCode::BAD_REQUEST, format!("csr: {e}"));
        }
    };
    tracing::info!(namespace = %caller.namespace, service_account = %caller.service_account,
        identity = %sid, not_after = cert.not_after.unix_timestamp(), "signed workload certificate");
    Json(CertificateResponse {
        spiffe_id: sid,
        certificate_chain: cert.cert_pem,
        trust_bundle: ca.bundle.clone(),
        not_before: cert.not_before.unix_timestamp(),
        not_after: cert.not_after.unix_timestamp(),
    })
    .into_response()
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

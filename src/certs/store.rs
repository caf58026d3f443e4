//! Certificates in Kubernetes: the CA Secret `weft-ca` (created once with
//! create-only semantics, so two replicas cannot race and a restart never
//! replaces it) and the desired per-identity Secret `weft-identity-<sa>`,
//! re-issued only when missing, signed by another CA, carrying an outdated
//! bundle or SPIFFE ID, or past 2/3 of its life.

use super::bundle;
use super::ca::{self, CertError, IssuedCert, MeshCa};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Name of the CA Secret in the system namespace.
pub const CA_SECRET: &str = "weft-ca";
/// Label on everything the operator creates.
pub const LABEL_MANAGED_BY: &str = "weft.dev/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "weft";
/// Label naming the identity (ServiceAccount) an object belongs to.
pub const LABEL_IDENTITY: &str = "weft.dev/identity";
/// Annotation: fingerprint of the CA that signed `tls.crt`.
pub const ANN_CA_FINGERPRINT: &str = "weft.dev/ca-fingerprint";
/// Annotation: hash of the `ca.crt` bundle.
pub const ANN_BUNDLE_HASH: &str = "weft.dev/bundle-hash";
/// Annotation: SPIFFE ID in `tls.crt`.
pub const ANN_SPIFFE_ID: &str = "weft.dev/spiffe-id";
/// Annotation: when the certificate is due for renewal (RFC 3339, informational).
pub const ANN_RENEW_AT: &str = "weft.dev/renew-at";
/// Prefix of identity Secret names.
pub const IDENTITY_SECRET_PREFIX: &str = "weft-identity-";

/// Why the CA could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Certificate material is unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The Secret lacks a key.
    #[error("secret {0} lacks key {1}")]
    MissingKey(String, &'static str),
}

/// The signing CA and the trust bundle every identity receives.
#[derive(Debug)]
pub struct CaState {
    /// Signing CA (`tls.crt`/`tls.key` of `weft-ca`).
    pub ca: MeshCa,
    /// Trust bundle: the signing root first, then any extra roots from `ca.crt`.
    pub bundle: String,
}

impl CaState {
    /// Hash of the bundle.
    pub fn bundle_hash(&self) -> String {
        crate::operator::render::content_hash(self.bundle.as_bytes())
    }
}

fn text(secret: &Secret, key: &'static str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Reads the CA Secret into a [`CaState`].
pub fn ca_from_secret(secret: &Secret) -> Result<CaState, StoreError> {
    let missing = |k| StoreError::MissingKey(CA_SECRET.into(), k);
    let cert = text(secret, "tls.crt").ok_or_else(|| missing("tls.crt"))?;
    let key = text(secret, "tls.key").ok_or_else(|| missing("tls.key"))?;
    let extra = text(secret, "ca.crt").unwrap_or_default();
    let ca = MeshCa::from_pem(&cert, &key)?;
    Ok(CaState {
        bundle: bundle::build(&cert, &extra),
        ca,
    })
}

/// The CA Secret for a new CA.
pub fn ca_secret(namespace: &str, ca: &MeshCa) -> Secret {
    let data = [
        ("tls.crt", ca.cert_pem()),
        ("tls.key", ca.key_pem()),
        ("ca.crt", ca.cert_pem()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Loads the CA Secret, creating it if absent. Create-only: if another replica
/// created it first (409), that one is used; an existing CA is never replaced.
pub async fn ensure_ca(client: &Client, namespace: &str, trust_domain: &str) -> Result<CaState, StoreError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(s) = api.get_opt(CA_SECRET).await? {
        return ca_from_secret(&s);
    }
    let ca = MeshCa::generate(trust_domain, OffsetDateTime::now_utc())?;
    match api
        .create(&PostParams::default(), &ca_secret(namespace, &ca))
        .await
    {
        Ok(created) => {
            tracing::info!(namespace, secret = CA_SECRET, fingerprint = %ca.fingerprint(), "created the mesh CA");
            ca_from_secret(&created)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(
                namespace,
                secret = CA_SECRET,
                "another replica created the mesh CA first; using it"
            );
            ca_from_secret(&api.get(CA_SECRET).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// What to do with an identity Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertDecision {
    /// Current; re-check at `renew_at`.
    Keep {
        /// When renewal is due.
        renew_at: OffsetDateTime,
    },
    /// (Re-)issue, for this reason.
    Issue(&'static str),
}

/// Decides whether an identity Secret must be (re-)issued.
pub fn decide(existing: Option<&Secret>, ca: &CaState, spiffe_id: &str, now: OffsetDateTime) -> CertDecision {
    let Some(s) = existing else {
        return CertDecision::Issue("missing");
    };
    let ann = s.metadata.annotations.clone().unwrap_or_default();
    let get = |k: &str| ann.get(k).map(String::as_str);
    if get(ANN_CA_FINGERPRINT) != Some(ca.ca.fingerprint().as_str()) {
        return CertDecision::Issue("signed by another CA");
    }
    if get(ANN_BUNDLE_HASH) != Some(ca.bundle_hash().as_str())
        || text(s, "ca.crt").as_deref() != Some(&ca.bundle)
    {
        return CertDecision::Issue("trust bundle changed");
    }
    if get(ANN_SPIFFE_ID) != Some(spiffe_id) {
        return CertDecision::Issue("identity changed");
    }
    let Some(cert) = text(s, "tls.crt") else {
        return CertDecision::Issue("no certificate");
    };
    match ca::validity(&cert) {
        Err(_) => CertDecision::Issue("unreadable certificate"),
        Ok((nb, na)) => {
            let renew_at = ca::renewal_due(nb, na);
            if now >= renew_at {
                CertDecision::Issue("renewal due")
            } else {
                CertDecision::Keep { renew_at }
            }
        }
    }
}

/// The desired identity Secret.
pub fn identity_secret(
    namespace: &str,
    service_account: &str,
    owner_uid: &str,
    ca: &CaState,
    spiffe_id: &str,
    cert: &IssuedCert,
) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("tls.crt", cert.cert_pem.as_str()),
        ("tls.key", cert.key_pem.as_str()),
        ("ca.crt", ca.bundle.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let renew_at = ca::renewal_due(cert.not_before, cert.not_after);
    let renew_text = renew_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{IDENTITY_SECRET_PREFIX}{service_account}")),
            namespace: Some(namespace.into()),
            labels: Some(
                [
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                    (LABEL_IDENTITY.to_string(), service_account.to_string()),
                ]
                .into(),
            ),
            annotations: Some(
                [
                    (ANN_CA_FINGERPRINT.to_string(), ca.ca.fingerprint()),
                    (ANN_BUNDLE_HASH.to_string(), ca.bundle_hash()),
                    (ANN_SPIFFE_ID.to_string(), spiffe_id.to_string()),
                    (ANN_RENEW_AT.to_string(), renew_text),
                ]
                .into(),
            ),
            owner_references: Some(vec![sa_owner(service_account, owner_uid)]),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Owner reference to a ServiceAccount.
pub fn sa_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "ServiceAccount".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn decisions_follow_ca_bundle_identity_and_age() {
        let now = OffsetDateTime::now_utc();
        let ca = ca_from_secret(&ca_secret("weft-system", &MeshCa::generate("td", now).unwrap())).unwrap();
        let id = "spiffe://td/ns/a/sa/b";
        assert_eq!(decide(None, &ca, id, now), CertDecision::Issue("missing"));
        let cert = ca.ca.issue(id, Duration::from_secs(3000), now).unwrap();
        let s = identity_secret("a", "b", "uid", &ca, id, &cert);
        assert!(matches!(
            decide(Some(&s), &ca, id, now),
            CertDecision::Keep { .. }
        ));
        assert_eq!(
            decide(Some(&s), &ca, id, now + Duration::from_secs(2100)),
            CertDecision::Issue("renewal due")
        );
        assert_eq!(
            decide(Some(&s), &ca, "spiffe://td/ns/a/sa/c", now),
            CertDecision::Issue("identity changed")
        );
        let other = ca_from_secret(&ca_secret("weft-system", &MeshCa::generate("td", now).unwrap())).unwrap();
        assert_eq!(
            decide(Some(&s), &other, id, now),
            CertDecision::Issue("signed by another CA")
        );
        let rotated = CaState {
            ca: MeshCa::from_pem(ca.ca.cert_pem(), ca.ca.key_pem()).unwrap(),
            bundle: bundle::build(ca.ca.cert_pem(), other.ca.cert_pem()),
        };
        assert_eq!(
            decide(Some(&s), &rotated, id, now),
            CertDecision::Issue("trust bundle changed")
        );
    }
}

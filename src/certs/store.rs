//! Certificates in Kubernetes: the CA Secret `weft-ca` (created once with
//! create-only semantics, so two replicas cannot race and a restart never
//! replaces it). Workload certificates are not stored at all: sidecars obtain
//! them by CSR from the identity endpoint (`crate::identity`).

use super::bundle;
use super::ca::{CertError, MeshCa};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use time::OffsetDateTime;

/// Name of the CA Secret in the system namespace.
pub const CA_SECRET: &str = "weft-ca";
/// Label on everything the operator creates.
pub const LABEL_MANAGED_BY: &str = "weft.dev/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "weft";
/// Label naming the identity (ServiceAccount) an object belongs to.
pub const LABEL_IDENTITY: &str = "weft.dev/identity";
/// Prefix of the identity Secrets earlier versions wrote (workload keys); the
/// operator deletes any it finds.
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

    #[test]
    fn the_ca_secret_round_trips_with_extra_roots_in_the_bundle() {
        let now = OffsetDateTime::now_utc();
        let a = MeshCa::generate("td", now).unwrap();
        let b = MeshCa::generate("td", now).unwrap();
        let mut s = ca_secret("weft-system", &a);
        let st = ca_from_secret(&s).unwrap();
        assert_eq!(st.ca.fingerprint(), a.fingerprint());
        assert_eq!(st.bundle, bundle::build(a.cert_pem(), ""));
        s.data.as_mut().unwrap().insert(
            "ca.crt".into(),
            ByteString(format!("{}{}", a.cert_pem(), b.cert_pem()).into_bytes()),
        );
        let rotated = ca_from_secret(&s).unwrap();
        assert_eq!(bundle::certificates(&rotated.bundle).len(), 2);
        assert_ne!(rotated.bundle_hash(), st.bundle_hash());
    }
}

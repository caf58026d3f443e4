//! Serving-certificate management: the webhook CA and serving certificate live in
//! the Secret `weft-injector-tls` (`weft-system`); every replica polls it, creates
//! or renews it when needed (optimistic concurrency: the first writer wins, the
//! others re-read), loads it into the [`CertStore`] and writes the CA bundle into
//! every webhook of the `weft-injector` MutatingWebhookConfiguration.
//!
//! Renewal: the serving certificate in its last third of life (or missing a name)
//! is re-issued by the same CA (no trust change). A CA in its last third is replaced;
//! the old CA stays in the bundle (`ca-previous.crt`) until it expires, so the API
//! server trusts both during the switch.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use time::{Duration, OffsetDateTime};

use super::certgen::{CertGenError, Pair, ServingIdentity, cert_info, issue_serving, new_ca};
use super::tls::{CertStore, TlsError};

const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CA_PREVIOUS: &str = "ca-previous.crt";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// Where the certificates live and what they must cover.
#[derive(Debug, Clone)]
pub struct CertManagerConfig {
    /// Namespace of the Secret (`weft-system`).
    pub namespace: String,
    /// Secret name (`weft-injector-tls`).
    pub secret_name: String,
    /// MutatingWebhookConfiguration to keep the CA bundle of (`weft-injector`).
    pub webhook_configuration: String,
    /// Names the serving certificate carries.
    pub identity: ServingIdentity,
    /// CA lifetime.
    pub ca_validity: Duration,
    /// Serving certificate lifetime.
    pub serving_validity: Duration,
}

impl CertManagerConfig {
    /// Defaults for `identity`: `weft-system/weft-injector-tls`, CA 5 years, serving 90 days.
    pub fn new(identity: ServingIdentity) -> Self {
        CertManagerConfig {
            namespace: super::names::SYSTEM_NAMESPACE.into(),
            secret_name: "weft-injector-tls".into(),
            webhook_configuration: super::configuration::CONFIGURATION_NAME.into(),
            identity,
            ca_validity: Duration::days(5 * 365),
            serving_validity: Duration::days(90),
        }
    }
}

/// Certificate management failed.
#[derive(Debug, thiserror::Error)]
pub enum CertMgrError {
    /// API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Generating a certificate failed.
    #[error(transparent)]
    Gen(#[from] CertGenError),
    /// The certificate could not be loaded into rustls.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Other replicas kept winning the write race.
    #[error("gave up after repeated write conflicts on the certificate Secret")]
    Contended,
}

/// The contents of the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The CA.
    pub ca: Pair,
    /// The serving certificate.
    pub serving: Pair,
    /// The replaced CA, kept trusted until it expires.
    pub previous_ca: Option<String>,
}

impl Bundle {
    /// PEM the API server must trust: the CA plus a still-valid previous CA.
    pub fn ca_bundle(&self, now: OffsetDateTime) -> String {
        let mut pem = self.ca.cert.clone();
        if let Some(prev) = &self.previous_ca
            && cert_info(prev).is_ok_and(|i| i.not_after > now)
        {
            pem.push_str(prev);
        }
        pem
    }

    fn from_secret(s: &Secret) -> Option<Bundle> {
        let data = s.data.as_ref()?;
        let get = |k: &str| data.get(k).and_then(|b| String::from_utf8(b.0.clone()).ok());
        Some(Bundle {
            ca: Pair {
                cert: get(CA_CRT)?,
                key: get(CA_KEY)?,
            },
            serving: Pair {
                cert: get(TLS_CRT)?,
                key: get(TLS_KEY)?,
            },
            previous_ca: get(CA_PREVIOUS),
        })
    }

    fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| m.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        put(CA_CRT, &self.ca.cert);
        put(CA_KEY, &self.ca.key);
        put(TLS_CRT, &self.serving.cert);
        put(TLS_KEY, &self.serving.key);
        if let Some(prev) = &self.previous_ca {
            put(CA_PREVIOUS, prev);
        }
        m
    }
}

/// What to do with the stored bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It is fine.
    Keep,
    /// Re-issue the serving certificate with the same CA.
    RenewServing,
    /// Create a new CA (and serving certificate).
    NewCa,
}

/// Decides what `existing` needs at `now` (pure).
pub fn decide(existing: Option<&Bundle>, id: &ServingIdentity, now: OffsetDateTime) -> Action {
    let Some(b) = existing else { return Action::NewCa };
    match (cert_info(&b.ca.cert), cert_info(&b.serving.cert)) {
        (Ok(ca), _) if ca.needs_renewal(now) => Action::NewCa,
        (Err(_), _) => Action::NewCa,
        (Ok(ca), Ok(s)) if s.not_after <= ca.not_after && !s.needs_renewal(now) && s.covers(id) => {
            Action::Keep
        }
        (Ok(_), _) => Action::RenewServing,
    }
}

/// Applies `action` to `existing` (pure apart from key generation).
pub fn renew(
    existing: Option<&Bundle>,
    action: Action,
    cfg: &CertManagerConfig,
    now: OffsetDateTime,
) -> Result<Option<Bundle>, CertGenError> {
    let (ca, previous_ca) = match (action, existing) {
        (Action::Keep, _) => return Ok(None),
        (Action::RenewServing, Some(b)) => (b.ca.clone(), b.previous_ca.clone()),
        (_, b) => (new_ca(now, cfg.ca_validity)?, b.map(|b| b.ca.cert.clone())),
    };
    let ca_left = cert_info(&ca.cert)?.not_after - now;
    let serving = issue_serving(&ca, &cfg.identity, now, cfg.serving_validity.min(ca_left))?;
    Ok(Some(Bundle {
        ca,
        serving,
        previous_ca,
    }))
}

/// One reconciliation: make sure a valid bundle is stored, served and trusted.
pub async fn ensure(client: &Client, cfg: &CertManagerConfig, store: &CertStore) -> Result<(), CertMgrError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = OffsetDateTime::now_utc();
    let mut bundle = None;
    for _attempt in 0..3 {
        let existing = secrets.get_opt(&cfg.secret_name).await?;
        let current = existing.as_ref().and_then(Bundle::from_secret);
        let action = decide(current.as_ref(), &cfg.identity, now);
        let Some(fresh) = renew(current.as_ref(), action, cfg, now)? else {
            bundle = current;
            break;
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(cfg.secret_name.clone()),
                namespace: Some(cfg.namespace.clone()),
                resource_version: existing
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/part-of".into(),
                    "weft".into(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(fresh.to_data()),
            ..Default::default()
        };
        let written = match existing {
            None => secrets.create(&PostParams::default(), &secret).await,
            Some(_) => {
                secrets
                    .replace(&cfg.secret_name, &PostParams::default(), &secret)
                    .await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %cfg.secret_name, ?action, "webhook certificate written");
                bundle = Some(fresh);
                break;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let bundle = bundle.ok_or(CertMgrError::Contended)?;
    sync_ca_bundle(client, cfg, &bundle.ca_bundle(now)).await?;
    if store.set(&bundle.serving.cert, &bundle.serving.key)? {
        tracing::info!("webhook serving certificate loaded");
    }
    Ok(())
}

/// Writes `pem` into every webhook's `clientConfig.caBundle` where it differs.
async fn sync_ca_bundle(client: &Client, cfg: &CertManagerConfig, pem: &str) -> Result<(), CertMgrError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(current) = api.get_opt(&cfg.webhook_configuration).await? else {
        tracing::warn!(name = %cfg.webhook_configuration, "MutatingWebhookConfiguration not found; caBundle not set");
        return Ok(());
    };
    let want = ByteString(pem.as_bytes().to_vec());
    let mut updated = current.clone();
    let mut changed = false;
    for w in updated.webhooks.iter_mut().flatten() {
        if w.client_config.ca_bundle.as_ref() != Some(&want) {
            w.client_config.ca_bundle = Some(want.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    // Replace carries the read resourceVersion: a concurrent edit makes this fail with
    // a conflict and the next reconcile retries on fresh data.
    api.replace(&cfg.webhook_configuration, &PostParams::default(), &updated)
        .await?;
    tracing::info!(name = %cfg.webhook_configuration, "caBundle updated");
    Ok(())
}

/// Reconciles every `interval` until `shutdown` completes; errors are logged and retried.
pub async fn run(
    client: Client,
    cfg: CertManagerConfig,
    store: CertStore,
    interval: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        if let Err(e) = ensure(&client, &cfg, &store).await {
            tracing::warn!(error = %e, "webhook certificate reconcile failed");
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CertManagerConfig {
        CertManagerConfig::new(ServingIdentity::for_service(
            "weft-injector",
            "weft-system",
            vec![],
        ))
    }

    #[test]
    fn lifecycle_decisions() {
        let c = cfg();
        let now = OffsetDateTime::now_utc();
        assert_eq!(decide(None, &c.identity, now), Action::NewCa);
        let b = renew(None, Action::NewCa, &c, now).unwrap().unwrap();
        assert_eq!(b.previous_ca, None);
        assert_eq!(decide(Some(&b), &c.identity, now), Action::Keep);
        assert_eq!(
            decide(Some(&b), &c.identity, now + Duration::days(61)),
            Action::RenewServing
        );
        let wider =
            ServingIdentity::for_service("weft-injector", "weft-system", vec!["127.0.0.1".parse().unwrap()]);
        assert_eq!(decide(Some(&b), &wider, now), Action::RenewServing);
        assert_eq!(
            decide(Some(&b), &c.identity, now + Duration::days(4 * 365)),
            Action::NewCa
        );

        let later = now + Duration::days(61);
        let r = renew(Some(&b), Action::RenewServing, &c, later).unwrap().unwrap();
        assert_eq!(r.ca, b.ca);
        assert_ne!(r.serving, b.serving);
        assert_eq!(decide(Some(&r), &c.identity, later), Action::Keep);

        let much_later = now + Duration::days(4 * 365);
        let n = renew(Some(&b), Action::NewCa, &c, much_later).unwrap().unwrap();
        assert_ne!(n.ca, b.ca);
        assert_eq!(n.previous_ca.as_deref(), Some(b.ca.cert.as_str()));
        assert!(
            n.ca_bundle(much_later).contains(&b.ca.cert),
            "old CA still trusted while valid"
        );
        assert!(!n.ca_bundle(now + Duration::days(6 * 365)).contains(&b.ca.cert));
    }

    #[test]
    fn secret_round_trip() {
        let b = renew(None, Action::NewCa, &cfg(), OffsetDateTime::now_utc())
            .unwrap()
            .unwrap();
        let s = Secret {
            data: Some(b.to_data()),
            ..Default::default()
        };
        assert_eq!(Bundle::from_secret(&s), Some(b));
        assert_eq!(Bundle::from_secret(&Secret::default()), None);
    }
}

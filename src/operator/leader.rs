//! Leader election through a `coordination.k8s.io/v1` Lease in the controller's
//! namespace. Every replica runs the elector; only the holder reconciles. A
//! holder renews every `renew_interval`; others take over once the lease has
//! not been renewed for `lease_duration`. Updates use the lease's
//! resourceVersion, so two candidates can never both win the same round.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace (the controller's).
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (and others retry).
    pub renew_interval: Duration,
}

impl LeaseConfig {
    /// Defaults: 15 s lease, 5 s renew.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            name: "weft-controller".into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }
}

/// Whether `lease` lets `me` hold it now (held by me, unheld or expired).
pub fn can_acquire(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(h) if h == me => true,
        Some(_) => {
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
                None => true,
                Some(MicroTime(t)) => *t + SignedDuration::from_secs(secs) < now,
            }
        }
    }
}

async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let secs = i32::try_from(cfg.lease_duration.as_secs().max(1)).unwrap_or(15);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if !can_acquire(lease.spec.as_ref(), &cfg.identity, now) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(secs);
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Runs the election until the receiver side is dropped; publishes leadership.
pub async fn run(client: Client, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renew: Option<tokio::time::Instant> = None;
    loop {
        let leading = match try_acquire(&api, &cfg).await {
            Ok(true) => {
                last_renew = Some(tokio::time::Instant::now());
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, lease = %cfg.name, "leader election API call failed");
                // Keep leading only while our last renewal is surely still valid.
                last_renew.is_some_and(|t| t.elapsed() < cfg.lease_duration / 2) && *tx.borrow()
            }
        };
        if leading != *tx.borrow() {
            tracing::info!(identity = %cfg.identity, leading, lease = %cfg.name, "leadership changed");
        }
        if tx.send(leading).is_err() {
            return;
        }
        tokio::time::sleep(cfg.renew_interval).await;
    }
}

/// Gives the lease up (best effort) so another replica takes over at once.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease
            .spec
            .as_mut()
            .filter(|s| s.holder_identity.as_deref() == Some(&cfg.identity))
    {
        spec.holder_identity = None;
        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_rules() {
        let now = Timestamp::from_second(1_000).unwrap();
        let spec = |holder: &str, renewed: i64| LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        };
        assert!(can_acquire(None, "a", now));
        assert!(can_acquire(Some(&spec("a", 999)), "a", now));
        assert!(!can_acquire(Some(&spec("b", 995)), "a", now));
        assert!(can_acquire(Some(&spec("b", 980)), "a", now));
        assert!(can_acquire(Some(&spec("", 999)), "a", now));
    }
}

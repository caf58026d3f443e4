//! Keeping the CSR-obtained identity fresh: the first certificate at startup
//! (`/ready` waits for it), then a new key and certificate at 2/3 of each
//! certificate's life, at once when the mounted trust bundle changes (a CA rollover
//! step), and on errors a retry with exponential backoff (1 s doubling to 60 s) while
//! the last good certificate stays in use. New connections use the new identity;
//! open ones keep theirs, so nothing is dropped.

use super::csr::CsrClient;
use super::identity::IdentityStore;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// First retry delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// When a certificate valid `[not_before, not_after]` (Unix seconds) is renewed,
/// counted from `now`: at 2/3 of its life.
pub fn renew_in(not_before: i64, not_after: i64, now: i64) -> Duration {
    let due = not_before + (not_after - not_before).max(0) * 2 / 3;
    Duration::from_secs(u64::try_from(due - now).unwrap_or(0))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn bundle_hash(client: &CsrClient) -> Option<u64> {
    let path = client.bundle_path.as_ref()?;
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Obtains and renews the identity until draining starts. `poll` is how often the
/// bundle file is checked for a change.
pub async fn keep_renewed(
    store: Arc<IdentityStore>,
    client: CsrClient,
    poll: Duration,
    mut drain: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut logged: Option<String> = None;
    loop {
        let seen = bundle_hash(&client);
        let wait = match client.obtain().await {
            Ok(got) => {
                tracing::info!(identity = %got.material.spiffe_id, not_after = got.not_after,
                    endpoint = %client.endpoint, "obtained workload certificate by CSR");
                let wait = renew_in(got.not_before, got.not_after, now_unix());
                store.install(got.material);
                backoff = BACKOFF_MIN;
                logged = None;
                wait
            }
            Err(error) => {
                store.record_failure();
                let msg = error.to_string();
                if logged.as_ref() != Some(&msg) {
                    tracing::warn!(%error, endpoint = %client.endpoint, retry_ms = backoff.as_millis() as u64,
                        "no certificate from the identity endpoint; keeping the last good one");
                    logged = Some(msg);
                }
                let wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let step = poll.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                () = crate::drain::Drain::started(&mut drain) => return,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if bundle_hash(&client) != seen {
                tracing::info!("trust bundle changed: renewing the workload certificate now");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        assert_eq!(
            renew_in(1000, 1000 + 24 * 3600, 1000),
            Duration::from_secs(16 * 3600)
        );
        assert_eq!(renew_in(1000, 1006, 1000), Duration::from_secs(4));
        assert_eq!(renew_in(1000, 1006, 2000), Duration::ZERO, "overdue: renew now");
    }
}

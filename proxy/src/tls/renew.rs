//! Keeping the CSR-obtained identity fresh: the first certificate at startup
//! (`/ready` waits for it), then a new key and certificate at 2/3 of each
//! certificate's life, at once when the mounted trust bundle changes (a CA rollover
//! step), and on errors a retry with exponential backoff (1 s doubling to 60 s; to 5 s
//! while no certificate is held yet) while the last good certificate stays in use. New connections use the new identity;
//! open ones keep theirs, so nothing is dropped.

use super::csr::CsrClient;
use super::identity::IdentityStore;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// First retry delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay while a certificate is held.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Longest retry delay before the first certificate (the pod is waiting to start).
pub const BACKOFF_MAX_STARTING: Duration = Duration::from_secs(5);

/// When a certificate valid `[not_before, not_after]` (Unix seconds) is renewed,
/// counted from `now`: at 2/3 of its life.
pub fn renew_in(not_before: i64, not_after: i64, now: i64) -> Duration {
    let due = not_before + (not_after - not_before).max(0) * 2 / 3;
    Duration::from_secs(u64::try_from(due - now).unwrap_or(0))
}

/// The delay before the next attempt after a failure, and the backoff after that: doubling,
/// capped at [`BACKOFF_MAX`] while a certificate is held, [`BACKOFF_MAX_STARTING`] before.
pub fn retry_after(backoff: Duration, holding: bool) -> (Duration, Duration) {
    let cap = if holding {
        BACKOFF_MAX
    } else {
        BACKOFF_MAX_STARTING
    };
    (backoff.min(cap), (backoff * 2).min(cap))
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
                let (wait, next) = retry_after(backoff, store.current().is_some());
                backoff = next;
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

    #[test]
    fn backoff_doubles_and_is_short_before_the_first_certificate() {
        let s = Duration::from_secs;
        assert_eq!(retry_after(s(1), true), (s(1), s(2)));
        assert_eq!(retry_after(s(32), true), (s(32), s(60)));
        assert_eq!(retry_after(s(60), true), (s(60), s(60)));
        assert_eq!(retry_after(s(4), false), (s(4), s(5)));
        assert_eq!(
            retry_after(s(60), false),
            (s(5), s(5)),
            "a starting pod retries every 5 s"
        );
    }
}

//! The retry budget: within a rolling window, retries may not exceed
//! `ratio × original requests + minPerSecond × window seconds`, so retries can
//! add at most a bounded fraction of extra load and never amplify an outage.

use super::window::Rolling;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use weft_proxy_config::RetryBudget;

/// Budget state of one destination service.
#[derive(Debug)]
pub struct Budget {
    ratio: f64,
    floor: f64,
    /// (original requests, retries).
    window: Mutex<Rolling>,
}

impl Budget {
    /// A budget from its policy.
    pub fn new(p: &RetryBudget) -> Self {
        let window = Duration::from_millis(p.window_ms);
        Self {
            ratio: p.ratio,
            floor: f64::from(p.min_per_second) * window.as_secs_f64(),
            window: Mutex::new(Rolling::new(window)),
        }
    }

    /// Counts an original request.
    pub fn request(&self, now: Instant) {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(now, 1, 0);
    }

    /// Takes one retry from the budget; `false` when exhausted.
    pub fn try_retry(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let (requests, retries) = w.sums(now);
        let allowed = self.ratio * requests as f64 + self.floor;
        if (retries as f64) < allowed {
            w.add(now, 0, 1);
            true
        } else {
            false
        }
    }

    /// `(requests, retries)` in the current window (admin view).
    pub fn usage(&self, now: Instant) -> (u64, u64) {
        self.window.lock().unwrap_or_else(|p| p.into_inner()).sums(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ratio_plus_floor_then_refills() {
        let b = Budget::new(&RetryBudget {
            ratio: 0.5,
            min_per_second: 1,
            window_ms: 2_000,
        });
        let t = Instant::now();
        for _ in 0..4 {
            b.request(t);
        }
        // 0.5 × 4 + 1 × 2 s = 4 retries.
        assert!((0..4).all(|_| b.try_retry(t)));
        assert!(!b.try_retry(t));
        assert_eq!(b.usage(t), (4, 4));
        // The window slides: everything expires, the floor is available again.
        let later = t + Duration::from_secs(3);
        assert!(b.try_retry(later));
        assert!(b.try_retry(later));
        assert!(!b.try_retry(later));
    }
}

//! A rolling time window of two counters, kept in ten buckets, used by the
//! retry budget (requests, retries) and the breaker (requests, failures).
//! Time is passed in, so tests drive it (tokio's paused clock in component tests).

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

const BUCKETS: u32 = 10;

/// Two counters summed over the last `window`.
#[derive(Debug)]
pub struct Rolling {
    window: Duration,
    bucket: Duration,
    /// (bucket start, a, b), oldest first.
    buckets: VecDeque<(Instant, u64, u64)>,
}

impl Rolling {
    /// An empty window of length `window` (> 0).
    pub fn new(window: Duration) -> Self {
        let window = window.max(Duration::from_millis(1));
        Self {
            window,
            bucket: (window / BUCKETS).max(Duration::from_micros(100)),
            buckets: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((start, ..)) = self.buckets.front() {
            if now.saturating_duration_since(*start) >= self.window {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// Adds to both counters at `now`.
    pub fn add(&mut self, now: Instant, a: u64, b: u64) {
        self.expire(now);
        match self.buckets.back_mut() {
            Some((start, x, y)) if now.saturating_duration_since(*start) < self.bucket => {
                *x += a;
                *y += b;
            }
            _ => self.buckets.push_back((now, a, b)),
        }
    }

    /// Sums of both counters over the window ending at `now`.
    pub fn sums(&mut self, now: Instant) -> (u64, u64) {
        self.expire(now);
        self.buckets
            .iter()
            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y))
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_expire_after_the_window() {
        let mut r = Rolling::new(Duration::from_secs(1));
        let t0 = Instant::now();
        r.add(t0, 1, 0);
        r.add(t0 + Duration::from_millis(50), 1, 1);
        r.add(t0 + Duration::from_millis(500), 1, 1);
        assert_eq!(r.sums(t0 + Duration::from_millis(900)), (3, 2));
        assert_eq!(r.sums(t0 + Duration::from_millis(1_000)), (1, 1));
        assert_eq!(r.sums(t0 + Duration::from_millis(1_600)), (0, 0));
    }
}

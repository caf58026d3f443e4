//! The service-level circuit breaker: closed → open when the failure rate over
//! the window reaches the threshold (with at least `minimumRequests`), open
//! rejects for `openDuration`, then half-open admits `halfOpenRequests` trials:
//! all succeed → closed, any fails → open again. Time is passed in.

use super::window::Rolling;
use crate::metrics::Series;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weft_proxy_config::BreakerPolicy;

/// Breaker state (the gauge value is the discriminant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl State {
    /// Label / JSON spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed(Rolling),
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// Metric handles of one breaker.
#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    pub state: Arc<Series>,
    /// Transitions into closed, open, half-open (indexed by [`State`]).
    pub transitions: [Arc<Series>; 3],
}

/// One breaker.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
    metrics: BreakerMetrics,
}

/// Whether an admitted request is a half-open trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Normal,
    Trial,
}

/// An admitted request. Report its outcome with [`Permit::record`]; a trial
/// dropped unreported (cancelled) gives its slot back.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    kind: Admission,
    done: bool,
}

impl Permit {
    /// The admission kind.
    pub fn kind(&self) -> Admission {
        self.kind
    }

    /// Reports the request's final outcome.
    pub fn record(mut self, failure: bool, now: Instant) {
        self.done = true;
        self.breaker.record(self.kind, failure, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.kind == Admission::Trial {
            let mut g = self.breaker.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Inner::HalfOpen { admitted, .. } = &mut *g {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy, metrics: BreakerMetrics) -> Self {
        metrics.state.set(State::Closed as i64);
        let window = Rolling::new(Duration::from_millis(policy.window_ms));
        Self {
            policy,
            inner: Mutex::new(Inner::Closed(window)),
            metrics,
        }
    }

    fn go(&self, g: &mut Inner, to: Inner) {
        let state = match to {
            Inner::Closed(_) => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        };
        *g = to;
        self.metrics.state.set(state as i64);
        self.metrics.transitions[state as usize].inc();
        tracing::info!(state = state.name(), "circuit breaker transition");
    }

    fn open(&self, g: &mut Inner, now: Instant) {
        let until = now + Duration::from_millis(self.policy.open_duration_ms);
        self.go(g, Inner::Open { until });
    }

    /// Admits a request at `now`, or `None` when open (or half-open and full).
    pub fn admit(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Inner::Open { until } = &*g
            && now >= *until
        {
            self.go(
                &mut g,
                Inner::HalfOpen {
                    admitted: 0,
                    succeeded: 0,
                },
            );
        }
        let kind = match &mut *g {
            Inner::Closed(_) => Admission::Normal,
            Inner::Open { .. } => return None,
            Inner::HalfOpen { admitted, .. } => {
                if *admitted >= self.policy.half_open_requests {
                    return None;
                }
                *admitted += 1;
                Admission::Trial
            }
        };
        Some(Permit {
            breaker: Arc::clone(self),
            kind,
            done: false,
        })
    }

    fn record(&self, kind: Admission, failure: bool, now: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match (&mut *g, kind) {
            (Inner::Closed(w), Admission::Normal) => {
                w.add(now, 1, u64::from(failure));
                let (total, failed) = w.sums(now);
                if total >= u64::from(self.policy.minimum_requests)
                    && failed * 100 >= u64::from(self.policy.failure_rate_threshold) * total
                {
                    self.open(&mut g, now);
                }
            }
            (Inner::HalfOpen { succeeded, .. }, Admission::Trial) => {
                if failure {
                    self.open(&mut g, now);
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.policy.half_open_requests {
                        let w = Rolling::new(Duration::from_millis(self.policy.window_ms));
                        self.go(&mut g, Inner::Closed(w));
                    }
                }
            }
            // Late results from another phase do not count.
            _ => {}
        }
    }

    /// Current state (admin view; an expired open period reads as half-open).
    pub fn state(&self, now: Instant) -> State {
        match &*self.inner.lock().unwrap_or_else(|p| p.into_inner()) {
            Inner::Closed(_) => State::Closed,
            Inner::Open { until } if now >= *until => State::HalfOpen,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (Arc<Breaker>, BreakerMetrics) {
        let m = BreakerMetrics {
            state: Arc::default(),
            transitions: Default::default(),
        };
        let p = BreakerPolicy {
            failure_rate_threshold: 50,
            window_ms: 10_000,
            minimum_requests: 4,
            open_duration_ms: 1_000,
            half_open_requests: 2,
        };
        (Arc::new(Breaker::new(p, m.clone())), m)
    }

    #[tokio::test(start_paused = true)]
    async fn full_timeline() {
        let (b, m) = breaker();
        let t = Instant::now();
        // 3 failures are below the minimum request count.
        for _ in 0..3 {
            b.admit(t).unwrap().record(true, t);
        }
        assert_eq!(b.state(t), State::Closed);
        b.admit(t).unwrap().record(false, t);
        // 3/4 failed ≥ 50 % with 4 requests → open.
        assert_eq!(b.state(t), State::Open);
        assert!(b.admit(t + Duration::from_millis(999)).is_none());
        // Half-open after the open duration: two trials, a third is refused.
        let t1 = t + Duration::from_millis(1_000);
        let (p1, p2) = (b.admit(t1).unwrap(), b.admit(t1).unwrap());
        assert_eq!(p1.kind(), Admission::Trial);
        assert!(b.admit(t1).is_none());
        // A cancelled trial frees its slot.
        drop(p2);
        let p2 = b.admit(t1).unwrap();
        p1.record(false, t1);
        assert_eq!(b.state(t1), State::HalfOpen);
        p2.record(false, t1);
        assert_eq!(b.state(t1), State::Closed);
        // And again: open, half-open, a failed trial re-opens.
        for _ in 0..4 {
            b.admit(t1).unwrap().record(true, t1);
        }
        assert_eq!(b.state(t1), State::Open);
        let t2 = t1 + Duration::from_millis(1_000);
        b.admit(t2).unwrap().record(true, t2);
        assert_eq!(b.state(t2), State::Open);
        assert_eq!(m.state.get(), State::Open as i64);
        let counts: Vec<i64> = m.transitions.iter().map(|s| s.get()).collect();
        assert_eq!(counts, vec![1, 3, 2]);
    }
}

//! Per-endpoint outlier detection: consecutive 5xx or gateway errors eject an
//! endpoint for `baseEjection × times ejected` (capped), as long as no more
//! than `maxEjectionPercent` of the service's endpoints are ejected. An
//! ejected endpoint returns when its period ends; its multiplier decays by one
//! for every `interval` it then stays in service. Time is passed in.

use super::retry::Attempt;
use crate::metrics::Series;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use weft_proxy_config::OutlierDetection;

/// Longest ejection (unless the base ejection time itself is longer).
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct EpState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    times: u32,
    until: Option<Instant>,
}

/// Outlier state of one service's endpoints.
#[derive(Debug)]
pub struct Outlier {
    policy: OutlierDetection,
    endpoints: Mutex<HashMap<SocketAddr, EpState>>,
    ejections: Arc<Series>,
    ejected: Arc<Series>,
}

/// One ejected endpoint (admin view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejected {
    pub addr: SocketAddr,
    pub remaining: Duration,
    pub times: u32,
}

impl Outlier {
    /// Detection per `policy`; `ejections` counts ejections, `ejected` gauges
    /// the endpoints currently out.
    pub fn new(policy: OutlierDetection, ejections: Arc<Series>, ejected: Arc<Series>) -> Self {
        Self {
            policy,
            endpoints: Mutex::new(HashMap::new()),
            ejections,
            ejected,
        }
    }

    /// Whether `addr` is ejected at `now`.
    pub fn is_ejected(&self, addr: SocketAddr, now: Instant) -> bool {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&addr).and_then(|s| s.until).is_some_and(|u| now < u)
    }

    /// Records an attempt's result on `addr`, out of `total` endpoints.
    /// Returns `true` when this ejected the endpoint.
    pub fn record(&self, addr: SocketAddr, attempt: Attempt, total: usize, now: Instant) -> bool {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let ejected_now = map.values().filter(|s| s.until.is_some_and(|u| now < u)).count();
        let st = map.entry(addr).or_default();
        if st.until.is_some_and(|u| now < u) {
            return false;
        }
        if !attempt.is_server_error() {
            st.consecutive_5xx = 0;
            st.consecutive_gateway = 0;
            return false;
        }
        st.consecutive_5xx += 1;
        if attempt.is_gateway_error() {
            st.consecutive_gateway += 1;
        }
        let tripped = self
            .policy
            .consecutive_5xx
            .is_some_and(|n| n > 0 && st.consecutive_5xx >= n)
            || self
                .policy
                .consecutive_gateway_errors
                .is_some_and(|n| n > 0 && st.consecutive_gateway >= n);
        let max = total * self.policy.max_ejection_percent as usize / 100;
        if !tripped || ejected_now >= max {
            return false;
        }
        // Decay the multiplier for the time spent back in service.
        if let Some(prev) = st.until {
            let healthy = now.saturating_duration_since(prev).as_millis() as u64;
            let decay = healthy / self.policy.interval_ms.max(1);
            st.times = st.times.saturating_sub(u32::try_from(decay).unwrap_or(u32::MAX));
        }
        st.times += 1;
        let base = Duration::from_millis(self.policy.base_ejection_ms);
        let period = (base * st.times).min(MAX_EJECTION.max(base));
        st.until = Some(now + period);
        st.consecutive_5xx = 0;
        st.consecutive_gateway = 0;
        self.ejections.inc();
        self.ejected.set(ejected_now as i64 + 1);
        tracing::info!(endpoint = %addr, times = st.times, ejection_ms = period.as_millis() as u64,
            "outlier detection ejected an endpoint");
        true
    }

    /// Currently ejected endpoints (also refreshes the gauge).
    pub fn ejected(&self, now: Instant) -> Vec<Ejected> {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Ejected> = map
            .iter()
            .filter_map(|(addr, s)| {
                let until = s.until.filter(|u| now < *u)?;
                Some(Ejected {
                    addr: *addr,
                    remaining: until - now,
                    times: s.times,
                })
            })
            .collect();
        out.sort_by_key(|e| e.addr);
        self.ejected.set(out.len() as i64);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier(pct: u32) -> Outlier {
        Outlier::new(
            OutlierDetection {
                consecutive_5xx: Some(3),
                consecutive_gateway_errors: Some(2),
                interval_ms: 1_000,
                base_ejection_ms: 10_000,
                max_ejection_percent: pct,
            },
            Arc::default(),
            Arc::default(),
        )
    }

    const E500: Attempt = Attempt::Response {
        status: 500,
        grpc: None,
    };
    const OK: Attempt = Attempt::Response {
        status: 200,
        grpc: None,
    };

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_eject_for_growing_periods() {
        let o = outlier(50);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let t = Instant::now();
        assert!(!o.record(a, E500, 2, t));
        assert!(!o.record(a, E500, 2, t));
        assert!(!o.record(a, OK, 2, t), "success resets the count");
        assert!(!o.record(a, E500, 2, t));
        assert!(!o.record(a, E500, 2, t));
        assert!(o.record(a, E500, 2, t));
        assert!(o.is_ejected(a, t + Duration::from_millis(9_999)));
        let back = t + Duration::from_secs(10);
        assert!(!o.is_ejected(a, back));
        // Gateway errors trip after two; the second ejection lasts 2 × base.
        assert!(!o.record(a, Attempt::ConnectFailure, 2, back));
        assert!(o.record(a, Attempt::Reset, 2, back));
        assert_eq!(o.ejected(back)[0].remaining, Duration::from_secs(20));
        assert_eq!(o.ejected(back)[0].times, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_caps_ejections() {
        let o = outlier(50);
        let t = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) =
            ("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap());
        for _ in 0..2 {
            o.record(a, Attempt::Timeout, 2, t);
            o.record(b, Attempt::Timeout, 2, t);
        }
        assert!(o.is_ejected(a, t));
        assert!(!o.is_ejected(b, t), "only 50 % of 2 endpoints may be out");
        // With 10 % of 2 endpoints nothing is ever ejected.
        let none = outlier(10);
        for _ in 0..5 {
            assert!(!none.record(a, E500, 2, t));
        }
    }
}

//! The admin view of resilience state (`GET /breakers` on the admin port):
//! per service, the breaker state, ejected endpoints, pool usage and retry
//! budget usage, as JSON.

use super::Resilience;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// JSON object keyed by service (`namespace/name`).
pub fn render(r: &Resilience, now: Instant) -> Value {
    let mut out = Map::new();
    for s in r.all() {
        let mut o = Map::new();
        if let Some(b) = &s.breaker {
            o.insert("breaker".into(), json!(b.state(now).name()));
        }
        if let Some(ol) = &s.outlier {
            let ejected: Vec<Value> = ol
                .ejected(now)
                .into_iter()
                .map(|e| {
                    json!({"endpoint": e.addr.to_string(), "remainingMs": e.remaining.as_millis() as u64,
                           "timesEjected": e.times})
                })
                .collect();
            o.insert("ejected".into(), Value::Array(ejected));
        }
        if let Some(l) = &s.limits {
            let (active, pending, connections) = l.usage();
            o.insert(
                "pool".into(),
                json!({"activeRequests": active, "pendingRequests": pending, "connections": connections}),
            );
        }
        if let Some(b) = &s.budget {
            let (requests, retries) = b.usage(now);
            o.insert(
                "retryBudget".into(),
                json!({"requests": requests, "retries": retries}),
            );
        }
        out.insert(s.key.to_string(), Value::Object(o));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Arc;
    use weft_proxy_config::{BreakerPolicy, CircuitBreakerPolicy, ConnectionPool};

    #[tokio::test]
    async fn renders_breaker_and_pool() {
        let r = Resilience::new(Arc::new(Metrics::default()));
        let cb = CircuitBreakerPolicy {
            source: "t/cb".into(),
            connection_pool: Some(ConnectionPool {
                max_requests: Some(3),
                ..Default::default()
            }),
            outlier_detection: None,
            breaker: Some(BreakerPolicy {
                failure_rate_threshold: 50,
                window_ms: 1000,
                minimum_requests: 1,
                open_duration_ms: 1000,
                half_open_requests: 1,
            }),
            fallback: None,
        };
        let _s = r.get("t/a", None, Some(&cb)).unwrap();
        assert!(r.get("t/b", None, None).is_none());
        let v = render(&r, Instant::now());
        assert_eq!(v["t/a"]["breaker"], "closed");
        assert_eq!(v["t/a"]["pool"]["activeRequests"], 0);
        // Unchanged policies reuse the state; sweeping keeps referenced ones.
        assert!(Arc::ptr_eq(&_s, &r.get("t/a", None, Some(&cb)).unwrap()));
        r.sweep();
        assert_eq!(r.all().len(), 1);
    }
}

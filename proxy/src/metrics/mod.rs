//! The proxy's Prometheus metrics, named and labelled like linkerd2-proxy's so
//! Flagger's `linkerd` observer works: `request_total`, `response_total`,
//! `response_latency_ms`, `tcp_*`, plus config reload counters. Handles are
//! created when a routing table is built (never per request) and kept for the
//! life of the process so counters stay monotonic across reloads; label sets
//! therefore stay bounded by the config.

pub mod family;
pub mod http;

pub use family::{Families, Kind, Series};
pub use http::{Class, HttpMetrics, TcpMetrics};

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Name, type, help and reader of one TCP metric family.
type TcpFamily = (&'static str, &'static str, &'static str, fn(&TcpMetrics) -> u64);

/// Registry and renderer.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<String, Arc<HttpMetrics>>>,
    tcp: Mutex<BTreeMap<String, Arc<TcpMetrics>>>,
    reload_ok: AtomicU64,
    reload_failed: AtomicU64,
    /// Policy-layer families (retries, breakers, authorization, identity).
    pub families: Families,
}

/// Escapes a label value for the text exposition format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders `k="v"` pairs (values escaped).
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    s
}

impl Metrics {
    /// The HTTP handle for a rendered label set (created on first use).
    pub fn http(&self, labels: String) -> Arc<HttpMetrics> {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(labels.clone())
                .or_insert_with(|| Arc::new(HttpMetrics::new(labels))),
        )
    }

    /// The TCP handle for a rendered label set (created on first use).
    pub fn tcp(&self, labels: String) -> Arc<TcpMetrics> {
        let mut map = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(labels.clone())
                .or_insert_with(|| Arc::new(TcpMetrics::new(labels))),
        )
    }

    /// Counts a config update that was applied.
    pub fn reload_ok(&self) {
        self.reload_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a config update that was rejected.
    pub fn reload_failed(&self) {
        self.reload_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// `(applied, rejected)` reload counts.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reload_ok.load(Ordering::Relaxed),
            self.reload_failed.load(Ordering::Relaxed),
        )
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let http: Vec<Arc<HttpMetrics>> = self
            .http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let tcp: Vec<Arc<TcpMetrics>> = self
            .tcp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();

        out.push_str("# HELP request_total Total count of HTTP requests.\n# TYPE request_total counter\n");
        for m in &http {
            let _ = writeln!(out, "request_total{{{}}} {}", m.labels, m.requests());
        }
        out.push_str("# HELP response_total Total count of HTTP responses.\n# TYPE response_total counter\n");
        for m in &http {
            for (status, failure, n) in m.responses() {
                let class = if failure { "failure" } else { "success" };
                let _ = writeln!(
                    out,
                    "response_total{{{},classification=\"{class}\",status_code=\"{status}\"}} {n}",
                    m.labels
                );
            }
        }
        out.push_str(
            "# HELP response_latency_ms Elapsed times between a request's headers being received and the \
             first frame of the response.\n# TYPE response_latency_ms histogram\n",
        );
        for m in &http {
            let (buckets, sum, count) = m.histogram();
            for (i, n) in buckets.iter().enumerate() {
                let le = http::LATENCY_BOUNDS_MS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(out, "response_latency_ms_bucket{{{},le=\"{le}\"}} {n}", m.labels);
            }
            let _ = writeln!(out, "response_latency_ms_sum{{{}}} {sum}", m.labels);
            let _ = writeln!(out, "response_latency_ms_count{{{}}} {count}", m.labels);
        }
        let tcp_families: [TcpFamily; 5] = [
            (
                "tcp_open_total",
                "counter",
                "Total count of opened connections.",
                |t| t.open.load(Ordering::Relaxed),
            ),
            (
                "tcp_close_total",
                "counter",
                "Total count of closed connections.",
                |t| t.close.load(Ordering::Relaxed),
            ),
            (
                "tcp_open_connections",
                "gauge",
                "Number of currently-open connections.",
                |t| {
                    t.open
                        .load(Ordering::Relaxed)
                        .saturating_sub(t.close.load(Ordering::Relaxed))
                },
            ),
            (
                "tcp_read_bytes_total",
                "counter",
                "Total bytes read from peers (closed connections).",
                |t| t.read_bytes.load(Ordering::Relaxed),
            ),
            (
                "tcp_write_bytes_total",
                "counter",
                "Total bytes written to peers (closed connections).",
                |t| t.write_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in tcp_families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for t in &tcp {
                let _ = writeln!(out, "{name}{{{}}} {}", t.labels, get(t));
            }
        }
        let (ok, failed) = self.reloads();
        let _ = writeln!(
            out,
            "# HELP config_reload_total Config updates seen, by result.\n# TYPE config_reload_total counter\n\
             config_reload_total{{result=\"success\"}} {ok}\nconfig_reload_total{{result=\"failure\"}} {failed}"
        );
        self.families.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_linkerd_families_and_shared_handles() {
        let m = Metrics::default();
        let l = labels(&[("direction", "inbound"), ("target_port", "8080")]);
        let h = m.http(l.clone());
        assert!(Arc::ptr_eq(&h, &m.http(l)));
        h.request();
        h.response(200, Class::Success);
        h.response(503, Class::Failure);
        h.latency(std::time::Duration::from_millis(3));
        m.tcp(labels(&[("direction", "outbound")])).opened();
        m.reload_failed();
        let text = m.render();
        assert!(text.contains("request_total{direction=\"inbound\",target_port=\"8080\"} 1"));
        assert!(text.contains(
            "response_total{direction=\"inbound\",target_port=\"8080\",classification=\"failure\",status_code=\"503\"} 1"
        ));
        assert!(
            text.contains(
                "response_latency_ms_bucket{direction=\"inbound\",target_port=\"8080\",le=\"3\"} 1"
            )
        );
        assert!(text.contains(
            "response_latency_ms_bucket{direction=\"inbound\",target_port=\"8080\",le=\"+Inf\"} 1"
        ));
        assert!(text.contains("tcp_open_connections{direction=\"outbound\"} 1"));
        assert!(text.contains("config_reload_total{result=\"failure\"} 1"));
        assert_eq!(labels(&[("a", "x\"y")]), "a=\"x\\\"y\"");
    }
}

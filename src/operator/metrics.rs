//! Operator metrics (Prometheus text format on the controller's `/metrics`):
//! reconcile count/duration/errors, writes per kind, rendered config bytes and
//! leadership. Label values are fixed enums, so cardinality is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// `result` label: `success` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Outcome.
    pub result: &'static str,
}

/// `kind` label of writes: `configmap`, `secret`, `role`, `rolebinding`, `status`, `event`, `delete`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Object kind written.
    pub kind: &'static str,
}

/// The operator's metrics (cheap to clone).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Reconciles by result.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconcile duration, seconds.
    pub reconcile_duration: Histogram,
    /// Writes by kind.
    pub writes: Family<KindLabel, Counter>,
    /// Size of the largest rendered config, bytes.
    pub config_bytes_max: Gauge,
    /// Sum of all rendered config sizes, bytes.
    pub config_bytes_total: Gauge,
    /// Identities with a config.
    pub identities: Gauge,
    /// Shards of the shared service catalog (0 unless `permissive`).
    pub catalog_shards: Gauge,
    /// Sum of the catalog shard sizes, bytes.
    pub catalog_bytes: Gauge,
    /// 1 while this replica is the leader.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("weft_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        r.register(
            "reconciles",
            "Global reconciles (render + apply) by result",
            reconciles.clone(),
        );
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let reconcile_duration = Histogram::new(buckets);
        r.register(
            "reconcile_duration_seconds",
            "Duration of a global reconcile",
            reconcile_duration.clone(),
        );
        let writes = Family::<KindLabel, Counter>::default();
        r.register("writes", "API writes by object kind", writes.clone());
        let config_bytes_max = Gauge::default();
        r.register(
            "rendered_config_bytes_max",
            "Largest rendered proxy config",
            config_bytes_max.clone(),
        );
        let config_bytes_total = Gauge::default();
        r.register(
            "rendered_config_bytes_total",
            "Sum of rendered proxy config sizes",
            config_bytes_total.clone(),
        );
        let identities = Gauge::default();
        r.register(
            "identities",
            "Workload identities with a rendered config",
            identities.clone(),
        );
        let catalog_shards = Gauge::default();
        r.register(
            "catalog_shards",
            "Shards of the shared service catalog (permissive access mode)",
            catalog_shards.clone(),
        );
        let catalog_bytes = Gauge::default();
        r.register(
            "catalog_bytes",
            "Sum of the service catalog shard sizes",
            catalog_bytes.clone(),
        );
        let leader = Gauge::default();
        r.register(
            "leader",
            "1 if this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry: Arc::new(r),
            reconciles,
            reconcile_duration,
            writes,
            config_bytes_max,
            config_bytes_total,
            identities,
            catalog_shards,
            catalog_bytes,
            leader,
        }
    }

    /// Counts one write.
    pub fn wrote(&self, kind: &'static str) {
        self.writes.get_or_create(&KindLabel { kind }).inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_bounded_names() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&ResultLabel { result: "success" })
            .inc();
        m.wrote("configmap");
        m.config_bytes_max.set(42);
        let text = m.encode();
        assert!(
            text.contains("weft_operator_reconciles_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weft_operator_writes_total{kind=\"configmap\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weft_operator_rendered_config_bytes_max 42"),
            "{text}"
        );
        assert!(
            text.contains("weft_operator_reconcile_duration_seconds_bucket"),
            "{text}"
        );
    }
}

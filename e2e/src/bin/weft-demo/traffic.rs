//! The demo's traffic-policy steps: sticky sessions from a LoadBalancing, a FaultInjection
//! on details, and a TrafficMirror copying details' requests to ratings.

use super::*;
use std::collections::BTreeMap;
use weft_e2e::mesh::traffic::{metric_sum, sidecar_metrics};
use weft_e2e::mesh::traffic_policy;

const DETAILS: &str = "http://details.bookinfo:9080/";

/// Replies per answering pod.
fn by_pod(r: &[Reply]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for reply in r {
        let key = reply
            .pod
            .clone()
            .unwrap_or_else(|| format!("status-{}", reply.status));
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

impl Demo {
    /// LoadBalancing: a cookie the sidecar generates keeps one browser on one reviews pod.
    pub(super) async fn sticky_sessions(&mut self) -> anyhow::Result<()> {
        let lb = traffic_policy::load_balancing(
            NS,
            "reviews",
            "reviews",
            "consistentHash",
            Some(serde_json::json!({"cookie": {"name": "bookinfo-session", "ttl": "30m"}})),
        );
        let took = self.change("productpage", vec![lb]).await?;
        let dir = tempfile::tempdir()?;
        let jar = dir.path().join("cookies.txt");
        let mut b = Batch::get(&self.netns, REVIEWS, 30);
        b.cookie_jar = jar.to_str();
        let with = by_pod(&b.run().await?);
        let without = by_pod(&self.requests(REVIEWS, 30, &[]).await?);
        let cookie = std::fs::read_to_string(&jar).unwrap_or_default();
        self.record(
            "LoadBalancing sticky cookie on reviews",
            format!(
                "one browser (cookie jar), 30 requests: {} | 30 new sessions: {} pods (in force after {:.2}s)",
                format_tally(&with),
                without.len(),
                took.as_secs_f64()
            ),
            with.len() == 1 && without.len() >= 2 && cookie.contains("bookinfo-session"),
        );
        Ok(())
    }

    /// FaultInjection: 10 % of productpage's calls to details aborted, 10 % delayed 300 ms.
    pub(super) async fn faults(&mut self) -> anyhow::Result<()> {
        let fault = traffic_policy::fault_injection(
            NS,
            "details",
            "details",
            Some((503, 10.0)),
            Some(("300ms", 10.0)),
        );
        let took = self.change("productpage", vec![fault]).await?;
        let r = self.requests(DETAILS, 200, &[]).await?;
        let aborted = r.iter().filter(|r| r.status == 503).count();
        let delayed = r
            .iter()
            .filter(|r| r.took.is_some_and(|t| t >= Duration::from_millis(300)))
            .count();
        self.record(
            "FaultInjection on details (10% 503, 10% +300ms)",
            format!(
                "200 requests: {aborted} aborted by the sidecar, {delayed} delayed (in force after {:.2}s)",
                took.as_secs_f64()
            ),
            (6..=34).contains(&aborted) && (4..=40).contains(&delayed),
        );
        workload::delete(
            &self.client,
            "policy.weft.dev/v1alpha1",
            "FaultInjection",
            NS,
            "details",
        )
        .await?;
        Ok(())
    }

    /// TrafficMirror: every call to details is copied to ratings, fire-and-forget.
    pub(super) async fn mirror(&mut self) -> anyhow::Result<()> {
        let rules: [policy::Rule<'_>; 1] = [("TCPRoute", "all-ports", &[])];
        let objects = vec![
            policy::traffic_target(NS, "ratings-shadow", "ratings", &["productpage"], &rules),
            traffic_policy::traffic_mirror(NS, "details", "details", "ratings", 100.0),
        ];
        let took = self.change("productpage", objects).await?;
        let count = |text: &str| metric_sum(text, "weft_mirror_requests_total", &["dst_service=\"ratings\""]);
        let before = count(&sidecar_metrics(&self.netns).await?);
        let r = self.requests(DETAILS, 50, &[]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let copies = count(&sidecar_metrics(&self.netns).await?) - before;
        self.record(
            "TrafficMirror details -> ratings (100%)",
            format!(
                "50 requests: {:.0}% OK for productpage, {copies} copies sent to ratings with \
                 Host details.bookinfo-shadow (answers discarded) (in force after {:.2}s)",
                success_ratio(&r) * 100.0,
                took.as_secs_f64()
            ),
            success_ratio(&r) == 1.0 && copies as usize == r.len(),
        );
        Ok(())
    }
}

//! The demo's traffic checks: batches of requests through the mesh and what they show.

use super::*;

impl Demo {
    pub(super) fn record(&mut self, step: &str, measured: String, ok: bool) {
        say(&format!("{} {measured}", if ok { "✔" } else { "✘" }));
        self.summary.push(Outcome {
            step: step.into(),
            measured,
            ok,
        });
    }

    pub(super) async fn apply(&self, object: serde_json::Value) -> anyhow::Result<()> {
        let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
        workload::apply_value(&self.client, object)
            .await
            .with_context(|| format!("applying {what}"))
    }

    /// Applies `objects` and waits until the sidecars of every pod of `apps` serve the
    /// config the operator rendered from them. Returns how long that took.
    pub(super) async fn change(
        &self,
        apps: &str,
        objects: Vec<serde_json::Value>,
    ) -> anyhow::Result<Duration> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let lp = ListParams::default().labels(&format!("app in ({apps})"));
        let pods: Vec<Pod> = pods
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let mut before = Vec::new();
        for p in &pods {
            before.push(sync::current_hash(&self.client, p).await?);
        }
        let began = Instant::now();
        for o in objects {
            self.apply(o).await?;
        }
        for (p, h) in pods.iter().zip(&before) {
            sync::wait_in_force(&self.client, &self.cri, p, h, Duration::from_secs(30)).await?;
        }
        Ok(began.elapsed())
    }

    /// Sends batches of 5 until `done` holds for one (the sidecars have the config; this
    /// covers connections and endpoints catching up), at most 15 s. Returns the time taken.
    pub(super) async fn until(&self, url: &str, done: impl Fn(&[Reply]) -> bool) -> anyhow::Result<Duration> {
        let began = Instant::now();
        loop {
            let r = self.requests(url, 5, &[]).await?;
            if done(&r) {
                return Ok(began.elapsed());
            }
            if began.elapsed() > Duration::from_secs(15) {
                bail!(
                    "traffic did not follow within 15 s (last: {})",
                    format_tally(&tally(&r))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) async fn requests(&self, url: &str, n: usize, headers: &[&str]) -> anyhow::Result<Vec<Reply>> {
        let mut b = Batch::get(&self.netns, url, n);
        b.headers = headers;
        Ok(b.run().await?)
    }

    pub(super) async fn split(&mut self, v1: u32, v2: u32) -> anyhow::Result<()> {
        let split = workload::traffic_split(
            NS,
            "reviews",
            "reviews",
            &[("reviews-v1", v1), ("reviews-v2", v2)],
        );
        let took = self.change("productpage", vec![split]).await?;
        let r = self.requests(REVIEWS, 100, &[]).await?;
        let t = tally(&r);
        let share = t.get("v2").copied().unwrap_or(0);
        let ok =
            (share as i64 - i64::from(v2)).abs() <= 15 && success_ratio(&r) == 1.0 && !t.contains_key("v3");
        self.record(
            &format!("TrafficSplit reviews v1/v2 {v1}/{v2}"),
            format!(
                "100 requests: {} (in force after {:.2}s)",
                format_tally(&t),
                took.as_secs_f64()
            ),
            ok,
        );
        Ok(())
    }
}

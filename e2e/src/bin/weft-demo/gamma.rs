//! The demo's Gateway API step: a canary driven by an `HTTPRoute` whose parent is the
//! reviews Service (GAMMA), applied while step 3's TrafficSplit is still in place, so it
//! also shows that the route takes precedence over the split on the same Service port.

use super::*;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};

/// The route's name.
const ROUTE: &str = "reviews-canary";

/// An HTTPRoute on Service reviews port 9080 splitting between reviews-v1 and reviews-v3.
fn canary_route(v1: u32, v3: u32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
            "rules": [{"backendRefs": [
                {"name": "reviews-v1", "port": 9080, "weight": v1},
                {"name": "reviews-v3", "port": 9080, "weight": v3}
            ]}]
        }
    })
}

fn routes(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk(&gvk))
}

/// `Accepted` and `ResolvedRefs` of weft's parent status entry, e.g. `Accepted=True`.
fn weft_conditions(route: &DynamicObject) -> Vec<String> {
    let parents = route.data["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    parents
        .iter()
        .filter(|p| p["controllerName"] == "weft.dev/mesh")
        .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            format!(
                "{}={}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

impl Demo {
    /// The HTTPRoute canary: v1/v3 80/20, then 0/100; then the route is removed (the
    /// TrafficSplit applies again).
    pub(super) async fn http_route_canary(&mut self) -> anyhow::Result<()> {
        for (v1, v3) in [(80, 20), (0, 100)] {
            let took = self.change("productpage", vec![canary_route(v1, v3)]).await?;
            let r = self.requests(REVIEWS, 100, &[]).await?;
            let t = tally(&r);
            let share = t.get("v3").copied().unwrap_or(0);
            let ok = (share as i64 - i64::from(v3)).abs() <= 15
                && success_ratio(&r) == 1.0
                && !t.contains_key("v2");
            self.record(
                &format!("HTTPRoute reviews v1/v3 {v1}/{v3}"),
                format!(
                    "100 requests: {} (in force after {:.2}s; the TrafficSplit's v2 gets none)",
                    format_tally(&t),
                    took.as_secs_f64()
                ),
                ok,
            );
        }
        let api = routes(&self.client);
        let status = wait_for(
            "the HTTPRoute's status from weft",
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move {
                    let route = api.get(ROUTE).await.map_err(|e| e.to_string())?;
                    let c = weft_conditions(&route);
                    Ok((c.len() >= 2).then_some(c))
                }
            },
        )
        .await?;
        say(&format!(
            "HTTPRoute {NS}/{ROUTE} status (controllerName weft.dev/mesh): {}",
            status.join(", ")
        ));
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let lp = ListParams::default().labels("app=productpage");
        let before = match pods.list(&lp).await?.items.first() {
            Some(p) => Some((p.clone(), sync::current_hash(&self.client, p).await?)),
            None => None,
        };
        api.delete(ROUTE, &DeleteParams::default()).await?;
        if let Some((p, h)) = before {
            sync::wait_in_force(&self.client, &self.cri, &p, &h, Duration::from_secs(30)).await?;
        }
        let t = tally(&self.requests(REVIEWS, 50, &[]).await?);
        self.record(
            "HTTPRoute removed: the TrafficSplit applies again",
            format!("50 requests: {}", format_tally(&t)),
            t.get("v2") == Some(&50),
        );
        Ok(())
    }
}

//! The demo's ingress step: a `Gateway` of class `weft` in the bookinfo namespace and an
//! `HTTPRoute` to productpage, reached from the host (outside the mesh) at the Gateway's
//! address. The mesh is in `accessMode: smi` by then, so the gateway's ServiceAccount
//! (`weft-gateway-bookinfo`) needs a TrafficTarget to productpage like any other caller,
//! and the gateway reaches productpage over mTLS.

use super::*;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};

/// The Gateway's name (its ServiceAccount is `weft-gateway-<name>`).
const GATEWAY: &str = "bookinfo";

fn objects() -> Vec<serde_json::Value> {
    let rules: [policy::Rule<'_>; 1] = [("TCPRoute", "all-ports", &[])];
    vec![
        serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": NS},
            "spec": {"gatewayClassName": "weft",
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
        }),
        serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "productpage", "namespace": NS},
            "spec": {
                "parentRefs": [{"name": GATEWAY}],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/productpage"}}],
                    "backendRefs": [{"name": "productpage", "port": 9080}]
                }]
            }
        }),
        policy::traffic_target(
            NS,
            "productpage-from-gateway",
            "productpage",
            &[&format!("weft-gateway-{GATEWAY}")],
            &rules,
        ),
    ]
}

/// `(address, Programmed)` of the Gateway's status.
fn address(gw: &DynamicObject) -> Option<String> {
    let status = &gw.data["status"];
    let programmed = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Programmed" && c["status"] == "True");
    programmed
        .then(|| status["addresses"][0]["value"].as_str().map(str::to_string))
        .flatten()
}

impl Demo {
    /// Applies the Gateway, route and TrafficTarget, waits for the Gateway to be
    /// Programmed, and sends requests from the host to `/productpage` through it.
    pub(super) async fn ingress_gateway(&mut self) -> anyhow::Result<()> {
        let began = Instant::now();
        for o in objects() {
            workload::apply_value(&self.client, o).await?;
        }
        let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), NS, &ApiResource::from_gvk(&gvk));
        let addr = wait_for(
            "Gateway bookinfo to be Programmed",
            Duration::from_secs(180),
            || {
                let api = api.clone();
                async move { Ok(address(&api.get(GATEWAY).await.map_err(|e| e.to_string())?)) }
            },
        )
        .await?;
        let programmed = began.elapsed();
        say(&format!(
            "Gateway bookinfo Programmed at {addr} after {:.1}s (Deployment + Service weft-gateway-bookinfo)",
            programmed.as_secs_f64()
        ));
        let url = format!("http://{addr}/productpage");
        let first = wait_for("productpage through the gateway", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let r = Batch::from_host(&url, 1).run().await.map_err(|e| e.to_string())?;
                Ok((r[0].status == 200).then_some(()))
            }
        })
        .await;
        let r = Batch::from_host(&url, 50).run().await?;
        let t = tally(&r);
        let pages = r
            .iter()
            .filter(|r| r.status == 200 && r.service.as_deref() == Some("productpage"))
            .count();
        self.record(
            "Ingress: host -> Gateway -> productpage",
            format!(
                "50 requests from the host to {url}: {} ({pages} answered by productpage; first after {:.1}s)",
                format_tally(&t),
                began.elapsed().as_secs_f64()
            ),
            first.is_ok() && pages == 50,
        );
        let none = Batch::from_host(&format!("http://{addr}/nothing-here"), 5)
            .run()
            .await?;
        self.record(
            "Ingress: unrouted path",
            format!("5 requests to /nothing-here: {}", format_tally(&tally(&none))),
            none.iter().all(|r| r.status == 404),
        );
        Ok(())
    }
}

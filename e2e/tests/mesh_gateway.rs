//! weft's ingress gateway end to end on the real control plane and node (see `mesh.rs` for
//! the setup), in `accessMode: smi` with strict mTLS: a `Gateway` of class `weft` with an
//! HTTP and an HTTPS listener, an `HTTPRoute` to a meshed demo app, and requests from the
//! host — outside the mesh — through the gateway's Service address. Checks that the
//! operator runs the gateway (Deployment, Service, `status.addresses`, `Programmed`), that
//! SMI authorization applies to the gateway like to any caller (denied until a
//! TrafficTarget names the gateway's ServiceAccount), that the hop from the gateway to the
//! backend is mTLS on the wire (a packet capture on the backend's veth: TLS records, no
//! plaintext HTTP), HTTPS termination by SNI with the listener's certificate, hostname
//! routing, header filters, and the gateway's own metrics. The upstream suite
//! (`make conformance`, GATEWAY-HTTP) covers the Gateway API semantics in breadth.
//!
//! Needs root (skips otherwise, saying so) and the images (`make e2e` builds them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::*;
use weft_e2e::mesh::traffic::{Batch, Reply, metric_sum, sidecar_metrics};
use weft_e2e::mesh::workload::{self, DemoApp, HTTP_PORT};
use weft_e2e::mesh::{capture, policy, wait_for};

const HOST: &str = "shop.example.test";

fn gateway(ns: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "gatewayClassName": "weft",
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": HOST,
                 "tls": {"certificateRefs": [{"kind": "Secret", "name": "shop-cert"}]}}
            ]
        }
    })
}

fn route(ns: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "web"}],
            "hostnames": [HOST],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [{"type": "RequestHeaderModifier",
                             "requestHeaderModifier": {"set": [{"name": "x-via", "value": "weft-gateway"}]}}],
                "backendRefs": [{"name": "server", "port": HTTP_PORT}]
            }]
        }
    })
}

fn tls_secret(ns: &str) -> (Value, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![HOST.to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "shop-cert", "namespace": ns},
        "data": {"tls.crt": b64(&cert.pem()), "tls.key": b64(&key.serialize_pem())}
    });
    (secret, cert.pem())
}

/// Waits until Gateway `web` is Programmed with an address, and returns the address.
async fn programmed_address(client: &kube::Client, ns: &str) -> String {
    let ar = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "Gateway".into(),
        plural: "gateways".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    wait_for(
        "Gateway web Programmed with an address",
        Duration::from_secs(180),
        || {
            let api = api.clone();
            async move {
                let gw = api.get("web").await.map_err(|e| e.to_string())?;
                let status = gw.data.get("status").cloned().unwrap_or(Value::Null);
                let programmed = status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Programmed" && c["status"] == "True");
                let addr = status["addresses"][0]["value"].as_str().map(str::to_string);
                Ok(programmed.then_some(addr).flatten())
            }
        },
    )
    .await
    .unwrap()
}

fn ok_from_server(r: &[Reply]) -> bool {
    r.iter()
        .all(|r| r.status == 200 && r.service.as_deref() == Some("server"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_traffic_reaches_a_meshed_backend_through_the_gateway_over_mtls() {
    let Some((_serial, w)) = World::begin(
        "outside_traffic_reaches_a_meshed_backend_through_the_gateway_over_mtls",
        "mesh-gw",
        "smi",
        "strict",
    )
    .await
    else {
        return;
    };
    let ns = w.ns().to_string();
    w.deploy(&DemoApp::new("server", "server", "v1")).await;
    w.apply(workload::service(&ns, "server", &[("app", "server")]))
        .await;
    let server = w.ready_pods("app=server", 1).await.remove(0);
    let (secret, cert_pem) = tls_secret(&ns);
    w.apply(secret).await;
    w.apply(gateway(&ns)).await;
    w.apply(route(&ns)).await;
    let addr = programmed_address(&w.client, &ns).await;
    eprintln!("gateway web programmed at {addr}");
    let gw_pods = workload::wait_pods_ready(
        &w.client,
        &ns,
        "gateway.networking.k8s.io/gateway-name=web",
        1,
        READY_TIMEOUT,
    )
    .await
    .unwrap();
    let gw_netns = w.netns(&gw_pods[0]);
    let http_url = format!("http://{addr}/");
    let host_header = format!("Host: {HOST}");
    let headers = [host_header.as_str()];

    // 1. SMI: the gateway is a caller like any other; without a TrafficTarget naming its
    //    ServiceAccount the backend's sidecar refuses it.
    let mut b = Batch::from_host(&http_url, 5);
    b.headers = &headers;
    let denied = b.run().await.unwrap();
    assert!(all_denied(&denied), "{}", statuses(&denied));

    // 2. Allowed: every request reaches the backend, over mTLS between gateway and backend.
    w.apply(policy::tcp_route(&ns, "all-ports")).await;
    w.apply(policy::traffic_target(
        &ns,
        "gateway-to-server",
        "server",
        &["weft-gateway-web"],
        &[("TCPRoute", "all-ports", &[])],
    ))
    .await;
    let veth = w.host_veth(&server);
    wait_for(
        "the gateway allowed by the backend",
        Duration::from_secs(60),
        || {
            let url = http_url.clone();
            async move {
                let mut b = Batch::from_host(&url, 1);
                b.headers = &headers;
                Ok(b.run()
                    .await
                    .map_err(|e| e.to_string())?
                    .first()
                    .filter(|r| r.status == 200)
                    .map(|_| ()))
            }
        },
    )
    .await
    .unwrap();
    let tcpdump = capture::Tcpdump::start(&veth).await.unwrap();
    let mut b = Batch::from_host(&http_url, 20);
    b.headers = &headers;
    let r = b.run().await.unwrap();
    let wire = tcpdump.finish().await.unwrap();
    assert!(ok_from_server(&r), "{}", statuses(&r));
    assert_eq!(
        r[0].headers.get("x-via").map(String::as_str),
        Some("weft-gateway"),
        "the route's header filter: {:?}",
        r[0].headers
    );
    eprintln!("capture on the backend's veth {veth} during 20 gateway requests: {wire:?}");
    assert!(
        wire.tls_records >= 20,
        "expected TLS between gateway and backend: {wire:?}"
    );
    assert_eq!(
        wire.plaintext_http, 0,
        "plaintext HTTP reached the backend pod: {wire:?}"
    );

    // 3. Hostname routing: the route answers only its hostname.
    let mut b = Batch::from_host(&http_url, 2);
    let other = ["Host: other.example.test"];
    b.headers = &other;
    let r = b.run().await.unwrap();
    assert!(r.iter().all(|r| r.status == 404), "{}", statuses(&r));

    // 4. HTTPS: TLS terminated by the gateway with the listener's certificate (SNI).
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("shop.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let resolve = format!("{HOST}:443:{addr}");
    let ca_arg = ca.display().to_string();
    let curl_args = ["--resolve", resolve.as_str(), "--cacert", ca_arg.as_str()];
    let https_url = format!("https://{HOST}/");
    let mut b = Batch::from_host(&https_url, 5);
    b.curl_args = &curl_args;
    let r = b.run().await.unwrap();
    assert!(ok_from_server(&r), "{}", statuses(&r));
    assert_eq!(
        r[0].headers.get("x-forwarded-proto").map(String::as_str),
        Some("https"),
        "x-forwarded-proto reaches the backend: {:?}",
        r[0].headers
    );

    // 5. The gateway's own metrics count what it sent to the backend.
    let m = sidecar_metrics(&gw_netns).await.unwrap();
    let sent = metric_sum(
        &m,
        "response_total",
        &["direction=\"outbound\"", "status_code=\"200\""],
    );
    assert!(sent >= 26.0, "gateway response_total 200 = {sent}:\n{m}");
    w.stop().await;
}

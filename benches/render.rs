//! `make bench-operator`: renders a synthetic cluster of 1,000 services, 10,000
//! endpoints and 200 identities (10 namespaces × 20 ServiceAccounts, 50 pods
//! each, 5 services per identity, each service backed by 10 pods), with 100
//! TrafficSplits, 200 TrafficTargets (each identity may call 5 others), 50
//! Retries and 50 CircuitBreakers. Measured in `smi` access mode (scoped
//! configs) and `permissive` mode (every service in every config); the largest
//! ConfigMap payload of each is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use weft_controller::api::policy::{Breaker, CircuitBreakerSpec, RetrySpec, ServiceRef};
use weft_controller::api::split::SplitView;
use weft_controller::operator::render::render;
use weft_controller::operator::state::*;

const NAMESPACES: usize = 10;
const SAS_PER_NS: usize = 20;
const PODS_PER_SA: usize = 50;
const SVCS_PER_SA: usize = 5;
const EPS_PER_SVC: usize = 10;

fn pod_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn svc_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn cluster(access: weft_proxy_config::AccessMode) -> ClusterState {
    let mut st = ClusterState::default();
    st.mesh.access_mode = access;
    let mut pod_n = 0;
    let mut svc_n = 0;
    for ns_i in 0..NAMESPACES {
        let ns = format!("team-{ns_i:02}");
        for sa_i in 0..SAS_PER_NS {
            let sa = format!("app-{sa_i:02}");
            st.service_accounts.push(ServiceAccountInfo {
                namespace: ns.clone(),
                name: sa.clone(),
                uid: format!("{ns}-{sa}"),
            });
            let first_pod = pod_n;
            for p in 0..PODS_PER_SA {
                st.meshed_pods.push(PodInfo {
                    namespace: ns.clone(),
                    name: format!("{sa}-7d9f8c6b5-{p:05}"),
                    service_account: sa.clone(),
                    ips: vec![pod_ip(pod_n)],
                    ports: vec![ContainerPortInfo {
                        name: Some("http".into()),
                        port: 8080,
                    }],
                });
                pod_n += 1;
            }
            for s in 0..SVCS_PER_SA {
                let name = format!("{sa}-svc-{s}");
                st.services.push(ServiceInfo {
                    namespace: ns.clone(),
                    name: name.clone(),
                    cluster_ips: vec![svc_ip(svc_n)],
                    ports: vec![ServicePortInfo {
                        name: Some("http".into()),
                        port: 80,
                        app_protocol: None,
                    }],
                });
                svc_n += 1;
                let endpoints = (0..EPS_PER_SVC)
                    .map(|e| {
                        let p = first_pod + s * EPS_PER_SVC + e;
                        SliceEndpoint {
                            addresses: vec![pod_ip(p)],
                            ready: true,
                            zone: Some(format!("zone-{}", e % 3)),
                            pod: Some(format!("{sa}-7d9f8c6b5-{:05}", s * EPS_PER_SVC + e)),
                        }
                    })
                    .collect();
                st.endpoint_slices.push(SliceInfo {
                    namespace: ns.clone(),
                    service: name,
                    ports: vec![SlicePortInfo {
                        name: Some("http".into()),
                        port: 8080,
                    }],
                    endpoints,
                });
            }
            // Each identity may be called by the next 5 identities (wrapping).
            let me = ns_i * SAS_PER_NS + sa_i;
            let sources = (1..=5)
                .map(|k| {
                    let o = (me + k) % (NAMESPACES * SAS_PER_NS);
                    (
                        format!("team-{:02}", o / SAS_PER_NS),
                        format!("app-{:02}", o % SAS_PER_NS),
                    )
                })
                .collect();
            st.traffic_targets.push(Input::ok(
                &ns,
                &format!("{sa}-callers"),
                TargetInput {
                    destination: (ns.clone(), sa.clone()),
                    destination_port: None,
                    sources,
                    rules: vec![TargetRule {
                        kind: "TCPRoute".into(),
                        name: "all".into(),
                        matches: None,
                    }],
                },
            ));
            if sa_i % 2 == 0 {
                let spec = serde_json::json!({"service": format!("{sa}-svc-0"), "backends": [
                    {"service": format!("{sa}-svc-1"), "weight": "30"}, {"service": format!("{sa}-svc-2"), "weight": "70"}]});
                st.splits.push(Input::ok(
                    &ns,
                    &format!("{sa}-split"),
                    SplitView::from_spec(&spec).unwrap(),
                ));
            }
            if sa_i % 4 == 0 {
                let dest = |n: &str| ServiceRef {
                    kind: "Service".into(),
                    name: n.into(),
                    namespace: None,
                };
                st.retries.push(Input::ok(
                    &ns,
                    &format!("{sa}-retry"),
                    RetrySpec {
                        source: None,
                        destinations: vec![dest(&format!("{sa}-svc-0"))],
                        retry_on: None,
                        retriable_status_codes: None,
                        num_retries: Some(3),
                        per_try_timeout: None,
                        timeout: None,
                        backoff: None,
                        budget: None,
                    },
                ));
                st.circuit_breakers.push(Input::ok(
                    &ns,
                    &format!("{sa}-cb"),
                    CircuitBreakerSpec {
                        destination: dest(&format!("{sa}-svc-3")),
                        connection_pool: None,
                        outlier_detection: None,
                        breaker: Some(Breaker {
                            failure_rate_threshold: 50,
                            window: None,
                            minimum_requests: None,
                            open_duration: None,
                            half_open_requests: None,
                        }),
                        fallback: None,
                    },
                ));
            }
        }
        st.tcp_routes.push(Input::ok(&ns, "all", vec![]));
    }
    st
}

fn report(name: &str, st: &ClusterState) {
    let out = render(st);
    let largest = out.configs.values().map(|c| c.json.len()).max().unwrap_or(0);
    let total: usize = out.configs.values().map(|c| c.json.len()).sum();
    let eps: usize = st.endpoint_slices.iter().map(|s| s.endpoints.len()).sum();
    eprintln!(
        "render/{name}: {} services, {eps} endpoints, {} identities -> {} configs, largest {largest} bytes \
         ({:.2} MiB), total {:.1} MiB; {} not emitted",
        st.services.len(),
        st.service_accounts.len(),
        out.configs.len(),
        largest as f64 / 1_048_576.0,
        total as f64 / 1_048_576.0,
        out.skipped.len(),
    );
    if let Some((id, why)) = out.skipped.iter().next() {
        eprintln!("render/{name}: e.g. {}/{}: {why}", id.0, id.1);
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for (name, mode) in [
        ("smi", weft_proxy_config::AccessMode::Smi),
        ("permissive", weft_proxy_config::AccessMode::Permissive),
    ] {
        let st = cluster(mode);
        report(name, &st);
        group.bench_function(name, |b| b.iter(|| black_box(render(black_box(&st)))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

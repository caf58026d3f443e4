//! `make bench-control-plane` (also `make bench-operator`): renders synthetic clusters of
//! 100, 1,000 and 5,000 services. Shape per identity (ServiceAccount): 50 meshed pods and 5
//! Services each backed by 10 of its pods; 20 identities per namespace (2 × 10 at 100 services);
//! every identity may be called by the next 5 identities (TrafficTarget, TCPRoute all ports);
//! every second identity has a TrafficSplit, every fourth a Retry and a CircuitBreaker.
//! At 1,000 services: 10,000 endpoints, 200 identities, 100 TrafficSplits, 200 TrafficTargets,
//! 50 Retries, 50 CircuitBreakers.
//!
//! Measured with criterion at every scale in `smi` access mode (scoped configs) and in
//! `permissive` mode (every service reachable: the services go once into the shared, sharded
//! catalog that each config references). Each (mode, scale) is also rendered once in a fresh
//! child process of this bench, which reports the largest ConfigMap payload (identity config
//! or catalog shard) and its own peak RSS (VmHWM): the memory of the cluster model plus one
//! full render, a lower bound for the controller's (which also caches the raw API objects).
//! Results: stderr and `target/bench/control-plane.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use weft_controller::api::policy::{Breaker, CircuitBreakerSpec, RetrySpec, ServiceRef};
use weft_controller::api::split::SplitView;
use weft_controller::operator::render::render;
use weft_controller::operator::state::*;
use weft_proxy_config::AccessMode;

const PODS_PER_SA: usize = 50;
const SVCS_PER_SA: usize = 5;
const EPS_PER_SVC: usize = 10;
/// Set in the child processes: `<mode>:<services>`.
const CHILD_ENV: &str = "WEFT_RENDER_BENCH_CHILD";

/// A cluster size: namespaces × ServiceAccounts per namespace, 5 services per identity.
#[derive(Debug, Clone, Copy)]
struct Scale {
    namespaces: usize,
    sas_per_ns: usize,
}

impl Scale {
    fn services(self) -> usize {
        self.namespaces * self.sas_per_ns * SVCS_PER_SA
    }

    fn for_services(n: usize) -> Option<Self> {
        SCALES.into_iter().find(|s| s.services() == n)
    }
}

const SCALES: [Scale; 3] = [
    Scale {
        namespaces: 2,
        sas_per_ns: 10,
    },
    Scale {
        namespaces: 10,
        sas_per_ns: 20,
    },
    Scale {
        namespaces: 50,
        sas_per_ns: 20,
    },
];

fn pod_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn svc_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn cluster(access: AccessMode, scale: Scale) -> ClusterState {
    let Scale {
        namespaces,
        sas_per_ns,
    } = scale;
    let mut st = ClusterState::default();
    st.mesh.access_mode = access;
    let mut pod_n = 0;
    let mut svc_n = 0;
    for ns_i in 0..namespaces {
        let ns = format!("team-{ns_i:02}");
        for sa_i in 0..sas_per_ns {
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
            let me = ns_i * sas_per_ns + sa_i;
            let sources = (1..=5)
                .map(|k| {
                    let o = (me + k) % (namespaces * sas_per_ns);
                    (
                        format!("team-{:02}", o / sas_per_ns),
                        format!("app-{:02}", o % sas_per_ns),
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

fn mode_name(m: AccessMode) -> &'static str {
    match m {
        AccessMode::Permissive => "permissive",
        _ => "smi",
    }
}

/// VmHWM / VmRSS of this process in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Child process: build one cluster, render it once, print one JSON line.
fn child(spec: &str) {
    let (mode, n) = spec.split_once(':').expect("mode:services");
    let access = if mode == "permissive" {
        AccessMode::Permissive
    } else {
        AccessMode::Smi
    };
    let scale = Scale::for_services(n.parse().expect("services")).expect("known scale");
    let st = cluster(access, scale);
    let model_rss_kb = status_kb("VmRSS");
    let t = Instant::now();
    let out = render(&st);
    let once = t.elapsed();
    let largest_config = out.configs.values().map(|c| c.json.len()).max().unwrap_or(0);
    let shards = out.catalog.as_ref().map_or(&[][..], |c| &c.shards[..]);
    let largest_shard = shards.iter().map(|s| s.json.len()).max().unwrap_or(0);
    let catalog_bytes: usize = shards.iter().map(|s| s.json.len()).sum();
    let largest = largest_config.max(largest_shard);
    let total: usize = out.configs.values().map(|c| c.json.len()).sum::<usize>() + catalog_bytes;
    // Configs over the ConfigMap limit are not emitted; their size is in the reason.
    let largest_not_emitted = out
        .skipped
        .values()
        .filter_map(|why| {
            why.strip_prefix("config is ")?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let line = serde_json::json!({
        "mode": mode,
        "services": st.services.len(),
        "endpoints": st.endpoint_slices.iter().map(|s| s.endpoints.len()).sum::<usize>(),
        "identities": st.service_accounts.len(),
        "configs": out.configs.len(),
        "not_emitted": out.skipped.len(),
        "not_emitted_example": out.skipped.values().next(),
        "largest_configmap_bytes": largest,
        "largest_identity_config_bytes": largest_config,
        "catalog_shards": shards.len(),
        "largest_shard_bytes": largest_shard,
        "catalog_bytes": catalog_bytes,
        "largest_not_emitted_bytes": largest_not_emitted,
        "total_bytes": total,
        "one_render_ms": once.as_secs_f64() * 1e3,
        "model_rss_kb": model_rss_kb,
        "peak_rss_kb": status_kb("VmHWM"),
    });
    println!("{line}");
}

fn measure_in_child(mode: AccessMode, scale: Scale) -> serde_json::Value {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .env(CHILD_ENV, format!("{}:{}", mode_name(mode), scale.services()))
        .output()
        .expect("child ran");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "child printed no JSON: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!(
        "render/{}/{}: {} endpoints, {} identities -> {} configs ({} not emitted), largest ConfigMap {} B \
         (identity config {} B; catalog {} shards, largest {} B, {} B in all; largest not emitted {} B), \
         one render {:.1} ms, peak RSS {:.1} MiB (model alone {:.1} MiB)",
        mode_name(mode),
        scale.services(),
        v["endpoints"],
        v["identities"],
        v["configs"],
        v["not_emitted"],
        v["largest_configmap_bytes"],
        v["largest_identity_config_bytes"],
        v["catalog_shards"],
        v["largest_shard_bytes"],
        v["catalog_bytes"],
        v["largest_not_emitted_bytes"],
        v["one_render_ms"].as_f64().unwrap_or(0.0),
        v["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0,
        v["model_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0,
    );
    v
}

/// Criterion's estimate (mean, 95% interval) in ms, from its output directory.
fn criterion_estimate(id: &str) -> Option<serde_json::Value> {
    let base = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{base}/criterion/render/{id}/new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let mean = &v["mean"];
    let ms = |x: &serde_json::Value| x.as_f64().map(|ns| ns / 1e6);
    Some(serde_json::json!({
        "mean_ms": ms(&mean["point_estimate"])?,
        "ci95_ms": [ms(&mean["confidence_interval"]["lower_bound"])?, ms(&mean["confidence_interval"]["upper_bound"])?],
    }))
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    // `cargo test --all-targets` runs benches without `--bench`: a quick smoke check that the
    // synthetic cluster renders (every identity gets a config), no measuring and no JSON.
    if !std::env::args().any(|a| a == "--bench") {
        let scale = SCALES[0];
        for mode in [AccessMode::Smi, AccessMode::Permissive] {
            let out = render(&cluster(mode, scale));
            assert!(
                !out.configs.is_empty() && out.skipped.is_empty(),
                "{:?}",
                out.skipped
            );
            assert_eq!(out.catalog.is_some(), mode == AccessMode::Permissive);
            eprintln!(
                "render smoke ({}): {} configs at {} services",
                mode_name(mode),
                out.configs.len(),
                scale.services()
            );
        }
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut rows = Vec::new();
    {
        let mut group = c.benchmark_group("render");
        for mode in [AccessMode::Smi, AccessMode::Permissive] {
            for scale in SCALES {
                rows.push((mode, scale, measure_in_child(mode, scale)));
                let st = cluster(mode, scale);
                let id = BenchmarkId::new(mode_name(mode), scale.services());
                group.bench_with_input(id, &st, |b, st| b.iter(|| black_box(render(black_box(st)))));
            }
        }
        group.finish();
    }
    c.final_summary();
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(mode, scale, mut v)| {
            let id = format!("{}/{}", mode_name(mode), scale.services());
            v["criterion"] = criterion_estimate(&id).unwrap_or(serde_json::Value::Null);
            v
        })
        .collect();
    let doc = serde_json::json!({ "bench": "render", "rows": rows });
    let _ = std::fs::create_dir_all("target/bench");
    let _ = std::fs::write(
        "target/bench/control-plane.json",
        serde_json::to_string_pretty(&doc).unwrap(),
    );
    eprintln!("render: wrote target/bench/control-plane.json");
}

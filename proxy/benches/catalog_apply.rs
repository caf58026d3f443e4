//! `make bench-sidecar-catalog`: what a `permissive`-mode config costs the sidecar. The same
//! services (1,000 and 5,000, 10 endpoints each, every fourth with a retry) are applied two
//! ways, side by side in fresh child processes: **inline** (every service in the one config
//! document: what the operator wrote before the shared catalog, and still the shape of an
//! `smi` config) and **catalog** (the identity document plus ~500 KB shards, parsed and
//! assembled as the ConfigMap source does). Reported per way: time to apply (parse +
//! assemble + validate + route table; median of 5 applies of distinct documents, read from
//! files the parent wrote, as they would arrive from the API), and the child's RSS before
//! the first document, after the last, and its peak (VmHWM). Results: stderr and
//! `target/bench/sidecar-catalog.json`. Without `--bench` (under `cargo test`) it is a quick
//! check that both ways give the same config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_proxy::conf::ConfigStore;
use weft_proxy::conf::store::ApplyError;
use weft_proxy::metrics::Metrics;
use weft_proxy::ready::Readiness;
use weft_proxy_config::*;

const CHILD_ENV: &str = "WEFT_CATALOG_BENCH_CHILD";
/// Set in the child processes: the directory holding the documents.
const DIR_ENV: &str = "WEFT_CATALOG_BENCH_DIR";
const SHARD_BYTES: usize = 500_000;
const ROUNDS: usize = 5;

fn retry() -> RetryPolicy {
    RetryPolicy {
        source: "bench/retry".into(),
        retry_on: vec![RetryOn::ServerError, RetryOn::ConnectFailure],
        retriable_status_codes: vec![],
        retriable_grpc_codes: vec![],
        num_retries: 2,
        per_try_timeout_ms: None,
        timeout_ms: None,
        backoff: Backoff {
            base_ms: 25,
            max_ms: 250,
        },
        budget: RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
            window_ms: 10_000,
        },
    }
}

/// `n` services; `round` varies one endpoint so every apply is a new document.
fn services(n: usize, round: usize) -> BTreeMap<String, Service> {
    (0..n)
        .map(|i| {
            let endpoints = (0..10)
                .map(|e| {
                    let k = i * 10 + e;
                    Endpoint {
                        ip: format!("198.18.{}.{}", k / 250, k % 250 + 1).parse().unwrap(),
                        port: if i == 0 && e == 0 {
                            8080 + round as u16
                        } else {
                            8080
                        },
                        ready: true,
                        zone: Some("zone-a".into()),
                        identity: Some(format!("spiffe://cluster.local/ns/ns{}/sa/id-{}", i / 100, i / 5)),
                        pod: Some(format!("pod-{i}-{e}")),
                    }
                })
                .collect();
            let svc = Service {
                namespace: format!("ns{}", i / 100),
                name: format!("svc-{i}"),
                cluster_ips: vec![format!("198.19.{}.{}", i / 250, i % 250 + 1).parse().unwrap()],
                ports: vec![ServicePort {
                    port: 8080,
                    name: Some("http".into()),
                    protocol: Protocol::Http1,
                    endpoints,
                    load_balancer: None,
                }],
                load_balancer: LoadBalancer::default(),
                split: None,
                retry: None,
                circuit_breaker: None,
                faults: Default::default(),
                mirrors: Vec::new(),
                routes: Vec::new(),
            };
            (format!("{}/{}", svc.namespace, svc.name), svc)
        })
        .collect()
}

fn base() -> ProxyConfig {
    ProxyConfig {
        schema_version: SCHEMA_VERSION,
        identity: Identity {
            namespace: "ns0".into(),
            service_account: "id-0".into(),
            spiffe_id: "spiffe://cluster.local/ns/ns0/sa/id-0".into(),
        },
        mesh: MeshSettings {
            trust_domain: "cluster.local".into(),
            access_mode: AccessMode::Permissive,
            mtls_mode: MtlsMode::Strict,
        },
        services: BTreeMap::new(),
        inbound: Inbound::default(),
        catalog: None,
        retries: BTreeMap::new(),
        faults: Default::default(),
        routes: Default::default(),
        gateway: None,
    }
}

/// The old shape: every service (with this identity's retries) in one document.
fn inline_doc(n: usize, round: usize) -> String {
    let mut c = base();
    c.services = services(n, round);
    for (i, svc) in c.services.values_mut().enumerate() {
        if i % 4 == 0 {
            svc.retry = Some(retry());
        }
    }
    c.to_json().unwrap()
}

/// The catalog shape: identity document, index document, shard documents.
fn catalog_docs(n: usize, round: usize) -> (String, String, Vec<String>) {
    let all = services(n, round);
    let mut c = base();
    c.retries = all.keys().step_by(4).map(|k| (k.clone(), retry())).collect();
    let mut shards: Vec<CatalogShard> = vec![];
    let mut size = SHARD_BYTES + 1;
    for (k, svc) in all {
        let bytes = serde_json::to_string(&svc).unwrap().len() + k.len() + 4;
        if size + bytes > SHARD_BYTES {
            shards.push(CatalogShard {
                schema_version: SCHEMA_VERSION,
                services: BTreeMap::new(),
            });
            size = 0;
        }
        size += bytes;
        shards.last_mut().unwrap().services.insert(k, svc);
    }
    let texts: Vec<String> = shards.iter().map(|s| s.to_json().unwrap()).collect();
    c.catalog = Some(CatalogRef {
        namespace: "weft-system".into(),
        index: "weft-catalog".into(),
    });
    let index = CatalogIndex {
        schema_version: SCHEMA_VERSION,
        shards: (0..texts.len())
            .map(|i| format!("weft-catalog-{round}-{i}"))
            .collect(),
    };
    (c.to_json().unwrap(), index.to_json().unwrap(), texts)
}

/// What the API source does with a catalog config once its shards are fetched.
fn apply_catalog(store: &ConfigStore, doc: &str, index: &str, shards: &[String]) -> Result<(), ApplyError> {
    store
        .apply_built(&format!("{doc}\n{index}"), "bench", || {
            let cfg: ProxyConfig =
                serde_json::from_str(doc).map_err(|e| ApplyError::Parse(ParseError::Json(e)))?;
            let listed = CatalogIndex::from_json(index)?;
            assert_eq!(listed.shards.len(), shards.len());
            let parsed = shards
                .iter()
                .map(|t| CatalogShard::from_json(t))
                .collect::<Result<Vec<_>, _>>()?;
            cfg.assemble(parsed)
                .map_err(|e| ApplyError::Parse(ParseError::Invalid(e)))
        })
        .map(|_| ())
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn store() -> ConfigStore {
    ConfigStore::new(Arc::new(Metrics::default()), Arc::new(Readiness::default()))
}

/// Writes every round's documents into `dir` (the parent does this, so the child's
/// memory holds only what a sidecar would: the documents it receives and what it builds).
fn write_docs(dir: &std::path::Path, n: usize) {
    for round in 0..ROUNDS {
        std::fs::write(dir.join(format!("inline-{round}.json")), inline_doc(n, round)).unwrap();
        let (doc, index, shards) = catalog_docs(n, round);
        std::fs::write(dir.join(format!("identity-{round}.json")), doc).unwrap();
        std::fs::write(dir.join(format!("index-{round}.json")), index).unwrap();
        for (i, shard) in shards.iter().enumerate() {
            std::fs::write(dir.join(format!("shard-{round}-{i}.json")), shard).unwrap();
        }
    }
}

/// Child process: apply `ROUNDS` documents one way, read from `dir` as they would
/// arrive from the API; print one JSON line.
fn child(spec: &str, dir: &std::path::Path) {
    let (way, n) = spec.split_once(':').unwrap();
    let n: usize = n.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let store = store();
    let baseline = status_kb("VmRSS:");
    let read = |name: String| std::fs::read_to_string(dir.join(name)).unwrap();
    let mut times: Vec<Duration> = Vec::new();
    let mut bytes = 0;
    let mut parsed: Option<ProxyConfig> = None;
    for round in 0..ROUNDS {
        let t;
        if way == "parse-only" {
            // The parsed config alone (kept, like the snapshot keeps it), no route table.
            let doc = read(format!("inline-{round}.json"));
            bytes = doc.len();
            t = Instant::now();
            parsed = Some(ProxyConfig::from_json(&doc).unwrap());
        } else if way == "inline" {
            let doc = read(format!("inline-{round}.json"));
            bytes = doc.len();
            t = Instant::now();
            store.apply_json(&doc, "bench").unwrap();
        } else {
            let (doc, index) = (
                read(format!("identity-{round}.json")),
                read(format!("index-{round}.json")),
            );
            let count = CatalogIndex::from_json(&index).unwrap().shards.len();
            let shards: Vec<String> = (0..count)
                .map(|i| read(format!("shard-{round}-{i}.json")))
                .collect();
            bytes = doc.len() + index.len() + shards.iter().map(String::len).sum::<usize>();
            t = Instant::now();
            apply_catalog(&store, &doc, &index, &shards).unwrap();
        }
        times.push(t.elapsed());
    }
    times.sort();
    let services = match (&parsed, store.load()) {
        (Some(c), _) => c.services.len(),
        (None, snap) => snap.map_or(0, |s| s.config.services.len()),
    };
    assert_eq!(services, n);
    let line = serde_json::json!({
        "way": way, "services": n, "payload_bytes": bytes,
        "apply_ms_median": times[ROUNDS / 2].as_secs_f64() * 1e3,
        "rss_kb_baseline": baseline, "rss_kb_after": status_kb("VmRSS:"), "peak_rss_kb": status_kb("VmHWM:"),
    });
    println!("{line}");
}

fn in_child(way: &str, n: usize, dir: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{way}:{n}"))
        .env(DIR_ENV, dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "child printed no JSON: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn main() {
    if let (Ok(spec), Ok(dir)) = (std::env::var(CHILD_ENV), std::env::var(DIR_ENV)) {
        child(&spec, std::path::Path::new(&dir));
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        // Smoke check under `cargo test`: both ways give the same running config.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let (a, b) = (store(), store());
        a.apply_json(&inline_doc(600, 0), "inline").unwrap();
        let (doc, index, shards) = catalog_docs(600, 0);
        assert!(shards.len() > 1);
        apply_catalog(&b, &doc, &index, &shards).unwrap();
        assert_eq!(a.load().unwrap().config, b.load().unwrap().config);
        eprintln!("catalog_apply smoke: inline and assembled configs are equal");
        return;
    }
    let mut rows = Vec::new();
    for n in [1_000, 5_000] {
        let dir = tempfile::tempdir().unwrap();
        write_docs(dir.path(), n);
        let inline = in_child("inline", n, dir.path());
        let catalog = in_child("catalog", n, dir.path());
        let parse_only = in_child("parse-only", n, dir.path());
        eprintln!(
            "  of it the parsed config alone: RSS {:.1} MiB ({:.1} ms to parse and validate)",
            parse_only["rss_kb_after"].as_f64().unwrap_or(0.0) / 1024.0,
            parse_only["apply_ms_median"].as_f64().unwrap_or(0.0)
        );
        let ms = |v: &serde_json::Value| v["apply_ms_median"].as_f64().unwrap_or(0.0);
        let mib = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0) / 1024.0;
        eprintln!(
            "sidecar apply, {n} services: inline {:.1} ms (RSS {:.1} MiB from {:.1}, peak {:.1}) | catalog {:.1} ms \
             (RSS {:.1} MiB from {:.1}, peak {:.1}) | catalog/inline time {:.2}x",
            ms(&inline),
            mib(&inline, "rss_kb_after"),
            mib(&inline, "rss_kb_baseline"),
            mib(&inline, "peak_rss_kb"),
            ms(&catalog),
            mib(&catalog, "rss_kb_after"),
            mib(&catalog, "rss_kb_baseline"),
            mib(&catalog, "peak_rss_kb"),
            ms(&catalog) / ms(&inline).max(1e-9),
        );
        rows.push(serde_json::json!({"services": n, "inline": inline, "catalog": catalog, "parse_only": parse_only}));
    }
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
    let _ = std::fs::create_dir_all(format!("{dir}/bench"));
    let doc = serde_json::json!({"bench": "sidecar-catalog", "rows": rows});
    std::fs::write(
        format!("{dir}/bench/sidecar-catalog.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
}

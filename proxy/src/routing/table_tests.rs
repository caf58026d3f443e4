//! Unit tests for the routing table: lookup, split distribution, header routes,
//! port filtering and readiness.

use super::*;
use crate::lb::rng::FastRng;
use std::collections::BTreeMap;
use weft_proxy_config::{
    AccessMode, Endpoint, HttpMatch, Identity, Inbound, InboundPort as CfgInboundPort, MeshSettings,
    MtlsMode, ServicePort, Split, WeightedBackend,
};

fn svc(name: &str, ip: Option<&str>, port: u16, eps: &[(&str, u16, bool)]) -> (String, Service) {
    let s = Service {
        namespace: "default".into(),
        name: name.into(),
        cluster_ips: ip.iter().map(|i| i.parse().unwrap()).collect(),
        ports: vec![ServicePort {
            port,
            name: None,
            protocol: Protocol::Detect,
            endpoints: eps
                .iter()
                .map(|(ip, p, ready)| Endpoint {
                    ip: ip.parse().unwrap(),
                    port: *p,
                    ready: *ready,
                    zone: None,
                    identity: None,
                    pod: None,
                })
                .collect(),
            load_balancer: None,
        }],
        load_balancer: LoadBalancer::RoundRobin,
        split: None,
        retry: None,
        circuit_breaker: None,
        faults: Default::default(),
        mirrors: Vec::new(),
        routes: Vec::new(),
    };
    (format!("default/{name}"), s)
}

fn config() -> ProxyConfig {
    let mut services = BTreeMap::new();
    let (k, mut reviews) = svc(
        "reviews",
        Some("198.19.0.10"),
        9080,
        &[("198.18.0.1", 8080, true)],
    );
    reviews.split = Some(Split {
        source: "default/reviews-split".into(),
        backends: vec![
            WeightedBackend {
                service: "default/reviews-v1".into(),
                weight: 75_000,
            },
            WeightedBackend {
                service: "default/reviews-v2".into(),
                weight: 25_000,
            },
            WeightedBackend {
                service: "default/other-port".into(),
                weight: 50_000,
            },
        ],
        matches: vec![],
    });
    services.insert(k, reviews);
    for (name, ip, eps) in [
        (
            "reviews-v1",
            "198.19.0.11",
            vec![("198.18.0.2", 8080, true), ("198.18.0.9", 8080, false)],
        ),
        ("reviews-v2", "198.19.0.12", vec![("198.18.0.3", 8080, true)]),
    ] {
        let (k, s) = svc(name, Some(ip), 9080, &eps);
        services.insert(k, s);
    }
    let (k, s) = svc(
        "other-port",
        Some("198.19.0.13"),
        1234,
        &[("198.18.0.4", 1234, true)],
    );
    services.insert(k, s);
    let (k, mut ab) = svc("ab", Some("198.19.0.20"), 9080, &[("198.18.0.5", 80, true)]);
    ab.split = Some(Split {
        source: "default/ab".into(),
        backends: vec![WeightedBackend {
            service: "default/reviews-v2".into(),
            weight: 1,
        }],
        matches: vec![HttpMatch {
            name: "ab/jason".into(),
            headers: [("end-user".to_string(), "jason".to_string())].into(),
            ..HttpMatch::default()
        }],
    });
    services.insert(k, ab);
    let (k, s) = svc("headless", None, 5432, &[("198.18.0.6", 5432, true)]);
    services.insert(k, s);
    ProxyConfig {
        schema_version: 1,
        identity: Identity {
            namespace: "default".into(),
            service_account: "productpage".into(),
            spiffe_id: "spiffe://cluster.local/ns/default/sa/productpage".into(),
        },
        mesh: MeshSettings {
            trust_domain: "cluster.local".into(),
            access_mode: AccessMode::Permissive,
            mtls_mode: MtlsMode::Permissive,
        },
        services,
        inbound: Inbound {
            ports: vec![CfgInboundPort {
                port: 9080,
                protocol: Protocol::Http1,
            }],
            grants: vec![],
        },
        catalog: None,
        retries: Default::default(),
        faults: Default::default(),
        routes: Default::default(),
        gateway: None,
    }
}

fn table() -> RouteTable {
    let cfg = config();
    cfg.validate().unwrap();
    let metrics = Arc::new(Metrics::default());
    let resilience = Resilience::new(Arc::clone(&metrics));
    RouteTable::build(&cfg, &EndpointRegistry::default(), &metrics, &resilience).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn cluster_ip_and_pod_ip_lookup() {
    let t = table();
    assert_eq!(
        &*t.outbound(&addr("198.19.0.10:9080")).unwrap().service,
        "default/reviews"
    );
    assert!(t.outbound(&addr("198.19.0.10:9081")).is_none());
    assert!(t.outbound(&addr("8.8.8.8:53")).is_none());
    let pod = t.outbound(&addr("198.18.0.6:5432")).unwrap();
    assert_eq!(&*pod.service, "default/headless");
    assert_eq!(pod.root.balancer.endpoints()[0].addr, addr("198.18.0.6:5432"));
    // A not-ready pod is still reachable when dialled directly by IP.
    assert!(t.outbound(&addr("198.18.0.9:8080")).is_some());
}

#[test]
fn split_is_exact_and_skips_backends_without_the_port() {
    let t = table();
    let r = t.outbound(&addr("198.19.0.10:9080")).unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..2_000 {
        let b = r.select_http(&Method::GET, "/", &HeaderMap::new());
        *counts.entry(b.service.to_string()).or_default() += 1;
    }
    assert_eq!(counts["default/reviews-v1"], 1_500);
    assert_eq!(counts["default/reviews-v2"], 500);
    assert!(!counts.contains_key("default/other-port"));
    // TCP also splits when the split has no matches.
    assert_ne!(&*r.select_tcp().service, "default/reviews");
}

#[test]
fn not_ready_endpoints_are_excluded() {
    let t = table();
    let v1 = t.outbound(&addr("198.19.0.11:9080")).unwrap();
    let eps = v1.root.balancer.endpoints();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].addr, addr("198.18.0.2:8080"));
    let mut rng = FastRng::seeded(3);
    for _ in 0..10 {
        assert_eq!(
            v1.root.balancer.pick(None, &mut rng).unwrap().addr,
            addr("198.18.0.2:8080")
        );
    }
}

#[test]
fn header_route_to_v2_others_to_root() {
    let t = table();
    let r = t.outbound(&addr("198.19.0.20:9080")).unwrap();
    let mut h = HeaderMap::new();
    h.insert("end-user", "jason".parse().unwrap());
    assert_eq!(
        &*r.select_http(&Method::GET, "/x", &h).service,
        "default/reviews-v2"
    );
    h.insert("end-user", "kim".parse().unwrap());
    assert_eq!(&*r.select_http(&Method::GET, "/x", &h).service, "default/ab");
    assert_eq!(
        &*r.select_http(&Method::GET, "/x", &HeaderMap::new()).service,
        "default/ab"
    );
    // Matches are HTTP-only: opaque TCP goes to the root.
    assert_eq!(&*r.select_tcp().service, "default/ab");
}

#[test]
fn balancers_and_endpoints_are_shared() {
    let t = table();
    let root = t.outbound(&addr("198.19.0.10:9080")).unwrap();
    let v2 = t.outbound(&addr("198.19.0.12:9080")).unwrap();
    let via_split = root
        .split
        .as_ref()
        .unwrap()
        .backends
        .iter()
        .find(|b| &*b.service == "default/reviews-v2")
        .unwrap();
    assert!(Arc::ptr_eq(&via_split.balancer, &v2.root.balancer));
}

#[test]
fn inbound_ports_have_hints() {
    let t = table();
    assert_eq!(t.inbound(9080).protocol, Protocol::Http1);
    assert_eq!(t.inbound(1).protocol, Protocol::Detect);
}

#[test]
fn each_port_uses_its_own_balancer_also_through_a_split() {
    let mut cfg = config();
    let hash = LoadBalancer::ConsistentHash {
        key: weft_proxy_config::HashKey::Header("x-user".into()),
        algorithm: weft_proxy_config::HashAlgorithm::Maglev,
        cookie: None,
    };
    let (k, mut multi) = svc("multi", Some("198.19.0.30"), 80, &[("198.18.0.7", 80, true)]);
    let mut second = multi.ports[0].clone();
    second.port = 81;
    second.load_balancer = Some(hash);
    multi.ports.push(second);
    cfg.services.insert(k, multi);
    let (k, mut apex) = svc("apex", Some("198.19.0.31"), 81, &[("198.18.0.8", 81, true)]);
    apex.split = Some(Split {
        source: "default/apex".into(),
        backends: vec![WeightedBackend {
            service: "default/multi".into(),
            weight: 1,
        }],
        matches: vec![],
    });
    cfg.services.insert(k, apex);
    cfg.validate().unwrap();
    let metrics = Arc::new(Metrics::default());
    let resilience = Resilience::new(Arc::clone(&metrics));
    let t = RouteTable::build(&cfg, &EndpointRegistry::default(), &metrics, &resilience).unwrap();
    let p80 = t.outbound(&addr("198.19.0.30:80")).unwrap();
    let p81 = t.outbound(&addr("198.19.0.30:81")).unwrap();
    assert!(
        p80.root.balancer.hash_key().is_none(),
        "port 80 keeps round robin"
    );
    assert!(matches!(
        p81.root.balancer.hash_key(),
        Some(weft_proxy_config::HashKey::Header(h)) if h == "x-user"
    ));
    // The split backend on port 81 uses the backend service's port-81 balancer.
    let apex = t.outbound(&addr("198.19.0.31:81")).unwrap();
    let b = apex.select_http(&Method::GET, "/", &HeaderMap::new());
    assert_eq!(&*b.service, "default/multi");
    assert!(Arc::ptr_eq(&b.balancer, &p81.root.balancer));
    assert!(apex.root.balancer.hash_key().is_none());
}

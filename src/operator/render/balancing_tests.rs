//! LoadBalancing rendering: whole-service and per-port balancers on the shared
//! services (so in the `permissive` catalog too), sticky cookies, conflicts and
//! bad references.

use super::report::reason;
use super::tests::{NS, id, report, shop, svc};
use super::*;
use crate::api::balancing::{Algorithm, ConsistentHash, HashCookie, HashTable, LoadBalancingSpec};
use crate::api::policy::ServiceRef;
use crate::operator::state::{ClusterState, Input, Kind};
use weft_proxy_config::{CatalogShard, GeneratedCookie, HashAlgorithm, HashKey, LoadBalancer};

pub(super) fn dest(name: &str) -> ServiceRef {
    ServiceRef {
        kind: "Service".into(),
        name: name.into(),
        namespace: None,
    }
}

fn lb(name: &str, service: &str, ports: Option<Vec<u16>>, algorithm: Algorithm) -> Input<LoadBalancingSpec> {
    Input::ok(
        NS,
        name,
        LoadBalancingSpec {
            destination: dest(service),
            ports,
            algorithm,
            consistent_hash: None,
        },
    )
}

fn sticky(ttl: Option<&str>, path: Option<&str>) -> ConsistentHash {
    ConsistentHash {
        header: None,
        cookie: Some(HashCookie {
            name: "session".into(),
            ttl: ttl.map(Into::into),
            path: path.map(Into::into),
        }),
        source_ip: None,
        table: None,
    }
}

/// The shop plus `cart` with two ports and no meshed endpoints (every identity sees it).
fn with_cart() -> ClusterState {
    let mut st = shop();
    st.services
        .push(svc("cart", "198.19.0.50", &[("http", 80), ("grpc", 9090)]));
    st
}

/// A service as the `permissive` catalog holds it.
pub(super) fn from_catalog(out: &RenderOutput, key: &str) -> weft_proxy_config::Service {
    let catalog = out.catalog.as_ref().expect("permissive renders a catalog");
    catalog
        .shards
        .iter()
        .map(|s| CatalogShard::from_json(&s.json).unwrap())
        .find_map(|s| s.services.get(key).cloned())
        .unwrap()
}

#[test]
fn whole_service_balancer_reaches_every_client() {
    let mut st = shop();
    st.load_balancings
        .push(lb("podinfo-lb", "podinfo", None, Algorithm::RoundRobin));
    let out = render(&st);
    let r = report(&out, Kind::LoadBalancing, "podinfo-lb");
    assert!(r.accepted.ok, "{r:?}");
    assert_eq!(r.accepted.reason, reason::ACCEPTED);
    for sa in ["frontend", "podinfo"] {
        let s = &out.configs[&id(sa)].config.services["shop/podinfo"];
        assert_eq!(s.load_balancer, LoadBalancer::RoundRobin, "{sa}");
        assert!(s.ports[0].load_balancer.is_none());
    }
    assert_eq!(
        out.configs[&id("frontend")].config.services["shop/db"].load_balancer,
        LoadBalancer::LeastRequest,
        "other services keep the default"
    );
    st.mesh.access_mode = AccessMode::Permissive;
    let out = render(&st);
    assert_eq!(
        from_catalog(&out, "shop/podinfo").load_balancer,
        LoadBalancer::RoundRobin
    );
}

#[test]
fn per_port_sticky_cookie_with_ttl_and_default_path() {
    let mut st = with_cart();
    let mut o = lb("cart-sticky", "cart", Some(vec![80]), Algorithm::ConsistentHash);
    if let Ok(s) = &mut o.spec {
        s.consistent_hash = Some(sticky(Some("1h30m"), None));
    }
    st.load_balancings.push(o);
    let out = render(&st);
    assert!(report(&out, Kind::LoadBalancing, "cart-sticky").accepted.ok);
    let cart = &out.configs[&id("frontend")].config.services["shop/cart"];
    assert_eq!(
        cart.load_balancer,
        LoadBalancer::LeastRequest,
        "service default kept"
    );
    assert_eq!(
        cart.ports[0].load_balancer,
        Some(LoadBalancer::ConsistentHash {
            key: HashKey::Cookie("session".into()),
            algorithm: HashAlgorithm::Ring,
            cookie: Some(GeneratedCookie {
                ttl_ms: 5_400_000,
                path: Some("/".into()),
            }),
        })
    );
    assert_eq!(cart.ports[1].load_balancer, None, "port 9090 not listed");
}

#[test]
fn cookie_without_ttl_is_never_generated_and_session_ttl_is_zero() {
    let spec = |ch| LoadBalancingSpec {
        destination: dest("cart"),
        ports: None,
        algorithm: Algorithm::ConsistentHash,
        consistent_hash: Some(ch),
    };
    let plain = balancing::balancer(&spec(sticky(None, Some("/shop")))).unwrap();
    assert!(matches!(plain, LoadBalancer::ConsistentHash { cookie: None, .. }));
    let session = balancing::balancer(&spec(sticky(Some("0s"), Some("/shop")))).unwrap();
    let LoadBalancer::ConsistentHash { cookie, .. } = session else {
        panic!("{session:?}")
    };
    assert_eq!(
        cookie,
        Some(GeneratedCookie {
            ttl_ms: 0,
            path: Some("/shop".into()),
        })
    );
}

#[test]
fn header_keys_are_lower_cased_and_tables_map() {
    let header = ConsistentHash {
        header: Some("X-User-Id".into()),
        cookie: None,
        source_ip: None,
        table: Some(HashTable::Maglev),
    };
    let spec = LoadBalancingSpec {
        destination: dest("podinfo"),
        ports: None,
        algorithm: Algorithm::ConsistentHash,
        consistent_hash: Some(header),
    };
    assert_eq!(
        balancing::balancer(&spec).unwrap(),
        LoadBalancer::ConsistentHash {
            key: HashKey::Header("x-user-id".into()),
            algorithm: HashAlgorithm::Maglev,
            cookie: None,
        }
    );
    let mut ip = spec.clone();
    ip.consistent_hash = Some(ConsistentHash {
        header: None,
        cookie: None,
        source_ip: Some(true),
        table: None,
    });
    assert!(matches!(
        balancing::balancer(&ip).unwrap(),
        LoadBalancer::ConsistentHash {
            key: HashKey::SourceIp,
            algorithm: HashAlgorithm::Ring,
            ..
        }
    ));
    let mut none = spec.clone();
    none.consistent_hash = None;
    assert!(balancing::balancer(&none).is_err(), "consistentHash is required");
    let mut stray = spec;
    stray.algorithm = Algorithm::Random;
    assert!(balancing::balancer(&stray).is_err(), "only with consistentHash");
}

#[test]
fn conflicts_keep_the_first_by_namespace_and_name() {
    let mut st = with_cart();
    st.load_balancings.extend([
        lb("b-whole", "cart", None, Algorithm::Random),
        lb("a-whole", "cart", None, Algorithm::RoundRobin),
        lb("c-port", "cart", Some(vec![9090]), Algorithm::Random),
        lb("d-port", "cart", Some(vec![80, 9090]), Algorithm::RoundRobin),
        lb("e-port", "cart", Some(vec![80]), Algorithm::LeastRequest),
    ]);
    let out = render(&st);
    let b = report(&out, Kind::LoadBalancing, "b-whole");
    assert_eq!(
        (b.accepted.ok, b.accepted.reason.as_str()),
        (false, reason::CONFLICTED)
    );
    assert!(b.accepted.message.contains("shop/a-whole"), "{b:?}");
    let d = report(&out, Kind::LoadBalancing, "d-port");
    assert_eq!(d.accepted.reason, reason::CONFLICTED);
    assert!(d.accepted.message.contains("port 9090") && d.accepted.message.contains("shop/c-port"));
    for ok in ["a-whole", "c-port", "e-port"] {
        assert!(report(&out, Kind::LoadBalancing, ok).accepted.ok, "{ok}");
    }
    let cart = &out.configs[&id("frontend")].config.services["shop/cart"];
    assert_eq!(cart.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(cart.ports[0].load_balancer, Some(LoadBalancer::LeastRequest));
    assert_eq!(cart.ports[1].load_balancer, Some(LoadBalancer::Random));
}

#[test]
fn missing_service_port_and_unreadable_specs_are_reported() {
    let mut st = with_cart();
    st.load_balancings.extend([
        lb("gone", "nope", None, Algorithm::Random),
        lb("bad-port", "cart", Some(vec![80, 81]), Algorithm::Random),
        Input {
            namespace: NS.into(),
            name: "broken".into(),
            generation: Some(4),
            spec: Err("spec is unreadable".into()),
        },
    ]);
    let out = render(&st);
    let gone = report(&out, Kind::LoadBalancing, "gone");
    assert_eq!(gone.accepted.reason, reason::SERVICE_NOT_FOUND);
    assert_eq!(gone.resolved_refs.reason, reason::SERVICE_NOT_FOUND);
    let port = report(&out, Kind::LoadBalancing, "bad-port");
    assert_eq!(port.accepted.reason, reason::INVALID_SPEC);
    assert!(port.accepted.message.starts_with("spec.ports"), "{port:?}");
    assert!(port.accepted.message.contains("81"));
    let broken = report(&out, Kind::LoadBalancing, "broken");
    assert_eq!(
        (broken.accepted.reason.as_str(), broken.generation),
        (reason::INVALID_SPEC, Some(4))
    );
    let cart = &out.configs[&id("frontend")].config.services["shop/cart"];
    assert!(
        cart.ports.iter().all(|p| p.load_balancer.is_none()),
        "nothing applied"
    );
}

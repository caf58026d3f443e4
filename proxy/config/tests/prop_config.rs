//! Property tests for config parsing and validation (issue 14, fuzz and property
//! tests): arbitrary JSON and arbitrary bytes never panic the parser; generated
//! valid configs round-trip through serde and validate.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use weft_proxy_config::*;

/// Arbitrary JSON values, a few levels deep, with keys drawn partly from the
/// schema so that the parser gets past the first field often.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("schemaVersion".to_string()),
        Just("identity".to_string()),
        Just("mesh".to_string()),
        Just("services".to_string()),
        Just("inbound".to_string()),
        Just("catalog".to_string()),
        Just("retries".to_string()),
        Just("ports".to_string()),
        Just("endpoints".to_string()),
        Just("kind".to_string()),
        "[a-zA-Z]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}"
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Detect),
        Just(Protocol::Http1),
        Just(Protocol::Http2),
        Just(Protocol::Grpc),
        Just(Protocol::Tcp),
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        any::<[u8; 4]>(),
        1u16..,
        any::<bool>(),
        prop::option::of(name()),
        prop::option::of(name()),
    )
        .prop_map(|(ip, port, ready, zone, pod)| Endpoint {
            ip: IpAddr::V4(Ipv4Addr::from(ip)),
            port,
            ready,
            zone,
            identity: pod
                .as_ref()
                .map(|p| format!("spiffe://cluster.local/ns/x/sa/{p}")),
            pod,
        })
}

fn service(ns: String, name: String) -> impl Strategy<Value = Service> {
    (
        prop::collection::btree_map(1u16.., (prop::option::of("[a-z]{1,6}"), protocol()), 0..4),
        prop::collection::vec(prop::collection::vec(endpoint(), 0..3), 4),
        prop::collection::vec(any::<[u8; 4]>(), 0..2),
        prop_oneof![
            Just(LoadBalancer::LeastRequest),
            Just(LoadBalancer::RoundRobin),
            Just(LoadBalancer::Random),
            "[a-z-]{1,8}".prop_map(|h| LoadBalancer::ConsistentHash {
                key: HashKey::Header(h),
                algorithm: HashAlgorithm::Maglev,
                cookie: None,
            }),
        ],
    )
        .prop_map(move |(ports, eps, ips, lb)| Service {
            namespace: ns.clone(),
            name: name.clone(),
            cluster_ips: ips.into_iter().map(|b| IpAddr::V4(Ipv4Addr::from(b))).collect(),
            // A BTreeMap's keys are strictly increasing, as validation requires.
            ports: ports
                .into_iter()
                .zip(eps)
                .map(|((port, (name, protocol)), endpoints)| ServicePort {
                    port,
                    name,
                    protocol,
                    endpoints,
                    load_balancer: None,
                })
                .collect(),
            load_balancer: lb,
            split: None,
            retry: None,
            circuit_breaker: None,
            faults: Default::default(),
            mirrors: Vec::new(),
            routes: Vec::new(),
        })
}

fn grant() -> impl Strategy<Value = AccessGrant> {
    (
        name(),
        prop::collection::vec(name(), 0..3),
        prop::collection::vec(
            prop_oneof![
                prop::collection::vec(1u16.., 0..3).prop_map(|ports| AccessRule::Tcp { ports }),
                (
                    "[a-z/]{1,8}",
                    prop::collection::vec("[A-Z]{1,6}", 0..2),
                    prop::collection::vec(1u16.., 0..2),
                )
                    .prop_map(|(p, methods, ports)| AccessRule::Http {
                        ports,
                        matches: vec![HttpMatch {
                            name: "g/m".into(),
                            path_regex: Some(format!("/{p}.*")),
                            methods,
                            headers: BTreeMap::new(),
                        }],
                    }),
            ],
            0..3,
        ),
    )
        .prop_map(|(tt, sas, rules)| AccessGrant {
            source: format!("ns/{tt}"),
            sources: sas
                .into_iter()
                .map(|sa| format!("spiffe://cluster.local/ns/ns/sa/{sa}"))
                .collect(),
            rules,
        })
}

fn valid_config() -> impl Strategy<Value = ProxyConfig> {
    let services = prop::collection::btree_set((name(), name()), 0..4)
        .prop_flat_map(|keys| keys.into_iter().map(|(ns, n)| service(ns, n)).collect::<Vec<_>>());
    (
        name(),
        name(),
        any::<bool>(),
        any::<bool>(),
        services,
        prop::collection::vec((1u16.., protocol()), 0..4),
        prop::collection::vec(grant(), 0..3),
    )
        .prop_map(|(ns, sa, smi, strict, services, ports, grants)| ProxyConfig {
            schema_version: SCHEMA_VERSION,
            identity: Identity {
                spiffe_id: format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"),
                namespace: ns,
                service_account: sa,
            },
            mesh: MeshSettings {
                trust_domain: "cluster.local".into(),
                access_mode: if smi {
                    AccessMode::Smi
                } else {
                    AccessMode::Permissive
                },
                mtls_mode: if strict {
                    MtlsMode::Strict
                } else {
                    MtlsMode::Permissive
                },
            },
            services: services
                .into_iter()
                .map(|s| (format!("{}/{}", s.namespace, s.name), s))
                .collect(),
            inbound: Inbound {
                ports: ports
                    .into_iter()
                    .map(|(port, protocol)| InboundPort { port, protocol })
                    .collect(),
                grants,
            },
            catalog: None,
            retries: BTreeMap::new(),
            faults: Default::default(),
            routes: Default::default(),
            gateway: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let text = v.to_string();
        let _ = ProxyConfig::from_json(&text);
        let _ = CatalogIndex::from_json(&text);
        let _ = CatalogShard::from_json(&text);
        let _ = catalog_ref(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = ProxyConfig::from_json(&text);
        let _ = CatalogShard::from_json(&text);
    }

    #[test]
    fn generated_valid_configs_validate_and_round_trip(c in valid_config()) {
        prop_assert_eq!(c.validate(), Ok(()));
        let text = c.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = ProxyConfig::from_json(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, c);
    }

    /// Corrupting one byte of a valid document either fails cleanly or yields a
    /// config that itself validates (from_json never hands out an invalid one).
    #[test]
    fn corrupted_valid_documents_never_panic(c in valid_config(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bytes = c.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = b;
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(parsed) = ProxyConfig::from_json(&text) {
            prop_assert_eq!(parsed.validate(), Ok(()));
        }
    }
}

//! Renderer unit tests: a small Flagger-style shop namespace, a golden config,
//! and one test per rule (bad input reported and skipped, scoping, defaults).

use super::report::reason;
use super::*;
use crate::api::policy::{Breaker, CircuitBreakerSpec, RetrySpec, ServiceRef, SourceRef};
use crate::api::specs::{HeaderFilters, HttpMatch as ApiMatch};
use crate::api::split::SplitView;
use crate::operator::state::*;
use weft_proxy_config::{AccessRule, Protocol, RetryOn};

pub(super) const NS: &str = "shop";

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

pub(super) fn svc(name: &str, cip: &str, ports: &[(&str, u16)]) -> ServiceInfo {
    ServiceInfo {
        namespace: NS.into(),
        name: name.into(),
        cluster_ips: vec![ip(cip)],
        ports: ports
            .iter()
            .map(|(n, p)| ServicePortInfo {
                name: Some(n.to_string()),
                port: *p,
                app_protocol: None,
            })
            .collect(),
    }
}

pub(super) fn slice(service: &str, port: (&str, u16), eps: &[(&str, &str, bool)]) -> SliceInfo {
    SliceInfo {
        namespace: NS.into(),
        service: service.into(),
        ports: vec![SlicePortInfo {
            name: Some(port.0.into()),
            port: port.1,
        }],
        endpoints: eps
            .iter()
            .map(|(pod, addr, ready)| SliceEndpoint {
                addresses: vec![ip(addr)],
                ready: *ready,
                zone: Some("zone-a".into()),
                pod: Some(pod.to_string()),
            })
            .collect(),
    }
}

pub(super) fn pod(name: &str, sa: &str, addr: &str, ports: &[(&str, u16)]) -> PodInfo {
    PodInfo {
        namespace: NS.into(),
        name: name.into(),
        service_account: sa.into(),
        ips: vec![ip(addr)],
        ports: ports
            .iter()
            .map(|(n, p)| ContainerPortInfo {
                name: Some(n.to_string()),
                port: *p,
            })
            .collect(),
    }
}

fn split_json(spec: serde_json::Value) -> Result<SplitView, String> {
    SplitView::from_spec(&spec).map_err(|e| e.to_string())
}

fn http_match(name: &str, path: &str, methods: &[&str]) -> ApiMatch {
    ApiMatch {
        name: name.into(),
        path_regex: Some(path.into()),
        methods: Some(methods.iter().map(|m| m.to_string()).collect()),
        headers: None,
    }
}

pub(super) fn target(dest: &str, sources: &[&str], rules: Vec<TargetRule>) -> TargetInput {
    TargetInput {
        destination: (NS.into(), dest.into()),
        destination_port: None,
        sources: sources.iter().map(|s| (NS.to_string(), s.to_string())).collect(),
        rules,
    }
}

pub(super) fn rule(kind: &str, name: &str, matches: Option<&[&str]>) -> TargetRule {
    TargetRule {
        kind: kind.into(),
        name: name.into(),
        matches: matches.map(|m| m.iter().map(|s| s.to_string()).collect()),
    }
}

/// The shop: Flagger-style podinfo (apex/primary/canary), a db, an unmeshed
/// legacy service and a vault nobody may call.
pub(super) fn shop() -> ClusterState {
    let http = ("http", 9898);
    ClusterState {
        mesh: MeshInput::default(),
        services: vec![
            svc("podinfo", "198.19.0.10", &[http]),
            svc("podinfo-primary", "198.19.0.11", &[http]),
            svc("podinfo-canary", "198.19.0.12", &[http]),
            svc("db", "198.19.0.20", &[("tcp-pg", 5432)]),
            svc("legacy", "198.19.0.30", &[("web", 80)]),
            svc("vault", "198.19.0.40", &[("grpc", 8200)]),
        ],
        endpoint_slices: vec![
            slice("podinfo", http, &[("primary-1", "198.18.0.11", true)]),
            slice("podinfo-primary", http, &[("primary-1", "198.18.0.11", true)]),
            slice("podinfo-canary", http, &[("canary-1", "198.18.0.12", false)]),
            slice("db", ("tcp-pg", 5432), &[("db-0", "198.18.0.20", true)]),
            slice("legacy", ("web", 8080), &[("legacy-0", "198.18.0.30", true)]),
            slice("vault", ("grpc", 8200), &[("vault-0", "198.18.0.40", true)]),
        ],
        meshed_pods: vec![
            pod("primary-1", "podinfo", "198.18.0.11", &[("http", 9898)]),
            pod("canary-1", "podinfo", "198.18.0.12", &[("http", 9898)]),
            pod("db-0", "db", "198.18.0.20", &[("tcp-pg", 5432)]),
            pod("frontend-1", "frontend", "198.18.0.50", &[("http", 8080)]),
            pod("vault-0", "vault", "198.18.0.40", &[("grpc", 8200)]),
        ],
        service_accounts: ["podinfo", "db", "frontend", "vault", "default"]
            .iter()
            .map(|n| ServiceAccountInfo { namespace: NS.into(), name: n.to_string(), uid: format!("uid-{n}") })
            .collect(),
        splits: vec![Input::ok(
            NS,
            "podinfo",
            split_json(serde_json::json!({"service": "podinfo", "backends": [
                {"service": "podinfo-canary", "weight": "0"}, {"service": "podinfo-primary", "weight": "100"}]}))
            .unwrap(),
        )],
        traffic_targets: vec![
            Input::ok(NS, "frontend-to-podinfo", target("podinfo", &["frontend"], vec![rule("HTTPRouteGroup", "api", Some(&["read"]))])),
            Input::ok(NS, "frontend-to-db", target("db", &["frontend", "podinfo"], vec![rule("TCPRoute", "pg", None)])),
        ],
        route_groups: vec![Input::ok(
            NS,
            "api",
            vec![http_match("read", "/api/.*", &["get", "HEAD"]), http_match("write", "/api/.*", &["POST"])],
        )],
        tcp_routes: vec![Input::ok(NS, "pg", vec![5432])],
        retries: vec![Input::ok(
            NS,
            "frontend-retry",
            RetrySpec {
                source: Some(SourceRef { kind: "ServiceAccount".into(), name: "frontend".into(), namespace: None }),
                destinations: vec![ServiceRef { kind: "Service".into(), name: "podinfo".into(), namespace: None }],
                retry_on: None,
                retriable_status_codes: None,
                num_retries: None,
                per_try_timeout: None,
                timeout: None,
                backoff: None,
                budget: None,
            },
        )],
        circuit_breakers: vec![Input::ok(
            NS,
            "podinfo-cb",
            CircuitBreakerSpec {
                destination: ServiceRef { kind: "Service".into(), name: "podinfo".into(), namespace: None },
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
        )],
        ..ClusterState::default()
    }
}

pub(super) fn id(sa: &str) -> IdentityKey {
    (NS.to_string(), sa.to_string())
}

pub(super) fn report(out: &RenderOutput, kind: Kind, name: &str) -> ObjectReport {
    out.reports[&ObjectKey {
        kind,
        namespace: NS.into(),
        name: name.into(),
    }]
        .clone()
}

#[test]
fn golden_frontend_config() {
    let out = render(&shop());
    let cfg = &out.configs[&id("frontend")];
    let pretty = serde_json::to_string_pretty(&cfg.config).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/operator/render/testdata/frontend.golden.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        pretty, want,
        "golden mismatch; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    assert_eq!(ProxyConfig::from_json(&cfg.json).unwrap(), cfg.config);
    assert_eq!(cfg.hash, content_hash(cfg.json.as_bytes()));
    assert_eq!(cfg.owner_uid, "uid-frontend");
}

#[test]
fn render_is_deterministic_regardless_of_input_order() {
    let a = render(&shop());
    let mut shuffled = shop();
    shuffled.services.reverse();
    shuffled.endpoint_slices.reverse();
    shuffled.meshed_pods.reverse();
    shuffled.traffic_targets.reverse();
    shuffled.route_groups.reverse();
    let b = render(&shuffled);
    let hashes = |o: &RenderOutput| {
        o.configs
            .iter()
            .map(|(k, c)| (k.clone(), c.hash.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&a), hashes(&b));
    assert_eq!(a.reports, b.reports);
    assert_eq!(a.configs.len(), 4, "podinfo, db, frontend, vault");
}

#[test]
fn flagger_split_lands_at_the_apex_with_quantity_weights() {
    let out = render(&shop());
    let s = out.configs[&id("frontend")].config.services["shop/podinfo"]
        .split
        .clone()
        .unwrap();
    assert_eq!(s.source, "shop/podinfo");
    let b: Vec<_> = s
        .backends
        .iter()
        .map(|b| (b.service.as_str(), b.weight))
        .collect();
    assert_eq!(b, [("shop/podinfo-canary", 0), ("shop/podinfo-primary", 100_000)]);
    let r = report(&out, Kind::TrafficSplit, "podinfo");
    assert!(r.accepted.ok && r.resolved_refs.ok, "{r:?}");
}

#[test]
fn missing_and_port_mismatched_backends_are_excluded_and_reported() {
    let mut st = shop();
    st.services
        .push(svc("podinfo-v3", "198.19.0.13", &[("http", 8080)]));
    st.splits[0].spec = split_json(serde_json::json!({"service": "podinfo", "backends": [
        {"service": "podinfo-primary", "weight": 90}, {"service": "gone", "weight": 5},
        {"service": "podinfo-v3", "weight": 5}]}));
    let out = render(&st);
    let s = out.configs[&id("frontend")].config.services["shop/podinfo"]
        .split
        .clone()
        .unwrap();
    assert_eq!(s.backends.len(), 1);
    assert_eq!(s.backends[0].service, "shop/podinfo-primary");
    let r = report(&out, Kind::TrafficSplit, "podinfo");
    assert!(r.accepted.ok);
    assert!(!r.resolved_refs.ok);
    assert_eq!(r.resolved_refs.reason, reason::BACKEND_NOT_FOUND);
    assert!(
        r.resolved_refs
            .message
            .contains("podinfo-v3 lacks root port(s) [9898]"),
        "{r:?}"
    );
}

#[test]
fn zero_weights_are_reported_and_skipped() {
    let mut st = shop();
    st.splits[0].spec = split_json(serde_json::json!({"service": "podinfo", "backends": [
        {"service": "podinfo-primary", "weight": "0"}, {"service": "podinfo-canary", "weight": 0}]}));
    let out = render(&st);
    assert!(
        out.configs[&id("frontend")].config.services["shop/podinfo"]
            .split
            .is_none()
    );
    let r = report(&out, Kind::TrafficSplit, "podinfo");
    assert!(!r.accepted.ok);
    assert_eq!(r.accepted.reason, reason::INVALID_WEIGHTS);
}

#[test]
fn unreadable_objects_are_reported_and_do_not_block_others() {
    let mut st = shop();
    st.splits.push(Input {
        namespace: NS.into(),
        name: "broken".into(),
        generation: Some(3),
        spec: Err("bad".into()),
    });
    st.traffic_targets.push(Input {
        namespace: NS.into(),
        name: "bad-tt".into(),
        generation: Some(1),
        spec: Err("x".into()),
    });
    let out = render(&st);
    let r = report(&out, Kind::TrafficSplit, "broken");
    assert!(!r.accepted.ok);
    assert_eq!(r.accepted.reason, reason::INVALID_SPEC);
    assert_eq!(r.generation, Some(3));
    assert!(
        out.configs[&id("frontend")].config.services["shop/podinfo"]
            .split
            .is_some()
    );
    assert_eq!(out.configs[&id("podinfo")].config.inbound.grants.len(), 1);
}

#[test]
fn missing_route_group_rejects_split_and_bad_regex_rejects_group() {
    let mut st = shop();
    st.splits[0].spec = split_json(
        serde_json::json!({"service": "podinfo", "matches": [{"kind": "HTTPRouteGroup", "name": "nope"}],
        "backends": [{"service": "podinfo-primary", "weight": 1}]}),
    );
    st.route_groups
        .push(Input::ok(NS, "bad", vec![http_match("x", "(", &["GET"])]));
    let out = render(&st);
    let r = report(&out, Kind::TrafficSplit, "podinfo");
    assert_eq!(
        (r.accepted.ok, r.resolved_refs.reason.as_str()),
        (false, reason::ROUTE_GROUP_NOT_FOUND)
    );
    let g = report(&out, Kind::HttpRouteGroup, "bad");
    assert_eq!(
        (g.accepted.ok, g.accepted.reason.as_str()),
        (false, reason::INVALID_SPEC)
    );
    assert!(out.configs[&id("frontend")].config.validate().is_ok());
}

#[test]
fn split_matches_come_from_route_groups_with_merged_headers() {
    let mut st = shop();
    let mut m = http_match("ff", "/", &["*"]);
    m.headers = Some(HeaderFilters::List(vec![
        [("User-Agent".to_string(), ".*Firefox.*".to_string())].into(),
    ]));
    st.route_groups.push(Input::ok(NS, "ab", vec![m]));
    st.splits[0].spec = split_json(
        serde_json::json!({"service": "podinfo", "matches": [{"kind": "HTTPRouteGroup", "name": "ab"}],
        "backends": [{"service": "podinfo-canary", "weight": 1}]}),
    );
    let out = render(&st);
    let s = out.configs[&id("frontend")].config.services["shop/podinfo"]
        .split
        .clone()
        .unwrap();
    assert_eq!(s.matches.len(), 1);
    assert_eq!(s.matches[0].name, "ab/ff");
    assert_eq!(s.matches[0].headers["user-agent"], ".*Firefox.*");
}

#[test]
fn grants_follow_traffic_targets() {
    let out = render(&shop());
    let podinfo = &out.configs[&id("podinfo")].config.inbound;
    assert_eq!(podinfo.ports.len(), 1);
    assert_eq!(podinfo.ports[0].protocol, Protocol::Http1);
    let g = &podinfo.grants[0];
    assert_eq!(g.sources, ["spiffe://cluster.local/ns/shop/sa/frontend"]);
    let AccessRule::Http { ports, matches } = &g.rules[0] else {
        panic!("{g:?}")
    };
    assert!(ports.is_empty(), "no destination port: every port");
    assert_eq!(matches.len(), 1, "only the named match");
    assert_eq!(matches[0].methods, ["GET", "HEAD"]);
    let db = &out.configs[&id("db")].config.inbound.grants[0];
    assert_eq!(db.rules, [AccessRule::Tcp { ports: vec![5432] }]);
    assert_eq!(db.sources.len(), 2);
    assert!(out.configs[&id("vault")].config.inbound.grants.is_empty());
}

#[test]
fn destination_port_reaches_http_and_tcp_rules() {
    let mut st = shop();
    let mut t = target(
        "podinfo",
        &["frontend"],
        vec![
            rule("HTTPRouteGroup", "api", Some(&["read"])),
            rule("TCPRoute", "pg", None),
        ],
    );
    t.destination_port = Some(9898);
    st.traffic_targets[0].spec = Ok(t);
    st.tcp_routes[0].spec = Ok(vec![]);
    let out = render(&st);
    let g = &out.configs[&id("podinfo")].config.inbound.grants[0];
    let AccessRule::Http { ports, matches } = &g.rules[0] else {
        panic!("{g:?}")
    };
    assert_eq!((ports.as_slice(), matches.len()), ([9898].as_slice(), 1));
    assert_eq!(g.rules[1], AccessRule::Tcp { ports: vec![9898] });
}

#[test]
fn path_regex_is_checked_as_the_proxy_anchors_it() {
    let mut st = shop();
    // Compiles alone, but not once anchored (the comment swallows `)$`).
    st.route_groups[0].spec = Ok(vec![http_match("read", "(?x)/api#", &["GET"])]);
    let out = render(&st);
    let r = report(&out, Kind::HttpRouteGroup, "api");
    assert!(!r.accepted.ok, "{r:?}");
    assert!(out.configs[&id("podinfo")].config.inbound.grants.is_empty());
}

#[test]
fn empty_tcp_ports_mean_all_and_unknown_match_names_are_reported() {
    let mut st = shop();
    st.tcp_routes[0].spec = Ok(vec![]);
    st.traffic_targets[0].spec = Ok(target(
        "podinfo",
        &["frontend"],
        vec![rule("HTTPRouteGroup", "api", Some(&["nope"]))],
    ));
    let out = render(&st);
    assert_eq!(
        out.configs[&id("db")].config.inbound.grants[0].rules,
        [AccessRule::Tcp { ports: vec![] }]
    );
    let r = report(&out, Kind::TrafficTarget, "frontend-to-podinfo");
    assert_eq!(r.resolved_refs.reason, reason::MATCH_NOT_FOUND);
    assert!(!r.accepted.ok, "no usable rule left");
    assert!(out.configs[&id("podinfo")].config.inbound.grants.is_empty());
}

#[test]
fn smi_mode_scopes_services_to_what_the_identity_may_call() {
    let out = render(&shop());
    let keys: Vec<_> = out.configs[&id("frontend")]
        .config
        .services
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            "shop/db",
            "shop/legacy",
            "shop/podinfo",
            "shop/podinfo-canary",
            "shop/podinfo-primary"
        ]
    );
    let vault_keys: Vec<_> = out.configs[&id("vault")]
        .config
        .services
        .keys()
        .cloned()
        .collect();
    assert_eq!(vault_keys, ["shop/legacy", "shop/vault"], "unmeshed + itself");
}

#[test]
fn retry_defaults_and_circuit_breaker_land_in_client_configs() {
    let out = render(&shop());
    let p = &out.configs[&id("frontend")].config.services["shop/podinfo"];
    let r = p.retry.clone().unwrap();
    assert_eq!(
        r.retry_on,
        [RetryOn::ServerError, RetryOn::ConnectFailure, RetryOn::Reset]
    );
    assert_eq!((r.num_retries, r.backoff.base_ms, r.backoff.max_ms), (2, 25, 250));
    assert_eq!(
        (r.budget.ratio, r.budget.min_per_second, r.budget.window_ms),
        (0.2, 10, 10_000)
    );
    let cb = p.circuit_breaker.clone().unwrap();
    assert_eq!(cb.breaker.unwrap().failure_rate_threshold, 50);
    let db_cfg = &out.configs[&id("podinfo")].config;
    assert!(
        db_cfg.services["shop/db"].retry.is_none(),
        "retry is only for its source"
    );
}

#[test]
fn retry_grpc_conditions_and_bad_durations() {
    let mut spec = shop().retries[0].spec.clone().unwrap();
    spec.retry_on = Some(vec!["unavailable".into(), "5xx".into(), "cancelled".into()]);
    let p = policy::retry_policy("a/b".into(), &spec).unwrap();
    assert_eq!(p.retry_on, [RetryOn::ServerError, RetryOn::Grpc]);
    assert_eq!(p.retriable_grpc_codes, [1, 14]);
    spec.timeout = Some("1s".into());
    spec.per_try_timeout = Some("2s".into());
    assert!(policy::retry_policy("a/b".into(), &spec).is_err());
    let mut st = shop();
    st.retries[0].spec = Ok(spec);
    let out = render(&st);
    assert_eq!(
        report(&out, Kind::Retry, "frontend-retry").accepted.reason,
        reason::INVALID_SPEC
    );
    assert!(
        out.configs[&id("frontend")].config.services["shop/podinfo"]
            .retry
            .is_none()
    );
}

#[test]
fn conflicting_breakers_keep_the_first() {
    let mut st = shop();
    let mut second = st.circuit_breakers[0].clone();
    second.name = "zz-cb".into();
    st.circuit_breakers.push(second);
    let out = render(&st);
    assert_eq!(
        report(&out, Kind::CircuitBreaker, "zz-cb").accepted.reason,
        reason::CONFLICTED
    );
    let cb = out.configs[&id("frontend")].config.services["shop/podinfo"]
        .circuit_breaker
        .clone()
        .unwrap();
    assert_eq!(cb.source, "shop/podinfo-cb");
}

#[test]
fn identities_without_service_account_are_skipped() {
    let mut st = shop();
    st.service_accounts.retain(|s| s.name != "vault");
    let out = render(&st);
    assert!(!out.configs.contains_key(&id("vault")));
    assert!(out.skipped.contains_key(&id("vault")));
}

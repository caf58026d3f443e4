//! TrafficMirror rendering: policies on the shared destination service, the
//! mirror target added to `smi`-scoped configs, and bad references.

use super::balancing_tests::{dest, from_catalog};
use super::report::reason;
use super::tests::{NS, id, report, shop};
use super::*;
use crate::api::mirror::{MirrorTarget, TrafficMirrorSpec};
use crate::operator::state::{Input, Kind};
use weft_proxy_config::MirrorPolicy;

fn mirror(name: &str, from: &str, to: &str) -> Input<TrafficMirrorSpec> {
    Input::ok(
        NS,
        name,
        TrafficMirrorSpec {
            destination: dest(from),
            mirror: MirrorTarget {
                name: to.into(),
                namespace: None,
                port: None,
            },
            percentage: None,
            max_body_bytes: None,
        },
    )
}

fn keys(out: &RenderOutput, sa: &str) -> Vec<String> {
    out.configs[&id(sa)].config.services.keys().cloned().collect()
}

#[test]
fn mirrors_land_on_the_shared_service_with_defaults() {
    let mut st = shop();
    st.traffic_mirrors.extend([
        mirror("b-copy", "podinfo", "legacy"),
        mirror("a-copy", "podinfo", "podinfo-canary"),
    ]);
    if let Ok(s) = &mut st.traffic_mirrors[0].spec {
        s.percentage = Some(12.5);
        s.max_body_bytes = Some(1024);
        s.mirror.port = Some(80);
    }
    let out = render(&st);
    for n in ["a-copy", "b-copy"] {
        assert!(report(&out, Kind::TrafficMirror, n).accepted.ok, "{n}");
    }
    let want = vec![
        MirrorPolicy {
            source: "shop/a-copy".into(),
            service: "shop/podinfo-canary".into(),
            port: None,
            percent: 100.0,
            max_body_bytes: 65_536,
        },
        MirrorPolicy {
            source: "shop/b-copy".into(),
            service: "shop/legacy".into(),
            port: Some(80),
            percent: 12.5,
            max_body_bytes: 1024,
        },
    ];
    for sa in ["frontend", "podinfo"] {
        assert_eq!(
            out.configs[&id(sa)].config.services["shop/podinfo"].mirrors,
            want,
            "{sa}"
        );
    }
    st.mesh.access_mode = AccessMode::Permissive;
    let out = render(&st);
    assert_eq!(from_catalog(&out, "shop/podinfo").mirrors, want);
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
}

#[test]
fn smi_configs_that_list_a_mirrored_service_also_list_its_target() {
    let mut st = shop();
    // vault is only in vault's own config; frontend may call podinfo.
    st.traffic_mirrors.push(mirror("to-vault", "podinfo", "vault"));
    let out = render(&st);
    assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    let front = keys(&out, "frontend");
    assert!(front.contains(&"shop/vault".to_string()), "{front:?}");
    out.configs[&id("frontend")].config.validate().unwrap();
    let db = keys(&out, "db");
    assert!(
        !db.contains(&"shop/podinfo".to_string()) && !db.contains(&"shop/vault".to_string()),
        "identities that cannot call podinfo gain nothing: {db:?}"
    );
    assert_eq!(
        out.configs[&id("frontend")].config.services["shop/podinfo"].mirrors[0].service,
        "shop/vault"
    );
}

#[test]
fn missing_services_self_mirrors_and_bad_ports_are_rejected() {
    let mut st = shop();
    st.traffic_mirrors.extend([
        mirror("no-target", "podinfo", "gone"),
        mirror("no-destination", "gone", "legacy"),
        mirror("self", "legacy", "legacy"),
        mirror("bad-port", "podinfo", "legacy"),
    ]);
    if let Ok(s) = &mut st.traffic_mirrors[2].spec {
        s.mirror.namespace = Some(NS.into());
    }
    if let Ok(s) = &mut st.traffic_mirrors[3].spec {
        s.mirror.port = Some(81);
    }
    let out = render(&st);
    for n in ["no-target", "no-destination"] {
        let r = report(&out, Kind::TrafficMirror, n);
        assert_eq!(r.accepted.reason, reason::SERVICE_NOT_FOUND, "{n}");
        assert_eq!(r.resolved_refs.reason, reason::SERVICE_NOT_FOUND, "{n}");
        assert!(r.accepted.message.contains("shop/gone"), "{r:?}");
    }
    let own = report(&out, Kind::TrafficMirror, "self");
    assert_eq!(own.accepted.reason, reason::INVALID_SPEC);
    assert!(own.accepted.message.starts_with("spec.mirror"), "{own:?}");
    let port = report(&out, Kind::TrafficMirror, "bad-port");
    assert_eq!(port.accepted.reason, reason::INVALID_SPEC);
    assert!(port.accepted.message.starts_with("spec.mirror.port"), "{port:?}");
    assert_eq!(port.resolved_refs.reason, reason::PORT_MISMATCH);
    let cfg = &out.configs[&id("frontend")].config;
    assert!(cfg.services.values().all(|s| s.mirrors.is_empty()));
}

#[test]
fn traffic_policies_render_the_same_whatever_the_input_order() {
    use crate::api::balancing::{Algorithm, LoadBalancingSpec};
    use crate::api::fault::{Abort, FaultInjectionSpec};
    let fault = |name: &str| {
        Input::ok(
            NS,
            name,
            FaultInjectionSpec {
                destination: dest("legacy"),
                source: None,
                matches: None,
                delay: None,
                abort: Some(Abort {
                    http_status: Some(500),
                    grpc_status: None,
                    percentage: 1.0,
                }),
            },
        )
    };
    let lb = |name: &str, algorithm| {
        Input::ok(
            NS,
            name,
            LoadBalancingSpec {
                destination: dest("podinfo"),
                ports: None,
                algorithm,
                consistent_hash: None,
            },
        )
    };
    let mut st = shop();
    st.fault_injections = vec![fault("f1"), fault("f2"), fault("f3")];
    st.traffic_mirrors = vec![
        mirror("m1", "podinfo", "legacy"),
        mirror("m2", "podinfo", "vault"),
    ];
    st.load_balancings = vec![lb("l1", Algorithm::Random), lb("l2", Algorithm::RoundRobin)];
    let a = render(&st);
    st.fault_injections.reverse();
    st.traffic_mirrors.reverse();
    st.load_balancings.reverse();
    let b = render(&st);
    let hashes = |o: &RenderOutput| o.configs.values().map(|c| c.hash.clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&a), hashes(&b));
    assert_eq!(a.reports, b.reports);
    assert_eq!(
        report(&b, Kind::LoadBalancing, "l2").accepted.reason,
        reason::CONFLICTED,
        "l1 wins by name, not by input order"
    );
}

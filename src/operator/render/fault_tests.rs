//! FaultInjection rendering: inline services in `smi` mode, the per-identity
//! overlay in `permissive` mode, source scoping and ordering, match conversion
//! as the proxy will evaluate it, and bad input.

use super::balancing_tests::{dest, from_catalog};
use super::report::reason;
use super::tests::{NS, id, report, shop};
use super::*;
use crate::api::fault::{Abort, Delay, FaultInjectionSpec, FaultMatch, GrpcMatch, PathMatch, PathMatchType};
use crate::api::policy::SourceRef;
use crate::operator::state::{Input, Kind};
use weft_proxy_config::{CatalogShard, compile_full};

fn source(sa: &str) -> Option<SourceRef> {
    Some(SourceRef {
        kind: "ServiceAccount".into(),
        name: sa.into(),
        namespace: None,
    })
}

fn abort(name: &str, service: &str, from: Option<&str>, status: u16) -> Input<FaultInjectionSpec> {
    Input::ok(
        NS,
        name,
        FaultInjectionSpec {
            destination: dest(service),
            source: from.and_then(source),
            matches: None,
            delay: None,
            abort: Some(Abort {
                http_status: Some(status),
                grpc_status: None,
                percentage: 50.0,
            }),
        },
    )
}

fn prefix(value: &str) -> FaultMatch {
    FaultMatch {
        path: Some(PathMatch {
            type_: Some(PathMatchType::PathPrefix),
            value: value.into(),
        }),
        method: Some("GET".into()),
        headers: None,
        grpc: None,
    }
}

fn sources(faults: &[weft_proxy_config::FaultPolicy]) -> Vec<&str> {
    faults.iter().map(|f| f.source.as_str()).collect()
}

#[test]
fn inline_faults_reach_only_the_source_identity() {
    let mut st = shop();
    let mut fi = abort("podinfo-faults", "podinfo", Some("frontend"), 503);
    if let Ok(s) = &mut fi.spec {
        s.delay = Some(Delay {
            fixed_delay: "1.5s".into(),
            percentage: 10.0,
        });
    }
    st.fault_injections.push(fi);
    let out = render(&st);
    assert!(report(&out, Kind::FaultInjection, "podinfo-faults").accepted.ok);
    let cfg = &out.configs[&id("frontend")].config;
    let f = &cfg.services["shop/podinfo"].faults;
    assert_eq!(sources(f), ["shop/podinfo-faults"]);
    let d = f[0].delay.clone().unwrap();
    assert_eq!((d.delay_ms, d.percent), (1500, 10.0));
    let a = f[0].abort.clone().unwrap();
    assert_eq!((a.http_status, a.grpc_status, a.percent), (Some(503), None, 50.0));
    assert!(cfg.faults.is_empty(), "inline services carry their faults");
    let podinfo = &out.configs[&id("podinfo")].config;
    assert!(podinfo.services.contains_key("shop/podinfo"));
    assert!(
        podinfo.services["shop/podinfo"].faults.is_empty(),
        "another identity is not affected"
    );
}

#[test]
fn no_source_means_every_identity_of_the_namespace_and_specific_ones_come_first() {
    let mut st = shop();
    st.fault_injections.extend([
        abort("a-everyone", "legacy", None, 500),
        abort("z-frontend", "legacy", Some("frontend"), 502),
        abort("b-everyone", "legacy", None, 503),
    ]);
    let out = render(&st);
    let front = &out.configs[&id("frontend")].config.services["shop/legacy"].faults;
    assert_eq!(
        sources(front),
        ["shop/z-frontend", "shop/a-everyone", "shop/b-everyone"]
    );
    let vault = &out.configs[&id("vault")].config.services["shop/legacy"].faults;
    assert_eq!(sources(vault), ["shop/a-everyone", "shop/b-everyone"]);
    let mut other_ns = shop();
    let mut elsewhere = abort("x", "legacy", None, 500);
    elsewhere.namespace = "other".into();
    if let Ok(s) = &mut elsewhere.spec {
        s.destination.namespace = Some(NS.into());
    }
    other_ns.fault_injections.push(elsewhere);
    let out = render(&other_ns);
    assert!(
        out.configs[&id("frontend")].config.services["shop/legacy"]
            .faults
            .is_empty(),
        "without a source only the FaultInjection's own namespace is affected"
    );
}

#[test]
fn permissive_mode_puts_faults_in_the_identity_overlay() {
    let mut st = shop();
    st.mesh.access_mode = AccessMode::Permissive;
    st.fault_injections
        .push(abort("vault-faults", "vault", Some("frontend"), 503));
    let out = render(&st);
    let cfg = out.configs[&id("frontend")].config.clone();
    assert!(cfg.services.is_empty());
    assert_eq!(sources(&cfg.faults["shop/vault"]), ["shop/vault-faults"]);
    assert!(
        from_catalog(&out, "shop/vault").faults.is_empty(),
        "the shared catalog holds no per-identity faults"
    );
    assert!(out.configs[&id("podinfo")].config.faults.is_empty());
    let shards = out
        .catalog
        .as_ref()
        .unwrap()
        .shards
        .iter()
        .map(|s| CatalogShard::from_json(&s.json).unwrap())
        .collect();
    let full = cfg.assemble(shards).unwrap();
    assert_eq!(
        sources(&full.services["shop/vault"].faults),
        ["shop/vault-faults"]
    );
}

#[test]
fn matches_convert_to_anchored_regexes() {
    let mut st = shop();
    let mut fi = abort("api-faults", "podinfo", Some("frontend"), 503);
    if let Ok(s) = &mut fi.spec {
        s.matches = Some(vec![
            prefix("/api"),
            FaultMatch {
                path: None,
                method: None,
                headers: None,
                grpc: Some(GrpcMatch {
                    service: Some("shop.v1.Cart".into()),
                    method: Some("Add".into()),
                }),
            },
        ]);
    }
    st.fault_injections.push(fi);
    let out = render(&st);
    let f = &out.configs[&id("frontend")].config.services["shop/podinfo"].faults[0];
    assert_eq!(f.matches.len(), 2);
    assert_eq!(f.matches[0].methods, ["GET"]);
    assert_eq!(f.matches[0].name, "api-faults/matches[0]");
    let re = compile_full(f.matches[0].path_regex.as_deref().unwrap()).unwrap();
    for (path, hit) in [("/api", true), ("/api/v1", true), ("/apix", false), ("/", false)] {
        assert_eq!(re.is_match(path), hit, "{path}");
    }
    let grpc = compile_full(f.matches[1].path_regex.as_deref().unwrap()).unwrap();
    assert!(grpc.is_match("/shop.v1.Cart/Add"));
    assert!(!grpc.is_match("/shop.v1.Cart/AddMore"));
}

#[test]
fn invalid_faults_are_rejected_and_not_emitted() {
    let mut st = shop();
    let with = |name: &str, f: &dyn Fn(&mut FaultInjectionSpec)| {
        let mut fi = abort(name, "podinfo", Some("frontend"), 503);
        if let Ok(s) = &mut fi.spec {
            f(s);
        }
        fi
    };
    st.fault_injections.extend([
        with("bad-regex", &|s| {
            s.matches = Some(vec![FaultMatch {
                path: Some(PathMatch {
                    type_: Some(PathMatchType::RegularExpression),
                    value: "/a)|(/b".into(),
                }),
                method: None,
                headers: None,
                grpc: None,
            }]);
        }),
        with("grpc-and-path", &|s| {
            let mut m = prefix("/x");
            m.grpc = Some(GrpcMatch {
                service: None,
                method: None,
            });
            s.matches = Some(vec![m]);
        }),
        with("zero-delay", &|s| {
            s.delay = Some(Delay {
                fixed_delay: "0s".into(),
                percentage: 1.0,
            });
        }),
        with("bad-percent", &|s| {
            s.abort = Some(Abort {
                http_status: Some(503),
                grpc_status: None,
                percentage: 101.0,
            });
        }),
        with("lower-method", &|s| {
            let mut m = prefix("/x");
            m.method = Some("get".into());
            s.matches = Some(vec![m]);
        }),
        with("nothing", &|s| s.abort = None),
        abort("gone", "nope", None, 503),
    ]);
    let out = render(&st);
    for (name, field) in [
        ("bad-regex", "spec.matches[0].path"),
        ("grpc-and-path", "spec.matches[0]"),
        ("zero-delay", "spec.delay.fixedDelay"),
        ("bad-percent", "spec.abort.percentage"),
        ("lower-method", "spec.matches[0].method"),
        ("nothing", "spec must set at least one of delay, abort"),
    ] {
        let r = report(&out, Kind::FaultInjection, name);
        assert_eq!(r.accepted.reason, reason::INVALID_SPEC, "{name}: {r:?}");
        assert!(r.accepted.message.starts_with(field), "{name}: {r:?}");
    }
    let gone = report(&out, Kind::FaultInjection, "gone");
    assert_eq!(gone.accepted.reason, reason::SERVICE_NOT_FOUND);
    let cfg = &out.configs[&id("frontend")].config;
    assert!(cfg.services["shop/podinfo"].faults.is_empty());
    cfg.validate().unwrap();
}

//! `permissive` access mode: configs reference the shared service catalog, and
//! a config assembled from it (what the proxy runs) is a superset of the `smi`
//! render with identical services and retry policies where they overlap.

use super::tests::{id, shop};
use super::*;
use crate::operator::state::ClusterState;
use weft_proxy_config::{CatalogShard, Protocol};

fn st_permissive() -> ClusterState {
    let mut st = shop();
    st.mesh.access_mode = AccessMode::Permissive;
    st
}

/// What the proxy does: fetch the referenced shards and assemble.
fn assembled(out: &RenderOutput, sa: &str) -> ProxyConfig {
    let cfg = out.configs[&id(sa)].config.clone();
    let catalog = out.catalog.as_ref().expect("permissive renders a catalog");
    let by_name: BTreeMap<&str, &RenderedShard> =
        catalog.shards.iter().map(|s| (s.name.as_str(), s)).collect();
    assert!(cfg.catalog.is_some(), "config references the catalog");
    let shards = catalog
        .index()
        .shards
        .iter()
        .map(|n| CatalogShard::from_json(&by_name[n.as_str()].json).unwrap())
        .collect();
    cfg.assemble(shards).unwrap()
}

#[test]
fn configs_reference_one_catalog_instead_of_copying_services() {
    let out = render(&st_permissive());
    let catalog = out.catalog.as_ref().unwrap();
    assert_eq!(catalog.namespace, "weft-system");
    assert_eq!(out.configs.len(), 4);
    for (key, rendered) in &out.configs {
        let c = &rendered.config;
        assert!(c.services.is_empty(), "{key:?} copies services");
        assert_eq!(c.catalog, Some(catalog.reference()));
        assert!(
            c.validate().is_err(),
            "unassembled configs are never applied as they are"
        );
    }
    assert_eq!(assembled(&out, "vault").services.len(), 6);
    assert!(
        render(&shop()).catalog.is_none(),
        "smi mode keeps inline, scoped configs"
    );
}

#[test]
fn assembled_config_matches_the_smi_render_where_they_overlap() {
    let smi = render(&shop());
    let out = render(&st_permissive());
    assert!(
        out.configs[&id("frontend")]
            .config
            .retries
            .contains_key("shop/podinfo")
    );
    for sa in ["frontend", "podinfo", "db", "vault"] {
        let full = assembled(&out, sa);
        let scoped = &smi.configs[&id(sa)].config;
        assert_eq!(full.inbound.ports, scoped.inbound.ports, "{sa}");
        for (k, svc) in &scoped.services {
            assert_eq!(&full.services[k], svc, "{sa}: {k} (incl. its retry policy)");
        }
        let retried: Vec<&String> = full
            .services
            .iter()
            .filter(|(_, s)| s.retry.is_some())
            .map(|(k, _)| k)
            .collect();
        let expected: Vec<&String> = scoped
            .services
            .iter()
            .filter(|(_, s)| s.retry.is_some())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(retried, expected, "{sa}: retries stay per source identity");
    }
}

#[test]
fn endpoints_carry_identity_only_when_meshed() {
    let out = render(&st_permissive());
    let svcs = assembled(&out, "frontend").services;
    let legacy = &svcs["shop/legacy"].ports[0];
    assert_eq!(legacy.port, 80);
    assert_eq!(legacy.endpoints[0].port, 8080);
    assert_eq!(legacy.endpoints[0].identity, None);
    let canary = &svcs["shop/podinfo-canary"].ports[0].endpoints[0];
    assert_eq!(
        canary.identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/podinfo")
    );
    assert!(!canary.ready);
    assert_eq!(canary.pod.as_deref(), Some("canary-1"));
    assert_eq!(svcs["shop/vault"].ports[0].protocol, Protocol::Grpc);
}

#[test]
fn an_unbuildable_catalog_skips_every_identity_with_the_reason() {
    let mut st = st_permissive();
    st.services[0].ports[0].port = 0;
    let out = render(&st);
    assert!(out.configs.is_empty() && out.catalog.is_none());
    assert_eq!(out.skipped.len(), 4);
    assert!(
        out.skipped.values().all(|r| r.starts_with("service catalog:")),
        "{:?}",
        out.skipped
    );
}

#[test]
fn a_catalog_change_leaves_every_identity_config_untouched() {
    let before = render(&st_permissive());
    let mut st = st_permissive();
    st.endpoint_slices[0].endpoints[0].ready = !st.endpoint_slices[0].endpoints[0].ready;
    let after = render(&st);
    assert_ne!(
        before.catalog.as_ref().unwrap().names(),
        after.catalog.as_ref().unwrap().names(),
        "the endpoint change moved to a new shard"
    );
    for (key, c) in &before.configs {
        assert_eq!(
            c.hash, after.configs[key].hash,
            "{key:?} rewritten by a catalog change"
        );
    }
}

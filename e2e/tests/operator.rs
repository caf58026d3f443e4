//! The operator against a real API server (shared control plane of this binary), run
//! in-process as a library call: a Flagger-style v1alpha1 TrafficSplit reaches the
//! client's ConfigMap and weight updates land within 1 s; TrafficTarget + routes reach
//! the destination's grants; Retry and CircuitBreaker reach the clients; a restart
//! writes nothing when nothing changed and keeps the CA; no Secret in a meshed namespace
//! holds a private key (issue 14 item 6) and the trust bundle follows a CA rollover;
//! leadership fails over; an edited ConfigMap or Role that kept its hash annotation is
//! restored. Tests take a global lock: every operator watches the whole
//! cluster, so two running at once would fight over each other's objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::{Duration, Instant};

use fixtures::operator_run::*;
use fixtures::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_controller::certs::store::CA_SECRET;
use weft_controller::operator::Options;
use weft_controller::operator::leader::LeaseConfig;
use weft_proxy_config::{AccessRule, ProxyConfig};

/// Flagger's objects for `podinfo` plus a meshed `frontend` client allowed to call it
/// (in the default `smi` access mode a client's config lists only what it may call).
async fn flagger_shop(client: &Client, ns: &str) {
    workload(client, ns, "frontend", "frontend-1", &[], "198.18.10.1").await;
    workload(
        client,
        ns,
        "podinfo",
        "podinfo-primary-1",
        &["podinfo", "podinfo-primary"],
        "198.18.10.2",
    )
    .await;
    workload(
        client,
        ns,
        "podinfo",
        "podinfo-canary-1",
        &["podinfo-canary"],
        "198.18.10.3",
    )
    .await;
    create_dyn(
        client,
        ns,
        "specs.smi-spec.io",
        "v1alpha4",
        "TCPRoute",
        "shop-tcp",
        json!({}),
    )
    .await;
    create_dyn(
        client,
        ns,
        "access.smi-spec.io",
        "v1alpha3",
        "TrafficTarget",
        "shop-access",
        json!({
        "destination": {"kind": "ServiceAccount", "name": "podinfo"},
        "rules": [{"kind": "TCPRoute", "name": "shop-tcp"}],
        "sources": [{"kind": "ServiceAccount", "name": "frontend"}]}),
    )
    .await;
}

fn split_weights(c: &ProxyConfig, ns: &str) -> Option<Vec<(String, u64)>> {
    let s = c.services.get(&format!("{ns}/podinfo"))?.split.as_ref()?;
    Some(s.backends.iter().map(|b| (b.service.clone(), b.weight)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagger_v1alpha1_split_updates_within_a_second_and_delete_restores_routing() {
    let (_guard, ns, client) = setup("op-split").await;
    let ns = ns.name().to_string();
    flagger_shop(&client, &ns).await;
    let op = Running::single(&client, "op-split");

    let splits = dynamic(&client, &ns, "split.smi-spec.io", "v1alpha1", "TrafficSplit");
    create_dyn(&client, &ns, "split.smi-spec.io", "v1alpha1", "TrafficSplit", "podinfo", json!({
        "service": "podinfo",
        "backends": [{"service": "podinfo-canary", "weight": "0"}, {"service": "podinfo-primary", "weight": "100"}],
    }))
    .await;
    let canary = format!("{ns}/podinfo-canary");
    let primary = format!("{ns}/podinfo-primary");
    let initial = vec![(canary.clone(), 0), (primary.clone(), 100_000)];
    until_config(&client, &ns, "frontend", Duration::from_secs(30), |c| {
        split_weights(c, &ns) == Some(initial.clone())
    })
    .await;
    let g = until_condition(&splits, "podinfo", "Accepted", ("True", "Accepted")).await;
    assert_eq!(g, Some(1));

    // Flagger's SetRoutes: GET, rewrite backends, Update.
    let mut obj = splits.get("podinfo").await.unwrap();
    obj.data["spec"]["backends"] = json!([{"service": "podinfo-canary", "weight": "30"}, {"service": "podinfo-primary", "weight": "70"}]);
    let began = Instant::now();
    splits
        .replace("podinfo", &PostParams::default(), &obj)
        .await
        .unwrap();
    let want = vec![(canary.clone(), 30_000), (primary.clone(), 70_000)];
    until_config(&client, &ns, "frontend", Duration::from_secs(5), |c| {
        split_weights(c, &ns) == Some(want.clone())
    })
    .await;
    let latency = began.elapsed();
    eprintln!(
        "operator: weight update visible in the client ConfigMap after {} ms",
        latency.as_millis()
    );
    assert!(
        latency < Duration::from_millis(1000),
        "weight update took {latency:?} (budget 1 s)"
    );
    // Weights are never rewritten: the stored v1alpha1 object still holds quantity strings.
    let stored = splits.get("podinfo").await.unwrap();
    assert_eq!(stored.data["spec"]["backends"][0]["weight"], json!("30"));
    let began = Instant::now();
    while condition(&splits, "podinfo", "Accepted").await.and_then(|c| c.2) != Some(2) {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "status never observed generation 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    splits.delete("podinfo", &DeleteParams::default()).await.unwrap();
    until_config(&client, &ns, "frontend", Duration::from_secs(10), |c| {
        c.services.contains_key(&format!("{ns}/podinfo")) && split_weights(c, &ns).is_none()
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_policies_land_in_configs_and_bad_refs_are_reported() {
    let (_guard, ns, client) = setup("op-access").await;
    let ns = ns.name().to_string();
    flagger_shop(&client, &ns).await;
    let op = Running::single(&client, "op-access");
    create_dyn(
        &client,
        &ns,
        "specs.smi-spec.io",
        "v1alpha4",
        "HTTPRouteGroup",
        "api",
        json!({"matches": [
        {"name": "read", "pathRegex": "/api/.*", "methods": ["GET"]},
        {"name": "admin", "pathRegex": "/admin", "methods": ["POST"], "headers": [{"x-admin": "yes"}]}]}),
    )
    .await;
    create_dyn(
        &client,
        &ns,
        "specs.smi-spec.io",
        "v1alpha4",
        "TCPRoute",
        "all-ports",
        json!({"matches": {"ports": []}}),
    )
    .await;
    create_dyn(&client, &ns, "access.smi-spec.io", "v1alpha3", "TrafficTarget", "frontend-to-podinfo", json!({
        "destination": {"kind": "ServiceAccount", "name": "podinfo", "namespace": ns},
        "rules": [{"kind": "HTTPRouteGroup", "name": "api", "matches": ["read"]}, {"kind": "TCPRoute", "name": "all-ports"}],
        "sources": [{"kind": "ServiceAccount", "name": "frontend", "namespace": ns}]}))
    .await;
    create_dyn(
        &client,
        &ns,
        "policy.weft.dev",
        "v1alpha1",
        "Retry",
        "frontend-retry",
        json!({
        "source": {"kind": "ServiceAccount", "name": "frontend"},
        "destinations": [{"kind": "Service", "name": "podinfo"}], "numRetries": 3, "perTryTimeout": "250ms"}),
    )
    .await;
    create_dyn(
        &client,
        &ns,
        "policy.weft.dev",
        "v1alpha1",
        "CircuitBreaker",
        "podinfo-cb",
        json!({
        "destination": {"kind": "Service", "name": "podinfo"},
        "outlierDetection": {"consecutive5xx": 3}, "breaker": {"failureRateThreshold": 50}}),
    )
    .await;
    // Bad input: a split to a missing backend only.
    create_dyn(
        &client,
        &ns,
        "split.smi-spec.io",
        "v1alpha4",
        "TrafficSplit",
        "broken",
        json!({
        "service": "podinfo", "backends": [{"service": "nope", "weight": 10}]}),
    )
    .await;

    let podinfo_ns = ns.clone();
    until_config(&client, &ns, "podinfo", Duration::from_secs(30), |c| {
        let Some(g) = c.inbound.grants.first() else {
            return false;
        };
        g.sources == [format!("spiffe://cluster.local/ns/{podinfo_ns}/sa/frontend")]
            && matches!(&g.rules[..], [AccessRule::Http { matches, .. }, AccessRule::Tcp { ports }]
                if matches.len() == 1 && matches[0].name == "api/read" && ports.is_empty())
    })
    .await;
    let key = format!("{ns}/podinfo");
    until_config(&client, &ns, "frontend", Duration::from_secs(10), |c| {
        let Some(s) = c.services.get(&key) else {
            return false;
        };
        let r = s
            .retry
            .as_ref()
            .is_some_and(|r| r.num_retries == 3 && r.per_try_timeout_ms == Some(250));
        let cb = s.circuit_breaker.as_ref().is_some_and(|b| {
            b.outlier_detection.as_ref().and_then(|o| o.consecutive_5xx) == Some(3) && b.breaker.is_some()
        });
        r && cb && s.split.is_none()
    })
    .await;
    let (_, cm) = config(&client, &ns, "frontend").await.unwrap();
    let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ServiceAccount", "frontend")
    );
    assert!(
        cm.metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("weft.dev/config-hash")
    );
    let role = Api::<Role>::namespaced(client.clone(), &ns)
        .get("weft-proxy-frontend")
        .await
        .unwrap();
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref(),
        Some(&["weft-proxy-frontend".to_string()][..])
    );
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .get("weft-proxy-frontend")
        .await
        .unwrap();
    // The namespace gets the public trust bundle (sidecars get certificates by CSR).
    let bundle = until_bundle(&client, &ns, |_| true).await;
    assert!(bundle.contains("BEGIN CERTIFICATE") && !bundle.contains("PRIVATE KEY"));

    let ts = dynamic(&client, &ns, "split.smi-spec.io", "v1alpha4", "TrafficSplit");
    until_condition(&ts, "broken", "ResolvedRefs", ("False", "BackendNotFound")).await;
    until_condition(&ts, "broken", "Accepted", ("False", "NoBackends")).await;
    let tt = dynamic(&client, &ns, "access.smi-spec.io", "v1alpha3", "TrafficTarget");
    until_condition(&tt, "frontend-to-podinfo", "Accepted", ("True", "Accepted")).await;
    op.stop().await;
}

async fn versions(client: &Client, ns: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rv = |k: &str, n: &str, m: &kube::api::ObjectMeta| {
        (format!("{k}/{n}"), m.resource_version.clone().unwrap())
    };
    for sa in ["frontend", "podinfo"] {
        let name = format!("weft-proxy-{sa}");
        out.push(rv(
            "cm",
            &name,
            &Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .unwrap()
                .metadata,
        ));
        out.push(rv(
            "role",
            &name,
            &Api::<Role>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .unwrap()
                .metadata,
        ));
        out.push(rv(
            "rb",
            &name,
            &Api::<RoleBinding>::namespaced(client.clone(), ns)
                .get(&name)
                .await
                .unwrap()
                .metadata,
        ));
    }
    out.push(rv(
        "cm",
        "weft-ca-bundle",
        &Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get("weft-ca-bundle")
            .await
            .unwrap()
            .metadata,
    ));
    let ca = Api::<Secret>::namespaced(client.clone(), SYSTEM_NS)
        .get(CA_SECRET)
        .await
        .unwrap();
    out.push(rv("secret", CA_SECRET, &ca.metadata));
    let ts = dynamic(client, ns, "split.smi-spec.io", "v1alpha4", "TrafficSplit")
        .get("podinfo")
        .await
        .unwrap();
    out.push(rv("trafficsplit", "podinfo", &ts.metadata));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_writes_nothing_when_nothing_changed_and_keeps_the_ca() {
    let (_guard, ns, client) = setup("op-restart").await;
    let ns = ns.name().to_string();
    // Configs list services cluster-wide: wait until earlier tests' namespaces are gone.
    let nss: Api<Namespace> = Api::all(client.clone());
    let began = Instant::now();
    loop {
        let label = format!("{}=true", weft_e2e::namespace::TEST_LABEL);
        let list = nss
            .list(&kube::api::ListParams::default().labels(&label))
            .await
            .unwrap();
        if list
            .items
            .iter()
            .all(|n| n.metadata.name.as_deref() == Some(ns.as_str()))
        {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "earlier test namespaces linger"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    flagger_shop(&client, &ns).await;
    create_dyn(&client, &ns, "split.smi-spec.io", "v1alpha2", "TrafficSplit", "podinfo", json!({
        "service": "podinfo", "backends": [{"service": "podinfo-canary", "weight": 0}, {"service": "podinfo-primary", "weight": 100}]}))
    .await;
    let first = Running::single(&client, "op-restart-1");
    until_config(&client, &ns, "frontend", Duration::from_secs(30), |c| {
        split_weights(c, &ns).is_some()
    })
    .await;
    let ts = dynamic(&client, &ns, "split.smi-spec.io", "v1alpha4", "TrafficSplit");
    until_condition(&ts, "podinfo", "Accepted", ("True", "Accepted")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = versions(&client, &ns).await;
    let ca_before = Api::<Secret>::namespaced(client.clone(), SYSTEM_NS)
        .get(CA_SECRET)
        .await
        .unwrap();
    first.stop().await;

    let second = Running::single(&client, "op-restart-2");
    let began = Instant::now();
    while second.reconciles() == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "second operator never reconciled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = versions(&client, &ns).await;
    assert_eq!(before, after, "a restart with unchanged input must not write");
    let ca_after = Api::<Secret>::namespaced(client.clone(), SYSTEM_NS)
        .get(CA_SECRET)
        .await
        .unwrap();
    assert_eq!(ca_before.metadata.uid, ca_after.metadata.uid);
    assert_eq!(ca_before.data, ca_after.data, "the CA survives restarts");
    second.stop().await;
}

/// The `ca.crt` of ConfigMap `weft-ca-bundle` in `ns` once `ok` accepts it.
async fn until_bundle(client: &Client, ns: &str, ok: impl Fn(&str) -> bool) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let began = Instant::now();
    loop {
        if let Some(cm) = cms.get_opt("weft-ca-bundle").await.unwrap()
            && let Some(b) = cm.data.as_ref().and_then(|d| d.get("ca.crt"))
            && ok(b)
        {
            return b.clone();
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no (matching) weft-ca-bundle in {ns}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 14 item 6: no Secret in a meshed namespace holds a private key. Identity
/// Secrets of earlier versions are deleted on upgrade; the public bundle follows a CA
/// rollover (a root added to `weft-ca`'s `ca.crt` reaches every meshed namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_a_meshed_namespace_holds_a_private_key() {
    let (_guard, ns, client) = setup("op-nokeys").await;
    let ns = ns.name().to_string();
    // What an earlier version left behind: an identity Secret with the workload key.
    let old = weft_controller::certs::MeshCa::generate("cluster.local", time_now()).unwrap();
    let legacy: Secret = serde_json::from_value(json!({
        "metadata": {"name": "weft-identity-frontend",
            "labels": {"weft.dev/managed-by": "weft", "weft.dev/identity": "frontend"}},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": old.cert_pem(), "tls.key": old.key_pem(), "ca.crt": old.cert_pem()}}))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets.create(&PostParams::default(), &legacy).await.unwrap();
    flagger_shop(&client, &ns).await;
    let op = Running::single(&client, "op-nokeys");
    until_config(&client, &ns, "frontend", Duration::from_secs(30), |_| true).await;
    let bundle = until_bundle(&client, &ns, |_| true).await;
    let began = Instant::now();
    while secrets.get_opt("weft-identity-frontend").await.unwrap().is_some() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "legacy identity Secret not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for s in secrets.list(&Default::default()).await.unwrap() {
        let name = s.metadata.name.clone().unwrap_or_default();
        for (k, v) in s.data.iter().flatten() {
            let text = String::from_utf8_lossy(&v.0);
            assert!(
                !text.contains("PRIVATE KEY"),
                "Secret {name} key {k} holds a private key"
            );
        }
        assert!(!name.starts_with("weft-identity-"), "identity Secret {name}");
    }
    // CA rollover step 1: a new root added to the bundle reaches the namespace.
    let cas: Api<Secret> = Api::namespaced(client.clone(), SYSTEM_NS);
    let original = cas.get(CA_SECRET).await.unwrap();
    let extra = weft_controller::certs::MeshCa::generate("cluster.local", time_now()).unwrap();
    let with_new = format!("{}{}", bundle, extra.cert_pem());
    let patch = json!({"data": {"ca.crt": base64_std(&with_new)}});
    cas.patch(CA_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let rolled = until_bundle(&client, &ns, |b| b.contains(extra.cert_pem().trim())).await;
    assert!(rolled.starts_with(bundle.trim()), "the signing root stays first");
    // Put the CA back as it was (other tests share it).
    let restore = json!({"data": {"ca.crt": base64_std(&String::from_utf8(
        original.data.as_ref().unwrap()["ca.crt"].0.clone()).unwrap())}});
    cas.patch(CA_SECRET, &PatchParams::default(), &Patch::Merge(&restore))
        .await
        .unwrap();
    until_bundle(&client, &ns, |b| !b.contains(extra.cert_pem().trim())).await;
    op.stop().await;
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_only_the_leader_writes() {
    let (_guard, ns, client) = setup("op-leader").await;
    let ns = ns.name().to_string();
    flagger_shop(&client, &ns).await;
    let lease_cfg = |who: &str| {
        let mut l = LeaseConfig::new(&ns, who);
        l.name = "weft-e2e-leader".into();
        l.lease_duration = Duration::from_secs(2);
        l.renew_interval = Duration::from_millis(400);
        let mut o = Options::new(SYSTEM_NS, who);
        o.lease = Some(l);
        o
    };
    let a = Running::start(&client, lease_cfg("replica-a"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let began = Instant::now();
    while leases
        .get_opt("weft-e2e-leader")
        .await
        .unwrap()
        .and_then(holder)
        .as_deref()
        != Some("replica-a")
    {
        assert!(began.elapsed() < Duration::from_secs(30), "replica-a never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = Running::start(&client, lease_cfg("replica-b"));
    until_config(&client, &ns, "frontend", Duration::from_secs(30), |c| {
        c.services.contains_key(&format!("{ns}/podinfo"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.writes() > 0, "the leader wrote");
    assert_eq!(b.writes(), 0, "the follower must not write");
    assert!(
        b.handles.ready.load(std::sync::atomic::Ordering::SeqCst),
        "the follower keeps warm caches"
    );

    // Crash the leader (no lease release): the follower takes over after the lease expires.
    drop(a);
    let crashed = Instant::now();
    create_dyn(&client, &ns, "split.smi-spec.io", "v1alpha4", "TrafficSplit", "podinfo", json!({
        "service": "podinfo", "backends": [{"service": "podinfo-canary", "weight": 10}, {"service": "podinfo-primary", "weight": 90}]}))
    .await;
    until_config(&client, &ns, "frontend", Duration::from_secs(15), |c| {
        split_weights(c, &ns).is_some()
    })
    .await;
    let took = crashed.elapsed();
    eprintln!("operator: failover + reconcile took {} ms", took.as_millis());
    assert_eq!(
        leases
            .get("weft-e2e-leader")
            .await
            .ok()
            .and_then(holder)
            .as_deref(),
        Some("replica-b")
    );
    assert!(b.writes() > 0, "the new leader writes");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_config_and_role_keeping_the_hash_annotation_are_restored_in_one_reconcile() {
    let (_guard, ns, client) = setup("op-drift").await;
    let ns = ns.name().to_string();
    flagger_shop(&client, &ns).await;
    let op = Running::single(&client, "op-drift");
    until_config(&client, &ns, "frontend", Duration::from_secs(30), |c| {
        c.services.contains_key(&format!("{ns}/podinfo"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    let name = "weft-proxy-frontend";
    let original = cms.get(name).await.unwrap();
    let original_role = roles.get(name).await.unwrap();
    let hash = original.metadata.annotations.as_ref().unwrap()["weft.dev/config-hash"].clone();

    // An edit that keeps the hash annotation: another identity's config, and a Role
    // widened to every ConfigMap of the namespace.
    let before = op.reconciles();
    let forged = r#"{"schemaVersion":1}"#;
    cms.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"config.json": forged}})),
    )
    .await
    .unwrap();
    roles
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"],
                "verbs": ["get", "list", "watch"]}]})),
        )
        .await
        .unwrap();
    let began = Instant::now();
    loop {
        let cm = cms.get(name).await.unwrap();
        let role = roles.get(name).await.unwrap();
        assert_eq!(
            cm.metadata.annotations.as_ref().unwrap()["weft.dev/config-hash"],
            hash
        );
        if cm.data == original.data && role.rules == original_role.rules {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "drift not restored within 5 s ({} reconciles since the edit)",
            op.reconciles() - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reconciles = op.reconciles() - before;
    eprintln!(
        "operator: drift restored after {} ms, {reconciles} reconcile(s)",
        began.elapsed().as_millis()
    );
    // The edits' reconcile restores both (each edit may wake one; the write echoes once).
    assert!(reconciles <= 3, "took {reconciles} reconciles");
    op.stop().await;
}

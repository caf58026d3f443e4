//! The traffic-policy kinds (LoadBalancing, FaultInjection, TrafficMirror) against a real
//! API server: invalid objects are refused at admission by the CRDs' schema and CEL rules
//! with messages naming the field, and the operator (in-process) renders valid ones into
//! the client's config, including the mirror target in `smi` access mode, and reports
//! Accepted or why not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::time::Duration;

use fixtures::operator_run::*;
use fixtures::*;
use kube::Client;
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};
use weft_proxy_config::{HashKey, LoadBalancer};

const GROUP: &str = "policy.weft.dev";

/// Creating `kind` `name` with `spec` fails, with a message containing each of `want`.
async fn refused(client: &Client, ns: &str, kind: &str, name: &str, spec: Value, want: &[&str]) {
    let api = dynamic(client, ns, GROUP, "v1alpha1", kind);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "policy.weft.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec}))
    .unwrap();
    let err = match api.create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("{kind} {name} was accepted at admission"),
        Err(e) => e.to_string(),
    };
    for w in want {
        assert!(err.contains(w), "{kind} {name}: {err:?} should mention {w:?}");
    }
    eprintln!(
        "{kind} {name} refused: {}",
        err.split(": Invalid (Status").next().unwrap_or(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_traffic_policies_are_refused_with_the_field_named() {
    let (_guard, ns, client) = setup("op-traffic-cel").await;
    let ns = ns.name();
    let svc = json!({"kind": "Service", "name": "server"});
    refused(
        &client,
        ns,
        "LoadBalancing",
        "no-hash",
        json!({"destination": svc, "algorithm": "consistentHash"}),
        &["spec.consistentHash must be set when spec.algorithm is consistentHash"],
    )
    .await;
    refused(
        &client,
        ns,
        "LoadBalancing",
        "two-keys",
        json!({"destination": svc, "algorithm": "consistentHash",
        "consistentHash": {"header": "x-user", "sourceIp": true}}),
        &["spec.consistentHash must set exactly one of header, cookie, sourceIp"],
    )
    .await;
    refused(
        &client,
        ns,
        "LoadBalancing",
        "bad-algo",
        json!({"destination": svc, "algorithm": "fastest"}),
        &["spec.algorithm"],
    )
    .await;
    refused(
        &client,
        ns,
        "FaultInjection",
        "nothing",
        json!({"destination": svc}),
        &["spec must set at least one of delay, abort"],
    )
    .await;
    refused(
        &client,
        ns,
        "FaultInjection",
        "no-status",
        json!({"destination": svc, "abort": {"percentage": 5}}),
        &["spec.abort must set at least one of httpStatus, grpcStatus"],
    )
    .await;
    refused(
        &client,
        ns,
        "FaultInjection",
        "too-much",
        json!({"destination": svc,
        "abort": {"httpStatus": 503, "percentage": 150}}),
        &["spec.abort.percentage"],
    )
    .await;
    refused(
        &client,
        ns,
        "FaultInjection",
        "zero-delay",
        json!({"destination": svc,
        "delay": {"fixedDelay": "0s", "percentage": 10}}),
        &["spec.delay.fixedDelay must be greater than 0s"],
    )
    .await;
    refused(
        &client,
        ns,
        "TrafficMirror",
        "self",
        json!({"destination": svc, "mirror": {"name": "server"}}),
        &["spec.mirror must differ from spec.destination"],
    )
    .await;
    refused(
        &client,
        ns,
        "TrafficMirror",
        "huge",
        json!({"destination": svc, "mirror": {"name": "shadow"},
        "maxBodyBytes": 2_000_000}),
        &["spec.maxBodyBytes"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_policies_reach_the_client_config_and_report_status() {
    let (_guard, ns, client) = setup("op-traffic").await;
    let ns = ns.name().to_string();
    workload(&client, &ns, "server", "server-0", &["server"], "198.18.77.10").await;
    workload(&client, &ns, "shadow", "shadow-0", &["shadow"], "198.18.77.11").await;
    workload(&client, &ns, "client", "client-0", &[], "198.18.77.12").await;
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
    // client may call server only; the mirror target must still reach its config.
    create_dyn(
        &client,
        &ns,
        "access.smi-spec.io",
        "v1alpha3",
        "TrafficTarget",
        "client-to-server",
        json!({
        "destination": {"kind": "ServiceAccount", "name": "server", "namespace": ns},
        "rules": [{"kind": "TCPRoute", "name": "all-ports"}],
        "sources": [{"kind": "ServiceAccount", "name": "client", "namespace": ns}]}),
    )
    .await;
    let svc = json!({"kind": "Service", "name": "server"});
    create_dyn(
        &client,
        &ns,
        GROUP,
        "v1alpha1",
        "LoadBalancing",
        "server-lb",
        json!({"destination": svc,
        "algorithm": "consistentHash",
        "consistentHash": {"cookie": {"name": "session", "ttl": "1h"}, "table": "maglev"}}),
    )
    .await;
    create_dyn(
        &client,
        &ns,
        GROUP,
        "v1alpha1",
        "FaultInjection",
        "server-faults",
        json!({"destination": svc,
        "source": {"kind": "ServiceAccount", "name": "client"},
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}],
        "abort": {"httpStatus": 503, "percentage": 10}, "delay": {"fixedDelay": "200ms", "percentage": 20}}),
    )
    .await;
    create_dyn(
        &client,
        &ns,
        GROUP,
        "v1alpha1",
        "TrafficMirror",
        "server-mirror",
        json!({"destination": svc,
        "mirror": {"name": "shadow"}, "percentage": 50}),
    )
    .await;
    create_dyn(
        &client,
        &ns,
        GROUP,
        "v1alpha1",
        "TrafficMirror",
        "to-nowhere",
        json!({"destination": svc,
        "mirror": {"name": "missing"}}),
    )
    .await;
    let op = Running::single(&client, "op-traffic");

    let (server, shadow) = (format!("{ns}/server"), format!("{ns}/shadow"));
    let took = until_config(&client, &ns, "client", Duration::from_secs(30), |c| {
        let Some(s) = c.services.get(&server) else {
            return false;
        };
        c.services.contains_key(&shadow)
            && s.mirrors.len() == 1
            && !s.faults.is_empty()
            && matches!(&s.load_balancer, LoadBalancer::ConsistentHash { key: HashKey::Cookie(n), cookie: Some(g), .. }
                if n == "session" && g.ttl_ms == 3_600_000)
    })
    .await;
    let (c, _) = config(&client, &ns, "client").await.unwrap();
    let s = &c.services[&server];
    eprintln!(
        "client config has the traffic policies after {took:?}: lb {:?}, faults {:?}, mirrors {:?}",
        s.load_balancer, s.faults, s.mirrors
    );
    let m = &s.mirrors[0];
    assert_eq!(
        (m.service.as_str(), m.percent, m.max_body_bytes),
        (shadow.as_str(), 50.0, 65_536)
    );
    let f = &s.faults[0];
    assert_eq!(f.source, format!("{ns}/server-faults"));
    assert_eq!(
        f.abort.as_ref().map(|a| (a.http_status, a.percent)),
        Some((Some(503), 10.0))
    );
    assert_eq!(
        f.delay.as_ref().map(|d| (d.delay_ms, d.percent)),
        Some((200, 20.0))
    );
    assert_eq!(f.matches.len(), 1);
    assert_eq!(f.matches[0].methods, ["GET"]);
    let re = weft_proxy_config::compile_full(f.matches[0].path_regex.as_deref().unwrap()).unwrap();
    assert!(re.is_match("/api") && re.is_match("/api/books") && !re.is_match("/apix"));
    // The server's own config (it calls nothing) carries none of the client's faults.
    let (sc, _) = config(&client, &ns, "server").await.unwrap();
    assert!(sc.services.values().all(|s| s.faults.is_empty()));

    for (kind, name, want) in [
        ("LoadBalancing", "server-lb", ("True", "Accepted")),
        ("FaultInjection", "server-faults", ("True", "Accepted")),
        ("TrafficMirror", "server-mirror", ("True", "Accepted")),
        ("TrafficMirror", "to-nowhere", ("False", "ServiceNotFound")),
    ] {
        let api = dynamic(&client, &ns, GROUP, "v1alpha1", kind);
        let generation = until_condition(&api, name, "Accepted", want).await;
        assert_eq!(generation, Some(1), "{kind} {name}: observedGeneration");
    }
    op.stop().await;
}

//! The suite's pods while it runs (injected by weft, Ready), cleaning up the namespaces a
//! killed run leaves, and the harness's own verdict on a run.

use super::{ConformanceError, Report, Suite, SuiteRun, failed_in_log};
use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// What the suite's pods looked like while it ran: per pod (`<ns>/<name>`), whether it ran
/// weft (injected with weft-init + weft-proxy, or one of weft's gateway pods) and whether it
/// was seen Ready.
pub type PodsSeen = BTreeMap<String, (bool, bool)>;

/// Label weft puts on its gateway pods (the Gateway's name).
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Whether `p` is one of weft's gateway pods running `weft-proxy gateway`.
fn weft_gateway_pod(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    let labelled = p.metadata.labels.as_ref().is_some_and(|l| {
        l.contains_key(GATEWAY_NAME_LABEL)
            && l.get("app.kubernetes.io/managed-by").is_some_and(|v| v == "weft")
    });
    labelled
        && p.spec.iter().flat_map(|s| &s.containers).any(|c| {
            matches!(c.name.as_str(), "weft-proxy" | "weft-gateway")
                && c.args
                    .as_ref()
                    .and_then(|a| a.first())
                    .is_some_and(|a| a == "gateway")
        })
}

/// Watches `namespaces` until `stop` fires (or is dropped), recording every pod it sees
/// ([`PodsSeen`]): evidence that the suite's workloads ran meshed.
pub async fn watch_pods(
    client: kube::Client,
    namespaces: &'static [&'static str],
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> PodsSeen {
    use k8s_openapi::api::core::v1::Pod;
    let mut seen = PodsSeen::new();
    loop {
        for ns in namespaces {
            let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
            let Ok(list) = api.list(&kube::api::ListParams::default()).await else {
                continue;
            };
            for p in list {
                let key = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
                let entry = seen.entry(key).or_insert((false, false));
                entry.0 |= crate::mesh::workload::injected(&p) || weft_gateway_pod(&p);
                entry.1 |= crate::mesh::workload::ready(&p);
            }
        }
        tokio::select! {
            _ = &mut stop => return seen,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Installs weft (crds/, the Gateway API CRDs, manifests/) and sets the MeshConfig the suite
/// needs: `accessMode: permissive` (it creates no SMI TrafficTargets) with strict mTLS.
pub async fn install_weft(client: &kube::Client) -> Result<(), crate::mesh::MeshError> {
    crate::mesh::install::install(
        client,
        &crate::apply::repo_root(),
        Duration::from_secs(180),
        &|s| eprintln!("install: {s}"),
    )
    .await?;
    crate::mesh::install::set_mesh_modes(client, "permissive", "strict").await
}

/// Runs the suite (blocking, on a worker thread) while [`watch_mesh_pods`] records the
/// suite's pods, then removes the namespaces a killed run leaves. Returns the run's outcome
/// (exit status and duration) and the pods seen.
pub async fn run_watched(
    client: &kube::Client,
    kind: Suite,
    run: SuiteRun,
) -> (Result<(ExitStatus, Duration), ConformanceError>, PodsSeen) {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_pods(client.clone(), kind.namespaces(), stopped));
    let outcome = tokio::task::spawn_blocking(move || run.run())
        .await
        .unwrap_or_else(|e| Err(ConformanceError::Run(format!("the suite's thread: {e}"))));
    let _ = stop.send(());
    let seen = watcher.await.unwrap_or_default();
    delete_namespaces(client, kind.namespaces(), Duration::from_secs(120)).await;
    (outcome, seen)
}

/// Deletes the suite's namespaces if a run left them (it removes them itself when it
/// finishes; a killed run does not) and waits up to `timeout` for them to go. Best effort.
pub async fn delete_namespaces(client: &kube::Client, namespaces: &[&str], timeout: Duration) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    for ns in namespaces {
        let _ = api.delete(ns, &kube::api::DeleteParams::default()).await;
    }
    let began = Instant::now();
    while began.elapsed() < timeout {
        let mut left = 0;
        for ns in namespaces {
            if matches!(api.get_opt(ns).await, Ok(Some(_))) {
                left += 1;
            }
        }
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The harness's own checks of a finished run, apart from route behaviour: the suite's pods
/// were all injected (or are weft's gateway pods) and became Ready, and (mesh) MeshBasic —
/// calls through the sidecars with no route at all, `client` exec'd in the echo pods
/// through the kubelet — did not fail; (gateway) some weft gateway pod ran. Returns the
/// problems; empty = the harness ran the suite properly.
pub fn harness_problems(kind: Suite, seen: &PodsSeen, report: Option<&Report>, log: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if seen.is_empty() {
        problems.push(format!(
            "no pod was seen in {:?} (did the suite apply its manifests?)",
            kind.namespaces()
        ));
    }
    // weft's gateway pods: the suite creates and deletes Gateways (and changes them) within
    // seconds, so some gateway pods are gone before their first readiness probe; the suite
    // itself waits for `Programmed` (a Ready replica) wherever a test needs the gateway.
    let gateway_pod = |p: &str| p.contains("/weft-gateway-");
    if kind == Suite::Gateway && !seen.iter().any(|(p, (_, ready))| gateway_pod(p) && *ready) {
        problems.push("no weft gateway pod became Ready (did the operator deploy the Gateways?)".into());
    }
    for (pod, (injected, ready)) in seen {
        if !injected {
            problems.push(format!("{pod} was not injected by weft"));
        }
        if !ready && !gateway_pod(pod) {
            problems.push(format!("{pod} never became Ready"));
        }
    }
    let basic_ran = kind == Suite::Mesh && log.contains("TestConformance/MeshBasic");
    if basic_ran && failed_in_log(log).iter().any(|t| t == "MeshBasic") {
        problems.push("MeshBasic failed: plain calls through the sidecars (no route) do not work".into());
    }
    if report.is_none() {
        problems.push("the suite wrote no report".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pods: &[(&str, bool, bool)]) -> PodsSeen {
        pods.iter()
            .map(|(p, injected, ready)| (p.to_string(), (*injected, *ready)))
            .collect()
    }

    #[test]
    fn short_lived_gateway_pods_are_no_harness_failure_but_workloads_must_be_ready() {
        let report =
            Report::parse("apiVersion: gateway.networking.k8s.io/v1\nkind: ConformanceReport\n").ok();
        let ok = seen(&[
            ("gateway-conformance-infra/infra-backend-v1-a", true, true),
            (
                "gateway-conformance-infra/weft-gateway-same-namespace-b",
                true,
                true,
            ),
            (
                "gateway-conformance-infra/weft-gateway-gateway-add-listener-c",
                true,
                false,
            ),
        ]);
        assert_eq!(
            harness_problems(Suite::Gateway, &ok, report.as_ref(), ""),
            Vec::<String>::new()
        );
        let bad = seen(&[
            ("gateway-conformance-infra/coredns-a", true, false),
            ("gateway-conformance-infra/weft-gateway-web-b", true, false),
        ]);
        let problems = harness_problems(Suite::Gateway, &bad, report.as_ref(), "");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no weft gateway pod became Ready"));
        assert!(problems[1].contains("coredns-a never became Ready"));
        assert!(
            harness_problems(Suite::Gateway, &ok, None, "")
                .iter()
                .any(|p| p.contains("no report"))
        );
    }
}

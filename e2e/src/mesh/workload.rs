//! Demo-app workloads (ServiceAccount + Deployment + Service) and SMI/policy objects as
//! JSON, applied with server-side apply through discovery; pod readiness and injection
//! checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::discovery;
use serde_json::{Value, json};

use super::{MeshError, kube_err, wait_for};
use crate::apply::{self, Manifest};

/// HTTP port every demo app serves (named `http`, so the operator marks it HTTP/1.1).
pub const HTTP_PORT: u16 = 8080;

/// Server-side applies one object given as JSON.
pub async fn apply_value(client: &kube::Client, object: Value) -> Result<(), MeshError> {
    let object: DynamicObject =
        serde_json::from_value(object).map_err(|e| MeshError::Invalid(format!("bad object: {e}")))?;
    let m = Manifest {
        path: PathBuf::from("<generated>"),
        object,
    };
    apply::apply_all(client, &[m], Duration::from_secs(10)).await?;
    Ok(())
}

/// Deletes an object by apiVersion/kind/namespace/name (absent is fine).
pub async fn delete(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(), MeshError> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let what = format!("deleting {kind} {namespace}/{name}");
    let (resource, _) = discovery::pinned_kind(client, &gvk)
        .await
        .map_err(kube_err(&what))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err(what)(e)),
    }
}

/// A namespace labelled for injection.
pub fn meshed_namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": {"weft.dev/inject": "enabled"}}})
}

/// One demo-app workload: ServiceAccount `sa`, Deployment `name` with labels
/// `app=<app>, version=<version>`, env `SERVICE=<app>`, `VERSION=<version>` plus `env`.
#[derive(Debug, Clone)]
pub struct DemoApp {
    /// Deployment name.
    pub name: String,
    /// `app` label and reported service.
    pub app: String,
    /// `version` label and reported version.
    pub version: String,
    /// ServiceAccount (the workload identity).
    pub service_account: String,
    /// Replicas.
    pub replicas: u32,
    /// Extra environment (e.g. `FAIL_RATE`).
    pub env: BTreeMap<String, String>,
}

impl DemoApp {
    /// `name` running as ServiceAccount `name`, one replica.
    pub fn new(name: &str, app: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            app: app.into(),
            version: version.into(),
            service_account: name.into(),
            replicas: 1,
            env: BTreeMap::new(),
        }
    }

    /// The ServiceAccount and Deployment objects.
    pub fn objects(&self, namespace: &str) -> Vec<Value> {
        let mut env = vec![
            json!({"name": "SERVICE", "value": self.app}),
            json!({"name": "VERSION", "value": self.version}),
            json!({"name": "HTTP_PORT", "value": HTTP_PORT.to_string()}),
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        ];
        env.extend(self.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
        let labels = json!({"app": self.app, "version": self.version});
        vec![
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": self.service_account, "namespace": namespace}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": self.name, "namespace": namespace, "labels": labels},
                   "spec": {"replicas": self.replicas,
                            "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels},
                                         "spec": {"serviceAccountName": self.service_account,
                                                  "terminationGracePeriodSeconds": 2,
                                                  "containers": [{
                                                      "name": "app", "image": "weft/demo-app:0.1.0",
                                                      "env": env,
                                                      "ports": [{"name": "http", "containerPort": HTTP_PORT}]}]}}}}),
        ]
    }
}

/// A ClusterIP Service on [`HTTP_PORT`] (port name `http`) selecting `selector`.
pub fn service(namespace: &str, name: &str, selector: &[(&str, &str)]) -> Value {
    let selector: BTreeMap<&str, &str> = selector.iter().copied().collect();
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": selector,
                    "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT}]}})
}

/// A `split.smi-spec.io/v1alpha4` TrafficSplit of `root` over `(service, weight)`.
pub fn traffic_split(namespace: &str, name: &str, root: &str, backends: &[(&str, u32)]) -> Value {
    let backends: Vec<Value> = backends
        .iter()
        .map(|(s, w)| json!({"service": s, "weight": w}))
        .collect();
    json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"service": root, "backends": backends}})
}

/// Whether the pod carries weft's init container and native sidecar.
pub fn injected(pod: &Pod) -> bool {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    names.starts_with(&["weft-init", "weft-proxy"])
}

/// Whether the pod's `Ready` condition is True.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until `count` pods match `selector` in `namespace`, all Ready and not deleting.
pub async fn wait_pods_ready(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Pod>, MeshError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(selector);
    wait_for(
        &format!("{count} Ready pods {selector} in {namespace}"),
        timeout,
        || {
            let (api, lp) = (api.clone(), lp.clone());
            async move {
                let pods = api.list(&lp).await.map_err(|e| e.to_string())?.items;
                let live: Vec<Pod> = pods
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let ready_n = live.iter().filter(|p| ready(p)).count();
                if live.len() == count && ready_n == count {
                    Ok(Some(live))
                } else {
                    Err(format!("{ready_n} ready of {} (want {count})", live.len()))
                }
            }
        },
    )
    .await
}

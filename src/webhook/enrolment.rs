//! Enrolment rules the webhook enforces before [`decide`] (issue 14, item 8): the
//! `weft.dev/injected` marker is the injector's (a pod carrying it without the
//! weft-proxy container is denied, not skipped); no container but the sidecar may run
//! as the proxy UID, whose traffic the iptables rules let bypass the proxy; and with
//! MeshConfig `spec.injection.allowOptOut: false` the opt-out annotations are denied.
//! The webhook only sees pods of namespaces labelled `weft.dev/inject=enabled` (its
//! `namespaceSelector`), so every rule applies to meshed namespaces only.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::config::InjectConfig;
use super::deny::Deny;
use super::inject::{Decision, decide};
use super::names::*;

/// Annotations that take a pod, or some of its traffic, out of the mesh.
const OPT_OUT: [&str; 3] = [
    ANN_SKIP_INBOUND_PORTS,
    ANN_SKIP_OUTBOUND_PORTS,
    ANN_SKIP_OUTBOUND_CIDRS,
];

/// Whether the pod has the sidecar (native sidecar init container or, for pods
/// injected by an older version, a regular container), or is an ingress gateway
/// pod, whose [`GATEWAY_CONTAINER`] is the proxy.
pub fn has_sidecar(spec: Option<&PodSpec>) -> bool {
    spec.is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(is_proxy)
    })
}

/// The sidecar or the gateway container: the containers that run as the proxy UID.
fn is_proxy(c: &Container) -> bool {
    c.name == PROXY_CONTAINER || c.name == GATEWAY_CONTAINER
}

/// [`decide`] with the enrolment rules applied first.
pub fn admit(pod: &Pod, namespace: &str, cfg: &InjectConfig) -> Result<Decision, Deny> {
    let spec = pod.spec.as_ref();
    if namespace == SYSTEM_NAMESPACE || spec.and_then(|s| s.host_network) == Some(true) {
        return decide(pod, namespace);
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.contains_key(ANN_INJECTED) && !has_sidecar(spec) {
        return Err(Deny::ForgedInjected);
    }
    if !cfg.allow_opt_out {
        let disabled = annotations
            .get(ANN_INJECT)
            .filter(|v| v.as_str() == "disabled")
            .map(|v| (ANN_INJECT, v));
        let skips = OPT_OUT.iter().filter_map(|k| {
            annotations
                .get(*k)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*k, v))
        });
        if let Some((k, v)) = disabled.into_iter().chain(skips).next() {
            return Err(Deny::OptOutForbidden {
                annotation: k.to_string(),
                value: v.clone(),
            });
        }
    }
    let decision = decide(pod, namespace)?;
    if decision != Decision::Skip("disabled by pod annotation") {
        check_proxy_uid(spec, cfg.proxy_uid)?;
    }
    Ok(decision)
}

fn own_uid(c: &Container) -> Option<i64> {
    c.security_context.as_ref().and_then(|s| s.run_as_user)
}

/// Denies a container other than the sidecar whose effective UID is the proxy's.
fn check_proxy_uid(spec: Option<&PodSpec>, uid: i64) -> Result<(), Deny> {
    let Some(spec) = spec else { return Ok(()) };
    let pod_uid = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let lists = [
        ("containers", spec.containers.as_slice()),
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            if is_proxy(c) {
                continue;
            }
            let field = match own_uid(c) {
                Some(u) if u == uid => format!("spec.{list}[{i}].securityContext.runAsUser"),
                None if pod_uid == Some(uid) => {
                    format!(
                        "spec.securityContext.runAsUser (inherited by {list}[{i}] {:?})",
                        c.name
                    )
                }
                _ => continue,
            };
            return Err(Deny::ProxyUid { field, uid });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "enrolment_tests.rs"]
mod tests;

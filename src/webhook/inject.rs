//! The pure core of the injector: [`decide`] whether a pod gets the sidecar,
//! [`inject`] it, and express the change as a JSON [`patch`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::config::InjectConfig;
use super::containers::{SidecarInputs, init_container, sidecar, volumes};
use super::deny::Deny;
use super::exclusions::exclusions;
use super::names::*;
use super::probes::rewrite_probes;
use super::workload::workload;

/// Whether a pod admitted by the webhook configuration gets injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Inject the sidecar.
    Inject,
    /// Leave the pod alone, for this reason.
    Skip(&'static str),
}

/// Decides for a pod in `namespace` (the namespace label was already matched by the
/// configuration's `namespaceSelector`). The pod annotation `weft.dev/inject`
/// overrides: `disabled` opts out, `enabled` opts in, anything else is denied.
pub fn decide(pod: &Pod, namespace: &str) -> Result<Decision, Deny> {
    if namespace == SYSTEM_NAMESPACE {
        return Ok(Decision::Skip("weft-system namespace"));
    }
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return Ok(Decision::Skip("hostNetwork pod"));
    }
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(ANN_INJECTED)) {
        return Ok(Decision::Skip("already injected"));
    }
    match annotations.and_then(|a| a.get(ANN_INJECT)).map(String::as_str) {
        None | Some("enabled") => Ok(Decision::Inject),
        Some("disabled") => Ok(Decision::Skip("disabled by pod annotation")),
        Some(other) => Err(Deny::InvalidAnnotation {
            annotation: ANN_INJECT.into(),
            value: other.into(),
            reason: "expected \"enabled\" or \"disabled\"".into(),
        }),
    }
}

fn check_clashes_and_ports(pod: &Pod, cfg: &InjectConfig) -> Result<(), Deny> {
    let Some(spec) = &pod.spec else { return Ok(()) };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let reserved = [cfg.inbound_port, cfg.outbound_port, cfg.admin_port].map(i32::from);
    for c in all {
        if c.name == INIT_CONTAINER || c.name == PROXY_CONTAINER {
            return Err(Deny::NameClash {
                what: "container",
                name: c.name.clone(),
            });
        }
        if let Some(p) = c
            .ports
            .iter()
            .flatten()
            .find(|p| reserved.contains(&p.container_port))
        {
            return Err(Deny::ReservedPort {
                container: c.name.clone(),
                port: p.container_port,
            });
        }
    }
    let ours = [VOL_IDENTITY, VOL_CONFIG, VOL_TOKEN];
    if let Some(v) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| ours.contains(&v.name.as_str()))
    {
        return Err(Deny::NameClash {
            what: "volume",
            name: v.name.clone(),
        });
    }
    Ok(())
}

fn is_native_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Returns `pod` with the init container, the sidecar, their volumes, rewritten app
/// probes and the weft annotations. A pod already carrying `weft.dev/injected` is
/// returned unchanged (injection is idempotent).
pub fn inject(pod: &Pod, cfg: &InjectConfig) -> Result<Pod, Deny> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.contains_key(ANN_INJECTED) {
        return Ok(pod.clone());
    }
    let ex = exclusions(&annotations)?;
    check_clashes_and_ports(pod, cfg)?;
    let wl = workload(pod);
    let mut out = pod.clone();
    let spec = out.spec.get_or_insert_with(Default::default);
    let sa = [&spec.service_account_name, &spec.service_account]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "default".to_string());

    let mut probes = rewrite_probes(&mut spec.containers, cfg.admin_port, &ex.inbound_ports);
    let mut existing_init = spec.init_containers.take().unwrap_or_default();
    for c in existing_init.iter_mut().filter(|c| is_native_sidecar(c)) {
        probes.extend(rewrite_probes(
            std::slice::from_mut(c),
            cfg.admin_port,
            &ex.inbound_ports,
        ));
    }
    let probes_json = if probes.is_empty() {
        None
    } else {
        serde_json::to_string(&probes).ok()
    };

    let inputs = SidecarInputs {
        workload: &wl,
        app_probes: probes_json.clone(),
    };
    let mut init = vec![init_container(cfg, &ex), sidecar(cfg, &inputs)];
    init.append(&mut existing_init);
    spec.init_containers = Some(init);
    spec.volumes
        .get_or_insert_with(Vec::new)
        .extend(volumes(cfg, &sa));

    let ann: &mut BTreeMap<String, String> = out.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(ANN_INJECTED.into(), cfg.version.clone());
    ann.insert(ANN_WORKLOAD_KIND.into(), wl.kind.clone());
    ann.insert(ANN_WORKLOAD_NAME.into(), wl.name.clone());
    if let Some(json) = probes_json {
        ann.insert(ANN_APP_PROBES.into(), json);
    }
    if !ann.keys().any(|k| k.starts_with("prometheus.io/")) {
        ann.insert("prometheus.io/scrape".into(), "true".into());
        ann.insert("prometheus.io/port".into(), cfg.admin_port.to_string());
        ann.insert("prometheus.io/path".into(), METRICS_PATH.into());
    }
    Ok(out)
}

/// The JSON patch turning `original` into `mutated`.
pub fn patch(original: &Pod, mutated: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    Ok(json_patch::diff(
        &serde_json::to_value(original)?,
        &serde_json::to_value(mutated)?,
    ))
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;

//! The desired objects of one ingress gateway, built purely from its
//! [`GatewayPlan`]: ServiceAccount, Deployment and Service `weft-gateway-<gw>`,
//! and, when a listener terminates TLS, the certificate copy Secret
//! `weft-gateway-<gw>-tls` with a Role/RoleBinding letting the gateway's
//! ServiceAccount read exactly that Secret. Every object lives in the Gateway's
//! namespace, is owned by the Gateway (controller reference, so deleting the
//! Gateway garbage-collects it), carries the labels
//! `gateway.networking.k8s.io/gateway-name` and `app.kubernetes.io/managed-by`
//! (plus weft's own `weft.dev/managed-by`, which selects the operator's caches),
//! `spec.infrastructure` labels/annotations, and a content hash annotation
//! ([`ANN_CONFIG_HASH`]) so unchanged content is never written again.
//!
//! The gateway container is the webhook's sidecar ([`containers::sidecar`]) with
//! the `gateway` subcommand: same image, environment, identity volumes and
//! resources, no init container and no iptables (docs/gateway.md).

use crate::api::gateway::GROUP;
use crate::certs::store::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::operator::apply::objects::{ANN_CONFIG_HASH, FIELD_MANAGER};
use crate::operator::render::content_hash;
use crate::operator::render::gateway::{GatewayPlan, gateway_object_name, gateway_tls_secret_name};
use crate::webhook::InjectConfig;
use crate::webhook::containers::{self, SidecarInputs};
use crate::webhook::names::{ANN_INJECTED, GATEWAY_CONTAINER};
use crate::webhook::workload::Workload;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ContainerPort, PodSecurityContext, PodSpec, PodTemplateSpec, Secret, Service, ServiceAccount,
    ServicePort, ServiceSpec, Sysctl,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use serde::Serialize;
use std::collections::BTreeMap;

/// The Gateway API's label naming the Gateway an object was created for.
pub const LABEL_GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// The recommended `managed-by` label.
pub const LABEL_APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The pod sysctl that lets the non-root gateway bind ports below 1024.
pub const UNPRIVILEGED_PORT_SYSCTL: &str = "net.ipv4.ip_unprivileged_port_start";
/// Subcommand of `weft-proxy` the gateway runs.
pub const GATEWAY_SUBCOMMAND: &str = "gateway";

/// Controller owner reference to the Gateway.
pub fn gateway_owner(plan: &GatewayPlan) -> OwnerReference {
    OwnerReference {
        api_version: format!("{GROUP}/v1"),
        kind: "Gateway".into(),
        name: plan.name.clone(),
        uid: plan.uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// The labels every generated object carries (and the pod template).
pub fn labels(plan: &GatewayPlan) -> BTreeMap<String, String> {
    let mut l = plan.labels.clone();
    l.insert(LABEL_GATEWAY_NAME.into(), plan.name.clone());
    l.insert(LABEL_APP_MANAGED_BY.into(), MANAGED_BY.into());
    l.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    l
}

fn meta<T: Serialize>(plan: &GatewayPlan, name: String, content: &T) -> ObjectMeta {
    let body = serde_json::to_string(content).unwrap_or_default();
    let hash = content_hash(
        format!(
            "{FIELD_MANAGER}|{}|{}|{}|{body}",
            plan.uid,
            serde_json::to_string(&plan.labels).unwrap_or_default(),
            serde_json::to_string(&plan.annotations).unwrap_or_default(),
        )
        .as_bytes(),
    );
    let mut annotations = plan.annotations.clone();
    annotations.insert(ANN_CONFIG_HASH.into(), hash);
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(labels(plan)),
        annotations: Some(annotations),
        owner_references: Some(vec![gateway_owner(plan)]),
        ..ObjectMeta::default()
    }
}

/// ServiceAccount `weft-gateway-<gw>`: the gateway's mesh identity.
pub fn service_account(plan: &GatewayPlan) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(plan, gateway_object_name(&plan.name), &"serviceaccount"),
        ..ServiceAccount::default()
    }
}

fn selector(plan: &GatewayPlan) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_GATEWAY_NAME.to_string(), plan.name.clone())])
}

/// The pod spec of the gateway: one `weft-gateway` container.
pub fn pod_spec(plan: &GatewayPlan, cfg: &InjectConfig) -> PodSpec {
    let sa = gateway_object_name(&plan.name);
    let workload = Workload {
        kind: "Deployment".into(),
        name: sa.clone(),
    };
    let mut c = containers::sidecar(
        cfg,
        &SidecarInputs {
            workload: &workload,
            app_probes: None,
        },
    );
    c.name = GATEWAY_CONTAINER.into();
    // A regular container: not a native sidecar, nothing to gate.
    c.restart_policy = None;
    c.startup_probe = None;
    if let Some(first) = c.args.as_mut().and_then(|a| a.first_mut()) {
        *first = GATEWAY_SUBCOMMAND.into();
    }
    let mut ports: Vec<ContainerPort> = plan
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(format!("l-{p}")),
            container_port: i32::from(*p),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        })
        .collect();
    ports.extend(c.ports.take().unwrap_or_default());
    c.ports = Some(ports);
    if let Some(sc) = c.security_context.as_mut() {
        sc.run_as_user = Some(cfg.proxy_uid);
        sc.run_as_group = Some(cfg.proxy_uid);
    }
    PodSpec {
        service_account_name: Some(sa.clone()),
        containers: vec![c],
        volumes: Some(containers::volumes(cfg, &sa)),
        security_context: Some(PodSecurityContext {
            sysctls: Some(vec![Sysctl {
                name: UNPRIVILEGED_PORT_SYSCTL.into(),
                value: "0".into(),
            }]),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    }
}

/// Deployment `weft-gateway-<gw>`: one replica of the gateway pod, marked as
/// injected (a meshed pod with identity `weft-gateway-<gw>`; the webhook leaves it).
pub fn deployment(plan: &GatewayPlan, cfg: &InjectConfig) -> Deployment {
    let mut pod_annotations = plan.annotations.clone();
    pod_annotations.insert(ANN_INJECTED.into(), cfg.version.clone());
    let spec = DeploymentSpec {
        replicas: Some(1),
        selector: LabelSelector {
            match_labels: Some(selector(plan)),
            match_expressions: None,
        },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(plan)),
                annotations: Some(pod_annotations),
                ..ObjectMeta::default()
            }),
            spec: Some(pod_spec(plan, cfg)),
        },
        ..DeploymentSpec::default()
    };
    Deployment {
        metadata: meta(plan, gateway_object_name(&plan.name), &spec),
        spec: Some(spec),
        status: None,
    }
}

/// Service `weft-gateway-<gw>`: ClusterIP, one port per listener port.
pub fn service(plan: &GatewayPlan) -> Service {
    let spec = ServiceSpec {
        type_: Some("ClusterIP".into()),
        selector: Some(selector(plan)),
        ports: Some(
            plan.ports
                .iter()
                .map(|p| ServicePort {
                    name: Some(format!("l-{p}")),
                    port: i32::from(*p),
                    target_port: Some(IntOrString::Int(i32::from(*p))),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                })
                .collect(),
        ),
        ..ServiceSpec::default()
    };
    Service {
        metadata: meta(plan, gateway_object_name(&plan.name), &spec),
        spec: Some(spec),
        status: None,
    }
}

/// `(tls.crt, tls.key)` of a source Secret.
pub type KeyPair = (ByteString, ByteString);

/// The certificate copy Secret (keys `<cert>.crt` / `<cert>.key`), when the plan
/// terminates TLS. `sources` resolves a plan certificate's source Secret; a
/// certificate whose source is gone is left out (the listener that used it is
/// no longer planned once the cache catches up).
pub fn tls_secret(plan: &GatewayPlan, sources: impl Fn(&str, &str) -> Option<KeyPair>) -> Option<Secret> {
    let name = plan.config.tls_secret.clone()?;
    let mut data = BTreeMap::new();
    for (cert, (ns, src)) in &plan.certificates {
        let Some((crt, key)) = sources(ns, src) else {
            continue;
        };
        data.insert(format!("{cert}.crt"), crt);
        data.insert(format!("{cert}.key"), key);
    }
    Some(Secret {
        metadata: meta(plan, name, &data),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// Role `weft-gateway-<gw>-tls`: get/list/watch on exactly the copy Secret.
pub fn tls_role(plan: &GatewayPlan) -> Option<Role> {
    let secret = plan.config.tls_secret.clone()?;
    let rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        resource_names: Some(vec![secret]),
        verbs: vec!["get".into(), "list".into(), "watch".into()],
        non_resource_urls: None,
    }];
    Some(Role {
        metadata: meta(plan, gateway_tls_secret_name(&plan.name), &rules),
        rules: Some(rules),
    })
}

/// RoleBinding of [`tls_role`] to the gateway's ServiceAccount.
pub fn tls_role_binding(plan: &GatewayPlan) -> Option<RoleBinding> {
    plan.config.tls_secret.as_ref()?;
    let subjects = vec![Subject {
        kind: "ServiceAccount".into(),
        name: gateway_object_name(&plan.name),
        namespace: Some(plan.namespace.clone()),
        api_group: None,
    }];
    let role_ref = RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name: gateway_tls_secret_name(&plan.name),
    };
    Some(RoleBinding {
        metadata: meta(
            plan,
            gateway_tls_secret_name(&plan.name),
            &(&subjects, &role_ref.name),
        ),
        role_ref,
        subjects: Some(subjects),
    })
}

/// The Gateway a generated object belongs to, `(namespace, gateway)`, if it is one
/// (both managed-by labels and the gateway-name label, and one of the generated names).
pub fn owner_gateway(meta: &ObjectMeta) -> Option<(String, String)> {
    let l = meta.labels.as_ref()?;
    if l.get(LABEL_APP_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY)
        || l.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY)
    {
        return None;
    }
    let gw = l.get(LABEL_GATEWAY_NAME)?;
    let name = meta.name.as_deref()?;
    (name == gateway_object_name(gw) || name == gateway_tls_secret_name(gw))
        .then(|| Some((meta.namespace.clone()?, gw.clone())))
        .flatten()
}

#[cfg(test)]
#[path = "gateway_objects_tests.rs"]
pub(crate) mod tests;

//! The ingress gateway part of the snapshot ([`GatewayInputs`]): GatewayClasses and
//! Gateways (read at `v1` as `DynamicObject`s, an unreadable spec becomes an `Err`
//! input), every namespace's labels, whether each `kubernetes.io/tls` Secret holds a
//! usable PEM certificate chain and private key (only that bit leaves this module;
//! key material is never logged), and what the cluster says about the objects weft
//! runs per Gateway: the ClusterIP of Service `weft-gateway-<gw>` and the ready
//! replicas of Deployment `weft-gateway-<gw>`.

use super::render::gateway::gateway_object_name;
use super::state::{GatewayClassInput, GatewayInput, GatewayInputs};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Secret type of listener certificates.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The cached gateway objects the snapshot reads.
#[derive(Debug, Default, Clone)]
pub struct GatewayCaches {
    /// GatewayClasses.
    pub classes: Vec<Arc<DynamicObject>>,
    /// Gateways.
    pub gateways: Vec<Arc<DynamicObject>>,
    /// `kubernetes.io/tls` Secrets.
    pub tls_secrets: Vec<Arc<Secret>>,
    /// The gateways' Deployments (label-selected).
    pub deployments: Vec<Arc<Deployment>>,
}

fn spec_of<T: DeserializeOwned>(o: &DynamicObject) -> Result<T, String> {
    let spec = o.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(spec).map_err(|e| format!("spec is unreadable: {e}"))
}

/// A GatewayClass.
pub fn class(o: &DynamicObject) -> Option<GatewayClassInput> {
    Some(GatewayClassInput {
        name: o.metadata.name.clone()?,
        generation: o.metadata.generation,
        spec: spec_of(o),
    })
}

/// A Gateway, without what the cluster says about its objects.
pub fn gateway(o: &DynamicObject) -> Option<GatewayInput> {
    Some(GatewayInput {
        namespace: o.metadata.namespace.clone()?,
        name: o.metadata.name.clone()?,
        uid: o.metadata.uid.clone()?,
        generation: o.metadata.generation,
        created_ms: o
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond()),
        spec: spec_of(o),
        address: None,
        ready_replicas: 0,
    })
}

/// Whether `tls.crt` holds at least one PEM certificate and `tls.key` a PEM
/// private key, both parseable. The Secret's content is never logged.
pub fn tls_valid(s: &Secret) -> bool {
    let Some(data) = s.data.as_ref() else {
        return false;
    };
    let (Some(crt), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
        return false;
    };
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut crt.0.as_slice()).collect();
    let certs_ok = certs.is_ok_and(|c| !c.is_empty());
    let key_ok = matches!(rustls_pemfile::private_key(&mut key.0.as_slice()), Ok(Some(_)));
    certs_ok && key_ok
}

/// The ClusterIP of a Service, unless it has none (yet).
fn cluster_ip(s: &Service) -> Option<String> {
    let ip = s.spec.as_ref()?.cluster_ip.clone()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// Builds [`GatewayInputs`]. `namespaces` are every namespace; `services` every Service.
pub fn inputs(c: &GatewayCaches, namespaces: &[Arc<Namespace>], services: &[Arc<Service>]) -> GatewayInputs {
    let key = |ns: &Option<String>, name: &Option<String>| Some((ns.clone()?, name.clone()?));
    let addresses: HashMap<(String, String), String> = services
        .iter()
        .filter_map(|s| Some((key(&s.metadata.namespace, &s.metadata.name)?, cluster_ip(s)?)))
        .collect();
    let ready: HashMap<(String, String), i32> = c
        .deployments
        .iter()
        .filter_map(|d| {
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            Some((key(&d.metadata.namespace, &d.metadata.name)?, ready))
        })
        .collect();
    let mut gateways: Vec<GatewayInput> = c.gateways.iter().filter_map(|g| gateway(g)).collect();
    for g in &mut gateways {
        let k = (g.namespace.clone(), gateway_object_name(&g.name));
        g.address = addresses.get(&k).cloned();
        g.ready_replicas = ready.get(&k).copied().unwrap_or(0);
    }
    let namespace_labels: BTreeMap<String, BTreeMap<String, String>> = namespaces
        .iter()
        .filter_map(|n| {
            Some((
                n.metadata.name.clone()?,
                n.metadata.labels.clone().unwrap_or_default(),
            ))
        })
        .collect();
    let tls_secrets = c
        .tls_secrets
        .iter()
        .filter(|s| s.type_.as_deref() == Some(TLS_SECRET_TYPE))
        .filter_map(|s| Some((key(&s.metadata.namespace, &s.metadata.name)?, tls_valid(s))))
        .collect();
    GatewayInputs {
        classes: c.classes.iter().filter_map(|o| class(o)).collect(),
        gateways,
        namespace_labels,
        tls_secrets,
    }
}

#[cfg(test)]
#[path = "snapshot_gateway_tests.rs"]
mod tests;

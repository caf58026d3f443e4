//! The agent's Node: registered Ready with capacity and addresses, its status heartbeat,
//! and its Lease in `kube-node-lease` renewed like the kubelet's (every 10 s, 40 s TTL),
//! so the node lifecycle controller keeps it Ready and untainted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// CPU capacity reported (cores).
pub const CAPACITY_CPU: &str = "4";
/// Memory capacity reported (bytes; 8 GiB).
pub const CAPACITY_MEMORY_BYTES: u64 = 8 << 30;
/// Pods capacity reported.
pub const CAPACITY_PODS: &str = "110";
/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration.
pub const LEASE_SECONDS: i32 = 40;

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

/// The Node's status: Ready, no pressure, capacity = allocatable, InternalIP = bridge address.
pub fn node_status(name: &str, address: Ipv4Addr, version: &str) -> NodeStatus {
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", CAPACITY_CPU.to_string()),
        ("memory", format!("{}Ki", CAPACITY_MEMORY_BYTES / 1024)),
        ("pods", CAPACITY_PODS.to_string()),
        ("ephemeral-storage", "20Gi".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: address.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "weft e2e node agent",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "weft e2e node agent",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "weft e2e node agent",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "weft e2e node agent is posting ready status",
            ),
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            operating_system: "linux".into(),
            kubelet_version: version.into(),
            kube_proxy_version: version.into(),
            container_runtime_version: "weft-netns://0.1.0".into(),
            os_image: "weft e2e network namespaces".into(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Creates or updates the Node (spec: pod CIDR) and posts a Ready status.
pub async fn register(
    client: &Client,
    name: &str,
    address: Ipv4Addr,
    pod_cidr: &str,
    version: &str,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", std::env::consts::ARCH),
        ("weft.dev/e2e-node", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(pod_cidr.into()),
            pod_cidrs: Some(vec![pod_cidr.into()]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(name, address, version)),
    };
    if api.get_opt(name).await?.is_none() {
        api.create(&PostParams::default(), &node).await?;
    }
    heartbeat(client, name, address, version).await
}

/// Posts the Ready status again (the status heartbeat).
pub async fn heartbeat(
    client: &Client,
    name: &str,
    address: Ipv4Addr,
    version: &str,
) -> Result<Node, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": node_status(name, address, version) });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Creates or renews the node's Lease (owned by the Node, like the kubelet's).
pub async fn renew_lease(client: &Client, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    let params = PatchParams::apply("weft-node-agent").force();
    api.patch(&name, &params, &Patch::Apply(&lease)).await?;
    Ok(())
}

/// Renew interval of the Lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Interval of the full status heartbeat.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_ready_with_capacity_and_address() {
        let s = node_status("weft-node-0", Ipv4Addr::new(198, 18, 0, 1), "v1.34.4");
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(s.capacity.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(s.capacity.as_ref().unwrap()["memory"].0, "8388608Ki");
        assert_eq!(s.addresses.as_ref().unwrap()[0].address, "198.18.0.1");
    }
}

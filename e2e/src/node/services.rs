//! The small part of kube-proxy the e2e cluster needs, as pure functions: a table of
//! ClusterIP Services and their ready backends (from Services and EndpointSlices), rendered
//! into an `iptables-restore` payload for the root namespace's nat table, and into the
//! `/etc/hosts` each pod sees (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Chain holding one DNAT dispatch rule per (service port, backend); jumped to from nat
/// PREROUTING and OUTPUT.
pub const SERVICES_CHAIN: &str = "WEFT-SERVICES";
/// Chain in nat POSTROUTING masquerading hairpin traffic (a pod reaching itself via a
/// ClusterIP), marked by the per-backend chains.
pub const POSTROUTING_CHAIN: &str = "WEFT-POSTROUTING";
/// Prefix of the per-backend chains.
pub const BACKEND_CHAIN_PREFIX: &str = "WEFT-SEP-";
/// The packet mark meaning "masquerade this" (same bit kube-proxy uses).
pub const MASQ_MARK: &str = "0x4000/0x4000";

/// One port of a ClusterIP Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    /// Port name ("" for a single unnamed port).
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The ClusterIP port.
    pub port: u16,
    /// Ready backends (pod IP, target port), sorted.
    pub backends: Vec<SocketAddrV4>,
}

/// One ClusterIP Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Ports with their backends.
    pub ports: Vec<ServicePort>,
}

/// All ClusterIP Services, keyed by (namespace, name).
pub type ServiceTable = BTreeMap<(String, String), ServiceEntry>;

/// Builds the table. `api_server` (the API server as pods reach it) backs `default/kubernetes`
/// when no EndpointSlice does (the harness runs with `--endpoint-reconciler-type=none`).
pub fn build_table(
    services: &[Service],
    slices: &[EndpointSlice],
    api_server: Option<SocketAddrV4>,
) -> ServiceTable {
    let mut table = ServiceTable::new();
    for svc in services {
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone()) else {
            continue;
        };
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let mut ports = Vec::new();
        for p in spec.ports.iter().flatten() {
            let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            if protocol != "tcp" && protocol != "udp" {
                continue;
            }
            let pname = p.name.clone().unwrap_or_default();
            let mut backends = ready_backends(slices, &ns, &name, &pname, &protocol);
            if backends.is_empty() && ns == "default" && name == "kubernetes" {
                backends.extend(api_server);
            }
            let port = u16::try_from(p.port).unwrap_or(0);
            ports.push(ServicePort {
                name: pname,
                protocol,
                port,
                backends,
            });
        }
        table.insert(
            (ns.clone(), name.clone()),
            ServiceEntry {
                namespace: ns,
                name,
                cluster_ip: ip,
                ports,
            },
        );
    }
    table
}

fn ready_backends(
    slices: &[EndpointSlice],
    ns: &str,
    svc: &str,
    port_name: &str,
    proto: &str,
) -> Vec<SocketAddrV4> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let owned = slice.metadata.namespace.as_deref() == Some(ns)
            && slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                == Some(svc);
        if !owned || slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP").eq_ignore_ascii_case(proto)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            // Ready is the kube-proxy rule for traffic (nil means ready).
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<Ipv4Addr>() {
                    out.insert(SocketAddrV4::new(ip, port));
                }
            }
        }
    }
    out.into_iter().collect()
}

/// FNV-1a 64: a stable short hash for chain names.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn backend_chain(svc: &ServiceEntry, port: &ServicePort, backend: SocketAddrV4) -> String {
    let key = format!(
        "{}/{}/{}/{}/{backend}",
        svc.namespace, svc.name, port.name, port.protocol
    );
    format!("{BACKEND_CHAIN_PREFIX}{:016X}", fnv(&key))
}

/// The nat-table payload for `iptables-restore --noflush`: declares (and so flushes) the
/// agent's chains, fills them, and deletes the backend chains in `previous` that are gone.
/// Returns the payload and the backend chains it declares.
pub fn render_nat(table: &ServiceTable, previous: &BTreeSet<String>) -> (String, BTreeSet<String>) {
    let mut chains = BTreeSet::new();
    let mut rules = Vec::new();
    rules.push(format!(
        "-A {POSTROUTING_CHAIN} -m mark --mark {MASQ_MARK} -j MASQUERADE"
    ));
    for svc in table.values() {
        for port in &svc.ports {
            let n = port.backends.len();
            for (i, backend) in port.backends.iter().enumerate() {
                let chain = backend_chain(svc, port, *backend);
                let comment = format!("{}/{}:{}", svc.namespace, svc.name, port.name);
                let mut rule = format!(
                    "-A {SERVICES_CHAIN} -d {}/32 -p {} -m {} --dport {} -m comment --comment \"{comment}\"",
                    svc.cluster_ip, port.protocol, port.protocol, port.port
                );
                let remaining = n - i;
                if remaining > 1 {
                    rule.push_str(&format!(
                        " -m statistic --mode random --probability {:.10}",
                        1.0 / remaining as f64
                    ));
                }
                rule.push_str(&format!(" -j {chain}"));
                rules.push(rule);
                rules.push(format!(
                    "-A {chain} -s {}/32 -j MARK --set-xmark {MASQ_MARK}",
                    backend.ip()
                ));
                rules.push(format!(
                    "-A {chain} -p {} -j DNAT --to-destination {backend}",
                    port.protocol
                ));
                chains.insert(chain);
            }
        }
    }
    // Stale chains are declared too: declaring flushes them, and `-X` refuses a chain that
    // still holds rules (EBUSY), which would fail the whole transaction.
    let stale: Vec<&String> = previous.difference(&chains).collect();
    let mut out = String::from("*nat\n");
    for c in [SERVICES_CHAIN, POSTROUTING_CHAIN]
        .iter()
        .map(|s| s.to_string())
        .chain(chains.iter().cloned())
        .chain(stale.iter().map(|s| s.to_string()))
    {
        out.push_str(&format!(":{c} - [0:0]\n"));
    }
    for r in rules {
        out.push_str(&r);
        out.push('\n');
    }
    for stale in stale {
        out.push_str(&format!("-X {stale}\n"));
    }
    out.push_str("COMMIT\n");
    (out, chains)
}

/// The `/etc/hosts` of a pod in `namespace`: localhost, the pod's own name, then every
/// ClusterIP Service as `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local` (plus the bare
/// `svc` for Services in the pod's namespace, like the DNS search path would).
pub fn render_hosts(table: &ServiceTable, namespace: &str, pod_name: &str, pod_ip: Ipv4Addr) -> String {
    let mut out = String::from(
        "# Managed by the weft e2e node agent.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    out.push_str(&format!("{pod_ip}\t{pod_name}\n"));
    for svc in table.values() {
        let (n, ns) = (&svc.name, &svc.namespace);
        let short = if ns == namespace {
            format!("{n} ")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{}\t{short}{n}.{ns} {n}.{ns}.svc {n}.{ns}.svc.cluster.local\n",
            svc.cluster_ip
        ));
    }
    out
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;

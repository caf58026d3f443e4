//! Host networking: the `weft0` bridge with the gateway address, forwarding, the agent's
//! iptables chains (Service DNAT, hairpin masquerade, bridge forwarding whether or not
//! `br_netfilter` hands bridged frames to iptables), and one network namespace per pod with
//! a veth to the bridge. Teardown is blocking so `Drop` can use it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::cmd::{CmdError, args, run, run_blocking, run_with_stdin};
use super::ipam::Cidr;
use super::services::{BACKEND_CHAIN_PREFIX, POSTROUTING_CHAIN, SERVICES_CHAIN, render_nat};

/// Filter chain accepting bridge-local forwarding and rejecting pod traffic to elsewhere.
pub const FORWARD_CHAIN: &str = "WEFT-FORWARD";
/// Filter chain accepting pod traffic to the host (the API server relay, probes' replies).
pub const INPUT_CHAIN: &str = "WEFT-INPUT";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The host side of the pod network.
#[derive(Debug, Clone)]
pub struct HostNet {
    /// Bridge name.
    pub bridge: String,
    /// Pod CIDR (the bridge holds its gateway address).
    pub pods: Cidr,
    /// Service CIDR (routed to the bridge so ClusterIP traffic never leaves the host).
    pub services: Cidr,
}

/// The jumps from built-in chains to the agent's chains: (table, built-in chain, rule).
fn jumps(bridge: &str) -> Vec<(&'static str, &'static str, Vec<String>)> {
    vec![
        ("nat", "PREROUTING", args(&["-j", SERVICES_CHAIN])),
        ("nat", "OUTPUT", args(&["-j", SERVICES_CHAIN])),
        ("nat", "POSTROUTING", args(&["-j", POSTROUTING_CHAIN])),
        ("filter", "FORWARD", args(&["-j", FORWARD_CHAIN])),
        ("filter", "INPUT", args(&["-i", bridge, "-j", INPUT_CHAIN])),
    ]
}

impl HostNet {
    /// Creates the bridge (replacing a stale one), routes, enables forwarding and installs
    /// the agent's chains. Returns the previous `ip_forward` value.
    pub async fn setup(&self) -> Result<String, CmdError> {
        let br = self.bridge.as_str();
        if run("ip", &args(&["link", "show", br])).await.is_ok() {
            run("ip", &args(&["link", "del", br])).await?;
        }
        run("ip", &args(&["link", "add", br, "type", "bridge"])).await?;
        let gw = format!("{}/{}", self.pods.gateway(), self.pods.prefix);
        run("ip", &args(&["addr", "replace", &gw, "dev", br])).await?;
        run("ip", &args(&["link", "set", br, "up"])).await?;
        run(
            "ip",
            &args(&[
                "route",
                "replace",
                &self.services.to_string(),
                "dev",
                br,
                "src",
                &self.pods.gateway().to_string(),
            ]),
        )
        .await?;
        let previous = std::fs::read_to_string(IP_FORWARD)
            .unwrap_or_else(|_| "0".into())
            .trim()
            .to_string();
        std::fs::write(IP_FORWARD, "1").map_err(|e| CmdError {
            command: format!("write {IP_FORWARD}"),
            detail: e.to_string(),
        })?;

        let (nat, _) = render_nat(&Default::default(), &Default::default());
        run_with_stdin("iptables-restore", &args(&["--noflush"]), &nat).await?;
        let filter = format!(
            "*filter\n:{FORWARD_CHAIN} - [0:0]\n:{INPUT_CHAIN} - [0:0]\n\
             -A {FORWARD_CHAIN} -i {br} -o {br} -j ACCEPT\n\
             -A {FORWARD_CHAIN} -i {br} -j REJECT\n\
             -A {INPUT_CHAIN} -j ACCEPT\nCOMMIT\n"
        );
        run_with_stdin("iptables-restore", &args(&["--noflush"]), &filter).await?;
        for (table, chain, rule) in jumps(br) {
            let mut check = args(&["-w", "-t", table, "-C", chain]);
            check.extend(rule.iter().cloned());
            if run("iptables", &check).await.is_err() {
                let mut insert = args(&["-w", "-t", table, "-I", chain, "1"]);
                insert.extend(rule);
                run("iptables", &insert).await?;
            }
        }
        Ok(previous)
    }

    /// Removes the chains, jumps, route and bridge, and restores `ip_forward` (best effort;
    /// returns the errors met).
    pub fn teardown_blocking(&self, previous_ip_forward: Option<&str>) -> Vec<String> {
        let mut errors = Vec::new();
        for (table, chain, rule) in jumps(&self.bridge) {
            let mut del = args(&["-w", "-t", table, "-D", chain]);
            del.extend(rule);
            // Remove every copy (a crashed earlier run may have left one).
            for _ in 0..8 {
                if run_blocking("iptables", &del).is_err() {
                    break;
                }
            }
        }
        let saved = run_blocking("iptables-save", &args(&["-t", "nat"])).unwrap_or_default();
        let mut nat_chains: Vec<String> = vec![SERVICES_CHAIN.into(), POSTROUTING_CHAIN.into()];
        nat_chains.extend(saved.lines().filter_map(|l| {
            l.strip_prefix(':')
                .and_then(|c| c.split_whitespace().next())
                .filter(|c| c.starts_with(BACKEND_CHAIN_PREFIX))
                .map(String::from)
        }));
        for (table, chains) in [
            ("nat", nat_chains),
            ("filter", vec![FORWARD_CHAIN.into(), INPUT_CHAIN.into()]),
        ] {
            for c in &chains {
                let _ = run_blocking("iptables", &args(&["-w", "-t", table, "-F", c]));
            }
            for c in &chains {
                if let Err(e) = run_blocking("iptables", &args(&["-w", "-t", table, "-X", c]))
                    && !e.detail.contains("No chain")
                    && !e.detail.contains("does not exist")
                {
                    errors.push(e.to_string());
                }
            }
        }
        if run_blocking("ip", &args(&["link", "show", &self.bridge])).is_ok()
            && let Err(e) = run_blocking("ip", &args(&["link", "del", &self.bridge]))
        {
            errors.push(e.to_string());
        }
        if let Some(prev) = previous_ip_forward
            && let Err(e) = std::fs::write(IP_FORWARD, prev)
        {
            errors.push(format!("restoring ip_forward: {e}"));
        }
        errors
    }
}

/// One pod's network: its namespace, veth pair and address.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Network namespace name (`/run/netns/<netns>`).
    pub netns: String,
    /// Host-side veth name.
    pub veth: String,
    /// Pod IP.
    pub ip: Ipv4Addr,
}

impl Sandbox {
    /// `/etc/netns/<netns>`: files `ip netns exec` (and the agent's launcher) bind over `/etc`.
    pub fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.netns)
    }

    /// `/run/netns/<netns>`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// Creates the namespace, the veth pair (`eth0` inside), addresses and routes, and the
    /// namespace's `/etc` overrides (`hosts`, a DNS-less `resolv.conf`). Undoes partial
    /// work on failure.
    pub async fn create(&self, host: &HostNet, hosts_file: &str) -> Result<(), CmdError> {
        let result = self.create_inner(host, hosts_file).await;
        if result.is_err() {
            self.remove_blocking();
        }
        result
    }

    async fn create_inner(&self, host: &HostNet, hosts_file: &str) -> Result<(), CmdError> {
        let (ns, veth) = (self.netns.as_str(), self.veth.as_str());
        run("ip", &args(&["netns", "add", ns])).await?;
        run(
            "ip",
            &args(&[
                "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]),
        )
        .await?;
        run("ip", &args(&["link", "set", veth, "master", &host.bridge])).await?;
        run("ip", &args(&["link", "set", veth, "up"])).await?;
        let addr = format!("{}/{}", self.ip, host.pods.prefix);
        run("ip", &args(&["-n", ns, "link", "set", "lo", "up"])).await?;
        run("ip", &args(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])).await?;
        run("ip", &args(&["-n", ns, "link", "set", "eth0", "up"])).await?;
        run(
            "ip",
            &args(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &host.pods.gateway().to_string(),
            ]),
        )
        .await?;
        let io = |e: std::io::Error| CmdError {
            command: format!("writing {}", self.etc_dir().display()),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(self.etc_dir()).map_err(io)?;
        std::fs::write(self.etc_dir().join("hosts"), hosts_file).map_err(io)?;
        std::fs::write(
            self.etc_dir().join("resolv.conf"),
            "# weft e2e pod: no DNS server; Service names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .map_err(io)?;
        Ok(())
    }

    /// Rewrites the pod's hosts file in place (it is bind-mounted by inode, so a rename
    /// would not be seen by running processes). No-op when unchanged.
    pub fn update_hosts(&self, hosts_file: &str) -> std::io::Result<bool> {
        let path = self.etc_dir().join("hosts");
        if std::fs::read_to_string(&path).ok().as_deref() == Some(hosts_file) {
            return Ok(false);
        }
        std::fs::write(path, hosts_file)?;
        Ok(true)
    }

    /// Deletes the namespace (and with it `eth0`), the host veth if it survived, and the
    /// `/etc/netns` overrides. Returns the errors met.
    pub fn remove_blocking(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.netns_path().exists()
            && let Err(e) = run_blocking("ip", &args(&["netns", "del", &self.netns]))
        {
            errors.push(e.to_string());
        }
        if run_blocking("ip", &args(&["link", "show", &self.veth])).is_ok()
            && let Err(e) = run_blocking("ip", &args(&["link", "del", &self.veth]))
        {
            errors.push(e.to_string());
        }
        if let Err(e) = std::fs::remove_dir_all(self.etc_dir())
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("removing {}: {e}", self.etc_dir().display()));
        }
        errors
    }
}

/// Network namespaces named with the agent's prefix (for stale cleanup and tests).
pub fn agent_netns_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(super::names::NETNS_PREFIX))
        .collect()
}

/// Host interfaces named with the agent's veth prefix.
pub fn agent_veth_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with(super::names::VETH_PREFIX) && n.len() == super::names::VETH_PREFIX.len() + 12
        })
        .collect()
}

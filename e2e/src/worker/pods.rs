//! Reaching a pod from the host the way a test needs to: its network namespace (found
//! through the CRI: the sandbox's netns path, `/var/run/netns/cni-…`, so `ip netns exec`
//! works), the pod's own DNS settings for commands run there (written to
//! `/etc/netns/<netns>/resolv.conf`, which `ip netns exec` mounts over /etc/resolv.conf, so
//! names resolve through the cluster's CoreDNS exactly as in the pod), and the host end of
//! its veth (for packet captures).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::teardown::run_bounded;

/// Marker file in `/etc/netns/<netns>/` dirs the harness created.
const MARKER: &str = ".weft-e2e";

/// A pod's network as seen from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The CRI sandbox ID.
    pub sandbox: String,
    /// The netns name under /var/run/netns (for `ip netns exec`).
    pub netns: String,
    /// The pod's resolv.conf as the kubelet configured it.
    pub resolv_conf: String,
}

/// The node's CRI as tests and the demo use it (crictl with the node's config), with the
/// pods' networks cached by UID (a sandbox keeps its netns for its whole life).
#[derive(Debug)]
pub struct Cri {
    crictl: PathBuf,
    config: PathBuf,
    networks: Mutex<HashMap<String, PodNetwork>>,
}

impl Cri {
    /// crictl at `crictl` talking to the node whose crictl config is `config`.
    pub fn new(crictl: &Path, config: &Path) -> Self {
        Self {
            crictl: crictl.to_path_buf(),
            config: config.to_path_buf(),
            networks: Mutex::new(HashMap::new()),
        }
    }

    /// The network of the pod with `uid`, with the pod's resolv.conf installed for
    /// `ip netns exec`.
    pub fn pod_network(&self, uid: &str) -> Result<PodNetwork, String> {
        if let Some(n) = self.networks.lock().unwrap_or_else(|p| p.into_inner()).get(uid) {
            return Ok(n.clone());
        }
        let net = pod_network(&self.crictl, &self.config, uid)?;
        install_resolv_conf(&net)
            .map_err(|e| format!("writing /etc/netns/{}/resolv.conf: {e}", net.netns))?;
        self.networks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string(), net.clone());
        Ok(net)
    }

    /// The host PID of container `container` of the pod with `uid`.
    pub fn container_pid(&self, uid: &str, container: &str) -> Result<u32, String> {
        container_pid(&self.crictl, &self.config, uid, container)
    }
}

/// Finds the netns path and DNS config in `crictl inspectp -o json` output.
pub fn parse_inspectp(json: &str) -> Result<PodNetwork, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("crictl inspectp output: {e}"))?;
    let sandbox = v["status"]["id"].as_str().unwrap_or_default().to_string();
    let namespaces = v["info"]["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .ok_or("crictl inspectp: no runtimeSpec.linux.namespaces")?;
    let path = namespaces
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .ok_or("crictl inspectp: the sandbox has no network namespace path")?;
    let netns = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| path.starts_with("/var/run/netns/") || path.starts_with("/run/netns/"))
        .ok_or_else(|| format!("netns {path} is not under /var/run/netns"))?
        .to_string();
    let dns = &v["info"]["config"]["dns_config"];
    let list = |k: &str| -> Vec<String> {
        dns[k]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut resolv = String::new();
    let searches = list("searches");
    if !searches.is_empty() {
        resolv.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for server in list("servers") {
        resolv.push_str(&format!("nameserver {server}\n"));
    }
    let options = list("options");
    if !options.is_empty() {
        resolv.push_str(&format!("options {}\n", options.join(" ")));
    }
    Ok(PodNetwork {
        sandbox,
        netns,
        resolv_conf: resolv,
    })
}

/// The ready sandbox of the pod with `uid`, through crictl.
pub fn pod_network(crictl: &Path, crictl_config: &Path, uid: &str) -> Result<PodNetwork, String> {
    let config = crictl_config.display().to_string();
    let label = format!("io.kubernetes.pod.uid={uid}");
    let limit = Duration::from_secs(20);
    let ids = run_bounded(
        crictl,
        &[
            "--config", &config, "pods", "--state", "ready", "--label", &label, "-q",
        ],
        limit,
    )?;
    let id = ids
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| format!("no ready sandbox for pod {uid}"))?
        .to_string();
    let json = run_bounded(
        crictl,
        &["--config", &config, "inspectp", "-o", "json", &id],
        limit,
    )?;
    parse_inspectp(&json)
}

/// The host PID of container `name` of the pod with `uid` (its running instance).
pub fn container_pid(crictl: &Path, crictl_config: &Path, uid: &str, name: &str) -> Result<u32, String> {
    let config = crictl_config.display().to_string();
    let label = format!("io.kubernetes.pod.uid={uid}");
    let limit = Duration::from_secs(20);
    let ids = run_bounded(
        crictl,
        &[
            "--config",
            &config,
            "ps",
            "--state",
            "running",
            "--label",
            &label,
            "--name",
            &format!("^{name}$"),
            "-q",
        ],
        limit,
    )?;
    let id = ids
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| format!("no running container {name} in pod {uid}"))?
        .to_string();
    let json = run_bounded(
        crictl,
        &["--config", &config, "inspect", "-o", "json", &id],
        limit,
    )?;
    let v: Value = serde_json::from_str(&json).map_err(|e| format!("crictl inspect output: {e}"))?;
    v["info"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("crictl inspect {id}: no pid"))
}

/// The netns names of every sandbox the CRI knows (for cleanup).
pub fn all_sandbox_netns(crictl: &Path, crictl_config: &Path) -> Vec<String> {
    let config = crictl_config.display().to_string();
    let limit = Duration::from_secs(20);
    let Ok(ids) = run_bounded(crictl, &["--config", &config, "pods", "-q"], limit) else {
        return Vec::new();
    };
    ids.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|id| {
            run_bounded(
                crictl,
                &["--config", &config, "inspectp", "-o", "json", id],
                limit,
            )
            .ok()
        })
        .filter_map(|json| parse_inspectp(&json).ok())
        .map(|n| n.netns)
        .collect()
}

/// Writes `/etc/netns/<netns>/resolv.conf` so commands run with `ip netns exec` resolve
/// names as the pod does.
pub fn install_resolv_conf(net: &PodNetwork) -> std::io::Result<PathBuf> {
    let dir = PathBuf::from("/etc/netns").join(&net.netns);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(MARKER), "")?;
    std::fs::write(dir.join("resolv.conf"), &net.resolv_conf)?;
    Ok(dir)
}

/// Removes the `/etc/netns/*` dirs the harness created whose netns no longer exists (all
/// of them with `all`).
pub fn remove_stale_resolv_dirs(all: bool) -> usize {
    let Ok(entries) = std::fs::read_dir("/etc/netns") else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let dir = e.path();
        let live = Path::new("/var/run/netns").join(e.file_name()).exists();
        if dir.join(MARKER).exists() && (all || !live) && std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The host-side interface of the pod's veth (`eth0@ifN` in the pod ⇒ interface N here).
pub fn host_veth(netns: &str) -> Result<String, String> {
    let limit = Duration::from_secs(10);
    let inside = run_bounded(
        Path::new("ip"),
        &["-n", netns, "-o", "link", "show", "eth0"],
        limit,
    )?;
    let peer: u32 = inside
        .split_whitespace()
        .nth(1)
        .and_then(|name| name.split("@if").nth(1))
        .and_then(|n| n.trim_end_matches(':').parse().ok())
        .ok_or_else(|| format!("cannot read eth0's peer from {inside:?}"))?;
    let all = run_bounded(Path::new("ip"), &["-o", "link", "show"], limit)?;
    all.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let index: u32 = f.next()?.trim_end_matches(':').parse().ok()?;
            let name = f.next()?.trim_end_matches(':');
            (index == peer).then(|| name.split('@').next().unwrap_or(name).to_string())
        })
        .ok_or_else(|| format!("no host interface with index {peer}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_netns_and_dns_from_inspectp() {
        let json = r#"{
          "status": {"id": "abc123"},
          "info": {
            "config": {"dns_config": {"servers": ["198.19.0.10"],
              "searches": ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"],
              "options": ["ndots:5"]}},
            "runtimeSpec": {"linux": {"namespaces": [
              {"type": "pid"},
              {"type": "network", "path": "/var/run/netns/cni-1234"}]}}
          }}"#;
        let n = parse_inspectp(json).unwrap();
        assert_eq!(n.sandbox, "abc123");
        assert_eq!(n.netns, "cni-1234");
        assert_eq!(
            n.resolv_conf,
            "search ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.19.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_sandboxes_are_refused() {
        let json = r#"{"status": {"id": "x"}, "info": {"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}]}}}}"#;
        assert!(parse_inspectp(json).unwrap_err().contains("no network namespace"));
    }
}

//! The host side of the test node: the pod bridge with the node address (it must exist
//! before the kubelet starts: `--node-ip` has to be a local address), the route that sends
//! Service traffic from the host through kube-proxy's rules, the sysctls bridged Service
//! traffic needs, a FORWARD rule that keeps pods from reaching anything off this host, and
//! the cgroup v1 root all pod cgroups live under. Everything changed is recorded in the
//! node's state dir first and undone by [`restore`], also after a crash.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::config::NodeNet;
use super::layout::NodeLayout;
use crate::control_plane::sys::{self, Signal};

/// The cgroup (in every v1 hierarchy) under which the kubelet creates `kubepods`.
pub const CGROUP_ROOT: &str = "/weft-node";
/// The filter chain that stops pods from reaching anything beyond this host.
pub const FORWARD_CHAIN: &str = "WEFT-NODE-FORWARD";

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// What [`prepare`] changed, so [`restore`] can put it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// Previous `net.ipv4.ip_forward`.
    pub ip_forward: Option<String>,
    /// Previous `net.bridge.bridge-nf-call-iptables`.
    pub bridge_nf_call_iptables: Option<String>,
    /// Host directories that did not exist and that the node's components create outside
    /// its state dir (the kubelet's fixed device-plugin dir, libcni's cache).
    pub created_dirs: Vec<PathBuf>,
    /// Shared host directories that did not exist; removed only if empty again.
    #[serde(default)]
    pub created_shared_dirs: Vec<PathBuf>,
}

/// Host directories the kubelet and containerd's CNI library use at fixed paths.
pub const FIXED_HOST_DIRS: [&str; 2] = ["/var/lib/kubelet", "/var/lib/cni"];
/// Shared directories the node adds entries to (`ip netns exec` resolv.conf overrides).
pub const SHARED_HOST_DIRS: [&str; 1] = ["/etc/netns"];

/// A host command failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct HostError {
    /// What was being done.
    pub what: String,
    /// Why it failed.
    pub detail: String,
}

fn err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostError {
    let what = what.into();
    move |e| HostError {
        what,
        detail: e.to_string(),
    }
}

/// Runs `program args`; `Err` with its stderr unless it succeeds.
pub fn run(program: &str, args: &[&str]) -> Result<String, HostError> {
    let what = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(err(what.clone()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HostError {
            what,
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

/// The FORWARD rules (iptables argument lists): pod traffic that would leave through any
/// interface but the pod bridge is rejected; bridge-local traffic (pod to pod, also after
/// kube-proxy's DNAT) passes.
pub fn forward_rules(net: &NodeNet) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![s(&[
        "-A",
        FORWARD_CHAIN,
        "-i",
        net.bridge,
        "!",
        "-o",
        net.bridge,
        "-m",
        "comment",
        "--comment",
        "weft test node: pods reach only this host and each other",
        "-j",
        "REJECT",
        "--reject-with",
        "icmp-net-prohibited",
    ])]
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn write_sysctl(path: &str, value: &str) -> Result<(), HostError> {
    std::fs::write(path, value).map_err(err(format!("writing {path}")))
}

/// Records the host state, then sets it up for the node: sysctls, bridge, route, FORWARD
/// rule, cgroup root. Idempotent.
pub fn prepare(net: &NodeNet, layout: &NodeLayout) -> Result<(), HostError> {
    let state = HostState {
        ip_forward: read_trimmed(IP_FORWARD),
        bridge_nf_call_iptables: read_trimmed(BRIDGE_NF),
        created_dirs: FIXED_HOST_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|d| !d.exists())
            .collect(),
        created_shared_dirs: SHARED_HOST_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|d| !d.exists())
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| HostError {
        what: "serializing the host state".into(),
        detail: e.to_string(),
    })?;
    std::fs::write(&layout.host_state, json).map_err(err("writing the host state"))?;

    write_sysctl(IP_FORWARD, "1")?;
    if Path::new(BRIDGE_NF).exists() {
        // Bridged pod-to-pod replies must pass through conntrack to be un-DNATed.
        write_sysctl(BRIDGE_NF, "1")?;
    }
    if run("ip", &["link", "show", net.bridge]).is_err() {
        run("ip", &["link", "add", net.bridge, "type", "bridge"])?;
    }
    let addr = format!("{}/16", net.node_ip);
    let shown = run("ip", &["-o", "-4", "addr", "show", "dev", net.bridge])?;
    if !shown.contains(&format!("inet {addr}")) {
        run("ip", &["addr", "add", &addr, "dev", net.bridge])?;
    }
    run("ip", &["link", "set", net.bridge, "up"])?;
    // Host-originated Service traffic (the API server calling a webhook's ClusterIP) leaves
    // from the node address, so replies come back over the bridge.
    run(
        "ip",
        &[
            "route",
            "replace",
            net.service_cidr,
            "dev",
            net.bridge,
            "src",
            &net.node_ip.to_string(),
        ],
    )?;
    let _ = run("iptables", &["-N", FORWARD_CHAIN]);
    run("iptables", &["-F", FORWARD_CHAIN])?;
    for rule in forward_rules(net) {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        run("iptables", &args)?;
    }
    if run("iptables", &["-C", "FORWARD", "-j", FORWARD_CHAIN]).is_err() {
        run("iptables", &["-I", "FORWARD", "1", "-j", FORWARD_CHAIN])?;
    }
    create_cgroup_root()
}

/// Undoes [`prepare`] from the recorded state (best effort; returns what failed).
pub fn restore(net: &NodeNet, layout: &NodeLayout) -> Vec<String> {
    let mut problems = Vec::new();
    let state: HostState = std::fs::read(&layout.host_state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    while run("iptables", &["-D", "FORWARD", "-j", FORWARD_CHAIN]).is_ok() {}
    let _ = run("iptables", &["-F", FORWARD_CHAIN]);
    let _ = run("iptables", &["-X", FORWARD_CHAIN]);
    let _ = run("ip", &["route", "del", net.service_cidr, "dev", net.bridge]);
    if run("ip", &["link", "show", net.bridge]).is_ok()
        && let Err(e) = run("ip", &["link", "del", net.bridge])
    {
        problems.push(e.to_string());
    }
    for (path, old) in [
        (IP_FORWARD, &state.ip_forward),
        (BRIDGE_NF, &state.bridge_nf_call_iptables),
    ] {
        if let Some(v) = old
            && let Err(e) = write_sysctl(path, v)
        {
            problems.push(e.to_string());
        }
    }
    for dir in &state.created_dirs {
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("removing {}: {e}", dir.display()));
        }
    }
    for dir in &state.created_shared_dirs {
        let _ = std::fs::remove_dir(dir);
    }
    problems.extend(remove_cgroup_root());
    problems
}

/// Mount points of the cgroup v1 hierarchies (from /proc/self/mountinfo), e.g.
/// `/sys/fs/cgroup/memory` and the named `systemd` one.
pub fn cgroup_v1_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            (fstype == "cgroup").then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .collect()
}

fn mounts() -> Vec<PathBuf> {
    cgroup_v1_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn root_in(mount: &Path) -> PathBuf {
    mount.join(CGROUP_ROOT.trim_start_matches('/'))
}

/// Creates [`CGROUP_ROOT`] in every v1 hierarchy (the kubelet refuses to start unless its
/// `cgroupRoot` exists in all of them); cpuset gets its parent's CPUs and memory nodes.
pub fn create_cgroup_root() -> Result<(), HostError> {
    for mount in mounts() {
        let dir = root_in(&mount);
        std::fs::create_dir_all(&dir).map_err(err(format!("creating {}", dir.display())))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let parent = mount.join(file);
            if parent.exists() {
                let value =
                    std::fs::read_to_string(&parent).map_err(err(format!("reading {}", parent.display())))?;
                std::fs::write(dir.join(file), value.trim()).map_err(err(format!("writing {file}")))?;
            }
        }
    }
    Ok(())
}

/// Kills whatever still runs in [`CGROUP_ROOT`] and removes it, deepest first.
pub fn remove_cgroup_root() -> Vec<String> {
    let mut problems = Vec::new();
    let all = mounts();
    for mount in &all {
        let root = root_in(mount);
        for pid in pids_under(&root) {
            let _ = sys::send_signal(pid, Signal::Kill);
        }
    }
    for mount in &all {
        let root = root_in(mount);
        if !root.exists() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&root, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let mut removed = false;
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    removed = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !removed {
                problems.push(format!("cannot remove cgroup {}", d.display()));
            }
        }
    }
    problems
}

/// PIDs in `dir` and every cgroup below it.
pub fn pids_under(dir: &Path) -> Vec<u32> {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::config::NODE_NET;

    #[test]
    fn forward_rule_rejects_pod_traffic_leaving_the_bridge() {
        let rules = forward_rules(&NODE_NET);
        assert_eq!(rules.len(), 1);
        let r = rules[0].join(" ");
        assert!(r.starts_with("-A WEFT-NODE-FORWARD -i weft0 ! -o weft0"), "{r}");
        assert!(r.ends_with("-j REJECT --reject-with icmp-net-prohibited"), "{r}");
    }

    #[test]
    fn finds_v1_hierarchies_and_skips_cgroup2() {
        let mi = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        assert_eq!(
            cgroup_v1_mounts(mi),
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/memory")
            ]
        );
    }

    #[test]
    fn host_state_round_trips() {
        let s = HostState {
            ip_forward: Some("0".into()),
            bridge_nf_call_iptables: None,
            created_dirs: vec!["/var/lib/kubelet".into()],
            created_shared_dirs: vec!["/etc/netns".into()],
        };
        let back: HostState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}

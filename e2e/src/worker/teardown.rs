//! Taking the test node down so nothing is left on the host, and cleaning up after a run
//! that was killed before it could do so: pod sandboxes removed through the CRI (so CNI
//! tears their network down), leftover shims and container processes killed, every mount
//! under the state dir unmounted, the kubelet's and kube-proxy's iptables chains and its
//! container log links removed.
//! One node per machine: a kernel lock on /run/weft-e2e-node.lock (released when its holder
//! dies, however it dies) says a node is up, and the owner record next to it says whose
//! and where its state is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::control_plane::sys::{self, Signal};

/// The owner record of the machine's one test node.
pub const OWNER_FILE: &str = "/run/weft-e2e-node.json";
/// The lock file whose exclusive lock the node's owner holds.
pub const LOCK_FILE: &str = "/run/weft-e2e-node.lock";
/// Set (to `1`) by a process that holds the node lock for a child it starts (the child's
/// node then runs under its parent's lock).
pub const LOCK_HELD_ENV: &str = "WEFT_NODE_LOCK_HELD";

/// The machine's node lock, held while the value lives.
#[derive(Debug)]
pub struct NodeLock {
    _file: std::fs::File,
}

impl NodeLock {
    /// Takes the lock, waiting up to `wait` for its holder; `Ok(None)` if it is still held
    /// then (the owner record tells by whom).
    pub fn acquire(wait: Duration) -> std::io::Result<Option<Self>> {
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)?;
        let began = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Self { _file: file })),
                Err(std::fs::TryLockError::WouldBlock) if began.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// Who runs the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owning process.
    pub pid: u32,
    /// Its state directory.
    pub state_dir: PathBuf,
}

/// Reads the owner record, if any.
pub fn read_owner() -> Option<Owner> {
    serde_json::from_slice(&std::fs::read(OWNER_FILE).ok()?).ok()
}

/// Whether `pid` is alive.
pub fn alive(pid: u32) -> bool {
    sys::send_signal(pid, Signal::Probe).is_ok()
}

/// Writes the owner record for this process (call with the [`NodeLock`] held).
pub fn claim(state_dir: &Path) -> std::io::Result<()> {
    let owner = Owner {
        pid: std::process::id(),
        state_dir: state_dir.to_path_buf(),
    };
    let bytes = serde_json::to_vec(&owner).map_err(std::io::Error::other)?;
    std::fs::write(OWNER_FILE, bytes)
}

/// Removes the owner record if it is ours.
pub fn release() {
    if read_owner().is_some_and(|o| o.pid == std::process::id()) {
        let _ = std::fs::remove_file(OWNER_FILE);
    }
}

/// Runs a command with a time limit; `Err` with its output on failure.
pub fn run_bounded(program: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let began = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if began.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {} timed out after {limit:?}",
                    program.display(),
                    args.join(" ")
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {}: {}: {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Stops and removes every pod sandbox through the CRI (containers are killed, CNI DEL
/// releases the IP and deletes the veth and netns).
pub fn remove_all_pods(crictl: &Path, crictl_config: &Path) -> Result<(), String> {
    let config = crictl_config.display().to_string();
    run_bounded(
        crictl,
        &["--config", &config, "rmp", "--all", "--force"],
        Duration::from_secs(90),
    )
    .map(|_| ())
}

/// PIDs of processes whose command line contains `needle` (shims name their containerd's
/// socket; containerd names its config).
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// SIGKILLs every process whose command line contains `needle` until none is left (new
/// ones may appear meanwhile: a containerd that is going away still forks shims to delete
/// tasks), for at most 5 s. Returns how many were killed.
pub fn kill_matching(needle: &str) -> usize {
    let began = Instant::now();
    let mut killed = 0;
    loop {
        let pids = pids_with_cmdline(needle);
        if pids.is_empty() || began.elapsed() > Duration::from_secs(5) {
            return killed;
        }
        for pid in &pids {
            if sys::send_signal(*pid, Signal::Kill).is_ok() {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mount points at or below `dir` (from mountinfo text), deepest first.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Unmounts everything at or below `dir` (lazily, so a busy mount cannot block cleanup).
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // A mount point can be stacked (the kubelet bind-mounts its root dir onto itself).
    for _ in 0..3 {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = mounts_under(&info, dir);
        if mounts.is_empty() {
            return problems;
        }
        problems.clear();
        for m in mounts {
            if let Err(e) = run_bounded(
                Path::new("umount"),
                &["-l", &m.display().to_string()],
                Duration::from_secs(10),
            ) {
                problems.push(e);
            }
        }
    }
    problems
}

/// Chains the kubelet creates (its canaries and the localnet firewall) that neither it nor
/// `kube-proxy --cleanup` removes.
const KUBELET_CHAINS: [(&str, &str); 5] = [
    ("filter", "KUBE-FIREWALL"),
    ("filter", "KUBE-KUBELET-CANARY"),
    ("nat", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-IPTABLES-HINT"),
];

/// Removes the kubelet's iptables chains (v4 and v6) and the jumps to them.
pub fn remove_kubelet_chains() {
    for ipt in ["iptables", "ip6tables"] {
        let ipt = Path::new(ipt);
        for builtin in ["INPUT", "OUTPUT"] {
            while run_bounded(
                ipt,
                &["-t", "filter", "-D", builtin, "-j", "KUBE-FIREWALL"],
                Duration::from_secs(10),
            )
            .is_ok()
            {}
        }
        for (table, chain) in KUBELET_CHAINS {
            let _ = run_bounded(ipt, &["-t", table, "-F", chain], Duration::from_secs(10));
            let _ = run_bounded(ipt, &["-t", table, "-X", chain], Duration::from_secs(10));
        }
    }
}

/// Where the kubelet links each container's log (`<pod>_<ns>_<container>-<id>.log`).
pub const CONTAINER_LOG_LINKS: &str = "/var/log/containers";

/// The symlinks in `dir` that point below `target_root` (the node's pod log dir).
pub fn log_links_into(dir: &Path, target_root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| std::fs::read_link(p).is_ok_and(|t| t.starts_with(target_root)))
        .collect()
}

/// Removes the kubelet's log links in `dir` that point below `target_root`; other links
/// (another kubelet's) stay. Returns how many were removed.
pub fn remove_log_links(dir: &Path, target_root: &Path) -> usize {
    log_links_into(dir, target_root)
        .into_iter()
        .filter(|l| std::fs::remove_file(l).is_ok())
        .count()
}

/// Runs `kube-proxy --cleanup` (removes its KUBE-* rules).
pub fn kube_proxy_cleanup(kube_proxy: &Path) -> Result<(), String> {
    run_bounded(kube_proxy, &["--cleanup", "--v=0"], Duration::from_secs(60)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_the_state_dir_deepest_first() {
        let mi = "\
22 1 254:0 / / rw - ext4 /dev/vda rw
90 22 254:0 /tmp/n/kubelet /tmp/n/kubelet rw shared:1 - ext4 /dev/vda rw
91 90 0:50 / /tmp/n/kubelet/pods/u/volumes/kubernetes.io~projected/tok rw - tmpfs tmpfs rw
92 22 0:51 / /tmp/n/containerd/state/x/rootfs rw - overlay overlay rw
93 22 0:52 / /tmp/nn/other rw - tmpfs tmpfs rw
";
        let m = mounts_under(mi, Path::new("/tmp/n"));
        assert_eq!(
            m,
            [
                PathBuf::from("/tmp/n/kubelet/pods/u/volumes/kubernetes.io~projected/tok"),
                PathBuf::from("/tmp/n/containerd/state/x/rootfs"),
                PathBuf::from("/tmp/n/kubelet"),
            ]
        );
    }

    #[test]
    fn only_log_links_into_the_node_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node/pod-logs");
        let links = dir.path().join("containers");
        std::fs::create_dir_all(&links).unwrap();
        let ours = links.join("a_ns_app-1.log");
        let theirs = links.join("b_ns_app-2.log");
        std::os::unix::fs::symlink(node.join("ns_a_uid/app/0.log"), &ours).unwrap();
        std::os::unix::fs::symlink("/elsewhere/0.log", &theirs).unwrap();
        std::fs::write(links.join("plain.log"), "x").unwrap();
        assert_eq!(log_links_into(&links, &node), vec![ours.clone()]);
        assert_eq!(remove_log_links(&links, &node), 1);
        assert!(std::fs::symlink_metadata(&ours).is_err());
        assert!(std::fs::symlink_metadata(&theirs).is_ok());
        assert_eq!(remove_log_links(&dir.path().join("missing"), &node), 0);
    }

    #[test]
    fn bounded_commands_report_failures_and_timeouts() {
        assert!(run_bounded(Path::new("true"), &[], Duration::from_secs(5)).is_ok());
        let e = run_bounded(Path::new("false"), &[], Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("false"), "{e}");
        let e = run_bounded(Path::new("sleep"), &["5"], Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn owner_records_round_trip() {
        let o = Owner {
            pid: 7,
            state_dir: "/tmp/x".into(),
        };
        let back: Owner = serde_json::from_slice(&serde_json::to_vec(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }
}

//! Starting a container process: the one place the agent needs `unsafe`.
//!
//! Why unsafe: a container process must enter the pod's network namespace, get a private
//! mount namespace with its volumes bind-mounted at their `mountPath`s, lose capabilities
//! and switch user — all between `fork` and `exec`, which std only offers through the
//! `unsafe` `pre_exec` hook (the closure runs in the forked child, where only
//! async-signal-safe calls are allowed: it therefore uses plain syscalls on data prepared
//! before the fork, and allocates nothing). Sending signals (`kill`) is the other libc call.
//!
//! Order in the child: parent-death signal → `setns(net)` → `unshare(NEWNS)` → make `/`
//! a slave mount (root-namespace unmounts still propagate in) → bind mounts (read-only
//! remount where asked) → no_new_privs → drop capabilities from the bounding set → groups,
//! gid, uid → exec.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One bind mount in the container's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path (a per-pod volume dir or file).
    pub source: PathBuf,
    /// Path the process sees.
    pub target: PathBuf,
    /// Remount read-only.
    pub read_only: bool,
}

/// Everything needed to start one container (or exec-probe) process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Program (absolute path or a name looked up in `PATH`) and arguments.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// `/run/netns/<name>` of the pod.
    pub netns: PathBuf,
    /// Bind mounts, applied in order.
    pub binds: Vec<Bind>,
    /// User to run as (`None` = root).
    pub uid: Option<u32>,
    /// Group to run as (`None` = the user's id, like container runtimes default to 0).
    pub gid: Option<u32>,
    /// Capabilities kept in the bounding set (`None` = all: privileged).
    pub capabilities: Option<Vec<u32>>,
    /// Set no_new_privs (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
    /// Working directory.
    pub working_dir: Option<PathBuf>,
    /// File receiving stdout and stderr (appended).
    pub log: PathBuf,
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Highest capability number the kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Creates each bind target if missing (a directory, or an empty file when the source is a
/// file) and returns the paths it created, outermost first, so they can be removed later.
pub fn ensure_targets(binds: &[Bind]) -> std::io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    for b in binds {
        let is_file = b.source.is_file();
        let dir = if is_file {
            b.target.parent().map(Path::to_path_buf)
        } else {
            Some(b.target.clone())
        };
        if let Some(dir) = dir {
            let mut missing: Vec<PathBuf> = dir
                .ancestors()
                .take_while(|a| !a.exists())
                .map(Path::to_path_buf)
                .collect();
            missing.reverse();
            std::fs::create_dir_all(&dir)?;
            created.extend(missing);
        }
        if is_file && !b.target.exists() {
            std::fs::write(&b.target, b"")?;
            created.push(b.target.clone());
        }
    }
    Ok(created)
}

/// Starts the process described by `spec` in its own process group (so signals reach its
/// children too). Bind targets must exist ([`ensure_targets`]).
pub fn spawn(spec: &LaunchSpec) -> std::io::Result<tokio::process::Child> {
    let (program, rest) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty argv"))?;
    let netns = std::fs::File::open(&spec.netns)?;
    let binds: Vec<(CString, CString, bool)> = spec
        .binds
        .iter()
        .map(|b| Ok((cstr(&b.source)?, cstr(&b.target)?, b.read_only)))
        .collect::<std::io::Result<_>>()?;
    let root = cstr(Path::new("/"))?;
    let drop_caps: Vec<u32> = match &spec.capabilities {
        None => Vec::new(),
        Some(keep) => (0..=last_cap()).filter(|c| !keep.contains(c)).collect(),
    };
    let (uid, gid, nnp) = (spec.uid, spec.gid.or(spec.uid), spec.no_new_privs);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(log.try_clone()?))
        .stderr(std::process::Stdio::from(log))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    let netns_fd = netns.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec. It only makes raw
    // syscalls (prctl, setns, unshare, mount, setgroups, setgid, setuid) on data prepared
    // above (CStrings, integers, an fd kept open by `netns` until spawn returns); it
    // allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == -1 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ))?;
            check(libc::setns(netns_fd, libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            for (src, dst, ro) in &binds {
                let flags = libc::MS_BIND | libc::MS_REC;
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ))?;
                if *ro {
                    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    check(libc::mount(
                        std::ptr::null(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ))?;
                }
            }
            if nnp {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            for cap in &drop_caps {
                check(libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0))?;
            }
            if let Some(gid) = gid {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = uid {
                check(libc::setuid(uid))?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(netns);
    child
}

/// Sends `signal` to the process group `pgid` (the container's process and its children).
/// Returns false if no such group exists any more.
pub fn signal_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    // SAFETY: kill(2) with a negative pid only sends a signal; no memory is touched.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// Sends `signal` to one process. Returns false if it does not exist.
pub fn signal_pid(pid: u32, signal: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: as above.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether any process of group `pgid` is still alive.
pub fn group_alive(pgid: u32) -> bool {
    signal_group(pgid, 0)
}

/// The capability numbers of the names Kubernetes uses (`NET_ADMIN`, `CAP_NET_RAW`, …).
pub fn capability_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        assert_eq!(capability_number("NET_ADMIN"), Some(12));
        assert_eq!(capability_number("cap_net_raw"), Some(13));
        assert_eq!(capability_number("SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability_number("ALL"), None);
    }

    #[test]
    fn ensure_targets_creates_and_reports_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let src_dir = dir.path().join("vol");
        std::fs::create_dir(&src_dir).unwrap();
        let src_file = dir.path().join("hosts");
        std::fs::write(&src_file, "x").unwrap();
        let binds = vec![
            Bind {
                source: src_dir,
                target: dir.path().join("a/b/c"),
                read_only: true,
            },
            Bind {
                source: src_file,
                target: dir.path().join("etc/hosts"),
                read_only: false,
            },
        ];
        let created = ensure_targets(&binds).unwrap();
        assert_eq!(
            created,
            vec![
                dir.path().join("a"),
                dir.path().join("a/b"),
                dir.path().join("a/b/c"),
                dir.path().join("etc"),
                dir.path().join("etc/hosts")
            ]
        );
        assert!(dir.path().join("etc/hosts").is_file());
        assert!(ensure_targets(&binds).unwrap().is_empty());
    }
}

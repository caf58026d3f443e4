//! A throwaway containerd: its own root, state, socket and config (CRI plugin off) in a
//! temporary directory, started by the test and, on drop — also after a failed
//! assertion — stripped of its tasks and containers, killed by PID together with any
//! shim it left, its mounts detached, its cgroups and its directory removed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Out, run};

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    dir: Option<tempfile::TempDir>,
    child: Child,
    /// Socket address.
    pub socket: PathBuf,
    /// containerd namespace the test uses.
    pub namespace: String,
}

fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

impl Containerd {
    /// Starts containerd and waits until `ctr version` answers.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("weft-ctrd-").tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config(dir.path())).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd (make images-deps installs it)");
        let c = Containerd {
            socket: dir.path().join("containerd.sock"),
            dir: Some(dir),
            child,
            namespace: format!("weft-image-test-{}", std::process::id()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if c.socket.exists() && c.ctr(&["version"]).ok {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// containerd's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap()
    }

    /// containerd's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr -a <socket> -n <namespace> args` (limit 120 s).
    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(&self.socket)
            .args(["-n", &self.namespace])
            .args(args);
        run(&mut cmd, Duration::from_secs(120))
    }

    /// `ctr args`, asserting success; returns stdout.
    pub fn must(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.ok, "ctr {args:?} failed: {}", out.text());
        out.stdout
    }

    fn ids(&self, what: &str) -> Vec<String> {
        self.ctr(&[what, "ls", "-q"])
            .stdout
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn teardown(&mut self) {
        for task in self.ids("tasks") {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", &task]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !self.ctr(&["tasks", "delete", &task]).ok {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for c in self.ids("containers") {
            let _ = self.ctr(&["containers", "delete", &c]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir().to_path_buf();
        kill_shims(&self.socket);
        unmount_under(&dir);
        for cg in cgroups(&self.namespace) {
            remove_cgroup(&cg);
        }
    }
}

/// PIDs of the shims serving `socket`.
pub fn shims(socket: &Path) -> Vec<i32> {
    let needle = socket.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("containerd-shim") && cmdline.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// The cgroup directories runc made for `namespace` (`/sys/fs/cgroup/<controller>/<ns>`).
pub fn cgroups(namespace: &str) -> Vec<PathBuf> {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    controllers
        .flatten()
        .map(|c| c.path().join(namespace))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes an (empty) cgroup and its child cgroups, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// SIGKILLs shims still serving our socket (found by PID through their command line).
fn kill_shims(socket: &Path) {
    for pid in shims(socket) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Detaches every mount below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mut points = mounts_under(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.teardown();
        if let Some(d) = self.dir.take() {
            let path = d.path().to_path_buf();
            if d.close().is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

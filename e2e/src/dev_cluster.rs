//! The developer cluster behind `make dev-cluster`: the test harness's control plane run in
//! the background with its state in `.weft/` (kubeconfig, logs, pidfile). `start` launches
//! a detached `up` process and waits for it to be ready; `down` stops it by PID.
//!
//! The `up` process owns everything it starts (the control plane, then the worker node), so
//! stopping that one PID stops the whole cluster; its children die with it even on SIGKILL
//! (and the next start cleans up the pods such a kill leaves on the node).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::sys::{self, Signal};

/// Files of a dev cluster inside its state dir (besides the control plane's own layout).
#[derive(Debug, Clone)]
pub struct DevPaths {
    /// The state dir (`.weft`).
    pub dir: PathBuf,
    /// PID of the `up` process.
    pub pidfile: PathBuf,
    /// Written by `up` once the cluster is ready (server URL and startup time).
    pub ready: PathBuf,
    /// stdout/stderr of the detached `up` process.
    pub log: PathBuf,
}

impl DevPaths {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            pidfile: dir.join("dev-cluster.pid"),
            ready: dir.join("dev-cluster.ready"),
            log: dir.join("dev-cluster.log"),
        }
    }
}

/// What went wrong managing the dev cluster.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Already running.
    #[error("a dev cluster is already running (pid {0}); stop it with `make dev-cluster-down`")]
    AlreadyRunning(u32),
    /// The `up` process died before becoming ready.
    #[error("the dev cluster exited during startup; see {0}")]
    DiedDuringStartup(PathBuf),
    /// Not ready in time.
    #[error("the dev cluster was not ready after {0:?}; see {1}")]
    NotReady(Duration, PathBuf),
    /// Did not stop in time.
    #[error("pid {0} did not stop within {1:?}")]
    DidNotStop(u32, Duration),
    /// I/O.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// The PID in the pidfile if that process is alive and is a dev cluster (a stale pidfile
/// whose PID was reused by something else is ignored).
pub fn running_pid(paths: &DevPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(&paths.pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_dev_cluster(pid).then_some(pid)
}

fn is_dev_cluster(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("weft-dev-cluster"))
        .unwrap_or(false)
}

/// Records this process as the running dev cluster; fails if another one runs.
pub fn claim(paths: &DevPaths) -> Result<(), DevError> {
    if let Some(pid) = running_pid(paths).filter(|p| *p != std::process::id()) {
        return Err(DevError::AlreadyRunning(pid));
    }
    std::fs::create_dir_all(&paths.dir)
        .map_err(|e| DevError::Io(format!("creating {}", paths.dir.display()), e))?;
    let _ = std::fs::remove_file(&paths.ready);
    std::fs::write(&paths.pidfile, std::process::id().to_string())
        .map_err(|e| DevError::Io(format!("writing {}", paths.pidfile.display()), e))
}

/// Marks the cluster ready (read by [`start_detached`]).
pub fn mark_ready(paths: &DevPaths, summary: &str) -> Result<(), DevError> {
    std::fs::write(&paths.ready, summary)
        .map_err(|e| DevError::Io(format!("writing {}", paths.ready.display()), e))
}

/// Removes the pidfile and ready marker (on the way out of `up`).
pub fn release(paths: &DevPaths) {
    let _ = std::fs::remove_file(&paths.ready);
    let _ = std::fs::remove_file(&paths.pidfile);
}

/// Runs `exe up <up_args…>` detached (own process group, output to the dev-cluster log) and
/// waits until it marks itself ready. Returns its PID and the ready summary.
pub fn start_detached(
    exe: &Path,
    up_args: &[String],
    paths: &DevPaths,
    timeout: Duration,
) -> Result<(u32, String), DevError> {
    if let Some(pid) = running_pid(paths) {
        return Err(DevError::AlreadyRunning(pid));
    }
    std::fs::create_dir_all(&paths.dir)
        .map_err(|e| DevError::Io(format!("creating {}", paths.dir.display()), e))?;
    let _ = std::fs::remove_file(&paths.ready);
    let log = std::fs::File::create(&paths.log)
        .map_err(|e| DevError::Io(format!("creating {}", paths.log.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| DevError::Io("duplicating the log handle".into(), e))?;
    let mut child = Command::new(exe)
        .arg("up")
        .args(up_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| DevError::Io(format!("starting {}", exe.display()), e))?;
    let began = Instant::now();
    loop {
        if let Ok(summary) = std::fs::read_to_string(&paths.ready) {
            return Ok((child.id(), summary));
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Err(DevError::DiedDuringStartup(paths.log.clone()));
        }
        if began.elapsed() > timeout {
            return Err(DevError::NotReady(timeout, paths.log.clone()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the running dev cluster (SIGTERM, then waits). `Ok(None)` if none was running.
pub fn stop(paths: &DevPaths, timeout: Duration) -> Result<Option<u32>, DevError> {
    let Some(pid) = running_pid(paths) else {
        release(paths);
        return Ok(None);
    };
    sys::send_signal(pid, Signal::Term).map_err(|e| DevError::Io(format!("signalling {pid}"), e))?;
    let began = Instant::now();
    while is_dev_cluster(pid) {
        if began.elapsed() > timeout {
            return Err(DevError::DidNotStop(pid, timeout));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    release(paths);
    Ok(Some(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_or_foreign_pidfiles_are_not_running_clusters() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DevPaths::new(dir.path());
        assert_eq!(running_pid(&paths), None);
        // Our own PID is alive but this test binary is not a dev cluster.
        std::fs::write(&paths.pidfile, std::process::id().to_string()).unwrap();
        assert_eq!(running_pid(&paths), None);
        std::fs::write(&paths.pidfile, "garbage").unwrap();
        assert_eq!(running_pid(&paths), None);
        assert!(stop(&paths, Duration::from_secs(1)).unwrap().is_none());
        assert!(!paths.pidfile.exists(), "stale pidfile removed");
    }

    #[test]
    fn claim_mark_release_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DevPaths::new(&dir.path().join("state"));
        claim(&paths).unwrap();
        assert_eq!(
            std::fs::read_to_string(&paths.pidfile).unwrap(),
            std::process::id().to_string()
        );
        mark_ready(&paths, "ok").unwrap();
        assert!(paths.ready.exists());
        release(&paths);
        assert!(!paths.pidfile.exists() && !paths.ready.exists());
    }

    #[test]
    fn start_detached_reports_a_child_that_dies() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DevPaths::new(dir.path());
        let err = start_detached(Path::new("/bin/false"), &[], &paths, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, DevError::DiedDuringStartup(_)), "{err}");
    }
}

//! Where one control plane keeps its files, and cleanup of temp dirs left behind by test
//! processes that were killed before they could remove them.

use std::path::{Path, PathBuf};

/// Prefix of the temp dirs the harness creates (in the system temp dir).
pub const TEMP_PREFIX: &str = "weft-kube-";
const OWNER_FILE: &str = "owner.pid";

/// Paths inside a control plane's state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The state directory itself.
    pub root: PathBuf,
    /// Certificates and keys.
    pub pki: PathBuf,
    /// etcd data dir.
    pub etcd_data: PathBuf,
    /// One log file per component.
    pub logs: PathBuf,
    /// Admin kubeconfig (what humans and tests use).
    pub kubeconfig: PathBuf,
    /// kube-controller-manager's kubeconfig.
    pub controller_manager_kubeconfig: PathBuf,
    /// kube-scheduler's kubeconfig.
    pub scheduler_kubeconfig: PathBuf,
}

impl Layout {
    /// The layout under `root` (nothing is created).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            pki: root.join("pki"),
            etcd_data: root.join("etcd"),
            logs: root.join("logs"),
            kubeconfig: root.join("kubeconfig"),
            controller_manager_kubeconfig: root.join("pki").join("controller-manager.kubeconfig"),
            scheduler_kubeconfig: root.join("pki").join("scheduler.kubeconfig"),
        }
    }

    /// Removes what a previous run left (data, keys, logs, kubeconfig) and creates the
    /// directories, recording this process as the owner. Other files in `root` are kept.
    pub fn prepare_fresh(&self) -> std::io::Result<()> {
        for dir in [&self.pki, &self.etcd_data, &self.logs] {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
        std::fs::create_dir_all(&self.pki)?;
        std::fs::create_dir_all(&self.logs)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&self.etcd_data)?;
        }
        std::fs::write(self.root.join(OWNER_FILE), std::process::id().to_string())
    }

    /// Removes everything but the logs (used when a test failed and the logs are kept).
    pub fn remove_all_but_logs(&self) {
        let _ = std::fs::remove_dir_all(&self.etcd_data);
        let _ = std::fs::remove_dir_all(&self.pki);
        let _ = std::fs::remove_file(&self.kubeconfig);
        let _ = std::fs::remove_file(self.root.join(OWNER_FILE));
    }
}

/// Removes `weft-kube-*` dirs in `temp` whose owner process is gone (a test binary that was
/// SIGKILLed cannot clean up after itself; its children died with it). Returns how many.
pub fn remove_stale_temp_dirs(temp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE)).ok();
        let Some(pid) = owner.and_then(|s| s.trim().parse::<u32>().ok()) else {
            continue;
        };
        if !process_alive(pid) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_fresh_wipes_previous_run_but_keeps_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::new(dir.path());
        l.prepare_fresh().unwrap();
        std::fs::write(l.etcd_data.join("old"), "x").unwrap();
        std::fs::write(&l.kubeconfig, "old").unwrap();
        std::fs::write(dir.path().join("dev-cluster.pid"), "1").unwrap();
        l.prepare_fresh().unwrap();
        assert!(!l.etcd_data.join("old").exists());
        assert!(!l.kubeconfig.exists());
        assert!(dir.path().join("dev-cluster.pid").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(OWNER_FILE)).unwrap(),
            std::process::id().to_string()
        );
    }

    #[test]
    fn stale_dirs_of_dead_owners_are_removed_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let dead = temp.path().join(format!("{TEMP_PREFIX}dead"));
        let live = temp.path().join(format!("{TEMP_PREFIX}live"));
        let foreign = temp.path().join("other-dir");
        for d in [&dead, &live, &foreign] {
            std::fs::create_dir(d).unwrap();
        }
        // PIDs are < 2^22 on Linux, so this one cannot be alive.
        std::fs::write(dead.join(OWNER_FILE), "4294967").unwrap();
        std::fs::write(live.join(OWNER_FILE), std::process::id().to_string()).unwrap();
        std::fs::write(foreign.join(OWNER_FILE), "4294967").unwrap();
        assert_eq!(remove_stale_temp_dirs(temp.path()), 1);
        assert!(!dead.exists() && live.exists() && foreign.exists());
    }
}

//! A throwaway CNCF Distribution registry (built from its Go module by
//! `make images-deps`) listening on 127.0.0.1 only, storing into a temporary directory,
//! killed by PID on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http_ok, repo_root};

/// The registry binary: `$WEFT_REGISTRY_BIN`, else the path `tools/images/registry.sh`
/// builds for the version pinned in `tools/registry/go.mod`.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_REGISTRY_BIN") {
        return PathBuf::from(p);
    }
    let go_mod = std::fs::read_to_string(repo_root().join("tools/registry/go.mod")).unwrap();
    let version = go_mod
        .lines()
        .find_map(|l| l.strip_prefix("require github.com/distribution/distribution/v3 "))
        .expect("tools/registry/go.mod pins distribution/v3")
        .trim()
        .to_string();
    let cache = std::env::var_os("WEFT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weft"));
    cache.join("registry").join(version).join("registry")
}

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Registry {
    /// Starts the registry and waits until `/v2/` answers.
    pub fn start() -> Self {
        let bin = binary();
        assert!(
            bin.is_file(),
            "{} not found: run `make images-deps` (builds the registry)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("weft-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = Registry {
            child,
            _dir: dir,
            addr,
        };
        if let Err(last) = http_ok(port, "/v2/", Duration::from_secs(20)) {
            let log = std::fs::read_to_string(reg._dir.path().join("registry.log")).unwrap_or_default();
            panic!("registry on {} did not answer /v2/: {last}\n{log}", reg.addr);
        }
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Shared helpers of the image tests: finding the archives `make images` built, running
//! commands with a deadline, and gating the tests that need root.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
// `geteuid`, `kill` and `umount2` (containerd teardown) have no safe std wrapper.
#![allow(unsafe_code)]

pub mod containerd;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_image::catalog::Catalog;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The catalog of `make images`: `$WEFT_IMAGES_JSON`, else `target/images/images.json`.
/// Panics with the fix when it is missing: these tests check the real archives.
pub fn catalog() -> Catalog {
    let path = std::env::var_os("WEFT_IMAGES_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/images/images.json"));
    assert!(
        path.is_file(),
        "{} not found: run `make images` first (it builds the weft image archives these tests check)",
        path.display()
    );
    let cat = Catalog::load(&path).unwrap();
    for name in ["controller", "proxy", "demo-app"] {
        let e = cat
            .images
            .get(name)
            .unwrap_or_else(|| panic!("{} has no {name} image", path.display()));
        assert!(
            e.archive.is_file(),
            "{} missing: run `make images`",
            e.archive.display()
        );
    }
    cat
}

/// Whether the tests run as root (containerd needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Prints the skip reason to both streams, as the other root-gated tests do.
pub fn skip(test: &str, reason: &str) {
    println!("SKIPPED {test}: {reason}");
    eprintln!("SKIPPED {test}: {reason}");
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Out {
    /// Exit success.
    pub ok: bool,
    /// Exit code (None when killed).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Both streams, for failure messages.
    pub fn text(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion, killing it after `limit`. Output goes through files so a
/// chatty child can never block on a full pipe.
pub fn run(cmd: &mut Command, limit: Duration) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("starting {cmd:?}: {err}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Out {
        ok: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&o).unwrap_or_default(),
        stderr: std::fs::read_to_string(&e).unwrap_or_default(),
    };
    if status.is_none() {
        panic!("{cmd:?} did not finish within {limit:?}\n{}", out.text());
    }
    out
}

/// Runs `program args`, asserting success; returns stdout.
pub fn must(program: &str, args: &[&str]) -> String {
    let out = run(Command::new(program).args(args), Duration::from_secs(120));
    assert!(out.ok, "{program} {args:?} failed: {}", out.text());
    out.stdout
}

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `GET path` on 127.0.0.1:`port` until it answers `200` or `limit` passes.
pub fn http_ok(port: u16, path: &str, limit: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut resp = String::new();
                if s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut resp).is_ok() {
                    if resp.starts_with("HTTP/1.1 200") {
                        return Ok(resp);
                    }
                    last = resp;
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

//! Child processes of a run (backend, proxies) behind Drop guards, free loopback ports, and
//! readiness polling over plain HTTP/1.1.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    /// When the process was spawned (for time-to-ready).
    pub started: Instant,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawning {name}: {cmd:?}"))?;
        tracing::debug!(name, pid = child.id(), "spawned");
        Ok(Self {
            name: name.to_string(),
            child,
            started,
        })
    }

    /// Spawns `cmd` and waits (bounded) for the line `listening <addr>` on its stdout.
    pub fn spawn_announcing(name: &str, mut cmd: Command) -> anyhow::Result<(Self, SocketAddr)> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut proc = Self {
            name: name.to_string(),
            child,
            started,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .context("backend did not announce")?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected line from {name}: {line:?}"))?
            .parse()?;
        if proc.child.try_wait()?.is_some() {
            bail!("{name} exited");
        }
        Ok((proc, addr))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited: {status}", self.name),
            None => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A loopback address with a free port.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// The status code of `GET path` (HTTP/1.1, connection close), or None if unreachable.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    parse_status(&buf[..n])
}

/// The status code of an HTTP/1.x status line.
pub fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// Polls `GET path` every millisecond until it answers 200; returns the time since `proc`
/// was spawned. Fails if the process exits or `limit` passes.
pub fn wait_ready(
    proc: &mut Proc,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        if http_status(addr, path) == Some(200) {
            return Ok(proc.started.elapsed());
        }
        proc.check_alive()?;
        if proc.started.elapsed() > limit {
            bail!("{} not ready at {addr}{path} after {limit:?}", proc.name);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn dropped_proc_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut p = Proc::spawn("sleep", cmd, &dir.path().join("log")).unwrap();
        p.check_alive().unwrap();
        let pid = p.pid();
        drop(p);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        assert!(stat.is_err(), "process {pid} still exists");
    }
}

//! Child processes of the control plane: each one logs to its own file, dies with us
//! (parent-death signal from a spawner thread that lives as long as the process) and is
//! killed and reaped on drop.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

use super::sys;

type SpawnReply = Sender<io::Result<Child>>;

/// Requests to the spawner thread. PR_SET_PDEATHSIG fires when the *thread* that forked the
/// child ends, and test threads end after each test, so all children are forked by one
/// thread that never ends.
static SPAWNER: OnceLock<Mutex<Sender<(Command, SpawnReply)>>> = OnceLock::new();

fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("weft-e2e-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start spawner thread"));
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// Spawns `cmd` so that it dies with this process (parent-death signal, forked by the
/// long-lived spawner thread): for other processes a test runs next to the control plane
/// (e.g. real `weft-controller` replicas), which must not outlive a killed test binary.
pub fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    sys::kill_with_parent(&mut cmd);
    spawn_from_long_lived_thread(cmd)
}

/// One running control-plane component.
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl ManagedProcess {
    /// Starts `program args…` with stdout and stderr appended to `logs/<name>.log`.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        logs: &Path,
    ) -> io::Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        sys::kill_with_parent(&mut cmd);
        let child = spawn_from_long_lived_thread(cmd)?;
        tracing::debug!(component = name, pid = child.id(), log = %log.display(), "started");
        Ok(Self { name, child, log })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state: {e}")),
        }
    }

    /// The last `lines` lines of this process's log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// SIGKILL and reap. Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            tracing::debug!(component = self.name, "stopped");
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a text file (empty if unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_logs_and_stop_reaps() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec![
            "-c".to_string(),
            "echo hello; echo oops >&2; exec sleep 30".to_string(),
        ];
        let mut p = ManagedProcess::spawn("sh-test", Path::new("/bin/sh"), &args, dir.path()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !p.log_tail(5).contains("oops") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(p.log_tail(5), "hello\noops");
        assert!(p.exited().is_none());
        let pid = p.pid();
        p.stop();
        assert!(p.exited().is_some());
        assert!(
            sys::send_signal(pid, sys::Signal::Probe).is_err(),
            "process {pid} still exists"
        );
    }

    #[test]
    fn tail_takes_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.log");
        std::fs::write(&f, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&f, 2), "b\nc");
        assert_eq!(tail(&f, 10), "a\nb\nc");
        assert_eq!(tail(&dir.path().join("missing"), 3), "");
    }
}

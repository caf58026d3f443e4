//! The few OS calls the harness needs that the standard library does not offer safely:
//! tying a child's life to ours (`PR_SET_PDEATHSIG`), running cleanup at process exit
//! (`atexit`) and sending a signal to a PID.
//!
//! Why `unsafe` is allowed here (and only here): `CommandExt::pre_exec` is unsafe because the
//! closure runs between `fork` and `exec`, where only async-signal-safe calls are allowed;
//! `prctl` and `getppid` are plain syscalls and qualify. `atexit` and `kill` are FFI calls
//! with no memory-safety preconditions beyond valid arguments.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the kernel SIGKILL the child when the thread that spawned it exits (so nothing
/// leaks if the test process dies). Spawn from a thread that lives as long as the process.
pub(crate) fn kill_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure only makes the async-signal-safe syscalls prctl and getppid and
    // allocates nothing (io::Error::last_os_error / from_raw_os_error do not allocate).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal would come.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Registers `f` to run when the process exits normally (also after `process::exit`, which
/// is how the test harness ends a failed run). Statics are never dropped, so this is how the
/// shared control plane gets stopped and its temp dir removed.
pub(crate) fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `f` is a plain function pointer valid for the whole program.
    if unsafe { libc::atexit(f) } == 0 {
        Ok(())
    } else {
        Err(io::Error::other("atexit registration failed"))
    }
}

/// Signals understood by [`send_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask politely (graceful shutdown).
    Term,
    /// Kill now.
    Kill,
    /// Probe only: checks the PID exists.
    Probe,
}

/// Sends `signal` to `pid`. `Signal::Probe` sends no signal and only checks existence.
pub fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
        Signal::Probe => 0,
    };
    // SAFETY: kill(2) with a positive PID and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_finds_self_and_rejects_nonsense() {
        send_signal(std::process::id(), Signal::Probe).unwrap();
        assert!(send_signal(0, Signal::Term).is_err());
        assert!(send_signal(u32::MAX, Signal::Term).is_err());
    }

    #[test]
    fn child_with_parent_death_signal_runs() {
        let mut cmd = Command::new("true");
        kill_with_parent(&mut cmd);
        assert!(cmd.status().unwrap().success());
    }
}

//! Running the host tools the agent drives (`ip`, `iptables-restore`, `iptables`): argument
//! vectors in, captured output or a descriptive error out. Async for the agent's tasks and
//! blocking for `Drop`.

use std::process::Output;

/// A host command failed to start or exited non-zero.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {detail}")]
pub struct CmdError {
    /// The command line.
    pub command: String,
    /// Exit status and stderr, or the spawn error.
    pub detail: String,
}

fn line(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(program: &str, args: &[String], out: std::io::Result<Output>) -> Result<String, CmdError> {
    let command = line(program, args);
    match out {
        Err(e) => Err(CmdError {
            command,
            detail: e.to_string(),
        }),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(CmdError {
            command,
            detail: format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        }),
    }
}

/// Runs `program args…` and returns its stdout.
pub async fn run(program: &str, args: &[String]) -> Result<String, CmdError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await;
    check(program, args, out)
}

/// Runs `program args…` with `stdin` fed to it.
pub async fn run_with_stdin(program: &str, args: &[String], stdin: &str) -> Result<String, CmdError> {
    use tokio::io::AsyncWriteExt;
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Err(CmdError {
                command: line(program, args),
                detail: e.to_string(),
            });
        }
    };
    if let Some(mut input) = child.stdin.take() {
        let written = input.write_all(stdin.as_bytes()).await;
        drop(input);
        if let Err(e) = written {
            return Err(CmdError {
                command: line(program, args),
                detail: format!("writing stdin: {e}"),
            });
        }
    }
    check(program, args, child.wait_with_output().await)
}

/// Blocking variant of [`run`] (for `Drop`).
pub fn run_blocking(program: &str, args: &[String]) -> Result<String, CmdError> {
    check(
        program,
        args,
        std::process::Command::new(program).args(args).output(),
    )
}

/// `["a", "b"]` → owned strings.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

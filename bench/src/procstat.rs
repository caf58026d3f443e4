//! Reading a process's CPU time and memory from /proc, and describing the machine.
//! The parsers are pure; the readers are thin wrappers over `std::fs`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every Linux ABI.
const TICKS_PER_SEC: u64 = 100;

/// Errors reading /proc.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("reading /proc/{pid}: {source}")]
    Io { pid: u32, source: std::io::Error },
    #[error("unexpected format in /proc/{pid}/{file}")]
    Format { pid: u32, file: &'static str },
}

/// utime + stime (all threads, including exited ones) from the text of /proc/<pid>/stat.
pub fn parse_cpu(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may contain spaces; fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" the fields start at #3 (state); utime is #14 and stime #15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / TICKS_PER_SEC))
}

/// A `kB` field such as `VmHWM` or `VmRSS` from the text of /proc/<pid>/status.
pub fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

fn read(pid: u32, file: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|source| ProcError::Io { pid, source })
}

/// Total CPU time the process has used so far.
pub fn cpu(pid: u32) -> Result<Duration, ProcError> {
    parse_cpu(&read(pid, "stat")?).ok_or(ProcError::Format { pid, file: "stat" })
}

/// Current (`VmRSS`) or peak (`VmHWM`) resident set size in kB.
pub fn rss_kb(pid: u32, field: &str) -> Result<u64, ProcError> {
    parse_status_kb(&read(pid, "status")?, field).ok_or(ProcError::Format { pid, file: "status" })
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average when the run started (the machine is shared).
    pub loadavg_at_start: f64,
}

/// The `model name` line of /proc/cpuinfo.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// Describes this machine.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model: parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        loadavg_at_start: load
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_stat_with_spaces_in_name() {
        let stat = "4242 (weft proxy) S 1 4242 4242 0 -1 4194304 500 0 0 0 150 50 0 0 20 0 3 0 \
                    100 1000000 300 18446744073709551615";
        assert_eq!(parse_cpu(stat), Some(Duration::from_millis(2000)));
        assert_eq!(parse_cpu("garbage"), None);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tweft-proxy\nVmPeak:\t  20000 kB\nVmHWM:\t    6124 kB\nVmRSS:\t    5000 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(6124));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(5000));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn cpu_model_line() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kb(me, "VmHWM").unwrap() > 0);
        cpu(me).unwrap();
    }
}

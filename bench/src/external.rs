//! External load tools from Debian: `wrk` (closed-loop HTTP/1.1 saturation) and `h2load`
//! (HTTP/2 multiplexing). Pure output parsers plus a bounded runner.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// Requests completed and their rate, as a tool reported them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub requests: u64,
    pub rps: f64,
    /// Non-2xx/3xx responses and socket errors.
    pub errors: u64,
}

/// Whether `tool` is on PATH.
pub fn available(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// Parses wrk's summary (`N requests in Ts`, `Requests/sec: R`, optional error lines).
pub fn parse_wrk(out: &str) -> Option<Throughput> {
    let requests = out.lines().find_map(|l| {
        let l = l.trim();
        let (n, rest) = l.split_once(' ')?;
        rest.starts_with("requests in").then(|| n.parse().ok())?
    })?;
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())?;
    let mut errors = 0;
    for l in out.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(v) = l.strip_prefix("Socket errors:") {
            errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(Throughput {
        requests,
        rps,
        errors,
    })
}

/// Parses h2load's summary (`finished in Ts, R req/s, ...` and `requests: N total, ... M succeeded, K failed, E errored`).
pub fn parse_h2load(out: &str) -> Option<Throughput> {
    let rps = out.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("finished in")?;
        let field = rest.split(',').nth(1)?.trim();
        field.strip_suffix("req/s")?.trim().parse().ok()
    })?;
    let line = out.lines().find(|l| l.trim().starts_with("requests:"))?;
    let count = |word: &str| -> Option<u64> {
        line.split(',').find_map(|p| {
            let p = p.trim().trim_start_matches("requests:").trim();
            let (n, w) = p.split_once(' ')?;
            (w == word).then(|| n.parse().ok())?
        })
    };
    Some(Throughput {
        requests: count("succeeded")?,
        rps,
        errors: count("failed").unwrap_or(0) + count("errored").unwrap_or(0),
    })
}

fn run_bounded(mut cmd: Command, limit: Duration) -> anyhow::Result<String> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let start = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `wrk -t<threads> -c<conns> -d<secs>` against `target`.
pub fn wrk(
    target: SocketAddr,
    threads: usize,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("5s")
        .arg(format!("http://{target}/"));
    let out = run_bounded(cmd, duration + Duration::from_secs(15))?;
    parse_wrk(&out).with_context(|| format!("unparsable wrk output: {out}"))
}

/// `h2load` (HTTP/2 prior knowledge, `clients` connections × `streams` concurrent streams).
pub fn h2load(
    target: SocketAddr,
    clients: usize,
    streams: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let mut cmd = Command::new("h2load");
    cmd.arg("-c")
        .arg(clients.to_string())
        .arg("-m")
        .arg(streams.to_string())
        .arg("-t")
        .arg("1")
        .arg("-D")
        .arg(duration.as_secs().max(1).to_string())
        .arg(format!("http://{target}/"));
    let out = run_bounded(cmd, duration + Duration::from_secs(15))?;
    parse_h2load(&out).with_context(|| format!("unparsable h2load output: {out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 4s test @ http://127.0.0.1:8080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   829.03us  300.11us   9.96ms   83.12%
    Req/Sec     9.71k   631.22    10.95k    72.50%
  77384 requests in 4.00s, 10.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  19335.61
Transfer/sec:      2.53MB
";

    const H2LOAD: &str = "starting benchmark...
finished in 4.00s, 24000.50 req/s, 1.20MB/s
requests: 96002 total, 96002 started, 96000 done, 95990 succeeded, 10 failed, 2 errored, 0 timeout
status codes: 95990 2xx, 0 3xx, 0 4xx, 10 5xx
";

    #[test]
    fn wrk_summary() {
        let t = parse_wrk(WRK).unwrap();
        assert_eq!(t.requests, 77384);
        assert!((t.rps - 19335.61).abs() < 1e-6);
        assert_eq!(t.errors, 7);
        assert_eq!(parse_wrk("nothing"), None);
    }

    #[test]
    fn h2load_summary() {
        let t = parse_h2load(H2LOAD).unwrap();
        assert_eq!(t.requests, 95990);
        assert!((t.rps - 24000.50).abs() < 1e-6);
        assert_eq!(t.errors, 12);
    }
}

//! Closed-loop load for saturation throughput: N keep-alive connections, each sending its next
//! request as soon as the previous answer arrives, for a fixed time.

use super::{Conn, RunStats};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Runs `connections` closed loops against `target` for `duration`.
pub async fn run(
    target: SocketAddr,
    connections: usize,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<RunStats> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        conns.push(Conn::open(target).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for mut conn in conns {
        tasks.push(tokio::spawn(async move {
            let mut stats = RunStats::empty();
            let mut last = start;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = tokio::time::timeout(timeout, conn.get_or_reconnect())
                    .await
                    .unwrap_or(false);
                let done = Instant::now();
                last = done;
                if ok {
                    stats.ok += 1;
                    let us = (done - sent).as_micros() as u64;
                    stats.latency.saturating_record(us);
                    stats.service.saturating_record(us);
                } else {
                    stats.errors += 1;
                }
            }
            (stats, last)
        }));
    }
    let mut all = RunStats::empty();
    let mut last = start;
    for t in tasks {
        let (s, l) = t.await?;
        all.merge(&s);
        last = last.max(l);
    }
    all.elapsed = last.saturating_duration_since(start);
    Ok(all)
}

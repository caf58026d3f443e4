//! Open-loop load at a fixed rate. A pacing thread emits one token per request carrying its
//! scheduled send time; connection tasks take tokens from a shared queue. Latency is measured
//! from the scheduled time, so a stalled target is charged for the requests it delayed
//! (coordinated-omission correction); the uncorrected service time is kept too.

use super::{Conn, RunStats};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};

/// Parameters of one fixed-rate run.
#[derive(Debug, Clone, Copy)]
pub struct FixedRate {
    /// Requests per second.
    pub rate: u32,
    pub duration: Duration,
    /// Keep-alive connections (the most requests in flight at once).
    pub connections: usize,
    /// Per-request timeout; a timed-out request counts as an error.
    pub timeout: Duration,
    /// Requests not started by `duration + grace` are dropped and counted as errors.
    pub grace: Duration,
}

/// The schedule for `rate` over `duration`: how many requests, and the interval between them.
pub fn schedule(rate: u32, duration: Duration) -> (u64, Duration) {
    let rate = rate.max(1);
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    (total, Duration::from_nanos(1_000_000_000 / u64::from(rate)))
}

fn pace(tx: mpsc::UnboundedSender<Instant>, start: Instant, interval: Duration, total: u64) {
    let step = interval.as_nanos() as u64;
    for i in 0..total {
        let at = start + Duration::from_nanos(step.saturating_mul(i));
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        if tx.send(at).is_err() {
            return;
        }
    }
}

/// Runs one fixed-rate load against `target`.
pub async fn run(target: SocketAddr, cfg: FixedRate) -> anyhow::Result<RunStats> {
    let mut conns = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections.max(1) {
        conns.push(Conn::open(target).await?);
    }
    let start = Instant::now() + Duration::from_millis(5);
    let (total, interval) = schedule(cfg.rate, cfg.duration);
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(Mutex::new(rx));
    let pacer = std::thread::spawn(move || pace(tx, start, interval, total));
    let stop_at = start + cfg.duration + cfg.grace;
    let mut tasks = Vec::new();
    for mut conn in conns {
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = RunStats::empty();
            let mut last = start;
            loop {
                let next = rx.lock().await.recv().await;
                let Some(scheduled) = next else { break };
                if Instant::now() > stop_at {
                    stats.errors += 1;
                    continue;
                }
                let sent = Instant::now();
                let ok = tokio::time::timeout(cfg.timeout, conn.get_or_reconnect())
                    .await
                    .unwrap_or(false);
                let done = Instant::now();
                last = last.max(done);
                if ok {
                    stats.ok += 1;
                    stats
                        .latency
                        .saturating_record((done - scheduled).as_micros() as u64);
                    stats.service.saturating_record((done - sent).as_micros() as u64);
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
    let _ = pacer.join();
    all.elapsed = last.saturating_duration_since(start);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keep-alive HTTP/1.1 server that stalls once, for `stall`, before its `nth` answer.
    async fn stalling_server(nth: usize, stall: Duration) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut served = 0usize;
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        served += 1;
                        if served == nth {
                            tokio::time::sleep(stall).await;
                        }
                        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(resp).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stall_is_charged_to_the_requests_it_delayed() {
        let addr = stalling_server(50, Duration::from_millis(200)).await;
        let cfg = FixedRate {
            rate: 1000,
            duration: Duration::from_millis(400),
            connections: 1,
            timeout: Duration::from_secs(2),
            grace: Duration::from_secs(2),
        };
        let s = run(addr, cfg).await.unwrap();
        assert_eq!((s.ok, s.errors), (400, 0));
        // About 200 requests were scheduled during the stall: with the correction they carry
        // most of it, so the 75th percentile is tens of ms; without it only one request is slow.
        let corrected = s.latency.value_at_quantile(0.75);
        let uncorrected = s.service.value_at_quantile(0.75);
        assert!(corrected > 20_000, "corrected p75 {corrected} µs");
        assert!(uncorrected < 20_000, "uncorrected p75 {uncorrected} µs");
        assert!(s.latency.max() >= 190_000, "max {} µs", s.latency.max());
    }

    #[test]
    fn schedule_spacing_and_count() {
        let (total, interval) = schedule(5000, Duration::from_secs(2));
        assert_eq!(total, 10_000);
        assert_eq!(interval, Duration::from_micros(200));
        let (total, interval) = schedule(1000, Duration::from_millis(500));
        assert_eq!((total, interval), (500, Duration::from_millis(1)));
    }

    #[test]
    fn pacer_emits_every_token_in_order_on_time() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        pace(tx, start, Duration::from_micros(500), 100);
        let mut prev = None;
        let mut n = 0;
        while let Ok(at) = rx.try_recv() {
            if let Some(p) = prev {
                assert_eq!(at - p, Duration::from_micros(500));
            }
            prev = Some(at);
            n += 1;
        }
        assert_eq!(n, 100);
        // The pacer waits for the schedule: 99 intervals must have elapsed.
        assert!(start.elapsed() >= Duration::from_micros(99 * 500));
    }
}

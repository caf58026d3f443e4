//! The Rust load generator: HTTP/1.1 keep-alive connections driven either open-loop at a fixed
//! rate (latency measured from each request's scheduled send time, which corrects for
//! coordinated omission) or closed-loop for saturation throughput.

pub mod closed;
pub mod fixed;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant digits.
#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5)"
)]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid constant histogram bounds")
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Summarizes a µs histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Latency from the scheduled send time (open loop) or the send time (closed loop), µs.
    pub latency: Histogram<u64>,
    /// Latency from the actual send time (no correction), µs.
    pub service: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: std::time::Duration,
}

impl RunStats {
    pub(crate) fn empty() -> Self {
        Self {
            latency: new_histogram(),
            service: new_histogram(),
            ok: 0,
            errors: 0,
            elapsed: std::time::Duration::ZERO,
        }
    }

    /// Adds another run's (or worker's) numbers into this one.
    pub fn merge(&mut self, other: &RunStats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    /// Successful requests per second over the run.
    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }
}

/// One keep-alive HTTP/1.1 connection to the target.
pub(crate) struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    target: SocketAddr,
}

impl Conn {
    pub(crate) async fn open(target: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender, target })
    }

    /// Sends one GET and reads the whole body; Ok(true) on a 200.
    pub(crate) async fn get(&mut self) -> anyhow::Result<bool> {
        self.sender.ready().await?;
        let req = http::Request::get("/")
            .header(http::header::HOST, "backend.bench")
            .body(Empty::new())?;
        let resp = self.sender.send_request(req).await?;
        let ok = resp.status() == http::StatusCode::OK;
        resp.into_body().collect().await?;
        Ok(ok)
    }

    /// Sends one request, reconnecting once if the connection was closed.
    pub(crate) async fn get_or_reconnect(&mut self) -> bool {
        match self.get().await {
            Ok(ok) => ok,
            Err(_) => {
                if let Ok(c) = Conn::open(self.target).await {
                    *self = c;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 0.5).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 0.99).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 1.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn merge_adds_counts_and_time() {
        let mut a = RunStats::empty();
        a.ok = 10;
        a.elapsed = std::time::Duration::from_secs(1);
        a.latency.record(100).unwrap();
        let mut b = RunStats::empty();
        b.ok = 30;
        b.errors = 2;
        b.elapsed = std::time::Duration::from_secs(1);
        b.latency.record(300).unwrap();
        a.merge(&b);
        assert_eq!((a.ok, a.errors, a.latency.len()), (40, 2, 2));
        assert!((a.rps() - 20.0).abs() < 1e-9);
    }
}

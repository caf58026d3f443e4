//! Per-label-set HTTP and TCP counters: plain atomics, so recording on the
//! request path takes no lock. Response status codes live in a small lock-free
//! open-addressing table (bounded: at most [`STATUS_SLOTS`] distinct codes per
//! label set, overflow lands in `status_code="other"`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Linkerd's `response_latency_ms` bucket upper bounds.
pub const LATENCY_BOUNDS_MS: [u64; 25] = [
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 1000, 2000, 3000, 4000, 5000, 10000, 20000,
    30000, 40000, 50000,
];
/// Distinct (status, classification) pairs tracked per label set.
pub const STATUS_SLOTS: usize = 32;
const OCCUPIED: u64 = 1 << 40;
const FAILURE: u64 = 1 << 32;

/// How a finished response is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Success,
    Failure,
}

/// Counters for one HTTP label set.
#[derive(Debug)]
pub struct HttpMetrics {
    pub(crate) labels: Box<str>,
    requests: AtomicU64,
    slots: [(AtomicU64, AtomicU64); STATUS_SLOTS],
    overflow: [AtomicU64; 2],
    buckets: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl HttpMetrics {
    pub(crate) fn new(labels: String) -> Self {
        Self {
            labels: labels.into_boxed_str(),
            requests: AtomicU64::new(0),
            slots: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
            overflow: [AtomicU64::new(0), AtomicU64::new(0)],
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
        }
    }

    /// Counts a request stream start.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Records time to first response byte (headers).
    pub fn latency(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let ms_ceil = us.div_ceil(1000);
        let i = LATENCY_BOUNDS_MS.partition_point(|b| *b < ms_ceil);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished response.
    pub fn response(&self, status: u16, class: Class) {
        let key = OCCUPIED | u64::from(status) | if class == Class::Failure { FAILURE } else { 0 };
        let start = (usize::from(status) * 7 + usize::from(class == Class::Failure)) % STATUS_SLOTS;
        for probe in 0..STATUS_SLOTS {
            let (k, count) = &self.slots[(start + probe) % STATUS_SLOTS];
            let cur = k.load(Ordering::Acquire);
            if cur == key {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if cur == 0 {
                match k.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(other) if other == key => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => continue,
                }
            }
        }
        self.overflow[usize::from(class == Class::Failure)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `(status label, failure?, count)` for every recorded status.
    pub(crate) fn responses(&self) -> Vec<(String, bool, u64)> {
        let mut out = Vec::new();
        for (k, count) in &self.slots {
            let key = k.load(Ordering::Acquire);
            if key != 0 {
                out.push((
                    (key & 0xffff).to_string(),
                    key & FAILURE != 0,
                    count.load(Ordering::Relaxed),
                ));
            }
        }
        for (i, c) in self.overflow.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                out.push(("other".to_string(), i == 1, n));
            }
        }
        out.sort();
        out
    }

    /// Cumulative bucket counts (last is +Inf), sum in ms, count.
    pub(crate) fn histogram(&self) -> (Vec<u64>, f64, u64) {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Ordering::Relaxed);
                acc
            })
            .collect();
        let sum_ms = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1000.0;
        (cumulative, sum_ms, self.latency_count.load(Ordering::Relaxed))
    }
}

/// Counters for one TCP label set.
#[derive(Debug)]
pub struct TcpMetrics {
    pub(crate) labels: Box<str>,
    pub(crate) open: AtomicU64,
    pub(crate) close: AtomicU64,
    pub(crate) read_bytes: AtomicU64,
    pub(crate) write_bytes: AtomicU64,
}

impl TcpMetrics {
    pub(crate) fn new(labels: String) -> Self {
        Self {
            labels: labels.into_boxed_str(),
            open: AtomicU64::new(0),
            close: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
        }
    }

    /// Counts a connection opened.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed with the bytes read from / written to the
    /// downstream peer.
    pub fn closed(&self, read: u64, written: u64) {
        self.read_bytes.fetch_add(read, Ordering::Relaxed);
        self.write_bytes.fetch_add(written, Ordering::Relaxed);
        self.close.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_overflow() {
        let m = HttpMetrics::new(String::new());
        for s in 200..(200 + STATUS_SLOTS as u16 + 3) {
            m.response(s, Class::Success);
        }
        m.response(200, Class::Success);
        m.response(503, Class::Failure);
        let r = m.responses();
        assert!(r.contains(&("200".into(), false, 2)));
        let total: u64 = r.iter().map(|x| x.2).sum();
        assert_eq!(total, STATUS_SLOTS as u64 + 5);
        assert!(r.iter().any(|x| x.0 == "other"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = HttpMetrics::new(String::new());
        m.latency(Duration::from_micros(500)); // ≤ 1
        m.latency(Duration::from_millis(7)); // ≤ 10
        m.latency(Duration::from_secs(100)); // +Inf
        let (b, sum, count) = m.histogram();
        assert_eq!(b[0], 1);
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 2);
        assert_eq!(b[24], 2);
        assert_eq!(b[25], 3);
        assert_eq!(count, 3);
        assert!((sum - 100_007.5).abs() < 0.01);
    }
}

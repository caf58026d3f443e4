//! One upstream endpoint (pod IP and port) as the proxy tracks it: its load
//! statistics for the balancer and its connection pool. Endpoints are shared by
//! every routing table that mentions them, and kept across config swaps through
//! the [`EndpointRegistry`] so that EWMA state and pooled connections survive a
//! reload.

use crate::proxy::pool::EndpointPool;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Latency assumed for an endpoint that has not answered yet (1 ms).
const DEFAULT_RTT_NS: f64 = 1_000_000.0;
/// Decay time constant of the latency EWMA (10 s, as peak-EWMA balancers use).
const DECAY_NS: f64 = 10_000_000_000.0;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide epoch (monotonic).
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Outstanding requests and a time-decayed EWMA of response latency.
#[derive(Debug)]
pub struct LoadStats {
    outstanding: AtomicU32,
    ewma_bits: AtomicU64,
    stamp_ns: AtomicU64,
}

impl Default for LoadStats {
    fn default() -> Self {
        Self {
            outstanding: AtomicU32::new(0),
            ewma_bits: AtomicU64::new(DEFAULT_RTT_NS.to_bits()),
            stamp_ns: AtomicU64::new(0),
        }
    }
}

impl LoadStats {
    /// Requests currently in flight.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Current EWMA latency in ns, decayed toward zero while no sample arrives so
    /// an endpoint that was slow once is eventually tried again.
    pub fn ewma_ns(&self, now: u64) -> f64 {
        let ewma = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let stamp = self.stamp_ns.load(Ordering::Relaxed);
        let idle = now.saturating_sub(stamp) as f64;
        if stamp == 0 || idle <= 0.0 {
            ewma
        } else {
            ewma * (-idle / DECAY_NS).exp()
        }
    }

    /// Balancer cost: latency × (outstanding + 1). An endpoint that has never
    /// answered costs nothing while idle (so a new or scaled-up endpoint is probed
    /// at once instead of starving behind a fast incumbent under sequential load)
    /// and the default RTT per request in flight (so a burst does not pile onto it).
    pub fn cost(&self, now: u64) -> f64 {
        if self.stamp_ns.load(Ordering::Relaxed) == 0 {
            return DEFAULT_RTT_NS * f64::from(self.outstanding());
        }
        self.ewma_ns(now).max(1.0) * f64::from(self.outstanding() + 1)
    }

    /// Records one latency sample. Peak-sensitive: a sample above the average
    /// replaces it at once; lower samples are blended in by elapsed time.
    pub fn observe(&self, rtt: Duration, now: u64) {
        let sample = rtt.as_nanos() as f64;
        let prev = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let stamp = self.stamp_ns.swap(now, Ordering::Relaxed);
        let next = if sample > prev || stamp == 0 {
            sample
        } else {
            let w = (-(now.saturating_sub(stamp) as f64) / DECAY_NS).exp();
            // Always give a new sample at least a small weight.
            let w = w.min(0.9);
            prev * w + sample * (1.0 - w)
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Marks a request started; the guard marks it finished when dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: Arc::clone(self),
        }
    }
}

/// One in-flight request on an endpoint.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<LoadStats>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// SPIFFE ID the peer must present (used by the mTLS layer); `None` = plaintext.
    pub identity: Option<Arc<str>>,
    /// Load statistics for the balancer.
    pub load: Arc<LoadStats>,
    /// Pooled upstream connections.
    pub pool: EndpointPool,
}

impl Endpoint {
    /// A fresh endpoint with no load history and an empty pool.
    pub fn new(addr: SocketAddr, identity: Option<Arc<str>>) -> Self {
        Self {
            addr,
            identity,
            load: Arc::default(),
            pool: EndpointPool::default(),
        }
    }
}

type Key = (SocketAddr, Option<Arc<str>>);

/// Interns endpoints by address and identity so successive routing tables share
/// them. Only locked while a table is built, never on the request path.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    live: Mutex<HashMap<Key, Weak<Endpoint>>>,
}

impl EndpointRegistry {
    /// The shared endpoint for `addr`/`identity`, created if no table holds it.
    pub fn get(&self, addr: SocketAddr, identity: Option<&str>) -> Arc<Endpoint> {
        let identity: Option<Arc<str>> = identity.map(Arc::from);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let key = (addr, identity.clone());
        if let Some(ep) = live.get(&key).and_then(Weak::upgrade) {
            return ep;
        }
        let ep = Arc::new(Endpoint::new(addr, identity));
        live.insert(key, Arc::downgrade(&ep));
        ep
    }

    /// Forgets endpoints no table references any more.
    pub fn sweep(&self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untried_endpoints_are_probed_first_but_not_flooded() {
        let fast = Arc::new(LoadStats::default());
        fast.observe(Duration::from_micros(200), 1_000);
        let fresh = Arc::new(LoadStats::default());
        assert!(
            fresh.cost(2_000) < fast.cost(2_000),
            "an idle untried endpoint is tried"
        );
        let _in_flight: Vec<_> = (0..2).map(|_| fresh.start()).collect();
        assert!(
            fresh.cost(2_000) > fast.cost(2_000),
            "but not flooded while it has not answered"
        );
    }

    #[test]
    fn ewma_tracks_peaks_and_decays() {
        let s = Arc::new(LoadStats::default());
        s.observe(Duration::from_millis(50), 1_000);
        assert!((s.ewma_ns(1_000) - 50e6).abs() < 1.0);
        // A faster sample right after is blended, not taken whole.
        s.observe(Duration::from_millis(1), 2_000);
        let v = s.ewma_ns(2_000);
        assert!(v > 1e6 && v < 50e6, "{v}");
        // Thirty seconds of silence decays it a lot.
        assert!(s.ewma_ns(2_000 + 30_000_000_000) < v / 10.0);
        let g = s.start();
        assert_eq!(s.outstanding(), 1);
        drop(g);
        assert_eq!(s.outstanding(), 0);
    }

    #[test]
    fn registry_reuses_live_endpoints() {
        let reg = EndpointRegistry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = reg.get(addr, None);
        let b = reg.get(addr, None);
        assert!(Arc::ptr_eq(&a, &b));
        let c = reg.get(addr, Some("spiffe://x/ns/a/sa/b"));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b, c));
        reg.sweep();
        assert!(reg.live.lock().unwrap().is_empty());
    }
}

//! Load balancers over the ready endpoints of one service port: least-request
//! with power-of-two-choices over an EWMA of latency (default), round robin,
//! random, and consistent hashing (ring or Maglev) on a request attribute.
//! Selection is pure given a random source, so tests use fixed seeds.

pub mod hash;
pub mod rng;

use crate::endpoint::{Endpoint, now_ns};
use hash::HashTable;
use rng::FastRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use weft_proxy_config::{GeneratedCookie, HashAlgorithm, HashKey, LoadBalancer};

/// The algorithm and its state.
#[derive(Debug)]
enum Algo {
    LeastRequest,
    RoundRobin(AtomicUsize),
    Random,
    Hash(HashKey, HashTable),
}

/// A balancer over a fixed set of ready endpoints.
#[derive(Debug)]
pub struct Balancer {
    endpoints: Vec<Arc<Endpoint>>,
    algo: Algo,
    /// Sticky sessions: the cookie to make up when a request lacks it.
    generated: Option<(String, GeneratedCookie)>,
}

impl Balancer {
    /// Builds a balancer; `endpoints` must already exclude not-ready ones.
    pub fn new(kind: &LoadBalancer, endpoints: Vec<Arc<Endpoint>>) -> Self {
        let mut generated = None;
        let algo = match kind {
            LoadBalancer::LeastRequest => Algo::LeastRequest,
            LoadBalancer::RoundRobin => Algo::RoundRobin(AtomicUsize::new(0)),
            LoadBalancer::Random => Algo::Random,
            LoadBalancer::ConsistentHash {
                key,
                algorithm,
                cookie,
            } => {
                if let (HashKey::Cookie(name), Some(c)) = (key, cookie) {
                    generated = Some((name.clone(), c.clone()));
                }
                let names: Vec<String> = endpoints.iter().map(|e| e.addr.to_string()).collect();
                let table = match algorithm {
                    HashAlgorithm::Ring => HashTable::ring(&names),
                    HashAlgorithm::Maglev => HashTable::maglev(&names),
                };
                Algo::Hash(key.clone(), table)
            }
        };
        Self {
            endpoints,
            algo,
            generated,
        }
    }

    /// The cookie name and settings when this balancer generates sticky-session
    /// cookies (consistent hash on a cookie with `cookie` set).
    pub fn generated_cookie(&self) -> Option<(&str, &GeneratedCookie)> {
        self.generated.as_ref().map(|(n, c)| (n.as_str(), c))
    }

    /// The ready endpoints.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// What the caller must hash for consistent hashing, if this balancer hashes.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match &self.algo {
            Algo::Hash(key, _) => Some(key),
            _ => None,
        }
    }

    /// Chooses an endpoint. `key_hash` is the hash of the request attribute for
    /// consistent hashing (a request without it gets a random endpoint).
    pub fn pick(&self, key_hash: Option<u64>, rng: &mut FastRng) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        match n {
            0 => return None,
            1 => return self.endpoints.first(),
            _ => {}
        }
        let idx = match &self.algo {
            Algo::LeastRequest => {
                let a = rng.below(n);
                let mut b = rng.below(n - 1);
                if b >= a {
                    b += 1;
                }
                let now = now_ns();
                let (ca, cb) = (self.endpoints[a].load.cost(now), self.endpoints[b].load.cost(now));
                if cb < ca { b } else { a }
            }
            Algo::RoundRobin(next) => next.fetch_add(1, Ordering::Relaxed) % n,
            Algo::Random => rng.below(n),
            Algo::Hash(_, table) => match key_hash.and_then(|h| table.lookup(h)) {
                Some(i) => i,
                None => rng.below(n),
            },
        };
        self.endpoints.get(idx)
    }

    /// Like [`Balancer::pick`] but only among endpoints `allow` accepts (outlier
    /// ejection, endpoints already tried by a retry). `None` if it accepts none.
    pub fn pick_filtered(
        &self,
        key_hash: Option<u64>,
        rng: &mut FastRng,
        allow: &dyn Fn(&Endpoint) -> bool,
    ) -> Option<&Arc<Endpoint>> {
        let first = self.pick(key_hash, rng)?;
        if allow(first) {
            return Some(first);
        }
        let ok: Vec<usize> = (0..self.endpoints.len())
            .filter(|i| allow(&self.endpoints[*i]))
            .collect();
        let idx = match (&self.algo, ok.len()) {
            (_, 0) => return None,
            (_, 1) => ok[0],
            (Algo::LeastRequest, n) => {
                let now = now_ns();
                let a = ok[rng.below(n)];
                let b = ok[rng.below(n)];
                if self.endpoints[b].load.cost(now) < self.endpoints[a].load.cost(now) {
                    b
                } else {
                    a
                }
            }
            // Hashing: the next accepted endpoint after the preferred one, so
            // keys stay sticky while their endpoint is out.
            (Algo::Hash(..), _) => {
                let pos = self
                    .endpoints
                    .iter()
                    .position(|e| Arc::ptr_eq(e, first))
                    .unwrap_or(0);
                ok.iter().copied().find(|i| *i > pos).unwrap_or(ok[0])
            }
            (_, n) => ok[rng.below(n)],
        };
        self.endpoints.get(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn eps(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("127.0.0.{}:80", i + 1).parse().unwrap(),
                    None,
                ))
            })
            .collect()
    }

    fn counts(b: &Balancer, rounds: usize, key: impl Fn(usize) -> Option<u64>) -> Vec<usize> {
        let mut rng = FastRng::seeded(1234);
        let mut c = vec![0; b.endpoints().len()];
        for i in 0..rounds {
            let ep = b.pick(key(i), &mut rng).unwrap();
            c[b.endpoints().iter().position(|e| Arc::ptr_eq(e, ep)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_exact() {
        let b = Balancer::new(&LoadBalancer::RoundRobin, eps(3));
        assert_eq!(counts(&b, 300, |_| None), vec![100, 100, 100]);
    }

    #[test]
    fn random_is_within_bounds() {
        let b = Balancer::new(&LoadBalancer::Random, eps(4));
        for c in counts(&b, 8_000, |_| None) {
            assert!((1_800..2_200).contains(&c), "{c}");
        }
    }

    #[test]
    fn least_request_avoids_slow_and_busy_endpoints() {
        let e = eps(3);
        let now = now_ns();
        e[0].load.observe(Duration::from_millis(100), now);
        e[1].load.observe(Duration::from_millis(1), now);
        e[2].load.observe(Duration::from_millis(1), now);
        let _busy: Vec<_> = (0..20).map(|_| e[2].load.start()).collect();
        let b = Balancer::new(&LoadBalancer::LeastRequest, e);
        let c = counts(&b, 3_000, |_| None);
        // The slow one loses every comparison; the busy one loses against
        // endpoint 1 but beats the slow one, so it gets about a third.
        assert_eq!(c[0], 0, "{c:?}");
        assert!((1_850..2_150).contains(&c[1]), "{c:?}");
    }

    #[test]
    fn least_request_spreads_equal_endpoints() {
        let b = Balancer::new(&LoadBalancer::LeastRequest, eps(2));
        for c in counts(&b, 4_000, |_| None) {
            assert!((1_800..2_200).contains(&c), "{c}");
        }
    }

    #[test]
    fn consistent_hash_is_sticky_per_key() {
        for algorithm in [HashAlgorithm::Ring, HashAlgorithm::Maglev] {
            let kind = LoadBalancer::ConsistentHash {
                key: HashKey::Header("x-user".into()),
                algorithm,
                cookie: None,
            };
            let b = Balancer::new(&kind, eps(5));
            assert!(matches!(b.hash_key(), Some(HashKey::Header(h)) if h == "x-user"));
            let mut rng = FastRng::seeded(9);
            for key in 0..50u64 {
                let first = b
                    .pick(Some(rng::hash_bytes(&key.to_le_bytes(), 0)), &mut rng)
                    .unwrap()
                    .addr;
                for _ in 0..5 {
                    let again = b
                        .pick(Some(rng::hash_bytes(&key.to_le_bytes(), 0)), &mut rng)
                        .unwrap()
                        .addr;
                    assert_eq!(first, again);
                }
            }
        }
    }

    #[test]
    fn filtered_picks_skip_refused_endpoints() {
        let e = eps(3);
        let banned = e[1].addr;
        for kind in [
            LoadBalancer::RoundRobin,
            LoadBalancer::LeastRequest,
            LoadBalancer::Random,
        ] {
            let b = Balancer::new(&kind, e.clone());
            let mut rng = FastRng::seeded(5);
            for _ in 0..50 {
                let ep = b.pick_filtered(None, &mut rng, &|x| x.addr != banned).unwrap();
                assert_ne!(ep.addr, banned);
            }
            assert!(b.pick_filtered(None, &mut rng, &|_| false).is_none());
        }
    }

    #[test]
    fn empty_balancer_picks_nothing() {
        let b = Balancer::new(&LoadBalancer::LeastRequest, Vec::new());
        assert!(b.pick(None, &mut FastRng::seeded(1)).is_none());
    }
}

//! A tiny, fast, seedable PRNG (wyrand) for load-balancer choices. The hot path
//! uses a per-thread instance (no locks, no syscalls); tests pass fixed seeds.

use std::cell::Cell;

/// wyrand: 64-bit state, one multiply per output. Not cryptographic.
#[derive(Debug, Clone)]
pub struct FastRng {
    state: u64,
}

impl FastRng {
    /// A generator with a fixed seed (deterministic sequences for tests).
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform integer in `0..n` (`n > 0`), via multiply-shift (bias < 2^-32 for small n).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

thread_local! {
    static THREAD_STATE: Cell<u64> = Cell::new(initial_seed());
}

fn initial_seed() -> u64 {
    // Distinct per thread: the address of a stack local mixed with the time.
    let local = 0u8;
    let addr = std::ptr::addr_of!(local) as u64;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    addr.rotate_left(32) ^ nanos
}

/// Runs `f` with this thread's generator.
pub fn with_thread_rng<T>(f: impl FnOnce(&mut FastRng) -> T) -> T {
    THREAD_STATE.with(|cell| {
        let mut rng = FastRng::seeded(cell.get());
        let out = f(&mut rng);
        cell.set(rng.state);
        out
    })
}

/// Whether a uniform roll in `[0, 100)` falls below `percent` (so 0 never
/// and 100 always holds).
pub fn chance(rng: &mut FastRng, percent: f64) -> bool {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit * 100.0 < percent
}

/// 64-bit hash of bytes (FNV-1a followed by a splitmix finalizer), stable across
/// runs and platforms so consistent-hash placement is reproducible.
pub fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// splitmix64 finalizer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = FastRng::seeded(42);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn chance_matches_the_percentage() {
        let mut rng = FastRng::seeded(11);
        let hits = (0..100_000).filter(|_| chance(&mut rng, 10.0)).count();
        assert!((9_500..10_500).contains(&hits), "{hits}");
        assert!((0..1_000).all(|_| !chance(&mut rng, 0.0)));
        assert!((0..1_000).all(|_| chance(&mut rng, 100.0)));
    }

    #[test]
    fn seeded_is_deterministic_and_hash_is_stable() {
        let a: Vec<u64> = (0..3)
            .map({
                let mut r = FastRng::seeded(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..3)
            .map({
                let mut r = FastRng::seeded(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_eq!(hash_bytes(b"abc", 0), hash_bytes(b"abc", 0));
        assert_ne!(hash_bytes(b"abc", 0), hash_bytes(b"abd", 0));
    }
}

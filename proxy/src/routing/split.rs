//! TrafficSplit weighted choice. The smooth weighted round-robin order (the
//! nginx algorithm) is precomputed once per config into a sequence whose length
//! is the sum of the reduced weights, then walked with one atomic counter: the
//! split is exact over every full window and lock-free on the request path.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest precomputed window; larger weight sums are scaled down to it.
const MAX_WINDOW: u64 = 10_000;

/// A lock-free weighted picker over backend indexes.
#[derive(Debug)]
pub struct WeightedPicker {
    sequence: Vec<u16>,
    next: AtomicUsize,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Reduces weights by their gcd and scales the sum down to [`MAX_WINDOW`]
/// (keeping every non-zero weight at least 1).
fn reduce(weights: &[u64]) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|x| x / g).collect();
    let sum: u64 = w.iter().sum();
    if sum > MAX_WINDOW {
        w = w
            .iter()
            .map(|&x| {
                if x == 0 {
                    0
                } else {
                    ((x as u128 * MAX_WINDOW as u128 / sum as u128) as u64).max(1)
                }
            })
            .collect();
    }
    w
}

impl WeightedPicker {
    /// Builds the picker; `None` when every weight is zero (or there are none).
    pub fn new(weights: &[u64]) -> Option<Self> {
        if weights.len() > usize::from(u16::MAX) {
            return None;
        }
        let w = reduce(weights);
        let total: u64 = w.iter().sum();
        if total == 0 {
            return None;
        }
        let mut current = vec![0i64; w.len()];
        let mut sequence = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..w.len() {
                current[i] += w[i] as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total as i64;
            sequence.push(best as u16);
        }
        Some(Self {
            sequence,
            next: AtomicUsize::new(0),
        })
    }

    /// Window length (sum of reduced weights).
    pub fn window(&self) -> usize {
        self.sequence.len()
    }

    /// The next backend index.
    pub fn pick(&self) -> usize {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sequence.len();
        usize::from(self.sequence[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(p: &WeightedPicker, n: usize, k: usize) -> Vec<usize> {
        let mut c = vec![0; k];
        for _ in 0..n {
            c[p.pick()] += 1;
        }
        c
    }

    #[test]
    fn exact_over_a_window() {
        let p = WeightedPicker::new(&[75_000, 25_000]).unwrap();
        assert_eq!(p.window(), 4);
        assert_eq!(tally(&p, 2_000, 2), vec![1_500, 500]);
    }

    #[test]
    fn smooth_interleaving() {
        // 5:1:1 → the heavy backend never runs more than a few in a row.
        let p = WeightedPicker::new(&[5, 1, 1]).unwrap();
        let seq: Vec<usize> = (0..7).map(|_| p.pick()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weights_never_chosen_and_all_zero_is_none() {
        let p = WeightedPicker::new(&[0, 1_000]).unwrap();
        assert_eq!(tally(&p, 100, 2), vec![0, 100]);
        assert!(WeightedPicker::new(&[0, 0]).is_none());
        assert!(WeightedPicker::new(&[]).is_none());
    }

    #[test]
    fn quantity_weights_and_large_sums() {
        // v1alpha1 `1` and `500m` → 1000 and 500 milli-units: 2/3 vs 1/3.
        let p = WeightedPicker::new(&[1_000, 500]).unwrap();
        assert_eq!(tally(&p, 3_000, 2), vec![2_000, 1_000]);
        // Co-prime large weights are scaled to a bounded window, ratio kept.
        let p = WeightedPicker::new(&[333_331, 666_667]).unwrap();
        assert!(p.window() <= 10_001);
        let c = tally(&p, p.window(), 2);
        let share = c[1] as f64 / p.window() as f64;
        assert!((share - 0.6667).abs() < 0.001, "{share}");
    }
}

//! Consistent-hash tables over a fixed endpoint list: a ketama-style ring with
//! virtual nodes, and Maglev's lookup table (minimal disruption, even spread).

use super::rng::{hash_bytes, mix64};

/// Virtual nodes per endpoint on the ring.
const RING_VNODES: u64 = 160;
/// Candidate Maglev table sizes (primes); the first ≥ 100 × endpoints is used.
const MAGLEV_PRIMES: [usize; 10] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131_071];

/// A built hash table mapping a 64-bit key hash to an endpoint index.
#[derive(Debug, Clone)]
pub enum HashTable {
    /// Sorted `(point, endpoint index)` pairs.
    Ring(Vec<(u64, u32)>),
    /// Maglev lookup table of endpoint indexes.
    Maglev(Vec<u32>),
}

impl HashTable {
    /// A ring for endpoints identified by `names` (stable names, e.g. `ip:port`).
    pub fn ring(names: &[String]) -> Self {
        let mut points = Vec::with_capacity(names.len() * RING_VNODES as usize);
        for (i, name) in names.iter().enumerate() {
            for v in 0..RING_VNODES {
                points.push((hash_bytes(name.as_bytes(), v), i as u32));
            }
        }
        points.sort_unstable();
        Self::Ring(points)
    }

    /// A Maglev table for endpoints identified by `names`.
    pub fn maglev(names: &[String]) -> Self {
        let n = names.len();
        if n == 0 {
            return Self::Maglev(Vec::new());
        }
        let want = n.saturating_mul(100);
        let m = MAGLEV_PRIMES
            .iter()
            .copied()
            .find(|p| *p >= want)
            .unwrap_or(131_071);
        let perms: Vec<(usize, usize)> = names
            .iter()
            .map(|name| {
                let offset = (hash_bytes(name.as_bytes(), 0xdead) % m as u64) as usize;
                let skip = (hash_bytes(name.as_bytes(), 0xbeef) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; n];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'outer: loop {
            for i in 0..n {
                let (offset, skip) = perms[i];
                let mut c = (offset + next[i] * skip) % m;
                while table[c] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'outer;
                }
            }
        }
        Self::Maglev(table)
    }

    /// The endpoint index for a key hash, `None` when the table is empty.
    pub fn lookup(&self, key: u64) -> Option<usize> {
        match self {
            Self::Ring(points) => {
                if points.is_empty() {
                    return None;
                }
                let i = points.partition_point(|(p, _)| *p < key);
                let (_, idx) = points[if i == points.len() { 0 } else { i }];
                Some(idx as usize)
            }
            Self::Maglev(table) => {
                if table.is_empty() {
                    return None;
                }
                Some(table[(mix64(key) % table.len() as u64) as usize] as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn spread(table: &HashTable, n: usize) -> Vec<u32> {
        let mut counts = vec![0u32; n];
        for k in 0..20_000u64 {
            counts[table.lookup(hash_bytes(&k.to_le_bytes(), 1)).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn both_tables_spread_keys_evenly() {
        for table in [HashTable::ring(&names(4)), HashTable::maglev(&names(4))] {
            for c in spread(&table, 4) {
                assert!((3_500..6_500).contains(&c), "{table:?}");
            }
        }
    }

    #[test]
    fn removing_an_endpoint_moves_few_keys() {
        for (a, b) in [
            (HashTable::ring(&names(5)), HashTable::ring(&names(4))),
            (HashTable::maglev(&names(5)), HashTable::maglev(&names(4))),
        ] {
            let mut moved = 0;
            for k in 0..10_000u64 {
                let h = hash_bytes(&k.to_le_bytes(), 3);
                let before = a.lookup(h).unwrap();
                let after = b.lookup(h).unwrap();
                if before != 4 && before != after {
                    moved += 1;
                }
            }
            // Keys on surviving endpoints mostly stay put (ideal: 0).
            assert!(moved < 1_000, "moved {moved}");
        }
    }

    #[test]
    fn empty_tables_have_no_answer() {
        assert_eq!(HashTable::ring(&[]).lookup(1), None);
        assert_eq!(HashTable::maglev(&[]).lookup(1), None);
    }
}

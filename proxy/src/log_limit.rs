//! Rate limits for logs an untrusted peer can trigger (denied connections and
//! requests, refused plaintext, failed handshakes): at most `burst` lines per
//! second per kind; the lines that were held back are counted and the count is
//! reported with the next line that is written. Counters and metrics still see
//! every event; only the log volume is bounded.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines per window when not configured otherwise.
pub const DEFAULT_BURST: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

/// One rate-limited log kind.
#[derive(Debug)]
pub struct LogLimit {
    burst: u32,
    state: Mutex<Window>,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new(DEFAULT_BURST)
    }
}

impl LogLimit {
    /// At most `burst` lines per second.
    pub fn new(burst: u32) -> Self {
        Self {
            burst,
            state: Mutex::new(Window {
                start: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many lines were
    /// held back since the last one written; `None` when this one is held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(w.start) >= WINDOW {
            w.start = now;
            w.written = 0;
        }
        if w.written >= self.burst {
            w.suppressed += 1;
            return None;
        }
        w.written += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_holds_back_and_reports_the_count() {
        let l = LogLimit::new(3);
        let t0 = Instant::now();
        let first: Vec<_> = (0..10).map(|_| l.admit_at(t0)).collect();
        assert_eq!(first[..3], [Some(0), Some(0), Some(0)]);
        assert!(first[3..].iter().all(Option::is_none));
        // Next window: the first line carries the 7 held back.
        assert_eq!(l.admit_at(t0 + WINDOW), Some(7));
        assert_eq!(l.admit_at(t0 + WINDOW), Some(0));
    }

    #[test]
    fn a_window_is_one_second() {
        let l = LogLimit::new(1);
        let t0 = Instant::now();
        assert_eq!(l.admit_at(t0), Some(0));
        assert_eq!(l.admit_at(t0 + Duration::from_millis(999)), None);
        assert_eq!(l.admit_at(t0 + Duration::from_millis(1000)), Some(1));
    }
}

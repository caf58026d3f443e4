//! Readiness gates behind `/ready`. The config loader opens [`Gate::Config`];
//! the identity layer (mTLS certificates) registers and opens
//! [`Gate::Identity`] when it exists. Draining closes readiness for good.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Something that must be true before the proxy is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// A valid config has been applied.
    Config,
    /// The workload certificate is loaded (registered by the mTLS layer).
    Identity,
    /// Gateway mode: every listener of the applied config is bound.
    Listeners,
}

/// The set of required gates and which are open.
#[derive(Debug)]
pub struct Readiness {
    required: Mutex<Vec<(Gate, bool)>>,
    draining: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            required: Mutex::new(vec![(Gate::Config, false)]),
            draining: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// Adds a gate that must open before `/ready` succeeds.
    pub fn require(&self, gate: Gate) {
        let mut r = self.required.lock().unwrap_or_else(|p| p.into_inner());
        if !r.iter().any(|(g, _)| *g == gate) {
            r.push((gate, false));
        }
    }

    /// Opens a gate.
    pub fn open(&self, gate: Gate) {
        let mut r = self.required.lock().unwrap_or_else(|p| p.into_inner());
        match r.iter_mut().find(|(g, _)| *g == gate) {
            Some(entry) => entry.1 = true,
            None => r.push((gate, true)),
        }
    }

    /// Closes a gate again (it must reopen before `/ready` succeeds).
    pub fn close(&self, gate: Gate) {
        let mut r = self.required.lock().unwrap_or_else(|p| p.into_inner());
        match r.iter_mut().find(|(g, _)| *g == gate) {
            Some(entry) => entry.1 = false,
            None => r.push((gate, false)),
        }
    }

    /// Marks the proxy as shutting down (never ready again).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// `Ok` when ready, otherwise what is missing.
    pub fn check(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining".into());
        }
        let r = self.required.lock().unwrap_or_else(|p| p.into_inner());
        let missing: Vec<String> = r
            .iter()
            .filter(|(_, open)| !open)
            .map(|(g, _)| format!("{g:?}"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for: {}", missing.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_and_drain() {
        let r = Readiness::default();
        assert!(r.check().is_err());
        r.require(Gate::Identity);
        r.open(Gate::Config);
        assert_eq!(r.check().unwrap_err(), "waiting for: Identity");
        r.open(Gate::Identity);
        assert!(r.check().is_ok());
        r.close(Gate::Listeners);
        assert_eq!(r.check().unwrap_err(), "waiting for: Listeners");
        r.open(Gate::Listeners);
        assert!(r.check().is_ok());
        r.drain();
        assert_eq!(r.check().unwrap_err(), "draining");
    }
}

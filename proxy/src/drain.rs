//! Graceful shutdown: a signal every listener and connection watches, and a
//! count of live connections so shutdown can wait for in-flight work up to a
//! grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

#[derive(Debug)]
struct Inner {
    signal: watch::Sender<bool>,
    active: AtomicUsize,
    idle: Notify,
}

/// Shared drain state (cheap to clone).
#[derive(Debug, Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

impl Default for Drain {
    fn default() -> Self {
        let (signal, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                signal,
                active: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }
}

/// Held by a live connection.
#[derive(Debug)]
pub struct ConnGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// A receiver that changes to `true` when draining starts.
    pub fn watcher(&self) -> watch::Receiver<bool> {
        self.inner.signal.subscribe()
    }

    /// Completes once draining has started (or the drain state is gone).
    pub async fn started(rx: &mut watch::Receiver<bool>) {
        // Map the borrow guard away at once so it is never held across an await.
        let _ = rx.wait_for(|d| *d).await.map(|_| ());
    }

    /// Registers a live connection.
    pub fn track(&self) -> ConnGuard {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        ConnGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Live connections.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.inner.signal.borrow()
    }

    /// Starts draining and waits until no connection is live or `grace` passes.
    /// Returns the number of connections still open at the end.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.inner.signal.send_replace(true);
        let wait = async {
            loop {
                let notified = self.inner.idle.notified();
                if self.active() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.active()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_connections_up_to_grace() {
        let d = Drain::default();
        let g = d.track();
        let mut w = d.watcher();
        let d2 = d.clone();
        let t = tokio::spawn(async move { d2.drain(Duration::from_secs(5)).await });
        w.changed().await.unwrap();
        assert!(*w.borrow());
        drop(g);
        assert_eq!(t.await.unwrap(), 0);
        let _stuck = d.track();
        assert_eq!(d.drain(Duration::from_millis(20)).await, 1);
    }
}

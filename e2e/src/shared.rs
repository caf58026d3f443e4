//! One control plane per test binary, started lazily by the first test that asks for it and
//! stopped at process exit (statics are never dropped, so an `atexit` hook does it; the
//! parent-death signal covers a killed test process). Tests isolate themselves by namespace.

use std::sync::OnceLock;

use crate::control_plane::{ControlPlane, Options, sys};

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The shared control plane could not start (the message says why and where the logs are).
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared control plane unavailable: {0}")]
pub struct Unavailable(pub String);

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(cp)) = SHARED.get() {
        cp.shutdown();
    }
}

/// The control plane shared by all tests of this binary (started on first use; blocking).
pub fn control_plane() -> Result<&'static ControlPlane, Unavailable> {
    let result = SHARED.get_or_init(|| {
        if let Err(e) = sys::at_exit(stop_shared_at_exit) {
            return Err(format!("cannot register the exit hook: {e}"));
        }
        match ControlPlane::start(Options::default()) {
            Ok(cp) => {
                eprintln!(
                    "weft-e2e: control plane {} ready in {:.1}s; logs in {}",
                    cp.server_url(),
                    cp.startup_time().as_secs_f64(),
                    cp.logs_dir().display()
                );
                Ok(cp)
            }
            Err(e) => Err(e.to_string()),
        }
    });
    result.as_ref().map_err(|e| Unavailable(e.clone()))
}

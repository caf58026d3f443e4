//! The mesh end to end: installing weft from `crds/` and `manifests/` like `make install`
//! ([`install`]), demo-app workloads and SMI/policy objects ([`workload`]), and traffic
//! from inside a pod's network namespace with tallies and percentiles ([`traffic`]), config
//! propagation ([`sync`]) and the mTLS-on-the-wire check ([`capture`]).
//! Shared by `e2e/tests/mesh.rs` and the `weft-demo` driver.

pub mod capture;
pub mod image_refs;
pub mod install;
pub mod policy;
pub mod sync;
pub mod traffic;
pub mod traffic_policy;
pub mod workload;

use std::time::{Duration, Instant};

/// Why a mesh step failed (the message names the step).
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Applying manifests failed.
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    /// An API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last observation, if any (`: ...`).
        detail: String,
    },
    /// A request could not be made (curl failed to run).
    #[error("traffic: {0}")]
    Traffic(String),
    /// An object could not be built or parsed.
    #[error("{0}")]
    Invalid(String),
}

/// Wraps a kube error with what was being done.
pub fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> MeshError {
    let what = what.into();
    move |source| MeshError::Kube { what, source }
}

/// Polls `f` every 250 ms until it yields `Ok(Some)`, or fails with the last `Err`/`None`
/// observation after `timeout`. `Err(String)` is a transient observation, not fatal.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, MeshError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(MeshError::Timeout {
                what: what.to_string(),
                timeout,
                detail: if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                },
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

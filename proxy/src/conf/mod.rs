//! Config loading: the atomically swapped store, a polled file source and a
//! Kubernetes ConfigMap watch source.

pub mod file;
pub mod kube;
pub mod kube_http;
pub mod store;

pub use store::{Applied, ConfigStore, Snapshot};

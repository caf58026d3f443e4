//! Config loading: the atomically swapped store, a polled file source, a
//! Kubernetes ConfigMap watch source and the service catalog it may reference.

pub mod catalog;
pub mod file;
pub mod kube;
pub mod kube_http;
pub mod store;

pub use store::{Applied, ConfigStore, Snapshot};

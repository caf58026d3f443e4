//! Config loading: the atomically swapped store, a polled file source, and the
//! API source (ConfigMap followers, the service catalog, assembly).

pub mod catalog;
pub mod file;
pub mod kube;
pub mod kube_http;
pub mod source;
pub mod store;

pub use store::{Applied, ConfigStore, Snapshot};

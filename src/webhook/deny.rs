//! [`Deny`]: why the injector refuses a pod (the API server shows the message to
//! whoever created the pod).

/// A pod the injector will not admit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    /// A weft annotation carries a value the injector cannot use.
    #[error("invalid annotation {annotation}={value:?}: {reason}")]
    InvalidAnnotation {
        /// Annotation key.
        annotation: String,
        /// Offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An app container declares a port the sidecar needs.
    #[error("container {container:?} declares port {port}, which is reserved for the weft proxy")]
    ReservedPort {
        /// Container name.
        container: String,
        /// The port.
        port: i32,
    },
    /// The pod already has a container or volume with a name the injector adds.
    #[error("pod already has a {what} named {name:?}, which the weft injector needs")]
    NameClash {
        /// `container` or `volume`.
        what: &'static str,
        /// The clashing name.
        name: String,
    },
}

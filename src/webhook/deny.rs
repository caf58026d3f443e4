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
    /// A container other than the sidecar would run as the proxy's UID, whose traffic
    /// the iptables rules let bypass the proxy.
    #[error(
        "{field} is {uid}, the weft proxy's UID: only the weft-proxy sidecar may run as it (its traffic bypasses the mesh)"
    )]
    ProxyUid {
        /// Path of the offending field, e.g. `spec.containers[0].securityContext.runAsUser`.
        field: String,
        /// The UID.
        uid: i64,
    },
    /// An opt-out annotation in a namespace whose MeshConfig forbids opting out.
    #[error(
        "annotation {annotation}={value:?} is not allowed: MeshConfig spec.injection.allowOptOut is false, so pods of meshed namespaces may not opt out of the mesh"
    )]
    OptOutForbidden {
        /// Annotation key.
        annotation: String,
        /// Its value.
        value: String,
    },
    /// `weft.dev/injected` on a pod the injector did not inject.
    #[error(
        "annotation weft.dev/injected is set but the pod has no weft-proxy container: the annotation is the injector's, remove it"
    )]
    ForgedInjected,
    /// The pod already has a container or volume with a name the injector adds.
    #[error("pod already has a {what} named {name:?}, which the weft injector needs")]
    NameClash {
        /// `container` or `volume`.
        what: &'static str,
        /// The clashing name.
        name: String,
    },
}

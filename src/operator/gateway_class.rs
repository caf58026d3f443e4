//! The `weft` GatewayClass: like Istio's `istio` class, the elected controller
//! creates it once the Gateway API CRDs are served, so `gatewayClassName: weft`
//! works with nothing else to install. An existing class of that name is left
//! as it is (a user may have created it, or changed its description).

use crate::api::gateway::GROUP;
use crate::api::gateway::gateway::{GATEWAY_CLASS, GATEWAY_CONTROLLER_NAME};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use std::time::{Duration, Instant};

/// The class weft creates.
pub const CLASS_NAME: &str = "weft";

/// The class description (the CRD allows at most 64 bytes).
pub const DESCRIPTION: &str = "weft-proxy at the edge of the mesh (docs/gateway.md)";

/// The GatewayClass object weft creates.
pub fn class_object() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": format!("{GROUP}/{}", GATEWAY_CLASS.0),
        "kind": GATEWAY_CLASS.1,
        "metadata": {
            "name": CLASS_NAME,
            "labels": {"app.kubernetes.io/managed-by": "weft"},
        },
        "spec": {
            "controllerName": GATEWAY_CONTROLLER_NAME,
            "description": DESCRIPTION,
        },
    })
}

/// Creates the `weft` GatewayClass unless it exists. `Ok(true)` when the class
/// exists afterwards (created now or before).
pub async fn ensure(client: &Client) -> Result<bool, kube::Error> {
    let ar = ApiResource {
        group: GROUP.into(),
        version: GATEWAY_CLASS.0.into(),
        api_version: format!("{GROUP}/{}", GATEWAY_CLASS.0),
        kind: GATEWAY_CLASS.1.into(),
        plural: GATEWAY_CLASS.2.into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    if api.get_opt(CLASS_NAME).await?.is_some() {
        return Ok(true);
    }
    let obj: DynamicObject = serde_json::from_value(class_object()).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {
            tracing::info!(gateway_class = CLASS_NAME, "GatewayClass created");
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Creates the `weft` GatewayClass once, on the leader, when the Gateway API CRDs
/// are served; a failure is logged and retried at a later reconcile (every
/// [`ClassEnsurer::RETRY`]; every [`ClassEnsurer::PROBE`] while the CRDs look absent,
/// so CRDs installed after start are noticed).
#[derive(Debug)]
pub struct ClassEnsurer {
    served: bool,
    done: bool,
    last_try: Option<Instant>,
}

impl ClassEnsurer {
    /// Retry interval while the CRDs are served.
    pub const RETRY: Duration = Duration::from_secs(30);
    /// Retry interval while they look absent.
    pub const PROBE: Duration = Duration::from_secs(300);

    /// `served_at_start`: discovery found the GatewayClass CRD at start.
    pub fn new(served_at_start: bool) -> Self {
        Self {
            served: served_at_start,
            done: false,
            last_try: None,
        }
    }

    fn interval(&self) -> Duration {
        if self.served { Self::RETRY } else { Self::PROBE }
    }

    /// Whether to try now (`classes_seen`: some GatewayClass is cached, so the CRDs are served).
    fn due(&mut self, classes_seen: bool, now: Instant) -> bool {
        self.served |= classes_seen;
        !self.done
            && self
                .last_try
                .is_none_or(|t| now.duration_since(t) >= self.interval())
    }

    /// Tries to create the class if due (`classes_seen`: some GatewayClass is cached).
    pub async fn ensure(&mut self, client: &Client, classes_seen: bool) {
        let now = Instant::now();
        if !self.due(classes_seen, now) {
            return;
        }
        self.last_try = Some(now);
        match ensure(client).await {
            Ok(done) => self.done = done,
            Err(kube::Error::Api(e)) if e.code == 404 && !self.served => {
                tracing::debug!(gateway_class = CLASS_NAME, "GatewayClass CRD not served yet")
            }
            Err(e) => {
                tracing::warn!(gateway_class = CLASS_NAME, error = %e, "GatewayClass not created (retrying)")
            }
        }
    }

    /// When a failed attempt is retried.
    pub fn retry_at(&self) -> Option<Instant> {
        (!self.done)
            .then_some(self.last_try)
            .flatten()
            .map(|t| t + self.interval())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_weft_controller() {
        let o = class_object();
        assert_eq!(o["spec"]["controllerName"], "weft.dev/gateway");
        assert_eq!(o["metadata"]["name"], "weft");
        assert_eq!(o["apiVersion"], "gateway.networking.k8s.io/v1");
        assert!(
            DESCRIPTION.len() <= 64,
            "spec.description is limited to 64 bytes by the CRD"
        );
    }

    #[test]
    fn the_class_is_tried_at_once_when_served_and_rarely_otherwise() {
        let now = Instant::now();
        let mut served = ClassEnsurer::new(true);
        assert!(served.due(false, now));
        served.last_try = Some(now);
        assert!(!served.due(false, now + Duration::from_secs(1)));
        assert!(served.due(false, now + ClassEnsurer::RETRY));
        assert_eq!(served.retry_at(), Some(now + ClassEnsurer::RETRY));
        let mut absent = ClassEnsurer::new(false);
        absent.last_try = Some(now);
        assert!(!absent.due(false, now + ClassEnsurer::RETRY));
        assert!(absent.due(false, now + ClassEnsurer::PROBE));
        assert!(
            absent.due(true, now + ClassEnsurer::RETRY),
            "a cached class means the CRDs are served"
        );
        absent.done = true;
        assert!(!absent.due(true, now + ClassEnsurer::PROBE));
        assert_eq!(absent.retry_at(), None);
    }
}

//! The `weft` GatewayClass: like Istio's `istio` class, the elected controller
//! creates it once the Gateway API CRDs are served, so `gatewayClassName: weft`
//! works with nothing else to install. An existing class of that name is left
//! as it is (a user may have created it, or changed its description).

use crate::api::gateway::GROUP;
use crate::api::gateway::gateway::{GATEWAY_CLASS, GATEWAY_CONTROLLER_NAME};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};

/// The class weft creates.
pub const CLASS_NAME: &str = "weft";

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
            "description": "weft's ingress gateway: weft-proxy at the edge of the mesh (docs/gateway.md)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_weft_controller() {
        let o = class_object();
        assert_eq!(o["spec"]["controllerName"], "weft.dev/gateway");
        assert_eq!(o["metadata"]["name"], "weft");
        assert_eq!(o["apiVersion"], "gateway.networking.k8s.io/v1");
    }
}

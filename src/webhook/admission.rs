//! AdmissionReview v1 in, AdmissionReview v1 out: the pure request handling behind
//! `POST /inject`. Undecodable bodies are a [`BadReview`] (HTTP 400); denied pods
//! are an `allowed: false` response carrying the [`Deny`](super::Deny) message.

use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::config::InjectConfig;
use super::enrolment::admit;
use super::inject::{Decision, inject, patch};

/// A request body that is not a usable AdmissionReview.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// What happened to one admission request (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar was injected.
    Injected,
    /// The pod was admitted unchanged, for this reason.
    Skipped(&'static str),
    /// The pod was refused, with this message.
    Denied(String),
}

/// Handles one AdmissionReview body.
pub fn review(
    body: &[u8],
    cfg: &InjectConfig,
) -> Result<(AdmissionReview<DynamicObject>, Outcome), BadReview> {
    let review: AdmissionReview<Pod> =
        serde_json::from_slice(body).map_err(|e| BadReview(format!("cannot decode AdmissionReview: {e}")))?;
    let req: AdmissionRequest<Pod> = review
        .try_into()
        .map_err(|_| BadReview("AdmissionReview has no request".to_string()))?;
    let resp = AdmissionResponse::from(&req);
    let (resp, outcome) = respond(&req, resp, cfg);
    Ok((resp.into_review(), outcome))
}

fn respond(
    req: &AdmissionRequest<Pod>,
    resp: AdmissionResponse,
    cfg: &InjectConfig,
) -> (AdmissionResponse, Outcome) {
    if !req.kind.group.is_empty() || req.kind.kind != "Pod" || req.sub_resource.is_some() {
        return (resp, Outcome::Skipped("not a pod"));
    }
    if req.operation != Operation::Create {
        return (resp, Outcome::Skipped("not a create"));
    }
    let Some(pod) = &req.object else {
        return (resp, Outcome::Skipped("no object"));
    };
    let namespace = req
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or_default();
    let injected = match admit(pod, namespace, cfg) {
        Ok(Decision::Skip(why)) => return (resp, Outcome::Skipped(why)),
        Ok(Decision::Inject) => inject(pod, cfg),
        Err(deny) => Err(deny),
    };
    let mutated = match injected {
        Ok(p) => p,
        Err(deny) => {
            let msg = deny.to_string();
            return (resp.deny(&msg), Outcome::Denied(msg));
        }
    };
    let with_patch = patch(pod, &mutated).map_err(|e| e.to_string()).and_then(|p| {
        // Cloned so the error path below can still deny with the original response.
        resp.clone().with_patch(p).map_err(|e| e.to_string())
    });
    match with_patch {
        Ok(r) => (r, Outcome::Injected),
        Err(e) => {
            let msg = format!("weft injector could not build the patch: {e}");
            (resp.deny(&msg), Outcome::Denied(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    pub(crate) fn review_body(namespace: &str, pod: Value, operation: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0b5a7a2c-1111-2222-3333-444455556666",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "tester"},
                "object": pod,
                "oldObject": null,
                "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
            }
        }))
        .unwrap()
    }

    fn response(body: &[u8]) -> (Value, Outcome) {
        let (review, outcome) = review(body, &InjectConfig::default()).unwrap();
        let v = serde_json::to_value(review).unwrap();
        (v["response"].clone(), outcome)
    }

    fn app() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "a"}]}})
    }

    #[test]
    fn injects_with_a_json_patch() {
        let (r, outcome) = response(&review_body("shop", app(), "CREATE"));
        assert_eq!(outcome, Outcome::Injected);
        assert_eq!(r["allowed"], true);
        assert_eq!(r["uid"], "0b5a7a2c-1111-2222-3333-444455556666");
        assert_eq!(r["patchType"], "JSONPatch");
        let bytes: Vec<u8> = serde_json::from_value(r["patch"].clone()).unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        assert!(
            ops.iter().any(|op| op["path"] == "/spec/initContainers"),
            "{ops:?}"
        );
    }

    #[test]
    fn skips_without_patch() {
        for (ns, op) in [("weft-system", "CREATE"), ("shop", "UPDATE")] {
            let (r, outcome) = response(&review_body(ns, app(), op));
            assert!(matches!(outcome, Outcome::Skipped(_)));
            assert_eq!(r["allowed"], true);
            assert!(r.get("patch").is_none());
        }
    }

    #[test]
    fn denies_with_message() {
        let pod = json!({"metadata": {"annotations": {"weft.dev/skip-inbound-ports": "eighty"}},
            "spec": {"containers": [{"name": "a"}]}});
        let (r, outcome) = response(&review_body("shop", pod, "CREATE"));
        assert!(matches!(outcome, Outcome::Denied(_)));
        assert_eq!(r["allowed"], false);
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("weft.dev/skip-inbound-ports") && msg.contains("eighty"),
            "{msg}"
        );
    }

    #[test]
    fn undecodable_bodies_are_bad_reviews() {
        let err = review(b"{not json", &InjectConfig::default()).unwrap_err();
        assert!(err.0.starts_with("cannot decode AdmissionReview"), "{err}");
        let no_request = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert_eq!(
            review(no_request, &InjectConfig::default()).unwrap_err().0,
            "AdmissionReview has no request"
        );
    }
}

#[cfg(test)]
#[path = "admission_prop.rs"]
mod prop;

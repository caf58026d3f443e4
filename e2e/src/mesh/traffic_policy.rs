//! weft's traffic policies as JSON, for tests and the demo: LoadBalancing, FaultInjection
//! and TrafficMirror (`policy.weft.dev/v1alpha1`).

use serde_json::{Value, json};

fn object(kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy.weft.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// A LoadBalancing on Service `destination` (every port) with `algorithm` and, for
/// `consistentHash`, the `consistentHash` block.
pub fn load_balancing(
    namespace: &str,
    name: &str,
    destination: &str,
    algorithm: &str,
    consistent_hash: Option<Value>,
) -> Value {
    let mut spec = json!({"destination": {"kind": "Service", "name": destination}, "algorithm": algorithm});
    if let Some(h) = consistent_hash {
        spec["consistentHash"] = h;
    }
    object("LoadBalancing", namespace, name, spec)
}

/// A FaultInjection on calls to Service `destination`: `abort` = (HTTP status,
/// percentage), `delay` = (duration, percentage).
pub fn fault_injection(
    namespace: &str,
    name: &str,
    destination: &str,
    abort: Option<(u16, f64)>,
    delay: Option<(&str, f64)>,
) -> Value {
    let mut spec = json!({"destination": {"kind": "Service", "name": destination}});
    if let Some((status, pct)) = abort {
        spec["abort"] = json!({"httpStatus": status, "percentage": pct});
    }
    if let Some((d, pct)) = delay {
        spec["delay"] = json!({"fixedDelay": d, "percentage": pct});
    }
    object("FaultInjection", namespace, name, spec)
}

/// A TrafficMirror copying `percentage` of Service `destination`'s requests to Service
/// `mirror` (same namespace).
pub fn traffic_mirror(
    namespace: &str,
    name: &str,
    destination: &str,
    mirror: &str,
    percentage: f64,
) -> Value {
    object(
        "TrafficMirror",
        namespace,
        name,
        json!({"destination": {"kind": "Service", "name": destination},
               "mirror": {"name": mirror}, "percentage": percentage}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_shapes() {
        let lb = load_balancing(
            "ns",
            "lb",
            "svc",
            "consistentHash",
            Some(json!({"header": "x-user"})),
        );
        assert_eq!(lb["kind"], "LoadBalancing");
        assert_eq!(lb["spec"]["consistentHash"]["header"], "x-user");
        let rr = load_balancing("ns", "lb", "svc", "roundRobin", None);
        assert!(rr["spec"].get("consistentHash").is_none());
        let f = fault_injection("ns", "f", "svc", Some((503, 10.0)), Some(("200ms", 20.0)));
        assert_eq!(f["spec"]["abort"]["httpStatus"], 503);
        assert_eq!(f["spec"]["delay"]["fixedDelay"], "200ms");
        let m = traffic_mirror("ns", "m", "svc", "shadow", 100.0);
        assert_eq!(m["spec"]["mirror"]["name"], "shadow");
    }
}

//! Drift detection: whether a cached object still holds everything the operator
//! would apply. The hash annotation alone is not enough (an edited `config.json`
//! that kept the old annotation would never be restored), so the decision compares
//! the content that was read: every field the desired object sets (data, rules,
//! subjects, labels, annotations, owner references) must be present in the live
//! object with the same value. Fields only the live object has (server defaults,
//! other managers' keys) do not count, as server-side apply leaves them alone too.

use serde::Serialize;
use serde_json::Value;

/// True when `live` already carries every field of `desired` with the same value.
/// An object that cannot be serialized is never in sync (it is written again).
pub fn in_sync<K: Serialize>(desired: &K, live: &K) -> bool {
    match (serde_json::to_value(desired), serde_json::to_value(live)) {
        (Ok(d), Ok(l)) => covers(&d, &l),
        _ => false,
    }
}

/// `desired` ⊆ `live`: objects key by key (recursively), arrays element by element
/// with equal lengths, scalars equal. A `null` in `desired` asks for nothing.
pub fn covers(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| dv.is_null() || l.get(k).is_some_and(|lv| covers(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| covers(dv, lv))
        }
        (d, l) => d == l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::apply::objects;
    use crate::operator::render::RenderedConfig;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn rendered(version: u32) -> RenderedConfig {
        let config: weft_proxy_config::ProxyConfig = serde_json::from_value(json!({
            "schemaVersion": 1,
            "identity": {"namespace": "shop", "serviceAccount": "frontend",
                "spiffeId": "spiffe://cluster.local/ns/shop/sa/frontend"},
            "mesh": {"trustDomain": "cluster.local", "accessMode": "smi", "mtlsMode": "strict"},
            "services": {}, "inbound": {},
        }))
        .unwrap();
        let json = format!("{}{}", config.to_json().unwrap(), " ".repeat(version as usize));
        RenderedConfig {
            config,
            hash: crate::operator::render::content_hash(json.as_bytes()),
            json,
            owner_uid: "uid-1".into(),
        }
    }

    /// What the API server returns for an applied object: server fields added.
    fn as_stored(cm: &ConfigMap) -> ConfigMap {
        let mut v = serde_json::to_value(cm).unwrap();
        v["metadata"]["resourceVersion"] = json!("42");
        v["metadata"]["uid"] = json!("cm-uid");
        v["metadata"]["creationTimestamp"] = json!("2026-12-03T07:00:00Z");
        v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied"] = json!("x");
        v["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = json!(true);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_edited_config_with_the_old_hash_annotation_is_drift() {
        let desired = objects::config_map("shop", "frontend", &rendered(0));
        let stored = as_stored(&desired);
        assert!(in_sync(&desired, &stored), "server-added fields are not drift");
        let mut edited = stored.clone();
        edited.data.as_mut().unwrap().insert(
            weft_proxy_config::CONFIG_KEY.into(),
            r#"{"schemaVersion":1}"#.into(),
        );
        // The hash annotation still matches: the old decision (hash only) kept it.
        assert_eq!(
            objects::hash_of(&edited.metadata),
            objects::hash_of(&desired.metadata)
        );
        assert!(!in_sync(&desired, &edited), "edited config.json must be restored");
        let mut no_data = stored.clone();
        no_data.data = None;
        assert!(!in_sync(&desired, &no_data));
        let mut unlabelled = stored;
        unlabelled.metadata.owner_references = None;
        assert!(!in_sync(&desired, &unlabelled));
    }

    #[test]
    fn edited_roles_and_bindings_are_drift() {
        let desired = objects::role("shop", "frontend", "uid-1");
        let mut live = desired.clone();
        assert!(in_sync(&desired, &live));
        live.rules.as_mut().unwrap()[0]
            .resource_names
            .as_mut()
            .unwrap()
            .push("weft-proxy-other".into());
        assert!(!in_sync(&desired, &live), "widened resourceNames");
        let desired = objects::role_binding("shop", "frontend", "uid-1");
        let mut live = desired.clone();
        live.subjects.as_mut().unwrap()[0].name = "intruder".into();
        assert!(!in_sync(&desired, &live));
        live.subjects = desired.subjects.clone();
        live.subjects.as_mut().unwrap()[0].api_group = Some(String::new());
        assert!(in_sync(&desired, &live), "a server-defaulted field is no drift");
    }

    #[test]
    fn covers_is_a_subset_check() {
        assert!(covers(
            &json!({"a": {"b": 1}}),
            &json!({"a": {"b": 1, "c": 2}, "d": 3})
        ));
        assert!(!covers(&json!({"a": {"b": 1}}), &json!({"a": {"b": 2}})));
        assert!(!covers(&json!({"a": [1, 2]}), &json!({"a": [1, 2, 3]})));
        assert!(covers(&json!({"a": null}), &json!({})));
        assert!(!covers(&json!({"a": "x"}), &json!({})));
    }
}

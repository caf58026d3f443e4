//! Route status for GAMMA (HTTPRoute / GRPCRoute `status.parents[]`): weft owns
//! the entries with `controllerName: weft.dev/mesh`, one per Service parentRef
//! it handles, and leaves every other controller's entries untouched. Written
//! read-modify-write through the status subresource with the object's
//! resourceVersion (a conflict re-reads and recomputes), only when weft's own
//! entries changed; `lastTransitionTime` is kept while a condition's status
//! stays the same.

use super::{Applier, Outcome, memo_key};
use crate::api::gateway::CONTROLLER_NAME;
use crate::operator::render::CondValue;
use crate::operator::render::RenderOutput;
use crate::operator::render::gamma::RouteKey;
use crate::operator::render::gamma::{ParentReport, RouteReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

fn ours(entry: &Value) -> bool {
    entry.get("controllerName").and_then(Value::as_str) == Some(CONTROLLER_NAME)
}

fn condition(
    old: Option<&Value>,
    ty: &str,
    want: &CondValue,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if want.ok { "True" } else { "False" };
    let prior: Option<Condition> = old
        .and_then(|e| e.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        })
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    let last = match prior {
        Some(c) if c.status == status => c.last_transition_time,
        _ => now.clone(),
    };
    Condition {
        type_: ty.to_string(),
        status: status.into(),
        reason: want.reason.clone(),
        message: want.message.chars().take(32_000).collect(),
        observed_generation: generation,
        last_transition_time: last,
    }
}

fn entry(old: &[&Value], p: &ParentReport, generation: Option<i64>, now: &Time) -> Value {
    let parent = serde_json::to_value(&p.parent_ref).unwrap_or(Value::Null);
    let prior = old.iter().copied().find(|e| e.get("parentRef") == Some(&parent));
    serde_json::json!({
        "parentRef": parent,
        "controllerName": CONTROLLER_NAME,
        "conditions": [
            condition(prior, "Accepted", &p.accepted, generation, now),
            condition(prior, "ResolvedRefs", &p.resolved_refs, generation, now),
        ],
    })
}

/// The new `status.parents` for `stored` (the object's `status`), or `None`
/// when weft's entries are already as reported.
pub fn merge(stored: Option<&Value>, report: &RouteReport, now: &Time) -> Option<Vec<Value>> {
    let parents: Vec<Value> = stored
        .and_then(|s| s.get("parents"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (mine, theirs): (Vec<&Value>, Vec<&Value>) = parents.iter().partition(|e| ours(e));
    let want: Vec<Value> = report
        .parents
        .iter()
        .map(|p| entry(&mine, p, report.generation, now))
        .collect();
    if mine.len() == want.len() && mine.iter().zip(&want).all(|(a, b)| *a == b) {
        return None;
    }
    let mut out: Vec<Value> = theirs.into_iter().cloned().collect();
    out.extend(want);
    Some(out)
}

impl Applier {
    /// GAMMA route status (`status.parents`), read-modify-write with the
    /// resourceVersion; a conflict re-reads the object and recomputes.
    pub(super) async fn route_statuses(
        &self,
        out: &RenderOutput,
        routes: &HashMap<RouteKey, Arc<DynamicObject>>,
        o: &mut Outcome,
    ) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        for (key, report) in &out.gamma {
            let Some(cached) = routes.get(key) else { continue };
            let (version, kind, plural) = key.0.gvk();
            let ar = ApiResource {
                group: crate::api::gateway::GROUP.into(),
                version: version.into(),
                api_version: format!("{}/{version}", crate::api::gateway::GROUP),
                kind: kind.into(),
                plural: plural.into(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &key.1, &ar);
            let mut obj: DynamicObject = (**cached).clone();
            for attempt in 0..4 {
                let Some(parents) = merge(obj.data.get("status"), report, &now) else {
                    break;
                };
                let memo = crate::operator::render::content_hash(
                    format!(
                        "{:?}{}",
                        obj.metadata.resource_version,
                        Value::Array(parents.clone())
                    )
                    .as_bytes(),
                );
                let mkey = memo_key("route-status", &key.1, &format!("{kind}/{}", key.2));
                if attempt == 0 && self.memo_says(&mkey, &memo) {
                    break;
                }
                let mut body = obj.clone();
                body.metadata.managed_fields = None;
                match body.data.as_object_mut() {
                    Some(m) => {
                        let status = m.entry("status").or_insert_with(|| serde_json::json!({}));
                        if !status.is_object() {
                            *status = serde_json::json!({});
                        }
                        status["parents"] = Value::Array(parents);
                    }
                    None => break,
                }
                match api.replace_status(&key.2, &PostParams::default(), &body).await {
                    Ok(_) => {
                        o.writes += 1;
                        self.metrics.wrote("status");
                        self.remember(mkey, memo);
                        break;
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 && attempt < 3 => {
                        match api.get_opt(&key.2).await {
                            Ok(Some(fresh)) => obj = fresh,
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(kind, namespace = %key.1, name = %key.2, error = %e, "route status re-read failed");
                                o.errors += 1;
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(kind, namespace = %key.1, name = %key.2, error = %e, "route status update failed");
                        o.errors += 1;
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway::ParentRef;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn report(ok: bool) -> RouteReport {
        let c = |ok: bool, r: &str| CondValue {
            ok,
            reason: r.into(),
            message: "m".into(),
        };
        RouteReport {
            generation: Some(1),
            parents: vec![ParentReport {
                parent_ref: ParentRef {
                    group: Some(String::new()),
                    kind: Some("Service".into()),
                    name: "echo".into(),
                    ..ParentRef::default()
                },
                accepted: c(true, "Accepted"),
                resolved_refs: if ok {
                    c(true, "ResolvedRefs")
                } else {
                    c(false, "BackendNotFound")
                },
            }],
        }
    }

    #[test]
    fn other_controllers_are_kept_and_unchanged_status_is_not_rewritten() {
        let other = serde_json::json!({"parentRef": {"name": "gw"}, "controllerName": "example.com/gw", "conditions": []});
        let stored = serde_json::json!({"parents": [other.clone()]});
        let first = merge(Some(&stored), &report(true), &t(10)).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], other);
        assert_eq!(first[1]["controllerName"], CONTROLLER_NAME);
        assert_eq!(
            first[1]["parentRef"],
            serde_json::json!({"group": "", "kind": "Service", "name": "echo"})
        );
        let stored = serde_json::json!({"parents": first});
        assert!(merge(Some(&stored), &report(true), &t(20)).is_none());
        let second = merge(Some(&stored), &report(false), &t(30)).unwrap();
        let conds = &second[1]["conditions"];
        assert_eq!(
            conds[0]["lastTransitionTime"],
            stored["parents"][1]["conditions"][0]["lastTransitionTime"]
        );
        assert_ne!(
            conds[1]["lastTransitionTime"],
            stored["parents"][1]["conditions"][1]["lastTransitionTime"]
        );
        assert_eq!(conds[1]["reason"], "BackendNotFound");
        assert_eq!(conds[1]["observedGeneration"], 1);
        // No Service parent left: weft's entry goes, the other controller's stays.
        let gone = merge(
            Some(&serde_json::json!({"parents": second})),
            &RouteReport::default(),
            &t(40),
        )
        .unwrap();
        assert_eq!(gone, vec![other]);
        assert!(merge(None, &RouteReport::default(), &t(50)).is_none());
    }
}

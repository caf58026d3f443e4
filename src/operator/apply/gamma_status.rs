//! Route status (HTTPRoute / GRPCRoute `status.parents[]`) for both of weft's
//! controllers: GAMMA (`controllerName: weft.dev/mesh`, one entry per Service
//! parentRef it handles) and the ingress gateway (`weft.dev/gateway`, one entry
//! per parentRef naming a weft Gateway). Each controller owns only the entries
//! with its own controllerName; every other entry (the other weft controller's,
//! other implementations') is left untouched. Written read-modify-write through
//! the status subresource with the object's resourceVersion (a conflict re-reads
//! and recomputes), only when weft's own entries changed; `lastTransitionTime` is
//! kept while a condition's status stays the same.

use super::{Applier, Outcome, memo_key};
use crate::api::gateway::CONTROLLER_NAME;
use crate::api::gateway::gateway::GATEWAY_CONTROLLER_NAME;
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

fn owned_by(controller: &str, entry: &Value) -> bool {
    entry.get("controllerName").and_then(Value::as_str) == Some(controller)
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

fn entry(controller: &str, old: &[&Value], p: &ParentReport, generation: Option<i64>, now: &Time) -> Value {
    let parent = serde_json::to_value(&p.parent_ref).unwrap_or(Value::Null);
    let prior = old.iter().copied().find(|e| e.get("parentRef") == Some(&parent));
    serde_json::json!({
        "parentRef": parent,
        "controllerName": controller,
        "conditions": [
            condition(prior, "Accepted", &p.accepted, generation, now),
            condition(prior, "ResolvedRefs", &p.resolved_refs, generation, now),
        ],
    })
}

/// The new `status.parents` for `stored` (the object's `status`), or `None`
/// when weft's GAMMA entries (`weft.dev/mesh`) are already as reported.
pub fn merge(stored: Option<&Value>, report: &RouteReport, now: &Time) -> Option<Vec<Value>> {
    let parents: Vec<Value> = stored
        .and_then(|s| s.get("parents"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    merge_for(CONTROLLER_NAME, &parents, &report.parents, report.generation, now)
}

/// `parents` with `controller`'s entries replaced by `reports` (in order, after
/// every other controller's entries, which are kept as they are), or `None` when
/// `controller`'s entries are already as reported.
pub fn merge_for(
    controller: &str,
    parents: &[Value],
    reports: &[ParentReport],
    generation: Option<i64>,
    now: &Time,
) -> Option<Vec<Value>> {
    let (mine, theirs): (Vec<&Value>, Vec<&Value>) = parents.iter().partition(|e| owned_by(controller, e));
    let want: Vec<Value> = reports
        .iter()
        .map(|p| entry(controller, &mine, p, generation, now))
        .collect();
    if mine.len() == want.len() && mine.iter().zip(&want).all(|(a, b)| *a == b) {
        return None;
    }
    let mut out: Vec<Value> = theirs.into_iter().cloned().collect();
    out.extend(want);
    Some(out)
}

/// Both controllers' merges on a stored `status`: GAMMA (`mesh`, when weft reports
/// on the route's Service parents) then the gateway's (`gateway`, possibly none:
/// then weft's old gateway entries are removed). `None` when nothing changed.
pub fn merge_both(
    stored: Option<&Value>,
    mesh: Option<&RouteReport>,
    gateway: (Option<i64>, &[ParentReport]),
    now: &Time,
) -> Option<Vec<Value>> {
    let stored: Vec<Value> = stored
        .and_then(|s| s.get("parents"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    let mut parents = stored;
    if let Some(r) = mesh
        && let Some(p) = merge_for(CONTROLLER_NAME, &parents, &r.parents, r.generation, now)
    {
        parents = p;
        changed = true;
    }
    if let Some(p) = merge_for(GATEWAY_CONTROLLER_NAME, &parents, gateway.1, gateway.0, now) {
        parents = p;
        changed = true;
    }
    changed.then_some(parents)
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
        let has_gateway_entry = |o: &DynamicObject| {
            o.data
                .get("status")
                .and_then(|s| s.get("parents"))
                .and_then(Value::as_array)
                .is_some_and(|ps| ps.iter().any(|e| owned_by(GATEWAY_CONTROLLER_NAME, e)))
        };
        // Every route weft reports on for either controller, and the routes that still
        // carry a gateway entry of weft's (to remove it).
        let keys: std::collections::BTreeSet<&RouteKey> = out
            .gamma
            .keys()
            .chain(out.gateways.routes.keys())
            .chain(
                routes
                    .iter()
                    .filter(|(_, o)| has_gateway_entry(o))
                    .map(|(k, _)| k),
            )
            .collect();
        for key in keys {
            let Some(cached) = routes.get(key) else { continue };
            let mesh = out.gamma.get(key);
            let gateway = out
                .gateways
                .routes
                .get(key)
                .map_or((None, &[][..]), |(g, ps)| (*g, &ps[..]));
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
                let Some(parents) = merge_both(obj.data.get("status"), mesh, gateway, &now) else {
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

    fn gateway_parent(ok: bool) -> ParentReport {
        ParentReport {
            parent_ref: ParentRef {
                group: Some(crate::api::gateway::GROUP.into()),
                kind: Some("Gateway".into()),
                name: "web".into(),
                section_name: Some("http".into()),
                ..ParentRef::default()
            },
            accepted: CondValue {
                ok,
                reason: if ok { "Accepted" } else { "NotAllowedByListeners" }.into(),
                message: "m".into(),
            },
            resolved_refs: CondValue {
                ok: true,
                reason: "ResolvedRefs".into(),
                message: "m".into(),
            },
        }
    }

    /// weft's two controllers share `status.parents`: each replaces only its own
    /// entries, and a third controller's entry survives both.
    #[test]
    fn mesh_and_gateway_entries_do_not_clobber_each_other() {
        let other = serde_json::json!({"parentRef": {"name": "gw"}, "controllerName": "example.com/gw", "conditions": []});
        let stored = serde_json::json!({"parents": [other.clone()]});
        let gw = [gateway_parent(true)];
        let first = merge_both(Some(&stored), Some(&report(true)), (Some(1), &gw), &t(10)).unwrap();
        let owners: Vec<&str> = first
            .iter()
            .map(|e| e["controllerName"].as_str().unwrap())
            .collect();
        assert_eq!(owners, ["example.com/gw", "weft.dev/mesh", "weft.dev/gateway"]);
        assert_eq!(first[2]["parentRef"]["sectionName"], "http");
        let stored = serde_json::json!({"parents": first});
        assert!(merge_both(Some(&stored), Some(&report(true)), (Some(1), &gw), &t(20)).is_none());
        // The gateway entry changes: the mesh entry is kept byte for byte.
        let gw2 = [gateway_parent(false)];
        let second = merge_both(Some(&stored), Some(&report(true)), (Some(1), &gw2), &t(30)).unwrap();
        assert_eq!(second[0], other);
        assert_eq!(second[1], stored["parents"][1]);
        assert_eq!(second[2]["conditions"][0]["reason"], "NotAllowedByListeners");
        // No mesh report this round (`None`): the mesh entry stays; the gateway parent
        // went away: its entry goes.
        let stored = serde_json::json!({"parents": second});
        let third = merge_both(Some(&stored), None, (None, &[]), &t(40)).unwrap();
        assert_eq!(third, vec![other, stored["parents"][1].clone()]);
        // A GAMMA-only merge never touches gateway entries.
        let with_gw = serde_json::json!({"parents": [stored["parents"][2].clone()]});
        let mesh_only = merge(Some(&with_gw), &report(true), &t(50)).unwrap();
        assert_eq!(mesh_only[0], stored["parents"][2]);
        assert_eq!(mesh_only[1]["controllerName"], CONTROLLER_NAME);
    }
}

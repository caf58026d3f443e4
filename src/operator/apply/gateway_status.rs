//! GatewayClass and Gateway status (the route parents of weft Gateways are
//! written with GAMMA's, [`super::gamma_status`]): a GatewayClass of weft's gets
//! `Accepted`; a Gateway `Accepted` and `Programmed`, `status.addresses` (the
//! gateway Service's ClusterIP) and per listener `supportedKinds`,
//! `attachedRoutes` and `Accepted` / `Programmed` / `ResolvedRefs` / `Conflicted`.
//! Condition types weft does not set are kept. Written with a merge patch of the
//! status subresource only when the content changed; `lastTransitionTime` moves
//! only when a condition's status does.

use super::drift::covers;
use super::gateway::GatewayObjects;
use super::{Applier, Outcome, memo_key};
use crate::api::gateway::GROUP;
use crate::api::gateway::gateway::{GATEWAY, GATEWAY_CLASS};
use crate::operator::render::gateway::{GatewayPlan, ListenerReport};
use crate::operator::render::{CondValue, RenderOutput};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// One condition weft sets: type, status string, value.
type Want<'a> = (&'a str, &'static str, &'a CondValue);

fn status_of(ok: bool) -> &'static str {
    if ok { "True" } else { "False" }
}

/// `conditions` of `old` (a status or listener entry) with weft's `wants` set
/// (in order, `lastTransitionTime` kept while the status is unchanged) and every
/// other type kept after them.
fn conditions(old: Option<&Value>, wants: &[Want<'_>], generation: Option<i64>, now: &Time) -> Vec<Value> {
    let stored: Vec<Value> = old
        .and_then(|o| o.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ty_of = |c: &Value| c.get("type").and_then(Value::as_str).map(str::to_string);
    let mut out: Vec<Value> = wants
        .iter()
        .map(|(ty, status, want)| {
            let prior: Option<Condition> = stored
                .iter()
                .find(|c| ty_of(c).as_deref() == Some(*ty))
                .and_then(|c| serde_json::from_value(c.clone()).ok());
            let last = match prior {
                Some(c) if c.status == *status => c.last_transition_time,
                _ => now.clone(),
            };
            let c = Condition {
                type_: (*ty).to_string(),
                status: (*status).into(),
                reason: want.reason.clone(),
                message: want.message.chars().take(32_000).collect(),
                observed_generation: generation,
                last_transition_time: last,
            };
            serde_json::to_value(c).unwrap_or(Value::Null)
        })
        .collect();
    out.extend(
        stored
            .iter()
            .filter(|c| ty_of(c).is_none_or(|t| !wants.iter().any(|(w, _, _)| *w == t)))
            .cloned(),
    );
    out
}

/// Whether `stored` already is `desired` (every desired field equal; an absent
/// desired `addresses` means none).
fn unchanged(desired: &Value, stored: Option<&Value>) -> bool {
    let Some(stored) = stored else { return false };
    let addresses_gone = desired.get("addresses").is_none()
        && stored
            .get("addresses")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    covers(desired, stored) && !addresses_gone
}

/// The new GatewayClass `status`, or `None` when it already is.
pub fn class_status(
    stored: Option<&Value>,
    generation: Option<i64>,
    accepted: &CondValue,
    now: &Time,
) -> Option<Value> {
    let conds = conditions(
        stored,
        &[("Accepted", status_of(accepted.ok), accepted)],
        generation,
        now,
    );
    let desired = json!({"conditions": conds});
    (!unchanged(&desired, stored)).then_some(desired)
}

fn listener(old: Option<&Value>, l: &ListenerReport, generation: Option<i64>, now: &Time) -> Value {
    let prior = old
        .and_then(|s| s.get("listeners"))
        .and_then(Value::as_array)
        .and_then(|ls| {
            ls.iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some(&l.name))
        });
    let kinds: Vec<Value> = l
        .supported_kinds
        .iter()
        .map(|k| json!({"group": k.group.clone().unwrap_or_else(|| GROUP.to_string()), "kind": k.kind}))
        .collect();
    let wants: [Want<'_>; 4] = [
        ("Accepted", status_of(l.accepted.ok), &l.accepted),
        ("Programmed", status_of(l.programmed.ok), &l.programmed),
        ("ResolvedRefs", status_of(l.resolved_refs.ok), &l.resolved_refs),
        // ok = not conflicted.
        ("Conflicted", status_of(!l.conflicted.ok), &l.conflicted),
    ];
    json!({
        "name": l.name,
        "supportedKinds": kinds,
        "attachedRoutes": l.attached_routes,
        "conditions": conditions(prior, &wants, generation, now),
    })
}

/// The new Gateway `status`, or `None` when it already is.
pub fn gateway_status(stored: Option<&Value>, plan: &GatewayPlan, now: &Time) -> Option<Value> {
    let g = plan.generation;
    let wants: [Want<'_>; 2] = [
        ("Accepted", status_of(plan.accepted.ok), &plan.accepted),
        ("Programmed", status_of(plan.programmed.ok), &plan.programmed),
    ];
    let mut desired = json!({
        "conditions": conditions(stored, &wants, g, now),
        "listeners": plan.listeners.iter().map(|l| listener(stored, l, g, now)).collect::<Vec<_>>(),
    });
    if let Some(addr) = &plan.address {
        desired["addresses"] = json!([{"type": "IPAddress", "value": addr}]);
    }
    (!unchanged(&desired, stored)).then_some(desired)
}

/// A merge-patch body for `status` (no `addresses` in `status` removes them).
fn patch_body(mut status: Value) -> Value {
    if status.get("addresses").is_none()
        && let Some(m) = status.as_object_mut()
    {
        m.insert("addresses".into(), Value::Null);
    }
    json!({"status": status})
}

/// The content hash of a status without its timestamps (a lagging cache recomputes
/// fresh `lastTransitionTime`s for a status that was just written).
fn memo_hash(status: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    crate::operator::render::content_hash(strip(status).to_string().as_bytes())
}

fn resource((version, kind, plural): (&str, &str, &str)) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: version.into(),
        api_version: format!("{GROUP}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

impl Applier {
    async fn write_status(
        &self,
        api: Api<DynamicObject>,
        what: (&'static str, &str, &str),
        status: Value,
        o: &mut Outcome,
    ) {
        let (kind, ns, name) = what;
        let mkey = memo_key("status", ns, &format!("{kind}/{name}"));
        let memo = memo_hash(&status);
        if self.memo_says(&mkey, &memo) {
            return;
        }
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch_body(status)))
            .await
        {
            Ok(_) => {
                o.writes += 1;
                self.metrics.wrote("status");
                self.remember(mkey, memo);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(kind, namespace = ns, name, error = %e, "status update failed");
                o.errors += 1;
            }
        }
    }

    /// GatewayClass and Gateway status of a render.
    pub(super) async fn gateway_statuses(&self, out: &RenderOutput, gw: &GatewayObjects, o: &mut Outcome) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let class_ar = resource(GATEWAY_CLASS);
        for (name, (generation, accepted)) in &out.gateways.classes {
            let Some(cached) = gw.classes.get(name) else {
                continue;
            };
            let Some(status) = class_status(cached.data.get("status"), *generation, accepted, &now) else {
                continue;
            };
            let api = Api::all_with(self.client.clone(), &class_ar);
            self.write_status(api, ("GatewayClass", "", name), status, o)
                .await;
        }
        let gw_ar = resource(GATEWAY);
        for plan in out.gateways.gateways.values() {
            let key = (plan.namespace.clone(), plan.name.clone());
            let Some(cached) = gw.gateways.get(&key) else {
                continue;
            };
            let Some(status) = gateway_status(cached.data.get("status"), plan, &now) else {
                continue;
            };
            let api = Api::namespaced_with(self.client.clone(), &plan.namespace, &gw_ar);
            self.write_status(api, ("Gateway", &plan.namespace, &plan.name), status, o)
                .await;
        }
    }
}

#[cfg(test)]
#[path = "gateway_status_tests.rs"]
mod tests;

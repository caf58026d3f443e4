//! Object status: the `Accepted`/`ResolvedRefs` conditions a render reported,
//! compared with what the object already carries so status is written only on
//! change (conditions or observedGeneration) and Events are emitted only on
//! transitions.

use crate::operator::render::{CondValue, ObjectReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::Value;

/// The two condition types, in order.
pub const TYPES: [&str; 2] = ["Accepted", "ResolvedRefs"];

/// What changed on one object.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The full `status` to merge-patch in.
    pub status: Value,
    /// Conditions whose status or reason changed: `(type, new value)`.
    pub transitions: Vec<(&'static str, CondValue)>,
}

fn current(status: Option<&Value>, ty: &str) -> Option<Condition> {
    let conds = status?.get("conditions")?.as_array()?;
    conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
}

/// Compares a report with the stored `status`; `None` when nothing changed.
pub fn diff(stored: Option<&Value>, report: &ObjectReport, now: Time) -> Option<StatusChange> {
    let observed = stored
        .and_then(|s| s.get("observedGeneration"))
        .and_then(Value::as_i64);
    let mut changed = observed != report.generation;
    let mut conditions = Vec::new();
    let mut transitions = Vec::new();
    for (ty, want) in TYPES.iter().zip([&report.accepted, &report.resolved_refs]) {
        let status = if want.ok { "True" } else { "False" };
        let old = current(stored, ty);
        let same_state = old
            .as_ref()
            .is_some_and(|c| c.status == status && c.reason == want.reason);
        let same = same_state
            && old
                .as_ref()
                .is_some_and(|c| c.message == want.message && c.observed_generation == report.generation);
        changed |= !same;
        if !same_state {
            transitions.push((*ty, want.clone()));
        }
        let last = match old {
            Some(c) if c.status == status => c.last_transition_time,
            _ => now.clone(),
        };
        conditions.push(Condition {
            type_: (*ty).to_string(),
            status: status.into(),
            reason: want.reason.clone(),
            message: want.message.chars().take(32_000).collect(),
            observed_generation: report.generation,
            last_transition_time: last,
        });
    }
    changed.then(|| StatusChange {
        status: serde_json::json!({"observedGeneration": report.generation, "conditions": conditions}),
        transitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: bool, reason: &str) -> ObjectReport {
        let c = |ok: bool, reason: &str| CondValue {
            ok,
            reason: reason.into(),
            message: "m".into(),
        };
        ObjectReport {
            generation: Some(2),
            accepted: c(ok, reason),
            resolved_refs: c(true, "ResolvedRefs"),
        }
    }

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn unchanged_status_is_not_rewritten_and_transitions_are_reported_once() {
        let first = diff(None, &report(true, "Accepted"), t(10)).unwrap();
        assert_eq!(first.transitions.len(), 2);
        assert!(diff(Some(&first.status), &report(true, "Accepted"), t(20)).is_none());
        let second = diff(Some(&first.status), &report(false, "InvalidWeights"), t(30)).unwrap();
        assert_eq!(second.transitions.len(), 1);
        assert_eq!(second.transitions[0].0, "Accepted");
        let conds = second.status["conditions"].as_array().unwrap();
        assert_eq!(
            conds[1]["lastTransitionTime"],
            first.status["conditions"][1]["lastTransitionTime"]
        );
        assert_ne!(
            conds[0]["lastTransitionTime"],
            first.status["conditions"][0]["lastTransitionTime"]
        );
        let mut newer = report(true, "Accepted");
        newer.generation = Some(3);
        assert!(
            diff(Some(&first.status), &newer, t(40))
                .unwrap()
                .transitions
                .is_empty()
        );
    }
}

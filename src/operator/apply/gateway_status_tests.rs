//! Unit tests of GatewayClass / Gateway status assembly: conditions, addresses,
//! listeners, unchanged status not rewritten, `lastTransitionTime` kept while a
//! status holds, other condition types kept.

use super::*;
use crate::api::gateway::gateway::RouteGroupKind;
use crate::operator::apply::gateway_objects::tests::plan;

fn t(s: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
}

fn cv(ok: bool, reason: &str) -> CondValue {
    CondValue {
        ok,
        reason: reason.into(),
        message: "m".into(),
    }
}

fn with_listener(programmed: bool) -> GatewayPlan {
    let mut p = plan(false);
    p.programmed = if programmed {
        cv(true, "Programmed")
    } else {
        cv(false, "Pending")
    };
    p.listeners = vec![ListenerReport {
        name: "http".into(),
        supported_kinds: vec![RouteGroupKind {
            group: None,
            kind: "HTTPRoute".into(),
        }],
        attached_routes: 2,
        accepted: cv(true, "Accepted"),
        programmed: p.programmed.clone(),
        resolved_refs: cv(true, "ResolvedRefs"),
        conflicted: cv(true, "NoConflicts"),
    }];
    p
}

#[test]
fn gateway_status_has_conditions_addresses_and_listeners() {
    let s = gateway_status(None, &with_listener(true), &t(10)).unwrap();
    let conds = s["conditions"].as_array().unwrap();
    assert_eq!(conds[0]["type"], "Accepted");
    assert_eq!(conds[1]["type"], "Programmed");
    assert_eq!(conds[1]["status"], "True");
    assert_eq!(conds[1]["observedGeneration"], 4);
    assert_eq!(
        s["addresses"],
        json!([{"type": "IPAddress", "value": "198.19.0.9"}])
    );
    let l = &s["listeners"][0];
    assert_eq!(l["name"], "http");
    assert_eq!(l["attachedRoutes"], 2);
    assert_eq!(
        l["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
    );
    let types: Vec<(&str, &str)> = l["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("Accepted", "True"),
            ("Programmed", "True"),
            ("ResolvedRefs", "True"),
            ("Conflicted", "False")
        ]
    );
    // Stored as written: nothing to write.
    assert!(gateway_status(Some(&s), &with_listener(true), &t(20)).is_none());
}

#[test]
fn transitions_move_only_their_own_timestamps_and_other_types_are_kept() {
    let mut first = gateway_status(None, &with_listener(false), &t(10)).unwrap();
    first["conditions"].as_array_mut().unwrap().push(
        json!({"type": "example.com/Extra", "status": "True", "reason": "R", "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}),
    );
    let second = gateway_status(Some(&first), &with_listener(true), &t(30)).unwrap();
    let c = &second["conditions"];
    assert_eq!(
        c[0]["lastTransitionTime"],
        first["conditions"][0]["lastTransitionTime"]
    );
    assert_ne!(
        c[1]["lastTransitionTime"],
        first["conditions"][1]["lastTransitionTime"]
    );
    assert_eq!(
        c[2]["type"], "example.com/Extra",
        "another writer's condition is kept"
    );
    let l = &second["listeners"][0]["conditions"];
    let l0 = &first["listeners"][0]["conditions"];
    assert_eq!(l[0]["lastTransitionTime"], l0[0]["lastTransitionTime"]);
    assert_ne!(l[1]["lastTransitionTime"], l0[1]["lastTransitionTime"]);
}

#[test]
fn a_lost_address_is_removed() {
    let s = gateway_status(None, &with_listener(true), &t(10)).unwrap();
    let mut p = with_listener(true);
    p.address = None;
    let next = gateway_status(Some(&s), &p, &t(20)).unwrap();
    assert!(next.get("addresses").is_none());
    assert_eq!(patch_body(next)["status"]["addresses"], Value::Null);
}

#[test]
fn class_status_is_accepted_once() {
    let s = class_status(None, Some(2), &cv(true, "Accepted"), &t(10)).unwrap();
    assert_eq!(s["conditions"][0]["type"], "Accepted");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert_eq!(s["conditions"][0]["observedGeneration"], 2);
    assert!(class_status(Some(&s), Some(2), &cv(true, "Accepted"), &t(20)).is_none());
    assert!(class_status(Some(&s), Some(3), &cv(true, "Accepted"), &t(20)).is_some());
}

#[test]
fn the_memo_ignores_timestamps() {
    let a = gateway_status(None, &with_listener(true), &t(10)).unwrap();
    let b = gateway_status(None, &with_listener(true), &t(99)).unwrap();
    assert_ne!(a, b);
    assert_eq!(memo_hash(&a), memo_hash(&b));
}

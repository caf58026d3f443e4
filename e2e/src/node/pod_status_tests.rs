//! Unit tests of the pod status rules.

use super::*;

fn t() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

fn run(name: &str, kind: Kind, state: State, ready: bool) -> Run {
    Run {
        name: name.into(),
        image: "weft/demo-app:1".into(),
        kind,
        generation: u64::from(!matches!(state, State::Waiting(..))),
        state,
        last: None,
        restarts: 0,
        ready,
        started: ready,
    }
}

fn facts(initialized: bool) -> PodFacts {
    PodFacts {
        pod_ip: Some("198.18.0.5".into()),
        host_ip: "198.18.0.1".into(),
        initialized,
        terminal_phase: None,
        start_time: t(),
        message: None,
        reason: None,
    }
}

fn condition(s: &PodStatus, type_: &str) -> String {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap()
        .status
        .clone()
}

#[test]
fn running_and_ready_pod() {
    let runs = vec![
        run("weft-proxy", Kind::Sidecar, State::Running(t()), true),
        run("app", Kind::App, State::Running(t()), true),
    ];
    let s = pod_status("u", &runs, &facts(true), &mut Transitions::new(), &t());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&s, "Ready"), "True");
    assert_eq!(condition(&s, "ContainersReady"), "True");
    assert_eq!(condition(&s, "PodScheduled"), "True");
    assert_eq!(s.pod_ip.as_deref(), Some("198.18.0.5"));
    assert_eq!(s.init_container_statuses.as_ref().unwrap().len(), 1);
    let c = &s.container_statuses.as_ref().unwrap()[0];
    assert!(c.ready && c.state.as_ref().unwrap().running.is_some());
    assert_eq!(c.container_id.as_deref(), Some("weft://u/app/1"));
}

#[test]
fn unready_sidecar_or_app_keeps_pod_unready() {
    let runs = vec![
        run("weft-proxy", Kind::Sidecar, State::Running(t()), false),
        run("app", Kind::App, State::Running(t()), true),
    ];
    let mut tr = Transitions::new();
    let s = pod_status("u", &runs, &facts(true), &mut tr, &t());
    assert_eq!(condition(&s, "Ready"), "False");
    let later = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
    let runs = vec![
        run("weft-proxy", Kind::Sidecar, State::Running(t()), true),
        run("app", Kind::App, State::Running(t()), true),
    ];
    let s = pod_status("u", &runs, &facts(true), &mut tr, &later);
    let ready = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.last_transition_time.as_ref(),
        Some(&later),
        "transition recorded"
    );
    let sched = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(
        sched.last_transition_time.as_ref(),
        Some(&t()),
        "unchanged condition keeps its time"
    );
}

#[test]
fn failed_init_leaves_pod_pending_or_failed_with_error() {
    let exit = Exit {
        code: 3,
        reason: "Error".into(),
        message: "boom".into(),
        started: t(),
        finished: t(),
    };
    let runs = vec![
        run("init", Kind::Init, State::Terminated(exit), false),
        run(
            "app",
            Kind::App,
            State::Waiting("PodInitializing".into(), String::new()),
            false,
        ),
    ];
    let mut f = facts(false);
    let s = pod_status("u", &runs, &f, &mut Transitions::new(), &t());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&s, "Initialized"), "False");
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((term.exit_code, term.message.as_deref()), (3, Some("boom")));
    f.terminal_phase = Some("Failed".into());
    let s = pod_status("u", &runs, &f, &mut Transitions::new(), &t());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    assert!(app.container_id.is_none());
}
